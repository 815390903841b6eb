//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns. It runs Kafka's classic rebalance protocol (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup, static membership, generation fencing, session and rebalance timeouts, the
//! initial rebalance delay) and keeps committed offsets.
//!
//! Durability: an offset commit or a completed generation is appended to the group's offsets
//! partition and answered only after fdatasync; the in-memory state changes after the write is
//! durable. On start the shard replays its offsets partitions to rebuild groups and offsets.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::records::{self, OffsetValue, OffsetsRecord};
use super::state::{Group, GroupState, Member};
use super::{error as group_error, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::protocol::batch::encode_batch;
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::records::{decode_records, split_batches};
use crate::shard::pool::now_ms;
use crate::shard::Shard;

/// Largest offset metadata string (`offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Longest group id or group instance id: `__consumer_offsets` records store strings with an
/// i16 length (the member id embeds the instance id, so this leaves room for it).
pub const GROUP_ID_BYTES_MAX: usize = 16 * 1024;
/// Bytes read per step when replaying an offsets partition at start.
const REPLAY_READ_BYTES: u32 = 1 << 20;

#[derive(Default)]
pub struct GroupCoordinator {
    pub groups: RefCell<HashMap<String, Group>>,
    /// Offsets partitions this shard has replayed and coordinates the groups of, with the term
    /// of the replica's leadership they were loaded in (0: a partition with one replica).
    pub loaded_partitions: RefCell<HashMap<i32, u64>>,
    /// Replicated offsets partitions being replayed after this replica became their leader.
    loading: RefCell<HashSet<i32>>,
}

impl GroupCoordinator {
    pub fn new() -> Rc<GroupCoordinator> {
        Rc::new(GroupCoordinator::default())
    }

    /// Whether this shard coordinates `partition`'s groups now: loaded, and in the term its
    /// replica leads in (a replica deposed, or leading again in a newer term, waits for the
    /// next `follow_leadership`).
    pub fn coordinates(&self, shard: &Shard, partition: i32) -> bool {
        let loaded = self.loaded_partitions.borrow().get(&partition).copied();
        loaded.is_some()
            && shard
                .partitions
                .get(OFFSETS_TOPIC, partition)
                .and_then(|hosted| hosted.leading_term())
                == loaded
    }

    /// Follows the leadership of the replicated offsets partitions this shard hosts: a replica
    /// that leads in a term it has not loaded replays its partition (once everything earlier
    /// leaders committed is committed in its own term) and then coordinates the partition's
    /// groups; one that no longer leads drops them, and their waiting members are answered
    /// NOT_COORDINATOR so that they find the new coordinator. Called every `GROUP_TICK`.
    pub fn follow_leadership(&self, shard: &Rc<Shard>) {
        for hosted in shard.partitions.of_topic(OFFSETS_TOPIC) {
            if !hosted.is_replicated() {
                continue;
            }
            let partition = hosted.topic_partition.partition;
            let leading = hosted.leading_term();
            let loaded = self.loaded_partitions.borrow().get(&partition).copied();
            if loaded.is_some() && loaded != leading {
                self.unload_partition(shard, partition);
            }
            let Some(term) = leading else { continue };
            if loaded == Some(term) || !self.loading.borrow_mut().insert(partition) {
                continue;
            }
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let coordinator = super::coordinator_of(&shard);
                coordinator.load_led_partition(&shard, &hosted, term).await;
                coordinator.loading.borrow_mut().remove(&partition);
            })
            .detach();
        }
    }

    /// Loads a replicated offsets partition this replica leads in `term`: first waits until the
    /// commit point reaches the log's end as of its election (Raft commits earlier leaders'
    /// entries with the new leader's first one), then replays.
    async fn load_led_partition(&self, shard: &Shard, hosted: &Rc<Partition>, term: u64) {
        let end = hosted.log_end_offset();
        while hosted.high_watermark() < end
            && hosted.leading_term() == Some(term)
            && !hosted.is_offline()
        {
            hosted
                .wait_for_high_watermark_above(hosted.high_watermark())
                .await;
        }
        if hosted.leading_term() != Some(term) {
            return;
        }
        let loaded = self.load_partition(hosted, term).await;
        if !loaded || hosted.leading_term() != Some(term) {
            // Not loaded whole, or no longer led: nothing of it stays (tried again next tick).
            self.unload_partition(shard, hosted.topic_partition.partition);
        }
    }

    /// Stops coordinating `partition`'s groups (this replica no longer leads it).
    fn unload_partition(&self, shard: &Shard, partition: i32) {
        self.loaded_partitions.borrow_mut().remove(&partition);
        let partitions = super::offsets_partitions(shard);
        let mut groups = self.groups.borrow_mut();
        let leaving: Vec<String> = groups
            .keys()
            .filter(|group_id| super::partition_for(group_id, partitions) == partition)
            .cloned()
            .collect();
        for group_id in &leaving {
            if let Some(mut group) = groups.remove(group_id) {
                for member_id in group.members.keys().cloned().collect::<Vec<_>>() {
                    if let Some(member) = group.remove_member(&member_id) {
                        fail_waiters(member, error::NOT_COORDINATOR);
                    }
                }
            }
        }
        log::info!(
            "{OFFSETS_TOPIC}-{partition}: no longer led here; {} groups handed on",
            leaving.len()
        );
    }

    /// Replays one offsets partition into groups and offsets; coordinates its groups from then
    /// on (`term`: the leadership it was loaded in, 0 for a partition with one replica).
    pub async fn load_partition(&self, hosted: &Partition, term: u64) -> bool {
        let partition = hosted.topic_partition.partition;
        let log = hosted.log();
        let mut offset = log.log_start_offset();
        let mut applied = 0usize;
        while offset < hosted.high_watermark() {
            let before = offset;
            let chunks = match log.read(offset, REPLAY_READ_BYTES).await {
                Ok(chunks) => chunks,
                Err(error) => {
                    log::error!("{OFFSETS_TOPIC}-{partition}: replay stopped at {offset}: {error}");
                    break;
                }
            };
            if chunks.is_empty() {
                break;
            }
            for chunk in chunks {
                for batch in split_batches(chunk) {
                    if let Ok(header) = crate::protocol::batch::BatchHeader::parse(&batch) {
                        offset = offset.max(header.last_offset() + 1);
                    }
                    let Ok(batch_records) = decode_records(&batch) else {
                        log::warn!("{OFFSETS_TOPIC}-{partition}: skipping an unreadable batch");
                        continue;
                    };
                    for record in batch_records {
                        let Some(key) = &record.key else { continue };
                        if let Some(decoded) = records::decode(key, record.value.as_ref()) {
                            self.apply(decoded);
                            applied += 1;
                        }
                    }
                }
            }
            if offset == before {
                break; // nothing parseable at this offset: do not spin
            }
        }
        if offset < hosted.high_watermark() {
            // Partial state would make consumers reset: the partition stays unloaded, and its
            // groups answer COORDINATOR_LOAD_IN_PROGRESS.
            crate::warn_limited!("{OFFSETS_TOPIC}-{partition}: not loaded (stopped at {offset})");
            return false;
        }
        self.loaded_partitions.borrow_mut().insert(partition, term);
        log::info!("{OFFSETS_TOPIC}-{partition}: loaded {applied} records");
        true
    }

    fn apply(&self, record: OffsetsRecord) {
        let mut groups = self.groups.borrow_mut();
        let now = Instant::now();
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let entry = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                match value {
                    Some(value) => {
                        entry.offsets.insert((topic, partition), value);
                    }
                    None => {
                        entry.offsets.remove(&(topic, partition));
                    }
                }
            }
            OffsetsRecord::Group { group, value } => match value {
                Some(value) => {
                    let offsets = groups
                        .remove(&group)
                        .map(|old| old.offsets)
                        .unwrap_or_default();
                    let mut rebuilt = Group::from_record(&group, &value, now);
                    rebuilt.offsets = offsets;
                    groups.insert(group, rebuilt);
                }
                None => {
                    groups.remove(&group);
                }
            },
        }
    }

    /// Appends records to the group's offsets partition and waits until they are durable.
    pub async fn persist(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        entries: Vec<(Bytes, Option<Bytes>)>,
    ) -> ErrorCode {
        let partition = super::partition_for(group_id, super::offsets_partitions(shard));
        let Some(hosted) = shard.partitions.get(OFFSETS_TOPIC, partition) else {
            return error::NOT_COORDINATOR;
        };
        if !self.coordinates(shard, partition) {
            return error::NOT_COORDINATOR;
        }
        let rows: Vec<crate::protocol::batch::Record<'_>> = entries
            .iter()
            .map(|(key, value)| (Some(&key[..]), value.as_deref()))
            .collect();
        let batch = encode_batch(&rows, now_ms());
        match hosted
            .append_and_commit(bytes::BytesMut::from(&batch[..]))
            .await
        {
            Ok(_) => error::NONE,
            // Leadership moved while the records were replicated: the client finds the new
            // coordinator, which has them if they were committed after all.
            Err(error::NOT_LEADER_OR_FOLLOWER) => error::NOT_COORDINATOR,
            Err(code) => {
                crate::warn_limited!("{OFFSETS_TOPIC}-{partition}: write failed with error {code}");
                error::COORDINATOR_NOT_AVAILABLE
            }
        }
    }

    /// Persists the group's current generation (members and assignments).
    pub async fn persist_group(&self, shard: &Rc<Shard>, group_id: &str) -> ErrorCode {
        let value = {
            let groups = self.groups.borrow();
            match groups.get(group_id) {
                Some(group) => records::group_value(&group.to_record()),
                None => return error::NONE,
            }
        };
        self.persist(
            shard,
            group_id,
            vec![(records::group_key(group_id), Some(value))],
        )
        .await
    }

    /// Periodic work: expire members whose session ended, finish join phases whose wait is
    /// over, drop expired pending member ids.
    pub fn tick(&self, shard: &Rc<Shard>) {
        let now = Instant::now();
        // Groups with nothing left (no members, pending joins or offsets) are forgotten.
        self.groups.borrow_mut().retain(|_, group| {
            !(group.state == GroupState::Empty
                && group.members.is_empty()
                && group.pending_members.is_empty()
                && group.offsets.is_empty())
        });
        let group_ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for group_id in group_ids {
            let mut expired_any = false;
            {
                let mut groups = self.groups.borrow_mut();
                let Some(group) = groups.get_mut(&group_id) else {
                    continue;
                };
                group.pending_members.retain(|_, expiry| *expiry > now);
                let expired: Vec<String> = group
                    .members
                    .values()
                    .filter(|member| member.awaiting_join.is_none() && member.session_expired(now))
                    .map(|member| member.member_id.clone())
                    .collect();
                for member_id in expired {
                    log::info!("group {group_id}: member {member_id} session expired");
                    if let Some(member) = group.remove_member(&member_id) {
                        fail_waiters(member, error::UNKNOWN_MEMBER_ID);
                    }
                    expired_any = true;
                }
                if expired_any {
                    prepare_rebalance(group, now, shard.config.group_initial_rebalance_delay_ms);
                }
            }
            self.try_complete_join(shard, &group_id);
        }
    }

    /// Ends the join phase if everyone joined (and the initial delay passed) or the rebalance
    /// timeout is over: bumps the generation, picks protocol and leader, answers every join.
    pub fn try_complete_join(&self, shard: &Rc<Shard>, group_id: &str) {
        let now = Instant::now();
        let became_empty = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return;
            };
            if group.state != GroupState::PreparingRebalance {
                return;
            }
            let delay_over = group.initial_delay_until.is_none_or(|until| now >= until);
            let deadline_passed = group.rebalance_deadline.is_some_and(|until| now >= until);
            if !(deadline_passed || (group.all_members_joined() && delay_over)) {
                return;
            }
            let late: Vec<String> = group
                .members
                .values()
                .filter(|member| member.awaiting_join.is_none())
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in late {
                if let Some(member) = group.remove_member(&member_id) {
                    fail_waiters(member, error::UNKNOWN_MEMBER_ID);
                }
            }
            group.pending_members.clear();
            group.generation += 1;
            group.rebalance_deadline = None;
            group.initial_delay_until = None;
            group.state_timestamp_ms = now_ms();
            if group.members.is_empty() {
                group.state = GroupState::Empty;
                group.protocol_name = None;
                group.leader = None;
                true
            } else {
                group.state = GroupState::CompletingRebalance;
                group.protocol_name = group.select_protocol();
                if group
                    .leader
                    .as_ref()
                    .is_none_or(|leader| !group.members.contains_key(leader))
                {
                    group.leader = group.members.keys().next().cloned();
                }
                log::info!(
                    "group {group_id}: generation {} with {} members, leader {:?}, protocol {:?}",
                    group.generation,
                    group.members.len(),
                    group.leader,
                    group.protocol_name
                );
                answer_joins(group);
                false
            }
        };
        if became_empty {
            // The record is taken now: a member rejoining before the write runs must not
            // change what is written for this generation.
            let value = self
                .groups
                .borrow()
                .get(group_id)
                .map(|group| records::group_value(&group.to_record()));
            if let Some(value) = value {
                let shard = shard.clone();
                let group_id = group_id.to_string();
                glommio::spawn_local(async move {
                    let coordinator = super::coordinator_of(&shard);
                    let entry = vec![(records::group_key(&group_id), Some(value))];
                    coordinator.persist(&shard, &group_id, entry).await;
                })
                .detach();
            }
        }
    }

    /// JoinGroup: registers the member and parks until the join phase ends.
    pub async fn join(
        &self,
        shard: &Rc<Shard>,
        request: JoinGroupRequest,
        version: i16,
        client_id: String,
        client_host: String,
    ) -> JoinGroupResponse {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let instance = request.group_instance_id.as_ref().map(|id| id.to_string());
        let protocols: Vec<(String, Bytes)> = request
            .protocols
            .iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
            .collect();
        let failed = |code: ErrorCode, member_id: &str| {
            let mut response = JoinGroupResponse::default();
            response.error_code = code;
            response.generation_id = -1;
            response.member_id = StrBytes::from_string(member_id.to_string());
            response
        };
        let too_long = |text: &str| text.len() > GROUP_ID_BYTES_MAX;
        if group_id.is_empty() || too_long(&group_id) || instance.as_deref().is_some_and(too_long) {
            return failed(error::INVALID_GROUP_ID, &member_id);
        }
        let config = &shard.config;
        if request.session_timeout_ms < config.group_min_session_timeout_ms
            || request.session_timeout_ms > config.group_max_session_timeout_ms
        {
            return failed(group_error::INVALID_SESSION_TIMEOUT, &member_id);
        }
        let (sender, receiver) = local_channel::new_bounded(1);
        let mut sender = Some(sender);
        let now = Instant::now();
        let delay_ms = shard.config.group_initial_rebalance_delay_ms;
        let mut persist_static = false;
        let immediate = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&group_id)
                && groups.len() >= config.groups_per_shard_max as usize
            {
                crate::warn_limited!(
                    "shard {}: {} groups (groups.per.shard.max): refusing new group {group_id:?}",
                    shard.id,
                    groups.len()
                );
                return failed(error::COORDINATOR_NOT_AVAILABLE, &member_id);
            }
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id));
            let group_max_size = config.group_max_size as usize;
            // Kafka's acceptJoiningMember for a member without an id (a known static instance
            // replaces itself and does not grow the group).
            let known_static = instance
                .as_deref()
                .is_some_and(|known| group.static_members.contains_key(known));
            if member_id.is_empty() && !known_static && !accepts_new_member(group, group_max_size) {
                return failed(group_error::GROUP_MAX_SIZE_REACHED, "");
            }
            if group.state == GroupState::Dead {
                return failed(error::COORDINATOR_NOT_AVAILABLE, &member_id);
            }
            if !group.supports(request.protocol_type.as_str(), &protocols) {
                return failed(group_error::INCONSISTENT_GROUP_PROTOCOL, &member_id);
            }
            let rebalance_timeout_ms = if version == 0 {
                request.session_timeout_ms
            } else {
                request.rebalance_timeout_ms
            };
            let new_member = || Member {
                member_id: String::new(),
                group_instance_id: instance.clone(),
                client_id: client_id.clone(),
                client_host: client_host.clone(),
                rebalance_timeout_ms,
                session_timeout_ms: request.session_timeout_ms,
                protocols: protocols.clone(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                last_heartbeat: now,
            };
            let joiner = Joiner {
                member_id: &member_id,
                instance: instance.as_deref(),
                client_id: &client_id,
                version,
                session_timeout_ms: request.session_timeout_ms,
            };
            let joined_id = match admit(group, joiner, now, group_max_size) {
                Admission::Refuse(code, id) => return failed(code, &id),
                Admission::MemberIdRequired(id) => {
                    return failed(group_error::MEMBER_ID_REQUIRED, &id)
                }
                Admission::StaticRejoin { new_id, old_id } => {
                    let mut member = group.remove_member(&old_id).unwrap_or_else(new_member);
                    if let Some(waiter) = member.awaiting_sync.take() {
                        let _ = waiter.try_send(sync_error(group_error::FENCED_INSTANCE_ID));
                    }
                    if let Some((waiter, _)) = member.awaiting_join.take() {
                        let _ = waiter.try_send(failed(group_error::FENCED_INSTANCE_ID, &old_id));
                    }
                    // Kafka's member.matches(protocols): names and metadata bytes both.
                    let unchanged = member.protocols == protocols;
                    member.member_id = new_id.clone();
                    member.protocols = protocols.clone();
                    member.session_timeout_ms = request.session_timeout_ms;
                    member.rebalance_timeout_ms = rebalance_timeout_ms;
                    member.last_heartbeat = now;
                    let was_leader = group.leader.as_deref() == Some(old_id.as_str());
                    group.members.insert(new_id.clone(), member);
                    if let Some(instance) = &instance {
                        group
                            .static_members
                            .insert(instance.clone(), new_id.clone());
                    }
                    if was_leader || group.leader.is_none() {
                        group.leader = Some(new_id.clone());
                    }
                    if group.state == GroupState::Stable && !was_leader && unchanged {
                        // KIP-345: a known static member coming back keeps its assignment
                        // without a rebalance; its new member id is persisted below.
                        persist_static = true;
                        Some(static_rejoin_answer(group, &new_id, version))
                    } else {
                        park_join(group, &new_id, sender.take(), version, now, delay_ms);
                        None
                    }
                }
                Admission::Join(id) => {
                    if group.members.len() >= group_max_size && !group.members.contains_key(&id) {
                        return failed(group_error::GROUP_MAX_SIZE_REACHED, &id);
                    }
                    let unchanged = group
                        .members
                        .get(&id)
                        .is_some_and(|member| member.protocols == protocols);
                    let member = group.members.entry(id.clone()).or_insert_with(|| Member {
                        member_id: id.clone(),
                        ..new_member()
                    });
                    member.protocols = protocols.clone();
                    member.session_timeout_ms = request.session_timeout_ms;
                    member.rebalance_timeout_ms = rebalance_timeout_ms;
                    member.client_id = client_id.clone();
                    member.client_host = client_host.clone();
                    member.last_heartbeat = now;
                    if let Some(instance) = &instance {
                        group.static_members.insert(instance.clone(), id.clone());
                    }
                    group.pending_members.remove(&id);
                    if group.protocol_type.is_none() || group.members.len() == 1 {
                        group.protocol_type = Some(request.protocol_type.to_string());
                    }
                    if group.state == GroupState::Stable
                        && group.leader.as_deref() != Some(id.as_str())
                        && unchanged
                        && group
                            .members
                            .get(&id)
                            .is_some_and(|m| !m.assignment.is_empty())
                    {
                        Some(static_rejoin_answer(group, &id, version))
                    } else {
                        park_join(group, &id, sender.take(), version, now, delay_ms);
                        None
                    }
                }
            };
            joined_id
        };
        if let Some(response) = immediate {
            if persist_static {
                let code = self.persist_group(shard, &group_id).await;
                if code != error::NONE {
                    let mut failed_response = response;
                    failed_response.error_code = code;
                    return failed_response;
                }
            }
            return response;
        }
        self.try_complete_join(shard, &group_id);
        match receiver.recv().await {
            Some(response) => response,
            None => failed(error::UNKNOWN_MEMBER_ID, &member_id),
        }
    }
}

enum Admission {
    Join(String),
    StaticRejoin { new_id: String, old_id: String },
    MemberIdRequired(String),
    Refuse(ErrorCode, String),
}

/// Kafka's member id: `<client.id>-<UUID>`, or `<group.instance.id>-<UUID>` for a static
/// member (`ClassicGroup.generateMemberId`); assignors order members by id, so clients' tests
/// expect this form. The prefix is cut to GROUP_ID_BYTES_MAX so the id fits the i16-length
/// strings of `__consumer_offsets` records.
fn new_member_id(prefix: &str) -> String {
    let mut end = prefix.len().min(GROUP_ID_BYTES_MAX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}", &prefix[..end], uuid::Uuid::new_v4())
}

/// While a join phase runs, the members already waiting count; otherwise the group's size.
fn accepts_new_member(group: &Group, max: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group
                .members
                .values()
                .filter(|member| member.awaiting_join.is_some())
                .count()
                < max
        }
        GroupState::CompletingRebalance | GroupState::Stable => group.members.len() < max,
    }
}

/// Pending member ids are capped at `group.max.size`: at the cap the one that expires first
/// goes (its client most likely retried already; on its next JoinGroup it gets
/// UNKNOWN_MEMBER_ID, resets and joins again, which every client retries), rather than refusing
/// with GROUP_MAX_SIZE_REACHED, which the Java consumer treats as fatal.
fn evict_earliest_pending(group: &mut Group) {
    let earliest = group
        .pending_members
        .iter()
        .min_by_key(|(_, expiry)| **expiry)
        .map(|(id, _)| id.clone());
    if let Some(id) = earliest {
        group.pending_members.remove(&id);
    }
}

/// Decides how a JoinGroup enters the group (KIP-394 member id required, KIP-345 static).
/// What `admit` needs of a JoinGroup.
struct Joiner<'a> {
    member_id: &'a str,
    instance: Option<&'a str>,
    client_id: &'a str,
    version: i16,
    session_timeout_ms: i32,
}

fn admit(group: &mut Group, joiner: Joiner<'_>, now: Instant, pending_max: usize) -> Admission {
    let Joiner {
        member_id,
        instance,
        client_id,
        version,
        session_timeout_ms,
    } = joiner;
    if let Some(instance) = instance {
        let known = group.static_members.get(instance).cloned();
        return match (member_id.is_empty(), known) {
            (true, Some(old_id)) => Admission::StaticRejoin {
                new_id: new_member_id(instance),
                old_id,
            },
            (true, None) => Admission::Join(new_member_id(instance)),
            (false, Some(current)) if current != member_id => {
                Admission::Refuse(group_error::FENCED_INSTANCE_ID, member_id.to_string())
            }
            (false, _) if group.members.contains_key(member_id) => {
                Admission::Join(member_id.to_string())
            }
            (false, _) => Admission::Refuse(error::UNKNOWN_MEMBER_ID, member_id.to_string()),
        };
    }
    if member_id.is_empty() {
        let id = new_member_id(client_id);
        if version >= 4 {
            let session = Duration::from_millis(session_timeout_ms.max(0) as u64);
            if group.pending_members.len() >= pending_max {
                evict_earliest_pending(group);
            }
            group.pending_members.insert(id.clone(), now + session);
            return Admission::MemberIdRequired(id);
        }
        return Admission::Join(id);
    }
    if group.members.contains_key(member_id) || group.pending_members.contains_key(member_id) {
        return Admission::Join(member_id.to_string());
    }
    Admission::Refuse(error::UNKNOWN_MEMBER_ID, member_id.to_string())
}

/// Parks the member in the join phase, starting a rebalance if none is running.
fn park_join(
    group: &mut Group,
    member_id: &str,
    sender: Option<local_channel::LocalSender<JoinGroupResponse>>,
    version: i16,
    now: Instant,
    initial_delay_ms: u64,
) {
    let Some(sender) = sender else {
        return;
    };
    if let Some(member) = group.members.get_mut(member_id) {
        if let Some((old, _)) = member.awaiting_join.take() {
            let mut response = JoinGroupResponse::default();
            response.error_code = error::UNKNOWN_MEMBER_ID;
            let _ = old.try_send(response);
        }
        member.awaiting_join = Some((sender, version));
    }
    prepare_rebalance(group, now, initial_delay_ms);
}

/// Moves the group into PreparingRebalance (members in sync are told to rejoin).
pub fn prepare_rebalance(group: &mut Group, now: Instant, initial_delay_ms: u64) {
    match group.state {
        GroupState::PreparingRebalance | GroupState::Dead => return,
        GroupState::Empty => {
            group.initial_delay_until = Some(now + Duration::from_millis(initial_delay_ms));
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            for member in group.members.values_mut() {
                if let Some(waiter) = member.awaiting_sync.take() {
                    let _ = waiter.try_send(sync_error(error::REBALANCE_IN_PROGRESS));
                }
            }
        }
    }
    let timeout_ms = group
        .members
        .values()
        .map(|member| member.rebalance_timeout_ms.max(0) as u64)
        .max()
        .unwrap_or(0)
        .max(initial_delay_ms);
    group.rebalance_deadline = Some(now + Duration::from_millis(timeout_ms));
    group.state = GroupState::PreparingRebalance;
}

pub fn sync_error(code: ErrorCode) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = code;
    response
}

fn fail_waiters(mut member: Member, code: ErrorCode) {
    if let Some((waiter, _)) = member.awaiting_join.take() {
        let mut response = JoinGroupResponse::default();
        response.error_code = code;
        response.generation_id = -1;
        let _ = waiter.try_send(response);
    }
    if let Some(waiter) = member.awaiting_sync.take() {
        let _ = waiter.try_send(sync_error(code));
    }
}

fn join_response(group: &Group, member_id: &str, version: i16) -> JoinGroupResponse {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let mut response = JoinGroupResponse::default();
    response.generation_id = group.generation;
    if version >= 7 {
        response.protocol_type = group.protocol_type.clone().map(StrBytes::from_string);
    }
    response.protocol_name = Some(StrBytes::from_string(protocol.clone()));
    response.leader = StrBytes::from_string(group.leader.clone().unwrap_or_default());
    response.member_id = StrBytes::from_string(member_id.to_string());
    if group.leader.as_deref() == Some(member_id) {
        response.members = group
            .members
            .values()
            .map(|member| {
                let mut entry = JoinGroupResponseMember::default();
                entry.member_id = StrBytes::from_string(member.member_id.clone());
                if version >= 5 {
                    entry.group_instance_id =
                        member.group_instance_id.clone().map(StrBytes::from_string);
                }
                entry.metadata = member.metadata_for(&protocol);
                entry
            })
            .collect();
    }
    response
}

fn answer_joins(group: &mut Group) {
    // Every member's session restarts with the new generation (Kafka's onCompleteJoin).
    let now = Instant::now();
    for member in group.members.values_mut() {
        member.last_heartbeat = now;
    }
    let waiting: Vec<(String, local_channel::LocalSender<JoinGroupResponse>, i16)> = group
        .members
        .values_mut()
        .filter_map(|member| {
            member
                .awaiting_join
                .take()
                .map(|(sender, version)| (member.member_id.clone(), sender, version))
        })
        .collect();
    for (member_id, sender, version) in waiting {
        let response = join_response(group, &member_id, version);
        let _ = sender.try_send(response);
    }
}

fn static_rejoin_answer(group: &mut Group, member_id: &str, version: i16) -> JoinGroupResponse {
    if let Some(member) = group.members.get_mut(member_id) {
        member.last_heartbeat = Instant::now();
    }
    join_response(group, member_id, version)
}

impl GroupCoordinator {
    /// Every committed offset this coordinator keeps: (group, topic, partition, offset).
    pub fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups.borrow();
        let mut all = Vec::new();
        for (group_id, group) in groups.iter() {
            for ((topic, partition), value) in &group.offsets {
                all.push((group_id.clone(), topic.clone(), *partition, value.offset));
            }
        }
        all
    }

    /// Offsets committed by `group_id` (for OffsetFetch), cloned out of the state.
    pub fn committed(&self, group_id: &str) -> Option<HashMap<(String, i32), OffsetValue>> {
        self.groups
            .borrow()
            .get(group_id)
            .map(|group| group.offsets.clone())
    }
}
