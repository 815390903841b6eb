//! DeleteAcls (v1-v3): removes the ACLs each filter matches (in this node's copy of the
//! metadata when the request arrives) through the controller, and lists them per filter.
//! Needs Alter on the cluster.

use std::rc::Rc;

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_acls::filter;
use super::{admin, Request};
use crate::cluster::admin::AdminRequest;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::acl::Operation;
use crate::server::authorize;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DeleteAclsRequest = request.decode()?;
    let permitted = authorize::cluster_allowed(shard, &request.session, Operation::Alter);
    let metadata = crate::cluster::state::of(shard).metadata();
    let mut results = Vec::with_capacity(body.filters.len());
    let mut doomed = Vec::new();
    for wire in &body.filters {
        let mut result = DeleteAclsFilterResult::default();
        if !permitted {
            result.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
            results.push(result);
            continue;
        }
        let wanted = match filter(
            wire.resource_type_filter,
            wire.resource_name_filter.as_deref(),
            wire.pattern_type_filter,
            wire.principal_filter.as_deref(),
            wire.host_filter.as_deref(),
            wire.operation,
            wire.permission_type,
        ) {
            Ok(wanted) => wanted,
            Err(reason) => {
                result.error_code = error::INVALID_REQUEST;
                result.error_message = Some(StrBytes::from_string(reason));
                results.push(result);
                continue;
            }
        };
        for acl in metadata.acls.iter().filter(|acl| wanted.matches(acl)) {
            let mut matching = DeleteAclsMatchingAcl::default();
            matching.resource_type = acl.resource_type.code();
            matching.resource_name = StrBytes::from_string(acl.resource_name.clone());
            matching.pattern_type = acl.pattern_type.code();
            matching.principal = StrBytes::from_string(acl.principal.clone());
            matching.host = StrBytes::from_string(acl.host.clone());
            matching.operation = acl.operation.code();
            matching.permission_type = acl.permission.code();
            result.matching_acls.push(matching);
            if !doomed.contains(acl) {
                doomed.push(acl.clone());
            }
        }
        results.push(result);
    }
    if !doomed.is_empty() {
        let outcomes = admin(shard, AdminRequest::DeleteAcls(doomed)).await;
        let failed =
            outcomes
                .first()
                .map_or(Some((error::UNKNOWN_SERVER_ERROR, None)), |outcome| {
                    (outcome.error_code != error::NONE)
                        .then(|| (outcome.error_code, outcome.error_message.clone()))
                });
        if let Some((code, message)) = failed {
            for result in results.iter_mut().filter(|r| !r.matching_acls.is_empty()) {
                result.error_code = code;
                result.error_message = message.clone().map(StrBytes::from_string);
                result.matching_acls.clear();
            }
        }
    }
    let mut response = DeleteAclsResponse::default();
    response.filter_results = results;
    request.respond(&response)
}
