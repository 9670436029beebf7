//! Disk-acknowledgement runs (issue 11): the spool directory each run gets (fresh, removed
//! after), the wait after the load until the proxy has sent everything its spool acknowledged
//! (`kinesis_proxy_spool_records` back at 0), and the disk figures from `/metrics` around the
//! window (records per fsync, backlog, delivery) and from that wait (drain time, CPU).
//!
//! Observation only: the run itself is `run.rs`; the targets are judged in `judge.rs`.

use std::time::{Duration, Instant};

use kinesis_proxy::telemetry::{
    SPOOL_BYTES, SPOOL_DELIVERED, SPOOL_FSYNCS, SPOOL_RECORDS, SPOOL_RECORDS_FSYNCED,
    SPOOL_REFUSALS,
};

use super::probes::Snapshot;
use super::run::STREAM;
use crate::loadgen::LoadResult;
use crate::procfs;
use crate::prometheus::Scrape;
use crate::proxy_process::ProxyProcess;
use crate::report::DiskFigures;
use crate::{Context, Error};

/// How long the spool may take to send its backlog once the load has stopped: at kinesalite's
/// ~4,000-5,000 records/s unaggregated, about a million events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// How often `/metrics` is read while waiting (each read costs the proxy a little CPU).
const POLL_EVERY: Duration = Duration::from_millis(200);

/// How often the wait says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// A disk run's spool directory, removed when dropped (after the proxy has stopped).
pub(super) struct SpoolDir {
    dir: tempfile::TempDir,
}

impl SpoolDir {
    /// A fresh directory under `target/tmp`: on the repository's disk, whose fsync is real, as a
    /// spool's must be (a tmpfs would make every fsync free).
    pub(super) fn create() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("load-spool-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("creating a spool directory under target/tmp")?;
        Ok(Self { dir })
    }

    /// The proxy setting that points it here.
    pub(super) fn env(&self) -> (String, String) {
        (
            "KINESIS_PROXY__SPOOL__DIR".to_owned(),
            self.dir.path().display().to_string(),
        )
    }
}

/// How the wait for the spool to drain ended.
pub(super) struct Drained {
    /// From the load's last answer until the spool was empty, or the wait gave up.
    waited: Duration,
    /// Records still in the spool (0: drained).
    left: f64,
    /// The proxies' CPU seconds when the wait ended.
    server_cpu: f64,
}

/// Waits until the proxies' spools hold no record (every acknowledged event accepted by
/// Kinesis), or `DRAIN_TIMEOUT` has passed: then the read-back shows what is missing.
pub(super) async fn wait_drained(
    proxies: &[ProxyProcess],
    server_pids: &[u32],
) -> Result<Drained, Error> {
    let started = Instant::now();
    let mut said = started;
    let left = loop {
        let mut left = 0.0;
        for proxy in proxies {
            let scrape = Scrape::parse(&proxy.metrics().await?);
            if !scrape.has(SPOOL_RECORDS) {
                return Err(format!(
                    "the proxy exports no {SPOOL_RECORDS}: is the stream in streams.ack_on_disk?"
                )
                .into());
            }
            left += scrape.sum(SPOOL_RECORDS, &[]);
        }
        if left <= 0.0 {
            break 0.0;
        }
        if started.elapsed() >= DRAIN_TIMEOUT {
            eprintln!(
                "load: the spool still holds {left} records {DRAIN_TIMEOUT:?} after the load; \
                 reading back what reached the stream"
            );
            break left;
        }
        if said.elapsed() >= PROGRESS_EVERY {
            eprintln!("load: waiting for the spool to drain: {left} records left");
            said = Instant::now();
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let waited = started.elapsed();
    let mut server_cpu = 0.0;
    for pid in server_pids {
        server_cpu += procfs::cpu_seconds(Some(*pid))?;
    }
    Ok(Drained {
        waited,
        left,
        server_cpu,
    })
}

/// The disk figures of a run: over the window from the snapshots' metrics, and the drain.
pub(super) fn disk_figures(
    (before, after): (&Snapshot, &Snapshot),
    drained: &Drained,
    result: &LoadResult,
) -> Option<DiskFigures> {
    let (b, a) = (before.metrics.as_ref()?, after.metrics.as_ref()?);
    let delta = |name: &str| a.sum(name, &[]) - b.sum(name, &[]);
    let window = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let (fsyncs, records_fsynced) = (delta(SPOOL_FSYNCS), delta(SPOOL_RECORDS_FSYNCED));
    let backlog_at_start = b.sum(SPOOL_RECORDS, &[]);
    // Every event acknowledged in the window was appended and delivered by the time the spool
    // drained, and so was the backlog the window opened with.
    let events = result.ok_events as f64 + backlog_at_start;
    let cpu = drained.server_cpu - before.server_cpu;
    Some(DiskFigures {
        fsyncs,
        records_fsynced,
        records_per_fsync: (fsyncs > 0.0).then(|| records_fsynced / fsyncs),
        refusals: delta(SPOOL_REFUSALS),
        backlog_at_start,
        backlog_at_end: a.sum(SPOOL_RECORDS, &[]),
        spool_mib_at_end: a.sum(SPOOL_BYTES, &[]) / (1024.0 * 1024.0),
        delivered_per_sec: (a.sum(SPOOL_DELIVERED, &[("stream", STREAM)])
            - b.sum(SPOOL_DELIVERED, &[("stream", STREAM)]))
            / window,
        drain_s: drained.waited.as_secs_f64(),
        left_after_drain: drained.left,
        cpu_s_per_10k_with_drain: (events > 0.0 && drained.left <= 0.0)
            .then(|| cpu / events * 10_000.0),
        baseline: None,
    })
}
