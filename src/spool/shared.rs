//! The state the handles, the writer thread and readers share: the index behind its mutex,
//! the stats, the byte reservation that bounds the spool, and the flags that stop appends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::error::{FullReason, SpoolError};
use super::index::Index;
use super::record::EntryId;
use super::stats::SpoolStats;

/// State shared by the handles, the writer thread and readers.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub settings: crate::config::SpoolSettings,
    pub index: Mutex<Index>,
    pub stats: SpoolStats,
    /// Bytes on disk plus bytes queued for the writer: what `max_bytes` bounds.
    pub reserved: AtomicU64,
    /// Appends sent to the writer and not yet taken by it: bounded by `WRITER_QUEUE`.
    pub queued: AtomicUsize,
    /// Free bytes of the file system at the writer's last look.
    pub free_bytes: AtomicU64,
    /// Set by `close` (and a writer that stopped): appends are refused.
    pub closed: AtomicBool,
    /// Set after a write or fsync error: appends are refused until a restart.
    pub failed: Mutex<Option<String>>,
    /// The durable end (next id), for readers waiting for new entries.
    pub durable: watch::Sender<EntryId>,
}

impl Shared {
    /// The index, even if a thread panicked while holding it: every update leaves it whole.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn refuse(&self, reason: FullReason) -> SpoolError {
        self.stats.refused_full.fetch_add(1, Relaxed);
        SpoolError::Full(reason)
    }
}
