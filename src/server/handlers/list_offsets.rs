//! ListOffsets: earliest (-2, and -4 "earliest local"), latest (-1), max timestamp (-3), latest
//! tiered (-5: none, nothing is tiered), and
//! by timestamp (first offset whose batch holds a timestamp at or after it; -1/-1 if none).
//! Latest is the high watermark: consumers never see undurable data.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Request, Split};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::server::handlers::metadata::LEADER_EPOCH;
use crate::server::handlers::produce::storage_error_code;
use crate::shard::message::{
    ListOffsetsItem, ListOffsetsItemResult, ShardRequest, ShardResponse, LIST_OFFSETS_EARLIEST,
    LIST_OFFSETS_LATEST, LIST_OFFSETS_MAX_TIMESTAMP,
};
use crate::shard::pool::join_all;
use crate::shard::Shard;

/// KIP-405 "earliest local" (v8): without tiered storage, the same as earliest.
const LIST_OFFSETS_EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 "latest tiered" (v9): nothing is tiered, so there is no such offset (-1).
const LIST_OFFSETS_LATEST_TIERED: i64 = -5;

fn failed(error_code: i16) -> ListOffsetsItemResult {
    ListOffsetsItemResult {
        error_code,
        timestamp: -1,
        offset: -1,
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: ListOffsetsRequest = request.decode()?;
    let metadata = shard.metadata();
    let mut results = Vec::new();
    let mut split: Split<ListOffsetsItem> = Split::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            let position = results.len();
            results.push(failed(error::UNKNOWN_TOPIC_OR_PARTITION));
            let name = topic.name.0.as_str();
            let Some(owner) =
                metadata.owner_shard(name, partition.partition_index, shard.shard_count)
            else {
                continue;
            };
            let item = ListOffsetsItem {
                topic: name.to_string(),
                partition: partition.partition_index,
                timestamp: partition.timestamp,
            };
            split.push(owner, position, item);
        }
    }
    let calls = split.by_shard.into_iter().map(|(owner, items, positions)| {
        let shard = shard.clone();
        async move {
            let count = items.len();
            let answers = match shard.call(owner, ShardRequest::ListOffsets { items }).await {
                Ok(ShardResponse::ListOffsets(answers)) => answers,
                Ok(other) => panic!("list offsets answered with {other:?}"),
                Err(_) => vec![failed(error::NOT_LEADER_OR_FOLLOWER); count],
            };
            (positions, answers)
        }
    });
    for (positions, answers) in join_all(calls.collect()).await {
        for (position, answer) in positions.into_iter().zip(answers) {
            results[position] = answer;
        }
    }
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
            partition_response.offset = result.offset;
            if request.api_version >= 4 && result.offset >= 0 {
                partition_response.leader_epoch = LEADER_EPOCH;
            }
            topic_response.partitions.push(partition_response);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}

/// Owner side.
pub async fn on_list_offsets(
    shard: &Rc<Shard>,
    items: &[ListOffsetsItem],
) -> Vec<ListOffsetsItemResult> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let Some(log) = shard.partition(&item.topic, item.partition) else {
            results.push(failed(error::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        if log.is_offline() {
            results.push(failed(error::KAFKA_STORAGE_ERROR));
            continue;
        }
        let result = match item.timestamp {
            LIST_OFFSETS_LATEST => ListOffsetsItemResult {
                error_code: error::NONE,
                timestamp: -1,
                offset: log.high_watermark(),
            },
            LIST_OFFSETS_EARLIEST | LIST_OFFSETS_EARLIEST_LOCAL => ListOffsetsItemResult {
                error_code: error::NONE,
                timestamp: -1,
                offset: log.log_start_offset(),
            },
            LIST_OFFSETS_MAX_TIMESTAMP => match log.max_timestamp() {
                Some((timestamp, offset)) => ListOffsetsItemResult {
                    error_code: error::NONE,
                    timestamp,
                    offset,
                },
                None => ListOffsetsItemResult {
                    error_code: error::NONE,
                    timestamp: -1,
                    offset: -1,
                },
            },
            LIST_OFFSETS_LATEST_TIERED => ListOffsetsItemResult {
                error_code: error::NONE,
                timestamp: -1,
                offset: -1,
            },
            timestamp if timestamp < 0 => failed(error::INVALID_REQUEST),
            timestamp => match log.offset_for_timestamp(timestamp).await {
                Ok(Some((offset, found))) => ListOffsetsItemResult {
                    error_code: error::NONE,
                    timestamp: found,
                    offset,
                },
                Ok(None) => ListOffsetsItemResult {
                    error_code: error::NONE,
                    timestamp: -1,
                    offset: -1,
                },
                Err(storage_error) => failed(storage_error_code(&storage_error)),
            },
        };
        results.push(result);
    }
    results
}
