//! A value set off the data path (at start, by an admin request, by a refresh thread) and read
//! by every shard: the TLS configuration, the OAUTHBEARER key set. The writer replaces it whole
//! under a lock and bumps a generation counter; each shard keeps its own copy and compares the
//! generation (one atomic load) before using it, so the lock is taken only when the value
//! changed, never per request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Published<T> {
    value: Mutex<Option<Arc<T>>>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    pub const fn new() -> Published<T> {
        Published {
            value: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    pub fn publish(&self, value: T) {
        // A panic while holding the lock cannot leave a half-written value: it is replaced whole.
        *self
            .value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(value));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn get(&self) -> Option<Arc<T>> {
        self.value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl<T> Default for Published<T> {
    fn default() -> Published<T> {
        Published::new()
    }
}

/// One shard's copy of a `Published` value.
pub struct ShardCopy<T> {
    cached: RefCell<Option<(u64, Arc<T>)>>,
}

impl<T> Default for ShardCopy<T> {
    fn default() -> ShardCopy<T> {
        ShardCopy {
            cached: RefCell::new(None),
        }
    }
}

impl<T> ShardCopy<T> {
    /// The value in force (None: never published).
    pub fn current(&self, published: &Published<T>) -> Option<Arc<T>> {
        let generation = published.generation.load(Ordering::Acquire);
        if let Some((cached, value)) = &*self.cached.borrow() {
            if *cached == generation {
                return Some(value.clone());
            }
        }
        let value = published.get()?;
        *self.cached.borrow_mut() = Some((generation, value.clone()));
        Some(value)
    }
}
