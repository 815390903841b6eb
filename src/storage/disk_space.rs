//! Free space of the file system a data directory lives on (`statvfs`), checked off the shard
//! (`blocking.rs`). The partition layer refuses appends while it is below
//! `log.dir.free.bytes.min`, so appends never run the disk full; a real ENOSPC or EIO still
//! takes a partition offline (fail-stop).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::StorageError;

/// Bytes available to unprivileged writers on `dir`'s file system.
pub async fn free_bytes(dir: &Path) -> Result<u64, StorageError> {
    Ok(space(dir).await?.usable_bytes)
}

/// A file system's size and what unprivileged writers may still use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// `statvfs` of `dir`'s file system, off the shard.
pub async fn space(dir: &Path) -> Result<DiskSpace, StorageError> {
    let owned = dir.to_path_buf();
    super::blocking::run("statvfs", dir, move || {
        let path = CString::new(owned.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
        // SAFETY: statvfs is plain data; the call writes into the struct we own.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DiskSpace {
            total_bytes: stat.f_blocks as u64 * stat.f_frsize as u64,
            usable_bytes: stat.f_bavail as u64 * stat.f_frsize as u64,
        })
    })
    .await
}
