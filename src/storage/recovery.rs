//! Open-time recovery of a partition directory, and the index rescans truncation needs.
//!
//! For every segment (oldest first): load `.index`/`.timeindex` (missing or malformed ones are
//! rebuilt from offset 0), verify that the last offset entry points at the batch it names,
//! and scan from there to the end of the file validating each batch (length, magic, CRC32C,
//! offset continuity). For closed segments the scan covers at most one index interval.
//! - Last segment: everything after the last valid batch (preallocated zeros, or a torn or
//!   corrupt tail) is truncated and the truncation fdatasynced, so stale bytes can never be
//!   read back as batches; a non-zero tail is logged as a warning with what was dropped.
//! - Earlier segments were fdatasynced before any later segment got data, so they must end
//!   exactly where the next segment begins; a preallocated zero tail is trimmed, anything else
//!   is `Corrupt` (fail-stop: acknowledged data is missing, an operator must look).
//!
//! Directory listing and `stat` run off the shard (`blocking.rs`): a partition created or
//! opened while the shard serves traffic never stalls it.

use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::index::{
    decode_offsets, decode_times, BatchPlacement, OffsetEntry, SegmentIndex, TimeEntry,
    OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES,
};
use super::scanner::{peek_span, BatchScanner, ScanStop};
use super::segment::{segment_file_name, RecoveredState, Segment, SegmentState};
use super::{align_down, io_error, wall_clock_ms, LogConfig, StorageError};
use crate::protocol::batch::BATCH_HEADER_BYTES;

/// Bytes after the valid end inspected to tell a zero (preallocated) tail from a torn one.
const TAIL_INSPECT_BYTES: u64 = 4096;
/// Segments per partition directory: bounds open file descriptors and start-up work.
pub(crate) const SEGMENTS_MAX: usize = 100_000;

/// How much to check at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// After a crash: every batch past the last index entry is validated (CRC included).
    Full,
    /// After a clean shutdown (the broker's marker says every log was closed: flushed,
    /// fdatasynced, indexes written, the last segment trimmed to its data): the tail past the
    /// last index entry is walked by header only, without CRC.
    AfterCleanShutdown,
}

/// Recovers every segment of `dir`, oldest first. Empty if the directory holds none.
pub(crate) async fn recover_segments(
    dir: &Path,
    config: &LogConfig,
    recovery: Recovery,
) -> Result<Vec<Rc<Segment>>, StorageError> {
    let owned = dir.to_path_buf();
    let bases = super::blocking::run("list partition dir", dir, move || {
        Ok(list_segment_bases(&owned))
    })
    .await??;
    let mut segments: Vec<Rc<Segment>> = Vec::with_capacity(bases.len());
    for (slot, base_offset) in bases.iter().enumerate() {
        let next_base_offset = bases.get(slot + 1).copied();
        let segment =
            recover_segment(dir, *base_offset, next_base_offset, config, recovery).await?;
        if let Some(previous) = segments.last() {
            if previous.end_offset() != *base_offset {
                return Err(StorageError::Corrupt {
                    path: segment.log_path().to_path_buf(),
                    position: 0,
                    detail: format!(
                        "offset gap: previous segment ends at {}, this one starts at {base_offset}",
                        previous.end_offset()
                    ),
                });
            }
        }
        segments.push(Rc::new(segment));
    }
    Ok(segments)
}

/// The replication layer's `raft-state` files (`replication::replica_state`), named here
/// because storage sits below that layer.
fn is_replica_state_file(name: &std::ffi::OsStr) -> bool {
    name == "raft-state" || name == "raft-state.tmp"
}

/// Base offsets of the `.log` files in `dir`, ascending. Index files without a log (left by a
/// crash during retention) are removed.
fn list_segment_bases(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let io = |op, source| StorageError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let mut bases = Vec::new();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|error| io("list partition dir", error))? {
        let entry = entry.map_err(|error| io("list partition dir", error))?;
        let name = entry.file_name();
        if super::partition_metadata::is_own_file(&name)
            || super::epoch_checkpoint::is_own_file(&name)
            || super::log_start_checkpoint::is_own_file(&name)
            || is_replica_state_file(&name)
        {
            continue;
        }
        let Some((stem, extension)) = name.to_str().and_then(|name| name.split_once('.')) else {
            continue;
        };
        let base_offset = match stem.parse::<i64>() {
            Ok(base_offset) if stem.len() == 20 && base_offset >= 0 => base_offset,
            _ => {
                log::warn!("ignoring unexpected file {:?} in {}", name, dir.display());
                continue;
            }
        };
        match extension {
            "log" => bases.push(base_offset),
            "index" | "timeindex" => orphans.push((base_offset, entry.path())),
            _ => log::warn!("ignoring unexpected file {:?} in {}", name, dir.display()),
        }
    }
    bases.sort_unstable();
    if bases.len() > SEGMENTS_MAX {
        return Err(StorageError::Corrupt {
            path: dir.to_path_buf(),
            position: 0,
            detail: format!("{} segments, more than {SEGMENTS_MAX}", bases.len()),
        });
    }
    for (base_offset, path) in orphans {
        if bases.binary_search(&base_offset).is_err() {
            log::warn!("removing orphan index file {}", path.display());
            std::fs::remove_file(&path).map_err(|error| io("remove orphan index", error))?;
        }
    }
    Ok(bases)
}

/// Reads a whole index file; None if it does not exist.
async fn read_index_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let file = match OpenOptions::new().read(true).dma_open(path).await {
        Ok(file) => file,
        Err(error) => {
            let error = std::io::Error::from(error);
            if error.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(StorageError::Io {
                op: "open index",
                path: path.to_path_buf(),
                source: error,
            });
        }
    };
    let length = file
        .file_size()
        .await
        .map_err(|error| io_error("stat index", path, error))?;
    let bytes = match length {
        0 => Vec::new(),
        _ => {
            let read = file
                .read_at(0, length as usize)
                .await
                .map_err(|error| io_error("read index", path, error))?;
            read.to_vec()
        }
    };
    file.close()
        .await
        .map_err(|error| io_error("close index", path, error))?;
    Ok(Some(bytes))
}

/// Loaded index files and whether both were present and wholly valid.
struct LoadedIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    valid: bool,
}

async fn load_index(dir: &Path, base_offset: i64) -> Result<LoadedIndex, StorageError> {
    let offset_bytes = read_index_file(&dir.join(segment_file_name(base_offset, "index"))).await?;
    let time_bytes =
        read_index_file(&dir.join(segment_file_name(base_offset, "timeindex"))).await?;
    let (Some(offset_bytes), Some(time_bytes)) = (offset_bytes, time_bytes) else {
        return Ok(LoadedIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            valid: false,
        });
    };
    let (offsets, offsets_whole) = decode_offsets(&offset_bytes);
    let (times, times_whole) = decode_times(&time_bytes);
    Ok(LoadedIndex {
        offsets,
        times,
        valid: offsets_whole && times_whole,
    })
}

/// Where a scan starts: the batch named by an index entry, with the entries kept before it.
struct ScanStart {
    keep_offsets: usize,
    keep_times: usize,
    position: u64,
    offset: i64,
}

/// The last offset entry whose position holds the batch it names; else the segment start.
async fn choose_scan_start(
    file: &DmaFile,
    log_path: &Path,
    base_offset: i64,
    loaded: &LoadedIndex,
    file_size: u64,
) -> Result<ScanStart, StorageError> {
    let from_start = ScanStart {
        keep_offsets: 0,
        keep_times: 0,
        position: 0,
        offset: base_offset,
    };
    if !loaded.valid {
        return Ok(from_start);
    }
    let Some((slot, entry)) = loaded.offsets.iter().enumerate().next_back() else {
        return Ok(from_start);
    };
    let position = u64::from(entry.position);
    if position + BATCH_HEADER_BYTES as u64 > file_size {
        return Ok(from_start);
    }
    let head = file
        .read_at(position, BATCH_HEADER_BYTES)
        .await
        .map_err(|error| io_error("read segment", log_path, error))?;
    let offset = base_offset + i64::from(entry.relative_offset);
    match peek_span(&head) {
        Some(span) if span.base_offset == offset => Ok(ScanStart {
            keep_offsets: slot,
            keep_times: loaded
                .times
                .partition_point(|time| time.relative_offset < entry.relative_offset),
            position,
            offset,
        }),
        _ => Ok(from_start),
    }
}

/// Result of scanning a segment's batches from a start point.
struct ScanResult {
    index: SegmentIndex,
    valid_end: u64,
    end_offset: i64,
    stop: ScanStop,
}

/// The file region a scan covers.
struct ScanRegion<'a> {
    file: &'a DmaFile,
    log_path: &'a Path,
    base_offset: i64,
    end: u64,
}

/// Scans and validates batches from `start`, extending `index`. With `stop_before_offset`,
/// stops at the first batch whose last offset reaches it (truncation).
async fn scan_segment(
    region: &ScanRegion<'_>,
    start: &ScanStart,
    mut index: SegmentIndex,
    stop_before_offset: Option<i64>,
    config: &LogConfig,
    recovery: Recovery,
) -> Result<ScanResult, StorageError> {
    let base_offset = region.base_offset;
    let mut scanner = BatchScanner::new(region.file, region.log_path, start.position, region.end);
    let mut valid_end = start.position;
    let mut expected_offset = start.offset;
    let verify_crc = stop_before_offset.is_none() && recovery == Recovery::Full;
    let stop = loop {
        let (position, header) = match scanner.next_batch(verify_crc).await? {
            Ok(batch) => batch,
            Err(stop) => break stop,
        };
        if stop_before_offset.is_some_and(|offset| header.last_offset() >= offset) {
            break ScanStop::End;
        }
        let relative_last = header.last_offset() - base_offset;
        if header.base_offset != expected_offset || relative_last > i64::from(u32::MAX) {
            let detail = format!(
                "batch offset {} where {expected_offset} was expected",
                header.base_offset
            );
            break ScanStop::Invalid { position, detail };
        }
        index.observe(
            BatchPlacement {
                relative_base_offset: (header.base_offset - base_offset) as u32,
                relative_last_offset: relative_last as u32,
                position: position as u32,
                size_bytes: header.size_bytes() as u32,
                max_timestamp: header.max_timestamp,
            },
            config.index_interval_bytes,
        );
        valid_end = position + header.size_bytes() as u64;
        expected_offset = header.last_offset() + 1;
    };
    Ok(ScanResult {
        index,
        valid_end,
        end_offset: expected_offset,
        stop,
    })
}

async fn recover_segment(
    dir: &Path,
    base_offset: i64,
    next_base_offset: Option<i64>,
    config: &LogConfig,
    recovery: Recovery,
) -> Result<Segment, StorageError> {
    let log_path = dir.join(segment_file_name(base_offset, "log"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&log_path)
        .await
        .map_err(|error| io_error("open segment", &log_path, error))?;
    let file_size = file
        .file_size()
        .await
        .map_err(|error| io_error("stat segment", &log_path, error))?;
    let loaded = load_index(dir, base_offset).await?;
    let start = choose_scan_start(&file, &log_path, base_offset, &loaded, file_size).await?;
    let index_reused = loaded.valid && start.keep_offsets + 1 == loaded.offsets.len();
    let index = SegmentIndex::resume(
        loaded.offsets.clone(),
        loaded.times.clone(),
        start.keep_offsets,
        start.keep_times,
    );
    let region = ScanRegion {
        file: &file,
        log_path: &log_path,
        base_offset,
        end: file_size,
    };
    let mut scan = scan_segment(&region, &start, index, None, config, recovery).await?;
    let relative_end = (scan.end_offset - base_offset) as u64;
    let time_index_overshoots = scan
        .index
        .times()
        .last()
        .is_some_and(|entry| u64::from(entry.relative_offset) >= relative_end);
    if time_index_overshoots && start.position > 0 {
        log::warn!(
            "{}: time index names lost offsets, rebuilding",
            log_path.display()
        );
        let from_start = ScanStart {
            keep_offsets: 0,
            keep_times: 0,
            position: 0,
            offset: base_offset,
        };
        scan = scan_segment(
            &region,
            &from_start,
            SegmentIndex::new(),
            None,
            config,
            Recovery::Full,
        )
        .await?;
    }
    let is_last = next_base_offset.is_none();
    if let Some(next_base_offset) = next_base_offset {
        if scan.end_offset != next_base_offset {
            return Err(StorageError::Corrupt {
                path: log_path,
                position: scan.valid_end,
                detail: format!(
                    "segment ends at offset {} but the next starts at {next_base_offset}: {:?}",
                    scan.end_offset, scan.stop
                ),
            });
        }
    }
    if scan.valid_end < file_size {
        report_dropped_tail(&file, &log_path, &scan, file_size, is_last).await?;
        file.truncate(scan.valid_end)
            .await
            .map_err(|error| io_error("truncate segment", &log_path, error))?;
        file.fdatasync()
            .await
            .map_err(|error| io_error("fdatasync segment", &log_path, error))?;
    }
    let tail_page = read_tail_page(&file, &log_path, scan.valid_end).await?;
    let mut index = scan.index;
    let times_before_seal = index.times().len();
    if !is_last {
        index.seal();
    }
    let unchanged = index_reused
        && index.offsets() == loaded.offsets.as_slice()
        && index.times() == loaded.times.as_slice()
        && index.times().len() == times_before_seal;
    // The file's mtime stands in for segments without batch timestamps.
    let stat_path = log_path.clone();
    let modified = super::blocking::run("stat segment", &log_path, move || {
        std::fs::metadata(&stat_path).and_then(|metadata| metadata.modified())
    })
    .await
    .ok();
    let last_modified_ms = modified
        .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(wall_clock_ms, |elapsed| elapsed.as_millis() as i64);
    let segment = Segment::recovered(
        dir,
        base_offset,
        RecoveredState {
            file: Rc::new(file),
            size_bytes: scan.valid_end,
            end_offset: scan.end_offset,
            index,
            tail_page,
            last_modified_ms,
            file_size_bytes: scan.valid_end,
        },
    );
    if unchanged {
        segment.set_persisted_index_bytes(
            (loaded.offsets.len() * OFFSET_INDEX_ENTRY_BYTES) as u64,
            (loaded.times.len() * TIME_INDEX_ENTRY_BYTES) as u64,
        );
    } else {
        log::info!("rebuilt index of {}", log_path.display());
        segment.persist_indexes().await?;
    }
    if !is_last {
        segment.set_state(SegmentState::Finalized);
    }
    Ok(segment)
}

/// Logs what lies after the valid end before it is truncated: quietly for a zero-filled
/// (preallocated) tail, as a warning for a torn or corrupt one.
async fn report_dropped_tail(
    file: &DmaFile,
    log_path: &Path,
    scan: &ScanResult,
    file_size: u64,
    is_last: bool,
) -> Result<(), StorageError> {
    let inspect = (file_size - scan.valid_end).min(TAIL_INSPECT_BYTES);
    let bytes = file
        .read_at(scan.valid_end, inspect as usize)
        .await
        .map_err(|error| io_error("read segment", log_path, error))?;
    let dropped = file_size - scan.valid_end;
    if bytes.iter().all(|byte| *byte == 0) {
        log::debug!(
            "{}: trimming {dropped} preallocated bytes after offset {} (position {})",
            log_path.display(),
            scan.end_offset,
            scan.valid_end
        );
    } else {
        log::warn!(
            "{}: truncating torn or corrupt tail at position {} (next offset {}): dropping up \
             to {dropped} bytes ({:?}){}",
            log_path.display(),
            scan.valid_end,
            scan.end_offset,
            scan.stop,
            if is_last { "" } else { " in a closed segment" }
        );
    }
    Ok(())
}

async fn read_tail_page(
    file: &DmaFile,
    log_path: &Path,
    valid_end: u64,
) -> Result<Vec<u8>, StorageError> {
    let page_start = align_down(valid_end);
    if page_start == valid_end {
        return Ok(Vec::new());
    }
    let bytes = file
        .read_at(page_start, (valid_end - page_start) as usize)
        .await
        .map_err(|error| io_error("read segment", log_path, error))?;
    if (bytes.len() as u64) < valid_end - page_start {
        return Err(StorageError::Corrupt {
            path: log_path.to_path_buf(),
            position: page_start,
            detail: format!("short read of the tail page: {} bytes", bytes.len()),
        });
    }
    Ok(bytes.to_vec())
}

/// Where a truncation to `offset` cuts `segment`: the position and base offset of the batch
/// containing `offset` (or of the first batch after it), with the index of what stays.
pub(crate) struct TruncationPoint {
    pub position: u64,
    pub end_offset: i64,
    pub index: SegmentIndex,
}

/// Finds the truncation point of durable `segment` for `offset` by rescanning from the index
/// entry before it, rebuilding the index of the remaining batches.
pub(crate) async fn find_truncation_point(
    segment: &Segment,
    offset: i64,
    config: &LogConfig,
) -> Result<TruncationPoint, StorageError> {
    let base_offset = segment.base_offset();
    assert!(
        offset >= base_offset && offset < segment.end_offset(),
        "offset={offset} base={base_offset} end={}",
        segment.end_offset()
    );
    let start = {
        let index = segment.index();
        let entry = index.lookup(segment.relative(offset));
        ScanStart {
            keep_offsets: index.first_entry_at_or_after(entry.position),
            keep_times: index.first_time_entry_at_or_after(entry.relative_offset),
            position: u64::from(entry.position),
            offset: base_offset + i64::from(entry.relative_offset),
        }
    };
    let resumed = {
        let index = segment.index();
        SegmentIndex::resume(
            index.offsets().to_vec(),
            index.times().to_vec(),
            start.keep_offsets,
            start.keep_times,
        )
    };
    let file = segment.file().await?;
    let end = segment.durable_bytes();
    let log_path = segment.log_path();
    let region = ScanRegion {
        file: &file,
        log_path,
        base_offset,
        end,
    };
    let scan = scan_segment(
        &region,
        &start,
        resumed,
        Some(offset),
        config,
        Recovery::Full,
    )
    .await?;
    if let ScanStop::Invalid { position, detail } = scan.stop {
        return Err(segment.corrupt(position, detail));
    }
    Ok(TruncationPoint {
        position: scan.valid_end,
        end_offset: scan.end_offset,
        index: scan.index,
    })
}
