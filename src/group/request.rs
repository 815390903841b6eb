//! The consumer-group requests that travel to a group's coordinator shard, one type each, each
//! with its own answer type (`GroupRequest::Answer`), so a handler cannot be handed the wrong
//! kind of answer. `ToCoordinator` carries one over the mesh and answers
//! COORDINATOR_LOAD_IN_PROGRESS while the group's `__consumer_offsets` partition is replayed.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, SyncGroupResponse};

use super::operations::{Caller, OffsetCommitItem};
use super::records::OffsetValue;
use super::{coordinator_of, offsets_partitions, partition_for};
use crate::futures::LocalFuture;
use crate::protocol::error::{self, ErrorCode};
use crate::shard::request::Request;
use crate::shard::Shard;

/// A request served by the coordinator of `group_id()`.
pub trait GroupRequest: Send + 'static {
    type Answer: Send + 'static;
    fn group_id(&self) -> &str;
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer>;
}

/// A group request on its way to the coordinator shard; Err(COORDINATOR_LOAD_IN_PROGRESS)
/// while the group's offsets partition is being replayed.
#[derive(Debug)]
pub struct ToCoordinator<R>(pub R);

impl<R: GroupRequest> Request for ToCoordinator<R> {
    type Reply = Result<R::Answer, ErrorCode>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            let partition = partition_for(self.0.group_id(), offsets_partitions(&shard));
            if !coordinator_of(&shard).coordinates(&shard, partition) {
                // A replica that does not lead its partition sends the client to find the
                // coordinator again; one that leads is still replaying it.
                let leads = shard
                    .partitions
                    .get(super::OFFSETS_TOPIC, partition)
                    .is_some_and(|hosted| hosted.leading_term().is_some());
                return Err(if leads {
                    error::COORDINATOR_LOAD_IN_PROGRESS
                } else {
                    error::NOT_COORDINATOR
                });
            }
            Ok(self.0.run(shard).await)
        })
    }
}

/// A member as a JoinGroup/SyncGroup/Heartbeat/OffsetCommit names itself.
#[derive(Debug, Clone)]
pub struct MemberRef {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
}

impl MemberRef {
    fn caller(&self) -> Caller<'_> {
        Caller {
            member_id: &self.member_id,
            group_instance_id: self.group_instance_id.as_deref(),
            generation: self.generation,
        }
    }
}

#[derive(Debug)]
pub struct JoinGroup {
    pub request: JoinGroupRequest,
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
}

impl GroupRequest for JoinGroup {
    type Answer = JoinGroupResponse;
    fn group_id(&self) -> &str {
        self.request.group_id.0.as_str()
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            let join = groups.join(
                &shard,
                self.request,
                self.version,
                self.client_id,
                self.client_host,
            );
            join.await
        })
    }
}

/// One member's assignment, as the leader sends it in SyncGroup.
#[derive(Debug, Clone)]
pub struct MemberAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

#[derive(Debug)]
pub struct SyncGroup {
    pub group_id: String,
    pub member: MemberRef,
    pub assignments: Vec<MemberAssignment>,
}

impl GroupRequest for SyncGroup {
    type Answer = SyncGroupResponse;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            let caller = self.member.caller();
            groups
                .sync(&shard, &self.group_id, caller, self.assignments)
                .await
        })
    }
}

#[derive(Debug)]
pub struct Heartbeat {
    pub group_id: String,
    pub member: MemberRef,
}

impl GroupRequest for Heartbeat {
    type Answer = ErrorCode;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        let code = coordinator_of(&shard).heartbeat(&self.group_id, self.member.caller());
        Box::pin(async move { code })
    }
}

/// A member leaving (LeaveGroup v3+ names several).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// A group-level error code and one code per item asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCodes {
    pub error_code: ErrorCode,
    pub item_codes: Vec<ErrorCode>,
}

#[derive(Debug)]
pub struct LeaveGroup {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

impl GroupRequest for LeaveGroup {
    type Answer = GroupCodes;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            let (error_code, item_codes) = groups.leave(&shard, &self.group_id, self.members).await;
            GroupCodes {
                error_code,
                item_codes,
            }
        })
    }
}

#[derive(Debug)]
pub struct CommitOffsets {
    pub group_id: String,
    pub member: MemberRef,
    pub items: Vec<OffsetCommitItem>,
}

impl GroupRequest for CommitOffsets {
    type Answer = Vec<ErrorCode>;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            let caller = self.member.caller();
            groups
                .commit(&shard, &self.group_id, caller, self.items)
                .await
        })
    }
}

/// One committed offset of a group.
#[derive(Debug, Clone)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub value: OffsetValue,
}

#[derive(Debug)]
pub struct FetchOffsets {
    pub group_id: String,
}

impl GroupRequest for FetchOffsets {
    type Answer = Vec<CommittedOffset>;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        let offsets = coordinator_of(&shard)
            .committed(&self.group_id)
            .unwrap_or_default()
            .into_iter()
            .map(|((topic, partition), value)| CommittedOffset {
                topic,
                partition,
                value,
            })
            .collect();
        Box::pin(async move { offsets })
    }
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct DescribedGroup {
    pub error_code: ErrorCode,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug)]
pub struct DescribeGroup {
    pub group_id: String,
}

impl GroupRequest for DescribeGroup {
    type Answer = DescribedGroup;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        let described = coordinator_of(&shard).describe(&self.group_id);
        Box::pin(async move { described })
    }
}

#[derive(Debug)]
pub struct DeleteGroup {
    pub group_id: String,
}

impl GroupRequest for DeleteGroup {
    type Answer = ErrorCode;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            groups.delete_group(&shard, &self.group_id).await
        })
    }
}

#[derive(Debug)]
pub struct DeleteOffsets {
    pub group_id: String,
    pub partitions: Vec<(String, i32)>,
}

impl GroupRequest for DeleteOffsets {
    type Answer = GroupCodes;
    fn group_id(&self) -> &str {
        &self.group_id
    }
    fn run(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Answer> {
        Box::pin(async move {
            let groups = coordinator_of(&shard);
            let (error_code, item_codes) = groups
                .delete_offsets(&shard, &self.group_id, self.partitions)
                .await;
            GroupCodes {
                error_code,
                item_codes,
            }
        })
    }
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// Every group a shard coordinates (asked of every shard).
#[derive(Debug, Clone)]
pub struct ListGroups;

impl Request for ListGroups {
    type Reply = Vec<ListedGroup>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        let listed = coordinator_of(&shard).list();
        Box::pin(async move { listed })
    }
}
