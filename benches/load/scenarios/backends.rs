//! Starting a run's backend: the do-nothing Kinesis endpoint (this binary re-executed), or a
//! fresh kinesalite, alone or behind the fault layer (Kinesis' per-shard limits, or its
//! latency). Each is stopped when its handle is dropped.

use std::time::Duration;

use super::catalogue::Backend;
use super::run::STREAM;
use crate::child::HelperProcess;
use crate::fault_proxy::{FaultProxy, Mode, ShardLimits};
use crate::kinesalite::Kinesalite;
use crate::Error;

/// A run's backend, started; the run drops each part when it is done with it.
pub(super) struct RunningBackend {
    /// What the proxy is given as its Kinesis endpoint (empty: no backend).
    pub(super) endpoint: String,
    /// The process whose CPU counts as the backend's.
    pub(super) pid: Option<u32>,
    pub(super) null_endpoint: Option<HelperProcess>,
    pub(super) emulator: Option<Kinesalite>,
    pub(super) faults: Option<FaultProxy>,
}

impl RunningBackend {
    pub(super) fn start(backend: Backend) -> Result<Self, Error> {
        let mut null_endpoint = None;
        let mut emulator = None;
        let mut faults: Option<FaultProxy> = None;
        let (endpoint, pid) = match backend {
            Backend::None => (String::new(), None),
            Backend::Null { .. } | Backend::NullSharded { .. } => {
                let (flag, value) = match backend {
                    Backend::NullSharded { shards } => ("--shards", u64::from(shards)),
                    Backend::Null { delay_ms } => ("--delay-ms", delay_ms),
                    _ => ("--delay-ms", 0),
                };
                let helper = HelperProcess::spawn(&[
                    "--serve-null-kinesis".into(),
                    flag.into(),
                    value.to_string(),
                ])?;
                let endpoint = format!("http://127.0.0.1:{}", helper.port);
                let pid = helper.pid;
                null_endpoint = Some(helper);
                (endpoint, Some(pid))
            }
            Backend::Kinesalite { shards } => {
                let k = Kinesalite::start(STREAM, shards)?;
                let found = (k.endpoint.clone(), Some(k.pid));
                emulator = Some(k);
                found
            }
            Backend::LimitedKinesalite {
                shards,
                records_per_second,
            } => {
                let k = Kinesalite::start(STREAM, shards)?;
                let layer = FaultProxy::start(&k.endpoint);
                layer.limit_shards(ShardLimits {
                    records_per_second,
                    ..ShardLimits::KINESIS
                });
                let found = (layer.endpoint.clone(), Some(k.pid));
                emulator = Some(k);
                faults = Some(layer);
                found
            }
            Backend::DelayedKinesalite {
                shards,
                delay_ms,
                jitter_pct,
            } => {
                let k = Kinesalite::start(STREAM, shards)?;
                let layer = FaultProxy::start(&k.endpoint);
                layer.set_mode(Mode::Jittered {
                    delay: Duration::from_millis(delay_ms),
                    jitter_pct,
                });
                let found = (layer.endpoint.clone(), Some(k.pid));
                emulator = Some(k);
                faults = Some(layer);
                found
            }
        };
        Ok(Self {
            endpoint,
            pid,
            null_endpoint,
            emulator,
            faults,
        })
    }
}
