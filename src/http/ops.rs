//! The operator's routes: liveness, readiness (Kinesis reachable and not draining) and the
//! Prometheus scrape.

use std::sync::atomic::Ordering;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};

use super::state::AppState;
use crate::telemetry;

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "draining", "code": "shutting_down"}));
    }
    if !state.health.is_reachable() {
        return HttpResponse::ServiceUnavailable().json(
            serde_json::json!({"status": "kinesis unreachable", "code": "kinesis_unavailable"}),
        );
    }
    HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
}

pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The process_* gauges are read from the OS only when asked for.
    telemetry::collect_process_metrics();
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .unwrap_or(mime_text_plain()),
        ))
        .body(state.prometheus.render())
}

fn mime_text_plain() -> actix_web::mime::Mime {
    actix_web::mime::TEXT_PLAIN_UTF_8
}
