//! Event contracts at the edge (issue 22, parts 1 and 2): a JSON Schema per stream
//! (`streams.schemas`) refuses bad events with the pointer and keyword that failed, per record
//! on the records route; broken schemas and remote `$ref`s stop the start (exit 78, the file
//! named) and a SIGHUP recompiles them all or nothing. The envelope (`streams.envelope`) wraps
//! the event byte for byte with `meta`, whose `client_ip` believes `X-Forwarded-For` only from
//! `server.trusted_proxies`, and counts toward the record size limit.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp, API_KEY};
use crate::helpers::binary::{proxy_command, signal, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};
use crate::helpers::metrics_page::sample;
use crate::helpers::spool::run_to_exit;

/// `id` (an integer) is required; `user.name`, when present, is a string.
fn id_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer"},
            "user": {"type": "object", "properties": {"name": {"type": "string"}}}
        }
    })
}

fn write_schema(dir: &Path, name: &str, schema: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, schema.to_string()).expect("write schema");
    path.display().to_string()
}

async fn app_with_schema(path: String) -> TestApp {
    spawn_app_with(AppOptions {
        customize: Box::new(move |s| s.streams.schemas = vec![format!("it-*:{path}")]),
        ..AppOptions::default()
    })
    .await
}

/// Polls the stream until it holds `count` records (or 10 s pass).
async fn read_back(app: &TestApp, count: usize) -> Vec<Vec<u8>> {
    let started = Instant::now();
    loop {
        let records = read_all(&app.emulator, &app.stream).await;
        if records.len() >= count || started.elapsed() > Duration::from_secs(10) {
            return records.into_iter().map(|r| r.data).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_schema_refuses_bad_events_naming_the_pointer_and_keyword() {
    let dir = tempfile::tempdir().expect("dir");
    let app = app_with_schema(write_schema(dir.path(), "s.json", &id_schema())).await;

    let ok = app
        .post_event(&json!({"event": {"id": 7, "user": {"name": "ann"}}}))
        .await;
    assert_eq!(ok.status(), 200, "{:?}", ok.text().await);

    let bad = app
        .post_event(&json!({"event": {"id": 8, "user": {"name": 42}}}))
        .await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.expect("JSON error");
    assert_eq!(body["code"], "schema_violation");
    let message = body["error"].as_str().expect("message");
    assert!(
        message.contains("/user/name") && message.contains("\"type\""),
        "pointer and keyword named: {message}"
    );

    let missing = app.post_event(&json!({"event": {"user": {}}})).await;
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.expect("JSON error");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("\"required\"")),
        "{body}"
    );

    let stored = read_back(&app, 1).await;
    assert_eq!(stored, vec![br#"{"id":7,"user":{"name":"ann"}}"#.to_vec()]);
    let page = app.metrics_page().await;
    assert_eq!(
        sample(
            &page,
            "kinesis_proxy_schema_violations_total",
            &[("stream", &app.stream)]
        ),
        Some(2.0),
        "violations counted by stream"
    );
}

#[tokio::test]
async fn the_records_route_refuses_only_the_records_that_violate_the_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let app = app_with_schema(write_schema(dir.path(), "s.json", &id_schema())).await;

    let response = app
        .post_records(&json!({"records": [
            {"event": {"id": 1}},
            {"event": {"id": "two"}},
            {"event": {"id": 3}},
        ]}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["failed_record_count"], 1, "{body}");
    let records = body["records"].as_array().expect("records");
    assert_eq!(records.len(), 3, "{body}");
    assert!(records[0]["sequence_number"].is_string(), "{body}");
    assert_eq!(records[1]["error_code"], "schema_violation", "{body}");
    let message = records[1]["error_message"].as_str().expect("message");
    assert!(
        message.contains("records[1]") && message.contains("/id") && message.contains("\"type\""),
        "{message}"
    );
    assert!(records[2]["sequence_number"].is_string(), "{body}");

    let mut stored = read_back(&app, 2).await;
    stored.sort();
    assert_eq!(
        stored,
        vec![br#"{"id":1}"#.to_vec(), br#"{"id":3}"#.to_vec()]
    );

    // All of them off the schema: the request fails with the code, per record as well.
    let response = app
        .post_records(&json!({"records": [{"event": {}}, {"event": []}]}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["failed_record_count"], 2, "{body}");

    // One record off the schema and one too large: the request is refused whole (413), and
    // each event is counted as rejected once, under the reason it was refused for.
    let too_large = "x".repeat(1024 * 1024 + 1);
    let response = app
        .post_records(&json!({"records": [
            {"event": {"id": "three"}},
            {"event": {"id": 4, "pad": too_large}},
        ]}))
        .await;
    assert_eq!(response.status(), 413);
    let page = app.metrics_page().await;
    let rejected = |code: &str| {
        sample(
            &page,
            "kinesis_proxy_events_rejected_total",
            &[("stream", app.stream.as_str()), ("code", code)],
        )
    };
    // Schema violations so far: 1 + 2 + 1; the 413 covers the other record only.
    assert_eq!(rejected("schema_violation"), Some(4.0), "{page}");
    assert_eq!(rejected("record_too_large"), Some(1.0), "{page}");
}

#[test]
fn a_schema_that_does_not_compile_or_refers_to_a_url_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let broken = write_schema(dir.path(), "broken.json", &json!({"type": 12}));
    let remote = write_schema(
        dir.path(),
        "remote.json",
        &json!({"$ref": "http://127.0.0.1:9/elsewhere.json"}),
    );
    let not_json = dir.path().join("not-json.json");
    std::fs::write(&not_json, "{\"type\": ").expect("write");
    for (path, says) in [
        (broken, "does not compile"),
        (remote, "remote $ref"),
        (not_json.display().to_string(), "is not JSON"),
    ] {
        let mut command = proxy_command("http://127.0.0.1:1");
        command.env("KINESIS_PROXY__STREAMS__SCHEMAS", format!("it-*:{path}"));
        let (status, output) = run_to_exit(command, Duration::from_secs(10));
        assert_eq!(status.code(), Some(78), "{path}: EX_CONFIG:\n{output}");
        assert!(
            output.contains(&path) && output.contains(says),
            "{path}: {says}: {output}"
        );
        // --check reads the schemas too.
        let mut command = proxy_command("http://127.0.0.1:1");
        command
            .arg("--check")
            .env("KINESIS_PROXY__STREAMS__SCHEMAS", format!("it-*:{path}"));
        let (status, output) = run_to_exit(command, Duration::from_secs(10));
        assert_eq!(status.code(), Some(78), "--check {path}:\n{output}");
    }
}

#[tokio::test]
async fn sighup_recompiles_the_schemas_and_a_broken_one_keeps_them() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-schemas");
    create_stream(&emulator, &stream, 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = write_schema(dir.path(), "s.json", &json!({"required": ["id"]}));
    let mut command = proxy_command(&emulator);
    command.env("KINESIS_PROXY__STREAMS__SCHEMAS", format!("it-*:{path}"));
    let proxy = RunningProxy::spawn(command);
    let http = reqwest::Client::new();
    let post = |event: Value| {
        http.post(proxy.url(&format!("/kinesis/stream/{stream}")))
            .header("x-api-key", API_KEY)
            .json(&json!({ "event": event }))
            .send()
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.expect("answered").status().as_u16();
    assert_eq!(status(post(json!({"id": 1})).await), 200);
    assert_eq!(status(post(json!({"name": "a"})).await), 400);

    write_schema(dir.path(), "s.json", &json!({"required": ["name"]}));
    signal(&proxy.child, "HUP");
    proxy.wait_for_reloads(&http, "ok", 1.0).await;
    assert_eq!(status(post(json!({"name": "a"})).await), 200);
    assert_eq!(status(post(json!({"id": 1})).await), 400);

    // A schema that does not compile: one ERROR, the schemas in use stay.
    write_schema(dir.path(), "s.json", &json!({"required": "name"}));
    signal(&proxy.child, "HUP");
    proxy.wait_for_reloads(&http, "error", 1.0).await;
    assert_eq!(status(post(json!({"name": "b"})).await), 200);
    assert_eq!(status(post(json!({"id": 2})).await), 400);
    let errors: Vec<Value> = proxy
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR" && l.to_string().contains("reload failed"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].to_string().contains(&path), "{errors:?}");
}

async fn app_with_envelope(trusted: Vec<String>, max_record_bytes: usize) -> TestApp {
    spawn_app_with(AppOptions {
        customize: Box::new(move |s| {
            s.streams.envelope = vec!["it-*".into()];
            s.server.trusted_proxies = trusted;
            s.kinesis.default_max_record_bytes = max_record_bytes;
        }),
        ..AppOptions::default()
    })
    .await
}

/// Posts `body` as sent, with a request id, a user agent and an `X-Forwarded-For`.
async fn post_enveloped(app: &TestApp, body: &str, forwarded_for: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/kinesis/stream/{}", app.stream)))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .header("x-request-id", "req-envelope-1")
        .header("user-agent", "contracts-test/1.0")
        .header("x-forwarded-for", forwarded_for)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent")
}

/// The record's `meta`, after checking the record starts with the event's exact bytes.
fn meta_of(record: &[u8], event: &str) -> Value {
    let prefix = format!("{{\"event\":{event},\"meta\":");
    assert!(
        record.starts_with(prefix.as_bytes()),
        "the event byte for byte: {}",
        String::from_utf8_lossy(record)
    );
    let whole: Value = serde_json::from_slice(record).expect("the record is JSON");
    whole["meta"].clone()
}

#[tokio::test]
async fn the_envelope_keeps_the_event_as_sent_and_stamps_meta() {
    let app = app_with_envelope(Vec::new(), 1024 * 1024).await;
    // Digits, escapes and key order a re-encoding would change.
    let event = r#"{"z":1.50,"a":"caf\u00e9","n":1e2}"#;
    let body = format!(r#"{{"event": {event}, "partition_key": "k"}}"#);
    // From an untrusted peer the header is ignored, whatever it says.
    let response = post_enveloped(&app, &body, "203.0.113.5").await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    let stored = read_back(&app, 1).await;
    assert_eq!(stored.len(), 1);
    let meta = meta_of(&stored[0], event);
    assert_eq!(meta["request_id"], "req-envelope-1", "{meta}");
    assert_eq!(meta["api_key"], "tests", "the key's name: {meta}");
    assert!(!stored[0]
        .windows(API_KEY.len())
        .any(|w| w == API_KEY.as_bytes()));
    assert_eq!(meta["client_ip"], "127.0.0.1", "{meta}");
    assert_eq!(meta["user_agent"], "contracts-test/1.0", "{meta}");
    let received = meta["received_at"].as_str().expect("received_at");
    // RFC 3339 UTC with milliseconds: 2026-12-03T08:28:32.123Z
    assert_eq!(received.len(), 24, "{received}");
    assert!(
        received.ends_with('Z') && received.as_bytes()[19] == b'.',
        "{received}"
    );
    assert!(
        received.as_bytes()[10] == b'T' && received[..4].parse::<u32>().is_ok_and(|y| y >= 2024),
        "{received}"
    );
    assert_eq!(meta.as_object().map(|m| m.len()), Some(5), "{meta}");
}

#[tokio::test]
async fn client_ip_follows_x_forwarded_for_only_through_trusted_proxies() {
    let app = app_with_envelope(vec!["127.0.0.0/8".into(), "10.0.0.0/8".into()], 1024 * 1024).await;
    // Peer 127.0.0.1 is trusted; 10.1.2.3 too; 198.51.100.7 is the right-most untrusted
    // address, and the client-written 6.6.6.6 left of it is not believed.
    let response = post_enveloped(
        &app,
        r#"{"event": {"n": 1}}"#,
        "6.6.6.6, 198.51.100.7, 10.1.2.3",
    )
    .await;
    assert_eq!(response.status(), 200);
    let stored = read_back(&app, 1).await;
    let meta = meta_of(&stored[0], r#"{"n":1}"#);
    assert_eq!(meta["client_ip"], "198.51.100.7", "{meta}");
}

#[tokio::test]
async fn the_size_limit_counts_the_envelope() {
    // An event of ~210 bytes fits 300 bytes alone, not with its ~150-byte envelope.
    let app = app_with_envelope(Vec::new(), 300).await;
    let event = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200));
    let response = post_enveloped(&app, &format!(r#"{{"event": {event}}}"#), "").await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "record_too_large", "{body}");
    let small = post_enveloped(&app, r#"{"event": 1}"#, "").await;
    assert_eq!(small.status(), 200);
}
