//! Owner-side reads: Fetch (records below the high watermark, zero copy from the log's
//! buffers), the long-poll watch on the high watermark, ListOffsets and OffsetForLeaderEpoch.
//! Every request carrying a `current_leader_epoch` is checked against the partition's epoch
//! first (Kafka's FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::futures::select_first;
use crate::ids::{LeaderEpoch, Offset};
use crate::partition::hosted::HostedPartitions;
use crate::partition::operation::{
    FetchItem, FetchItemResult, ListOffsetsItem, ListOffsetsItemResult, OffsetForLeaderEpochItem,
    OffsetForLeaderEpochItemResult, LIST_OFFSETS_EARLIEST, LIST_OFFSETS_EARLIEST_LOCAL,
    LIST_OFFSETS_LATEST, LIST_OFFSETS_LATEST_TIERED, LIST_OFFSETS_MAX_TIMESTAMP,
};
use crate::partition::{storage_error_code, Partition};
use crate::protocol::error;
use crate::storage::StorageError;

/// Upper bound on a client's max_wait_ms: a fetch parks at most this long.
pub const FETCH_MAX_WAIT_MS_MAX: u32 = 60_000;

/// Reads each item now, at most `max_bytes` in all; once that is used up the remaining items
/// answer with no records (the connection's shard trims the total again).
pub async fn fetch(
    hosted: &HostedPartitions,
    items: &[FetchItem],
    max_bytes: u32,
) -> Vec<FetchItemResult> {
    let mut remaining = max_bytes;
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let tp = &item.topic_partition;
        let Some(partition) = hosted.get(&tp.topic, tp.partition) else {
            results.push(FetchItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let result = fetch_one(&partition, item, remaining).await;
        remaining = remaining.saturating_sub(result.records_bytes() as u32);
        results.push(result);
    }
    results
}

async fn fetch_one(partition: &Partition, item: &FetchItem, remaining: u32) -> FetchItemResult {
    if let Some((code, _leader)) = partition.not_leader_for_reads() {
        // Consumers fetch from the leader (no KIP-392 follower fetching yet).
        return FetchItemResult::error(code);
    }
    let epoch_check = partition.check_leader_epoch(item.current_leader_epoch);
    if epoch_check != error::NONE {
        return FetchItemResult::error(epoch_check);
    }
    let high_watermark = partition.high_watermark();
    let log_start_offset = partition.log_start_offset();
    let answer = |error_code, records| FetchItemResult {
        error_code,
        high_watermark: Offset(high_watermark),
        log_start_offset: Offset(log_start_offset),
        records,
        diverging_epoch: None,
    };
    let fetch_offset = item.fetch_offset.0;
    if item.last_fetched_epoch != LeaderEpoch::UNDEFINED {
        // KIP-320, as Kafka's leader checks it: the fetcher's last epoch must end at or past
        // where it fetches from, in this log as well; if not, it is told where the logs part.
        // End offsets are bounded by the high watermark, as OffsetForLeaderEpoch's are.
        let (epoch, end_offset) = partition
            .epoch_cache()
            .end_offset_for(item.last_fetched_epoch, high_watermark);
        if epoch.0 < item.last_fetched_epoch.0 || end_offset < fetch_offset {
            return FetchItemResult {
                diverging_epoch: Some((epoch.0, end_offset)),
                ..answer(error::NONE, Vec::new())
            };
        }
    }
    if partition.is_offline() && fetch_offset >= high_watermark {
        // Nothing more will arrive: tell the client instead of letting it long-poll.
        return answer(error::KAFKA_STORAGE_ERROR, Vec::new());
    }
    let budget = item.partition_max_bytes.min(remaining);
    if budget == 0 {
        return answer(error::NONE, Vec::new());
    }
    match partition.log().read(fetch_offset, budget).await {
        // A replicated log holds entries not yet committed: consumers never see them.
        Ok(records) if partition.is_replicated() => {
            answer(error::NONE, partition.below_high_watermark(records))
        }
        Ok(records) => answer(error::NONE, records),
        Err(storage_error) => {
            if !matches!(storage_error, StorageError::OffsetOutOfRange { .. }) {
                crate::warn_limited!("{}: read failed: {storage_error}", item.topic_partition);
            }
            answer(storage_error_code(&storage_error), Vec::new())
        }
    }
}

/// Resolves when any item's high watermark passes its fetch offset, or at the end of the wait.
pub async fn watch_high_watermark(
    hosted: &HostedPartitions,
    items: &[FetchItem],
    max_wait_ms: u32,
) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::with_capacity(items.len() + 1);
    for item in items {
        let tp = &item.topic_partition;
        if let Some(partition) = hosted.get(&tp.topic, tp.partition) {
            let offset = item.fetch_offset.0;
            waits.push(Box::pin(async move {
                partition.wait_for_high_watermark_above(offset).await;
            }));
        }
    }
    let wait_ms = max_wait_ms.min(FETCH_MAX_WAIT_MS_MAX);
    waits.push(Box::pin(glommio::timer::sleep(Duration::from_millis(
        u64::from(wait_ms),
    ))));
    select_first(waits).await;
}

pub async fn list_offsets(
    hosted: &HostedPartitions,
    items: &[ListOffsetsItem],
) -> Vec<ListOffsetsItemResult> {
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let tp = &item.topic_partition;
        let result = match hosted.get(&tp.topic, tp.partition) {
            None => ListOffsetsItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION),
            Some(partition) => list_offsets_one(&partition, item).await,
        };
        results.push(result);
    }
    results
}

/// Earliest (-2, and -4 "earliest local"), latest (-1, the high watermark: consumers never see
/// uncommitted data), max timestamp (-3), latest tiered (-5: none, nothing is tiered), and by
/// timestamp (the first record whose timestamp is at or after it; -1/-1 if none). Reads of the
/// durable prefix keep working on an offline partition, as Fetch does.
async fn list_offsets_one(partition: &Partition, item: &ListOffsetsItem) -> ListOffsetsItemResult {
    if let Some((code, _leader)) = partition.not_leader_for_reads() {
        return ListOffsetsItemResult::error(code);
    }
    let epoch_check = partition.check_leader_epoch(item.current_leader_epoch);
    if epoch_check != error::NONE {
        return ListOffsetsItemResult::error(epoch_check);
    }
    let high_watermark = partition.high_watermark();
    let found = |timestamp: i64, offset: i64| ListOffsetsItemResult {
        error_code: error::NONE,
        timestamp,
        offset: Offset(offset),
        leader_epoch: partition
            .epoch_cache()
            .epoch_of(offset)
            .unwrap_or(LeaderEpoch::UNDEFINED),
    };
    let none = ListOffsetsItemResult {
        error_code: error::NONE,
        ..ListOffsetsItemResult::error(error::NONE)
    };
    match item.timestamp {
        LIST_OFFSETS_LATEST => found(-1, high_watermark),
        LIST_OFFSETS_EARLIEST | LIST_OFFSETS_EARLIEST_LOCAL => {
            found(-1, partition.log_start_offset())
        }
        LIST_OFFSETS_MAX_TIMESTAMP => match partition.log().max_timestamp() {
            Some((timestamp, offset)) => found(timestamp, offset),
            None => none,
        },
        LIST_OFFSETS_LATEST_TIERED => none,
        timestamp if timestamp < 0 => ListOffsetsItemResult::error(error::INVALID_REQUEST),
        timestamp => match partition.log().offset_for_timestamp(timestamp).await {
            Ok(Some((offset, found_timestamp))) if offset < high_watermark => {
                found(found_timestamp, offset)
            }
            Ok(_) => none,
            Err(storage_error) => ListOffsetsItemResult::error(storage_error_code(&storage_error)),
        },
    }
}

/// OffsetForLeaderEpoch from the epoch cache (Kafka's rules, `leader_epoch.rs`). For the
/// current epoch the end offset is the high watermark: a consumer validating its position must
/// never be told about offsets it cannot read.
pub fn offsets_for_leader_epoch(
    hosted: &HostedPartitions,
    items: &[OffsetForLeaderEpochItem],
) -> Vec<OffsetForLeaderEpochItemResult> {
    items
        .iter()
        .map(|item| {
            let tp = &item.topic_partition;
            let Some(partition) = hosted.get(&tp.topic, tp.partition) else {
                return OffsetForLeaderEpochItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION);
            };
            if let Some((code, _leader)) = partition.not_leader_for_reads() {
                return OffsetForLeaderEpochItemResult::error(code);
            }
            let epoch_check = partition.check_leader_epoch(item.current_leader_epoch);
            if epoch_check != error::NONE {
                return OffsetForLeaderEpochItemResult::error(epoch_check);
            }
            let (leader_epoch, end_offset) = partition
                .epoch_cache()
                .end_offset_for(item.leader_epoch, partition.high_watermark());
            OffsetForLeaderEpochItemResult {
                error_code: error::NONE,
                leader_epoch,
                end_offset: Offset(end_offset),
            }
        })
        .collect()
}
