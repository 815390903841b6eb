//! Counters and histograms each shard records into without locks or atomics: one set per shard
//! thread (`thread_local!`), written only by that thread. A scrape asks every shard for a
//! `Snapshot` (plain data sent over the mesh), merges them and encodes the result
//! (`server::metrics`); nothing is shared between shards while they run.
//!
//! Histograms have fixed buckets (Prometheus' classic kind), so merging is adding counts.
//! Latencies are in seconds, sizes in bytes, as Prometheus names them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Latency buckets, seconds: 50 µs to 10 s, roughly ×2 apart.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// The stages of one Produce on a partition's leader, each a histogram
/// (`sluice_produce_stage_latency_seconds{stage}`); together they make up
/// `sluice_produce_latency_seconds` (a request spread over several shards records its stages
/// once per shard). `read`: the request's first byte seen to its last read (the client's
/// sending and the network; bytes that waited in the socket before the shard looked are not
/// seen); `queue`: request read to its appends starting on the partition's shard
/// (decoding, the connection's request order, a hop between shards); `append`: validation
/// and appending in memory; `durable`: appended to acknowledged (the log's write and
/// fdatasync, in order, and for a replicated partition the quorum); `respond`: acknowledged to
/// the response written to the socket (encoding, earlier responses on the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceStage {
    Read = 0,
    Queue = 1,
    Append = 2,
    Durable = 3,
    Respond = 4,
}

pub const PRODUCE_STAGES: [&str; 5] = ["read", "queue", "append", "durable", "respond"];

/// Group-commit size buckets, bytes: 4 KiB to 64 MiB, ×4 apart.
pub const SIZE_BUCKETS: &[f64] = &[
    4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// A fixed-bucket histogram: counts per upper bound (the last slot is +Inf), sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Not cumulative: `counts[i]` observations fell in bucket `i`.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self.bounds.partition_point(|bound| *bound < value);
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// (upper bound, count in that bucket alone) per bucket, +Inf last: what
    /// `prometheus-client`'s encoder takes (it accumulates them as Prometheus exposes them).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Bytes and records through one topic on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicTraffic {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// One shard's counters at one moment, or several shards' merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Requests by API key.
    pub requests: BTreeMap<i16, u64>,
    /// Errors answered, by (API key, Kafka error code): per partition for the APIs that
    /// answer per partition.
    pub errors: BTreeMap<(i16, i16), u64>,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
    pub fdatasync_latency: Histogram,
    /// One group's segment write (preallocation included), submit to completion.
    pub segment_write_latency: Histogram,
    pub dsync_write_latency: Histogram,
    pub group_commit_bytes: Histogram,
    /// Indexed by `ProduceStage`.
    pub produce_stages: Vec<Histogram>,
    pub topics: BTreeMap<Arc<str>, TopicTraffic>,
    pub connections: i64,
    pub storage_errors: u64,
    pub leadership_changes: u64,
    pub connections_closed_malformed: u64,
    /// Security events by (event, first label value, second label value) (`security_event`).
    pub security: BTreeMap<SecurityEvent, u64>,
}

/// (event, label, label): a TLS session's mode, a failed handshake, a SASL outcome per
/// mechanism, a denied operation per resource type.
pub type SecurityEvent = (&'static str, &'static str, &'static str);

impl Snapshot {
    pub fn merge(&mut self, other: &Snapshot) {
        for (api, count) in &other.requests {
            *self.requests.entry(*api).or_default() += count;
        }
        for (key, count) in &other.errors {
            *self.errors.entry(*key).or_default() += count;
        }
        self.produce_latency.merge(&other.produce_latency);
        self.fetch_latency.merge(&other.fetch_latency);
        self.fdatasync_latency.merge(&other.fdatasync_latency);
        self.segment_write_latency
            .merge(&other.segment_write_latency);
        self.dsync_write_latency.merge(&other.dsync_write_latency);
        self.group_commit_bytes.merge(&other.group_commit_bytes);
        for (mine, theirs) in self.produce_stages.iter_mut().zip(&other.produce_stages) {
            mine.merge(theirs);
        }
        for (topic, traffic) in &other.topics {
            let mine = self.topics.entry(topic.clone()).or_default();
            mine.bytes_in += traffic.bytes_in;
            mine.records_in += traffic.records_in;
            mine.bytes_out += traffic.bytes_out;
            mine.records_out += traffic.records_out;
        }
        self.connections += other.connections;
        self.storage_errors += other.storage_errors;
        self.leadership_changes += other.leadership_changes;
        self.connections_closed_malformed += other.connections_closed_malformed;
        for (key, count) in &other.security {
            *self.security.entry(*key).or_default() += count;
        }
    }
}

struct Local {
    requests: RefCell<BTreeMap<i16, u64>>,
    errors: RefCell<BTreeMap<(i16, i16), u64>>,
    produce_latency: RefCell<Histogram>,
    fetch_latency: RefCell<Histogram>,
    fdatasync_latency: RefCell<Histogram>,
    segment_write_latency: RefCell<Histogram>,
    dsync_write_latency: RefCell<Histogram>,
    group_commit_bytes: RefCell<Histogram>,
    produce_stages: RefCell<Vec<Histogram>>,
    topics: RefCell<BTreeMap<Arc<str>, TopicTraffic>>,
    connections: Cell<i64>,
    storage_errors: Cell<u64>,
    leadership_changes: Cell<u64>,
    connections_closed_malformed: Cell<u64>,
    security: RefCell<BTreeMap<SecurityEvent, u64>>,
}

thread_local! {
    static LOCAL: Local = Local {
        requests: RefCell::new(BTreeMap::new()),
        errors: RefCell::new(BTreeMap::new()),
        produce_latency: RefCell::new(Histogram::new(LATENCY_BUCKETS)),
        fetch_latency: RefCell::new(Histogram::new(LATENCY_BUCKETS)),
        fdatasync_latency: RefCell::new(Histogram::new(LATENCY_BUCKETS)),
        segment_write_latency: RefCell::new(Histogram::new(LATENCY_BUCKETS)),
        dsync_write_latency: RefCell::new(Histogram::new(LATENCY_BUCKETS)),
        group_commit_bytes: RefCell::new(Histogram::new(SIZE_BUCKETS)),
        produce_stages: RefCell::new(vec![Histogram::new(LATENCY_BUCKETS); PRODUCE_STAGES.len()]),
        topics: RefCell::new(BTreeMap::new()),
        connections: Cell::new(0),
        storage_errors: Cell::new(0),
        leadership_changes: Cell::new(0),
        connections_closed_malformed: Cell::new(0),
        security: RefCell::new(BTreeMap::new()),
    };
}

/// Kafka API keys of the two latency histograms.
const PRODUCE: i16 = 0;
const FETCH: i16 = 1;

/// A request of `api` answered `elapsed` after it was read (received to response written).
pub fn request_done(api: i16, elapsed: Duration) {
    LOCAL.with(|local| {
        *local.requests.borrow_mut().entry(api).or_default() += 1;
        let histogram = match api {
            PRODUCE => &local.produce_latency,
            FETCH => &local.fetch_latency,
            _ => return,
        };
        histogram.borrow_mut().observe(elapsed.as_secs_f64());
    });
}

/// A Kafka error answered for `api` (one per partition where the API answers per partition).
pub fn error_answered(api: i16, code: i16) {
    if code != 0 {
        LOCAL.with(|local| *local.errors.borrow_mut().entry((api, code)).or_default() += 1);
    }
}

/// A connection was closed for a malformed or unsupported frame.
pub fn connection_closed_malformed() {
    LOCAL.with(|local| {
        local
            .connections_closed_malformed
            .set(local.connections_closed_malformed.get() + 1)
    });
}

/// A security event (`SecurityEvent`): counted per shard, merged when scraped.
pub fn security_event(event: SecurityEvent) {
    LOCAL.with(|local| *local.security.borrow_mut().entry(event).or_default() += 1);
}

/// A client connection opened (+1) or closed (-1) on this shard.
pub fn connections_changed(delta: i64) {
    LOCAL.with(|local| local.connections.set(local.connections.get() + delta));
}

/// One fdatasync of a flush group of `bytes`, which took `elapsed`.
pub fn fdatasync_done(bytes: u64, elapsed: Duration) {
    LOCAL.with(|local| {
        local
            .fdatasync_latency
            .borrow_mut()
            .observe(elapsed.as_secs_f64());
        local.group_commit_bytes.borrow_mut().observe(bytes as f64);
    });
}

/// One O_DSYNC write made a flush group of `bytes` durable in `elapsed`.
pub fn dsync_write_done(bytes: u64, elapsed: Duration) {
    LOCAL.with(|local| {
        local
            .dsync_write_latency
            .borrow_mut()
            .observe(elapsed.as_secs_f64());
        local.group_commit_bytes.borrow_mut().observe(bytes as f64);
    });
}

/// One stage of a Produce took `elapsed` (`ProduceStage`).
pub fn produce_stage(stage: ProduceStage, elapsed: Duration) {
    LOCAL.with(|local| {
        local.produce_stages.borrow_mut()[stage as usize].observe(elapsed.as_secs_f64())
    });
}

/// One group's segment write took `elapsed`.
pub fn segment_write_done(elapsed: Duration) {
    LOCAL.with(|local| {
        local
            .segment_write_latency
            .borrow_mut()
            .observe(elapsed.as_secs_f64())
    });
}

/// A write, sync or read failed: a partition went offline.
pub fn storage_error() {
    LOCAL.with(|local| local.storage_errors.set(local.storage_errors.get() + 1));
}

/// A replica on this shard started or stopped leading.
pub fn leadership_changed() {
    LOCAL.with(|local| {
        local
            .leadership_changes
            .set(local.leadership_changes.get() + 1)
    });
}

/// Records appended to `topic` by producers (`bytes` of batches).
pub fn produced(topic: &Arc<str>, bytes: u64, records: u64) {
    LOCAL.with(|local| {
        let mut topics = local.topics.borrow_mut();
        let traffic = topics.entry(topic.clone()).or_default();
        traffic.bytes_in += bytes;
        traffic.records_in += records;
    });
}

/// Records sent to consumers (and followers' fetches) from `topic`.
pub fn fetched(topic: &Arc<str>, bytes: u64, records: u64) {
    LOCAL.with(|local| {
        let mut topics = local.topics.borrow_mut();
        let traffic = topics.entry(topic.clone()).or_default();
        traffic.bytes_out += bytes;
        traffic.records_out += records;
    });
}

/// This shard's counters now.
pub fn snapshot() -> Snapshot {
    LOCAL.with(|local| Snapshot {
        requests: local.requests.borrow().clone(),
        errors: local.errors.borrow().clone(),
        produce_latency: local.produce_latency.borrow().clone(),
        fetch_latency: local.fetch_latency.borrow().clone(),
        fdatasync_latency: local.fdatasync_latency.borrow().clone(),
        segment_write_latency: local.segment_write_latency.borrow().clone(),
        dsync_write_latency: local.dsync_write_latency.borrow().clone(),
        group_commit_bytes: local.group_commit_bytes.borrow().clone(),
        produce_stages: local.produce_stages.borrow().clone(),
        topics: local.topics.borrow().clone(),
        connections: local.connections.get(),
        storage_errors: local.storage_errors.get(),
        leadership_changes: local.leadership_changes.get(),
        connections_closed_malformed: local.connections_closed_malformed.get(),
        security: local.security.borrow().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_and_merge() {
        let mut a = Histogram::new(LATENCY_BUCKETS);
        a.observe(0.00004);
        a.observe(0.003);
        a.observe(99.0);
        let mut b = Histogram::new(LATENCY_BUCKETS);
        b.observe(0.003);
        a.merge(&b);
        assert_eq!(a.count, 4);
        let buckets = a.buckets();
        assert_eq!(buckets[0], (0.00005, 1), "50 µs bucket");
        let at_5ms = buckets.iter().find(|(bound, _)| *bound == 0.005).unwrap();
        assert_eq!(at_5ms.1, 2, "both 3 ms observations, not the ones below");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 1), "99 s");
        assert_eq!(buckets.iter().map(|(_, count)| count).sum::<u64>(), a.count);
    }

    #[test]
    fn a_thread_records_into_its_own_counters() {
        let topic: Arc<str> = "t".into();
        produced(&topic, 100, 2);
        request_done(0, Duration::from_millis(2));
        let other = std::thread::spawn(snapshot).join().unwrap();
        assert!(
            other.topics.is_empty(),
            "another shard's counters are its own"
        );
        let mine = snapshot();
        assert_eq!(mine.topics[&topic].records_in, 2);
        assert_eq!(mine.requests[&0], 1);
        let mut merged = other.clone();
        merged.merge(&mine);
        merged.merge(&mine);
        assert_eq!(merged.topics[&topic].bytes_in, 200);
        assert_eq!(merged.produce_latency.count, 2);
    }
}
