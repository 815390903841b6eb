//! SyncGroup, Heartbeat, LeaveGroup, offset commit/fetch/delete, describe, list and delete of
//! groups, on the coordinator shard. Kafka's error codes for stale members and generations.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel;
use kafka_protocol::messages::SyncGroupResponse;
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{
    prepare_rebalance, sync_error, GroupCoordinator, OFFSET_METADATA_BYTES_MAX,
};
use super::error as group_error;
use super::records::{self, OffsetValue};
use super::request::{LeavingMember, MemberAssignment};
use super::state::{Group, GroupState};
use crate::protocol::error::{self, ErrorCode};
use crate::shard::pool::now_ms;
use crate::shard::Shard;

/// Who is asking: checked against the group before any operation.
pub struct Caller<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub generation: i32,
}

/// Kafka's member/generation validation shared by Sync, Heartbeat and OffsetCommit.
fn check_caller(group: &Group, caller: &Caller<'_>) -> Result<(), ErrorCode> {
    if let Some(instance) = caller.group_instance_id {
        if let Some(current) = group.static_members.get(instance) {
            if current != caller.member_id {
                return Err(group_error::FENCED_INSTANCE_ID);
            }
        }
    }
    if !group.members.contains_key(caller.member_id) {
        return Err(error::UNKNOWN_MEMBER_ID);
    }
    if caller.generation != group.generation {
        return Err(error::ILLEGAL_GENERATION);
    }
    Ok(())
}

/// A group's committed offsets past retention.
struct ExpiredOffsets {
    group_id: String,
    /// (topic, partition) and the value it had when found expired.
    offsets: Vec<((String, i32), OffsetValue)>,
    /// Every offset of the group expired: the group goes with them.
    drops_group: bool,
}

#[derive(Debug, Clone)]
pub struct OffsetCommitItem {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl GroupCoordinator {
    pub async fn sync(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        caller: Caller<'_>,
        assignments: Vec<MemberAssignment>,
    ) -> SyncGroupResponse {
        let (sender, receiver) = local_channel::new_bounded(1);
        let leader_done = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return sync_error(error::UNKNOWN_MEMBER_ID);
            };
            if let Err(code) = check_caller(group, &caller) {
                return sync_error(code);
            }
            match group.state {
                GroupState::Empty | GroupState::Dead => {
                    return sync_error(error::UNKNOWN_MEMBER_ID)
                }
                GroupState::PreparingRebalance => return sync_error(error::REBALANCE_IN_PROGRESS),
                GroupState::Stable => {
                    let member = &group.members[caller.member_id];
                    return sync_answer(
                        &group.protocol_type,
                        &group.protocol_name,
                        member.assignment.clone(),
                    );
                }
                GroupState::CompletingRebalance => {}
            }
            if let Some(member) = group.members.get_mut(caller.member_id) {
                member.awaiting_sync = Some(sender);
                member.last_heartbeat = Instant::now();
            }
            if group.leader.as_deref() == Some(caller.member_id) {
                for member in group.members.values_mut() {
                    member.assignment = assignments
                        .iter()
                        .find(|given| given.member_id == member.member_id)
                        .map(|given| given.assignment.clone())
                        .unwrap_or_default();
                }
                Some(group.generation)
            } else {
                None
            }
        };
        if let Some(generation) = leader_done {
            let code = self.persist_group(shard, group_id).await;
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(group_id) {
                // A rebalance may have started while the write was in flight.
                if group.state == GroupState::CompletingRebalance && group.generation == generation
                {
                    if code == error::NONE {
                        group.state = GroupState::Stable;
                        group.state_timestamp_ms = now_ms();
                    }
                    for member in group.members.values_mut() {
                        if let Some(waiter) = member.awaiting_sync.take() {
                            let answer = if code == error::NONE {
                                sync_answer(
                                    &group.protocol_type,
                                    &group.protocol_name,
                                    member.assignment.clone(),
                                )
                            } else {
                                sync_error(code)
                            };
                            let _ = waiter.try_send(answer);
                        }
                    }
                    if code != error::NONE {
                        prepare_rebalance(group, Instant::now(), 0);
                    }
                }
            }
        }
        match receiver.recv().await {
            Some(response) => response,
            None => sync_error(error::REBALANCE_IN_PROGRESS),
        }
    }

    pub fn heartbeat(&self, group_id: &str, caller: Caller<'_>) -> ErrorCode {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return error::UNKNOWN_MEMBER_ID;
        };
        if group.state == GroupState::Dead {
            return error::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(code) = check_caller(group, &caller) {
            return code;
        }
        if let Some(member) = group.members.get_mut(caller.member_id) {
            member.last_heartbeat = Instant::now();
        }
        match group.state {
            GroupState::PreparingRebalance => error::REBALANCE_IN_PROGRESS,
            GroupState::Empty => error::UNKNOWN_MEMBER_ID,
            _ => error::NONE,
        }
    }

    /// LeaveGroup for each member named; answers per member.
    pub async fn leave(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        leaving: Vec<LeavingMember>,
    ) -> (ErrorCode, Vec<ErrorCode>) {
        let (codes, emptied) = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return (
                    error::UNKNOWN_MEMBER_ID,
                    vec![error::UNKNOWN_MEMBER_ID; leaving.len()],
                );
            };
            let mut codes = Vec::with_capacity(leaving.len());
            let mut removed_any = false;
            for LeavingMember {
                member_id,
                group_instance_id,
            } in &leaving
            {
                let target = match group_instance_id {
                    Some(instance) => match group.static_members.get(instance) {
                        Some(current) if member_id.is_empty() || current == member_id => {
                            Some(current.clone())
                        }
                        Some(_) => {
                            codes.push(group_error::FENCED_INSTANCE_ID);
                            continue;
                        }
                        None => None,
                    },
                    None => Some(member_id.clone()),
                };
                match target.and_then(|id| group.remove_member(&id)) {
                    Some(mut member) => {
                        if let Some((waiter, _)) = member.awaiting_join.take() {
                            drop(waiter);
                        }
                        removed_any = true;
                        codes.push(error::NONE);
                    }
                    None => codes.push(error::UNKNOWN_MEMBER_ID),
                }
            }
            if removed_any {
                log::info!("group {group_id}: members left, rebalancing");
                prepare_rebalance(group, Instant::now(), 0);
            }
            (codes, removed_any)
        };
        if emptied {
            self.try_complete_join(shard, group_id);
        }
        (error::NONE, codes)
    }

    /// OffsetCommit: validates the caller, writes the offsets durably, then applies them.
    pub async fn commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        caller: Caller<'_>,
        items: Vec<OffsetCommitItem>,
    ) -> Vec<ErrorCode> {
        let group_check = {
            let mut groups = self.groups.borrow_mut();
            let simple = caller.generation < 0 && caller.member_id.is_empty();
            match groups.get_mut(group_id) {
                None if simple => {
                    if groups.len() >= shard.config.groups_per_shard_max as usize {
                        crate::warn_limited!(
                            "shard {}: {} groups (groups.per.shard.max): refusing offsets of new group {group_id:?}",
                            shard.id,
                            groups.len()
                        );
                        Err(error::COORDINATOR_NOT_AVAILABLE)
                    } else {
                        groups.insert(group_id.to_string(), Group::new(group_id));
                        Ok(())
                    }
                }
                None => Err(error::ILLEGAL_GENERATION),
                Some(group) if simple => {
                    if group.is_empty() {
                        Ok(())
                    } else {
                        Err(error::ILLEGAL_GENERATION)
                    }
                }
                Some(group) => match check_caller(group, &caller) {
                    Err(code) => Err(code),
                    Ok(()) if group.state == GroupState::CompletingRebalance => {
                        Err(error::REBALANCE_IN_PROGRESS)
                    }
                    Ok(()) => {
                        if let Some(member) = group.members.get_mut(caller.member_id) {
                            member.last_heartbeat = Instant::now();
                        }
                        Ok(())
                    }
                },
            }
        };
        if let Err(code) = group_check {
            return vec![code; items.len()];
        }
        let placement = shard.placement();
        let now = now_ms();
        let mut codes = Vec::with_capacity(items.len());
        let mut entries = Vec::new();
        let mut accepted = Vec::new();
        for item in &items {
            let known = placement.assignment(&item.topic, item.partition).is_some();
            let text = item.metadata.clone().unwrap_or_default();
            if !known {
                codes.push(error::UNKNOWN_TOPIC_OR_PARTITION);
            } else if text.len() > OFFSET_METADATA_BYTES_MAX {
                codes.push(group_error::OFFSET_METADATA_TOO_LARGE);
            } else {
                let value = OffsetValue {
                    offset: item.offset,
                    leader_epoch: item.leader_epoch,
                    metadata: text,
                    commit_timestamp: now,
                };
                entries.push((
                    records::offset_key(group_id, &item.topic, item.partition),
                    Some(records::offset_value(&value)),
                ));
                accepted.push((codes.len(), (item.topic.clone(), item.partition), value));
                codes.push(error::NONE);
            }
        }
        if entries.is_empty() {
            return codes;
        }
        let written = self.persist(shard, group_id, entries).await;
        if written != error::NONE {
            for (position, _, _) in accepted {
                codes[position] = written;
            }
            return codes;
        }
        let partition = super::partition_for(group_id, super::offsets_partitions(shard));
        if !self.coordinates(shard, partition) {
            // Committed, but this replica stopped leading meanwhile: the new coordinator has
            // the offsets from the log; nothing stays here.
            return codes;
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        for (_, key, value) in accepted {
            group.offsets.insert(key, value);
        }
        codes
    }

    /// DeleteGroups: only empty groups; writes tombstones for the group and its offsets.
    pub async fn delete_group(&self, shard: &Rc<Shard>, group_id: &str) -> ErrorCode {
        let keys = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id) else {
                return group_error::GROUP_ID_NOT_FOUND;
            };
            if !group.is_empty() || group.state != GroupState::Empty {
                return group_error::NON_EMPTY_GROUP;
            }
            let mut keys: Vec<(Bytes, Option<Bytes>)> = group
                .offsets
                .keys()
                .map(|(topic, partition)| (records::offset_key(group_id, topic, *partition), None))
                .collect();
            keys.push((records::group_key(group_id), None));
            keys
        };
        let code = self.persist(shard, group_id, keys).await;
        if code == error::NONE {
            self.groups.borrow_mut().remove(group_id);
        }
        code
    }

    /// OffsetDelete: removes offsets of partitions the group is not consuming.
    pub async fn delete_offsets(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> (ErrorCode, Vec<ErrorCode>) {
        let (subscribed, known) = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id) else {
                return (group_error::GROUP_ID_NOT_FOUND, Vec::new());
            };
            let subscribed: Vec<bool> = partitions
                .iter()
                .map(|(topic, _)| !group.is_empty() && subscribes_to(group, topic))
                .collect();
            (subscribed, group.offsets.clone())
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for ((topic, partition), subscribed) in partitions.iter().zip(&subscribed) {
            if *subscribed {
                codes.push(group_error::GROUP_SUBSCRIBED_TO_TOPIC);
            } else {
                if known.contains_key(&(topic.clone(), *partition)) {
                    tombstones.push((records::offset_key(group_id, topic, *partition), None));
                }
                codes.push(error::NONE);
            }
        }
        if !tombstones.is_empty() {
            let code = self.persist(shard, group_id, tombstones).await;
            if code != error::NONE {
                return (code, codes);
            }
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(group_id) {
                for ((topic, partition), code) in partitions.iter().zip(&codes) {
                    let key = (topic.clone(), *partition);
                    // Only what the tombstone covered: a commit made meanwhile stays.
                    if *code == error::NONE && group.offsets.get(&key) == known.get(&key) {
                        group.offsets.remove(&key);
                    }
                }
            }
        }
        (error::NONE, codes)
    }

    /// Removes offsets of empty groups older than `offsets.retention.minutes` (tombstoned in
    /// the log first), and groups left with nothing. Kafka's rule: a consumer group's offsets
    /// expire `retention` after the group became empty; a standalone committer's (no protocol)
    /// `retention` after each commit.
    pub async fn expire_offsets(&self, shard: &Rc<Shard>, retention_ms: i64) {
        let now = now_ms();
        let expired: Vec<ExpiredOffsets> = self
            .groups
            .borrow()
            .values()
            .filter(|group| group.state == GroupState::Empty)
            .filter_map(|group| {
                let old: Vec<((String, i32), OffsetValue)> = group
                    .offsets
                    .iter()
                    .filter(|(_, value)| {
                        let since =
                            if group.protocol_type.is_some() && group.state_timestamp_ms >= 0 {
                                group.state_timestamp_ms
                            } else {
                                value.commit_timestamp
                            };
                        since.saturating_add(retention_ms) < now
                    })
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                let drops_group = old.len() == group.offsets.len();
                (!old.is_empty()).then(|| ExpiredOffsets {
                    group_id: group.group_id.clone(),
                    offsets: old,
                    drops_group,
                })
            })
            .collect();
        for ExpiredOffsets {
            group_id,
            offsets: old,
            drops_group,
        } in expired
        {
            let mut entries: Vec<(Bytes, Option<Bytes>)> = old
                .iter()
                .map(|((topic, partition), _)| {
                    (records::offset_key(&group_id, topic, *partition), None)
                })
                .collect();
            if drops_group {
                entries.push((records::group_key(&group_id), None));
            }
            if self.persist(shard, &group_id, entries).await != error::NONE {
                continue;
            }
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(&group_id) {
                for (key, value) in &old {
                    // A commit that landed while the tombstones were written is newer: keep it.
                    if group.offsets.get(key) == Some(value) {
                        group.offsets.remove(key);
                    }
                }
                if drops_group && group.is_empty() && group.offsets.is_empty() {
                    groups.remove(&group_id);
                }
            }
            log::info!("group {group_id}: expired {} committed offsets", old.len());
        }
    }
}

/// The consumer protocol's subscription lists topics; a group subscribed to `topic` keeps its
/// offsets (KIP-496). Parsed leniently: any member whose subscription mentions the topic.
fn subscribes_to(group: &Group, topic: &str) -> bool {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group.members.values().any(|member| {
        let metadata = member.metadata_for(&protocol);
        metadata
            .windows(topic.len().max(1))
            .any(|window| window == topic.as_bytes())
    })
}

fn sync_answer(
    protocol_type: &Option<String>,
    protocol_name: &Option<String>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.protocol_type = protocol_type.clone().map(StrBytes::from_string);
    response.protocol_name = protocol_name.clone().map(StrBytes::from_string);
    response.assignment = assignment;
    response
}
