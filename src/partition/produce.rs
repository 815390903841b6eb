//! Owner-side Produce: validate each batch (size, magic 2, CRC32C, record count vs last offset
//! delta, exactly one batch), check idempotent sequences, assign offsets by rewriting base
//! offset and leader epoch in place, append, and — unless acks=0 — answer once the batch is
//! committed (on one node: fdatasynced).

use crate::ids::Offset;
use crate::partition::hosted::HostedPartitions;
use crate::partition::operation::{ProduceItem, ProduceItemResult};
use crate::partition::producer_state::{ProducerStates, SequenceCheck};
use crate::partition::{storage_error_code, Partition, TimestampType};
use crate::protocol::batch::{self, BatchError, BatchHeader};
use crate::protocol::error::{self, ErrorCode};

use std::rc::Rc;

fn batch_error_code(error: &BatchError) -> ErrorCode {
    match error {
        BatchError::BadMagic { .. } => error::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        BatchError::BadRecordCount { .. } => error::INVALID_RECORD,
        BatchError::Truncated { .. } | BatchError::BadLength { .. } | BatchError::BadCrc { .. } => {
            error::CORRUPT_MESSAGE
        }
    }
}

/// Validates and appends every item in arrival order, then waits for them to be committed
/// unless acks=0. One result per item, in item order.
pub async fn produce(
    hosted: &HostedPartitions,
    items: Vec<ProduceItem>,
    acks: i16,
) -> Vec<ProduceItemResult> {
    // Turns are taken before the first await: appends to a partition happen in arrival order.
    let partitions: Vec<Option<Rc<Partition>>> = items
        .iter()
        .map(|item| hosted.get(&item.topic_partition.topic, item.topic_partition.partition))
        .collect();
    let tickets: Vec<_> = partitions
        .iter()
        .map(|partition| partition.as_ref().map(|p| p.append_order().take()))
        .collect();
    let mut results = Vec::with_capacity(items.len());
    let mut waits: Vec<(usize, Rc<Partition>, i64)> = Vec::new();
    for (position, ((item, partition), ticket)) in
        items.into_iter().zip(partitions).zip(tickets).enumerate()
    {
        let Some(partition) = partition else {
            results.push(ProduceItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        if let Some(ticket) = &ticket {
            ticket.turn().await;
        }
        let (result, wait) = append_one(&partition, item, hosted.is_space_low()).await;
        drop(ticket);
        if let Some(end) = wait {
            waits.push((position, partition, end));
        }
        results.push(result);
    }
    if acks != 0 && !waits.is_empty() {
        let committed = waits
            .iter()
            .map(|(_, partition, end)| partition.wait_committed(*end));
        let outcomes = crate::futures::join_all(committed.collect()).await;
        for ((position, _, _), outcome) in waits.iter().zip(outcomes) {
            if let Err(storage_error) = outcome {
                results[*position] = ProduceItemResult::error(storage_error_code(&storage_error));
            }
        }
    }
    results
}

/// Validates and appends one batch (the caller holds the partition's turn). Returns the result
/// and, if something must become durable before answering, the end offset to wait for.
async fn append_one(
    partition: &Partition,
    item: ProduceItem,
    space_low: bool,
) -> (ProduceItemResult, Option<i64>) {
    let config = partition.config();
    let records = &item.records[..];
    if space_low {
        crate::warn_limited!(
            "{}: refusing a batch: the data disk is below log.dir.free.bytes.min",
            item.topic_partition
        );
        return (ProduceItemResult::error(error::KAFKA_STORAGE_ERROR), None);
    }
    if records.len() > config.max_message_bytes as usize {
        return (ProduceItemResult::error(error::MESSAGE_TOO_LARGE), None);
    }
    let header = match BatchHeader::validate_for_append(records) {
        Ok(header) => header,
        Err(batch_error) => {
            log::debug!("{}: rejected batch: {batch_error}", item.topic_partition);
            return (
                ProduceItemResult::error(batch_error_code(&batch_error)),
                None,
            );
        }
    };
    if header.size_bytes() != records.len() {
        // Kafka: v3+ produce requests carry exactly one record batch per partition.
        return (ProduceItemResult::error(error::INVALID_RECORD), None);
    }
    if ProducerStates::is_idempotent(&header) {
        if header.is_transactional() {
            // No transaction coordinator yet: a transactional batch cannot be valid.
            return (ProduceItemResult::error(error::INVALID_RECORD), None);
        }
        let check = partition.producers().borrow().check(&header);
        match check {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate { base_offset } => {
                // A retry of a batch already in the log: answer it with its original offset.
                let end = base_offset + i64::from(header.last_offset_delta) + 1;
                let result = ProduceItemResult {
                    error_code: error::NONE,
                    base_offset: Offset(base_offset),
                    log_append_time_ms: -1,
                    log_start_offset: Offset(partition.log_start_offset()),
                };
                return (result, Some(end));
            }
            SequenceCheck::Reject(code) => return (ProduceItemResult::error(code), None),
        }
    }
    // The request's own buffer: offsets are assigned in place, nothing is copied.
    let mut owned = item.records;
    let mut log_append_time_ms = -1;
    if config.timestamp_type == TimestampType::LogAppendTime {
        log_append_time_ms = crate::storage::wall_clock_ms();
        batch::set_log_append_time(&mut owned, log_append_time_ms);
    }
    match partition.append_in_turn(owned).await {
        Ok(info) => {
            partition
                .producers()
                .borrow_mut()
                .record(&header, info.base_offset);
            let result = ProduceItemResult {
                error_code: error::NONE,
                base_offset: Offset(info.base_offset),
                log_append_time_ms,
                log_start_offset: Offset(info.log_start_offset),
            };
            (result, Some(info.last_offset + 1))
        }
        Err(storage_error) => {
            crate::warn_limited!("{}: append failed: {storage_error}", item.topic_partition);
            (
                ProduceItemResult::error(storage_error_code(&storage_error)),
                None,
            )
        }
    }
}
