//! What the aggregator learns from Kinesis about the shards, besides acknowledgements: which
//! shards throttle (their lanes slow down), which predictions Kinesis contradicted (the map is
//! reloaded), new maps from the refresher, and endpoints that refuse large bodies. Kept apart
//! from the loop itself, which decides when batches go.

use std::time::Instant;

use super::Aggregator;
use crate::kinesis::PutRecordsApi;
use crate::pipeline::lanes::CallFeedback;
use crate::pipeline::pending::ShardFeedback;
use crate::pipeline::shard_refresh::{MapUpdate, RefreshCause};

impl<K: PutRecordsApi> Aggregator<K> {
    /// A call's per-shard counts: throttled shards slow down; a wrong prediction asks for a new
    /// map.
    pub(super) fn follow_shard_feedback(&mut self, feedback: ShardFeedback, now: Instant) {
        if feedback.generation == self.lanes.generation() {
            for (lane, (&sent, &throttled)) in
                feedback.sent.iter().zip(&feedback.throttled).enumerate()
            {
                if let (Some(started_at), true) = (feedback.started_at, sent > 0) {
                    let call = CallFeedback {
                        started_at,
                        sent: sent.max(throttled),
                        throttled,
                        accepted_bytes: feedback.accepted_bytes.get(lane).copied().unwrap_or(0),
                    };
                    self.lanes.feedback(feedback.generation, lane, call, now);
                }
                if sent > 0 || throttled > 0 {
                    self.shard_series.written(lane, sent, throttled);
                }
            }
        }
        if feedback.mispredicted > 0 {
            self.metrics.predictions_contradicted(feedback.mispredicted);
            self.map_wanted.notify_one();
            // The current map is stale: aggregating on it could put records in a shard whose
            // range does not hold them. (A contradiction of an older map says nothing of it.)
            if feedback.generation == self.lanes.generation() {
                self.lanes.pause_aggregation(true);
            }
        }
    }

    /// A map from the refresher: followed when it differs from the current one. When none can
    /// be had, the pipeline keeps what it has (shard-blind if it never had one), and says so once.
    pub(super) fn apply_map(&mut self, update: MapUpdate) {
        match update.result {
            Ok(map) => {
                if self.lanes.map().is_some_and(|m| **m == map) {
                    // Kinesis contradicted this very map, yet ListShards still gives it (its
                    // answers can lag a reshard): aggregate again only once a periodic reload
                    // agrees too.
                    if matches!(update.cause, RefreshCause::Periodic) {
                        self.lanes.pause_aggregation(false);
                    }
                    return;
                }
                self.lanes.pause_aggregation(false);
                tracing::info!(stream = %self.metrics.stream, shards = map.len(), cause = update.cause.as_str(), "shard map loaded");
                self.shard_series = self
                    .metrics
                    .shard_map_loaded(update.cause.as_str(), map.shards());
                self.lanes.set_map(Some(map), Instant::now());
                self.shard_backlogs.follow(self.lanes.map().cloned());
            }
            Err(failure) => {
                self.metrics.shard_map_failed();
                if self.lanes.map().is_none() && !self.map_warned {
                    self.map_warned = true;
                    tracing::warn!(stream = %self.metrics.stream, code = %failure.code, message = %failure.message, "no shard map (ListShards failed): sending shard-blind, without per-shard limits");
                }
            }
        }
    }

    /// Some endpoints (emulators, proxies in front of Kinesis) cap the HTTP body below what
    /// Kinesis' own limit allows, and base64 makes the body a third larger than the data. When
    /// one answers 413, halve the batch byte cap (never below one record of the largest size
    /// Kinesis takes by default) instead of failing the records.
    pub(super) fn shrink_batches(&mut self) {
        const FLOOR: usize = 1024 * 1024;
        let before = self.settings.batch.max_bytes;
        let after = (before / 2).max(FLOOR).min(before);
        if after < before {
            self.settings.batch.max_bytes = after;
            tracing::warn!(stream = %self.metrics.stream, before, after, "Kinesis endpoint refused a request as too large; batches are now capped lower");
        }
    }
}
