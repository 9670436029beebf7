//! The proxy settings the scenarios run with (`section.key`, value), before `--set`: each one
//! named for what it sets up.

/// kinesalite answers a bare 413 above ~5.25 MiB (7 MiB of base64 JSON): stay well below.
pub(in crate::scenarios) const KINESALITE_SETTINGS: &[(&str, &str)] =
    &[("batching.max_batch_bytes", "4194304")];

/// KPL aggregation on (issue 10): every stream aggregates; against the limited stream.
pub(in crate::scenarios) const AGGREGATE_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("streams.aggregate", "*"),
];

/// KPL aggregation against plain kinesalite, which has no per-shard limits: the proxy's own
/// per-shard byte budget (Kinesis' 1 MiB/s) would otherwise be what is measured.
pub(in crate::scenarios) const AGGREGATE_UNLIMITED_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("streams.aggregate", "*"),
    ("shards.bytes_per_second", "104857600"),
];

/// Disk acknowledgement (issue 11), aggregated as against a records-capped Kinesis:
/// `agg-kinesalite-single`'s settings plus the spool, whose 4 GiB bound a window never reaches.
pub(in crate::scenarios) const DISK_AGGREGATE_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("streams.aggregate", "*"),
    ("shards.bytes_per_second", "104857600"),
    ("streams.ack_on_disk", "*"),
    ("spool.max_bytes", "4294967296"),
];

/// Acknowledgement once queued (202, in memory), unaggregated: `kinesalite-single`'s settings
/// answered at enqueue, issue 21's reference for the disk path.
pub(in crate::scenarios) const MEMORY_ACK_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("streams.ack_on_enqueue", "*"),
];

/// Disk acknowledgement without aggregation: `kinesalite-single`'s settings plus the spool.
pub(in crate::scenarios) const DISK_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("streams.ack_on_disk", "*"),
    ("spool.max_bytes", "4294967296"),
];

/// The shard-blind proxy: every batch takes whatever is queued, and Kinesis' throttling is the
/// only brake (the proxy as it was before issue 9).
pub(in crate::scenarios) const BLIND_SETTINGS: &[(&str, &str)] = &[
    ("batching.max_batch_bytes", "4194304"),
    ("shards.aware", "false"),
];
