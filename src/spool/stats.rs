//! The spool's numbers for metrics: counters and gauges kept as atomics by the writer thread,
//! the done-mark path and recovery, read without locks by whoever exports them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Live counters; `Spool::stats` hands out a [`StatsSnapshot`].
#[derive(Debug, Default)]
pub(super) struct SpoolStats {
    pub live_bytes: AtomicU64,
    pub live_records: AtomicU64,
    /// 0 when nothing is live.
    pub oldest_live_unix_ms: AtomicU64,
    pub fsyncs: AtomicU64,
    pub records_fsynced: AtomicU64,
    pub replayed_at_start: AtomicU64,
    pub torn_tails_cut: AtomicU64,
    pub corrupt_entries_skipped: AtomicU64,
    pub refused_full: AtomicU64,
    pub done_marks: AtomicU64,
    pub done_syncs: AtomicU64,
    pub segments_deleted: AtomicU64,
}

/// The spool's numbers at one moment. Totals count since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Bytes of the spool's files on disk (segments and done marks).
    pub live_bytes: u64,
    /// Entries appended and not yet marked done.
    pub live_records: u64,
    /// When the oldest live entry was appended (unix ms, to the second); 0 when none is live.
    pub oldest_live_unix_ms: u64,
    /// Group commits: one fsync each (fsyncs of segment rotation and done marks not counted).
    pub fsyncs: u64,
    /// Entries those fsyncs made durable; `records_fsynced / fsyncs` is records per fsync.
    pub records_fsynced: u64,
    /// Entries found live when the spool was opened, to be sent again.
    pub replayed_at_start: u64,
    /// Torn tails (a partial or damaged last entry, from a crash mid-write) cut at open.
    pub torn_tails_cut: u64,
    /// Entries lost to damage in the middle of a segment, skipped.
    pub corrupt_entries_skipped: u64,
    /// Appends refused with [`super::SpoolError::Full`].
    pub refused_full: u64,
    /// Entries marked done.
    pub done_marks: u64,
    /// fsyncs that made done marks durable.
    pub done_syncs: u64,
    /// Segment files deleted because every entry in them was done.
    pub segments_deleted: u64,
}

impl StatsSnapshot {
    /// Age of the oldest live entry at `now`; `None` when nothing is live.
    pub fn oldest_live_age(&self, now: SystemTime) -> Option<Duration> {
        (self.oldest_live_unix_ms != 0).then(|| {
            let appended = UNIX_EPOCH + Duration::from_millis(self.oldest_live_unix_ms);
            now.duration_since(appended).unwrap_or_default()
        })
    }

    /// Mean entries per group-commit fsync.
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.records_fsynced as f64 / self.fsyncs as f64
        }
    }
}

impl SpoolStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            live_bytes: self.live_bytes.load(Relaxed),
            live_records: self.live_records.load(Relaxed),
            oldest_live_unix_ms: self.oldest_live_unix_ms.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            records_fsynced: self.records_fsynced.load(Relaxed),
            replayed_at_start: self.replayed_at_start.load(Relaxed),
            torn_tails_cut: self.torn_tails_cut.load(Relaxed),
            corrupt_entries_skipped: self.corrupt_entries_skipped.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            done_marks: self.done_marks.load(Relaxed),
            done_syncs: self.done_syncs.load(Relaxed),
            segments_deleted: self.segments_deleted.load(Relaxed),
        }
    }
}

/// Milliseconds since the unix epoch, the entries' timestamps.
pub(super) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
