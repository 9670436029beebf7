//! The shard-awareness runs' own figures: sampling what the stream stored second by second
//! while the load runs, and throttling and per-shard delivery over the window from the counts
//! of the fault layer that enforces Kinesis' per-shard limits (and the proxies' own view of
//! their shards from `/metrics`).
//!
//! Observation only: the run itself is `run.rs`; the shard targets are judged in `judge.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kinesis_proxy::telemetry;

use super::probes::{FaultSnapshot, Snapshot};
use super::run::{latency, RunPlan, STREAM};
use crate::fault_proxy::FaultProxy;
use crate::loadgen::LoadResult;
use crate::report::{HotClientFigures, ShardFigures, ShardRate};

/// Throttling and per-shard delivery over the window, from the fault layer's counts (and the
/// proxies' own view of their shards from `/metrics`).
pub(super) fn shard_figures(
    plan: &RunPlan,
    before: &FaultSnapshot,
    after: &FaultSnapshot,
    delivered_series: Vec<(f64, f64, u64)>,
    (metrics_before, metrics_after): (&Snapshot, &Snapshot),
    result: &LoadResult,
    hot: Option<&LoadResult>,
) -> ShardFigures {
    let window = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let stats = |s: &FaultSnapshot| s.stats;
    let (b, a) = (stats(before), stats(after));
    let entries_sent = a.entries_seen - b.entries_seen;
    let entries_throttled = a.entries_throttled_by_limit - b.entries_throttled_by_limit;
    let put_records_calls = a.put_records_calls - b.put_records_calls;
    let acked_events = result.ok_events + hot.map_or(0, |h| h.ok_events);
    let per_shard: BTreeMap<String, ShardRate> = after
        .shards
        .iter()
        .map(|(id, now)| {
            let then = before.shards.get(id).copied().unwrap_or_default();
            let rate = ShardRate {
                delivered_per_sec: (now.entries_accepted - then.entries_accepted) as f64 / window,
                throttled: now.entries_throttled_by_limit - then.entries_throttled_by_limit,
                entries_seen: now.entries_seen - then.entries_seen,
            };
            (id.clone(), rate)
        })
        .collect();
    let stream_filter = [("stream", STREAM)];
    let (proxy_rates_at_end, proxy_counted_throttled) =
        match (&metrics_before.metrics, &metrics_after.metrics) {
            (Some(m_before), Some(m_after)) => (
                per_shard
                    .keys()
                    .map(|id| {
                        let filter = [("stream", STREAM), ("shard", id.as_str())];
                        (id.clone(), m_after.sum(telemetry::SHARD_RATE, &filter))
                    })
                    // A shard-blind proxy has no rates (and an aware one never 0).
                    .filter(|(_, rate)| *rate > 0.0)
                    .collect(),
                m_after.sum(telemetry::SHARD_THROTTLED, &stream_filter)
                    - m_before.sum(telemetry::SHARD_THROTTLED, &stream_filter),
            ),
            _ => (BTreeMap::new(), 0.0),
        };
    let limit = plan.backend.stream_limit_records_per_sec().unwrap_or(0.0);
    let acked_per_sec = acked_events as f64 / result.window.as_secs_f64().max(1e-9);
    ShardFigures {
        proxies: plan.proxies.max(1),
        stream_limit_records_per_sec: limit,
        share_of_limit: acked_per_sec / limit.max(1e-9),
        delivered_per_sec: (after.accepted() - before.accepted()) as f64 / window,
        entries_sent,
        entries_throttled,
        throttled_share: entries_throttled as f64 / (entries_sent as f64).max(1.0),
        put_records_calls,
        calls_per_1000_events: (acked_events > 0)
            .then(|| put_records_calls as f64 / acked_events as f64 * 1000.0),
        entries_per_call: (put_records_calls > 0)
            .then(|| entries_sent as f64 / put_records_calls as f64),
        per_shard,
        delivered_series,
        proxy_rates_at_end,
        proxy_counted_throttled,
        hot_client: plan.hot.zip(hot).map(|(spec, hot)| HotClientFigures {
            connections: spec.connections,
            offered_events_per_sec: spec.events_per_sec,
            events_per_sec: hot.events_per_sec(),
            statuses: hot
                .statuses
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            hot_shard_refusals: hot.refusal_codes.get("hot_shard").copied().unwrap_or(0),
            latency: latency(hot),
        }),
        without_hot_p99_ms: None,
        p99_ratio_to_without_hot: None,
    }
}

/// Sleeps `duration`; with a fault layer, in steps of a second, noting when, how many entries
/// the stream had stored and how many the layer had throttled after each.
pub(super) async fn sleep_sampling(
    duration: Duration,
    faults: Option<&FaultProxy>,
    stored: &mut Vec<(Instant, u64, u64)>,
) {
    let Some(layer) = faults else {
        tokio::time::sleep(duration).await;
        return;
    };
    let end = Instant::now() + duration;
    let sample = || {
        let snapshot = FaultSnapshot::take(layer);
        (
            snapshot.at,
            snapshot.accepted(),
            snapshot.stats.entries_throttled_by_limit,
        )
    };
    if stored.is_empty() {
        stored.push(sample());
    }
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        stored.push(sample());
    }
}
