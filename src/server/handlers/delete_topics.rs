//! DeleteTopics, by name (all versions) or by topic id (v6). Shard 0 removes the topic from the
//! metadata; each owning shard closes the partitions and deletes their directories in the
//! background (renamed first, so a topic re-created with the same name starts clean).

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{admin, outcome_for, Request};
use crate::cluster::admin::AdminRequest;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DeleteTopicsRequest = request.decode()?;
    let metadata = crate::cluster::state::of(shard).metadata();
    // (name if resolvable, id as given)
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = body
        .topic_names
        .iter()
        .map(|name| (Some(name.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for state in &body.topics {
        let name = match &state.name {
            Some(name) => Some(name.0.to_string()),
            None => metadata
                .topic_by_id(&crate::ids::TopicId(*state.topic_id.as_bytes()))
                .map(|topic| topic.name.clone()),
        };
        targets.push((name, state.topic_id));
    }
    let permitted = |name: &str| {
        crate::server::authorize::allowed(
            shard,
            &request.session,
            crate::security::acl::Operation::Delete,
            crate::security::acl::ResourceType::Topic,
            name,
        )
    };
    let names: Vec<String> = targets
        .iter()
        .filter_map(|(name, _)| name.clone())
        .filter(|name| permitted(name))
        .collect();
    let outcomes = if names.is_empty() {
        Vec::new()
    } else {
        admin(shard, AdminRequest::DeleteTopics { names }).await
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, topic_id) in targets {
        let mut result = DeletableTopicResult::default();
        result.topic_id = topic_id;
        match name {
            Some(name) if !permitted(&name) => {
                result.error_code = error::TOPIC_AUTHORIZATION_FAILED;
                // A topic named by id keeps its name from a principal that may not see it.
                result.name = (topic_id.is_nil()).then(|| TopicName(StrBytes::from_string(name)));
            }
            Some(name) => {
                let outcome = outcome_for(&outcomes, &name);
                result.error_code = outcome.map_or(error::REQUEST_TIMED_OUT, |o| o.error_code);
                result.error_message = outcome
                    .and_then(|o| o.error_message.clone())
                    .map(StrBytes::from_string);
                if let Some(outcome) = outcome {
                    if outcome.error_code == error::NONE {
                        result.topic_id = uuid::Uuid::from_bytes(outcome.topic_id.0);
                    }
                }
                result.name = Some(TopicName(StrBytes::from_string(name)));
            }
            None => result.error_code = error::UNKNOWN_TOPIC_ID,
        }
        response.responses.push(result);
    }
    request.respond(&response)
}
