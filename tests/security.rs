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
    command.env_remove("LD_LIBRARY_PATH").arg("60").arg("kcat");
    // Settings first: in group mode (-G) the topics come last.
    for setting in settings {
        command.arg("-X").arg(setting);
    }
    command.args(arguments);
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
    // The operator commands over SSL: refused without a certificate, served with one.
    let sluice = |keystore: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command.args([
            "cluster",
            "info",
            "--brokers",
            &ssl,
            "--security-protocol",
            "SSL",
            "--ssl-ca-location",
            &certificates.file("ca.pem"),
        ]);
        if let Some(keystore) = keystore {
            command.args(["--ssl-keystore-location", keystore]);
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, output) = sluice(None);
    assert!(!ok, "sluice without a certificate was served: {output}");
    let (ok, output) = sluice(Some(&certificates.file("client-keystore.pem")));
    assert!(
        ok && output.contains(&ssl),
        "sluice with a certificate: {output}"
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
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut off after {elapsed:?}"
    );
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

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";

/// A broker with PLAINTEXT and SASL_PLAINTEXT listeners (and SASL_SSL when `certificates`),
/// every mechanism enabled and the bootstrap user `admin`.
fn sasl_broker(certificates: Option<&Certificates>, extra: &[&str]) -> Broker {
    let bootstrap = format!("{ADMIN}:{ADMIN_PASSWORD}");
    let mut arguments: Vec<String> = vec![
        "--set".into(),
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
        "--set".into(),
        "connection.failed.authentication.delay.ms=20".into(),
    ];
    match certificates {
        Some(certificates) => arguments.extend([
            "--set".into(),
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"
                .into(),
            "--set".into(),
            format!(
                "ssl.keystore.location={}",
                certificates.file("broker-keystore.pem")
            ),
        ]),
        None => arguments.extend([
            "--set".into(),
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0".into(),
        ]),
    }
    arguments.extend(extra.iter().map(|argument| argument.to_string()));
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let broker =
        Broker::start_with_environment(&arguments, &[("SLUICE_BOOTSTRAP_USER", &bootstrap)]);
    // The bootstrap user is created through the controller just after start.
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            authenticate(
                &broker.listener("SASL_PLAINTEXT"),
                "SCRAM-SHA-256",
                ADMIN,
                ADMIN_PASSWORD,
            )
            .is_ok()
        }),
        "the bootstrap user can authenticate"
    );
    broker
}

/// One SASL exchange with the broker's own client: Ok once authenticated.
fn authenticate(address: &str, mechanism: &str, user: &str, password: &str) -> Result<(), String> {
    let mut connection = sluice::bench::client::Connection::open(address, "security-test")
        .map_err(|error| error.to_string())?;
    connection
        .authenticate(mechanism, user, password)
        .map_err(|error| error.to_string())
}

fn kcat_sasl(mechanism: &str, user: &str, password: &str) -> Vec<String> {
    vec![
        "security.protocol=sasl_plaintext".to_string(),
        format!("sasl.mechanisms={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
}

#[test]
fn sasl_plain_and_scram_authenticate_real_clients_and_refuse_wrong_passwords() {
    let broker = sasl_broker(None, &[]);
    let sasl = broker.listener("SASL_PLAINTEXT");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let topic = format!("kcat-{}", mechanism.to_lowercase());
        let settings = kcat_sasl(mechanism, ADMIN, ADMIN_PASSWORD);
        let (ok, _, stderr) = kcat(&["-b", &sasl, "-t", &topic, "-P"], &settings, "one\ntwo\n");
        assert!(ok, "kcat {mechanism}: {stderr}");
        let (ok, stdout, stderr) = kcat(
            &["-b", &sasl, "-t", &topic, "-C", "-e", "-o", "beginning"],
            &settings,
            "",
        );
        assert!(
            ok && stdout == "one\ntwo\n",
            "kcat {mechanism} consume: {stdout} {stderr}"
        );
        let (ok, _, stderr) = kcat(
            &["-b", &sasl, "-L", "-m", "2"],
            &kcat_sasl(mechanism, "mallory", "wrong"),
            "",
        );
        assert!(
            !ok && stderr.contains("Authentication failed"),
            "wrong password, {mechanism}: {stderr}"
        );
        for client in ["kafka-python", "confluent-kafka"] {
            let topic = format!("{client}-{}", mechanism.to_lowercase());
            let good = [
                "protocol=SASL_PLAINTEXT".to_string(),
                format!("mechanism={mechanism}"),
                format!("user={ADMIN}"),
                format!("password={ADMIN_PASSWORD}"),
            ];
            assert!(
                kcat(
                    &["-b", &broker.listener("PLAINTEXT"), "-t", &topic, "-P"],
                    &[],
                    ""
                )
                .0
            );
            let outcome = python_client(client, &sasl, &topic, &good);
            assert!(outcome.is_ok(), "{client} {mechanism}: {outcome:?}");
            // Each client waits out its timeouts on a refusal: one mechanism is enough.
            if mechanism != "SCRAM-SHA-256" {
                continue;
            }
            // A wrong password for another user: failures are counted per address and user,
            // and admin must stay usable for the next client.
            let mut bad = good.to_vec();
            bad[2] = "user=mallory".to_string();
            bad[3] = "password=wrong".to_string();
            bad.push("count=1".to_string());
            bad.push("mode=metadata".to_string());
            let outcome = python_client(client, &sasl, &topic, &bad);
            assert!(
                outcome.is_err(),
                "{client} {mechanism} with a wrong password: {outcome:?}"
            );
        }
    }
    // No SASL at all: the first request after ApiVersions closes the connection.
    let (ok, _, _) = kcat(&["-b", &sasl, "-L", "-m", "3"], &[], "");
    assert!(!ok, "a client that skips SASL is refused");
}

#[test]
fn users_are_managed_with_the_cli_and_kept_across_restarts() {
    let mut broker = sasl_broker(None, &[]);
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let run = |address: &str, arguments: &[&str], password: Option<&str>| {
        let mut command = Command::new(sluice);
        command
            .args(arguments)
            .args([
                "--brokers",
                address,
                "--sasl-mechanism",
                "SCRAM-SHA-512",
                "--sasl-username",
                ADMIN,
            ])
            .env("SLUICE_SASL_PASSWORD", ADMIN_PASSWORD);
        if let Some(password) = password {
            command.env("SLUICE_USER_PASSWORD", password);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let sasl = broker.listener("SASL_PLAINTEXT");
    let (code, output) = run(&sasl, &["user", "create", "carol"], Some("carol-pw"));
    assert_eq!(code, Some(0), "{output}");
    authenticate(&sasl, "SCRAM-SHA-256", "carol", "carol-pw").unwrap();
    authenticate(&sasl, "PLAIN", "carol", "carol-pw").unwrap();
    let (code, output) = run(&sasl, &["user", "list", "--format", "json"], None);
    assert_eq!(code, Some(0), "{output}");
    let listed: serde_json::Value = serde_json::from_str(&output).unwrap();
    let users: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["admin", "carol"]);

    // The store is cluster metadata: it survives kill -9.
    broker.kill9();
    broker.start_again();
    let sasl = broker.listener("SASL_PLAINTEXT");
    assert!(common::wait_until(Duration::from_secs(20), || {
        authenticate(&sasl, "SCRAM-SHA-512", "carol", "carol-pw").is_ok()
    }));
    assert!(authenticate(&sasl, "SCRAM-SHA-512", "carol", "other").is_err());

    let (code, output) = run(&sasl, &["user", "delete", "carol"], None);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        authenticate(&sasl, "SCRAM-SHA-256", "carol", "carol-pw").is_err(),
        "deleted"
    );
    let (code, output) = run(&sasl, &["user", "delete", "carol"], None);
    assert_eq!(code, Some(1), "deleting a user twice fails: {output}");
    let (code, output) = run(
        &sasl,
        &["user", "create", "dave", "--iterations", "100"],
        Some("x"),
    );
    assert_eq!(
        code,
        Some(2),
        "iterations below Kafka's minimum are a usage error: {output}"
    );
}

#[test]
fn sasl_ssl_carries_scram_over_tls() {
    let certificates = Certificates::new();
    let broker = sasl_broker(Some(&certificates), &[]);
    let address = broker.listener("SASL_SSL");
    let settings = vec![
        "security.protocol=sasl_ssl".to_string(),
        format!("ssl.ca.location={}", certificates.file("ca.pem")),
        "sasl.mechanisms=SCRAM-SHA-512".to_string(),
        format!("sasl.username={ADMIN}"),
        format!("sasl.password={ADMIN_PASSWORD}"),
    ];
    let (ok, _, stderr) = kcat(
        &["-b", &address, "-t", "over-tls", "-P"],
        &settings,
        "a\nb\n",
    );
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = kcat(
        &[
            "-b",
            &address,
            "-t",
            "over-tls",
            "-C",
            "-e",
            "-o",
            "beginning",
        ],
        &settings,
        "",
    );
    assert!(ok && stdout == "a\nb\n", "{stderr}");
    let (ok, stdout, _) = kcat(&["-b", &address, "-L"], &settings, "");
    assert!(
        ok && stdout.contains(&format!("at {address}")),
        "SASL_SSL metadata: {stdout}"
    );
    // The operator commands over SASL_SSL; a broker certificate from an unknown CA is refused.
    let sluice = |ca: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "topic",
                "describe",
                "over-tls",
                "--brokers",
                &address,
                "--security-protocol",
                "SASL_SSL",
                "--ssl-ca-location",
                ca,
                "--sasl-mechanism",
                "SCRAM-SHA-512",
                "--sasl-username",
                ADMIN,
            ])
            .env("SLUICE_SASL_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, output) = sluice(&certificates.file("ca.pem"));
    assert!(
        ok && output.contains("over-tls"),
        "sluice over SASL_SSL: {output}"
    );
    let stranger = Certificates::new();
    let (ok, output) = sluice(&stranger.file("ca.pem"));
    assert!(
        !ok && output.contains("TLS"),
        "a broker certificate from another CA was accepted: {output}"
    );
    for client in ["kafka-python", "confluent-kafka"] {
        let topic = format!("{client}-sasl-ssl");
        assert!(
            kcat(
                &["-b", &broker.listener("PLAINTEXT"), "-t", &topic, "-P"],
                &[],
                ""
            )
            .0
        );
        let options = [
            "protocol=SASL_SSL".to_string(),
            "mechanism=SCRAM-SHA-256".to_string(),
            format!("user={ADMIN}"),
            format!("password={ADMIN_PASSWORD}"),
            format!("ca={}", certificates.file("ca.pem")),
        ];
        let outcome = python_client(client, &address, &topic, &options);
        assert!(outcome.is_ok(), "{client} over SASL_SSL: {outcome:?}");
    }
}

#[test]
fn hostile_sasl_input_closes_only_its_own_connection_and_guessing_is_limited() {
    let broker = sasl_broker(None, &[]);
    let sasl = broker.listener("SASL_PLAINTEXT");
    // Malformed SCRAM and PLAIN tokens, and an exchange nobody started: refused, no panic.
    for (mechanism, token) in [
        ("SCRAM-SHA-256", &b"garbage"[..]),
        ("SCRAM-SHA-512", b"n,,n=admin"),
        ("PLAIN", b"\xff\xfe\0\0"),
    ] {
        let mut connection = sluice::bench::client::Connection::open(&sasl, "hostile").unwrap();
        let mut handshake = kafka_protocol::messages::SaslHandshakeRequest::default();
        handshake.mechanism = kafka_protocol::protocol::StrBytes::from_static_str(mechanism);
        let answer: kafka_protocol::messages::SaslHandshakeResponse =
            connection.call_at(1, &handshake).unwrap();
        assert_eq!(answer.error_code, 0);
        let mut request = kafka_protocol::messages::SaslAuthenticateRequest::default();
        request.auth_bytes = bytes::Bytes::copy_from_slice(token);
        let response: kafka_protocol::messages::SaslAuthenticateResponse =
            connection.call_at(1, &request).unwrap();
        assert_eq!(
            response.error_code, 58,
            "{mechanism} {token:?}: SASL_AUTHENTICATION_FAILED"
        );
        let mut after = kafka_protocol::messages::MetadataRequest::default();
        after.topics = Some(Vec::new());
        assert!(
            connection.call_at::<_>(1, &after).is_err(),
            "closed after the failure"
        );
    }
    // Before authentication a frame larger than sasl.server.max.receive.size (512 KiB) closes
    // the connection before the broker buffers it.
    let mut oversized = std::net::TcpStream::connect(&sasl).unwrap();
    oversized.write_all(&(1i32 << 20).to_be_bytes()).unwrap();
    oversized.write_all(&[0, 36, 0, 1, 0, 0, 0, 1]).unwrap();
    assert!(
        closes_within(&mut oversized, Duration::from_secs(5)),
        "an oversized unauthenticated frame closes the connection"
    );
    let mut early = sluice::bench::client::Connection::open(&sasl, "hostile").unwrap();
    let request = kafka_protocol::messages::SaslAuthenticateRequest::default();
    let response: kafka_protocol::messages::SaslAuthenticateResponse =
        early.call_at(1, &request).unwrap();
    assert_eq!(
        response.error_code, 34,
        "ILLEGAL_SASL_STATE without a handshake"
    );
    // Guessing: past 10 failures a minute for one user from one address (per shard), even the
    // right password is refused, and other users are not. Connections land on either shard.
    for _ in 0..(10 * Broker::cores() + 2) {
        assert!(authenticate(&sasl, "PLAIN", ADMIN, "guess").is_err());
    }
    let refused = (0..8)
        .filter(|_| authenticate(&sasl, "PLAIN", ADMIN, ADMIN_PASSWORD).is_err())
        .count();
    assert!(
        refused > 0,
        "the right password is refused while the address is blocked"
    );
    let created = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "user",
            "create",
            "bystander",
            "--brokers",
            &broker.listener("PLAINTEXT"),
        ])
        .env("SLUICE_USER_PASSWORD", "bystander-pw")
        .status()
        .unwrap();
    assert!(created.success());
    authenticate(&sasl, "SCRAM-SHA-256", "bystander", "bystander-pw").unwrap();
    // Other listeners and the broker are fine.
    let (ok, stdout, _) = kcat(&["-b", &broker.listener("PLAINTEXT"), "-L"], &[], "");
    assert!(ok && stdout.contains("broker"));
}

/// `sluice` as `admin` over the SASL listener: (exit code, stdout and stderr).
fn sluice_as(
    address: &str,
    user: &str,
    password: &str,
    arguments: &[&str],
) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(arguments)
        .args([
            "--brokers",
            address,
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            user,
        ])
        .env("SLUICE_SASL_PASSWORD", password)
        .env(
            "SLUICE_USER_PASSWORD",
            format!("{}-pw", arguments.last().unwrap_or(&"")),
        )
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn acls_allow_deny_and_prefixes_for_real_clients() {
    let broker = sasl_broker(
        None,
        &[
            "--set",
            "authorizer.enable=true",
            "--set",
            "super.users=User:admin",
        ],
    );
    let sasl = broker.listener("SASL_PLAINTEXT");
    let admin = |arguments: &[&str]| {
        let (code, output) = sluice_as(&sasl, ADMIN, ADMIN_PASSWORD, arguments);
        assert_eq!(code, Some(0), "sluice {arguments:?}: {output}");
        output
    };
    admin(&["user", "create", "alice"]);
    admin(&["user", "create", "bob"]);
    for topic in ["orders-eu", "orders-secret", "payments"] {
        admin(&["topic", "create", topic, "--partitions", "1"]);
    }
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "Write",
        "--operation",
        "Read",
        "--topic",
        "orders-",
        "--prefixed",
    ]);
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "All",
        "--topic",
        "orders-secret",
        "--deny",
    ]);
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "Read",
        "--group",
        "team",
    ]);
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:*",
        "--operation",
        "Describe",
        "--topic",
        "payments",
    ]);
    let listed = admin(&["acl", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed}");

    let alice = kcat_sasl("SCRAM-SHA-256", "alice", "alice-pw");
    let bob = kcat_sasl("SCRAM-SHA-512", "bob", "bob-pw");
    // Produce: allowed by the prefix; denied elsewhere; deny wins over the prefix.
    let (ok, _, stderr) = kcat(
        &["-b", &sasl, "-t", "orders-eu", "-P"],
        &alice,
        "one\ntwo\n",
    );
    assert!(ok, "alice writes orders-eu: {stderr}");
    for topic in ["payments", "orders-secret"] {
        let (ok, _, stderr) = kcat(&["-b", &sasl, "-t", topic, "-P", "-m", "5"], &alice, "x\n");
        assert!(
            !ok || stderr.contains("authorization failed"),
            "alice must not write {topic}: {stderr}"
        );
    }
    let (ok, _, stderr) = kcat(
        &["-b", &sasl, "-t", "orders-eu", "-P", "-m", "5"],
        &bob,
        "x\n",
    );
    assert!(
        !ok || stderr.contains("authorization failed"),
        "bob has no ACL: {stderr}"
    );
    // Fetch in a group: Read on the topic and on the group.
    let (ok, stdout, stderr) = kcat(
        &["-b", &sasl, "-G", "team", "-e", "orders-eu"],
        &[
            alice.clone(),
            vec!["auto.offset.reset=earliest".to_string()],
        ]
        .concat(),
        "",
    );
    assert!(
        ok && stdout.contains("one") && stdout.contains("two"),
        "alice reads as team: {stdout} {stderr}"
    );
    let (_, stdout, stderr) = kcat(
        &["-b", &sasl, "-G", "other-group", "-e", "orders-eu"],
        &alice,
        "",
    );
    assert!(
        !stdout.contains("one") && stderr.contains("uthoriz"),
        "no Read on other-group: {stderr}"
    );
    // Metadata lists only what the principal may Describe.
    let (ok, stdout, _) = kcat(&["-b", &sasl, "-L"], &alice, "");
    assert!(
        ok && stdout.contains("\"orders-eu\"") && stdout.contains("\"payments\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\"orders-secret\""),
        "denied topics are not listed: {stdout}"
    );
    let (ok, stdout, _) = kcat(&["-b", &sasl, "-L"], &bob, "");
    assert!(
        ok && stdout.contains("\"payments\"") && !stdout.contains("\"orders-eu\""),
        "{stdout}"
    );
    // Topic and ACL administration need their own ACLs.
    let (code, output) = sluice_as(
        &sasl,
        "alice",
        "alice-pw",
        &["topic", "create", "orders-new"],
    );
    assert_eq!(code, Some(1), "alice may not create topics: {output}");
    assert!(output.contains("AUTHORIZATION_FAILED"), "{output}");
    let (code, output) = sluice_as(&sasl, "alice", "alice-pw", &["acl", "list"]);
    assert_eq!(code, Some(1), "alice may not list ACLs: {output}");
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "Create",
        "--topic",
        "orders-",
        "--prefixed",
    ]);
    admin(&[
        "acl",
        "create",
        "--principal",
        "User:alice",
        "--operation",
        "Describe",
        "--cluster",
    ]);
    let (code, output) = sluice_as(
        &sasl,
        "alice",
        "alice-pw",
        &["topic", "create", "orders-new"],
    );
    assert_eq!(code, Some(0), "Create on the prefix: {output}");
    let (code, output) = sluice_as(&sasl, "alice", "alice-pw", &["acl", "list"]);
    assert_eq!(
        code,
        Some(0),
        "Describe on the cluster lists ACLs: {output}"
    );
    let (code, output) = sluice_as(&sasl, "alice", "alice-pw", &["acl", "delete", "--all"]);
    assert_eq!(
        code,
        Some(1),
        "deleting ACLs needs Alter on the cluster: {output}"
    );
    // The Python clients see the same decisions.
    let options = |user: &str, password: &str| {
        vec![
            "protocol=SASL_PLAINTEXT".to_string(),
            "mechanism=SCRAM-SHA-512".to_string(),
            format!("user={user}"),
            format!("password={password}"),
            "count=3".to_string(),
        ]
    };
    for client in ["kafka-python", "confluent-kafka"] {
        let outcome = python_client(
            client,
            &sasl,
            "orders-eu",
            &[
                options("alice", "alice-pw"),
                vec!["mode=produce".to_string()],
            ]
            .concat(),
        );
        assert!(outcome.is_ok(), "{client} alice produces: {outcome:?}");
        let outcome = python_client(
            client,
            &sasl,
            "payments",
            &[
                options("alice", "alice-pw"),
                vec!["mode=produce".to_string()],
            ]
            .concat(),
        );
        assert!(
            outcome.is_err(),
            "{client} alice may not produce to payments: {outcome:?}"
        );
    }
    // Revoking: the deny goes, alice writes orders-secret through the prefix.
    admin(&[
        "acl",
        "delete",
        "--principal",
        "User:alice",
        "--topic",
        "orders-secret",
        "--deny",
    ]);
    let (ok, _, stderr) = kcat(&["-b", &sasl, "-t", "orders-secret", "-P"], &alice, "now\n");
    assert!(ok, "after the deny is deleted: {stderr}");
}

#[test]
fn client_certificate_subjects_are_principals_for_acls() {
    let certificates = Certificates::new();
    let broker = tls_broker(
        &certificates,
        "required",
        // The PLAINTEXT listener's User:ANONYMOUS administers (a loopback-only admin
        // listener); SSL clients are their certificates.
        &[
            "--set",
            "authorizer.enable=true",
            "--set",
            "super.users=User:ANONYMOUS",
        ],
    );
    let ssl = broker.listener("SSL");
    let plaintext = broker.listener("PLAINTEXT");
    let sluice = |arguments: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(arguments)
            .args(["--brokers", &plaintext])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{arguments:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    sluice(&["topic", "create", "audited", "--partitions", "1"]);
    sluice(&["topic", "create", "closed", "--partitions", "1"]);
    sluice(&[
        "acl",
        "create",
        "--principal",
        "User:CN=alice,O=Acme,C=US",
        "--operation",
        "Write",
        "--operation",
        "Read",
        "--topic",
        "audited",
    ]);
    let settings = kcat_ssl(&certificates, true);
    let (ok, _, stderr) = kcat(&["-b", &ssl, "-t", "audited", "-P"], &settings, "signed\n");
    assert!(ok, "the certificate's subject is the principal: {stderr}");
    let (ok, _, stderr) = kcat(
        &["-b", &ssl, "-t", "closed", "-P", "-m", "5"],
        &settings,
        "x\n",
    );
    assert!(
        !ok || stderr.contains("authorization failed"),
        "no ACL for closed: {stderr}"
    );
}

/// An RSA key, its JWKS (file) and tokens signed with it, made with `openssl`.
struct TokenIssuer {
    dir: tempfile::TempDir,
}

impl TokenIssuer {
    fn new() -> TokenIssuer {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        for name in ["jwt", "other"] {
            openssl(
                dir.path(),
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &format!("{name}.key"),
                ],
            );
        }
        let output = Command::new("openssl")
            .args(["rsa", "-in", "jwt.key", "-noout", "-modulus"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let hex = text.trim().strip_prefix("Modulus=").expect("modulus");
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus);
        std::fs::write(
            dir.path().join("jwks.json"),
            format!(r#"{{"keys":[{{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"{n}","e":"AQAB"}}]}}"#),
        )
        .unwrap();
        TokenIssuer { dir }
    }

    fn jwks_url(&self) -> String {
        format!("file://{}", self.dir.path().join("jwks.json").display())
    }

    /// A token for `subject`, expiring `valid_for_s` from now (negative: already expired),
    /// signed with `key` ("jwt" is in the JWKS, "other" is not).
    fn token(&self, subject: &str, issuer: &str, valid_for_s: i64, key: &str) -> String {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = engine.encode(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let claims = engine.encode(format!(
            r#"{{"sub":"{subject}","iss":"{issuer}","aud":["sluice"],"iat":{now},"exp":{}}}"#,
            now + valid_for_s
        ));
        let signed = format!("{header}.{claims}");
        std::fs::write(self.dir.path().join("signed.txt"), &signed).unwrap();
        let output = Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-sign",
                &format!("{key}.key"),
                "signed.txt",
            ])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success());
        format!("{signed}.{}", engine.encode(output.stdout))
    }
}

#[test]
fn oauthbearer_tokens_are_checked_against_the_jwks() {
    let issuer = TokenIssuer::new();
    let jwks = format!("sasl.oauthbearer.jwks.endpoint.url={}", issuer.jwks_url());
    let broker = sasl_broker(
        None,
        &[
            "--set",
            "sasl.enabled.mechanisms=SCRAM-SHA-256,OAUTHBEARER",
            "--set",
            &jwks,
            "--set",
            "sasl.oauthbearer.expected.issuer=https://issuer.test",
            "--set",
            "sasl.oauthbearer.expected.audience=sluice,other",
            "--set",
            "authorizer.enable=true",
            "--set",
            "super.users=User:admin",
        ],
    );
    let sasl = broker.listener("SASL_PLAINTEXT");
    let (code, output) = sluice_as(
        &sasl,
        ADMIN,
        ADMIN_PASSWORD,
        &[
            "acl",
            "create",
            "--principal",
            "User:carol",
            "--operation",
            "All",
            "--topic",
            "tokens",
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    let (code, output) = sluice_as(
        &sasl,
        ADMIN,
        ADMIN_PASSWORD,
        &["topic", "create", "tokens", "--partitions", "1"],
    );
    assert_eq!(code, Some(0), "{output}");
    let good = issuer.token("carol", "https://issuer.test", 600, "jwt");
    for client in ["kafka-python", "confluent-kafka"] {
        let options = [
            "protocol=SASL_PLAINTEXT".to_string(),
            "mechanism=OAUTHBEARER".to_string(),
            format!("token={good}"),
            "count=5".to_string(),
        ];
        let outcome = python_client(client, &sasl, "tokens", &options);
        assert!(
            outcome.is_ok(),
            "{client} with a valid token (principal User:carol): {outcome:?}"
        );
    }
    // Expired, wrong issuer, signed by a key not in the JWKS: each refused.
    for (what, token) in [
        (
            "expired",
            issuer.token("carol", "https://issuer.test", -3600, "jwt"),
        ),
        (
            "wrong issuer",
            issuer.token("carol", "https://elsewhere.test", 600, "jwt"),
        ),
        (
            "unknown key",
            issuer.token("carol", "https://issuer.test", 600, "other"),
        ),
    ] {
        let options = [
            "protocol=SASL_PLAINTEXT".to_string(),
            "mechanism=OAUTHBEARER".to_string(),
            format!("token={token}"),
            "count=1".to_string(),
            "mode=metadata".to_string(),
        ];
        let outcome = python_client("confluent-kafka", &sasl, "tokens", &options);
        assert!(
            outcome.is_err(),
            "{what} token must be refused: {outcome:?}"
        );
    }
}

#[test]
fn sessions_expire_without_reauthentication_and_clients_reauthenticate() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("metrics.listen=127.0.0.1:{metrics_port}");
    let broker = sasl_broker(
        None,
        &["--set", "connections.max.reauth.ms=1500", "--set", &metrics],
    );
    let sasl = broker.listener("SASL_PLAINTEXT");
    // A client that never re-authenticates is closed at its first request after the lifetime.
    let mut connection = sluice::bench::client::Connection::open(&sasl, "stale").unwrap();
    connection
        .authenticate("SCRAM-SHA-256", ADMIN, ADMIN_PASSWORD)
        .unwrap();
    let mut metadata = kafka_protocol::messages::MetadataRequest::default();
    metadata.topics = Some(Vec::new());
    assert!(
        connection.call_at::<_>(1, &metadata).is_ok(),
        "within the session"
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        connection.call_at::<_>(1, &metadata).is_err(),
        "expired session is closed"
    );
    // librdkafka (confluent-kafka's, KIP-368 since 2.2) re-authenticates on its connections
    // and keeps producing.
    let options = [
        "protocol=SASL_PLAINTEXT".to_string(),
        "mechanism=SCRAM-SHA-512".to_string(),
        format!("user={ADMIN}"),
        format!("password={ADMIN_PASSWORD}"),
        "count=40".to_string(),
        "pace_ms=100".to_string(),
        "mode=produce".to_string(),
    ];
    assert!(
        kcat(
            &[
                "-b",
                &broker.listener("PLAINTEXT"),
                "-t",
                "long-lived",
                "-P"
            ],
            &[],
            ""
        )
        .0
    );
    let outcome = python_client("confluent-kafka", &sasl, "long-lived", &options);
    assert!(
        outcome.is_ok(),
        "a producer across several session lifetimes: {outcome:?}"
    );
    let scrape = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{metrics_port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&scrape.stdout).to_string();
    let successes: f64 = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"sluice_sasl_authentications_total{mechanism="SCRAM-SHA-512",outcome="success"} "#)
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        successes >= 3.0,
        "re-authentications happened: {successes} ({text:.0})"
    );
}

/// Node links over mutual TLS (CONTROLLER mapped to SSL): three nodes elect a controller,
/// replicate a topic and acknowledge acks=all writes through TLS links; a fourth node whose
/// certificate another CA signed, and one whose certificate is trusted but whose principal is
/// not a super user, never join; the same fourth node with a good certificate does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_links_over_mutual_tls_admit_only_trusted_super_users() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    const NODE_EXTENSIONS: &str = "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,\
        IP:127.0.0.4\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n";
    let trusted = Certificates::new();
    std::fs::write(trusted.path("node.ext"), NODE_EXTENSIONS).unwrap();
    trusted.issue("node", "/CN=sluice-node", "node.ext");
    trusted.issue("stranger", "/CN=stranger", "node.ext");
    let rogue = Certificates::new();
    std::fs::write(rogue.path("node.ext"), NODE_EXTENSIONS).unwrap();
    rogue.issue("node", "/CN=sluice-node", "node.ext");

    let settings = |keystore: String| {
        [
            "listener.security.protocol.map=CONTROLLER:SSL".to_string(),
            format!("ssl.keystore.location={keystore}"),
            format!("ssl.truststore.location={}", trusted.file("ca.pem")),
            "authorizer.enable=true".to_string(),
            "super.users=User:CN=sluice-node".to_string(),
            "allow.everyone.if.no.acl.found=true".to_string(),
        ]
        .into_iter()
        .flat_map(|setting| ["--set".to_string(), setting])
        .collect::<Vec<String>>()
    };
    let cluster_settings = settings(trusted.file("node-keystore.pem"));
    let cluster_args: Vec<&str> = cluster_settings.iter().map(String::as_str).collect();
    let cluster = common::Cluster::start(&cluster_args);
    let controller = common::agreed_controller(&cluster, &[1, 2, 3]);
    let bootstrap = cluster.address(controller);
    common::create_replicated_topic(&bootstrap, "over-tls", 1, 3).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap().as_str())
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for index in 0..20 {
        let value = format!("tls-{index}");
        producer
            .send(
                FutureRecord::to("over-tls").key(&value).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged by all three replicas over TLS links");
    }

    // A fourth node, not a voter, that tries to join with `keystore`, on ports of its own
    // (each try binds fresh ones: a node that just died may still hold its address).
    let port = cluster.client_port;
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.4:0")
            .expect("bind 127.0.0.4")
            .local_addr()
            .unwrap()
            .port()
    };
    let voters = (1..=3)
        .map(|node| format!("{node}@127.0.0.{node}:{}", port + 1))
        .collect::<Vec<_>>()
        .join(",");
    let fourth = |keystore: String| {
        let (client, controller) = (free_port(), free_port());
        let mut args = vec![
            "--node-id".to_string(),
            "4".to_string(),
            "--cores".to_string(),
            "1".to_string(),
            "--set".to_string(),
            format!("listeners=PLAINTEXT://127.0.0.4:{client},CONTROLLER://127.0.0.4:{controller}"),
            "--set".to_string(),
            format!("controller.quorum.voters={voters}"),
        ];
        args.extend(settings(keystore));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Broker::start_at(&args, &format!("127.0.0.4:{client}"))
    };
    let registered = |within: Duration| {
        common::wait_until(within, || {
            common::metadata(&bootstrap).is_some_and(|(_, brokers, _)| brokers.contains(&4))
        })
    };
    for (keystore, why) in [
        (rogue.file("node-keystore.pem"), "signed by another CA"),
        (trusted.file("stranger-keystore.pem"), "not a super user"),
    ] {
        let node = fourth(keystore);
        assert!(
            !registered(Duration::from_secs(8)),
            "a node whose certificate is {why} joined the cluster"
        );
        drop(node);
    }
    let _node = fourth(trusted.file("node-keystore.pem"));
    assert!(
        registered(Duration::from_secs(20)),
        "a node with a trusted super-user certificate did not join"
    );
}
