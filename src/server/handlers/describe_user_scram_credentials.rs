//! DescribeUserScramCredentials (v0): each user's SCRAM mechanisms and iteration counts (never
//! salts or keys). No list: every user. A named user without credentials is
//! RESOURCE_NOT_FOUND; a user named twice is DUPLICATE_RESOURCE.

use std::rc::Rc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeUserScramCredentialsRequest = request.decode()?;
    if !crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Describe,
    ) {
        let mut refused = DescribeUserScramCredentialsResponse::default();
        refused.error_code = crate::protocol::error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&refused);
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    let names: Vec<String> = match &body.users {
        Some(users) => users.iter().map(|user| user.name.to_string()).collect(),
        None => metadata.users.keys().cloned().collect(),
    };
    let mut response = DescribeUserScramCredentialsResponse::default();
    for (position, name) in names.iter().enumerate() {
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = StrBytes::from_string(name.clone());
        if names[..position].contains(name) || names[position + 1..].contains(name) {
            result.error_code = error::DUPLICATE_RESOURCE;
            result.error_message = Some(StrBytes::from_static_str("user named twice"));
        } else if let Some(credentials) = metadata.users.get(name) {
            result.credential_infos = credentials
                .iter()
                .map(|credential| {
                    let mut info = CredentialInfo::default();
                    info.mechanism = credential.mechanism.kafka_type();
                    info.iterations = credential.iterations as i32;
                    info
                })
                .collect();
        } else {
            result.error_code = error::RESOURCE_NOT_FOUND;
            result.error_message = Some(StrBytes::from_static_str("no such user"));
        }
        response.results.push(result);
    }
    request.respond(&response)
}
