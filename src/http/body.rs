//! Request bodies before parsing: which shape the content type declares, and reading the body
//! under the size limits without buffering more than them: `limits.max_body_bytes` on the bytes
//! as sent, and `limits.max_decoded_body_bytes` on what a compressed body decodes to
//! (`decode`).

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::decode::{Coding, DecodeError, Decoder};
use super::error::ApiError;
use super::paths::ROUTE_RECORDS;
use crate::config::LimitSettings;
use crate::domain::truncate_for_message;

pub(super) enum BodyKind {
    Json,
    Ndjson,
}

/// JSON unless NDJSON is declared; a missing content type, or curl's default form type, is
/// taken as JSON (the original API accepted both). The content coding is checked here too, so
/// every check that needs no body comes before reading it.
pub(super) fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
    Coding::of(req)?;
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

/// Reads the body: at most `max_body_bytes` as sent (refused up front when `Content-Length`
/// says more, and as soon as a chunked body passes it), then, for a compressed body, decoded
/// chunk by chunk as it arrives into at most `max_decoded_body_bytes`.
pub(super) async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: &LimitSettings,
) -> Result<Bytes, ApiError> {
    let coding = Coding::of(req)?;
    let limit = limits.max_body_bytes;
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
    let read_error = |e: actix_web::error::PayloadError| {
        ApiError::InvalidBody(format!("could not read the request body: {e}"))
    };
    if coding == Coding::Identity {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(read_error)?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(body.freeze());
    }
    let decoded_limit = limits.max_decoded_body_bytes;
    let decode_error = |e: DecodeError| {
        match e {
        DecodeError::TooLarge => ApiError::DecodedBodyTooLarge(format!(
            "the {} body decodes to more than {decoded_limit} bytes (limits.max_decoded_body_bytes); split it into smaller requests",
            coding.name()
        )),
        DecodeError::Corrupt(why) => ApiError::InvalidCompressedBody(format!(
            "the body is not valid {} ({}); send a complete {} stream, or drop the Content-Encoding header for an uncompressed body",
            coding.name(),
            truncate_for_message(&why),
            coding.name()
        )),
    }
    };
    let mut decoder = Decoder::new(coding, decoded_limit).map_err(decode_error)?;
    let mut received = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(read_error)?;
        received += chunk.len();
        if received > limit {
            return Err(too_large());
        }
        decoder.push(&chunk).map_err(decode_error)?;
    }
    if received == 0 {
        // No bytes at all is an empty body (answered as such), not a broken stream.
        return Ok(Bytes::new());
    }
    decoder.finish().map_err(decode_error)
}
