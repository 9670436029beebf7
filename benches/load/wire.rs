//! What the load generator puts on the wire and reads back from it: the routes, connections
//! and requests (a POST as its route sends it, a one-off GET), request bodies of events with
//! unique ids (one event, a records body, NDJSON plain or gzip'd), and the proxy's answers:
//! where each acknowledged event went (200: its sequence number; 202: only that it was taken,
//! so the read-back looks it up by id) and the `code` of a refusal. Connections go over the
//! run's `Transport` (plain or TLS, `crate::tls`); the HTTP on top is the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::tls::{self, Transport};
use crate::{Context, Error};

/// ~100 bytes of payload per event, as a small tracking event would carry.
const PAYLOAD: &str = "page_view:/products/espresso-machines?ref=newsletter&utm=spring-sale;ua=Mozilla/5.0 (X11; Linux) x";

/// Which proxy route a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Route {
    /// `POST /kinesis/stream/{stream}`: one event per request.
    Single,
    /// `POST /kinesis/stream/{stream}/records`: this many events per request.
    Many(usize),
    /// The records route with an NDJSON body of `events` lines, gzip'd (`Content-Encoding:
    /// gzip`) when `gzip`, as the batching HTTP senders (Fluent Bit, Vector) send it.
    Ndjson { events: usize, gzip: bool },
}

impl Route {
    pub fn path(self, stream: &str) -> String {
        match self {
            Route::Single => format!("/kinesis/stream/{stream}"),
            Route::Many(_) | Route::Ndjson { .. } => format!("/kinesis/stream/{stream}/records"),
        }
    }

    pub fn events_per_request(self) -> usize {
        match self {
            Route::Single => 1,
            Route::Many(n) | Route::Ndjson { events: n, .. } => n,
        }
    }

    pub fn label(self) -> String {
        match self {
            Route::Single => "single".into(),
            Route::Many(n) => format!("records x{n}"),
            Route::Ndjson {
                events,
                gzip: false,
            } => format!("ndjson x{events}"),
            Route::Ndjson { events, gzip: true } => format!("ndjson.gz x{events}"),
        }
    }
}

/// Opens a keep-alive HTTP/1.1 connection to `127.0.0.1:port`, over TLS when `transport` says
/// so (the TLS handshake is part of opening it).
pub async fn connect(port: u16, transport: &Transport) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connect")?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    match transport {
        Transport::Plain => http1(TokioIo::new(stream)).await,
        Transport::Tls(config) => http1(TokioIo::new(tls::handshake(config, stream).await?)).await,
    }
}

/// HTTP/1.1 over `io`, whatever carries it (hyper takes any IO, so the sender's type is the
/// same over TCP and TLS).
async fn http1<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake")?;
    // The connection's I/O runs on its own task; it ends when the sender is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A POST of `body` to `uri` as `route` sends it (content type, gzip), with the API key.
pub fn post(
    uri: Uri,
    route: Route,
    api_key: Option<&HeaderValue>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Error> {
    let (content_type, gzip) = match route {
        Route::Ndjson { gzip, .. } => ("application/x-ndjson", gzip),
        Route::Single | Route::Many(_) => ("application/json", false),
    };
    let mut request = Request::post(uri)
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .context("building a request")?;
    if gzip {
        request
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(key) = api_key {
        request.headers_mut().insert("x-api-key", key.clone());
    }
    Ok(request)
}

/// A one-off GET on a fresh connection (`/metrics`, `/readyz`): `(status, body)`.
pub async fn http_get(port: u16, transport: &Transport, path: &str) -> Result<(u16, Bytes), Error> {
    let mut sender = connect(port, transport).await?;
    let request = Request::get(path)
        .header(HOST, "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .context("building a GET")?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .context(format_args!("GET {path} timed out"))?
        .context(format_args!("GET {path}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context(format_args!("reading GET {path}"))?
        .to_bytes();
    Ok((status, body))
}

/// An acknowledged event, kept for the read-back.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The event's unique `id` field.
    pub id: String,
    /// Where the proxy said it is ("sequence number", or "sequence number/sub-sequence number"
    /// inside an aggregated record); `None` for a 202 (queued in memory or on disk: where it
    /// lands is only known once it is sent).
    pub place: Option<String>,
}

pub fn event_id(tag: &str, connection: usize, n: u64) -> String {
    format!("{tag}-{connection}-{n}")
}

/// Writes the body of the request carrying events `first_id..` of `connection` into `body`.
/// `key_field` is `,"partition_key":"..."` appended to every event object, or empty.
pub fn build_body(
    body: &mut Vec<u8>,
    (route, tag, key_field): (Route, &str, &str),
    connection: usize,
    first_id: u64,
) {
    use std::io::Write;
    body.clear();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let event = |body: &mut Vec<u8>, n: u64| {
        // Writing into a Vec cannot fail.
        let _ = write!(
            body,
            r#"{{"event":{{"id":"{}","ts":{ts},"payload":"{PAYLOAD}"}}{key_field}}}"#,
            event_id(tag, connection, n)
        );
    };
    match route {
        Route::Single => event(body, first_id),
        Route::Many(count) => {
            body.extend_from_slice(br#"{"records":["#);
            for i in 0..count as u64 {
                if i > 0 {
                    body.push(b',');
                }
                event(body, first_id + i);
            }
            body.extend_from_slice(b"]}");
        }
        Route::Ndjson { events, gzip } => {
            for i in 0..events as u64 {
                let n = first_id + i;
                // A per-event token that does not repeat (a session or trace id, as real events
                // carry), so gzip shrinks the body ~7x as it does real NDJSON, not the ~36x of
                // identical payloads.
                let token = (n ^ (connection as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let _ = writeln!(
                    body,
                    r#"{{"event":{{"id":"{}","ts":{ts},"trace":"{token:016x}{:08x}","payload":"{PAYLOAD}"}}}}"#,
                    event_id(tag, connection, n),
                    token.rotate_left(17) as u32
                );
            }
            if gzip {
                // flate2's default level (6), what gzip and most HTTP senders use.
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::default(),
                );
                let _ = encoder.write_all(body);
                if let Ok(compressed) = encoder.finish() {
                    *body = compressed;
                }
            }
        }
    }
}

/// The proxy's error `code` (`{"error": ..., "code": ...}`), or `?` for another body.
pub fn refusal_code(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        code: String,
    }
    serde_json::from_slice::<Refusal>(body).map_or_else(|_| "?".to_owned(), |r| r.code)
}

#[derive(Deserialize)]
struct SingleAnswer {
    sequence_number: String,
    sub_sequence_number: Option<u32>,
}

/// Where an event was answered to be: its sequence number, and inside an aggregated record
/// its index ("sequence/index"), as the read-back keys them.
fn place(sequence_number: String, sub_sequence_number: Option<u32>) -> String {
    match sub_sequence_number {
        Some(index) => format!("{sequence_number}/{index}"),
        None => sequence_number,
    }
}

#[derive(Deserialize)]
struct ManyAnswer {
    records: Vec<ManyEntry>,
}

#[derive(Deserialize)]
struct ManyEntry {
    sequence_number: Option<String>,
    sub_sequence_number: Option<u32>,
}

/// A 202's body: how many events of the request were taken.
#[derive(Deserialize)]
struct QueuedAnswer {
    queued: usize,
}

/// The events a 2xx answer (`status`) to the request carrying events `first_id..` of
/// `connection` acknowledged, added to `acked`; `false` when the body does not say.
pub fn read_acks(
    acked: &mut Vec<Ack>,
    (route, tag): (Route, &str),
    (connection, first_id): (usize, u64),
    status: u16,
    body: &[u8],
) -> bool {
    let id = |i: u64| event_id(tag, connection, first_id + i);
    let count = route.events_per_request();
    if status == 202 {
        // Queued: all of the request's events or none (a refusal is not a 2xx).
        return match serde_json::from_slice::<QueuedAnswer>(body) {
            Ok(answer) if answer.queued == count => {
                acked.extend((0..count as u64).map(|i| Ack {
                    id: id(i),
                    place: None,
                }));
                true
            }
            _ => false,
        };
    }
    match route {
        Route::Single => match serde_json::from_slice::<SingleAnswer>(body) {
            Ok(answer) => {
                acked.push(Ack {
                    id: id(0),
                    place: Some(place(answer.sequence_number, answer.sub_sequence_number)),
                });
                true
            }
            Err(_) => false,
        },
        Route::Many(_) | Route::Ndjson { .. } => match serde_json::from_slice::<ManyAnswer>(body) {
            Ok(answer) if answer.records.len() == count => {
                for (i, entry) in answer.records.into_iter().enumerate() {
                    if let Some(sequence) = entry.sequence_number {
                        acked.push(Ack {
                            id: id(i as u64),
                            place: Some(place(sequence, entry.sub_sequence_number)),
                        });
                    }
                }
                true
            }
            _ => false,
        },
    }
}
