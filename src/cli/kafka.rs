//! What the operator commands (`sluice topic|group|cluster|produce|consume`) share: the
//! `--brokers` / `--format` flags and the security flags (`--security-protocol`, TLS's
//! `--ssl-ca-location` / `--ssl-keystore-location`, SASL's `--sasl-*`, as in a Kafka client's
//! properties), a connection per broker on the bench's client
//! (`bench::client::Connection`, one client in the codebase), where a request must go (the
//! controller, a partition's leader, a group's coordinator), and output as an aligned table or
//! JSON.
//!
//! They speak only the Kafka protocol, at the versions each broker offers in ApiVersions, so
//! they work against any Kafka-protocol broker from Kafka 2.4 on (the first with every API
//! they use at a version they speak); none of them reads Sluice's files.
//!
//! Exit codes: 0 done; 1 the operation failed, in whole or for any item (each item's outcome
//! is printed); 2 bad usage (clap's code).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use clap::ValueEnum;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::bench::client::{
    topic_name, ClientError, Connection, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use crate::config::SecurityProtocol;

pub const CLIENT_ID: &str = "sluice-cli";

/// Debian's bundle of the system's trusted CAs (package ca-certificates).
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The `timeout_ms` asked of brokers: below the client's own read timeout
/// (`bench::client::REQUEST_TIMEOUT`), so the broker's REQUEST_TIMED_OUT answer arrives first.
pub const BROKER_TIMEOUT_MS: i32 = 20_000;

/// Flags every operator command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Brokers to start from, comma-separated (the rest are found through Metadata)
    #[arg(
        long,
        global = true,
        env = "SLUICE_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT,..."
    )]
    pub brokers: String,
    /// Output: aligned table for people, JSON for scripts
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// SASL mechanism for SASL_PLAINTEXT listeners: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(
        long,
        global = true,
        env = "SLUICE_SASL_MECHANISM",
        value_name = "MECHANISM"
    )]
    pub sasl_mechanism: Option<String>,
    /// SASL user name
    #[arg(long, global = true, env = "SLUICE_SASL_USERNAME", value_name = "USER")]
    pub sasl_username: Option<String>,
    /// SASL password (prefer the variable: a flag shows in the process list)
    #[arg(
        long,
        global = true,
        env = "SLUICE_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub sasl_password: Option<String>,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: SASL with --sasl-mechanism, over
    /// TLS with --ssl-ca-location or --ssl-keystore-location)
    #[arg(
        long,
        global = true,
        env = "SLUICE_SECURITY_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    pub security_protocol: Option<String>,
    /// PEM file of the CAs that signed the brokers' certificates (default: the system's,
    /// /etc/ssl/certs/ca-certificates.crt)
    #[arg(
        long,
        global = true,
        env = "SLUICE_SSL_CA_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_ca_location: Option<std::path::PathBuf>,
    /// PEM file with this client's key and certificate chain, for listeners that ask for one
    #[arg(
        long,
        global = true,
        env = "SLUICE_SSL_KEYSTORE_LOCATION",
        value_name = "FILE"
    )]
    pub ssl_keystore_location: Option<std::path::PathBuf>,
    #[arg(skip)]
    pub tls: OnceLock<Arc<rustls::ClientConfig>>,
}

impl ClientArgs {
    /// A connection to `address`, authenticated when `--sasl-mechanism` is given.
    pub fn open(&self, address: &str) -> Result<Connection, Failed> {
        let protocol = self.protocol()?;
        let tls = if protocol.tls() {
            Some(self.tls_config()?)
        } else {
            None
        };
        let mut connection = Connection::open_with(address, CLIENT_ID, tls.as_ref())?;
        if protocol.sasl() {
            let Some(mechanism) = &self.sasl_mechanism else {
                return Err(Failed(format!(
                    "--security-protocol {} needs --sasl-mechanism",
                    protocol.name()
                )));
            };
            let (Some(user), Some(password)) = (&self.sasl_username, &self.sasl_password) else {
                return Err(Failed(
                    "--sasl-mechanism needs --sasl-username and --sasl-password (or SLUICE_SASL_PASSWORD)"
                        .into(),
                ));
            };
            connection.authenticate(mechanism, user, password)?;
        }
        Ok(connection)
    }

    fn protocol(&self) -> Result<SecurityProtocol, Failed> {
        match &self.security_protocol {
            Some(name) => SecurityProtocol::parse(name).ok_or_else(|| {
                Failed(format!(
                    "--security-protocol {name}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                ))
            }),
            None => {
                let tls = self.ssl_ca_location.is_some() || self.ssl_keystore_location.is_some();
                Ok(match (self.sasl_mechanism.is_some(), tls) {
                    (true, true) => SecurityProtocol::SaslSsl,
                    (true, false) => SecurityProtocol::SaslPlaintext,
                    (false, true) => SecurityProtocol::Ssl,
                    (false, false) => SecurityProtocol::Plaintext,
                })
            }
        }
    }

    /// The TLS client configuration, built once per command.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Failed> {
        if let Some(config) = self.tls.get() {
            return Ok(config.clone());
        }
        let settings = crate::config::SslSettings {
            truststore_location: Some(
                self.ssl_ca_location
                    .clone()
                    .unwrap_or_else(|| SYSTEM_CA_FILE.into()),
            ),
            keystore_location: self.ssl_keystore_location.clone(),
            ..crate::config::SslSettings::default()
        };
        let config = Arc::new(
            crate::security::tls::client_config(&settings).map_err(|error| {
                Failed(format!(
                    "TLS (--ssl-ca-location, --ssl-keystore-location): {error}"
                ))
            })?,
        );
        let _ = self.tls.set(config.clone());
        Ok(config)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A command's failure: the message printed after `sluice: `, exit code 1.
#[derive(Debug)]
pub struct Failed(pub String);

impl From<ClientError> for Failed {
    fn from(error: ClientError) -> Failed {
        Failed(error.to_string())
    }
}

impl From<std::io::Error> for Failed {
    fn from(error: std::io::Error) -> Failed {
        Failed(error.to_string())
    }
}

pub type Outcome = Result<(), Failed>;

/// Prints `rows` under `header` (table) or `json` (JSON).
pub fn emit(
    args: &ClientArgs,
    header: &[&str],
    rows: Vec<Vec<String>>,
    json: serde_json::Value,
) -> Outcome {
    match args.format {
        Format::Table => print!("{}", super::table(header, rows)),
        Format::Json => println!("{json:#}"),
    }
    Ok(())
}

/// Fails when any of `codes` is an error, naming the first (the output already shows each).
pub fn all_succeeded(what: &str, codes: impl IntoIterator<Item = (String, i16)>) -> Outcome {
    let failed: Vec<(String, i16)> = codes.into_iter().filter(|(_, code)| *code != 0).collect();
    match failed.first() {
        None => Ok(()),
        Some((item, code)) => Err(Failed(format!(
            "{what} failed for {} of them; {item}: {}",
            failed.len(),
            crate::bench::client::error_text(*code)
        ))),
    }
}

pub fn text(value: &StrBytes) -> String {
    value.to_string()
}

pub fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Connections to the cluster's brokers, opened as needed, and the last Metadata seen.
pub struct Brokers {
    args: ClientArgs,
    bootstrap: Connection,
    by_node: BTreeMap<i32, Connection>,
    /// node id -> HOST:PORT, from Metadata.
    addresses: BTreeMap<i32, String>,
    controller: i32,
}

impl Brokers {
    /// Connects to the first of `--brokers` that answers ApiVersions.
    pub fn connect(args: &ClientArgs) -> Result<Brokers, Failed> {
        let mut errors = Vec::new();
        for address in args
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match args.open(address) {
                Ok(bootstrap) => {
                    let mut brokers = Brokers {
                        args: args.clone(),
                        bootstrap,
                        by_node: BTreeMap::new(),
                        addresses: BTreeMap::new(),
                        controller: -1,
                    };
                    brokers.metadata(Some(&[]))?;
                    return Ok(brokers);
                }
                Err(Failed(error)) => errors.push(error),
            }
        }
        if errors.is_empty() {
            return Err(Failed("--brokers names no broker".into()));
        }
        Err(Failed(format!(
            "no broker reachable ({})",
            errors.join("; ")
        )))
    }

    pub fn bootstrap(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// Metadata for `topics` (None: every topic), remembering the brokers it names.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, Failed> {
        let mut request = MetadataRequest::default();
        request.topics = topics.map(|names| {
            names
                .iter()
                .map(|name| {
                    let mut topic = metadata_request::MetadataRequestTopic::default();
                    topic.name = Some(topic_name(name));
                    topic
                })
                .collect()
        });
        request.allow_auto_topic_creation = false;
        let response: MetadataResponse = self.bootstrap.call(1, 12, &request)?;
        self.addresses = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
            .collect();
        self.controller = response.controller_id.0;
        Ok(response)
    }

    pub fn addresses(&self) -> &BTreeMap<i32, String> {
        &self.addresses
    }

    /// Drops the connection to `node` (it failed; the next use opens a new one).
    pub fn forget(&mut self, node: i32) {
        self.by_node.remove(&node);
    }

    /// A connection to `node` (opened on first use).
    pub fn node(&mut self, node: i32) -> Result<&mut Connection, Failed> {
        if !self.by_node.contains_key(&node) {
            let address = self
                .addresses
                .get(&node)
                .ok_or_else(|| Failed(format!("node {node} is not in the cluster's metadata")))?
                .clone();
            self.by_node.insert(node, self.args.open(&address)?);
        }
        Ok(self.by_node.get_mut(&node).expect("inserted above"))
    }

    /// The controller (where topics are created, deleted and grown); the bootstrap broker
    /// when Metadata names none.
    pub fn controller(&mut self) -> Result<&mut Connection, Failed> {
        if self.controller >= 0 && self.addresses.contains_key(&self.controller) {
            let controller = self.controller;
            return self.node(controller);
        }
        Ok(&mut self.bootstrap)
    }

    /// The coordinator of `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Connection, Failed> {
        let mut request = FindCoordinatorRequest::default();
        request.key = str_bytes(group);
        request.key_type = 0;
        let response: FindCoordinatorResponse = self.bootstrap.call(0, 3, &request)?;
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("FindCoordinator for group {group}"),
                error_code: response.error_code,
            }
            .into());
        }
        let node = response.node_id.0;
        self.addresses
            .insert(node, format!("{}:{}", response.host, response.port));
        self.node(node)
    }

    /// One topic's partitions: index -> (leader, replicas, in-sync replicas, leader epoch).
    /// Fails with the broker's error for an unknown topic.
    pub fn partitions(&mut self, topic: &str) -> Result<BTreeMap<i32, PartitionInfo>, Failed> {
        let response = self.metadata(Some(&[topic.to_string()]))?;
        let found = response
            .topics
            .first()
            .ok_or_else(|| Failed(format!("Metadata named no topic {topic}")))?;
        if found.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("topic {topic}"),
                error_code: found.error_code,
            }
            .into());
        }
        Ok(found
            .partitions
            .iter()
            .map(|partition| {
                (
                    partition.partition_index,
                    PartitionInfo {
                        leader: partition.leader_id.0,
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
                        in_sync: partition.isr_nodes.iter().map(|id| id.0).collect(),
                        error_code: partition.error_code,
                    },
                )
            })
            .collect())
    }

    /// ListOffsets at `timestamp` (-2 earliest, -1 latest, else a time in ms) for `partitions`
    /// of `topic`, each asked of its leader: partition -> offset, or the error code.
    pub fn offsets(
        &mut self,
        topic: &str,
        partitions: &BTreeMap<i32, PartitionInfo>,
        timestamp: i64,
    ) -> Result<BTreeMap<i32, Result<i64, i16>>, Failed> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        let mut offsets = BTreeMap::new();
        for (&index, info) in partitions {
            if info.leader < 0 {
                offsets.insert(index, Err(crate::protocol::error::LEADER_NOT_AVAILABLE));
            } else {
                by_leader.entry(info.leader).or_default().push(index);
            }
        }
        for (leader, indexes) in by_leader {
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            let mut wanted = list_offsets_request::ListOffsetsTopic::default();
            wanted.name = topic_name(topic);
            for &index in &indexes {
                let mut entry = list_offsets_request::ListOffsetsPartition::default();
                entry.partition_index = index;
                entry.timestamp = timestamp;
                entry.current_leader_epoch = -1;
                wanted.partitions.push(entry);
            }
            request.topics.push(wanted);
            let response: ListOffsetsResponse = self.node(leader)?.call(1, 9, &request)?;
            for partition in response.topics.iter().flat_map(|t| &t.partitions) {
                let answer = if partition.error_code == 0 {
                    Ok(partition.offset)
                } else {
                    Err(partition.error_code)
                };
                offsets.insert(partition.partition_index, answer);
            }
        }
        Ok(offsets)
    }
}

/// Where to read from or seek to: `start`, `end`, an offset, or `@MILLIS` (the first record
/// at or after that time; the end when there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Start,
    End,
    Offset(i64),
    Time(i64),
}

pub fn parse_position(flag: &str, text: &str) -> Result<Position, Failed> {
    let number = |digits: &str| digits.parse::<i64>().ok().filter(|n| *n >= 0);
    match text {
        "start" => Ok(Position::Start),
        "end" => Ok(Position::End),
        at if at.starts_with('@') => number(&at[1..])
            .map(Position::Time)
            .ok_or_else(|| Failed(format!("{flag} @MILLIS: `{at}` is not a time"))),
        offset => number(offset).map(Position::Offset).ok_or_else(|| {
            Failed(format!(
                "{flag} takes start, end, an offset or @MILLIS, got `{offset}`"
            ))
        }),
    }
}

impl Brokers {
    /// Each partition's offset at `position`; an `Offset` is kept as given, or with `clamp`
    /// brought within [log start, log end] (as Kafka's `--reset-offsets --to-offset` does).
    pub fn offsets_at(
        &mut self,
        topic: &str,
        layout: &BTreeMap<i32, PartitionInfo>,
        position: Position,
        clamp: bool,
    ) -> Result<BTreeMap<i32, i64>, Failed> {
        let timestamp = match position {
            Position::Start | Position::Offset(_) => EARLIEST_TIMESTAMP,
            Position::End => LATEST_TIMESTAMP,
            Position::Time(ms) => ms,
        };
        let found = self.offsets(topic, layout, timestamp)?;
        let ends = match position {
            Position::Time(_) | Position::Offset(_) => {
                Some(self.offsets(topic, layout, LATEST_TIMESTAMP)?)
            }
            Position::Start | Position::End => None,
        };
        let answer =
            |offsets: &BTreeMap<i32, Result<i64, i16>>, index: i32| match offsets.get(&index) {
                Some(Ok(offset)) => Ok(*offset),
                Some(Err(code)) => Err(Failed::from(ClientError::Kafka {
                    context: format!("ListOffsets {topic}-{index}"),
                    error_code: *code,
                })),
                None => Err(Failed(format!(
                    "ListOffsets: no answer for {topic}-{index}"
                ))),
            };
        let mut offsets = BTreeMap::new();
        for &index in layout.keys() {
            let found = answer(&found, index)?;
            let end = match &ends {
                Some(ends) => Some(answer(ends, index)?),
                None => None,
            };
            let offset = match (position, end) {
                (Position::Offset(offset), Some(end)) if clamp => offset.min(end).max(found),
                (Position::Offset(offset), _) => offset,
                // No record at or after the time: the end.
                (Position::Time(_), Some(end)) if found < 0 => end,
                _ => found,
            };
            offsets.insert(index, offset);
        }
        Ok(offsets)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub in_sync: Vec<i32>,
    pub error_code: i16,
}

/// `1,2,3`.
pub fn node_list(nodes: &[i32]) -> String {
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// An offset or its error, for a table cell.
pub fn offset_cell(offset: Option<&Result<i64, i16>>) -> String {
    match offset {
        Some(Ok(offset)) => offset.to_string(),
        Some(Err(code)) => format!("error {code}"),
        None => "-".into(),
    }
}

pub fn offset_json(offset: Option<&Result<i64, i16>>) -> serde_json::Value {
    match offset {
        Some(Ok(offset)) => serde_json::json!(offset),
        Some(Err(code)) => serde_json::json!({ "error_code": code }),
        None => serde_json::Value::Null,
    }
}
