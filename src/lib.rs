//! kinesis-proxy: an HTTP front door for Amazon Kinesis Data Streams. Clients POST JSON events;
//! the proxy validates them, batches concurrent events into `PutRecords` calls, retries what
//! Kinesis rejects and answers each client once its event is in the stream.
//!
//! Layers, each using only the ones below it (a test in `tests/api/layout.rs` checks it):
//! - `http`: the edge; parse, validate, authenticate, rate-limit, answer;
//! - `pipeline`: admission, queues, batching, `PutRecords` calls, retries;
//! - `kinesis`: the API trait, the SDK client, reachability;
//! - `domain`: validated types (stream names, keys, records);
//! - `config` (settings) and `telemetry` (metric names, the recorder), which every layer may
//!   use and which use nothing above `domain`.
//!
//! `startup` composes them into the running application; `main.rs` is only the command line.

pub mod config;
pub mod domain;
pub mod http;
pub mod kinesis;
pub mod pipeline;
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
