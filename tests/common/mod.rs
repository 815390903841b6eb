//! Starts the real `sluice` binary on 127.0.0.1 with an ephemeral port and a temp data dir, and
//! small helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub child: Option<Child>,
    pub address: String,
    pub data_dir: PathBuf,
    /// What the broker printed on stdout before its readiness line, at its last start.
    pub startup_lines: Vec<String>,
    extra_args: Vec<String>,
    /// Variables set for the broker process (`SLUICE_BOOTSTRAP_USER`).
    pub environment: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
}

impl Broker {
    /// A broker with two shards (or one on a single-CPU machine) and a fresh data dir.
    pub fn start(extra_args: &[&str]) -> Broker {
        Broker::start_on(extra_args, "127.0.0.1:0")
    }

    /// Like `start`, but on a fixed port below the ephemeral range, so that a restart on the
    /// same address cannot collide with a client socket that the kernel gave that same port
    /// (on loopback a client reconnecting to a dead ephemeral port can connect to itself).
    pub fn start_restartable(extra_args: &[&str]) -> Broker {
        // Tests of one binary run in parallel: each takes its own slot, so two of them never
        // probe the same free port and then both bind it (SO_REUSEPORT would let them).
        static NEXT_SLOT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let slot = NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (20_000..32_000)
            .step_by(128)
            .map(|base| base + (std::process::id() as u16 % 16) * 8 + slot % 8)
            .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("a free port below the ephemeral range");
        Broker::start_on(extra_args, &format!("127.0.0.1:{port}"))
    }

    /// `start`, with `environment` set for the broker process (at every start).
    pub fn start_with_environment(extra_args: &[&str], environment: &[(&str, &str)]) -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            child: None,
            address: String::new(),
            data_dir: temp.path().join("data"),
            startup_lines: Vec::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            environment: environment
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            _temp: Some(temp),
        };
        broker.spawn_on("127.0.0.1:0");
        broker
    }

    /// A broker listening for clients on `listen` (a fixed address), with a fresh data dir.
    pub fn start_at(extra_args: &[&str], listen: &str) -> Broker {
        Broker::start_on(extra_args, listen)
    }

    fn start_on(extra_args: &[&str], listen: &str) -> Broker {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            child: None,
            address: String::new(),
            data_dir: temp.path().join("data"),
            startup_lines: Vec::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            environment: Vec::new(),
            _temp: Some(temp),
        };
        broker.spawn_on(listen);
        broker
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(2)
    }

    fn spawn(&mut self) {
        self.spawn_on("127.0.0.1:0");
    }

    /// Starts again on the same data dir and the same address, so clients reconnect.
    pub fn restart_same_address(&mut self) {
        self.kill9();
        let address = self.address.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The old listener's port can take a moment to be free again.
            if std::net::TcpListener::bind(&address).is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn_on(&address);
    }

    fn spawn_on(&mut self, listen: &str) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--cores")
            .arg(Broker::cores().to_string())
            .args(&self.extra_args)
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start sluice");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        self.startup_lines.clear();
        let address = loop {
            assert!(Instant::now() < deadline, "broker did not start");
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("sluice: listening on ") {
                        break address.trim().to_string();
                    }
                    self.startup_lines.push(line);
                }
                _ => panic!("broker exited before listening: {:?}", child.wait()),
            }
        };
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.address = address;
        self.child = Some(child);
    }

    /// The address of client listener `name`, from the broker's start-up lines.
    pub fn listener(&self, name: &str) -> String {
        let prefix = format!("sluice: listener {name} on ");
        self.startup_lines
            .iter()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.startup_lines))
            .trim()
            .to_string()
    }

    /// SIGKILL: no shutdown path runs, like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, as systemd and operators stop a broker; waits (up to `within`) for the exit.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running broker");
        // SAFETY: kill(2) on the pid of our own child process.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM not sent");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().expect("kill after timeout");
                panic!("broker did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the process freezes or resumes, sockets open.
    pub fn pause(&mut self, paused: bool) {
        let child = self.child.as_ref().expect("a running broker");
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on the pid of our own child process.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal not sent");
    }

    /// Starts on the same data dir after the process ended by itself (new port).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Starts again on the same data dir (new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Three nodes on 127.0.0.1, .2 and .3 (same ports, distinct addresses), every one a controller
/// voter, each with one shard: `nodes[i]` is node i + 1.
#[allow(dead_code)] // not every test binary that includes this module runs a cluster
pub struct Cluster {
    pub nodes: Vec<Broker>,
    pub client_port: u16,
}

#[allow(dead_code)]
impl Cluster {
    pub fn start(extra_args: &[&str]) -> Cluster {
        // Ports below the ephemeral range, free on all three addresses.
        // Tests of one binary run in parallel: each cluster takes its own slot of ports.
        static NEXT_SLOT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let slot = NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_port = (21_000..31_000)
            .step_by(64)
            .map(|port| port + (std::process::id() as u16 % 16) * 4 + slot * 2)
            .find(|port| {
                (1..=3).all(|node| {
                    [*port, port + 1].iter().all(|p| {
                        std::net::TcpListener::bind((format!("127.0.0.{node}").as_str(), *p))
                            .is_ok()
                    })
                })
            })
            .expect("free ports on 127.0.0.1-3");
        let controller_port = client_port + 1;
        let voters = (1..=3)
            .map(|node| format!("{node}@127.0.0.{node}:{controller_port}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (1..=3)
            .map(|node| {
                let listeners = format!(
                    "listeners=PLAINTEXT://127.0.0.{node}:{client_port},CONTROLLER://127.0.0.{node}:{controller_port}"
                );
                let voters = format!("controller.quorum.voters={voters}");
                let node_id = node.to_string();
                let mut args = vec![
                    "--node-id",
                    node_id.as_str(),
                    "--cores",
                    "1",
                    "--set",
                    listeners.as_str(),
                    "--set",
                    voters.as_str(),
                ];
                args.extend_from_slice(extra_args);
                Broker::start_at(&args, &format!("127.0.0.{node}:{client_port}"))
            })
            .collect();
        Cluster { nodes, client_port }
    }

    pub fn address(&self, node: i32) -> String {
        format!("127.0.0.{node}:{}", self.client_port)
    }

    pub fn bootstrap(&self) -> String {
        (1..=3)
            .map(|node| self.address(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&mut self, node: i32) -> &mut Broker {
        &mut self.nodes[(node - 1) as usize]
    }
}

/// Node-to-node traffic between `node` and each of `others` (on 127.0.0.N, TCP to or from
/// `port`) dropped by iptables rules on `lo`, until dropped. Client traffic is untouched.
#[allow(dead_code)]
pub struct CutLinks {
    rules: Vec<Vec<String>>,
}

#[allow(dead_code)]
impl CutLinks {
    pub fn cut(node: i32, others: &[i32], port: u16) -> CutLinks {
        let mut rules = Vec::new();
        for other in others {
            for (from, to) in [(node, *other), (*other, node)] {
                for direction in ["--dport", "--sport"] {
                    rules.push(
                        [
                            "INPUT",
                            "-i",
                            "lo",
                            "-p",
                            "tcp",
                            "-s",
                            &format!("127.0.0.{from}"),
                            "-d",
                            &format!("127.0.0.{to}"),
                            direction,
                            &port.to_string(),
                            "-j",
                            "DROP",
                        ]
                        .iter()
                        .map(|part| part.to_string())
                        .collect(),
                    );
                }
            }
        }
        for rule in &rules {
            let status = Command::new("iptables")
                .arg("-I")
                .args(rule)
                .status()
                .expect("iptables must be installed (apt-get install iptables) and run as root");
            assert!(status.success(), "iptables -I {rule:?} failed");
        }
        CutLinks { rules }
    }
}

impl Drop for CutLinks {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).status();
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// One size-prefixed request frame (client id `raw-test`), for `RawClient::request` and for
/// pipelining several frames before reading any answer.
pub fn frame<Req>(
    api_key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Vec<u8>
where
    Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    use kafka_protocol::protocol::Encodable;
    let mut header = kafka_protocol::messages::RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(kafka_protocol::protocol::StrBytes::from_static_str(
        "raw-test",
    ));
    let mut body = bytes::BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .expect("encode header");
    request.encode(&mut body, version).expect("encode body");
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// A raw Kafka-protocol connection for requests real clients cannot be made to send.
pub struct RawClient {
    stream: TcpStream,
    pub correlation_id: i32,
}

impl RawClient {
    pub fn connect(address: &str) -> RawClient {
        RawClient::try_connect(address).expect("connect")
    }

    /// None if nothing listens at `address` (a stopped node).
    pub fn try_connect(address: &str) -> Option<RawClient> {
        let stream = TcpStream::connect(address).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        Some(RawClient {
            stream,
            correlation_id: 0,
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a request with header v1/v2 as the API needs and returns the response body.
    pub fn request<
        Req: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
    >(
        &mut self,
        api_key: kafka_protocol::messages::ApiKey,
        version: i16,
        request: &Req,
    ) -> std::io::Result<bytes::Bytes> {
        self.correlation_id += 1;
        let framed = frame(api_key, version, self.correlation_id, request);
        self.stream.write_all(&framed)?;
        self.read_response(api_key.response_header_version(version))
    }

    pub fn read_response(&mut self, header_version: i16) -> std::io::Result<bytes::Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame)?;
        let mut frame = bytes::Bytes::from(frame);
        let correlation_id = bytes::Buf::get_i32(&mut frame);
        assert_eq!(
            correlation_id, self.correlation_id,
            "responses in request order"
        );
        if header_version >= 1 {
            let tagged = bytes::Buf::get_u8(&mut frame);
            assert_eq!(tagged, 0);
        }
        Ok(frame)
    }

    /// True if the broker closes the connection within `timeout` (nothing else arrives).
    pub fn closes_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the broker"),
            Err(error) => !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        closed
    }

    /// True once the broker closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}

// Cluster helpers (tests/cluster.rs, tests/replication.rs).

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::Decodable;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// What a node says in Metadata: (controller id, broker ids, topic -> partition leaders).
pub type Seen = (i32, Vec<i32>, BTreeMap<String, Vec<i32>>);

/// What `address` answers to Metadata (None if it is down).
pub fn metadata(address: &str) -> Option<Seen> {
    let mut client = RawClient::try_connect(address)?;
    let mut request = MetadataRequest::default();
    request.topics = None;
    let mut body = client.request(ApiKey::Metadata, 12, &request).ok()?;
    let response = MetadataResponse::decode(&mut body, 12).ok()?;
    let mut brokers: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort();
    let topics = response
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .map(|topic| {
            let mut partitions: Vec<(i32, i32)> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            partitions.sort();
            (
                topic.name.as_ref().expect("name").to_string(),
                partitions.into_iter().map(|(_, leader)| leader).collect(),
            )
        })
        .collect();
    Some((response.controller_id.0, brokers, topics))
}

/// Waits until every listed node reports all three brokers and the same elected controller.
pub fn agreed_controller(cluster: &Cluster, nodes: &[i32]) -> i32 {
    let mut controller = -1;
    let agreed = wait_until(Duration::from_secs(20), || {
        let seen: Vec<Option<Seen>> = nodes
            .iter()
            .map(|node| metadata(&cluster.address(*node)))
            .collect();
        let Some(Some((first, _, _))) = seen.first() else {
            return false;
        };
        controller = *first;
        controller >= 0
            && seen.iter().all(|answer| {
                matches!(answer, Some((id, brokers, _)) if *id == controller && brokers == &vec![1, 2, 3])
            })
    });
    assert!(agreed, "nodes {nodes:?} did not agree on a controller");
    controller
}

pub fn admin(address: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client")
}

/// Creates a topic with one replica per partition (asserting success).
pub async fn create_topic(address: &str, name: &str, partitions: i32) {
    create_replicated_topic(address, name, partitions, 1).await;
}

/// Creates a topic with `replicas` replicas per partition (asserting success).
pub async fn create_replicated_topic(address: &str, name: &str, partitions: i32, replicas: i32) {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    let results = admin(address)
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics");
    assert_eq!(results[0], Ok(name.to_string()));
}

/// DeleteRecords (v2) of one partition to `offset` at `address`: (error code, low watermark).
pub fn delete_records(address: &str, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    delete_records_at(2, address, topic, partition, offset)
}

/// `delete_records` at request version `version`.
pub fn delete_records_at(
    version: i16,
    address: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::DeleteRecordsRequest;
    let mut connection = sluice::bench::client::Connection::open(address, "test").expect("connect");
    let mut wanted = DeleteRecordsPartition::default();
    wanted.partition_index = partition;
    wanted.offset = offset;
    let mut topic_request = DeleteRecordsTopic::default();
    topic_request.name = sluice::bench::client::topic_name(topic);
    topic_request.partitions.push(wanted);
    let mut request = DeleteRecordsRequest::default();
    request.topics.push(topic_request);
    request.timeout_ms = 10_000;
    let response = connection
        .call(version, version, &request)
        .expect("DeleteRecords");
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.low_watermark)
}

/// ListOffsets of one partition at `address` (-2 earliest: the log start offset; -1 latest: the
/// high watermark): (error code, offset).
pub fn offset_at(address: &str, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
    let mut connection = sluice::bench::client::Connection::open(address, "test").expect("connect");
    let mut wanted = ListOffsetsPartition::default();
    wanted.partition_index = partition;
    wanted.timestamp = timestamp;
    wanted.current_leader_epoch = -1;
    let mut topic_request = ListOffsetsTopic::default();
    topic_request.name = sluice::bench::client::topic_name(topic);
    topic_request.partitions.push(wanted);
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics.push(topic_request);
    let response = connection.call(1, 7, &request).expect("ListOffsets");
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset)
}
