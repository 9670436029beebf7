//! What the spool knows in memory about its segments: which ids each holds, which are done
//! (one bit per entry), and a sparse index of entry offsets and times. Shared behind one mutex
//! by the writer thread (new entries, deletions), `mark_done` callers and readers; every
//! critical section is short and does no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use super::stats::SpoolStats;

/// An index point: where an entry starts and when it was appended. One per
/// `POINT_EVERY_BYTES` of a segment and per `POINT_EVERY_MS`, so a reader finds an id after
/// scanning at most that many bytes, and the oldest entry's age is known to within a second,
/// while the index stays tiny (a few bytes per 64 KiB of spool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Point {
    pub id: u64,
    pub offset: u64,
    pub ms: u64,
}

pub(super) const POINT_EVERY_BYTES: u64 = 64 * 1024;
pub(super) const POINT_EVERY_MS: u64 = 1_000;

impl Point {
    /// Whether an entry at `offset`, appended at `ms`, needs a point after this one.
    pub fn is_far(&self, offset: u64, ms: u64) -> bool {
        offset >= self.offset + POINT_EVERY_BYTES || ms >= self.ms + POINT_EVERY_MS
    }
}

/// One segment file.
#[derive(Debug)]
pub(super) struct Segment {
    /// First id (the file's name); ids `base..base + count` are durable in it.
    pub base: u64,
    pub count: u64,
    /// Checksum seed from the segment's salt.
    pub seed: u32,
    /// Bytes of the file that are durable (fsynced); readers never look past them.
    pub file_len: u64,
    /// Bytes of its done file (0: none yet).
    pub done_len: u64,
    done: Vec<u64>,
    pub done_count: u64,
    /// No entry below `base + low` is live; only moves up.
    low: u64,
    pub points: Vec<Point>,
}

impl Segment {
    pub fn new(base: u64, seed: u32, file_len: u64) -> Self {
        Self {
            base,
            count: 0,
            seed,
            file_len,
            done_len: 0,
            done: Vec::new(),
            done_count: 0,
            low: 0,
            points: Vec::new(),
        }
    }

    pub fn holds(&self, id: u64) -> bool {
        id >= self.base && id - self.base < self.count
    }

    pub fn all_done(&self) -> bool {
        self.done_count == self.count
    }

    pub fn is_done(&self, id: u64) -> bool {
        let at = id - self.base;
        self.done[(at / 64) as usize] & (1 << (at % 64)) != 0
    }

    /// Records `count` as the durable entry count (it only grows).
    pub fn grow(&mut self, count: u64) {
        self.count = count;
        self.done.resize(count.div_ceil(64) as usize, 0);
    }

    /// Marks `id` (which the segment holds) done; whether it was live.
    pub fn set_done(&mut self, id: u64) -> bool {
        let at = id - self.base;
        let word = &mut self.done[(at / 64) as usize];
        let bit = 1 << (at % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.done_count += 1;
        true
    }

    /// The oldest live id, if any.
    pub fn oldest_live(&mut self) -> Option<u64> {
        while self.low < self.count && self.is_done(self.base + self.low) {
            self.low += 1;
        }
        (self.low < self.count).then_some(self.base + self.low)
    }

    /// The last index point at or before `id`: where a reader starts.
    pub fn point_before(&self, id: u64) -> Option<Point> {
        let after = self.points.partition_point(|p| p.id <= id);
        after
            .checked_sub(1)
            .map(|i| self.points[i])
            .or(self.points.first().copied())
    }

    /// The first index point past `offset`: where a reader resumes after damage.
    pub fn point_after(&self, offset: u64) -> Option<Point> {
        let at = self.points.partition_point(|p| p.offset <= offset);
        self.points.get(at).copied()
    }

    /// The done bits of ids `from..base + count`, as a reader's snapshot.
    pub fn done_from(&self, from: u64) -> DoneBits {
        let start_word = (from.max(self.base) - self.base) / 64;
        DoneBits {
            first_id: self.base + start_word * 64,
            words: self.done[start_word as usize..].to_vec(),
        }
    }
}

/// A copy of some done bits: marks only ever get added, so a copy can only miss marks made
/// after it was taken, which a concurrent reader may miss anyway.
pub(super) struct DoneBits {
    first_id: u64,
    words: Vec<u64>,
}

impl DoneBits {
    pub fn is_done(&self, id: u64) -> bool {
        let Some(at) = id.checked_sub(self.first_id) else {
            return true;
        };
        self.words
            .get((at / 64) as usize)
            .is_none_or(|word| word & (1 << (at % 64)) != 0)
    }
}

/// All segments, in id order; the last is the one being written.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub segments: BTreeMap<u64, Segment>,
    /// Marks not yet written to done files, in the order they were made.
    pub pending_done: Vec<u64>,
    /// The next id the writer will give (ids below it are durable, or lost to damage).
    pub durable_end: u64,
    /// The oldest live id, or `None`: kept so `mark_done` recomputes it only when it moves.
    oldest: Option<u64>,
}

impl Index {
    pub fn active_base(&self) -> Option<u64> {
        self.segments.keys().next_back().copied()
    }

    pub fn segment_of(&mut self, id: u64) -> Option<&mut Segment> {
        self.segments
            .range_mut(..=id)
            .next_back()
            .map(|(_, segment)| segment)
            .filter(|segment| segment.holds(id))
    }

    /// Marks `id` done; whether it was live (unknown and done ids are ignored).
    pub fn mark_done(&mut self, id: u64, stats: &SpoolStats) -> bool {
        let Some(segment) = self.segment_of(id) else {
            return false;
        };
        if !segment.set_done(id) {
            return false;
        }
        self.pending_done.push(id);
        stats.live_records.fetch_sub(1, Relaxed);
        stats.done_marks.fetch_add(1, Relaxed);
        if self.oldest == Some(id) {
            self.refresh_oldest(stats);
        }
        true
    }

    /// Recomputes the oldest live entry and its time (to within `POINT_EVERY_MS`).
    pub fn refresh_oldest(&mut self, stats: &SpoolStats) {
        let mut found = None;
        for segment in self.segments.values_mut() {
            if let Some(id) = segment.oldest_live() {
                let ms = segment.point_before(id).map_or(0, |p| p.ms);
                found = Some((id, ms.max(1)));
                break;
            }
        }
        self.oldest = found.map(|(id, _)| id);
        stats
            .oldest_live_unix_ms
            .store(found.map_or(0, |(_, ms)| ms), Relaxed);
    }

    pub fn oldest_live(&self) -> Option<u64> {
        self.oldest
    }

    /// Segments whose entries are all done, apart from the one being written: to delete.
    pub fn deletable(&self) -> Vec<u64> {
        let active = self.active_base();
        self.segments
            .values()
            .filter(|s| s.all_done() && Some(s.base) != active)
            .map(|s| s.base)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_bits_count_once_and_move_the_oldest_live_entry() {
        let stats = SpoolStats::default();
        let mut index = Index::default();
        let mut segment = Segment::new(100, 0, 16);
        segment.grow(130);
        segment.points.push(Point {
            id: 100,
            offset: 16,
            ms: 5_000,
        });
        segment.points.push(Point {
            id: 180,
            offset: 70_000,
            ms: 9_000,
        });
        index.segments.insert(100, segment);
        stats.live_records.store(130, Relaxed);
        index.refresh_oldest(&stats);
        assert_eq!(index.oldest_live(), Some(100));
        assert!(index.mark_done(100, &stats));
        assert!(
            !index.mark_done(100, &stats),
            "a second mark changes nothing"
        );
        assert!(!index.mark_done(230, &stats), "beyond the durable entries");
        assert!(!index.mark_done(99, &stats));
        assert_eq!(index.oldest_live(), Some(101));
        for id in 101..=180 {
            index.mark_done(id, &stats);
        }
        assert_eq!(index.oldest_live(), Some(181));
        assert_eq!(stats.oldest_live_unix_ms.load(Relaxed), 9_000);
        assert_eq!(stats.live_records.load(Relaxed), 49);
        let segment = &index.segments[&100];
        let bits = segment.done_from(150);
        assert!(bits.is_done(150) && bits.is_done(99) && !bits.is_done(181));
        assert!(
            bits.is_done(400),
            "ids past the copy count as not to be read"
        );
        assert_eq!(segment.point_before(179).map(|p| p.id), Some(100));
        assert_eq!(segment.point_after(16).map(|p| p.id), Some(180));
    }
}
