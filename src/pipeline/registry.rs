//! The pipelines of all (region, stream) pairs: started on first use, bounded in number, and
//! given back when they are no longer needed.
//!
//! A slot is only taken by a stream Kinesis confirms (`DescribeStreamSummary`, which also tells
//! the stream's record size limit), so requests for streams that do not exist cannot lock the
//! real ones out. A stream Kinesis reports missing is remembered for
//! `limits.missing_stream_ttl_ms` (answered 404 without asking again; the call is limited to
//! 20/s per account), a running pipeline whose stream disappears is retired, and a pipeline idle
//! for `limits.pipeline_idle_timeout_ms` is reclaimed. When Kinesis cannot say (no permission,
//! unreachable), the pipeline starts anyway: its `PutRecords` calls will tell. Except for a
//! disk stream while Kinesis cannot answer (unreachable, 5xx, throttled): it is answered 202
//! before Kinesis sees the event, so it starts only if Kinesis confirmed it before (`confirmed`,
//! remembered in the spool folder); otherwise `StartError::Unconfirmed`, remembered for
//! [`UNCHECKED_TTL`] so a burst of requests does not each wait for a call that cannot answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};

use super::batch::BatchLimits;
use super::confirmed::ConfirmedStreams;
use super::handle::{Acknowledgement, Backlog, Pipeline};
use super::lanes::ShardLimits;
use super::recent::Recent;
use super::retry::{classify_call_failure, Backoff, Retryability};
use super::settings::PipelineSettings;
use crate::config::Settings;
use crate::domain::{Region, StreamName};
use crate::kinesis::{CallFailure, KinesisClients};
use crate::telemetry::SeriesScope;

type Key = (Region, StreamName);

fn shard_limits(settings: &Settings, stream: &StreamName) -> ShardLimits {
    let shards = &settings.shards;
    let (records_per_second, bytes_per_second) = shards.limits_for(stream);
    ShardLimits {
        records_per_second: f64::from(records_per_second),
        bytes_per_second: f64::from(bytes_per_second),
        decrease_factor: shards.decrease_factor,
        decrease_interval: shards.decrease_interval(),
        min_share: shards.min_share,
        increase_step: shards.increase_step,
        increase_interval: shards.increase_interval(),
        quiet_period: shards.quiet_period(),
    }
}

/// Why no pipeline could be had for a (region, stream).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("the stream does not exist in Kinesis")]
    StreamNotFound,
    /// A disk stream Kinesis never confirmed, while Kinesis cannot answer.
    #[error("Kinesis cannot be asked whether the stream exists now, and has never confirmed it")]
    Unconfirmed,
    #[error("this proxy already serves {max} (region, stream) pairs (limits.max_pipelines); idle ones are given back after limits.pipeline_idle_timeout_ms")]
    TooManyPipelines { max: usize },
    #[error("cannot start the stream's aggregator thread: {0}")]
    Thread(std::io::Error),
}

/// What Kinesis said about a stream before it gets a pipeline.
#[derive(Debug, Clone, Copy)]
enum Confirmation {
    /// It exists; its own record size limit when Kinesis reports one.
    Exists {
        max_record_bytes: Option<usize>,
    },
    Missing,
    /// Kinesis could not say. `for_now`: it cannot answer at the moment (unreachable, 5xx,
    /// throttled); otherwise it refused the question (no permission).
    Unknown {
        for_now: bool,
    },
}

/// Confirmations running at once: each is a `DescribeStreamSummary` call, which AWS limits to
/// 20/s per account, shared with every other producer and replica.
const MAX_CONCURRENT_CONFIRMATIONS: usize = 4;

/// How long an unconfirmed disk stream Kinesis could not be asked about is answered
/// `Unconfirmed` without asking again (the client's `Retry-After` says as much).
pub const UNCHECKED_TTL: Duration = Duration::from_secs(2);

pub struct Pipelines {
    /// Read on every request, written only when a pipeline starts or is given back: a read
    /// lock, never held across an await.
    map: RwLock<HashMap<Key, Arc<Pipeline>>>,
    /// Streams Kinesis said do not exist, and when it said so.
    missing: Recent,
    /// Unconfirmed disk streams Kinesis could not be asked about, and when.
    unchecked: Recent,
    /// Disk streams Kinesis confirmed, in this process or an earlier one; set when the spool
    /// opens (no spool, no disk streams).
    confirmed: std::sync::OnceLock<Arc<ConfirmedStreams>>,
    /// One confirmation per stream at a time, shared by the requests that wait for it.
    confirming: Mutex<HashMap<Key, Arc<OnceCell<Confirmation>>>>,
    confirmation_permits: Semaphore,
    clients: Arc<KinesisClients>,
    settings: Arc<Settings>,
    runtime: tokio::runtime::Handle,
    draining: Arc<AtomicBool>,
    /// Aggregator threads: finished ones are joined by the reaper, the rest at shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipelines {
    pub fn new(
        clients: Arc<KinesisClients>,
        settings: Arc<Settings>,
        runtime: tokio::runtime::Handle,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            missing: Recent::new(),
            unchecked: Recent::new(),
            confirmed: std::sync::OnceLock::new(),
            confirming: Mutex::new(HashMap::new()),
            confirmation_permits: Semaphore::new(MAX_CONCURRENT_CONFIRMATIONS),
            clients,
            settings,
            runtime,
            draining,
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The pipeline of (region, stream), started now if it is the first request for it and
    /// Kinesis does not say the stream is missing.
    pub async fn get_or_start(
        &self,
        region: &Region,
        stream: &StreamName,
    ) -> Result<Arc<Pipeline>, StartError> {
        let key = (region.clone(), stream.clone());
        if let Some(pipeline) = self.running(&key) {
            return Ok(pipeline);
        }
        if self.draining.load(Ordering::Relaxed) {
            return Err(StartError::ShuttingDown);
        }
        if self.known_missing(&key) {
            return Err(StartError::StreamNotFound);
        }
        let on_disk = self.settings.acks_on_disk(stream);
        let confirmed = on_disk && self.is_confirmed(&key);
        if on_disk && !confirmed && self.unchecked.contains(&key, UNCHECKED_TTL) {
            return Err(StartError::Unconfirmed);
        }
        match self.confirm(&key).await {
            Confirmation::Missing => {
                self.remember_missing(key);
                Err(StartError::StreamNotFound)
            }
            Confirmation::Exists { max_record_bytes } => {
                if on_disk {
                    self.note_confirmed(&key);
                }
                self.start(key, max_record_bytes)
            }
            Confirmation::Unknown { for_now: true } if on_disk && !confirmed => {
                self.unchecked.insert(key, UNCHECKED_TTL);
                Err(StartError::Unconfirmed)
            }
            Confirmation::Unknown { .. } => self.start(key, None),
        }
    }

    /// Where confirmed disk streams are remembered: the spool folder, read now. Called once,
    /// when the spool opens, before any request.
    pub(super) fn remember_confirmed_in(&self, dir: &std::path::Path) {
        let (settings, allowed) = (&self.settings, self.settings.allowed_streams());
        let confirmed = ConfirmedStreams::load(dir, |(_, stream)| {
            settings.acks_on_disk(stream) && allowed.matches(stream)
        });
        let _ = self.confirmed.set(Arc::new(confirmed));
    }

    fn is_confirmed(&self, key: &Key) -> bool {
        self.confirmed.get().is_some_and(|c| c.contains(key))
    }

    /// Kinesis confirmed the disk stream `key` (it found it, or accepted a write to it).
    /// Remembered only while the configuration acknowledges it on disk and allows it (records
    /// of a stream no longer on disk are still delivered from the spool).
    pub(super) fn note_confirmed(&self, key: &Key) {
        let Some(confirmed) = self.confirmed.get() else {
            return;
        };
        let stream = &key.1;
        let kept = confirmed.contains(key)
            || (self.settings.acks_on_disk(stream)
                && self.settings.allowed_streams().matches(stream));
        if !kept {
            return;
        }
        if confirmed.insert(key.clone()) {
            tracing::info!(region = %key.0, stream = %key.1, "spool: Kinesis confirmed the stream; it is taken on disk even while Kinesis cannot answer");
            confirmed.persist(&self.runtime);
        }
    }

    /// Kinesis says `key` does not exist: no longer taken on disk while Kinesis cannot answer.
    fn forget_confirmed(&self, key: &Key) {
        if let Some(confirmed) = self.confirmed.get() {
            if confirmed.remove(key) {
                confirmed.persist(&self.runtime);
            }
        }
    }

    /// The most records and bytes one pipeline admits at once (`batching.queue_max_*`).
    pub(super) fn queue_capacity(&self) -> (usize, usize) {
        let batching = &self.settings.batching;
        (batching.queue_max_records, batching.queue_max_bytes)
    }

    /// Whether (region, stream) has a pipeline now.
    pub fn is_running(&self, region: &Region, stream: &StreamName) -> bool {
        let key = (region.clone(), stream.clone());
        self.read_map().contains_key(&key)
    }

    /// The series scope of (region, stream)'s pipeline, when it has one now.
    pub fn series_of(&self, region: &Region, stream: &StreamName) -> Option<Arc<SeriesScope>> {
        let key = (region.clone(), stream.clone());
        self.read_map().get(&key).map(|p| p.series().clone())
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<Pipeline>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<Pipeline>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The running pipeline of `key`, unless Kinesis has since said its stream is gone.
    fn running(&self, key: &Key) -> Option<Arc<Pipeline>> {
        let pipeline = self.read_map().get(key).cloned()?;
        if pipeline.stream_missing() {
            self.retire(key, &pipeline, "Kinesis reports the stream missing");
            self.remember_missing(key.clone());
            return None;
        }
        pipeline.touch();
        Some(pipeline)
    }

    /// Gives the slot of `pipeline` back. Requests still holding it finish normally; its
    /// aggregator drains and ends once the last of them lets go.
    fn retire(&self, key: &Key, pipeline: &Arc<Pipeline>, why: &str) {
        let mut map = self.write_map();
        if map.get(key).is_some_and(|p| Arc::ptr_eq(p, pipeline)) {
            map.remove(key);
            tracing::info!(region = %key.0, stream = %key.1, why, "pipeline given back");
        }
    }

    fn known_missing(&self, key: &Key) -> bool {
        let ttl = self.settings.limits.missing_stream_ttl();
        self.missing.contains(key, ttl)
    }

    fn remember_missing(&self, key: Key) {
        self.forget_confirmed(&key);
        let ttl = self.settings.limits.missing_stream_ttl();
        self.missing.insert(key, ttl);
    }

    /// Asks Kinesis about the stream once, however many requests wait for the answer.
    async fn confirm(&self, key: &Key) -> Confirmation {
        let cell = self
            .confirming
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let confirmation = *cell
            .get_or_init(|| async {
                let Ok(_permit) = self.confirmation_permits.acquire().await else {
                    return Confirmation::Unknown { for_now: true };
                };
                let api = self.clients.for_region(&key.0);
                let stream = key.1.clone();
                // On the Kinesis runtime, where the SDK's connections live.
                let answer = self
                    .runtime
                    .spawn(async move { api.max_record_bytes(&stream).await })
                    .await;
                match answer {
                    Ok(Ok(max_record_bytes)) => Confirmation::Exists { max_record_bytes },
                    Ok(Err(failure)) if failure.code == CallFailure::STREAM_NOT_FOUND => {
                        tracing::info!(region = %key.0, stream = %key.1, "Kinesis says the stream does not exist");
                        Confirmation::Missing
                    }
                    Ok(Err(failure)) => {
                        tracing::warn!(region = %key.0, stream = %key.1, code = %failure.code, message = %failure.message, "DescribeStreamSummary failed; a disk stream never confirmed is refused while Kinesis cannot answer, other streams start with the configured record size limit");
                        Confirmation::Unknown {
                            for_now: classify_call_failure(&failure) == Retryability::Retryable,
                        }
                    }
                    Err(_) => Confirmation::Unknown { for_now: true },
                }
            })
            .await;
        let mut confirming = self.confirming.lock().unwrap_or_else(|p| p.into_inner());
        if confirming.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            confirming.remove(key);
        }
        confirmation
    }

    fn start(
        &self,
        key: Key,
        stream_max_record_bytes: Option<usize>,
    ) -> Result<Arc<Pipeline>, StartError> {
        let (region, stream) = (&key.0, &key.1);
        let mut map = self.write_map();
        if let Some(pipeline) = map.get(&key) {
            return Ok(pipeline.clone());
        }
        if self.draining.load(Ordering::Relaxed) {
            return Err(StartError::ShuttingDown);
        }
        let max = self.settings.limits.max_pipelines;
        if map.len() >= max {
            for missing in Self::sweep(&mut map, self.settings.limits.pipeline_idle_timeout()) {
                self.remember_missing(missing);
            }
        }
        if map.len() >= max {
            return Err(StartError::TooManyPipelines { max });
        }
        let api = Arc::new(self.clients.for_region(region));

        let batching = &self.settings.batching;
        let settings = PipelineSettings {
            batch: BatchLimits {
                max_records: batching.max_batch_records,
                max_bytes: batching.max_batch_bytes,
            },
            linger: batching.linger(),
            arrival_gap: batching.arrival_gap(),
            max_in_flight_calls: batching.max_in_flight_calls,
            queue_max_records: batching.queue_max_records,
            queue_max_bytes: batching.queue_max_bytes,
            record_deadline: self.settings.retry.record_deadline(),
            backoff: Backoff {
                base: Duration::from_millis(self.settings.retry.backoff_base_ms),
                max: Duration::from_millis(self.settings.retry.backoff_max_ms),
            },
            shutdown_grace: self.settings.server.shutdown_grace(),
            shard_aware: self.settings.shards.aware,
            map_refresh: self.settings.shards.map_refresh(),
            shard_limits: shard_limits(&self.settings, stream),
            shard_gather: self.settings.shards.gather(),
            max_backlog_share: self.settings.shards.max_backlog_share,
            ordered: self.settings.keeps_key_order(stream),
            aggregate_max_bytes: None,
        };
        let batch_cap = settings.batch.max_bytes;
        let max_record_bytes = stream_max_record_bytes
            .unwrap_or(self.settings.kinesis.default_max_record_bytes)
            .min(batch_cap);
        let settings = PipelineSettings {
            // An aggregate is one Kinesis record: within the stream's record limit too.
            aggregate_max_bytes: self
                .settings
                .aggregates(stream)
                .then(|| batching.aggregate_max_bytes.min(max_record_bytes)),
            ..settings
        };
        let (pipeline, thread) = Pipeline::start(
            region.clone(),
            stream.clone(),
            api.clone(),
            settings,
            max_record_bytes,
            if self.settings.acks_on_disk(stream) {
                Acknowledgement::Disk
            } else if self.settings.acks_on_enqueue(stream) {
                Acknowledgement::Enqueue
            } else {
                Acknowledgement::Kinesis
            },
            self.runtime.clone(),
            self.draining.clone(),
        )
        .map_err(StartError::Thread)?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(thread);
        tracing::info!(region = %region, stream = %stream, max_record_bytes = ?stream_max_record_bytes, "pipeline started");
        map.insert(key, pipeline.clone());

        Ok(pipeline)
    }

    /// Removes pipelines whose stream Kinesis reports missing, and those idle longer than
    /// `idle` with nothing admitted. Returns the missing ones, to be remembered as such.
    fn sweep(map: &mut HashMap<Key, Arc<Pipeline>>, idle: Duration) -> Vec<Key> {
        let mut missing_streams = Vec::new();
        map.retain(|key, pipeline| {
            let missing = pipeline.stream_missing();
            let idle = pipeline.idle_for() >= idle && pipeline.depth() == (0, 0);
            if missing || idle {
                let why = if missing { "stream missing" } else { "idle" };
                tracing::info!(region = %key.0, stream = %key.1, why, "pipeline given back");
            }
            if missing {
                missing_streams.push(key.clone());
            }
            !(missing || idle)
        });
        missing_streams
    }

    /// Gives back idle pipelines and joins finished aggregator threads, every few seconds,
    /// until the process drains.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let pipelines = self.clone();
        let idle = self.settings.limits.pipeline_idle_timeout();
        let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
        self.runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            while !pipelines.draining.load(Ordering::Relaxed) {
                tick.tick().await;
                let missing = Self::sweep(&mut pipelines.write_map(), idle);
                for key in missing {
                    pipelines.remember_missing(key);
                }
                let mut threads = pipelines.threads.lock().unwrap_or_else(|p| p.into_inner());
                let (finished, running): (Vec<_>, Vec<_>) =
                    threads.drain(..).partition(JoinHandle::is_finished);
                *threads = running;
                drop(threads);
                for thread in finished {
                    let _ = thread.join();
                }
            }
        });
    }

    /// What each running pipeline holds, without holding the pipelines.
    pub fn backlogs(&self) -> Vec<Backlog> {
        self.read_map().values().map(|p| p.backlog()).collect()
    }

    /// Stops taking requests: drops every pipeline handle, so each aggregator drains its queue
    /// and ends. Returns the aggregator threads to wait for.
    pub fn close(&self) -> Vec<JoinHandle<()>> {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
        std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
