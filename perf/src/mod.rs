//! `sluice bench`: a load generator for any Kafka-protocol broker (Sluice, Apache Kafka, Tansu,
//! Redpanda). Its own small blocking client on `kafka-protocol` structs; plain std threads (the
//! generator is not a broker shard and must not depend on the broker's runtime).
//!
//! - `produce`: producers only; ack latency and throughput.
//! - `consume`: reads a topic (e.g. filled by an earlier produce run) and checks each stream.
//! - `e2e`: producers and consumers together; ack and end-to-end latency, and verification that
//!   every acknowledged message was consumed exactly once and in order per partition.
//! - `sink`: a trivial broker that stores nothing, to measure the generator's own ceiling.
//! - `plot`: PNG charts from JSON results.
//!
//! The source lives in `perf/src/` (beside the scripts and results in `perf/`) and is compiled
//! into the crate as `sluice::bench`, so the one `sluice` binary carries it.

pub mod client;
pub mod consumer;
pub mod options;
pub mod partitioner;
pub mod payload;
pub mod plot;
pub mod producer;
pub mod records;
pub mod report;
pub mod sink;
pub mod verify;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use client::{ClientError, Connection, TopicLayout, Versions};
use consumer::{run_consumer, ConsumerResult, ConsumerSetup};
use options::{BenchCommand, BenchOptions, Mode, StartFrom};
use producer::{run_producer, ProducerResult, ProducerSetup, Schedule, ScheduleEnd};
use report::{latency_json, latency_line, Clock, LiveStats, Throughput};
use verify::{StreamKey, VerificationReport};

/// Time producers and consumers get to connect before the schedule starts.
const START_DELAY: Duration = Duration::from_millis(300);
/// How long a created topic may take to get leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Entry point for `sluice bench MODE [flags]`.
pub fn main(command: BenchCommand) -> ExitCode {
    let (mode, flags) = match command {
        BenchCommand::Plot { inputs, out } => return plot::main(&inputs, &out),
        BenchCommand::Sink { listen, partitions } => return sink_main(&listen, partitions),
        BenchCommand::Produce(flags) => (Mode::Produce, flags),
        BenchCommand::Consume(flags) => (Mode::Consume, flags),
        BenchCommand::EndToEnd(flags) => (Mode::EndToEnd, flags),
    };
    match BenchOptions::from_flags(mode, flags) {
        Ok(options) => run(options),
        Err(message) => {
            eprintln!("sluice bench {}: {message}", mode.name());
            ExitCode::from(2)
        }
    }
}

fn sink_main(listen: &str, partitions: i32) -> ExitCode {
    match sink::start(listen, partitions) {
        Ok(address) => {
            println!("sluice bench sink: listening on {address}");
            loop {
                std::thread::park();
            }
        }
        Err(error) => {
            eprintln!("sluice bench sink: cannot listen on {listen}: {error}");
            ExitCode::from(1)
        }
    }
}

/// Everything a finished run measured.
struct Outcome {
    producers: Option<ProducerResult>,
    consumers: Option<ConsumerResult>,
    verification: Option<VerificationReport>,
    window_start_ns: u64,
    errors: Vec<String>,
}

fn run(options: BenchOptions) -> ExitCode {
    let mut options = options;
    let started_unix_ms = Clock::new().now_ns() / 1_000_000;
    if options.sink {
        match sink::start("127.0.0.1:0", options.partitions) {
            Ok(address) => options.bootstrap = address,
            Err(error) => {
                eprintln!("sluice bench: cannot start the sink: {error}");
                return ExitCode::from(1);
            }
        }
    }
    let options = Arc::new(options);
    let (layout, versions) = match prepare_topic(&options) {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!("sluice bench: {error}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "sluice bench {}: {} partitions of {} at {} (Produce v{}, Fetch v{}), {} producers, {} consumers, {}-byte messages, acks {}, rate {}",
        options.mode.name(),
        layout.partitions(),
        options.topic,
        options.bootstrap,
        versions.produce,
        versions.fetch,
        if options.mode.produces() { options.producers } else { 0 },
        if options.mode.consumes() { options.consumers } else { 0 },
        options.message_bytes,
        options.acks,
        options.rate_per_s.map_or("unthrottled".into(), |rate| format!("{rate} msg/s")),
    );
    let outcome = match execute(&options, &layout) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("sluice bench: {error}");
            return ExitCode::from(1);
        }
    };
    let result = result_json(&options, &layout, &versions, &outcome, started_unix_ms);
    print_summary(&outcome, &result);
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&result).unwrap_or_default();
        if let Err(error) = std::fs::write(path, text + "\n") {
            eprintln!("sluice bench: cannot write {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    if result["ok"] == json!(true) {
        ExitCode::SUCCESS
    } else {
        eprintln!("sluice bench: FAILED (see errors and verification above)");
        ExitCode::from(1)
    }
}

fn prepare_topic(options: &BenchOptions) -> Result<(TopicLayout, Versions), ClientError> {
    let mut connection = Connection::connect(&options.bootstrap, &options.client_id)?;
    let versions = connection.negotiate()?;
    if options.create_topic {
        client::create_topic(
            &mut connection,
            &versions,
            &options.topic,
            options.partitions,
            options.replication_factor,
            &options.topic_configs,
        )?;
    }
    let layout = client::wait_for_topic(
        &mut connection,
        &versions,
        &options.topic,
        TOPIC_READY_TIMEOUT,
    )?;
    Ok((layout, versions))
}

/// Offsets of every partition, asked of each leader.
fn offsets_at(
    options: &BenchOptions,
    layout: &TopicLayout,
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let partitions: Vec<i32> = layout.leaders.keys().copied().collect();
    let mut offsets = BTreeMap::new();
    for (address, led) in client::by_leader(&layout.leaders, &partitions) {
        let mut connection = Connection::connect(&address, &options.client_id)?;
        let versions = connection.negotiate()?;
        offsets.extend(client::list_offsets(
            &mut connection,
            &versions,
            &options.topic,
            &led,
            timestamp,
        )?);
    }
    Ok(offsets)
}

fn execute(options: &Arc<BenchOptions>, layout: &TopicLayout) -> Result<Outcome, ClientError> {
    let clock = Clock::new();
    let stats = Arc::new(LiveStats::default());
    let seed = options.seed.unwrap_or_else(|| clock.now_ns());
    let run_id = partitioner::SplitMix64::new(seed).next_u64();
    let start_ns = clock.now_ns() + START_DELAY.as_nanos() as u64;
    let warmup_end_ns = start_ns + (options.warmup_s * 1e9) as u64;
    let deadline_ns = warmup_end_ns + (options.duration_s * 1e9) as u64;
    let consumer_stop = Arc::new(AtomicBool::new(false));
    let consumers = if options.mode.consumes() {
        let (start, end) = match (options.mode, options.from) {
            (Mode::EndToEnd, _) | (_, StartFrom::Latest) => {
                (offsets_at(options, layout, client::LATEST_TIMESTAMP)?, None)
            }
            (_, StartFrom::Earliest) => (
                offsets_at(options, layout, client::EARLIEST_TIMESTAMP)?,
                Some(offsets_at(options, layout, client::LATEST_TIMESTAMP)?),
            ),
        };
        let deadline = (options.mode == Mode::Consume && end.is_none()).then_some(deadline_ns);
        spawn_consumers(
            options,
            layout,
            ConsumerPlan {
                start,
                end,
                deadline,
                run_id: (options.mode == Mode::EndToEnd).then_some(run_id),
                clock,
                start_ns,
                warmup_end_ns,
                stats: stats.clone(),
                stop: consumer_stop.clone(),
            },
        )
    } else {
        Vec::new()
    };
    let producers = if options.mode.produces() {
        let end = match options.messages {
            Some(total) => ScheduleEnd::Messages { count: total },
            None => ScheduleEnd::Deadline {
                end_ns: deadline_ns,
            },
        };
        spawn_producers(
            options,
            layout,
            run_id,
            seed,
            clock,
            stats.clone(),
            Schedule {
                start_ns,
                warmup_end_ns,
                interval_ns: options
                    .rate_per_s
                    .map(|rate| 1e9 * f64::from(options.producers) / rate),
                end,
            },
        )
    } else {
        Vec::new()
    };
    let progress_stop = Arc::new(AtomicBool::new(false));
    let progress = (options.progress_ms > 0).then(|| {
        report::spawn_progress(
            stats.clone(),
            progress_stop.clone(),
            Duration::from_millis(options.progress_ms),
            clock,
            start_ns,
        )
    });
    let mut errors = Vec::new();
    let producer_result = join_producers(producers, &mut errors);
    if let Some(result) = &producer_result {
        wait_for_consumers(options, &stats, result.acked_messages, &consumer_stop);
    }
    let consumer_result = join_consumers(consumers, run_id, options, &mut errors);
    progress_stop.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        let _ = progress.join();
    }
    let verification = consumer_result.as_ref().map(|consumed| {
        let acked: Option<&BTreeMap<StreamKey, u64>> =
            producer_result.as_ref().map(|produced| &produced.acked);
        consumed.verifier.report(acked)
    });
    Ok(Outcome {
        producers: producer_result,
        consumers: consumer_result,
        verification,
        window_start_ns: warmup_end_ns,
        errors,
    })
}

struct ConsumerPlan {
    start: BTreeMap<i32, i64>,
    end: Option<BTreeMap<i32, i64>>,
    deadline: Option<u64>,
    run_id: Option<u64>,
    clock: Clock,
    start_ns: u64,
    warmup_end_ns: u64,
    stats: Arc<LiveStats>,
    stop: Arc<AtomicBool>,
}

/// Consumer `c` reads partitions `p` with `p % consumers == c`, one thread per leader.
fn spawn_consumers(
    options: &Arc<BenchOptions>,
    layout: &TopicLayout,
    plan: ConsumerPlan,
) -> Vec<std::thread::JoinHandle<ConsumerResult>> {
    let mut handles = Vec::new();
    for consumer_id in 0..options.consumers {
        let assigned: Vec<i32> = layout
            .leaders
            .keys()
            .copied()
            .filter(|p| *p as u32 % options.consumers == consumer_id)
            .collect();
        for (address, partitions) in client::by_leader(&layout.leaders, &assigned) {
            let setup = ConsumerSetup {
                consumer_id,
                address,
                start_offsets: partitions.iter().map(|p| (*p, plan.start[p])).collect(),
                end_offsets: plan
                    .end
                    .as_ref()
                    .map(|end| partitions.iter().map(|p| (*p, end[p])).collect()),
                run_id: plan.run_id,
                options: options.clone(),
                clock: plan.clock,
                start_ns: plan.start_ns,
                warmup_end_ns: plan.warmup_end_ns,
                deadline_ns: plan.deadline,
                stats: plan.stats.clone(),
                stop: plan.stop.clone(),
            };
            handles.push(std::thread::spawn(move || run_consumer(setup)));
        }
    }
    handles
}

fn spawn_producers(
    options: &Arc<BenchOptions>,
    layout: &TopicLayout,
    run_id: u64,
    seed: u64,
    clock: Clock,
    stats: Arc<LiveStats>,
    schedule: Schedule,
) -> Vec<std::thread::JoinHandle<ProducerResult>> {
    (0..options.producers)
        .map(|producer_id| {
            let mut schedule = schedule;
            if let ScheduleEnd::Messages { count } = schedule.end {
                // Spread the total: the first `count % producers` producers send one more.
                let share = count / u64::from(options.producers)
                    + u64::from(u64::from(producer_id) < count % u64::from(options.producers));
                schedule.end = ScheduleEnd::Messages { count: share };
            }
            let setup = ProducerSetup {
                producer_id,
                run_id,
                seed,
                leaders: layout.leaders.clone(),
                options: options.clone(),
                clock,
                schedule,
                stats: stats.clone(),
            };
            std::thread::Builder::new()
                .name(format!("bench-producer-{producer_id}"))
                .spawn(move || run_producer(setup))
                .expect("spawn a producer thread")
        })
        .collect()
}

fn join_producers(
    handles: Vec<std::thread::JoinHandle<ProducerResult>>,
    errors: &mut Vec<String>,
) -> Option<ProducerResult> {
    let mut merged: Option<ProducerResult> = None;
    for handle in handles {
        match handle.join() {
            Ok(result) => match &mut merged {
                Some(merged) => merged.merge(result),
                None => merged = Some(result),
            },
            Err(_) => errors.push("a producer thread panicked".into()),
        }
    }
    merged
}

/// e2e: waits until consumers saw as many messages as were acknowledged, or made no progress
/// for `--drain-timeout-s`, then tells them to stop.
fn wait_for_consumers(options: &BenchOptions, stats: &LiveStats, acked: u64, stop: &AtomicBool) {
    if options.mode != Mode::EndToEnd {
        return;
    }
    let drain_timeout = Duration::from_secs_f64(options.drain_timeout_s);
    let mut last_seen = stats.consumed_messages.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while !stats.has_failed() {
        let seen = stats.consumed_messages.load(Ordering::Relaxed);
        if seen >= acked {
            break;
        }
        if seen != last_seen {
            last_seen = seen;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= drain_timeout {
            eprintln!("sluice bench: consumers saw {seen} of {acked} acknowledged messages; no progress for {drain_timeout:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
}

fn join_consumers(
    handles: Vec<std::thread::JoinHandle<ConsumerResult>>,
    run_id: u64,
    options: &BenchOptions,
    errors: &mut Vec<String>,
) -> Option<ConsumerResult> {
    if !options.mode.consumes() {
        return None;
    }
    let mut merged = ConsumerResult::empty((options.mode == Mode::EndToEnd).then_some(run_id));
    for handle in handles {
        match handle.join() {
            Ok(result) => merged.merge(result),
            Err(_) => errors.push("a consumer thread panicked".into()),
        }
    }
    Some(merged)
}

fn result_json(
    options: &BenchOptions,
    layout: &TopicLayout,
    versions: &Versions,
    outcome: &Outcome,
    started_unix_ms: u64,
) -> Value {
    let mut errors = outcome.errors.clone();
    let produce = outcome.producers.as_ref().map(|produced| {
        errors.extend(produced.errors.iter().cloned());
        let throughput = Throughput {
            messages: produced.window_messages,
            bytes: produced.window_bytes,
            seconds: produced.last_ack_ns.saturating_sub(outcome.window_start_ns) as f64 / 1e9,
        };
        json!({
            "throughput": throughput.to_json(),
            "acked_messages": produced.acked_messages,
            "error_messages": produced.error_count,
            "ack_latency_us": if options.acks == 0 { Value::Null } else { latency_json(&produced.ack_latency) },
        })
    });
    let consume = outcome.consumers.as_ref().map(|consumed| {
        errors.extend(consumed.errors.iter().cloned());
        let throughput = Throughput {
            messages: consumed.window_messages,
            bytes: consumed.window_bytes,
            seconds: consumed.last_consume_ns.saturating_sub(outcome.window_start_ns) as f64 / 1e9,
        };
        json!({
            "throughput": throughput.to_json(),
            "consumed_messages": consumed.consumed_messages,
            "e2e_latency_us": if options.mode == Mode::EndToEnd { latency_json(&consumed.e2e_latency) } else { Value::Null },
        })
    });
    let produce_errors = outcome
        .producers
        .as_ref()
        .map_or(0, |produced| produced.error_count);
    let verified = outcome
        .verification
        .as_ref()
        .is_none_or(VerificationReport::ok);
    let ok = errors.is_empty() && produce_errors == 0 && verified;
    let label = options.label.clone().unwrap_or_else(|| {
        if options.sink {
            format!("{} sink", options.mode.name())
        } else {
            format!("{} {}", options.mode.name(), options.bootstrap)
        }
    });
    json!({
        "tool": "sluice bench",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": options.mode.name(),
        "label": label,
        "ok": ok,
        "started_unix_ms": started_unix_ms,
        "git_commit": report::git_commit(),
        "machine": report::machine_json(),
        "parameters": parameters_json(options),
        "broker": {
            "bootstrap": options.bootstrap,
            "sink": options.sink,
            "partitions": layout.partitions(),
            "versions": { "produce": versions.produce, "fetch": versions.fetch, "metadata": versions.metadata, "list_offsets": versions.list_offsets },
        },
        "produce": produce,
        "consume": consume,
        "verification": outcome.verification.as_ref().map(VerificationReport::to_json),
        "errors": errors,
    })
}

fn parameters_json(options: &BenchOptions) -> Value {
    json!({
        "topic": options.topic,
        "create_topic": options.create_topic,
        "partitions": options.partitions,
        "replication_factor": options.replication_factor,
        "topic_configs": options.topic_configs.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>(),
        "message_bytes": options.message_bytes,
        "keys": options.keys.name(),
        "key_space": options.key_space,
        "acks": options.acks,
        "batch_bytes": options.batch_bytes,
        "linger_ms": options.linger_ms,
        "max_in_flight": options.max_in_flight,
        "producers": options.producers,
        "consumers": options.consumers,
        "rate_per_s": options.rate_per_s,
        "duration_s": options.duration_s,
        "messages": options.messages,
        "warmup_s": options.warmup_s,
        "fetch_max_wait_ms": options.fetch_max_wait_ms,
        "fetch_partition_max_bytes": options.fetch_partition_max_bytes,
        "seed": options.seed,
    })
}

fn print_summary(outcome: &Outcome, result: &Value) {
    let rate = |section: &str| {
        let throughput = &result[section]["throughput"];
        format!(
            "{:.0} msg/s, {:.2} MB/s ({} messages in {:.2} s after warm-up)",
            throughput["messages_per_s"].as_f64().unwrap_or(0.0),
            throughput["mb_per_s"].as_f64().unwrap_or(0.0),
            throughput["messages"],
            throughput["seconds"].as_f64().unwrap_or(0.0),
        )
    };
    if let Some(produced) = &outcome.producers {
        println!("produce throughput  {}", rate("produce"));
        println!(
            "{}",
            latency_line("produce ack (ms)", &produced.ack_latency)
        );
    }
    if let Some(consumed) = &outcome.consumers {
        println!("consume throughput  {}", rate("consume"));
        if !consumed.e2e_latency.is_empty() {
            println!("{}", latency_line("end-to-end (ms)", &consumed.e2e_latency));
        }
    }
    if let Some(verification) = &outcome.verification {
        println!(
            "verification        {} expected {} consumed {} lost {} duplicated {} reordered {} misrouted {} foreign {}",
            if verification.ok() { "OK" } else { "FAILED" },
            verification.expected,
            verification.consumed_unique,
            verification.lost,
            verification.duplicated,
            verification.reordered,
            verification.misrouted,
            verification.foreign,
        );
    }
    for error in result["errors"].as_array().into_iter().flatten() {
        println!("error               {}", error.as_str().unwrap_or_default());
    }
}
