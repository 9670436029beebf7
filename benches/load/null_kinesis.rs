//! The do-nothing Kinesis endpoint: answers the AWS JSON protocol at once (or after `--delay-ms`,
//! to stand for a slow Kinesis), storing nothing, so the proxy's own costs are what limits a run.
//!
//! It shares the two cores with the proxy and the load generator, so it does as little as it can:
//! one thread, hyper's HTTP/1 server, and for `PutRecords` only counting the `Records` entries
//! (every entry accepted, with a Kinesis-sized sequence number so the proxy copies as much as it
//! would in production).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::child::{announce_ready, exit_when_stdin_closes};
use crate::{Context, Error};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The shards every answer spreads records over (the summary says 4 open shards).
const SHARDS: u64 = 4;

struct State {
    /// Next sequence number (made unique per record, as Kinesis' are).
    sequence: AtomicU64,
    /// Wait before answering PutRecords.
    delay: Duration,
}

/// Runs the endpoint until stdin closes. Prints `READY <port>`.
pub fn serve(delay: Duration) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the null Kinesis runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the null Kinesis listener")?;
        let port = listener.local_addr().context("local address")?.port();
        announce_ready(port)?;
        exit_when_stdin_closes();
        let state = Arc::new(State {
            sequence: AtomicU64::new(0),
            delay,
        });
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: the connection is lost, not the server.
                    eprintln!("null kinesis: accept: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                // A connection ending (the proxy closed it) is normal; nothing to report.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

#[derive(Deserialize)]
struct PutRecordsInput {
    #[serde(rename = "Records")]
    records: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct StreamInput {
    #[serde(rename = "StreamName", default)]
    stream_name: String,
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => return Ok(error(StatusCode::BAD_REQUEST, &err.to_string())),
    };
    let answer = match operation.as_str() {
        "PutRecords" => match serde_json::from_slice::<PutRecordsInput>(&body) {
            Ok(input) => {
                if !state.delay.is_zero() {
                    tokio::time::sleep(state.delay).await;
                }
                put_records_answer(&state, input.records.len())
            }
            Err(err) => return Ok(error(StatusCode::BAD_REQUEST, &err.to_string())),
        },
        "ListStreams" => r#"{"StreamNames":[],"HasMoreStreams":false}"#.to_owned(),
        "DescribeStreamSummary" => {
            let name = serde_json::from_slice::<StreamInput>(&body)
                .map(|input| input.stream_name)
                .unwrap_or_default();
            describe_answer(&name)
        }
        _ => "{}".to_owned(),
    };
    Ok(json(StatusCode::OK, answer))
}

/// `{"FailedRecordCount":0,"Records":[{"ShardId":..,"SequenceNumber":..},..]}`
fn put_records_answer(state: &State, records: usize) -> String {
    use std::fmt::Write;
    let first = state.sequence.fetch_add(records as u64, Ordering::Relaxed);
    let mut out = String::with_capacity(40 + records * 96);
    out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for i in 0..records as u64 {
        let n = first + i;
        if i > 0 {
            out.push(',');
        }
        // Real sequence numbers are 56 digits; the shard is spread like random partition keys.
        let _ = write!(
            out,
            r#"{{"ShardId":"shardId-{:012}","SequenceNumber":"4959033827149025660855969253836157{n:022}"}}"#,
            n % SHARDS
        );
    }
    out.push_str("]}");
    out
}

fn describe_answer(name: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"stream\"".into());
    let arn = serde_json::to_string(&format!(
        "arn:aws:kinesis:us-west-2:000000000000:stream/{}",
        name.trim_matches('"')
    ))
    .unwrap_or_else(|_| "\"arn\"".into());
    format!(
        r#"{{"StreamDescriptionSummary":{{"StreamName":{name},"StreamARN":{arn},"StreamStatus":"ACTIVE","StreamModeDetails":{{"StreamMode":"PROVISIONED"}},"RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000,"EnhancedMonitoring":[{{"ShardLevelMetrics":[]}}],"EncryptionType":"NONE","OpenShardCount":{SHARDS},"ConsumerCount":0}}}}"#
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": "ValidationException", "message": message});
    json(status, body.to_string())
}
