//! The JSON bodies of successful answers, as the write handlers serialize them. They derive
//! their OpenAPI schemas (`openapi`) from these same types, so the document cannot describe an
//! answer the code does not send.

use serde::Serialize;
use utoipa::ToSchema;

/// Where the event landed.
#[derive(Serialize, ToSchema)]
pub(super) struct AcceptedBody<'a> {
    /// The Kinesis shard holding the record, e.g. `shardId-000000000001`.
    pub(super) shard_id: &'a str,
    /// The record's Kinesis sequence number (a decimal string).
    pub(super) sequence_number: &'a str,
    /// On streams with KPL aggregation (`streams.aggregate`): the event's index inside the
    /// aggregated record the sequence number names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sub_sequence_number: Option<u32>,
}

/// On streams acknowledged at enqueue (`streams.ack_on_enqueue`): how many events were queued.
#[derive(Serialize, ToSchema)]
pub(super) struct QueuedBody {
    pub(super) queued: usize,
    /// Records of the request that were refused and not queued (on the records route: those
    /// that violate the stream's schema); absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) rejected: Vec<RejectedRecordBody>,
}

/// A record of a request answered 202 that was not queued.
#[derive(Serialize, ToSchema)]
pub(super) struct RejectedRecordBody {
    /// The record's index in the request (0-based, request order).
    pub(super) index: usize,
    pub(super) error_code: &'static str,
    pub(super) error_message: String,
}

/// One record's outcome, in request order.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum RecordResultBody {
    /// Kinesis accepted the record.
    Accepted {
        shard_id: String,
        sequence_number: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        sub_sequence_number: Option<u32>,
    },
    /// The record was not written; `error_code` is one of the error codes.
    Failed {
        error_code: &'static str,
        error_message: String,
    },
}

/// The outcome of every record of a request.
#[derive(Serialize, ToSchema)]
pub(super) struct RecordsResponse {
    /// How many of `records` failed.
    pub(super) failed_record_count: usize,
    pub(super) records: Vec<RecordResultBody>,
}
