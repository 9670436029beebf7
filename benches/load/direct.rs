//! kinesalite's own ceiling: PutRecords straight from the AWS SDK, no proxy, with the same
//! events, a fixed number of records per call and of calls in flight. It tells whether a
//! kinesalite scenario is limited by the proxy or by the emulator (a single node process).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::kinesalite::{self, Kinesalite};
use crate::procfs::{self, RssSampler};
use crate::report::{Latency, Memory, PutRecordsFigures, ScenarioReport};
use crate::{Context, Error};

/// The shape of a direct run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Direct {
    pub records_per_call: usize,
    pub calls_in_flight: usize,
    pub shards: u32,
}

const STREAM: &str = "bench-events";
const MIB: f64 = 1024.0 * 1024.0;

/// What one caller saw in the window.
#[derive(Default)]
struct CallerStats {
    latencies_us: Vec<u32>,
    calls: u64,
    records: u64,
    failed_entries: u64,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(
    name: &str,
    about: &str,
    direct: Direct,
    warmup: Duration,
    window: Duration,
    wait_quiet: Duration,
) -> Result<ScenarioReport, Error> {
    let busy_cores_before = if wait_quiet.is_zero() {
        None
    } else {
        Some(procfs::wait_for_quiet(wait_quiet)?)
    };
    eprintln!("load: running {name} ({about})");
    let emulator = Kinesalite::start(STREAM, direct.shards)?;
    let sampler = RssSampler::start(vec![emulator.pid])?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..direct.calls_in_flight)
        .map(|caller| {
            let client = kinesalite::client(&emulator.endpoint);
            let (measuring, stop) = (measuring.clone(), stop.clone());
            tokio::spawn(async move {
                let mut stats = CallerStats::default();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let entries = (0..direct.records_per_call)
                        .map(|_| {
                            n += 1;
                            entry(caller, n)
                        })
                        .collect::<Result<Vec<_>, _>>();
                    let entries = match entries {
                        Ok(entries) => entries,
                        Err(err) => {
                            stats.first_error = Some(err.to_string());
                            break;
                        }
                    };
                    let started = Instant::now();
                    let answer = client
                        .put_records()
                        .stream_name(STREAM)
                        .set_records(Some(entries))
                        .send()
                        .await;
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match answer {
                        Ok(output) => {
                            let micros = started.elapsed().as_micros();
                            stats
                                .latencies_us
                                .push(u32::try_from(micros).unwrap_or(u32::MAX));
                            stats.calls += 1;
                            let failed = u64::try_from(output.failed_record_count().unwrap_or(0))
                                .unwrap_or(0);
                            stats.failed_entries += failed;
                            stats.records += direct.records_per_call as u64 - failed;
                        }
                        Err(err) => {
                            stats.errors += 1;
                            stats
                                .first_error
                                .get_or_insert_with(|| format!("PutRecords: {err:?}"));
                        }
                    }
                }
                stats
            })
        })
        .collect();

    tokio::time::sleep(warmup).await;
    let cpu_before = procfs::cpu_seconds(Some(emulator.pid))?;
    let own_before = procfs::cpu_seconds(None)?;
    let busy_before = procfs::machine_busy_seconds()?;
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(Some(emulator.pid))? - cpu_before;
    let own = procfs::cpu_seconds(None)? - own_before;
    let busy = procfs::machine_busy_seconds()? - busy_before;
    stop.store(true, Ordering::Relaxed);
    let mut total = CallerStats::default();
    for caller in callers {
        let stats = caller.await.context("a PutRecords caller failed")?;
        total.latencies_us.extend(stats.latencies_us);
        total.calls += stats.calls;
        total.records += stats.records;
        total.failed_entries += stats.failed_entries;
        total.errors += stats.errors;
        total.first_error = total.first_error.or(stats.first_error);
    }
    let samples = sampler.finish();
    let (_, peak_rss) = procfs::memory(emulator.pid)?;
    drop(emulator);

    total.latencies_us.sort_unstable();
    let quantile = |q: f64| -> Option<f64> {
        let n = total.latencies_us.len();
        (n > 0).then(|| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(total.latencies_us[rank - 1]) / 1000.0
        })
    };
    let latency = match (quantile(0.5), quantile(0.99), quantile(1.0)) {
        (Some(p50_ms), Some(p99_ms), Some(max_ms)) => Some(Latency {
            p50_ms,
            p99_ms,
            max_ms,
        }),
        _ => None,
    };
    let rss = samples.iter().map(|(_, r)| *r).max().unwrap_or(0) as f64 / MIB;
    let mut statuses = BTreeMap::new();
    statuses.insert("200".to_owned(), total.calls);
    Ok(ScenarioReport {
        name: name.to_owned(),
        about: about.to_owned(),
        server: "sdk-direct".into(),
        backend: format!("kinesalite/{}", direct.shards),
        route: format!("PutRecords x{}", direct.records_per_call),
        connections: direct.calls_in_flight,
        load: "closed".into(),
        offered_requests_per_sec: None,
        sent_requests_per_sec: total.calls as f64 / elapsed,
        attempts: 1,
        window_s: elapsed,
        requests_per_sec: total.calls as f64 / elapsed,
        events_per_sec: total.records as f64 / elapsed,
        statuses,
        transport_errors: total.errors,
        first_error: total.first_error,
        latency: latency.clone(),
        ceiling: None,
        http_floor: None,
        ratio: None,
        put_records: Some(PutRecordsFigures {
            calls: total.calls as f64,
            failed_calls: total.errors as f64,
            records_per_call: Some(direct.records_per_call as f64),
            calls_per_1000_events: (total.records > 0)
                .then(|| total.calls as f64 / total.records as f64 * 1000.0),
            p50_ms: latency.as_ref().map(|l| l.p50_ms),
            p99_ms: latency.as_ref().map(|l| l.p99_ms),
            proxy_ack_p99_ms: None,
            flushes_by_reason: Default::default(),
        }),
        linger_ms: None,
        ack_p99_bound_ms: None,
        // The server here is kinesalite itself; the SDK client is this process.
        server_cpu_s: cpu,
        server_cpu_s_per_100k_events: (total.records > 0)
            .then(|| cpu / total.records as f64 * 100_000.0),
        server_cpu_s_by_thread: Default::default(),
        backend_cpu_s: None,
        loadgen_cpu_s: own,
        other_cpu_s: busy - cpu - own,
        busy_cores_before,
        memory: Memory {
            peak_rss_mib: peak_rss as f64 / MIB,
            max_sampled_rss_mib: rss,
            window_start_rss_mib: 0.0,
            window_end_rss_mib: 0.0,
            first_half_max_rss_mib: 0.0,
            second_half_max_rss_mib: 0.0,
            rss_series_mib: Vec::new(),
        },
        read_back: None,
        proxy_exit: None,
        settings: BTreeMap::from([
            (
                "direct.records_per_call".into(),
                direct.records_per_call.to_string(),
            ),
            (
                "direct.calls_in_flight".into(),
                direct.calls_in_flight.to_string(),
            ),
        ]),
        shards: None,
        disk: None,
        lifecycle: None,
        checks: Vec::new(),
    })
}

/// One event like the load generator's, with a random partition key like the proxy's.
fn entry(caller: usize, n: u64) -> Result<PutRecordsRequestEntry, Error> {
    let data = format!(
        r#"{{"id":"direct-{caller}-{n}","ts":1700000000000,"payload":"{}"}}"#,
        "p".repeat(100)
    );
    PutRecordsRequestEntry::builder()
        .data(Blob::new(data.into_bytes()))
        .partition_key(format!("{:032x}", rand::random::<u128>()))
        .build()
        .context("building a PutRecords entry")
}
