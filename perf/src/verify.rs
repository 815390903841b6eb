//! Consumer-side verification: every acknowledged message consumed exactly once, and in order
//! within its partition, so a broker that drops, duplicates or reorders data cannot post a good
//! number.
//!
//! A stream is (partition, producer id); producers number each stream's messages 0, 1, 2, ...
//! The verifier keeps one bit per sequence number seen (bounded by `SEQUENCE_MAX`), so lost and
//! duplicated counts are exact, and the highest sequence so far, so a message arriving after a
//! later one of its stream counts as reordered.

use std::collections::BTreeMap;

use serde_json::json;

use super::payload::PayloadHeader;

/// Sequences per stream the bitmap covers (128 MiB of bits at worst): far beyond any run.
pub const SEQUENCE_MAX: u64 = 1 << 30;

#[derive(Debug, Default, Clone)]
struct Stream {
    seen: Vec<u64>,
    unique: u64,
    duplicated: u64,
    reordered: u64,
    /// Highest sequence seen plus one.
    end: u64,
    /// Lowest sequence seen (consume mode may start mid-stream).
    first: Option<u64>,
}

impl Stream {
    fn observe(&mut self, sequence: u64) {
        let word = (sequence / 64) as usize;
        let bit = 1u64 << (sequence % 64);
        if word >= self.seen.len() {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if sequence + 1 < self.end {
            self.reordered += 1;
        }
        self.end = self.end.max(sequence + 1);
        self.first = Some(self.first.map_or(sequence, |first| first.min(sequence)));
    }

    fn contains(&self, sequence: u64) -> bool {
        let word = (sequence / 64) as usize;
        word < self.seen.len() && self.seen[word] & (1u64 << (sequence % 64)) != 0
    }

    /// Unique sequences below `limit`.
    fn unique_below(&self, limit: u64) -> u64 {
        if limit >= self.end {
            return self.unique;
        }
        (0..limit)
            .filter(|&sequence| self.contains(sequence))
            .count() as u64
    }

    fn merge(&mut self, other: &Stream) {
        // Streams are per partition and a partition has one consumer: merging only meets
        // disjoint streams, but stay correct if it ever does not.
        let Some(first) = other.first else { return };
        for sequence in first..other.end {
            if other.contains(sequence) {
                self.observe(sequence);
            }
        }
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }
}

/// Key of a stream: (partition, producer id).
pub type StreamKey = (i32, u32);

#[derive(Debug, Default, Clone)]
pub struct Verifier {
    /// `Some` in end-to-end mode: records of other runs are counted as foreign and skipped.
    run_id: Option<u64>,
    streams: BTreeMap<StreamKey, Stream>,
    pub foreign: u64,
    pub misrouted: u64,
    pub out_of_range: u64,
}

/// Outcome of one observed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A message of this run: measure its latency.
    Ours,
    /// Not a bench payload, or another run's.
    Foreign,
}

impl Verifier {
    pub fn new(run_id: Option<u64>) -> Verifier {
        Verifier {
            run_id,
            ..Verifier::default()
        }
    }

    /// Records one consumed value read from `partition`.
    pub fn observe(&mut self, partition: i32, payload: Option<PayloadHeader>) -> Observed {
        let Some(payload) = payload else {
            self.foreign += 1;
            return Observed::Foreign;
        };
        if self.run_id.is_some_and(|run_id| run_id != payload.run_id) {
            self.foreign += 1;
            return Observed::Foreign;
        }
        if payload.partition != partition {
            self.misrouted += 1;
        }
        if payload.sequence >= SEQUENCE_MAX {
            self.out_of_range += 1;
            return Observed::Ours;
        }
        self.streams
            .entry((partition, payload.producer_id))
            .or_default()
            .observe(payload.sequence);
        Observed::Ours
    }

    pub fn merge(&mut self, other: &Verifier) {
        for (key, stream) in &other.streams {
            self.streams.entry(*key).or_default().merge(stream);
        }
        self.foreign += other.foreign;
        self.misrouted += other.misrouted;
        self.out_of_range += other.out_of_range;
    }

    /// The verdict. With `acknowledged` (end-to-end mode: messages acked per stream, numbered
    /// from 0) every acked message must have been seen; without it (consume mode) each stream
    /// must be gap-free between the lowest and highest sequence seen.
    pub fn report(&self, acknowledged: Option<&BTreeMap<StreamKey, u64>>) -> VerificationReport {
        let mut report = VerificationReport {
            misrouted: self.misrouted + self.out_of_range,
            foreign: self.foreign,
            ..VerificationReport::default()
        };
        for stream in self.streams.values() {
            report.consumed_unique += stream.unique;
            report.duplicated += stream.duplicated;
            report.reordered += stream.reordered;
        }
        match acknowledged {
            Some(acknowledged) => {
                for (key, &acked) in acknowledged {
                    report.expected += acked;
                    let seen = self.streams.get(key).map_or(0, |s| s.unique_below(acked));
                    report.lost += acked - seen;
                }
            }
            None => {
                for stream in self.streams.values() {
                    let first = stream.first.unwrap_or(0);
                    report.expected += stream.end - first;
                    report.lost += stream.end - first - stream.unique;
                }
            }
        }
        report
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerificationReport {
    pub expected: u64,
    pub consumed_unique: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub misrouted: u64,
    pub foreign: u64,
}

impl VerificationReport {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.misrouted == 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ok": self.ok(),
            "expected": self.expected,
            "consumed_unique": self.consumed_unique,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "misrouted": self.misrouted,
            "foreign": self.foreign,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(producer_id: u32, partition: i32, sequence: u64) -> Option<PayloadHeader> {
        Some(PayloadHeader {
            run_id: 9,
            producer_id,
            partition,
            sequence,
            intended_unix_ns: 0,
        })
    }

    fn acked(entries: &[(i32, u32, u64)]) -> BTreeMap<StreamKey, u64> {
        entries.iter().map(|&(p, id, n)| ((p, id), n)).collect()
    }

    #[test]
    fn complete_in_order_streams_pass() {
        let mut verifier = Verifier::new(Some(9));
        for sequence in 0..100 {
            verifier.observe(0, payload(0, 0, sequence));
            verifier.observe(1, payload(1, 1, sequence));
        }
        let report = verifier.report(Some(&acked(&[(0, 0, 100), (1, 1, 100)])));
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.expected, report.consumed_unique), (200, 200));
    }

    #[test]
    fn loss_duplicates_reordering_and_foreign_data_are_counted() {
        let mut verifier = Verifier::new(Some(9));
        for sequence in [0, 1, 3, 2, 3, 5] {
            verifier.observe(0, payload(0, 0, sequence));
        }
        verifier.observe(0, None);
        let mut other_run = payload(0, 0, 4).unwrap();
        other_run.run_id = 8;
        verifier.observe(0, Some(other_run));
        verifier.observe(1, payload(0, 0, 6)); // written to 0, read from 1
        let report = verifier.report(Some(&acked(&[(0, 0, 8)])));
        // Seen 0,1,2,3,5 on partition 0 (6 is on partition 1's stream): 4, 6 and 7 are lost.
        assert_eq!(report.lost, 3);
        assert_eq!(report.duplicated, 1);
        assert_eq!(report.reordered, 1);
        assert_eq!(report.foreign, 2);
        assert_eq!(report.misrouted, 1);
        assert!(!report.ok());
    }

    #[test]
    fn unacknowledged_extras_are_fine_and_consume_mode_checks_gaps() {
        let mut verifier = Verifier::new(None);
        for sequence in 10..20 {
            verifier.observe(2, payload(3, 2, sequence));
        }
        let e2e = verifier.report(Some(&acked(&[])));
        assert!(e2e.ok());
        let consume = verifier.report(None);
        assert!(consume.ok(), "{consume:?}");
        assert_eq!(consume.expected, 10);
        verifier.observe(2, payload(3, 2, 25));
        assert_eq!(verifier.report(None).lost, 5);
    }

    #[test]
    fn merge_combines_consumers() {
        let mut left = Verifier::new(Some(9));
        let mut right = Verifier::new(Some(9));
        for sequence in 0..10 {
            left.observe(0, payload(0, 0, sequence));
            right.observe(1, payload(0, 1, sequence));
        }
        right.observe(1, None);
        left.merge(&right);
        let report = left.report(Some(&acked(&[(0, 0, 10), (1, 0, 10)])));
        assert!(report.ok());
        assert_eq!(report.consumed_unique, 20);
        assert_eq!(report.foreign, 1);
    }
}
