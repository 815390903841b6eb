//! Multi-node tests: three real `sluice` processes on 127.0.0.1, .2 and .3, each a controller
//! voter, driven by librdkafka (the `rdkafka` crate) and raw Metadata requests. What these check
//! is the controller quorum (topics here have one replica; `tests/replication.rs` covers
//! replicated partitions): one metadata log applied by every node, admin requests through any
//! node, controller failover after kill -9, and a restarted node catching up.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{admin, agreed_controller, create_topic, metadata, wait_until, Cluster, RawClient};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// DescribeQuorum v2 of `__cluster_metadata` partition 0, asked of `address`.
fn describe_quorum(address: &str) -> DescribeQuorumResponse {
    let mut client = RawClient::connect(address);
    let mut partition = describe_quorum_request::PartitionData::default();
    partition.partition_index = 0;
    let mut topic = describe_quorum_request::TopicData::default();
    topic.topic_name = TopicName(kafka_protocol::protocol::StrBytes::from_static_str(
        "__cluster_metadata",
    ));
    topic.partitions.push(partition);
    let mut request = DescribeQuorumRequest::default();
    request.topics.push(topic);
    let mut body = client.request(ApiKey::DescribeQuorum, 2, &request).unwrap();
    DescribeQuorumResponse::decode(&mut body, 2).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_metadata_log_and_serve_topics_created_through_any_node() {
    let cluster = Cluster::start(&[]);
    let controller = agreed_controller(&cluster, &[1, 2, 3]);
    // Through a node that is not the controller: the request is forwarded.
    let other = if controller == 1 { 2 } else { 1 };
    create_topic(&cluster.address(other), "spread", 6).await;
    let wide = TopicReplication::Fixed(4);
    // DescribeQuorum through a follower: answered by the leader, every voter caught up.
    let quorum = describe_quorum(&cluster.address(other));
    let state = &quorum.topics[0].partitions[0];
    assert_eq!(state.error_code, 0);
    assert_eq!(state.leader_id.0, controller);
    assert!(
        state.leader_epoch >= 1 && state.high_watermark >= 1,
        "{state:?}"
    );
    let mut voters: Vec<i32> = state
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    voters.sort();
    assert_eq!(voters, vec![1, 2, 3]);
    assert!(
        state
            .current_voters
            .iter()
            .all(|voter| voter.log_end_offset >= 1),
        "the leader knows every voter's log end: {state:?}"
    );
    assert_eq!(quorum.nodes.len(), 3, "v2 lists the voters' listeners");

    let refused = admin(&cluster.address(other))
        .create_topics(&[NewTopic::new("wide", 1, wide)], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(
        refused[0].is_err(),
        "replication factor 4 is refused: three brokers"
    );

    // Every node applies the same metadata: the same leaders everywhere, spread over all three.
    let mut leaders = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        let answers: Vec<_> = (1..=3)
            .filter_map(|node| metadata(&cluster.address(node)))
            .filter_map(|(_, _, topics)| topics.get("spread").cloned())
            .collect();
        if answers.len() == 3 && answers.iter().all(|a| *a == answers[0]) {
            leaders = answers[0].clone();
            true
        } else {
            false
        }
    }));
    let mut nodes = leaders.clone();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes,
        vec![1, 2, 3],
        "partitions spread over the nodes: {leaders:?}"
    );

    // librdkafka produces to each partition's node and a group consumes everything back.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for index in 0..60 {
        let key = format!("key-{}", index % 12);
        let payload = format!("value-{index}");
        producer
            .send(
                FutureRecord::to("spread").key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.address(3))
        .set("group.id", "cluster-readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["spread"]).expect("subscribe");
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut received = 0;
    let finished = wait_until(Duration::from_secs(60), || {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf8");
            let payload = std::str::from_utf8(message.payload().expect("payload")).expect("utf8");
            let index: usize = payload["value-".len()..].parse().expect("index");
            by_key.entry(key).or_default().push(index);
            received += 1;
        }
        received == 60
    });
    assert!(finished, "received {received} of 60");
    for (key, indexes) in &by_key {
        let mut sorted = indexes.clone();
        sorted.sort();
        assert_eq!(indexes, &sorted, "per-key order for {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_fails_over_and_a_restarted_node_catches_up() {
    let mut cluster = Cluster::start(&[]);
    let first = agreed_controller(&cluster, &[1, 2, 3]);
    create_topic(&cluster.address(first), "before", 3).await;

    cluster.node(first).kill9();
    let survivors: Vec<i32> = (1..=3).filter(|node| *node != first).collect();
    let mut second = -1;
    assert!(
        wait_until(Duration::from_secs(15), || {
            second = metadata(&cluster.address(survivors[0])).map_or(-1, |m| m.0);
            second >= 0 && second != first
        }),
        "no new controller after node {first} was killed"
    );
    // Through the survivor that is not the new controller, when there is one.
    let via = if survivors[0] == second {
        survivors[1]
    } else {
        survivors[0]
    };
    create_topic(&cluster.address(via), "after", 2).await;

    cluster.node(first).restart_same_address();
    let caught_up = wait_until(Duration::from_secs(20), || {
        metadata(&cluster.address(first)).is_some_and(|(controller, _, topics)| {
            controller == second && topics.contains_key("before") && topics.contains_key("after")
        })
    });
    assert!(
        caught_up,
        "node {first} did not catch up with the metadata log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_and_comes_back_when_it_heartbeats() {
    let mut cluster = Cluster::start(&[
        "--set",
        "broker.heartbeat.interval.ms=200",
        "--set",
        "broker.session.timeout.ms=1500",
    ]);
    let controller = agreed_controller(&cluster, &[1, 2, 3]);
    create_topic(&cluster.address(controller), "fencing", 3).await;
    let victim = if controller == 3 { 2 } else { 3 };
    cluster.node(victim).kill9();

    // The victim leaves Metadata, and its partitions are reported offline (leader -1).
    let fenced = wait_until(Duration::from_secs(15), || {
        metadata(&cluster.address(controller)).is_some_and(|(_, brokers, topics)| {
            !brokers.contains(&victim)
                && brokers.len() == 2
                && topics
                    .get("fencing")
                    .is_some_and(|leaders| leaders.contains(&-1) && !leaders.contains(&victim))
        })
    });
    assert!(fenced, "node {victim} was not fenced");
    // New partitions go to live brokers only.
    create_topic(&cluster.address(controller), "while-fenced", 4).await;
    let (_, _, topics) = metadata(&cluster.address(controller)).expect("metadata");
    assert!(!topics["while-fenced"].contains(&victim), "{topics:?}");

    cluster.node(victim).restart_same_address();
    let back = wait_until(Duration::from_secs(15), || {
        metadata(&cluster.address(controller)).is_some_and(|(_, brokers, topics)| {
            brokers == vec![1, 2, 3]
                && topics
                    .get("fencing")
                    .is_some_and(|leaders| !leaders.contains(&-1))
        })
    });
    assert!(back, "node {victim} was not unfenced after it came back");
}

/// Cut the controller away from the other two voters: the majority elects a new controller and
/// takes changes; the cut-off node steps down (check-quorum) and acknowledges none. Once the
/// links heal it follows the new controller and has exactly the majority's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_cut_off_from_the_majority_acknowledges_nothing() {
    let cluster = Cluster::start(&[]);
    let isolated = agreed_controller(&cluster, &[1, 2, 3]);
    let majority: Vec<i32> = (1..=3).filter(|node| *node != isolated).collect();
    let cut = common::CutLinks::cut(isolated, &majority, cluster.client_port + 1);

    let mut new_controller = -1;
    assert!(
        wait_until(Duration::from_secs(15), || {
            new_controller = metadata(&cluster.address(majority[0])).map_or(-1, |m| m.0);
            majority.contains(&new_controller)
        }),
        "the majority did not elect a new controller"
    );
    // librdkafka sends CreateTopics to the controller its last Metadata named, which can still
    // be the cut-off node for a moment (NOT_CONTROLLER): ask again until the majority's takes it.
    let mut created = Err(String::new());
    for _ in 0..20 {
        created = admin(&cluster.address(majority[1]))
            .create_topics(
                &[NewTopic::new(
                    "majority-side",
                    1,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await
            .map_err(|error| error.to_string())
            .and_then(|results| results[0].clone().map_err(|(_, code)| format!("{code:?}")));
        if created.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(created, Ok("majority-side".to_string()));

    // The isolated node refuses, whether it still believes it leads or knows it does not. The
    // request goes to that node itself (a raw client: librdkafka's admin client would follow
    // the node's Metadata to whichever controller it names).
    let mut isolated_client = RawClient::connect(&cluster.address(isolated));
    let mut topic = create_topics_request::CreatableTopic::default();
    topic.name = TopicName(kafka_protocol::protocol::StrBytes::from_static_str(
        "minority-side",
    ));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 20_000;
    let body = isolated_client
        .request(ApiKey::CreateTopics, 5, &request)
        .expect("the isolated node answers");
    let response = CreateTopicsResponse::decode(&mut body.clone(), 5).expect("decodes");
    assert_ne!(
        response.topics[0].error_code, 0,
        "the minority acknowledged {response:?}"
    );

    drop(cut);
    let healed = wait_until(Duration::from_secs(20), || {
        metadata(&cluster.address(isolated)).is_some_and(|(controller, _, topics)| {
            controller == new_controller
                && topics.contains_key("majority-side")
                && !topics.contains_key("minority-side")
        })
    });
    assert!(
        healed,
        "node {isolated} did not rejoin the majority's history"
    );
    for node in 1..=3 {
        let (_, _, topics) = metadata(&cluster.address(node)).expect("metadata");
        assert!(
            !topics.contains_key("minority-side"),
            "node {node}: {topics:?}"
        );
    }
}

/// SIGTERM on the controller's node hands leadership over before it exits: with a 5 s election
/// timeout, the others could not elect anyone by themselves in the 3 s this waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_controller_leadership_over_before_exit() {
    let mut cluster = Cluster::start(&["--set", "controller.quorum.election.timeout.ms=5000"]);
    let first = agreed_controller(&cluster, &[1, 2, 3]);
    let survivor = if first == 1 { 2 } else { 1 };
    let status = cluster.node(first).terminate(Duration::from_secs(20));
    assert!(status.success(), "clean exit: {status:?}");
    let mut next = -1;
    let moved = wait_until(Duration::from_secs(3), || {
        next = metadata(&cluster.address(survivor)).map_or(-1, |m| m.0);
        next >= 0 && next != first
    });
    assert!(
        moved,
        "no controller within 3 s of node {first}'s exit (saw {next})"
    );
    create_topic(&cluster.address(survivor), "after-handover", 1).await;
}

/// A node that was down while the others snapshotted and compacted their logs gets a snapshot
/// from the leader (the entries it misses are gone) and then follows the log again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_compacted_log_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(&[
        "--set",
        "metadata.log.max.record.bytes.between.snapshots=1024",
    ]);
    let controller = agreed_controller(&cluster, &[1, 2, 3]);
    let behind = if controller == 3 { 2 } else { 3 };
    cluster.node(behind).kill9();
    for index in 0..12 {
        create_topic(
            &cluster.address(controller),
            &format!("while-down-{index}"),
            1,
        )
        .await;
    }
    cluster.node(behind).restart_same_address();
    let caught_up = wait_until(Duration::from_secs(20), || {
        metadata(&cluster.address(behind)).is_some_and(|(_, _, topics)| {
            (0..12).all(|index| topics.contains_key(&format!("while-down-{index}")))
        })
    });
    assert!(caught_up, "node {behind} did not catch up");
    // And it keeps following the log after the snapshot.
    create_topic(&cluster.address(controller), "after-snapshot", 1).await;
    assert!(wait_until(Duration::from_secs(10), || {
        metadata(&cluster.address(behind))
            .is_some_and(|(_, _, topics)| topics.contains_key("after-snapshot"))
    }));
}

/// A data directory that holds another quorum's history (here a one-node cluster's) is refused
/// as a voter of a larger quorum rather than joined to it, where its log would contradict the
/// others'.
#[test]
fn a_data_directory_with_another_history_is_refused_as_a_voter() {
    let mut single = common::Broker::start(&[]);
    let mut client = RawClient::connect(&single.address);
    let mut request = CreateTopicsRequest::default();
    let mut topic = create_topics_request::CreatableTopic::default();
    topic.name = TopicName(kafka_protocol::protocol::StrBytes::from_static_str("mine"));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    request.topics.push(topic);
    let mut body = client.request(ApiKey::CreateTopics, 7, &request).unwrap();
    let created = CreateTopicsResponse::decode(&mut body, 7).unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    single.kill9();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--node-id", "0", "--cores", "1", "--data-dir"])
        .arg(single.data_dir())
        .args([
            "--set",
            "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:29999",
            "--set",
            "controller.quorum.voters=0@127.0.0.1:29999,1@127.0.0.2:29999,2@127.0.0.3:29999",
        ])
        .output()
        .expect("run sluice");
    assert!(
        !output.status.success(),
        "a foreign history must be refused"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("written by a quorum of voters [0]")
            && stderr.contains("controller.quorum.voters now names [0, 1, 2]"),
        "clear error expected, got: {stderr}"
    );
}

/// A node not listed in `controller.quorum.voters` joins as a broker only: it registers, follows
/// the metadata log as a Raft learner (an observer in DescribeQuorum), gets partitions and
/// serves them, and never votes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_a_voter_joins_as_a_broker() {
    let cluster = Cluster::start(&[]);
    let controller = agreed_controller(&cluster, &[1, 2, 3]);
    let port = cluster.client_port;
    let voters = (1..=3)
        .map(|node| format!("{node}@127.0.0.{node}:{}", port + 1))
        .collect::<Vec<_>>()
        .join(",");
    let listeners = format!(
        "listeners=PLAINTEXT://127.0.0.4:{port},CONTROLLER://127.0.0.4:{}",
        port + 1
    );
    let voters_arg = format!("controller.quorum.voters={voters}");
    let _broker = common::Broker::start_at(
        &[
            "--node-id",
            "4",
            "--cores",
            "1",
            "--set",
            &listeners,
            "--set",
            &voters_arg,
        ],
        &format!("127.0.0.4:{port}"),
    );
    let joined = wait_until(Duration::from_secs(20), || {
        metadata(&cluster.address(controller))
            .is_some_and(|(_, brokers, _)| brokers == vec![1, 2, 3, 4])
    });
    assert!(joined, "node 4 did not register");
    create_topic(&cluster.address(controller), "with-four", 8).await;
    let fourth = format!("127.0.0.4:{port}");
    let follows = wait_until(Duration::from_secs(10), || {
        metadata(&fourth).is_some_and(|(id, brokers, topics)| {
            id == controller
                && brokers == vec![1, 2, 3, 4]
                && topics
                    .get("with-four")
                    .is_some_and(|leaders| leaders.contains(&4))
        })
    });
    assert!(
        follows,
        "node 4 does not follow the metadata log or hosts no partition"
    );

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", fourth.as_str())
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for index in 0..40 {
        let value = format!("four-{index}");
        producer
            .send(
                FutureRecord::to("with-four").key(&value).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.address(1))
        .set("group.id", "four-readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["with-four"]).expect("subscribe");
    let mut received = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                received += 1;
            }
            received == 40
        }),
        "received {received} of 40"
    );

    // An observer of the quorum, not a voter.
    let quorum = describe_quorum(&cluster.address(controller));
    let state = &quorum.topics[0].partitions[0];
    let voters: Vec<i32> = state
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    let observers: Vec<i32> = state.observers.iter().map(|v| v.replica_id.0).collect();
    assert_eq!((voters.len(), observers), (3, vec![4]), "{state:?}");
}
