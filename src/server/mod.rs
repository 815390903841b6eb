//! The Kafka-protocol server: per-shard listeners (`listener.rs`), connections with pipelined
//! requests answered in order (`connection.rs`), and one handler file per Kafka API
//! (`handlers/`). Handlers decode with `kafka-protocol`, split work by owning shard, dispatch
//! over the mesh and reassemble answers in request order.

pub mod connection;
pub mod handlers;
pub mod listener;
