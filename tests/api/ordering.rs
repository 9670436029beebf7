//! Ordered streams (`streams.ordered`) against kinesalite behind a fault layer that throttles a
//! fifth of all entries at random: every client's events, read back from the stream, are in
//! the order the client sent them, within requests and across requests sent one after another.
//! Without ordering, retried entries land after newer ones of their key.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions};
use crate::helpers::emulator::{kinesalite, read_all};
use crate::helpers::fault_proxy::FaultProxy;

const CLIENTS: usize = 64;
const REQUESTS: usize = 5;
const EVENTS_PER_REQUEST: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_events_are_stored_in_send_order_despite_throttling() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            shards: 4,
            customize: Box::new(|s| {
                s.streams.ordered = vec!["it-*".into()];
                s.retry.backoff_base_ms = 10;
                s.retry.backoff_max_ms = 50;
            }),
        })
        .await,
    );
    faults.throttle_at_random(0.2);

    let started = std::time::Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            for request in 0..REQUESTS {
                let records: Vec<Value> = (0..EVENTS_PER_REQUEST)
                    .map(|n| {
                        json!({
                            "event": {"client": client, "seq": request * EVENTS_PER_REQUEST + n},
                            "partition_key": format!("client-{client}"),
                        })
                    })
                    .collect();
                let response = app.post_records(&json!({"records": records})).await;
                assert_eq!(response.status(), 200);
                let answer: Value = response.json().await.expect("json");
                assert_eq!(answer["failed_record_count"], 0, "{answer}");
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    eprintln!(
        "ordered stream: {} events in {:?}",
        CLIENTS * REQUESTS * EVENTS_PER_REQUEST,
        started.elapsed()
    );
    let throttled = faults.stats().entries_throttled_at_random;
    faults.throttle_at_random(0.0);
    assert!(
        throttled > 100,
        "the fault layer throttled {throttled} entries"
    );

    let mut seen: HashMap<u64, Vec<u64>> = HashMap::new();
    for record in read_all(&emulator, &app.stream).await {
        let event: Value = serde_json::from_slice(&record.data).expect("json event");
        seen.entry(event["client"].as_u64().expect("client"))
            .or_default()
            .push(event["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seen.len(), CLIENTS);
    let out_of_order: usize = seen
        .values()
        .map(|seqs| seqs.windows(2).filter(|w| w[0] > w[1]).count())
        .sum();
    assert_eq!(
        out_of_order, 0,
        "events stored before an older one of their key"
    );
    for (client, seqs) in &seen {
        let sent: Vec<u64> = (0..(REQUESTS * EVENTS_PER_REQUEST) as u64).collect();
        assert_eq!(seqs, &sent, "client {client}: every event once, in order");
    }
}
