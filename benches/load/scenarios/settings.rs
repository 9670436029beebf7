//! The proxy settings of a run: resolved exactly as the proxy resolves them (config.toml, then
//! its environment), `section.key` settings turned into that environment, and the settings in
//! effect as the report states them.

use std::collections::BTreeMap;

use kinesis_proxy::config::Settings;

use super::run::{RunPlan, Server, STREAM};
use crate::cli::env_name;
use crate::proxy_process;
use crate::{Context, Error};

/// Resolves the proxy's settings exactly as the proxy will (config.toml, then environment), so
/// the report states what was in effect and bad `--set` values fail before anything starts.
pub(super) fn resolve_settings(env: &[(String, String)]) -> Result<Settings, Error> {
    let path = proxy_process::config_path();
    let text = std::fs::read_to_string(path).context(format_args!("reading {path}"))?;
    // The endpoint does not matter here; the rest is what every proxy gets.
    let base = proxy_process::base_env("http://127.0.0.1:1", STREAM);
    let settings = Settings::from_sources(
        Some((path, &text)),
        base.into_iter().chain(env.iter().cloned()),
    )
    .context("resolving the proxy settings")?;
    settings.validate().context("the proxy settings")?;
    Ok(settings)
}

/// `section.key` settings as proxy environment variables.
pub(super) fn settings_env(
    scenario: &[(&str, &str)],
    sets: &[(String, String)],
) -> Vec<(String, String)> {
    scenario
        .iter()
        .map(|(k, v)| (env_name(k), (*v).to_owned()))
        .chain(sets.iter().map(|(k, v)| (env_name(k), v.clone())))
        .collect()
}

pub(super) fn proxy_workers(settings: &Settings) -> usize {
    match settings.server.workers {
        0 => crate::cli::cores(),
        n => n,
    }
}

pub(super) fn settings_in_effect(settings: &Settings, plan: &RunPlan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Server::Bare { workers } = plan.server {
        out.insert("bare.workers".into(), workers.to_string());
        return out;
    }
    let b = &settings.batching;
    for (key, value) in [
        ("server.workers", proxy_workers(settings).to_string()),
        (
            "server.kinesis_threads",
            settings.server.kinesis_threads.to_string(),
        ),
        ("batching.linger_ms", b.linger_ms.to_string()),
        (
            "batching.max_in_flight_calls",
            b.max_in_flight_calls.to_string(),
        ),
        (
            "batching.max_batch_records",
            b.max_batch_records.to_string(),
        ),
        ("batching.max_batch_bytes", b.max_batch_bytes.to_string()),
        (
            "batching.queue_max_records",
            b.queue_max_records.to_string(),
        ),
        ("batching.queue_max_bytes", b.queue_max_bytes.to_string()),
        (
            "limits.max_pipelines",
            settings.limits.max_pipelines.to_string(),
        ),
    ] {
        out.insert(key.into(), value);
    }
    for (name, value) in &plan.env {
        out.insert(name.clone(), value.clone());
    }
    if plan.proxies > 1 {
        out.insert("bench.proxies".into(), plan.proxies.to_string());
    }
    out.insert(
        "bench.scrape_every_s".into(),
        plan.scrape_every
            .map_or("0 (only around the window)".into(), |d| {
                format!("{}", d.as_secs_f64())
            }),
    );
    out
}
