//! The catalogue of scenarios: what each one runs (backend, route, connections, load, proxy
//! settings, window) and what else it needs (ceiling, HTTP floor, read-back), one per target of
//! the load-benchmark issue.
//!
//! The TLS and reload scenarios of issue 19 are `catalogue/lifecycle.rs`; what the proxy
//! writes to is `catalogue/backend.rs`, the settings it runs with `catalogue/proxy_settings.rs`.
//!
//! Pure data: nothing here starts a process, reads a clock or judges a result. Running a
//! scenario is `bench.rs` and `run.rs`; its targets are checked in `judge.rs`.

use crate::direct::Direct;
use crate::loadgen::Route;

mod backend;
mod builders;
mod lifecycle;
mod proxy_settings;

pub use backend::Backend;
use builders::{
    aggregate_scenario, ceiling_scenario, disk_scenario, shard_scenario, wide_stream_scenario,
};
pub use lifecycle::Lifecycle;
use proxy_settings::{AGGREGATE_SETTINGS, BLIND_SETTINGS, DISK_SETTINGS, MEMORY_ACK_SETTINGS};
pub(super) use proxy_settings::{DISK_AGGREGATE_SETTINGS, KINESALITE_SETTINGS};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadKind {
    /// Closed loop: the peak.
    Closed,
    /// Open loop at half the events/s the named (closed-loop) scenario reached in this run.
    HalfOf(&'static str),
    /// Open loop at `factor` x what the proxy can deliver to the delayed null endpoint
    /// (`max_in_flight_calls x max_batch_records / delay` events/s).
    Overload { factor: f64 },
    /// Open loop at this many requests/s.
    Open { requests_per_sec: f64 },
}

/// A second client in the same run, sending every event with one partition key: all of it to
/// one shard, above that shard's limit. Measured apart from the scenario's own clients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotClient {
    pub(super) connections: usize,
    /// Offered in an open loop; more than the shard takes, so its connections fall behind and
    /// it is in effect a closed loop of `connections` outstanding events on one shard.
    pub(super) events_per_sec: f64,
    pub(super) partition_key: &'static str,
}

/// What a shard-awareness scenario adds to the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardSetup {
    /// Proxy processes sharing the stream; the connections are spread evenly over them.
    pub(super) proxies: usize,
    pub(super) hot: Option<HotClient>,
    /// The same scenario without the hot client, whose latency this one is compared with.
    pub(super) without_hot: Option<&'static str>,
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
    /// Shard-awareness scenarios: several proxies, a hot client.
    pub(super) shards: Option<ShardSetup>,
    /// Disk-acknowledgement scenarios: a spool, drained before the read-back.
    pub(super) disk: Option<DiskSetup>,
    /// A cold start: no warm-up, and the window is the whole run of this many events (not
    /// `--duration`).
    pub(super) events: Option<u64>,
    /// TLS, a connection per request, SIGHUPs during the window (issue 19).
    pub(super) lifecycle: Lifecycle,
}

/// What a disk-acknowledgement scenario adds to the run: a fresh spool directory, and after
/// the window a wait until the spool has sent everything (then the read-back).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSetup {
    /// The same load answered 200 (after Kinesis), run first in the same run to compare with.
    pub(super) baseline: &'static str,
}

/// The shard-awareness scenarios' stream: 4 shards, so 4,000 records/s.
const LIMITED: Backend = Backend::LimitedKinesalite {
    shards: 4,
    records_per_second: 1000,
};

/// Connections of every shard-awareness scenario.
const SHARD_CONNECTIONS: usize = 256;

/// One proxy, no hot client.
const ONE_PROXY: ShardSetup = ShardSetup {
    proxies: 1,
    hot: None,
    without_hot: None,
};

/// The other clients of the hot-key scenarios: open loop at half the stream's limit, so their
/// latency measures waiting, not a saturated stream.
const HOT_KEY_OTHERS: LoadKind = LoadKind::Open {
    requests_per_sec: 2000.0,
};

/// The hot client: twice one shard's limit, on 64 of the 256 connections.
const HOT_CLIENT: HotClient = HotClient {
    connections: 64,
    events_per_sec: 2000.0,
    partition_key: "hot-customer-42",
};

pub fn catalogue() -> Vec<Scenario> {
    let mut all = vec![
        ceiling_scenario(
            "null-single",
            "512 conns, single-event route, do-nothing Kinesis; vs the bare ceiling",
            Backend::Null { delay_ms: 0 },
        ),
        // Right after its plain reference, so the two are measured minutes apart at most.
        lifecycle::tls_single(),
        ceiling_scenario(
            "null-single-128",
            "null-single against a do-nothing Kinesis of 128 shards (shard-aware lanes); vs the bare ceiling",
            Backend::NullSharded { shards: 128 },
        ),
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
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
            shards: None,
            disk: None,
            events: None,
            lifecycle: Lifecycle::PLAIN,
        },
        aggregate_scenario(
            "agg-kinesalite-single",
            "as kinesalite-single with KPL aggregation: >= 15,000 events/s",
            Route::Single,
            64,
        ),
        aggregate_scenario(
            "agg-kinesalite-512",
            "KPL aggregation, 512 conns, single route, kinesalite 4 shards: >= 30,000 events/s",
            Route::Single,
            512,
        ),
        aggregate_scenario(
            "agg-kinesalite-records",
            "KPL aggregation, records route (100 per request), 64 conns: <= 10 payload units/1k",
            Route::Many(100),
            64,
        ),
        disk_scenario(
            "disk-kinesalite",
            "as agg-kinesalite-single, answered 202 once fsynced in the spool: >= 30,000 events/s",
            DISK_AGGREGATE_SETTINGS,
            "agg-kinesalite-single",
        ),
        disk_scenario(
            "disk-kinesalite-noagg",
            "as kinesalite-single (no aggregation), answered 202 once fsynced in the spool",
            DISK_SETTINGS,
            "kinesalite-single",
        ),
        wide_stream_scenario(
            "memory-null-64",
            "64 conns, single route, 202 once queued, do-nothing Kinesis of 64 shards, unaggregated: <= 0.14 CPU-s/10k events",
            MEMORY_ACK_SETTINGS,
            None,
        ),
        wide_stream_scenario(
            "disk-null-64",
            "as memory-null-64, answered 202 once fsynced in the spool: >= 0.6x its events/s",
            DISK_SETTINGS,
            Some(DiskSetup {
                baseline: "memory-null-64",
            }),
        ),
        shard_scenario(
            "agg-shards-real",
            "KPL aggregation, 256 conns, 4 shards limited to 1k rec/s and 1 MiB/s: >= 20,000 ev/s",
            AGGREGATE_SETTINGS,
            LoadKind::Closed,
            SHARD_CONNECTIONS,
            ONE_PROXY,
        ),
        shard_scenario(
            "shards-real-blind",
            "shard-blind proxy (shards.aware=false), 256 conns, 4 shards limited to 1k rec/s each",
            BLIND_SETTINGS,
            LoadKind::Closed,
            SHARD_CONNECTIONS,
            ONE_PROXY,
        ),
        shard_scenario(
            "shards-real",
            "shard-aware proxy, 256 conns, 4 shards limited to 1k rec/s each: >= 95% of 4,000/s",
            KINESALITE_SETTINGS,
            LoadKind::Closed,
            SHARD_CONNECTIONS,
            ONE_PROXY,
        ),
        shard_scenario(
            "shards-three-proxies",
            "three shard-aware proxies sharing the limited 4-shard stream, 256 conns spread evenly",
            KINESALITE_SETTINGS,
            LoadKind::Closed,
            SHARD_CONNECTIONS,
            ShardSetup {
                proxies: 3,
                ..ONE_PROXY
            },
        ),
        shard_scenario(
            "shards-hot-key-alone",
            "192 conns, open loop at 2,000 events/s, random keys, limited 4-shard stream (no hot client)",
            KINESALITE_SETTINGS,
            HOT_KEY_OTHERS,
            SHARD_CONNECTIONS - HOT_CLIENT.connections,
            ONE_PROXY,
        ),
        shard_scenario(
            "shards-hot-key",
            "as shards-hot-key-alone, plus a client with one key at 2,000 events/s on 64 conns",
            KINESALITE_SETTINGS,
            HOT_KEY_OTHERS,
            SHARD_CONNECTIONS - HOT_CLIENT.connections,
            ShardSetup {
                proxies: 1,
                hot: Some(HOT_CLIENT),
                without_hot: Some("shards-hot-key-alone"),
            },
        ),
        Scenario {
            name: "shards-cold-start",
            about: "cold start, 4 shards of which other producers use 3/4 (250 rec/s left each), default settings, 12,000 events from 128 conns: <= 3% throttled",
            backend: Backend::LimitedKinesalite {
                shards: 4,
                records_per_second: 250,
            },
            connections: 128,
            events: Some(12_000),
            ..shard_scenario(
                "",
                "",
                KINESALITE_SETTINGS,
                LoadKind::Closed,
                SHARD_CONNECTIONS,
                ONE_PROXY,
            )
        },
        Scenario {
            name: "kpl-latency-30ms",
            about: "KPL stream, 512 conns, Kinesis answering in 30 ms ± 30%: vs Little's bound (512 / 30 ms = 17,067 ev/s)",
            backend: Backend::DelayedKinesalite {
                shards: 4,
                delay_ms: 30,
                jitter_pct: 30,
            },
            ..aggregate_scenario("", "", Route::Single, 512)
        },
    ];
    all.extend(lifecycle::scenarios());
    all
}
