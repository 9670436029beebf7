//! The pipeline layer: from "validated record" to "Kinesis accepted it", for one (region,
//! stream) at a time. It owns admission (the budget), the bounded queue, the aggregator that
//! assembles batches, the `PutRecords` calls and their retries, and the registry of pipelines.
//! It knows nothing of HTTP: it takes `domain::Record`s and answers with `RecordOutcome`s, which
//! the edge maps to status codes.
//!
//! The path: a handler admits records against the budget (`admission`) and `try_send`s them
//! into a bounded `crossbeam-channel`, so it never waits on a full queue. One aggregator thread
//! per queue (`aggregator`) assembles batches (`batch`) and starts `PutRecords` calls (`call`) on
//! the tokio runtime, at most `max_in_flight_calls` at once. A call answers each record's waiting
//! handler and hands the entries worth retrying (`retry`) back to the aggregator, which puts
//! them, after their backoff, at the front of a later batch. Only failed entries are resent.

mod admission;
mod aggregator;
pub mod batch;
mod call;
mod confirmed;
mod entry;
mod handle;
mod key_order;
mod lanes;
pub mod metrics;
mod outcome;
mod pending;
mod recent;
pub mod registry;
pub mod retry;
mod settings;
mod shard_backlog;
mod shard_refresh;
mod spooled;
mod status;

pub use handle::{Acknowledgement, Backlog, Pipeline};
pub use lanes::ShardLimits;
pub use outcome::{Accepted, FailureKind, HotShard, RecordFailure, RecordOutcome, SubmitError};
pub use registry::{Pipelines, StartError};
pub use settings::PipelineSettings;
pub use spooled::SpoolDelivery;

#[cfg(test)]
mod tests;
