//! Sluice: a Kafka-wire-compatible streaming broker, one glommio shard per core.
//!
//! Layers (each folder opens with a `//!` header saying what it owns):
//! - `protocol/`: Kafka codec glue, record batch header, error codes, frames. No I/O.
//! - `storage/`: per-partition segment log, indexes, recovery, retention, read cache. No sockets.
//! - `shard/`: executor pool, channel mesh, typed cross-shard messages, per-shard state.
//! - `server/`: listener, connections, one handler file per Kafka API.
//! - `cluster/`: cluster metadata and its single writer (shard 0).
//! - `group/`: consumer group coordinator and committed offsets.
//! - `config.rs`: the one `Config`, from defaults, TOML, environment and flags.
//! - `tune/`: `sluice tune`, the OS tuning checks (a CLI, not on a shard).
//! - `allocator.rs`: the process allocator (huge requests reserve address space only).
//! - `bench` (source in `perf/src/`): `sluice bench`, the load generator. Plain threads and
//!   blocking sockets; it never runs inside the broker.

pub mod allocator;
#[path = "../perf/src/mod.rs"]
pub mod bench;
pub mod cluster;
pub mod config;
pub mod group;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod storage;
pub mod tune;
