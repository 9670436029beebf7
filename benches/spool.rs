//! Criterion benchmark of the disk spool (`kinesis_proxy::spool`) on this machine's disk: how
//! many appends per second concurrent appenders get acknowledged (each after the fsync that
//! covers it), how many records one fsync covers, and the append-to-fsync latency.
//!
//! - `spool/append_64_tasks`: 64 tokio tasks (as 64 HTTP connections would) each append a
//!   ~260-byte record (a 200-byte JSON event, a 36-character key), await its fsync and mark it
//!   done (so segments are deleted and the disk use stays flat), on a 2-worker runtime.
//!   Criterion's `thrpt` is acknowledged appends per second.
//! - `spool/append_64_tasks_interval_200us`: the same with `commit_interval_us = 200`.
//! - `spool/append_1_task`: one appender: every append waits a whole fsync alone.
//!
//! Before criterion's runs, a report pass prints for each case the throughput, the records per
//! fsync and the p50/p99 latency from `append` to its answer (criterion only measures time per
//! iteration). The spool lives in `CARGO_TARGET_TMPDIR` (the project's disk). Under
//! `cargo test --all-targets` each case runs once, briefly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kinesis_proxy::config::SpoolSettings;
use kinesis_proxy::domain::{PartitionKey, Record, Region, StreamName};
use kinesis_proxy::spool::{Spool, SpoolError, SpoolRecord};

const CASES: &[(&str, usize, u64)] = &[
    ("append_64_tasks", 64, 0),
    ("append_64_tasks_interval_200us", 64, 200),
    ("append_1_task", 1, 0),
];

fn settings(dir: &std::path::Path, commit_interval_us: u64) -> SpoolSettings {
    SpoolSettings {
        dir: dir.display().to_string(),
        commit_interval_us,
        min_free_bytes: 0,
        ..SpoolSettings::default()
    }
}

fn record(n: usize) -> SpoolRecord {
    let mut data = format!("{{\"id\":{n},\"type\":\"page_view\",\"path\":\"/").into_bytes();
    data.resize(199, b'a');
    data.push(b'}');
    SpoolRecord {
        region: Region::parse("us-west-2").unwrap(),
        stream: StreamName::parse("events").unwrap(),
        record: Record {
            data: Bytes::from(data),
            partition_key: PartitionKey::parse(format!("{n:08x}-0000-4000-8000-000000000000"))
                .unwrap(),
            explicit_hash_key: None,
        },
    }
}

/// `total` appends spread over `tasks` tasks, each awaited and marked done; the latencies.
async fn load(spool: &Spool, tasks: usize, total: u64) -> Vec<Duration> {
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let count = total / tasks as u64 + u64::from((task as u64) < total % tasks as u64);
        let (spool, latencies) = (spool.clone(), Arc::clone(&latencies));
        handles.push(tokio::spawn(async move {
            let template = record(task);
            let mut mine = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let started = Instant::now();
                let id = loop {
                    match spool.append(template.clone()) {
                        Ok(appended) => break appended.await.expect("fsynced"),
                        Err(SpoolError::Full(_)) => tokio::task::yield_now().await,
                        Err(e) => panic!("{e}"),
                    }
                };
                mine.push(started.elapsed());
                spool.mark_done(id);
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    latencies
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn report(bench_mode: bool) {
    let runtime = runtime();
    for &(name, tasks, interval) in CASES {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (spool, _) = Spool::open(&settings(dir.path(), interval)).unwrap();
        let total = match (bench_mode, tasks) {
            (false, _) => 256,
            (true, 1) => 2_000,
            (true, _) => 300_000,
        };
        let started = Instant::now();
        let latencies = runtime.block_on(load(&spool, tasks, total));
        let elapsed = started.elapsed();
        let stats = spool.stats();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        eprintln!(
            "spool/{name}: {total} appends in {:.2} s = {:.0} appends/s; {} fsyncs, {:.1} records per fsync; append to fsync p50 {:.2} ms, p99 {:.2} ms",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            stats.fsyncs,
            stats.records_per_fsync(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
        );
        runtime.block_on(spool.close()).unwrap();
    }
}

fn bench_spool(c: &mut Criterion) {
    report(std::env::args().any(|a| a == "--bench"));
    let runtime = runtime();
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(1));
    for &(name, tasks, interval) in CASES {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let (spool, _) = Spool::open(&settings(dir.path(), interval)).unwrap();
        if tasks == 1 {
            group.sample_size(10);
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                runtime.block_on(load(&spool, tasks, iters));
                started.elapsed()
            })
        });
        runtime.block_on(spool.close()).unwrap();
    }
    group.finish();
}

criterion_group!(benches, bench_spool);
criterion_main!(benches);
