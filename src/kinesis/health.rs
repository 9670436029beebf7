//! Whether Kinesis answers: a probe on the default region every few seconds, read by `/readyz`
//! so a load balancer stops sending to a proxy that cannot deliver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::sdk::KinesisClients;
use crate::domain::Region;
use crate::telemetry::KINESIS_REACHABLE;

/// Whether Kinesis answered the last readiness probe.
#[derive(Debug, Default)]
pub struct KinesisHealth {
    reachable: AtomicBool,
}

impl KinesisHealth {
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn set_reachable(&self, reachable: bool) {
        let before = self.reachable.swap(reachable, Ordering::Relaxed);
        if before != reachable {
            if reachable {
                tracing::info!("Kinesis is reachable");
            } else {
                tracing::warn!("Kinesis is not reachable");
            }
        }
        kinesis_reachable_metric(reachable);
    }

    /// Probes the default region's Kinesis every `interval` until the process ends.
    pub fn spawn_probe(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        clients: Arc<KinesisClients>,
        region: Region,
        interval: Duration,
    ) {
        let health = self.clone();
        runtime.spawn(async move {
            let kinesis = clients.for_region(&region);
            loop {
                let result = tokio::time::timeout(interval.max(Duration::from_secs(1)), kinesis.probe()).await;
                match result {
                    Ok(Ok(())) => health.set_reachable(true),
                    Ok(Err(failure)) => {
                        tracing::debug!(code = %failure.code, message = %failure.message, "readiness probe failed");
                        // A 4xx is still an answer: Kinesis is reachable even if it refused
                        // this call (e.g. no ListStreams permission). A 5xx is not.
                        health.set_reachable(failure.status.is_some_and(|s| s < 500));
                    }
                    Err(_) => health.set_reachable(false),
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
}

fn kinesis_reachable_metric(reachable: bool) {
    metrics::gauge!(KINESIS_REACHABLE).set(if reachable { 1.0 } else { 0.0 });
}
