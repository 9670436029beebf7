//! What the aggregator does with time besides flushing: retries whose backoff is over go back
//! to the front of their lane, records past their deadline are answered with their last
//! failure, and at the end of the shutdown grace period whatever still waits is failed
//! `ShuttingDown`. Kept apart from the loop, which decides when batches go.

use std::time::Instant;

use super::Aggregator;
use crate::kinesis::PutRecordsApi;
use crate::pipeline::key_order::KeyOrder;
use crate::pipeline::outcome::{FailureKind, RecordFailure};
use crate::pipeline::pending::PendingRecord;

impl<K: PutRecordsApi> Aggregator<K> {
    pub(super) fn fail_out_record_at_deadline(&mut self, record: PendingRecord) {
        let key = self
            .key_order
            .is_some()
            .then(|| record.record.partition_key.clone());
        record.fail_at_deadline(&self.metrics);
        if let Some(key) = key {
            self.release(&key);
        }
    }

    /// Retries whose backoff is over go to the front: they are the oldest records.
    pub(super) fn promote_due_retries(&mut self, now: Instant) {
        if self.backing_off.is_empty() {
            return;
        }
        let mut due: Vec<PendingRecord> = Vec::new();
        let mut i = 0;
        while i < self.backing_off.len() {
            if self.backing_off[i].ready_at <= now {
                due.push(self.backing_off.swap_remove(i));
            } else {
                i += 1;
            }
        }
        // Newest first, each to the front: the oldest ends up first in its shard's lane.
        due.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        for record in due {
            self.lanes.push_front(record);
        }
    }

    /// Fails every record waiting here (not those in calls) as `ShuttingDown`; how many.
    pub(super) fn give_up_waiting(&mut self) -> usize {
        let left: Vec<PendingRecord> = self
            .lanes
            .drain_all()
            .into_iter()
            .chain(self.backing_off.drain(..))
            .chain(self.key_order.iter_mut().flat_map(KeyOrder::drain_all))
            .collect();
        let count = left.len();
        for record in left {
            record.finish(
                &self.metrics,
                Err(RecordFailure {
                    kind: FailureKind::ShuttingDown,
                    kinesis_code: "shutting_down".into(),
                    message: "the proxy shut down before the record could be written".into(),
                }),
            );
        }
        count
    }

    /// Answers the records whose deadline has passed, and after the grace period, all of them.
    pub(super) fn expire(&mut self, now: Instant) {
        let past_grace = self.grace_deadline.is_some_and(|g| now >= g);
        if past_grace {
            let records = self.give_up_waiting();
            if records > 0 {
                tracing::error!(stream = %self.metrics.stream, records, "shutdown grace period over: failing records not yet in Kinesis");
            }
            return;
        }
        // Records are ordered by age at the front of each lane; retries sit there too.
        let held = self
            .key_order
            .as_mut()
            .map(|o| o.expire(now))
            .unwrap_or_default();
        for record in held {
            record.fail_at_deadline(&self.metrics);
        }
        for record in self.lanes.expire(now) {
            self.fail_out_record_at_deadline(record);
        }
        let mut i = 0;
        while i < self.backing_off.len() {
            if self.backing_off[i].deadline <= now {
                let record = self.backing_off.swap_remove(i);
                self.fail_out_record_at_deadline(record);
            } else {
                i += 1;
            }
        }
    }
}
