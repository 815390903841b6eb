//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: the mechanisms (`sasl.enabled.mechanisms`:
//! PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER) and one connection's exchange. Credentials come from
//! the user store in cluster metadata (each shard's own copy, looked up without a lock); PLAIN
//! checks the password against the user's SCRAM credential. The Kafka side (SaslHandshake,
//! SaslAuthenticate, re-authentication, failure delay) is in `server/handlers/sasl_*.rs`.

use super::scram::{self, ScramCredential, ScramMechanism, ScramServer, Step};
use super::Principal;

/// A SASL mechanism Sluice implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::Scram(ScramMechanism::Sha256),
        Mechanism::Scram(ScramMechanism::Sha512),
        Mechanism::OAuthBearer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(mechanism) => mechanism.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name.trim())
    }
}

/// What a step of the exchange answers.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes; the client answers with another SaslAuthenticate.
    Continue(Vec<u8>),
    /// Authenticated: send these bytes (SCRAM's server-final; empty for PLAIN and
    /// OAUTHBEARER). `expires_at_ms`: when the credential itself expires (a token's exp).
    Authenticated {
        principal: Principal,
        response: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// Refused; the reason is for the broker's log only.
    Failed(String),
}

/// One connection's authentication exchange with its chosen mechanism.
pub struct Exchange {
    pub mechanism: Mechanism,
    scram: Option<ScramServer>,
    /// PLAIN: the user of the token.
    plain_user: Option<String>,
    /// OAUTHBEARER: the token was refused and the error JSON sent; the client's `0x01` ends it.
    oauth_refused: Option<String>,
    finished: bool,
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange {
            mechanism,
            scram: match mechanism {
                Mechanism::Scram(scram) => Some(ScramServer::new(scram)),
                Mechanism::Plain | Mechanism::OAuthBearer => None,
            },
            plain_user: None,
            oauth_refused: None,
            finished: false,
        }
    }

    /// The user the client named so far (None before its first token, or if it was unreadable).
    pub fn user(&self) -> Option<&str> {
        match &self.scram {
            Some(server) => server.user(),
            None => self.plain_user.as_deref(),
        }
    }

    /// One client token. `credentials` returns a user's SCRAM credentials (empty: no such user);
    /// `oauth` is the key set and settings OAUTHBEARER checks tokens with (None: not set up).
    pub fn step(
        &mut self,
        token: &[u8],
        credentials: impl Fn(&str) -> Vec<ScramCredential>,
        oauth: Option<(&super::oauth::Jwks, &super::oauth::OAuthSettings)>,
    ) -> Outcome {
        if self.finished {
            return Outcome::Failed("SASL exchange already finished".to_string());
        }
        let outcome = match (self.mechanism, &mut self.scram) {
            (Mechanism::Plain, _) => {
                self.plain_user = scram::parse_plain(token).map(|(user, _)| user);
                plain(token, &credentials)
            }
            (Mechanism::OAuthBearer, _) => {
                if let Some(reason) = self.oauth_refused.take() {
                    // The client acknowledged the error JSON (RFC 7628 §3.2.3).
                    Outcome::Failed(reason)
                } else {
                    let checked = match oauth {
                        Some((jwks, settings)) => super::oauth::authenticate(token, jwks, settings),
                        None => Err("OAUTHBEARER has no JWKS configured".to_string()),
                    };
                    match checked {
                        Ok(valid) => Outcome::Authenticated {
                            principal: Principal::user(valid.principal),
                            response: Vec::new(),
                            expires_at_ms: Some(valid.expires_at_ms),
                        },
                        Err(reason) => {
                            self.oauth_refused = Some(reason);
                            return Outcome::Continue(super::oauth::INVALID_TOKEN_JSON.to_vec());
                        }
                    }
                }
            }
            (Mechanism::Scram(mechanism), Some(server)) => {
                let lookup = |user: &str| {
                    credentials(user)
                        .into_iter()
                        .find(|credential| credential.mechanism == mechanism)
                };
                match server.step(token, lookup) {
                    Step::Continue(bytes) => return Outcome::Continue(bytes),
                    Step::Success { user, response } => Outcome::Authenticated {
                        principal: Principal::user(user),
                        response,
                        expires_at_ms: None,
                    },
                    Step::Failure(reason) => Outcome::Failed(reason),
                }
            }
            (Mechanism::Scram(_), None) => Outcome::Failed("no SCRAM state".to_string()),
        };
        self.finished = true;
        outcome
    }
}

fn plain(token: &[u8], credentials: &impl Fn(&str) -> Vec<ScramCredential>) -> Outcome {
    let Some((user, password)) = scram::parse_plain(token) else {
        return Outcome::Failed("malformed PLAIN message".to_string());
    };
    // The strongest credential the user has; an unknown user still costs one derivation, so
    // timing does not tell which users exist.
    let stored = credentials(&user).into_iter().max_by_key(|c| c.mechanism);
    let verified = match &stored {
        Some(credential) => credential.verify_password(&password),
        None => {
            let _ = scram::salted_password(
                ScramMechanism::Sha512,
                password.as_bytes(),
                user.as_bytes(),
                scram::ITERATIONS_MIN,
            );
            false
        }
    };
    if verified {
        Outcome::Authenticated {
            principal: Principal::user(user),
            response: Vec::new(),
            expires_at_ms: None,
        }
    } else if stored.is_none() {
        Outcome::Failed(format!("unknown user {user}"))
    } else {
        Outcome::Failed(format!("wrong password for {user}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_uses_the_scram_store() {
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha256, "pw", scram::ITERATIONS_MIN)
                .unwrap();
        let store = |user: &str| {
            if user == "bob" {
                vec![credential.clone()]
            } else {
                Vec::new()
            }
        };
        let mut exchange = Exchange::new(Mechanism::Plain);
        assert!(matches!(
            exchange.step(b"\0bob\0pw", store, None),
            Outcome::Authenticated { ref principal, .. } if principal.to_string() == "User:bob"
        ));
        assert!(
            matches!(exchange.step(b"\0bob\0pw", store, None), Outcome::Failed(_)),
            "one shot"
        );
        for token in [&b"\0bob\0nope"[..], b"\0eve\0pw", b"garbage"] {
            assert!(matches!(
                Exchange::new(Mechanism::Plain).step(token, store, None),
                Outcome::Failed(_)
            ));
        }
        for name in crate::config::security::SASL_MECHANISMS {
            assert_eq!(Mechanism::parse(name).map(Mechanism::name), Some(*name));
        }
    }
}
