//! The shard-awareness scenarios' figures (throttling and per-shard delivery, as the fault layer
//! enforcing Kinesis' per-shard limits saw them, and the hot client's) and their own table.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{opt, thousands, Latency, RunReport, ScenarioReport};

/// One shard over the window, as the fault layer in front of kinesalite saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ShardRate {
    /// Entries kinesalite stored on this shard, per second.
    pub delivered_per_sec: f64,
    /// Entries for this shard that the fault layer throttled (over the shard's limit).
    pub throttled: u64,
    pub entries_seen: u64,
}

/// A second client of the run (the hot-key scenario's one-key client), measured apart.
#[derive(Debug, Clone, Serialize)]
pub struct HotClientFigures {
    pub connections: usize,
    pub offered_events_per_sec: f64,
    /// Its acknowledged events per second.
    pub events_per_sec: f64,
    pub statuses: BTreeMap<String, u64>,
    /// Refusals whose `code` was `hot_shard` (503 Retry-After: its shard's backlog is full).
    pub hot_shard_refusals: u64,
    pub latency: Option<Latency>,
}

/// What the shard-awareness scenarios measure beyond the usual figures: throttling and
/// per-shard delivery from the fault layer that enforces Kinesis' limits, over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ShardFigures {
    pub proxies: usize,
    /// The stream's limit: shards x 1,000 records/s.
    pub stream_limit_records_per_sec: f64,
    /// Events acknowledged per second (all clients) over that limit.
    pub share_of_limit: f64,
    /// Entries kinesalite stored per second (all clients, retries and duplicates included).
    pub delivered_per_sec: f64,
    /// PutRecords entries the proxies sent (first tries and retries).
    pub entries_sent: u64,
    /// Of those, throttled for exceeding a shard's limit.
    pub entries_throttled: u64,
    pub throttled_share: f64,
    /// PutRecords calls of all proxies.
    pub put_records_calls: u64,
    /// Calls per 1,000 acknowledged events (all clients).
    pub calls_per_1000_events: Option<f64>,
    /// Entries per call.
    pub entries_per_call: Option<f64>,
    pub per_shard: BTreeMap<String, ShardRate>,
    /// `[seconds since the window opened, entries stored per second over the second before,
    /// entries throttled in that second]`, warm-up included (negative times): how the proxies
    /// reach the limit, AIMD's saw-tooth.
    pub delivered_series: Vec<(f64, f64, u64)>,
    /// Each shard's adaptive rate (`kinesis_proxy_shard_rate_records_per_second`) at the window's
    /// end, summed over the proxies.
    pub proxy_rates_at_end: BTreeMap<String, f64>,
    /// Entries the proxies counted as throttled (`kinesis_proxy_shard_throttled_total`).
    pub proxy_counted_throttled: f64,
    pub hot_client: Option<HotClientFigures>,
    /// The same clients' ack p99 in the scenario without the hot client, and this one's over it.
    pub without_hot_p99_ms: Option<f64>,
    pub p99_ratio_to_without_hot: Option<f64>,
}

/// The shard-awareness scenarios' own table, when any ran.
pub(super) fn shard_table(out: &mut String, report: &RunReport) {
    let rows: Vec<(&ScenarioReport, &ShardFigures)> = report
        .scenarios
        .iter()
        .filter_map(|s| s.shards.as_ref().map(|f| (s, f)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "\nShards (the fault layer enforcing 1,000 records/s and 1 MiB/s per shard):\n\n\
         | scenario | proxies | events/s acked | % of limit | stored/s | throttled | PutRecords/1k ev \
         | entries/call | stored/s per shard | stored/s each second | proxy rate/shard at end \
         | ack p99 ms | hot client | proxy CPU s/100k ev | missing |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|---|---|---|--:|---|--:|--:|\n",
    );
    for (s, f) in rows {
        let per_shard: Vec<String> = f
            .per_shard
            .values()
            .map(|r| thousands(r.delivered_per_sec))
            .collect();
        // The window only; the JSON report has the warm-up too.
        let series: Vec<String> = f
            .delivered_series
            .iter()
            .filter(|(at, _, _)| *at > 0.0)
            .map(|(_, stored, throttled)| match throttled {
                0 => thousands(*stored),
                n => format!("{} ({n} thr.)", thousands(*stored)),
            })
            .collect();
        let rates: Vec<String> = f
            .proxy_rates_at_end
            .values()
            .map(|v| thousands(*v))
            .collect();
        let hot = f.hot_client.as_ref().map_or_else(
            || "-".into(),
            |h| {
                format!(
                    "{} of {} ev/s, p99 {} ms, {} hot_shard",
                    thousands(h.events_per_sec),
                    thousands(h.offered_events_per_sec),
                    h.latency
                        .as_ref()
                        .map_or_else(|| "-".into(), |l| format!("{:.0}", l.p99_ms)),
                    h.hot_shard_refusals
                )
            },
        );
        let p99 = s.latency.as_ref().map_or_else(
            || "-".into(),
            |l| match f.p99_ratio_to_without_hot {
                Some(ratio) => format!("{:.1} ({ratio:.2}x)", l.p99_ms),
                None => format!("{:.1}", l.p99_ms),
            },
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            f.proxies,
            thousands(s.events_per_sec),
            // A backend that only delays calls has no limit to be a share of.
            if f.stream_limit_records_per_sec > 0.0 {
                format!("{:.1}%", f.share_of_limit * 100.0)
            } else {
                "-".into()
            },
            thousands(f.delivered_per_sec),
            f.throttled_share * 100.0,
            opt(f.calls_per_1000_events, 1),
            opt(f.entries_per_call, 1),
            per_shard.join(" / "),
            series.join(" "),
            rates.join(" / "),
            p99,
            hot,
            opt(s.server_cpu_s_per_100k_events, 2),
            s.read_back
                .as_ref()
                .map_or_else(|| "-".into(), |r| r.missing.to_string()),
        );
    }
}
