//! Opening a spool directory: the lock, then recovery. Done files are read first, then every
//! segment is scanned frame by frame, so the live entries are counted in one pass; a torn tail
//! is cut, a corrupt stretch in the middle is skipped (reading resumes at the next valid
//! frame), and a crash in the middle of deleting a segment is finished.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use super::dir;
use super::error::SpoolError;
use super::frame::{self, Frame};
use super::handle::Spool;
use super::index::{Index, Point, Segment};
use super::read::read_frame;
use super::record::EntryId;
use super::shared::Shared;
use super::writer::{Active, Writer};
use crate::config::SpoolSettings;
use crate::domain::{Region, StreamName};

/// What [`Spool::open`] found: the entries to send again and what it repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries appended before and not done: to be sent again.
    pub pending_records: u64,
    /// Their size on disk.
    pub pending_bytes: u64,
    /// How many of them each (region, stream) has: the pipelines to start for the replay.
    pub pending_by_stream: BTreeMap<(Region, StreamName), u64>,
    /// Cursor for [`Spool::read_pending`]: no live entry has a lower id.
    pub first_pending: EntryId,
    /// The first id of this run's appends: replayed entries are all below it.
    pub next_id: EntryId,
    pub torn_tails_cut: u64,
    pub corrupt_entries_skipped: u64,
    /// Segment files kept.
    pub segments: usize,
}

/// Done ranges of one segment, sorted and merged, asked about ids in increasing order.
#[derive(Default)]
struct DoneRanges {
    ranges: Vec<(u64, u64)>,
    at: usize,
}

impl DoneRanges {
    fn contains(&mut self, id: u64) -> bool {
        while self.at < self.ranges.len() && self.ranges[self.at].1 <= id {
            self.at += 1;
        }
        self.ranges
            .get(self.at)
            .is_some_and(|(start, _)| *start <= id)
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `settings.dir`: takes the directory's lock,
    /// recovers what is on disk and starts the writer thread.
    pub fn open(settings: &SpoolSettings) -> Result<(Spool, Recovery), SpoolError> {
        let path = settings.dir();
        std::fs::create_dir_all(&path).map_err(|e| SpoolError::io("creating", &path, &e))?;
        let lock = dir::lock(&path)?;
        let dir_file = dir::open_dir(&path)?;
        let (bases, done_bases) = dir::list(&path)?;
        let mut done = read_done_files(&path, &bases, &done_bases)?;
        let done_end = done
            .values()
            .flat_map(|(d, _)| d.ranges.last().map(|r| r.1))
            .max()
            .unwrap_or(1);
        let mut index = Index::default();
        let mut recovery = Recovery {
            pending_records: 0,
            pending_bytes: 0,
            pending_by_stream: BTreeMap::new(),
            first_pending: EntryId(0),
            next_id: EntryId(0),
            torn_tails_cut: 0,
            corrupt_entries_skipped: 0,
            segments: 0,
        };
        let mut tail: Option<(File, u64)> = None;
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let (ranges, done_len) = done.remove(&base).unwrap_or_default();
            let segment_path = dir::segment_path(&path, base);
            match scan(&segment_path, base, last, ranges, &mut recovery)? {
                Some((mut segment, file)) => {
                    segment.done_len = done_len;
                    if last {
                        tail = Some((file, segment.file_len));
                    }
                    index.segments.insert(base, segment);
                }
                None => remove_segment(&path, base),
            }
        }
        let next_id = index
            .segments
            .values()
            .next_back()
            .map_or(1, |s| s.base + s.count)
            .max(done_end)
            .max(1);
        // Fully done segments are deleted now; so is an empty last segment the ids moved past.
        let reuse_tail = index
            .segments
            .values()
            .next_back()
            .map(|s| s.base + s.count == next_id);
        let doomed: Vec<u64> = index
            .segments
            .values()
            .filter(|s| {
                let is_last = Some(s.base) == index.active_base();
                (s.all_done() && !is_last) || (is_last && s.count == 0 && reuse_tail == Some(false))
            })
            .map(|s| s.base)
            .collect();
        for base in doomed {
            index.segments.remove(&base);
            remove_segment(&path, base);
        }
        dir::sync_dir(&dir_file, &path)?;
        let live_bytes: u64 = index
            .segments
            .values()
            .map(|s| s.file_len + s.done_len)
            .sum();
        recovery.segments = index.segments.len();
        recovery.next_id = EntryId(next_id);
        index.durable_end = next_id;
        let shared = Arc::new(Shared {
            dir: path.clone(),
            settings: settings.clone(),
            index: Mutex::new(index),
            stats: Default::default(),
            reserved: AtomicU64::new(live_bytes),
            queued: AtomicUsize::new(0),
            free_bytes: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            failed: Mutex::new(None),
            durable: watch::channel(EntryId(next_id)).0,
        });
        {
            let stats = &shared.stats;
            stats.live_bytes.store(live_bytes, Relaxed);
            stats.live_records.store(recovery.pending_records, Relaxed);
            stats
                .replayed_at_start
                .store(recovery.pending_records, Relaxed);
            stats.torn_tails_cut.store(recovery.torn_tails_cut, Relaxed);
            stats
                .corrupt_entries_skipped
                .store(recovery.corrupt_entries_skipped, Relaxed);
            let mut index = shared.index();
            index.refresh_oldest(stats);
            recovery.first_pending = EntryId(index.oldest_live().unwrap_or(next_id));
        }
        let (appends_tx, appends) = crossbeam_channel::unbounded();
        let (control_tx, control) = crossbeam_channel::unbounded();
        let (active, needs_segment) = match (tail, reuse_tail) {
            (Some((file, len)), Some(true)) => {
                let segment = shared
                    .index()
                    .segments
                    .values()
                    .next_back()
                    .map(|s| (s.base, s.seed, s.count, s.points.last().copied()));
                let (base, seed, count, last_point) = segment.unwrap_or((next_id, 0, 0, None));
                let active = Active {
                    base,
                    file,
                    len,
                    seed,
                    count,
                    last_point,
                };
                (active, false)
            }
            // A placeholder that `rotate` replaces before anything is written.
            _ => (placeholder(&dir_file)?, true),
        };
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            appends,
            control,
            dir_file,
            _lock: lock,
            active,
            next_id,
            buf: Vec::new(),
            done_files: HashMap::new(),
            unsynced_done: BTreeSet::new(),
            dir_dirty: false,
            last_done_sync: Instant::now(),
            last_space_check: Instant::now(),
        };
        if needs_segment {
            writer.rotate()?;
            recovery.segments = shared.index().segments.len();
        }
        writer.check_space(true);
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| SpoolError::io("starting the writer thread for", &path, &e))?;
        if recovery.pending_records > 0 || recovery.torn_tails_cut > 0 {
            tracing::info!(
                dir = %path.display(),
                pending = recovery.pending_records,
                torn_tails_cut = recovery.torn_tails_cut,
                corrupt_entries_skipped = recovery.corrupt_entries_skipped,
                "spool: recovered entries to send again"
            );
        }
        let spool = Spool {
            shared,
            appends: appends_tx,
            control: control_tx,
        };
        Ok((spool, recovery))
    }
}

/// A handle that stands for the active segment until the first one is created.
fn placeholder(dir_file: &File) -> Result<Active, SpoolError> {
    let file = dir_file
        .try_clone()
        .map_err(|e| SpoolError::io("duplicating", Path::new("."), &e))?;
    Ok(Active {
        base: 0,
        file,
        len: 0,
        seed: 0,
        count: 0,
        last_point: None,
    })
}

fn remove_segment(dir: &Path, base: u64) {
    for path in [dir::segment_path(dir, base), dir::done_path(dir, base)] {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, path = %path.display(), "spool: cannot delete a finished file");
            }
        }
    }
}

/// The done ranges (and file length) of each segment that exists; done files of deleted
/// segments are removed, a torn last record is cut.
fn read_done_files(
    dir: &Path,
    bases: &[u64],
    done_bases: &[u64],
) -> Result<HashMap<u64, (DoneRanges, u64)>, SpoolError> {
    let mut found = HashMap::new();
    for &base in done_bases {
        let path = dir::done_path(dir, base);
        if bases.binary_search(&base).is_err() {
            remove_segment(dir, base);
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| SpoolError::io("reading", &path, &e))?;
        let header = frame::DONE_HEADER_LEN as usize;
        if bytes.len() >= header && bytes[..header] != frame::DONE_MAGIC {
            return Err(SpoolError::Format {
                path,
                message: "wrong magic bytes".into(),
            });
        }
        let body = bytes.get(header..).unwrap_or_default();
        let mut ranges: Vec<(u64, u64)> = body
            .chunks_exact(frame::DONE_RECORD_LEN)
            .filter_map(frame::decode_done)
            .map(|(first, count)| (first, first.saturating_add(u64::from(count))))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        // Appends must start on a record boundary: cut a torn record (or a torn header).
        let whole = if bytes.len() < header {
            0
        } else {
            header + body.len() / frame::DONE_RECORD_LEN * frame::DONE_RECORD_LEN
        };
        if whole < bytes.len() {
            truncate(&path, whole as u64)?;
        } else {
            sync(&path)?;
        }
        let ranges = DoneRanges {
            ranges: merged,
            at: 0,
        };
        found.insert(base, (ranges, whole as u64));
    }
    Ok(found)
}

/// fsyncs a file recovery read, so what it found stays found.
fn sync(path: &Path) -> Result<(), SpoolError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| SpoolError::io("fsyncing", path, &e))
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| SpoolError::io("opening", path, &e))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| SpoolError::io("truncating", path, &e))
}

/// Scans one segment: its live entries are counted into `recovery`, a damaged tail is cut.
/// `None`: the file holds no header (a crash while creating it): the caller removes it.
fn scan(
    path: &Path,
    base: u64,
    last: bool,
    mut done: DoneRanges,
    recovery: &mut Recovery,
) -> Result<Option<(Segment, File)>, SpoolError> {
    let io = |op: &'static str| move |e: std::io::Error| SpoolError::io(op, path, &e);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(io("opening"))?;
    let file_len = file.metadata().map_err(io("reading"))?.len();
    let mut header = [0; frame::SEGMENT_HEADER_LEN as usize];
    if file_len < frame::SEGMENT_HEADER_LEN {
        if file_len > 0 && last {
            tracing::warn!(path = %path.display(), "spool: cut a torn segment header");
            recovery.torn_tails_cut += 1;
        }
        return Ok(None);
    }
    file.read_exact(&mut header).map_err(io("reading"))?;
    let Some(salt) = frame::parse_segment_header(&header) else {
        return Err(SpoolError::Format {
            path: path.to_owned(),
            message: "wrong magic bytes".into(),
        });
    };
    let seed = frame::seed(salt);
    let mut segment = Segment::new(base, seed, frame::SEGMENT_HEADER_LEN);
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut pos = frame::SEGMENT_HEADER_LEN;
    let mut expected = base;
    let mut buf = Vec::new();
    let mut last_point: Option<Point> = None;
    while pos < file_len {
        let valid = read_frame(&mut reader, &mut buf, file_len - pos).map_err(io("reading"))?;
        let entry = match (valid, frame::decode(&buf, seed)) {
            (
                true,
                Frame::Valid {
                    id,
                    appended_ms,
                    body,
                    len,
                },
                // Each skipped id had at least a byte: a bigger jump is damage (the checksum
                // passing by chance), not a reason to size the done bits for it.
            ) if id >= expected && id - expected <= file_len => frame::parse_body(body)
                .map(|(region, stream, _)| (id, appended_ms, len as u64, region, stream)),
            _ => None,
        };
        let Some((id, ms, len, region, stream)) = entry else {
            // Damaged at `pos`: resume at the next valid frame, or cut the tail if none.
            let mut rest = Vec::new();
            reader
                .seek(SeekFrom::Start(pos + 1))
                .map_err(io("reading"))?;
            reader.read_to_end(&mut rest).map_err(io("reading"))?;
            match frame::resync(&rest, seed, expected.saturating_sub(1)) {
                Some(skip) => {
                    pos += 1 + skip as u64;
                    // A reader must be able to start here without meeting the damage.
                    last_point = None;
                    reader.seek(SeekFrom::Start(pos)).map_err(io("reading"))?;
                    continue;
                }
                None => {
                    cut_tail(path, pos, file_len, last, recovery)?;
                    break;
                }
            }
        };
        if id > expected {
            tracing::warn!(path = %path.display(), offset = pos, lost = id - expected, "spool: skipped corrupt entries");
            recovery.corrupt_entries_skipped += id - expected;
        }
        segment.grow(id - base + 1);
        for lost in expected..id {
            segment.set_done(lost);
        }
        if done.contains(id) {
            segment.set_done(id);
        } else {
            recovery.pending_records += 1;
            recovery.pending_bytes += len;
            *recovery
                .pending_by_stream
                .entry((region, stream))
                .or_default() += 1;
        }
        if last_point.is_none_or(|p| p.is_far(pos, ms)) {
            let point = Point {
                id,
                offset: pos,
                ms,
            };
            segment.points.push(point);
            last_point = Some(point);
        }
        expected = id + 1;
        pos += len;
    }
    drop(reader);
    // What recovery read is what replay and done marks build on from now: make it durable (a
    // process crash leaves written but unsynced bytes in the page cache).
    file.sync_all().map_err(io("fsyncing"))?;
    segment.file_len = pos.min(file_len);
    Ok(Some((segment, file)))
}

fn cut_tail(
    path: &Path,
    pos: u64,
    file_len: u64,
    last: bool,
    recovery: &mut Recovery,
) -> Result<(), SpoolError> {
    if last {
        recovery.torn_tails_cut += 1;
        tracing::warn!(path = %path.display(), offset = pos, bytes = file_len - pos, "spool: cut a torn tail (a write the crash interrupted)");
    } else {
        recovery.corrupt_entries_skipped += 1;
        tracing::warn!(path = %path.display(), offset = pos, bytes = file_len - pos, "spool: cut a corrupt segment end");
    }
    truncate(path, pos)
}
