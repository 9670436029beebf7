//! Judging: checks each run's figures against its target from the load-benchmark issue (and
//! the smoke test's against "the machinery works"), as `Check`s on the reports.
//!
//! Pure functions of the reports: nothing here runs anything, prints or writes; the report's
//! shape and printing are `report.rs`. The TLS and reload targets (issue 19) are
//! `judge/lifecycle.rs`, the smoke test's checks `judge/smoke.rs`.

use crate::report::{self, Check, ScenarioReport};

mod lifecycle;
mod smoke;

pub(super) use smoke::smoke_checks;

fn check(target: impl Into<String>, measured: impl Into<String>, pass: bool) -> Check {
    Check {
        target: target.into(),
        measured: measured.into(),
        pass,
    }
}

/// Answers other than 2xx, as text (`"503: 12"`), or `None` when all were 2xx.
fn refusals(report: &ScenarioReport) -> Option<String> {
    let mut other: Vec<String> = report
        .statuses
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    if report.transport_errors > 0 {
        other.push(format!(
            "transport errors: {} (first: {})",
            report.transport_errors,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
    (!other.is_empty()).then(|| other.join(", "))
}

fn read_back_check(report: &ScenarioReport) -> Option<Check> {
    let r = report.read_back.as_ref()?;
    Some(check(
        "every acknowledged event is in the stream",
        format!(
            "{} acknowledged, {} missing, {} unreadable answers, {} stored ({} ids stored twice) in {} Kinesis records, {:.1} PUT payload units per 1,000 events",
            r.acknowledged,
            r.missing,
            r.unparsed_answers,
            r.stored_records,
            r.duplicates,
            r.kinesis_records,
            1000.0 * r.payload_units as f64 / r.stored_records.max(1) as f64
        ),
        r.missing == 0 && r.unparsed_answers == 0 && r.acknowledged > 0,
    ))
}

fn ack_bound_check(report: &ScenarioReport) -> Check {
    let p99 = report.latency.as_ref().map(|l| l.p99_ms);
    let measured = format!(
        "ack p99 {} ms at {} (the proxy's own ack_latency p99: {} ms); bound {} ms (linger {} + 2 x PutRecords p99 {} ms)",
        p99.map_or("-".into(), |v| format!("{v:.1}")),
        report.load,
        report
            .put_records
            .as_ref()
            .and_then(|p| p.proxy_ack_p99_ms)
            .map_or("-".into(), |v| format!("{v:.1}")),
        report
            .ack_p99_bound_ms
            .map_or("-".into(), |v| format!("{v:.1}")),
        report.linger_ms.unwrap_or_default(),
        report
            .put_records
            .as_ref()
            .and_then(|p| p.p99_ms)
            .map_or("-".into(), |v| format!("{v:.1}")),
    );
    let pass = matches!((p99, report.ack_p99_bound_ms), (Some(p), Some(b)) if p <= b);
    check(
        "ack p99 <= linger + 2 x PutRecords p99 at half of peak",
        measured,
        pass,
    )
}

/// `shards-cold-start`: at most 3% of the entries sent throttled over the whole run, and the
/// rate settled within 2 s: from then on every full second stored 90-110% of the stream's
/// limit with at most 3% of its entries throttled.
fn cold_start_checks(report: &ScenarioReport) -> Vec<Check> {
    let Some(s) = &report.shards else {
        return vec![check("shard figures from the fault layer", "none", false)];
    };
    let limit = s.stream_limit_records_per_sec;
    // Full seconds only: the last sample is cut short when the events run out.
    let full = &s.delivered_series[..s.delivered_series.len().saturating_sub(1)];
    let steady = |&(_, stored, throttled): &(f64, f64, u64)| {
        let sent = stored + throttled as f64;
        (0.9 * limit..=1.1 * limit).contains(&stored) && throttled as f64 <= 0.03 * sent
    };
    let settled_after = full
        .iter()
        .rposition(|second| !steady(second))
        .map_or(0.0, |i| full[i].0);
    vec![
        check(
            "<= 3% of sent entries throttled over the run",
            format!(
                "{:.2}% ({} of {} entries; {:.1} entries per PutRecords)",
                s.throttled_share * 100.0,
                report::thousands(s.entries_throttled as f64),
                report::thousands(s.entries_sent as f64),
                s.entries_per_call.unwrap_or(0.0)
            ),
            s.throttled_share <= 0.03,
        ),
        check(
            "the rate settles within 2 s (then each second 90-110% of the limit, <= 3% throttled)",
            format!("after {settled_after:.1} s"),
            settled_after <= 2.0,
        ),
    ]
}

/// Events/s against Little's bound: every connection has one event out, and each waits at
/// least one call of `latency_s`.
fn littles_bound_check(report: &ScenarioReport, latency_s: f64, min_ratio: f64) -> Check {
    let bound = report.connections as f64 / latency_s;
    let ratio = report.events_per_sec / bound;
    check(
        format!(
            ">= {min_ratio:.2} of Little's bound ({} connections / {:.0} ms = {} events/s)",
            report.connections,
            latency_s * 1000.0,
            report::thousands(bound)
        ),
        format!(
            "{ratio:.3} ({} events/s, p50 {} ms)",
            report::thousands(report.events_per_sec),
            report
                .latency
                .as_ref()
                .map_or_else(|| "-".into(), |l| format!("{:.1}", l.p50_ms))
        ),
        ratio >= min_ratio,
    )
}

/// `shards-real`: the share of the stream's limit delivered, and of sent entries throttled.
fn shard_checks(report: &ScenarioReport, min_share: f64, max_throttled: f64) -> Vec<Check> {
    let Some(s) = &report.shards else {
        return vec![check("shard figures from the fault layer", "none", false)];
    };
    let proxies = if s.proxies > 1 {
        format!(" over {} proxies", s.proxies)
    } else {
        String::new()
    };
    vec![
        check(
            format!(
                ">= {:.0}% of the stream's {} records/s delivered{proxies}",
                min_share * 100.0,
                report::thousands(s.stream_limit_records_per_sec)
            ),
            format!(
                "{:.1}% ({} events/s acknowledged; kinesalite stored {} records/s)",
                s.share_of_limit * 100.0,
                report::thousands(report.events_per_sec),
                report::thousands(s.delivered_per_sec)
            ),
            s.share_of_limit >= min_share,
        ),
        check(
            format!("<= {:.0}% of sent entries throttled", max_throttled * 100.0),
            format!(
                "{:.2}% ({} of {} entries; {:.1} entries per PutRecords)",
                s.throttled_share * 100.0,
                report::thousands(s.entries_throttled as f64),
                report::thousands(s.entries_sent as f64),
                s.entries_per_call.unwrap_or(0.0)
            ),
            s.throttled_share <= max_throttled,
        ),
    ]
}

/// `shards-hot-key`: the other clients' ack p99 with the hot client, against without it.
fn hot_key_check(report: &ScenarioReport) -> Check {
    let s = report.shards.as_ref();
    let ratio = s.and_then(|s| s.p99_ratio_to_without_hot);
    let hot = s.and_then(|s| s.hot_client.as_ref());
    check(
        "other clients' ack p99 <= 2x their p99 without the hot client",
        format!(
            "{} ({} ms with the hot client, {} ms without); the hot client: {} events/s \
             acknowledged of {} offered, {} refused with 503 hot_shard, answers {}",
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            report
                .latency
                .as_ref()
                .map_or("-".into(), |l| format!("{:.1}", l.p99_ms)),
            s.and_then(|s| s.without_hot_p99_ms)
                .map_or("-".into(), |v| format!("{v:.1}")),
            hot.map_or("-".into(), |h| report::thousands(h.events_per_sec)),
            hot.map_or("-".into(), |h| report::thousands(h.offered_events_per_sec)),
            hot.map_or(0, |h| h.hot_shard_refusals),
            hot.map_or("-".into(), |h| {
                h.statuses
                    .iter()
                    .map(|(code, n)| format!("{code}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        ),
        ratio.is_some_and(|r| r <= 2.0),
    )
}

/// The disk-acknowledgement scenarios (issue 11): with `targets` (`disk-kinesalite`), events/s
/// acknowledged on disk and the proxy's CPU per event, drain included; for each, that the
/// spool drained. Records per fsync and latency have no target: the disk table shows them.
fn disk_checks(report: &ScenarioReport, targets: bool) -> Vec<Check> {
    let Some(d) = &report.disk else {
        return vec![check("disk figures from /metrics", "none", false)];
    };
    let mut checks = Vec::new();
    let baseline = d.baseline.as_ref();
    if targets {
        let answered_202 = report.statuses.get("202").copied().unwrap_or(0);
        checks.push(check(
            ">= 30,000 events/s acknowledged on disk (202) at 64 connections",
            format!(
                "{} events/s ({} answered 202 in the window){}; ack p50 / p99 {} ms; {} records per fsync",
                report::thousands(report.events_per_sec),
                report::thousands(answered_202 as f64),
                match (baseline, d.throughput_ratio(report.events_per_sec)) {
                    (Some(b), Some(ratio)) => format!(
                        "; {ratio:.2}x the same load answered 200 after Kinesis ({}: {} events/s)",
                        b.scenario,
                        report::thousands(b.events_per_sec)
                    ),
                    _ => String::new(),
                },
                report
                    .latency
                    .as_ref()
                    .map_or("-".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms)),
                d.records_per_fsync
                    .map_or("-".into(), |v| format!("{v:.1}")),
            ),
            report.events_per_sec >= 30_000.0 && answered_202 > 0,
        ));
        let with_drain = d.cpu_s_per_10k_with_drain;
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let by_thread: Vec<String> = report
            .server_cpu_s_by_thread
            .iter()
            .map(|(name, seconds)| {
                let events = report.events_per_sec * report.window_s;
                format!("{name} {:.3}", seconds / events.max(1.0) * 10_000.0)
            })
            .collect();
        checks.push(check(
            "proxy CPU <= 0.25 s per 10,000 events (appended and delivered)",
            format!(
                "{} s from the window's start until the spool drained ({} s over the window alone: {}; the 200 path: {} s; the bare actix-web handler alone at the same rate: {} s)",
                fmt(with_drain),
                fmt(report.server_cpu_s_per_100k_events.map(|v| v / 10.0)),
                by_thread.join(", "),
                fmt(baseline.and_then(|b| b.cpu_s_per_10k)),
                fmt(report
                    .http_floor
                    .as_ref()
                    .and_then(|f| f.server_cpu_s_per_100k_events)
                    .map(|v| v / 10.0)),
            ),
            with_drain.is_some_and(|v| v <= 0.25),
        ));
    }
    let drained = d.left_after_drain <= 0.0;
    checks.push(check(
        "the spool drained after the load",
        format!(
            "{} records not yet in Kinesis at the window's end ({} delivered/s during it); {} {:.1} s after the last answer; {} appends refused (spool full)",
            report::thousands(d.backlog_at_end),
            report::thousands(d.delivered_per_sec),
            if drained {
                "drained".to_owned()
            } else {
                format!("{} still there", report::thousands(d.left_after_drain))
            },
            d.drain_s,
            report::thousands(d.refusals),
        ),
        drained,
    ));
    checks
}

/// The proxy's CPU per 10,000 events over the window, against `limit`, with the bare handler's
/// at the same rate (the HTTP floor) for scale.
fn cpu_per_event_check(report: &ScenarioReport, limit: f64) -> Check {
    let per_10k = report.server_cpu_s_per_100k_events.map(|v| v / 10.0);
    let floor_per_10k = report
        .http_floor
        .as_ref()
        .and_then(|f| f.server_cpu_s_per_100k_events)
        .map(|v| v / 10.0);
    check(
        format!("proxy CPU <= {limit} s per 10,000 events"),
        match (per_10k, floor_per_10k) {
            (Some(v), Some(floor)) => {
                format!("{v:.3} s (the bare handler alone at the same rate: {floor:.3} s)")
            }
            (Some(v), None) => format!("{v:.3} s"),
            _ => "-".into(),
        },
        per_10k.is_some_and(|v| v <= limit),
    )
}

/// Events/s acknowledged on disk against the same load acknowledged in memory (run first).
fn disk_to_memory_check(report: &ScenarioReport, at_least: f64) -> Check {
    let Some(d) = &report.disk else {
        return check("disk figures from /metrics", "none", false);
    };
    let ratio = d.throughput_ratio(report.events_per_sec);
    check(
        format!(">= {at_least}x the events/s acknowledged in memory"),
        match (d.baseline.as_ref(), ratio) {
            (Some(b), Some(r)) => format!(
                "{r:.2}x ({} vs {} events/s; proxy CPU per 10k events {} vs {} s)",
                report::thousands(report.events_per_sec),
                report::thousands(b.events_per_sec),
                d.cpu_s_per_10k_with_drain
                    .map_or("-".into(), |v| format!("{v:.3}")),
                b.cpu_s_per_10k.map_or("-".into(), |v| format!("{v:.3}")),
            ),
            _ => "no memory run to compare with".into(),
        },
        ratio.is_some_and(|r| r >= at_least),
    )
}

/// Checks each scenario against its target from the issue.
pub(super) fn evaluate(reports: &mut [ScenarioReport]) {
    let single_events = reports
        .iter()
        .find(|r| r.name == "null-single")
        .map(|r| r.events_per_sec);
    let kinesalite_alone = reports
        .iter()
        .find(|r| r.name == "kinesalite-direct")
        .map(|r| r.events_per_sec);
    for report in reports.iter_mut() {
        let put = report.put_records.clone();
        let mut checks = Vec::new();
        if report.server == "proxy" && report.name != "overload" {
            checks.push(check(
                "every request answered 2xx",
                refusals(report).unwrap_or_else(|| "all 2xx".into()),
                refusals(report).is_none(),
            ));
        }
        match report.name.as_str() {
            "null-single" => {
                let ratio = report.ratio.unwrap_or(0.0);
                checks.push(check(
                    ">= 0.8x the bare handler's requests/s",
                    format!(
                        "{ratio:.2}x ({} vs {} req/s{})",
                        report::thousands(report.requests_per_sec),
                        report
                            .ceiling
                            .as_ref()
                            .map_or("-".into(), |c| report::thousands(c.requests_per_sec)),
                        report.ceiling.as_ref().map_or(String::new(), |c| format!(
                            ", the mean of {} before and {} after",
                            report::thousands(c.before_requests_per_sec),
                            report::thousands(c.after_requests_per_sec)
                        )),
                    ),
                    ratio >= 0.8,
                ));
                let per_1000 = put.as_ref().and_then(|p| p.calls_per_1000_events);
                checks.push(check(
                    "<= 10 PutRecords calls per 1,000 events",
                    per_1000.map_or("-".into(), |v| format!("{v:.2}")),
                    per_1000.is_some_and(|v| v <= 10.0),
                ));
            }
            "null-many" => {
                if let Some(single) = single_events {
                    let factor = report.events_per_sec / single.max(1e-9);
                    checks.push(check(
                        ">= 5x null-single's events/s",
                        format!(
                            "{factor:.2}x ({} vs {} events/s)",
                            report::thousands(report.events_per_sec),
                            report::thousands(single)
                        ),
                        factor >= 5.0,
                    ));
                }
                let mean = put.as_ref().and_then(|p| p.records_per_call);
                checks.push(check(
                    ">= 450 records per PutRecords (mean)",
                    mean.map_or("-".into(), |v| format!("{v:.1}")),
                    mean.is_some_and(|v| v >= 450.0),
                ));
            }
            "kinesalite-single" => {
                checks.push(check(
                    ">= 10,000 events/s",
                    match kinesalite_alone {
                        Some(alone) => format!(
                            "{} (kinesalite alone, no proxy: {} records/s)",
                            report::thousands(report.events_per_sec),
                            report::thousands(alone)
                        ),
                        None => report::thousands(report.events_per_sec),
                    },
                    report.events_per_sec >= 10_000.0,
                ));
                checks.push(cpu_per_event_check(report, 0.15));
            }
            "memory-null-64" => checks.push(cpu_per_event_check(report, 0.14)),
            "disk-null-64" => {
                checks.extend(disk_checks(report, false));
                checks.push(disk_to_memory_check(report, 0.6));
            }
            "null-half" | "kinesalite-half" => checks.push(ack_bound_check(report)),
            "shards-real" => checks.extend(shard_checks(report, 0.95, 0.02)),
            "shards-three-proxies" => checks.extend(shard_checks(report, 0.90, 0.05)),
            "shards-hot-key" => checks.push(hot_key_check(report)),
            "shards-cold-start" => checks.extend(cold_start_checks(report)),
            "kpl-latency-30ms" => checks.push(littles_bound_check(report, 0.030, 0.85)),
            "disk-kinesalite" => checks.extend(disk_checks(report, true)),
            "disk-kinesalite-noagg" => checks.extend(disk_checks(report, false)),
            "overload" => {
                let refused: u64 = report
                    .statuses
                    .iter()
                    .filter(|(code, _)| *code == "503" || *code == "429")
                    .map(|(_, n)| n)
                    .sum();
                checks.push(check(
                    "overload reached (requests refused with 503/429)",
                    format!(
                        "{refused} refused; {} events/s acknowledged of {} offered",
                        report::thousands(report.events_per_sec),
                        report::thousands(report.offered_requests_per_sec.unwrap_or(0.0) * 100.0),
                    ),
                    refused > 0,
                ));
                let m = &report.memory;
                let s = &report.settings;
                let get = |k: &str| s.get(k).map_or("?", String::as_str);
                checks.push(check(
                    "resident memory bounded: RSS does not grow over the second half of the window",
                    format!(
                        "peak RSS {:.1} MiB; max {:.1} MiB in the first half, {:.1} MiB in the second; \
                         bound from settings: queue_max_records {} and queue_max_bytes {} per pipeline, 1 pipeline",
                        m.peak_rss_mib,
                        m.first_half_max_rss_mib,
                        m.second_half_max_rss_mib,
                        get("batching.queue_max_records"),
                        get("batching.queue_max_bytes"),
                    ),
                    m.second_half_max_rss_mib <= m.first_half_max_rss_mib * 1.05 + 1.0,
                ));
            }
            _ => {}
        }
        if let Some(c) = read_back_check(report) {
            checks.push(c);
        }
        checks.extend(lifecycle::checks(report));
        report.checks = checks;
    }
}
