//! IncrementalAlterConfigs: SET and DELETE of topic config overrides (APPEND/SUBTRACT are
//! refused: no supported topic config is a list yet), and of this broker's dynamic keys
//! (`config::keys`, those with a `live` setter; today `log.level`) on the broker resource named by this
//! node's id (or "", Kafka's cluster default, applied here only). A static broker key is refused
//! with INVALID_CONFIG: it needs a restart with `--set`.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::alter_configs::{alter_topic_configs, resource_outcome};
use super::Request;
use crate::cluster::admin::{ConfigChange, ConfigOperation, TopicConfigChanges};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::server::handlers::describe_configs::{RESOURCE_TYPE_BROKER, RESOURCE_TYPE_TOPIC};
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
    let permitted = |resource_type: i8, name: &str| {
        crate::server::authorize::config_resource(
            shard,
            &request.session,
            crate::security::acl::Operation::AlterConfigs,
            resource_type,
            name,
        )
    };
    let mut invalid: Vec<String> = Vec::new();
    let mut topics: Vec<TopicConfigChanges> = Vec::new();
    for resource in &body.resources {
        if resource.resource_type != RESOURCE_TYPE_TOPIC
            || permitted(resource.resource_type, &resource.resource_name).is_err()
        {
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
    let this_node = shard.config.node_id.to_string();
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in &body.resources {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let name = resource.resource_name.as_str();
        (result.error_code, result.error_message) =
            if let Err(code) = permitted(resource.resource_type, name) {
                (code, None)
            } else if resource.resource_type == RESOURCE_TYPE_BROKER {
                if name.is_empty() || name == this_node {
                    alter_broker(&resource.configs, body.validate_only)
                } else {
                    (
                        error::INVALID_REQUEST,
                        Some(StrBytes::from_string(format!(
                            "this is broker {this_node}; send broker {name}'s configs to it"
                        ))),
                    )
                }
            } else if resource.resource_type == RESOURCE_TYPE_TOPIC
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

/// Applies (unless `validate_only`) the changes to this broker's dynamic keys
/// (`BrokerKey::live`): all of them valid, or none applied.
fn alter_broker(
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    let mut changes = Vec::new();
    for config in configs {
        let name = config.name.as_str();
        let Some(key) = crate::config::keys::find(name) else {
            return invalid(format!("unknown broker config `{name}`"));
        };
        let Some(live) = key.live else {
            return invalid(format!(
                "`{}` cannot change at run time; restart with --set {}=...",
                key.name, key.name
            ));
        };
        let value = match operation(config.config_operation) {
            Some(ConfigOperation::Set) => match &config.value {
                Some(value) => value.to_string(),
                None => return invalid(format!("SET of `{name}` without a value")),
            },
            // Removing the run-time value goes back to the one the broker started with.
            Some(ConfigOperation::Delete) => (live.start_value)(),
            _ => return invalid(format!("`{name}` takes SET or DELETE")),
        };
        // The key's own check, as at start.
        if let Err(error) = crate::config::Config::default().set(key.name, &value) {
            return invalid(error.to_string());
        }
        changes.push((key.name, live, value));
    }
    if !validate_only {
        for (name, live, value) in changes {
            if let Err(reason) = (live.apply)(&value) {
                return (
                    error::UNKNOWN_SERVER_ERROR,
                    Some(StrBytes::from_string(reason)),
                );
            }
            log::info!("{name} is now `{value}`");
        }
    }
    (error::NONE, None)
}

fn invalid(message: String) -> (i16, Option<StrBytes>) {
    (error::INVALID_CONFIG, Some(StrBytes::from_string(message)))
}
