//! Cluster metadata: topics, their ids, each partition's replica set (node, shard) with its
//! leader and leader epoch, and per-topic config overrides. Changed only through the metadata
//! log (`controller_log.rs`); every shard holds its own copy, applied in `version` order, and
//! derives its placement table from it. `cluster_metadata.toml` in the data directory is its
//! snapshot at Raft index `raft_index` (temporary file, fdatasync, rename).
//!
//! Format versions: 0 (before replica sets) recorded `placement = [shard, ...]` per topic;
//! `upgrade` turns that into one-replica sets on this node at start. 1 records `partitions` and
//! was the whole state. 2 is a snapshot of the metadata log (`raft_index`, `raft_term`; 0 for a
//! directory written before the log existed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{topic_keys, Config};
use crate::ids::{NodeId, ShardId, TopicId};
use crate::partition::PartitionConfig;
pub use crate::partition::TimestampType;
use crate::shard::placement::{PartitionAssignment, PlacementTable, Replica, TopicPlacement};

/// The metadata format this version writes.
pub const FORMAT_VERSION: u32 = 2;

pub const METADATA_FILE_NAME: &str = "cluster_metadata.toml";

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    /// 16-byte topic id (Metadata v10+, Fetch v13+), stored as a UUID string.
    pub topic_id: TopicId,
    /// Format 0 only: `placement[p]` was the shard owning partition `p` (see `upgrade`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<u32>,
    /// `partitions[p]`: replica set, leader and leader epoch of partition `p`.
    #[serde(default)]
    pub partitions: Vec<PartitionAssignment>,
    /// Topic-level overrides only; absent keys take the broker default.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// A broker as it registered: where clients reach it, its rack, how many shards it runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: NodeId,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    pub shards: u32,
    /// The node's CONTROLLER listener (node links), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<std::net::SocketAddr>,
    /// Silent past `broker.session.timeout.ms`: not in Metadata, given no new partitions, its
    /// partitions offline. Cleared when it heartbeats or registers again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
    /// Every client listener's advertised address (empty in registrations written before
    /// there were several; last, for the TOML form: `host`/`port` is then the only one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
}

impl BrokerRegistration {
    pub fn of(config: &Config) -> BrokerRegistration {
        BrokerRegistration {
            node_id: NodeId(config.node_id),
            host: config.advertised().0,
            port: config.advertised().1,
            rack: config.broker_rack.clone(),
            shards: config.cores as u32,
            controller: config.controller_listen,
            listeners: config
                .listeners
                .listeners
                .iter()
                .map(|listener| {
                    let (host, port) = listener.advertised.clone().unwrap_or_else(|| {
                        (listener.address.ip().to_string(), listener.address.port())
                    });
                    Endpoint {
                        name: listener.name.clone(),
                        host,
                        port,
                    }
                })
                .collect(),
            fenced: false,
        }
    }

    /// Where a client that connected through listener `name` reaches this broker (Kafka
    /// answers with the same listener on every broker; one without it is left out).
    pub fn endpoint(&self, name: &str) -> Option<(String, u16)> {
        if self.listeners.is_empty() {
            return Some((self.host.clone(), self.port));
        }
        self.listeners
            .iter()
            .find(|endpoint| endpoint.name == name)
            .map(|endpoint| (endpoint.host.clone(), endpoint.port))
    }
}

/// One advertised client listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    #[serde(default)]
    pub format_version: u32,
    pub version: u64,
    pub cluster_id: String,
    /// Round-robin cursor for placing new partitions on shards.
    #[serde(default)]
    pub next_shard: u32,
    /// Producer ids below this have been handed out (blocks are reserved here before use, so
    /// ids stay unique across restarts).
    #[serde(default)]
    pub next_producer_id: i64,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicMetadata>,
    /// The controller quorum's voters this history was written with (empty before format 2 or
    /// on a directory that never started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<NodeId>,
    /// Brokers that are not voters: Raft learners of the metadata log (they receive and apply it,
    /// and never vote). Added when they first register.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<NodeId>,
    /// Brokers that registered with the controller, by node id.
    #[serde(default)]
    pub brokers: Vec<BrokerRegistration>,
    /// The metadata log index and term this snapshot includes (format 2).
    #[serde(default)]
    pub raft_index: u64,
    #[serde(default)]
    pub raft_term: u64,
    /// SCRAM credentials by user name (AlterUserScramCredentials, `sluice user`); never a
    /// password. Checked by SASL on every shard's copy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, Vec<crate::security::scram::ScramCredential>>,
    /// ACLs (CreateAcls, `sluice acl`), checked by the authorizer on every shard's copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<crate::security::acl::AclBinding>,
}

impl ClusterMetadata {
    /// Adds or replaces `broker`'s registration (kept in node id order). True if it changed.
    pub fn register(&mut self, broker: BrokerRegistration) -> bool {
        match self
            .brokers
            .binary_search_by_key(&broker.node_id, |b| b.node_id)
        {
            Ok(index) if self.brokers[index] == broker => false,
            Ok(index) => {
                self.brokers[index] = broker;
                true
            }
            Err(index) => {
                self.brokers.insert(index, broker);
                true
            }
        }
    }

    pub fn broker(&self, node: NodeId) -> Option<&BrokerRegistration> {
        self.brokers.iter().find(|broker| broker.node_id == node)
    }

    /// Registered and not fenced.
    pub fn is_live(&self, node: NodeId) -> bool {
        self.broker(node).is_some_and(|broker| !broker.fenced)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: &TopicId) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == *topic_id)
    }

    /// Places `count` new one-replica partitions, round-robin over `slots` ((node, shard)
    /// pairs, ordered so consecutive partitions land on different nodes first, then on different
    /// shards); `explicit[p]`, when given, names the node of partition p (its shard still goes
    /// round-robin over that node's shards).
    /// Places `count` new partitions with `replication_factor` replicas each on `slots`
    /// (shard-major, from `placement_slots`): partition p's first replica — its preferred
    /// leader — takes the slot at the round-robin cursor, so leaders spread evenly over brokers
    /// and shards; the others take the next slots on distinct brokers, on other racks than the
    /// replicas chosen so far where `racks` allows. An explicit list names the brokers; each
    /// gets a shard round-robin.
    pub fn place_partitions(
        &mut self,
        count: u32,
        slots: &[(NodeId, ShardId)],
        replication_factor: usize,
        explicit: Option<&[Vec<NodeId>]>,
    ) -> Vec<PartitionAssignment> {
        assert!(!slots.is_empty(), "placement needs at least one broker");
        let rack = |node: NodeId| {
            self.brokers
                .iter()
                .find(|broker| broker.node_id == node)
                .and_then(|broker| broker.rack.clone())
        };
        let racks: Vec<Option<String>> = slots.iter().map(|(node, _)| rack(*node)).collect();
        (0..count as usize)
            .map(|index| {
                let cursor = self.next_shard as usize;
                self.next_shard = self.next_shard.wrapping_add(1);
                let replicas: Vec<Replica> = match explicit.and_then(|lists| lists.get(index)) {
                    Some(nodes) => nodes
                        .iter()
                        .map(|node| {
                            let on_node: Vec<ShardId> = slots
                                .iter()
                                .filter(|(slot_node, _)| slot_node == node)
                                .map(|(_, shard)| *shard)
                                .collect();
                            let shard = on_node
                                .get(cursor % on_node.len().max(1))
                                .copied()
                                .unwrap_or(ShardId(0));
                            Replica { node: *node, shard }
                        })
                        .collect(),
                    None => {
                        let mut chosen: Vec<usize> = vec![cursor % slots.len()];
                        for avoid_racks in [true, false] {
                            for step in 1..slots.len() {
                                if chosen.len() >= replication_factor {
                                    break;
                                }
                                let at = (cursor + step) % slots.len();
                                let taken_node = chosen.iter().any(|c| slots[*c].0 == slots[at].0);
                                let taken_rack = racks[at].is_some()
                                    && chosen.iter().any(|c| racks[*c] == racks[at]);
                                let rack_refused = avoid_racks && taken_rack;
                                if !taken_node && !rack_refused {
                                    chosen.push(at);
                                }
                            }
                        }
                        chosen
                            .into_iter()
                            .map(|at| Replica {
                                node: slots[at].0,
                                shard: slots[at].1,
                            })
                            .collect()
                    }
                };
                PartitionAssignment {
                    leader: replicas[0].node,
                    replicas,
                    leader_epoch: crate::ids::LeaderEpoch(0),
                    isr: Vec::new(),
                }
            })
            .collect()
    }

    /// Every (node, shard) a partition can be placed on: registered brokers (or `this` alone
    /// with `shard_count` shards before any registered), shard-major so that consecutive
    /// partitions go to different nodes.
    pub fn placement_slots(&self, this: NodeId, shard_count: usize) -> Vec<(NodeId, ShardId)> {
        let live: Vec<(NodeId, u32)> = self
            .brokers
            .iter()
            .filter(|broker| !broker.fenced)
            .map(|broker| (broker.node_id, broker.shards.max(1)))
            .collect();
        let brokers = if live.is_empty() {
            vec![(this, shard_count as u32)]
        } else {
            live
        };
        let most = brokers.iter().map(|(_, shards)| *shards).max().unwrap_or(1);
        (0..most)
            .flat_map(|shard| {
                brokers
                    .iter()
                    .filter(move |(_, shards)| shard < *shards)
                    .map(move |(node, _)| (*node, ShardId(shard)))
            })
            .collect()
    }

    /// Brings metadata of an older format to this one: format 0's per-topic shard list becomes
    /// one-replica sets on `node`, led by it at epoch 0. True if anything changed.
    pub fn upgrade(&mut self, node: NodeId) -> bool {
        let mut changed = self.format_version != FORMAT_VERSION;
        for topic in self.topics.values_mut() {
            if topic.partitions.is_empty() && !topic.placement.is_empty() {
                topic.partitions = topic
                    .placement
                    .iter()
                    .map(|&shard| PartitionAssignment::single(node, ShardId(shard)))
                    .collect();
                changed = true;
            }
            topic.placement.clear();
        }
        self.format_version = FORMAT_VERSION;
        changed
    }

    /// A new leader epoch for every partition led by `node`, as Kafka's controller elects the
    /// sole broker again when it comes back. Returns the topics that changed.
    pub fn bump_leader_epochs(&mut self, node: NodeId) -> Vec<String> {
        let mut changed = Vec::new();
        for topic in self.topics.values_mut() {
            let mut bumped = false;
            for assignment in &mut topic.partitions {
                if assignment.leader == node {
                    assignment.leader_epoch = assignment.leader_epoch.next();
                    bumped = true;
                }
            }
            if bumped {
                changed.push(topic.name.clone());
            }
        }
        changed
    }

    /// The placement table shards route with, for this version.
    pub fn placement_table(&self, node: NodeId) -> PlacementTable {
        let mut table = PlacementTable::new(self.version, node);
        for (name, topic) in &self.topics {
            table.insert(
                name,
                TopicPlacement {
                    topic_id: topic.topic_id,
                    partitions: topic.partitions.clone(),
                },
            );
        }
        table
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("metadata is always representable in TOML")
    }

    pub fn from_toml(text: &str) -> Result<ClusterMetadata, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }
}

/// Kafka's internal topics (only these are flagged internal in Metadata).
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name must be 1..={TOPIC_NAME_BYTES_MAX} characters"
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name {name:?} contains illegal character {bad:?} (legal: a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// A topic's effective configuration: its overrides on top of the broker defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: u32,
    pub cleanup_policy: String,
    pub message_timestamp_type: TimestampType,
    /// `index.interval.bytes`: bytes between offset index entries.
    pub index_interval_bytes: u32,
    /// `min.insync.replicas`: an acks=all produce needs this many in-sync replicas.
    pub min_insync_replicas: u32,
}

/// Log settings of a topic without overrides.
pub fn broker_log_config(config: &Config) -> crate::storage::LogConfig {
    crate::storage::LogConfig {
        segment_bytes: config.log_segment_bytes,
        segment_ms: config.log_roll_ms,
        retention_ms: config.log_retention_ms,
        retention_bytes: config.log_retention_bytes,
        index_interval_bytes: config.log_index_interval_bytes,
        preallocate_bytes: config.log_preallocate_bytes.min(config.log_segment_bytes),
        flush_delay_us: config.log_flush_delay_us,
        dsync_write_bytes_max: config.log_flush_dsync_bytes_max,
        zero_ahead_bytes: config.log_segment_zero_ahead_bytes,
    }
}

impl TopicConfig {
    pub fn resolve(config: &Config, topic: &TopicMetadata) -> TopicConfig {
        let value = |key: &str| -> String {
            topic
                .configs
                .get(key)
                .cloned()
                .or_else(|| topic_keys::find(key).map(|found| found.default_value(config)))
                .unwrap_or_default()
        };
        let int = |key: &str, fallback: i64| value(key).parse::<i64>().unwrap_or(fallback);
        TopicConfig {
            retention_ms: int("retention.ms", config.log_retention_ms),
            retention_bytes: int("retention.bytes", config.log_retention_bytes),
            segment_bytes: int("segment.bytes", config.log_segment_bytes as i64) as u64,
            segment_ms: int("segment.ms", config.log_roll_ms),
            max_message_bytes: int("max.message.bytes", i64::from(config.message_max_bytes)) as u32,
            cleanup_policy: value("cleanup.policy"),
            index_interval_bytes: int(
                "index.interval.bytes",
                i64::from(config.log_index_interval_bytes),
            )
            .clamp(0, i64::from(u32::MAX)) as u32,
            min_insync_replicas: int("min.insync.replicas", 1).clamp(1, i64::from(i32::MAX)) as u32,
            message_timestamp_type: if value("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
        }
    }

    /// Checks the resolved settings against the storage's own limits.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        self.log_config(config)
            .validate()
            .map_err(|error| error.to_string())
    }

    /// What a partition of this topic needs.
    pub fn partition_config(&self, config: &Config) -> PartitionConfig {
        PartitionConfig {
            log: self.log_config(config),
            max_message_bytes: self.max_message_bytes,
            timestamp_type: self.message_timestamp_type,
        }
    }

    pub fn log_config(&self, config: &Config) -> crate::storage::LogConfig {
        crate::storage::LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            index_interval_bytes: self.index_interval_bytes,
            preallocate_bytes: config.log_preallocate_bytes.min(self.segment_bytes),
            flush_delay_us: config.log_flush_delay_us,
            dsync_write_bytes_max: config.log_flush_dsync_bytes_max,
            zero_ahead_bytes: config.log_segment_zero_ahead_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_brokers_first_then_shards() {
        let mut metadata = ClusterMetadata::default();
        for (node, shards) in [(1, 2), (2, 2), (3, 1)] {
            metadata.register(BrokerRegistration {
                node_id: NodeId(node),
                host: format!("127.0.0.{node}"),
                port: 9092,
                rack: None,
                shards,
                controller: None,
                fenced: false,
                listeners: Vec::new(),
            });
        }
        let slots = metadata.placement_slots(NodeId(1), 2);
        let placed: Vec<(i32, u32)> = metadata
            .place_partitions(6, &slots, 1, None)
            .iter()
            .map(|p| (p.leader.0, p.replicas[0].shard.0))
            .collect();
        assert_eq!(placed, vec![(1, 0), (2, 0), (3, 0), (1, 1), (2, 1), (1, 0)]);
        // Three replicas each: all brokers, leaders rotating over them.
        let placed: Vec<Vec<i32>> = metadata
            .place_partitions(3, &slots, 3, None)
            .iter()
            .map(|p| p.replicas.iter().map(|r| r.node.0).collect())
            .collect();
        assert_eq!(placed, vec![vec![2, 3, 1], vec![3, 1, 2], vec![1, 2, 3]]);
        let explicit = vec![vec![NodeId(3)], vec![NodeId(2)]];
        let placed: Vec<i32> = metadata
            .place_partitions(2, &slots, 1, Some(&explicit))
            .iter()
            .map(|p| p.leader.0)
            .collect();
        assert_eq!(placed, vec![3, 2], "explicit assignments are honoured");
    }

    #[test]
    fn metadata_round_trips_through_toml() {
        let mut metadata = ClusterMetadata {
            format_version: FORMAT_VERSION,
            version: 3,
            cluster_id: "abc".into(),
            ..Default::default()
        };
        let node = NodeId(0);
        let slots = metadata.placement_slots(node, 2);
        let partitions = metadata.place_partitions(3, &slots, 1, None);
        let shards: Vec<ShardId> = partitions.iter().map(|p| p.replicas[0].shard).collect();
        assert_eq!(shards, vec![ShardId(0), ShardId(1), ShardId(0)]);
        metadata.topics.insert(
            "orders".into(),
            TopicMetadata {
                name: "orders".into(),
                topic_id: TopicId::new_random(),
                placement: Vec::new(),
                partitions,
                configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            },
        );
        let text = metadata.to_toml();
        assert_eq!(ClusterMetadata::from_toml(&text).unwrap(), metadata);
        let table = metadata.placement_table(node);
        assert_eq!(table.owner_shard("orders", 1, 2), Some(ShardId(1)));
        assert_eq!(table.owner_shard("orders", 1, 1), Some(ShardId(0)));
        assert_eq!(table.owner_shard("orders", 3, 2), None);
    }

    /// A data directory written before replica sets existed opens with this version.
    #[test]
    fn format_zero_metadata_upgrades_to_replica_sets() {
        let text = r#"
version = 7
cluster_id = "c1"
next_shard = 3
next_producer_id = 1000

[topics.orders]
name = "orders"
topic_id = "0b6a1f3e-4d1c-4b8e-9a43-5c1d2e3f4a5b"
placement = [0, 1, 0]

[topics.orders.configs]
"retention.ms" = "1000"
"#;
        let mut metadata = ClusterMetadata::from_toml(text).unwrap();
        assert!(metadata.upgrade(NodeId(0)));
        assert_eq!(metadata.format_version, FORMAT_VERSION);
        let orders = metadata.topic("orders").unwrap();
        assert!(orders.placement.is_empty());
        assert_eq!(orders.partitions.len(), 3);
        assert_eq!(orders.partitions[1].replicas[0].shard, ShardId(1));
        assert_eq!(orders.partitions[1].leader, NodeId(0));
        assert_eq!(
            orders.topic_id,
            TopicId::parse("0b6a1f3e-4d1c-4b8e-9a43-5c1d2e3f4a5b").unwrap()
        );
        let again = ClusterMetadata::from_toml(&metadata.to_toml()).unwrap();
        assert_eq!(again, metadata);
        assert!(!metadata.clone().upgrade(NodeId(0)), "already current");
        assert!(!metadata.bump_leader_epochs(NodeId(0)).is_empty());
        assert_eq!(
            metadata.topic("orders").unwrap().partitions[2].leader_epoch,
            crate::ids::LeaderEpoch(1)
        );
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn topic_config_overrides_defaults() {
        let config = Config::default();
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: TopicId::new_random(),
            placement: Vec::new(),
            partitions: vec![PartitionAssignment::single(NodeId(0), ShardId(0))],
            configs: [(
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            )]
            .into(),
        };
        let resolved = TopicConfig::resolve(&config, &topic);
        assert_eq!(
            resolved.message_timestamp_type,
            TimestampType::LogAppendTime
        );
        assert_eq!(resolved.retention_ms, config.log_retention_ms);
    }
}
