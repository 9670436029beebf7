//! Keeps a pipeline's shard map current: a task on the Kinesis runtime loads it with
//! `ListShards` when the pipeline starts, every `shards.map_refresh_ms`, and soon after the
//! aggregator reports that Kinesis put a record on another shard than predicted (the stream was
//! resharded), and hands each result to the aggregator.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::StreamName;
use crate::kinesis::{CallFailure, PutRecordsApi, ShardMap};

/// Reloads happen at most this often, however often they are asked for (a reshard makes many
/// predictions wrong at once).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Why the map was loaded (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshCause {
    Start,
    Periodic,
    Mispredicted,
}

impl RefreshCause {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Periodic => "periodic",
            Self::Mispredicted => "mispredicted",
        }
    }
}

pub(super) struct MapUpdate {
    pub(super) cause: RefreshCause,
    pub(super) result: Result<ShardMap, CallFailure>,
}

/// Starts the refresher; it ends when the aggregator is gone. `wanted` asks for an early reload.
pub(super) fn spawn<K: PutRecordsApi>(
    api: Arc<K>,
    stream: StreamName,
    every: Duration,
    runtime: &tokio::runtime::Handle,
    updates: Sender<MapUpdate>,
    wanted: Arc<Notify>,
) {
    runtime.spawn(async move {
        let mut cause = RefreshCause::Start;
        loop {
            let loaded_at = Instant::now();
            let result = api.open_shards(&stream).await;
            if updates.send(MapUpdate { cause, result }).is_err() {
                return;
            }
            cause = tokio::select! {
                () = tokio::time::sleep(every) => RefreshCause::Periodic,
                () = wanted.notified() => RefreshCause::Mispredicted,
            };
            tokio::time::sleep_until(loaded_at + MIN_INTERVAL).await;
        }
    });
}
