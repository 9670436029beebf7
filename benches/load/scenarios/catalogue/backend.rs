//! What the proxy under test writes to in a scenario: nothing, the do-nothing Kinesis
//! endpoint, or kinesalite (alone, or behind the fault layer enforcing Kinesis' per-shard
//! limits or adding Kinesis' latency). Pure data, as the rest of the catalogue.

/// What the proxy writes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    /// Nothing (the bare ceiling).
    None,
    /// The do-nothing endpoint, answering PutRecords after `delay_ms`.
    Null {
        delay_ms: u64,
    },
    /// The do-nothing endpoint answering at once for a stream of this many shards: the proxy
    /// sends shard-aware, a lane per shard.
    NullSharded {
        shards: u32,
    },
    Kinesalite {
        shards: u32,
    },
    /// kinesalite behind the tests' fault layer enforcing Kinesis' per-shard write limits
    /// (1,000 records/s and 1 MiB/s per shard, or `records_per_second` when other producers
    /// are taken to use the rest), which kinesalite alone never does.
    LimitedKinesalite {
        shards: u32,
        records_per_second: u32,
    },
    /// kinesalite behind the fault layer answering each call after `delay_ms` ± `jitter_pct`%
    /// (Kinesis' own latency), without per-shard limits.
    DelayedKinesalite {
        shards: u32,
        delay_ms: u64,
        jitter_pct: u32,
    },
}

impl Backend {
    pub(in crate::scenarios) fn label(self) -> String {
        match self {
            Backend::None => "-".into(),
            Backend::Null { delay_ms: 0 } => "null".into(),
            Backend::Null { delay_ms } => format!("null+{delay_ms}ms"),
            Backend::NullSharded { shards } => format!("null/{shards}"),
            Backend::Kinesalite { shards } => format!("kinesalite/{shards}"),
            Backend::LimitedKinesalite {
                shards,
                records_per_second: 1000,
            } => format!("kinesalite/{shards} limited"),
            Backend::LimitedKinesalite {
                shards,
                records_per_second,
            } => format!("kinesalite/{shards} limited {records_per_second}/s"),
            Backend::DelayedKinesalite {
                shards,
                delay_ms,
                jitter_pct,
            } => format!("kinesalite/{shards}+{delay_ms}ms±{jitter_pct}%"),
        }
    }

    /// Records per second the stream takes, when the backend enforces Kinesis' limits.
    pub(in crate::scenarios) fn stream_limit_records_per_sec(self) -> Option<f64> {
        match self {
            Backend::LimitedKinesalite {
                shards,
                records_per_second,
            } => Some(f64::from(shards) * f64::from(records_per_second)),
            _ => None,
        }
    }
}
