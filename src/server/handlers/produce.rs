//! Produce. The connection's shard decodes the request, groups partitions by owning shard,
//! dispatches the groups concurrently and reassembles the answers in request order. The owner
//! validates each batch (size, magic 2, CRC32C, record count vs last offset delta, exactly one
//! batch), assigns offsets by rewriting base offset and leader epoch, appends, and — for acks=1
//! and acks=all — answers only once the batch is on disk (group-committed fdatasync).
//! acks=0 gets no response at all.

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{auto_create_topics, Request, Split};
use crate::cluster::metadata::TimestampType;
use crate::protocol::batch::{self, BatchError, BatchHeader};
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::protocol::produce_request;
use crate::server::handlers::metadata::LEADER_EPOCH;
use crate::shard::append_order::Ticket;
use crate::shard::message::ShardResponse;
use crate::shard::message::{ProduceItem, ProduceItemResult, ShardRequest};
use crate::shard::pool::{join_all, now_ms};
use crate::shard::Shard;
use crate::storage::producer_state::{ProducerStates, SequenceCheck};
use crate::storage::StorageError;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
    frame: BytesMut,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body = produce_request::decode(frame, request.api_version)?;
    let ticket = request.produce_ticket.take();
    if let Some(ticket) = &ticket {
        ticket.turn().await;
    }
    let acks = body.acks;
    let valid_acks = matches!(acks, -1..=1);
    if valid_acks && shard.config.auto_create_topics_enable {
        let names = body.topics.iter().map(|topic| topic.name.clone());
        auto_create_topics(shard, names).await;
    }
    let metadata = shard.metadata();
    // (topic, partition indexes) in request order, for the response.
    let layout: Vec<(String, Vec<i32>)> = body
        .topics
        .iter()
        .map(|topic| {
            let indexes = topic.partitions.iter().map(|p| p.index).collect();
            (topic.name.clone(), indexes)
        })
        .collect();
    let mut results: Vec<ProduceItemResult> = Vec::new();
    let mut split: Split<ProduceItem> = Split::new();
    for topic in body.topics {
        let name = topic.name.as_str();
        for partition in topic.partitions {
            let position = results.len();
            results.push(ProduceItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            if !valid_acks {
                results[position] = ProduceItemResult::error(error::INVALID_REQUIRED_ACKS);
                continue;
            }
            if crate::cluster::metadata::is_internal_topic(name) {
                // Kafka: clients cannot append to internal topics.
                results[position] = ProduceItemResult::error(error::INVALID_TOPIC_EXCEPTION);
                continue;
            }
            let Some(owner) = metadata.owner_shard(name, partition.index, shard.shard_count) else {
                continue;
            };
            let Some(records) = partition.records else {
                results[position] = ProduceItemResult::error(error::CORRUPT_MESSAGE);
                continue;
            };
            let item = ProduceItem {
                topic: name.to_string(),
                partition: partition.index,
                records,
            };
            split.push(owner, position, item);
        }
    }
    // Dispatch in order while holding this connection's turn: each owner receives this
    // request's appends before those of the connection's next produce request.
    let mut dispatched = Vec::with_capacity(split.by_shard.len());
    for (owner, items, positions) in split.by_shard {
        let count = items.len();
        let request = ShardRequest::Produce { items, acks };
        let answer = if owner == shard.id {
            let local = shard.clone();
            Dispatched::Local(
                glommio::spawn_local(async move { local.on_request(request).await }).detach(),
            )
        } else {
            match shard.mesh.send(owner, request).await {
                Ok(pending) => Dispatched::Remote(pending),
                Err(_) => Dispatched::Failed,
            }
        };
        dispatched.push((answer, positions, count));
    }
    drop(ticket);
    let answers = dispatched
        .into_iter()
        .map(|(answer, positions, count)| async move {
            let response = match answer {
                Dispatched::Local(task) => task.await.ok_or(()),
                Dispatched::Remote(pending) => pending.answer().await.map_err(|_| ()),
                Dispatched::Failed => Err(()),
            };
            let answers = match response {
                Ok(ShardResponse::Produce(answers)) => answers,
                Ok(other) => panic!("produce answered with {other:?}"),
                Err(()) => vec![ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER); count],
            };
            assert_eq!(answers.len(), positions.len(), "one answer per item");
            (positions, answers)
        });
    for (positions, answers) in join_all(answers.collect()).await {
        for (position, answer) in positions.into_iter().zip(answers) {
            results[position] = answer;
        }
    }
    if acks == 0 {
        return Ok(None);
    }
    let mut response = ProduceResponse::default();
    let mut next = results.into_iter();
    for (name, indexes) in layout {
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = TopicName(StrBytes::from_string(name));
        for index in indexes {
            let result = next.next().expect("one result per partition");
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = index;
            partition_response.error_code = result.error_code;
            partition_response.base_offset = result.base_offset;
            partition_response.log_append_time_ms = result.log_append_time_ms;
            partition_response.log_start_offset = result.log_start_offset;
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    request.respond(&response)
}

/// Where one shard's share of a produce request went.
enum Dispatched {
    Local(glommio::task::JoinHandle<ShardResponse>),
    Remote(crate::shard::mesh::PendingAnswer),
    Failed,
}

fn batch_error_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::BadMagic { .. } => error::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::BadRecordCount { .. } => error::INVALID_RECORD,
        BatchError::Truncated { .. } | BatchError::BadLength { .. } | BatchError::BadCrc { .. } => {
            error::CORRUPT_MESSAGE
        }
    }
}

/// Owner side: validate and append every item, then wait for durability unless acks=0.
pub async fn on_produce(
    shard: &Rc<Shard>,
    items: Vec<ProduceItem>,
    acks: i16,
) -> Vec<ProduceItemResult> {
    // Turns are taken before the first await: appends to a partition happen in arrival order.
    let tickets: Vec<Option<Ticket>> = items
        .iter()
        .map(|item| {
            shard
                .append_order(&item.topic, item.partition)
                .map(|order| order.take())
        })
        .collect();
    let mut results = Vec::with_capacity(items.len());
    let mut waits = Vec::new();
    for ((position, item), ticket) in items.into_iter().enumerate().zip(tickets) {
        if let Some(ticket) = &ticket {
            ticket.turn().await;
        }
        let Some(log) = shard.partition(&item.topic, item.partition) else {
            results.push(ProduceItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let Some(topic_config) = shard.topic_config(&item.topic) else {
            results.push(ProduceItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let records = &item.records[..];
        if records.len() > topic_config.max_message_bytes as usize {
            results.push(ProduceItemResult::error(error::MESSAGE_TOO_LARGE));
            continue;
        }
        let header = match BatchHeader::validate_for_append(records) {
            Ok(header) => header,
            Err(batch_error) => {
                log::debug!(
                    "{}-{}: rejected batch: {batch_error}",
                    item.topic,
                    item.partition
                );
                results.push(ProduceItemResult::error(batch_error_code(&batch_error)));
                continue;
            }
        };
        if header.size_bytes() != records.len() {
            // Kafka: v3+ produce requests carry exactly one record batch per partition.
            results.push(ProduceItemResult::error(error::INVALID_RECORD));
            continue;
        }
        let state = shard.partition_state(&item.topic, item.partition);
        if ProducerStates::is_idempotent(&header) {
            if header.is_transactional() {
                // No transaction coordinator yet: a transactional batch cannot be valid.
                results.push(ProduceItemResult::error(error::INVALID_RECORD));
                continue;
            }
            let check = state
                .as_ref()
                .map(|state| state.producers.borrow().check(&header))
                .unwrap_or(SequenceCheck::Append);
            match check {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset } => {
                    // A retry of a batch already in the log: answer with its original offset.
                    let end = base_offset + i64::from(header.last_offset_delta) + 1;
                    waits.push((position, log.clone(), end));
                    results.push(ProduceItemResult {
                        error_code: error::NONE,
                        base_offset,
                        log_append_time_ms: -1,
                        log_start_offset: log.log_start_offset(),
                    });
                    continue;
                }
                SequenceCheck::Reject(code) => {
                    results.push(ProduceItemResult::error(code));
                    continue;
                }
            }
        }
        // The request's own buffer: offsets are assigned in place, nothing is copied.
        let mut owned = item.records;
        let mut log_append_time_ms = -1;
        if topic_config.message_timestamp_type == TimestampType::LogAppendTime {
            log_append_time_ms = now_ms();
            batch::set_log_append_time(&mut owned, log_append_time_ms);
        }
        match append_with_backpressure(&log, owned).await {
            Ok(info) => {
                if let Some(state) = &state {
                    state
                        .producers
                        .borrow_mut()
                        .record(&header, info.base_offset);
                }
                waits.push((position, log.clone(), info.last_offset + 1));
                results.push(ProduceItemResult {
                    error_code: error::NONE,
                    base_offset: info.base_offset,
                    log_append_time_ms,
                    log_start_offset: info.log_start_offset,
                });
            }
            Err(storage_error) => {
                log::warn!(
                    "{}-{}: append failed: {storage_error}",
                    item.topic,
                    item.partition
                );
                results.push(ProduceItemResult::error(storage_error_code(&storage_error)));
            }
        }
    }
    if acks != 0 && !waits.is_empty() {
        let durable = waits.iter().map(|(_, log, end)| log.wait_durable(*end));
        let outcomes = join_all(durable.collect()).await;
        for ((position, _, _), outcome) in waits.iter().zip(outcomes) {
            if let Err(storage_error) = outcome {
                results[*position] = ProduceItemResult::error(storage_error_code(&storage_error));
            }
        }
    }
    results
}

/// Write-behind buffers of a partition full (disk slower than producers): wait for the flush in
/// flight, then try again, so producers slow down instead of seeing errors.
async fn append_with_backpressure(
    log: &crate::storage::PartitionLog,
    batch: BytesMut,
) -> Result<crate::storage::AppendInfo, StorageError> {
    /// Flushes to wait for before giving up with a retriable error.
    const APPEND_ATTEMPTS_MAX: u32 = 8;
    let batch_bytes = batch.len() as u64;
    for _ in 0..APPEND_ATTEMPTS_MAX {
        if log.pending_bytes() + batch_bytes <= crate::storage::WRITE_BEHIND_BYTES_MAX {
            break;
        }
        log.wait_durable(log.log_end_offset()).await?;
    }
    log.append(batch, LEADER_EPOCH)
}

pub fn storage_error_code(storage_error: &StorageError) -> ErrorCode {
    match storage_error {
        StorageError::OffsetOutOfRange { .. } => error::OFFSET_OUT_OF_RANGE,
        StorageError::InvalidBatch(_) | StorageError::BatchLengthMismatch { .. } => {
            error::CORRUPT_MESSAGE
        }
        StorageError::BatchTooLarge { .. } => error::MESSAGE_TOO_LARGE,
        StorageError::WriteBehindFull { .. } => error::REQUEST_TIMED_OUT,
        _ => error::KAFKA_STORAGE_ERROR,
    }
}
