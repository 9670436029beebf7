//! Shard awareness against kinesalite: the proxy's prediction of each record's shard is where
//! Kinesis puts it (explicit hash keys at the range edges included), and a stream resharded
//! while events flow loses nothing, reloads its map and predicts right again; a hot shard is
//! bounded; a stream's own limits apply; without ListShards the stream is sent shard-blind.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinesis_proxy::kinesis::shard_map::partition_key_hash;
use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp};
use crate::helpers::emulator::{kinesalite, read_all, shard_hash_ranges, split_shard};
use crate::helpers::fault_proxy::FaultProxy;
use crate::helpers::metrics_page::{sample, samples_by, start_pipeline_and_wait_for_map};

const MAP_AVAILABLE: &str = "kinesis_proxy_shard_map_available";
const CONTRADICTED: &str = "kinesis_proxy_shard_predictions_contradicted_total";
const SHARD_ENTRIES: &str = "kinesis_proxy_shard_entries_total";
const REFRESHES: &str = "kinesis_proxy_shard_map_refreshes_total";

/// Entries the proxy counted per predicted shard.
async fn entries_per_shard(app: &TestApp) -> HashMap<String, f64> {
    let page = app.metrics_page().await;
    samples_by(
        &page,
        SHARD_ENTRIES,
        &[("stream", app.stream.as_str())],
        "shard",
    )
    .into_iter()
    .collect()
}

async fn contradicted(app: &TestApp) -> f64 {
    let page = app.metrics_page().await;
    sample(&page, CONTRADICTED, &[("stream", app.stream.as_str())]).unwrap_or(0.0)
}

/// The shard of `ranges` that holds `hash_key`.
fn owner(ranges: &[(String, u128, u128)], hash_key: u128) -> &str {
    ranges
        .iter()
        .find(|(_, start, end)| (*start..=*end).contains(&hash_key))
        .map(|(id, _, _)| id.as_str())
        .expect("the ranges cover every hash key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicted_shards_are_where_kinesis_puts_records() {
    let app = spawn_app_with(AppOptions {
        shards: 4,
        ..AppOptions::default()
    })
    .await;
    start_pipeline_and_wait_for_map(&app).await;
    let before = entries_per_shard(&app).await;
    let ranges = shard_hash_ranges(&app.emulator, &app.stream).await;
    assert_eq!(ranges.len(), 4);

    // Explicit hash keys on both edges of every range and in its middle, then partition keys.
    let mut records = Vec::new();
    let mut expected_shard = Vec::new();
    for (id, start, end) in &ranges {
        for key in [*start, start + (end - start) / 2, *end] {
            records.push(json!({"event": {"ehk": key.to_string()}, "partition_key": "edge", "explicit_hash_key": key.to_string()}));
            expected_shard.push(id.clone());
        }
    }
    for n in 0..300 {
        let key = format!("user-{n}");
        expected_shard.push(owner(&ranges, partition_key_hash(&key)).to_owned());
        records.push(json!({"event": {"n": n}, "partition_key": key}));
    }
    let response = app.post_records(&json!({"records": records})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0, "{answer}");
    let answered: Vec<&str> = answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["shard_id"].as_str().expect("shard_id"))
        .collect();
    assert_eq!(answered, expected_shard, "Kinesis' shards vs ours");

    // The pipeline sent each record as predicted: its per-shard counts are what each shard
    // holds, and Kinesis contradicted none of them.
    assert_eq!(contradicted(&app).await, 0.0);
    let after = entries_per_shard(&app).await;
    let mut stored_per_shard: HashMap<String, f64> = HashMap::new();
    for record in read_all(&app.emulator, &app.stream).await {
        if !String::from_utf8_lossy(&record.data).contains("warm_up") {
            *stored_per_shard.entry(record.shard_id).or_default() += 1.0;
        }
    }
    for (id, _, _) in &ranges {
        let counted =
            after.get(id).copied().unwrap_or(0.0) - before.get(id).copied().unwrap_or(0.0);
        let stored = stored_per_shard.get(id).copied().unwrap_or(0.0);
        assert_eq!(
            counted, stored,
            "entries sent to {id} vs records stored there"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resharded_while_events_flow_loses_nothing_and_is_predicted_again() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            shards: 2,
            // Only a misprediction can make the proxy notice the reshard in this test.
            customize: Box::new(|s| s.shards.map_refresh_ms = 600_000),
            ..AppOptions::default()
        })
        .await,
    );
    start_pipeline_and_wait_for_map(&app).await;
    let ranges = shard_hash_ranges(&app.emulator, &app.stream).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (app, stop) = (app.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("c{client}-{n}");
                let response = app
                    .post_event(&json!({"event": {"id": id}, "partition_key": id}))
                    .await;
                assert_eq!(
                    response.status(),
                    200,
                    "every event is written across a reshard"
                );
                let answer: Value = response.json().await.expect("json");
                let sequence = answer["sequence_number"].as_str().expect("seq").to_owned();
                acked.push((id, sequence));
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (shard, start, end) = ranges[0].clone();
    split_shard(&app.emulator, &app.stream, &shard, start, end).await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.expect("client"));
    }
    assert!(acked.len() > 100, "events flowed: {}", acked.len());

    // The map followed the reshard because Kinesis contradicted a prediction.
    let page = app.metrics_page().await;
    let stream = app.stream.as_str();
    let reloads = sample(
        &page,
        REFRESHES,
        &[("stream", stream), ("cause", "mispredicted")],
    );
    assert!(
        reloads.is_some_and(|n| n >= 1.0),
        "no reload on misprediction:\n{page}"
    );

    // Predicted right again: new records land where the new map says, none contradicted.
    let new_ranges = shard_hash_ranges(&app.emulator, &app.stream).await;
    let open: HashSet<&str> = new_ranges
        .iter()
        .filter(|(id, _, _)| *id != shard)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(
        open.len(),
        3,
        "two children and the other parent: {new_ranges:?}"
    );
    let contradicted_before = contradicted(&app).await;
    let records: Vec<Value> = (0..200)
        .map(|n| json!({"event": {"after": n}, "partition_key": format!("after-{n}")}))
        .collect();
    let response = app.post_records(&json!({"records": records})).await;
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0, "{answer}");
    for record in answer["records"].as_array().expect("records") {
        let id = record["shard_id"].as_str().expect("shard_id");
        assert!(open.contains(id), "written to {id}, not an open shard");
    }
    assert_eq!(contradicted(&app).await, contradicted_before);

    // Nothing acknowledged was lost, and each event is stored under the sequence number its
    // client was given.
    let stored: HashMap<String, String> = read_all(&app.emulator, &app.stream)
        .await
        .into_iter()
        .filter_map(|record| {
            let event: Value = serde_json::from_slice(&record.data).ok()?;
            Some((event["id"].as_str()?.to_owned(), record.sequence_number))
        })
        .collect();
    let missing: Vec<&(String, String)> = acked
        .iter()
        .filter(|(id, sequence)| stored.get(id) != Some(sequence))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing or under another sequence number, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

/// Partition keys `prefix-N` whose shard (under `ranges`) is not `avoid`, one per other shard.
fn keys_on_other_shards(ranges: &[(String, u128, u128)], avoid: &str) -> Vec<String> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for n in 0.. {
        let key = format!("calm-{n}");
        let shard = owner(ranges, partition_key_hash(&key)).to_owned();
        if shard != avoid && !keys.iter().any(|(_, s)| *s == shard) {
            keys.push((key, shard));
        }
        if keys.len() == ranges.len() - 1 {
            break;
        }
    }
    keys.into_iter().map(|(key, _)| key).collect()
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies[index]
}

/// One partition key sent far faster than its shard takes: its backlog is bounded (503
/// `hot_shard` beyond its share) while clients of the other shards are all served, without
/// waiting behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_is_bounded_and_does_not_hold_back_the_others() {
    let app = Arc::new(
        spawn_app_with(AppOptions {
            shards: 4,
            customize: Box::new(|s| {
                // Kinesis' limits scaled down, so a test can saturate one shard.
                s.shards.records_per_second = 50;
                s.batching.queue_max_records = 400;
                s.limits.max_records_per_request = 400;
                s.shards.max_backlog_share = 0.25;
            }),
            ..AppOptions::default()
        })
        .await,
    );
    start_pipeline_and_wait_for_map(&app).await;
    let ranges = shard_hash_ranges(&app.emulator, &app.stream).await;
    let hot_shard = owner(&ranges, partition_key_hash("hot")).to_owned();
    let calm_keys = keys_on_other_shards(&ranges, &hot_shard);

    let stop = Arc::new(AtomicBool::new(false));
    // The hot key: 8 senders of 20-event requests, as fast as they are answered.
    let mut hot_senders = Vec::new();
    for sender in 0..8 {
        let (app, stop, hot_shard) = (app.clone(), stop.clone(), hot_shard.clone());
        hot_senders.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut latencies) = (Vec::new(), 0u32, Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..20).map(|i| format!("hot-{sender}-{n}-{i}")).collect();
                n += 1;
                let records: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"event": {"id": id}, "partition_key": "hot"}))
                    .collect();
                let sent = Instant::now();
                let response = app.post_records(&json!({"records": records})).await;
                match response.status().as_u16() {
                    200 => {
                        latencies.push(sent.elapsed());
                        acked.extend(ids);
                    }
                    503 => {
                        assert!(response.headers().contains_key("retry-after"));
                        let body: Value = response.json().await.expect("json");
                        assert_eq!(body["code"], "hot_shard", "{body}");
                        assert!(body["error"]
                            .as_str()
                            .is_some_and(|e| e.contains(&hot_shard)));
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("hot key answered {other}"),
                }
            }
            (acked, refused, latencies)
        }));
    }
    // Clients of the other shards, one event every 20 ms each (well within their budget).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut calm_senders = Vec::new();
    for key in calm_keys {
        let (app, stop) = (app.clone(), stop.clone());
        calm_senders.push(tokio::spawn(async move {
            let (mut acked, mut latencies) = (Vec::new(), Vec::new());
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("{key}-{n}");
                let sent = Instant::now();
                let response = app
                    .post_event(&json!({"event": {"id": id}, "partition_key": key}))
                    .await;
                assert_eq!(response.status(), 200, "a calm shard's client was refused");
                latencies.push(sent.elapsed());
                acked.push(id);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut acked, mut refused, mut hot_latencies) = (Vec::new(), 0, Vec::new());
    for sender in hot_senders {
        let (a, r, l) = sender.await.expect("hot sender");
        acked.extend(a);
        refused += r;
        hot_latencies.extend(l);
    }
    let mut calm_latencies = Vec::new();
    for sender in calm_senders {
        let (a, l) = sender.await.expect("calm sender");
        acked.extend(a);
        calm_latencies.extend(l);
    }
    assert!(refused > 0, "the hot shard was never bounded");
    assert!(
        calm_latencies.len() > 50,
        "calm clients sent {}",
        calm_latencies.len()
    );
    // Ratios within this run, not absolute times: the hot key's requests wait for their
    // shard's budget (seconds), the others must not wait behind them.
    let hot_median = percentile(&mut hot_latencies, 0.5);
    let calm_p99 = percentile(&mut calm_latencies, 0.99);
    assert!(
        calm_p99 * 4 < hot_median,
        "calm p99 {calm_p99:?} vs hot median {hot_median:?}"
    );

    // Every acknowledged event is in the stream.
    let stored: HashSet<String> = read_all(&app.emulator, &app.stream)
        .await
        .into_iter()
        .filter_map(|record| {
            let event: Value = serde_json::from_slice(&record.data).ok()?;
            Some(event["id"].as_str()?.to_owned())
        })
        .collect();
    let missing = acked.iter().filter(|id| !stored.contains(*id)).count();
    assert_eq!(missing, 0, "of {} acknowledged", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_own_shard_limits_replace_the_defaults() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| {
            s.shards.stream_limits = vec!["nope:7:2048".into(), "it-*:123:65536".into()];
        }),
        ..AppOptions::default()
    })
    .await;
    start_pipeline_and_wait_for_map(&app).await;
    // The per-shard rate gauges are set about once a second.
    let started = Instant::now();
    loop {
        let page = app.metrics_page().await;
        let rates = samples_by(
            &page,
            "kinesis_proxy_shard_rate_records_per_second",
            &[("stream", app.stream.as_str())],
            "shard",
        );
        if rates.len() == 2 {
            assert!(rates.iter().all(|(_, rate)| *rate == 123.0), "{rates:?}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no rates after 10 s: {rates:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_list_shards_permission_the_stream_is_sent_shard_blind() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    faults.refuse_operation("ListShards", Some("AccessDeniedException"));
    let app = spawn_app_with(AppOptions {
        kinesis_endpoint: Some(faults.endpoint.clone()),
        ..AppOptions::default()
    })
    .await;
    let records: Vec<Value> = (0..50)
        .map(|n| json!({"event": {"n": n}, "partition_key": format!("k{n}")}))
        .collect();
    let response = app.post_records(&json!({"records": records})).await;
    assert_eq!(response.status(), 200, "no failure for want of a shard map");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0, "{answer}");
    for n in 0..5 {
        let response = app.post_event(&json!({"event": {"single": n}})).await;
        assert_eq!(response.status(), 200);
    }

    let page = app.metrics_page().await;
    let stream = app.stream.as_str();
    assert!(
        sample(&page, REFRESHES, &[("stream", stream), ("cause", "failed")]).unwrap_or(0.0) >= 1.0,
        "the failed ListShards is counted:\n{page}"
    );
    assert_eq!(
        sample(&page, MAP_AVAILABLE, &[("stream", stream)]),
        None,
        "no map"
    );
    assert_eq!(read_all(&emulator, &app.stream).await.len(), 55);
}
