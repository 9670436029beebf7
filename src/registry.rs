//! The pipelines of all (region, stream) pairs, started on first use and bounded in number, and
//! the Kinesis reachability that `/readyz` reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::batch::BatchLimits;
use crate::config::Settings;
use crate::domain::{Region, StreamName};
use crate::error::ApiError;
use crate::kinesis::KinesisClients;
use crate::pipeline::{Pipeline, PipelineSettings};
use crate::retry::Backoff;
use crate::telemetry;

type Key = (Region, StreamName);

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
    ) -> Result<Arc<Pipeline>, ApiError> {
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
            return Err(ApiError::ShuttingDown);
        }
        let max = self.settings.limits.max_pipelines;
        if map.len() >= max {
            return Err(ApiError::TooManyStreams(format!(
                "this proxy already serves {max} (region, stream) pairs (limits.max_pipelines)"
            )));
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
        .map_err(|e| {
            ApiError::Internal(format!("cannot start the stream's aggregator thread: {e}"))
        })?;
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

/// Whether Kinesis answered the last readiness probe.
#[derive(Debug, Default)]
pub struct KinesisHealth {
    reachable: AtomicBool,
}

impl KinesisHealth {
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn set_reachable(&self, reachable: bool) {
        let before = self.reachable.swap(reachable, Ordering::Relaxed);
        if before != reachable {
            if reachable {
                tracing::info!("Kinesis is reachable");
            } else {
                tracing::warn!("Kinesis is not reachable");
            }
        }
        telemetry::kinesis_reachable(reachable);
    }

    /// Probes the default region's Kinesis every `interval` until the process ends.
    pub fn spawn_probe(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        clients: Arc<KinesisClients>,
        region: Region,
        interval: Duration,
    ) {
        let health = self.clone();
        runtime.spawn(async move {
            let kinesis = clients.for_region(&region);
            loop {
                let result = tokio::time::timeout(interval.max(Duration::from_secs(1)), kinesis.probe()).await;
                match result {
                    Ok(Ok(())) => health.set_reachable(true),
                    Ok(Err(failure)) => {
                        tracing::debug!(code = %failure.code, message = %failure.message, "readiness probe failed");
                        // A 4xx is still an answer: Kinesis is reachable even if it refused
                        // this call (e.g. no ListStreams permission). A 5xx is not.
                        health.set_reachable(failure.status.is_some_and(|s| s < 500));
                    }
                    Err(_) => health.set_reachable(false),
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
}
