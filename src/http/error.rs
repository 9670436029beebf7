//! Every way a request can fail, mapped in one place to its HTTP status, its stable `code` and
//! a message a person can act on. Clients switch on `code`; the set is documented in docs/api.md
//! and only grows.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{Region, StreamName};
use crate::kinesis::kinesis_code_label;
use crate::pipeline::{FailureKind, RecordFailure};

/// The request body codings accepted (`http::decode`), as the `Accept-Encoding` header of a 415
/// lists them (RFC 9110 15.5.16).
pub const ACCEPTED_CODINGS: &str = "gzip, zstd, identity";

/// `EnumIter` lists every variant (with empty messages) for the OpenAPI document's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::EnumIter)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    NestingTooDeep(String),
    #[error("{0}")]
    MissingEvent(String),
    /// The event does not satisfy its stream's JSON Schema (`streams.schemas`).
    #[error("{0}")]
    SchemaViolation(String),
    #[error("{0}")]
    InvalidPartitionKey(String),
    #[error("{0}")]
    InvalidExplicitHashKey(String),
    #[error("{0}")]
    InvalidStreamName(String),
    #[error("{0}")]
    InvalidRegion(String),
    #[error("{0}")]
    RegionNotAllowed(String),
    #[error("the request body is empty; send a JSON object such as {{\"event\": {{...}}}}")]
    EmptyBody,
    #[error("{0}")]
    NoRecords(String),
    #[error("{0}")]
    TooManyRecords(String),
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("{0}")]
    DecodedBodyTooLarge(String),
    #[error("{0}")]
    InvalidCompressedBody(String),
    #[error("{0}")]
    BodyTimeout(String),
    #[error("{0}")]
    BodyBudgetExhausted(String),
    #[error("{0}")]
    RecordTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    UnsupportedContentEncoding(String),
    #[error("missing x-api-key header")]
    MissingApiKey,
    #[error("the API key (x-api-key header, or api_key query parameter) does not match any configured key")]
    InvalidApiKey,
    /// A secret key (`auth.keys`) in the `api_key` query parameter, where logs keep it.
    #[error("{0}")]
    ApiKeyInUrl(String),
    #[error("stream {0:?} is not in the proxy's allow-list (streams.allow)")]
    StreamNotAllowed(String),
    #[error("{0}")]
    StreamNotInKeyScope(String),
    #[error("{0}")]
    OriginNotAllowed(String),
    #[error("{0}")]
    CorsRequestNotAllowed(String),
    #[error("{0}")]
    InvalidPreflight(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    #[error("the queue for this stream is full; retry after the Retry-After delay")]
    QueueFull,
    #[error("{0}")]
    HotShard(String),
    #[error("{0}")]
    TooManyStreams(String),
    #[error("the proxy is shutting down; retry against another instance")]
    ShuttingDown,
    #[error("{0}")]
    KinesisUnavailable(String),
    #[error("{0}")]
    KinesisRetriesExhausted(String),
    #[error("{0}")]
    KinesisRejected(String),
    #[error("{0}")]
    RecordInvalidForKinesis(String),
    #[error("{0}")]
    StreamNotFound(String),
    #[error("{0}")]
    RequestExceedsBurst(String),
    #[error("{0}")]
    SpoolFull(String),
    #[error("{0}")]
    SpoolUnavailable(String),
    #[error("{0}")]
    StreamUnconfirmed(String),
    #[error("no route for this method and path; see docs/api.md for the API")]
    NotFound,
    #[error("method not allowed for this route")]
    MethodNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: String,
    pub code: &'a str,
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::NestingTooDeep(_) => "nesting_too_deep",
            Self::MissingEvent(_) => "missing_event",
            Self::SchemaViolation(_) => "schema_violation",
            Self::InvalidPartitionKey(_) => "invalid_partition_key",
            Self::InvalidExplicitHashKey(_) => "invalid_explicit_hash_key",
            Self::InvalidStreamName(_) => "invalid_stream_name",
            Self::InvalidRegion(_) => "invalid_region",
            Self::RegionNotAllowed(_) => "region_not_allowed",
            Self::EmptyBody => "empty_body",
            Self::NoRecords(_) => "no_records",
            Self::TooManyRecords(_) => "too_many_records",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::DecodedBodyTooLarge(_) => "decoded_body_too_large",
            Self::InvalidCompressedBody(_) => "invalid_compressed_body",
            Self::BodyTimeout(_) => "body_timeout",
            Self::BodyBudgetExhausted(_) => "body_budget_exhausted",
            Self::RecordTooLarge(_) => "record_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::UnsupportedContentEncoding(_) => "unsupported_content_encoding",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ApiKeyInUrl(_) => "api_key_in_url",
            Self::StreamNotAllowed(_) => "stream_not_allowed",
            Self::StreamNotInKeyScope(_) => "stream_not_in_key_scope",
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::CorsRequestNotAllowed(_) => "cors_request_not_allowed",
            Self::InvalidPreflight(_) => "invalid_preflight",
            Self::RateLimited { .. } => "rate_limited",
            Self::QueueFull => "queue_full",
            Self::HotShard(_) => "hot_shard",
            Self::TooManyStreams(_) => "too_many_streams",
            Self::ShuttingDown => "shutting_down",
            Self::KinesisUnavailable(_) => "kinesis_unavailable",
            Self::KinesisRetriesExhausted(_) => "kinesis_retries_exhausted",
            Self::KinesisRejected(_) => "kinesis_rejected",
            Self::RecordInvalidForKinesis(_) => "record_invalid_for_kinesis",
            Self::StreamNotFound(_) => "stream_not_found",
            Self::RequestExceedsBurst(_) => "request_exceeds_burst",
            Self::SpoolFull(_) => "spool_full",
            Self::SpoolUnavailable(_) => "spool_unavailable",
            Self::StreamUnconfirmed(_) => "stream_unconfirmed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    /// How long a client should wait before retrying, for the statuses where retrying helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::QueueFull
            | Self::HotShard(_)
            | Self::TooManyStreams(_)
            | Self::BodyBudgetExhausted(_)
            | Self::KinesisUnavailable(_) => Some(Duration::from_secs(1)),
            // Room comes back as Kinesis takes what the spool holds: seconds, not at once.
            Self::SpoolFull(_) => Some(Duration::from_secs(2)),
            // The proxy asks Kinesis again after `UNCHECKED_TTL` (2 s).
            Self::StreamUnconfirmed(_) => Some(Duration::from_secs(2)),
            Self::ShuttingDown | Self::SpoolUnavailable(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// Maps a record's final failure to the error its client sees. The words are ours: what
    /// Kinesis said can carry account ids, role ARNs and key ids, so it goes to the log only.
    pub fn from_record_failure(
        failure: &RecordFailure,
        region: &Region,
        stream: &StreamName,
    ) -> Self {
        let code = failure.kinesis_code.as_str();
        match failure.kind {
            FailureKind::Unavailable => Self::KinesisUnavailable(
                "Kinesis did not answer before the record's deadline; retry after the Retry-After delay".into(),
            ),
            FailureKind::RetriesExhausted if code.contains("Throughput") || code.contains("Throttl") => {
                Self::KinesisRetriesExhausted(format!(
                    "stream {stream} was over its write capacity until the record's deadline (Kinesis kept throttling it); retry later, or ask the operator for more shards"
                ))
            }
            FailureKind::RetriesExhausted => Self::KinesisRetriesExhausted(
                "Kinesis kept failing the record until its deadline; retry later".into(),
            ),
            FailureKind::StreamNotFound => Self::StreamNotFound(format!(
                "stream {stream} does not exist in Kinesis in region {region}"
            )),
            FailureKind::Rejected => Self::KinesisRejected(match code {
                c if c.starts_with("KMS") => format!(
                    "the KMS key of stream {stream} refused the write; the proxy's log has the details for its operator"
                ),
                "AccessDeniedException" | "UnrecognizedClientException" | "ExpiredTokenException"
                | "IncompleteSignature" | "MissingAuthenticationToken" => format!(
                    "the proxy's AWS credentials may not write to stream {stream}; the proxy's log has the details for its operator"
                ),
                "ValidationException" | "InvalidArgumentException" => {
                    "Kinesis refused the record as invalid; the proxy's log has the details for its operator".into()
                }
                _ => "Kinesis refused the record; the proxy's log has the details for its operator".into(),
            }),
            FailureKind::Invalid => Self::RecordInvalidForKinesis(format!(
                "Kinesis refused this record as invalid ({}) although it passed the proxy's checks; sending it again will fail the same way. The other records of its call were not affected; the proxy's log has the details for its operator",
                kinesis_code_label(code)
            )),
            FailureKind::ShuttingDown => Self::ShuttingDown,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidBody(_)
            | Self::NestingTooDeep(_)
            | Self::MissingEvent(_)
            | Self::SchemaViolation(_)
            | Self::InvalidPartitionKey(_)
            | Self::InvalidExplicitHashKey(_)
            | Self::InvalidStreamName(_)
            | Self::InvalidRegion(_)
            | Self::RegionNotAllowed(_)
            | Self::EmptyBody
            | Self::NoRecords(_)
            | Self::TooManyRecords(_)
            | Self::InvalidCompressedBody(_)
            | Self::InvalidPreflight(_)
            | Self::ApiKeyInUrl(_)
            | Self::RecordInvalidForKinesis(_) => StatusCode::BAD_REQUEST,
            Self::MissingApiKey | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::StreamNotAllowed(_)
            | Self::StreamNotInKeyScope(_)
            | Self::OriginNotAllowed(_)
            | Self::CorsRequestNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::StreamNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge(_)
            | Self::DecodedBodyTooLarge(_)
            | Self::RecordTooLarge(_)
            | Self::RequestExceedsBurst(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) | Self::UnsupportedContentEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueFull
            | Self::HotShard(_)
            | Self::TooManyStreams(_)
            | Self::ShuttingDown
            | Self::SpoolFull(_)
            | Self::SpoolUnavailable(_)
            | Self::StreamUnconfirmed(_)
            | Self::BodyBudgetExhausted(_)
            | Self::KinesisUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::KinesisRetriesExhausted(_) | Self::KinesisRejected(_) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(after) = self.retry_after() {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if matches!(self, Self::UnsupportedContentEncoding(_)) {
            // RFC 9110 15.5.16: a 415 for a content coding says which codings are accepted.
            response.insert_header((
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(ACCEPTED_CODINGS),
            ));
        }
        if matches!(self, Self::MissingApiKey | Self::InvalidApiKey) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("ApiKey header=\"x-api-key\""),
            ));
        }
        if matches!(
            self,
            Self::BodyTimeout(_)
                | Self::BodyBudgetExhausted(_)
                | Self::BodyTooLarge(_)
                | Self::DecodedBodyTooLarge(_)
                | Self::InvalidCompressedBody(_)
        ) {
            // The rest of the body is still unread (or never coming): the connection cannot
            // carry another request, and closing it gives back its buffers. Reading the rest
            // of a body too large to take would let a client keep the proxy reading for as
            // long as it likes.
            response.force_close();
        }
        response.json(ErrorBody {
            error: self.to_string(),
            code: self.code(),
        })
    }
}
