//! A fault layer in front of kinesalite: a loopback HTTP proxy that forwards Kinesis JSON API
//! calls to the emulator and injects the failures a real Kinesis produces, which kinesalite never
//! does (it never throttles).
//!
//! Two kinds of faults:
//! - entry level: chosen `PutRecords` entries (those whose data contains a marker) are answered
//!   as failed inside a 200 response, in request order, and are not forwarded; the rest go on;
//! - call level (`Mode`): every call is refused (500), throttled (400), delayed, or left hanging.
//!
//! It can also make `DescribeStreamSummary` report a stream's `MaxRecordSizeInKiB`, which
//! kinesalite (older than the setting) never does.
//!
//! It runs on its own thread with its own actix system, so it outlives any one `#[tokio::test]`
//! runtime and is independent of them. All state is shared through atomics and locks, so the
//! test side can change faults and read counters from any thread or runtime.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Kinesis's JSON protocol content type; every answer of the proxy carries it.
const AMZ_JSON: &str = "application/x-amz-json-1.1";

/// How long a request may hang in `Mode::Hang` before it is answered anyway.
const MAX_HANG: Duration = Duration::from_secs(60);

/// Largest request body accepted; above kinesalite's own 7 MiB cap, so its 413 passes through.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Message of every entry failed by the proxy.
const INJECTED_MESSAGE: &str = "injected by fault proxy";

/// What the proxy does with every call, whatever its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward (entry-level faults still apply).
    Healthy,
    /// Answer 500 `InternalFailure`, as Kinesis does for a transient server error.
    Refuse,
    /// Accept the call and answer nothing until the mode changes (then act on the new mode), or
    /// for at most 60 s (then answer 500 `InternalFailure`). For client timeouts.
    Hang,
    /// Answer 400 throttling errors, as Kinesis does when a whole call is over a limit:
    /// `ProvisionedThroughputExceededException` for the data plane (PutRecord(s), GetRecords),
    /// `LimitExceededException` for control-plane calls (DescribeStreamSummary, ListShards, ...).
    Throttle,
    /// Wait this long, then forward: a slow Kinesis.
    Delay(Duration),
}

/// Counters since start or the last `reset_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// PutRecords calls received (whatever then happened to them).
    pub put_records_calls: u64,
    /// Entries in those calls.
    pub entries_seen: u64,
    /// Entries answered as failed by an entry-level fault (never forwarded).
    pub entries_failed_injected: u64,
    /// Entries sent on to kinesalite (it may still reject them, e.g. oversize).
    pub entries_forwarded: u64,
    /// Calls of any other operation received.
    pub other_calls: u64,
    /// Calls of any operation answered by the `Mode` (refused, throttled, hung past 60 s)
    /// instead of being forwarded.
    pub calls_failed_by_mode: u64,
}

/// The proxy, running until the test binary exits. Cheap to share: clone the `Arc` if needed.
pub struct FaultProxy {
    /// Base URL to give an SDK client or kinesis-proxy instead of kinesalite's.
    pub endpoint: String,
    shared: Arc<Shared>,
}

/// State shared by the test side and the server's workers.
struct Shared {
    /// Where calls go, e.g. kinesalite's endpoint.
    upstream: String,
    /// The call-level mode; a watch so hanging requests wake up when it changes.
    mode: watch::Sender<Mode>,
    /// Entry-level faults, checked in order; the first match decides.
    rules: Mutex<Vec<Rule>>,
    /// `MaxRecordSizeInKiB` added to DescribeStreamSummary answers; 0: answers as they are.
    max_record_size_kib: AtomicU32,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    put_records_calls: AtomicU64,
    entries_seen: AtomicU64,
    entries_failed_injected: AtomicU64,
    entries_forwarded: AtomicU64,
    other_calls: AtomicU64,
    calls_failed_by_mode: AtomicU64,
}

/// One entry-level fault: entries whose data contains `marker` fail.
struct Rule {
    marker: Vec<u8>,
    kind: RuleKind,
}

enum RuleKind {
    /// Fail with ProvisionedThroughputExceededException the first `times` times each distinct
    /// data value is seen; `seen` counts sightings per data value.
    Throttle {
        times: u32,
        seen: HashMap<Vec<u8>, u32>,
    },
    /// Fail every time with this error code.
    Always { error_code: String },
}

impl Rule {
    /// The error code to fail `data` with, if this rule applies (and counts the sighting).
    fn check(&mut self, data: &[u8]) -> Option<Option<String>> {
        if !contains(data, &self.marker) {
            return None;
        }
        Some(match &mut self.kind {
            RuleKind::Throttle { times, seen } => {
                let count = seen.entry(data.to_vec()).or_insert(0);
                if *count < *times {
                    *count += 1;
                    Some("ProvisionedThroughputExceededException".to_owned())
                } else {
                    None
                }
            }
            RuleKind::Always { error_code } => Some(error_code.clone()),
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (free port) forwarding to `upstream` (e.g. kinesalite's
    /// endpoint), healthy and without faults. Each call starts a new, independent proxy.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy on loopback");
        let port = listener
            .local_addr()
            .expect("fault proxy listener address")
            .port();
        let (mode, _) = watch::channel(Mode::Healthy);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            mode,
            rules: Mutex::new(Vec::new()),
            max_record_size_kib: AtomicU32::new(0),
            stats: Counters::default(),
        });

        let server_shared = Arc::clone(&shared);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let system = actix_web::rt::System::new();
                let result = system.block_on(async move {
                    let server = HttpServer::new(move || {
                        // One HTTP client per worker: its pool lives on this worker's runtime.
                        let client = reqwest::Client::builder()
                            .timeout(MAX_HANG + Duration::from_secs(30))
                            .build()
                            .expect("build the fault proxy's HTTP client");
                        App::new()
                            .app_data(web::Data::from(Arc::clone(&server_shared)))
                            .app_data(web::Data::new(client))
                            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                            .default_service(web::to(handle))
                    })
                    .workers(2)
                    // Clients (the AWS SDK's hyper pool) keep idle connections for 90 s; closing
                    // them sooner would race with requests sent on them.
                    .keep_alive(Duration::from_secs(300))
                    // The test binary owns its signals.
                    .disable_signals()
                    .listen(listener)?
                    .run();
                    let _ = started_tx.send(());
                    server.await
                });
                if let Err(e) = result {
                    eprintln!("fault proxy on port {port} stopped: {e}");
                }
            })
            .expect("spawn the fault proxy thread");
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fault proxy did not start");

        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Entries of PutRecords whose decoded Data contains `marker` are failed with
    /// ProvisionedThroughputExceededException the first `times` times they are seen (per
    /// distinct Data value), then forwarded.
    pub fn throttle_matching(&self, marker: &str, times: u32) {
        self.add_rule(Rule {
            marker: marker.as_bytes().to_vec(),
            kind: RuleKind::Throttle {
                times,
                seen: HashMap::new(),
            },
        });
    }

    /// Every entry whose Data contains `marker` is failed, always, with `error_code` (e.g.
    /// "ProvisionedThroughputExceededException" or "InternalFailure").
    pub fn always_fail_matching(&self, marker: &str, error_code: &str) {
        self.add_rule(Rule {
            marker: marker.as_bytes().to_vec(),
            kind: RuleKind::Always {
                error_code: error_code.to_owned(),
            },
        });
    }

    /// From now on, DescribeStreamSummary answers say every stream takes records of up to
    /// `kib` KiB (`MaxRecordSizeInKiB`), as Kinesis does for a stream with a raised limit.
    pub fn report_max_record_size_kib(&self, kib: u32) {
        self.shared
            .max_record_size_kib
            .store(kib, Ordering::Relaxed);
    }

    /// Removes every entry-level fault.
    pub fn clear_faults(&self) {
        self.shared.rules.lock().expect("rules lock").clear();
    }

    /// Sets what happens to every call from now on; hanging calls wake up and follow it.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    pub fn stats(&self) -> FaultStats {
        let s = &self.shared.stats;
        FaultStats {
            put_records_calls: s.put_records_calls.load(Ordering::Relaxed),
            entries_seen: s.entries_seen.load(Ordering::Relaxed),
            entries_failed_injected: s.entries_failed_injected.load(Ordering::Relaxed),
            entries_forwarded: s.entries_forwarded.load(Ordering::Relaxed),
            other_calls: s.other_calls.load(Ordering::Relaxed),
            calls_failed_by_mode: s.calls_failed_by_mode.load(Ordering::Relaxed),
        }
    }

    pub fn reset_stats(&self) {
        let s = &self.shared.stats;
        for counter in [
            &s.put_records_calls,
            &s.entries_seen,
            &s.entries_failed_injected,
            &s.entries_forwarded,
            &s.other_calls,
            &s.calls_failed_by_mode,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules lock").push(rule);
    }
}

/// Every request: apply the mode, then forward (rewriting PutRecords when entries must fail).
async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    client: web::Data<reqwest::Client>,
) -> HttpResponse {
    let target = header(&req, "x-amz-target").unwrap_or_default().to_owned();
    let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
    let stats = &shared.stats;

    if operation == "PutRecords" {
        stats.put_records_calls.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.other_calls.fetch_add(1, Ordering::Relaxed);
    }

    // Call-level faults first: they apply to every operation.
    let mut mode_rx = shared.mode.subscribe();
    let mode = tokio::select! {
        mode = wait_out_hang(&mut mode_rx) => mode,
        // Hung too long: fail the call as a server error.
        () = tokio::time::sleep(MAX_HANG) => Mode::Refuse,
    };
    match mode {
        Mode::Healthy => {}
        Mode::Delay(delay) => tokio::time::sleep(delay).await,
        Mode::Refuse | Mode::Hang => {
            stats.calls_failed_by_mode.fetch_add(1, Ordering::Relaxed);
            count_put_records_entries(&operation, &body, stats);
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "injected by fault proxy",
            );
        }
        Mode::Throttle => {
            stats.calls_failed_by_mode.fetch_add(1, Ordering::Relaxed);
            count_put_records_entries(&operation, &body, stats);
            let stream = stream_of(&body);
            let (code, message) = match operation.as_str() {
                "PutRecords" | "PutRecord" | "GetRecords" => (
                    "ProvisionedThroughputExceededException",
                    format!("Rate exceeded for stream {stream} under account 000000000000."),
                ),
                _ => ("LimitExceededException", "Rate exceeded".to_owned()),
            };
            return error_response(StatusCode::BAD_REQUEST, code, &message);
        }
    }

    match operation.as_str() {
        "PutRecords" => put_records(&req, body, &shared, &client).await,
        "DescribeStreamSummary" => describe_stream_summary(&req, body, &shared, &client).await,
        _ => forward(&req, body, &shared, &client).await,
    }
}

/// Forwards DescribeStreamSummary, adding `MaxRecordSizeInKiB` to a successful answer when
/// `report_max_record_size_kib` asked for it.
async fn describe_stream_summary(
    req: &HttpRequest,
    body: web::Bytes,
    shared: &Shared,
    client: &reqwest::Client,
) -> HttpResponse {
    let upstream = match send_upstream(req, body, shared, client).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    let kib = shared.max_record_size_kib.load(Ordering::Relaxed);
    if kib == 0 || upstream.status != StatusCode::OK {
        return upstream.into_response(None);
    }
    let mut answer: Value = match serde_json::from_slice(&upstream.body) {
        Ok(answer) => answer,
        Err(_) => return upstream.into_response(None),
    };
    answer["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] = json!(kib);
    let new_body = serde_json::to_vec(&answer).expect("serialize a JSON value");
    upstream.into_response(Some(new_body))
}

/// Resolves to the first mode that is not `Hang` (immediately if the mode is not `Hang`).
async fn wait_out_hang(mode_rx: &mut watch::Receiver<Mode>) -> Mode {
    loop {
        let mode = *mode_rx.borrow_and_update();
        if mode != Mode::Hang {
            return mode;
        }
        if mode_rx.changed().await.is_err() {
            // The sender lives in `Shared`, as long as the server: cannot happen.
            return Mode::Hang;
        }
    }
}

/// PutRecords: fail the entries the rules pick, forward the rest, merge in request order.
async fn put_records(
    req: &HttpRequest,
    body: web::Bytes,
    shared: &Shared,
    client: &reqwest::Client,
) -> HttpResponse {
    let stats = &shared.stats;
    if shared.rules.lock().expect("rules lock").is_empty() {
        // The common case: count, never build a JSON tree (debug builds parse slowly).
        let count = count_entries(&body);
        stats.entries_seen.fetch_add(count, Ordering::Relaxed);
        stats.entries_forwarded.fetch_add(count, Ordering::Relaxed);
        return forward(req, body, shared, client).await;
    }
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        // Not JSON: let kinesalite answer it (SerializationException).
        return forward(req, body, shared, client).await;
    };
    let Some(entries) = request.get("Records").and_then(Value::as_array) else {
        return forward(req, body, shared, client).await;
    };
    stats
        .entries_seen
        .fetch_add(entries.len() as u64, Ordering::Relaxed);

    // For each entry, the error code it is failed with, if any.
    let injected: Vec<Option<String>> = {
        let mut rules = shared.rules.lock().expect("rules lock");
        entries
            .iter()
            .map(|entry| {
                let data = entry
                    .get("Data")
                    .and_then(Value::as_str)
                    .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())?;
                rules.iter_mut().find_map(|rule| rule.check(&data))?
            })
            .collect()
    };
    let failed = injected.iter().filter(|e| e.is_some()).count();
    stats
        .entries_failed_injected
        .fetch_add(failed as u64, Ordering::Relaxed);
    stats
        .entries_forwarded
        .fetch_add((entries.len() - failed) as u64, Ordering::Relaxed);

    if failed == 0 {
        return forward(req, body, shared, client).await;
    }

    let failed_entry = |code: &str| json!({"ErrorCode": code, "ErrorMessage": INJECTED_MESSAGE});
    if failed == entries.len() {
        // Nothing left to forward: answer alone, as Kinesis would with every entry throttled.
        let records: Vec<Value> = injected.iter().flatten().map(|c| failed_entry(c)).collect();
        let answer = json!({"FailedRecordCount": failed, "Records": records});
        return json_response(StatusCode::OK, &answer);
    }

    let kept: Vec<Value> = entries
        .iter()
        .zip(&injected)
        .filter(|(_, fault)| fault.is_none())
        .map(|(entry, _)| entry.clone())
        .collect();
    request["Records"] = Value::Array(kept);
    let new_body = serde_json::to_vec(&request).expect("serialize a JSON value");

    let upstream = match send_upstream(req, new_body.into(), shared, client).await {
        Ok(upstream) => upstream,
        Err(response) => return response,
    };
    if upstream.status != StatusCode::OK {
        return upstream.into_response(None);
    }
    let Ok(mut answer) = serde_json::from_slice::<Value>(&upstream.body) else {
        return upstream.into_response(None);
    };
    let upstream_failed = answer
        .get("FailedRecordCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let Some(upstream_records) = answer.get("Records").and_then(Value::as_array).cloned() else {
        return upstream.into_response(None);
    };
    let mut upstream_records = upstream_records.into_iter();
    let merged: Vec<Value> = injected
        .iter()
        .map(|fault| match fault {
            Some(code) => failed_entry(code),
            None => upstream_records.next().unwrap_or_else(|| {
                failed_entry_missing("kinesalite answered fewer records than it was sent")
            }),
        })
        .collect();
    answer["Records"] = Value::Array(merged);
    answer["FailedRecordCount"] = json!(upstream_failed + failed as u64);
    let new_body = serde_json::to_vec(&answer).expect("serialize a JSON value");
    upstream.into_response(Some(new_body))
}

fn failed_entry_missing(message: &str) -> Value {
    json!({"ErrorCode": "InternalFailure", "ErrorMessage": message})
}

/// Counts the entries of a PutRecords call that is failed as a whole (not forwarded).
fn count_put_records_entries(operation: &str, body: &[u8], stats: &Counters) {
    if operation == "PutRecords" {
        stats
            .entries_seen
            .fetch_add(count_entries(body), Ordering::Relaxed);
    }
}

/// Number of entries in a PutRecords body (0 if it is not one), without keeping any of them.
fn count_entries(body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct Entries {
        #[serde(rename = "Records")]
        records: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Entries>(body).map_or(0, |e| e.records.len() as u64)
}

/// The stream a call names (StreamName, else the end of StreamARN), for error messages.
fn stream_of(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value
        .get("StreamName")
        .and_then(Value::as_str)
        .or_else(|| {
            value
                .get("StreamARN")
                .and_then(Value::as_str)
                .and_then(|arn| arn.rsplit('/').next())
        })
        .unwrap_or("unknown")
        .to_owned()
}

/// Forwards the call untouched and relays the answer.
async fn forward(
    req: &HttpRequest,
    body: web::Bytes,
    shared: &Shared,
    client: &reqwest::Client,
) -> HttpResponse {
    match send_upstream(req, body, shared, client).await {
        Ok(upstream) => upstream.into_response(None),
        Err(response) => response,
    }
}

/// Kinesalite's answer, read in full.
struct Upstream {
    status: StatusCode,
    headers: Vec<(String, Vec<u8>)>,
    body: bytes::Bytes,
}

impl Upstream {
    /// Relays the answer, with `new_body` instead of the original one if given. Content-Length
    /// is always computed by actix from the body actually sent.
    fn into_response(self, new_body: Option<Vec<u8>>) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            response.append_header((name.as_str(), value.as_slice()));
        }
        match new_body {
            Some(body) => response.body(body),
            None => response.body(self.body),
        }
    }
}

/// Headers that describe one hop's connection or framing; never relayed.
fn is_hop_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "expect"
    )
}

/// Sends the call with all end-to-end headers (X-Amz-Target, Content-Type, Authorization,
/// X-Amz-Date, ...) to the upstream; an unreachable upstream becomes a 502 answer.
async fn send_upstream(
    req: &HttpRequest,
    body: web::Bytes,
    shared: &Shared,
    client: &reqwest::Client,
) -> Result<Upstream, HttpResponse> {
    let url = format!("{}{}", shared.upstream, req.uri());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .expect("an HTTP method actix parsed is valid");
    let mut request = client.request(method, url);
    for (name, value) in req.headers() {
        if !is_hop_header(name.as_str()) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let bad_gateway = |e: reqwest::Error| {
        HttpResponse::BadGateway()
            .content_type("text/plain")
            .body(format!(
                "fault proxy: upstream {} failed: {e}",
                shared.upstream
            ))
    };
    let response = request.body(body).send().await.map_err(bad_gateway)?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).expect("a status reqwest parsed is valid");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !is_hop_header(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let body = response.bytes().await.map_err(bad_gateway)?;
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(AMZ_JSON)
        .insert_header(("x-amzn-RequestId", request_id()))
        .body(serde_json::to_vec(body).expect("serialize a JSON value"))
}

/// A Kinesis-style error answer: JSON `__type`/`message` plus the `x-amzn-ErrorType` header.
fn error_response(status: StatusCode, error_type: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(AMZ_JSON)
        .insert_header(("x-amzn-RequestId", request_id()))
        .insert_header(("x-amzn-ErrorType", error_type))
        .body(
            serde_json::to_vec(&json!({"__type": error_type, "message": message}))
                .expect("serialize a JSON value"),
        )
}

fn request_id() -> String {
    format!("fault-proxy-{:032x}", rand::random::<u128>())
}

#[tokio::test]
async fn fault_proxy_fails_chosen_entries_in_order() {
    use super::emulator::{
        create_stream, kinesalite, kinesis_client, read_all, unique_stream_name,
    };
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;

    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy");
    create_stream(&kinesalite.endpoint, &stream, 2).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.throttle_matching("THROTTLE-ME", 1);
    let client = kinesis_client(&proxy.endpoint);

    let entry = |key: &str, data: &str| {
        PutRecordsRequestEntry::builder()
            .partition_key(key)
            .data(Blob::new(data.as_bytes()))
            .build()
            .expect("a valid PutRecords entry")
    };
    let first = client
        .put_records()
        .stream_name(&stream)
        .records(entry("k0", "zero"))
        .records(entry("k1", "one THROTTLE-ME"))
        .records(entry("k2", "two"))
        .send()
        .await
        .expect("PutRecords through the fault proxy");
    assert_eq!(first.failed_record_count(), Some(1));
    let results = first.records();
    assert_eq!(results.len(), 3);
    assert!(results[0].sequence_number().is_some() && results[0].error_code().is_none());
    assert_eq!(
        results[1].error_code(),
        Some("ProvisionedThroughputExceededException")
    );
    assert_eq!(results[1].error_message(), Some(INJECTED_MESSAGE));
    assert!(results[2].sequence_number().is_some() && results[2].error_code().is_none());

    let retry = client
        .put_records()
        .stream_name(&stream)
        .records(entry("k1", "one THROTTLE-ME"))
        .send()
        .await
        .expect("PutRecords retry through the fault proxy");
    assert_eq!(retry.failed_record_count(), Some(0));
    assert!(retry.records()[0].sequence_number().is_some());

    let stats = proxy.stats();
    assert_eq!(stats.put_records_calls, 2);
    assert_eq!(stats.entries_seen, 4);
    assert_eq!(stats.entries_failed_injected, 1);
    assert_eq!(stats.entries_forwarded, 3);

    let mut stored: Vec<String> = read_all(&kinesalite.endpoint, &stream)
        .await
        .into_iter()
        .map(|r| String::from_utf8(r.data).expect("test data is UTF-8"))
        .collect();
    stored.sort();
    assert_eq!(stored, vec!["one THROTTLE-ME", "two", "zero"]);
}

#[tokio::test]
async fn fault_proxy_modes() {
    use super::emulator::{create_stream, kinesalite, kinesis_client, unique_stream_name};
    use aws_sdk_kinesis::config::retry::RetryConfig;
    use aws_sdk_kinesis::error::ProvideErrorMetadata;

    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-modes");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    // No SDK retries, so each call sees exactly what the proxy answered.
    let client = aws_sdk_kinesis::Client::from_conf(
        kinesis_client(&proxy.endpoint)
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let describe = || client.describe_stream_summary().stream_name(&stream).send();

    describe().await.expect("healthy call is forwarded");

    proxy.set_mode(Mode::Refuse);
    let err = describe().await.expect_err("refused");
    assert_eq!(err.code(), Some("InternalFailure"));

    proxy.set_mode(Mode::Throttle);
    let err = describe().await.expect_err("throttled");
    assert_eq!(err.code(), Some("LimitExceededException"));
    let err = client
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(aws_sdk_kinesis::primitives::Blob::new("x"))
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));

    proxy.set_mode(Mode::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(300), describe()).await;
    assert!(hung.is_err(), "a hanging call must not be answered");
    // A call hanging when the mode turns healthy is then forwarded.
    let pending = tokio::spawn({
        let client = client.clone();
        let stream = stream.clone();
        async move {
            client
                .describe_stream_summary()
                .stream_name(&stream)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.set_mode(Mode::Healthy);
    pending
        .await
        .expect("task ran")
        .expect("released call is forwarded");

    proxy.set_mode(Mode::Delay(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    describe().await.expect("delayed call is forwarded");
    assert!(started.elapsed() >= Duration::from_millis(200));

    let stats = proxy.stats();
    assert_eq!(stats.calls_failed_by_mode, 3);
    proxy.reset_stats();
    assert_eq!(proxy.stats(), FaultStats::default());
}

#[tokio::test]
async fn fault_proxy_always_fail_answers_alone_when_nothing_is_left() {
    use super::emulator::{
        create_stream, kinesalite, kinesis_client, read_all, unique_stream_name,
    };
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;

    let kinesalite = kinesalite().await;
    let stream = unique_stream_name("fault-proxy-always");
    create_stream(&kinesalite.endpoint, &stream, 1).await;
    let proxy = FaultProxy::start(&kinesalite.endpoint);
    proxy.always_fail_matching("poison", "InternalFailure");
    let client = kinesis_client(&proxy.endpoint);
    let put = |data: &'static str| {
        client
            .put_records()
            .stream_name(&stream)
            .records(
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(data))
                    .build()
                    .expect("a valid PutRecords entry"),
            )
            .send()
    };

    for _ in 0..2 {
        let answer = put("poison pill").await.expect("PutRecords answered");
        assert_eq!(answer.failed_record_count(), Some(1));
        assert_eq!(answer.records()[0].error_code(), Some("InternalFailure"));
    }
    let stats = proxy.stats();
    assert_eq!(stats.entries_failed_injected, 2);
    assert_eq!(stats.entries_forwarded, 0);
    assert!(read_all(&kinesalite.endpoint, &stream).await.is_empty());

    proxy.clear_faults();
    let answer = put("poison pill").await.expect("PutRecords answered");
    assert_eq!(answer.failed_record_count(), Some(0));
    assert_eq!(read_all(&kinesalite.endpoint, &stream).await.len(), 1);
}
