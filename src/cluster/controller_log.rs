//! The cluster metadata log: the controller's Raft group (DESIGN §5), on shard 0. Every change
//! to cluster metadata (topics created, deleted or altered, partitions added, producer-id blocks
//! reserved, leader epochs bumped) is one `MetadataDelta` entry; a change is answered once its
//! entry is committed (synced to the log) and applied on every shard. The full metadata is only
//! written as a snapshot: `cluster_metadata.toml` records the Raft index and term it covers,
//! and is rewritten once `metadata.log.max.record.bytes.between.snapshots` (Kafka's key) of
//! entries follow it, after which the log forgets what the snapshot holds. So a CreateTopics costs one small append and one fdatasync, not a rewrite of
//! every topic.
//!
//! Files in the data directory: `cluster_metadata.toml` (snapshot) and `controller.log`
//! (`replication::durable_log`). A data directory from before the log (a snapshot with no
//! Raft index and no `controller.log`) opens as a snapshot at index 0.
//!
//! Voters are `controller.quorum.voters` (this node alone if unset). Alone, the node elects
//! itself at start-up, before any shard runs, and every restart is a new term, as every restart
//! of a one-broker Kafka cluster is a new controller epoch: start-up replays the snapshot and the
//! committed entries, then commits one entry registering the broker and giving every partition
//! it leads a new leader epoch. With other voters, start-up only replays; the driver elects a
//! leader over the node links (`replication::transport`, frames of kind `FRAME_RAFT`), and a
//! change is proposed only by a leader that has applied everything committed before its term
//! (`Leadership::ready`); other nodes forward admin requests to it (`controller.rs`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use serde::{Deserialize, Serialize};

use crate::cluster::admin::ApplyMetadata;
use crate::cluster::metadata::{
    BrokerRegistration, ClusterMetadata, TopicMetadata, METADATA_FILE_NAME,
};
use crate::config::Config;
use crate::ids::NodeId;
use crate::replication::codec;
use crate::replication::durable_log::DurableLog;
use crate::replication::group::{GroupConfig, RaftGroup, SnapshotPoint};
use crate::replication::transport::{Frame, LinkTiming, Membership, Transport};
use crate::replication::{Entry, EntryType};
use crate::shard::Shard;

pub const CONTROLLER_LOG_FILE_NAME: &str = "controller.log";

/// How often the group is ticked; `controller.quorum.election.timeout.ms` and
/// `raft.heartbeat.interval.ms` are counted in these.
const TICK: Duration = Duration::from_millis(50);

/// A snapshot sent to a follower that has neither landed nor failed after this long is sent
/// again.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Proposals waiting for the driver; admin changes are serialised above, so this stays small.
const PROPOSAL_QUEUE_CAPACITY: usize = 64;

/// One metadata change, as stored in the log (JSON). Topics are replaced whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetadataDelta {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_topics: Vec<TopicMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_shard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_producer_id: Option<i64>,
    /// Broker registrations added or replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub register_brokers: Vec<BrokerRegistration>,
    /// Brokers that are not voters, added as learners of this log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_learners: Vec<NodeId>,
    /// Users whose SCRAM credentials were set (the user's whole list) or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_users: Vec<(String, Vec<crate::security::scram::ScramCredential>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_users: Vec<String>,
    /// ACLs created and deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_acls: Vec<crate::security::acl::AclBinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_acls: Vec<crate::security::acl::AclBinding>,
}

impl MetadataDelta {
    /// The change from `current` to `next` for the topics named in `touched` (and the
    /// counters, when they moved).
    pub fn between<'a>(
        current: &ClusterMetadata,
        next: &ClusterMetadata,
        touched: impl IntoIterator<Item = &'a str>,
    ) -> MetadataDelta {
        let mut delta = MetadataDelta::default();
        for name in touched {
            match next.topics.get(name) {
                Some(topic) => delta.set_topics.push(topic.clone()),
                None if current.topics.contains_key(name) => {
                    delta.remove_topics.push(name.to_string())
                }
                None => {}
            }
        }
        if next.next_shard != current.next_shard {
            delta.next_shard = Some(next.next_shard);
        }
        if next.next_producer_id != current.next_producer_id {
            delta.next_producer_id = Some(next.next_producer_id);
        }
        delta.add_learners = next
            .learners
            .iter()
            .filter(|learner| !current.learners.contains(learner))
            .copied()
            .collect();
        for (user, credentials) in &next.users {
            if current.users.get(user) != Some(credentials) {
                delta.set_users.push((user.clone(), credentials.clone()));
            }
        }
        delta.remove_users = current
            .users
            .keys()
            .filter(|user| !next.users.contains_key(*user))
            .cloned()
            .collect();
        delta.add_acls = next
            .acls
            .iter()
            .filter(|acl| !current.acls.contains(acl))
            .cloned()
            .collect();
        delta.remove_acls = current
            .acls
            .iter()
            .filter(|acl| !next.acls.contains(acl))
            .cloned()
            .collect();
        delta.register_brokers = next
            .brokers
            .iter()
            .filter(|broker| current.broker(broker.node_id) != Some(*broker))
            .cloned()
            .collect();
        delta
    }

    pub fn is_empty(&self) -> bool {
        *self == MetadataDelta::default()
    }

    /// Applies the change as a new metadata version.
    pub fn apply_to(&self, metadata: &mut ClusterMetadata) {
        for topic in &self.set_topics {
            metadata.topics.insert(topic.name.clone(), topic.clone());
        }
        for name in &self.remove_topics {
            metadata.topics.remove(name);
        }
        if let Some(next_shard) = self.next_shard {
            metadata.next_shard = next_shard;
        }
        if let Some(next_producer_id) = self.next_producer_id {
            metadata.next_producer_id = next_producer_id;
        }
        for broker in &self.register_brokers {
            metadata.register(broker.clone());
        }
        for (user, credentials) in &self.set_users {
            metadata.users.insert(user.clone(), credentials.clone());
        }
        for user in &self.remove_users {
            metadata.users.remove(user);
        }
        metadata.acls.retain(|acl| !self.remove_acls.contains(acl));
        for acl in &self.add_acls {
            if !metadata.acls.contains(acl) {
                metadata.acls.push(acl.clone());
            }
        }
        for learner in &self.add_learners {
            if !metadata.learners.contains(learner) {
                metadata.learners.push(*learner);
            }
        }
        metadata.version += 1;
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a delta is always representable in JSON")
    }
}

/// Applies one committed entry: a delta changes the metadata, anything else (a new leader's
/// empty entry, configuration changes) only moves the applied point.
fn apply_entry(metadata: &mut ClusterMetadata, entry: &Entry) -> Result<(), String> {
    if entry.entry_type == EntryType::EntryNormal && !entry.data.is_empty() {
        let delta: MetadataDelta = serde_json::from_slice(&entry.data)
            .map_err(|error| format!("metadata log entry {}: {error}", entry.index))?;
        delta.apply_to(metadata);
    }
    metadata.raft_index = entry.index;
    metadata.raft_term = entry.term;
    Ok(())
}

fn snapshot_point(metadata: &ClusterMetadata) -> SnapshotPoint {
    SnapshotPoint {
        index: metadata.raft_index,
        term: metadata.raft_term,
    }
}

/// Raft ids must be non-zero and Kafka node ids start at 0: a node's Raft id is its node id + 1.
fn raft_id(node: NodeId) -> u64 {
    u64::try_from(node.0).expect("node ids are not negative") + 1
}

fn node_of(raft_id: u64) -> NodeId {
    NodeId(i32::try_from(raft_id.saturating_sub(1)).unwrap_or(i32::MAX))
}

/// The voters: `controller.quorum.voters`, or this node alone.
pub fn voters(config: &Config) -> Vec<NodeId> {
    if config.controller_quorum_voters.is_empty() {
        vec![NodeId(config.node_id)]
    } else {
        config
            .controller_quorum_voters
            .iter()
            .map(|(id, _)| NodeId(*id))
            .collect()
    }
}

fn group_config(
    config: &Config,
    node: NodeId,
    voters: &[NodeId],
    learners: &[NodeId],
) -> GroupConfig {
    let ticks = |ms: u64| (ms / TICK.as_millis() as u64).max(1) as usize;
    let heartbeat_ticks = ticks(config.raft_heartbeat_interval_ms);
    GroupConfig {
        id: raft_id(node),
        voters: voters.iter().map(|voter| raft_id(*voter)).collect(),
        learners: learners.iter().map(|learner| raft_id(*learner)).collect(),
        election_ticks: ticks(config.controller_quorum_election_timeout_ms)
            .max(heartbeat_ticks + 1),
        heartbeat_ticks,
        name: "controller".to_string(),
        fixed_election_timeout: false,
    }
}

/// The controller's group and the metadata it has applied; created at start-up, then owned by
/// shard 0's driver task.
pub struct ControllerNode {
    group: RaftGroup,
    voters: Vec<NodeId>,
    metadata: ClusterMetadata,
    data_dir: PathBuf,
    /// Entry bytes after the snapshot, and the threshold for the next one.
    bytes_since_snapshot: u64,
    snapshot_bytes: u64,
}

impl std::fmt::Debug for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerNode")
            .field("metadata_version", &self.metadata.version)
            .field("raft_index", &self.metadata.raft_index)
            .finish()
    }
}

/// Start-up (blocking `std::fs`, no executor yet): opens the log on top of `snapshot`, applies
/// what it committed, elects this node and commits `start_change` (computed on the recovered
/// metadata: the leader-epoch bump). `write_snapshot` forces a snapshot at the end (a format
/// upgrade or a new data directory). Returns the metadata every shard starts from.
pub fn open(
    config: &Config,
    snapshot: ClusterMetadata,
    start_change: impl FnOnce(&mut ClusterMetadata) -> Vec<String>,
    write_snapshot: bool,
) -> Result<(ClusterMetadata, ControllerNode), String> {
    let node = NodeId(config.node_id);
    let voters = voters(config);
    let log_path = config.data_dir.join(CONTROLLER_LOG_FILE_NAME);
    let describe = |error: std::io::Error| format!("{}: {error}", log_path.display());
    let (mut group, committed) = RaftGroup::open(
        &group_config(config, node, &voters, &snapshot.learners),
        &log_path,
        snapshot_point(&snapshot),
    )
    .map_err(describe)?;
    if snapshot.raft_index > 0 {
        group.set_snapshot_image(
            snapshot_point(&snapshot),
            bytes::Bytes::from(snapshot.to_toml()),
        );
    }
    let mut metadata = snapshot;
    let mut bytes_since_snapshot = 0;
    for entry in &committed {
        apply_entry(&mut metadata, entry)?;
        bytes_since_snapshot += entry.data.len() as u64;
    }
    add_learners(&mut group, &voters, &metadata.learners).map_err(describe)?;
    if voters == [node] {
        // Alone: lead now, and commit the start-up change before any shard serves.
        group
            .raw()
            .campaign()
            .map_err(|error| format!("controller election: {error}"))?;
        drive_blocking(&mut group, &mut metadata).map_err(describe)?;
        if !group.is_leader() {
            return Err("the controller did not elect itself (one voter)".to_string());
        }
        let mut next = metadata.clone();
        let touched = start_change(&mut next);
        let delta = MetadataDelta::between(&metadata, &next, touched.iter().map(String::as_str));
        if !delta.is_empty() {
            group
                .raw()
                .propose(Vec::new(), delta.encode())
                .map_err(|error| format!("controller proposal at start: {error}"))?;
            let target = group.last_index();
            drive_blocking(&mut group, &mut metadata).map_err(describe)?;
            if metadata.raft_index < target {
                return Err(format!(
                    "the start-up entry {target} was not committed (applied {})",
                    metadata.raft_index
                ));
            }
        }
    }
    add_learners(&mut group, &voters, &metadata.learners).map_err(describe)?;
    let mut node = ControllerNode {
        group,
        voters,
        metadata,
        data_dir: config.data_dir.clone(),
        bytes_since_snapshot,
        snapshot_bytes: config.metadata_log_snapshot_bytes,
    };
    if write_snapshot || node.snapshot_due() {
        node.snapshot_blocking().map_err(describe)?;
    }
    Ok((node.metadata.clone(), node))
}

/// Adds the recorded learners that are not voters to the group's configuration.
fn add_learners(
    group: &mut RaftGroup,
    voters: &[NodeId],
    learners: &[NodeId],
) -> std::io::Result<()> {
    for learner in learners
        .iter()
        .filter(|learner| learner.0 >= 0 && !voters.contains(learner))
    {
        group.add_learner(raft_id(*learner))?;
    }
    Ok(())
}

/// Runs Ready steps (blocking) until nothing is ready: with one voter, everything proposed is
/// then committed and applied.
fn drive_blocking(group: &mut RaftGroup, metadata: &mut ClusterMetadata) -> std::io::Result<()> {
    while group.raw().has_ready() {
        let progress = group.advance_blocking()?;
        for entry in &progress.committed {
            apply_entry(metadata, entry)
                .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
        }
    }
    Ok(())
}

impl ControllerNode {
    fn snapshot_due(&self) -> bool {
        self.bytes_since_snapshot >= self.snapshot_bytes
    }

    /// Writes the metadata as the snapshot at its applied point, then compacts the log.
    fn snapshot_blocking(&mut self) -> std::io::Result<()> {
        write_snapshot_file(&self.data_dir, &self.metadata)?;
        let point = snapshot_point(&self.metadata);
        self.group
            .set_snapshot_image(point, bytes::Bytes::from(self.metadata.to_toml()));
        self.group.compact(point)?;
        self.bytes_since_snapshot = 0;
        Ok(())
    }
}

/// `cluster_metadata.toml`: temporary file, fdatasync, rename, directory fsync.
pub fn write_snapshot_file(data_dir: &Path, metadata: &ClusterMetadata) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(METADATA_FILE_NAME);
    let temporary = data_dir.join(format!("{METADATA_FILE_NAME}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(metadata.to_toml().as_bytes())?;
    file.sync_data()?;
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// What a data directory's metadata says now: the snapshot plus every entry in the log (read
/// only; for tools and tests, safe while a broker runs).
pub fn read_metadata(data_dir: &Path) -> Result<ClusterMetadata, String> {
    let path = data_dir.join(METADATA_FILE_NAME);
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut metadata = ClusterMetadata::from_toml(&text)?;
    let log_path = data_dir.join(CONTROLLER_LOG_FILE_NAME);
    let recovered =
        DurableLog::read(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    for entry in &recovered.entries {
        if entry.index > metadata.raft_index {
            apply_entry(&mut metadata, entry)?;
        }
    }
    Ok(metadata)
}

/// A change waiting to be committed; answered once it is applied on every shard.
struct Proposal {
    delta: MetadataDelta,
    /// The metadata version the change was validated against: if another change was applied
    /// since (a leadership change between validation and proposal), it is refused, not applied
    /// on top of state it never saw.
    based_on: u64,
    done: LocalSender<Result<(), ProposeError>>,
}

/// Why a change was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This node does not lead (any more), or the metadata moved under the change: retriable
    /// (NOT_CONTROLLER). The change may still commit if it was already in the log.
    NotController(String),
    /// The metadata log failed here (write, apply or snapshot): the controller stopped.
    Failed(String),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotController(reason) | ProposeError::Failed(reason) => {
                f.write_str(reason)
            }
        }
    }
}

/// What the driver waits for.
enum Input {
    Propose(Box<Proposal>),
    /// Raft messages from another voter.
    Raft(Vec<raft::eraftpb::Message>),
    /// The shard is shutting down: hand leadership over, answer when this node no longer leads.
    HandOver(LocalSender<()>),
}

/// Who leads the controller group, as shard 0's driver last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's node id, if one is known.
    pub leader: Option<NodeId>,
    /// This node leads and has applied everything committed before its term: changes may be
    /// validated against its metadata.
    pub ready: bool,
}

/// The controller quorum as this node sees it (DescribeQuorum); progress of the voters is known
/// only on the leader.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QuorumStatus {
    /// The leader's node id, -1 if none.
    pub leader: i32,
    /// The Raft term (Kafka's leader epoch of `__cluster_metadata`).
    pub term: u64,
    /// The commit index (the metadata log's high watermark).
    pub commit: u64,
    pub voters: Vec<VoterState>,
    /// Learners (brokers that are not voters).
    #[serde(default)]
    pub observers: Vec<VoterState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VoterState {
    pub node: i32,
    /// Log end the leader knows this voter has (-1 if unknown here).
    pub log_end: i64,
    /// Whether the leader heard from it within the last election timeout.
    pub recently_active: bool,
}

/// Shard 0's handle on the driver.
pub struct Controller {
    inputs: Rc<LocalSender<Input>>,
    leadership: Cell<Leadership>,
    /// Node-to-node links (None on a one-node cluster).
    pub transport: Option<Rc<Transport>>,
    /// Published for every shard (Metadata's controller id): the leader's node id, -1 if none.
    pub published_leader: Arc<AtomicI32>,
    /// Last heartbeat heard from each broker (kept by whichever node leads).
    pub heartbeats: RefCell<HashMap<NodeId, Instant>>,
    /// The quorum as of the driver's last step.
    pub quorum: RefCell<QuorumStatus>,
    /// When this node last became the ready leader: a broker's session counts from here at the
    /// earliest, so a new controller fences nobody before it could have heard from them.
    pub leading_since: Cell<Option<Instant>>,
}

impl Controller {
    pub fn leadership(&self) -> Leadership {
        self.leadership.get()
    }
}

/// Frame kinds on node links (`replication::transport`).
pub const FRAME_RAFT: u8 = 1;
pub const FRAME_FORWARD: u8 = 2;
pub const FRAME_FORWARD_REPLY: u8 = 3;
/// A broker's heartbeat to the active controller (empty body; the link names the sender).
pub const FRAME_HEARTBEAT: u8 = 4;

/// Starts the driver on shard 0 with the node `open` returned, and registers `Controller`.
/// With other voters, also starts the node links; `on_frame` gets the frames that are not Raft
/// traffic (forwarded requests and their replies).
pub fn start(
    shard: &Rc<Shard>,
    node: ControllerNode,
    published_leader: Arc<AtomicI32>,
    on_frame: Rc<dyn Fn(NodeId, Frame)>,
) -> Result<(), String> {
    let (sender, receiver) = local_channel::new_bounded(PROPOSAL_QUEUE_CAPACITY);
    let sender = Rc::new(sender);
    let clustered = !shard.config.controller_quorum_voters.is_empty();
    let transport = match (shard.config.controller_listen, clustered) {
        (Some(listen), true) => {
            let peers: Vec<(NodeId, SocketAddr)> = shard
                .config
                .controller_quorum_voters
                .iter()
                .map(|(id, address)| (NodeId(*id), *address))
                .collect();
            let inputs = sender.clone();
            let handler: Rc<dyn Fn(NodeId, Frame)> = Rc::new(move |from, mut frame| {
                if frame.kind != FRAME_RAFT {
                    return on_frame(from, frame);
                }
                let mut messages = match codec::decode_messages(&mut frame.body) {
                    Ok(messages) => messages,
                    Err(error) => {
                        crate::warn_limited!("node {}: bad raft frame: {error}", from.0);
                        return;
                    }
                };
                // A node speaks only for itself (members and learners alike; nodes of another
                // quorum were refused at the link's hello).
                let Ok(sender) = u64::try_from(from.0) else {
                    return; // node ids are never negative
                };
                messages.retain(|message| message.from == sender + 1);
                if messages.is_empty() {
                    return;
                }
                let carries_snapshot = messages
                    .iter()
                    .any(|m| m.msg_type == raft::prelude::MessageType::MsgSnapshot);
                match inputs.try_send(Input::Raft(messages)) {
                    Ok(()) => {}
                    // A full queue drops ordinary traffic (Raft retransmits), but a snapshot is
                    // sent once and its leader waits for the outcome: queue it whatever it takes.
                    Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                        Input::Raft(messages),
                    ))) if carries_snapshot => {
                        let inputs = inputs.clone();
                        glommio::spawn_local(async move {
                            let _ = inputs.send(Input::Raft(messages)).await;
                        })
                        .detach();
                    }
                    Err(_) => {}
                }
            });
            let timing = LinkTiming {
                ping: Duration::from_millis(shard.config.raft_heartbeat_interval_ms),
                silence: Duration::from_millis(shard.config.controller_quorum_election_timeout_ms),
            };
            let transport = Transport::start(
                shard.node,
                listen,
                &peers,
                Membership {
                    fingerprint: quorum_fingerprint(&shard.config),
                    tls: crate::replication::link_stream::node_tls(&shard.config)?,
                },
                timing,
                handler,
                crate::replication::replicas::liveness_handler(shard.clone()),
            )
            .map_err(|error| format!("CONTROLLER listener {listen}: {error}"))?;
            Some(transport)
        }
        _ => None,
    };
    // Alone, `open` already elected this node and applied everything.
    let leading = node.group.is_leader();
    let leadership = Leadership {
        leader: leading.then_some(shard.node),
        ready: leading,
    };
    published_leader.store(leadership.leader.map_or(-1, |n| n.0), Ordering::Relaxed);
    shard.register(Rc::new(Controller {
        inputs: sender,
        leadership: Cell::new(leadership),
        transport,
        published_leader,
        heartbeats: RefCell::new(HashMap::new()),
        quorum: RefCell::new(QuorumStatus::default()),
        leading_since: Cell::new(leading.then(Instant::now)),
    }));
    let hand_over = Rc::downgrade(&shard.service::<Controller>().inputs);
    shard.shutdown.on_drain(Box::new(move || {
        let inputs = hand_over.upgrade();
        Box::pin(async move {
            let Some(inputs) = inputs else { return };
            let (done, answer) = local_channel::new_bounded(1);
            if inputs.send(Input::HandOver(done)).await.is_ok() {
                let _ = answer.recv().await;
            }
        })
    }));
    let shard = shard.clone();
    glommio::spawn_local(drive(shard, node, receiver)).detach();
    Ok(())
}

/// Commits `delta`, validated against metadata version `based_on`, through the metadata log; Ok
/// once every shard applied it.
pub async fn propose(
    shard: &Shard,
    delta: MetadataDelta,
    based_on: u64,
) -> Result<(), ProposeError> {
    let controller = shard.service::<Controller>();
    let (done, answer) = local_channel::new_bounded(1);
    let proposal = Proposal {
        delta,
        based_on,
        done,
    };
    if controller
        .inputs
        .send(Input::Propose(Box::new(proposal)))
        .await
        .is_err()
    {
        return Err(ProposeError::Failed(
            "the controller has stopped".to_string(),
        ));
    }
    answer.recv().await.unwrap_or_else(|| {
        Err(ProposeError::Failed(
            "the controller stopped before answering".to_string(),
        ))
    })
}

/// The driver: ticks the group, feeds it proposals and peers' messages, persists and applies
/// what it readies, sends what it asks to send. A failed log write stops the controller
/// (metadata changes are then refused with a storage error) rather than letting memory and
/// disk disagree.
async fn drive(shard: Rc<Shard>, mut node: ControllerNode, inputs: LocalReceiver<Input>) {
    let controller = shard.service::<Controller>();
    let run_nonce = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut next_proposal: u64 = 0;
    let mut waiting: Waiting = HashMap::new();
    let mut next_tick = Instant::now() + TICK;
    let mut handing_over: Option<LocalSender<()>> = None;
    // When a snapshot went to each peer: one that neither lands nor fails within
    // `SNAPSHOT_WAIT` is reported failed, so the leader sends it again.
    let mut snapshots_sent: HashMap<NodeId, Instant> = HashMap::new();
    if node.voters.len() > 1 && node.voters.iter().min() == Some(&shard.node) {
        // A fresh cluster need not wait out an election timeout: the lowest voter asks at
        // once. Pre-vote makes this harmless when a leader already exists (it is refused).
        if let Err(error) = node.group.raw().campaign() {
            log::debug!("controller: early campaign refused: {error}");
        }
    }
    // The term this node leads and the index of its first entry in it.
    let mut leading_from: Option<(u64, u64)> = node
        .group
        .is_leader()
        .then(|| (node.group.term(), node.metadata.raft_index));
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let received = futures_lite::future::or(async { Some(inputs.recv().await) }, async {
            glommio::timer::sleep(wait).await;
            None
        })
        .await;
        match received {
            Some(None) => return, // every sender is gone: the shard is stopping
            Some(Some(Input::Propose(proposal))) => {
                next_proposal += 1;
                let context = [run_nonce.to_le_bytes(), next_proposal.to_le_bytes()].concat();
                let refused = if !controller.leadership().ready {
                    Some("this node is not the active controller".to_string())
                } else if proposal.based_on != node.metadata.version {
                    Some(format!(
                        "the metadata moved from version {} to {} under the change",
                        proposal.based_on, node.metadata.version
                    ))
                } else {
                    node.group
                        .raw()
                        .propose(context, proposal.delta.encode())
                        .err()
                        .map(|error| format!("the Raft group refused it: {error}"))
                };
                match refused {
                    None => {
                        waiting.insert((run_nonce, next_proposal), proposal.done);
                    }
                    Some(reason) => {
                        let _ = proposal
                            .done
                            .try_send(Err(ProposeError::NotController(reason)));
                    }
                }
            }
            Some(Some(Input::HandOver(done))) => {
                // Controlled shutdown: hand leadership to the most caught-up voter now rather
                // than leave the others an election timeout of silence.
                match successor(&mut node) {
                    Some(target) => {
                        log::info!(
                            "controller: shutting down, handing leadership to node {}",
                            target.0
                        );
                        node.group.raw().transfer_leader(raft_id(target));
                        handing_over = Some(done);
                    }
                    None => drop(done.try_send(())),
                }
            }
            Some(Some(Input::Raft(messages))) => {
                for message in messages {
                    if !node.group.can_take(&message) {
                        crate::warn_limited!(
                            "controller: dropped a {:?} from node {} that contradicts this \
                             node's log (a wiped or foreign data directory?)",
                            message.msg_type,
                            node_of(message.from).0
                        );
                        continue;
                    }
                    if let Err(error) = node.group.raw().step(message) {
                        log::debug!("controller: peer message refused: {error}");
                    }
                }
            }
            None => {}
        }
        if Instant::now() >= next_tick {
            node.group.raw().tick();
            next_tick = Instant::now() + TICK;
            let overdue: Vec<NodeId> = snapshots_sent
                .iter()
                .filter(|(_, sent)| sent.elapsed() > SNAPSHOT_WAIT)
                .map(|(peer, _)| *peer)
                .collect();
            for peer in overdue {
                snapshots_sent.remove(&peer);
                let stuck = node
                    .group
                    .raw()
                    .raft
                    .prs()
                    .get(raft_id(peer))
                    .is_some_and(|p| p.state == raft::ProgressState::Snapshot);
                if stuck {
                    node.group
                        .raw()
                        .report_snapshot(raft_id(peer), raft::SnapshotStatus::Failure);
                }
            }
        }
        while node.group.raw().has_ready() {
            let mut progress = match node.group.advance().await {
                Ok(progress) => progress,
                Err(error) => {
                    log::error!("controller log write failed, metadata changes stop: {error}");
                    let reason = format!("metadata log write failed: {error}");
                    fail_all(&mut waiting, &reason);
                    return stop(&controller, inputs, reason).await;
                }
            };
            if let Some(snapshot) = progress.snapshot.take() {
                // Durable before anything acknowledging it is sent.
                node = match install_snapshot(node, snapshot).await {
                    Ok(node) => node,
                    Err(error) => {
                        log::error!("controller: cannot install the leader's snapshot: {error}");
                        fail_all(&mut waiting, &error);
                        return stop(&controller, inputs, error).await;
                    }
                };
                follow_membership(&controller, &mut node);
                broadcast(&shard, &node.metadata).await;
            }
            for peer in send_messages(&controller, progress.messages, &mut snapshots_sent) {
                node.group
                    .raw()
                    .report_snapshot(raft_id(peer), raft::SnapshotStatus::Failure);
            }
            for entry in &progress.committed {
                if let Err(error) = apply_entry(&mut node.metadata, entry) {
                    // Every node would fail the same way at this entry; stop rather than
                    // answer it, and refuse changes until an operator looks.
                    log::error!("controller: {error}; metadata changes stop");
                    fail_all(&mut waiting, &error);
                    return stop(&controller, inputs, error).await;
                }
                node.bytes_since_snapshot += entry.data.len() as u64;
                if entry.entry_type == EntryType::EntryNormal && !entry.data.is_empty() {
                    follow_membership(&controller, &mut node);
                    broadcast(&shard, &node.metadata).await;
                }
                if let Some(key) = proposal_key(&entry.context) {
                    if let Some(done) = waiting.remove(&key) {
                        let _ = done.try_send(Ok(()));
                    }
                }
            }
        }
        // Leadership as of now; proposals of a lost term are answered (they may or may not
        // commit later: the caller sees a retriable error and metadata tells the truth).
        let term = node.group.term();
        if !node.group.is_leader() {
            if let Some(done) = handing_over.take() {
                let _ = done.try_send(());
            }
        }
        if node.group.is_leader() {
            if leading_from.is_none_or(|(leading_term, _)| leading_term != term) {
                leading_from = Some((term, node.group.last_index()));
            }
        } else {
            leading_from = None;
            for (_, done) in waiting.drain() {
                let _ = done.try_send(Err(ProposeError::NotController(
                    "the controller lost its leadership".to_string(),
                )));
            }
        }
        let leader_raft_id = node.group.leader_id();
        let leadership = Leadership {
            leader: (leader_raft_id != raft::INVALID_ID).then(|| node_of(leader_raft_id)),
            ready: leading_from.is_some_and(|(_, first)| node.metadata.raft_index >= first),
        };
        if leadership != controller.leadership() {
            log::info!(
                "controller: leader {:?} (term {term}), this node {}",
                leadership.leader.map(|n| n.0),
                if leadership.ready { "leads" } else { "follows" }
            );
            if leadership.ready && !controller.leadership().ready {
                controller.leading_since.set(Some(Instant::now()));
            }
            controller.leadership.set(leadership);
            controller
                .published_leader
                .store(leadership.leader.map_or(-1, |n| n.0), Ordering::Relaxed);
        }
        *controller.quorum.borrow_mut() = quorum_status(&mut node);
        if node.snapshot_due() {
            node = match snapshot_off_shard(node).await {
                Ok(node) => node,
                Err(error) => {
                    log::error!("controller snapshot failed, metadata changes stop: {error}");
                    fail_all(&mut waiting, &error);
                    return stop(&controller, inputs, error).await;
                }
            };
        }
    }
}

/// The voter a leader should hand over to: active, most caught up (None unless this node leads
/// a group with other voters).
fn successor(node: &mut ControllerNode) -> Option<NodeId> {
    if !node.group.is_leader() {
        return None;
    }
    let this = node.group.raw().status().id;
    let status = node.group.raw().status();
    let tracker = status.progress?;
    let voters: Vec<u64> = node.voters.iter().map(|voter| raft_id(*voter)).collect();
    tracker
        .iter()
        .filter(|(id, progress)| **id != this && voters.contains(id) && progress.recent_active)
        .max_by_key(|(_, progress)| progress.matched)
        .map(|(id, _)| node_of(*id))
}

fn quorum_status(node: &mut ControllerNode) -> QuorumStatus {
    let leader = node.group.leader_id();
    let last_index = node.group.last_index();
    let status = node.group.raw().status();
    let progress: HashMap<u64, (u64, bool)> = status
        .progress
        .map(|tracker| {
            tracker
                .iter()
                .map(|(id, progress)| (*id, (progress.matched, progress.recent_active)))
                .collect()
        })
        .unwrap_or_default();
    let this = status.id;
    let state_of = |member: &NodeId| {
        let id = raft_id(*member);
        let (log_end, recently_active) = match progress.get(&id) {
            Some((matched, active)) => (*matched as i64 + 1, *active),
            None if id == this => (last_index as i64 + 1, true),
            None => (-1, false),
        };
        VoterState {
            node: member.0,
            log_end,
            recently_active,
        }
    };
    QuorumStatus {
        leader: if leader == raft::INVALID_ID {
            -1
        } else {
            node_of(leader).0
        },
        term: status.hs.term,
        commit: status.hs.commit,
        voters: node.voters.iter().map(state_of).collect(),
        observers: node.metadata.learners.iter().map(state_of).collect(),
    }
}

/// Keeps the group's learners and the node links in step with the applied metadata: every
/// learner the log added joins this node's configuration (every member does so at the same
/// entry), and every registered broker with a CONTROLLER listener gets a link.
fn follow_membership(controller: &Controller, node: &mut ControllerNode) {
    let learners = node.metadata.learners.clone();
    if let Err(error) = add_learners(&mut node.group, &node.voters, &learners) {
        log::error!("controller: cannot add a learner: {error}");
    }
    if let Some(transport) = &controller.transport {
        for broker in &node.metadata.brokers {
            if let Some(address) = broker.controller.filter(|a| !a.ip().is_unspecified()) {
                transport.add_peer(broker.node_id, address);
            }
        }
    }
}

/// Sends Raft messages, one frame per peer; returns the peers whose snapshot could not be
/// queued (the leader must be told, or it waits for that snapshot forever).
fn send_messages(
    controller: &Controller,
    messages: Vec<raft::eraftpb::Message>,
    snapshots_sent: &mut HashMap<NodeId, Instant>,
) -> Vec<NodeId> {
    let Some(transport) = &controller.transport else {
        return Vec::new();
    };
    let mut by_peer: HashMap<u64, Vec<raft::eraftpb::Message>> = HashMap::new();
    for message in messages {
        by_peer.entry(message.to).or_default().push(message);
    }
    let mut failed = Vec::new();
    for (to, messages) in by_peer {
        let snapshot = messages
            .iter()
            .any(|m| m.msg_type == raft::prelude::MessageType::MsgSnapshot);
        let mut body = Vec::new();
        codec::encode_messages(&mut body, &messages);
        let frame = Frame {
            kind: FRAME_RAFT,
            body: body.into(),
        };
        let sent = transport.send(node_of(to), frame);
        if snapshot {
            if sent {
                snapshots_sent.insert(node_of(to), Instant::now());
            } else {
                failed.push(node_of(to));
            }
        }
    }
    failed
}

/// Nodes of one cluster must agree on the voters: links between nodes configured with
/// different quorums are refused (they could otherwise form two majorities).
fn quorum_fingerprint(config: &Config) -> u64 {
    let mut voters = config.controller_quorum_voters.clone();
    voters.sort();
    let text = format!("{voters:?}");
    let high = crc32c::crc32c(text.as_bytes());
    let low = crc32c::crc32c_append(high, b"sluice-quorum");
    (u64::from(high) << 32) | u64::from(low)
}

type Waiting = HashMap<(u64, u64), LocalSender<Result<(), ProposeError>>>;

fn fail_all(waiting: &mut Waiting, reason: &str) {
    for (_, done) in waiting.drain() {
        let _ = done.try_send(Err(ProposeError::Failed(reason.to_string())));
    }
}

/// After a fatal log error: this node stops leading or following (the others go on without it)
/// and answers every later proposal with the error until the shard stops.
async fn stop(controller: &Controller, inputs: LocalReceiver<Input>, error: String) {
    controller.leadership.set(Leadership::default());
    controller.published_leader.store(-1, Ordering::Relaxed);
    while let Some(input) = inputs.recv().await {
        match input {
            Input::Propose(proposal) => {
                let _ = proposal.done.try_send(Err(ProposeError::Failed(format!(
                    "metadata log unavailable: {error}"
                ))));
            }
            Input::HandOver(done) => drop(done.try_send(())),
            Input::Raft(_) => {}
        }
    }
}

fn proposal_key(context: &[u8]) -> Option<(u64, u64)> {
    let nonce = u64::from_le_bytes(context.get(0..8)?.try_into().ok()?);
    let sequence = u64::from_le_bytes(context.get(8..16)?.try_into().ok()?);
    Some((nonce, sequence))
}

/// Replaces this node's metadata with a leader's snapshot and writes it as the local snapshot
/// (on the blocking pool; the node moves there and back).
async fn install_snapshot(
    node: ControllerNode,
    snapshot: crate::replication::Snapshot,
) -> Result<ControllerNode, String> {
    let point = snapshot.get_metadata();
    let text = std::str::from_utf8(&snapshot.data)
        .map_err(|_| "the leader's snapshot is not UTF-8".to_string())?;
    let mut metadata = ClusterMetadata::from_toml(text)?;
    metadata.raft_index = point.index;
    metadata.raft_term = point.term;
    log::info!(
        "controller: installing the leader's snapshot at index {} (term {})",
        point.index,
        point.term
    );
    let (node, result) = glommio::executor()
        .spawn_blocking(move || {
            let result = write_snapshot_file(&node.data_dir, &metadata).map(|()| metadata);
            (node, result)
        })
        .await;
    let mut node = node;
    node.metadata = result.map_err(|error| error.to_string())?;
    node.bytes_since_snapshot = 0;
    Ok(node)
}

/// Writes a snapshot and compacts on the blocking pool (the node moves there and back).
async fn snapshot_off_shard(mut node: ControllerNode) -> Result<ControllerNode, String> {
    let (node, result) = glommio::executor()
        .spawn_blocking(move || {
            let result = node.snapshot_blocking();
            (node, result)
        })
        .await;
    result.map_err(|error| error.to_string())?;
    Ok(node)
}

/// Sends the new version to every shard (this one included) and waits until all applied it.
async fn broadcast(shard: &Rc<Shard>, metadata: &ClusterMetadata) {
    let request = ApplyMetadata(Box::new(metadata.clone()));
    for outcome in shard.call_all(request).await {
        if let Err(error) = outcome {
            log::error!("metadata version {} not applied: {error}", metadata.version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TopicId;

    fn topic(name: &str) -> TopicMetadata {
        TopicMetadata {
            name: name.to_string(),
            topic_id: TopicId::new_random(),
            placement: Vec::new(),
            partitions: Vec::new(),
            configs: Default::default(),
        }
    }

    #[test]
    fn a_delta_carries_exactly_the_touched_topics_and_moved_counters() {
        let mut current = ClusterMetadata::default();
        current.topics.insert("kept".into(), topic("kept"));
        current.topics.insert("gone".into(), topic("gone"));
        let mut next = current.clone();
        next.topics.remove("gone");
        next.topics.insert("new".into(), topic("new"));
        next.next_shard = 3;
        let delta = MetadataDelta::between(&current, &next, ["gone", "new", "never-was"]);
        assert_eq!(delta.remove_topics, vec!["gone".to_string()]);
        assert_eq!(delta.set_topics, vec![next.topics["new"].clone()]);
        assert_eq!(delta.next_shard, Some(3));
        assert_eq!(delta.next_producer_id, None);

        let decoded: MetadataDelta = serde_json::from_slice(&delta.encode()).expect("round trip");
        let mut applied = current.clone();
        decoded.apply_to(&mut applied);
        assert_eq!(applied.topics, next.topics);
        assert_eq!(applied.next_shard, 3);
        assert_eq!(applied.version, current.version + 1);
    }
}
