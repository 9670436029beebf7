//! Delivery of the disk-acknowledged streams (`streams.ack_on_disk`): their handlers append to
//! the spool and answer 202 once the fsync covers the event (`SpoolDelivery::append`); one
//! feeder per (region, stream) (`feeder`) reads the spool back and hands its records to the
//! stream's ordinary pipeline, and marks each done once Kinesis accepted it or it finally failed.
//!
//! Why this shape:
//! - **The spool is the queue.** A disk stream's records wait on disk, not in memory: the feeder
//!   keeps at most one pipeline budget of them in flight, so a Kinesis outage fills the spool
//!   (bounded by `spool.max_bytes`; clients then get 503 `spool_full`) instead of memory.
//! - **Never dropped without a done mark.** A record whose attempt failed for want of Kinesis
//!   (its deadline passed while throttled or unreachable) is handed to the pipeline again,
//!   however long the outage; only Kinesis' final refusals (validation, access, a deleted stream)
//!   end a record, and those are kept in the spool's `failed.ndjson` (`spool::DeadLetters`),
//!   logged with their reason and counted.
//! - **A feeder per stream that ever had a disk record**, idle while caught up. They are as many
//!   as the streams Kinesis confirmed, not more: a disk stream is taken only once Kinesis found
//!   it, and while Kinesis cannot answer only if it did so before (`confirmed`, remembered in
//!   the spool folder), so a made-up name is never acknowledged, never spooled.
//! - **One cursor per stream**, so a throttled stream does not hold the others back. Each starts
//!   at the first record the spool recovered as pending, so after a restart a stream's replayed
//!   records go before its new ones, in the order they were acknowledged.
//! - **At least once.** A record sent before a crash but not yet marked done (or whose mark was
//!   not yet synced) is sent again by the next start.

mod feeder;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify};

use super::registry::Pipelines;
use crate::domain::{Record, Region, StreamName};
use crate::spool::{DeadLetters, EntryId, Recovery, Spool, SpoolError, SpoolRecord};
use crate::telemetry;

type Key = (Region, StreamName);

/// The disk-acknowledgement side of the proxy: the open spool and the feeders reading it.
pub struct SpoolDelivery {
    spool: Spool,
    /// Where records Kinesis finally refused are kept.
    dead_letters: Arc<DeadLetters>,
    pipelines: Arc<Pipelines>,
    /// Where every feeder starts: the first record not done when the spool was opened.
    first_pending: EntryId,
    read_delay: Duration,
    /// Streams that have a feeder (it runs until shutdown, idle while caught up).
    feeders: RwLock<HashSet<Key>>,
    /// Set at shutdown: feeders stop reading and let go of their pipelines.
    stop: watch::Sender<bool>,
    /// Set when the spool closes: settlements stop waiting for answers (what is not answered
    /// by then stays pending in the spool).
    closing: watch::Sender<bool>,
    /// Feeders and page settlements still running.
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for SpoolDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolDelivery")
            .field("spool", &self.spool)
            .finish()
    }
}

impl SpoolDelivery {
    /// Starts delivery from an opened spool: a feeder for every stream with records pending.
    pub fn start(
        spool: Spool,
        recovery: &Recovery,
        dead_letters: DeadLetters,
        read_delay: Duration,
        pipelines: Arc<Pipelines>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        // Before any request: which disk streams Kinesis confirmed in earlier runs.
        pipelines.remember_confirmed_in(spool.dir());
        let delivery = Arc::new(Self {
            spool,
            dead_letters: Arc::new(dead_letters),
            pipelines,
            first_pending: recovery.first_pending,
            read_delay,
            feeders: RwLock::new(HashSet::new()),
            stop: watch::Sender::new(false),
            closing: watch::Sender::new(false),
            tasks: Arc::new(Tasks {
                runtime,
                running: AtomicUsize::new(0),
                ended: Notify::new(),
            }),
        });
        for (region, stream) in recovery.pending_by_stream.keys() {
            delivery.ensure_feeder(region, stream);
        }
        delivery.publish_metrics();
        delivery
    }

    /// Appends a request's records to the spool; resolves once they are fsynced (then, and
    /// only then, the client may be told 202). Refused at once when the spool is full. A
    /// request cancelled while waiting leaves its records in the spool: they are delivered.
    pub async fn append(
        &self,
        region: &Region,
        stream: &StreamName,
        records: Vec<Record>,
    ) -> Result<usize, SpoolError> {
        let count = records.len();
        let entries = records
            .into_iter()
            .map(|record| SpoolRecord {
                region: region.clone(),
                stream: stream.clone(),
                record,
            })
            .collect();
        let appended = self.spool.append_many(entries)?;
        self.ensure_feeder(region, stream);
        appended.await?;
        Ok(count)
    }

    fn ensure_feeder(&self, region: &Region, stream: &StreamName) {
        let key = (region.clone(), stream.clone());
        if self
            .feeders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return;
        }
        let mut feeders = self.feeders.write().unwrap_or_else(|p| p.into_inner());
        if *self.stop.borrow() || !feeders.insert(key.clone()) {
            return;
        }
        drop(feeders);
        tracing::info!(region = %key.0, stream = %key.1, "spool: delivery of the stream started");
        let feeder = feeder::Feeder {
            spool: self.spool.clone(),
            dead_letters: self.dead_letters.clone(),
            pipelines: self.pipelines.clone(),
            tasks: self.tasks.clone(),
            key,
            cursor: self.first_pending,
            stop: self.stop.subscribe(),
            closing: self.closing.clone(),
            read_delay: self.read_delay,
        };
        self.tasks.spawn(feeder.run());
    }

    /// Shutdown, first step: feeders stop reading and let go of their pipelines, so the
    /// pipelines can drain. Records already handed over are settled as their answers come.
    pub fn stop_reading(&self) {
        self.stop.send_replace(true);
    }

    /// Shutdown, last step (after the pipelines drained, or at once on a forced stop):
    /// settlements stop waiting for answers still out (calls the pipelines left behind), the
    /// feeders and settlements get up to `grace` to end, then the spool closes (done marks
    /// synced). What was not delivered stays in the spool for the next start.
    pub async fn close(&self, grace: Duration) {
        self.stop_reading();
        self.closing.send_replace(true);
        if tokio::time::timeout(grace, self.tasks.all_ended())
            .await
            .is_err()
        {
            tracing::warn!("spool: some deliveries were still waiting for Kinesis at shutdown; their records stay in the spool");
        }
        self.publish_metrics();
        match self.spool.close().await {
            Ok(()) => {
                let stats = self.spool.stats();
                tracing::info!(
                    records_left = stats.live_records,
                    bytes_left = stats.live_bytes,
                    "spool closed; what is left is sent at the next start"
                );
            }
            Err(error) => tracing::error!(%error, "spool: closing failed"),
        }
    }

    /// Whether the spool takes appends: false once it stopped after an I/O error.
    pub fn is_writable(&self) -> bool {
        self.spool.failure().is_none()
    }

    /// Whether the spool's disk is below `spool.min_free_bytes`, so it refuses every append.
    pub fn is_short_of_disk_space(&self) -> bool {
        self.spool.is_short_of_disk_space()
    }

    /// Copies the spool's own counters and gauges into the metrics registry (on the metrics
    /// tick and before each scrape).
    pub fn publish_metrics(&self) {
        let stats = self.spool.stats();
        metrics::gauge!(telemetry::SPOOL_BYTES).set(stats.live_bytes as f64);
        metrics::gauge!(telemetry::SPOOL_RECORDS).set(stats.live_records as f64);
        let age = stats
            .oldest_live_age(SystemTime::now())
            .map_or(0.0, |age| age.as_secs_f64());
        metrics::gauge!(telemetry::SPOOL_OLDEST_AGE).set(age);
        metrics::counter!(telemetry::SPOOL_FSYNCS).absolute(stats.fsyncs);
        metrics::counter!(telemetry::SPOOL_RECORDS_FSYNCED).absolute(stats.records_fsynced);
        metrics::counter!(telemetry::SPOOL_REPLAYED).absolute(stats.replayed_at_start);
        metrics::counter!(telemetry::SPOOL_TORN_TAILS).absolute(stats.torn_tails_cut);
        metrics::counter!(telemetry::SPOOL_CORRUPT_ENTRIES).absolute(stats.corrupt_entries_skipped);
        metrics::counter!(telemetry::SPOOL_REFUSALS).absolute(stats.refused_full);
    }
}

/// The delivery's tasks (feeders, settlements), counted so shutdown can wait for them.
struct Tasks {
    /// The Kinesis runtime, where the pipelines' calls run too.
    runtime: tokio::runtime::Handle,
    running: AtomicUsize,
    ended: Notify,
}

impl Tasks {
    fn spawn(self: &Arc<Self>, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.running.fetch_add(1, Ordering::AcqRel);
        let tasks = self.clone();
        self.runtime.spawn(async move {
            // Counted down on drop, so a task that panics or is cancelled is not waited for.
            let _end = TaskEnd(tasks);
            task.await;
        });
    }

    async fn all_ended(&self) {
        loop {
            let ended = self.ended.notified();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }
}

struct TaskEnd(Arc<Tasks>);

impl Drop for TaskEnd {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}
