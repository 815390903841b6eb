//! Shards: one glommio executor per core, each pinned to its CPU and owning its partitions
//! outright. A shard holds its own copy of the cluster metadata (placement table included), the
//! partition logs it owns, its read cache and its ends of the channel mesh. Requests for
//! partitions owned elsewhere go to the owner as typed messages (`message.rs`) over the mesh
//! (`mesh.rs`); `pool.rs` starts the executors.
//!
//! Nothing here is shared between threads except what crosses the mesh; inside a shard, state is
//! `Rc`/`RefCell` and no borrow is held across an `.await`.

pub mod append_order;
pub mod mesh;
pub mod message;
pub mod pool;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::Future;

use crate::cluster::metadata::{ClusterMetadata, TopicConfig};
use crate::config::Config;
use crate::group::coordinator::GroupCoordinator;
use crate::group::OFFSETS_TOPIC;
use crate::server::handlers;
use crate::storage::producer_state::ProducerStates;
use crate::storage::{partition_metadata, BatchCache, PartitionLog};
use append_order::AppendOrder;
use mesh::{Mesh, MeshError};
use message::{ShardRequest, ShardResponse};

/// Index of a shard in the pool, 0..cores.
pub type ShardId = usize;

/// The single writer of cluster metadata (until the controller Raft group exists).
pub const METADATA_SHARD: ShardId = 0;

pub struct Shard {
    pub id: ShardId,
    pub shard_count: usize,
    pub config: Config,
    metadata: RefCell<Rc<ClusterMetadata>>,
    /// topic name -> partition -> log, for the partitions this shard owns.
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<PartitionLog>>>>,
    /// Per owned partition: append turns and idempotent-producer state.
    partition_states: RefCell<HashMap<String, HashMap<i32, Rc<PartitionState>>>>,
    pub cache: Rc<BatchCache>,
    pub mesh: Mesh,
    /// Serialises metadata changes on shard 0.
    pub admin_gate: glommio::sync::Semaphore,
    /// Bytes of requests read and not yet answered (`queued.max.request.bytes`).
    pub request_memory: Rc<glommio::sync::Semaphore>,
    /// Requests from other shards being handled here: bounds the tasks the mesh can start.
    pub mesh_handlers: Rc<glommio::sync::Semaphore>,
    /// Consumer groups coordinated here (those of our `__consumer_offsets` partitions).
    pub groups: Rc<GroupCoordinator>,
    /// Producer ids reserved for this shard: [next, end).
    pub producer_ids: std::cell::Cell<(i64, i64)>,
    /// Resolved topic configs for the metadata version in `.0` (resolving allocates, and the
    /// produce path needs one per partition).
    topic_configs: RefCell<(u64, HashMap<String, Rc<TopicConfig>>)>,
}

/// Requests from other shards handled at once; past it the mesh channels fill and senders
/// wait. High because long-poll watches park here for up to their max wait.
pub const MESH_HANDLERS_IN_FLIGHT_MAX: u64 = 16_384;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl Shard {
    pub fn new(id: ShardId, config: Config, metadata: ClusterMetadata, mesh: Mesh) -> Shard {
        let shard_count = config.cores;
        let queued_max_request_bytes = config.queued_max_request_bytes;
        Shard {
            id,
            shard_count,
            cache: BatchCache::new(config.cache_bytes_per_shard),
            config,
            metadata: RefCell::new(Rc::new(metadata)),
            partitions: RefCell::new(HashMap::new()),
            partition_states: RefCell::new(HashMap::new()),
            mesh,
            admin_gate: glommio::sync::Semaphore::new(1),
            request_memory: Rc::new(glommio::sync::Semaphore::new(queued_max_request_bytes)),
            mesh_handlers: Rc::new(glommio::sync::Semaphore::new(MESH_HANDLERS_IN_FLIGHT_MAX)),
            groups: GroupCoordinator::new(),
            producer_ids: std::cell::Cell::new((0, 0)),
            topic_configs: RefCell::new((u64::MAX, HashMap::new())),
        }
    }

    pub fn metadata(&self) -> Rc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .cloned()
    }

    /// A topic's effective configuration under the current metadata version.
    pub fn topic_config(&self, topic: &str) -> Option<Rc<TopicConfig>> {
        let metadata = self.metadata();
        let mut cache = self.topic_configs.borrow_mut();
        if cache.0 != metadata.version {
            cache.1.clear();
            cache.0 = metadata.version;
        }
        if let Some(config) = cache.1.get(topic) {
            return Some(config.clone());
        }
        let resolved = Rc::new(TopicConfig::resolve(&self.config, metadata.topic(topic)?));
        cache.1.insert(topic.to_string(), resolved.clone());
        Some(resolved)
    }

    /// Append turns and producer state of an owned partition.
    pub fn partition_state(&self, topic: &str, partition: i32) -> Option<Rc<PartitionState>> {
        self.partition_states
            .borrow()
            .get(topic)
            .and_then(|states| states.get(&partition))
            .cloned()
    }

    /// The append turn queue of an owned partition.
    pub fn append_order(&self, topic: &str, partition: i32) -> Option<Rc<AppendOrder>> {
        self.partition_state(topic, partition)
            .map(|state| state.append_order.clone())
    }

    pub fn owned_partitions(&self) -> Vec<(String, i32, Rc<PartitionLog>)> {
        let partitions = self.partitions.borrow();
        let mut owned = Vec::new();
        for (topic, logs) in partitions.iter() {
            for (partition, log) in logs {
                owned.push((topic.clone(), *partition, log.clone()));
            }
        }
        owned
    }

    /// Partition count of `__consumer_offsets` (existing topic, else what it will be created
    /// with).
    pub fn offsets_partitions(&self) -> i32 {
        self.metadata()
            .topic(OFFSETS_TOPIC)
            .map(|topic| topic.placement.len() as i32)
            .unwrap_or(self.config.offsets_topic_num_partitions)
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Runs `request` on shard `target`: directly if it is this shard, else over the mesh.
    pub async fn call(
        self: &Rc<Self>,
        target: ShardId,
        request: ShardRequest,
    ) -> Result<ShardResponse, MeshError> {
        if target == self.id {
            Ok(self.on_request(request).await)
        } else {
            self.mesh.call(target, request).await
        }
    }

    /// Executes a request addressed to this shard (from the mesh or from a local caller).
    pub fn on_request(self: &Rc<Self>, request: ShardRequest) -> LocalFuture<'_, ShardResponse> {
        Box::pin(async move {
            match request {
                ShardRequest::Produce { items, acks } => {
                    ShardResponse::Produce(handlers::produce::on_produce(self, items, acks).await)
                }
                ShardRequest::Fetch { items, max_bytes } => {
                    ShardResponse::Fetch(handlers::fetch::on_fetch(self, &items, max_bytes).await)
                }
                ShardRequest::WatchHighWatermark { items, max_wait_ms } => {
                    handlers::fetch::on_watch_high_watermark(self, &items, max_wait_ms).await;
                    ShardResponse::WatchHighWatermark
                }
                ShardRequest::ListOffsets { items } => ShardResponse::ListOffsets(
                    handlers::list_offsets::on_list_offsets(self, &items).await,
                ),
                ShardRequest::Admin(admin) => {
                    assert_eq!(self.id, METADATA_SHARD, "admin requests go to shard 0");
                    ShardResponse::Admin(crate::cluster::controller::on_admin(self, admin).await)
                }
                ShardRequest::ApplyMetadata(metadata) => {
                    self.on_apply_metadata(*metadata).await;
                    ShardResponse::MetadataApplied
                }
                ShardRequest::AllocateProducerIds { count } => {
                    assert_eq!(self.id, METADATA_SHARD, "producer ids come from shard 0");
                    ShardResponse::ProducerIds(
                        crate::cluster::controller::on_allocate_producer_ids(self, count).await,
                    )
                }
                ShardRequest::Group(call) => {
                    ShardResponse::Group(Box::new(crate::group::on_group_call(self, *call).await))
                }
            }
        })
    }

    /// Installs a new metadata version: opens partitions newly placed here, closes and removes
    /// those of deleted topics, and pushes config changes to the logs.
    pub async fn on_apply_metadata(self: &Rc<Self>, metadata: ClusterMetadata) {
        let previous = self.metadata();
        if metadata.version <= previous.version && previous.version != 0 {
            return;
        }
        let metadata = Rc::new(metadata);
        *self.metadata.borrow_mut() = metadata.clone();
        self.remove_deleted_topics(&previous, &metadata).await;
        self.open_owned_partitions(&metadata).await;
    }

    async fn remove_deleted_topics(&self, previous: &ClusterMetadata, current: &ClusterMetadata) {
        for (name, topic) in &previous.topics {
            let still_there = current
                .topic(name)
                .is_some_and(|now| now.topic_id == topic.topic_id);
            if still_there {
                continue;
            }
            self.partition_states.borrow_mut().remove(name);
            let removed = self.partitions.borrow_mut().remove(name);
            for (partition, log) in removed.into_iter().flatten() {
                if let Err(error) = log.close().await {
                    log::warn!("closing deleted partition {name}-{partition}: {error}");
                }
            }
            // Every directory placed here goes, opened or not (an offline partition too).
            for partition in 0..topic.placement.len() as i32 {
                if previous.owner_shard(name, partition, self.shard_count) == Some(self.id) {
                    self.discard_partition_dir(name, partition, &topic.topic_id)
                        .await;
                }
            }
        }
    }

    /// Renames a partition directory out of the way (atomic, so a re-created topic of the same
    /// name starts empty) and deletes it in the background.
    async fn discard_partition_dir(&self, topic: &str, partition: i32, topic_id: &str) {
        let dir = self.partition_dir(topic, partition);
        let tomb = self
            .config
            .data_dir
            .join(tombstone_name(topic, partition, topic_id));
        match glommio::io::rename(&dir, &tomb)
            .await
            .map_err(std::io::Error::from)
        {
            Ok(()) => remove_dir_in_background(tomb),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => log::error!("renaming {} for deletion: {error}", dir.display()),
        }
    }

    /// Makes sure `dir` belongs to `topic_id`: a directory left by a deleted topic of the same
    /// name is discarded first. Returns whether the directory already records `topic_id`, or
    /// `None` if the check itself failed (disk error).
    async fn claim_partition_dir(
        &self,
        topic: &str,
        partition: i32,
        topic_id: &str,
    ) -> Option<bool> {
        let dir = self.partition_dir(topic, partition);
        match partition_metadata::read_topic_id(&dir).await {
            Ok(Some(found)) if found == topic_id => return Some(true),
            Ok(Some(found)) => {
                log::warn!(
                    "{}: left by a deleted topic (id {found}, now {topic_id}); discarding it",
                    dir.display()
                );
                self.discard_partition_dir(topic, partition, &found).await;
            }
            Ok(None) => {}
            Err(error) => {
                log::error!("{}: {error}", dir.display());
                return None;
            }
        }
        Some(false)
    }

    /// Opens every partition placed on this shard that is not open yet.
    pub async fn open_owned_partitions(&self, metadata: &ClusterMetadata) {
        for (name, topic) in &metadata.topics {
            let topic_config = TopicConfig::resolve(&self.config, topic);
            let log_config = topic_config.log_config(&self.config);
            for partition in 0..topic.placement.len() as i32 {
                if metadata.owner_shard(name, partition, self.shard_count) != Some(self.id) {
                    continue;
                }
                if let Err(error) = log_config.validate() {
                    log::error!("{name}-{partition}: config refused by storage: {error}");
                    continue;
                }
                if let Some(log) = self.partition(name, partition) {
                    log.set_config(log_config.clone());
                    continue;
                }
                let Some(recorded) = self
                    .claim_partition_dir(name, partition, &topic.topic_id)
                    .await
                else {
                    continue;
                };
                let dir = self.partition_dir(name, partition);
                let opened =
                    match PartitionLog::open(dir.clone(), log_config.clone(), self.cache.clone())
                        .await
                    {
                        Ok(log) if recorded => Ok(log),
                        Ok(log) => partition_metadata::write_topic_id(&dir, &topic.topic_id)
                            .await
                            .map(|()| log),
                        Err(error) => Err(error),
                    };
                match opened {
                    Ok(log) => {
                        let producers = rebuild_producer_states(&log).await;
                        self.partition_states
                            .borrow_mut()
                            .entry(name.clone())
                            .or_default()
                            .insert(
                                partition,
                                Rc::new(PartitionState {
                                    append_order: AppendOrder::new(),
                                    producers: RefCell::new(producers),
                                }),
                            );
                        self.partitions
                            .borrow_mut()
                            .entry(name.clone())
                            .or_default()
                            .insert(partition, log.clone());
                        if name == OFFSETS_TOPIC {
                            self.groups.load_partition(partition, &log).await;
                        }
                    }
                    // The partition stays offline (clients get KAFKA_STORAGE_ERROR / unknown);
                    // the rest of the broker keeps serving.
                    Err(error) => log::error!(
                        "shard {}: partition {name}-{partition} ({}) is offline: {error}",
                        self.id,
                        dir.display()
                    ),
                }
            }
        }
    }
}

/// What the shard keeps beside each owned partition's log.
pub struct PartitionState {
    /// Appends take turns in arrival order.
    pub append_order: Rc<AppendOrder>,
    /// Idempotent producers' recent sequences, for duplicate and gap detection.
    pub producers: RefCell<ProducerStates>,
}

/// Rebuilds idempotent-producer state from the batch headers of the last two segments (a
/// producer silent for longer than that is treated as new, as Kafka does once its batches are
/// gone: it may then resend without being deduplicated against what preceded).
async fn rebuild_producer_states(log: &Rc<PartitionLog>) -> ProducerStates {
    /// Bytes read per step while scanning.
    const SCAN_READ_BYTES: u32 = 4 << 20;
    let mut states = ProducerStates::default();
    let bases = log.segment_base_offsets();
    let start = if bases.len() >= 2 {
        bases[bases.len() - 2]
    } else {
        log.log_start_offset()
    };
    let mut offset = start.max(log.log_start_offset());
    while offset < log.high_watermark() {
        let Ok(chunks) = log.read(offset, SCAN_READ_BYTES).await else {
            break;
        };
        if chunks.is_empty() {
            break;
        }
        for chunk in chunks {
            for batch in crate::protocol::records::split_batches(chunk) {
                if let Ok(header) = crate::protocol::batch::BatchHeader::parse(&batch) {
                    states.record(&header, header.base_offset);
                    offset = offset.max(header.last_offset() + 1);
                }
            }
        }
    }
    states
}

/// `<topic>-<partition>.<topic id>-delete`, with the topic part shortened so the name fits in
/// 255 bytes (as Kafka does).
pub fn tombstone_name(topic: &str, partition: i32, topic_id: &str) -> String {
    const NAME_BYTES_MAX: usize = 255;
    let suffix = format!("-{partition}.{}-delete", topic_id.replace('-', ""));
    let keep = NAME_BYTES_MAX.saturating_sub(suffix.len()).min(topic.len());
    format!("{}{suffix}", &topic[..keep])
}

/// Deletes a renamed partition directory off the shard (the blocking pool does the unlinks).
pub fn remove_dir_in_background(dir: PathBuf) {
    glommio::spawn_local(async move {
        let shown = dir.display().to_string();
        let result = glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await;
        if let Err(error) = result {
            log::warn!("removing {shown}: {error}");
        }
    })
    .detach();
}
