//! RecordBatch v2 header: parse, validate, and the in-place rewrites the broker is allowed to do.
//!
//! The log stores batches exactly as they arrive on the wire. The broker only rewrites the
//! fields the CRC does not cover (`base_offset`, `partition_leader_epoch`), or, for
//! `message.timestamp.type=LogAppendTime`, the timestamp fields, after which it recomputes the
//! CRC32C. Records themselves are never decoded here: a forged record count cannot make the
//! broker allocate.

use thiserror::Error;

/// Bytes of the fixed RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// `base_offset` (8) + `batch_length` (4): the part not counted by `batch_length`.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format the broker accepts and stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

const _: () = assert!(OFFSET_RECORD_COUNT + 4 == BATCH_HEADER_BYTES);

/// Attribute bits (Kafka's `DefaultRecordBatch`).
pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub const ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a byte range is not a valid batch. Mapped to CORRUPT_MESSAGE / INVALID_RECORD by the
/// produce handler and to "truncate here" by log recovery.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch truncated: have {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length {batch_length} out of range")]
    BadLength { batch_length: i32 },
    #[error("unsupported magic {magic} (only v2 record batches are accepted)")]
    BadMagic { magic: i8 },
    #[error("crc mismatch: stored {stored:#010x} computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount {
        record_count: i32,
        last_offset_delta: i32,
    },
}

/// The parsed fixed header of one RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(word)
}
fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(word)
}

impl BatchHeader {
    /// Total bytes of this batch on the wire and in the log.
    pub fn size_bytes(&self) -> usize {
        BATCH_LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Parses the fixed header only: length and magic are checked, the CRC is not.
    /// `bytes` may hold more than one batch; only the first is looked at.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                have: bytes.len(),
                need: BATCH_HEADER_BYTES,
            });
        }
        let batch_length = read_i32(bytes, OFFSET_BATCH_LENGTH);
        let header_after_length = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;
        if batch_length < header_after_length {
            return Err(BatchError::BadLength { batch_length });
        }
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { magic });
        }
        let header = BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(bytes, OFFSET_PARTITION_LEADER_EPOCH),
            magic,
            crc: read_i32(bytes, OFFSET_CRC) as u32,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
        };
        if bytes.len() < header.size_bytes() {
            return Err(BatchError::Truncated {
                have: bytes.len(),
                need: header.size_bytes(),
            });
        }
        Ok(header)
    }

    /// Parses the header and checks the CRC32C over attributes..end of batch.
    pub fn parse_and_verify(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(bytes)?;
        let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..header.size_bytes()]);
        if computed != header.crc {
            return Err(BatchError::BadCrc {
                stored: header.crc,
                computed,
            });
        }
        Ok(header)
    }

    /// Full produce-time validation: structure, CRC, and record count consistent with the
    /// offset delta (a producer never sends a batch with gaps).
    pub fn validate_for_append(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse_and_verify(bytes)?;
        if header.record_count <= 0
            || header.last_offset_delta < 0
            || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
        {
            return Err(BatchError::BadRecordCount {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }
}

/// Rewrites `base_offset` and `partition_leader_epoch`: the fields the broker owns and the CRC
/// does not cover.
pub fn assign_offset(bytes: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    assert!(bytes.len() >= BATCH_HEADER_BYTES, "len={}", bytes.len());
    assert!(base_offset >= 0, "base_offset={base_offset}");
    bytes[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[OFFSET_PARTITION_LEADER_EPOCH..OFFSET_PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Sets the batch to LogAppendTime with `append_time_ms` as its max timestamp and recomputes
/// the CRC. Records are untouched (consumers take the batch timestamp for LogAppendTime).
pub fn set_log_append_time(bytes: &mut [u8], append_time_ms: i64) {
    let header = BatchHeader::parse(bytes).expect("caller validated the batch");
    let attributes = header.attributes | ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME;
    bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&append_time_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..header.size_bytes()]);
    bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Control record types (the key of a control batch's single record is `version: i16 = 0,
/// type: i16`). Consumers skip control batches whatever their type.
/// Kafka's LEADER_CHANGE: Sluice writes one where a new partition leader's first Raft entry
/// (raft-rs's empty entry) sits in the log.
pub const CONTROL_LEADER_CHANGE: i16 = 2;
/// Sluice's own: a Raft configuration change of the partition's replica set (the value holds
/// it). Outside the range Kafka uses (0..=6).
pub const CONTROL_RAFT_CONF_CHANGE: i16 = 0x5301;
/// Sluice's own: DeleteRecords moving a replicated partition's log start offset to the value
/// (an i64, big-endian), applied by every replica when its Raft group commits it.
pub const CONTROL_DELETE_RECORDS: i16 = 0x5302;

/// One control batch of one record: key `(0, control_type)`, `value`, stamped `timestamp_ms`;
/// offsets are assigned like any batch's.
pub fn encode_control_batch(control_type: i16, value: &[u8], timestamp_ms: i64) -> Vec<u8> {
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    let mut builder = BatchBuilder::new(Vec::with_capacity(BATCH_HEADER_BYTES + 32 + value.len()));
    builder.push(Some(&key), Some(value), timestamp_ms);
    let mut batch = builder.finish();
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2]
        .copy_from_slice(&ATTRIBUTE_CONTROL.to_be_bytes());
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// One record for `encode_batch`: (key, value), either may be null.
pub type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds one uncompressed batch from (key, value) records, all stamped `base_timestamp`. Used by
/// the console producer and tests; the broker itself never encodes records.
pub fn encode_batch(records: &[Record<'_>], base_timestamp: i64) -> Vec<u8> {
    assert!(!records.is_empty());
    let mut builder =
        BatchBuilder::new(Vec::with_capacity(BATCH_HEADER_BYTES + 64 * records.len()));
    for (key, value) in records {
        builder.push(*key, *value, base_timestamp);
    }
    builder.finish()
}

/// Builds one uncompressed RecordBatch v2 record by record, straight into a caller-owned buffer
/// (so a load generator can reuse its allocations), with a CreateTime timestamp per record.
/// The result passes `BatchHeader::validate_for_append`: producer id -1 (not idempotent), no
/// record headers.
pub struct BatchBuilder {
    batch: Vec<u8>,
    record_count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// Starts a batch in `buffer` (cleared first; its capacity is kept).
    pub fn new(mut buffer: Vec<u8>) -> BatchBuilder {
        buffer.clear();
        buffer.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            batch: buffer,
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Bytes the batch has so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.batch.len()
    }

    /// Appends one record. The first record's timestamp is the batch's base timestamp; later
    /// records store their delta to it (negative deltas are valid varlongs).
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp_ms: i64) {
        if self.record_count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms - self.base_timestamp;
        let offset_delta = i64::from(self.record_count);
        let body_bytes = 1
            + varlong_size_bytes(timestamp_delta)
            + varlong_size_bytes(offset_delta)
            + nullable_size_bytes(key)
            + nullable_size_bytes(value)
            + varlong_size_bytes(0);
        put_varlong(&mut self.batch, body_bytes as i64);
        let body_start = self.batch.len();
        self.batch.push(0u8); // record attributes
        put_varlong(&mut self.batch, timestamp_delta);
        put_varlong(&mut self.batch, offset_delta);
        put_bytes(&mut self.batch, key);
        put_bytes(&mut self.batch, value);
        put_varlong(&mut self.batch, 0); // header count
        assert_eq!(self.batch.len() - body_start, body_bytes, "record size");
        self.record_count += 1;
    }

    /// Fills in the header and the CRC32C and returns the batch bytes.
    pub fn finish(self) -> Vec<u8> {
        assert!(self.record_count > 0, "a batch holds at least one record");
        let mut batch = self.batch;
        let batch_length = (batch.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
        let mut header = Vec::with_capacity(BATCH_HEADER_BYTES);
        header.extend_from_slice(&0i64.to_be_bytes()); // base offset, assigned by the broker
        header.extend_from_slice(&batch_length.to_be_bytes());
        header.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        header.push(MAGIC_V2 as u8);
        header.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        header.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
        header.extend_from_slice(&(self.record_count - 1).to_be_bytes());
        header.extend_from_slice(&self.base_timestamp.to_be_bytes());
        header.extend_from_slice(&self.max_timestamp.to_be_bytes());
        header.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        header.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        header.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        header.extend_from_slice(&self.record_count.to_be_bytes());
        assert_eq!(header.len(), BATCH_HEADER_BYTES);
        batch[..BATCH_HEADER_BYTES].copy_from_slice(&header);
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

fn varlong_size_bytes(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut size = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        size += 1;
    }
    size
}

fn nullable_size_bytes(bytes: Option<&[u8]>) -> usize {
    match bytes {
        None => varlong_size_bytes(-1),
        Some(bytes) => varlong_size_bytes(bytes.len() as i64) + bytes.len(),
    }
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        encode_batch(
            &[(Some(b"k1"), Some(b"v1")), (None, Some(b"value-2"))],
            1_700_000_000_000,
        )
    }

    #[test]
    fn parse_round_trip() {
        let batch = sample();
        let header = BatchHeader::validate_for_append(&batch).unwrap();
        assert_eq!(header.record_count, 2);
        assert_eq!(header.last_offset_delta, 1);
        assert_eq!(header.size_bytes(), batch.len());
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.producer_id, -1);
    }

    #[test]
    fn builder_keeps_per_record_timestamps_and_validates() {
        let mut builder = BatchBuilder::new(vec![0xAA; 7]);
        builder.push(None, Some(&[7u8; 200]), 1_700_000_000_500);
        builder.push(Some(b"k"), Some(b""), 1_700_000_000_000);
        builder.push(Some(b"key"), None, 1_700_000_009_999);
        assert_eq!(builder.record_count(), 3);
        let size = builder.size_bytes();
        let batch = builder.finish();
        assert_eq!(batch.len(), size);
        let header = BatchHeader::validate_for_append(&batch).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.base_timestamp, 1_700_000_000_500);
        assert_eq!(header.max_timestamp, 1_700_000_009_999);
        // Same records through the old entry point: identical bytes when timestamps agree.
        let mut builder = BatchBuilder::new(Vec::new());
        builder.push(Some(b"k1"), Some(b"v1"), 1_700_000_000_000);
        builder.push(None, Some(b"value-2"), 1_700_000_000_000);
        assert_eq!(builder.finish(), sample());
    }

    #[test]
    fn varlong_sizes_match_encoding() {
        for value in [0i64, 1, -1, 63, 64, -65, 1 << 20, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_size_bytes(value), "value={value}");
        }
    }

    #[test]
    fn offset_assignment_keeps_crc_valid() {
        let mut batch = sample();
        assign_offset(&mut batch, 42, 7);
        let header = BatchHeader::parse_and_verify(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 43);
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 0x40;
        assert!(matches!(
            BatchHeader::parse_and_verify(&batch),
            Err(BatchError::BadCrc { .. })
        ));
    }

    #[test]
    fn truncated_and_bad_magic_rejected() {
        let batch = sample();
        assert!(matches!(
            BatchHeader::parse(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&batch[..10]),
            Err(BatchError::Truncated { .. })
        ));
        let mut bad = batch.clone();
        bad[OFFSET_MAGIC] = 1;
        assert_eq!(
            BatchHeader::parse(&bad),
            Err(BatchError::BadMagic { magic: 1 })
        );
        let mut negative = batch;
        negative[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
            .copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&negative),
            Err(BatchError::BadLength { .. })
        ));
    }

    #[test]
    fn record_count_must_match_delta() {
        let mut batch = sample();
        batch[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            BatchHeader::validate_for_append(&batch),
            Err(BatchError::BadRecordCount { .. })
        ));
    }

    #[test]
    fn log_append_time_rewrite_recomputes_crc() {
        let mut batch = sample();
        set_log_append_time(&mut batch, 1_800_000_000_000);
        let header = BatchHeader::parse_and_verify(&batch).unwrap();
        assert_eq!(header.max_timestamp, 1_800_000_000_000);
        assert_ne!(header.attributes & ATTRIBUTE_TIMESTAMP_LOG_APPEND_TIME, 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for length in 0..400usize {
            let mut bytes = vec![0u8; length];
            for byte in bytes.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            if length > 16 {
                bytes[16] = 2;
            }
            let _ = BatchHeader::validate_for_append(&bytes);
        }
    }
}
