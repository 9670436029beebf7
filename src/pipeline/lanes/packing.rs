//! Packing: what goes to one shard, made into the Kinesis records of a call. On a stream that
//! aggregates, the records waiting in one shard's lane are packed into a KPL aggregated record
//! (`kinesis::aggregation`) up to the byte cap, and the shard's budget is charged one Kinesis
//! record and the aggregate's bytes: that is what Kinesis counts, so a shard at its record
//! limit still moves its full byte rate.
//!
//! Only records of one lane share an aggregate, and lanes are shards of the current map, so an
//! aggregate never spans two shards (a KCL consumer drops user records whose hash key is
//! outside the shard it reads). Without a map, or while it may be stale, nothing is aggregated.
//! The aggregate is routed like its first record (same partition key and explicit hash key),
//! so to the shard of all of them. A record that would not fit the cap even alone goes as it is.
//! Aggregates are never mixed as to explicit hash keys (all members have one, or none has).

use super::{Lanes, ShardBudget};
use crate::domain::Record;
use crate::kinesis::aggregation::EMPTY_LEN;
use crate::pipeline::entry::{Aggregate, Entry};
use crate::pipeline::pending::PendingRecord;

/// Estimated bytes a user record adds to an aggregate beyond its data and partition key:
/// protobuf framing, the key's table entry when new. Only for `within_budget`'s estimate;
/// packing itself measures exactly.
const FRAMING_ESTIMATE: usize = 12;

/// How many of `queue`'s front records (at most `max_records`) the shard's budget lets go now,
/// and their bytes: one Kinesis record each, or when aggregating up to `cap` bytes, one Kinesis
/// record per aggregate (an estimate: the framing of each record is guessed).
pub(super) fn within_budget<'a>(
    queue: impl Iterator<Item = &'a PendingRecord>,
    budget: &ShardBudget,
    max_records: usize,
    aggregate_cap: Option<usize>,
) -> (usize, usize) {
    let mut kinesis_records = budget.records.tokens;
    let mut tokens_bytes = budget.bytes.tokens;
    // The one record `fits` lets past an empty byte bucket (when the bucket is full).
    let mut first_pass = tokens_bytes >= budget.bytes.rate;
    let (mut records, mut bytes) = (0, 0);
    // Bytes in the aggregate being filled; `None` before the first.
    let mut open: Option<usize> = None;
    for record in queue.take(max_records) {
        let cost = match aggregate_cap {
            None => record.size,
            Some(_) => record.size + FRAMING_ESTIMATE,
        };
        let new_kinesis_record = match (aggregate_cap, open) {
            (Some(cap), Some(filled)) => filled + cost > cap,
            _ => true,
        };
        if new_kinesis_record && kinesis_records < 1.0 {
            break;
        }
        if tokens_bytes < cost as f64 && !first_pass {
            break;
        }
        first_pass = false;
        if new_kinesis_record {
            kinesis_records -= 1.0;
            open = Some(EMPTY_LEN);
        }
        open = open.map(|filled| filled + cost);
        tokens_bytes -= cost as f64;
        records += 1;
        bytes += record.size;
    }
    (records, bytes)
}

impl Lanes {
    /// Whether batches are assembled from aggregates now, and their byte cap.
    pub(super) fn aggregating(&self) -> Option<usize> {
        if self.map.is_some() && !self.aggregation_paused {
            self.aggregate_cap
        } else {
            None
        }
    }

    /// Pauses aggregation while the map may be stale; a newly loaded map resumes it.
    pub(in crate::pipeline) fn pause_aggregation(&mut self, paused: bool) {
        self.aggregation_paused = paused;
    }

    /// The next Kinesis record a batch may take now, rotating over the shards (with
    /// `unbound_only`, only those not held back by their budget): one record, or on an
    /// aggregating stream as many of one shard's waiting records as fit one aggregate.
    /// The shard's budget is charged. `None` when no shard with records has budget.
    pub(in crate::pipeline) fn pop_entry(&mut self, unbound_only: bool) -> Option<Entry> {
        let Some(cap) = self.aggregating() else {
            return self.pop_eligible(unbound_only).map(Entry::Single);
        };
        let index = self.next_ready_lane(unbound_only)?;
        // What the shard's byte budget allows; at least the front record, which `fits`.
        let allowance = {
            let lane = &self.lanes[index];
            let front = lane.queue.front()?.size as f64;
            lane.budget
                .as_ref()
                .map_or(f64::INFINITY, |b| b.bytes.tokens.max(front))
        };
        let mut members: Vec<PendingRecord> = Vec::new();
        self.builder.clear();
        while let Some(front) = self.lanes[index].queue.front() {
            let explicit_hash_key = front.record.explicit_hash_key.map(|k| k.to_string());
            let outer_key = members
                .first()
                .map_or(&front.record.partition_key, |first| {
                    &first.record.partition_key
                })
                .byte_len();
            let size = self.builder.size_with(
                front.record.partition_key.as_str(),
                explicit_hash_key.as_deref(),
                front.record.data.len(),
            ) + outer_key;
            // Records with and without explicit hash keys never share an aggregate: the
            // node deaggregation module (aws-kinesis-agg 4.2.8) gives a record without one
            // the table's first entry when the table is not empty.
            let mixes_keys = members.first().is_some_and(|first| {
                first.record.explicit_hash_key.is_some() != explicit_hash_key.is_some()
            });
            if size > cap || mixes_keys || (!members.is_empty() && size as f64 > allowance) {
                break;
            }
            let record = self.take_front(index)?;
            self.builder.push(
                record.record.partition_key.as_str(),
                explicit_hash_key.as_deref(),
                &record.record.data,
            );
            members.push(record);
        }
        let entry = match members.len() {
            // The front record is too large for an aggregate: it goes as it is.
            0 => Entry::Single(self.take_front(index)?),
            1 => {
                self.builder.clear();
                Entry::Single(members.pop()?)
            }
            _ => {
                let first = &members[0].record;
                let record = Record {
                    data: self.builder.take(),
                    partition_key: first.partition_key.clone(),
                    explicit_hash_key: first.explicit_hash_key,
                };
                Entry::Aggregated(Aggregate {
                    size: record.kinesis_size(),
                    record,
                    members,
                })
            }
        };
        if let Some(budget) = &mut self.lanes[index].budget {
            budget.records.tokens -= 1.0;
            budget.bytes.tokens -= entry.size() as f64;
        }
        Some(entry)
    }

    /// Gives back an entry `pop_entry` handed out (its batch was full), with its budget; its
    /// records go back to the front of their lane in their order.
    pub(in crate::pipeline) fn unpop_entry(&mut self, entry: Entry) {
        if let Some(budget) = self
            .lanes
            .get_mut(entry.lane())
            .and_then(|l| l.budget.as_mut())
        {
            budget.records.tokens += 1.0;
            budget.bytes.tokens += entry.size() as f64;
        }
        for record in entry.into_members().into_iter().rev() {
            self.push_front(record);
        }
    }
}
