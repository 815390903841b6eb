//! Security: who a client is and what it may do. TLS for the SSL and SASL_SSL listeners
//! (`tls.rs`, rustls; `x509.rs` reads a client certificate's subject), and the principal a
//! connection acts as; SASL (`sasl.rs`: PLAIN and SCRAM, `scram.rs`) checked against the
//! user store in cluster metadata; ACLs and the authorizer (`acl.rs`). Kafka's model and names throughout: a principal is `User:<name>`;
//! unauthenticated connections are `User:ANONYMOUS`.
//!
//! Layer: beside `replication/` (DESIGN §7 line 5); `cluster/` stores users and ACLs with
//! these types, `server/` applies them per connection and per request.

pub mod acl;
pub mod ktls;
pub mod oauth;
pub mod published;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod x509;

use std::fmt;

/// A Kafka principal (`User:alice`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub const USER: &'static str = "User";

    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: Self::USER.to_string(),
            name: name.into(),
        }
    }

    /// The principal of an unauthenticated connection (PLAINTEXT, or SSL without a client
    /// certificate).
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// `Type:name` as Kafka writes it (ACLs, `super.users`).
    pub fn parse(text: &str) -> Option<Principal> {
        let (kind, name) = text.trim().split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Principal {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.kind, self.name)
    }
}
