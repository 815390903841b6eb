//! Shards: one glommio executor per core, each pinned to its CPU and owning its partitions
//! outright. A shard runs its executor (`pool.rs`), holds its copy of the placement table
//! (`placement.rs`) and the partitions it hosts (`partition::hosted`), routes requests to the
//! shard owning a partition and carries typed requests over the channel mesh (`request.rs`,
//! `mesh.rs`).
//!
//! This layer names no layer above it. The layers above (cluster metadata, consumer groups,
//! the server) register what they keep per shard as services (`Shard::register`) and serve
//! their own mesh requests by implementing `request::Request`.
//!
//! Nothing here is shared between threads except what crosses the mesh; inside a shard, state is
//! `Rc`/`RefCell` and no borrow is held across an `.await`.

pub mod mesh;
pub mod placement;
pub mod pool;
pub mod request;
pub mod shutdown;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::config::Config;
use crate::ids::{NodeId, ShardId};
use crate::partition::hosted::HostedPartitions;
use crate::storage::{BatchCache, Recovery};
use mesh::{Mesh, MeshError};
use placement::PlacementTable;
use request::Request;

pub use crate::futures::LocalFuture;

/// The single writer of cluster metadata (until the controller Raft group exists).
pub const METADATA_SHARD: ShardId = ShardId(0);

/// Requests from other shards handled at once; past it the mesh channels fill and senders
/// wait. High because long-poll watches park here for up to their max wait.
pub const MESH_HANDLERS_IN_FLIGHT_MAX: u64 = 16_384;

pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub node: NodeId,
    pub config: Config,
    placement: RefCell<Rc<PlacementTable>>,
    /// The replicas this shard hosts.
    pub partitions: HostedPartitions,
    pub mesh: Mesh,
    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`).
    pub request_memory: Rc<glommio::sync::Semaphore>,
    /// Requests from other shards being handled here: bounds the tasks the mesh can start.
    pub mesh_handlers: Rc<glommio::sync::Semaphore>,
    /// Per-shard state of the layers above, by type (registered once at start).
    services: RefCell<HashMap<TypeId, Rc<dyn Any>>>,
    pub shutdown: Rc<shutdown::ShutdownState>,
}

impl Shard {
    pub fn new(id: ShardId, config: Config, mesh: Mesh) -> Shard {
        Shard::with_recovery(id, config, mesh, Recovery::Full)
    }

    /// A shard whose partitions open with `recovery` (after a clean shutdown, a lighter one).
    pub fn with_recovery(id: ShardId, config: Config, mesh: Mesh, recovery: Recovery) -> Shard {
        let shard_count = config.cores;
        let node = NodeId(config.node_id);
        let queued_max_request_bytes = config.queued_max_request_bytes;
        let cache = BatchCache::new(config.cache_bytes_per_shard);
        Shard {
            id,
            shard_count,
            node,
            partitions: HostedPartitions::new(config.data_dir.clone(), cache, recovery),
            config,
            placement: RefCell::new(Rc::new(PlacementTable::new(0, node))),
            mesh,
            request_memory: Rc::new(glommio::sync::Semaphore::new(queued_max_request_bytes)),
            mesh_handlers: Rc::new(glommio::sync::Semaphore::new(MESH_HANDLERS_IN_FLIGHT_MAX)),
            services: RefCell::new(HashMap::new()),
            shutdown: Rc::new(shutdown::ShutdownState::default()),
        }
    }

    pub fn placement(&self) -> Rc<PlacementTable> {
        self.placement.borrow().clone()
    }

    /// Installs the placement of a newer metadata version (the layer owning metadata calls it).
    pub fn set_placement(&self, placement: PlacementTable) {
        let current = self.placement.borrow().version;
        assert!(
            placement.version >= current,
            "placement version {} after {current}",
            placement.version
        );
        *self.placement.borrow_mut() = Rc::new(placement);
    }

    /// The shard owning this node's replica of the partition, if this node hosts one.
    pub fn owner_shard(&self, topic: &str, partition: i32) -> Option<ShardId> {
        self.placement
            .borrow()
            .owner_shard(topic, partition, self.shard_count)
    }

    /// Registers the per-shard state of a layer above; each type once.
    pub fn register<T: Any>(&self, service: Rc<T>) {
        let previous = self
            .services
            .borrow_mut()
            .insert(TypeId::of::<T>(), service);
        assert!(
            previous.is_none(),
            "{} registered twice",
            std::any::type_name::<T>()
        );
    }

    /// A service registered at start. Asking for one never registered is a programmer error.
    pub fn service<T: Any>(&self) -> Rc<T> {
        let service = self.services.borrow().get(&TypeId::of::<T>()).cloned();
        match service.map(|service| service.downcast::<T>()) {
            Some(Ok(service)) => service,
            _ => panic!("{} is not registered", std::any::type_name::<T>()),
        }
    }

    /// Runs `request` on shard `target`: directly if it is this shard, else over the mesh.
    pub async fn call<R: Request>(
        self: &Rc<Self>,
        target: ShardId,
        request: R,
    ) -> Result<R::Reply, MeshError> {
        if target == self.id {
            Ok(request.serve(self.clone()).await)
        } else {
            self.mesh.send(target, request).await?.answer().await
        }
    }

    /// Runs `request` on every shard (this one included), concurrently; one outcome per shard,
    /// in shard order.
    pub async fn call_all<R: Request + Clone>(
        self: &Rc<Self>,
        request: R,
    ) -> Vec<Result<R::Reply, MeshError>> {
        let calls = (0..self.shard_count).map(|index| {
            let request = request.clone();
            async move { self.call(ShardId::from_index(index), request).await }
        });
        crate::futures::join_all(calls.collect()).await
    }
}

impl Shard {
    /// Sends each shard's share of `split` as one request (`make`), concurrently, and puts the
    /// per-item answers back at their positions in `results`. A shard that cannot be reached
    /// answers each of its items with `unreachable`.
    pub async fn scatter<T, R, X, F>(
        self: &Rc<Self>,
        split: Split<T>,
        results: &mut [X],
        make: F,
        unreachable: X,
    ) where
        R: Request<Reply = Vec<X>>,
        X: Clone,
        F: Fn(Vec<T>) -> R,
    {
        let calls = split.by_shard.into_iter().map(|(owner, items, positions)| {
            let count = items.len();
            let request = make(items);
            let unreachable = unreachable.clone();
            async move {
                let answers = match self.call(owner, request).await {
                    Ok(answers) => answers,
                    Err(_) => vec![unreachable; count],
                };
                assert_eq!(answers.len(), positions.len(), "one answer per item");
                (positions, answers)
            }
        });
        for (positions, answers) in crate::futures::join_all(calls.collect()).await {
            for (position, answer) in positions.into_iter().zip(answers) {
                results[position] = answer;
            }
        }
    }
}

/// Groups per-partition work by owning shard, remembering each item's position so answers can
/// be put back in request order.
pub struct Split<T> {
    pub by_shard: Vec<(ShardId, Vec<T>, Vec<usize>)>,
}

impl<T> Split<T> {
    pub fn new() -> Split<T> {
        Split {
            by_shard: Vec::new(),
        }
    }

    pub fn push(&mut self, shard: ShardId, position: usize, item: T) {
        match self
            .by_shard
            .iter_mut()
            .find(|(owner, _, _)| *owner == shard)
        {
            Some((_, items, positions)) => {
                items.push(item);
                positions.push(position);
            }
            None => self.by_shard.push((shard, vec![item], vec![position])),
        }
    }
}

impl<T> Default for Split<T> {
    fn default() -> Self {
        Split::new()
    }
}
