//! Cluster metadata: topics, their ids, partition placement on shards, and per-topic config
//! overrides. One writer (shard 0) changes it; every shard holds its own copy, applied in
//! `version` order. Persisted as `cluster_metadata.toml` in the data directory by shard 0,
//! written to a temporary file, fdatasync'ed, then renamed over the old one (atomic).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

pub const METADATA_FILE_NAME: &str = "cluster_metadata.toml";

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    /// 16-byte topic id (Metadata v10+, Fetch v13+), as a UUID string.
    pub topic_id: String,
    /// `placement[p]` is the shard that owns partition `p`.
    pub placement: Vec<u32>,
    /// Topic-level overrides only; absent keys take the broker default.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
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

    pub fn topic_by_id(&self, topic_id: &[u8; 16]) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic_id_bytes(&topic.topic_id) == *topic_id)
    }

    /// The shard that owns `partition` of `topic`, folded onto the shards of this run (a
    /// restart with fewer `--cores` moves partitions; their directories do not depend on it).
    pub fn owner_shard(&self, topic: &str, partition: i32, shard_count: usize) -> Option<usize> {
        let topic = self.topics.get(topic)?;
        let shard = *topic.placement.get(usize::try_from(partition).ok()?)?;
        Some(shard as usize % shard_count)
    }

    /// Appends `count` partitions to placement, spreading them round-robin over shards.
    pub fn place_partitions(&mut self, count: u32, shard_count: usize) -> Vec<u32> {
        assert!(shard_count > 0);
        (0..count)
            .map(|_| {
                let shard = self.next_shard % shard_count as u32;
                self.next_shard = self.next_shard.wrapping_add(1);
                shard
            })
            .collect()
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

pub fn topic_id_bytes(topic_id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(topic_id)
        .map(|id| *id.as_bytes())
        .unwrap_or([0; 16])
}

pub fn new_topic_id() -> String {
    uuid::Uuid::new_v4().to_string()
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

/// Timestamp stored in a batch: the producer's, or the broker's at append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
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
            version: 3,
            cluster_id: "abc".into(),
            ..Default::default()
        };
        let placement = metadata.place_partitions(3, 2);
        assert_eq!(placement, vec![0, 1, 0]);
        metadata.topics.insert(
            "orders".into(),
            TopicMetadata {
                name: "orders".into(),
                topic_id: new_topic_id(),
                placement,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            },
        );
        let text = metadata.to_toml();
        assert_eq!(ClusterMetadata::from_toml(&text).unwrap(), metadata);
        assert_eq!(metadata.owner_shard("orders", 1, 2), Some(1));
        assert_eq!(metadata.owner_shard("orders", 1, 1), Some(0));
        assert_eq!(metadata.owner_shard("orders", 3, 2), None);
        assert_eq!(metadata.owner_shard("orders", -1, 2), None);
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
            topic_id: new_topic_id(),
            placement: vec![0],
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
