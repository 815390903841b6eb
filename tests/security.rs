//! Security with real clients: TLS listeners beside plaintext ones (kcat, kafka-python and
//! confluent-kafka), client certificates and their principal, Metadata per listener, keystore
//! reload, and hostile TLS input. Certificates are made in the test with the `openssl` command
//! (Debian's `openssl` package); no private key is committed.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Broker;

/// A CA, a broker certificate for 127.0.0.1 and a client certificate, in a temp directory.
struct Certificates {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, arguments: &[&str]) {
    let output = Command::new("openssl")
        .args(arguments)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        openssl(
            path,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Sluice Test CA",
            ],
        );
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        std::fs::write(
            path.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let certificates = Certificates { dir };
        certificates.issue("broker", "/CN=broker-one", "server.ext");
        certificates.issue("client", "/C=US/O=Acme/CN=alice", "client.ext");
        certificates
    }

    /// `name.key` and `name.pem` signed by the CA, and `name-keystore.pem` (key + chain).
    fn issue(&self, name: &str, subject: &str, extensions: &str) {
        let path = self.dir.path();
        let (key, request, certificate) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            path,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &request,
                "-subj",
                subject,
            ],
        );
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                &request,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &certificate,
                "-days",
                "2",
                "-extfile",
                extensions,
            ],
        );
        let keystore = [
            std::fs::read(path.join(&key)).unwrap(),
            std::fs::read(path.join(&certificate)).unwrap(),
        ]
        .concat();
        std::fs::write(path.join(format!("{name}-keystore.pem")), keystore).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// Runs `tests/external/secure_client.py`: Ok(stdout) when the client succeeded.
fn python_client(
    client: &str,
    bootstrap: &str,
    topic: &str,
    options: &[String],
) -> Result<String, String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/external/secure_client.py"
    );
    let output = Command::new("timeout")
        .env_remove("LD_LIBRARY_PATH")
        .arg("90")
        .arg("python3")
        .arg(script)
        .args([client, bootstrap, topic])
        .args(options)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// kcat with `-X` settings: (success, stdout, stderr).
fn kcat(arguments: &[&str], settings: &[String], input: &str) -> (bool, String, String) {
    let mut command = Command::new("timeout");
    // Cargo's LD_LIBRARY_PATH would load the rdkafka crate's librdkafka (built without TLS)
    // into Debian's kcat.
    command
        .env_remove("LD_LIBRARY_PATH")
        .arg("60")
        .arg("kcat")
        .args(arguments);
    for setting in settings {
        command.arg("-X").arg(setting);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat (Debian package kcat)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn tls_broker(certificates: &Certificates, client_auth: &str, extra: &[&str]) -> Broker {
    let keystore = format!(
        "ssl.keystore.location={}",
        certificates.file("broker-keystore.pem")
    );
    let truststore = format!("ssl.truststore.location={}", certificates.file("ca.pem"));
    let auth = format!("ssl.client.auth={client_auth}");
    let mut arguments = vec![
        "--set",
        "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "--set",
        &keystore,
        "--set",
        &truststore,
        "--set",
        &auth,
    ];
    arguments.extend_from_slice(extra);
    Broker::start(&arguments)
}

fn kcat_ssl(certificates: &Certificates, with_certificate: bool) -> Vec<String> {
    let mut settings = vec![
        "security.protocol=ssl".to_string(),
        format!("ssl.ca.location={}", certificates.file("ca.pem")),
    ];
    if with_certificate {
        settings.push(format!(
            "ssl.certificate.location={}",
            certificates.file("client.pem")
        ));
        settings.push(format!(
            "ssl.key.location={}",
            certificates.file("client.key")
        ));
    }
    settings
}

#[test]
fn tls_listener_serves_kcat_kafka_python_and_confluent_kafka() {
    let certificates = Certificates::new();
    let broker = tls_broker(&certificates, "requested", &[]);
    let ssl = broker.listener("SSL");
    let plaintext = broker.listener("PLAINTEXT");
    assert_ne!(ssl, plaintext);

    // kcat (Debian's librdkafka 2.0.2): produce and consume over TLS, no client certificate.
    let settings = kcat_ssl(&certificates, false);
    let lines: String = (0..10).map(|i| format!("tls-{i}\n")).collect();
    let (ok, _, stderr) = kcat(&["-b", &ssl, "-t", "kcat-tls", "-P"], &settings, &lines);
    assert!(ok, "kcat produce over SSL: {stderr}");
    let (ok, stdout, stderr) = kcat(
        &["-b", &ssl, "-t", "kcat-tls", "-C", "-e", "-o", "beginning"],
        &kcat_ssl(&certificates, true),
        "",
    );
    assert!(
        ok,
        "kcat consume over SSL with a client certificate: {stderr}"
    );
    assert_eq!(stdout, lines);

    // Metadata answers with the listener the client came through.
    let (ok, stdout, stderr) = kcat(&["-b", &ssl, "-L"], &settings, "");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("at {ssl}")),
        "SSL metadata: {stdout}"
    );
    let (ok, stdout, stderr) = kcat(&["-b", &plaintext, "-L"], &[], "");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("at {plaintext}")),
        "PLAINTEXT metadata: {stdout}"
    );

    // The Python clients, with hostname verification against the certificate's IP SAN.
    for client in ["kafka-python", "confluent-kafka"] {
        let topic = format!("{client}-tls");
        let options = vec![
            "protocol=SSL".to_string(),
            format!("ca={}", certificates.file("ca.pem")),
            format!("cert={}", certificates.file("client.pem")),
            format!("key={}", certificates.file("client.key")),
        ];
        let created = kcat(&["-b", &plaintext, "-t", &topic, "-P"], &[], "");
        assert!(created.0, "auto-create {topic}: {}", created.2);
        let outcome = python_client(client, &ssl, &topic, &options);
        assert!(outcome.is_ok(), "{client} over SSL: {outcome:?}");
    }
}

#[test]
fn required_client_certificates_refuse_clients_without_one() {
    let certificates = Certificates::new();
    let broker = tls_broker(&certificates, "required", &[]);
    let ssl = broker.listener("SSL");
    let (ok, _, stderr) = kcat(
        &["-b", &ssl, "-L", "-m", "5"],
        &kcat_ssl(&certificates, false),
        "",
    );
    assert!(!ok, "a client without a certificate must be refused");
    assert!(
        stderr.to_lowercase().contains("ssl") || stderr.contains("certificate"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = kcat(&["-b", &ssl, "-L"], &kcat_ssl(&certificates, true), "");
    assert!(
        ok && stdout.contains("broker"),
        "with a certificate: {stderr}"
    );
}

/// The certificate subject the listener at `address` presents, read with `openssl s_client`.
fn served_subject(address: &str, certificates: &Certificates) -> String {
    let output = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect", address, "-CAfile"])
        .arg(certificates.path("ca.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("subject="))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn keystore_reloads_at_run_time_for_new_connections() {
    let certificates = Certificates::new();
    let broker = tls_broker(&certificates, "none", &[]);
    let ssl = broker.listener("SSL");
    assert!(served_subject(&ssl, &certificates).contains("broker-one"));
    // A new certificate in the same file, then Kafka's reload: set the location again.
    certificates.issue("broker", "/CN=broker-renewed", "server.ext");
    let script = format!(
        "from kafka.admin import KafkaAdminClient, ConfigResource, ConfigResourceType\n\
         admin = KafkaAdminClient(bootstrap_servers='{}')\n\
         print(admin.alter_configs([ConfigResource(ConfigResourceType.BROKER, '0', \
         configs={{'ssl.keystore.location': '{}'}})], incremental=True))\n",
        broker.listener("PLAINTEXT"),
        certificates.file("broker-keystore.pem")
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success() && answer.contains("'OK'"),
        "{answer}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        served_subject(&ssl, &certificates).contains("broker-renewed"),
        "the reloaded certificate is served"
    );
}

#[test]
fn hostile_tls_input_closes_only_its_own_connection() {
    let certificates = Certificates::new();
    let broker = tls_broker(
        &certificates,
        "none",
        &["--set", "socket.request.read.timeout.ms=1000"],
    );
    let ssl = broker.listener("SSL");
    // Not TLS at all: a Kafka request in plaintext on the TLS port.
    let mut garbage = std::net::TcpStream::connect(&ssl).unwrap();
    garbage
        .write_all(&[0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1])
        .unwrap();
    garbage.write_all(&[0x16; 64]).unwrap();
    assert!(
        closes_within(&mut garbage, Duration::from_secs(5)),
        "garbage closes"
    );
    // A TLS record header announcing more than a record may hold.
    let mut oversized = std::net::TcpStream::connect(&ssl).unwrap();
    oversized
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff])
        .unwrap();
    oversized.write_all(&vec![0u8; 4096]).unwrap();
    assert!(
        closes_within(&mut oversized, Duration::from_secs(5)),
        "oversized record closes"
    );
    // A client that connects and never finishes the handshake is cut off in bounded time.
    let mut silent = std::net::TcpStream::connect(&ssl).unwrap();
    let started = Instant::now();
    assert!(
        closes_within(&mut silent, Duration::from_secs(10)),
        "a silent client is cut off"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The listener still serves a real client.
    let (ok, stdout, stderr) = kcat(&["-b", &ssl, "-L"], &kcat_ssl(&certificates, false), "");
    assert!(ok && stdout.contains("broker"), "{stderr}");
}

/// Reads until the peer closes (true) or `timeout` passes (false).
fn closes_within(stream: &mut std::net::TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}
