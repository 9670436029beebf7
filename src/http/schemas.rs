//! Event contracts (`streams.schemas`): the JSON Schema each stream's events must satisfy,
//! compiled once (at startup and on SIGHUP, never per request) and checked at the edge, so a
//! bad event is refused with the JSON pointer and keyword that failed instead of reaching the
//! stream's consumers. Remote `$ref`s are never fetched: a schema is what its file says, and a
//! start or reload cannot hang on (or be steered by) the network.

use std::sync::Arc;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

use crate::config::Settings;
use crate::domain::{StreamName, StreamPattern};

/// Errors listed in one `schema_violation` message; the rest are counted, so a huge invalid
/// event cannot make a huge answer.
const MAX_LISTED_ERRORS: usize = 3;

/// The compiled schemas, in `streams.schemas` order.
#[derive(Default)]
pub struct Schemas {
    entries: Vec<(StreamPattern, Arc<Validator>)>,
}

/// Refuses every external reference: `$ref`s resolve only within the schema's own file.
struct NoRemoteRefs;

impl Retrieve for NoRemoteRefs {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "remote $ref {:?} refused: the proxy never fetches schemas; inline it or put it in $defs",
            uri.as_str()
        )
        .into())
    }
}

impl Schemas {
    /// Reads and compiles every `streams.schemas` file. Reads files: call it at startup or off
    /// the async workers. The error names the file and what is wrong with it.
    pub fn load(settings: &Settings) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (pattern, path) in settings.schema_files() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("streams.schemas: cannot read schema file {path}: {e}"))?;
            let schema: Value = serde_json::from_str(&text)
                .map_err(|e| format!("streams.schemas: schema file {path} is not JSON: {e}"))?;
            let validator = jsonschema::options()
                .with_retriever(NoRemoteRefs)
                .build(&schema)
                .map_err(|e| {
                    format!("streams.schemas: schema file {path} does not compile: {e}")
                })?;
            entries.push((pattern, Arc::new(validator)));
        }
        Ok(Self { entries })
    }

    /// The schema of `stream`: the first entry whose pattern matches.
    pub fn for_stream(&self, stream: &StreamName) -> Option<&Arc<Validator>> {
        self.entries
            .iter()
            .find(|(pattern, _)| pattern.matches(stream))
            .map(|(_, validator)| validator)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks one event (its compact JSON bytes) against `validator`. The error message names, for
/// the first few failures, the JSON pointer into the event, the keyword and why; the event's
/// values are masked so the message stays short whatever the event holds.
pub fn check(validator: &Validator, event: &[u8]) -> Result<(), String> {
    // The edge already checked the bytes parse back; a failure here is the same refusal.
    let instance: Value = serde_json::from_slice(event)
        .map_err(|e| format!("the event does not parse as JSON: {e}"))?;
    if validator.is_valid(&instance) {
        return Ok(());
    }
    let mut listed = Vec::with_capacity(MAX_LISTED_ERRORS);
    let mut total = 0usize;
    for error in validator.iter_errors(&instance) {
        total += 1;
        if listed.len() < MAX_LISTED_ERRORS {
            let pointer = error.instance_path().as_str();
            listed.push(format!(
                "at {:?}: keyword {:?}: {}",
                if pointer.is_empty() { "/" } else { pointer },
                error.kind().keyword(),
                error.masked()
            ));
        }
    }
    let more = total.saturating_sub(listed.len());
    let mut message = format!(
        "the event does not match the stream's schema: {}",
        listed.join("; ")
    );
    if more > 0 {
        message.push_str(&format!(" (and {more} more)"));
    }
    Err(message)
}
