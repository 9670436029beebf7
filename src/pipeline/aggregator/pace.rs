//! When calls may leave, besides the batch rules in the loop: a budget-bound stream keeps to
//! its gathering cadence (one call per `shard_gather` for the shards held back by their
//! budget), and the bound on calls in flight follows Kinesis' latency. Kept apart from the
//! loop, which applies them.

use std::time::{Duration, Instant};

use super::Aggregator;
use crate::kinesis::PutRecordsApi;
use crate::pipeline::lanes::Eligible;

impl<K: PutRecordsApi> Aggregator<K> {
    /// Whether a budget-bound stream is between two calls of its gathering cadence: shards
    /// held back by their budget refill continuously, and a call at every refill would carry a
    /// few records of one shard (and empty the others' buckets so each regathers on its own
    /// clock). So calls that take from those shards go at most once per `shard_gather`, each
    /// with what every shard has gathered since the last; meanwhile only shards that can send
    /// all they hold get calls (so a hot shard does not slow the others). A full batch goes at
    /// once.
    pub(super) fn paced(&self, now: Instant, eligible: &Eligible) -> bool {
        let full = eligible.records >= self.settings.batch.max_records
            || eligible.bytes >= self.settings.batch.max_bytes;
        eligible.budget_bound
            && !full
            && self.grace_deadline.is_none()
            && now < self.last_call_at + self.settings.shard_gather
    }

    /// A call that started at `started_at` has just been answered: its latency joins the
    /// moving average (weight 1/8, as TCP's smoothed round-trip time).
    pub(super) fn note_latency(&mut self, started_at: Option<Instant>, now: Instant) {
        let Some(started_at) = started_at else {
            return;
        };
        let latency = now.saturating_duration_since(started_at);
        self.call_latency = Some(match self.call_latency {
            Some(average) => average.mul_f64(0.875) + latency.mul_f64(0.125),
            None => latency,
        });
    }

    /// Calls in flight allowed now: `max_in_flight_calls`, raised while Kinesis answers more
    /// slowly than the linger so that a batch can still leave every linger (or half of it)
    /// while the others are out: 2 x latency / linger, up to four times the setting. A batch
    /// that has lingered otherwise waits for a slot, and its clients with it: at 30 ms a call
    /// and 10 ms of linger that is 6, where the default allows 4.
    pub(super) fn max_in_flight(&self) -> usize {
        let configured = self.settings.max_in_flight_calls;
        let linger = self.settings.linger;
        match self.call_latency {
            Some(latency) if latency > linger && linger > Duration::ZERO => {
                let wanted = (2.0 * latency.as_secs_f64() / linger.as_secs_f64()).ceil() as usize;
                wanted.clamp(configured, configured.saturating_mul(4))
            }
            _ => configured,
        }
    }
}
