//! The writer thread: the only code that writes or deletes spool files, so blocking file I/O
//! never runs on a tokio worker and no file needs a lock. It group-commits appends (one write
//! and one fsync for everything waiting), rotates segments, writes and syncs done marks,
//! deletes segments whose entries are all done, and watches free space.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use tokio::sync::oneshot;

use super::error::SpoolError;
use super::index::{Point, Segment};
use super::record::{EntryId, SpoolRecord};
use super::shared::Shared;
use super::{dir, frame};

/// How often free space is looked at: `statvfs` is cheap, but not per append.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Records handed to the writer by one `append_many`.
pub(super) struct Append {
    pub records: Vec<SpoolRecord>,
    pub appended_ms: u64,
    /// Their encoded size, reserved against `max_bytes`.
    pub bytes: u64,
    pub reply: oneshot::Sender<Result<EntryId, SpoolError>>,
}

pub(super) enum Control {
    SyncDone(oneshot::Sender<Result<(), SpoolError>>),
    Close(oneshot::Sender<Result<(), SpoolError>>),
    #[cfg(test)]
    Crash(std::sync::mpsc::Sender<()>),
}

/// The segment being written.
pub(super) struct Active {
    pub base: u64,
    pub file: File,
    /// Durable length: everything before it is fsynced.
    pub len: u64,
    pub seed: u32,
    pub count: u64,
    pub last_point: Option<Point>,
}

pub(super) struct Writer {
    pub shared: Arc<Shared>,
    pub appends: Receiver<Append>,
    pub control: Receiver<Control>,
    pub dir_file: File,
    /// Held for the writer's life: the directory's lock.
    pub _lock: File,
    pub active: Active,
    pub next_id: u64,
    /// Encoded frames of the batch being written; reused.
    pub buf: Vec<u8>,
    pub done_files: HashMap<u64, File>,
    /// Segments whose done files were written since the last done sync.
    pub unsynced_done: BTreeSet<u64>,
    /// A file was created or deleted since the last done sync.
    pub dir_dirty: bool,
    pub last_done_sync: Instant,
    pub last_space_check: Instant,
}

/// What woke the writer.
enum Wake {
    Append(Append),
    Control(Control),
    Tick,
    Disconnected,
}

impl Writer {
    pub fn run(mut self) {
        loop {
            let tick = self
                .shared
                .settings
                .done_sync_interval()
                .min(SPACE_CHECK_EVERY)
                // A zero interval (not valid in config.toml) must not spin the thread.
                .max(Duration::from_millis(1));
            let wake = crossbeam_channel::select! {
                recv(self.appends) -> msg => msg.map_or(Wake::Disconnected, Wake::Append),
                recv(self.control) -> msg => msg.map_or(Wake::Disconnected, Wake::Control),
                default(tick) => Wake::Tick,
            };
            match wake {
                Wake::Append(first) => {
                    self.taken(1);
                    self.commit(first)
                }
                Wake::Tick => {}
                Wake::Control(Control::SyncDone(reply)) => {
                    let _ = reply.send(self.persist_done(true));
                }
                Wake::Control(Control::Close(reply)) => return self.stop(Some(reply)),
                Wake::Disconnected => return self.stop(None),
                #[cfg(test)]
                Wake::Control(Control::Crash(reply)) => {
                    drop(self);
                    let _ = reply.send(());
                    return;
                }
            }
            if let Err(e) = self.persist_done(false) {
                tracing::error!(error = %e, "spool: writing done marks failed; they are kept in memory and retried");
            }
            self.check_space(false);
        }
    }

    /// Writes what is queued, syncs done marks, releases the lock, then answers `reply`.
    fn stop(mut self, reply: Option<oneshot::Sender<Result<(), SpoolError>>>) {
        self.shared.closed.store(true, Relaxed);
        while let Ok(append) = self.appends.try_recv() {
            self.taken(1);
            self.commit(append);
        }
        let result = self.persist_done(true);
        drop(self);
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }

    /// Appends left the queue: room for others (`WRITER_QUEUE`).
    fn taken(&self, appends: usize) {
        self.shared.queued.fetch_sub(appends, Relaxed);
    }

    /// One group commit: `first` and whatever else is waiting (or arrives within
    /// `commit_interval`), up to `commit_max_bytes`; one write, one fsync, then the answers.
    fn commit(&mut self, first: Append) {
        let settings = &self.shared.settings;
        let (interval, max_bytes) = (settings.commit_interval(), settings.commit_max_bytes);
        let started = Instant::now();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while bytes < max_bytes {
            let next = match self.appends.try_recv() {
                Ok(append) => append,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let waited = started.elapsed();
                    if waited >= interval {
                        break;
                    }
                    match self.appends.recv_timeout(interval - waited) {
                        Ok(append) => append,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.taken(1);
            bytes += next.bytes;
            batch.push(next);
        }
        let mut firsts = Vec::with_capacity(batch.len());
        match self.write_batch(&batch, &mut firsts) {
            Ok(()) => {
                for (append, first) in batch.into_iter().zip(firsts) {
                    let _ = append.reply.send(Ok(EntryId(first)));
                }
            }
            Err(e) => {
                // Nothing of the batch is answered as durable; what did reach the disk (before
                // a rotation) is sent anyway, which at-least-once allows.
                self.shared.reserved.fetch_sub(bytes, Relaxed);
                for append in batch {
                    let _ = append.reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[Append], firsts: &mut Vec<u64>) -> Result<(), SpoolError> {
        if let Some(message) = self.shared.failure() {
            return Err(SpoolError::Failed(message));
        }
        let segment_bytes = self.shared.settings.segment_bytes;
        let mut points = Vec::new();
        let mut entries = 0;
        self.buf.clear();
        for append in batch {
            firsts.push(self.next_id);
            for record in &append.records {
                let len = frame::encoded_len(record) as u64;
                if self.active.len + self.buf.len() as u64 + len > segment_bytes
                    && self.active.count + entries > 0
                {
                    self.flush(&mut points, &mut entries)?;
                    self.rotate()?;
                }
                let offset = self.active.len + self.buf.len() as u64;
                let ms = append.appended_ms;
                if self.active.last_point.is_none_or(|p| p.is_far(offset, ms)) {
                    let point = Point {
                        id: self.next_id,
                        offset,
                        ms,
                    };
                    points.push(point);
                    self.active.last_point = Some(point);
                }
                frame::encode(&mut self.buf, self.active.seed, self.next_id, ms, record);
                self.next_id += 1;
                entries += 1;
            }
        }
        self.flush(&mut points, &mut entries)
    }

    /// Writes the buffered frames to the active segment and fsyncs them; then they are durable
    /// and readable.
    fn flush(&mut self, points: &mut Vec<Point>, entries: &mut u64) -> Result<(), SpoolError> {
        if *entries == 0 {
            return Ok(());
        }
        let path = dir::segment_path(&self.shared.dir, self.active.base);
        if let Err(e) = self.active.file.write_all(&self.buf) {
            // Cut what part of the batch got written, so the file ends on a whole entry; if
            // even that fails, the file's tail is unknown: stop appending until a restart.
            self.rollback(points, *entries);
            let error = SpoolError::io("writing", &path, &e);
            if self.active.file.set_len(self.active.len).is_err() {
                self.fail(&error);
            }
            return Err(error);
        }
        if let Err(e) = self.active.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on
            // disk is unknown until recovery reads it back.
            let error = SpoolError::io("fsyncing", &path, &e);
            self.fail(&error);
            return Err(error);
        }
        let stats = &self.shared.stats;
        stats.fsyncs.fetch_add(1, Relaxed);
        stats.records_fsynced.fetch_add(*entries, Relaxed);
        stats.live_records.fetch_add(*entries, Relaxed);
        stats.live_bytes.fetch_add(self.buf.len() as u64, Relaxed);
        self.active.len += self.buf.len() as u64;
        self.active.count += *entries;
        {
            let mut index = self.shared.index();
            if let Some(segment) = index.segments.get_mut(&self.active.base) {
                segment.grow(self.active.count);
                segment.file_len = self.active.len;
                segment.points.append(points);
            }
            index.durable_end = self.next_id;
            if index.oldest_live().is_none() {
                index.refresh_oldest(stats);
            }
        }
        self.shared.durable.send_replace(EntryId(self.next_id));
        self.buf.clear();
        *entries = 0;
        Ok(())
    }

    /// Forgets the ids and index points given to the frames of a failed write.
    fn rollback(&mut self, points: &mut Vec<Point>, entries: u64) {
        self.next_id -= entries;
        points.clear();
        let index = self.shared.index();
        self.active.last_point = index
            .segments
            .get(&self.active.base)
            .and_then(|s| s.points.last().copied());
        self.buf.clear();
    }

    fn fail(&self, error: &SpoolError) {
        tracing::error!(error = %error, "spool: appends stop until a restart");
        *self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
    }

    /// Starts a new segment at `next_id` (the old one is fsynced already).
    pub fn rotate(&mut self) -> Result<(), SpoolError> {
        let shared = Arc::clone(&self.shared);
        let base = self.next_id;
        let path = dir::segment_path(&shared.dir, base);
        let salt: u64 = rand::random();
        let created = (|| {
            let mut file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            file.write_all(&frame::segment_header(salt))?;
            file.sync_data()?;
            self.dir_file.sync_all()?;
            Ok::<_, std::io::Error>(file)
        })()
        .map_err(|e| {
            let error = SpoolError::io("starting a segment", &path, &e);
            self.fail(&error);
            error
        })?;
        let len = frame::SEGMENT_HEADER_LEN;
        self.active = Active {
            base,
            file: created,
            len,
            seed: frame::seed(salt),
            count: 0,
            last_point: None,
        };
        shared
            .index()
            .segments
            .insert(base, Segment::new(base, self.active.seed, len));
        shared.stats.live_bytes.fetch_add(len, Relaxed);
        shared.reserved.fetch_add(len, Relaxed);
        Ok(())
    }

    /// Writes the done marks made since the last call, deletes segments whose entries are all
    /// done, and fsyncs the done files (and the directory) when a sync is due or `force`d.
    fn persist_done(&mut self, force: bool) -> Result<(), SpoolError> {
        let (marks, bases, deletable) = {
            let mut index = self.shared.index();
            let marks = std::mem::take(&mut index.pending_done);
            let bases: Vec<u64> = index.segments.keys().copied().collect();
            (marks, bases, index.deletable())
        };
        let mut result = self.write_marks(marks, &bases, &deletable);
        for base in deletable {
            self.delete_segment(base);
        }
        let due =
            force || self.last_done_sync.elapsed() >= self.shared.settings.done_sync_interval();
        if due && (!self.unsynced_done.is_empty() || self.dir_dirty) {
            for base in std::mem::take(&mut self.unsynced_done) {
                if let Some(file) = self.done_files.get(&base) {
                    if let Err(e) = file.sync_data() {
                        let path = dir::done_path(&self.shared.dir, base);
                        result = result.and(Err(SpoolError::io("fsyncing", &path, &e)));
                    }
                }
            }
            if std::mem::take(&mut self.dir_dirty) {
                result = result.and(dir::sync_dir(&self.dir_file, &self.shared.dir));
            }
            self.shared.stats.done_syncs.fetch_add(1, Relaxed);
        }
        if due {
            self.last_done_sync = Instant::now();
        }
        result
    }

    /// Appends `marks` as id ranges to their segments' done files (those of segments about to
    /// be deleted are dropped: the deletion says more).
    fn write_marks(
        &mut self,
        mut marks: Vec<u64>,
        bases: &[u64],
        skip: &[u64],
    ) -> Result<(), SpoolError> {
        marks.sort_unstable();
        marks.dedup();
        let mut per_segment: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut at = 0;
        while at < marks.len() {
            let first = marks[at];
            let Some(base) = bases
                .partition_point(|b| *b <= first)
                .checked_sub(1)
                .map(|i| bases[i])
            else {
                at += 1;
                continue;
            };
            let limit = bases
                .iter()
                .find(|b| **b > first)
                .copied()
                .unwrap_or(u64::MAX);
            let mut count: u32 = 1;
            while at + (count as usize) < marks.len()
                && marks[at + count as usize] == first + u64::from(count)
                && first + u64::from(count) < limit
                && count < u32::MAX
            {
                count += 1;
            }
            at += count as usize;
            if !skip.contains(&base) {
                frame::encode_done(per_segment.entry(base).or_default(), first, count);
            }
        }
        let mut result = Ok(());
        for (base, bytes) in per_segment {
            if let Err(e) = self.append_done(base, &bytes) {
                let path = dir::done_path(&self.shared.dir, base);
                result = Err(SpoolError::io("writing done marks to", &path, &e));
            }
        }
        result
    }

    fn append_done(&mut self, base: u64, bytes: &[u8]) -> std::io::Result<()> {
        let path = dir::done_path(&self.shared.dir, base);
        let mut written = bytes.len() as u64;
        if !self.done_files.contains_key(&base) {
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            if file.metadata()?.len() == 0 {
                file.write_all(&frame::DONE_MAGIC)?;
                written += frame::DONE_HEADER_LEN;
                self.dir_dirty = true;
            }
            self.done_files.insert(base, file);
        }
        if let Some(file) = self.done_files.get_mut(&base) {
            file.write_all(bytes)?;
        }
        self.unsynced_done.insert(base);
        if let Some(segment) = self.shared.index().segments.get_mut(&base) {
            segment.done_len += written;
        }
        self.shared.stats.live_bytes.fetch_add(written, Relaxed);
        self.shared.reserved.fetch_add(written, Relaxed);
        Ok(())
    }

    /// Deletes a segment whose entries are all done: the segment file first, so a crash in
    /// between leaves a done file without a segment (removed at the next open), never a
    /// segment without its done marks.
    fn delete_segment(&mut self, base: u64) {
        let dir = self.shared.dir.clone();
        if let Err(e) = remove(&dir::segment_path(&dir, base)) {
            tracing::warn!(error = %e, segment = base, "spool: cannot delete a done segment; retrying later");
            return;
        }
        self.done_files.remove(&base);
        self.unsynced_done.remove(&base);
        if let Err(e) = remove(&dir::done_path(&dir, base)) {
            tracing::warn!(error = %e, segment = base, "spool: cannot delete a done file; the next open removes it");
        }
        self.dir_dirty = true;
        let freed = self
            .shared
            .index()
            .segments
            .remove(&base)
            .map_or(0, |s| s.file_len + s.done_len);
        let stats = &self.shared.stats;
        stats.live_bytes.fetch_sub(freed, Relaxed);
        stats.segments_deleted.fetch_add(1, Relaxed);
        self.shared.reserved.fetch_sub(freed, Relaxed);
    }

    /// Refreshes the free-space figure appends are checked against (logging when it crosses
    /// `spool.min_free_bytes`, see `dir::log_space_change`).
    pub fn check_space(&mut self, force: bool) {
        if force || self.last_space_check.elapsed() >= SPACE_CHECK_EVERY {
            let free = dir::free_bytes(&self.dir_file).unwrap_or(u64::MAX);
            let before = self.shared.free_bytes.swap(free, Relaxed);
            self.last_space_check = Instant::now();
            dir::log_space_change(&self.shared, before, free);
        }
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
