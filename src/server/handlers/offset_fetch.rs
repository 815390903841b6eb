//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); all of a group's
//! offsets when topics is null. Partitions without a commit answer offset -1.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::group::records::OffsetValue;
use crate::group::request::FetchOffsets;
use crate::protocol::error::{self, ErrorCode};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

type Wanted = Option<Vec<(String, Vec<i32>)>>;
/// (topic, its error code, its partitions' committed values).
type Found = Vec<(String, ErrorCode, Vec<(i32, Option<OffsetValue>)>)>;

/// Committed offsets of `group_id` for `wanted` (None: everything committed). Kafka's checks:
/// Describe on the group; a named topic the principal may not Describe is
/// TOPIC_AUTHORIZATION_FAILED, and "everything" leaves such topics out.
async fn fetch_group(
    shard: &Rc<Shard>,
    session: &crate::server::session::Session,
    group_id: &str,
    wanted: Wanted,
) -> (ErrorCode, Found) {
    let call = FetchOffsets {
        group_id: group_id.to_string(),
    };
    let committed: HashMap<(String, i32), OffsetValue> = match super::authorized_group_call(
        shard,
        session,
        crate::security::acl::Operation::Describe,
        call,
    )
    .await
    {
        Ok(offsets) => offsets
            .into_iter()
            .map(|committed| ((committed.topic, committed.partition), committed.value))
            .collect(),
        Err(code) => return (code, Vec::new()),
    };
    let describable = |topic: &str| {
        crate::server::authorize::allowed(
            shard,
            session,
            crate::security::acl::Operation::Describe,
            crate::security::acl::ResourceType::Topic,
            topic,
        )
    };
    let found = match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let permitted = describable(&topic);
                let values = partitions
                    .into_iter()
                    .map(|partition| {
                        let value = committed
                            .get(&(topic.clone(), partition))
                            .filter(|_| permitted)
                            .cloned();
                        (partition, value)
                    })
                    .collect();
                let code = if permitted {
                    error::NONE
                } else {
                    error::TOPIC_AUTHORIZATION_FAILED
                };
                (topic, code, values)
            })
            .collect(),
        None => {
            let mut by_topic: HashMap<String, Vec<(i32, Option<OffsetValue>)>> = HashMap::new();
            for ((topic, partition), value) in committed {
                if !describable(&topic) {
                    continue;
                }
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((partition, Some(value)));
            }
            let mut found: Found = by_topic
                .into_iter()
                .map(|(topic, partitions)| (topic, error::NONE, partitions))
                .collect();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, _, partitions) in found.iter_mut() {
                partitions.sort_by_key(|(partition, _)| *partition);
            }
            found
        }
    };
    (error::NONE, found)
}

fn values(value: &Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match value {
        Some(value) => (
            value.offset,
            value.leader_epoch,
            StrBytes::from_string(value.metadata.clone()),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: OffsetFetchRequest = request.decode()?;
    let mut response = OffsetFetchResponse::default();
    if request.api_version >= 8 {
        for group in &body.groups {
            let wanted = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|topic| (topic.name.0.to_string(), topic.partition_indexes.clone()))
                    .collect()
            });
            let (code, found) =
                fetch_group(shard, &request.session, group.group_id.0.as_str(), wanted).await;
            let mut group_response = OffsetFetchResponseGroup::default();
            group_response.group_id = GroupId(group.group_id.0.clone());
            group_response.error_code = code;
            for (topic, topic_code, partitions) in found {
                let mut topic_response = OffsetFetchResponseTopics::default();
                topic_response.name = TopicName(StrBytes::from_string(topic));
                for (partition, value) in partitions {
                    let (offset, epoch, metadata) = values(&value);
                    let mut entry = OffsetFetchResponsePartitions::default();
                    entry.partition_index = partition;
                    entry.error_code = topic_code;
                    entry.committed_offset = offset;
                    entry.committed_leader_epoch = epoch;
                    entry.metadata = Some(metadata);
                    topic_response.partitions.push(entry);
                }
                group_response.topics.push(topic_response);
            }
            response.groups.push(group_response);
        }
        return request.respond(&response);
    }
    let wanted = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_indexes.clone()))
            .collect()
    });
    let (code, found) =
        fetch_group(shard, &request.session, body.group_id.0.as_str(), wanted).await;
    response.error_code = code;
    for (topic, topic_code, partitions) in found {
        let mut topic_response = OffsetFetchResponseTopic::default();
        topic_response.name = TopicName(StrBytes::from_string(topic));
        for (partition, value) in partitions {
            let (offset, epoch, metadata) = values(&value);
            let mut entry = OffsetFetchResponsePartition::default();
            entry.partition_index = partition;
            entry.committed_offset = offset;
            if request.api_version >= 5 {
                entry.committed_leader_epoch = epoch;
            }
            entry.metadata = Some(metadata);
            entry.error_code = if topic_code != error::NONE {
                topic_code
            } else if request.api_version < 2 {
                code
            } else {
                error::NONE
            };
            topic_response.partitions.push(entry);
        }
        response.topics.push(topic_response);
    }
    request.respond(&response)
}
