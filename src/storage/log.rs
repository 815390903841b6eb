//! `PartitionLog`: one partition's segment log on its owning shard: offset assignment, the
//! write-behind queue, group commit, and segment roll.
//!
//! Write path: `append` (synchronous) assigns offsets in the produce buffer, records the batch
//! in the active segment's in-memory index and queues it; it never waits for the disk. One
//! flusher task per partition (spawned on demand in the caller's task queue, exits when idle)
//! takes everything queued for one segment (up to `FLUSH_BYTES_MAX`), writes it with one DMA
//! write, fdatasyncs, and only then advances `durable_end_offset`, moves the batches into the
//! shard's `BatchCache` and wakes waiters. Appends arriving meanwhile share the next flush
//! (group commit); groups are published strictly in offset order. The flusher pipelines: writes
//! are issued one at a time, and as soon as a group's write completes the flusher starts that
//! group's fdatasync in its own task (at most `SYNCS_IN_FLIGHT_MAX` at once) and goes on to
//! write everything queued since. A batch therefore waits for at most the write in progress,
//! its own write and its own fdatasync, instead of whole write-then-sync cycles (see `segment`
//! for why rewriting the shared tail page while an earlier sync runs is safe). When nothing is
//! syncing and the group is small (`log.flush.dsync.bytes.max`, default 64 KiB), the group is
//! instead written through the segment's O_DSYNC descriptor and is durable when that one write
//! completes: at low rates an acknowledgement waits for one I/O instead of a write and then an
//! fdatasync (measured in `perf/RESULTS.md`: -0.1 ms at the median and a third less CPU per
//! message at 2,000 msg/s). Under load groups are large or syncs are in flight, so the
//! pipeline, which overlaps the next write with earlier syncs, takes over. With
//! `log.segment.zero.ahead.bytes` a task per log writes zeros ahead of the active segment's
//! write head (`maybe_zero_ahead`), so data writes are overwrites and their fdatasyncs commit
//! no filesystem journal; a data write waits for a zero write in flight over its range, the
//! disk lock is released only with no zero write in flight, and a sealed segment is finalized
//! only with none over it. Syncs may finish out of order; a group is published only after
//! every earlier group. The flusher holds the disk lock while the pipeline runs and drains it
//! (nothing written but unpublished, no segment being finalized) before letting retention,
//! truncation, index persistence or close take the lock. Note that glommio's `spawn_local`
//! polls a new task at once: an `append` that finds the flusher idle copies its batch into the
//! DMA buffer and submits the write before returning (the lowest-latency path for a lone
//! produce); the flusher never touches the caller's state, and `append` holds no borrow then.
//!
//! Roll: a batch that does not fit the active segment (`segment.bytes`, index capacity,
//! u32 relative offsets) or `maybe_roll` (`segment.ms`) seals it and starts a segment named by
//! the next offset. The flusher finalizes a sealed segment once its data is durable and
//! published (and no zero write runs over it): final time index entry, index files written,
//! file trimmed to its exact size. That runs in a task of its own beside the pipeline, which
//! goes on writing the next segment: finalizing inside the pipeline stopped every write for its
//! index writes, trim and fdatasyncs, a step in acknowledgement latency at each roll
//! (perf/RESULTS.md, session 15).
//!
//! Fail-stop: a write or fdatasync error takes the partition offline; queued batches are never
//! written, `append`/`wait_durable` return `Offline`, durable data stays readable.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use super::cache::BatchCache;
use super::dma_probe::probe_device;
use super::index::NO_TIMESTAMP;
use super::recovery::{recover_segments, Recovery};
use super::segment::{sync_directory, Segment, SegmentState};
use super::watermark::Waiters;
use super::{
    wall_clock_ms, LogConfig, StorageError, BATCH_SIZE_BYTES_MAX, FLUSH_BYTES_MAX,
    WRITE_BEHIND_BYTES_MAX,
};
use crate::protocol::batch::{assign_offset, BatchError, BatchHeader};

/// fdatasyncs of one partition in flight at once (each occupies an io_uring worker thread).
const SYNCS_IN_FLIGHT_MAX: usize = 4;

/// Largest zero write ahead of a write head (`maybe_zero_ahead`).
const ZERO_CHUNK_BYTES: u64 = 1 << 20;

/// Unwritten offset-index bytes after which `maybe_roll` writes the active segment's indexes:
/// bounds the recovery scan after a crash to about this many index intervals.
pub(crate) const INDEX_PERSIST_BYTES_MIN: u64 = 4096;

/// Offsets assigned to an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// An appended batch waiting for its flush.
struct PendingBatch {
    segment: Rc<Segment>,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    bytes: Bytes,
}

/// What one flush writes: consecutive queued batches of one segment.
struct FlushGroup {
    segment: Rc<Segment>,
    batches: Vec<Bytes>,
    end_offset: i64,
    /// (max timestamp, last offset of its batch) over the group.
    max_timestamp: (i64, i64),
    /// The segment's `written_bytes` once this group's write completed.
    written_end: u64,
}

impl FlushGroup {
    fn bytes(&self) -> u64 {
        self.batches.iter().map(|batch| batch.len() as u64).sum()
    }
}

pub struct PartitionLog {
    pub(super) dir: PathBuf,
    pub(super) config: RefCell<LogConfig>,
    pub(super) cache: Rc<BatchCache>,
    pub(super) cache_id: u64,
    self_weak: Weak<PartitionLog>,
    /// Ascending by base offset; the last one is active. Never empty.
    pub(super) segments: RefCell<Vec<Rc<Segment>>>,
    pending: RefCell<VecDeque<PendingBatch>>,
    pending_bytes: Cell<u64>,
    pub(super) log_start_offset: Cell<i64>,
    pub(super) log_end_offset: Cell<i64>,
    pub(super) durable_end_offset: Cell<i64>,
    offline_cause: RefCell<Option<String>>,
    pub(super) closed: Cell<bool>,
    flusher_running: Cell<bool>,
    /// Serializes disk mutations: flushes, truncation, retention, close. Take it with
    /// `lock_disk`, which counts waiters so a running flush pipeline drains and yields.
    disk_lock: Semaphore,
    disk_waiters: Cell<u32>,
    /// Sealed segments being finalized, each in its own task (`start_finalizing`).
    finalizations: Cell<u32>,
    /// Queued batches (from the front of `pending`) already taken by an in-flight flush group.
    taken_batches: Cell<usize>,
    /// Written groups, oldest first, each with a flag its sync task sets when the fdatasync
    /// finished; published from the front once synced.
    syncing: RefCell<VecDeque<(FlushGroup, Rc<Cell<bool>>)>>,
    /// Woken by appends and finished syncs: the flusher waits on it while its pipeline is full
    /// or idle with syncs in flight.
    flusher_events: Waiters,
    pub(super) waiters: Waiters,
    fdatasync_count: Cell<u64>,
    /// Groups made durable by one O_DSYNC write instead of write + fdatasync.
    dsync_write_count: Cell<u64>,
    /// Zero writes ahead of the write head in flight, and bytes zeroed so far.
    zero_writes: Cell<u32>,
    zeroed_bytes: Cell<u64>,
    pub(super) size_bytes: Cell<u64>,
    /// Bumped by every `truncate_to`, with the offset it truncated to: waiters for truncated
    /// offsets fail instead of hanging or acknowledging replaced data.
    pub(super) truncations: Cell<u64>,
    pub(super) last_truncation_offset: Cell<i64>,
    /// Deleted segments that readers still held when they were unlinked: their descriptors
    /// are closed off the shard (`Segment::close_deleted`) once the readers let go, checked
    /// at the next retention pass or deletion.
    pub(super) deleted_in_use: RefCell<Vec<Rc<Segment>>>,
}

impl PartitionLog {
    /// Opens (creating if missing) the partition directory and recovers it fully (see
    /// `recovery`).
    pub async fn open(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        PartitionLog::open_with(dir, config, cache, Recovery::Full).await
    }

    /// Opens the partition directory with the given depth of recovery.
    pub async fn open_with(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        recovery: Recovery,
    ) -> Result<Rc<PartitionLog>, StorageError> {
        config.validate()?;
        // A partition's directory is created with its first segment file (`Segment::file`):
        // creating many partitions costs no directory fsyncs until they are written to.
        let owned = dir.clone();
        let exists =
            super::blocking::run("stat partition dir", &dir, move || Ok(owned.is_dir())).await?;
        let mut segments = if exists {
            probe_device(&dir).await?;
            recover_segments(&dir, &config, recovery).await?
        } else {
            Vec::new()
        };
        if segments.is_empty() {
            segments.push(Rc::new(Segment::new(&dir, 0, wall_clock_ms())));
        }
        let log_end_offset = segments[segments.len() - 1].end_offset();
        // DeleteRecords may have moved the start past the first segment's base.
        let moved_start = if exists {
            super::log_start_checkpoint::read(&dir).await?
        } else {
            None
        };
        let log_start_offset = match moved_start {
            Some(moved) if moved > log_end_offset => {
                log::warn!(
                    "{}: log start offset {moved} is past the log end {log_end_offset} (records lost since it was moved?): starting at the end",
                    dir.display()
                );
                log_end_offset
            }
            Some(moved) => moved.max(segments[0].base_offset()),
            None => segments[0].base_offset(),
        };
        let size_bytes = segments.iter().map(|segment| segment.size_bytes()).sum();
        let cache_id = cache.register_log();
        Ok(Rc::new_cyclic(|self_weak| PartitionLog {
            dir,
            config: RefCell::new(config),
            cache,
            cache_id,
            self_weak: self_weak.clone(),
            segments: RefCell::new(segments),
            pending: RefCell::new(VecDeque::new()),
            pending_bytes: Cell::new(0),
            log_start_offset: Cell::new(log_start_offset),
            log_end_offset: Cell::new(log_end_offset),
            durable_end_offset: Cell::new(log_end_offset),
            offline_cause: RefCell::new(None),
            closed: Cell::new(false),
            flusher_running: Cell::new(false),
            disk_lock: Semaphore::new(1),
            disk_waiters: Cell::new(0),
            finalizations: Cell::new(0),
            taken_batches: Cell::new(0),
            syncing: RefCell::new(VecDeque::new()),
            flusher_events: Waiters::default(),
            waiters: Waiters::default(),
            fdatasync_count: Cell::new(0),
            dsync_write_count: Cell::new(0),
            zero_writes: Cell::new(0),
            zeroed_bytes: Cell::new(0),
            size_bytes: Cell::new(size_bytes),
            truncations: Cell::new(0),
            last_truncation_offset: Cell::new(i64::MAX),
            deleted_in_use: RefCell::new(Vec::new()),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.get()
    }

    /// The first stored offset (the first segment's base): the log start offset unless
    /// DeleteRecords moved that past it and retention has not yet deleted the segment.
    pub fn first_stored_offset(&self) -> i64 {
        self.segments.borrow()[0].base_offset()
    }

    /// DeleteRecords: moves the log start offset to `offset` (at most the durable end; never
    /// backwards), persisted before it is visible. The segments below it stay until time or
    /// size retention deletes them (followers may still copy them).
    pub async fn advance_log_start_offset(&self, offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        assert!(
            offset <= self.durable_end_offset.get(),
            "offset={offset} durable_end={}",
            self.durable_end_offset.get()
        );
        if offset <= self.log_start_offset.get() {
            return Ok(());
        }
        let _permit = self.lock_disk().await?;
        if offset <= self.log_start_offset.get() {
            return Ok(());
        }
        if let Err(error) = super::log_start_checkpoint::write(&self.dir, offset).await {
            self.go_offline(&error);
            return Err(error);
        }
        self.log_start_offset
            .set(offset.max(self.log_start_offset.get()));
        Ok(())
    }
    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.get()
    }
    /// End of the durable (fdatasynced) prefix; consumers read only below it.
    pub fn durable_end_offset(&self) -> i64 {
        self.durable_end_offset.get()
    }
    pub fn is_offline(&self) -> bool {
        self.offline_cause.borrow().is_some()
    }
    /// Bytes of all segments, including appended batches not yet on disk.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.get()
    }
    /// Bytes appended but not yet durable.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.get()
    }
    /// Creates the partition directory if it does not exist yet (it is created lazily, with the
    /// first file written into it).
    pub async fn ensure_dir(&self) -> Result<(), StorageError> {
        create_partition_dir(&self.dir).await
    }

    /// Data fdatasyncs issued by the flusher (a metric; tests count group commits with it).
    pub fn fdatasync_count(&self) -> u64 {
        self.fdatasync_count.get()
    }

    /// Groups written with O_DSYNC (durable without an fdatasync).
    pub fn dsync_write_count(&self) -> u64 {
        self.dsync_write_count.get()
    }

    /// Bytes written as zeros ahead of write heads (`log.segment.zero.ahead.bytes`).
    pub fn zeroed_bytes(&self) -> u64 {
        self.zeroed_bytes.get()
    }

    /// Group commits of either kind: fdatasyncs plus O_DSYNC writes.
    pub fn group_commit_count(&self) -> u64 {
        self.fdatasync_count() + self.dsync_write_count()
    }
    /// Futures currently waiting on the durable end offset (a metric).
    pub fn waiter_count(&self) -> usize {
        self.waiters.len()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }
    /// Base offsets of the segments, oldest first.
    /// Base offset of the active (last) segment.
    pub fn active_segment_base(&self) -> i64 {
        self.active_segment().base_offset()
    }

    pub fn segment_base_offsets(&self) -> Vec<i64> {
        let segments = self.segments.borrow();
        segments
            .iter()
            .map(|segment| segment.base_offset())
            .collect()
    }
    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Replaces the config (Kafka topic config change); applies from the next append/roll.
    /// Panics on an invalid config: callers validate with `LogConfig::validate` first.
    pub fn set_config(&self, config: LogConfig) {
        if let Err(error) = config.validate() {
            panic!("set_config with an unvalidated config: {error}");
        }
        *self.config.borrow_mut() = config;
    }

    pub(super) fn offline_error(&self) -> StorageError {
        let cause = self.offline_cause.borrow().clone().unwrap_or_default();
        StorageError::Offline {
            dir: self.dir.clone(),
            cause,
        }
    }

    pub(super) fn check_writable(&self) -> Result<(), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        if self.is_offline() {
            return Err(self.offline_error());
        }
        Ok(())
    }

    /// Fail-stop: no more writes; wakes every waiter so it sees the error.
    pub(super) fn go_offline(&self, error: &StorageError) {
        log::error!("partition log {} goes offline: {error}", self.dir.display());
        let mut cause = self.offline_cause.borrow_mut();
        if cause.is_none() {
            crate::metrics::storage_error();
            *cause = Some(error.to_string());
        }
        drop(cause);
        self.waiters.wake_all();
    }

    pub(super) fn active_segment(&self) -> Rc<Segment> {
        let segments = self.segments.borrow();
        segments[segments.len() - 1].clone()
    }

    /// The segment that holds `offset` (the last one whose base is <= it).
    pub(super) fn segment_containing(&self, offset: i64) -> Option<Rc<Segment>> {
        let segments = self.segments.borrow();
        let after = segments.partition_point(|segment| segment.base_offset() <= offset);
        (after > 0).then(|| segments[after - 1].clone())
    }

    /// Assigns offsets to a validated batch (rewriting base_offset and partition_leader_epoch in
    /// the buffer) and queues it for the next flush, starting the flusher if it is idle.
    /// Returns without waiting for the disk; nothing is durable until `wait_durable` resolves.
    /// Errors: `Offline`/`Closed`, `WriteBehindFull` (retriable), malformed or oversized batch.
    pub fn append(
        &self,
        mut batch: BytesMut,
        leader_epoch: i32,
    ) -> Result<AppendInfo, StorageError> {
        self.check_writable()?;
        let header = self.check_batch(&batch)?;
        self.check_write_behind(batch.len() as u64)?;
        let base_offset = self.log_end_offset.get();
        assign_offset(&mut batch, base_offset, leader_epoch);
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..header
        };
        Ok(self.queue(header, batch.freeze()))
    }

    /// Queues a batch whose offsets were assigned already (a replicated log: the leader assigns
    /// them when it proposes the batch, and every replica stores the same bytes). Its base offset
    /// must be this log's end offset. Same errors as `append`, plus `OffsetMismatch`.
    pub fn append_assigned(&self, batch: Bytes) -> Result<AppendInfo, StorageError> {
        self.check_writable()?;
        let header = self.check_batch(&batch)?;
        if header.base_offset != self.log_end_offset.get() {
            return Err(StorageError::OffsetMismatch {
                batch_base_offset: header.base_offset,
                log_end_offset: self.log_end_offset.get(),
            });
        }
        self.check_write_behind(batch.len() as u64)?;
        Ok(self.queue(header, batch))
    }

    fn check_write_behind(&self, batch_bytes: u64) -> Result<(), StorageError> {
        let pending_bytes = self.pending_bytes.get();
        // An empty queue takes any batch, so a batch larger than the bound still gets in.
        if pending_bytes > 0 && pending_bytes + batch_bytes > WRITE_BEHIND_BYTES_MAX {
            return Err(StorageError::WriteBehindFull {
                pending_bytes,
                limit_bytes: WRITE_BEHIND_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Records a checked batch (offsets in place) in the active segment and queues its bytes.
    fn queue(&self, header: BatchHeader, batch: Bytes) -> AppendInfo {
        let batch_bytes = batch.len() as u64;
        let base_offset = header.base_offset;
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        let segment = self.segment_for(batch_bytes, last_offset);
        segment.record_append(&header, &self.config.borrow(), wall_clock_ms());
        self.pending.borrow_mut().push_back(PendingBatch {
            segment,
            base_offset,
            last_offset,
            max_timestamp: header.max_timestamp,
            bytes: batch,
        });
        self.pending_bytes
            .set(self.pending_bytes.get() + batch_bytes);
        self.size_bytes.set(self.size_bytes.get() + batch_bytes);
        self.log_end_offset.set(last_offset + 1);
        self.kick_flusher();
        AppendInfo {
            base_offset,
            last_offset,
            log_start_offset: self.log_start_offset.get(),
        }
    }

    /// Structure and size checks on the (already CRC-validated) batch.
    fn check_batch(&self, batch: &[u8]) -> Result<BatchHeader, StorageError> {
        let header = BatchHeader::parse(batch)?;
        if header.size_bytes() != batch.len() {
            return Err(StorageError::BatchLengthMismatch {
                buffer_bytes: batch.len() as u64,
                batch_bytes: header.size_bytes() as u64,
            });
        }
        if header.last_offset_delta < 0 {
            return Err(StorageError::InvalidBatch(BatchError::BadRecordCount {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            }));
        }
        let limit_bytes = BATCH_SIZE_BYTES_MAX.min(self.config.borrow().segment_bytes);
        if batch.len() as u64 > limit_bytes {
            return Err(StorageError::BatchTooLarge {
                batch_bytes: batch.len() as u64,
                limit_bytes,
            });
        }
        Ok(header)
    }

    /// The active segment if the batch fits, else a new one (rolled in memory).
    fn segment_for(&self, batch_bytes: u64, last_offset: i64) -> Rc<Segment> {
        let active = self.active_segment();
        if active.can_hold(batch_bytes, last_offset, &self.config.borrow()) {
            return active;
        }
        self.roll(self.log_end_offset.get())
    }

    /// Seals the active segment and starts one at `base_offset`. Its file is created by the
    /// first flush that writes to it (or by `ensure_active_file`).
    pub(super) fn roll(&self, base_offset: i64) -> Rc<Segment> {
        let active = self.active_segment();
        assert!(
            active.size_bytes() > 0,
            "rolling an empty segment {}",
            active.base_offset()
        );
        assert_eq!(
            active.end_offset(),
            base_offset,
            "base={}",
            active.base_offset()
        );
        active.set_state(SegmentState::Sealed);
        let segment = Rc::new(Segment::new(&self.dir, base_offset, wall_clock_ms()));
        self.segments.borrow_mut().push(segment.clone());
        log::debug!(
            "{}: rolled segment at offset {base_offset}",
            self.dir.display()
        );
        segment
    }

    /// Starts the flusher task unless it is already running.
    pub(super) fn kick_flusher(&self) {
        if self.flusher_running.get() {
            self.flusher_events.wake_all();
            return;
        }
        let Some(log) = self.self_weak.upgrade() else {
            return;
        };
        self.flusher_running.set(true);
        glommio::spawn_local(async move { log.run_flusher().await }).detach();
    }

    async fn run_flusher(&self) {
        loop {
            // Checked right before exiting with no await in between: an append that finds
            // `flusher_running` set is always picked up by this loop.
            if self.is_offline() || self.closed.get() || !self.has_flush_work() {
                break;
            }
            let flush_delay_us = self.config.borrow().flush_delay_us;
            if flush_delay_us > 0 {
                glommio::timer::sleep(std::time::Duration::from_micros(flush_delay_us)).await;
            }
            match self.flush_pipeline().await {
                Err(error) => self.go_offline(&error),
                Ok(Some(waiters)) => {
                    // Let a waiter take the lock before competing for it again (a semaphore
                    // release does not hand the permit over).
                    self.flusher_events
                        .wait_until(|| self.disk_waiters.get() < waiters)
                        .await;
                }
                Ok(None) => {}
            }
        }
        self.flusher_running.set(false);
    }

    fn has_flush_work(&self) -> bool {
        !self.pending.borrow().is_empty() || self.has_segment_to_finalize()
    }

    fn has_segment_to_finalize(&self) -> bool {
        let segments = self.segments.borrow();
        segments[..segments.len() - 1]
            .iter()
            .any(|segment| is_finalizable(segment))
    }

    /// Sealed segments whose data is all durable: the flusher finalizes them.
    pub(super) fn segments_to_finalize(&self) -> Vec<Rc<Segment>> {
        let segments = self.segments.borrow();
        segments[..segments.len() - 1]
            .iter()
            .filter(|segment| is_finalizable(segment))
            .cloned()
            .collect()
    }

    /// Takes the disk lock; while waiting, a running flush pipeline sees the waiter and drains.
    pub(super) async fn lock_disk(&self) -> Result<glommio::sync::Permit<'_>, StorageError> {
        struct Waiting<'a>(&'a PartitionLog);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                let waiters = &self.0.disk_waiters;
                waiters.set(waiters.get() - 1);
                self.0.flusher_events.wake_all();
            }
        }
        self.disk_waiters.set(self.disk_waiters.get() + 1);
        let waiting = Waiting(self);
        let permit = self.disk_lock.acquire_permit(1).await;
        drop(waiting);
        permit.map_err(|_| self.offline_error())
    }

    /// Group commits under the disk lock: writes one group at a time and syncs each in its own
    /// task while the next is written, finalizing sealed segments in tasks of their own, for as
    /// long as batches keep arriving and nobody else wants the lock. Returns None with every
    /// written group synced and published and the sealed segments finalized (or the partition
    /// offline); Some(number of lock waiters) if it stopped early to let them in (a segment not
    /// yet finalizable then stays sealed for the next run, or for close).
    async fn flush_pipeline(&self) -> Result<Option<u32>, StorageError> {
        let _permit = self.lock_disk().await?;
        let outcome = self.run_pipeline().await;
        // Never release the lock with a sync, a zero write or a finalization in flight:
        // truncation and close assume none.
        self.flusher_events
            .wait_until(|| self.disk_idle() || self.is_offline())
            .await;
        outcome
    }

    async fn run_pipeline(&self) -> Result<Option<u32>, StorageError> {
        loop {
            if self.closed.get() || self.is_offline() {
                return Ok(None);
            }
            let in_flight = self.syncing.borrow().len();
            self.start_finalizing();
            if self.disk_waiters.get() > 0 {
                return Ok(Some(self.disk_waiters.get()));
            }
            if self.has_unwritten() && in_flight < SYNCS_IN_FLIGHT_MAX {
                let Some(mut group) = self.take_flush_group() else {
                    continue;
                };
                let config = self.config.borrow().clone();
                let group_bytes = group.bytes();
                if group.segment.zeroing_overlaps(group_bytes) {
                    let segment = group.segment.clone();
                    self.flusher_events
                        .wait_until(|| !segment.zeroing_overlaps(group_bytes) || self.is_offline())
                        .await;
                    if self.is_offline() {
                        return Ok(None);
                    }
                }
                // Nothing syncing ahead and a small group: one O_DSYNC write makes it durable,
                // a single I/O where write-then-fdatasync takes two in sequence.
                let dsync = in_flight == 0
                    && group_bytes <= config.dsync_write_bytes_max
                    && group.segment.can_write_dsync().await;
                let started = std::time::Instant::now();
                group.written_end = group.segment.write(&group.batches, &config, dsync).await?;
                if dsync {
                    crate::metrics::dsync_write_done(group_bytes, started.elapsed());
                    self.dsync_write_count.set(self.dsync_write_count.get() + 1);
                    // `syncing` is empty (nothing was in flight, and only this loop starts
                    // syncs), so the group is next in offset order.
                    self.commit_flush(group);
                    self.flusher_events.wake_all();
                } else {
                    crate::metrics::segment_write_done(started.elapsed());
                    let segment = group.segment.clone();
                    self.start_sync(group);
                    self.maybe_zero_ahead(&segment, &config);
                    continue;
                }
                if let Some(segment) = self.segments.borrow().last().cloned() {
                    self.maybe_zero_ahead(&segment, &config);
                }
                continue;
            }
            let zero_writes = self.zero_writes.get();
            let finalizations = self.finalizations.get();
            if in_flight == 0 && zero_writes == 0 && finalizations == 0 {
                return Ok(None);
            }
            // Full pipeline, or nothing new to write: wait for an append, a finished sync, zero
            // write or finalization (the pipeline keeps the lock through them, so an append
            // arriving meanwhile is written at once, not after them).
            self.flusher_events
                .wait_until(|| {
                    let in_flight_now = self.syncing.borrow().len();
                    (self.has_unwritten() && in_flight_now < SYNCS_IN_FLIGHT_MAX)
                        || in_flight_now < in_flight
                        || self.zero_writes.get() < zero_writes
                        || self.finalizations.get() < finalizations
                        || self.is_offline()
                        || self.closed.get()
                })
                .await;
        }
    }

    /// Waits for the zero writes and finalizations in flight to end. Online, whoever holds the
    /// disk lock finds none; offline, the pipeline lets the lock go without waiting for them
    /// (a failed sync never leaves `syncing`), and close waits here instead. Both always end.
    pub(super) async fn wait_disk_tasks(&self) {
        self.flusher_events
            .wait_until(|| self.disk_tasks_idle())
            .await;
    }

    /// No zero write and no finalization in flight.
    fn disk_tasks_idle(&self) -> bool {
        self.zero_writes.get() == 0 && self.finalizations.get() == 0
    }

    /// No fdatasync, zero write or finalization in flight.
    fn disk_idle(&self) -> bool {
        self.syncing.borrow().is_empty() && self.disk_tasks_idle()
    }

    /// Finalizes each sealed segment whose data is durable and published and that has no zero
    /// write in flight over it, in a task of its own (the pipeline goes on meanwhile); a
    /// failure takes the partition offline.
    fn start_finalizing(&self) {
        for segment in self.segments_to_finalize() {
            if segment.zero_write_in_flight() {
                // Finalized once its zero write is done (that wakes the pipeline).
                continue;
            }
            let Some(log) = self.self_weak.upgrade() else {
                return;
            };
            segment.begin_finalize();
            self.finalizations.set(self.finalizations.get() + 1);
            glommio::spawn_local(async move {
                let result = segment.finalize().await;
                log.finalizations.set(log.finalizations.get() - 1);
                if let Err(error) = result {
                    log.go_offline(&error);
                }
                log.flusher_events.wake_all();
            })
            .detach();
        }
    }

    /// Starts a zero write ahead of the active segment's write head when one is due
    /// (`log.segment.zero.ahead.bytes`; see `Segment::write_zeros`), in its own task.
    fn maybe_zero_ahead(&self, segment: &Rc<Segment>, config: &LogConfig) {
        let Some((start, end)) = segment.next_zero_range(config.zero_ahead_bytes, ZERO_CHUNK_BYTES)
        else {
            return;
        };
        let Some(log) = self.self_weak.upgrade() else {
            return;
        };
        self.zero_writes.set(self.zero_writes.get() + 1);
        // Claimed now, not when the task first runs: a data write taken after this sees it.
        segment.claim_zero_range(start, end);
        let segment = segment.clone();
        glommio::spawn_local(async move {
            let result = segment.write_zeros(start, end).await;
            log.zero_writes.set(log.zero_writes.get() - 1);
            match result {
                Ok(()) => log.zeroed_bytes.set(log.zeroed_bytes.get() + (end - start)),
                Err(error) => log.go_offline(&error),
            }
            log.flusher_events.wake_all();
        })
        .detach();
    }

    fn has_unwritten(&self) -> bool {
        self.pending.borrow().len() > self.taken_batches.get()
    }

    /// Starts the fdatasync of a written group in its own task; it publishes the group (and
    /// any later groups already synced) once every earlier group is published.
    fn start_sync(&self, group: FlushGroup) {
        let segment = group.segment.clone();
        let written_end = group.written_end;
        let group_bytes = group.bytes();
        let synced = Rc::new(Cell::new(false));
        self.syncing.borrow_mut().push_back((group, synced.clone()));
        let Some(log) = self.self_weak.upgrade() else {
            return;
        };
        glommio::spawn_local(async move {
            let started = std::time::Instant::now();
            match segment.sync(written_end).await {
                Ok(()) => {
                    crate::metrics::fdatasync_done(group_bytes, started.elapsed());
                    log.fdatasync_count.set(log.fdatasync_count.get() + 1);
                    synced.set(true);
                    log.publish_synced();
                }
                Err(error) => log.go_offline(&error),
            }
            log.flusher_events.wake_all();
        })
        .detach();
    }

    /// Publishes synced groups from the front of `syncing`, stopping at the first unsynced one.
    fn publish_synced(&self) {
        if self.is_offline() {
            return;
        }
        loop {
            let group = {
                let mut syncing = self.syncing.borrow_mut();
                match syncing.front() {
                    Some((_, synced)) if synced.get() => {
                        syncing.pop_front().map(|(group, _)| group)
                    }
                    _ => None,
                }
            };
            let Some(group) = group else {
                break;
            };
            self.commit_flush(group);
        }
    }

    fn take_flush_group(&self) -> Option<FlushGroup> {
        let pending = self.pending.borrow();
        let taken = self.taken_batches.get();
        let segment = pending.get(taken)?.segment.clone();
        let mut group = FlushGroup {
            segment,
            batches: Vec::new(),
            end_offset: 0,
            max_timestamp: (NO_TIMESTAMP, -1),
            written_end: 0,
        };
        let mut group_bytes = 0u64;
        for batch in pending.iter().skip(taken) {
            let batch_bytes = batch.bytes.len() as u64;
            let full = !group.batches.is_empty() && group_bytes + batch_bytes > FLUSH_BYTES_MAX;
            if full || !Rc::ptr_eq(&batch.segment, &group.segment) {
                break;
            }
            group.batches.push(batch.bytes.clone());
            group.end_offset = batch.last_offset + 1;
            if batch.max_timestamp > group.max_timestamp.0 {
                group.max_timestamp = (batch.max_timestamp, batch.last_offset);
            }
            group_bytes += batch_bytes;
        }
        self.taken_batches.set(taken + group.batches.len());
        Some(group)
    }

    /// Publishes a durable group: dequeue, cache, advance the durable end offset, wake waiters.
    fn commit_flush(&self, group: FlushGroup) {
        {
            let mut pending = self.pending.borrow_mut();
            self.taken_batches
                .set(self.taken_batches.get() - group.batches.len());
            for _ in 0..group.batches.len() {
                let Some(batch) = pending.pop_front() else {
                    panic!(
                        "flushed batches vanished from the queue, end={}",
                        group.end_offset
                    );
                };
                assert!(
                    batch.last_offset < group.end_offset,
                    "last={}",
                    batch.last_offset
                );
                self.pending_bytes
                    .set(self.pending_bytes.get() - batch.bytes.len() as u64);
                self.cache.insert(
                    self.cache_id,
                    batch.base_offset,
                    batch.last_offset,
                    batch.bytes,
                );
            }
        }
        group
            .segment
            .commit_durable(group.end_offset, group.max_timestamp);
        assert!(
            group.end_offset > self.durable_end_offset.get(),
            "end={} hw={}",
            group.end_offset,
            self.durable_end_offset.get()
        );
        self.durable_end_offset.set(group.end_offset);
        self.waiters.wake_all();
    }

    /// Resolves once every offset < `end_offset` is on disk. Fails if the partition went
    /// offline or closed first, or if `truncate_to` removed those offsets.
    pub async fn wait_durable(&self, end_offset: i64) -> Result<(), StorageError> {
        let truncations = self.truncations.get();
        let truncated = || {
            let truncated_since = self.truncations.get() != truncations
                && end_offset > self.last_truncation_offset.get();
            truncated_since || end_offset > self.log_end_offset.get()
        };
        let durable = || self.durable_end_offset.get() >= end_offset && !truncated();
        self.waiters
            .wait_until(|| durable() || truncated() || self.is_offline() || self.closed.get())
            .await;
        if durable() {
            return Ok(());
        }
        self.check_writable()?;
        if truncated() {
            return Err(StorageError::Truncated {
                end_offset,
                log_end_offset: self.log_end_offset.get(),
            });
        }
        Err(self.offline_error())
    }

    /// Resolves when `durable_end_offset() > offset`, or when the partition goes offline or closes
    /// (callers re-check). Cancel-safe; waiting costs one waker slot.
    pub async fn wait_for_durable_above(&self, offset: i64) {
        self.waiters
            .wait_until(|| {
                self.durable_end_offset.get() > offset || self.is_offline() || self.closed.get()
            })
            .await;
    }

    /// (timestamp, offset) of the durable batch with the largest max timestamp (its last
    /// offset); None if no durable batch carries a timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let segments = self.segments.borrow();
        let mut best: Option<(i64, i64)> = None;
        for segment in segments.iter() {
            let (timestamp, offset) = segment.durable_max_timestamp();
            if timestamp > NO_TIMESTAMP && best.is_none_or(|(best_ts, _)| timestamp > best_ts) {
                best = Some((timestamp, offset));
            }
        }
        best
    }

    /// Rolls the active segment if it is older than `segment.ms`, and writes its index files
    /// when enough entries accumulated. Called periodically by the shard's background task.
    pub async fn maybe_roll(&self, now_ms: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        let active = self.active_segment();
        let segment_ms = self.config.borrow().segment_ms;
        if active.size_bytes() > 0 && now_ms - active.rolling_timestamp_ms() >= segment_ms {
            self.roll(self.log_end_offset.get());
            self.kick_flusher();
            return Ok(());
        }
        if active.unpersisted_index_bytes() >= INDEX_PERSIST_BYTES_MIN {
            let _permit = self.lock_disk().await?;
            if let Err(error) = active.persist_indexes().await {
                self.go_offline(&error);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Creates the active segment's file once every earlier segment is durable, so the log end
    /// offset survives a restart even when all older segments are deleted.
    pub(super) async fn ensure_active_file(&self) -> Result<(), StorageError> {
        let active = self.active_segment();
        if active.has_file() {
            return Ok(());
        }
        self.wait_durable(active.base_offset()).await?;
        let _permit = self.lock_disk().await?;
        if let Err(error) = active.file().await {
            self.go_offline(&error);
            return Err(error);
        }
        Ok(())
    }

    pub(super) fn fail_pending(&self) {
        let mut pending = self.pending.borrow_mut();
        let dropped: u64 = pending.iter().map(|batch| batch.bytes.len() as u64).sum();
        pending.clear();
        self.taken_batches.set(0);
        self.pending_bytes.set(self.pending_bytes.get() - dropped);
    }

    /// True while the flusher task is running (tests wait for it to go idle).
    #[cfg(test)]
    pub(super) fn flusher_running(&self) -> bool {
        self.flusher_running.get()
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.cache.remove_log(self.cache_id);
    }
}

/// A sealed segment whose data is all durable and published (the flusher then finalizes it).
/// Published, not only synced: syncs finish out of order, and the time index is written up to
/// the segment's published end.
fn is_finalizable(segment: &Segment) -> bool {
    segment.state() == SegmentState::Sealed
        && segment.durable_bytes() == segment.size_bytes()
        && segment.durable_end_offset() == segment.end_offset()
}

/// Creates the partition directory (off the shard) and makes its entry durable; probes its
/// device for glommio the first time (`dma_probe`).
pub(crate) async fn create_partition_dir(dir: &Path) -> Result<(), StorageError> {
    let owned = dir.to_path_buf();
    let created = super::blocking::run("create partition dir", dir, move || {
        if owned.is_dir() {
            return Ok(false);
        }
        std::fs::create_dir_all(&owned).map(|()| true)
    })
    .await?;
    if !created {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        sync_directory(parent).await?;
    }
    probe_device(dir).await
}
