//! The security keys' values: TLS (`ssl.*`), SASL (`sasl.*`) and the authorizer, kept as Kafka names them. Their meaning is
//! applied in `security/`; here they are only recorded and checked for form.

use std::path::PathBuf;

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(value: &str) -> Result<ClientAuth, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!("`{other}`: expected none, requested or required")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// The TLS settings of every SSL and SASL_SSL listener (Kafka's `ssl.*` keys, PEM only).
#[derive(Debug, Clone, PartialEq)]
pub struct SslSettings {
    /// `ssl.keystore.location`: one PEM file holding the private key and its certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`: the same, inline.
    pub keystore_certificate_chain: Option<String>,
    pub keystore_key: Option<String>,
    /// `ssl.truststore.location` / `ssl.truststore.certificates`: the CAs client certificates
    /// are checked against (needed when `ssl.client.auth` is not none).
    pub truststore_location: Option<PathBuf>,
    pub truststore_certificates: Option<String>,
    pub client_auth: ClientAuth,
    /// `ssl.endpoint.identification.algorithm`: `https` (true) checks that a peer node's
    /// certificate names the address it was reached at; empty (false) checks the chain only.
    pub endpoint_identification: bool,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3.
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl.ktls.enable` (Sluice's key): hand the session keys to the kernel after the
    /// handshake where it supports TLS offload.
    pub ktls: bool,
}

impl Default for SslSettings {
    fn default() -> SslSettings {
        SslSettings {
            keystore_location: None,
            keystore_certificate_chain: None,
            keystore_key: None,
            truststore_location: None,
            truststore_certificates: None,
            client_auth: ClientAuth::None,
            endpoint_identification: true,
            tls12: true,
            tls13: true,
            ktls: true,
        }
    }
}

impl SslSettings {
    pub fn enabled_protocols_text(&self) -> String {
        let mut names = Vec::new();
        if self.tls12 {
            names.push("TLSv1.2");
        }
        if self.tls13 {
            names.push("TLSv1.3");
        }
        names.join(",")
    }

    pub fn set_enabled_protocols(&mut self, value: &str) -> Result<(), String> {
        let (mut tls12, mut tls13) = (false, false);
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "TLSv1.2" => tls12 = true,
                "TLSv1.3" => tls13 = true,
                other => {
                    return Err(format!(
                        "`{other}` is not supported: TLSv1.2 and TLSv1.3 are (older versions are insecure)"
                    ))
                }
            }
        }
        if !tls12 && !tls13 {
            return Err("no protocol enabled".to_string());
        }
        (self.tls12, self.tls13) = (tls12, tls13);
        Ok(())
    }
}

/// The SASL mechanisms Sluice implements (`security::sasl`), as `sasl.enabled.mechanisms`
/// names them.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// SASL on the SASL_PLAINTEXT and SASL_SSL listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the order SaslHandshake lists them.
    pub enabled_mechanisms: Vec<String>,
    /// `connections.max.reauth.ms` (KIP-368): 0, sessions never expire; else a client must
    /// re-authenticate within this time or its connection is closed at its next request.
    pub max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`: a failed authentication is answered this
    /// much later (brute force costs time).
    pub failed_authentication_delay_ms: u64,
    /// `sasl.server.max.receive.size`: the largest SASL token accepted (Kafka's key).
    pub max_receive_size: u64,
    pub oauth: OAuthSettings,
}

impl Default for SaslSettings {
    fn default() -> SaslSettings {
        SaslSettings {
            enabled_mechanisms: vec!["SCRAM-SHA-256".to_string(), "SCRAM-SHA-512".to_string()],
            max_reauth_ms: 0,
            failed_authentication_delay_ms: 100,
            max_receive_size: 524_288,
            oauth: OAuthSettings::default(),
        }
    }
}

impl SaslSettings {
    pub fn set_enabled_mechanisms(&mut self, value: &str) -> Result<(), String> {
        let mut names: Vec<String> = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !SASL_MECHANISMS.contains(&name) {
                return Err(format!(
                    "`{name}` is not supported ({} are; GSSAPI is not)",
                    SASL_MECHANISMS.join(", ")
                ));
            }
            if !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
        if names.is_empty() {
            return Err("no mechanism enabled".to_string());
        }
        self.enabled_mechanisms = names;
        Ok(())
    }
}

/// The authorizer (`authorizer.enable`, or Kafka's `authorizer.class.name` set to anything;
/// `super.users`; `allow.everyone.if.no.acl.found`). Off by default: every principal may do
/// everything, as in Kafka without an authorizer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthorizerSettings {
    pub enabled: bool,
    /// Principals (`User:admin`) that may do everything.
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerSettings {
    /// `super.users`: `User:a;User:b` (Kafka separates them with semicolons).
    pub fn set_super_users(&mut self, value: &str) -> Result<(), String> {
        let mut users = Vec::new();
        for user in value.split(';').map(str::trim).filter(|u| !u.is_empty()) {
            match user.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    users.push(user.to_string())
                }
                _ => return Err(format!("`{user}`: expected Type:name, like User:admin")),
            }
        }
        self.super_users = users;
        Ok(())
    }
}

/// OAUTHBEARER token validation (`sasl.oauthbearer.*`, Kafka's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSettings {
    /// `sasl.oauthbearer.jwks.endpoint.url`: a `file:` URL of the JWKS.
    pub jwks_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.jwks.endpoint.refresh.ms`.
    pub jwks_refresh_ms: u64,
    /// `sasl.oauthbearer.expected.issuer` (None: not checked).
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience` (empty: not checked; else one must be in `aud`).
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim that names the principal.
    pub sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds`.
    pub clock_skew_seconds: u64,
}

impl Default for OAuthSettings {
    fn default() -> OAuthSettings {
        OAuthSettings {
            jwks_endpoint_url: None,
            jwks_refresh_ms: 3_600_000,
            expected_issuer: None,
            expected_audience: Vec::new(),
            sub_claim_name: "sub".to_string(),
            clock_skew_seconds: 30,
        }
    }
}
