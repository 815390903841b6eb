//! DescribeCluster: this node as the only broker and the controller.

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
    response.cluster_id = StrBytes::from_string(
        crate::cluster::state::of(shard)
            .metadata()
            .cluster_id
            .clone(),
    );
    response.controller_id = BrokerId(shard.config.node_id);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(shard.config.node_id);
    broker.host = StrBytes::from_string(shard.config.advertise_host.clone());
    broker.port = i32::from(shard.config.advertise_port);
    response.brokers = vec![broker];
    if !body.include_cluster_authorized_operations {
        response.cluster_authorized_operations = i32::MIN;
    }
    request.respond(&response)
}
