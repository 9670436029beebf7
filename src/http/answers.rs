//! The JSON bodies of successful answers, as the write handlers serialize them, and the records
//! route's answer built from its records' outcomes. They derive
//! their OpenAPI schemas (`openapi`) from these same types, so the document cannot describe an
//! answer the code does not send.

use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;

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

/// The error every failed record shares so far (`Some(None)` once two differ).
pub(super) fn merge_error(
    common: Option<Option<ApiError>>,
    error: &ApiError,
) -> Option<Option<ApiError>> {
    match common {
        None => Some(Some(error.clone())),
        Some(Some(first)) if first.code() == error.code() => Some(Some(first)),
        Some(_) => Some(None),
    }
}

/// The records route's answer: every record's outcome in request order.
pub(super) fn records_answer(
    results: Vec<Option<RecordResultBody>>,
    failed: usize,
    common_error: Option<Option<ApiError>>,
) -> HttpResponse {
    let body = RecordsResponse {
        failed_record_count: failed,
        records: results.into_iter().flatten().collect(),
    };
    match common_error {
        // Every record failed, all for the same reason: answer with that reason's status (503
        // and Retry-After when Kinesis is unavailable), so load balancers and status-based
        // dashboards see the failure. The per-record body stays. Partial failures, or
        // failures for different reasons, are a 200 whose body says which records failed.
        Some(Some(error)) if failed == body.records.len() => {
            let mut response = error.error_response();
            let mut builder = HttpResponse::build(response.status());
            for (name, value) in response.headers_mut().drain() {
                if let Some(name) = name {
                    if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                        builder.insert_header((name, value));
                    }
                }
            }
            builder.json(body)
        }
        _ => HttpResponse::Ok().json(body),
    }
}
