//! The items and results of owner-side partition operations: what a handler sends to the shard
//! that owns a partition (over the mesh, or directly when it is local) and what comes back, in
//! item order. Record bytes travel as `Bytes`/`BytesMut` (no re-encoding); Kafka outcomes are
//! error codes, never `Err`s.

use bytes::{Bytes, BytesMut};

use crate::ids::{LeaderEpoch, Offset, TopicPartition};
use crate::protocol::error::ErrorCode;

#[derive(Debug)]
pub struct ProduceItem {
    pub topic_partition: TopicPartition,
    /// The batch, a writable view of the request frame (offsets are assigned in place).
    pub records: BytesMut,
    /// `min.insync.replicas` of the topic: an acks=all produce to a replicated partition with
    /// fewer in-sync replicas is refused with NOT_ENOUGH_REPLICAS.
    pub min_insync_replicas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceItemResult {
    pub error_code: ErrorCode,
    pub base_offset: Offset,
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
}

impl ProduceItemResult {
    pub fn error(error_code: ErrorCode) -> ProduceItemResult {
        ProduceItemResult {
            error_code,
            base_offset: Offset::UNDEFINED,
            log_append_time_ms: -1,
            log_start_offset: Offset::UNDEFINED,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FetchItem {
    pub topic_partition: TopicPartition,
    pub fetch_offset: Offset,
    pub partition_max_bytes: u32,
    /// The client's view of the leader epoch (Fetch v9+), checked; -1 skips the check.
    pub current_leader_epoch: LeaderEpoch,
    /// The epoch of the last batch the fetcher holds (Fetch v12+, KIP-320), -1 if none: its
    /// log is checked against this one's for divergence.
    pub last_fetched_epoch: LeaderEpoch,
}

#[derive(Debug, Clone)]
pub struct FetchItemResult {
    pub error_code: ErrorCode,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// Whole record batches, as stored; zero copy from the log buffers.
    pub records: Vec<Bytes>,
    /// (epoch, end offset) where the fetcher's log leaves this one's (Fetch v12+): it must
    /// truncate to that end offset and fetch again; no records come with it.
    pub diverging_epoch: Option<(i32, i64)>,
}

impl FetchItemResult {
    pub fn error(error_code: ErrorCode) -> FetchItemResult {
        FetchItemResult {
            error_code,
            high_watermark: Offset::UNDEFINED,
            log_start_offset: Offset::UNDEFINED,
            records: Vec::new(),
            diverging_epoch: None,
        }
    }

    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// ListOffsets special timestamps (Kafka's).
pub const LIST_OFFSETS_LATEST: i64 = -1;
pub const LIST_OFFSETS_EARLIEST: i64 = -2;
pub const LIST_OFFSETS_MAX_TIMESTAMP: i64 = -3;
/// KIP-405 "earliest local" (v8): without tiered storage, the same as earliest.
pub const LIST_OFFSETS_EARLIEST_LOCAL: i64 = -4;
/// KIP-1005 "latest tiered" (v9): nothing is tiered, so there is no such offset (-1).
pub const LIST_OFFSETS_LATEST_TIERED: i64 = -5;

#[derive(Debug, Clone)]
pub struct ListOffsetsItem {
    pub topic_partition: TopicPartition,
    pub timestamp: i64,
    /// ListOffsets v4+: checked like Fetch's; -1 skips the check.
    pub current_leader_epoch: LeaderEpoch,
}

#[derive(Debug, Clone, Copy)]
pub struct ListOffsetsItemResult {
    pub error_code: ErrorCode,
    pub timestamp: i64,
    pub offset: Offset,
    /// The epoch of the batch holding `offset` (the current epoch for the log end).
    pub leader_epoch: LeaderEpoch,
}

impl ListOffsetsItemResult {
    pub fn error(error_code: ErrorCode) -> ListOffsetsItemResult {
        ListOffsetsItemResult {
            error_code,
            timestamp: -1,
            offset: Offset::UNDEFINED,
            leader_epoch: LeaderEpoch::UNDEFINED,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeleteRecordsItem {
    pub topic_partition: TopicPartition,
    /// The new log start offset; -1 for the high watermark.
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRecordsItemResult {
    pub error_code: ErrorCode,
    /// The log start offset after the deletion (-1 with an error).
    pub low_watermark: i64,
}

impl DeleteRecordsItemResult {
    pub fn error(error_code: ErrorCode) -> DeleteRecordsItemResult {
        DeleteRecordsItemResult {
            error_code,
            low_watermark: -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OffsetForLeaderEpochItem {
    pub topic_partition: TopicPartition,
    /// OffsetForLeaderEpoch v2+: checked; -1 skips the check.
    pub current_leader_epoch: LeaderEpoch,
    pub leader_epoch: LeaderEpoch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetForLeaderEpochItemResult {
    pub error_code: ErrorCode,
    pub leader_epoch: LeaderEpoch,
    pub end_offset: Offset,
}

impl OffsetForLeaderEpochItemResult {
    pub fn error(error_code: ErrorCode) -> OffsetForLeaderEpochItemResult {
        OffsetForLeaderEpochItemResult {
            error_code,
            leader_epoch: LeaderEpoch::UNDEFINED,
            end_offset: Offset::UNDEFINED,
        }
    }
}

/// One hosted replica as DescribeLogDirs reports it.
#[derive(Debug, Clone)]
pub struct LogDirReplica {
    pub topic_partition: TopicPartition,
    /// Bytes of its segments (appended batches not yet on disk included).
    pub size_bytes: u64,
    /// How far its log end is behind the high watermark it knows (Kafka's `offset_lag` of a
    /// current replica: 0 for a leader or a caught-up follower).
    pub offset_lag: i64,
}

/// The idempotent producers of one partition (DescribeProducers), answered by its leader.
#[derive(Debug, Clone)]
pub struct DescribeProducersItemResult {
    pub error_code: ErrorCode,
    pub producers: Vec<crate::partition::producer_state::ProducerSnapshot>,
}

impl DescribeProducersItemResult {
    pub fn error(error_code: ErrorCode) -> DescribeProducersItemResult {
        DescribeProducersItemResult {
            error_code,
            producers: Vec::new(),
        }
    }
}
