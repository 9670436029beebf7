//! The KPL aggregated record format: many user records packed into one Kinesis record, as the
//! Kinesis Producer Library writes them, so that every KPL-aware consumer (the KCL in every
//! version, Firehose, Flink's connector, the Lambda deaggregation modules) unpacks them as-is.
//! Packing small events is what lets a shard move 1 MiB/s instead of 1,000 events/s, and what
//! turns one 25 KB payload unit per event into one per ~25 KB of events.
//!
//! The layout (`aggregation-format.md` in awslabs/amazon-kinesis-producer): the magic bytes
//! [`MAGIC`], a protobuf `AggregatedRecord`, then the 16-byte MD5 of the protobuf bytes.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;  // never written; skipped when read
//! }
//! ```
//!
//! The protobuf is encoded by hand rather than with `prost`, because the pipeline packs records
//! up to a byte cap and must know the exact size before each push: here every table entry and
//! every record is appended once to its own buffer, in final form, so the size is a running sum
//! and nothing is re-encoded; `prost` would need the whole message rebuilt (or its sizes
//! recomputed from the struct) per record. Three messages of fixed shape are a few dozen lines
//! of varints, with no build script and no `protoc`. The tests decode with an independent
//! library (`aws-kinesis-agg`, via protobufjs) to keep the hand encoding honest.
//!
//! Partition keys and explicit hash keys are stored once each in their table and referenced
//! by index, as the KPL does. Keys are taken as given by [`AggregateBuilder`] (the pipeline
//! passes validated domain keys); [`decode()`] checks them against Kinesis' rules.
//! Pure: no I/O. Which shard an aggregate goes to, and which records may share one, is the
//! pipeline's business.
//!
//! `encode` holds the builder, `decode` the decoder, `wire` what both need (framing, field keys,
//! varints); `tests.rs` has hand-picked cases, `proptests.rs` random ones.

mod decode;
mod encode;
mod wire;

pub use decode::{decode, is_aggregated, DecodeError, UserRecord};
pub use encode::AggregateBuilder;
pub use wire::{CHECKSUM_LEN, EMPTY_LEN, MAGIC};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
