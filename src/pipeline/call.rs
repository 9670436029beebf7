//! One `PutRecords` call, run as a task on the Kinesis runtime: sends a batch, answers each
//! accepted record's waiting handler, and hands the entries worth retrying (only those, never the
//! whole batch) back to the aggregator with their backoff.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::entry::Entry;
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

    /// Counts an answered entry against its lane; true when Kinesis put it on another shard
    /// than the map predicted.
    fn note_entry(&mut self, lane: usize, entry: &EntryResult) -> bool {
        if let Some(sent) = self.shards.sent.get_mut(lane) {
            *sent += 1;
        }
        match entry {
            EntryResult::Accepted { shard_id, .. } => {
                let predicted = self.map.as_ref().and_then(|m| m.shard(lane));
                let mispredicted = predicted.is_some_and(|p| p.id != *shard_id);
                if mispredicted {
                    self.shards.mispredicted += 1;
                }
                mispredicted
            }
            EntryResult::Failed { code, .. } => {
                if code == THROTTLED {
                    if let Some(throttled) = self.shards.throttled.get_mut(lane) {
                        *throttled += 1;
                    }
                }
                false
            }
        }
    }

    pub(super) async fn run(mut self, mut entries: Vec<Entry>) {
        for entry in &mut entries {
            for record in entry.members_mut() {
                record.attempts += 1;
            }
        }
        let started = Instant::now();
        let result = {
            let refs: Vec<&Record> = entries.iter().map(Entry::record).collect();
            self.api.put_records(&self.metrics.stream, refs).await
        };
        let outcome = match &result {
            Ok(results)
                if results
                    .iter()
                    .any(|e| matches!(e, EntryResult::Failed { .. })) =>
            {
                "partial"
            }
            Ok(_) => "ok",
            Err(failure) => kinesis_code_label(&failure.code),
        };
        self.metrics
            .put_records_finished(outcome, entries.len(), started.elapsed());
        match result {
            Ok(results) => {
                let mut written = Written::default();
                for (entry, result) in entries.into_iter().zip(results) {
                    let mispredicted = self.note_entry(entry.lane(), &result);
                    match result {
                        EntryResult::Accepted {
                            shard_id,
                            sequence_number,
                        } => {
                            if mispredicted && matches!(entry, Entry::Aggregated(_)) {
                                // Written by a stale map: some of its records may hash outside
                                // the shard it reached, where a KCL consumer drops them. Send
                                // them again (no aggregating until a new map is loaded).
                                self.resend(entry);
                                continue;
                            }
                            written.add(&entry);
                            self.accepted(entry, shard_id, sequence_number);
                        }
                        EntryResult::Failed { code, message } => {
                            self.metrics.entry_failed(&code);
                            let retryable = classify_entry_error(&code);
                            let kind = match retryable {
                                Retryability::Retryable => FailureKind::RetriesExhausted,
                                Retryability::Fatal => self.fatal_kind(&code),
                            };
                            for record in entry.into_members() {
                                self.retry_or_fail(
                                    record,
                                    retryable,
                                    kind,
                                    code.clone(),
                                    message.clone(),
                                );
                            }
                        }
                    }
                }
                self.metrics.kinesis_records_written(
                    written.kinesis_records,
                    written.payload_units,
                    written.aggregated_bytes,
                );
            }
            Err(failure) if failure.code == CallFailure::REQUEST_TOO_LARGE && entries.len() > 1 => {
                // Not the records' fault: resend them at once in smaller batches.
                self.shrink_batches = true;
                for entry in entries {
                    self.resend(entry);
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
                    tracing::warn!(stream = %self.metrics.stream, code = %failure.code, message = %failure.message, records = entries.len(), "PutRecords refused; failing the batch's records");
                } else {
                    tracing::debug!(stream = %self.metrics.stream, code = %failure.code, message = %failure.message, records = entries.len(), "PutRecords failed; will retry");
                }
                for record in entries.into_iter().flat_map(Entry::into_members) {
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

    /// Answers the records of an accepted entry; those of an aggregate with their index in it.
    fn accepted(&mut self, entry: Entry, shard_id: String, sequence_number: String) {
        match entry {
            Entry::Single(record) => self.answer(
                record,
                Ok(Accepted {
                    shard_id,
                    sequence_number,
                    sub_sequence_number: None,
                }),
            ),
            Entry::Aggregated(aggregate) => {
                for (index, record) in aggregate.members.into_iter().enumerate() {
                    let sub_sequence_number = u32::try_from(index).ok();
                    self.answer(
                        record,
                        Ok(Accepted {
                            shard_id: shard_id.clone(),
                            sequence_number: sequence_number.clone(),
                            sub_sequence_number,
                        }),
                    );
                }
            }
        }
    }

    /// Hands an entry's records back to be sent again at once, not as a failed attempt.
    fn resend(&mut self, entry: Entry) {
        for mut record in entry.into_members() {
            record.ready_at = Instant::now();
            self.retries.push(record);
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

/// What the accepted entries of one call wrote, for the cost metrics.
#[derive(Debug, Default)]
struct Written {
    kinesis_records: u64,
    /// What Kinesis bills: one PUT payload unit per started 25 KiB of each record.
    payload_units: u64,
    /// Bytes of the aggregated records among them.
    aggregated_bytes: u64,
}

impl Written {
    const PAYLOAD_UNIT_BYTES: usize = 25 * 1024;

    fn add(&mut self, entry: &Entry) {
        let size = entry.size();
        self.kinesis_records += 1;
        self.payload_units += size.div_ceil(Self::PAYLOAD_UNIT_BYTES).max(1) as u64;
        if let Entry::Aggregated(_) = entry {
            self.aggregated_bytes += size as u64;
        }
    }
}
