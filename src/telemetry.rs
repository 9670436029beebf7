//! Metrics and logs of what the proxy does, one function per observable event so the log line
//! and the counter cannot drift apart (as in Vector's internal events). Per-stream handles are
//! registered once per pipeline, so the hot path does no registry lookup.
//!
//! Names follow Prometheus conventions; labels are bounded: stream names (at most
//! `limits.max_pipelines` of them), route templates, status codes, our own error codes and a
//! fixed set of Kinesis error codes. Never keys, raw paths or event data.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    describe_counter, describe_gauge, describe_histogram, Counter, Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::batch::FlushReason;
use crate::domain::StreamName;
use crate::pipeline::{FailureKind, RecordOutcome};
use crate::retry::CallFailure;

pub const HTTP_REQUESTS: &str = "kinesis_proxy_http_requests_total";
pub const HTTP_DURATION: &str = "kinesis_proxy_http_request_duration_seconds";
pub const EVENTS_RECEIVED: &str = "kinesis_proxy_events_received_total";
pub const EVENTS_REJECTED: &str = "kinesis_proxy_events_rejected_total";
pub const RECORDS_ACCEPTED: &str = "kinesis_proxy_records_accepted_total";
pub const RECORDS_FAILED: &str = "kinesis_proxy_records_failed_total";
pub const ACK_LATENCY: &str = "kinesis_proxy_ack_latency_seconds";
pub const RECORD_ATTEMPTS: &str = "kinesis_proxy_record_attempts";
pub const RETRIES: &str = "kinesis_proxy_record_retries_total";
pub const QUEUE_RECORDS: &str = "kinesis_proxy_queue_records";
pub const QUEUE_BYTES: &str = "kinesis_proxy_queue_bytes";
pub const BATCH_RECORDS: &str = "kinesis_proxy_batch_records";
pub const BATCH_BYTES: &str = "kinesis_proxy_batch_bytes";
pub const FLUSHES: &str = "kinesis_proxy_flushes_total";
pub const PUT_RECORDS_CALLS: &str = "kinesis_proxy_put_records_calls_total";
pub const PUT_RECORDS_DURATION: &str = "kinesis_proxy_put_records_duration_seconds";
pub const PUT_RECORDS_IN_FLIGHT: &str = "kinesis_proxy_put_records_in_flight";
pub const FAILED_ENTRIES: &str = "kinesis_proxy_failed_entries_total";
pub const KINESIS_REACHABLE: &str = "kinesis_proxy_kinesis_reachable";

/// Installs the global Prometheus recorder once per process (tests start many apps in one
/// process; they share it) and returns the handle `/metrics` renders.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_RECORDS.into()),
                        &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_BYTES.into()),
                        &[1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 3e6, 4e6, 5e6, 1e7],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(RECORD_ATTEMPTS.into()), &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0])
                })
                .map(|b| b.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
                    }
                    describe();
                    handle
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot configure metrics buckets; using defaults");
                    PrometheusBuilder::new().install_recorder().unwrap_or_else(|_| {
                        PrometheusBuilder::new().build_recorder().handle()
                    })
                }
            }
        })
        .clone()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template and status code."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request, by route template."
    );
    describe_counter!(
        EVENTS_RECEIVED,
        "Events that passed validation and were offered to a stream's queue."
    );
    describe_counter!(
        EVENTS_REJECTED,
        "Events or requests refused before reaching Kinesis, by error code."
    );
    describe_counter!(
        RECORDS_ACCEPTED,
        "Records Kinesis accepted (acknowledged to clients)."
    );
    describe_counter!(RECORDS_FAILED, "Records finally not written, by reason (retries_exhausted, unavailable, rejected, shutting_down).");
    describe_histogram!(
        ACK_LATENCY,
        Unit::Seconds,
        "Time from receiving an event to Kinesis accepting it."
    );
    describe_histogram!(
        RECORD_ATTEMPTS,
        "PutRecords attempts a record needed until it was accepted or failed."
    );
    describe_counter!(RETRIES, "Records scheduled for another PutRecords attempt.");
    describe_gauge!(
        QUEUE_RECORDS,
        "Records admitted and not yet answered (queued, in flight or backing off)."
    );
    describe_gauge!(
        QUEUE_BYTES,
        Unit::Bytes,
        "Bytes admitted and not yet answered."
    );
    describe_histogram!(BATCH_RECORDS, "Records per PutRecords call.");
    describe_histogram!(
        BATCH_BYTES,
        Unit::Bytes,
        "Bytes (data + partition keys) per PutRecords call."
    );
    describe_counter!(
        FLUSHES,
        "Batches sent, by reason: full, bytes, linger, idle, shutdown."
    );
    describe_counter!(
        PUT_RECORDS_CALLS,
        "PutRecords calls, by outcome (ok, partial, or the error code)."
    );
    describe_histogram!(
        PUT_RECORDS_DURATION,
        Unit::Seconds,
        "PutRecords call latency, by outcome."
    );
    describe_gauge!(
        PUT_RECORDS_IN_FLIGHT,
        "PutRecords calls currently in flight."
    );
    describe_counter!(
        FAILED_ENTRIES,
        "Entries Kinesis failed inside a 200 PutRecords response, by error code."
    );
    describe_gauge!(
        KINESIS_REACHABLE,
        "1 when the last readiness probe or call reached Kinesis, else 0."
    );
}

/// Kinesis error codes as a bounded label: known codes as they are, anything else "other".
pub fn kinesis_code_label(code: &str) -> &'static str {
    match code {
        "ProvisionedThroughputExceededException" => "ProvisionedThroughputExceededException",
        "InternalFailure" | "InternalFailureException" => "InternalFailure",
        "KMSThrottlingException" => "KMSThrottlingException",
        "ResourceNotFoundException" => "ResourceNotFoundException",
        "ValidationException" => "ValidationException",
        "InvalidArgumentException" => "InvalidArgumentException",
        "AccessDeniedException" => "AccessDeniedException",
        "LimitExceededException" => "LimitExceededException",
        CallFailure::TIMEOUT => "timeout",
        CallFailure::CONNECTION => "connection",
        "request_too_large" => "request_too_large",
        c if c.starts_with("KMS") => "KMSError",
        _ => "other",
    }
}

fn failure_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RetriesExhausted => "retries_exhausted",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Rejected => "rejected",
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

/// Handles of one route's request metrics, registered at startup: the success path of a
/// request then does no registry lookup (the lookups were ~3% of the proxy's CPU per request).
#[derive(Debug)]
pub struct RouteMetrics {
    route: &'static str,
    ok: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    pub fn new(route: &'static str) -> Self {
        Self {
            route,
            ok: metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status_label(200)),
            duration: metrics::histogram!(HTTP_DURATION, "route" => route),
        }
    }

    /// A request on this route was answered.
    pub fn answered(&self, status: u16, took: Duration) {
        if status == 200 {
            self.ok.increment(1);
        } else {
            metrics::counter!(HTTP_REQUESTS, "route" => self.route, "status" => status_label(status))
                .increment(1);
        }
        self.duration.record(took.as_secs_f64());
    }
}

/// Events refused before Kinesis (validation, auth, limits, backpressure), by stable code.
pub fn events_rejected(code: &'static str, events: u64) {
    metrics::counter!(EVENTS_REJECTED, "code" => code).increment(events);
}

pub fn kinesis_reachable(reachable: bool) {
    metrics::gauge!(KINESIS_REACHABLE).set(if reachable { 1.0 } else { 0.0 });
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
