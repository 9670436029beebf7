//! kinesalite through the project's launcher (`scripts/kinesalite/server.js`, installed by
//! `scripts/setup-emulator.sh`), one fresh instance per scenario so earlier data cannot slow a
//! later run, and the read-back: every record of every shard, through the AWS SDK.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;

use crate::child::{self, die_with_parent, drain, wait_for_ready, OutputTail, START_TIMEOUT};
use crate::{Context, Error};

pub struct Kinesalite {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub pid: u32,
    child: Child,
    /// The launcher exits when this pipe closes.
    _stdin: ChildStdin,
    /// LevelDB data, removed on drop (after the child is stopped).
    _dir: tempfile::TempDir,
}

impl Kinesalite {
    /// Starts kinesalite with `stream` (`shards` shards) created and ACTIVE.
    pub fn start(stream: &str, shards: u32) -> Result<Self, Error> {
        let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kinesalite");
        if !package.join("node_modules/kinesalite").is_dir() {
            return Err(format!(
                "kinesalite is not installed in {}: run scripts/setup-emulator.sh (needs node and npm)",
                package.display()
            )
            .into());
        }
        let dir = tempfile::Builder::new()
            .prefix("load-kinesalite-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("creating a folder for kinesalite under target/tmp")?;
        let mut command = Command::new("node");
        command
            .arg(package.join("server.js"))
            .args(["--port", "0", "--path"])
            .arg(dir.path().join("leveldb"))
            .arg("--stream")
            .arg(format!("{stream}:{shards}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .context("running `node` to start kinesalite (is Node.js installed?)")?;
        let stdin = child.stdin.take().context("kinesalite stdin is piped")?;
        let stdout = child.stdout.take().context("kinesalite stdout is piped")?;
        let stderr = child.stderr.take().context("kinesalite stderr is piped")?;
        let tail = OutputTail::default();
        drain(stderr, tail.clone());
        let ready = wait_for_ready(stdout, tail.clone(), |line| {
            line.strip_prefix("READY ").map(|url| url.trim().to_owned())
        });
        match ready.recv_timeout(START_TIMEOUT) {
            Ok(endpoint) => Ok(Self {
                endpoint,
                pid: child.id(),
                child,
                _stdin: stdin,
                _dir: dir,
            }),
            Err(_) => {
                let status = child::stop(&mut child, Duration::from_secs(2));
                Err(format!(
                    "kinesalite did not print READY within {START_TIMEOUT:?} ({status}); its output:\n{}",
                    tail.text()
                )
                .into())
            }
        }
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        child::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// Static `local` credentials, us-west-2, nothing read from the environment.
pub fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("local", "local", None, None, "load-bench"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// Everything in `stream`: sequence number → the `id` field of the event.
pub async fn read_back(endpoint: &str, stream: &str) -> Result<HashMap<String, String>, Error> {
    let client = client(endpoint);
    let mut stored = HashMap::new();
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // ListShards takes either the stream name or a NextToken, never both.
        let request = match next_token.take() {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .context(format_args!("ListShards {stream}"))?;
        shards.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => break,
        }
    }
    for shard in shards {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .context(format_args!("GetShardIterator {stream}/{shard}"))?
            .shard_iterator()
            .map(str::to_owned);
        while let Some(current) = iterator {
            let page = client
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .context(format_args!("GetRecords {stream}/{shard}"))?;
            for record in page.records() {
                let id = serde_json::from_slice::<serde_json::Value>(record.data().as_ref())
                    .ok()
                    .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                stored.insert(record.sequence_number().to_owned(), id);
            }
            // Caught up: an empty page at the tip (kinesalite answers 0 behind for open shards).
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(stored)
}
