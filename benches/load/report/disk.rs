//! The disk-acknowledgement scenarios' figures (issue 11) and their own table: the spool's group
//! commit over the window, the backlog the window left behind it, how long the spool took to
//! send it, what the whole cost in proxy CPU, and the same load answered after Kinesis (200) in
//! the same run, to compare with.

use std::fmt::Write;

use serde::Serialize;

use super::{opt, thousands, Latency, RunReport, ScenarioReport};

/// From the proxy's `/metrics` around the window, and from the wait for the spool to drain.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFigures {
    /// The spool's fsyncs over the window, and the records they made durable.
    pub fsyncs: f64,
    pub records_fsynced: f64,
    pub records_per_fsync: Option<f64>,
    /// Appends refused over the window (spool full): 0 unless its bounds are what limits.
    pub refusals: f64,
    /// Records in the spool not yet done (accepted by Kinesis) when the window opened and when it
    /// closed: how far delivery fell behind acknowledgement.
    pub backlog_at_start: f64,
    pub backlog_at_end: f64,
    /// The spool's size on disk when the window closed, MiB.
    pub spool_mib_at_end: f64,
    /// Records the spool delivered (accepted by Kinesis, marked done) per second in the window.
    pub delivered_per_sec: f64,
    /// Seconds from the load's last answer until the spool held no record (or the wait gave
    /// up), and the records still in it then (0: drained).
    pub drain_s: f64,
    pub left_after_drain: f64,
    /// Proxy CPU from the window's start until the spool drained, per 10,000 events: the events
    /// acknowledged in the window and the backlog it opened with, each appended and delivered.
    pub cpu_s_per_10k_with_drain: Option<f64>,
    /// The same load answered 200 (after Kinesis) in this run, when it ran.
    pub baseline: Option<DiskBaseline>,
}

/// The scenario a disk scenario is compared with, as measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct DiskBaseline {
    pub scenario: String,
    pub events_per_sec: f64,
    pub cpu_s_per_10k: Option<f64>,
    pub latency: Option<Latency>,
}

impl DiskFigures {
    /// Acknowledged events/s over the baseline's.
    pub fn throughput_ratio(&self, events_per_sec: f64) -> Option<f64> {
        let baseline = self.baseline.as_ref()?;
        Some(events_per_sec / baseline.events_per_sec.max(1e-9))
    }
}

/// The disk scenarios' own table, when any ran.
pub(super) fn disk_table(out: &mut String, report: &RunReport) {
    let rows: Vec<(&ScenarioReport, &DiskFigures)> = report
        .scenarios
        .iter()
        .filter_map(|s| s.disk.as_ref().map(|d| (s, d)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "\nDisk acknowledgement (202 once fsynced in the spool; then the spool drained and the stream read back):\n\n\
         | scenario | events/s acked | vs 200 path (events/s) | ack p50 / p99 ms | 200 path p50 / p99 ms \
         | records per fsync | delivered/s in window | backlog at window end | drain s \
         | proxy CPU s/10k ev (window / with drain) | 200 path CPU s/10k ev | spool full | missing | duplicates |\n\
         |---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    let latency = |l: Option<&Latency>| {
        l.map_or_else(
            || "-".into(),
            |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms),
        )
    };
    for (s, d) in rows {
        let baseline = d.baseline.as_ref();
        let versus = match (baseline, d.throughput_ratio(s.events_per_sec)) {
            (Some(b), Some(ratio)) => format!(
                "{ratio:.2}x ({} `{}`)",
                thousands(b.events_per_sec),
                b.scenario
            ),
            _ => "-".into(),
        };
        let drain = if d.left_after_drain > 0.0 {
            format!(
                "{:.1} (gave up, {} left)",
                d.drain_s,
                thousands(d.left_after_drain)
            )
        } else {
            format!("{:.1}", d.drain_s)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
            s.name,
            thousands(s.events_per_sec),
            versus,
            latency(s.latency.as_ref()),
            latency(baseline.and_then(|b| b.latency.as_ref())),
            opt(d.records_per_fsync, 1),
            thousands(d.delivered_per_sec),
            thousands(d.backlog_at_end),
            drain,
            opt(s.server_cpu_s_per_100k_events.map(|v| v / 10.0), 3),
            opt(d.cpu_s_per_10k_with_drain, 3),
            opt(baseline.and_then(|b| b.cpu_s_per_10k), 3),
            thousands(d.refusals),
            s.read_back
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.missing.to_string()),
            s.read_back
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.duplicates.to_string()),
        );
    }
}
