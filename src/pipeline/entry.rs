//! One entry of a `PutRecords` call: a Kinesis record and the user records it carries, either
//! one record written as it is or a KPL aggregate of many records of one shard
//! (`kinesis::aggregation`). Everything after batch assembly (the call, its retries, metrics)
//! works on entries, and inside them one event stays one pending record with its own answer,
//! attempts and deadline.

use super::pending::PendingRecord;
use crate::domain::Record;

/// A Kinesis record of a call and the user records it carries.
#[derive(Debug)]
pub(super) enum Entry {
    /// A user record written as a Kinesis record of its own.
    Single(PendingRecord),
    /// Several user records of one shard packed into one Kinesis record.
    Aggregated(Aggregate),
}

/// An aggregated Kinesis record and its user records, in the order of their index inside it.
#[derive(Debug)]
pub(super) struct Aggregate {
    /// What Kinesis gets: routed like the first member, so to the shard of all of them.
    pub(super) record: Record,
    /// `record.kinesis_size()`.
    pub(super) size: usize,
    pub(super) members: Vec<PendingRecord>,
}

impl Entry {
    /// The Kinesis record to send.
    pub(super) fn record(&self) -> &Record {
        match self {
            Self::Single(pending) => &pending.record,
            Self::Aggregated(aggregate) => &aggregate.record,
        }
    }

    /// Size as Kinesis counts it (data + partition key).
    pub(super) fn size(&self) -> usize {
        match self {
            Self::Single(pending) => pending.size,
            Self::Aggregated(aggregate) => aggregate.size,
        }
    }

    /// The lane (shard) it was taken from.
    pub(super) fn lane(&self) -> usize {
        match self {
            Self::Single(pending) => pending.lane,
            Self::Aggregated(aggregate) => aggregate.members.first().map_or(0, |m| m.lane),
        }
    }

    pub(super) fn members_mut(&mut self) -> &mut [PendingRecord] {
        match self {
            Self::Single(pending) => std::slice::from_mut(pending),
            Self::Aggregated(aggregate) => &mut aggregate.members,
        }
    }

    pub(super) fn into_members(self) -> Vec<PendingRecord> {
        match self {
            Self::Single(pending) => vec![pending],
            Self::Aggregated(aggregate) => aggregate.members,
        }
    }
}
