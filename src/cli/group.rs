//! `sluice group list|describe|delete|seek`: ListGroups on every broker, DescribeGroups and
//! OffsetFetch at the group's coordinator with ListOffsets at each partition's leader for lag,
//! DeleteGroups, and seek as an OffsetCommit outside any generation (the way Kafka's
//! `--reset-offsets` does it), which the coordinator takes only while the group has no members:
//! seek checks first and says so.

use std::collections::BTreeMap;

use bytes::Buf;
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use serde_json::json;

use super::kafka::{
    all_succeeded, emit, str_bytes, text, Brokers, ClientArgs, Failed, Format, Outcome,
};
use super::topic::status;
use crate::bench::client::{topic_name, ClientError, LATEST_TIMESTAMP};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups (asks every broker)
    List,
    /// A group's state, members, committed offsets and lag per partition
    Describe { group: String },
    /// Delete groups (they must have no members)
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (refused while it has members)
    Seek {
        group: String,
        /// `start`, `end`, an offset, or `@MILLIS` (the first offset at or after a time)
        #[arg(long)]
        to: String,
        /// Only this topic (default: every topic the group has offsets for)
        #[arg(long)]
        topic: Option<String>,
    },
}

pub fn run(command: &GroupCommand, args: &ClientArgs) -> Outcome {
    let mut brokers = Brokers::connect(args)?;
    match command {
        GroupCommand::List => list(&mut brokers, args),
        GroupCommand::Describe { group } => describe(&mut brokers, args, group),
        GroupCommand::Delete { groups } => delete(&mut brokers, args, groups),
        GroupCommand::Seek { group, to, topic } => {
            seek(&mut brokers, args, group, to, topic.as_deref())
        }
    }
}

fn list(brokers: &mut Brokers, args: &ClientArgs) -> Outcome {
    let nodes: Vec<i32> = brokers.addresses().keys().copied().collect();
    let mut groups = BTreeMap::new();
    for node in nodes {
        let response: ListGroupsResponse =
            brokers
                .node(node)?
                .call(0, 4, &ListGroupsRequest::default())?;
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("ListGroups on node {node}"),
                error_code: response.error_code,
            }
            .into());
        }
        for group in response.groups {
            groups.insert(
                group.group_id.to_string(),
                (node, text(&group.group_state), text(&group.protocol_type)),
            );
        }
    }
    let rows = groups
        .iter()
        .map(|(group, (node, state, protocol))| {
            vec![
                group.clone(),
                node.to_string(),
                state.clone(),
                protocol.clone(),
            ]
        })
        .collect();
    let json = groups
        .iter()
        .map(|(group, (node, state, protocol))| {
            json!({"group": group, "coordinator": node, "state": state, "protocol_type": protocol})
        })
        .collect();
    emit(
        args,
        &["GROUP", "COORDINATOR", "STATE", "PROTOCOL-TYPE"],
        rows,
        serde_json::Value::Array(json),
    )
}

/// One group as DescribeGroups tells it.
struct Described {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
}

struct Member {
    member_id: String,
    client_id: String,
    host: String,
    /// (topic, partition) assigned, for a `consumer` protocol group.
    assigned: Vec<(String, i32)>,
}

fn describe_group(brokers: &mut Brokers, group: &str) -> Result<Described, Failed> {
    let mut request = DescribeGroupsRequest::default();
    request.groups.push(GroupId(str_bytes(group)));
    let response: DescribeGroupsResponse = brokers.coordinator(group)?.call(0, 5, &request)?;
    let described = response
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| Failed(format!("DescribeGroups named no group {group}")))?;
    if described.error_code != 0 {
        return Err(ClientError::Kafka {
            context: format!("group {group}"),
            error_code: described.error_code,
        }
        .into());
    }
    let consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .iter()
        .map(|member| Member {
            member_id: text(&member.member_id),
            client_id: text(&member.client_id),
            host: text(&member.client_host),
            assigned: if consumer {
                assignment(&member.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    Ok(Described {
        state: text(&described.group_state),
        protocol_type: text(&described.protocol_type),
        protocol: text(&described.protocol_data),
        members,
    })
}

/// A consumer member's assignment (the consumer protocol's version-prefixed struct); empty
/// when it does not parse (an assignment is client data, not trusted).
fn assignment(bytes: &bytes::Bytes) -> Vec<(String, i32)> {
    let mut bytes = bytes.clone();
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(assignment) => assignment
            .assigned_partitions
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.topic.to_string(), *partition))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// How many members `group` has now (0 for a group that does not exist).
pub fn member_count(brokers: &mut Brokers, group: &str) -> Result<usize, Failed> {
    Ok(describe_group(brokers, group)?.members.len())
}

/// The group's committed offsets: (topic, partition) -> offset.
pub fn committed(
    brokers: &mut Brokers,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, Failed> {
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(str_bytes(group));
    request.topics = None; // v2+: every partition the group has an offset for
    let response: OffsetFetchResponse = brokers.coordinator(group)?.call(2, 7, &request)?;
    if response.error_code != 0 {
        return Err(ClientError::Kafka {
            context: format!("OffsetFetch for group {group}"),
            error_code: response.error_code,
        }
        .into());
    }
    let mut offsets = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                return Err(ClientError::Kafka {
                    context: format!(
                        "OffsetFetch for group {group}, {}-{}",
                        topic.name.0, partition.partition_index
                    ),
                    error_code: partition.error_code,
                }
                .into());
            }
            if partition.committed_offset >= 0 {
                offsets.insert(
                    (topic.name.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

/// Commits `offsets` for `group` outside any generation (the group must have no members):
/// (topic, partition) -> error code.
pub fn commit(
    brokers: &mut Brokers,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeMap<(String, i32), i16>, Failed> {
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(str_bytes(group));
    request.generation_id_or_member_epoch = -1;
    request.member_id = str_bytes("");
    request.retention_time_ms = -1;
    let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        by_topic
            .entry(topic)
            .or_default()
            .push((*partition, *offset));
    }
    for (topic, partitions) in by_topic {
        let mut entry = offset_commit_request::OffsetCommitRequestTopic::default();
        entry.name = topic_name(topic);
        for (partition, offset) in partitions {
            let mut item = offset_commit_request::OffsetCommitRequestPartition::default();
            item.partition_index = partition;
            item.committed_offset = offset;
            item.committed_leader_epoch = -1;
            entry.partitions.push(item);
        }
        request.topics.push(entry);
    }
    let response: OffsetCommitResponse = brokers.coordinator(group)?.call(2, 8, &request)?;
    Ok(response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    (topic.name.to_string(), partition.partition_index),
                    partition.error_code,
                )
            })
        })
        .collect())
}

/// (topic, partition) -> an offset, or the error asking for it.
type PartitionOffsets = BTreeMap<(String, i32), Result<i64, i16>>;

/// Log end offsets of every partition of `topics`: (topic, partition) -> offset or error.
fn log_ends(
    brokers: &mut Brokers,
    topics: impl IntoIterator<Item = String>,
    timestamp: i64,
) -> Result<PartitionOffsets, Failed> {
    let mut ends = BTreeMap::new();
    for topic in topics {
        let partitions = brokers.partitions(&topic)?;
        for (partition, offset) in brokers.offsets(&topic, &partitions, timestamp)? {
            ends.insert((topic.clone(), partition), offset);
        }
    }
    Ok(ends)
}

fn describe(brokers: &mut Brokers, args: &ClientArgs, group: &str) -> Outcome {
    let described = describe_group(brokers, group)?;
    let committed = committed(brokers, group)?;
    let mut owner: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for member in &described.members {
        for assigned in &member.assigned {
            owner.insert(assigned.clone(), member);
        }
    }
    let mut topics: Vec<String> = committed.keys().map(|(topic, _)| topic.clone()).collect();
    topics.extend(owner.keys().map(|(topic, _)| topic.clone()));
    topics.sort();
    topics.dedup();
    let ends = log_ends(brokers, topics, LATEST_TIMESTAMP)?;
    // Every partition of every topic the group reads or has read.
    let rows: Vec<_> = ends
        .iter()
        .filter(|(key, _)| committed.contains_key(*key) || owner.contains_key(*key))
        .map(|((topic, partition), end)| {
            let current = committed.get(&(topic.clone(), *partition)).copied();
            let end = end.ok();
            let lag = match (current, end) {
                (Some(current), Some(end)) => Some((end - current).max(0)),
                // No committed offset: no lag to tell (as Kafka's tool shows it).
                _ => None,
            };
            let member = owner.get(&(topic.clone(), *partition));
            (topic.clone(), *partition, current, end, lag, member)
        })
        .collect();
    let cell = |value: Option<i64>| value.map_or("-".to_string(), |v| v.to_string());
    let total_lag: i64 = rows.iter().filter_map(|row| row.4).sum();
    match args.format {
        Format::Json => {
            let partitions: Vec<_> = rows
                .iter()
                .map(|(topic, partition, current, end, lag, member)| {
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "committed_offset": current,
                        "log_end_offset": end,
                        "lag": lag,
                        "member_id": member.map(|m| m.member_id.clone()),
                        "client_id": member.map(|m| m.client_id.clone()),
                        "host": member.map(|m| m.host.clone()),
                    })
                })
                .collect();
            let json = json!({
                "group": group,
                "state": described.state,
                "protocol_type": described.protocol_type,
                "protocol": described.protocol,
                "members": described.members.len(),
                "total_lag": total_lag,
                "partitions": partitions,
            });
            println!("{json:#}");
        }
        Format::Table => {
            print!(
                "{}",
                super::aligned(&[
                    vec!["GROUP".into(), group.to_string()],
                    vec!["STATE".into(), described.state.clone()],
                    vec!["PROTOCOL".into(), described.protocol.clone()],
                    vec!["MEMBERS".into(), described.members.len().to_string()],
                    vec!["TOTAL-LAG".into(), total_lag.to_string()],
                ])
            );
            let table_rows = rows
                .iter()
                .map(|(topic, partition, current, end, lag, member)| {
                    vec![
                        topic.clone(),
                        partition.to_string(),
                        cell(*current),
                        cell(*end),
                        cell(*lag),
                        member.map_or("-".into(), |m| m.member_id.clone()),
                        member.map_or("-".into(), |m| m.client_id.clone()),
                        member.map_or("-".into(), |m| m.host.clone()),
                    ]
                })
                .collect();
            print!(
                "\n{}",
                super::table(
                    &[
                        "TOPIC",
                        "PARTITION",
                        "CURRENT-OFFSET",
                        "LOG-END-OFFSET",
                        "LAG",
                        "MEMBER-ID",
                        "CLIENT-ID",
                        "HOST"
                    ],
                    table_rows
                )
            );
        }
    }
    Ok(())
}

fn delete(brokers: &mut Brokers, args: &ClientArgs, groups: &[String]) -> Outcome {
    let mut results = Vec::new();
    for group in groups {
        let mut request = DeleteGroupsRequest::default();
        request.groups_names.push(GroupId(str_bytes(group)));
        let code = match brokers.coordinator(group) {
            Ok(coordinator) => {
                let response: DeleteGroupsResponse = coordinator.call(0, 2, &request)?;
                response
                    .results
                    .first()
                    .map_or(0, |result| result.error_code)
            }
            Err(failed) => return Err(failed),
        };
        results.push((group.clone(), code));
    }
    let rows = results
        .iter()
        .map(|(group, code)| vec![group.clone(), status(*code, None)])
        .collect();
    let json = results
        .iter()
        .map(|(group, code)| json!({"group": group, "error_code": code}))
        .collect();
    emit(
        args,
        &["GROUP", "STATUS"],
        rows,
        serde_json::Value::Array(json),
    )?;
    all_succeeded("DeleteGroups", results)
}

fn seek(
    brokers: &mut Brokers,
    args: &ClientArgs,
    group: &str,
    to: &str,
    topic: Option<&str>,
) -> Outcome {
    let target = super::kafka::parse_position("--to", to)?;
    let described = describe_group(brokers, group)?;
    if !described.members.is_empty() {
        return Err(Failed(format!(
            "group {group} has {} members (state {}): stop its consumers first",
            described.members.len(),
            described.state
        )));
    }
    let previous = committed(brokers, group)?;
    let topics: Vec<String> = match topic {
        Some(topic) => vec![topic.to_string()],
        None => {
            let mut topics: Vec<String> = previous.keys().map(|(t, _)| t.clone()).collect();
            topics.dedup();
            if topics.is_empty() {
                return Err(Failed(format!(
                    "group {group} has no committed offsets: name the topic with --topic"
                )));
            }
            topics
        }
    };
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        let layout = brokers.partitions(&topic)?;
        for (partition, offset) in brokers.offsets_at(&topic, &layout, target, true)? {
            offsets.insert((topic.clone(), partition), offset);
        }
    }
    let codes = commit(brokers, group, &offsets)?;
    let rows = offsets
        .iter()
        .map(|(key, offset)| {
            vec![
                key.0.clone(),
                key.1.to_string(),
                previous
                    .get(key)
                    .map_or("-".to_string(), |offset| offset.to_string()),
                offset.to_string(),
                status(codes.get(key).copied().unwrap_or(-1), None),
            ]
        })
        .collect();
    let json = offsets
        .iter()
        .map(|(key, offset)| {
            json!({
                "topic": key.0,
                "partition": key.1,
                "previous_offset": previous.get(key),
                "offset": offset,
                "error_code": codes.get(key).copied().unwrap_or(-1),
            })
        })
        .collect();
    emit(
        args,
        &[
            "TOPIC",
            "PARTITION",
            "PREVIOUS-OFFSET",
            "NEW-OFFSET",
            "STATUS",
        ],
        rows,
        serde_json::Value::Array(json),
    )?;
    all_succeeded(
        "OffsetCommit",
        offsets.keys().map(|key| {
            (
                format!("{}-{}", key.0, key.1),
                codes.get(key).copied().unwrap_or(-1),
            )
        }),
    )
}
