//! DeleteRecords on the partition's owner: moves the log start offset. A replicated partition's
//! leader proposes a control batch (`CONTROL_DELETE_RECORDS`) to its Raft group and every
//! replica applies it when it commits (`replication::replica`), in log order, so no later leader
//! can serve the deleted records; a one-replica partition moves it directly. Either way the new
//! start is persisted (`log-start-offset`) before anyone sees it. Kafka's rules: -1 means the
//! high watermark; above the high watermark is OFFSET_OUT_OF_RANGE; at or below the current
//! start changes nothing.

use std::time::Duration;

use bytes::BytesMut;

use super::hosted::HostedPartitions;
use super::operation::{DeleteRecordsItem, DeleteRecordsItemResult};
use super::{storage_error_code, Partition};
use crate::futures::LocalFuture;
use crate::protocol::batch::{encode_control_batch, CONTROL_DELETE_RECORDS};
use crate::protocol::error::{self, ErrorCode};

pub async fn delete_records(
    hosted: &HostedPartitions,
    items: Vec<DeleteRecordsItem>,
    timeout: Duration,
) -> Vec<DeleteRecordsItemResult> {
    let each = items.into_iter().map(|item| {
        let partition = hosted.get(&item.topic_partition.topic, item.topic_partition.partition);
        async move {
            match partition {
                Some(partition) => delete_one(&partition, item.offset, timeout).await,
                None => DeleteRecordsItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION),
            }
        }
    });
    let results = crate::futures::join_all(each.collect()).await;
    for result in &results {
        if result.error_code != error::NONE {
            crate::metrics::error_answered(
                kafka_protocol::messages::ApiKey::DeleteRecords as i16,
                result.error_code,
            );
        }
    }
    results
}

async fn delete_one(
    partition: &Partition,
    offset: i64,
    timeout: Duration,
) -> DeleteRecordsItemResult {
    if let Some((code, _leader)) = partition.not_leader_for_reads() {
        return DeleteRecordsItemResult::error(code);
    }
    if partition.is_offline() {
        return DeleteRecordsItemResult::error(error::KAFKA_STORAGE_ERROR);
    }
    let high_watermark = partition.high_watermark();
    let target = if offset == -1 { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return DeleteRecordsItemResult::error(error::OFFSET_OUT_OF_RANGE);
    }
    if target > partition.log_start_offset() {
        if partition.is_replicated() {
            let batch = encode_control_batch(
                CONTROL_DELETE_RECORDS,
                &target.to_be_bytes(),
                crate::storage::wall_clock_ms(),
            );
            // Only the wait for the commit is timed: the local move below is never cut
            // between persisting the new start and showing it.
            let committed: Vec<LocalFuture<'_, Result<(), ErrorCode>>> = vec![
                Box::pin(async {
                    partition
                        .append_and_commit(BytesMut::from(&batch[..]))
                        .await
                        .map(|_| ())
                }),
                Box::pin(async move {
                    glommio::timer::sleep(timeout).await;
                    // The proposal may still commit, as in Kafka.
                    Err(error::REQUEST_TIMED_OUT)
                }),
            ];
            let outcome = crate::futures::select_first(committed)
                .await
                .expect("two futures");
            if let Err(code) = outcome {
                return DeleteRecordsItemResult::error(code);
            }
        }
        // Replicated: committed, so this replica applies it too (`replica::finish_ready`);
        // moving it here as well answers without waiting for that, and is the same move.
        if let Err(storage_error) = partition.advance_log_start(target).await {
            return DeleteRecordsItemResult::error(storage_error_code(&storage_error));
        }
    }
    DeleteRecordsItemResult {
        error_code: error::NONE,
        low_watermark: partition.log_start_offset(),
    }
}
