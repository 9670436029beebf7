//! The records waiting to be sent, one lane per shard, each lane with its own write budget, so
//! a batch takes records only from shards that can take them now and one hot shard never holds
//! back the others.
//!
//! Without a shard map (not loaded yet, or `ListShards` not allowed) there is one lane without
//! a budget: exactly the shard-blind behaviour of a plain queue.
//!
//! Budgets are token buckets of records and bytes per second per shard (Kinesis: 1,000 and
//! 1 MiB), written here rather than with `governor` because the rate must change at run time
//! (adaptive, below) and batch assembly must know how many records a shard can take *before*
//! taking them; governor's quotas are fixed at construction and it has no way to peek.
//!
//! Adaptive rate (AIMD, as TCP): a shard whose entries Kinesis throttles gets its rate
//! multiplied by one minus the share throttled, at least by `decrease_factor` (at most once
//! per `decrease_interval`, so one throttled batch
//! counts once), never below `min_share` of the limit; after `quiet_period` without throttling
//! it rises by `increase_step` of the limit every `increase_interval`, up to the limit. Replicas
//! sharing a stream each back off when together they exceed a shard, and converge on a fair
//! share of it without talking to each other.
//!
//! Gathering: a shard whose records outrun its budget would otherwise send a record or two at
//! every refill (a token per millisecond at 1,000 records/s), each in a call of its own. So a
//! shard held back by its budget counts as ready only once it has gathered `gather` (the
//! `shards.gather_ms`) worth of budget, or enough for everything it holds; its records still join any call
//! that goes out meanwhile. At 1,000 records/s and 10 ms that is 10 records per shard and call
//! instead of 1–2, at the cost of at most `gather` more wait for records that were waiting
//! anyway. And while any shard is held back (the stream is budget-bound), the aggregator keeps
//! calls that take from held-back shards to one per `gather` (`Eligible::budget_bound`), each
//! with what every shard has gathered since the last, rather than a call whenever one shard
//! is ready: shards that are not held back (`Eligible::unbound`) meanwhile still get calls of
//! their own, so a hot shard does not slow the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pending::PendingRecord;
use crate::kinesis::aggregation::AggregateBuilder;
use crate::kinesis::ShardMap;

mod budget;
mod packing;
mod queue;

pub(super) use budget::CallFeedback;
use budget::ShardBudget;
pub use budget::ShardLimits;

use queue::LaneQueue;

struct Lane {
    queue: LaneQueue,
    bytes: usize,
    /// `None`: no limit (no shard map).
    budget: Option<ShardBudget>,
    /// Since the latest call of the gathering cadence (`new_cadence`), records have waited
    /// here that the budget did not let go yet.
    held_back: bool,
    /// The same over the cadence's period before. A lane counts as budget-bound (`bound`)
    /// until a whole period passes without it being held back: a lane whose few records its
    /// budget covers for a moment (right after a call of the cadence took its backlog) is
    /// still a budget-bound lane, and sending its records apart from the cadence would make a
    /// call of each such moment.
    was_held_back: bool,
}

impl Lane {
    fn new(budget: Option<ShardBudget>) -> Self {
        Self {
            queue: LaneQueue::default(),
            bytes: 0,
            budget,
            held_back: false,
            was_held_back: false,
        }
    }

    fn bound(&self) -> bool {
        self.held_back || self.was_held_back
    }
}

/// What the lanes can send right now.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Eligible {
    pub records: usize,
    pub bytes: usize,
    /// When the longest-waiting record that can go now became ready.
    pub oldest_ready_at: Option<Instant>,
    /// Some shard holds records its budget does not let go now: the stream is budget-bound,
    /// and calls for such shards keep to the gathering cadence (`Aggregator::flush_what_is_due`).
    pub budget_bound: bool,
    /// Of the above, what the shards not held back by their budget can send (all they hold).
    pub unbound: Ready,
}

/// Records that can go now, from some of the lanes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ready {
    pub records: usize,
    pub bytes: usize,
    pub oldest_ready_at: Option<Instant>,
}

impl Ready {
    fn add(&mut self, records: usize, bytes: usize, ready_at: Instant) {
        self.records += records;
        self.bytes += bytes;
        self.oldest_ready_at = Some(self.oldest_ready_at.map_or(ready_at, |t| t.min(ready_at)));
    }
}

impl Eligible {
    /// Only what the shards not held back by their budget can send: between two calls of the
    /// gathering cadence, the held-back shards keep gathering.
    pub(super) fn unbound_only(self) -> Eligible {
        Eligible {
            records: self.unbound.records,
            bytes: self.unbound.bytes,
            oldest_ready_at: self.unbound.oldest_ready_at,
            ..self
        }
    }
}

/// The lanes of one pipeline and the map they follow.
pub(super) struct Lanes {
    lanes: Vec<Lane>,
    map: Option<Arc<ShardMap>>,
    /// Bumped at every map change, so feedback about lanes of an older map is ignored.
    generation: u64,
    limits: ShardLimits,
    /// How much budget (in time) a held-back shard gathers before it counts as ready.
    gather: Duration,
    /// Pack records into KPL aggregates of at most this many bytes (`None`: never).
    aggregate_cap: Option<usize>,
    /// Set while the map may be stale (Kinesis contradicted a prediction): no aggregating
    /// until a map is loaded again, so no aggregate can span two shards.
    aggregation_paused: bool,
    /// Reused for every aggregate, so packing allocates only the records it makes.
    builder: AggregateBuilder,
    /// The lane the next batch starts taking from: batches rotate over the shards.
    cursor: usize,
    len: usize,
    bytes: usize,
}

impl Lanes {
    pub(super) fn new(limits: ShardLimits, gather: Duration, aggregate_cap: Option<usize>) -> Self {
        Self {
            lanes: vec![Lane::new(None)],
            map: None,
            generation: 0,
            limits,
            gather,
            aggregate_cap,
            aggregation_paused: false,
            builder: AggregateBuilder::with_capacity(aggregate_cap.unwrap_or(0)),
            cursor: 0,
            len: 0,
            bytes: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn map(&self) -> Option<&Arc<ShardMap>> {
        self.map.as_ref()
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    fn lane_of(&self, record: &PendingRecord) -> usize {
        match &self.map {
            Some(map) => map.shard_for(record.hash_key),
            None => 0,
        }
    }

    /// A new record, behind the others of its shard.
    pub(super) fn push_back(&mut self, mut record: PendingRecord) {
        let lane = self.lane_of(&record);
        record.lane = lane;
        self.len += 1;
        self.bytes += record.size;
        self.lanes[lane].bytes += record.size;
        self.lanes[lane].queue.push_back(record);
    }

    /// A record that was here before the others of its shard (a retry, or one taken back).
    pub(super) fn push_front(&mut self, mut record: PendingRecord) {
        let lane = self.lane_of(&record);
        record.lane = lane;
        self.len += 1;
        self.bytes += record.size;
        self.lanes[lane].bytes += record.size;
        self.lanes[lane].queue.push_front(record);
    }

    fn refill(&mut self, now: Instant) {
        let limits = self.limits;
        for lane in &mut self.lanes {
            if let Some(budget) = &mut lane.budget {
                budget.refill(&limits, now);
            }
        }
    }

    /// What could go into batches now, counting at most `max_records` records.
    pub(super) fn eligible(&mut self, now: Instant, max_records: usize) -> Eligible {
        self.refill(now);
        let aggregating = self.aggregating();
        let gather = self.gather;
        let mut eligible = Eligible::default();
        for lane in &mut self.lanes {
            eligible.budget_bound |= lane.bound();
            let Some(front) = lane.queue.front() else {
                continue;
            };
            let ready_at = front.ready_at;
            let (records, bytes) = match &lane.budget {
                None => (lane.queue.len(), lane.bytes),
                Some(budget) => {
                    let (records, bytes) =
                        packing::within_budget(lane.queue.iter(), budget, max_records, aggregating);
                    // Held back: records of light keys wait for budget (a hot key's backlog
                    // alone does not make the others' records wait to gather).
                    let held_back = records < lane.queue.len().min(max_records)
                        && records < lane.queue.light_len();
                    let (gather_records, gather_bytes) = budget.gathered(gather);
                    let gathered = match aggregating {
                        // An aggregate is one Kinesis record however full: a held-back shard
                        // waits for a full one's bytes (one second's at most), or each call
                        // would pay a payload unit for a sliver.
                        Some(cap) => bytes as f64 >= (cap as f64).min(budget.bytes.rate),
                        None => records as f64 >= gather_records || bytes as f64 >= gather_bytes,
                    };
                    lane.held_back |= held_back;
                    eligible.budget_bound |= held_back;
                    if held_back && !gathered {
                        (0, 0)
                    } else {
                        (records, bytes)
                    }
                }
            };
            if records > 0 {
                eligible.records += records;
                eligible.bytes += bytes;
                eligible.oldest_ready_at = Some(
                    eligible
                        .oldest_ready_at
                        .map_or(ready_at, |t| t.min(ready_at)),
                );
                if !lane.bound() {
                    eligible.unbound.add(records, bytes, ready_at);
                }
            }
        }
        eligible
    }

    /// A call of the gathering cadence is starting: it takes what every shard has gathered,
    /// so which shards are held back is judged afresh.
    pub(super) fn new_cadence(&mut self) {
        for lane in &mut self.lanes {
            lane.was_held_back = lane.held_back;
            lane.held_back = false;
        }
    }

    /// The next record a batch may take now, rotating over the shards (with `unbound_only`,
    /// only over those not held back since the cadence's latest call); its shard's budget is charged.
    /// `None` when no shard with records has budget.
    pub(super) fn pop_eligible(&mut self, unbound_only: bool) -> Option<PendingRecord> {
        let index = self.next_ready_lane(unbound_only)?;
        let record = self.take_front(index)?;
        if let Some(budget) = &mut self.lanes[index].budget {
            budget.records.tokens -= 1.0;
            budget.bytes.tokens -= record.size as f64;
        }
        Some(record)
    }

    /// The next lane, rotating over the shards, whose front record its budget lets go now
    /// (with `unbound_only`, skipping lanes held back since the cadence's latest call); the rotation
    /// moves past it.
    fn next_ready_lane(&mut self, unbound_only: bool) -> Option<usize> {
        let count = self.lanes.len();
        let index = (0..count)
            .map(|step| (self.cursor + step) % count)
            .find(|&index| {
                let lane = &self.lanes[index];
                !(unbound_only && lane.bound())
                    && lane.queue.front().is_some_and(|front| {
                        lane.budget.as_ref().is_none_or(|b| b.fits(front.size))
                    })
            })?;
        self.cursor = (index + 1) % count;
        Some(index)
    }

    /// Takes the front record of lane `index` out (its budget is the caller's business).
    fn take_front(&mut self, index: usize) -> Option<PendingRecord> {
        let lane = &mut self.lanes[index];
        let record = lane.queue.pop_front()?;
        lane.bytes -= record.size;
        self.len -= 1;
        self.bytes -= record.size;
        Some(record)
    }

    /// Takes out the records whose deadline has passed.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<PendingRecord> {
        let mut expired = Vec::new();
        for lane in &mut self.lanes {
            for record in lane.queue.expire(now) {
                lane.bytes -= record.size;
                self.len -= 1;
                self.bytes -= record.size;
                expired.push(record);
            }
        }
        expired
    }

    /// Takes out every record (shutdown grace over).
    pub(super) fn drain_all(&mut self) -> Vec<PendingRecord> {
        self.len = 0;
        self.bytes = 0;
        self.lanes
            .iter_mut()
            .flat_map(|lane| {
                lane.bytes = 0;
                lane.queue.drain()
            })
            .collect()
    }

    /// The earliest deadline among the records at the front of their lanes.
    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| l.queue.earliest_deadline())
            .min()
    }

    /// When a shard held back by its budget gets enough for its front record and has gathered
    /// enough budget to count as ready (only asked when no lane is ready now).
    pub(super) fn next_budget_at(&self, now: Instant) -> Option<Instant> {
        let aggregating = self.aggregating();
        self.lanes
            .iter()
            .filter_map(|lane| {
                let front = lane.queue.front()?;
                let budget = lane.budget.as_ref()?;
                let bytes_needed = (front.size as f64).min(budget.bytes.rate);
                let front_fits = budget
                    .records
                    .time_until(1.0)
                    .max(budget.bytes.time_until(bytes_needed));
                // Enough for `gather` worth of records the size of the front one, unless that
                // is more than `gather` worth of bytes (large records: bytes bind first).
                let (gather_records, gather_bytes) = budget.gathered(self.gather);
                let gathered = match aggregating {
                    Some(cap) => budget
                        .records
                        .time_until(1.0)
                        .max(budget.bytes.time_until((cap as f64).min(budget.bytes.rate))),
                    None => budget.records.time_until(gather_records).max(
                        budget
                            .bytes
                            .time_until((gather_records * front.size as f64).min(gather_bytes)),
                    ),
                };
                Some(now + front_fits.max(gathered).max(Duration::from_micros(100)))
            })
            .min()
    }

    /// Follows a new map (or none): every waiting record moves to its shard's lane; shards
    /// that stay keep their budget.
    pub(super) fn set_map(&mut self, map: Option<ShardMap>, now: Instant) {
        let old_ids: Vec<Option<String>> = match &self.map {
            Some(m) => m.shards().iter().map(|s| Some(s.id.clone())).collect(),
            None => vec![None],
        };
        let mut old_lanes = std::mem::take(&mut self.lanes);
        let map = map.map(Arc::new);
        self.lanes = match &map {
            Some(m) => m
                .shards()
                .iter()
                .map(|shard| {
                    let kept = old_ids
                        .iter()
                        .position(|id| id.as_deref() == Some(shard.id.as_str()))
                        .and_then(|i| old_lanes.get_mut(i))
                        .and_then(|l| l.budget.take());
                    Lane::new(Some(
                        kept.unwrap_or_else(|| ShardBudget::new(&self.limits, now)),
                    ))
                })
                .collect(),
            None => vec![Lane::new(None)],
        };
        self.map = map;
        self.generation += 1;
        self.cursor = 0;
        self.len = 0;
        self.bytes = 0;
        // Oldest first within each old lane, so every shard keeps its order.
        for mut lane in old_lanes {
            for record in lane.queue.drain() {
                self.push_back(record);
            }
        }
    }

    /// What Kinesis answered to a call's entries for `lane` under map `generation`.
    pub(super) fn feedback(
        &mut self,
        generation: u64,
        lane: usize,
        call: CallFeedback,
        now: Instant,
    ) {
        if generation != self.generation {
            return;
        }
        let limits = self.limits;
        if let Some(budget) = self.lanes.get_mut(lane).and_then(|l| l.budget.as_mut()) {
            budget.feedback(&limits, call, now);
        }
    }

    /// Per lane: shard id, records waiting, current rate in records/s (for metrics).
    pub(super) fn snapshot(&self) -> Vec<(Option<&str>, usize, Option<f64>)> {
        self.lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| {
                (
                    self.map
                        .as_ref()
                        .and_then(|m| m.shard(i))
                        .map(|s| s.id.as_str()),
                    lane.queue.len(),
                    lane.budget.as_ref().map(|b| b.records.rate),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
