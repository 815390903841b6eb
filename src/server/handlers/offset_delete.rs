//! OffsetDelete: removes committed offsets of partitions the group does not consume
//! (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::Request;
use crate::group::request::{DeleteOffsets, GroupCodes};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: OffsetDeleteRequest = request.decode()?;
    let group_id = body.group_id.0.to_string();
    // Kafka: Delete on the group (below) and Read on each topic.
    let readable = crate::server::authorize::topics_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        body.topics.iter().map(|topic| topic.name.0.as_str()),
    );
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .zip(&readable)
        .filter(|(_, readable)| **readable)
        .flat_map(|(topic, _)| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.0.to_string(), partition.partition_index))
        })
        .collect();
    let count = partitions.len();
    let call = DeleteOffsets {
        group_id,
        partitions,
    };
    let (code, codes) = match super::authorized_group_call(
        shard,
        &request.session,
        crate::security::acl::Operation::Delete,
        call,
    )
    .await
    {
        Ok(GroupCodes {
            error_code,
            item_codes,
        }) => (error_code, item_codes),
        Err(code) => (code, vec![code; count]),
    };
    let mut response = OffsetDeleteResponse::default();
    response.error_code = code;
    let mut codes = codes.into_iter();
    for (topic, readable) in body.topics.iter().zip(readable) {
        let mut topic_response = OffsetDeleteResponseTopic::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut partition_response = OffsetDeleteResponsePartition::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = if readable {
                codes.next().unwrap_or(code)
            } else {
                error::TOPIC_AUTHORIZATION_FAILED
            };
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}
