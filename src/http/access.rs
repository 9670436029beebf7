//! Around every request: a request id (the client's `x-request-id` when it is a sane token,
//! else a new one) echoed in the response, the request metrics of its route (404s as
//! "unmatched", 405s under their route), and one access-log line, at info with target `access`
//! (`log.access`: all, errors, off). The line carries what the handler learned (`RequestFacts`):
//! stream, API key name, events. Never the key or the body, and never the path as sent: the
//! route template stands for it, so a query string (which may hold an `api_key`) is not logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use super::facts::RequestFacts;
use super::state::{AccessLog, AppState};

/// The request id header, read from clients and always set on answers.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, as answered in `x-request-id`, left in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Longest client-supplied request id taken as is.
const MAX_REQUEST_ID_LEN: usize = 128;

pub async fn log_and_count(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let request_id = request_id(&req);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // For the envelope's `meta.request_id`; only when some stream has one, so the others pay
    // nothing for it.
    if state
        .as_ref()
        .is_some_and(|s| !s.settings.streams.envelope.is_empty())
    {
        req.extensions_mut().insert(RequestId(request_id.clone()));
    }
    let mut response = next.call(req).await?;
    let status = response.status();
    let took = started.elapsed();
    response.headers_mut().insert(
        HeaderName::from_static(REQUEST_ID_HEADER),
        request_id.clone(),
    );
    let Some(state) = state else {
        return Ok(response);
    };
    let request = response.request();
    let route = request.match_name();
    state
        .route_metrics
        .route(route)
        .answered(status.as_u16(), took);
    let log = match state.access_log {
        AccessLog::All => true,
        AccessLog::Errors => status.as_u16() >= 400,
        AccessLog::Off => false,
    };
    if log {
        let extensions = request.extensions();
        let facts = extensions.get::<RequestFacts>();
        tracing::info!(
            target: "access",
            method = %request.method(),
            route = route.unwrap_or(super::paths::UNMATCHED),
            status = status.as_u16(),
            duration_ms = took.as_secs_f64() * 1000.0,
            request_id = request_id.to_str().unwrap_or("-"),
            stream = facts.and_then(|f| f.stream.as_ref()).map(|s| s.as_str()),
            key = facts.and_then(|f| f.key.as_deref()),
            client_cert = request
                .conn_data::<super::tls::ClientSubject>()
                .map(|s| s.0.as_str()),
            events = facts.map(|f| f.events),
            "access"
        );
    }
    Ok(response)
}

/// The client's request id when it is 1..=128 characters of `[A-Za-z0-9._:-]` (so it cannot
/// break a log line), else a new one: a per-process random prefix and a counter, unique and
/// cheap.
fn request_id(req: &ServiceRequest) -> HeaderValue {
    if let Some(value) = req.headers().get(REQUEST_ID_HEADER) {
        let bytes = value.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return value.clone();
        }
    }
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u32>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix:08x}-{n:012x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}
