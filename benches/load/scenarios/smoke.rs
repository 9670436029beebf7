//! The smoke test (`cargo test --bench load`, or `--all-targets`): five short runs proving
//! the machinery works, judged by `judge::smoke_checks`, failing when any check misses.
//!
//! Its runs are fixed plans of its own, not scenarios of the catalogue; carrying them out is
//! `run.rs` and their checks are `judge.rs`.

use std::time::Duration;

use super::catalogue::{Backend, Lifecycle, DISK_AGGREGATE_SETTINGS, KINESALITE_SETTINGS};
use super::judge::smoke_checks;
use super::run::{build_runtime, execute, RunPlan, Server, Window};
use super::settings::{proxy_workers, resolve_settings, settings_env};
use crate::cli::Options;
use crate::loadgen::{Pace, Route};
use crate::proxy_process::PinnedBinary;
use crate::report::{self, Ceiling};
use crate::{Context, Error};

/// `cargo test --all-targets`: a few seconds proving the machinery works: the bare ceiling,
/// the proxy against the do-nothing endpoint (figures non-zero), a kinesalite read-back of
/// 200 events through the fault layer that enforces Kinesis' per-shard limits (as the shard
/// scenarios use it), and 200 events of a disk stream (answered 202, as the disk scenarios
/// send them), the spool drained and the stream read back by id, and a proxy serving TLS driven
/// with a new connection per request while it is sent SIGHUPs (as the TLS, handshake and reload
/// scenarios use it), every signal a counted reload. Fails when any of it does not work.
pub fn run_smoke(options: &Options) -> Result<(), Error> {
    // Never hang CI: a stuck child or connection ends the smoke test with a failure.
    std::thread::Builder::new()
        .name("smoke-watchdog".into())
        .spawn(|| {
            std::thread::sleep(Duration::from_secs(240));
            eprintln!("load smoke test: still running after 240 s; giving up");
            std::process::exit(1);
        })
        .context("starting the watchdog")?;
    let env = settings_env(&[], &options.sets);
    let settings = resolve_settings(&env)?;
    let connections = 8;
    let runtime = build_runtime(2)?;
    let warmup = Duration::from_millis(300);
    let null_plan = RunPlan {
        name: "smoke-null".into(),
        about: "proxy → do-nothing Kinesis, 8 conns, 1.5 s".into(),
        server: Server::Proxy,
        backend: Backend::Null { delay_ms: 0 },
        route: Route::Single,
        connections,
        pace: Pace::Closed,
        warmup,
        window: Window::Lasts(Duration::from_millis(1500)),
        env: env.clone(),
        read_back: false,
        wait_quiet: Duration::ZERO,
        perf: None,
        scrape_every: None,
        proxies: 1,
        hot: None,
        disk: false,
        lifecycle: Lifecycle::PLAIN,
    };
    let plans = [
        RunPlan {
            name: "smoke-ceiling".into(),
            about: "bare handler, 8 conns, 1 s".into(),
            server: Server::Bare {
                workers: proxy_workers(&settings),
            },
            backend: Backend::None,
            route: Route::Single,
            connections,
            pace: Pace::Closed,
            warmup,
            window: Window::Lasts(Duration::from_secs(1)),
            env: Vec::new(),
            read_back: false,
            wait_quiet: Duration::ZERO,
            perf: None,
            scrape_every: None,
            proxies: 1,
            hot: None,
            disk: false,
            lifecycle: Lifecycle::PLAIN,
        },
        null_plan.clone(),
        RunPlan {
            name: "smoke-kinesalite".into(),
            about: "proxy → fault layer (Kinesis' per-shard limits) → kinesalite, 200 events, read-back".into(),
            server: Server::Proxy,
            backend: Backend::LimitedKinesalite {
                shards: 2,
                records_per_second: 1000,
            },
            route: Route::Single,
            connections,
            pace: Pace::Closed,
            warmup: Duration::ZERO,
            window: Window::UntilDone {
                requests: 200,
                timeout: Duration::from_secs(60),
            },
            env: settings_env(KINESALITE_SETTINGS, &options.sets),
            read_back: true,
            wait_quiet: Duration::ZERO,
            perf: None,
            scrape_every: None,
            proxies: 1,
            hot: None,
            disk: false,
            lifecycle: Lifecycle::PLAIN,
        },
        RunPlan {
            name: "smoke-disk".into(),
            about: "proxy, disk stream (202 once fsynced), aggregated → kinesalite, 200 events, drained, read-back by id".into(),
            server: Server::Proxy,
            backend: Backend::Kinesalite { shards: 2 },
            route: Route::Single,
            connections,
            pace: Pace::Closed,
            warmup: Duration::ZERO,
            window: Window::UntilDone {
                requests: 200,
                timeout: Duration::from_secs(60),
            },
            env: settings_env(DISK_AGGREGATE_SETTINGS, &options.sets),
            read_back: true,
            wait_quiet: Duration::ZERO,
            perf: None,
            scrape_every: None,
            proxies: 1,
            hot: None,
            disk: true,
            lifecycle: Lifecycle::PLAIN,
        },
        // The TLS client, a connection per request and reloads, on smoke-null's plan.
        RunPlan {
            name: "smoke-tls".into(),
            about: "proxy over TLS, API key from a file, a new connection per request, SIGHUP every 250 ms, 1.5 s".into(),
            lifecycle: Lifecycle {
                tls: true,
                connection_per_request: true,
                sighup_every_ms: Some(250),
                keys_file: true,
                compared_with: None,
            },
            ..null_plan
        },
    ];
    let proxy = PinnedBinary::in_place();
    let mut reports = Vec::new();
    runtime.block_on(async {
        for plan in &plans {
            reports.push(execute(plan, &proxy.path).await?);
        }
        Ok::<_, Error>(())
    })?;
    drop(runtime);

    let ceiling = Ceiling {
        scenarios: vec![reports[0].name.clone()],
        requests_per_sec: reports[0].requests_per_sec,
        events_per_sec: reports[0].events_per_sec,
        before_requests_per_sec: reports[0].requests_per_sec,
        after_requests_per_sec: reports[0].requests_per_sec,
    };
    reports[1].ratio = Some(reports[1].requests_per_sec / ceiling.requests_per_sec.max(1e-9));
    reports[1].ceiling = Some(ceiling);
    for report in &mut reports {
        report.checks = smoke_checks(report);
    }
    let run = report::run_report(reports);
    println!("{}", report::markdown(&run));
    let path = options.report.with_file_name("load-smoke-report.json");
    report::write_json(&path, &run)?;
    let failed: Vec<String> = run
        .scenarios
        .iter()
        .flat_map(|s| {
            s.checks
                .iter()
                .filter(|c| !c.pass)
                .map(move |c| format!("{}: {} ({})", s.name, c.target, c.measured))
        })
        .collect();
    if failed.is_empty() {
        println!("load smoke test: ok (run `cargo bench --bench load` for the benchmark)");
        Ok(())
    } else {
        Err(format!("smoke test failed:\n  {}", failed.join("\n  ")).into())
    }
}
