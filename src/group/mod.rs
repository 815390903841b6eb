//! Consumer groups and committed offsets. A group lives on the shard that owns its partition of
//! the internal `__consumer_offsets` topic (Kafka's placement: the Java hash of the group id
//! modulo the topic's partition count). Group requests arriving on any shard are forwarded there
//! over the mesh, one type per request with its own answer type (`request.rs`: `GroupRequest`
//! carried by `ToCoordinator`); the answer comes back the same way.
//!
//! Files: `state.rs` (one group, the rebalance state machine), `coordinator.rs` (join phase,
//! persistence, replay, timers), `operations.rs` (sync, heartbeat, leave, offsets, deletes),
//! `request.rs` (the requests and their answers), `records.rs` (Kafka's `__consumer_offsets`
//! record formats).
//!
//! Durability: offsets and completed generations are appended to `__consumer_offsets` and
//! acknowledged after fdatasync; they are replayed when the shard starts. The topic is kept
//! with infinite retention until log compaction exists (README: limits).

pub mod coordinator;
pub mod operations;
pub mod records;
pub mod request;
pub mod state;

use std::rc::Rc;

use crate::shard::Shard;
use coordinator::GroupCoordinator;
use request::{DescribedGroup, DescribedMember, ListedGroup};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group error codes (Kafka's `Errors`).
pub mod error {
    use crate::protocol::error::ErrorCode;
    pub const OFFSET_METADATA_TOO_LARGE: ErrorCode = 12;
    pub const INCONSISTENT_GROUP_PROTOCOL: ErrorCode = 23;
    pub const INVALID_SESSION_TIMEOUT: ErrorCode = 26;
    pub const NON_EMPTY_GROUP: ErrorCode = 68;
    pub const GROUP_ID_NOT_FOUND: ErrorCode = 69;
    pub const MEMBER_ID_REQUIRED: ErrorCode = 79;
    pub const GROUP_MAX_SIZE_REACHED: ErrorCode = 81;
    pub const FENCED_INSTANCE_ID: ErrorCode = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: ErrorCode = 86;
}

/// Java's `String.hashCode` over UTF-16 code units, as Kafka uses for placement.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group (Kafka: `Utils.abs(hash) % partitions`,
/// where `Utils.abs(Integer.MIN_VALUE)` is 0).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "partitions={partitions}");
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

/// The group coordinator of `shard` (registered by `install`).
pub fn coordinator_of(shard: &Shard) -> Rc<GroupCoordinator> {
    shard.service::<GroupCoordinator>()
}

/// Partition count of `__consumer_offsets` (existing topic, else what it will be created with).
pub fn offsets_partitions(shard: &Shard) -> i32 {
    shard
        .placement()
        .partition_count(OFFSETS_TOPIC)
        .unwrap_or(shard.config.offsets_topic_num_partitions)
}

/// Sets up the coordinator on `shard`: registers it, replays each `__consumer_offsets`
/// partition this shard opens, and starts its timers. Called before any partition opens.
pub fn install(shard: &Rc<Shard>) {
    let coordinator = GroupCoordinator::new();
    shard.register(coordinator.clone());
    let loader = coordinator.clone();
    shard.partitions.on_opened(Box::new(move |partition| {
        let loader = loader.clone();
        Box::pin(async move {
            // A replicated offsets partition is loaded when its replica here leads
            // (`GroupCoordinator::follow_leadership`).
            if &*partition.topic_partition.topic == OFFSETS_TOPIC && !partition.is_replicated() {
                // A partial replay is logged and leaves the partition unloaded (its groups
                // answer COORDINATOR_LOAD_IN_PROGRESS).
                let _loaded = loader.load_partition(&partition, 0).await;
            }
        })
    }));
    start_timers(shard);
}

/// How often group sessions, join deadlines and initial delays are checked.
const GROUP_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Coordinator timers: session expiry and join deadlines every `GROUP_TICK`, expired committed
/// offsets every `offsets.retention.check.interval.ms`.
fn start_timers(shard: &Rc<Shard>) {
    let ticking = shard.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(GROUP_TICK).await;
            let coordinator = coordinator_of(&ticking);
            coordinator.follow_leadership(&ticking);
            coordinator.tick(&ticking);
        }
    })
    .detach();
    let expiring = shard.clone();
    glommio::spawn_local(async move {
        let interval =
            std::time::Duration::from_millis(expiring.config.offsets_retention_check_interval_ms);
        let retention_ms = expiring
            .config
            .offsets_retention_minutes
            .saturating_mul(60_000);
        loop {
            glommio::timer::sleep(interval).await;
            coordinator_of(&expiring)
                .expire_offsets(&expiring, retention_ms)
                .await;
        }
    })
    .detach();
}

impl coordinator::GroupCoordinator {
    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let groups = self.groups.borrow();
        match groups.get(group_id) {
            None => DescribedGroup {
                error_code: crate::protocol::error::NONE,
                state: "Dead",
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
            Some(group) => {
                let protocol = group.protocol_name.clone().unwrap_or_default();
                DescribedGroup {
                    error_code: crate::protocol::error::NONE,
                    state: group.state.name(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol: protocol.clone(),
                    members: group
                        .members
                        .values()
                        .map(|member| DescribedMember {
                            member_id: member.member_id.clone(),
                            group_instance_id: member.group_instance_id.clone(),
                            client_id: member.client_id.clone(),
                            client_host: member.client_host.clone(),
                            metadata: member.metadata_for(&protocol),
                            assignment: member.assignment.clone(),
                        })
                        .collect(),
                }
            }
        }
    }

    pub fn list(&self) -> Vec<ListedGroup> {
        self.groups
            .borrow()
            .values()
            .map(|group| ListedGroup {
                group_id: group.group_id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                state: group.state.name(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_java_hash_code() {
        // Values of "".hashCode(), "a".hashCode(), "my-group".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        // Kafka: Utils.abs(-1906497762) % 50 = 12.
        assert_eq!(partition_for("my-group", 50), 12);
        for group in ["x", "consumers-of-orders", "ünïcødé"] {
            let partition = partition_for(group, 16);
            assert!((0..16).contains(&partition));
        }
    }
}
