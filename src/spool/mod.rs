//! The disk spool: a write-ahead log on local disk, so a stream can answer 202 once an event is
//! fsynced here, survive a crash, and ride out a Kinesis outage until the spool is full.
//!
//! - **Append** ([`Spool::append`]) never blocks and never does I/O on the caller's thread: it
//!   reserves the entry's bytes against `spool.max_bytes` (refusing at once with
//!   [`SpoolError::Full`]), hands the entry to the writer thread through a bounded queue and
//!   returns a future that resolves once an fsync covers the entry, with its [`EntryId`].
//! - **Group commit**: the writer thread takes every append waiting (and, with
//!   `spool.commit_interval_us`, those arriving shortly after), up to `spool.commit_max_bytes`,
//!   writes them with one `write` and one `fdatasync`, then answers them all.
//! - **Done marks** ([`Spool::mark_done`]): a bit in memory at once; written to the segment's
//!   done file by the writer soon after, fsynced every `spool.done_sync_interval_ms`. An entry
//!   is *marked done* once `mark_done` returned and a done sync began after it (the periodic
//!   one, [`Spool::sync_done`], or [`Spool::close`]): from then on no [`Spool::read_pending`],
//!   in this process or after a restart, returns it. A mark not yet synced can be lost only to
//!   a power failure, and then the entry is sent once more (at least once). A segment whose
//!   entries are all done is deleted (except the one being written).
//! - **Reading back** ([`Spool::read_pending`]): live, durable entries from a cursor on, in id
//!   order, bounded in records and bytes; blocking file reads, for a blocking thread.
//! - **Open** ([`Spool::open`]): locks the directory, scans every segment, cuts a torn tail,
//!   skips corrupt entries, and returns a [`Recovery`] with the cursor to replay from.
//!
//! Files in `dir`: `LOCK` (the `flock` and the holder's pid), `<first id, 20 digits>.seg`
//! (segments: a header with a random salt, then frames), `<first id>.done` (done marks of that
//! segment as id ranges). The format is in `frame`; `open` is recovery, `writer` the writer
//! thread, `read` the reader, `index` the in-memory state, `dir` names, lock and free space.
//!
//! **Why a log of our own.** Crates made for this were evaluated: `okaywal` (a WAL with group
//! commit, but its README asks not to use it in production yet, its format is unstable, and
//! space is reclaimed by checkpointing a prefix, while Kinesis accepts records out of order);
//! `yaque` (a disk queue with one receiver and in-order commits; its source has no fsync at
//! all, so it cannot say "on disk"); `commitlog` (a Kafka-style log read by offset, with no
//! per-entry acknowledgement: space comes back only by truncation); `sled` (an embedded
//! database: a B-tree write per event costs far more than an append, 1.0 has not shipped and
//! its on-disk format changes). What the proxy needs (out-of-order done marks, an answer per
//! fsync, a byte bound that refuses instead of blocking, torn-tail recovery) is a small log
//! over `std::fs`, `crc32c` and `rustix` (flock, statvfs).

mod dead_letter;
mod dir;
mod error;
mod frame;
mod handle;
mod index;
mod open;
mod read;
mod record;
mod shared;
mod stats;
mod writer;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use dead_letter::{DeadLetters, FAILED_FILE};
pub use error::{FullReason, SpoolError};
pub use handle::{Appended, Spool};
pub use open::Recovery;
pub use read::PendingRead;
pub use record::{EntryId, SpoolRecord, SpooledRecord};
pub use stats::StatsSnapshot;
