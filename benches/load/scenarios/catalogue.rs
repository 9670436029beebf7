//! The catalogue of scenarios: what each one runs (backend, route, connections, load, proxy
//! settings, window) and what else it needs (ceiling, HTTP floor, read-back), one per target of
//! the load-benchmark issue.
//!
//! Pure data: nothing here starts a process, reads a clock or judges a result. Running a
//! scenario is `bench.rs` and `run.rs`; its targets are checked in `judge.rs`.

use crate::direct::Direct;
use crate::loadgen::Route;

/// What the proxy writes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    /// Nothing (the bare ceiling).
    None,
    /// The do-nothing endpoint, answering PutRecords after `delay_ms`.
    Null {
        delay_ms: u64,
    },
    Kinesalite {
        shards: u32,
    },
}

impl Backend {
    pub(super) fn label(self) -> String {
        match self {
            Backend::None => "-".into(),
            Backend::Null { delay_ms: 0 } => "null".into(),
            Backend::Null { delay_ms } => format!("null+{delay_ms}ms"),
            Backend::Kinesalite { shards } => format!("kinesalite/{shards}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadKind {
    /// Closed loop: the peak.
    Closed,
    /// Open loop at half the events/s the named (closed-loop) scenario reached in this run.
    HalfOf(&'static str),
    /// Open loop at `factor` x what the proxy can deliver to the delayed null endpoint
    /// (`max_in_flight_calls x max_batch_records / delay` events/s).
    Overload { factor: f64 },
}

/// A scenario of the catalogue.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub(super) backend: Backend,
    pub(super) route: Route,
    pub(super) connections: usize,
    pub(super) load: LoadKind,
    /// Proxy settings of this scenario (`section.key`, value), before `--set`.
    pub(super) settings: &'static [(&'static str, &'static str)],
    /// The window is `--duration` times this.
    pub(super) duration_factor: f64,
    /// Compare with the bare handler at the same route and connections.
    pub(super) ceiling: bool,
    /// Also run the bare handler at the proxy's measured rate: its CPU is the HTTP floor.
    pub(super) http_floor: bool,
    pub(super) read_back: bool,
    /// No proxy: the benchmark calls PutRecords on the backend itself (kinesalite's ceiling).
    pub(super) direct: Option<Direct>,
}

/// kinesalite answers a bare 413 above ~5.25 MiB (7 MiB of base64 JSON): stay well below.
pub(super) const KINESALITE_SETTINGS: &[(&str, &str)] = &[("batching.max_batch_bytes", "4194304")];

pub fn catalogue() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "null-single",
            about: "512 conns, single-event route, do-nothing Kinesis; vs the bare ceiling",
            backend: Backend::Null { delay_ms: 0 },
            route: Route::Single,
            connections: 512,
            load: LoadKind::Closed,
            settings: &[],
            duration_factor: 1.0,
            ceiling: true,
            http_floor: false,
            read_back: false,
            direct: None,
        },
        Scenario {
            name: "null-half",
            about: "open loop at half of null-single's peak: ack p99 vs linger + 2x PutRecords p99",
            backend: Backend::Null { delay_ms: 0 },
            route: Route::Single,
            connections: 512,
            load: LoadKind::HalfOf("null-single"),
            settings: &[],
            duration_factor: 1.0,
            ceiling: false,
            http_floor: false,
            read_back: false,
            direct: None,
        },
        Scenario {
            name: "null-many",
            about: "64 conns, records route (100 events/request), do-nothing Kinesis",
            backend: Backend::Null { delay_ms: 0 },
            route: Route::Many(100),
            connections: 64,
            load: LoadKind::Closed,
            settings: &[],
            duration_factor: 1.0,
            ceiling: true,
            http_floor: false,
            read_back: false,
            direct: None,
        },
        Scenario {
            name: "null-ndjson",
            about: "64 conns, records route, NDJSON of 100 events/request uncompressed: the baseline of null-ndjson-gzip",
            backend: Backend::Null { delay_ms: 0 },
            route: Route::Ndjson {
                events: 100,
                gzip: false,
            },
            connections: 64,
            load: LoadKind::Closed,
            settings: &[],
            duration_factor: 1.0,
            ceiling: false,
            http_floor: false,
            read_back: false,
            direct: None,
        },
        Scenario {
            name: "null-ndjson-gzip",
            about: "as null-ndjson, gzip'd (Content-Encoding: gzip): the proxy's CPU per event of decoding",
            backend: Backend::Null { delay_ms: 0 },
            route: Route::Ndjson {
                events: 100,
                gzip: true,
            },
            connections: 64,
            load: LoadKind::Closed,
            settings: &[],
            duration_factor: 1.0,
            ceiling: false,
            http_floor: false,
            read_back: false,
            direct: None,
        },
        Scenario {
            name: "kinesalite-direct",
            about: "no proxy: the SDK calls PutRecords (64 records, 4 in flight): kinesalite's own ceiling",
            backend: Backend::Kinesalite { shards: 4 },
            route: Route::Single,
            connections: 4,
            load: LoadKind::Closed,
            settings: &[],
            duration_factor: 1.0,
            ceiling: false,
            http_floor: false,
            read_back: false,
            direct: Some(Direct {
                records_per_call: 64,
                calls_in_flight: 4,
                shards: 4,
            }),
        },
        Scenario {
            name: "kinesalite-single",
            about: "64 conns, single-event route, kinesalite with 4 shards, read-back",
            backend: Backend::Kinesalite { shards: 4 },
            route: Route::Single,
            connections: 64,
            load: LoadKind::Closed,
            settings: KINESALITE_SETTINGS,
            duration_factor: 1.0,
            ceiling: true,
            http_floor: true,
            read_back: true,
            direct: None,
        },
        Scenario {
            name: "kinesalite-half",
            about: "open loop at half of kinesalite-single's peak: ack p99 bound, read-back",
            backend: Backend::Kinesalite { shards: 4 },
            route: Route::Single,
            connections: 64,
            load: LoadKind::HalfOf("kinesalite-single"),
            settings: KINESALITE_SETTINGS,
            duration_factor: 1.0,
            ceiling: false,
            http_floor: false,
            read_back: true,
            direct: None,
        },
        Scenario {
            name: "overload",
            about: "5x overload: records route, 2048 conns, Kinesis answering after 200 ms; memory",
            backend: Backend::Null { delay_ms: 200 },
            route: Route::Many(100),
            // Accepted requests wait ~5 s for their turn, holding their connection: 2048
            // connections keep the offered 500 requests/s going (1024 managed ~75%).
            connections: 2048,
            load: LoadKind::Overload { factor: 5.0 },
            settings: &[],
            duration_factor: 1.5,
            ceiling: false,
            http_floor: false,
            read_back: false,
            direct: None,
        },
    ]
}
