//! A stream's event contract applied to a request's records (issue 22): its JSON Schema
//! (`schemas`), checked per record, and its envelope's `meta` (`envelope`), built once per
//! request from what the edge knows about it.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};

use super::access::RequestId;
use super::envelope;
use super::error::ApiError;
use super::schemas;
use super::state::AppState;
use crate::domain::{Record, StreamName};

/// Splits a request's records into those that satisfy the stream's schema (with their request
/// indices) and the refused ones; without a schema, all are kept.
#[allow(clippy::type_complexity)]
pub(super) fn check_schemas(
    state: &AppState,
    stream: &StreamName,
    records: Vec<Record>,
) -> (Vec<Record>, Vec<usize>, Vec<(usize, ApiError)>) {
    let schemas = state.schemas.load();
    let Some(validator) = schemas.for_stream(stream) else {
        let indices = (0..records.len()).collect();
        return (records, indices, Vec::new());
    };
    let mut kept = Vec::with_capacity(records.len());
    let mut indices = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        match schemas::check(validator, &record.data) {
            Ok(()) => {
                kept.push(record);
                indices.push(index);
            }
            Err(message) => rejected.push((
                index,
                ApiError::SchemaViolation(format!("records[{index}]: {message}")),
            )),
        }
    }
    (kept, indices, rejected)
}

/// The envelope's `,"meta":{...}}` for this request (`streams.envelope`).
pub(super) fn request_meta(req: &HttpRequest, state: &AppState, key: Option<&str>) -> bytes::Bytes {
    let extensions = req.extensions();
    let forwarded: Vec<&[u8]> = if state.trusted_proxies.is_empty() {
        Vec::new()
    } else {
        req.headers()
            .get_all("x-forwarded-for")
            .map(|v| v.as_bytes())
            .collect()
    };
    let meta = envelope::Meta {
        received_at: envelope::now_rfc3339_millis(),
        request_id: extensions
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok()),
        api_key: key,
        client_ip: envelope::client_ip(
            req.peer_addr().map(|a| a.ip()),
            &forwarded,
            &state.trusted_proxies,
        )
        .map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    meta.suffix()
}
