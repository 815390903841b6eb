//! ListOffsets: decodes, asks each partition's owner (`partition::read::list_offsets`: earliest,
//! latest = high watermark, max timestamp, by timestamp; the current leader epoch checked), and
//! answers with the offset and the leader epoch of the batch holding it (v4+).

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Request;
use crate::ids::{LeaderEpoch, TopicPartition};
use crate::partition::operation::{ListOffsetsItem, ListOffsetsItemResult};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::ListOffsets;
use crate::shard::{Shard, Split};

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: ListOffsetsRequest = request.decode()?;
    let mut results = Vec::new();
    let mut split: Split<ListOffsetsItem> = Split::new();
    for topic in &body.topics {
        let name = topic.name.0.as_str();
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
            results.push(ListOffsetsItemResult::error(
                error::UNKNOWN_TOPIC_OR_PARTITION,
            ));
            if !permitted {
                results[position] = ListOffsetsItemResult::error(error::TOPIC_AUTHORIZATION_FAILED);
                continue;
            }
            let Some(owner) = shard.owner_shard(name, partition.partition_index) else {
                results[position] = ListOffsetsItemResult::error(super::not_hosted_error(
                    shard,
                    name,
                    partition.partition_index,
                ));
                continue;
            };
            let item = ListOffsetsItem {
                topic_partition: TopicPartition {
                    topic: topic_name.clone(),
                    partition: partition.partition_index,
                },
                timestamp: partition.timestamp,
                current_leader_epoch: LeaderEpoch(partition.current_leader_epoch),
            };
            split.push(owner, position, item);
        }
    }
    let unreachable = ListOffsetsItemResult::error(error::NOT_LEADER_OR_FOLLOWER);
    let make = |items| ListOffsets { items };
    shard.scatter(split, &mut results, make, unreachable).await;
    let mut response = ListOffsetsResponse::default();
    let mut next = results.into_iter();
    for topic in &body.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partitions {
            let result = next.next().expect("one result per partition");
            let mut partition_response = ListOffsetsPartitionResponse::default();
            partition_response.partition_index = partition.partition_index;
            partition_response.error_code = result.error_code;
            partition_response.timestamp = result.timestamp;
            partition_response.offset = result.offset.0;
            if request.api_version >= 4 {
                partition_response.leader_epoch = result.leader_epoch.0;
            }
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}
