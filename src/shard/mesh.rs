//! The channel mesh between shards: every shard can send a request to every other shard and
//! gets the answer back over a second mesh, matched by request id. Both meshes are glommio
//! bounded SPSC channels (`MESH_CHANNEL_CAPACITY` per shard pair); a full channel makes the
//! sender wait, which is the backpressure between shards. No locks: the pending-call table is
//! shard-local (`RefCell`, never borrowed across an `.await`). Requests and replies cross
//! type-erased (`request.rs`); `Shard::call` gives callers back the typed reply.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;

use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel::{self, LocalSender};

use super::request::{typed_reply, ErasedReply, ErasedRequest, Request};
use crate::ids::ShardId;

/// Messages in flight per (sender, receiver) pair before the sender waits. Large enough that
/// a burst of pipelined produce requests does not stall, small enough to bound memory.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {shard:?} is gone (its executor stopped)")]
    ShardGone { shard: ShardId },
}

/// What crosses the request mesh.
pub struct MeshRequest {
    pub id: u64,
    pub origin: ShardId,
    pub request: Box<dyn ErasedRequest>,
}

/// What crosses the response mesh back to `origin`.
pub struct MeshResponse {
    pub id: u64,
    pub reply: ErasedReply,
}

pub struct Mesh {
    shard_id: ShardId,
    requests: Senders<MeshRequest>,
    responses: Senders<MeshResponse>,
    pending: RefCell<HashMap<u64, LocalSender<ErasedReply>>>,
    next_id: Cell<u64>,
}

impl Mesh {
    pub fn new(
        shard_id: ShardId,
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

    /// Enqueues `request` for `target` (never this shard: local requests are served directly);
    /// the answer is awaited separately, so a caller can enqueue several requests in a fixed
    /// order before waiting for any of them.
    pub async fn send<R: Request>(
        &self,
        target: ShardId,
        request: R,
    ) -> Result<PendingAnswer<R>, MeshError> {
        assert_ne!(target, self.shard_id, "local calls do not cross the mesh");
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (sender, receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, sender);
        let message = MeshRequest {
            id,
            origin: self.shard_id,
            request: Box::new(request),
        };
        if self
            .requests
            .send_to(target.index(), message)
            .await
            .is_err()
        {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::ShardGone { shard: target });
        }
        Ok(PendingAnswer {
            target,
            receiver,
            request: PhantomData,
        })
    }

    /// Sends the answer to a request that came from `origin`.
    pub async fn respond(&self, origin: ShardId, id: u64, reply: ErasedReply) {
        let message = MeshResponse { id, reply };
        if self
            .responses
            .send_to(origin.index(), message)
            .await
            .is_err()
        {
            log::warn!(
                "shard {:?}: could not answer request {id} of shard {origin:?}: it is gone",
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
                let _ = sender.try_send(response.reply);
            }
            None => log::warn!(
                "shard {:?}: answer to unknown request {}",
                self.shard_id,
                response.id
            ),
        }
    }
}

/// An answer still to come from another shard, typed by its request.
pub struct PendingAnswer<R: Request> {
    target: ShardId,
    receiver: local_channel::LocalReceiver<ErasedReply>,
    request: PhantomData<fn() -> R>,
}

impl<R: Request> PendingAnswer<R> {
    pub async fn answer(self) -> Result<R::Reply, MeshError> {
        match self.receiver.recv().await {
            Some(reply) => Ok(typed_reply::<R>(reply)),
            None => Err(MeshError::ShardGone { shard: self.target }),
        }
    }
}
