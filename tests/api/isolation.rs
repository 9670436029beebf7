//! One client's bad record never fails another's. Kinesis refuses a whole `PutRecords` call
//! when one record in it is invalid (ValidationException); the fault layer does the same to
//! every call holding a marked event, under load from other clients, on each acknowledgement
//! level: only the marked events fail, every other acknowledged event is read back from the
//! stream, and on a disk stream only the marked ones go to `failed.ndjson`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp};
use crate::helpers::emulator::{kinesalite, read_all};
use crate::helpers::fault_proxy::FaultProxy;
use crate::helpers::metrics_page::sample;

/// What the fault layer looks for in a record's data to refuse its whole call.
const MARKER: &str = "refuse-my-whole-call";
const CLIENTS: usize = 16;
const EVENTS_PER_CLIENT: usize = 60;
const MARKED: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ack {
    Kinesis,
    Disk,
    Memory,
}

/// The answers of one run: per event id, the status and the error code if any.
type Answers = Vec<(String, u16, Option<String>)>;

async fn isolation_app(faults: &FaultProxy, ack: Ack, spool: Option<PathBuf>) -> TestApp {
    spawn_app_with(AppOptions {
        kinesis_endpoint: Some(faults.endpoint.clone()),
        customize: Box::new(move |s| {
            match ack {
                Ack::Kinesis => {}
                Ack::Disk => s.streams.ack_on_disk = vec!["it-*".into()],
                Ack::Memory => s.streams.ack_on_enqueue = vec!["it-*".into()],
            }
            if let Some(dir) = spool {
                s.spool.dir = dir.to_string_lossy().into_owned();
            }
        }),
        ..AppOptions::default()
    })
    .await
}

async fn post(app: &TestApp, body: Value) -> (u16, Option<String>) {
    let response = app.post_event(&body).await;
    let status = response.status().as_u16();
    let code = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned));
    (status, code)
}

/// `CLIENTS` clients each post `EVENTS_PER_CLIENT` events while another posts `MARKED` marked
/// ones among them; returns every answer.
async fn load_with_marked_events(app: &TestApp) -> Answers {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let app_address = app.address.clone();
        let stream = app.stream.clone();
        let http = app.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in 0..EVENTS_PER_CLIENT {
                let id = format!("good-{client}-{n}");
                let response = http
                    .post(format!("{app_address}/kinesis/stream/{stream}"))
                    .header("x-api-key", crate::helpers::app::API_KEY)
                    .json(&json!({"event": {"id": id, "pad": "x".repeat(64)}}))
                    .send()
                    .await
                    .expect("request sent");
                let status = response.status().as_u16();
                let code = response
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned));
                answers.push((id, status, code));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for n in 0..MARKED {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let id = format!("marked-{n}");
        let (status, code) = post(app, json!({"event": {"id": id, "tag": MARKER}})).await;
        answers.push((id, status, code));
    }
    for task in tasks {
        answers.extend(task.await.expect("client task"));
    }
    answers
}

/// The ids read back from the stream, once at least `count` arrived (or after 15 s).
async fn stored_ids(app: &TestApp, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..150 {
        ids = read_all(&app.emulator, &app.stream)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.data).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ids
}

/// Waits until the stream's `reason="invalid"` failures reach `count`; returns the page.
async fn wait_for_invalid_failures(app: &TestApp, count: f64) -> String {
    let labels = [("stream", app.stream.as_str()), ("reason", "invalid")];
    let mut page = app.metrics_page().await;
    for _ in 0..100 {
        if sample(&page, "kinesis_proxy_records_failed_total", &labels) == Some(count) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = app.metrics_page().await;
    }
    page
}

async fn only_the_marked_events_fail(ack: Ack) {
    let faults = FaultProxy::start(&kinesalite().await.endpoint);
    faults.refuse_calls_containing(MARKER);
    let spool = tempfile::tempdir().expect("spool dir");
    let app = isolation_app(&faults, ack, Some(spool.path().to_path_buf())).await;

    let answers = load_with_marked_events(&app).await;
    let accepted = if ack == Ack::Kinesis { 200 } else { 202 };
    let mut good = BTreeSet::new();
    for (id, status, code) in &answers {
        if id.starts_with("marked-") {
            if ack == Ack::Kinesis {
                assert_eq!(
                    (*status, code.as_deref()),
                    (400, Some("record_invalid_for_kinesis")),
                    "{id}"
                );
            } else {
                assert_eq!(
                    *status, accepted,
                    "{id} is acknowledged before Kinesis sees it"
                );
            }
        } else {
            assert_eq!(
                (*status, code.as_deref()),
                (accepted, None),
                "{id}: another client's event must not fail with the marked ones"
            );
            good.insert(id.clone());
        }
    }
    assert_eq!(good.len(), CLIENTS * EVENTS_PER_CLIENT);

    let page = wait_for_invalid_failures(&app, MARKED as f64).await;
    let stored = stored_ids(&app, good.len()).await;
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(
        stored_set, good,
        "every acknowledged event is in the stream, and no marked one"
    );
    assert_eq!(stored.len(), good.len(), "no event written twice");

    let labels = [("stream", app.stream.as_str()), ("reason", "invalid")];
    assert_eq!(
        sample(&page, "kinesis_proxy_records_failed_total", &labels),
        Some(MARKED as f64),
        "{page}"
    );
    let split = sample(
        &page,
        "kinesis_proxy_refused_calls_split_total",
        &[("stream", app.stream.as_str())],
    )
    .unwrap_or(0.0);
    assert!(split >= 1.0, "refused calls were split: {page}");
    let stats = faults.stats();
    assert!(
        stats.entries_in_refused_calls > stats.calls_refused_as_invalid,
        "some refused call held other clients' records too (else this tests nothing): {stats:?}"
    );

    if ack == Ack::Disk {
        let failed = failed_lines(&spool.path().join("failed.ndjson"), MARKED).await;
        let mut ids: Vec<&str> = failed
            .iter()
            .filter_map(|l| l["event"]["id"].as_str())
            .collect();
        ids.sort_unstable();
        let expected: Vec<String> = (0..MARKED).map(|n| format!("marked-{n}")).collect();
        assert_eq!(ids, expected, "only the marked events in failed.ndjson");
        assert!(failed
            .iter()
            .all(|l| l["error_code"] == "ValidationException"));
    }
}

/// The lines of `failed.ndjson`, once it holds `count` (or after 10 s).
async fn failed_lines(path: &std::path::Path, count: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path) {
            lines = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.len() >= count {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lines
}

#[tokio::test]
async fn a_call_refused_as_invalid_fails_only_the_marked_events_with_kinesis_acknowledgement() {
    only_the_marked_events_fail(Ack::Kinesis).await;
}

#[tokio::test]
async fn a_call_refused_as_invalid_fails_only_the_marked_events_on_a_disk_stream() {
    only_the_marked_events_fail(Ack::Disk).await;
}

#[tokio::test]
async fn a_call_refused_as_invalid_fails_only_the_marked_events_acknowledged_in_memory() {
    only_the_marked_events_fail(Ack::Memory).await;
}

/// The reproduction, against kinesalite itself (no fault layer): a key of 129 emoji
/// is 258 UTF-16 code units, over Kinesis' 256. It is refused at the door with 400, and other
/// clients' events on a disk stream sent with it all reach the stream.
#[tokio::test]
async fn a_partition_key_over_256_utf16_units_is_refused_at_the_door_and_poisons_nothing() {
    let spool = tempfile::tempdir().expect("spool dir");
    let dir = spool.path().to_string_lossy().into_owned();
    let app = spawn_app_with(AppOptions {
        customize: Box::new(move |s| {
            s.streams.ack_on_disk = vec!["it-*".into()];
            s.spool.dir = dir;
        }),
        ..AppOptions::default()
    })
    .await;
    let poisoned_key = "😀".repeat(129);
    let mut good = BTreeSet::new();
    for n in 0..40 {
        let id = format!("good-{n}");
        let (status, _) = post(&app, json!({"event": {"id": id}})).await;
        assert_eq!(status, 202);
        good.insert(id);
        if n % 8 == 0 {
            let (status, code) = post(
                &app,
                json!({"event": {"id": format!("bad-{n}")}, "partition_key": poisoned_key}),
            )
            .await;
            assert_eq!(
                (status, code.as_deref()),
                (400, Some("invalid_partition_key"))
            );
        }
    }
    let stored: BTreeSet<String> = stored_ids(&app, good.len()).await.into_iter().collect();
    assert_eq!(stored, good);
    assert!(!spool.path().join("failed.ndjson").exists());
}
