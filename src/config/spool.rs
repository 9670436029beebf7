//! The `[spool]` settings: where the disk-acknowledgement spool lives, how large it may grow and
//! how its group commit trades latency for fsyncs. Apart from the other sections because the
//! spool is a storage engine of its own (the `spool` module), opened before any stream uses it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The write-ahead spool of the streams acknowledged on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// The spool's directory (created if missing); one process per directory (a lock file).
    pub dir: String,
    /// Bound of the spool on disk: segment files plus their done-mark files. An append that
    /// would pass it is refused (the client gets 503 and `Retry-After`).
    pub max_bytes: u64,
    /// A segment file is closed and a new one started past this size; a segment is deleted
    /// once all its records are done, so this is also the granularity of freeing space.
    pub segment_bytes: u64,
    /// Appends are refused while the file system has less free space than this.
    pub min_free_bytes: u64,
    /// Group commit: after the first waiting append, how long the writer gathers more before
    /// it writes and fsyncs them together (0: only what is already waiting).
    pub commit_interval_us: u64,
    /// Group commit: bytes written before one fsync at most, whatever the interval.
    pub commit_max_bytes: u64,
    /// How often done marks are fsynced (they are written at once, without fsync).
    pub done_sync_interval_ms: u64,
    /// Once delivery has caught up, how long it waits after new events are fsynced before it
    /// reads them back: many group commits are then read, handed over and batched at once.
    /// Adds up to this much to the time until Kinesis has an event, not to its 202.
    pub read_delay_ms: u64,
    /// Bound of `failed.ndjson`, where records Kinesis finally refused are kept (0: none kept,
    /// only logged and counted).
    pub failed_max_bytes: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            dir: "spool".into(),
            max_bytes: 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            min_free_bytes: 256 * 1024 * 1024,
            commit_interval_us: 0,
            commit_max_bytes: 4 * 1024 * 1024,
            done_sync_interval_ms: 1_000,
            read_delay_ms: 25,
            failed_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl SpoolSettings {
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(&self.dir)
    }
    pub fn commit_interval(&self) -> Duration {
        Duration::from_micros(self.commit_interval_us)
    }
    pub fn read_delay(&self) -> Duration {
        Duration::from_millis(self.read_delay_ms)
    }
    pub fn done_sync_interval(&self) -> Duration {
        Duration::from_millis(self.done_sync_interval_ms)
    }
}
