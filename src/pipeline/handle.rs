//! The handlers' side of one pipeline: admission against the budget and a `try_send` into the
//! bounded queue, never a wait. Starting a pipeline starts its aggregator thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::{oneshot, Notify};

use super::admission::{Budget, Ticket};
use super::aggregator::Aggregator;
use super::metrics::StreamMetrics;
use super::outcome::{RecordOutcome, SubmitError};
use super::pending::{PendingRecord, Submission};
use super::settings::PipelineSettings;
use super::shard_backlog::{ShardBacklogs, ShardSlot};
use super::shard_refresh;
use super::status::StreamStatus;
use crate::domain::{Record, Region, StreamName};
use crate::kinesis::{hash_key, PutRecordsApi};
use crate::telemetry::SeriesScope;

/// When a stream's clients are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// 200 once Kinesis accepted the event (the default).
    Kinesis,
    /// 202 once the event is fsynced in the disk spool (`streams.ack_on_disk`); the handler
    /// appends to the spool, and `SpoolDelivery` feeds the pipeline from there.
    Disk,
    /// 202 once the event is queued in memory (`streams.ack_on_enqueue`).
    Enqueue,
}

/// The handlers' side of one pipeline.
#[derive(Debug)]
pub struct Pipeline {
    region: Region,
    stream: StreamName,
    sender: Sender<Submission>,
    budget: Arc<Budget>,
    /// Per-shard bounds inside the budget (a hot shard cannot take all of it).
    shard_backlogs: Arc<ShardBacklogs>,
    record_deadline: Duration,
    /// Largest record the stream takes, learned from `DescribeStreamSummary` when available.
    max_record_bytes: AtomicUsize,
    acknowledgement: Acknowledgement,
    metrics: Arc<StreamMetrics>,
    status: Arc<StreamStatus>,
}

impl Pipeline {
    /// Starts the aggregator thread of a new pipeline. The thread ends once every `Pipeline`
    /// handle is dropped and everything admitted has been answered (or the grace period ran out).
    #[allow(clippy::too_many_arguments)]
    pub fn start<K: PutRecordsApi>(
        region: Region,
        stream: StreamName,
        api: Arc<K>,
        settings: PipelineSettings,
        max_record_bytes: usize,
        acknowledgement: Acknowledgement,
        runtime: tokio::runtime::Handle,
        draining: Arc<AtomicBool>,
    ) -> std::io::Result<(Arc<Pipeline>, JoinHandle<()>)> {
        let (sender, queue) = crossbeam_channel::bounded(settings.queue_max_records);
        let budget = Arc::new(Budget::new(
            settings.queue_max_records,
            settings.queue_max_bytes,
        ));
        let shard_backlogs = Arc::new(ShardBacklogs::new(
            settings.queue_max_records,
            settings.queue_max_bytes,
            settings.max_backlog_share,
        ));
        let metrics = Arc::new(StreamMetrics::new(&region, &stream));
        let status = Arc::new(StreamStatus::new());
        status.touch();
        let pipeline = Arc::new(Pipeline {
            region: region.clone(),
            stream: stream.clone(),
            sender,
            budget: budget.clone(),
            shard_backlogs: shard_backlogs.clone(),
            record_deadline: settings.record_deadline,
            max_record_bytes: AtomicUsize::new(max_record_bytes),
            acknowledgement,
            metrics: metrics.clone(),
            status: status.clone(),
        });
        let (completions_tx, completions) = crossbeam_channel::unbounded();
        let (maps_tx, maps) = crossbeam_channel::unbounded();
        let map_wanted = Arc::new(Notify::new());
        if settings.shard_aware {
            shard_refresh::spawn(
                api.clone(),
                stream.clone(),
                settings.map_refresh,
                &runtime,
                maps_tx,
                map_wanted.clone(),
            );
        }
        let aggregator = Aggregator::new(
            metrics,
            api,
            settings,
            queue,
            (completions_tx, completions),
            runtime,
            draining,
            (budget, shard_backlogs),
            status,
            (maps, map_wanted),
            acknowledgement == Acknowledgement::Disk,
        );
        let handle = std::thread::Builder::new()
            .name(format!("agg-{}", truncate_thread_name(stream.as_str())))
            .spawn(move || aggregator.run())?;
        Ok((pipeline, handle))
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    pub fn acknowledgement(&self) -> Acknowledgement {
        self.acknowledgement
    }

    /// Where this stream's series live: whoever counts something per stream registers it
    /// there, so it leaves `/metrics` with the pipeline.
    pub fn series(&self) -> &Arc<SeriesScope> {
        self.metrics.series()
    }

    /// Counts events a handler took for this stream without submitting them here (a disk
    /// stream's events go to the spool first).
    pub fn count_received(&self, events: u64) {
        self.metrics.events_received(events);
    }

    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    pub fn set_max_record_bytes(&self, bytes: usize) {
        self.max_record_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Kinesis said the stream does not exist: the registry retires this pipeline.
    pub fn stream_missing(&self) -> bool {
        self.status.is_missing()
    }

    /// A request is about to use the pipeline (it is not idle).
    pub fn touch(&self) {
        self.status.touch();
    }

    /// How long since a request last used the pipeline.
    pub fn idle_for(&self) -> Duration {
        self.status.idle_for()
    }

    /// Records and bytes currently admitted (queued, in flight or backing off).
    pub fn depth(&self) -> (usize, usize) {
        self.budget.depth()
    }

    /// A view of what the pipeline holds that does not keep it open (shutdown reports from it
    /// what a forced stop gives up).
    pub fn backlog(&self) -> Backlog {
        Backlog {
            acknowledgement: self.acknowledgement,
            budget: self.budget.clone(),
        }
    }

    /// Queues one record. Returns the receiver of its outcome, or `None` when the stream
    /// acknowledges at enqueue. (A disk stream's handler appends to the spool instead.)
    pub fn submit_one(
        &self,
        record: Record,
        received_at: Instant,
    ) -> Result<Option<oneshot::Receiver<RecordOutcome>>, SubmitError> {
        let size = record.kinesis_size();
        let hash_key = hash_key(&record);
        if !self.budget.try_take(1, size) {
            return Err(SubmitError::QueueFull);
        }
        let shard = match self.shard_backlogs.try_take_one(hash_key, size) {
            Ok(shard) => shard,
            Err(hot) => {
                self.budget.give_back(1, size);
                return Err(SubmitError::HotShard(hot));
            }
        };
        let (pending, receiver) = self.pending(record, hash_key, size, shard, received_at);
        self.send(Submission::One(Box::new(pending)))?;
        self.metrics.events_received(1);
        Ok(receiver)
    }

    /// Queues all records of one request, or none of them.
    pub fn submit_many(
        &self,
        records: Vec<Record>,
        received_at: Instant,
    ) -> Result<Vec<Option<oneshot::Receiver<RecordOutcome>>>, SubmitError> {
        let keys: Vec<(u128, usize)> = records
            .iter()
            .map(|record| (hash_key(record), record.kinesis_size()))
            .collect();
        let total: usize = keys.iter().map(|(_, size)| size).sum();
        if !self.budget.try_take(records.len(), total) {
            return Err(SubmitError::QueueFull);
        }
        let shards = match self.shard_backlogs.try_take_all(&keys) {
            Ok(shards) => shards,
            Err(hot) => {
                self.budget.give_back(records.len(), total);
                return Err(SubmitError::HotShard(hot));
            }
        };
        let mut pending = Vec::with_capacity(records.len());
        let mut receivers = Vec::with_capacity(records.len());
        for ((record, (hash_key, size)), shard) in records.into_iter().zip(keys).zip(shards) {
            let (p, r) = self.pending(record, hash_key, size, shard, received_at);
            pending.push(p);
            receivers.push(r);
        }
        let count = pending.len() as u64;
        self.send(Submission::Many(pending))?;
        self.metrics.events_received(count);
        Ok(receivers)
    }

    /// Queues records read back from the disk spool (`spooled`), each with when its client
    /// handed it in (so latency metrics count the time on disk), all or none, against the
    /// budget only: no shard's share of it is checked, because no client waits on these (each
    /// was answered once fsynced). Every record gets a receiver, whatever the stream's
    /// acknowledgement level, and a full deadline from now.
    pub(super) fn submit_spooled(
        &self,
        records: Vec<(Record, Instant)>,
    ) -> Result<Vec<oneshot::Receiver<RecordOutcome>>, SubmitError> {
        let total: usize = records.iter().map(|(r, _)| r.kinesis_size()).sum();
        if !self.budget.try_take(records.len(), total) {
            return Err(SubmitError::QueueFull);
        }
        let deadline = Instant::now() + self.record_deadline;
        let mut pending = Vec::with_capacity(records.len());
        let mut receivers = Vec::with_capacity(records.len());
        for (record, received_at) in records {
            let (reply, receiver) = oneshot::channel();
            let (size, hash_key) = (record.kinesis_size(), hash_key(&record));
            pending.push(PendingRecord::new(
                record,
                hash_key,
                Some(reply),
                received_at,
                deadline,
                Ticket::new(&self.budget, size, None),
            ));
            receivers.push(receiver);
        }
        self.send(Submission::Many(pending))?;
        Ok(receivers)
    }

    fn pending(
        &self,
        record: Record,
        hash_key: u128,
        size: usize,
        shard: Option<ShardSlot>,
        received_at: Instant,
    ) -> (PendingRecord, Option<oneshot::Receiver<RecordOutcome>>) {
        let (reply, receiver) = if self.acknowledgement == Acknowledgement::Enqueue {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let pending = PendingRecord::new(
            record,
            hash_key,
            reply,
            received_at,
            received_at + self.record_deadline,
            Ticket::new(&self.budget, size, shard),
        );
        (pending, receiver)
    }

    fn send(&self, submission: Submission) -> Result<(), SubmitError> {
        // The budget bounds records below the channel's capacity, so `Full` is not expected;
        // should it happen, the submission (and its tickets) is dropped and the client told.
        match self.sender.try_send(submission) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Closed),
        }
    }
}

/// Records a pipeline holds (admitted, not yet answered), by its acknowledgement level; holds
/// the budget only, not the queue, so the pipeline still drains and ends when it is dropped.
#[derive(Debug, Clone)]
pub struct Backlog {
    pub acknowledgement: Acknowledgement,
    budget: Arc<Budget>,
}

impl Backlog {
    /// Records admitted and not yet answered.
    pub fn records(&self) -> usize {
        self.budget.depth().0
    }
}

fn truncate_thread_name(name: &str) -> &str {
    // Linux thread names hold 15 bytes; stream names are ASCII.
    &name[..name.len().min(11)]
}
