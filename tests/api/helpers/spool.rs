//! The binary with disk-acknowledged streams (`it-disk-*`) for the spool tests: a spool folder
//! and a fault proxy per test, clients that post events carrying an id, the spool's gauges on
//! `/metrics`, and reading the stream back as a count per id (so a lost event and a duplicate
//! both show).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use super::app::API_KEY;
use super::binary::{proxy_command, RunningProxy};
use super::emulator::{create_stream, kinesalite, read_all, unique_stream_name};
use super::fault_proxy::{FaultProxy, Mode};
use super::metrics_page::sample;

/// The streams the spool tests create all match it; streams named otherwise are memory-acked.
pub const DISK_STREAMS: &str = "it-disk-*";

/// Generous: delivery of a few thousand records to kinesalite on a busy 2-core machine.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A spool folder under target/tmp (beside the emulator's, so `cargo clean` clears what a killed
/// run leaves), removed when dropped.
pub fn spool_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("spool-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a spool folder under target/tmp")
}

/// The binary acknowledging `it-disk-*` on disk in `dir`, Kinesis at `endpoint`.
pub fn disk_proxy_command(endpoint: &str, dir: &Path) -> Command {
    let mut command = proxy_command(endpoint);
    command
        .env("KINESIS_PROXY__STREAMS__ACK_ON_DISK", DISK_STREAMS)
        .env("KINESIS_PROXY__SPOOL__DIR", dir)
        // Shorter than every outage these tests make: a disk record must outlive its deadline
        // (a memory-acked one would be answered 503 at it), so a spool that lets records expire
        // loses some, and the read-back shows it.
        .env("KINESIS_PROXY__RETRY__RECORD_DEADLINE_MS", "1000")
        // Kinesis back, delivery resumes within a fraction of a second, not 2 s of backoff.
        .env("KINESIS_PROXY__RETRY__BACKOFF_MAX_MS", "200")
        .env("KINESIS_PROXY__KINESIS__CALL_TIMEOUT_MS", "1000");
    command
}

/// A running disk proxy and the stream its test posts to.
pub struct DiskProxy {
    pub proxy: RunningProxy,
    pub stream: String,
    pub http: reqwest::Client,
}

/// Posts events to one stream of one proxy; cheap to clone into client tasks, and independent
/// of the process (so a test can kill it while clients are sending).
#[derive(Clone)]
pub struct Poster {
    http: reqwest::Client,
    url: String,
}

impl Poster {
    /// `POST /kinesis/stream/{stream}` of `{"event": {"id": id, "pad": <pad_bytes x "x">}}`.
    pub async fn post(&self, id: &str, pad_bytes: usize) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(&self.url)
            .header("x-api-key", API_KEY)
            .json(&json!({"event": {"id": id, "pad": "x".repeat(pad_bytes)}}))
            .send()
            .await
    }
}

impl DiskProxy {
    pub fn spawn(command: Command, stream: &str) -> DiskProxy {
        DiskProxy {
            proxy: RunningProxy::spawn(command),
            stream: stream.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn poster(&self) -> Poster {
        Poster {
            http: self.http.clone(),
            url: self.proxy.url(&format!("/kinesis/stream/{}", self.stream)),
        }
    }

    pub async fn post(&self, id: &str, pad_bytes: usize) -> reqwest::Result<reqwest::Response> {
        self.poster().post(id, pad_bytes).await
    }

    /// Posts `id` and asserts the disk acknowledgement: 202 `{"queued": 1}`.
    pub async fn post_acked(&self, id: &str) {
        let response = self.post(id, 0).await.expect("POST reaches the proxy");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "event {id} acknowledged on disk: {body}");
        let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
        assert_eq!(answer["queued"], 1, "{body}");
    }

    pub async fn metrics_page(&self) -> String {
        let response = self
            .http
            .get(self.proxy.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("the metrics page")
    }

    /// A series without labels (the spool's own), panicking with the page when it is missing.
    pub async fn metric(&self, name: &str) -> f64 {
        let page = self.metrics_page().await;
        sample(&page, name, &[]).unwrap_or_else(|| panic!("{name} is not on /metrics:\n{page}"))
    }

    /// Waits until the spool holds no live record (everything marked done: accepted by Kinesis,
    /// or finally failed, which the read-back then shows as missing).
    pub async fn wait_until_spool_is_empty(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let page = self.metrics_page().await;
            let left = sample(&page, "kinesis_proxy_spool_records", &[]);
            if left == Some(0.0) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the spool still holds {left:?} records after {timeout:?}:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The stdout log lines so far that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<Value> {
        self.proxy
            .json_lines()
            .into_iter()
            .filter(|line| line.to_string().contains(needle))
            .collect()
    }
}

/// How many times each event id is stored in `stream`.
pub async fn stored_ids(emulator: &str, stream: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for record in read_all(emulator, stream).await {
        let data: Value = serde_json::from_slice(&record.data).expect("stored events are JSON");
        let id = data["id"]
            .as_str()
            .expect("every event has an id")
            .to_owned();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Asserts every id of `acked` is stored, naming a few missing ones and how many there are.
pub fn assert_all_stored(acked: &[String], stored: &HashMap<String, usize>) {
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events answered 202 are not in the stream, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Runs `command` to its exit, which must come within `timeout` (else it is killed and the test
/// fails): its status and its stdout and stderr together.
pub fn run_to_exit(mut command: Command, timeout: Duration) -> (ExitStatus, String) {
    let mut child = command.spawn().expect("the binary starts");
    // Read on threads of their own, so a chatty child never blocks on a full pipe.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
    .collect();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let output: Vec<String> = readers.into_iter().filter_map(|r| r.join().ok()).collect();
            panic!(
                "still running after {timeout:?}; its output:\n{}",
                output.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output: Vec<String> = readers.into_iter().filter_map(|r| r.join().ok()).collect();
    (status, output.join("\n"))
}

/// A disk stream of two shards, a fault proxy in front of kinesalite in `mode`, a spool folder.
pub struct Setup {
    pub emulator: String,
    pub stream: String,
    pub faults: FaultProxy,
    pub dir: TempDir,
}

pub async fn setup(name: &str, mode: Mode) -> Setup {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name(&format!("it-disk-{name}"));
    create_stream(&emulator, &stream, 2).await;
    let faults = FaultProxy::start(&emulator);
    faults.set_mode(mode);
    Setup {
        emulator,
        stream,
        faults,
        dir: spool_dir(),
    }
}

impl Setup {
    /// The binary on this spool folder, Kinesis behind the fault proxy.
    pub fn command(&self) -> Command {
        disk_proxy_command(&self.faults.endpoint, self.dir.path())
    }

    pub fn spawn(&self, command: Command) -> DiskProxy {
        DiskProxy::spawn(command, &self.stream)
    }

    /// With Kinesis healthy, one event (`confirm-0`) through `proxy`, delivered: Kinesis has
    /// confirmed the stream to it (a disk stream never confirmed is refused while Kinesis cannot
    /// answer). Then Kinesis in `mode`.
    pub async fn confirm_then(&self, proxy: &DiskProxy, mode: Mode) {
        self.faults.set_mode(Mode::Healthy);
        proxy.post_acked("confirm-0").await;
        proxy.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
        self.faults.set_mode(mode);
    }

    /// Starts the binary again on this spool with Kinesis healthy and a shard budget that
    /// catches up quickly, checks that it found records to replay (`why` says why it should
    /// have), and waits until it delivered them all.
    pub async fn restart_and_drain(&self, why: &str) -> DiskProxy {
        self.faults.set_mode(Mode::Healthy);
        let mut command = self.command();
        command.env("KINESIS_PROXY__SHARDS__RECORDS_PER_SECOND", "5000");
        let proxy = self.spawn(command);
        let replayed = proxy
            .metric("kinesis_proxy_spool_replayed_records_total")
            .await;
        assert!(replayed > 0.0, "{why}");
        proxy.wait_until_spool_is_empty(DELIVERY_TIMEOUT).await;
        proxy
    }
}

/// SIGKILL, and waits until the process is gone (and its spool lock with it).
pub fn kill(proxy: &mut DiskProxy) {
    proxy.proxy.child.kill().expect("SIGKILL");
    proxy
        .proxy
        .child
        .wait()
        .expect("the killed proxy is reaped");
}

/// What client loops saw.
#[derive(Default)]
pub struct Seen {
    /// Ids answered 202.
    pub acked: Vec<String>,
    /// Every other answer: status and body.
    pub other: Vec<String>,
    /// Requests that got no answer: the proxy died under them.
    pub cut_off: usize,
}

/// One client posting events `{tag}-{n}` one after another, `pause` apart, until `stop` or
/// the proxy goes away.
async fn client_loop(
    poster: Poster,
    tag: String,
    pad: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("{tag}-{n}");
        match poster.post(&id, pad).await {
            Ok(response) if response.status() == 202 => seen.acked.push(id),
            Ok(response) => seen.other.push(format!(
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            )),
            // Nothing more to send to.
            Err(_) => {
                seen.cut_off += 1;
                break;
            }
        }
        tokio::time::sleep(pause).await;
    }
    seen
}

/// Starts `clients` client loops; `join` them for what they saw.
pub fn start_clients(
    poster: &Poster,
    clients: usize,
    pad: usize,
    pause: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..clients)
        .map(|c| {
            let loop_ = client_loop(poster.clone(), format!("c{c}"), pad, pause, stop.clone());
            tokio::spawn(loop_)
        })
        .collect()
}

pub async fn join(clients: Vec<tokio::task::JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for client in clients {
        let seen = client.await.expect("a client task");
        all.acked.extend(seen.acked);
        all.other.extend(seen.other);
        all.cut_off += seen.cut_off;
    }
    all
}

/// Waits for the process to exit, failing the test if it is still running after `limit`.
pub async fn wait_for_exit(proxy: &mut DiskProxy, limit: Duration) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = proxy.proxy.child.try_wait().expect("try_wait") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
