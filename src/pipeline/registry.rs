//! The pipelines of all (region, stream) pairs, started on first use and bounded in number.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::batch::BatchLimits;
use super::handle::Pipeline;
use super::retry::Backoff;
use super::settings::PipelineSettings;
use crate::config::Settings;
use crate::domain::{Region, StreamName};
use crate::kinesis::KinesisClients;

type Key = (Region, StreamName);

/// Why no pipeline could be had for a (region, stream).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("this proxy already serves {max} (region, stream) pairs (limits.max_pipelines)")]
    TooManyPipelines { max: usize },
    #[error("cannot start the stream's aggregator thread: {0}")]
    Thread(std::io::Error),
}

pub struct Pipelines {
    /// Read on every request, written only when a pipeline starts: a read lock, never held
    /// across an await.
    map: RwLock<HashMap<Key, Arc<Pipeline>>>,
    clients: Arc<KinesisClients>,
    settings: Arc<Settings>,
    runtime: tokio::runtime::Handle,
    draining: Arc<AtomicBool>,
    /// Aggregator threads, joined at shutdown.
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
            clients,
            settings,
            runtime,
            draining,
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The pipeline of (region, stream), started now if it is the first request for it.
    pub fn get_or_start(
        &self,
        region: &Region,
        stream: &StreamName,
    ) -> Result<Arc<Pipeline>, StartError> {
        let key = (region.clone(), stream.clone());
        {
            let map = self.map.read().unwrap_or_else(|p| p.into_inner());
            if let Some(pipeline) = map.get(&key) {
                return Ok(pipeline.clone());
            }
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(pipeline) = map.get(&key) {
            return Ok(pipeline.clone());
        }
        if self.draining.load(Ordering::Relaxed) {
            return Err(StartError::ShuttingDown);
        }
        let max = self.settings.limits.max_pipelines;
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
        };
        let batch_cap = settings.batch.max_bytes;
        let (pipeline, thread) = Pipeline::start(
            region.clone(),
            stream.clone(),
            api.clone(),
            settings,
            self.settings
                .kinesis
                .default_max_record_bytes
                .min(batch_cap),
            self.settings.acks_on_enqueue(stream),
            self.runtime.clone(),
            self.draining.clone(),
        )
        .map_err(StartError::Thread)?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(thread);
        map.insert(key, pipeline.clone());
        tracing::info!(region = %region, stream = %stream, "pipeline started");

        // Learn the stream's own record size limit once; until then the configured default holds.
        let learner = pipeline.clone();
        self.runtime.spawn(async move {
            match api.max_record_bytes(learner.stream()).await {
                Ok(Some(bytes)) => {
                    learner.set_max_record_bytes(bytes.min(batch_cap));
                    tracing::info!(stream = %learner.stream(), max_record_bytes = bytes, "stream record size limit");
                }
                Ok(None) => {}
                Err(failure) => {
                    tracing::warn!(stream = %learner.stream(), code = %failure.code, message = %failure.message, "DescribeStreamSummary failed; keeping the configured record size limit")
                }
            }
        });
        Ok(pipeline)
    }

    /// Stops taking requests: drops every pipeline handle, so each aggregator drains its queue
    /// and ends. Returns the aggregator threads to wait for.
    pub fn close(&self) -> Vec<JoinHandle<()>> {
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
        std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
