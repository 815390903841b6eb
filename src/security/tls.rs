//! TLS for the SSL and SASL_SSL listeners, with rustls (ring as the crypto provider; no
//! OpenSSL). The broker's key and chain and the trusted CAs come from Kafka's PEM keys
//! (`ssl.keystore.*`, `ssl.truststore.*`); `ssl.client.auth` asks for client certificates and
//! the DEFAULT principal mapping turns a verified certificate's subject into `User:CN=...`.
//!
//! Reload without restart: setting `ssl.keystore.location` at run time (IncrementalAlterConfigs
//! on the broker, Kafka's way, even to the same path) reads the files again. The built
//! `ServerConfig` is process-wide behind a lock taken only when it changes; each shard keeps its
//! own `Rc` copy and compares a generation counter as it accepts a connection, so the lock is
//! never on the data path and connections already open keep their session.
//!
//! Session tickets are off (`send_tls13_tickets = 0`): Kafka clients hold connections for long,
//! and resumption would only add state; it also keeps sessions ready for a kernel offload
//! (`ktls.rs`), which must not have post-handshake messages of the server's own to send.

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::published::{Published, ShardCopy};
use crate::config::{ClientAuth, SslSettings};

struct Installed {
    settings: SslSettings,
    /// `ssl.keystore.location` at start (what deleting the run-time value returns to).
    start_location: String,
}

/// Admin path only: the settings in force (None: no TLS listener).
static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
/// The built configuration, taken by shards as they accept (`published.rs`).
static CONFIG: Published<ServerConfig> = Published::new();

fn lock() -> std::sync::MutexGuard<'static, Option<Installed>> {
    // A panic while holding it cannot leave a half-built config: the value is replaced whole.
    INSTALLED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Builds the rustls configuration from the `ssl.*` settings; the error names the key.
pub fn build(settings: &SslSettings) -> Result<ServerConfig, String> {
    let (chain, key) = keystore(settings)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = versions(settings);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|error| format!("ssl.enabled.protocols: {error}"))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let roots = truststore(settings)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|error| format!("ssl.truststore: {error}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|error| format!("ssl.keystore: the key does not fit the certificate: {error}"))?;
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// `ssl.enabled.protocols`, newest first.
fn versions(settings: &SslSettings) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

fn keystore(
    settings: &SslSettings,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (pem, source): (Vec<u8>, &str) = match (
        &settings.keystore_location,
        &settings.keystore_certificate_chain,
        &settings.keystore_key,
    ) {
        (Some(path), None, None) => (
            std::fs::read(path)
                .map_err(|error| format!("ssl.keystore.location {}: {error}", path.display()))?,
            "ssl.keystore.location",
        ),
        (None, Some(chain), Some(key)) => (
            format!("{chain}\n{key}\n").into_bytes(),
            "ssl.keystore.certificate.chain/ssl.keystore.key",
        ),
        (None, None, None) => {
            return Err("an SSL or SASL_SSL listener needs ssl.keystore.location (or ssl.keystore.certificate.chain and ssl.keystore.key)".to_string())
        }
        _ => {
            return Err("set either ssl.keystore.location or both ssl.keystore.certificate.chain and ssl.keystore.key".to_string())
        }
    };
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{source}: {error}"))?;
    if chain.is_empty() {
        return Err(format!("{source}: no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        format!("{source}: no usable private key ({error}); encrypted keys are not supported")
    })?;
    Ok((chain, key))
}

fn truststore(settings: &SslSettings) -> Result<rustls::RootCertStore, String> {
    let pem = match (
        &settings.truststore_location,
        &settings.truststore_certificates,
    ) {
        (Some(path), None) => std::fs::read(path)
            .map_err(|error| format!("ssl.truststore.location {}: {error}", path.display()))?,
        (None, Some(certificates)) => certificates.clone().into_bytes(),
        (None, None) => {
            return Err(
                "ssl.client.auth needs ssl.truststore.location (or ssl.truststore.certificates)"
                    .to_string(),
            )
        }
        _ => {
            return Err(
                "set one of ssl.truststore.location and ssl.truststore.certificates".to_string(),
            )
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|error| format!("ssl.truststore: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| format!("ssl.truststore: {error}"))?;
    }
    if roots.is_empty() {
        return Err("ssl.truststore: no CERTIFICATE block".to_string());
    }
    Ok(roots)
}

/// At start, when some listener uses TLS: builds and installs the configuration.
pub fn install(settings: &SslSettings) -> Result<(), String> {
    let config = build(settings)?;
    super::ktls::log_mode(settings.ktls);
    let start_location = settings
        .keystore_location
        .as_ref()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    *lock() = Some(Installed {
        settings: settings.clone(),
        start_location,
    });
    CONFIG.publish(config);
    Ok(())
}

/// `ssl.keystore.location` set at run time: reads the keystore (and truststore) again.
pub fn reload_keystore(location: &str) -> Result<(), String> {
    let mut installed = lock();
    let Some(current) = installed.as_mut() else {
        return Err("no SSL or SASL_SSL listener: nothing to reload".to_string());
    };
    let mut settings = current.settings.clone();
    settings.keystore_location = Some(location.trim())
        .filter(|location| !location.is_empty())
        .map(std::path::PathBuf::from);
    if settings.keystore_location.is_some() {
        settings.keystore_certificate_chain = None;
        settings.keystore_key = None;
    }
    let config = build(&settings)?;
    current.settings = settings;
    CONFIG.publish(config);
    log::info!("TLS keystore reloaded from {}", location.trim());
    Ok(())
}

pub fn start_keystore_location() -> String {
    lock()
        .as_ref()
        .map(|installed| installed.start_location.clone())
        .unwrap_or_default()
}

pub fn current_keystore_location() -> String {
    lock()
        .as_ref()
        .and_then(|installed| installed.settings.keystore_location.clone())
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// One shard's copy of the TLS configuration, refreshed when a reload published a new one.
#[derive(Default)]
pub struct ShardTls(ShardCopy<ServerConfig>);

impl ShardTls {
    /// The configuration for a new connection (None: TLS was never installed).
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.0.current(&CONFIG)
    }
}

/// The principal of a TLS connection's verified client certificate (DEFAULT mapping rule: its
/// subject in RFC 2253 form); None without one, or if the subject cannot be read.
pub fn certificate_principal(connection: &rustls::CommonState) -> Option<String> {
    let certificate = connection.peer_certificates()?.first()?;
    super::x509::subject_rfc2253(certificate.as_ref())
}

/// TLS on node-to-node links (the CONTROLLER listener mapped to SSL): mutual, always. Each node
/// presents its `ssl.keystore` certificate both when it accepts a link and when it dials one,
/// and checks the other's against `ssl.truststore`; the dialing side also checks that the
/// certificate names the address it dialed unless `ssl.endpoint.identification.algorithm` is
/// empty. With the authorizer on, the accepting side admits only peers whose certificate
/// principal is one of `super.users` (Kafka's advice for the inter-broker principal).
/// Built once at start: node links keep their certificates until a restart.
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    /// Principals admitted (None: any certificate the truststore verifies).
    pub admitted: Option<Vec<String>>,
}

impl NodeTls {
    pub fn build(
        settings: &SslSettings,
        authorizer: &crate::config::AuthorizerSettings,
    ) -> Result<NodeTls, String> {
        let mut server_settings = settings.clone();
        server_settings.client_auth = ClientAuth::Required;
        let server = build(&server_settings)?;
        let client = client_config(settings)?;
        Ok(NodeTls {
            server: Arc::new(server),
            client: Arc::new(client),
            admitted: authorizer.enabled.then(|| authorizer.super_users.clone()),
        })
    }
}

/// A TLS client configuration: servers verified against `ssl.truststore.*` (their name checked
/// unless `ssl.endpoint.identification.algorithm` is empty), and this side's certificate from
/// `ssl.keystore.*` when one is set. Node links and the operator commands use it.
pub fn client_config(settings: &SslSettings) -> Result<rustls::ClientConfig, String> {
    let roots = Arc::new(truststore(settings)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|error| format!("ssl.truststore: {error}"))?;
    let versions = versions(settings);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|error| format!("ssl.enabled.protocols: {error}"))?;
    let builder = if settings.endpoint_identification {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    let keystore_set = settings.keystore_location.is_some()
        || settings.keystore_certificate_chain.is_some()
        || settings.keystore_key.is_some();
    if keystore_set {
        let (chain, key) = keystore(settings)?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| format!("ssl.keystore: {error}"))
    } else {
        Ok(builder.with_no_client_auth())
    }
}

/// Verifies a peer's chain and signatures but not the name in its certificate
/// (`ssl.endpoint.identification.algorithm=`).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Feeds `ciphertext` to a TLS session (either side) and moves the plaintext it yields to
/// `plaintext`. Ok(true): the peer sent close_notify. A record that fails to decrypt or parse
/// is an error (the connection closes).
pub fn decrypt(
    session: &mut rustls::Connection,
    mut ciphertext: &[u8],
    plaintext: &mut bytes::BytesMut,
) -> std::io::Result<bool> {
    use std::io::{BufRead, Error, ErrorKind};
    let mut peer_closed = false;
    while !ciphertext.is_empty() {
        let before = ciphertext.len();
        session.read_tls(&mut ciphertext)?;
        let state = session
            .process_new_packets()
            .map_err(|error| Error::new(ErrorKind::InvalidData, error))?;
        peer_closed |= state.peer_has_closed();
        let mut reader = session.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => break,
                Ok(chunk) => {
                    let taken = chunk.len();
                    plaintext.extend_from_slice(chunk);
                    reader.consume(taken);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        if ciphertext.len() == before {
            return Err(Error::new(
                ErrorKind::InvalidData,
                "TLS session took no input",
            ));
        }
    }
    Ok(peer_closed)
}

/// Everything the session has queued to send, as one buffer (empty: nothing).
pub fn pending_records(session: &mut rustls::Connection) -> std::io::Result<Vec<u8>> {
    let mut records = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut records)?;
    }
    Ok(records)
}
