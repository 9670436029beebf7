//! The queue and aggregator of one (region, stream): the path from "validated event" to
//! "Kinesis accepted it".
//!
//! Handlers admit records against a budget (records and bytes, from admission until the record
//! is answered, so everything in the pipeline is bounded, retries included) and `try_send` them
//! into a bounded `crossbeam-channel`: they never wait on a full queue. One aggregator thread per
//! queue (a blocking receiver must not sit on a tokio worker) assembles batches and starts
//! `PutRecords` calls on the tokio runtime, at most `max_in_flight_calls` at once. A call's task
//! answers each record's waiting handler and hands the entries worth retrying back to the
//! aggregator, which puts them, after their backoff, at the front of a later batch. Only failed
//! entries are resent, never a whole batch.
//!
//! When to flush: a batch goes out when it is full (records or bytes), when no call is in flight
//! (clients are waiting for their acknowledgement, so holding records back while the pipe is
//! idle only adds latency), or when its oldest record has waited `linger` while other calls are
//! in flight (so batches grow under load, when batching pays, and never wait long).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tokio::sync::oneshot;

use crate::batch::{Batch, BatchLimits, FlushReason, PushError};
use crate::domain::{Record, Region, StreamName};
use crate::kinesis::{EntryResult, PutRecordsApi};
use crate::retry::{
    classify_call_failure, classify_entry_error, Backoff, CallFailure, Retryability,
};
use crate::telemetry::{kinesis_code_label, StreamMetrics};

/// Where Kinesis put a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub shard_id: String,
    pub sequence_number: String,
}

/// Why a record was finally not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Kinesis kept rejecting the entry (throttling, internal failure) until its deadline.
    RetriesExhausted,
    /// Kinesis did not answer (timeouts, connection failures) until the record's deadline.
    Unavailable,
    /// Kinesis refused it for good (validation, missing stream, access denied, KMS).
    Rejected,
    /// The shutdown grace period ended before the record could be sent.
    ShuttingDown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub kind: FailureKind,
    /// The last error code Kinesis (or the transport) gave, for the client and the logs.
    pub kinesis_code: String,
    pub message: String,
}

pub type RecordOutcome = Result<Accepted, RecordFailure>;

/// Why a submission was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The pipeline's record or byte budget is used up: the client should back off.
    QueueFull,
    /// The pipeline is draining for shutdown.
    Closed,
}

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
}

/// Records and bytes admitted and not yet answered.
#[derive(Debug)]
struct Budget {
    records: AtomicUsize,
    bytes: AtomicUsize,
    max_records: usize,
    max_bytes: usize,
}

impl Budget {
    /// Takes `records`/`bytes` from the budget, all or nothing.
    fn try_take(&self, records: usize, bytes: usize) -> bool {
        let before = self.records.fetch_add(records, Ordering::AcqRel);
        if before + records > self.max_records {
            self.records.fetch_sub(records, Ordering::AcqRel);
            return false;
        }
        let before = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.records.fetch_sub(records, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// One record's share of the budget, given back when the record is answered (dropped), so
/// the accounting cannot leak on any path.
#[derive(Debug)]
struct Ticket {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.records.fetch_sub(1, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A record on its way through the pipeline with what is needed to answer for it.
#[derive(Debug)]
struct PendingRecord {
    record: Record,
    /// `None` when the stream acknowledges at enqueue: nobody waits for this one.
    reply: Option<oneshot::Sender<RecordOutcome>>,
    received_at: Instant,
    deadline: Instant,
    /// Sends so far.
    attempts: u32,
    /// When it may go into a batch (later than now while backing off).
    ready_at: Instant,
    last_failure: Option<RecordFailure>,
    _ticket: Ticket,
}

impl PendingRecord {
    fn finish(mut self, metrics: &StreamMetrics, outcome: RecordOutcome) {
        metrics.record_finished(&outcome, self.attempts, self.received_at.elapsed());
        let reply = self.reply.take();
        // Give the budget back before answering, so a client that sends again at once finds
        // room for its next record.
        drop(self);
        if let Some(reply) = reply {
            // The client may have gone away; its record is written all the same.
            let _ = reply.send(outcome);
        }
    }

    fn fail_at_deadline(mut self, metrics: &StreamMetrics) {
        let failure = self.last_failure.take().unwrap_or(RecordFailure {
            kind: FailureKind::Unavailable,
            kinesis_code: "deadline_exceeded".into(),
            message: "the record could not be sent to Kinesis before its deadline".into(),
        });
        self.finish(metrics, Err(failure));
    }
}

/// What goes through the queue: one request's records, so a many-records request is one message.
/// Boxed, because the bounded channel preallocates a slot per record of capacity.
enum Submission {
    One(Box<PendingRecord>),
    Many(Vec<PendingRecord>),
}

/// A finished `PutRecords` call: frees an in-flight slot and returns the entries to retry.
struct Completion {
    retries: Vec<PendingRecord>,
    /// The endpoint refused the request body as too large (HTTP 413): send smaller batches.
    shrink_batches: bool,
}

/// The handlers' side of one pipeline.
#[derive(Debug)]
pub struct Pipeline {
    region: Region,
    stream: StreamName,
    sender: Sender<Submission>,
    budget: Arc<Budget>,
    record_deadline: Duration,
    /// Largest record the stream takes, learned from `DescribeStreamSummary` when available.
    max_record_bytes: AtomicUsize,
    ack_on_enqueue: bool,
    metrics: Arc<StreamMetrics>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(_) => f.write_str("Submission::One"),
            Self::Many(r) => write!(f, "Submission::Many({})", r.len()),
        }
    }
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
        ack_on_enqueue: bool,
        runtime: tokio::runtime::Handle,
        draining: Arc<AtomicBool>,
    ) -> std::io::Result<(Arc<Pipeline>, JoinHandle<()>)> {
        let (sender, queue) = crossbeam_channel::bounded(settings.queue_max_records);
        let budget = Arc::new(Budget {
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_records: settings.queue_max_records,
            max_bytes: settings.queue_max_bytes,
        });
        let metrics = Arc::new(StreamMetrics::new(&stream));
        let pipeline = Arc::new(Pipeline {
            region: region.clone(),
            stream: stream.clone(),
            sender,
            budget: budget.clone(),
            record_deadline: settings.record_deadline,
            max_record_bytes: AtomicUsize::new(max_record_bytes),
            ack_on_enqueue,
            metrics: metrics.clone(),
        });
        let (completions_tx, completions) = crossbeam_channel::unbounded();
        let aggregator = Aggregator {
            metrics,
            api,
            settings,
            queue,
            completions,
            completions_tx,
            runtime,
            draining,
            budget,
            ready: VecDeque::new(),
            ready_bytes: 0,
            backing_off: Vec::new(),
            in_flight: 0,
            last_arrival: Instant::now(),
            last_completion: Instant::now(),
            queue_closed: false,
            grace_deadline: None,
        };
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

    pub fn ack_on_enqueue(&self) -> bool {
        self.ack_on_enqueue
    }

    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes.load(Ordering::Relaxed)
    }

    pub fn set_max_record_bytes(&self, bytes: usize) {
        self.max_record_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Records and bytes currently admitted (queued, in flight or backing off).
    pub fn depth(&self) -> (usize, usize) {
        (
            self.budget.records.load(Ordering::Relaxed),
            self.budget.bytes.load(Ordering::Relaxed),
        )
    }

    /// Queues one record. Returns the receiver of its outcome, or `None` when the stream
    /// acknowledges at enqueue.
    pub fn submit_one(
        &self,
        record: Record,
        received_at: Instant,
    ) -> Result<Option<oneshot::Receiver<RecordOutcome>>, SubmitError> {
        let size = record.kinesis_size();
        if !self.budget.try_take(1, size) {
            return Err(SubmitError::QueueFull);
        }
        let (pending, receiver) = self.pending(record, size, received_at);
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
        let total: usize = records.iter().map(Record::kinesis_size).sum();
        if !self.budget.try_take(records.len(), total) {
            return Err(SubmitError::QueueFull);
        }
        let mut pending = Vec::with_capacity(records.len());
        let mut receivers = Vec::with_capacity(records.len());
        for record in records {
            let size = record.kinesis_size();
            let (p, r) = self.pending(record, size, received_at);
            pending.push(p);
            receivers.push(r);
        }
        let count = pending.len() as u64;
        self.send(Submission::Many(pending))?;
        self.metrics.events_received(count);
        Ok(receivers)
    }

    fn pending(
        &self,
        record: Record,
        size: usize,
        received_at: Instant,
    ) -> (PendingRecord, Option<oneshot::Receiver<RecordOutcome>>) {
        let (reply, receiver) = if self.ack_on_enqueue {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let pending = PendingRecord {
            record,
            reply,
            received_at,
            deadline: received_at + self.record_deadline,
            attempts: 0,
            ready_at: received_at,
            last_failure: None,
            _ticket: Ticket {
                budget: self.budget.clone(),
                bytes: size,
            },
        };
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

fn truncate_thread_name(name: &str) -> &str {
    // Linux thread names hold 15 bytes; stream names are ASCII.
    &name[..name.len().min(11)]
}

/// The aggregator's state; owned by its thread, so no locks.
struct Aggregator<K> {
    metrics: Arc<StreamMetrics>,
    api: Arc<K>,
    settings: PipelineSettings,
    queue: Receiver<Submission>,
    completions: Receiver<Completion>,
    /// Cloned into each call's task.
    completions_tx: Sender<Completion>,
    runtime: tokio::runtime::Handle,
    draining: Arc<AtomicBool>,
    budget: Arc<Budget>,
    /// Records that may go into the next batch, oldest first (retries go to the front).
    ready: VecDeque<PendingRecord>,
    ready_bytes: usize,
    /// Records waiting out their backoff before a retry.
    backing_off: Vec<PendingRecord>,
    in_flight: usize,
    /// When the latest submission was taken from the queue.
    last_arrival: Instant,
    /// When the latest call finished. Its clients were just answered and, if they send one
    /// event after another, their next events are on their way: an idle flush waits one
    /// arrival gap for them too.
    last_completion: Instant,
    /// Every `Pipeline` handle is gone: no new records will come.
    queue_closed: bool,
    /// Set when draining starts: past it, what is left is failed and the thread ends.
    grace_deadline: Option<Instant>,
}

impl<K: PutRecordsApi> Aggregator<K> {
    fn run(mut self) {
        tracing::debug!(stream = %self.metrics.stream, "aggregator started");
        loop {
            let now = Instant::now();
            let wait = self.next_wakeup(now).saturating_duration_since(now);
            // Woken by a new record only while nothing waits to be sent. Otherwise the queue is
            // drained on the timers (arrival gap, linger) and on completions, so a busy stream
            // costs no thread wake-up per record. Once closed, the queue would report
            // "disconnected" at once on every turn.
            let queue = if self.queue_closed || !self.ready.is_empty() {
                crossbeam_channel::never()
            } else {
                self.queue.clone()
            };
            crossbeam_channel::select! {
                // The first record after a quiet spell.
                recv(queue) -> submission => match submission {
                    Ok(submission) => self.accept(submission),
                    Err(_) => self.queue_closed = true,
                },
                // A call finished: its slot is free and its failed entries come back.
                recv(self.completions) -> completion => {
                    if let Ok(completion) = completion {
                        self.complete(completion);
                    }
                },
                // An arrival-gap, linger, backoff or deadline timer is due.
                default(wait) => {},
            }
            while let Ok(more) = self.completions.try_recv() {
                self.complete(more);
            }
            self.drain_queue();
            let now = Instant::now();
            if self.grace_deadline.is_none()
                && (self.queue_closed || self.draining.load(Ordering::Relaxed))
            {
                self.grace_deadline = Some(now + self.settings.shutdown_grace);
            }
            self.promote_due_retries(now);
            self.expire(now);
            self.flush_what_is_due(now);
            self.metrics.queue_depth(
                self.budget.records.load(Ordering::Relaxed),
                self.budget.bytes.load(Ordering::Relaxed),
            );
            if self.queue_closed
                && self.ready.is_empty()
                && self.backing_off.is_empty()
                && self.in_flight == 0
            {
                break;
            }
        }
        tracing::debug!(stream = %self.metrics.stream, "aggregator drained and stopped");
    }

    /// Takes everything waiting in the queue without blocking.
    fn drain_queue(&mut self) {
        while !self.queue_closed {
            match self.queue.try_recv() {
                Ok(submission) => self.accept(submission),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.queue_closed = true,
            }
        }
    }

    fn accept(&mut self, submission: Submission) {
        self.last_arrival = Instant::now();
        match submission {
            Submission::One(record) => self.push_ready_back(*record),
            Submission::Many(records) => records.into_iter().for_each(|r| self.push_ready_back(r)),
        }
    }

    fn push_ready_back(&mut self, record: PendingRecord) {
        self.ready_bytes += record.record.kinesis_size();
        self.ready.push_back(record);
    }

    fn complete(&mut self, completion: Completion) {
        self.in_flight -= 1;
        self.last_completion = Instant::now();
        self.backing_off.extend(completion.retries);
        if completion.shrink_batches {
            self.shrink_batches();
        }
    }

    /// Some endpoints (emulators, proxies in front of Kinesis) cap the HTTP body below what
    /// Kinesis' own limit allows, and base64 makes the body a third larger than the data. When
    /// one answers 413, halve the batch byte cap (never below one record of the largest size
    /// Kinesis takes by default) instead of failing the records.
    fn shrink_batches(&mut self) {
        const FLOOR: usize = 1024 * 1024;
        let before = self.settings.batch.max_bytes;
        let after = (before / 2).max(FLOOR).min(before);
        if after < before {
            self.settings.batch.max_bytes = after;
            tracing::warn!(stream = %self.metrics.stream, before, after, "Kinesis endpoint refused a request as too large; batches are now capped lower");
        }
    }

    /// Retries whose backoff is over go to the front: they are the oldest records.
    fn promote_due_retries(&mut self, now: Instant) {
        if self.backing_off.is_empty() {
            return;
        }
        let mut due: Vec<PendingRecord> = Vec::new();
        let mut i = 0;
        while i < self.backing_off.len() {
            if self.backing_off[i].ready_at <= now {
                due.push(self.backing_off.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|r| std::cmp::Reverse(r.received_at));
        for record in due {
            self.ready_bytes += record.record.kinesis_size();
            self.ready.push_front(record);
        }
    }

    /// Answers the records whose deadline has passed, and after the grace period, all of them.
    fn expire(&mut self, now: Instant) {
        let past_grace = self.grace_deadline.is_some_and(|g| now >= g);
        if past_grace {
            let left: Vec<PendingRecord> = self
                .ready
                .drain(..)
                .chain(self.backing_off.drain(..))
                .collect();
            self.ready_bytes = 0;
            if !left.is_empty() {
                tracing::error!(stream = %self.metrics.stream, records = left.len(), "shutdown grace period over: failing records not yet in Kinesis");
            }
            for record in left {
                record.finish(
                    &self.metrics,
                    Err(RecordFailure {
                        kind: FailureKind::ShuttingDown,
                        kinesis_code: "shutting_down".into(),
                        message: "the proxy shut down before the record could be written".into(),
                    }),
                );
            }
            return;
        }
        // Records are ordered by age at the front of `ready`; retries sit there too.
        while self.ready.front().is_some_and(|r| r.deadline <= now) {
            if let Some(record) = self.ready.pop_front() {
                self.ready_bytes -= record.record.kinesis_size();
                record.fail_at_deadline(&self.metrics);
            }
        }
        let mut i = 0;
        while i < self.backing_off.len() {
            if self.backing_off[i].deadline <= now {
                self.backing_off
                    .swap_remove(i)
                    .fail_at_deadline(&self.metrics);
            } else {
                i += 1;
            }
        }
    }

    fn flush_what_is_due(&mut self, now: Instant) {
        while self.in_flight < self.settings.max_in_flight_calls && !self.ready.is_empty() {
            let full = self.ready.len() >= self.settings.batch.max_records
                || self.ready_bytes >= self.settings.batch.max_bytes;
            let closing = self.grace_deadline.is_some();
            let lingered = self
                .ready
                .front()
                .is_some_and(|r| now.saturating_duration_since(r.ready_at) >= self.settings.linger);
            // Nothing in flight and the burst of arrivals is over (counting the clients the
            // last call just answered as part of it): waiting longer would only add latency.
            let quiet_since = self.last_arrival.max(self.last_completion);
            let idle = self.in_flight == 0
                && now.saturating_duration_since(quiet_since) >= self.settings.arrival_gap;
            if !(full || closing || lingered || idle) {
                break;
            }
            let fallback_reason = if closing {
                FlushReason::Shutdown
            } else if idle && !lingered {
                FlushReason::Idle
            } else {
                FlushReason::Linger
            };
            self.start_call(fallback_reason);
        }
    }

    /// Takes the next batch from the front of `ready` and sends it on the runtime.
    fn start_call(&mut self, fallback_reason: FlushReason) {
        let mut batch = Batch::new(self.settings.batch);
        let mut reason = fallback_reason;
        while let Some(record) = self.ready.pop_front() {
            let size = record.record.kinesis_size();
            match batch.try_push(record, size) {
                Ok(()) => self.ready_bytes -= size,
                Err(PushError::Full(record)) => {
                    reason = FlushReason::Bytes;
                    self.ready.push_front(record);
                    break;
                }
                Err(PushError::TooLarge(record)) => {
                    // Handlers check the stream's record limit; this only triggers when the
                    // batch cap is set below it. Fail it alone rather than poison a batch.
                    self.ready_bytes -= size;
                    record.finish(
                        &self.metrics,
                        Err(RecordFailure {
                            kind: FailureKind::Rejected,
                            kinesis_code: "record_too_large".into(),
                            message: format!(
                                "record of {size} bytes exceeds batching.max_batch_bytes ({})",
                                self.settings.batch.max_bytes
                            ),
                        }),
                    );
                }
            }
            if batch.is_full() {
                reason = FlushReason::Full;
                break;
            }
        }
        if batch.is_empty() {
            return;
        }
        self.metrics
            .batch_flushed(reason, batch.len(), batch.bytes());
        let records = batch.into_items();
        self.in_flight += 1;
        let call = Call {
            metrics: self.metrics.clone(),
            api: self.api.clone(),
            backoff: self.settings.backoff,
            completions: self.completions_tx.clone(),
            retries: Vec::new(),
            shrink_batches: false,
        };
        self.runtime.spawn(call.run(records));
    }

    /// When the loop must wake up even if nothing arrives: the next linger expiry, backoff end
    /// or deadline. Capped so a draining flag set elsewhere is noticed promptly.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_millis(100);
        if let Some(front) = self.ready.front() {
            if self.in_flight < self.settings.max_in_flight_calls {
                // Look at the queue again one arrival gap from now: to see whether the burst
                // is over, or whether a full batch has gathered.
                let gap = self.settings.arrival_gap.max(Duration::from_micros(50));
                wake = wake
                    .min(front.ready_at + self.settings.linger)
                    .min(now.max(self.last_arrival) + gap);
            }
            wake = wake.min(front.deadline);
        }
        for record in &self.backing_off {
            wake = wake.min(record.ready_at).min(record.deadline);
        }
        if let Some(grace) = self.grace_deadline {
            wake = wake.min(grace);
        }
        wake
    }
}

/// One `PutRecords` call and the handling of its results, run as a task on the runtime.
struct Call<K> {
    metrics: Arc<StreamMetrics>,
    api: Arc<K>,
    backoff: Backoff,
    completions: Sender<Completion>,
    /// Filled while handling results; handed back on drop, so the aggregator always gets its
    /// in-flight slot back, even if this task is cancelled by the runtime shutting down.
    retries: Vec<PendingRecord>,
    shrink_batches: bool,
}

impl<K> Drop for Call<K> {
    fn drop(&mut self) {
        let retries = std::mem::take(&mut self.retries);
        // The aggregator outlives its calls; if it is gone there is nobody left to tell.
        let _ = self.completions.send(Completion {
            retries,
            shrink_batches: self.shrink_batches,
        });
    }
}

impl<K: PutRecordsApi> Call<K> {
    async fn run(mut self, mut records: Vec<PendingRecord>) {
        for record in &mut records {
            record.attempts += 1;
        }
        let started = Instant::now();
        let result = {
            let refs: Vec<&Record> = records.iter().map(|r| &r.record).collect();
            self.api.put_records(&self.metrics.stream, refs).await
        };
        let outcome = match &result {
            Ok(entries)
                if entries
                    .iter()
                    .any(|e| matches!(e, EntryResult::Failed { .. })) =>
            {
                "partial"
            }
            Ok(_) => "ok",
            Err(failure) => kinesis_code_label(&failure.code),
        };
        self.metrics
            .put_records_finished(outcome, records.len(), started.elapsed());
        match result {
            Ok(entries) => {
                for (record, entry) in records.into_iter().zip(entries) {
                    match entry {
                        EntryResult::Accepted {
                            shard_id,
                            sequence_number,
                        } => record.finish(
                            &self.metrics,
                            Ok(Accepted {
                                shard_id,
                                sequence_number,
                            }),
                        ),
                        EntryResult::Failed { code, message } => {
                            self.metrics.entry_failed(&code);
                            let retryable = classify_entry_error(&code);
                            let kind = match retryable {
                                Retryability::Retryable => FailureKind::RetriesExhausted,
                                Retryability::Fatal => FailureKind::Rejected,
                            };
                            self.retry_or_fail(record, retryable, kind, code, message);
                        }
                    }
                }
            }
            Err(failure) if failure.code == CallFailure::REQUEST_TOO_LARGE && records.len() > 1 => {
                // Not the records' fault: resend them at once in smaller batches.
                self.shrink_batches = true;
                for mut record in records {
                    record.ready_at = Instant::now();
                    self.retries.push(record);
                }
            }
            Err(failure) => {
                let retryable = classify_call_failure(&failure);
                // No answer, or a 5xx for the whole call: Kinesis is unavailable (503 to the
                // client). Whole-call throttling is a rejection of this load (500, as entries).
                let kinesis_down =
                    failure.is_unreachable() || failure.status.is_some_and(|s| s >= 500);
                let kind = match retryable {
                    Retryability::Fatal => FailureKind::Rejected,
                    Retryability::Retryable if kinesis_down => FailureKind::Unavailable,
                    Retryability::Retryable => FailureKind::RetriesExhausted,
                };
                if retryable == Retryability::Fatal {
                    tracing::warn!(stream = %self.metrics.stream, code = %failure.code, message = %failure.message, records = records.len(), "PutRecords refused; failing the batch's records");
                } else {
                    tracing::debug!(stream = %self.metrics.stream, code = %failure.code, message = %failure.message, records = records.len(), "PutRecords failed; will retry");
                }
                for record in records {
                    self.retry_or_fail(
                        record,
                        retryable,
                        kind,
                        failure.code.clone(),
                        failure.message.clone(),
                    );
                }
            }
        }
    }

    /// Schedules the record for another attempt if that is useful and it can still start before
    /// its deadline; otherwise answers it with the failure.
    fn retry_or_fail(
        &mut self,
        mut record: PendingRecord,
        retryable: Retryability,
        kind: FailureKind,
        code: String,
        message: String,
    ) {
        let failure = RecordFailure {
            kind,
            kinesis_code: code,
            message,
        };
        let ready_at =
            Instant::now() + self.backoff.delay_random(record.attempts.saturating_sub(1));
        if retryable == Retryability::Retryable && ready_at < record.deadline {
            record.ready_at = ready_at;
            record.last_failure = Some(failure);
            self.metrics.record_retried();
            self.retries.push(record);
        } else {
            record.finish(&self.metrics, Err(failure));
        }
    }
}

#[cfg(test)]
mod tests;
