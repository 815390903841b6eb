//! Per-shard cache of recently durable record batches, shared by all partition logs of the
//! shard through `Rc`, bounded in bytes, FIFO eviction.
//!
//! Tailing consumers read what producers just wrote; serving those reads from here avoids the
//! disk entirely (nothing relies on the OS page cache: segment files are O_DIRECT). Batches enter
//! when their flush completes, in offset order, so FIFO order is also age order and a
//! partition's cached batches form a recent suffix of its log. Reads are zero copy.
//! Holds no durability state: dropping it loses nothing.
//!
//! Memory: the budget counts what an entry really keeps alive. A batch is a `Bytes` view of
//! the request frame it came in, and that frame shares its allocation with whatever the
//! connection read alongside it (up to `PINNED_EXTRA_BYTES_MAX` of read-ahead): a 100-byte
//! batch could keep 64 KiB alive. So batches smaller than `COPY_BELOW_BYTES` are copied into
//! an allocation of their own when they enter (small copies, off the ack path's critical
//! section only by a memcpy), and larger ones are charged their length plus the read-ahead
//! they may pin; every entry is also charged `ENTRY_OVERHEAD_BYTES` for its map and queue
//! slots. So many tiny batches cannot take the shard past its budget.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

/// Most bytes a batch view can keep alive beyond itself: the connection's read-ahead
/// (`server::connection` asserts its read-ahead fits).
pub const PINNED_EXTRA_BYTES_MAX: u64 = 64 << 10;
/// Batches below this are copied into their own allocation on entry (see the header).
pub const COPY_BELOW_BYTES: usize = PINNED_EXTRA_BYTES_MAX as usize;
/// Map node, queue slot and `Bytes` header of one entry, rounded up.
pub const ENTRY_OVERHEAD_BYTES: u64 = 256;

/// What an entry costs the budget.
fn charge(bytes: &Bytes, copied: bool) -> u64 {
    let pinned = if copied { 0 } else { PINNED_EXTRA_BYTES_MAX };
    bytes.len() as u64 + pinned + ENTRY_OVERHEAD_BYTES
}

/// Key of a cached batch: the owning log's cache id and the batch's base offset.
type BatchKey = (u64, i64);

struct CachedBatch {
    last_offset: i64,
    bytes: Bytes,
    /// What it costs the budget (`charge`).
    charged_bytes: u64,
}

#[derive(Default)]
struct CacheState {
    batches: BTreeMap<BatchKey, CachedBatch>,
    /// Insertion order; may hold keys already removed (skipped on eviction).
    fifo: VecDeque<BatchKey>,
    size_bytes: u64,
}

/// Cache statistics, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCacheStats {
    pub size_bytes: u64,
    pub batches: u64,
    pub hits: u64,
    pub misses: u64,
}

pub struct BatchCache {
    capacity_bytes: u64,
    state: RefCell<CacheState>,
    next_log_id: Cell<u64>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl BatchCache {
    /// A cache holding at most `capacity_bytes` of batch bytes (0 disables it).
    pub fn new(capacity_bytes: u64) -> Rc<BatchCache> {
        Rc::new(BatchCache {
            capacity_bytes,
            state: RefCell::new(CacheState::default()),
            next_log_id: Cell::new(0),
            hits: Cell::new(0),
            misses: Cell::new(0),
        })
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    pub fn stats(&self) -> BatchCacheStats {
        let state = self.state.borrow();
        BatchCacheStats {
            size_bytes: state.size_bytes,
            batches: state.batches.len() as u64,
            hits: self.hits.get(),
            misses: self.misses.get(),
        }
    }

    /// A fresh id for one partition log's entries.
    pub(crate) fn register_log(&self) -> u64 {
        let id = self.next_log_id.get();
        self.next_log_id.set(id + 1);
        id
    }

    /// Caches a durable batch; evicts the oldest entries beyond capacity.
    pub(crate) fn insert(&self, log_id: u64, base_offset: i64, last_offset: i64, bytes: Bytes) {
        assert!(
            last_offset >= base_offset,
            "last={last_offset} base={base_offset}"
        );
        let copied = bytes.len() < COPY_BELOW_BYTES;
        let charged_bytes = charge(&bytes, copied);
        if charged_bytes > self.capacity_bytes {
            return;
        }
        let bytes = if copied {
            Bytes::copy_from_slice(&bytes)
        } else {
            bytes
        };
        let mut state = self.state.borrow_mut();
        let key = (log_id, base_offset);
        let batch = CachedBatch {
            last_offset,
            bytes,
            charged_bytes,
        };
        if let Some(previous) = state.batches.insert(key, batch) {
            state.size_bytes -= previous.charged_bytes;
        }
        state.size_bytes += charged_bytes;
        state.fifo.push_back(key);
        while state.size_bytes > self.capacity_bytes {
            let Some(oldest) = state.fifo.pop_front() else {
                break;
            };
            if let Some(evicted) = state.batches.remove(&oldest) {
                state.size_bytes -= evicted.charged_bytes;
            }
        }
        // Stale keys left by removals: compact so the queue stays bounded by the map.
        if state.fifo.len() > 2 * state.batches.len() + 1024 {
            let CacheState { batches, fifo, .. } = &mut *state;
            fifo.retain(|key| batches.contains_key(key));
        }
    }

    /// The cached batch containing `offset`: (last offset, bytes).
    pub(crate) fn get(&self, log_id: u64, offset: i64) -> Option<(i64, Bytes)> {
        let state = self.state.borrow();
        let found = state
            .batches
            .range((log_id, i64::MIN)..=(log_id, offset))
            .next_back()
            .filter(|(_, batch)| batch.last_offset >= offset)
            .map(|(_, batch)| (batch.last_offset, batch.bytes.clone()));
        match found {
            Some(_) => self.hits.set(self.hits.get() + 1),
            None => self.misses.set(self.misses.get() + 1),
        }
        found
    }

    /// Drops the log's batches whose base offset is >= `offset` (truncation).
    pub(crate) fn remove_from(&self, log_id: u64, offset: i64) {
        self.remove_range(log_id, offset, i64::MAX);
    }

    /// Drops the log's batches whose base offset is < `offset` (retention).
    pub(crate) fn remove_below(&self, log_id: u64, offset: i64) {
        self.remove_range(log_id, i64::MIN, offset.saturating_sub(1));
    }

    /// Drops all of the log's batches (close).
    pub(crate) fn remove_log(&self, log_id: u64) {
        self.remove_range(log_id, i64::MIN, i64::MAX);
    }

    fn remove_range(&self, log_id: u64, first: i64, last: i64) {
        if first > last {
            return;
        }
        let mut state = self.state.borrow_mut();
        let keys: Vec<BatchKey> = state
            .batches
            .range((log_id, first)..=(log_id, last))
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(removed) = state.batches.remove(&key) {
                state.size_bytes -= removed.charged_bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(length: usize) -> Bytes {
        Bytes::from(vec![7u8; length])
    }

    #[test]
    fn lookup_finds_containing_batch_and_evicts_oldest_first() {
        let unit = 100 + ENTRY_OVERHEAD_BYTES;
        let cache = BatchCache::new(3 * unit);
        let log = cache.register_log();
        let other = cache.register_log();
        cache.insert(log, 0, 4, bytes(100));
        cache.insert(log, 5, 9, bytes(100));
        cache.insert(other, 0, 0, bytes(100));
        assert_eq!(cache.get(log, 7).map(|(last, _)| last), Some(9));
        assert!(cache.get(log, 10).is_none());
        assert!(cache.get(other, 1).is_none());
        cache.insert(log, 10, 10, bytes(100));
        // Over capacity: the oldest (log, 0) went first.
        assert!(cache.get(log, 2).is_none());
        assert!(cache.get(log, 5).is_some());
        assert_eq!(cache.stats().size_bytes, 3 * unit);
        assert!(cache.stats().hits >= 2 && cache.stats().misses >= 3);
    }

    /// The budget counts what entries keep alive: a small batch is copied out of the frame it
    /// shares with other requests; a large one is charged the read-ahead it may pin.
    #[test]
    fn the_budget_counts_what_entries_keep_alive() {
        let frame = Bytes::from(vec![1u8; 200_000]);
        let cache = BatchCache::new(10 << 20);
        let log = cache.register_log();
        cache.insert(log, 0, 0, frame.slice(0..100));
        let (_, cached) = cache.get(log, 0).unwrap();
        assert_ne!(
            cached.as_ptr(),
            frame.as_ptr(),
            "copied out of the shared frame"
        );
        assert_eq!(cache.stats().size_bytes, 100 + ENTRY_OVERHEAD_BYTES);
        cache.insert(log, 1, 1, frame.slice(100..100_100));
        assert_eq!(
            cache.stats().size_bytes,
            100 + 100_000 + PINNED_EXTRA_BYTES_MAX + 2 * ENTRY_OVERHEAD_BYTES
        );
    }

    #[test]
    fn removals_and_oversized_batches() {
        let unit = 100 + ENTRY_OVERHEAD_BYTES;
        let cache = BatchCache::new(5 * unit);
        let log = cache.register_log();
        for base in 0..5 {
            cache.insert(log, base * 10, base * 10 + 9, bytes(100));
        }
        cache.insert(log, 50, 50, bytes(2000));
        assert!(cache.get(log, 50).is_none());
        cache.remove_from(log, 30);
        assert!(cache.get(log, 35).is_none());
        assert!(cache.get(log, 25).is_some());
        cache.remove_below(log, 10);
        assert!(cache.get(log, 5).is_none());
        assert_eq!(cache.stats().size_bytes, 2 * unit);
        cache.remove_log(log);
        assert_eq!(
            cache.stats(),
            BatchCacheStats {
                hits: 1,
                misses: 3,
                ..Default::default()
            }
        );
    }
}
