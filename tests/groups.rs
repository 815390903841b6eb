//! Consumer groups with a real client (librdkafka via the rdkafka crate): partitions divided
//! among members and rebalanced as members come and go, independent groups, committed offsets
//! surviving `kill -9`, static membership.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{wait_until, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message};

const GROUP_BROKER_ARGS: &[&str] = &["--set", "group.initial.rebalance.delay.ms=0"];

async fn create_topic(broker: &Broker, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(results[0], Ok(name.to_string()));
}

async fn produce(broker: &Broker, topic: &str, count: usize) -> HashSet<String> {
    produce_tagged(broker, topic, "", count).await
}

/// Values are `{topic}-{tag}{index}`: a different tag gives values no earlier run produced.
async fn produce_tagged(broker: &Broker, topic: &str, tag: &str, count: usize) -> HashSet<String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()
        .unwrap();
    let mut sends = Vec::new();
    for index in 0..count {
        let value = format!("{topic}-{tag}{index}");
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            let record = FutureRecord::to(topic_static(&value))
                .key(&value)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap();
            value
        }));
    }
    let mut values = HashSet::new();
    for send in sends {
        values.insert(send.await.unwrap());
    }
    values
}

/// Topic name from a "topic-index" value (the produce helper's values start with the topic).
fn topic_static(value: &str) -> &str {
    &value[..value.rfind('-').unwrap()]
}

/// Counts rebalances a member goes through (assign + revoke callbacks).
struct CountingContext {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for CountingContext {}

impl ConsumerContext for CountingContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One group member polling on its own thread.
struct Member {
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(i32, i64, String)>>>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    rebalances: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(broker: &Broker, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let rebalances = Arc::new(AtomicUsize::new(0));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &broker.address)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "200");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let consumer: BaseConsumer<CountingContext> = config
            .create_with_context(CountingContext {
                rebalances: rebalances.clone(),
            })
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, received, assignment) = (stop.clone(), received.clone(), assignment.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        let value =
                            String::from_utf8_lossy(message.payload().unwrap()).into_owned();
                        received.lock().unwrap().push((
                            message.partition(),
                            message.offset(),
                            value,
                        ));
                    }
                    if let Ok(current) = consumer.assignment() {
                        *assignment.lock().unwrap() =
                            current.elements().iter().map(|e| e.partition()).collect();
                    }
                }
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
                drop(consumer); // close: LeaveGroup for dynamic members
            })
        };
        Member {
            stop,
            received,
            assignment,
            rebalances,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment.lock().unwrap().clone()
    }

    fn values(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, value)| value.clone())
            .collect()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every partition assigned exactly once across `members`.
fn covers_disjointly(members: &[&Member], partitions: i32) -> bool {
    let mut seen = BTreeSet::new();
    for member in members {
        let assignment = member.assignment();
        if assignment.is_empty() {
            return false;
        }
        for partition in assignment {
            if !seen.insert(partition) {
                return false;
            }
        }
    }
    seen.len() == partitions as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_rebalance_as_they_come_and_go() {
    let broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "split", 6).await;
    let produced = produce(&broker, "split", 600).await;

    let mut first = Member::start(&broker, "splitters", "split", &[]);
    let second = Member::start(&broker, "splitters", "split", &[]);
    let both = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&first, &second], 6)
    });
    assert!(
        both,
        "two members split 6 partitions: {:?} {:?}",
        first.assignment(),
        second.assignment()
    );

    let third = Member::start(&broker, "splitters", "split", &[]);
    let three = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&first, &second, &third], 6)
    });
    assert!(three, "a third member gets partitions");

    // Everything produced so far is consumed by the group (at least once).
    let all_seen = wait_until(Duration::from_secs(30), || {
        let mut seen: HashSet<String> = HashSet::new();
        for member in [&first, &second, &third] {
            seen.extend(member.values());
        }
        seen == produced
    });
    assert!(all_seen, "no message lost");

    first.stop();
    let two_left = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&second, &third], 6)
    });
    assert!(two_left, "the leaver's partitions are taken over");

    // Messages produced after the rebalance reach exactly the current owners.
    let later = produce_tagged(&broker, "split", "late", 300).await;
    let later_seen = wait_until(Duration::from_secs(30), || {
        let seen: HashSet<String> = second.values().into_iter().chain(third.values()).collect();
        later.is_subset(&seen)
    });
    assert!(later_seen, "messages after the rebalance are consumed");
    let second_values: HashSet<String> = second.values().into_iter().collect();
    let third_values: HashSet<String> = third.values().into_iter().collect();
    let both_got: Vec<&String> = later
        .iter()
        .filter(|value| second_values.contains(*value) && third_values.contains(*value))
        .collect();
    assert!(
        both_got.is_empty(),
        "delivered to two live members: {both_got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_receive_every_message() {
    let broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "fanout", 6).await;
    let produced = produce(&broker, "fanout", 300).await;
    let alpha = Member::start(&broker, "alpha", "fanout", &[]);
    let beta = Member::start(&broker, "beta", "fanout", &[]);
    for member in [&alpha, &beta] {
        let complete = wait_until(Duration::from_secs(30), || {
            member.values().into_iter().collect::<HashSet<_>>() == produced
        });
        assert!(complete, "each group gets every message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offset_survives_kill9_and_consumer_resumes_after_it() {
    let mut broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "resume", 1).await;
    produce(&broker, "resume", 300).await;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "resumers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["resume"]).unwrap();
    let mut last = -1;
    while last < 99 {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            last = message.offset();
            if last == 99 {
                consumer.commit_message(&message, CommitMode::Sync).unwrap();
            }
        }
    }
    drop(consumer);
    broker.kill9();
    broker.restart();
    let resumed: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "resumers")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    resumed.subscribe(&["resume"]).unwrap();
    let mut first = None;
    for _ in 0..600 {
        if let Some(message) = resumed.poll(Duration::from_millis(100)) {
            first = Some(message.unwrap().offset());
            break;
        }
    }
    assert_eq!(first, Some(100), "resumes right after the committed offset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_within_session_timeout_causes_no_rebalance() {
    let broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "static", 4).await;
    let static_config: &[(&str, &str)] = &[
        ("group.instance.id", "static-1"),
        ("session.timeout.ms", "20000"),
    ];
    let mut fixed = Member::start(&broker, "statics", "static", static_config);
    let other = Member::start(&broker, "statics", "static", &[]);
    let settled = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&fixed, &other], 4)
    });
    assert!(settled, "two members share the topic");
    let before = fixed.assignment();
    std::thread::sleep(Duration::from_secs(1));
    let rebalances_before = other.rebalances.load(Ordering::SeqCst);

    fixed.stop(); // a static member does not leave the group on close
    let restarted = Member::start(&broker, "statics", "static", static_config);
    let back = wait_until(Duration::from_secs(30), || restarted.assignment() == before);
    assert!(
        back,
        "the static member gets its partitions back: {:?}",
        restarted.assignment()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        other.rebalances.load(Ordering::SeqCst),
        rebalances_before,
        "the other member saw no rebalance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_across_a_broker_crash_leaves_no_duplicates_or_gaps() {
    let mut broker = Broker::start_restartable(&[]);
    create_topic(&broker, "exactly", 2).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("retry.backoff.ms", "50")
        .create()
        .unwrap();
    let total = 4000;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut sends = Vec::new();
    for index in 0..total {
        let value = format!("{index:06}");
        let record = FutureRecord::to("exactly")
            .partition((index % 2) as i32)
            .key("k")
            .payload(&value);
        // Queued in index order; librdkafka keeps that order per partition across retries.
        let delivery = producer.send_result(record).expect("queued");
        let counter = acked.clone();
        sends.push(tokio::spawn(async move {
            let outcome = delivery.await.expect("delivery reported");
            counter.fetch_add(1, Ordering::SeqCst);
            outcome
                .map(|_| value)
                .map_err(|(error, _)| error.to_string())
        }));
        if index == total / 2 {
            // Crash the broker with sends in flight and bring it back on the same address:
            // the producer retries what was not acknowledged.
            let started = wait_until(Duration::from_secs(30), || {
                acked.load(Ordering::SeqCst) > 100
            });
            assert!(started);
            broker.restart_same_address();
        }
    }
    let mut delivered = Vec::new();
    for send in sends {
        delivered.push(send.await.unwrap().expect("every send is delivered"));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "exactly-check")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&["exactly"]).unwrap();
    let mut by_partition: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while by_partition[0].len() + by_partition[1].len() < total
        && std::time::Instant::now() < deadline
    {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let value = String::from_utf8_lossy(message.payload().unwrap()).into_owned();
            by_partition[message.partition() as usize].push(value);
        }
    }
    for (partition, values) in by_partition.iter().enumerate() {
        let expected: Vec<String> = (0..total)
            .filter(|index| index % 2 == partition)
            .map(|index| format!("{index:06}"))
            .collect();
        let unique: HashSet<&String> = values.iter().collect();
        assert_eq!(
            unique.len(),
            values.len(),
            "partition {partition}: duplicates"
        );
        assert_eq!(values.len(), expected.len(), "partition {partition}: gaps");
        assert!(values == &expected, "partition {partition}: out of order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_split_and_rebalance() {
    let broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "coop", 6).await;
    let produced = produce(&broker, "coop", 300).await;
    let sticky: &[(&str, &str)] = &[("partition.assignment.strategy", "cooperative-sticky")];
    let first = Member::start(&broker, "cooperative", "coop", sticky);
    let second = Member::start(&broker, "cooperative", "coop", sticky);
    let split = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&first, &second], 6)
    });
    assert!(split, "{:?} {:?}", first.assignment(), second.assignment());
    let third = Member::start(&broker, "cooperative", "coop", sticky);
    let three = wait_until(Duration::from_secs(30), || {
        covers_disjointly(&[&first, &second, &third], 6)
    });
    assert!(three, "incremental rebalance gives the newcomer partitions");
    let all = wait_until(Duration::from_secs(30), || {
        let mut seen: HashSet<String> = HashSet::new();
        for member in [&first, &second, &third] {
            seen.extend(member.values());
        }
        seen == produced
    });
    assert!(all, "no message lost");
}

/// Member ids are `<client.id>-<uuid>` as Kafka forms them, so assignors that order members by
/// id give partition 0 to client `c0` (librdkafka's round-robin test expects exactly this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_ids_start_with_the_client_id_so_round_robin_orders_by_it() {
    let broker = Broker::start(GROUP_BROKER_ARGS);
    create_topic(&broker, "rr", 4).await;
    let round_robin = [("partition.assignment.strategy", "roundrobin")];
    // c1 joins first: the order of joining must not matter, only the ids.
    let second = Member::start(
        &broker,
        "rr-group",
        "rr",
        &[round_robin[0], ("client.id", "c1")],
    );
    let first = Member::start(
        &broker,
        "rr-group",
        "rr",
        &[round_robin[0], ("client.id", "c0")],
    );
    let settled = wait_until(Duration::from_secs(30), || {
        first.assignment() == BTreeSet::from([0, 2])
            && second.assignment() == BTreeSet::from([1, 3])
    });
    assert!(
        settled,
        "c0 {:?} c1 {:?}",
        first.assignment(),
        second.assignment()
    );
}

/// librdkafka 0113 `h_delete_topic`: a cooperative-sticky member subscribed to two topics loses
/// the deleted one's partition and keeps the other — also when its own metadata refreshes may
/// auto-create topics (then the topic comes back later, but is seen missing first, as on Kafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_subscribed_topic_revokes_its_partitions() {
    for allow in ["false", "true"] {
        let broker = Broker::start(GROUP_BROKER_ARGS);
        create_topic(&broker, "kept", 1).await;
        create_topic(&broker, "doomed", 1).await;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .set("group.id", "delete-topic")
            .set("client.id", "C_1")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("topic.metadata.refresh.interval.ms", "3000")
            .set("allow.auto.create.topics", allow)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["kept", "doomed"]).unwrap();
        let assigned = |consumer: &BaseConsumer| -> BTreeSet<String> {
            let list = consumer.assignment().unwrap();
            list.elements()
                .iter()
                .map(|element| format!("{}-{}", element.topic(), element.partition()))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while assigned(&consumer).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "allow={allow}: never assigned both"
            );
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .create()
            .unwrap();
        let deleted = admin
            .delete_topics(&["doomed"], &AdminOptions::new())
            .await
            .unwrap();
        assert_eq!(deleted[0], Ok("doomed".to_string()));
        let kept_only = BTreeSet::from(["kept-0".to_string()]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let _ = consumer.poll(Duration::from_millis(100));
            if assigned(&consumer) == kept_only {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "allow={allow}: still assigned {:?}",
                assigned(&consumer)
            );
        }
        if allow == "false" {
            let metadata = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .unwrap();
            assert!(
                metadata
                    .topics()
                    .iter()
                    .all(|topic| topic.name() != "doomed"),
                "nothing re-created the topic"
            );
        }
    }
}
