//! The operator's view: what `/metrics` shows (a `region` on every pipeline series, counters of
//! known label sets at 0 before anything happened, `process_*`, the build, requests per API
//! key), and the real binary's command line and log output.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::app::{spawn_app_with, AppOptions};
use crate::helpers::binary::{proxy_command, sigterm};
use crate::helpers::emulator::kinesalite;
use crate::helpers::metrics_page::sample;

/// Keys of their own, so other tests' requests (all with the shared test key) do not count here.
const KEY: &str = "operations-key-0123456789";

#[tokio::test]
async fn metrics_show_regions_zeroed_counters_process_build_and_requests_per_key() {
    let (used, unused) = ("operations", "operations-unused");
    let keys = vec![
        format!("{used}:{KEY}"),
        format!("{unused}:another-key-0123456789"),
    ];
    let app = spawn_app_with(AppOptions {
        customize: Box::new(move |s| {
            s.auth.keys = keys;
            s.kinesis.allowed_regions = vec!["eu-west-1".into()];
        }),
        ..AppOptions::default()
    })
    .await;

    // Before any request: the build, the process, and every configured key at 0.
    let page = app.metrics_page().await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(&page, "kinesis_proxy_build_info", &[("version", version)]),
        Some(1.0),
        "{page}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&page, name, &[]).is_some(),
            "{name} missing:\n{page}"
        );
    }
    let resident = sample(&page, "process_resident_memory_bytes", &[]).unwrap_or(0.0);
    assert!(resident > 1e6, "resident memory {resident} bytes:\n{page}");
    let key_requests = |page: &str, key: &str| {
        sample(
            page,
            "kinesis_proxy_api_key_requests_total",
            &[("key", key)],
        )
    };
    assert_eq!(key_requests(&page, used), Some(0.0), "{page}");
    assert_eq!(key_requests(&page, unused), Some(0.0), "{page}");

    // Three accepted events with one key, one request with a wrong key, and the same stream
    // in a second region: a pipeline (and series) of its own, whatever kinesalite answers there.
    let url = app.url(&format!("/kinesis/stream/{}", app.stream));
    let post = |key: &str, body: serde_json::Value| {
        app.client
            .post(&url)
            .header("x-api-key", key)
            .json(&body)
            .send()
    };
    for i in 0..3 {
        let response = post(KEY, json!({"event": {"i": i}})).await.expect("sent");
        assert_eq!(response.status(), 200);
    }
    let refused = post("not-a-configured-key-0123", json!({"event": 1}))
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
    let other_region = post(KEY, json!({"event": 1, "region": "eu-west-1"}))
        .await
        .expect("sent");

    let page = app.metrics_page().await;
    assert_eq!(key_requests(&page, used), Some(4.0), "{page}");
    assert_eq!(key_requests(&page, unused), Some(0.0), "{page}");

    let stream = app.stream.as_str();
    let here = [("region", "us-west-2"), ("stream", stream)];
    let there = [("region", "eu-west-1"), ("stream", stream)];
    assert_eq!(
        sample(&page, "kinesis_proxy_records_accepted_total", &here),
        Some(3.0),
        "{page}"
    );
    for pipeline in [&here, &there] {
        for gauge in ["kinesis_proxy_queue_records", "kinesis_proxy_queue_bytes"] {
            assert!(
                sample(&page, gauge, pipeline).is_some(),
                "{gauge} {pipeline:?} missing (second region answered {}):\n{page}",
                other_region.status()
            );
        }
    }

    // Counters of known label sets are there at 0 before their first event.
    let zero = |name: &str, label: &str, value: &str| {
        let mut labels = here.to_vec();
        labels.push((label, value));
        assert_eq!(
            sample(&page, name, &labels),
            Some(0.0),
            "{name} {labels:?}:\n{page}"
        );
    };
    for reason in [
        "retries_exhausted",
        "unavailable",
        "rejected",
        "shutting_down",
    ] {
        zero("kinesis_proxy_records_failed_total", "reason", reason);
    }
    for code in ["ProvisionedThroughputExceededException", "InternalFailure"] {
        zero("kinesis_proxy_failed_entries_total", "error_code", code);
    }
    zero(
        "kinesis_proxy_put_records_calls_total",
        "outcome",
        "partial",
    );
    for reason in ["full", "bytes", "shutdown"] {
        zero("kinesis_proxy_flushes_total", "reason", reason);
    }
    for reason in ["linger", "idle"] {
        let mut labels = here.to_vec();
        labels.push(("reason", reason));
        assert!(
            sample(&page, "kinesis_proxy_flushes_total", &labels).is_some(),
            "flushes {reason}:\n{page}"
        );
    }
    let mut ok = here.to_vec();
    ok.push(("outcome", "ok"));
    assert!(
        sample(&page, "kinesis_proxy_put_records_calls_total", &ok).unwrap_or(0.0) >= 1.0,
        "{page}"
    );
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kinesis-proxy"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

#[test]
fn version_and_help_exit_0_on_stdout_and_unknown_arguments_exit_2() {
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("kinesis-proxy {}\n", env!("CARGO_PKG_VERSION"))
    );

    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let usage = String::from_utf8_lossy(&help.stdout);
    assert!(usage.starts_with("usage: kinesis-proxy"), "{usage}");
    assert!(
        usage.contains("\n  -h, --help"),
        "options indented: {usage}"
    );
    for option in ["--config", "--version", "KINESIS_PROXY__"] {
        assert!(usage.contains(option), "{option} not in the usage: {usage}");
    }
    assert!(help.stderr.is_empty());

    let unknown = run(&["--frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("--frobnicate"), "{stderr}");
    assert!(stderr.contains("usage: kinesis-proxy"), "{stderr}");
}

/// The text log written to a pipe has no colour codes, and a client speaking HTTP/2 to the
/// HTTP/1 port is not an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_text_log_has_no_escape_codes_and_no_error_for_an_http2_attempt() {
    let emulator = kinesalite().await.endpoint.clone();
    let mut child = proxy_command(&emulator)
        .env("KINESIS_PROXY__LOG__FORMAT", "text")
        .env("KINESIS_PROXY__LOG__LEVEL", "info")
        // The defaults, as an operator who sets nothing gets them.
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .spawn()
        .expect("proxy binary starts");
    // Lines as they come, on a thread of their own, so a test that fails cannot hang on a read.
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let next_line = |log: &mut Vec<String>| {
        let line = lines.recv_timeout(Duration::from_secs(30)).ok()?;
        log.push(line.clone());
        Some(line)
    };

    // Up to the "listening" line, which holds the bound port (colour codes, if any, removed
    // to find it: the assertion below is the one that should fail on them).
    let port = loop {
        let Some(line) = next_line(&mut log) else {
            panic!("the proxy logged no port:\n{}", log.join("\n"));
        };
        let plain = without_escape_codes(&line);
        if let Some((_, after)) = plain.split_once(" port=") {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse::<u16>().expect("a port number");
        }
    };

    // What `curl --http2-prior-knowledge` sends first: the HTTP/2 connection preface.
    let mut connection = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    connection
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("send the preface");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut answer)).await;
    // The proxy serves on as before.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);

    sigterm(&child);
    while next_line(&mut log).is_some() {}
    let status = child.wait().expect("wait");
    let log = log.join("\n");
    assert!(status.success(), "{status:?}:\n{log}");
    assert!(log.contains("stopped"), "the whole log was read:\n{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escape codes in a piped log:\n{log}"
    );
    assert!(!log.contains("ERROR"), "an ERROR line:\n{log}");
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn without_escape_codes(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            plain.push(c);
        }
    }
    plain
}
