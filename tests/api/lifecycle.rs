//! The process around the engine, through the real binary and real signals: SIGTERM turns
//! readiness off at once and keeps serving for `server.shutdown_delay_ms` before the drain (so
//! a load balancer stops sending before the port closes); SIGINT and a second signal skip the
//! delay; SIGHUP reloads and never ends the process.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, signal, sigterm, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

/// Bounds for "promptly": far above what the behaviour needs, far below the delays tested.
const PROMPTLY: Duration = Duration::from_secs(15);

/// Waits for the process to exit (at most `limit`); its exit code.
async fn exit_code(proxy: &mut RunningProxy, limit: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = proxy.child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(
            started.elapsed() < limit,
            "the proxy did not exit within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that opens a new connection for every request, as a load balancer's new flows do.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn readiness(http: &reqwest::Client, proxy: &RunningProxy) -> (u16, Value) {
    let response = http
        .get(proxy.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_ready(http: &reqwest::Client, proxy: &RunningProxy) {
    let started = Instant::now();
    while readiness(http, proxy).await.0 != 200 {
        assert!(started.elapsed() < PROMPTLY, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_at_once_and_serves_through_the_delay_then_drains() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-delay-");
    create_stream(&emulator, &stream, 1).await;
    let mut command = proxy_command(&emulator);
    command.env("KINESIS_PROXY__SERVER__SHUTDOWN_DELAY_MS", "2000");
    let mut proxy = RunningProxy::spawn(command);
    let http = fresh_connections();
    wait_ready(&http, &proxy).await;

    sigterm(&proxy.child);
    let signalled = Instant::now();
    // Readiness is off at once (the first probe after the signal).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = readiness(&http, &proxy).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "shutting_down");
    assert_eq!(body["status"], "stopping");
    // ...while events on new connections are still taken and written, for the delay.
    let mut acked = Vec::new();
    while signalled.elapsed() < Duration::from_millis(1_500) {
        let id = format!("during-delay-{}", acked.len());
        let response = http
            .post(proxy.url(&format!("/kinesis/stream/{stream}")))
            .header("x-api-key", API_KEY)
            .json(&json!({"event": {"id": id}}))
            .send()
            .await
            .expect("the listener still accepts during the delay");
        assert_eq!(response.status(), 200);
        acked.push(id);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acked.len() >= 5, "{acked:?}");

    // Then the drain: the process exits 0 and the port is closed.
    assert_eq!(exit_code(&mut proxy, PROMPTLY).await, Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(2_000),
        "it kept serving for the delay"
    );
    assert!(http.get(proxy.url("/healthz")).send().await.is_err());
    let stored: Vec<String> = read_all(&emulator, &stream)
        .await
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.data).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "{id} answered 200 is in the stream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_skips_the_delay_and_sigint_has_none() {
    let emulator = kinesalite().await.endpoint.clone();
    let http = fresh_connections();
    for second_signal in [true, false] {
        let mut command = proxy_command(&emulator);
        command.env("KINESIS_PROXY__SERVER__SHUTDOWN_DELAY_MS", "600000");
        let mut proxy = RunningProxy::spawn(command);
        wait_ready(&http, &proxy).await;
        if second_signal {
            sigterm(&proxy.child);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(readiness(&http, &proxy).await.0, 503);
            sigterm(&proxy.child);
        } else {
            signal(&proxy.child, "INT");
        }
        assert_eq!(exit_code(&mut proxy, PROMPTLY).await, Some(0));
    }
}
