//! The write routes: one event (`/kinesis/stream/{stream}`, `/kinesis/{stream}`) and many
//! (`/kinesis/stream/{stream}/records`). Each runs the checks in the order the module above
//! documents, submits the records to their pipeline and waits for the outcome (or answers 202
//! at once for streams acknowledged at enqueue).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::answers::{
    merge_error, records_answer, AcceptedBody, QueuedBody, RecordResultBody, RecordsResponse,
    RejectedRecordBody,
};
use super::body::{body_kind, read_body, BodyKind};
use super::contracts::{check_schemas, request_meta};
use super::envelope;
use super::error::ApiError;
pub(super) use super::facts::RequestFacts;
use super::ingest::{self, ParsedRequest};
use super::metrics::{events_rejected, schema_violations};
use super::paths::{ROUTE_RECORDS, ROUTE_SHORT, ROUTE_STREAM};
use super::requests::{EventRequest, RecordsRequest};
use super::schemas;
use super::state::AppState;
use crate::domain::{truncate_for_message, Record, Region, StreamName};
use crate::pipeline::{
    Acknowledgement, FailureKind, Pipeline, RecordFailure, RecordOutcome, StartError, SubmitError,
};
use crate::spool::SpoolError;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};

/// Writes one event; answers once Kinesis accepted it.
#[utoipa::path(post, path = ROUTE_STREAM, tag = "events",
    request_body(content(
        (EventRequest = "application/json", example = json!({"event": {"type": "page_view", "user": 42}, "partition_key": "user-42"})),
        (EventRequest = "text/plain", example = json!({"event": {"type": "page_view", "user": 42}})),
    )),
    responses(
        (status = 200, description = "Kinesis accepted the event", body = AcceptedBody),
        (status = 202, description = "Stored: fsynced in the disk spool (streams acknowledged on disk), or queued in memory (streams acknowledged at enqueue)", body = QueuedBody),
    ))]
pub(super) async fn put_event_stream_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut facts = RequestFacts::new(1);
    let result = put_event(&req, payload, &state, &mut facts).await;
    answer(&req, &state, facts, result)
}

/// The original API's form of the single-event route; the same in every way.
#[utoipa::path(post, path = ROUTE_SHORT, tag = "events",
    request_body(content(
        (EventRequest = "application/json", example = json!({"event": {"type": "page_view", "user": 42}})),
        (EventRequest = "text/plain", example = json!({"event": {"type": "page_view", "user": 42}})),
    )),
    responses(
        (status = 200, description = "Kinesis accepted the event", body = AcceptedBody),
        (status = 202, description = "Stored: fsynced in the disk spool (streams acknowledged on disk), or queued in memory (streams acknowledged at enqueue)", body = QueuedBody),
    ))]
pub(super) async fn put_event_short_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut facts = RequestFacts::new(1);
    let result = put_event(&req, payload, &state, &mut facts).await;
    answer(&req, &state, facts, result)
}

/// Writes many events: a JSON `records` array, or NDJSON (one single-event object per line).
#[utoipa::path(post, path = ROUTE_RECORDS, tag = "events",
    request_body(content(
        (RecordsRequest = "application/json", example = json!({"records": [{"event": {"n": 1}}, {"event": {"n": 2}, "partition_key": "k"}]})),
        (String = "application/x-ndjson", example = json!("{\"event\": {\"n\": 1}}\n{\"event\": {\"n\": 2}, \"partition_key\": \"k\"}\n")),
        (RecordsRequest = "text/plain", example = json!({"records": [{"event": {"n": 1}}]})),
    )),
    responses(
        (status = 200, description = "Every record's outcome, in request order; some may have failed", body = RecordsResponse),
        (status = 202, description = "Stored: fsynced in the disk spool (streams acknowledged on disk), or queued in memory (streams acknowledged at enqueue)", body = QueuedBody),
    ))]
pub(super) async fn put_records(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Until the body is parsed, a refused request counts as one event.
    let mut facts = RequestFacts::new(1);
    let result = put_many(&req, payload, &state, &mut facts).await;
    answer(&req, &state, facts, result)
}

/// A refusal, and whether its events count as rejected at the door (false once Kinesis had
/// them: those are counted as `records_failed` by the pipeline).
struct Refusal {
    error: ApiError,
    at_the_door: bool,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            at_the_door: true,
        }
    }
}

fn after_kinesis(error: ApiError) -> Refusal {
    Refusal {
        error,
        at_the_door: false,
    }
}

/// Counts refused events by stream and code, and leaves the request's facts for the access log.
fn answer(
    req: &HttpRequest,
    state: &AppState,
    facts: RequestFacts,
    result: Result<HttpResponse, Refusal>,
) -> HttpResponse {
    let response = match result {
        Ok(response) => response,
        Err(Refusal { error, at_the_door }) => {
            if at_the_door {
                let events = facts.events.saturating_sub(facts.rejected_counted);
                events_rejected(facts.stream_label(state), error.code(), events);
            }
            error.error_response()
        }
    };
    req.extensions_mut().insert(facts);
    response
}

async fn put_event(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    facts: &mut RequestFacts,
) -> Result<HttpResponse, Refusal> {
    let started = Instant::now();
    let Admitted { stream, key } = admit_request(req, state, facts)?;
    match body_kind(req)? {
        BodyKind::Json => {}
        BodyKind::Ndjson => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "NDJSON is accepted on {ROUTE_RECORDS}; this route takes one application/json event"
            ))
            .into())
        }
    }
    let body = read_body(req, payload, state).await?;
    let ParsedRequest {
        mut records,
        region,
    } = ingest::parse_single(&body)?;
    let pipeline = pipeline_for(state, region.as_deref(), &stream, facts).await?;
    let Some(mut record) = records.pop() else {
        return Err(ApiError::Internal("parsed no record".into()).into());
    };
    if let Some(validator) = state.schemas.load().for_stream(&stream) {
        if let Err(message) = schemas::check(validator, &record.data) {
            schema_violations(facts.stream_label(state), 1);
            return Err(ApiError::SchemaViolation(message).into());
        }
    }
    // Before the size check: the record Kinesis gets, envelope included, must fit.
    if state.envelope.matches(&stream) {
        envelope::wrap(&mut record, &request_meta(req, state, key.as_deref()));
    }
    check_record_size(&pipeline, &record, None)?;
    state.rate_limits.check(
        key.as_deref(),
        pipeline.region(),
        &stream,
        1,
        record.kinesis_size(),
        |r, s| state.pipelines.is_running(r, s),
    )?;
    if pipeline.acknowledgement() == Acknowledgement::Disk {
        return append_to_spool(state, &pipeline, vec![record], Vec::new()).await;
    }
    let receiver = pipeline.submit_one(record, started).map_err(submit_error)?;
    let Some(receiver) = receiver else {
        return Ok(HttpResponse::Accepted().json(QueuedBody {
            queued: 1,
            rejected: Vec::new(),
        }));
    };
    match receiver.await {
        Ok(Ok(accepted)) => Ok(HttpResponse::Ok().json(AcceptedBody {
            shard_id: &accepted.shard_id,
            sequence_number: &accepted.sequence_number,
            sub_sequence_number: accepted.sub_sequence_number,
        })),
        Ok(Err(failure)) => Err(after_kinesis(ApiError::from_record_failure(
            &failure,
            pipeline.region(),
            pipeline.stream(),
        ))),
        // The pipeline dropped the record without an answer: only possible while the process
        // is being torn down. Not acknowledged, so the client may safely retry.
        Err(_) => Err(after_kinesis(ApiError::ShuttingDown)),
    }
}

async fn put_many(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    facts: &mut RequestFacts,
) -> Result<HttpResponse, Refusal> {
    let started = Instant::now();
    let Admitted { stream, key } = admit_request(req, state, facts)?;
    let kind = body_kind(req)?;
    let body = read_body(req, payload, state).await?;
    let max_records = state.settings.limits.max_records_per_request;
    let parsed = match kind {
        BodyKind::Json => ingest::parse_records_json(&body, max_records),
        BodyKind::Ndjson => ingest::parse_ndjson(&body, max_records),
    }?;
    let total = parsed.records.len();
    facts.events = total as u64;
    let pipeline = pipeline_for(state, parsed.region.as_deref(), &stream, facts).await?;
    // Records that violate the stream's schema are answered one by one; the rest go on.
    // `indices[k]` is the request index of the k-th record kept.
    let (mut records, indices, rejected) = check_schemas(state, &stream, parsed.records);
    if !rejected.is_empty() {
        let label = facts.stream_label(state);
        schema_violations(label.clone(), rejected.len() as u64);
        events_rejected(label, "schema_violation", rejected.len() as u64);
        facts.rejected_counted = rejected.len() as u64;
    }
    if state.envelope.matches(&stream) {
        let suffix = request_meta(req, state, key.as_deref());
        for record in &mut records {
            envelope::wrap(record, &suffix);
        }
    }
    let mut bytes = 0;
    for (record, index) in records.iter().zip(&indices) {
        check_record_size(&pipeline, record, Some(*index))?;
        bytes += record.kinesis_size();
    }
    // Slots of the answer, in request order; the refused ones are filled already.
    let mut results: Vec<Option<RecordResultBody>> = (0..total).map(|_| None).collect();
    // The error shared by every failed record so far; `None` once two differ.
    let mut common_error: Option<Option<ApiError>> = None;
    let mut failed = 0;
    for (index, error) in &rejected {
        failed += 1;
        common_error = merge_error(common_error, error);
        if let Some(slot) = results.get_mut(*index) {
            *slot = Some(RecordResultBody::Failed {
                error_code: error.code(),
                error_message: error.to_string(),
            });
        }
    }
    if records.is_empty() {
        return Ok(records_answer(results, failed, common_error));
    }
    state.rate_limits.check(
        key.as_deref(),
        pipeline.region(),
        &stream,
        records.len(),
        bytes,
        |r, s| state.pipelines.is_running(r, s),
    )?;
    let rejected_bodies = || {
        rejected
            .iter()
            .map(|(index, error)| RejectedRecordBody {
                index: *index,
                error_code: error.code(),
                error_message: error.to_string(),
            })
            .collect()
    };
    if pipeline.acknowledgement() == Acknowledgement::Disk {
        return append_to_spool(state, &pipeline, records, rejected_bodies()).await;
    }
    let receivers = pipeline
        .submit_many(records, started)
        .map_err(submit_error)?;
    if receivers.iter().all(Option::is_none) {
        return Ok(HttpResponse::Accepted().json(QueuedBody {
            queued: receivers.len(),
            rejected: rejected_bodies(),
        }));
    }
    for (index, receiver) in indices.into_iter().zip(receivers) {
        let Some(receiver) = receiver else {
            continue;
        };
        let outcome: RecordOutcome = match receiver.await {
            Ok(outcome) => outcome,
            Err(_) => Err(RecordFailure {
                kind: FailureKind::ShuttingDown,
                kinesis_code: "shutting_down".into(),
                message: "the proxy shut down before the record could be written".into(),
            }),
        };
        let result = match outcome {
            Ok(accepted) => RecordResultBody::Accepted {
                shard_id: accepted.shard_id,
                sequence_number: accepted.sequence_number,
                sub_sequence_number: accepted.sub_sequence_number,
            },
            Err(failure) => {
                failed += 1;
                let error =
                    ApiError::from_record_failure(&failure, pipeline.region(), pipeline.stream());
                let body = RecordResultBody::Failed {
                    error_code: error.code(),
                    error_message: error.to_string(),
                };
                common_error = merge_error(common_error, &error);
                body
            }
        };
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(result);
        }
    }
    Ok(records_answer(results, failed, common_error))
}

/// A disk stream's answer: 202 once the spool's fsync covers every record of the request.
async fn append_to_spool(
    state: &AppState,
    pipeline: &Pipeline,
    records: Vec<Record>,
    rejected: Vec<RejectedRecordBody>,
) -> Result<HttpResponse, Refusal> {
    let Some(spool) = &state.spool else {
        return Err(ApiError::Internal(
            "the stream acknowledges on disk but no spool is open".into(),
        )
        .into());
    };
    let queued = spool
        .append(pipeline.region(), pipeline.stream(), records)
        .await
        .map_err(spool_error)?;
    pipeline.count_received(queued as u64);
    Ok(HttpResponse::Accepted().json(QueuedBody { queued, rejected }))
}

fn spool_error(error: SpoolError) -> ApiError {
    match error {
        SpoolError::Full(reason) => ApiError::SpoolFull(format!(
            "the proxy's disk spool for this stream is full ({}): events arrive faster than Kinesis takes them, Kinesis is unreachable, or the disk is full; nothing of this request was stored; retry after the Retry-After delay",
            reason.for_client()
        )),
        SpoolError::TooLarge { size, max } => ApiError::RecordTooLarge(format!(
            "a record of this request takes {size} bytes in the disk spool, more than one entry may ({max}, bounded by spool.max_bytes); send smaller records"
        )),
        SpoolError::Closed => ApiError::ShuttingDown,
        other => {
            tracing::error!(error = %other, "spool: an append failed");
            ApiError::SpoolUnavailable(
                "the proxy's disk spool cannot store events (its operator must look at the proxy's log); nothing of this request is acknowledged; retry against another instance".into(),
            )
        }
    }
}

/// Who is asking and where to: the outcome of the checks that need no body.
struct Admitted {
    stream: StreamName,
    /// The API key's name; `None` when authentication is off.
    key: Option<Arc<str>>,
}

/// The checks that need no body: draining, API key, stream name, the key's scope, allow-list.
fn admit_request(
    req: &HttpRequest,
    state: &AppState,
    facts: &mut RequestFacts,
) -> Result<Admitted, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    // The keys as they are now (a SIGHUP may swap them): one lock-free load per request.
    let keys = state.api_keys.load();
    let key = if state.settings.auth.required {
        let key = keys.authenticate_request(req, &state.public_key_origins)?;
        facts.key = Some(key.name.clone());
        state.key_metrics.load().authenticated(key.name);
        Some(key)
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
    // The key's scope before the allow-list: a key limited to some streams gets the same answer
    // for every other stream, allowed or not, existing or not.
    if let Some(key) = key.filter(|key| !key.may_write(&stream)) {
        return Err(key.out_of_scope(&stream));
    }
    if !state.allowed_streams.matches(&stream) {
        return Err(ApiError::StreamNotAllowed(stream.to_string()));
    }
    facts.stream = Some(stream.clone());
    Ok(Admitted {
        stream,
        key: key.map(|key| key.name.clone()),
    })
}

async fn pipeline_for(
    state: &AppState,
    region: Option<&str>,
    stream: &StreamName,
    facts: &mut RequestFacts,
) -> Result<Arc<Pipeline>, ApiError> {
    let region = match region {
        None => state.default_region.clone(),
        Some(raw) => {
            let region = Region::parse(raw).map_err(|e| ApiError::InvalidRegion(e.to_string()))?;
            if !state.settings.region_allowed(&region) {
                return Err(ApiError::RegionNotAllowed(format!(
                    "region {region} is not served by this proxy; it serves {}",
                    state.settings.served_regions()
                )));
            }
            region
        }
    };
    let pipeline = state
        .pipelines
        .get_or_start(&region, stream)
        .await
        .map_err(|e| match e {
            StartError::ShuttingDown => ApiError::ShuttingDown,
            StartError::StreamNotFound => ApiError::StreamNotFound(format!(
                "stream {stream} does not exist in Kinesis in region {region}"
            )),
            StartError::Unconfirmed => ApiError::StreamUnconfirmed(format!(
                "the proxy cannot check that stream {stream} exists in region {region} while Kinesis is unreachable, and Kinesis has never confirmed it to this proxy; nothing was stored; retry after the Retry-After delay"
            )),
            StartError::TooManyPipelines { .. } => ApiError::TooManyStreams(e.to_string()),
            StartError::Thread(_) => ApiError::Internal(e.to_string()),
        })?;
    facts.series = Some(pipeline.series().clone());
    Ok(pipeline)
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
        SubmitError::HotShard(hot) => ApiError::HotShard(format!(
            "shard {} of this stream already holds its share of the queue (shards.max_backlog_share): its events arrive faster than Kinesis takes them; events for other shards are still accepted. Retry after the Retry-After delay, or spread events over more partition keys",
            hot.shard_id
        )),
        SubmitError::Closed => ApiError::ShuttingDown,
    }
}
