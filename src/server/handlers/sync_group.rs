//! SyncGroup: the leader hands in the assignment, which is persisted before every member of
//! the generation gets its part; followers wait for it.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::Request;
use crate::group::request::{MemberAssignment, MemberRef, SyncGroup};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: SyncGroupRequest = request.decode()?;
    let group_id = body.group_id.0.to_string();
    let call = SyncGroup {
        group_id,
        member: MemberRef {
            member_id: body.member_id.to_string(),
            group_instance_id: body.group_instance_id.as_ref().map(|id| id.to_string()),
            generation: body.generation_id,
        },
        assignments: body
            .assignments
            .iter()
            .map(|entry| MemberAssignment {
                member_id: entry.member_id.to_string(),
                assignment: entry.assignment.clone(),
            })
            .collect(),
    };
    let mut response = match super::authorized_group_call(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        call,
    )
    .await
    {
        Ok(response) => response,
        Err(code) => {
            let mut response = SyncGroupResponse::default();
            response.error_code = code;
            response
        }
    };
    if request.api_version < 5 {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    request.respond(&response)
}
