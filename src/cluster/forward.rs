//! Admin requests that reach a node which is not the active controller are forwarded to the
//! controller over the node links, as Kafka brokers forward them (KIP-590), and its answer goes
//! back to the client unchanged. Frames: `FRAME_FORWARD` (`u64 id`, JSON `Forwarded`) and
//! `FRAME_FORWARD_REPLY` (`u64 id`, JSON `ForwardedReply`). A forwarded request is never
//! forwarded again: a node that stopped leading answers NOT_CONTROLLER, and the client retries
//! (it is retriable). An answer that does not come within `FORWARD_TIMEOUT` is a
//! REQUEST_TIMED_OUT for the client; the change may still commit, as with any timed-out Kafka
//! admin request, and metadata shows the truth.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};
use serde::{Deserialize, Serialize};

use crate::cluster::admin::{AdminRequest, TopicOutcome};
use crate::cluster::controller;
use crate::cluster::controller_log::{
    Controller, QuorumStatus, FRAME_FORWARD, FRAME_FORWARD_REPLY, FRAME_HEARTBEAT,
};
use crate::ids::NodeId;
use crate::replication::transport::Frame;
use crate::shard::Shard;

pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Admin(AdminRequest),
    AllocateProducerIds(u32),
    DescribeQuorum,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardedReply {
    /// The outcomes, and the metadata log index the controller had applied when it answered.
    Admin(Vec<TopicOutcome>, u64),
    ProducerIds(Option<i64>),
    Quorum(QuorumStatus),
}

/// Requests this node forwarded and is waiting on (shard 0), by id and the node asked.
pub struct Forwarder {
    next_id: Cell<u64>,
    waiting: RefCell<HashMap<u64, (NodeId, LocalSender<ForwardedReply>)>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        // Ids start at a random point each run: a late reply to a request of an earlier run
        // of this node cannot answer a new one.
        Forwarder {
            next_id: Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 >> 1),
            waiting: RefCell::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
pub enum ForwardError {
    /// The frame could not be queued (no link to that node, or its queue is full).
    Unreachable,
    TimedOut,
}

/// Sends `request` to the controller at `to` and waits for its answer.
pub async fn forward(
    shard: &Shard,
    to: NodeId,
    request: Forwarded,
) -> Result<ForwardedReply, ForwardError> {
    let controller = shard.service::<Controller>();
    let forwarder = shard.service::<Forwarder>();
    let transport = controller
        .transport
        .as_ref()
        .ok_or(ForwardError::Unreachable)?;
    let id = forwarder.next_id.get().wrapping_add(1);
    forwarder.next_id.set(id);
    let (sender, receiver) = local_channel::new_bounded(1);
    forwarder.waiting.borrow_mut().insert(id, (to, sender));
    let frame = Frame {
        kind: FRAME_FORWARD,
        body: encode(id, &request),
    };
    if !transport.send(to, frame) {
        forwarder.waiting.borrow_mut().remove(&id);
        return Err(ForwardError::Unreachable);
    }
    let reply = futures_lite::future::or(async { receiver.recv().await }, async {
        glommio::timer::sleep(FORWARD_TIMEOUT).await;
        None
    })
    .await;
    forwarder.waiting.borrow_mut().remove(&id);
    reply.ok_or(ForwardError::TimedOut)
}

fn encode(id: u64, value: &impl Serialize) -> Bytes {
    let mut body = id.to_le_bytes().to_vec();
    serde_json::to_writer(&mut body, value).expect("forwarded values serialise");
    Bytes::from(body)
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<(u64, T)> {
    let id = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let value = serde_json::from_slice(&body[8..]).ok()?;
    Some((id, value))
}

/// The handler for non-Raft node frames on shard 0: runs forwarded requests here (as the
/// controller) and delivers replies to the requests this node forwarded.
pub fn frame_handler(shard: Rc<Shard>) -> Rc<dyn Fn(NodeId, Frame)> {
    Rc::new(move |from, frame| match frame.kind {
        FRAME_FORWARD => {
            let Some((id, request)) = decode::<Forwarded>(&frame.body) else {
                crate::warn_limited!("node {}: malformed forwarded request", from.0);
                return;
            };
            let shard = shard.clone();
            glommio::spawn_local(async move {
                let reply = match request {
                    Forwarded::Admin(request) => {
                        let outcomes = controller::on_forwarded_admin(&shard, request).await;
                        let applied = crate::cluster::state::of(&shard).metadata().raft_index;
                        ForwardedReply::Admin(outcomes, applied)
                    }
                    Forwarded::AllocateProducerIds(count) => ForwardedReply::ProducerIds(
                        controller::on_forwarded_producer_ids(&shard, count).await,
                    ),
                    Forwarded::DescribeQuorum => ForwardedReply::Quorum(
                        shard.service::<Controller>().quorum.borrow().clone(),
                    ),
                };
                let controller = shard.service::<Controller>();
                if let Some(transport) = &controller.transport {
                    transport.send(
                        from,
                        Frame {
                            kind: FRAME_FORWARD_REPLY,
                            body: encode(id, &reply),
                        },
                    );
                }
            })
            .detach();
        }
        FRAME_FORWARD_REPLY => {
            let Some((id, reply)) = decode::<ForwardedReply>(&frame.body) else {
                crate::warn_limited!("node {}: malformed forwarded reply", from.0);
                return;
            };
            let forwarder = shard.service::<Forwarder>();
            let mut waiting = forwarder.waiting.borrow_mut();
            // Only the node the request went to answers it.
            if waiting.get(&id).is_some_and(|(asked, _)| *asked == from) {
                if let Some((_, waiter)) = waiting.remove(&id) {
                    let _ = waiter.try_send(reply);
                }
            }
        }
        FRAME_HEARTBEAT => {
            shard
                .service::<Controller>()
                .heartbeats
                .borrow_mut()
                .insert(from, std::time::Instant::now());
        }
        kind if crate::replication::replicas::is_partition_frame(kind) => {
            crate::replication::replicas::on_frame(&shard, from, frame)
        }
        other => crate::warn_limited!("node {}: unknown frame kind {other}", from.0),
    })
}
