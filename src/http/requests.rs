//! The request bodies as the OpenAPI document describes them. The handlers do not deserialize
//! into these types (`ingest` parses bodies by hand, keeping each event's bytes as sent), so the
//! `openapi` tests hold them to the parser instead: every documented example must parse, and
//! every documented field must be one the parser reads.

use utoipa::ToSchema;

/// One event.
#[derive(ToSchema)]
#[allow(dead_code)] // Read by the OpenAPI derive only.
pub(super) struct EventRequest {
    /// Any JSON value except `null`; the Kinesis record's data is its compact serialization,
    /// byte for byte (key order, number digits and escapes kept).
    event: serde_json::Value,
    /// 1-256 Unicode characters; picks the shard (MD5). Absent: a random key.
    #[schema(min_length = 1, max_length = 256)]
    partition_key: Option<String>,
    /// A decimal in 0..2^128-1 that picks the shard instead of MD5(partition_key).
    #[schema(pattern = "^[0-9]{1,39}$")]
    explicit_hash_key: Option<String>,
    /// The AWS region of the stream; default `kinesis.default_region`. Must be served by the
    /// proxy (`kinesis.allowed_regions`).
    region: Option<String>,
}

/// One record of a records request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct RecordEntry {
    /// As `event` of a single-event request.
    event: serde_json::Value,
    #[schema(min_length = 1, max_length = 256)]
    partition_key: Option<String>,
    #[schema(pattern = "^[0-9]{1,39}$")]
    explicit_hash_key: Option<String>,
}

/// Many events in one request (at most `limits.max_records_per_request`), validated all or
/// nothing.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct RecordsRequest {
    #[schema(min_items = 1)]
    records: Vec<RecordEntry>,
    /// As `region` of a single-event request, once for the whole request.
    region: Option<String>,
}
