//! File-system calls glommio has no asynchronous form of (listing a directory, `stat`,
//! `mkdir -p`, removing a file by path), run on the executor's blocking thread pool so they
//! never stall a shard: creating or opening a partition on a busy shard costs its produce and
//! fetch traffic nothing but the pool's turn.

use std::path::Path;

use super::StorageError;

/// Runs `call` off the shard; an I/O error is reported with `op` and `path`.
pub(crate) async fn run<T: Send + 'static>(
    op: &'static str,
    path: &Path,
    call: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    glommio::executor()
        .spawn_blocking(call)
        .await
        .map_err(|source| StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
}
