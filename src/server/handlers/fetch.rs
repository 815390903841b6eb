//! Fetch, answered with the hand-written zero-copy encoder (`protocol::fetch_response`): record
//! batches go from the log's buffers into the response as separate `Bytes` chunks and are
//! written with one vectored `sendmsg`, never concatenated.
//!
//! Long polling: the connection's shard reads every requested partition from its owner; if the
//! answer holds fewer than `min_bytes` it asks each owner to watch its partitions and wakes on
//! the first high-watermark advance (flush completion wakes the watchers; no timer polls the
//! log) or at `max_wait_ms`, then reads again. Totals are capped at `max_bytes`, except that the
//! first batch is always returned whole (KIP-74).
//!
//! Fetch sessions (KIP-227) are not created: the answer carries session id 0, which tells
//! clients to keep sending full fetch requests.
//!
//! KIP-951: a partition refused with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names the
//! leader this node knows of (v12+) and its endpoint (v16+), when that is another node.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::FetchRequest;

use super::Request;
use crate::futures::select_first;
use crate::ids::{LeaderEpoch, Offset, TopicId, TopicPartition};
use crate::partition::operation::{FetchItem, FetchItemResult};
use crate::partition::read::FETCH_MAX_WAIT_MS_MAX;
use crate::protocol::error;
use crate::protocol::fetch_response::{self, FetchPartition};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::request::{Fetch, WatchHighWatermark};
use crate::shard::{Shard, Split};

/// Fetch session errors (KIP-227).
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

/// One requested partition: where it goes in the answer and what to read.
struct Wanted {
    topic_index: usize,
    item: FetchItem,
    known: bool,
    error_code: i16,
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: FetchRequest = request.decode()?;
    let version = request.api_version;
    let (topics, wanted) = resolve(shard, &body, version, &request.session);
    if body.session_id != 0 || body.session_epoch > 0 {
        let results: Vec<FetchItemResult> = Vec::new();
        return Ok(Some(encode(
            &request,
            FETCH_SESSION_ID_NOT_FOUND,
            &[],
            &[],
            &results,
            &Hints::default(),
        )));
    }
    let max_wait_ms = u32::try_from(body.max_wait_ms.max(0))
        .unwrap_or(0)
        .min(FETCH_MAX_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(u64::from(max_wait_ms));
    let min_bytes = body.min_bytes.max(0) as usize;
    let fetch_max_bytes = shard.config.fetch_max_bytes as usize;
    let max_bytes = if body.max_bytes <= 0 {
        fetch_max_bytes
    } else {
        (body.max_bytes as usize).min(fetch_max_bytes)
    };
    let mut results;
    loop {
        results = read_all(shard, &wanted, max_bytes as u32).await;
        let total: usize = results.iter().map(FetchItemResult::records_bytes).sum();
        let any_error = results
            .iter()
            .any(|result| result.error_code != error::NONE);
        let now = Instant::now();
        if total >= min_bytes.max(1)
            || min_bytes == 0
            || any_error
            || now >= deadline
            || wanted.is_empty()
        {
            break;
        }
        let remaining_ms = (deadline - now).as_millis().max(1) as u32;
        // Wait for data past what was just read, not past the fetch offset: otherwise a
        // consumer wanting more than is there would spin read -> watch -> read.
        let watched: Vec<FetchItem> = wanted
            .iter()
            .zip(&results)
            .filter(|(want, _)| want.known)
            .map(|(want, result)| FetchItem {
                fetch_offset: want.item.fetch_offset.max(result.high_watermark),
                ..want.item.clone()
            })
            .collect();
        watch_all(shard, &watched, remaining_ms).await;
        if Instant::now() >= deadline {
            results = read_all(shard, &wanted, max_bytes as u32).await;
            break;
        }
    }
    cap_total_bytes(&mut results, max_bytes);
    record_metrics(&wanted, &results);
    let names: Vec<(String, [u8; 16])> = topics;
    let hints = leader_hints(shard, &wanted, &results, &request.session.listener.name);
    Ok(Some(encode(
        &request,
        error::NONE,
        &names,
        &wanted,
        &results,
        &hints,
    )))
}

/// Kafka's API key of Fetch (errors are counted per partition under it).
const FETCH_API_KEY: i16 = 1;

/// Bytes and records sent per topic, and the errors answered per partition (what the response
/// carries, after the total cap).
fn record_metrics(wanted: &[Wanted], results: &[FetchItemResult]) {
    for (want, result) in wanted.iter().zip(results) {
        crate::metrics::error_answered(FETCH_API_KEY, result.error_code);
        if result.records.is_empty() {
            continue;
        }
        let mut records = 0u64;
        for chunk in &result.records {
            for batch in crate::protocol::records::split_batches(chunk.clone()) {
                if let Ok(header) = crate::protocol::batch::BatchHeader::parse(&batch) {
                    if !header.is_control() {
                        records += header.record_count.max(0) as u64;
                    }
                }
            }
        }
        let bytes = result.records_bytes() as u64;
        crate::metrics::fetched(&want.item.topic_partition.topic, bytes, records);
    }
}

/// KIP-951: for each partition refused with NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH, the
/// leader this node knows of, if it is another node (v12+ carry it), and those leaders'
/// endpoints (v16+).
#[derive(Default)]
struct Hints {
    leaders: Vec<Option<(i32, i32)>>,
    endpoints: Vec<fetch_response::NodeEndpoint>,
}

fn leader_hints(
    shard: &Shard,
    wanted: &[Wanted],
    results: &[FetchItemResult],
    listener: &str,
) -> Hints {
    let mut hints = Hints::default();
    for (want, result) in wanted.iter().zip(results) {
        let moved = matches!(
            result.error_code,
            error::NOT_LEADER_OR_FOLLOWER | error::FENCED_LEADER_EPOCH
        );
        let tp = &want.item.topic_partition;
        let hint = moved
            .then(|| super::leader_hint(shard, &tp.topic, tp.partition, listener))
            .flatten()
            .filter(|(leader, _, _)| *leader != shard.node.0);
        hints
            .leaders
            .push(hint.as_ref().map(|(leader, epoch, _)| (*leader, *epoch)));
        if let Some((leader, _, broker)) = hint {
            if hints.endpoints.iter().all(|known| known.node_id != leader) {
                hints.endpoints.push(fetch_response::NodeEndpoint {
                    node_id: leader,
                    host: broker.host,
                    port: i32::from(broker.port),
                    rack: broker.rack,
                });
            }
        }
    }
    hints
}

/// Maps request topics (by name, or by id from v13) to items, in request order.
fn resolve(
    shard: &Shard,
    body: &FetchRequest,
    version: i16,
    session: &crate::server::session::Session,
) -> (Vec<(String, [u8; 16])>, Vec<Wanted>) {
    let placement = shard.placement();
    let mut topics = Vec::with_capacity(body.topics.len());
    let mut wanted = Vec::new();
    for (topic_index, topic) in body.topics.iter().enumerate() {
        let (name, topic_id, error_code) = if version >= 13 {
            let id = TopicId(*topic.topic_id.as_bytes());
            match placement.topic_name(&id) {
                Some(found) => (found.to_string(), id, error::NONE),
                None => (String::new(), id, error::UNKNOWN_TOPIC_ID),
            }
        } else {
            let name = topic.topic.0.to_string();
            let id = placement
                .topic(&name)
                .map(|found| found.topic_id)
                .unwrap_or_default();
            (name, id, error::NONE)
        };
        // Consumers need Read on the topic (Kafka's Fetch check).
        let error_code = if error_code == error::NONE
            && !crate::server::authorize::allowed(
                shard,
                session,
                crate::security::acl::Operation::Read,
                crate::security::acl::ResourceType::Topic,
                &name,
            ) {
            error::TOPIC_AUTHORIZATION_FAILED
        } else {
            error_code
        };
        let topic_name: std::sync::Arc<str> = name.as_str().into();
        for partition in &topic.partitions {
            let known = error_code == error::NONE
                && shard.owner_shard(&name, partition.partition).is_some();
            // Kafka skips the epoch check for any negative value in Fetch.
            let current_leader_epoch = if partition.current_leader_epoch < 0 {
                LeaderEpoch::UNDEFINED
            } else {
                LeaderEpoch(partition.current_leader_epoch)
            };
            let last_fetched_epoch = if version < 12 || partition.last_fetched_epoch < 0 {
                LeaderEpoch::UNDEFINED
            } else {
                LeaderEpoch(partition.last_fetched_epoch)
            };
            wanted.push(Wanted {
                topic_index,
                item: FetchItem {
                    topic_partition: TopicPartition {
                        topic: topic_name.clone(),
                        partition: partition.partition,
                    },
                    fetch_offset: Offset(partition.fetch_offset),
                    partition_max_bytes: partition.partition_max_bytes.max(0) as u32,
                    current_leader_epoch,
                    last_fetched_epoch,
                },
                known,
                error_code: if error_code != error::NONE {
                    error_code
                } else {
                    super::not_hosted_error(shard, &name, partition.partition)
                },
            });
        }
        topics.push((name, *topic_id.as_bytes()));
    }
    (topics, wanted)
}

/// Reads every wanted partition from its owner, concurrently, in request order.
async fn read_all(shard: &Rc<Shard>, wanted: &[Wanted], max_bytes: u32) -> Vec<FetchItemResult> {
    let mut results: Vec<FetchItemResult> = wanted
        .iter()
        .map(|want| FetchItemResult::error(want.error_code))
        .collect();
    let mut split: Split<FetchItem> = Split::new();
    for (position, want) in wanted.iter().enumerate() {
        if !want.known {
            continue;
        }
        let tp = &want.item.topic_partition;
        if let Some(owner) = shard.owner_shard(&tp.topic, tp.partition) {
            split.push(owner, position, want.item.clone());
        }
    }
    let unreachable = FetchItemResult::error(error::NOT_LEADER_OR_FOLLOWER);
    let make = |items| Fetch { items, max_bytes };
    shard.scatter(split, &mut results, make, unreachable).await;
    results
}

/// Parks until any owner reports a high-watermark advance past a watched offset, or the wait
/// ends.
async fn watch_all(shard: &Rc<Shard>, watched: &[FetchItem], max_wait_ms: u32) {
    let mut split: Split<FetchItem> = Split::new();
    for (position, item) in watched.iter().enumerate() {
        let tp = &item.topic_partition;
        if let Some(owner) = shard.owner_shard(&tp.topic, tp.partition) {
            split.push(owner, position, item.clone());
        }
    }
    let mut watches: Vec<Pin<Box<dyn Future<Output = ()>>>> = split
        .by_shard
        .into_iter()
        .map(|(owner, items, _)| {
            let shard = shard.clone();
            let watch: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                let request = WatchHighWatermark { items, max_wait_ms };
                let _ = shard.call(owner, request).await;
            });
            watch
        })
        .collect();
    watches.push(Box::pin(glommio::timer::sleep(Duration::from_millis(
        u64::from(max_wait_ms),
    ))));
    select_first(watches).await;
}

/// Keeps whole chunks while the response stays under `max_bytes`; the first non-empty
/// partition keeps at least its first chunk (KIP-74).
fn cap_total_bytes(results: &mut [FetchItemResult], max_bytes: usize) {
    let mut used = 0usize;
    for result in results.iter_mut() {
        let mut kept = 0;
        for chunk in &result.records {
            if used > 0 && used + chunk.len() > max_bytes {
                break;
            }
            used += chunk.len();
            kept += 1;
        }
        result.records.truncate(kept);
    }
}

/// Lays out the response with the protocol's zero-copy encoder; record chunks are pushed, not
/// copied.
fn encode(
    request: &Request,
    top_error: i16,
    topics: &[(String, [u8; 16])],
    wanted: &[Wanted],
    results: &[FetchItemResult],
    hints: &Hints,
) -> ResponseFrame {
    assert_eq!(
        wanted.len(),
        results.len(),
        "one result per wanted partition"
    );
    let partitions: Vec<FetchPartition<'_>> = wanted
        .iter()
        .zip(results)
        .enumerate()
        .map(|(position, (want, result))| FetchPartition {
            topic_index: want.topic_index,
            partition_index: want.item.topic_partition.partition,
            error_code: result.error_code,
            high_watermark: result.high_watermark.0,
            log_start_offset: result.log_start_offset.0,
            records: &result.records,
            current_leader: hints.leaders.get(position).copied().flatten(),
            diverging_epoch: result.diverging_epoch,
        })
        .collect();
    fetch_response::encode(
        request.api_version,
        request.header.correlation_id,
        top_error,
        topics,
        &partitions,
        &hints.endpoints,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader};
    use kafka_protocol::protocol::Decodable;

    fn request(version: i16) -> Request {
        let mut header = RequestHeader::default();
        header.correlation_id = 5;
        Request {
            api: ApiKey::Fetch,
            api_version: version,
            header,
            body: Bytes::new(),
            ticket: None,
            session: Rc::new(crate::server::session::Session::new(
                "/127.0.0.1".into(),
                None,
                Rc::new(crate::server::session::ListenerContext {
                    name: "PLAINTEXT".to_string(),
                    protocol: crate::config::SecurityProtocol::Plaintext,
                }),
                crate::security::Principal::anonymous(),
            )),
            received: std::time::Instant::now(),
        }
    }

    /// The hand encoder must produce what the reference codec decodes, at every version.
    #[test]
    fn hand_encoding_decodes_with_the_reference_codec() {
        let batch = Bytes::from(crate::protocol::batch::encode_batch(
            &[(Some(b"k"), Some(b"v"))],
            1,
        ));
        for version in 4..=18 {
            let wanted = vec![Wanted {
                topic_index: 0,
                item: FetchItem {
                    topic_partition: TopicPartition::new("orders", 3),
                    fetch_offset: Offset(0),
                    partition_max_bytes: 1 << 20,
                    current_leader_epoch: LeaderEpoch::UNDEFINED,
                    last_fetched_epoch: LeaderEpoch::UNDEFINED,
                },
                known: true,
                error_code: 0,
            }];
            let results = vec![FetchItemResult {
                error_code: 0,
                high_watermark: Offset(10),
                log_start_offset: Offset(2),
                records: vec![batch.clone(), batch.clone()],
                diverging_epoch: None,
            }];
            let topics = vec![("orders".to_string(), [7u8; 16])];
            let frame = encode(
                &request(version),
                0,
                &topics,
                &wanted,
                &results,
                &Hints::default(),
            );
            let mut flat = Bytes::from(frame.chunks.concat());
            let size = bytes::Buf::get_i32(&mut flat) as usize;
            assert_eq!(size, flat.len());
            assert_eq!(bytes::Buf::get_i32(&mut flat), 5);
            if version >= 12 {
                assert_eq!(bytes::Buf::get_u8(&mut flat), 0);
            }
            let decoded = FetchResponse::decode(&mut flat, version).unwrap();
            assert_eq!(flat.len(), 0, "v{version}: trailing bytes");
            let partition = &decoded.responses[0].partitions[0];
            assert_eq!(partition.partition_index, 3);
            assert_eq!(partition.high_watermark, 10);
            assert_eq!(partition.records.as_ref().unwrap().len(), batch.len() * 2);
            if version >= 13 {
                assert_eq!(decoded.responses[0].topic_id.as_bytes(), &[7u8; 16]);
            } else {
                assert_eq!(decoded.responses[0].topic.0.as_str(), "orders");
            }
        }
    }

    #[test]
    fn total_cap_keeps_first_chunk() {
        let chunk = Bytes::from(vec![0u8; 100]);
        let mut results = vec![
            FetchItemResult {
                error_code: 0,
                high_watermark: Offset(0),
                log_start_offset: Offset(0),
                records: vec![chunk.clone(), chunk.clone()],
                diverging_epoch: None,
            },
            FetchItemResult {
                error_code: 0,
                high_watermark: Offset(0),
                log_start_offset: Offset(0),
                records: vec![chunk.clone()],
                diverging_epoch: None,
            },
        ];
        cap_total_bytes(&mut results, 50);
        assert_eq!(results[0].records.len(), 1);
        assert_eq!(results[1].records.len(), 0);
    }
}
