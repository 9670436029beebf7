//! The handle callers hold: appends (refused at once when full, answered after the fsync),
//! done marks, reads, and the writer thread's lifecycle. No file I/O happens here except in
//! `read_pending`, which is documented as blocking.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use crossbeam_channel::Sender;
use tokio::sync::{oneshot, watch};

use super::error::{FullReason, SpoolError};
use super::frame;
use super::read::{self, PendingRead};
use super::record::{EntryId, SpoolRecord};
use super::shared::Shared;
use super::stats::{self, StatsSnapshot};
use super::writer::{Append, Control};
use crate::domain::{Region, StreamName};

/// Appends waiting for the writer thread, at most (`Shared::queued` counts them). Memory is
/// bounded by `spool.max_bytes` anyway (queued entries are reserved against it); this keeps one
/// slow disk from collecting an unbounded number of waiting clients. The channel itself is
/// crossbeam's unbounded one with this count as its bound, because that kind drops what is
/// still queued when the writer stops, so every waiting append is answered (`Closed`); the
/// bounded kind would keep them, and their callers would wait forever.
pub(super) const WRITER_QUEUE: usize = 16_384;

/// A handle on an open spool; clones share it. The writer thread stops at [`Spool::close`], or
/// when the last handle is dropped (after writing what was queued).
#[derive(Clone)]
pub struct Spool {
    pub(super) shared: Arc<Shared>,
    pub(super) appends: Sender<Append>,
    pub(super) control: Sender<Control>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Spool {
    /// Appends one record; the future resolves with its id once it is fsynced.
    pub fn append(&self, record: SpoolRecord) -> Result<Appended, SpoolError> {
        self.append_many(vec![record])
    }

    /// Appends records that get consecutive ids and one answer: the future resolves with the
    /// first id once all of them are fsynced (for many-record requests: one message, one
    /// reservation, one wake-up).
    pub fn append_many(&self, records: Vec<SpoolRecord>) -> Result<Appended, SpoolError> {
        let shared = &self.shared;
        if shared.closed.load(Relaxed) {
            return Err(SpoolError::Closed);
        }
        if let Some(message) = shared.failure() {
            return Err(SpoolError::Failed(message));
        }
        let mut bytes = 0u64;
        for record in &records {
            let size = frame::encoded_len(record) as u64;
            let max = (frame::FRAME_HEADER_LEN + frame::MAX_BODY_LEN) as u64;
            if size > max || size > shared.settings.max_bytes {
                return Err(SpoolError::TooLarge {
                    size,
                    max: max.min(shared.settings.max_bytes),
                });
            }
            bytes += size;
        }
        let free = shared.free_bytes.load(Relaxed);
        if free < shared.settings.min_free_bytes {
            return Err(shared.refuse(FullReason::LowDiskSpace {
                free_bytes: free,
                min_free_bytes: shared.settings.min_free_bytes,
            }));
        }
        let max_bytes = shared.settings.max_bytes;
        let before = shared.reserved.fetch_add(bytes, Relaxed);
        if before + bytes > max_bytes {
            shared.reserved.fetch_sub(bytes, Relaxed);
            return Err(shared.refuse(FullReason::MaxBytes { max_bytes }));
        }
        let (reply, answer) = oneshot::channel();
        let append = Append {
            records,
            appended_ms: stats::unix_ms(SystemTime::now()),
            bytes,
            reply,
        };
        if shared.queued.fetch_add(1, Relaxed) >= WRITER_QUEUE {
            shared.queued.fetch_sub(1, Relaxed);
            shared.reserved.fetch_sub(bytes, Relaxed);
            return Err(shared.refuse(FullReason::WriterBacklog));
        }
        match self.appends.send(append) {
            Ok(()) => Ok(Appended(answer)),
            Err(_) => {
                shared.queued.fetch_sub(1, Relaxed);
                shared.reserved.fetch_sub(bytes, Relaxed);
                Err(SpoolError::Closed)
            }
        }
    }

    /// Marks an entry done (Kinesis accepted it, or it finally failed): a bit in memory, no
    /// I/O; the writer persists it (see the module doc for when it counts as durable). Unknown
    /// and already-done ids are ignored.
    pub fn mark_done(&self, id: EntryId) {
        self.mark_done_many([id]);
    }

    /// Marks many entries done under one lock.
    pub fn mark_done_many(&self, ids: impl IntoIterator<Item = EntryId>) {
        let mut index = self.shared.index();
        for id in ids {
            index.mark_done(id.0, &self.shared.stats);
        }
    }

    /// Live, durable entries with ids from `from` on, in id order: at most `max_records`, and
    /// at most `max_bytes` of Kinesis size (data + partition key) unless the first alone is
    /// larger. Blocking file reads: call it from a blocking thread.
    pub fn read_pending(
        &self,
        from: EntryId,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<PendingRead, SpoolError> {
        read::read_pending(&self.shared, from, max_records, max_bytes, None)
    }

    /// As [`Spool::read_pending`], only the entries of one (region, stream): for a consumer
    /// that keeps a cursor per stream.
    pub fn read_pending_for(
        &self,
        region: &Region,
        stream: &StreamName,
        from: EntryId,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<PendingRead, SpoolError> {
        read::read_pending(
            &self.shared,
            from,
            max_records,
            max_bytes,
            Some((region, stream)),
        )
    }

    /// The id the next append will get: every entry below it is durable (or lost to damage).
    pub fn durable_end(&self) -> EntryId {
        *self.shared.durable.borrow()
    }

    /// Follows [`Spool::durable_end`]: a reader that caught up waits on `changed()`.
    pub fn watch_durable_end(&self) -> watch::Receiver<EntryId> {
        self.shared.durable.subscribe()
    }

    /// Writes and fsyncs every done mark made before this call; resolves once they are durable.
    pub fn sync_done(&self) -> impl Future<Output = Result<(), SpoolError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.control.send(Control::SyncDone(reply)).is_ok();
        async move {
            if !sent {
                return Err(SpoolError::Closed);
            }
            answer.await.unwrap_or(Err(SpoolError::Closed))
        }
    }

    /// Stops the spool: later appends are refused with `Closed`, appends already queued are
    /// written and answered, done marks are synced, the directory lock is released. Entries
    /// not done stay for the next start.
    pub fn close(&self) -> impl Future<Output = Result<(), SpoolError>> + Send + 'static {
        self.shared.closed.store(true, Relaxed);
        let (reply, answer) = oneshot::channel();
        let sent = self.control.send(Control::Close(reply)).is_ok();
        async move {
            if !sent {
                return Ok(()); // already stopped
            }
            answer.await.unwrap_or(Ok(()))
        }
    }

    /// Whether its file system had less free space than `spool.min_free_bytes` at the writer's
    /// last look (every few seconds): appends are then refused as full.
    pub fn is_short_of_disk_space(&self) -> bool {
        self.shared.free_bytes.load(Relaxed) < self.shared.settings.min_free_bytes
    }

    /// Why the spool stopped taking appends (an I/O error; a restart recovers), if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// A crash, for tests: the writer stops at once, without writing what is queued or
    /// syncing done marks, and releases the lock; returns once it has.
    #[cfg(test)]
    pub(super) fn crash(&self) {
        self.shared.closed.store(true, Relaxed);
        let (reply, answer) = std::sync::mpsc::channel();
        if self.control.send(Control::Crash(reply)).is_ok() {
            let _ = answer.recv();
        }
    }
}

/// Resolves once the appended entries are fsynced, with the (first) entry's id.
#[must_use = "the entry is durable only once this resolves"]
pub struct Appended(oneshot::Receiver<Result<EntryId, SpoolError>>);

impl Appended {
    /// Waits on the calling thread (never on a tokio worker).
    pub fn wait(self) -> Result<EntryId, SpoolError> {
        self.0.blocking_recv().unwrap_or(Err(SpoolError::Closed))
    }
}

impl Future for Appended {
    type Output = Result<EntryId, SpoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(SpoolError::Closed)))
    }
}
