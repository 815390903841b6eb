//! `sluice bench` flags: parsed once, checked against named limits, then shared read-only by
//! every producer and consumer thread.

use std::path::PathBuf;

use super::partitioner::KeyDistribution;
use super::payload::PAYLOAD_HEADER_BYTES;

/// Kafka's default `message.max.bytes` is 1 MiB: a bigger value would be refused by most brokers.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// A produce request holds at most one batch per partition; 16 MiB keeps requests well under
/// `socket.request.max.bytes` (100 MiB) with many partitions.
pub const BATCH_BYTES_MAX: usize = 16 << 20;
/// Threads are cheap but not free on a 2-core load generator; more than this is a typo.
pub const CLIENTS_MAX: u32 = 256;
/// Pipelined produce requests per connection; each holds one request's batches in memory.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Same bound as the broker's `num.partitions`.
pub const PARTITIONS_MAX: i32 = 10_000;
/// Distinct keys a key distribution may draw from.
pub const KEY_SPACE_MAX: u64 = 1 << 40;

/// What `sluice bench --help` says after the subcommands.
pub const ABOUT: &str = "\
The run exits 1 when a request failed or, in e2e/consume mode, a message is missing,
duplicated or out of order; 2 on bad flags. SLUICE_GIT_COMMIT names the commit in the JSON
(default: `git rev-parse HEAD` in the current directory).";

/// `sluice bench MODE`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Producers only: ack latency and throughput
    Produce(BenchFlags),
    /// Read partitions (from --from earliest|latest to the end offsets seen at start) and
    /// check each stream
    Consume(BenchFlags),
    /// Producers and consumers together: ack and end-to-end latency, and a check that every
    /// acknowledged message was consumed once, in order per partition
    #[command(name = "e2e", alias = "end-to-end")]
    EndToEnd(BenchFlags),
    /// A trivial broker that answers and stores nothing (the generator's own ceiling)
    Sink {
        #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
        listen: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=i64::from(PARTITIONS_MAX)))]
        partitions: i32,
    },
    /// PNG charts from result files
    Plot {
        /// Result files (`--json` of earlier runs)
        #[arg(required = true, value_name = "RESULT.json")]
        inputs: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The flags of `produce`, `consume` and `e2e`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchFlags {
    /// Broker to ask for metadata
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,
    /// Create the topic first (an existing topic is used as it is)
    #[arg(long)]
    pub create_topic: bool,
    /// Partitions when creating, and of the --sink topic
    #[arg(long, default_value_t = 1, value_parser = number::<i32>)]
    pub partitions: i32,
    /// Replication factor when creating
    #[arg(long, default_value_t = 1, value_parser = number::<i16>)]
    pub replication_factor: i16,
    /// Topic config when creating (retention.bytes, segment.bytes, ...); repeatable
    #[arg(long = "topic-config", value_name = "KEY=VALUE", value_parser = key_value)]
    pub topic_configs: Vec<(String, String)>,
    /// Value size, at least the payload header
    #[arg(long, default_value_t = 1024, value_parser = number::<usize>)]
    pub message_bytes: usize,
    /// none: null keys, sticky partition per batch; round-robin: keys cycle over the key
    /// space; random: uniform over it
    #[arg(long, value_enum, default_value = "none")]
    pub keys: KeyDistribution,
    /// Distinct keys
    #[arg(long, default_value_t = 1000, value_parser = number::<u64>)]
    pub key_space: u64,
    /// 0, 1 or all
    #[arg(long, default_value = "all", value_parser = acks)]
    pub acks: i16,
    /// Batch size per partition
    #[arg(long, default_value_t = 16384, value_parser = number::<usize>)]
    pub batch_bytes: usize,
    /// Wait for more records before sending a batch
    #[arg(long, default_value_t = 5, value_parser = number::<u64>)]
    pub linger_ms: u64,
    /// Pipelined produce requests per connection
    #[arg(long, default_value_t = 5, value_parser = number::<usize>)]
    pub max_in_flight: usize,
    #[arg(long, default_value_t = 1, value_parser = number::<u32>)]
    pub producers: u32,
    #[arg(long, default_value_t = 1, value_parser = number::<u32>)]
    pub consumers: u32,
    /// Total target rate; latency then counts from each message's intended send time
    /// (coordinated omission); 0 = unthrottled
    #[arg(long, default_value_t = 0.0, value_name = "MSGS_PER_S", value_parser = number::<f64>)]
    pub rate: f64,
    /// Measured time after warm-up
    #[arg(long, default_value_t = 10.0, value_parser = number::<f64>)]
    pub duration_s: f64,
    /// Stop after N messages in total instead of a duration
    #[arg(long, value_parser = number::<u64>)]
    pub messages: Option<u64>,
    /// Excluded from latency and throughput
    #[arg(long, default_value_t = 2.0, value_parser = number::<f64>)]
    pub warmup_s: f64,
    /// e2e/consume: give up waiting for data after this long without progress
    #[arg(long, default_value_t = 10.0, value_parser = number::<f64>)]
    pub drain_timeout_s: f64,
    /// Consume mode start
    #[arg(long, value_enum, default_value = "earliest")]
    pub from: StartFrom,
    #[arg(long, default_value_t = 100, value_parser = number::<i32>)]
    pub fetch_max_wait_ms: i32,
    #[arg(long, default_value_t = 1 << 20, value_parser = number::<i32>)]
    pub fetch_partition_max_bytes: i32,
    /// Write the result (parameters, machine, commit, numbers) as JSON
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Name of this run in plots (mode and broker)
    #[arg(long)]
    pub label: Option<String>,
    /// Live progress line on stderr every N ms, 0 = off
    #[arg(long, default_value_t = 1000, value_parser = number::<u64>)]
    pub progress_ms: u64,
    /// Produce mode: run against an in-process sink broker (the generator's own ceiling);
    /// --bootstrap is ignored
    #[arg(long)]
    pub sink: bool,
    /// Key choice and run id (time based by default)
    #[arg(long, value_parser = number::<u64>)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "sluice-bench")]
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    EndToEnd,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::EndToEnd => "e2e",
        }
    }
    pub fn produces(self) -> bool {
        self != Mode::Consume
    }
    pub fn consumes(self) -> bool {
        self != Mode::Produce
    }
}

/// Where consume mode starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub mode: Mode,
    pub bootstrap: String,
    pub topic: String,
    pub create_topic: bool,
    pub partitions: i32,
    pub replication_factor: i16,
    /// `--topic-config KEY=VALUE`, sent in CreateTopics in the order given.
    pub topic_configs: Vec<(String, String)>,
    pub message_bytes: usize,
    pub keys: KeyDistribution,
    pub key_space: u64,
    /// Kafka's encoding: 0, 1, or -1 for all.
    pub acks: i16,
    pub batch_bytes: usize,
    pub linger_ms: u64,
    pub max_in_flight: usize,
    pub producers: u32,
    pub consumers: u32,
    /// Total messages per second over all producers; `None` is unthrottled.
    pub rate_per_s: Option<f64>,
    pub duration_s: f64,
    pub messages: Option<u64>,
    pub warmup_s: f64,
    pub drain_timeout_s: f64,
    pub from: StartFrom,
    pub fetch_max_wait_ms: i32,
    pub fetch_partition_max_bytes: i32,
    pub json: Option<PathBuf>,
    pub label: Option<String>,
    pub progress_ms: u64,
    pub sink: bool,
    pub seed: Option<u64>,
    pub client_id: String,
}

/// `sluice bench` alone, for parsing its flags outside the whole CLI.
#[derive(clap::Parser)]
#[command(name = "sluice bench")]
struct BenchParser {
    #[command(subcommand)]
    command: BenchCommand,
}

impl BenchOptions {
    /// Parses `MODE [--flag value | --flag=value]...` (produce, consume or e2e).
    pub fn parse(args: &[String]) -> Result<BenchOptions, String> {
        use clap::Parser;
        let argv = std::iter::once("sluice bench".to_string()).chain(args.iter().cloned());
        let parsed = BenchParser::try_parse_from(argv).map_err(|error| error.to_string())?;
        match parsed.command {
            BenchCommand::Produce(flags) => BenchOptions::from_flags(Mode::Produce, flags),
            BenchCommand::Consume(flags) => BenchOptions::from_flags(Mode::Consume, flags),
            BenchCommand::EndToEnd(flags) => BenchOptions::from_flags(Mode::EndToEnd, flags),
            BenchCommand::Sink { .. } | BenchCommand::Plot { .. } => {
                Err("not a load mode (produce, consume or e2e)".to_string())
            }
        }
    }

    /// The options of one run, checked against the named limits.
    pub fn from_flags(mode: Mode, flags: BenchFlags) -> Result<BenchOptions, String> {
        let options = BenchOptions {
            mode,
            bootstrap: flags.bootstrap,
            topic: flags.topic,
            create_topic: flags.create_topic,
            partitions: flags.partitions,
            replication_factor: flags.replication_factor,
            topic_configs: flags.topic_configs,
            message_bytes: flags.message_bytes,
            keys: flags.keys,
            key_space: flags.key_space,
            acks: flags.acks,
            batch_bytes: flags.batch_bytes,
            linger_ms: flags.linger_ms,
            max_in_flight: flags.max_in_flight,
            producers: flags.producers,
            consumers: flags.consumers,
            rate_per_s: (flags.rate > 0.0).then_some(flags.rate),
            duration_s: flags.duration_s,
            messages: flags.messages,
            warmup_s: flags.warmup_s,
            drain_timeout_s: flags.drain_timeout_s,
            from: flags.from,
            fetch_max_wait_ms: flags.fetch_max_wait_ms,
            fetch_partition_max_bytes: flags.fetch_partition_max_bytes,
            json: flags.json,
            label: flags.label,
            progress_ms: flags.progress_ms,
            sink: flags.sink,
            seed: flags.seed,
            client_id: flags.client_id,
        };
        options.check()?;
        Ok(options)
    }

    fn check(&self) -> Result<(), String> {
        let within = |name: &str, ok: bool, range: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!("{name} must be {range}"))
            }
        };
        within(
            "--message-bytes",
            (PAYLOAD_HEADER_BYTES..=MESSAGE_BYTES_MAX).contains(&self.message_bytes),
            &format!("{PAYLOAD_HEADER_BYTES}..={MESSAGE_BYTES_MAX}"),
        )?;
        within(
            "--batch-bytes",
            (1..=BATCH_BYTES_MAX).contains(&self.batch_bytes),
            &format!("1..={BATCH_BYTES_MAX}"),
        )?;
        within(
            "--partitions",
            (1..=PARTITIONS_MAX).contains(&self.partitions),
            &format!("1..={PARTITIONS_MAX}"),
        )?;
        within("--replication-factor", self.replication_factor >= 1, ">= 1")?;
        within(
            "--key-space",
            (1..=KEY_SPACE_MAX).contains(&self.key_space),
            &format!("1..={KEY_SPACE_MAX}"),
        )?;
        within(
            "--max-in-flight",
            (1..=IN_FLIGHT_MAX).contains(&self.max_in_flight),
            &format!("1..={IN_FLIGHT_MAX}"),
        )?;
        within(
            "--producers",
            (1..=CLIENTS_MAX).contains(&self.producers),
            &format!("1..={CLIENTS_MAX}"),
        )?;
        within(
            "--consumers",
            (1..=CLIENTS_MAX).contains(&self.consumers),
            &format!("1..={CLIENTS_MAX}"),
        )?;
        within(
            "--duration-s",
            self.duration_s > 0.0 && self.duration_s.is_finite(),
            "> 0",
        )?;
        within(
            "--warmup-s",
            self.warmup_s >= 0.0 && self.warmup_s.is_finite(),
            ">= 0",
        )?;
        within(
            "--drain-timeout-s",
            self.drain_timeout_s > 0.0 && self.drain_timeout_s.is_finite(),
            "> 0",
        )?;
        within(
            "--fetch-max-wait-ms",
            (0..=60_000).contains(&self.fetch_max_wait_ms),
            "0..=60000",
        )?;
        within(
            "--fetch-partition-max-bytes",
            self.fetch_partition_max_bytes >= 1024,
            ">= 1024",
        )?;
        within("--messages", self.messages != Some(0), ">= 1")?;
        if let Some(rate) = self.rate_per_s {
            within("--rate", rate.is_finite(), "a number")?;
        }
        if self.sink && self.mode != Mode::Produce {
            return Err("--sink works with produce mode only (the sink stores nothing)".into());
        }
        Ok(())
    }
}

/// A number as written on the command line (`1_000` is 1000).
fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{value}` is not a valid number"))
}

fn acks(value: &str) -> Result<i16, String> {
    match value {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("`{value}` is not 0|1|all")),
    }
}

fn key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, config)) if !key.is_empty() => Ok((key.to_string(), config.to_string())),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_in_both_forms() {
        let options = BenchOptions::parse(&args(
            "e2e --topic t --partitions=4 --acks 1 --keys random --key-space 10 --rate 1_000 \
             --create-topic --json out.json --messages 500",
        ))
        .unwrap();
        assert_eq!(options.mode, Mode::EndToEnd);
        assert_eq!(options.topic, "t");
        assert_eq!(options.partitions, 4);
        assert_eq!(options.acks, 1);
        assert_eq!(options.keys, KeyDistribution::Random);
        assert_eq!(options.rate_per_s, Some(1000.0));
        assert!(options.create_topic);
        assert_eq!(options.messages, Some(500));
        assert_eq!(options.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn topic_configs_are_kept_in_order() {
        let options = BenchOptions::parse(&args(
            "produce --topic-config retention.bytes=1048576 --topic-config=segment.bytes=2097152",
        ))
        .unwrap();
        assert_eq!(
            options.topic_configs,
            vec![
                ("retention.bytes".to_string(), "1048576".to_string()),
                ("segment.bytes".to_string(), "2097152".to_string()),
            ]
        );
        assert!(BenchOptions::parse(&args("produce --topic-config retention.bytes")).is_err());
        assert!(BenchOptions::parse(&args("produce --topic-config =1")).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "produce --message-bytes 10",
            "produce --acks 2",
            "produce --producers 0",
            "produce --nope 1",
            "produce --rate",
            "e2e --sink",
            "stress",
            "produce --keys sometimes",
        ] {
            assert!(BenchOptions::parse(&args(bad)).is_err(), "{bad}");
        }
        let unthrottled = BenchOptions::parse(&args("produce --rate 0")).unwrap();
        assert_eq!(unthrottled.rate_per_s, None);
    }
}
