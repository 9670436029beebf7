//! Disk acknowledgement (issue 11) through the real binary: whatever happens after a 202 (a
//! SIGKILL under load, a torn write, a full spool, a Kinesis outage, a SIGTERM under load or
//! with Kinesis down), every acknowledged event ends up in the stream, read back from
//! kinesalite; replayed ones before new ones. Also: one process per spool folder, and a stream
//! cannot be acknowledged both on disk and at enqueue.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::binary::{proxy_command, sigterm};
use crate::helpers::emulator::read_all;
use crate::helpers::fault_proxy::Mode;
use crate::helpers::metrics_page::sample;
use crate::helpers::spool::{
    assert_all_stored, disk_proxy_command, join, kill, run_to_exit, setup, spool_dir,
    start_clients, stored_ids, wait_for_exit, Seen, DELIVERY_TIMEOUT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_then_restart_delivers_every_acknowledged_event() {
    let setup = setup("sigkill", Mode::Delay(Duration::from_millis(100))).await;
    // A slow Kinesis (100 ms a call, 100 records/s a shard, so at most ~600 delivered in 2 s
    // with the budget's first second): clients outrun delivery, so the spool holds a backlog,
    // not only the calls in flight, when the kill lands.
    let mut command = setup.command();
    command.env("KINESIS_PROXY__SHARDS__RECORDS_PER_SECOND", "100");
    let mut first = setup.spawn(command);

    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(&first.poster(), 16, 100, Duration::ZERO, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(&mut first);
    stop.store(true, Ordering::Relaxed);
    let Seen {
        acked,
        other,
        cut_off,
    } = join(clients).await;
    assert!(other.is_empty(), "disk streams answer 202: {other:?}");
    assert!(
        acked.len() > 200,
        "clients were sending ({} acknowledged)",
        acked.len()
    );
    assert!(cut_off > 0, "the kill cut requests off");

    // Back up, with Kinesis fast again and a budget that catches up quickly.
    let second = setup
        .restart_and_drain("the kill left records in the spool")
        .await;
    let replayed = second
        .metric("kinesis_proxy_spool_replayed_records_total")
        .await;

    let stored = stored_ids(&setup.emulator, &setup.stream).await;
    assert_all_stored(&acked, &stored);
    let duplicates: usize = stored.values().map(|n| n - 1).sum();
    let rate = duplicates as f64 / acked.len() as f64;
    eprintln!(
        "spool SIGKILL duplicate rate: {:.2}% ({duplicates} duplicates, {} events acknowledged, \
         {replayed} replayed, {} stored without an answer)",
        rate * 100.0,
        acked.len(),
        stored.len() - acked.len()
    );
    assert!(rate < 0.5, "at least once, but not that often: {rate}");
}

/// A frame header announcing a 300-byte body, then 41 bytes of it: a write cut short.
fn torn_frame() -> Vec<u8> {
    let mut bytes = 300u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&0xdead_beef_u32.to_le_bytes());
    bytes.extend((0..41u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    bytes
}

/// The segment being written: segments are named by their first id, zero-padded.
fn newest_segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the spool folder")
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .max()
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_at_start_and_every_acknowledged_event_arrives() {
    let setup = setup("torn", Mode::Healthy).await;
    let mut first = setup.spawn(setup.command());
    setup.confirm_then(&first, Mode::Refuse).await;
    let acked: Vec<String> = (0..20).map(|i| format!("torn-{i}")).collect();
    for id in &acked {
        first.post_acked(id).await;
    }
    // Past the records' deadline (1 s) with Kinesis refusing: they must still be pending.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    kill(&mut first);
    let segment = newest_segment(setup.dir.path());
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .and_then(|mut file| file.write_all(&torn_frame()))
        .expect("append a torn frame to the segment");

    setup.faults.set_mode(Mode::Healthy);
    let second = setup.spawn(setup.command());
    let torn = second.log_lines_with("torn tail");
    assert_eq!(torn.len(), 1, "one WARN line: {torn:?}");
    let opened = second.log_lines_with("spool opened");
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["torn_tails_cut"], 1, "{}", opened[0]);
    assert_eq!(opened[0]["pending_records"], 20, "{}", opened[0]);
    assert_eq!(
        second.metric("kinesis_proxy_spool_torn_tails_total").await,
        1.0
    );
    second.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_with_retry_after_and_loses_nothing_acknowledged() {
    let setup = setup("full", Mode::Healthy).await;
    let mut command = setup.command();
    // The smallest spool allowed: two 1 MiB segments.
    command
        .env("KINESIS_PROXY__SPOOL__SEGMENT_BYTES", "1048576")
        .env("KINESIS_PROXY__SPOOL__MAX_BYTES", "2097152");
    let proxy = setup.spawn(command);
    setup.confirm_then(&proxy, Mode::Refuse).await;
    let poster = proxy.poster();

    let (mut acked, mut refusal) = (Vec::new(), None);
    for i in 0..2_000 {
        let id = format!("full-{i}");
        let response = poster
            .post(&id, 4_000)
            .await
            .expect("POST reaches the proxy");
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.expect("a JSON answer");
        match status.as_u16() {
            202 => acked.push(id),
            503 => {
                refusal = Some((body, retry_after));
                break;
            }
            _ => panic!("event {i}: {status} {body}"),
        }
    }
    let (body, retry_after) = refusal.expect("the spool filled up within 8 MB of events");
    assert_eq!(body["code"], "spool_full", "{body}");
    let seconds: u64 = retry_after
        .expect("a Retry-After header")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Retry-After in seconds");
    assert!(seconds >= 1, "Retry-After: {seconds}");
    // Refused for its bound, not before: at least a segment's worth was taken.
    assert!(acked.len() * 4_000 >= 1_048_576, "{} taken", acked.len());
    assert!(proxy.metric("kinesis_proxy_spool_refusals_total").await >= 1.0);
    let health = proxy
        .http
        .get(proxy.proxy.url("/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200, "still serving");

    setup.faults.set_mode(Mode::Healthy);
    proxy.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
    // Delivered segments are deleted: the spool takes events again.
    let started = Instant::now();
    loop {
        let response = poster.post("after-full", 4_000).await.expect("POST");
        if response.status() == 202 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still refused once delivered: {}",
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_outage_is_ridden_out_on_disk() {
    let setup = setup("outage", Mode::Healthy).await;
    let mut command = setup.command();
    // Probed often, so readiness follows the outage within the test.
    command.env("KINESIS_PROXY__KINESIS__READINESS_PROBE_INTERVAL_MS", "200");
    let proxy = setup.spawn(command);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(&proxy.poster(), 4, 100, Duration::from_millis(20), &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.faults.set_mode(Mode::Refuse);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = proxy.metric("kinesis_proxy_spool_records").await;
    // The probe sees Kinesis gone, and the instance stays in rotation: its disk streams take
    // events (a load balancer dropping it would turn the outage into refusals).
    let reachable = proxy.metric("kinesis_proxy_kinesis_reachable").await;
    let ready = proxy
        .http
        .get(proxy.proxy.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    let ready_status = ready.status().as_u16();
    let ready_body: Value = ready.json().await.expect("a JSON answer");
    setup.faults.set_mode(Mode::Healthy);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let Seen { acked, other, .. } = join(clients).await;

    assert!(
        setup.faults.stats().calls_failed_by_mode > 0,
        "the proxy called Kinesis during the outage"
    );
    assert!(held > 0.0, "the spool held the outage's events");
    assert_eq!(reachable, 0.0, "the readiness probe saw the outage");
    assert_eq!(
        (ready_status, ready_body["status"].as_str()),
        (200, Some("spooling")),
        "{ready_body}"
    );
    // The outage outlasted the records' deadline (1 s): they were handed over again, not dropped.
    let page = proxy.metrics_page().await;
    let resent = sample(
        &page,
        "kinesis_proxy_spool_resent_records_total",
        &[("stream", &setup.stream)],
    );
    assert!(resent > Some(0.0), "resent {resent:?}:\n{page}");
    assert!(other.is_empty(), "202 throughout the outage: {other:?}");
    assert!(acked.len() > 100, "{} acknowledged", acked.len());
    proxy.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_spool_folder_exits_naming_it() {
    let setup = setup("lock", Mode::Healthy).await;
    let first = setup.spawn(setup.command());
    let (status, output) = run_to_exit(setup.command(), Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "an error, not a panic:\n{output}");
    let dir = setup.dir.path().display().to_string();
    assert!(output.contains(&dir), "names {dir}:\n{output}");
    assert!(
        output.contains("in use by another process"),
        "says why:\n{output}"
    );
    // The refused process left the first one's lock and spool alone.
    first.post_acked("after-second").await;
    first.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_leaves_every_acknowledged_event_delivered_or_spooled() {
    // A slow Kinesis (20 records/s a shard: ~160 delivered by the end of the grace period), so
    // a backlog is in the spool when SIGTERM comes and the drain cannot deliver it all.
    let setup = setup("term-load", Mode::Delay(Duration::from_millis(100))).await;
    let grace = Duration::from_secs(2);
    let mut command = setup.command();
    command
        .env("KINESIS_PROXY__SHARDS__RECORDS_PER_SECOND", "20")
        .env(
            "KINESIS_PROXY__SERVER__SHUTDOWN_GRACE_MS",
            grace.as_millis().to_string(),
        );
    let mut first = setup.spawn(command);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(&first.poster(), 8, 100, Duration::ZERO, &stop);
    // SIGTERM once a backlog is on disk: judged by what the spool fsynced, not by time, so a
    // busy machine (other tests in parallel) makes the test slower, never wrong.
    let started = std::time::Instant::now();
    while first
        .metric("kinesis_proxy_spool_records_fsynced_total")
        .await
        < 320.0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "320 events were not spooled within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sigterm(&first.proxy.child);
    let (status, took) = wait_for_exit(&mut first, grace + Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let Seen { acked, other, .. } = join(clients).await;
    eprintln!(
        "spool SIGTERM under load: exited after {took:?}, {} acknowledged",
        acked.len()
    );
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(acked.len() > 300, "more than the drain can deliver");
    // Requests that came during the drain: refused as such, never failed.
    assert!(
        other
            .iter()
            .all(|answer| answer.starts_with("503") && answer.contains("shutting_down")),
        "{other:?}"
    );

    setup
        .restart_and_drain("the drain could not deliver it all")
        .await;
    assert_all_stored(&acked, &stored_ids(&setup.emulator, &setup.stream).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_kinesis_down_exits_in_the_grace_period_and_the_next_start_delivers() {
    // Calls hang: the drain cannot finish, only the grace period can end it.
    let setup = setup("sigterm", Mode::Healthy).await;
    let grace = Duration::from_secs(2);
    let mut command = setup.command();
    command.env(
        "KINESIS_PROXY__SERVER__SHUTDOWN_GRACE_MS",
        grace.as_millis().to_string(),
    );
    let mut first = setup.spawn(command);
    // Delivered before the outage: first in its shard, where the order check expects it.
    setup.confirm_then(&first, Mode::Hang).await;
    let acked: Vec<String> = (0..30).map(|i| format!("term-{i}")).collect();
    for id in &acked {
        first.post_acked(id).await;
    }

    sigterm(&first.proxy.child);
    let (status, took) = wait_for_exit(&mut first, grace + Duration::from_secs(3)).await;
    eprintln!("spool SIGTERM with Kinesis down: exited after {took:?}");
    assert!(status.success(), "a clean exit: {status:?}");

    // Straight to kinesalite: the calls still hanging in the fault proxy are never forwarded,
    // so the stream holds only what the next start sent. One call at a time, so the stream
    // holds it in the order it was sent.
    let mut command = disk_proxy_command(&setup.emulator, setup.dir.path());
    command.env("KINESIS_PROXY__BATCHING__MAX_IN_FLIGHT_CALLS", "1");
    let second = setup.spawn(command);
    assert_eq!(
        second
            .metric("kinesis_proxy_spool_replayed_records_total")
            .await,
        30.0,
        "every event was left in the spool"
    );
    let new: Vec<String> = (0..10).map(|i| format!("new-{i}")).collect();
    for id in &new {
        second.post_acked(id).await;
    }
    second.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;

    let stored = read_all(&setup.emulator, &setup.stream).await;
    let mut by_shard: BTreeMap<&str, Vec<(bool, u32)>> = BTreeMap::new();
    for record in &stored {
        let data: Value = serde_json::from_slice(&record.data).expect("stored events are JSON");
        let id = data["id"].as_str().expect("every event has an id");
        let (tag, n) = id.split_once('-').expect("ids are tag-n");
        by_shard
            .entry(&record.shard_id)
            .or_default()
            .push((tag == "new", n.parse().expect("a number")));
    }
    for (shard, ids) in &by_shard {
        let mut sent_order = ids.clone();
        sent_order.sort_unstable();
        assert_eq!(
            ids, &sent_order,
            "{shard}: the replayed events first, oldest first, each once (false: term-n, true: new-n)"
        );
    }
    let all: Vec<String> = acked.iter().chain(&new).cloned().collect();
    assert_all_stored(&all, &stored_ids(&setup.emulator, &setup.stream).await);
}

#[test]
fn a_stream_acknowledged_both_on_disk_and_at_enqueue_is_a_startup_error() {
    let dir = spool_dir();
    let mut command = proxy_command("http://127.0.0.1:1");
    command
        .env("KINESIS_PROXY__STREAMS__ACK_ON_DISK", "it-x-*")
        .env("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", "it-x-a")
        .env("KINESIS_PROXY__SPOOL__DIR", dir.path());
    let (status, output) = run_to_exit(command, Duration::from_secs(10));
    assert_eq!(status.code(), Some(78), "EX_CONFIG:\n{output}");
    assert!(output.contains("streams.ack_on_disk"), "{output}");
}
