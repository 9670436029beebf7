//! The entries' types: what a caller appends, what a reader gets back, and the id that names
//! an entry from its append to its done mark.

use std::time::SystemTime;

use crate::domain::{Record, Region, StreamName};

/// An entry's place in the log: ids grow by one per entry, across segments and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub(super) u64);

impl EntryId {
    pub const fn new(value: u64) -> Self {
        Self(value)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an entry holds: everything needed to send the record again after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolRecord {
    pub region: Region,
    pub stream: StreamName,
    pub record: Record,
}

/// An entry read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledRecord {
    pub id: EntryId,
    /// When `append` was called (to the millisecond).
    pub appended_at: SystemTime,
    pub region: Region,
    pub stream: StreamName,
    pub record: Record,
}
