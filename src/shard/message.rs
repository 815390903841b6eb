//! Typed messages between shards. A request names partitions by (topic, partition) and carries
//! record bytes as `Bytes` (no re-encoding); the owning shard answers with per-item results in
//! the order of the items it was sent. Kafka outcomes travel as error codes, not `Err`s.

use bytes::Bytes;

use crate::cluster::metadata::ClusterMetadata;
use crate::group::{GroupAnswer, GroupCall};
use crate::protocol::error::ErrorCode;

#[derive(Debug)]
pub struct ProduceItem {
    pub topic: String,
    pub partition: i32,
    /// The batch, a writable view of the request frame (offsets are assigned in place).
    pub records: bytes::BytesMut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceItemResult {
    pub error_code: ErrorCode,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl ProduceItemResult {
    pub fn error(error_code: ErrorCode) -> ProduceItemResult {
        ProduceItemResult {
            error_code,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FetchItem {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: u32,
}

#[derive(Debug, Clone)]
pub struct FetchItemResult {
    pub error_code: ErrorCode,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole record batches, as stored; zero copy from the log buffers.
    pub records: Vec<Bytes>,
}

impl FetchItemResult {
    pub fn error(error_code: ErrorCode) -> FetchItemResult {
        FetchItemResult {
            error_code,
            high_watermark: -1,
            log_start_offset: -1,
            records: Vec::new(),
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

#[derive(Debug, Clone)]
pub struct ListOffsetsItem {
    pub topic: String,
    pub partition: i32,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct ListOffsetsItemResult {
    pub error_code: ErrorCode,
    pub timestamp: i64,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: broker default (`num.partitions`).
    pub num_partitions: i32,
    /// -1: broker default (1). Anything but 1 is INVALID_REPLICATION_FACTOR on one node.
    pub replication_factor: i16,
    pub has_assignments: bool,
    pub configs: Vec<(String, Option<String>)>,
    /// Created by the broker itself (`__consumer_offsets`); clients cannot create those names.
    pub internal: bool,
}

#[derive(Debug, Clone)]
pub struct TopicOutcome {
    pub name: String,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    pub topic_id: [u8; 16],
    pub num_partitions: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOperation {
    Set,
    Delete,
    Append,
    Subtract,
}

#[derive(Debug, Clone)]
pub struct ConfigChange {
    pub key: String,
    pub value: Option<String>,
    pub operation: ConfigOperation,
}

/// Cluster-metadata changes; only shard 0 (the single metadata writer) executes them.
#[derive(Debug, Clone)]
pub enum AdminRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32, bool)>,
        validate_only: bool,
    },
    /// `incremental`: IncrementalAlterConfigs semantics; otherwise AlterConfigs replaces all
    /// overrides of the topic.
    AlterTopicConfigs {
        topics: Vec<(String, Vec<ConfigChange>)>,
        incremental: bool,
        validate_only: bool,
    },
}

#[derive(Debug)]
pub enum ShardRequest {
    Produce {
        items: Vec<ProduceItem>,
        acks: i16,
    },
    /// Immediate read of each item, at most `max_bytes` in all (plus one whole first batch).
    Fetch {
        items: Vec<FetchItem>,
        max_bytes: u32,
    },
    /// Resolves when any item's high watermark passes its fetch offset, or at the deadline.
    WatchHighWatermark {
        items: Vec<FetchItem>,
        max_wait_ms: u32,
    },
    ListOffsets {
        items: Vec<ListOffsetsItem>,
    },
    Admin(AdminRequest),
    /// A new metadata version from shard 0; answered once this shard applied it.
    ApplyMetadata(Box<ClusterMetadata>),
    /// A consumer-group request for the group's coordinator shard.
    Group(Box<GroupCall>),
    /// Shard 0 reserves `count` producer ids (persisted before they are handed out).
    AllocateProducerIds {
        count: u32,
    },
}

#[derive(Debug)]
pub enum ShardResponse {
    Produce(Vec<ProduceItemResult>),
    Fetch(Vec<FetchItemResult>),
    WatchHighWatermark,
    ListOffsets(Vec<ListOffsetsItemResult>),
    Admin(Vec<TopicOutcome>),
    MetadataApplied,
    Group(Box<GroupAnswer>),
    /// The first of the reserved ids, or None if the metadata write failed.
    ProducerIds(Option<i64>),
}

/// What crosses the request mesh.
#[derive(Debug)]
pub struct MeshRequest {
    pub id: u64,
    pub origin: usize,
    pub request: ShardRequest,
}

/// What crosses the response mesh back to `origin`.
#[derive(Debug)]
pub struct MeshResponse {
    pub id: u64,
    pub response: ShardResponse,
}
