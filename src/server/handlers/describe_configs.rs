//! DescribeConfigs for topics (their overrides and the broker defaults under them) and for this
//! broker (its static configuration, read-only).

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::cluster::metadata::{broker_default, TopicMetadata, TOPIC_CONFIG_KEYS};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

/// Kafka's ConfigResource.Type.
pub const RESOURCE_TYPE_TOPIC: i8 = 2;
pub const RESOURCE_TYPE_BROKER: i8 = 4;
/// Kafka's ConfigSource.
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;
/// Kafka's ConfigType.
const CONFIG_TYPE_BOOLEAN: i8 = 1;
const CONFIG_TYPE_STRING: i8 = 2;
const CONFIG_TYPE_INT: i8 = 3;
const CONFIG_TYPE_LONG: i8 = 5;
const CONFIG_TYPE_DOUBLE: i8 = 6;
const CONFIG_TYPE_LIST: i8 = 7;

pub struct ConfigEntry {
    pub key: &'static str,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
}

/// Kafka's ConfigType of a topic or broker key.
fn config_type(key: &str) -> i8 {
    match key {
        "retention.ms"
        | "retention.bytes"
        | "segment.ms"
        | "segment.jitter.ms"
        | "flush.messages"
        | "flush.ms"
        | "file.delete.delay.ms"
        | "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "max.compaction.lag.ms"
        | "message.timestamp.difference.max.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms"
        | "local.retention.ms"
        | "local.retention.bytes"
        | "log.roll.ms"
        | "log.retention.ms"
        | "log.retention.bytes"
        | "log.retention.check.interval.ms"
        | "queued.max.request.bytes"
        | "offsets.retention.check.interval.ms" => CONFIG_TYPE_LONG,
        "segment.bytes"
        | "max.message.bytes"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "min.insync.replicas"
        | "compression.gzip.level"
        | "compression.lz4.level"
        | "compression.zstd.level"
        | "node.id"
        | "broker.id"
        | "num.partitions"
        | "socket.request.max.bytes"
        | "message.max.bytes"
        | "log.segment.bytes"
        | "default.replication.factor"
        | "log.index.interval.bytes"
        | "fetch.max.bytes"
        | "offsets.topic.num.partitions"
        | "group.initial.rebalance.delay.ms"
        | "offsets.retention.minutes" => CONFIG_TYPE_INT,
        "unclean.leader.election.enable"
        | "preallocate"
        | "message.downconversion.enable"
        | "remote.storage.enable"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "auto.create.topics.enable" => CONFIG_TYPE_BOOLEAN,
        "min.cleanable.dirty.ratio" => CONFIG_TYPE_DOUBLE,
        "cleanup.policy"
        | "leader.replication.throttled.replicas"
        | "follower.replication.throttled.replicas" => CONFIG_TYPE_LIST,
        _ => CONFIG_TYPE_STRING,
    }
}

/// Effective configs of a topic: its overrides, else the broker's value — reported as Kafka
/// does: STATIC_BROKER_CONFIG when the broker key it comes from was set (file, flag or
/// environment), DEFAULT_CONFIG otherwise.
pub fn topic_config_entries(shard: &Shard, topic: &TopicMetadata) -> Vec<ConfigEntry> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|(key, synonym)| match topic.configs.get(*key) {
            Some(value) => ConfigEntry {
                key,
                value: value.clone(),
                source: SOURCE_DYNAMIC_TOPIC_CONFIG,
                read_only: false,
                config_type: config_type(key),
            },
            None => ConfigEntry {
                key,
                value: broker_default(&shard.config, key).unwrap_or_default(),
                source: if shard.config.is_explicit(synonym) {
                    SOURCE_STATIC_BROKER_CONFIG
                } else {
                    SOURCE_DEFAULT_CONFIG
                },
                read_only: false,
                config_type: config_type(key),
            },
        })
        .collect()
}

fn broker_entries(shard: &Shard) -> Vec<ConfigEntry> {
    let config = &shard.config;
    let entry = |key: &'static str, value: String| ConfigEntry {
        key,
        value,
        // Kafka: keys set by file, flag or environment are static; the rest are defaults.
        source: if config.is_explicit(key) {
            SOURCE_STATIC_BROKER_CONFIG
        } else {
            SOURCE_DEFAULT_CONFIG
        },
        read_only: true,
        config_type: config_type(key),
    };
    vec![
        entry("node.id", config.node_id.to_string()),
        entry("broker.id", config.node_id.to_string()),
        entry("listeners", format!("PLAINTEXT://{}", config.listen)),
        entry(
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                config.advertise_host, config.advertise_port
            ),
        ),
        entry("log.dirs", config.data_dir.display().to_string()),
        entry("num.partitions", config.num_partitions.to_string()),
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
        ),
        entry(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
        ),
        entry("message.max.bytes", config.message_max_bytes.to_string()),
        entry("log.segment.bytes", config.log_segment_bytes.to_string()),
        entry("log.roll.ms", config.log_roll_ms.to_string()),
        entry("log.retention.ms", config.log_retention_ms.to_string()),
        entry(
            "log.retention.bytes",
            config.log_retention_bytes.to_string(),
        ),
        entry("default.replication.factor", "1".to_string()),
    ]
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeConfigsRequest = request.decode()?;
    let metadata = crate::cluster::state::of(shard).metadata();
    let mut response = DescribeConfigsResponse::default();
    for resource in &body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        let entries = match resource.resource_type {
            RESOURCE_TYPE_TOPIC => match metadata.topic(name) {
                Some(topic) => topic_config_entries(shard, topic),
                None => {
                    result.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message = Some(StrBytes::from_string(format!(
                        "Topic {name} does not exist"
                    )));
                    Vec::new()
                }
            },
            RESOURCE_TYPE_BROKER if name.is_empty() || name == shard.config.node_id.to_string() => {
                broker_entries(shard)
            }
            _ => {
                result.error_code = error::INVALID_REQUEST;
                result.error_message = Some(StrBytes::from_string(format!(
                    "unsupported resource type {} / name {name}",
                    resource.resource_type
                )));
                Vec::new()
            }
        };
        // Null (or an empty list) asks for every config.
        let wanted = resource
            .configuration_keys
            .as_ref()
            .filter(|keys| !keys.is_empty());
        for entry in entries {
            if wanted.is_some_and(|keys| !keys.iter().any(|key| key.as_str() == entry.key)) {
                continue;
            }
            let mut config = DescribeConfigsResourceResult::default();
            config.name = StrBytes::from_static_str(entry.key);
            config.value = Some(StrBytes::from_string(entry.value));
            config.read_only = entry.read_only;
            config.config_source = entry.source;
            config.config_type = entry.config_type;
            result.configs.push(config);
        }
        response.results.push(result);
    }
    request.respond(&response)
}
