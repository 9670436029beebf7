//! A hot shard stays bounded: one shard's backlog (its records queued, in flight and backing
//! off) may use at most `shards.max_backlog_share` of the stream's queue budget, records and
//! bytes. Beyond it, handlers refuse new records for that shard (503 `hot_shard`) while records
//! for the other shards keep being admitted: without this, one partition key sent faster than
//! its shard takes would fill the whole queue and every other shard's clients would get
//! `queue_full`.
//!
//! Handlers count at admission, on their own threads, with atomics; the aggregator only swaps
//! in the counters of a new map. Each admitted record holds its shard's slot in its `Ticket`,
//! given back when the record is answered. After a reshard, the new map's counters start at zero
//! while records admitted under the old map finish: for that moment a shard may hold more than
//! its share (never more than the stream's budget, which is checked first).
//!
//! The share is at least 1/shards, so a stream whose load is spread evenly can always use its
//! whole queue (a one-shard stream is not bounded beyond its budget), and a shard with nothing
//! waiting always takes one request, however large: a request is never refused for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::outcome::HotShard;
use crate::kinesis::ShardMap;

/// The backlog counters of the shards of one map.
#[derive(Debug)]
pub(super) struct ShardCounts {
    map: Arc<ShardMap>,
    records: Vec<AtomicUsize>,
    bytes: Vec<AtomicUsize>,
    max_records: usize,
    max_bytes: usize,
}

impl ShardCounts {
    /// Adds `records`/`bytes` to shard `index`, unless that takes it over its share.
    fn try_add(&self, index: usize, records: usize, bytes: usize) -> bool {
        let before_records = self.records[index].fetch_add(records, Ordering::AcqRel);
        let before_bytes = self.bytes[index].fetch_add(bytes, Ordering::AcqRel);
        let empty = before_records == 0;
        let fits =
            before_records + records <= self.max_records && before_bytes + bytes <= self.max_bytes;
        if empty || fits {
            return true;
        }
        self.remove(index, records, bytes);
        false
    }

    fn remove(&self, index: usize, records: usize, bytes: usize) {
        self.records[index].fetch_sub(records, Ordering::AcqRel);
        self.bytes[index].fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One admitted record's place in its shard's backlog; given back on drop.
#[derive(Debug)]
pub(super) struct ShardSlot {
    counts: Arc<ShardCounts>,
    index: usize,
    bytes: usize,
}

impl Drop for ShardSlot {
    fn drop(&mut self) {
        self.counts.remove(self.index, 1, self.bytes);
    }
}

/// The per-shard bounds of one pipeline.
#[derive(Debug)]
pub(super) struct ShardBacklogs {
    /// `None` while the pipeline has no shard map: no per-shard bound.
    current: RwLock<Option<Arc<ShardCounts>>>,
    queue_max_records: usize,
    queue_max_bytes: usize,
    share: f64,
}

impl ShardBacklogs {
    pub(super) fn new(queue_max_records: usize, queue_max_bytes: usize, share: f64) -> Self {
        Self {
            current: RwLock::new(None),
            queue_max_records,
            queue_max_bytes,
            share,
        }
    }

    /// Bounds the shards of `map` from now on (none without a map).
    pub(super) fn follow(&self, map: Option<Arc<ShardMap>>) {
        let counts = map.map(|map| {
            let shards = map.len().max(1);
            let share = self.share.max(1.0 / shards as f64).min(1.0);
            Arc::new(ShardCounts {
                records: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
                bytes: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
                max_records: (self.queue_max_records as f64 * share).ceil() as usize,
                max_bytes: (self.queue_max_bytes as f64 * share).ceil() as usize,
                map,
            })
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = counts;
    }

    fn counts(&self) -> Option<Arc<ShardCounts>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Room for one record with this hash key and size.
    pub(super) fn try_take_one(
        &self,
        hash_key: u128,
        bytes: usize,
    ) -> Result<Option<ShardSlot>, HotShard> {
        let Some(counts) = self.counts() else {
            return Ok(None);
        };
        let index = counts.map.shard_for(hash_key);
        if !counts.try_add(index, 1, bytes) {
            return Err(hot_shard(&counts, index));
        }
        Ok(Some(ShardSlot {
            counts,
            index,
            bytes,
        }))
    }

    /// Room for all of `records` (hash key, size), or for none of them.
    pub(super) fn try_take_all(
        &self,
        records: &[(u128, usize)],
    ) -> Result<Vec<Option<ShardSlot>>, HotShard> {
        let Some(counts) = self.counts() else {
            return Ok(records.iter().map(|_| None).collect());
        };
        let indexes: Vec<usize> = records
            .iter()
            .map(|(hash_key, _)| counts.map.shard_for(*hash_key))
            .collect();
        // Per shard: (shard, records, bytes), so each shard's share is checked once.
        let mut per_shard: Vec<(usize, usize, usize)> = Vec::new();
        let mut order: Vec<(usize, usize)> = indexes
            .iter()
            .copied()
            .zip(records.iter().map(|r| r.1))
            .collect();
        order.sort_unstable_by_key(|(index, _)| *index);
        for (index, bytes) in order {
            match per_shard.last_mut() {
                Some(last) if last.0 == index => {
                    last.1 += 1;
                    last.2 += bytes;
                }
                _ => per_shard.push((index, 1, bytes)),
            }
        }
        for (taken, &(index, count, bytes)) in per_shard.iter().enumerate() {
            if !counts.try_add(index, count, bytes) {
                for &(index, count, bytes) in &per_shard[..taken] {
                    counts.remove(index, count, bytes);
                }
                return Err(hot_shard(&counts, index));
            }
        }
        Ok(indexes
            .into_iter()
            .zip(records)
            .map(|(index, (_, bytes))| {
                Some(ShardSlot {
                    counts: counts.clone(),
                    index,
                    bytes: *bytes,
                })
            })
            .collect())
    }
}

fn hot_shard(counts: &ShardCounts, index: usize) -> HotShard {
    HotShard {
        shard_id: counts
            .map
            .shard(index)
            .map(|s| s.id.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::ShardRange;

    fn two_shards() -> Arc<ShardMap> {
        let half = u128::MAX / 2;
        Arc::new(
            ShardMap::new(vec![
                ShardRange {
                    id: "low".into(),
                    start: 0,
                    end: half,
                },
                ShardRange {
                    id: "high".into(),
                    start: half + 1,
                    end: u128::MAX,
                },
            ])
            .expect("map"),
        )
    }

    const LOW: u128 = 1;
    const HIGH: u128 = u128::MAX;

    #[test]
    fn a_shard_at_its_share_refuses_while_the_others_take_records() {
        let backlogs = ShardBacklogs::new(100, 1 << 20, 0.5);
        backlogs.follow(Some(two_shards()));
        let held: Vec<_> = (0..50)
            .map(|_| backlogs.try_take_one(LOW, 10).expect("room"))
            .collect();
        assert_eq!(
            backlogs.try_take_one(LOW, 10).err(),
            Some(HotShard {
                shard_id: "low".into()
            })
        );
        assert!(backlogs.try_take_one(HIGH, 10).is_ok());
        drop(held);
        assert!(
            backlogs.try_take_one(LOW, 10).is_ok(),
            "room again once answered"
        );
    }

    #[test]
    fn bytes_count_too_and_a_request_is_all_or_nothing() {
        let backlogs = ShardBacklogs::new(100, 1_000, 0.5);
        backlogs.follow(Some(two_shards()));
        let _held = backlogs.try_take_one(LOW, 400).expect("room");
        // 100 more bytes fit on "low", 200 do not: nothing of the request is taken.
        assert!(backlogs.try_take_all(&[(HIGH, 10), (LOW, 200)]).is_err());
        let high_left = backlogs.try_take_all(&[(HIGH, 500)]);
        assert!(
            high_left.is_ok(),
            "the refused request took nothing from high"
        );
    }

    #[test]
    fn an_empty_shard_takes_any_request_and_one_shard_is_bounded_by_the_stream_only() {
        let backlogs = ShardBacklogs::new(100, 1 << 20, 0.1);
        backlogs.follow(Some(two_shards()));
        // More than the share (50, as 1/shards > 0.1), but the shard is empty.
        let big: Vec<(u128, usize)> = (0..80).map(|_| (LOW, 1)).collect();
        let held = backlogs
            .try_take_all(&big)
            .expect("an empty shard takes it");
        assert!(backlogs.try_take_one(LOW, 1).is_err());
        drop(held);

        let one = ShardMap::new(vec![ShardRange {
            id: "only".into(),
            start: 0,
            end: u128::MAX,
        }])
        .expect("map");
        backlogs.follow(Some(Arc::new(one)));
        let held: Vec<_> = (0..100)
            .map(|_| backlogs.try_take_one(LOW, 1).expect("the whole budget"))
            .collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn without_a_map_nothing_is_bounded_per_shard() {
        let backlogs = ShardBacklogs::new(1, 1, 0.1);
        for _ in 0..10 {
            assert!(matches!(backlogs.try_take_one(LOW, 100), Ok(None)));
        }
    }
}
