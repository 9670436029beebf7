//! What is read from the processes around a run: CPU, memory and metrics snapshots at the
//! window's edges (and the fault layer's counts, when there is one), the periodic `/metrics`
//! scraper, the optional `perf` profiler, and the PutRecords figures taken from the proxy's
//! metrics between two snapshots.
//!
//! Observation only: starting and stopping the servers and the load is `run.rs`, and nothing
//! here judges a figure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kinesis_proxy::telemetry;

use super::run::STREAM;
use crate::fault_proxy::{FaultProxy, FaultStats, ShardStats};
use crate::loadgen::LoadResult;
use crate::procfs;
use crate::prometheus::Scrape;
use crate::proxy_process::ProxyProcess;
use crate::report::PutRecordsFigures;
use crate::tls::Transport;
use crate::{Context, Error};

/// `perf record` of one process (software `cpu-clock` samples with DWARF call graphs, since
/// virtual machines rarely expose hardware counters). Costs the profiled process some CPU: a
/// profiled run's figures are not comparable with an unprofiled one.
pub(super) struct Profiler {
    child: std::process::Child,
    path: PathBuf,
}

impl Profiler {
    pub(super) fn start(pid: u32, path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context(format_args!("creating {}", dir.display()))?;
        }
        let mut command = std::process::Command::new("perf");
        command
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "--call-graph",
                "dwarf,16384",
                "-p",
            ])
            .arg(pid.to_string())
            .arg("-o")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        crate::child::die_with_parent(&mut command);
        let child = command
            .spawn()
            .context("running `perf record` (apt-get install linux-perf)")?;
        Ok(Self {
            child,
            path: path.to_owned(),
        })
    }

    pub(super) fn stop(mut self) -> Result<(), Error> {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own, not yet reaped child. SIGINT makes perf write its file.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        let status = self.child.wait().context("waiting for perf")?;
        eprintln!(
            "load: perf profile in {} ({status}); e.g. perf report -i {} --no-children",
            self.path.display(),
            self.path.display()
        );
        Ok(())
    }
}

/// Scrapes `/metrics` periodically, as Prometheus does in production.
pub(super) struct Scraper {
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<Result<u64, Error>>,
}

impl Scraper {
    /// Scrapes the proxy on `port`, reached over `transport`, every `every`.
    pub(super) fn start(port: u16, transport: Transport, every: Duration) -> Self {
        let stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut scrapes = 0;
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    // The run is over.
                    () = stopped.notified() => return Ok(scrapes),
                    // Time for the next scrape.
                    _ = tick.tick() => {
                        let (status, _) = crate::wire::http_get(port, &transport, "/metrics").await?;
                        if status != 200 {
                            return Err(format!("/metrics answered {status}").into());
                        }
                        scrapes += 1;
                    }
                }
            }
        });
        Self { stop, task }
    }

    pub(super) async fn stop(self) -> Result<(), Error> {
        self.stop.notify_one();
        self.task.await.context("the /metrics scraper")?.map(|_| ())
    }
}

/// The fault layer's counts at one instant.
pub(super) struct FaultSnapshot {
    pub(super) at: Instant,
    pub(super) stats: FaultStats,
    /// The stream's shards by id.
    pub(super) shards: BTreeMap<String, ShardStats>,
}

impl FaultSnapshot {
    pub(super) fn take(faults: &FaultProxy) -> Self {
        Self {
            at: Instant::now(),
            stats: faults.stats(),
            shards: faults.shard_stats(STREAM),
        }
    }

    /// Entries kinesalite has stored so far, over all shards.
    pub(super) fn accepted(&self) -> u64 {
        self.shards.values().map(|s| s.entries_accepted).sum()
    }
}

/// CPU, memory and metrics at one instant; with several servers (proxies sharing a stream),
/// their CPU and memory summed and their metrics combined.
pub(super) struct Snapshot {
    pub(super) at: Instant,
    pub(super) server_cpu: f64,
    /// The servers' CPU seconds by thread name (see `procfs::thread_cpu_seconds`).
    pub(super) server_threads: BTreeMap<String, f64>,
    pub(super) backend_cpu: Option<f64>,
    pub(super) own_cpu: f64,
    /// CPU seconds the whole machine has been busy (every process).
    pub(super) machine_busy: f64,
    pub(super) server_rss: u64,
    pub(super) metrics: Option<Scrape>,
}

impl Snapshot {
    pub(super) async fn take(
        server_pids: &[u32],
        backend_pid: Option<u32>,
        proxies: &[ProxyProcess],
    ) -> Result<Self, Error> {
        let mut scrapes = Vec::with_capacity(proxies.len());
        for proxy in proxies {
            scrapes.push(Scrape::parse(&proxy.metrics().await?));
        }
        let metrics = (!scrapes.is_empty()).then(|| Scrape::combine(scrapes));
        let mut server_cpu = 0.0;
        let mut server_rss = 0;
        let mut server_threads = BTreeMap::new();
        for pid in server_pids {
            server_cpu += procfs::cpu_seconds(Some(*pid))?;
            server_rss += procfs::memory(*pid)?.0;
            for (name, seconds) in procfs::thread_cpu_seconds(*pid)? {
                *server_threads.entry(name).or_default() += seconds;
            }
        }
        Ok(Self {
            at: Instant::now(),
            server_cpu,
            server_threads,
            backend_cpu: backend_pid
                .map(|pid| procfs::cpu_seconds(Some(pid)))
                .transpose()?,
            own_cpu: procfs::cpu_seconds(None)?,
            machine_busy: procfs::machine_busy_seconds()?,
            server_rss,
            metrics,
        })
    }
}

pub(super) fn put_records_figures(
    before: &Scrape,
    after: &Scrape,
    result: &LoadResult,
) -> PutRecordsFigures {
    let stream = [("stream", STREAM)];
    let delta =
        |name: &str, filter: &[(&str, &str)]| after.sum(name, filter) - before.sum(name, filter);
    let calls = delta(telemetry::PUT_RECORDS_CALLS, &stream);
    let ok = delta(
        telemetry::PUT_RECORDS_CALLS,
        &[("stream", STREAM), ("outcome", "ok")],
    );
    let partial = delta(
        telemetry::PUT_RECORDS_CALLS,
        &[("stream", STREAM), ("outcome", "partial")],
    );
    let histogram = |name: &str| {
        after
            .histogram(name, &stream)
            .since(&before.histogram(name, &stream))
    };
    let batch = histogram(telemetry::BATCH_RECORDS);
    let duration = histogram(telemetry::PUT_RECORDS_DURATION);
    let ack = histogram(telemetry::ACK_LATENCY);
    PutRecordsFigures {
        calls,
        failed_calls: calls - ok - partial,
        records_per_call: batch.mean(),
        calls_per_1000_events: (result.ok_events > 0)
            .then(|| calls / result.ok_events as f64 * 1000.0),
        p50_ms: duration.quantile(0.5).map(|s| s * 1000.0),
        p99_ms: duration.quantile(0.99).map(|s| s * 1000.0),
        proxy_ack_p99_ms: ack.quantile(0.99).map(|s| s * 1000.0),
        flushes_by_reason: ["full", "bytes", "linger", "idle", "shutdown"]
            .into_iter()
            .map(|reason| {
                let sent = delta(
                    telemetry::FLUSHES,
                    &[("stream", STREAM), ("reason", reason)],
                );
                (reason.to_owned(), sent)
            })
            .filter(|(_, sent)| *sent > 0.0)
            .collect(),
    }
}
