//! Fetch response encode: the hand-written zero-copy encoder (`protocol::fetch_response`, used by
//! `server/handlers/fetch.rs`) laying out v12 and v13 responses of 1 and 100 partitions, each with
//! 4 record chunks of 16 KiB (one chunk per stored batch, as the log returns them).
//!
//! Record bytes are not copied: each chunk is pushed into the frame as a refcounted `Bytes`
//! (asserted before measuring), so the cost is per partition and per chunk, not per byte.
//! Throughput is response bytes per second (headers + records) — a large number because the
//! record bytes are never touched; `encode_ns / chunk` is the figure that matters.
//!
//! Run: `cargo bench --bench fetch_encode`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::protocol::batch::{encode_batch, Record};
use sluice::protocol::fetch_response::{encode, FetchPartition};

const CHUNKS_PER_PARTITION: usize = 4;
const CHUNK_BYTES: usize = 16 << 10;

fn chunk() -> Bytes {
    let value = vec![b'v'; CHUNK_BYTES / 16];
    let key = b"key-00000001".to_vec();
    let rows: Vec<Record<'_>> = (0..16)
        .map(|_| (Some(&key[..]), Some(&value[..])))
        .collect();
    Bytes::from(encode_batch(&rows, 1_700_000_000_000))
}

fn fetch_encode(criterion: &mut Criterion) {
    let batch = chunk();
    let chunks: Vec<Bytes> = vec![batch.clone(); CHUNKS_PER_PARTITION];
    let topics = vec![("bench-topic".to_string(), [7u8; 16])];
    let mut group = criterion.benchmark_group("fetch_encode");
    for partition_count in [1, 100] {
        let partitions: Vec<FetchPartition<'_>> = (0..partition_count)
            .map(|partition_index| FetchPartition {
                topic_index: 0,
                partition_index,
                error_code: 0,
                high_watermark: 1_000_000,
                log_start_offset: 0,
                records: &chunks,
                current_leader: None,
                diverging_epoch: None,
            })
            .collect();
        for version in [12i16, 13] {
            let frame = encode(version, 1, 0, &topics, &partitions, &[]);
            let borrowed = frame
                .chunks
                .iter()
                .filter(|piece| piece.as_ptr() == batch.as_ptr())
                .count();
            assert_eq!(
                borrowed,
                partitions.len() * CHUNKS_PER_PARTITION,
                "record chunks must be borrowed, not copied"
            );
            group.throughput(Throughput::Bytes(frame.len_bytes() as u64));
            let id = format!("v{version}_{partition_count}p_x{CHUNKS_PER_PARTITION}x16KiB");
            group.bench_with_input(BenchmarkId::from_parameter(id), &partitions, |b, parts| {
                b.iter(|| encode(version, 1, 0, &topics, black_box(parts), &[]))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fetch_encode);
criterion_main!(benches);
