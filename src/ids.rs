//! Identifiers and offsets as their own types, so a shard index cannot be passed where a node id
//! is expected and a leader epoch cannot be added to an offset by mistake. Widths are Kafka's
//! wire widths (`i32` node ids and epochs, `i64` offsets and producer ids); a shard index is a
//! `u32` (it is recorded in cluster metadata).
//!
//! The storage layer keeps raw `i64` file offsets internally (its `//!` header says so); these
//! types are used from the partition layer up, on the mesh and in cluster metadata.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker in the cluster (`node.id`, Kafka's broker id).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(pub i32);

/// A shard (core) of one node, 0..cores.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub fn from_index(index: usize) -> ShardId {
        ShardId(u32::try_from(index).expect("shard index fits in u32"))
    }
}

macro_rules! display_inner {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}

display_inner!(NodeId, ShardId, LeaderEpoch, Offset, ProducerId);

/// A Kafka leader epoch (KIP-101); with replication it will be the partition's Raft term.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// "No epoch" on the wire (`-1`): the check is skipped, or the answer is undefined.
    pub const UNDEFINED: LeaderEpoch = LeaderEpoch(-1);

    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0.checked_add(1).expect("leader epoch overflow"))
    }
}

/// A Kafka offset within one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// "No offset" on the wire.
    pub const UNDEFINED: Offset = Offset(-1);
}

/// An idempotent producer's id (InitProducerId).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProducerId(pub i64);

/// A topic's 16-byte id (Metadata v10+, Fetch v13+), kept as bytes and shown as a UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub fn new_random() -> TopicId {
        TopicId(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn parse(text: &str) -> Option<TopicId> {
        uuid::Uuid::parse_str(text.trim())
            .ok()
            .map(|id| TopicId(*id.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Kafka's `Uuid.ZERO_UUID`: "no id".
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Without dashes, as Kafka names deleted partition directories.
    pub fn simple(&self) -> String {
        uuid::Uuid::from_bytes(self.0).simple().to_string()
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", uuid::Uuid::from_bytes(self.0))
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "TopicId({self})")
    }
}

/// Stored as the UUID string (readable in `cluster_metadata.toml`, and what earlier versions
/// wrote).
impl Serialize for TopicId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TopicId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TopicId, D::Error> {
        let text = String::deserialize(deserializer)?;
        TopicId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a topic id (UUID)")))
    }
}

/// One partition of one topic, by name (Kafka's `TopicPartition`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: std::sync::Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_id_round_trips_through_text() {
        let id = TopicId::new_random();
        assert_eq!(TopicId::parse(&id.to_string()), Some(id));
        assert_eq!(id.simple().len(), 32);
        assert!(TopicId::parse("not-a-uuid").is_none());
        assert!(TopicId::default().is_zero());
    }
}
