//! `sluice topic create|list|describe|alter-config|add-partitions|delete|trim`: CreateTopics,
//! Metadata, DescribeConfigs and ListOffsets, IncrementalAlterConfigs, CreatePartitions,
//! DeleteTopics and DeleteRecords, each sent where Kafka wants it (the controller, or a
//! partition's leader).

use std::collections::BTreeMap;

use clap::Subcommand;
use kafka_protocol::messages::*;
use serde_json::json;

use super::kafka::{
    all_succeeded, emit, node_list, offset_cell, offset_json, str_bytes, text, Brokers, ClientArgs,
    Failed, Format, Outcome,
};
use crate::bench::client::{
    error_text, topic_name, ClientError, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create topics
    Create {
        #[arg(required = true)]
        names: Vec<String>,
        /// Partitions (default: the broker's num.partitions)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replicas of each partition (default: the broker's default.replication.factor)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i16,
        /// A topic configuration key (repeatable; `sluice config keys --topic` lists them)
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition and replica counts
    List {
        /// Include internal topics (__consumer_offsets)
        #[arg(short, long)]
        internal: bool,
    },
    /// A topic's partitions (leader, replicas, in-sync, offsets) and configuration
    Describe { name: String },
    /// Set or remove a topic's configuration keys
    AlterConfig {
        name: String,
        /// Set a key (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a key, back to its default (repeatable)
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic
    AddPartitions {
        name: String,
        /// How many partitions to add
        #[arg(short, long)]
        num: i32,
    },
    /// Delete topics
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete a topic's records below an offset (DeleteRecords: moves the log start offset)
    Trim {
        name: String,
        /// Partitions (default: all)
        #[arg(short, long, value_delimiter = ',')]
        partitions: Vec<i32>,
        /// New log start offset: a number, or `end` for the high watermark (everything)
        #[arg(short, long)]
        offset: String,
    },
}

pub fn run(command: &TopicCommand, args: &ClientArgs) -> Outcome {
    let mut brokers = Brokers::connect(args)?;
    match command {
        TopicCommand::Create {
            names,
            partitions,
            replicas,
            configs,
        } => create(&mut brokers, args, names, *partitions, *replicas, configs),
        TopicCommand::List { internal } => list(&mut brokers, args, *internal),
        TopicCommand::Describe { name } => describe(&mut brokers, args, name),
        TopicCommand::AlterConfig { name, set, delete } => {
            alter_config(&mut brokers, args, name, set, delete)
        }
        TopicCommand::AddPartitions { name, num } => add_partitions(&mut brokers, args, name, *num),
        TopicCommand::Delete { names } => delete(&mut brokers, args, names),
        TopicCommand::Trim {
            name,
            partitions,
            offset,
        } => trim(&mut brokers, args, name, partitions, offset),
    }
}

pub fn key_value(setting: &str) -> Result<(String, String), Failed> {
    setting
        .split_once('=')
        .map(|(key, value)| (key.trim().to_string(), value.to_string()))
        .ok_or_else(|| Failed(format!("expected KEY=VALUE, got `{setting}`")))
}

fn timeout_ms() -> i32 {
    super::kafka::BROKER_TIMEOUT_MS
}

fn create(
    brokers: &mut Brokers,
    args: &ClientArgs,
    names: &[String],
    partitions: i32,
    replicas: i16,
    configs: &[String],
) -> Outcome {
    let configs = configs
        .iter()
        .map(|setting| key_value(setting))
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = timeout_ms();
    for name in names {
        let mut topic = create_topics_request::CreatableTopic::default();
        topic.name = topic_name(name);
        topic.num_partitions = partitions;
        topic.replication_factor = replicas;
        for (key, value) in &configs {
            let mut config = create_topics_request::CreatableTopicConfig::default();
            config.name = str_bytes(key);
            config.value = Some(str_bytes(value));
            topic.configs.push(config);
        }
        request.topics.push(topic);
    }
    // v4+: -1 partitions or replicas take the broker's defaults.
    let lowest = if partitions < 0 || replicas < 0 { 4 } else { 2 };
    let response: CreateTopicsResponse = brokers.controller()?.call(lowest, 7, &request)?;
    let outcomes = response
        .topics
        .iter()
        .map(|topic| {
            (
                topic.name.to_string(),
                topic.error_code,
                topic.error_message.as_deref(),
            )
        })
        .collect();
    topic_outcomes(args, "CreateTopics", outcomes)
}

/// One outcome per topic (name, error code, the broker's message): printed as TOPIC and
/// STATUS (or JSON); fails if any failed.
fn topic_outcomes(
    args: &ClientArgs,
    what: &str,
    outcomes: Vec<(String, i16, Option<&str>)>,
) -> Outcome {
    item_outcomes(args, "TOPIC", what, outcomes)
}

/// One outcome per item (name, error code, the broker's message) under `label` and STATUS (or
/// JSON, keyed by the label in lower case); fails if any failed.
pub fn item_outcomes(
    args: &ClientArgs,
    label: &str,
    what: &str,
    outcomes: Vec<(String, i16, Option<&str>)>,
) -> Outcome {
    let rows = outcomes
        .iter()
        .map(|(item, code, message)| vec![item.clone(), status(*code, *message)])
        .collect();
    let key = label.to_ascii_lowercase();
    let json = outcomes
        .iter()
        .map(|(item, code, message)| {
            json!({key.as_str(): item, "error_code": code, "error_message": message})
        })
        .collect();
    emit(
        args,
        &[label, "STATUS"],
        rows,
        serde_json::Value::Array(json),
    )?;
    all_succeeded(
        what,
        outcomes.into_iter().map(|(item, code, _)| (item, code)),
    )
}

/// `OK`, or the error's name with the broker's message.
pub fn status(error_code: i16, message: Option<&str>) -> String {
    if error_code == 0 {
        return "OK".into();
    }
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{}: {message}", error_text(error_code)),
        None => error_text(error_code),
    }
}

fn list(brokers: &mut Brokers, args: &ClientArgs, internal: bool) -> Outcome {
    let response = brokers.metadata(None)?;
    let mut topics: Vec<_> = response
        .topics
        .iter()
        .filter(|topic| internal || !topic.is_internal)
        .collect();
    topics.sort_by_key(|topic| topic.name.as_ref().map(|n| n.to_string()));
    let name = |topic: &metadata_response::MetadataResponseTopic| {
        topic
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default()
    };
    let replicas = |topic: &metadata_response::MetadataResponseTopic| {
        topic
            .partitions
            .first()
            .map_or(0, |partition| partition.replica_nodes.len())
    };
    let rows = topics
        .iter()
        .map(|topic| {
            vec![
                name(topic),
                topic.partitions.len().to_string(),
                replicas(topic).to_string(),
            ]
        })
        .collect();
    let json = topics
        .iter()
        .map(|topic| {
            json!({
                "name": name(topic),
                "id": topic.topic_id.to_string(),
                "partitions": topic.partitions.len(),
                "replicas": replicas(topic),
                "internal": topic.is_internal,
            })
        })
        .collect();
    emit(
        args,
        &["NAME", "PARTITIONS", "REPLICAS"],
        rows,
        serde_json::Value::Array(json),
    )
}

/// DescribeConfigs config_source values, Kafka's names.
fn config_source(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Resource type of a topic in DescribeConfigs and IncrementalAlterConfigs.
const TOPIC_RESOURCE: i8 = 2;

fn describe(brokers: &mut Brokers, args: &ClientArgs, name: &str) -> Outcome {
    let partitions = brokers.partitions(name)?;
    let metadata = brokers.metadata(Some(&[name.to_string()]))?;
    let topic_id = metadata
        .topics
        .first()
        .map(|topic| topic.topic_id.to_string())
        .unwrap_or_default();
    let starts = brokers.offsets(name, &partitions, EARLIEST_TIMESTAMP)?;
    let ends = brokers.offsets(name, &partitions, LATEST_TIMESTAMP)?;
    let mut request = DescribeConfigsRequest::default();
    let mut resource = describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = TOPIC_RESOURCE;
    resource.resource_name = str_bytes(name);
    resource.configuration_keys = None;
    request.resources.push(resource);
    let response: DescribeConfigsResponse = brokers.bootstrap().call(1, 4, &request)?;
    let mut configs = Vec::new();
    for result in &response.results {
        if result.error_code != 0 {
            return Err(ClientError::Kafka {
                context: format!("DescribeConfigs for topic {name}"),
                error_code: result.error_code,
            }
            .into());
        }
        for config in &result.configs {
            configs.push((
                config.name.to_string(),
                if config.is_sensitive {
                    "(sensitive)".to_string()
                } else {
                    config.value.as_ref().map(text).unwrap_or_default()
                },
                config_source(config.config_source),
            ));
        }
    }
    configs.sort();
    let replicas = partitions.values().next().map_or(0, |p| p.replicas.len());
    match args.format {
        Format::Json => {
            let partitions_json: Vec<_> = partitions
                .iter()
                .map(|(index, info)| {
                    json!({
                        "partition": index,
                        "leader": info.leader,
                        "leader_epoch": info.leader_epoch,
                        "replicas": info.replicas,
                        "in_sync_replicas": info.in_sync,
                        "error_code": info.error_code,
                        "log_start_offset": offset_json(starts.get(index)),
                        "high_watermark": offset_json(ends.get(index)),
                    })
                })
                .collect();
            let configs_json: BTreeMap<_, _> = configs
                .iter()
                .map(|(key, value, source)| {
                    (key.clone(), json!({"value": value, "source": source}))
                })
                .collect();
            let json = json!({
                "name": name,
                "id": topic_id,
                "partitions": partitions_json,
                "replicas": replicas,
                "configs": configs_json,
            });
            println!("{json:#}");
        }
        Format::Table => {
            let summary = vec![
                vec!["NAME".to_string(), name.to_string()],
                vec!["ID".to_string(), topic_id],
                vec!["PARTITIONS".to_string(), partitions.len().to_string()],
                vec!["REPLICAS".to_string(), replicas.to_string()],
            ];
            print!("{}", super::aligned(&summary));
            let rows = partitions
                .iter()
                .map(|(index, info)| {
                    vec![
                        index.to_string(),
                        info.leader.to_string(),
                        info.leader_epoch.to_string(),
                        node_list(&info.replicas),
                        node_list(&info.in_sync),
                        offset_cell(starts.get(index)),
                        offset_cell(ends.get(index)),
                    ]
                })
                .collect();
            print!(
                "\nPARTITIONS\n{}",
                super::table(
                    &[
                        "PARTITION",
                        "LEADER",
                        "EPOCH",
                        "REPLICAS",
                        "IN-SYNC",
                        "LOG-START-OFFSET",
                        "HIGH-WATERMARK"
                    ],
                    rows
                )
            );
            let rows = configs
                .into_iter()
                .map(|(key, value, source)| vec![key, value, source.to_string()])
                .collect();
            print!(
                "\nCONFIGS\n{}",
                super::table(&["KEY", "VALUE", "SOURCE"], rows)
            );
        }
    }
    Ok(())
}

fn alter_config(
    brokers: &mut Brokers,
    args: &ClientArgs,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Outcome {
    if set.is_empty() && delete.is_empty() {
        return Err(Failed(
            "nothing to change: give --set KEY=VALUE or --delete KEY".into(),
        ));
    }
    let mut resource = incremental_alter_configs_request::AlterConfigsResource::default();
    resource.resource_type = TOPIC_RESOURCE;
    resource.resource_name = str_bytes(name);
    for setting in set {
        let (key, value) = key_value(setting)?;
        let mut config = incremental_alter_configs_request::AlterableConfig::default();
        config.name = str_bytes(&key);
        config.config_operation = 0; // SET
        config.value = Some(str_bytes(&value));
        resource.configs.push(config);
    }
    for key in delete {
        let mut config = incremental_alter_configs_request::AlterableConfig::default();
        config.name = str_bytes(key);
        config.config_operation = 1; // DELETE
        resource.configs.push(config);
    }
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources.push(resource);
    let response: IncrementalAlterConfigsResponse = brokers.bootstrap().call(0, 1, &request)?;
    let outcomes = response
        .responses
        .iter()
        .map(|result| {
            (
                result.resource_name.to_string(),
                result.error_code,
                result.error_message.as_deref(),
            )
        })
        .collect();
    topic_outcomes(args, "IncrementalAlterConfigs", outcomes)
}

fn add_partitions(brokers: &mut Brokers, args: &ClientArgs, name: &str, num: i32) -> Outcome {
    if num <= 0 {
        return Err(Failed(format!("--num must be positive, got {num}")));
    }
    let current = brokers.partitions(name)?.len() as i32;
    let mut topic = create_partitions_request::CreatePartitionsTopic::default();
    topic.name = topic_name(name);
    topic.count = current + num;
    let mut request = CreatePartitionsRequest::default();
    request.topics.push(topic);
    request.timeout_ms = timeout_ms();
    let response: CreatePartitionsResponse = brokers.controller()?.call(0, 3, &request)?;
    let rows = response
        .results
        .iter()
        .map(|result| {
            vec![
                result.name.to_string(),
                (current + num).to_string(),
                status(result.error_code, result.error_message.as_deref()),
            ]
        })
        .collect();
    let json = response
        .results
        .iter()
        .map(|result| {
            json!({
                "topic": result.name.to_string(),
                "partitions": current + num,
                "error_code": result.error_code,
                "error_message": result.error_message.as_ref().map(text),
            })
        })
        .collect();
    emit(
        args,
        &["TOPIC", "PARTITIONS", "STATUS"],
        rows,
        serde_json::Value::Array(json),
    )?;
    all_succeeded(
        "CreatePartitions",
        response
            .results
            .iter()
            .map(|result| (result.name.to_string(), result.error_code)),
    )
}

fn delete(brokers: &mut Brokers, args: &ClientArgs, names: &[String]) -> Outcome {
    let mut request = DeleteTopicsRequest::default();
    request.topic_names = names.iter().map(|name| topic_name(name)).collect();
    request.timeout_ms = timeout_ms();
    // v6 names topics in `topics` instead; v1..=5 is what every broker since Kafka 1.0 speaks.
    let response: DeleteTopicsResponse = brokers.controller()?.call(1, 5, &request)?;
    let outcomes = response
        .responses
        .iter()
        .map(|result| {
            (
                result
                    .name
                    .as_ref()
                    .map(|name| name.to_string())
                    .unwrap_or_default(),
                result.error_code,
                result.error_message.as_deref(),
            )
        })
        .collect();
    topic_outcomes(args, "DeleteTopics", outcomes)
}

fn trim(
    brokers: &mut Brokers,
    args: &ClientArgs,
    name: &str,
    partitions: &[i32],
    offset: &str,
) -> Outcome {
    let offset: i64 = match offset {
        "end" => -1,
        number => number
            .parse()
            .ok()
            .filter(|offset: &i64| *offset >= 0)
            .ok_or_else(|| Failed(format!("--offset takes a number or `end`, got `{number}`")))?,
    };
    let mut layout = brokers.partitions(name)?;
    if !partitions.is_empty() {
        if let Some(missing) = partitions.iter().find(|p| !layout.contains_key(p)) {
            return Err(Failed(format!("topic {name} has no partition {missing}")));
        }
        layout.retain(|index, _| partitions.contains(index));
    }
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (index, info) in &layout {
        by_leader.entry(info.leader).or_default().push(*index);
    }
    let mut results: BTreeMap<i32, (i64, i16)> = BTreeMap::new();
    for (leader, indexes) in by_leader {
        if leader < 0 {
            for index in indexes {
                results.insert(index, (-1, crate::protocol::error::LEADER_NOT_AVAILABLE));
            }
            continue;
        }
        let mut topic = delete_records_request::DeleteRecordsTopic::default();
        topic.name = topic_name(name);
        for &index in &indexes {
            let mut partition = delete_records_request::DeleteRecordsPartition::default();
            partition.partition_index = index;
            partition.offset = offset;
            topic.partitions.push(partition);
        }
        let mut request = DeleteRecordsRequest::default();
        request.topics.push(topic);
        request.timeout_ms = timeout_ms();
        let response: DeleteRecordsResponse = brokers.node(leader)?.call(0, 2, &request)?;
        for partition in response.topics.iter().flat_map(|t| &t.partitions) {
            results.insert(
                partition.partition_index,
                (partition.low_watermark, partition.error_code),
            );
        }
    }
    let rows = results
        .iter()
        .map(|(index, (low, code))| {
            vec![
                index.to_string(),
                if *code == 0 {
                    low.to_string()
                } else {
                    "-".into()
                },
                status(*code, None),
            ]
        })
        .collect();
    let json = results
        .iter()
        .map(|(index, (low, code))| {
            json!({"partition": index, "log_start_offset": low, "error_code": code})
        })
        .collect();
    emit(
        args,
        &["PARTITION", "LOG-START-OFFSET", "STATUS"],
        rows,
        serde_json::Value::Array(json),
    )?;
    all_succeeded(
        "DeleteRecords",
        results
            .iter()
            .map(|(index, (_, code))| (format!("{name}-{index}"), *code)),
    )
}
