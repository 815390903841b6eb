//! Sparse offset index and time index of one segment, in memory, with Kafka's file formats.
//!
//! `.index`: entries of (relative offset u32, position u32), big-endian, one per
//! `index.interval.bytes` of log data, strictly increasing in both fields.
//! `.timeindex`: entries of (timestamp i64, relative offset u32): the segment's largest batch
//! timestamp so far and the last offset of the batch that carries it, appended at the same
//! points when the largest timestamp grew, and once more when the segment is sealed.
//!
//! Durability: the in-memory index is authoritative while running. Files are written lazily and
//! only for durable data (see `Segment::persist_indexes`); recovery validates them against the
//! log and rebuilds them when missing or disagreeing, so a stale or torn index loses nothing.

/// Bytes of one `.index` entry.
pub(crate) const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry.
pub(crate) const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// Entries per offset index: Kafka's `segment.index.bytes` default (10 MiB) over the entry size;
/// a segment whose index is full rolls.
pub(crate) const INDEX_ENTRIES_MAX: usize = (10 << 20) / OFFSET_INDEX_ENTRY_BYTES;
/// Kafka's NO_TIMESTAMP: the largest timestamp of a segment with no timestamped batch.
pub(crate) const NO_TIMESTAMP: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// Both indexes of a segment and the state needed to extend them batch by batch.
#[derive(Debug)]
pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_last_entry: u64,
    /// Largest batch max timestamp seen and the last offset (relative) of that batch.
    max_timestamp: i64,
    relative_offset_of_max_timestamp: u32,
}

impl Default for SegmentIndex {
    fn default() -> Self {
        SegmentIndex::new()
    }
}

impl SegmentIndex {
    pub fn new() -> SegmentIndex {
        SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_last_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            relative_offset_of_max_timestamp: 0,
        }
    }

    /// Resumes indexing from loaded entries: keeps the offset entries before `keep_offsets`
    /// and the time entries before `keep_times`, and forces an entry at the next batch (the
    /// caller rescans from the position of the first dropped offset entry).
    pub fn resume(
        mut offsets: Vec<OffsetEntry>,
        mut times: Vec<TimeEntry>,
        keep_offsets: usize,
        keep_times: usize,
    ) -> SegmentIndex {
        offsets.truncate(keep_offsets);
        times.truncate(keep_times);
        let (max_timestamp, relative) = times
            .last()
            .map(|entry| (entry.timestamp, entry.relative_offset))
            .unwrap_or((NO_TIMESTAMP, 0));
        SegmentIndex {
            offsets,
            times,
            bytes_since_last_entry: u64::MAX / 2,
            max_timestamp,
            relative_offset_of_max_timestamp: relative,
        }
    }

    /// Records one appended batch. Positions and relative offsets must increase.
    pub fn observe(&mut self, batch: BatchPlacement, index_interval_bytes: u32) {
        assert!(
            batch.relative_last_offset >= batch.relative_base_offset,
            "last={} base={}",
            batch.relative_last_offset,
            batch.relative_base_offset
        );
        if batch.max_timestamp > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp;
            self.relative_offset_of_max_timestamp = batch.relative_last_offset;
        }
        let due = self.bytes_since_last_entry >= u64::from(index_interval_bytes);
        if self.offsets.is_empty() || due {
            if let Some(last) = self.offsets.last() {
                assert!(
                    batch.relative_base_offset > last.relative_offset
                        && batch.position > last.position,
                    "index entry ({}, {}) after ({}, {})",
                    batch.relative_base_offset,
                    batch.position,
                    last.relative_offset,
                    last.position
                );
            }
            self.offsets.push(OffsetEntry {
                relative_offset: batch.relative_base_offset,
                position: batch.position,
            });
            self.bytes_since_last_entry = 0;
            self.append_time_entry();
        }
        self.bytes_since_last_entry += u64::from(batch.size_bytes);
    }

    /// Adds the final time entry when the segment stops being active (Kafka does the same).
    pub fn seal(&mut self) {
        self.append_time_entry();
    }

    fn append_time_entry(&mut self) {
        let last_timestamp = self
            .times
            .last()
            .map_or(NO_TIMESTAMP, |entry| entry.timestamp);
        if self.max_timestamp > last_timestamp {
            self.times.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: self.relative_offset_of_max_timestamp,
            });
        }
    }

    pub fn is_full(&self) -> bool {
        self.offsets.len() >= INDEX_ENTRIES_MAX
    }

    pub fn offsets(&self) -> &[OffsetEntry] {
        &self.offsets
    }

    pub fn times(&self) -> &[TimeEntry] {
        &self.times
    }

    /// (largest timestamp, relative last offset of its batch).
    pub fn max_timestamp(&self) -> (i64, u32) {
        (self.max_timestamp, self.relative_offset_of_max_timestamp)
    }

    /// The entry with the largest relative offset <= `relative_offset`, or (0, 0).
    pub fn lookup(&self, relative_offset: u32) -> OffsetEntry {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        match after {
            0 => OffsetEntry {
                relative_offset: 0,
                position: 0,
            },
            _ => self.offsets[after - 1],
        }
    }

    /// Relative offset to start scanning from to find the first batch whose max timestamp is
    /// >= `timestamp`: every batch up to the returned offset has a smaller timestamp.
    pub fn time_lookup(&self, timestamp: i64) -> u32 {
        let below = self
            .times
            .partition_point(|entry| entry.timestamp < timestamp);
        match below {
            0 => 0,
            _ => self.times[below - 1].relative_offset,
        }
    }

    /// Index of the first offset entry at or after `position`.
    pub fn first_entry_at_or_after(&self, position: u32) -> usize {
        self.offsets
            .partition_point(|entry| entry.position < position)
    }

    /// Index of the first time entry at or after `relative_offset`.
    pub fn first_time_entry_at_or_after(&self, relative_offset: u32) -> usize {
        self.times
            .partition_point(|entry| entry.relative_offset < relative_offset)
    }

    /// Encodes the offset entries whose position is below `position_end`.
    pub fn encode_offsets(&self, position_end: u64) -> Vec<u8> {
        let count = self.first_entry_at_or_after(position_end.min(u64::from(u32::MAX)) as u32);
        let mut bytes = Vec::with_capacity(count * OFFSET_INDEX_ENTRY_BYTES);
        for entry in &self.offsets[..count] {
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
            bytes.extend_from_slice(&entry.position.to_be_bytes());
        }
        bytes
    }

    /// Encodes the time entries whose offset is below `relative_offset_end`.
    pub fn encode_times(&self, relative_offset_end: u64) -> Vec<u8> {
        let end = relative_offset_end.min(u64::from(u32::MAX)) as u32;
        let count = self.first_time_entry_at_or_after(end);
        let mut bytes = Vec::with_capacity(count * TIME_INDEX_ENTRY_BYTES);
        for entry in &self.times[..count] {
            bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        bytes
    }
}

/// Where one batch sits in its segment.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlacement {
    pub relative_base_offset: u32,
    pub relative_last_offset: u32,
    pub position: u32,
    pub size_bytes: u32,
    pub max_timestamp: i64,
}

/// Decodes an `.index` file: the longest prefix of strictly increasing entries (a zero-filled
/// tail or torn write ends it). Returns the entries and whether the whole file was valid.
pub(crate) fn decode_offsets(bytes: &[u8]) -> (Vec<OffsetEntry>, bool) {
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_BYTES);
    let whole = bytes.len() % OFFSET_INDEX_ENTRY_BYTES == 0;
    for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_BYTES) {
        let entry = OffsetEntry {
            relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
        };
        let increasing = entries.last().is_none_or(|last| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        let first_ok = !entries.is_empty()
            || entry
                == OffsetEntry {
                    relative_offset: 0,
                    position: 0,
                };
        if !increasing || !first_ok {
            return (entries, false);
        }
        entries.push(entry);
    }
    (entries, whole)
}

/// Decodes a `.timeindex` file: the longest prefix with increasing timestamps and
/// non-decreasing offsets. Returns the entries and whether the whole file was valid.
pub(crate) fn decode_times(bytes: &[u8]) -> (Vec<TimeEntry>, bool) {
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_BYTES);
    let whole = bytes.len() % TIME_INDEX_ENTRY_BYTES == 0;
    for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&chunk[..8]);
        let entry = TimeEntry {
            timestamp: i64::from_be_bytes(timestamp),
            relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
        };
        let increasing = entries.last().is_none_or(|last| {
            entry.timestamp > last.timestamp && entry.relative_offset >= last.relative_offset
        });
        if !increasing || entry.timestamp <= NO_TIMESTAMP {
            return (entries, false);
        }
        entries.push(entry);
    }
    (entries, whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(base: u32, last: u32, position: u32, size: u32, ts: i64) -> BatchPlacement {
        BatchPlacement {
            relative_base_offset: base,
            relative_last_offset: last,
            position,
            size_bytes: size,
            max_timestamp: ts,
        }
    }

    #[test]
    fn sparse_entries_every_interval_and_floor_lookup() {
        let mut index = SegmentIndex::new();
        // 10 batches of 1000 bytes, 5 records each, interval 2500 bytes.
        for batch in 0..10u32 {
            index.observe(
                placement(
                    batch * 5,
                    batch * 5 + 4,
                    batch * 1000,
                    1000,
                    100 + i64::from(batch),
                ),
                2500,
            );
        }
        let positions: Vec<u32> = index.offsets().iter().map(|entry| entry.position).collect();
        assert_eq!(positions, vec![0, 3000, 6000, 9000]);
        assert_eq!(index.lookup(0).position, 0);
        assert_eq!(index.lookup(14).position, 0);
        assert_eq!(index.lookup(15).position, 3000);
        assert_eq!(index.lookup(49).position, 9000);
        assert_eq!(index.max_timestamp(), (109, 49));
        // Time entries at each offset entry; the seal adds the final maximum.
        index.seal();
        let last = *index.times().last().unwrap();
        assert_eq!(
            last,
            TimeEntry {
                timestamp: 109,
                relative_offset: 49
            }
        );
        assert_eq!(index.time_lookup(100), 0);
        assert_eq!(index.time_lookup(104), 19);
    }

    #[test]
    fn encode_decode_round_trip_and_zero_tail_ends_index() {
        let mut index = SegmentIndex::new();
        for batch in 0..6u32 {
            index.observe(placement(batch * 2, batch * 2 + 1, batch * 100, 100, 7), 0);
        }
        let mut bytes = index.encode_offsets(u64::MAX);
        assert_eq!(bytes.len(), 6 * OFFSET_INDEX_ENTRY_BYTES);
        let (decoded, whole) = decode_offsets(&bytes);
        assert!(whole);
        assert_eq!(decoded, index.offsets());
        bytes.extend_from_slice(&[0u8; 16]);
        let (decoded, whole) = decode_offsets(&bytes);
        assert!(!whole);
        assert_eq!(decoded.len(), 6);
        // Only entries below a position are encoded.
        assert_eq!(
            index.encode_offsets(250).len(),
            3 * OFFSET_INDEX_ENTRY_BYTES
        );
        let times = index.encode_times(u64::MAX);
        let (decoded, whole) = decode_times(&times);
        assert!(whole);
        assert_eq!(decoded, index.times());
    }

    #[test]
    fn garbage_index_is_rejected() {
        let (decoded, whole) = decode_offsets(&[0xff; 24]);
        assert!(decoded.is_empty());
        assert!(!whole);
        // A zero-filled tail ends the time index after at most one (timestamp 0) entry.
        let (decoded, whole) = decode_times(&[0x00; 24]);
        assert_eq!(decoded.len(), 1);
        assert!(!whole);
    }
}
