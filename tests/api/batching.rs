//! Concurrency and batching end to end: many clients at once, every 200 in the stream, and far
//! fewer PutRecords calls than events (counted by the fault proxy, which forwards untouched).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions};
use crate::helpers::emulator::{kinesalite, read_all};
use crate::helpers::fault_proxy::FaultProxy;

const CLIENTS: usize = 32;
const EVENTS_PER_CLIENT: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_are_batched_and_every_acknowledged_event_is_stored() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    let app = std::sync::Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            shards: 4,
            ..AppOptions::default()
        })
        .await,
    );
    faults.reset_stats();

    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..EVENTS_PER_CLIENT {
                let id = format!("c{client}-e{n}");
                let response = app
                    .post_event(&json!({"event": {"id": id, "client": client}}))
                    .await;
                assert_eq!(response.status(), 200, "event {id}");
                let answer: Value = response.json().await.expect("json");
                acked.push((
                    id,
                    answer["shard_id"].as_str().expect("shard").to_owned(),
                    answer["sequence_number"].as_str().expect("seq").to_owned(),
                ));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.expect("client task"));
    }
    let events = CLIENTS * EVENTS_PER_CLIENT;
    assert_eq!(acked.len(), events);

    let stored = read_all(&emulator, &app.stream).await;
    let by_sequence: HashMap<&str, &crate::helpers::emulator::StoredRecord> = stored
        .iter()
        .map(|r| (r.sequence_number.as_str(), r))
        .collect();
    for (id, shard, sequence) in &acked {
        let record = by_sequence
            .get(sequence.as_str())
            .unwrap_or_else(|| panic!("acknowledged event {id} ({sequence}) is not in the stream"));
        assert_eq!(&record.shard_id, shard);
        let data: Value = serde_json::from_slice(&record.data).expect("json");
        assert_eq!(data["id"], id.as_str());
    }
    assert_eq!(stored.len(), events, "no duplicates without faults");

    let calls = faults.stats().put_records_calls as usize;
    assert!(calls > 0);
    assert!(
        calls * 4 <= events,
        "batching: {calls} PutRecords calls for {events} events (mean {:.1} records per call)",
        events as f64 / calls as f64
    );
}
