//! kinesis-proxy: an HTTP front door for Amazon Kinesis Data Streams. Clients POST JSON events;
//! the proxy validates them, batches concurrent events into `PutRecords` calls, retries what
//! Kinesis rejects and answers each client once its event is in the stream.
//!
//! Layers, each using only the ones below it (a test in `tests/api/layout.rs` checks it):
//! - `http`: the edge; parse, validate, authenticate, rate-limit, answer;
//! - `pipeline`: admission, queues, batching, `PutRecords` calls, retries;
//! - `kinesis`: the API trait, the SDK client, reachability;
//! - `spool`: the disk spool (write-ahead log) of streams acknowledged on disk;
//! - `domain`: validated types (stream names, keys, records);
//! - `config` (settings) and `telemetry` (metric names, the recorder), which every layer may
//!   use and which use nothing above `domain`.
//!
//! `startup` composes them into the running application (and applies SIGHUP to it);
//! `main.rs` is only the command line.

pub mod config;
pub mod domain;
pub mod http;
pub mod kinesis;
pub mod pipeline;
pub mod spool;
pub mod startup;
pub mod telemetry;

/// actix-http logs every connection it cannot parse as HTTP/1 at ERROR, as `stream error:
/// request parse error: ...` from this target: an HTTP/2 attempt (`curl --http2-prior-knowledge`),
/// TLS sent to the plain port, a port scanner. Those are the client's mistakes, and the client
/// got a 400 or a closed connection; an ERROR line should mean the proxy needs attention. The
/// target logs nothing else above `trace` that is not per-connection, so it is off by default;
/// naming `actix_http` in `log.level` or setting `RUST_LOG` shows it again.
const CLIENT_MISTAKES_TARGET: &str = "actix_http::h1::dispatcher";

/// Log lines waiting for the writer thread, at most; past it a logging thread waits (lines are
/// never dropped). About 5 MiB of access-log lines.
const LOG_LINES_BUFFERED: usize = 16_384;

/// The log writer thread's handle: dropping it writes what is still queued.
static LOG_WRITER: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Sets up `tracing` output as configured; `RUST_LOG` overrides the configured level. Colours
/// only when stdout is a terminal (and `NO_COLOR` is unset), so a log written to a file or a
/// pipe holds no escape codes. Lines are formatted where they happen and written to stdout by
/// a thread of their own, in batches (one `write` for every line queued meanwhile), so a
/// request never waits on stdout; call [`flush_logs`] before the process exits.
pub fn init_logging(settings: &config::LogSettings) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(&settings.level)));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_LINES_BUFFERED)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let ansi = std::io::stdout().is_terminal() && !no_color;
    let access_writer = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(writer);
    let result = if settings.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests start several apps in one process): keep the first, whose
    // writer thread this guard is not.
    if result.is_ok() {
        let format = match (settings.format == "json", ansi) {
            (true, _) => Some(telemetry::access_line::LineFormat::Json),
            (false, false) => Some(telemetry::access_line::LineFormat::Text),
            // Coloured lines stay with `tracing`.
            (false, true) => None,
        };
        if let Some(format) = format {
            telemetry::access_line::install(access_writer, format);
        }
        *LOG_WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
    }
}

/// Writes every log line still queued and stops the writer thread; later lines are lost.
pub fn flush_logs() {
    let guard = LOG_WRITER.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(guard);
}

/// The filter when `RUST_LOG` is unset: `log.level`, with actix-http's per-connection parse
/// errors off unless `log.level` says something about `actix_http` itself.
fn default_filter(level: &str) -> String {
    if level.contains("actix_http") {
        level.to_owned()
    } else {
        format!("{level},{CLIENT_MISTAKES_TARGET}=off")
    }
}

#[cfg(test)]
mod tests {
    use super::default_filter;

    #[test]
    fn default_filter_silences_client_parse_errors_unless_asked_for() {
        assert_eq!(
            default_filter("info"),
            "info,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            default_filter("info,actix_http=debug"),
            "info,actix_http=debug"
        );
    }
}
