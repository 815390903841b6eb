//! ListPartitionReassignments (API 46, KIP-455): the replica moves in progress. Sluice has no
//! reassignment yet (a replica set changes only by creating partitions), so no move is ever in
//! progress and the answer is an empty list, from any broker (Kafka's brokers forward the
//! request to the controller; here every broker knows the answer). When reassignment lands
//! (`replication/mod.rs`, "Changing a replica set"), this lists the joint configurations.

use std::rc::Rc;

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::Request;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::Shard;

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let _body: ListPartitionReassignmentsRequest = request.decode()?;
    if !crate::server::authorize::cluster_allowed(
        shard,
        &request.session,
        crate::security::acl::Operation::Describe,
    ) {
        let mut refused = ListPartitionReassignmentsResponse::default();
        refused.error_code = crate::protocol::error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&refused);
    }
    let mut response = ListPartitionReassignmentsResponse::default();
    response.error_code = error::NONE;
    request.respond(&response)
}
