//! The aggregator of one pipeline: the loop, on its own thread, that takes records from the
//! queue, decides when a batch goes out, starts the `PutRecords` calls on the runtime (bounded
//! in flight), puts failed entries back after their backoff and fails records at their deadline.
//!
//! When to flush: a batch goes out when it is full (records or bytes), when no call is in flight
//! (clients are waiting for their acknowledgement, so holding records back while the pipe is
//! idle only adds latency), or when its oldest record has waited `linger` while other calls are
//! in flight (so batches grow under load, when batching pays, and never wait long). Only
//! records whose shard has write budget count (`lanes`): the others wait in their lane, and the
//! loop wakes when their shard's budget refills. The shard map arrives from `shard_refresh`;
//! calls report throttled shards (their rate goes down) and wrong predictions (the map is
//! reloaded).
//!
//! It owns all its state, so no locks; a blocking receiver must not sit on a tokio worker, which
//! is why this is a thread and not a task.
//!
//! Draining: records go out at once; what is not in Kinesis at the end of the grace period is
//! failed `ShuttingDown`. A disk stream's records are in the spool, which the next start sends:
//! it gives them back at once and waits at most `DISK_DRAIN_WAIT` for its calls in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tokio::sync::Notify;

use super::admission::Budget;
use super::batch::{Batch, FlushReason, PushError};
use super::call::Call;
use super::key_order::KeyOrder;
use super::lanes::{Eligible, Lanes};
use super::metrics::{ShardSeries, StreamMetrics};
use super::outcome::{FailureKind, RecordFailure};
use super::pending::{Completion, PendingRecord, Submission};
use super::settings::PipelineSettings;
use super::shard_backlog::ShardBacklogs;
use super::shard_refresh::MapUpdate;
use super::status::StreamStatus;
use crate::domain::PartitionKey;
use crate::kinesis::PutRecordsApi;

mod deadlines;
mod feedback;
mod pace;

/// Long enough for a healthy Kinesis to answer (its records are marked done, not sent twice),
/// short enough that an unreachable one does not hold the shutdown.
const DISK_DRAIN_WAIT: Duration = Duration::from_secs(1);

/// The aggregator's state; owned by its thread, so no locks.
pub(super) struct Aggregator<K> {
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
    /// Follows the shard map, so handlers bound each shard's share of the budget.
    shard_backlogs: Arc<ShardBacklogs>,
    /// Shared with the handle; calls flag a missing stream here.
    status: Arc<StreamStatus>,
    /// Records waiting to be sent, per shard, oldest first (retries go to the front).
    lanes: Lanes,
    /// On an ordered stream, the records held back behind an older one of their key.
    key_order: Option<KeyOrder>,
    /// Shard maps from the refresher; `None` once it has stopped.
    maps: Option<Receiver<MapUpdate>>,
    /// Asks the refresher for an early reload.
    map_wanted: Arc<Notify>,
    /// The current map's per-shard counters, by lane.
    shard_series: ShardSeries,
    /// The "no shard map" warning was logged (once per pipeline).
    map_warned: bool,
    /// When the per-shard gauges were last set (at most once a second).
    shard_gauges_at: Instant,
    /// Records waiting out their backoff before a retry.
    backing_off: Vec<PendingRecord>,
    in_flight: usize,
    /// How long Kinesis takes to answer a call (moving average; `None` before the first):
    /// when it is longer than the linger, more calls may be in flight (`pace`).
    call_latency: Option<Duration>,
    /// When the latest call that could take from every shard started: on a budget-bound
    /// stream the next one waits until the shards have gathered `shard_gather` of budget since.
    last_call_at: Instant,
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
    /// Every record is also in the disk spool (`streams.ack_on_disk`): a drain leaves it there.
    on_disk: bool,
}

impl<K: PutRecordsApi> Aggregator<K> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        metrics: Arc<StreamMetrics>,
        api: Arc<K>,
        settings: PipelineSettings,
        queue: Receiver<Submission>,
        (completions_tx, completions): (Sender<Completion>, Receiver<Completion>),
        runtime: tokio::runtime::Handle,
        draining: Arc<AtomicBool>,
        (budget, shard_backlogs): (Arc<Budget>, Arc<ShardBacklogs>),
        status: Arc<StreamStatus>,
        (maps, map_wanted): (Receiver<MapUpdate>, Arc<Notify>),
        on_disk: bool,
    ) -> Self {
        let lanes = Lanes::new(
            settings.shard_limits,
            settings.shard_gather,
            settings.aggregate_max_bytes,
        );
        let key_order = settings.ordered.then(KeyOrder::default);
        Self {
            metrics,
            api,
            settings,
            queue,
            completions,
            completions_tx,
            runtime,
            draining,
            budget,
            shard_backlogs,
            status,
            lanes,
            key_order,
            maps: Some(maps),
            map_wanted,
            map_warned: false,
            shard_gauges_at: Instant::now(),
            shard_series: ShardSeries::default(),
            backing_off: Vec::new(),
            in_flight: 0,
            call_latency: None,
            last_call_at: Instant::now(),
            last_arrival: Instant::now(),
            last_completion: Instant::now(),
            queue_closed: false,
            grace_deadline: None,
            on_disk,
        }
    }

    pub(super) fn run(mut self) {
        tracing::debug!(stream = %self.metrics.stream, "aggregator started");
        loop {
            let now = Instant::now();
            let eligible = self.lanes.eligible(now, self.settings.batch.max_records);
            let wait = self
                .next_wakeup(now, eligible)
                .saturating_duration_since(now);
            // Woken by a new record only while nothing could be sent. Otherwise the queue is
            // drained on the timers (arrival gap, linger) and on completions, so a busy stream
            // costs no thread wake-up per record. Once closed, the queue would report
            // "disconnected" at once on every turn.
            let queue = if self.queue_closed || eligible.records > 0 {
                crossbeam_channel::never()
            } else {
                self.queue.clone()
            };
            let maps = self.maps.clone().unwrap_or_else(crossbeam_channel::never);
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
                // A shard map was loaded (or could not be).
                recv(maps) -> update => match update {
                    Ok(update) => self.apply_map(update),
                    Err(_) => self.maps = None,
                },
                // An arrival-gap, linger, budget, backoff or deadline timer is due.
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
                let wait = if self.on_disk {
                    DISK_DRAIN_WAIT
                } else {
                    Duration::MAX
                };
                self.grace_deadline = Some(now + self.settings.shutdown_grace.min(wait));
            }
            if self.on_disk && self.grace_deadline.is_some() {
                let records = self.give_up_waiting();
                if records > 0 {
                    tracing::info!(stream = %self.metrics.stream, records, "shutdown: records acknowledged on disk left in the spool for the next start");
                }
            } else {
                self.promote_due_retries(now);
                self.expire(now);
                self.flush_what_is_due(now);
            }
            let (records, bytes) = self.budget.depth();
            self.metrics.queue_depth(records, bytes);
            if now.saturating_duration_since(self.shard_gauges_at) >= Duration::from_secs(1) {
                self.shard_gauges_at = now;
                self.metrics.shard_gauges(&self.lanes.snapshot());
            }
            // A disk stream leaves the calls still out after its wait: their records stay
            // pending in the spool, and their answers (if any come) go nowhere.
            let calls_done = self.in_flight == 0
                || (self.on_disk && self.grace_deadline.is_some_and(|g| now >= g));
            if self.queue_closed
                && self.lanes.is_empty()
                && self.backing_off.is_empty()
                && calls_done
            {
                if self.in_flight > 0 {
                    tracing::info!(stream = %self.metrics.stream, calls = self.in_flight, "shutdown: calls still in flight left behind; their records stay in the spool");
                }
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
        let record = match &mut self.key_order {
            Some(order) => order.admit(record),
            None => Some(record),
        };
        if let Some(record) = record {
            self.lanes.push_back(record);
        }
    }

    /// A record of an ordered stream was answered for good: the next of its key may go.
    fn release(&mut self, key: &PartitionKey) {
        if let Some(next) = self.key_order.as_mut().and_then(|o| o.release(key)) {
            self.lanes.push_back(next);
        }
    }

    /// Fails a record that was out (in a lane or backing off) at its deadline.
    fn complete(&mut self, completion: Completion) {
        self.in_flight -= 1;
        let now = Instant::now();
        self.last_completion = now;
        self.note_latency(completion.shards.started_at, now);
        self.backing_off.extend(completion.retries);
        for key in &completion.released {
            self.release(key);
        }
        if completion.shrink_batches {
            self.shrink_batches();
        }
        self.follow_shard_feedback(completion.shards, now);
    }

    fn flush_what_is_due(&mut self, now: Instant) {
        while self.in_flight < self.max_in_flight() && !self.lanes.is_empty() {
            let eligible = self.lanes.eligible(now, self.settings.batch.max_records);
            let paced = self.paced(now, &eligible);
            let eligible = if paced {
                eligible.unbound_only()
            } else {
                eligible
            };
            if eligible.records == 0 {
                break;
            }
            let full = eligible.records >= self.settings.batch.max_records
                || eligible.bytes >= self.settings.batch.max_bytes;
            let closing = self.grace_deadline.is_some();
            let lingered = eligible
                .oldest_ready_at
                .is_some_and(|t| now.saturating_duration_since(t) >= self.settings.linger);
            // Nothing in flight and the burst of arrivals is over (counting the clients the
            // last call just answered as part of it): waiting longer would only add latency.
            // Not between two calls of a budget-bound stream's cadence: the next one is at
            // most `shard_gather` away, and the shards' budgets flip between held back and not
            // as their records come and go, which would make a call of each flip.
            let quiet_since = self.last_arrival.max(self.last_completion);
            let idle = self.in_flight == 0
                && !paced
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
            if !self.start_call(fallback_reason, paced) {
                // Nothing could be taken after all: wait for the next turn rather than spin.
                break;
            }
        }
    }

    /// Takes the next batch from the lanes (only shards with budget, rotating over them; with
    /// `paced`, only shards not held back by their budget) and sends it on the runtime. False
    /// when there was nothing to send.
    fn start_call(&mut self, fallback_reason: FlushReason, paced: bool) -> bool {
        let mut batch = Batch::new(self.settings.batch);
        let mut reason = fallback_reason;
        while let Some(entry) = self.lanes.pop_entry(paced) {
            let size = entry.size();
            match batch.try_push(entry, size) {
                Ok(()) => {}
                Err(PushError::Full(entry)) => {
                    reason = FlushReason::Bytes;
                    self.lanes.unpop_entry(entry);
                    break;
                }
                Err(PushError::TooLarge(entry)) => {
                    // Handlers check the stream's record limit, and aggregates are capped
                    // below the batch cap; this only triggers when the batch cap is set below
                    // the record limit. Fail it alone rather than poison a batch.
                    for record in entry.into_members() {
                        let key = record.record.partition_key.clone();
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
                        self.release(&key);
                    }
                }
            }
            if batch.is_full() {
                reason = FlushReason::Full;
                break;
            }
        }
        if batch.is_empty() {
            return false;
        }
        self.metrics
            .batch_flushed(reason, batch.len(), batch.bytes());
        let entries = batch.into_items();
        self.in_flight += 1;
        if !paced {
            self.last_call_at = Instant::now();
            self.lanes.new_cadence();
        }
        let call = Call::new(
            self.metrics.clone(),
            self.api.clone(),
            self.settings.backoff,
            self.completions_tx.clone(),
            self.status.clone(),
            (self.lanes.map().cloned(), self.lanes.generation()),
            self.key_order.is_some(),
        );
        self.runtime.spawn(call.run(entries));
        true
    }

    /// When the loop must wake up even if nothing arrives: the next linger expiry, shard budget
    /// refill, backoff end or deadline. Capped so a draining flag set elsewhere is noticed
    /// promptly.
    fn next_wakeup(&self, now: Instant, eligible: Eligible) -> Instant {
        let mut wake = now + Duration::from_millis(100);
        if !self.lanes.is_empty() && self.in_flight < self.max_in_flight() {
            let paced = self.paced(now, &eligible);
            let eligible = if paced {
                // The held-back shards' next call is due at the cadence.
                wake = wake.min(self.last_call_at + self.settings.shard_gather);
                eligible.unbound_only()
            } else {
                eligible
            };
            if let (true, Some(oldest)) = (paced, eligible.oldest_ready_at) {
                // Meanwhile the others go at their linger (no idle flush).
                wake = wake.min(oldest + self.settings.linger);
            } else if let Some(oldest) = eligible.oldest_ready_at {
                // Look at the queue again one arrival gap from now: to see whether the burst
                // is over, or whether a full batch has gathered.
                let gap = self.settings.arrival_gap.max(Duration::from_micros(50));
                wake = wake
                    .min(oldest + self.settings.linger)
                    .min(now.max(self.last_arrival) + gap);
            } else if let Some(refill) = self.lanes.next_budget_at(now) {
                wake = wake.min(refill);
            }
        }
        if let Some(deadline) = self.lanes.earliest_deadline() {
            wake = wake.min(deadline);
        }
        if let Some(deadline) = self
            .key_order
            .as_ref()
            .and_then(KeyOrder::earliest_deadline)
        {
            wake = wake.min(deadline);
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
