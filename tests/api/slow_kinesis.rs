//! Kinesis answering slowly (issue 21): when calls take longer than the linger, more calls
//! may be in flight than `batching.max_in_flight_calls` (about one per half linger over the
//! call's latency), so a batch that has lingered does not also wait for a slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kinesis_proxy::telemetry;
use serde_json::json;

use crate::helpers::app::{spawn_app_with, AppOptions};
use crate::helpers::emulator::kinesalite;
use crate::helpers::fault_proxy::{FaultProxy, Mode};
use crate::helpers::metrics_page::sample;

#[tokio::test]
async fn calls_in_flight_follow_a_slow_kinesis_beyond_the_setting() {
    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            customize: Box::new(|s| {
                s.batching.max_in_flight_calls = 2;
                s.batching.linger_ms = 10;
            }),
            ..AppOptions::default()
        })
        .await,
    );
    let warm_up = app.post_event(&json!({"event": {"warm_up": true}})).await;
    assert_eq!(warm_up.status(), 200);
    // Kinesis answering in 100 ms, ten lingers.
    faults.set_mode(Mode::Delay(Duration::from_millis(100)));

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0.0f64;
            while !done.load(Ordering::Relaxed) {
                let page = app.metrics_page().await;
                let labels = [("stream", app.stream.as_str())];
                if let Some(in_flight) = sample(&page, telemetry::PUT_RECORDS_IN_FLIGHT, &labels) {
                    most = most.max(in_flight);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let mut clients = Vec::new();
    for client in 0..64 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            for n in 0..8 {
                let response = app
                    .post_event(&json!({"event": {"client": client, "n": n}}))
                    .await;
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for client in clients {
        client.await.expect("client");
    }
    done.store(true, Ordering::Relaxed);
    let most = watcher.await.expect("watcher");
    // The setting bounds it at 2 while Kinesis is fast; at 100 ms, up to 8 (4x the setting).
    assert!(most > 2.0, "at most {most} calls in flight");
    assert!(most <= 8.0, "{most} calls in flight");
}
