//! The load benchmark's scenarios, in separate parts: the catalogue (`catalogue.rs`, pure
//! data), carrying out one run (`run.rs`, with `backends.rs` starting what the proxy writes to,
//! `settings.rs` for the proxy settings it runs with, `probes.rs` for what is read around it,
//! `shard_figures.rs`, `disk.rs` and `lifecycle.rs` for what the shard, disk and TLS/reload
//! runs add, `read_back.rs` for the read-back), the full benchmark that turns scenarios into runs
//! (`bench.rs`), the smoke test (`smoke.rs`), and the targets checked on the results
//! (`judge.rs`). The report's types and printing are `crate::report`.

mod backends;
mod bench;
mod catalogue;
mod disk;
mod judge;
mod lifecycle;
mod probes;
mod read_back;
mod run;
mod settings;
mod shard_figures;
mod smoke;

pub use bench::run_bench;
pub use catalogue::catalogue;
pub use smoke::run_smoke;
