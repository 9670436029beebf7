//! What a record's journey ends in, as the layers above see it: where Kinesis put it, or why it
//! was finally not written, and why a submission was refused at the door. The HTTP edge maps
//! these to answers; nothing here knows about HTTP.

/// Where Kinesis put a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub shard_id: String,
    pub sequence_number: String,
    /// The record's index inside the aggregated Kinesis record that holds it (as the KPL and
    /// KCL report it); `None` when the record was written as a Kinesis record of its own.
    pub sub_sequence_number: Option<u32>,
}

/// Why a record was finally not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Kinesis kept rejecting the entry (throttling, internal failure) until its deadline.
    RetriesExhausted,
    /// Kinesis did not answer (timeouts, connection failures) until the record's deadline.
    Unavailable,
    /// Kinesis refused it for good (access denied, KMS, a record over the batch cap).
    Rejected,
    /// Kinesis refused the record itself as invalid: its call was split until it was alone
    /// and refused again, so no other record failed with it.
    Invalid,
    /// Kinesis says the stream does not exist (in this region, for these credentials).
    StreamNotFound,
    /// The shutdown grace period ended before the record could be sent.
    ShuttingDown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub kind: FailureKind,
    /// The last error code Kinesis (or the transport) gave, for logs and metrics.
    pub kinesis_code: String,
    /// What Kinesis said, for the logs only: it can name accounts, roles and keys, so it never
    /// reaches a client.
    pub message: String,
}

pub type RecordOutcome = Result<Accepted, RecordFailure>;

/// A shard whose backlog is at its share of the stream's queue: records for it are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotShard {
    pub shard_id: String,
}

/// Why a submission was refused at the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The pipeline's record or byte budget is used up: the client should back off.
    QueueFull,
    /// The records' shard has its share of the budget waiting (`shard_backlog`); other shards
    /// still take records.
    HotShard(HotShard),
    /// The pipeline is draining for shutdown.
    Closed,
}
