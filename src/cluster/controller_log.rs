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
//! Today the group has one voter, this node (no `controller.quorum.voters` yet): it elects itself
//! at start-up, before any shard runs, and every restart is a new term, as every restart of a
//! one-broker Kafka cluster is a new controller epoch. Start-up replays the snapshot and the
//! committed entries, then commits one entry giving every partition this node leads a new leader
//! epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use serde::{Deserialize, Serialize};

use crate::cluster::admin::ApplyMetadata;
use crate::cluster::metadata::{ClusterMetadata, TopicMetadata, METADATA_FILE_NAME};
use crate::config::Config;
use crate::ids::NodeId;
use crate::replication::durable_log::DurableLog;
use crate::replication::group::{GroupConfig, RaftGroup, SnapshotPoint};
use crate::replication::{Entry, EntryType};
use crate::shard::Shard;

pub const CONTROLLER_LOG_FILE_NAME: &str = "controller.log";

/// How often the group is ticked; elections and heartbeats count these.
const TICK: Duration = Duration::from_millis(100);
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;

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

fn group_config(node: NodeId) -> GroupConfig {
    GroupConfig {
        id: raft_id(node),
        voters: vec![raft_id(node)],
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
        name: "controller".to_string(),
    }
}

/// The controller's group and the metadata it has applied; created at start-up, then owned by
/// shard 0's driver task.
pub struct ControllerNode {
    group: RaftGroup,
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
    let log_path = config.data_dir.join(CONTROLLER_LOG_FILE_NAME);
    let describe = |error: std::io::Error| format!("{}: {error}", log_path.display());
    let (mut group, committed) =
        RaftGroup::open(&group_config(node), &log_path, snapshot_point(&snapshot))
            .map_err(describe)?;
    let mut metadata = snapshot;
    let mut bytes_since_snapshot = 0;
    for entry in &committed {
        apply_entry(&mut metadata, entry)?;
        bytes_since_snapshot += entry.data.len() as u64;
    }
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
    let mut node = ControllerNode {
        group,
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
        self.group.compact(snapshot_point(&self.metadata))?;
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
    done: LocalSender<Result<(), String>>,
}

/// Shard 0's handle on the driver.
pub struct Controller {
    proposals: LocalSender<Proposal>,
}

/// Starts the driver on shard 0 with the node `open` returned, and registers `Controller`.
pub fn start(shard: &Rc<Shard>, node: ControllerNode) {
    let (sender, receiver) = local_channel::new_bounded(PROPOSAL_QUEUE_CAPACITY);
    shard.register(Rc::new(Controller { proposals: sender }));
    let shard = shard.clone();
    glommio::spawn_local(drive(shard, node, receiver)).detach();
}

/// Commits `delta` through the metadata log; Ok once every shard applied it.
pub async fn propose(shard: &Shard, delta: MetadataDelta) -> Result<(), String> {
    let controller = shard.service::<Controller>();
    let (done, answer) = local_channel::new_bounded(1);
    controller
        .proposals
        .send(Proposal { delta, done })
        .await
        .map_err(|_| "the controller has stopped".to_string())?;
    answer
        .recv()
        .await
        .unwrap_or_else(|| Err("the controller stopped before answering".to_string()))
}

/// The driver: ticks the group, feeds it proposals, persists and applies what it readies.
/// A failed log write stops the controller (metadata changes are then refused with a storage
/// error) rather than letting memory and disk disagree.
async fn drive(shard: Rc<Shard>, mut node: ControllerNode, proposals: LocalReceiver<Proposal>) {
    let run_nonce = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut next_proposal: u64 = 0;
    let mut waiting: HashMap<(u64, u64), LocalSender<Result<(), String>>> = HashMap::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let received = futures_lite::future::or(async { Some(proposals.recv().await) }, async {
            glommio::timer::sleep(wait).await;
            None
        })
        .await;
        match received {
            Some(None) => return, // every sender is gone: the shard is stopping
            Some(Some(proposal)) => {
                next_proposal += 1;
                let context = [run_nonce.to_le_bytes(), next_proposal.to_le_bytes()].concat();
                match node.group.raw().propose(context, proposal.delta.encode()) {
                    Ok(()) => {
                        waiting.insert((run_nonce, next_proposal), proposal.done);
                    }
                    Err(error) => {
                        let _ = proposal
                            .done
                            .try_send(Err(format!("controller proposal refused: {error}")));
                    }
                }
            }
            None => {}
        }
        if Instant::now() >= next_tick {
            node.group.raw().tick();
            next_tick = Instant::now() + TICK;
        }
        while node.group.raw().has_ready() {
            let progress = match node.group.advance().await {
                Ok(progress) => progress,
                Err(error) => {
                    log::error!("controller log write failed, metadata changes stop: {error}");
                    for (_, done) in waiting.drain() {
                        let _ = done.try_send(Err(format!("metadata log write failed: {error}")));
                    }
                    return stop(proposals, error.to_string()).await;
                }
            };
            for entry in &progress.committed {
                if let Err(error) = apply_entry(&mut node.metadata, entry) {
                    log::error!("controller: {error}");
                }
                node.bytes_since_snapshot += entry.data.len() as u64;
                if entry.entry_type == EntryType::EntryNormal && !entry.data.is_empty() {
                    broadcast(&shard, &node.metadata).await;
                }
                if let Some(key) = proposal_key(&entry.context) {
                    if let Some(done) = waiting.remove(&key) {
                        let _ = done.try_send(Ok(()));
                    }
                }
            }
        }
        if node.snapshot_due() {
            node = match snapshot_off_shard(node).await {
                Ok(node) => node,
                Err(error) => {
                    log::error!("controller snapshot failed, metadata changes stop: {error}");
                    return stop(proposals, error).await;
                }
            };
        }
    }
}

/// After a fatal log error: answers every later proposal with the error until the shard stops.
async fn stop(proposals: LocalReceiver<Proposal>, error: String) {
    while let Some(proposal) = proposals.recv().await {
        let _ = proposal
            .done
            .try_send(Err(format!("metadata log unavailable: {error}")));
    }
}

fn proposal_key(context: &[u8]) -> Option<(u64, u64)> {
    let nonce = u64::from_le_bytes(context.get(0..8)?.try_into().ok()?);
    let sequence = u64::from_le_bytes(context.get(8..16)?.try_into().ok()?);
    Some((nonce, sequence))
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
