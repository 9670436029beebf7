//! The proxy under test: its real release binary as a child process, configured through its
//! environment variables exactly as an operator would, on a port it picks itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::{self, spawn_until_ready, OutputTail};
use crate::tls::Transport;
use crate::wire::http_get;
use crate::{Context, Error};

/// The key the load generator sends; the proxy knows it as `bench`.
pub const API_KEY: &str = "bench-load-key-0123456789abcdef";

/// The proxy's settings file (the documented defaults).
pub fn config_path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")
}

/// The settings every benchmark proxy gets, before the scenario's and `--set`'s.
pub fn base_env(kinesis_endpoint: &str, stream: &str) -> Vec<(String, String)> {
    [
        ("KINESIS_PROXY__SERVER__LISTEN", "127.0.0.1:0"),
        // No load balancer to wait for: SIGTERM drains at once.
        ("KINESIS_PROXY__SERVER__SHUTDOWN_DELAY_MS", "0"),
        ("KINESIS_PROXY__KINESIS__ENDPOINT_URL", kinesis_endpoint),
        ("KINESIS_PROXY__STREAMS__ALLOW", stream),
        ("KINESIS_PROXY__LOG__FORMAT", "json"),
        // "listening" is an info line; nothing is logged per request at info.
        ("KINESIS_PROXY__LOG__LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "KINESIS_PROXY__AUTH__KEYS".to_owned(),
        format!("bench:{API_KEY}"),
    )])
    .collect()
}

/// The proxy binary, copied once per run into a folder of its own: with a shared target
/// directory, someone may rebuild `target/release/kinesis-proxy` while the benchmark runs, and
/// every scenario of a run must measure the same build.
pub struct PinnedBinary {
    pub path: PathBuf,
    /// Removed (with the copy) when the run ends; `None` when not copied.
    _dir: Option<tempfile::TempDir>,
}

impl PinnedBinary {
    /// The binary where cargo built it (the smoke test: seconds long, a debug build of 250 MB).
    pub fn in_place() -> Self {
        Self {
            path: PathBuf::from(env!("CARGO_BIN_EXE_kinesis-proxy")),
            _dir: None,
        }
    }

    /// A copy of the binary cargo built, or of `$LOAD_PROXY_BIN` (to compare two builds).
    pub fn copy() -> Result<Self, Error> {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_kinesis-proxy"));
        let source = std::env::var_os("LOAD_PROXY_BIN").map_or(built, PathBuf::from);
        let source = source.as_path();
        let dir = tempfile::Builder::new()
            .prefix("load-proxy-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("creating a folder for the proxy binary under target/tmp")?;
        let path = dir.path().join("kinesis-proxy");
        std::fs::copy(source, &path)
            .context(format_args!("copying {} (is it built?)", source.display()))?;
        Ok(Self {
            path,
            _dir: Some(dir),
        })
    }
}

pub struct ProxyProcess {
    pub port: u16,
    pub pid: u32,
    /// How to reach it: over TLS when it serves TLS.
    pub transport: Transport,
    child: Child,
    /// Its log (JSON lines) and stderr, for telling why it failed.
    tail: OutputTail,
}

impl ProxyProcess {
    /// Starts the proxy with `env` (later entries win) and waits until it listens; it is
    /// reached over `transport` (TLS when `env` gives it certificates).
    pub fn start(
        exe: &Path,
        env: &[(String, String)],
        transport: Transport,
    ) -> Result<Self, Error> {
        let mut command = Command::new(exe);
        command
            .arg("--config")
            .arg(config_path())
            .env_remove("RUST_LOG")
            // Static credentials and no instance metadata: nothing leaves 127.0.0.1.
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_REGION", "us-west-2")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        // The bound port is in the "listening" log line.
        let started = spawn_until_ready(
            &mut command,
            &format!("the proxy ({})", exe.display()),
            |line| {
                let entry: Value = serde_json::from_str(line).ok()?;
                u16::try_from(entry.get("port")?.as_u64()?).ok()
            },
        )?;
        Ok(Self {
            port: started.ready,
            pid: started.child.id(),
            transport,
            child: started.child,
            tail: started.tail,
        })
    }

    /// Waits until `/readyz` answers 200 (the proxy has reached Kinesis).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match http_get(self.port, &self.transport, "/readyz").await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => {
                    last = format!("{status} {}", String::from_utf8_lossy(&body));
                }
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "the proxy was not ready within {timeout:?} (last /readyz: {last}); its output:\n{}",
            self.tail.text()
        )
        .into())
    }

    /// `/metrics`, as text.
    pub async fn metrics(&self) -> Result<String, Error> {
        let (status, body) = http_get(self.port, &self.transport, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}").into());
        }
        String::from_utf8(body.to_vec()).context("/metrics is not UTF-8")
    }

    pub fn output(&self) -> String {
        self.tail.text()
    }

    /// SIGTERM (the proxy drains) and wait; how it ended.
    pub fn stop(mut self) -> String {
        child::stop(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            child::stop(&mut self.child, Duration::from_secs(5));
        }
    }
}
