//! Per-key stream scopes through the real binary (`auth.keys` entries `name:key:PATTERNS`): a
//! scoped key writes its streams; every other stream, allowed or not, existing or not, gets the
//! same 403 `stream_not_in_key_scope`, so a key cannot be used to learn which streams exist;
//! unscoped keys work as before; per-key rate limits still apply to scoped keys.

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::binary::{proxy_command, RunningProxy};
use crate::helpers::emulator::{create_stream, kinesalite, read_all, unique_stream_name};

const WEB_KEY: &str = "web-key-0123456789abcdef";

#[tokio::test]
async fn a_scoped_key_writes_only_its_streams_and_learns_nothing_of_others() {
    let emulator = kinesalite().await.endpoint.clone();
    let mine = unique_stream_name("it-web-");
    let theirs = unique_stream_name("it-");
    create_stream(&emulator, &mine, 1).await;
    create_stream(&emulator, &theirs, 1).await;
    let mut command = proxy_command(&emulator);
    // The environment form: the scope's second pattern continues the entry before it.
    command
        .env(
            "KINESIS_PROXY__AUTH__KEYS",
            format!("tests:{API_KEY},web:{WEB_KEY}:{mine},it-web-other-*"),
        )
        .env("KINESIS_PROXY__RATE_LIMITS__KEY_EVENTS_PER_SECOND", "1")
        .env("KINESIS_PROXY__RATE_LIMITS__KEY_EVENTS_BURST", "2");
    let proxy = RunningProxy::spawn(command);
    let http = reqwest::Client::new();
    let post = |key: &'static str, stream: String| {
        let request = http
            .post(proxy.url(&format!("/kinesis/stream/{stream}")))
            .header("x-api-key", key)
            .json(&json!({"event": {"by": key}}));
        async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON");
            (status, body)
        }
    };

    let (status, body) = post(WEB_KEY, mine.clone()).await;
    assert_eq!(status, 200, "{body}");

    // The same answer for a stream that exists and is allowed, one that is allowed but does
    // not exist, and one outside the allow-list: only the stream's own name differs.
    let mut messages = Vec::new();
    for stream in [
        theirs.clone(),
        "it-no-such-stream".to_owned(),
        "billing".to_owned(),
    ] {
        let (status, body) = post(WEB_KEY, stream.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("stream_not_in_key_scope")),
            "{stream}: {body}"
        );
        let message = body["error"]
            .as_str()
            .expect("message")
            .replace(&stream, "S");
        assert!(
            !message.contains(&mine) && !message.contains("it-web"),
            "the scope leaks: {message}"
        );
        messages.push(message);
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");

    // The unscoped key: every allowed stream, and the usual answers elsewhere.
    assert_eq!(post(API_KEY, theirs.clone()).await.0, 200);
    let (status, body) = post(API_KEY, "it-no-such-stream".to_owned()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("stream_not_found"))
    );
    let (status, body) = post(API_KEY, "billing".to_owned()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("stream_not_allowed"))
    );

    // Per-key rate limits hold for the scoped key (burst 2: one used above), and refusals by
    // scope took nothing from its budget.
    assert_eq!(post(WEB_KEY, mine.clone()).await.0, 200);
    let (status, body) = post(WEB_KEY, mine.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );

    let written = |records: Vec<crate::helpers::emulator::StoredRecord>| {
        records
            .into_iter()
            .map(|r| String::from_utf8(r.data).expect("utf-8"))
            .collect::<Vec<_>>()
    };
    let by_web = format!("{{\"by\":\"{WEB_KEY}\"}}");
    let by_tests = format!("{{\"by\":\"{API_KEY}\"}}");
    assert_eq!(
        written(read_all(&emulator, &mine).await),
        vec![by_web.clone(), by_web]
    );
    assert_eq!(written(read_all(&emulator, &theirs).await), vec![by_tests]);
}
