//! The smoke test's checks (`cargo test --bench load`): not targets, but "the machinery works":
//! each run measured something, every figure the benchmark reports was read, and the proxy
//! behaved.

use super::lifecycle::reloads_counted;
use super::{check, read_back_check, refusals};
use crate::report::{Check, LifecycleFigures, ScenarioReport};

/// The smoke test's checks: the run measured something, every figure the benchmark reports
/// was read, and the proxy behaved (all 2xx, clean exit, read-back).
pub(in crate::scenarios) fn smoke_checks(report: &ScenarioReport) -> Vec<Check> {
    let mut checks = vec![
        check(
            "requests answered 2xx",
            format!("{:.0} req/s", report.requests_per_sec),
            report.requests_per_sec > 0.0,
        ),
        check(
            "no other answers",
            refusals(report).unwrap_or_else(|| "all 2xx".into()),
            refusals(report).is_none(),
        ),
        check(
            "latency measured",
            format!("{:?}", report.latency.as_ref().map(|l| l.p99_ms)),
            report
                .latency
                .as_ref()
                .is_some_and(|l| l.p50_ms > 0.0 && l.max_ms >= l.p99_ms),
        ),
        check(
            "server CPU and memory measured",
            format!(
                "{:.3} s CPU, {:.1} MiB peak RSS",
                report.server_cpu_s, report.memory.peak_rss_mib
            ),
            report.server_cpu_s > 0.0 && report.memory.peak_rss_mib > 0.0,
        ),
    ];
    if report.server == "proxy" {
        let put = report.put_records.as_ref();
        checks.push(check(
            "PutRecords calls and records per call read from /metrics",
            format!(
                "{:?} calls, {:?} records per call",
                put.map(|p| p.calls),
                put.and_then(|p| p.records_per_call)
            ),
            put.is_some_and(|p| p.calls > 0.0 && p.records_per_call.is_some_and(|r| r >= 1.0)),
        ));
        checks.push(check(
            "the proxy exits cleanly on SIGTERM",
            report.proxy_exit.clone().unwrap_or_default(),
            report.proxy_exit.as_deref() == Some("exit status: 0"),
        ));
    }
    if let Some(disk) = &report.disk {
        checks.push(check(
            "the spool's fsyncs counted and the spool drained",
            format!(
                "{} records in {} fsyncs; {} left after {:.1} s",
                disk.records_fsynced, disk.fsyncs, disk.left_after_drain, disk.drain_s
            ),
            disk.fsyncs > 0.0 && disk.records_fsynced > 0.0 && disk.left_after_drain <= 0.0,
        ));
    }
    if let Some(shards) = &report.shards {
        checks.push(check(
            "the fault layer counted the entries and their shards",
            format!(
                "{} entries in {} calls, {} throttled, {} shards seen",
                shards.entries_sent,
                shards.put_records_calls,
                shards.entries_throttled,
                shards.per_shard.len()
            ),
            shards.put_records_calls > 0 && !shards.per_shard.is_empty(),
        ));
    }
    if let Some(figures) = &report.lifecycle {
        checks.extend(lifecycle_checks(figures));
    }
    if let Some(read_back) = read_back_check(report) {
        checks.push(read_back);
        if let Some(r) = &report.read_back {
            checks.push(check(
                "all 200 events acknowledged",
                r.acknowledged.to_string(),
                r.acknowledged == 200,
            ));
        }
    }
    checks
}

/// A TLS, connection-per-request or reload run: the proxy served TLS (its answers came over the
/// TLS client; plaintext would have been closed), each request opened its own connection, and
/// every SIGHUP was counted as a successful reload.
fn lifecycle_checks(figures: &LifecycleFigures) -> Vec<Check> {
    let mut checks = Vec::new();
    if figures.transport == "tls" {
        checks.push(check(
            "the proxy served TLS",
            figures.tls_negotiated.as_deref().unwrap_or("-"),
            figures.tls_negotiated.is_some(),
        ));
    }
    if figures.connections == "per request" {
        checks.push(check(
            "a new connection for each request",
            format!(
                "{} connections opened for {} requests",
                figures.connections_opened, figures.requests_sent
            ),
            figures.requests_sent > 0 && figures.connections_opened == figures.requests_sent,
        ));
    }
    if let Some(reload) = &figures.reload {
        checks.push(reloads_counted(reload));
    }
    checks
}
