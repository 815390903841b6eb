//! Heartbeat: keeps a member's session alive; tells it to rejoin during a rebalance.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Request;
use crate::group::request::{Heartbeat, MemberRef};
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: HeartbeatRequest = request.decode()?;
    let group_id = body.group_id.0.to_string();
    let call = Heartbeat {
        group_id,
        member: MemberRef {
            member_id: body.member_id.to_string(),
            group_instance_id: body.group_instance_id.as_ref().map(|id| id.to_string()),
            generation: body.generation_id,
        },
    };
    let mut response = HeartbeatResponse::default();
    response.error_code = match super::authorized_group_call(
        shard,
        &request.session,
        crate::security::acl::Operation::Read,
        call,
    )
    .await
    {
        Ok(code) | Err(code) => code,
    };
    request.respond(&response)
}
