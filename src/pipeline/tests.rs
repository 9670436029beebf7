//! Aggregator and retry behaviour against a fake Kinesis: batching caps, resending only the
//! failed entries, deadlines, fatal errors, backpressure and draining. End-to-end behaviour
//! against the emulator lives in `tests/api`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::BatchLimits;
use super::retry::Backoff;
use super::*;
use crate::domain::{PartitionKey, Record, Region, StreamName};
use crate::kinesis::{CallFailure, EntryResult, PutRecordsApi};

type Behaviour = dyn Fn(usize, &Record) -> Result<EntryResult, CallFailure> + Send + Sync;

/// Records every call; answers each entry with `behaviour(call_index, record)`. A whole-call
/// failure is returned if any entry's behaviour returns `Err`.
struct FakeKinesis {
    calls: Mutex<Vec<Vec<Bytes>>>,
    behaviour: Box<Behaviour>,
    delay: Duration,
    /// The stream's one shard, for tests of shard-aware sending; `None`: no map (shard-blind).
    one_shard: Option<&'static str>,
}

impl FakeKinesis {
    fn new(
        delay: Duration,
        behaviour: impl Fn(usize, &Record) -> Result<EntryResult, CallFailure> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self::build(delay, behaviour, None))
    }

    /// A fake whose stream has one shard, `shardId-000000000000`, over the whole hash range.
    fn with_one_shard(
        delay: Duration,
        behaviour: impl Fn(usize, &Record) -> Result<EntryResult, CallFailure> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self::build(delay, behaviour, Some("shardId-000000000000")))
    }

    fn build(
        delay: Duration,
        behaviour: impl Fn(usize, &Record) -> Result<EntryResult, CallFailure> + Send + Sync + 'static,
        one_shard: Option<&'static str>,
    ) -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            behaviour: Box::new(behaviour),
            delay,
            one_shard,
        }
    }

    fn calls(&self) -> Vec<Vec<Bytes>> {
        self.calls.lock().expect("lock").clone()
    }
}

fn accept(record: &Record) -> EntryResult {
    EntryResult::Accepted {
        shard_id: "shardId-000000000000".into(),
        sequence_number: format!("seq-{}", String::from_utf8_lossy(&record.data)),
    }
}

fn throttled() -> EntryResult {
    EntryResult::Failed {
        code: "ProvisionedThroughputExceededException".into(),
        message: "Rate exceeded".into(),
    }
}

impl PutRecordsApi for FakeKinesis {
    async fn put_records<'a>(
        &'a self,
        _stream: &'a StreamName,
        records: Vec<&'a Record>,
    ) -> Result<Vec<EntryResult>, CallFailure> {
        let index = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(records.iter().map(|r| r.data.clone()).collect());
            calls.len() - 1
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        records.iter().map(|r| (self.behaviour)(index, r)).collect()
    }

    async fn open_shards<'a>(
        &'a self,
        _stream: &'a StreamName,
    ) -> Result<crate::kinesis::ShardMap, CallFailure> {
        let unsupported = CallFailure {
            code: "unsupported".into(),
            status: None,
            message: "no shards in this fake".into(),
        };
        let id = self.one_shard.ok_or(unsupported.clone())?;
        crate::kinesis::ShardMap::new(vec![crate::kinesis::ShardRange {
            id: id.into(),
            start: 0,
            end: u128::MAX,
        }])
        .map_err(|message| CallFailure {
            message,
            ..unsupported
        })
    }
}

fn settings() -> PipelineSettings {
    PipelineSettings {
        ordered: false,
        aggregate_max_bytes: None,
        batch: BatchLimits {
            max_records: 500,
            max_bytes: 5 * 1024 * 1024,
        },
        linger: Duration::from_millis(5),
        arrival_gap: Duration::from_micros(200),
        max_in_flight_calls: 2,
        queue_max_records: 100_000,
        queue_max_bytes: 64 * 1024 * 1024,
        record_deadline: Duration::from_secs(10),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        shutdown_grace: Duration::from_secs(5),
        shard_aware: true,
        map_refresh: Duration::from_secs(60),
        shard_limits: ShardLimits {
            records_per_second: 1_000.0,
            bytes_per_second: 1_048_576.0,
            decrease_factor: 0.7,
            decrease_interval: Duration::from_millis(500),
            min_share: 0.05,
            increase_step: 0.05,
            increase_interval: Duration::from_millis(500),
            quiet_period: Duration::from_secs(2),
        },
        max_backlog_share: 1.0,
        shard_gather: Duration::from_millis(10),
    }
}

fn record(n: usize) -> Record {
    Record {
        data: Bytes::from(format!("{n}")),
        partition_key: PartitionKey::parse(format!("k{n}")).expect("key"),
        explicit_hash_key: None,
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    pipeline: Option<Arc<Pipeline>>,
    thread: Option<JoinHandle<()>>,
}

impl Harness {
    fn start(api: Arc<FakeKinesis>, settings: PipelineSettings) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (pipeline, thread) = Pipeline::start(
            Region::us_west_2(),
            StreamName::parse("test").expect("name"),
            api,
            settings,
            1024 * 1024,
            Acknowledgement::Kinesis,
            runtime.handle().clone(),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("start");
        Self {
            runtime,
            pipeline: Some(pipeline),
            thread: Some(thread),
        }
    }

    fn pipeline(&self) -> &Pipeline {
        self.pipeline.as_ref().expect("running")
    }

    /// Submits `count` single records and waits for every outcome, in order.
    fn send_all(&self, count: usize) -> Vec<RecordOutcome> {
        let receivers: Vec<_> = (0..count)
            .map(|n| {
                self.pipeline()
                    .submit_one(record(n), Instant::now())
                    .expect("admitted")
                    .expect("waits for Kinesis")
            })
            .collect();
        self.runtime.block_on(async {
            let mut outcomes = Vec::new();
            for r in receivers {
                outcomes.push(r.await.expect("answered"));
            }
            outcomes
        })
    }

    /// Drops the handle and waits for the aggregator to drain and stop.
    fn close(&mut self) {
        self.pipeline = None;
        if let Some(thread) = self.thread.take() {
            thread.join().expect("aggregator thread");
        }
    }
}

#[test]
fn batches_respect_the_record_cap_and_every_record_is_answered_once() {
    let api = FakeKinesis::new(Duration::from_millis(20), |_, r| Ok(accept(r)));
    let mut h = Harness::start(api.clone(), settings());
    let outcomes = h.send_all(1_700);
    assert!(outcomes.iter().all(Result::is_ok));
    for (n, outcome) in outcomes.iter().enumerate() {
        let accepted = outcome.as_ref().expect("ok");
        assert_eq!(
            accepted.sequence_number,
            format!("seq-{n}"),
            "each client gets its own record's answer"
        );
    }
    h.close();
    let calls = api.calls();
    assert!(
        calls.iter().all(|c| c.len() <= 500),
        "{:?}",
        calls.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let sent: usize = calls.iter().map(Vec::len).sum();
    assert_eq!(sent, 1_700, "no record sent twice or lost");
    assert!(
        calls.len() <= 10,
        "batching: {} calls for 1,700 records",
        calls.len()
    );
}

#[test]
fn byte_cap_splits_batches() {
    let api = FakeKinesis::new(Duration::ZERO, |_, r| Ok(accept(r)));
    let mut s = settings();
    s.batch.max_bytes = 100;
    let mut h = Harness::start(api.clone(), s);
    // Each record is "nn" + "knn": 5 bytes (single digit 3 bytes): at most 100 bytes per call.
    let outcomes = h.send_all(300);
    assert!(outcomes.iter().all(Result::is_ok));
    h.close();
    for call in api.calls() {
        let bytes: usize = call.iter().map(|d| d.len() * 2 + 1).sum();
        assert!(bytes <= 100, "call of {bytes} bytes");
    }
}

#[test]
fn only_failed_entries_are_resent_until_accepted() {
    // Odd records are throttled on their first two attempts.
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::<Bytes, u32>::new()));
    let seen = attempts.clone();
    let api = FakeKinesis::new(Duration::ZERO, move |_, r| {
        let n: usize = std::str::from_utf8(&r.data)
            .expect("utf8")
            .parse()
            .expect("number");
        let mut seen = seen.lock().expect("lock");
        let count = seen.entry(r.data.clone()).or_insert(0);
        *count += 1;
        Ok(if n % 2 == 1 && *count <= 2 {
            throttled()
        } else {
            accept(r)
        })
    });
    let mut h = Harness::start(api.clone(), settings());
    let outcomes = h.send_all(100);
    assert!(
        outcomes.iter().all(Result::is_ok),
        "all accepted after retries"
    );
    h.close();
    let attempts = attempts.lock().expect("lock");
    for (data, count) in attempts.iter() {
        let n: usize = std::str::from_utf8(data)
            .expect("utf8")
            .parse()
            .expect("number");
        assert_eq!(*count, if n % 2 == 1 { 3 } else { 1 }, "record {n}");
    }
    let total: u32 = attempts.values().sum();
    assert_eq!(total, 100 + 50 * 2);
}

#[test]
fn entries_failing_past_their_deadline_are_answered_with_the_last_error() {
    let api = FakeKinesis::new(Duration::ZERO, |_, r| {
        Ok(if r.data.as_ref() == b"1" {
            throttled()
        } else {
            accept(r)
        })
    });
    let mut s = settings();
    s.record_deadline = Duration::from_millis(300);
    let mut h = Harness::start(api.clone(), s);
    let started = Instant::now();
    let outcomes = h.send_all(3);
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    let failure = outcomes[1].as_ref().expect_err("throttled until deadline");
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(
        failure.kinesis_code,
        "ProvisionedThroughputExceededException"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    h.close();
    assert!(
        api.calls().len() >= 3,
        "it was retried: {} calls",
        api.calls().len()
    );
}

#[test]
fn fatal_call_errors_fail_at_once_without_retry() {
    let api = FakeKinesis::new(Duration::ZERO, |_, _| {
        Err(CallFailure {
            code: "AccessDeniedException".into(),
            status: Some(400),
            message: "User arn:aws:sts::123:assumed-role/x is not authorized".into(),
        })
    });
    let mut h = Harness::start(api.clone(), settings());
    let outcomes = h.send_all(5);
    assert!(!h.pipeline().stream_missing());
    h.close();
    for outcome in outcomes {
        let failure = outcome.expect_err("rejected");
        assert_eq!(failure.kind, FailureKind::Rejected);
        assert_eq!(failure.kinesis_code, "AccessDeniedException");
    }
    let sent: usize = api.calls().iter().map(Vec::len).sum();
    assert_eq!(sent, 5, "never retried");
}

#[test]
fn a_missing_stream_fails_its_records_and_flags_the_pipeline_for_retirement() {
    let api = FakeKinesis::new(Duration::ZERO, |_, _| {
        Err(CallFailure {
            code: "ResourceNotFoundException".into(),
            status: Some(400),
            message: "Stream test under account 000000000000 not found.".into(),
        })
    });
    let mut h = Harness::start(api.clone(), settings());
    let outcomes = h.send_all(3);
    assert!(h.pipeline().stream_missing(), "the registry must retire it");
    h.close();
    for outcome in outcomes {
        assert_eq!(
            outcome.expect_err("missing").kind,
            FailureKind::StreamNotFound
        );
    }
    assert_eq!(
        api.calls().iter().map(Vec::len).sum::<usize>(),
        3,
        "never retried"
    );
}

#[test]
fn unreachable_kinesis_fails_records_as_unavailable_at_their_deadline() {
    let api = FakeKinesis::new(Duration::ZERO, |_, _| {
        Err(CallFailure {
            code: CallFailure::CONNECTION.into(),
            status: None,
            message: "connection refused".into(),
        })
    });
    let mut s = settings();
    s.record_deadline = Duration::from_millis(200);
    let mut h = Harness::start(api.clone(), s);
    let outcomes = h.send_all(2);
    h.close();
    for outcome in outcomes {
        assert_eq!(
            outcome.expect_err("unavailable").kind,
            FailureKind::Unavailable
        );
    }
    assert!(api.calls().len() >= 2, "retried while the deadline allowed");
}

#[test]
fn a_full_budget_refuses_at_once_and_frees_on_answer() {
    let api = FakeKinesis::new(Duration::from_millis(200), |_, r| Ok(accept(r)));
    let mut s = settings();
    s.queue_max_records = 3;
    let mut h = Harness::start(api, s);
    let p = h.pipeline();
    let receivers: Vec<_> = (0..3)
        .map(|n| p.submit_one(record(n), Instant::now()).expect("admitted"))
        .collect();
    let refused_at = Instant::now();
    assert_eq!(
        p.submit_one(record(9), Instant::now()).err(),
        Some(SubmitError::QueueFull)
    );
    assert_eq!(
        p.submit_many(vec![record(10)], Instant::now()).err(),
        Some(SubmitError::QueueFull)
    );
    assert!(
        refused_at.elapsed() < Duration::from_millis(50),
        "refusal does not wait"
    );
    assert_eq!(p.depth().0, 3);
    h.runtime.block_on(async {
        for r in receivers.into_iter().flatten() {
            r.await.expect("answered").expect("accepted");
        }
    });
    assert_eq!(h.pipeline().depth(), (0, 0), "tickets returned");
    assert!(h.pipeline().submit_one(record(11), Instant::now()).is_ok());
    h.close();
}

#[test]
fn closing_drains_everything_queued() {
    let api = FakeKinesis::new(Duration::from_millis(30), |_, r| Ok(accept(r)));
    let mut h = Harness::start(api.clone(), settings());
    let receivers: Vec<_> = (0..1_000)
        .map(|n| {
            h.pipeline()
                .submit_one(record(n), Instant::now())
                .expect("admitted")
                .expect("receiver")
        })
        .collect();
    h.close();
    let accepted = h.runtime.block_on(async {
        let mut ok = 0;
        for r in receivers {
            if let Ok(Ok(_)) = r.await {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(accepted, 1_000);
    assert_eq!(api.calls().iter().map(Vec::len).sum::<usize>(), 1_000);
}

#[test]
fn a_lone_record_is_sent_at_once_when_nothing_is_in_flight() {
    let api = FakeKinesis::new(Duration::ZERO, |_, r| Ok(accept(r)));
    let mut s = settings();
    s.linger = Duration::from_secs(5);
    let mut h = Harness::start(api, s);
    let started = Instant::now();
    let outcomes = h.send_all(1);
    assert!(outcomes[0].is_ok());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "did not wait for the 5 s linger"
    );
    h.close();
}

#[test]
fn clients_answered_by_a_call_get_one_arrival_gap_to_join_the_next_batch() {
    // Every step below has 140 ms or more of slack, so a busy machine cannot reorder them.
    let api = FakeKinesis::new(Duration::from_millis(300), |_, r| Ok(accept(r)));
    let mut s = settings();
    s.arrival_gap = Duration::from_millis(150);
    s.linger = Duration::from_secs(5);
    let mut h = Harness::start(api.clone(), s);
    let submit = |n: usize| {
        h.pipeline()
            .submit_one(record(n), Instant::now())
            .expect("admitted")
            .expect("waits for Kinesis")
    };
    // Record 0 goes out alone one gap (150 ms) after it arrives; the call takes 300 ms.
    let first = submit(0);
    std::thread::sleep(Duration::from_millis(300));
    // Record 1 arrives during that call and waits (linger is 5 s).
    let waiting = submit(1);
    // Record 0's client is answered and sends again one round trip later (10 ms here), as a
    // client sending one event after another does.
    h.runtime
        .block_on(first)
        .expect("answered")
        .expect("accepted");
    std::thread::sleep(Duration::from_millis(10));
    let returner = submit(2);
    for receiver in [waiting, returner] {
        h.runtime
            .block_on(receiver)
            .expect("answered")
            .expect("accepted");
    }
    h.close();
    let calls: Vec<Vec<Bytes>> = api.calls();
    assert_eq!(
        calls,
        vec![
            vec![Bytes::from("0")],
            vec![Bytes::from("1"), Bytes::from("2")]
        ],
        "record 1 waited for the answered client instead of going out alone"
    );
}

#[test]
fn an_endpoint_refusing_large_bodies_gets_smaller_batches_and_loses_nothing() {
    // The fake refuses any call above 1.5 MB, as an emulator with a body cap would.
    let refusing = FakeKinesis::new(Duration::ZERO, |_, r| Ok(accept(r)));
    struct Capped(Arc<FakeKinesis>);
    impl PutRecordsApi for Capped {
        async fn put_records<'a>(
            &'a self,
            stream: &'a StreamName,
            records: Vec<&'a Record>,
        ) -> Result<Vec<EntryResult>, CallFailure> {
            let bytes: usize = records.iter().map(|r| r.kinesis_size()).sum();
            if bytes > 1_500_000 {
                self.0.calls.lock().expect("lock").push(Vec::new());
                return Err(CallFailure {
                    code: CallFailure::REQUEST_TOO_LARGE.into(),
                    status: Some(413),
                    message: String::new(),
                });
            }
            self.0.put_records(stream, records).await
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let mut s = settings();
    s.batch.max_bytes = 4 * 1024 * 1024;
    s.max_in_flight_calls = 1;
    let (pipeline, thread) = Pipeline::start(
        Region::us_west_2(),
        StreamName::parse("test").expect("name"),
        Arc::new(Capped(refusing.clone())),
        s,
        1024 * 1024,
        Acknowledgement::Kinesis,
        runtime.handle().clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("start");
    let records: Vec<Record> = (0..40)
        .map(|n| Record {
            data: Bytes::from(vec![b'x'; 100_000 + n]),
            partition_key: PartitionKey::parse("k").expect("key"),
            explicit_hash_key: None,
        })
        .collect();
    let receivers = pipeline
        .submit_many(records, Instant::now())
        .expect("admitted");
    let outcomes: Vec<RecordOutcome> = runtime.block_on(async {
        let mut out = Vec::new();
        for r in receivers.into_iter().flatten() {
            out.push(r.await.expect("answered"));
        }
        out
    });
    assert!(
        outcomes.iter().all(Result::is_ok),
        "all written after shrinking"
    );
    drop(pipeline);
    thread.join().expect("thread");
    let delivered: usize = refusing.calls().iter().map(Vec::len).sum();
    assert_eq!(delivered, 40, "each record delivered once");
}

#[test]
fn an_ordered_stream_writes_each_keys_records_in_acceptance_order_despite_throttling() {
    // Every third attempt of every record is throttled (by a counter, so retries interleave),
    // and the order Kinesis accepted records in is kept.
    let accepted = Arc::new(Mutex::new(Vec::<(String, usize)>::new()));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (log, counter) = (accepted.clone(), attempts.clone());
    let api = FakeKinesis::new(Duration::from_millis(2), move |_, r| {
        let attempt = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if attempt % 3 == 0 {
            return Ok(throttled());
        }
        let n: usize = std::str::from_utf8(&r.data)
            .expect("utf8")
            .parse()
            .expect("number");
        let key = r.partition_key.as_str().to_owned();
        log.lock().expect("lock").push((key, n));
        Ok(accept(r))
    });
    let mut s = settings();
    s.ordered = true;
    let mut h = Harness::start(api.clone(), s);
    let keyed = |n: usize| Record {
        data: Bytes::from(format!("{n}")),
        partition_key: PartitionKey::parse(format!("key-{}", n % 4)).expect("key"),
        explicit_hash_key: None,
    };
    let receivers: Vec<_> = (0..200)
        .map(|n| {
            h.pipeline()
                .submit_one(keyed(n), Instant::now())
                .expect("admitted")
                .expect("waits for Kinesis")
        })
        .collect();
    let outcomes: Vec<RecordOutcome> = h.runtime.block_on(async {
        let mut outcomes = Vec::new();
        for r in receivers {
            outcomes.push(r.await.expect("answered"));
        }
        outcomes
    });
    assert!(outcomes.iter().all(Result::is_ok), "all written in the end");
    h.close();

    let accepted = accepted.lock().expect("lock");
    assert_eq!(accepted.len(), 200);
    for key in 0..4 {
        let order: Vec<usize> = accepted
            .iter()
            .filter(|(k, _)| *k == format!("key-{key}"))
            .map(|(_, n)| *n)
            .collect();
        let sent: Vec<usize> = (0..200).filter(|n| n % 4 == key).collect();
        assert_eq!(order, sent, "key-{key} written in acceptance order");
    }
    for call in api.calls() {
        let mut keys: Vec<usize> = call
            .iter()
            .map(|d| {
                std::str::from_utf8(d)
                    .expect("utf8")
                    .parse::<usize>()
                    .expect("n")
                    % 4
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys.len(),
            call.len(),
            "at most one record per key per call"
        );
    }
}

#[test]
fn an_aggregating_stream_answers_each_event_with_its_index_and_retries_failed_aggregates_whole() {
    use crate::kinesis::aggregation::decode;

    // An aggregate holding an event seen for the first time is throttled: every event's first
    // attempt fails, whole aggregates at a time, and its retry (in whatever aggregate) passes.
    let seen = Arc::new(Mutex::new(std::collections::HashSet::<Vec<u8>>::new()));
    let throttles = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (first_seen, throttle_count) = (seen.clone(), throttles.clone());
    let api = FakeKinesis::with_one_shard(Duration::from_millis(5), move |_, r| {
        let Ok(users) = decode(&r.data) else {
            return Ok(accept(r));
        };
        let mut seen = first_seen.lock().expect("lock");
        // Every member is marked seen, so not `any` (which would stop at the first).
        let fresh = users
            .into_iter()
            .filter(|user| seen.insert(user.data.clone()))
            .count()
            > 0;
        if fresh {
            throttle_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(throttled());
        }
        Ok(accept(r))
    });
    let mut s = settings();
    s.aggregate_max_bytes = Some(2_000);
    let mut h = Harness::start(api.clone(), s);
    // Wait for the map (records sent before it go shard-blind, one Kinesis record each): two
    // records submitted together share an aggregate once it is there.
    let started = Instant::now();
    while !h.send_all(2).iter().all(|o| {
        o.as_ref()
            .is_ok_and(|accepted| accepted.sub_sequence_number.is_some())
    }) {
        assert!(started.elapsed() < Duration::from_secs(5), "no shard map");
        std::thread::sleep(Duration::from_millis(10));
    }
    let outcomes = h.send_all(400);
    h.close();

    let mut places = std::collections::HashSet::new();
    for outcome in &outcomes {
        let accepted = outcome.as_ref().expect("every event accepted in the end");
        let index = accepted.sub_sequence_number.expect("aggregated");
        assert!(
            places.insert((accepted.sequence_number.clone(), index)),
            "two events answered with the same place"
        );
    }
    assert!(throttles.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let kinesis_records: usize = api.calls().iter().map(Vec::len).sum();
    assert!(
        kinesis_records < 100,
        "{kinesis_records} Kinesis records for 400 events"
    );
}

/// What Kinesis does with a call holding one record it finds invalid: refuses the whole call.
fn refuse_if_poisoned(record: &Record) -> Result<EntryResult, CallFailure> {
    let poisoned = record.data.windows(6).any(|w| w == b"poison");
    if poisoned {
        return Err(CallFailure {
            code: "ValidationException".into(),
            status: Some(400),
            message: "1 validation error detected".into(),
        });
    }
    Ok(accept(record))
}

/// Submits records `0..count`, those in `poisoned` carrying the marker, and waits for every
/// outcome in order.
fn send_with_poison(h: &Harness, count: usize, poisoned: &[usize]) -> Vec<RecordOutcome> {
    let receivers: Vec<_> = (0..count)
        .map(|n| {
            let mut r = record(n);
            if poisoned.contains(&n) {
                r.data = Bytes::from(format!("{n}-poison"));
            }
            h.pipeline()
                .submit_one(r, Instant::now())
                .expect("admitted")
                .expect("waits for Kinesis")
        })
        .collect();
    h.runtime.block_on(async {
        let mut outcomes = Vec::new();
        for r in receivers {
            outcomes.push(r.await.expect("answered"));
        }
        outcomes
    })
}

#[test]
fn a_call_refused_as_invalid_fails_only_the_offending_records() {
    let api = FakeKinesis::new(Duration::from_millis(2), |_, r| refuse_if_poisoned(r));
    let mut h = Harness::start(api.clone(), settings());
    let poisoned = [7, 123, 124, 399];
    let outcomes = send_with_poison(&h, 400, &poisoned);
    h.close();
    for (n, outcome) in outcomes.iter().enumerate() {
        if poisoned.contains(&n) {
            let failure = outcome.as_ref().expect_err("the poisoned record fails");
            assert_eq!(failure.kind, FailureKind::Invalid, "record {n}");
            assert_eq!(failure.kinesis_code, "ValidationException");
        } else {
            let accepted = outcome.as_ref().expect("every other record is written");
            assert_eq!(accepted.sequence_number, format!("seq-{n}"));
        }
    }
    let calls = api.calls();
    let written: usize = calls
        .iter()
        .filter(|c| !c.iter().any(|d| d.windows(6).any(|w| w == b"poison")))
        .map(Vec::len)
        .sum();
    assert_eq!(
        written,
        400 - poisoned.len(),
        "each good record written once"
    );
    // Bounded: a bisection of n records makes at most 2n - 1 calls.
    assert!(calls.len() < 2 * 400, "{} calls", calls.len());
    let poisoned_sends = calls
        .iter()
        .flatten()
        .filter(|d| d.windows(6).any(|w| w == b"poison"))
        .count();
    assert!(
        poisoned_sends <= poisoned.len() * 12,
        "a poisoned record is in at most ~log2(n) + 2 calls: {poisoned_sends}"
    );
}

#[test]
fn an_aggregate_refused_as_invalid_is_unpacked_and_only_the_offender_fails() {
    let api = FakeKinesis::with_one_shard(Duration::from_millis(2), |_, r| refuse_if_poisoned(r));
    let mut s = settings();
    s.aggregate_max_bytes = Some(50_000);
    let mut h = Harness::start(api.clone(), s);
    // Wait for the map, so the records below are aggregated.
    let started = Instant::now();
    while !h.send_all(2).iter().all(|o| {
        o.as_ref()
            .is_ok_and(|accepted| accepted.sub_sequence_number.is_some())
    }) {
        assert!(started.elapsed() < Duration::from_secs(5), "no shard map");
        std::thread::sleep(Duration::from_millis(10));
    }
    let outcomes = send_with_poison(&h, 300, &[150]);
    h.close();
    for (n, outcome) in outcomes.iter().enumerate() {
        if n == 150 {
            let failure = outcome.as_ref().expect_err("the poisoned record fails");
            assert_eq!(failure.kind, FailureKind::Invalid);
        } else {
            assert!(outcome.is_ok(), "record {n}: {outcome:?}");
        }
    }
}
