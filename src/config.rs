//! Broker configuration: one `Config`, filled from defaults, then a TOML file, then environment
//! variables, then command-line flags (later wins), and validated once at start. Every shard gets
//! its own copy.
//!
//! Keys are Kafka's own names (`num.partitions`, `log.retention.ms`, ...). In TOML they can be
//! written as Kafka writes them, `log.retention.ms = 1000` (TOML reads the dots as nested tables;
//! they are flattened back), or quoted. Every numeric limit has a default and a maximum, listed
//! in `KEYS` and in README; a value outside its range refuses to start with a clear message.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}` (see README for the supported keys)")]
    UnknownKey { key: String },
    #[error("`{key}`: {reason} (got `{value}`)")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("{0}")]
    Usage(String),
}

/// `socket.request.max.bytes` upper bound: a frame is buffered whole before decoding.
pub const SOCKET_REQUEST_MAX_BYTES_MAX: u64 = 1 << 30;
/// Shards are pinned one per CPU; more than this is certainly a typo.
pub const CORES_MAX: u64 = 1024;
/// Kafka caps segment.bytes at i32::MAX (index positions are u32).
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Segments below 1 MiB roll so often that file handles, not data, dominate.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Largest fallocate step (`log.preallocate.bytes`): past 1 GiB a step only wastes disk.
pub const LOG_PREALLOCATE_BYTES_MAX: u64 = 1 << 30;
/// The largest record batch accepted (Kafka's `message.max.bytes` ceiling here).
pub const MESSAGE_MAX_BYTES_MAX: u64 = 64 << 20;
/// Partitions per topic: placement tables are copied to every shard.
pub const PARTITIONS_PER_TOPIC_MAX: u64 = 10_000;
/// Per-shard read cache: bounded so a shard's memory is predictable.
pub const CACHE_BYTES_PER_SHARD_MAX: u64 = 64 << 30;

#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka names of the keys set by the config file, a SLUICE_* variable or a flag (the rest
    /// are defaults, or derived in `finish`). DescribeConfigs reports the former as
    /// STATIC_BROKER_CONFIG and the latter as DEFAULT_CONFIG.
    pub explicit: std::collections::BTreeSet<String>,
    pub listen: SocketAddr,
    /// The `CONTROLLER` listener of `listeners`: node-to-node traffic (the controller quorum,
    /// later partition replication). Outgoing node-to-node sockets are bound to its address.
    pub controller_listen: Option<SocketAddr>,
    /// `controller.quorum.voters`: node id and CONTROLLER address of each voter. Empty: this
    /// node alone is the quorum (one-node cluster).
    pub controller_quorum_voters: Vec<(i32, SocketAddr)>,
    /// `broker.rack`: reported in Metadata, used to spread replicas.
    pub broker_rack: Option<String>,
    /// Broker default of the topic key `min.insync.replicas` (Kafka's key, default 1): an
    /// acks=all produce to a partition with fewer in-sync replicas gets NOT_ENOUGH_REPLICAS.
    pub min_insync_replicas: u32,
    /// `default.replication.factor` (Kafka's key): the replication factor of topics created
    /// without one (CreateTopics with -1, auto-creation). -1 (the default): min(3, brokers), as
    /// MSK sets it.
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor` (Kafka's key, default 3 as Kafka's): replicas of each
    /// `__consumer_offsets` partition, capped at the cluster's size (its voters, or its
    /// registered brokers if more), so one node works with the default. As in Kafka, the topic
    /// is created only once that many brokers are registered (FindCoordinator answers
    /// COORDINATOR_NOT_AVAILABLE, retriable, until then).
    pub offsets_topic_replication_factor: i16,
    /// `replica.lag.time.max.ms` (Kafka's key, default 30000): a follower that has not caught up
    /// with the leader's log end within this time leaves the in-sync replicas.
    pub replica_lag_time_max_ms: u64,
    /// Raft election timeout for the controller quorum (Kafka's key, default 1000 ms): a
    /// follower that hears no leader for a random time in [t, 2t) starts an election.
    pub controller_quorum_election_timeout_ms: u64,
    /// How often a Raft leader heartbeats its followers (Sluice's key, default 200 ms; Kafka's
    /// KRaft polls instead, Redpanda's `raft_heartbeat_interval_ms` is the model).
    pub raft_heartbeat_interval_ms: u64,
    /// A broker heartbeats the active controller this often (Kafka's key and default, 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// A broker silent this long is fenced: left out of Metadata, its partitions reported
    /// offline, given no new partitions (Kafka's key and default, 9000).
    pub broker_session_timeout_ms: u64,
    /// host:port clients are told to connect to (Metadata). Defaults to `listen`.
    pub advertise_host: String,
    pub advertise_port: u16,
    pub data_dir: PathBuf,
    pub cores: usize,
    pub node_id: i32,
    pub cluster_id: String,
    pub num_partitions: i32,
    pub auto_create_topics_enable: bool,
    pub socket_request_max_bytes: u32,
    pub message_max_bytes: u32,
    pub log_segment_bytes: u64,
    pub log_roll_ms: i64,
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: u64,
    pub log_index_interval_bytes: u32,
    pub log_preallocate_bytes: u64,
    /// Group commit: the flusher may wait this long for more appends before an fdatasync.
    /// 0 (default) flushes as soon as the previous flush completes.
    pub log_flush_delay_us: u64,
    pub cache_bytes_per_shard: u64,
    /// Pipelined requests one connection may have in flight before the broker stops reading.
    pub connection_requests_in_flight_max: u32,
    /// Largest Fetch response (Kafka's broker `fetch.max.bytes`); client max_bytes is capped by it.
    pub fetch_max_bytes: u32,
    /// Request bytes a shard may hold in memory at once (read but not yet answered); readers
    /// wait when it is used up (Kafka's `queued.max.request.bytes`, per shard here).
    pub queued_max_request_bytes: u64,
    /// Partitions of `__consumer_offsets` when it is created (Kafka's default is 50; 16 here,
    /// like Redpanda, because each partition is a preallocated log).
    pub offsets_topic_num_partitions: i32,
    /// How long an empty group's first rebalance waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// Session timeouts a JoinGroup may ask for (Kafka's keys and defaults).
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Members (and pending member ids) per group. Kafka's default is unlimited; a rebalance
    /// sends the leader every member's subscription, so Sluice keeps a finite default.
    pub group_max_size: u32,
    /// Groups one coordinator shard keeps (joined or holding committed offsets); new groups
    /// past it get COORDINATOR_NOT_AVAILABLE (retriable) until old ones expire.
    pub groups_per_shard_max: u32,
    /// Client connections the broker holds at once (0: derived at start from the open-file
    /// limit, keeping half the descriptors for segment files and the rest).
    pub max_connections: u32,
    /// Client connections from one IP address (0: unlimited, Kafka's default).
    pub max_connections_per_ip: u32,
    /// A connection with nothing in flight and no traffic for this long is closed (Kafka's key).
    pub connections_max_idle_ms: u64,
    /// Produce is refused (KAFKA_STORAGE_ERROR, retriable) while the data directory's file
    /// system has less free space than this, and resumes by itself when space returns: a full
    /// disk is never reached through appends, and what is stored stays readable.
    pub log_dir_free_bytes_min: u64,
    /// The metadata log is snapshotted (and compacted) once this many bytes of entries follow
    /// the last snapshot (Kafka's key and default, 20 MiB).
    pub metadata_log_snapshot_bytes: u64,
    /// Time allowed from a request's first byte to its last; a client trickling a large frame
    /// is cut off (no Kafka key bounds this).
    pub socket_request_read_timeout_ms: u64,
    /// Committed offsets of empty groups are removed this long after their commit.
    pub offsets_retention_minutes: i64,
    pub offsets_retention_check_interval_ms: u64,
    /// A shard with no work spins this long before sleeping. Waking a sleeping shard costs
    /// ~90 µs on the test VM (benches/README.md), paid by every cross-shard request on a
    /// lightly loaded broker; spinning trades idle CPU for that latency. 0 = sleep at once.
    pub shard_spin_before_park_us: u64,
}

impl Default for Config {
    fn default() -> Config {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            controller_listen: None,
            controller_quorum_voters: Vec::new(),
            broker_rack: None,
            min_insync_replicas: 1,
            default_replication_factor: -1,
            offsets_topic_replication_factor: 3,
            replica_lag_time_max_ms: 30_000,
            controller_quorum_election_timeout_ms: 1_000,
            raft_heartbeat_interval_ms: 200,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            advertise_host: String::new(),
            advertise_port: 0,
            data_dir: PathBuf::from("./data"),
            cores,
            node_id: 0,
            explicit: std::collections::BTreeSet::new(),
            cluster_id: String::new(),
            num_partitions: 1,
            auto_create_topics_enable: true,
            socket_request_max_bytes: 100 << 20,
            message_max_bytes: 1_048_588,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_index_interval_bytes: 4096,
            log_preallocate_bytes: 64 << 20,
            log_flush_delay_us: 0,
            cache_bytes_per_shard: 128 << 20,
            connection_requests_in_flight_max: 128,
            fetch_max_bytes: 55 << 20,
            queued_max_request_bytes: 512 << 20,
            offsets_topic_num_partitions: 16,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 10_000,
            groups_per_shard_max: 100_000,
            max_connections: 0,
            max_connections_per_ip: 0,
            connections_max_idle_ms: 600_000,
            socket_request_read_timeout_ms: 30_000,
            log_dir_free_bytes_min: 256 << 20,
            metadata_log_snapshot_bytes: 20 << 20,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            shard_spin_before_park_us: 0,
        }
    }
}

/// (key, meaning) for every accepted key; README mirrors this list.
pub const KEYS: &[(&str, &str)] = &[
    (
        "listeners",
        "PLAINTEXT://host:port for clients (or bare host:port), plus CONTROLLER://host:port for node-to-node traffic (default 127.0.0.1:9092)",
    ),
    (
        "controller.quorum.voters",
        "id@host:port of each controller voter, comma-separated (default: this node alone)",
    ),
    ("broker.rack", "rack (or zone) of this node, reported in Metadata"),
    (
        "min.insync.replicas",
        "acks=all needs this many in-sync replicas (default 1)",
    ),
    (
        "default.replication.factor",
        "replicas of new topics created without one (default -1: min(3, brokers))",
    ),
    (
        "offsets.topic.replication.factor",
        "replicas of each __consumer_offsets partition, capped at the cluster's size (default 3)",
    ),
    (
        "replica.lag.time.max.ms",
        "a follower not caught up within this time leaves the in-sync replicas (default 30000)",
    ),
    (
        "controller.quorum.election.timeout.ms",
        "Raft election timeout of the controller quorum and of partition groups; elections start after [t, 2t) of silence (default 1000)",
    ),
    (
        "raft.heartbeat.interval.ms",
        "how often a Raft leader heartbeats its followers (default 200)",
    ),
    (
        "broker.heartbeat.interval.ms",
        "how often a broker heartbeats the active controller (default 2000)",
    ),
    (
        "broker.session.timeout.ms",
        "a broker silent this long is fenced (default 9000)",
    ),
    (
        "advertised.listeners",
        "host:port given to clients in Metadata (default: listeners)",
    ),
    ("log.dirs", "data directory (default ./data)"),
    (
        "cores",
        "shards, one pinned per CPU (default: all CPUs, max 1024)",
    ),
    (
        "node.id",
        "this broker's id (default 0; broker.id is accepted too)",
    ),
    (
        "cluster.id",
        "cluster id reported to clients (default: generated once, stored in log.dirs)",
    ),
    (
        "num.partitions",
        "partitions of auto-created topics (default 1, max 10000)",
    ),
    (
        "auto.create.topics.enable",
        "create unknown topics on Metadata (default true)",
    ),
    (
        "socket.request.max.bytes",
        "largest request frame (default 104857600, max 1 GiB)",
    ),
    (
        "message.max.bytes",
        "largest record batch (default 1048588, max 64 MiB)",
    ),
    (
        "log.segment.bytes",
        "segment roll size (default 1 GiB, 1 MiB..4 GiB)",
    ),
    ("log.roll.ms", "segment roll age (default 7 days)"),
    (
        "log.retention.ms",
        "delete closed segments older than this, -1 = never (default 7 days)",
    ),
    (
        "log.retention.bytes",
        "delete closed segments while a partition is larger, -1 = never",
    ),
    (
        "log.retention.check.interval.ms",
        "how often retention and time rolls run (default 300000)",
    ),
    (
        "log.index.interval.bytes",
        "bytes between offset index entries (default 4096)",
    ),
    (
        "log.preallocate.bytes",
        "largest fallocate step of the active segment; steps double from 1 MiB (default 64 MiB)",
    ),
    (
        "log.flush.delay.us",
        "group commit: extra wait before fdatasync to gather appends (default 0)",
    ),
    (
        "group.min.session.timeout.ms",
        "shortest session a consumer may ask for (default 6000)",
    ),
    (
        "group.max.session.timeout.ms",
        "longest session a consumer may ask for (default 1800000)",
    ),
    (
        "group.max.size",
        "members and pending member ids per group (default 10000, max 1000000)",
    ),
    (
        "groups.per.shard.max",
        "groups a coordinator shard keeps; new ones past it are retried (default 100000)",
    ),
    (
        "max.connections",
        "client connections at once; 0 = half the open-file limit (default 0)",
    ),
    (
        "max.connections.per.ip",
        "client connections from one address; 0 = unlimited (default 0)",
    ),
    (
        "connections.max.idle.ms",
        "close connections idle this long (default 600000)",
    ),
    (
        "log.dir.free.bytes.min",
        "refuse produce (retriable) while the data disk has less free space (default 256 MiB)",
    ),
    (
        "metadata.log.max.record.bytes.between.snapshots",
        "snapshot the cluster metadata log after this many bytes of changes (default 20 MiB)",
    ),
    (
        "socket.request.read.timeout.ms",
        "time to receive one request once its first byte arrived (default 30000)",
    ),
    (
        "cache.bytes.per.shard",
        "per-shard read cache of recent batches (default 128 MiB)",
    ),
    (
        "connection.requests.in.flight.max",
        "pipelined requests per connection (default 128)",
    ),
];

fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_int(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "not an integer"))?;
    if parsed < min || parsed > max {
        return Err(bad(key, value, format!("must be in {min}..={max}")));
    }
    Ok(parsed)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, value, "must be true or false")),
    }
}

/// Splits `host:port` (optionally prefixed `PLAINTEXT://`).
fn parse_host_port(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let trimmed = value.trim();
    let without_scheme = trimmed.strip_prefix("PLAINTEXT://").unwrap_or(trimmed);
    let (host, port) = without_scheme
        .rsplit_once(':')
        .ok_or_else(|| bad(key, value, "expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(key, value, "port must be 0..=65535"))?;
    if host.is_empty() {
        return Err(bad(key, value, "host is empty"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// One `host:port` of the setting `key = value`, resolved to a socket address.
fn resolve_host_port(key: &str, value: &str, address: &str) -> Result<SocketAddr, ConfigError> {
    let (host, port) = parse_host_port(key, address)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| bad(key, value, "not a resolvable address"))
}

impl Config {
    /// Applies one `key = value` setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        const DAY_MS_MAX: i64 = i64::MAX / 4;
        match key {
            "listeners" | "listen" => {
                // Kafka's form: `NAME://host:port` entries, comma-separated; `CONTROLLER` is
                // the node-to-node listener, the other one (PLAINTEXT) serves clients. A bare
                // `host:port` is the client listener.
                let mut client = None;
                let mut controller = None;
                for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let (name, address) = match entry.split_once("://") {
                        Some((name, address)) => (name.to_ascii_uppercase(), address),
                        None => ("PLAINTEXT".to_string(), entry),
                    };
                    let resolved = resolve_host_port(key, value, address)?;
                    let slot = match name.as_str() {
                        "CONTROLLER" => &mut controller,
                        "PLAINTEXT" => &mut client,
                        other => {
                            return Err(bad(
                                key,
                                value,
                                format!(
                                "listener {other} is not supported (PLAINTEXT and CONTROLLER are)"
                            ),
                            ))
                        }
                    };
                    if slot.replace(resolved).is_some() {
                        return Err(bad(key, value, format!("listener {name} appears twice")));
                    }
                }
                self.listen =
                    client.ok_or_else(|| bad(key, value, "no PLAINTEXT (client) listener"))?;
                self.controller_listen = controller;
            }
            "controller.quorum.voters" => {
                let mut voters = Vec::new();
                for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let (id, address) = entry
                        .split_once('@')
                        .ok_or_else(|| bad(key, value, "expected id@host:port,..."))?;
                    let id: i32 = id
                        .trim()
                        .parse()
                        .ok()
                        .filter(|id| *id >= 0)
                        .ok_or_else(|| bad(key, value, format!("`{id}` is not a node id")))?;
                    let resolved = resolve_host_port(key, value, address)?;
                    if voters.iter().any(|(other, _)| *other == id) {
                        return Err(bad(key, value, format!("voter {id} appears twice")));
                    }
                    voters.push((id, resolved));
                }
                self.controller_quorum_voters = voters;
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_int(key, value, 1, i64::from(i32::MAX))? as u32
            }
            "default.replication.factor" => {
                let factor = parse_int(key, value, -1, i64::from(i16::MAX))? as i16;
                if factor == 0 {
                    return Err(bad(
                        key,
                        value,
                        "use -1 (min(3, brokers)) or a factor of 1 or more",
                    ));
                }
                self.default_replication_factor = factor;
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor =
                    parse_int(key, value, 1, i64::from(i16::MAX))? as i16
            }
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = parse_int(key, value, 1, i64::MAX / 4)? as u64
            }
            "controller.quorum.election.timeout.ms" => {
                self.controller_quorum_election_timeout_ms =
                    parse_int(key, value, 100, 60_000)? as u64
            }
            "raft.heartbeat.interval.ms" => {
                self.raft_heartbeat_interval_ms = parse_int(key, value, 10, 10_000)? as u64
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_int(key, value, 10, 60_000)? as u64
            }
            "broker.session.timeout.ms" => {
                self.broker_session_timeout_ms = parse_int(key, value, 100, 600_000)? as u64
            }
            "broker.rack" => {
                let rack = value.trim();
                self.broker_rack = (!rack.is_empty()).then(|| rack.to_string());
            }
            "advertised.listeners" | "advertise" => {
                let (host, port) = parse_host_port(key, value)?;
                self.advertise_host = host;
                self.advertise_port = port;
            }
            "log.dirs" | "log.dir" | "data_dir" | "data-dir" => {
                if value.trim().is_empty() {
                    return Err(bad(key, value, "must not be empty"));
                }
                self.data_dir = PathBuf::from(value.trim());
            }
            "cores" => self.cores = parse_int(key, value, 1, CORES_MAX as i64)? as usize,
            "node.id" | "broker.id" | "node_id" => {
                self.node_id = parse_int(key, value, 0, i32::MAX as i64)? as i32
            }
            "cluster.id" => self.cluster_id = value.trim().to_string(),
            "num.partitions" => {
                self.num_partitions =
                    parse_int(key, value, 1, PARTITIONS_PER_TOPIC_MAX as i64)? as i32
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(key, value)?,
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes =
                    parse_int(key, value, 1024, SOCKET_REQUEST_MAX_BYTES_MAX as i64)? as u32
            }
            "message.max.bytes" => {
                self.message_max_bytes =
                    parse_int(key, value, 128, MESSAGE_MAX_BYTES_MAX as i64)? as u32
            }
            "log.segment.bytes" => {
                self.log_segment_bytes = parse_int(
                    key,
                    value,
                    SEGMENT_BYTES_MIN as i64,
                    SEGMENT_BYTES_MAX as i64,
                )? as u64
            }
            "log.roll.ms" => self.log_roll_ms = parse_int(key, value, 1, DAY_MS_MAX)?,
            "log.retention.ms" => self.log_retention_ms = parse_int(key, value, -1, DAY_MS_MAX)?,
            "log.retention.bytes" => {
                self.log_retention_bytes = parse_int(key, value, -1, i64::MAX)?
            }
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse_int(key, value, 10, DAY_MS_MAX)? as u64
            }
            "log.index.interval.bytes" => {
                self.log_index_interval_bytes = parse_int(key, value, 0, 1 << 30)? as u32
            }
            "log.preallocate.bytes" => {
                self.log_preallocate_bytes =
                    parse_int(key, value, 0, LOG_PREALLOCATE_BYTES_MAX as i64)? as u64
            }
            "fetch.max.bytes" => {
                self.fetch_max_bytes = parse_int(key, value, 1024, i32::MAX as i64 / 2)? as u32
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = parse_int(key, value, 1, 1000)? as i32
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = parse_int(key, value, 0, 300_000)? as u64
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = parse_int(key, value, 1, 3_600_000)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = parse_int(key, value, 1, 3_600_000)? as i32
            }
            "group.max.size" => self.group_max_size = parse_int(key, value, 1, 1_000_000)? as u32,
            "groups.per.shard.max" => {
                self.groups_per_shard_max = parse_int(key, value, 1, 10_000_000)? as u32
            }
            "max.connections" => {
                self.max_connections = parse_int(key, value, 0, i64::from(i32::MAX))? as u32
            }
            "max.connections.per.ip" => {
                self.max_connections_per_ip = parse_int(key, value, 0, i64::from(i32::MAX))? as u32
            }
            "connections.max.idle.ms" => {
                self.connections_max_idle_ms = parse_int(key, value, 1_000, i64::MAX / 2)? as u64
            }
            "log.dir.free.bytes.min" => {
                self.log_dir_free_bytes_min = parse_int(key, value, 0, i64::MAX)? as u64
            }
            "metadata.log.max.record.bytes.between.snapshots" => {
                self.metadata_log_snapshot_bytes = parse_int(key, value, 1, i64::MAX)? as u64
            }
            "socket.request.read.timeout.ms" => {
                self.socket_request_read_timeout_ms = parse_int(key, value, 100, 3_600_000)? as u64
            }
            "offsets.retention.minutes" => {
                self.offsets_retention_minutes = parse_int(key, value, 1, i64::MAX / 60_000)?
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms =
                    parse_int(key, value, 10, DAY_MS_MAX)? as u64
            }
            "shard.spin.before.park.us" => {
                self.shard_spin_before_park_us = parse_int(key, value, 0, 1_000_000)? as u64
            }
            "queued.max.request.bytes" => {
                self.queued_max_request_bytes = parse_int(key, value, 1024, 1 << 40)? as u64
            }
            "log.flush.delay.us" => {
                self.log_flush_delay_us = parse_int(key, value, 0, 1_000_000)? as u64
            }
            "cache.bytes.per.shard" => {
                self.cache_bytes_per_shard =
                    parse_int(key, value, 0, CACHE_BYTES_PER_SHARD_MAX as i64)? as u64
            }
            "connection.requests.in.flight.max" => {
                self.connection_requests_in_flight_max = parse_int(key, value, 1, 4096)? as u32
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                })
            }
        }
        self.explicit.insert(canonical_key(key).to_string());
        Ok(())
    }

    /// True if `key` (or an alias of it) was set, not left at its default.
    pub fn is_explicit(&self, key: &str) -> bool {
        self.explicit.contains(canonical_key(key))
    }

    /// Reads a TOML file of Kafka-named keys and applies it.
    pub fn apply_toml_file(&mut self, path: &str) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.to_string(),
            source,
        })?;
        self.apply_toml(path, &text)
    }

    pub fn apply_toml(&mut self, path: &str, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|error: toml::de::Error| ConfigError::Toml {
                    path: path.to_string(),
                    message: error.message().to_string(),
                })?;
        let mut flat = BTreeMap::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Applies command-line flags after the subcommand (`serve`).
    pub fn apply_args(&mut self, args: &[String]) -> Result<(), ConfigError> {
        let mut index = 0;
        while index < args.len() {
            let flag = args[index].as_str();
            let value = args
                .get(index + 1)
                .ok_or_else(|| ConfigError::Usage(format!("{flag} needs a value")))?;
            match flag {
                "--config" => self.apply_toml_file(value)?,
                "--listen" => self.set("listeners", value)?,
                "--advertise" => self.set("advertised.listeners", value)?,
                "--data-dir" => self.set("log.dirs", value)?,
                "--cores" => self.set("cores", value)?,
                "--node-id" => self.set("node.id", value)?,
                "--set" => {
                    let (key, setting) = value.split_once('=').ok_or_else(|| {
                        ConfigError::Usage(format!("--set expects key=value, got `{value}`"))
                    })?;
                    self.set(key.trim(), setting)?;
                }
                _ => return Err(ConfigError::Usage(format!("unknown flag `{flag}`"))),
            }
            index += 2;
        }
        Ok(())
    }

    /// Environment: `SLUICE_LISTEN`, `SLUICE_ADVERTISE`, `SLUICE_DATA_DIR`, `SLUICE_CORES`,
    /// `SLUICE_NODE_ID`, `SLUICE_CONFIG` (a TOML file).
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        let pairs = [
            ("SLUICE_CONFIG", "--config"),
            ("SLUICE_LISTEN", "listeners"),
            ("SLUICE_ADVERTISE", "advertised.listeners"),
            ("SLUICE_DATA_DIR", "log.dirs"),
            ("SLUICE_CORES", "cores"),
            ("SLUICE_NODE_ID", "node.id"),
        ];
        for (variable, key) in pairs {
            if let Ok(value) = std::env::var(variable) {
                if key == "--config" {
                    self.apply_toml_file(&value)?;
                } else {
                    self.set(key, &value)?;
                }
            }
        }
        Ok(())
    }

    /// Cross-field checks and derived defaults; call once after all sources are applied.
    pub fn finish(&mut self) -> Result<(), ConfigError> {
        // glommio opens directories relative to no descriptor (EBADF on a relative path), and
        // a broker's paths should not depend on where a later call happens to run: anchor the
        // data directory to the working directory at start.
        self.data_dir = std::path::absolute(&self.data_dir).map_err(|error| {
            bad(
                "log.dirs",
                &self.data_dir.display().to_string(),
                format!("cannot resolve against the working directory: {error}"),
            )
        })?;
        if self.advertise_host.is_empty() {
            if self.listen.ip().is_unspecified() {
                return Err(bad(
                    "listeners",
                    &self.listen.to_string(),
                    "an unspecified address cannot be advertised to clients; set --advertise HOST:PORT",
                ));
            }
            self.advertise_host = self.listen.ip().to_string();
            self.advertise_port = self.listen.port();
        }
        if self.advertise_port == 0 {
            self.advertise_port = self.listen.port();
        }
        if self.advertise_host == "0.0.0.0" || self.advertise_host == "::" {
            return Err(bad(
                "advertised.listeners",
                &self.advertise_host,
                "clients cannot connect to an unspecified address",
            ));
        }
        if !self.controller_quorum_voters.is_empty() {
            let Some(controller) = self.controller_listen else {
                return Err(bad(
                    "listeners",
                    &self.listen.to_string(),
                    "controller.quorum.voters needs a CONTROLLER listener (CONTROLLER://host:port)",
                ));
            };
            if controller.ip().is_unspecified() {
                return Err(bad(
                    "listeners",
                    &controller.to_string(),
                    "the CONTROLLER listener is the address other nodes connect to: name one, \
                     not a wildcard",
                ));
            }
            if let Some((_, address)) = self
                .controller_quorum_voters
                .iter()
                .find(|(id, _)| *id == self.node_id)
            {
                if *address != controller {
                    return Err(bad(
                        "controller.quorum.voters",
                        &address.to_string(),
                        format!(
                            "node {} is listed at {address} but its CONTROLLER listener is {controller}",
                            self.node_id
                        ),
                    ));
                }
            }
        }
        if self.controller_quorum_election_timeout_ms < 2 * self.raft_heartbeat_interval_ms {
            return Err(bad(
                "controller.quorum.election.timeout.ms",
                &self.controller_quorum_election_timeout_ms.to_string(),
                "must be at least twice raft.heartbeat.interval.ms",
            ));
        }
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return Err(bad(
                "broker.session.timeout.ms",
                &self.broker_session_timeout_ms.to_string(),
                "must be longer than broker.heartbeat.interval.ms",
            ));
        }
        if u64::from(self.socket_request_max_bytes) > self.queued_max_request_bytes {
            return Err(bad(
                "queued.max.request.bytes",
                &self.queued_max_request_bytes.to_string(),
                "must be at least socket.request.max.bytes",
            ));
        }
        if u64::from(self.message_max_bytes) > u64::from(self.socket_request_max_bytes) {
            return Err(bad(
                "message.max.bytes",
                &self.message_max_bytes.to_string(),
                "must not exceed socket.request.max.bytes",
            ));
        }
        if u64::from(self.message_max_bytes) > self.log_segment_bytes {
            return Err(bad(
                "message.max.bytes",
                &self.message_max_bytes.to_string(),
                "must not exceed log.segment.bytes",
            ));
        }
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if self.cores > cpus {
            return Err(bad(
                "cores",
                &self.cores.to_string(),
                format!("this machine has {cpus} CPUs"),
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(bad(
                "group.min.session.timeout.ms",
                &self.group_min_session_timeout_ms.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        if self.max_connections == 0 {
            self.max_connections = derived_max_connections();
        }
        Ok(())
    }
}

/// `max.connections` when not set: half the open-file limit (one descriptor per connection;
/// the other half stays for segment files, indexes and io_uring), at least 16.
fn derived_max_connections() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let open_files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    (open_files / 2).clamp(16, i32::MAX as u64) as u32
}

/// The Kafka name a key is reported under (`set` accepts a few aliases).
pub fn canonical_key(key: &str) -> &str {
    match key {
        "listen" => "listeners",
        "advertise" => "advertised.listeners",
        "log.dir" | "data_dir" | "data-dir" => "log.dirs",
        "broker.id" | "node_id" => "node.id",
        other => other,
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let joined = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&joined, inner, out);
            }
        }
        toml::Value::String(text) => {
            out.insert(prefix.to_string(), text.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_kafka_names() {
        let mut config = Config::default();
        config
            .apply_toml(
                "t.toml",
                "listeners = \"PLAINTEXT://127.0.0.1:19092\"\nnum.partitions = 6\n\
                 log.retention.ms = 1000\n\"log.segment.bytes\" = 2097152\n",
            )
            .unwrap();
        config.finish().unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.num_partitions, 6);
        assert_eq!(config.log_retention_ms, 1000);
        assert_eq!(config.log_segment_bytes, 2 << 20);
        assert_eq!(config.advertise_port, 19092);
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let mut config = Config::default();
        let error = config.set("log.segment.bytes", "10").unwrap_err();
        assert!(error.to_string().contains("log.segment.bytes"), "{error}");
        assert!(matches!(
            config.set("no.such.key", "1"),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(config.set("num.partitions", "zero").is_err());
        assert!(config.set("listeners", "nohost").is_err());
    }

    /// Regression: a relative data directory (the default `./data`) reached glommio, which
    /// opens directories with no base descriptor, and every topic creation failed with EBADF.
    #[test]
    fn relative_data_dir_becomes_absolute() {
        let mut config = Config::default();
        config.finish().unwrap();
        assert!(
            config.data_dir.is_absolute(),
            "{}",
            config.data_dir.display()
        );
        let expected = std::env::current_dir().unwrap().join("data");
        assert_eq!(config.data_dir, expected);
    }

    #[test]
    fn unspecified_listen_address_needs_an_advertised_one() {
        let mut config = Config::default();
        config.set("listeners", "0.0.0.0:9092").unwrap();
        assert!(config.clone().finish().is_err());
        config
            .set("advertised.listeners", "broker1.example:9092")
            .unwrap();
        config.finish().unwrap();
        assert_eq!(config.advertise_host, "broker1.example");
    }

    #[test]
    fn flags_override() {
        let mut config = Config::default();
        let args: Vec<String> = ["--listen", "127.0.0.1:0", "--set", "num.partitions=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        config.apply_args(&args).unwrap();
        config.finish().unwrap();
        assert_eq!(config.num_partitions, 3);
        assert!(config.apply_args(&["--bogus".into(), "1".into()]).is_err());
    }
}
