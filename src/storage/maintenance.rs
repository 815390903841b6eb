//! Background operations of `PartitionLog` that change which segments exist: retention,
//! truncation (Raft follower), and close. Each changes the segment list, and truncation and
//! close their files, under the partition's disk lock, so none interleaves with a flush;
//! retention unlinks, and retention and truncation close deleted segments, after releasing it.
//!
//! Durability: retention deletes whole finalized segments from the front, `.log` first; a crash
//! mid-way leaves a log that simply starts later (or orphan index files, removed at open).
//! Truncation first deletes the later segments and fsyncs the directory, then truncates the
//! containing segment and fdatasyncs it, so a crash at any point recovers either the old log or
//! a prefix of it, never a log with a hole. Segment deletion uses glommio's `remove` (off the
//! hot path: retention runs in the shard's background task queue); the last descriptor of a
//! deleted segment is closed on a thread of its own (`closer.rs`), because that close frees the
//! file's blocks.

use std::rc::Rc;

use super::log::PartitionLog;
use super::recovery::find_truncation_point;
use super::segment::{sync_directory, Segment, SegmentState};
use super::{LogConfig, StorageError};

impl PartitionLog {
    /// Deletes whole finalized segments past `retention.ms` (by their largest timestamp) or
    /// while the log exceeds `retention.bytes`, oldest first, never the active segment, and
    /// advances `log_start_offset`. Returns the bytes deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<u64, StorageError> {
        self.check_writable()?;
        self.close_deleted_segments(Vec::new()).await;
        let config = self.config();
        if self.retention_victims(now_ms, &config).is_empty() {
            return Ok(0);
        }
        self.ensure_active_file().await?;
        // Segments leave the log under the disk lock; their files are unlinked after it is
        // released, so flushes (which take the same lock) never wait for unlinks: freeing a
        // large preallocated file can take milliseconds and showed as ack-latency stalls.
        // Readers still holding a removed segment keep its open file until they finish.
        let victims = {
            let _permit = self.lock_disk().await?;
            self.check_writable()?;
            let victims = self.retention_victims(now_ms, &config);
            for segment in &victims {
                self.remove_front_segment(segment);
                log::info!(
                    "{}: retention deletes segment {} ({} bytes), log start offset now {}",
                    self.dir.display(),
                    segment.base_offset(),
                    segment.size_bytes(),
                    self.log_start_offset.get()
                );
            }
            victims
        };
        let mut deleted_bytes = 0u64;
        for segment in &victims {
            segment.remove_files().await?;
            deleted_bytes += segment.size_bytes();
        }
        self.close_deleted_segments(victims).await;
        Ok(deleted_bytes)
    }

    /// Closes the descriptors of `deleted` segments (already unlinked and out of the log) off
    /// the shard, and of earlier ones whose readers have let go; segments still held wait in
    /// `deleted_in_use`. A failed close loses nothing (the files are gone from the log and the
    /// directory), so it is logged, not returned: the deletion it follows did happen.
    async fn close_deleted_segments(&self, deleted: Vec<Rc<Segment>>) {
        let mut candidates = std::mem::take(&mut *self.deleted_in_use.borrow_mut());
        candidates.extend(deleted);
        for segment in candidates {
            if Rc::strong_count(&segment) > 1 {
                self.deleted_in_use.borrow_mut().push(segment);
            } else if let Err(error) = segment.close_deleted().await {
                log::warn!("{}: {error}", self.dir.display());
            }
        }
    }

    /// Finalized segments at the front that retention deletes now.
    fn retention_victims(&self, now_ms: i64, config: &LogConfig) -> Vec<Rc<Segment>> {
        let segments = self.segments.borrow();
        let mut remaining_bytes = self.size_bytes.get() as i64;
        let mut victims = Vec::new();
        for segment in &segments[..segments.len() - 1] {
            if segment.state() != SegmentState::Finalized {
                break;
            }
            let age_ms = now_ms - segment.retention_timestamp_ms();
            let by_time = config.retention_ms >= 0 && age_ms > config.retention_ms;
            let size_after = remaining_bytes - segment.size_bytes() as i64;
            let by_size = config.retention_bytes >= 0 && size_after >= config.retention_bytes;
            // Segments below a log start DeleteRecords moved stay until time or size retention
            // takes them: a replicated partition's follower that missed the deletion catches up
            // from them (`read_stored`).
            if !by_time && !by_size {
                break;
            }
            remaining_bytes = size_after;
            victims.push(segment.clone());
        }
        victims
    }

    fn remove_front_segment(&self, segment: &Rc<Segment>) {
        let mut segments = self.segments.borrow_mut();
        assert!(
            segments.len() > 1,
            "retention would delete the active segment"
        );
        assert!(
            Rc::ptr_eq(&segments[0], segment),
            "front={} victim={}",
            segments[0].base_offset(),
            segment.base_offset()
        );
        segments.remove(0);
        // Never lower: DeleteRecords may have moved the start past this segment's end.
        self.log_start_offset
            .set(segments[0].base_offset().max(self.log_start_offset.get()));
        self.size_bytes
            .set(self.size_bytes.get() - segment.size_bytes());
        self.cache
            .remove_below(self.cache_id, segments[0].base_offset());
    }

    /// Removes every batch at and after `offset` (Raft follower truncation). If `offset` is
    /// inside a batch, that whole batch goes and the log ends at its base offset. Batches
    /// appended while this runs are discarded: callers do not append concurrently.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        if offset >= self.log_end_offset.get() {
            return Ok(());
        }
        self.check_truncation_offset(offset)?;
        self.wait_durable(self.log_end_offset.get()).await?;
        let permit = self.lock_disk().await?;
        self.check_writable()?;
        if offset >= self.log_end_offset.get() {
            return Ok(());
        }
        self.check_truncation_offset(offset)?;
        let removed = match self.truncate_locked(offset).await {
            Ok(removed) => removed,
            Err(error) => {
                self.go_offline(&error);
                return Err(error);
            }
        };
        drop(permit);
        self.close_deleted_segments(removed).await;
        Ok(())
    }

    fn check_truncation_offset(&self, offset: i64) -> Result<(), StorageError> {
        let log_start_offset = self.log_start_offset.get();
        if offset < log_start_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                durable_end_offset: self.durable_end_offset.get(),
            });
        }
        Ok(())
    }

    /// Returns the later segments it deleted, for `close_deleted_segments`.
    async fn truncate_locked(&self, offset: i64) -> Result<Vec<Rc<Segment>>, StorageError> {
        let Some(segment) = self.segment_containing(offset) else {
            panic!("no segment holds offset {offset} >= log start offset");
        };
        let config = self.config();
        let point = find_truncation_point(&segment, offset, &config).await?;
        // In memory, synchronously: appends from here on see the truncated log.
        self.fail_pending();
        let removed = {
            let mut segments = self.segments.borrow_mut();
            let slot = segments
                .iter()
                .position(|candidate| Rc::ptr_eq(candidate, &segment))
                .unwrap_or_else(|| panic!("segment {} vanished", segment.base_offset()));
            segments.split_off(slot + 1)
        };
        segment.truncate_in_memory(point.position, point.end_offset, point.index);
        self.log_end_offset.set(point.end_offset);
        self.durable_end_offset
            .set(self.durable_end_offset.get().min(point.end_offset));
        let size_bytes = self.segments.borrow().iter().map(|s| s.size_bytes()).sum();
        self.size_bytes.set(size_bytes);
        self.cache.remove_from(self.cache_id, point.end_offset);
        self.truncations.set(self.truncations.get() + 1);
        self.last_truncation_offset.set(point.end_offset);
        self.waiters.wake_all();
        log::info!(
            "{}: truncated to offset {} (asked {offset}), removed {} later segments",
            self.dir.display(),
            point.end_offset,
            removed.len()
        );
        // On disk: later segments first (durably), then the containing one.
        for later in removed.iter().rev() {
            later.remove_files().await?;
        }
        if !removed.is_empty() {
            sync_directory(&self.dir).await?;
        }
        segment.truncate_on_disk().await?;
        Ok(removed)
    }

    /// Waits for queued batches to become durable, writes the indexes and closes the files.
    /// Later calls (except reads of nothing) fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.closed.get() {
            return Ok(());
        }
        let flushed = match self.is_offline() {
            true => Err(self.offline_error()),
            false => self.wait_durable(self.log_end_offset.get()).await,
        };
        self.closed.set(true);
        self.waiters.wake_all();
        let _permit = self.lock_disk().await?;
        self.wait_disk_tasks().await;
        let finished = match flushed {
            // Offline since: the indexes stay as they are (recovery rebuilds what is missing).
            Ok(()) if self.is_offline() => Err(self.offline_error()),
            Ok(()) => self.write_final_indexes().await,
            Err(error) => Err(error),
        };
        let segments: Vec<Rc<Segment>> = self.segments.borrow().clone();
        for segment in segments {
            segment.close().await?;
        }
        self.cache.remove_log(self.cache_id);
        finished
    }

    async fn write_final_indexes(&self) -> Result<(), StorageError> {
        for segment in self.segments_to_finalize() {
            segment.begin_finalize();
            segment.finalize().await?;
        }
        let active = self.active_segment();
        if active.has_file() {
            active.persist_indexes().await?;
            // Trim the preallocated zeros: a clean close leaves the last segment ending at its
            // data, so the next start has no tail to truncate and fdatasync.
            active.truncate_file(active.durable_bytes()).await?;
        }
        Ok(())
    }
}
