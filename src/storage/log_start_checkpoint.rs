//! `log-start-offset`: a partition's log start offset where it is above its first segment's
//! base (moved by DeleteRecords). A version line (`0`) and the offset. Without the file the log
//! starts at its first segment; retention deleting segments never lowers what the file says.
//!
//! Durability: replaced atomically (`small_file::replace`) before the move is visible, so a
//! record deleted and answered as deleted never comes back after a crash.

use std::ffi::OsStr;
use std::path::Path;

use super::StorageError;

pub const FILE_NAME: &str = "log-start-offset";
const TEMP_FILE_NAME: &str = "log-start-offset.tmp";
const FILE_BYTES_MAX: usize = 64;

/// True for the files this module owns (segment recovery skips them).
pub fn is_own_file(name: &OsStr) -> bool {
    name == FILE_NAME || name == TEMP_FILE_NAME
}

/// The offset in `dir`'s file, None if there is none.
pub async fn read(dir: &Path) -> Result<Option<i64>, StorageError> {
    let Some(bytes) = super::small_file::read(dir, FILE_NAME, FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    parse(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .ok_or_else(|| StorageError::Corrupt {
            path: dir.join(FILE_NAME),
            position: 0,
            detail: "expected `0` and an offset on two lines".into(),
        })
}

pub async fn write(dir: &Path, offset: i64) -> Result<(), StorageError> {
    super::small_file::replace(dir, FILE_NAME, TEMP_FILE_NAME, format(offset).into_bytes()).await
}

fn format(offset: i64) -> String {
    format!("0\n{offset}\n")
}

fn parse(text: &str) -> Option<i64> {
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("0") {
        return None;
    }
    let offset: i64 = lines.next()?.parse().ok()?;
    (offset >= 0 && lines.all(str::is_empty)).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::{format, parse};

    #[test]
    fn the_file_round_trips_and_refuses_anything_else() {
        assert_eq!(parse(&format(42)), Some(42));
        assert_eq!(parse("0\n-1\n"), None);
        assert_eq!(parse("1\n5\n"), None);
        assert_eq!(parse("0\n5\n6\n"), None);
        assert_eq!(parse(""), None);
    }
}
