//! ElectLeaders (API 43, KIP-460): preferred-leader election. The preferred leader of a
//! partition is the first replica of its assignment (Kafka's rule). For each partition:
//!
//! - its preferred replica leads already: ELECTION_NOT_NEEDED (so always on one replica);
//! - the preferred replica's broker is fenced, or out of the in-sync replicas, or no leader is
//!   known: PREFERRED_LEADER_NOT_AVAILABLE;
//! - otherwise the leader's node is asked to hand its Raft leadership to the preferred replica
//!   (`replicas::elect`, the hand-over a controlled shutdown uses), and the answer waits until
//!   this node sees the preferred replica lead, up to the request's timeout (then
//!   REQUEST_TIMED_OUT; the hand-over may still finish, as a timed-out Kafka election may).
//!
//! Unclean elections (election type 1) do not exist under Raft: a leader is only ever elected
//! by a majority holding every committed entry. A partition with a leader answers
//! ELECTION_NOT_NEEDED (Kafka's answer when a leader exists), one without answers
//! ELIGIBLE_LEADERS_NOT_AVAILABLE. Kafka brokers forward ElectLeaders to the controller; here
//! any broker answers, from the metadata and the leadership it sees.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::metadata::current_leader;
use super::Request;
use crate::ids::{NodeId, TopicPartition};
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::replication::replicas::{self, LocalLeaders};
use crate::shard::Shard;

pub const ELECTION_NOT_NEEDED: ErrorCode = 84;
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: ErrorCode = 83;
pub const PREFERRED_LEADER_NOT_AVAILABLE: ErrorCode = 80;

/// Kafka's ElectionType.
const ELECTION_UNCLEAN: i8 = 1;
/// Longest wait for elections to finish, whatever the request asks.
const WAIT_MAX: Duration = Duration::from_secs(30);
/// How often the leadership is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

struct Outcome {
    topic_partition: TopicPartition,
    error_code: ErrorCode,
    message: Option<String>,
    /// The preferred node, while its election is in progress.
    waiting_for: Option<NodeId>,
}

/// The leader this node sees for a partition, and whether it is on a live broker.
fn leader_of(shard: &Shard, topic_partition: &TopicPartition) -> Option<(i32, bool)> {
    let placement = shard.placement();
    let assignment = placement.assignment(&topic_partition.topic, topic_partition.partition)?;
    let local = shard.service::<std::sync::Arc<LocalLeaders>>();
    let (leader, _) = current_leader(assignment, topic_partition, &local);
    let metadata = crate::cluster::state::of(shard).metadata();
    let live = leader >= 0 && (metadata.brokers.is_empty() || metadata.is_live(NodeId(leader)));
    Some((leader, live))
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: ElectLeadersRequest = request.decode()?;
    if !crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Alter,
    ) {
        let mut refused = ElectLeadersResponse::default();
        refused.error_code = crate::protocol::error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&refused);
    }
    let unclean = request.api_version >= 1 && body.election_type == ELECTION_UNCLEAN;
    let metadata = crate::cluster::state::of(shard).metadata();
    // Null asks for every partition of every topic.
    let wanted: Vec<(String, Vec<i32>)> = match &body.topic_partitions {
        Some(topics) => topics
            .iter()
            .map(|topic| (topic.topic.0.to_string(), topic.partitions.clone()))
            .collect(),
        None => metadata
            .topics
            .values()
            .map(|topic| {
                (
                    topic.name.clone(),
                    (0..topic.partitions.len() as i32).collect(),
                )
            })
            .collect(),
    };
    let mut outcomes = Vec::new();
    for (topic, partitions) in &wanted {
        for &partition in partitions {
            let topic_partition = TopicPartition::new(topic, partition);
            let assignment = metadata
                .topic(topic)
                .and_then(|described| described.partitions.get(partition as usize).cloned());
            let outcome = |error_code, message: Option<String>, waiting_for| Outcome {
                topic_partition: topic_partition.clone(),
                error_code,
                message,
                waiting_for,
            };
            let Some(assignment) = assignment.filter(|_| partition >= 0) else {
                outcomes.push(outcome(error::UNKNOWN_TOPIC_OR_PARTITION, None, None));
                continue;
            };
            let preferred = assignment.replicas[0].node;
            let leader = leader_of(shard, &topic_partition);
            let result = match leader {
                Some((leader, true)) if unclean || leader == preferred.0 => {
                    outcome(ELECTION_NOT_NEEDED, None, None)
                }
                _ if unclean => outcome(
                    ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    Some("Raft elects leaders from a majority only: no unclean election".into()),
                    None,
                ),
                Some((leader, true)) => {
                    let preferred_live = metadata.brokers.is_empty() || metadata.is_live(preferred);
                    let in_sync = assignment.isr.is_empty() || assignment.isr.contains(&preferred);
                    if preferred_live && in_sync {
                        replicas::elect(shard, &topic_partition, NodeId(leader), preferred);
                        outcome(error::NONE, None, Some(preferred))
                    } else {
                        outcome(
                            PREFERRED_LEADER_NOT_AVAILABLE,
                            Some(format!(
                                "preferred leader {} is not live and in sync",
                                preferred.0
                            )),
                            None,
                        )
                    }
                }
                _ => outcome(
                    PREFERRED_LEADER_NOT_AVAILABLE,
                    Some("the partition has no live leader now".into()),
                    None,
                ),
            };
            outcomes.push(result);
        }
    }
    let deadline =
        Instant::now() + Duration::from_millis(body.timeout_ms.max(0) as u64).clamp(POLL, WAIT_MAX);
    loop {
        for outcome in outcomes.iter_mut() {
            if let Some(preferred) = outcome.waiting_for {
                if leader_of(shard, &outcome.topic_partition) == Some((preferred.0, true)) {
                    outcome.waiting_for = None;
                }
            }
        }
        if outcomes.iter().all(|outcome| outcome.waiting_for.is_none()) {
            break;
        }
        if Instant::now() >= deadline {
            for outcome in outcomes.iter_mut().filter(|o| o.waiting_for.is_some()) {
                outcome.error_code = error::REQUEST_TIMED_OUT;
                outcome.message = Some("the preferred replica did not take over in time".into());
            }
            break;
        }
        glommio::timer::sleep(POLL).await;
    }
    let mut response = ElectLeadersResponse::default();
    for outcome in outcomes {
        let topic = &*outcome.topic_partition.topic;
        let position = match response
            .replica_election_results
            .iter()
            .position(|result| result.topic.0.as_str() == topic)
        {
            Some(position) => position,
            None => {
                let mut result = ReplicaElectionResult::default();
                result.topic = TopicName(StrBytes::from_string(topic.to_string()));
                response.replica_election_results.push(result);
                response.replica_election_results.len() - 1
            }
        };
        let mut partition = PartitionResult::default();
        partition.partition_id = outcome.topic_partition.partition;
        partition.error_code = outcome.error_code;
        partition.error_message = outcome.message.map(StrBytes::from_string);
        response.replica_election_results[position]
            .partition_result
            .push(partition);
    }
    request.respond(&response)
}
