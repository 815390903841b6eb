//! The metadata writer. Runs on shard 0 only: validates a topic change against a copy of the
//! cluster metadata, commits the difference through the metadata log (`controller_log.rs`), which
//! applies it on every shard before the client is answered, so a produce on any connection right
//! after CreateTopics finds the topic. Changes are serialised by `ClusterState::admin_gate`, so
//! each is validated against the version the one before it produced.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::cluster::admin::{
    AdminRequest, ConfigChange, ConfigOperation, NewPartitions, NewTopic, ReplicaAssignment,
    TopicConfigChanges, TopicOutcome,
};
use crate::cluster::controller_log::{
    self, Controller, ControllerNode, MetadataDelta, ProposeError, FRAME_HEARTBEAT,
};
use crate::cluster::forward::{self, ForwardError, Forwarded, ForwardedReply};
use crate::cluster::metadata::{
    self, is_internal_topic, validate_topic_name, BrokerRegistration, ClusterMetadata, TopicConfig,
    TopicMetadata, METADATA_FILE_NAME,
};
use crate::cluster::state;
use crate::config::{topic_keys, Config, PARTITIONS_PER_TOPIC_MAX};
use crate::ids::{NodeId, ShardId, TopicId};
use crate::protocol::error::{self, ErrorCode};
use crate::replication::transport::Frame;
use crate::shard::placement::PartitionAssignment;
use crate::shard::Shard;

fn outcome(name: &str, error_code: ErrorCode, message: Option<String>) -> TopicOutcome {
    TopicOutcome {
        name: name.to_string(),
        error_code,
        error_message: message,
        topic_id: TopicId::default(),
        num_partitions: -1,
    }
}

/// AlterUserScramCredentials, Kafka's rules: a user named twice in one request is
/// DUPLICATE_RESOURCE for all its changes; deleting a credential the user does not have is
/// RESOURCE_NOT_FOUND; iterations outside Kafka's bounds are UNACCEPTABLE_CREDENTIAL (checked
/// by the handler before the salted password becomes a credential).
fn alter_users(
    next: &mut crate::cluster::metadata::ClusterMetadata,
    changes: &[crate::cluster::admin::UserChange],
) -> Vec<TopicOutcome> {
    let mut outcomes: Vec<TopicOutcome> = Vec::new();
    for change in changes {
        let repeated = changes
            .iter()
            .filter(|other| other.user == change.user && other.mechanism == change.mechanism)
            .count()
            > 1;
        let result = if repeated {
            Err((
                error::DUPLICATE_RESOURCE,
                "the user's mechanism appears twice in the request",
            ))
        } else {
            let credentials = next.users.entry(change.user.clone()).or_default();
            let existing = credentials
                .iter()
                .position(|c| c.mechanism == change.mechanism);
            match (&change.credential, existing) {
                (Some(credential), Some(index)) => {
                    credentials[index] = credential.clone();
                    Ok(())
                }
                (Some(credential), None) => {
                    credentials.push(credential.clone());
                    Ok(())
                }
                (None, Some(index)) => {
                    credentials.remove(index);
                    Ok(())
                }
                (None, None) => Err((
                    error::RESOURCE_NOT_FOUND,
                    "the user has no credential for that mechanism",
                )),
            }
        };
        if next.users.get(&change.user).is_some_and(Vec::is_empty) {
            next.users.remove(&change.user);
        }
        // One outcome per user: its first error, else success.
        let (code, message) = match result {
            Ok(()) => (error::NONE, None),
            Err((code, message)) => (code, Some(message.to_string())),
        };
        match outcomes.iter_mut().find(|o| o.name == change.user) {
            Some(known) if known.error_code == error::NONE => {
                known.error_code = code;
                known.error_message = message;
            }
            Some(_) => {}
            None => outcomes.push(outcome(&change.user, code, message)),
        }
    }
    outcomes
}

/// Where new partitions may go: (node, shard) slots of the registered brokers.
struct Placer {
    slots: Vec<(NodeId, ShardId)>,
}

impl Placer {
    fn knows(&self, node: NodeId) -> bool {
        self.slots.iter().any(|(slot, _)| *slot == node)
    }

    fn broker_count(&self) -> usize {
        let mut nodes: Vec<NodeId> = self.slots.iter().map(|(node, _)| *node).collect();
        nodes.sort();
        nodes.dedup();
        nodes.len()
    }
}

/// An admin change from a client of this node: executed here if this node is the active
/// controller, otherwise forwarded to it (`forward.rs`). While no controller is ready (an
/// election in progress, a new leader not yet committed in its term, the controller out of
/// reach) the request waits and tries again for up to `forward::FORWARD_TIMEOUT`, as a Kafka
/// broker's forwarding manager does, before the client gets NOT_CONTROLLER.
pub async fn on_admin(shard: &Rc<Shard>, request: AdminRequest) -> Vec<TopicOutcome> {
    /// Pause between attempts while no controller is ready.
    const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
    let deadline = std::time::Instant::now() + forward::FORWARD_TIMEOUT;
    loop {
        let outcomes = admin_once(shard, &request).await;
        let no_controller = !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| o.error_code == error::NOT_CONTROLLER);
        if !no_controller || std::time::Instant::now() + RETRY_PAUSE >= deadline {
            return outcomes;
        }
        glommio::timer::sleep(RETRY_PAUSE).await;
    }
}

/// One attempt of `on_admin`. NOT_CONTROLLER means nothing was executed (no controller known,
/// the frame not queued, or the node asked no longer leads) or a proposal was lost with a
/// leadership change: either way trying again is safe (a repeated CreateTopics that did commit
/// answers TOPIC_ALREADY_EXISTS, as Kafka's does).
async fn admin_once(shard: &Rc<Shard>, request: &AdminRequest) -> Vec<TopicOutcome> {
    let leadership = shard.service::<Controller>().leadership();
    if leadership.ready {
        return execute_admin(shard, request.clone()).await;
    }
    match leadership.leader {
        Some(leader) if leader != shard.node => {
            match forward::forward(shard, leader, Forwarded::Admin(request.clone())).await {
                Ok(ForwardedReply::Admin(outcomes, applied)) => {
                    // Answer once this node applied the change too: the client's next request
                    // here (a Produce right after CreateTopics) must find it.
                    wait_applied(shard, applied).await;
                    outcomes
                }
                Ok(ForwardedReply::ProducerIds(_) | ForwardedReply::Quorum(_)) => refuse_all(
                    request,
                    error::UNKNOWN_SERVER_ERROR,
                    "the controller answered another request",
                ),
                Err(ForwardError::Unreachable) => refuse_all(
                    request,
                    error::NOT_CONTROLLER,
                    &format!("the controller (node {}) is not reachable", leader.0),
                ),
                Err(ForwardError::TimedOut) => refuse_all(
                    request,
                    error::REQUEST_TIMED_OUT,
                    &format!("the controller (node {}) did not answer in time", leader.0),
                ),
            }
        }
        _ => refuse_all(
            request,
            error::NOT_CONTROLLER,
            "no controller is elected yet",
        ),
    }
}

/// The controller quorum as the leader sees it: answered here when this node leads, asked of
/// the leader otherwise (this node's own view if the leader cannot be reached).
pub async fn on_describe_quorum(shard: &Rc<Shard>) -> controller_log::QuorumStatus {
    let controller = shard.service::<Controller>();
    let local = controller.quorum.borrow().clone();
    match controller.leadership().leader {
        Some(leader) if leader != shard.node => {
            match forward::forward(shard, leader, Forwarded::DescribeQuorum).await {
                Ok(ForwardedReply::Quorum(status)) => status,
                _ => local,
            }
        }
        _ => local,
    }
}

/// Waits (up to the forwarding timeout) until this node applied the metadata log up to `index`.
async fn wait_applied(shard: &Rc<Shard>, index: u64) {
    let deadline = std::time::Instant::now() + forward::FORWARD_TIMEOUT;
    while state::of(shard).metadata().raft_index < index && std::time::Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// An admin change another node forwarded: executed only if this node still leads.
pub async fn on_forwarded_admin(shard: &Rc<Shard>, request: AdminRequest) -> Vec<TopicOutcome> {
    if shard.service::<Controller>().leadership().ready {
        execute_admin(shard, request).await
    } else {
        refuse_all(
            &request,
            error::NOT_CONTROLLER,
            "this node is no longer the active controller",
        )
    }
}

/// The same error for every topic `request` names.
fn refuse_all(request: &AdminRequest, code: ErrorCode, message: &str) -> Vec<TopicOutcome> {
    let names: Vec<String> = match request {
        AdminRequest::CreateTopics { topics, .. } => {
            topics.iter().map(|t| t.name.clone()).collect()
        }
        AdminRequest::DeleteTopics { names } => names.clone(),
        AdminRequest::CreatePartitions { topics, .. } => {
            topics.iter().map(|t| t.topic.clone()).collect()
        }
        AdminRequest::AlterTopicConfigs { topics, .. } => {
            topics.iter().map(|t| t.topic.clone()).collect()
        }
        AdminRequest::RegisterBroker(broker) => vec![format!("broker {}", broker.node_id.0)],
        AdminRequest::SetLeaders(reports) => {
            let mut topics: Vec<String> = reports.iter().map(|r| r.topic.clone()).collect();
            topics.dedup();
            topics
        }
        AdminRequest::AlterUsers(changes) => changes.iter().map(|c| c.user.clone()).collect(),
        AdminRequest::CreateAcls(_) | AdminRequest::DeleteAcls(_) => vec!["acls".to_string()],
    };
    names
        .iter()
        .map(|name| outcome(name, code, Some(message.to_string())))
        .collect()
}

async fn execute_admin(shard: &Rc<Shard>, request: AdminRequest) -> Vec<TopicOutcome> {
    let cluster = state::of(shard);
    let _permit = match cluster.admin_gate.acquire_permit(1).await {
        Ok(permit) => permit,
        Err(_) => return Vec::new(),
    };
    let current = cluster.metadata();
    let mut next = (*current).clone();
    let placer = Placer {
        slots: next.placement_slots(shard.node, shard.shard_count),
    };
    let (outcomes, changed) = match request {
        AdminRequest::CreateTopics {
            topics,
            validate_only,
        } => {
            let outcomes = create_topics(&shard.config, &placer, &mut next, &topics);
            let changed = !validate_only && outcomes.iter().any(|o| o.error_code == error::NONE);
            (outcomes, changed)
        }
        AdminRequest::RegisterBroker(broker) if broker.node_id.0 < 0 => {
            let name = format!("broker {}", broker.node_id.0);
            let refusal = outcome(
                &name,
                error::INVALID_REQUEST,
                Some("node ids are not negative".to_string()),
            );
            (vec![refusal], false)
        }
        AdminRequest::RegisterBroker(broker) => {
            let name = format!("broker {}", broker.node_id.0);
            let node = broker.node_id;
            let mut changed = next.register(broker);
            // A broker that is not a voter follows the metadata log as a learner.
            if !controller_log::voters(&shard.config).contains(&node)
                && !next.learners.contains(&node)
            {
                next.learners.push(node);
                changed = true;
            }
            (vec![outcome(&name, error::NONE, None)], changed)
        }
        AdminRequest::SetLeaders(reports) => {
            let mut topics: Vec<String> = Vec::new();
            for report in &reports {
                let Some(topic) = next.topics.get_mut(&report.topic) else {
                    continue;
                };
                let Some(assignment) = usize::try_from(report.partition)
                    .ok()
                    .and_then(|index| topic.partitions.get_mut(index))
                else {
                    continue;
                };
                // Epochs only grow: a late report of an older term changes nothing. Within a
                // term, the leader's later reports move its in-sync set.
                let newer = report.epoch > assignment.leader_epoch.0
                    && assignment.replica_on(report.leader).is_some();
                let same_term = report.epoch == assignment.leader_epoch.0
                    && report.leader == assignment.leader
                    && report.isr != assignment.isr;
                if newer || same_term {
                    assignment.leader = report.leader;
                    assignment.leader_epoch = crate::ids::LeaderEpoch(report.epoch);
                    assignment.isr = report
                        .isr
                        .iter()
                        .copied()
                        .filter(|node| assignment.replica_on(*node).is_some())
                        .collect();
                    if !topics.contains(&report.topic) {
                        topics.push(report.topic.clone());
                    }
                }
            }
            let changed = !topics.is_empty();
            let outcomes = topics
                .iter()
                .map(|name| outcome(name, error::NONE, None))
                .collect();
            (outcomes, changed)
        }
        AdminRequest::CreateAcls(acls) => {
            let before = next.acls.len();
            for acl in acls {
                if !next.acls.contains(&acl) {
                    next.acls.push(acl);
                }
            }
            let changed = next.acls.len() != before;
            (vec![outcome("acls", error::NONE, None)], changed)
        }
        AdminRequest::DeleteAcls(acls) => {
            let before = next.acls.len();
            next.acls.retain(|acl| !acls.contains(acl));
            let changed = next.acls.len() != before;
            (vec![outcome("acls", error::NONE, None)], changed)
        }
        AdminRequest::AlterUsers(changes) => {
            let outcomes = alter_users(&mut next, &changes);
            let changed = outcomes.iter().any(|o| o.error_code == error::NONE);
            (outcomes, changed)
        }
        AdminRequest::DeleteTopics { names } => {
            let outcomes = delete_topics(&mut next, &names);
            let changed = outcomes.iter().any(|o| o.error_code == error::NONE);
            (outcomes, changed)
        }
        AdminRequest::CreatePartitions {
            topics,
            validate_only,
        } => {
            let outcomes = create_partitions(&placer, &mut next, &topics);
            let changed = !validate_only && outcomes.iter().any(|o| o.error_code == error::NONE);
            (outcomes, changed)
        }
        AdminRequest::AlterTopicConfigs {
            topics,
            incremental,
            validate_only,
        } => {
            let outcomes = alter_configs(&shard.config, &mut next, &topics, incremental);
            let changed = !validate_only && outcomes.iter().any(|o| o.error_code == error::NONE);
            (outcomes, changed)
        }
    };
    if !changed {
        return outcomes;
    }
    let touched: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.error_code == error::NONE)
        .map(|o| o.name.as_str())
        .collect();
    let delta = MetadataDelta::between(&current, &next, touched);
    if let Err(error) = controller_log::propose(shard, delta, current.version).await {
        // Leadership lost or moved under the change (it may still commit under the next
        // controller): retriable NOT_CONTROLLER, as Kafka answers. Otherwise the log failed.
        let code = match &error {
            ProposeError::NotController(_) => error::NOT_CONTROLLER,
            ProposeError::Failed(_) => {
                log::error!("cannot commit a metadata change: {error}");
                error::KAFKA_STORAGE_ERROR
            }
        };
        return outcomes
            .into_iter()
            .map(|o| {
                outcome(
                    &o.name,
                    code,
                    Some(format!("metadata change not committed: {error}")),
                )
            })
            .collect();
    }
    outcomes
}

/// Keeps this broker registered (shard 0): registers once a controller is elected, and again
/// whenever the registration differs from this node's (address, rack, shards) or says it is
/// fenced. Heartbeats go from their own task (`heartbeat`), so a slow registration never
/// starves them. On a one-node cluster start-up already registered it.
pub fn keep_registered(shard: &Rc<Shard>) {
    heartbeat(shard);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let registration = BrokerRegistration::of(&shard.config);
        let interval = std::time::Duration::from_millis(shard.config.broker_heartbeat_interval_ms);
        let voters = controller_log::voters(&shard.config);
        let learner = !voters.contains(&shard.node);
        let mut attempt = 0usize;
        loop {
            let leader = shard.service::<Controller>().leadership().leader;
            let registered = state::of(&shard).metadata().broker(shard.node) == Some(&registration);
            if !registered && leader.is_none() && learner {
                // A broker that is not a voter hears from the leader only once it is a learner,
                // which its registration makes it: ask the voters in turn until the leader
                // takes it (the others answer NOT_CONTROLLER).
                attempt += 1;
                let voter = voters[attempt % voters.len()];
                let request = Forwarded::Admin(AdminRequest::RegisterBroker(registration.clone()));
                let _ = forward::forward(&shard, voter, request).await;
            } else if !registered && leader.is_some() {
                let request = AdminRequest::RegisterBroker(registration.clone());
                for refused in on_admin(&shard, request)
                    .await
                    .into_iter()
                    .filter(|o| o.error_code != error::NONE)
                {
                    log::info!(
                        "broker registration not taken yet: {}",
                        refused.error_message.unwrap_or_default()
                    );
                }
            }
            let pause = if registered {
                interval
            } else {
                interval.min(std::time::Duration::from_millis(300))
            };
            glommio::timer::sleep(pause).await;
        }
    })
    .detach();
}

/// Heartbeats the active controller every `broker.heartbeat.interval.ms` (shard 0).
fn heartbeat(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let interval = std::time::Duration::from_millis(shard.config.broker_heartbeat_interval_ms);
        loop {
            let controller = shard.service::<Controller>();
            match controller.leadership().leader {
                Some(leader) if leader == shard.node => {
                    controller
                        .heartbeats
                        .borrow_mut()
                        .insert(shard.node, std::time::Instant::now());
                }
                Some(leader) => {
                    if let Some(transport) = &controller.transport {
                        transport.send(
                            leader,
                            Frame {
                                kind: FRAME_HEARTBEAT,
                                body: bytes::Bytes::new(),
                            },
                        );
                    }
                }
                None => {}
            }
            glommio::timer::sleep(interval).await;
        }
    })
    .detach();
}

/// The active controller's broker sessions (shard 0): fences a broker silent for
/// `broker.session.timeout.ms` and unfences it when it heartbeats again, through the metadata
/// log like any change. Decisions are made under the admin gate, on the metadata they change.
pub fn watch_broker_sessions(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let session = std::time::Duration::from_millis(shard.config.broker_session_timeout_ms);
        loop {
            glommio::timer::sleep(std::time::Duration::from_millis(250)).await;
            let controller = shard.service::<Controller>();
            if !controller.leadership().ready || session_changes(&shard, session).is_empty() {
                continue;
            }
            let cluster = state::of(&shard);
            let Ok(_permit) = cluster.admin_gate.acquire_permit(1).await else {
                return;
            };
            let changes = session_changes(&shard, session);
            if changes.is_empty() || !controller.leadership().ready {
                continue;
            }
            let current = cluster.metadata();
            let mut next = (*current).clone();
            for (node, fenced) in &changes {
                if let Some(broker) = next.broker(*node).cloned() {
                    log::info!(
                        "broker {} {}",
                        node.0,
                        if *fenced {
                            "fenced: no heartbeat within broker.session.timeout.ms"
                        } else {
                            "unfenced: heartbeating again"
                        }
                    );
                    next.register(BrokerRegistration {
                        fenced: *fenced,
                        ..broker
                    });
                }
            }
            let delta = MetadataDelta::between(&current, &next, []);
            if let Err(error) = controller_log::propose(&shard, delta, current.version).await {
                log::warn!("cannot record broker fencing: {error}");
            }
        }
    })
    .detach();
}

/// Brokers to fence (true) or unfence (false) now. The controller's own node is judged like
/// any other (it heartbeats itself), so a controller that was fenced before it led comes back.
fn session_changes(shard: &Shard, session: std::time::Duration) -> Vec<(NodeId, bool)> {
    let controller = shard.service::<Controller>();
    let Some(since) = controller.leading_since.get() else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    let heartbeats = controller.heartbeats.borrow();
    state::of(shard)
        .metadata()
        .brokers
        .iter()
        .filter_map(|broker| {
            let heard = heartbeats.get(&broker.node_id).copied();
            let last = heard.map_or(since, |heard| heard.max(since));
            let silent = now.duration_since(last) > session;
            let alive = heard.is_some_and(|heard| now.duration_since(heard) < session);
            match (broker.fenced, silent, alive) {
                (false, true, _) => Some((broker.node_id, true)),
                (true, _, true) => Some((broker.node_id, false)),
                _ => None,
            }
        })
        .collect()
}

/// Reserves `count` producer ids: committed (and applied everywhere) before they are handed
/// out; reserved by the active controller (forwarded to it from other nodes).
pub async fn on_allocate_producer_ids(shard: &Rc<Shard>, count: u32) -> Option<i64> {
    let leadership = shard.service::<Controller>().leadership();
    if leadership.ready {
        return execute_producer_ids(shard, count).await;
    }
    let leader = leadership.leader.filter(|leader| *leader != shard.node)?;
    match forward::forward(shard, leader, Forwarded::AllocateProducerIds(count)).await {
        Ok(ForwardedReply::ProducerIds(first)) => first,
        _ => None,
    }
}

pub async fn on_forwarded_producer_ids(shard: &Rc<Shard>, count: u32) -> Option<i64> {
    if shard.service::<Controller>().leadership().ready {
        execute_producer_ids(shard, count).await
    } else {
        None
    }
}

async fn execute_producer_ids(shard: &Rc<Shard>, count: u32) -> Option<i64> {
    let cluster = state::of(shard);
    let _permit = cluster.admin_gate.acquire_permit(1).await.ok()?;
    let current = cluster.metadata();
    let first = current.next_producer_id;
    let delta = MetadataDelta {
        next_producer_id: Some(first.checked_add(i64::from(count))?),
        ..MetadataDelta::default()
    };
    if let Err(error) = controller_log::propose(shard, delta, current.version).await {
        log::warn!("cannot reserve a producer id block: {error}");
        return None;
    }
    Some(first)
}

fn create_topics(
    config: &Config,
    placer: &Placer,
    metadata: &mut ClusterMetadata,
    topics: &[NewTopic],
) -> Vec<TopicOutcome> {
    let mut outcomes = Vec::with_capacity(topics.len());
    for (index, topic) in topics.iter().enumerate() {
        let duplicate = topics
            .iter()
            .enumerate()
            .any(|(other_index, other)| other_index != index && other.name == topic.name);
        let result = if duplicate {
            Err((
                error::INVALID_REQUEST,
                format!("topic {} appears twice in the request", topic.name),
            ))
        } else {
            create_topic(config, placer, metadata, topic)
        };
        outcomes.push(match result {
            Ok(created) => TopicOutcome {
                name: topic.name.clone(),
                error_code: error::NONE,
                error_message: None,
                topic_id: created.topic_id,
                num_partitions: created.partitions.len() as i32,
            },
            Err((code, message)) => outcome(&topic.name, code, Some(message)),
        });
    }
    outcomes
}

fn create_topic(
    config: &Config,
    placer: &Placer,
    metadata: &mut ClusterMetadata,
    topic: &NewTopic,
) -> Result<TopicMetadata, (ErrorCode, String)> {
    validate_topic_name(&topic.name).map_err(|m| (error::INVALID_TOPIC_EXCEPTION, m))?;
    if is_internal_topic(&topic.name) && !topic.internal {
        return Err(internal_refusal(&topic.name));
    }
    if metadata.topic(&topic.name).is_some() {
        return Err((
            error::TOPIC_ALREADY_EXISTS,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    let explicit = !topic.assignments.is_empty();
    if explicit && (topic.num_partitions != -1 || topic.replication_factor != -1) {
        // Kafka: numPartitions and replicationFactor must be -1 with an explicit assignment.
        return Err((
            error::INVALID_REQUEST,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".to_string(),
        ));
    }
    let partitions = if explicit {
        topic.assignments.len() as i32
    } else if topic.num_partitions == -1 {
        config.num_partitions
    } else {
        topic.num_partitions
    };
    if partitions < 1 || partitions as u64 > PARTITIONS_PER_TOPIC_MAX {
        return Err((
            error::INVALID_PARTITIONS,
            format!(
                "Number of partitions must be in 1..={PARTITIONS_PER_TOPIC_MAX}, got {partitions}."
            ),
        ));
    }
    let brokers = placer.broker_count();
    let replication_factor = if topic.replication_factor == -1 {
        default_replication_factor(config, brokers)
    } else {
        i32::from(topic.replication_factor)
    };
    if !explicit && (replication_factor < 1 || replication_factor as usize > brokers) {
        return Err((
            error::INVALID_REPLICATION_FACTOR,
            format!("Replication factor: {replication_factor} larger than available brokers: {brokers}."),
        ));
    }
    let explicit_lists = if explicit {
        Some(ordered_assignments(&topic.assignments)?)
    } else {
        None
    };
    let mut configs = BTreeMap::new();
    for (key, value) in &topic.configs {
        let Some(value) = value else { continue };
        topic_keys::validate(key, value).map_err(|m| (error::INVALID_CONFIG, m))?;
        configs.insert(key.clone(), value.clone());
    }
    let mut created = TopicMetadata {
        name: topic.name.clone(),
        topic_id: TopicId::new_random(),
        placement: Vec::new(),
        partitions: Vec::new(),
        configs,
    };
    TopicConfig::resolve(config, &created)
        .check(config)
        .map_err(|m| (error::INVALID_CONFIG, m))?;
    if let Some(lists) = &explicit_lists {
        for list in lists {
            check_replica_list(placer, list)?;
        }
    }
    created.partitions = metadata.place_partitions(
        partitions as u32,
        &placer.slots,
        replication_factor.max(1) as usize,
        explicit_lists.as_deref(),
    );
    metadata.topics.insert(topic.name.clone(), created.clone());
    Ok(created)
}

/// `default.replication.factor`, or when unset (-1) min(3, brokers), as MSK sets it.
pub fn default_replication_factor(config: &Config, brokers: usize) -> i32 {
    if config.default_replication_factor > 0 {
        i32::from(config.default_replication_factor)
    } else {
        brokers.clamp(1, 3) as i32
    }
}

/// Explicit assignments in partition order; the indexes must be exactly 0..n.
fn ordered_assignments(
    assignments: &[ReplicaAssignment],
) -> Result<Vec<Vec<NodeId>>, (ErrorCode, String)> {
    let mut lists: Vec<Option<Vec<NodeId>>> = vec![None; assignments.len()];
    for assignment in assignments {
        let slot = usize::try_from(assignment.partition)
            .ok()
            .and_then(|index| lists.get_mut(index));
        match slot {
            Some(slot @ None) => *slot = Some(assignment.broker_ids.clone()),
            _ => {
                return Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    "Partitions should be a consecutive 0-based integer sequence".to_string(),
                ))
            }
        }
    }
    Ok(lists.into_iter().flatten().collect())
}

/// One partition's explicit replica list: every broker must be registered, none twice.
fn check_replica_list(placer: &Placer, brokers: &[NodeId]) -> Result<(), (ErrorCode, String)> {
    if brokers.is_empty() {
        return Err((
            error::INVALID_REPLICA_ASSIGNMENT,
            "Replica assignment cannot be empty".to_string(),
        ));
    }
    if let Some(unknown) = brokers.iter().find(|broker| !placer.knows(**broker)) {
        let mut known: Vec<String> = placer
            .slots
            .iter()
            .map(|(node, _)| node.0.to_string())
            .collect();
        known.dedup();
        return Err((
            error::INVALID_REPLICA_ASSIGNMENT,
            format!(
                "Unknown broker {} in replica assignment (brokers: {})",
                unknown.0,
                known.join(", ")
            ),
        ));
    }
    let mut distinct = brokers.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != brokers.len() {
        return Err((
            error::INVALID_REPLICA_ASSIGNMENT,
            "Duplicate brokers in replica assignment".to_string(),
        ));
    }
    Ok(())
}

/// Internal topics are the broker's: clients may not create, delete, grow or reconfigure them.
fn internal_refusal(name: &str) -> (ErrorCode, String) {
    (
        error::INVALID_REQUEST,
        format!("{name} is an internal topic managed by the broker"),
    )
}

fn delete_topics(metadata: &mut ClusterMetadata, names: &[String]) -> Vec<TopicOutcome> {
    names
        .iter()
        .map(|name| match metadata.topics.remove(name) {
            Some(removed) if is_internal_topic(name) => {
                metadata.topics.insert(name.clone(), removed);
                let (code, message) = internal_refusal(name);
                outcome(name, code, Some(message))
            }
            Some(removed) => TopicOutcome {
                name: name.clone(),
                error_code: error::NONE,
                error_message: None,
                topic_id: removed.topic_id,
                num_partitions: removed.partitions.len() as i32,
            },
            None => outcome(
                name,
                error::UNKNOWN_TOPIC_OR_PARTITION,
                Some("This server does not host this topic-partition.".to_string()),
            ),
        })
        .collect()
}

fn create_partitions(
    placer: &Placer,
    metadata: &mut ClusterMetadata,
    topics: &[NewPartitions],
) -> Vec<TopicOutcome> {
    let mut outcomes = Vec::with_capacity(topics.len());
    for NewPartitions {
        topic: name,
        count,
        assignments,
    } in topics
    {
        if is_internal_topic(name) {
            let (code, message) = internal_refusal(name);
            outcomes.push(outcome(name, code, Some(message)));
            continue;
        }
        let current = match metadata.topic(name) {
            Some(topic) => topic.partitions.len() as i32,
            None => {
                outcomes.push(outcome(
                    name,
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(format!("The topic '{name}' does not exist.")),
                ));
                continue;
            }
        };
        if *count <= current || *count as u64 > PARTITIONS_PER_TOPIC_MAX {
            outcomes.push(outcome(
                name,
                error::INVALID_PARTITIONS,
                Some(format!(
                    "Topic currently has {current} partitions, {count} would not be an increase (max {PARTITIONS_PER_TOPIC_MAX})."
                )),
            ));
            continue;
        }
        let added_count = (*count - current) as usize;
        if let Some(lists) = assignments {
            let checked = if lists.len() != added_count {
                Err((
                    error::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "Increasing the number of partitions by {added_count} but {} assignments provided.",
                        lists.len()
                    ),
                ))
            } else {
                lists
                    .iter()
                    .try_for_each(|list| check_replica_list(placer, list))
            };
            if let Err((code, message)) = checked {
                outcomes.push(outcome(name, code, Some(message)));
                continue;
            }
        }
        let replication_factor = metadata
            .topic(name)
            .and_then(|topic| topic.partitions.first())
            .map_or(1, |partition| partition.replicas.len());
        let added: Vec<PartitionAssignment> = metadata.place_partitions(
            added_count as u32,
            &placer.slots,
            replication_factor,
            assignments.as_deref(),
        );
        if let Some(topic) = metadata.topics.get_mut(name) {
            topic.partitions.extend(added);
        }
        outcomes.push(outcome(name, error::NONE, None));
    }
    outcomes
}

fn alter_configs(
    config: &Config,
    metadata: &mut ClusterMetadata,
    topics: &[TopicConfigChanges],
    incremental: bool,
) -> Vec<TopicOutcome> {
    let mut outcomes = Vec::with_capacity(topics.len());
    for TopicConfigChanges {
        topic: name,
        changes,
    } in topics
    {
        if is_internal_topic(name) {
            let (code, message) = internal_refusal(name);
            outcomes.push(outcome(name, code, Some(message)));
            continue;
        }
        let Some(topic) = metadata.topics.get_mut(name) else {
            outcomes.push(outcome(
                name,
                error::UNKNOWN_TOPIC_OR_PARTITION,
                Some(format!("The topic '{name}' does not exist.")),
            ));
            continue;
        };
        let checked = apply_changes(&topic.configs, changes, incremental).and_then(|configs| {
            let candidate = TopicMetadata {
                configs,
                ..topic.clone()
            };
            TopicConfig::resolve(config, &candidate).check(config)?;
            Ok(candidate.configs)
        });
        match checked {
            Ok(configs) => {
                topic.configs = configs;
                outcomes.push(outcome(name, error::NONE, None));
            }
            Err(message) => outcomes.push(outcome(name, error::INVALID_CONFIG, Some(message))),
        }
    }
    outcomes
}

fn apply_changes(
    current: &BTreeMap<String, String>,
    changes: &[ConfigChange],
    incremental: bool,
) -> Result<BTreeMap<String, String>, String> {
    let mut configs = if incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for change in changes {
        match (change.operation, &change.value) {
            (ConfigOperation::Set, Some(value)) => {
                topic_keys::validate(&change.key, value)?;
                configs.insert(change.key.clone(), value.clone());
            }
            (ConfigOperation::Set, None) | (ConfigOperation::Delete, _) => {
                if topic_keys::find(&change.key).is_none() {
                    topic_keys::validate(&change.key, "")?;
                }
                configs.remove(&change.key);
            }
            (ConfigOperation::Append | ConfigOperation::Subtract, _) => {
                return Err(format!(
                    "APPEND/SUBTRACT is only valid for list configs; `{}` is not one here",
                    change.key
                ));
            }
        }
    }
    Ok(configs)
}

/// Reads the metadata at start (before any executor runs, so `std::fs` is fine here).
pub fn load(config: &Config) -> Result<ClusterMetadata, String> {
    let path = config.data_dir.join(METADATA_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            ClusterMetadata::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ClusterMetadata {
            format_version: metadata::FORMAT_VERSION,
            version: 0,
            cluster_id: if !config.cluster_id.is_empty() {
                config.cluster_id.clone()
            } else if !config.controller_quorum_voters.is_empty() {
                // Every voter must report the same id without talking first: derived from
                // the quorum they all were given.
                quorum_cluster_id(&config.controller_quorum_voters)
            } else {
                uuid::Uuid::new_v4().simple().to_string()[..22].to_string()
            },
            next_shard: 0,
            next_producer_id: 0,
            topics: BTreeMap::new(),
            voters: Vec::new(),
            learners: Vec::new(),
            brokers: Vec::new(),
            users: BTreeMap::new(),
            acls: Vec::new(),
            raft_index: 0,
            raft_term: 0,
        }),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}

fn log_has_entries(path: &std::path::Path) -> bool {
    crate::replication::durable_log::DurableLog::read(path)
        .map(|recovered| !recovered.entries.is_empty())
        .unwrap_or(true)
}

/// A cluster id (22 characters, like Kafka's) that is a function of the controller quorum.
fn quorum_cluster_id(voters: &[(i32, std::net::SocketAddr)]) -> String {
    let mut sorted = voters.to_vec();
    sorted.sort();
    let text = format!("{sorted:?}");
    let high = crc32c::crc32c(text.as_bytes());
    let low = crc32c::crc32c_append(high, text.as_bytes());
    let extra = crc32c::crc32c_append(low, b"sluice");
    format!("{high:08x}{low:08x}{extra:08x}")[..22].to_string()
}

/// Prepares the metadata at start (before any executor runs, so `std::fs` is fine here): reads
/// the snapshot, upgrades an older format, replays the metadata log, and commits one entry giving
/// every partition this node leads a new leader epoch (as Kafka's controller does when the broker
/// comes back). Returns the metadata shards start from and the controller for shard 0.
pub fn start(config: &Config) -> Result<(ClusterMetadata, ControllerNode), String> {
    metadata::broker_log_config(config)
        .validate()
        .map_err(|error| format!("log.* settings refused by storage: {error}"))?;
    let mut snapshot = load(config)?;
    if snapshot.format_version > metadata::FORMAT_VERSION {
        return Err(format!(
            "{} is format {}, newer than this binary's {}",
            METADATA_FILE_NAME,
            snapshot.format_version,
            metadata::FORMAT_VERSION
        ));
    }
    let node = NodeId(config.node_id);
    let log_path = config
        .data_dir
        .join(controller_log::CONTROLLER_LOG_FILE_NAME);
    if snapshot.format_version < 2 && log_path.exists() {
        // A snapshot from before the metadata log (an older binary ran on this directory since):
        // it is the whole state, and the log's entries belong to a later history it never saw.
        let aside =
            log_path.with_extension(format!("log.before-format-{}", snapshot.format_version));
        log::warn!(
            "{} is format {} (whole state) but {} exists: moving the log to {}",
            METADATA_FILE_NAME,
            snapshot.format_version,
            log_path.display(),
            aside.display()
        );
        std::fs::rename(&log_path, &aside)
            .map_err(|error| format!("{}: {error}", log_path.display()))?;
    }
    let new_directory = !config.data_dir.join(METADATA_FILE_NAME).exists();
    let voters = controller_log::voters(config);
    let has_history = !new_directory
        && (snapshot.raft_index > 0 || !snapshot.topics.is_empty() || log_has_entries(&log_path));
    if snapshot.voters.is_empty() {
        if voters.len() > 1 && has_history {
            return Err(format!(
                "{} holds the history of a one-node cluster; a node joins a quorum of {} voters \
                 with an empty data directory",
                config.data_dir.display(),
                voters.len()
            ));
        }
    } else if snapshot.voters != voters {
        return Err(format!(
            "this data directory was written by a quorum of voters {:?}, but \
             controller.quorum.voters now names {:?}; changing the voters is not supported yet",
            snapshot.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
            voters.iter().map(|v| v.0).collect::<Vec<_>>()
        ));
    }
    snapshot.voters = voters;
    let upgraded = snapshot.upgrade(node);
    controller_log::open(
        config,
        snapshot,
        |metadata| {
            metadata.register(BrokerRegistration::of(config));
            metadata.bump_leader_epochs(node)
        },
        upgraded || new_directory,
    )
}
