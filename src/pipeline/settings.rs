//! The settings of one pipeline, resolved from the configuration by the registry.

use std::time::Duration;

use super::batch::BatchLimits;
use super::lanes::ShardLimits;
use super::retry::Backoff;

/// Settings of one pipeline, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub batch: BatchLimits,
    pub linger: Duration,
    /// With no call in flight, a batch goes out once no record has arrived for this long.
    pub arrival_gap: Duration,
    pub max_in_flight_calls: usize,
    pub queue_max_records: usize,
    pub queue_max_bytes: usize,
    pub record_deadline: Duration,
    pub backoff: Backoff,
    pub shutdown_grace: Duration,
    /// Load the shard map and send within per-shard limits; false: shard-blind.
    pub shard_aware: bool,
    pub map_refresh: Duration,
    pub shard_limits: ShardLimits,
    /// How much budget a shard held back by it gathers before starting a call of its own.
    pub shard_gather: Duration,
    /// The share of the queue budget one shard's backlog may use.
    pub max_backlog_share: f64,
    /// Keep each partition key's records in acceptance order (`key_order`).
    pub ordered: bool,
    /// Pack each shard's records into KPL aggregated records of at most this many bytes
    /// (`None`: one Kinesis record per event).
    pub aggregate_max_bytes: Option<usize>,
}
