//! SIGHUP through the real binary: it never ends the process, under load nothing acknowledged
//! is lost, and the API keys are read again: a key added to `auth.keys_file` works after the
//! signal, a removed one gets 401, and a broken file keeps the keys in use (one ERROR, counted).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, signal, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

const OLD_KEY: &str = "old-file-key-0123456789";
const NEW_KEY: &str = "new-file-key-0123456789";

async fn post(
    http: &reqwest::Client,
    proxy: &RunningProxy,
    stream: &str,
    key: &str,
    id: &str,
) -> u16 {
    http.post(proxy.url(&format!("/kinesis/stream/{stream}")))
        .header("x-api-key", key)
        .json(&json!({"event": {"id": id}}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_reloads_the_keys_file_and_loses_nothing() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-reload-");
    create_stream(&emulator, &stream, 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_file = dir.path().join("keys");
    std::fs::write(&keys_file, format!("old-client:{OLD_KEY}\n")).expect("write keys");
    let mut command = proxy_command(&emulator);
    command
        .env("KINESIS_PROXY__AUTH__KEYS_FILE", &keys_file)
        .env("KINESIS_PROXY__STREAMS__ACK_ON_ENQUEUE", &stream);
    let mut proxy = RunningProxy::spawn(command);
    let http = reqwest::Client::new();
    assert_eq!(post(&http, &proxy, &stream, OLD_KEY, "warm-up").await, 202);
    assert_eq!(
        post(&http, &proxy, &stream, NEW_KEY, "too-early").await,
        401
    );

    // Load from 8 clients with the key that stays (auth.keys) while the file changes and
    // SIGHUPs arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, url, stop) = (
            http.clone(),
            proxy.url(&format!("/kinesis/stream/{stream}")),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("load-{client}-{n}");
                n += 1;
                let response = http
                    .post(&url)
                    .header("x-api-key", API_KEY)
                    .json(&json!({"event": {"id": id}}))
                    .send()
                    .await
                    .expect("the proxy keeps answering through SIGHUP");
                assert_eq!(response.status(), 202, "{id}");
                acked.push(id);
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::write(&keys_file, format!("new-client:{NEW_KEY}\n")).expect("write keys");
    signal(&proxy.child, "HUP");
    proxy.wait_for_reloads(&http, "ok", 1.0).await;
    assert_eq!(post(&http, &proxy, &stream, NEW_KEY, "new-key").await, 202);
    assert_eq!(post(&http, &proxy, &stream, OLD_KEY, "old-key").await, 401);

    // A broken file: the keys in use stay, one ERROR names the file's problem.
    std::fs::write(&keys_file, "no-colon-and-long-enough-to-be-a-key\n").expect("write keys");
    signal(&proxy.child, "HUP");
    proxy.wait_for_reloads(&http, "error", 1.0).await;
    assert_eq!(post(&http, &proxy, &stream, NEW_KEY, "kept-key").await, 202);
    for _ in 0..3 {
        signal(&proxy.child, "HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.wait_for_reloads(&http, "error", 4.0).await;

    stop.store(true, Ordering::Relaxed);
    let mut acked = vec![
        "warm-up".to_owned(),
        "new-key".to_owned(),
        "kept-key".to_owned(),
    ];
    for client in clients {
        acked.extend(client.await.expect("client"));
    }
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "SIGHUP never ends the process"
    );
    let errors: Vec<Value> = proxy
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR" && l.to_string().contains("reload failed"))
        .collect();
    assert_eq!(errors.len(), 4, "one ERROR per failed reload");
    assert!(
        !errors[0].to_string().contains("no-colon-and-long-enough"),
        "the file's text (a key, perhaps) is never logged: {}",
        errors[0]
    );

    // Every event answered 202 is in Kinesis.
    let started = Instant::now();
    loop {
        let stored: std::collections::HashSet<String> = read_all(&emulator, &stream)
            .await
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.data).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect();
        let missing = acked.iter().filter(|id| !stored.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{missing} of {} acknowledged events are not in the stream",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(acked.len() > 50, "there was load: {}", acked.len());
}
