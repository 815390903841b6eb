//! End-to-end tests: the real `sluice` binary driven by librdkafka (the `rdkafka` crate) and, for
//! requests no real client can be made to send, by a raw Kafka-protocol connection.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{wait_until, Broker};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .expect("admin client")
}

fn producer(broker: &Broker, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("acks", acks)
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn consumer(broker: &Broker, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "unused-manual-assignment")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("consumer")
}

async fn create_topic(broker: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin(broker)
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics");
    assert_eq!(results[0], Ok(name.to_string()));
}

/// partition -> [(offset, key, value)] in the order consumed.
type Consumed = BTreeMap<i32, Vec<(i64, Vec<u8>, Vec<u8>)>>;

/// Reads every partition from the beginning until `expected` messages arrived.
fn consume_all(broker: &Broker, topic: &str, partitions: i32, expected: usize) -> Consumed {
    let consumer = consumer(broker, &[]);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut by_partition: Consumed = BTreeMap::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                by_partition.entry(message.partition()).or_default().push((
                    message.offset(),
                    message.key().unwrap_or_default().to_vec(),
                    message.payload().unwrap_or_default().to_vec(),
                ));
                received += 1;
            }
            Some(Err(error)) => panic!("consume error: {error}"),
            None => {}
        }
    }
    // Anything beyond `expected` would be a duplicate: give it a moment to show up.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            by_partition.entry(message.partition()).or_default().push((
                message.offset(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    by_partition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_spread_over_shards_and_keyed_messages_come_back_in_order() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "orders", 6, &[]).await;

    let metadata = sluice::cluster::controller_log::read_metadata(broker.data_dir()).unwrap();
    if Broker::cores() > 1 {
        let shards: Vec<u32> = metadata
            .topic("orders")
            .unwrap()
            .partitions
            .iter()
            .map(|assignment| assignment.replicas[0].shard.0)
            .collect();
        assert_eq!(shards, vec![0, 1, 0, 1, 0, 1], "{metadata:?}");
    }

    let producer = producer(&broker, "all");
    let mut sends = Vec::new();
    for index in 0..600 {
        let key = format!("key-{}", index % 20);
        let value = format!("value-{index}");
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            let record = FutureRecord::to("orders").key(&key).payload(&value);
            let delivery = producer.send(record, Duration::from_secs(30)).await;
            (key, value, delivery.map_err(|(error, _)| error.to_string()))
        }));
    }
    let mut produced: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for send in sends {
        let (key, value, delivery) = send.await.unwrap();
        let delivery = delivery.expect("acks=all delivery");
        let previous = partition_of_key.insert(key.clone(), delivery.partition);
        assert!(
            previous.is_none() || previous == Some(delivery.partition),
            "key moved"
        );
        produced
            .entry(delivery.partition)
            .or_default()
            .push((delivery.offset, key, value));
    }
    let consumed = consume_all(&broker, "orders", 6, 600);
    assert!(consumed.len() > 1, "keys spread over partitions");
    for (partition, mut expected) in produced {
        expected.sort();
        let got = &consumed[&partition];
        assert_eq!(got.len(), expected.len(), "partition {partition}");
        for ((offset, key, value), (got_offset, got_key, got_value)) in expected.iter().zip(got) {
            assert_eq!(offset, got_offset, "partition {partition}");
            assert_eq!(key.as_bytes(), &got_key[..]);
            assert_eq!(value.as_bytes(), &got_value[..]);
        }
        let offsets: Vec<i64> = got.iter().map(|(offset, _, _)| *offset).collect();
        assert_eq!(offsets, (0..got.len() as i64).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_use_kafka_codes() {
    let broker = Broker::start(&[]);
    let admin = admin(&broker);
    let options = AdminOptions::new();
    create_topic(&broker, "dup", 2, &[]).await;
    let again = admin
        .create_topics(
            &[NewTopic::new("dup", 2, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        again[0],
        Err(("dup".into(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    let replicated = admin
        .create_topics(
            &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        replicated[0],
        Err(("rf3".into(), RDKafkaErrorCode::InvalidReplicationFactor))
    );
    let bad_config = admin
        .create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon")],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        bad_config[0],
        Err(("cfg".into(), RDKafkaErrorCode::InvalidConfig))
    );
    let validate = admin
        .create_topics(
            &[NewTopic::new("dry", 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(validate[0], Ok("dry".into()));
    let metadata = producer(&broker, "1")
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert!(metadata.topics().iter().all(|topic| topic.name() != "dry"));

    let grow = admin
        .create_partitions(&[NewPartitions::new("dup", 4)], &options)
        .await
        .unwrap();
    assert_eq!(grow[0], Ok("dup".into()));
    let shrink = admin
        .create_partitions(&[NewPartitions::new("dup", 3)], &options)
        .await
        .unwrap();
    assert_eq!(
        shrink[0],
        Err(("dup".into(), RDKafkaErrorCode::InvalidPartitions))
    );

    // Explicit replica assignments naming this node are taken; naming a broker that does
    // not exist is INVALID_REPLICA_ASSIGNMENT, for new topics and new partitions alike.
    let node = metadata.brokers()[0].id();
    let this_node: &[i32] = &[node];
    let assigned = admin
        .create_topics(
            &[NewTopic::new(
                "assigned",
                2,
                TopicReplication::Variable(&[this_node, this_node]),
            )],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(assigned[0], Ok("assigned".into()));
    let grown = admin
        .create_partitions(
            &[NewPartitions::new("assigned", 3).assign(&[this_node])],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(grown[0], Ok("assigned".into()));
    let nowhere: &[i32] = &[node + 98];
    let unknown_broker = admin
        .create_topics(
            &[NewTopic::new(
                "nowhere",
                1,
                TopicReplication::Variable(&[nowhere]),
            )],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        unknown_broker[0],
        Err(("nowhere".into(), RDKafkaErrorCode::InvalidReplicaAssignment))
    );
    let unknown_partition_broker = admin
        .create_partitions(
            &[NewPartitions::new("assigned", 4).assign(&[nowhere])],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        unknown_partition_broker[0],
        Err((
            "assigned".into(),
            RDKafkaErrorCode::InvalidReplicaAssignment
        ))
    );
    let counted = producer(&broker, "2")
        .client()
        .fetch_metadata(Some("assigned"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(counted.topics()[0].partitions().len(), 3);

    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("dup")).set("retention.ms", "3600000")],
            &options,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("dup")], &options)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|entry| entry.value.clone()),
        Some("3600000".to_string())
    );
    let deleted = admin
        .delete_topics(&["dup", "nope"], &options)
        .await
        .unwrap();
    assert_eq!(deleted[0], Ok("dup".into()));
    assert_eq!(
        deleted[1],
        Err(("nope".into(), RDKafkaErrorCode::UnknownTopicOrPartition))
    );
    // Re-created under the same name, it starts empty.
    create_topic(&broker, "dup", 1, &[]).await;
    let consumer = consumer(&broker, &[]);
    let (low, high) = consumer
        .fetch_watermarks("dup", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "times", 1, &[]).await;
    let producer = producer(&broker, "all");
    let base = 1_700_000_000_000i64;
    for index in 0..10i64 {
        let payload = format!("m{index}");
        let record = FutureRecord::to("times")
            .payload(&payload)
            .key("k")
            .timestamp(base + index * 1000);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let consumer = consumer(&broker, &[]);
    let (low, high) = consumer
        .fetch_watermarks("times", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 10));
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("times", 0, Offset::Offset(base + 5000))
        .unwrap();
    let found = consumer
        .offsets_for_times(query, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        found.find_partition("times", 0).unwrap().offset(),
        Offset::Offset(5)
    );
    let mut later = TopicPartitionList::new();
    later
        .add_partition_offset("times", 0, Offset::Offset(base + 60_000))
        .unwrap();
    let none = consumer
        .offsets_for_times(later, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        none.find_partition("times", 0).unwrap().offset(),
        Offset::End
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_returns_as_soon_as_data_arrives() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "tail", 2, &[]).await;
    // The fetch may park up to 20 s; the message must arrive long before that.
    let consumer = consumer(&broker, &[("fetch.wait.max.ms", "20000")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("tail", 0, Offset::End)
        .unwrap();
    assignment
        .add_partition_offset("tail", 1, Offset::End)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        assert!(consumer.poll(Duration::from_millis(100)).is_none());
    }
    let producer = producer(&broker, "all");
    producer
        .send(
            FutureRecord::to("tail")
                .partition(1)
                .key("k")
                .payload("hello"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let acked = Instant::now();
    let mut got = None;
    while acked.elapsed() < Duration::from_secs(15) && got.is_none() {
        if let Some(result) = consumer.poll(Duration::from_millis(50)) {
            got = Some(result.unwrap().payload().unwrap().to_vec());
        }
    }
    let waited = acked.elapsed();
    assert_eq!(got.as_deref(), Some(&b"hello"[..]));
    assert!(
        waited < Duration::from_secs(10),
        "fetch was not woken by the append: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_after_acks_all_keeps_every_acknowledged_message_exactly_once() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, "durable", 4, &[]).await;
    let producer = producer(&broker, "all");
    let mut acked: HashSet<String> = HashSet::new();
    let mut sends = Vec::new();
    for index in 0..3000 {
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            let value = format!("durable-{index}");
            let record = FutureRecord::to("durable").key(&value).payload(&value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|_| value)
        }));
    }
    for send in sends {
        acked.insert(send.await.unwrap().expect("delivered"));
    }
    broker.kill9();
    drop(producer);
    broker.restart();
    let consumed = consume_all(&broker, "durable", 4, acked.len());
    let mut seen = HashSet::new();
    for messages in consumed.values() {
        for (_, _, value) in messages {
            let value = String::from_utf8(value.clone()).unwrap();
            assert!(seen.insert(value.clone()), "duplicate {value}");
        }
    }
    assert_eq!(seen, acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_loses_no_acknowledged_message() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, "midstream", 3, &[]).await;
    // Sends in flight at the crash can never be acknowledged (the broker comes back on another
    // port): let them fail in 3 s, not librdkafka's 30.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "3000")
        .create()
        .expect("producer");
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut sends = Vec::new();
    let mut index = 0;
    while Instant::now() < stop_at {
        let producer = producer.clone();
        let value = format!("mid-{index}");
        index += 1;
        sends.push(tokio::spawn(async move {
            let record = FutureRecord::to("midstream").key(&value).payload(&value);
            producer
                .send(record, Duration::from_secs(5))
                .await
                .map(|_| value)
                .ok()
        }));
        if index % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Crash while sends are still in flight.
    broker.kill9();
    let mut acked = HashSet::new();
    for send in sends {
        if let Some(value) = send.await.unwrap() {
            acked.insert(value);
        }
    }
    assert!(
        !acked.is_empty(),
        "some sends were acknowledged before the crash"
    );
    drop(producer);
    broker.restart();
    let consumed = consume_all(&broker, "midstream", 3, acked.len());
    let mut seen = HashSet::new();
    for messages in consumed.values() {
        let offsets: Vec<i64> = messages.iter().map(|(offset, _, _)| *offset).collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "gap or reorder"
        );
        for (_, _, value) in messages {
            assert!(
                seen.insert(String::from_utf8(value.clone()).unwrap()),
                "duplicate"
            );
        }
    }
    let missing: Vec<&String> = acked.difference(&seen).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_advances_log_start() {
    let broker = Broker::start(&["--set", "log.retention.check.interval.ms=100"]);
    create_topic(
        &broker,
        "short",
        1,
        &[("segment.bytes", "1048576"), ("retention.bytes", "1048576")],
    )
    .await;
    let producer = producer(&broker, "1");
    let payload = vec![b'x'; 10_000];
    let mut sends = Vec::new();
    for _ in 0..500 {
        let record = FutureRecord::to("short").key("k").payload(&payload);
        sends.push(producer.send(record, Duration::from_secs(30)));
    }
    for send in sends {
        send.await.expect("delivered");
    }
    let consumer = consumer(&broker, &[]);
    let advanced = wait_until(Duration::from_secs(20), || {
        let (low, _) = consumer
            .fetch_watermarks("short", 0, Duration::from_secs(5))
            .unwrap();
        low > 0
    });
    assert!(advanced, "retention did not advance the log start offset");
    let (low, high) = consumer
        .fetch_watermarks("short", 0, Duration::from_secs(5))
        .unwrap();
    assert_eq!(high, 500);
    // What remains is readable from the new log start.
    let consumed = consume_all(&broker, "short", 1, (high - low) as usize);
    assert_eq!(consumed[&0].first().map(|m| m.0), Some(low));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_produce_requests_keep_send_order_within_a_partition() {
    let broker = Broker::start(&[]);
    create_topic(&broker, "ordered", 1, &[]).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("batch.size", "2000")
        .set("max.in.flight.requests.per.connection", "1000000")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .create()
        .unwrap();
    let mut sends = Vec::new();
    for index in 0..5000u32 {
        let payload = format!("{index:08}-{}", "x".repeat((index % 7) as usize * 300));
        let record = FutureRecord::to("ordered")
            .partition(0)
            .key("k")
            .payload(&payload);
        sends.push(producer.send_result(record).expect("queued"));
    }
    for send in sends {
        send.await.unwrap().expect("delivered");
    }
    let consumed = consume_all(&broker, "ordered", 1, 5000);
    let order: Vec<u32> = consumed[&0]
        .iter()
        .map(|(_, _, value)| std::str::from_utf8(&value[..8]).unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        order,
        (0..5000).collect::<Vec<_>>(),
        "appends follow send order"
    );
}

/// SIGTERM while a producer is sending: every acknowledged message survives, the broker exits
/// 0 within the drain bound, and the next start finds the clean-shutdown marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_flushes_and_exits_zero() {
    let mut broker = Broker::start(&[]);
    create_topic(&broker, "graceful", 2, &[]).await;
    let producer = producer(&broker, "all");
    let mut acknowledged = 0usize;
    for index in 0..200 {
        let payload = format!("message-{index}");
        let record = FutureRecord::to("graceful").key(&payload).payload(&payload);
        if producer.send(record, Duration::from_secs(10)).await.is_ok() {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 200);
    // A send in flight while the signal arrives: it is answered or refused, never lost silently.
    let in_flight = producer.send_result(FutureRecord::to("graceful").key("late").payload("late"));
    let status = broker.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let late_acknowledged = match in_flight {
        Ok(delivery) => matches!(
            tokio::time::timeout(Duration::from_secs(5), delivery).await,
            Ok(Ok(Ok(_)))
        ),
        Err(_) => false,
    };
    drop(producer);
    assert!(broker.data_dir().join(".sluice_clean_shutdown").exists());

    broker.start_again();
    assert!(
        broker
            .startup_lines
            .iter()
            .any(|line| line.contains("last shutdown was clean")),
        "{:?}",
        broker.startup_lines
    );
    assert!(
        !broker.data_dir().join(".sluice_clean_shutdown").exists(),
        "marker taken"
    );
    let expected = acknowledged + usize::from(late_acknowledged);
    let consumed = consume_all(&broker, "graceful", 2, expected);
    let total: usize = consumed.values().map(Vec::len).sum();
    assert!(
        total >= expected,
        "{total} of {expected} acknowledged messages came back"
    );
    assert!(total <= acknowledged + 1, "no duplicates: {total}");

    // A crash (no marker) means full recovery next time.
    broker.kill9();
    broker.start_again();
    assert!(
        !broker
            .startup_lines
            .iter()
            .any(|line| line.contains("clean")),
        "{:?}",
        broker.startup_lines
    );
}

/// ListOffsets by timestamp answers the first *record* at or after it, also inside one batch and
/// inside compressed batches (Kafka's FileRecords.searchForTimestamp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_finds_records_inside_a_batch() {
    let broker = Broker::start(&[]);
    for codec in ["none", "lz4", "snappy"] {
        let topic = format!("in-batch-{codec}");
        create_topic(&broker, &topic, 1, &[]).await;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .set("linger.ms", "500")
            .set("compression.type", codec)
            .create()
            .unwrap();
        // Both are queued within the linger: one batch, base timestamp 1234.
        let first = producer
            .send_result(
                FutureRecord::to(&topic)
                    .key("k")
                    .payload("a")
                    .timestamp(1234),
            )
            .unwrap_or_else(|(error, _)| panic!("not queued: {error}"));
        let second = producer
            .send_result(
                FutureRecord::to(&topic)
                    .key("k")
                    .payload("b")
                    .timestamp(999_999_999_999),
            )
            .unwrap_or_else(|(error, _)| panic!("not queued: {error}"));
        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap().unwrap();
        assert_eq!((first.offset, second.offset), (0, 1), "{codec}");
        let consumer = consumer(&broker, &[]);
        for (wanted, expected) in [(1234, 0), (1235, 1), (999_999_999_999, 1)] {
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(&topic, 0, Offset::Offset(wanted))
                .unwrap();
            let found = consumer
                .offsets_for_times(query, Duration::from_secs(10))
                .unwrap();
            assert_eq!(
                found.find_partition(&topic, 0).unwrap().offset(),
                Offset::Offset(expected),
                "{codec}: lookup of {wanted}"
            );
        }
    }
}

/// DescribeConfigs reports where a value comes from as Kafka does: keys set by file, flag or
/// environment are STATIC_BROKER_CONFIG, the rest DEFAULT_CONFIG; a topic key without an
/// override follows its broker synonym.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_reports_static_and_default_sources() {
    let broker = Broker::start(&["--set", "log.retention.ms=3600000"]);
    create_topic(&broker, "sources", 1, &[("segment.ms", "60000")]).await;
    let admin = admin(&broker);
    let options = AdminOptions::new();
    let described = admin
        .describe_configs(
            &[
                ResourceSpecifier::Broker(0),
                ResourceSpecifier::Topic("sources"),
            ],
            &options,
        )
        .await
        .unwrap();
    let broker_configs = described[0].as_ref().unwrap();
    let source = |resource: &rdkafka::admin::ConfigResource, key: &str| {
        let entry = resource
            .get(key)
            .unwrap_or_else(|| panic!("{key} described"));
        format!("{:?}", entry.source)
    };
    assert_eq!(source(broker_configs, "log.retention.ms"), "StaticBroker");
    assert_eq!(
        source(broker_configs, "listeners"),
        "StaticBroker",
        "--listen"
    );
    assert_eq!(source(broker_configs, "num.partitions"), "Default");
    assert_eq!(source(broker_configs, "log.segment.bytes"), "Default");
    let topic_configs = described[1].as_ref().unwrap();
    assert_eq!(source(topic_configs, "segment.ms"), "DynamicTopic");
    assert_eq!(source(topic_configs, "retention.ms"), "StaticBroker");
    assert_eq!(source(topic_configs, "segment.bytes"), "Default");
}

/// AlterConfigs accepts every topic key Kafka clients set (validated as Kafka does, stored,
/// reported), `message.format.version` and `message.downconversion.enable` among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_configs_accepts_the_topic_keys_kafka_clients_set() {
    let broker = Broker::start(&[]);
    create_topic(
        &broker,
        "legacy",
        1,
        &[
            ("message.format.version", "2.8"),
            ("compression.type", "lz4"),
        ],
    )
    .await;
    let admin = admin(&broker);
    let options = AdminOptions::new();
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("legacy"))
                .set("message.format.version", "0.10.0")
                .set("message.downconversion.enable", "false")
                .set("min.insync.replicas", "1")
                .set("unclean.leader.election.enable", "true")
                .set("flush.messages", "1")
                .set("min.cleanable.dirty.ratio", "0.3")
                .set("retention.ms", "3600000")],
            &options,
        )
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("legacy")], &options)
        .await
        .unwrap();
    let resource = described[0].as_ref().unwrap();
    for (key, value) in [
        ("message.format.version", "0.10.0"),
        ("message.downconversion.enable", "false"),
        ("min.cleanable.dirty.ratio", "0.3"),
        ("retention.ms", "3600000"),
    ] {
        let entry = resource
            .get(key)
            .unwrap_or_else(|| panic!("{key} described"));
        assert_eq!(entry.value.as_deref(), Some(value), "{key}");
        assert_eq!(format!("{:?}", entry.source), "DynamicTopic", "{key}");
    }
    // AlterConfigs replaces the whole set: compression.type is back at its default.
    let compression = resource.get("compression.type").unwrap();
    assert_eq!(compression.value.as_deref(), Some("producer"));
    assert_eq!(format!("{:?}", compression.source), "Default");
    for (key, value) in [
        ("min.insync.replicas", "0"),
        ("message.format.version", "banana"),
        ("message.downconversion.enable", "maybe"),
        ("remote.storage.enable", "true"),
        ("no.such.config", "1"),
    ] {
        // librdkafka reports AlterConfigs failures through the resource's config entries, not
        // always as a resource error: what a user sees is that the value was not applied.
        let _ = admin
            .alter_configs(
                &[AlterConfig::new(ResourceSpecifier::Topic("legacy")).set(key, value)],
                &options,
            )
            .await
            .unwrap();
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic("legacy")], &options)
            .await
            .unwrap();
        let resource = described[0].as_ref().unwrap();
        let applied = resource
            .get(key)
            .and_then(|entry| entry.value.clone())
            .is_some_and(|current| current == value);
        assert!(!applied, "{key}={value} was applied");
    }
}
