//! The HTTP edge (SPEC section 1): the routes, parsing and validating request bodies into
//! records (`ingest`, `body`), API keys (`auth`), rate limits at the door (`rate_limit`), and
//! the one error type with its mapping to status, code and message (`error`). It hands records
//! to the pipeline layer and turns the outcomes into answers; it never talks to Kinesis itself.
//!
//! Check order: draining, API key, stream name, allow-list, content type and encoding, body
//! size, body, region, record sizes, rate limits, queue admission. Cheap checks that need no
//! body come first, so a refused request costs little, and an unauthenticated client learns
//! nothing about streams.

pub mod access;
pub mod auth;
mod body;
pub mod error;
mod events;
pub mod ingest;
pub mod metrics;
mod ops;
pub mod paths;
pub mod rate_limit;
mod routes;
mod state;

pub use metrics::{ApiKeyMetrics, RouteMetricsSet};
pub use routes::{configure, not_found};
pub use state::{AccessLog, AppState};
