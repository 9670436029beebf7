//! Integration tests: one binary (one build, one emulator) for the whole HTTP API, the real proxy
//! on random ports and kinesalite behind it; see `helpers`.

mod helpers;

mod aggregation;
mod aggregation_format;
mod batching;
mod beacons;
mod bodies;
mod browser;
mod compression;
mod container;
mod contracts;
mod cors;
mod dashboard;
mod disk_ack;
mod docs_links;
mod edge_details;
mod first_hour;
mod guard_rails;
mod isolation;
mod key_scopes;
mod layout;
mod lifecycle;
mod limit_bound;
mod openapi;
mod operations;
mod ordering;
mod packaging;
mod reload;
mod retries;
mod round_trip;
mod shards;
mod shutdown;
mod slow_kinesis;
mod spool;
mod spool_space;
mod startup_config;
mod stop_while_down;
mod tls;
mod unconfirmed;
mod validation;
