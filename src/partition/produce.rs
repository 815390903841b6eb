//! Owner-side Produce: validate each batch (size, magic 2, CRC32C, record count vs last offset
//! delta, exactly one batch), check idempotent sequences, assign offsets by rewriting base
//! offset and leader epoch in place, append, and — unless acks=0 — answer once the batch is
//! committed (on one node: fdatasynced).

use crate::ids::Offset;
use crate::partition::hosted::HostedPartitions;
use crate::partition::operation::{ProduceItem, ProduceItemResult};
use crate::partition::producer_state::{ProducerStates, SequenceCheck};
use crate::partition::{storage_error_code, Appended, Partition, TimestampType};
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

/// Longest a produce waits for a hand-over of its partition's leadership to finish before it
/// is refused (raft-rs gives a transfer one election timeout).
const HAND_OVER_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Validates and appends every item in arrival order, then waits for them to be committed
/// unless acks=0. One result per item, in item order.
pub async fn produce(
    hosted: &HostedPartitions,
    items: Vec<ProduceItem>,
    acks: i16,
    received: std::time::Instant,
) -> Vec<ProduceItemResult> {
    use crate::metrics::{produce_stage, ProduceStage};
    let started = std::time::Instant::now();
    produce_stage(ProduceStage::Queue, started.duration_since(received));
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
    let mut waits: Vec<(usize, Rc<Partition>, Wait)> = Vec::new();
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
        let topic = item.topic_partition.topic.clone();
        let bytes = item.records.len() as u64;
        let records = BatchHeader::parse(&item.records).map_or(0, |h| h.record_count.max(0) as u64);
        let (result, wait) = append_one(&partition, item, acks, hosted.is_space_low()).await;
        drop(ticket);
        if result.error_code == error::NONE {
            crate::metrics::produced(&topic, bytes, records);
        }
        if let Some(wait) = wait {
            waits.push((position, partition, wait));
        }
        results.push(result);
    }
    let appended = std::time::Instant::now();
    produce_stage(ProduceStage::Append, appended.duration_since(started));
    let results = wait_for_commits(results, waits, acks).await;
    if acks != 0 {
        produce_stage(ProduceStage::Durable, appended.elapsed());
    }
    for result in &results {
        crate::metrics::error_answered(PRODUCE_API_KEY, result.error_code);
    }
    results
}

/// Kafka's API key of Produce (errors are counted per partition under it).
const PRODUCE_API_KEY: i16 = 0;

/// Waits for the appended batches to commit (unless acks=0) and puts the failures in place.
async fn wait_for_commits(
    mut results: Vec<ProduceItemResult>,
    waits: Vec<(usize, Rc<Partition>, Wait)>,
    acks: i16,
) -> Vec<ProduceItemResult> {
    if acks != 0 && !waits.is_empty() {
        let committed = waits.iter().map(|(_, partition, wait)| {
            let partition = partition.clone();
            let wait = *wait;
            async move {
                match wait {
                    Wait::Local(end) => partition
                        .wait_committed(end)
                        .await
                        .map_err(|storage_error| storage_error_code(&storage_error)),
                    Wait::Replicated(appended) => match partition.writer() {
                        Some(writer) => writer.wait(appended, acks == 1).await,
                        None => Err(error::NOT_LEADER_OR_FOLLOWER),
                    },
                }
            }
        });
        let outcomes = crate::futures::join_all(committed.collect()).await;
        for ((position, _, _), outcome) in waits.iter().zip(outcomes) {
            if let Err(code) = outcome {
                results[*position] = ProduceItemResult::error(code);
            }
        }
    }
    results
}

/// What an appended batch waits for before it is answered.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// A one-replica partition: durable up to this end offset.
    Local(i64),
    /// A replicated partition: the Raft group commits the proposal.
    Replicated(Appended),
}

/// Validates and appends one batch (the caller holds the partition's turn). Returns the result
/// and, if something must become durable before answering, the end offset to wait for.
async fn append_one(
    partition: &Partition,
    item: ProduceItem,
    acks: i16,
    space_low: bool,
) -> (ProduceItemResult, Option<Wait>) {
    let config = partition.config();
    let records = &item.records[..];
    if partition.not_leader().is_some() {
        partition.wait_while_handing_over(HAND_OVER_WAIT).await;
    }
    if let Some((code, _leader)) = partition.not_leader() {
        // A replica that does not lead answers NOT_LEADER_OR_FOLLOWER before anything else:
        // its view of a producer's sequences is not the leader's, and an OUT_OF_ORDER_SEQUENCE
        // from it would make an idempotent client bump its epoch and resend what the leader
        // may already hold.
        return (ProduceItemResult::error(code), None);
    }
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
    if header.is_control() {
        // Control batches are the broker's own (Kafka refuses them from clients too): one
        // carrying a DeleteRecords would move the log start when committed.
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
                // A retry of a batch already in the log: answer it with its original offset,
                // once committed.
                let last_offset = base_offset + i64::from(header.last_offset_delta);
                let end = last_offset + 1;
                let wait = if partition.is_replicated() {
                    // Replicated: committed while this replica still leads in its term (a
                    // leader never truncates its own log, so the batch is the one recorded).
                    match partition.writer().and_then(|writer| writer.leader_term()) {
                        Some(term) => Wait::Replicated(Appended {
                            index: 0,
                            term,
                            base_offset,
                            last_offset,
                        }),
                        None => {
                            return (
                                ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER),
                                None,
                            );
                        }
                    }
                } else {
                    Wait::Local(end)
                };
                let result = ProduceItemResult {
                    error_code: error::NONE,
                    base_offset: Offset(base_offset),
                    log_append_time_ms: -1,
                    log_start_offset: Offset(partition.log_start_offset()),
                };
                return (result, Some(wait));
            }
            SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
                if partition.is_replicated() && partition.sequence_gap_held(header.producer_id) =>
            {
                log::debug!(
                    "{}: producer {} sequence {} after a gap: NOT_LEADER_OR_FOLLOWER (the missing batch may be on its way)",
                    item.topic_partition,
                    header.producer_id,
                    header.base_sequence
                );
                return (
                    ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER),
                    None,
                );
            }
            SequenceCheck::Reject(code) => {
                log::debug!(
                    "{}: producer {} epoch {} sequence {} refused with error {code} (leader: {:?})",
                    item.topic_partition,
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    partition.writer().map(|writer| writer.leader())
                );
                return (ProduceItemResult::error(code), None);
            }
        }
    }
    // The request's own buffer: offsets are assigned in place, nothing is copied.
    let mut owned = item.records;
    let mut log_append_time_ms = -1;
    if config.timestamp_type == TimestampType::LogAppendTime {
        log_append_time_ms = crate::storage::wall_clock_ms();
        batch::set_log_append_time(&mut owned, log_append_time_ms);
    }
    if partition.is_replicated() {
        let (result, wait) = propose_one(
            partition,
            item.topic_partition,
            owned,
            acks,
            item.min_insync_replicas,
            log_append_time_ms,
        )
        .await;
        if result.error_code == error::NONE && ProducerStates::is_idempotent(&header) {
            partition.sequence_taken_from(header.producer_id);
        }
        return (result, wait);
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
            (result, Some(Wait::Local(info.last_offset + 1)))
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

/// A replicated partition's append: proposed to its Raft group (this replica must lead),
/// answered once the group commits it (acks=all) or the leader has it fsynced (acks=1).
async fn propose_one(
    partition: &Partition,
    topic_partition: crate::ids::TopicPartition,
    batch: bytes::BytesMut,
    acks: i16,
    min_insync_replicas: u32,
    log_append_time_ms: i64,
) -> (ProduceItemResult, Option<Wait>) {
    let Some(writer) = partition.writer() else {
        return (
            ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER),
            None,
        );
    };
    if !writer.leader().0 {
        // A follower (or a deposed leader): the client refreshes metadata and goes to the
        // leader. Checked first: a follower's in-sync count means nothing.
        return (
            ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER),
            None,
        );
    }
    if acks == -1 && writer.in_sync() < min_insync_replicas {
        log::debug!(
            "{topic_partition}: {} in-sync replicas, min.insync.replicas {min_insync_replicas}: NOT_ENOUGH_REPLICAS",
            writer.in_sync()
        );
        return (ProduceItemResult::error(error::NOT_ENOUGH_REPLICAS), None);
    }
    match writer.propose(batch).await {
        Ok(appended) => {
            // The group's owner recorded the batch's sequences as it took the proposal.
            let result = ProduceItemResult {
                error_code: error::NONE,
                base_offset: Offset(appended.base_offset),
                log_append_time_ms,
                log_start_offset: Offset(partition.log_start_offset()),
            };
            (result, Some(Wait::Replicated(appended)))
        }
        Err((code, _leader)) => {
            log::debug!("{topic_partition}: proposal refused: {code:?}");
            (ProduceItemResult::error(code), None)
        }
    }
}
