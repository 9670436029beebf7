//! The load generator: exactly N keep-alive HTTP/1.1 connections (one hyper connection per task,
//! so the count is exact, unlike a pooled client), each sending events with unique ids.
//!
//! Closed loop: each connection sends its next request as soon as the previous one is answered
//! (finds the peak). Open loop: each connection sends on a fixed schedule, `connections / rate`
//! apart, and latency counts from the scheduled time, not from when the request could go out,
//! so a slow answer shows up as latency instead of silently lowering the load (wrk2's way of
//! avoiding coordinated omission).
//!
//! Connection per request (the handshake rate): each request opens a new connection (TCP, and
//! TLS when the transport is), says `Connection: close`, and drops it after the answer; its
//! latency counts the connect and handshakes, since a client waits for them too.
//!
//! A run has phases: warm-up (not counted), the measured window, then stop (every connection
//! finishes the request it has in flight). Acknowledgements are kept from all phases, because
//! every acknowledged event must be in the stream.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::Uri;
use tokio::task::JoinHandle;

use crate::tls::Transport;
pub use crate::wire::Route;
use crate::wire::{build_body, connect, post, read_acks, refusal_code, Ack};
use crate::{Context, Error};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Next request as soon as the previous answer arrives.
    Closed,
    /// This many requests per second over all connections.
    Open { requests_per_sec: f64 },
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The servers' ports; connection `i` goes to `ports[i % ports.len()]`, so connections are
    /// spread evenly over several proxies sharing a stream.
    pub ports: Vec<u16>,
    pub stream: String,
    /// `x-api-key` to send (the bare ceiling needs none).
    pub api_key: Option<String>,
    pub route: Route,
    pub connections: usize,
    pub pace: Pace,
    /// Stop after this many requests in all (the smoke test); `None` = until told.
    pub max_requests: Option<u64>,
    /// Keep every acknowledged event (its id and where it went) for the read-back.
    pub collect_acks: bool,
    /// Prefix of every event id, unique per run.
    pub tag: String,
    /// Every event's `partition_key` (a client pinned to one shard); `None`: the proxy picks a
    /// random key per event.
    pub partition_key: Option<String>,
    /// Plain TCP or TLS.
    pub transport: Transport,
    /// A new connection for each request, closed after its answer; `false`: keep-alive.
    pub connection_per_request: bool,
}

/// Connections opened at once before a run (well under any accept backlog).
const CONNECT_CONCURRENCY: usize = 16;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one connection saw.
#[derive(Debug, Default)]
struct ConnStats {
    /// Latency of each 2xx answer in the window, microseconds.
    latencies_us: Vec<u32>,
    /// Status codes of the answers in the window.
    statuses: BTreeMap<u16, u64>,
    /// The `code` of the error bodies of non-2xx answers in the window (`hot_shard`, ...).
    refusal_codes: BTreeMap<String, u64>,
    /// Transport errors (connect, send, read) in the window.
    errors: u64,
    ok_requests: u64,
    ok_events: u64,
    /// Every acknowledged event, all phases.
    acked: Vec<Ack>,
    /// 2xx answers whose body did not say what was acknowledged.
    unparsed_acks: u64,
    sent_total: u64,
    /// Requests sent while the window was open (open loop: shows whether the schedule held).
    sent_in_window: u64,
    /// Connections opened after the start, all phases (reconnections, or one per request).
    connections_opened: u64,
    first_error: Option<String>,
}

/// The merged result of a run.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// The measured window's real length.
    pub window: Duration,
    pub ok_requests: u64,
    pub ok_events: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// The `code` of the error bodies of non-2xx answers in the window.
    pub refusal_codes: BTreeMap<String, u64>,
    pub errors: u64,
    /// Sorted ascending.
    pub latencies_us: Vec<u32>,
    pub acked: Vec<Ack>,
    pub unparsed_acks: u64,
    pub sent_total: u64,
    pub sent_in_window: u64,
    pub connections_opened: u64,
    pub first_error: Option<String>,
}

impl LoadResult {
    /// Latency quantile `q` of the 2xx answers, in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        Some(f64::from(self.latencies_us[rank - 1]) / 1000.0)
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.ok_requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Requests sent per second while the window was open, whatever their answer.
    pub fn sent_per_sec(&self) -> f64 {
        self.sent_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn events_per_sec(&self) -> f64 {
        self.ok_events as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// A run in progress.
pub struct RunningLoad {
    phase: Arc<AtomicU8>,
    tasks: Vec<JoinHandle<ConnStats>>,
    window_started: Option<Instant>,
    window: Duration,
}

/// What every connection task shares.
struct Shared {
    spec: LoadSpec,
    uri: Uri,
    api_key: Option<HeaderValue>,
    phase: Arc<AtomicU8>,
    /// Requests left when the run has a budget.
    budget: Option<AtomicU64>,
    /// `,"partition_key":"..."` appended to every event object, or empty.
    key_field: String,
}

impl RunningLoad {
    /// Opens every connection, then starts sending (warm-up) on the current tokio runtime.
    ///
    /// Connections are opened first and a few at a time: a burst of hundreds of SYNs overflows
    /// the server's accept backlog, and the retransmitted SYN (1 s later) would show up as
    /// latency of the first requests rather than anything the server does under load.
    pub async fn start(spec: LoadSpec) -> Result<Self, Error> {
        let uri: Uri = spec
            .route
            .path(&spec.stream)
            .parse()
            .context("request path")?;
        let api_key = spec
            .api_key
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .context("api key header")?;
        if spec.ports.is_empty() {
            return Err("a load needs at least one server port".into());
        }
        let key_field = match &spec.partition_key {
            Some(key) => format!(
                r#","partition_key":{}"#,
                serde_json::to_string(key).context("partition key as JSON")?
            ),
            None => String::new(),
        };
        let phase = Arc::new(AtomicU8::new(WARMUP));
        let shared = Arc::new(Shared {
            key_field,
            budget: spec.max_requests.map(AtomicU64::new),
            spec,
            uri,
            api_key,
            phase: phase.clone(),
        });
        let mut senders = Vec::with_capacity(shared.spec.connections);
        if shared.spec.connection_per_request {
            // Each request opens its own.
            senders.resize_with(shared.spec.connections, || None);
        } else {
            // `buffered` keeps the order, so connection `i` is the one opened to `port_of(i)`.
            let transport = &shared.spec.transport;
            let mut opening = futures_util::stream::iter(
                (0..shared.spec.connections).map(|i| connect(shared.port_of(i), transport)),
            )
            .buffered(CONNECT_CONCURRENCY);
            while let Some(sender) = opening.next().await {
                senders.push(Some(sender.context("opening the load connections")?));
            }
        }
        let started = tokio::time::Instant::now();
        let tasks = senders
            .into_iter()
            .enumerate()
            .map(|(index, sender)| tokio::spawn(connection(shared.clone(), index, sender, started)))
            .collect();
        Ok(Self {
            phase,
            tasks,
            window_started: None,
            window: Duration::ZERO,
        })
    }

    /// Opens the measured window: answers from now on are counted.
    pub fn begin_window(&mut self) {
        self.phase.store(MEASURE, Ordering::Relaxed);
        self.window_started = Some(Instant::now());
    }

    /// Closes the window and tells every connection to stop after its current request.
    pub fn end_window(&mut self) {
        self.phase.store(STOP, Ordering::Relaxed);
        if let Some(started) = self.window_started {
            self.window = started.elapsed();
        }
    }

    /// Waits until every connection has ended on its own (a run with a request budget).
    pub async fn wait_done(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while !self.tasks.iter().all(JoinHandle::is_finished) {
            if Instant::now() > deadline {
                return Err(format!("the load did not finish within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops (if not yet), waits for every connection and merges what they saw.
    pub async fn finish(mut self, timeout: Duration) -> Result<LoadResult, Error> {
        if self.phase.load(Ordering::Relaxed) != STOP {
            self.end_window();
        }
        let mut result = LoadResult {
            window: self.window,
            ..LoadResult::default()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stuck = 0;
        for task in self.tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(stats)) => merge(&mut result, stats),
                Ok(Err(err)) => return Err(format!("a connection task failed: {err}").into()),
                Err(_) => {
                    abort.abort();
                    stuck += 1;
                }
            }
        }
        if stuck > 0 {
            return Err(format!(
                "{stuck} connections still waited for an answer {timeout:?} after the load stopped"
            )
            .into());
        }
        result.latencies_us.sort_unstable();
        Ok(result)
    }
}

impl Shared {
    /// The server connection `index` talks to.
    fn port_of(&self, index: usize) -> u16 {
        self.spec.ports[index % self.spec.ports.len()]
    }
}

fn merge(into: &mut LoadResult, stats: ConnStats) {
    into.latencies_us.extend(stats.latencies_us);
    for (status, count) in stats.statuses {
        *into.statuses.entry(status).or_default() += count;
    }
    for (code, count) in stats.refusal_codes {
        *into.refusal_codes.entry(code).or_default() += count;
    }
    into.errors += stats.errors;
    into.ok_requests += stats.ok_requests;
    into.ok_events += stats.ok_events;
    into.acked.extend(stats.acked);
    into.unparsed_acks += stats.unparsed_acks;
    into.sent_total += stats.sent_total;
    into.sent_in_window += stats.sent_in_window;
    into.connections_opened += stats.connections_opened;
    if into.first_error.is_none() {
        into.first_error = stats.first_error;
    }
}

/// One connection's loop (keep-alive), or one client's (a connection per request).
async fn connection(
    shared: Arc<Shared>,
    index: usize,
    mut sender: Option<SendRequest<Full<Bytes>>>,
    started: tokio::time::Instant,
) -> ConnStats {
    let spec = &shared.spec;
    let mut stats = ConnStats::default();
    let mut body = Vec::with_capacity(256 * spec.route.events_per_request());
    let mut next_id: u64 = 0;
    // Open loop: this connection's share of the rate, phase-shifted so connections interleave.
    let interval = match spec.pace {
        Pace::Closed => None,
        Pace::Open { requests_per_sec } => {
            let per_connection = requests_per_sec / spec.connections as f64;
            Some(Duration::from_secs_f64(1.0 / per_connection.max(1e-6)))
        }
    };
    let mut scheduled = started
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(index as f64 / spec.connections as f64)
        });

    loop {
        if shared.phase.load(Ordering::Relaxed) == STOP {
            break;
        }
        if let Some(budget) = &shared.budget {
            if budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
            {
                break;
            }
        }
        // When the request counts as sent: its scheduled time (open loop) or now.
        let intended = match interval {
            Some(interval) => {
                tokio::time::sleep_until(scheduled).await;
                let at = scheduled;
                scheduled += interval;
                at.into_std()
            }
            None => {
                // Closed loop: a reconnection is not the server's latency; open it first. (A
                // connection per request is opened in `send`, and counts.)
                if sender.is_none() && !spec.connection_per_request {
                    match connect(shared.port_of(index), &spec.transport).await {
                        Ok(opened) => {
                            sender = Some(opened);
                            stats.connections_opened += 1;
                        }
                        Err(err) => {
                            note_error(&shared, &mut stats, &err);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                Instant::now()
            }
        };
        if shared.phase.load(Ordering::Relaxed) == STOP {
            break;
        }

        let first_id = next_id;
        next_id += spec.route.events_per_request() as u64;
        build_body(
            &mut body,
            (spec.route, &spec.tag, &shared.key_field),
            index,
            first_id,
        );
        if shared.phase.load(Ordering::Relaxed) == MEASURE {
            stats.sent_in_window += 1;
        }
        let opening = sender.is_none();
        let answer = send(&shared, index, &mut sender, Bytes::copy_from_slice(&body)).await;
        if opening && sender.is_some() {
            stats.connections_opened += 1;
        }
        if spec.connection_per_request {
            // Dropping the sender ends the connection's task (the proxy closes it too).
            sender = None;
        }
        stats.sent_total += 1;
        let in_window = shared.phase.load(Ordering::Relaxed) == MEASURE;
        match answer {
            Ok((status, response)) => {
                if in_window {
                    *stats.statuses.entry(status).or_default() += 1;
                }
                if (200..300).contains(&status) {
                    if in_window {
                        let micros = intended.elapsed().as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                        stats.ok_requests += 1;
                        stats.ok_events += spec.route.events_per_request() as u64;
                    }
                    if spec.collect_acks
                        && !read_acks(
                            &mut stats.acked,
                            (spec.route, &spec.tag),
                            (index, first_id),
                            status,
                            &response,
                        )
                    {
                        stats.unparsed_acks += 1;
                    }
                } else {
                    if in_window {
                        *stats
                            .refusal_codes
                            .entry(refusal_code(&response))
                            .or_default() += 1;
                    }
                    if matches!(status, 429 | 503) && interval.is_none() {
                        // A closed loop would spin on refusals; pause as a polite client would.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Err(err) => {
                note_error(&shared, &mut stats, &err);
                sender = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    stats
}

fn note_error(shared: &Shared, stats: &mut ConnStats, err: &Error) {
    if shared.phase.load(Ordering::Relaxed) == MEASURE {
        stats.errors += 1;
    }
    if stats.first_error.is_none() {
        stats.first_error = Some(err.to_string());
    }
}

async fn send(
    shared: &Shared,
    index: usize,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    body: Bytes,
) -> Result<(u16, Bytes), Error> {
    let ready = match sender {
        Some(s) => s,
        None => sender.insert(connect(shared.port_of(index), &shared.spec.transport).await?),
    };
    ready.ready().await.context("connection closed")?;
    let mut request = post(
        shared.uri.clone(),
        shared.spec.route,
        shared.api_key.as_ref(),
        body,
    )?;
    if shared.spec.connection_per_request {
        request
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let response = ready.send_request(request).await.context("send")?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    Ok((status, body))
}
