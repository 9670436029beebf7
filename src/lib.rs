//! kinesis-proxy: an HTTP front door for Amazon Kinesis Data Streams. Clients POST JSON events;
//! the proxy validates them, batches concurrent events into `PutRecords` calls, retries what
//! Kinesis rejects and answers each client once its event is in the stream.
//!
//! Modules by concern: `config` (settings), `domain` (validated types), `ingest` (request
//! bodies), `auth` (API keys), `ratelimit` (rate limits), `routes` (HTTP API), `error` (HTTP error mapping), `registry`
//! (pipelines per region and stream), `pipeline` (queue + aggregator), `batch` (batch assembly),
//! `retry` (retry policy), `kinesis` (AWS SDK), `telemetry` (metrics and logs), `startup`
//! (building, running and shutting down).

pub mod auth;
pub mod batch;
pub mod config;
pub mod domain;
pub mod error;
pub mod ingest;
pub mod kinesis;
pub mod pipeline;
pub mod ratelimit;
pub mod registry;
pub mod retry;
pub mod routes;
pub mod startup;
pub mod telemetry;

/// Sets up `tracing` output as configured; `RUST_LOG` overrides the configured level.
pub fn init_logging(settings: &config::LogSettings) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests start several apps in one process): keep the first.
    let _ = result;
}
