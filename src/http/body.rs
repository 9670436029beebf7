//! Request bodies before parsing: which shape the content type declares, and reading the body
//! under the size limit without buffering more than the limit.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;
use super::paths::ROUTE_RECORDS;
use crate::domain::truncate_for_message;

pub(super) enum BodyKind {
    Json,
    Ndjson,
}

/// JSON unless NDJSON is declared; a missing content type, or curl's default form type, is
/// taken as JSON (the original API accepted both). Compressed bodies are not accepted.
pub(super) fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
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
pub(super) async fn read_body(
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
