//! Reading a Prometheus text page (`GET /metrics`) in tests: one series' value by its labels,
//! and waiting for a state the page shows (a stream's shard map loaded).

use std::time::{Duration, Instant};

use serde_json::json;

use super::app::TestApp;

/// The value of the series `name` on a `/metrics` page that carries all of `labels` (it may
/// carry others too).
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let pairs: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            let all = labels
                .iter()
                .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()));
            if all {
                value.parse().ok()
            } else {
                None
            }
        })
}

/// Every series `name` that carries all of `labels`, as (value of `by`, value).
pub fn samples_by(page: &str, name: &str, labels: &[(&str, &str)], by: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{')?;
            if metric != name {
                return None;
            }
            let pairs: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            let all = labels
                .iter()
                .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()));
            let key = pairs
                .iter()
                .find_map(|pair| pair.strip_prefix(&format!("{by}=\"")))?
                .trim_end_matches('"')
                .to_owned();
            all.then(|| Some((key, value.parse().ok()?)))?
        })
        .collect()
}

/// Sends one event (which starts the stream's pipeline) and waits until its shard map is loaded.
pub async fn start_pipeline_and_wait_for_map(app: &TestApp) {
    let warm_up = app.post_event(&json!({"event": {"warm_up": true}})).await;
    assert_eq!(warm_up.status(), 200);
    let stream = app.stream.as_str();
    let started = Instant::now();
    loop {
        let page = app.metrics_page().await;
        if sample(
            &page,
            "kinesis_proxy_shard_map_available",
            &[("stream", stream)],
        ) == Some(1.0)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no shard map after 10 s:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
