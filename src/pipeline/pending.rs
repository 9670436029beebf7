//! A record on its way through the pipeline, with what is needed to answer for it, and the two
//! messages the aggregator receives: submissions from handlers and completions from calls.

use std::time::Instant;

use tokio::sync::oneshot;

use super::admission::Ticket;
use super::metrics::StreamMetrics;
use super::outcome::{FailureKind, RecordFailure, RecordOutcome};
use crate::domain::Record;

/// A record on its way through the pipeline with what is needed to answer for it.
#[derive(Debug)]
pub(super) struct PendingRecord {
    pub(super) record: Record,
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
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(_) => f.write_str("Submission::One"),
            Self::Many(r) => write!(f, "Submission::Many({})", r.len()),
        }
    }
}
