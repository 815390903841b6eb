//! A Raft log in one append-only file: entries and hard states as checksummed frames, synced
//! with `fdatasync` before `append` returns. Blocking `std::fs` calls: callers run it at start-up
//! or on the executor's blocking pool (it is moved there and back, never shared).
//!
//! Frame: `u32 body length` (LE), `u32 crc32c(body)`, body. Body: kind byte, then
//! - kind 1, entry: `term u64`, `index u64`, `entry type u8`, `context length u32`, context,
//!   data (the rest);
//! - kind 2, hard state: `term u64`, `vote u64`, `commit u64`.
//!
//! Replay follows Raft's overwrite rule: an entry at index i replaces the entries from i on,
//! so appending a leader's conflicting suffix never needs a rewrite. The last hard state wins.
//! Recovery stops at the first frame that is short or fails its checksum (a torn write: nothing
//! after it was ever synced, since frames are only acknowledged after `fdatasync`) and cuts the
//! file there. `rewrite` replaces the whole file (temporary file, fsync, rename, directory
//! fsync): compaction after a snapshot.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Entry, EntryType, HardState};

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const FRAME_HEADER_BYTES: usize = 8;
/// A frame larger than this is corruption, not data (controller entries are small).
const FRAME_BYTES_MAX: usize = 256 << 20;

/// What a log file held: entries in index order and the last hard state written.
#[derive(Debug, Default)]
pub struct Recovered {
    pub entries: Vec<Entry>,
    pub hard_state: HardState,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
}

#[derive(Debug)]
pub struct DurableLog {
    path: PathBuf,
    file: File,
}

impl DurableLog {
    /// Opens (creating if absent) the log at `path` and reads it back.
    pub fn open(path: &Path) -> io::Result<(DurableLog, Recovered)> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (recovered, valid) = replay(&bytes);
        if valid < bytes.len() && !is_torn_tail(&bytes, valid) {
            // Damage with intact frames after it is not a torn write: cutting there would
            // discard synced, acknowledged entries. Keep the file for inspection and refuse.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: corrupt frame at byte {valid} with valid frames after it; \
                     refusing to open (the file is left as it is)",
                    path.display()
                ),
            ));
        }
        if (valid as u64) < bytes.len() as u64 {
            log::warn!(
                "{}: cutting {} bytes of torn or corrupt tail at byte {valid}",
                path.display(),
                bytes.len() - valid
            );
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        let recovered = Recovered {
            truncated_bytes: (bytes.len() - valid) as u64,
            ..recovered
        };
        let log = DurableLog {
            path: path.to_path_buf(),
            file,
        };
        if valid == 0 && bytes.is_empty() {
            sync_parent(path)?;
        }
        Ok((log, recovered))
    }

    /// Reads the log at `path` without changing it (an absent file is an empty log): for tools
    /// and tests, safe while a writer appends.
    pub fn read(path: &Path) -> io::Result<Recovered> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let (recovered, valid) = replay(&bytes);
        Ok(Recovered {
            truncated_bytes: (bytes.len() - valid) as u64,
            ..recovered
        })
    }

    /// Appends `entries` and then `hard_state` (if any) and syncs: when this returns, all of it
    /// survives a crash.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> io::Result<()> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        // The hard state first: a torn write then keeps at worst a vote without the entries
        // of its term (safe), never entries of a term whose vote was lost (which would let
        // this node vote twice in that term).
        let mut buffer = Vec::new();
        if let Some(hard_state) = hard_state {
            encode_hard_state(&mut buffer, hard_state);
        }
        for entry in entries {
            if entry.data.len() + entry.context.len() + 64 > FRAME_BYTES_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a Raft entry of {} bytes is over the frame limit",
                        entry.data.len()
                    ),
                ));
            }
            encode_entry(&mut buffer, entry);
        }
        use std::io::Seek;
        self.file.seek(io::SeekFrom::End(0))?;
        self.file.write_all(&buffer)?;
        self.file.sync_data()
    }

    /// Replaces the file with exactly `entries` and `hard_state` (compaction).
    pub fn rewrite(&mut self, entries: &[Entry], hard_state: &HardState) -> io::Result<()> {
        let mut buffer = Vec::new();
        for entry in entries {
            encode_entry(&mut buffer, entry);
        }
        encode_hard_state(&mut buffer, hard_state);
        let temporary = self.path.with_extension("rewrite");
        let mut file = File::create(&temporary)?;
        file.write_all(&buffer)?;
        file.sync_data()?;
        std::fs::rename(&temporary, &self.path)?;
        sync_parent(&self.path)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        Ok(())
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => Ok(()),
    }
}

fn frame(buffer: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    body(buffer);
    let length = (buffer.len() - start - FRAME_HEADER_BYTES) as u32;
    let crc = crc32c::crc32c(&buffer[start + FRAME_HEADER_BYTES..]);
    buffer[start..start + 4].copy_from_slice(&length.to_le_bytes());
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn encode_entry(buffer: &mut Vec<u8>, entry: &Entry) {
    frame(buffer, |body| {
        body.push(KIND_ENTRY);
        body.extend_from_slice(&entry.term.to_le_bytes());
        body.extend_from_slice(&entry.index.to_le_bytes());
        body.push(entry.entry_type as u8);
        body.extend_from_slice(&(entry.context.len() as u32).to_le_bytes());
        body.extend_from_slice(&entry.context);
        body.extend_from_slice(&entry.data);
    });
}

fn encode_hard_state(buffer: &mut Vec<u8>, hard_state: &HardState) {
    frame(buffer, |body| {
        body.push(KIND_HARD_STATE);
        body.extend_from_slice(&hard_state.term.to_le_bytes());
        body.extend_from_slice(&hard_state.vote.to_le_bytes());
        body.extend_from_slice(&hard_state.commit.to_le_bytes());
    });
}

/// Whether the damage at `valid` is a torn final write: the frame there runs past the end of
/// the file, or no intact frame follows where its header says the next one starts.
fn is_torn_tail(bytes: &[u8], valid: usize) -> bool {
    let Some(header) = bytes.get(valid..valid + FRAME_HEADER_BYTES) else {
        return true;
    };
    let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let next = valid + FRAME_HEADER_BYTES + length;
    if length == 0 || length > FRAME_BYTES_MAX || next >= bytes.len() {
        return true;
    }
    next_frame(bytes, next).is_none()
}

/// Replays frames; returns what they hold and how many leading bytes are valid.
fn replay(bytes: &[u8]) -> (Recovered, usize) {
    let mut recovered = Recovered::default();
    let mut position = 0;
    while let Some((body, next)) = next_frame(bytes, position) {
        match decode_body(body) {
            Some(Record::Entry(entry)) => {
                if let Some(first) = recovered.entries.first() {
                    if entry.index < first.index {
                        break;
                    }
                    let keep = (entry.index - first.index) as usize;
                    if keep > recovered.entries.len() {
                        break; // a gap: not something this writer produces
                    }
                    recovered.entries.truncate(keep);
                }
                recovered.entries.push(entry);
            }
            Some(Record::HardState(hard_state)) => recovered.hard_state = hard_state,
            None => break,
        }
        position = next;
    }
    (recovered, position)
}

fn next_frame(bytes: &[u8], position: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(position..position + FRAME_HEADER_BYTES)?;
    let length = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if length == 0 || length > FRAME_BYTES_MAX {
        return None;
    }
    let start = position + FRAME_HEADER_BYTES;
    let body = bytes.get(start..start.checked_add(length)?)?;
    (crc32c::crc32c(body) == crc).then_some((body, start + length))
}

enum Record {
    Entry(Entry),
    HardState(HardState),
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let (&kind, rest) = body.split_first()?;
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?))
    };
    match kind {
        KIND_ENTRY => {
            let mut entry = Entry::new();
            entry.term = u64_at(0)?;
            entry.index = u64_at(8)?;
            entry.entry_type = match *rest.get(16)? {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                _ => return None,
            };
            let context_length = u32::from_le_bytes(rest.get(17..21)?.try_into().ok()?) as usize;
            let context_end = 21usize.checked_add(context_length)?;
            entry.context = Bytes::copy_from_slice(rest.get(21..context_end)?);
            entry.data = Bytes::copy_from_slice(&rest[context_end..]);
            Some(Record::Entry(entry))
        }
        KIND_HARD_STATE => {
            let mut hard_state = HardState::new();
            hard_state.term = u64_at(0)?;
            hard_state.vote = u64_at(8)?;
            hard_state.commit = u64_at(16)?;
            Some(Record::HardState(hard_state))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(term: u64, index: u64, data: &str) -> Entry {
        let mut entry = Entry::new();
        entry.term = term;
        entry.index = index;
        entry.data = Bytes::copy_from_slice(data.as_bytes());
        entry.context = Bytes::from_static(b"ctx");
        entry
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        let mut state = HardState::new();
        state.term = term;
        state.vote = vote;
        state.commit = commit;
        state
    }

    fn summary(recovered: &Recovered) -> Vec<(u64, u64, String)> {
        recovered
            .entries
            .iter()
            .map(|e| {
                (
                    e.term,
                    e.index,
                    String::from_utf8(e.data.to_vec()).expect("utf8"),
                )
            })
            .collect()
    }

    #[test]
    fn entries_and_hard_state_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, recovered) = DurableLog::open(&path).expect("open");
        assert!(recovered.entries.is_empty());
        log.append(
            &[entry(1, 1, "a"), entry(1, 2, "b")],
            Some(&hard_state(1, 1, 1)),
        )
        .expect("append");
        log.append(&[entry(1, 3, "c")], None).expect("append");
        drop(log);
        let (_, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(
            summary(&recovered),
            vec![
                (1, 1, "a".to_string()),
                (1, 2, "b".to_string()),
                (1, 3, "c".to_string())
            ]
        );
        assert_eq!(recovered.hard_state, hard_state(1, 1, 1));
        assert_eq!(recovered.entries[0].context.as_ref(), b"ctx");
    }

    #[test]
    fn a_conflicting_suffix_replaces_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = DurableLog::open(&path).expect("open");
        log.append(
            &[entry(1, 1, "a"), entry(1, 2, "b"), entry(1, 3, "c")],
            None,
        )
        .expect("append");
        log.append(&[entry(2, 2, "B")], Some(&hard_state(2, 3, 2)))
            .expect("append");
        drop(log);
        let (_, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(
            summary(&recovered),
            vec![(1, 1, "a".to_string()), (2, 2, "B".to_string())]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_log_stays_appendable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = DurableLog::open(&path).expect("open");
        log.append(&[entry(1, 1, "a"), entry(1, 2, "b")], None)
            .expect("append");
        drop(log);
        let length = std::fs::metadata(&path).expect("stat").len();
        // Tear the last frame, then add garbage after it.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(length - 1).expect("truncate");
        drop(file);
        let mut raw = OpenOptions::new().append(true).open(&path).expect("open");
        raw.write_all(&[0xff; 3]).expect("garbage");
        drop(raw);
        let (mut log, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(summary(&recovered), vec![(1, 1, "a".to_string())]);
        assert!(recovered.truncated_bytes > 0);
        log.append(&[entry(1, 2, "b2")], None).expect("append");
        drop(log);
        let (_, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(
            summary(&recovered),
            vec![(1, 1, "a".to_string()), (1, 2, "b2".to_string())]
        );
        assert_eq!(recovered.truncated_bytes, 0);
    }

    #[test]
    fn a_flipped_bit_stops_replay_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = DurableLog::open(&path).expect("open");
        log.append(&[entry(1, 1, "a")], None).expect("append");
        log.append(&[entry(1, 2, "b")], None).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let (_, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(summary(&recovered), vec![(1, 1, "a".to_string())]);
    }

    #[test]
    fn damage_before_intact_frames_is_refused_not_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = DurableLog::open(&path).expect("open");
        log.append(&[entry(1, 1, "a")], None).expect("append");
        log.append(&[entry(1, 2, "b")], None).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[FRAME_HEADER_BYTES + 3] ^= 1; // inside the first frame's body
        std::fs::write(&path, &bytes).expect("write");
        let error = DurableLog::open(&path).expect_err("mid-file damage");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "left as it was");
    }

    #[test]
    fn rewrite_keeps_only_what_it_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = DurableLog::open(&path).expect("open");
        log.append(
            &[entry(1, 1, "a"), entry(1, 2, "b"), entry(1, 3, "c")],
            None,
        )
        .expect("append");
        log.rewrite(&[entry(1, 3, "c")], &hard_state(1, 1, 3))
            .expect("rewrite");
        log.append(&[entry(1, 4, "d")], None).expect("append");
        drop(log);
        let (_, recovered) = DurableLog::open(&path).expect("reopen");
        assert_eq!(
            summary(&recovered),
            vec![(1, 3, "c".to_string()), (1, 4, "d".to_string())]
        );
        assert_eq!(recovered.hard_state.commit, 3);
    }
}
