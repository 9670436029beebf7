//! The write routes: one event (`/kinesis/stream/{stream}`, `/kinesis/{stream}`) and many
//! (`/kinesis/stream/{stream}/records`). Each runs the checks in the order the module above
//! documents, submits the records to their pipeline and waits for the outcome (or answers 202
//! at once for streams acknowledged at enqueue).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use super::auth::API_KEY_HEADER;
use super::body::{body_kind, read_body, BodyKind};
use super::error::ApiError;
use super::ingest::{self, ParsedRequest};
use super::metrics::{events_rejected, RouteMetrics};
use super::paths::ROUTE_RECORDS;
use super::state::AppState;
use crate::domain::{truncate_for_message, Record, Region, StreamName};
use crate::pipeline::{
    FailureKind, Pipeline, RecordFailure, RecordOutcome, StartError, SubmitError,
};

#[derive(Serialize)]
struct AcceptedBody<'a> {
    shard_id: &'a str,
    sequence_number: &'a str,
}

#[derive(Serialize)]
struct QueuedBody {
    queued: usize,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RecordResultBody {
    Accepted {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        error_code: &'static str,
        error_message: String,
    },
}

#[derive(Serialize)]
struct RecordsResponse {
    failed_record_count: usize,
    records: Vec<RecordResultBody>,
}

pub(super) async fn put_event_stream_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    observe(
        &state.route_metrics.stream,
        put_event(&req, payload, &state).await,
    )
}

pub(super) async fn put_event_short_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    observe(
        &state.route_metrics.short,
        put_event(&req, payload, &state).await,
    )
}

pub(super) async fn put_records(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    observe(
        &state.route_metrics.records,
        put_many(&req, payload, &state).await,
    )
}

/// Counts the answer, and the refused events by code.
fn observe(
    route: &RouteMetrics,
    result: Result<(HttpResponse, Instant), (ApiError, Instant, u64)>,
) -> HttpResponse {
    match result {
        Ok((response, started)) => {
            route.answered(response.status().as_u16(), started.elapsed());
            response
        }
        Err((error, started, events)) => {
            // Failures after Kinesis had the records are counted as records_failed instead.
            if events > 0 {
                events_rejected(error.code(), events);
            }
            let response = error.error_response();
            route.answered(response.status().as_u16(), started.elapsed());
            response
        }
    }
}

type Handled = Result<(HttpResponse, Instant), (ApiError, Instant, u64)>;

async fn put_event(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Handled {
    let started = Instant::now();
    let fail = |e: ApiError| (e, started, 1);
    let Admitted { stream, key } = admit_request(req, state).map_err(fail)?;
    match body_kind(req).map_err(fail)? {
        BodyKind::Json => {}
        BodyKind::Ndjson => {
            return Err(fail(ApiError::UnsupportedMediaType(format!(
                "NDJSON is accepted on {ROUTE_RECORDS}; this route takes one application/json event"
            ))))
        }
    }
    let body = read_body(req, payload, state.settings.limits.max_body_bytes)
        .await
        .map_err(fail)?;
    let ParsedRequest {
        mut records,
        region,
    } = ingest::parse_single(&body).map_err(fail)?;
    let pipeline = pipeline_for(state, region.as_deref(), &stream).map_err(fail)?;
    let Some(record) = records.pop() else {
        return Err(fail(ApiError::Internal("parsed no record".into())));
    };
    check_record_size(&pipeline, &record, None).map_err(fail)?;
    state
        .rate_limits
        .check(key, pipeline.region(), &stream, 1, record.kinesis_size())
        .map_err(fail)?;
    let receiver = pipeline
        .submit_one(record, started)
        .map_err(|e| fail(submit_error(e)))?;
    let Some(receiver) = receiver else {
        return Ok((
            HttpResponse::Accepted().json(QueuedBody { queued: 1 }),
            started,
        ));
    };
    match receiver.await {
        Ok(Ok(accepted)) => Ok((
            HttpResponse::Ok().json(AcceptedBody {
                shard_id: &accepted.shard_id,
                sequence_number: &accepted.sequence_number,
            }),
            started,
        )),
        Ok(Err(failure)) => Err((ApiError::from_record_failure(&failure), started, 0)),
        // The pipeline dropped the record without an answer: only possible while the process
        // is being torn down. Not acknowledged, so the client may safely retry.
        Err(_) => Err((ApiError::ShuttingDown, started, 0)),
    }
}

async fn put_many(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Handled {
    let started = Instant::now();
    let fail = |e: ApiError| (e, started, 1);
    let Admitted { stream, key } = admit_request(req, state).map_err(fail)?;
    let kind = body_kind(req).map_err(fail)?;
    let body = read_body(req, payload, state.settings.limits.max_body_bytes)
        .await
        .map_err(fail)?;
    let max_records = state.settings.limits.max_records_per_request;
    let parsed = match kind {
        BodyKind::Json => ingest::parse_records_json(&body, max_records),
        BodyKind::Ndjson => ingest::parse_ndjson(&body, max_records),
    }
    .map_err(fail)?;
    let count = parsed.records.len() as u64;
    let fail_all = |e: ApiError| (e, started, count);
    let pipeline = pipeline_for(state, parsed.region.as_deref(), &stream).map_err(fail_all)?;
    let mut bytes = 0;
    for (index, record) in parsed.records.iter().enumerate() {
        check_record_size(&pipeline, record, Some(index)).map_err(fail_all)?;
        bytes += record.kinesis_size();
    }
    state
        .rate_limits
        .check(key, pipeline.region(), &stream, parsed.records.len(), bytes)
        .map_err(fail_all)?;
    let receivers = pipeline
        .submit_many(parsed.records, started)
        .map_err(|e| fail_all(submit_error(e)))?;
    if receivers.iter().all(Option::is_none) {
        return Ok((
            HttpResponse::Accepted().json(QueuedBody {
                queued: receivers.len(),
            }),
            started,
        ));
    }
    let mut results = Vec::with_capacity(receivers.len());
    let mut failed = 0;
    for receiver in receivers.into_iter().flatten() {
        let outcome: RecordOutcome = match receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(RecordFailure {
                kind: FailureKind::ShuttingDown,
                kinesis_code: "shutting_down".into(),
                message: "the proxy shut down before the record could be written".into(),
            }),
        };
        results.push(match outcome {
            Ok(accepted) => RecordResultBody::Accepted {
                shard_id: accepted.shard_id,
                sequence_number: accepted.sequence_number,
            },
            Err(failure) => {
                failed += 1;
                let error = ApiError::from_record_failure(&failure);
                RecordResultBody::Failed {
                    error_code: error.code(),
                    error_message: error.to_string(),
                }
            }
        });
    }
    Ok((
        HttpResponse::Ok().json(RecordsResponse {
            failed_record_count: failed,
            records: results,
        }),
        started,
    ))
}

/// Who is asking and where to: the outcome of the checks that need no body.
struct Admitted<'a> {
    stream: StreamName,
    /// The API key's name; `None` when authentication is off.
    key: Option<&'a str>,
}

/// The checks that need no body: draining, API key, stream name, allow-list.
fn admit_request<'a>(req: &HttpRequest, state: &'a AppState) -> Result<Admitted<'a>, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    let key = if state.settings.auth.required {
        let presented = req.headers().get(API_KEY_HEADER).map(|v| v.as_bytes());
        let name = state.api_keys.authenticate(presented)?;
        state.key_metrics.authenticated(name);
        Some(name)
    } else {
        None
    };
    let raw = req.match_info().get("stream").unwrap_or_default();
    let stream = StreamName::parse(raw).map_err(|e| {
        ApiError::InvalidStreamName(format!(
            "invalid stream name {:?}: {e}",
            truncate_for_message(raw)
        ))
    })?;
    if !state.allowed_streams.matches(&stream) {
        return Err(ApiError::StreamNotAllowed(stream.to_string()));
    }
    Ok(Admitted { stream, key })
}

fn pipeline_for(
    state: &AppState,
    region: Option<&str>,
    stream: &StreamName,
) -> Result<Arc<Pipeline>, ApiError> {
    let region = match region {
        None => state.default_region.clone(),
        Some(raw) => {
            let region = Region::parse(raw).map_err(|e| ApiError::InvalidRegion(e.to_string()))?;
            if !state.settings.region_allowed(&region) {
                return Err(ApiError::RegionNotAllowed(format!(
                    "region {region} is not served here: only {} and kinesis.allowed_regions ({})",
                    state.default_region,
                    state.settings.kinesis.allowed_regions.join(", ")
                )));
            }
            region
        }
    };
    state
        .pipelines
        .get_or_start(&region, stream)
        .map_err(|e| match e {
            StartError::ShuttingDown => ApiError::ShuttingDown,
            StartError::TooManyPipelines { .. } => ApiError::TooManyStreams(e.to_string()),
            StartError::Thread(_) => ApiError::Internal(e.to_string()),
        })
}

fn check_record_size(
    pipeline: &Pipeline,
    record: &Record,
    index: Option<usize>,
) -> Result<(), ApiError> {
    let max = pipeline.max_record_bytes();
    let size = record.kinesis_size();
    if size > max {
        let which = index.map_or(String::new(), |i| format!("records[{i}]: "));
        return Err(ApiError::RecordTooLarge(format!(
            "{which}the record is {size} bytes (compact event JSON + partition key); stream {} takes at most {max}",
            pipeline.stream()
        )));
    }
    Ok(())
}

fn submit_error(error: SubmitError) -> ApiError {
    match error {
        SubmitError::QueueFull => ApiError::QueueFull,
        SubmitError::Closed => ApiError::ShuttingDown,
    }
}
