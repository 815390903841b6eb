//! DeleteGroups: removes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); a group with members answers NON_EMPTY_GROUP.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Request;
use crate::group::request::DeleteGroup;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DeleteGroupsRequest = request.decode()?;
    let mut response = DeleteGroupsResponse::default();
    for group_id in &body.groups_names {
        let call = DeleteGroup {
            group_id: group_id.0.to_string(),
        };
        let mut result = DeletableGroupResult::default();
        result.group_id = group_id.clone();
        result.error_code = match super::authorized_group_call(
            shard,
            &request.session,
            crate::security::acl::Operation::Delete,
            call,
        )
        .await
        {
            Ok(code) | Err(code) => code,
        };
        response.results.push(result);
    }
    request.respond(&response)
}
