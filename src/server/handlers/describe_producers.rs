//! DescribeProducers (API 61, KIP-664): the idempotent producers each partition's leader keeps
//! (id, epoch, last sequence, last batch timestamp), from the same producer state that
//! deduplicates retries. A replica that does not lead answers NOT_LEADER_OR_FOLLOWER, as
//! Kafka's does (the admin client then asks the leader). There are no transactions yet, so
//! `coordinator_epoch` and `current_txn_start_offset` are always -1.

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Request;
use crate::ids::TopicPartition;
use crate::partition::operation::DescribeProducersItemResult;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::DescribeProducers;
use crate::shard::{Shard, Split};

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeProducersRequest = request.decode()?;
    let mut results = Vec::new();
    let mut split: Split<TopicPartition> = Split::new();
    for topic in &body.topics {
        let name = topic.name.0.as_str();
        // Kafka: Read on the topic.
        let permitted = crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Read,
            crate::security::acl::ResourceType::Topic,
            name,
        );
        for &index in &topic.partition_indexes {
            let position = results.len();
            results.push(DescribeProducersItemResult::error(
                error::UNKNOWN_TOPIC_OR_PARTITION,
            ));
            if !permitted {
                results[position] =
                    DescribeProducersItemResult::error(error::TOPIC_AUTHORIZATION_FAILED);
                continue;
            }
            match shard.owner_shard(name, index) {
                Some(owner) => split.push(owner, position, TopicPartition::new(name, index)),
                None => {
                    results[position] = DescribeProducersItemResult::error(super::not_hosted_error(
                        shard, name, index,
                    ))
                }
            }
        }
    }
    let unreachable = DescribeProducersItemResult::error(error::NOT_LEADER_OR_FOLLOWER);
    let make = |items| DescribeProducers { items };
    shard.scatter(split, &mut results, make, unreachable).await;
    let mut response = DescribeProducersResponse::default();
    let mut next = results.into_iter();
    for topic in &body.topics {
        let mut answered = TopicResponse::default();
        answered.name = topic.name.clone();
        for &index in &topic.partition_indexes {
            let result = next.next().expect("one result per partition");
            let mut partition = PartitionResponse::default();
            partition.partition_index = index;
            partition.error_code = result.error_code;
            partition.active_producers = result
                .producers
                .iter()
                .map(|producer| {
                    let mut state = ProducerState::default();
                    state.producer_id = ProducerId(producer.producer_id);
                    state.producer_epoch = i32::from(producer.epoch);
                    state.last_sequence = producer.last_sequence;
                    state.last_timestamp = producer.last_timestamp;
                    state.coordinator_epoch = -1;
                    state.current_txn_start_offset = -1;
                    state
                })
                .collect();
            answered.partitions.push(partition);
        }
        response.topics.push(answered);
    }
    request.respond(&response)
}
