//! Lanes against hand-made shard maps and a hand-driven clock: budgets, rotation over shards,
//! the adaptive rate, and following a new map. How the rate follows Kinesis' answers is in
//! `adapt`.

mod adapt;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::domain::{ExplicitHashKey, PartitionKey, Record};
use crate::kinesis::ShardRange;
use crate::pipeline::admission::{Budget, Ticket};

fn limits(records_per_second: f64) -> ShardLimits {
    ShardLimits {
        records_per_second,
        bytes_per_second: 1_000_000.0,
        decrease_factor: 0.5,
        decrease_interval: Duration::from_millis(500),
        min_share: 0.1,
        increase_step: 0.1,
        increase_interval: Duration::from_millis(100),
        quiet_period: Duration::from_secs(1),
    }
}

/// Two shards: the lower half of the hash space and the upper half.
fn two_shards(upper_id: &str) -> ShardMap {
    ShardMap::new(vec![
        ShardRange {
            id: "shard-lower".into(),
            start: 0,
            end: u128::MAX / 2,
        },
        ShardRange {
            id: upper_id.into(),
            start: u128::MAX / 2 + 1,
            end: u128::MAX,
        },
    ])
    .expect("valid map")
}

/// A record routed by explicit hash key: `upper` picks the upper half.
fn record(n: usize, upper: bool, now: Instant) -> PendingRecord {
    let hash = if upper {
        u128::MAX - n as u128
    } else {
        n as u128
    };
    let record = Record {
        data: Bytes::from(format!("{{\"n\":{n}}}")),
        partition_key: PartitionKey::parse(format!("k{n}")).expect("key"),
        explicit_hash_key: Some(ExplicitHashKey::parse(&hash.to_string()).expect("hash key")),
    };
    let budget = Arc::new(Budget::new(1_000, 1 << 30));
    let size = record.kinesis_size();
    PendingRecord::new(
        record,
        hash,
        None,
        now,
        now + Duration::from_secs(30),
        Ticket::new(&budget, size, None),
    )
}

fn drain(lanes: &mut Lanes) -> Vec<(usize, bool)> {
    std::iter::from_fn(|| lanes.pop_eligible(false))
        .map(|r| (r.record.data.len(), r.hash_key > u128::MAX / 2))
        .collect()
}

#[test]
fn without_a_map_one_lane_takes_everything_in_order() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(10.0), Duration::ZERO, None);
    for n in 0..50 {
        lanes.push_back(record(n, n % 2 == 0, now));
    }
    assert_eq!(
        lanes.eligible(now, 500).records,
        50,
        "no budget without a map"
    );
    let order: Vec<usize> = std::iter::from_fn(|| lanes.pop_eligible(false))
        .map(|r| r.hash_key as usize % 1000)
        .collect();
    assert_eq!(order.len(), 50);
    assert!(lanes.is_empty());
}

#[test]
fn a_shard_out_of_budget_waits_while_the_other_keeps_sending() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(10.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..30 {
        lanes.push_back(record(n, false, now));
    }
    for n in 0..5 {
        lanes.push_back(record(n, true, now));
    }
    let eligible = lanes.eligible(now, 500);
    assert_eq!(
        eligible.records, 15,
        "10 of the hot shard's budget, all 5 of the other"
    );
    let taken = drain(&mut lanes);
    assert_eq!(taken.len(), 15);
    assert_eq!(taken.iter().filter(|(_, upper)| *upper).count(), 5);
    // Rotation: the quiet shard's records are not stuck behind the hot shard's.
    assert!(
        taken[..10].iter().filter(|(_, upper)| *upper).count() == 5,
        "{taken:?}"
    );
    assert_eq!(
        lanes.eligible(now, 500).records,
        0,
        "hot shard out of budget"
    );
    let refill = lanes.next_budget_at(now).expect("a refill is due");
    assert!(
        refill > now && refill <= now + Duration::from_millis(101),
        "{:?}",
        refill - now
    );
    assert_eq!(
        lanes
            .eligible(now + Duration::from_millis(500), 500)
            .records,
        5,
        "half a second refills half the budget"
    );
}

#[test]
fn unpop_gives_the_budget_back() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(2.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    lanes.push_back(record(1, false, now));
    lanes.push_back(record(2, false, now));
    lanes.push_back(record(3, false, now));
    let first = lanes.pop_eligible(false).expect("budget for one");
    lanes.unpop_entry(crate::pipeline::entry::Entry::Single(first));
    assert_eq!(lanes.eligible(now, 500).records, 2);
}

#[test]
fn a_new_map_moves_records_and_keeps_the_budgets_of_shards_that_stay() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(100.0), Duration::ZERO, None);
    for n in 0..6 {
        lanes.push_back(record(n, n % 2 == 1, now));
    }
    lanes.set_map(Some(two_shards("shard-upper")), now);
    let waiting: Vec<usize> = lanes.snapshot().iter().map(|l| l.1).collect();
    assert_eq!(waiting, vec![3, 3], "records moved to their shards");
    let throttled = CallFeedback {
        started_at: now,
        sent: 20,
        throttled: 20,
        accepted_bytes: 0,
    };
    lanes.feedback(
        lanes.generation(),
        0,
        throttled,
        now + Duration::from_millis(10),
    );
    let before = lanes.generation();
    lanes.set_map(Some(two_shards("shard-upper-split")), now);
    assert_ne!(lanes.generation(), before);
    let snapshot = lanes.snapshot();
    assert_eq!(
        snapshot[0].2,
        Some(50.0),
        "shard-lower stays, so does its rate"
    );
    assert_eq!(snapshot[1].0, Some("shard-upper-split"));
    assert_eq!(
        snapshot[1].2,
        Some(100.0),
        "a new shard starts at the limit"
    );
    assert_eq!(
        snapshot.iter().map(|l| l.1).sum::<usize>(),
        6,
        "nothing lost"
    );
    lanes.set_map(None, now);
    assert_eq!(lanes.eligible(now, 500).records, 6, "shard-blind again");
}

#[test]
fn expired_records_leave_their_lanes() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(1.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..4 {
        lanes.push_back(record(n, n % 2 == 0, now));
    }
    let expired = lanes.expire(now + Duration::from_secs(31));
    assert_eq!(expired.len(), 4);
    assert!(lanes.is_empty());
    assert!(lanes.earliest_deadline().is_none());
}

#[test]
fn a_held_back_shard_gathers_a_lingers_worth_of_budget_before_it_is_ready() {
    let now = Instant::now();
    // 1,000 records/s, gathering 10 ms: 10 records at a time once the bucket is empty.
    let mut lanes = Lanes::new(limits(1_000.0), Duration::from_millis(10), None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..1_200 {
        lanes.push_back(record(n, true, now));
    }
    assert_eq!(
        lanes.eligible(now, 500).records,
        500,
        "a full bucket is ready"
    );
    assert_eq!(drain(&mut lanes).len(), 1_000, "the whole second's budget");

    let soon = now + Duration::from_millis(3);
    assert_eq!(
        lanes.eligible(soon, 500).records,
        0,
        "3 ms of budget (3 records) is not worth a call of its own"
    );
    let ready_at = lanes.next_budget_at(soon).expect("gathering");
    assert!(
        ready_at >= now + Duration::from_millis(10) && ready_at <= now + Duration::from_millis(11),
        "ready once 10 ms of budget is gathered: {:?}",
        ready_at - now
    );
    assert_eq!(
        drain(&mut lanes).len(),
        3,
        "but a call going out anyway takes what the shard has"
    );
    let later = now + Duration::from_millis(8);
    assert_eq!(lanes.eligible(later, 500).records, 0, "5 ms gathered");
    let gathered = now + Duration::from_micros(13_500);
    assert_eq!(lanes.eligible(gathered, 500).records, 10);

    // A shard that can send everything it holds is ready at once, however little that is.
    lanes.push_back(record(0, false, now));
    assert_eq!(lanes.eligible(gathered, 500).records, 11);
}

#[test]
fn between_gathering_calls_only_shards_not_held_back_are_taken() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(1_000.0), Duration::from_millis(10), None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..1_200 {
        lanes.push_back(record(n, true, now));
    }
    assert_eq!(
        drain(&mut lanes).len(),
        1_000,
        "the upper shard's budget spent"
    );
    lanes.push_back(record(0, false, now));

    let soon = now + Duration::from_millis(5);
    let eligible = lanes.eligible(soon, 500);
    assert!(eligible.budget_bound, "the upper shard holds records back");
    assert_eq!(
        eligible.unbound.records, 1,
        "the lower shard can send all it has"
    );
    assert_eq!(eligible.unbound_only().records, 1);
    let taken: Vec<bool> = std::iter::from_fn(|| lanes.pop_eligible(true))
        .map(|r| r.hash_key > u128::MAX / 2)
        .collect();
    assert_eq!(
        taken,
        vec![false],
        "only the lower shard's record, the upper keeps gathering"
    );
    // The next call of the cadence takes what the held-back shard has earned meanwhile.
    assert_eq!(drain(&mut lanes).len(), 5);
}

/// A record of `size` data bytes with partition key `key`, routed by MD5 of the key.
fn keyed(key: &str, size: usize, now: Instant) -> PendingRecord {
    let record = Record {
        data: Bytes::from(vec![b'x'; size]),
        partition_key: PartitionKey::parse(key).expect("key"),
        explicit_hash_key: None,
    };
    let budget = Arc::new(Budget::new(1_000, 1 << 30));
    let bytes = record.kinesis_size();
    PendingRecord::new(
        record,
        crate::kinesis::shard_map::partition_key_hash(key),
        None,
        now,
        now + Duration::from_secs(30),
        Ticket::new(&budget, bytes, None),
    )
}

fn drain_entries(lanes: &mut Lanes) -> Vec<crate::pipeline::entry::Entry> {
    std::iter::from_fn(|| lanes.pop_entry(false)).collect()
}

#[test]
fn an_aggregating_stream_packs_each_shards_records_up_to_the_cap_and_never_across_shards() {
    use crate::kinesis::aggregation::decode;
    use crate::pipeline::entry::Entry;

    let now = Instant::now();
    let map = two_shards("shard-upper");
    let mut lanes = Lanes::new(limits(1_000.0), Duration::ZERO, Some(2_000));
    lanes.set_map(Some(map.clone()), now);
    for n in 0..60 {
        lanes.push_back(keyed(&format!("key-{n}"), 90, now));
    }
    let eligible = lanes.eligible(now, 500);
    assert_eq!(eligible.records, 60);
    let entries = drain_entries(&mut lanes);
    assert!(lanes.is_empty());
    let mut carried = 0;
    for entry in &entries {
        let Entry::Aggregated(aggregate) = entry else {
            panic!("small records are aggregated");
        };
        assert!(aggregate.size <= 2_000, "{} bytes", aggregate.size);
        assert_eq!(aggregate.size, aggregate.record.kinesis_size());
        let users = decode(&aggregate.record.data).expect("a valid aggregate");
        assert_eq!(users.len(), aggregate.members.len());
        // Every member is in the shard the aggregate is routed to.
        let shard = map.shard_for(crate::kinesis::hash_key(&aggregate.record));
        for (user, member) in users.iter().zip(&aggregate.members) {
            assert_eq!(user.partition_key, member.record.partition_key.as_str());
            assert_eq!(user.data, member.record.data.to_vec());
            assert_eq!(map.shard_for(member.hash_key), shard, "never across shards");
        }
        carried += users.len();
    }
    assert_eq!(carried, 60);
    assert!(
        entries.len() <= 6,
        "{} aggregates for 60 records",
        entries.len()
    );
}

#[test]
fn aggregates_charge_one_record_of_the_shards_budget_and_big_records_go_alone() {
    use crate::pipeline::entry::Entry;

    let now = Instant::now();
    // Two Kinesis records per second per shard: with aggregation that is two aggregates.
    let mut lanes = Lanes::new(limits(2.0), Duration::ZERO, Some(10_000));
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..20 {
        lanes.push_back(record(n, true, now));
    }
    let entries = drain_entries(&mut lanes);
    assert_eq!(entries.len(), 1, "one aggregate holds all 20");
    assert!(matches!(&entries[0], Entry::Aggregated(a) if a.members.len() == 20));

    lanes.push_back(keyed("big", 20_000, now));
    lanes.push_back(keyed("small", 10, now));
    let entries = drain_entries(&mut lanes);
    let kinds: Vec<bool> = entries
        .iter()
        .map(|e| matches!(e, Entry::Single(_)))
        .collect();
    assert!(
        kinds.contains(&true),
        "the record over the cap goes as it is"
    );

    // Unpopping gives the aggregate's budget and records back, in order.
    let mut lanes = Lanes::new(limits(1.0), Duration::ZERO, Some(10_000));
    lanes.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..5 {
        lanes.push_back(record(n, true, now));
    }
    let entry = lanes.pop_entry(false).expect("an aggregate");
    assert!(
        lanes.pop_entry(false).is_none(),
        "budget of one record spent"
    );
    lanes.unpop_entry(entry);
    let again = lanes.pop_entry(false).expect("the same aggregate again");
    assert!(matches!(&again, Entry::Aggregated(a) if a.members.len() == 5));
}

#[test]
fn without_a_map_or_while_paused_nothing_is_aggregated() {
    use crate::pipeline::entry::Entry;

    let now = Instant::now();
    let mut lanes = Lanes::new(limits(1_000.0), Duration::ZERO, Some(10_000));
    for n in 0..3 {
        lanes.push_back(record(n, false, now));
    }
    assert!(drain_entries(&mut lanes)
        .iter()
        .all(|e| matches!(e, Entry::Single(_))));
    lanes.set_map(Some(two_shards("shard-upper")), now);
    lanes.pause_aggregation(true);
    for n in 0..3 {
        lanes.push_back(record(n, false, now));
    }
    assert!(drain_entries(&mut lanes)
        .iter()
        .all(|e| matches!(e, Entry::Single(_))));
}

#[test]
fn a_hot_key_does_not_hold_back_the_other_keys_of_its_shard() {
    let now = Instant::now();
    let mut lanes = Lanes::new(limits(1_000.0), Duration::ZERO, None);
    lanes.set_map(Some(two_shards("shard-upper")), now);
    let hot_key = u128::MAX - 1;
    let keyed = |hash: u128, n: usize| {
        let mut r = record(n, true, now);
        r.hash_key = hash;
        r
    };
    // 100 records of the hot key, then 10 of other keys on the same shard.
    for n in 0..100 {
        lanes.push_back(keyed(hot_key, n));
    }
    for n in 0..10 {
        lanes.push_back(keyed(u128::MAX - 1_000 - n as u128, 100 + n));
    }
    let order: Vec<bool> = std::iter::from_fn(|| lanes.pop_eligible(false))
        .take(30)
        .map(|r| r.hash_key == hot_key)
        .collect();
    // The hot key's first 8 are ahead (they were light when they came), then the others go
    // first, with one hot record in every four pops while they wait.
    let others_done_by = order
        .iter()
        .enumerate()
        .filter(|(_, hot)| !**hot)
        .map(|(i, _)| i)
        .max()
        .expect("others taken");
    assert!(others_done_by < 8 + 14, "{order:?}");
    // The hot key's own records stay in order.
    let mut lanes2 = Lanes::new(limits(1_000.0), Duration::ZERO, None);
    lanes2.set_map(Some(two_shards("shard-upper")), now);
    for n in 0..40 {
        lanes2.push_back(keyed(hot_key, n));
        lanes2.push_back(keyed(u128::MAX - 5_000 - n as u128, 1_000 + n));
    }
    let hot_order: Vec<u64> = std::iter::from_fn(|| lanes2.pop_eligible(false))
        .filter(|r| r.hash_key == hot_key)
        .map(|r| {
            let event: serde_json::Value = serde_json::from_slice(&r.record.data).expect("json");
            event["n"].as_u64().expect("n")
        })
        .collect();
    let mut sorted = hot_order.clone();
    sorted.sort_unstable();
    assert_eq!(hot_order.len(), 40);
    assert_eq!(hot_order, sorted, "a key's records keep their order");
}
