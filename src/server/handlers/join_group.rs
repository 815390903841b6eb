//! JoinGroup: forwarded to the group's coordinator shard, where the member parks until the
//! join phase ends (all members rejoined, or the rebalance timeout). Protocol metadata is
//! relayed byte for byte, so any client assignor (eager or cooperative-sticky) works.

use std::rc::Rc;

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::group::request::JoinGroup;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: JoinGroupRequest = request.decode()?;
    let version = request.api_version;
    let member_id = body.member_id.clone();
    let call = JoinGroup {
        request: body,
        version,
        client_id: request.client_id(),
        client_host: request.session.client_host.to_string(),
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
            let mut response = JoinGroupResponse::default();
            response.error_code = code;
            response.generation_id = -1;
            response.member_id = member_id;
            response
        }
    };
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::default());
    }
    request.respond(&response)
}
