//! AlterConfigs (legacy, whole-set replace): the given configs become the topic's complete set
//! of overrides. Broker configs are static (set them in the config file) and are refused.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, outcome_for, Request};
use crate::cluster::admin::{
    AdminRequest, ConfigChange, ConfigOperation, TopicConfigChanges, TopicOutcome,
};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::server::handlers::describe_configs::RESOURCE_TYPE_TOPIC;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: AlterConfigsRequest = request.decode()?;
    let permitted = |resource_type: i8, name: &str| {
        crate::server::authorize::config_resource(
            shard,
            &request.session,
            crate::security::acl::Operation::AlterConfigs,
            resource_type,
            name,
        )
    };
    let topics: Vec<TopicConfigChanges> = body
        .resources
        .iter()
        .filter(|resource| resource.resource_type == RESOURCE_TYPE_TOPIC)
        .filter(|resource| permitted(resource.resource_type, &resource.resource_name).is_ok())
        .map(|resource| {
            let changes = resource
                .configs
                .iter()
                .map(|config| ConfigChange {
                    key: config.name.to_string(),
                    value: config.value.as_ref().map(|value| value.to_string()),
                    operation: ConfigOperation::Set,
                })
                .collect();
            TopicConfigChanges {
                topic: resource.resource_name.to_string(),
                changes,
            }
        })
        .collect();
    let outcomes = alter_topic_configs(shard, topics, false, body.validate_only).await;
    let mut response = AlterConfigsResponse::default();
    for resource in &body.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        (result.error_code, result.error_message) =
            match permitted(resource.resource_type, &resource.resource_name) {
                Err(code) => (code, None),
                Ok(()) => resource_outcome(
                    resource.resource_type,
                    resource.resource_name.as_str(),
                    &outcomes,
                ),
            };
        response.responses.push(result);
    }
    request.respond(&response)
}

/// Sends topic config changes to the metadata writer (none: no call).
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    topics: Vec<TopicConfigChanges>,
    incremental: bool,
    validate_only: bool,
) -> Vec<TopicOutcome> {
    if topics.is_empty() {
        return Vec::new();
    }
    let request = AdminRequest::AlterTopicConfigs {
        topics,
        incremental,
        validate_only,
    };
    admin(shard, request).await
}

/// Error code and message of one resource of AlterConfigs / IncrementalAlterConfigs.
pub fn resource_outcome(
    resource_type: i8,
    name: &str,
    outcomes: &[TopicOutcome],
) -> (i16, Option<StrBytes>) {
    if resource_type != RESOURCE_TYPE_TOPIC {
        return (
            error::INVALID_REQUEST,
            Some(StrBytes::from_static_str(
                "AlterConfigs changes topic configs only; a broker's log.level changes with IncrementalAlterConfigs, its other keys at restart",
            )),
        );
    }
    match outcome_for(outcomes, name) {
        Some(outcome) => (
            outcome.error_code,
            outcome.error_message.clone().map(StrBytes::from_string),
        ),
        None => (error::REQUEST_TIMED_OUT, None),
    }
}
