//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges of its last `BATCHES_PER_PRODUCER_MAX` batches (Kafka keeps 5, the most a
//! producer has in flight). A retried batch whose sequences match one of them is a duplicate
//! and is answered with its original offset instead of being appended again.
//!
//! The state is derived from the log (batch headers carry producer id, epoch and base
//! sequence), so it is rebuilt by scanning batches when the partition opens.

use std::collections::{HashMap, VecDeque};

use crate::ids::ProducerId;
use crate::protocol::batch::BatchHeader;
use crate::protocol::error::{self, ErrorCode};

/// In-flight batches a producer may have per partition (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence).
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;
/// Producers tracked per partition; the least recently active is forgotten beyond it.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchSequences {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSequences>,
    last_offset: i64,
    /// Max timestamp of its latest batch (DescribeProducers' `last_timestamp`).
    last_timestamp: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence of its latest batch, -1 if none is kept.
    pub last_sequence: i32,
    pub last_timestamp: i64,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log at this base offset: answer it, do not append.
    Duplicate {
        base_offset: i64,
    },
    Reject(ErrorCode),
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<ProducerId, ProducerEntry>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's DefaultRecordBatch.incrementSequence.
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (last % (i64::from(i32::MAX) + 1)) as i32
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    pub fn is_idempotent(header: &BatchHeader) -> bool {
        header.producer_id >= 0
    }

    /// Checks an incoming batch against the producer's history (Kafka's rules).
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        let Some(entry) = self.producers.get(&ProducerId(header.producer_id)) else {
            // Unknown producer (new, or its batches were deleted): any sequence is accepted.
            return SequenceCheck::Append;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(error::INVALID_PRODUCER_EPOCH);
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        let last = last_sequence(header);
        if let Some(original) = entry.batches.iter().find(|batch| {
            batch.first_sequence == header.base_sequence && batch.last_sequence == last
        }) {
            return SequenceCheck::Duplicate {
                base_offset: original.base_offset,
            };
        }
        match entry.batches.back() {
            Some(latest) if next_sequence(latest.last_sequence) != header.base_sequence => {
                SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch that is now in the log at `base_offset`.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64) {
        if !Self::is_idempotent(header) {
            return;
        }
        if !self.producers.contains_key(&ProducerId(header.producer_id))
            && self.producers.len() >= PRODUCERS_PER_PARTITION_MAX
        {
            self.forget_least_recent();
        }
        let entry = self
            .producers
            .entry(ProducerId(header.producer_id))
            .or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        let sequences = BatchSequences {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset,
        };
        if entry.batches.contains(&sequences) {
            // A replicated leader records a batch when it proposes it and again when its
            // Raft log stores it.
            return;
        }
        entry.batches.push_back(sequences);
        while entry.batches.len() > BATCHES_PER_PRODUCER_MAX {
            entry.batches.pop_front();
        }
        entry.last_offset = base_offset + i64::from(header.last_offset_delta);
        entry.last_timestamp = header.max_timestamp;
    }

    /// Every producer kept, by id.
    pub fn snapshot(&self) -> Vec<ProducerSnapshot> {
        let mut producers: Vec<ProducerSnapshot> = self
            .producers
            .iter()
            .map(|(producer_id, entry)| ProducerSnapshot {
                producer_id: producer_id.0,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |batch| batch.last_sequence),
                last_timestamp: entry.last_timestamp,
            })
            .collect();
        producers.sort_by_key(|producer| producer.producer_id);
        producers
    }

    /// Forgets every batch at or past `offset` (the log was truncated there, or a deposed
    /// leader's proposals never reached its log); a producer left with none is forgotten.
    pub fn forget_from(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|batch| batch.base_offset < offset);
            match entry.batches.back() {
                Some(latest) => {
                    // Only ranks producers for forgetting: the latest batch's start will do.
                    entry.last_offset = entry.last_offset.min(latest.base_offset);
                    true
                }
                None => false,
            }
        });
    }

    fn forget_least_recent(&mut self) {
        if let Some(oldest) = self
            .producers
            .iter()
            .min_by_key(|(_, entry)| entry.last_offset)
            .map(|(producer_id, _)| *producer_id)
        {
            self.producers.remove(&oldest);
        }
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn duplicates_are_recognised_and_gaps_rejected() {
        let mut states = ProducerStates::default();
        let first = header(7, 0, 0, 10);
        assert_eq!(states.check(&first), SequenceCheck::Append);
        states.record(&first, 100);
        assert_eq!(
            states.check(&first),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        let next = header(7, 0, 10, 5);
        assert_eq!(states.check(&next), SequenceCheck::Append);
        states.record(&next, 110);
        let gap = header(7, 0, 20, 1);
        assert_eq!(
            states.check(&gap),
            SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(
            states.check(&header(7, 0, 10, 5)),
            SequenceCheck::Duplicate { base_offset: 110 }
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut states = ProducerStates::default();
        states.record(&header(1, 3, 0, 1), 0);
        assert_eq!(
            states.check(&header(1, 2, 1, 1)),
            SequenceCheck::Reject(error::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            states.check(&header(1, 4, 5, 1)),
            SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(states.check(&header(1, 4, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for index in 0..8 {
            states.record(&header(9, 0, index, 1), i64::from(index));
        }
        assert_eq!(
            states.check(&header(9, 0, 7, 1)),
            SequenceCheck::Duplicate { base_offset: 7 }
        );
        assert_eq!(
            states.check(&header(9, 0, 1, 1)),
            SequenceCheck::Reject(error::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
    }

    #[test]
    fn a_batch_recorded_twice_is_remembered_once() {
        let mut states = ProducerStates::default();
        states.record(&header(3, 0, 0, 1), 10);
        states.record(&header(3, 0, 1, 1), 11);
        // The Raft log stores what the leader recorded when it proposed.
        states.record(&header(3, 0, 0, 1), 10);
        states.record(&header(3, 0, 1, 1), 11);
        for sequence in 2..5 {
            states.record(&header(3, 0, sequence, 1), 10 + i64::from(sequence));
        }
        assert_eq!(
            states.check(&header(3, 0, 0, 1)),
            SequenceCheck::Duplicate { base_offset: 10 }
        );
    }

    #[test]
    fn truncation_forgets_the_batches_it_removed() {
        let mut states = ProducerStates::default();
        states.record(&header(4, 0, 0, 2), 20);
        states.record(&header(4, 0, 2, 2), 22);
        states.record(&header(5, 0, 0, 1), 24);
        states.forget_from(22);
        // The cut batch is new again; its predecessor is still a duplicate.
        assert_eq!(states.check(&header(4, 0, 2, 2)), SequenceCheck::Append);
        assert_eq!(
            states.check(&header(4, 0, 0, 2)),
            SequenceCheck::Duplicate { base_offset: 20 }
        );
        assert_eq!(states.producer_count(), 1);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        states.record(&header(2, 0, i32::MAX - 1, 2), 0);
        assert_eq!(states.check(&header(2, 0, 0, 1)), SequenceCheck::Append);
    }
}
