//! The disk streams Kinesis has confirmed exist, remembered across restarts in the spool folder.
//!
//! A disk stream answers 202 before Kinesis saw the event, so while Kinesis cannot answer the
//! proxy must not take events for a name it cannot check: they would be acknowledged, then
//! refused for good once Kinesis is back (`failed.ndjson`). A stream is confirmed by a
//! `DescribeStreamSummary` that found it or by a write Kinesis accepted, in this process or an
//! earlier one on the same spool; Kinesis saying it does not exist forgets it. The set is
//! bounded ([`MAX_CONFIRMED`], least recently confirmed forgotten first) and holds only streams
//! the configuration acknowledges on disk. The file is replaced atomically (temporary file,
//! fsync, rename, directory fsync), on a blocking thread, one write at a time; a crash before a
//! write only means the stream is confirmed again the next time Kinesis answers.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::domain::{Region, StreamName};

type Key = (Region, StreamName);

/// The file in the spool folder.
pub const CONFIRMED_FILE: &str = "confirmed-streams.json";

/// Streams remembered at most.
pub const MAX_CONFIRMED: usize = 1024;

/// The file's content: `[region, stream]` pairs, least recently confirmed first.
#[derive(Serialize, Deserialize)]
struct Stored {
    streams: Vec<[String; 2]>,
}

#[derive(Default)]
struct State {
    /// Each stream and when it was last confirmed (a sequence number, for the eviction order).
    streams: HashMap<Key, u64>,
    next: u64,
}

pub struct ConfirmedStreams {
    /// The spool folder's file.
    path: PathBuf,
    state: Mutex<State>,
    /// Held by the blocking thread writing the file, so writes never interleave; each writes
    /// the set as it is when its turn comes, so the last write holds every change before it.
    writing: Mutex<()>,
}

impl ConfirmedStreams {
    /// Reads the set from `dir` (blocking), keeping only streams `keep` accepts (the ones the
    /// configuration still acknowledges on disk). A missing file is an empty set; an unreadable
    /// one is logged and treated as empty: streams are confirmed again when Kinesis answers.
    pub fn load(dir: &Path, keep: impl Fn(&Key) -> bool) -> Self {
        let path = dir.join(CONFIRMED_FILE);
        let mut state = State::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(stored) => {
                    for [region, stream] in stored.streams {
                        let (Ok(region), Ok(stream)) =
                            (Region::parse(&region), StreamName::parse(&stream))
                        else {
                            continue;
                        };
                        let key = (region, stream);
                        if keep(&key) {
                            state.insert(key);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "spool: the confirmed streams file is not readable; starting with none confirmed (each is confirmed again when Kinesis answers)");
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "spool: cannot read the confirmed streams file; starting with none confirmed");
            }
        }
        tracing::info!(
            streams = state.streams.len(),
            "spool: disk streams Kinesis confirmed earlier"
        );
        Self {
            path,
            state: Mutex::new(state),
            writing: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.lock().streams.contains_key(key)
    }

    /// Remembers `key` as confirmed now; true when it was not remembered before (then the
    /// file needs writing).
    pub fn insert(&self, key: Key) -> bool {
        self.lock().insert(key)
    }

    /// Forgets `key` (Kinesis says it does not exist); true when it was remembered.
    pub fn remove(&self, key: &Key) -> bool {
        self.lock().streams.remove(key).is_some()
    }

    /// Writes the set to its file on a blocking thread of `runtime`; failures are logged.
    pub fn persist(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let confirmed = self.clone();
        runtime.spawn_blocking(move || {
            if let Err(error) = confirmed.write() {
                tracing::warn!(path = %confirmed.path.display(), %error, "spool: cannot write the confirmed streams file; this process still knows them, a restart may not");
            }
        });
    }

    fn write(&self) -> std::io::Result<()> {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let stored = {
            let state = self.lock();
            let mut streams: Vec<(&Key, &u64)> = state.streams.iter().collect();
            streams.sort_by_key(|(_, seq)| **seq);
            Stored {
                streams: streams
                    .into_iter()
                    .map(|((region, stream), _)| [region.to_string(), stream.to_string()])
                    .collect(),
            }
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension("json.tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        // The rename is durable once the folder is.
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl State {
    fn insert(&mut self, key: Key) -> bool {
        let seq = self.next;
        self.next += 1;
        let new = self.streams.insert(key, seq).is_none();
        if self.streams.len() > MAX_CONFIRMED {
            if let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, seq)| **seq)
                .map(|(key, _)| key.clone())
            {
                self.streams.remove(&oldest);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream: &str) -> Key {
        (
            Region::parse("us-west-2").expect("region"),
            StreamName::parse(stream).expect("stream"),
        )
    }

    #[test]
    fn the_set_survives_a_reload_keeping_only_what_the_configuration_still_takes() {
        let dir = tempfile::tempdir().expect("a folder");
        let confirmed = Arc::new(ConfirmedStreams::load(dir.path(), |_| true));
        assert!(confirmed.insert(key("disk-a")));
        assert!(!confirmed.insert(key("disk-a")), "already there");
        assert!(confirmed.insert(key("disk-b")));
        assert!(confirmed.insert(key("gone")));
        assert!(confirmed.remove(&key("gone")));
        confirmed.write().expect("write");
        let again = ConfirmedStreams::load(dir.path(), |(_, s)| s.as_str() != "disk-b");
        assert!(again.contains(&key("disk-a")));
        assert!(
            !again.contains(&key("disk-b")),
            "no longer acknowledged on disk"
        );
        assert!(!again.contains(&key("gone")));
        assert!(!dir.path().join("confirmed-streams.json.tmp").exists());
    }

    #[test]
    fn the_set_is_bounded_forgetting_the_least_recently_confirmed() {
        let dir = tempfile::tempdir().expect("a folder");
        let confirmed = ConfirmedStreams::load(dir.path(), |_| true);
        for n in 0..MAX_CONFIRMED {
            confirmed.insert(key(&format!("s-{n}")));
        }
        confirmed.insert(key("s-0")); // confirmed again: now the most recent
        confirmed.insert(key("one-more"));
        assert!(confirmed.contains(&key("s-0")));
        assert!(!confirmed.contains(&key("s-1")), "the oldest went");
        assert_eq!(confirmed.lock().streams.len(), MAX_CONFIRMED);
    }

    #[test]
    fn an_unreadable_file_is_an_empty_set() {
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join(CONFIRMED_FILE), b"{not json").expect("write");
        let confirmed = ConfirmedStreams::load(dir.path(), |_| true);
        assert!(!confirmed.contains(&key("disk-a")));
    }
}
