//! One `PutRecords` call, run as a task on the Kinesis runtime: sends a batch, answers each
//! accepted record's waiting handler, and hands the entries worth retrying (only those, never the
//! whole batch) back to the aggregator with their backoff.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::metrics::StreamMetrics;
use super::outcome::{Accepted, FailureKind, RecordFailure, RecordOutcome};
use super::pending::{Completion, PendingRecord, ShardFeedback};
use super::retry::{classify_call_failure, classify_entry_error, Backoff, Retryability};
use super::status::StreamStatus;
use crate::domain::{PartitionKey, Record};
use crate::kinesis::{kinesis_code_label, CallFailure, EntryResult, PutRecordsApi, ShardMap};

/// The entry error code of a shard over its write limit.
const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// One `PutRecords` call and the handling of its results, run as a task on the runtime.
pub(super) struct Call<K> {
    metrics: Arc<StreamMetrics>,
    api: Arc<K>,
    backoff: Backoff,
    completions: Sender<Completion>,
    status: Arc<StreamStatus>,
    /// Filled while handling results; handed back on drop, so the aggregator always gets its
    /// in-flight slot back, even if this task is cancelled by the runtime shutting down.
    retries: Vec<PendingRecord>,
    shrink_batches: bool,
    /// The shard map the batch was assembled under, to check Kinesis' answers against.
    map: Option<Arc<ShardMap>>,
    shards: ShardFeedback,
    /// The stream keeps per-key order: report the keys of answered records.
    ordered: bool,
    released: Vec<PartitionKey>,
}

impl<K> Drop for Call<K> {
    fn drop(&mut self) {
        let retries = std::mem::take(&mut self.retries);
        // The aggregator outlives its calls; if it is gone there is nobody left to tell.
        let _ = self.completions.send(Completion {
            retries,
            shrink_batches: self.shrink_batches,
            shards: std::mem::take(&mut self.shards),
            released: std::mem::take(&mut self.released),
        });
    }
}

impl<K: PutRecordsApi> Call<K> {
    pub(super) fn new(
        metrics: Arc<StreamMetrics>,
        api: Arc<K>,
        backoff: Backoff,
        completions: Sender<Completion>,
        status: Arc<StreamStatus>,
        // The shard map the batch was assembled under, and its generation.
        (map, generation): (Option<Arc<ShardMap>>, u64),
        ordered: bool,
    ) -> Self {
        let lanes = map.as_ref().map_or(1, |m| m.len());
        Self {
            metrics,
            api,
            backoff,
            completions,
            status,
            retries: Vec::new(),
            shrink_batches: false,
            map,
            shards: ShardFeedback {
                generation,
                sent: vec![0; lanes],
                throttled: vec![0; lanes],
                mispredicted: 0,
            },
            ordered,
            released: Vec::new(),
        }
    }

    /// Answers a record for good; on an ordered stream its key's next record may then go.
    fn answer(&mut self, record: PendingRecord, outcome: RecordOutcome) {
        if self.ordered {
            self.released.push(record.record.partition_key.clone());
        }
        record.finish(&self.metrics, outcome);
    }

    /// Counts an answered entry against its lane.
    fn note_entry(&mut self, lane: usize, entry: &EntryResult) {
        if let Some(sent) = self.shards.sent.get_mut(lane) {
            *sent += 1;
        }
        match entry {
            EntryResult::Accepted { shard_id, .. } => {
                let predicted = self.map.as_ref().and_then(|m| m.shard(lane));
                if predicted.is_some_and(|p| p.id != *shard_id) {
                    self.shards.mispredicted += 1;
                }
            }
            EntryResult::Failed { code, .. } if code == THROTTLED => {
                if let Some(throttled) = self.shards.throttled.get_mut(lane) {
                    *throttled += 1;
                }
            }
            EntryResult::Failed { .. } => {}
        }
    }

    pub(super) async fn run(mut self, mut records: Vec<PendingRecord>) {
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
                    self.note_entry(record.lane, &entry);
                    match entry {
                        EntryResult::Accepted {
                            shard_id,
                            sequence_number,
                        } => self.answer(
                            record,
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
                                Retryability::Fatal => self.fatal_kind(&code),
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
                    Retryability::Fatal => self.fatal_kind(&failure.code),
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

    /// The kind of a final refusal; a missing stream also flags the pipeline for retirement.
    fn fatal_kind(&self, code: &str) -> FailureKind {
        if code == CallFailure::STREAM_NOT_FOUND {
            self.status.mark_missing();
            FailureKind::StreamNotFound
        } else {
            FailureKind::Rejected
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
            self.answer(record, Err(failure));
        }
    }
}
