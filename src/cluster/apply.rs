//! Applying a metadata version on one shard: install it and its placement table, close and
//! discard the partitions of deleted topics, open the replicas newly placed on this shard, and
//! push config and leader-epoch changes to the open ones.

use std::rc::Rc;

use crate::cluster::metadata::{ClusterMetadata, TopicConfig};
use crate::cluster::state;
use crate::ids::TopicPartition;
use crate::replication::replicas;
use crate::shard::placement::PlacementTable;
use crate::shard::Shard;

/// Installs a new metadata version (older or equal versions are ignored).
pub async fn apply_metadata(shard: &Rc<Shard>, metadata: ClusterMetadata) {
    let cluster = state::of(shard);
    let Ok(_applying) = cluster.apply_gate.acquire_permit(1).await else {
        return;
    };
    let previous = cluster.metadata();
    if metadata.version <= previous.version && previous.version != 0 {
        return;
    }
    let metadata = Rc::new(metadata);
    cluster.set_metadata(metadata.clone());
    let previous_table = shard.placement();
    shard.set_placement(metadata.placement_table(shard.node));
    remove_deleted_topics(shard, &previous, &previous_table, &metadata).await;
    open_hosted_partitions(shard, &metadata, Some(&previous)).await;
}

/// `previous_table` is the placement the shard routed with before this version.
async fn remove_deleted_topics(
    shard: &Shard,
    previous: &ClusterMetadata,
    previous_table: &PlacementTable,
    current: &ClusterMetadata,
) {
    for (name, topic) in &previous.topics {
        let still_there = current
            .topic(name)
            .is_some_and(|now| now.topic_id == topic.topic_id);
        if still_there {
            continue;
        }
        // Every directory placed here goes, opened or not (an offline partition too).
        let indexes: Vec<i32> = (0..topic.partitions.len() as i32)
            .filter(|&index| {
                previous_table.owner_shard(name, index, shard.shard_count) == Some(shard.id)
            })
            .collect();
        for index in &indexes {
            replicas::stop(shard, &TopicPartition::new(name, *index));
        }
        shard
            .partitions
            .remove_topic(name, topic.topic_id, &indexes)
            .await;
    }
}

/// Opens every replica placed on this shard that is not open yet; pushes configs and leader
/// epochs to the open ones. A topic unchanged since `previous` whose replicas here are all open
/// is skipped, so a version that adds one topic costs work for that topic only (a partition
/// that failed to open is retried with every version).
pub async fn open_hosted_partitions(
    shard: &Rc<Shard>,
    metadata: &ClusterMetadata,
    previous: Option<&ClusterMetadata>,
) {
    let placement = shard.placement();
    for (name, topic) in &metadata.topics {
        let unchanged = previous.and_then(|previous| previous.topic(name)) == Some(topic);
        if unchanged && all_hosted_open(shard, &placement, name, topic.partitions.len()) {
            continue;
        }
        let partition_config =
            TopicConfig::resolve(&shard.config, topic).partition_config(&shard.config);
        for (index, assignment) in topic.partitions.iter().enumerate() {
            let index = index as i32;
            if placement.owner_shard(name, index, shard.shard_count) != Some(shard.id) {
                continue;
            }
            if let Err(error) = partition_config.log.validate() {
                log::error!("{name}-{index}: config refused by storage: {error}");
                continue;
            }
            let replicated = assignment.replicas.len() > 1;
            if let Some(partition) = shard.partitions.get(name, index) {
                partition.set_config(partition_config.clone());
                if replicated {
                    // Its Raft group keeps the epochs (terms); a group that failed to start is
                    // tried again with every version.
                    host_group(shard, partition, assignment).await;
                    continue;
                }
                if assignment.leader_epoch > partition.leader_epoch() {
                    if let Err(error) = partition.set_leader_epoch(assignment.leader_epoch).await {
                        log::error!("{name}-{index}: recording leader epoch: {error}");
                    }
                }
                continue;
            }
            let opened = shard
                .partitions
                .open(
                    TopicPartition::new(name, index),
                    topic.topic_id,
                    partition_config.clone(),
                    assignment.leader_epoch,
                    replicated,
                )
                .await;
            if let (Ok(partition), true) = (&opened, replicated) {
                host_group(shard, partition.clone(), assignment).await;
            }
            if let Err(error) = opened {
                // The partition stays offline (clients get KAFKA_STORAGE_ERROR / unknown);
                // the rest of the broker keeps serving.
                log::error!(
                    "shard {:?}: partition {name}-{index} ({}) is offline: {error}",
                    shard.id,
                    shard.partitions.partition_dir(name, index).display()
                );
            }
        }
    }
}

/// Starts the Raft group of a replicated partition opened here (if it does not run yet).
async fn host_group(
    shard: &Rc<Shard>,
    partition: Rc<crate::partition::Partition>,
    assignment: &crate::shard::placement::PartitionAssignment,
) {
    let replicas_here = shard.service::<replicas::HostedReplicas>();
    if replicas_here.is_hosted(&partition.topic_partition) {
        return;
    }
    let name = partition.topic_partition.to_string();
    let voters = assignment.replica_nodes();
    if let Err(error) = replicas::host(shard, partition, &voters, timing(&shard.config)).await {
        log::error!("{name}: not replicating (offline for writes): {error}");
    }
}

/// Partition groups use the controller quorum's timing keys (documented in README).
pub fn timing(config: &crate::config::Config) -> replicas::Timing {
    let ticks = |ms: u64| (ms / replicas::TICK.as_millis() as u64).max(1) as usize;
    let heartbeat_ticks = ticks(config.raft_heartbeat_interval_ms);
    replicas::Timing {
        election_ticks: ticks(config.controller_quorum_election_timeout_ms)
            .max(heartbeat_ticks + 1),
        heartbeat_ticks,
        replica_lag: std::time::Duration::from_millis(config.replica_lag_time_max_ms),
    }
}

/// True if every replica of `topic` placed on this shard is open.
fn all_hosted_open(
    shard: &Shard,
    placement: &crate::shard::placement::PlacementTable,
    topic: &str,
    partitions: usize,
) -> bool {
    (0..partitions as i32).all(|index| {
        placement.owner_shard(topic, index, shard.shard_count) != Some(shard.id)
            || shard.partitions.get(topic, index).is_some()
    })
}
