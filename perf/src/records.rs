//! A minimal record parser for fetched data: walks RecordBatch v2 batches (CRC32C checked) and
//! their records far enough to hand out each record's offset, timestamp, key and value.
//!
//! Only uncompressed batches are read (the bench produces uncompressed data); control batches
//! are skipped. A partial batch at the end of a fetch response is normal (the broker cuts at
//! `partition_max_bytes`) and ends the walk without an error. Every length is checked against
//! the bytes present: broker data is input, never trusted.

use thiserror::Error;

use crate::protocol::batch::{BatchError, BatchHeader, BATCH_LOG_OVERHEAD_BYTES};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("bad record batch: {0}")]
    Batch(BatchError),
    #[error("compressed batch (attributes {attributes:#x}) at offset {base_offset}: the bench reads uncompressed data only")]
    Compressed { base_offset: i64, attributes: i16 },
    #[error("malformed record in batch at offset {base_offset}: {what}")]
    Malformed {
        base_offset: i64,
        what: &'static str,
    },
}

/// One record as the consumer sees it; key and value borrow the fetch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchedRecord<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What a walk over one partition's records found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordsSummary {
    /// Offset after the last whole batch, `None` when no whole batch was present.
    pub next_offset: Option<i64>,
    pub batches: u32,
    pub records: u32,
    /// Bytes of whole batches.
    pub bytes: usize,
}

/// Calls `on_record` for every record of every whole batch in `records`.
pub fn for_each_record<'a>(
    records: &'a [u8],
    mut on_record: impl FnMut(FetchedRecord<'a>),
) -> Result<RecordsSummary, RecordsError> {
    let mut summary = RecordsSummary::default();
    let mut rest = records;
    while rest.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let header = match BatchHeader::parse_and_verify(rest) {
            Ok(header) => header,
            Err(BatchError::Truncated { .. }) => break,
            Err(error) => return Err(RecordsError::Batch(error)),
        };
        let batch = &rest[..header.size_bytes()];
        if !header.is_control() {
            if header.compression() != 0 {
                return Err(RecordsError::Compressed {
                    base_offset: header.base_offset,
                    attributes: header.attributes,
                });
            }
            summary.records += parse_batch_records(&header, batch, &mut on_record)?;
        }
        summary.batches += 1;
        summary.bytes += batch.len();
        summary.next_offset = Some(header.last_offset() + 1);
        rest = &rest[header.size_bytes()..];
    }
    Ok(summary)
}

fn parse_batch_records<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    on_record: &mut impl FnMut(FetchedRecord<'a>),
) -> Result<u32, RecordsError> {
    let malformed = |what| RecordsError::Malformed {
        base_offset: header.base_offset,
        what,
    };
    let mut cursor = Cursor {
        bytes: batch,
        at: crate::protocol::batch::BATCH_HEADER_BYTES,
    };
    let mut count = 0u32;
    for _ in 0..header.record_count.max(0) {
        let length = cursor.varlong().ok_or_else(|| malformed("record length"))?;
        if length < 0 || length as usize > cursor.remaining() {
            return Err(malformed("record length out of range"));
        }
        let end = cursor.at + length as usize;
        let mut record = Cursor {
            bytes: &batch[..end],
            at: cursor.at,
        };
        record.take(1).ok_or_else(|| malformed("attributes"))?;
        let timestamp_delta = record.varlong().ok_or_else(|| malformed("timestamp"))?;
        let offset_delta = record.varlong().ok_or_else(|| malformed("offset delta"))?;
        let key = record.nullable().ok_or_else(|| malformed("key"))?;
        let value = record.nullable().ok_or_else(|| malformed("value"))?;
        let header_count = record.varlong().ok_or_else(|| malformed("header count"))?;
        if header_count < 0 || header_count as usize > record.remaining() {
            return Err(malformed("header count out of range"));
        }
        for _ in 0..header_count {
            record.nullable().ok_or_else(|| malformed("header key"))?;
            record.nullable().ok_or_else(|| malformed("header value"))?;
        }
        if record.at != end {
            return Err(malformed("record length disagrees with its fields"));
        }
        cursor.at = end;
        on_record(FetchedRecord {
            offset: header.base_offset.wrapping_add(offset_delta),
            timestamp_ms: header.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
        });
        count += 1;
    }
    if cursor.at != batch.len() {
        return Err(malformed("bytes left after the last record"));
    }
    Ok(count)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if count > self.remaining() {
            return None;
        }
        let slice = &self.bytes[self.at..self.at + count];
        self.at += count;
        Some(slice)
    }

    /// A zigzag varlong of at most 10 bytes.
    fn varlong(&mut self) -> Option<i64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self.take(1)?.first()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    }

    /// Varlong length (-1 = null) then that many bytes.
    fn nullable(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varlong()? {
            -1 => Some(None),
            length if length < 0 => None,
            length => Some(Some(self.take(usize::try_from(length).ok()?)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{assign_offset, BatchBuilder};

    fn batch(base_offset: i64, values: &[&[u8]], base_timestamp: i64) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Vec::new());
        for (index, value) in values.iter().enumerate() {
            let key = format!("k{index}");
            builder.push(
                Some(key.as_bytes()),
                Some(value),
                base_timestamp + index as i64,
            );
        }
        let mut bytes = builder.finish();
        assign_offset(&mut bytes, base_offset, 0);
        bytes
    }

    /// (offset, timestamp, key, value) of each record.
    type Seen = Vec<(i64, i64, Vec<u8>, Vec<u8>)>;

    fn collect(records: &[u8]) -> (Seen, RecordsSummary) {
        let mut seen = Vec::new();
        let summary = for_each_record(records, |record| {
            seen.push((
                record.offset,
                record.timestamp_ms,
                record.key.unwrap().to_vec(),
                record.value.unwrap().to_vec(),
            ))
        })
        .unwrap();
        (seen, summary)
    }

    #[test]
    fn walks_batches_and_records() {
        let mut bytes = batch(10, &[b"a", b"bb"], 1000);
        bytes.extend(batch(12, &[b"ccc"], 2000));
        let (seen, summary) = collect(&bytes);
        assert_eq!(
            seen,
            vec![
                (10, 1000, b"k0".to_vec(), b"a".to_vec()),
                (11, 1001, b"k1".to_vec(), b"bb".to_vec()),
                (12, 2000, b"k0".to_vec(), b"ccc".to_vec()),
            ]
        );
        assert_eq!(summary.next_offset, Some(13));
        assert_eq!((summary.batches, summary.records), (2, 3));
        assert_eq!(summary.bytes, bytes.len());
    }

    #[test]
    fn partial_trailing_batch_is_not_an_error() {
        let mut bytes = batch(0, &[b"a"], 1);
        let whole = bytes.len();
        bytes.extend(&batch(1, &[b"b"], 1)[..30]);
        let (seen, summary) = collect(&bytes);
        assert_eq!(seen.len(), 1);
        assert_eq!(summary.next_offset, Some(1));
        assert_eq!(summary.bytes, whole);
        let (seen, summary) = collect(&bytes[..5]);
        assert!(seen.is_empty());
        assert_eq!(summary.next_offset, None);
    }

    #[test]
    fn corrupt_and_compressed_batches_are_errors() {
        let mut bytes = batch(0, &[b"value"], 1);
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        assert!(matches!(
            for_each_record(&bytes, |_| {}),
            Err(RecordsError::Batch(BatchError::BadCrc { .. }))
        ));
        let mut compressed = batch(0, &[b"value"], 1);
        compressed[22] |= 1; // attributes low byte: gzip
        let crc = crc32c::crc32c(&compressed[21..]);
        compressed[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            for_each_record(&compressed, |_| {}),
            Err(RecordsError::Compressed { .. })
        ));
    }

    #[test]
    fn forged_record_lengths_are_errors_not_panics() {
        let template = batch(0, &[b"value", b"other"], 1);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let mut bytes = template.clone();
            let position = 61 + (round % (bytes.len() - 61));
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes[position] = state as u8;
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
            let _ = for_each_record(&bytes, |_| {});
        }
    }
}
