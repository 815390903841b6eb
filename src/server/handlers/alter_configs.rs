//! AlterConfigs (legacy, whole-set replace): the given configs become the topic's complete set
//! of overrides. Broker configs are static (set them in the config file) and are refused.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, outcome_for, Request};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::server::handlers::describe_configs::RESOURCE_TYPE_TOPIC;
use crate::shard::message::{AdminRequest, ConfigChange, ConfigOperation};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: AlterConfigsRequest = request.decode()?;
    let topics: Vec<(String, Vec<ConfigChange>)> = body
        .resources
        .iter()
        .filter(|resource| resource.resource_type == RESOURCE_TYPE_TOPIC)
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
            (resource.resource_name.to_string(), changes)
        })
        .collect();
    let outcomes = if topics.is_empty() {
        Vec::new()
    } else {
        admin(
            shard,
            AdminRequest::AlterTopicConfigs {
                topics,
                incremental: false,
                validate_only: body.validate_only,
            },
        )
        .await
    };
    let mut response = AlterConfigsResponse::default();
    for resource in &body.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if resource.resource_type != RESOURCE_TYPE_TOPIC {
            result.error_code = error::INVALID_REQUEST;
            result.error_message = Some(StrBytes::from_static_str(
                "only topic configs can be altered; broker configs are static (config file)",
            ));
        } else if let Some(outcome) = outcome_for(&outcomes, resource.resource_name.as_str()) {
            result.error_code = outcome.error_code;
            result.error_message = outcome.error_message.clone().map(StrBytes::from_string);
        } else {
            result.error_code = error::REQUEST_TIMED_OUT;
        }
        response.responses.push(result);
    }
    request.respond(&response)
}
