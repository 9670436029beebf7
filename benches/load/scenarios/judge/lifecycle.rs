//! The targets of issue 19's "Measure" section, checked on the TLS and reload scenarios'
//! figures: TLS over keep-alive connections keeps at least 0.8x the events/s of plain HTTP in
//! the same run; a SIGHUP every 500 ms under load leaves the p99 latency within noise of the
//! same load without signals, and every signal was a successful reload. The handshake rate has
//! no target: it is reported (and, for the smoke test, must have been measured).
//!
//! "Every request answered 2xx" (which counts transport errors too) is checked for every proxy
//! run in `judge.rs`, so also during the reloads.

use super::check;
use crate::report::{self, Check, LifecycleFigures, ReloadFigures, ScenarioReport};

/// TLS over keep-alive connections: at least this share of plain HTTP's events/s (the issue's
/// target: the handshakes are amortised over the connection's requests).
const TLS_MIN_EVENTS_RATIO: f64 = 0.8;

/// Reloading under load: the p99 at most this many times the same load's without signals.
/// Repeated closed-loop runs of one scenario on the 2-core machine differ in p99 by up to ~12%
/// (docs/benchmarks.md, disk section: `agg-kinesalite-single` at p99 7.3-8.2 ms over four runs
/// with the same settings), so 1.25x is
/// beyond that noise while a reload that stalled the workers for a few milliseconds twice a
/// second would still show (it would delay ~1% of requests by that stall, the p99's tail).
const RELOAD_MAX_P99_RATIO: f64 = 1.25;

/// The checks of a TLS, connection-per-request or reload scenario (none for another).
pub(super) fn checks(report: &ScenarioReport) -> Vec<Check> {
    let Some(figures) = &report.lifecycle else {
        return Vec::new();
    };
    if let Some(reload) = &figures.reload {
        return vec![reloads_counted(reload), reload_p99(report, figures)];
    }
    match (figures.handshakes_per_sec, &figures.reference) {
        (Some(handshakes), _) => vec![handshakes_reported(report, figures, handshakes)],
        // Keep-alive over TLS against plain HTTP (`reload-baseline`, TLS without a reference,
        // is only a reference itself). A reference that failed fails the scenario in `bench.rs`.
        (None, Some(_)) if figures.transport == "tls" => vec![tls_events_ratio(report, figures)],
        _ => Vec::new(),
    }
}

/// Each SIGHUP sent was a successful reload, counted by the proxy
/// (`kinesis_proxy_config_reloads_total{result="ok"}`): else the signals did nothing and the
/// latency says nothing about reloading.
pub(super) fn reloads_counted(reload: &ReloadFigures) -> Check {
    check(
        "every SIGHUP sent is a successful reload (kinesis_proxy_config_reloads_total)",
        format!(
            "{} sent (every {} ms), {} counted ok, {} failed",
            reload.signals_sent, reload.every_ms, reload.reloads_ok, reload.reloads_failed
        ),
        reload.signals_sent > 0
            && reload.reloads_ok == reload.signals_sent as f64
            && reload.reloads_failed == 0.0,
    )
}

fn reload_p99(report: &ScenarioReport, figures: &LifecycleFigures) -> Check {
    let reference = figures.reference.as_ref();
    let ms = |l: Option<&report::Latency>| {
        l.map_or_else(
            || "-".into(),
            |l| format!("{:.1} / {:.1} / {:.1}", l.p50_ms, l.p99_ms, l.max_ms),
        )
    };
    check(
        format!(
            "p99 with a SIGHUP every 500 ms <= {RELOAD_MAX_P99_RATIO}x the same load's without"
        ),
        format!(
            "{} (p50 / p99 / max {} ms with the signals, {} ms without in {}); {} vs {} events/s",
            figures
                .p99_ratio
                .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
            ms(report.latency.as_ref()),
            ms(reference.and_then(|r| r.latency.as_ref())),
            reference.map_or("-", |r| r.scenario.as_str()),
            report::thousands(report.events_per_sec),
            reference.map_or_else(|| "-".into(), |r| report::thousands(r.events_per_sec)),
        ),
        figures.p99_ratio.is_some_and(|r| r <= RELOAD_MAX_P99_RATIO),
    )
}

fn tls_events_ratio(report: &ScenarioReport, figures: &LifecycleFigures) -> Check {
    let reference = figures.reference.as_ref();
    check(
        format!(
            ">= {TLS_MIN_EVENTS_RATIO}x plain HTTP's events/s ({} keep-alive connections)",
            report.connections
        ),
        format!(
            "{} ({} events/s over TLS vs {} in {}; p99 {} vs {} ms; {})",
            figures
                .events_ratio
                .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
            report::thousands(report.events_per_sec),
            reference.map_or_else(|| "-".into(), |r| report::thousands(r.events_per_sec)),
            reference.map_or("-", |r| r.scenario.as_str()),
            report
                .latency
                .as_ref()
                .map_or_else(|| "-".into(), |l| format!("{:.1}", l.p99_ms)),
            reference
                .and_then(|r| r.latency.as_ref())
                .map_or_else(|| "-".into(), |l| format!("{:.1}", l.p99_ms)),
            figures.tls_negotiated.as_deref().unwrap_or("-"),
        ),
        figures
            .events_ratio
            .is_some_and(|r| r >= TLS_MIN_EVENTS_RATIO),
    )
}

/// No target: the rate is reported, with the TLS/plain ratio when there is a plain reference.
fn handshakes_reported(
    report: &ScenarioReport,
    figures: &LifecycleFigures,
    handshakes: f64,
) -> Check {
    let what = if figures.transport == "tls" {
        "TLS handshakes"
    } else {
        "TCP connections"
    };
    check(
        format!(
            "{what}/s measured, a new connection per request (no target; {} clients)",
            report.connections
        ),
        format!(
            "{} {what}/s{}; p50 / p99 {} ms (connect and handshake included)",
            report::thousands(handshakes),
            match (&figures.reference, figures.events_ratio) {
                (Some(r), Some(ratio)) => format!(
                    ", {ratio:.2}x {}'s {} connections/s",
                    r.scenario,
                    report::thousands(r.requests_per_sec)
                ),
                _ => String::new(),
            },
            report.latency.as_ref().map_or_else(
                || "-".into(),
                |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms)
            ),
        ),
        handshakes > 0.0,
    )
}
