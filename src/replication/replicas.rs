//! The replicated partitions of a shard, running: one task per partition owns its `Replica`
//! (an actor: everything reaches it through its inbox, so no borrow ever spans an `.await`),
//! one ticker per shard drives every group's clock, and node links carry their messages.
//!
//! Wire (frames on the node links, `transport.rs`):
//! - `FRAME_PARTITION_RAFT`: `u16 topic length`, topic, `i32 partition`, then Raft messages
//!   (`codec.rs`). One frame per group and peer per Ready.
//! - `FRAME_CATCH_UP` (a follower installing a snapshot asks a peer for batches): topic,
//!   partition, `i64 offset`; `FRAME_CATCH_UP_REPLY`: topic, partition, `i64 offset`, then
//!   whole batches below the sender's high watermark, at most `CATCH_UP_BYTES` per reply. One
//!   request is in flight per partition and the next goes when the reply is appended: catch-up
//!   is paced by the round trip and one fetch of `CATCH_UP_BYTES` (Kafka's
//!   `replica.fetch.max.bytes`), so it cannot starve the client traffic of the leader.
//!
//! - `FRAME_PARTITION_QUIESCE` (leader to followers): topic, partition, `u64 term`, `u64
//!   commit`: the group has nothing left to do (below).
//! - `FRAME_PARTITION_LEADER_GONE` (leader to followers): topic, partition, `u64 term`: the
//!   leader's replica stopped (its storage failed, or the partition left this node) while its
//!   node stays up, so its followers must not wait for the node links to say so.
//! - `FRAME_PARTITION_WAKE` (follower to leader): topic, partition: the follower could not
//!   quiesce with the leader (it does not hold or know the commit point yet), so the leader
//!   must keep heartbeating.
//! - `FRAME_PARTITION_ELECT` (any node to the leader's): topic, partition, `i32 node`: hand
//!   leadership to that node's replica (ElectLeaders' preferred-leader election).
//!
//! # Quiescence: idle partitions cost nothing
//!
//! A Raft group sends heartbeats for ever, so an idle cluster of many partitions would spend its
//! CPU and its links on them. Instead, as in CockroachDB, an idle group goes quiet: once a leader
//! has had no proposal for two heartbeat intervals, every entry is committed, applied and held
//! by every voter, and every voter's node is live, it tells its followers so
//! (`FRAME_PARTITION_QUIESCE`) and stops ticking; a follower that holds and knows committed
//! exactly what the leader says, in the same term under the same leader, stops ticking too (one
//! that does not stays awake and wakes the leader, `FRAME_PARTITION_WAKE`, whose heartbeats
//! bring it up; the leader quiesces again later). A quiesced group takes no ticks and sends
//! nothing. Failure detection moves to the node links (`transport.rs`): each idle link pings,
//! and a peer is down when its link closes or goes silent for an election timeout. Then:
//! - a follower whose leader's node is down wakes and ends its lease at once, so it campaigns
//!   within one randomised election timeout (this also shortens failover for groups that were
//!   awake: a killed node's links close at once);
//! - a follower asked for a vote by its own leader (a node that restarted faster than its
//!   links showed), or told by it that its replica stopped (`FRAME_PARTITION_LEADER_GONE`),
//!   ends its lease the same way;
//! - a leader wakes when any voter's node goes down or comes back (it must heartbeat a restarted
//!   follower, and a dead follower must leave the in-sync replicas after
//!   `replica.lag.time.max.ms`), and does not quiesce again while one is down;
//! - any proposal, hand-over or catch-up wakes a group, and so does any Raft message other than
//!   a heartbeat response with nothing to act on, or a vote asked of a follower whose leader's
//!   node is live (its frozen lease refuses it; a follower's pre-vote wakes a quiet leader,
//!   whose heartbeats then tell the follower who leads).
//!
//! A woken group starts from a fresh lease (`Replica::wake`). What quiet groups cannot see: a
//! leader whose disk hangs without failing, on a node that stays up, keeps its quiet followers
//! waiting (an awake group's followers would miss its heartbeats and elect).
//!
//! An idle cluster's links carry one ping per link and heartbeat interval, whatever its
//! partition count (perf/RESULTS.md, "Idle cost").
//!
//! Only shard 0 holds the node links (`NodeLinks`, registered by the cluster layer); other
//! shards hand their frames to it over the mesh, and shard 0 hands incoming frames to the shard
//! that owns the partition.
//!
//! Raft ids are node id + 1 (raft-rs reserves 0), as in the controller quorum.
//!
//! Producer state: a replica that becomes leader rebuilds its idempotent producers' sequences
//! from its log before it takes proposals (a follower does not track them), so retries of
//! batches the old leader appended are recognised as duplicates.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::prelude::{Message, MessageType};

use super::codec;
use super::group::GroupConfig;
use super::replica::{Proposal, ProposeError, Replica};
use super::transport::{Frame, LivenessHandler};
use crate::futures::LocalFuture;
use crate::ids::{NodeId, TopicPartition};
use crate::partition::{Appended, Partition, ReplicatedLog};
use crate::protocol::batch::BatchHeader;
use crate::protocol::error::{self, ErrorCode};
use crate::shard::request::Request;
use crate::shard::{Shard, METADATA_SHARD};

pub const FRAME_PARTITION_RAFT: u8 = 5;
pub const FRAME_CATCH_UP: u8 = 6;
pub const FRAME_CATCH_UP_REPLY: u8 = 7;
pub const FRAME_PARTITION_QUIESCE: u8 = 8;
pub const FRAME_PARTITION_LEADER_GONE: u8 = 9;
pub const FRAME_PARTITION_WAKE: u8 = 10;
pub const FRAME_PARTITION_ELECT: u8 = 11;

/// Whether a node-link frame of this kind is a partition group's (`on_frame` takes it).
pub fn is_partition_frame(kind: u8) -> bool {
    matches!(
        kind,
        FRAME_PARTITION_RAFT
            | FRAME_CATCH_UP
            | FRAME_CATCH_UP_REPLY
            | FRAME_PARTITION_QUIESCE
            | FRAME_PARTITION_LEADER_GONE
            | FRAME_PARTITION_WAKE
            | FRAME_PARTITION_ELECT
    )
}

/// Clock of every partition group.
pub const TICK: Duration = Duration::from_millis(100);
/// Bytes per catch-up reply.
pub const CATCH_UP_BYTES: u32 = 1 << 20;
/// A catch-up request unanswered this long is sent again (to the next replica).
const CATCH_UP_RETRY: Duration = Duration::from_secs(2);
/// Commands queued per group before senders wait (proposals) or drop (Raft traffic: it is
/// retransmitted).
const INBOX_CAPACITY: usize = 4096;

pub fn raft_id(node: NodeId) -> u64 {
    node.0 as u64 + 1
}

pub fn node_of(raft_id: u64) -> NodeId {
    NodeId(raft_id.saturating_sub(1).min(i32::MAX as u64) as i32)
}

/// Sends frames to peer nodes (shard 0 only; registered by the layer that owns the links).
pub struct NodeLinks {
    pub send: Box<dyn Fn(NodeId, Frame) -> bool>,
}

/// This node's view of the partitions it hosts replicas of: (leader node or -1, term) as their
/// groups last saw them. Shared by the node's shards (an `Arc` registered on each): written only
/// when a group's leader or term changes, read by Metadata (`describe_topic`), FindCoordinator
/// and the KIP-951 hints of refused produce and fetch answers; never by an accepted produce or a
/// served fetch, so the data path takes no lock.
#[derive(Default)]
pub struct LocalLeaders(std::sync::RwLock<HashMap<TopicPartition, (i32, i64)>>);

impl LocalLeaders {
    pub fn get(&self, topic_partition: &TopicPartition) -> Option<(i32, i64)> {
        self.0
            .read()
            .expect("local leaders lock")
            .get(topic_partition)
            .copied()
    }

    fn set(&self, topic_partition: &TopicPartition, seen: Option<(i32, i64)>) {
        let mut table = self.0.write().expect("local leaders lock");
        match seen {
            Some(seen) => table.insert(topic_partition.clone(), seen),
            None => table.remove(topic_partition),
        };
    }
}

/// Told when a group on this node gains leadership: (partition, leader node, leader epoch).
pub type LeaderHook = Rc<dyn Fn(TopicPartition, NodeId, i32, Vec<NodeId>)>;

/// How groups are set up (from the node's config).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// A follower not caught up within this long is out of the in-sync replicas.
    pub replica_lag: Duration,
}

/// The groups of one shard.
#[derive(Default)]
pub struct HostedReplicas {
    groups: RefCell<HashMap<TopicPartition, Rc<GroupHandle>>>,
    ticker: Cell<bool>,
    leader_hook: RefCell<Option<LeaderHook>>,
    /// Peer nodes whose links are live, as shard 0 last said (`PeerLiveness`).
    live: RefCell<HashSet<NodeId>>,
    /// Peer nodes that were live and went down (a node not heard from yet is neither).
    down: RefCell<HashSet<NodeId>>,
    liveness_generation: Cell<u64>,
}

struct GroupHandle {
    inbox: LocalSender<Command>,
    node: NodeId,
    /// (leads, leader node id or -1), as of the group's last step.
    leader: Cell<(bool, i32)>,
    /// The group's current term.
    term: Cell<u64>,
    in_sync: Cell<u32>,
    /// Leads and is handing leadership over (SIGTERM).
    handing_over: Cell<bool>,
    /// Quiesced: the shard's ticker skips it.
    quiesced: Cell<bool>,
    /// Leads and has committed an entry of its term (`ReplicatedLog::serves_reads`).
    serves_reads: Cell<bool>,
}

enum Command {
    Messages(Vec<Message>),
    Tick,
    Propose(
        BytesMut,
        LocalSender<Result<Appended, (ErrorCode, Option<i32>)>>,
    ),
    Wait(Appended, bool, LocalSender<Result<(), ErrorCode>>),
    CaughtUp(i64, Vec<Bytes>),
    /// Hand leadership to another replica: the given one (a preferred-leader election), or
    /// the most caught-up in-sync one (controlled shutdown); answered when done or given up.
    HandOver(Option<u64>, LocalSender<()>),
    /// The leader (raft id) says the group is idle in `term` with every voter holding `commit`.
    Quiesce {
        term: u64,
        leader: u64,
        commit: u64,
    },
    /// A peer node became live (true) or down (false).
    Liveness(NodeId, bool),
    /// The leader (raft id) of `term` stopped leading without its node going down.
    LeaderGone {
        leader: u64,
        term: u64,
    },
    /// A follower could not quiesce: stay awake.
    Wake,
    Stop,
}

impl HostedReplicas {
    pub fn set_leader_hook(&self, hook: LeaderHook) {
        *self.leader_hook.borrow_mut() = Some(hook);
    }

    pub fn is_hosted(&self, topic_partition: &TopicPartition) -> bool {
        self.groups.borrow().contains_key(topic_partition)
    }

    /// Hands `command` to the group of `topic_partition`, if this shard runs it (a full inbox
    /// drops it: Raft retransmits, catch-up asks again).
    fn deliver(&self, topic_partition: &TopicPartition, command: Command) {
        let handle = self.groups.borrow().get(topic_partition).cloned();
        if let Some(handle) = handle {
            let _ = handle.inbox.try_send(command);
        }
    }

    /// Groups this shard runs (for tests and metrics).
    pub fn count(&self) -> usize {
        self.groups.borrow().len()
    }

    /// Groups this shard runs that are quiesced (for tests and metrics).
    pub fn quiesced_count(&self) -> usize {
        self.groups
            .borrow()
            .values()
            .filter(|handle| handle.quiesced.get())
            .count()
    }

    fn is_live(&self, node: NodeId) -> bool {
        self.live.borrow().contains(&node)
    }

    fn is_down(&self, node: NodeId) -> bool {
        self.down.borrow().contains(&node)
    }
}

/// Starts the group of `partition` (opened by the caller) with `voters` (node ids). A new group
/// whose first voter is this node campaigns at once, so leadership starts where placement put
/// it. Errors leave the partition offline for writes (logged by the caller).
pub async fn host(
    shard: &Rc<Shard>,
    partition: Rc<Partition>,
    voters: &[NodeId],
    timing: Timing,
) -> Result<(), String> {
    let replicas = shard.service::<HostedReplicas>();
    let topic_partition = partition.topic_partition.clone();
    if replicas.is_hosted(&topic_partition) {
        return Ok(());
    }
    let config = GroupConfig {
        id: raft_id(shard.node),
        voters: voters.iter().map(|node| raft_id(*node)).collect(),
        learners: Vec::new(),
        election_ticks: timing.election_ticks,
        heartbeat_ticks: timing.heartbeat_ticks,
        name: topic_partition.to_string(),
        fixed_election_timeout: false,
    };
    let mut replica = Replica::open(&config, partition.clone())
        .await
        .map_err(|error| format!("{topic_partition}: opening its Raft group: {error}"))?;
    if replica.term() == 0 && voters.first() == Some(&shard.node) {
        replica.campaign();
    }
    let (sender, receiver) = local_channel::new_bounded(INBOX_CAPACITY);
    let handle = Rc::new(GroupHandle {
        inbox: sender,
        node: shard.node,
        leader: Cell::new((false, -1)),
        term: Cell::new(0),
        in_sync: Cell::new(0),
        handing_over: Cell::new(false),
        quiesced: Cell::new(false),
        serves_reads: Cell::new(false),
    });
    partition.set_writer(Some(Rc::new(Writer(Rc::downgrade(&handle)))));
    replicas
        .groups
        .borrow_mut()
        .insert(topic_partition, handle.clone());
    glommio::spawn_local(run(shard.clone(), replica, handle, receiver, timing)).detach();
    if !replicas.ticker.replace(true) {
        glommio::spawn_local(tick_all(Rc::downgrade(&replicas))).detach();
    }
    Ok(())
}

/// Stops the group of `topic_partition` (its topic is deleted or it moved away).
pub fn stop(shard: &Shard, topic_partition: &TopicPartition) {
    let handle = shard
        .service::<HostedReplicas>()
        .groups
        .borrow_mut()
        .remove(topic_partition);
    if let Some(handle) = handle {
        let _ = handle.inbox.try_send(Command::Stop);
    }
}

/// Controlled shutdown: every group this shard leads hands leadership to an in-sync follower;
/// resolves when all did or gave up.
pub async fn hand_over_all(shard: &Shard) {
    let handles: Vec<Rc<GroupHandle>> = shard
        .service::<HostedReplicas>()
        .groups
        .borrow()
        .values()
        .filter(|handle| handle.leader.get().0)
        .cloned()
        .collect();
    let waits = handles.into_iter().map(|handle| async move {
        let (done, answer) = local_channel::new_bounded(1);
        if handle
            .inbox
            .send(Command::HandOver(None, done))
            .await
            .is_ok()
        {
            let _ = answer.recv().await;
        }
    });
    crate::futures::join_all(waits.collect()).await;
}

async fn tick_all(replicas: std::rc::Weak<HostedReplicas>) {
    loop {
        glommio::timer::sleep(TICK).await;
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        for handle in replicas.groups.borrow().values() {
            if !handle.quiesced.get() {
                let _ = handle.inbox.try_send(Command::Tick);
            }
        }
    }
}

/// The partition's view of its group.
struct Writer(std::rc::Weak<GroupHandle>);

impl ReplicatedLog for Writer {
    fn propose(
        &self,
        batch: BytesMut,
    ) -> LocalFuture<'static, Result<Appended, (ErrorCode, Option<i32>)>> {
        let handle = self.0.upgrade();
        Box::pin(async move {
            let handle = handle.ok_or((error::NOT_LEADER_OR_FOLLOWER, None))?;
            let (reply, answer) = local_channel::new_bounded(1);
            if handle
                .inbox
                .send(Command::Propose(batch, reply))
                .await
                .is_err()
            {
                return Err((error::NOT_LEADER_OR_FOLLOWER, None));
            }
            answer
                .recv()
                .await
                .unwrap_or(Err((error::NOT_LEADER_OR_FOLLOWER, None)))
        })
    }

    fn wait(
        &self,
        appended: Appended,
        leader_only: bool,
    ) -> LocalFuture<'static, Result<(), ErrorCode>> {
        let handle = self.0.upgrade();
        Box::pin(async move {
            let handle = handle.ok_or(error::NOT_LEADER_OR_FOLLOWER)?;
            let (reply, answer) = local_channel::new_bounded(1);
            let command = Command::Wait(appended, leader_only, reply);
            if handle.inbox.send(command).await.is_err() {
                return Err(error::NOT_LEADER_OR_FOLLOWER);
            }
            answer
                .recv()
                .await
                .unwrap_or(Err(error::NOT_LEADER_OR_FOLLOWER))
        })
    }

    fn leader(&self) -> (bool, i32) {
        self.0
            .upgrade()
            .map_or((false, -1), |handle| handle.leader.get())
    }

    fn in_sync(&self) -> u32 {
        self.0.upgrade().map_or(0, |handle| handle.in_sync.get())
    }

    fn serves_reads(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|handle| handle.serves_reads.get())
    }

    fn handing_over(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|handle| handle.handing_over.get())
    }

    fn leader_term(&self) -> Option<u64> {
        let handle = self.0.upgrade()?;
        handle.leader.get().0.then(|| handle.term.get())
    }
}

struct Waiting {
    appended: Appended,
    leader_only: bool,
    reply: LocalSender<Result<(), ErrorCode>>,
}

/// The group's task.
async fn run(
    shard: Rc<Shard>,
    mut replica: Replica,
    handle: Rc<GroupHandle>,
    inbox: LocalReceiver<Command>,
    timing: Timing,
) {
    let topic_partition = replica.partition().topic_partition.clone();
    let partition = replica.partition().clone();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut hand_overs: Vec<(LocalSender<()>, Instant)> = Vec::new();
    let mut caught_up_at: HashMap<u64, Instant> = HashMap::new();
    let mut catch_up_asked: Option<(Instant, usize)> = None;
    let mut reported_term = 0u64;
    let mut was_leading = false;
    let mut reported_isr: Vec<NodeId> = Vec::new();
    let replicas = shard.service::<HostedReplicas>();
    let mut quiet = Quiet {
        quiesced: false,
        idle_ticks: 0,
        after_ticks: 2 * timing.heartbeat_ticks as u32 + 1,
    };
    'run: while let Some(first) = inbox.recv().await {
        let mut command = Some(first);
        let mut asked_to_quiesce: Option<(u64, u64, u64)> = None;
        while let Some(current) = command.take() {
            match current {
                Command::Stop => break 'run,
                Command::Tick if quiet.quiesced => {}
                Command::Tick => {
                    replica.tick();
                    quiet.idle_ticks = quiet.idle_ticks.saturating_add(1);
                    if let Some(catch_up) = replica.catch_up() {
                        let due =
                            catch_up_asked.is_none_or(|(at, _)| at.elapsed() >= CATCH_UP_RETRY);
                        if due {
                            let attempt = catch_up_asked.map_or(0, |(_, n)| n + 1);
                            ask_catch_up(&shard, &replica, &topic_partition, catch_up, attempt);
                            catch_up_asked = Some((Instant::now(), attempt));
                        }
                    }
                }
                Command::Messages(messages) => {
                    // Heartbeat answers keep a quiet group quiet unless they leave it
                    // something to do; so do votes asked of a follower whose leader's node is
                    // live (its lease, frozen while quiet, refuses them: waking would let it
                    // run out and a node cut off from the leader alone could then depose it).
                    let follows_live_leader = !replica.is_leader()
                        && replica.leader_id() != 0
                        && replicas.is_live(node_of(replica.leader_id()));
                    let stays_quiet = messages.iter().all(|message| match message.msg_type {
                        MessageType::MsgHeartbeatResponse => true,
                        MessageType::MsgRequestPreVote | MessageType::MsgRequestVote => {
                            follows_live_leader
                        }
                        _ => false,
                    });
                    // The leader itself asking for votes has lost its leadership (it restarted
                    // faster than its links showed, or its group stopped): the lease it
                    // granted is over.
                    let leader = replica.leader_id();
                    let leader_campaigns = leader != 0
                        && !replica.is_leader()
                        && messages.iter().any(|message| {
                            message.from == leader
                                && matches!(
                                    message.msg_type,
                                    MessageType::MsgRequestPreVote | MessageType::MsgRequestVote
                                )
                        });
                    if leader_campaigns {
                        quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                        replica.leader_lost(leader);
                    }
                    for message in messages {
                        replica.step(message);
                    }
                    if !stays_quiet || replica.has_ready() {
                        quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    }
                }
                // Judged after this pass's Ready is handled: the leader's last heartbeat usually
                // arrives with the frame, and its answer is still to be sent.
                Command::Quiesce {
                    term,
                    leader,
                    commit,
                } => asked_to_quiesce = Some((term, leader, commit)),
                Command::Wake => quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at),
                Command::LeaderGone { leader, term } => {
                    if replica.term() == term && replica.leader_id() == leader {
                        quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                        replica.leader_lost(leader);
                    }
                }
                Command::Liveness(node, live) => {
                    let peer = raft_id(node);
                    if replica.is_leader() && replica.voters().contains(&peer) {
                        quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    } else if !live && replica.leader_id() == peer {
                        quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                        replica.leader_lost(peer);
                    }
                }
                Command::Propose(batch, reply) => {
                    quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    quiet.idle_ticks = 0;
                    let header = BatchHeader::parse(&batch).ok();
                    let answer = if !replica.is_leader() {
                        Err((error::NOT_LEADER_OR_FOLLOWER, leader_hint(&replica)))
                    } else {
                        match replica.propose(batch) {
                            Ok(Proposal {
                                index,
                                term,
                                base_offset,
                                last_offset,
                            }) => {
                                // Recorded here, before anything else can run: a deposition
                                // handled after this forgets it if the log never stores it.
                                if let Some(header) = &header {
                                    partition.record_producer_batch(header, base_offset);
                                }
                                Ok(Appended {
                                    index,
                                    term,
                                    base_offset,
                                    last_offset,
                                })
                            }
                            Err(ProposeError::NotLeader(_)) => {
                                Err((error::NOT_LEADER_OR_FOLLOWER, leader_hint(&replica)))
                            }
                            Err(ProposeError::Invalid(reason)) => {
                                log::warn!("{topic_partition}: proposal refused: {reason}");
                                Err((error::CORRUPT_MESSAGE, None))
                            }
                        }
                    };
                    let refused =
                        matches!(answer, Err((code, _)) if code == error::NOT_LEADER_OR_FOLLOWER);
                    if refused && handle.leader.get().0 {
                        // Refused as not leading: say so before the next batch is checked, so
                        // the batches behind this one are refused the same way (not checked
                        // against sequences this replica no longer owns).
                        handle
                            .leader
                            .set((false, leader_hint(&replica).unwrap_or(-1)));
                    }
                    let _ = reply.try_send(answer);
                }
                Command::Wait(appended, leader_only, reply) => {
                    quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    waiting.push(Waiting {
                        appended,
                        leader_only,
                        reply,
                    })
                }
                Command::CaughtUp(offset, batches) => {
                    quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    let wanted = replica.catch_up().map(|c| c.next_offset);
                    if wanted == Some(offset) {
                        match replica.append_caught_up(batches).await {
                            Ok(messages) => {
                                send(&shard, &topic_partition, messages);
                                // Ask for the next piece at the next tick.
                                catch_up_asked = None;
                            }
                            Err(error) => {
                                crate::warn_limited!(
                                    "{topic_partition}: batches copied from a peer refused: {error}"
                                );
                            }
                        }
                    }
                }
                Command::HandOver(wanted, done) => {
                    quiet.wake(&mut replica, &handle, &replicas, &mut caught_up_at);
                    let target = match wanted {
                        // raft-rs lets a lagging target catch up first, and gives up after an
                        // election timeout.
                        Some(to) if to != replica.id() && replica.voters().contains(&to) => {
                            Some(to)
                        }
                        Some(_) => None,
                        None => best_follower(&replica, &caught_up_at),
                    };
                    match target {
                        Some(to) if replica.is_leader() => {
                            log::info!(
                                "{topic_partition}: handing leadership to node {} ({})",
                                node_of(to).0,
                                if wanted.is_some() {
                                    "preferred-leader election"
                                } else {
                                    "shutdown"
                                }
                            );
                            replica.transfer_leader(to);
                            hand_overs.push((done, Instant::now()));
                        }
                        _ => {
                            let _ = done.try_send(());
                        }
                    }
                }
            }
            // Take whatever else is queued before the Ready step: one step for many inputs.
            command = futures_lite::future::poll_once(inbox.recv())
                .await
                .flatten();
        }
        while replica.has_ready() {
            match replica.advance().await {
                Ok(messages) => send(&shard, &topic_partition, messages),
                Err(storage_error) => {
                    log::error!(
                        "{topic_partition}: replica stopped (the partition is offline for writes): {storage_error}"
                    );
                    break 'run;
                }
            }
        }
        // Leadership as clients and the cluster see it. A leader handing over takes no
        // writes (raft-rs drops its proposals), so it says it does not lead until the transfer
        // is done or abandoned: every batch in flight is refused alike and retried in order.
        let leads = replica.is_leader() && !replica.is_transferring();
        let leader = match replica.leader_id() {
            0 => -1,
            id => node_of(id).0,
        };
        if handle.leader.get() != (leads, leader) || handle.term.get() != replica.term() {
            shard
                .service::<std::sync::Arc<LocalLeaders>>()
                .set(&topic_partition, Some((leader, replica.term() as i64)));
        }
        if handle.term.replace(replica.term()) != replica.term() {
            quiet.idle_ticks = 0;
        }
        let handing_over = replica.is_transferring();
        if handle.handing_over.replace(handing_over) != handing_over {
            partition.wake_high_watermark_waiters();
        }
        if was_leading && !leads {
            // Deposed (known here, whatever the handle says: a refused proposal may have
            // flipped it already): proposals its log never stored are not its producers'
            // history, and their produce requests are about to fail: batches pipelined behind
            // them must not be judged as gaps if this replica leads again.
            partition.forget_producer_batches_from(partition.log_end_offset());
            partition.wake_high_watermark_waiters();
        }
        if was_leading != leads {
            crate::metrics::leadership_changed();
            partition.forget_sequence_gaps();
        }
        handle
            .serves_reads
            .set(leads && replica.committed_in_term());
        was_leading = leads;
        if handle.leader.get() != (leads, leader) {
            handle.leader.set((leads, leader));
            partition.wake_high_watermark_waiters();
        }
        let isr: Vec<NodeId> = if leads {
            in_sync(&replica, &mut caught_up_at, timing.replica_lag, &replicas)
                .into_iter()
                .map(node_of)
                .collect()
        } else {
            Vec::new()
        };
        handle.in_sync.set(isr.len() as u32);
        if leads && (reported_term != replica.term() || reported_isr != isr) {
            reported_term = replica.term();
            reported_isr = isr.clone();
            let hook = shard
                .service::<HostedReplicas>()
                .leader_hook
                .borrow()
                .clone();
            if let Some(hook) = hook {
                hook(
                    topic_partition.clone(),
                    handle.node,
                    reported_term as i32,
                    isr,
                );
            }
        }
        hand_overs.retain(|(done, since)| {
            if !replica.is_leader() || since.elapsed() > Duration::from_secs(3) {
                let _ = done.try_send(());
                false
            } else {
                true
            }
        });
        waiting.retain(|wait| match decide(&replica, &partition, wait) {
            Some(answer) => {
                let _ = wait.reply.try_send(answer);
                false
            }
            None => true,
        });
        if let Some((term, leader, commit)) = asked_to_quiesce {
            // A leader already seen down is not believed (its frame and the news of its node's
            // failure travel apart). A follower that cannot follow the leader into quiet tells
            // it, so the leader wakes and heartbeats: two awake followers under a quiet leader
            // would otherwise run out their leases and elect.
            if !quiet.quiesced
                && waiting.is_empty()
                && replicas.is_live(node_of(leader))
                && replica.can_quiesce(term, leader, commit)
            {
                quiet.quiesced = true;
                handle.quiesced.set(true);
            } else if !quiet.quiesced && replica.term() == term && replica.leader_id() == leader {
                let frame = Frame {
                    kind: FRAME_PARTITION_WAKE,
                    body: group_header(&topic_partition).into(),
                };
                send_frames(&shard, vec![(node_of(leader), frame)]);
            }
        }
        if leads
            && !quiet.quiesced
            && quiet.idle_ticks >= quiet.after_ticks
            && waiting.is_empty()
            && hand_overs.is_empty()
            && replica.catch_up().is_none()
            && replica
                .voters()
                .into_iter()
                .all(|id| id == replica.id() || replicas.is_live(node_of(id)))
            && replica.quiescent()
        {
            quiet.quiesced = true;
            handle.quiesced.set(true);
            let fields = [replica.term(), replica.committed()];
            to_followers(&shard, &replica, FRAME_PARTITION_QUIESCE, &fields);
        }
    }
    if replica.is_leader() {
        to_followers(
            &shard,
            &replica,
            FRAME_PARTITION_LEADER_GONE,
            &[replica.term()],
        );
    }
    for wait in waiting {
        let _ = wait.reply.try_send(Err(error::NOT_LEADER_OR_FOLLOWER));
    }
    for (done, _) in hand_overs {
        let _ = done.try_send(());
    }
    handle.leader.set((false, -1));
    handle.in_sync.set(0);
    handle.quiesced.set(false);
    shard
        .service::<std::sync::Arc<LocalLeaders>>()
        .set(&topic_partition, None);
    partition.wake_high_watermark_waiters();
}

/// Whether a group is quiesced, and for how long it has been idle.
struct Quiet {
    quiesced: bool,
    /// Ticks since the last proposal or change of term.
    idle_ticks: u32,
    /// Idle ticks after which a leader with nothing to do quiesces.
    after_ticks: u32,
}

impl Quiet {
    /// Wakes the group if it is quiet. Followers that hold the commit point were caught up
    /// all through the quiet (nothing was written), so their in-sync clock restarts now: one
    /// whose node just went down gets the whole `replica.lag.time.max.ms` before it leaves the
    /// in-sync replicas, as it would have had the group been awake.
    fn wake(
        &mut self,
        replica: &mut Replica,
        handle: &GroupHandle,
        replicas: &HostedReplicas,
        caught_up_at: &mut HashMap<u64, Instant>,
    ) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        self.idle_ticks = 0;
        handle.quiesced.set(false);
        if replica.is_leader() {
            let now = Instant::now();
            let committed = replica.committed();
            for (id, matched) in replica.voter_progress() {
                if matched >= committed {
                    caught_up_at.insert(id, now);
                }
            }
        }
        replica.wake(|id| replicas.is_down(node_of(id)));
    }
}

fn leader_hint(replica: &Replica) -> Option<i32> {
    match replica.leader_id() {
        0 => None,
        id => Some(node_of(id).0),
    }
}

/// The answer for a produce waiting on `wait`, once there is one.
fn decide(
    replica: &Replica,
    partition: &Partition,
    wait: &Waiting,
) -> Option<Result<(), ErrorCode>> {
    if wait.appended.index == 0 {
        // A duplicate of a batch in this leader's log: see `Appended`.
        if !replica.is_leader() || replica.term() != wait.appended.term {
            return Some(Err(error::NOT_LEADER_OR_FOLLOWER));
        }
        return (partition.high_watermark() > wait.appended.last_offset).then_some(Ok(()));
    }
    let proposal = Proposal {
        index: wait.appended.index,
        term: wait.appended.term,
        base_offset: wait.appended.base_offset,
        last_offset: wait.appended.last_offset,
    };
    match replica.outcome(&proposal) {
        Some(true) => return Some(Ok(())),
        Some(false) => return Some(Err(error::NOT_LEADER_OR_FOLLOWER)),
        None => {}
    }
    if wait.leader_only
        && replica.is_leader()
        && replica.term() == proposal.term
        && partition.durable_offset() > proposal.last_offset
    {
        return Some(Ok(()));
    }
    if !replica.is_leader() || replica.term() != proposal.term {
        // Deposed: the batch may still commit under the next leader, or not. The producer
        // retries there; an idempotent one is answered with the original offsets if it did.
        return Some(Err(error::NOT_LEADER_OR_FOLLOWER));
    }
    None
}

/// In-sync replicas as the leader sees them: itself, and each voter that has been caught up
/// with the commit point, with its node not down, within `lag` (a dead follower of an idle
/// partition holds everything there is, but is not in sync).
fn in_sync(
    replica: &Replica,
    caught_up_at: &mut HashMap<u64, Instant>,
    lag: Duration,
    replicas: &HostedReplicas,
) -> Vec<u64> {
    let now = Instant::now();
    let committed = replica.committed();
    let mut in_sync = Vec::new();
    for (id, matched) in replica.voter_progress() {
        if id == replica.id() || (matched >= committed && !replicas.is_down(node_of(id))) {
            caught_up_at.insert(id, now);
        }
        if caught_up_at
            .get(&id)
            .is_some_and(|at| now.duration_since(*at) <= lag)
        {
            in_sync.push(id);
        }
    }
    in_sync.sort_unstable();
    in_sync
}

/// The follower to hand leadership to: the most caught-up one in sync.
fn best_follower(replica: &Replica, caught_up_at: &HashMap<u64, Instant>) -> Option<u64> {
    replica
        .voter_progress()
        .into_iter()
        .filter(|(id, _)| *id != replica.id() && caught_up_at.contains_key(id))
        .max_by_key(|(_, matched)| *matched)
        .map(|(id, _)| id)
}

/// Sends `messages` to their nodes: one frame per peer.
fn send(shard: &Rc<Shard>, topic_partition: &TopicPartition, messages: Vec<Message>) {
    if messages.is_empty() {
        return;
    }
    let mut by_peer: HashMap<u64, Vec<Message>> = HashMap::new();
    for message in messages {
        by_peer.entry(message.to).or_default().push(message);
    }
    let frames: Vec<(NodeId, Frame)> = by_peer
        .into_iter()
        .map(|(to, messages)| {
            let mut body = group_header(topic_partition);
            codec::encode_messages(&mut body, &messages);
            (
                node_of(to),
                Frame {
                    kind: FRAME_PARTITION_RAFT,
                    body: body.into(),
                },
            )
        })
        .collect();
    send_frames(shard, frames);
}

/// Sends every other voter of `replica`'s group a frame of `kind`: the group header, then
/// `fields` as u64 LE.
fn to_followers(shard: &Rc<Shard>, replica: &Replica, kind: u8, fields: &[u64]) {
    let topic_partition = &replica.partition().topic_partition;
    let frames = replica
        .voters()
        .into_iter()
        .filter(|id| *id != replica.id())
        .map(|id| {
            let mut body = group_header(topic_partition);
            for field in fields {
                body.put_u64_le(*field);
            }
            let frame = Frame {
                kind,
                body: body.into(),
            };
            (node_of(id), frame)
        })
        .collect();
    send_frames(shard, frames);
}

fn group_header(topic_partition: &TopicPartition) -> Vec<u8> {
    let topic = topic_partition.topic.as_bytes();
    let mut body = Vec::with_capacity(64 + topic.len());
    body.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    body.extend_from_slice(topic);
    body.extend_from_slice(&topic_partition.partition.to_le_bytes());
    body
}

fn take_group_header(body: &mut Bytes) -> Option<TopicPartition> {
    if body.remaining() < 2 {
        return None;
    }
    let length = body.get_u16_le() as usize;
    if body.remaining() < length + 4 {
        return None;
    }
    let topic = std::str::from_utf8(&body[..length]).ok()?.to_string();
    body.advance(length);
    let partition = body.get_i32_le();
    Some(TopicPartition::new(&topic, partition))
}

/// Frames go out through shard 0's links; from another shard they cross the mesh first.
fn send_frames(shard: &Rc<Shard>, frames: Vec<(NodeId, Frame)>) {
    if shard.id == METADATA_SHARD {
        let links = shard.service::<NodeLinks>();
        for (to, frame) in frames {
            (links.send)(to, frame);
        }
    } else {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let _ = shard.call(METADATA_SHARD, SendFrames(frames)).await;
        })
        .detach();
    }
}

/// Frames from another shard for shard 0's node links.
struct SendFrames(Vec<(NodeId, Frame)>);

impl Request for SendFrames {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            let links = shard.service::<NodeLinks>();
            for (to, frame) in self.0 {
                (links.send)(to, frame);
            }
        })
    }
}

/// A frame for a group, from `from`, handed to the shard that owns the partition.
struct Deliver {
    from: NodeId,
    kind: u8,
    topic_partition: TopicPartition,
    body: Bytes,
}

impl Request for Deliver {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, ()> {
        Box::pin(async move { deliver(&shard, self).await })
    }
}

/// Asks the replica leading `topic_partition`, on node `leader`, to hand its leadership to the
/// replica on node `target` (ElectLeaders). Sent over the node link, or delivered here when
/// this node leads it; the caller watches the leadership for the outcome.
pub fn elect(shard: &Rc<Shard>, topic_partition: &TopicPartition, leader: NodeId, target: NodeId) {
    let this = NodeId(shard.config.node_id);
    if leader != this {
        let mut body = group_header(topic_partition);
        body.put_i32_le(target.0);
        let frame = Frame {
            kind: FRAME_PARTITION_ELECT,
            body: body.into(),
        };
        send_frames(shard, vec![(leader, frame)]);
        return;
    }
    let Some(owner) = shard.owner_shard(&topic_partition.topic, topic_partition.partition) else {
        return;
    };
    let delivery = Deliver {
        from: this,
        kind: FRAME_PARTITION_ELECT,
        topic_partition: topic_partition.clone(),
        body: Bytes::copy_from_slice(&target.0.to_le_bytes()),
    };
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = shard.call(owner, delivery).await;
    })
    .detach();
}

/// Shard 0's handler for partition frames from node links.
pub fn on_frame(shard: &Rc<Shard>, from: NodeId, mut frame: Frame) {
    let Some(topic_partition) = take_group_header(&mut frame.body) else {
        crate::warn_limited!("node {}: malformed partition frame", from.0);
        return;
    };
    let Some(owner) = shard.owner_shard(&topic_partition.topic, topic_partition.partition) else {
        return; // not placed here (yet): Raft retransmits
    };
    let delivery = Deliver {
        from,
        kind: frame.kind,
        topic_partition,
        body: frame.body,
    };
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let _ = shard.call(owner, delivery).await;
    })
    .detach();
}

async fn deliver(shard: &Rc<Shard>, delivery: Deliver) {
    let Deliver {
        from,
        kind,
        topic_partition,
        mut body,
    } = delivery;
    match kind {
        FRAME_PARTITION_RAFT => {
            let Ok(mut messages) = codec::decode_messages(&mut body) else {
                crate::warn_limited!("node {}: bad raft frame for {topic_partition}", from.0);
                return;
            };
            // A node speaks only for itself.
            messages.retain(|message| message.from == raft_id(from));
            shard
                .service::<HostedReplicas>()
                .deliver(&topic_partition, Command::Messages(messages));
        }
        FRAME_CATCH_UP => {
            if body.remaining() < 8 {
                return;
            }
            let offset = body.get_i64_le();
            let Some(partition) = shard
                .partitions
                .get(&topic_partition.topic, topic_partition.partition)
            else {
                return;
            };
            // From the first stored batch: records DeleteRecords removed are still the Raft
            // log a follower must copy (with the deletion entry, which it applies).
            let read = partition.log().read_stored(offset, CATCH_UP_BYTES).await;
            let chunks = match read {
                Ok(chunks) => chunks,
                Err(error) => {
                    // Below the first stored segment (retention deleted it): this follower
                    // cannot be caught up from this log (README, Limits).
                    crate::warn_limited!(
                        "{topic_partition}: cannot serve node {from}'s catch-up at offset {offset}: {error}"
                    );
                    return;
                }
            };
            let mut reply = group_header(&topic_partition);
            reply.put_i64_le(offset);
            for chunk in partition.below_high_watermark(chunks) {
                reply.extend_from_slice(&chunk);
            }
            let frame = Frame {
                kind: FRAME_CATCH_UP_REPLY,
                body: reply.into(),
            };
            send_frames(shard, vec![(from, frame)]);
        }
        FRAME_CATCH_UP_REPLY => {
            if body.remaining() < 8 {
                return;
            }
            let offset = body.get_i64_le();
            shard
                .service::<HostedReplicas>()
                .deliver(&topic_partition, Command::CaughtUp(offset, vec![body]));
        }
        FRAME_PARTITION_QUIESCE => {
            if body.remaining() < 16 {
                return;
            }
            let quiesce = Command::Quiesce {
                term: body.get_u64_le(),
                leader: raft_id(from),
                commit: body.get_u64_le(),
            };
            shard
                .service::<HostedReplicas>()
                .deliver(&topic_partition, quiesce);
        }
        FRAME_PARTITION_WAKE => {
            shard
                .service::<HostedReplicas>()
                .deliver(&topic_partition, Command::Wake);
        }
        FRAME_PARTITION_ELECT => {
            if body.remaining() < 4 {
                return;
            }
            let target = body.get_i32_le();
            if target < 0 {
                return;
            }
            // Nobody waits for the answer: the caller watches the leadership.
            let (done, _answer) = local_channel::new_bounded(1);
            shard.service::<HostedReplicas>().deliver(
                &topic_partition,
                Command::HandOver(Some(raft_id(NodeId(target))), done),
            );
        }
        FRAME_PARTITION_LEADER_GONE => {
            if body.remaining() < 8 {
                return;
            }
            let gone = Command::LeaderGone {
                leader: raft_id(from),
                term: body.get_u64_le(),
            };
            shard
                .service::<HostedReplicas>()
                .deliver(&topic_partition, gone);
        }
        _ => {}
    }
}

/// Asks a peer for the next batches a snapshot needs: the node the snapshot came from first,
/// then the other voters in turn.
fn ask_catch_up(
    shard: &Rc<Shard>,
    replica: &Replica,
    topic_partition: &TopicPartition,
    catch_up: super::replica::CatchUp,
    attempt: usize,
) {
    let mut sources = vec![catch_up.from_node];
    sources.extend(
        replica
            .voters()
            .into_iter()
            .filter(|id| *id != catch_up.from_node && *id != replica.id()),
    );
    let source = sources[attempt % sources.len()];
    let mut body = group_header(topic_partition);
    body.put_i64_le(catch_up.next_offset);
    let frame = Frame {
        kind: FRAME_CATCH_UP,
        body: body.into(),
    };
    send_frames(shard, vec![(node_of(source), frame)]);
}

/// The handler shard 0's node links call when a peer becomes live or down: every shard learns
/// the live set (in order: a late, older change is ignored) and tells its groups.
pub fn liveness_handler(shard: Rc<Shard>) -> LivenessHandler {
    let shard = Rc::downgrade(&shard);
    let generation = Cell::new(0u64);
    let live = RefCell::new(HashSet::new());
    let down = RefCell::new(HashSet::new());
    Rc::new(move |node, is_live| {
        let Some(shard) = shard.upgrade() else {
            return;
        };
        if is_live {
            live.borrow_mut().insert(node);
            down.borrow_mut().remove(&node);
        } else {
            live.borrow_mut().remove(&node);
            down.borrow_mut().insert(node);
        }
        generation.set(generation.get() + 1);
        let change = PeerLiveness {
            generation: generation.get(),
            live: live.borrow().iter().copied().collect(),
            down: down.borrow().iter().copied().collect(),
            node,
            is_live,
        };
        glommio::spawn_local(async move {
            shard.call_all(change).await;
        })
        .detach();
    })
}

/// A change of a peer's liveness, with the whole live and down sets after it.
#[derive(Clone)]
struct PeerLiveness {
    generation: u64,
    live: Vec<NodeId>,
    down: Vec<NodeId>,
    node: NodeId,
    is_live: bool,
}

impl Request for PeerLiveness {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            let replicas = shard.service::<HostedReplicas>();
            if self.generation <= replicas.liveness_generation.get() {
                return;
            }
            replicas.liveness_generation.set(self.generation);
            *replicas.live.borrow_mut() = self.live.into_iter().collect();
            *replicas.down.borrow_mut() = self.down.into_iter().collect();
            for handle in replicas.groups.borrow().values() {
                let _ = handle
                    .inbox
                    .try_send(Command::Liveness(self.node, self.is_live));
            }
        })
    }
}
