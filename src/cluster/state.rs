//! What the cluster layer keeps on every shard: its copy of the cluster metadata (applied in
//! version order), resolved topic configurations for that version, and — on shard 0 — the gate
//! that serialises metadata changes. Registered as a shard service at start.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::cluster::metadata::{ClusterMetadata, TopicConfig};
use crate::config::Config;
use crate::shard::Shard;

pub struct ClusterState {
    metadata: RefCell<Rc<ClusterMetadata>>,
    /// Resolved topic configs for the metadata version in `.0` (resolving allocates, and the
    /// produce path needs them).
    topic_configs: RefCell<(u64, HashMap<String, Rc<TopicConfig>>)>,
    /// Serialises metadata changes on shard 0.
    pub admin_gate: glommio::sync::Semaphore,
    /// Serialises applying metadata versions on this shard (start-up's and the mesh's), so a
    /// partition is never opened by two versions at once.
    pub apply_gate: glommio::sync::Semaphore,
    /// Producer ids reserved for this shard: [next, end).
    pub producer_ids: Cell<(i64, i64)>,
}

impl ClusterState {
    pub fn new(metadata: ClusterMetadata) -> ClusterState {
        ClusterState {
            metadata: RefCell::new(Rc::new(metadata)),
            topic_configs: RefCell::new((u64::MAX, HashMap::new())),
            admin_gate: glommio::sync::Semaphore::new(1),
            apply_gate: glommio::sync::Semaphore::new(1),
            producer_ids: Cell::new((0, 0)),
        }
    }

    pub fn metadata(&self) -> Rc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub(crate) fn set_metadata(&self, metadata: Rc<ClusterMetadata>) {
        *self.metadata.borrow_mut() = metadata;
    }

    /// A topic's effective configuration under the current metadata version.
    pub fn topic_config(&self, config: &Config, topic: &str) -> Option<Rc<TopicConfig>> {
        let metadata = self.metadata();
        let mut cache = self.topic_configs.borrow_mut();
        if cache.0 != metadata.version {
            cache.1.clear();
            cache.0 = metadata.version;
        }
        if let Some(resolved) = cache.1.get(topic) {
            return Some(resolved.clone());
        }
        let resolved = Rc::new(TopicConfig::resolve(config, metadata.topic(topic)?));
        cache.1.insert(topic.to_string(), resolved.clone());
        Some(resolved)
    }
}

/// The cluster state of `shard` (registered at start).
pub fn of(shard: &Shard) -> Rc<ClusterState> {
    shard.service::<ClusterState>()
}
