//! One bench producer: a writer thread that generates messages on schedule, batches them per
//! partition and sends pipelined Produce requests, and per leader connection a reader thread
//! that matches responses (in request order) to what was sent and records ack latency.
//!
//! The in-flight window is a bounded channel from writer to reader: the writer enqueues a
//! request's bookkeeping before writing it and blocks while `--max-in-flight` requests await
//! their responses. With a target rate every message has an intended send time on a fixed
//! schedule; when the broker (or the generator) falls behind, messages are generated late but
//! keep their intended time, and latency counts from it (coordinated omission corrected).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::{
    produce_request, ApiKey, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{
    decode_response, encode_request, read_frame, topic_name, ClientError, Connection,
};
use super::options::BenchOptions;
use super::partitioner::Partitioner;
use super::payload::{value_template, PayloadHeader};
use super::report::{new_histogram, record_latency_ns, Clock, LiveStats};
use super::verify::StreamKey;
use crate::protocol::batch::{BatchBuilder, BATCH_HEADER_BYTES};

/// Messages generated before the writer looks at linger deadlines again.
const GENERATE_ROUND_MAX: u32 = 4096;
/// A response slower than this means the broker is gone.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Error texts kept per producer (the count is always exact).
const ERRORS_KEPT_MAX: usize = 10;

/// When a producer's messages are due and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    /// Nanoseconds between this producer's messages; `None` is unthrottled.
    pub interval_ns: Option<f64>,
    pub end: ScheduleEnd,
}

#[derive(Debug, Clone, Copy)]
pub enum ScheduleEnd {
    /// No message is intended at or after this time.
    Deadline { end_ns: u64 },
    /// This producer sends this many messages.
    Messages { count: u64 },
}

impl Schedule {
    /// Intended time of message `index`, or `None` for unthrottled.
    pub fn intended_ns(&self, index: u64) -> Option<u64> {
        self.interval_ns
            .map(|interval| self.start_ns + (index as f64 * interval) as u64)
    }

    pub fn is_over(&self, generated: u64, intended_ns: u64) -> bool {
        match self.end {
            ScheduleEnd::Deadline { end_ns } => intended_ns >= end_ns,
            ScheduleEnd::Messages { count } => generated >= count,
        }
    }
}

pub struct ProducerSetup {
    pub producer_id: u32,
    pub run_id: u64,
    pub seed: u64,
    pub leaders: BTreeMap<i32, String>,
    pub options: Arc<BenchOptions>,
    pub clock: Clock,
    pub schedule: Schedule,
    pub stats: Arc<LiveStats>,
}

/// What one producer measured.
pub struct ProducerResult {
    pub producer_id: u32,
    pub ack_latency: Histogram<u64>,
    /// Messages acknowledged per (partition, producer id) stream (for acks=0: sent).
    pub acked: BTreeMap<StreamKey, u64>,
    pub acked_messages: u64,
    /// Acknowledged at or after the end of warm-up.
    pub window_messages: u64,
    pub window_bytes: u64,
    pub last_ack_ns: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
}

impl ProducerResult {
    fn new(producer_id: u32) -> ProducerResult {
        ProducerResult {
            producer_id,
            ack_latency: new_histogram(),
            acked: BTreeMap::new(),
            acked_messages: 0,
            window_messages: 0,
            window_bytes: 0,
            last_ack_ns: 0,
            error_count: 0,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, count: u64, text: String) {
        self.error_count += count.max(1);
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(text);
        }
    }

    /// Counts `count` messages of `partition` acknowledged at `ack_ns`.
    fn acknowledge(
        &mut self,
        partition: i32,
        count: u64,
        ack_ns: u64,
        warmup_end_ns: u64,
        message_bytes: u64,
    ) {
        *self.acked.entry((partition, self.producer_id)).or_default() += count;
        self.acked_messages += count;
        if ack_ns >= warmup_end_ns {
            self.window_messages += count;
            self.window_bytes += count * message_bytes;
        }
        self.last_ack_ns = self.last_ack_ns.max(ack_ns);
    }

    pub fn merge(&mut self, other: ProducerResult) {
        self.ack_latency
            .add(&other.ack_latency)
            .expect("histograms share bounds");
        for (stream, count) in other.acked {
            *self.acked.entry(stream).or_default() += count;
        }
        self.acked_messages += other.acked_messages;
        self.window_messages += other.window_messages;
        self.window_bytes += other.window_bytes;
        self.last_ack_ns = self.last_ack_ns.max(other.last_ack_ns);
        self.error_count += other.error_count;
        for error in other.errors {
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(error);
            }
        }
    }
}

/// One batch on the wire, remembered until its response arrives.
/// (partition, batch bytes, intended send time of each record) ready to go.
type ReadyBatch = (i32, Vec<u8>, Vec<u64>);

struct SentBatch {
    partition: i32,
    intended_ns: Vec<u64>,
}

struct InFlight {
    correlation_id: i32,
    batches: Vec<SentBatch>,
}

/// A connection to one partition leader.
struct Link {
    connection: Connection,
    version: i16,
    /// `None` with acks=0: the broker sends no responses.
    window: Option<SyncSender<InFlight>>,
    reader: Option<std::thread::JoinHandle<ProducerResult>>,
    frame: BytesMut,
}

/// Runs one producer to the end of its schedule.
pub fn run_producer(setup: ProducerSetup) -> ProducerResult {
    let mut result = ProducerResult::new(setup.producer_id);
    let mut links: Vec<Link> = Vec::new();
    let mut link_of_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for (partition, address) in &setup.leaders {
        let existing = links
            .iter()
            .position(|link| &link.connection.address == address);
        let index = match existing {
            Some(index) => index,
            None => match open_link(&setup, address) {
                Ok(link) => {
                    links.push(link);
                    links.len() - 1
                }
                Err(error) => {
                    setup.stats.fail();
                    result.error(1, format!("producer {}: {error}", setup.producer_id));
                    return close_links(links, result);
                }
            },
        };
        link_of_partition.insert(*partition, index);
    }
    let mut writer = Writer::new(&setup, link_of_partition);
    if let Err(error) = writer.run(&mut links, &mut result) {
        setup.stats.fail();
        result.error(1, format!("producer {}: {error}", setup.producer_id));
    }
    close_links(links, result)
}

fn open_link(setup: &ProducerSetup, address: &str) -> Result<Link, ClientError> {
    let mut connection = Connection::connect(address, &setup.options.client_id)?;
    let versions = connection.negotiate()?;
    let io = |source| ClientError::Io {
        address: address.to_string(),
        source,
    };
    let (window, reader) = if setup.options.acks == 0 {
        (None, None)
    } else {
        let (sender, receiver) = sync_channel(setup.options.max_in_flight);
        let stream = connection.stream.try_clone_plain().map_err(io)?;
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(io)?;
        let reader = ResponseReader {
            producer_id: setup.producer_id,
            stream,
            address: address.to_string(),
            version: versions.produce,
            receiver,
            clock: setup.clock,
            warmup_end_ns: setup.schedule.warmup_end_ns,
            message_bytes: setup.options.message_bytes as u64,
            stats: setup.stats.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("bench-ack-{}", setup.producer_id))
            .spawn(move || reader.run())
            .map_err(io)?;
        (Some(sender), Some(handle))
    };
    Ok(Link {
        connection,
        version: versions.produce,
        window,
        reader,
        frame: BytesMut::with_capacity(1 << 20),
    })
}

/// Closes every window (readers then drain what is in flight) and merges the readers' results.
fn close_links(links: Vec<Link>, mut result: ProducerResult) -> ProducerResult {
    let mut readers = Vec::new();
    for mut link in links {
        drop(link.window.take());
        readers.extend(link.reader.take());
    }
    for reader in readers {
        match reader.join() {
            Ok(outcome) => result.merge(outcome),
            Err(_) => result.error(1, "response reader panicked".into()),
        }
    }
    result
}

/// Records of one partition not sent yet.
struct Accumulator {
    builder: Option<BatchBuilder>,
    intended_ns: Vec<u64>,
    next_sequence: u64,
    created_ns: u64,
}

struct Writer<'a> {
    setup: &'a ProducerSetup,
    topic: TopicName,
    link_of_partition: BTreeMap<i32, usize>,
    accumulators: Vec<Accumulator>,
    partitioner: Partitioner,
    value: Vec<u8>,
    generated: u64,
    /// Non-empty accumulators, for the linger check.
    pending: usize,
}

impl<'a> Writer<'a> {
    fn new(setup: &'a ProducerSetup, link_of_partition: BTreeMap<i32, usize>) -> Writer<'a> {
        let partitions = setup.leaders.len() as i32;
        let options = &setup.options;
        Writer {
            setup,
            topic: topic_name(&options.topic),
            link_of_partition,
            accumulators: (0..partitions)
                .map(|_| Accumulator {
                    builder: None,
                    intended_ns: Vec::new(),
                    next_sequence: 0,
                    created_ns: 0,
                })
                .collect(),
            partitioner: Partitioner::new(
                options.keys,
                options.key_space,
                partitions,
                setup.producer_id,
                setup.seed,
            ),
            value: value_template(options.message_bytes),
            generated: 0,
            pending: 0,
        }
    }

    fn run(&mut self, links: &mut [Link], result: &mut ProducerResult) -> Result<(), ClientError> {
        let clock = self.setup.clock;
        let schedule = self.setup.schedule;
        let linger_ns = self.setup.options.linger_ms * 1_000_000;
        clock.sleep_until(schedule.start_ns);
        let mut over = false;
        loop {
            if self.setup.stats.has_failed() {
                return Err(ClientError::Other("stopped: another thread failed".into()));
            }
            let now_ns = clock.now_ns();
            let (full, finished) = self.generate(now_ns);
            over |= finished;
            let oldest_ns = self
                .accumulators
                .iter()
                .filter(|accumulator| accumulator.builder.is_some())
                .map(|accumulator| accumulator.created_ns)
                .min();
            let now_ns = clock.now_ns();
            match oldest_ns {
                Some(oldest) if full || over || oldest + linger_ns <= now_ns => {
                    self.send_all(links, result)?;
                    continue;
                }
                None if over => return Ok(()),
                _ => {}
            }
            if over || schedule.interval_ns.is_some() {
                let mut wake_ns = oldest_ns.map_or(u64::MAX, |oldest| oldest + linger_ns);
                if let (false, Some(next)) = (over, schedule.intended_ns(self.generated)) {
                    wake_ns = wake_ns.min(next);
                }
                clock.sleep_until(wake_ns);
            }
        }
    }

    /// Generates the messages due by `now_ns`: returns (a batch became full, schedule over).
    fn generate(&mut self, mut now_ns: u64) -> (bool, bool) {
        let schedule = self.setup.schedule;
        let batch_bytes = self.setup.options.batch_bytes;
        let unthrottled = schedule.interval_ns.is_none();
        for _ in 0..GENERATE_ROUND_MAX {
            let intended_ns = schedule.intended_ns(self.generated).unwrap_or(now_ns);
            if schedule.is_over(self.generated, intended_ns) {
                return (false, true);
            }
            if intended_ns > now_ns {
                return (false, false);
            }
            let (key, partition) = self.partitioner.next_message();
            let accumulator = &mut self.accumulators[partition as usize];
            PayloadHeader {
                run_id: self.setup.run_id,
                producer_id: self.setup.producer_id,
                partition,
                sequence: accumulator.next_sequence,
                intended_unix_ns: intended_ns,
            }
            .write(&mut self.value);
            accumulator.next_sequence += 1;
            let builder = accumulator.builder.get_or_insert_with(|| {
                self.pending += 1;
                BatchBuilder::new(Vec::with_capacity(
                    BATCH_HEADER_BYTES + batch_bytes + self.value.len() + 64,
                ))
            });
            if accumulator.intended_ns.is_empty() {
                accumulator.created_ns = now_ns;
            }
            builder.push(key, Some(&self.value), (intended_ns / 1_000_000) as i64);
            accumulator.intended_ns.push(intended_ns);
            self.generated += 1;
            if builder.size_bytes() >= batch_bytes {
                self.partitioner.on_batch_full(partition);
                return (true, false);
            }
            if unthrottled {
                now_ns = self.setup.clock.now_ns();
            }
        }
        (false, false)
    }

    /// Sends every non-empty batch, one Produce request per leader.
    fn send_all(
        &mut self,
        links: &mut [Link],
        result: &mut ProducerResult,
    ) -> Result<(), ClientError> {
        let mut per_link: Vec<Vec<ReadyBatch>> = links.iter().map(|_| Vec::new()).collect();
        for (partition, accumulator) in self.accumulators.iter_mut().enumerate() {
            let Some(builder) = accumulator.builder.take() else {
                continue;
            };
            let partition = partition as i32;
            let intended = std::mem::take(&mut accumulator.intended_ns);
            per_link[self.link_of_partition[&partition]].push((
                partition,
                builder.finish(),
                intended,
            ));
        }
        self.pending = 0;
        for (link, batches) in links.iter_mut().zip(per_link) {
            if !batches.is_empty() {
                self.send(link, batches, result)?;
            }
        }
        Ok(())
    }

    fn send(
        &self,
        link: &mut Link,
        batches: Vec<ReadyBatch>,
        result: &mut ProducerResult,
    ) -> Result<(), ClientError> {
        let options = &self.setup.options;
        let mut topic_data = produce_request::TopicProduceData::default();
        topic_data.name = self.topic.clone();
        let mut sent = Vec::with_capacity(batches.len());
        for (partition, batch, intended_ns) in batches {
            let mut partition_data = produce_request::PartitionProduceData::default();
            partition_data.index = partition;
            partition_data.records = Some(Bytes::from(batch));
            topic_data.partition_data.push(partition_data);
            sent.push(SentBatch {
                partition,
                intended_ns,
            });
        }
        let mut request = ProduceRequest::default();
        request.acks = options.acks;
        request.timeout_ms = 30_000;
        request.topic_data.push(topic_data);
        let correlation_id = link.connection.next_correlation_id();
        link.frame.clear();
        encode_request(
            ApiKey::Produce,
            link.version,
            correlation_id,
            &link.connection.client_id,
            &request,
            &mut link.frame,
        )?;
        if let Some(window) = &link.window {
            window
                .send(InFlight {
                    correlation_id,
                    batches: sent,
                })
                .map_err(|_| ClientError::Other("the response reader stopped".into()))?;
            write_frame(
                &mut link.connection.stream,
                &link.connection.address,
                &link.frame,
            )?;
        } else {
            write_frame(
                &mut link.connection.stream,
                &link.connection.address,
                &link.frame,
            )?;
            let now_ns = self.setup.clock.now_ns();
            for batch in sent {
                let count = batch.intended_ns.len() as u64;
                result.acknowledge(
                    batch.partition,
                    count,
                    now_ns,
                    self.setup.schedule.warmup_end_ns,
                    options.message_bytes as u64,
                );
                self.setup
                    .stats
                    .add_produced(count, count * options.message_bytes as u64);
            }
        }
        Ok(())
    }
}

fn write_frame(stream: &mut impl Write, address: &str, frame: &[u8]) -> Result<(), ClientError> {
    stream.write_all(frame).map_err(|source| ClientError::Io {
        address: address.to_string(),
        source,
    })
}

/// Reads Produce responses in request order and records ack latency.
struct ResponseReader {
    producer_id: u32,
    stream: TcpStream,
    address: String,
    version: i16,
    receiver: Receiver<InFlight>,
    clock: Clock,
    warmup_end_ns: u64,
    message_bytes: u64,
    stats: Arc<LiveStats>,
}

impl ResponseReader {
    fn run(mut self) -> ProducerResult {
        let mut result = ProducerResult::new(self.producer_id);
        while let Ok(in_flight) = self.receiver.recv() {
            if let Err(error) = self.on_response(in_flight, &mut result) {
                self.stats.fail();
                result.error(1, error.to_string());
                break;
            }
        }
        result
    }

    fn on_response(
        &mut self,
        in_flight: InFlight,
        result: &mut ProducerResult,
    ) -> Result<(), ClientError> {
        let frame = read_frame(&mut self.stream, &self.address)?;
        let ack_ns = self.clock.now_ns();
        let response: ProduceResponse = decode_response(
            &self.address,
            ApiKey::Produce,
            self.version,
            frame,
            in_flight.correlation_id,
        )?;
        let mut error_codes: BTreeMap<i32, (i16, Option<StrBytes>)> = BTreeMap::new();
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                error_codes.insert(
                    partition.index,
                    (partition.error_code, partition.error_message.clone()),
                );
            }
        }
        for batch in in_flight.batches {
            let count = batch.intended_ns.len() as u64;
            match error_codes.get(&batch.partition) {
                Some((0, _)) => {
                    for intended_ns in &batch.intended_ns {
                        if *intended_ns >= self.warmup_end_ns {
                            record_latency_ns(
                                &mut result.ack_latency,
                                ack_ns.saturating_sub(*intended_ns),
                            );
                        }
                    }
                    result.acknowledge(
                        batch.partition,
                        count,
                        ack_ns,
                        self.warmup_end_ns,
                        self.message_bytes,
                    );
                    self.stats.add_produced(count, count * self.message_bytes);
                }
                Some((error_code, message)) => {
                    self.stats
                        .produce_errors
                        .fetch_add(count, Ordering::Relaxed);
                    result.error(
                        count,
                        format!(
                            "{}: produce to partition {} failed with error code {error_code} {}",
                            self.address,
                            batch.partition,
                            message.as_deref().unwrap_or("")
                        ),
                    );
                }
                None => {
                    self.stats
                        .produce_errors
                        .fetch_add(count, Ordering::Relaxed);
                    result.error(
                        count,
                        format!(
                            "{}: no produce response for partition {}",
                            self.address, batch.partition
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_messages_and_stops() {
        let schedule = Schedule {
            start_ns: 1_000,
            warmup_end_ns: 1_000,
            interval_ns: Some(250.0),
            end: ScheduleEnd::Deadline { end_ns: 2_000 },
        };
        assert_eq!(schedule.intended_ns(0), Some(1_000));
        assert_eq!(schedule.intended_ns(3), Some(1_750));
        assert!(!schedule.is_over(3, 1_750));
        assert!(schedule.is_over(4, 2_000));
        let counted = Schedule {
            interval_ns: None,
            end: ScheduleEnd::Messages { count: 5 },
            ..schedule
        };
        assert_eq!(counted.intended_ns(9), None);
        assert!(!counted.is_over(4, u64::MAX));
        assert!(counted.is_over(5, 0));
    }

    #[test]
    fn results_merge_and_window_counts() {
        let mut left = ProducerResult::new(0);
        left.acknowledge(0, 10, 500, 1_000, 100);
        left.acknowledge(1, 5, 1_500, 1_000, 100);
        let mut right = ProducerResult::new(1);
        right.acknowledge(0, 2, 2_000, 1_000, 100);
        right.error(3, "boom".into());
        left.merge(right);
        assert_eq!(left.acked[&(0, 0)], 10);
        assert_eq!(left.acked[&(0, 1)], 2);
        assert_eq!(left.acked_messages, 17);
        assert_eq!(left.window_messages, 7);
        assert_eq!(left.window_bytes, 700);
        assert_eq!(left.last_ack_ns, 2_000);
        assert_eq!(left.error_count, 3);
    }
}
