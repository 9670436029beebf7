//! The route templates: the paths clients use, and the labels of the request metrics.

pub const ROUTE_STREAM: &str = "/kinesis/stream/{stream}";
pub const ROUTE_SHORT: &str = "/kinesis/{stream}";
pub const ROUTE_RECORDS: &str = "/kinesis/stream/{stream}/records";
pub const ROUTE_HEALTHZ: &str = "/healthz";
pub const ROUTE_READYZ: &str = "/readyz";
pub const ROUTE_METRICS: &str = "/metrics";
pub const ROUTE_OPENAPI: &str = "/openapi.json";

/// Every route: the route table registers exactly these (`routes::configure`), and they are the
/// `route` label of the request metrics.
pub const ALL_ROUTES: [&str; 7] = [
    ROUTE_STREAM,
    ROUTE_SHORT,
    ROUTE_RECORDS,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
    ROUTE_OPENAPI,
];

/// The `route` label of requests no route matched (404).
pub const UNMATCHED: &str = "unmatched";
