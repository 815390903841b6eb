//! `sluice consume TOPIC`: fetches from each partition's leader and prints one record per line.
//!
//! - Partition mode (no `--group`): `--partitions` (default all) from `--offset`: `start`
//!   (default), `end`, an offset, or `@MILLIS` (the first record at or after that time).
//! - Group mode (`--group G`): starts from the group's committed offsets (`--offset` where it
//!   has none) and commits what it printed, every second and at the end. It does not join the
//!   group (no rebalancing; it reads the partitions it is given, as Kafka's `assign()` with
//!   `commitSync` does), so it is refused while the group has members.
//!
//! Output: the value per line (`--print-keys`: KEY, a tab, VALUE; `--print-headers` adds
//! `k=v,...` first), or with `--format json` one JSON object per line (topic, partition, offset,
//! timestamp, key, value, headers; bytes that are not UTF-8 are shown with U+FFFD). Compressed
//! batches (gzip, snappy, lz4, zstd) are read; control batches are skipped. A position out of
//! range moves, with a note on standard error, to the log start when it is below it (trimmed or
//! deleted by retention, as `auto.offset.reset=earliest` does) and to the end when it is past
//! it. A leader that moves or dies is followed. `-n` stops after that many records, `-e` at the
//! end of every partition (the high watermark when reached); else it follows.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use serde_json::json;

use super::kafka::{Brokers, ClientArgs, Failed, Format, Outcome, PartitionInfo};
use crate::bench::client::{
    topic_name, ClientError, EARLIEST_TIMESTAMP, FETCH_MAX_BYTES, LATEST_TIMESTAMP,
};
use crate::protocol::batch::BATCH_LOG_OVERHEAD_BYTES;
use crate::protocol::error;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Partitions to read (default: all)
    #[arg(short, long, value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Where to start: `start`, `end`, an offset, or `@MILLIS` (with --group: where the group
    /// has no committed offset)
    #[arg(short, long, default_value = "start")]
    pub offset: String,
    /// Read as this consumer group: from its committed offsets, committing what was printed
    #[arg(short, long)]
    pub group: Option<String>,
    /// Stop after this many records
    #[arg(short = 'n', long)]
    pub num: Option<u64>,
    /// Stop at the end of every partition instead of waiting for more
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Print KEY<TAB>VALUE
    #[arg(long)]
    pub print_keys: bool,
    /// Print the headers (k=v,...) before the value, tab-separated
    #[arg(long)]
    pub print_headers: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How long a Fetch waits at the broker for data.
const FETCH_WAIT_MS: i32 = 500;
/// How often group mode commits.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

struct Position {
    next: i64,
    /// Reached the high watermark at least once.
    at_end: bool,
}

pub fn run(args: &ConsumeArgs) -> Outcome {
    let mut brokers = Brokers::connect(&args.client)?;
    let mut layout = brokers.partitions(&args.topic)?;
    if !args.partitions.is_empty() {
        if let Some(missing) = args.partitions.iter().find(|p| !layout.contains_key(p)) {
            return Err(Failed(format!(
                "topic {} has no partition {missing}",
                args.topic
            )));
        }
        layout.retain(|index, _| args.partitions.contains(index));
    }
    let committed = match &args.group {
        Some(group) => {
            let members = super::group::member_count(&mut brokers, group)?;
            if members > 0 {
                return Err(Failed(format!(
                    "group {group} has {members} members: consume does not join groups, stop them or use another group"
                )));
            }
            super::group::committed(&mut brokers, group)?
        }
        None => BTreeMap::new(),
    };
    let position = super::kafka::parse_position("--offset", &args.offset)?;
    let starts = brokers.offsets_at(&args.topic, &layout, position, false)?;
    let mut positions: BTreeMap<i32, Position> = BTreeMap::new();
    for index in layout.keys() {
        let next = committed
            .get(&(args.topic.clone(), *index))
            .copied()
            .unwrap_or(starts[index]);
        positions.insert(
            *index,
            Position {
                next,
                at_end: false,
            },
        );
    }
    let mut printed = 0u64;
    let mut last_commit = Instant::now();
    let mut committed_positions: BTreeMap<i32, i64> = BTreeMap::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let outcome = loop {
        if args.num.is_some_and(|num| printed >= num) {
            break Ok(());
        }
        if args.exit_at_end && positions.values().all(|p| p.at_end) {
            break Ok(());
        }
        match fetch_round(
            &mut brokers,
            args,
            &mut layout,
            &mut positions,
            &mut printed,
            &mut out,
        ) {
            Ok(()) => {}
            Err(failed) => break Err(failed),
        }
        out.flush()?;
        if let Some(group) = &args.group {
            if last_commit.elapsed() >= COMMIT_EVERY {
                commit_positions(
                    &mut brokers,
                    group,
                    args,
                    &positions,
                    &mut committed_positions,
                )?;
                last_commit = Instant::now();
            }
        }
    };
    out.flush()?;
    if let Some(group) = &args.group {
        commit_positions(
            &mut brokers,
            group,
            args,
            &positions,
            &mut committed_positions,
        )?;
    }
    outcome
}

fn commit_positions(
    brokers: &mut Brokers,
    group: &str,
    args: &ConsumeArgs,
    positions: &BTreeMap<i32, Position>,
    committed: &mut BTreeMap<i32, i64>,
) -> Outcome {
    let changed: BTreeMap<(String, i32), i64> = positions
        .iter()
        .filter(|(index, position)| committed.get(index) != Some(&position.next))
        .map(|(index, position)| ((args.topic.clone(), *index), position.next))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let codes = super::group::commit(brokers, group, &changed)?;
    for ((topic, index), code) in codes {
        if code != 0 {
            return Err(ClientError::Kafka {
                context: format!("OffsetCommit for group {group}, {topic}-{index}"),
                error_code: code,
            }
            .into());
        }
        committed.insert(index, changed[&(topic, index)]);
    }
    Ok(())
}

/// One Fetch to each leader; prints what came back.
fn fetch_round(
    brokers: &mut Brokers,
    args: &ConsumeArgs,
    layout: &mut BTreeMap<i32, PartitionInfo>,
    positions: &mut BTreeMap<i32, Position>,
    printed: &mut u64,
    out: &mut impl Write,
) -> Outcome {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for index in positions.keys() {
        let leader = layout.get(index).map_or(-1, |info| info.leader);
        by_leader.entry(leader).or_default().push(*index);
    }
    let mut refresh = false;
    for (leader, indexes) in by_leader {
        if leader < 0 {
            refresh = true;
            continue;
        }
        let mut topic = fetch_request::FetchTopic::default();
        topic.topic = topic_name(&args.topic);
        for index in &indexes {
            let mut partition = fetch_request::FetchPartition::default();
            partition.partition = *index;
            partition.fetch_offset = positions[index].next;
            partition.current_leader_epoch = -1;
            partition.last_fetched_epoch = -1;
            partition.log_start_offset = -1;
            partition.partition_max_bytes = 1 << 20;
            topic.partitions.push(partition);
        }
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = FETCH_WAIT_MS;
        request.min_bytes = 1;
        request.max_bytes = FETCH_MAX_BYTES;
        request.isolation_level = 0;
        request.session_epoch = -1;
        request.topics.push(topic);
        let answer = match brokers.node(leader) {
            Ok(connection) => connection.call(4, 12, &request).map_err(Failed::from),
            Err(failed) => Err(failed),
        };
        let response: FetchResponse = match answer {
            Ok(response) => response,
            Err(failed) => {
                // The leader's connection failed: ask where the partitions lead now.
                eprintln!("sluice: node {leader}: {}; refreshing metadata", failed.0);
                brokers.forget(leader);
                refresh = true;
                continue;
            }
        };
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("Fetch from node {leader}"),
                error_code: response.error_code,
            }
            .into());
        }
        for partition in response.responses.iter().flat_map(|t| &t.partitions) {
            let index = partition.partition_index;
            let Some(position) = positions.get_mut(&index) else {
                continue;
            };
            match partition.error_code {
                error::NONE => {}
                error::OFFSET_OUT_OF_RANGE => {
                    let one: BTreeMap<i32, PartitionInfo> = layout
                        .iter()
                        .filter(|(i, _)| **i == index)
                        .map(|(i, info)| (*i, info.clone()))
                        .collect();
                    let start = brokers.offsets(&args.topic, &one, EARLIEST_TIMESTAMP)?;
                    let end = brokers.offsets(&args.topic, &one, LATEST_TIMESTAMP)?;
                    if let (Some(Ok(start)), Some(Ok(end))) = (start.get(&index), end.get(&index)) {
                        let (to, which) = if position.next > *end {
                            (*end, "the end")
                        } else {
                            (*start, "the log start")
                        };
                        eprintln!(
                            "sluice: {}-{index}: offset {} is out of range, reading from {which} {to}",
                            args.topic, position.next
                        );
                        position.next = to;
                    }
                    continue;
                }
                error::NOT_LEADER_OR_FOLLOWER
                | error::LEADER_NOT_AVAILABLE
                | error::UNKNOWN_LEADER_EPOCH
                | error::FENCED_LEADER_EPOCH => {
                    refresh = true;
                    continue;
                }
                code => {
                    return Err(ClientError::Kafka {
                        context: format!("Fetch {}-{index}", args.topic),
                        error_code: code,
                    }
                    .into())
                }
            }
            if let Some(records) = &partition.records {
                for_each_record(records, position, |record| {
                    if args.num.is_some_and(|num| *printed >= num) {
                        return Ok(false);
                    }
                    print_record(out, args, index, record)?;
                    *printed += 1;
                    Ok(true)
                })?;
            }
            if position.next >= partition.high_watermark {
                position.at_end = true;
            }
        }
    }
    if refresh {
        std::thread::sleep(Duration::from_millis(200));
        let fresh = brokers.partitions(&args.topic)?;
        for (index, info) in fresh {
            if layout.contains_key(&index) {
                layout.insert(index, info);
            }
        }
    }
    Ok(())
}

/// Decodes the whole batches in `records` (a cut batch at the end is normal) and calls `each`
/// with every record at or after `position.next`, moving it on; `each` returns false to stop.
fn for_each_record(
    records: &Bytes,
    position: &mut Position,
    mut each: impl FnMut(&Record) -> Result<bool, Failed>,
) -> Outcome {
    let mut rest = records.clone();
    while rest.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        // A cut batch at the end is normal; a negative length is the broker's garbage.
        let Ok(length) = usize::try_from(length) else {
            return Err(Failed(format!(
                "bad record batch at offset {base_offset}: length {length}"
            )));
        };
        let whole = BATCH_LOG_OVERHEAD_BYTES + length;
        if whole > rest.len() {
            break;
        }
        // lastOffsetDelta: after base offset, length, leader epoch, magic, crc, attributes.
        let last_offset_delta = match rest.get(23..27) {
            Some(bytes) => i32::from_be_bytes(bytes.try_into().expect("4 bytes")),
            None => 0,
        };
        let mut batch = rest.split_to(whole);
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress))
            .map_err(|error| {
                Failed(format!("bad record batch at offset {base_offset}: {error}"))
            })?;
        for record in &set.records {
            if record.control || record.offset < position.next {
                continue;
            }
            if !each(record)? {
                return Ok(());
            }
            position.next = record.offset + 1;
        }
        // Past the batch's end, also for control batches and records compacted away.
        position.next = position
            .next
            .max(base_offset + i64::from(last_offset_delta) + 1);
    }
    Ok(())
}

fn decompress(body: &mut Bytes, compression: Compression) -> anyhow::Result<Bytes> {
    let mut decoded = Vec::new();
    crate::protocol::codec::decompressor(compression as i16, body)?.read_to_end(&mut decoded)?;
    Ok(Bytes::from(decoded))
}

fn lossy(bytes: &Option<Bytes>) -> Option<String> {
    bytes
        .as_ref()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

fn print_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    partition: i32,
    record: &Record,
) -> Outcome {
    match args.client.format {
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|(key, value)| (key.to_string(), json!(lossy(value))))
                .collect();
            let line = json!({
                "topic": args.topic,
                "partition": partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": lossy(&record.key),
                "value": lossy(&record.value),
                "headers": headers,
            });
            writeln!(out, "{line}")?;
        }
        Format::Table => {
            if args.print_headers {
                let headers: Vec<String> = record
                    .headers
                    .iter()
                    .map(|(key, value)| format!("{key}={}", lossy(value).unwrap_or_default()))
                    .collect();
                write!(out, "{}\t", headers.join(","))?;
            }
            if args.print_keys {
                write!(out, "{}\t", lossy(&record.key).unwrap_or_default())?;
            }
            writeln!(out, "{}", lossy(&record.value).unwrap_or_default())?;
        }
    }
    Ok(())
}
