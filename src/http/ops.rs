//! The operator's routes: liveness, readiness (Kinesis reachable and not draining), the
//! Prometheus scrape and the OpenAPI document. Each also answers `HEAD` (the same status and
//! headers, no body), for load balancers and uptime checks that probe with it.

use std::sync::atomic::Ordering;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::paths::{ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_OPENAPI, ROUTE_READYZ};
use super::state::AppState;
use crate::telemetry;

/// The body of `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
pub(super) struct StatusBody {
    /// `ok`, `ready`, `spooling` (Kinesis unreachable, streams acknowledged on disk take events),
    /// `stopping` (shutdown's delay: still serving), `draining`, `kinesis unreachable`, `spool failed` or `spool disk full`.
    status: &'static str,
    /// When not ready: `shutting_down`, `kinesis_unavailable`, `spool_unavailable` or
    /// `spool_full` (its disk is below `spool.min_free_bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = ROUTE_HEALTHZ, tag = "operations",
    responses((status = 200, description = "The process runs", body = StatusBody)))]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(StatusBody {
        status: "ok",
        code: None,
    })
}

/// Readiness: 200 when Kinesis answers and the proxy is not draining. An instance with streams
/// acknowledged on disk stays ready while Kinesis is unreachable (riding out an outage is what
/// its spool is for), and is not ready once its spool stopped writing or its disk is below
/// `spool.min_free_bytes`.
#[utoipa::path(get, path = ROUTE_READYZ, tag = "operations", responses(
    (status = 200, description = "Ready to take events", body = StatusBody),
    (status = 503, description = "Draining (`shutting_down`), Kinesis unreachable (`kinesis_unavailable`), the disk spool failed (`spool_unavailable`) or its disk is below spool.min_free_bytes (`spool_full`)", body = StatusBody),
))]
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let not_ready = |status, code| {
        HttpResponse::ServiceUnavailable().json(StatusBody {
            status,
            code: Some(code),
        })
    };
    if state.draining.load(Ordering::Relaxed) {
        return not_ready("draining", "shutting_down");
    }
    // SIGTERM's delay: still serving, but leaving rotation.
    if state.stopping.load(Ordering::Relaxed) {
        return not_ready("stopping", "shutting_down");
    }
    if let Some(spool) = &state.spool {
        if !spool.is_writable() {
            return not_ready("spool failed", "spool_unavailable");
        }
        // Every disk-acknowledged event would be refused: an operator must free space (the
        // log has the figures), and a load balancer should send the traffic elsewhere.
        if spool.is_short_of_disk_space() {
            return not_ready("spool disk full", "spool_full");
        }
        if !state.health.is_reachable() {
            return HttpResponse::Ok().json(StatusBody {
                status: "spooling",
                code: None,
            });
        }
    }
    if !state.health.is_reachable() {
        return not_ready("kinesis unreachable", "kinesis_unavailable");
    }
    HttpResponse::Ok().json(StatusBody {
        status: "ready",
        code: None,
    })
}

/// The Prometheus scrape (text exposition format 0.0.4).
#[utoipa::path(get, path = ROUTE_METRICS, tag = "operations", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
))]
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The process_* gauges are read from the OS only when asked for.
    telemetry::collect_process_metrics();
    state.body_budget.publish_metrics();
    if let Some(spool) = &state.spool {
        spool.publish_metrics();
    }
    HttpResponse::Ok()
        .content_type(ContentType(
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .unwrap_or(mime_text_plain()),
        ))
        .body(state.prometheus.render())
}

/// This document (OpenAPI 3.1), generated from the code at startup.
#[utoipa::path(get, path = ROUTE_OPENAPI, tag = "operations", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object),
))]
pub(super) async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(state.openapi.clone())
}

fn mime_text_plain() -> actix_web::mime::Mime {
    actix_web::mime::TEXT_PLAIN_UTF_8
}
