//! Guard rails against the real proxy: rate limits answer 429 with Retry-After, a full queue
//! answers 503 at once instead of waiting, keys can come from a file, and under overload the
//! proxy keeps answering health checks while everything it acknowledged is in the stream, and a
//! stream's own record size limit (`MaxRecordSizeInKiB`) replaces the configured default.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, API_KEY};
use crate::helpers::emulator::{kinesalite, read_all};
use crate::helpers::fault_proxy::{FaultProxy, Mode};

#[tokio::test]
async fn per_key_rate_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| {
            s.rate_limits.key_events_per_second = 2;
            s.rate_limits.key_events_burst = 3;
        }),
        ..AppOptions::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = app.post_event(&json!({"event": {"i": i}})).await;
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!(retry_after >= 1);
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["code"], "rate_limited");
            assert!(
                body["error"].as_str().expect("message").contains("API key"),
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(
        &statuses[..3],
        &[200, 200, 200],
        "the burst passes: {statuses:?}"
    );
    assert!(
        statuses[3..].contains(&429),
        "then the limit bites: {statuses:?}"
    );
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(read_all(&app.emulator, &app.stream).await.len(), accepted);
}

#[tokio::test]
async fn per_stream_byte_limit_counts_every_record_of_a_request() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| {
            s.rate_limits.stream_bytes_per_second = 1_000;
            s.rate_limits.stream_bytes_burst = 1_000;
        }),
        ..AppOptions::default()
    })
    .await;
    let records: Vec<Value> = (0..8)
        .map(|i| json!({"event": "x".repeat(100), "partition_key": format!("k{i}")}))
        .collect();
    assert_eq!(
        app.post_records(&json!({ "records": records }))
            .await
            .status(),
        200,
        "~850 bytes fit"
    );
    let response = app.post_records(&json!({ "records": records })).await;
    assert_eq!(response.status(), 429, "the next 850 bytes do not");
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("message").contains("stream"),
        "{body}"
    );
}

#[tokio::test]
async fn keys_can_come_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keys");
    std::fs::write(
        &path,
        "# rotated monthly\nfile-client:key-from-a-file-0123456789\n",
    )
    .expect("write");
    let path_text = path.display().to_string();
    let app = spawn_app_with(AppOptions {
        customize: Box::new(move |s| s.auth.keys_file = path_text),
        ..AppOptions::default()
    })
    .await;
    let url = app.url(&format!("/kinesis/stream/{}", app.stream));
    let with_file_key = app
        .client
        .post(&url)
        .header("x-api-key", "key-from-a-file-0123456789")
        .json(&json!({"event": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(with_file_key.status(), 200);
    let with_inline_key = app
        .client
        .post(&url)
        .header("x-api-key", API_KEY)
        .json(&json!({"event": 2}))
        .send()
        .await
        .expect("sent");
    assert_eq!(with_inline_key.status(), 200, "inline keys still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_with_503_fast_keeps_health_and_loses_nothing() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            customize: Box::new(|s| {
                s.batching.queue_max_records = 40;
                s.batching.max_in_flight_calls = 1;
                s.batching.max_batch_records = 10;
                s.limits.max_records_per_request = 10;
                // This test is about the stream's queue; with the default share, one of the two
                // shards would reach its half first and answer `hot_shard` (tests/api/shards.rs).
                s.shards.max_backlog_share = 1.0;
            }),
            ..AppOptions::default()
        })
        .await,
    );
    // A slow Kinesis: each call takes 200 ms, so at most ~50 records/s get through.
    faults.set_mode(Mode::Delay(Duration::from_millis(200)));

    let mut clients = Vec::new();
    for client in 0..64 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut shed = 0;
            let mut slowest_refusal = Duration::ZERO;
            for n in 0..5 {
                let id = format!("c{client}-{n}");
                let started = Instant::now();
                let response = app.post_event(&json!({"event": {"id": id}})).await;
                match response.status().as_u16() {
                    200 => {
                        let answer: Value = response.json().await.expect("json");
                        acked.push((
                            id,
                            answer["sequence_number"].as_str().expect("seq").to_owned(),
                        ));
                    }
                    503 => {
                        slowest_refusal = slowest_refusal.max(started.elapsed());
                        assert!(response.headers().contains_key("retry-after"));
                        let body: Value = response.json().await.expect("json");
                        assert_eq!(body["code"], "queue_full");
                        shed += 1;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            (acked, shed, slowest_refusal)
        }));
    }
    // Health checks are answered while the queue is full.
    let health_started = Instant::now();
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    assert!(health_started.elapsed() < Duration::from_secs(2));

    let (mut acked, mut shed, mut slowest_refusal) = (Vec::new(), 0, Duration::ZERO);
    for client in clients {
        let (a, s, r) = client.await.expect("client");
        acked.extend(a);
        shed += s;
        slowest_refusal = slowest_refusal.max(r);
    }
    assert!(shed > 0, "the proxy shed load");
    assert!(!acked.is_empty(), "and still served some");
    // Refusals never wait for the queue to drain (that would take the 30 s record deadline);
    // how fast they are is measured in the load benchmark, not asserted here.
    assert!(
        slowest_refusal < Duration::from_secs(5),
        "503 took {slowest_refusal:?}"
    );

    faults.set_mode(Mode::Healthy);
    let stored: std::collections::HashMap<String, Value> = read_all(&emulator, &app.stream)
        .await
        .into_iter()
        .map(|r| {
            (
                r.sequence_number,
                serde_json::from_slice(&r.data).expect("json"),
            )
        })
        .collect();
    for (id, sequence) in &acked {
        assert_eq!(
            stored.get(sequence).map(|d| d["id"].clone()),
            Some(Value::from(id.as_str())),
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_streams_own_record_size_limit_replaces_the_configured_default() {
    const DEFAULT_LIMIT: usize = 512 * 1024;
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    // The stream says it takes 2 MiB records (Kinesis allows up to 10 MiB per stream).
    faults.report_max_record_size_kib(2048);
    let app = spawn_app_with(AppOptions {
        kinesis_endpoint: Some(faults.endpoint.clone()),
        customize: Box::new(|s| s.kinesis.default_max_record_bytes = DEFAULT_LIMIT),
        ..AppOptions::default()
    })
    .await;
    // Above the configured default, below the stream's limit and kinesalite's own 1 MiB cap.
    let pad = "x".repeat(700 * 1024);
    let event = json!({"event": {"tag": "big", "pad": pad}});

    // The first request starts the stream's pipeline, which asks DescribeStreamSummary once;
    // until the answer is in, the configured default holds.
    let mut refused_first = 0;
    let mut accepted: Option<Value> = None;
    for _ in 0..50 {
        let response = app.post_event(&event).await;
        match response.status().as_u16() {
            200 => {
                accepted = Some(response.json().await.expect("json"));
                break;
            }
            413 => {
                let body: Value = response.json().await.expect("json");
                assert_eq!(body["code"], "record_too_large", "{body}");
                assert!(
                    body["error"]
                        .as_str()
                        .is_some_and(|m| m.contains(&DEFAULT_LIMIT.to_string())),
                    "the refusal names the default limit: {body}"
                );
                refused_first += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let accepted =
        accepted.expect("the 700 KiB event was accepted once the stream's limit was known");
    assert!(refused_first < 50);

    // Above the stream's own limit: refused alone, naming that limit.
    let too_big = json!({"event": {"pad": "y".repeat(2 * 1024 * 1024)}});
    let response = app.post_event(&too_big).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "record_too_large", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("2097152")),
        "the refusal names the stream's limit: {body}"
    );

    let stored = read_all(&emulator, &app.stream).await;
    assert_eq!(stored.len(), 1, "only the accepted event is in the stream");
    assert_eq!(stored[0].sequence_number, accepted["sequence_number"]);
    let data: Value = serde_json::from_slice(&stored[0].data).expect("stored JSON");
    assert_eq!(data["tag"], "big");
    assert_eq!(data["pad"].as_str().map(str::len), Some(700 * 1024));
}
