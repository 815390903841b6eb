//! InitProducerId for idempotent producers: a new producer id (unique across restarts: ids are
//! reserved in blocks in the cluster metadata before use), or an epoch bump of the caller's id
//! (KIP-360). Transactional ids are refused until a transaction coordinator exists.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::Request;
use crate::cluster::admin::AllocateProducerIds;
use crate::cluster::state;
use crate::protocol::error;
use crate::protocol::frame::{FrameError, ResponseFrame};
use crate::shard::{Shard, METADATA_SHARD};

/// Producer ids a shard reserves at a time (one metadata write per block).
pub const PRODUCER_ID_BLOCK: u32 = 1000;

/// A fresh producer id from this shard's block, reserving a new block when it is used up.
pub async fn next_producer_id(shard: &Rc<Shard>) -> Option<i64> {
    let cluster = state::of(shard);
    let (next, end) = cluster.producer_ids.get();
    if next < end {
        cluster.producer_ids.set((next + 1, end));
        return Some(next);
    }
    let request = AllocateProducerIds {
        count: PRODUCER_ID_BLOCK,
    };
    match shard.call(METADATA_SHARD, request).await {
        Ok(Some(first)) => {
            cluster
                .producer_ids
                .set((first + 1, first + i64::from(PRODUCER_ID_BLOCK)));
            Some(first)
        }
        Ok(None) | Err(_) => None,
    }
}

pub async fn handle(
    shard: &Rc<Shard>,
    mut request: Request,
) -> Result<Option<ResponseFrame>, FrameError> {
    let body: InitProducerIdRequest = request.decode()?;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if body
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty())
    {
        response.error_code = error::COORDINATOR_NOT_AVAILABLE;
        return request.respond(&response);
    }
    if !crate::server::authorize::idempotent_producer_allowed(shard, &request.session) {
        response.error_code = error::CLUSTER_AUTHORIZATION_FAILED;
        return request.respond(&response);
    }
    // An epoch bump (KIP-360) only for an id this cluster handed out; anything else gets a
    // fresh id, so a forged or foreign id can never fence a producer that owns it later.
    let handed_out = body.producer_id.0 < state::of(shard).metadata().next_producer_id;
    let bump = body.producer_id.0 >= 0 && body.producer_epoch >= 0 && handed_out;
    if bump && body.producer_epoch < i16::MAX - 1 {
        response.producer_id = body.producer_id;
        response.producer_epoch = body.producer_epoch + 1;
        return request.respond(&response);
    }
    match next_producer_id(shard).await {
        Some(producer_id) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = 0;
        }
        None => response.error_code = error::COORDINATOR_NOT_AVAILABLE,
    }
    request.respond(&response)
}
