//! The HTTP API (SPEC section 1): parse and check each request at the edge, hand its records to
//! the stream's pipeline, and answer once Kinesis has answered for them.
//!
//! Check order: draining, API key, stream name, allow-list, content type and encoding, body
//! size, body, region, record sizes, queue admission. Cheap checks that need no body come first,
//! so a refused request costs little, and an unauthenticated client learns nothing about streams.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::auth::{ApiKeys, API_KEY_HEADER};
use crate::config::Settings;
use crate::domain::{truncate_for_message, Record, Region, StreamName, StreamPatterns};
use crate::error::ApiError;
use crate::ingest::{self, ParsedRequest};
use crate::pipeline::{Pipeline, RecordOutcome, SubmitError};
use crate::ratelimit::RateLimits;
use crate::registry::{KinesisHealth, Pipelines};
use crate::telemetry::{self, RouteMetrics};

/// Shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pipelines: Arc<Pipelines>,
    pub api_keys: ApiKeys,
    pub rate_limits: RateLimits,
    pub allowed_streams: StreamPatterns,
    pub default_region: Region,
    pub draining: Arc<AtomicBool>,
    pub health: Arc<KinesisHealth>,
    pub prometheus: PrometheusHandle,
    pub route_metrics: RouteMetricsSet,
}

/// Request metrics of the write routes, registered once (after the recorder is installed).
#[derive(Debug)]
pub struct RouteMetricsSet {
    stream: RouteMetrics,
    short: RouteMetrics,
    records: RouteMetrics,
}

impl RouteMetricsSet {
    pub fn new() -> Self {
        Self {
            stream: RouteMetrics::new(ROUTE_STREAM),
            short: RouteMetrics::new(ROUTE_SHORT),
            records: RouteMetrics::new(ROUTE_RECORDS),
        }
    }
}

impl Default for RouteMetricsSet {
    fn default() -> Self {
        Self::new()
    }
}

const ROUTE_STREAM: &str = "/kinesis/stream/{stream}";
const ROUTE_SHORT: &str = "/kinesis/{stream}";
const ROUTE_RECORDS: &str = "/kinesis/stream/{stream}/records";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(ROUTE_RECORDS, web::post().to(put_records)))
        .service(resource(
            ROUTE_STREAM,
            web::post().to(put_event_stream_route),
        ))
        .service(resource(ROUTE_SHORT, web::post().to(put_event_short_route)))
        .service(resource("/healthz", web::get().to(healthz)))
        .service(resource("/readyz", web::get().to(readyz)))
        .service(resource("/metrics", web::get().to(metrics)));
}

fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|| async {
            ApiError::MethodNotAllowed.error_response()
        }))
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

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

async fn put_event_stream_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    observe(
        &state.route_metrics.stream,
        put_event(&req, payload, &state).await,
    )
}

async fn put_event_short_route(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    observe(
        &state.route_metrics.short,
        put_event(&req, payload, &state).await,
    )
}

async fn put_records(
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
                telemetry::events_rejected(error.code(), events);
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
            Err(_) => Err(crate::pipeline::RecordFailure {
                kind: crate::pipeline::FailureKind::ShuttingDown,
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
        Some(state.api_keys.authenticate(presented)?)
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
    state.pipelines.get_or_start(&region, stream)
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

enum BodyKind {
    Json,
    Ndjson,
}

/// JSON unless NDJSON is declared; a missing content type, or curl's default form type, is
/// taken as JSON (the original API accepted both). Compressed bodies are not accepted.
fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
    if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ApiError::UnsupportedContentEncoding(format!(
                "Content-Encoding {:?} is not accepted; send the body uncompressed",
                truncate_for_message(encoding)
            )));
        }
    }
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let text = value.to_str().unwrap_or("").trim();
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        // curl -d sends form-urlencoded by default; the original API Gateway deployment took
        // such bodies as JSON, so its users' scripts keep working.
        "application/json" | "application/x-www-form-urlencoded" => Ok(BodyKind::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyKind::Ndjson),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not accepted; use application/json (or application/x-ndjson on {ROUTE_RECORDS})",
            truncate_for_message(text)
        ))),
    }
}

/// Reads the body up to `limit` bytes: refused up front when `Content-Length` says it is too
/// big, and as soon as a chunked body passes the limit, so no more than `limit` is buffered.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::BodyTooLarge(format!(
            "the request body is larger than {limit} bytes (limits.max_body_bytes); split it into smaller requests"
        ))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::InvalidBody(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "draining", "code": "shutting_down"}));
    }
    if !state.health.is_reachable() {
        return HttpResponse::ServiceUnavailable().json(
            serde_json::json!({"status": "kinesis unreachable", "code": "kinesis_unavailable"}),
        );
    }
    HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .unwrap_or(mime_text_plain()),
        ))
        .body(state.prometheus.render())
}

fn mime_text_plain() -> actix_web::mime::Mime {
    actix_web::mime::TEXT_PLAIN_UTF_8
}
