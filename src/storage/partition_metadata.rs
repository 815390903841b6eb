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

/// The topic id recorded in `dir`, if the directory has a metadata file.
pub async fn read_topic_id(dir: &Path) -> Result<Option<String>, StorageError> {
    let bytes = super::small_file::read(dir, FILE_NAME, FILE_BYTES_MAX).await?;
    Ok(bytes.and_then(|bytes| parse_topic_id(&String::from_utf8_lossy(&bytes))))
}

pub fn parse_topic_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("topic_id:"))
        .map(|id| id.trim().to_string())
}

/// Records `topic_id` as the owner of `dir` (which must exist).
pub async fn write_topic_id(dir: &Path, topic_id: &str) -> Result<(), StorageError> {
    let text = format!("version: 0\ntopic_id: {topic_id}\n").into_bytes();
    super::small_file::replace(dir, FILE_NAME, TEMP_FILE_NAME, text).await
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
