//! SaslHandshake: the client names its mechanism; the answer lists the enabled ones
//! (`sasl.enabled.mechanisms`). After v1 the tokens come in SaslAuthenticate requests; after v0
//! (Kafka 0.10 clients) they come as bare size-prefixed frames, which the connection then
//! hands to `sasl_authenticate::raw_token` (librdkafka needs v0 advertised to use SASL at all,
//! and then speaks v1).

use std::rc::Rc;

use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::security::sasl::Mechanism;
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: SaslHandshakeRequest = request.decode()?;
    let enabled = &shard.config.sasl.enabled_mechanisms;
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = enabled
        .iter()
        .map(|name| StrBytes::from_string(name.clone()))
        .collect();
    let wanted = body.mechanism.as_str();
    response.error_code = if !request.session.listener.protocol.sasl() {
        error::ILLEGAL_SASL_STATE
    } else {
        match Mechanism::parse(wanted).filter(|_| enabled.iter().any(|name| name == wanted)) {
            None => error::UNSUPPORTED_SASL_MECHANISM,
            Some(mechanism) => match request.session.begin(mechanism, request.api_version == 0) {
                Ok(()) => error::NONE,
                Err(reason) => {
                    crate::warn_limited!(
                        "{}: SaslHandshake: {reason}",
                        request.session.client_host
                    );
                    error::ILLEGAL_SASL_STATE
                }
            },
        }
    };
    request.respond(&response)
}
