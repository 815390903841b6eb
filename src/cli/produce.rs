//! `sluice produce TOPIC`: one record per line of standard input (the line without its end).
//! With `--key-delimiter`, the text before the first delimiter is the key. Records go to
//! `--partition`, else by key the way Kafka's default partitioner does (murmur2), keyless ones
//! round robin. Lines read from a file or a pipe are sent up to `--batch` per request; from a
//! terminal each line is sent when it is typed. A partition's leader moving is followed: a batch
//! refused with NOT_LEADER_OR_FOLLOWER is resent to the new leader, at least once (the batches
//! are not idempotent, so one the old leader had replicated before it was deposed can be
//! written twice, as with any Kafka producer retrying without idempotence); any other error
//! stops with exit 1. The summary gives each partition's record count and offsets.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::json;

use super::kafka::{emit, Brokers, ClientArgs, Failed, Outcome, PartitionInfo};
use super::topic::key_value;
use crate::bench::client::{topic_name, ClientError};
use crate::bench::partitioner::partition_for_key;
use crate::protocol::error;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every record to this partition (default: by key; keyless records round robin)
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Split each line into KEY and VALUE at the first DELIM
    #[arg(short, long, value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// A header on every record (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Acknowledgements: -1 all in-sync replicas, 1 the leader, 0 none
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub acks: i16,
    /// Most records per request when reading a file or a pipe
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What one partition took.
#[derive(Debug, Default)]
struct Taken {
    records: u64,
    first_offset: Option<i64>,
    last_offset: i64,
}

/// Attempts for a batch refused because leadership moved.
const ATTEMPTS: u32 = 10;

pub fn run(args: &ProduceArgs) -> Outcome {
    if args.batch == 0 {
        return Err(Failed("--batch must be at least 1".into()));
    }
    if ![-1, 0, 1].contains(&args.acks) {
        return Err(Failed(format!(
            "--acks takes -1, 0 or 1, got {}",
            args.acks
        )));
    }
    let headers: IndexMap<StrBytes, Option<Bytes>> = args
        .headers
        .iter()
        .map(|header| {
            key_value(header)
                .map(|(key, value)| (StrBytes::from_string(key), Some(Bytes::from(value))))
        })
        .collect::<Result<_, _>>()?;
    let mut brokers = Brokers::connect(&args.client)?;
    let mut layout = brokers.partitions(&args.topic)?;
    if let Some(partition) = args.partition {
        if !layout.contains_key(&partition) {
            return Err(Failed(format!(
                "topic {} has no partition {partition}",
                args.topic
            )));
        }
    }
    let interactive = std::io::stdin().is_terminal();
    let per_request = if interactive { 1 } else { args.batch };
    let mut taken: BTreeMap<i32, Taken> = BTreeMap::new();
    let mut next_keyless = 0i32;
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut pending_count = 0;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = lines.read_until(b'\n', &mut line)?;
        if read > 0 {
            if line.ends_with(b"\n") {
                line.pop();
                if line.ends_with(b"\r") {
                    line.pop();
                }
            }
            let (key, value) = match &args.key_delimiter {
                Some(delimiter) => split_key(&line, delimiter.as_bytes()),
                None => (None, Bytes::copy_from_slice(&line)),
            };
            let partitions = layout.len() as i32;
            let partition = match (args.partition, &key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => {
                    next_keyless = (next_keyless + 1) % partitions;
                    next_keyless
                }
            };
            let batch = pending.entry(partition).or_default();
            // Offsets within the batch (the encoder writes them as deltas; the broker assigns
            // the real ones). The encoder keeps records in one batch while offset - sequence
            // stays the same, and takes the batch's base sequence from the first: -1, none.
            let offset = batch.len() as i64;
            batch.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: offset as i32 - 1,
                timestamp: crate::storage::wall_clock_ms(),
                key,
                value: Some(value),
                headers: headers.clone(),
            });
            pending_count += 1;
        }
        if pending_count > 0 && (read == 0 || pending_count >= per_request) {
            send(&mut brokers, args, &mut layout, &pending, &mut taken)?;
            pending.clear();
            pending_count = 0;
        }
        if read == 0 {
            break;
        }
    }
    let rows = taken
        .iter()
        .map(|(partition, taken)| {
            vec![
                partition.to_string(),
                taken.records.to_string(),
                taken.first_offset.map_or("-".into(), |o| o.to_string()),
                if taken.first_offset.is_some() {
                    taken.last_offset.to_string()
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    let json = taken
        .iter()
        .map(|(partition, taken)| {
            json!({
                "partition": partition,
                "records": taken.records,
                "first_offset": taken.first_offset,
                "last_offset": taken.first_offset.map(|_| taken.last_offset),
            })
        })
        .collect();
    emit(
        &args.client,
        &["PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET"],
        rows,
        serde_json::Value::Array(json),
    )
}

/// (key, value) of a line split at the first `delimiter`; no delimiter: no key.
fn split_key(line: &[u8], delimiter: &[u8]) -> (Option<Bytes>, Bytes) {
    if !delimiter.is_empty() {
        if let Some(at) = line
            .windows(delimiter.len())
            .position(|window| window == delimiter)
        {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + delimiter.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

/// Sends each partition's records to its leader, following leadership moves.
fn send(
    brokers: &mut Brokers,
    args: &ProduceArgs,
    layout: &mut BTreeMap<i32, PartitionInfo>,
    pending: &BTreeMap<i32, Vec<Record>>,
    taken: &mut BTreeMap<i32, Taken>,
) -> Outcome {
    let mut batches: BTreeMap<i32, Bytes> = BTreeMap::new();
    for (partition, records) in pending {
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|error| Failed(format!("encoding a batch: {error}")))?;
        batches.insert(*partition, batch.freeze());
    }
    let mut attempt = 0;
    while !batches.is_empty() {
        attempt += 1;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for partition in batches.keys() {
            let leader = layout.get(partition).map_or(-1, |info| info.leader);
            by_leader.entry(leader).or_default().push(*partition);
        }
        let mut moved = false;
        for (leader, partitions) in by_leader {
            let answers: Vec<(i32, i16, i64)> = if leader < 0 {
                partitions
                    .iter()
                    .map(|p| (*p, error::LEADER_NOT_AVAILABLE, -1))
                    .collect()
            } else {
                match produce(brokers, args, leader, &partitions, &batches) {
                    Ok(answers) => answers,
                    // The leader's connection failed (it may have died): ask again where
                    // the partitions lead now.
                    Err(_) if attempt < ATTEMPTS => {
                        brokers.forget(leader);
                        moved = true;
                        continue;
                    }
                    Err(failed) => return Err(failed),
                }
            };
            for &partition in &partitions {
                if !answers
                    .iter()
                    .any(|(answered, _, _)| *answered == partition)
                {
                    return Err(Failed(format!(
                        "Produce to {}-{partition}: node {leader} did not answer for it",
                        args.topic
                    )));
                }
            }
            for (partition, code, base_offset) in answers {
                let Some(sent) = pending.get(&partition) else {
                    continue;
                };
                match code {
                    error::NONE => {
                        let count = sent.len() as u64;
                        let entry = taken.entry(partition).or_default();
                        entry.records += count;
                        if base_offset >= 0 {
                            entry.first_offset.get_or_insert(base_offset);
                            entry.last_offset = base_offset + count as i64 - 1;
                        }
                        batches.remove(&partition);
                    }
                    error::NOT_LEADER_OR_FOLLOWER | error::LEADER_NOT_AVAILABLE
                        if attempt < ATTEMPTS =>
                    {
                        moved = true;
                    }
                    code => {
                        return Err(ClientError::Kafka {
                            context: format!("Produce to {}-{partition}", args.topic),
                            error_code: code,
                        }
                        .into())
                    }
                }
            }
        }
        if moved {
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            *layout = brokers.partitions(&args.topic)?;
        }
    }
    Ok(())
}

/// One Produce request to `leader`: (partition, error code, base offset) for each.
fn produce(
    brokers: &mut Brokers,
    args: &ProduceArgs,
    leader: i32,
    partitions: &[i32],
    batches: &BTreeMap<i32, Bytes>,
) -> Result<Vec<(i32, i16, i64)>, Failed> {
    let mut topic = produce_request::TopicProduceData::default();
    topic.name = topic_name(&args.topic);
    for partition in partitions {
        let mut data = produce_request::PartitionProduceData::default();
        data.index = *partition;
        data.records = Some(batches[partition].clone());
        topic.partition_data.push(data);
    }
    let mut request = ProduceRequest::default();
    request.acks = args.acks;
    request.timeout_ms = super::kafka::BROKER_TIMEOUT_MS;
    request.topic_data.push(topic);
    let connection = brokers.node(leader)?;
    if args.acks == 0 {
        // No response comes: the request is only written.
        let version = connection.version::<ProduceRequest>(3, 12)?;
        connection.send_only(ApiKey::Produce, version, &request)?;
        return Ok(partitions.iter().map(|p| (*p, error::NONE, -1)).collect());
    }
    let response: ProduceResponse = connection.call(3, 12, &request)?;
    Ok(response
        .responses
        .iter()
        .flat_map(|topic| &topic.partition_responses)
        .map(|partition| (partition.index, partition.error_code, partition.base_offset))
        .collect())
}
