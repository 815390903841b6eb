//! Sequential, validating reads of the batches in a segment file region (recovery,
//! truncation, timestamp lookup), and a header peek for reads that have only part of a batch.
//!
//! Reads only: no durability state. Reads go through O_DIRECT in `SCAN_CHUNK_BYTES` chunks, so
//! scanning a segment never touches the OS page cache.

use std::path::Path;

use glommio::io::{DmaFile, ReadResult};

use super::{io_error, StorageError, BATCH_SIZE_BYTES_MAX};
use crate::protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, MAGIC_V2};

/// Bytes read at once when scanning a segment: large sequential reads, bounded memory.
pub(crate) const SCAN_CHUNK_BYTES: u64 = 1 << 20;

/// The offsets and size of a batch, read from its first bytes without needing the whole batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSpan {
    pub base_offset: i64,
    pub last_offset: i64,
    pub size_bytes: u64,
}

/// Byte offsets inside the v2 header (see `protocol::batch`), for peeking at a batch whose
/// bytes are not all in memory yet.
const SPAN_LAST_OFFSET_DELTA_AT: usize = 23;
const SPAN_MAGIC_AT: usize = 16;

/// Peeks at a batch header; None if fewer than a header's bytes are given or it is malformed.
pub(crate) fn peek_span(bytes: &[u8]) -> Option<BatchSpan> {
    if bytes.len() < BATCH_HEADER_BYTES || bytes[SPAN_MAGIC_AT] as i8 != MAGIC_V2 {
        return None;
    }
    let base_offset = i64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let batch_length = i32::from_be_bytes(bytes[8..12].try_into().ok()?);
    let delta_bytes = &bytes[SPAN_LAST_OFFSET_DELTA_AT..SPAN_LAST_OFFSET_DELTA_AT + 4];
    let last_offset_delta = i32::from_be_bytes(delta_bytes.try_into().ok()?);
    let size_bytes = BATCH_LOG_OVERHEAD_BYTES as u64 + u64::try_from(batch_length).ok()?;
    if size_bytes < BATCH_HEADER_BYTES as u64 || last_offset_delta < 0 || base_offset < 0 {
        return None;
    }
    Some(BatchSpan {
        base_offset,
        last_offset: base_offset + i64::from(last_offset_delta),
        size_bytes,
    })
}

/// Why a scan stopped before the end of the region.
#[derive(Debug)]
pub(crate) enum ScanStop {
    /// Reached the end of the region exactly.
    End,
    /// Bytes at `position` are not a valid batch (zero tail, torn or corrupt).
    Invalid { position: u64, detail: String },
}

/// Sequential reader of the batches of a file region, in large chunks.
pub(crate) struct BatchScanner<'a> {
    file: &'a DmaFile,
    path: &'a Path,
    position: u64,
    end: u64,
    chunk: Option<ReadResult>,
    chunk_start: u64,
}

impl<'a> BatchScanner<'a> {
    pub fn new(file: &'a DmaFile, path: &'a Path, position: u64, end: u64) -> BatchScanner<'a> {
        BatchScanner {
            file,
            path,
            position,
            end,
            chunk: None,
            chunk_start: 0,
        }
    }

    /// The next batch and its position, or why there is none. With `verify_crc` the whole
    /// batch is checked (recovery); otherwise only its header.
    pub async fn next_batch(
        &mut self,
        verify_crc: bool,
    ) -> Result<Result<(u64, BatchHeader), ScanStop>, StorageError> {
        let position = self.position;
        if position == self.end {
            return Ok(Err(ScanStop::End));
        }
        if position + BATCH_HEADER_BYTES as u64 > self.end {
            let detail = format!("{} bytes left, less than a header", self.end - position);
            return Ok(Err(ScanStop::Invalid { position, detail }));
        }
        let head = self.bytes_at(position, BATCH_HEADER_BYTES as u64).await?;
        let Some(span) = peek_span(head) else {
            let detail = "bad batch header (length, magic or offsets)".to_string();
            return Ok(Err(ScanStop::Invalid { position, detail }));
        };
        if span.size_bytes > BATCH_SIZE_BYTES_MAX || position + span.size_bytes > self.end {
            let detail = format!("batch of {} bytes runs past the end", span.size_bytes);
            return Ok(Err(ScanStop::Invalid { position, detail }));
        }
        let bytes = self.bytes_at(position, span.size_bytes).await?;
        let parsed = if verify_crc {
            BatchHeader::parse_and_verify(bytes)
        } else {
            BatchHeader::parse(bytes)
        };
        match parsed {
            Ok(header) => {
                self.position = position + span.size_bytes;
                Ok(Ok((position, header)))
            }
            Err(error) => Ok(Err(ScanStop::Invalid {
                position,
                detail: error.to_string(),
            })),
        }
    }

    /// `length` bytes at `position`, reading a new chunk when the current one lacks them.
    async fn bytes_at(&mut self, position: u64, length: u64) -> Result<&[u8], StorageError> {
        let covered = self.chunk.as_ref().is_some_and(|chunk| {
            position >= self.chunk_start
                && position + length <= self.chunk_start + chunk.len() as u64
        });
        if !covered {
            let read_length = length.max(SCAN_CHUNK_BYTES).min(self.end - position);
            let chunk = self
                .file
                .read_at(position, read_length as usize)
                .await
                .map_err(|error| io_error("scan segment", self.path, error))?;
            if (chunk.len() as u64) < length {
                return Err(StorageError::Corrupt {
                    path: self.path.to_path_buf(),
                    position,
                    detail: format!("short read: {} of {length} bytes", chunk.len()),
                });
            }
            self.chunk = Some(chunk);
            self.chunk_start = position;
        }
        let chunk = self.chunk.as_ref().map(|chunk| &chunk[..]).unwrap_or(&[]);
        let at = (position - self.chunk_start) as usize;
        Ok(&chunk[at..at + length as usize])
    }
}
