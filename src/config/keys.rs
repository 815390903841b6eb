//! The one list of broker configuration keys. Each key is written once here: its Kafka name
//! (and accepted aliases), type and range, unit, default, documentation, whether it can change
//! at run time, how it is set on `Config` and how its current value reads back. Everything
//! else derives from this list: `Config::default()`, `Config::set` (TOML, `SLUICE_*`
//! variables, `--set`), `sluice serve --help`, README's table (a test keeps it in step) and
//! DescribeConfigs (type, documentation, synonyms, read-only).
//!
//! Topic keys have their own list (`topic_keys.rs`): a topic key's default is a broker key's
//! value, and DescribeConfigs reports both.

use super::{
    parse_host_port, resolve_host_port, set_listeners, set_voters, Config,
    CACHE_BYTES_PER_SHARD_MAX,
};
use super::{
    CORES_MAX, LOG_PREALLOCATE_BYTES_MAX, MESSAGE_MAX_BYTES_MAX, PARTITIONS_PER_TOPIC_MAX,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SOCKET_REQUEST_MAX_BYTES_MAX,
};

/// A text value, or None when it is empty (Kafka's unset).
fn non_empty(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|value| !value.is_empty())
}

/// Secrets and inline key material are never read back.
fn redacted(set: bool) -> String {
    if set {
        "[hidden]".to_string()
    } else {
        String::new()
    }
}

/// Upper bound of the millisecond keys that hold a duration (Kafka's are longs).
const DURATION_MS_MAX: i64 = i64::MAX / 4;

/// How a key's text becomes a value. Integers are range-checked, booleans are `true` or
/// `false`, before their setter runs; text setters check their own syntax.
#[derive(Clone, Copy)]
pub enum Setter {
    Int {
        min: i64,
        max: i64,
        set: fn(&mut Config, i64),
    },
    Bool(fn(&mut Config, bool)),
    Text(fn(&mut Config, &str) -> Result<(), String>),
}

/// What a number counts, for people (README, `--help`); Kafka's names carry it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    None,
    Bytes,
    Milliseconds,
    Microseconds,
    Minutes,
}

/// A key's default: a value as it would be written in a file, or a rule applied at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    Value(&'static str),
    Derived(&'static str),
}

pub struct BrokerKey {
    /// Kafka's name (Sluice's own keys follow Kafka's style).
    pub name: &'static str,
    /// Other names accepted for it (Kafka's older names, Sluice's earlier ones).
    pub aliases: &'static [&'static str],
    pub setter: Setter,
    pub unit: Unit,
    pub default: Default,
    pub doc: &'static str,
    /// How the key changes at run time (IncrementalAlterConfigs on the broker); None: it
    /// needs a restart, and DescribeConfigs reports it read-only.
    pub live: Option<LiveKey>,
    /// The current value, as `set` would take it.
    pub value: fn(&Config) -> String,
}

/// A key that changes while the broker runs. Its value is process-wide state, not `Config`
/// (each shard's copy of `Config` is fixed at start), so `BrokerKey::value` reads it there too.
#[derive(Clone, Copy)]
pub struct LiveKey {
    /// Applies a value (already checked by the key's setter) on every shard.
    pub apply: fn(&str) -> Result<(), String>,
    /// The value the broker started with: what deleting the run-time value returns to.
    pub start_value: fn() -> String,
}

impl BrokerKey {
    pub fn is_dynamic(&self) -> bool {
        self.live.is_some()
    }

    /// Kafka's ConfigType: BOOLEAN 1, STRING 2, INT 3, LONG 5.
    pub fn kafka_type(&self) -> i8 {
        match self.setter {
            Setter::Bool(_) => 1,
            Setter::Text(_) => 2,
            Setter::Int { min, max, .. }
                if min >= i64::from(i32::MIN) && max <= i64::from(i32::MAX) =>
            {
                3
            }
            Setter::Int { .. } => 5,
        }
    }

    /// The environment variable that sets it: `SLUICE_` and the name in capitals, dots as
    /// underscores (`log.retention.ms` is `SLUICE_LOG_RETENTION_MS`).
    pub fn env_name(&self) -> String {
        env_name(self.name)
    }

    /// Range or syntax, for people.
    pub fn range(&self) -> String {
        match self.setter {
            Setter::Int { min, max, .. } => {
                format!("{}..{}", human(min, self.unit), human(max, self.unit))
            }
            Setter::Bool(_) => "true, false".to_string(),
            Setter::Text(_) => String::new(),
        }
    }

    /// The default, for people.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::Value(value) => match (self.setter, value.parse::<i64>()) {
                (Setter::Int { .. }, Ok(number)) if self.unit != Unit::None => {
                    let shown = human(number, self.unit);
                    if shown == value {
                        value.to_string()
                    } else {
                        format!("{value} ({shown})")
                    }
                }
                _ if value.is_empty() => "(none)".to_string(),
                _ => value.to_string(),
            },
            Default::Derived(rule) => format!("({rule})"),
        }
    }
}

pub fn env_name(key: &str) -> String {
    let upper: String = key
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            other => other.to_ascii_uppercase(),
        })
        .collect();
    format!("SLUICE_{upper}")
}

/// A number as people read it: binary multiples of bytes, days/hours/minutes/seconds of
/// milliseconds when exact, "max" for a 64-bit key's ceiling.
pub fn human(number: i64, unit: Unit) -> String {
    if number == i64::MAX || number == DURATION_MS_MAX {
        return "max".to_string();
    }
    let exact = |step: i64, name: &str| -> Option<String> {
        (number != 0 && number % step == 0).then(|| format!("{} {name}", number / step))
    };
    let shown = match unit {
        Unit::Bytes => exact(1 << 30, "GiB")
            .or_else(|| exact(1 << 20, "MiB"))
            .or_else(|| exact(1 << 10, "KiB")),
        Unit::Milliseconds => exact(86_400_000, "days")
            .or_else(|| exact(3_600_000, "h"))
            .or_else(|| exact(60_000, "min"))
            .or_else(|| exact(1_000, "s")),
        Unit::Microseconds => exact(1_000_000, "s").or_else(|| exact(1_000, "ms")),
        Unit::Minutes => exact(1_440, "days"),
        Unit::None => None,
    };
    shown.unwrap_or_else(|| number.to_string())
}

/// Finds a key by its name or an alias.
pub fn find(name: &str) -> Option<&'static BrokerKey> {
    BROKER_KEYS
        .iter()
        .find(|key| key.name == name || key.aliases.contains(&name))
}

/// The known key (or alias) closest to a misspelt one, if any is close enough to be meant.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(2);
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, &x) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(x != y);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Every name `set` accepts.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    BROKER_KEYS
        .iter()
        .flat_map(|key| std::iter::once(key.name).chain(key.aliases.iter().copied()))
}

macro_rules! int {
    ($min:expr, $max:expr, |$config:ident, $value:ident| $body:expr) => {
        Setter::Int {
            min: $min as i64,
            max: $max as i64,
            set: |$config: &mut Config, $value: i64| $body,
        }
    };
}

pub static BROKER_KEYS: &[BrokerKey] = &[
    // Identity and listeners.
    BrokerKey {
        name: "node.id",
        aliases: &["broker.id", "node_id"],
        setter: int!(0, i32::MAX, |c, v| c.node_id = v as i32),
        unit: Unit::None,
        default: Default::Value("0"),
        doc: "this node's id (broker.id is accepted too)",
        live: None,
        value: |c| c.node_id.to_string(),
    },
    BrokerKey {
        name: "cluster.id",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.cluster_id = v.trim().to_string();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Derived("derived from controller.quorum.voters, or random on one node; stored in log.dirs"),
        doc: "cluster id reported to clients; used only when log.dirs holds no cluster metadata yet",
        live: None,
        value: |c| c.cluster_id.clone(),
    },
    BrokerKey {
        name: "listeners",
        aliases: &["listen"],
        setter: Setter::Text(set_listeners),
        unit: Unit::None,
        default: Default::Value("PLAINTEXT://127.0.0.1:9092"),
        doc: "`NAME://host:port,...`: client listeners (several at once, each with the security protocol of its name or of `listener.security.protocol.map`), plus `CONTROLLER://host:port` for node-to-node traffic in a cluster; a bare `host:port` is PLAINTEXT",
        live: None,
        value: |c| match c.controller_listen {
            Some(controller) => format!("{},CONTROLLER://{controller}", c.listeners.listeners_text()),
            None => c.listeners.listeners_text(),
        },
    },
    BrokerKey {
        name: "listener.security.protocol.map",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.listeners.protocol_map = super::listeners::parse_protocol_map(v)?;
            c.listeners.resolve();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Derived("a listener named PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL uses that protocol"),
        doc: "`NAME:PROTOCOL,...`: the security protocol of each named listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)",
        live: None,
        value: |c| c.listeners.protocol_map_text(),
    },
    BrokerKey {
        name: "advertised.listeners",
        aliases: &["advertise"],
        setter: Setter::Text(|c, v| {
            c.listeners.advertised = super::listeners::parse_advertised(v, parse_host_port)?;
            c.listeners.resolve();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Derived("each listener's bind address"),
        doc: "`NAME://host:port,...`: what Metadata gives a client that connected through listener NAME; a bare `host:port` is the first listener's",
        live: None,
        value: |c| c.listeners.advertised_text(),
    },
    BrokerKey {
        name: "controller.quorum.voters",
        aliases: &[],
        setter: Setter::Text(set_voters),
        unit: Unit::None,
        default: Default::Derived("this node alone"),
        doc: "`id@host:port,...`: the controller voters and their CONTROLLER listeners",
        live: None,
        value: |c| {
            c.controller_quorum_voters
                .iter()
                .map(|(id, address)| format!("{id}@{address}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    },
    BrokerKey {
        name: "broker.rack",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            let rack = v.trim();
            c.broker_rack = (!rack.is_empty()).then(|| rack.to_string());
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "rack or zone of this node, reported in Metadata and used to spread replicas",
        live: None,
        value: |c| c.broker_rack.clone().unwrap_or_default(),
    },
    BrokerKey {
        name: "log.dirs",
        aliases: &["log.dir", "data_dir", "data-dir"],
        setter: Setter::Text(|c, v| {
            if v.trim().is_empty() {
                return Err("must not be empty".to_string());
            }
            c.data_dir = std::path::PathBuf::from(v.trim());
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value("./data"),
        doc: "data directory (one per node)",
        live: None,
        value: |c| c.data_dir.display().to_string(),
    },
    BrokerKey {
        name: "cores",
        aliases: &[],
        setter: int!(1, CORES_MAX, |c, v| c.cores = v as usize),
        unit: Unit::None,
        default: Default::Derived("every CPU"),
        doc: "shards, one pinned per CPU (at most the CPUs there are)",
        live: None,
        value: |c| c.cores.to_string(),
    },
    // Replication and the cluster.
    BrokerKey {
        name: "min.insync.replicas",
        aliases: &[],
        setter: int!(1, i32::MAX, |c, v| c.min_insync_replicas = v as u32),
        unit: Unit::None,
        default: Default::Value("1"),
        doc: "acks=all to a partition whose leader sees fewer in-sync replicas gets NOT_ENOUGH_REPLICAS",
        live: None,
        value: |c| c.min_insync_replicas.to_string(),
    },
    BrokerKey {
        name: "default.replication.factor",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            match v.trim().parse::<i16>() {
                Ok(factor) if factor == -1 || factor >= 1 => {
                    c.default_replication_factor = factor;
                    Ok(())
                }
                _ => Err("use -1 (min(3, brokers)) or a factor of 1 or more".to_string()),
            }
        }),
        unit: Unit::None,
        default: Default::Value("-1"),
        doc: "replicas of topics created without a factor; -1: min(3, brokers), as MSK sets it",
        live: None,
        value: |c| c.default_replication_factor.to_string(),
    },
    BrokerKey {
        name: "offsets.topic.replication.factor",
        aliases: &[],
        setter: int!(1, i16::MAX, |c, v| c.offsets_topic_replication_factor = v as i16),
        unit: Unit::None,
        default: Default::Value("3"),
        doc: "replicas of each `__consumer_offsets` partition, capped at the cluster's size",
        live: None,
        value: |c| c.offsets_topic_replication_factor.to_string(),
    },
    BrokerKey {
        name: "replica.lag.time.max.ms",
        aliases: &[],
        setter: int!(1, DURATION_MS_MAX, |c, v| c.replica_lag_time_max_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("30000"),
        doc: "a follower not caught up with the commit point this long leaves the in-sync replicas (the leader reports them to the controller; Metadata's ISR is that report)",
        live: None,
        value: |c| c.replica_lag_time_max_ms.to_string(),
    },
    BrokerKey {
        name: "controller.quorum.election.timeout.ms",
        aliases: &[],
        setter: int!(100, 60_000, |c, v| c.controller_quorum_election_timeout_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("1000"),
        doc: "followers elect after [t, 2t) without a leader (controller quorum and partition groups); a node link silent this long counts its peer down",
        live: None,
        value: |c| c.controller_quorum_election_timeout_ms.to_string(),
    },
    BrokerKey {
        name: "raft.heartbeat.interval.ms",
        aliases: &[],
        setter: int!(10, 10_000, |c, v| c.raft_heartbeat_interval_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("200"),
        doc: "Raft leader heartbeats (controller and partitions) and node-link pings (Sluice's key, after Redpanda's raft_heartbeat_interval_ms)",
        live: None,
        value: |c| c.raft_heartbeat_interval_ms.to_string(),
    },
    BrokerKey {
        name: "broker.heartbeat.interval.ms",
        aliases: &[],
        setter: int!(10, 60_000, |c, v| c.broker_heartbeat_interval_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("2000"),
        doc: "brokers heartbeat the active controller this often",
        live: None,
        value: |c| c.broker_heartbeat_interval_ms.to_string(),
    },
    BrokerKey {
        name: "broker.session.timeout.ms",
        aliases: &[],
        setter: int!(100, 600_000, |c, v| c.broker_session_timeout_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("9000"),
        doc: "a broker silent this long is fenced: out of Metadata, its partitions offline, given no new ones",
        live: None,
        value: |c| c.broker_session_timeout_ms.to_string(),
    },
    BrokerKey {
        name: "metadata.log.max.record.bytes.between.snapshots",
        aliases: &[],
        setter: int!(1, i64::MAX, |c, v| c.metadata_log_snapshot_bytes = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("20971520"),
        doc: "bytes of metadata-log entries after which the cluster metadata is snapshotted and its log compacted",
        live: None,
        value: |c| c.metadata_log_snapshot_bytes.to_string(),
    },
    // Topics and logs.
    BrokerKey {
        name: "num.partitions",
        aliases: &[],
        setter: int!(1, PARTITIONS_PER_TOPIC_MAX, |c, v| c.num_partitions = v as i32),
        unit: Unit::None,
        default: Default::Value("1"),
        doc: "partitions of auto-created topics",
        live: None,
        value: |c| c.num_partitions.to_string(),
    },
    BrokerKey {
        name: "auto.create.topics.enable",
        aliases: &[],
        setter: Setter::Bool(|c, v| c.auto_create_topics_enable = v),
        unit: Unit::None,
        default: Default::Value("true"),
        doc: "create unknown topics named in Metadata requests (as Kafka, not on Produce)",
        live: None,
        value: |c| c.auto_create_topics_enable.to_string(),
    },
    BrokerKey {
        name: "message.max.bytes",
        aliases: &[],
        setter: int!(128, MESSAGE_MAX_BYTES_MAX, |c, v| c.message_max_bytes = v as u32),
        unit: Unit::Bytes,
        default: Default::Value("1048588"),
        doc: "largest record batch (topic key max.message.bytes)",
        live: None,
        value: |c| c.message_max_bytes.to_string(),
    },
    BrokerKey {
        name: "log.segment.bytes",
        aliases: &[],
        setter: int!(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX, |c, v| c.log_segment_bytes = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("1073741824"),
        doc: "segment roll size (topic key segment.bytes)",
        live: None,
        value: |c| c.log_segment_bytes.to_string(),
    },
    BrokerKey {
        name: "log.roll.ms",
        aliases: &[],
        setter: int!(1, DURATION_MS_MAX, |c, v| c.log_roll_ms = v),
        unit: Unit::Milliseconds,
        default: Default::Value("604800000"),
        doc: "segment roll age (topic key segment.ms)",
        live: None,
        value: |c| c.log_roll_ms.to_string(),
    },
    BrokerKey {
        name: "log.retention.ms",
        aliases: &[],
        setter: int!(-1, DURATION_MS_MAX, |c, v| c.log_retention_ms = v),
        unit: Unit::Milliseconds,
        default: Default::Value("604800000"),
        doc: "closed segments older than this are deleted; -1 keeps them (topic key retention.ms)",
        live: None,
        value: |c| c.log_retention_ms.to_string(),
    },
    BrokerKey {
        name: "log.retention.bytes",
        aliases: &[],
        setter: int!(-1, i64::MAX, |c, v| c.log_retention_bytes = v),
        unit: Unit::Bytes,
        default: Default::Value("-1"),
        doc: "closed segments are deleted while a partition is larger; -1 = unlimited (topic key retention.bytes)",
        live: None,
        value: |c| c.log_retention_bytes.to_string(),
    },
    BrokerKey {
        name: "log.retention.check.interval.ms",
        aliases: &[],
        setter: int!(10, DURATION_MS_MAX, |c, v| c.log_retention_check_interval_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("300000"),
        doc: "how often retention and time rolls run",
        live: None,
        value: |c| c.log_retention_check_interval_ms.to_string(),
    },
    BrokerKey {
        name: "log.index.interval.bytes",
        aliases: &[],
        setter: int!(0, 1 << 30, |c, v| c.log_index_interval_bytes = v as u32),
        unit: Unit::Bytes,
        default: Default::Value("4096"),
        doc: "bytes between offset-index entries (topic key index.interval.bytes)",
        live: None,
        value: |c| c.log_index_interval_bytes.to_string(),
    },
    BrokerKey {
        name: "log.preallocate.bytes",
        aliases: &[],
        setter: int!(0, LOG_PREALLOCATE_BYTES_MAX, |c, v| c.log_preallocate_bytes = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("67108864"),
        doc: "largest fallocate step of the active segment; steps double from 1 MiB, so an idle partition takes 1 MiB of disk (Sluice's key)",
        live: None,
        value: |c| c.log_preallocate_bytes.to_string(),
    },
    BrokerKey {
        name: "log.flush.delay.us",
        aliases: &[],
        setter: int!(0, 1_000_000, |c, v| c.log_flush_delay_us = v as u64),
        unit: Unit::Microseconds,
        default: Default::Value("0"),
        doc: "group commit: extra wait before an fdatasync to gather more appends; 0 flushes as soon as the previous flush completes (Sluice's key)",
        live: None,
        value: |c| c.log_flush_delay_us.to_string(),
    },
    BrokerKey {
        name: "log.flush.dsync.bytes.max",
        aliases: &[],
        setter: int!(0, 1 << 30, |c, v| c.log_flush_dsync_bytes_max = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("65536"),
        doc: "a flush group up to this size, with no earlier group still syncing, is written with O_DSYNC (durable when the write completes, one I/O instead of write then fdatasync); larger groups are written and fdatasynced in the pipeline; 0 always fdatasyncs (Sluice's key)",
        live: None,
        value: |c| c.log_flush_dsync_bytes_max.to_string(),
    },
    BrokerKey {
        name: "log.segment.zero.ahead.bytes",
        aliases: &[],
        setter: int!(0, 1 << 30, |c, v| c.log_segment_zero_ahead_bytes = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("0"),
        doc: "write zeros over the active segment's preallocated blocks this far ahead of its write head (1 MiB at a time), so data writes are overwrites and their fdatasync commits no filesystem journal; costs disk bandwidth equal to the data; 0 is off (Sluice's key)",
        live: None,
        value: |c| c.log_segment_zero_ahead_bytes.to_string(),
    },
    BrokerKey {
        name: "log.dir.free.bytes.min",
        aliases: &[],
        setter: int!(0, i64::MAX, |c, v| c.log_dir_free_bytes_min = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("268435456"),
        doc: "produce is refused (KAFKA_STORAGE_ERROR, retriable) while the data disk has less free space; resumes by itself when space returns (Sluice's key)",
        live: None,
        value: |c| c.log_dir_free_bytes_min.to_string(),
    },
    BrokerKey {
        name: "cache.bytes.per.shard",
        aliases: &[],
        setter: int!(0, CACHE_BYTES_PER_SHARD_MAX, |c, v| c.cache_bytes_per_shard = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("134217728"),
        doc: "per-shard read cache of recent batches (Sluice's key)",
        live: None,
        value: |c| c.cache_bytes_per_shard.to_string(),
    },
    // Requests and connections.
    BrokerKey {
        name: "socket.request.max.bytes",
        aliases: &[],
        setter: int!(1024, SOCKET_REQUEST_MAX_BYTES_MAX, |c, v| c.socket_request_max_bytes = v as u32),
        unit: Unit::Bytes,
        default: Default::Value("104857600"),
        doc: "largest request frame; a bigger one closes the connection",
        live: None,
        value: |c| c.socket_request_max_bytes.to_string(),
    },
    BrokerKey {
        name: "queued.max.request.bytes",
        aliases: &[],
        setter: int!(1024, 1_i64 << 40, |c, v| c.queued_max_request_bytes = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("536870912"),
        doc: "request bytes a shard holds read but not yet answered; readers wait beyond it (per shard here)",
        live: None,
        value: |c| c.queued_max_request_bytes.to_string(),
    },
    BrokerKey {
        name: "fetch.max.bytes",
        aliases: &[],
        setter: int!(1024, i32::MAX / 2, |c, v| c.fetch_max_bytes = v as u32),
        unit: Unit::Bytes,
        default: Default::Value("57671680"),
        doc: "largest Fetch response; a client's max_bytes is capped by it",
        live: None,
        value: |c| c.fetch_max_bytes.to_string(),
    },
    BrokerKey {
        name: "connection.requests.in.flight.max",
        aliases: &[],
        setter: int!(1, 4096, |c, v| c.connection_requests_in_flight_max = v as u32),
        unit: Unit::None,
        default: Default::Value("128"),
        doc: "pipelined requests one connection may have in flight before the broker stops reading it (Sluice's key)",
        live: None,
        value: |c| c.connection_requests_in_flight_max.to_string(),
    },
    BrokerKey {
        name: "max.connections",
        aliases: &[],
        setter: int!(0, i32::MAX, |c, v| c.max_connections = v as u32),
        unit: Unit::None,
        default: Default::Value("0"),
        doc: "client connections at once; 0 = half the open-file limit (the soft limit is raised to the hard one at start); past it new connections are closed at once",
        live: None,
        value: |c| c.max_connections.to_string(),
    },
    BrokerKey {
        name: "max.connections.per.ip",
        aliases: &[],
        setter: int!(0, i32::MAX, |c, v| c.max_connections_per_ip = v as u32),
        unit: Unit::None,
        default: Default::Value("0"),
        doc: "client connections from one address; 0 = unlimited (Kafka's default)",
        live: None,
        value: |c| c.max_connections_per_ip.to_string(),
    },
    BrokerKey {
        name: "connections.max.idle.ms",
        aliases: &[],
        setter: int!(1_000, i64::MAX / 2, |c, v| c.connections_max_idle_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("600000"),
        doc: "a connection with nothing in flight and no traffic this long is closed",
        live: None,
        value: |c| c.connections_max_idle_ms.to_string(),
    },
    BrokerKey {
        name: "socket.request.read.timeout.ms",
        aliases: &[],
        setter: int!(100, 3_600_000, |c, v| c.socket_request_read_timeout_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("30000"),
        doc: "time to receive one request once its first byte arrived; a client trickling a frame is cut off (Sluice's key)",
        live: None,
        value: |c| c.socket_request_read_timeout_ms.to_string(),
    },
    BrokerKey {
        name: "shard.spin.before.park.us",
        aliases: &[],
        setter: int!(0, 1_000_000, |c, v| c.shard_spin_before_park_us = v as u64),
        unit: Unit::Microseconds,
        default: Default::Value("0"),
        doc: "an idle shard spins this long before sleeping: lower cross-shard latency for idle CPU (Sluice's key)",
        live: None,
        value: |c| c.shard_spin_before_park_us.to_string(),
    },
    BrokerKey {
        name: "log.level",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            crate::logging::parse(v)?;
            c.log_level = v.trim().to_string();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value("info"),
        doc: "log filter in RUST_LOG syntax (`info`, `warn,sluice::replication=debug`); changeable at run time with IncrementalAlterConfigs on the broker; RUST_LOG wins at start (Sluice's key)",
        live: Some(LiveKey {
            apply: crate::logging::set_level,
            start_value: crate::logging::start_level,
        }),
        value: |_| crate::logging::current(),
    },
    BrokerKey {
        name: "metrics.listen",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.metrics_listen = match v.trim() {
                "" => None,
                address => Some(resolve_host_port(address)?),
            };
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value("127.0.0.1:9644"),
        doc: "`host:port` of the HTTP endpoint serving `/metrics` (Prometheus) and `/v1/status/ready`; empty turns it off (Sluice's key; Redpanda's admin port)",
        live: None,
        value: |c| c.metrics_listen.map_or(String::new(), |address| address.to_string()),
    },
    // Security.
    BrokerKey {
        name: "ssl.keystore.type",
        aliases: &[],
        setter: Setter::Text(|_, v| match v.trim() {
            "PEM" => Ok(()),
            other => Err(format!("`{other}`: only PEM keystores are supported (convert JKS or PKCS12 with keytool/openssl)")),
        }),
        unit: Unit::None,
        default: Default::Value("PEM"),
        doc: "format of the broker's key and certificates: PEM",
        live: None,
        value: |_| "PEM".to_string(),
    },
    BrokerKey {
        name: "ssl.keystore.location",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.keystore_location = non_empty(v).map(std::path::PathBuf::from);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "PEM file with the broker's private key (unencrypted PKCS#8, PKCS#1 or SEC1) and certificate chain, for SSL and SASL_SSL listeners; setting it at run time (IncrementalAlterConfigs on the broker, even to the same path) reloads the files for new connections",
        live: Some(LiveKey {
            apply: crate::security::tls::reload_keystore,
            start_value: crate::security::tls::start_keystore_location,
        }),
        value: |_| crate::security::tls::current_keystore_location(),
    },
    BrokerKey {
        name: "ssl.keystore.certificate.chain",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.keystore_certificate_chain = non_empty(v).map(str::to_string);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "the broker's certificate chain as inline PEM (instead of ssl.keystore.location)",
        live: None,
        value: |c| redacted(c.ssl.keystore_certificate_chain.is_some()),
    },
    BrokerKey {
        name: "ssl.keystore.key",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.keystore_key = non_empty(v).map(str::to_string);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "the broker's private key as inline PEM (instead of ssl.keystore.location)",
        live: None,
        value: |c| redacted(c.ssl.keystore_key.is_some()),
    },
    BrokerKey {
        name: "ssl.key.password",
        aliases: &["ssl.keystore.password"],
        setter: Setter::Text(|_, v| match v.trim() {
            "" => Ok(()),
            _ => Err("encrypted private keys are not supported: decrypt it (openssl pkcs8 -nocrypt) and protect the file by its permissions".to_string()),
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "not supported: give an unencrypted key and protect its file",
        live: None,
        value: |_| String::new(),
    },
    BrokerKey {
        name: "ssl.truststore.type",
        aliases: &[],
        setter: Setter::Text(|_, v| match v.trim() {
            "PEM" => Ok(()),
            other => Err(format!("`{other}`: only PEM truststores are supported")),
        }),
        unit: Unit::None,
        default: Default::Value("PEM"),
        doc: "format of the trusted CA certificates: PEM",
        live: None,
        value: |_| "PEM".to_string(),
    },
    BrokerKey {
        name: "ssl.truststore.location",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.truststore_location = non_empty(v).map(std::path::PathBuf::from);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "PEM file of the CA certificates client certificates must chain to (ssl.client.auth)",
        live: None,
        value: |c| c.ssl.truststore_location.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
    },
    BrokerKey {
        name: "ssl.truststore.certificates",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.truststore_certificates = non_empty(v).map(str::to_string);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "the trusted CA certificates as inline PEM (instead of ssl.truststore.location)",
        live: None,
        value: |c| redacted(c.ssl.truststore_certificates.is_some()),
    },
    BrokerKey {
        name: "ssl.client.auth",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.client_auth = crate::config::ClientAuth::parse(v)?;
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value("none"),
        doc: "`none`, `requested` or `required`: whether SSL clients present a certificate; its subject becomes the principal on SSL listeners (ssl.principal.mapping.rules)",
        live: None,
        value: |c| c.ssl.client_auth.name().to_string(),
    },
    BrokerKey {
        name: "ssl.endpoint.identification.algorithm",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.ssl.endpoint_identification = match v.trim() {
                "" => false,
                algorithm if algorithm.eq_ignore_ascii_case("https") => true,
                other => return Err(format!("`{other}`: expected https or an empty value")),
            };
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value("https"),
        doc: "`https`: a node dialing another over an SSL CONTROLLER listener checks that the peer's certificate names the address it dialed (an IP subjectAltName); empty: the chain is checked, not the name",
        live: None,
        value: |c| {
            if c.ssl.endpoint_identification { "https" } else { "" }.to_string()
        },
    },
    BrokerKey {
        name: "ssl.enabled.protocols",
        aliases: &[],
        setter: Setter::Text(|c, v| c.ssl.set_enabled_protocols(v)),
        unit: Unit::None,
        default: Default::Value("TLSv1.2,TLSv1.3"),
        doc: "TLS versions accepted: TLSv1.2, TLSv1.3",
        live: None,
        value: |c| c.ssl.enabled_protocols_text(),
    },
    BrokerKey {
        name: "ssl.principal.mapping.rules",
        aliases: &[],
        setter: Setter::Text(|_, v| match v.trim() {
            "DEFAULT" => Ok(()),
            _ => Err("only DEFAULT is supported: the principal is the certificate's subject, `User:CN=...,O=...` (RFC 2253)".to_string()),
        }),
        unit: Unit::None,
        default: Default::Value("DEFAULT"),
        doc: "how a client certificate's subject becomes a principal: DEFAULT (the whole subject in RFC 2253 form)",
        live: None,
        value: |_| "DEFAULT".to_string(),
    },
    BrokerKey {
        name: "ssl.ktls.enable",
        aliases: &[],
        setter: Setter::Bool(|c, v| c.ssl.ktls = v),
        unit: Unit::None,
        default: Default::Value("true"),
        doc: "probe the kernel for TLS offload (kTLS) at start and log the TLS mode in use; handing sessions to the kernel is not built yet, so rustls encrypts in user space (Sluice's key)",
        live: None,
        value: |c| c.ssl.ktls.to_string(),
    },
    BrokerKey {
        name: "sasl.enabled.mechanisms",
        aliases: &[],
        setter: Setter::Text(|c, v| c.sasl.set_enabled_mechanisms(v)),
        unit: Unit::None,
        default: Default::Value("SCRAM-SHA-256,SCRAM-SHA-512"),
        doc: "SASL mechanisms offered on SASL_PLAINTEXT and SASL_SSL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (PLAIN is checked against the user's SCRAM credential), OAUTHBEARER (JWTs checked against sasl.oauthbearer.jwks.endpoint.url)",
        live: None,
        value: |c| c.sasl.enabled_mechanisms.join(","),
    },
    BrokerKey {
        name: "connections.max.reauth.ms",
        aliases: &[],
        setter: int!(0, DURATION_MS_MAX, |c, v| c.sasl.max_reauth_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("0"),
        doc: "KIP-368: a SASL session lasts this long; the client re-authenticates on the same connection, or it is closed at its next request (0: sessions never expire)",
        live: None,
        value: |c| c.sasl.max_reauth_ms.to_string(),
    },
    BrokerKey {
        name: "connection.failed.authentication.delay.ms",
        aliases: &[],
        setter: int!(0, 60_000, |c, v| c.sasl.failed_authentication_delay_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("100"),
        doc: "a failed SASL authentication is answered this much later, then the connection closes; past 10 failures a minute for one user from one address, that user's attempts from there fail until the minute ends",
        live: None,
        value: |c| c.sasl.failed_authentication_delay_ms.to_string(),
    },
    BrokerKey {
        name: "sasl.server.max.receive.size",
        aliases: &[],
        setter: int!(1024, 16 << 20, |c, v| c.sasl.max_receive_size = v as u64),
        unit: Unit::Bytes,
        default: Default::Value("524288"),
        doc: "largest SASL token accepted; a larger one fails the authentication and closes the connection",
        live: None,
        value: |c| c.sasl.max_receive_size.to_string(),
    },
    BrokerKey {
        name: "sasl.oauthbearer.jwks.endpoint.url",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.sasl.oauth.jwks_endpoint_url = non_empty(v).map(str::to_string);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "OAUTHBEARER: `file:///path/jwks.json`, the JSON Web Key Set tokens are verified against (read at start and every sasl.oauthbearer.jwks.endpoint.refresh.ms)",
        live: None,
        value: |c| c.sasl.oauth.jwks_endpoint_url.clone().unwrap_or_default(),
    },
    BrokerKey {
        name: "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        aliases: &[],
        setter: int!(1000, DURATION_MS_MAX, |c, v| c.sasl.oauth.jwks_refresh_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("3600000"),
        doc: "OAUTHBEARER: how often the JWKS is read again",
        live: None,
        value: |c| c.sasl.oauth.jwks_refresh_ms.to_string(),
    },
    BrokerKey {
        name: "sasl.oauthbearer.expected.issuer",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.sasl.oauth.expected_issuer = non_empty(v).map(str::to_string);
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "OAUTHBEARER: the `iss` a token must carry (empty: not checked)",
        live: None,
        value: |c| c.sasl.oauth.expected_issuer.clone().unwrap_or_default(),
    },
    BrokerKey {
        name: "sasl.oauthbearer.expected.audience",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.sasl.oauth.expected_audience = v
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "OAUTHBEARER: comma-separated audiences; a token's `aud` must name one (empty: not checked)",
        live: None,
        value: |c| c.sasl.oauth.expected_audience.join(","),
    },
    BrokerKey {
        name: "sasl.oauthbearer.sub.claim.name",
        aliases: &[],
        setter: Setter::Text(|c, v| match non_empty(v) {
            Some(name) => {
                c.sasl.oauth.sub_claim_name = name.to_string();
                Ok(())
            }
            None => Err("the claim name is empty".to_string()),
        }),
        unit: Unit::None,
        default: Default::Value("sub"),
        doc: "OAUTHBEARER: the claim whose value is the principal name (`User:<value>`)",
        live: None,
        value: |c| c.sasl.oauth.sub_claim_name.clone(),
    },
    BrokerKey {
        name: "sasl.oauthbearer.clock.skew.seconds",
        aliases: &[],
        setter: int!(0, 3600, |c, v| c.sasl.oauth.clock_skew_seconds = v as u64),
        unit: Unit::None,
        default: Default::Value("30"),
        doc: "OAUTHBEARER: seconds of clock difference allowed when checking exp and nbf",
        live: None,
        value: |c| c.sasl.oauth.clock_skew_seconds.to_string(),
    },
    BrokerKey {
        name: "authorizer.enable",
        aliases: &[],
        setter: Setter::Bool(|c, v| c.authorizer.enabled = v),
        unit: Unit::None,
        default: Default::Value("false"),
        doc: "check every request against the ACLs (CreateAcls, `sluice acl`); off, every principal may do everything (Sluice's key; Kafka's authorizer.class.name also turns it on)",
        live: None,
        value: |c| c.authorizer.enabled.to_string(),
    },
    BrokerKey {
        name: "authorizer.class.name",
        aliases: &[],
        setter: Setter::Text(|c, v| {
            c.authorizer.enabled = !v.trim().is_empty();
            Ok(())
        }),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "Kafka's switch: any authorizer class name (StandardAuthorizer, AclAuthorizer) turns on Sluice's ACL checks",
        live: None,
        value: |c| if c.authorizer.enabled { "sluice".to_string() } else { String::new() },
    },
    BrokerKey {
        name: "super.users",
        aliases: &[],
        setter: Setter::Text(|c, v| c.authorizer.set_super_users(v)),
        unit: Unit::None,
        default: Default::Value(""),
        doc: "`User:a;User:b`: principals the authorizer lets do everything",
        live: None,
        value: |c| c.authorizer.super_users.join(";"),
    },
    BrokerKey {
        name: "allow.everyone.if.no.acl.found",
        aliases: &[],
        setter: Setter::Bool(|c, v| c.authorizer.allow_everyone_if_no_acl_found = v),
        unit: Unit::None,
        default: Default::Value("false"),
        doc: "with the authorizer on, a resource no ACL names is open to every principal",
        live: None,
        value: |c| c.authorizer.allow_everyone_if_no_acl_found.to_string(),
    },
    // Consumer groups.
    BrokerKey {
        name: "offsets.topic.num.partitions",
        aliases: &[],
        setter: int!(1, 1000, |c, v| c.offsets_topic_num_partitions = v as i32),
        unit: Unit::None,
        default: Default::Value("16"),
        doc: "partitions of `__consumer_offsets` at its creation (Kafka's default is 50; each is a log)",
        live: None,
        value: |c| c.offsets_topic_num_partitions.to_string(),
    },
    BrokerKey {
        name: "group.initial.rebalance.delay.ms",
        aliases: &[],
        setter: int!(0, 300_000, |c, v| c.group_initial_rebalance_delay_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("3000"),
        doc: "an empty group's first rebalance waits this long for more members",
        live: None,
        value: |c| c.group_initial_rebalance_delay_ms.to_string(),
    },
    BrokerKey {
        name: "group.min.session.timeout.ms",
        aliases: &[],
        setter: int!(1, 3_600_000, |c, v| c.group_min_session_timeout_ms = v as i32),
        unit: Unit::Milliseconds,
        default: Default::Value("6000"),
        doc: "shortest session a consumer may ask for",
        live: None,
        value: |c| c.group_min_session_timeout_ms.to_string(),
    },
    BrokerKey {
        name: "group.max.session.timeout.ms",
        aliases: &[],
        setter: int!(1, 3_600_000, |c, v| c.group_max_session_timeout_ms = v as i32),
        unit: Unit::Milliseconds,
        default: Default::Value("1800000"),
        doc: "longest session a consumer may ask for",
        live: None,
        value: |c| c.group_max_session_timeout_ms.to_string(),
    },
    BrokerKey {
        name: "group.max.size",
        aliases: &[],
        setter: int!(1, 1_000_000, |c, v| c.group_max_size = v as u32),
        unit: Unit::None,
        default: Default::Value("10000"),
        doc: "members (and pending member ids) per group; GROUP_MAX_SIZE_REACHED past it",
        live: None,
        value: |c| c.group_max_size.to_string(),
    },
    BrokerKey {
        name: "groups.per.shard.max",
        aliases: &[],
        setter: int!(1, 10_000_000, |c, v| c.groups_per_shard_max = v as u32),
        unit: Unit::None,
        default: Default::Value("100000"),
        doc: "groups a coordinator shard keeps; new groups past it get COORDINATOR_NOT_AVAILABLE (retriable) until old ones expire (Sluice's key)",
        live: None,
        value: |c| c.groups_per_shard_max.to_string(),
    },
    BrokerKey {
        name: "offsets.retention.minutes",
        aliases: &[],
        setter: int!(1, i64::MAX / 60_000, |c, v| c.offsets_retention_minutes = v),
        unit: Unit::Minutes,
        default: Default::Value("10080"),
        doc: "committed offsets of an empty group expire this long after their commit",
        live: None,
        value: |c| c.offsets_retention_minutes.to_string(),
    },
    BrokerKey {
        name: "offsets.retention.check.interval.ms",
        aliases: &[],
        setter: int!(10, DURATION_MS_MAX, |c, v| c.offsets_retention_check_interval_ms = v as u64),
        unit: Unit::Milliseconds,
        default: Default::Value("600000"),
        doc: "how often expired offsets are removed",
        live: None,
        value: |c| c.offsets_retention_check_interval_ms.to_string(),
    },
];
