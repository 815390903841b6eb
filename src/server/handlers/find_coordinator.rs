//! FindCoordinator (single key up to v3, batched `coordinator_keys` from v4). A group's
//! coordinator is the leader of its `__consumer_offsets` partition (the shard that owns that
//! replica does the work; requests are forwarded inside the broker). The offsets topic is
//! created on first use, as Kafka does, with `offsets.topic.replication.factor` replicas per
//! partition (capped at the cluster's size). Transaction coordinators do not exist yet.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, Request};
use crate::cluster::admin::{AdminRequest, NewTopic};
use crate::group::OFFSETS_TOPIC;
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// `__consumer_offsets` segments (Kafka's `offsets.topic.segment.bytes`).
const OFFSETS_TOPIC_SEGMENT_BYTES: &str = "104857600";

/// Creates `__consumer_offsets` if it does not exist yet.
pub async fn ensure_offsets_topic(shard: &Rc<Shard>) -> ErrorCode {
    if crate::cluster::state::of(shard)
        .metadata()
        .topic(OFFSETS_TOPIC)
        .is_some()
    {
        return error::NONE;
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    let registered = metadata
        .brokers
        .iter()
        .filter(|broker| !broker.fenced)
        .count()
        .max(1);
    let cluster_size = registered.max(shard.config.controller_quorum_voters.len());
    let replication_factor = usize::try_from(shard.config.offsets_topic_replication_factor)
        .unwrap_or(1)
        .clamp(1, cluster_size);
    if registered < replication_factor {
        // Kafka's rule: the offsets topic waits for as many brokers as it has replicas.
        return error::COORDINATOR_NOT_AVAILABLE;
    }
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: shard.config.offsets_topic_num_partitions,
        replication_factor: replication_factor as i16,
        assignments: Vec::new(),
        configs: vec![
            // No compaction yet: keep everything so no committed offset is ever lost.
            ("retention.ms".to_string(), Some("-1".to_string())),
            ("retention.bytes".to_string(), Some("-1".to_string())),
            (
                "segment.bytes".to_string(),
                Some(OFFSETS_TOPIC_SEGMENT_BYTES.to_string()),
            ),
        ],
        internal: true,
    };
    let outcomes = admin(
        shard,
        AdminRequest::CreateTopics {
            topics: vec![topic],
            validate_only: false,
        },
    )
    .await;
    match outcomes.first().map(|outcome| outcome.error_code) {
        Some(error::NONE) | Some(error::TOPIC_ALREADY_EXISTS) => error::NONE,
        _ => error::COORDINATOR_NOT_AVAILABLE,
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: FindCoordinatorRequest = request.decode()?;
    let version = request.api_version;
    let listener = &request.session.listener.name;
    let keys: Vec<String> = if version >= 4 {
        body.coordinator_keys
            .iter()
            .map(|key| key.to_string())
            .collect()
    } else {
        vec![body.key.to_string()]
    };
    let topic_code = if body.key_type == KEY_TYPE_GROUP {
        ensure_offsets_topic(shard).await
    } else {
        error::NONE
    };
    let answer = |key: &str| -> (ErrorCode, Option<&'static str>) {
        match body.key_type {
            KEY_TYPE_GROUP if key.is_empty() => (error::INVALID_GROUP_ID, Some("empty group id")),
            KEY_TYPE_GROUP
                if !crate::server::authorize::allowed(
                    shard,
                    &request.session,
                    crate::security::acl::Operation::Describe,
                    crate::security::acl::ResourceType::Group,
                    key,
                ) =>
            {
                (error::GROUP_AUTHORIZATION_FAILED, None)
            }
            KEY_TYPE_GROUP if topic_code != error::NONE => (topic_code, None),
            KEY_TYPE_GROUP if super::group_coordinator(shard, key, listener).is_none() => (
                error::COORDINATOR_NOT_AVAILABLE,
                Some("the group's coordinator is not registered yet"),
            ),
            KEY_TYPE_GROUP => (error::NONE, None),
            KEY_TYPE_TRANSACTION => (
                error::COORDINATOR_NOT_AVAILABLE,
                Some("transactions are not supported yet"),
            ),
            _ => (error::INVALID_REQUEST, Some("unknown coordinator key type")),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in &keys {
            let (code, message) = answer(key);
            let mut coordinator = Coordinator::default();
            coordinator.key = StrBytes::from_string(key.clone());
            coordinator.error_code = code;
            coordinator.error_message = message.map(StrBytes::from_static_str);
            if let Some(broker) =
                super::group_coordinator(shard, key, listener).filter(|_| code == error::NONE)
            {
                coordinator.node_id = BrokerId(broker.node_id.0);
                coordinator.host = StrBytes::from_string(broker.host);
                coordinator.port = i32::from(broker.port);
            } else {
                coordinator.node_id = BrokerId(-1);
                coordinator.port = -1;
            }
            response.coordinators.push(coordinator);
        }
    } else {
        let (code, message) = answer(&keys[0]);
        response.error_code = code;
        if version >= 1 {
            response.error_message = message.map(StrBytes::from_static_str);
        }
        if let Some(broker) =
            super::group_coordinator(shard, &keys[0], listener).filter(|_| code == error::NONE)
        {
            response.node_id = BrokerId(broker.node_id.0);
            response.host = StrBytes::from_string(broker.host);
            response.port = i32::from(broker.port);
        } else {
            response.node_id = BrokerId(-1);
            response.port = -1;
        }
    }
    request.respond(&response)
}
