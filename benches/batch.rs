//! Batch header parse + CRC32C validation (the produce hot path's per-batch CPU cost), next to
//! the crc32c crate's raw speed over the same bytes, so the overhead of parsing shows.
//! Run: `cargo bench --bench batch`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::protocol::batch::{encode_batch, BatchHeader, Record};

fn batch_of(total_value_bytes: usize, records: usize) -> Vec<u8> {
    let value = vec![b'v'; total_value_bytes / records];
    let key = b"key-00000001".to_vec();
    let rows: Vec<Record<'_>> = (0..records)
        .map(|_| (Some(&key[..]), Some(&value[..])))
        .collect();
    encode_batch(&rows, 1_700_000_000_000)
}

fn validate(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("batch_validate");
    for (label, bytes, records) in [
        ("1KiB", 1024, 1),
        ("16KiB", 16 << 10, 16),
        ("1MiB", 1 << 20, 1024),
    ] {
        let batch = batch_of(bytes, records);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("validate_for_append", label),
            &batch,
            |b, batch| b.iter(|| BatchHeader::validate_for_append(black_box(batch)).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("crc32c_raw", label), &batch, |b, batch| {
            b.iter(|| crc32c::crc32c(black_box(&batch[21..])))
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
