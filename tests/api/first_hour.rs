//! What a newcomer's first hour found (issue #13), each against the real proxy and kinesalite:
//! streams that do not exist must not hold pipeline slots, idle pipelines are given back, a
//! request larger than a rate limit's burst gets a final answer, Kinesis' own error text never
//! reaches a client, a records request that failed wholly is not a 200, and every request is
//! counted, logged and carries a request id.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp, API_KEY};
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{
    create_stream, kinesalite, kinesis_client, read_all, unique_stream_name,
};

async fn post_to(app: &TestApp, stream: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/kinesis/stream/{stream}")))
        .header("x-api-key", API_KEY)
        .json(body)
        .send()
        .await
        .expect("sent")
}

async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json body");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn streams_that_do_not_exist_hold_no_pipeline_slot() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| s.limits.max_pipelines = 3),
        ..AppOptions::default()
    })
    .await;
    for missing in ["it-logs-a", "it-logs-b", "it-logs-c", "it-logs-d"] {
        let (status, code) = code_of(post_to(&app, missing, &json!({"event": 1})).await).await;
        assert_eq!(
            (status, code.as_str()),
            (404, "stream_not_found"),
            "{missing}"
        );
    }
    // Asked again within missing_stream_ttl_ms: the same answer, from the proxy's memory.
    let (status, code) = code_of(post_to(&app, "it-logs-a", &json!({"event": 2})).await).await;
    assert_eq!((status, code.as_str()), (404, "stream_not_found"));

    let response = app.post_event(&json!({"event": {"real": true}})).await;
    assert_eq!(response.status(), 200, "the real stream still gets a slot");
    let stored = read_all(&app.emulator, &app.stream).await;
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn a_stream_deleted_under_a_running_pipeline_gives_its_slot_back() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| s.limits.max_pipelines = 2),
        ..AppOptions::default()
    })
    .await;
    let doomed = unique_stream_name("it-doomed-");
    let later = unique_stream_name("it-later-");
    create_stream(&app.emulator, &doomed, 1).await;
    create_stream(&app.emulator, &later, 1).await;
    assert_eq!(app.post_event(&json!({"event": 1})).await.status(), 200);
    assert_eq!(
        post_to(&app, &doomed, &json!({"event": 1})).await.status(),
        200
    );
    let (status, code) = code_of(post_to(&app, &later, &json!({"event": 1})).await).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "too_many_streams"),
        "both slots taken"
    );

    kinesis_client(&app.emulator)
        .delete_stream()
        .stream_name(&doomed)
        .send()
        .await
        .expect("DeleteStream");
    // Kinesalite takes a moment to delete; until then writes still succeed.
    let mut answer = (0, String::new());
    for _ in 0..50 {
        answer = code_of(post_to(&app, &doomed, &json!({"event": 2})).await).await;
        if answer.0 == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((answer.0, answer.1.as_str()), (404, "stream_not_found"));
    assert_eq!(
        post_to(&app, &later, &json!({"event": 1})).await.status(),
        200,
        "the deleted stream's slot was given back"
    );
}

#[tokio::test]
async fn idle_pipelines_are_given_back() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| {
            s.limits.max_pipelines = 1;
            s.limits.pipeline_idle_timeout_ms = 1_500;
        }),
        ..AppOptions::default()
    })
    .await;
    let other = unique_stream_name("it-other-");
    create_stream(&app.emulator, &other, 1).await;
    assert_eq!(app.post_event(&json!({"event": 1})).await.status(), 200);
    let (status, code) = code_of(post_to(&app, &other, &json!({"event": 1})).await).await;
    assert_eq!((status, code.as_str()), (503, "too_many_streams"));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        post_to(&app, &other, &json!({"event": 1})).await.status(),
        200,
        "the idle pipeline's slot was given back"
    );
    let stored = read_all(&app.emulator, &other).await;
    assert_eq!(stored.len(), 1);
}

#[tokio::test]
async fn a_request_larger_than_the_burst_gets_a_final_answer() {
    let app = spawn_app_with(AppOptions {
        // Only a rate: the burst defaults to one second's worth (2 events).
        customize: Box::new(|s| s.rate_limits.key_events_per_second = 2),
        ..AppOptions::default()
    })
    .await;
    let three = json!({"records": [{"event": 1}, {"event": 2}, {"event": 3}]});
    for attempt in 0..3 {
        let response = app.post_records(&three).await;
        assert!(response.headers().get("retry-after").is_none());
        let (status, code) = code_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (413, "request_exceeds_burst"),
            "attempt {attempt}: final, not 429"
        );
    }
    let two = json!({"records": [{"event": 1}, {"event": 2}]});
    assert_eq!(app.post_records(&two).await.status(), 200);
    // The burst is two events, not thousands.
    let (status, code) = code_of(app.post_records(&two).await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!(
        "kinesis_proxy_events_rejected_total{{stream=\"{}\",code=\"request_exceeds_burst\"}} 9",
        app.stream
    );
    assert!(
        metrics.contains(&series),
        "three refused requests of three events each, counted as events by stream: {}",
        metrics
            .lines()
            .filter(|l| l.contains("events_rejected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn a_records_request_that_failed_wholly_for_want_of_kinesis_is_503() {
    let app = spawn_app_with(AppOptions {
        // Nothing listens there: Kinesis is unreachable.
        kinesis_endpoint: Some("http://127.0.0.1:9".into()),
        customize: Box::new(|s| {
            s.retry.record_deadline_ms = 600;
            s.kinesis.connect_timeout_ms = 100;
        }),
        ..AppOptions::default()
    })
    .await;
    let response = app
        .post_records(&json!({"records": [{"event": 1}, {"event": 2}]}))
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["failed_record_count"], 2, "{body}");
    for record in body["records"].as_array().expect("records") {
        assert_eq!(record["error_code"], "kinesis_unavailable", "{body}");
    }
}

#[tokio::test]
async fn every_request_is_counted_logged_and_carries_a_request_id() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    let proxy = RunningProxy::spawn(proxy_command(&emulator));
    let http = reqwest::Client::new();

    let accepted = http
        .post(proxy.url(&format!("/kinesis/stream/{stream}")))
        .header("x-api-key", API_KEY)
        .header("x-request-id", "client-id.42")
        .json(&json!({"event": {"a": 1}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(accepted.status(), 200);
    assert_eq!(accepted.headers()["x-request-id"], "client-id.42");

    let unauthorized = http
        .post(proxy.url(&format!("/kinesis/stream/{stream}")))
        .header("x-request-id", "not a token!")
        .json(&json!({"event": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(unauthorized.status(), 401);
    let generated = unauthorized.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!generated.is_empty() && generated != "not a token!");

    assert_eq!(
        http.get(proxy.url("/no/such/route"))
            .send()
            .await
            .expect("sent")
            .status(),
        404
    );
    assert_eq!(
        http.post(proxy.url("/healthz"))
            .send()
            .await
            .expect("sent")
            .status(),
        405
    );
    let metrics = http
        .get(proxy.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for series in [
        "kinesis_proxy_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "kinesis_proxy_http_requests_total{route=\"/healthz\",status=\"405\"} 1",
        "kinesis_proxy_http_requests_total{route=\"/kinesis/stream/{stream}\",status=\"401\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }

    // The access log lines are written as the answers go out; give the pipe a moment.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = proxy
            .json_lines()
            .into_iter()
            .filter(|l| l["message"] == "access")
            .collect();
        if lines.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line_of = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}: {lines:?}"))
            .clone()
    };
    let ok = line_of("client-id.42");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["route"], "/kinesis/stream/{stream}");
    assert_eq!(ok["stream"], stream.as_str());
    assert_eq!(ok["key"], "tests");
    assert_eq!(ok["events"], 1);
    assert_eq!(ok["method"], "POST");
    let refused = line_of(&generated);
    assert_eq!(refused["status"], 401);
    assert!(refused.get("key").is_none_or(Value::is_null), "{refused}");
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == 404 && l["route"] == "unmatched"),
        "{lines:?}"
    );
    let all = proxy
        .json_lines()
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!all.contains(API_KEY), "the key itself is never logged");
}
