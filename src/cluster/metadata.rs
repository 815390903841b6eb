//! Cluster metadata: topics, their ids, each partition's replica set (node, shard) with its
//! leader and leader epoch, and per-topic config overrides. One writer (shard 0) changes it;
//! every shard holds its own copy, applied in `version` order, and derives its placement table
//! from it. Persisted as `cluster_metadata.toml` in the data directory by shard 0, written to a
//! temporary file, fdatasync'ed, then renamed over the old one (atomic).
//!
//! Format versions: 0 (before replica sets) recorded `placement = [shard, ...]` per topic;
//! `upgrade` turns that into one-replica sets on this node at start. 1 records `partitions`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::ids::{NodeId, ShardId, TopicId};
use crate::partition::PartitionConfig;
pub use crate::partition::TimestampType;
use crate::shard::placement::{PartitionAssignment, PlacementTable, TopicPlacement};

/// The metadata format this version writes.
pub const FORMAT_VERSION: u32 = 1;

pub const METADATA_FILE_NAME: &str = "cluster_metadata.toml";

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    /// 16-byte topic id (Metadata v10+, Fetch v13+), stored as a UUID string.
    pub topic_id: TopicId,
    /// Format 0 only: `placement[p]` was the shard owning partition `p` (see `upgrade`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<u32>,
    /// `partitions[p]`: replica set, leader and leader epoch of partition `p`.
    #[serde(default)]
    pub partitions: Vec<PartitionAssignment>,
    /// Topic-level overrides only; absent keys take the broker default.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    #[serde(default)]
    pub format_version: u32,
    pub version: u64,
    pub cluster_id: String,
    /// Round-robin cursor for placing new partitions on shards.
    #[serde(default)]
    pub next_shard: u32,
    /// Producer ids below this have been handed out (blocks are reserved here before use, so
    /// ids stay unique across restarts).
    #[serde(default)]
    pub next_producer_id: i64,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: &TopicId) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == *topic_id)
    }

    /// Picks shards for `count` new partitions on `node`, round-robin over `shard_count`.
    pub fn place_partitions(
        &mut self,
        count: u32,
        node: NodeId,
        shard_count: usize,
    ) -> Vec<PartitionAssignment> {
        assert!(shard_count > 0);
        (0..count)
            .map(|_| {
                let shard = self.next_shard % shard_count as u32;
                self.next_shard = self.next_shard.wrapping_add(1);
                PartitionAssignment::single(node, ShardId(shard))
            })
            .collect()
    }

    /// Brings metadata of an older format to this one: format 0's per-topic shard list becomes
    /// one-replica sets on `node`, led by it at epoch 0. True if anything changed.
    pub fn upgrade(&mut self, node: NodeId) -> bool {
        let mut changed = self.format_version != FORMAT_VERSION;
        for topic in self.topics.values_mut() {
            if topic.partitions.is_empty() && !topic.placement.is_empty() {
                topic.partitions = topic
                    .placement
                    .iter()
                    .map(|&shard| PartitionAssignment::single(node, ShardId(shard)))
                    .collect();
                changed = true;
            }
            topic.placement.clear();
        }
        self.format_version = FORMAT_VERSION;
        changed
    }

    /// A new leader epoch for every partition led by `node`, as Kafka's controller elects the
    /// sole broker again when it comes back. True if any epoch changed.
    pub fn bump_leader_epochs(&mut self, node: NodeId) -> bool {
        let mut changed = false;
        for topic in self.topics.values_mut() {
            for assignment in &mut topic.partitions {
                if assignment.leader == node {
                    assignment.leader_epoch = assignment.leader_epoch.next();
                    changed = true;
                }
            }
        }
        changed
    }

    /// The placement table shards route with, for this version.
    pub fn placement_table(&self, node: NodeId) -> PlacementTable {
        let mut table = PlacementTable::new(self.version, node);
        for (name, topic) in &self.topics {
            table.insert(
                name,
                TopicPlacement {
                    topic_id: topic.topic_id,
                    partitions: topic.partitions.clone(),
                },
            );
        }
        table
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("metadata is always representable in TOML")
    }

    pub fn from_toml(text: &str) -> Result<ClusterMetadata, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }
}

/// Kafka's internal topics (only these are flagged internal in Metadata).
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name must be 1..={TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name {name:?} contains illegal character {bad:?} (legal: a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// A topic's effective configuration: its overrides on top of the broker defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: u32,
    pub cleanup_policy: String,
    pub message_timestamp_type: TimestampType,
}

/// Topic config keys supported, with the broker key their default comes from.
pub const TOPIC_CONFIG_KEYS: &[(&str, &str)] = &[
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("cleanup.policy", "log.cleanup.policy"),
    ("message.timestamp.type", "log.message.timestamp.type"),
];

/// Log settings of a topic without overrides.
pub fn broker_log_config(config: &Config) -> crate::storage::LogConfig {
    crate::storage::LogConfig {
        segment_bytes: config.log_segment_bytes,
        segment_ms: config.log_roll_ms,
        retention_ms: config.log_retention_ms,
        retention_bytes: config.log_retention_bytes,
        index_interval_bytes: config.log_index_interval_bytes,
        preallocate_bytes: config.log_preallocate_bytes.min(config.log_segment_bytes),
        flush_delay_us: config.log_flush_delay_us,
    }
}

/// Default value of a topic config as the broker config sets it.
pub fn broker_default(config: &Config, key: &str) -> Option<String> {
    Some(match key {
        "retention.ms" => config.log_retention_ms.to_string(),
        "retention.bytes" => config.log_retention_bytes.to_string(),
        "segment.bytes" => config.log_segment_bytes.to_string(),
        "segment.ms" => config.log_roll_ms.to_string(),
        "max.message.bytes" => config.message_max_bytes.to_string(),
        "cleanup.policy" => "delete".to_string(),
        "message.timestamp.type" => "CreateTime".to_string(),
        _ => return None,
    })
}

/// Checks one topic config value; the error text goes back to the client.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    let int = |min: i64, max: i64| -> Result<(), String> {
        let parsed: i64 = value
            .parse()
            .map_err(|_| format!("{key}: `{value}` is not an integer"))?;
        if parsed < min || parsed > max {
            return Err(format!("{key}: {parsed} is outside {min}..={max}"));
        }
        Ok(())
    };
    match key {
        "retention.ms" | "retention.bytes" => int(-1, i64::MAX),
        "segment.bytes" => int(
            crate::config::SEGMENT_BYTES_MIN as i64,
            crate::config::SEGMENT_BYTES_MAX as i64,
        ),
        "segment.ms" => int(1, i64::MAX),
        "max.message.bytes" => int(0, crate::config::MESSAGE_MAX_BYTES_MAX as i64),
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            "compact" | "compact,delete" | "delete,compact" => Err(format!(
                "{key}={value} is not supported yet (only delete); see README limits"
            )),
            _ => Err(format!("{key}: `{value}` is not delete or compact")),
        },
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!(
                "{key}: `{value}` is not CreateTime or LogAppendTime"
            )),
        },
        _ => Err(format!("unknown or unsupported topic config `{key}`")),
    }
}

impl TopicConfig {
    pub fn resolve(config: &Config, topic: &TopicMetadata) -> TopicConfig {
        let value = |key: &str| -> String {
            topic
                .configs
                .get(key)
                .cloned()
                .or_else(|| broker_default(config, key))
                .unwrap_or_default()
        };
        let int = |key: &str, fallback: i64| value(key).parse::<i64>().unwrap_or(fallback);
        TopicConfig {
            retention_ms: int("retention.ms", config.log_retention_ms),
            retention_bytes: int("retention.bytes", config.log_retention_bytes),
            segment_bytes: int("segment.bytes", config.log_segment_bytes as i64) as u64,
            segment_ms: int("segment.ms", config.log_roll_ms),
            max_message_bytes: int("max.message.bytes", i64::from(config.message_max_bytes)) as u32,
            cleanup_policy: value("cleanup.policy"),
            message_timestamp_type: if value("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
        }
    }

    /// Checks the resolved settings against the storage's own limits.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        self.log_config(config)
            .validate()
            .map_err(|error| error.to_string())
    }

    /// What a partition of this topic needs.
    pub fn partition_config(&self, config: &Config) -> PartitionConfig {
        PartitionConfig {
            log: self.log_config(config),
            max_message_bytes: self.max_message_bytes,
            timestamp_type: self.message_timestamp_type,
        }
    }

    pub fn log_config(&self, config: &Config) -> crate::storage::LogConfig {
        crate::storage::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            index_interval_bytes: config.log_index_interval_bytes,
            preallocate_bytes: config.log_preallocate_bytes.min(self.segment_bytes),
            flush_delay_us: config.log_flush_delay_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_toml() {
        let mut metadata = ClusterMetadata {
            format_version: FORMAT_VERSION,
            version: 3,
            cluster_id: "abc".into(),
            ..Default::default()
        };
        let node = NodeId(0);
        let partitions = metadata.place_partitions(3, node, 2);
        let shards: Vec<ShardId> = partitions.iter().map(|p| p.replicas[0].shard).collect();
        assert_eq!(shards, vec![ShardId(0), ShardId(1), ShardId(0)]);
        metadata.topics.insert(
            "orders".into(),
            TopicMetadata {
                name: "orders".into(),
                topic_id: TopicId::new_random(),
                placement: Vec::new(),
                partitions,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            },
        );
        let text = metadata.to_toml();
        assert_eq!(ClusterMetadata::from_toml(&text).unwrap(), metadata);
        let table = metadata.placement_table(node);
        assert_eq!(table.owner_shard("orders", 1, 2), Some(ShardId(1)));
        assert_eq!(table.owner_shard("orders", 1, 1), Some(ShardId(0)));
        assert_eq!(table.owner_shard("orders", 3, 2), None);
    }

    /// A data directory written before replica sets existed opens with this version.
    #[test]
    fn format_zero_metadata_upgrades_to_replica_sets() {
        let text = r#"
version = 7
cluster_id = "c1"
next_shard = 3
next_producer_id = 1000

[topics.orders]
name = "orders"
topic_id = "0b6a1f3e-4d1c-4b8e-9a43-5c1d2e3f4a5b"
placement = [0, 1, 0]

[topics.orders.configs]
"retention.ms" = "1000"
"#;
        let mut metadata = ClusterMetadata::from_toml(text).unwrap();
        assert!(metadata.upgrade(NodeId(0)));
        assert_eq!(metadata.format_version, FORMAT_VERSION);
        let orders = metadata.topic("orders").unwrap();
        assert!(orders.placement.is_empty());
        assert_eq!(orders.partitions.len(), 3);
        assert_eq!(orders.partitions[1].replicas[0].shard, ShardId(1));
        assert_eq!(orders.partitions[1].leader, NodeId(0));
        assert_eq!(
            orders.topic_id,
            TopicId::parse("0b6a1f3e-4d1c-4b8e-9a43-5c1d2e3f4a5b").unwrap()
        );
        let again = ClusterMetadata::from_toml(&metadata.to_toml()).unwrap();
        assert_eq!(again, metadata);
        assert!(!metadata.clone().upgrade(NodeId(0)), "already current");
        assert!(metadata.bump_leader_epochs(NodeId(0)));
        assert_eq!(
            metadata.topic("orders").unwrap().partitions[2].leader_epoch,
            crate::ids::LeaderEpoch(1)
        );
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_config_overrides_defaults() {
        let config = Config::default();
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: TopicId::new_random(),
            placement: Vec::new(),
            partitions: vec![PartitionAssignment::single(NodeId(0), ShardId(0))],
            configs: [(
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            )]
            .into(),
        };
        let resolved = TopicConfig::resolve(&config, &topic);
        assert_eq!(
            resolved.message_timestamp_type,
            TimestampType::LogAppendTime
        );
        assert_eq!(resolved.retention_ms, config.log_retention_ms);
        assert!(validate_topic_config("retention.ms", "abc").is_err());
        assert!(validate_topic_config("segment.bytes", "100").is_err());
        assert!(validate_topic_config("cleanup.policy", "delete").is_ok());
    }
}
