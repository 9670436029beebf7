//! Settings: `config.toml` as the base layer, `KINESIS_PROXY__<SECTION>__<KEY>` environment
//! variables on top, then one validation pass so a bad value stops the process at startup with a
//! message naming the setting, instead of misbehaving under load later.
//!
//! The code carries the same defaults as `config.toml` (a test keeps them equal), so a user's
//! own, shorter file only needs the settings it changes. `layering` merges the sources,
//! `validate` checks the result (`streams` the `[streams]` lists against each other),
//! `api_keys` reads the `name:key` entries. This module uses only `domain`: every layer reads
//! its settings from here.

mod api_keys;
mod cors;
mod layering;
mod server;
mod shards;
mod spool;
mod streams;
mod tls;
mod validate;

pub use api_keys::ApiKeyEntry;
use api_keys::KeyKind;
pub use cors::{CorsOrigins, CorsSettings};
pub use server::ServerSettings;
pub use shards::{ShardSettings, StreamLimit};
pub use spool::SpoolSettings;
pub use tls::TlsSettings;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Region, StreamName, StreamPatterns};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "KINESIS_PROXY__";

/// Kinesis' own cap on records in one `PutRecords` call.
pub const KINESIS_MAX_BATCH_RECORDS: usize = 500;
/// Kinesis' cap on one `PutRecords` request (data + partition keys, before base64), since 2025.
pub const KINESIS_MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;
/// Largest record a stream can be configured to take (`MaxRecordSizeInKiB` = 10240).
pub const KINESIS_MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML or has a wrong setting: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid setting {setting}: {message}")]
    Invalid { setting: String, message: String },
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub kinesis: KinesisSettings,
    pub streams: StreamSettings,
    pub batching: BatchingSettings,
    pub retry: RetrySettings,
    pub shards: ShardSettings,
    pub spool: SpoolSettings,
    pub limits: LimitSettings,
    pub rate_limits: RateLimitSettings,
    pub auth: AuthSettings,
    pub cors: CorsSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisSettings {
    /// Region used when a request names none (the original deployment's region).
    pub default_region: String,
    /// Regions a request may name besides the default region; `*` allows any well-formed
    /// region name. Empty (the default): only the default region.
    pub allowed_regions: Vec<String>,
    /// Empty: the AWS endpoint of the region (or `AWS_ENDPOINT_URL_KINESIS`).
    pub endpoint_url: String,
    /// Timeout of one `PutRecords` call (connect + send + response).
    pub call_timeout_ms: u64,
    /// Timeout for establishing a connection to Kinesis.
    pub connect_timeout_ms: u64,
    /// How often `/readyz` re-checks that Kinesis answers.
    pub readiness_probe_interval_ms: u64,
    /// Record size limit used until (or unless) `DescribeStreamSummary` reports the stream's own.
    pub default_max_record_bytes: usize,
}

impl Default for KinesisSettings {
    fn default() -> Self {
        Self {
            default_region: "us-west-2".into(),
            allowed_regions: Vec::new(),
            endpoint_url: String::new(),
            call_timeout_ms: 10_000,
            connect_timeout_ms: 3_000,
            readiness_probe_interval_ms: 5_000,
            default_max_record_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Writable streams: exact names, `prefix-*` patterns, or `*` for any stream.
    pub allow: Vec<String>,
    /// Streams (same pattern syntax) answered 202 as soon as the event is queued.
    pub ack_on_enqueue: Vec<String>,
    /// Streams (same pattern syntax) answered 202 once the event is fsynced in the spool
    /// (`[spool]`), then sent to Kinesis from there.
    pub ack_on_disk: Vec<String>,
    /// Streams (same pattern syntax) whose events of one partition key are written in the
    /// order they were accepted, even across throttling and retries.
    pub ordered: Vec<String>,
    /// Streams (same pattern syntax) whose small events are packed per shard into KPL
    /// aggregated records.
    pub aggregate: Vec<String>,
    /// `pattern:path/to/schema.json`: the JSON Schema an event on a matching stream must
    /// satisfy (400 `schema_violation`); the first matching entry applies.
    pub schemas: Vec<String>,
    /// Streams (same pattern syntax) whose records are `{"event": ..., "meta": {...}}`: the
    /// event as sent plus what only the server knows (`http::envelope`).
    pub envelope: Vec<String>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            allow: vec!["events".into()],
            ack_on_enqueue: Vec::new(),
            ack_on_disk: Vec::new(),
            ordered: Vec::new(),
            aggregate: Vec::new(),
            schemas: Vec::new(),
            envelope: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingSettings {
    /// Records per `PutRecords` call (Kinesis allows at most 500).
    pub max_batch_records: usize,
    /// Bytes per `PutRecords` call, data + partition keys before base64 (Kinesis: 10 MiB).
    pub max_batch_bytes: usize,
    /// Longest a record waits for more records before its batch is sent.
    pub linger_ms: u64,
    /// With no call in flight, a batch is sent once no record has arrived for this long.
    pub arrival_gap_us: u64,
    /// Concurrent `PutRecords` calls per (region, stream).
    pub max_in_flight_calls: usize,
    /// Records admitted and not yet answered, per (region, stream); above it requests get 503.
    pub queue_max_records: usize,
    /// Bytes admitted and not yet answered, per (region, stream); above it requests get 503.
    pub queue_max_bytes: usize,
    /// Largest KPL aggregated record on `streams.aggregate` streams (at most the stream's
    /// record size limit).
    pub aggregate_max_bytes: usize,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_batch_records: 500,
            max_batch_bytes: 5 * 1024 * 1024,
            linger_ms: 10,
            arrival_gap_us: 200,
            max_in_flight_calls: 4,
            queue_max_records: 50_000,
            queue_max_bytes: 64 * 1024 * 1024,
            aggregate_max_bytes: 51_200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// From receipt: how long a record may be retried before its request is answered with failure.
    pub record_deadline_ms: u64,
    /// First backoff step; each retry doubles it (with full jitter).
    pub backoff_base_ms: u64,
    /// Ceiling of one backoff step.
    pub backoff_max_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            record_deadline_ms: 30_000,
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest request body, any route, as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest request body once decoded (`Content-Encoding: gzip`/`zstd`); decoding stops
    /// there, so a decompression bomb costs at most this much memory.
    pub max_decoded_body_bytes: usize,
    /// Longest a request body may take to arrive, from the end of its head; past it the
    /// request is answered 408 and its connection closed.
    pub body_timeout_ms: u64,
    /// Bytes of request bodies held in memory at once across all connections (as received, or
    /// decoded); past it requests are answered 503 with `Retry-After`.
    pub max_buffered_body_bytes: usize,
    /// Records in one request to the many-records route.
    pub max_records_per_request: usize,
    /// Distinct (region, stream) pipelines; each owns a queue, a thread and a client.
    pub max_pipelines: usize,
    /// A pipeline unused for this long, with nothing in it, is given back (its thread ends).
    pub pipeline_idle_timeout_ms: u64,
    /// A stream Kinesis reported missing is answered 404 for this long without asking again.
    pub missing_stream_ttl_ms: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_decoded_body_bytes: 40 * 1024 * 1024,
            body_timeout_ms: 30_000,
            max_buffered_body_bytes: 256 * 1024 * 1024,
            max_records_per_request: 10_000,
            max_pipelines: 64,
            pipeline_idle_timeout_ms: 300_000,
            missing_stream_ttl_ms: 10_000,
        }
    }
}

/// Limits in events/s and bytes/s; 0 turns a limit off. A burst of 0 means one second's worth
/// (the rate). A request larger than its burst is refused for good (413), never 429 forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub key_events_per_second: u32,
    pub key_events_burst: u32,
    pub key_bytes_per_second: u32,
    pub key_bytes_burst: u32,
    pub stream_events_per_second: u32,
    pub stream_events_burst: u32,
    pub stream_bytes_per_second: u32,
    pub stream_bytes_burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// When true, every write needs an `x-api-key` header matching one of the keys.
    pub required: bool,
    /// API keys as `name:key` entries, or `name:key:PATTERNS` to limit a key to some streams;
    /// the name appears in logs, never the key.
    pub keys: Vec<String>,
    /// A file with more entries of the same form, one per line (`#` comments), so keys can stay
    /// out of the configuration; empty for none.
    pub keys_file: String,
    /// Publishable keys for web pages, `name:key:PATTERNS` (the scope is required): also taken
    /// from the `api_key` query parameter, and only from an `Origin` of `cors.allowed_origins`.
    pub public_keys: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            required: true,
            keys: Vec::new(),
            keys_file: String::new(),
            public_keys: Vec::new(),
        }
    }
}

impl AuthSettings {
    /// `keys` plus the entries of `keys_file`, then `public_keys`, parsed and checked; every
    /// stream scope must be able to match some stream of `allow` (`streams.allow`).
    pub fn api_keys(&self, allow: &[String]) -> Result<Vec<ApiKeyEntry>, ConfigError> {
        // Each entry with where it was written: errors name entries by position, never by
        // their text, which may hold a key.
        let mut entries: Vec<(String, String)> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("auth.keys entry {}", i + 1), e.clone()))
            .collect();
        if !self.keys_file.is_empty() {
            let text = std::fs::read_to_string(&self.keys_file).map_err(|e| {
                invalid(
                    "auth.keys_file",
                    format!("cannot read {:?}: {e}", self.keys_file),
                )
            })?;
            entries.extend(
                text.lines()
                    .enumerate()
                    .map(|(i, l)| (i, l.trim()))
                    .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                    .map(|(i, l)| (format!("auth.keys_file line {}", i + 1), l.to_owned())),
            );
        }
        let secret = api_keys::parse_entries(&entries, allow, KeyKind::Secret)
            .map_err(|message| invalid("auth.keys / auth.keys_file", message))?;
        let public: Vec<(String, String)> = self
            .public_keys
            .iter()
            .enumerate()
            .map(|(i, e)| (format!("auth.public_keys entry {}", i + 1), e.clone()))
            .collect();
        let public = api_keys::parse_entries(&public, allow, KeyKind::Public)
            .map_err(|message| invalid("auth.public_keys", message))?;
        api_keys::combine(secret, public)
            .map_err(|message| invalid("auth.keys / auth.public_keys", message))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `tracing` filter, e.g. `info` or `kinesis_proxy=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: String,
    /// Access log lines: `all` requests, only `errors` (status 400 and up), or `off`.
    pub access: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
            access: "all".into(),
        }
    }
}

impl Settings {
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "must be address:port, e.g. 0.0.0.0:8080 (got {:?})",
                    self.server.listen
                ),
            )
        })
    }

    /// Whether a request may write to `region`.
    pub fn region_allowed(&self, region: &Region) -> bool {
        region.as_str() == self.kinesis.default_region
            || self
                .kinesis
                .allowed_regions
                .iter()
                .any(|r| r == "*" || r == region.as_str())
    }

    /// The regions a request may name, for messages: "us-west-2", "us-west-2 and eu-west-1",
    /// "us-west-2, eu-west-1 and eu-central-1".
    pub fn served_regions(&self) -> String {
        let mut regions = vec![self.kinesis.default_region.as_str()];
        regions.extend(
            self.kinesis
                .allowed_regions
                .iter()
                .map(String::as_str)
                .filter(|r| *r != self.kinesis.default_region),
        );
        match regions.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => self.kinesis.default_region.clone(),
        }
    }

    pub fn default_region(&self) -> Region {
        // validate() has checked it; fall back to the documented default rather than panic.
        Region::parse(&self.kinesis.default_region).unwrap_or_else(|_| Region::us_west_2())
    }

    /// The allow-list, parsed (validate() has checked every pattern).
    pub fn allowed_streams(&self) -> StreamPatterns {
        StreamPatterns::parse_all(&self.streams.allow).unwrap_or_default()
    }

    pub fn acks_on_enqueue(&self, stream: &StreamName) -> bool {
        StreamPatterns::parse_all(&self.streams.ack_on_enqueue)
            .unwrap_or_default()
            .matches(stream)
    }

    pub fn acks_on_disk(&self, stream: &StreamName) -> bool {
        StreamPatterns::parse_all(&self.streams.ack_on_disk)
            .unwrap_or_default()
            .matches(stream)
    }

    /// Whether any stream acknowledges on disk, so the spool must be opened.
    pub fn uses_spool(&self) -> bool {
        !self.streams.ack_on_disk.is_empty()
    }

    pub fn aggregates(&self, stream: &StreamName) -> bool {
        StreamPatterns::parse_all(&self.streams.aggregate)
            .unwrap_or_default()
            .matches(stream)
    }

    pub fn keeps_key_order(&self, stream: &StreamName) -> bool {
        StreamPatterns::parse_all(&self.streams.ordered)
            .unwrap_or_default()
            .matches(stream)
    }
}

impl KinesisSettings {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn readiness_probe_interval(&self) -> Duration {
        Duration::from_millis(self.readiness_probe_interval_ms)
    }
}

impl BatchingSettings {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
    pub fn arrival_gap(&self) -> Duration {
        Duration::from_micros(self.arrival_gap_us)
    }
}

impl RetrySettings {
    pub fn record_deadline(&self) -> Duration {
        Duration::from_millis(self.record_deadline_ms)
    }
}

impl LimitSettings {
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn pipeline_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.pipeline_idle_timeout_ms)
    }
    pub fn missing_stream_ttl(&self) -> Duration {
        Duration::from_millis(self.missing_stream_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_toml_equals_the_built_in_defaults() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
            .expect("config.toml at the repository root");
        let from_file: Settings = toml::from_str(&text).expect("config.toml parses");
        assert_eq!(
            from_file,
            Settings::default(),
            "config.toml and the code defaults drifted apart"
        );
    }
}
