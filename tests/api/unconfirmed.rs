//! Streams Kinesis never confirmed (issue 23, item 3), through the real binary: while Kinesis
//! cannot answer, a disk stream it never confirmed is refused 503 `stream_unconfirmed` (not
//! acknowledged, then refused for good into `failed.ndjson`), while one it confirmed, in this
//! process or an earlier one on the same spool folder, is still taken and delivered once
//! Kinesis is back. And the series of pipelines retired because their stream does not exist
//! leave `/metrics`, so made-up names do not pile up as labels.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::emulator::unique_stream_name;
use crate::helpers::fault_proxy::Mode;
use crate::helpers::spool::{
    assert_all_stored, kill, setup, stored_ids, DiskProxy, DELIVERY_TIMEOUT,
};

/// Posts one event to `stream` through `proxy`: status, `Retry-After` and the JSON answer.
async fn post_to(proxy: &DiskProxy, stream: &str, id: &str) -> (u16, Option<String>, Value) {
    let response = proxy
        .http
        .post(proxy.proxy.url(&format!("/kinesis/{stream}")))
        .header("x-api-key", API_KEY)
        .json(&json!({"event": {"id": id}}))
        .send()
        .await
        .expect("POST reaches the proxy");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// Asserts the answer for a made-up disk stream while Kinesis cannot answer.
fn assert_unconfirmed(answer: &(u16, Option<String>, Value), stream: &str) {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, 503, "{stream}: {body}");
    assert_eq!(body["code"], "stream_unconfirmed", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot check") && message.contains(stream),
        "says why: {message}"
    );
    let seconds: u64 = retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a Retry-After in seconds: {retry_after:?}"));
    assert!(seconds >= 1, "Retry-After: {seconds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_kinesis_is_down_a_made_up_disk_stream_is_refused_and_a_confirmed_one_is_taken() {
    let setup = setup("confirmed", Mode::Healthy).await;
    let proxy = setup.spawn(setup.command());
    setup.confirm_then(&proxy, Mode::Refuse).await;

    let made_up = unique_stream_name("it-disk-nope");
    let first = post_to(&proxy, &made_up, "nope-1").await;
    assert_unconfirmed(&first, &made_up);
    // Asked again later (past the 2 s it is remembered), still refused: Kinesis still cannot say.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_unconfirmed(&post_to(&proxy, &made_up, "nope-2").await, &made_up);
    // The confirmed stream is still taken on disk.
    let acked: Vec<String> = (0..10).map(|i| format!("outage-{i}")).collect();
    for id in &acked {
        proxy.post_acked(id).await;
    }

    setup.faults.set_mode(Mode::Healthy);
    proxy.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
    // Kinesis answers again: the made-up name is what it is, a stream that does not exist
    // (once the 2 s in which it is not asked again are over).
    let started = Instant::now();
    loop {
        let (status, _, body) = post_to(&proxy, &made_up, "nope-3").await;
        if status == 404 {
            assert_eq!(body["code"], "stream_not_found", "{body}");
            break;
        }
        assert_eq!(body["code"], "stream_unconfirmed", "{body}");
        assert!(started.elapsed() < Duration::from_secs(5), "still {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing of it was ever acknowledged, so nothing of it failed for good.
    let failed = std::fs::read_to_string(setup.dir.path().join("failed.ndjson"));
    assert!(
        failed
            .as_deref()
            .map_or(true, |text| !text.contains(&made_up)),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_confirmed_before_a_crash_is_taken_after_it_while_kinesis_is_down() {
    let setup = setup("remembered", Mode::Healthy).await;
    let mut first = setup.spawn(setup.command());
    setup.confirm_then(&first, Mode::Healthy).await;
    // Remembered in the spool folder: written on a blocking thread right after the
    // confirmation; a SIGKILL must not lose it once written.
    let file = setup.dir.path().join("confirmed-streams.json");
    let started = Instant::now();
    while !std::fs::read_to_string(&file).is_ok_and(|text| text.contains(&setup.stream)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never names the stream",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(&mut first);

    // The next start finds Kinesis down: it cannot confirm anything now.
    setup.faults.set_mode(Mode::Refuse);
    let second = setup.spawn(setup.command());
    let acked: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    for id in &acked {
        second.post_acked(id).await;
    }
    let made_up = unique_stream_name("it-disk-nope");
    assert_unconfirmed(&post_to(&second, &made_up, "nope-1").await, &made_up);

    setup.faults.set_mode(Mode::Healthy);
    second.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_pipelines_retired_for_a_missing_stream_leave_metrics() {
    // Without DescribeStreamSummary the proxy cannot check names up front: each made-up name
    // gets a pipeline, and Kinesis' ResourceNotFoundException to its first write retires it.
    let setup = setup("retired", Mode::Healthy).await;
    setup
        .faults
        .refuse_operation("DescribeStreamSummary", Some("AccessDeniedException"));
    let mut command = setup.command();
    // Missing pipelines are swept every 250 ms.
    command.env("KINESIS_PROXY__LIMITS__PIPELINE_IDLE_TIMEOUT_MS", "1000");
    let proxy = setup.spawn(command);
    proxy.post_acked("real-0").await;

    let tag = unique_stream_name("nope").replace('-', "_");
    // Acknowledged at Kinesis (it-*) and on disk (it-disk-*): 404 to the client, or 202 and
    // then failed.ndjson.
    let memory: Vec<String> = (0..8).map(|i| format!("it-{tag}-{i}")).collect();
    let disk: Vec<String> = (0..8).map(|i| format!("it-disk-{tag}-{i}")).collect();
    for stream in &memory {
        let (status, _, body) = post_to(&proxy, stream, "x").await;
        assert_eq!((status, &body["code"]), (404, &json!("stream_not_found")));
    }
    for stream in &disk {
        let (status, _, body) = post_to(&proxy, stream, "x").await;
        assert_eq!(status, 202, "{body}");
    }
    // Every one of them had a pipeline (and so series)...
    for stream in memory.iter().chain(&disk) {
        let started = proxy
            .log_lines_with("pipeline started")
            .into_iter()
            .any(|line| line.to_string().contains(stream.as_str()));
        assert!(started, "{stream} got a pipeline");
    }
    // ...and once the disk ones' records failed for good and every pipeline is retired, no
    // series names any of them.
    let started = Instant::now();
    loop {
        let failed =
            std::fs::read_to_string(setup.dir.path().join("failed.ndjson")).unwrap_or_default();
        let all_failed = disk.iter().all(|stream| failed.contains(stream.as_str()));
        let page = proxy.metrics_page().await;
        let left: Vec<&str> = page.lines().filter(|line| line.contains(&tag)).collect();
        if all_failed && left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "after 20 s, {} series of made-up names are still on /metrics (all failed: {all_failed}), e.g. {:?}",
            left.len(),
            &left[..left.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The real stream's series are still there while its pipeline lives.
    proxy.post_acked("real-1").await;
    let page = proxy.metrics_page().await;
    assert!(
        page.lines().any(
            |line| line.starts_with("kinesis_proxy_events_received_total")
                && line.contains(&setup.stream)
        ),
        "{page}"
    );
}
