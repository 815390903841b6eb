//! Sluice: a Kafka-wire-compatible streaming broker, one glommio shard per core.
//!
//! Layers, lowest first (DESIGN §7; each folder opens with a `//!` header saying what it owns).
//! A layer imports only layers below it; peers on one line never import each other in a circle.
//! 1. `protocol/` (Kafka codec glue, record batch header, error codes, frames; no I/O),
//!    `config/` (the one `Config` and the one list of its keys), `ids.rs` (identifier and
//!    offset newtypes), `metrics.rs` (each shard's lock-free counters), `logging.rs` (the
//!    log filter `log.level` changes at run time), `futures.rs`
//!    (join/select combinators), `rate_limited_log.rs` (log lines clients can trigger)
//! 2. `storage/`: per-partition segment log, indexes, recovery, retention, read cache. No sockets.
//! 3. `partition/`: one hosted replica (log, producer state, watermarks, leader epochs) and the
//!    owner-side operations on it.
//! 4. `shard/`: executor pool, placement table, typed requests over the channel mesh, routing.
//! 5. `replication/`: Raft groups (raft-rs) driven by the shard that owns them: durable log,
//!    Ready step. DESIGN §7 draws it beside `cluster/` and `group/`; it sits below them because
//!    they are built on it (the metadata log is a Raft group; replicated partitions will be).
//!    `security/` (TLS, principals) sits on the same line: `cluster/` stores users and ACLs
//!    with its types, `server/` applies it.
//! 6. `cluster/` (metadata, its single writer and its log), `group/` (consumer groups and
//!    offsets).
//! 7. `server/`: listener, connections, one handler file per Kafka API, the metrics endpoint.
//! 8. `cli/` (the one clap definition of every `sluice` subcommand, the key tables it prints,
//!    and the operator commands on the bench's Kafka client), `bin/` (the binary's `main`), `tune/` (`sluice tune`, the OS tuning checks; a
//!    CLI, not on a shard), `bench` (the load generator).
//! - `allocator.rs`: the process allocator (huge requests reserve address space only).
//! - `bench` (source in `perf/src/`): `sluice bench`, the load generator. Plain threads and
//!   blocking sockets; it never runs inside the broker.

pub mod allocator;
#[path = "../perf/src/mod.rs"]
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod futures;
pub mod group;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod rate_limited_log;
pub mod replication;
pub mod security;
pub mod server;
pub mod shard;
pub mod storage;
pub mod tune;
