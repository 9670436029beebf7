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
use crate::telemetry::access_line::AccessLine;

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
    // Asked only when the line would be written: the filter (`log.level`, `RUST_LOG`) may
    // have the `access` target off.
    if log && tracing::enabled!(target: "access", tracing::Level::INFO) {
        let extensions = request.extensions();
        let facts = extensions.get::<RequestFacts>();
        let line = AccessLine {
            method: request.method().as_str(),
            route: route.unwrap_or(super::paths::UNMATCHED),
            status: status.as_u16(),
            duration_ms: took.as_secs_f64() * 1000.0,
            request_id: request_id.to_str().unwrap_or("-"),
            stream: facts.and_then(|f| f.stream.as_ref()).map(|s| s.as_str()),
            key: facts.and_then(|f| f.key.as_deref()),
            client_cert: request
                .conn_data::<super::tls::ClientSubject>()
                .map(|s| s.0.as_str()),
            events: facts.map(|f| f.events),
        };
        if !line.emit() {
            tracing::info!(
                target: "access",
                method = %line.method,
                route = line.route,
                status = line.status,
                duration_ms = line.duration_ms,
                request_id = line.request_id,
                stream = line.stream,
                key = line.key,
                client_cert = line.client_cert,
                events = line.events,
                "access"
            );
        }
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
    let id = generated_id(prefix, n);
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// `{prefix:08x}-{n:012x}` (the counter's low 48 bits), written without `format!`: this runs
/// for every request.
fn generated_id(prefix: u32, n: u64) -> [u8; 21] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [b'-'; 21];
    for (i, slot) in id[..8].iter_mut().enumerate() {
        *slot = HEX[((prefix >> (28 - 4 * i)) & 0xf) as usize];
    }
    for (i, slot) in id[9..].iter_mut().enumerate() {
        *slot = HEX[((n >> (44 - 4 * i)) & 0xf) as usize];
    }
    id
}

#[cfg(test)]
mod tests {
    use super::generated_id;

    #[test]
    fn generated_ids_are_prefix_and_counter_in_hex() {
        for (prefix, n) in [
            (0, 0),
            (0xb615_81c8, 1),
            (u32::MAX, 0xffff_ffff_ffff),
            (7, 0xabc),
        ] {
            let id = generated_id(prefix, n);
            assert_eq!(
                std::str::from_utf8(&id).expect("ASCII"),
                format!("{prefix:08x}-{n:012x}")
            );
        }
    }
}
