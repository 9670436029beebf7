//! One stream's delivery from the spool: a cursor over its records in the spool, a window of at
//! most one pipeline budget of them handed to the pipeline, and the settlement of each handed
//! page once its records are answered (done marks, or a resend for those that failed for want
//! of Kinesis).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::{Key, Tasks};
use crate::domain::Record;
use crate::kinesis::kinesis_code_label;
use crate::pipeline::outcome::{FailureKind, RecordOutcome, SubmitError};
use crate::pipeline::registry::{Pipelines, StartError};
use crate::spool::{DeadLetters, EntryId, Spool, SpoolError, SpooledRecord};
use crate::telemetry::{self, SeriesScope};

/// Records one spool read returns at most, so one blocking read stays short.
const PAGE_RECORDS: usize = 2_000;

/// How long the feeder waits before trying again when the pipeline or the spool refused.
const RETRY_MIN: Duration = Duration::from_millis(5);
const RETRY_MAX: Duration = Duration::from_secs(1);

pub(super) struct Feeder {
    pub(super) spool: Spool,
    pub(super) dead_letters: Arc<DeadLetters>,
    pub(super) pipelines: Arc<Pipelines>,
    pub(super) tasks: Arc<Tasks>,
    pub(super) key: Key,
    /// Every record of the stream below it has been handed to the pipeline (or was done).
    pub(super) cursor: EntryId,
    pub(super) stop: watch::Receiver<bool>,
    /// Handed to settlements: set when the spool closes.
    pub(super) closing: watch::Sender<bool>,
    /// `spool.read_delay_ms`: once caught up, how long to let new records gather.
    pub(super) read_delay: Duration,
}

/// Records and bytes handed to the pipeline and not yet settled.
#[derive(Default)]
struct Window {
    records: AtomicUsize,
    bytes: AtomicUsize,
    released: Notify,
}

impl Window {
    fn take(&self, records: usize, bytes: usize) {
        self.records.fetch_add(records, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, records: usize, bytes: usize) {
        self.records.fetch_sub(records, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.released.notify_waiters();
    }
}

/// What the feeder's loop does next.
enum Next {
    Hand(Vec<SpooledRecord>),
    Stop,
}

impl Feeder {
    pub(super) async fn run(mut self) {
        let window = Arc::new(Window::default());
        // Pages whose records failed for want of Kinesis come back here, to go before new ones.
        let (resend_tx, mut resend_rx) = mpsc::unbounded_channel();
        let mut durable = self.spool.watch_durable_end();
        let mut held = Vec::new();
        let mut retry = RETRY_MIN;
        loop {
            let batch = match self
                .next_batch(&mut held, &mut resend_rx, &window, &mut durable)
                .await
            {
                Next::Hand(batch) => batch,
                Next::Stop => break,
            };
            let (region, stream) = &self.key;
            let refused = match self.pipelines.get_or_start(region, stream).await {
                Ok(pipeline) => {
                    let records = handed_over(&batch);
                    match pipeline.submit_spooled(records) {
                        Ok(receivers) => {
                            let bytes = batch_bytes(&batch);
                            window.take(batch.len(), bytes);
                            let settlement = Settlement {
                                pipelines: self.pipelines.clone(),
                                series: pipeline.series().clone(),
                                spool: self.spool.clone(),
                                dead_letters: self.dead_letters.clone(),
                                key: self.key.clone(),
                                window: window.clone(),
                                resend: resend_tx.clone(),
                                closing: self.closing.subscribe(),
                            };
                            self.tasks.spawn(settlement.settle(receivers, batch));
                            retry = RETRY_MIN;
                            continue;
                        }
                        Err(SubmitError::QueueFull | SubmitError::HotShard(_)) => batch,
                        Err(SubmitError::Closed) => break,
                    }
                }
                Err(StartError::ShuttingDown) => break,
                Err(StartError::StreamNotFound) => {
                    let ended = Ended {
                        spool: &self.spool,
                        dead_letters: &self.dead_letters,
                        key: &self.key,
                        series: &telemetry::stream_series(stream.as_str()),
                    };
                    ended
                        .finally_failed(batch, "ResourceNotFoundException")
                        .await;
                    continue;
                }
                // Kinesis cannot answer and never confirmed the stream: nothing could be sent
                // anyway; the records wait until Kinesis answers (then it confirms the stream,
                // or says it does not exist and they end in failed.ndjson).
                Err(StartError::Unconfirmed) => {
                    tracing::debug!(region = %region, stream = %stream, "spool: Kinesis cannot confirm the stream yet; its records wait in the spool");
                    batch
                }
                Err(error) => {
                    tracing::warn!(region = %region, stream = %stream, %error, "spool: no pipeline for the stream yet; its records wait in the spool");
                    batch
                }
            };
            held = refused;
            if self.pause(retry).await {
                break;
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
        // Whatever was read and not handed over stays in the spool: the next start sends it.
        tracing::debug!(region = %self.key.0, stream = %self.key.1, "spool: delivery of the stream stopped");
    }

    /// The next records to hand to the pipeline: held ones, then resends, then a page read from
    /// the cursor within the window's room; waits while there is nothing or no room.
    async fn next_batch(
        &mut self,
        held: &mut Vec<SpooledRecord>,
        resend: &mut mpsc::UnboundedReceiver<Vec<SpooledRecord>>,
        window: &Window,
        durable: &mut watch::Receiver<EntryId>,
    ) -> Next {
        let mut retry = RETRY_MIN;
        loop {
            if *self.stop.borrow() {
                return Next::Stop;
            }
            if !held.is_empty() {
                return Next::Hand(std::mem::take(held));
            }
            if let Ok(again) = resend.try_recv() {
                count_resent(&self.key, again.len());
                return Next::Hand(again);
            }
            let released = window.released.notified();
            let (max_records, max_bytes) = self.pipelines.queue_capacity();
            let room_records = max_records.saturating_sub(window.records.load(Ordering::Acquire));
            let room_bytes = max_bytes.saturating_sub(window.bytes.load(Ordering::Acquire));
            // Below an eighth of the budget, wait for a page to settle: reading a few records
            // at a time would cost a read per handful.
            if room_records < max_records.div_ceil(8) || room_bytes < max_bytes / 8 {
                tokio::select! {
                    () = released => {}
                    again = resend.recv() => if let Some(again) = again {
                        count_resent(&self.key, again.len());
                        return Next::Hand(again);
                    },
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            // Whatever is fsynced from here on wakes the wait below.
            durable.borrow_and_update();
            let spool = self.spool.clone();
            let (region, stream) = self.key.clone();
            let cursor = self.cursor;
            let page = tokio::task::spawn_blocking(move || {
                spool.read_pending_for(
                    &region,
                    &stream,
                    cursor,
                    room_records.min(PAGE_RECORDS),
                    room_bytes,
                )
            })
            .await
            .unwrap_or(Err(SpoolError::Closed));
            match page {
                Ok(page) => {
                    self.cursor = page.next;
                    if !page.records.is_empty() {
                        return Next::Hand(page.records);
                    }
                    if page.caught_up {
                        tokio::select! {
                            _ = durable.changed() => {
                                tokio::time::sleep(self.read_delay).await;
                            }
                            again = resend.recv() => if let Some(again) = again {
                                count_resent(&self.key, again.len());
                                return Next::Hand(again);
                            },
                            _ = self.stop.changed() => {}
                        }
                    }
                }
                Err(SpoolError::Closed) => return Next::Stop,
                Err(error) => {
                    tracing::error!(region = %self.key.0, stream = %self.key.1, %error, "spool: reading records back failed; trying again");
                    if self.pause(retry).await {
                        return Next::Stop;
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sleeps `delay`; true when shutdown began meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = self.stop.changed() => {}
        }
        *self.stop.borrow()
    }
}

/// Settles one handed page as its answers arrive.
struct Settlement {
    /// Told when Kinesis accepts a record: the stream exists (confirmed).
    pipelines: Arc<Pipelines>,
    /// The stream's series scope, held until the page is settled so its counts are seen.
    series: Arc<SeriesScope>,
    spool: Spool,
    dead_letters: Arc<DeadLetters>,
    key: Key,
    window: Arc<Window>,
    resend: mpsc::UnboundedSender<Vec<SpooledRecord>>,
    /// Turns true when the spool closes: stop waiting.
    closing: watch::Receiver<bool>,
}

impl Settlement {
    /// Marks `done` (accepted by Kinesis) done in the spool and counts them.
    fn mark_delivered(&self, done: &mut Vec<EntryId>) {
        if done.is_empty() {
            return;
        }
        let (region, stream) = (self.key.0.as_str(), self.key.1.as_str());
        self.pipelines.note_confirmed(&self.key);
        self.series
            .register(|| metrics::counter!(telemetry::SPOOL_DELIVERED, "region" => region.to_owned(), "stream" => stream.to_owned()))
            .increment(done.len() as u64);
        self.spool.mark_done_many(done.drain(..));
    }

    async fn settle(
        mut self,
        receivers: Vec<oneshot::Receiver<RecordOutcome>>,
        batch: Vec<SpooledRecord>,
    ) {
        let (count, bytes) = (batch.len(), batch_bytes(&batch));
        let mut done = Vec::with_capacity(count);
        let mut again = Vec::new();
        // Final failures by reason: their ids, logged together.
        let mut failed: BTreeMap<String, Vec<SpooledRecord>> = BTreeMap::new();
        for (mut receiver, spooled) in receivers.into_iter().zip(batch) {
            let outcome = match receiver.try_recv() {
                Ok(outcome) => Ok(outcome),
                Err(oneshot::error::TryRecvError::Empty) => {
                    // About to wait: what is accepted so far is marked done now, so a crash
                    // meanwhile sends as little as possible twice.
                    self.mark_delivered(&mut done);
                    tokio::select! {
                        outcome = &mut receiver => outcome,
                        // The spool is closing: the records not answered yet stay pending in
                        // it, for the next start.
                        _ = self.closing.wait_for(|closing| *closing) => break,
                    }
                }
                Err(oneshot::error::TryRecvError::Closed) => continue,
            };
            match outcome {
                Ok(Ok(_)) => done.push(spooled.id),
                Ok(Err(failure)) => match failure.kind {
                    FailureKind::Rejected | FailureKind::Invalid | FailureKind::StreamNotFound => {
                        failed
                            .entry(failure.kinesis_code)
                            .or_default()
                            .push(spooled);
                    }
                    // For want of Kinesis: sent again, however long it takes.
                    FailureKind::RetriesExhausted | FailureKind::Unavailable => {
                        again.push(spooled);
                    }
                    // The pipeline drained for shutdown without sending it: it stays in the
                    // spool for the next start.
                    FailureKind::ShuttingDown => {}
                },
                // Answered by nobody: the pipeline was torn down; it stays in the spool.
                Err(_) => {}
            }
        }
        self.mark_delivered(&mut done);
        let ended = Ended {
            spool: &self.spool,
            dead_letters: &self.dead_letters,
            key: &self.key,
            series: &self.series,
        };
        for (code, records) in failed {
            ended.finally_failed(records, &code).await;
        }
        self.window.release(count, bytes);
        if !again.is_empty() {
            // The feeder has stopped (shutdown): these stay in the spool.
            let _ = self.resend.send(again);
        }
    }
}

/// What ending records for good needs.
struct Ended<'a> {
    spool: &'a Spool,
    dead_letters: &'a Arc<DeadLetters>,
    key: &'a Key,
    /// Where the stream's failure count is registered.
    series: &'a SeriesScope,
}

impl Ended<'_> {
    /// Ends records Kinesis will never take (a deleted stream, a refusal for good): kept in
    /// the spool's `failed.ndjson` (within its bound), logged with their reason and ids,
    /// counted, and marked done so the spool can free their segment.
    /// `code` is Kinesis' error code, kept whole in the file and the log; the metric's `reason`
    /// label is its bounded form.
    async fn finally_failed(&self, records: Vec<SpooledRecord>, code: &str) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let (first, last, count) = (first.id.get(), last.id.get(), records.len());
        let dead_letters = self.dead_letters.clone();
        let kept_code = code.to_owned();
        let (ids, kept) = tokio::task::spawn_blocking(move || {
            let kept = dead_letters.keep(&records, &kept_code);
            (records.into_iter().map(|r| r.id).collect::<Vec<_>>(), kept)
        })
        .await
        .unwrap_or_default();
        let (region, stream) = self.key;
        tracing::warn!(
            %region,
            %stream,
            code,
            records = count,
            kept_in = %self.dead_letters.path().display(),
            kept,
            first_entry = first,
            last_entry = last,
            "spool: Kinesis finally refused records acknowledged on disk; they leave the spool (see docs/how-it-works.md, disk acknowledgement)"
        );
        self.series
            .register(|| metrics::counter!(telemetry::SPOOL_FAILED, "region" => region.as_str().to_owned(), "stream" => stream.as_str().to_owned(), "reason" => kinesis_code_label(code)))
            .increment(count as u64);
        // A failed blocking task (a panic) leaves no ids: those records stay and are retried.
        self.spool.mark_done_many(ids);
    }
}

/// Counted in the stream's scope: resends come while its pipeline lives, so they show.
fn count_resent(key: &Key, records: usize) {
    telemetry::stream_series(key.1.as_str())
        .register(|| metrics::counter!(telemetry::SPOOL_RESENT, "region" => key.0.as_str().to_owned(), "stream" => key.1.as_str().to_owned()))
        .increment(records as u64);
}

/// The records of `batch` for the pipeline, each with the moment its client handed it in
/// (on this process's clock), so the acknowledgement latency counts the time in the spool.
fn handed_over(batch: &[SpooledRecord]) -> Vec<(Record, Instant)> {
    let (now, wall_now) = (Instant::now(), SystemTime::now());
    batch
        .iter()
        .map(|spooled| {
            let age = wall_now
                .duration_since(spooled.appended_at)
                .unwrap_or_default();
            let received_at = now.checked_sub(age).unwrap_or(now);
            (spooled.record.clone(), received_at)
        })
        .collect()
}

fn batch_bytes(batch: &[SpooledRecord]) -> usize {
    batch.iter().map(|r| r.record.kinesis_size()).sum()
}
