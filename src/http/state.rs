//! What every HTTP worker shares: settings, the pipelines, keys, limits, health and metrics.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::auth::ApiKeys;
use super::metrics::{ApiKeyMetrics, RouteMetricsSet};
use super::rate_limit::RateLimits;
use crate::config::Settings;
use crate::domain::{Region, StreamPatterns};
use crate::kinesis::KinesisHealth;
use crate::pipeline::Pipelines;

/// Shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pipelines: Arc<Pipelines>,
    pub api_keys: ApiKeys,
    pub rate_limits: RateLimits,
    pub allowed_streams: StreamPatterns,
    pub default_region: Region,
    pub draining: Arc<AtomicBool>,
    pub health: Arc<KinesisHealth>,
    pub prometheus: PrometheusHandle,
    pub route_metrics: RouteMetricsSet,
    /// Requests per API key name.
    pub key_metrics: ApiKeyMetrics,
}
