//! Reading live entries back, from a cursor on, for a consumer that holds only a bounded number
//! of records in memory. Blocking reads of durable bytes only (what an fsync covered), so a
//! reader never sees an entry whose append was not answered; done entries are skipped with a
//! copy of the done bits taken when the read starts.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, UNIX_EPOCH};

use super::dir;
use super::error::SpoolError;
use super::frame::{self, Frame};
use super::index::DoneBits;
use super::record::{EntryId, SpooledRecord};
use super::shared::Shared;
use crate::domain::{Region, StreamName};

/// A page of live entries.
#[derive(Debug)]
pub struct PendingRead {
    /// In id order.
    pub records: Vec<SpooledRecord>,
    /// Where the next read continues: every live entry below it was returned (by this read
    /// or an earlier one with a lower cursor).
    pub next: EntryId,
    /// The read reached the durable end: nothing more until new appends are fsynced.
    pub caught_up: bool,
}

/// Bytes one read may scan past done or other streams' entries before it returns what it has,
/// so a call stays short; the cursor carries on from there.
const MIN_SCAN_BUDGET: u64 = 8 * 1024 * 1024;

/// What a read needs of one segment, copied under the index lock.
struct Plan {
    base: u64,
    end_id: u64,
    seed: u32,
    file_len: u64,
    offset: u64,
    done: DoneBits,
}

pub(super) fn read_pending(
    shared: &Shared,
    from: EntryId,
    max_records: usize,
    max_bytes: usize,
    only: Option<(&Region, &StreamName)>,
) -> Result<PendingRead, SpoolError> {
    if shared.closed.load(Relaxed) {
        return Err(SpoolError::Closed);
    }
    let (end, plans) = {
        let index = shared.index();
        let end = index.durable_end;
        // Nothing below the oldest live entry needs reading.
        let start = from.0.max(index.oldest_live().unwrap_or(end));
        let plans: Vec<Plan> = index
            .segments
            .values()
            .filter(|s| s.base + s.count > start)
            .map(|s| Plan {
                base: s.base,
                end_id: s.base + s.count,
                seed: s.seed,
                file_len: s.file_len,
                offset: s.point_before(start).map_or(s.file_len, |p| p.offset),
                done: s.done_from(start),
            })
            .collect();
        (end.max(start), plans)
    };
    let start = plans.first().map_or(end, |p| from.0.max(p.base));
    let mut page = Page {
        records: Vec::new(),
        bytes: 0,
        max_records: max_records.max(1),
        max_bytes,
        scanned: 0,
        budget: MIN_SCAN_BUDGET.max(4 * max_bytes as u64),
        next: start,
    };
    for plan in &plans {
        if !read_segment(shared, plan, from.0, only, &mut page)? {
            return Ok(page.finish(false));
        }
        page.next = page.next.max(plan.end_id);
    }
    page.next = page.next.max(end);
    Ok(page.finish(true))
}

struct Page {
    records: Vec<SpooledRecord>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    scanned: u64,
    budget: u64,
    next: u64,
}

impl Page {
    fn finish(self, caught_up: bool) -> PendingRead {
        PendingRead {
            records: self.records,
            next: EntryId(self.next),
            caught_up,
        }
    }
}

/// Reads one segment's live entries from `from` into `page`; false when the page is full.
fn read_segment(
    shared: &Shared,
    plan: &Plan,
    from: u64,
    only: Option<(&Region, &StreamName)>,
    page: &mut Page,
) -> Result<bool, SpoolError> {
    let path = dir::segment_path(&shared.dir, plan.base);
    let io = |e: std::io::Error| SpoolError::io("reading", &path, &e);
    let file = match File::open(&path) {
        Ok(file) => file,
        // Deleted since the plan was made: every entry in it was done.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(io(e)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut pos = plan.offset;
    reader.seek(SeekFrom::Start(pos)).map_err(io)?;
    let mut buf = Vec::new();
    while pos < plan.file_len {
        if page.scanned >= page.budget {
            return Ok(false);
        }
        // A short read decodes as not valid, like damage: only durable bytes are read.
        read_frame(&mut reader, &mut buf, plan.file_len - pos).map_err(io)?;
        let Frame::Valid {
            id,
            appended_ms,
            body,
            len,
        } = frame::decode(&buf, plan.seed)
        else {
            match skip_damage(shared, plan, pos, page.next.max(from)) {
                Some(resume) => {
                    pos = resume;
                    reader.seek(SeekFrom::Start(pos)).map_err(io)?;
                    continue;
                }
                None => return Ok(true),
            }
        };
        pos += len as u64;
        page.scanned += len as u64;
        if id < from || plan.done.is_done(id) {
            page.next = page.next.max(id + 1);
            continue;
        }
        let Some((region, stream, record)) = frame::parse_body(body) else {
            lose(shared, &path, id..id + 1);
            page.next = id + 1;
            continue;
        };
        if only.is_some_and(|(r, s)| *r != region || *s != stream) {
            page.next = id + 1;
            continue;
        }
        let size = record.kinesis_size();
        let full = page.records.len() >= page.max_records
            || (!page.records.is_empty() && page.bytes + size > page.max_bytes);
        if full {
            page.next = id;
            return Ok(false);
        }
        page.bytes += size;
        page.records.push(SpooledRecord {
            id: EntryId(id),
            appended_at: UNIX_EPOCH + Duration::from_millis(appended_ms),
            region,
            stream,
            record,
        });
        page.next = id + 1;
    }
    Ok(true)
}

/// A frame that fails its checksum inside the durable part of a segment: the disk changed
/// under the spool. Reading resumes at the next index point (a frame boundary known good when
/// it was written); the entries in between are lost, counted and marked done, so they do not
/// hold their segment forever. `None`: nothing further in this segment.
fn skip_damage(shared: &Shared, plan: &Plan, pos: u64, next: u64) -> Option<u64> {
    let path = dir::segment_path(&shared.dir, plan.base);
    let resume = shared
        .index()
        .segments
        .get(&plan.base)
        .and_then(|s| s.point_after(pos));
    let lost_until = resume.map_or(plan.end_id, |p| p.id);
    lose(shared, &path, next.max(plan.base)..lost_until);
    resume.map(|p| p.offset)
}

fn lose(shared: &Shared, path: &std::path::Path, ids: std::ops::Range<u64>) {
    // Ids recovery already skipped are done: only new damage is counted.
    let first = ids.start;
    let lost = {
        let mut index = shared.index();
        ids.filter(|id| index.mark_done(*id, &shared.stats)).count() as u64
    };
    if lost > 0 {
        tracing::error!(path = %path.display(), first, lost, "spool: entries damaged on disk since the spool was opened are lost");
        shared
            .stats
            .corrupt_entries_skipped
            .fetch_add(lost, Relaxed);
    }
}

/// Reads the frame at the reader's position into `buf`; false when fewer bytes than the frame
/// claims are left (`left` bytes until the end of the file), or its length is impossible.
pub(super) fn read_frame(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
    left: u64,
) -> std::io::Result<bool> {
    buf.clear();
    let header = frame::FRAME_HEADER_LEN;
    if left < header as u64 {
        return Ok(false);
    }
    buf.resize(header, 0);
    reader.read_exact(buf)?;
    let body = u64::from(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]));
    if body > frame::MAX_BODY_LEN as u64 || header as u64 + body > left {
        return Ok(false);
    }
    buf.resize(header + body as usize, 0);
    reader.read_exact(&mut buf[header..])?;
    Ok(true)
}
