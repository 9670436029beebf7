//! KPL aggregation end to end: events posted to a stream in `streams.aggregate` are packed per
//! shard into aggregated records in kinesalite, and a real consumer library (AWS Labs'
//! `aws-kinesis-agg`, not our decoder) gets every acknowledged event back, byte for byte, with
//! its partition key, explicit hash key and the sub-sequence number its client was told, each
//! inside the hash range of the shard that holds it. Also across a reshard.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kinesis_proxy::kinesis::shard_map::partition_key_hash;
use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp};
use crate::helpers::deaggregate::{deaggregate_with_kcl_library, DeaggregatedRecord};
use crate::helpers::emulator::{read_all, shard_hash_ranges, split_shard};
use crate::helpers::metrics_page::{sample, start_pipeline_and_wait_for_map};

/// Where a client was told its event went.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ack {
    shard_id: String,
    sequence_number: String,
    sub_sequence_number: Option<u64>,
}

impl Ack {
    fn from_answer(answer: &Value) -> Self {
        Self {
            shard_id: answer["shard_id"].as_str().expect("shard_id").to_owned(),
            sequence_number: answer["sequence_number"]
                .as_str()
                .expect("sequence_number")
                .to_owned(),
            sub_sequence_number: answer["sub_sequence_number"].as_u64(),
        }
    }

    fn of(record: &DeaggregatedRecord) -> Self {
        Self {
            shard_id: record.shard_id.clone(),
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: record.sub_sequence_number,
        }
    }
}

/// An event as sent: its compact JSON, partition key and explicit hash key.
#[derive(Debug, Clone)]
struct Sent {
    data: Vec<u8>,
    partition_key: String,
    explicit_hash_key: Option<String>,
}

async fn aggregating_app(shards: i32) -> TestApp {
    spawn_app_with(AppOptions {
        shards,
        customize: Box::new(|s| {
            s.streams.aggregate = vec!["it-*".into()];
            // Only a misprediction makes the proxy notice a reshard here.
            s.shards.map_refresh_ms = 600_000;
        }),
        ..AppOptions::default()
    })
    .await
}

/// The stream's user records through the consumer library, each with a check that its hash
/// key is inside the range of the shard holding it (what the KCL checks before handing it
/// out).
async fn consumer_view(app: &TestApp) -> Vec<(DeaggregatedRecord, bool)> {
    let ranges: HashMap<String, (u128, u128)> = shard_hash_ranges(&app.emulator, &app.stream)
        .await
        .into_iter()
        .map(|(id, start, end)| (id, (start, end)))
        .collect();
    let stored = read_all(&app.emulator, &app.stream).await;
    let users = deaggregate_with_kcl_library(&stored).expect("the consumer library reads it");
    users
        .into_iter()
        .map(|user| {
            let hash = match &user.explicit_hash_key {
                Some(key) => key.parse::<u128>().expect("explicit hash key"),
                None => partition_key_hash(&user.partition_key),
            };
            let (start, end) = ranges[&user.shard_id];
            // A Kinesis record of its own is where Kinesis put it (and GetRecords does not
            // return its explicit hash key): only user records of aggregates are checked.
            let inside = user.sub_sequence_number.is_none() || (start..=end).contains(&hash);
            (user, inside)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_events_are_packed_per_shard_and_a_kcl_library_gets_each_back_as_acknowledged() {
    let app = Arc::new(aggregating_app(4).await);
    start_pipeline_and_wait_for_map(&app).await;

    // One records request with keys of every kind, and single events sent concurrently.
    let mut records = Vec::new();
    let mut sent = Vec::new();
    for n in 0..300 {
        let event = json!({"n": n, "text": "ü€ small event"});
        // A block with explicit hash keys at the top of the range (one aggregate: records
        // with and without explicit hash keys never share one), then partition keys.
        let (partition_key, explicit_hash_key) = match n {
            n if n < 30 => ("edge".to_owned(), Some((u128::MAX - n as u128).to_string())),
            n if n % 10 == 1 => ("same-key".to_owned(), None),
            n => (format!("user-{n}"), None),
        };
        let mut record = json!({"event": event, "partition_key": partition_key});
        if let Some(key) = &explicit_hash_key {
            record["explicit_hash_key"] = json!(key);
        }
        records.push(record);
        sent.push(Sent {
            data: serde_json::to_vec(&event).expect("json"),
            partition_key,
            explicit_hash_key,
        });
    }
    let response = app.post_records(&json!({"records": records})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0, "{answer}");
    let mut acked: Vec<(Ack, Sent)> = answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(Ack::from_answer)
        .zip(sent)
        .collect();

    let mut singles = Vec::new();
    for client in 0..64 {
        let app = app.clone();
        singles.push(tokio::spawn(async move {
            let event = json!({"single": client});
            let key = format!("client-{client}");
            let response = app
                .post_event(&json!({"event": event, "partition_key": key}))
                .await;
            assert_eq!(response.status(), 200);
            let answer: Value = response.json().await.expect("json");
            (
                Ack::from_answer(&answer),
                Sent {
                    data: serde_json::to_vec(&event).expect("json"),
                    partition_key: key,
                    explicit_hash_key: None,
                },
            )
        }));
    }
    for single in singles {
        acked.push(single.await.expect("client"));
    }

    let view = consumer_view(&app).await;
    let outside: Vec<_> = view.iter().filter(|(_, inside)| !inside).collect();
    assert!(
        outside.is_empty(),
        "records outside their shard: {outside:?}"
    );
    let by_ack: HashMap<Ack, &DeaggregatedRecord> =
        view.iter().map(|(user, _)| (Ack::of(user), user)).collect();
    for (ack, sent) in &acked {
        let user = by_ack
            .get(ack)
            .unwrap_or_else(|| panic!("acknowledged {ack:?} not found by the consumer library"));
        assert_eq!(user.data, sent.data, "{ack:?}");
        assert_eq!(user.partition_key, sent.partition_key, "{ack:?}");
        if ack.sub_sequence_number.is_some() {
            assert_eq!(user.explicit_hash_key, sent.explicit_hash_key, "{ack:?}");
        }
    }
    let aggregated = acked
        .iter()
        .filter(|(ack, _)| ack.sub_sequence_number.is_some())
        .count();
    assert!(
        aggregated >= 300,
        "the records request was aggregated: {aggregated}"
    );

    // Far fewer Kinesis records than events, and the cost metrics say so.
    let stored = read_all(&app.emulator, &app.stream).await.len();
    assert!(
        stored * 5 <= acked.len() + 1,
        "{stored} Kinesis records for {} events",
        acked.len()
    );
    let page = app.metrics_page().await;
    let labels = [("stream", app.stream.as_str())];
    let written = sample(
        &page,
        "kinesis_proxy_kinesis_records_written_total",
        &labels,
    );
    assert_eq!(
        written,
        Some(stored as f64),
        "records written counts Kinesis records"
    );
    let units = sample(&page, "kinesis_proxy_put_payload_units_total", &labels).unwrap_or(0.0);
    assert!(
        units >= stored as f64 && units < 100.0,
        "{units} payload units"
    );
    assert!(sample(&page, "kinesis_proxy_aggregated_bytes_total", &labels).unwrap_or(0.0) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_while_aggregating_loses_nothing_a_kcl_reader_would_see() {
    let app = Arc::new(aggregating_app(2).await);
    start_pipeline_and_wait_for_map(&app).await;
    let ranges = shard_hash_ranges(&app.emulator, &app.stream).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..16 {
        let (app, stop) = (app.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let records: Vec<Value> = (0..5)
                    .map(|i| {
                        let id = format!("c{client}-{n}-{i}");
                        json!({"event": {"id": id}, "partition_key": id})
                    })
                    .collect();
                let response = app.post_records(&json!({"records": records})).await;
                assert_eq!(response.status(), 200, "written across a reshard");
                let answer: Value = response.json().await.expect("json");
                assert_eq!(answer["failed_record_count"], 0, "{answer}");
                for (i, record) in answer["records"]
                    .as_array()
                    .expect("records")
                    .iter()
                    .enumerate()
                {
                    acked.push((format!("c{client}-{n}-{i}"), Ack::from_answer(record)));
                }
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
    assert!(acked.len() > 500, "events flowed: {}", acked.len());

    // What a KCL consumer hands out: user records inside their shard's range. Each acknowledged
    // event is among them, where its client was told; an aggregate written by the stale map
    // may also hold records outside the child shard it reached, which the consumer drops and
    // the proxy sent again.
    let view = consumer_view(&app).await;
    let mut kcl_sees: HashMap<String, Vec<Ack>> = HashMap::new();
    for (user, _) in view.iter().filter(|(_, inside)| *inside) {
        let event: Value = serde_json::from_slice(&user.data).expect("json");
        if let Some(id) = event["id"].as_str() {
            kcl_sees
                .entry(id.to_owned())
                .or_default()
                .push(Ack::of(user));
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, ack)| !kcl_sees.get(id).is_some_and(|seen| seen.contains(ack)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events not seen by a KCL reader where acknowledged, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let dropped = view.iter().filter(|(_, inside)| !inside).count();
    eprintln!("resharding while aggregating: {dropped} user records outside their shard (re-sent)");
}
