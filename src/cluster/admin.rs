//! Metadata changes clients ask for (CreateTopics, DeleteTopics, CreatePartitions, the config
//! APIs) and the mesh requests that carry them, and new metadata versions, between shards. Only
//! the single metadata writer (shard 0) executes admin changes (`controller.rs`).

use std::rc::Rc;

use crate::cluster::controller;
use crate::cluster::metadata::{BrokerRegistration, ClusterMetadata};
use crate::futures::LocalFuture;
use crate::ids::{NodeId, TopicId};
use crate::protocol::error::ErrorCode;
use crate::shard::request::Request;
use crate::shard::Shard;
pub use crate::shard::METADATA_SHARD;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: broker default (`num.partitions`), or the number of explicit assignments.
    pub num_partitions: i32,
    /// -1: broker default (1), or the size of explicit assignments. Anything but 1 is
    /// INVALID_REPLICATION_FACTOR on one node.
    pub replication_factor: i16,
    /// Explicit replica assignment, per partition index (empty: the broker places them).
    pub assignments: Vec<ReplicaAssignment>,
    pub configs: Vec<(String, Option<String>)>,
    /// Created by the broker itself (`__consumer_offsets`); clients cannot create those names.
    pub internal: bool,
}

/// A client's explicit replica list for one partition (CreateTopics, CreatePartitions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaAssignment {
    pub partition: i32,
    pub broker_ids: Vec<NodeId>,
}

/// CreatePartitions for one topic: grow it to `count` partitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewPartitions {
    pub topic: String,
    pub count: i32,
    /// Replica lists of the new partitions, in order (None: the broker places them).
    pub assignments: Option<Vec<Vec<NodeId>>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TopicOutcome {
    pub name: String,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    pub topic_id: TopicId,
    pub num_partitions: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigOperation {
    Set,
    Delete,
    Append,
    Subtract,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub value: Option<String>,
    pub operation: ConfigOperation,
}

/// AlterConfigs / IncrementalAlterConfigs of one topic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TopicConfigChanges {
    pub topic: String,
    pub changes: Vec<ConfigChange>,
}

/// Cluster-metadata changes; only shard 0 (the single metadata writer) executes them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum AdminRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<NewPartitions>,
        validate_only: bool,
    },
    /// `incremental`: IncrementalAlterConfigs semantics; otherwise AlterConfigs replaces all
    /// overrides of the topic.
    AlterTopicConfigs {
        topics: Vec<TopicConfigChanges>,
        incremental: bool,
        validate_only: bool,
    },
    /// A broker announcing itself (where clients reach it, its rack and shards).
    RegisterBroker(BrokerRegistration),
    /// Replicas that won their partition's Raft election, for Metadata (`leaders.rs`).
    SetLeaders(Vec<LeaderReport>),
    /// AlterUserScramCredentials: set or delete users' credentials (outcomes by user name).
    AlterUsers(Vec<UserChange>),
    /// CreateAcls (already validated; one outcome, named "acls"). Creating an ACL that
    /// exists changes nothing, as in Kafka.
    CreateAcls(Vec<crate::security::acl::AclBinding>),
    /// DeleteAcls: the bindings the filters matched (one outcome, named "acls").
    DeleteAcls(Vec<crate::security::acl::AclBinding>),
}

/// One credential change of AlterUserScramCredentials.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserChange {
    pub user: String,
    pub mechanism: crate::security::scram::ScramMechanism,
    /// The new credential; None deletes the user's credential for `mechanism`.
    pub credential: Option<crate::security::scram::ScramCredential>,
}

/// Node `leader` leads `topic`-`partition` in leader epoch (Raft term) `epoch`, with `isr` in
/// sync (caught up within `replica.lag.time.max.ms`, the leader included).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderReport {
    pub topic: String,
    pub partition: i32,
    pub leader: NodeId,
    pub epoch: i32,
    #[serde(default)]
    pub isr: Vec<NodeId>,
}

/// An admin change for shard 0.
#[derive(Debug)]
pub struct Admin(pub AdminRequest);

impl Request for Admin {
    type Reply = Vec<TopicOutcome>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        assert_eq!(shard.id, METADATA_SHARD, "admin requests go to shard 0");
        Box::pin(async move { controller::on_admin(&shard, self.0).await })
    }
}

/// A new metadata version from shard 0; answered once the receiving shard applied it.
#[derive(Debug, Clone)]
pub struct ApplyMetadata(pub Box<ClusterMetadata>);

impl Request for ApplyMetadata {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move { crate::cluster::apply::apply_metadata(&shard, *self.0).await })
    }
}

/// Shard 0 reserves `count` producer ids (persisted before they are handed out); None if the
/// metadata write failed.
#[derive(Debug)]
pub struct AllocateProducerIds {
    pub count: u32,
}

impl Request for AllocateProducerIds {
    type Reply = Option<i64>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        assert_eq!(shard.id, METADATA_SHARD, "producer ids come from shard 0");
        Box::pin(async move { controller::on_allocate_producer_ids(&shard, self.count).await })
    }
}

/// The controller quorum's state, from shard 0 (DescribeQuorum).
#[derive(Debug)]
pub struct DescribeQuorum;

impl Request for DescribeQuorum {
    type Reply = crate::cluster::controller_log::QuorumStatus;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        assert_eq!(shard.id, METADATA_SHARD, "the controller runs on shard 0");
        Box::pin(async move { controller::on_describe_quorum(&shard).await })
    }
}

/// Sends a metadata change to the single writer (shard 0) and returns per-topic outcomes.
pub async fn admin(shard: &Rc<Shard>, request: AdminRequest) -> Vec<TopicOutcome> {
    match shard.call(METADATA_SHARD, Admin(request)).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            log::error!("admin request failed: {error}");
            Vec::new()
        }
    }
}
