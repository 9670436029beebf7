//! Carrying out one run, fully resolved as a `RunPlan`: the backend (do-nothing endpoint or
//! kinesalite, alone or behind the fault layer enforcing Kinesis' per-shard limits), the server
//! (one or more proxies, or the bare handler), the load (and a hot client's, if any) with its
//! warm-up and measured window, the snapshots around the window, the read-back, and the
//! `ScenarioReport` of what was measured. The backend is started by `backends.rs`, the settings
//! a plan runs with are `settings.rs`, the shard runs' figures `shard_figures.rs`, the disk
//! runs' spool and drain `disk.rs`, the TLS and reload runs' files and signals `lifecycle.rs`,
//! the read-back `read_back.rs`.
//!
//! One run only: which runs a scenario needs (peaks, ceilings, HTTP floors, reruns) is
//! `bench.rs`, and whether the figures meet a target is `judge.rs`; nothing here judges.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::backends::RunningBackend;
use super::catalogue::{Backend, HotClient, Lifecycle};
use super::disk::{disk_figures, wait_drained, SpoolDir};
use super::lifecycle::{self as lifecycle_run, Hangups, LifecycleRun};
use super::probes::{put_records_figures, FaultSnapshot, Profiler, Scraper, Snapshot};
use super::read_back::read_back;
use super::settings::{resolve_settings, settings_in_effect};
use super::shard_figures::{shard_figures, sleep_sampling};
use crate::child::HelperProcess;
use crate::loadgen::{LoadResult, LoadSpec, Pace, Route, RunningLoad};
use crate::procfs::{self, RssSampler};
use crate::proxy_process::{self, ProxyProcess, API_KEY};
use crate::report::{self, Latency, Memory, ScenarioReport};
use crate::{Context, Error};

/// The stream every run writes to (each kinesalite is fresh, so one name is enough).
pub(super) const STREAM: &str = "bench-events";

/// How long the connections may take to finish their last request once the window closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Which process serves the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Server {
    Proxy,
    /// The bare actix-web handler, with this many workers.
    Bare {
        workers: usize,
    },
}

/// When the measured window closes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Window {
    Lasts(Duration),
    /// When the request budget is spent (or this long has passed: an error).
    UntilDone {
        requests: u64,
        timeout: Duration,
    },
}

/// One run, fully resolved.
#[derive(Debug, Clone)]
pub(super) struct RunPlan {
    pub(super) name: String,
    pub(super) about: String,
    pub(super) server: Server,
    pub(super) backend: Backend,
    pub(super) route: Route,
    pub(super) connections: usize,
    pub(super) pace: Pace,
    pub(super) warmup: Duration,
    pub(super) window: Window,
    /// Proxy environment: `(KINESIS_PROXY__..., value)`, later entries win.
    pub(super) env: Vec<(String, String)>,
    pub(super) read_back: bool,
    /// Wait up to this long for other processes to go quiet first.
    pub(super) wait_quiet: Duration,
    /// Record a `perf` profile of the server over the window into this file.
    pub(super) perf: Option<PathBuf>,
    /// GET the proxy's `/metrics` this often during the run, as Prometheus would. It matters:
    /// the exporter keeps every histogram observation until a scrape folds them into buckets.
    pub(super) scrape_every: Option<Duration>,
    /// Proxy processes sharing the stream (`Server::Proxy`); connections spread evenly.
    pub(super) proxies: usize,
    /// A second client pinned to one partition key, measured apart.
    pub(super) hot: Option<HotClient>,
    /// A disk-acknowledged stream: the proxy gets a fresh spool directory, and after the load
    /// the run waits until the spool has sent everything before the proxy stops.
    pub(super) disk: bool,
    /// TLS, a connection per request, SIGHUPs through the window (issue 19).
    pub(super) lifecycle: Lifecycle,
}

pub(super) fn build_runtime(threads: usize) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .context("building the load generator runtime")
}

const MIB: f64 = 1024.0 * 1024.0;

/// Carries out one run: backend, server, load with warm-up and window, read-back.
pub(super) async fn execute(plan: &RunPlan, proxy_exe: &Path) -> Result<ScenarioReport, Error> {
    let settings = resolve_settings(&plan.env)?;
    let busy_before = if plan.wait_quiet.is_zero() {
        None
    } else {
        Some(procfs::wait_for_quiet(plan.wait_quiet)?)
    };
    eprintln!("load: running {} ({})", plan.name, plan.about);

    // The backend first: the proxy checks Kinesis as it starts.
    let RunningBackend {
        endpoint,
        pid: backend_pid,
        null_endpoint,
        emulator,
        faults,
    } = RunningBackend::start(plan.backend)?;

    // Before the proxies: dropped (removed) after them.
    let spool_dir = plan.disk.then(SpoolDir::create).transpose()?;
    let lifecycle = LifecycleRun::prepare(&plan.lifecycle)?;
    let mut proxies: Vec<ProxyProcess> = Vec::new();
    let mut bare = None;
    let (ports, server_pids) = match plan.server {
        Server::Proxy => {
            let mut env = proxy_process::base_env(&endpoint, STREAM);
            env.extend(spool_dir.as_ref().map(SpoolDir::env));
            env.extend(plan.env.iter().cloned());
            env.extend(lifecycle.env.iter().cloned());
            for _ in 0..plan.proxies.max(1) {
                let started = ProxyProcess::start(proxy_exe, &env, lifecycle.transport.clone())?;
                started.wait_ready(Duration::from_secs(15)).await?;
                proxies.push(started);
            }
            (
                proxies.iter().map(|p| p.port).collect::<Vec<_>>(),
                proxies.iter().map(|p| p.pid).collect::<Vec<_>>(),
            )
        }
        Server::Bare { workers } => {
            let helper = HelperProcess::spawn(&["--serve-bare".into(), workers.to_string()])?;
            let found = (vec![helper.port], vec![helper.pid]);
            bare = Some(helper);
            found
        }
    };

    let sampler = RssSampler::start(server_pids.clone())?;
    let sampling_since = Instant::now();
    let scrapers: Vec<Scraper> = match plan.scrape_every {
        Some(every) => proxies
            .iter()
            .map(|p| Scraper::start(p.port, p.transport.clone(), every))
            .collect(),
        None => Vec::new(),
    };
    let tls_negotiated = match proxies.first() {
        Some(proxy) => lifecycle.negotiated(proxy.port).await?,
        None => None,
    };
    let tag = format!("{}-{:08x}", plan.name, rand::random::<u32>());
    let api_key = (!proxies.is_empty()).then(|| API_KEY.to_owned());
    let mut load = RunningLoad::start(LoadSpec {
        ports: ports.clone(),
        stream: STREAM.into(),
        api_key: api_key.clone(),
        route: plan.route,
        connections: plan.connections,
        pace: plan.pace,
        max_requests: match plan.window {
            Window::UntilDone { requests, .. } => Some(requests),
            Window::Lasts(_) => None,
        },
        collect_acks: plan.read_back,
        tag: tag.clone(),
        partition_key: None,
        transport: lifecycle.transport.clone(),
        connection_per_request: plan.lifecycle.connection_per_request,
    })
    .await?;
    let mut hot_load = match plan.hot {
        Some(hot) => Some(
            RunningLoad::start(LoadSpec {
                ports,
                stream: STREAM.into(),
                api_key,
                route: Route::Single,
                connections: hot.connections,
                pace: Pace::Open {
                    requests_per_sec: hot.events_per_sec,
                },
                max_requests: None,
                collect_acks: plan.read_back,
                tag: format!("{tag}-hot"),
                partition_key: Some(hot.partition_key.to_owned()),
                transport: lifecycle.transport.clone(),
                connection_per_request: false,
            })
            .await?,
        ),
        None => None,
    };
    // What the stream took second by second, warm-up included: shows how the proxies reach
    // the limit and AIMD's saw-tooth, if there is one.
    let mut stored_so_far: Vec<(Instant, u64, u64)> = Vec::new();
    sleep_sampling(plan.warmup, faults.as_ref(), &mut stored_so_far).await;
    let before = Snapshot::take(&server_pids, backend_pid, &proxies).await?;
    let faults_before = faults.as_ref().map(FaultSnapshot::take);
    let profiler = match (&plan.perf, server_pids.first()) {
        (Some(path), Some(pid)) => Some(Profiler::start(*pid, path)?),
        _ => None,
    };
    load.begin_window();
    if let Some(hot) = &mut hot_load {
        hot.begin_window();
    }
    let hangups = plan
        .lifecycle
        .sighup_every_ms
        .map(|ms| Hangups::start(server_pids.clone(), Duration::from_millis(ms)));
    match plan.window {
        Window::Lasts(duration) => {
            sleep_sampling(duration, faults.as_ref(), &mut stored_so_far).await;
        }
        Window::UntilDone { timeout, .. } => {
            // Sampled second by second too: a cold start's convergence is what it shows.
            tokio::select! {
                done = load.wait_done(timeout) => done?,
                () = sleep_sampling(timeout, faults.as_ref(), &mut stored_so_far) => {}
            }
            if let Some(layer) = &faults {
                let last = FaultSnapshot::take(layer);
                stored_so_far.push((
                    last.at,
                    last.accepted(),
                    last.stats.entries_throttled_by_limit,
                ));
            }
        }
    }
    load.end_window();
    if let Some(hot) = &mut hot_load {
        hot.end_window();
    }
    let signals = match hangups {
        Some(hangups) => Some(hangups.stop().await?),
        None => None,
    };
    let after = Snapshot::take(&server_pids, backend_pid, &proxies).await?;
    let faults_after = faults.as_ref().map(FaultSnapshot::take);
    if let Some(profiler) = profiler {
        profiler.stop()?;
    }
    let result = load.finish(DRAIN_TIMEOUT).await;
    let hot_result = match hot_load {
        Some(hot) => Some(hot.finish(DRAIN_TIMEOUT).await),
        None => None,
    };
    let samples = sampler.finish();
    for scraper in scrapers {
        scraper.stop().await?;
    }
    let mut peak_rss = 0;
    for pid in &server_pids {
        peak_rss += procfs::memory(*pid)?.1;
    }
    let proxy_output = || {
        proxies
            .iter()
            .map(ProxyProcess::output)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (result, hot_result) = match (result, hot_result.transpose()) {
        (Ok(result), Ok(hot_result)) => (result, hot_result),
        (Err(err), _) | (_, Err(err)) => {
            return Err(format!("{err}; proxy output:\n{}", proxy_output()).into());
        }
    };
    let reload = match signals {
        Some(sent) => Some(
            lifecycle_run::reload_figures(&proxies, before.metrics.as_ref(), sent)
                .await
                .map_err(|err| format!("{err}; proxy output:\n{}", proxy_output()))?,
        ),
        None => None,
    };
    // A disk stream answers before Kinesis has its events: wait until the spool has sent them.
    let drained = match &spool_dir {
        Some(_) => Some(
            wait_drained(&proxies, &server_pids)
                .await
                .map_err(|err| format!("{err}; proxy output:\n{}", proxy_output()))?,
        ),
        None => None,
    };
    // SIGTERM: the proxies drain; every acknowledged event is already in the stream.
    let proxy_exit = (!proxies.is_empty()).then(|| {
        proxies
            .into_iter()
            .map(ProxyProcess::stop)
            .collect::<Vec<_>>()
            .join("; ")
    });
    drop(bare);
    drop(null_endpoint);
    if let Some(layer) = &faults {
        layer.stop();
    }

    let read_back = match (&emulator, plan.read_back) {
        (Some(k), true) => Some(read_back(&k.endpoint, &result, hot_result.as_ref()).await?),
        _ => None,
    };
    drop(emulator);

    let window_from = before.at.duration_since(sampling_since).as_secs_f64();
    let window_to = after.at.duration_since(sampling_since).as_secs_f64();
    let middle = (window_from + window_to) / 2.0;
    let max_rss = |from: f64, to: f64| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0) as f64
            / MIB
    };
    let memory = Memory {
        peak_rss_mib: peak_rss as f64 / MIB,
        max_sampled_rss_mib: samples.iter().map(|(_, r)| *r).max().unwrap_or(0) as f64 / MIB,
        window_start_rss_mib: before.server_rss as f64 / MIB,
        window_end_rss_mib: after.server_rss as f64 / MIB,
        first_half_max_rss_mib: max_rss(window_from, middle),
        second_half_max_rss_mib: max_rss(middle, window_to),
        rss_series_mib: per_second(&samples, window_from),
    };

    let put_records = match (&before.metrics, &after.metrics) {
        (Some(b), Some(a)) => Some(put_records_figures(b, a, &result)),
        _ => None,
    };
    // Per second, timed from the window's start (negative: warm-up).
    let delivered_series: Vec<(f64, f64, u64)> = stored_so_far
        .windows(2)
        .map(|pair| {
            let ((from, then, throttled_then), (to, now, throttled_now)) = (pair[0], pair[1]);
            let seconds = to.duration_since(from).as_secs_f64().max(1e-9);
            let at = if to >= before.at {
                to.duration_since(before.at).as_secs_f64()
            } else {
                -before.at.duration_since(to).as_secs_f64()
            };
            (
                (at * 10.0).round() / 10.0,
                (now - then) as f64 / seconds,
                throttled_now - throttled_then,
            )
        })
        .collect();
    let shards = match (faults_before, faults_after) {
        (Some(faults_before), Some(faults_after)) => Some(shard_figures(
            plan,
            &faults_before,
            &faults_after,
            delivered_series,
            (&before, &after),
            &result,
            hot_result.as_ref(),
        )),
        _ => None,
    };
    let linger_ms = (plan.server == Server::Proxy).then_some(settings.batching.linger_ms);
    let ack_p99_bound_ms = match (linger_ms, put_records.as_ref().and_then(|p| p.p99_ms)) {
        (Some(linger), Some(p99)) => Some(linger as f64 + 2.0 * p99),
        _ => None,
    };
    let server_cpu_s = after.server_cpu - before.server_cpu;
    let latency = latency(&result);
    Ok(ScenarioReport {
        name: plan.name.clone(),
        about: plan.about.clone(),
        server: match plan.server {
            Server::Proxy => "proxy".into(),
            Server::Bare { .. } => "bare".into(),
        },
        backend: plan.backend.label(),
        route: plan.route.label(),
        connections: plan.connections,
        load: match plan.pace {
            Pace::Closed => "closed".into(),
            Pace::Open { requests_per_sec } => {
                format!("open {} req/s", report::thousands(requests_per_sec))
            }
        },
        offered_requests_per_sec: match plan.pace {
            Pace::Closed => None,
            Pace::Open { requests_per_sec } => Some(requests_per_sec),
        },
        sent_requests_per_sec: result.sent_per_sec(),
        attempts: 1,
        window_s: result.window.as_secs_f64(),
        requests_per_sec: result.requests_per_sec(),
        events_per_sec: result.events_per_sec(),
        statuses: result
            .statuses
            .iter()
            .map(|(code, n)| (code.to_string(), *n))
            .collect(),
        transport_errors: result.errors,
        first_error: result.first_error.clone(),
        latency,
        ceiling: None,
        http_floor: None,
        ratio: None,
        put_records,
        linger_ms,
        ack_p99_bound_ms,
        server_cpu_s,
        server_cpu_s_per_100k_events: (result.ok_events > 0)
            .then(|| server_cpu_s / result.ok_events as f64 * 100_000.0),
        server_cpu_s_by_thread: after
            .server_threads
            .iter()
            .map(|(name, now)| {
                let then = before.server_threads.get(name).copied().unwrap_or(0.0);
                (name.clone(), now - then)
            })
            .filter(|(_, used)| *used > 0.0)
            .collect(),
        backend_cpu_s: match (before.backend_cpu, after.backend_cpu) {
            (Some(b), Some(a)) => Some(a - b),
            _ => None,
        },
        loadgen_cpu_s: after.own_cpu - before.own_cpu,
        other_cpu_s: (after.machine_busy - before.machine_busy)
            - server_cpu_s
            - (after.own_cpu - before.own_cpu)
            - before
                .backend_cpu
                .zip(after.backend_cpu)
                .map_or(0.0, |(b, a)| a - b),
        busy_cores_before: busy_before,
        memory,
        read_back,
        proxy_exit,
        settings: settings_in_effect(&settings, plan),
        shards,
        disk: drained
            .as_ref()
            .and_then(|d| disk_figures((&before, &after), d, &result)),
        lifecycle: lifecycle_run::figures(&plan.lifecycle, tls_negotiated, reload, &result),
        checks: Vec::new(),
    })
}

pub(super) fn latency(result: &LoadResult) -> Option<Latency> {
    match (
        result.latency_ms(0.5),
        result.latency_ms(0.99),
        result.latency_ms(1.0),
    ) {
        (Some(p50_ms), Some(p99_ms), Some(max_ms)) => Some(Latency {
            p50_ms,
            p99_ms,
            max_ms,
        }),
        _ => None,
    }
}

/// One RSS sample a second, timed from the window's start, in MiB.
fn per_second(samples: &[(f64, u64)], window_from: f64) -> Vec<(f64, f64)> {
    let mut series: Vec<(f64, f64)> = Vec::new();
    for &(t, rss) in samples {
        let at = t - window_from;
        if series.last().is_none_or(|(last, _)| at - last >= 1.0) {
            series.push(((at * 10.0).round() / 10.0, rss as f64 / MIB));
        }
    }
    series
}
