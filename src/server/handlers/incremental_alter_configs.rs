//! IncrementalAlterConfigs: SET and DELETE of topic config overrides (APPEND/SUBTRACT are
//! refused: no supported topic config is a list yet). Broker configs are static.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::alter_configs::{alter_topic_configs, resource_outcome};
use super::Request;
use crate::cluster::admin::{ConfigChange, ConfigOperation, TopicConfigChanges};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::server::handlers::describe_configs::RESOURCE_TYPE_TOPIC;
use crate::shard::Shard;

fn operation(code: i8) -> Option<ConfigOperation> {
    match code {
        0 => Some(ConfigOperation::Set),
        1 => Some(ConfigOperation::Delete),
        2 => Some(ConfigOperation::Append),
        3 => Some(ConfigOperation::Subtract),
        _ => None,
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: IncrementalAlterConfigsRequest = request.decode()?;
    let mut invalid: Vec<String> = Vec::new();
    let mut topics: Vec<TopicConfigChanges> = Vec::new();
    for resource in &body.resources {
        if resource.resource_type != RESOURCE_TYPE_TOPIC {
            continue;
        }
        let mut changes = Vec::with_capacity(resource.configs.len());
        for config in &resource.configs {
            match operation(config.config_operation) {
                Some(operation) => changes.push(ConfigChange {
                    key: config.name.to_string(),
                    value: config.value.as_ref().map(|value| value.to_string()),
                    operation,
                }),
                None => invalid.push(resource.resource_name.to_string()),
            }
        }
        if !invalid.contains(&resource.resource_name.to_string()) {
            topics.push(TopicConfigChanges {
                topic: resource.resource_name.to_string(),
                changes,
            });
        }
    }
    let outcomes = alter_topic_configs(shard, topics, true, body.validate_only).await;
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in &body.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        (result.error_code, result.error_message) = if resource.resource_type == RESOURCE_TYPE_TOPIC
            && invalid.iter().any(|bad| bad == name)
        {
            (
                error::INVALID_REQUEST,
                Some(StrBytes::from_static_str("unknown config operation")),
            )
        } else {
            resource_outcome(resource.resource_type, name, &outcomes)
        };
        response.responses.push(result);
    }
    request.respond(&response)
}
