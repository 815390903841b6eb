//! `raft-state`: what a partition replica's Raft node keeps beside its Kafka log — the hard
//! state (term, vote, commit), the replica set, and anchors that tie Raft indexes to Kafka
//! offsets. Text, one field per line, so an operator can read it:
//!
//! ```text
//! sluice-raft-state 1
//! term 7
//! vote 2
//! commit 1041
//! voters 1 2 3
//! learners
//! anchor 1024 6 88113
//! ```
//!
//! An anchor `index term end_offset` says: the entry at Raft index `index` (of term `term`)
//! ends at Kafka offset `end_offset`, so the next batch in the log is entry `index + 1`. At
//! open the replica scans the log from the last anchor that still lies in it and numbers the
//! batches from there (`replica.rs`). The file is replaced atomically (`small_file::replace`):
//! after a crash it holds either the old or the new contents.

use std::path::Path;

use crate::storage::StorageError;

pub const FILE_NAME: &str = "raft-state";
const TEMP_FILE_NAME: &str = "raft-state.tmp";
const HEADER: &str = "sluice-raft-state 1";
/// Anchors kept (the newest): one per compaction and segment roll since the oldest segment.
pub const ANCHORS_MAX: usize = 64;
const FILE_BYTES_MAX: usize = 64 << 10;

/// True for the files this module owns (segment recovery skips them).
pub fn is_own_file(name: &std::ffi::OsStr) -> bool {
    name == FILE_NAME || name == TEMP_FILE_NAME
}

/// Raft index `index` of term `term` ends at Kafka offset `end_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anchor {
    pub index: u64,
    pub term: u64,
    pub end_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Ascending by index (and so by end offset).
    pub anchors: Vec<Anchor>,
}

impl ReplicaState {
    pub fn format(&self) -> String {
        let list = |ids: &[u64]| ids.iter().map(|id| format!(" {id}")).collect::<String>();
        let mut text = format!(
            "{HEADER}\nterm {}\nvote {}\ncommit {}\nvoters{}\nlearners{}\n",
            self.term,
            self.vote,
            self.commit,
            list(&self.voters),
            list(&self.learners)
        );
        for anchor in &self.anchors {
            text.push_str(&format!(
                "anchor {} {} {}\n",
                anchor.index, anchor.term, anchor.end_offset
            ));
        }
        text
    }

    pub fn parse(text: &str) -> Result<ReplicaState, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("first line is not {HEADER:?}"));
        }
        let mut state = ReplicaState::default();
        let mut seen = [false; 5];
        for (number, line) in lines.enumerate() {
            let mut words = line.split(' ');
            let key = words.next().unwrap_or_default();
            let numbers: Result<Vec<u64>, _> = words.map(str::parse::<u64>).collect();
            let numbers = numbers.map_err(|_| format!("line {}: {line:?}", number + 2))?;
            let one = |slot: usize, seen: &mut [bool; 5]| -> Result<u64, String> {
                if numbers.len() != 1 || seen[slot] {
                    return Err(format!("line {}: {line:?}", number + 2));
                }
                seen[slot] = true;
                Ok(numbers[0])
            };
            match key {
                "term" => state.term = one(0, &mut seen)?,
                "vote" => state.vote = one(1, &mut seen)?,
                "commit" => state.commit = one(2, &mut seen)?,
                "voters" if !seen[3] => {
                    seen[3] = true;
                    state.voters = numbers;
                }
                "learners" if !seen[4] => {
                    seen[4] = true;
                    state.learners = numbers;
                }
                "anchor" if numbers.len() == 3 && numbers[2] <= i64::MAX as u64 => {
                    let anchor = Anchor {
                        index: numbers[0],
                        term: numbers[1],
                        end_offset: numbers[2] as i64,
                    };
                    if let Some(last) = state.anchors.last() {
                        if anchor.index <= last.index || anchor.end_offset < last.end_offset {
                            return Err(format!("line {}: anchors out of order", number + 2));
                        }
                    }
                    state.anchors.push(anchor);
                }
                _ => return Err(format!("line {}: {line:?}", number + 2)),
            }
        }
        if !seen.iter().all(|seen| *seen) {
            return Err("a field is missing".to_string());
        }
        if state.voters.is_empty() {
            return Err("no voters".to_string());
        }
        Ok(state)
    }

    /// Adds `anchor` (dropping anchors it contradicts: any at or past its index) and keeps the
    /// newest `ANCHORS_MAX`.
    pub fn add_anchor(&mut self, anchor: Anchor) {
        self.anchors.retain(|kept| kept.index < anchor.index);
        self.anchors.push(anchor);
        if self.anchors.len() > ANCHORS_MAX {
            self.anchors.remove(0);
        }
    }

    /// Forgets anchors past Raft index `index` (their entries were truncated away).
    pub fn truncate_anchors_after(&mut self, index: u64) -> bool {
        let before = self.anchors.len();
        self.anchors.retain(|anchor| anchor.index <= index);
        self.anchors.len() != before
    }
}

/// The replica state in `dir`, or None if there is none (a partition that was never
/// replicated). A file that cannot be parsed is `Corrupt`: the replica stays offline rather
/// than guess its votes.
pub async fn read(dir: &Path) -> Result<Option<ReplicaState>, StorageError> {
    let Some(bytes) = crate::storage::small_file::read(dir, FILE_NAME, FILE_BYTES_MAX).await?
    else {
        return Ok(None);
    };
    ReplicaState::parse(&String::from_utf8_lossy(&bytes))
        .map(Some)
        .map_err(|detail| StorageError::Corrupt {
            path: dir.join(FILE_NAME),
            position: 0,
            detail,
        })
}

pub async fn write(dir: &Path, state: &ReplicaState) -> Result<(), StorageError> {
    crate::storage::small_file::replace(dir, FILE_NAME, TEMP_FILE_NAME, state.format().into_bytes())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        let mut state = ReplicaState {
            term: 7,
            vote: 2,
            commit: 1041,
            voters: vec![1, 2, 3],
            learners: vec![],
            anchors: vec![],
        };
        state.add_anchor(Anchor {
            index: 10,
            term: 2,
            end_offset: 40,
        });
        state.add_anchor(Anchor {
            index: 20,
            term: 3,
            end_offset: 90,
        });
        assert_eq!(ReplicaState::parse(&state.format()), Ok(state.clone()));
        // A lower anchor replaces the ones after it.
        state.add_anchor(Anchor {
            index: 15,
            term: 4,
            end_offset: 60,
        });
        assert_eq!(state.anchors.len(), 2);
        assert!(state.truncate_anchors_after(12));
        assert_eq!(state.anchors.len(), 1);
    }

    #[test]
    fn refuses_damaged_files() {
        let good = "sluice-raft-state 1\nterm 1\nvote 0\ncommit 0\nvoters 1\nlearners\n";
        assert!(ReplicaState::parse(good).is_ok());
        for bad in [
            "",
            "sluice-raft-state 2\nterm 1\nvote 0\ncommit 0\nvoters 1\nlearners\n",
            "sluice-raft-state 1\nterm 1\nvote 0\ncommit 0\nvoters 1\n",
            "sluice-raft-state 1\nterm x\nvote 0\ncommit 0\nvoters 1\nlearners\n",
            "sluice-raft-state 1\nterm 1\nterm 2\nvote 0\ncommit 0\nvoters 1\nlearners\n",
            "sluice-raft-state 1\nterm 1\nvote 0\ncommit 0\nvoters\nlearners\n",
            "sluice-raft-state 1\nterm 1\nvote 0\ncommit 0\nvoters 1\nlearners\nanchor 5 1 9\nanchor 4 1 10\n",
        ] {
            assert!(ReplicaState::parse(bad).is_err(), "{bad:?}");
        }
    }
}
