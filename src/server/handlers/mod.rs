//! One file per Kafka API. `handle` peeks the request header, checks the API and version against
//! `protocol::versions`, decodes the header and hands the body to the API's handler. A frame
//! that cannot be decoded, or names an API or version Sluice does not implement, is an `Err`
//! and closes the connection; Kafka outcomes are error codes inside the response.

pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};

pub use crate::cluster::admin::admin;
use crate::cluster::admin::{AdminRequest, NewTopic, TopicOutcome};
use crate::cluster::metadata::{is_internal_topic, validate_topic_name};
use crate::cluster::state;
use crate::group::request::{GroupRequest, ToCoordinator};
use crate::group::{offsets_partitions, partition_for, OFFSETS_TOPIC};
use crate::partition::append_order::Ticket;
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{self, FrameError, ResponseFrame};
use crate::protocol::versions::supported_range;
use crate::shard::Shard;

/// What a handler sees of its request.
pub struct Request {
    pub api: ApiKey,
    pub api_version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
    /// Produce only: this request's turn among the connection's requests, handed on by the
    /// produce handler once its appends are dispatched (`server::connection`: request order).
    pub ticket: Option<Ticket>,
    /// The connection: client address, listener, principal.
    pub session: Rc<crate::server::session::Session>,
    /// When the request's frame was read (the produce stages start there).
    pub received: std::time::Instant,
}

impl Request {
    pub fn client_id(&self) -> String {
        self.header
            .client_id
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default()
    }
}

impl Request {
    pub fn decode<T: kafka_protocol::protocol::Decodable>(&mut self) -> Result<T, FrameError> {
        frame::decode_body(&mut self.body, self.api_version)
    }

    pub fn respond<M: kafka_protocol::protocol::Encodable>(
        &self,
        message: &M,
    ) -> Result<Option<ResponseFrame>, FrameError> {
        frame::encode_response(
            self.api,
            self.api_version,
            self.header.correlation_id,
            message,
        )
        .map(Some)
    }
}

pub async fn handle(
    shard: Rc<Shard>,
    mut frame: BytesMut,
    ticket: Ticket,
    session: Rc<crate::server::session::Session>,
    received: std::time::Instant,
) -> Result<Option<ResponseFrame>, FrameError> {
    if session.expects_raw_token() {
        ticket.turn().await;
        return sasl_authenticate::raw_token(&shard, &session, &frame).await;
    }
    let (api_key, api_version, correlation_id) = frame::peek_header(&frame);
    let Some((api, min, max)) = supported_range(api_key) else {
        return Err(FrameError::UnknownApi { api_key });
    };
    if api_version < min || api_version > max {
        if api == ApiKey::ApiVersions {
            return api_versions::unsupported_version_answer(correlation_id).map(Some);
        }
        return Err(FrameError::UnsupportedVersion {
            api,
            api_version,
            min,
            max,
        });
    }
    admitted(&session, api)?;
    let header = frame::decode_request_header(api, api_version, &mut frame)?;
    let mut request = Request {
        api,
        api_version,
        header,
        body: Bytes::new(),
        ticket: None,
        session,
        received,
    };
    // Request order (`server::connection`): Produce waits for its turn itself and hands it on
    // once its appends are dispatched; Fetch starts in turn and hands it on before it
    // long-polls; every other request keeps its turn until it is handled (`_held`).
    let _held: Option<Ticket> = match api {
        ApiKey::Produce => {
            request.ticket = Some(ticket);
            // Produce keeps the frame mutable: its batches are appended in place (zero copy).
            return produce::handle(&shard, request, frame).await;
        }
        ApiKey::Fetch => {
            ticket.turn().await;
            drop(ticket);
            None
        }
        _ => {
            ticket.turn().await;
            Some(ticket)
        }
    };
    // Again in turn: an authentication that failed (or a session that expired) while this
    // request waited behind it stops it too.
    admitted(&request.session, api)?;
    request.body = frame.freeze();
    match api {
        ApiKey::ApiVersions => api_versions::handle(&shard, request).await,
        ApiKey::SaslHandshake => sasl_handshake::handle(&shard, request).await,
        ApiKey::CreateAcls => create_acls::handle(&shard, request).await,
        ApiKey::DescribeAcls => describe_acls::handle(&shard, request).await,
        ApiKey::DeleteAcls => delete_acls::handle(&shard, request).await,
        ApiKey::AlterUserScramCredentials => {
            alter_user_scram_credentials::handle(&shard, request).await
        }
        ApiKey::DescribeUserScramCredentials => {
            describe_user_scram_credentials::handle(&shard, request).await
        }
        ApiKey::SaslAuthenticate => sasl_authenticate::handle(&shard, request).await,
        ApiKey::Metadata => metadata::handle(&shard, request).await,
        ApiKey::Fetch => fetch::handle(&shard, request).await,
        ApiKey::ListOffsets => list_offsets::handle(&shard, request).await,
        ApiKey::CreateTopics => create_topics::handle(&shard, request).await,
        ApiKey::DeleteTopics => delete_topics::handle(&shard, request).await,
        ApiKey::CreatePartitions => create_partitions::handle(&shard, request).await,
        ApiKey::DescribeConfigs => describe_configs::handle(&shard, request).await,
        ApiKey::AlterConfigs => alter_configs::handle(&shard, request).await,
        ApiKey::IncrementalAlterConfigs => incremental_alter_configs::handle(&shard, request).await,
        ApiKey::DescribeCluster => describe_cluster::handle(&shard, request).await,
        ApiKey::DescribeQuorum => describe_quorum::handle(&shard, request).await,
        ApiKey::FindCoordinator => find_coordinator::handle(&shard, request).await,
        ApiKey::JoinGroup => join_group::handle(&shard, request).await,
        ApiKey::SyncGroup => sync_group::handle(&shard, request).await,
        ApiKey::Heartbeat => heartbeat::handle(&shard, request).await,
        ApiKey::LeaveGroup => leave_group::handle(&shard, request).await,
        ApiKey::OffsetCommit => offset_commit::handle(&shard, request).await,
        ApiKey::OffsetFetch => offset_fetch::handle(&shard, request).await,
        ApiKey::DescribeGroups => describe_groups::handle(&shard, request).await,
        ApiKey::ListGroups => list_groups::handle(&shard, request).await,
        ApiKey::DeleteGroups => delete_groups::handle(&shard, request).await,
        ApiKey::OffsetDelete => offset_delete::handle(&shard, request).await,
        ApiKey::InitProducerId => init_producer_id::handle(&shard, request).await,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(&shard, request).await,
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(&shard, request).await,
        ApiKey::DescribeProducers => describe_producers::handle(&shard, request).await,
        ApiKey::ElectLeaders => elect_leaders::handle(&shard, request).await,
        ApiKey::DeleteRecords => delete_records::handle(&shard, request).await,
        ApiKey::DescribeTopicPartitions => describe_topic_partitions::handle(&shard, request).await,
        ApiKey::ListPartitionReassignments => {
            list_partition_reassignments::handle(&shard, request).await
        }
        other => Err(FrameError::UnknownApi {
            api_key: other as i16,
        }),
    }
}

/// `Session::admits` as the error that closes the connection.
pub fn admitted(session: &crate::server::session::Session, api: ApiKey) -> Result<(), FrameError> {
    session.admits(api).map_err(|reason| FrameError::Refused {
        api,
        reason: reason.to_string(),
    })
}

/// The error for a partition this node does not host: NOT_LEADER_OR_FOLLOWER if it exists on
/// another node (the client refreshes metadata and goes there), UNKNOWN_TOPIC_OR_PARTITION if
/// it does not exist.
pub fn not_hosted_error(shard: &Shard, topic: &str, partition: i32) -> ErrorCode {
    if shard.placement().assignment(topic, partition).is_some() {
        error::NOT_LEADER_OR_FOLLOWER
    } else {
        error::UNKNOWN_TOPIC_OR_PARTITION
    }
}

/// The broker coordinating `group_id`: the leader of its `__consumer_offsets` partition.
pub fn group_coordinator(
    shard: &Shard,
    group_id: &str,
    listener: &str,
) -> Option<crate::cluster::metadata::BrokerRegistration> {
    // The coordinator is the leader of the group's partition, and moves with it.
    let partition = partition_for(group_id, offsets_partitions(shard));
    leader_hint(shard, OFFSETS_TOPIC, partition, listener).map(|(_, _, broker)| broker)
}

/// KIP-951: where a client refused with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH for
/// `topic`-`partition` should go: the leader this node knows of (its own replica's Raft group
/// if it hosts one, else the cluster metadata), with its epoch and registration. None while no
/// live leader is known (the client then asks Metadata, as before KIP-951). The broker's
/// address is the one of client listener `listener`.
pub fn leader_hint(
    shard: &Shard,
    topic: &str,
    partition: i32,
    listener: &str,
) -> Option<(i32, i32, crate::cluster::metadata::BrokerRegistration)> {
    let placement = shard.placement();
    let assignment = placement.assignment(topic, partition)?;
    let local = shard.service::<std::sync::Arc<crate::replication::replicas::LocalLeaders>>();
    let (leader, epoch) = metadata::current_leader(
        assignment,
        &crate::ids::TopicPartition::new(topic, partition),
        &local,
    );
    let metadata = state::of(shard).metadata();
    let broker = live_brokers(shard, &metadata, listener)
        .into_iter()
        .find(|broker| broker.node_id.0 == leader)?;
    Some((leader, epoch, broker))
}

/// The brokers to tell clients about: the registered ones that are not fenced, and this node
/// (serving this request) even before its registration is applied. Each is given with its
/// address on client listener `listener` (the one the request came through, as Kafka answers);
/// a broker without that listener is left out.
pub fn live_brokers(
    shard: &Shard,
    metadata: &crate::cluster::metadata::ClusterMetadata,
    listener: &str,
) -> Vec<crate::cluster::metadata::BrokerRegistration> {
    let mut brokers: Vec<_> = metadata
        .brokers
        .iter()
        .filter(|broker| !broker.fenced || broker.node_id == shard.node)
        .cloned()
        .collect();
    if metadata.broker(shard.node).is_none() {
        brokers.push(crate::cluster::metadata::BrokerRegistration::of(
            &shard.config,
        ));
    }
    brokers
        .into_iter()
        .filter_map(|mut broker| {
            (broker.host, broker.port) = broker.endpoint(listener)?;
            Some(broker)
        })
        .collect()
}

/// The active controller's node id (-1 while none is elected), as shard 0 last saw it.
pub fn controller_id(shard: &Shard) -> i32 {
    shard
        .service::<crate::server::ControllerLeader>()
        .0
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs a group request on the group's coordinator shard. Err: the coordinator error to
/// answer (COORDINATOR_NOT_AVAILABLE until `__consumer_offsets` exists,
/// COORDINATOR_LOAD_IN_PROGRESS while it is being replayed).
pub async fn group_call<R: GroupRequest>(
    shard: &Rc<Shard>,
    request: R,
) -> Result<R::Answer, ErrorCode> {
    let placement = shard.placement();
    if placement.topic(OFFSETS_TOPIC).is_none() {
        return Err(error::COORDINATOR_NOT_AVAILABLE);
    }
    let partition = partition_for(request.group_id(), offsets_partitions(shard));
    let owner = shard.owner_shard(OFFSETS_TOPIC, partition).ok_or_else(|| {
        // Hosted by another node: that node coordinates the group (FindCoordinator says so).
        if placement.assignment(OFFSETS_TOPIC, partition).is_some() {
            error::NOT_COORDINATOR
        } else {
            error::COORDINATOR_NOT_AVAILABLE
        }
    })?;
    match shard.call(owner, ToCoordinator(request)).await {
        Ok(answer) => answer,
        Err(_) => Err(error::COORDINATOR_NOT_AVAILABLE),
    }
}

/// `group_call` for a client that needs `operation` on the group (Kafka's group checks):
/// GROUP_AUTHORIZATION_FAILED without it.
pub async fn authorized_group_call<R: GroupRequest>(
    shard: &Rc<Shard>,
    session: &crate::server::session::Session,
    operation: crate::security::acl::Operation,
    request: R,
) -> Result<R::Answer, ErrorCode> {
    let permitted = crate::server::authorize::allowed(
        shard,
        session,
        operation,
        crate::security::acl::ResourceType::Group,
        request.group_id(),
    );
    if !permitted {
        return Err(error::GROUP_AUTHORIZATION_FAILED);
    }
    group_call(shard, request).await
}

/// Creates the named topics that do not exist yet (`auto.create.topics.enable`), with the broker
/// defaults, as Kafka does for Metadata (never for Produce: an unknown topic there is
/// UNKNOWN_TOPIC_OR_PARTITION). Internal and invalid names are skipped.
pub async fn auto_create_topics(shard: &Rc<Shard>, names: impl Iterator<Item = String>) {
    let metadata = state::of(shard).metadata();
    let missing: Vec<NewTopic> = names
        .filter(|name| {
            metadata.topic(name).is_none()
                && validate_topic_name(name).is_ok()
                && !is_internal_topic(name)
        })
        .map(|name| NewTopic {
            name,
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Vec::new(),
            internal: false,
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let request = AdminRequest::CreateTopics {
        topics: missing,
        validate_only: false,
    };
    for outcome in admin(shard, request).await {
        if outcome.error_code != error::NONE && outcome.error_code != error::TOPIC_ALREADY_EXISTS {
            crate::warn_limited!(
                "auto-creating topic {} failed: {:?}",
                outcome.name,
                outcome.error_message
            );
        }
    }
}

/// The outcome for `name` in `outcomes`, or a generic failure if shard 0 did not answer.
pub fn outcome_for<'a>(outcomes: &'a [TopicOutcome], name: &str) -> Option<&'a TopicOutcome> {
    outcomes.iter().find(|outcome| outcome.name == name)
}
