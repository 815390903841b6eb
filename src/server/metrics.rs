//! The metrics endpoint: an HTTP listener on shard 0 at `metrics.listen` (default
//! 127.0.0.1:9644, Redpanda's admin port; empty turns it off) serving `/metrics` in
//! Prometheus' text format and `/v1/status/ready` (200 once this node knows its controller,
//! 503 before).
//!
//! A scrape asks every shard for its counters (`crate::metrics`, recorded without locks) and
//! its partitions' offsets and committed group offsets, merges them on shard 0 and encodes them
//! with `prometheus-client`. Lag is the high watermark minus the committed offset where this
//! node both coordinates the group and hosts the partition; elsewhere join
//! `sluice_consumer_group_committed_offset` with `sluice_partition_high_watermark` in PromQL.
//! The endpoint takes at most `METRICS_CONNECTIONS_MAX` connections at once, and a request head
//! must arrive within `METRICS_REQUEST_TIMEOUT`.
//! Under-replicated partitions are those this node leads with fewer in-sync replicas than
//! replicas; offline ones are replicas here whose log went offline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::futures::LocalFuture;
use crate::metrics::{Histogram, Snapshot};
use crate::shard::request::Request;
use crate::shard::Shard;

/// Longest an HTTP request head may be; a scrape's is a few hundred bytes.
const REQUEST_HEAD_BYTES_MAX: usize = 8192;
/// Scrapers served at once; more are closed at once (Prometheus scrapes one at a time).
pub const METRICS_CONNECTIONS_MAX: usize = 16;
/// Time for a request head to arrive, and for each response write.
pub const METRICS_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One hosted replica's offsets and state.
#[derive(Debug, Clone)]
pub struct PartitionGauges {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub leader: bool,
    pub under_replicated: bool,
    pub offline: bool,
}

/// Everything one shard contributes to a scrape.
#[derive(Debug, Clone)]
pub struct ShardScrape {
    pub counters: Snapshot,
    pub partitions: Vec<PartitionGauges>,
    /// (group, topic, partition, committed offset) of the groups this shard coordinates.
    pub committed: Vec<(String, String, i32, i64)>,
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub request_memory_bytes: u64,
}

/// Asks a shard for its part of a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Scrape;

impl Request for Scrape {
    type Reply = ShardScrape;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move { scrape_shard(&shard) })
    }
}

fn scrape_shard(shard: &Shard) -> ShardScrape {
    let placement = shard.placement();
    let partitions = shard
        .partitions
        .all()
        .iter()
        .map(|partition| {
            let tp = &partition.topic_partition;
            let leader = partition.leading_term().is_some();
            let replicas = placement
                .assignment(&tp.topic, tp.partition)
                .map_or(1, |assignment| assignment.replicas.len() as u32);
            let in_sync = partition
                .writer()
                .map_or(replicas, |writer| writer.in_sync());
            PartitionGauges {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                log_start_offset: partition.log_start_offset(),
                high_watermark: partition.high_watermark(),
                log_end_offset: partition.log_end_offset(),
                leader,
                under_replicated: leader && partition.is_replicated() && in_sync < replicas,
                offline: partition.is_offline(),
            }
        })
        .collect();
    let committed = crate::group::coordinator_of(shard).all_committed();
    let cache = shard.partitions.cache().stats();
    let budget = shard.config.queued_max_request_bytes;
    ShardScrape {
        counters: crate::metrics::snapshot(),
        partitions,
        committed,
        cache_bytes: cache.size_bytes,
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        request_memory_bytes: budget.saturating_sub(shard.request_memory.available()),
    }
}

/// Every shard's scrape, merged.
#[derive(Debug)]
struct Scraped {
    counters: Snapshot,
    partitions: Vec<PartitionGauges>,
    committed: Vec<(String, String, i32, i64)>,
    cache_bytes: u64,
    cache_hits: u64,
    cache_misses: u64,
    request_memory_bytes: u64,
}

async fn scrape(shard: &Rc<Shard>) -> Scraped {
    let mut merged: Option<Scraped> = None;
    for reply in shard.call_all(Scrape).await.into_iter().flatten() {
        match &mut merged {
            None => {
                merged = Some(Scraped {
                    counters: reply.counters,
                    partitions: reply.partitions,
                    committed: reply.committed,
                    cache_bytes: reply.cache_bytes,
                    cache_hits: reply.cache_hits,
                    cache_misses: reply.cache_misses,
                    request_memory_bytes: reply.request_memory_bytes,
                })
            }
            Some(all) => {
                all.counters.merge(&reply.counters);
                all.partitions.extend(reply.partitions);
                all.committed.extend(reply.committed);
                all.cache_bytes += reply.cache_bytes;
                all.cache_hits += reply.cache_hits;
                all.cache_misses += reply.cache_misses;
                all.request_memory_bytes += reply.request_memory_bytes;
            }
        }
    }
    let mut scraped = merged.unwrap_or_else(|| Scraped {
        counters: crate::metrics::snapshot(),
        partitions: Vec::new(),
        committed: Vec::new(),
        cache_bytes: 0,
        cache_hits: 0,
        cache_misses: 0,
        request_memory_bytes: 0,
    });
    scraped
        .partitions
        .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    scraped.committed.sort();
    scraped
}

/// `NotLeaderOrFollower` as Kafka writes it: `NOT_LEADER_OR_FOLLOWER`.
fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(kafka_protocol::ResponseError::Unknown(code)) => code.to_string(),
        Some(error) => {
            let camel = format!("{error:?}");
            let mut name = String::new();
            for (index, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && index > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

fn api_name(api: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(api)
        .map_or_else(|_| api.to_string(), |key| format!("{key:?}"))
}

/// Samples of one metric: label pairs and a value.
type Rows<V> = Vec<(Vec<(&'static str, String)>, V)>;

/// One metric family of counters or gauges.
fn family<V, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    rows: Rows<V>,
    metric: fn(V) -> M,
) -> Result<(), std::fmt::Error> {
    let mut descriptor = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in rows {
        metric(value).encode(descriptor.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = &self.counters;
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, rows: Rows<u64>| {
            family(
                encoder,
                name,
                help,
                MetricType::Counter,
                rows,
                ConstCounter::new,
            )
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, rows: Rows<i64>| {
            family(
                encoder,
                name,
                help,
                MetricType::Gauge,
                rows,
                ConstGauge::new,
            )
        };
        let histograms = |encoder: &mut DescriptorEncoder,
                          name: &str,
                          help: &str,
                          rows: Rows<&Histogram>|
         -> Result<(), std::fmt::Error> {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (labels, histogram) in rows {
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<Vec<(&'static str, String)>>(
                        histogram.sum,
                        histogram.count,
                        &histogram.buckets(),
                        None,
                    )?;
            }
            Ok(())
        };
        let histogram = |encoder: &mut DescriptorEncoder,
                         name: &str,
                         help: &str,
                         histogram: &Histogram|
         -> Result<(), std::fmt::Error> {
            histograms(encoder, name, help, vec![(Vec::new(), histogram)])
        };
        counter(
            &mut encoder,
            "sluice_requests",
            "Kafka requests answered, by API",
            counters
                .requests
                .iter()
                .map(|(api, count)| (vec![("api", api_name(*api))], *count))
                .collect(),
        )?;
        counter(
            &mut encoder,
            "sluice_request_errors",
            "Kafka errors answered (per partition for Produce and Fetch), by API and error",
            counters
                .errors
                .iter()
                .map(|((api, code), count)| {
                    (
                        vec![("api", api_name(*api)), ("error", error_name(*code))],
                        *count,
                    )
                })
                .collect(),
        )?;
        // Security events: (event, name, help, label names).
        const SECURITY: &[(&str, &str, &str, [&str; 2])] = &[
            ("tls_session", "sluice_tls_sessions", "TLS sessions established, by where records are encrypted (ktls: the kernel; rustls: user space)", ["mode", ""]),
            ("tls_handshake_failed", "sluice_tls_handshake_failures", "TLS handshakes that failed or timed out", ["", ""]),
            ("sasl", "sluice_sasl_authentications", "SASL authentications, by mechanism and outcome", ["mechanism", "outcome"]),
            ("denied", "sluice_authorization_denied", "operations refused by the authorizer, by operation and resource type", ["operation", "resource_type"]),
        ];
        for (event, name, help, label_names) in SECURITY {
            let rows: Rows<u64> = counters
                .security
                .iter()
                .filter(|((recorded, _, _), _)| recorded == event)
                .map(|((_, first, second), count)| {
                    let labels = label_names
                        .iter()
                        .zip([first, second])
                        .filter(|(label, _)| !label.is_empty())
                        .map(|(label, value)| (*label, value.to_string()))
                        .collect();
                    (labels, *count)
                })
                .collect();
            counter(&mut encoder, name, help, rows)?;
        }
        counter(
            &mut encoder,
            "sluice_connections_closed_malformed",
            "client connections closed for a malformed or unsupported request",
            vec![(Vec::new(), counters.connections_closed_malformed)],
        )?;
        histogram(
            &mut encoder,
            "sluice_produce_latency_seconds",
            "Produce requests, request read to response written",
            &counters.produce_latency,
        )?;
        histograms(
            &mut encoder,
            "sluice_produce_stage_latency_seconds",
            "Produce requests by stage: read (first byte seen to last byte read), queue (read \
             to append), append, durable (appended to \
             acknowledged: write, fdatasync, quorum), respond (acknowledged to response written)",
            crate::metrics::PRODUCE_STAGES
                .iter()
                .zip(&counters.produce_stages)
                .map(|(stage, histogram)| (vec![("stage", stage.to_string())], histogram))
                .collect(),
        )?;
        histogram(
            &mut encoder,
            "sluice_fetch_latency_seconds",
            "Fetch requests (long polls included), request read to response written",
            &counters.fetch_latency,
        )?;
        histogram(
            &mut encoder,
            "sluice_fdatasync_latency_seconds",
            "fdatasync of one group commit",
            &counters.fdatasync_latency,
        )?;
        histogram(
            &mut encoder,
            "sluice_segment_write_latency_seconds",
            "write of one group commit to its segment, fdatasynced after (preallocation included)",
            &counters.segment_write_latency,
        )?;
        histogram(
            &mut encoder,
            "sluice_dsync_write_latency_seconds",
            "O_DSYNC write of one small group commit, durable when it completes (no fdatasync)",
            &counters.dsync_write_latency,
        )?;
        histogram(
            &mut encoder,
            "sluice_group_commit_bytes",
            "bytes made durable by one group commit (an fdatasync or an O_DSYNC write)",
            &counters.group_commit_bytes,
        )?;
        let per_topic = |pick: fn(&crate::metrics::TopicTraffic) -> u64| {
            counters
                .topics
                .iter()
                .map(|(topic, traffic)| (vec![("topic", topic.to_string())], pick(traffic)))
                .collect::<Vec<_>>()
        };
        counter(
            &mut encoder,
            "sluice_topic_bytes_in",
            "record batch bytes appended by producers",
            per_topic(|t| t.bytes_in),
        )?;
        counter(
            &mut encoder,
            "sluice_topic_records_in",
            "records appended by producers",
            per_topic(|t| t.records_in),
        )?;
        counter(
            &mut encoder,
            "sluice_topic_bytes_out",
            "record batch bytes sent in Fetch responses",
            per_topic(|t| t.bytes_out),
        )?;
        counter(
            &mut encoder,
            "sluice_topic_records_out",
            "records sent in Fetch responses",
            per_topic(|t| t.records_out),
        )?;
        let per_partition = |pick: fn(&PartitionGauges) -> i64| {
            self.partitions
                .iter()
                .map(|p| {
                    (
                        vec![
                            ("topic", p.topic.clone()),
                            ("partition", p.partition.to_string()),
                        ],
                        pick(p),
                    )
                })
                .collect::<Vec<_>>()
        };
        gauge(
            &mut encoder,
            "sluice_partition_log_start_offset",
            "first offset of each replica hosted here",
            per_partition(|p| p.log_start_offset),
        )?;
        gauge(
            &mut encoder,
            "sluice_partition_high_watermark",
            "high watermark (committed end) of each replica hosted here",
            per_partition(|p| p.high_watermark),
        )?;
        gauge(
            &mut encoder,
            "sluice_partition_log_end_offset",
            "log end offset of each replica hosted here",
            per_partition(|p| p.log_end_offset),
        )?;
        let high_watermarks: BTreeMap<(&str, i32), i64> = self
            .partitions
            .iter()
            .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
            .collect();
        let mut lags = Vec::new();
        let mut committed = Vec::new();
        for (group, topic, partition, offset) in &self.committed {
            let labels = vec![
                ("group", group.clone()),
                ("topic", topic.clone()),
                ("partition", partition.to_string()),
            ];
            committed.push((labels.clone(), *offset));
            if let Some(high_watermark) = high_watermarks.get(&(topic.as_str(), *partition)) {
                lags.push((labels, (high_watermark - offset).max(0)));
            }
        }
        gauge(
            &mut encoder,
            "sluice_consumer_group_committed_offset",
            "committed offset of each group on each partition (groups coordinated here)",
            committed,
        )?;
        gauge(
            &mut encoder,
            "sluice_consumer_group_lag",
            "high watermark minus committed offset (partitions hosted here)",
            lags,
        )?;
        let count = |pick: fn(&PartitionGauges) -> bool| {
            self.partitions.iter().filter(|p| pick(p)).count() as i64
        };
        gauge(
            &mut encoder,
            "sluice_leader_partitions",
            "partitions this node leads",
            vec![(Vec::new(), count(|p| p.leader))],
        )?;
        gauge(
            &mut encoder,
            "sluice_under_replicated_partitions",
            "partitions led here with fewer in-sync replicas than replicas",
            vec![(Vec::new(), count(|p| p.under_replicated))],
        )?;
        gauge(
            &mut encoder,
            "sluice_offline_partitions",
            "replicas here whose log went offline (a storage error)",
            vec![(Vec::new(), count(|p| p.offline))],
        )?;
        counter(
            &mut encoder,
            "sluice_leadership_changes",
            "times a replica here started or stopped leading",
            vec![(Vec::new(), counters.leadership_changes)],
        )?;
        counter(
            &mut encoder,
            "sluice_storage_errors",
            "storage failures that took a partition log offline",
            vec![(Vec::new(), counters.storage_errors)],
        )?;
        gauge(
            &mut encoder,
            "sluice_connections",
            "client connections open",
            vec![(Vec::new(), counters.connections)],
        )?;
        gauge(
            &mut encoder,
            "sluice_request_memory_bytes",
            "request bytes held, read but not yet answered (queued.max.request.bytes per shard)",
            vec![(Vec::new(), self.request_memory_bytes as i64)],
        )?;
        gauge(
            &mut encoder,
            "sluice_cache_bytes",
            "bytes in the read caches",
            vec![(Vec::new(), self.cache_bytes as i64)],
        )?;
        counter(
            &mut encoder,
            "sluice_cache_hits",
            "reads answered from the read cache",
            vec![(Vec::new(), self.cache_hits)],
        )?;
        counter(
            &mut encoder,
            "sluice_cache_misses",
            "reads that went to the segments",
            vec![(Vec::new(), self.cache_misses)],
        )?;
        let lookups = self.cache_hits + self.cache_misses;
        let mut ratio = encoder.encode_descriptor(
            "sluice_cache_hit_ratio",
            "read-cache hits over lookups since start (0 before any lookup)",
            None,
            MetricType::Gauge,
        )?;
        let value = if lookups == 0 {
            0.0
        } else {
            self.cache_hits as f64 / lookups as f64
        };
        ConstGauge::new(value).encode(ratio.encode_family(&Vec::<(&str, String)>::new())?)
    }
}

/// The text of `/metrics` now.
pub async fn render(shard: &Rc<Shard>) -> String {
    let scraped = scrape(shard).await;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scraped));
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        log::error!("metrics: encoding failed: {error}");
    }
    text
}

/// Serves the endpoint on shard 0 until the process ends.
pub async fn serve(shard: Rc<Shard>, address: SocketAddr) {
    // Not shared (a second broker on the address fails to bind rather than splitting the
    // scrapes), and bindable while the last process's scrapes sit in TIME_WAIT.
    let sleep = |pause| glommio::timer::sleep(pause);
    let listener = match super::listener::bind_retrying(address, false, sleep).await {
        Ok(listener) => listener,
        Err(error) => {
            log::warn!("metrics: cannot listen on {address}: {error}; no metrics endpoint");
            return;
        }
    };
    log::info!("metrics: http://{address}/metrics");
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        match listener.accept().await {
            Ok(stream) if open.get() >= METRICS_CONNECTIONS_MAX => drop(stream),
            Ok(stream) => {
                let shard = shard.clone();
                let open = open.clone();
                open.set(open.get() + 1);
                glommio::spawn_local(async move {
                    if let Err(error) = answer(&shard, stream).await {
                        log::debug!("metrics: {error}");
                    }
                    open.set(open.get() - 1);
                })
                .detach();
            }
            Err(error) => {
                crate::warn_limited!("metrics: accept failed: {error}");
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP/1.1 exchange, then the connection closes.
async fn answer(shard: &Rc<Shard>, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_write_timeout(Some(METRICS_REQUEST_TIMEOUT))?;
    let deadline = std::time::Instant::now() + METRICS_REQUEST_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let text = render(shard).await;
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &text,
            )
            .await
        }
        "/v1/status/ready" => {
            if crate::server::handlers::controller_id(shard) >= 0 {
                respond(&mut stream, "200 OK", "text/plain", "ready\n").await
            } else {
                respond(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    "no controller yet\n",
                )
                .await
            }
        }
        _ => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "/metrics or /v1/status/ready\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}
