//! `sluice acl create|list|delete`: Kafka ACLs through CreateAcls, DescribeAcls and DeleteAcls
//! (what `kafka-acls.sh` sends). A resource is `--topic NAME`, `--group NAME`, `--cluster` or
//! `--transactional-id NAME`, literal unless `--prefixed` (`*` is every resource of the type);
//! `--principal User:alice` (or `User:*`), `--host` (default `*`), `--operation` (repeatable),
//! `--deny` for a deny ACL. `list` and `delete` treat every flag left out as "any"; `delete`
//! with no filter at all needs `--all`.

use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::kafka::{emit, str_bytes, text, Brokers, ClientArgs, Failed, Outcome};
use crate::bench::client::error_text;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACLs: one per operation given
    Create(AclArgs),
    /// ACLs matching the filters (none: every ACL)
    List(AclArgs),
    /// Remove the ACLs matching the filters
    Delete {
        #[command(flatten)]
        filter: AclArgs,
        /// Allow a delete with no filter (every ACL)
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AclArgs {
    #[arg(long, value_name = "NAME", group = "resource")]
    pub topic: Option<String>,
    #[arg(long, value_name = "NAME", group = "resource")]
    pub group: Option<String>,
    #[arg(long, group = "resource")]
    pub cluster: bool,
    #[arg(long, value_name = "ID", group = "resource")]
    pub transactional_id: Option<String>,
    /// The name is a prefix (PREFIXED pattern)
    #[arg(long)]
    pub prefixed: bool,
    /// `User:alice`, or `User:*` for everyone
    #[arg(long, value_name = "TYPE:NAME")]
    pub principal: Option<String>,
    /// Client address the ACL applies to (`*`: any)
    #[arg(long)]
    pub host: Option<String>,
    /// Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs,
    /// IdempotentWrite, ClusterAction or All (repeatable)
    #[arg(long = "operation", value_name = "OPERATION")]
    pub operations: Vec<String>,
    /// A deny ACL (default: allow)
    #[arg(long)]
    pub deny: bool,
}

impl AclArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(name) = &self.topic {
            Some((ResourceType::Topic, name.clone()))
        } else if let Some(name) = &self.group {
            Some((ResourceType::Group, name.clone()))
        } else if let Some(name) = &self.transactional_id {
            Some((ResourceType::TransactionalId, name.clone()))
        } else if self.cluster {
            Some((ResourceType::Cluster, CLUSTER_NAME.to_string()))
        } else {
            None
        }
    }

    fn operations(&self) -> Result<Vec<Operation>, Failed> {
        self.operations
            .iter()
            .map(|name| {
                Operation::parse(name)
                    .ok_or_else(|| Failed(format!("{name}: not an ACL operation")))
            })
            .collect()
    }

    fn pattern_code(&self) -> i8 {
        if self.prefixed {
            4
        } else {
            3
        }
    }

    fn is_empty(&self) -> bool {
        self.resource().is_none()
            && self.principal.is_none()
            && self.host.is_none()
            && self.operations.is_empty()
    }
}

pub fn run(command: &AclCommand, args: &ClientArgs) -> Outcome {
    let mut brokers = Brokers::connect(args)?;
    match command {
        AclCommand::Create(acl) => create(&mut brokers, args, acl),
        AclCommand::List(filter) => list(&mut brokers, args, filter),
        AclCommand::Delete { filter, all } => {
            if filter.is_empty() && !all {
                return Err(Failed(
                    "no filter: this would delete every ACL; add --all to mean it".into(),
                ));
            }
            delete(&mut brokers, args, filter)
        }
    }
}

fn create(brokers: &mut Brokers, args: &ClientArgs, acl: &AclArgs) -> Outcome {
    let (resource_type, name) = acl.resource().ok_or_else(|| {
        Failed("name a resource: --topic, --group, --cluster or --transactional-id".into())
    })?;
    let principal = acl.principal.clone().ok_or_else(|| {
        Failed("--principal is required (User:alice, or User:* for everyone)".into())
    })?;
    let operations = acl.operations()?;
    if operations.is_empty() {
        return Err(Failed("--operation is required".into()));
    }
    let mut request = CreateAclsRequest::default();
    for operation in &operations {
        let mut creation = AclCreation::default();
        creation.resource_type = resource_type.code();
        creation.resource_name = str_bytes(&name);
        creation.resource_pattern_type = acl.pattern_code();
        creation.principal = str_bytes(&principal);
        creation.host = str_bytes(acl.host.as_deref().unwrap_or("*"));
        creation.operation = operation.code();
        creation.permission_type = if acl.deny { 2 } else { 3 };
        request.creations.push(creation);
    }
    let response: CreateAclsResponse = brokers.controller()?.call(1, 3, &request)?;
    let outcomes: Vec<(String, i16, Option<String>)> = operations
        .iter()
        .zip(&response.results)
        .map(|(operation, result)| {
            (
                format!("{} {} {}", principal, operation.name(), name),
                result.error_code,
                result.error_message.as_ref().map(text),
            )
        })
        .collect();
    super::topic::item_outcomes(
        args,
        "ACL",
        "acl create",
        outcomes
            .iter()
            .map(|(acl, code, message)| (acl.clone(), *code, message.as_deref()))
            .collect(),
    )
}

/// The wire filter of `filter` (operation: its first, if any).
fn wire_filter(filter: &AclArgs) -> Result<(i8, Option<String>, i8, i8), Failed> {
    let (resource_type, name) = match filter.resource() {
        Some((kind, name)) => (kind.code(), Some(name)),
        None => (1, None),
    };
    let pattern = match (name.is_some(), filter.prefixed) {
        (_, true) => 4,
        (true, false) => 3,
        (false, false) => 1,
    };
    let operation = match filter.operations()?.as_slice() {
        [] => 1,
        [one] => one.code(),
        _ => {
            return Err(Failed(
                "list and delete take at most one --operation".into(),
            ))
        }
    };
    Ok((resource_type, name, pattern, operation))
}

fn list(brokers: &mut Brokers, args: &ClientArgs, filter: &AclArgs) -> Outcome {
    let (resource_type, name, pattern, operation) = wire_filter(filter)?;
    let mut request = DescribeAclsRequest::default();
    request.resource_type_filter = resource_type;
    request.resource_name_filter = name.map(StrBytes::from_string);
    request.pattern_type_filter = pattern;
    request.principal_filter = filter.principal.clone().map(StrBytes::from_string);
    request.host_filter = filter.host.clone().map(StrBytes::from_string);
    request.operation = operation;
    request.permission_type = if filter.deny { 2 } else { 1 };
    let response: DescribeAclsResponse = brokers.controller()?.call(1, 3, &request)?;
    if response.error_code != 0 {
        return Err(Failed(format!(
            "DescribeAcls: {}",
            error_text(response.error_code)
        )));
    }
    let mut rows = Vec::new();
    let mut listed = Vec::new();
    for resource in &response.resources {
        let kind = ResourceType::from_code(resource.resource_type).map_or("?", |k| k.name());
        let pattern = if resource.pattern_type == 4 {
            "prefixed"
        } else {
            "literal"
        };
        for acl in &resource.acls {
            let operation = Operation::from_code(acl.operation).map_or("?", |o| o.name());
            let permission = if acl.permission_type == 2 {
                "Deny"
            } else {
                "Allow"
            };
            rows.push(vec![
                kind.to_string(),
                text(&resource.resource_name),
                pattern.to_string(),
                text(&acl.principal),
                text(&acl.host),
                operation.to_string(),
                permission.to_string(),
            ]);
            listed.push(json!({
                "resource_type": kind, "resource_name": text(&resource.resource_name),
                "pattern": pattern, "principal": text(&acl.principal), "host": text(&acl.host),
                "operation": operation, "permission": permission,
            }));
        }
    }
    emit(
        args,
        &[
            "TYPE",
            "NAME",
            "PATTERN",
            "PRINCIPAL",
            "HOST",
            "OPERATION",
            "PERMISSION",
        ],
        rows,
        serde_json::Value::Array(listed),
    )
}

fn delete(brokers: &mut Brokers, args: &ClientArgs, filter: &AclArgs) -> Outcome {
    let (resource_type, name, pattern, operation) = wire_filter(filter)?;
    let mut wire = DeleteAclsFilter::default();
    wire.resource_type_filter = resource_type;
    wire.resource_name_filter = name.map(StrBytes::from_string);
    wire.pattern_type_filter = pattern;
    wire.principal_filter = filter.principal.clone().map(StrBytes::from_string);
    wire.host_filter = filter.host.clone().map(StrBytes::from_string);
    wire.operation = operation;
    wire.permission_type = if filter.deny { 2 } else { 1 };
    let mut request = DeleteAclsRequest::default();
    request.filters.push(wire);
    let response: DeleteAclsResponse = brokers.controller()?.call(1, 3, &request)?;
    let result = response
        .filter_results
        .first()
        .ok_or_else(|| Failed("DeleteAcls: no result".into()))?;
    if result.error_code != 0 {
        return Err(Failed(format!(
            "DeleteAcls: {}",
            error_text(result.error_code)
        )));
    }
    let rows = result
        .matching_acls
        .iter()
        .map(|acl| {
            vec![
                ResourceType::from_code(acl.resource_type)
                    .map_or("?", |k| k.name())
                    .to_string(),
                text(&acl.resource_name),
                text(&acl.principal),
                Operation::from_code(acl.operation)
                    .map_or("?", |o| o.name())
                    .to_string(),
                if acl.permission_type == 2 {
                    "Deny"
                } else {
                    "Allow"
                }
                .to_string(),
            ]
        })
        .collect::<Vec<_>>();
    let count = rows.len();
    emit(
        args,
        &["TYPE", "NAME", "PRINCIPAL", "OPERATION", "PERMISSION"],
        rows,
        json!({"deleted": count}),
    )
}
