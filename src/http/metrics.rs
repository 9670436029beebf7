//! The HTTP edge's observable events: requests answered per route template and status, requests
//! per API key, and events refused before they reached a pipeline. Route and key handles are
//! registered at startup, so the success path does no registry lookup.

use std::time::Duration;

use metrics::{Counter, Histogram};

use super::paths::{ALL_ROUTES, UNMATCHED};
use crate::telemetry::{
    SeriesScope, API_KEY_REQUESTS, EVENTS_REJECTED, HTTP_DURATION, HTTP_REQUESTS,
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
/// `stream` is `None` (an empty label) when the request was refused before its stream had a
/// pipeline, so names a client makes up never become labels; otherwise the series is the
/// stream's, in its scope, and leaves `/metrics` with its pipeline.
pub fn events_rejected(stream: Option<(&str, &SeriesScope)>, code: &'static str, events: u64) {
    match stream {
        Some((stream, scope)) => scope.register(
            || metrics::counter!(EVENTS_REJECTED, "stream" => stream.to_owned(), "code" => code),
        ),
        None => metrics::counter!(EVENTS_REJECTED, "stream" => "", "code" => code),
    }
    .increment(events);
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
