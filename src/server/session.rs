//! What a connection knows about its client, shared by its requests: the address, the
//! listener it came through (its name picks the addresses Metadata answers with; its protocol
//! says whether SASL must come first), the principal it acts as and, on SASL listeners, where
//! its authentication stands.
//!
//! SASL gate (Kafka's): on a SASL_PLAINTEXT or SASL_SSL listener, a connection may send only
//! ApiVersions, SaslHandshake and SaslAuthenticate until it has authenticated; anything else
//! closes it. With `connections.max.reauth.ms` (KIP-368) a session expires: the client
//! re-authenticates on the same connection (same mechanism, same principal), or its next
//! other request closes the connection. After a failed authentication nothing more is served.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use crate::config::SecurityProtocol;
use crate::security::sasl::{Exchange, Mechanism};
use crate::security::Principal;

/// One client listener as its connections see it.
#[derive(Debug)]
pub struct ListenerContext {
    pub name: String,
    pub protocol: SecurityProtocol,
}

pub struct Session {
    /// The client's address as Kafka reports it in groups (`/127.0.0.1`).
    pub client_host: Rc<str>,
    pub address: Option<IpAddr>,
    pub listener: Rc<ListenerContext>,
    principal: RefCell<Principal>,
    sasl: RefCell<Sasl>,
}

#[derive(Default)]
struct Sasl {
    /// The mechanism the connection authenticated with (re-authentication must keep it).
    authenticated: Option<Mechanism>,
    /// When the session expires (`connections.max.reauth.ms`); None: never.
    expires: Option<Instant>,
    /// An exchange in progress (between SaslHandshake and its last SaslAuthenticate).
    exchange: Option<Exchange>,
    /// SaslHandshake v0: the exchange's tokens arrive as bare frames, not SaslAuthenticate.
    raw_tokens: bool,
    failed: bool,
}

impl Session {
    pub fn new(
        client_host: Rc<str>,
        address: Option<IpAddr>,
        listener: Rc<ListenerContext>,
        principal: Principal,
    ) -> Self {
        Session {
            client_host,
            address,
            listener,
            principal: RefCell::new(principal),
            sasl: RefCell::new(Sasl::default()),
        }
    }

    pub fn principal(&self) -> Principal {
        self.principal.borrow().clone()
    }

    /// On a SASL listener, not authenticated (yet, or any more after a failure).
    pub fn unauthenticated(&self) -> bool {
        let sasl = self.sasl.borrow();
        self.listener.protocol.sasl() && (sasl.authenticated.is_none() || sasl.failed)
    }

    /// Whether the connection may send a request of `api` now; Err: why it is closed instead.
    pub fn admits(&self, api: ApiKey) -> Result<(), &'static str> {
        if !self.listener.protocol.sasl()
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
        {
            return Ok(());
        }
        let sasl = self.sasl.borrow();
        if sasl.failed {
            Err("SASL authentication failed")
        } else if sasl.authenticated.is_none() {
            Err("request before SASL authentication")
        } else if sasl
            .expires
            .is_some_and(|expires| Instant::now() >= expires)
        {
            Err("SASL session expired (connections.max.reauth.ms) without re-authentication")
        } else {
            Ok(())
        }
    }

    /// SaslHandshake: starts an exchange with `mechanism`. Err: ILLEGAL_SASL_STATE's reason.
    pub fn begin(&self, mechanism: Mechanism, raw_tokens: bool) -> Result<(), &'static str> {
        let mut sasl = self.sasl.borrow_mut();
        if sasl.failed || sasl.exchange.is_some() {
            return Err("a SASL exchange is already in progress");
        }
        if sasl.authenticated.is_some_and(|known| known != mechanism) {
            return Err("re-authentication must use the session's mechanism");
        }
        sasl.exchange = Some(Exchange::new(mechanism));
        sasl.raw_tokens = raw_tokens;
        Ok(())
    }

    /// The next frame is a bare SASL token (after SaslHandshake v0), not a Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        let sasl = self.sasl.borrow();
        sasl.raw_tokens && sasl.exchange.is_some()
    }

    /// SaslAuthenticate: the exchange in progress, taken for one step (put back with
    /// `resume` if it continues).
    pub fn take_exchange(&self) -> Option<Exchange> {
        self.sasl.borrow_mut().exchange.take()
    }

    pub fn resume(&self, exchange: Exchange) {
        self.sasl.borrow_mut().exchange = Some(exchange);
    }

    /// The exchange succeeded as `principal`, for `lifetime_ms` (0: no expiry). Err when a
    /// re-authentication names another principal (the session then fails).
    pub fn authenticated(
        &self,
        mechanism: Mechanism,
        principal: Principal,
        lifetime_ms: u64,
    ) -> Result<(), &'static str> {
        let mut sasl = self.sasl.borrow_mut();
        if sasl.authenticated.is_some() && *self.principal.borrow() != principal {
            sasl.failed = true;
            return Err("re-authentication as another principal");
        }
        sasl.authenticated = Some(mechanism);
        sasl.expires = (lifetime_ms > 0)
            .then(|| Instant::now() + std::time::Duration::from_millis(lifetime_ms));
        *self.principal.borrow_mut() = principal;
        Ok(())
    }

    /// The exchange failed: nothing more is served on this connection.
    pub fn fail(&self) {
        let mut sasl = self.sasl.borrow_mut();
        sasl.failed = true;
        sasl.exchange = None;
    }
}
