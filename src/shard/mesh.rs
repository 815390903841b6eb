//! The channel mesh between shards: every shard can send a typed request to every other shard
//! and gets the answer back over a second mesh, matched by request id. Both meshes are glommio
//! bounded SPSC channels (`MESH_CHANNEL_CAPACITY` per shard pair); a full channel makes the
//! sender wait, which is the backpressure between shards. No locks: the pending-call table is
//! shard-local (`RefCell`, never borrowed across an `.await`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{self, LocalSender};

use super::message::{MeshRequest, MeshResponse, ShardRequest, ShardResponse};

/// Messages in flight per (sender, receiver) pair before the sender waits. Large enough that
/// a burst of pipelined produce requests does not stall, small enough to bound memory.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {shard} is gone (its executor stopped)")]
    ShardGone { shard: usize },
}

pub struct Mesh {
    shard_id: usize,
    requests: Senders<MeshRequest>,
    responses: Senders<MeshResponse>,
    pending: RefCell<HashMap<u64, LocalSender<ShardResponse>>>,
    next_id: Cell<u64>,
}

impl Mesh {
    pub fn new(
        shard_id: usize,
        requests: Senders<MeshRequest>,
        responses: Senders<MeshResponse>,
    ) -> Mesh {
        Mesh {
            shard_id,
            requests,
            responses,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        }
    }

    /// Sends `request` to `target` (never this shard: the caller runs local requests directly)
    /// and waits for its answer.
    pub async fn call(
        &self,
        target: usize,
        request: ShardRequest,
    ) -> Result<ShardResponse, MeshError> {
        let pending = self.send(target, request).await?;
        pending.answer().await
    }

    /// Enqueues `request` for `target`; the answer is awaited separately, so a caller can
    /// enqueue several requests in a fixed order before waiting for any of them.
    pub async fn send(
        &self,
        target: usize,
        request: ShardRequest,
    ) -> Result<PendingAnswer, MeshError> {
        assert_ne!(target, self.shard_id, "local calls do not cross the mesh");
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, sender);
        let message = MeshRequest {
            id,
            origin: self.shard_id,
            request,
        };
        if self.requests.send_to(target, message).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::ShardGone { shard: target });
        }
        Ok(PendingAnswer { target, receiver })
    }

    /// Sends the answer to a request that came from `origin`.
    pub async fn respond(&self, origin: usize, id: u64, response: ShardResponse) {
        let message = MeshResponse { id, response };
        if self.responses.send_to(origin, message).await.is_err() {
            log::warn!(
                "shard {}: could not answer request {id} of shard {origin}: it is gone",
                self.shard_id
            );
        }
    }

    /// Hands an answer that arrived on the response mesh to the waiting caller.
    pub fn on_response(&self, response: MeshResponse) {
        let sender = self.pending.borrow_mut().remove(&response.id);
        match sender {
            // The caller may have given up (connection closed); dropping the answer is fine.
            Some(sender) => {
                let _ = sender.try_send(response.response);
            }
            None => log::warn!(
                "shard {}: answer to unknown request {}",
                self.shard_id,
                response.id
            ),
        }
    }
}

/// An answer still to come from another shard.
pub struct PendingAnswer {
    target: usize,
    receiver: local_channel::LocalReceiver<ShardResponse>,
}

impl PendingAnswer {
    pub async fn answer(self) -> Result<ShardResponse, MeshError> {
        match self.receiver.recv().await {
            Some(response) => Ok(response),
            None => Err(MeshError::ShardGone { shard: self.target }),
        }
    }
}
