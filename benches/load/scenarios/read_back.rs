//! The read-back: the whole stream read from kinesalite (aggregated records deaggregated), and
//! every acknowledged event looked up in it: by its place (sequence number, and sub-sequence
//! number when aggregated) when it was answered 200, by its id when it was answered 202
//! (queued: where it would land was not known yet).

use std::collections::HashMap;

use super::run::STREAM;
use crate::kinesalite::{self, StoredEvents};
use crate::loadgen::LoadResult;
use crate::report::ReadBack;
use crate::wire::Ack;
use crate::Error;

/// Reads the whole stream back and looks up every acknowledged event (of both clients, when
/// there is a hot one): by its place when answered 200, by its id when answered 202.
pub(super) async fn read_back(
    endpoint: &str,
    result: &LoadResult,
    hot: Option<&LoadResult>,
) -> Result<ReadBack, Error> {
    let StoredEvents {
        by_place: stored,
        kinesis_records,
        payload_units,
    } = kinesalite::read_back(endpoint, STREAM).await?;
    let mut per_id: HashMap<&str, usize> = HashMap::with_capacity(stored.len());
    for id in stored.values() {
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    let clients = || std::iter::once(result).chain(hot);
    let acked: Vec<&Ack> = clients().flat_map(|r| &r.acked).collect();
    let found = acked
        .iter()
        .filter(|ack| match &ack.place {
            Some(place) => stored.get(place) == Some(&ack.id),
            None => per_id.contains_key(ack.id.as_str()),
        })
        .count();
    Ok(ReadBack {
        acknowledged: acked.len(),
        found,
        missing: acked.len() - found,
        stored_records: stored.len(),
        duplicates: per_id.values().filter(|n| **n > 1).count(),
        unparsed_answers: clients().map(|r| r.unparsed_acks).sum(),
        kinesis_records,
        payload_units,
    })
}
