//! The route templates: the paths clients use, and the labels of the request metrics.

pub const ROUTE_STREAM: &str = "/kinesis/stream/{stream}";
pub const ROUTE_SHORT: &str = "/kinesis/{stream}";
pub const ROUTE_RECORDS: &str = "/kinesis/stream/{stream}/records";
