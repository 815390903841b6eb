//! CreateAcls (v1-v3): new ACL bindings, committed through the controller into cluster
//! metadata. Needs Alter on the cluster. Each creation is checked as Kafka does (known resource
//! type, LITERAL or PREFIXED pattern, a concrete operation and permission, a `Type:name`
//! principal); a bad one is INVALID_REQUEST with the reason, the others are created.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{admin, Request};
use crate::cluster::admin::AdminRequest;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use crate::server::authorize;
use crate::shard::Shard;

/// A binding from its wire fields, or why it is refused.
pub fn binding(
    resource_type: i8,
    resource_name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("resource type {resource_type} cannot hold ACLs"))?,
        resource_name: resource_name.to_string(),
        pattern_type: match pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            other => return Err(format!("pattern type {other}: LITERAL or PREFIXED only")),
        },
        principal: principal.to_string(),
        host: host.to_string(),
        operation: Operation::from_code(operation)
            .ok_or_else(|| format!("operation {operation} is not one an ACL can name"))?,
        permission: match permission {
            2 => Permission::Deny,
            3 => Permission::Allow,
            other => return Err(format!("permission {other}: ALLOW or DENY only")),
        },
    };
    binding.validate()?;
    Ok(binding)
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: CreateAclsRequest = request.decode()?;
    let permitted = authorize::cluster_allowed(shard, &request.session, Operation::Alter);
    let mut results = Vec::with_capacity(body.creations.len());
    let mut accepted = Vec::new();
    for creation in &body.creations {
        let mut result = AclCreationResult::default();
        if !permitted {
            result.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        } else {
            match binding(
                creation.resource_type,
                &creation.resource_name,
                creation.resource_pattern_type,
                &creation.principal,
                &creation.host,
                creation.operation,
                creation.permission_type,
            ) {
                Ok(binding) => accepted.push((results.len(), binding)),
                Err(reason) => {
                    result.error_code = error::INVALID_REQUEST;
                    result.error_message = Some(StrBytes::from_string(reason));
                }
            }
        }
        results.push(result);
    }
    if !accepted.is_empty() {
        let bindings = accepted
            .iter()
            .map(|(_, binding)| binding.clone())
            .collect();
        let outcomes = admin(shard, AdminRequest::CreateAcls(bindings)).await;
        let (code, message) = outcomes.first().map_or(
            (
                error::UNKNOWN_SERVER_ERROR,
                Some("the controller did not answer".to_string()),
            ),
            |outcome| (outcome.error_code, outcome.error_message.clone()),
        );
        for (position, _) in accepted {
            results[position].error_code = code;
            results[position].error_message = message.clone().map(StrBytes::from_string);
        }
    }
    let mut response = CreateAclsResponse::default();
    response.results = results;
    request.respond(&response)
}
