//! CORS for browser clients (`[cors]`): `actix-cors` answers preflights and adds the CORS
//! headers to every answer to an allowed origin, errors included; this module configures it
//! and turns its refusals into the API's own JSON errors with a stable code, since its own are
//! plain text. Off (not wrapped at all) when no origin is configured.
//!
//! What a page may send and read is fixed by the API, not configured: the methods of the
//! routes, the request headers the API reads (`Content-Type`, `Content-Encoding`, `x-api-key`,
//! `x-request-id`), and the answer headers a client acts on (`Retry-After`, `x-request-id`).
//! No credentials mode: the API key is a header, never a cookie, so a page cannot borrow a
//! user's ambient authority.

use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use super::auth::API_KEY_HEADER;
use super::error::ApiError;
use crate::config::{CorsOrigins, CorsSettings};

/// The request id header (see `access`), repeated here so this module needs nothing of it.
const REQUEST_ID: &str = "x-request-id";

/// The CORS middleware for `settings`, or `None` when CORS is off.
pub fn middleware(settings: &CorsSettings) -> Option<Cors> {
    // validate() has checked the origins; an unparsable list leaves CORS off, never open.
    let origins = settings.origins().unwrap_or(CorsOrigins::Off);
    let cors = match origins {
        CorsOrigins::Off => return None,
        // The header is then `*`, not the echoed origin: no credentials are involved, and a
        // shared cache can keep one answer for every origin.
        CorsOrigins::Any => Cors::default().allow_any_origin().send_wildcard(),
        CorsOrigins::Exact(list) => list
            .iter()
            .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin)),
    };
    Some(
        cors.allowed_methods([Method::GET, Method::HEAD, Method::POST])
            .allowed_headers([
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                HeaderName::from_static(API_KEY_HEADER),
                HeaderName::from_static(REQUEST_ID),
            ])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static(REQUEST_ID)])
            .max_age(usize::try_from(settings.max_age_secs).unwrap_or(usize::MAX))
            // A request from another origin is refused (403) instead of served without CORS
            // headers: a page on a foreign site must not be able to write blind either.
            .block_on_origin_mismatch(true),
    )
}

/// Wraps the CORS middleware: its refusals become the API's JSON errors.
pub async fn json_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let malformed = is_malformed_preflight(&req);
    let response = next.call(req).await?;
    let refusal = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(api_error)
        .or_else(|| malformed.then(malformed_preflight));
    let Some(refusal) = refusal else {
        return Ok(response.map_into_left_body());
    };
    // Keep what CORS said about the origin (a malformed preflight from an allowed origin went
    // on as a plain request and got its headers), so a page could read the refusal.
    let kept: Vec<_> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name == header::VARY || name.as_str().starts_with("access-control-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let (request, _) = response.into_parts();
    let mut answer = refusal.error_response();
    for (name, value) in kept {
        answer.headers_mut().insert(name, value);
    }
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
}

/// An `OPTIONS` request whose `Access-Control-Request-Method` is not a method at all.
/// `actix-cors` does not take it for a preflight and passes it on, where the route would
/// answer 405; it is a broken preflight, so it gets the 400 `invalid_preflight` the README
/// promises.
fn is_malformed_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                    .is_none()
            })
}

fn malformed_preflight() -> ApiError {
    ApiError::InvalidPreflight(
        "not a valid CORS preflight: Access-Control-Request-Method is not an HTTP method; send one, such as POST".into(),
    )
}

fn api_error(error: &CorsError) -> ApiError {
    match error {
        CorsError::OriginNotAllowed => ApiError::OriginNotAllowed(
            "this page's origin may not call the API (cors.allowed_origins); ask the proxy's operator to add it".into(),
        ),
        CorsError::MethodNotAllowed => ApiError::CorsRequestNotAllowed(
            "the preflight asks for a method the API does not take from browsers; use GET, HEAD or POST".into(),
        ),
        CorsError::HeadersNotAllowed => ApiError::CorsRequestNotAllowed(
            "the preflight asks for a request header the API does not read; send only Content-Type, Content-Encoding, x-api-key and x-request-id".into(),
        ),
        other => ApiError::InvalidPreflight(format!(
            "not a valid CORS preflight: {other}"
        )),
    }
}
