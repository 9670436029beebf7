//! Settings: `config.toml` as the base layer, `KINESIS_PROXY__<SECTION>__<KEY>` environment
//! variables on top, then one validation pass so a bad value stops the process at startup with a
//! message naming the setting, instead of misbehaving under load later.
//!
//! The code carries the same defaults as `config.toml` (a test keeps them equal), so a user's
//! own, shorter file only needs the settings it changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
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
    pub limits: LimitSettings,
    pub rate_limits: RateLimitSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `address:port` of the HTTP API; port 0 picks a free port (tests use this).
    pub listen: String,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Threads of the runtime that runs `PutRecords` calls; 0 means half the CPU cores (at least 1).
    pub kinesis_threads: usize,
    /// After SIGTERM/SIGINT: how long to keep draining queues and waiting for in-flight calls.
    pub shutdown_grace_ms: u64,
    /// Idle keep-alive connections are closed after this long.
    pub keep_alive_ms: u64,
    /// Cap on concurrently open client connections per worker.
    pub max_connections_per_worker: usize,
    /// Connections the kernel queues before they are accepted (the listen backlog).
    pub listen_backlog: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            workers: 0,
            kinesis_threads: 0,
            shutdown_grace_ms: 30_000,
            keep_alive_ms: 75_000,
            max_connections_per_worker: 25_000,
            listen_backlog: 2048,
        }
    }
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
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            allow: vec!["events".into()],
            ack_on_enqueue: Vec::new(),
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
    /// Largest request body, any route, before parsing.
    pub max_body_bytes: usize,
    /// Records in one request to the many-records route.
    pub max_records_per_request: usize,
    /// Distinct (region, stream) pipelines; each owns a queue, a thread and a client.
    pub max_pipelines: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_records_per_request: 10_000,
            max_pipelines: 64,
        }
    }
}

/// Limits in events/s and bytes/s; 0 turns a limit off. A burst of 0 means "the rate, or the
/// largest request the proxy accepts if that is more", so no valid request is refused forever.
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
    /// API keys as `name:key` entries; the name appears in logs, never the key.
    pub keys: Vec<String>,
    /// A file with more `name:key` entries, one per line (`#` comments), so keys can stay out
    /// of the configuration; empty for none.
    pub keys_file: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            required: true,
            keys: Vec::new(),
            keys_file: String::new(),
        }
    }
}

impl AuthSettings {
    /// `keys` plus the entries of `keys_file`.
    pub fn all_keys(&self) -> Result<Vec<String>, ConfigError> {
        let mut keys = self.keys.clone();
        if !self.keys_file.is_empty() {
            let text = std::fs::read_to_string(&self.keys_file).map_err(|e| {
                invalid(
                    "auth.keys_file",
                    format!("cannot read {:?}: {e}", self.keys_file),
                )
            })?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        Ok(keys)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `tracing` filter, e.g. `info` or `kinesis_proxy=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Settings {
    /// Loads `path` (or only the built-in defaults when `None`), applies the process
    /// environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            None => None,
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
        };
        let file_ref = file.as_ref().map(|(p, text)| (p.as_str(), text.as_str()));
        Self::from_sources(file_ref, std::env::vars())
    }

    /// The layering itself, free of process state so tests can feed it anything.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Start from the defaults as a TOML tree, so every setting exists with its type: an
        // environment value is then parsed as that type and an unknown name is an error.
        let mut tree =
            toml::Table::try_from(Settings::default()).map_err(|e| invalid("*", e.to_string()))?;
        if let Some((path, text)) = file {
            let parsed: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.to_string(),
                    })?;
            merge(&mut tree, parsed);
        }
        let mut overrides: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in env {
            if let Some(rest) = key.strip_prefix(ENV_PREFIX) {
                overrides.insert(rest.to_owned(), value);
            }
        }
        for (rest, value) in overrides {
            apply_env(&mut tree, &rest, &value)?;
        }
        let source = file.map_or("defaults", |(p, _)| p).to_owned();
        let settings: Settings =
            toml::Value::Table(tree)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: e.to_string(),
                })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value a user can get wrong, naming the setting in the message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        Region::parse(&self.kinesis.default_region)
            .map_err(|e| invalid("kinesis.default_region", e.to_string()))?;
        for region in &self.kinesis.allowed_regions {
            if region != "*" {
                Region::parse(region)
                    .map_err(|e| invalid("kinesis.allowed_regions", e.to_string()))?;
            }
        }
        let endpoint = &self.kinesis.endpoint_url;
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            return Err(invalid(
                "kinesis.endpoint_url",
                format!("must start with http:// or https:// (got {endpoint:?})"),
            ));
        }
        in_range(
            "server.listen_backlog",
            self.server.listen_backlog as usize,
            1,
            65_535,
        )?;
        positive("kinesis.call_timeout_ms", self.kinesis.call_timeout_ms)?;
        positive(
            "kinesis.connect_timeout_ms",
            self.kinesis.connect_timeout_ms,
        )?;
        positive(
            "kinesis.readiness_probe_interval_ms",
            self.kinesis.readiness_probe_interval_ms,
        )?;
        in_range(
            "kinesis.default_max_record_bytes",
            self.kinesis.default_max_record_bytes,
            1,
            KINESIS_MAX_RECORD_BYTES,
        )?;
        for pattern in self
            .streams
            .allow
            .iter()
            .chain(&self.streams.ack_on_enqueue)
        {
            crate::domain::StreamPattern::parse(pattern)
                .map_err(|message| invalid("streams.allow / streams.ack_on_enqueue", message))?;
        }
        let b = &self.batching;
        in_range(
            "batching.max_batch_records",
            b.max_batch_records,
            1,
            KINESIS_MAX_BATCH_RECORDS,
        )?;
        in_range(
            "batching.max_batch_bytes",
            b.max_batch_bytes,
            1024,
            KINESIS_MAX_BATCH_BYTES,
        )?;
        in_range(
            "batching.max_in_flight_calls",
            b.max_in_flight_calls,
            1,
            1024,
        )?;
        in_range(
            "batching.queue_max_records",
            b.queue_max_records,
            1,
            10_000_000,
        )?;
        if b.queue_max_bytes < self.kinesis.default_max_record_bytes {
            return Err(invalid(
                "batching.queue_max_bytes",
                format!(
                    "must be at least kinesis.default_max_record_bytes ({}), or no record of the largest allowed size could ever be queued",
                    self.kinesis.default_max_record_bytes
                ),
            ));
        }
        if self.limits.max_records_per_request > b.queue_max_records {
            return Err(invalid(
                "limits.max_records_per_request",
                format!(
                    "must not exceed batching.queue_max_records ({}), or a full request could never be admitted",
                    b.queue_max_records
                ),
            ));
        }
        positive("retry.record_deadline_ms", self.retry.record_deadline_ms)?;
        positive("retry.backoff_base_ms", self.retry.backoff_base_ms)?;
        if self.retry.backoff_max_ms < self.retry.backoff_base_ms {
            return Err(invalid(
                "retry.backoff_max_ms",
                "must be at least retry.backoff_base_ms",
            ));
        }
        in_range(
            "limits.max_body_bytes",
            self.limits.max_body_bytes,
            64,
            256 * 1024 * 1024,
        )?;
        in_range(
            "limits.max_records_per_request",
            self.limits.max_records_per_request,
            1,
            1_000_000,
        )?;
        in_range("limits.max_pipelines", self.limits.max_pipelines, 1, 10_000)?;
        let keys = self.auth.all_keys()?;
        crate::auth::ApiKeys::parse(&keys)
            .map_err(|message| invalid("auth.keys / auth.keys_file", message))?;
        if self.auth.required && keys.is_empty() {
            return Err(invalid(
                "auth.keys",
                "auth.required is true but no keys are configured: add `name:key` entries to auth.keys or auth.keys_file (or KINESIS_PROXY__AUTH__KEYS=\"name:key,...\"), or set auth.required = false deliberately",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("must be \"text\" or \"json\" (got {:?})", self.log.format),
            ));
        }
        Ok(())
    }

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

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
}

fn positive(setting: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(setting, "must be greater than 0"));
    }
    Ok(())
}

fn in_range(setting: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} (got {value})"),
        ));
    }
    Ok(())
}

/// Overlays `top` onto `base`, table by table, so a file may set only part of a section.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(top_table)) => {
                merge(base_table, top_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `SECTION__KEY` in `tree`, parsing `raw` as the type the setting already has.
fn apply_env(tree: &mut toml::Table, path: &str, raw: &str) -> Result<(), ConfigError> {
    let var = format!("{ENV_PREFIX}{path}");
    let env_error = |message: String| ConfigError::Env {
        var: var.clone(),
        message,
    };
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let Some((leaf, sections)) = parts.split_last() else {
        return Err(env_error("names no setting".into()));
    };
    let mut table = tree;
    for section in sections {
        table = match table.get_mut(section) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(env_error(format!("unknown section {section:?}"))),
        };
    }
    let current = table
        .get(leaf)
        .ok_or_else(|| env_error(format!("unknown setting {leaf:?}")))?;
    let value = match current {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| env_error(format!("expected a whole number, got {raw:?}")))?,
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| env_error(format!("expected a number, got {raw:?}")))?,
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(env_error(format!("expected true or false, got {raw:?}"))),
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        toml::Value::Table(_) => return Err(env_error("names a section, not a setting".into())),
        toml::Value::Datetime(_) => return Err(env_error("unsupported setting type".into())),
    };
    table.insert(leaf.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(String, String)> {
        env(&[("KINESIS_PROXY__AUTH__KEYS", "ci:secret-key-0123456789")])
    }

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

    #[test]
    fn env_overrides_scalars_and_lists_with_their_types() {
        let mut vars = base();
        vars.extend(env(&[
            ("KINESIS_PROXY__SERVER__LISTEN", "127.0.0.1:9000"),
            ("KINESIS_PROXY__BATCHING__LINGER_MS", "7"),
            ("KINESIS_PROXY__STREAMS__ALLOW", "events, clicks-*"),
            ("KINESIS_PROXY__AUTH__REQUIRED", "false"),
        ]));
        let s = Settings::from_sources(None, vars).expect("valid");
        assert_eq!(s.server.listen, "127.0.0.1:9000");
        assert_eq!(s.batching.linger_ms, 7);
        assert_eq!(s.streams.allow, vec!["events", "clicks-*"]);
        assert!(!s.auth.required);
    }

    #[test]
    fn file_sets_part_of_a_section_and_env_wins_over_file() {
        let file = "[batching]\nlinger_ms = 9\n[auth]\nkeys = [\"a:0123456789abcdef\"]\n";
        let s = Settings::from_sources(
            Some(("x.toml", file)),
            env(&[("KINESIS_PROXY__BATCHING__LINGER_MS", "3")]),
        )
        .expect("valid");
        assert_eq!(s.batching.linger_ms, 3);
        assert_eq!(s.batching.max_batch_records, 500);
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(Vec<(String, String)>, &str)> = vec![
            (
                env(&[("KINESIS_PROXY__BATCHING__MAX_BATCH_RECORDS", "501")]),
                "batching.max_batch_records",
            ),
            (
                env(&[("KINESIS_PROXY__BATCHING__LINGER_MS", "soon")]),
                "KINESIS_PROXY__BATCHING__LINGER_MS",
            ),
            (
                env(&[("KINESIS_PROXY__SERVER__NOPE", "1")]),
                "KINESIS_PROXY__SERVER__NOPE",
            ),
            (
                env(&[("KINESIS_PROXY__SERVER__LISTEN", "localhost")]),
                "server.listen",
            ),
            (
                env(&[("KINESIS_PROXY__KINESIS__DEFAULT_REGION", "Mars")]),
                "kinesis.default_region",
            ),
            (
                env(&[("KINESIS_PROXY__STREAMS__ALLOW", "bad/name")]),
                "streams.allow",
            ),
        ];
        for (mut vars, needle) in cases {
            vars.extend(base());
            let err = Settings::from_sources(None, vars)
                .expect_err(needle)
                .to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
        }
        let err = Settings::from_sources(Some(("c.toml", "[server]\nlisten_port = 1\n")), base())
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn auth_required_without_keys_is_refused() {
        let err = Settings::from_sources(None, Vec::new())
            .expect_err("no keys")
            .to_string();
        assert!(err.contains("auth.keys"), "{err}");
        Settings::from_sources(None, env(&[("KINESIS_PROXY__AUTH__REQUIRED", "false")]))
            .expect("explicit opt-out");
    }
}
