//! The shapes most scenarios of the catalogue share, filled in by name: the ceiling runs (the
//! single route against the bare handler), aggregation, disk and shard-awareness scenarios.

use super::proxy_settings::AGGREGATE_UNLIMITED_SETTINGS;
use super::{Backend, DiskSetup, Lifecycle, LoadKind, Scenario, ShardSetup, LIMITED};
use crate::loadgen::Route;

/// 512 connections on the single route in a closed loop, compared with the bare handler run
/// right before and after it.
pub(super) fn ceiling_scenario(
    name: &'static str,
    about: &'static str,
    backend: Backend,
) -> Scenario {
    Scenario {
        name,
        about,
        backend,
        route: Route::Single,
        connections: 512,
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
    }
}

/// An aggregation scenario against kinesalite with 4 shards, read back (deaggregated) in full.
pub(super) fn aggregate_scenario(
    name: &'static str,
    about: &'static str,
    route: Route,
    connections: usize,
) -> Scenario {
    Scenario {
        name,
        about,
        backend: Backend::Kinesalite { shards: 4 },
        route,
        connections,
        load: LoadKind::Closed,
        settings: AGGREGATE_UNLIMITED_SETTINGS,
        duration_factor: 1.0,
        ceiling: false,
        http_floor: false,
        read_back: true,
        direct: None,
        shards: None,
        disk: None,
        events: None,
        lifecycle: Lifecycle::PLAIN,
    }
}

/// A disk-acknowledgement scenario: 64 connections, single-event route, kinesalite with 4
/// shards; the spool drained after the window, then read back in full; and the HTTP floor (the
/// bare handler at the measured rate), since its CPU target is near what HTTP alone costs.
pub(super) fn disk_scenario(
    name: &'static str,
    about: &'static str,
    settings: &'static [(&'static str, &'static str)],
    baseline: &'static str,
) -> Scenario {
    Scenario {
        settings,
        http_floor: true,
        disk: Some(DiskSetup { baseline }),
        ..aggregate_scenario(name, about, Route::Single, 64)
    }
}

/// Issue 21's acknowledgement pair: 64 connections on the single route against the do-nothing
/// Kinesis standing for a stream of 64 shards, unaggregated, with the HTTP floor; a disk run is
/// compared with the memory run. Not kinesalite: with 64 shards it stores ~7,000 records/s
/// here, so a memory-acknowledged run would measure kinesalite (its queue full, 503s) and not
/// the proxy. The kinesalite disk scenarios read everything back.
pub(super) fn wide_stream_scenario(
    name: &'static str,
    about: &'static str,
    settings: &'static [(&'static str, &'static str)],
    disk: Option<DiskSetup>,
) -> Scenario {
    Scenario {
        backend: Backend::NullSharded { shards: 64 },
        settings,
        http_floor: true,
        read_back: false,
        disk,
        ..aggregate_scenario(name, about, Route::Single, 64)
    }
}

/// A shard-awareness scenario: single-event route against the limited 4-shard stream, read
/// back in full.
pub(super) fn shard_scenario(
    name: &'static str,
    about: &'static str,
    settings: &'static [(&'static str, &'static str)],
    load: LoadKind,
    connections: usize,
    setup: ShardSetup,
) -> Scenario {
    Scenario {
        name,
        about,
        backend: LIMITED,
        route: Route::Single,
        connections,
        load,
        settings,
        duration_factor: 1.0,
        ceiling: false,
        http_floor: false,
        read_back: true,
        direct: None,
        shards: Some(setup),
        disk: None,
        events: None,
        lifecycle: Lifecycle::PLAIN,
    }
}
