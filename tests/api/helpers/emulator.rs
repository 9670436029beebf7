//! A local Kinesis for the integration tests: one kinesalite per test-binary run, plus small SDK
//! helpers to create streams and read back what landed in them.
//!
//! Why one emulator for the whole binary: starting node and LevelDB costs ~0.5 s, and tests stay
//! independent by using their own streams (`unique_stream_name`). Why nothing runtime-bound in the
//! static: every `#[tokio::test]` has its own runtime, and the AWS SDK's connection pool is tied to
//! the runtime that created it, so the static holds only a `std::process::Child` and every helper
//! here builds its SDK client per call.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::StreamStatus;

use super::kinesis_read;
pub use super::kinesis_read::StoredRecord;

/// How long kinesalite may take to print `READY` before a test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `create_stream` waits for a stream to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running emulator shared by all tests of this binary.
pub struct Kinesalite {
    /// Base URL to give an SDK client or the proxy, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    /// Kept only so it is never dropped: the emulator exits when this pipe closes, which the
    /// kernel does when the test binary exits or dies, so no run leaves a node process behind.
    _lifeline: (Child, ChildStdin),
}

/// The shared emulator, started on first use. Panics with the emulator's log if it cannot start.
pub async fn kinesalite() -> &'static Kinesalite {
    static EMULATOR: OnceLock<Kinesalite> = OnceLock::new();
    // Blocking here is fine: it happens once, for at most START_TIMEOUT, and a test runtime has
    // nothing else to do meanwhile. Other tests block on the OnceLock until it is set.
    EMULATOR.get_or_init(start_kinesalite)
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn start_kinesalite() -> Kinesalite {
    let package_dir = repo_root().join("scripts/kinesalite");
    if !package_dir.join("node_modules/kinesalite").is_dir() {
        panic!(
            "kinesalite is not installed in {}: run scripts/setup-emulator.sh (needs node and npm)",
            package_dir.display()
        );
    }

    // LevelDB data and the log in a folder under target/tmp (so `cargo clean` clears it) that
    // server.js removes when it exits; a static is never dropped, so a TempDir could not.
    let work_dir: PathBuf = tempfile::Builder::new()
        .prefix("kinesalite-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a folder for kinesalite under target/tmp")
        .keep();
    let log_path = work_dir.join("kinesalite.log");
    let log = std::fs::File::create(&log_path).expect("create kinesalite's log file");

    let mut child = Command::new("node")
        .arg(package_dir.join("server.js"))
        .args(["--port", "0", "--path"])
        .arg(work_dir.join("leveldb"))
        .arg("--remove-on-exit")
        .arg(&work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` to start kinesalite (is Node.js installed?): {e}")
        });
    let stdin = child.stdin.take().expect("child stdin is piped");
    let stdout = child.stdout.take().expect("child stdout is piped");

    // Read stdout on a thread so the wait can time out; the thread then keeps draining stdout
    // until the emulator exits, so the emulator can never block on a full pipe.
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("kinesalite-stdout".into())
        .spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(url.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        })
        .expect("spawn the kinesalite stdout reader");

    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(endpoint) => Kinesalite {
            endpoint,
            _lifeline: (child, stdin),
        },
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let mut log = String::new();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log));
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => format!("no READY within {START_TIMEOUT:?}"),
                mpsc::RecvTimeoutError::Disconnected => format!("it exited ({status})"),
            };
            panic!(
                "kinesalite did not start: {why}. If node_modules is missing or stale, run \
                 scripts/setup-emulator.sh. Its log ({}):\n{log}",
                log_path.display()
            );
        }
    }
}

/// A Kinesis client for `endpoint` (static local credentials, us-west-2). Build one per test
/// (or per call): its connection pool belongs to the runtime it first runs on.
pub fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    kinesis_read::client(endpoint)
}

/// Creates stream `name` with `shards` shards and waits until it is ACTIVE. Panics on failure.
pub async fn create_stream(endpoint: &str, name: &str, shards: i32) {
    let client = kinesis_client(endpoint);
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStream {name} ({shards} shards): {e:?}"));

    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStreamSummary {name}: {e:?}"));
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} not ACTIVE after {ACTIVE_TIMEOUT:?} (status {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stream name no other test (or earlier run against the same emulator) uses:
/// `prefix-<counter>-<random hex>`, with characters outside `[a-zA-Z0-9_.-]` in `prefix` replaced
/// by `_` and the prefix shortened so the name fits Kinesis's 128 characters.
pub fn unique_stream_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{n}-{:08x}", rand::random::<u32>());
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128 - suffix.len())
        .collect();
    format!("{prefix}{suffix}")
}

/// `(shard_id, starting hash key, ending hash key)` of every shard, in ListShards order.
pub async fn shard_hash_ranges(endpoint: &str, stream: &str) -> Vec<(String, u128, u128)> {
    kinesis_read::list_shards(&kinesis_client(endpoint), stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|shard| {
            let range = shard
                .hash_key_range()
                .unwrap_or_else(|| panic!("shard {} has no hash key range", shard.shard_id()));
            let parse = |key: &str| -> u128 {
                key.parse()
                    .unwrap_or_else(|e| panic!("hash key {key:?} is not a u128: {e}"))
            };
            (
                shard.shard_id().to_owned(),
                parse(range.starting_hash_key()),
                parse(range.ending_hash_key()),
            )
        })
        .collect()
}

/// Splits `shard` of `stream` in the middle of its range and waits until the stream is ACTIVE.
pub async fn split_shard(endpoint: &str, stream: &str, shard: &str, start: u128, end: u128) {
    let client = kinesis_client(endpoint);
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key((start + (end - start) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().as_str().to_owned());
        if status.as_deref() == Some("ACTIVE") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stream} did not become ACTIVE after SplitShard");
}

/// Every record in every shard of `stream`, oldest first within each shard, shards in
/// ListShards order. Panics when the stream cannot be read.
pub async fn read_all(endpoint: &str, stream: &str) -> Vec<StoredRecord> {
    kinesis_read::read_all(&kinesis_client(endpoint), stream)
        .await
        .unwrap_or_else(|e| panic!("reading {stream} back: {e}"))
}

#[tokio::test]
async fn emulator_round_trip() {
    let endpoint = &kinesalite().await.endpoint;
    let stream = unique_stream_name("emulator-round-trip");
    create_stream(endpoint, &stream, 2).await;

    let client = kinesis_client(endpoint);
    for (key, data) in [("a", &b"{\"n\":1}"[..]), ("b", &b"{\"n\":2}"[..])] {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .expect("PutRecord to kinesalite");
    }

    let mut stored = read_all(endpoint, &stream).await;
    stored.sort_by(|x, y| x.partition_key.cmp(&y.partition_key));
    let got: Vec<(&str, &[u8])> = stored
        .iter()
        .map(|r| (r.partition_key.as_str(), r.data.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![("a", &b"{\"n\":1}"[..]), ("b", &b"{\"n\":2}"[..])]
    );

    let ranges = shard_hash_ranges(endpoint, &stream).await;
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0].1, 0);
    assert_eq!(ranges[1].2, u128::MAX);
    assert_eq!(ranges[0].2 + 1, ranges[1].1);
    for record in &stored {
        assert!(ranges.iter().any(|(id, _, _)| *id == record.shard_id));
        assert!(!record.sequence_number.is_empty());
    }
}
