//! The metrics endpoint against real clients and real Prometheus tools: after a librdkafka
//! workload (produce, a group that commits part of the way), `/metrics` reports what was sent
//! (records in, high watermark, lag), `promtool check metrics` finds nothing to fix, and a real
//! Prometheus server scrapes it. Needs the Debian `prometheus` package (`.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{wait_until, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const RECORDS: i64 = 100;
const COMMITTED: i64 = 40;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// GET `path` from `address`: (status line, body).
fn get(address: &str, path: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_the_workload_and_prometheus_reads_them() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("metrics.listen={metrics}");
    let broker = Broker::start(&["--set", &listen]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("acks", "all")
        .create()
        .expect("producer");
    for index in 0..RECORDS {
        let value = format!("value-{index}");
        producer
            .send(
                FutureRecord::to("m").partition(0).key("k").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("delivered");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "mg")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("m", 0, Offset::Offset(COMMITTED))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");

    let (status, text) = get(&metrics, "/metrics").expect("scrape");
    assert!(status.contains("200"), "{status}");
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    };
    expect(
        r#"sluice_topic_records_in_total{topic="m"}"#,
        RECORDS as f64,
    );
    expect(
        r#"sluice_partition_high_watermark{topic="m",partition="0"}"#,
        RECORDS as f64,
    );
    expect(
        r#"sluice_consumer_group_lag{group="mg",topic="m",partition="0"}"#,
        (RECORDS - COMMITTED) as f64,
    );
    expect(r#"sluice_requests_total{api="Produce"}"#, RECORDS as f64);
    assert!(
        sample(&text, "sluice_produce_latency_seconds_count") == Some(RECORDS as f64),
        "{text}"
    );
    // One produce at a time: each is a small group with nothing syncing ahead of it, so each
    // is made durable by one O_DSYNC write (log.flush.dsync.bytes.max), not write + fdatasync.
    let dsync_writes = sample(&text, "sluice_dsync_write_latency_seconds_count").unwrap_or(0.0);
    let fdatasyncs = sample(&text, "sluice_fdatasync_latency_seconds_count").unwrap_or(0.0);
    assert!(dsync_writes >= RECORDS as f64, "{text}");
    assert_eq!(
        sample(&text, "sluice_group_commit_bytes_count"),
        Some(dsync_writes + fdatasyncs),
        "{text}"
    );
    // Every acknowledged produce went through each stage once (one partition, one shard).
    for stage in ["read", "queue", "append", "durable", "respond"] {
        assert_eq!(
            sample(
                &text,
                &format!(r#"sluice_produce_stage_latency_seconds_count{{stage="{stage}"}}"#)
            ),
            Some(RECORDS as f64),
            "stage {stage}: {text}"
        );
    }
    // Buckets are cumulative once, as Prometheus reads them: +Inf holds every observation.
    assert_eq!(
        sample(&text, r#"sluice_produce_latency_seconds_bucket{le="+Inf"}"#),
        Some(RECORDS as f64),
        "{text}"
    );
    let (ready, _) = get(&metrics, "/v1/status/ready").expect("ready");
    assert!(ready.contains("200"), "{ready}");
    let (missing, _) = get(&metrics, "/nope").expect("404");
    assert!(missing.contains("404"), "{missing}");

    // promtool's linter on the exposition.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus server scrapes it.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut server = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus (apt package prometheus) must be installed");
    let mut seen = String::new();
    let scraped = wait_until(Duration::from_secs(60), || {
        let query = "/api/v1/query?query=sluice_topic_records_in_total";
        seen = get(&web, query).map(|(_, body)| body).unwrap_or_default();
        seen.contains(r#""topic":"m""#) && seen.contains(&format!(r#""{RECORDS}"]"#))
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(scraped, "Prometheus never read the metric: {seen}");
}

/// The endpoint comes back on the same port right after `kill -9`, although the scrapes it
/// answered (it closes first) leave their connections in TIME_WAIT on that port.
#[test]
fn metrics_listen_again_on_the_same_port_after_kill_9() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = format!("metrics.listen={metrics}");
    let mut broker = Broker::start(&["--set", &listen]);
    let (status, _) = get(&metrics, "/metrics").expect("first scrape");
    assert!(status.contains("200"), "{status}");
    broker.restart();
    let back = wait_until(Duration::from_secs(20), || {
        get(&metrics, "/metrics").is_some_and(|(status, _)| status.contains("200"))
    });
    assert!(back, "no metrics endpoint after the restart");
}
