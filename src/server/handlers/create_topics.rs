//! CreateTopics (incl. validate_only and topic configs), executed by the metadata writer on
//! shard 0; the answer comes after every shard has the topic.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, Request};
use crate::cluster::admin::{AdminRequest, NewTopic, ReplicaAssignment};
use crate::cluster::state;
use crate::ids::NodeId;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::acl::{Operation, ResourceType};
use crate::server::authorize;
use crate::server::handlers::describe_configs::topic_config_entries;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: CreateTopicsRequest = request.decode()?;
    // Create on the cluster covers every topic; else each topic needs its own (Kafka's rule).
    let on_cluster = authorize::cluster_allowed(shard, &request.session, Operation::Create);
    let permitted: Vec<bool> = body
        .topics
        .iter()
        .map(|topic| {
            on_cluster
                || authorize::allowed(
                    shard,
                    &request.session,
                    Operation::Create,
                    ResourceType::Topic,
                    topic.name.0.as_str(),
                )
        })
        .collect();
    let topics: Vec<NewTopic> = body
        .topics
        .iter()
        .zip(&permitted)
        .filter(|(_, permitted)| **permitted)
        .map(|(topic, _)| NewTopic {
            name: topic.name.0.to_string(),
            num_partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|assignment| ReplicaAssignment {
                    partition: assignment.partition_index,
                    broker_ids: assignment
                        .broker_ids
                        .iter()
                        .map(|id| NodeId(id.0))
                        .collect(),
                })
                .collect(),
            configs: topic
                .configs
                .iter()
                .map(|config| {
                    (
                        config.name.to_string(),
                        config.value.as_ref().map(|value| value.to_string()),
                    )
                })
                .collect(),
            internal: false,
        })
        .collect();
    let outcomes = if topics.is_empty() {
        Vec::new()
    } else {
        admin(
            shard,
            AdminRequest::CreateTopics {
                topics,
                validate_only: body.validate_only,
            },
        )
        .await
    };
    let mut outcomes = outcomes.into_iter();
    let metadata = state::of(shard).metadata();
    let mut response = CreateTopicsResponse::default();
    // The writer answers one outcome per topic sent, in request order.
    for (topic, permitted) in body.topics.iter().zip(permitted) {
        let name = topic.name.0.as_str();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        if !permitted {
            result.error_code = error::TOPIC_AUTHORIZATION_FAILED;
            result.num_partitions = -1;
            result.replication_factor = -1;
            response.topics.push(result);
            continue;
        }
        match outcomes.next().filter(|outcome| outcome.name == name) {
            Some(outcome) => {
                result.error_code = outcome.error_code;
                result.error_message = outcome.error_message.clone().map(StrBytes::from_string);
                result.topic_id = uuid::Uuid::from_bytes(outcome.topic_id.0);
                if outcome.error_code == error::NONE {
                    result.num_partitions = outcome.num_partitions;
                    if let Some(created) = metadata.topic(name) {
                        result.replication_factor = created
                            .partitions
                            .first()
                            .map_or(1, |partition| partition.replicas.len() as i16);
                        result.configs = Some(
                            topic_config_entries(&shard.config, created)
                                .into_iter()
                                .map(|entry| {
                                    let mut config = CreatableTopicConfigs::default();
                                    config.name = StrBytes::from_static_str(entry.key);
                                    config.value = Some(StrBytes::from_string(entry.value));
                                    config.config_source = entry.source;
                                    config
                                })
                                .collect(),
                        );
                    }
                } else {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
            None => {
                result.error_code = error::REQUEST_TIMED_OUT;
                result.error_message =
                    Some(StrBytes::from_static_str("metadata writer did not answer"));
            }
        }
        response.topics.push(result);
    }
    request.respond(&response)
}
