//! The route table: which handler serves which method and path, and the JSON 404/405 answers.

use actix_web::{web, HttpResponse, ResponseError};

use super::error::ApiError;
use super::paths::{
    ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_READYZ, ROUTE_RECORDS, ROUTE_SHORT, ROUTE_STREAM,
};
use super::{events, ops};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(ROUTE_RECORDS, web::post().to(events::put_records)))
        .service(resource(
            ROUTE_STREAM,
            web::post().to(events::put_event_stream_route),
        ))
        .service(resource(
            ROUTE_SHORT,
            web::post().to(events::put_event_short_route),
        ))
        .service(resource(ROUTE_HEALTHZ, web::get().to(ops::healthz)))
        .service(resource(ROUTE_READYZ, web::get().to(ops::readyz)))
        .service(resource(ROUTE_METRICS, web::get().to(ops::metrics)));
}

/// A resource named after its template, so the access log and metrics read the matched route
/// with `match_name` (no allocation) rather than `match_pattern`.
fn resource(path: &'static str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .name(path)
        .route(route)
        .default_service(web::to(|| async {
            ApiError::MethodNotAllowed.error_response()
        }))
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
