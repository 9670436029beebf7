//! Recovery: torn tails cut at every byte of the last entry, corrupt entries in the middle
//! skipped and counted, a crash of the writer, leftovers of a crash while deleting, and done
//! marks that must not outlive the entries they named.

use super::*;
use crate::spool::frame;

/// A spool with entries 1..=n in one segment, closed; its segment file.
fn closed_spool(dir: &Path, n: u64) -> (SpoolSettings, PathBuf) {
    let mut s = settings(dir);
    s.segment_bytes = 1 << 20;
    let (spool, _) = open(&s);
    append(&spool, (1..=n).map(|i| record(i, "clicks")));
    block(spool.close()).unwrap();
    let segment = files(dir, ".seg").pop().unwrap();
    (s, segment)
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_of_the_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (s, segment) = closed_spool(dir.path(), 5);
    let whole = std::fs::read(&segment).unwrap();
    let last_start = whole.len() - frame::encoded_len(&record(5, "clicks"));
    for cut in last_start..whole.len() {
        std::fs::write(&segment, &whole[..cut]).unwrap();
        let (spool, recovery) = open(&s);
        assert_eq!(recovery.pending_records, 4, "cut at {cut}");
        assert_eq!(
            recovery.torn_tails_cut,
            u64::from(cut > last_start),
            "cut at {cut}"
        );
        assert_eq!(recovery.corrupt_entries_skipped, 0, "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            last_start as u64,
            "cut at {cut}"
        );
        assert_eq!(spool.stats().torn_tails_cut, recovery.torn_tails_cut);
        // The log goes on after the cut: the lost, never-acknowledged id is given again.
        assert_eq!(
            append(&spool, [record(50, "clicks")]),
            vec![EntryId::new(5)]
        );
        let back = read_all(&spool, EntryId::new(1));
        assert_eq!(ids(&back), vec![1, 2, 3, 4, 5], "cut at {cut}");
        assert_eq!(back[4].record, record(50, "clicks").record);
        spool.crash();
    }
}

#[test]
fn a_damaged_last_entry_is_a_torn_tail_whichever_byte_is_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, segment) = closed_spool(dir.path(), 3);
    let whole = std::fs::read(&segment).unwrap();
    let last_start = whole.len() - frame::encoded_len(&record(3, "clicks"));
    for at in last_start..whole.len() {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x5a;
        std::fs::write(&segment, &damaged).unwrap();
        let (spool, recovery) = open(&s);
        assert_eq!(
            (recovery.pending_records, recovery.torn_tails_cut),
            (2, 1),
            "byte {at}"
        );
        spool.crash();
    }
}

#[test]
fn a_corrupt_entry_in_the_middle_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, segment) = closed_spool(dir.path(), 5);
    let whole = std::fs::read(&segment).unwrap();
    let len = |n| frame::encoded_len(&record(n, "clicks"));
    let third = frame::SEGMENT_HEADER_LEN as usize + len(1) + len(2);
    // A byte of its data, then a byte of its length field: either way entries 4 and 5 are found.
    for at in [third + len(3) - 2, third + 1] {
        let mut damaged = whole.clone();
        damaged[at] ^= 0xff;
        std::fs::write(&segment, &damaged).unwrap();
        let small = SpoolSettings {
            segment_bytes: 4096,
            ..s.clone()
        };
        let (spool, recovery) = open(&small);
        assert_eq!(recovery.pending_records, 4, "byte {at}");
        assert_eq!(
            (recovery.corrupt_entries_skipped, recovery.torn_tails_cut),
            (1, 0)
        );
        assert_eq!(
            ids(&read_all(&spool, recovery.first_pending)),
            vec![1, 2, 4, 5]
        );
        assert_eq!(spool.stats().corrupt_entries_skipped, 1);
        // The skipped id counts as done: marking the rest frees the segment.
        spool.mark_done_many([1, 2, 4, 5].map(EntryId::new));
        // Enough to fill the segment and start others; all done too.
        spool.mark_done_many(append(&spool, (0..80).map(|i| record(i, "clicks"))));
        block(spool.sync_done()).unwrap();
        assert!(
            !segment.exists(),
            "the damaged segment is deleted once the rest is done"
        );
        spool.crash();
        std::fs::remove_dir_all(dir.path()).unwrap();
        let (fresh, _) = closed_spool(dir.path(), 5);
        assert_eq!(fresh, s);
    }
}

#[test]
fn the_writer_dying_loses_nothing_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(&settings(dir.path()));
    let acked = append(&spool, (1..=30).map(|n| record(n, "clicks")));
    let queued: Vec<Appended> = (31..=40)
        .map(|n| spool.append(record(n, "clicks")).unwrap())
        .collect();
    spool.mark_done_many((1..=10).map(EntryId::new));
    block(spool.sync_done()).unwrap();
    spool.mark_done_many((11..=12).map(EntryId::new)); // not synced: may come back
    spool.crash();
    let answered: Vec<u64> = queued
        .into_iter()
        .filter_map(|h| h.wait().ok())
        .map(EntryId::get)
        .collect();
    let (spool, recovery) = open(&settings(dir.path()));
    let back = ids(&read_all(&spool, recovery.first_pending));
    for id in acked.iter().map(|id| id.get()).skip(12).chain(answered) {
        assert!(back.contains(&id), "{id} lost");
    }
    assert!(
        back.iter().all(|id| *id > 10),
        "synced done marks hold: {back:?}"
    );
}

#[test]
fn done_marks_of_cut_entries_do_not_hide_the_entries_that_reuse_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (s, segment) = closed_spool(dir.path(), 5);
    // A done mark for id 5 survives, the entry itself is cut (a case only damage makes).
    let (spool, _) = open(&s);
    spool.mark_done(EntryId::new(5));
    block(spool.close()).unwrap();
    let whole = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &whole[..whole.len() - 3]).unwrap();
    let (spool, recovery) = open(&s);
    assert_eq!(
        recovery.next_id,
        EntryId::new(6),
        "ids move past every done mark"
    );
    assert_eq!(append(&spool, [record(6, "clicks")]), vec![EntryId::new(6)]);
    block(spool.close()).unwrap();
    let (spool, recovery) = open(&s);
    assert_eq!(
        ids(&read_all(&spool, recovery.first_pending)),
        vec![1, 2, 3, 4, 6]
    );
}

#[test]
fn leftovers_of_a_crash_are_tidied_and_a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (s, segment) = closed_spool(dir.path(), 3);
    let orphan = dir.path().join(format!("{:020}.done", 7));
    std::fs::write(&orphan, frame::DONE_MAGIC).unwrap();
    let torn_header = dir.path().join(format!("{:020}.seg", 900));
    std::fs::write(&torn_header, b"KPSP").unwrap();
    let torn_done = dir.path().join(format!("{:020}.done", 1));
    let mut done = frame::DONE_MAGIC.to_vec();
    frame::encode_done(&mut done, 2, 1);
    done.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&torn_done, &done).unwrap();
    let (spool, recovery) = open(&s);
    assert!(
        !orphan.exists(),
        "a done file without its segment is removed"
    );
    assert!(
        !torn_header.exists(),
        "a segment the crash left headerless is removed"
    );
    assert_eq!(recovery.torn_tails_cut, 1);
    assert_eq!(
        std::fs::metadata(&torn_done).unwrap().len(),
        8 + 16,
        "torn done record cut"
    );
    assert_eq!(ids(&read_all(&spool, recovery.first_pending)), vec![1, 3]);
    block(spool.close()).unwrap();
    let mut foreign = std::fs::read(&segment).unwrap();
    foreign[0] = b'X';
    std::fs::write(&segment, foreign).unwrap();
    let err = Spool::open(&s).expect_err("not a spool segment");
    assert!(matches!(err, SpoolError::Format { .. }), "{err}");
    assert!(err.to_string().contains(&segment.display().to_string()));
}
