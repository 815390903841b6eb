//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them, and the
//! credentials they check. A user's credential is what Kafka stores: salt, iteration count,
//! StoredKey and ServerKey, never the password. AlterUserScramCredentials carries a salted
//! password (the client salts it); `sluice user create` and `SLUICE_BOOTSTRAP_USER` salt here.
//! PLAIN is checked against the same credential (as Redpanda does): one user store.
//!
//! An unknown user gets the same exchange as a known one, with a salt derived from the name,
//! and fails at the proof: the answer does not tell which users exist.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Kafka's bounds on SCRAM iterations (ScramMechanism.minIterations / maxIterations).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;
/// Salt length for credentials salted here.
const SALT_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<ScramMechanism> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Kafka's wire value (AlterUserScramCredentials / DescribeUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(value: i8) -> Option<ScramMechanism> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.kafka_type() == value)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    pub fn output_bytes(self) -> usize {
        self.digest().output_len()
    }
}

/// One user's credential for one mechanism (base64 fields: readable in the metadata file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub iterations: u32,
    pub salt: String,
    pub stored_key: String,
    pub server_key: String,
}

fn mac(algorithm: hmac::Algorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(algorithm, key), data)
        .as_ref()
        .to_vec()
}

/// Hi(password, salt, iterations) of RFC 5802: PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut salted = vec![0u8; mechanism.output_bytes()];
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one");
    pbkdf2::derive(mechanism.pbkdf2(), iterations, salt, password, &mut salted);
    salted
}

impl ScramCredential {
    /// From a salted password, as AlterUserScramCredentials carries it.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mac(mechanism.hmac(), salted, b"Client Key");
        let stored_key = digest::digest(mechanism.digest(), &client_key);
        let server_key = mac(mechanism.hmac(), salted, b"Server Key");
        ScramCredential {
            mechanism,
            iterations,
            salt: BASE64.encode(salt),
            stored_key: BASE64.encode(stored_key.as_ref()),
            server_key: BASE64.encode(server_key),
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, String> {
        let mut salt = [0u8; SALT_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| "no randomness for a salt".to_string())?;
        let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
        Ok(Self::from_salted_password(
            mechanism, &salt, &salted, iterations,
        ))
    }

    fn salt_bytes(&self) -> Vec<u8> {
        BASE64.decode(&self.salt).unwrap_or_default()
    }

    /// PLAIN: whether `password` derives this credential's StoredKey (constant time).
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = salted_password(
            self.mechanism,
            password.as_bytes(),
            &self.salt_bytes(),
            self.iterations,
        );
        let derived = Self::from_salted_password(
            self.mechanism,
            &self.salt_bytes(),
            &salted,
            self.iterations,
        );
        let (Ok(expected), Ok(derived)) = (
            BASE64.decode(&self.stored_key),
            BASE64.decode(&derived.stored_key),
        ) else {
            return false;
        };
        ring_constant_time_eq(&expected, &derived)
    }
}

fn ring_constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What one SASL step answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send the final message.
    Success { user: String, response: Vec<u8> },
    /// Refused; the reason is for the log, the client gets Kafka's generic message.
    Failure(String),
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
    /// The user the client named (once its first message is read).
    user: Option<String>,
}

enum State {
    Initial,
    SentFirst {
        user: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: Option<ScramCredential>,
    },
    Finished,
}

/// A random secret per process: an unknown user's salt is an HMAC of the name under it, the same
/// on every attempt (as a real user's is) and not computable from outside.
fn unknown_user_secret() -> &'static [u8] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        secret
    })
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Option<String> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(position) = rest.find('=') {
        decoded.push_str(&rest[..position]);
        let escape = rest.get(position..position + 3)?;
        decoded.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[position + 3..];
    }
    decoded.push_str(rest);
    Some(decoded)
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::Initial,
            user: None,
        }
    }

    /// The user the client named, once known.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// One client message. `lookup` finds the user's credential for this mechanism.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Step {
        let Ok(text) = std::str::from_utf8(message) else {
            self.state = State::Finished;
            return Step::Failure("SCRAM message is not UTF-8".to_string());
        };
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Initial => self.client_first(text, lookup),
            State::SentFirst {
                user,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
                credential,
            } => {
                let exchange = Exchange {
                    gs2_header: &gs2_header,
                    client_first_bare: &client_first_bare,
                    server_first: &server_first,
                    nonce: &nonce,
                };
                self.client_final(text, user, exchange, credential)
            }
            State::Finished => Step::Failure("SCRAM exchange already finished".to_string()),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Step {
        // gs2-header: "n,," or "y,," (no channel binding), optionally with "a=authzid".
        let mut parts = text.splitn(3, ',');
        let (Some(binding), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Step::Failure("malformed SCRAM client-first message".to_string());
        };
        if binding != "n" && binding != "y" {
            return Step::Failure("SCRAM channel binding is not supported".to_string());
        }
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", name)) => user = decode_saslname(name),
                Some(("r", nonce)) => client_nonce = Some(nonce.to_string()),
                Some(("m", _)) => {
                    return Step::Failure("SCRAM mandatory extensions are not supported".into())
                }
                Some(("tokenauth", _)) => {
                    return Step::Failure("delegation tokens are not supported".to_string())
                }
                _ => {}
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Step::Failure("SCRAM client-first message lacks n= or r=".to_string());
        };
        if user.is_empty() || client_nonce.is_empty() || !client_nonce.is_ascii() {
            return Step::Failure("SCRAM user or nonce is empty".to_string());
        }
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_saslname(authzid).as_deref() != Some(user.as_str()) {
                return Step::Failure(format!("SCRAM authzid differs from user {user}"));
            }
        } else if !authzid.is_empty() {
            return Step::Failure("malformed SCRAM gs2 header".to_string());
        }
        self.user = Some(user.clone());
        let credential = lookup(&user).filter(|c| c.mechanism == self.mechanism);
        // An unknown user is answered like a known one (salt from its name), and fails later.
        let (salt, iterations) = match &credential {
            Some(credential) => (credential.salt.clone(), credential.iterations),
            None => {
                let salt = mac(hmac::HMAC_SHA256, unknown_user_secret(), user.as_bytes());
                (BASE64.encode(&salt[..SALT_BYTES]), ITERATIONS_MIN)
            }
        };
        let mut random = [0u8; 18];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).is_err() {
            return Step::Failure("no randomness for a nonce".to_string());
        }
        let nonce = format!("{client_nonce}{}", BASE64.encode(random));
        let server_first = format!("r={nonce},s={salt},i={iterations}");
        self.state = State::SentFirst {
            user,
            gs2_header: format!("{binding},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            credential,
        };
        Step::Continue(server_first.into_bytes())
    }

    fn client_final(
        &mut self,
        text: &str,
        user: String,
        exchange: Exchange<'_>,
        credential: Option<ScramCredential>,
    ) -> Step {
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return Step::Failure("SCRAM client-final message lacks a proof".to_string());
        };
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", value)) => binding = Some(value),
                Some(("r", value)) => nonce = Some(value),
                _ => {}
            }
        }
        if binding != Some(BASE64.encode(exchange.gs2_header).as_str()) {
            return Step::Failure("SCRAM channel binding differs from the gs2 header".into());
        }
        // Kafka accepts a nonce that ends with the server's (librdkafka sends its own nonce
        // again in front of it); the proof covers the message as sent either way.
        if !nonce.is_some_and(|nonce| nonce.ends_with(exchange.nonce)) {
            return Step::Failure("SCRAM nonce differs from the server's".to_string());
        }
        let Some(credential) = credential else {
            return Step::Failure(format!("unknown user {user}"));
        };
        let (Ok(proof), Ok(stored_key), Ok(server_key)) = (
            BASE64.decode(proof),
            BASE64.decode(&credential.stored_key),
            BASE64.decode(&credential.server_key),
        ) else {
            return Step::Failure("SCRAM proof is not base64".to_string());
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            exchange.client_first_bare, exchange.server_first
        );
        let signature = mac(self.mechanism.hmac(), &stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Step::Failure(format!("wrong password for {user}"));
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let derived = digest::digest(self.mechanism.digest(), &client_key);
        if !ring_constant_time_eq(derived.as_ref(), &stored_key) {
            return Step::Failure(format!("wrong password for {user}"));
        }
        let verifier = mac(self.mechanism.hmac(), &server_key, auth_message.as_bytes());
        Step::Success {
            user,
            response: format!("v={}", BASE64.encode(verifier)).into_bytes(),
        }
    }
}

struct Exchange<'a> {
    gs2_header: &'a str,
    client_first_bare: &'a str,
    server_first: &'a str,
    nonce: &'a str,
}

/// The client side, for `sluice`'s own commands and the tests: (first message, state).
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> ScramClient {
        let mut random = [0u8; 18];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
        let nonce = BASE64.encode(random);
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={name},r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The answer to the server-first message.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "server-first is not UTF-8")?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in text.split(',') {
            match attribute.split_once('=') {
                Some(("r", value)) => nonce = Some(value),
                Some(("s", value)) => salt = BASE64.decode(value).ok(),
                Some(("i", value)) => iterations = value.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(format!("malformed server-first message: {text}"));
        };
        if !nonce.starts_with(&self.nonce)
            || !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations)
        {
            return Err("server-first message: bad nonce or iteration count".to_string());
        }
        let salted = salted_password(self.mechanism, self.password.as_bytes(), &salt, iterations);
        let client_key = mac(self.mechanism.hmac(), &salted, b"Client Key");
        let stored_key = digest::digest(self.mechanism.digest(), &client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode("n,,"));
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = mac(
            self.mechanism.hmac(),
            stored_key.as_ref(),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mac(self.mechanism.hmac(), &salted, b"Server Key");
        self.server_signature = Some(mac(
            self.mechanism.hmac(),
            &server_key,
            auth_message.as_bytes(),
        ));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (the server proves it knows the credential).
    pub fn verify_server(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "server-final is not UTF-8")?;
        let Some(verifier) = text.strip_prefix("v=").and_then(|v| BASE64.decode(v).ok()) else {
            return Err(format!("server refused: {text}"));
        };
        match &self.server_signature {
            Some(expected) if ring_constant_time_eq(expected, &verifier) => Ok(()),
            _ => Err("the server's signature does not match".to_string()),
        }
    }
}

/// PLAIN (RFC 4616): `authzid NUL user NUL password`. Some((user, password)).
pub fn parse_plain(message: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(mechanism: ScramMechanism, stored: &str, attempt: &str) -> Step {
        let credential = ScramCredential::from_password(mechanism, stored, ITERATIONS_MIN).unwrap();
        let lookup = |user: &str| (user == "alice").then(|| credential.clone());
        let mut server = ScramServer::new(mechanism);
        let mut client = ScramClient::new(mechanism, "alice", attempt);
        let Step::Continue(server_first) = server.step(&client.first_message(), lookup) else {
            panic!("first step");
        };
        let client_final = client.final_message(&server_first).unwrap();
        let step = server.step(&client_final, lookup);
        if let Step::Success { response, .. } = &step {
            client.verify_server(response).unwrap();
        }
        step
    }

    #[test]
    fn right_password_authenticates_and_wrong_one_fails() {
        for mechanism in ScramMechanism::ALL {
            assert!(matches!(
                exchange(mechanism, "secret", "secret"),
                Step::Success { ref user, .. } if user == "alice"
            ));
            assert!(matches!(
                exchange(mechanism, "secret", "guess"),
                Step::Failure(_)
            ));
        }
    }

    #[test]
    fn unknown_users_look_like_known_ones_until_the_proof() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let mut client = ScramClient::new(ScramMechanism::Sha256, "mallory", "x");
        let Step::Continue(first) = server.step(&client.first_message(), |_| None) else {
            panic!("an unknown user still gets a server-first message");
        };
        let last = client.final_message(&first).unwrap();
        assert!(matches!(server.step(&last, |_| None), Step::Failure(_)));
    }

    #[test]
    fn malformed_messages_fail_without_panicking() {
        for message in [
            &b""[..],
            b"n",
            b"p=x,,n=a,r=b",
            b"n,,n=a",
            b"n,,r=1",
            b"\xff\xfe",
            b"n,,n=a=2,r=x",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            assert!(
                matches!(server.step(message, |_| None), Step::Failure(_)),
                "{message:?}"
            );
        }
        assert_eq!(decode_saslname("a=2Cb=3D"), Some("a,b=".to_string()));
        assert_eq!(parse_plain(b"\0bob\0pw"), Some(("bob".into(), "pw".into())));
        assert_eq!(parse_plain(b"eve\0bob\0pw"), None);
    }

    #[test]
    fn plain_checks_against_the_scram_credential() {
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha512, "pw", ITERATIONS_MIN).unwrap();
        assert!(credential.verify_password("pw"));
        assert!(!credential.verify_password("pw2"));
    }
}
