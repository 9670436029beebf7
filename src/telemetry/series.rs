//! Series that belong to one stream, kept apart so they can leave `/metrics` with it.
//!
//! The Prometheus recorder cannot forget a series once registered (its only removal is an idle
//! timeout over every series of a kind, which would also drop the live handles the hot path
//! holds). So each stream's series (`region`/`stream`-labelled: the pipeline's, its spool
//! delivery's, its refusals') are registered in a recorder of their own, a [`SeriesScope`],
//! shared by whoever holds it (the stream's pipelines, a delivery in progress). When the last
//! holder lets go (the pipeline was retired and has drained) the scope and every series in it
//! are gone: the label set on `/metrics` is bounded by the streams in use, not by every name a
//! client ever sent. `/metrics` renders the process recorder and every live scope as one page,
//! each metric family once (Prometheus refuses a family split in two).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use metrics_exporter_prometheus::PrometheusRecorder;

/// The series of one stream (in every region), in a recorder of their own.
pub struct SeriesScope {
    recorder: PrometheusRecorder,
}

impl std::fmt::Debug for SeriesScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesScope").finish_non_exhaustive()
    }
}

impl SeriesScope {
    /// Runs `register` (which uses the `metrics` macros) with this scope as the recorder, so
    /// the handles it gets are this scope's series. Handles keep working after it returns.
    pub fn register<T>(&self, register: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, register)
    }

    fn render(&self) -> String {
        self.recorder.handle().render()
    }

    fn run_upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }
}

/// The live scopes, by stream name. Weak: a scope lives as long as its holders, not longer.
pub(super) struct Scopes {
    live: Mutex<HashMap<String, Weak<SeriesScope>>>,
    /// Builds a scope's recorder: the process recorder's buckets and descriptions.
    make: fn() -> PrometheusRecorder,
}

impl Scopes {
    pub(super) fn new(make: fn() -> PrometheusRecorder) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            make,
        }
    }

    /// The live scope of `stream`, or a new one.
    pub(super) fn get(&self, stream: &str) -> Arc<SeriesScope> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scope) = live.get(stream).and_then(Weak::upgrade) {
            return scope;
        }
        // Forget the dead ones while here: the map stays as small as the live set.
        live.retain(|_, scope| scope.strong_count() > 0);
        let scope = Arc::new(SeriesScope {
            recorder: (self.make)(),
        });
        live.insert(stream.to_owned(), Arc::downgrade(&scope));
        scope
    }

    fn live(&self) -> Vec<Arc<SeriesScope>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, scope| scope.strong_count() > 0);
        let mut scopes: Vec<(String, Arc<SeriesScope>)> = live
            .iter()
            .filter_map(|(stream, scope)| Some((stream.clone(), scope.upgrade()?)))
            .collect();
        drop(live);
        // A stable order, so consecutive scrapes list series alike.
        scopes.sort_by(|a, b| a.0.cmp(&b.0));
        scopes.into_iter().map(|(_, scope)| scope).collect()
    }

    /// `base` (the process recorder's page) with every live scope's series merged in.
    pub(super) fn render(&self, base: String) -> String {
        let pages: Vec<String> = self.live().iter().map(|scope| scope.render()).collect();
        if pages.is_empty() {
            return base;
        }
        merge(std::iter::once(base.as_str()).chain(pages.iter().map(String::as_str)))
    }

    pub(super) fn run_upkeep(&self) {
        for scope in self.live() {
            scope.run_upkeep();
        }
    }
}

/// One metric family of a page: its `# HELP`/`# TYPE` lines and its samples.
#[derive(Default)]
struct Family {
    header: String,
    samples: String,
}

/// Merges Prometheus text pages (families separated by a blank line, as the exporter writes
/// them) into one, each family once: its header from the first page that has it, then the
/// samples of every page, in page order.
fn merge<'a>(pages: impl Iterator<Item = &'a str>) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut families: HashMap<&str, Family> = HashMap::new();
    for page in pages {
        for block in page.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let name = block
                .lines()
                .find_map(|line| line.strip_prefix("# TYPE "))
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or(block);
            let family = families.entry(name).or_insert_with(|| {
                order.push(name);
                Family::default()
            });
            let first = family.header.is_empty() && family.samples.is_empty();
            for line in block.lines() {
                let target = if line.starts_with('#') {
                    if !first {
                        continue;
                    }
                    &mut family.header
                } else {
                    &mut family.samples
                };
                target.push_str(line);
                target.push('\n');
            }
        }
    }
    let mut out = String::new();
    for name in order {
        if let Some(family) = families.get(name) {
            out.push_str(&family.header);
            out.push_str(&family.samples);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_split_over_pages_are_merged_once_with_one_header() {
        let base = "# HELP a_total A.\n# TYPE a_total counter\na_total{stream=\"\"} 1\n\n# TYPE g gauge\ng 2\n\n";
        let scope = "# HELP a_total A.\n# TYPE a_total counter\na_total{stream=\"s\"} 3\n\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n\n";
        let merged = merge([base, scope].into_iter());
        assert_eq!(
            merged,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{stream=\"\"} 1\na_total{stream=\"s\"} 3\n\n# TYPE g gauge\ng 2\n\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n\n"
        );
    }

    fn plain() -> PrometheusRecorder {
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
    }

    #[test]
    fn a_scope_s_series_leave_the_page_when_its_last_holder_lets_go() {
        let scopes = Scopes::new(plain);
        let scope = scopes.get("made-up");
        let counter = scope.register(|| metrics::counter!("x_total", "stream" => "made-up"));
        counter.increment(2);
        let again = scopes.get("made-up");
        assert!(
            Arc::ptr_eq(&scope, &again),
            "one scope per stream while it lives"
        );
        assert!(scopes
            .render(String::new())
            .contains("x_total{stream=\"made-up\"} 2"));
        drop((scope, again));
        assert_eq!(scopes.render(String::new()), "");
        assert!(scopes.live.lock().map(|l| l.is_empty()).unwrap_or(false));
    }
}
