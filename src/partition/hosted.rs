//! The partitions one shard hosts: lookup by (topic, partition), opening (claiming the
//! directory, recovering the log, rebuilding producer state and the epoch cache), closing, and
//! discarding the directories of deleted topics.
//!
//! Directories are `<log.dirs>/<topic>-<partition>/`, each recording its topic id in
//! `partition.metadata` (Kafka's file), so a directory left behind by a deleted topic is never
//! mistaken for a re-created topic of the same name: it is renamed out of the way
//! (`<topic>-<partition>.<topic id>-delete`, as Kafka names them) and deleted off the shard.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::futures::LocalFuture;
use crate::ids::{LeaderEpoch, TopicId, TopicPartition};
use crate::partition::leader_epoch::LeaderEpochCache;
use crate::partition::producer_state::ProducerStates;
use crate::partition::{Partition, PartitionConfig, Recovered};
use crate::protocol::batch::BatchHeader;
use crate::protocol::records::split_batches;
use crate::storage::{
    epoch_checkpoint, partition_metadata, BatchCache, PartitionLog, Recovery, StorageError,
};

/// Called with each partition this shard opens (the group coordinator replays its
/// `__consumer_offsets` partitions this way); registered at start by the layers above.
pub type OpenedHook = Box<dyn Fn(Rc<Partition>) -> LocalFuture<'static, ()>>;

/// How often each shard looks at the data directory's free space: how far past the floor a
/// burst can write before appends stop (one second of disk bandwidth).
const FREE_SPACE_CHECK_INTERVAL_MS: u64 = 1_000;

/// Bytes read per step when scanning a log at open.
const SCAN_READ_BYTES: u32 = 4 << 20;

pub struct HostedPartitions {
    data_dir: PathBuf,
    cache: Rc<BatchCache>,
    /// How much logs opened at start are checked (lighter after a clean shutdown).
    recovery: Recovery,
    /// topic name -> partition -> hosted replica.
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    opened_hooks: RefCell<Vec<Rc<OpenedHook>>>,
    /// The data directory's free space is below `log.dir.free.bytes.min`: appends are refused
    /// (`watch_free_space` keeps it current).
    space_low: Cell<bool>,
}

impl HostedPartitions {
    pub fn new(data_dir: PathBuf, cache: Rc<BatchCache>, recovery: Recovery) -> HostedPartitions {
        HostedPartitions {
            data_dir,
            cache,
            recovery,
            partitions: RefCell::new(HashMap::new()),
            opened_hooks: RefCell::new(Vec::new()),
            space_low: Cell::new(false),
        }
    }

    pub fn cache(&self) -> &Rc<BatchCache> {
        &self.cache
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Rc<Partition>> {
        let partitions = self.partitions.borrow();
        partitions
            .values()
            .flat_map(|by_index| by_index.values().cloned())
            .collect()
    }

    /// The replicas of `topic` hosted here.
    pub fn of_topic(&self, topic: &str) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)
            .map(|by_index| by_index.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_space_low(&self) -> bool {
        self.space_low.get()
    }

    /// Checks the data directory's free space every `FREE_SPACE_CHECK_INTERVAL_MS` against
    /// `floor_bytes`, forever; appends are refused while it is below and resume when it is not.
    pub async fn watch_free_space(&self, floor_bytes: u64) {
        loop {
            match crate::storage::disk_space::free_bytes(&self.data_dir).await {
                Ok(free) => {
                    let low = free < floor_bytes;
                    if low != self.space_low.get() {
                        if low {
                            log::error!(
                                "{}: {free} bytes free, below log.dir.free.bytes.min \
                                 ({floor_bytes}): produce refused until space returns",
                                self.data_dir.display()
                            );
                        } else {
                            log::warn!(
                                "{}: {free} bytes free again: produce resumes",
                                self.data_dir.display()
                            );
                        }
                        self.space_low.set(low);
                    }
                }
                Err(error) => crate::warn_limited!("free space check failed: {error}"),
            }
            glommio::timer::sleep(std::time::Duration::from_millis(
                FREE_SPACE_CHECK_INTERVAL_MS,
            ))
            .await;
        }
    }

    pub fn on_opened(&self, hook: OpenedHook) {
        self.opened_hooks.borrow_mut().push(Rc::new(hook));
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Opens (creating if new) this shard's replica of `topic_partition`. On failure the
    /// partition stays offline; the caller logs it and the rest of the shard keeps serving.
    pub async fn open(
        &self,
        topic_partition: TopicPartition,
        topic_id: TopicId,
        config: PartitionConfig,
        leader_epoch: LeaderEpoch,
        replicated: bool,
    ) -> Result<Rc<Partition>, StorageError> {
        let (topic, index) = (&topic_partition.topic, topic_partition.partition);
        assert!(
            self.get(topic, index).is_none(),
            "{topic_partition} opened twice"
        );
        config.log.validate()?;
        let recorded = self.claim_partition_dir(topic, index, topic_id).await?;
        let dir = self.partition_dir(topic, index);
        let log = PartitionLog::open_with(
            dir.clone(),
            config.log.clone(),
            self.cache.clone(),
            self.recovery,
        )
        .await?;
        let producers = rebuild_producer_states(&log).await;
        let (epochs, checkpoint_on_disk) = load_epoch_cache(&log).await?;
        let partition = Rc::new(Partition::new(
            topic_partition.clone(),
            topic_id,
            log,
            Recovered {
                topic_id_recorded: recorded,
                producers,
                epochs,
                checkpoint_on_disk,
            },
            LeaderEpoch::UNDEFINED,
            config,
        ));
        partition.set_leader_epoch(leader_epoch).await?;
        if replicated {
            // Known before the opened hooks run: a replica's group starts after them.
            partition.mark_replicated();
        }
        self.partitions
            .borrow_mut()
            .entry(topic.to_string())
            .or_default()
            .insert(index, partition.clone());
        let hooks: Vec<Rc<OpenedHook>> = self.opened_hooks.borrow().clone();
        for hook in hooks {
            hook(partition.clone()).await;
        }
        Ok(partition)
    }

    /// Closes the replicas of a deleted topic and discards the directories of `indexes` (every
    /// partition placed here, open or offline).
    pub async fn remove_topic(&self, topic: &str, topic_id: TopicId, indexes: &[i32]) {
        let removed = self.partitions.borrow_mut().remove(topic);
        for (index, partition) in removed.into_iter().flatten() {
            if let Err(error) = partition.log().close().await {
                log::warn!("closing deleted partition {topic}-{index}: {error}");
            }
        }
        for &index in indexes {
            self.discard_partition_dir(topic, index, topic_id).await;
        }
    }

    /// Flushes and closes every hosted replica (shutdown); true if every one closed cleanly
    /// (none offline, every flush, fdatasync and index write done).
    pub async fn close_all(&self) -> bool {
        let mut clean = true;
        for partition in self.all() {
            if partition.is_offline() {
                clean = false;
            }
            if let Err(error) = partition.log().close().await {
                log::error!("closing {}: {error}", partition.topic_partition);
                clean = false;
            }
        }
        clean
    }

    /// Renames a partition directory out of the way (atomic, so a re-created topic of the same
    /// name starts empty) and deletes it in the background.
    async fn discard_partition_dir(&self, topic: &str, partition: i32, topic_id: TopicId) {
        let dir = self.partition_dir(topic, partition);
        let tomb = self
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

    /// Makes sure the directory belongs to `topic_id`: one left by a deleted topic of the same
    /// name is discarded first. Returns whether the directory already records `topic_id`.
    async fn claim_partition_dir(
        &self,
        topic: &str,
        partition: i32,
        topic_id: TopicId,
    ) -> Result<bool, StorageError> {
        let dir = self.partition_dir(topic, partition);
        match partition_metadata::read_topic_id(&dir).await? {
            Some(found) if TopicId::parse(&found) == Some(topic_id) => Ok(true),
            Some(found) => {
                log::warn!(
                    "{}: left by a deleted topic (id {found}, now {topic_id}); discarding it",
                    dir.display()
                );
                let found = TopicId::parse(&found).unwrap_or_default();
                self.discard_partition_dir(topic, partition, found).await;
                Ok(false)
            }
            None => Ok(false),
        }
    }
}

/// The epoch cache from `leader-epoch-checkpoint`, checked against the log: entries past the
/// log end go, and those wholly below the log start. A missing or unreadable file (a data
/// directory from before epochs existed, a new partition, or damage) is rebuilt from the batch
/// headers. Also says whether the file exists now.
async fn load_epoch_cache(
    log: &Rc<PartitionLog>,
) -> Result<(LeaderEpochCache, bool), StorageError> {
    let loaded = match epoch_checkpoint::read(log.dir()).await {
        Ok(Some(entries)) => Some(LeaderEpochCache::from_entries(entries)),
        Ok(None) => None,
        Err(StorageError::Corrupt { detail, .. }) => {
            log::warn!(
                "{}: {} unreadable ({detail}); rebuilding it from the log",
                log.dir().display(),
                epoch_checkpoint::FILE_NAME
            );
            None
        }
        Err(error) => return Err(error),
    };
    let rebuilt = loaded.is_none();
    let mut epochs = match loaded {
        Some(epochs) => epochs,
        None => rebuild_epoch_cache(log).await,
    };
    let mut changed = epochs.truncate_from_end(log.log_end_offset());
    changed |= epochs.truncate_from_start(log.log_start_offset());
    let write = changed || (rebuilt && !epochs.entries().is_empty());
    if write {
        epoch_checkpoint::write(log.dir(), epochs.entries()).await?;
    }
    Ok((epochs, write || !rebuilt))
}

/// Scans every batch header for its `partitionLeaderEpoch`.
async fn rebuild_epoch_cache(log: &Rc<PartitionLog>) -> LeaderEpochCache {
    let mut epochs = LeaderEpochCache::default();
    scan_headers(log, log.log_start_offset(), |header| {
        if header.partition_leader_epoch >= 0 {
            epochs.assign(
                LeaderEpoch(header.partition_leader_epoch),
                header.base_offset,
            );
        }
    })
    .await;
    epochs
}

/// Rebuilds idempotent-producer state from the batch headers of the last two segments (a
/// producer silent for longer than that is treated as new, as Kafka does once its batches are
/// gone: it may then resend without being deduplicated against what preceded).
pub(crate) async fn rebuild_producer_states(log: &Rc<PartitionLog>) -> ProducerStates {
    let mut states = ProducerStates::default();
    let bases = log.segment_base_offsets();
    let start = if bases.len() >= 2 {
        bases[bases.len() - 2]
    } else {
        log.log_start_offset()
    };
    scan_headers(log, start.max(log.log_start_offset()), |header| {
        states.record(header, header.base_offset);
    })
    .await;
    states
}

/// Calls `visit` with the header of every durable batch from `start`, in offset order; stops
/// at the first read error (the log then goes offline on its own).
async fn scan_headers(log: &Rc<PartitionLog>, start: i64, mut visit: impl FnMut(&BatchHeader)) {
    let mut offset = start;
    while offset < log.durable_end_offset() {
        let Ok(chunks) = log.read(offset, SCAN_READ_BYTES).await else {
            break;
        };
        if chunks.is_empty() {
            break;
        }
        for chunk in chunks {
            for batch in split_batches(chunk) {
                if let Ok(header) = BatchHeader::parse(&batch) {
                    visit(&header);
                    offset = offset.max(header.last_offset() + 1);
                }
            }
        }
    }
}

/// `<topic>-<partition>.<topic id>-delete`, with the topic part shortened so the name fits in
/// 255 bytes (as Kafka does).
pub fn tombstone_name(topic: &str, partition: i32, topic_id: TopicId) -> String {
    const NAME_BYTES_MAX: usize = 255;
    let suffix = format!("-{partition}.{}-delete", topic_id.simple());
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
