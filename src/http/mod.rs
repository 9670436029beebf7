//! The HTTP edge (SPEC section 1): the routes, parsing and validating request bodies into
//! records (`ingest`, `body`), API keys (`auth`), rate limits at the door (`rate_limit`), and
//! the one error type with its mapping to status, code and message (`error`). It hands records
//! to the pipeline layer and turns the outcomes into answers; it never talks to Kinesis itself.
//!
//! Check order: draining, API key, stream name, the key's stream scope, allow-list, content
//! type and encoding, body size, body (decoded within its own bound), region, record sizes,
//! rate limits, queue admission. Cheap checks that need no body come first, so a refused
//! request costs little; an unauthenticated client learns nothing about streams, and a key
//! learns nothing about streams outside its scope.

pub mod access;
mod answers;
pub mod auth;
mod body;
pub mod body_budget;
mod contracts;
mod cors;
mod decode;
pub mod envelope;
pub mod error;
mod events;
mod facts;
pub mod ingest;
pub mod metrics;
mod openapi;
mod ops;
pub mod paths;
pub mod rate_limit;
mod requests;
mod routes;
pub mod schemas;
mod state;
pub mod tls;

pub use cors::{json_refusals as cors_json_refusals, middleware as cors_middleware};
pub use metrics::{ApiKeyMetrics, RouteMetricsSet};
pub use openapi::{document as openapi_document, DocumentOptions};
pub use routes::{configure, not_found};
pub use state::{AccessLog, AppState};
pub use tls::tls_client_subject;
