//! A stream at its shards' limits (issue 21): calls carry the records of every shard that has
//! budget, not a call per shard; Kinesis' throttling is followed down to what it accepts.
//! (Throttling that does not depend on the rate is covered by the lanes' unit tests, with a
//! fake clock: at rates a debug build reaches, a test here could not tell it apart in time.)
//!
//! The limits are scaled down (a few hundred records/s per shard) so a test outruns them on
//! one worker; the fault proxy between the proxy and kinesalite counts the calls and entries.

use std::sync::Arc;

use serde_json::json;

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp};
use crate::helpers::emulator::kinesalite;
use crate::helpers::fault_proxy::{FaultProxy, ShardLimits};
use crate::helpers::metrics_page::start_pipeline_and_wait_for_map;

/// `clients` concurrent clients, each sending `events` single events one after another, all
/// answered 200.
async fn closed_loop(app: &Arc<TestApp>, clients: usize, events: usize) {
    let mut senders = Vec::new();
    for client in 0..clients {
        let app = app.clone();
        senders.push(tokio::spawn(async move {
            for n in 0..events {
                let response = app
                    .post_event(&json!({"event": {"client": client, "n": n}}))
                    .await;
                assert_eq!(response.status(), 200, "event {client}/{n}");
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
}

#[tokio::test]
async fn calls_at_a_budget_bound_stream_carry_the_records_of_every_shard() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            shards: 4,
            customize: Box::new(|s| {
                // 4 shards of 100 records/s: 64 clients keep the shards' lanes held back by
                // their budget. Gathering (and linger) scaled as the rate: 100 ms, 10 records
                // per shard and call.
                s.shards.records_per_second = 100;
                s.shards.gather_ms = 100;
                s.batching.linger_ms = 100;
            }),
        })
        .await,
    );
    start_pipeline_and_wait_for_map(&app).await;
    // The buckets start full (one second's worth, 400 records): spend it first, so what is
    // counted is the stream at its limit.
    closed_loop(&app, 64, 12).await;
    faults.reset_stats();
    closed_loop(&app, 64, 8).await;

    let stats = faults.stats();
    assert_eq!(stats.entries_seen, 64 * 8, "{stats:?}");
    let per_call = stats.entries_seen as f64 / stats.put_records_calls as f64;
    // Every shard has gathered ~10 records at each 100 ms call: ~40 per call. A call per
    // shard's refill (the behaviour this replaces) made ~6.
    assert!(
        per_call >= 20.0,
        "{per_call:.1} entries per call ({} calls)",
        stats.put_records_calls
    );
}

#[tokio::test]
async fn a_cold_start_on_shards_other_producers_mostly_use_follows_what_kinesis_accepts() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    // Kinesis takes 50 records/s per shard from us (other producers use the rest); the proxy
    // is configured for 200 (scaled down from 1,000, as the 250 of 1,000).
    faults.limit_shards(ShardLimits {
        records_per_second: 50,
        bytes_per_second: 1024 * 1024,
    });
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            shards: 4,
            customize: Box::new(|s| {
                s.shards.records_per_second = 200;
            }),
        })
        .await,
    );
    start_pipeline_and_wait_for_map(&app).await;
    closed_loop(&app, 32, 30).await;

    let stats = faults.stats();
    let share = stats.entries_throttled_by_limit as f64 / stats.entries_seen as f64;
    // Four cuts by a fixed factor (x0.7 every 500 ms) took two seconds to get from 200 to 50,
    // throttling a third of what was sent; following the accepted rate takes a window or two.
    assert!(
        share <= 0.15,
        "{} of {} entries throttled",
        stats.entries_throttled_by_limit,
        stats.entries_seen
    );
}
