//! Metadata: this node as the only broker (and controller), and for each topic its id and
//! partitions with their replica sets, leaders and leader epochs. Unknown topics are created here
//! when `auto.create.topics.enable` is on and the client allows it, as Kafka does; like Kafka,
//! the answer that starts a creation reports those topics UNKNOWN_TOPIC_OR_PARTITION and later
//! answers list them. Clients rely on that gap: a consumer whose subscribed topic was deleted
//! must see it missing once even when its own refresh re-creates it (librdkafka 0113
//! `h_delete_topic` with allow.auto.create.topics=true).

use std::collections::HashSet;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{auto_create_topics, Request};
use crate::cluster::metadata::{validate_topic_name, ClusterMetadata, TopicMetadata};
use crate::ids::TopicId;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::replication::replicas::LocalLeaders;
use crate::security::acl::{Operation, ResourceType};
use crate::server::authorize;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: MetadataRequest = request.decode()?;
    let version = request.api_version;
    let allow_auto_create = version < 4 || body.allow_auto_topic_creation;
    let requested: Option<Vec<(Option<String>, [u8; 16])>> = match &body.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .iter()
                .map(|topic| {
                    (
                        topic.name.as_ref().map(|name| name.0.to_string()),
                        *topic.topic_id.as_bytes(),
                    )
                })
                .collect(),
        ),
    };
    let session = request.session.clone();
    let describable = |name: &str| {
        authorize::allowed(
            shard,
            &session,
            Operation::Describe,
            ResourceType::Topic,
            name,
        )
    };
    let mut just_created: HashSet<String> = HashSet::new();
    if let Some(requested) = &requested {
        if allow_auto_create && shard.config.auto_create_topics_enable {
            let before = crate::cluster::state::of(shard).metadata();
            just_created = requested
                .iter()
                .filter_map(|(name, _)| name.clone())
                .filter(|name| before.topic(name).is_none())
                // Auto-creation needs Create, on the cluster or on the topic (Kafka's rule).
                .filter(|name| {
                    describable(name)
                        && (authorize::cluster_allowed(shard, &session, Operation::Create)
                            || authorize::allowed(
                                shard,
                                &session,
                                Operation::Create,
                                ResourceType::Topic,
                                name,
                            ))
                })
                .collect();
            auto_create_topics(shard, just_created.iter().cloned()).await;
        }
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    let mut response = MetadataResponse::default();
    response.brokers = super::live_brokers(shard, &metadata, &request.session.listener.name)
        .into_iter()
        .map(|registered| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(registered.node_id.0);
            broker.host = StrBytes::from_string(registered.host);
            broker.port = i32::from(registered.port);
            broker.rack = registered.rack.map(StrBytes::from_string);
            broker
        })
        .collect();
    response.cluster_id = Some(StrBytes::from_string(metadata.cluster_id.clone()));
    response.controller_id = BrokerId(super::controller_id(shard));
    let local = shard.service::<std::sync::Arc<LocalLeaders>>();
    response.topics = match requested {
        None => metadata
            .topics
            .values()
            .filter(|topic| describable(&topic.name))
            .map(|topic| describe_topic(topic, &metadata, &local))
            .collect(),
        Some(requested) => requested
            .iter()
            .map(|(name, topic_id)| match name {
                // Whether it exists is not told to a principal that may not Describe it.
                Some(name) if !describable(name) => {
                    missing_topic(Some(name), *topic_id, error::TOPIC_AUTHORIZATION_FAILED)
                }
                Some(name) => match metadata.topic(name) {
                    Some(_) if just_created.contains(name) => {
                        missing_topic(Some(name), *topic_id, error::UNKNOWN_TOPIC_OR_PARTITION)
                    }
                    Some(topic) => describe_topic(topic, &metadata, &local),
                    None => missing_topic(Some(name), *topic_id, name_error(name)),
                },
                None => match metadata.topic_by_id(&TopicId(*topic_id)) {
                    Some(topic) if !describable(&topic.name) => {
                        missing_topic(None, *topic_id, error::TOPIC_AUTHORIZATION_FAILED)
                    }
                    Some(topic) => describe_topic(topic, &metadata, &local),
                    None => missing_topic(None, *topic_id, error::UNKNOWN_TOPIC_ID),
                },
            })
            .collect(),
    };
    request.respond(&response)
}

fn name_error(name: &str) -> i16 {
    if validate_topic_name(name).is_err() {
        error::INVALID_TOPIC_EXCEPTION
    } else {
        error::UNKNOWN_TOPIC_OR_PARTITION
    }
}

fn missing_topic(name: Option<&str>, topic_id: [u8; 16], error_code: i16) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.error_code = error_code;
    topic.name = name.map(|name| TopicName(StrBytes::from_string(name.to_string())));
    topic.topic_id = uuid::Uuid::from_bytes(topic_id);
    topic
}

/// The leader of a partition as clients are told of it, and its leader epoch: the metadata's,
/// unless this node hosts a replica whose Raft group knows a leader in a term at least as new
/// (fresher than the controller's record, which follows it). Only a leader the group knows
/// replaces the metadata's: "no leader known here" (a node cut off from its peers) would hide
/// the real leader from clients that ask this node, while the metadata's entry carries its
/// epoch and clients that know a newer one ignore it (KIP-320).
pub fn current_leader(
    assignment: &crate::shard::placement::PartitionAssignment,
    topic_partition: &crate::ids::TopicPartition,
    local: &LocalLeaders,
) -> (i32, i32) {
    let metadata_leader = (assignment.leader.0, assignment.leader_epoch.0);
    match local.get(topic_partition) {
        Some((leader, term))
            if leader >= 0
                && term >= i64::from(assignment.leader_epoch.0)
                && leader != assignment.leader.0 =>
        {
            (leader, term.min(i64::from(i32::MAX)) as i32)
        }
        _ => metadata_leader,
    }
}

/// A topic as Metadata describes it. A partition whose leader is fenced (silent past
/// `broker.session.timeout.ms`) is offline: leader -1, LEADER_NOT_AVAILABLE, the replica listed
/// in `offline_replicas`, as Kafka reports it. Where this node hosts a replica whose Raft group
/// knows a leader in a term at least as new as the metadata's leader epoch, the group's view
/// wins (it is fresher than the controller's record, which follows it).
pub fn describe_topic(
    topic: &TopicMetadata,
    metadata: &ClusterMetadata,
    local: &LocalLeaders,
) -> MetadataResponseTopic {
    let mut described = MetadataResponseTopic::default();
    described.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    described.topic_id = uuid::Uuid::from_bytes(topic.topic_id.0);
    described.is_internal = crate::cluster::metadata::is_internal_topic(&topic.name);
    described.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, assignment)| {
            let replicas: Vec<BrokerId> = assignment
                .replica_nodes()
                .into_iter()
                .map(|replica| BrokerId(replica.0))
                .collect();
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index as i32;
            partition.leader_epoch = assignment.leader_epoch.0;
            let live = |node: &BrokerId| {
                metadata.brokers.is_empty() || metadata.is_live(crate::ids::NodeId(node.0))
            };
            let (leader, leader_epoch) = current_leader(
                assignment,
                &crate::ids::TopicPartition::new(&topic.name, index as i32),
                local,
            );
            partition.leader_epoch = leader_epoch;
            if leader >= 0 && live(&BrokerId(leader)) {
                partition.leader_id = BrokerId(leader);
            } else {
                partition.leader_id = BrokerId(-1);
                partition.error_code = error::LEADER_NOT_AVAILABLE;
            }
            // In sync: as the current leader last reported it (Kafka's ISR, caught up within
            // replica.lag.time.max.ms), on live brokers; a one-replica partition, or one whose
            // leader has not reported yet: every replica on a live broker.
            partition.isr_nodes = if !assignment.isr.is_empty()
                && leader == assignment.leader.0
                && leader_epoch == assignment.leader_epoch.0
            {
                assignment
                    .isr
                    .iter()
                    .map(|node| BrokerId(node.0))
                    .filter(live)
                    .collect()
            } else {
                replicas.iter().copied().filter(live).collect()
            };
            partition.offline_replicas = replicas.iter().copied().filter(|n| !live(n)).collect();
            partition.replica_nodes = replicas;
            partition
        })
        .collect();
    described
}
