//! One shard's write budget: token buckets of records and bytes whose rate can change, and
//! the adaptive (AIMD) share of the configured limit that sets it (see `lanes` for why they are
//! hand-written rather than `governor`).

use std::time::{Duration, Instant};

/// Per-shard limits and how the rate adapts (`[shards]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardLimits {
    pub records_per_second: f64,
    pub bytes_per_second: f64,
    pub decrease_factor: f64,
    pub decrease_interval: Duration,
    pub min_share: f64,
    pub increase_step: f64,
    pub increase_interval: Duration,
    pub quiet_period: Duration,
}

/// A token bucket whose rate can change; it holds at most one second's worth.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    pub(super) tokens: f64,
    pub(super) rate: f64,
    pub(super) updated: Instant,
}

impl Bucket {
    pub(super) fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: rate,
            rate,
            updated: now,
        }
    }

    pub(super) fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// How long until `amount` tokens are there (zero when they are).
    pub(super) fn time_until(&self, amount: f64) -> Duration {
        if self.tokens >= amount || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((amount.min(self.rate) - self.tokens) / self.rate)
    }
}

/// One shard's write budget and its adaptive share of the limit.
#[derive(Debug, Clone)]
pub(super) struct ShardBudget {
    pub(super) records: Bucket,
    pub(super) bytes: Bucket,
    /// Current rate as a share of the configured limit, in `min_share..=1`.
    pub(super) share: f64,
    pub(super) last_throttle: Option<Instant>,
    pub(super) last_decrease: Option<Instant>,
    pub(super) last_increase: Instant,
}

impl ShardBudget {
    pub(super) fn new(limits: &ShardLimits, now: Instant) -> Self {
        Self {
            records: Bucket::full(limits.records_per_second, now),
            bytes: Bucket::full(limits.bytes_per_second, now),
            share: 1.0,
            last_throttle: None,
            last_decrease: None,
            last_increase: now,
        }
    }

    pub(super) fn refill(&mut self, limits: &ShardLimits, now: Instant) {
        let quiet = self
            .last_throttle
            .is_none_or(|t| now.saturating_duration_since(t) >= limits.quiet_period);
        if self.share < 1.0
            && quiet
            && now.saturating_duration_since(self.last_increase) >= limits.increase_interval
        {
            self.set_share((self.share + limits.increase_step).min(1.0), limits);
            self.last_increase = now;
        }
        self.records.refill(now);
        self.bytes.refill(now);
    }

    pub(super) fn set_share(&mut self, share: f64, limits: &ShardLimits) {
        self.share = share;
        self.records.rate = limits.records_per_second * share;
        self.bytes.rate = limits.bytes_per_second * share;
    }

    /// Kinesis throttled `throttled_share` (0..=1) of the entries a call sent to this shard.
    pub(super) fn throttled(&mut self, limits: &ShardLimits, throttled_share: f64, now: Instant) {
        self.last_throttle = Some(now);
        let due = self
            .last_decrease
            .is_none_or(|t| now.saturating_duration_since(t) >= limits.decrease_interval);
        if due {
            // In proportion to what was throttled, at most by `decrease_factor`: a few
            // entries over the limit (timing jitter between our bucket and Kinesis') cost a
            // few percent, not 30% and seconds of recovery.
            let factor = limits.decrease_factor.max(1.0 - throttled_share);
            let share = (self.share * factor).max(limits.min_share);
            self.set_share(share, limits);
            self.last_decrease = Some(now);
            self.last_increase = now;
            // What was already granted this second was too much: start from empty.
            self.records.tokens = self.records.tokens.min(0.0);
            self.bytes.tokens = self.bytes.tokens.min(0.0);
        }
    }

    pub(super) fn fits(&self, size: usize) -> bool {
        self.records.tokens >= 1.0
            && (self.bytes.tokens >= size as f64 || self.bytes.tokens >= self.bytes.rate)
    }

    /// The budget a held-back shard gathers before it counts as ready: `gather` worth of
    /// records or of bytes (at least one record).
    pub(super) fn gathered(&self, gather: Duration) -> (f64, f64) {
        let seconds = gather.as_secs_f64();
        (
            (self.records.rate * seconds).max(1.0),
            self.bytes.rate * seconds,
        )
    }
}
