//! The pipeline's observable events, one method per event so the log line and the counter cannot
//! drift apart (as in Vector's internal events). Handles are registered once per pipeline, so the
//! hot path does no registry lookup. Labels: region and stream (bounded by
//! `limits.max_pipelines`), flush reasons, outcomes and a fixed set of Kinesis error codes.
//! Every series is registered in the stream's `SeriesScope`, held by `StreamMetrics`: when the
//! pipeline is retired and its aggregator ends, its series leave `/metrics` with it (a stream
//! Kinesis says does not exist leaves no label behind).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use super::batch::FlushReason;
use super::outcome::{FailureKind, RecordOutcome};
use crate::domain::{Region, StreamName};
use crate::kinesis::{kinesis_code_label, ShardRange};
use crate::telemetry::{
    stream_series, SeriesScope, ACK_LATENCY, AGGREGATED_BYTES, BATCH_BYTES, BATCH_RECORDS,
    EVENTS_RECEIVED, FAILED_ENTRIES, FLUSHES, KINESIS_RECORDS_WRITTEN, PUT_PAYLOAD_UNITS,
    PUT_RECORDS_CALLS, PUT_RECORDS_DURATION, PUT_RECORDS_IN_FLIGHT, QUEUE_BYTES, QUEUE_RECORDS,
    RECORDS_ACCEPTED, RECORDS_FAILED, RECORD_ATTEMPTS, REFUSED_CALLS_SPLIT, RETRIES, SHARD_ENTRIES,
    SHARD_MAP_AVAILABLE, SHARD_MAP_REFRESHES, SHARD_PREDICTIONS_CONTRADICTED, SHARD_RATE,
    SHARD_THROTTLED, SHARD_WAITING,
};

/// Every reason a record finally fails, as labelled.
const FAILURE_REASONS: [&str; 6] = [
    failure_label(FailureKind::RetriesExhausted),
    failure_label(FailureKind::Unavailable),
    failure_label(FailureKind::Rejected),
    failure_label(FailureKind::Invalid),
    failure_label(FailureKind::StreamNotFound),
    failure_label(FailureKind::ShuttingDown),
];

/// Every reason a batch is flushed.
const FLUSH_REASONS: [FlushReason; 5] = [
    FlushReason::Full,
    FlushReason::Bytes,
    FlushReason::Linger,
    FlushReason::Idle,
    FlushReason::Shutdown,
];

/// The outcomes of a call Kinesis answered; error outcomes are registered when they happen.
const ANSWERED_OUTCOMES: [&str; 2] = ["ok", "partial"];

/// The codes Kinesis gives failed entries of a 200 response (both retryable), as labelled.
const ENTRY_CODES: [&str; 2] = ["ProvisionedThroughputExceededException", "InternalFailure"];

const fn failure_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RetriesExhausted => "retries_exhausted",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Rejected => "rejected",
        FailureKind::Invalid => "invalid",
        FailureKind::StreamNotFound => "stream_not_found",
        FailureKind::ShuttingDown => "shutting_down",
    }
}

/// One counter per value of one label, registered at zero for the values known in advance, so
/// a healthy instance already shows `..._total{reason="rejected"} 0` (an absent series reads
/// as "no data", not as "none", and `rate()` needs the zero before the first increment).
/// Values outside that set are registered when they first happen.
#[derive(Debug)]
struct LabelledCounters {
    scope: Arc<SeriesScope>,
    name: &'static str,
    /// region and stream.
    pipeline: Vec<Label>,
    label: &'static str,
    known: Vec<(&'static str, Counter)>,
}

impl LabelledCounters {
    fn new(
        scope: &Arc<SeriesScope>,
        name: &'static str,
        pipeline: &[Label],
        label: &'static str,
        values: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        let mut counters = Self {
            scope: scope.clone(),
            name,
            pipeline: pipeline.to_vec(),
            label,
            known: Vec::new(),
        };
        counters.known = values
            .into_iter()
            .map(|value| (value, counters.register(value)))
            .collect();
        counters
    }

    fn register(&self, value: &'static str) -> Counter {
        let mut labels = self.pipeline.clone();
        labels.push(Label::new(self.label, value));
        self.scope.register(|| metrics::counter!(self.name, labels))
    }

    fn increment(&self, value: &'static str) {
        match self.known.iter().find(|(known, _)| *known == value) {
            Some((_, counter)) => counter.increment(1),
            None => self.register(value).increment(1),
        }
    }
}

/// Handles of one pipeline's metrics, registered when it starts. Every series carries `region`
/// and `stream`: a stream written in two regions is two pipelines, with queues of their own.
#[derive(Debug)]
pub struct StreamMetrics {
    pub stream: StreamName,
    region: Region,
    /// Where this stream's series live; they leave `/metrics` once no holder is left.
    scope: Arc<SeriesScope>,
    /// `region` and `stream`, for series registered when they first happen.
    labels: Vec<Label>,
    received: Counter,
    accepted: Counter,
    failed: LabelledCounters,
    ack_latency: Histogram,
    attempts: Histogram,
    retries: Counter,
    refused_calls_split: Counter,
    queue_records: Gauge,
    queue_bytes: Gauge,
    batch_records: Histogram,
    batch_bytes: Histogram,
    flushes: LabelledCounters,
    calls: LabelledCounters,
    /// `PutRecords` duration by outcome, for the outcomes of a call Kinesis answered (others
    /// are registered when they happen).
    call_durations: Vec<(&'static str, Histogram)>,
    in_flight: Gauge,
    failed_entries: LabelledCounters,
    kinesis_records: Counter,
    payload_units: Counter,
    aggregated_bytes: Counter,
}

impl StreamMetrics {
    pub fn new(region: &Region, stream: &StreamName) -> Self {
        let labels = vec![
            Label::new("region", region.as_str().to_owned()),
            Label::new("stream", stream.as_str().to_owned()),
        ];
        let scope = stream_series(stream.as_str());
        let counters = |name, label, values: &[&'static str]| {
            LabelledCounters::new(&scope, name, &labels, label, values.iter().copied())
        };
        let failed = counters(RECORDS_FAILED, "reason", &FAILURE_REASONS);
        let flushes = counters(FLUSHES, "reason", &FLUSH_REASONS.map(FlushReason::as_str));
        let calls = counters(PUT_RECORDS_CALLS, "outcome", &ANSWERED_OUTCOMES);
        let failed_entries = counters(FAILED_ENTRIES, "error_code", &ENTRY_CODES);
        scope.register(|| Self {
            stream: stream.clone(),
            region: region.clone(),
            received: metrics::counter!(EVENTS_RECEIVED, labels.clone()),
            accepted: metrics::counter!(RECORDS_ACCEPTED, labels.clone()),
            failed,
            ack_latency: metrics::histogram!(ACK_LATENCY, labels.clone()),
            attempts: metrics::histogram!(RECORD_ATTEMPTS, labels.clone()),
            retries: metrics::counter!(RETRIES, labels.clone()),
            refused_calls_split: metrics::counter!(REFUSED_CALLS_SPLIT, labels.clone()),
            queue_records: metrics::gauge!(QUEUE_RECORDS, labels.clone()),
            queue_bytes: metrics::gauge!(QUEUE_BYTES, labels.clone()),
            batch_records: metrics::histogram!(BATCH_RECORDS, labels.clone()),
            batch_bytes: metrics::histogram!(BATCH_BYTES, labels.clone()),
            flushes,
            calls,
            call_durations: ANSWERED_OUTCOMES
                .iter()
                .map(|&outcome| {
                    let mut labels = labels.clone();
                    labels.push(Label::from_static_parts("outcome", outcome));
                    (outcome, metrics::histogram!(PUT_RECORDS_DURATION, labels))
                })
                .collect(),
            in_flight: metrics::gauge!(PUT_RECORDS_IN_FLIGHT, labels.clone()),
            failed_entries,
            kinesis_records: metrics::counter!(KINESIS_RECORDS_WRITTEN, labels.clone()),
            payload_units: metrics::counter!(PUT_PAYLOAD_UNITS, labels.clone()),
            aggregated_bytes: metrics::counter!(AGGREGATED_BYTES, labels.clone()),
            scope: scope.clone(),
            labels,
        })
    }

    /// The scope of this stream's series, for series other layers count per stream (the spool
    /// delivery's, the refusals'): they go when the pipeline goes.
    pub fn series(&self) -> &Arc<SeriesScope> {
        &self.scope
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
                self.failed.increment(failure_label(failure.kind));
                tracing::debug!(region = %self.region, stream = %self.stream, reason = failure_label(failure.kind), code = %failure.kinesis_code, attempts, "record failed");
            }
        }
    }

    pub fn record_retried(&self) {
        self.retries.increment(1);
    }

    /// Kinesis refused a call as invalid: it is split until the offending records are alone.
    pub fn refused_call_split(&self) {
        self.refused_calls_split.increment(1);
    }

    /// Another call of a batch being split is starting (the batch's first call was counted
    /// when it was flushed).
    pub fn split_call_started(&self) {
        self.in_flight.increment(1.0);
    }

    pub fn queue_depth(&self, records: usize, bytes: usize) {
        self.queue_records.set(records as f64);
        self.queue_bytes.set(bytes as f64);
    }

    pub fn batch_flushed(&self, reason: FlushReason, records: usize, bytes: usize) {
        self.batch_records.record(records as f64);
        self.batch_bytes.record(bytes as f64);
        self.flushes.increment(reason.as_str());
        self.in_flight.increment(1.0);
    }

    /// A call ended; `outcome` is `ok`, `partial` (some entries failed) or the error code.
    pub fn put_records_finished(&self, outcome: &'static str, records: usize, took: Duration) {
        self.in_flight.decrement(1.0);
        self.calls.increment(outcome);
        match self
            .call_durations
            .iter()
            .find(|(known, _)| *known == outcome)
        {
            Some((_, histogram)) => histogram.record(took.as_secs_f64()),
            None => {
                let mut labels = self.labels.clone();
                labels.push(Label::from_static_parts("outcome", outcome));
                self.scope
                    .register(|| metrics::histogram!(PUT_RECORDS_DURATION, labels))
                    .record(took.as_secs_f64());
            }
        }
        tracing::trace!(region = %self.region, stream = %self.stream, outcome, records, took_ms = took.as_millis() as u64, "PutRecords finished");
    }

    pub fn entry_failed(&self, code: &str) {
        self.failed_entries.increment(kinesis_code_label(code));
    }

    /// Kinesis accepted `records` Kinesis records (each one event, or an aggregate of many),
    /// billed `payload_units`; `aggregated_bytes` of them were aggregates.
    pub fn kinesis_records_written(&self, records: u64, payload_units: u64, aggregated_bytes: u64) {
        self.kinesis_records.increment(records);
        self.payload_units.increment(payload_units);
        self.aggregated_bytes.increment(aggregated_bytes);
    }
}

/// The per-shard write counters of one shard map, by lane (the map's order).
#[derive(Debug, Default)]
pub struct ShardSeries {
    by_lane: Vec<(Counter, Counter)>,
}

impl ShardSeries {
    /// One call's entries for the shard of `lane`, and how many of them Kinesis throttled.
    pub fn written(&self, lane: usize, entries: u32, throttled: u32) {
        if let Some((written, throttled_counter)) = self.by_lane.get(lane) {
            written.increment(u64::from(entries));
            throttled_counter.increment(u64::from(throttled));
        }
    }
}

/// Shard awareness: the map, the predictions, and each shard's writes, throttles, backlog and
/// current rate. Shard labels only for streams in use (bounded by their shard counts).
impl StreamMetrics {
    /// `region`, `stream` and one more label.
    fn labels_with(&self, key: &'static str, value: impl Into<String>) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.push(Label::new(key, value.into()));
        labels
    }

    /// A new map; the counters of its shards start at 0 so a healthy stream shows them. Their
    /// handles, in the map's order, are what calls count on (a registry lookup per shard per
    /// call cost a sixth of the aggregator thread at 128 shards).
    pub fn shard_map_loaded(&self, cause: &'static str, shards: &[ShardRange]) -> ShardSeries {
        self.scope.register(|| {
            metrics::counter!(SHARD_MAP_REFRESHES, self.labels_with("cause", cause)).increment(1);
            metrics::gauge!(SHARD_MAP_AVAILABLE, self.labels.clone()).set(1.0);
            metrics::counter!(SHARD_PREDICTIONS_CONTRADICTED, self.labels.clone()).increment(0);
            ShardSeries {
                by_lane: shards
                    .iter()
                    .map(|shard| {
                        let entries =
                            metrics::counter!(SHARD_ENTRIES, self.labels_with("shard", &shard.id));
                        let throttled = metrics::counter!(
                            SHARD_THROTTLED,
                            self.labels_with("shard", &shard.id)
                        );
                        entries.increment(0);
                        throttled.increment(0);
                        (entries, throttled)
                    })
                    .collect(),
            }
        })
    }

    /// `ListShards` failed; the pipeline keeps its map, or sends shard-blind without one.
    pub fn shard_map_failed(&self) {
        self.scope.register(|| {
            metrics::counter!(SHARD_MAP_REFRESHES, self.labels_with("cause", "failed"))
                .increment(1);
        });
    }

    pub fn predictions_contradicted(&self, entries: u32) {
        self.scope.register(|| {
            metrics::counter!(SHARD_PREDICTIONS_CONTRADICTED, self.labels.clone())
                .increment(u64::from(entries));
        });
    }

    /// Per shard: records waiting for it, and its current rate (records/s).
    pub fn shard_gauges(&self, lanes: &[(Option<&str>, usize, Option<f64>)]) {
        self.scope.register(|| {
            for (shard, waiting, rate) in lanes {
                let (Some(shard), Some(rate)) = (shard, rate) else {
                    continue;
                };
                metrics::gauge!(SHARD_WAITING, self.labels_with("shard", *shard))
                    .set(*waiting as f64);
                metrics::gauge!(SHARD_RATE, self.labels_with("shard", *shard)).set(*rate);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_registered_entry_codes_are_the_labels_kinesis_codes_get() {
        for code in ENTRY_CODES {
            assert_eq!(kinesis_code_label(code), code);
        }
    }
}
