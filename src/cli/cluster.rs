//! `sluice cluster info|health`: the brokers and controller Metadata names, and a health
//! verdict: every node answering ApiVersions (a node named as a replica but missing from
//! Metadata's broker list counts as down), every partition with a leader and its full replica
//! set in sync. `health` exits 1 when the cluster is not healthy, so scripts can wait on it.

use std::collections::BTreeSet;

use clap::Subcommand;
use serde_json::json;

use super::kafka::{emit, Brokers, ClientArgs, Failed, Format, Outcome};

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers
    Info,
    /// Nodes down, leaderless and under-replicated partitions (exit 1 when unhealthy)
    Health,
}

pub fn run(command: &ClusterCommand, args: &ClientArgs) -> Outcome {
    let mut brokers = Brokers::connect(args)?;
    match command {
        ClusterCommand::Info => info(&mut brokers, args),
        ClusterCommand::Health => health(&mut brokers, args),
    }
}

fn info(brokers: &mut Brokers, args: &ClientArgs) -> Outcome {
    let metadata = brokers.metadata(Some(&[]))?;
    let cluster_id = metadata
        .cluster_id
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let controller = metadata.controller_id.0;
    let mut nodes: Vec<_> = metadata.brokers.iter().collect();
    nodes.sort_by_key(|broker| broker.node_id.0);
    match args.format {
        Format::Json => {
            let brokers_json: Vec<_> = nodes
                .iter()
                .map(|broker| {
                    json!({
                        "node_id": broker.node_id.0,
                        "host": broker.host.to_string(),
                        "port": broker.port,
                        "rack": broker.rack.as_ref().map(|rack| rack.to_string()),
                    })
                })
                .collect();
            println!(
                "{:#}",
                json!({"cluster_id": cluster_id, "controller": controller, "brokers": brokers_json})
            );
            Ok(())
        }
        Format::Table => {
            println!(
                "{}",
                super::aligned(&[
                    vec!["CLUSTER".into(), cluster_id],
                    vec!["CONTROLLER".into(), controller.to_string()],
                ])
            );
            let rows = nodes
                .iter()
                .map(|broker| {
                    vec![
                        format!(
                            "{}{}",
                            broker.node_id.0,
                            if broker.node_id.0 == controller {
                                "*"
                            } else {
                                ""
                            }
                        ),
                        format!("{}:{}", broker.host, broker.port),
                        broker
                            .rack
                            .as_ref()
                            .map_or("-".to_string(), |rack| rack.to_string()),
                    ]
                })
                .collect();
            emit(
                args,
                &["ID", "ADDRESS", "RACK"],
                rows,
                serde_json::Value::Null,
            )
        }
    }
}

fn health(brokers: &mut Brokers, args: &ClientArgs) -> Outcome {
    let metadata = brokers.metadata(None)?;
    let listed: BTreeSet<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    let mut all_nodes = listed.clone();
    let mut leaderless = Vec::new();
    let mut under_replicated = Vec::new();
    for topic in &metadata.topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        for partition in &topic.partitions {
            all_nodes.extend(partition.replica_nodes.iter().map(|id| id.0));
            let label = format!("{name}-{}", partition.partition_index);
            if partition.leader_id.0 < 0 {
                leaderless.push(label);
            } else if partition.isr_nodes.len() < partition.replica_nodes.len() {
                under_replicated.push(label);
            }
        }
    }
    let mut down = Vec::new();
    for node in &all_nodes {
        let answers = match brokers.addresses().get(node) {
            Some(address) => args.open(address).is_ok(),
            None => false,
        };
        if !answers {
            down.push(*node);
        }
    }
    let healthy = down.is_empty() && leaderless.is_empty() && under_replicated.is_empty();
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    let down_text: Vec<String> = down.iter().map(i32::to_string).collect();
    let nodes_text: Vec<String> = all_nodes.iter().map(i32::to_string).collect();
    match args.format {
        Format::Json => println!(
            "{:#}",
            json!({
                "healthy": healthy,
                "controller": metadata.controller_id.0,
                "nodes": all_nodes,
                "nodes_down": down,
                "leaderless_partitions": leaderless,
                "under_replicated_partitions": under_replicated,
            })
        ),
        Format::Table => print!(
            "{}",
            super::aligned(&[
                vec!["HEALTHY".into(), healthy.to_string()],
                vec!["CONTROLLER".into(), metadata.controller_id.0.to_string()],
                vec!["NODES".into(), list(&nodes_text)],
                vec!["NODES-DOWN".into(), list(&down_text)],
                vec!["LEADERLESS-PARTITIONS".into(), list(&leaderless)],
                vec![
                    "UNDER-REPLICATED-PARTITIONS".into(),
                    list(&under_replicated)
                ],
            ])
        ),
    }
    if healthy {
        Ok(())
    } else {
        Err(Failed("the cluster is not healthy".into()))
    }
}
