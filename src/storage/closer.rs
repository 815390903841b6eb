//! The thread that frees deleted segments. Closing the last descriptor of an unlinked file
//! frees its blocks in the closing thread (ext4 evicts the inode in the final `fput`: 4-16 ms
//! for a 16 MiB segment on the test machine, far more when the disk is busy). On a shard that
//! stalled every connection of the shard (perf/RESULTS.md, session 14). So the shard hands the
//! last descriptor of a deleted segment to a thread of its own, one per process: a channel
//! send, and nothing waits for it.
//!
//! That thread shortens the file 1 MiB at a time before it closes it, so no single system call
//! frees more than 1 MiB: a kernel without preemption (this machine's) cannot stop a thread
//! inside a call, and whichever CPU the thread runs on (a shard's, or a client's) would
//! otherwise wait for the whole file. Truncating is safe only because the file is unlinked and
//! nothing else holds it (`Segment::close_deleted`).
//!
//! `start` runs it before the shards pin themselves, so it may run on any CPU the process may
//! use; started lazily (tests) it inherits the affinity of the thread that first needs it. The
//! channel is the only thing shared, and only deletions use it.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

/// The most one truncation step frees.
const FREE_STEP_BYTES: u64 = 1 << 20;

static CLOSER: OnceLock<Sender<OwnedFd>> = OnceLock::new();

/// Starts the closing thread if it is not running yet.
pub fn start() {
    closer();
}

/// Frees and closes the file behind `descriptor`, which must be the last descriptor of an
/// unlinked file that nothing reads any more, on the closing thread (inline if that thread
/// could not be started).
pub(crate) fn free_deleted(descriptor: OwnedFd) {
    if let Err(unsent) = closer().send(descriptor) {
        free(unsent.0);
    }
}

fn free(descriptor: OwnedFd) {
    let file = File::from(descriptor);
    let mut length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    while length > FREE_STEP_BYTES {
        length = (length - 1) / FREE_STEP_BYTES * FREE_STEP_BYTES;
        // A failed step leaves the rest to the close.
        if file.set_len(length).is_err() {
            break;
        }
    }
}

fn closer() -> &'static Sender<OwnedFd> {
    CLOSER.get_or_init(|| {
        let (sender, receiver) = channel::<OwnedFd>();
        let spawned = std::thread::Builder::new()
            .name("segment-closer".into())
            .spawn(move || receiver.into_iter().for_each(free));
        if let Err(error) = spawned {
            // The receiver went with the closure: sends fail and `free_deleted` frees inline.
            log::warn!("cannot start the segment closing thread ({error}); freeing inline");
        }
        sender
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;

    #[test]
    fn free_shortens_a_deleted_file_down_to_one_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment.log");
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&vec![7u8; (5 << 20) + 12345])
            .expect("write");
        let spare = file.try_clone().expect("dup");
        std::fs::remove_file(&path).expect("unlink");
        drop(file);
        super::free(OwnedFd::from(spare.try_clone().expect("dup")));
        // The descriptor kept here sees the same file: only the last step's bytes are left.
        assert_eq!(
            spare.metadata().expect("stat").len(),
            super::FREE_STEP_BYTES
        );
    }
}
