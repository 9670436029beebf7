//! CORS through the real binary: preflights and simple requests from an allowed and a refused
//! origin, the headers on every answer to an allowed origin (errors included), the JSON codes of
//! refusals, `*`, and CORS off by default.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

const ALLOWED: &str = "https://app.example.com";
const REFUSED: &str = "https://evil.example.net";

struct Setup {
    proxy: RunningProxy,
    emulator: String,
    stream: String,
    http: reqwest::Client,
}

async fn start(origins: Option<&str>) -> Setup {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    let mut command = proxy_command(&emulator);
    if let Some(origins) = origins {
        command.env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", origins);
    }
    Setup {
        proxy: RunningProxy::spawn(command),
        emulator,
        stream,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn preflight(
        &self,
        origin: &str,
        method: &str,
        headers: &str,
    ) -> (u16, HeaderMap, Value) {
        let response = self
            .http
            .request(
                Method::OPTIONS,
                self.proxy.url(&format!("/kinesis/stream/{}", self.stream)),
            )
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .expect("answered");
        split(response).await
    }

    async fn post(
        &self,
        origin: Option<&str>,
        key: Option<&str>,
        body: &str,
    ) -> (u16, HeaderMap, Value) {
        let mut request = self
            .http
            .post(self.proxy.url(&format!("/kinesis/stream/{}", self.stream)))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        split(request.send().await.expect("answered")).await
    }
}

async fn split(response: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn an_allowed_origin_gets_preflights_and_headers_on_every_answer_a_refused_one_gets_403() {
    let setup = start(Some(&format!("{ALLOWED},http://localhost:3000"))).await;

    let (status, headers, _) = setup
        .preflight(ALLOWED, "POST", "content-type,x-api-key,content-encoding")
        .await;
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), ALLOWED);
    assert!(header(&headers, "access-control-allow-methods").contains("POST"));
    let allowed_headers = header(&headers, "access-control-allow-headers").to_ascii_lowercase();
    for name in ["content-type", "x-api-key", "content-encoding"] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert_eq!(header(&headers, "access-control-max-age"), "7200");
    assert!(header(&headers, "access-control-allow-credentials").is_empty());

    for (origin, method, headers, code) in [
        (
            REFUSED,
            "POST",
            "content-type,x-api-key",
            "origin_not_allowed",
        ),
        (
            ALLOWED,
            "DELETE",
            "content-type",
            "cors_request_not_allowed",
        ),
        (
            ALLOWED,
            "POST",
            "content-type,x-custom",
            "cors_request_not_allowed",
        ),
    ] {
        let (status, got, body) = setup.preflight(origin, method, headers).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some(code)),
            "{origin} {method} {headers}: {body}"
        );
        assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()));
        if origin == REFUSED {
            assert!(header(&got, "access-control-allow-origin").is_empty());
        }
    }

    // Simple requests from the allowed origin: success and errors alike carry the headers.
    let event = json!({"event": {"from": "browser"}}).to_string();
    for (key, body, status, code) in [
        (Some(API_KEY), event.as_str(), 200, None),
        (Some(API_KEY), "{\"event\": ", 400, Some("invalid_json")),
        (None, event.as_str(), 401, Some("missing_api_key")),
    ] {
        let (got, headers, answer) = setup.post(Some(ALLOWED), key, body).await;
        assert_eq!((got, answer["code"].as_str()), (status, code), "{answer}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            ALLOWED,
            "{status}"
        );
        let exposed = header(&headers, "access-control-expose-headers").to_ascii_lowercase();
        assert!(
            exposed.contains("retry-after") && exposed.contains("x-request-id"),
            "{exposed}"
        );
        assert!(header(&headers, "vary")
            .to_ascii_lowercase()
            .contains("origin"));
    }
    let (status, headers, _) = setup
        .post(Some("http://localhost:3000"), Some(API_KEY), &event)
        .await;
    assert_eq!(
        (status, header(&headers, "access-control-allow-origin")),
        (200, "http://localhost:3000")
    );
    let health = setup
        .http
        .get(setup.proxy.url("/healthz"))
        .header("origin", ALLOWED)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        header(health.headers(), "access-control-allow-origin"),
        ALLOWED
    );

    // A refused origin cannot write, even blind; a client that sends no Origin (not a browser)
    // is not a CORS request at all.
    let (status, headers, body) = setup.post(Some(REFUSED), Some(API_KEY), &event).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed")),
        "{body}"
    );
    assert!(header(&headers, "access-control-allow-origin").is_empty());
    let (status, headers, _) = setup.post(None, Some(API_KEY), &event).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "access-control-allow-origin").is_empty());

    assert_eq!(read_all(&setup.emulator, &setup.stream).await.len(), 3);
}

#[tokio::test]
async fn any_origin_gets_a_wildcard_and_cors_is_off_by_default() {
    let any = start(Some("*")).await;
    let (status, headers, _) = any
        .preflight(REFUSED, "POST", "content-type,x-api-key")
        .await;
    assert_eq!(
        (status, header(&headers, "access-control-allow-origin")),
        (200, "*")
    );
    let event = json!({"event": 1}).to_string();
    let (status, headers, _) = any.post(Some(REFUSED), Some(API_KEY), &event).await;
    assert_eq!(
        (status, header(&headers, "access-control-allow-origin")),
        (200, "*")
    );

    let off = start(None).await;
    let (status, headers, body) = off
        .preflight(ALLOWED, "POST", "content-type,x-api-key")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert!(header(&headers, "access-control-allow-origin").is_empty());
    let (status, headers, _) = off.post(Some(ALLOWED), Some(API_KEY), &event).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "access-control-allow-origin").is_empty());
}
