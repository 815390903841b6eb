//! DescribeCluster: the registered, unfenced brokers and the active controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: DescribeClusterRequest = request.decode()?;
    let mut response = DescribeClusterResponse::default();
    if body.endpoint_type != 1 {
        // Only broker endpoints (type 1) exist; controller endpoints are not separate here.
        response.error_code = crate::protocol::error::UNSUPPORTED_VERSION;
        response.error_message = Some(StrBytes::from_static_str(
            "only endpoint type 1 (brokers) is served",
        ));
        return request.respond(&response);
    }
    let metadata = crate::cluster::state::of(shard).metadata();
    response.cluster_id = StrBytes::from_string(metadata.cluster_id.clone());
    response.controller_id = BrokerId(super::controller_id(shard));
    response.brokers = super::live_brokers(shard, &metadata, &request.session.listener.name)
        .into_iter()
        .map(|registered| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(registered.node_id.0);
            broker.host = StrBytes::from_string(registered.host);
            broker.port = i32::from(registered.port);
            broker.rack = registered.rack.map(StrBytes::from_string);
            broker
        })
        .collect();
    if !body.include_cluster_authorized_operations {
        response.cluster_authorized_operations = i32::MIN;
    }
    request.respond(&response)
}
