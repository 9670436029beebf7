//! Every validation rule at the edge, one row each, against the real proxy: the status, the
//! stable `code` and a JSON error body; and afterwards, that nothing refused reached the stream.

use serde_json::Value;

use crate::helpers::app::{spawn_app_with, AppOptions, API_KEY};
use crate::helpers::emulator::read_all;

const MAX_BODY: usize = 256 * 1024;
const MAX_RECORD: usize = 16 * 1024;
const MAX_RECORDS: usize = 10;

enum Route {
    Single,
    Records,
    Path(String),
}

struct Case {
    name: &'static str,
    method: &'static str,
    route: Route,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// `None` for rows that must succeed.
    code: Option<&'static str>,
    /// Text the error message must contain (position, limit, ...).
    message_contains: Option<&'static str>,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        route: Route::Single,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        status,
        code: Some(code),
        message_contains: None,
    }
}

fn ok(name: &'static str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        code: None,
        ..case(name, body, 200, "")
    }
}

fn event_with(field: &str, value: &str) -> String {
    format!("{{\"event\": {{\"n\": 1}}, \"{field}\": {value}}}")
}

fn cases() -> Vec<Case> {
    let deep = format!(
        "{{\"event\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let big_event = format!("{{\"event\": \"{}\"}}", "x".repeat(MAX_RECORD + 1));
    let many: Vec<String> = (0..=MAX_RECORDS)
        .map(|i| format!("{{\"event\": {i}}}"))
        .collect();
    vec![
        case("empty body", "", 400, "empty_body"),
        Case {
            message_contains: Some("line 2 column"),
            ..case(
                "truncated JSON",
                "{\"event\":\n {\"a\": 1",
                400,
                "invalid_json",
            )
        },
        case(
            "invalid UTF-8",
            b"{\"event\": \"\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        case("top-level array", "[{\"event\": 1}]", 400, "invalid_body"),
        case("top-level string", "\"event\"", 400, "invalid_body"),
        case(
            "missing event",
            "{\"partition_key\": \"k\"}",
            400,
            "missing_event",
        ),
        case("null event", "{\"event\": null}", 400, "missing_event"),
        case("100,000 nested arrays", deep, 400, "nesting_too_deep"),
        ok(
            "unknown fields are ignored",
            "{\"event\": 1, \"colour\": \"blue\"}",
        ),
        case(
            "empty partition key",
            event_with("partition_key", "\"\""),
            400,
            "invalid_partition_key",
        ),
        case(
            "257-char partition key",
            event_with("partition_key", &format!("\"{}\"", "k".repeat(257))),
            400,
            "invalid_partition_key",
        ),
        ok(
            "256 multi-byte chars is a valid key",
            event_with("partition_key", &format!("\"{}\"", "é".repeat(256))),
        ),
        // Kinesis counts UTF-16 code units: an emoji is two. 129 of them passed a count of
        // characters and made Kinesis refuse every call they were in.
        ok(
            "128 emoji (256 UTF-16 code units) is a valid key",
            event_with("partition_key", &format!("\"{}\"", "😀".repeat(128))),
        ),
        case(
            "129 emoji (258 UTF-16 code units)",
            event_with("partition_key", &format!("\"{}\"", "😀".repeat(129))),
            400,
            "invalid_partition_key",
        ),
        case(
            "257 multi-byte chars",
            event_with("partition_key", &format!("\"{}\"", "é".repeat(257))),
            400,
            "invalid_partition_key",
        ),
        case(
            "partition key not a string",
            event_with("partition_key", "42"),
            400,
            "invalid_body",
        ),
        case(
            "negative hash key",
            event_with("explicit_hash_key", "\"-1\""),
            400,
            "invalid_explicit_hash_key",
        ),
        case(
            "hash key 2^128",
            event_with(
                "explicit_hash_key",
                "\"340282366920938463463374607431768211456\"",
            ),
            400,
            "invalid_explicit_hash_key",
        ),
        case(
            "hash key not digits",
            event_with("explicit_hash_key", "\"12a\""),
            400,
            "invalid_explicit_hash_key",
        ),
        ok(
            "hash key 2^128-1",
            event_with(
                "explicit_hash_key",
                "\"340282366920938463463374607431768211455\"",
            ),
        ),
        // Kinesis' pattern is `0|([1-9]\d{0,38})`: leading zeros are refused there, so the
        // proxy sends the number's canonical form (a zero-padded 2^128-1 is still 2^128-1).
        ok(
            "zero-padded hash key is sent in canonical form",
            event_with("explicit_hash_key", "\"007\""),
        ),
        ok(
            "41-digit zero-padded 2^128-1",
            event_with(
                "explicit_hash_key",
                "\"00340282366920938463463374607431768211455\"",
            ),
        ),
        case(
            "malformed region",
            event_with("region", "\"Mars\""),
            400,
            "invalid_region",
        ),
        case(
            "unknown region",
            event_with("region", "\"xx-nowhere-9\""),
            400,
            "region_not_allowed",
        ),
        ok(
            "the default region named explicitly",
            event_with("region", "\"us-west-2\""),
        ),
        Case {
            message_contains: Some("16384"),
            ..case(
                "record over the stream's record size",
                big_event,
                413,
                "record_too_large",
            )
        },
        case(
            "body over the limit",
            vec![b' '; MAX_BODY + 1],
            413,
            "body_too_large",
        ),
        Case {
            headers: vec![("content-type", "text/csv".into())],
            ..case(
                "wrong content type",
                "{\"event\": 1}",
                415,
                "unsupported_media_type",
            )
        },
        // What navigator.sendBeacon sends with a string, and a CORS request without preflight.
        Case {
            headers: vec![("content-type", "text/plain;charset=UTF-8".into())],
            ..ok("text/plain is read as JSON (sendBeacon)", "{\"event\": 1}")
        },
        Case {
            headers: vec![("content-type", "text/plain".into())],
            ..ok("text/plain without a charset", "{\"event\": 1}")
        },
        Case {
            headers: vec![],
            ..ok("missing content type is taken as JSON", "{\"event\": 1}")
        },
        Case {
            headers: vec![("content-type", "application/x-www-form-urlencoded".into())],
            ..ok(
                "curl's default content type is taken as JSON",
                "{\"event\": 1}",
            )
        },
        Case {
            headers: vec![
                ("content-type", "application/json".into()),
                ("content-encoding", "br".into()),
            ],
            ..case(
                "a coding the proxy does not decode",
                "{\"event\": 1}",
                415,
                "unsupported_content_encoding",
            )
        },
        Case {
            headers: vec![
                ("content-type", "application/json".into()),
                ("content-encoding", "gzip".into()),
            ],
            ..case(
                "a body that is not the gzip it claims to be",
                "{\"event\": 1}",
                400,
                "invalid_compressed_body",
            )
        },
        Case {
            headers: vec![("content-type", "application/x-ndjson".into())],
            ..case(
                "NDJSON on the single route",
                "{\"event\": 1}\n",
                415,
                "unsupported_media_type",
            )
        },
        Case {
            route: Route::Records,
            ..case("zero records", "{\"records\": []}", 400, "no_records")
        },
        Case {
            route: Route::Records,
            headers: vec![("content-type", "text/plain;charset=UTF-8".into())],
            ..ok(
                "text/plain on the records route is read as JSON",
                // One record: every accepted row is one event in the stream (checked below).
                "{\"records\": [{\"event\": 1}]}",
            )
        },
        Case {
            route: Route::Records,
            ..case(
                "too many records",
                format!("{{\"records\": [{}]}}", many.join(",")),
                400,
                "too_many_records",
            )
        },
        Case {
            route: Route::Records,
            message_contains: Some("records[1]"),
            ..case(
                "one bad record refuses the request",
                "{\"records\": [{\"event\": 1}, {\"event\": 2, \"partition_key\": \"\"}]}",
                400,
                "invalid_partition_key",
            )
        },
        Case {
            route: Route::Records,
            headers: vec![("content-type", "application/x-ndjson".into())],
            message_contains: Some("line 2"),
            ..case(
                "NDJSON with a bad line in the middle",
                "{\"event\": 1}\n{\"event\": \n{\"event\": 3}\n",
                400,
                "invalid_json",
            )
        },
        Case {
            route: Route::Path("/kinesis/stream/has%20space".into()),
            ..case(
                "stream name with a space",
                "{\"event\": 1}",
                400,
                "invalid_stream_name",
            )
        },
        Case {
            route: Route::Path(format!("/kinesis/stream/it-{}", "x".repeat(126))),
            ..case(
                "129-char stream name",
                "{\"event\": 1}",
                400,
                "invalid_stream_name",
            )
        },
        Case {
            route: Route::Path("/kinesis/stream/it-a%2Fb".into()),
            ..case(
                "encoded slash in stream name",
                "{\"event\": 1}",
                400,
                "invalid_stream_name",
            )
        },
        Case {
            route: Route::Path("/kinesis/stream/not-allowed".into()),
            ..case(
                "stream outside the allow-list",
                "{\"event\": 1}",
                403,
                "stream_not_allowed",
            )
        },
        Case {
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-api-key", String::new()),
            ],
            ..case("empty API key", "{\"event\": 1}", 401, "invalid_api_key")
        },
        Case {
            headers: vec![
                ("content-type", "application/json".into()),
                ("x-api-key", "wrong-key-0123456789".into()),
            ],
            ..case("wrong API key", "{\"event\": 1}", 401, "invalid_api_key")
        },
        Case {
            method: "GET",
            ..case("GET on the event route", "", 405, "method_not_allowed")
        },
        Case {
            route: Route::Path("/nowhere".into()),
            ..case("unknown path", "{\"event\": 1}", 404, "not_found")
        },
    ]
}

#[tokio::test]
async fn every_validation_rule_has_its_status_and_code() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| {
            s.limits.max_body_bytes = MAX_BODY;
            s.limits.max_records_per_request = MAX_RECORDS;
            s.kinesis.default_max_record_bytes = MAX_RECORD;
        }),
        ..AppOptions::default()
    })
    .await;
    let mut accepted = 0;
    let mut failures = Vec::new();
    for case in cases() {
        let path = match &case.route {
            Route::Single => format!("/kinesis/stream/{}", app.stream),
            Route::Records => format!("/kinesis/stream/{}/records", app.stream),
            Route::Path(p) => p.clone(),
        };
        let mut request = match case.method {
            "GET" => app.client.get(app.url(&path)),
            _ => app.client.post(app.url(&path)),
        };
        let sets_key = case.headers.iter().any(|(h, _)| *h == "x-api-key");
        if !sets_key {
            request = request.header("x-api-key", API_KEY);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let response = request.body(case.body.clone()).send().await.expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status != case.status {
            failures.push(format!(
                "{}: status {status}, expected {}: {text}",
                case.name, case.status
            ));
            continue;
        }
        match case.code {
            None => accepted += 1,
            Some(code) => {
                let body: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(_) => {
                        failures.push(format!("{}: body is not JSON: {text}", case.name));
                        continue;
                    }
                };
                if body["code"] != code {
                    failures.push(format!(
                        "{}: code {}, expected {code}",
                        case.name, body["code"]
                    ));
                }
                let message = body["error"].as_str().unwrap_or_default();
                if message.is_empty() {
                    failures.push(format!("{}: no error message", case.name));
                }
                if let Some(needle) = case.message_contains {
                    if !message.contains(needle) {
                        failures.push(format!(
                            "{}: message {message:?} lacks {needle:?}",
                            case.name
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stored = read_all(&app.emulator, &app.stream).await;
    assert_eq!(
        stored.len(),
        accepted,
        "only the accepted rows reached the stream"
    );
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| s.limits.max_body_bytes = MAX_BODY),
        ..AppOptions::default()
    })
    .await;
    // No Content-Length: the proxy must count while reading and stop at the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 8 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let path = format!("/kinesis/stream/{}", app.stream);
    let response = app.post_raw(&path, "application/json", body).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "body_too_large");
}

/// A client that keeps streaming a chunked body past the limit, or announces one: once answered
/// 413 the connection is closed, not read to the end (which a client could make endless).
#[tokio::test]
async fn a_body_over_the_limit_closes_its_connection_instead_of_being_read_on() {
    use std::io::{Read, Write};
    use std::time::Duration;

    let app = spawn_app_with(AppOptions {
        customize: Box::new(|s| s.limits.max_body_bytes = MAX_BODY),
        ..AppOptions::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let path = format!("/kinesis/stream/{}", app.stream);
    let outcomes = tokio::task::spawn_blocking(move || {
        ["transfer-encoding: chunked", "content-length: 1073741824"].map(|framing| {
            let mut socket = std::net::TcpStream::connect(&address).expect("connect");
            socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("read timeout");
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: {API_KEY}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).expect("head");
            // More than the limit, but far less than announced or than a client could send.
            let piece = vec![b' '; 16 * 1024];
            for _ in 0..(MAX_BODY / piece.len() + 4) {
                let written = if framing.starts_with("transfer") {
                    socket
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .and_then(|()| socket.write_all(&piece))
                        .and_then(|()| socket.write_all(b"\r\n"))
                } else {
                    socket.write_all(&piece)
                };
                if written.is_err() {
                    break; // Closed by the proxy already.
                }
            }
            // The answer, then the end of the connection (not a wait for the rest of the body).
            let mut answer = Vec::new();
            let ended = match socket.read_to_end(&mut answer) {
                Ok(_) => "closed",
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "closed",
                Err(_) => "still open after 10 s",
            };
            (String::from_utf8_lossy(&answer).to_lowercase(), ended)
        })
    })
    .await
    .expect("the clients");
    let summary: Vec<&str> = outcomes.iter().map(|(_, ended)| *ended).collect();
    let summary = summary.join(", ");
    for (answer, ended) in &outcomes {
        let ended = *ended;
        assert!(answer.starts_with("http/1.1 413"), "{answer}");
        assert!(answer.contains("body_too_large"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert_eq!(ended, "closed", "{answer}\n(outcomes: {summary})");
    }
}

#[tokio::test]
async fn missing_api_key_is_401() {
    let app = spawn_app_with(AppOptions::default()).await;
    let response = app
        .client
        .post(app.url(&format!("/kinesis/stream/{}", app.stream)))
        .json(&serde_json::json!({"event": 1}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "missing_api_key");
}

/// HTTP clients normalise `/kinesis/stream/..` away before sending, so this one writes the
/// request line itself: a stream named only by dots must be refused, never resolved as a path.
#[tokio::test]
async fn dot_only_stream_names_sent_verbatim_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(AppOptions::default()).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    for path in ["/kinesis/stream/..", "/kinesis/stream/.", "/kinesis/.."] {
        let body = r#"{"event": 1}"#;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nx-api-key: {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect to the proxy");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .await
            .expect("read the answer");
        let (head, json) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 400"), "{path}: {head}");
        let json: Value = serde_json::from_str(json).expect("a JSON error body");
        assert_eq!(json["code"], "invalid_stream_name", "{path}: {json}");
    }
}
