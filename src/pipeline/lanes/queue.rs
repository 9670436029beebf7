//! One shard's waiting records, with a hot key kept from holding back the other keys of the
//! same shard. A shard's budget is shared by every key that hashes to it; one key sent faster
//! than the shard takes would otherwise fill its lane, and every other key's records on that
//! shard would wait behind its backlog (the hot-key benchmark: the other clients' p99 went from
//! ~11 ms to ~220 ms).
//!
//! So a key (its 128-bit hash key) with `HEAVY_AFTER` records already waiting here is heavy:
//! its further records wait in a second queue, served one pop in `HEAVY_TURN` while light
//! records wait, and freely when none do. Light keys get the shard first; the hot key still
//! gets at least a quarter of it, and all of it when nobody else needs it. A key's records keep
//! their order: once a key has heavy records its new records go there too, and a heavy record
//! is not taken while older records of its key are still light.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::pipeline::pending::PendingRecord;

/// Records of one key waiting in a lane before its next ones count as heavy.
const HEAVY_AFTER: u32 = 8;

/// While light records wait, every `HEAVY_TURN`th pop may take a heavy one.
const HEAVY_TURN: u32 = 4;

#[derive(Debug, Default, Clone, Copy)]
struct KeyCounts {
    light: u32,
    heavy: u32,
}

/// A lane's queue: light records, heavy records, and per key how many of each wait.
#[derive(Default)]
pub(super) struct LaneQueue {
    light: VecDeque<PendingRecord>,
    heavy: VecDeque<PendingRecord>,
    keys: HashMap<u128, KeyCounts>,
    /// Pops since the last heavy one, while light records waited.
    light_streak: u32,
}

impl LaneQueue {
    pub(super) fn len(&self) -> usize {
        self.light.len() + self.heavy.len()
    }

    /// Whether the next pop takes the heavy queue's front.
    fn heavy_next(&self) -> bool {
        let Some(front) = self.heavy.front() else {
            return false;
        };
        if self.light.is_empty() {
            return true;
        }
        let older_light = self
            .keys
            .get(&front.hash_key)
            .is_some_and(|counts| counts.light > 0);
        self.light_streak + 1 >= HEAVY_TURN && !older_light
    }

    /// The record the next `pop_front` takes.
    pub(super) fn front(&self) -> Option<&PendingRecord> {
        if self.heavy_next() {
            self.heavy.front()
        } else {
            self.light.front()
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<PendingRecord> {
        let heavy = self.heavy_next();
        let record = if heavy {
            self.light_streak = 0;
            self.heavy.pop_front()?
        } else {
            if !self.heavy.is_empty() {
                self.light_streak += 1;
            }
            self.light.pop_front()?
        };
        self.forget(record.hash_key, heavy);
        Some(record)
    }

    fn forget(&mut self, hash_key: u128, heavy: bool) {
        if let Some(counts) = self.keys.get_mut(&hash_key) {
            if heavy {
                counts.heavy = counts.heavy.saturating_sub(1);
            } else {
                counts.light = counts.light.saturating_sub(1);
            }
            if counts.light == 0 && counts.heavy == 0 {
                self.keys.remove(&hash_key);
            }
        }
    }

    /// A new record, behind the others of its key.
    pub(super) fn push_back(&mut self, record: PendingRecord) {
        let counts = self.keys.entry(record.hash_key).or_default();
        if counts.heavy > 0 || counts.light >= HEAVY_AFTER {
            counts.heavy += 1;
            self.heavy.push_back(record);
        } else {
            counts.light += 1;
            self.light.push_back(record);
        }
    }

    /// A record older than every other of its key (a retry, or one taken back): first.
    pub(super) fn push_front(&mut self, record: PendingRecord) {
        self.keys.entry(record.hash_key).or_default().light += 1;
        self.light.push_front(record);
    }

    pub(super) fn light_len(&self) -> usize {
        self.light.len()
    }

    /// Every record, light first (so each key's records in order).
    pub(super) fn iter(&self) -> impl Iterator<Item = &PendingRecord> {
        self.light.iter().chain(self.heavy.iter())
    }

    /// Takes out the records whose deadline has passed (each queue is in deadline order at
    /// its front: retries there are the oldest).
    pub(super) fn expire(&mut self, now: Instant) -> Vec<PendingRecord> {
        let mut expired = Vec::new();
        for heavy in [false, true] {
            loop {
                let queue = if heavy {
                    &mut self.heavy
                } else {
                    &mut self.light
                };
                if queue.front().is_none_or(|r| r.deadline > now) {
                    break;
                }
                let Some(record) = queue.pop_front() else {
                    break;
                };
                self.forget(record.hash_key, heavy);
                expired.push(record);
            }
        }
        expired
    }

    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        let light = self.light.front().map(|r| r.deadline);
        let heavy = self.heavy.front().map(|r| r.deadline);
        light.into_iter().chain(heavy).min()
    }

    /// Every record, light first, leaving the queue empty.
    pub(super) fn drain(&mut self) -> Vec<PendingRecord> {
        self.keys.clear();
        self.light_streak = 0;
        self.light.drain(..).chain(self.heavy.drain(..)).collect()
    }
}
