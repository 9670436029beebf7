//! Per-key ordering, for the streams named in `streams.ordered`: the events of one partition key
//! reach Kinesis in the order the proxy accepted them, even when Kinesis throttles some of them.
//!
//! Without it, a throttled entry is retried after its backoff, by which time newer records of
//! its key may already be in the stream. And PutRecords itself does not promise order inside one
//! call: one entry may be throttled while the next is accepted. So an ordered stream lets at
//! most one record per partition key out at a time (in a lane, in a call, or backing off); the
//! key's newer records wait here, oldest first, and the next goes out only once the one before
//! it is answered (accepted, or failed for good). That is the strongest rule that holds across
//! throttling, retries and reshards, and it is per key rather than per shard, so keys sharing a
//! shard still share batches. The price: one key moves at most one record per PutRecords round
//! trip (measured in the README).
//!
//! A record that fails for good (its deadline passed) releases its key: the records after it
//! are still written in order, without it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::pending::PendingRecord;
use crate::domain::PartitionKey;

/// The partition keys with a record out, and the records of each key waiting behind it.
#[derive(Default)]
pub(super) struct KeyOrder {
    /// Key → its waiting records, oldest first (empty: one is out, none waits).
    out: HashMap<PartitionKey, VecDeque<PendingRecord>>,
    waiting: usize,
}

impl KeyOrder {
    /// A new record: returned when it may go out now (nothing of its key is out), or kept
    /// behind the older ones of its key.
    pub(super) fn admit(&mut self, record: PendingRecord) -> Option<PendingRecord> {
        match self.out.entry(record.record.partition_key.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(VecDeque::new());
                Some(record)
            }
            Entry::Occupied(mut slot) => {
                slot.get_mut().push_back(record);
                self.waiting += 1;
                None
            }
        }
    }

    /// The record of `key` that was out has been answered: the next of its key may go out.
    pub(super) fn release(&mut self, key: &PartitionKey) -> Option<PendingRecord> {
        let Entry::Occupied(mut slot) = self.out.entry(key.clone()) else {
            return None;
        };
        match slot.get_mut().pop_front() {
            Some(next) => {
                self.waiting -= 1;
                Some(next)
            }
            None => {
                slot.remove();
                None
            }
        }
    }

    /// Records waiting behind their key.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Takes out the waiting records whose deadline has passed. Within a key deadlines follow
    /// arrival, so only fronts need looking at.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<PendingRecord> {
        let mut expired = Vec::new();
        if self.waiting == 0 {
            return expired;
        }
        for queue in self.out.values_mut() {
            while queue.front().is_some_and(|r| r.deadline <= now) {
                if let Some(record) = queue.pop_front() {
                    expired.push(record);
                }
            }
        }
        self.waiting -= expired.len();
        expired
    }

    /// The earliest deadline among the waiting records.
    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        if self.waiting == 0 {
            return None;
        }
        self.out
            .values()
            .filter_map(|q| q.front().map(|r| r.deadline))
            .min()
    }

    /// Takes out every waiting record (shutdown grace over).
    pub(super) fn drain_all(&mut self) -> Vec<PendingRecord> {
        self.waiting = 0;
        self.out.drain().flat_map(|(_, queue)| queue).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::pending::tests::pending_record;

    fn key(k: &str) -> PartitionKey {
        PartitionKey::parse(k).expect("key")
    }

    #[test]
    fn one_record_per_key_is_out_and_the_next_follows_in_order() {
        let mut order = KeyOrder::default();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(30);
        assert!(order.admit(pending_record("a", "1", deadline)).is_some());
        assert!(order.admit(pending_record("b", "1", deadline)).is_some());
        assert!(order.admit(pending_record("a", "2", deadline)).is_none());
        assert!(order.admit(pending_record("a", "3", deadline)).is_none());
        assert_eq!(order.waiting(), 2);

        let next = order.release(&key("a")).expect("a2 goes next");
        assert_eq!(&next.record.data[..], b"2");
        let next = order.release(&key("a")).expect("then a3");
        assert_eq!(&next.record.data[..], b"3");
        assert!(order.release(&key("a")).is_none(), "a is free again");
        assert!(order.admit(pending_record("a", "4", deadline)).is_some());
        assert!(order.release(&key("b")).is_none());
        assert_eq!(order.waiting(), 0);
    }

    #[test]
    fn expired_waiting_records_are_taken_out_and_the_key_stays_ordered() {
        let mut order = KeyOrder::default();
        let now = Instant::now();
        assert!(order.admit(pending_record("a", "1", now)).is_some());
        assert!(order.admit(pending_record("a", "2", now)).is_none());
        assert!(order
            .admit(pending_record("a", "3", now + Duration::from_secs(30)))
            .is_none());
        assert_eq!(order.earliest_deadline(), Some(now));
        let expired = order.expire(now);
        assert_eq!(expired.len(), 1);
        assert_eq!(&expired[0].record.data[..], b"2");
        // a1 is still out: a3 waits for it.
        assert_eq!(order.waiting(), 1);
        let next = order.release(&key("a")).expect("a3");
        assert_eq!(&next.record.data[..], b"3");
    }
}
