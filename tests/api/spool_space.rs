//! A spool whose file system has less free space than `spool.min_free_bytes` (here: a bound
//! no disk meets): the proxy warns at start, `/readyz` says the spool cannot take events, and
//! a client refused with 503 `spool_full` learns which bound, not the host's free space.

use serde_json::Value;

use crate::helpers::fault_proxy::Mode;
use crate::helpers::spool::setup;

/// 1 EiB: more free space than any test machine has.
const MIN_FREE_BYTES: &str = "1152921504606846976";

#[tokio::test]
async fn a_spool_below_min_free_bytes_warns_is_not_ready_and_tells_clients_no_host_facts() {
    let setup = setup("space", Mode::Healthy).await;
    let mut command = setup.command();
    command.env("KINESIS_PROXY__SPOOL__MIN_FREE_BYTES", MIN_FREE_BYTES);
    let proxy = setup.spawn(command);

    let warnings: Vec<Value> = proxy
        .log_lines_with("spool.min_free_bytes")
        .into_iter()
        .filter(|line| line.to_string().contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning at start: {warnings:?}");
    assert!(
        warnings[0].to_string().contains("free_bytes"),
        "the operator's log has the figures: {}",
        warnings[0]
    );

    let ready = proxy
        .http
        .get(proxy.proxy.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["code"], "spool_full", "{body}");

    let response = proxy.post("refused", 0).await.expect("POST answered");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "spool_full", "{body}");
    let message = body["error"].as_str().expect("a message");
    assert!(message.contains("spool.min_free_bytes"), "{message}");
    assert!(
        !message.chars().any(|c| c.is_ascii_digit()),
        "no figures of the host in a client's message: {message}"
    );
}
