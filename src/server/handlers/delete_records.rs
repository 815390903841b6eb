//! DeleteRecords: decodes, asks each partition's owner (`partition::delete_records`: the leader
//! moves the log start offset, through its Raft group when replicated), and answers each
//! partition's new log start (`low_watermark`). Internal topics are refused as Kafka refuses
//! them (INVALID_TOPIC_EXCEPTION); a partition led elsewhere is NOT_LEADER_OR_FOLLOWER (clients
//! send DeleteRecords to each partition's leader).

use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::Request;
use crate::cluster::metadata::is_internal_topic;
use crate::ids::TopicPartition;
use crate::partition::operation::{DeleteRecordsItem, DeleteRecordsItemResult};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::DeleteRecords;
use crate::shard::{Shard, Split};

/// The longest a request waits for its deletions to commit.
const WAIT_MAX: Duration = Duration::from_secs(60);

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DeleteRecordsRequest = request.decode()?;
    let timeout = Duration::from_millis(body.timeout_ms.max(0) as u64).min(WAIT_MAX);
    let mut results = Vec::new();
    let mut split: Split<DeleteRecordsItem> = Split::new();
    for topic in &body.topics {
        let name = topic.name.0.as_str();
        let topic_name: std::sync::Arc<str> = name.into();
        let permitted = crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Delete,
            crate::security::acl::ResourceType::Topic,
            name,
        );
        for partition in &topic.partitions {
            let position = results.len();
            results.push(DeleteRecordsItemResult::error(
                error::UNKNOWN_TOPIC_OR_PARTITION,
            ));
            if !permitted {
                results[position] =
                    DeleteRecordsItemResult::error(error::TOPIC_AUTHORIZATION_FAILED);
                continue;
            }
            if is_internal_topic(name) {
                results[position] = DeleteRecordsItemResult::error(error::INVALID_TOPIC_EXCEPTION);
                continue;
            }
            let Some(owner) = shard.owner_shard(name, partition.partition_index) else {
                results[position] = DeleteRecordsItemResult::error(super::not_hosted_error(
                    shard,
                    name,
                    partition.partition_index,
                ));
                continue;
            };
            let item = DeleteRecordsItem {
                topic_partition: TopicPartition {
                    topic: topic_name.clone(),
                    partition: partition.partition_index,
                },
                offset: partition.offset,
            };
            split.push(owner, position, item);
        }
    }
    let unreachable = DeleteRecordsItemResult::error(error::NOT_LEADER_OR_FOLLOWER);
    let make = |items| DeleteRecords { items, timeout };
    shard.scatter(split, &mut results, make, unreachable).await;
    let mut response = DeleteRecordsResponse::default();
    let mut next = results.into_iter();
    for topic in &body.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        for partition in &topic.partitions {
            let result = next.next().expect("one result per partition");
            let mut partition_result = DeleteRecordsPartitionResult::default();
            partition_result.partition_index = partition.partition_index;
            partition_result.error_code = result.error_code;
            partition_result.low_watermark = result.low_watermark;
            topic_result.partitions.push(partition_result);
        }
        response.topics.push(topic_result);
    }
    request.respond(&response)
}
