//! Streams acknowledged on disk (`streams.ack_on_disk`), in-process: answered 202 once the
//! spool's fsync covers the event, delivered from the spool, and what Kinesis refuses for good
//! kept in `failed.ndjson`. Crashes, restarts and outages with the real binary are in `spool`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp};
use crate::helpers::emulator::{kinesalite, read_all};
use crate::helpers::fault_proxy::FaultProxy;
use crate::helpers::metrics_page::sample;

/// An app whose `it-*` streams acknowledge on disk, spooling in `dir`.
async fn disk_app(dir: &Path, kinesis_endpoint: Option<String>) -> TestApp {
    let dir = dir.to_string_lossy().into_owned();
    spawn_app_with(AppOptions {
        kinesis_endpoint,
        customize: Box::new(move |s| {
            s.streams.ack_on_disk = vec!["it-*".into()];
            s.spool.dir = dir;
        }),
        ..AppOptions::default()
    })
    .await
}

/// The stream's records' data, sorted, once at least `count` arrived (or after 10 s).
async fn stored_data(app: &TestApp, count: usize) -> Vec<String> {
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = read_all(&app.emulator, &app.stream).await;
        if stored.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut data: Vec<_> = stored
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    data.sort();
    data
}

#[tokio::test]
async fn ack_on_disk_answers_202_once_spooled_and_delivers_from_the_spool() {
    let spool_dir = tempfile::tempdir().expect("spool dir");
    let app = disk_app(spool_dir.path(), None).await;
    let response = app.post_event(&json!({"event": {"durable": 1}})).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"queued": 1})
    );
    let records: Vec<_> = (2..=4).map(|n| json!({"event": {"durable": n}})).collect();
    let response = app.post_records(&json!({ "records": records })).await;
    assert_eq!(response.status(), 202);
    let data = stored_data(&app, 4).await;
    assert_eq!(
        data,
        (1..=4)
            .map(|n| format!(r#"{{"durable":{n}}}"#))
            .collect::<Vec<_>>()
    );
    // The spool's files are where it was told, and its delivery is counted.
    assert!(std::fs::read_dir(spool_dir.path())
        .expect("spool dir")
        .any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".seg")));
    let page = app.metrics_page().await;
    assert!(
        page.contains("kinesis_proxy_spool_delivered_records_total"),
        "{page}"
    );
}

#[tokio::test]
async fn records_kinesis_refuses_for_good_leave_the_spool_into_failed_ndjson() {
    let faults = FaultProxy::start(&kinesalite().await.endpoint);
    faults.always_fail_matching("refuse-me", "KMSAccessDeniedException");
    let spool_dir = tempfile::tempdir().expect("spool dir");
    let app = disk_app(spool_dir.path(), Some(faults.endpoint.clone())).await;
    let records = json!({"records": [
        {"event": {"n": 1}},
        {"event": {"n": 2, "tag": "refuse-me"}, "partition_key": "user-2"},
        {"event": {"n": 3}},
    ]});
    assert_eq!(app.post_records(&records).await.status(), 202);
    assert_eq!(stored_data(&app, 2).await, [r#"{"n":1}"#, r#"{"n":3}"#]);

    let failed_file = spool_dir.path().join("failed.ndjson");
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&failed_file) {
            lines = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("JSON line"))
                .collect();
            if !lines.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], json!({"n": 2, "tag": "refuse-me"}));
    assert_eq!(lines[0]["partition_key"], "user-2");
    assert_eq!(lines[0]["stream"], app.stream.as_str());
    assert_eq!(lines[0]["error_code"], "KMSAccessDeniedException");
    // The file is fsynced before the refusal is counted: wait for the count.
    let labels = [("stream", app.stream.as_str())];
    let counts = |page: &str| {
        (
            sample(page, "kinesis_proxy_spool_failed_records_total", &labels),
            sample(page, "kinesis_proxy_spool_delivered_records_total", &labels),
        )
    };
    let mut page = app.metrics_page().await;
    for _ in 0..50 {
        if counts(&page) == (Some(1.0), Some(2.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = app.metrics_page().await;
    }
    assert_eq!(counts(&page), (Some(1.0), Some(2.0)), "{page}");
}
