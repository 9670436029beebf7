//! What every HTTP worker shares: settings, the pipelines, keys, schemas, limits, health and
//! metrics.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::watch;

use super::auth::ApiKeys;
use super::body_budget::BodyBudget;
use super::metrics::{ApiKeyMetrics, RouteMetricsSet};
use super::rate_limit::RateLimits;
use super::schemas::Schemas;
use crate::config::Settings;
use crate::domain::{Region, StreamPatterns};
use crate::kinesis::KinesisHealth;
use crate::pipeline::{Pipelines, SpoolDelivery};
use crate::telemetry::MetricsHandle;

/// Which requests get an access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    All,
    Errors,
    Off,
}

impl AccessLog {
    /// From `log.access` (validated at startup).
    pub fn from_setting(value: &str) -> Self {
        match value {
            "off" => Self::Off,
            "errors" => Self::Errors,
            _ => Self::All,
        }
    }
}

/// Shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pipelines: Arc<Pipelines>,
    /// The disk spool of the streams acknowledged on disk; `None` when no stream is.
    pub spool: Option<Arc<SpoolDelivery>>,
    /// Swapped in whole on SIGHUP (`reload`); each request reads the current set.
    pub api_keys: ArcSwap<ApiKeys>,
    pub rate_limits: RateLimits,
    pub allowed_streams: StreamPatterns,
    pub default_region: Region,
    /// Shutdown has begun (SIGTERM's `server.shutdown_delay_ms`): `/readyz` answers 503 while
    /// requests are still served, so load balancers stop sending before the drain.
    pub stopping: AtomicBool,
    /// The drain has begun: new requests are refused.
    pub draining: Arc<AtomicBool>,
    pub health: Arc<KinesisHealth>,
    pub prometheus: MetricsHandle,
    pub route_metrics: RouteMetricsSet,
    pub access_log: AccessLog,
    /// Requests per API key name; swapped with the keys.
    pub key_metrics: ArcSwap<ApiKeyMetrics>,
    /// The OpenAPI document, serialized once at startup.
    pub openapi: bytes::Bytes,
    /// Request bodies held in memory, all connections together (`limits.max_buffered_body_bytes`).
    pub body_budget: BodyBudget,
    /// Turned true when shutdown begins: bodies still arriving must then keep arriving.
    pub body_drain: watch::Sender<bool>,
    /// The compiled `streams.schemas`; swapped in whole on SIGHUP, as the keys are.
    pub schemas: ArcSwap<Schemas>,
    /// `streams.envelope`: streams whose records carry `meta`.
    pub envelope: StreamPatterns,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<IpNet>,
    /// The origins public keys are accepted from: `cors.allowed_origins` when it lists some.
    pub public_key_origins: Vec<String>,
}
