//! Shared helpers for the `api` integration tests: a local Kinesis emulator, a fault proxy and
//! a Prometheus server.

pub mod app;
pub mod binary;
pub mod emulator;
pub mod fault_proxy;
mod fault_proxy_tests;
#[path = "../../support/kinesis_read.rs"]
pub mod kinesis_read;
pub mod metrics_page;
pub mod prometheus;
