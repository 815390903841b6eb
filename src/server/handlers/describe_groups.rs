//! DescribeGroups: state, protocol and members (with their metadata and assignment bytes) of
//! each group, asked of each group's coordinator shard. Unknown groups report state Dead.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::group::request::DescribeGroup;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeGroupsRequest = request.decode()?;
    let mut response = DescribeGroupsResponse::default();
    for group_id in &body.groups {
        let call = DescribeGroup {
            group_id: group_id.0.to_string(),
        };
        let mut described = DescribedGroup::default();
        described.group_id = group_id.clone();
        match super::authorized_group_call(
            shard,
            &request.session,
            crate::security::acl::Operation::Describe,
            call,
        )
        .await
        {
            Ok(group) => {
                described.error_code = group.error_code;
                described.group_state = StrBytes::from_static_str(group.state);
                described.protocol_type = StrBytes::from_string(group.protocol_type);
                described.protocol_data = StrBytes::from_string(group.protocol);
                for found in group.members {
                    let mut member = DescribedGroupMember::default();
                    member.member_id = StrBytes::from_string(found.member_id);
                    if request.api_version >= 4 {
                        member.group_instance_id =
                            found.group_instance_id.map(StrBytes::from_string);
                    }
                    member.client_id = StrBytes::from_string(found.client_id);
                    member.client_host = StrBytes::from_string(found.client_host);
                    member.member_metadata = found.metadata;
                    member.member_assignment = found.assignment;
                    described.members.push(member);
                }
            }
            Err(code) => described.error_code = code,
        }
        if !body.include_authorized_operations {
            described.authorized_operations = i32::MIN;
        }
        response.groups.push(described);
    }
    request.respond(&response)
}
