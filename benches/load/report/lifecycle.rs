//! The TLS and reload scenarios' figures (issue 19) and their own table: the transport and
//! connection mode of the run, what TLS negotiated, the handshake rate of a run that opens a
//! connection per request, the SIGHUPs sent and the reloads the proxy counted, and the plain or
//! quiet scenario of the same run each one is compared with (events/s and p99 ratios).

use std::fmt::Write;

use serde::Serialize;

use super::{opt, thousands, Latency, RunReport, ScenarioReport};

#[derive(Debug, Clone, Serialize)]
pub struct LifecycleFigures {
    /// `tls` or `plain`.
    pub transport: String,
    /// What a TLS connection to the proxy negotiated: version, cipher suite, key exchange group.
    pub tls_negotiated: Option<String>,
    /// `keep-alive`, or `per request` (each request on a new connection, closed after it).
    pub connections: String,
    /// A connection per request: new connections (and, over TLS, full handshakes) per second,
    /// which is the requests/s.
    pub handshakes_per_sec: Option<f64>,
    /// Requests sent and connections the load opened after its start, all phases: equal with a
    /// connection per request, 0 (no reconnection) with keep-alive.
    pub requests_sent: u64,
    pub connections_opened: u64,
    pub reload: Option<ReloadFigures>,
    /// The scenario this one is compared with, as measured right before it in the same run.
    pub reference: Option<Reference>,
    /// events/s over the reference's.
    pub events_ratio: Option<f64>,
    /// Client-side p99 over the reference's.
    pub p99_ratio: Option<f64>,
}

/// SIGHUPs sent during the window, and the reloads the proxy counted for them.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadFigures {
    pub every_ms: u64,
    pub signals_sent: u64,
    /// Growth of `kinesis_proxy_config_reloads_total{result="ok"}` (and `"error"`) from the
    /// window's start until the proxy had handled every signal (or the wait gave up).
    pub reloads_ok: f64,
    pub reloads_failed: f64,
}

/// A scenario's reference as measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub scenario: String,
    pub requests_per_sec: f64,
    pub events_per_sec: f64,
    pub latency: Option<Latency>,
    pub server_cpu_s_per_100k_events: Option<f64>,
    /// The load generator's CPU over the window: on a shared machine its TLS costs cores the
    /// proxy would otherwise have.
    pub loadgen_cpu_s: f64,
}

impl LifecycleFigures {
    /// Sets the reference (`reference`, measured earlier in the run) and the ratios to it.
    pub fn compare_with(&mut self, own: &ScenarioReport, reference: &ScenarioReport) {
        self.events_ratio = Some(own.events_per_sec / reference.events_per_sec.max(1e-9));
        self.p99_ratio = own
            .latency
            .as_ref()
            .zip(reference.latency.as_ref())
            .map(|(own, reference)| own.p99_ms / reference.p99_ms.max(1e-9));
        self.reference = Some(Reference {
            scenario: reference.name.clone(),
            requests_per_sec: reference.requests_per_sec,
            events_per_sec: reference.events_per_sec,
            latency: reference.latency.clone(),
            server_cpu_s_per_100k_events: reference.server_cpu_s_per_100k_events,
            loadgen_cpu_s: reference.loadgen_cpu_s,
        });
    }
}

/// The TLS and reload scenarios' own table, when any ran.
pub(super) fn lifecycle_table(out: &mut String, report: &RunReport) {
    let rows: Vec<(&ScenarioReport, &LifecycleFigures)> = report
        .scenarios
        .iter()
        .filter_map(|s| s.lifecycle.as_ref().map(|l| (s, l)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "\nTLS and reload (issue 19):\n\n\
         | scenario | transport | connections | conns | events/s | handshakes/s | compared with | its events/s | ratio \
         | p50 / p99 / max ms | its p50 / p99 / max ms | p99 ratio | proxy CPU s/100k ev (its) \
         | load generator CPU s (its) | SIGHUPs sent / reloads ok / failed | TLS |\n\
         |---|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    let latency = |l: Option<&Latency>| {
        l.map_or_else(
            || "-".into(),
            |l| format!("{:.1} / {:.1} / {:.0}", l.p50_ms, l.p99_ms, l.max_ms),
        )
    };
    for (s, l) in rows {
        let reference = l.reference.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {:.2} ({}) | {} | {} |",
            s.name,
            l.transport,
            l.connections,
            s.connections,
            thousands(s.events_per_sec),
            l.handshakes_per_sec.map_or_else(|| "-".into(), thousands),
            reference.map_or("-", |r| r.scenario.as_str()),
            reference.map_or_else(|| "-".into(), |r| thousands(r.events_per_sec)),
            l.events_ratio
                .map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
            latency(s.latency.as_ref()),
            latency(reference.and_then(|r| r.latency.as_ref())),
            opt(l.p99_ratio, 2),
            opt(s.server_cpu_s_per_100k_events, 2),
            opt(reference.and_then(|r| r.server_cpu_s_per_100k_events), 2),
            s.loadgen_cpu_s,
            opt(reference.map(|r| r.loadgen_cpu_s), 2),
            l.reload.as_ref().map_or_else(
                || "-".into(),
                |r| format!(
                    "{} / {} / {}",
                    r.signals_sent, r.reloads_ok, r.reloads_failed
                )
            ),
            l.tls_negotiated.as_deref().unwrap_or("-"),
        );
    }
}
