//! What the registry needs to know about a running pipeline without asking its thread: whether
//! Kinesis said its stream does not exist (then the pipeline is retired and its slot given back)
//! and when a request last used it (idle pipelines are reclaimed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct StreamStatus {
    /// Kinesis answered `ResourceNotFoundException` for the stream.
    missing: AtomicBool,
    /// Milliseconds from `epoch` to the last request that used the pipeline.
    last_used_ms: AtomicU64,
    epoch: Instant,
}

impl StreamStatus {
    pub(super) fn new() -> Self {
        Self {
            missing: AtomicBool::new(false),
            last_used_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn mark_missing(&self) {
        self.missing.store(true, Ordering::Relaxed);
    }

    pub(super) fn is_missing(&self) -> bool {
        self.missing.load(Ordering::Relaxed)
    }

    pub(super) fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        // Skip the store when another request already wrote this millisecond: fewer writes to
        // a cache line every worker reads.
        if self.last_used_ms.load(Ordering::Relaxed) != now {
            self.last_used_ms.store(now, Ordering::Relaxed);
        }
    }

    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}
