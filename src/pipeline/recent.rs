//! A bounded memory of (region, stream) pairs for a while: the streams Kinesis said do not
//! exist, and the disk streams it could not be asked about. The registry answers from it without
//! calling Kinesis again (`DescribeStreamSummary` is limited to 20 calls/s per account).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{Region, StreamName};

type Key = (Region, StreamName);

/// Pairs remembered at most; past it the oldest are forgotten first.
const MAX_REMEMBERED: usize = 1024;

pub(super) struct Recent {
    /// Each pair and when it was put in.
    map: Mutex<HashMap<Key, Instant>>,
}

impl Recent {
    pub(super) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` was put in less than `ttl` ago (a stale entry is dropped).
    pub(super) fn contains(&self, key: &Key, ttl: Duration) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(since) if since.elapsed() < ttl => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Puts `key` in as of now, within `MAX_REMEMBERED` entries (stale ones, older than `ttl`,
    /// are dropped first, then the oldest).
    pub(super) fn insert(&self, key: Key, ttl: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, since| since.elapsed() < ttl);
        }
        if map.len() >= MAX_REMEMBERED {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key, Instant::now());
    }
}
