//! One consumer group's state: members, generation, the classic rebalance state machine
//! (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead) and committed offsets. Pure
//! state and transitions; the coordinator (`coordinator.rs`) does the I/O and the answering.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::LocalSender;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};

use super::records::{GroupValue, MemberValue, OffsetValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's names, as DescribeGroups and ListGroups report them.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference, relayed byte for byte.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<(LocalSender<JoinGroupResponse>, i16)>,
    pub awaiting_sync: Option<LocalSender<SyncGroupResponse>>,
    pub last_heartbeat: Instant,
}

impl Member {
    pub fn session_expired(&self, now: Instant) -> bool {
        let session = Duration::from_millis(self.session_timeout_ms.max(0) as u64);
        now.duration_since(self.last_heartbeat) > session
    }

    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of the static member currently holding it.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet, with their expiry.
    pub pending_members: HashMap<String, Instant>,
    pub offsets: HashMap<(String, i32), OffsetValue>,
    /// PreparingRebalance: the join phase ends at this instant at the latest.
    pub rebalance_deadline: Option<Instant>,
    /// `group.initial.rebalance.delay.ms`: an empty group's first join phase waits this long
    /// for more members.
    pub initial_delay_until: Option<Instant>,
    pub state_timestamp_ms: i64,
}

impl Group {
    pub fn new(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            offsets: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            state_timestamp_ms: -1,
        }
    }

    /// Rebuilds a group from its persisted record; members are presumed alive until their
    /// session expires, so consumers of a restarted broker carry on without a rebalance.
    pub fn from_record(group_id: &str, value: &GroupValue, now: Instant) -> Group {
        let mut group = Group::new(group_id);
        group.generation = value.generation;
        group.protocol_type = Some(value.protocol_type.clone());
        group.protocol_name = value.protocol.clone();
        group.leader = value.leader.clone();
        group.state_timestamp_ms = value.state_timestamp;
        for member in &value.members {
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            let protocol = value.protocol.clone().unwrap_or_default();
            group.members.insert(
                member.member_id.clone(),
                Member {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    protocols: vec![(protocol, member.subscription.clone())],
                    assignment: member.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    last_heartbeat: now,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    /// What is persisted after a generation completes (or the group empties).
    pub fn to_record(&self) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|member| MemberValue {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata_for(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The protocol every member supports with the most first-choice votes (Kafka's rule):
    /// each member votes for its most preferred protocol among those all members support;
    /// ties go to the candidate listed first by the first member.
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(other, _)| other == *name))
            })
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find_map(|(name, _)| candidates.iter().position(|candidate| *candidate == name));
            if let Some(index) = choice {
                votes[index] += 1;
            }
        }
        let best = (0..candidates.len()).max_by_key(|index| (votes[*index], usize::MAX - index))?;
        Some(candidates[best].clone())
    }

    /// True if a member offering `protocols` could join: it shares a protocol with everyone.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|member| member.protocols.iter().any(|(other, _)| other == name))
        })
    }

    pub fn all_members_joined(&self) -> bool {
        self.members
            .values()
            .all(|member| member.awaiting_join.is_some())
            && self.pending_members.is_empty()
    }

    /// Removes a member; if it was the leader, another member takes over.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(protocols: &[&str]) -> Member {
        Member {
            member_id: String::new(),
            group_instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 0,
            session_timeout_ms: 0,
            protocols: protocols
                .iter()
                .map(|name| (name.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            last_heartbeat: Instant::now(),
        }
    }

    #[test]
    fn protocol_with_most_votes_among_those_all_support() {
        let mut group = Group::new("g");
        group
            .members
            .insert("a".into(), member(&["range", "roundrobin"]));
        group.members.insert(
            "b".into(),
            member(&["cooperative-sticky", "roundrobin", "range"]),
        );
        group
            .members
            .insert("c".into(), member(&["roundrobin", "range"]));
        // cooperative-sticky is not supported by all; roundrobin gets b and c, range gets a.
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        group.members.insert("d".into(), member(&["range"]));
        assert_eq!(group.select_protocol().as_deref(), Some("range"));
    }
}
