//! OffsetCommit: by a group member (generation checked) or, with generation -1 and no member
//! id, by a standalone consumer of an empty group. Answered after the commit is durable.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::Request;
use crate::group::operations::OffsetCommitItem;
use crate::group::request::{CommitOffsets, MemberRef};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: OffsetCommitRequest = request.decode()?;
    let group_id = body.group_id.0.to_string();
    // Kafka: Read on the group first (refused: every partition says so), then Read on each
    // topic committed to.
    let group_allowed = crate::server::authorize::allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        crate::security::acl::ResourceType::Group,
        &group_id,
    );
    let readable = crate::server::authorize::topics_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        body.topics.iter().map(|topic| topic.name.0.as_str()),
    );
    let items: Vec<OffsetCommitItem> = body
        .topics
        .iter()
        .zip(&readable)
        .filter(|(_, readable)| **readable)
        .flat_map(|(topic, _)| {
            topic.partitions.iter().map(|partition| OffsetCommitItem {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let count = items.len();
    let call = CommitOffsets {
        group_id,
        member: MemberRef {
            member_id: body.member_id.to_string(),
            group_instance_id: body.group_instance_id.as_ref().map(|id| id.to_string()),
            generation: body.generation_id_or_member_epoch,
        },
        items,
    };
    let codes = if count == 0 || !group_allowed {
        Vec::new()
    } else {
        match super::authorized_group_call(
            shard,
            &request.session,
            crate::security::acl::Operation::Read,
            call,
        )
        .await
        {
            Ok(codes) => codes,
            Err(code) => vec![code; count],
        }
    };
    let mut codes = codes.into_iter();
    let mut response = OffsetCommitResponse::default();
    for (topic, readable) in body.topics.iter().zip(readable) {
        let mut topic_response = OffsetCommitResponseTopic::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut partition_response = OffsetCommitResponsePartition::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = if !group_allowed {
                crate::protocol::error::GROUP_AUTHORIZATION_FAILED
            } else if readable {
                codes.next().unwrap_or_default()
            } else {
                crate::protocol::error::TOPIC_AUTHORIZATION_FAILED
            };
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}
