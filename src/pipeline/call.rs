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
use crate::domain::{truncate_for_message, PartitionKey, Record};
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
                started_at: Some(Instant::now()),
                sent: vec![0; lanes],
                throttled: vec![0; lanes],
                accepted_bytes: vec![0; lanes],
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
    fn note_entry(&mut self, lane: usize, size: usize, entry: &EntryResult) -> bool {
        if let Some(sent) = self.shards.sent.get_mut(lane) {
            *sent += 1;
        }
        match entry {
            EntryResult::Accepted { shard_id, .. } => {
                if let Some(bytes) = self.shards.accepted_bytes.get_mut(lane) {
                    *bytes += size as u64;
                }
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

    /// Sends the batch. A call Kinesis refuses as invalid is split and its parts sent again
    /// until each offending record is alone (`isolate`), so one client's bad record never fails
    /// another's.
    pub(super) async fn run(mut self, entries: Vec<Entry>) {
        // Batches still to send, the next one last: a depth-first bisection. Every split halves
        // a batch (an aggregate is unpacked into its members once), so a call of n records
        // makes at most 2n - 1 calls and each record is in at most log2(n) + 2 of them: the
        // work is bounded by construction, however often Kinesis refuses.
        let mut to_send = vec![entries];
        let mut splits = 0usize;
        while let Some(batch) = to_send.pop() {
            if batch.is_empty() {
                continue;
            }
            if splits > 0 {
                self.metrics.split_call_started();
            }
            let Some((refused, failure)) = self.send(batch).await else {
                continue;
            };
            match isolate(refused) {
                Isolated::Split(left, right) => {
                    if splits == 0 {
                        self.metrics.refused_call_split();
                    }
                    splits += 1;
                    to_send.push(right);
                    to_send.push(left);
                }
                Isolated::Alone(record) => {
                    tracing::warn!(
                        stream = %self.metrics.stream,
                        code = %failure.code,
                        kinesis_message = %truncate_for_message(&failure.message),
                        partition_key_utf16_units = record.record.partition_key.utf16_len(),
                        partition_key_bytes = record.record.partition_key.byte_len(),
                        data_bytes = record.record.data.len(),
                        "Kinesis refused a record as invalid; failing it alone, the other records of its call go on"
                    );
                    self.answer(
                        *record,
                        Err(RecordFailure {
                            kind: FailureKind::Invalid,
                            kinesis_code: failure.code.clone(),
                            message: failure.message.clone(),
                        }),
                    );
                }
            }
        }
    }

    /// One `PutRecords` call and the handling of its answer. Gives the entries back with the
    /// failure when Kinesis refused the call as invalid: some record in it is (`isolate`).
    async fn send(&mut self, mut entries: Vec<Entry>) -> Option<(Vec<Entry>, CallFailure)> {
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
            Ok(results) => self.answered(entries, results),
            Err(failure) if failure.code == CallFailure::REQUEST_TOO_LARGE && entries.len() > 1 => {
                // Not the records' fault: resend them at once in smaller batches.
                self.shrink_batches = true;
                for entry in entries {
                    self.resend(entry);
                }
            }
            Err(failure) if refused_as_invalid(&failure, &entries) => {
                return Some((entries, failure));
            }
            Err(failure) => self.call_failed(entries, failure),
        }
        None
    }

    /// Handles a call Kinesis answered: each entry accepted, or failed on its own.
    fn answered(&mut self, entries: Vec<Entry>, results: Vec<EntryResult>) {
        let mut written = Written::default();
        for (entry, result) in entries.into_iter().zip(results) {
            let mispredicted = self.note_entry(entry.lane(), entry.size(), &result);
            match result {
                EntryResult::Accepted {
                    shard_id,
                    sequence_number,
                } => {
                    if mispredicted && matches!(entry, Entry::Aggregated(_)) {
                        // Written by a stale map: some of its records may hash outside the
                        // shard it reached, where a KCL consumer drops them. Send them again
                        // (no aggregating until a new map is loaded).
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
                        self.retry_or_fail(record, retryable, kind, code.clone(), message.clone());
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

    /// Handles a whole call that failed for another reason than its records: retried, or
    /// failed for every record when retrying cannot help (a missing stream, access denied).
    fn call_failed(&mut self, entries: Vec<Entry>, failure: CallFailure) {
        let retryable = classify_call_failure(&failure);
        // No answer, or a 5xx for the whole call: Kinesis is unavailable (503 to the client).
        // Whole-call throttling is a rejection of this load (500, as entries).
        let kinesis_down = failure.is_unreachable() || failure.status.is_some_and(|s| s >= 500);
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

/// Whether Kinesis refused the whole call because of what some record in it holds: a
/// validation error, or a request too large that is a single (aggregated) record. Such a call
/// must not fail its other records (`isolate`).
fn refused_as_invalid(failure: &CallFailure, entries: &[Entry]) -> bool {
    matches!(
        failure.code.as_str(),
        CallFailure::VALIDATION | CallFailure::INVALID_ARGUMENT
    ) || (failure.code == CallFailure::REQUEST_TOO_LARGE
        && matches!(entries, [Entry::Aggregated(a)] if a.members.len() > 1))
}

/// The next step of isolating the records of a call refused as invalid.
#[derive(Debug)]
enum Isolated {
    /// Two smaller calls to send.
    Split(Vec<Entry>, Vec<Entry>),
    /// The record the refusal was about: it fails alone.
    Alone(Box<PendingRecord>),
}

/// Splits a refused call: in halves while it has several entries; a lone aggregate into its
/// records (each sent as a Kinesis record of its own, readable by every consumer); a lone
/// record is the offender.
fn isolate(mut entries: Vec<Entry>) -> Isolated {
    if entries.len() > 1 {
        let right = entries.split_off(entries.len() / 2);
        return Isolated::Split(entries, right);
    }
    let Some(entry) = entries.pop() else {
        return Isolated::Split(Vec::new(), Vec::new());
    };
    let mut members: Vec<Entry> = entry
        .into_members()
        .into_iter()
        .map(Entry::Single)
        .collect();
    if members.len() > 1 {
        let right = members.split_off(members.len() / 2);
        return Isolated::Split(members, right);
    }
    match members.pop() {
        Some(Entry::Single(record)) => Isolated::Alone(Box::new(record)),
        _ => Isolated::Split(Vec::new(), Vec::new()),
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
