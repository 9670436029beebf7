//! The route table: which handler serves which method and path, and the JSON 404/405 answers.
//! It registers exactly the paths of `paths::ALL_ROUTES`, so that list (which the metrics and
//! the OpenAPI test read) is the server's real table.

use actix_web::{web, HttpResponse, ResponseError};

use super::error::ApiError;
use super::paths::{
    ALL_ROUTES, ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_OPENAPI, ROUTE_READYZ, ROUTE_RECORDS,
    ROUTE_SHORT, ROUTE_STREAM,
};
use super::{events, ops};

pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in ALL_ROUTES {
        let mut resource = web::resource(path)
            // Named after its template, so the access log and metrics read the matched route
            // with `match_name` (no allocation) rather than `match_pattern`.
            .name(path)
            .default_service(web::to(|| async {
                ApiError::MethodNotAllowed.error_response()
            }));
        for route in routes_of(path) {
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
}

/// The methods and handlers of `path`. The operator's routes answer HEAD as well as GET.
fn routes_of(path: &str) -> Vec<actix_web::Route> {
    match path {
        ROUTE_STREAM => vec![web::post().to(events::put_event_stream_route)],
        ROUTE_SHORT => vec![web::post().to(events::put_event_short_route)],
        ROUTE_RECORDS => vec![web::post().to(events::put_records)],
        ROUTE_HEALTHZ => vec![web::get().to(ops::healthz), web::head().to(ops::healthz)],
        ROUTE_READYZ => vec![web::get().to(ops::readyz), web::head().to(ops::readyz)],
        ROUTE_METRICS => vec![web::get().to(ops::metrics), web::head().to(ops::metrics)],
        ROUTE_OPENAPI => vec![web::get().to(ops::openapi), web::head().to(ops::openapi)],
        _ => Vec::new(),
    }
}

pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler() {
        for path in ALL_ROUTES {
            assert!(!routes_of(path).is_empty(), "{path} has no handler");
        }
    }
}
