//! Unit tests of the spool through its public API, on real files in temporary directories:
//! appends and reading back, group commit, done marks and segment deletion, the bounds, the
//! lock; recovery (torn tails at every byte, corruption) is in `tests/recovery.rs`.

mod recovery;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::config::SpoolSettings;
use crate::domain::{ExplicitHashKey, PartitionKey, Record, Region, StreamName};

pub(super) fn settings(dir: &Path) -> SpoolSettings {
    SpoolSettings {
        dir: dir.display().to_string(),
        max_bytes: 1 << 30,
        segment_bytes: 4096,
        min_free_bytes: 0,
        commit_interval_us: 0,
        commit_max_bytes: 1 << 20,
        done_sync_interval_ms: 20,
        read_delay_ms: 0,
        failed_max_bytes: 0,
    }
}

/// Record `n`: its data names it, every third has an explicit hash key.
pub(super) fn record(n: u64, stream: &str) -> SpoolRecord {
    SpoolRecord {
        region: Region::parse("eu-west-1").unwrap(),
        stream: StreamName::parse(stream).unwrap(),
        record: Record {
            data: Bytes::from(format!(
                "{{\"n\":{n},\"pad\":\"{}\"}}",
                "x".repeat((n % 7 * 13) as usize)
            )),
            partition_key: PartitionKey::parse(format!("key-{n}")).unwrap(),
            explicit_hash_key: (n % 3 == 0)
                .then(|| ExplicitHashKey::parse(&(u128::from(n) << 100).to_string()).unwrap()),
        },
    }
}

pub(super) fn block<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub(super) fn open(settings: &SpoolSettings) -> (Spool, Recovery) {
    Spool::open(settings).expect("opens")
}

/// Appends `records` concurrently (all queued before any is awaited); their ids.
pub(super) fn append(
    spool: &Spool,
    records: impl IntoIterator<Item = SpoolRecord>,
) -> Vec<EntryId> {
    let handles: Vec<Appended> = records
        .into_iter()
        .map(|r| spool.append(r).expect("accepted"))
        .collect();
    handles
        .into_iter()
        .map(|h| h.wait().expect("fsynced"))
        .collect()
}

/// Every live entry from `from` on, read in small pages as a consumer with a cursor would.
pub(super) fn read_all(spool: &Spool, from: EntryId) -> Vec<SpooledRecord> {
    let mut cursor = from;
    let mut all = Vec::new();
    loop {
        let page = spool.read_pending(cursor, 7, 1 << 20).expect("reads");
        assert!(page.next >= cursor, "the cursor never goes back");
        cursor = page.next;
        all.extend(page.records);
        if page.caught_up {
            return all;
        }
    }
}

pub(super) fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn ids(records: &[SpooledRecord]) -> Vec<u64> {
    records.iter().map(|r| r.id.get()).collect()
}

#[test]
fn appends_come_back_in_order_with_their_content_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = open(&settings(dir.path()));
    assert_eq!(
        (recovery.pending_records, recovery.next_id),
        (0, EntryId::new(1))
    );
    let before = SystemTime::now() - Duration::from_secs(1);
    let ids_given = append(&spool, (1..=60).map(|n| record(n, "clicks")));
    assert_eq!(ids_given, (1..=60).map(EntryId::new).collect::<Vec<_>>());
    assert!(
        files(dir.path(), ".seg").len() >= 2,
        "4 KiB segments rotated"
    );
    block(spool.close()).unwrap();
    assert!(matches!(
        spool.append(record(0, "clicks")),
        Err(SpoolError::Closed)
    ));

    let (spool, recovery) = open(&settings(dir.path()));
    assert_eq!(recovery.pending_records, 60);
    let stream = (
        Region::parse("eu-west-1").unwrap(),
        StreamName::parse("clicks").unwrap(),
    );
    assert_eq!(
        recovery.pending_by_stream.into_iter().collect::<Vec<_>>(),
        vec![(stream, 60)]
    );
    assert_eq!(recovery.first_pending, EntryId::new(1));
    assert_eq!(recovery.next_id, EntryId::new(61));
    assert_eq!(
        (recovery.torn_tails_cut, recovery.corrupt_entries_skipped),
        (0, 0)
    );
    let back = read_all(&spool, recovery.first_pending);
    assert_eq!(ids(&back), (1..=60).collect::<Vec<_>>());
    for entry in &back {
        let expected = record(entry.id.get(), "clicks");
        assert_eq!(
            (&entry.region, &entry.stream, &entry.record),
            (&expected.region, &expected.stream, &expected.record)
        );
        assert!(entry.appended_at >= before && entry.appended_at <= SystemTime::now());
    }
    assert_eq!(spool.stats().replayed_at_start, 60);
    assert_eq!(
        append(&spool, [record(61, "clicks")]),
        vec![EntryId::new(61)]
    );
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.segment_bytes = 1 << 20;
    // Long enough that the writer gathers all 200 queued appends, whatever the machine's load.
    s.commit_interval_us = 200_000;
    let (spool, _) = open(&s);
    let handles: Vec<Appended> = (1..=200)
        .map(|n| spool.append(record(n, "clicks")).unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got: Vec<EntryId> = runtime.block_on(async {
        let mut got = Vec::new();
        for handle in handles {
            got.push(handle.await.unwrap());
        }
        got
    });
    assert_eq!(got.last(), Some(&EntryId::new(200)));
    let stats = spool.stats();
    assert_eq!(stats.records_fsynced, 200);
    assert!(stats.fsyncs <= 2, "{stats:?}");
    assert!(stats.records_per_fsync() >= 100.0);
}

#[test]
fn append_many_gives_consecutive_ids_and_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    let first = spool
        .append_many((1..=40).map(|n| record(n, "clicks")).collect())
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(first, EntryId::new(1));
    assert_eq!(spool.durable_end(), EntryId::new(41));
    assert_eq!(ids(&read_all(&spool, first)), (1..=40).collect::<Vec<_>>());
}

#[test]
fn done_entries_are_never_read_again_and_their_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    append(&spool, (1..=100).map(|n| record(n, "clicks")));
    let segments_before = files(dir.path(), ".seg").len();
    spool.mark_done_many((1..=60).map(EntryId::new));
    spool.mark_done(EntryId::new(60)); // twice: no effect
    spool.mark_done(EntryId::new(5_000)); // unknown: ignored
    assert_eq!(
        ids(&read_all(&spool, EntryId::new(1))),
        (61..=100).collect::<Vec<_>>()
    );
    block(spool.sync_done()).unwrap();
    let stats = spool.stats();
    assert_eq!((stats.live_records, stats.done_marks), (40, 60));
    assert!(stats.segments_deleted > 0 && files(dir.path(), ".seg").len() < segments_before);
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(stats.live_bytes, on_disk, "live bytes are the files' bytes");
    spool.crash();

    let (spool, recovery) = open(&settings(dir.path()));
    assert_eq!(recovery.pending_records, 40);
    assert_eq!(recovery.first_pending, EntryId::new(61));
    assert_eq!(
        ids(&read_all(&spool, EntryId::new(1))),
        (61..=100).collect::<Vec<_>>()
    );
    spool.mark_done_many((61..=100).map(EntryId::new));
    block(spool.sync_done()).unwrap();
    assert_eq!(
        files(dir.path(), ".seg").len(),
        1,
        "only the segment being written is left"
    );
    assert_eq!(spool.stats().oldest_live_unix_ms, 0);
    block(spool.close()).unwrap();
    let (_, recovery) = open(&settings(dir.path()));
    assert_eq!(
        (recovery.pending_records, recovery.next_id),
        (0, EntryId::new(101))
    );
}

#[test]
fn reads_keep_to_their_limits_and_can_follow_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    append(
        &spool,
        (1..=30).map(|n| record(n, if n % 2 == 0 { "even" } else { "odd" })),
    );
    let page = spool.read_pending(EntryId::new(1), 3, 1 << 20).unwrap();
    assert_eq!(
        (ids(&page.records), page.next, page.caught_up),
        (vec![1, 2, 3], EntryId::new(4), false)
    );
    let one = record(4, "even").record.kinesis_size();
    let page = spool.read_pending(EntryId::new(4), 100, one + 1).unwrap();
    assert_eq!(ids(&page.records), vec![4], "byte bound");
    let page = spool.read_pending(EntryId::new(4), 100, 1).unwrap();
    assert_eq!(
        ids(&page.records),
        vec![4],
        "the first record always comes, or nothing moves"
    );
    let region = Region::parse("eu-west-1").unwrap();
    let even = StreamName::parse("even").unwrap();
    let page = spool
        .read_pending_for(&region, &even, EntryId::new(1), 100, 1 << 20)
        .unwrap();
    assert_eq!(ids(&page.records), (2..=30).step_by(2).collect::<Vec<_>>());
    assert_eq!((page.next, page.caught_up), (EntryId::new(31), true));
    let elsewhere = Region::parse("us-east-1").unwrap();
    assert!(spool
        .read_pending_for(&elsewhere, &even, EntryId::new(1), 100, 1 << 20)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn a_full_spool_refuses_at_once_and_takes_appends_again_once_segments_are_done() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_bytes = 3 * 4096;
    let (spool, _) = open(&s);
    let mut accepted = Vec::new();
    let refused = loop {
        match spool.append(record(accepted.len() as u64, "clicks")) {
            Ok(handle) => accepted.push(handle.wait().unwrap()),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1_000, "never refused");
    };
    assert_eq!(
        refused,
        SpoolError::Full(FullReason::MaxBytes {
            max_bytes: 3 * 4096
        })
    );
    assert!(refused.to_string().contains("max_bytes"));
    assert_eq!(spool.stats().refused_full, 1);
    assert!(spool.stats().live_bytes <= 3 * 4096);
    spool.mark_done_many(accepted);
    block(spool.sync_done()).unwrap();
    assert!(spool.append(record(1, "clicks")).unwrap().wait().is_ok());
}

#[test]
fn low_free_space_and_impossible_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.min_free_bytes = u64::MAX;
    let (spool, _) = open(&s);
    let refused = spool.append(record(1, "clicks")).map(drop);
    assert!(matches!(
        refused,
        Err(SpoolError::Full(FullReason::LowDiskSpace { .. }))
    ));
    assert!(spool.is_short_of_disk_space());
    if let Err(SpoolError::Full(reason)) = refused {
        assert!(!reason.for_client().chars().any(|c| c.is_ascii_digit()));
    }
    block(spool.close()).unwrap();
    s.min_free_bytes = 0;
    s.max_bytes = 100;
    let (spool, _) = open(&s);
    let mut big = record(1, "clicks");
    big.record.data = Bytes::from(vec![b'1'; 200]);
    assert!(matches!(
        spool.append(big),
        Err(SpoolError::TooLarge { max: 100, .. })
    ));
}

#[test]
fn a_second_open_of_the_directory_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    let err = Spool::open(&settings(dir.path())).expect_err("locked");
    assert_eq!(
        err,
        SpoolError::Locked {
            dir: dir.path().to_owned(),
            pid: Some(std::process::id())
        }
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string())
            && message.contains(&std::process::id().to_string()),
        "{message}"
    );
    block(spool.close()).unwrap();
    assert!(
        Spool::open(&settings(dir.path())).is_ok(),
        "closing releases the lock"
    );
}

#[test]
fn stats_follow_the_oldest_live_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    assert_eq!(spool.stats().oldest_live_age(SystemTime::now()), None);
    append(&spool, (1..=3).map(|n| record(n, "clicks")));
    let age = spool
        .stats()
        .oldest_live_age(SystemTime::now())
        .expect("live");
    assert!(age < Duration::from_secs(5), "{age:?}");
    assert_eq!(spool.stats().live_records, 3);
    spool.mark_done_many((1..=3).map(EntryId::new));
    assert_eq!(
        (
            spool.stats().live_records,
            spool.stats().oldest_live_unix_ms
        ),
        (0, 0)
    );
    assert!(spool.shared.stats.fsyncs.load(Relaxed) >= 1);
}

#[test]
fn a_reader_waiting_for_new_entries_is_woken_by_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    let mut watch = spool.watch_durable_end();
    let writer = spool.clone();
    let end = block(async move {
        let appended = writer.append(record(1, "clicks")).unwrap();
        watch.changed().await.unwrap();
        let end = *watch.borrow();
        appended.await.unwrap();
        end
    });
    assert_eq!(end, EntryId::new(2));
}

#[test]
fn a_writer_that_falls_behind_gets_appends_refused_not_queued_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.segment_bytes = 1 << 30;
    s.commit_max_bytes = 4096;
    let (spool, _) = open(&s);
    // The writer needs the index after each write: holding it stalls the writer (a slow disk).
    let stalled = spool.shared.index();
    let mut waiting = Vec::new();
    let refused = loop {
        match spool.append(record(1, "clicks")) {
            Ok(handle) => waiting.push(handle),
            Err(e) => break e,
        }
        assert!(waiting.len() < 20_000, "never refused");
    };
    assert_eq!(refused, SpoolError::Full(FullReason::WriterBacklog));
    assert!(waiting.len() >= 16_384);
    drop(stalled);
    let answered = waiting
        .into_iter()
        .map(Appended::wait)
        .filter(Result::is_ok)
        .count();
    assert!(answered >= 16_384);
}
