//! Stopping while Kinesis is unreachable (issue 23, item 5), through the real binary: events
//! acknowledged on disk need no drain, so a Ctrl-C stops promptly (not after the grace period)
//! and the next start delivers them; a second SIGTERM/SIGINT during a drain ends the process at
//! once, after closing the spool, and logs what it gave up.

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::json;

use crate::helpers::app::API_KEY;
use crate::helpers::binary::sigterm;
use crate::helpers::emulator::{create_stream, unique_stream_name};
use crate::helpers::fault_proxy::Mode;
use crate::helpers::spool::{setup, wait_for_exit};

/// Well below the shipped grace period (30 s), which is what the drain used to take.
const PROMPTLY: Duration = Duration::from_secs(10);

fn sigint(child: &Child) {
    let signalled = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(signalled.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_with_kinesis_down_stops_promptly_when_everything_is_on_disk() {
    let setup = setup("ctrl-c", Mode::Healthy).await;
    // The shipped grace period and record deadline (30 s each): calls hang until their
    // timeout (1 s) and are retried until one of them ends, as in the issue (29.8 s).
    let mut command = setup.command();
    command.env("KINESIS_PROXY__RETRY__RECORD_DEADLINE_MS", "30000");
    let mut proxy = setup.spawn(command);
    // Kinesis confirms the stream, then hangs.
    setup.confirm_then(&proxy, Mode::Hang).await;
    proxy.post_acked("on-disk-1").await;
    proxy.post_acked("on-disk-2").await;
    // Long enough for the feeder to hand them over: calls are out, hanging.
    tokio::time::sleep(Duration::from_millis(500)).await;

    sigint(&proxy.proxy.child);
    let (status, took) = wait_for_exit(&mut proxy, PROMPTLY).await;
    eprintln!("Ctrl-C with Kinesis down, events on disk: exited after {took:?}");
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(
        !proxy.log_lines_with("spool closed").is_empty(),
        "the spool was closed"
    );

    let next = setup
        .restart_and_drain("the events stayed in the spool")
        .await;
    let stored = crate::helpers::spool::stored_ids(&setup.emulator, &setup.stream).await;
    crate::helpers::spool::assert_all_stored(
        &["on-disk-1".to_owned(), "on-disk-2".to_owned()],
        &stored,
    );
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_and_says_what_it_gave_up() {
    let setup = setup("second-signal", Mode::Healthy).await;
    // Besides the disk stream: one acknowledged in memory, one acknowledged by Kinesis.
    let memory = unique_stream_name("it-mem-");
    let waited = unique_stream_name("it-wait-");
    create_stream(&setup.emulator, &memory, 1).await;
    create_stream(&setup.emulator, &waited, 1).await;
    let mut command = setup.command();
    command
        .env("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", "it-mem-*")
        // Records outlive the test: given up by the stop, not by their deadline.
        .env("KINESIS_PROXY__RETRY__RECORD_DEADLINE_MS", "120000");
    let mut proxy = setup.spawn(command);
    let post = |stream: &str, id: &str| {
        proxy
            .http
            .post(proxy.proxy.url(&format!("/kinesis/stream/{stream}")))
            .header("x-api-key", API_KEY)
            .json(&json!({"event": {"id": id}}))
            .send()
    };
    // Each stream's pipeline started while Kinesis answers.
    assert_eq!(post(&memory, "m-0").await.expect("POST").status(), 202);
    assert_eq!(post(&waited, "w-0").await.expect("POST").status(), 200);
    proxy.post_acked("d-0").await;

    setup.faults.set_mode(Mode::Hang);
    for i in 1..=5 {
        let id = format!("m-{i}");
        assert_eq!(post(&memory, &id).await.expect("POST").status(), 202);
    }
    let waiting = tokio::spawn(post(&waited, "w-1"));
    proxy.post_acked("d-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    sigterm(&proxy.proxy.child);
    // The drain is under way (it would wait for Kinesis for the whole grace period, 30 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        proxy.proxy.child.try_wait().expect("try_wait").is_none(),
        "still draining"
    );
    sigint(&proxy.proxy.child);
    let (status, took) = wait_for_exit(&mut proxy, PROMPTLY).await;
    eprintln!("second signal during a drain with Kinesis down: exited {took:?} after it");
    assert!(status.success(), "an orderly exit: {status:?}");
    let answer = waiting.await.expect("the waiting client");
    assert!(
        answer.as_ref().map_or(true, |r| r.status() != 200),
        "the event waiting for Kinesis was not acknowledged: {answer:?}"
    );

    let given_up = proxy.log_lines_with("stopped without draining");
    assert_eq!(
        given_up.len(),
        1,
        "one line says what was given up: {given_up:?}"
    );
    assert_eq!(given_up[0]["memory_acknowledged"], 5, "{}", given_up[0]);
    assert_eq!(given_up[0]["in_flight"], 1, "{}", given_up[0]);
    let closed = proxy.log_lines_with("spool closed");
    assert_eq!(closed.len(), 1, "the spool was closed first: {closed:?}");

    // The spool was flushed: the event acknowledged on disk while Kinesis hung is delivered.
    setup
        .restart_and_drain("d-1 was acknowledged on disk while Kinesis hung")
        .await;
    let stored = crate::helpers::spool::stored_ids(&setup.emulator, &setup.stream).await;
    crate::helpers::spool::assert_all_stored(&["d-0".to_owned(), "d-1".to_owned()], &stored);
}
