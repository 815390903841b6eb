//! Records inside an uncompressed RecordBatch v2: a bounded iterator for the broker's own
//! internal topics (`__consumer_offsets`), never run on client batches in the produce path.
//! Every length is checked against the bytes that are actually there, so a corrupt batch ends
//! the iteration with an error instead of allocating or panicking.

use bytes::Bytes;
use thiserror::Error;

use super::batch::{BatchHeader, ATTRIBUTE_COMPRESSION_MASK, BATCH_HEADER_BYTES};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated at byte {at}")]
    Truncated { at: usize },
    #[error("compressed batch (codec {codec}) cannot be read here")]
    Compressed { codec: i16 },
    #[error("negative length {length} at byte {at}")]
    BadLength { length: i64, at: usize },
}

/// One record: offset and timestamp resolved against the batch header; key and value are
/// slices of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

struct Cursor<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Cursor<'_> {
    fn varlong(&mut self) -> Result<i64, RecordError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(RecordError::Truncated { at: self.at })?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(RecordError::Truncated { at: self.at })
    }

    fn take(&mut self, length: usize) -> Result<Bytes, RecordError> {
        let end = self
            .at
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(RecordError::Truncated { at: self.at })?;
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(slice)
    }

    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, RecordError> {
        let at = self.at;
        match self.varlong()? {
            -1 => Ok(None),
            length if length < 0 => Err(RecordError::BadLength { length, at }),
            length => self.take(length as usize).map(Some),
        }
    }
}

/// Decodes every record of one uncompressed batch (`batch` holds exactly one batch).
pub fn decode_records(batch: &Bytes) -> Result<Vec<Record>, RecordError> {
    let header = BatchHeader::parse(batch).map_err(|_| RecordError::Truncated { at: 0 })?;
    let codec = header.attributes & ATTRIBUTE_COMPRESSION_MASK;
    if codec != 0 {
        return Err(RecordError::Compressed { codec });
    }
    let batch = batch.slice(..header.size_bytes());
    let mut cursor = Cursor {
        bytes: &batch,
        at: BATCH_HEADER_BYTES,
    };
    // Each record takes at least 7 bytes: the count cannot make this allocate more than that.
    let capacity = (header.record_count.max(0) as usize).min(batch.len() / 7);
    let mut records = Vec::with_capacity(capacity);
    for _ in 0..header.record_count.max(0) {
        let at = cursor.at;
        let length = cursor.varlong()?;
        if length < 0 {
            return Err(RecordError::BadLength { length, at });
        }
        let body = cursor.take(length as usize)?;
        let mut inner = Cursor {
            bytes: &body,
            at: 1, // attributes
        };
        let timestamp_delta = inner.varlong()?;
        let offset_delta = inner.varlong()?;
        let key = inner.nullable_bytes()?;
        let value = inner.nullable_bytes()?;
        records.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp + timestamp_delta,
            key,
            value,
        });
    }
    Ok(records)
}

/// The new log start offset a DeleteRecords control batch carries (`batch` holds exactly one
/// batch), or None for any other batch.
pub fn delete_records_offset(batch: &Bytes) -> Option<i64> {
    let (control_type, value) = control_record(batch)?;
    if control_type != super::batch::CONTROL_DELETE_RECORDS {
        return None;
    }
    let offset = i64::from_be_bytes(value.as_ref().try_into().ok()?);
    // Never past the entry itself (it was proposed at or below the high watermark).
    let base_offset = BatchHeader::parse(batch).ok()?.base_offset;
    (offset >= 0).then_some(offset.min(base_offset))
}

/// The type and value of a control batch's record (`batch` holds exactly one batch), or None
/// if it is not a control batch or its record is malformed.
pub fn control_record(batch: &Bytes) -> Option<(i16, Bytes)> {
    if !BatchHeader::parse(batch).ok()?.is_control() {
        return None;
    }
    let record = decode_records(batch).ok()?.into_iter().next()?;
    let key = record.key?;
    if key.len() < 4 || key[..2] != [0, 0] {
        return None;
    }
    Some((
        i16::from_be_bytes([key[2], key[3]]),
        record.value.unwrap_or_default(),
    ))
}

/// Splits a buffer of whole batches (as the log returns them) into single batches.
pub fn split_batches(mut bytes: Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    while let Ok(header) = BatchHeader::parse(&bytes) {
        let size = header.size_bytes();
        batches.push(bytes.split_to(size));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{assign_offset, encode_batch};

    #[test]
    fn control_batches_carry_their_type_and_value() {
        use crate::protocol::batch::{encode_control_batch, CONTROL_LEADER_CHANGE};
        let mut batch = encode_control_batch(CONTROL_LEADER_CHANGE, b"conf", 7);
        assign_offset(&mut batch, 40, 3);
        BatchHeader::parse_and_verify(&batch).expect("valid batch");
        let batch = Bytes::from(batch);
        assert_eq!(
            control_record(&batch),
            Some((CONTROL_LEADER_CHANGE, Bytes::from_static(b"conf")))
        );
        let data = Bytes::from(encode_batch(&[(None, Some(b"v"))], 1));
        assert_eq!(control_record(&data), None, "a data batch");
    }

    #[test]
    fn decodes_what_encode_batch_wrote() {
        let mut batch = encode_batch(
            &[
                (Some(b"k1"), Some(b"v1")),
                (None, None),
                (Some(b""), Some(b"v3")),
            ],
            1_000,
        );
        assign_offset(&mut batch, 40, 0);
        let records = decode_records(&Bytes::from(batch)).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].offset, 40);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value, None);
        assert_eq!(records[2].offset, 42);
        assert_eq!(records[2].value.as_deref(), Some(&b"v3"[..]));
        assert_eq!(records[2].timestamp, 1_000);
    }

    #[test]
    fn split_then_decode_many_batches() {
        let mut joined = Vec::new();
        for index in 0..3u8 {
            joined.extend(encode_batch(&[(Some(&[index][..]), Some(b"x"))], 0));
        }
        let batches = split_batches(Bytes::from(joined));
        assert_eq!(batches.len(), 3);
        for (index, batch) in batches.iter().enumerate() {
            let records = decode_records(batch).unwrap();
            assert_eq!(records[0].key.as_deref(), Some(&[index as u8][..]));
        }
    }

    #[test]
    fn corrupt_records_end_with_an_error_not_a_panic() {
        let batch = encode_batch(&[(Some(b"key"), Some(b"value"))], 0);
        for cut in BATCH_HEADER_BYTES..batch.len() {
            let mut damaged = batch.clone();
            damaged[cut] = 0xff;
            let _ = decode_records(&Bytes::from(damaged));
        }
        let mut forged = batch.clone();
        forged[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_records(&Bytes::from(forged)).is_err());
    }
}
