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
    let response = next.call(req).await?;
    let refusal = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(api_error);
    let Some(refusal) = refusal else {
        return Ok(response.map_into_left_body());
    };
    let vary = response.headers().get(header::VARY).cloned();
    let (request, _) = response.into_parts();
    let mut answer = refusal.error_response();
    if let Some(vary) = vary {
        answer.headers_mut().insert(header::VARY, vary);
    }
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
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
