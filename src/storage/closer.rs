//! The thread that closes the last descriptor of a deleted segment. Closing the last
//! descriptor of an unlinked file frees its blocks in the closing thread (ext4 evicts the
//! inode in the final `fput`: 4-16 ms for a 16 MiB segment on the test machine). On a shard
//! that stalled every connection of the shard; on the shard's glommio blocking thread it
//! delayed the truncate of a rolled segment queued behind it, which the flusher waits for
//! (perf/RESULTS.md, session 14). So the close goes to a thread of its own, one per process:
//! handing it a descriptor is a channel send and nothing waits for the close.
//!
//! `start` runs it before the shards pin themselves, so it may run on any CPU the process
//! may use; started lazily (tests) it inherits the affinity of the thread that first needs
//! it. The channel is the only thing shared, and only deletions use it.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

static CLOSER: OnceLock<Sender<OwnedFd>> = OnceLock::new();

/// Starts the closing thread if it is not running yet.
pub fn start() {
    closer();
}

/// Closes `descriptor` on the closing thread; inline if that thread could not be started.
pub(crate) fn close(descriptor: OwnedFd) {
    if let Err(unsent) = closer().send(descriptor) {
        drop(unsent.0);
    }
}

fn closer() -> &'static Sender<OwnedFd> {
    CLOSER.get_or_init(|| {
        let (sender, receiver) = channel::<OwnedFd>();
        let spawned = std::thread::Builder::new()
            .name("segment-closer".into())
            .spawn(move || receiver.into_iter().for_each(drop));
        if let Err(error) = spawned {
            // The receiver went with the closure: sends fail and `close` closes inline.
            log::warn!("cannot start the segment closing thread ({error}); closing inline");
        }
        sender
    })
}
