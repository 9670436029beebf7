//! Shared helpers for the `api` integration tests: a local Kinesis emulator, a fault proxy,
//! a Prometheus server, a real KPL deaggregation library to read aggregated records with, and the
//! binary on a disk spool.

pub mod app;
pub mod binary;
#[path = "../../support/deaggregate.rs"]
pub mod deaggregate;
pub mod emulator;
pub mod fault_proxy;
mod fault_proxy_tests;
#[path = "../../support/kinesis_read.rs"]
pub mod kinesis_read;
pub mod metrics_page;
pub mod prometheus;
pub mod spool;
