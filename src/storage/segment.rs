//! One segment of a partition log: the `.log` file (O_DIRECT `DmaFile`), its in-memory
//! indexes, and the write-behind tail page.
//!
//! Layout: `<base offset, 20 digits>.log`, `.index`, `.timeindex`, as in Kafka. The `.log` file
//! is preallocated ahead in steps that double from 1 MiB up to `preallocate.bytes`, so it is
//! usually longer than its data;
//! the zero-filled tail reads as "end of log" (batch length 0 fails validation).
//!
//! Durability: `write` copies batches once into a 4 KiB-aligned DMA buffer that starts with the
//! partially filled last page (kept in memory as `tail_page`, rewritten with identical leading
//! bytes, so a torn rewrite cannot damage acknowledged bytes) and writes it; `written_bytes` and
//! `tail_page` advance when the write completes. `sync` fdatasyncs and only then advances
//! `durable_bytes` to what was written before it started. The log overlaps the next write with
//! the previous sync: the rewrite of the shared tail page carries identical leading bytes, so
//! whichever version of that page is on disk after a crash holds every synced byte. Writes of one
//! segment never overlap each other (O_DIRECT gives no order between them). A segment file is
//! created and its directory fsynced before its first data write. Sealed segments are trimmed to
//! their exact size once durable, so only the last segment of a log can have a preallocated tail.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{CloseResult, DmaFile, OpenOptions};

use super::index::{BatchPlacement, SegmentIndex, NO_TIMESTAMP};
use super::{align_down, align_up, io_error, LogConfig, StorageError};
use crate::protocol::batch::BatchHeader;

/// The first preallocation step of a segment (later ones double, up to `preallocate.bytes`).
const PREALLOCATE_FIRST_BYTES: u64 = 1 << 20;

pub(crate) fn segment_file_name(base_offset: i64, extension: &str) -> String {
    assert!(base_offset >= 0, "base_offset={base_offset}");
    format!("{base_offset:020}.{extension}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentState {
    /// Receives appends.
    Active,
    /// Rolled: no more appends; its data may still be in flight.
    Sealed,
    /// Sealed, durable and published; its indexes are being written and its file trimmed.
    Finalizing,
    /// Sealed, durable, indexes written, file trimmed: may be deleted by retention.
    Finalized,
}

/// What recovery learned about a segment file.
pub(crate) struct RecoveredState {
    pub file: Rc<DmaFile>,
    pub size_bytes: u64,
    pub end_offset: i64,
    pub index: SegmentIndex,
    pub tail_page: Vec<u8>,
    pub last_modified_ms: i64,
    pub file_size_bytes: u64,
}

pub(crate) struct Segment {
    base_offset: i64,
    dir: PathBuf,
    log_path: PathBuf,
    file: RefCell<Option<Rc<DmaFile>>>,
    /// The same file opened a second time with O_DSYNC, for writes that are durable when they
    /// complete (`write(.., dsync: true)`); opened on first use, closed with `file`.
    dsync_file: RefCell<Option<Rc<DmaFile>>>,
    /// Bytes appended, durable or not: the position of the next batch.
    size_bytes: Cell<u64>,
    /// Next offset after the last appended batch.
    end_offset: Cell<i64>,
    /// Bytes whose write completed (durable or not): where the next write starts.
    written_bytes: Cell<u64>,
    durable_bytes: Cell<u64>,
    durable_end_offset: Cell<i64>,
    /// (largest batch max timestamp, last offset of that batch) over durable batches.
    durable_max_timestamp: Cell<(i64, i64)>,
    preallocated_bytes: Cell<u64>,
    /// Blocks below this file offset have been written (data or zeros), so writing there
    /// again converts no unwritten extent (`write_zeros`).
    zeroed_until: Cell<u64>,
    /// A zero write in flight over [start, end).
    zeroing: Cell<Option<(u64, u64)>>,
    /// Bytes [align_down(written_bytes), written_bytes): rewritten by the next write.
    tail_page: RefCell<Vec<u8>>,
    index: RefCell<SegmentIndex>,
    persisted_offset_index_bytes: Cell<u64>,
    persisted_time_index_bytes: Cell<u64>,
    created_ms: i64,
    rolling_timestamp_ms: Cell<Option<i64>>,
    last_modified_ms: Cell<i64>,
    state: Cell<SegmentState>,
}

impl Segment {
    /// An empty segment; its file is created by the first flush that writes to it.
    pub fn new(dir: &Path, base_offset: i64, now_ms: i64) -> Segment {
        Segment::build(
            dir,
            base_offset,
            None,
            0,
            base_offset,
            SegmentIndex::new(),
            now_ms,
        )
    }

    pub fn recovered(dir: &Path, base_offset: i64, state: RecoveredState) -> Segment {
        let segment = Segment::build(
            dir,
            base_offset,
            Some(state.file),
            state.size_bytes,
            state.end_offset,
            state.index,
            state.last_modified_ms,
        );
        assert_eq!(
            state.tail_page.len() as u64,
            state.size_bytes - align_down(state.size_bytes),
            "base={base_offset}"
        );
        *segment.tail_page.borrow_mut() = state.tail_page;
        segment.preallocated_bytes.set(state.file_size_bytes);
        segment
    }

    fn build(
        dir: &Path,
        base_offset: i64,
        file: Option<Rc<DmaFile>>,
        size_bytes: u64,
        end_offset: i64,
        index: SegmentIndex,
        now_ms: i64,
    ) -> Segment {
        assert!(
            end_offset >= base_offset,
            "end={end_offset} base={base_offset}"
        );
        let (max_timestamp, relative) = index.max_timestamp();
        let offset_of_max = if max_timestamp == NO_TIMESTAMP {
            -1
        } else {
            base_offset + i64::from(relative)
        };
        // The first time entry holds the first batch's max timestamp (the first batch always
        // gets index entries): Kafka's rolling timestamp.
        let first_timestamp = index.times().first().map(|entry| entry.timestamp);
        let rolling_timestamp = first_timestamp.filter(|ts| *ts >= 0 && size_bytes > 0);
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            log_path: dir.join(segment_file_name(base_offset, "log")),
            file: RefCell::new(file),
            dsync_file: RefCell::new(None),
            size_bytes: Cell::new(size_bytes),
            end_offset: Cell::new(end_offset),
            written_bytes: Cell::new(size_bytes),
            durable_bytes: Cell::new(size_bytes),
            durable_end_offset: Cell::new(end_offset),
            durable_max_timestamp: Cell::new((max_timestamp, offset_of_max)),
            preallocated_bytes: Cell::new(0),
            zeroed_until: Cell::new(align_up(size_bytes)),
            zeroing: Cell::new(None),
            tail_page: RefCell::new(Vec::new()),
            index: RefCell::new(index),
            persisted_offset_index_bytes: Cell::new(0),
            persisted_time_index_bytes: Cell::new(0),
            created_ms: now_ms,
            rolling_timestamp_ms: Cell::new(rolling_timestamp),
            last_modified_ms: Cell::new(now_ms),
            state: Cell::new(SegmentState::Active),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn end_offset(&self) -> i64 {
        self.end_offset.get()
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.get()
    }
    pub fn durable_bytes(&self) -> u64 {
        self.durable_bytes.get()
    }
    pub fn durable_end_offset(&self) -> i64 {
        self.durable_end_offset.get()
    }
    pub fn durable_max_timestamp(&self) -> (i64, i64) {
        self.durable_max_timestamp.get()
    }
    pub fn state(&self) -> SegmentState {
        self.state.get()
    }
    pub fn set_state(&self, state: SegmentState) {
        self.state.set(state);
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn index(&self) -> std::cell::Ref<'_, SegmentIndex> {
        self.index.borrow()
    }
    pub fn has_file(&self) -> bool {
        self.file.borrow().is_some()
    }

    /// Timestamp the time-based roll counts from: the first batch's max timestamp (Kafka),
    /// or the segment's creation time when that batch had none.
    pub fn rolling_timestamp_ms(&self) -> i64 {
        self.rolling_timestamp_ms.get().unwrap_or(self.created_ms)
    }

    /// Timestamp retention counts from: the largest batch timestamp, or the last append time
    /// when no batch carried one (Kafka uses the file's mtime there).
    pub fn retention_timestamp_ms(&self) -> i64 {
        let (max_timestamp, _) = self.durable_max_timestamp.get();
        if max_timestamp > 0 {
            max_timestamp
        } else {
            self.last_modified_ms.get()
        }
    }

    /// Relative offset of `offset` in this segment.
    pub fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset={offset} base={}",
            self.base_offset
        );
        relative as u32
    }

    /// Whether a batch of `batch_bytes` ending at `last_offset` may still go in this segment.
    pub fn can_hold(&self, batch_bytes: u64, last_offset: i64, config: &LogConfig) -> bool {
        if self.size_bytes.get() == 0 {
            return true;
        }
        self.state.get() == SegmentState::Active
            && self.size_bytes.get() + batch_bytes <= config.segment_bytes
            && last_offset - self.base_offset <= i64::from(u32::MAX)
            && !self.index.borrow().is_full()
    }

    /// Records an appended batch in memory; returns its position in the file.
    pub fn record_append(&self, header: &BatchHeader, config: &LogConfig, now_ms: i64) -> u64 {
        assert_eq!(
            self.state.get(),
            SegmentState::Active,
            "base={}",
            self.base_offset
        );
        assert_eq!(
            header.base_offset,
            self.end_offset.get(),
            "segment base={}",
            self.base_offset
        );
        let position = self.size_bytes.get();
        let size_bytes = header.size_bytes() as u64;
        self.index.borrow_mut().observe(
            BatchPlacement {
                relative_base_offset: self.relative(header.base_offset),
                relative_last_offset: self.relative(header.last_offset()),
                position: position as u32,
                size_bytes: size_bytes as u32,
                max_timestamp: header.max_timestamp,
            },
            config.index_interval_bytes,
        );
        if position == 0 && header.max_timestamp >= 0 {
            self.rolling_timestamp_ms.set(Some(header.max_timestamp));
        }
        self.size_bytes.set(position + size_bytes);
        self.end_offset.set(header.last_offset() + 1);
        self.last_modified_ms.set(now_ms);
        position
    }

    /// Marks batches up to `end_offset` durable (called after a successful write + fdatasync).
    pub fn commit_durable(&self, end_offset: i64, max_timestamp: (i64, i64)) {
        assert!(end_offset <= self.end_offset.get(), "end={end_offset}");
        self.durable_end_offset.set(end_offset);
        if max_timestamp.0 > self.durable_max_timestamp.get().0 {
            self.durable_max_timestamp.set(max_timestamp);
        }
    }

    /// The open file, created (and its directory entry made durable) on first use.
    pub async fn file(&self) -> Result<Rc<DmaFile>, StorageError> {
        if let Some(file) = self.file.borrow().as_ref() {
            return Ok(file.clone());
        }
        super::log::create_partition_dir(&self.dir).await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&self.log_path)
            .await
            .map_err(|error| io_error("create segment", &self.log_path, error))?;
        assert!(
            super::DMA_ALIGNMENT_BYTES % file.alignment() == 0,
            "alignment={}",
            file.alignment()
        );
        sync_directory(&self.dir).await?;
        let file = Rc::new(file);
        *self.file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Writes all of `buffer` at `position`; a short write is an error naming `op`.
    async fn write_whole(
        &self,
        file: &DmaFile,
        buffer: glommio::io::DmaBuffer,
        position: u64,
        op: &'static str,
    ) -> Result<(), StorageError> {
        let length = buffer.len();
        let written = file
            .write_at(buffer, position)
            .await
            .map_err(|error| io_error(op, &self.log_path, error))?;
        if written != length {
            return Err(StorageError::Io {
                op: "short segment write",
                path: self.log_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("{op}: wrote {written} of {length} bytes at {position}"),
                ),
            });
        }
        Ok(())
    }

    /// The file opened with O_DSYNC (after `file`, which creates it).
    async fn dsync_file(&self) -> Result<Rc<DmaFile>, StorageError> {
        if let Some(file) = self.dsync_file.borrow().as_ref() {
            return Ok(file.clone());
        }
        self.file().await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(&self.log_path)
            .await
            .map_err(|error| io_error("open segment (O_DSYNC)", &self.log_path, error))?;
        let file = Rc::new(file);
        *self.dsync_file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    /// Whether the O_DSYNC descriptor is open or opens now. When it cannot be opened (out of
    /// descriptors, say) the caller writes and fdatasyncs as usual instead of failing.
    pub async fn can_write_dsync(&self) -> bool {
        match self.dsync_file().await {
            Ok(_) => true,
            Err(error) => {
                crate::warn_limited!("{error}; writing with fdatasync instead");
                false
            }
        }
    }

    /// Writes `batches` (which start at `written_bytes`) after the tail page; returns the new
    /// `written_bytes`. With `dsync` the write goes through the O_DSYNC descriptor and
    /// everything written is durable when it returns (no `sync` needed); otherwise it is not
    /// synced. Callers never run two writes of a segment at once.
    pub async fn write(
        &self,
        batches: &[Bytes],
        config: &LogConfig,
        dsync: bool,
    ) -> Result<u64, StorageError> {
        #[cfg(test)]
        fault::check(&self.log_path)?;
        let file = self.file().await?;
        let start = self.written_bytes.get();
        let end = start + batches.iter().map(|batch| batch.len() as u64).sum::<u64>();
        assert!(
            end <= self.size_bytes.get(),
            "end={end} size={}",
            self.size_bytes.get()
        );
        self.ensure_preallocated(&file, end, config).await?;
        let page_start = align_down(start);
        let length = (align_up(end) - page_start) as usize;
        let mut buffer = file.alloc_dma_buffer(length);
        let new_tail = {
            let bytes = buffer.as_bytes_mut();
            let tail = self.tail_page.borrow();
            assert_eq!(tail.len() as u64, start - page_start, "start={start}");
            bytes[..tail.len()].copy_from_slice(&tail);
            let mut cursor = tail.len();
            for batch in batches {
                bytes[cursor..cursor + batch.len()].copy_from_slice(batch);
                cursor += batch.len();
            }
            bytes[cursor..].fill(0);
            bytes[(align_down(end) - page_start) as usize..cursor].to_vec()
        };
        let target = if dsync {
            self.dsync_file().await?
        } else {
            file
        };
        self.write_whole(&target, buffer, page_start, "write segment")
            .await?;
        assert_eq!(self.written_bytes.get(), start, "overlapping writes");
        self.written_bytes.set(end);
        *self.tail_page.borrow_mut() = new_tail;
        if dsync && end > self.durable_bytes.get() {
            self.durable_bytes.set(end);
        }
        Ok(end)
    }

    /// fdatasyncs; then the first `written_end` bytes (a value `write` returned before this
    /// call) are durable.
    pub async fn sync(&self, written_end: u64) -> Result<(), StorageError> {
        assert!(
            written_end <= self.written_bytes.get(),
            "end={written_end} written={}",
            self.written_bytes.get()
        );
        let file = self.file().await?;
        file.fdatasync()
            .await
            .map_err(|error| io_error("fdatasync segment", &self.log_path, error))?;
        if written_end > self.durable_bytes.get() {
            self.durable_bytes.set(written_end);
        }
        Ok(())
    }

    /// Whether a data write of `bytes` more at the write head would overlap the zero write in
    /// flight (it must wait for it: O_DIRECT writes have no order between them).
    pub fn zeroing_overlaps(&self, bytes: u64) -> bool {
        let end = align_up(self.written_bytes.get() + bytes);
        matches!(self.zeroing.get(), Some((start, _)) if end > start)
    }

    /// The next range to zero, [start, end): past everything appended, inside the
    /// preallocated part, at most `chunk` long, while the zeroed frontier is less than `ahead`
    /// beyond the write head. None when nothing is due (or a zero write is in flight).
    pub fn next_zero_range(&self, ahead: u64, chunk: u64) -> Option<(u64, u64)> {
        if ahead == 0 || self.zeroing.get().is_some() || self.state.get() != SegmentState::Active {
            return None;
        }
        let start = self.zeroed_until.get().max(align_up(self.size_bytes.get()));
        if start >= self.written_bytes.get() + ahead {
            return None;
        }
        let end = (start + chunk).min(align_down(self.preallocated_bytes.get()));
        (end > start).then_some((start, end))
    }

    /// Marks [start, end) (from `next_zero_range`) as being zeroed: data writes overlapping it
    /// wait (`zeroing_overlaps`) until `write_zeros` over it finishes.
    pub fn claim_zero_range(&self, start: u64, end: u64) {
        assert!(self.zeroing.get().is_none(), "two zero writes");
        self.zeroing.set(Some((start, end)));
    }

    /// Writes zeros over a range claimed with `claim_zero_range`, so later data writes there
    /// are overwrites: on ext4 an fdatasync after a write into preallocated (unwritten) blocks
    /// commits the journal, after an overwrite it only flushes. Not synced: if it is lost in a
    /// crash the blocks are unwritten again, which reads the same (zeros, the end of the log).
    pub async fn write_zeros(&self, start: u64, end: u64) -> Result<(), StorageError> {
        assert_eq!(
            self.zeroing.get(),
            Some((start, end)),
            "zero range not claimed"
        );
        let result = async {
            let file = self.file().await?;
            let length = (end - start) as usize;
            let mut buffer = file.alloc_dma_buffer(length);
            buffer.as_bytes_mut().fill(0);
            self.write_whole(&file, buffer, start, "zero segment").await
        }
        .await;
        self.zeroing.set(None);
        if result.is_ok() && end > self.zeroed_until.get() {
            self.zeroed_until.set(end);
        }
        result
    }

    /// Extends the file with zeroed blocks in large steps so appends don't change metadata.
    async fn ensure_preallocated(
        &self,
        file: &DmaFile,
        end: u64,
        config: &LogConfig,
    ) -> Result<(), StorageError> {
        let preallocated = self.preallocated_bytes.get();
        if end <= preallocated {
            return Ok(());
        }
        // Steps double from `PREALLOCATE_FIRST_BYTES` up to `preallocate.bytes`: a busy segment
        // reaches full steps within a few of them, and an idle partition (a replica holds at
        // least its leader's first entry) costs a megabyte of disk, not a whole step.
        let largest = config.preallocate_bytes.max(1);
        let step = preallocated
            .clamp(PREALLOCATE_FIRST_BYTES.min(largest), largest)
            .min(config.segment_bytes);
        let target = align_up((preallocated + step).min(config.segment_bytes).max(end));
        file.pre_allocate(target, false)
            .await
            .map_err(|error| io_error("preallocate segment", &self.log_path, error))?;
        self.preallocated_bytes.set(target);
        Ok(())
    }

    /// Reads `length` bytes at `position` of durable data into one `Bytes` (one copy out of
    /// the DMA buffer, which cannot leave the shard).
    pub async fn read_bytes(&self, position: u64, length: u64) -> Result<Bytes, StorageError> {
        let durable = self.durable_bytes.get();
        assert!(
            position + length <= durable,
            "pos={position} len={length} durable={durable}"
        );
        let file = self.file().await?;
        let result = file
            .read_at(position, length as usize)
            .await
            .map_err(|error| io_error("read segment", &self.log_path, error))?;
        if (result.len() as u64) < length {
            return Err(self.corrupt(position, format!("short read of {}", result.len())));
        }
        Ok(Bytes::copy_from_slice(&result))
    }

    pub fn corrupt(&self, position: u64, detail: String) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position,
            detail,
        }
    }

    /// Writes the index entries that describe durable data: the time index first and then the
    /// offset index, each fdatasynced, so a persisted offset entry always has its time entries.
    pub async fn persist_indexes(&self) -> Result<(), StorageError> {
        let durable_bytes = self.durable_bytes.get();
        let relative_end = (self.durable_end_offset.get() - self.base_offset) as u64;
        let (times, offsets) = {
            let index = self.index.borrow();
            (
                index.encode_times(relative_end),
                index.encode_offsets(durable_bytes),
            )
        };
        let time_path = self
            .dir
            .join(segment_file_name(self.base_offset, "timeindex"));
        let written = write_index_file(&time_path, &times, self.persisted_time_index_bytes.get());
        self.persisted_time_index_bytes.set(written.await?);
        let offset_path = self.dir.join(segment_file_name(self.base_offset, "index"));
        let written = write_index_file(
            &offset_path,
            &offsets,
            self.persisted_offset_index_bytes.get(),
        );
        self.persisted_offset_index_bytes.set(written.await?);
        Ok(())
    }

    /// Records that the index files on disk already hold these many valid bytes (recovery).
    pub fn set_persisted_index_bytes(&self, offset_index_bytes: u64, time_index_bytes: u64) {
        self.persisted_offset_index_bytes.set(offset_index_bytes);
        self.persisted_time_index_bytes.set(time_index_bytes);
    }

    /// Entries added since the indexes were last written.
    pub fn unpersisted_index_bytes(&self) -> u64 {
        let entries = self.index.borrow().offsets().len() as u64;
        (entries * super::index::OFFSET_INDEX_ENTRY_BYTES as u64)
            .saturating_sub(self.persisted_offset_index_bytes.get())
    }

    /// Whether a zero write is in flight over this segment (`finalize` waits for it: trimming
    /// the file under it would have it extend the file again).
    pub fn zero_write_in_flight(&self) -> bool {
        self.zeroing.get().is_some()
    }

    /// Marks a rolled segment whose data is durable and published as being finalized, so it is
    /// finalized once.
    pub fn begin_finalize(&self) {
        assert_eq!(
            self.state.get(),
            SegmentState::Sealed,
            "base={}",
            self.base_offset
        );
        assert_eq!(
            self.durable_bytes.get(),
            self.size_bytes.get(),
            "base={}",
            self.base_offset
        );
        assert_eq!(
            self.durable_end_offset.get(),
            self.end_offset.get(),
            "base={}",
            self.base_offset
        );
        assert!(!self.zero_write_in_flight(), "base={}", self.base_offset);
        self.state.set(SegmentState::Finalizing);
    }

    /// Seals a segment marked with `begin_finalize`: final time entry, indexes, trim the file.
    pub async fn finalize(&self) -> Result<(), StorageError> {
        assert_eq!(
            self.state.get(),
            SegmentState::Finalizing,
            "base={}",
            self.base_offset
        );
        self.close_dsync().await?;
        self.index.borrow_mut().seal();
        self.persist_indexes().await?;
        if self.has_file() {
            self.truncate_file(self.size_bytes.get()).await?;
        }
        self.state.set(SegmentState::Finalized);
        Ok(())
    }

    /// Truncates the file to `length` and makes it durable (so stale bytes past it can never
    /// be read back as batches; later preallocation zero-fills).
    pub async fn truncate_file(&self, length: u64) -> Result<(), StorageError> {
        let file = self.file().await?;
        file.truncate(length)
            .await
            .map_err(|error| io_error("truncate segment", &self.log_path, error))?;
        file.fdatasync()
            .await
            .map_err(|error| io_error("fdatasync segment", &self.log_path, error))?;
        self.preallocated_bytes.set(length);
        // Blocks past the new end are freed; preallocating again makes them unwritten.
        self.zeroed_until
            .set(self.zeroed_until.get().min(align_down(length)));
        Ok(())
    }

    /// Cuts the in-memory state back to `position`/`end_offset` (a batch boundary of durable
    /// data) with the index of what remains. The disk follows with `truncate_on_disk`, which
    /// must run before the next flush of this segment (the caller holds the disk lock).
    pub fn truncate_in_memory(&self, position: u64, end_offset: i64, index: SegmentIndex) {
        assert!(
            position <= self.durable_bytes.get(),
            "pos={position} durable={}",
            self.durable_bytes.get()
        );
        assert!(
            end_offset >= self.base_offset,
            "end={end_offset} base={}",
            self.base_offset
        );
        assert_eq!(
            self.written_bytes.get(),
            self.durable_bytes.get(),
            "truncating a segment with a write in flight"
        );
        self.size_bytes.set(position);
        self.written_bytes.set(position);
        self.durable_bytes.set(position);
        self.end_offset.set(end_offset);
        self.durable_end_offset.set(end_offset);
        let (max_timestamp, relative) = index.max_timestamp();
        let offset_of_max = self.base_offset + i64::from(relative);
        self.durable_max_timestamp
            .set((max_timestamp, offset_of_max));
        *self.index.borrow_mut() = index;
        self.tail_page.borrow_mut().clear();
        self.state.set(SegmentState::Active);
        if position == 0 {
            self.rolling_timestamp_ms.set(None);
        }
    }

    /// Truncates the file to the in-memory size (durably), reloads the tail page and rewrites
    /// both index files whole (their old contents may describe removed data).
    pub async fn truncate_on_disk(&self) -> Result<(), StorageError> {
        let position = self.size_bytes.get();
        self.truncate_file(position).await?;
        let tail = self.read_tail_page(position).await?;
        *self.tail_page.borrow_mut() = tail;
        self.persisted_offset_index_bytes.set(0);
        self.persisted_time_index_bytes.set(0);
        self.persist_indexes().await
    }

    async fn read_tail_page(&self, position: u64) -> Result<Vec<u8>, StorageError> {
        let page_start = align_down(position);
        if page_start == position {
            return Ok(Vec::new());
        }
        let bytes = self.read_bytes(page_start, position - page_start).await?;
        Ok(bytes.to_vec())
    }

    /// Closes the file (if this is its last user) so its fd is released.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.close_dsync().await?;
        let file = self.file.borrow_mut().take();
        if let Some(file) = file {
            file.close_rc()
                .await
                .map_err(|error| io_error("close segment", &self.log_path, error))?;
        }
        Ok(())
    }

    /// Closes the O_DSYNC descriptor, if open (a sealed segment gets no more writes).
    pub async fn close_dsync(&self) -> Result<(), StorageError> {
        let file = self.dsync_file.borrow_mut().take();
        if let Some(file) = file {
            file.close_rc()
                .await
                .map_err(|error| io_error("close segment", &self.log_path, error))?;
        }
        Ok(())
    }

    /// Closes a deleted segment's descriptors so that freeing the file's blocks (its last
    /// close) runs on the closing thread (`closer`), not the shard's: the shard closes its own
    /// descriptors after duplicating them, which only drops references, and hands over the
    /// duplicates. Only for a segment nothing else holds any more: a later `file()` would create
    /// the deleted file anew.
    pub async fn close_deleted(&self) -> Result<(), StorageError> {
        let mut spares = Vec::new();
        let mut unheld = true;
        for slot in [&self.dsync_file, &self.file] {
            let Some(file) = slot.borrow_mut().take() else {
                continue;
            };
            // SAFETY: the descriptor stays open while `file` lives; the duplicate is a new one.
            let spare = unsafe { BorrowedFd::borrow_raw(file.as_raw_fd()) }.try_clone_to_owned();
            let closed = file
                .close_rc()
                .await
                .map_err(|error| io_error("close segment", &self.log_path, error))?;
            match closed {
                CloseResult::Closed => spares.extend(spare.ok()),
                CloseResult::Unreferenced => unheld = false,
            }
        }
        // The closer shortens the file before closing it, so it gets the duplicates only if
        // neither descriptor is held elsewhere; otherwise they are dropped here, which is not
        // the last close. Without a duplicate (descriptor limit) the close above was the last
        // one and freed the blocks on the shard.
        if unheld {
            spares.into_iter().for_each(super::closer::free_deleted);
        }
        Ok(())
    }

    /// Deletes the `.log` first and then the indexes, so a crash in between leaves only index
    /// files without a log, which recovery removes. Runs on the background retention path.
    pub async fn remove_files(&self) -> Result<(), StorageError> {
        for extension in ["log", "index", "timeindex"] {
            let path = self
                .dir
                .join(segment_file_name(self.base_offset, extension));
            if let Err(error) = glommio::io::remove(&path).await {
                let error = std::io::Error::from(error);
                if error.kind() != std::io::ErrorKind::NotFound {
                    return Err(StorageError::Io {
                        op: "remove segment file",
                        path,
                        source: error,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Rewrites an index file from the page holding byte `persisted_bytes` on, sets its exact
/// length and fdatasyncs it. Returns the bytes now persisted.
async fn write_index_file(
    path: &Path,
    bytes: &[u8],
    persisted_bytes: u64,
) -> Result<u64, StorageError> {
    let length = bytes.len() as u64;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|error| io_error("open index", path, error))?;
    let page_start = align_down(persisted_bytes.min(length));
    let buffer_length = (align_up(length) - page_start) as usize;
    if buffer_length > 0 {
        let mut buffer = file.alloc_dma_buffer(buffer_length);
        let target = buffer.as_bytes_mut();
        let data = &bytes[page_start as usize..];
        target[..data.len()].copy_from_slice(data);
        target[data.len()..].fill(0);
        let written = file
            .write_at(buffer, page_start)
            .await
            .map_err(|error| io_error("write index", path, error))?;
        if written != buffer_length {
            return Err(StorageError::Io {
                op: "write index (short write)",
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            });
        }
    }
    file.truncate(length)
        .await
        .map_err(|error| io_error("truncate index", path, error))?;
    file.fdatasync()
        .await
        .map_err(|error| io_error("fdatasync index", path, error))?;
    file.close()
        .await
        .map_err(|error| io_error("close index", path, error))?;
    Ok(length)
}

/// Makes created or removed directory entries durable.
pub(crate) async fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(|error| io_error("open directory", dir, error))?;
    directory
        .sync()
        .await
        .map_err(|error| io_error("fsync directory", dir, error))?;
    directory
        .close()
        .await
        .map_err(|error| io_error("close directory", dir, error))
}

/// Test-only I/O error injection: makes the next segment writes on this thread fail.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;
    use std::path::Path;

    use super::StorageError;

    thread_local! {
        static FAIL_WRITES: Cell<bool> = const { Cell::new(false) };
    }

    pub fn fail_writes(fail: bool) {
        FAIL_WRITES.with(|flag| flag.set(fail));
    }

    pub fn check(path: &Path) -> Result<(), StorageError> {
        if FAIL_WRITES.with(|flag| flag.get()) {
            return Err(StorageError::Io {
                op: "write segment (injected)",
                path: path.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        Ok(())
    }
}
