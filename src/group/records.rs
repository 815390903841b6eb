//! Records of the internal `__consumer_offsets` topic, in Kafka's own formats so its tools can
//! read them: offset commits (key v1, value v3) and group metadata (key v2, value v3). A null
//! value is a tombstone. Decoding checks every length against the bytes present.

use bytes::{BufMut, Bytes, BytesMut};

/// One decoded key/value pair of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        /// None: tombstone (offset deleted).
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        /// None: tombstone (group deleted).
        value: Option<GroupValue>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

fn put_string(buffer: &mut BytesMut, value: &str) {
    buffer.put_i16(value.len() as i16);
    buffer.put_slice(value.as_bytes());
}

fn put_nullable_string(buffer: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(value) => put_string(buffer, value),
        None => buffer.put_i16(-1),
    }
}

fn put_bytes(buffer: &mut BytesMut, value: &[u8]) {
    buffer.put_i32(value.len() as i32);
    buffer.put_slice(value);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buffer = BytesMut::with_capacity(8 + group.len() + topic.len());
    buffer.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut buffer, group);
    put_string(&mut buffer, topic);
    buffer.put_i32(partition);
    buffer.freeze()
}

pub fn offset_value(value: &OffsetValue) -> Bytes {
    let mut buffer = BytesMut::with_capacity(24 + value.metadata.len());
    buffer.put_i16(OFFSET_VALUE_VERSION);
    buffer.put_i64(value.offset);
    buffer.put_i32(value.leader_epoch);
    put_string(&mut buffer, &value.metadata);
    buffer.put_i64(value.commit_timestamp);
    buffer.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut buffer = BytesMut::with_capacity(4 + group.len());
    buffer.put_i16(GROUP_KEY_VERSION);
    put_string(&mut buffer, group);
    buffer.freeze()
}

pub fn group_value(value: &GroupValue) -> Bytes {
    let mut buffer = BytesMut::with_capacity(128);
    buffer.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buffer, &value.protocol_type);
    buffer.put_i32(value.generation);
    put_nullable_string(&mut buffer, value.protocol.as_deref());
    put_nullable_string(&mut buffer, value.leader.as_deref());
    buffer.put_i64(value.state_timestamp);
    buffer.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut buffer, &member.member_id);
        put_nullable_string(&mut buffer, member.group_instance_id.as_deref());
        put_string(&mut buffer, &member.client_id);
        put_string(&mut buffer, &member.client_host);
        buffer.put_i32(member.rebalance_timeout_ms);
        buffer.put_i32(member.session_timeout_ms);
        put_bytes(&mut buffer, &member.subscription);
        put_bytes(&mut buffer, &member.assignment);
    }
    buffer.freeze()
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, length: usize) -> Option<Bytes> {
        let end = self.at.checked_add(length)?;
        if end > self.bytes.len() {
            return None;
        }
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        Some(slice)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&b);
        Some(i64::from_be_bytes(word))
    }
    fn nullable_string(&mut self) -> Option<Option<String>> {
        let length = self.i16()?;
        if length < 0 {
            return Some(None);
        }
        let bytes = self.take(length as usize)?;
        Some(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }
    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let length = self.i32()?;
        if length < 0 {
            return Some(Bytes::new());
        }
        self.take(length as usize)
    }
}

/// Decodes one record of the offsets topic; None if it is not one of ours or is damaged.
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<OffsetsRecord> {
    let mut reader = Reader { bytes: key, at: 0 };
    match reader.i16()? {
        0 | 1 => {
            let group = reader.string()?;
            let topic = reader.string()?;
            let partition = reader.i32()?;
            let value = match value {
                None => None,
                Some(value) => Some(decode_offset_value(value)?),
            };
            Some(OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = reader.string()?;
            let value = match value {
                None => None,
                Some(value) => Some(decode_group_value(value)?),
            };
            Some(OffsetsRecord::Group { group, value })
        }
        _ => None,
    }
}

fn decode_offset_value(bytes: &Bytes) -> Option<OffsetValue> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.i16()?;
    let offset = reader.i64()?;
    let leader_epoch = if version >= 3 { reader.i32()? } else { -1 };
    let metadata = reader.string()?;
    let commit_timestamp = reader.i64()?;
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(bytes: &Bytes) -> Option<GroupValue> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.i16()?;
    let protocol_type = reader.string()?;
    let generation = reader.i32()?;
    let protocol = reader.nullable_string()?;
    let leader = reader.nullable_string()?;
    let state_timestamp = if version >= 2 { reader.i64()? } else { -1 };
    let count = reader.i32()?.max(0) as usize;
    // A member takes at least 26 bytes: the count cannot make this allocate beyond the value.
    let mut members = Vec::with_capacity(count.min(bytes.len() / 26));
    for _ in 0..count {
        let member_id = reader.string()?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string()?
        } else {
            None
        };
        let client_id = reader.string()?;
        let client_host = reader.string()?;
        let rebalance_timeout_ms = if version >= 1 { reader.i32()? } else { -1 };
        let session_timeout_ms = reader.i32()?;
        let subscription = reader.bytes()?;
        let assignment = reader.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: "checkpoint".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let decoded = decode(&offset_key("g", "orders", 3), Some(&offset_value(&value)));
        assert_eq!(
            decoded,
            Some(OffsetsRecord::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 3,
                value: Some(value),
            })
        );
        let tombstone = decode(&offset_key("g", "orders", 3), None);
        assert!(matches!(
            tombstone,
            Some(OffsetsRecord::Offset { value: None, .. })
        ));
    }

    #[test]
    fn group_records_round_trip() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp: 5,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("static-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assign"),
            }],
        };
        let decoded = decode(&group_key("g"), Some(&group_value(&value)));
        assert_eq!(
            decoded,
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: Some(value),
            })
        );
    }

    #[test]
    fn damaged_records_decode_to_none() {
        let value = group_value(&GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            state_timestamp: 0,
            members: Vec::new(),
        });
        for cut in 0..value.len() {
            assert_eq!(decode(&group_key("g"), Some(&value.slice(..cut))), None);
        }
        let mut forged = BytesMut::from(&value[..]);
        let count_at = value.len() - 4;
        forged[count_at..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode(&group_key("g"), Some(&forged.freeze())), None);
        assert_eq!(decode(&Bytes::from_static(b"\x00\x07"), None), None);
    }
}
