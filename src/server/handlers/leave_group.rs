//! LeaveGroup: one member (v0-2) or a batch of members by id or static instance id (v3+).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::Request;
use crate::group::request::{GroupCodes, LeaveGroup, LeavingMember};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: LeaveGroupRequest = request.decode()?;
    let version = request.api_version;
    let group_id = body.group_id.0.to_string();
    let members: Vec<LeavingMember> = if version >= 3 {
        body.members
            .iter()
            .map(|member| LeavingMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: body.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let call = LeaveGroup {
        group_id,
        members: members.clone(),
    };
    let GroupCodes {
        error_code: code,
        item_codes: codes,
    } = match super::authorized_group_call(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        call,
    )
    .await
    {
        Ok(answer) => answer,
        Err(code) => GroupCodes {
            error_code: code,
            item_codes: vec![code; members.len()],
        },
    };
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = code;
        for (leaving, member_code) in members.into_iter().zip(codes) {
            let mut member = MemberResponse::default();
            member.member_id = leaving.member_id.into();
            member.group_instance_id = leaving.group_instance_id.map(Into::into);
            member.error_code = member_code;
            response.members.push(member);
        }
    } else {
        response.error_code = if code != 0 {
            code
        } else {
            codes.first().copied().unwrap_or(code)
        };
    }
    request.respond(&response)
}
