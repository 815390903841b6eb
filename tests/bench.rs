//! `sluice bench` end to end: the real binary drives the real broker at a low rate and its JSON
//! result must show every message consumed; driven against the sink (which stores nothing) it
//! must fail, so a broker that drops data cannot post a good number.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Broker;
use serde_json::Value;

fn bench(args: &[&str], json: &std::path::Path) -> (bool, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("bench")
        .args(args)
        .args(["--progress-ms", "0", "--json"])
        .arg(json)
        .output()
        .expect("run sluice bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(json)
        .unwrap_or_else(|error| panic!("no result ({error})\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(&text).expect("result is JSON");
    (output.status.success(), result)
}

#[test]
fn end_to_end_run_against_the_broker_consumes_every_message() {
    let broker = Broker::start(&[]);
    let temp = tempfile::tempdir().unwrap();
    let json = temp.path().join("e2e.json");
    let (success, result) = bench(
        &[
            "e2e",
            "--bootstrap",
            &broker.address,
            "--topic",
            "bench-e2e",
            "--create-topic",
            "--partitions",
            "3",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--keys",
            "round-robin",
            "--rate",
            "300",
            "--duration-s",
            "2",
            "--warmup-s",
            "0.5",
            "--message-bytes",
            "200",
        ],
        &json,
    );
    assert!(success, "{result:#}");
    assert_eq!(result["ok"], true);
    assert_eq!(result["mode"], "e2e");
    let verification = &result["verification"];
    let expected = verification["expected"].as_u64().unwrap();
    assert!(expected >= 500, "{verification}");
    assert_eq!(verification["consumed_unique"].as_u64().unwrap(), expected);
    for key in ["lost", "duplicated", "reordered", "misrouted"] {
        assert_eq!(verification[key], 0, "{key}: {verification}");
    }
    let produced = result["produce"]["throughput"]["messages_per_s"]
        .as_f64()
        .unwrap();
    assert!(
        (150.0..=450.0).contains(&produced),
        "target 300 msg/s, measured {produced}"
    );
    assert!(
        result["consume"]["throughput"]["mb_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for histogram in [
        &result["produce"]["ack_latency_us"],
        &result["consume"]["e2e_latency_us"],
    ] {
        assert!(histogram["count"].as_u64().unwrap() > 0, "{histogram}");
        let p50 = histogram["p50"].as_u64().unwrap();
        let p99 = histogram["p99"].as_u64().unwrap();
        assert!(0 < p50 && p50 <= p99 && p99 <= histogram["max"].as_u64().unwrap());
        assert!(histogram["curve"].as_array().unwrap().len() > 5);
    }
    assert_eq!(result["parameters"]["message_bytes"], 200);
    assert_eq!(result["broker"]["partitions"], 3);
    assert!(result["machine"]["nproc"].as_u64().unwrap() >= 1);
    // The same topic read back in consume mode: every stream is complete.
    let consume_json = temp.path().join("consume.json");
    let (success, result) = bench(
        &[
            "consume",
            "--bootstrap",
            &broker.address,
            "--topic",
            "bench-e2e",
            "--warmup-s",
            "0",
        ],
        &consume_json,
    );
    assert!(success, "{result:#}");
    assert_eq!(
        result["verification"]["consumed_unique"].as_u64(),
        Some(expected)
    );
    assert_eq!(result["verification"]["lost"], 0);
}

#[test]
fn a_broker_that_stores_nothing_fails_verification() {
    let mut sink = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "sink",
            "--listen",
            "127.0.0.1:0",
            "--partitions",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sink");
    let mut line = String::new();
    BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("sluice bench sink: listening on ")
        .unwrap_or_else(|| panic!("unexpected sink output {line:?}"))
        .to_string();
    let temp = tempfile::tempdir().unwrap();
    let json = temp.path().join("sink.json");
    let (success, result) = bench(
        &[
            "e2e",
            "--bootstrap",
            &address,
            "--rate",
            "200",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
            "--drain-timeout-s",
            "1",
        ],
        &json,
    );
    sink.kill().unwrap();
    sink.wait().unwrap();
    assert!(!success, "a lossy broker must fail the run: {result:#}");
    assert_eq!(result["ok"], false);
    assert!(result["verification"]["lost"].as_u64().unwrap() > 0);
    assert!(
        result["produce"]["throughput"]["messages_per_s"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn produce_against_the_in_process_sink() {
    let temp = tempfile::tempdir().unwrap();
    let json = temp.path().join("ceiling.json");
    let (success, result) = bench(
        &[
            "produce",
            "--sink",
            "--partitions",
            "4",
            "--keys",
            "random",
            "--messages",
            "20000",
            "--warmup-s",
            "0",
        ],
        &json,
    );
    assert!(success, "{result:#}");
    assert_eq!(result["broker"]["sink"], true);
    assert_eq!(result["produce"]["acked_messages"], 20000);
    assert!(result["verification"].is_null());
}
