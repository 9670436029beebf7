//! What the edge learned about a request (`RequestFacts`): filled in by the write handlers,
//! left in the request's extensions for the access log, and the source of the bounded stream
//! label of the rejection counters. Apart from the handlers so the access log can read it
//! without depending on them.

use std::sync::Arc;

use super::state::AppState;
use crate::domain::StreamName;
use crate::telemetry::SeriesScope;

/// What the edge learned about a request, left in its extensions for the access log
/// (`access::log_and_count`) and used for the rejection counter's labels.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestFacts {
    /// The stream named in the path, once it passed the allow-list.
    pub(super) stream: Option<StreamName>,
    /// The stream's series scope, once it has a pipeline: its name is then a metric label
    /// (bounded by `limits.max_pipelines`; with a wildcard allow-list, names are not), and the
    /// label leaves `/metrics` with the pipeline.
    pub(super) series: Option<Arc<SeriesScope>>,
    /// The name of the API key, never the key.
    pub(super) key: Option<Arc<str>>,
    /// Events the request carried, once known (a request refused before its body was parsed
    /// counts as one).
    pub(super) events: u64,
    /// Events of it already counted as rejected one by one (schema violations on the records
    /// route): a refusal of the whole request counts only the others.
    pub(super) rejected_counted: u64,
}

impl RequestFacts {
    pub(super) fn new(events: u64) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// The stream as a metric label, with the scope its series live in: once it has a
    /// pipeline (the pipeline's scope, so the label leaves `/metrics` with it), or when it is
    /// bounded anyway (an exact name of `streams.allow`: a series of its own, kept), so a body
    /// refused before its pipeline is looked up still counts for its stream. Names a client
    /// makes up under a wildcard allow-list get no label. Only refusals ask, off the success
    /// path.
    pub(super) fn stream_label(
        &self,
        state: &AppState,
    ) -> Option<(&str, Option<Arc<SeriesScope>>)> {
        let stream = self.stream.as_ref()?;
        let series = self
            .series
            .clone()
            .or_else(|| state.pipelines.series_of(&state.default_region, stream));
        let exact = state
            .settings
            .streams
            .allow
            .iter()
            .any(|p| p == stream.as_str());
        (series.is_some() || exact).then_some((stream.as_str(), series))
    }
}
