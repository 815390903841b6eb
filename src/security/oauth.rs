//! SASL/OAUTHBEARER (RFC 7628, KIP-255/KIP-768): the client sends a JWT; the broker validates it
//! locally against the keys of a JWKS (`sasl.oauthbearer.jwks.endpoint.url`, a `file:` URL, as
//! Kafka accepts), checks its signature (RS256/384/512, PS256/384/512, ES256, ES384; `none` and
//! HMAC are refused), its expiry and not-before (with `sasl.oauthbearer.clock.skew.seconds`), its
//! issuer and audience when configured (`sasl.oauthbearer.expected.issuer`,
//! `sasl.oauthbearer.expected.audience`), and takes the principal from the configured claim
//! (`sasl.oauthbearer.sub.claim.name`, default `sub`): `User:<claim>`.
//!
//! The JWKS is read at start and again every `sasl.oauthbearer.jwks.endpoint.refresh.ms` by a
//! thread of its own (file reads never run on a shard); shards take the current key set with
//! a generation check, like the TLS configuration. A token refused is answered as RFC 7628
//! says: an error JSON the client acknowledges with `0x01`, then the exchange fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::published::{Published, ShardCopy};

pub use crate::config::OAuthSettings;

/// One verification key of the JWKS.
#[derive(Debug, Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: &'static str, point: Vec<u8> },
}

/// The key set: by key id (`kid`); keys without one under "".
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: BTreeMap<String, Key>,
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "not base64url".to_string())
}

impl Jwks {
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let document: Value = serde_json::from_str(text).map_err(|e| format!("JWKS: {e}"))?;
        let keys = document["keys"].as_array().ok_or("JWKS: no `keys` array")?;
        let mut jwks = Jwks::default();
        for key in keys {
            let kid = key["kid"].as_str().unwrap_or_default().to_string();
            if key["use"].as_str().is_some_and(|used| used != "sig") {
                continue;
            }
            let parsed = match key["kty"].as_str() {
                Some("RSA") => Key::Rsa {
                    n: b64(key["n"].as_str().ok_or("JWKS: RSA key without n")?)?,
                    e: b64(key["e"].as_str().ok_or("JWKS: RSA key without e")?)?,
                },
                Some("EC") => {
                    let curve = match key["crv"].as_str() {
                        Some("P-256") => "P-256",
                        Some("P-384") => "P-384",
                        _ => continue,
                    };
                    let mut point = vec![0x04];
                    point.extend(b64(key["x"].as_str().ok_or("JWKS: EC key without x")?)?);
                    point.extend(b64(key["y"].as_str().ok_or("JWKS: EC key without y")?)?);
                    Key::Ec { curve, point }
                }
                _ => continue,
            };
            jwks.keys.insert(kid, parsed);
        }
        if jwks.keys.is_empty() {
            return Err("JWKS: no usable signing key (RSA or EC P-256/P-384)".to_string());
        }
        Ok(jwks)
    }

    /// Reads a `file:` URL (`file:///path` or `file:/path`).
    pub fn load(url: &str) -> Result<Jwks, String> {
        let path = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
            .ok_or_else(|| {
                format!("sasl.oauthbearer.jwks.endpoint.url {url}: only file: URLs are supported")
            })?;
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("sasl.oauthbearer.jwks.endpoint.url {url}: {error}"))?;
        Jwks::parse(&text)
    }
}

/// A validated token: its principal name and expiry.
#[derive(Debug, PartialEq, Eq)]
pub struct Validated {
    pub principal: String,
    pub expires_at_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Validates a compact JWS against `jwks` and `settings`, at `now_ms`.
pub fn validate(
    token: &str,
    jwks: &Jwks,
    settings: &OAuthSettings,
    now_ms: u64,
) -> Result<Validated, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (header.payload.signature)".to_string());
    };
    let header_json: Value =
        serde_json::from_slice(&b64(header)?).map_err(|_| "JWT header is not JSON")?;
    let claims: Value =
        serde_json::from_slice(&b64(payload)?).map_err(|_| "JWT payload is not JSON")?;
    let signature = b64(signature)?;
    let algorithm = header_json["alg"].as_str().unwrap_or_default();
    let kid = header_json["kid"].as_str().unwrap_or_default();
    let key = jwks
        .keys
        .get(kid)
        .or_else(|| {
            (jwks.keys.len() == 1)
                .then(|| jwks.keys.values().next())
                .flatten()
        })
        .ok_or_else(|| format!("no JWKS key with kid `{kid}`"))?;
    let signed = &token.as_bytes()[..header.len() + 1 + payload.len()];
    let verified = match (algorithm, key) {
        ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512", Key::Rsa { n, e }) => {
            let parameters = match algorithm {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }
                .verify(parameters, signed, &signature)
                .is_ok()
        }
        (
            "ES256",
            Key::Ec {
                curve: "P-256",
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(signed, &signature)
            .is_ok(),
        (
            "ES384",
            Key::Ec {
                curve: "P-384",
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
            .verify(signed, &signature)
            .is_ok(),
        (algorithm, _) => {
            return Err(format!(
                "algorithm `{algorithm}` is not accepted for this key"
            ))
        }
    };
    if !verified {
        return Err("bad signature".to_string());
    }
    let skew_ms = settings.clock_skew_seconds.saturating_mul(1000);
    let expires_at_ms = claims["exp"]
        .as_f64()
        .filter(|exp| *exp > 0.0)
        .map(|exp| (exp * 1000.0) as u64)
        .ok_or("token has no exp claim")?;
    if expires_at_ms.saturating_add(skew_ms) <= now_ms {
        return Err("token expired".to_string());
    }
    if let Some(not_before) = claims["nbf"].as_f64() {
        if (not_before * 1000.0) as u64 > now_ms.saturating_add(skew_ms) {
            return Err("token not valid yet (nbf)".to_string());
        }
    }
    if let Some(issuer) = &settings.expected_issuer {
        if claims["iss"].as_str() != Some(issuer.as_str()) {
            return Err(format!("issuer is not {issuer}"));
        }
    }
    if !settings.expected_audience.is_empty() {
        let audiences: Vec<&str> = match &claims["aud"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !settings
            .expected_audience
            .iter()
            .any(|wanted| audiences.contains(&wanted.as_str()))
        {
            return Err("no expected audience in aud".to_string());
        }
    }
    let principal = claims[settings.sub_claim_name.as_str()]
        .as_str()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("token has no `{}` claim", settings.sub_claim_name))?;
    Ok(Validated {
        principal: principal.to_string(),
        expires_at_ms,
    })
}

/// The token of an OAUTHBEARER client-first message: `gs2-header \x01auth=Bearer <token>\x01
/// (key=value\x01)* \x01`.
pub fn bearer_token(message: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(message).ok()?;
    let (gs2, rest) = text.split_once('\x01')?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) {
        return None;
    }
    rest.split('\x01')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| {
            auth.strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The error JSON RFC 7628 sends before failing.
pub const INVALID_TOKEN_JSON: &[u8] = br#"{"status":"invalid_token"}"#;

/// The key set in force, taken by shards as they authenticate (`published.rs`).
static JWKS: Published<Jwks> = Published::new();

/// At start, when OAUTHBEARER is enabled: loads the JWKS and starts the refresh thread.
pub fn install(settings: &OAuthSettings) -> Result<(), String> {
    let url = settings
        .jwks_endpoint_url
        .clone()
        .ok_or("OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a file: URL of the JWKS)")?;
    JWKS.publish(Jwks::load(&url)?);
    let every = Duration::from_millis(settings.jwks_refresh_ms.max(1000));
    std::thread::Builder::new()
        .name("sluice-jwks".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            match Jwks::load(&url) {
                Ok(jwks) => JWKS.publish(jwks),
                Err(error) => log::warn!("JWKS refresh failed, keeping the previous keys: {error}"),
            }
        })
        .map_err(|error| format!("cannot start the JWKS refresh thread: {error}"))?;
    Ok(())
}

/// One shard's copy of the key set.
#[derive(Default)]
pub struct ShardJwks(ShardCopy<Jwks>);

impl ShardJwks {
    pub fn current(&self) -> Option<Arc<Jwks>> {
        self.0.current(&JWKS)
    }
}

/// Validates the client-first message now.
pub fn authenticate(
    message: &[u8],
    jwks: &Jwks,
    settings: &OAuthSettings,
) -> Result<Validated, String> {
    let token = bearer_token(message).ok_or("malformed OAUTHBEARER message")?;
    validate(token, jwks, settings, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_gs2_message() {
        assert_eq!(
            bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"),
            Some("abc.def.ghi")
        );
        assert_eq!(
            bearer_token(b"n,a=alice,\x01host=x\x01auth=Bearer t.u.v\x01\x01"),
            Some("t.u.v")
        );
        for bad in [
            &b""[..],
            b"\x01auth=Bearer x\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"\xff",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_tokens_and_key_sets_are_refused() {
        assert!(Jwks::parse("{}").is_err());
        assert!(Jwks::parse(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#).is_err());
        let jwks =
            Jwks::parse(r#"{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}"#).unwrap();
        let settings = OAuthSettings::default();
        for token in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AA"] {
            assert!(validate(token, &jwks, &settings, 0).is_err(), "{token}");
        }
        // alg none is never accepted.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"x","exp":9999999999}"#)
        );
        assert!(validate(&none, &jwks, &settings, 0).is_err());
    }
}
