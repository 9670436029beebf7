//! Shared helpers for the `api` integration tests: a local Kinesis emulator and a fault proxy.

pub mod app;
pub mod emulator;
pub mod fault_proxy;
