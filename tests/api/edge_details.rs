//! Small promises of the HTTP edge, each through the real proxy: refused events count for
//! their stream when it is known, a malformed CORS preflight is the documented 400, messages
//! name streams as the client wrote them, and body fields the API does not read (a misspelt
//! `partitionKey`) are counted and logged once instead of vanishing.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, API_KEY};
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, unique_stream_name};
use crate::helpers::metrics_page::sample;

const REJECTED: &str = "kinesis_proxy_events_rejected_total";
const UNKNOWN_FIELDS: &str = "kinesis_proxy_unknown_fields_total";

#[tokio::test]
async fn body_errors_count_for_their_stream_when_it_is_known_and_for_none_when_made_up() {
    let exact = unique_stream_name("it-exact-");
    let allow_exact = exact.clone();
    let app = spawn_app_with(AppOptions {
        customize: Box::new(move |s| s.streams.allow.push(allow_exact)),
        ..AppOptions::default()
    })
    .await;
    // A stream served already (its pipeline runs), one the allow-list names exactly (never
    // served), and one a client makes up under the wildcard.
    assert_eq!(app.post_event(&json!({"event": 1})).await.status(), 200);
    let made_up = unique_stream_name("it-made-up-");
    for stream in [app.stream.as_str(), exact.as_str(), made_up.as_str()] {
        let path = format!("/kinesis/stream/{stream}");
        let response = app
            .post_raw(&path, "application/json", "{\"event\": ")
            .await;
        assert_eq!(response.status(), 400, "{stream}");
    }
    let page = app.metrics_page().await;
    for stream in [&app.stream, &exact] {
        assert_eq!(
            sample(
                &page,
                REJECTED,
                &[("stream", stream), ("code", "invalid_json")]
            ),
            Some(1.0),
            "{stream}:\n{page}"
        );
    }
    assert!(
        !page.contains(&made_up),
        "a made-up name became a label:\n{page}"
    );
}

/// The binary with CORS on for one origin and a key limited to `it-web-*`.
async fn proxy_with_cors_and_a_scoped_key() -> (RunningProxy, String) {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    let mut command = proxy_command(&emulator);
    command
        .env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", ORIGIN)
        .env(
            "KINESIS_PROXY__AUTH__KEYS",
            format!("tests:{API_KEY},web:{WEB_KEY}:it-web-*"),
        );
    (RunningProxy::spawn(command), stream)
}

const ORIGIN: &str = "https://app.example.com";
const WEB_KEY: &str = "web-key-0123456789abcdef";

#[tokio::test]
async fn a_preflight_with_a_malformed_method_is_400_invalid_preflight_with_cors_headers() {
    let (proxy, stream) = proxy_with_cors_and_a_scoped_key().await;
    let http = reqwest::Client::new();
    let preflight = |method: &'static str| {
        http.request(
            Method::OPTIONS,
            proxy.url(&format!("/kinesis/stream/{stream}")),
        )
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type,x-api-key")
        .send()
    };
    for malformed in ["GE T", "POST,GET", ""] {
        let response = preflight(malformed).await.expect("answered");
        let status = response.status().as_u16();
        let allow_origin = response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_preflight")),
            "{malformed:?}: {body}"
        );
        assert_eq!(allow_origin, ORIGIN, "{malformed:?}: a page can read it");
    }
    // A well-formed preflight is still answered as one.
    assert_eq!(preflight("POST").await.expect("answered").status(), 200);
}

#[tokio::test]
async fn messages_name_a_stream_as_written_not_as_a_rust_value() {
    let (proxy, _) = proxy_with_cors_and_a_scoped_key().await;
    let response = reqwest::Client::new()
        .post(proxy.url("/kinesis/stream/it-agg"))
        .header("x-api-key", WEB_KEY)
        .json(&json!({"event": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("JSON");
    let message = body["error"].as_str().expect("message");
    assert!(
        message.contains("stream \"it-agg\"") && !message.contains("StreamName"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_body_fields_are_accepted_counted_by_name_and_logged_once() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    let proxy = RunningProxy::spawn(proxy_command(&emulator));
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        http.post(proxy.url(&path))
            .header("x-api-key", API_KEY)
            .json(&body)
            .send()
    };
    let single = format!("/kinesis/stream/{stream}");
    for body in [
        json!({"event": {"n": 1}, "partitionKey": "user-1"}),
        json!({"event": {"n": 2}, "partitionKey": "user-1"}),
        json!({"event": {"n": 3}, "sent_at": "secret-looking-value"}),
    ] {
        let response = post(single.clone(), body).await.expect("answered");
        assert_eq!(
            response.status(),
            200,
            "still accepted, as the original API did"
        );
    }
    let response = post(
        format!("{single}/records"),
        json!({"records": [{"event": {"n": 4}, "PartitionKey": "k"}], "Region": "eu-west-1"}),
    )
    .await
    .expect("answered");
    assert_eq!(response.status(), 200);

    let page = reqwest::get(proxy.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("page");
    for (field, count) in [
        ("partitionKey", 2.0),
        ("PartitionKey", 1.0),
        ("Region", 1.0),
        ("other", 1.0),
        ("explicitHashKey", 0.0),
    ] {
        assert_eq!(
            sample(&page, UNKNOWN_FIELDS, &[("field", field)]),
            Some(count),
            "{field}:\n{page}"
        );
    }
    assert!(
        !page.contains("sent_at"),
        "a client's field name is no label"
    );

    let warnings: Vec<String> = proxy
        .json_lines()
        .into_iter()
        .map(|line| line.to_string())
        .filter(|line| line.contains("does not read"))
        .collect();
    assert_eq!(warnings.len(), 4, "once per label: {warnings:#?}");
    assert!(
        warnings.iter().all(|w| !w.contains("secret-looking-value")),
        "values are never logged: {warnings:#?}"
    );
}
