//! The placement table every shard holds: for each topic, its id and, per partition, the
//! replica set (node, shard) with its leader and leader epoch. On one node every replica set has
//! one element, this node. The table is built from a cluster metadata version by the layer that
//! owns metadata (`cluster/`) and installed on every shard; requests are routed with it.
//!
//! A shard index recorded here is folded onto the shards of this run (`shard % cores`): a restart
//! with fewer `--cores` moves partitions between shards; their directories do not depend on it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::{LeaderEpoch, NodeId, ShardId, TopicId};

/// One replica of a partition: the node that hosts it and the shard that owns it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub node: NodeId,
    pub shard: ShardId,
}

/// A partition's replica set, its leader and the leader's epoch, and the in-sync replicas as
/// that leader last reported them (empty: none reported; a one-replica partition, or a data
/// directory written before leaders reported them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub replicas: Vec<Replica>,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isr: Vec<NodeId>,
}

impl PartitionAssignment {
    /// A partition hosted on `node` alone, led by it at epoch 0.
    pub fn single(node: NodeId, shard: ShardId) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![Replica { node, shard }],
            leader: node,
            leader_epoch: LeaderEpoch(0),
            isr: Vec::new(),
        }
    }

    /// The replica on `node`, if it hosts one.
    pub fn replica_on(&self, node: NodeId) -> Option<Replica> {
        self.replicas
            .iter()
            .copied()
            .find(|replica| replica.node == node)
    }

    pub fn replica_nodes(&self) -> Vec<NodeId> {
        self.replicas.iter().map(|replica| replica.node).collect()
    }
}

/// What the table knows of one topic.
#[derive(Debug, Clone)]
pub struct TopicPlacement {
    pub topic_id: TopicId,
    pub partitions: Vec<PartitionAssignment>,
}

/// Topic name → placement, for one metadata version.
#[derive(Debug, Clone, Default)]
pub struct PlacementTable {
    pub version: u64,
    /// This node: replicas on it are hosted here.
    pub node: NodeId,
    pub topics: HashMap<String, TopicPlacement>,
    pub topic_names_by_id: HashMap<TopicId, String>,
}

impl PlacementTable {
    pub fn new(version: u64, node: NodeId) -> PlacementTable {
        PlacementTable {
            version,
            node,
            topics: HashMap::new(),
            topic_names_by_id: HashMap::new(),
        }
    }

    pub fn insert(&mut self, name: &str, placement: TopicPlacement) {
        self.topic_names_by_id
            .insert(placement.topic_id, name.to_string());
        self.topics.insert(name.to_string(), placement);
    }

    pub fn topic(&self, name: &str) -> Option<&TopicPlacement> {
        self.topics.get(name)
    }

    pub fn topic_name(&self, topic_id: &TopicId) -> Option<&str> {
        self.topic_names_by_id.get(topic_id).map(String::as_str)
    }

    pub fn assignment(&self, topic: &str, partition: i32) -> Option<&PartitionAssignment> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics
            .get(topic)
            .map(|topic| topic.partitions.len() as i32)
    }

    /// The shard of this run that owns this node's replica of the partition, if it hosts one.
    pub fn owner_shard(&self, topic: &str, partition: i32, shard_count: usize) -> Option<ShardId> {
        assert!(shard_count > 0, "shard_count={shard_count}");
        let replica = self.assignment(topic, partition)?.replica_on(self.node)?;
        Some(ShardId::from_index(replica.shard.index() % shard_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_shard_folds_and_ignores_other_nodes() {
        let mut table = PlacementTable::new(1, NodeId(1));
        table.insert(
            "orders",
            TopicPlacement {
                topic_id: TopicId::new_random(),
                partitions: vec![
                    PartitionAssignment::single(NodeId(1), ShardId(0)),
                    PartitionAssignment::single(NodeId(1), ShardId(3)),
                    PartitionAssignment::single(NodeId(2), ShardId(0)),
                ],
            },
        );
        assert_eq!(table.owner_shard("orders", 0, 2), Some(ShardId(0)));
        assert_eq!(table.owner_shard("orders", 1, 2), Some(ShardId(1)));
        assert_eq!(table.owner_shard("orders", 2, 2), None, "not hosted here");
        assert_eq!(table.owner_shard("orders", 3, 2), None);
        assert_eq!(table.owner_shard("orders", -1, 2), None);
        assert_eq!(table.partition_count("orders"), Some(3));
    }
}
