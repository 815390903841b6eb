//! Cluster metadata (topics, ids, placement, topic configs) and its single writer. On one node
//! the writer is shard 0; it persists each version before broadcasting it to every shard.

pub mod controller;
pub mod metadata;
