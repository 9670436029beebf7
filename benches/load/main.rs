//! End-to-end load benchmark (SPEC section 5): drives the real `kinesis-proxy` binary over many
//! keep-alive connections with unique event ids, against kinesalite and against a do-nothing
//! Kinesis endpoint of our own, side by side with a bare actix-web handler that only parses the
//! same JSON (the ceiling), and reports throughput, acknowledgement latency, batching, the
//! proxy's CPU and memory, and a read-back check that every acknowledged event is in the stream.
//!
//! ```text
//! cargo bench --bench load -- [--scenario NAME|all] [--duration SECS] [--connections N]
//!                             [--set section.key=value]... [--list] [--strict]
//! ```
//!
//! Under `cargo test --all-targets` cargo runs this binary without `--bench`; it then runs a
//! smoke test of the machinery (a few seconds, debug build) that fails when it does not work.
//!
//! Every server is its own process, so each one's CPU and memory can be read from `/proc`: the
//! proxy (its real binary), kinesalite (node), and this same binary re-executed as the
//! do-nothing Kinesis endpoint (`--serve-null-kinesis`) or the bare ceiling (`--serve-bare`).
//! The load generator runs in this process, and so does the fault layer that enforces Kinesis'
//! per-shard limits in front of kinesalite for the shard-awareness scenarios (its CPU counts as
//! the load generator's). One scenario calls kinesalite directly (no proxy) to show the
//! emulator's own ceiling. The TLS and reload scenarios (issue 19) serve the proxy over TLS
//! with certificates made per run (`tls.rs`) and signal it with SIGHUP during the window.

mod bare;
mod child;
mod cli;
mod direct;
// The integration tests' fault layer, here to enforce Kinesis' per-shard limits in front of
// kinesalite; the tests use all of it, the benchmark less.
#[allow(dead_code)]
#[path = "../../tests/api/helpers/fault_proxy.rs"]
mod fault_proxy;
mod kinesalite;
// Shared with the integration tests, which use all of it; the benchmark needs less.
#[allow(dead_code)]
#[path = "../../tests/support/kinesis_read.rs"]
mod kinesis_read;
mod loadgen;
mod null_kinesis;
mod procfs;
mod prometheus;
mod proxy_process;
mod report;
mod scenarios;
mod tls;
mod wire;

use std::fmt::Display;
use std::process::ExitCode;

/// Errors of the benchmark's own machinery (a child that does not start, a failed read-back
/// call...): a message with what was being done, carried up to `main`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Adds "what we were doing" to an error, so a failure names its step.
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T, Error>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, Error> {
        self.map_err(|e| format!("{what}: {e}").into())
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T, Error> {
        self.ok_or_else(|| what.to_string().into())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match cli::parse(args) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("load: {message}\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match mode {
        cli::Mode::Help => {
            println!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        cli::Mode::List => {
            for scenario in scenarios::catalogue() {
                println!("{:<20} {}", scenario.name, scenario.about);
            }
            ExitCode::SUCCESS
        }
        cli::Mode::ServeNullKinesis { delay, shards } => {
            exit_code(null_kinesis::serve(delay, shards))
        }
        cli::Mode::ServeBare { workers } => exit_code(bare::serve(workers)),
        cli::Mode::Bench(options) => exit_code(scenarios::run_bench(&options)),
        cli::Mode::Smoke(options) => exit_code(scenarios::run_smoke(&options)),
    }
}

fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("load: {err}");
            ExitCode::FAILURE
        }
    }
}
