//! DescribeAcls (v1-v3): the ACLs a filter matches, grouped by resource pattern. Needs
//! Describe on the cluster. Filters as Kafka reads them: ANY (1) matches everything, MATCH (2)
//! a pattern type finds every ACL that applies to the named resource (literal, `*` and
//! prefixes).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::acl::{AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::server::authorize;
use crate::shard::Shard;

/// A filter from its wire fields, or why it is refused.
pub fn filter(
    resource_type: i8,
    resource_name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: match resource_type {
            1 => None,
            code => Some(
                ResourceType::from_code(code)
                    .ok_or_else(|| format!("unknown resource type {code}"))?,
            ),
        },
        resource_name: resource_name.map(str::to_string),
        pattern_type: match pattern_type {
            1 => None,
            2 => Some(None),
            3 => Some(Some(PatternType::Literal)),
            4 => Some(Some(PatternType::Prefixed)),
            other => return Err(format!("unknown pattern type {other}")),
        },
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: match operation {
            1 => None,
            code => Some(
                Operation::from_code(code).ok_or_else(|| format!("unknown operation {code}"))?,
            ),
        },
        permission: match permission {
            1 => None,
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            other => return Err(format!("unknown permission {other}")),
        },
    })
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeAclsRequest = request.decode()?;
    let mut response = DescribeAclsResponse::default();
    if !authorize::cluster_allowed(shard, &request.session, Operation::Describe) {
        response.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&response);
    }
    let wanted = match filter(
        body.resource_type_filter,
        body.resource_name_filter.as_deref(),
        body.pattern_type_filter,
        body.principal_filter.as_deref(),
        body.host_filter.as_deref(),
        body.operation,
        body.permission_type,
    ) {
        Ok(wanted) => wanted,
        Err(reason) => {
            response.error_code = error::INVALID_REQUEST;
            response.error_message = Some(StrBytes::from_string(reason));
            return request.respond(&response);
        }
    };
    let metadata = crate::cluster::state::of(shard).metadata();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in metadata.acls.iter().filter(|acl| wanted.matches(acl)) {
        let mut description = AclDescription::default();
        description.principal = StrBytes::from_string(acl.principal.clone());
        description.host = StrBytes::from_string(acl.host.clone());
        description.operation = acl.operation.code();
        description.permission_type = acl.permission.code();
        resources
            .entry((
                acl.resource_type.code(),
                acl.resource_name.clone(),
                acl.pattern_type.code(),
            ))
            .or_default()
            .push(description);
    }
    response.resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = resource_type;
            resource.resource_name = StrBytes::from_string(name);
            resource.pattern_type = pattern_type;
            resource.acls = acls;
            resource
        })
        .collect();
    request.respond(&response)
}
