//! The first user of a secured cluster: `SLUICE_BOOTSTRAP_USER=name:password` in the
//! environment of `sluice serve` creates `name` with SCRAM-SHA-256 and SCRAM-SHA-512
//! credentials (4096 iterations, fresh salts) through the controller, unless the user already
//! exists, so a cluster can start with SASL listeners only and no unsecured window. The
//! variable is read from the environment only (it is not a configuration key, and it is never
//! logged); setting it on every node is harmless: the first to reach the controller creates the
//! user and the others find it there.

use std::rc::Rc;

use crate::cluster::admin::{admin, AdminRequest, UserChange};
use crate::cluster::state;
use crate::protocol::error;
use crate::security::scram::{ScramCredential, ScramMechanism, ITERATIONS_MIN};
use crate::shard::Shard;

pub const BOOTSTRAP_USER_VARIABLE: &str = "SLUICE_BOOTSTRAP_USER";

/// (name, password) from `name:password`.
pub fn parse_bootstrap_user(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((name, password)) if !name.trim().is_empty() && !password.is_empty() => {
            Ok((name.trim().to_string(), password.to_string()))
        }
        _ => Err(format!("{BOOTSTRAP_USER_VARIABLE} must be name:password")),
    }
}

/// On shard 0: creates the bootstrap user once the controller takes changes.
pub fn create_bootstrap_user(shard: &Rc<Shard>, user: String, password: String) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            if state::of(&shard).metadata().users.contains_key(&user) {
                return;
            }
            let mut changes = Vec::new();
            for mechanism in ScramMechanism::ALL {
                match ScramCredential::from_password(mechanism, &password, ITERATIONS_MIN) {
                    Ok(credential) => changes.push(UserChange {
                        user: user.clone(),
                        mechanism,
                        credential: Some(credential),
                    }),
                    Err(reason) => {
                        log::error!("bootstrap user: {reason}");
                        return;
                    }
                }
            }
            let outcomes = admin(&shard, AdminRequest::AlterUsers(changes)).await;
            if outcomes.iter().all(|o| o.error_code == error::NONE) && !outcomes.is_empty() {
                log::info!("bootstrap user {user} created");
                return;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .detach();
}
