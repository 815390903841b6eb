//! The authorizer as handlers use it: `allowed(shard, session, operation, resource, name)`
//! checks the connection's principal and address against the ACLs of this shard's copy of
//! cluster metadata (`security::acl`), counting refusals in `sluice_authorization_denied_total`.
//! Each shard keeps an index of the ACLs it last saw and rebuilds it only when a metadata
//! version brings different ACLs; a check takes no lock.
//!
//! Which operation each API needs is Kafka's (`KafkaApis`): Produce Write on the topic, Fetch
//! Read, Metadata and ListOffsets Describe, CreateTopics Create (on the cluster or the topic),
//! DeleteTopics and DeleteRecords Delete, CreatePartitions Alter, the config APIs
//! DescribeConfigs and AlterConfigs, the group APIs Read or Describe or Delete on the group
//! (and Read on the topics of an offset commit), InitProducerId IdempotentWrite on the cluster,
//! the ACL and user APIs Describe or Alter on the cluster, and the cluster-wide admin APIs
//! (ElectLeaders, DescribeLogDirs, DescribeCluster, DescribeQuorum, reassignments) Alter or
//! Describe on the cluster.

use std::cell::RefCell;
use std::rc::Rc;

use crate::security::acl::{AclBinding, AclIndex, Operation, ResourceType, CLUSTER_NAME};
use crate::server::session::Session;
use crate::shard::Shard;

/// One shard's index of the ACLs in force, with the metadata version it was checked at.
#[derive(Default)]
pub struct ShardAcls {
    cached: RefCell<Option<Cached>>,
}

struct Cached {
    version: u64,
    acls: Vec<AclBinding>,
    index: Rc<AclIndex>,
}

impl ShardAcls {
    /// The index for metadata `version` holding `acls`: a version compare per check; the ACLs
    /// are compared only when the version moved, and indexed again only when they changed.
    fn index(&self, version: u64, acls: &[AclBinding]) -> Rc<AclIndex> {
        if let Some(cached) = &mut *self.cached.borrow_mut() {
            if cached.version == version {
                return cached.index.clone();
            }
            if cached.acls.as_slice() == acls {
                cached.version = version;
                return cached.index.clone();
            }
        }
        let index = Rc::new(AclIndex::new(acls));
        *self.cached.borrow_mut() = Some(Cached {
            version,
            acls: acls.to_vec(),
            index: index.clone(),
        });
        index
    }
}

/// Whether the connection's principal may do `operation` on `resource_type` `name`.
pub fn allowed(
    shard: &Shard,
    session: &Session,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    let settings = &shard.config.authorizer;
    if !settings.enabled {
        return true;
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    let index = shard
        .service::<ShardAcls>()
        .index(metadata.version, &metadata.acls);
    let principal = session.principal().to_string();
    let host = session
        .address
        .map(|address| address.to_string())
        .unwrap_or_default();
    let allowed = index.authorize(settings, &principal, &host, operation, resource_type, name);
    if !allowed {
        crate::metrics::security_event(("denied", operation.name(), resource_type.name()));
    }
    allowed
}

/// The config APIs: `operation` on a topic (resource type 2) or on the cluster for a broker
/// (4); Err is the error to answer for that resource.
pub fn config_resource(
    shard: &Shard,
    session: &Session,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), i16> {
    use crate::protocol::error;
    match resource_type {
        2 if !allowed(shard, session, operation, ResourceType::Topic, name) => {
            Err(error::TOPIC_AUTHORIZATION_FAILED)
        }
        4 if !cluster_allowed(shard, session, operation) => {
            Err(error::CLUSTER_AUTHORIZATION_FAILED)
        }
        _ => Ok(()),
    }
}

/// InitProducerId without a transactional id (KIP-679): IdempotentWrite on the cluster, or
/// Write on any topic.
pub fn idempotent_producer_allowed(shard: &Shard, session: &Session) -> bool {
    if !shard.config.authorizer.enabled
        || cluster_allowed(shard, session, Operation::IdempotentWrite)
    {
        return true;
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    let index = shard
        .service::<ShardAcls>()
        .index(metadata.version, &metadata.acls);
    let host = session
        .address
        .map(|address| address.to_string())
        .unwrap_or_default();
    index.allowed_on_some(
        &shard.config.authorizer,
        &session.principal().to_string(),
        &host,
        Operation::Write,
        ResourceType::Topic,
    )
}

/// `allowed` on each of `topics`, in order.
pub fn topics_allowed<'a>(
    shard: &Shard,
    session: &Session,
    operation: Operation,
    topics: impl Iterator<Item = &'a str>,
) -> Vec<bool> {
    topics
        .map(|topic| allowed(shard, session, operation, ResourceType::Topic, topic))
        .collect()
}

/// `allowed` on the cluster resource.
pub fn cluster_allowed(shard: &Shard, session: &Session, operation: Operation) -> bool {
    allowed(
        shard,
        session,
        operation,
        ResourceType::Cluster,
        CLUSTER_NAME,
    )
}
