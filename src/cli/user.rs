//! `sluice user create|delete|list`: SCRAM users in the cluster's user store, through
//! AlterUserScramCredentials and DescribeUserScramCredentials (the same APIs Kafka's
//! `kafka-configs --entity-type users` uses). `create` salts the password here, with a fresh
//! random salt, and sends only the salted password; the broker keeps StoredKey and ServerKey.
//! The password comes from `SLUICE_USER_PASSWORD` or `--password` (a flag shows in the
//! process list). Creating an existing user replaces its credentials (a password change).

use clap::Subcommand;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use serde_json::json;

use super::kafka::{emit, str_bytes, text, Brokers, ClientArgs, Failed, Outcome};
use crate::security::scram::{salted_password, ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (or set a new password) with SCRAM credentials
    Create {
        name: String,
        /// The password (or SLUICE_USER_PASSWORD)
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256, SCRAM-SHA-512, or both (repeatable; default both)
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (Kafka's range)
        #[arg(long, default_value_t = ITERATIONS_MIN, value_parser = clap::value_parser!(u32).range(i64::from(ITERATIONS_MIN)..=i64::from(ITERATIONS_MAX)))]
        iterations: u32,
    },
    /// Delete a user's credentials (all mechanisms unless named)
    Delete {
        name: String,
        #[arg(long = "mechanism", value_name = "MECHANISM")]
        mechanisms: Vec<String>,
    },
    /// Users and their SCRAM mechanisms
    List,
}

pub fn run(command: &UserCommand, args: &ClientArgs) -> Outcome {
    let mut brokers = Brokers::connect(args)?;
    match command {
        UserCommand::Create {
            name,
            password,
            mechanisms,
            iterations,
        } => {
            let mut request = AlterUserScramCredentialsRequest::default();
            for mechanism in parse(mechanisms)? {
                let mut salt = [0u8; 24];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
                    .map_err(|_| Failed("no randomness for a salt".into()))?;
                let mut upsertion = ScramCredentialUpsertion::default();
                upsertion.name = str_bytes(name);
                upsertion.mechanism = mechanism.kafka_type();
                upsertion.iterations = *iterations as i32;
                upsertion.salt = bytes::Bytes::copy_from_slice(&salt);
                upsertion.salted_password = bytes::Bytes::from(salted_password(
                    mechanism,
                    password.as_bytes(),
                    &salt,
                    *iterations,
                ));
                request.upsertions.push(upsertion);
            }
            alter(&mut brokers, args, "create", request)
        }
        UserCommand::Delete { name, mechanisms } => {
            let mechanisms = if mechanisms.is_empty() {
                described(&mut brokers, Some(name))?
                    .into_iter()
                    .flat_map(|(_, _, found)| found)
                    .filter_map(|(mechanism, _)| ScramMechanism::parse(&mechanism))
                    .collect()
            } else {
                parse(mechanisms)?
            };
            if mechanisms.is_empty() {
                return Err(Failed(format!("user {name} has no credentials")));
            }
            let mut request = AlterUserScramCredentialsRequest::default();
            for mechanism in mechanisms {
                let mut deletion = ScramCredentialDeletion::default();
                deletion.name = str_bytes(name);
                deletion.mechanism = mechanism.kafka_type();
                request.deletions.push(deletion);
            }
            alter(&mut brokers, args, "delete", request)
        }
        UserCommand::List => {
            let users = described(&mut brokers, None)?;
            let rows = users
                .iter()
                .map(|(user, _, mechanisms)| {
                    let listed: Vec<String> = mechanisms
                        .iter()
                        .map(|(name, iterations)| format!("{name} ({iterations})"))
                        .collect();
                    vec![user.clone(), listed.join(", ")]
                })
                .collect();
            let json = users
                .iter()
                .map(|(user, _, mechanisms)| {
                    let listed: Vec<_> = mechanisms
                        .iter()
                        .map(|(name, iterations)| json!({"mechanism": name, "iterations": iterations}))
                        .collect();
                    json!({"user": user, "credentials": listed})
                })
                .collect();
            emit(
                args,
                &["USER", "MECHANISMS (ITERATIONS)"],
                rows,
                serde_json::Value::Array(json),
            )
        }
    }
}

fn parse(names: &[String]) -> Result<Vec<ScramMechanism>, Failed> {
    if names.is_empty() {
        return Ok(ScramMechanism::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            ScramMechanism::parse(name)
                .ok_or_else(|| Failed(format!("{name}: expected SCRAM-SHA-256 or SCRAM-SHA-512")))
        })
        .collect()
}

/// (user, error code, [(mechanism, iterations)]).
type Described = (String, i16, Vec<(String, i32)>);

/// One `Described` per user (None: all users).
fn described(brokers: &mut Brokers, user: Option<&str>) -> Result<Vec<Described>, Failed> {
    let mut request = DescribeUserScramCredentialsRequest::default();
    request.users = user.map(|name| {
        let mut entry = UserName::default();
        entry.name = str_bytes(name);
        vec![entry]
    });
    let response: DescribeUserScramCredentialsResponse =
        brokers.controller()?.call(0, 0, &request)?;
    if response.error_code != 0 {
        return Err(Failed(crate::bench::client::error_text(
            response.error_code,
        )));
    }
    Ok(response
        .results
        .iter()
        .map(|result| {
            let mechanisms = result
                .credential_infos
                .iter()
                .map(|info| {
                    let name = ScramMechanism::from_kafka_type(info.mechanism).map_or_else(
                        || format!("mechanism {}", info.mechanism),
                        |m| m.name().to_string(),
                    );
                    (name, info.iterations)
                })
                .collect();
            (text(&result.user), result.error_code, mechanisms)
        })
        .collect())
}

fn alter(
    brokers: &mut Brokers,
    args: &ClientArgs,
    what: &str,
    request: AlterUserScramCredentialsRequest,
) -> Outcome {
    let response: AlterUserScramCredentialsResponse = brokers.controller()?.call(0, 0, &request)?;
    let outcomes = response
        .results
        .iter()
        .map(|result| {
            (
                text(&result.user),
                result.error_code,
                result.error_message.as_ref().map(text),
            )
        })
        .collect::<Vec<_>>();
    super::topic::item_outcomes(
        args,
        "USER",
        &format!("user {what}"),
        outcomes
            .iter()
            .map(|(user, code, message)| (user.clone(), *code, message.as_deref()))
            .collect(),
    )
}
