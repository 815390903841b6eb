//! Produce. The connection's shard decodes the request, groups partitions by owning shard,
//! dispatches the groups concurrently and reassembles the answers in request order. The owner
//! (`partition::produce`) validates, appends and answers once the batches are committed.
//! acks=0 gets no response at all.
//!
//! KIP-951: from v10 a partition refused with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
//! carries the leader this node knows of (`current_leader`), and the response that leader's
//! endpoint (`node_endpoints`), so a client moves to a new leader without a Metadata round trip.

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::futures::join_all;
use crate::ids::TopicPartition;
use crate::partition::operation::{ProduceItem, ProduceItemResult};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::protocol::produce_request;
use crate::security::acl::{Operation, ResourceType};
use crate::shard::mesh::PendingAnswer;
use crate::shard::request::{Produce, Request as _};
use crate::shard::{Shard, Split};

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
    frame: BytesMut,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body = produce_request::decode(frame, request.api_version)?;
    let ticket = request.ticket.take();
    if let Some(ticket) = &ticket {
        ticket.turn().await;
    }
    super::admitted(&request.session, kafka_protocol::messages::ApiKey::Produce)?;
    let acks = body.acks;
    let valid_acks = matches!(acks, -1..=1);
    // (topic, partition indexes) in request order, for the response.
    let layout: Vec<(String, Vec<i32>)> = body
        .topics
        .iter()
        .map(|topic| {
            let indexes = topic.partitions.iter().map(|p| p.index).collect();
            (topic.name.clone(), indexes)
        })
        .collect();
    let mut results: Vec<ProduceItemResult> = Vec::new();
    let mut split: Split<ProduceItem> = Split::new();
    for topic in body.topics {
        let name = topic.name.as_str();
        let topic_name: std::sync::Arc<str> = name.into();
        let writable = crate::server::authorize::allowed(
            shard,
            &request.session,
            Operation::Write,
            ResourceType::Topic,
            name,
        );
        for partition in topic.partitions {
            let position = results.len();
            results.push(ProduceItemResult::error(error::UNKNOWN_TOPIC_OR_PARTITION));
            if !valid_acks {
                results[position] = ProduceItemResult::error(error::INVALID_REQUIRED_ACKS);
                continue;
            }
            if !writable {
                results[position] = ProduceItemResult::error(error::TOPIC_AUTHORIZATION_FAILED);
                continue;
            }
            if crate::cluster::metadata::is_internal_topic(name) {
                // Kafka: clients cannot append to internal topics.
                results[position] = ProduceItemResult::error(error::INVALID_TOPIC_EXCEPTION);
                continue;
            }
            let Some(owner) = shard.owner_shard(name, partition.index) else {
                results[position] =
                    ProduceItemResult::error(super::not_hosted_error(shard, name, partition.index));
                continue;
            };
            let Some(records) = partition.records else {
                results[position] = ProduceItemResult::error(error::CORRUPT_MESSAGE);
                continue;
            };
            let min_insync_replicas = crate::cluster::state::of(shard)
                .topic_config(&shard.config, name)
                .map_or(1, |config| config.min_insync_replicas);
            let replicas = shard
                .placement()
                .assignment(name, partition.index)
                .map_or(1, |assignment| assignment.replicas.len());
            if acks == -1 && replicas == 1 && min_insync_replicas > 1 {
                // Kafka: acks=all needs min.insync.replicas in sync; a one-replica partition
                // has its leader only. A replicated partition's leader checks its own in-sync
                // replicas.
                results[position] = ProduceItemResult::error(error::NOT_ENOUGH_REPLICAS);
                continue;
            }
            let item = ProduceItem {
                topic_partition: TopicPartition {
                    topic: topic_name.clone(),
                    partition: partition.index,
                },
                records,
                min_insync_replicas,
            };
            split.push(owner, position, item);
        }
    }
    // Dispatch in order while holding this connection's turn: each owner receives this
    // request's appends before those of the connection's next produce request.
    let mut dispatched = Vec::with_capacity(split.by_shard.len());
    for (owner, items, positions) in split.by_shard {
        let count = items.len();
        let request = Produce {
            items,
            acks,
            received: request.received,
        };
        let answer = if owner == shard.id {
            let local = shard.clone();
            Dispatched::Local(glommio::spawn_local(request.serve(local)).detach())
        } else {
            match shard.mesh.send(owner, request).await {
                Ok(pending) => Dispatched::Remote(pending),
                Err(_) => Dispatched::Failed,
            }
        };
        dispatched.push((answer, positions, count));
    }
    drop(ticket);
    let answers = dispatched
        .into_iter()
        .map(|(answer, positions, count)| async move {
            let response = match answer {
                Dispatched::Local(task) => task.await.ok_or(()),
                Dispatched::Remote(pending) => pending.answer().await.map_err(|_| ()),
                Dispatched::Failed => Err(()),
            };
            let answers = match response {
                Ok(answers) => answers,
                Err(()) => vec![ProduceItemResult::error(error::NOT_LEADER_OR_FOLLOWER); count],
            };
            assert_eq!(answers.len(), positions.len(), "one answer per item");
            (positions, answers)
        });
    for (positions, answers) in join_all(answers.collect()).await {
        for (position, answer) in positions.into_iter().zip(answers) {
            results[position] = answer;
        }
    }
    if acks == 0 {
        return Ok(None);
    }
    let mut response = ProduceResponse::default();
    let mut next = results.into_iter();
    let hints = request.api_version >= 10;
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for (name, indexes) in layout {
        let mut topic_response = TopicProduceResponse::default();
        for index in indexes {
            let result = next.next().expect("one result per partition");
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = index;
            partition_response.error_code = result.error_code;
            partition_response.base_offset = result.base_offset.0;
            partition_response.log_append_time_ms = result.log_append_time_ms;
            partition_response.log_start_offset = result.log_start_offset.0;
            let moved = matches!(
                result.error_code,
                error::NOT_LEADER_OR_FOLLOWER | error::FENCED_LEADER_EPOCH
            );
            // Only another node is a hint: this one just refused, and a node cut off from its
            // peers knows no newer leader than the metadata's (itself); the client asks
            // Metadata instead.
            if let Some((leader, epoch, broker)) = (hints && moved)
                .then(|| super::leader_hint(shard, &name, index, &request.session.listener.name))
                .flatten()
                .filter(|(leader, _, _)| *leader != shard.node.0)
            {
                let mut current = LeaderIdAndEpoch::default();
                current.leader_id = BrokerId(leader);
                current.leader_epoch = epoch;
                partition_response.current_leader = current;
                if endpoints.iter().all(|known| known.node_id.0 != leader) {
                    let mut endpoint = NodeEndpoint::default();
                    endpoint.node_id = BrokerId(leader);
                    endpoint.host = StrBytes::from_string(broker.host);
                    endpoint.port = i32::from(broker.port);
                    endpoint.rack = broker.rack.map(StrBytes::from_string);
                    endpoints.push(endpoint);
                }
            }
            topic_response.partition_responses.push(partition_response);
        }
        topic_response.name = TopicName(StrBytes::from_string(name));
        response.responses.push(topic_response);
    }
    response.node_endpoints = endpoints;
    request.respond(&response)
}

/// Where one shard's share of a produce request went.
enum Dispatched {
    Local(glommio::task::JoinHandle<Vec<ProduceItemResult>>),
    Remote(PendingAnswer<Produce>),
    Failed,
}
