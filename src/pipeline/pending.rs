//! A record on its way through the pipeline, with what is needed to answer for it, and the two
//! messages the aggregator receives: submissions from handlers and completions from calls.

use std::time::Instant;

use tokio::sync::oneshot;

use super::admission::Ticket;
use super::metrics::StreamMetrics;
use super::outcome::{FailureKind, RecordFailure, RecordOutcome};
use crate::domain::{PartitionKey, Record};

/// A record on its way through the pipeline with what is needed to answer for it.
#[derive(Debug)]
pub(super) struct PendingRecord {
    pub(super) record: Record,
    /// `record.kinesis_size()`, kept: batching and shard budgets read it often.
    pub(super) size: usize,
    /// The 128-bit key Kinesis routes it by (explicit hash key, or MD5 of the partition key),
    /// computed on the handler's thread so the aggregator's stays free.
    pub(super) hash_key: u128,
    /// Its shard's lane under the current map (set by `Lanes`).
    pub(super) lane: usize,
    /// `None` when the stream acknowledges at enqueue: nobody waits for this one.
    pub(super) reply: Option<oneshot::Sender<RecordOutcome>>,
    pub(super) received_at: Instant,
    pub(super) deadline: Instant,
    /// Sends so far.
    pub(super) attempts: u32,
    /// When it may go into a batch (later than now while backing off).
    pub(super) ready_at: Instant,
    pub(super) last_failure: Option<RecordFailure>,
    pub(super) _ticket: Ticket,
}

impl PendingRecord {
    pub(super) fn new(
        record: Record,
        hash_key: u128,
        reply: Option<oneshot::Sender<RecordOutcome>>,
        received_at: Instant,
        deadline: Instant,
        ticket: Ticket,
    ) -> Self {
        Self {
            size: record.kinesis_size(),
            hash_key,
            lane: 0,
            record,
            reply,
            received_at,
            deadline,
            attempts: 0,
            ready_at: received_at,
            last_failure: None,
            _ticket: ticket,
        }
    }

    pub(super) fn finish(mut self, metrics: &StreamMetrics, outcome: RecordOutcome) {
        metrics.record_finished(&outcome, self.attempts, self.received_at.elapsed());
        let reply = self.reply.take();
        // Give the budget back before answering, so a client that sends again at once finds
        // room for its next record.
        drop(self);
        if let Some(reply) = reply {
            // The client may have gone away; its record is written all the same.
            let _ = reply.send(outcome);
        }
    }

    pub(super) fn fail_at_deadline(mut self, metrics: &StreamMetrics) {
        let failure = self.last_failure.take().unwrap_or(RecordFailure {
            kind: FailureKind::Unavailable,
            kinesis_code: "deadline_exceeded".into(),
            message: "the record could not be sent to Kinesis before its deadline".into(),
        });
        self.finish(metrics, Err(failure));
    }
}

/// What goes through the queue: one request's records, so a many-records request is one message.
/// Boxed, because the bounded channel preallocates a slot per record of capacity.
pub(super) enum Submission {
    One(Box<PendingRecord>),
    Many(Vec<PendingRecord>),
}

/// A finished `PutRecords` call: frees an in-flight slot and returns the entries to retry.
pub(super) struct Completion {
    pub(super) retries: Vec<PendingRecord>,
    /// The endpoint refused the request body as too large (HTTP 413): send smaller batches.
    pub(super) shrink_batches: bool,
    pub(super) shards: ShardFeedback,
    /// On an ordered stream, the partition keys of the records this call answered: the next
    /// record of each may go out (`key_order`).
    pub(super) released: Vec<PartitionKey>,
}

/// What a call learned about the shards it wrote to, for the adaptive limits and the map.
#[derive(Debug, Default)]
pub(super) struct ShardFeedback {
    /// The map generation the batch's lanes belong to (feedback on an older map is ignored).
    pub(super) generation: u64,
    /// When the call started (the aggregator's clock): feedback on calls started before a
    /// shard's rate last changed says nothing about the new rate.
    pub(super) started_at: Option<Instant>,
    /// Per lane: entries Kinesis answered, and of them how many it throttled.
    pub(super) sent: Vec<u32>,
    pub(super) throttled: Vec<u32>,
    /// Per lane: bytes of the entries Kinesis accepted (a delivery-rate estimate in bytes).
    pub(super) accepted_bytes: Vec<u64>,
    /// Accepted entries that Kinesis put on another shard than the map predicted.
    pub(super) mispredicted: u32,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(_) => f.write_str("Submission::One"),
            Self::Many(r) => write!(f, "Submission::Many({})", r.len()),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;

    use super::PendingRecord;
    use crate::domain::{PartitionKey, Record};
    use crate::kinesis::shard_map::partition_key_hash;
    use crate::pipeline::admission::{Budget, Ticket};

    /// A record of `key` with `data`, due by `deadline`, nobody waiting for its answer.
    pub(in crate::pipeline) fn pending_record(
        key: &str,
        data: &str,
        deadline: Instant,
    ) -> PendingRecord {
        let record = Record {
            data: Bytes::from(data.to_owned()),
            partition_key: PartitionKey::parse(key).expect("key"),
            explicit_hash_key: None,
        };
        let budget = Arc::new(Budget::new(1_000, 1 << 30));
        let size = record.kinesis_size();
        assert!(budget.try_take(1, size));
        PendingRecord::new(
            record,
            partition_key_hash(key),
            None,
            Instant::now(),
            deadline,
            Ticket::new(&budget, size, None),
        )
    }
}
