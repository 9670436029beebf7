//! One shard's write budget: token buckets of records and bytes whose rate can change, and
//! the adaptive share of the configured limit that sets it (see `lanes` for why they are
//! hand-written rather than `governor`).
//!
//! The share follows Kinesis' answers, judged over windows of calls rather than call by call
//! (one throttled call is little evidence, and calls in flight at a cut were sent at the old
//! rate). Over the limit, the rate goes to what Kinesis accepted from the shard in the last
//! window (a delivery-rate estimate: while it throttles, its bucket for us is empty, so what it
//! takes is what it can give us), so a cold start at the limit while other producers use most
//! of a shard settles in one or two windows instead of several fixed steps. Throttling that two
//! cuts in a row do not reduce (a share throttled whatever the rate: another producer's bursts,
//! a fault) is noise: the cuts are undone and only throttling beyond it (more than a window of
//! that size shows by chance) cuts again, so such a stream keeps its rate instead of sinking to
//! `min_share`; more than `MAX_NOISE` throttled is never taken for noise. After `quiet_period`
//! without a cut the rate rises by `increase_step` of itself (of a quarter of the limit at
//! least) every `increase_interval`: gently near what Kinesis gave, and with the cuts towards
//! each one's delivery rate, replicas sharing a shard converge on it without talking.

use std::time::{Duration, Instant};

/// Throttled entries that are enough evidence to judge a window.
const EVIDENCE_THROTTLED: u64 = 10;

/// Entries sent that are enough evidence to judge a window (when few are throttled).
const EVIDENCE_SENT: u64 = 50;

/// A throttled share within this of the noise is not cut for (counting error of a window).
const NOISE_MARGIN: f64 = 0.01;

/// The most of a shard's entries taken as throttled at random: a shard that throttles more
/// whatever the rate is full (say, other producers take it all), and is backed off from.
const MAX_NOISE: f64 = 0.3;

/// The shortest span a delivery rate is estimated over (a window of one call has none).
const MIN_ESTIMATE_SPAN: Duration = Duration::from_millis(10);

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
    /// When the rate was last cut (throttling beyond the noise).
    pub(super) last_throttle: Option<Instant>,
    pub(super) last_increase: Instant,
    /// The calls' answers since the window began.
    window: Window,
    /// The share of entries Kinesis throttles whatever our rate (0 until a cut failed to
    /// lower it).
    noise: f64,
    /// After a cut judged on a window throttled all along: whether the next one shows it helped.
    check: Option<Check>,
}

/// What one call told about one shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallFeedback {
    pub started_at: Instant,
    pub sent: u32,
    pub throttled: u32,
    pub accepted_bytes: u64,
}

/// Kinesis' answers to the calls started since `since`.
#[derive(Debug, Clone)]
struct Window {
    since: Instant,
    /// Began at a cut, so our bucket was empty then and Kinesis was throttling.
    clean: bool,
    sent: u64,
    throttled: u64,
    accepted_bytes: u64,
    /// The latest start of a call counted.
    last_started: Instant,
}

impl Window {
    fn new(since: Instant, clean: bool) -> Self {
        Self {
            since,
            clean,
            sent: 0,
            throttled: 0,
            accepted_bytes: 0,
            last_started: since,
        }
    }
}

/// Entries per second Kinesis accepted in `window` so far.
fn delivered_per_second(window: &Window, now: Instant) -> f64 {
    let seconds = now
        .saturating_duration_since(window.since)
        .max(MIN_ESTIMATE_SPAN)
        .as_secs_f64();
    (window.sent - window.throttled) as f64 / seconds
}

/// A cut to check: the share throttled that caused it, what Kinesis accepted then, the share of the limit before the
/// first of the cuts in a row that did not lower it, and how many such cuts came before.
#[derive(Debug, Clone, Copy)]
struct Check {
    throttled_share: f64,
    /// Entries per second Kinesis accepted in that window.
    delivered: f64,
    share_before: f64,
    strikes: u8,
}

impl ShardBudget {
    pub(super) fn new(limits: &ShardLimits, now: Instant) -> Self {
        Self {
            records: Bucket::full(limits.records_per_second, now),
            bytes: Bucket::full(limits.bytes_per_second, now),
            share: 1.0,
            last_throttle: None,
            last_increase: now,
            window: Window::new(now, false),
            noise: 0.0,
            check: None,
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
            // Gently near what Kinesis gave: a step of the current rate (of a quarter of the
            // limit at least), so probing above a small share costs a few throttled entries.
            let step = limits.increase_step * self.share.max(0.25);
            self.set_share((self.share + step).min(1.0), limits);
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

    /// What Kinesis answered to a call that started at `started_at` and wrote `sent` entries
    /// to this shard: `throttled` of them throttled, `accepted_bytes` accepted.
    ///
    /// Judged over a window of calls, once it holds enough evidence (`EVIDENCE_THROTTLED`
    /// throttled or `EVIDENCE_SENT` sent entries, or `decrease_interval`): a throttled share
    /// above the noise cuts the rate towards what Kinesis accepted in the window (`cut`);
    /// calls started before the latest cut are not counted (they were sent at the old rate).
    pub(super) fn feedback(&mut self, limits: &ShardLimits, call: CallFeedback, now: Instant) {
        if call.sent == 0 || call.started_at < self.window.since {
            return;
        }
        let window = &mut self.window;
        window.sent += u64::from(call.sent);
        window.throttled += u64::from(call.throttled);
        window.accepted_bytes += call.accepted_bytes;
        window.last_started = window.last_started.max(call.started_at);
        let span = now.saturating_duration_since(window.since);
        if window.throttled == 0 {
            if span >= limits.decrease_interval {
                // A whole window without throttling: whatever throttled at random has
                // stopped, and the next throttling starts a window of its own.
                self.noise = 0.0;
                self.check = None;
                self.window = Window::new(now, false);
            }
            return;
        }
        let share_so_far = window.throttled as f64 / window.sent as f64;
        let enough = if self.noise > 0.0 {
            // With noise, a window closed as soon as it has a few throttled entries would
            // over-state the share (it stops on a run of bad luck): whole windows only.
            span >= limits.decrease_interval && window.sent >= EVIDENCE_SENT
        } else if self.check.is_some() && share_so_far <= MAX_NOISE {
            // Telling noise from a full shard takes a window of some size.
            window.sent >= EVIDENCE_SENT
        } else {
            window.throttled >= EVIDENCE_THROTTLED
                || window.sent >= EVIDENCE_SENT
                || span >= limits.decrease_interval
        };
        if !enough {
            return;
        }
        let sent = window.sent as f64;
        let share = share_so_far;
        let delivered = delivered_per_second(window, now);
        let mut strikes = None;
        if let Some(check) = self.check.take() {
            // About the same share (within half of it, or what windows of this size differ
            // by chance), while less got through: the cut lowered what Kinesis accepted, not
            // what it throttled. A full shard would have taken as much as before.
            let chance =
                2.0 * (check.throttled_share * (1.0 - check.throttled_share) / sent).sqrt();
            let similar =
                (share - check.throttled_share).abs() <= (0.5 * check.throttled_share).max(chance);
            let less_through = delivered <= 0.9 * check.delivered;
            if similar && less_through && share <= MAX_NOISE {
                if check.strikes >= 1 {
                    // Two cuts in a row did not lower the share throttled: it does not depend
                    // on our rate (another producer's bursts, a throttling fault). Undo them
                    // and from now on cut only for throttling beyond it.
                    self.noise = share;
                    self.set_share(check.share_before, limits);
                    self.window = Window::new(now, false);
                    return;
                }
                strikes = Some(check);
            }
        }
        // The share of what the noise lets through that was throttled, and what a window of
        // this size may show by chance (two standard deviations of a binomial share).
        let passed = (1.0 - self.noise).max(1e-9);
        let excess = ((share - self.noise) / passed).max(0.0);
        let chance = 2.0 * (self.noise * (1.0 - self.noise) / sent).sqrt() / passed;
        if excess <= NOISE_MARGIN + chance {
            if span >= limits.decrease_interval || window.sent >= 4 * EVIDENCE_SENT {
                // No more than the noise: follow it (it may be fading).
                if self.noise > 0.0 {
                    self.noise = 0.75 * self.noise + 0.25 * share;
                }
                self.window = Window::new(now, false);
            }
            return;
        }
        self.cut(limits, share, excess, strikes, now);
    }

    /// Cuts the rate for `excess` throttling in the current window (`share` of its entries);
    /// `strikes`: the previous cut, if this window's share is about what caused it.
    fn cut(
        &mut self,
        limits: &ShardLimits,
        share: f64,
        excess: f64,
        strikes: Option<Check>,
        now: Instant,
    ) {
        let window = &self.window;
        let target = if window.clean {
            // The window began at the previous cut and Kinesis throttled in it: its bucket
            // for us was empty, so what it accepted is what it takes from us (our bucket
            // was emptied at the cut, so we cannot have sent more than we earned since).
            // Towards that delivery rate (of records or bytes, whichever binds), never above
            // the proportional cut (which allows for calls not at the full rate).
            let seconds = window
                .last_started
                .saturating_duration_since(window.since)
                .max(MIN_ESTIMATE_SPAN)
                .as_secs_f64();
            let accepted = (window.sent - window.throttled) as f64;
            let delivered = (accepted / seconds / limits.records_per_second)
                .max(window.accepted_bytes as f64 / seconds / limits.bytes_per_second)
                / (1.0 - self.noise).max(1e-9);
            (self.share * (1.0 - excess)).min(delivered)
        } else {
            // The window began before the throttling: what Kinesis accepted in it includes
            // its bucket's burst, so cut in proportion to the share throttled, at most by
            // `decrease_factor`. A few entries over the limit (timing jitter between our
            // bucket and Kinesis') cost a few percent, not 30% and seconds of recovery.
            self.share * limits.decrease_factor.max(1.0 - excess)
        };
        // Whether the cut helps shows in the next window. A cut to the floor cannot show it:
        // the rate there may still be above what Kinesis accepts.
        let delivered = delivered_per_second(window, now);
        self.check = (target > limits.min_share).then(|| match strikes {
            Some(previous) => Check {
                throttled_share: share,
                delivered,
                share_before: previous.share_before,
                strikes: previous.strikes + 1,
            },
            None => Check {
                throttled_share: share,
                delivered,
                share_before: self.share,
                strikes: 0,
            },
        });
        self.set_share(target.clamp(limits.min_share, 1.0), limits);
        self.last_throttle = Some(now);
        self.last_increase = now;
        // What was already granted was too much: start from empty.
        self.records.tokens = self.records.tokens.min(0.0);
        self.bytes.tokens = self.bytes.tokens.min(0.0);
        self.window = Window::new(now, true);
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
