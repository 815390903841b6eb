//! Tests of `PartitionLog` as a user of the storage layer sees it, each on a glommio executor
//! over a temporary directory: append/read, roll, index, DMA reads, recovery, retention, group
//! commit, truncation, and an operation fuzzer checked against an in-memory model.

use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};

use super::segment::{segment_file_name, Segment, SegmentState};
use super::{BatchCache, LogConfig, PartitionLog, StorageError};
use crate::protocol::batch::{assign_offset, encode_batch, BatchHeader};

pub(super) const LEADER_EPOCH: i32 = 3;

pub(super) fn run<T>(test: impl Future<Output = T>) -> T {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("glommio executor (needs 512 KiB of memlock)");
    executor.run(test)
}

pub(super) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 512,
        preallocate_bytes: 8 << 10,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

/// (key, value) of one record, as `encode_batch` takes it.
type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// A batch of `records` records with `value_bytes`-byte values, timestamped `timestamp`.
pub(super) fn batch(records: usize, value_bytes: usize, timestamp: i64, seed: u8) -> BytesMut {
    let value: Vec<u8> = (0..value_bytes)
        .map(|i| seed.wrapping_add(i as u8))
        .collect();
    let list: Vec<Record<'_>> = (0..records)
        .map(|_| (Some(&b"key"[..]), Some(&value[..])))
        .collect();
    BytesMut::from(&encode_batch(&list, timestamp)[..])
}

/// What the log must hold for a batch appended at `base_offset`.
pub(super) fn stored(mut bytes: BytesMut, base_offset: i64) -> Bytes {
    assign_offset(&mut bytes, base_offset, LEADER_EPOCH);
    bytes.freeze()
}

pub(super) fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect()
}

/// Splits concatenated read output into batch headers (and checks every CRC).
fn headers(chunks: &[Bytes]) -> Vec<BatchHeader> {
    let bytes = concat(chunks);
    let mut at = 0;
    let mut headers = Vec::new();
    while at < bytes.len() {
        let header = BatchHeader::parse_and_verify(&bytes[at..]).expect("valid batch");
        at += header.size_bytes();
        headers.push(header);
    }
    headers
}

pub(super) async fn open(dir: &Path, config: LogConfig, cache_bytes: u64) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), config, BatchCache::new(cache_bytes))
        .await
        .expect("open")
}

/// Appends and returns the bytes as stored.
pub(super) fn append(log: &PartitionLog, bytes: BytesMut) -> Bytes {
    let info = log.append(bytes.clone(), LEADER_EPOCH).expect("append");
    stored(bytes, info.base_offset)
}

pub(super) async fn wait_flusher_idle(log: &PartitionLog) {
    while log.flusher_running() {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

pub(super) fn partition_dir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("topic-0");
    (temp, dir)
}

#[test]
fn append_read_round_trip() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, small_config(), 1 << 20).await;
        let mut expected = Vec::new();
        for i in 0..10 {
            expected.push(append(&log, batch(3, 20, 1000 + i, i as u8)));
        }
        assert_eq!(log.log_end_offset(), 30);
        log.wait_durable(30).await.expect("durable");
        assert_eq!(log.durable_end_offset(), 30);
        let all = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&all), concat(&expected));
        // An offset inside a batch returns that whole batch.
        let from_middle = log.read(4, u32::MAX).await.expect("read");
        assert_eq!(headers(&from_middle)[0].base_offset, 3);
        // KIP-74: the first batch comes whole even if larger than max_bytes.
        let tiny = log.read(0, 1).await.expect("read");
        assert_eq!(concat(&tiny), expected[0].to_vec());
        let two = log
            .read(0, (expected[0].len() * 2) as u32)
            .await
            .expect("read");
        assert_eq!(headers(&two).len(), 2);
        assert!(log.read(30, 1000).await.expect("read").is_empty());
        assert!(matches!(
            log.read(31, 1000).await,
            Err(StorageError::OffsetOutOfRange { offset: 31, .. })
        ));
        let stored_header = headers(&all)[1];
        assert_eq!(stored_header.partition_leader_epoch, LEADER_EPOCH);
        log.close().await.expect("close");
        assert!(matches!(
            log.append(batch(1, 1, 0, 0), 0),
            Err(StorageError::Closed { .. })
        ));
    });
}

#[test]
fn segment_rolls_by_size_and_reads_span_segments_from_disk() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            segment_bytes: 4096,
            ..small_config()
        };
        let log = open(&dir, config, 0).await;
        let mut expected = Vec::new();
        for i in 0..20 {
            expected.push(append(&log, batch(2, 400, i, i as u8)));
        }
        log.wait_durable(log.log_end_offset())
            .await
            .expect("durable");
        wait_flusher_idle(&log).await;
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 5, "bases={bases:?}");
        for window in bases.windows(2) {
            assert!(window[1] > window[0]);
        }
        for base in &bases[..bases.len() - 1] {
            let path = dir.join(segment_file_name(*base, "log"));
            let length = std::fs::metadata(&path).expect("segment").len();
            assert!(length <= 4096, "sealed segment {base} trimmed: {length}");
            assert!(dir.join(segment_file_name(*base, "index")).exists());
            assert!(dir.join(segment_file_name(*base, "timeindex")).exists());
        }
        assert!(dir.join("00000000000000000000.log").exists());
        let all = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&all), concat(&expected));
        // Every batch is found through the index of its segment.
        for (i, bytes) in expected.iter().enumerate() {
            let offset = 2 * i as i64 + 1;
            let one = log.read(offset, 1).await.expect("read");
            assert_eq!(concat(&one), bytes.to_vec(), "offset {offset}");
        }
    });
}

#[test]
fn old_data_is_read_by_dma_after_cache_eviction() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = PartitionLog::open(dir.clone(), small_config(), BatchCache::new(4096))
            .await
            .expect("open");
        let mut expected = Vec::new();
        for i in 0..40 {
            expected.push(append(&log, batch(1, 300, i, i as u8)));
        }
        log.wait_durable(40).await.expect("durable");
        // The newest batches are cached, the oldest were evicted and come from disk.
        let cached = log.read(39, u32::MAX).await.expect("read");
        assert_eq!(concat(&cached), expected[39].to_vec());
        let two_batches = (expected[5].len() + expected[6].len()) as u32;
        let old = log.read(5, two_batches).await.expect("read");
        assert_eq!(concat(&old), concat(&expected[5..7]));
        let everything = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&everything), concat(&expected));
        assert!(log.cache.stats().misses > 0, "some reads went to disk");
    });
}

/// Position where the last segment's data ends.
pub(super) fn last_segment_path(log: &PartitionLog, dir: &Path) -> PathBuf {
    let bases = log.segment_base_offsets();
    dir.join(segment_file_name(bases[bases.len() - 1], "log"))
}

pub(super) fn write_at(path: &Path, position: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    file.seek(SeekFrom::Start(position)).expect("seek");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("sync");
}

#[test]
fn recovery_truncates_torn_tail_and_appends_continue() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, small_config(), 1 << 20).await;
        let mut expected = Vec::new();
        for i in 0..5 {
            expected.push(append(&log, batch(2, 100, i, i as u8)));
        }
        log.wait_durable(10).await.expect("durable");
        wait_flusher_idle(&log).await;
        let path = last_segment_path(&log, &dir);
        let valid_end = log.size_bytes();
        drop(log); // kill -9: no close, no index written.
                   // A torn batch (the first half of a real one) and garbage after it.
        let torn = stored(batch(2, 100, 9, 9), 10);
        write_at(&path, valid_end, &torn[..torn.len() / 2]);
        write_at(&path, valid_end + 200, &[0xab; 300]);

        let log = open(&dir, small_config(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.durable_end_offset(), 10);
        assert_eq!(std::fs::metadata(&path).expect("segment").len(), valid_end);
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&expected));
        expected.push(append(&log, batch(1, 50, 10, 10)));
        assert_eq!(log.log_end_offset(), 11);
        log.wait_durable(11).await.expect("durable");
        log.close().await.expect("close");

        let log = open(&dir, small_config(), 0).await;
        assert_eq!(log.log_end_offset(), 11);
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&expected));
    });
}

#[test]
fn missing_or_corrupt_index_is_rebuilt() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..small_config()
        };
        let log = open(&dir, config.clone(), 0).await;
        let mut expected = Vec::new();
        for i in 0..30 {
            expected.push(append(&log, batch(1, 150, 1000 + 10 * i, i as u8)));
        }
        log.wait_durable(30).await.expect("durable");
        log.close().await.expect("close");
        let index = dir.join(segment_file_name(0, "index"));
        let time_index = dir.join(segment_file_name(0, "timeindex"));
        let original_index = std::fs::read(&index).expect("index");
        let original_time_index = std::fs::read(&time_index).expect("time index");
        assert!(original_index.len() >= 16, "several entries");
        std::fs::remove_file(&index).expect("remove");
        write_at(&time_index, 4, &[0xff; 8]);
        let second_base = log.segment_base_offsets()[1];
        let second_index = dir.join(segment_file_name(second_base, "index"));
        write_at(&second_index, 8, &[0x7f; 8]);

        let log = open(&dir, config, 0).await;
        assert_eq!(std::fs::read(&index).expect("rebuilt"), original_index);
        assert_eq!(
            std::fs::read(&time_index).expect("rebuilt"),
            original_time_index
        );
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&expected));
        for (i, bytes) in expected.iter().enumerate() {
            let one = log.read(i as i64, 1).await.expect("read");
            assert_eq!(concat(&one), bytes.to_vec(), "offset {i}");
        }
        assert_eq!(
            log.offset_for_timestamp(1125).await.expect("ts"),
            Some((13, 1130))
        );
        assert_eq!(
            log.offset_for_timestamp(0).await.expect("ts"),
            Some((0, 1000))
        );
        assert_eq!(log.offset_for_timestamp(5000).await.expect("ts"), None);
        assert_eq!(log.max_timestamp(), Some((1290, 29)));
    });
}

/// A log of 2 KiB segments holding 40 durable one-record batches (timestamps 10,000-10,039).
async fn forty_batches_in_2k_segments(dir: &Path) -> (Rc<PartitionLog>, LogConfig) {
    let config = LogConfig {
        segment_bytes: 2048,
        ..small_config()
    };
    let log = open(dir, config.clone(), 1 << 20).await;
    for i in 0..40 {
        append(&log, batch(1, 300, 10_000 + i, i as u8));
    }
    log.wait_durable(40).await.expect("durable");
    wait_flusher_idle(&log).await;
    (log, config)
}

#[test]
fn retention_by_bytes_and_time_advances_log_start_offset() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let (log, config) = forty_batches_in_2k_segments(&dir).await;
        let segments_before = log.segment_count();
        assert!(segments_before >= 8, "segments={segments_before}");
        assert_eq!(log.enforce_retention(20_000).await.expect("retention"), 0);

        let total = log.size_bytes();
        log.set_config(LogConfig {
            retention_bytes: (total / 2) as i64,
            ..config.clone()
        });
        let deleted = log.enforce_retention(20_000).await.expect("retention");
        assert!(
            deleted > 0 && log.size_bytes() >= total / 2,
            "deleted={deleted}"
        );
        let log_start_offset = log.log_start_offset();
        assert!(log_start_offset > 0);
        assert_eq!(log.segment_base_offsets()[0], log_start_offset);
        assert!(!dir.join(segment_file_name(0, "log")).exists());
        assert!(matches!(
            log.read(0, 100).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let first = log.read(log_start_offset, 1).await.expect("read");
        assert_eq!(headers(&first)[0].base_offset, log_start_offset);

        // By time: every closed segment's newest batch is older than 5 ms at time 10_045.
        log.set_config(LogConfig {
            retention_ms: 5,
            ..config.clone()
        });
        log.enforce_retention(10_045).await.expect("retention");
        assert_eq!(log.segment_count(), 1, "only the active segment stays");
        let active_base = log.segment_base_offsets()[0];
        assert_eq!(log.log_start_offset(), active_base);
        log.close().await.expect("close");
        let log = open(&dir, config, 0).await;
        assert_eq!(log.log_start_offset(), active_base);
        assert_eq!(log.log_end_offset(), 40);
    });
}

/// Files under `dir` that are deleted but still open in this process.
fn open_deleted_files(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut found: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with(&prefix) && target.ends_with(" (deleted)"))
        .collect();
    found.sort();
    found
}

/// Polls `open_deleted_files` until it equals `expected` (the closing thread is asynchronous).
async fn wait_open_deleted_files(dir: &Path, expected: &[String]) {
    for _ in 0..500 {
        if open_deleted_files(dir) == expected {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open_deleted_files(dir), expected);
}

/// Retention hands deleted segments' descriptors to the closing thread; one a reader still
/// holds stays open (its reads keep working) until a later pass finds it released.
#[test]
fn deleted_segments_close_their_files_once_no_reader_holds_them() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let (log, config) = forty_batches_in_2k_segments(&dir).await;
        let held = log.segments.borrow()[0].clone();
        assert!(held.has_file());
        let before = held.read_bytes(0, 64).await.expect("read");
        log.set_config(LogConfig {
            retention_bytes: (log.size_bytes() / 2) as i64,
            ..config.clone()
        });
        assert!(log.enforce_retention(20_000).await.expect("retention") > 0);
        assert!(log.segment_count() >= 2);
        let held_path = format!(
            "{} (deleted)",
            dir.join(segment_file_name(0, "log")).display()
        );
        wait_open_deleted_files(&dir, std::slice::from_ref(&held_path)).await;
        assert_eq!(held.read_bytes(0, 64).await.expect("read"), before);
        assert_eq!(log.deleted_in_use.borrow().len(), 1);

        drop(held);
        assert_eq!(log.enforce_retention(20_000).await.expect("retention"), 0);
        wait_open_deleted_files(&dir, &[]).await;
        assert!(log.deleted_in_use.borrow().is_empty());
        log.close().await.expect("close");
    });
}

#[test]
fn small_lone_groups_are_written_dsync_and_large_ones_fdatasynced() {
    let (_temp, dir) = partition_dir();
    run(async move {
        // Default threshold: a lone small append is one O_DSYNC write, no fdatasync.
        let log = open(&dir.join("small"), LogConfig::default(), 1 << 20).await;
        for i in 0..3 {
            append(&log, batch(1, 100, i, i as u8));
            log.wait_durable(log.log_end_offset())
                .await
                .expect("durable");
        }
        assert_eq!((log.dsync_write_count(), log.fdatasync_count()), (3, 0));
        // A group above the threshold is written, then fdatasynced.
        let big = batch(1, 100 << 10, 9, 9);
        append(&log, big);
        log.wait_durable(log.log_end_offset())
            .await
            .expect("durable");
        assert_eq!((log.dsync_write_count(), log.fdatasync_count()), (3, 1));
        log.close().await.expect("close");
        // Threshold 0: never O_DSYNC.
        let config = LogConfig {
            dsync_write_bytes_max: 0,
            ..LogConfig::default()
        };
        let log = open(&dir.join("off"), config, 1 << 20).await;
        append(&log, batch(1, 100, 1, 1));
        log.wait_durable(log.log_end_offset())
            .await
            .expect("durable");
        assert_eq!((log.dsync_write_count(), log.fdatasync_count()), (0, 1));
        // What the O_DSYNC writes made durable is all there after a reopen.
        let log = open(&dir.join("small"), LogConfig::default(), 1 << 20).await;
        assert_eq!(log.log_end_offset(), 4);
    });
}

#[test]
fn zeroing_ahead_of_the_write_head_keeps_the_log_intact() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            zero_ahead_bytes: 256 << 10,
            ..LogConfig::default()
        };
        let log = open(&dir, config.clone(), 1 << 20).await;
        let mut stored = Vec::new();
        for i in 0..40 {
            stored.push(append(&log, batch(4, 1000, i, i as u8)));
            if i % 3 == 0 {
                log.wait_durable(log.log_end_offset())
                    .await
                    .expect("durable");
            }
        }
        log.wait_durable(log.log_end_offset())
            .await
            .expect("durable");
        wait_flusher_idle(&log).await;
        assert!(
            log.zeroed_bytes() >= 64 << 10,
            "zeroed {}",
            log.zeroed_bytes()
        );
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&stored));
        // Truncation frees the zeroed blocks past the cut; appends after it still land whole.
        log.truncate_to(80).await.expect("truncate");
        stored.truncate(20);
        for i in 40..50 {
            stored.push(append(&log, batch(4, 1000, i, i as u8)));
        }
        log.wait_durable(log.log_end_offset())
            .await
            .expect("durable");
        log.close().await.expect("close");
        let log = open(&dir, config, 1 << 20).await;
        assert_eq!(log.log_end_offset(), 120);
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&stored));
    });
}

#[test]
fn group_commit_shares_fdatasyncs() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, LogConfig::default(), 1 << 20).await;
        for i in 0..200 {
            append(&log, batch(1, 100, i, i as u8));
        }
        let waiters: Vec<_> = (1..=200)
            .map(|end| {
                let log = log.clone();
                glommio::spawn_local(async move { log.wait_durable(end).await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.expect("durable");
        }
        assert!(
            log.group_commit_count() <= 2,
            "group commits={}",
            log.group_commit_count()
        );
        // Appends from concurrent producers while flushes are in flight share them too.
        let producers: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let info = log
                        .append(batch(1, 100, i, 0), LEADER_EPOCH)
                        .expect("append");
                    log.wait_durable(info.last_offset + 1)
                        .await
                        .expect("durable");
                })
            })
            .collect();
        for producer in producers {
            producer.await;
        }
        assert_eq!(log.durable_end_offset(), 250);
        assert!(
            log.group_commit_count() <= 5,
            "group commits={}",
            log.group_commit_count()
        );
    });
}

#[test]
fn durable_end_offset_waiters_wake_on_flush_and_can_be_dropped() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, small_config(), 1 << 20).await;
        {
            let abandoned = log.wait_for_durable_above(100);
            let timeout = glommio::timer::timeout(Duration::from_millis(5), async {
                abandoned.await;
                Ok(())
            });
            assert!(timeout.await.is_err(), "no data yet");
        }
        assert_eq!(log.waiter_count(), 0);
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_for_durable_above(0).await })
        };
        append(&log, batch(1, 10, 0, 0));
        waiter.await;
        assert_eq!(log.durable_end_offset(), 1);
    });
}

#[test]
fn truncate_to_removes_suffix_durably() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            segment_bytes: 2048,
            ..small_config()
        };
        let log = open(&dir, config.clone(), 1 << 20).await;
        let mut expected = Vec::new();
        for i in 0..20 {
            expected.push(append(&log, batch(2, 300, i, i as u8)));
        }
        log.wait_durable(40).await.expect("durable");
        wait_flusher_idle(&log).await;
        let segments_before = log.segment_count();
        // Offset 21 is inside the batch [20, 21]: the whole batch goes.
        log.truncate_to(21).await.expect("truncate");
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(log.durable_end_offset(), 20);
        assert!(log.segment_count() < segments_before);
        expected.truncate(10);
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&expected));
        expected.push(append(&log, batch(1, 77, 50, 50)));
        log.wait_durable(21).await.expect("durable");
        log.close().await.expect("close");

        let log = open(&dir, config, 0).await;
        assert_eq!(log.log_end_offset(), 21);
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), concat(&expected));
        log.truncate_to(0).await.expect("truncate all");
        assert_eq!(log.log_end_offset(), 0);
        assert!(log.read(0, 100).await.expect("read").is_empty());
    });
}

#[test]
fn roll_by_time_and_timestamp_lookups() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            segment_ms: 1000,
            ..small_config()
        };
        let log = open(&dir, config, 1 << 20).await;
        append(&log, batch(1, 10, 5_000, 0));
        append(&log, batch(1, 10, 5_500, 0));
        log.maybe_roll(5_999).await.expect("roll");
        assert_eq!(log.segment_count(), 1);
        log.maybe_roll(6_000).await.expect("roll");
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);
        append(&log, batch(3, 10, 7_000, 0));
        append(&log, batch(1, 10, 6_000, 0));
        log.wait_durable(6).await.expect("durable");
        assert_eq!(log.max_timestamp(), Some((7_000, 4)));
        assert_eq!(
            log.offset_for_timestamp(5_200).await.expect("ts"),
            Some((1, 5_500))
        );
        assert_eq!(
            log.offset_for_timestamp(6_500).await.expect("ts"),
            Some((2, 7_000))
        );
        assert_eq!(log.offset_for_timestamp(7_001).await.expect("ts"), None);
    });
}

#[test]
fn write_error_takes_partition_offline_and_durable_data_stays_readable() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, small_config(), 1 << 20).await;
        let first = append(&log, batch(2, 50, 1, 1));
        log.wait_durable(2).await.expect("durable");
        super::segment::fault::fail_writes(true);
        let info = log
            .append(batch(1, 50, 2, 2), LEADER_EPOCH)
            .expect("queued");
        let waited = log.wait_durable(info.last_offset + 1).await;
        super::segment::fault::fail_writes(false);
        assert!(
            matches!(waited, Err(StorageError::Offline { .. })),
            "{waited:?}"
        );
        assert!(log.is_offline());
        assert_eq!(log.durable_end_offset(), 2);
        assert!(matches!(
            log.append(batch(1, 5, 3, 3), LEADER_EPOCH),
            Err(StorageError::Offline { .. })
        ));
        // No retry: the failed flush is not attempted again.
        let commits = log.group_commit_count();
        glommio::timer::sleep(Duration::from_millis(5)).await;
        assert_eq!(log.group_commit_count(), commits);
        let read = log.read(0, u32::MAX).await.expect("reads still served");
        assert_eq!(concat(&read), first.to_vec());
        assert!(log.close().await.is_err());
        drop(log);

        let log = open(&dir, small_config(), 0).await;
        assert_eq!(
            log.log_end_offset(),
            2,
            "the unacknowledged batch was never written"
        );
        let read = log.read(0, u32::MAX).await.expect("read");
        assert_eq!(concat(&read), first.to_vec());
    });
}

#[test]
fn oversized_and_malformed_batches_are_rejected() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let log = open(&dir, small_config(), 0).await;
        let too_large = batch(1, 20_000, 0, 0);
        assert!(matches!(
            log.append(too_large, 0),
            Err(StorageError::BatchTooLarge { .. })
        ));
        let mut trailing = batch(1, 10, 0, 0);
        trailing.extend_from_slice(&[0u8; 3]);
        assert!(matches!(
            log.append(trailing, 0),
            Err(StorageError::BatchLengthMismatch { .. })
        ));
        let short = BytesMut::from(&batch(1, 10, 0, 0)[..30]);
        assert!(matches!(
            log.append(short, 0),
            Err(StorageError::InvalidBatch(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
    });
}

/// Environment variable that turns `kill_minus_nine_child` into the crashing producer.
const CRASH_CHILD_DIR_ENV: &str = "SLUICE_STORAGE_CRASH_CHILD_DIR";
/// Acknowledged batches the parent waits for before it kills the child.
const CRASH_ACKS_BEFORE_KILL: i64 = 150;

/// The child half of `acknowledged_batches_survive_kill_minus_nine`: appends numbered batches
/// forever, printing each acknowledged end offset. Does nothing when run as a normal test.
#[test]
fn kill_minus_nine_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR_ENV) else {
        return;
    };
    run(async move {
        let log = open(Path::new(&dir), small_config(), 1 << 20).await;
        let mut in_flight = Vec::new();
        for sequence in 0i64.. {
            let info = log
                .append(batch(2, 200, sequence, sequence as u8), LEADER_EPOCH)
                .expect("append");
            let log = log.clone();
            in_flight.push(glommio::spawn_local(async move {
                log.wait_durable(info.last_offset + 1)
                    .await
                    .expect("durable");
                println!("acked {}", info.last_offset + 1);
            }));
            if in_flight.len() >= 8 {
                for waiter in in_flight.drain(..) {
                    waiter.await;
                }
            }
        }
    });
}

#[test]
fn acknowledged_batches_survive_kill_minus_nine() {
    use std::io::BufRead;
    let (_temp, dir) = partition_dir();
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "storage::tests::kill_minus_nine_child",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DIR_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut acked = 0i64;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(end) = line.strip_prefix("acked ") {
            acked = acked.max(end.trim().parse().expect("offset"));
        }
        if acked >= 2 * CRASH_ACKS_BEFORE_KILL || std::time::Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        acked >= 2 * CRASH_ACKS_BEFORE_KILL,
        "child acknowledged only {acked}"
    );
    run(async move {
        let log = open(&dir, small_config(), 0).await;
        assert!(
            log.log_end_offset() >= acked,
            "leo={} acked={acked}",
            log.log_end_offset()
        );
        let read = log.read(0, u32::MAX).await.expect("read");
        let all = headers(&read);
        for (sequence, header) in all.iter().enumerate() {
            let expected = stored(
                batch(2, 200, sequence as i64, sequence as u8),
                2 * sequence as i64,
            );
            let at = 2 * sequence as i64;
            let one = log.read(at, 1).await.expect("read");
            assert_eq!(concat(&one), expected.to_vec(), "batch {sequence}");
            assert_eq!(header.base_offset, at);
        }
    });
}

/// Sustained appends from many tasks keep the flush pipeline full (writes overlapping earlier
/// fdatasyncs, several syncs in flight) while segments roll and retention and index
/// persistence take the disk lock in between. Every acknowledged batch must be readable in
/// order while running and after a reopen, and durability must be published in offset order.
#[test]
fn pipelined_flushes_under_load_with_retention_keep_every_acked_batch() {
    let (_temp, dir) = partition_dir();
    run(async move {
        let config = LogConfig {
            segment_bytes: 64 << 10,
            preallocate_bytes: 16 << 10,
            retention_bytes: -1,
            ..small_config()
        };
        let log = open(&dir, config.clone(), 4 << 20).await;
        let acked: Rc<std::cell::RefCell<Vec<(i64, Bytes)>>> = Rc::default();
        let highest_published = Rc::new(std::cell::Cell::new(0i64));
        let producers: Vec<_> = (0..8u8)
            .map(|producer| {
                let log = log.clone();
                let acked = acked.clone();
                let highest_published = highest_published.clone();
                glommio::spawn_local(async move {
                    // Appends keep coming while earlier ones are being written and synced.
                    let mut waits = Vec::new();
                    for i in 0..150u32 {
                        let bytes = batch(1 + (i % 3) as usize, 200, i64::from(i), producer);
                        let info = log.append(bytes.clone(), LEADER_EPOCH).expect("append");
                        let log = log.clone();
                        let acked = acked.clone();
                        let highest_published = highest_published.clone();
                        waits.push(glommio::spawn_local(async move {
                            log.wait_durable(info.last_offset + 1)
                                .await
                                .expect("durable");
                            // Published in offset order: the durable end offset covers every
                            // acknowledged end and never moves backwards.
                            let durable_end_offset = log.durable_end_offset();
                            assert!(durable_end_offset > info.last_offset);
                            assert!(durable_end_offset >= highest_published.get());
                            highest_published.set(durable_end_offset);
                            acked
                                .borrow_mut()
                                .push((info.base_offset, stored(bytes, info.base_offset)));
                        }));
                        glommio::timer::sleep(Duration::from_micros(200)).await;
                    }
                    for wait in waits {
                        wait.await;
                    }
                })
            })
            .collect();
        // Competes for the disk lock while producers run.
        let maintenance = {
            let log = log.clone();
            glommio::spawn_local(async move {
                for round in 0..40 {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                    if round == 20 {
                        log.set_config(LogConfig {
                            retention_bytes: 256 << 10,
                            ..log.config()
                        });
                    }
                    log.enforce_retention(i64::MAX / 2)
                        .await
                        .expect("retention");
                    log.maybe_roll(0).await.expect("index persistence");
                }
            })
        };
        for producer in producers {
            producer.await;
        }
        maintenance.await;
        let mut acked = acked.take();
        acked.sort_by_key(|(base_offset, _)| *base_offset);
        assert_eq!(log.durable_end_offset(), log.log_end_offset());
        assert!(log.group_commit_count() > 1);
        let check = |log: Rc<PartitionLog>, acked: Vec<(i64, Bytes)>| async move {
            let start = log.log_start_offset();
            let kept: Vec<Bytes> = acked
                .into_iter()
                .filter(|(base_offset, _)| *base_offset >= start)
                .map(|(_, bytes)| bytes)
                .collect();
            assert!(!kept.is_empty());
            let mut read = Vec::new();
            let mut offset = start;
            while offset < log.durable_end_offset() {
                let chunk = log.read(offset, 1 << 20).await.expect("read");
                let last = headers(&chunk).last().expect("a batch").last_offset();
                read.extend(chunk);
                offset = last + 1;
            }
            assert_eq!(concat(&read), concat(&kept));
        };
        check(log.clone(), acked.clone()).await;
        // Every rolled segment was finalized (in tasks beside the pipeline) by the time the
        // flusher went idle: trimmed to its data, indexes on disk.
        wait_flusher_idle(&log).await;
        let segments: Vec<Rc<Segment>> = log.segments.borrow().clone();
        assert!(segments.len() > 2, "{} segments", segments.len());
        for segment in &segments[..segments.len() - 1] {
            assert_eq!(segment.state(), SegmentState::Finalized);
            let name = segment_file_name(segment.base_offset(), "log");
            let length = std::fs::metadata(dir.join(name)).expect("segment").len();
            assert_eq!(length, segment.size_bytes());
            let index = segment_file_name(segment.base_offset(), "index");
            assert!(dir.join(index).exists());
        }
        let end = log.log_end_offset();
        log.close().await.expect("close");
        let log = open(&dir, config, 4 << 20).await;
        assert_eq!(log.log_end_offset(), end);
        check(log, acked).await;
    });
}
