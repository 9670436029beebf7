//! What a run measured: one `ScenarioReport` per scenario, the targets checked against them,
//! printed as a markdown table (and a progress line as each run ends) and written as JSON.
//!
//! Shapes and printing only: the figures are measured in `scenarios/run.rs` and the targets
//! checked in `scenarios/judge.rs`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::{Context, Error};

mod disk;
mod lifecycle;
mod shards;

pub use disk::{DiskBaseline, DiskFigures};
pub use lifecycle::{LifecycleFigures, ReloadFigures};
pub use shards::{HotClientFigures, ShardFigures, ShardRate};

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The bare handler at the same route and connections, measured right before and right after
/// the scenario; compared against the mean.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    /// The bare-handler runs (rows of the report).
    pub scenarios: Vec<String>,
    pub requests_per_sec: f64,
    pub events_per_sec: f64,
    /// Each run's requests/s: far apart means the machine's speed drifted meanwhile.
    pub before_requests_per_sec: f64,
    pub after_requests_per_sec: f64,
}

/// The bare handler driven at the proxy's own rate (open loop, same route and connections): the
/// CPU that answering this many HTTP requests costs any actix-web server, before the proxy
/// does anything with them.
#[derive(Debug, Clone, Serialize)]
pub struct HttpFloor {
    /// The bare-handler run (a row of the report).
    pub scenario: String,
    pub requests_per_sec: f64,
    pub server_cpu_s_per_100k_events: Option<f64>,
}

/// From the proxy's own metrics, over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct PutRecordsFigures {
    /// PutRecords calls, any outcome.
    pub calls: f64,
    /// Calls that failed as a whole (outcome other than `ok`/`partial`).
    pub failed_calls: f64,
    /// Mean records per call (`kinesis_proxy_batch_records` sum / count).
    pub records_per_call: Option<f64>,
    /// Calls per 1,000 events acknowledged to clients.
    pub calls_per_1000_events: Option<f64>,
    /// Estimated from the `kinesis_proxy_put_records_duration_seconds` buckets, so only as
    /// precise as those (0.5, 1, 2.5, 5, 10, 25, 50 ms...).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The proxy's own acknowledgement latency p99 (`kinesis_proxy_ack_latency_seconds`).
    pub proxy_ack_p99_ms: Option<f64>,
    /// Batches sent, by the rule that sent them (`full`, `bytes`, `linger`, `idle`,
    /// `shutdown`): which flush rule shapes the batches in this scenario.
    pub flushes_by_reason: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadBack {
    /// Events answered 2xx: 200 with a sequence number, or 202 (queued; no place yet).
    pub acknowledged: usize,
    /// Acknowledged events found with their id: under their sequence number when answered
    /// 200, anywhere in the stream when answered 202.
    pub found: usize,
    /// Acknowledged events not in the stream (must be 0).
    pub missing: usize,
    /// Records in the stream (duplicates from retries included).
    pub stored_records: usize,
    /// Stored records whose id is stored more than once (at-least-once duplicates).
    pub duplicates: usize,
    /// 2xx answers that did not say what they acknowledged (must be 0).
    pub unparsed_answers: u64,
    /// Kinesis records in the stream (fewer than events when they were aggregated).
    pub kinesis_records: u64,
    /// PUT payload units those records cost (one per started 25 KiB of each).
    pub payload_units: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// `VmHWM` at the end: the peak resident set of the server process, MiB.
    pub peak_rss_mib: f64,
    /// Highest `VmRSS` sampled every 100 ms during the run, MiB.
    pub max_sampled_rss_mib: f64,
    /// `VmRSS` when the measured window opened and when it closed, MiB.
    pub window_start_rss_mib: f64,
    pub window_end_rss_mib: f64,
    /// Highest `VmRSS` over the first and the second half of the window, MiB (a bounded
    /// process plateaus: the second is not above the first).
    pub first_half_max_rss_mib: f64,
    pub second_half_max_rss_mib: f64,
    /// `[seconds since the window opened, VmRSS MiB]`, one sample a second (negative: warm-up).
    pub rss_series_mib: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub about: String,
    /// `proxy`, `bare` (the ceiling) or `sdk-direct` (PutRecords from the SDK, no proxy; then
    /// "server" figures are kinesalite's and "loadgen" the SDK client's).
    pub server: String,
    /// What the proxy talks to: `null`, `null+200ms`, `kinesalite/4`, or `-`.
    pub backend: String,
    pub route: String,
    pub connections: usize,
    /// `closed` or `open N req/s`.
    pub load: String,
    pub offered_requests_per_sec: Option<f64>,
    /// Requests the load generator sent per second in the window (any answer).
    pub sent_requests_per_sec: f64,
    /// Runs of this scenario: it is run again when other processes disturbed it (see
    /// `other_cpu_s`), and the least disturbed run is kept.
    pub attempts: u32,
    pub window_s: f64,
    pub requests_per_sec: f64,
    pub events_per_sec: f64,
    /// Answers in the window by status code.
    pub statuses: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub first_error: Option<String>,
    /// Client-side, from sending (or the scheduled send time) to the whole answer; 2xx only.
    pub latency: Option<Latency>,
    pub ceiling: Option<Ceiling>,
    pub http_floor: Option<HttpFloor>,
    /// requests/s over the ceiling's requests/s.
    pub ratio: Option<f64>,
    pub put_records: Option<PutRecordsFigures>,
    pub linger_ms: Option<u64>,
    /// `linger + 2 x PutRecords p99`.
    pub ack_p99_bound_ms: Option<f64>,
    /// CPU of the server under test (proxy or bare) over the window.
    pub server_cpu_s: f64,
    pub server_cpu_s_per_100k_events: Option<f64>,
    /// The server's CPU over the window by thread name (a pool's threads as one), from
    /// `/proc/<pid>/task`; threads that ended during the window are missing.
    pub server_cpu_s_by_thread: BTreeMap<String, f64>,
    /// CPU of the null endpoint or kinesalite, and of this load generator, over the window.
    pub backend_cpu_s: Option<f64>,
    pub loadgen_cpu_s: f64,
    /// CPU every other process on the machine used during the window: what the benchmark's
    /// processes competed with for the cores. Well above 0 means the figures are disturbed.
    pub other_cpu_s: f64,
    /// Cores other processes used in the second before the run started (`None`: not checked).
    pub busy_cores_before: Option<f64>,
    pub memory: Memory,
    pub read_back: Option<ReadBack>,
    /// How the proxy ended after SIGTERM.
    pub proxy_exit: Option<String>,
    /// The proxy settings in effect (resolved from config.toml, the scenario and `--set`).
    pub settings: BTreeMap<String, String>,
    /// Shard-awareness scenarios only.
    pub shards: Option<ShardFigures>,
    /// Disk-acknowledgement scenarios only.
    pub disk: Option<DiskFigures>,
    /// TLS, connection-per-request and reload scenarios only.
    pub lifecycle: Option<LifecycleFigures>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub command: String,
    pub profile: &'static str,
    pub unix_time: u64,
    pub machine: BTreeMap<String, String>,
    pub scenarios: Vec<ScenarioReport>,
}

fn machine() -> BTreeMap<String, String> {
    let mut machine = BTreeMap::new();
    // Which proxy was measured: the commit, and whether src/ differed from it.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) {
        let dirty = git(&[
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
            "config.toml",
        ])
        .is_some_and(|s| !s.is_empty());
        let suffix = if dirty { " (src/ modified)" } else { "" };
        machine.insert("commit".into(), format!("{commit}{suffix}"));
    }
    machine.insert("cores".into(), crate::cli::cores().to_string());
    if let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
        {
            machine.insert("cpu".into(), model.1.trim().to_owned());
        }
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        machine.insert("kernel".into(), kernel.trim().to_owned());
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(total) = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")) {
            machine.insert("memory".into(), total.trim().to_owned());
        }
    }
    machine
}

/// The whole run's report: the command, build profile, time and machine around `scenarios`.
pub fn run_report(scenarios: Vec<ScenarioReport>) -> RunReport {
    RunReport {
        command: command_line(),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: machine(),
        scenarios,
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

pub fn write_json(path: &Path, report: &RunReport) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(format_args!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report).context("serializing the report")?;
    std::fs::write(path, text).context(format_args!("writing {}", path.display()))
}

pub(crate) fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

pub fn markdown(report: &RunReport) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | server → Kinesis | route | conns | load | req/s | events/s | ceiling req/s | ratio \
         | ack p50 / p99 / max ms | recs/PutRecords | PutRecords/1k ev | PutRecords p99 ms \
         | server CPU s/100k ev | other procs CPU s | peak RSS MiB | answers | read-back |\n",
    );
    out.push_str("|---|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n");
    for s in &report.scenarios {
        let latency = s.latency.as_ref().map_or_else(
            || "-".into(),
            |l| format!("{:.1} / {:.1} / {:.0}", l.p50_ms, l.p99_ms, l.max_ms),
        );
        let put = s.put_records.as_ref();
        let mut answers: Vec<String> = s
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}: {}", thousands(*n as f64)))
            .collect();
        if s.transport_errors > 0 {
            answers.push(format!("errors: {}", s.transport_errors));
        }
        let read_back = s.read_back.as_ref().map_or_else(
            || "-".into(),
            |r| {
                format!(
                    "{} missing of {}",
                    r.missing,
                    thousands(r.acknowledged as f64)
                )
            },
        );
        let server = match s.server.as_str() {
            "bare" => "bare actix".to_owned(),
            "sdk-direct" => format!("no proxy: SDK → {}", s.backend),
            _ => format!("proxy → {}", s.backend),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {} | {} |",
            s.name,
            server,
            s.route,
            s.connections,
            s.load,
            thousands(s.requests_per_sec),
            thousands(s.events_per_sec),
            s.ceiling
                .as_ref()
                .map_or_else(|| "-".into(), |c| thousands(c.requests_per_sec)),
            s.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
            latency,
            opt(put.and_then(|p| p.records_per_call), 1),
            opt(put.and_then(|p| p.calls_per_1000_events), 2),
            opt(put.and_then(|p| p.p99_ms), 1),
            opt(s.server_cpu_s_per_100k_events, 2),
            s.other_cpu_s,
            s.memory.peak_rss_mib,
            answers.join(", "),
            read_back,
        );
    }
    shards::shard_table(&mut out, report);
    disk::disk_table(&mut out, report);
    lifecycle::lifecycle_table(&mut out, report);
    let checks: Vec<(&str, &Check)> = report
        .scenarios
        .iter()
        .flat_map(|s| s.checks.iter().map(move |c| (s.name.as_str(), c)))
        .collect();
    if !checks.is_empty() {
        out.push_str("\nTargets:\n");
        for (name, check) in checks {
            let verdict = if check.pass { "PASS" } else { "MISS" };
            let _ = writeln!(
                out,
                "- {verdict} {name}: {} — {}",
                check.target, check.measured
            );
        }
    }
    out
}

/// Progress line printed as each run ends.
pub fn one_line(report: &ScenarioReport) -> String {
    format!(
        "load: {:<22} {:>9} req/s {:>10} events/s  p99 {} ms  server CPU {:.2} s",
        report.name,
        thousands(report.requests_per_sec),
        thousands(report.events_per_sec),
        report
            .latency
            .as_ref()
            .map_or_else(|| "-".into(), |l| format!("{:.1}", l.p99_ms)),
        report.server_cpu_s,
    )
}
