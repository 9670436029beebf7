//! Admission: the records and bytes a pipeline holds, from the moment a handler admits them until
//! they are answered. Everything in the pipeline (queued, in flight, backing off) is inside this
//! budget, so memory is bounded whatever Kinesis does. A handler takes all of a request or none
//! of it; the share is given back by `Ticket`'s drop, so no path can leak it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::shard_backlog::ShardSlot;

/// Records and bytes admitted and not yet answered.
#[derive(Debug)]
pub(super) struct Budget {
    records: AtomicUsize,
    bytes: AtomicUsize,
    max_records: usize,
    max_bytes: usize,
}

impl Budget {
    pub(super) fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_records,
            max_bytes,
        }
    }

    /// Records and bytes admitted and not yet answered.
    pub(super) fn depth(&self) -> (usize, usize) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Gives back what `try_take` took, for a request refused after it.
    pub(super) fn give_back(&self, records: usize, bytes: usize) {
        self.records.fetch_sub(records, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Takes `records`/`bytes` from the budget, all or nothing.
    pub(super) fn try_take(&self, records: usize, bytes: usize) -> bool {
        let before = self.records.fetch_add(records, Ordering::AcqRel);
        if before + records > self.max_records {
            self.records.fetch_sub(records, Ordering::AcqRel);
            return false;
        }
        let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.records.fetch_sub(records, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// One record's share of the budget, given back when the record is answered (dropped), so
/// the accounting cannot leak on any path.
#[derive(Debug)]
pub(super) struct Ticket {
    budget: Arc<Budget>,
    bytes: usize,
    /// Its place in its shard's backlog (`shard_backlog`), when the stream has a shard map.
    _shard: Option<ShardSlot>,
}

impl Ticket {
    pub(super) fn new(budget: &Arc<Budget>, bytes: usize, shard: Option<ShardSlot>) -> Self {
        Self {
            budget: budget.clone(),
            bytes,
            _shard: shard,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.records.fetch_sub(1, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}
