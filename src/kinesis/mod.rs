//! The Kinesis layer: what the pipeline needs from Kinesis and nothing else. `PutRecordsApi` is
//! the one call the pipeline makes, behind a small trait so batching and retry logic are
//! unit-tested with a fake; `sdk` implements it (and the few other calls: stream record size,
//! readiness probe, `ListShards`) on `aws-sdk-kinesis`; `shard_map` says which shard a record
//! goes to; `aggregation` is the KPL aggregated record format (many user records in one Kinesis
//! record); `health` is the reachability `/readyz` reports.
//! This layer knows records and streams (`domain`), never HTTP or queues.

pub mod aggregation;
mod api;
mod health;
mod sdk;
pub mod shard_map;

pub use api::{kinesis_code_label, CallFailure, EntryResult, PutRecordsApi};
pub use health::KinesisHealth;
pub use sdk::{call_failure, load_sdk_config, KinesisClients, SdkKinesis};
pub use shard_map::{hash_key, ShardMap, ShardRange};
