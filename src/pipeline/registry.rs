//! The pipelines of all (region, stream) pairs: started on first use, bounded in number, and
//! given back when they are no longer needed.
//!
//! A slot is only taken by a stream Kinesis confirms (`DescribeStreamSummary`, which also tells
//! the stream's record size limit), so requests for streams that do not exist cannot lock the
//! real ones out. A stream Kinesis reports missing is remembered for
//! `limits.missing_stream_ttl_ms` (answered 404 without asking again; the call is limited to
//! 20/s per account), a running pipeline whose stream disappears is retired, and a pipeline idle
//! for `limits.pipeline_idle_timeout_ms` is reclaimed. When Kinesis cannot say (no permission,
//! unreachable), the pipeline starts anyway: its `PutRecords` calls will tell.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use super::batch::BatchLimits;
use super::handle::{Acknowledgement, Backlog, Pipeline};
use super::lanes::ShardLimits;
use super::retry::Backoff;
use super::settings::PipelineSettings;
use crate::config::Settings;
use crate::domain::{Region, StreamName};
use crate::kinesis::{CallFailure, KinesisClients};

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
    /// Kinesis could not say (no permission, unreachable, throttled).
    Unknown,
}

/// Confirmations running at once: each is a `DescribeStreamSummary` call, which AWS limits to
/// 20/s per account, shared with every other producer and replica.
const MAX_CONCURRENT_CONFIRMATIONS: usize = 4;

/// Streams remembered as missing, at most; past it the oldest are forgotten first.
const MAX_REMEMBERED_MISSING: usize = 1024;

pub struct Pipelines {
    /// Read on every request, written only when a pipeline starts or is given back: a read
    /// lock, never held across an await.
    map: RwLock<HashMap<Key, Arc<Pipeline>>>,
    /// Streams Kinesis said do not exist, and when it said so.
    missing: Mutex<HashMap<Key, Instant>>,
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
            missing: Mutex::new(HashMap::new()),
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
        match self.confirm(&key).await {
            Confirmation::Missing => {
                self.remember_missing(key);
                Err(StartError::StreamNotFound)
            }
            Confirmation::Exists { max_record_bytes } => self.start(key, max_record_bytes),
            Confirmation::Unknown => self.start(key, None),
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
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        match missing.get(key) {
            Some(since) if since.elapsed() < ttl => true,
            Some(_) => {
                missing.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember_missing(&self, key: Key) {
        let ttl = self.settings.limits.missing_stream_ttl();
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        if missing.len() >= MAX_REMEMBERED_MISSING {
            missing.retain(|_, since| since.elapsed() < ttl);
        }
        if missing.len() >= MAX_REMEMBERED_MISSING {
            if let Some(oldest) = missing
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(k, _)| k.clone())
            {
                missing.remove(&oldest);
            }
        }
        missing.insert(key, Instant::now());
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
                    return Confirmation::Unknown;
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
                        tracing::warn!(region = %key.0, stream = %key.1, code = %failure.code, message = %failure.message, "DescribeStreamSummary failed; starting the pipeline with the configured record size limit");
                        Confirmation::Unknown
                    }
                    Err(_) => Confirmation::Unknown,
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
            Self::sweep(&mut map, self.settings.limits.pipeline_idle_timeout());
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
    /// `idle` with nothing admitted.
    fn sweep(map: &mut HashMap<Key, Arc<Pipeline>>, idle: Duration) {
        map.retain(|(region, stream), pipeline| {
            let missing = pipeline.stream_missing();
            let idle = pipeline.idle_for() >= idle && pipeline.depth() == (0, 0);
            if missing || idle {
                let why = if missing { "stream missing" } else { "idle" };
                tracing::info!(%region, %stream, why, "pipeline given back");
            }
            !(missing || idle)
        });
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
                Self::sweep(&mut pipelines.write_map(), idle);
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
