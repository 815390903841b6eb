//! Broker configuration: one `Config`, filled from defaults, then a TOML file, then environment
//! variables, then command-line flags (later wins), and validated once at start. Every shard gets
//! its own copy.
//!
//! Keys are Kafka's own names (`num.partitions`, `log.retention.ms`, ...), each defined once in
//! `keys.rs` (broker) and `topic_keys.rs` (topic): type, range, default, documentation. In TOML
//! they can be written as Kafka writes them, `log.retention.ms = 1000` (TOML reads the dots as
//! nested tables; they are flattened back), or quoted. Each key is also read from its
//! `SLUICE_<KEY>` variable (`SLUICE_LOG_RETENTION_MS`). A value outside its range refuses to
//! start with a clear message; an unknown key is refused with the closest known one suggested.

pub mod keys;
pub mod listeners;
pub mod security;
pub mod topic_keys;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use thiserror::Error;

pub use listeners::{Listener, ListenerSettings, SecurityProtocol};
pub use security::{AuthorizerSettings, ClientAuth, OAuthSettings, SaslSettings, SslSettings};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}`{}", suggestion(.closest))]
    UnknownKey {
        key: String,
        closest: Option<String>,
    },
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
    /// The client listeners (`listeners`, `listener.security.protocol.map`,
    /// `advertised.listeners`; `listeners.rs`).
    pub listeners: ListenerSettings,
    /// TLS of the SSL and SASL_SSL listeners (`ssl.*`).
    pub ssl: SslSettings,
    /// SASL of the SASL_PLAINTEXT and SASL_SSL listeners (`sasl.*`).
    pub sasl: SaslSettings,
    /// ACL checks (`authorizer.enable`, `super.users`, `allow.everyone.if.no.acl.found`).
    pub authorizer: AuthorizerSettings,
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
    pub log_flush_dsync_bytes_max: u64,
    pub log_segment_zero_ahead_bytes: u64,
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
    /// `metrics.listen`: the HTTP endpoint of `/metrics` and `/v1/status/ready` (None: off).
    pub metrics_listen: Option<SocketAddr>,
    /// `log.level` as configured at start (`logging::current()` is the level in force).
    pub log_level: String,
}

impl Default for Config {
    /// Every key at its default (`keys::BROKER_KEYS`); derived defaults are filled in by
    /// `finish`, except `cores`, which is every CPU.
    fn default() -> Config {
        let mut config = Config {
            explicit: std::collections::BTreeSet::new(),
            listeners: ListenerSettings::new(SocketAddr::from(([127, 0, 0, 1], 9092))),
            ssl: SslSettings::default(),
            sasl: SaslSettings::default(),
            authorizer: AuthorizerSettings::default(),
            controller_listen: None,
            controller_quorum_voters: Vec::new(),
            broker_rack: None,
            min_insync_replicas: 0,
            default_replication_factor: 0,
            offsets_topic_replication_factor: 0,
            replica_lag_time_max_ms: 0,
            controller_quorum_election_timeout_ms: 0,
            raft_heartbeat_interval_ms: 0,
            broker_heartbeat_interval_ms: 0,
            broker_session_timeout_ms: 0,
            data_dir: PathBuf::new(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            node_id: 0,
            cluster_id: String::new(),
            num_partitions: 0,
            auto_create_topics_enable: false,
            socket_request_max_bytes: 0,
            message_max_bytes: 0,
            log_segment_bytes: 0,
            log_roll_ms: 0,
            log_retention_ms: 0,
            log_retention_bytes: 0,
            log_retention_check_interval_ms: 0,
            log_index_interval_bytes: 0,
            log_preallocate_bytes: 0,
            log_flush_delay_us: 0,
            log_flush_dsync_bytes_max: crate::storage::DSYNC_WRITE_BYTES_MAX_DEFAULT,
            log_segment_zero_ahead_bytes: 0,
            cache_bytes_per_shard: 0,
            connection_requests_in_flight_max: 0,
            fetch_max_bytes: 0,
            queued_max_request_bytes: 0,
            offsets_topic_num_partitions: 0,
            group_initial_rebalance_delay_ms: 0,
            group_min_session_timeout_ms: 0,
            group_max_session_timeout_ms: 0,
            group_max_size: 0,
            groups_per_shard_max: 0,
            max_connections: 0,
            max_connections_per_ip: 0,
            connections_max_idle_ms: 0,
            socket_request_read_timeout_ms: 0,
            log_dir_free_bytes_min: 0,
            metadata_log_snapshot_bytes: 0,
            offsets_retention_minutes: 0,
            offsets_retention_check_interval_ms: 0,
            shard_spin_before_park_us: 0,
            metrics_listen: None,
            log_level: String::new(),
        };
        for key in keys::BROKER_KEYS {
            if let keys::Default::Value(value) = key.default {
                if let Err(error) = config.apply(key, value) {
                    panic!("the default of {} does not parse: {error}", key.name);
                }
            }
        }
        config
    }
}

fn suggestion(closest: &Option<String>) -> String {
    match closest {
        Some(name) => format!("; did you mean `{name}`? (`sluice serve --help` lists every key)"),
        None => " (`sluice serve --help` lists every key)".to_string(),
    }
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Splits `host:port` (optionally prefixed `PLAINTEXT://`).
fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let trimmed = value.trim();
    let without_scheme = trimmed.strip_prefix("PLAINTEXT://").unwrap_or(trimmed);
    let (host, port) = without_scheme
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| "port must be 0..=65535".to_string())?;
    if host.is_empty() {
        return Err("host is empty".to_string());
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// One `host:port`, resolved to a socket address.
fn resolve_host_port(address: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_host_port(address)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{address}` is not a resolvable address"))
}

/// `listeners`: Kafka's form, `NAME://host:port` entries, comma-separated; `CONTROLLER` is the
/// node-to-node listener, every other one serves clients (`listeners.rs`). A bare `host:port`
/// is a listener named PLAINTEXT.
fn set_listeners(config: &mut Config, value: &str) -> Result<(), String> {
    let mut clients: Vec<Listener> = Vec::new();
    let mut controller = None;
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (name.trim().to_ascii_uppercase(), address),
            None => ("PLAINTEXT".to_string(), entry),
        };
        let resolved = resolve_host_port(address)?;
        let duplicate = if name == "CONTROLLER" {
            controller.replace(resolved).is_some()
        } else {
            let taken = clients.iter().any(|listener| listener.name == name);
            if let Some(other) = clients
                .iter()
                .find(|listener| listener.address == resolved && resolved.port() != 0)
            {
                return Err(format!(
                    "listeners {} and {name} both bind {resolved}",
                    other.name
                ));
            }
            clients.push(Listener {
                name: name.clone(),
                address: resolved,
                protocol: None,
                advertised: None,
            });
            taken
        };
        if duplicate {
            return Err(format!("listener {name} appears twice"));
        }
    }
    if clients.is_empty() {
        return Err("no client listener (only CONTROLLER)".to_string());
    }
    config.listeners.listeners = clients;
    config.listeners.resolve();
    config.controller_listen = controller;
    Ok(())
}

/// `controller.quorum.voters`: `id@host:port,...`.
fn set_voters(config: &mut Config, value: &str) -> Result<(), String> {
    let mut voters = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| "expected id@host:port,...".to_string())?;
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("`{id}` is not a node id"))?;
        let resolved = resolve_host_port(address)?;
        if voters.iter().any(|(other, _)| *other == id) {
            return Err(format!("voter {id} appears twice"));
        }
        voters.push((id, resolved));
    }
    config.controller_quorum_voters = voters;
    Ok(())
}

/// The variables of `sluice serve`'s flags (`cli::ServeArgs`), which are not keys' own.
const FLAG_VARIABLES: &[&str] = &[
    "SLUICE_CONFIG",
    "SLUICE_LISTEN",
    "SLUICE_ADVERTISE",
    "SLUICE_DATA_DIR",
    // `security::users`: the first user, read from the environment only (never a key).
    "SLUICE_BOOTSTRAP_USER",
];

impl Config {
    /// The first client listener's bind address (the one scripts and the readiness line name).
    pub fn listen(&self) -> SocketAddr {
        self.listeners.listeners[0].address
    }

    /// The first client listener's advertised host and port (the broker's registration).
    pub fn advertised(&self) -> (String, u16) {
        let first = &self.listeners.listeners[0];
        first
            .advertised
            .clone()
            .unwrap_or_else(|| (first.address.ip().to_string(), first.address.port()))
    }

    /// Applies one `key = value` setting (a broker key's name or alias).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let Some(found) = keys::find(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                closest: keys::closest(key, keys::all_names()).map(str::to_string),
            });
        };
        self.apply(found, value)?;
        self.explicit.insert(found.name.to_string());
        Ok(())
    }

    fn apply(&mut self, key: &keys::BrokerKey, value: &str) -> Result<(), ConfigError> {
        match key.setter {
            keys::Setter::Int { min, max, set } => {
                let parsed: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(key.name, value, "not an integer"))?;
                if parsed < min || parsed > max {
                    return Err(bad(key.name, value, format!("must be in {min}..={max}")));
                }
                set(self, parsed);
            }
            keys::Setter::Bool(set) => match value.trim() {
                "true" => set(self, true),
                "false" => set(self, false),
                _ => return Err(bad(key.name, value, "must be true or false")),
            },
            keys::Setter::Text(set) => {
                set(self, value).map_err(|reason| bad(key.name, value, reason))?
            }
        }
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

    /// Environment: every key from its `SLUICE_<KEY>` variable (`keys::env_name`). Other
    /// `SLUICE_*` variables belong to the flags or to tools (`SLUICE_BIN` in test scripts):
    /// they are left alone, and returned with the key variable each is closest to, so the
    /// caller can warn about a likely misspelling.
    pub fn apply_env_from(
        &mut self,
        variables: impl Iterator<Item = (String, String)>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let known: Vec<(String, &'static keys::BrokerKey)> = keys::BROKER_KEYS
            .iter()
            .map(|key| (key.env_name(), key))
            .collect();
        let mut pending: Vec<(String, String)> = variables
            .filter(|(name, _)| name.starts_with("SLUICE_"))
            .collect();
        pending.sort();
        let mut misspelt = Vec::new();
        for (name, value) in pending {
            if FLAG_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            match known.iter().find(|(env, _)| *env == name) {
                Some((_, key)) => self.set(key.name, &value)?,
                None => {
                    let names = known.iter().map(|(env, _)| env.as_str());
                    if let Some(closest) = keys::closest(&name, names) {
                        misspelt.push((name, closest.to_string()));
                    }
                }
            }
        }
        Ok(misspelt)
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
        self.listeners.resolve();
        if let Err((key, value, reason)) = self.listeners.check() {
            return Err(bad(key, &value, reason));
        }
        if !self.controller_quorum_voters.is_empty() {
            let Some(controller) = self.controller_listen else {
                return Err(bad(
                    "listeners",
                    &self.listeners.listeners_text(),
                    "controller.quorum.voters needs a CONTROLLER listener (CONTROLLER://host:port)",
                ));
            };
            match self.listeners.controller_protocol() {
                SecurityProtocol::Plaintext => {}
                SecurityProtocol::Ssl => {
                    let keystore = self.ssl.keystore_location.is_some()
                        || self.ssl.keystore_certificate_chain.is_some();
                    let truststore = self.ssl.truststore_location.is_some()
                        || self.ssl.truststore_certificates.is_some();
                    if self.authorizer.enabled && self.authorizer.super_users.is_empty() {
                        return Err(bad(
                            "super.users",
                            "",
                            "with the authorizer on, node links over SSL admit only super.users \
                             principals: list the nodes' certificate principals \
                             (User:CN=...)",
                        ));
                    }
                    if !keystore || !truststore {
                        return Err(bad(
                            "listener.security.protocol.map",
                            "CONTROLLER:SSL",
                            "node links over SSL are mutual TLS: each node needs its certificate \
                             (ssl.keystore.location) and the CAs of the others \
                             (ssl.truststore.location)",
                        ));
                    }
                }
                protocol => {
                    return Err(bad(
                        "listener.security.protocol.map",
                        &format!("CONTROLLER:{}", protocol.name()),
                        "node links support PLAINTEXT or SSL (mutual TLS, the peer's certificate \
                         is its identity); SASL between nodes is not supported, since users live \
                         in the metadata the controllers themselves replicate",
                    ));
                }
            }
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
    keys::find(key).map_or(key, |found| found.name)
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
        assert_eq!(config.listen().port(), 19092);
        assert_eq!(config.num_partitions, 6);
        assert_eq!(config.log_retention_ms, 1000);
        assert_eq!(config.log_segment_bytes, 2 << 20);
        assert_eq!(config.advertised().1, 19092);
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
    fn node_links_take_plaintext_or_mutual_tls_only() {
        let mut config = Config::default();
        config
            .set(
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
            )
            .unwrap();
        config
            .set("controller.quorum.voters", "0@127.0.0.1:9093")
            .unwrap();
        config.clone().finish().unwrap();
        config
            .set("listener.security.protocol.map", "CONTROLLER:SASL_SSL")
            .unwrap();
        assert!(config.clone().finish().is_err(), "SASL between nodes");
        config
            .set("listener.security.protocol.map", "CONTROLLER:SSL")
            .unwrap();
        assert!(config.clone().finish().is_err(), "SSL without stores");
        config.set("ssl.keystore.location", "/k.pem").unwrap();
        config.set("ssl.truststore.location", "/t.pem").unwrap();
        config.clone().finish().unwrap();
        config.set("authorizer.enable", "true").unwrap();
        assert!(
            config.clone().finish().is_err(),
            "the authorizer with no super.users refuses every node"
        );
        config.set("super.users", "User:CN=node").unwrap();
        config.finish().unwrap();
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
        assert_eq!(config.advertised().0, "broker1.example");
    }

    #[test]
    fn every_default_reads_back_as_written() {
        let config = Config::default();
        for key in keys::BROKER_KEYS {
            if let keys::Default::Value(value) = key.default {
                let normalised = match key.name {
                    "listeners" | "advertised.listeners" => value.to_string(),
                    _ => value.trim().to_string(),
                };
                assert_eq!((key.value)(&config), normalised, "{}", key.name);
            }
        }
    }

    #[test]
    fn environment_variables_set_keys_and_misspellings_are_named() {
        let mut config = Config::default();
        let variables = [
            ("SLUICE_LOG_RETENTION_MS", "60000"),
            ("SLUICE_NUM_PARTITIONS", "4"),
            ("SLUICE_LOG_RETENTON_MS", "1"),
            ("SLUICE_BIN", "target/debug/sluice"),
            ("HOME", "/root"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string()));
        let misspelt = config.apply_env_from(variables.into_iter()).unwrap();
        assert_eq!(config.log_retention_ms, 60_000);
        assert_eq!(config.num_partitions, 4);
        assert!(config.is_explicit("num.partitions"));
        assert_eq!(
            misspelt,
            vec![(
                "SLUICE_LOG_RETENTON_MS".to_string(),
                "SLUICE_LOG_RETENTION_MS".to_string()
            )]
        );
        let bad = [("SLUICE_CORES".to_string(), "zero".to_string())];
        assert!(config.apply_env_from(bad.into_iter()).is_err());
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let error = Config::default()
            .set("log.retention.msec", "1")
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("did you mean `log.retention.ms`"),
            "{error}"
        );
        let error = Config::default().set("zzz", "1").unwrap_err();
        assert!(!error.to_string().contains("did you mean"), "{error}");
    }
}
