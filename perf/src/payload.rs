//! The bench payload: a fixed header at the start of every message value that lets a consumer
//! check it got every message once and in order, and measure end-to-end latency.
//!
//! Layout (big endian): magic `SLB1` (4), run id (8), producer id (4), partition (4), sequence
//! (8, counted per producer and partition from 0), intended send time (8, nanoseconds since the
//! Unix epoch). Filler bytes follow up to `--message-bytes`.

pub const PAYLOAD_MAGIC: [u8; 4] = *b"SLB1";
pub const PAYLOAD_HEADER_BYTES: usize = 36;

const _: () = assert!(PAYLOAD_HEADER_BYTES == 4 + 8 + 4 + 4 + 8 + 8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    pub run_id: u64,
    pub producer_id: u32,
    pub partition: i32,
    pub sequence: u64,
    pub intended_unix_ns: u64,
}

impl PayloadHeader {
    /// Writes the header over the first `PAYLOAD_HEADER_BYTES` of `value`.
    pub fn write(&self, value: &mut [u8]) {
        assert!(value.len() >= PAYLOAD_HEADER_BYTES, "len={}", value.len());
        value[0..4].copy_from_slice(&PAYLOAD_MAGIC);
        value[4..12].copy_from_slice(&self.run_id.to_be_bytes());
        value[12..16].copy_from_slice(&self.producer_id.to_be_bytes());
        value[16..20].copy_from_slice(&self.partition.to_be_bytes());
        value[20..28].copy_from_slice(&self.sequence.to_be_bytes());
        value[28..36].copy_from_slice(&self.intended_unix_ns.to_be_bytes());
    }

    /// `None` when the value is not a bench payload (too short or another magic).
    pub fn read(value: &[u8]) -> Option<PayloadHeader> {
        if value.len() < PAYLOAD_HEADER_BYTES || value[0..4] != PAYLOAD_MAGIC {
            return None;
        }
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&value[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let u32_at = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&value[at..at + 4]);
            u32::from_be_bytes(word)
        };
        Some(PayloadHeader {
            run_id: u64_at(4),
            producer_id: u32_at(12),
            partition: u32_at(16) as i32,
            sequence: u64_at(20),
            intended_unix_ns: u64_at(28),
        })
    }
}

/// A value buffer of `message_bytes` whose filler is a fixed, not trivially compressible pattern.
pub fn value_template(message_bytes: usize) -> Vec<u8> {
    assert!(
        message_bytes >= PAYLOAD_HEADER_BYTES,
        "message_bytes={message_bytes}"
    );
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..message_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header = PayloadHeader {
            run_id: 0x0102_0304_0506_0708,
            producer_id: 7,
            partition: 12,
            sequence: u64::MAX - 1,
            intended_unix_ns: 1_700_000_000_123_456_789,
        };
        let mut value = value_template(100);
        let filler = value[PAYLOAD_HEADER_BYTES..].to_vec();
        header.write(&mut value);
        assert_eq!(PayloadHeader::read(&value), Some(header));
        assert_eq!(
            &value[PAYLOAD_HEADER_BYTES..],
            &filler[..],
            "filler untouched"
        );
        assert_eq!(&value[..4], b"SLB1");
    }

    #[test]
    fn foreign_values_are_not_payloads() {
        assert_eq!(PayloadHeader::read(b"hello"), None);
        let mut value = vec![0u8; 64];
        assert_eq!(PayloadHeader::read(&value), None);
        value[..4].copy_from_slice(b"SLB1");
        assert!(PayloadHeader::read(&value).is_some());
        assert!(PayloadHeader::read(&value[..35]).is_none());
    }
}
