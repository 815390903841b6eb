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

pub const USAGE: &str = "\
usage: sluice bench produce|consume|e2e [flags]   drive a Kafka-protocol broker
       sluice bench sink [--listen HOST:PORT] [--partitions N]
                                                 a trivial sink broker (answers, stores nothing)
       sluice bench plot RESULT.json... --out DIR  PNG charts from result files

modes: produce  produce only, ack latency and throughput
       consume  read partitions (from --from earliest|latest to the end offsets seen at start)
       e2e      producers and consumers together: ack and end-to-end latency, and a check that
                every acknowledged message was consumed once, in order per partition

flags (default):
  --bootstrap HOST:PORT        broker to ask for metadata (127.0.0.1:9092)
  --topic NAME                 (sluice-bench)
  --create-topic               create the topic first (an existing topic is used as it is)
  --partitions N               partitions when creating, and of the --sink topic (1)
  --replication-factor N       when creating (1)
  --topic-config KEY=VALUE     topic config when creating (retention.bytes, segment.bytes, ...);
                               repeatable
  --message-bytes N            value size, >= 36: the payload header (1024)
  --keys none|round-robin|random
                               none: null keys, sticky partition per batch; round-robin: keys
                               cycle over the key space; random: uniform over it (none)
  --key-space N                distinct keys (1000)
  --acks 0|1|all               (all)
  --batch-bytes N              batch size per partition (16384)
  --linger-ms N                wait for more records before sending a batch (5)
  --max-in-flight N            pipelined produce requests per connection (5)
  --producers N / --consumers N  (1 / 1)
  --rate MSGS_PER_S            total target rate; latency then counts from each message's
                               intended send time (coordinated omission); 0 = unthrottled (0)
  --duration-s S               measured time after warm-up (10)
  --messages N                 stop after N messages in total instead of a duration
  --warmup-s S                 excluded from latency and throughput (2)
  --drain-timeout-s S          e2e/consume: give up waiting for data after S without progress (10)
  --from earliest|latest       consume mode start (earliest)
  --fetch-max-wait-ms N        (100)
  --fetch-partition-max-bytes N  (1048576)
  --json PATH                  write the result (parameters, machine, commit, numbers) as JSON
  --label TEXT                 name of this run in plots (mode and broker)
  --progress-ms N              live progress line on stderr every N ms, 0 = off (1000)
  --sink                       produce mode: run against an in-process sink broker (measures
                               the generator's own ceiling); --bootstrap is ignored
  --seed N                     key choice and run id (time based)
  --client-id TEXT             (sluice-bench)

The run exits 1 when a request failed or, in e2e/consume mode, a message is missing,
duplicated or out of order; 2 on bad flags. SLUICE_GIT_COMMIT names the commit in the JSON
(default: `git rev-parse HEAD` in the current directory).
";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl BenchOptions {
    pub fn defaults(mode: Mode) -> BenchOptions {
        BenchOptions {
            mode,
            bootstrap: "127.0.0.1:9092".into(),
            topic: "sluice-bench".into(),
            create_topic: false,
            partitions: 1,
            replication_factor: 1,
            topic_configs: Vec::new(),
            message_bytes: 1024,
            keys: KeyDistribution::None,
            key_space: 1000,
            acks: -1,
            batch_bytes: 16384,
            linger_ms: 5,
            max_in_flight: 5,
            producers: 1,
            consumers: 1,
            rate_per_s: None,
            duration_s: 10.0,
            messages: None,
            warmup_s: 2.0,
            drain_timeout_s: 10.0,
            from: StartFrom::Earliest,
            fetch_max_wait_ms: 100,
            fetch_partition_max_bytes: 1 << 20,
            json: None,
            label: None,
            progress_ms: 1000,
            sink: false,
            seed: None,
            client_id: "sluice-bench".into(),
        }
    }

    /// Parses `MODE [--flag value | --flag=value]...`.
    pub fn parse(args: &[String]) -> Result<BenchOptions, String> {
        let mode = match args.first().map(String::as_str) {
            Some("produce") => Mode::Produce,
            Some("consume") => Mode::Consume,
            Some("e2e") | Some("end-to-end") => Mode::EndToEnd,
            Some(other) => return Err(format!("unknown bench mode `{other}`")),
            None => return Err("missing bench mode".into()),
        };
        let mut options = BenchOptions::defaults(mode);
        let mut rest = args[1..].iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            if flag == "--create-topic" || flag == "--sink" {
                if inline.is_some() {
                    return Err(format!("{flag} takes no value"));
                }
                if flag == "--sink" {
                    options.sink = true;
                } else {
                    options.create_topic = true;
                }
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))?,
            };
            options.set(flag, &value)?;
        }
        options.check()?;
        Ok(options)
    }

    fn set(&mut self, flag: &str, value: &str) -> Result<(), String> {
        match flag {
            "--bootstrap" => self.bootstrap = value.to_string(),
            "--topic" => self.topic = value.to_string(),
            "--partitions" => self.partitions = number(flag, value)?,
            "--replication-factor" => self.replication_factor = number(flag, value)?,
            "--topic-config" => match value.split_once('=') {
                Some((key, config)) if !key.is_empty() => self
                    .topic_configs
                    .push((key.to_string(), config.to_string())),
                _ => return Err(format!("--topic-config: `{value}` is not KEY=VALUE")),
            },
            "--message-bytes" => self.message_bytes = number(flag, value)?,
            "--keys" => {
                self.keys = match value {
                    "none" => KeyDistribution::None,
                    "round-robin" | "rr" => KeyDistribution::RoundRobin,
                    "random" => KeyDistribution::Random,
                    _ => return Err(format!("--keys: `{value}` is not none|round-robin|random")),
                }
            }
            "--key-space" => self.key_space = number(flag, value)?,
            "--acks" => {
                self.acks = match value {
                    "0" => 0,
                    "1" => 1,
                    "all" | "-1" => -1,
                    _ => return Err(format!("--acks: `{value}` is not 0|1|all")),
                }
            }
            "--batch-bytes" => self.batch_bytes = number(flag, value)?,
            "--linger-ms" => self.linger_ms = number(flag, value)?,
            "--max-in-flight" => self.max_in_flight = number(flag, value)?,
            "--producers" => self.producers = number(flag, value)?,
            "--consumers" => self.consumers = number(flag, value)?,
            "--rate" => {
                let rate: f64 = number(flag, value)?;
                self.rate_per_s = (rate > 0.0).then_some(rate);
            }
            "--duration-s" => self.duration_s = number(flag, value)?,
            "--messages" => self.messages = Some(number(flag, value)?),
            "--warmup-s" => self.warmup_s = number(flag, value)?,
            "--drain-timeout-s" => self.drain_timeout_s = number(flag, value)?,
            "--from" => {
                self.from = match value {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    _ => return Err(format!("--from: `{value}` is not earliest|latest")),
                }
            }
            "--fetch-max-wait-ms" => self.fetch_max_wait_ms = number(flag, value)?,
            "--fetch-partition-max-bytes" => self.fetch_partition_max_bytes = number(flag, value)?,
            "--json" => self.json = Some(PathBuf::from(value)),
            "--label" => self.label = Some(value.to_string()),
            "--progress-ms" => self.progress_ms = number(flag, value)?,
            "--seed" => self.seed = Some(number(flag, value)?),
            "--client-id" => self.client_id = value.to_string(),
            _ => return Err(format!("unknown flag `{flag}`")),
        }
        Ok(())
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

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a valid number"))
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
