//! The do-nothing Kinesis endpoint: answers the AWS JSON protocol at once (or after `--delay-ms`,
//! to stand for a slow Kinesis), storing nothing, so the proxy's own costs are what limits a run.
//!
//! It shares the two cores with the proxy and the load generator, so it does as little as it can:
//! one thread, hyper's HTTP/1 server, and for `PutRecords` only counting the `Records` entries
//! (every entry accepted, with a Kinesis-sized sequence number so the proxy copies as much as it
//! would in production).
//!
//! With `--shards N` it stands for a stream of N shards of equal hash ranges: `ListShards` lists
//! them, so the proxy sends shard-aware (a lane per shard), and each record is answered on the
//! shard its partition key (MD5) or explicit hash key puts it, as Kinesis does, so the proxy's
//! shard predictions hold. Without it, `ListShards` is not answered and the proxy sends
//! shard-blind.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kinesis_proxy::kinesis::shard_map::partition_key_hash;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::child::{announce_ready, exit_when_stdin_closes};
use crate::{Context, Error};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The shards a shard-blind answer spreads records over (the summary says 4 open shards).
const BLIND_SHARDS: u32 = 4;

struct State {
    /// Next sequence number (made unique per record, as Kinesis' are).
    sequence: AtomicU64,
    /// Wait before answering PutRecords.
    delay: Duration,
    /// Listed shards (`--shards`); `None`: shard-blind.
    shards: Option<u32>,
}

/// Runs the endpoint until stdin closes. Prints `READY <port>`.
pub fn serve(delay: Duration, shards: Option<u32>) -> Result<(), Error> {
    if shards == Some(0) {
        return Err("--shards must be at least 1".into());
    }
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
            shards,
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

/// `PutRecords` read for placing each record on its shard (`--shards`).
#[derive(Deserialize)]
struct PlacedPutRecordsInput<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<PlacedEntry<'a>>,
}

#[derive(Deserialize)]
struct PlacedEntry<'a> {
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: std::borrow::Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<std::borrow::Cow<'a, str>>,
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
        "PutRecords" => {
            let placed = match state.shards {
                None => serde_json::from_slice::<PutRecordsInput>(&body).map(|input| {
                    (0..input.records.len() as u64)
                        .map(|n| n % u64::from(BLIND_SHARDS))
                        .collect::<Vec<_>>()
                }),
                Some(shards) => {
                    serde_json::from_slice::<PlacedPutRecordsInput>(&body).map(|input| {
                        input
                            .records
                            .iter()
                            .map(|entry| shard_of(entry, shards))
                            .collect()
                    })
                }
            };
            match placed {
                Ok(placed) => {
                    if !state.delay.is_zero() {
                        tokio::time::sleep(state.delay).await;
                    }
                    put_records_answer(&state, &placed)
                }
                Err(err) => return Ok(error(StatusCode::BAD_REQUEST, &err.to_string())),
            }
        }
        "ListShards" => match state.shards {
            Some(shards) => list_shards_answer(shards),
            // No shards listed: the proxy has no map and sends shard-blind.
            None => "{}".to_owned(),
        },
        "ListStreams" => r#"{"StreamNames":[],"HasMoreStreams":false}"#.to_owned(),
        "DescribeStreamSummary" => {
            let name = serde_json::from_slice::<StreamInput>(&body)
                .map(|input| input.stream_name)
                .unwrap_or_default();
            describe_answer(&name, state.shards.unwrap_or(BLIND_SHARDS))
        }
        _ => "{}".to_owned(),
    };
    Ok(json(StatusCode::OK, answer))
}

/// The width of each of `shards` equal hash-key ranges (the last one takes the remainder).
fn range_width(shards: u32) -> u128 {
    u128::MAX / u128::from(shards)
}

/// The shard Kinesis would put `entry` on, of `shards` equal ranges.
fn shard_of(entry: &PlacedEntry<'_>, shards: u32) -> u64 {
    let hash = entry
        .explicit_hash_key
        .as_deref()
        .and_then(|key| key.parse::<u128>().ok())
        .unwrap_or_else(|| partition_key_hash(&entry.partition_key));
    let index = (hash / range_width(shards)).min(u128::from(shards - 1));
    index as u64
}

/// `{"Shards":[...]}`: `shards` open shards of equal hash ranges, in one page.
fn list_shards_answer(shards: u32) -> String {
    use std::fmt::Write;
    let width = range_width(shards);
    let mut out = String::from(r#"{"Shards":["#);
    for i in 0..shards {
        let start = u128::from(i) * width;
        let end = if i + 1 == shards {
            u128::MAX
        } else {
            start + width - 1
        };
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"ShardId":"shardId-{i:012}","HashKeyRange":{{"StartingHashKey":"{start}","EndingHashKey":"{end}"}},"SequenceNumberRange":{{"StartingSequenceNumber":"1"}}}}"#
        );
    }
    out.push_str("]}");
    out
}

/// `{"FailedRecordCount":0,"Records":[{"ShardId":..,"SequenceNumber":..},..]}`, each record on
/// the shard of `placed`.
fn put_records_answer(state: &State, placed: &[u64]) -> String {
    use std::fmt::Write;
    let first = state
        .sequence
        .fetch_add(placed.len() as u64, Ordering::Relaxed);
    let mut out = String::with_capacity(40 + placed.len() * 96);
    out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for (i, shard) in placed.iter().enumerate() {
        let n = first + i as u64;
        if i > 0 {
            out.push(',');
        }
        // Real sequence numbers are 56 digits.
        let _ = write!(
            out,
            r#"{{"ShardId":"shardId-{shard:012}","SequenceNumber":"4959033827149025660855969253836157{n:022}"}}"#
        );
    }
    out.push_str("]}");
    out
}

fn describe_answer(name: &str, shards: u32) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"stream\"".into());
    let arn = serde_json::to_string(&format!(
        "arn:aws:kinesis:us-west-2:000000000000:stream/{}",
        name.trim_matches('"')
    ))
    .unwrap_or_else(|_| "\"arn\"".into());
    format!(
        r#"{{"StreamDescriptionSummary":{{"StreamName":{name},"StreamARN":{arn},"StreamStatus":"ACTIVE","StreamModeDetails":{{"StreamMode":"PROVISIONED"}},"RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000,"EnhancedMonitoring":[{{"ShardLevelMetrics":[]}}],"EncryptionType":"NONE","OpenShardCount":{shards},"ConsumerCount":0}}}}"#
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
