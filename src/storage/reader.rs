//! Read side of `PartitionLog`: fetch reads and timestamp lookups, durable data only.
//!
//! `read` serves batches from the shard's `BatchCache` (zero copy: the produce buffers
//! themselves) and falls back to DMA reads located through the sparse offset index; one DMA
//! read is copied once into a `Bytes` and consecutive batches are returned as one slice of it.
//! Only batches below the durable end offset are ever returned, so everything returned survives a
//! crash. Reads keep working while the partition is offline for writes.

use crate::protocol::timestamp_search::first_record_at_or_after;
use std::rc::Rc;

use bytes::Bytes;

use super::log::PartitionLog;
use super::scanner::{peek_span, BatchScanner, ScanStop};
use super::segment::Segment;
use super::StorageError;
use crate::protocol::batch::BATCH_HEADER_BYTES;

/// Smallest DMA read: amortizes one I/O over several small batches.
pub(crate) const READ_CHUNK_BYTES_MIN: u64 = 64 << 10;
/// Largest DMA read per step (more is read in further steps): bounds the copy buffer.
pub(crate) const READ_CHUNK_BYTES_MAX: u64 = 4 << 20;
/// Chunks per read result: IOV_MAX, what one `writev` can send.
pub(crate) const READ_CHUNKS_MAX: usize = 1024;

/// Bytes read from one segment: a contiguous run of whole batches.
struct SegmentRead {
    bytes: Bytes,
    next_offset: i64,
}

impl PartitionLog {
    /// Complete batches from the one containing `offset`, below the durable end offset, at most
    /// `max_bytes` in total except that the first batch is returned whole (KIP-74).
    /// `offset == durable_end_offset` gives nothing; outside [log_start_offset, durable_end_offset]
    /// is `OffsetOutOfRange`.
    pub async fn read(&self, offset: i64, max_bytes: u32) -> Result<Vec<Bytes>, StorageError> {
        self.read_from(offset, max_bytes, false).await
    }

    /// `read`, also below the log start offset down to the first stored batch (records
    /// DeleteRecords removed that retention has not yet deleted): for the Raft layer, which
    /// numbers its entries from an anchor that may lie there. Never for clients.
    pub async fn read_stored(
        &self,
        offset: i64,
        max_bytes: u32,
    ) -> Result<Vec<Bytes>, StorageError> {
        self.read_from(offset, max_bytes, true).await
    }

    async fn read_from(
        &self,
        offset: i64,
        max_bytes: u32,
        stored: bool,
    ) -> Result<Vec<Bytes>, StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        let durable_end_offset = self.durable_end_offset.get();
        self.check_range(offset, durable_end_offset, stored)?;
        let max_bytes = u64::from(max_bytes);
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut used_bytes = 0u64;
        let mut next = offset;
        while next < durable_end_offset && chunks.len() < READ_CHUNKS_MAX {
            let first = chunks.is_empty();
            if let Some((last_offset, bytes)) = self.cache.get(self.cache_id, next) {
                if !first && used_bytes + bytes.len() as u64 > max_bytes {
                    break;
                }
                used_bytes += bytes.len() as u64;
                next = last_offset + 1;
                chunks.push(bytes);
                continue;
            }
            let Some(segment) = self.segment_containing(next) else {
                break;
            };
            let budget = max_bytes.saturating_sub(used_bytes);
            let read = self
                .read_segment(&segment, next, durable_end_offset, first, budget)
                .await?;
            let Some(read) = read else {
                break;
            };
            assert!(
                read.next_offset > next,
                "next={next} read={}",
                read.next_offset
            );
            used_bytes += read.bytes.len() as u64;
            next = read.next_offset;
            chunks.push(read.bytes);
        }
        if chunks.is_empty() && offset < durable_end_offset {
            // Retention removed the data while we waited for the disk.
            self.check_range(offset, durable_end_offset, stored)?;
        }
        Ok(chunks)
    }

    fn check_range(
        &self,
        offset: i64,
        durable_end_offset: i64,
        stored: bool,
    ) -> Result<(), StorageError> {
        let log_start_offset = self.log_start_offset.get();
        let floor = if stored {
            self.first_stored_offset()
        } else {
            log_start_offset
        };
        if offset < floor || offset > durable_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                durable_end_offset,
            });
        }
        Ok(())
    }

    /// Whole batches of `segment` from the one containing `next`, within `budget` bytes (the
    /// first batch of the response excepted), by DMA reads through the offset index.
    async fn read_segment(
        &self,
        segment: &Rc<Segment>,
        next: i64,
        durable_end_offset: i64,
        first_of_response: bool,
        budget: u64,
    ) -> Result<Option<SegmentRead>, StorageError> {
        let durable = segment.durable_bytes();
        if next >= segment.durable_end_offset() {
            return Ok(None);
        }
        let start = u64::from(segment.index().lookup(segment.relative(next)).position);
        let interval = u64::from(self.config.borrow().index_interval_bytes);
        let want = budget
            .saturating_add(interval)
            .clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES_MAX);
        let mut chunk_start = start;
        let mut chunk = segment.read_bytes(start, want.min(durable - start)).await?;
        let mut position = start;
        let mut range_start: Option<u64> = None;
        let mut next_offset = next;
        while position < durable {
            let at = (position - chunk_start) as usize;
            let header_in_chunk = at + BATCH_HEADER_BYTES <= chunk.len();
            let span = if header_in_chunk {
                peek_span(&chunk[at..])
            } else {
                None
            };
            let Some(span) = span else {
                if header_in_chunk {
                    return Err(segment.corrupt(position, "bad batch header on read".into()));
                }
                if range_start.is_some() {
                    break;
                }
                chunk = segment
                    .read_bytes(position, want.min(durable - position))
                    .await?;
                chunk_start = position;
                continue;
            };
            if position + span.size_bytes > durable {
                let detail = format!("batch of {} bytes runs past the data", span.size_bytes);
                return Err(segment.corrupt(position, detail));
            }
            if span.last_offset < next {
                position += span.size_bytes;
                continue;
            }
            if span.base_offset >= durable_end_offset {
                break;
            }
            let range_bytes = position + span.size_bytes - range_start.unwrap_or(position);
            let whole_first = first_of_response && range_start.is_none();
            if !whole_first && range_bytes > budget {
                break;
            }
            if at as u64 + span.size_bytes > chunk.len() as u64 {
                if range_start.is_some() {
                    break;
                }
                let length = span.size_bytes.max(want).min(durable - position);
                chunk = segment.read_bytes(position, length).await?;
                chunk_start = position;
                continue;
            }
            range_start.get_or_insert(position);
            position += span.size_bytes;
            next_offset = span.last_offset + 1;
        }
        Ok(range_start.map(|range_start| SegmentRead {
            bytes: chunk
                .slice((range_start - chunk_start) as usize..(position - chunk_start) as usize),
            next_offset,
        }))
    }

    /// ListOffsets by timestamp: the first durable record (at or past the log start) whose
    /// timestamp is >= `timestamp`, as (its offset, its timestamp): Kafka's
    /// `FileRecords.searchForTimestamp`. Batches whose max timestamp reaches it are searched
    /// record by record, compressed ones decompressed as a stream.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let durable_end_offset = self.durable_end_offset.get();
        let segments: Vec<Rc<Segment>> = self.segments.borrow().clone();
        for segment in segments {
            if segment.base_offset() >= durable_end_offset {
                break;
            }
            if segment.durable_max_timestamp().0 < timestamp {
                continue;
            }
            let found = self
                .find_timestamp_in(&segment, timestamp, durable_end_offset)
                .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn find_timestamp_in(
        &self,
        segment: &Segment,
        timestamp: i64,
        durable_end_offset: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let start = {
            let index = segment.index();
            u64::from(index.lookup(index.time_lookup(timestamp)).position)
        };
        let log_start_offset = self.log_start_offset.get();
        let file = segment.file().await?;
        let mut scanner =
            BatchScanner::new(&file, segment.log_path(), start, segment.durable_bytes());
        loop {
            match scanner.next_batch(false).await? {
                Ok((_, header)) if header.base_offset >= durable_end_offset => return Ok(None),
                Ok((position, header)) if header.max_timestamp >= timestamp => {
                    // The header says a record reaches `timestamp`: find the first one. A batch
                    // whose records all fall short (header and records disagree) is passed
                    // over, as Kafka does.
                    let batch = segment
                        .read_bytes(position, header.size_bytes() as u64)
                        .await?;
                    match first_record_at_or_after(&batch, timestamp, log_start_offset) {
                        Ok(Some(found)) => return Ok(Some(found)),
                        Ok(None) => {}
                        // Stored as a client sent it (valid CRC, records unreadable): no record
                        // of it can be the answer; the batch is passed over, not the lookup.
                        Err(error) => crate::warn_limited!(
                            "{}: batch at byte {position} skipped by a timestamp lookup: {error}",
                            segment.log_path().display()
                        ),
                    }
                }
                Ok(_) => {}
                Err(ScanStop::End) => return Ok(None),
                Err(ScanStop::Invalid { position, detail }) => {
                    return Err(segment.corrupt(position, detail));
                }
            }
        }
    }
}
