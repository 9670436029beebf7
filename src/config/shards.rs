//! The `[shards]` settings: shard awareness, the per-shard write limits (and the per-stream
//! overrides of them), how the limits adapt to throttling, and the hot-shard bound. Apart from
//! the other sections because the per-stream limit entries have a syntax of their own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{StreamName, StreamPattern};

/// Shard awareness: the shard map and the adaptive per-shard write limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardSettings {
    /// Load each stream's shard map and send within per-shard limits; false: shard-blind.
    pub aware: bool,
    /// How often the shard map is reloaded (it is also reloaded at once when Kinesis puts a
    /// record on another shard than predicted).
    pub map_refresh_ms: u64,
    /// Writes per shard and second that the proxy allows itself (Kinesis: 1,000 and 1 MiB).
    pub records_per_second: u32,
    pub bytes_per_second: u32,
    /// On throttling, a shard's rate is multiplied by this...
    pub decrease_factor: f64,
    /// ...at most once per this long...
    pub decrease_interval_ms: u64,
    /// ...and never below this share of the limit.
    pub min_share: f64,
    /// After this long without throttling, the rate rises by `increase_step` of the limit...
    pub quiet_period_ms: u64,
    pub increase_step: f64,
    /// ...every this long, up to the limit.
    pub increase_interval_ms: u64,
    /// One shard's backlog may use at most this share of the stream's queue budget
    /// (`batching.queue_max_records`/`queue_max_bytes`); beyond it, records for that shard get
    /// 503 `hot_shard`. Never less than 1/shards.
    pub max_backlog_share: f64,
    /// A shard held back by its budget waits until it has this long's worth of budget before
    /// it starts a call of its own (0: at every refill).
    pub gather_ms: u64,
    /// Per-stream limits, `"PATTERN:RECORDS_PER_SECOND:BYTES_PER_SECOND"`; the first matching
    /// entry wins over `records_per_second`/`bytes_per_second`.
    pub stream_limits: Vec<String>,
}

impl Default for ShardSettings {
    fn default() -> Self {
        Self {
            aware: true,
            map_refresh_ms: 60_000,
            records_per_second: 1_000,
            bytes_per_second: 1024 * 1024,
            decrease_factor: 0.7,
            decrease_interval_ms: 500,
            min_share: 0.05,
            quiet_period_ms: 2_000,
            increase_step: 0.05,
            increase_interval_ms: 500,
            max_backlog_share: 0.5,
            gather_ms: 10,
            stream_limits: Vec::new(),
        }
    }
}

impl ShardSettings {
    pub fn map_refresh(&self) -> Duration {
        Duration::from_millis(self.map_refresh_ms)
    }
    pub fn gather(&self) -> Duration {
        Duration::from_millis(self.gather_ms)
    }

    /// The per-shard (records/s, bytes/s) limits of `stream`: its `stream_limits` entry, or the
    /// defaults.
    pub fn limits_for(&self, stream: &StreamName) -> (u32, u32) {
        self.stream_limits
            .iter()
            .filter_map(|entry| StreamLimit::parse(entry).ok())
            .find(|limit| limit.pattern.matches(stream))
            .map_or((self.records_per_second, self.bytes_per_second), |limit| {
                (limit.records_per_second, limit.bytes_per_second)
            })
    }

    pub fn decrease_interval(&self) -> Duration {
        Duration::from_millis(self.decrease_interval_ms)
    }
    pub fn quiet_period(&self) -> Duration {
        Duration::from_millis(self.quiet_period_ms)
    }
    pub fn increase_interval(&self) -> Duration {
        Duration::from_millis(self.increase_interval_ms)
    }
}

/// One `shards.stream_limits` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimit {
    pub pattern: StreamPattern,
    pub records_per_second: u32,
    pub bytes_per_second: u32,
}

impl StreamLimit {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let shape = || {
            format!(
                "{raw:?} is not \"PATTERN:RECORDS_PER_SECOND:BYTES_PER_SECOND\" (e.g. \"clicks-*:500:524288\")"
            )
        };
        let mut parts = raw.split(':');
        let (Some(pattern), Some(records), Some(bytes), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let records_per_second: u32 = records.trim().parse().map_err(|_| shape())?;
        let bytes_per_second: u32 = bytes.trim().parse().map_err(|_| shape())?;
        if records_per_second == 0 || bytes_per_second < 1_024 {
            return Err(format!(
                "{raw:?}: records per second must be at least 1 and bytes per second at least 1024"
            ));
        }
        Ok(Self {
            pattern: StreamPattern::parse(pattern.trim())?,
            records_per_second,
            bytes_per_second,
        })
    }
}
