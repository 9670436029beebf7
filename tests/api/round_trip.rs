//! Events go through the real proxy into kinesalite and are read back: the stored data is the
//! event's compact JSON, and the shard and sequence number answered are where it really is.

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app, spawn_app_with, AppOptions, API_KEY};
use crate::helpers::emulator::{read_all, shard_hash_ranges, StoredRecord};

fn find<'a>(stored: &'a [StoredRecord], sequence_number: &str) -> &'a StoredRecord {
    stored
        .iter()
        .find(|r| r.sequence_number == sequence_number)
        .unwrap_or_else(|| panic!("sequence number {sequence_number} is not in the stream"))
}

#[tokio::test]
async fn single_event_round_trips_byte_for_byte() {
    let app = spawn_app().await;
    // Whitespace, key order, a big integer and a decimal with a trailing zero: all must survive
    // exactly, minus insignificant whitespace.
    let body = r#"{ "partition_key": "user-1", "event": { "z": 1, "a": [1.50, {"x": null}], "big": 123456789012345678901234567890, "s": "a \" b" } }"#;
    let response = app
        .post_raw(
            &format!("/kinesis/stream/{}", app.stream),
            "application/json",
            body,
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let shard_id = answer["shard_id"].as_str().expect("shard_id");
    let sequence_number = answer["sequence_number"].as_str().expect("sequence_number");

    let stored = read_all(&app.emulator, &app.stream).await;
    assert_eq!(stored.len(), 1);
    let record = find(&stored, sequence_number);
    assert_eq!(record.shard_id, shard_id);
    assert_eq!(record.partition_key, "user-1");
    assert_eq!(
        String::from_utf8_lossy(&record.data),
        r#"{"z":1,"a":[1.50,{"x":null}],"big":123456789012345678901234567890,"s":"a \" b"}"#
    );
}

#[tokio::test]
async fn original_short_route_works() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url(&format!("/kinesis/{}", app.stream)))
        .header("x-api-key", API_KEY)
        .json(&json!({"event": {"hello": "world"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    let stored = read_all(&app.emulator, &app.stream).await;
    let record = find(&stored, answer["sequence_number"].as_str().expect("seq"));
    assert_eq!(record.data, br#"{"hello":"world"}"#);
}

#[tokio::test]
async fn many_records_route_answers_in_request_order() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..25).map(|i| json!({"i": i, "kind": "many"})).collect();
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"event": e, "partition_key": format!("key-{}", i % 3)}))
        .collect();
    let response = app.post_records(&json!({ "records": records })).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0);
    let results = answer["records"].as_array().expect("records");
    assert_eq!(results.len(), 25);
    let stored = read_all(&app.emulator, &app.stream).await;
    assert_eq!(stored.len(), 25);
    for (i, result) in results.iter().enumerate() {
        let record = find(&stored, result["sequence_number"].as_str().expect("seq"));
        assert_eq!(record.shard_id, result["shard_id"].as_str().expect("shard"));
        let data: Value = serde_json::from_slice(&record.data).expect("stored JSON");
        assert_eq!(data, events[i], "result {i} belongs to event {i}");
        assert_eq!(record.partition_key, format!("key-{}", i % 3));
    }
}

#[tokio::test]
async fn ndjson_body_is_accepted_on_the_records_route() {
    let app = spawn_app().await;
    let body =
        "{\"event\": {\"line\": 1}}\n\n{\"event\": {\"line\": 2}, \"partition_key\": \"p\"}\n";
    let path = format!("/kinesis/stream/{}/records", app.stream);
    let response = app.post_raw(&path, "application/x-ndjson", body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["failed_record_count"], 0);
    let stored = read_all(&app.emulator, &app.stream).await;
    let results = answer["records"].as_array().expect("records");
    assert_eq!(
        find(
            &stored,
            results[0]["sequence_number"].as_str().expect("seq")
        )
        .data,
        br#"{"line":1}"#
    );
    assert_eq!(
        find(
            &stored,
            results[1]["sequence_number"].as_str().expect("seq")
        )
        .data,
        br#"{"line":2}"#
    );
}

#[tokio::test]
async fn same_key_same_shard_and_missing_keys_spread() {
    let app = spawn_app_with(AppOptions {
        shards: 4,
        ..AppOptions::default()
    })
    .await;
    let mut keyed_shards = std::collections::HashSet::new();
    for i in 0..20 {
        let response = app
            .post_event(&json!({"event": {"i": i}, "partition_key": "always-the-same"}))
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        keyed_shards.insert(answer["shard_id"].as_str().expect("shard").to_owned());
    }
    assert_eq!(
        keyed_shards.len(),
        1,
        "one key, one shard: {keyed_shards:?}"
    );

    let records: Vec<Value> = (0..200).map(|i| json!({"event": {"unkeyed": i}})).collect();
    let answer: Value = app
        .post_records(&json!({ "records": records }))
        .await
        .json()
        .await
        .expect("json");
    let spread: std::collections::HashSet<&str> = answer["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["shard_id"].as_str().expect("shard"))
        .collect();
    // 200 random keys over 4 equal shards: all four are hit except with negligible probability.
    assert_eq!(
        spread.len(),
        4,
        "random keys spread over all shards: {spread:?}"
    );
}

#[tokio::test]
async fn explicit_hash_key_picks_the_shard() {
    let app = spawn_app_with(AppOptions {
        shards: 4,
        ..AppOptions::default()
    })
    .await;
    let ranges = shard_hash_ranges(&app.emulator, &app.stream).await;
    for (shard_id, start, end) in &ranges {
        let middle = start + (end - start) / 2;
        let response = app
            .post_event(
                &json!({"event": 1, "partition_key": "k", "explicit_hash_key": middle.to_string()}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.expect("json");
        assert_eq!(answer["shard_id"], shard_id.as_str(), "hash key {middle}");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    assert!(
        app.readiness_becomes(200, 50).await,
        "/readyz turns 200 once kinesalite answers"
    );
    assert_eq!(app.post_event(&json!({"event": 1})).await.status(), 200);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("kinesis_proxy_records_accepted_total"),
        "{text}"
    );
    assert!(
        text.contains("kinesis_proxy_put_records_calls_total"),
        "{text}"
    );
}

#[tokio::test]
async fn ack_on_enqueue_answers_202_and_still_delivers() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| s.streams.ack_on_enqueue = vec!["it-*".into()]),
        ..AppOptions::default()
    })
    .await;
    let response = app.post_event(&json!({"event": {"fast": true}})).await;
    assert_eq!(response.status(), 202);
    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = read_all(&app.emulator, &app.stream).await;
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].data, br#"{"fast":true}"#);
}
