//! Model-based property test of the spool: random sequences of appends (answered, or left
//! queued), done marks, done syncs, reads, clean restarts and crashes, checked against a model
//! of what must hold:
//! - an entry whose append was answered is returned by every read and after every restart
//!   until it is marked done, with its content;
//! - an entry whose done mark is durable (a `sync_done` or `close` after the mark, or a restart
//!   that found it done) is never returned again;
//! - a mark not yet durable may be lost to a crash (the entry then comes back), never more.
//!
//! A crash stops the writer between two group commits (as a SIGKILL does, everything answered
//! was fsynced), then simulates what a crash mid-write and a power failure leave: done files
//! cut at any byte after their last synced length, and the last segment extended by the first
//! bytes of frames the crash interrupted (any number of bytes: whole frames, never answered,
//! may come back; a partial one must be cut as a torn tail) and possibly junk. Not simulated:
//! a deleted segment coming back because its directory entry was not yet synced (that only
//! sends its entries again, which at-least-once allows).
//!
//! Case counts are kept moderate (each case opens the spool several times, with fsyncs) so
//! `cargo test --lib` stays fast.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use proptest::prelude::*;

use super::frame;
use super::tests::{block, files, open, read_all, record, settings};
use super::*;
use crate::config::SpoolSettings;

#[derive(Debug, Clone)]
enum Op {
    /// Appends records of these data sizes, all queued before any answer is awaited.
    Append(Vec<usize>),
    /// Appends and leaves the answers waiting: a crash may come first.
    Queue(Vec<usize>),
    /// Marks `count` live entries done, from position `at` (modulo) of the live ones.
    MarkDone {
        at: usize,
        count: usize,
    },
    SyncDone,
    Read,
    Restart,
    Crash(Crash),
}

#[derive(Debug, Clone)]
struct Crash {
    /// Per done file, where in its unsynced part it is cut (a fraction, in 1/65536ths).
    done_cuts: Vec<u16>,
    /// Frames the crash interrupted, of these data sizes...
    frames: Vec<usize>,
    /// ...of whose bytes this many (modulo their length + 1) reached the disk...
    keep: usize,
    /// ...followed by junk.
    junk: Vec<u8>,
}

fn op() -> impl Strategy<Value = Op> {
    let sizes = || prop::collection::vec(0usize..300, 1..5);
    prop_oneof![
        4 => sizes().prop_map(Op::Append),
        2 => sizes().prop_map(Op::Queue),
        3 => (any::<usize>(), 1usize..6).prop_map(|(at, count)| Op::MarkDone { at, count }),
        1 => Just(Op::SyncDone),
        1 => Just(Op::Read),
        1 => Just(Op::Restart),
        2 => crash().prop_map(Op::Crash),
    ]
}

fn crash() -> impl Strategy<Value = Crash> {
    (
        prop::collection::vec(any::<u16>(), 0..4),
        prop::collection::vec(0usize..200, 0..3),
        any::<usize>(),
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(|(done_cuts, frames, keep, junk)| Crash {
            done_cuts,
            frames,
            keep,
            junk,
        })
}

struct Model {
    settings: SpoolSettings,
    spool: Spool,
    /// Answered (or recovered) entries and their content.
    contents: HashMap<u64, SpoolRecord>,
    live: BTreeSet<u64>,
    /// Marked done, the mark not yet durable.
    marked: BTreeSet<u64>,
    durable_done: BTreeSet<u64>,
    queued: Vec<(SpoolRecord, Appended)>,
    /// Length of each done file known to be durable.
    synced: HashMap<PathBuf, u64>,
    /// Makes every record's content unique.
    seq: u64,
}

impl Model {
    fn new_record(&mut self, size: usize) -> SpoolRecord {
        self.seq += 1;
        let mut r = record(self.seq, "clicks");
        r.record.data = bytes::Bytes::from(format!("{}:{}", self.seq, "d".repeat(size)));
        r
    }

    fn dir(&self) -> PathBuf {
        PathBuf::from(&self.settings.dir)
    }

    fn accept(&mut self, id: EntryId, record: SpoolRecord) {
        self.contents.insert(id.get(), record);
        self.live.insert(id.get());
    }

    /// Waits for the queued appends; those the writer answered are acknowledged.
    fn settle(&mut self) {
        for (record, handle) in std::mem::take(&mut self.queued) {
            if let Ok(id) = handle.wait() {
                self.accept(id, record);
            }
        }
    }

    /// Every done file's length is durable now.
    fn all_done_synced(&mut self) {
        self.synced = files(&self.dir(), ".done")
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p).unwrap().len();
                (p, len)
            })
            .collect();
        self.durable_done.extend(std::mem::take(&mut self.marked));
    }

    /// Reads everything back and checks it against the model; after a restart, marks that did
    /// not survive bring their entries back to life.
    fn check(&mut self, after_restart: Option<&Recovery>) -> Result<(), TestCaseError> {
        let back = read_all(&self.spool, EntryId::new(1));
        let returned: BTreeSet<u64> = back.iter().map(|r| r.id.get()).collect();
        prop_assert_eq!(returned.len(), back.len(), "an entry returned twice");
        for entry in &back {
            let id = entry.id.get();
            prop_assert!(
                !self.durable_done.contains(&id),
                "{} returned after its done mark was durable",
                id
            );
            let expected = self.contents.get(&id);
            prop_assert!(expected.is_some(), "{} was never appended", id);
            prop_assert_eq!(&entry.record, &expected.unwrap().record);
            prop_assert!(
                self.live.contains(&id) || (after_restart.is_some() && self.marked.contains(&id)),
                "{} is done",
                id
            );
        }
        let missing: Vec<&u64> = self.live.difference(&returned).collect();
        prop_assert!(
            missing.is_empty(),
            "acknowledged entries lost: {:?}",
            missing
        );
        if let Some(recovery) = after_restart {
            prop_assert_eq!(recovery.pending_records, back.len() as u64);
            let revived: Vec<u64> = self.marked.intersection(&returned).copied().collect();
            for id in revived {
                self.marked.remove(&id);
                self.live.insert(id);
            }
            // The rest were found done, and open made what it found durable.
            self.all_done_synced();
        }
        Ok(())
    }

    fn reopen(&mut self) -> Recovery {
        let (spool, recovery) = open(&self.settings);
        self.spool = spool;
        recovery
    }

    fn crash(&mut self, crash: &Crash) -> Result<(), TestCaseError> {
        self.spool.crash();
        // Read after the writer stopped: it may have committed queued appends until then.
        let next = self.spool.durable_end().get();
        self.settle();
        for (i, path) in files(&self.dir(), ".done").into_iter().enumerate() {
            let len = std::fs::metadata(&path).unwrap().len();
            let synced = self.synced.get(&path).copied().unwrap_or(0).min(len);
            let cut = crash
                .done_cuts
                .get(i)
                .map_or(1.0, |c| f64::from(*c) / 65536.0);
            let keep = synced + ((len - synced) as f64 * cut) as u64;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(keep)
                .unwrap();
        }
        let segment = files(&self.dir(), ".seg").pop().expect("a segment");
        let mut bytes = std::fs::read(&segment).unwrap();
        let seed = frame::seed(frame::parse_segment_header(&bytes).unwrap());
        let (mut tail, mut ends) = (Vec::new(), Vec::new());
        let records: Vec<SpoolRecord> = crash.frames.iter().map(|s| self.new_record(*s)).collect();
        for (i, record) in records.iter().enumerate() {
            frame::encode(&mut tail, seed, next + i as u64, 1, record);
            ends.push(tail.len());
        }
        let keep = crash.keep % (tail.len() + 1);
        tail.truncate(keep);
        let whole = ends.iter().filter(|end| **end <= keep).count();
        let torn = (keep > 0 && !ends.contains(&keep)) || !crash.junk.is_empty();
        tail.extend_from_slice(&crash.junk);
        bytes.extend_from_slice(&tail);
        std::fs::write(&segment, bytes).unwrap();
        let recovery = self.reopen();
        prop_assert_eq!(recovery.torn_tails_cut, u64::from(torn));
        prop_assert_eq!(recovery.corrupt_entries_skipped, 0);
        // Frames written whole before the crash are entries, even though never answered.
        for (i, record) in records.into_iter().take(whole).enumerate() {
            self.accept(EntryId::new(next + i as u64), record);
        }
        self.check(Some(&recovery))
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(sizes) => {
                self.settle();
                let records: Vec<SpoolRecord> = sizes.iter().map(|s| self.new_record(*s)).collect();
                let handles: Vec<Appended> = records
                    .iter()
                    .map(|r| self.spool.append(r.clone()).unwrap())
                    .collect();
                for (record, handle) in records.into_iter().zip(handles) {
                    let id = handle.wait().unwrap();
                    self.accept(id, record);
                }
            }
            Op::Queue(sizes) => {
                for size in sizes {
                    let record = self.new_record(*size);
                    let handle = self.spool.append(record.clone()).unwrap();
                    self.queued.push((record, handle));
                }
            }
            Op::MarkDone { at, count } => {
                let live: Vec<u64> = self.live.iter().copied().collect();
                if !live.is_empty() {
                    let chosen: Vec<u64> = live
                        .iter()
                        .cycle()
                        .skip(at % live.len())
                        .take((*count).min(live.len()))
                        .copied()
                        .collect();
                    self.spool
                        .mark_done_many(chosen.iter().map(|id| EntryId::new(*id)));
                    for id in chosen {
                        self.live.remove(&id);
                        self.marked.insert(id);
                    }
                }
            }
            Op::SyncDone => {
                block(self.spool.sync_done()).unwrap();
                self.all_done_synced();
            }
            Op::Read => {
                self.settle();
                self.check(None)?;
            }
            Op::Restart => {
                self.settle();
                block(self.spool.close()).unwrap();
                self.all_done_synced();
                let recovery = self.reopen();
                prop_assert_eq!(recovery.torn_tails_cut, 0);
                self.check(Some(&recovery))?;
            }
            Op::Crash(crash) => self.crash(crash)?,
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_entries_survive_and_durably_done_ones_never_return(
        ops in prop::collection::vec(op(), 1..40),
        last in crash(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        // Small segments: rotation and deletion happen within a case.
        settings.segment_bytes = 2048;
        let (spool, _) = open(&settings);
        let mut model = Model {
            settings,
            spool,
            contents: HashMap::new(),
            live: BTreeSet::new(),
            marked: BTreeSet::new(),
            durable_done: BTreeSet::new(),
            queued: Vec::new(),
            synced: HashMap::new(),
            seq: 0,
        };
        for op in &ops {
            model.apply(op)?;
        }
        model.apply(&Op::Crash(last))?;
    }
}
