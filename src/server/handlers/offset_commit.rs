//! OffsetCommit: by a group member (generation checked) or, with generation -1 and no member
//! id, by a standalone consumer of an empty group. Answered after the commit is durable.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{group_call, Request};
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
    let items: Vec<OffsetCommitItem> = body
        .topics
        .iter()
        .flat_map(|topic| {
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
    let codes = match group_call(shard, call).await {
        Ok(codes) => codes,
        Err(code) => vec![code; count],
    };
    let mut codes = codes.into_iter();
    let mut response = OffsetCommitResponse::default();
    for topic in &body.topics {
        let mut topic_response = OffsetCommitResponseTopic::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut partition_response = OffsetCommitResponsePartition::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = codes.next().unwrap_or_default();
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}
