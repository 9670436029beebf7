//! The HTTP edge's observable events: requests answered per route template and status, requests
//! per API key, events refused before they reached a pipeline, and body fields the API does not
//! read. Route and key handles are registered at startup, so the success path does no registry
//! lookup.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::paths::{ALL_ROUTES, UNMATCHED};
use crate::domain::truncate_for_message;
use crate::telemetry::{
    SeriesScope, API_KEY_REQUESTS, EVENTS_REJECTED, HTTP_DURATION, HTTP_REQUESTS,
    SCHEMA_VIOLATIONS, UNKNOWN_FIELDS,
};

/// Handles of one route's request metrics, registered at startup: the success path of a
/// request then does no registry lookup (the lookups were ~3% of the proxy's CPU per request).
#[derive(Debug)]
pub struct RouteMetrics {
    route: &'static str,
    ok: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    pub fn new(route: &'static str) -> Self {
        Self {
            route,
            ok: metrics::counter!(HTTP_REQUESTS, "route" => route, "status" => status_label(200)),
            duration: metrics::histogram!(HTTP_DURATION, "route" => route),
        }
    }

    /// A request on this route was answered.
    pub fn answered(&self, status: u16, took: Duration) {
        if status == 200 {
            self.ok.increment(1);
        } else {
            metrics::counter!(HTTP_REQUESTS, "route" => self.route, "status" => status_label(status))
                .increment(1);
        }
        self.duration.record(took.as_secs_f64());
    }
}

/// Request metrics of every route, and of requests no route matched, registered once (after
/// the recorder is installed).
#[derive(Debug)]
pub struct RouteMetricsSet {
    routes: Vec<RouteMetrics>,
    unmatched: RouteMetrics,
}

impl RouteMetricsSet {
    pub fn new() -> Self {
        // Registered with the routes' handles, at zero, so dashboards and alerts on unknown
        // fields have a series before the first one arrives.
        register_unknown_fields();
        Self {
            routes: ALL_ROUTES
                .iter()
                .map(|route| RouteMetrics::new(route))
                .collect(),
            unmatched: RouteMetrics::new(UNMATCHED),
        }
    }

    /// The handles of the route named `route` (its template), or of "unmatched".
    pub fn route(&self, route: Option<&str>) -> &RouteMetrics {
        route
            .and_then(|name| self.routes.iter().find(|r| r.route == name))
            .unwrap_or(&self.unmatched)
    }
}

impl Default for RouteMetricsSet {
    fn default() -> Self {
        Self::new()
    }
}

/// Requests per API key, one counter per configured key name, registered at zero at startup so
/// a key that sends nothing shows 0 (which is how an unused key is found before rotating it).
/// The names come from the configuration, never from a request, so the label is bounded.
#[derive(Debug, Default)]
pub struct ApiKeyMetrics {
    keys: Vec<(String, Counter)>,
}

impl ApiKeyMetrics {
    pub fn new(names: &[&str]) -> Self {
        Self {
            keys: names
                .iter()
                .map(|&name| {
                    let counter = metrics::counter!(API_KEY_REQUESTS, "key" => name.to_owned());
                    (name.to_owned(), counter)
                })
                .collect(),
        }
    }

    /// A request was authenticated by the key named `name`. A linear scan, like the
    /// authentication before it, which already compared every configured key.
    pub fn authenticated(&self, name: &str) {
        if let Some((_, counter)) = self.keys.iter().find(|(key, _)| key == name) {
            counter.increment(1);
        }
    }
}

/// Events refused before Kinesis (validation, auth, limits, backpressure), by stable code.
/// `stream` is `None` (an empty label) unless the stream is bounded (see
/// `RequestFacts::stream_label`), so names a client makes up never become labels; a stream with
/// a pipeline counts in its scope, and the series leaves `/metrics` with the pipeline.
pub fn events_rejected(
    stream: Option<(&str, Option<Arc<SeriesScope>>)>,
    code: &'static str,
    events: u64,
) {
    match stream {
        Some((stream, Some(scope))) => scope.register(
            || metrics::counter!(EVENTS_REJECTED, "stream" => stream.to_owned(), "code" => code),
        ),
        Some((stream, None)) => {
            metrics::counter!(EVENTS_REJECTED, "stream" => stream.to_owned(), "code" => code)
        }
        None => metrics::counter!(EVENTS_REJECTED, "stream" => "", "code" => code),
    }
    .increment(events);
}

/// Events that violate their stream's schema, by stream, labelled as [`events_rejected`] is
/// (only bounded stream names become labels).
pub fn schema_violations(stream: Option<(&str, Option<Arc<SeriesScope>>)>, events: u64) {
    match stream {
        Some((stream, Some(scope))) => {
            scope.register(|| metrics::counter!(SCHEMA_VIOLATIONS, "stream" => stream.to_owned()))
        }
        Some((stream, None)) => metrics::counter!(SCHEMA_VIOLATIONS, "stream" => stream.to_owned()),
        None => metrics::counter!(SCHEMA_VIOLATIONS, "stream" => ""),
    }
    .increment(events);
}

/// Field names the API does not read but clients send meaning one it does: the camel-case and
/// Kinesis-API spellings of `partition_key`, `explicit_hash_key`, `event` and `region`. Each is
/// a label of its own; every other name counts as "other", so the label set stays this size.
/// Such a field is ignored, as the original API ignored unknown fields (clients that send extra
/// fields keep working), which means a misspelt `partitionKey` silently gets a random key: the
/// counter and a warning (once per label) are how an operator finds such a client.
pub const WELL_KNOWN_MISSPELLINGS: [&str; 12] = [
    "partitionKey",
    "PartitionKey",
    "partitionkey",
    "partition-key",
    "key",
    "explicitHashKey",
    "ExplicitHashKey",
    "explicit-hash-key",
    "Data",
    "data",
    "Event",
    "Region",
];

/// The label of names not in [`WELL_KNOWN_MISSPELLINGS`].
const OTHER_FIELD: &str = "other";

/// Whether the warning of each label (the misspellings, then "other") was logged.
static UNKNOWN_FIELD_WARNED: [AtomicBool; WELL_KNOWN_MISSPELLINGS.len() + 1] =
    [const { AtomicBool::new(false) }; WELL_KNOWN_MISSPELLINGS.len() + 1];

fn register_unknown_fields() {
    for label in WELL_KNOWN_MISSPELLINGS.iter().chain([&OTHER_FIELD]) {
        metrics::counter!(UNKNOWN_FIELDS, "field" => *label).absolute(0);
    }
}

/// A request body had a field the API does not read (`name`, as sent). Only bodies with such
/// a field get here, so the cost is off the usual path: a scan of a dozen short names, a
/// counter lookup and, the first time per label, a warning. Cold and never inlined, so the
/// parser's loop stays as small as it was without it.
#[cold]
#[inline(never)]
pub fn unknown_field(name: &str) {
    let index = WELL_KNOWN_MISSPELLINGS
        .iter()
        .position(|known| *known == name)
        .unwrap_or(WELL_KNOWN_MISSPELLINGS.len());
    let label = WELL_KNOWN_MISSPELLINGS
        .get(index)
        .copied()
        .unwrap_or(OTHER_FIELD);
    metrics::counter!(UNKNOWN_FIELDS, "field" => label).increment(1);
    let first = UNKNOWN_FIELD_WARNED
        .get(index)
        .is_some_and(|warned| !warned.swap(true, Ordering::Relaxed));
    if first {
        // The name only, cut short: it comes from a client; never a value.
        tracing::warn!(
            field = %truncate_for_message(name),
            label,
            "a request body has a field the API does not read; it is ignored (counted in kinesis_proxy_unknown_fields_total; logged once per label). The API reads event, partition_key, explicit_hash_key and region"
        );
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
