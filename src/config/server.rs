//! The `[server]` settings: the listener, its threads and connections, and the shutdown
//! sequence's timing (delay, then drain).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `address:port` of the HTTP API; port 0 picks a free port (tests use this).
    pub listen: String,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Threads of the runtime that runs `PutRecords` calls; 0 means half the CPU cores (at least 1).
    pub kinesis_threads: usize,
    /// After SIGTERM/SIGINT: how long to keep draining queues and waiting for in-flight calls.
    pub shutdown_grace_ms: u64,
    /// After SIGTERM: how long `/readyz` answers 503 while the listener still serves, before
    /// the drain starts (load balancers stop sending meanwhile).
    pub shutdown_delay_ms: u64,
    /// Idle keep-alive connections are closed after this long.
    pub keep_alive_ms: u64,
    /// Cap on concurrently open client connections per worker.
    pub max_connections_per_worker: usize,
    /// Connections the kernel queues before they are accepted (the listen backlog).
    pub listen_backlog: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            workers: 0,
            kinesis_threads: 0,
            shutdown_grace_ms: 30_000,
            shutdown_delay_ms: 5_000,
            keep_alive_ms: 75_000,
            max_connections_per_worker: 25_000,
            listen_backlog: 2048,
        }
    }
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
}
