//! A real Prometheus server for tests: started from the binary of Debian's `prometheus` package
//! (installed by scripts/setup-prometheus.sh) with a generated config that scrapes the given
//! targets every second, on a free loopback port, with its TSDB in a temporary folder. Queries
//! go through its HTTP API, exactly as Grafana's would.
//!
//! Why a real server instead of parsing `/metrics` ourselves: only Prometheus' own PromQL engine
//! can say whether a dashboard query parses and returns data (rates need two scrapes, histograms
//! need `le` buckets, label matchers must match the labels really exported).
//!
//! The server belongs to the `Prometheus` value: dropping it kills the process and removes its
//! data, so a failing test leaves nothing running.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long Prometheus may take to answer `/-/ready` (TSDB set-up, WAL replay of an empty dir).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts to start on a free port: the port is found by binding port 0 and releasing it, so
/// another process may take it before Prometheus binds it; then we try another.
const START_ATTEMPTS: usize = 5;

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    /// Base URL of its HTTP API, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Set for the whole life of the server; `Option` so `Drop` can take it.
    child: Option<Child>,
    log_path: PathBuf,
    client: reqwest::Client,
    /// Config, TSDB and log; removed after the process is gone (field order: dropped last).
    _dir: tempfile::TempDir,
}

/// The `prometheus` binary: `$PROMETHEUS_BIN`, else `prometheus` on `PATH`, else Debian's
/// `/usr/bin/prometheus`. Panics (never skips) when there is none: the dashboard test is only
/// worth anything when it runs.
pub fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| is_executable(candidate))
    });
    if let Some(path) = on_path {
        return path;
    }
    let debian = PathBuf::from("/usr/bin/prometheus");
    if is_executable(&debian) {
        return debian;
    }
    panic!(
        "the prometheus binary is not installed: run scripts/setup-prometheus.sh (installs \
         Debian's prometheus package) or set PROMETHEUS_BIN"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The server's first version line, e.g. `prometheus, version 2.42.0+ds (branch: ...)`.
pub fn prometheus_version() -> String {
    let output = Command::new(prometheus_binary())
        .arg("--version")
        .output()
        .expect("run prometheus --version");
    // Older releases print the version on stderr, newer ones on stdout.
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// One answer of `/api/v1/query`, as the dashboard test judges it.
#[derive(Debug)]
pub enum QueryResult {
    /// Prometheus refused the query (it does not parse, or cannot be evaluated).
    Error(String),
    /// The samples' values (a scalar is one sample); `NaN` where PromQL computed one.
    Samples(Vec<f64>),
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second under
    /// job `job`, and waits until it is ready.
    pub async fn start(job: &str, targets: &[String]) -> Prometheus {
        let binary = prometheus_binary();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the Prometheus API client");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("prometheus-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .expect("create a folder for prometheus under target/tmp");
            let config_path = dir.path().join("prometheus.yml");
            std::fs::write(&config_path, config(job, targets)).expect("write prometheus.yml");
            let log_path = dir.path().join("prometheus.log");
            let log = std::fs::File::create(&log_path).expect("create prometheus.log");
            let port = free_port();
            let child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::from(
                    log.try_clone().expect("share the log file for stdout"),
                ))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let mut server = Prometheus {
                url: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                log_path,
                client: client.clone(),
                _dir: dir,
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(why) => {
                    last_log = format!("{why}; log:\n{}", server.log());
                    // Lost the race for the port: try another. Anything else is fatal.
                    if !last_log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("prometheus did not start: {last_log}");
    }

    /// Polls `/-/ready` until it answers 200; fails early if the process exits.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("it exited ({status})"));
                }
            }
            let ready = self
                .client
                .get(format!("{}/-/ready", self.url))
                .send()
                .await;
            if matches!(&ready, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every target of `job` has been scraped successfully (`up == 1`).
    pub async fn wait_scraped(&self, job: &str, targets: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let expr = format!("up{{job=\"{job}\"}} == 1");
        loop {
            if let QueryResult::Samples(samples) = self.query(&expr).await {
                if samples.len() == targets {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not scrape job {job} within {timeout:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Evaluates `expr` now (`/api/v1/query`).
    pub async fn query(&self, expr: &str) -> QueryResult {
        let answer = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await;
        let body: Value = match answer {
            Ok(response) => match response.json().await {
                Ok(body) => body,
                Err(e) => return QueryResult::Error(format!("answer is not JSON: {e}")),
            },
            Err(e) => return QueryResult::Error(format!("request failed: {e}")),
        };
        if body["status"] != "success" {
            return QueryResult::Error(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ));
        }
        let data = &body["data"];
        let value_of = |pair: &Value| -> f64 {
            // A sample is `[unix_time, "value"]`; the value is a string ("NaN", "+Inf" too).
            pair[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        match data["resultType"].as_str() {
            Some("vector") => QueryResult::Samples(
                data["result"]
                    .as_array()
                    .map(|series| series.iter().map(|s| value_of(&s["value"])).collect())
                    .unwrap_or_default(),
            ),
            Some("scalar") => QueryResult::Samples(vec![value_of(&data["result"])]),
            other => QueryResult::Error(format!("unexpected result type {other:?}")),
        }
    }

    /// Values of label `label` on series matching `selector` (`/api/v1/label/<label>/values`),
    /// which is what Grafana's `label_values(selector, label)` asks.
    pub async fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/label/{label}/values", self.url))
            .query(&[("match[]", selector)])
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("answer is not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("{}", body["error"]));
        }
        Ok(body["data"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// What the server logged so far (warnings and errors only).
    pub fn log(&self) -> String {
        let mut log = String::new();
        let _ = std::fs::File::open(&self.log_path).and_then(|mut f| f.read_to_string(&mut log));
        log
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // Reap it, so no zombie outlives the test and the TSDB folder is free to remove.
            let _ = child.wait();
        }
    }
}

/// A scrape config for one job; 1 s so a test has rates after a few seconds.
fn config(job: &str, targets: &[String]) -> String {
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: '{job}'\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [{targets}]\n"
    )
}

/// A loopback port free right now (bound to port 0, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}
