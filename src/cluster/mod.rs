//! Cluster metadata (topics, ids, replica sets with leaders and leader epochs, topic configs)
//! and its single writer. On one node the writer is shard 0 (`controller.rs`); it persists each
//! version before broadcasting it to every shard, which applies it (`apply.rs`: placement table,
//! opening and removing partitions). `state.rs` is what each shard keeps; `admin.rs` the
//! changes clients ask for and the mesh requests that carry them.

pub mod admin;
pub mod apply;
pub mod controller;
pub mod metadata;
pub mod state;
