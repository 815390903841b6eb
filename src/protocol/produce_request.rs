//! Produce request body decoder (v3-v12), hand-written so that each partition's `records` is a
//! `BytesMut` split off the request frame: disjoint views of one allocation, each mutable on its
//! own. The owner shard rewrites the batch's base offset and leader epoch in place and appends
//! that very buffer — the record bytes are never copied between the socket and the log's
//! write-behind buffer.
//!
//! Every count and length is checked against the bytes that are there before anything is
//! allocated or split; a malformed body is a `FrameError` (the connection closes).

use bytes::{Buf, BytesMut};

use super::frame::FrameError;

/// First flexible (compact strings/arrays, tagged fields) version of Produce.
const FLEXIBLE_VERSION: i16 = 9;

#[derive(Debug)]
pub struct ProducePartition {
    pub index: i32,
    pub records: Option<BytesMut>,
}

#[derive(Debug)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug)]
pub struct ProduceRequestBody {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

fn malformed(message: &str) -> FrameError {
    FrameError::Malformed {
        what: "produce request",
        message: message.to_string(),
    }
}

struct Reader {
    body: BytesMut,
    flexible: bool,
}

impl Reader {
    fn need(&self, bytes: usize) -> Result<(), FrameError> {
        if self.body.remaining() < bytes {
            return Err(malformed("truncated"));
        }
        Ok(())
    }

    fn i16(&mut self) -> Result<i16, FrameError> {
        self.need(2)?;
        Ok(self.body.get_i16())
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        self.need(4)?;
        Ok(self.body.get_i32())
    }

    fn unsigned_varint(&mut self) -> Result<u32, FrameError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            self.need(1)?;
            let byte = self.body.get_u8();
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint too long"))
    }

    /// Length of a nullable string/bytes/array field: None for null.
    fn length(&mut self, classic_is_i16: bool) -> Result<Option<usize>, FrameError> {
        let length: i64 = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else if classic_is_i16 {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        if length < -1 {
            return Err(malformed("negative length"));
        }
        if length == -1 {
            return Ok(None);
        }
        let length = length as usize;
        self.need(length)?;
        Ok(Some(length))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, FrameError> {
        match self.length(true)? {
            None => Ok(None),
            Some(length) => {
                let bytes = self.body.split_to(length);
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|_| malformed("string is not UTF-8"))
            }
        }
    }

    /// Array length; each element takes at least `element_bytes_min`, which bounds the count
    /// by the bytes that are actually there.
    fn array_length(&mut self, element_bytes_min: usize) -> Result<usize, FrameError> {
        let length: i64 = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        if length < 0 {
            return Ok(0);
        }
        let length = length as usize;
        if length.saturating_mul(element_bytes_min) > self.body.remaining() {
            return Err(malformed("array count exceeds the request"));
        }
        Ok(length)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), FrameError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.need(size)?;
            self.body.advance(size);
        }
        Ok(())
    }
}

/// Decodes a Produce body of `version` (3..=12).
pub fn decode(body: BytesMut, version: i16) -> Result<ProduceRequestBody, FrameError> {
    assert!((3..=12).contains(&version), "version={version}");
    let mut reader = Reader {
        body,
        flexible: version >= FLEXIBLE_VERSION,
    };
    let transactional_id = reader.nullable_string()?;
    let acks = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let topic_count = reader.array_length(2)?;
    let mut topics = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        let name = reader
            .nullable_string()?
            .ok_or_else(|| malformed("null topic name"))?;
        let partition_count = reader.array_length(5)?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            let index = reader.i32()?;
            let records = match reader.length(false)? {
                None => None,
                Some(length) => Some(reader.body.split_to(length)),
            };
            reader.skip_tagged_fields()?;
            partitions.push(ProducePartition { index, records });
        }
        reader.skip_tagged_fields()?;
        topics.push(ProduceTopic { name, partitions });
    }
    reader.skip_tagged_fields()?;
    Ok(ProduceRequestBody {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn reference(version: i16) -> BytesMut {
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = 1234;
        for topic_index in 0..3 {
            let mut topic = TopicProduceData::default();
            topic.name = TopicName(StrBytes::from_string(format!("topic-{topic_index}")));
            for partition in 0..4 {
                let mut data = PartitionProduceData::default();
                data.index = partition;
                data.records = (partition != 2).then(|| {
                    Bytes::from(vec![
                        topic_index as u8 * 16 + partition as u8;
                        10 + partition as usize
                    ])
                });
                topic.partition_data.push(data);
            }
            request.topic_data.push(topic);
        }
        let mut encoded = BytesMut::new();
        request.encode(&mut encoded, version).unwrap();
        encoded
    }

    #[test]
    fn matches_the_reference_encoder_at_every_version() {
        for version in 3..=12 {
            let decoded = decode(reference(version), version).unwrap();
            assert_eq!(decoded.acks, -1, "v{version}");
            assert_eq!(decoded.timeout_ms, 1234);
            assert_eq!(decoded.transactional_id, None);
            assert_eq!(decoded.topics.len(), 3);
            let partition = &decoded.topics[1].partitions[3];
            assert_eq!(partition.index, 3);
            assert_eq!(partition.records.as_deref(), Some(&[19u8; 13][..]));
            assert!(decoded.topics[1].partitions[2].records.is_none());
            assert_eq!(decoded.topics[2].name, "topic-2");
        }
    }

    #[test]
    fn records_are_disjoint_writable_views() {
        let decoded = decode(reference(9), 9).unwrap();
        let mut all: Vec<BytesMut> = decoded
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .filter_map(|partition| partition.records)
            .collect();
        for records in all.iter_mut() {
            records[0] = 0xee;
        }
        assert!(all
            .iter()
            .all(|records| records[0] == 0xee && records[1] != 0xee));
    }

    #[test]
    fn truncations_and_forged_counts_are_errors() {
        let full = reference(9);
        for cut in 0..full.len() {
            let _ = decode(BytesMut::from(&full[..cut]), 9);
        }
        let mut forged = BytesMut::new();
        forged.extend_from_slice(&[0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01]);
        forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode(forged, 9).is_err());
        let mut classic = BytesMut::new();
        classic.extend_from_slice(&[0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01]);
        classic.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(classic, 7).is_err());
    }
}
