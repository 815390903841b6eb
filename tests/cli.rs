//! The operator commands end to end: `sluice topic|group|cluster|produce|consume` run as
//! processes against a started broker, their JSON output read back, their exit codes checked
//! (0 done, 1 failed, 2 bad usage), and a real librdkafka group member seen by them.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{wait_until, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::Value;

/// Runs `sluice ARGS --brokers ADDRESS` with `input` on standard input (killed after a minute:
/// coreutils `timeout`, exit code 124, so a command that never ends fails the test).
fn sluice(address: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .args(["--brokers", address])
        .env_remove("SLUICE_BROKERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("sluice output")
}

/// Runs a command that must succeed; its standard output.
fn ok(address: &str, args: &[&str], input: &str) -> String {
    let output = sluice(address, args, input);
    assert!(
        output.status.success(),
        "sluice {args:?}: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Runs a command that must fail with `code`; its standard error.
fn fails(address: &str, args: &[&str], code: i32) -> String {
    let output = sluice(address, args, "");
    assert_eq!(
        output.status.code(),
        Some(code),
        "sluice {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).expect("utf-8")
}

fn json(address: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    serde_json::from_str(&ok(address, &args, "")).expect("JSON output")
}

fn partitions_sum(describe: &Value, field: &str) -> i64 {
    describe["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|partition| partition[field].as_i64().expect(field))
        .sum()
}

#[test]
fn topic_commands_produce_and_consume_round_trip() {
    let broker = Broker::start(&[]);
    let at = broker.address.as_str();
    let created = ok(
        at,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        "",
    );
    assert!(
        created.contains("orders") && created.contains("OK"),
        "{created}"
    );
    let again = fails(at, &["topic", "create", "orders"], 1);
    assert!(again.contains("TOPIC_ALREADY_EXISTS"), "{again}");

    let listed = json(at, &["topic", "list"]);
    let orders = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|topic| topic["name"] == "orders")
        .expect("orders listed");
    assert_eq!(orders["partitions"], 3);

    let lines: String = (0..30).map(|i| format!("key-{i}:value-{i}\n")).collect();
    let produced: Value = serde_json::from_str(&ok(
        at,
        &[
            "produce",
            "orders",
            "-k",
            ":",
            "-H",
            "origin=cli",
            "--format",
            "json",
        ],
        &lines,
    ))
    .expect("produce JSON");
    let records: u64 = produced
        .as_array()
        .expect("per partition")
        .iter()
        .map(|partition| partition["records"].as_u64().expect("records"))
        .sum();
    assert_eq!(records, 30);

    let consumed = ok(at, &["consume", "orders", "-e", "--format", "json"], "");
    let mut seen: Vec<(String, String)> = consumed
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("a JSON record per line");
            assert_eq!(record["headers"]["origin"], "cli");
            (
                record["key"].as_str().expect("key").to_string(),
                record["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut expected: Vec<(String, String)> = (0..30)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // The same key always lands in the same partition (Kafka's murmur2 partitioner).
    let one_key = ok(
        at,
        &["produce", "orders", "-k", ":", "--format", "json"],
        "key-7:again\n",
    );
    let again: Value = serde_json::from_str(&one_key).expect("JSON");
    let partition = again[0]["partition"].as_i64().expect("partition");
    let first = consumed
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .find(|record| record["key"] == "key-7")
        .expect("key-7");
    assert_eq!(first["partition"].as_i64(), Some(partition));

    let described = json(at, &["topic", "describe", "orders"]);
    assert_eq!(partitions_sum(&described, "high_watermark"), 31);
    assert_eq!(described["configs"]["retention.ms"]["value"], "3600000");
    assert_eq!(
        described["configs"]["retention.ms"]["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );
    ok(
        at,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=7200000",
        ],
        "",
    );
    let unknown_key = fails(
        at,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.msx=1",
        ],
        1,
    );
    assert!(unknown_key.contains("INVALID_CONFIG"), "{unknown_key}");
    ok(at, &["topic", "add-partitions", "orders", "-n", "1"], "");
    let described = json(at, &["topic", "describe", "orders"]);
    assert_eq!(described["configs"]["retention.ms"]["value"], "7200000");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(4));

    // trim: everything below the high watermark goes; consumers start there.
    let trimmed = json(at, &["topic", "trim", "orders", "-o", "end"]);
    assert!(trimmed
        .as_array()
        .expect("per partition")
        .iter()
        .all(|partition| partition["error_code"] == 0));
    let described = json(at, &["topic", "describe", "orders"]);
    assert_eq!(partitions_sum(&described, "log_start_offset"), 31);
    assert_eq!(ok(at, &["consume", "orders", "-e"], ""), "");
    // A position below the new start moves to it, with a note.
    let trimmed_partition = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|partition| partition["log_start_offset"].as_i64() > Some(0))
        .expect("a partition with records")["partition"]
        .to_string();
    let below = sluice(
        at,
        &[
            "consume",
            "orders",
            "-p",
            &trimmed_partition,
            "-o",
            "0",
            "-e",
        ],
        "",
    );
    assert!(below.status.success() && below.stdout.is_empty());
    let note = String::from_utf8_lossy(&below.stderr);
    assert!(note.contains("out of range"), "{note}");
    let beyond = fails(at, &["topic", "trim", "orders", "-p", "0", "-o", "1000"], 1);
    assert!(beyond.contains("OFFSET_OUT_OF_RANGE"), "{beyond}");

    ok(at, &["topic", "delete", "orders"], "");
    let listed = json(at, &["topic", "list"]);
    assert!(listed
        .as_array()
        .expect("list")
        .iter()
        .all(|topic| topic["name"] != "orders"));

    // Error paths: unknown topic, unreachable broker, bad flag.
    let unknown = fails(at, &["topic", "describe", "nosuch"], 1);
    assert!(unknown.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{unknown}");
    let unknown = fails(at, &["consume", "nosuch", "-e"], 1);
    assert!(unknown.contains("UNKNOWN_TOPIC_OR_PARTITION"), "{unknown}");
    let nowhere = fails("127.0.0.1:1", &["topic", "list"], 1);
    assert!(nowhere.contains("no broker reachable"), "{nowhere}");
    let bad_flag = fails(at, &["topic", "list", "--no-such-flag"], 2);
    assert!(bad_flag.contains("--no-such-flag"), "{bad_flag}");
}

#[test]
fn group_commands_show_lag_seek_and_respect_members() {
    let broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"]);
    let at = broker.address.as_str();
    ok(at, &["topic", "create", "events", "-p", "1"], "");
    let lines: String = (0..10).map(|i| format!("event-{i}\n")).collect();
    ok(at, &["produce", "events"], &lines);

    // Group mode reads from the group's offsets and commits what it printed.
    let first = ok(at, &["consume", "events", "-g", "readers", "-n", "4"], "");
    assert_eq!(first, "event-0\nevent-1\nevent-2\nevent-3\n");
    let described = json(at, &["group", "describe", "readers"]);
    assert_eq!(described["partitions"][0]["committed_offset"], 4);
    assert_eq!(described["partitions"][0]["lag"], 6);
    assert_eq!(described["total_lag"], 6);
    let next = ok(at, &["consume", "events", "-g", "readers", "-n", "1"], "");
    assert_eq!(next, "event-4\n");
    let table = ok(at, &["group", "describe", "readers"], "");
    assert!(table.contains("LAG") && table.contains("events"), "{table}");

    let listed = json(at, &["group", "list"]);
    assert!(listed
        .as_array()
        .expect("groups")
        .iter()
        .any(|group| group["group"] == "readers"));

    json(at, &["group", "seek", "readers", "--to", "start"]);
    assert_eq!(json(at, &["group", "describe", "readers"])["total_lag"], 10);
    json(at, &["group", "seek", "readers", "--to", "7"]);
    assert_eq!(
        json(at, &["group", "describe", "readers"])["partitions"][0]["committed_offset"],
        7
    );
    json(at, &["group", "seek", "readers", "--to", "end"]);
    assert_eq!(json(at, &["group", "describe", "readers"])["total_lag"], 0);
    let bad = fails(at, &["group", "seek", "readers", "--to", "sideways"], 1);
    assert!(bad.contains("--to"), "{bad}");

    // A real member (librdkafka): describe shows it; seek and consume refuse the group.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", at)
        .set("group.id", "live")
        .set("client.id", "live-member")
        .create()
        .expect("consumer");
    member.subscribe(&["events"]).expect("subscribe");
    let assigned = wait_until(Duration::from_secs(20), || {
        let _ = member.poll(Duration::from_millis(100));
        member.assignment().is_ok_and(|a| a.count() > 0)
    });
    assert!(assigned, "the member got no partitions");
    let described = json(at, &["group", "describe", "live"]);
    assert_eq!(described["state"], "Stable");
    assert_eq!(described["members"], 1);
    assert_eq!(described["partitions"][0]["client_id"], "live-member");
    let refused = fails(
        at,
        &[
            "group", "seek", "live", "--to", "start", "--topic", "events",
        ],
        1,
    );
    assert!(refused.contains("members"), "{refused}");
    let refused = fails(at, &["consume", "events", "-g", "live", "-e"], 1);
    assert!(refused.contains("members"), "{refused}");
    drop(member);

    let deleted = json(at, &["group", "delete", "readers"]);
    assert_eq!(deleted[0]["error_code"], 0);
    let again = fails(at, &["group", "delete", "readers"], 1);
    assert!(again.contains("GROUP_ID_NOT_FOUND"), "{again}");
}

#[test]
fn cluster_commands_report_brokers_and_health() {
    let broker = Broker::start(&[]);
    let at = broker.address.as_str();
    ok(at, &["topic", "create", "h", "-p", "2"], "");
    let info = json(at, &["cluster", "info"]);
    assert_eq!(info["brokers"].as_array().map(Vec::len), Some(1));
    assert_eq!(info["controller"], info["brokers"][0]["node_id"]);
    let health = json(at, &["cluster", "health"]);
    assert_eq!(health["healthy"], true);
    assert_eq!(health["nodes_down"].as_array().map(Vec::len), Some(0));
    let table = ok(at, &["cluster", "health"], "");
    assert!(
        table.contains("HEALTHY") && table.contains("true"),
        "{table}"
    );
}
