//! Deterministic simulation of partition replication (TigerBeetle's VOPR, in small): three
//! replicas of one partition — real `Partition`s on real files (tmpfs when there is one), real
//! Raft nodes — in one thread, with a seeded scheduler in place of the network and the clock.
//! Each step does one thing: tick, propose on the leader, deliver one message (any of those in
//! flight, so messages are reordered), drop or duplicate one, cut or heal a link, crash a node
//! (its unsynced log tail is lost, as in a power cut) or restart it, or hand leadership over.
//! Groups also quiesce as `replicas.rs` has them do (a leader with nothing to do and every voter
//! reachable stops ticking, followers that hold its commit point with it), and wake by its
//! rules: on proposals and hand-overs, on messages other than idle heartbeat answers or votes
//! asked of a follower whose leader is reachable, and on the liveness changes a crash, a
//! restart or a cut link gives the node links (a follower whose leader is lost ends its lease).
//!
//! Checked on every step: at most one leader per term, high watermarks never move back (the
//! partition asserts it). Checked at the end, after healing everything and letting the group
//! settle: every replica's committed log is the same batches at the same offsets, and every
//! proposal that was acknowledged (committed, by `Replica::outcome`) is in it with its payload.
//!
//! `SLUICE_SIM_SEEDS` (default 40) and `SLUICE_SIM_STEPS` (default 2000) set the size of a run;
//! a failing seed is printed and can be rerun alone with `SLUICE_SIM_SEED`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use raft::prelude::Message;

use super::group::GroupConfig;
use super::replica::{Proposal, Replica};
use crate::ids::{LeaderEpoch, TopicId, TopicPartition};
use crate::partition::hosted::HostedPartitions;
use crate::partition::{PartitionConfig, TimestampType};
use crate::protocol::batch::{encode_batch, BatchHeader};
use crate::protocol::records::{control_record, decode_records, split_batches};
use crate::storage::{BatchCache, LogConfig, Recovery};

const NODES: u64 = 3;

/// xorshift64*: the simulation's only source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Node {
    dir: PathBuf,
    hosted: Option<HostedPartitions>,
    replica: Option<Replica>,
    /// Proposals this node made while leading, not yet decided.
    pending: Vec<(Proposal, String)>,
}

struct Sim {
    rng: Rng,
    nodes: BTreeMap<u64, Node>,
    in_flight: Vec<(u64, Message)>,
    cut: HashSet<(u64, u64)>,
    /// Quiesced nodes: not ticked.
    quiet: HashSet<u64>,
    /// Times a leader quiesced.
    quiesced: u64,
    /// Steps left of a calm spell (ticks and deliveries only), in which groups go quiet.
    calm: u32,
    leaders: HashMap<u64, u64>,
    /// Acknowledged payloads by base offset.
    acked: BTreeMap<i64, String>,
    proposed: u64,
    topic_id: TopicId,
    seed: u64,
}

fn config(id: u64) -> GroupConfig {
    GroupConfig {
        id,
        voters: (1..=NODES).collect(),
        learners: Vec::new(),
        election_ticks: 8 + 3 * id as usize,
        heartbeat_ticks: 2,
        name: format!("sim-{id}"),
        fixed_election_timeout: true,
    }
}

fn partition_config() -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            segment_bytes: 16 << 10,
            index_interval_bytes: 512,
            preallocate_bytes: 8 << 10,
            retention_ms: -1,
            retention_bytes: -1,
            ..LogConfig::default()
        },
        max_message_bytes: 1 << 20,
        timestamp_type: TimestampType::CreateTime,
    }
}

impl Sim {
    async fn open(&mut self, id: u64) {
        let topic_id = self.topic_id;
        let node = self.nodes.get_mut(&id).expect("node");
        let hosted =
            HostedPartitions::new(node.dir.clone(), BatchCache::new(4 << 20), Recovery::Full);
        let partition = hosted
            .open(
                TopicPartition::new("sim", 0),
                topic_id,
                partition_config(),
                LeaderEpoch(0),
                true,
            )
            .await
            .expect("open partition");
        let replica = Replica::open(&config(id), partition)
            .await
            .expect("open replica");
        node.hosted = Some(hosted);
        node.replica = Some(replica);
    }

    /// Power cut: the log loses everything not fsynced, messages to the node are gone.
    async fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let Some(replica) = node.replica.take() else {
            return;
        };
        let partition = replica.partition().clone();
        let durable = partition.durable_offset();
        let hosted = node.hosted.take().expect("hosted");
        hosted.close_all().await;
        drop(replica);
        node.pending.clear();
        self.in_flight.retain(|(to, _)| *to != id);
        // What close flushed past the durable point was never fsynced: cut it off again.
        cut_log_file_tail(&node.dir.join("sim-0"), durable);
    }

    /// Copies one chunk to `id` if it is installing a snapshot, from the node the snapshot
    /// came from or any other that reaches it and has the data committed.
    async fn copy_chunk(&mut self, id: u64) {
        let Some(catch_up) = self.nodes[&id].replica.as_ref().and_then(Replica::catch_up) else {
            return;
        };
        let mut sources: Vec<u64> = vec![catch_up.from_node];
        sources.extend(
            self.nodes
                .keys()
                .copied()
                .filter(|n| *n != catch_up.from_node),
        );
        let source = sources.into_iter().find(|n| {
            *n != id
                && !self.cut.contains(&(id, *n))
                && self.nodes[n].replica.as_ref().is_some_and(|r| {
                    r.partition().high_watermark() >= catch_up.end_offset
                        && r.partition().log_start_offset() <= catch_up.next_offset
                })
        });
        let Some(source) = source else {
            return;
        };
        let partition = self.nodes[&source]
            .replica
            .as_ref()
            .unwrap()
            .partition()
            .clone();
        let chunk = partition
            .log()
            .read(catch_up.next_offset, 4096)
            .await
            .expect("read from the source");
        let replica = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
        let messages = replica
            .append_caught_up(chunk)
            .await
            .expect("append copied batches");
        self.send(messages);
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if !self.cut.contains(&(message.from, message.to)) {
                self.in_flight.push((message.to, message));
            }
        }
    }

    async fn settle(&mut self, id: u64) {
        loop {
            let Some(replica) = self.nodes.get_mut(&id).and_then(|n| n.replica.as_mut()) else {
                return;
            };
            if !replica.has_ready() {
                break;
            }
            let messages = replica.advance().await.expect("advance");
            self.send(messages);
        }
        self.check_leader(id);
        self.decide(id);
    }

    fn check_leader(&mut self, id: u64) {
        let replica = self.nodes[&id].replica.as_ref().expect("live");
        if replica.is_leader() {
            let term = replica.term();
            let previous = *self.leaders.entry(term).or_insert(id);
            assert_eq!(previous, id, "two leaders in term {term}");
        }
    }

    fn decide(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let replica = node.replica.as_ref().expect("live");
        let acked = &mut self.acked;
        node.pending
            .retain(|(proposal, payload)| match replica.outcome(proposal) {
                Some(true) => {
                    let old = acked.insert(proposal.base_offset, payload.clone());
                    assert!(
                        old.is_none(),
                        "two acknowledged batches at {}",
                        proposal.base_offset
                    );
                    false
                }
                Some(false) => false,
                None => true,
            });
    }

    /// Whether `peer`'s node is reachable from `id`'s, as the node links would say.
    fn reachable(&self, id: u64, peer: u64) -> bool {
        id == peer
            || (self.nodes[&peer].replica.is_some()
                && !self.cut.contains(&(id, peer))
                && !self.cut.contains(&(peer, id)))
    }

    fn wake(&mut self, id: u64) {
        if !self.quiet.remove(&id) {
            return;
        }
        let down: HashSet<u64> = (1..=NODES).filter(|p| !self.reachable(id, *p)).collect();
        if let Some(replica) = self.nodes.get_mut(&id).and_then(|n| n.replica.as_mut()) {
            replica.wake(|peer| down.contains(&peer));
        }
    }

    /// What the node links tell `id` when `peer` goes down or comes back.
    fn liveness(&mut self, id: u64, peer: u64, live: bool) {
        let Some(replica) = self.nodes[&id].replica.as_ref() else {
            return;
        };
        if replica.is_leader() {
            self.wake(id);
        } else if !live && replica.leader_id() == peer {
            self.wake(id);
            let replica = self.nodes.get_mut(&id).unwrap().replica.as_mut().unwrap();
            replica.leader_lost(peer);
        }
    }

    /// A leader with nothing to do and every voter reachable quiesces, with the followers that
    /// can (the Quiesce frame, delivered at once here).
    fn maybe_quiesce(&mut self, leader: u64) {
        let Some(replica) = self.nodes[&leader].replica.as_ref() else {
            return;
        };
        if self.quiet.contains(&leader)
            || !replica.quiescent()
            || !(1..=NODES).all(|peer| self.reachable(leader, peer))
        {
            return;
        }
        let (term, commit) = (replica.term(), replica.committed());
        self.quiet.insert(leader);
        self.quiesced += 1;
        for id in 1..=NODES {
            let follower = self.nodes[&id].replica.as_ref();
            if id == leader {
                continue;
            }
            if follower.is_some_and(|r| r.can_quiesce(term, leader, commit)) {
                self.quiet.insert(id);
            } else {
                // FRAME_PARTITION_WAKE: a follower that cannot follow into quiet wakes it.
                self.wake(leader);
            }
        }
    }

    /// Steps `message` into `to` with the wake rules of `replicas.rs`.
    fn deliver(&mut self, to: u64, message: Message) {
        use raft::prelude::MessageType;
        let Some(replica) = self.nodes[&to].replica.as_ref() else {
            return;
        };
        let leader = replica.leader_id();
        let follows_reachable_leader =
            !replica.is_leader() && leader != 0 && self.reachable(to, leader);
        let is_vote = matches!(
            message.msg_type,
            MessageType::MsgRequestPreVote | MessageType::MsgRequestVote
        );
        let stays_quiet = message.msg_type == MessageType::MsgHeartbeatResponse
            || (is_vote && follows_reachable_leader);
        if is_vote && leader != 0 && message.from == leader && !replica.is_leader() {
            self.wake(to);
            let replica = self.nodes.get_mut(&to).unwrap().replica.as_mut().unwrap();
            replica.leader_lost(leader);
        }
        let replica = self.nodes.get_mut(&to).unwrap().replica.as_mut().unwrap();
        replica.step(message);
        if !stays_quiet || replica.has_ready() {
            self.wake(to);
        }
    }

    async fn step(&mut self) {
        let live: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.replica.is_some())
            .map(|(id, _)| *id)
            .collect();
        let dead: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.replica.is_none())
            .map(|(id, _)| *id)
            .collect();
        if self.calm == 0 && self.rng.chance(1) {
            self.calm = 60;
        }
        let choice = if self.calm > 0 {
            self.calm -= 1;
            if self.rng.chance(30) {
                0
            } else {
                45
            }
        } else {
            self.rng.below(100)
        };
        match choice {
            0..=24 => {
                for id in &live {
                    if self.quiet.contains(id) {
                        continue;
                    }
                    self.nodes
                        .get_mut(id)
                        .unwrap()
                        .replica
                        .as_mut()
                        .unwrap()
                        .tick();
                }
            }
            25..=44 => {
                let leader = live
                    .iter()
                    .copied()
                    .find(|id| self.nodes[id].replica.as_ref().unwrap().is_leader());
                if let Some(id) = leader {
                    self.wake(id);
                    self.proposed += 1;
                    let payload = format!("value-{}", self.proposed);
                    let records = 1 + self.rng.below(3) as usize;
                    let batch = encode_batch(&vec![(None, Some(payload.as_bytes())); records], 1);
                    let node = self.nodes.get_mut(&id).unwrap();
                    if let Ok(proposal) = node
                        .replica
                        .as_mut()
                        .unwrap()
                        .propose(BytesMut::from(&batch[..]))
                    {
                        node.pending.push((proposal, payload));
                    }
                }
            }
            45..=84 if !self.in_flight.is_empty() => {
                let at = self.rng.below(self.in_flight.len() as u64) as usize;
                let (to, message) = self.in_flight.swap_remove(at);
                let from = message.from;
                if self.cut.contains(&(from, to)) {
                    return;
                }
                self.deliver(to, message);
            }
            85..=87 if !self.in_flight.is_empty() => {
                let at = self.rng.below(self.in_flight.len() as u64) as usize;
                if self.rng.chance(50) {
                    self.in_flight.swap_remove(at);
                } else {
                    let copy = self.in_flight[at].clone();
                    self.in_flight.push(copy);
                }
            }
            88..=89 => {
                let a = 1 + self.rng.below(NODES);
                let b = 1 + self.rng.below(NODES);
                if a != b {
                    let healed = self.cut.contains(&(a, b));
                    if healed {
                        self.cut.remove(&(a, b));
                        self.cut.remove(&(b, a));
                    } else {
                        self.cut.insert((a, b));
                        self.cut.insert((b, a));
                    }
                    self.liveness(a, b, healed);
                    self.liveness(b, a, healed);
                }
            }
            90..=91 if live.len() == NODES as usize => {
                let victim = live[self.rng.below(live.len() as u64) as usize];
                self.crash(victim).await;
                self.quiet.remove(&victim);
                for id in live.iter().copied().filter(|id| *id != victim) {
                    self.liveness(id, victim, false);
                }
            }
            92..=95 if !dead.is_empty() => {
                let id = dead[self.rng.below(dead.len() as u64) as usize];
                self.open(id).await;
                for other in live.iter().copied() {
                    if self.reachable(other, id) {
                        self.liveness(other, id, true);
                    }
                }
            }
            97..=99 => {
                for id in &live {
                    self.copy_chunk(*id).await;
                }
            }
            96 => {
                let to = 1 + self.rng.below(NODES);
                for id in &live {
                    let leads = self.nodes[id].replica.as_ref().unwrap().is_leader();
                    if leads && *id != to {
                        self.wake(*id);
                        let replica = self.nodes.get_mut(id).unwrap().replica.as_mut().unwrap();
                        replica.transfer_leader(to);
                    }
                }
            }
            _ => {}
        }
        for id in &live {
            if self.nodes[id].replica.is_some() {
                self.settle(*id).await;
            }
        }
        if self.rng.chance(20) || self.calm > 0 {
            for id in &live {
                self.maybe_quiesce(*id);
            }
        }
    }

    /// Heals every link, restarts every node, and runs until one leader has committed its
    /// whole log and every replica holds all of it.
    async fn heal(&mut self) {
        self.cut.clear();
        let quiet: Vec<u64> = self.quiet.iter().copied().collect();
        for id in quiet {
            self.wake(id);
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in &ids {
            if self.nodes[id].replica.is_none() {
                self.open(*id).await;
            }
        }
        for _ in 0..20_000 {
            for id in &ids {
                self.nodes
                    .get_mut(id)
                    .unwrap()
                    .replica
                    .as_mut()
                    .unwrap()
                    .tick();
            }
            while !self.in_flight.is_empty() {
                let (to, message) = self.in_flight.remove(0);
                self.nodes
                    .get_mut(&to)
                    .unwrap()
                    .replica
                    .as_mut()
                    .unwrap()
                    .step(message);
                for id in &ids {
                    self.settle(*id).await;
                }
            }
            for id in &ids {
                self.copy_chunk(*id).await;
                self.settle(*id).await;
            }
            let replicas: Vec<&Replica> = ids
                .iter()
                .map(|id| self.nodes[id].replica.as_ref().unwrap())
                .collect();
            let leader = replicas.iter().find(|replica| replica.is_leader());
            if let Some(leader) = leader {
                let last = leader.last_index();
                let end = leader.partition().log_end_offset();
                if leader.committed() == last
                    && replicas.iter().all(|replica| {
                        replica.last_index() == last && replica.partition().high_watermark() == end
                    })
                {
                    return;
                }
            }
        }
        let states: Vec<String> = ids
            .iter()
            .map(|id| {
                let r = self.nodes[id].replica.as_ref().unwrap();
                format!(
                    "node {id}: leader={} term={} last={} committed={} hw={} log_end={}",
                    r.is_leader(),
                    r.term(),
                    r.last_index(),
                    r.committed(),
                    r.partition().high_watermark(),
                    r.partition().log_end_offset()
                )
            })
            .collect();
        panic!(
            "seed {}: the group did not settle after healing: {states:#?}",
            self.seed
        );
    }
}

/// Truncates the partition's newest segment file so it ends at Kafka offset `end_offset`
/// (drops whole batches from the first one reaching past it).
fn cut_log_file_tail(dir: &Path, end_offset: i64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    for path in logs.iter().rev() {
        let bytes = std::fs::read(path).expect("read segment");
        let mut at = 0usize;
        while let Ok(header) = BatchHeader::parse(&bytes[at..]) {
            if header.batch_length <= 0 || at + header.size_bytes() > bytes.len() {
                break;
            }
            if header.last_offset() >= end_offset {
                break;
            }
            at += header.size_bytes();
        }
        if at < bytes.len() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open");
            file.set_len(at as u64).expect("truncate");
        }
        if at > 0 {
            return;
        }
    }
}

/// The committed batches of a replica: (offset, epoch, control type or payload).
async fn committed_log(replica: &Replica) -> Vec<(i64, i32, String)> {
    log_until(replica, replica.partition().high_watermark()).await
}

/// The batches of a replica's log below `end`.
async fn log_until(replica: &Replica, end: i64) -> Vec<(i64, i32, String)> {
    let partition = replica.partition();
    let mut offset = partition.log_start_offset();
    let mut batches = Vec::new();
    while offset < end {
        let chunks = partition.log().read(offset, 1 << 20).await.expect("read");
        for batch in chunks.into_iter().flat_map(split_batches) {
            let header = BatchHeader::parse(&batch).expect("header");
            if header.base_offset >= end {
                break;
            }
            let what = match control_record(&batch) {
                Some((kind, _)) => format!("control {kind}"),
                None => {
                    let records = decode_records(&batch).expect("records");
                    let value = records[0].value.clone().unwrap_or_default();
                    String::from_utf8_lossy(&value).to_string()
                }
            };
            batches.push((header.base_offset, header.partition_leader_epoch, what));
            offset = header.last_offset() + 1;
        }
    }
    batches
}

fn scratch_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

async fn run_seed(seed: u64, steps: u64) -> (usize, u64, u64) {
    let root = scratch_root();
    let mut sim = Sim {
        rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        nodes: BTreeMap::new(),
        in_flight: Vec::new(),
        cut: HashSet::new(),
        quiet: HashSet::new(),
        quiesced: 0,
        calm: 0,
        leaders: HashMap::new(),
        acked: BTreeMap::new(),
        proposed: 0,
        topic_id: TopicId::new_random(),
        seed,
    };
    for id in 1..=NODES {
        let dir = root.path().join(format!("node-{id}"));
        std::fs::create_dir_all(&dir).expect("node dir");
        sim.nodes.insert(
            id,
            Node {
                dir,
                hosted: None,
                replica: None,
                pending: Vec::new(),
            },
        );
        sim.open(id).await;
    }
    for _ in 0..steps {
        sim.step().await;
    }
    sim.heal().await;
    let mut logs = Vec::new();
    for node in sim.nodes.values() {
        logs.push(committed_log(node.replica.as_ref().unwrap()).await);
    }
    for (i, log) in logs.iter().enumerate().skip(1) {
        assert_eq!(
            &logs[0],
            log,
            "seed {seed}: replica {} differs from replica 1",
            i + 1
        );
    }
    let by_offset: HashMap<i64, &String> = logs[0].iter().map(|(o, _, v)| (*o, v)).collect();
    for (offset, payload) in &sim.acked {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(payload),
            "seed {seed}: acknowledged batch at {offset} lost"
        );
    }
    // A restart of every replica rebuilds the same log from the files. (Its high watermark may
    // start lower: the commit point is not persisted, the leader tells it again.)
    let ids: Vec<u64> = sim.nodes.keys().copied().collect();
    let end = sim.nodes[&ids[0]]
        .replica
        .as_ref()
        .unwrap()
        .partition()
        .high_watermark();
    for id in &ids {
        let node = sim.nodes.get_mut(id).unwrap();
        node.hosted.take().unwrap().close_all().await;
        node.replica = None;
        sim.open(*id).await;
        let replica = sim.nodes[id].replica.as_ref().unwrap();
        assert_eq!(
            log_until(replica, end).await,
            logs[0],
            "seed {seed}: node {id} after restart"
        );
    }
    for node in sim.nodes.values_mut() {
        node.hosted.take().unwrap().close_all().await;
    }
    (sim.acked.len(), sim.leaders.len() as u64, sim.quiesced)
}

fn run<T>(test: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("glommio executor (needs 512 KiB of memlock)")
        .run(test)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn replicas_agree_and_keep_every_acknowledged_batch_under_faults() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SLUICE_SIM_SEED")],
        Err(_) => (1..=env_u64("SLUICE_SIM_SEEDS", 40)).collect(),
    };
    let steps = env_u64("SLUICE_SIM_STEPS", 2000);
    let _ = env_logger::builder().is_test(true).try_init();
    run(async move {
        let (mut acked, mut terms, mut quiesced) = (0usize, 0u64, 0u64);
        for seed in &seeds {
            let (seed_acked, seed_terms, seed_quiesced) = run_seed(*seed, steps).await;
            acked += seed_acked;
            terms += seed_terms;
            quiesced += seed_quiesced;
        }
        eprintln!(
            "simulated {} seeds x {steps} steps: {acked} acknowledged batches, {terms} leader terms, {quiesced} quiescences",
            seeds.len()
        );
        assert!(acked > 0, "no proposal was ever acknowledged");
        assert!(quiesced > 0, "no group ever quiesced");
        assert!(terms as usize > seeds.len(), "leadership never changed");
    });
}
