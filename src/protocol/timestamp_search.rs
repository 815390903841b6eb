//! The first record of a batch at or after a timestamp (Kafka's `FileRecords.searchForTimestamp`
//! within one batch), for ListOffsets by timestamp. Reads the records section as a stream —
//! decompressing it when needed (`codec.rs`) — and skips each record once its timestamp and
//! offset deltas are read, so memory stays bounded whatever the batch expands to. Every length
//! is checked; corrupt input is an error, never a panic or an unbounded allocation.

use std::io::{self, Read};

use thiserror::Error;

use super::batch::{BatchHeader, ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME, BATCH_HEADER_BYTES};
use super::codec::decompressor;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SearchError {
    #[error("record truncated at byte {at} of the records section")]
    Truncated { at: u64 },
    #[error("negative record length {length} at byte {at}")]
    BadLength { length: i64, at: u64 },
    #[error("cannot decompress the batch (codec {codec}): {detail}")]
    Codec { codec: i16, detail: String },
}

/// The first record of `batch` (exactly one v2 batch) whose timestamp is at or after
/// `timestamp` and whose offset is at or after `min_offset`, as (offset, timestamp). In a
/// LogAppendTime batch every record carries the batch's max timestamp.
pub fn first_record_at_or_after(
    batch: &[u8],
    timestamp: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, SearchError> {
    let header = BatchHeader::parse(batch).map_err(|_| SearchError::Truncated { at: 0 })?;
    let body = batch
        .get(BATCH_HEADER_BYTES..header.size_bytes())
        .ok_or(SearchError::Truncated { at: 0 })?;
    let codec = header.compression();
    let log_append_time = header.attributes & ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME != 0;
    let failed = |error: io::Error, at: u64| match error.kind() {
        io::ErrorKind::UnexpectedEof => SearchError::Truncated { at },
        _ => SearchError::Codec {
            codec,
            detail: error.to_string(),
        },
    };
    let mut reader = Counting {
        inner: decompressor(codec, body).map_err(|error| failed(error, 0))?,
        count: 0,
    };
    for _ in 0..header.record_count.max(0) {
        let at = reader.count;
        let length = read_varlong(&mut reader).map_err(|error| failed(error, at))?;
        if length < 0 {
            return Err(SearchError::BadLength { length, at });
        }
        let start = reader.count;
        let (timestamp_delta, offset_delta) =
            record_deltas(&mut reader).map_err(|error| failed(error, start))?;
        let record_timestamp = if log_append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        let offset = header.base_offset.wrapping_add(offset_delta);
        if record_timestamp >= timestamp && offset >= min_offset {
            return Ok(Some((offset, record_timestamp)));
        }
        let rest = (length as u64)
            .checked_sub(reader.count - start)
            .ok_or(SearchError::BadLength { length, at })?;
        let skipped = io::copy(&mut (&mut reader).take(rest), &mut io::sink())
            .map_err(|error| failed(error, reader.count))?;
        if skipped < rest {
            return Err(SearchError::Truncated { at: reader.count });
        }
    }
    Ok(None)
}

/// A record's attributes byte, then its timestamp and offset deltas.
fn record_deltas(reader: &mut impl Read) -> io::Result<(i64, i64)> {
    let mut attributes = [0u8; 1];
    reader.read_exact(&mut attributes)?;
    let timestamp_delta = read_varlong(reader)?;
    let offset_delta = read_varlong(reader)?;
    Ok((timestamp_delta, offset_delta))
}

/// A zigzag varint (Kafka's varlong) from a stream.
fn read_varlong(reader: &mut impl Read) -> io::Result<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
}

/// Counts the bytes read through it (for error positions).
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.count += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::BatchBuilder;
    use std::io::Write;

    /// Two records at offsets 40 and 41 with timestamps 1234 and 999_999_999_999, the records
    /// section compressed with `codec` (`raw_snappy`: librdkafka's framing for 2).
    fn two_record_batch(codec: i16, raw_snappy: bool) -> Vec<u8> {
        let mut builder = BatchBuilder::new(Vec::new());
        builder.push(Some(b"k"), Some(b"a"), 1234);
        builder.push(Some(b"k"), Some(b"b"), 999_999_999_999);
        let mut batch = builder.finish();
        batch[..8].copy_from_slice(&40i64.to_be_bytes());
        let plain = batch.split_off(BATCH_HEADER_BYTES);
        let section = match codec {
            0 => plain,
            1 => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&plain).unwrap();
                encoder.finish().unwrap()
            }
            2 => {
                let block = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
                if raw_snappy {
                    block
                } else {
                    let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
                    framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    framed.extend_from_slice(&block);
                    framed
                }
            }
            3 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(&plain).unwrap();
                encoder.finish().unwrap()
            }
            4 => ruzstd::encoding::compress_to_vec(
                &plain[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
            _ => unreachable!(),
        };
        batch.extend_from_slice(&section);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[22] |= codec as u8; // attributes (i16 at 21): low byte
        batch
    }

    #[test]
    fn finds_the_record_inside_any_batch() {
        let cases = [
            (0, false),
            (1, false),
            (2, false),
            (2, true),
            (3, false),
            (4, false),
        ];
        for (codec, raw) in cases {
            let batch = two_record_batch(codec, raw);
            let find =
                |timestamp, min_offset| first_record_at_or_after(&batch, timestamp, min_offset);
            assert_eq!(
                find(999_999_999_999, 0),
                Ok(Some((41, 999_999_999_999))),
                "{codec}"
            );
            assert_eq!(find(1234, 0), Ok(Some((40, 1234))), "{codec}");
            assert_eq!(find(1235, 0), Ok(Some((41, 999_999_999_999))), "{codec}");
            assert_eq!(
                find(0, 41),
                Ok(Some((41, 999_999_999_999))),
                "{codec}: log start"
            );
            assert_eq!(find(1_000_000_000_000, 0), Ok(None), "{codec}");
        }
        // LogAppendTime: every record carries the batch max timestamp.
        let mut batch = two_record_batch(0, false);
        batch[22] |= ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME as u8;
        assert_eq!(
            first_record_at_or_after(&batch, 1235, 0),
            Ok(Some((40, 999_999_999_999)))
        );
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        for codec in 0..=4 {
            let batch = two_record_batch(codec, false);
            for cut in BATCH_HEADER_BYTES..batch.len() {
                let mut broken = batch[..cut].to_vec();
                let length = (broken.len() - 12) as i32;
                broken[8..12].copy_from_slice(&length.to_be_bytes());
                let _ = first_record_at_or_after(&broken, 1_000_000_000_000, 0);
            }
            let mut flipped = batch.clone();
            let end = flipped.len();
            flipped[end - 3..].copy_from_slice(&[0xff; 3]);
            let _ = first_record_at_or_after(&flipped, 1_000_000_000_000, 0);
        }
    }
}
