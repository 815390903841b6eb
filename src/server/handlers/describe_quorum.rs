//! DescribeQuorum (API 55, KIP-595/KIP-836): the controller quorum as `kafka-metadata-quorum.sh`
//! shows it. The metadata log is reported as Kafka names it, partition 0 of
//! `__cluster_metadata`: the leader, its epoch (the Raft term), the high watermark (the commit
//! index) and, per voter, the log end offset the leader knows it has (-1 where only a follower
//! answered) — Raft indexes stand in for the log's offsets; brokers that are not voters are the
//! observers (Raft learners). The request is answered by the
//! leader: shard 0 asks it over the node links. Any other topic or partition gets
//! UNKNOWN_TOPIC_OR_PARTITION.

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::cluster::admin::{DescribeQuorum, METADATA_SHARD};
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeQuorumRequest = request.decode()?;
    if !crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Describe,
    ) {
        let mut refused = DescribeQuorumResponse::default();
        refused.error_code = crate::protocol::error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&refused);
    }
    let mut response = DescribeQuorumResponse::default();
    let status = match shard.call(METADATA_SHARD, DescribeQuorum).await {
        Ok(status) => status,
        Err(_) => {
            response.error_code = error::UNKNOWN_SERVER_ERROR;
            return request.respond(&response);
        }
    };
    for topic in &body.topics {
        let mut answered = TopicData::default();
        answered.topic_name = topic.topic_name.clone();
        for partition in &topic.partitions {
            let mut data = PartitionData::default();
            data.partition_index = partition.partition_index;
            if topic.topic_name.as_str() != METADATA_TOPIC || partition.partition_index != 0 {
                data.error_code = error::UNKNOWN_TOPIC_OR_PARTITION;
                data.leader_id = BrokerId(-1);
                data.leader_epoch = -1;
                data.high_watermark = -1;
            } else if status.leader < 0 {
                data.error_code = error::NOT_LEADER_OR_FOLLOWER;
                data.leader_id = BrokerId(-1);
                data.leader_epoch = status.term as i32;
                data.high_watermark = -1;
            } else {
                data.leader_id = BrokerId(status.leader);
                data.leader_epoch = status.term as i32;
                data.high_watermark = status.commit as i64;
                let describe = |voter: &crate::cluster::controller_log::VoterState| {
                    let mut state = ReplicaState::default();
                    state.replica_id = BrokerId(voter.node);
                    state.log_end_offset = voter.log_end;
                    state.last_fetch_timestamp = -1;
                    state.last_caught_up_timestamp = -1;
                    state
                };
                data.current_voters = status.voters.iter().map(describe).collect();
                data.observers = status.observers.iter().map(describe).collect();
            }
            answered.partitions.push(data);
        }
        response.topics.push(answered);
    }
    // v2: where each voter's controller listener is.
    response.nodes = shard
        .config
        .controller_quorum_voters
        .iter()
        .map(|(id, address)| {
            let mut node = Node::default();
            node.node_id = BrokerId(*id);
            let mut listener = Listener::default();
            listener.name = StrBytes::from_static_str("CONTROLLER");
            listener.host = StrBytes::from_string(address.ip().to_string());
            listener.port = address.port();
            node.listeners.push(listener);
            node
        })
        .collect();
    request.respond(&response)
}
