//! One Raft node: raft-rs's `RawNode` over an in-memory log (`MemStorage`) mirrored by a
//! `DurableLog`, and the Ready step that persists what the node asks for, collects what it
//! wants sent and hands back what it committed.
//!
//! The owner (a state machine such as the controller's metadata) keeps its own snapshot: at
//! open it says which index and term its snapshot covers, gets back the committed entries after
//! it to apply, and after writing a newer snapshot calls `compact` so the log forgets what the
//! snapshot holds. Entries are persisted and synced before the messages that depend on them
//! (`persisted_messages`, a follower's append acknowledgements) leave, and before any of them
//! is reported committed.

use std::io;
use std::path::Path;

use raft::prelude::Message;
use raft::storage::{MemStorage, MemStorageCore};
use raft::RawNode;

use super::durable_log::DurableLog;
use super::{ConfState, Entry, HardState, Snapshot};

/// How a node is set up; ticks are driven by the owner's timer.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// This node's id in the group (Sluice uses the broker's node id).
    pub id: u64,
    /// The voters the group starts with when its log and snapshot hold no configuration.
    pub voters: Vec<u64>,
    /// Ticks without a leader's heartbeat before an election (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Names the group in logs.
    pub name: String,
}

/// What the owner's snapshot covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub index: u64,
    pub term: u64,
}

/// What one Ready step produced.
#[derive(Debug, Default)]
pub struct Progress {
    /// For other nodes (empty while the group has one voter).
    pub messages: Vec<Message>,
    /// Committed entries, in index order, to apply now.
    pub committed: Vec<Entry>,
}

pub struct RaftGroup {
    node: RawNode<MemStorage>,
    /// `None` only while a persist runs on the blocking pool.
    log: Option<DurableLog>,
    /// The commit index moved after the last hard state written; it goes with the next write
    /// (losing it costs nothing: a restarted node learns it again from the leader).
    commit_unsaved: bool,
}

impl RaftGroup {
    /// Opens the group's log at `log_path` on top of the owner's `snapshot`. Returns the group
    /// and the committed entries after the snapshot, which the owner applies before serving.
    /// Blocking (start-up only).
    pub fn open(
        config: &GroupConfig,
        log_path: &Path,
        snapshot: SnapshotPoint,
    ) -> io::Result<(RaftGroup, Vec<Entry>)> {
        let (log, recovered) = DurableLog::open(log_path)?;
        let storage = MemStorage::new();
        let committed = {
            let mut core = storage.wl();
            *core = core_at(snapshot, ConfState::from((config.voters.clone(), vec![])))?;
            let entries: Vec<Entry> = recovered
                .entries
                .into_iter()
                .filter(|entry| entry.index > snapshot.index)
                .collect();
            if let Some(first) = entries.first() {
                if first.index != snapshot.index + 1 {
                    return Err(invalid(format!(
                        "{}: the log starts at index {} but the snapshot ends at {}",
                        log_path.display(),
                        first.index,
                        snapshot.index
                    )));
                }
            }
            core.append(&entries).map_err(invalid)?;
            let last_index = entries.last().map_or(snapshot.index, |entry| entry.index);
            let mut hard_state = recovered.hard_state;
            hard_state.term = hard_state.term.max(snapshot.term);
            hard_state.commit = hard_state.commit.clamp(snapshot.index, last_index);
            let committed = entries
                .iter()
                .filter(|entry| entry.index <= hard_state.commit)
                .cloned()
                .collect();
            core.set_hardstate(hard_state);
            committed
        };
        let applied = storage.rl().hard_state().commit;
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config.validate().map_err(invalid)?;
        let logger = super::logger::for_group(&config.name);
        let node = RawNode::new(&raft_config, storage, &logger).map_err(invalid)?;
        Ok((
            RaftGroup {
                node,
                log: Some(log),
                commit_unsaved: false,
            },
            committed,
        ))
    }

    pub fn raw(&mut self) -> &mut RawNode<MemStorage> {
        &mut self.node
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == raft::StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    /// Index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// One Ready step with blocking I/O (start-up).
    pub fn advance_blocking(&mut self) -> io::Result<Progress> {
        let mut progress = Progress::default();
        if !self.node.has_ready() {
            return Ok(progress);
        }
        let mut ready = self.node.ready();
        let (entries, hard_state) = self.take_writes(&mut ready, &mut progress)?;
        let log = self.log.as_mut().expect("log present outside a persist");
        log.append(&entries, hard_state.as_ref())?;
        self.finish(ready, entries, hard_state, &mut progress)?;
        Ok(progress)
    }

    /// One Ready step; the log write and its fdatasync run on the executor's blocking pool.
    pub async fn advance(&mut self) -> io::Result<Progress> {
        let mut progress = Progress::default();
        if !self.node.has_ready() {
            return Ok(progress);
        }
        let mut ready = self.node.ready();
        let (entries, hard_state) = self.take_writes(&mut ready, &mut progress)?;
        if !entries.is_empty() || hard_state.is_some() {
            let mut log = self.log.take().expect("one persist at a time");
            let (writes, state) = (entries.clone(), hard_state.clone());
            let (log, result) = glommio::executor()
                .spawn_blocking(move || {
                    let result = log.append(&writes, state.as_ref());
                    (log, result)
                })
                .await;
            self.log = Some(log);
            result?;
        }
        self.finish(ready, entries, hard_state, &mut progress)?;
        Ok(progress)
    }

    fn take_writes(
        &mut self,
        ready: &mut raft::Ready,
        progress: &mut Progress,
    ) -> io::Result<(Vec<Entry>, Option<HardState>)> {
        progress.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // Only the controller runs today, and its voters all start from the same log;
            // snapshots for lagging followers arrive with multi-node transport.
            return Err(invalid(
                "installing a snapshot from a leader is not supported yet",
            ));
        }
        progress.committed.extend(ready.take_committed_entries());
        let hard_state = match ready.hs() {
            Some(hard_state) => Some(hard_state.clone()),
            None if self.commit_unsaved => Some(self.node.store().rl().hard_state().clone()),
            None => None,
        };
        self.commit_unsaved = false;
        Ok((ready.take_entries(), hard_state))
    }

    fn finish(
        &mut self,
        mut ready: raft::Ready,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        progress: &mut Progress,
    ) -> io::Result<()> {
        {
            let mut core = self.node.mut_store().wl();
            core.append(&entries).map_err(invalid)?;
            if let Some(hard_state) = hard_state {
                core.set_hardstate(hard_state);
            }
        }
        progress.messages.extend(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().wl().mut_hard_state().commit = commit;
            self.commit_unsaved = true;
        }
        progress.messages.extend(light.take_messages());
        progress.committed.extend(light.take_committed_entries());
        self.node.advance_apply();
        Ok(())
    }

    /// Forgets the entries `snapshot` covers (the owner has written a snapshot of its state at
    /// that point) and rewrites the log file without them. Blocking: call at start-up or on
    /// the blocking pool; `snapshot.index` must not pass the applied index.
    pub fn compact(&mut self, snapshot: SnapshotPoint) -> io::Result<()> {
        let store = self.node.store();
        let state = raft::Storage::initial_state(store).map_err(invalid)?;
        let last = raft::Storage::last_index(store).map_err(invalid)?;
        let entries = if last > snapshot.index {
            raft::Storage::entries(
                store,
                snapshot.index + 1,
                last + 1,
                None,
                raft::GetEntriesContext::empty(false),
            )
            .map_err(invalid)?
        } else {
            Vec::new()
        };
        let mut fresh = core_at(snapshot, state.conf_state)?;
        fresh.append(&entries).map_err(invalid)?;
        let mut hard_state = state.hard_state;
        hard_state.commit = hard_state.commit.max(snapshot.index);
        fresh.set_hardstate(hard_state.clone());
        *self.node.mut_store().wl() = fresh;
        let log = self.log.as_mut().expect("log present outside a persist");
        log.rewrite(&entries, &hard_state)
    }
}

/// An in-memory log that starts after `snapshot`, with configuration `conf_state`.
fn core_at(snapshot: SnapshotPoint, conf_state: ConfState) -> io::Result<MemStorageCore> {
    let mut core = MemStorageCore::default();
    if snapshot.index == 0 {
        // Nothing to skip: a log that starts at index 1 (raft-rs refuses a snapshot at 0).
        core.set_conf_state(conf_state);
        core.mut_hard_state().term = snapshot.term;
    } else {
        let mut point = Snapshot::default();
        point.mut_metadata().index = snapshot.index;
        point.mut_metadata().term = snapshot.term;
        point.mut_metadata().set_conf_state(conf_state);
        core.apply_snapshot(point).map_err(invalid)?;
    }
    Ok(core)
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GroupConfig {
        GroupConfig {
            id: 1,
            voters: vec![1],
            election_ticks: 10,
            heartbeat_ticks: 2,
            name: "test".to_string(),
        }
    }

    /// Drives a one-voter group until idle; returns the data of what it committed.
    fn settle(group: &mut RaftGroup) -> Vec<(u64, String)> {
        let mut committed = Vec::new();
        while group.raw().has_ready() {
            let progress = group.advance_blocking().expect("advance");
            assert!(progress.messages.is_empty(), "one voter sends nothing");
            committed.extend(progress.committed.into_iter().map(|entry| {
                (
                    entry.index,
                    String::from_utf8(entry.data.to_vec()).expect("utf8"),
                )
            }));
        }
        committed
    }

    #[test]
    fn a_single_voter_commits_what_it_proposes_and_finds_it_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut group, replay) =
            RaftGroup::open(&config(), &path, SnapshotPoint::default()).expect("open");
        assert!(replay.is_empty());
        group.raw().campaign().expect("campaign");
        assert_eq!(
            settle(&mut group),
            vec![(1, String::new())],
            "the leader's empty entry"
        );
        assert!(group.is_leader());
        for data in ["a", "b"] {
            group
                .raw()
                .propose(Vec::new(), data.into())
                .expect("propose");
        }
        assert_eq!(
            settle(&mut group),
            vec![(2, "a".to_string()), (3, "b".to_string())]
        );
        let term = group.term();
        drop(group);

        let (mut group, replay) =
            RaftGroup::open(&config(), &path, SnapshotPoint::default()).expect("reopen");
        let replayed: Vec<u64> = replay.iter().map(|entry| entry.index).collect();
        // The last commit index may not have reached the hard state before the restart (it is
        // saved with the next write); what was not replayed is committed again once this node
        // leads.
        assert!(replayed.starts_with(&[1]), "{replayed:?}");
        group.raw().campaign().expect("campaign");
        let again: Vec<u64> = settle(&mut group).iter().map(|(index, _)| *index).collect();
        let mut all = replayed.clone();
        all.extend(again);
        assert_eq!(
            all,
            vec![1, 2, 3, 4],
            "each entry applied once, then the new empty one"
        );
        assert!(group.term() > term, "a restart is a new term");
    }

    #[test]
    fn compaction_keeps_the_log_after_the_snapshot_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut group, _) =
            RaftGroup::open(&config(), &path, SnapshotPoint::default()).expect("open");
        group.raw().campaign().expect("campaign");
        settle(&mut group);
        for data in ["a", "b", "c"] {
            group
                .raw()
                .propose(Vec::new(), data.into())
                .expect("propose");
        }
        settle(&mut group);
        let point = SnapshotPoint {
            index: 3,
            term: group.term(),
        };
        group.compact(point).expect("compact");
        group
            .raw()
            .propose(Vec::new(), "d".into())
            .expect("propose");
        assert_eq!(settle(&mut group), vec![(5, "d".to_string())]);
        drop(group);

        let recovered = DurableLog::read(&path).expect("read");
        let indexes: Vec<u64> = recovered.entries.iter().map(|entry| entry.index).collect();
        assert_eq!(indexes, vec![4, 5], "entries up to the snapshot are gone");
        let (mut group, replay) = RaftGroup::open(&config(), &path, point).expect("reopen");
        assert!(replay.iter().all(|entry| entry.index > 3));
        group.raw().campaign().expect("campaign");
        settle(&mut group);
        assert!(group.is_leader());
        assert_eq!(group.last_index(), 6);
    }
}
