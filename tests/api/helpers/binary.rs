//! The real `kinesis-proxy` binary as a child process: the command line tests start it with
//! (env overrides onto the shipped config.toml), and a running child whose bound port is read
//! from its "listening" log line and whose stdout lines are kept for assertions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::app::API_KEY;

/// The binary on a random loopback port against `endpoint`, streams `it-*`, JSON logs at info.
pub fn proxy_command(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinesis-proxy"));
    command
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .env("KINESIS_PROXY__SERVER__LISTEN", "127.0.0.1:0")
        // No load balancer to wait for: SIGTERM drains at once (tests of the delay set it).
        .env("KINESIS_PROXY__SERVER__SHUTDOWN_DELAY_MS", "0")
        .env("KINESIS_PROXY__SERVER__WORKERS", "1")
        .env("KINESIS_PROXY__SERVER__KINESIS_THREADS", "1")
        .env("KINESIS_PROXY__KINESIS__ENDPOINT_URL", endpoint)
        .env("KINESIS_PROXY__STREAMS__ALLOW", "it-*")
        .env("KINESIS_PROXY__AUTH__KEYS", format!("tests:{API_KEY}"))
        .env("KINESIS_PROXY__LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A started binary: its port and every line it has written to stdout so far.
pub struct RunningProxy {
    pub child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RunningProxy {
    /// Spawns `command` and waits until it logs the port it listens on.
    pub fn spawn(mut command: Command) -> RunningProxy {
        let mut child = command.spawn().expect("proxy binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(port) = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|entry| entry["port"].as_u64())
                    {
                        let _ = port_tx.send(port);
                        sent = true;
                    }
                }
                kept.lock().expect("lines").push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("proxy logged its port");
        RunningProxy {
            child,
            port: u16::try_from(port).expect("a port"),
            lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The stdout lines so far that parse as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to the proxy, as an orchestrator stopping it would.
pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends the signal `name` (`TERM`, `INT`, `HUP`) to the proxy.
pub fn signal(child: &Child, name: &str) {
    let signalled = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(signalled.success());
}

impl RunningProxy {
    /// Waits (up to 10 s) until `/metrics` counts `count` SIGHUP reloads with `result`.
    pub async fn wait_for_reloads(&self, http: &reqwest::Client, result: &str, count: f64) {
        let started = std::time::Instant::now();
        loop {
            let page = http
                .get(self.url("/metrics"))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("page");
            let seen = super::metrics_page::sample(
                &page,
                "kinesis_proxy_config_reloads_total",
                &[("result", result)],
            );
            if seen == Some(count) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "reloads {result}: {seen:?}, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
