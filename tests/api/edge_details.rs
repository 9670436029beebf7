//! Small promises of the HTTP edge, each through the real proxy: a malformed CORS preflight is
//! the documented 400, and messages name streams as the client wrote them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, unique_stream_name};

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
