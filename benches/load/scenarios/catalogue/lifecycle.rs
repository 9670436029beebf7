//! The TLS and reload scenarios (issue 19, "Measure"): TLS against plain HTTP over keep-alive
//! connections at 512 and 64 connections, the handshake rate (a new connection per request) at
//! 64, and the latency of a load during which the proxy is sent SIGHUP every 500 ms against the
//! same load without signals. Each TLS or signalled scenario names the plain or quiet one it is
//! compared with, which the benchmark runs right before it.

use super::{Backend, LoadKind, Route, Scenario};

/// What a scenario adds to the plain keep-alive run (issue 19).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// The proxy serves TLS with certificates made for the run; the load, `/readyz`,
    /// `/metrics` and the scrapers go over TLS.
    pub(in crate::scenarios) tls: bool,
    /// Each request on a new connection, closed after the answer: the handshake rate.
    pub(in crate::scenarios) connection_per_request: bool,
    /// SIGHUP the proxy this often through the measured window.
    pub(in crate::scenarios) sighup_every_ms: Option<u64>,
    /// The proxy's API key comes from `auth.keys_file` (so each reload re-reads a file).
    pub(in crate::scenarios) keys_file: bool,
    /// The scenario this one is compared with, run right before it in the same run.
    pub(in crate::scenarios) compared_with: Option<&'static str>,
}

impl Lifecycle {
    /// Plain HTTP, keep-alive, no signals: every other scenario.
    pub const PLAIN: Self = Self {
        tls: false,
        connection_per_request: false,
        sighup_every_ms: None,
        keys_file: false,
        compared_with: None,
    };
}

/// Answered 202 once queued in memory (`streams.ack_on_enqueue`): the reload scenarios measure
/// the HTTP path, which is what a reload touches (keys, rate limiters, the TLS acceptor), and
/// the 10 ms linger of an answer after Kinesis would hide a stall of a few milliseconds.
const ENQUEUE_SETTINGS: &[(&str, &str)] = &[("streams.ack_on_enqueue", "*")];

/// The reload scenarios: TLS (a reload re-reads the certificate and key too), the API key from a
/// file.
const RELOAD: Lifecycle = Lifecycle {
    tls: true,
    keys_file: true,
    ..Lifecycle::PLAIN
};

/// `tls-single`: `null-single` over TLS (512 keep-alive connections), compared with it.
pub(in crate::scenarios) fn tls_single() -> Scenario {
    Scenario {
        connections: 512,
        ..null_single(
            "tls-single",
            "as null-single over TLS (512 conns, keep-alive): events/s >= 0.8x null-single's",
            Lifecycle {
                tls: true,
                compared_with: Some("null-single"),
                ..Lifecycle::PLAIN
            },
            &[],
        )
    }
}

/// The 64-connection scenarios, each right after the one it is compared with.
pub(in crate::scenarios) fn scenarios() -> Vec<Scenario> {
    vec![
        null_single(
            "plain-single-64",
            "64 conns, keep-alive, single-event route, do-nothing Kinesis: tls-single-64's reference",
            Lifecycle::PLAIN,
            &[],
        ),
        null_single(
            "tls-single-64",
            "as plain-single-64 over TLS: events/s >= 0.8x plain-single-64's",
            Lifecycle {
                tls: true,
                compared_with: Some("plain-single-64"),
                ..Lifecycle::PLAIN
            },
            &[],
        ),
        null_single(
            "plain-handshakes-64",
            "64 clients, a new connection per request (Connection: close): connections/s",
            Lifecycle {
                connection_per_request: true,
                ..Lifecycle::PLAIN
            },
            &[],
        ),
        null_single(
            "tls-handshakes-64",
            "as plain-handshakes-64 over TLS (full handshakes, no resumption): handshakes/s",
            Lifecycle {
                tls: true,
                connection_per_request: true,
                compared_with: Some("plain-handshakes-64"),
                ..Lifecycle::PLAIN
            },
            &[],
        ),
        null_single(
            "reload-baseline",
            "64 conns over TLS, 202 once queued, API key from a file, no signal: reload-under-load's reference",
            RELOAD,
            ENQUEUE_SETTINGS,
        ),
        null_single(
            "reload-under-load",
            "as reload-baseline, SIGHUP every 500 ms: p99 <= 1.25x reload-baseline's, every reload ok",
            Lifecycle {
                sighup_every_ms: Some(500),
                compared_with: Some("reload-baseline"),
                ..RELOAD
            },
            ENQUEUE_SETTINGS,
        ),
    ]
}

/// 64 connections, closed loop, one event per request, the do-nothing Kinesis endpoint.
fn null_single(
    name: &'static str,
    about: &'static str,
    lifecycle: Lifecycle,
    settings: &'static [(&'static str, &'static str)],
) -> Scenario {
    Scenario {
        name,
        about,
        backend: Backend::Null { delay_ms: 0 },
        route: Route::Single,
        connections: 64,
        load: LoadKind::Closed,
        settings,
        duration_factor: 1.0,
        ceiling: false,
        http_floor: false,
        read_back: false,
        direct: None,
        shards: None,
        disk: None,
        events: None,
        lifecycle,
    }
}
