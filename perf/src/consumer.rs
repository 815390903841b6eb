//! One bench consumer connection: Fetch loops over a manually assigned set of partitions on one
//! leader, parsing batches far enough to read each payload header, feeding the verifier and the
//! end-to-end latency histogram (consume time minus the message's intended send time).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hdrhistogram::Histogram;
use kafka_protocol::messages::{fetch_request, ApiKey, BrokerId, FetchRequest, FetchResponse};

use super::client::{topic_name, ClientError, Connection, FETCH_MAX_BYTES};
use super::options::BenchOptions;
use super::payload::PayloadHeader;
use super::records::for_each_record;
use super::report::{new_histogram, record_latency_ns, Clock, LiveStats};
use super::verify::{Observed, Verifier};

pub struct ConsumerSetup {
    pub consumer_id: u32,
    pub address: String,
    /// partition -> first offset to read.
    pub start_offsets: BTreeMap<i32, i64>,
    /// consume mode from earliest: partition -> offset at which it is done.
    pub end_offsets: Option<BTreeMap<i32, i64>>,
    /// e2e mode: only this run's messages count.
    pub run_id: Option<u64>,
    pub options: Arc<BenchOptions>,
    pub clock: Clock,
    /// Reading starts here (with the producers' schedule).
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    /// Stop reading once past this time (consume mode from latest).
    pub deadline_ns: Option<u64>,
    pub stats: Arc<LiveStats>,
    /// Set by the coordinator when everything expected has arrived or waiting is over.
    pub stop: Arc<AtomicBool>,
}

pub struct ConsumerResult {
    pub e2e_latency: Histogram<u64>,
    pub verifier: Verifier,
    pub consumed_messages: u64,
    pub window_messages: u64,
    pub window_bytes: u64,
    pub last_consume_ns: u64,
    pub errors: Vec<String>,
}

impl ConsumerResult {
    pub fn merge(&mut self, other: ConsumerResult) {
        self.e2e_latency
            .add(&other.e2e_latency)
            .expect("histograms share bounds");
        self.verifier.merge(&other.verifier);
        self.consumed_messages += other.consumed_messages;
        self.window_messages += other.window_messages;
        self.window_bytes += other.window_bytes;
        self.last_consume_ns = self.last_consume_ns.max(other.last_consume_ns);
        self.errors.extend(other.errors);
    }

    pub fn empty(run_id: Option<u64>) -> ConsumerResult {
        ConsumerResult {
            e2e_latency: new_histogram(),
            verifier: Verifier::new(run_id),
            consumed_messages: 0,
            window_messages: 0,
            window_bytes: 0,
            last_consume_ns: 0,
            errors: Vec::new(),
        }
    }
}

pub fn run_consumer(setup: ConsumerSetup) -> ConsumerResult {
    let mut result = ConsumerResult::empty(setup.run_id);
    if let Err(error) = fetch_loop(&setup, &mut result) {
        setup.stats.fail();
        result
            .errors
            .push(format!("consumer {}: {error}", setup.consumer_id));
    }
    result
}

fn fetch_loop(setup: &ConsumerSetup, result: &mut ConsumerResult) -> Result<(), ClientError> {
    let mut connection = Connection::connect(&setup.address, &setup.options.client_id)?;
    let versions = connection.negotiate()?;
    let mut offsets = setup.start_offsets.clone();
    let clock = setup.clock;
    clock.sleep_until(setup.start_ns);
    loop {
        if setup.stop.load(Ordering::Relaxed) || setup.stats.has_failed() {
            return Ok(());
        }
        if setup
            .deadline_ns
            .is_some_and(|deadline| clock.now_ns() >= deadline)
        {
            return Ok(());
        }
        let wanted: Vec<(i32, i64)> = offsets
            .iter()
            .filter(|(partition, offset)| match &setup.end_offsets {
                Some(ends) => **offset < ends[partition],
                None => true,
            })
            .map(|(partition, offset)| (*partition, *offset))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let request = fetch_request_for(&setup.options, &wanted);
        let response: FetchResponse =
            connection.request(ApiKey::Fetch, versions.fetch, &request)?;
        let consumed_ns = clock.now_ns();
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("{}: Fetch", setup.address),
                error_code: response.error_code,
            });
        }
        for topic in &response.responses {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    return Err(ClientError::Kafka {
                        context: format!(
                            "{}: Fetch partition {} at offset {:?}",
                            setup.address,
                            partition.partition_index,
                            offsets.get(&partition.partition_index)
                        ),
                        error_code: partition.error_code,
                    });
                }
                let Some(offset) = offsets.get_mut(&partition.partition_index) else {
                    continue;
                };
                let records = partition.records.as_deref().unwrap_or(&[]);
                if let Some(next_offset) = on_records(
                    setup,
                    result,
                    partition.partition_index,
                    *offset,
                    records,
                    consumed_ns,
                )? {
                    *offset = next_offset;
                }
            }
        }
    }
}

fn fetch_request_for(options: &BenchOptions, wanted: &[(i32, i64)]) -> FetchRequest {
    let mut fetch_topic = fetch_request::FetchTopic::default();
    fetch_topic.topic = topic_name(&options.topic);
    for (partition, offset) in wanted {
        let mut entry = fetch_request::FetchPartition::default();
        entry.partition = *partition;
        entry.fetch_offset = *offset;
        entry.current_leader_epoch = -1;
        entry.log_start_offset = -1;
        entry.partition_max_bytes = options.fetch_partition_max_bytes;
        fetch_topic.partitions.push(entry);
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = options.fetch_max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = FETCH_MAX_BYTES;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics.push(fetch_topic);
    request
}

/// Walks one partition's records; returns the next fetch offset if whole batches were present.
fn on_records(
    setup: &ConsumerSetup,
    result: &mut ConsumerResult,
    partition: i32,
    fetch_offset: i64,
    records: &[u8],
    consumed_ns: u64,
) -> Result<Option<i64>, ClientError> {
    let count_all = setup.run_id.is_none();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let verifier = &mut result.verifier;
    let histogram = &mut result.e2e_latency;
    let summary = for_each_record(records, |record| {
        if record.offset < fetch_offset {
            return; // a batch may start before the fetch offset: skip what was read already
        }
        let value = record.value.unwrap_or(&[]);
        let payload = PayloadHeader::read(value);
        let observed = verifier.observe(partition, payload);
        if observed == Observed::Ours {
            if let Some(payload) = payload {
                if payload.intended_unix_ns >= setup.warmup_end_ns {
                    record_latency_ns(
                        histogram,
                        consumed_ns.saturating_sub(payload.intended_unix_ns),
                    );
                }
            }
        }
        if observed == Observed::Ours || count_all {
            messages += 1;
            bytes += value.len() as u64;
        }
    })
    .map_err(|error| {
        ClientError::Other(format!("{}: partition {partition}: {error}", setup.address))
    })?;
    if summary.next_offset.is_none()
        && records.len() >= setup.options.fetch_partition_max_bytes as usize
    {
        return Err(ClientError::Other(format!(
            "{}: partition {partition} offset {fetch_offset}: a batch is larger than \
             --fetch-partition-max-bytes {}",
            setup.address, setup.options.fetch_partition_max_bytes
        )));
    }
    if messages > 0 {
        result.consumed_messages += messages;
        if consumed_ns >= setup.warmup_end_ns {
            result.window_messages += messages;
            result.window_bytes += bytes;
        }
        result.last_consume_ns = result.last_consume_ns.max(consumed_ns);
        setup.stats.add_consumed(messages, bytes);
    }
    Ok(summary.next_offset)
}
