//! DescribeLogDirs (API 35): this broker's data directory (`log.dirs`, one per node) with every
//! replica it hosts: its size on disk and its offset lag (Kafka's, for a current replica: how
//! far its log end is behind the high watermark it knows), and (v4+) the file system's total
//! and usable bytes. Each shard reports its own replicas; nothing is estimated. A null topic
//! list asks for every replica; named partitions this broker does not host are left out, as
//! Kafka leaves them out.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::DescribeLogDirs;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeLogDirsRequest = request.decode()?;
    if !crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Describe,
    ) {
        let mut refused = DescribeLogDirsResponse::default();
        refused.error_code = crate::protocol::error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&refused);
    }
    let wanted: Option<BTreeMap<&str, &[i32]>> = body.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.topic.0.as_str(), topic.partitions.as_slice()))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = StrBytes::from_string(shard.config.data_dir.display().to_string());
    for reply in shard.call_all(DescribeLogDirs).await {
        let Ok(replicas) = reply else {
            // A shard that cannot answer: its replicas cannot be described truthfully.
            result.error_code = error::KAFKA_STORAGE_ERROR;
            continue;
        };
        for replica in replicas {
            let topic = &*replica.topic_partition.topic;
            let index = replica.topic_partition.partition;
            if let Some(wanted) = &wanted {
                if !wanted
                    .get(topic)
                    .is_some_and(|indexes| indexes.contains(&index))
                {
                    continue;
                }
            }
            let mut partition = DescribeLogDirsPartition::default();
            partition.partition_index = index;
            partition.partition_size = replica.size_bytes as i64;
            partition.offset_lag = replica.offset_lag;
            partition.is_future_key = false;
            topics.entry(topic.to_string()).or_default().push(partition);
        }
    }
    for (name, mut partitions) in topics {
        partitions.sort_by_key(|partition| partition.partition_index);
        let mut topic = DescribeLogDirsTopic::default();
        topic.name = TopicName(StrBytes::from_string(name));
        topic.partitions = partitions;
        result.topics.push(topic);
    }
    match crate::storage::disk_space::space(&shard.config.data_dir).await {
        Ok(space) => {
            result.total_bytes = space.total_bytes as i64;
            result.usable_bytes = space.usable_bytes as i64;
        }
        Err(storage_error) => {
            crate::warn_limited!("DescribeLogDirs: {storage_error}");
            result.error_code = error::KAFKA_STORAGE_ERROR;
            result.total_bytes = -1;
            result.usable_bytes = -1;
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results.push(result);
    request.respond(&response)
}
