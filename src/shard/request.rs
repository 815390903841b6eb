//! Typed requests between shards. Every request type names its own reply type
//! (`Request::Reply`), and `Shard::call` returns exactly that type: a mismatched reply cannot
//! compile. On the mesh a request travels type-erased (`ErasedRequest`) and its reply comes
//! back as `Box<dyn Any>`, which `Shard::call` turns back into `R::Reply` — the only place the
//! two meet, so the downcast cannot fail unless this file is wrong (asserted).
//!
//! The owning shard serves a request by calling `Request::serve`. Requests of the layers above
//! (cluster metadata, consumer groups) implement it in their own layer and reach their state
//! through the services they registered on the shard (`Shard::service`): this layer names none
//! of them. The partition requests below are served by the partition layer.

use std::any::Any;
use std::rc::Rc;

use crate::futures::LocalFuture;
use crate::partition::operation::{
    DeleteRecordsItem, DeleteRecordsItemResult, DescribeProducersItemResult, FetchItem,
    FetchItemResult, ListOffsetsItem, ListOffsetsItemResult, LogDirReplica,
    OffsetForLeaderEpochItem, OffsetForLeaderEpochItemResult, ProduceItem, ProduceItemResult,
};
use crate::partition::{produce, read};

use super::Shard;

/// A request one shard sends another; `serve` runs on the receiving shard.
pub trait Request: Send + 'static {
    type Reply: Send + 'static;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply>;
}

/// A reply on its way back, type-erased for the response mesh.
pub type ErasedReply = Box<dyn Any + Send>;

/// A request on the request mesh, type-erased.
pub trait ErasedRequest: Send {
    fn serve_erased(self: Box<Self>, shard: Rc<Shard>) -> LocalFuture<'static, ErasedReply>;
}

impl<R: Request> ErasedRequest for R {
    fn serve_erased(self: Box<Self>, shard: Rc<Shard>) -> LocalFuture<'static, ErasedReply> {
        Box::pin(async move {
            let reply: ErasedReply = Box::new((*self).serve(shard).await);
            reply
        })
    }
}

/// Turns an erased reply back into the type its request declared.
pub fn typed_reply<R: Request>(reply: ErasedReply) -> R::Reply {
    match reply.downcast::<R::Reply>() {
        Ok(reply) => *reply,
        Err(_) => panic!(
            "reply to {} is not a {}",
            std::any::type_name::<R>(),
            std::any::type_name::<R::Reply>()
        ),
    }
}

/// Append batches to partitions of the receiving shard; answered once committed (acks != 0).
#[derive(Debug)]
pub struct Produce {
    pub items: Vec<ProduceItem>,
    pub acks: i16,
    /// When the request was read (`metrics::ProduceStage`).
    pub received: std::time::Instant,
}

impl Request for Produce {
    type Reply = Vec<ProduceItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            produce::produce(&shard.partitions, self.items, self.acks, self.received).await
        })
    }
}

/// Immediate read of each item, at most `max_bytes` in all (plus one whole first batch).
#[derive(Debug)]
pub struct Fetch {
    pub items: Vec<FetchItem>,
    pub max_bytes: u32,
}

impl Request for Fetch {
    type Reply = Vec<FetchItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move { read::fetch(&shard.partitions, &self.items, self.max_bytes).await })
    }
}

/// Resolves when any item's high watermark passes its fetch offset, or at the deadline.
#[derive(Debug)]
pub struct WatchHighWatermark {
    pub items: Vec<FetchItem>,
    pub max_wait_ms: u32,
}

impl Request for WatchHighWatermark {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            read::watch_high_watermark(&shard.partitions, &self.items, self.max_wait_ms).await
        })
    }
}

#[derive(Debug)]
pub struct ListOffsets {
    pub items: Vec<ListOffsetsItem>,
}

impl Request for ListOffsets {
    type Reply = Vec<ListOffsetsItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move { read::list_offsets(&shard.partitions, &self.items).await })
    }
}

#[derive(Debug)]
pub struct DeleteRecords {
    pub items: Vec<DeleteRecordsItem>,
    pub timeout: std::time::Duration,
}

impl Request for DeleteRecords {
    type Reply = Vec<DeleteRecordsItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            crate::partition::delete_records::delete_records(
                &shard.partitions,
                self.items,
                self.timeout,
            )
            .await
        })
    }
}

#[derive(Debug)]
pub struct OffsetsForLeaderEpoch {
    pub items: Vec<OffsetForLeaderEpochItem>,
}

impl Request for OffsetsForLeaderEpoch {
    type Reply = Vec<OffsetForLeaderEpochItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move { read::offsets_for_leader_epoch(&shard.partitions, &self.items) })
    }
}

/// Every replica the receiving shard hosts, with its size (DescribeLogDirs).
#[derive(Debug, Clone, Copy)]
pub struct DescribeLogDirs;

impl Request for DescribeLogDirs {
    type Reply = Vec<LogDirReplica>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            shard
                .partitions
                .all()
                .iter()
                .map(|partition| LogDirReplica {
                    topic_partition: partition.topic_partition.clone(),
                    size_bytes: partition.log().size_bytes(),
                    offset_lag: (partition.high_watermark() - partition.log_end_offset()).max(0),
                })
                .collect()
        })
    }
}

/// The idempotent producers of each partition, from its leader's producer state.
#[derive(Debug)]
pub struct DescribeProducers {
    pub items: Vec<crate::ids::TopicPartition>,
}

impl Request for DescribeProducers {
    type Reply = Vec<DescribeProducersItemResult>;
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, Self::Reply> {
        Box::pin(async move {
            self.items
                .iter()
                .map(|tp| match shard.partitions.get(&tp.topic, tp.partition) {
                    None => DescribeProducersItemResult::error(
                        crate::protocol::error::UNKNOWN_TOPIC_OR_PARTITION,
                    ),
                    Some(partition) => match partition.not_leader() {
                        Some((code, _)) => DescribeProducersItemResult::error(code),
                        None => DescribeProducersItemResult {
                            error_code: crate::protocol::error::NONE,
                            producers: partition.producers().borrow().snapshot(),
                        },
                    },
                })
                .collect()
        })
    }
}
