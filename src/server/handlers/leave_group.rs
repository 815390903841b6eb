//! LeaveGroup: one member (v0-2) or a batch of members by id or static instance id (v3+).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{group_call, Request};
use crate::group::{GroupAnswer, GroupCall};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: LeaveGroupRequest = request.decode()?;
    let version = request.api_version;
    let group_id = body.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        body.members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let call = GroupCall::Leave {
        group_id: group_id.clone(),
        members: members.clone(),
    };
    let (code, codes) = match group_call(shard, &group_id, call).await {
        Ok(GroupAnswer::Codes(code, codes)) => (code, codes),
        Ok(GroupAnswer::Code(code)) | Err(code) => (code, vec![code; members.len()]),
        Ok(other) => panic!("leave answered with {other:?}"),
    };
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = code;
        for ((member_id, instance), member_code) in members.into_iter().zip(codes) {
            let mut member = MemberResponse::default();
            member.member_id = member_id.into();
            member.group_instance_id = instance.map(Into::into);
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
