//! Cluster metadata (topics, ids, replica sets with leaders and leader epochs, topic configs)
//! and its single writer. On one node the writer is shard 0 (`controller.rs`): it validates each
//! change and commits it through the metadata log (`controller_log.rs`, the controller's Raft
//! group), which applies it on every shard (`apply.rs`: placement table, opening and removing
//! partitions). `state.rs` is what each shard keeps; `admin.rs` the changes clients ask for and
//! the mesh requests that carry them.

pub mod admin;
pub mod apply;
pub mod controller;
pub mod controller_log;
pub mod forward;
pub mod leaders;
pub mod metadata;
pub mod state;
pub mod users;
