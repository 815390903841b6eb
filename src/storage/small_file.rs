//! Small metadata files beside a partition's segments (`partition.metadata`,
//! `leader-epoch-checkpoint`), read whole and replaced atomically.
//!
//! Durability: `replace` writes a temporary file, fdatasyncs it, renames it over the old one and
//! fsyncs the directory, so after a crash the file holds either the old or the new contents.

use std::path::Path;

use super::StorageError;

fn io_error(op: &'static str, path: &Path, source: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::other(source.to_string()),
    }
}

/// The contents of `dir/name` (at most `bytes_max`), or None if there is no such file.
pub async fn read(
    dir: &Path,
    name: &str,
    bytes_max: usize,
) -> Result<Option<Vec<u8>>, StorageError> {
    let path = dir.join(name);
    let file = match glommio::io::BufferedFile::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            let error = std::io::Error::from(error);
            if error.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(io_error("open", &path, error));
        }
    };
    let read = file.read_at(0, bytes_max).await;
    let _ = file.close().await;
    let bytes = read.map_err(|error| io_error("read", &path, error))?;
    Ok(Some(bytes.to_vec()))
}

/// Replaces `dir/name` with `contents` atomically and durably (through `dir/temp_name`).
pub async fn replace(
    dir: &Path,
    name: &str,
    temp_name: &str,
    contents: Vec<u8>,
) -> Result<(), StorageError> {
    assert!(!contents.is_empty(), "{name}: empty contents");
    let temp = dir.join(temp_name);
    let final_path = dir.join(name);
    let file = glommio::io::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .buffered_open(&temp)
        .await
        .map_err(|error| io_error("create", &temp, error))?;
    let length = contents.len();
    let written = file
        .write_at(contents, 0)
        .await
        .map_err(|error| io_error("write", &temp, error))?;
    assert_eq!(written, length, "{name}: short write");
    file.fdatasync()
        .await
        .map_err(|error| io_error("sync", &temp, error))?;
    let _ = file.close().await;
    glommio::io::rename(&temp, &final_path)
        .await
        .map_err(|error| io_error("rename", &final_path, error))?;
    super::segment::sync_directory(dir).await
}
