//! Property tests for batch assembly, over random inputs rather than the handful of hand-picked
//! cases in the unit tests.
//!
//! A queue of records of random sizes (including exactly the byte cap and above it)
//! is fed through the aggregator's loop (`Aggregator::start_call` in `aggregator.rs`: new batch,
//! `try_push` until `Full`, flush; `TooLarge` records are failed alone, `Full` ones go back to
//! the front). The loop is modelled here rather than driven through the aggregator so that every
//! cut can be inspected: what must hold is that no record is lost, duplicated or reordered, that
//! no batch breaks a Kinesis cap, that a batch is only cut when the next record really does not
//! fit, and that no empty batch is ever sent.
//!
//! Case counts are kept moderate so `cargo test --lib` stays fast.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

/// A record of the model: its position in the input queue and its Kinesis size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    id: usize,
    size: usize,
}

/// How the inner loop of one batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The record cap was reached.
    Records,
    /// `try_push` said `Full`: the next record is back at the front of the queue.
    Bytes { next: Item },
    /// The queue ran dry.
    Drained,
}

/// One flushed batch as the model saw it.
#[derive(Debug)]
struct Flushed {
    items: Vec<Item>,
    bytes: usize,
    cut: Cut,
}

#[derive(Debug, Default)]
struct Outcome {
    flushed: Vec<Flushed>,
    too_large: Vec<Item>,
}

/// The aggregator's batching loop over `queue`, as `Aggregator::start_call` runs it, called
/// until the queue is empty (in the aggregator the flush triggers differ, the assembly does not).
fn drain(limits: BatchLimits, queue: &[Item]) -> Outcome {
    let mut ready: VecDeque<Item> = queue.iter().copied().collect();
    let mut outcome = Outcome::default();
    // Every turn either flushes at least one record or empties the queue; a loop that spins
    // (a `Full` from an empty batch) would otherwise hang the test instead of failing it.
    let mut turns_left = queue.len() + 1;
    while !ready.is_empty() {
        assert!(turns_left > 0, "the batching loop makes no progress");
        turns_left -= 1;
        let mut batch = Batch::new(limits);
        let mut cut = Cut::Drained;
        while let Some(item) = ready.pop_front() {
            let was_empty = batch.is_empty();
            match batch.try_push(item, item.size) {
                Ok(()) => {}
                Err(PushError::Full(back)) => {
                    assert_eq!(back, item, "Full hands back the very record pushed");
                    assert!(
                        !was_empty,
                        "an empty batch refused {item:?} as Full: it could never be sent"
                    );
                    ready.push_front(back);
                    cut = Cut::Bytes { next: back };
                    break;
                }
                Err(PushError::TooLarge(back)) => {
                    assert_eq!(back, item, "TooLarge hands back the very record pushed");
                    outcome.too_large.push(back);
                }
            }
            if batch.is_full() {
                cut = Cut::Records;
                break;
            }
        }
        // The aggregator returns without a call when the batch is empty.
        if batch.is_empty() {
            assert!(
                ready.is_empty(),
                "an empty batch was cut while records were still waiting"
            );
            continue;
        }
        let bytes = batch.bytes();
        outcome.flushed.push(Flushed {
            items: batch.into_items(),
            bytes,
            cut,
        });
    }
    outcome
}

/// Caps from tiny (to make every edge common) to Kinesis' own (500 records, 5 MiB).
fn limits() -> impl Strategy<Value = BatchLimits> {
    let max_records = prop_oneof![3 => 1usize..=8, 1 => Just(500usize)];
    let max_bytes = prop_oneof![3 => 1usize..=64, 1 => Just(5 * 1024 * 1024)];
    (max_records, max_bytes).prop_map(|(max_records, max_bytes)| BatchLimits {
        max_records,
        max_bytes,
    })
}

/// Sizes relative to the byte cap: mostly records that share a batch, with the edges (empty,
/// exactly the cap, one byte over, far over) drawn often enough to matter.
fn size(max_bytes: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0..=max_bytes / 4,
        3 => 0..=max_bytes,
        1 => Just(max_bytes),
        1 => Just(max_bytes + 1),
        1 => max_bytes + 1..=max_bytes * 2 + 1,
    ]
}

fn limits_and_queue() -> impl Strategy<Value = (BatchLimits, Vec<Item>)> {
    limits().prop_flat_map(|limits| {
        let queue = prop::collection::vec(size(limits.max_bytes), 0..120).prop_map(|sizes| {
            sizes
                .into_iter()
                .enumerate()
                .map(|(id, size)| Item { id, size })
                .collect::<Vec<_>>()
        });
        (Just(limits), queue)
    })
}

proptest! {
    // Each case drains up to 120 records through a few dozen batches; 128 cases per property
    // reach every edge of the size strategy many times over and keep the suite well under 2 s.
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// (1) Every record is flushed exactly once or refused as too large, in queue order.
    #[test]
    fn every_record_is_flushed_once_in_order_or_refused((limits, queue) in limits_and_queue()) {
        let outcome = drain(limits, &queue);
        let flushed: Vec<Item> = outcome.flushed.iter().flat_map(|b| b.items.iter().copied()).collect();
        let expected_flushed: Vec<Item> =
            queue.iter().copied().filter(|i| i.size <= limits.max_bytes).collect();
        let expected_too_large: Vec<Item> =
            queue.iter().copied().filter(|i| i.size > limits.max_bytes).collect();
        // Equal sequences: nothing lost, nothing duplicated, order kept across batches.
        prop_assert_eq!(flushed, expected_flushed);
        prop_assert_eq!(outcome.too_large, expected_too_large);
    }

    /// (2) No batch passes either cap, and its byte count is the sum of its records' sizes.
    #[test]
    fn no_batch_exceeds_the_caps((limits, queue) in limits_and_queue()) {
        for batch in drain(limits, &queue).flushed {
            prop_assert!(batch.items.len() <= limits.max_records, "{batch:?} over {limits:?}");
            prop_assert!(batch.bytes <= limits.max_bytes, "{batch:?} over {limits:?}");
            prop_assert_eq!(batch.bytes, batch.items.iter().map(|i| i.size).sum::<usize>());
        }
    }

    /// (3) A batch is cut by bytes only when the next record would really pass the byte cap,
    /// and only the last batch may end with records below both caps (the queue ran dry).
    #[test]
    fn batches_are_cut_only_when_the_next_record_does_not_fit(
        (limits, queue) in limits_and_queue()
    ) {
        let outcome = drain(limits, &queue);
        let last = outcome.flushed.len().saturating_sub(1);
        for (index, batch) in outcome.flushed.iter().enumerate() {
            match batch.cut {
                Cut::Bytes { next } => {
                    prop_assert!(batch.items.len() < limits.max_records);
                    prop_assert!(
                        next.size <= limits.max_bytes,
                        "a too-large record must be refused, not cut a batch: {next:?}"
                    );
                    prop_assert!(
                        batch.bytes + next.size > limits.max_bytes,
                        "cut at {} bytes although {next:?} fits under {}",
                        batch.bytes,
                        limits.max_bytes
                    );
                }
                Cut::Records => prop_assert_eq!(batch.items.len(), limits.max_records),
                Cut::Drained => prop_assert_eq!(index, last, "only the queue's end drains a batch"),
            }
        }
    }

    /// (4) No flushed batch is empty, and the loop always makes progress.
    #[test]
    fn no_empty_batch_is_flushed((limits, queue) in limits_and_queue()) {
        for batch in drain(limits, &queue).flushed {
            prop_assert!(!batch.items.is_empty());
        }
    }

    /// `try_push`'s verdict on its own, for callers that do not stop at `is_full` as the
    /// aggregator does (which hides the record cap inside `try_push` from the loop above):
    /// every record is offered to one batch and must get exactly the answer its size and the
    /// batch's state call for.
    #[test]
    fn try_push_answers_by_its_contract((limits, queue) in limits_and_queue()) {
        let mut batch = Batch::new(limits);
        let (mut len, mut bytes) = (0, 0);
        for item in queue {
            let result = batch.try_push(item, item.size);
            if item.size > limits.max_bytes {
                prop_assert_eq!(result, Err(PushError::TooLarge(item)));
            } else if len == limits.max_records || bytes + item.size > limits.max_bytes {
                prop_assert_eq!(result, Err(PushError::Full(item)));
            } else {
                prop_assert_eq!(result, Ok(()));
                len += 1;
                bytes += item.size;
            }
            prop_assert_eq!((batch.len(), batch.bytes()), (len, bytes));
            prop_assert_eq!(batch.is_full(), len == limits.max_records);
        }
    }
}
