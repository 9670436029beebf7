//! The metrics registry of the process: every metric's name and description, and the Prometheus
//! recorder `/metrics` renders. The observable events themselves live with the layer that sees
//! them (`http::metrics`, `pipeline::metrics`, `kinesis::health`), each one function that logs
//! and counts together; they all name their metrics from here, so the names are in one list.
//!
//! Names follow Prometheus conventions; labels are bounded: regions and stream names (at most
//! `limits.max_pipelines` pairs), route templates, status codes, our own error codes, a fixed
//! set of Kinesis error codes and the names of the configured API keys (from the configuration,
//! never from a request). Never the keys themselves, raw paths or event data. A stream's series
//! live in its [`SeriesScope`] and leave with its last pipeline (`series`). The `process_*`
//! metrics keep the standard names every Prometheus client library uses. This module uses no
//! other module of the crate.

pub mod access_line;
mod series;

use std::sync::{Arc, OnceLock};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_process::Collector;

pub use series::SeriesScope;

pub const HTTP_REQUESTS: &str = "kinesis_proxy_http_requests_total";
pub const HTTP_DURATION: &str = "kinesis_proxy_http_request_duration_seconds";
pub const BODY_BUFFERED_BYTES: &str = "kinesis_proxy_request_body_buffered_bytes";
pub const EVENTS_RECEIVED: &str = "kinesis_proxy_events_received_total";
pub const EVENTS_REJECTED: &str = "kinesis_proxy_events_rejected_total";
pub const UNKNOWN_FIELDS: &str = "kinesis_proxy_unknown_fields_total";
pub const SCHEMA_VIOLATIONS: &str = "kinesis_proxy_schema_violations_total";
pub const RECORDS_ACCEPTED: &str = "kinesis_proxy_records_accepted_total";
pub const RECORDS_FAILED: &str = "kinesis_proxy_records_failed_total";
pub const ACK_LATENCY: &str = "kinesis_proxy_ack_latency_seconds";
pub const RECORD_ATTEMPTS: &str = "kinesis_proxy_record_attempts";
pub const RETRIES: &str = "kinesis_proxy_record_retries_total";
pub const REFUSED_CALLS_SPLIT: &str = "kinesis_proxy_refused_calls_split_total";
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
pub const SHARD_MAP_REFRESHES: &str = "kinesis_proxy_shard_map_refreshes_total";
pub const SHARD_MAP_AVAILABLE: &str = "kinesis_proxy_shard_map_available";
pub const SHARD_PREDICTIONS_CONTRADICTED: &str =
    "kinesis_proxy_shard_predictions_contradicted_total";
pub const SHARD_ENTRIES: &str = "kinesis_proxy_shard_entries_total";
pub const SHARD_THROTTLED: &str = "kinesis_proxy_shard_throttled_total";
pub const SHARD_WAITING: &str = "kinesis_proxy_shard_waiting_records";
pub const SHARD_RATE: &str = "kinesis_proxy_shard_rate_records_per_second";
pub const KINESIS_RECORDS_WRITTEN: &str = "kinesis_proxy_kinesis_records_written_total";
pub const PUT_PAYLOAD_UNITS: &str = "kinesis_proxy_put_payload_units_total";
pub const AGGREGATED_BYTES: &str = "kinesis_proxy_aggregated_bytes_total";
pub const SPOOL_BYTES: &str = "kinesis_proxy_spool_bytes";
pub const SPOOL_RECORDS: &str = "kinesis_proxy_spool_records";
pub const SPOOL_OLDEST_AGE: &str = "kinesis_proxy_spool_oldest_record_age_seconds";
pub const SPOOL_FSYNCS: &str = "kinesis_proxy_spool_fsyncs_total";
pub const SPOOL_RECORDS_FSYNCED: &str = "kinesis_proxy_spool_records_fsynced_total";
pub const SPOOL_REPLAYED: &str = "kinesis_proxy_spool_replayed_records_total";
pub const SPOOL_TORN_TAILS: &str = "kinesis_proxy_spool_torn_tails_total";
pub const SPOOL_CORRUPT_ENTRIES: &str = "kinesis_proxy_spool_corrupt_entries_total";
pub const SPOOL_REFUSALS: &str = "kinesis_proxy_spool_refusals_total";
pub const SPOOL_DELIVERED: &str = "kinesis_proxy_spool_delivered_records_total";
pub const SPOOL_FAILED: &str = "kinesis_proxy_spool_failed_records_total";
pub const SPOOL_RESENT: &str = "kinesis_proxy_spool_resent_records_total";
pub const BUILD_INFO: &str = "kinesis_proxy_build_info";
pub const API_KEY_REQUESTS: &str = "kinesis_proxy_api_key_requests_total";
pub const CONFIG_RELOADS: &str = "kinesis_proxy_config_reloads_total";
pub const CONFIG_LAST_RELOAD: &str = "kinesis_proxy_config_last_reload_success_timestamp_seconds";
pub const TLS_CERTIFICATE_EXPIRY: &str = "kinesis_proxy_tls_certificate_expiry_timestamp_seconds";

/// What `/metrics` renders: the process recorder and the series of every stream in use
/// ([`series`]), as one page.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    process: PrometheusHandle,
}

impl MetricsHandle {
    /// The Prometheus text page: every family once, the live streams' series included.
    pub fn render(&self) -> String {
        scopes().render(self.process.render())
    }

    /// Folds histogram samples into their buckets (a scrape does it too), so memory stays
    /// bounded when nobody scrapes.
    pub fn run_upkeep(&self) {
        self.process.run_upkeep();
        scopes().run_upkeep();
    }
}

/// The series scope of `stream`: register its `region`/`stream`-labelled series in it
/// ([`SeriesScope::register`]); they leave `/metrics` once every holder of the scope let go.
pub fn stream_series(stream: &str) -> Arc<SeriesScope> {
    scopes().get(stream)
}

fn scopes() -> &'static series::Scopes {
    static SCOPES: OnceLock<series::Scopes> = OnceLock::new();
    SCOPES.get_or_init(|| series::Scopes::new(scope_recorder))
}

/// The process recorder's settings: latency buckets for `_seconds`, and the batch and attempt
/// histograms' own.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_RECORDS.into()),
            &[
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_BYTES.into()),
            &[1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 3e6, 4e6, 5e6, 1e7],
        )?
        .set_buckets_for_metric(
            Matcher::Full(RECORD_ATTEMPTS.into()),
            &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0],
        )
}

/// A stream scope's recorder: the same buckets and descriptions as the process recorder.
fn scope_recorder() -> PrometheusRecorder {
    let recorder = builder()
        .unwrap_or_else(|_| PrometheusBuilder::new())
        .build_recorder();
    metrics::with_local_recorder(&recorder, describe);
    recorder
}

/// Installs the global Prometheus recorder once per process (tests start many apps in one
/// process; they share it) and returns the handle `/metrics` renders.
pub fn prometheus() -> MetricsHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let process = HANDLE
        .get_or_init(|| match builder().map(PrometheusBuilder::build_recorder) {
            Ok(recorder) => {
                let handle = recorder.handle();
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!(
                        "a metrics recorder was already installed; /metrics may be empty"
                    );
                }
                describe();
                handle
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot configure metrics buckets; using defaults");
                PrometheusBuilder::new()
                    .install_recorder()
                    .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
            }
        })
        .clone();
    MetricsHandle { process }
}

/// Refreshes the `process_*` metrics (CPU seconds, resident and virtual memory, open and
/// maximum file descriptors, threads, start time) from the operating system. Called right
/// before each render of `/metrics` and at every upkeep, so the values are fresh when scraped.
pub fn collect_process_metrics() {
    process_collector().collect();
}

fn process_collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(Collector::default)
}

fn describe() {
    process_collector().describe();
    describe_spool();
    describe_gauge!(
        BODY_BUFFERED_BYTES,
        Unit::Bytes,
        "Bytes of request bodies held in memory, all connections together (bounded by limits.max_buffered_body_bytes)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the `version` label is the running build's version."
    );
    describe_counter!(
        API_KEY_REQUESTS,
        "Requests authenticated by each configured API key, by key name."
    );
    describe_counter!(
        CONFIG_RELOADS,
        "SIGHUP reloads of the API keys and TLS files, by result (ok, error: nothing was changed)."
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD,
        "When the configuration was last loaded successfully (startup or SIGHUP), Unix seconds."
    );
    describe_gauge!(
        TLS_CERTIFICATE_EXPIRY,
        "When the served TLS certificate expires (notAfter), Unix seconds; only with [tls]."
    );
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
        "Events refused before reaching Kinesis, by stream (empty for a stream that had no pipeline yet and is named by no exact entry of streams.allow) and error code. A request refused before its body was parsed counts as one event."
    );
    describe_counter!(
        SCHEMA_VIOLATIONS,
        "Events refused because they violate their stream's JSON Schema (streams.schemas), by stream (labelled as events_rejected_total is)."
    );
    describe_counter!(
        UNKNOWN_FIELDS,
        "Fields of request bodies the API does not read (ignored, as the original API did), by name for common misspellings such as partitionKey, else \"other\"."
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
    describe_counter!(
        REFUSED_CALLS_SPLIT,
        "PutRecords calls Kinesis refused as invalid, split until the offending records were alone (each then counted in records_failed_total{reason=\"invalid\"})."
    );
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
    describe_counter!(
        SHARD_MAP_REFRESHES,
        "Shard map loads by cause: start, periodic, mispredicted (Kinesis put a record on another shard than predicted), failed (ListShards failed)."
    );
    describe_gauge!(
        SHARD_MAP_AVAILABLE,
        "1 once the stream's shard map is loaded; absent while the stream is sent shard-blind."
    );
    describe_counter!(
        SHARD_PREDICTIONS_CONTRADICTED,
        "Accepted entries Kinesis put on another shard than the shard map predicted."
    );
    describe_counter!(
        KINESIS_RECORDS_WRITTEN,
        "Kinesis records accepted: one per event, or one per KPL aggregate of many events."
    );
    describe_counter!(
        PUT_PAYLOAD_UNITS,
        "PUT payload units of the accepted Kinesis records (one per started 25 KiB of each record), the unit Kinesis bills."
    );
    describe_counter!(
        AGGREGATED_BYTES,
        "Bytes of the accepted KPL aggregated records."
    );
    describe_counter!(SHARD_ENTRIES, "PutRecords entries answered, by shard.");
    describe_counter!(
        SHARD_THROTTLED,
        "Entries Kinesis throttled (ProvisionedThroughputExceeded), by shard."
    );
    describe_gauge!(
        SHARD_WAITING,
        "Records waiting to be sent, by shard (including those waiting for the shard's budget)."
    );
    describe_gauge!(
        SHARD_RATE,
        "The shard's current adaptive write rate, records per second."
    );
    describe_gauge!(
        KINESIS_REACHABLE,
        "1 when the last readiness probe or call reached Kinesis, else 0."
    );
}

/// The disk spool's metrics (`streams.ack_on_disk`).
fn describe_spool() {
    describe_gauge!(
        SPOOL_BYTES,
        Unit::Bytes,
        "Bytes the disk spool holds: segments and done marks not yet deleted (bounded by spool.max_bytes)."
    );
    describe_gauge!(
        SPOOL_RECORDS,
        "Records in the disk spool not yet accepted by Kinesis (nor finally failed)."
    );
    describe_gauge!(
        SPOOL_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest record in the disk spool not yet accepted by Kinesis; 0 when none."
    );
    describe_counter!(
        SPOOL_FSYNCS,
        "Group commits of the disk spool: each one write and one fsync."
    );
    describe_counter!(
        SPOOL_RECORDS_FSYNCED,
        "Records made durable by the spool's fsyncs (divided by the fsyncs: records per fsync)."
    );
    describe_counter!(
        SPOOL_REPLAYED,
        "Records found in the spool at start, not yet accepted by Kinesis: sent again."
    );
    describe_counter!(
        SPOOL_TORN_TAILS,
        "Torn segment tails (a write a crash interrupted) cut off when the spool was opened."
    );
    describe_counter!(
        SPOOL_CORRUPT_ENTRIES,
        "Spool entries that failed their checksum and were skipped (lost)."
    );
    describe_counter!(
        SPOOL_REFUSALS,
        "Appends refused because the spool was full (spool.max_bytes, spool.min_free_bytes, or the writer behind): 503 spool_full."
    );
    describe_counter!(
        SPOOL_DELIVERED,
        "Records of disk-acknowledged streams accepted by Kinesis and marked done in the spool."
    );
    describe_counter!(
        SPOOL_FAILED,
        "Records of disk-acknowledged streams Kinesis finally refused (by its error code), dropped from the spool and logged."
    );
    describe_counter!(
        SPOOL_RESENT,
        "Records of disk-acknowledged streams handed to the pipeline again after an attempt failed for want of Kinesis."
    );
}
