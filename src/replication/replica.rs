//! One partition replica's Raft node: raft-rs's `RawNode` whose log *is* the partition's Kafka
//! log (the mapping is in this module's parent `//!`). Driven by the shard that owns the
//! replica; `!Send`, no locks.
//!
//! - `ReplicaLog` is raft-rs's `Storage`: the hard state, the replica set, and a window of the
//!   newest entries (their terms, Kafka end offsets and bytes — the same `Bytes` the log stores,
//!   not a copy). Entries before the window are compacted away once applied (and, on a leader,
//!   once every voter has them), so a replica holds `WINDOW_ENTRIES_MAX` entries or
//!   `WINDOW_BYTES_MAX` bytes at most beyond what its followers need.
//! - Persisting a Ready: the hard state (`raft-state`, fsynced) when the term or vote changed,
//!   before anything else; then the entries, appended to the Kafka log at the offsets the leader
//!   assigned (data batches as they are; a new leader's empty entry and configuration changes
//!   as control batches); a conflicting suffix is truncated first (Raft's rule; never below the
//!   high watermark). A leader sends its appends before its own fsync (Raft thesis 10.2.1);
//!   a follower's acknowledgements leave only once its entries are fsynced.
//! - The high watermark is the Kafka end offset of the last committed entry this replica has
//!   fsynced (`Partition::commit_to`).
//! - Open rebuilds the window by scanning the log from the newest anchor in `raft-state` that
//!   still lies in it (anchors are written at compactions and segment rolls), numbering the
//!   batches from the anchor's Raft index; each batch's partition leader epoch is its term.
//! - A proposal's outcome needs no bookkeeping: it is committed once the high watermark passes
//!   its offsets and the leader-epoch cache still says its term wrote them; another term there
//!   means a new leader overwrote it (`Replica::outcome`).
//!
//! Not built yet (the next increments of the replication issue): sending a follower whose
//! entries were compacted away the leader's segments (raft-rs asks for a snapshot; until then a
//! leader keeps every entry a voter still needs, and only a replica whose window exceeds
//! `WINDOW_BYTES_HARD_MAX` drops them, leaving that voter to be rebuilt), producer state on
//! followers, and the per-shard driver that ticks all groups and batches their messages.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use raft::prelude::{Message, MessageType};
use raft::RawNode;

use super::group::{can_take, GroupConfig};
use super::replica_state::{self, Anchor, ReplicaState};
use super::{ConfState, Entry, EntryType, HardState, Snapshot};
use crate::ids::LeaderEpoch;
use crate::partition::Partition;
use crate::protocol::batch::{
    assign_offset, encode_control_batch, BatchHeader, CONTROL_LEADER_CHANGE,
    CONTROL_RAFT_CONF_CHANGE,
};
use crate::protocol::records::{control_record, delete_records_offset, split_batches};
use crate::storage::{wall_clock_ms, StorageError};

/// Entries kept in memory beyond what the replica still needs.
pub const WINDOW_ENTRIES_MAX: usize = 4096;
/// Bytes kept in memory beyond what the replica still needs.
pub const WINDOW_BYTES_MAX: u64 = 32 << 20;
/// Bytes after which a leader compacts even entries a lagging voter still needs.
pub const WINDOW_BYTES_HARD_MAX: u64 = 256 << 20;
/// Bytes read per step when the window is rebuilt at open.
const SCAN_READ_BYTES: u32 = 1 << 20;

fn corrupt(partition: &Partition, detail: String) -> StorageError {
    StorageError::Corrupt {
        path: partition.log().dir().join(replica_state::FILE_NAME),
        position: 0,
        detail,
    }
}

/// raft-rs's storage for a replica: the hard state, the replica set and the window of entries.
#[derive(Default)]
pub struct ReplicaLog {
    hard_state: HardState,
    conf_state: ConfState,
    /// The entry just before the window (compacted, or the start of the replicated log).
    base: Anchor,
    entries: VecDeque<Entry>,
    /// Kafka end offset of each entry of `entries`.
    end_offsets: VecDeque<i64>,
    window_bytes: u64,
}

impl ReplicaLog {
    pub fn last_index(&self) -> u64 {
        self.base.index + self.entries.len() as u64
    }

    /// The Kafka offset after entry `index`, if it is the base or in the window.
    pub fn end_offset_of(&self, index: u64) -> Option<i64> {
        if index == self.base.index {
            return Some(self.base.end_offset);
        }
        let position = index.checked_sub(self.base.index + 1)? as usize;
        self.end_offsets.get(position).copied()
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        let position = index.checked_sub(self.base.index + 1)? as usize;
        self.entries.get(position).map(|entry| entry.term)
    }

    fn anchor_at(&self, index: u64) -> Option<Anchor> {
        Some(Anchor {
            index,
            term: self.term_of(index)?,
            end_offset: self.end_offset_of(index)?,
        })
    }

    fn push(&mut self, entry: Entry, end_offset: i64) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.window_bytes += entry.data.len() as u64;
        self.entries.push_back(entry);
        self.end_offsets.push_back(end_offset);
    }

    /// Drops the entries after `index`.
    fn truncate_after(&mut self, index: u64) {
        let keep = (index - self.base.index) as usize;
        while self.entries.len() > keep {
            let entry = self.entries.pop_back().expect("non-empty");
            self.end_offsets.pop_back();
            self.window_bytes -= entry.data.len() as u64;
        }
    }

    /// Forgets the entries up to `index` (which becomes the base).
    fn compact_to(&mut self, index: u64) {
        let Some(anchor) = self.anchor_at(index) else {
            return;
        };
        while self.base.index < index {
            let entry = self.entries.pop_front().expect("index in the window");
            self.end_offsets.pop_front();
            self.window_bytes -= entry.data.len() as u64;
            self.base.index += 1;
        }
        self.base = anchor;
    }
}

impl raft::Storage for ReplicaLog {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        Ok(raft::RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base.index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let start = (low - self.base.index - 1) as usize;
        let end = (high - self.base.index - 1) as usize;
        let mut entries: Vec<Entry> = self.entries.range(start..end).cloned().collect();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.base.index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        self.term_of(index)
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.base.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index())
    }

    /// The window's base as a snapshot: its index, term and replica set, and as data the Kafka
    /// offset it ends at. A follower that gets it copies the batches up to that offset from
    /// the leader's segments (`Replica::catch_up`).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.base.index == 0 || self.base.index < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = self.base.index;
        metadata.term = self.base.term;
        metadata.set_conf_state(self.conf_state.clone());
        snapshot.data = Bytes::copy_from_slice(&self.base.end_offset.to_le_bytes());
        Ok(snapshot)
    }
}

/// The Kafka end offset a partition snapshot stands for, if its data is well formed.
fn snapshot_end_offset(snapshot: &Snapshot) -> Option<i64> {
    let bytes: [u8; 8] = snapshot.data.as_ref().try_into().ok()?;
    Some(i64::from_le_bytes(bytes)).filter(|offset| *offset >= 0)
}

/// Why a proposal was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica does not lead (the leader it knows of, if any).
    NotLeader(Option<u64>),
    /// The batch cannot be stored (the caller validated it; this is a bug or a full queue).
    Invalid(String),
}

/// A batch this replica proposed as leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub index: u64,
    pub term: u64,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// A snapshot this follower installed: the batches up to `end_offset` are being copied from
/// `from_node`'s segments (by the owner, through `catch_up` and `append_caught_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub from_node: u64,
    /// The next offset this replica needs.
    pub next_offset: i64,
    pub end_offset: i64,
}

struct Installing {
    ready: raft::Ready,
    anchor: Anchor,
    from_node: u64,
}

/// Ticks a leader waits for a follower to finish installing a snapshot before it reports the
/// snapshot failed (and probes, sending another if still needed).
const SNAPSHOT_TIMEOUT_TICKS: u32 = 300;

pub struct Replica {
    node: RawNode<ReplicaLog>,
    partition: Rc<Partition>,
    /// What `raft-state` holds (the hard state there may lag on commit only).
    state: ReplicaState,
    state_dirty: bool,
    /// Segment-roll anchors, written to `raft-state` once their entry is committed.
    pending_anchors: Vec<Anchor>,
    /// A snapshot being installed: the Ready that carried it waits until the batches are here.
    installing: Option<Installing>,
    /// Snapshots sent (as leader) and ticks since, by follower.
    snapshots_sent: Vec<(u64, u32)>,
    name: String,
}

impl Replica {
    /// Opens the Raft node of `partition` (opened by the caller): reads `raft-state` (a new
    /// replica writes one with `config`'s replica set, anchored at the log's end: batches
    /// already there are outside Raft, as if in a snapshot every replica has) and rebuilds the
    /// window from the log.
    pub async fn open(
        config: &GroupConfig,
        partition: Rc<Partition>,
    ) -> Result<Replica, StorageError> {
        let log = partition.log().clone();
        let dir = log.dir().to_path_buf();
        let state = match replica_state::read(&dir).await? {
            Some(state) => state,
            None => {
                log.ensure_dir().await?;
                let state = ReplicaState {
                    term: 0,
                    vote: 0,
                    commit: 0,
                    voters: config.voters.clone(),
                    learners: config.learners.clone(),
                    anchors: vec![Anchor {
                        index: 0,
                        term: 0,
                        end_offset: log.log_end_offset(),
                    }],
                };
                replica_state::write(&dir, &state).await?;
                state
            }
        };
        // From the first stored batch: DeleteRecords may have moved the log start past the
        // anchor entries are numbered from.
        let (start, end) = (log.first_stored_offset(), log.log_end_offset());
        let anchor = state
            .anchors
            .iter()
            .rev()
            .find(|anchor| anchor.end_offset >= start && anchor.end_offset <= end)
            .copied()
            .ok_or_else(|| {
                corrupt(
                    &partition,
                    format!(
                        "no anchor lies in the log [{start}, {end}): {:?}",
                        state.anchors
                    ),
                )
            })?;
        let mut store = ReplicaLog {
            base: anchor,
            ..ReplicaLog::default()
        };
        let mut next_offset = anchor.end_offset;
        while next_offset < end {
            let chunks = log.read_stored(next_offset, SCAN_READ_BYTES).await?;
            if chunks.is_empty() {
                break;
            }
            for batch in chunks.into_iter().flat_map(split_batches) {
                let header = BatchHeader::parse(&batch)
                    .map_err(|error| corrupt(&partition, error.to_string()))?;
                if header.base_offset != next_offset || header.partition_leader_epoch < 0 {
                    return Err(corrupt(
                        &partition,
                        format!(
                            "batch at {} (epoch {}) where entry {} at {next_offset} belongs",
                            header.base_offset,
                            header.partition_leader_epoch,
                            store.last_index() + 1
                        ),
                    ));
                }
                let mut entry = entry_from_batch(&batch, &header);
                entry.index = store.last_index() + 1;
                next_offset = header.last_offset() + 1;
                store.push(entry, next_offset);
            }
        }
        let last_term = store.term_of(store.last_index()).unwrap_or_default();
        store.hard_state.term = state.term.max(last_term);
        store.hard_state.vote = if state.term >= last_term {
            state.vote
        } else {
            0
        };
        store.hard_state.commit = state.commit.clamp(store.base.index, store.last_index());
        store.conf_state.voters = state.voters.clone();
        store.conf_state.learners = state.learners.clone();
        let commit = store.hard_state.commit;
        let commit_end = store
            .end_offset_of(commit)
            .expect("commit lies in the window");
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: commit,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            // A fixed timeout only where a simulation must be deterministic.
            max_election_tick: if config.fixed_election_timeout {
                config.election_ticks + 1
            } else {
                0
            },
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|error| corrupt(&partition, error.to_string()))?;
        let logger = super::logger::for_group(&config.name);
        let node = RawNode::new(&raft_config, store, &logger)
            .map_err(|error| corrupt(&partition, error.to_string()))?;
        // Never below the log start (everything below it was committed when it moved).
        partition.set_replicated(commit_end.max(log.log_start_offset()));
        Ok(Replica {
            node,
            partition,
            state,
            state_dirty: false,
            pending_anchors: Vec::new(),
            installing: None,
            snapshots_sent: Vec::new(),
            name: config.name.clone(),
        })
    }

    pub fn partition(&self) -> &Rc<Partition> {
        &self.partition
    }

    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == raft::StateRole::Leader
    }

    /// Leads and is handing leadership over: raft-rs drops proposals until the transfer
    /// completes or times out (an election timeout).
    pub fn is_transferring(&self) -> bool {
        self.is_leader() && self.node.raft.lead_transferee.is_some()
    }

    /// The leader this replica knows of (0: none).
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Whether the commit point is an entry of the current term (a new leader's first entry
    /// committed: it knows everything committed before it).
    pub fn committed_in_term(&self) -> bool {
        let log = &self.node.raft.raft_log;
        log.term(log.committed)
            .is_ok_and(|term| term == self.node.raft.term)
    }

    pub fn committed(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// One tick of the group's clock (ignored while a snapshot is installed).
    /// (raft id, highest index known replicated there) of each voter, as this replica's
    /// progress tracker has it (meaningful on a leader).
    pub fn voter_progress(&self) -> Vec<(u64, u64)> {
        let progress = self.node.raft.prs();
        progress
            .conf()
            .voters()
            .ids()
            .iter()
            .map(|id| (id, progress.get(id).map_or(0, |pr| pr.matched)))
            .collect()
    }

    /// Raft ids of the voters.
    pub fn voters(&self) -> Vec<u64> {
        self.node.raft.prs().conf().voters().ids().iter().collect()
    }

    /// A leader with nothing left to do: every entry committed, applied and held by every
    /// voter, no transfer, snapshot or configuration change under way. Its group may quiesce.
    pub fn quiescent(&self) -> bool {
        let raft = &self.node.raft;
        let last = raft.raft_log.last_index();
        self.is_leader()
            && !self.is_transferring()
            && self.installing.is_none()
            && self.snapshots_sent.is_empty()
            && !self.node.has_ready()
            && raft.raft_log.committed == last
            && raft.raft_log.applied == last
            && raft.pending_conf_index <= last
            && self.partition.high_watermark() == self.partition.log_end_offset()
            && self
                .voter_progress()
                .into_iter()
                .all(|(_, matched)| matched == last)
    }

    /// Whether this follower can quiesce on the word of `leader` (raft id) in `term` that every
    /// entry up to `commit` is committed and held by every voter: it must follow that leader in
    /// that term and hold and know committed exactly that much (else it stays awake; Raft
    /// brings it up to date and the leader quiesces again later).
    pub fn can_quiesce(&self, term: u64, leader: u64, commit: u64) -> bool {
        let raft = &self.node.raft;
        raft.state == raft::StateRole::Follower
            && raft.term == term
            && raft.leader_id == leader
            && raft.raft_log.last_index() == commit
            && raft.raft_log.committed == commit
            && self.installing.is_none()
            && !self.node.has_ready()
    }

    /// Wakes a quiesced group: its clock starts again from a fresh lease (a leader counts its
    /// followers as recently heard from, so check-quorum does not depose it on the first tick
    /// for the silence it asked for; but not those whose node is known to be down, so a leader
    /// cut off from its quorum steps down as soon as it would have awake).
    pub fn wake(&mut self, is_down: impl Fn(u64) -> bool) {
        let leader = self.is_leader();
        let id = self.id();
        let raft = &mut self.node.raft;
        raft.election_elapsed = 0;
        if leader {
            for (peer, progress) in raft.mut_prs().iter_mut() {
                progress.recent_active = *peer == id || !is_down(*peer);
            }
        }
    }

    /// The node of `leader` (raft id) is down: if this replica follows it, its lease ends now
    /// and it campaigns within one (randomised) election timeout, instead of first waiting a
    /// whole one out; votes it is asked for are granted from now on.
    pub fn leader_lost(&mut self, leader: u64) {
        if self.is_leader() || self.leader_id() != leader {
            return;
        }
        let raft = &mut self.node.raft;
        raft.reset_randomized_election_timeout();
        raft.election_elapsed = raft.election_elapsed.max(raft.election_timeout());
    }

    pub fn tick(&mut self) {
        if self.installing.is_some() {
            return;
        }
        self.node.tick();
        let mut failed = Vec::new();
        let progress = self.node.raft.prs();
        self.snapshots_sent.retain_mut(|(to, ticks)| {
            *ticks += 1;
            let waiting = progress
                .get(*to)
                .is_some_and(|pr| pr.state == raft::ProgressState::Snapshot);
            if waiting && *ticks > SNAPSHOT_TIMEOUT_TICKS {
                failed.push(*to);
            }
            waiting && *ticks <= SNAPSHOT_TIMEOUT_TICKS
        });
        for to in failed {
            self.node.report_snapshot(to, raft::SnapshotStatus::Failure);
        }
    }

    pub fn campaign(&mut self) {
        let _ = self.node.campaign();
    }

    /// Hands leadership to `to` (a voter that is caught up; raft-rs checks).
    pub fn transfer_leader(&mut self, to: u64) {
        self.node.transfer_leader(to);
    }

    /// Takes a message from a peer. Dropped: messages that would trip raft-rs's fatal checks
    /// (see `group::can_take`), snapshots without a valid end offset, proposals (only the owner
    /// proposes), and everything while a snapshot is being installed.
    pub fn step(&mut self, message: Message) -> bool {
        if self.installing.is_some()
            || message.msg_type == MessageType::MsgPropose
            || (message.msg_type == MessageType::MsgSnapshot
                && snapshot_end_offset(message.get_snapshot()).is_none())
            || !can_take(&self.node, &message)
        {
            return false;
        }
        self.node.step(message).is_ok()
    }

    /// The Kafka offset the next entry appended to the Raft log starts at.
    fn next_offset(&self) -> i64 {
        let raft_log = &self.node.raft.raft_log;
        let store = self.node.store();
        let first_unstable = raft_log.unstable.offset;
        let mut end = store
            .end_offset_of(first_unstable - 1)
            .expect("the entry before the unstable ones is in the window");
        for entry in &raft_log.unstable.entries {
            end = entry_end_offset(entry, end);
        }
        end
    }

    /// Proposes a validated batch (as leader): assigns its offsets and leader epoch (the term)
    /// in place and hands it to Raft without a copy. Committed once `outcome` says so.
    pub fn propose(&mut self, mut batch: BytesMut) -> Result<Proposal, ProposeError> {
        if !self.is_leader() {
            let leader = self.leader_id();
            return Err(ProposeError::NotLeader((leader != 0).then_some(leader)));
        }
        let header =
            BatchHeader::parse(&batch).map_err(|error| ProposeError::Invalid(error.to_string()))?;
        let term = self.term();
        let epoch = i32::try_from(term)
            .map_err(|_| ProposeError::Invalid(format!("term {term} exceeds an epoch")))?;
        let base_offset = self.next_offset();
        assign_offset(&mut batch, base_offset, epoch);
        let entry = Entry {
            data: batch.freeze(),
            ..Entry::default()
        };
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.id();
        message.entries = vec![entry].into();
        let before = self.last_index();
        if self.node.step(message).is_err() || self.last_index() != before + 1 {
            let leader = self.leader_id();
            return Err(ProposeError::NotLeader(
                (leader != 0 && leader != self.id()).then_some(leader),
            ));
        }
        Ok(Proposal {
            index: before + 1,
            term,
            base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
        })
    }

    /// Some(true) once `proposal` is committed, Some(false) once it never will be (another
    /// leader's entry took its place), None while undecided.
    pub fn outcome(&self, proposal: &Proposal) -> Option<bool> {
        let raft_log = &self.node.raft.raft_log;
        if let Ok(term) = raft_log.term(proposal.index) {
            if term != proposal.term && term != 0 {
                return Some(false);
            }
        }
        if self.partition.high_watermark() <= proposal.last_offset {
            return None;
        }
        let epoch = self.partition.epoch_cache().epoch_of(proposal.base_offset);
        Some(epoch == Some(LeaderEpoch(proposal.term as i32)))
    }

    pub fn has_ready(&self) -> bool {
        self.installing.is_none() && self.node.has_ready()
    }

    /// Handles one Ready: persists what it asks for, moves the high watermark, and returns the
    /// messages to send (in order). A storage error leaves the replica unusable (the caller
    /// takes the partition offline).
    pub async fn advance(&mut self) -> Result<Vec<Message>, StorageError> {
        let mut outgoing = Vec::new();
        if !self.has_ready() {
            return Ok(outgoing);
        }
        let mut ready = self.node.ready();
        // A leader's appends go out before its own write and fsync.
        outgoing.extend(ready.take_messages());
        if let Some(hard_state) = ready.hs() {
            let hard_state = hard_state.clone();
            let vote_changed =
                hard_state.term != self.state.term || hard_state.vote != self.state.vote;
            self.state.term = hard_state.term;
            self.state.vote = hard_state.vote;
            self.node.mut_store().hard_state = hard_state;
            if vote_changed {
                self.write_state().await?;
            }
        }
        if !ready.snapshot().is_empty() {
            self.install(ready).await?;
            return Ok(outgoing);
        }
        let entries = ready.take_entries();
        if let Some(last) = entries.last() {
            let last_index = last.index;
            self.persist_entries(entries).await?;
            let end = self
                .node
                .store()
                .end_offset_of(last_index)
                .expect("just appended");
            self.partition.log().wait_durable(end).await?;
        }
        self.finish_ready(ready, outgoing).await
    }

    /// The rest of a Ready once its entries (or snapshot) are durable: acknowledgements go
    /// out, committed entries move the high watermark.
    async fn finish_ready(
        &mut self,
        mut ready: raft::Ready,
        mut outgoing: Vec<Message>,
    ) -> Result<Vec<Message>, StorageError> {
        outgoing.extend(ready.take_persisted_messages());
        let mut committed = ready.take_committed_entries();
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not written for itself: a restarted replica learns the commit point again from
            // the leader (raft-state is rewritten for votes, terms and anchors only).
            self.node.mut_store().hard_state.commit = commit;
        }
        outgoing.extend(light.take_messages());
        committed.extend(light.take_committed_entries());
        if let Some(last) = committed.last() {
            let end = self
                .node
                .store()
                .end_offset_of(last.index)
                .expect("committed entries are in the window");
            self.partition.commit_to(end);
            // DeleteRecords entries take effect when committed, on every replica, before the
            // commit point is recorded as applied.
            let deleted_to = committed
                .iter()
                .filter(|entry| entry.get_entry_type() == EntryType::EntryNormal)
                .filter_map(|entry| delete_records_offset(&entry.data))
                .max();
            if let Some(offset) = deleted_to {
                self.partition.advance_log_start(offset).await?;
                // The commit point is written with it: a restart must not put the high
                // watermark below the log start.
                self.state_dirty = true;
            }
            let applied = last.index;
            let (ready_anchors, later): (Vec<Anchor>, Vec<Anchor>) = self
                .pending_anchors
                .iter()
                .partition(|anchor| anchor.index <= applied);
            self.pending_anchors = later;
            for anchor in ready_anchors {
                self.state.add_anchor(anchor);
                self.state_dirty = true;
            }
        }
        self.state.commit = self.node.store().hard_state.commit;
        self.node.advance_apply();
        self.maybe_compact();
        if self.state_dirty {
            self.write_state().await?;
        }
        for message in &outgoing {
            if message.msg_type == MessageType::MsgSnapshot
                && !self.snapshots_sent.iter().any(|(to, _)| *to == message.to)
            {
                self.snapshots_sent.push((message.to, 0));
            }
        }
        Ok(outgoing)
    }

    /// A leader's snapshot arrived: this replica's log lacks entries the leader no longer
    /// keeps in its window. The uncommitted tail is cut (it may conflict), the window restarts
    /// at the snapshot, and the Ready waits until the batches up to the snapshot's offset are
    /// copied here (`catch_up`).
    async fn install(&mut self, ready: raft::Ready) -> Result<(), StorageError> {
        let snapshot = ready.snapshot();
        let metadata = snapshot.get_metadata();
        let end_offset = snapshot_end_offset(snapshot).expect("checked in step");
        let anchor = Anchor {
            index: metadata.index,
            term: metadata.term,
            end_offset,
        };
        let high_watermark = self.partition.high_watermark();
        if high_watermark > end_offset {
            return Err(corrupt(
                &self.partition,
                format!("snapshot {anchor:?} ends below the high watermark {high_watermark}"),
            ));
        }
        log::info!(
            "{}: installing the leader's snapshot at entry {} (offset {end_offset}); copying from offset {high_watermark}",
            self.name,
            anchor.index
        );
        self.pending_anchors.clear();
        if self.partition.log_end_offset() > high_watermark {
            self.partition.truncate_to(high_watermark).await?;
        }
        let conf_state = metadata.get_conf_state().clone();
        let store = self.node.mut_store();
        store.entries.clear();
        store.end_offsets.clear();
        store.window_bytes = 0;
        store.base = anchor;
        store.hard_state.commit = anchor.index;
        store.conf_state = conf_state.clone();
        self.state.voters = conf_state.voters.clone();
        self.state.learners = conf_state.learners.clone();
        let from_node = self.leader_id();
        self.installing = Some(Installing {
            ready,
            anchor,
            from_node,
        });
        Ok(())
    }

    /// While a snapshot is installed: what to copy, and from which node.
    pub fn catch_up(&self) -> Option<CatchUp> {
        self.installing.as_ref().map(|installing| CatchUp {
            from_node: installing.from_node,
            next_offset: self.partition.log_end_offset(),
            end_offset: installing.anchor.end_offset,
        })
    }

    /// Appends batches copied from a peer's log (committed there) while installing a
    /// snapshot: whole batches from `catch_up().next_offset` on, checked (CRC, offsets); once
    /// the log reaches the snapshot's offset, the snapshot is complete and the messages its
    /// Ready held are returned. A batch that does not fit is refused (`InvalidBatch` or
    /// `OffsetMismatch`) and nothing after it is taken; the owner can ask another peer.
    pub async fn append_caught_up(
        &mut self,
        batches: Vec<Bytes>,
    ) -> Result<Vec<Message>, StorageError> {
        let Some(end_offset) = self.installing.as_ref().map(|i| i.anchor.end_offset) else {
            return Ok(Vec::new());
        };
        // DeleteRecords entries copied here are committed at the source: applied as each
        // chunk lands (a copy cut by a crash resumes after them).
        let mut deleted_to = None;
        for batch in batches.into_iter().flat_map(split_batches) {
            let header = BatchHeader::parse_and_verify(&batch)?;
            let log_end = self.partition.log_end_offset();
            if header.last_offset() < log_end {
                continue;
            }
            if log_end >= end_offset {
                break;
            }
            if header.last_offset() >= end_offset || header.partition_leader_epoch < 0 {
                return Err(StorageError::OffsetMismatch {
                    batch_base_offset: header.base_offset,
                    log_end_offset: log_end,
                });
            }
            let epoch = LeaderEpoch(header.partition_leader_epoch);
            deleted_to = deleted_to.max(delete_records_offset(&batch));
            self.partition.append_entry(batch, epoch).await?;
        }
        if let Some(offset) = deleted_to {
            self.partition.advance_log_start(offset).await?;
        }
        if self.partition.log_end_offset() < end_offset {
            return Ok(Vec::new());
        }
        self.partition.log().wait_durable(end_offset).await?;
        let installing = self.installing.take().expect("installing");
        self.state.add_anchor(installing.anchor);
        self.state.commit = installing.anchor.index;
        self.write_state().await?;
        log::info!(
            "{}: snapshot at entry {} installed (offset {end_offset})",
            self.name,
            installing.anchor.index
        );
        self.finish_ready(installing.ready, Vec::new()).await
    }

    async fn write_state(&mut self) -> Result<(), StorageError> {
        replica_state::write(self.partition.log().dir(), &self.state).await?;
        self.state_dirty = false;
        Ok(())
    }

    /// Appends Ready entries to the Kafka log, truncating a conflicting suffix first.
    async fn persist_entries(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let first = entries[0].index;
        let store_last = self.node.store().last_index();
        if first <= store_last {
            let keep = first - 1;
            let Some(keep_end) = self.node.store().end_offset_of(keep) else {
                return Err(corrupt(
                    &self.partition,
                    format!("entry {first} conflicts below the window"),
                ));
            };
            log::info!(
                "{}: truncating entries after {keep} (offsets from {keep_end}) for the leader's",
                self.name
            );
            // Anchors are committed points; the cut is above the commit point.
            self.pending_anchors.retain(|anchor| anchor.index <= keep);
            self.partition.truncate_to(keep_end).await?;
            self.node.mut_store().truncate_after(keep);
        } else if first != store_last + 1 {
            return Err(corrupt(
                &self.partition,
                format!("entry {first} leaves a gap after {store_last}"),
            ));
        }
        for entry in entries {
            let term = entry.term;
            let epoch = i32::try_from(term)
                .map_err(|_| corrupt(&self.partition, format!("term {term} exceeds an epoch")))?;
            let log_end = self.partition.log_end_offset();
            let batch = batch_for_entry(&entry, log_end, epoch)
                .map_err(|detail| corrupt(&self.partition, detail))?;
            let segment_before = self.partition.log().active_segment_base();
            let info = self
                .partition
                .append_entry(batch, LeaderEpoch(epoch))
                .await?;
            let index = entry.index;
            let rolled = self.partition.log().active_segment_base() != segment_before;
            self.node.mut_store().push(entry, info.last_offset + 1);
            if rolled && info.base_offset == self.partition.log().active_segment_base() {
                // The new segment starts with this entry: anchor the one before it.
                // Written once committed: an anchor must never point into a suffix that a new
                // leader may still cut.
                if let Some(anchor) = self.node.store().anchor_at(index - 1) {
                    self.pending_anchors.push(anchor);
                }
            }
        }
        Ok(())
    }

    /// Drops applied entries from the window once it is over its bounds (keeping what a
    /// leader's voters still need), and anchors the new base.
    fn maybe_compact(&mut self) {
        let store = self.node.store();
        if store.entries.len() <= WINDOW_ENTRIES_MAX && store.window_bytes <= WINDOW_BYTES_MAX {
            return;
        }
        let applied = self.node.raft.raft_log.applied;
        let mut target = applied;
        if self.is_leader() && store.window_bytes <= WINDOW_BYTES_HARD_MAX {
            let matched = self
                .node
                .raft
                .prs()
                .iter()
                .map(|(_, progress)| progress.matched)
                .min()
                .unwrap_or(applied);
            target = target.min(matched);
        }
        // Keep half the window: a follower a little behind still finds its entries.
        let keep_from = store
            .last_index()
            .saturating_sub(WINDOW_ENTRIES_MAX as u64 / 2);
        let target = target.min(keep_from.max(store.base.index));
        if target <= store.base.index {
            return;
        }
        self.node.mut_store().compact_to(target);
        let base = self.node.store().base;
        self.state.add_anchor(base);
        self.state_dirty = true;
    }
}

/// The Kafka offset after `entry`, given the offset it starts at.
fn entry_end_offset(entry: &Entry, start: i64) -> i64 {
    match (entry.get_entry_type(), BatchHeader::parse(&entry.data)) {
        (EntryType::EntryNormal, Ok(header)) => header.last_offset() + 1,
        _ => start + 1,
    }
}

/// The batch stored for `entry` at `log_end` (its offsets must start there).
fn batch_for_entry(entry: &Entry, log_end: i64, epoch: i32) -> Result<Bytes, String> {
    let control = |control_type: i16, value: &[u8]| {
        let mut batch = encode_control_batch(control_type, value, wall_clock_ms());
        assign_offset(&mut batch, log_end, epoch);
        Ok(Bytes::from(batch))
    };
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.data.is_empty() => control(CONTROL_LEADER_CHANGE, &[]),
        EntryType::EntryNormal => {
            let header = BatchHeader::parse(&entry.data).map_err(|error| error.to_string())?;
            if header.base_offset != log_end || header.partition_leader_epoch != epoch {
                return Err(format!(
                    "entry {} (term {}) holds a batch at offset {} of epoch {}; the log ends at {log_end}",
                    entry.index, entry.term, header.base_offset, header.partition_leader_epoch
                ));
            }
            Ok(entry.data.clone())
        }
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
            let kind = u8::from(entry.get_entry_type() == EntryType::EntryConfChangeV2);
            let mut value = vec![kind];
            value.extend_from_slice(&entry.data);
            control(CONTROL_RAFT_CONF_CHANGE, &value)
        }
    }
}

/// The Raft entry a stored batch stands for (index left for the caller).
fn entry_from_batch(batch: &Bytes, header: &BatchHeader) -> Entry {
    let mut entry = Entry {
        term: header.partition_leader_epoch as u64,
        ..Entry::default()
    };
    match control_record(batch) {
        Some((CONTROL_LEADER_CHANGE, _)) => {}
        Some((CONTROL_RAFT_CONF_CHANGE, value)) if !value.is_empty() => {
            entry.set_entry_type(if value[0] == 1 {
                EntryType::EntryConfChangeV2
            } else {
                EntryType::EntryConfChange
            });
            entry.data = value.slice(1..);
        }
        _ => entry.data = batch.slice(..header.size_bytes()),
    }
    entry
}
