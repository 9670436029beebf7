//! The route table: which handler serves which method and path, and the JSON 404/405 answers.

use actix_web::{web, HttpResponse, ResponseError};

use super::error::ApiError;
use super::paths::{ROUTE_RECORDS, ROUTE_SHORT, ROUTE_STREAM};
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
        .service(resource("/healthz", web::get().to(ops::healthz)))
        .service(resource("/readyz", web::get().to(ops::readyz)))
        .service(resource("/metrics", web::get().to(ops::metrics)));
}

fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|| async {
            ApiError::MethodNotAllowed.error_response()
        }))
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}
