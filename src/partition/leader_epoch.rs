//! The leader-epoch cache of one partition (KIP-101, Kafka's `LeaderEpochFileCache`): for each
//! leader epoch that wrote to the log, the first offset it wrote. Sans I/O: the partition
//! persists `entries()` to `leader-epoch-checkpoint` (storage) whenever a method here says the
//! cache changed.
//!
//! Maintained on append (`assign`: a batch of a new, higher epoch starts an entry), on
//! truncation from the end (entries starting at or past the new end go) and on retention moving
//! the log start (entries wholly below it go; the first kept one starts at the log start).
//! Answers OffsetForLeaderEpoch (`end_offset_for`) with Kafka's rules.

use crate::ids::LeaderEpoch;
use crate::storage::epoch_checkpoint::{EpochEntry, ENTRIES_MAX};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// A cache from checked entries (epochs and start offsets ascending).
    pub fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochCache {
        for pair in entries.windows(2) {
            assert!(
                pair[0].epoch < pair[1].epoch && pair[0].start_offset <= pair[1].start_offset,
                "epoch entries out of order: {pair:?}"
            );
        }
        LeaderEpochCache { entries }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|entry| LeaderEpoch(entry.epoch))
    }

    /// Records that `epoch` wrote its first batch at `start_offset`. True if the cache changed.
    /// An epoch at or below the latest one changes nothing (its entry already exists).
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: i64) -> bool {
        assert!(
            epoch.0 >= 0 && start_offset >= 0,
            "epoch={epoch:?} start_offset={start_offset}"
        );
        if let Some(last) = self.entries.last() {
            if epoch.0 <= last.epoch {
                return false;
            }
            assert!(
                start_offset >= last.start_offset,
                "epoch {epoch:?} starts at {start_offset}, before epoch {} at {}",
                last.epoch,
                last.start_offset
            );
        }
        self.entries.push(EpochEntry {
            epoch: epoch.0,
            start_offset,
        });
        if self.entries.len() > ENTRIES_MAX {
            // Oldest first: only offsets long gone from a live log refer to them.
            self.entries.remove(0);
        }
        true
    }

    /// The log was truncated to end at `end_offset`: entries starting there or later go.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: entries wholly below it go, and the first kept one
    /// starts at `start_offset`.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        // The last entry starting at or before the new start is the epoch of the first offset.
        let Some(first_kept) = self
            .entries
            .iter()
            .rposition(|entry| entry.start_offset <= start_offset)
        else {
            return false;
        };
        let changed = first_kept > 0 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..first_kept);
        self.entries[0].start_offset = start_offset;
        changed
    }

    /// Kafka's `endOffsetFor`: the largest epoch at or below `requested` and the offset where the
    /// next higher epoch starts (`log_end_offset` if `requested` is the latest epoch); undefined
    /// (-1, -1) for an undefined request or an epoch above every known one. An epoch below the
    /// first known one answers itself with the first entry's start offset.
    pub fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end_offset: i64,
    ) -> (LeaderEpoch, i64) {
        const UNDEFINED: (LeaderEpoch, i64) = (LeaderEpoch::UNDEFINED, -1);
        if requested == LeaderEpoch::UNDEFINED {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|entry| entry.epoch > requested.0) else {
            return UNDEFINED;
        };
        match self
            .entries
            .iter()
            .rev()
            .find(|entry| entry.epoch <= requested.0)
        {
            Some(floor) => (LeaderEpoch(floor.epoch), higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// The epoch that wrote `offset` (the last entry starting at or before it).
    pub fn epoch_of(&self, offset: i64) -> Option<LeaderEpoch> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.start_offset <= offset)
            .map(|entry| LeaderEpoch(entry.epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            pairs
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    #[test]
    fn assign_keeps_only_new_higher_epochs() {
        let mut epochs = LeaderEpochCache::default();
        assert!(epochs.assign(LeaderEpoch(0), 0));
        assert!(!epochs.assign(LeaderEpoch(0), 10), "same epoch");
        assert!(epochs.assign(LeaderEpoch(2), 10));
        assert!(!epochs.assign(LeaderEpoch(1), 20), "older epoch");
        assert_eq!(epochs, cache(&[(0, 0), (2, 10)]));
        assert_eq!(epochs.latest_epoch(), Some(LeaderEpoch(2)));
    }

    #[test]
    fn end_offsets_follow_kafka_rules() {
        let epochs = cache(&[(1, 5), (3, 20), (4, 30)]);
        let end = |epoch| epochs.end_offset_for(LeaderEpoch(epoch), 42);
        assert_eq!(end(4), (LeaderEpoch(4), 42), "latest: log end");
        assert_eq!(end(3), (LeaderEpoch(3), 30));
        assert_eq!(
            end(2),
            (LeaderEpoch(1), 20),
            "unknown: floor epoch, next start"
        );
        assert_eq!(end(0), (LeaderEpoch(0), 5), "below the first");
        assert_eq!(end(5), (LeaderEpoch::UNDEFINED, -1), "above the latest");
        assert_eq!(end(-1), (LeaderEpoch::UNDEFINED, -1));
        assert_eq!(
            LeaderEpochCache::default().end_offset_for(LeaderEpoch(0), 0),
            (LeaderEpoch::UNDEFINED, -1)
        );
    }

    #[test]
    fn truncation_from_either_end() {
        let mut epochs = cache(&[(1, 5), (3, 20), (4, 30)]);
        assert!(epochs.truncate_from_end(30));
        assert_eq!(epochs, cache(&[(1, 5), (3, 20)]));
        assert!(!epochs.truncate_from_end(31));
        assert!(epochs.truncate_from_start(25));
        assert_eq!(epochs, cache(&[(3, 25)]));
        assert!(!epochs.truncate_from_start(25));
        assert!(
            !epochs.truncate_from_start(3),
            "below the first entry: nothing to drop"
        );
        assert_eq!(epochs.epoch_of(26), Some(LeaderEpoch(3)));
        assert_eq!(epochs.epoch_of(2), None);
    }
}
