//! DescribeConfigs for topics (their overrides and the broker defaults under them) and for this
//! broker (every key of `config::keys`, read-only unless it can change at run time), with
//! Kafka's types, synonyms (include_synonyms) and documentation (include_documentation), all
//! from the one key list.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::cluster::metadata::TopicMetadata;
use crate::config::{keys, topic_keys, Config};
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

/// One config as DescribeConfigs reports it; `synonyms` in Kafka's order of precedence, the
/// one in effect first.
pub struct ConfigEntry {
    pub key: &'static str,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
    pub documentation: &'static str,
    pub synonyms: Vec<(&'static str, String, i8)>,
}

/// A broker key's value and where it came from: STATIC_BROKER_CONFIG when set by file, flag
/// or environment, else DEFAULT_CONFIG (Kafka's sources for a static broker config).
fn broker_source(config: &Config, key: &keys::BrokerKey) -> i8 {
    if config.is_explicit(key.name) {
        SOURCE_STATIC_BROKER_CONFIG
    } else {
        SOURCE_DEFAULT_CONFIG
    }
}

/// Effective configs of a topic: its overrides, else the broker's value (or Kafka's default
/// where Sluice has no broker key).
pub fn topic_config_entries(config: &Config, topic: &TopicMetadata) -> Vec<ConfigEntry> {
    topic_keys::TOPIC_KEYS
        .iter()
        .map(|key| {
            let mut synonyms = Vec::new();
            if let Some(value) = topic.configs.get(key.name) {
                synonyms.push((key.name, value.clone(), SOURCE_DYNAMIC_TOPIC_CONFIG));
            }
            match keys::find(key.broker_key) {
                // Kafka lists the broker key as set, then its default.
                Some(broker) => {
                    if config.is_explicit(broker.name) {
                        synonyms.push((
                            broker.name,
                            (broker.value)(config),
                            SOURCE_STATIC_BROKER_CONFIG,
                        ));
                    }
                    let default = match broker.default {
                        keys::Default::Value(value) => value.to_string(),
                        keys::Default::Derived(_) => (broker.value)(config),
                    };
                    synonyms.push((broker.name, default, SOURCE_DEFAULT_CONFIG));
                }
                None => {
                    let name = if key.broker_key.is_empty() {
                        key.name
                    } else {
                        key.broker_key
                    };
                    synonyms.push((name, key.default_value(config), SOURCE_DEFAULT_CONFIG));
                }
            }
            let (_, value, source) = synonyms[0].clone();
            ConfigEntry {
                key: key.name,
                value,
                source,
                read_only: false,
                config_type: key.kafka_type(),
                documentation: key.doc,
                synonyms,
            }
        })
        .collect()
}

/// Every broker key with its current value.
pub fn broker_config_entries(config: &Config) -> Vec<ConfigEntry> {
    keys::BROKER_KEYS
        .iter()
        .map(|key| {
            let value = (key.value)(config);
            let source = broker_source(config, key);
            let mut synonyms = vec![(key.name, value.clone(), source)];
            if source == SOURCE_STATIC_BROKER_CONFIG {
                if let keys::Default::Value(default) = key.default {
                    synonyms.push((key.name, default.to_string(), SOURCE_DEFAULT_CONFIG));
                }
            }
            ConfigEntry {
                key: key.name,
                value,
                source,
                read_only: !key.is_dynamic(),
                config_type: key.kafka_type(),
                documentation: key.doc,
                synonyms,
            }
        })
        .collect()
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
        if let Err(code) = crate::server::authorize::config_resource(
            shard,
            &request.session,
            crate::security::acl::Operation::DescribeConfigs,
            resource.resource_type,
            name,
        ) {
            result.error_code = code;
            response.results.push(result);
            continue;
        }
        let entries = match resource.resource_type {
            RESOURCE_TYPE_TOPIC => match metadata.topic(name) {
                Some(topic) => topic_config_entries(&shard.config, topic),
                None => {
                    result.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                    result.error_message = Some(StrBytes::from_string(format!(
                        "Topic {name} does not exist"
                    )));
                    Vec::new()
                }
            },
            RESOURCE_TYPE_BROKER if name.is_empty() || name == shard.config.node_id.to_string() => {
                broker_config_entries(&shard.config)
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
            if body.include_documentation {
                config.documentation = Some(StrBytes::from_static_str(entry.documentation));
            }
            if body.include_synonyms {
                config.synonyms = entry
                    .synonyms
                    .into_iter()
                    .map(|(name, value, source)| {
                        let mut synonym = DescribeConfigsSynonym::default();
                        synonym.name = StrBytes::from_static_str(name);
                        synonym.value = Some(StrBytes::from_string(value));
                        synonym.source = source;
                        synonym
                    })
                    .collect();
            }
            result.configs.push(config);
        }
        response.results.push(result);
    }
    request.respond(&response)
}
