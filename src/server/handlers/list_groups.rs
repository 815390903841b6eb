//! ListGroups: every group of every coordinator shard, filtered by state (v4) and type (v5).

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::group::request::ListGroups;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: ListGroupsRequest = request.decode()?;
    let mut response = ListGroupsResponse::default();
    // Kafka: Describe on the cluster lists every group; else those the principal may Describe.
    let every = crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Describe,
    );
    for listed_by_shard in shard.call_all(ListGroups).await {
        for group in listed_by_shard.unwrap_or_default() {
            if !every
                && !crate::server::authorize::allowed(
                    shard,
                    &request.session,
                    crate::security::acl::Operation::Describe,
                    crate::security::acl::ResourceType::Group,
                    &group.group_id,
                )
            {
                continue;
            }
            let state = group.state;
            let state_ok = body.states_filter.is_empty()
                || body
                    .states_filter
                    .iter()
                    .any(|wanted| wanted.as_str() == state);
            let type_ok = body.types_filter.is_empty()
                || body
                    .types_filter
                    .iter()
                    .any(|wanted| wanted.as_str().eq_ignore_ascii_case("classic"));
            if !(state_ok && type_ok) {
                continue;
            }
            let mut listed = ListedGroup::default();
            listed.group_id = GroupId(StrBytes::from_string(group.group_id));
            listed.protocol_type = StrBytes::from_string(group.protocol_type);
            if request.api_version >= 4 {
                listed.group_state = StrBytes::from_static_str(state);
            }
            if request.api_version >= 5 {
                listed.group_type = StrBytes::from_static_str("classic");
            }
            response.groups.push(listed);
        }
    }
    request.respond(&response)
}
