//! kinesalite through the project's launcher (`scripts/kinesalite/server.js`, installed by
//! `scripts/setup-emulator.sh`), one fresh instance per scenario so earlier data cannot slow a
//! later run, and the read-back: every record of every shard, through the AWS SDK.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::child::{self, spawn_until_ready};
use crate::kinesis_read;
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
            .stdin(Stdio::piped());
        let mut started = spawn_until_ready(
            &mut command,
            "kinesalite (`node scripts/kinesalite/server.js`; is Node.js installed?)",
            |line| line.strip_prefix("READY ").map(|url| url.trim().to_owned()),
        )?;
        let stdin = started
            .child
            .stdin
            .take()
            .context("kinesalite stdin is piped")?;
        Ok(Self {
            endpoint: started.ready,
            pid: started.child.id(),
            child: started.child,
            _stdin: stdin,
            _dir: dir,
        })
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        child::stop(&mut self.child, Duration::from_secs(5));
    }
}

pub use crate::kinesis_read::client;

/// Everything in `stream`: sequence number → the `id` field of the event.
pub async fn read_back(endpoint: &str, stream: &str) -> Result<StoredEvents, Error> {
    let records = kinesis_read::read_all(&client(endpoint), stream).await?;
    let id_of = |data: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut stored = StoredEvents::default();
    for record in records {
        // What Kinesis bills: a PUT payload unit per started 25 KiB of each record.
        let size = record.data.len() + record.partition_key.len();
        stored.payload_units += size.div_ceil(25 * 1024).max(1) as u64;
        stored.kinesis_records += 1;
        match kinesis_proxy::kinesis::aggregation::decode(&record.data) {
            // An aggregated record: its events by "sequence number/sub-sequence number", as
            // the proxy answers them.
            Ok(users) if kinesis_proxy::kinesis::aggregation::is_aggregated(&record.data) => {
                for (index, user) in users.iter().enumerate() {
                    stored.by_place.insert(
                        format!("{}/{index}", record.sequence_number),
                        id_of(&user.data),
                    );
                }
            }
            _ => {
                stored
                    .by_place
                    .insert(record.sequence_number, id_of(&record.data));
            }
        }
    }
    Ok(stored)
}

/// A stream read back: each event's id by where it was answered to be ("sequence number", or
/// "sequence number/sub-sequence number" inside an aggregated record), and what it cost.
#[derive(Debug, Default)]
pub struct StoredEvents {
    pub by_place: HashMap<String, String>,
    pub kinesis_records: u64,
    pub payload_units: u64,
}
