//! OffsetForLeaderEpoch (API 23, KIP-101/320): for each partition, the largest leader epoch at
//! or below the one asked for and the offset where the next epoch starts, from the partition's
//! epoch cache (`partition::leader_epoch`). Clients use it to validate their position after a
//! leader change. `current_leader_epoch` is checked first (FENCED_LEADER_EPOCH /
//! UNKNOWN_LEADER_EPOCH). For the current epoch the end offset is the high watermark, not the
//! log end offset as Kafka answers: a consumer's position never passes the high watermark, so
//! the check it makes is the same, and it is never told of offsets it cannot read.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Request;
use crate::ids::{LeaderEpoch, TopicPartition};
use crate::partition::operation::{OffsetForLeaderEpochItem, OffsetForLeaderEpochItemResult};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::OffsetsForLeaderEpoch;
use crate::shard::{Shard, Split};

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: OffsetForLeaderEpochRequest = request.decode()?;
    let mut results = Vec::new();
    let mut split: Split<OffsetForLeaderEpochItem> = Split::new();
    for topic in &body.topics {
        let name = topic.topic.0.as_str();
        let topic_name: std::sync::Arc<str> = name.into();
        let permitted = crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Describe,
            crate::security::acl::ResourceType::Topic,
            name,
        );
        for partition in &topic.partitions {
            let position = results.len();
            results.push(OffsetForLeaderEpochItemResult::error(
                error::UNKNOWN_TOPIC_OR_PARTITION,
            ));
            if !permitted {
                results[position] =
                    OffsetForLeaderEpochItemResult::error(error::TOPIC_AUTHORIZATION_FAILED);
                continue;
            }
            let Some(owner) = shard.owner_shard(name, partition.partition) else {
                results[position] = OffsetForLeaderEpochItemResult::error(super::not_hosted_error(
                    shard,
                    name,
                    partition.partition,
                ));
                continue;
            };
            let item = OffsetForLeaderEpochItem {
                topic_partition: TopicPartition {
                    topic: topic_name.clone(),
                    partition: partition.partition,
                },
                current_leader_epoch: LeaderEpoch(partition.current_leader_epoch),
                leader_epoch: LeaderEpoch(partition.leader_epoch),
            };
            split.push(owner, position, item);
        }
    }
    let unreachable = OffsetForLeaderEpochItemResult::error(error::NOT_LEADER_OR_FOLLOWER);
    let make = |items| OffsetsForLeaderEpoch { items };
    shard.scatter(split, &mut results, make, unreachable).await;
    let mut response = OffsetForLeaderEpochResponse::default();
    let mut next = results.into_iter();
    for topic in &body.topics {
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic.clone();
        for partition in &topic.partitions {
            let result = next.next().expect("one result per partition");
            let mut answer = EpochEndOffset::default();
            answer.partition = partition.partition;
            answer.error_code = result.error_code;
            answer.leader_epoch = result.leader_epoch.0;
            answer.end_offset = result.end_offset.0;
            topic_result.partitions.push(answer);
        }
        response.topics.push(topic_result);
    }
    request.respond(&response)
}
