//! Publishable keys and beacons through the real binary (issue 22, part 3): a public key in the
//! `api_key` query parameter with a `text/plain` body (what `navigator.sendBeacon` sends) from
//! an allowed origin is written and answered with the CORS headers; without an `Origin`, or
//! from another one, it gets 403 `origin_not_allowed`; a secret key in the query gets 400
//! `api_key_in_url`; an oversize beacon 413; the access log holds no key. A public key without
//! a scope, or with `cors.allowed_origins = ["*"]`, stops the start (exit 78); public keys are
//! re-read on SIGHUP and have their own rate-limit bucket. The real browser is in `browser.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, signal, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};
use crate::helpers::metrics_page::sample;
use crate::helpers::spool::run_to_exit;

const ALLOWED: &str = "https://shop.example.com";
const REFUSED: &str = "https://evil.example.net";
const PUBLIC_KEY: &str = "pub-site-key-0123456789";
const MAX_BODY: usize = 8192;

struct Beacons {
    proxy: RunningProxy,
    emulator: String,
    stream: String,
    http: reqwest::Client,
}

/// A request as a page (or a client pretending to be one) would send it.
#[derive(Default)]
struct Send<'a> {
    records: bool,
    query_key: Option<&'a str>,
    header_key: Option<&'a str>,
    origin: Option<&'a str>,
    content_type: &'a str,
    body: String,
}

async fn beacons(extra: &[(&str, &str)]) -> Beacons {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-beacon-");
    create_stream(&emulator, &stream, 1).await;
    let mut command = proxy_command(&emulator);
    command
        .env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", ALLOWED)
        .env(
            "KINESIS_PROXY__AUTH__PUBLIC_KEYS",
            format!("site:{PUBLIC_KEY}:{stream}"),
        )
        .env(
            "KINESIS_PROXY__LIMITS__MAX_BODY_BYTES",
            MAX_BODY.to_string(),
        );
    for (name, value) in extra {
        command.env(name, value.replace("{stream}", &stream));
    }
    Beacons {
        proxy: RunningProxy::spawn(command),
        emulator,
        stream,
        http: reqwest::Client::new(),
    }
}

impl Beacons {
    async fn send(&self, stream: &str, send: Send<'_>) -> (u16, HeaderMap, Value) {
        let mut path = format!("/kinesis/stream/{stream}");
        if send.records {
            path.push_str("/records");
        }
        if let Some(key) = send.query_key {
            path.push_str(&format!("?api_key={key}"));
        }
        let mut request = self
            .http
            .post(self.proxy.url(&path))
            .header("content-type", send.content_type)
            .body(send.body);
        if let Some(key) = send.header_key {
            request = request.header("x-api-key", key);
        }
        if let Some(origin) = send.origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

fn event(id: &str) -> String {
    json!({"event": {"id": id}}).to_string()
}

const BEACON: &str = "text/plain;charset=UTF-8";

#[tokio::test]
async fn a_public_key_in_the_query_writes_only_from_an_allowed_origin() {
    let b = beacons(&[]).await;
    let stream = b.stream.clone();
    let beacon = |id: &str| Send {
        query_key: Some(PUBLIC_KEY),
        origin: Some(ALLOWED),
        content_type: BEACON,
        body: event(id),
        ..Send::default()
    };

    // What sendBeacon sends: accepted, and answered with the CORS headers of the origin.
    let (status, headers, body) = b.send(&stream, beacon("beacon-single")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ALLOWED)
    );
    let records = json!({"records": [{"event": {"id": "beacon-records-0"}}, {"event": {"id": "beacon-records-1"}}]});
    let (status, _, body) = b
        .send(
            &stream,
            Send {
                records: true,
                body: records.to_string(),
                ..beacon("")
            },
        )
        .await;
    assert_eq!(
        (status, &body["failed_record_count"]),
        (200, &json!(0)),
        "{body}"
    );
    // The key in the header (fetch with CORS) and plain text without a charset.
    let (status, _, body) = b
        .send(
            &stream,
            Send {
                query_key: None,
                header_key: Some(PUBLIC_KEY),
                content_type: "text/plain",
                ..beacon("public-in-header")
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Secret keys keep working as before, with no Origin at all.
    let (status, _, body) = b
        .send(
            &stream,
            Send {
                header_key: Some(API_KEY),
                content_type: "application/json",
                body: event("secret-in-header"),
                ..Send::default()
            },
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let refusals: Vec<(&str, Send, u16, &str)> = vec![
        (
            "no-origin",
            Send {
                origin: None,
                ..beacon("no-origin")
            },
            403,
            "origin_not_allowed",
        ),
        (
            "no-origin-header-key",
            Send {
                origin: None,
                query_key: None,
                header_key: Some(PUBLIC_KEY),
                ..beacon("no-origin-header-key")
            },
            403,
            "origin_not_allowed",
        ),
        (
            "wrong-origin",
            Send {
                origin: Some(REFUSED),
                ..beacon("wrong-origin")
            },
            403,
            "origin_not_allowed",
        ),
        (
            "secret-in-url",
            Send {
                query_key: Some(API_KEY),
                ..beacon("secret-in-url")
            },
            400,
            "api_key_in_url",
        ),
        (
            "secret-in-url-no-origin",
            Send {
                query_key: Some(API_KEY),
                origin: None,
                ..beacon("secret-in-url-no-origin")
            },
            400,
            "api_key_in_url",
        ),
        (
            "unknown-key-in-url",
            Send {
                query_key: Some("not-a-key-0123456789"),
                ..beacon("unknown-key-in-url")
            },
            401,
            "invalid_api_key",
        ),
        (
            "oversize-beacon",
            Send {
                body: json!({"event": {"id": "oversize-beacon", "pad": "x".repeat(MAX_BODY)}})
                    .to_string(),
                ..beacon("")
            },
            413,
            "body_too_large",
        ),
    ];
    for (name, send, status, code) in refusals {
        let (got, _, body) = b.send(&stream, send).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
        let message = body["error"].as_str().unwrap_or("");
        assert!(
            !message.is_empty() && !message.contains(PUBLIC_KEY) && !message.contains(API_KEY),
            "{name}: {message}"
        );
    }
    // The public key's scope holds in the query too.
    let (status, _, body) = b.send("it-beacon-elsewhere", beacon("out-of-scope")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("stream_not_in_key_scope")),
        "{body}"
    );

    let ids: BTreeSet<String> = read_all(&b.emulator, &stream)
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.data).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = [
        "beacon-single",
        "beacon-records-0",
        "beacon-records-1",
        "public-in-header",
        "secret-in-header",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        ids, expected,
        "exactly the accepted events reached the stream"
    );

    // Requests are counted under the public key's name, and no log line holds a key.
    let page = b
        .http
        .get(b.proxy.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("page");
    let counted = sample(
        &page,
        "kinesis_proxy_api_key_requests_total",
        &[("key", "site")],
    );
    // Counted once authenticated (the origin included): the three accepted, the oversize one
    // (refused after authentication) and the one out of scope; not the ones of no origin.
    assert_eq!(counted, Some(5.0));
    // The access lines are written as the answers go out; give the pipe a moment.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = b.proxy.json_lines();
        if lines.iter().filter(|l| l["message"] == "access").count() >= 13 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let access: Vec<&Value> = lines.iter().filter(|l| l["message"] == "access").collect();
    assert!(access.len() >= 13, "{} access lines", access.len());
    assert!(access
        .iter()
        .any(|l| l["key"] == "site" && l["status"] == 200));
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains(PUBLIC_KEY) && !text.contains(API_KEY) && !text.contains("api_key="),
            "a log line holds a key: {text}"
        );
    }
}

#[test]
fn a_public_key_without_a_scope_or_without_an_origin_list_stops_the_start() {
    let limit = Duration::from_secs(10);
    for (public_keys, origins, expect) in [
        (
            format!("site:{PUBLIC_KEY}"),
            ALLOWED,
            "auth.public_keys entry 1",
        ),
        (
            format!("a:pub-a-key-0123456789:it-a,site:{PUBLIC_KEY}"),
            ALLOWED,
            "auth.public_keys entry 2",
        ),
        (
            format!("site:{PUBLIC_KEY}:it-a"),
            "*",
            "cors.allowed_origins",
        ),
        (format!("tests:{PUBLIC_KEY}:it-a"), ALLOWED, "\"tests\""),
        (format!("site:{API_KEY}:it-a"), ALLOWED, "the same key"),
    ] {
        let mut command = proxy_command("http://127.0.0.1:1");
        command
            .env("KINESIS_PROXY__AUTH__PUBLIC_KEYS", &public_keys)
            .env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", origins);
        let (status, output) = run_to_exit(command, limit);
        assert_eq!(
            status.code(),
            Some(78),
            "{public_keys}: EX_CONFIG\n{output}"
        );
        assert!(
            output.contains("auth.public_keys") && output.contains(expect),
            "{public_keys}: {output}"
        );
        assert!(
            !output.contains(PUBLIC_KEY) && !output.contains(API_KEY),
            "prints a key: {output}"
        );
    }
}

#[tokio::test]
async fn public_keys_are_reloaded_on_sighup_and_have_their_own_rate_limit() {
    const NEW_KEY: &str = "pub-new-site-key-0123456789";
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-beacon-");
    create_stream(&emulator, &stream, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .expect("config.toml");
    let with_key =
        |entry: &str| shipped.replace("public_keys = []", &format!("public_keys = [{entry:?}]"));
    assert_ne!(with_key("x"), shipped, "config.toml has public_keys = []");
    std::fs::write(&config, with_key(&format!("site:{PUBLIC_KEY}:it-*"))).expect("write");
    let mut command = proxy_command(&emulator);
    command
        .arg("--config")
        .arg(&config)
        .env("KINESIS_PROXY__CORS__ALLOWED_ORIGINS", ALLOWED)
        .env("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", &stream)
        // 1 event/s with a burst of 5: five events pass, the next five wait 5 s.
        .env("KINESIS_PROXY__RATE_LIMITS__KEY_EVENTS_PER_SECOND", "1")
        .env("KINESIS_PROXY__RATE_LIMITS__KEY_EVENTS_BURST", "5");
    let b = Beacons {
        proxy: RunningProxy::spawn(command),
        emulator,
        stream: stream.clone(),
        http: reqwest::Client::new(),
    };
    let five = || {
        let records: Vec<Value> = (0..5).map(|i| json!({"event": {"n": i}})).collect();
        json!({ "records": records }).to_string()
    };
    let send = |key: &'static str, secret: bool| Send {
        records: true,
        query_key: (!secret).then_some(key),
        header_key: secret.then_some(key),
        origin: Some(ALLOWED),
        content_type: BEACON,
        body: five(),
    };
    let status = |answer: (u16, HeaderMap, Value)| (answer.0, answer.2["code"].clone());
    assert_eq!(
        status(b.send(&stream, send(PUBLIC_KEY, false)).await).0,
        202
    );
    assert_eq!(
        status(b.send(&stream, send(PUBLIC_KEY, false)).await),
        (429, json!("rate_limited"))
    );
    // The secret key's bucket is its own.
    assert_eq!(status(b.send(&stream, send(API_KEY, true)).await).0, 202);

    std::fs::write(&config, with_key(&format!("site2:{NEW_KEY}:it-*"))).expect("write");
    signal(&b.proxy.child, "HUP");
    b.proxy.wait_for_reloads(&b.http, "ok", 1.0).await;
    assert_eq!(status(b.send(&stream, send(NEW_KEY, false)).await).0, 202);
    assert_eq!(
        status(b.send(&stream, send(PUBLIC_KEY, false)).await),
        (401, json!("invalid_api_key"))
    );
    // A public key without a scope: the reload fails whole, the key in use stays.
    std::fs::write(&config, with_key("site3:pub-third-key-0123456789")).expect("write");
    signal(&b.proxy.child, "HUP");
    b.proxy.wait_for_reloads(&b.http, "error", 1.0).await;
    // Still the reloaded key: accepted, or over its budget (whether 5 s have passed since
    // its first request is the machine's business), never 401.
    let (code, body) = status(b.send(&stream, send(NEW_KEY, false)).await);
    assert!(code == 202 || code == 429, "{code} {body}");
}
