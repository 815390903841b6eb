//! AlterUserScramCredentials (v0): sets and deletes users' SCRAM credentials in cluster
//! metadata, through the controller. The client sends a salted password (it salts it itself,
//! as Kafka's admin client does); the broker keeps only StoredKey and ServerKey. Kafka's
//! checks: an unknown mechanism is UNSUPPORTED_SASL_MECHANISM, iterations outside 4096..=16384
//! or an empty name or salt are UNACCEPTABLE_CREDENTIAL, a user and mechanism named twice is
//! DUPLICATE_RESOURCE, deleting a credential that does not exist is RESOURCE_NOT_FOUND. One
//! result per user, with its first error; a user with an error is changed in nothing.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{admin, Request};
use crate::cluster::admin::{AdminRequest, UserChange};
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::scram::{ScramCredential, ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: AlterUserScramCredentialsRequest = request.decode()?;
    let permitted = crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Alter,
    );
    // user -> its changes, or its first error.
    let mut users: BTreeMap<String, Result<Vec<UserChange>, (ErrorCode, String)>> = BTreeMap::new();
    let mut add = |user: String, change: Result<UserChange, (ErrorCode, String)>| {
        let entry = users.entry(user).or_insert_with(|| Ok(Vec::new()));
        match (entry.as_mut(), change) {
            (Ok(changes), Ok(change)) => {
                if changes
                    .iter()
                    .any(|known| known.mechanism == change.mechanism)
                {
                    *entry = Err((
                        error::DUPLICATE_RESOURCE,
                        "a user's mechanism may appear once per request".to_string(),
                    ));
                } else {
                    changes.push(change);
                }
            }
            (Ok(_), Err(failure)) => *entry = Err(failure),
            (Err(_), _) => {}
        }
    };
    let refuse = |user: String| -> Result<UserChange, (ErrorCode, String)> {
        Err((
            error::CLUSTER_AUTHORIZATION_FAILED,
            format!("altering {user}'s credentials needs Alter on the cluster"),
        ))
    };
    for deletion in body.deletions.iter().filter(|_| !permitted) {
        add(deletion.name.to_string(), refuse(deletion.name.to_string()));
    }
    for upsertion in body.upsertions.iter().filter(|_| !permitted) {
        add(
            upsertion.name.to_string(),
            refuse(upsertion.name.to_string()),
        );
    }
    for deletion in body.deletions.iter().filter(|_| permitted) {
        let user = deletion.name.to_string();
        let change = mechanism(deletion.mechanism).map(|mechanism| UserChange {
            user: user.clone(),
            mechanism,
            credential: None,
        });
        add(user, change.and_then(named));
    }
    for upsertion in body.upsertions.iter().filter(|_| permitted) {
        let user = upsertion.name.to_string();
        let change = mechanism(upsertion.mechanism).and_then(|mechanism| {
            let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
            if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
                return Err((
                    error::UNACCEPTABLE_CREDENTIAL,
                    format!("iterations must be in {ITERATIONS_MIN}..={ITERATIONS_MAX}"),
                ));
            }
            if upsertion.salt.is_empty()
                || upsertion.salted_password.len() != mechanism.output_bytes()
            {
                return Err((
                    error::UNACCEPTABLE_CREDENTIAL,
                    "salt is empty or the salted password has the wrong length".to_string(),
                ));
            }
            named(UserChange {
                user: user.clone(),
                mechanism,
                credential: Some(ScramCredential::from_salted_password(
                    mechanism,
                    &upsertion.salt,
                    &upsertion.salted_password,
                    iterations,
                )),
            })
        });
        add(user, change);
    }
    let mut outcomes: BTreeMap<String, (ErrorCode, Option<String>)> = BTreeMap::new();
    let mut changes = Vec::new();
    for (user, result) in users {
        match result {
            Ok(mut user_changes) => changes.append(&mut user_changes),
            Err((code, message)) => {
                outcomes.insert(user, (code, Some(message)));
            }
        }
    }
    if !changes.is_empty() {
        for outcome in admin(shard, AdminRequest::AlterUsers(changes.clone())).await {
            outcomes.insert(outcome.name, (outcome.error_code, outcome.error_message));
        }
        for change in &changes {
            outcomes.entry(change.user.clone()).or_insert((
                error::UNKNOWN_SERVER_ERROR,
                Some("the controller did not answer".to_string()),
            ));
        }
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = outcomes
        .into_iter()
        .map(|(user, (code, message))| {
            let mut result = AlterUserScramCredentialsResult::default();
            result.user = StrBytes::from_string(user);
            result.error_code = code;
            result.error_message = message.map(StrBytes::from_string);
            result
        })
        .collect();
    request.respond(&response)
}

fn mechanism(value: i8) -> Result<ScramMechanism, (ErrorCode, String)> {
    ScramMechanism::from_kafka_type(value).ok_or((
        error::UNSUPPORTED_SASL_MECHANISM,
        format!("unknown SCRAM mechanism {value}"),
    ))
}

fn named(change: UserChange) -> Result<UserChange, (ErrorCode, String)> {
    if change.user.is_empty() {
        return Err((
            error::UNACCEPTABLE_CREDENTIAL,
            "user name is empty".to_string(),
        ));
    }
    Ok(change)
}
