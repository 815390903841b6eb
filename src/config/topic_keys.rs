//! The one list of topic configuration keys: every key Kafka 3.x accepts on a topic (its
//! `LogConfig`), with the broker key its default comes from, its check (Kafka's type and
//! range), its documentation, and whether Sluice acts on it. Validation, defaults,
//! DescribeConfigs (type, synonyms, documentation) and README's table come from here.
//!
//! Keys Sluice does not act on (compaction, flush intervals, tiered storage, ...) are validated
//! as Kafka validates them, stored and reported, and change nothing (README: topic configs);
//! the two values that would change behaviour Sluice does not have (`cleanup.policy=compact`,
//! `remote.storage.enable=true`) are refused.

use super::{keys, Config};

/// How a topic key's value is checked, which also gives Kafka's ConfigType.
#[derive(Clone, Copy)]
pub enum Check {
    /// LONG in `min..=max`.
    Long {
        min: i64,
        max: i64,
    },
    /// INT in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// DOUBLE in 0..=1.
    Ratio,
    /// STRING, one of these.
    OneOf(&'static [&'static str]),
    /// STRING (or LIST when `list`), checked by a function returning the client's message.
    Custom {
        list: bool,
        check: fn(&str, &str) -> Result<(), String>,
    },
}

/// Where a topic key's value comes from when the topic does not set it.
#[derive(Clone, Copy)]
pub enum TopicDefault {
    /// The broker key of the same meaning (`TopicKey::broker_key`), which Sluice has.
    Broker,
    /// Kafka's default; Sluice has no broker key for it.
    Fixed(&'static str),
}

pub struct TopicKey {
    pub name: &'static str,
    /// Kafka's broker-level synonym ("" where Kafka has none).
    pub broker_key: &'static str,
    pub check: Check,
    pub default: TopicDefault,
    pub doc: &'static str,
    /// Sluice acts on it (the others are stored and reported only).
    pub effective: bool,
}

impl TopicKey {
    /// Kafka's ConfigType: BOOLEAN 1, STRING 2, INT 3, LONG 5, DOUBLE 6, LIST 7.
    pub fn kafka_type(&self) -> i8 {
        match self.check {
            Check::Bool => 1,
            Check::OneOf(_) | Check::Custom { list: false, .. } => 2,
            Check::Int { .. } => 3,
            Check::Long { .. } => 5,
            Check::Ratio => 6,
            Check::Custom { list: true, .. } => 7,
        }
    }

    /// The value a topic without an override has on this broker.
    pub fn default_value(&self, config: &Config) -> String {
        match self.default {
            TopicDefault::Fixed(value) => value.to_string(),
            TopicDefault::Broker => {
                let key = keys::find(self.broker_key)
                    .unwrap_or_else(|| panic!("{}: no broker key {}", self.name, self.broker_key));
                (key.value)(config)
            }
        }
    }

    /// Checks a value as Kafka's `LogConfig` does; the error text goes back to the client.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let key = self.name;
        let trimmed = value.trim();
        let range = |min: i64, max: i64| -> Result<(), String> {
            let parsed: i64 = trimmed
                .parse()
                .map_err(|_| format!("{key}: `{value}` is not an integer"))?;
            if parsed < min || parsed > max {
                return Err(format!("{key}: {parsed} is outside {min}..={max}"));
            }
            Ok(())
        };
        match self.check {
            Check::Long { min, max } | Check::Int { min, max } => range(min, max),
            Check::Bool => {
                if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
                    Ok(())
                } else {
                    Err(format!("{key}: `{value}` is not true or false"))
                }
            }
            Check::Ratio => match trimmed.parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
                _ => Err(format!("{key}: `{value}` is not a number in 0..=1")),
            },
            Check::OneOf(allowed) => {
                if allowed.contains(&trimmed) {
                    Ok(())
                } else {
                    Err(format!(
                        "{key}: `{value}` is not one of {}",
                        allowed.join(", ")
                    ))
                }
            }
            Check::Custom { check, .. } => check(key, trimmed),
        }
    }

    /// Range or allowed values, for people.
    pub fn range(&self) -> String {
        let bound = |n: i64| {
            if n == i64::MAX || n == i64::from(i32::MAX) {
                "max".to_string()
            } else {
                n.to_string()
            }
        };
        match self.check {
            Check::Long { min, max } | Check::Int { min, max } => {
                format!("{}..{}", bound(min), bound(max))
            }
            Check::Bool => "true, false".to_string(),
            Check::Ratio => "0..1".to_string(),
            Check::OneOf(allowed) => allowed.join(", "),
            Check::Custom { .. } => String::new(),
        }
    }
}

pub fn find(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|key| key.name == name)
}

/// Checks one topic setting: a known key with a valid value. Unknown keys are refused with
/// Kafka's message and the closest known key.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match find(name) {
        Some(key) => key.validate(value),
        None => Err(
            match keys::closest(name, TOPIC_KEYS.iter().map(|key| key.name)) {
                Some(closest) => {
                    format!("Unknown topic config name: {name} (did you mean {closest}?)")
                }
                None => format!("Unknown topic config name: {name}"),
            },
        ),
    }
}

const LONG_MAX: i64 = i64::MAX;
const INT_MAX: i64 = i32::MAX as i64;

fn cleanup_policy(key: &str, value: &str) -> Result<(), String> {
    match value {
        "delete" => Ok(()),
        "compact" | "compact,delete" | "delete,compact" => Err(format!(
            "{key}={value} is not supported yet (only delete); see README limits"
        )),
        _ => Err(format!("{key}: `{value}` is not delete or compact")),
    }
}

fn gzip_level(key: &str, value: &str) -> Result<(), String> {
    match value.parse::<i32>() {
        Ok(-1 | 1..=9) => Ok(()),
        _ => Err(format!("{key}: `{value}` is not -1 or 1..=9")),
    }
}

fn remote_storage(key: &str, value: &str) -> Result<(), String> {
    if value.eq_ignore_ascii_case("false") {
        Ok(())
    } else if value.eq_ignore_ascii_case("true") {
        Err(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be \
             configured with remote log storage."
                .to_string(),
        )
    } else {
        Err(format!("{key}: `{value}` is not true or false"))
    }
}

/// `message.format.version` as Kafka 3.x parses it (`MetadataVersion.fromVersionString`):
/// "0.x.y" keeps three segments, later versions two ("2.8.1" is "2.8"), "-IVn" may follow.
fn message_format_version(key: &str, value: &str) -> Result<(), String> {
    const KNOWN: &[&str] = &[
        "0.8.0", "0.8.1", "0.8.2", "0.9.0", "0.10.0", "0.10.1", "0.10.2", "0.11.0", "1.0", "1.1",
        "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "3.0", "3.1", "3.2", "3.3",
        "3.4", "3.5", "3.6", "3.7", "3.8", "3.9",
    ];
    let segments: Vec<&str> = value.split('.').collect();
    let keep = if value.starts_with("0.") { 3 } else { 2 };
    let joined = segments[..segments.len().min(keep)].join(".");
    let base = match joined.split_once("-IV") {
        Some((base, iv)) if iv.parse::<u8>().is_ok() => Some(base),
        Some(_) => None,
        None => Some(joined.as_str()),
    };
    if base.is_some_and(|base| KNOWN.contains(&base)) {
        Ok(())
    } else {
        Err(format!("{key}: Version `{value}` is not a valid version"))
    }
}

/// `*`, or a comma list of `partition:broker` (Kafka's ThrottledReplicaListValidator).
fn throttled_replicas(key: &str, value: &str) -> Result<(), String> {
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let valid = value == "*"
        || value.split(',').all(|item| {
            let item = item.trim();
            item.is_empty()
                || item
                    .split_once(':')
                    .is_some_and(|(partition, broker)| digits(partition) && digits(broker))
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key} must be the literal '*' or a list of replicas in the following format: \
             [partitionId]:[brokerId],[partitionId]:[brokerId],..."
        ))
    }
}

macro_rules! topic_key {
    ($name:expr, $broker:expr, $check:expr, $default:expr, $effective:expr, $doc:expr) => {
        TopicKey {
            name: $name,
            broker_key: $broker,
            check: $check,
            default: $default,
            doc: $doc,
            effective: $effective,
        }
    };
}

use Check::{Bool, Int, Long, OneOf, Ratio};
use TopicDefault::{Broker, Fixed};

pub static TOPIC_KEYS: &[TopicKey] =
    &[
        topic_key!(
            "retention.ms",
            "log.retention.ms",
            Long {
                min: -1,
                max: LONG_MAX
            },
            Broker,
            true,
            "closed segments older than this are deleted; -1 keeps them"
        ),
        topic_key!(
            "retention.bytes",
            "log.retention.bytes",
            Long {
                min: -1,
                max: LONG_MAX
            },
            Broker,
            true,
            "closed segments are deleted while a partition is larger; -1 = unlimited"
        ),
        topic_key!(
            "segment.bytes",
            "log.segment.bytes",
            Int {
                min: crate::config::SEGMENT_BYTES_MIN as i64,
                max: crate::config::SEGMENT_BYTES_MAX as i64
            },
            Broker,
            true,
            "segment roll size"
        ),
        topic_key!(
            "segment.ms",
            "log.roll.ms",
            Long {
                min: 1,
                max: LONG_MAX
            },
            Broker,
            true,
            "segment roll age"
        ),
        topic_key!(
            "max.message.bytes",
            "message.max.bytes",
            Int {
                min: 0,
                max: crate::config::MESSAGE_MAX_BYTES_MAX as i64
            },
            Broker,
            true,
            "largest record batch"
        ),
        topic_key!(
            "cleanup.policy",
            "log.cleanup.policy",
            Check::Custom {
                list: true,
                check: cleanup_policy
            },
            Fixed("delete"),
            true,
            "delete (compaction is not supported yet)"
        ),
        topic_key!(
            "message.timestamp.type",
            "log.message.timestamp.type",
            OneOf(&["CreateTime", "LogAppendTime"]),
            Fixed("CreateTime"),
            true,
            "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append"
        ),
        topic_key!(
            "index.interval.bytes",
            "log.index.interval.bytes",
            Int {
                min: 0,
                max: INT_MAX
            },
            Broker,
            true,
            "bytes between offset-index entries"
        ),
        topic_key!(
            "min.insync.replicas",
            "min.insync.replicas",
            Int {
                min: 1,
                max: INT_MAX
            },
            Broker,
            true,
            "acks=all needs this many in-sync replicas"
        ),
        topic_key!(
            "segment.jitter.ms",
            "log.roll.jitter.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("0"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "segment.index.bytes",
            "log.index.size.max.bytes",
            Int {
                min: 4,
                max: INT_MAX
            },
            Fixed("10485760"),
            false,
            "stored, not acted on (indexes grow as needed)"
        ),
        topic_key!(
            "flush.messages",
            "log.flush.interval.messages",
            Long {
                min: 1,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on: every acknowledged batch is fdatasynced (group commit)"
        ),
        topic_key!(
            "flush.ms",
            "log.flush.interval.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on: every acknowledged batch is fdatasynced (group commit)"
        ),
        topic_key!(
            "file.delete.delay.ms",
            "log.segment.delete.delay.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("60000"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "delete.retention.ms",
            "log.cleaner.delete.retention.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("86400000"),
            false,
            "stored, not acted on (no compaction)"
        ),
        topic_key!(
            "min.compaction.lag.ms",
            "log.cleaner.min.compaction.lag.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("0"),
            false,
            "stored, not acted on (no compaction)"
        ),
        topic_key!(
            "max.compaction.lag.ms",
            "log.cleaner.max.compaction.lag.ms",
            Long {
                min: 1,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on (no compaction)"
        ),
        topic_key!(
            "min.cleanable.dirty.ratio",
            "log.cleaner.min.cleanable.ratio",
            Ratio,
            Fixed("0.5"),
            false,
            "stored, not acted on (no compaction)"
        ),
        topic_key!(
            "unclean.leader.election.enable",
            "unclean.leader.election.enable",
            Bool,
            Fixed("false"),
            false,
            "stored, not acted on: a Raft leader is always elected from a majority"
        ),
        topic_key!(
            "compression.type",
            "compression.type",
            OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
            Fixed("producer"),
            false,
            "stored, not acted on: batches are kept as the producer compressed them"
        ),
        topic_key!(
            "compression.gzip.level",
            "compression.gzip.level",
            Check::Custom {
                list: false,
                check: gzip_level
            },
            Fixed("-1"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "compression.lz4.level",
            "compression.lz4.level",
            Int { min: 1, max: 17 },
            Fixed("9"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "compression.zstd.level",
            "compression.zstd.level",
            Int {
                min: -131_072,
                max: 22
            },
            Fixed("3"),
            false,
            "stored, not acted on"
        ),
        topic_key!("preallocate", "log.preallocate", Bool, Fixed("false"), false,
        "stored, not acted on: segments are always preallocated in steps (log.preallocate.bytes)"),
        topic_key!(
            "message.format.version",
            "log.message.format.version",
            Check::Custom {
                list: false,
                check: message_format_version
            },
            Fixed("3.0-IV1"),
            false,
            "stored, not acted on: batches are magic 2"
        ),
        topic_key!(
            "message.timestamp.difference.max.ms",
            "log.message.timestamp.difference.max.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "message.timestamp.before.max.ms",
            "log.message.timestamp.before.max.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "message.timestamp.after.max.ms",
            "log.message.timestamp.after.max.ms",
            Long {
                min: 0,
                max: LONG_MAX
            },
            Fixed("9223372036854775807"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "message.downconversion.enable",
            "log.message.downconversion.enable",
            Bool,
            Fixed("true"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "leader.replication.throttled.replicas",
            "",
            Check::Custom {
                list: true,
                check: throttled_replicas
            },
            Fixed(""),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "follower.replication.throttled.replicas",
            "",
            Check::Custom {
                list: true,
                check: throttled_replicas
            },
            Fixed(""),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "remote.storage.enable",
            "",
            Check::Custom {
                list: false,
                check: remote_storage
            },
            Fixed("false"),
            false,
            "false only: there is no tiered storage"
        ),
        topic_key!(
            "local.retention.ms",
            "log.local.retention.ms",
            Long {
                min: -2,
                max: LONG_MAX
            },
            Fixed("-2"),
            false,
            "stored, not acted on (no tiered storage)"
        ),
        topic_key!(
            "local.retention.bytes",
            "log.local.retention.bytes",
            Long {
                min: -2,
                max: LONG_MAX
            },
            Fixed("-2"),
            false,
            "stored, not acted on (no tiered storage)"
        ),
        topic_key!(
            "remote.log.copy.disable",
            "",
            Bool,
            Fixed("false"),
            false,
            "stored, not acted on"
        ),
        topic_key!(
            "remote.log.delete.on.disable",
            "",
            Bool,
            Fixed("false"),
            false,
            "stored, not acted on"
        ),
    ];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_keys_are_validated_as_kafka_does() {
        for version in ["0.10.2.1", "2.8-IV1", "3.0", "0.10.0"] {
            assert!(
                validate("message.format.version", version).is_ok(),
                "{version}"
            );
        }
        for version in ["4.0", "banana", "2.8-IVx"] {
            assert!(
                validate("message.format.version", version).is_err(),
                "{version}"
            );
        }
        assert!(validate("message.downconversion.enable", "false").is_ok());
        assert!(validate("message.downconversion.enable", "maybe").is_err());
        assert!(validate("leader.replication.throttled.replicas", "*").is_ok());
        assert!(validate("leader.replication.throttled.replicas", "0:1, 1:2").is_ok());
        assert!(validate("leader.replication.throttled.replicas", "a:b").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.3").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("remote.storage.enable", "true").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("segment.bytes", "100").is_err());
        assert!(validate("cleanup.policy", "delete").is_ok());
        assert!(validate("cleanup.policy", "compact").is_err());
        let unknown = validate("retention.msx", "1").unwrap_err();
        assert!(unknown.contains("did you mean retention.ms"), "{unknown}");
    }

    #[test]
    fn every_default_is_valid_and_broker_synonyms_exist() {
        let config = Config::default();
        for key in TOPIC_KEYS {
            if let TopicDefault::Broker = key.default {
                assert!(keys::find(key.broker_key).is_some(), "{}", key.name);
            }
            let default = key.default_value(&config);
            if !default.is_empty() {
                assert!(key.validate(&default).is_ok(), "{} = {default}", key.name);
            }
        }
    }
}
