//! ApiVersions: advertises exactly `protocol::versions::SUPPORTED_APIS`. A request for a version
//! newer than Sluice knows gets Kafka's fallback: a v0-format answer with UNSUPPORTED_VERSION
//! and the supported ranges, so the client can retry with a version both sides speak.
//! Tagged fields at their defaults are omitted (librdkafka 2.0.2 mis-parses them otherwise).

use std::rc::Rc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{encode_response, FrameError, ResponseFrame};
use crate::protocol::versions::SUPPORTED_APIS;
use crate::shard::Shard;

fn response(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(api, min, max)| {
            let mut version = ApiVersion::default();
            version.api_key = *api as i16;
            version.min_version = *min;
            version.max_version = *max;
            version
        })
        .collect();
    response
}

pub async fn handle(
    _shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    // The body only carries client software name/version (v3+); a malformed one is an error.
    let _body: ApiVersionsRequest = request.decode()?;
    request.respond(&response(error::NONE))
}

pub fn unsupported_version_answer(correlation_id: i32) -> Result<ResponseFrame, FrameError> {
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &response(error::UNSUPPORTED_VERSION),
    )
}
