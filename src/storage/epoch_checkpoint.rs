//! `leader-epoch-checkpoint`: a partition's leader-epoch cache on disk, in Kafka's format so
//! operators recognise it — a version line (`0`), a count line, then one `epoch start_offset`
//! line per entry, ascending. The cache itself (what the entries mean, when they change) is the
//! partition layer's; this file only stores and parses it.
//!
//! Durability: replaced atomically (`small_file::replace`): after a crash the file holds either
//! the old or the new list.

use std::ffi::OsStr;
use std::path::Path;

use super::StorageError;

pub const FILE_NAME: &str = "leader-epoch-checkpoint";
const TEMP_FILE_NAME: &str = "leader-epoch-checkpoint.tmp";
const FORMAT_VERSION: i32 = 0;
/// Entries kept in the file; a partition changes leader a few times a day at most, and the
/// partition layer drops the oldest entries (below the log start) long before this.
pub const ENTRIES_MAX: usize = 100_000;
/// The longest file `ENTRIES_MAX` entries can make (two 20-digit numbers and a space a line).
const FILE_BYTES_MAX: usize = 64 + ENTRIES_MAX * 48;

/// True for the files this module owns (segment recovery skips them).
pub fn is_own_file(name: &OsStr) -> bool {
    name == FILE_NAME || name == TEMP_FILE_NAME
}

/// One line of the file: leader epoch `epoch` started at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("line {line}: {detail}")]
    Malformed { line: usize, detail: String },
}

/// The entries in `dir`'s checkpoint: None if there is no file, Err(Corrupt) if it cannot be
/// parsed (the caller rebuilds the cache from the log).
pub async fn read(dir: &Path) -> Result<Option<Vec<EpochEntry>>, StorageError> {
    let Some(bytes) = super::small_file::read(dir, FILE_NAME, FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    parse(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|error| StorageError::Corrupt {
            path: dir.join(FILE_NAME),
            position: 0,
            detail: error.to_string(),
        })
}

/// Replaces `dir`'s checkpoint with `entries`.
pub async fn write(dir: &Path, entries: &[EpochEntry]) -> Result<(), StorageError> {
    assert!(entries.len() <= ENTRIES_MAX, "entries={}", entries.len());
    super::small_file::replace(dir, FILE_NAME, TEMP_FILE_NAME, format(entries).into_bytes()).await
}

pub fn format(entries: &[EpochEntry]) -> String {
    let mut text = format!("{FORMAT_VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
    }
    text
}

/// Parses the file, checking that epochs and start offsets both ascend strictly.
pub fn parse(text: &str) -> Result<Vec<EpochEntry>, CheckpointError> {
    let malformed = |line: usize, detail: &str| CheckpointError::Malformed {
        line,
        detail: detail.to_string(),
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err(malformed(1, "version is not 0"));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| malformed(2, "no entry count"))?;
    if count > ENTRIES_MAX {
        return Err(malformed(2, "too many entries"));
    }
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count);
    for index in 0..count {
        let line_number = index + 3;
        let line = lines
            .next()
            .ok_or_else(|| malformed(line_number, "missing entry"))?;
        let mut fields = line.split_whitespace();
        let epoch = fields.next().and_then(|field| field.parse::<i32>().ok());
        let start_offset = fields.next().and_then(|field| field.parse::<i64>().ok());
        let (Some(epoch), Some(start_offset), None) = (epoch, start_offset, fields.next()) else {
            return Err(malformed(line_number, "not `epoch start_offset`"));
        };
        if epoch < 0 || start_offset < 0 {
            return Err(malformed(line_number, "negative epoch or offset"));
        }
        if let Some(last) = entries.last() {
            if epoch <= last.epoch || start_offset < last.start_offset {
                return Err(malformed(line_number, "entries do not ascend"));
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_format_round_trips() {
        let entries = vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 1234,
            },
        ];
        let text = format(&entries);
        assert_eq!(text, "0\n2\n0 0\n3 1234\n");
        assert_eq!(parse(&text).unwrap(), entries);
        assert_eq!(parse("0\n0\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(parse("").is_err());
        assert!(parse("1\n0\n").is_err());
        assert!(parse("0\n2\n0 0\n").is_err(), "short");
        assert!(parse("0\n2\n3 10\n2 20\n").is_err(), "epochs descend");
        assert!(parse("0\n2\n1 10\n2 5\n").is_err(), "offsets descend");
        assert!(parse("0\n1\n1 x\n").is_err());
        assert!(parse("0\n1\n-1 0\n").is_err());
    }
}
