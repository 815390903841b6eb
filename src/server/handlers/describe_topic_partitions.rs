//! DescribeTopicPartitions (API 75, KIP-966): Metadata's partition view (leader, epoch,
//! replicas, in-sync and offline replicas, from the same `metadata::describe_topic`) in pages,
//! for clusters whose topics do not fit one Metadata response. Topics are answered in name
//! order; an empty topic list asks for every topic; at most `response_partition_limit`
//! partitions (capped at `PARTITIONS_PER_RESPONSE_MAX`, Kafka's default of
//! `max.request.partition.size.limit`) per response, with `next_cursor` naming where the next
//! page starts. Unknown topics get UNKNOWN_TOPIC_OR_PARTITION; nothing is auto-created. There is
//! no eligible-leader-replica set (KIP-966's ELR belongs to Kafka's ISR elections, not Raft):
//! both ELR fields are empty lists.

use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::metadata::describe_topic;
use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::replication::replicas::LocalLeaders;
use crate::shard::Shard;

/// Partitions in one response at most (Kafka's `max.request.partition.size.limit` default).
pub const PARTITIONS_PER_RESPONSE_MAX: i32 = 2000;

/// authorized operations not requested (Kafka's sentinel).
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeTopicPartitionsRequest = request.decode()?;
    let metadata = crate::cluster::state::of(shard).metadata();
    let local = shard.service::<std::sync::Arc<LocalLeaders>>();
    let describable = |name: &str| {
        crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Describe,
            crate::security::acl::ResourceType::Topic,
            name,
        )
    };
    // All topics: those the principal may Describe; named ones it may not are refused below.
    let mut names: Vec<String> = if body.topics.is_empty() {
        metadata
            .topics
            .keys()
            .filter(|name| describable(name))
            .cloned()
            .collect()
    } else {
        body.topics
            .iter()
            .map(|topic| topic.name.0.to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let mut response = DescribeTopicPartitionsResponse::default();
    let (first_topic, mut first_partition) = match &body.cursor {
        Some(cursor) => {
            let name = cursor.topic_name.0.to_string();
            // Named topics: the cursor must name one of them (Kafka's rule). All topics: the
            // cursor's topic may have been deleted between pages; the next name goes on.
            let known = names.contains(&name) || body.topics.is_empty();
            if !known || cursor.partition_index < 0 {
                // Kafka refuses a cursor outside the request the same way.
                let mut topic = DescribeTopicPartitionsResponseTopic::default();
                topic.error_code = error::INVALID_REQUEST;
                topic.name = Some(cursor.topic_name.clone());
                topic.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
                response.topics.push(topic);
                return request.respond(&response);
            }
            (Some(name), cursor.partition_index)
        }
        None => (None, 0),
    };
    let mut budget = body
        .response_partition_limit
        .clamp(1, PARTITIONS_PER_RESPONSE_MAX);
    let start = first_topic
        .as_ref()
        .map_or(0, |name| names.partition_point(|n| n < name));
    if first_topic
        .as_ref()
        .is_some_and(|name| names.get(start) != Some(name))
    {
        // The cursor's topic is gone: the next one starts at its first partition.
        first_partition = 0;
    }
    for name in &names[start..] {
        let mut answered = DescribeTopicPartitionsResponseTopic::default();
        answered.name = Some(TopicName(StrBytes::from_string(name.clone())));
        answered.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
        if !describable(name) {
            answered.error_code = error::TOPIC_AUTHORIZATION_FAILED;
            response.topics.push(answered);
            first_partition = 0;
            continue;
        }
        let Some(topic) = metadata.topic(name) else {
            answered.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
            response.topics.push(answered);
            first_partition = 0;
            continue;
        };
        if budget == 0 {
            response.next_cursor = Some(cursor(name, 0));
            break;
        }
        let described = describe_topic(topic, &metadata, &local);
        answered.topic_id = described.topic_id;
        answered.is_internal = described.is_internal;
        for partition in described.partitions {
            if partition.partition_index < first_partition {
                continue;
            }
            if budget == 0 {
                response.next_cursor = Some(cursor(name, partition.partition_index));
                break;
            }
            budget -= 1;
            let mut page = DescribeTopicPartitionsResponsePartition::default();
            page.error_code = partition.error_code;
            page.partition_index = partition.partition_index;
            page.leader_id = partition.leader_id;
            page.leader_epoch = partition.leader_epoch;
            page.replica_nodes = partition.replica_nodes;
            page.isr_nodes = partition.isr_nodes;
            page.eligible_leader_replicas = Some(Vec::new());
            page.last_known_elr = Some(Vec::new());
            page.offline_replicas = partition.offline_replicas;
            answered.partitions.push(page);
        }
        first_partition = 0;
        response.topics.push(answered);
        if response.next_cursor.is_some() {
            break;
        }
    }
    request.respond(&response)
}

fn cursor(topic: &str, partition_index: i32) -> Cursor {
    let mut cursor = Cursor::default();
    cursor.topic_name = TopicName(StrBytes::from_string(topic.to_string()));
    cursor.partition_index = partition_index;
    cursor
}
