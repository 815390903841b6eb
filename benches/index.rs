//! Index lookup: `SegmentIndex::lookup` (offset -> position, every Fetch that misses the batch
//! cache) and `SegmentIndex::time_lookup` (timestamp -> offset, ListOffsets by time) over one
//! segment's in-memory index of 100k entries (about a 400 MiB segment at the default
//! `index.interval.bytes` of 4096), built the way appends build it (`observe`). Keys are a fixed
//! pseudo-random sequence so the binary search does not hit the same cache lines every time.
//!
//! Run: `cargo bench --bench index`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sluice::storage::index::{BatchPlacement, SegmentIndex};

const ENTRIES: u32 = 100_000;
const BATCH_BYTES: u32 = 4096;
const RECORDS_PER_BATCH: u32 = 16;
const INDEX_INTERVAL_BYTES: u32 = 4096;
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Lookups per measured iteration: enough distinct keys to defeat the branch predictor.
const LOOKUPS: usize = 1024;

fn build_index() -> SegmentIndex {
    let mut index = SegmentIndex::new();
    for batch in 0..ENTRIES {
        index.observe(
            BatchPlacement {
                relative_base_offset: batch * RECORDS_PER_BATCH,
                relative_last_offset: batch * RECORDS_PER_BATCH + RECORDS_PER_BATCH - 1,
                position: batch * BATCH_BYTES,
                size_bytes: BATCH_BYTES,
                max_timestamp: BASE_TIMESTAMP_MS + i64::from(batch),
            },
            INDEX_INTERVAL_BYTES,
        );
    }
    assert_eq!(index.offsets().len(), ENTRIES as usize);
    assert_eq!(index.times().len(), ENTRIES as usize);
    index
}

/// xorshift: deterministic, cheap, spread over the whole index.
fn keys(count: usize, bound: u64) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        })
        .collect()
}

fn index_lookup(criterion: &mut Criterion) {
    let index = build_index();
    let offsets: Vec<u32> = keys(LOOKUPS, u64::from(ENTRIES * RECORDS_PER_BATCH))
        .into_iter()
        .map(|key| key as u32)
        .collect();
    let timestamps: Vec<i64> = keys(LOOKUPS, u64::from(ENTRIES))
        .into_iter()
        .map(|key| BASE_TIMESTAMP_MS + key as i64)
        .collect();
    let mut group = criterion.benchmark_group("index_100k");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    group.bench_function("lookup", |b| {
        b.iter(|| {
            for &offset in &offsets {
                black_box(index.lookup(black_box(offset)));
            }
        })
    });
    group.bench_function("time_lookup", |b| {
        b.iter(|| {
            for &timestamp in &timestamps {
                black_box(index.time_lookup(black_box(timestamp)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, index_lookup);
criterion_main!(benches);
