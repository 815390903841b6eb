//! Partitions: one hosted replica each — its log, producer state, append order, watermarks and
//! leader-epoch cache — and the owner-side operations on it (append, read, list offsets, watch
//! the high watermark, offsets for leader epochs, truncate). Runs on the shard that owns the
//! replica; everything here is `!Send` and lock-free (`Cell`/`RefCell`, no borrow across an
//! `.await`). Later this layer also owns each partition's Raft node (DESIGN §5).
//!
//! Watermarks, as separate values:
//! - log end offset: the next offset to assign (storage);
//! - durable offset: end of the fdatasynced prefix (storage);
//! - high watermark: end of what consumers may see. On one node it follows the durable offset;
//!   with replication it will follow the quorum. It never moves backwards (asserted).
//!
//! Leader epochs (KIP-101/320): every appended batch is stamped with the partition's current
//! leader epoch. A new epoch (at open, or from metadata) is added to the epoch cache at the log
//! end offset and persisted (`leader-epoch-checkpoint`) before any batch of it is appended, as
//! Kafka does when a replica becomes leader. Requests carrying a
//! `current_leader_epoch` are checked against the partition's epoch (`check_leader_epoch`).
//!
//! Files: `hosted.rs` (the shard's hosted partitions: open, close, discard directories),
//! `operation.rs` (the items and results of owner-side requests), `produce.rs`, `read.rs`,
//! `leader_epoch.rs` (the epoch cache), `producer_state.rs` (idempotent producers),
//! `append_order.rs` (first-come-first-served turns).

pub mod append_order;
pub mod delete_records;
pub mod hosted;
pub mod leader_epoch;
pub mod operation;
pub mod produce;
pub mod producer_state;
pub mod read;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::futures::LocalFuture;
use crate::ids::{LeaderEpoch, TopicId, TopicPartition};
use crate::protocol::batch::BatchHeader;
use crate::protocol::error::{self, ErrorCode};
use crate::storage::watermark::Waiters;
use crate::storage::{epoch_checkpoint, AppendInfo, LogConfig, PartitionLog, StorageError};
use append_order::AppendOrder;
use leader_epoch::LeaderEpochCache;
use producer_state::ProducerStates;

/// Timestamp stored in a batch: the producer's, or the broker's at append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// What a partition needs of its topic's configuration (pushed on every metadata change).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionConfig {
    pub log: LogConfig,
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
}

/// What opening a partition rebuilt from its directory besides the log.
pub(crate) struct Recovered {
    /// Whether the directory already records the topic id (`partition.metadata`).
    pub topic_id_recorded: bool,
    pub producers: ProducerStates,
    pub epochs: LeaderEpochCache,
    /// Whether `leader-epoch-checkpoint` exists.
    pub checkpoint_on_disk: bool,
}

/// Where a replicated partition's appends go: its Raft group (`replication::replicas`), installed
/// by that layer when it starts the group. This layer only knows the interface.
pub trait ReplicatedLog {
    /// Proposes a validated batch as leader: offsets and leader epoch are assigned in place.
    /// `Err` is the Kafka error for the client (NOT_LEADER_OR_FOLLOWER, ...), with the leader
    /// this replica knows of, if any.
    fn propose(
        &self,
        batch: BytesMut,
    ) -> LocalFuture<'static, Result<Appended, (ErrorCode, Option<i32>)>>;
    /// Resolves when the proposal is committed (`acks=all`) or, with `leader_only`, once the
    /// leader has it fsynced (`acks=1`); `Err` with the Kafka error if it never will be.
    fn wait(
        &self,
        appended: Appended,
        leader_only: bool,
    ) -> LocalFuture<'static, Result<(), ErrorCode>>;
    /// Whether this replica leads now, and the leader it knows of (node id, -1 if none).
    fn leader(&self) -> (bool, i32);
    /// The term this replica leads in, if it leads.
    fn leader_term(&self) -> Option<u64>;
    /// Replicas in sync as the leader sees them (itself included); 0 when not leading.
    fn in_sync(&self) -> u32;
    /// Leads and is handing leadership over to a follower (it takes no writes meanwhile).
    fn handing_over(&self) -> bool;
    /// Leads and has committed an entry of its own term: it knows the commit point, so it has
    /// applied every committed entry (a DeleteRecords among them) and may serve reads.
    fn serves_reads(&self) -> bool;
}

/// A batch a replicated partition's leader took. `index` 0: a retry of a batch already in the
/// leader's log (an idempotent duplicate), answered once the high watermark passes it while
/// this replica still leads in `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub term: u64,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// How long a replicated partition's leader answers one producer's sequence gap as
/// NOT_LEADER_OR_FOLLOWER before it answers OUT_OF_ORDER_SEQUENCE_NUMBER (`GapHold`).
pub const SEQUENCE_GAP_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// Sequence gaps answered as not taken, per producer. With acks=all nothing acknowledged is
/// lost, so a gap at a leader means the missing batch is still on its way: refused by an old
/// leader, or stuck in a paused one's connection, with the client's later batches already
/// here (librdkafka moves a partition to its new leader without draining what is in flight to
/// the old one). OUT_OF_ORDER_SEQUENCE_NUMBER would make the client bump its epoch and resend
/// the missing batch as a new one, a duplicate if an attempt of it was replicated after all.
/// NOT_LEADER_OR_FOLLOWER (true: the batch was not taken) makes it resend everything in order.
/// A gap that lasts `SEQUENCE_GAP_HOLD` from when it was first answered is a real one and gets
/// OUT_OF_ORDER_SEQUENCE_NUMBER; a batch taken from the producer ends its gap.
#[derive(Debug, Default)]
struct GapHold {
    /// Producer id -> when its current gap was first answered.
    since: std::collections::HashMap<i64, std::time::Instant>,
}

/// Producers with an open gap before expired ones are dropped.
const GAP_HOLD_PRODUCERS_MAX: usize = 1024;

impl GapHold {
    /// A gap from `producer_id` at `now`: whether it is still answered as not taken.
    fn holds(&mut self, producer_id: i64, now: std::time::Instant) -> bool {
        if self.since.len() >= GAP_HOLD_PRODUCERS_MAX {
            self.since
                .retain(|_, first| now.duration_since(*first) < SEQUENCE_GAP_HOLD);
        }
        let first = *self.since.entry(producer_id).or_insert(now);
        now.duration_since(first) < SEQUENCE_GAP_HOLD
    }

    fn taken(&mut self, producer_id: i64) {
        self.since.remove(&producer_id);
    }
}

pub struct Partition {
    pub topic_partition: TopicPartition,
    pub topic_id: TopicId,
    log: Rc<PartitionLog>,
    /// Appends take turns in arrival order.
    append_order: Rc<AppendOrder>,
    /// Idempotent producers' recent sequences, for duplicate and gap detection.
    producers: RefCell<ProducerStates>,
    high_watermark: Cell<i64>,
    leader_epoch: Cell<LeaderEpoch>,
    epochs: RefCell<LeaderEpochCache>,
    /// Whether `leader-epoch-checkpoint` exists. A new, empty partition skips writing it: until
    /// the first write, a lost cache is rebuilt exactly from the batch headers (each carries its
    /// epoch), and creating many partitions costs two fsyncs fewer each.
    checkpoint_on_disk: Cell<bool>,
    /// `partition.metadata` written. A new partition has no directory until its first append
    /// (which writes the file first), so creating many partitions costs no fsyncs.
    topic_id_recorded: Cell<bool>,
    config: RefCell<Rc<PartitionConfig>>,
    /// Driven by a Raft group (`replication::replica`): the high watermark is the commit point
    /// the group sets (`commit_to`), not the durable offset.
    replicated: Cell<bool>,
    /// Sequence gaps answered as not taken (see `GapHold`).
    gap_hold: RefCell<GapHold>,
    /// The group's side of appends (set once it runs).
    writer: RefCell<Option<Rc<dyn ReplicatedLog>>>,
    /// Woken when a replicated partition's high watermark moves.
    high_watermark_waiters: Waiters,
}

impl Partition {
    pub(crate) fn new(
        topic_partition: TopicPartition,
        topic_id: TopicId,
        log: Rc<PartitionLog>,
        recovered: Recovered,
        leader_epoch: LeaderEpoch,
        config: PartitionConfig,
    ) -> Partition {
        let Recovered {
            topic_id_recorded,
            producers,
            epochs,
            checkpoint_on_disk,
        } = recovered;
        let high_watermark = log.durable_end_offset();
        Partition {
            topic_partition,
            topic_id,
            log,
            append_order: AppendOrder::new(),
            producers: RefCell::new(producers),
            high_watermark: Cell::new(high_watermark),
            leader_epoch: Cell::new(leader_epoch),
            epochs: RefCell::new(epochs),
            checkpoint_on_disk: Cell::new(checkpoint_on_disk),
            topic_id_recorded: Cell::new(topic_id_recorded),
            config: RefCell::new(Rc::new(config)),
            replicated: Cell::new(false),
            gap_hold: RefCell::new(GapHold::default()),
            writer: RefCell::new(None),
            high_watermark_waiters: Waiters::default(),
        }
    }

    pub fn log(&self) -> &Rc<PartitionLog> {
        &self.log
    }

    pub fn config(&self) -> Rc<PartitionConfig> {
        self.config.borrow().clone()
    }

    /// Installs a changed topic configuration (the log's part takes effect at its next roll or
    /// retention pass).
    pub fn set_config(&self, config: PartitionConfig) {
        if *self.config() == config {
            return;
        }
        self.log.set_config(config.log.clone());
        *self.config.borrow_mut() = Rc::new(config);
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn durable_offset(&self) -> i64 {
        self.log.durable_end_offset()
    }

    /// End of what consumers may read. On one node it follows the durable offset; a replicated
    /// partition's is the commit point its Raft group sets.
    pub fn high_watermark(&self) -> i64 {
        if !self.replicated.get() {
            self.advance_high_watermark(self.log.durable_end_offset());
        }
        self.high_watermark.get()
    }

    /// Hands the high watermark to a Raft group when it opens the replica (before anything is
    /// served): it starts at `commit_end`, the end of what the group knows committed (at open a
    /// log may hold an uncommitted tail), and from now on only `commit_to` moves it.
    pub fn set_replicated(&self, commit_end: i64) {
        self.replicated.set(true);
        self.high_watermark
            .set(commit_end.min(self.log.durable_end_offset()));
    }

    /// A replicated partition's commit point moved to `end_offset` (never past the durable
    /// offset: an entry counts as committed here only once this replica has it fsynced).
    pub fn commit_to(&self, end_offset: i64) {
        let before = self.high_watermark.get();
        self.advance_high_watermark(end_offset.min(self.log.durable_end_offset()));
        if self.high_watermark.get() != before {
            self.high_watermark_waiters.wake_all();
        }
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.get()
    }

    pub fn set_writer(&self, writer: Option<Rc<dyn ReplicatedLog>>) {
        *self.writer.borrow_mut() = writer;
        self.high_watermark_waiters.wake_all();
    }

    pub fn writer(&self) -> Option<Rc<dyn ReplicatedLog>> {
        self.writer.borrow().clone()
    }

    /// This replica took a batch from `producer_id`: a gap it had is filled.
    pub fn sequence_taken_from(&self, producer_id: i64) {
        self.gap_hold.borrow_mut().taken(producer_id);
    }

    /// While this replica hands its leadership over, and then until it knows the new leader
    /// (at most `limit`, the hand-over's own bound): a produce refused now would name this node
    /// as the leader it knows of, so it is refused once the new leader is known, and its
    /// KIP-951 hint sends the client there.
    pub async fn wait_while_handing_over(&self, limit: std::time::Duration) {
        let Some(writer) = self.writer() else { return };
        if !writer.handing_over() {
            return;
        }
        let over = async {
            self.high_watermark_waiters
                .wait_until(|| {
                    self.is_offline() || (!writer.handing_over() && writer.leader().1 >= 0)
                })
                .await;
        };
        let waits: Vec<LocalFuture<'_, ()>> =
            vec![Box::pin(over), Box::pin(glommio::timer::sleep(limit))];
        crate::futures::select_first(waits).await;
    }

    /// A sequence gap from `producer_id`: whether it is answered NOT_LEADER_OR_FOLLOWER now
    /// (see `GapHold`).
    pub fn sequence_gap_held(&self, producer_id: i64) -> bool {
        self.gap_hold
            .borrow_mut()
            .holds(producer_id, std::time::Instant::now())
    }

    /// For a replicated partition: None if this replica leads, else the error for a client
    /// (NOT_LEADER_OR_FOLLOWER) and the leader it knows of.
    pub fn not_leader(&self) -> Option<(ErrorCode, i32)> {
        if !self.replicated.get() {
            return None;
        }
        match self.writer() {
            Some(writer) => match writer.leader() {
                (true, _) => None,
                (false, leader) => Some((error::NOT_LEADER_OR_FOLLOWER, leader)),
            },
            None => Some((error::NOT_LEADER_OR_FOLLOWER, -1)),
        }
    }

    /// `not_leader`, for reads: a new leader serves none until it has committed an entry of
    /// its own term (until then it may not have applied a committed DeleteRecords, and would
    /// serve records already answered as deleted); NOT_LEADER_OR_FOLLOWER meanwhile (a round
    /// trip after its election), which clients retry.
    pub fn not_leader_for_reads(&self) -> Option<(ErrorCode, i32)> {
        if let Some(refused) = self.not_leader() {
            return Some(refused);
        }
        match self.writer() {
            Some(writer) if self.replicated.get() && !writer.serves_reads() => {
                Some((error::NOT_LEADER_OR_FOLLOWER, writer.leader().1))
            }
            _ => None,
        }
    }

    /// Not leading any more, or leading again: gaps seen before are not this leadership's.
    pub fn forget_sequence_gaps(&self) {
        self.gap_hold.borrow_mut().since.clear();
    }

    /// `chunks` (whole batches, as `PartitionLog::read` returns them) cut after the last batch
    /// below the high watermark: what a consumer of a replicated partition may see.
    pub fn below_high_watermark(&self, chunks: Vec<Bytes>) -> Vec<Bytes> {
        let end = self.high_watermark.get();
        let mut kept = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let mut at = 0usize;
            while let Ok(header) = BatchHeader::parse(&chunk[at..]) {
                if header.last_offset() >= end || at + header.size_bytes() > chunk.len() {
                    break;
                }
                at += header.size_bytes();
            }
            if at > 0 {
                kept.push(chunk.slice(..at));
            }
            if at < chunk.len() {
                break;
            }
        }
        kept
    }

    fn advance_high_watermark(&self, offset: i64) {
        let current = self.high_watermark.get();
        if offset > current {
            assert!(
                offset <= self.log.log_end_offset(),
                "{}: high watermark {offset} past log end {}",
                self.topic_partition,
                self.log.log_end_offset()
            );
            self.high_watermark.set(offset);
        }
    }

    pub fn is_offline(&self) -> bool {
        self.log.is_offline()
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch.get()
    }

    /// A new leader epoch from cluster metadata (it only grows). As Kafka does on becoming
    /// leader, the epoch cache gets the new epoch at the log end offset, persisted before any
    /// batch of the new epoch is appended.
    pub async fn set_leader_epoch(&self, epoch: LeaderEpoch) -> Result<(), StorageError> {
        assert!(
            epoch >= self.leader_epoch.get(),
            "{}: leader epoch {epoch:?} below {:?}",
            self.topic_partition,
            self.leader_epoch.get()
        );
        // The checkpoint is written before the epoch is published: no batch carries an epoch
        // the file on disk does not know.
        let start_offset = self.log.log_end_offset();
        let mut epochs = self.epochs.borrow().clone();
        let changed = epochs.assign(epoch, start_offset);
        let empty = start_offset == 0 && self.log.log_start_offset() == 0;
        if changed && (self.checkpoint_on_disk.get() || !empty) {
            epoch_checkpoint::write(self.log.dir(), epochs.entries()).await?;
            self.checkpoint_on_disk.set(true);
        }
        *self.epochs.borrow_mut() = epochs;
        self.leader_epoch.set(self.leader_epoch.get().max(epoch));
        Ok(())
    }

    async fn write_checkpoint(&self) -> Result<(), StorageError> {
        let entries = self.epochs.borrow().entries().to_vec();
        epoch_checkpoint::write(self.log.dir(), &entries).await?;
        self.checkpoint_on_disk.set(true);
        Ok(())
    }

    pub fn epoch_cache(&self) -> LeaderEpochCache {
        self.epochs.borrow().clone()
    }

    /// Kafka's check of a request's `current_leader_epoch`: -1 skips it; an older epoch is
    /// FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH
    /// (this broker has not caught up yet).
    pub fn check_leader_epoch(&self, current_leader_epoch: LeaderEpoch) -> ErrorCode {
        let ours = self.leader_epoch.get();
        if current_leader_epoch == LeaderEpoch::UNDEFINED || current_leader_epoch == ours {
            error::NONE
        } else if current_leader_epoch < ours {
            error::FENCED_LEADER_EPOCH
        } else {
            error::UNKNOWN_LEADER_EPOCH
        }
    }

    /// Appends one validated batch in this partition's arrival order (the caller holds its
    /// turn), stamped with the current leader epoch. Not committed until `wait_committed`.
    pub async fn append_in_turn(&self, batch: BytesMut) -> Result<AppendInfo, StorageError> {
        self.record_topic_id().await?;
        append_with_backpressure(&self.log, batch, self.leader_epoch.get()).await
    }

    /// Appends a batch of a replicated log whose offsets and leader epoch the Raft leader
    /// assigned already (every replica stores the same batch at the same offsets). A batch of a
    /// leader epoch newer than the cache knows opens that epoch in the cache (persisted first,
    /// as `set_leader_epoch` does); after a truncation an older epoch can follow again.
    pub async fn append_entry(
        &self,
        batch: bytes::Bytes,
        epoch: LeaderEpoch,
    ) -> Result<AppendInfo, StorageError> {
        self.record_topic_id().await?;
        let start_offset = self.log.log_end_offset();
        let latest = self.epochs.borrow().latest_epoch();
        if latest.is_none_or(|latest| epoch > latest) {
            let mut epochs = self.epochs.borrow().clone();
            epochs.assign(epoch, start_offset);
            epoch_checkpoint::write(self.log.dir(), epochs.entries()).await?;
            self.checkpoint_on_disk.set(true);
            *self.epochs.borrow_mut() = epochs;
        }
        self.leader_epoch.set(self.leader_epoch.get().max(epoch));
        let header = BatchHeader::parse(&batch).ok();
        let info = self.log.append_assigned(batch)?;
        if let Some(header) = header {
            // Every replica keeps its producers' sequences as its log grows, so a new
            // leader knows them the moment it leads (Kafka's followers do the same).
            self.producers
                .borrow_mut()
                .record(&header, info.base_offset);
        }
        Ok(info)
    }

    async fn record_topic_id(&self) -> Result<(), StorageError> {
        if !self.topic_id_recorded.get() {
            // The first append of a new partition: its directory and topic id come first.
            self.log.ensure_dir().await?;
            let topic_id = self.topic_id.to_string();
            crate::storage::partition_metadata::write_topic_id(self.log.dir(), &topic_id).await?;
            self.topic_id_recorded.set(true);
        }
        Ok(())
    }

    /// Appends an internal batch (the group coordinator's records) in arrival order and waits
    /// until it is committed: durable on one node; on a replicated partition proposed by this
    /// replica, which must lead, and committed by its group. `Err`: the Kafka error
    /// (NOT_LEADER_OR_FOLLOWER when this replica does not lead or stops leading before the
    /// commit, the storage error's code when the log fails).
    pub async fn append_and_commit(&self, batch: BytesMut) -> Result<i64, ErrorCode> {
        let ticket = self.append_order.take();
        ticket.turn().await;
        if self.replicated.get() {
            let Some(writer) = self.writer() else {
                return Err(error::NOT_LEADER_OR_FOLLOWER);
            };
            let proposed = writer.propose(batch).await;
            drop(ticket);
            let appended = proposed.map_err(|(code, _leader)| code)?;
            writer.wait(appended, false).await?;
            return Ok(appended.base_offset);
        }
        let appended = self.append_in_turn(batch).await;
        drop(ticket);
        let info = appended.map_err(|storage_error| storage_error_code(&storage_error))?;
        self.wait_committed(info.last_offset + 1)
            .await
            .map_err(|storage_error| storage_error_code(&storage_error))?;
        Ok(info.base_offset)
    }

    /// Whether this replica may act for the partition now, and in which term: `Some(0)` for a
    /// partition that is not replicated (this node is its only replica), `Some(term)` for a
    /// replicated one this replica leads, None otherwise.
    pub fn leading_term(&self) -> Option<u64> {
        if !self.replicated.get() {
            return Some(0);
        }
        self.writer().and_then(|writer| writer.leader_term())
    }

    /// Marks a partition whose replicas form a Raft group before the group is started (opened
    /// replicas take no writes and serve no reads until their group says they lead).
    pub fn mark_replicated(&self) {
        self.replicated.set(true);
    }

    /// Resolves once every offset below `end_offset` is committed (on one node: durable), and
    /// the high watermark has moved past it. Not for replicated partitions: their commits are
    /// their Raft group's (`ReplicatedLog::wait`).
    pub async fn wait_committed(&self, end_offset: i64) -> Result<(), StorageError> {
        assert!(
            !self.replicated.get(),
            "{}: a replicated partition's commit is its group's",
            self.topic_partition
        );
        self.log.wait_durable(end_offset).await?;
        self.advance_high_watermark(self.log.durable_end_offset());
        Ok(())
    }

    /// Resolves when the high watermark passes `offset`, or the partition goes offline or
    /// closes (callers re-check).
    pub async fn wait_for_high_watermark_above(&self, offset: i64) {
        if self.replicated.get() {
            self.high_watermark_waiters
                .wait_until(|| {
                    self.high_watermark.get() > offset
                        || self.is_offline()
                        || self.not_leader().is_some()
                })
                .await;
            return;
        }
        self.log.wait_for_durable_above(offset).await;
        self.advance_high_watermark(self.log.durable_end_offset());
    }

    /// Records an idempotent batch a replicated leader proposed at `base_offset` (the group's
    /// owner calls it as the proposal is taken, before anything else runs on the shard).
    pub fn record_producer_batch(&self, header: &BatchHeader, base_offset: i64) {
        self.producers.borrow_mut().record(header, base_offset);
    }

    /// Forgets idempotent batches at or past `offset`: a deposed leader's proposals that its
    /// log does not hold.
    pub fn forget_producer_batches_from(&self, offset: i64) {
        self.producers.borrow_mut().forget_from(offset);
    }

    /// Wakes everything waiting on this partition's high watermark (leadership changed).
    pub fn wake_high_watermark_waiters(&self) {
        self.high_watermark_waiters.wake_all();
    }

    /// Removes every offset at or past `offset` (above the high watermark only: committed data
    /// is never truncated) and drops the epoch entries that started there.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        assert!(
            offset >= self.high_watermark.get(),
            "{}: truncating to {offset}, below the high watermark {}",
            self.topic_partition,
            self.high_watermark.get()
        );
        self.log.truncate_to(offset).await?;
        self.producers.borrow_mut().forget_from(offset);
        if self.epochs.borrow_mut().truncate_from_end(offset) {
            self.write_checkpoint().await?;
        }
        Ok(())
    }

    /// DeleteRecords (applied when committed, on every replica of a replicated partition):
    /// moves the log start offset to `offset` once the log is durable to it, persisted first.
    /// Never backwards; an offset past the log end stops at the end.
    pub async fn advance_log_start(&self, offset: i64) -> Result<(), StorageError> {
        let offset = offset.min(self.log.log_end_offset());
        if offset <= self.log.log_start_offset() {
            return Ok(());
        }
        self.log.wait_durable(offset).await?;
        self.log.advance_log_start_offset(offset).await?;
        self.on_log_start_moved().await
    }

    /// Retention or DeleteRecords moved the log start: drop epoch entries wholly below it.
    pub async fn on_log_start_moved(&self) -> Result<(), StorageError> {
        let start = self.log.log_start_offset();
        if self.epochs.borrow_mut().truncate_from_start(start) {
            self.write_checkpoint().await?;
        }
        Ok(())
    }

    pub(crate) fn append_order(&self) -> &Rc<AppendOrder> {
        &self.append_order
    }

    pub(crate) fn producers(&self) -> &RefCell<ProducerStates> {
        &self.producers
    }
}

/// Write-behind buffers of a partition full (disk slower than producers): wait for the flush in
/// flight, then try again, so producers slow down instead of seeing errors.
async fn append_with_backpressure(
    log: &PartitionLog,
    batch: BytesMut,
    epoch: LeaderEpoch,
) -> Result<AppendInfo, StorageError> {
    /// Flushes to wait for before giving up with a retriable error.
    const APPEND_ATTEMPTS_MAX: u32 = 8;
    let batch_bytes = batch.len() as u64;
    for _ in 0..APPEND_ATTEMPTS_MAX {
        if log.pending_bytes() + batch_bytes <= crate::storage::WRITE_BEHIND_BYTES_MAX {
            break;
        }
        log.wait_durable(log.log_end_offset()).await?;
    }
    log.append(batch, epoch.0)
}

/// The Kafka error code for a storage failure, decided once here.
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

#[cfg(test)]
mod tests {
    use super::{GapHold, GAP_HOLD_PRODUCERS_MAX, SEQUENCE_GAP_HOLD};
    use std::time::{Duration, Instant};

    #[test]
    fn a_gap_is_held_per_producer_until_a_batch_is_taken_or_the_bound_passes() {
        let start = Instant::now();
        let mut hold = GapHold::default();
        assert!(hold.holds(7, start));
        assert!(
            hold.holds(7, start + Duration::from_secs(5)),
            "same gap, in bound"
        );
        assert!(
            hold.holds(8, start + Duration::from_secs(9)),
            "another producer's own"
        );
        assert!(
            !hold.holds(7, start + SEQUENCE_GAP_HOLD),
            "a lasting gap is real"
        );
        assert!(hold.holds(8, start + Duration::from_secs(10)));
        hold.taken(7);
        assert!(
            hold.holds(7, start + Duration::from_secs(60)),
            "a taken batch ends the gap: a new one starts its own clock"
        );
        for producer in 0..GAP_HOLD_PRODUCERS_MAX as i64 {
            hold.holds(1000 + producer, start);
        }
        hold.holds(1, start + Duration::from_secs(30));
        assert!(
            hold.since.len() <= 3,
            "expired gaps are dropped when many are open"
        );
    }
}
