//! `partition.metadata`: which topic (by topic id) a partition directory belongs to, in Kafka's
//! own format (`version: 0` / `topic_id: <id>`). A directory left behind by a deleted topic (a
//! crash between the metadata change and the directory removal) is recognised by its different
//! topic id, so a topic re-created under the same name never inherits the old data.
//!
//! Durability: the file is written to a temporary name, fdatasync'ed and renamed, then the
//! partition directory is fsync'ed, before the partition accepts appends.

use std::ffi::OsStr;
use std::path::Path;

use super::StorageError;

pub const FILE_NAME: &str = "partition.metadata";
const TEMP_FILE_NAME: &str = "partition.metadata.tmp";
/// The file is two short lines; anything longer is not ours.
const FILE_BYTES_MAX: usize = 4096;

/// True for the files this module owns (segment recovery skips them).
pub fn is_own_file(name: &OsStr) -> bool {
    name == FILE_NAME || name == TEMP_FILE_NAME
}

fn io_error(op: &'static str, path: &Path, source: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::other(source.to_string()),
    }
}

/// The topic id recorded in `dir`, if the directory has a metadata file.
pub async fn read_topic_id(dir: &Path) -> Result<Option<String>, StorageError> {
    let path = dir.join(FILE_NAME);
    let file = match glommio::io::BufferedFile::open(&path).await {
        Ok(file) => file,
        Err(error) => {
            let error = std::io::Error::from(error);
            if error.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(io_error("open partition.metadata", &path, error));
        }
    };
    let read = file.read_at(0, FILE_BYTES_MAX).await;
    let _ = file.close().await;
    let bytes = read.map_err(|error| io_error("read partition.metadata", &path, error))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(parse_topic_id(&text))
}

pub fn parse_topic_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id:"))
        .map(|id| id.trim().to_string())
}

/// Records `topic_id` as the owner of `dir` (which must exist).
pub async fn write_topic_id(dir: &Path, topic_id: &str) -> Result<(), StorageError> {
    let temp = dir.join(TEMP_FILE_NAME);
    let final_path = dir.join(FILE_NAME);
    let text = format!("version: 0\ntopic_id: {topic_id}\n").into_bytes();
    let file = glommio::io::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .buffered_open(&temp)
        .await
        .map_err(|error| io_error("create partition.metadata", &temp, error))?;
    let written = file
        .write_at(text, 0)
        .await
        .map_err(|error| io_error("write partition.metadata", &temp, error))?;
    assert!(written > 0, "empty partition.metadata write");
    file.fdatasync()
        .await
        .map_err(|error| io_error("sync partition.metadata", &temp, error))?;
    let _ = file.close().await;
    glommio::io::rename(&temp, &final_path)
        .await
        .map_err(|error| io_error("rename partition.metadata", &final_path, error))?;
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(|error| io_error("open partition dir", dir, error))?;
    directory
        .sync()
        .await
        .map_err(|error| io_error("sync partition dir", dir, error))?;
    let _ = directory.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_format() {
        assert_eq!(
            parse_topic_id("version: 0\ntopic_id: abc-123\n"),
            Some("abc-123".to_string())
        );
        assert_eq!(parse_topic_id("garbage"), None);
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .spawn(move || async move {
                assert_eq!(read_topic_id(&path).await.unwrap(), None);
                write_topic_id(&path, "0f0e").await.unwrap();
                assert_eq!(read_topic_id(&path).await.unwrap().as_deref(), Some("0f0e"));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
