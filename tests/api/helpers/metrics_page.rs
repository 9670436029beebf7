//! Reading a Prometheus text page (`GET /metrics`) in tests: one series' value by its labels.

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
