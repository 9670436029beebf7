//! The `[server]` settings: the listener, its threads and connections, and the shutdown
//! sequence's timing (delay, then drain).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

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
    /// CIDRs (or single addresses) of the reverse proxies in front of this one: from a peer
    /// among them, `X-Forwarded-For` names the client (the envelope's `client_ip`).
    pub trusted_proxies: Vec<String>,
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
            trusted_proxies: Vec::new(),
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
    /// `trusted_proxies` parsed; a bare address is a network of one.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|raw| {
                raw.parse::<IpNet>()
                    .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{raw:?} is not a CIDR such as \"10.0.0.0/8\" or an IP address")
                    })
            })
            .collect()
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
}
