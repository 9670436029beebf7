//! Request bodies that stop arriving (issue 23, item 2), through the real binary and raw TCP
//! sockets: a few hundred connections each sending a head and part of its body, then nothing.
//! Memory stays within the body budget (`limits.max_buffered_body_bytes`: the rest are refused
//! 503 `body_budget_exhausted`), other clients are served meanwhile, the stalled connections
//! are answered 408 `body_timeout` and closed at `limits.body_timeout_ms`, and a shutdown does
//! not wait for stalled bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, sigterm, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, unique_stream_name};
use crate::helpers::metrics_page::sample;

/// Connections that stall mid-body.
const STALLED: usize = 300;
/// What each announces (`Content-Length`) and what it sends of it before stalling.
const DECLARED: usize = 2 * 1024 * 1024;
const SENT: usize = 1024 * 1024;
/// The body budget of the test: room for 16 of the stalled bodies and some change, so once
/// the stalled ones hold their share an ordinary event still fits.
const BUDGET: usize = 16 * 1024 * 1024 + 100 * 1024;

/// The resident memory of process `pid` in bytes (`VmRSS` of /proc/PID/status).
fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// Opens a connection and sends the head of a `POST` announcing `DECLARED` bytes (by
/// `Content-Length`, or as the size of its one chunk when `chunked`), then `SENT` bytes of the
/// body (or as much as the proxy takes before it answers and closes).
fn stall_mid_body(port: u16, path: &str, chunked: bool) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    let framing = if chunked {
        format!("transfer-encoding: chunked\r\n\r\n{DECLARED:x}\r\n")
    } else {
        format!("content-length: {DECLARED}\r\n\r\n")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {API_KEY}\r\ncontent-type: application/json\r\n{framing}"
    );
    socket.write_all(head.as_bytes()).expect("send the head");
    // A refused body is answered and its connection closed while we write: that is fine.
    let _ = socket.write_all(&vec![b' '; SENT]);
    socket
}

/// What a stalled connection ended with: the answer's status line, headers and body, read
/// until the proxy closed the connection (a reset after the answer counts as closed).
struct Ending {
    status: u16,
    head: String,
    body: Value,
}

fn read_ending(mut socket: TcpStream, within: Duration) -> Option<Ending> {
    socket.set_read_timeout(Some(within)).expect("read timeout");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection was neither answered nor closed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Ending {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_stay_within_the_budget_and_are_closed_at_the_deadline() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    let mut command = proxy_command(&emulator);
    command
        .env("KINESIS_PROXY__LIMITS__BODY_TIMEOUT_MS", "4000")
        .env(
            "KINESIS_PROXY__LIMITS__MAX_BODY_BYTES",
            DECLARED.to_string(),
        )
        .env(
            "KINESIS_PROXY__LIMITS__MAX_DECODED_BODY_BYTES",
            DECLARED.to_string(),
        )
        .env(
            "KINESIS_PROXY__LIMITS__MAX_BUFFERED_BODY_BYTES",
            BUDGET.to_string(),
        );
    let proxy = RunningProxy::spawn(command);
    let (port, pid) = (proxy.port, proxy.child.id());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let url = proxy.url(&format!("/kinesis/stream/{stream}"));
    let post = |id: &'static str| {
        http.post(&url)
            .header("x-api-key", API_KEY)
            .json(&json!({"event": {"id": id}}))
            .send()
    };
    // Warm: the pipeline started, the allocator past its first requests.
    assert_eq!(post("before").await.expect("POST").status(), 200);
    let before = rss_bytes(pid);

    let path = format!("/kinesis/stream/{stream}");
    let sockets = tokio::task::spawn_blocking(move || {
        // A chunked body refused mid-way must be closed too (not drained).
        (0..STALLED)
            .map(|n| stall_mid_body(port, &path, n % 4 == 0))
            .collect::<Vec<_>>()
    })
    .await
    .expect("the stalling clients");
    let sent_at = Instant::now();
    let during = rss_bytes(pid);
    // Served meanwhile: an ordinary event, and the operations routes.
    let served = post("during").await.expect("POST while bodies stall");
    let served_status = served.status();
    let served_body = served.text().await.unwrap_or_default();
    let page = proxy_page(&http, &proxy).await;
    let buffered = sample(&page, "kinesis_proxy_request_body_buffered_bytes", &[]);

    let endings = tokio::task::spawn_blocking(move || {
        sockets
            .into_iter()
            .map(|socket| read_ending(socket, Duration::from_secs(30)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("the stalling clients");
    let closed_after = sent_at.elapsed();
    let after = proxy_page(&http, &proxy).await;

    let growth = during.saturating_sub(before);
    eprintln!(
        "{STALLED} bodies stalled at {SENT} of {DECLARED} bytes: RSS {} -> {} MiB (+{} MiB), budget {} MiB; all closed after {closed_after:?}",
        before >> 20,
        during >> 20,
        growth >> 20,
        BUDGET >> 20
    );
    // Unbounded, the stalled bodies alone would take STALLED x SENT = 300 MiB (measured with
    // the budget out of the way: RSS +213 MiB at the sample). Bounded: the budget (16 MiB),
    // and what the HTTP server buffers per connection and the allocator keeps (measured:
    // +47 MiB in all).
    assert!(
        growth < 100 << 20,
        "RSS grew by {} MiB while {STALLED} bodies stalled",
        growth >> 20
    );
    assert_eq!(
        served_status, 200,
        "served while bodies stall: {served_body}"
    );
    let buffered = buffered.expect("the buffered-bytes gauge is on /metrics");
    assert!(
        buffered > 0.0 && buffered <= BUDGET as f64,
        "buffered {buffered} within the budget {BUDGET}"
    );

    let (mut timed_out, mut refused) = (0, 0);
    for ending in &endings {
        let Some(Ending { status, head, body }) = ending else {
            // Reset before any answer: the proxy closed it (a refusal racing our writes).
            refused += 1;
            continue;
        };
        match status {
            408 => {
                assert_eq!(body["code"], "body_timeout", "{body}");
                assert!(head.contains("connection: close"), "{head}");
                timed_out += 1;
            }
            503 => {
                assert_eq!(body["code"], "body_budget_exhausted", "{body}");
                assert!(head.contains("retry-after: 1"), "{head}");
                refused += 1;
            }
            other => panic!("a stalled body was answered {other}: {head} {body}"),
        }
    }
    eprintln!("stalled bodies: {timed_out} answered 408 at the deadline, {refused} refused 503");
    assert!(timed_out > 0, "the budget's holders time out");
    assert!(
        refused > 0,
        "the budget ran out ({STALLED} x {SENT} > {BUDGET})"
    );
    assert!(
        timed_out <= BUDGET / SENT,
        "no more bodies held than the budget holds: {timed_out}"
    );
    // Everything given back once the connections are gone.
    assert_eq!(
        sample(&after, "kinesis_proxy_request_body_buffered_bytes", &[]),
        Some(0.0),
        "the budget is given back"
    );
    assert_eq!(post("after").await.expect("POST").status(), 200);
}

async fn proxy_page(http: &reqwest::Client, proxy: &RunningProxy) -> String {
    http.get(proxy.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_for_stalled_bodies() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 1).await;
    // The shipped defaults: a 30 s body timeout and a 30 s grace period.
    let mut proxy = RunningProxy::spawn(proxy_command(&emulator));
    let port = proxy.port;
    let path = format!("/kinesis/stream/{stream}");
    let sockets = tokio::task::spawn_blocking(move || {
        (0..20)
            .map(|n| stall_mid_body(port, &path, n % 4 == 0))
            .collect::<Vec<_>>()
    })
    .await
    .expect("the stalling clients");
    // Every request started (a connection still waiting to be read when the listener stops is
    // closed unanswered, which is fine, but not what this test is about).
    let http = reqwest::Client::new();
    let held = (20 * SENT) as f64;
    let since = Instant::now();
    loop {
        let page = proxy_page(&http, &proxy).await;
        if sample(&page, "kinesis_proxy_request_body_buffered_bytes", &[]) == Some(held) {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "bodies not all read:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sigterm(&proxy.child);
    let started = Instant::now();
    let endings = tokio::task::spawn_blocking(move || {
        sockets
            .into_iter()
            .map(|socket| read_ending(socket, Duration::from_secs(40)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("the stalling clients");
    let status = tokio::task::spawn_blocking(move || proxy.child.wait())
        .await
        .expect("join")
        .expect("wait");
    let took = started.elapsed();
    eprintln!("SIGTERM with 20 stalled bodies: exited after {took:?}");
    assert!(status.success(), "a clean exit: {status:?}");
    // The grace period (30 s) is what it would wait for them; the drain cuts a body that
    // stopped arriving after a second without a byte.
    assert!(
        took < Duration::from_secs(15),
        "exited after {took:?}, waiting for stalled bodies"
    );
    for ending in endings {
        let ending = ending.expect("each stalled request is answered");
        assert_eq!(ending.status, 503, "{}", ending.head);
        assert_eq!(ending.body["code"], "shutting_down", "{}", ending.body);
    }
}

#[test]
fn invalid_body_settings_fail_at_startup_naming_them() {
    for (var, value, setting) in [
        (
            "KINESIS_PROXY__LIMITS__BODY_TIMEOUT_MS",
            "0",
            "limits.body_timeout_ms",
        ),
        // Below limits.max_decoded_body_bytes (40 MiB): the largest body could never pass.
        (
            "KINESIS_PROXY__LIMITS__MAX_BUFFERED_BODY_BYTES",
            "1048576",
            "limits.max_buffered_body_bytes",
        ),
    ] {
        let output = proxy_command("http://127.0.0.1:1")
            .env(var, value)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "EX_CONFIG: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
}
