//! The real binary under SIGTERM while clients are sending: it drains and exits 0, and every
//! event it acknowledged is in the stream. Also: invalid configuration stops it at startup with
//! a message naming the setting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, sigterm, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_every_acknowledged_event_is_stored() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, 2).await;
    let mut proxy = RunningProxy::spawn(proxy_command(&emulator));
    let port = proxy.port;
    let url = format!("http://127.0.0.1:{port}/kinesis/stream/{stream}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    let stop_sending = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..16 {
        let (http, url, stop) = (http.clone(), url.clone(), stop_sending.clone());
        clients.push(tokio::spawn(async move {
            let mut acked: Vec<(String, String)> = Vec::new();
            let mut refused = 0u32;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 2_000 {
                n += 1;
                let id = format!("c{client}-{n}");
                let sent = http
                    .post(&url)
                    .header("x-api-key", API_KEY)
                    .json(&json!({"event": {"id": id}}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.json().await.expect("json");
                        acked.push((
                            id,
                            answer["sequence_number"].as_str().expect("seq").to_owned(),
                        ));
                    }
                    Ok(response) => {
                        assert_eq!(response.status(), 503, "only 200 or 503 during shutdown");
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // The listener is gone: the proxy has stopped accepting.
                    Err(_) => break,
                }
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigterm(&proxy.child);
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || proxy.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "graceful exit, got {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "drained within the grace period"
    );
    stop_sending.store(true, Ordering::Relaxed);

    let mut acked = Vec::new();
    for client in clients {
        let (a, _) = client.await.expect("client");
        acked.extend(a);
    }
    assert!(
        acked.len() > 50,
        "clients were sending when SIGTERM came ({} acked)",
        acked.len()
    );
    let stored = read_all(&emulator, &stream).await;
    let stored_ids: std::collections::HashMap<String, String> = stored
        .iter()
        .map(|r| {
            let data: Value = serde_json::from_slice(&r.data).expect("json");
            (
                r.sequence_number.clone(),
                data["id"].as_str().expect("id").to_owned(),
            )
        })
        .collect();
    for (id, sequence) in &acked {
        assert_eq!(
            stored_ids.get(sequence),
            Some(id),
            "acknowledged event {id} is in the stream"
        );
    }
}

#[test]
fn invalid_configuration_fails_at_startup_naming_the_setting() {
    let output = proxy_command("http://127.0.0.1:1")
        .env("KINESIS_PROXY__BATCHING__MAX_BATCH_RECORDS", "501")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("batching.max_batch_records"), "{stderr}");

    let output = proxy_command("http://127.0.0.1:1")
        .env("KINESIS_PROXY__SERVER__LISTEN", "not-an-address")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.listen"));
}

#[test]
fn a_taken_port_fails_at_startup_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to take");
    let address = taken.local_addr().expect("its address").to_string();
    let output = proxy_command("http://127.0.0.1:1")
        .env("KINESIS_PROXY__SERVER__LISTEN", &address)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "an error, not a panic: {stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot listen on {address} (server.listen)")),
        "{stderr}"
    );
}
