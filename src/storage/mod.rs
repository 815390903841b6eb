//! Storage: the per-partition segment log (segments, sparse indexes, recovery, retention) and
//! the per-shard batch cache. No sockets, no locks: every type here is `!Send` and owned by the
//! shard that owns the partition (the one thing shared is the channel to the thread that closes
//! deleted segments, `closer.rs`); interior mutability is `Cell`/`RefCell`, and no `RefCell`
//! borrow is ever held across an `.await`.
//!
//! Durability contract (DESIGN §4):
//! - `PartitionLog::append` assigns offsets and buffers the batch in memory; nothing is durable.
//! - The partition's single flusher writes buffered batches in offset order with O_DIRECT and
//!   then `fdatasync`s; only then does `durable_end_offset` advance past them and
//!   `wait_durable` resolve. Appends arriving during a flush share the next one (group commit).
//!   The next write overlaps earlier groups' fdatasyncs; publication stays in offset order.
//!   A small group with nothing syncing ahead of it is written with O_DSYNC instead (durable
//!   when the write completes, no fdatasync).
//! - A write or fdatasync error takes the partition offline (fail-stop): later appends and waits
//!   fail with `Offline`; the failed fdatasync is never retried. Reads of the durable prefix
//!   keep working, so a full disk does not stop consumers.
//! - Index files are written lazily (at roll, close, truncation and periodically from
//!   `maybe_roll`) and only ever describe durable data; recovery verifies and rebuilds them.
//! - Every batch below the durable end offset survives `kill -9` and power loss: recovery keeps the
//!   longest valid prefix (length, magic, CRC32C, offset continuity) and truncates the rest.
//!
//! Files: `log.rs` (PartitionLog: append, group commit, roll), `reader.rs` (read, timestamp
//! lookup), `maintenance.rs` (retention, truncation, close), `segment.rs` (one segment file and
//! its write-behind tail page), `index.rs` (offset and time index), `recovery.rs` (open-time
//! scan and repair), `scanner.rs` (validating batch scans), `cache.rs` (per-shard batch
//! cache), `watermark.rs` (waiter registry), `dma_probe.rs` (works around glommio's polled-I/O
//! detection), `partition_metadata.rs` (the topic id a partition directory belongs to),
//! `epoch_checkpoint.rs` (the `leader-epoch-checkpoint` file), `log_start_checkpoint.rs` (the
//! `log-start-offset` file DeleteRecords moves), `blocking.rs` (file-system
//! calls moved to glommio's blocking pool), `closer.rs` (the thread that closes deleted
//! segments, freeing their blocks off the shards), `disk_space.rs` (the `log.dir.free.bytes.min`
//! floor), `clean_shutdown.rs` (the marker that lets a clean start skip the tail scan),
//! `small_file.rs` (small files replaced atomically and synced). Tests: `tests.rs` (behaviour),
//! `fuzz.rs` (operation fuzzer against a model).
//!
//! Offsets here are raw `i64`s (the file format's own width); the layers above use
//! `ids::Offset`. The storage layer knows nothing of high watermarks or leader epochs beyond
//! storing what it is given: the partition layer decides what is visible.
//! `index` is public only so `benches/index.rs` can measure lookups; nothing outside storage
//! builds or mutates a `SegmentIndex` on the data path.

mod blocking;
mod cache;
pub mod clean_shutdown;
pub mod closer;
pub mod disk_space;
mod dma_probe;
pub mod epoch_checkpoint;
pub mod index;
mod log;
pub mod log_start_checkpoint;
mod maintenance;
pub mod partition_metadata;
mod reader;
mod recovery;
mod scanner;
mod segment;
pub(crate) mod small_file;
pub mod watermark;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use thiserror::Error;

use crate::protocol::batch::BatchError;

pub use cache::{
    BatchCache, BatchCacheStats, PINNED_EXTRA_BYTES_MAX as CACHE_PINNED_EXTRA_BYTES_MAX,
};
pub use log::{AppendInfo, PartitionLog};
pub use recovery::Recovery;

/// O_DIRECT alignment used for every write and file length we choose: the largest logical block
/// size of the devices we support (NVMe 4Kn), and the page the flusher rewrites in place.
pub const DMA_ALIGNMENT_BYTES: u64 = 4096;
/// Largest batch the log accepts: a batch arrives in one request frame, whose maximum
/// (`socket.request.max.bytes`) is 100 MiB.
pub const BATCH_SIZE_BYTES_MAX: u64 = 128 << 20;
/// Bytes appended but not yet written per partition: bounds memory when the disk is slower than
/// the producers; past it `append` returns the retriable `WriteBehindFull`.
pub const WRITE_BEHIND_BYTES_MAX: u64 = 64 << 20;
/// Bytes one flush writes with one DMA write before its fdatasync: bounds the flush buffer.
pub const FLUSH_BYTES_MAX: u64 = 8 << 20;

/// Smallest accepted `segment.bytes`: keeps tests' tiny segments possible while a batch header
/// and an aligned page still fit.
pub const SEGMENT_BYTES_MIN: u64 = 512;
/// Largest `segment.bytes`: index positions are u32 and Kafka caps the setting at i32::MAX.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Default `log.flush.dsync.bytes.max`: see `perf/RESULTS.md` for how it was chosen.
pub const DSYNC_WRITE_BYTES_MAX_DEFAULT: u64 = 64 << 10;
/// Longest group-commit gathering delay: beyond a second, acks=all latency is unusable.
pub const FLUSH_DELAY_US_MAX: u64 = 1_000_000;
/// Largest preallocation step: more only delays the first write of a segment.
pub const PREALLOCATE_BYTES_MAX: u64 = crate::config::LOG_PREALLOCATE_BYTES_MAX;

const _: () = assert!(FLUSH_BYTES_MAX % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BEHIND_BYTES_MAX >= FLUSH_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);

/// Per-partition log settings (Kafka topic configs of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll when the active segment reaches this (`segment.bytes`, default 1 GiB).
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (`segment.ms`, default 7 days).
    pub segment_ms: i64,
    /// Delete closed segments older than this; -1 = unlimited (`retention.ms`, default 7 days).
    pub retention_ms: i64,
    /// Delete closed segments while the log is larger; -1 = unlimited (`retention.bytes`).
    pub retention_bytes: i64,
    /// Bytes between sparse index entries (`index.interval.bytes`, default 4096).
    pub index_interval_bytes: u32,
    /// fallocate step for the active segment, default 64 MiB, capped by `segment_bytes`.
    pub preallocate_bytes: u64,
    /// Group commit: how long the flusher waits for more appends before it writes and
    /// fdatasyncs (`log.flush.delay.us`, default 0: flush as soon as the previous one ends).
    pub flush_delay_us: u64,
    /// A flush group of at most this many bytes, with no earlier group still syncing, is
    /// written through an O_DSYNC descriptor: durable when the write completes, one I/O instead
    /// of a write and then an fdatasync (`log.flush.dsync.bytes.max`; 0 never does).
    pub dsync_write_bytes_max: u64,
    /// Zero the active segment's preallocated blocks this far ahead of its write head, in
    /// 1 MiB writes, so data writes land on written blocks (`log.segment.zero.ahead.bytes`;
    /// 0: off). See `Segment::write_zeros`.
    pub zero_ahead_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            preallocate_bytes: 64 << 20,
            flush_delay_us: 0,
            dsync_write_bytes_max: DSYNC_WRITE_BYTES_MAX_DEFAULT,
            zero_ahead_bytes: 0,
        }
    }
}

impl LogConfig {
    /// Checks every field against its documented range. Call before `open`/`set_config`.
    pub fn validate(&self) -> Result<(), StorageError> {
        let invalid =
            |field: &'static str, value: i64| Err(StorageError::InvalidConfig { field, value });
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return invalid("segment.bytes", self.segment_bytes as i64);
        }
        if self.segment_ms < 1 {
            return invalid("segment.ms", self.segment_ms);
        }
        if self.retention_ms < -1 {
            return invalid("retention.ms", self.retention_ms);
        }
        if self.retention_bytes < -1 {
            return invalid("retention.bytes", self.retention_bytes);
        }
        if self.preallocate_bytes > PREALLOCATE_BYTES_MAX {
            return invalid("preallocate.bytes", self.preallocate_bytes as i64);
        }
        if self.flush_delay_us > FLUSH_DELAY_US_MAX {
            return invalid("log.flush.delay.us", self.flush_delay_us as i64);
        }
        Ok(())
    }
}

/// Operating errors of the storage layer. The handler maps them to Kafka codes once:
/// `OffsetOutOfRange` → OFFSET_OUT_OF_RANGE, `InvalidBatch` → CORRUPT_MESSAGE,
/// `BatchTooLarge` → MESSAGE_TOO_LARGE, everything else → KAFKA_STORAGE_ERROR (retriable).
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("partition log {dir} is offline: {cause}")]
    Offline { dir: PathBuf, cause: String },
    #[error("partition log {dir} is closed")]
    Closed { dir: PathBuf },
    #[error("offset {offset} is out of range [{log_start_offset}, {durable_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        durable_end_offset: i64,
    },
    #[error("corrupt log file {path} at position {position}: {detail}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        detail: String,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("buffer of {buffer_bytes} bytes holds a batch of {batch_bytes} bytes")]
    BatchLengthMismatch { buffer_bytes: u64, batch_bytes: u64 },
    #[error("batch of {batch_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    BatchTooLarge { batch_bytes: u64, limit_bytes: u64 },
    #[error("write-behind buffer full: {pending_bytes} bytes wait for disk (limit {limit_bytes})")]
    WriteBehindFull {
        pending_bytes: u64,
        limit_bytes: u64,
    },
    #[error(
        "batch at offset {batch_base_offset} does not follow the log end offset {log_end_offset}"
    )]
    OffsetMismatch {
        batch_base_offset: i64,
        log_end_offset: i64,
    },
    #[error("offsets up to {end_offset} were truncated away (log end offset {log_end_offset})")]
    Truncated {
        end_offset: i64,
        log_end_offset: i64,
    },
    #[error("invalid log config {field}={value}")]
    InvalidConfig { field: &'static str, value: i64 },
}

impl StorageError {
    /// True for errors a producer may retry (Kafka marks KAFKA_STORAGE_ERROR retriable).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            StorageError::Offline { .. }
                | StorageError::WriteBehindFull { .. }
                | StorageError::Io { .. }
        )
    }
}

/// Wraps a glommio I/O error with the operation and file it failed on.
pub(crate) fn io_error<T>(
    op: &'static str,
    path: &std::path::Path,
    error: glommio::GlommioError<T>,
) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::from(error),
    }
}

/// Rounds `value` down to the DMA alignment.
pub(crate) fn align_down(value: u64) -> u64 {
    value & !(DMA_ALIGNMENT_BYTES - 1)
}

/// Rounds `value` up to the DMA alignment.
pub(crate) fn align_up(value: u64) -> u64 {
    align_down(value + DMA_ALIGNMENT_BYTES - 1)
}

/// Wall-clock milliseconds since the Unix epoch (a vDSO call, no I/O).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
