//! Segment append in memory: `PartitionLog::append` of 1 KiB and 16 KiB batches on a glommio
//! `LocalExecutor` over a temporary directory — parse the header, assign offsets (rewrite
//! base_offset), extend the in-memory indexes, queue the batch for the flusher. Durability is not
//! awaited and no flush is measured.
//!
//! Two cases per size:
//! - `append`: the owned `BytesMut` buffers are prepared before the clock starts; only `append`
//!   is timed.
//! - `copy_and_append`: the batch is first copied into an owned `BytesMut`, as the Produce handler
//!   does (`BytesMut::from(records)`), then appended — the per-batch CPU cost of the produce path
//!   on the owning shard, minus validation (`benches/batch.rs`) and the wait for fdatasync.
//!
//! How the disk is kept out: `append` never awaits, so the flusher task it starts cannot run
//! while the clock runs. Appends go in rounds of at most `WRITE_BEHIND_BYTES_MAX` (the log's
//! bound on unflushed bytes); after each round the partition directory is deleted and the
//! executor yields, so the flusher's first segment-file creation fails, the log goes offline
//! and is dropped with its queued batches. Nothing is written to disk; memory stays bounded.
//!
//! Memory: glibc's heap trimming is turned off (`mallopt(M_TRIM_THRESHOLD)`) so the buffers
//! freed after a round are reused by the next, as in a broker in steady state. Left on, every
//! round's 64 MiB goes back to the kernel and `copy_and_append` measures first-touch page faults
//! (on the 2 vCPU VM of `benches/README.md`: 9.3 µs instead of ~1 µs per 16 KiB batch).
//!
//! Run: `cargo bench --bench append` (needs 512 KiB of locked memory for glommio).

use std::path::Path;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice::protocol::batch::{encode_batch, BatchHeader, Record};
use sluice::storage::{BatchCache, LogConfig, PartitionLog, WRITE_BEHIND_BYTES_MAX};

const LEADER_EPOCH: i32 = 1;
/// The shard's batch cache; appends do not touch it (only flushes fill it).
const CACHE_BYTES: u64 = 64 << 20;
/// Give up if a dropped log's flusher has not stopped by then (it should take microseconds).
const LOG_DROP_WAIT_MAX: Duration = Duration::from_secs(10);

fn batch_of(total_value_bytes: usize, records: usize) -> Bytes {
    let value = vec![b'v'; total_value_bytes / records];
    let key = b"key-00000001".to_vec();
    let rows: Vec<Record<'_>> = (0..records)
        .map(|_| (Some(&key[..]), Some(&value[..])))
        .collect();
    Bytes::from(encode_batch(&rows, 1_700_000_000_000))
}

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("glommio executor (needs 512 KiB of locked memory)")
}

async fn open_log(dir: &Path) -> Rc<PartitionLog> {
    let config = LogConfig {
        retention_ms: -1,
        ..LogConfig::default()
    };
    PartitionLog::open(dir.to_path_buf(), config, BatchCache::new(CACHE_BYTES))
        .await
        .expect("open partition log")
}

/// Deletes the log's directory, then lets its flusher fail and the log drop (see the header).
async fn discard_log(log: Rc<PartitionLog>, dir: tempfile::TempDir) {
    let weak: Weak<PartitionLog> = Rc::downgrade(&log);
    drop(log);
    drop(dir);
    let started = Instant::now();
    while weak.strong_count() > 0 {
        assert!(started.elapsed() < LOG_DROP_WAIT_MAX, "log was not dropped");
        glommio::timer::sleep(Duration::from_micros(50)).await;
    }
}

/// Appends `iterations` copies of `batch` in bounded rounds; returns the time spent appending
/// (and copying, with `copy_timed`).
async fn append_timed(batch: &Bytes, iterations: u64, copy_timed: bool) -> Duration {
    let per_round = WRITE_BEHIND_BYTES_MAX / batch.len() as u64;
    let mut timed = Duration::ZERO;
    let mut remaining = iterations;
    while remaining > 0 {
        let round = remaining.min(per_round);
        remaining -= round;
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open_log(&dir.path().join("bench-0")).await;
        if copy_timed {
            let started = Instant::now();
            for _ in 0..round {
                let owned = BytesMut::from(&batch[..]);
                log.append(owned, LEADER_EPOCH).expect("append");
            }
            timed += started.elapsed();
        } else {
            let owned: Vec<BytesMut> = (0..round).map(|_| BytesMut::from(&batch[..])).collect();
            let started = Instant::now();
            for buffer in owned {
                log.append(buffer, LEADER_EPOCH).expect("append");
            }
            timed += started.elapsed();
        }
        assert_eq!(log.log_end_offset(), round as i64 * records_in(batch));
        discard_log(log, dir).await;
    }
    timed
}

fn records_in(batch: &Bytes) -> i64 {
    let header = BatchHeader::parse(batch).expect("valid batch");
    i64::from(header.last_offset_delta) + 1
}

/// Keeps freed heap memory in the process, as a broker in steady state reuses it. Without this,
/// glibc returns each round's 64 MiB to the kernel when the round is discarded and the next
/// round pays a first-touch page fault per 4 KiB inside the timed copy.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets a glibc tunable; called before any threads start allocating.
    let applied = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) };
    assert_eq!(applied, 1, "mallopt(M_TRIM_THRESHOLD) failed");
}

fn append(criterion: &mut Criterion) {
    keep_freed_memory();
    let executor = executor();
    let mut group = criterion.benchmark_group("partition_log");
    for (label, bytes, records) in [("1KiB", 1024, 1), ("16KiB", 16 << 10, 16)] {
        let batch = batch_of(bytes, records);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        for (name, copy_timed) in [("append", false), ("copy_and_append", true)] {
            group.bench_with_input(BenchmarkId::new(name, label), &batch, |b, batch| {
                b.iter_custom(|iterations| {
                    executor.run(append_timed(batch, iterations, copy_timed))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
