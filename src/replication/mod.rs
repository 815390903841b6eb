//! Replication: Raft groups driven by the shard that owns them (DESIGN §5), built on the `raft`
//! crate (tikv raft-rs, a sans-I/O state machine). The controller quorum's metadata log
//! (`cluster::controller_log`) runs on `group.rs`; partition replicas run on `replica.rs`, whose
//! Raft log is the partition's Kafka log, each driven by the shard that owns the partition
//! (`replicas.rs`).
//!
//! - `durable_log.rs`: a small file-backed Raft log (entries and hard state in one append-only
//!   file of checksummed frames, fdatasync'ed before anything it holds is acted on; torn tails
//!   are cut at recovery). It suits the controller's log (small entries, snapshots every few
//!   thousand); partition groups will store their entries in the partition's Kafka segments.
//! - `group.rs`: one Raft node with its in-memory log (`MemStorage`) and its durable copy, plus
//!   the Ready loop step that persists, sends and returns committed entries.
//! - `logger.rs`: raft-rs logs through slog; this forwards its records to `log`.
//! - `replica.rs`: one partition replica's Raft node over its Kafka log (window of entries in
//!   memory, conflicting suffixes truncated, snapshots installed by copying the leader's
//!   batches); `replica_state.rs`: its `raft-state` file (hard state, replica set, anchors
//!   from Raft indexes to Kafka offsets).
//! - `replicas.rs`: the replicas a shard hosts: an actor per group, one ticker per shard,
//!   frames to and from peer nodes, produce proposals and commit waits, hand-over on SIGTERM,
//!   the leaders this node knows of (for Metadata).
//! - `transport.rs`, `codec.rs`: node links over the CONTROLLER listener and the frames they
//!   carry (Raft messages as protobuf).
//! - `simulation.rs` (tests): seeded fault schedules against three real replicas in one thread.
//!
//! # Raft indexes and terms against Kafka offsets and leader epochs
//!
//! For partition groups (the controller's log follows the same rules):
//! - One Raft entry is one Kafka record batch, stored once, as received, in the partition's
//!   segments: the Kafka log is the Raft log, there is no second write-ahead log.
//! - The Raft term is the Kafka leader epoch: a leader of term T stamps T into every batch's
//!   `partitionLeaderEpoch`, and the leader-epoch cache (epoch -> first offset) is the map from
//!   terms to the first offset written in them. Terms only grow, so epochs only grow.
//! - Raft indexes count entries, Kafka offsets count records: a batch of n records at index i
//!   takes offsets [o, o + n) where o is the previous batch's next offset. Both are assigned by
//!   the leader in the same order, so each is a deterministic function of the log on every
//!   replica. A replica keeps the offsets of its newest entries in memory and, in `raft-state`,
//!   anchors (index, term, end offset) at committed points; at open it numbers the batches
//!   after the newest anchor.
//! - Entries that are not client data (a new leader's empty entry, configuration changes) are
//!   stored as Kafka control batches of one record (offset consumed, skipped by consumers, as
//!   transaction markers are), so no consumer ever sees them as records and offsets stay dense.
//! - The high watermark is the Kafka offset after the last committed entry; nothing above it is
//!   served to consumers. A deposed leader truncates its uncommitted suffix (Raft's conflict
//!   rule), and the leader-epoch cache is truncated with it.
//!
//! # Changing a replica set (designed here; the reassignment issue builds it)
//!
//! Reassignment, adding and removing nodes are Raft configuration changes of the partition's
//! group, by joint consensus (raft-rs `ConfChangeV2`), and the layers already carry them:
//! - Storage: a configuration change is an entry like any other, stored as a
//!   `CONTROL_RAFT_CONF_CHANGE` control batch (`replica.rs`, `batch_for_entry`), so it is
//!   replicated, truncated and recovered with the log and never reaches consumers; `raft-state`
//!   holds the voters and learners, and snapshots carry the `ConfState`, so a replica installing
//!   one learns the configuration with the batches.
//! - Still to build: applying a committed change (`RawNode::apply_conf_change`, then writing the
//!   new voters and learners to `raft-state` before anything else is acted on), and the
//!   controller's side. A move from replicas A to B goes: the controller records the target set
//!   in the metadata log; the nodes of B \ A open the partition and join its group as learners
//!   (they catch up from the leader's log or a snapshot, throttled as catch-up is); once they
//!   are caught up the leader proposes the joint configuration (A, B) and, once that commits,
//!   the final B (raft-rs's auto-leave), handing leadership over first if it is leaving; the
//!   leader reports the committed set and the controller rewrites the placement, after which
//!   the nodes of A \ B close and delete their replica. A replica never decides membership from
//!   the metadata alone, only from its group's committed configuration, so a controller failover
//!   mid-move resumes from what the group committed.
//! - Quiescence (`replicas.rs`) already refuses to quiesce with a change pending.
//!
//! # Codec
//!
//! The crate is built with its `protobuf-codec` feature, not `prost-codec` as the proof of
//! concept in DESIGN §5 had it: prost-codec generates its types at build time with a system
//! `protoc`, which a fresh Debian machine does not have (README's first command must work there);
//! protobuf-codec ships its own. Raft messages never cross the network as protobuf: node-to-node
//! traffic uses Sluice's own framing, so the protobuf 2 parser (RUSTSEC-2024-0437, recursion on
//! untrusted input; in the tree with either codec) never reads peer bytes.

pub mod codec;
pub mod durable_log;
pub mod group;
pub mod link_stream;
pub mod logger;
pub mod replica;
pub mod replica_state;
pub mod replicas;
#[cfg(test)]
mod simulation;
pub mod transport;

pub use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
