//! SaslAuthenticate (v0-v2): one step of the exchange SaslHandshake started, checked against the
//! user store in this shard's copy of cluster metadata. Success sets the connection's
//! principal and, from v1, tells the client its session lifetime (`connections.max.reauth.ms`,
//! KIP-368). Failure is answered SASL_AUTHENTICATION_FAILED after
//! `connection.failed.authentication.delay.ms`, and the connection closes once the answer is
//! written. Past `FAILURES_PER_MINUTE_MAX` failures for one user from one address on this
//! shard within a minute, that user's attempts from that address fail even with the right
//! password until the minute ends: a guesser learns nothing more, and cannot lock the user out
//! for anyone else. The messages sent back never say whether the user exists.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::sasl::Outcome;
use crate::server::session::Session;
use crate::shard::Shard;

/// Failed authentications per user and address per minute on one shard before that user's
/// attempts from that address fail regardless.
pub const FAILURES_PER_MINUTE_MAX: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// (address, user) pairs remembered at most (expired windows are dropped first).
const ENTRIES_MAX: usize = 10_000;

/// Recent failed authentications per (address, user), on one shard.
#[derive(Default)]
pub struct AuthFailures {
    by_address: RefCell<HashMap<(IpAddr, String), (Instant, u32)>>,
}

impl AuthFailures {
    fn blocked(&self, address: Option<IpAddr>, user: Option<&str>) -> bool {
        let (Some(address), Some(user)) = (address, user) else {
            return false;
        };
        self.by_address
            .borrow()
            .get(&(address, user.to_string()))
            .is_some_and(|(since, count)| {
                since.elapsed() < WINDOW && *count >= FAILURES_PER_MINUTE_MAX
            })
    }

    fn record(&self, address: Option<IpAddr>, user: Option<&str>) {
        let (Some(address), Some(user)) = (address, user) else {
            return;
        };
        let mut by_address = self.by_address.borrow_mut();
        if by_address.len() >= ENTRIES_MAX {
            by_address.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        if by_address.len() >= ENTRIES_MAX {
            // Still full of live windows (someone cycling made-up names): the oldest goes, so
            // new failures are always counted.
            if let Some(oldest) = by_address
                .iter()
                .min_by_key(|(_, (since, _))| *since)
                .map(|(key, _)| key.clone())
            {
                by_address.remove(&oldest);
            }
        }
        let entry = by_address
            .entry((address, user.to_string()))
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// KIP-368: with `connections.max.reauth.ms` set, a session lasts that long, or until its
/// credential expires (an OAUTHBEARER token's exp) if sooner; 0 keeps sessions forever.
fn lifetime_ms(max_reauth_ms: u64, expires_at_ms: Option<u64>) -> u64 {
    if max_reauth_ms == 0 {
        return 0;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    match expires_at_ms {
        Some(expires) => max_reauth_ms.min(expires.saturating_sub(now_ms).max(1)),
        None => max_reauth_ms,
    }
}

/// The outcome of one token: Ok(bytes to send back, the session lifetime once authenticated),
/// or Err(error code and message) after which the connection closes.
async fn step(
    shard: &Rc<Shard>,
    session: &Session,
    token: &[u8],
) -> Result<(Vec<u8>, Option<u64>), (i16, String)> {
    let Some(mut exchange) = session.take_exchange() else {
        session.fail();
        return Err((
            error::ILLEGAL_SASL_STATE,
            "SaslAuthenticate without a SaslHandshake first".to_string(),
        ));
    };
    let mechanism = exchange.mechanism;
    let failures = shard.service::<AuthFailures>();
    let metadata = crate::cluster::state::of(shard).metadata();
    let jwks = shard
        .service::<crate::security::oauth::ShardJwks>()
        .current();
    let oauth = jwks.as_deref().map(|jwks| (jwks, &shard.config.sasl.oauth));
    let outcome = if token.len() as u64 > shard.config.sasl.max_receive_size {
        Outcome::Failed("token larger than sasl.server.max.receive.size".to_string())
    } else {
        exchange.step(
            token,
            |user| metadata.users.get(user).cloned().unwrap_or_default(),
            oauth,
        )
    };
    let user = exchange.user().map(str::to_string);
    // Checked after the step, so a blocked guesser still gets an answer only at the end.
    let outcome = match outcome {
        Outcome::Authenticated { .. } if failures.blocked(session.address, user.as_deref()) => {
            Outcome::Failed(
                "too many failed authentications for this user from this address".into(),
            )
        }
        outcome => outcome,
    };
    let outcome = match outcome {
        Outcome::Continue(bytes) => {
            session.resume(exchange);
            return Ok((bytes, None));
        }
        Outcome::Authenticated {
            principal,
            response,
            expires_at_ms,
        } => {
            let lifetime = lifetime_ms(shard.config.sasl.max_reauth_ms, expires_at_ms);
            session
                .authenticated(mechanism, principal, lifetime)
                .map(|()| (response, lifetime))
                .map_err(str::to_string)
        }
        Outcome::Failed(reason) => Err(reason),
    };
    match outcome {
        Ok((response, lifetime)) => {
            crate::metrics::security_event(("sasl", mechanism.name(), "success"));
            Ok((response, Some(lifetime)))
        }
        Err(reason) => {
            crate::metrics::security_event(("sasl", mechanism.name(), "failure"));
            crate::warn_limited!(
                "{}: SASL {} authentication failed: {reason}; closing",
                session.client_host,
                mechanism.name()
            );
            failures.record(session.address, user.as_deref());
            session.fail();
            let delay = shard.config.sasl.failed_authentication_delay_ms;
            glommio::timer::sleep(Duration::from_millis(delay)).await;
            Err((
                error::SASL_AUTHENTICATION_FAILED,
                format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                    mechanism.name()
                ),
            ))
        }
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: SaslAuthenticateRequest = request.decode()?;
    let mut response = SaslAuthenticateResponse::default();
    match step(shard, &request.session, &body.auth_bytes).await {
        Ok((bytes, lifetime)) => {
            response.auth_bytes = Bytes::from(bytes);
            response.session_lifetime_ms = lifetime.unwrap_or(0) as i64;
            request.respond(&response)
        }
        Err((code, message)) => {
            response.error_code = code;
            response.error_message = Some(StrBytes::from_string(message));
            let mut frame = request.respond(&response)?;
            if let Some(frame) = &mut frame {
                frame.close_after = true;
            }
            Ok(frame)
        }
    }
}

/// A bare token after SaslHandshake v0: answered with a bare size-prefixed token; a failure
/// closes the connection without an answer (Kafka's v0 behaviour).
pub async fn raw_token(
    shard: &Rc<Shard>,
    session: &Session,
    token: &[u8],
) -> Result<Option<ResponseFrame>, FrameError> {
    match step(shard, session, token).await {
        Ok((bytes, _)) => {
            let mut framed = bytes::BytesMut::with_capacity(4 + bytes.len());
            bytes::BufMut::put_i32(&mut framed, bytes.len() as i32);
            framed.extend_from_slice(&bytes);
            Ok(Some(ResponseFrame {
                chunks: vec![framed.freeze()],
                close_after: false,
            }))
        }
        Err((_, message)) => Err(FrameError::Refused {
            api: kafka_protocol::messages::ApiKey::SaslAuthenticate,
            reason: message,
        }),
    }
}
