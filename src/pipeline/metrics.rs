//! The pipeline's observable events, one method per event so the log line and the counter cannot
//! drift apart (as in Vector's internal events). Handles are registered once per pipeline, so the
//! hot path does no registry lookup. Labels: region and stream (bounded by
//! `limits.max_pipelines`), flush reasons, outcomes and a fixed set of Kinesis error codes.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::batch::FlushReason;
use super::outcome::{FailureKind, RecordOutcome};
use crate::domain::StreamName;
use crate::kinesis::{kinesis_code_label, ShardRange};
use crate::telemetry::{
    ACK_LATENCY, BATCH_BYTES, BATCH_RECORDS, EVENTS_RECEIVED, FAILED_ENTRIES, FLUSHES,
    PUT_RECORDS_CALLS, PUT_RECORDS_DURATION, PUT_RECORDS_IN_FLIGHT, QUEUE_BYTES, QUEUE_RECORDS,
    RECORDS_ACCEPTED, RECORDS_FAILED, RECORD_ATTEMPTS, RETRIES, SHARD_ENTRIES, SHARD_MAP_AVAILABLE,
    SHARD_MAP_REFRESHES, SHARD_PREDICTIONS_CONTRADICTED, SHARD_RATE, SHARD_THROTTLED, SHARD_WAITING,
};

fn failure_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RetriesExhausted => "retries_exhausted",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Rejected => "rejected",
        FailureKind::StreamNotFound => "stream_not_found",
        FailureKind::ShuttingDown => "shutting_down",
    }
}

/// Handles of one stream's metrics, registered when its pipeline starts.
#[derive(Debug)]
pub struct StreamMetrics {
    pub stream: StreamName,
    received: Counter,
    accepted: Counter,
    ack_latency: Histogram,
    attempts: Histogram,
    retries: Counter,
    queue_records: Gauge,
    queue_bytes: Gauge,
    batch_records: Histogram,
    batch_bytes: Histogram,
    in_flight: Gauge,
}

impl StreamMetrics {
    pub fn new(stream: &StreamName) -> Self {
        let s = stream.as_str().to_owned();
        Self {
            stream: stream.clone(),
            received: metrics::counter!(EVENTS_RECEIVED, "stream" => s.clone()),
            accepted: metrics::counter!(RECORDS_ACCEPTED, "stream" => s.clone()),
            ack_latency: metrics::histogram!(ACK_LATENCY, "stream" => s.clone()),
            attempts: metrics::histogram!(RECORD_ATTEMPTS, "stream" => s.clone()),
            retries: metrics::counter!(RETRIES, "stream" => s.clone()),
            queue_records: metrics::gauge!(QUEUE_RECORDS, "stream" => s.clone()),
            queue_bytes: metrics::gauge!(QUEUE_BYTES, "stream" => s.clone()),
            batch_records: metrics::histogram!(BATCH_RECORDS, "stream" => s.clone()),
            batch_bytes: metrics::histogram!(BATCH_BYTES, "stream" => s.clone()),
            in_flight: metrics::gauge!(PUT_RECORDS_IN_FLIGHT, "stream" => s),
        }
    }

    /// Valid events were queued for this stream.
    pub fn events_received(&self, events: u64) {
        self.received.increment(events);
    }

    /// A record was answered: accepted or finally failed.
    pub fn record_finished(&self, outcome: &RecordOutcome, attempts: u32, since_receipt: Duration) {
        self.attempts.record(f64::from(attempts));
        match outcome {
            Ok(_) => {
                self.accepted.increment(1);
                self.ack_latency.record(since_receipt.as_secs_f64());
            }
            Err(failure) => {
                metrics::counter!(RECORDS_FAILED, "stream" => self.stream.as_str().to_owned(), "reason" => failure_label(failure.kind))
                    .increment(1);
                tracing::debug!(stream = %self.stream, reason = failure_label(failure.kind), code = %failure.kinesis_code, attempts, "record failed");
            }
        }
    }

    pub fn record_retried(&self) {
        self.retries.increment(1);
    }

    pub fn queue_depth(&self, records: usize, bytes: usize) {
        self.queue_records.set(records as f64);
        self.queue_bytes.set(bytes as f64);
    }

    pub fn batch_flushed(&self, reason: FlushReason, records: usize, bytes: usize) {
        self.batch_records.record(records as f64);
        self.batch_bytes.record(bytes as f64);
        metrics::counter!(FLUSHES, "stream" => self.stream.as_str().to_owned(), "reason" => reason.as_str()).increment(1);
        self.in_flight.increment(1.0);
    }

    /// A call ended; `outcome` is `ok`, `partial` (some entries failed) or the error code.
    pub fn put_records_finished(&self, outcome: &'static str, records: usize, took: Duration) {
        self.in_flight.decrement(1.0);
        let stream = self.stream.as_str().to_owned();
        metrics::counter!(PUT_RECORDS_CALLS, "stream" => stream.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(PUT_RECORDS_DURATION, "stream" => stream, "outcome" => outcome)
            .record(took.as_secs_f64());
        tracing::trace!(stream = %self.stream, outcome, records, took_ms = took.as_millis() as u64, "PutRecords finished");
    }

    pub fn entry_failed(&self, code: &str) {
        metrics::counter!(FAILED_ENTRIES, "stream" => self.stream.as_str().to_owned(), "error_code" => kinesis_code_label(code))
            .increment(1);
    }
}

/// Shard awareness: the map, the predictions, and each shard's writes, throttles, backlog and
/// current rate. Shard labels only for streams in use (bounded by their shard counts).
impl StreamMetrics {
    /// A new map; the counters of its shards start at 0 so a healthy stream shows them.
    pub fn shard_map_loaded(&self, cause: &'static str, shards: &[ShardRange]) {
        let stream = self.stream.as_str().to_owned();
        metrics::counter!(SHARD_MAP_REFRESHES, "stream" => stream.clone(), "cause" => cause)
            .increment(1);
        metrics::gauge!(SHARD_MAP_AVAILABLE, "stream" => stream.clone()).set(1.0);
        metrics::counter!(SHARD_PREDICTIONS_CONTRADICTED, "stream" => stream.clone()).increment(0);
        for shard in shards {
            metrics::counter!(SHARD_ENTRIES, "stream" => stream.clone(), "shard" => shard.id.clone())
                .increment(0);
            metrics::counter!(SHARD_THROTTLED, "stream" => stream.clone(), "shard" => shard.id.clone())
                .increment(0);
        }
    }

    /// `ListShards` failed; the pipeline keeps its map, or sends shard-blind without one.
    pub fn shard_map_failed(&self) {
        metrics::counter!(SHARD_MAP_REFRESHES, "stream" => self.stream.as_str().to_owned(), "cause" => "failed")
            .increment(1);
    }

    pub fn predictions_contradicted(&self, entries: u32) {
        metrics::counter!(SHARD_PREDICTIONS_CONTRADICTED, "stream" => self.stream.as_str().to_owned())
            .increment(u64::from(entries));
    }

    /// One call's entries for one shard, and how many of them Kinesis throttled.
    pub fn shard_written(&self, shard: &str, entries: u32, throttled: u32) {
        let stream = self.stream.as_str().to_owned();
        metrics::counter!(SHARD_ENTRIES, "stream" => stream.clone(), "shard" => shard.to_owned())
            .increment(u64::from(entries));
        if throttled > 0 {
            metrics::counter!(SHARD_THROTTLED, "stream" => stream, "shard" => shard.to_owned())
                .increment(u64::from(throttled));
        }
    }

    /// Per shard: records waiting for it, and its current rate (records/s).
    pub fn shard_gauges(&self, lanes: &[(Option<&str>, usize, Option<f64>)]) {
        for (shard, waiting, rate) in lanes {
            let (Some(shard), Some(rate)) = (shard, rate) else {
                continue;
            };
            let stream = self.stream.as_str().to_owned();
            metrics::gauge!(SHARD_WAITING, "stream" => stream.clone(), "shard" => (*shard).to_owned())
                .set(*waiting as f64);
            metrics::gauge!(SHARD_RATE, "stream" => stream, "shard" => (*shard).to_owned()).set(*rate);
        }
    }
}
