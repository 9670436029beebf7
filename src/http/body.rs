//! Request bodies before parsing: which shape the content type declares, and reading the body
//! under the size limits without buffering more than them: `limits.max_body_bytes` on the bytes
//! as sent, and `limits.max_decoded_body_bytes` on what a compressed body decodes to
//! (`decode`).
//!
//! Reading is bounded in time and in total memory too, because a client that stops sending
//! mid-body would otherwise keep its connection and its buffer for as long as it likes, and
//! thousands of them would add up: the whole body must arrive within `limits.body_timeout_ms`
//! (408 `body_timeout`), every byte held comes from the process-wide budget of
//! `limits.max_buffered_body_bytes` (`body_budget`; 503 `body_budget_exhausted` when spent), and
//! once shutdown begins a body that stops arriving for `DRAIN_IDLE` is answered 503
//! `shutting_down`, so a stalled upload does not hold the drain. A request refused with its
//! body unread has its connection closed after the answer, chunked or not (`Reader::abandon`).

use std::ops::Deref;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::body_budget::{BodyReservation, Exhausted};
use super::decode::{Coding, DecodeError, Decoder};
use super::error::ApiError;
use super::paths::ROUTE_RECORDS;
use super::state::AppState;
use crate::domain::truncate_for_message;

/// Once shutdown has begun, a body that receives nothing for this long is cut off (503
/// `shutting_down`, as any request during the drain), so stalled uploads do not hold the
/// drain. A client that is sending delivers bytes many times a second (TCP sends at least a
/// segment per round trip); one that paused this long is better off retrying elsewhere.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

pub(super) enum BodyKind {
    Json,
    Ndjson,
}

/// JSON unless NDJSON is declared; a missing content type, curl's default form type, or
/// `text/plain` is taken as JSON (the original API accepted the first two; `text/plain` is
/// what `navigator.sendBeacon` sends with a string, and the one JSON-capable type a CORS
/// request can have without a preflight). The content coding is checked here too, so
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
        "application/json" | "application/x-www-form-urlencoded" | "text/plain" => {
            Ok(BodyKind::Json)
        }
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyKind::Ndjson),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyKind::Json),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not accepted; use application/json (or application/x-ndjson on {ROUTE_RECORDS})",
            truncate_for_message(text)
        ))),
    }
}

/// A request body read whole, with its share of the body budget: hold it until the request
/// is answered (records parsed from the body share its memory), then drop it.
pub(super) struct Body {
    bytes: Bytes,
    _held: BodyReservation,
}

impl Deref for Body {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

/// Reads the body: at most `max_body_bytes` as sent (refused up front when `Content-Length`
/// says more, and as soon as a chunked body passes it), then, for a compressed body, decoded
/// chunk by chunk as it arrives into at most `max_decoded_body_bytes`; within
/// `body_timeout_ms`, and with every byte kept taken from the body budget.
pub(super) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Body, ApiError> {
    let limits = &state.settings.limits;
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
    let mut reader = Reader {
        payload: Some(payload),
        timeout: limits.body_timeout(),
        deadline: Instant::now() + limits.body_timeout(),
        drain: state.body_drain.subscribe(),
    };
    let mut held = state.body_budget.reserve();
    if coding == Coding::Identity {
        let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
        while let Some(chunk) = reader.next().await? {
            if body.len() + chunk.len() > limit {
                reader.abandon();
                return Err(too_large());
            }
            if let Err(exhausted) = held.grow(chunk.len()) {
                reader.abandon();
                return Err(budget_exhausted(exhausted));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Body {
            bytes: body.freeze(),
            _held: held,
        });
    }
    let decoded_limit = limits.max_decoded_body_bytes;
    let decode_error = |e: DecodeError| {
        match e {
        DecodeError::TooLarge => ApiError::DecodedBodyTooLarge(format!(
            "the {} body decodes to more than {decoded_limit} bytes (limits.max_decoded_body_bytes); split it into smaller requests",
            coding.name()
        )),
        DecodeError::BudgetExhausted => budget_exhausted(Exhausted),
        DecodeError::Corrupt(why) => ApiError::InvalidCompressedBody(format!(
            "the body is not valid {} ({}); send a complete {} stream, or drop the Content-Encoding header for an uncompressed body",
            coding.name(),
            truncate_for_message(&why),
            coding.name()
        )),
    }
    };
    let mut decoder = Decoder::new(coding, decoded_limit, held).map_err(decode_error)?;
    let mut received = 0;
    while let Some(chunk) = reader.next().await? {
        received += chunk.len();
        if received > limit {
            reader.abandon();
            return Err(too_large());
        }
        if let Err(error) = decoder.push(&chunk) {
            // Refused mid-body, whatever the reason: the rest is not read (see `abandon`).
            reader.abandon();
            return Err(decode_error(error));
        }
    }
    if received == 0 {
        // No bytes at all is an empty body (answered as such), not a broken stream.
        return Ok(Body {
            bytes: Bytes::new(),
            _held: state.body_budget.reserve(),
        });
    }
    let (bytes, held) = decoder.finish().map_err(decode_error)?;
    Ok(Body { bytes, _held: held })
}

fn budget_exhausted(_: Exhausted) -> ApiError {
    ApiError::BodyBudgetExhausted(
        "the proxy holds as many request bodies in memory as it may (limits.max_buffered_body_bytes); retry after the Retry-After delay".into(),
    )
}

/// How long an abandoned payload is kept after its request is refused: past the moment the
/// answer is sent, which is what makes the HTTP server close the connection rather than read
/// the rest of a chunked body (it drains a dropped one; a stalled one would hold it).
const ABANDON_HOLD: Duration = Duration::from_secs(2);

/// The payload's chunks, each awaited against the body's deadline (and, once shutdown has
/// begun, against `DRAIN_IDLE` without a byte).
struct Reader {
    /// `None` once abandoned.
    payload: Option<web::Payload>,
    /// `limits.body_timeout_ms`, for the message.
    timeout: Duration,
    deadline: Instant,
    /// Turns true when shutdown begins.
    drain: watch::Receiver<bool>,
}

impl Reader {
    /// The request is refused with its body unread: keep the payload (not its data) alive
    /// until the answer is out, so the connection is closed after it.
    fn abandon(&mut self) {
        if let Some(payload) = self.payload.take() {
            actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep(ABANDON_HOLD).await;
                drop(payload);
            });
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        let Some(mut payload) = self.payload.take() else {
            return Ok(None);
        };
        let next = self.next_from(&mut payload).await;
        self.payload = Some(payload);
        if next.is_err() {
            self.abandon();
        }
        next
    }

    async fn next_from(&mut self, payload: &mut web::Payload) -> Result<Option<Bytes>, ApiError> {
        // The sender lives as long as the app; should it be gone, there is no drain to follow.
        let mut watching = true;
        loop {
            let draining = *self.drain.borrow_and_update();
            let until = if draining {
                self.deadline.min(Instant::now() + DRAIN_IDLE)
            } else {
                self.deadline
            };
            tokio::select! {
                // The next chunk, the end of the body, or the connection's failure.
                chunk = payload.next() => {
                    return chunk.transpose().map_err(|e| {
                        ApiError::InvalidBody(format!("could not read the request body: {e}"))
                    });
                }
                // The body's time is up (or, draining, it stopped arriving).
                () = tokio::time::sleep_until(until) => {
                    return Err(if Instant::now() >= self.deadline {
                        ApiError::BodyTimeout(format!(
                            "the request body did not arrive within {} ms (limits.body_timeout_ms); send it faster or split it into smaller requests",
                            self.timeout.as_millis()
                        ))
                    } else {
                        ApiError::ShuttingDown
                    });
                }
                // Shutdown began: wait again, now with the drain's idle limit.
                changed = self.drain.changed(), if watching && !draining => {
                    watching = changed.is_ok();
                }
            }
        }
    }
}
