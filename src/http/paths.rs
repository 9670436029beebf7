//! The route templates: the paths clients use, and the labels of the request metrics.

pub const ROUTE_STREAM: &str = "/kinesis/stream/{stream}";
pub const ROUTE_SHORT: &str = "/kinesis/{stream}";
pub const ROUTE_RECORDS: &str = "/kinesis/stream/{stream}/records";
pub const ROUTE_HEALTHZ: &str = "/healthz";
pub const ROUTE_READYZ: &str = "/readyz";
pub const ROUTE_METRICS: &str = "/metrics";

/// Every route, as the `route` label of the request metrics.
pub const ALL_ROUTES: [&str; 6] = [
    ROUTE_STREAM,
    ROUTE_SHORT,
    ROUTE_RECORDS,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
];

/// The `route` label of requests no route matched (404).
pub const UNMATCHED: &str = "unmatched";
