//! CreatePartitions: grows a topic; new partitions are placed round-robin over shards.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, outcome_for, Request};
use crate::cluster::admin::{AdminRequest, NewPartitions};
use crate::ids::NodeId;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: CreatePartitionsRequest = request.decode()?;
    let permitted = |name: &str| {
        crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Alter,
            crate::security::acl::ResourceType::Topic,
            name,
        )
    };
    let topics: Vec<NewPartitions> =
        body.topics
            .iter()
            .filter(|topic| permitted(topic.name.0.as_str()))
            .map(|topic| NewPartitions {
                topic: topic.name.0.to_string(),
                count: topic.count,
                // Some(empty) is how clients say "no assignment" as often as None.
                assignments: topic.assignments.as_ref().filter(|a| !a.is_empty()).map(
                    |assignments| {
                        assignments
                            .iter()
                            .map(|assignment| {
                                assignment
                                    .broker_ids
                                    .iter()
                                    .map(|id| NodeId(id.0))
                                    .collect()
                            })
                            .collect()
                    },
                ),
            })
            .collect();
    let outcomes = if topics.is_empty() {
        Vec::new()
    } else {
        admin(
            shard,
            AdminRequest::CreatePartitions {
                topics,
                validate_only: body.validate_only,
            },
        )
        .await
    };
    let mut response = CreatePartitionsResponse::default();
    for topic in &body.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        match outcome_for(&outcomes, topic.name.0.as_str()) {
            _ if !permitted(topic.name.0.as_str()) => {
                result.error_code = error::TOPIC_AUTHORIZATION_FAILED;
            }
            Some(outcome) => {
                result.error_code = outcome.error_code;
                result.error_message = outcome.error_message.clone().map(StrBytes::from_string);
            }
            None => result.error_code = error::REQUEST_TIMED_OUT,
        }
        response.results.push(result);
    }
    request.respond(&response)
}
