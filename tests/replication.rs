//! Replicated partitions: three real `sluice` processes on 127.0.0.1, .2 and .3, topics with
//! three replicas, librdkafka (the `rdkafka` crate) producing with idempotence and acks=all while
//! a leader is killed, paused, cut off or stopped; then everything is read back and checked: every
//! acknowledged record is there at its acknowledged offset, none twice, each partition in the
//! order it was produced.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agreed_controller, create_replicated_topic, metadata, wait_until, Cluster, CutLinks};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;

/// One three-node cluster at a time: on a two-core machine, four clusters under load starve
/// each other's Raft ticks and heartbeats into elections no one caused, and these tests are
/// about the faults they inject.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// (partition, offset, value) of one record.
type Record = (i32, i64, String);

/// A producer sending "{tag}-{i}" round-robin over the partitions until stopped.
struct Load {
    acked: Arc<Mutex<Vec<Record>>>,
    failed: Arc<AtomicUsize>,
    /// The first few delivery errors, for failure messages.
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(bootstrap: &str, topic: &str, tag: &str) -> Load {
        Load::start_with(bootstrap, topic, tag, Duration::from_secs(60))
    }

    /// A load whose records fail after `message_timeout` (the client's delivery timeout).
    fn start_with(bootstrap: &str, topic: &str, tag: &str, message_timeout: Duration) -> Load {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                message_timeout.as_millis().to_string(),
            )
            // A paused broker answers nothing: the client gives up on it after this and asks
            // the new leader (librdkafka's default, 30 s, would outlast the test).
            .set("request.timeout.ms", "3000")
            .set("socket.timeout.ms", "3000")
            .set("linger.ms", "2")
            .create()
            .expect("producer");
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (topic, tag) = (topic.to_string(), tag.to_string());
        let task = {
            let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut next = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let mut deliveries = Vec::new();
                    for _ in 0..20 {
                        let value = format!("{tag}-{next}");
                        let partition = (next % PARTITIONS as usize) as i32;
                        next += 1;
                        let record = FutureRecord::<(), _>::to(&topic)
                            .partition(partition)
                            .payload(&value);
                        match producer.send_result(record) {
                            Ok(delivery) => deliveries.push((value, delivery)),
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    for (value, delivery) in deliveries {
                        match delivery.await {
                            Ok(Ok(delivered)) => acked.lock().unwrap().push((
                                delivered.partition,
                                delivered.offset,
                                value,
                            )),
                            outcome => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let mut errors = errors.lock().unwrap();
                                if errors.len() < 5 {
                                    errors.push(format!("{value}: {outcome:?}"));
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Load {
            acked,
            failed,
            errors,
            stop,
            task,
        }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` further records are acknowledged (false on timeout, after printing
    /// the first delivery errors).
    async fn wait_for_more(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acked_count() + more;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.acked_count() >= target {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut per_partition = BTreeMap::new();
        for record in self.acked.lock().unwrap().iter() {
            *per_partition.entry(record.0).or_insert(0) += 1;
        }
        eprintln!(
            "{} acknowledged ({per_partition:?} by partition), {} failed; first errors: {:#?}",
            self.acked_count(),
            self.failed.load(Ordering::Relaxed),
            self.errors.lock().unwrap()
        );
        false
    }

    async fn finish(self) -> (Vec<Record>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.failed.load(Ordering::Relaxed))
    }
}

/// Every record of `topic` up to each partition's high watermark, read through `bootstrap`.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        // Right after a fault the client's metadata may still name the old leader.
        let mut high = None;
        let mut last_error = None;
        let asked = wait_until(Duration::from_secs(60), || {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
                Ok((_, watermark)) => high = Some(watermark),
                Err(error) => last_error = Some(error),
            }
            high.is_some()
        });
        assert!(
            asked,
            "no high watermark for {topic}-{partition}: {last_error:?}"
        );
        ends.insert(partition, high.unwrap());
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ends
        .iter()
        .any(|(p, end)| positions.get(p).copied().unwrap_or(0) < *end)
    {
        assert!(
            Instant::now() < deadline,
            "consumed only up to {positions:?} of {ends:?}"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string();
            records.push((message.partition(), message.offset(), value));
            positions.insert(message.partition(), message.offset() + 1);
        }
    }
    records
}

/// The history checks: no acknowledged record lost or moved, none duplicated, each partition in
/// production order.
fn check(acked: &[Record], consumed: &[Record]) {
    let mut seen = HashSet::new();
    for (partition, offset, value) in consumed {
        assert!(
            seen.insert(value.clone()),
            "{value} read twice (again at {partition}/{offset})"
        );
    }
    let by_position: BTreeMap<(i32, i64), &String> = consumed
        .iter()
        .map(|(partition, offset, value)| ((*partition, *offset), value))
        .collect();
    for (partition, offset, value) in acked {
        let there = by_position.get(&(*partition, *offset)).copied();
        if there != Some(value) {
            let elsewhere = consumed.iter().find(|r| &r.2 == value);
            panic!(
                "acknowledged {value} at {partition}/{offset} is not there (found {there:?}; \
                 the value is at {elsewhere:?})"
            );
        }
    }
    let mut last: BTreeMap<(i32, String), usize> = BTreeMap::new();
    for (partition, _, value) in consumed {
        let (tag, index) = value.rsplit_once('-').expect("tag-index");
        let index: usize = index.parse().expect("index");
        let key = (*partition, tag.to_string());
        if let Some(before) = last.insert(key, index) {
            assert!(
                before < index,
                "partition {partition}: {tag}-{index} after {tag}-{before}"
            );
        }
    }
}

/// One record produced straight to `address` with acks=all over the raw protocol (no client
/// retries, no redirection): the partition's error code.
fn raw_produce(address: &str, topic: &str, partition: i32) -> i16 {
    raw_produce_as(address, topic, partition, None).error_code
}

/// What a raw produce got back.
#[derive(Debug, Clone, PartialEq)]
struct Produced {
    error_code: i16,
    base_offset: i64,
    /// KIP-951 `current_leader` (-1: none given) and the nodes of `node_endpoints`.
    leader_hint: i32,
    endpoints: Vec<i32>,
}

impl Produced {
    fn nothing_yet() -> Produced {
        Produced {
            error_code: -1,
            base_offset: -1,
            leader_hint: -1,
            endpoints: Vec::new(),
        }
    }
}

/// An idempotent producer's batch: producer id, epoch and base sequence.
#[derive(Clone, Copy)]
struct Sequenced {
    producer_id: i64,
    epoch: i16,
    sequence: i32,
}

/// One record produced straight to `address` with acks=all over the raw protocol (v12, with
/// KIP-951 leader hints), as an idempotent producer's batch if `sequenced`.
fn raw_produce_as(
    address: &str,
    topic: &str,
    partition: i32,
    sequenced: Option<Sequenced>,
) -> Produced {
    use kafka_protocol::messages::{
        produce_request, ApiKey, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, StrBytes};
    let mut batch = sluice::protocol::batch::encode_batch(&[(None, Some(b"probe"))], 1);
    if let Some(sequenced) = sequenced {
        // Producer id, epoch and base sequence sit at bytes 43..57 of a v2 batch header; the
        // CRC-32C at 17..21 covers everything from the attributes (byte 21) on.
        batch[43..51].copy_from_slice(&sequenced.producer_id.to_be_bytes());
        batch[51..53].copy_from_slice(&sequenced.epoch.to_be_bytes());
        batch[53..57].copy_from_slice(&sequenced.sequence.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let mut partition_data = produce_request::PartitionProduceData::default();
    partition_data.index = partition;
    partition_data.records = Some(bytes::Bytes::from(batch));
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = TopicName(StrBytes::from_string(topic.to_string()));
    topic_data.partition_data.push(partition_data);
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data.push(topic_data);
    let mut client = common::RawClient::connect(address);
    let mut body = client
        .request(ApiKey::Produce, 12, &request)
        .expect("produce");
    let response = ProduceResponse::decode(&mut body, 12).expect("produce response");
    let answer = &response.responses[0].partition_responses[0];
    Produced {
        error_code: answer.error_code,
        base_offset: answer.base_offset,
        leader_hint: answer.current_leader.leader_id.0,
        endpoints: response
            .node_endpoints
            .iter()
            .map(|endpoint| endpoint.node_id.0)
            .collect(),
    }
}

/// A raw Fetch (v12, the last version that names topics) of `topic`-`partition` from offset 0
/// at `address`: (error code, KIP-951 `current_leader` id).
fn raw_fetch(address: &str, topic: &str, partition: i32) -> (i16, i32) {
    use kafka_protocol::messages::{fetch_request, ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};
    let mut wanted = fetch_request::FetchPartition::default();
    wanted.partition = partition;
    wanted.fetch_offset = 0;
    wanted.partition_max_bytes = 1 << 20;
    let mut topic_request = fetch_request::FetchTopic::default();
    topic_request.topic = TopicName(StrBytes::from_string(topic.to_string()));
    topic_request.partitions.push(wanted);
    let mut request = FetchRequest::default();
    request.max_wait_ms = 0;
    request.max_bytes = 1 << 20;
    request.topics.push(topic_request);
    let mut client = common::RawClient::connect(address);
    let mut body = client.request(ApiKey::Fetch, 12, &request).expect("fetch");
    let response = FetchResponse::decode(&mut body, 12).expect("fetch response");
    let answer = &response.responses[0].partitions[0];
    (answer.error_code, answer.current_leader.leader_id.0)
}

/// Creates `topic` (three partitions, three replicas) and waits until every node names a leader
/// for each partition; returns the leaders.
async fn replicated_topic(cluster: &Cluster, topic: &str) -> Vec<i32> {
    let controller = agreed_controller(cluster, &[1, 2, 3]);
    create_replicated_topic(&cluster.address(controller), topic, PARTITIONS, 3).await;
    let mut leaders = Vec::new();
    let known = wait_until(Duration::from_secs(20), || {
        let answers: Vec<Vec<i32>> = (1..=3)
            .filter_map(|node| metadata(&cluster.address(node)))
            .filter_map(|(_, _, topics)| topics.get(topic).cloned())
            .collect();
        if answers.len() == 3
            && answers.iter().all(|a| a == &answers[0])
            && answers[0].iter().all(|leader| *leader > 0)
        {
            leaders = answers[0].clone();
            true
        } else {
            false
        }
    });
    assert!(known, "no leaders for {topic}");
    leaders
}

/// Waits until `node` names a leader other than `old` for `partition` of `topic`.
fn new_leader(cluster: &Cluster, node: i32, topic: &str, partition: usize, old: i32) -> i32 {
    let mut leader = -1;
    let moved = wait_until(Duration::from_secs(15), || {
        leader = metadata(&cluster.address(node))
            .and_then(|(_, _, topics)| topics.get(topic).map(|leaders| leaders[partition]))
            .unwrap_or(-1);
        leader > 0 && leader != old
    });
    assert!(
        moved,
        "node {node}: {topic}-{partition} still led by {leader} (was {old})"
    );
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_leader_under_load_loses_no_acknowledged_record() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "kill-leader").await;
    let victim = leaders[0];
    let survivors: Vec<i32> = (1..=3).filter(|n| *n != victim).collect();
    let load = Load::start(&cluster.bootstrap(), "kill-leader", "k");
    assert!(
        load.wait_for_more(300, Duration::from_secs(30)).await,
        "no progress before the kill"
    );
    cluster.node(victim).kill9();
    new_leader(&cluster, survivors[0], "kill-leader", 0, victim);
    assert!(
        load.wait_for_more(300, Duration::from_secs(30)).await,
        "no progress after node {victim} was killed"
    );
    let (acked, _failed) = load.finish().await;
    let consumed = consume_all(&cluster.address(survivors[0]), "kill-leader");
    check(&acked, &consumed);
    // The killed node comes back and catches up: it can lead again with everything.
    cluster.node(victim).restart_same_address();
    let more = Load::start(&cluster.bootstrap(), "kill-leader", "r");
    assert!(
        more.wait_for_more(100, Duration::from_secs(30)).await,
        "no progress after restart"
    );
    let (acked_after, _) = more.finish().await;
    let all: Vec<Record> = acked.into_iter().chain(acked_after).collect();
    check(&all, &consume_all(&cluster.bootstrap(), "kill-leader"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_follows_when_resumed() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "pause-leader").await;
    let victim = leaders[0];
    let other = (1..=3).find(|n| *n != victim).unwrap();
    let load = Load::start(&cluster.bootstrap(), "pause-leader", "p");
    assert!(load.wait_for_more(200, Duration::from_secs(30)).await);
    cluster.node(victim).pause(true);
    let started = Instant::now();
    new_leader(&cluster, other, "pause-leader", 0, victim);
    let elected_in = started.elapsed();
    assert!(
        load.wait_for_more(200, Duration::from_secs(30)).await,
        "no progress while paused"
    );
    cluster.node(victim).pause(false);
    // The resumed node hears of the newer term, steps down and follows.
    let follows = wait_until(Duration::from_secs(15), || {
        metadata(&cluster.address(victim))
            .and_then(|(_, _, topics)| topics.get("pause-leader").map(|l| l[0]))
            .is_some_and(|leader| leader != victim)
    });
    assert!(follows, "node {victim} did not learn of the new leader");
    assert!(load.wait_for_more(200, Duration::from_secs(30)).await);
    let (acked, _) = load.finish().await;
    check(&acked, &consume_all(&cluster.bootstrap(), "pause-leader"));
    eprintln!("new leader named in {elected_in:?} after SIGSTOP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_others_acknowledges_nothing() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "cut-leader").await;
    let isolated = leaders[0];
    let others: Vec<i32> = (1..=3).filter(|n| *n != isolated).collect();
    // Two producers, running before the cut: one that only knows the isolated node (it can
    // still reach it, but nothing it sends there may be acknowledged) and one that knows the
    // majority side.
    let minority = Load::start_with(
        &cluster.address(isolated),
        "cut-leader",
        "minority",
        Duration::from_secs(8),
    );
    let majority = Load::start(&cluster.address(others[0]), "cut-leader", "majority");
    assert!(minority.wait_for_more(50, Duration::from_secs(30)).await);
    assert!(majority.wait_for_more(50, Duration::from_secs(30)).await);
    let cut = CutLinks::cut(isolated, &others, cluster.client_port + 1);
    new_leader(&cluster, others[0], "cut-leader", 0, isolated);
    // Asked directly, the isolated node acknowledges nothing for the partition it led.
    for _ in 0..3 {
        let code = raw_produce(&cluster.address(isolated), "cut-leader", 0);
        assert_ne!(
            code, 0,
            "the isolated node acknowledged a record while cut off"
        );
    }
    let progressed = majority.wait_for_more(200, Duration::from_secs(60)).await;
    if !progressed {
        for node in 1..=3 {
            eprintln!("node {node} says {:?}", metadata(&cluster.address(node)));
            for partition in 0..PARTITIONS {
                eprintln!(
                    "  raw produce to node {node} partition {partition}: {}",
                    raw_produce(&cluster.address(node), "cut-leader", partition)
                );
            }
        }
    }
    assert!(progressed, "the majority side made no progress");
    let (minority_acked, _) = minority.finish().await;
    let (majority_acked, _) = majority.finish().await;
    drop(cut);
    let healed = Instant::now();
    let all: Vec<Record> = minority_acked.into_iter().chain(majority_acked).collect();
    let majority_side = format!(
        "{},{}",
        cluster.address(others[0]),
        cluster.address(others[1])
    );
    let consumed = consume_all(&majority_side, "cut-leader");
    eprintln!(
        "read back {} s after the links healed",
        healed.elapsed().as_secs_f32()
    );
    check(&all, &consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_leadership_before_exit_and_loses_nothing() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "stop-leader").await;
    let victim = leaders[0];
    let other = (1..=3).find(|n| *n != victim).unwrap();
    let load = Load::start(&cluster.bootstrap(), "stop-leader", "s");
    assert!(load.wait_for_more(200, Duration::from_secs(30)).await);
    let status = cluster.node(victim).terminate(Duration::from_secs(20));
    assert!(status.success(), "clean exit: {status:?}");
    new_leader(&cluster, other, "stop-leader", 0, victim);
    assert!(load.wait_for_more(200, Duration::from_secs(30)).await);
    let (acked, failed) = load.finish().await;
    assert_eq!(
        failed, 0,
        "a controlled shutdown gives clients only retriable errors"
    );
    check(&acked, &consume_all(&cluster.address(other), "stop-leader"));
}

/// A follower answers an idempotent batch with NOT_LEADER_OR_FOLLOWER, never with a sequence
/// error of its own (librdkafka bumps its epoch on OUT_OF_ORDER_SEQUENCE_NUMBER and resends what
/// the leader may hold: duplicates); and every replica keeps the producers' sequences as it
/// replicates, so a retry sent to a new leader is recognised with its original offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_sequences_survive_a_leader_change_and_followers_only_redirect() {
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "sequences").await;
    let leader = leaders[0];
    let followers: Vec<i32> = (1..=3).filter(|n| *n != leader).collect();
    let as_producer = |sequence| {
        Some(Sequenced {
            producer_id: 4242,
            epoch: 0,
            sequence,
        })
    };
    // Until the partition's first election is over the named leader may not lead yet.
    let mut taken = Produced::nothing_yet();
    let led = wait_until(Duration::from_secs(15), || {
        taken = raw_produce_as(&cluster.address(leader), "sequences", 0, as_producer(0));
        taken.error_code != NOT_LEADER_OR_FOLLOWER
    });
    assert!(
        led && taken.error_code == 0,
        "node {leader} refused sequence 0: {taken:?}"
    );
    let first = taken.base_offset;
    // A gap, sent to a follower: it does not lead, and says only that.
    for follower in &followers {
        let refused = raw_produce_as(&cluster.address(*follower), "sequences", 0, as_producer(5));
        assert_eq!(
            refused.error_code, NOT_LEADER_OR_FOLLOWER,
            "node {follower} answered a gap"
        );
        // KIP-951: the refusal names the leader and where to reach it.
        assert_eq!(refused.leader_hint, leader, "node {follower}: {refused:?}");
        assert_eq!(
            refused.endpoints,
            vec![leader],
            "node {follower}: {refused:?}"
        );
        assert_eq!(
            raw_fetch(&cluster.address(*follower), "sequences", 0),
            (NOT_LEADER_OR_FOLLOWER, leader),
            "node {follower}: a fetch is refused naming the leader"
        );
    }
    cluster.node(leader).kill9();
    let new = new_leader(&cluster, followers[0], "sequences", 0, leader);
    // The retry of sequence 0 is the batch already replicated, at its first offset.
    let mut retried = Produced::nothing_yet();
    let answered = wait_until(Duration::from_secs(15), || {
        retried = raw_produce_as(&cluster.address(new), "sequences", 0, as_producer(0));
        retried.error_code != NOT_LEADER_OR_FOLLOWER
    });
    assert!(answered, "node {new} never took the retry: {retried:?}");
    assert_eq!(
        (retried.error_code, retried.base_offset),
        (0, first),
        "the retry was not recognised as a duplicate"
    );
    let next = raw_produce_as(&cluster.address(new), "sequences", 0, as_producer(1));
    assert_eq!(next.error_code, 0, "sequence 1 refused by the new leader");
    let next = next.base_offset;
    assert!(next > first);
    // consume_all reads up to each partition's end: one record behind the new leaders' own
    // entries (control batches no consumer sees) on the other partitions too.
    for partition in 1..PARTITIONS {
        let written = wait_until(Duration::from_secs(15), || {
            followers
                .iter()
                .any(|node| raw_produce(&cluster.address(*node), "sequences", partition) == 0)
        });
        assert!(written, "no leader took a record for partition {partition}");
    }
    let probes = consume_all(&cluster.address(new), "sequences")
        .into_iter()
        .filter(|(partition, _, value)| *partition == 0 && value == "probe")
        .count();
    assert_eq!(probes, 2, "the log holds the producer's batches once each");
}

/// The node FindCoordinator names for `group` (asked of `address`), or -1.
fn find_coordinator(address: &str, group: &str) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    use kafka_protocol::protocol::{Decodable, StrBytes};
    let mut request = FindCoordinatorRequest::default();
    request.key = StrBytes::from_string(group.to_string());
    let Some(mut client) = common::RawClient::try_connect(address) else {
        return -1;
    };
    let Ok(mut body) = client.request(ApiKey::FindCoordinator, 3, &request) else {
        return -1;
    };
    match FindCoordinatorResponse::decode(&mut body, 3) {
        Ok(response) if response.error_code == 0 => response.node_id.0,
        _ => -1,
    }
}

/// `__consumer_offsets` is replicated and a group's coordinator is the leader of the group's
/// partition: when that node is killed, the new leader serves the offsets committed before and
/// takes new commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_coordinator_fails_over_with_its_committed_offsets() {
    use rdkafka::consumer::CommitMode;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    replicated_topic(&cluster, "committed").await;
    let offsets = |base: i64| {
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition_offset(
                "committed",
                partition,
                Offset::Offset(base + i64::from(partition)),
            )
            .expect("offset");
        }
        list
    };
    let consumer_of = |bootstrap: &str| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "failover")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    };
    let committed = |consumer: &BaseConsumer| -> Option<Vec<i64>> {
        let wanted = offsets(0);
        let found = consumer
            .committed_offsets(wanted, Duration::from_secs(5))
            .ok()?;
        found
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            })
            .collect()
    };
    let first = consumer_of(&cluster.bootstrap());
    let stored = wait_until(Duration::from_secs(60), || {
        first.commit(&offsets(100), CommitMode::Sync).is_ok()
    });
    assert!(stored, "the first commit was never taken");
    let coordinator = find_coordinator(&cluster.address(1), "failover");
    assert!(coordinator > 0, "no coordinator named");
    let survivors: Vec<i32> = (1..=3).filter(|n| *n != coordinator).collect();
    drop(first);
    cluster.node(coordinator).kill9();
    let moved = wait_until(Duration::from_secs(30), || {
        let named = find_coordinator(&cluster.address(survivors[0]), "failover");
        named > 0 && named != coordinator
    });
    assert!(moved, "the coordinator did not move off node {coordinator}");
    let survivors_bootstrap = format!(
        "{},{}",
        cluster.address(survivors[0]),
        cluster.address(survivors[1])
    );
    let second = consumer_of(&survivors_bootstrap);
    let mut seen = None;
    let served = wait_until(Duration::from_secs(30), || {
        seen = committed(&second);
        seen.is_some()
    });
    assert!(served, "the new coordinator never answered OffsetFetch");
    assert_eq!(
        seen,
        Some(vec![100, 101, 102]),
        "offsets committed before the kill"
    );
    let again = wait_until(Duration::from_secs(30), || {
        second.commit(&offsets(200), CommitMode::Sync).is_ok()
    });
    assert!(again, "the new coordinator took no commit");
    assert_eq!(committed(&second), Some(vec![200, 201, 202]));
}

/// The in-sync replicas Metadata at `address` reports for `topic`-`partition` (sorted).
fn isr_of(address: &str, topic: &str, partition: i32) -> Option<Vec<i32>> {
    partition_view(address, topic, partition).map(|view| view.isr)
}

/// A partition as `address`'s Metadata describes it.
struct PartitionView {
    /// In assignment order: the first is the preferred leader.
    replicas: Vec<i32>,
    /// Sorted.
    isr: Vec<i32>,
    leader: i32,
}

fn partition_view(address: &str, topic: &str, partition: i32) -> Option<PartitionView> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let found = metadata
        .topics()
        .first()?
        .partitions()
        .iter()
        .find(|p| p.id() == partition)?;
    let mut isr = found.isr().to_vec();
    isr.sort_unstable();
    Some(PartitionView {
        replicas: found.replicas().to_vec(),
        isr,
        leader: found.leader(),
    })
}

/// Metadata's in-sync replicas are the leader's view: a follower that stops (SIGSTOP) while
/// writes go on leaves them after `replica.lag.time.max.ms` and rejoins once caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_follower_leaves_the_in_sync_replicas_and_rejoins() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Brokers are fenced only after a minute: the ISR must shrink for the lag, not because
    // the stopped node's broker left the cluster.
    let mut cluster = Cluster::start(&[
        "--set",
        "replica.lag.time.max.ms=2000",
        "--set",
        "broker.session.timeout.ms=60000",
    ]);
    let leaders = replicated_topic(&cluster, "isr").await;
    let leader = leaders[0];
    let stalled = (1..=3).find(|n| *n != leader).expect("a follower");
    let all = vec![1, 2, 3];
    let full = wait_until(Duration::from_secs(20), || {
        isr_of(&cluster.address(leader), "isr", 0) == Some(all.clone())
    });
    assert!(full, "the ISR never named all three replicas");
    cluster.node(stalled).pause(true);
    let remaining: Vec<i32> = all.iter().copied().filter(|n| *n != stalled).collect();
    let mut seen = None;
    let shrunk = wait_until(Duration::from_secs(20), || {
        // Writes keep the commit point moving, so the stalled follower falls behind it.
        raw_produce(&cluster.address(leader), "isr", 0);
        seen = isr_of(&cluster.address(leader), "isr", 0);
        seen.as_ref() == Some(&remaining)
    });
    cluster.node(stalled).pause(false);
    assert!(
        shrunk,
        "node {stalled} stayed in sync while stopped: {seen:?}"
    );
    let rejoined = wait_until(Duration::from_secs(20), || {
        raw_produce(&cluster.address(leader), "isr", 0);
        isr_of(&cluster.address(remaining[1]), "isr", 0) == Some(all.clone())
    });
    assert!(
        rejoined,
        "node {stalled} did not rejoin the in-sync replicas"
    );
}

/// Bytes sent so far on every established socket of the nodes' CONTROLLER port.
fn node_link_bytes(controller_port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!("( sport = :{controller_port} or dport = :{controller_port} )"),
        ])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|field| field.strip_prefix("bytes_sent:"))
        .filter_map(|count| count.parse::<u64>().ok())
        .sum()
}

/// Idle partitions go quiet: a cluster of 83 groups (33 partitions and `__consumer_offsets`'
/// 50) at rest sends about what its links' pings cost, where heartbeating groups would send
/// each of their followers a heartbeat every 200 ms (and get an answer): tens of kilobytes a
/// second. A quiet partition still takes writes at once, and fails over
/// when its leader's node is killed: its followers learn it from the node links, since no
/// heartbeat is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_go_quiet_and_still_fail_over() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    replicated_topic(&cluster, "quiet").await;
    // More idle groups, so that heartbeating ones would show.
    let controller = agreed_controller(&cluster, &[1, 2, 3]);
    create_replicated_topic(&cluster.address(controller), "quiet-more", 30, 3).await;
    let load = Load::start(&cluster.bootstrap(), "quiet", "q");
    assert!(load.wait_for_more(100, Duration::from_secs(30)).await);
    let (acked, _) = load.finish().await;
    // Two heartbeat intervals without proposals, then the groups quiesce.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let port = cluster.client_port + 1;
    let before = node_link_bytes(port);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rate = (node_link_bytes(port) - before) as f64 / window.elapsed().as_secs_f64();
    // Six links pinging every 200 ms, the controller quorum's heartbeats and the brokers'
    // heartbeats: a few hundred bytes a second.
    assert!(
        rate < 5000.0,
        "{rate:.0} node-to-node bytes/s in an idle cluster: groups did not quiesce"
    );
    // A write to a quiet partition is acknowledged.
    let more = Load::start(&cluster.bootstrap(), "quiet", "w");
    assert!(more.wait_for_more(30, Duration::from_secs(10)).await);
    let (written, _) = more.finish().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = metadata(&cluster.address(1))
        .and_then(|(_, _, topics)| topics.get("quiet").map(|leaders| leaders[0]))
        .expect("a leader for quiet-0");
    let survivor = (1..=3).find(|n| *n != victim).unwrap();
    cluster.node(victim).kill9();
    let killed = Instant::now();
    new_leader(&cluster, survivor, "quiet", 0, victim);
    eprintln!(
        "quiet partition: new leader named {:?} after kill -9 ({rate:.0} bytes/s at rest)",
        killed.elapsed()
    );
    let after = Load::start(&cluster.address(survivor), "quiet", "a");
    assert!(
        after.wait_for_more(60, Duration::from_secs(30)).await,
        "no progress after node {victim} was killed"
    );
    let (written_after, _) = after.finish().await;
    let all: Vec<Record> = acked
        .into_iter()
        .chain(written)
        .chain(written_after)
        .collect();
    check(&all, &consume_all(&cluster.address(survivor), "quiet"));
}

/// ElectLeaders (API 43) for one partition: its error code, as `address` answers.
fn elect(address: &str, topic: &str, partition: i32, election_type: i8) -> i16 {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse};
    let mut connection =
        sluice::bench::client::Connection::connect(address, "elect-test").expect("connect");
    let mut wanted = TopicPartitions::default();
    wanted.topic = sluice::bench::client::topic_name(topic);
    wanted.partitions = vec![partition];
    let mut request = ElectLeadersRequest::default();
    request.election_type = election_type;
    request.topic_partitions = Some(vec![wanted]);
    request.timeout_ms = 10_000;
    let response: ElectLeadersResponse = connection
        .request(ApiKey::ElectLeaders, 2, &request)
        .expect("ElectLeaders");
    assert_eq!(response.error_code, 0);
    response.replica_election_results[0].partition_result[0].error_code
}

/// A preferred-leader election moves leadership back to the first replica once it is in sync
/// again, answers ELECTION_NOT_NEEDED once it leads, and an unclean election is never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preferred_leader_election_moves_leadership_back() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&[]);
    let leaders = replicated_topic(&cluster, "elect").await;
    let replicas = partition_view(&cluster.address(leaders[0]), "elect", 0)
        .expect("replicas")
        .replicas;
    let preferred = replicas[0];
    // Move leadership off the preferred replica: stop its node until another leads.
    cluster.node(preferred).pause(true);
    let other = replicas[1];
    let moved = new_leader(&cluster, other, "elect", 0, preferred);
    cluster.node(preferred).pause(false);
    let all: Vec<i32> = {
        let mut all = replicas.clone();
        all.sort_unstable();
        all
    };
    // Asked of a node that neither leads nor is preferred (the third replica), once it too
    // sees the preferred replica back in sync.
    let asked = replicas[2];
    let caught_up = wait_until(Duration::from_secs(20), || {
        raw_produce(&cluster.address(moved), "elect", 0);
        isr_of(&cluster.address(asked), "elect", 0) == Some(all.clone())
    });
    assert!(
        caught_up,
        "node {preferred} did not rejoin the in-sync replicas"
    );
    assert_eq!(
        elect(&cluster.address(asked), "elect", 0, 0),
        0,
        "preferred election"
    );
    let back = wait_until(Duration::from_secs(10), || {
        (1..=3).all(|node| {
            partition_view(&cluster.address(node), "elect", 0)
                .is_some_and(|view| view.leader == preferred)
        })
    });
    assert!(back, "node {preferred} does not lead after the election");
    assert_eq!(raw_produce(&cluster.address(preferred), "elect", 0), 0);
    const ELECTION_NOT_NEEDED: i16 = 84;
    assert_eq!(
        elect(&cluster.address(asked), "elect", 0, 0),
        ELECTION_NOT_NEEDED
    );
    assert_eq!(
        elect(&cluster.address(asked), "elect", 0, 1),
        ELECTION_NOT_NEEDED,
        "unclean: a leader exists"
    );
}

/// DeleteRecords goes through the partition's Raft group: the leader answers once the move is
/// committed, a follower refuses it, and after the leader is killed the new leader's log starts
/// where the deletion put it (a fetch below it is OFFSET_OUT_OF_RANGE); the killed node, back,
/// keeps it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_records_stay_deleted_across_a_leader_change() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(&["--set", "log.level=info"]);
    let leaders = replicated_topic(&cluster, "trim").await;
    let leader = leaders[0];
    // Six records (the first may meet a leadership still settling).
    let mut produced = 0;
    let six = wait_until(Duration::from_secs(20), || {
        if raw_produce(&cluster.address(leader), "trim", 0) == 0 {
            produced += 1;
        }
        produced == 6
    });
    assert!(six, "node {leader} took {produced} records");
    let follower = (1..=3).find(|node| *node != leader).expect("a follower");
    assert_eq!(
        common::delete_records(&cluster.address(follower), "trim", 0, 4).0,
        6,
        "a follower refuses: NOT_LEADER_OR_FOLLOWER"
    );
    let (_, end) = common::offset_at(&cluster.address(leader), "trim", 0, -1);
    assert_eq!(
        common::delete_records(&cluster.address(leader), "trim", 0, end + 1).0,
        1,
        "past the high watermark: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(
        common::delete_records(&cluster.address(leader), "trim", 0, 4),
        (0, 4)
    );
    assert_eq!(
        common::offset_at(&cluster.address(leader), "trim", 0, -2),
        (0, 4)
    );
    // Every replica has it in sync (and so the commit point past the deletion) before the kill.
    let all_in_sync = wait_until(Duration::from_secs(20), || {
        raw_produce(&cluster.address(leader), "trim", 0);
        isr_of(&cluster.address(leader), "trim", 0).is_some_and(|isr| isr.len() == 3)
    });
    assert!(all_in_sync, "replicas did not catch up");
    cluster.node(leader).kill9();
    let others: Vec<i32> = (1..=3).filter(|node| *node != leader).collect();
    let (next, start) = leader_log_start(&cluster, &others, "trim");
    assert_eq!(
        start, 4,
        "new leader {next} does not start at the deleted offset"
    );
    assert_eq!(
        raw_fetch(&cluster.address(next), "trim", 0).0,
        1,
        "fetch from 0"
    );
    cluster.node(leader).start_again();
    let rejoined = wait_until(Duration::from_secs(20), || {
        raw_produce(&cluster.address(next), "trim", 0);
        isr_of(&cluster.address(next), "trim", 0).is_some_and(|isr| isr.len() == 3)
    });
    assert!(rejoined, "node {leader} did not rejoin");
    // Whichever of the restarted node and the third one leads next starts there too.
    cluster.node(next).kill9();
    let alive = [leader, 6 - leader - next];
    let (last, start) = leader_log_start(&cluster, &alive, "trim");
    assert_eq!(start, 4, "node {last} leads without the deletion");
}

/// Waits until one of `nodes` answers ListOffsets earliest for partition 0 of `topic` (only
/// its leader does): that node and its log start offset.
fn leader_log_start(cluster: &Cluster, nodes: &[i32], topic: &str) -> (i32, i64) {
    let mut answers = Vec::new();
    let found = wait_until(Duration::from_secs(20), || {
        answers = nodes
            .iter()
            .map(|node| {
                (
                    *node,
                    common::offset_at(&cluster.address(*node), topic, 0, -2),
                )
            })
            .collect();
        answers.iter().any(|(_, (code, _))| *code == 0)
    });
    assert!(found, "no leader among {nodes:?}: {answers:?}");
    let (node, (_, start)) = answers
        .into_iter()
        .find(|(_, (code, _))| *code == 0)
        .expect("found");
    (node, start)
}
