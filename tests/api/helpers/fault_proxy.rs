//! A fault layer in front of kinesalite: a loopback HTTP proxy that forwards Kinesis JSON API
//! calls to the emulator and injects the failures a real Kinesis produces, which kinesalite never
//! does (it never throttles).
//!
//! Faults:
//! - entry level: chosen `PutRecords` entries (those whose data contains a marker, a random
//!   share of them, or those over their shard's write limit) are answered as failed inside a 200
//!   response, in request order, and are not forwarded; the rest go on in one call;
//! - per-shard limits as Kinesis enforces them (`limit_shards`): a token bucket of records and
//!   one of bytes per shard, so a producer that ignores shards is throttled as it would be on AWS;
//! - call level (`Mode`): every call is refused (500), throttled (400), delayed, or left hanging;
//!   or one operation alone is refused (`refuse_operation`, e.g. ListShards without permission).
//!
//! It can also make `DescribeStreamSummary` report a stream's `MaxRecordSizeInKiB`, which
//! kinesalite (older than the setting) never does.
//!
//! It runs on its own thread with its own actix system, so it outlives any one `#[tokio::test]`
//! runtime and is independent of them. All state is shared through atomics and locks, so the
//! test side can change faults and read counters from any thread or runtime.
//!
//! The load benchmark includes this file too (`#[path]`), to put Kinesis' per-shard limits in
//! front of kinesalite; so it uses nothing of the tests' other helpers.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// Message of every entry failed by a marker rule.
pub const INJECTED_MESSAGE: &str = "injected by fault proxy";

/// Kinesis' error code for an entry over its shard's limit.
const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// A stream's cached shard map is loaded again when older than this, so a resharded stream is
/// limited by its new shards within about a second (as on AWS, where the children of a split
/// take writes at once).
const SHARD_MAP_MAX_AGE: Duration = Duration::from_secs(1);

/// Seed of the random throttling: the same calls are throttled in every run.
const RANDOM_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

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
    /// Wait `delay` give or take `jitter_pct` percent of it (uniformly), then forward:
    /// Kinesis' own latency, which varies call by call.
    Jittered { delay: Duration, jitter_pct: u32 },
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
    /// Calls answered with the error `refuse_operation` chose for their operation.
    pub calls_refused_by_operation: u64,
    /// PutRecords calls refused as a whole by `refuse_calls_containing`, and the entries they
    /// held (more entries than calls: some refused call held records other than the marked).
    pub calls_refused_as_invalid: u64,
    pub entries_in_refused_calls: u64,
    /// Entries over their shard's limit (`limit_shards`), answered as throttled.
    pub entries_throttled_by_limit: u64,
    /// Entries throttled by `throttle_at_random`.
    pub entries_throttled_at_random: u64,
    /// Entries kinesalite stored on another shard than this proxy's own prediction (MD5 of the
    /// partition key or the explicit hash key against ListShards): its limits were charged to
    /// the wrong shard. 0 unless the stream was resharded within the last second.
    pub entries_on_unexpected_shard: u64,
}

/// Kinesis' per-shard write limits (1,000 records/s and 1 MiB/s on AWS), enforced with one
/// token bucket of records and one of bytes per shard, each holding one second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLimits {
    pub records_per_second: u32,
    /// Bytes of data (decoded) plus partition key, as Kinesis counts them.
    pub bytes_per_second: u64,
}

impl ShardLimits {
    /// The limits of a provisioned Kinesis shard.
    pub const KINESIS: ShardLimits = ShardLimits {
        records_per_second: 1000,
        bytes_per_second: 1024 * 1024,
    };
}

/// What one shard saw since start or the last `reset_stats`. Counted while `limit_shards` or
/// `throttle_at_random` is on (they need the shard map); otherwise entries are not attributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Entries predicted for this shard, whatever then happened to them.
    pub entries_seen: u64,
    pub entries_throttled_by_limit: u64,
    pub entries_throttled_at_random: u64,
    /// Entries kinesalite answered with a sequence number on this shard (its ShardId).
    pub entries_accepted: u64,
    /// Data (decoded) plus partition key bytes of the accepted entries.
    pub bytes_accepted: u64,
}

/// The proxy, running until the test binary exits or `stop` is called. Cheap to share: clone
/// the `Arc` if needed.
pub struct FaultProxy {
    /// Base URL to give an SDK client or kinesis-proxy instead of kinesalite's.
    pub endpoint: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
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
    /// Per-shard limits, random throttling, and the shard maps and statistics they need.
    shards: Mutex<ShardState>,
    /// Operations answered with an error instead of being forwarded: operation → error type.
    refused: Mutex<HashMap<String, String>>,
    stats: Counters,
}

impl Shared {
    fn shard_state(&self) -> MutexGuard<'_, ShardState> {
        // A panic while holding the lock leaves counters and buckets usable.
        self.shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything the shard-level faults share across the server's workers.
struct ShardState {
    limits: Option<ShardLimits>,
    /// Probability that an entry is throttled at random (0: never).
    random_probability: f64,
    /// xorshift64* state: deterministic, and no RNG crate feature needed.
    rng: u64,
    /// Open shards per stream, loaded from the upstream with ListShards.
    maps: HashMap<String, CachedMap>,
    /// Token buckets by (stream, shard id); created full on a shard's first entry.
    buckets: HashMap<(String, String), Bucket>,
    /// By (stream, shard id).
    stats: BTreeMap<(String, String), ShardStats>,
}

impl ShardState {
    fn new() -> Self {
        Self {
            limits: None,
            random_probability: 0.0,
            rng: RANDOM_SEED,
            maps: HashMap::new(),
            buckets: HashMap::new(),
            stats: BTreeMap::new(),
        }
    }

    fn is_active(&self) -> bool {
        self.limits.is_some() || self.random_probability > 0.0
    }

    /// A uniform number in [0, 1).
    fn next_random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shard_stats(&mut self, stream: &str, shard: &str) -> &mut ShardStats {
        self.stats
            .entry((stream.to_owned(), shard.to_owned()))
            .or_default()
    }
}

/// One open shard as ListShards gives it.
#[derive(Debug, Clone)]
struct OpenShard {
    id: String,
    start: u128,
    end: u128,
}

struct CachedMap {
    /// Sorted by `start`.
    shards: Arc<Vec<OpenShard>>,
    loaded_at: Instant,
    /// A request is loading it again; the others keep using this one meanwhile.
    loading: bool,
}

/// The shard of `shards` (sorted by start) whose range holds `hash_key`.
fn shard_of(shards: &[OpenShard], hash_key: u128) -> Option<&OpenShard> {
    let index = shards.partition_point(|s| s.end < hash_key);
    shards.get(index).filter(|s| s.start <= hash_key)
}

/// A shard's write budget: tokens of records and bytes, refilled continuously up to one
/// second's worth (Kinesis allows that much burst).
struct Bucket {
    records: f64,
    bytes: f64,
    at: Instant,
}

impl Bucket {
    fn full(limits: ShardLimits, now: Instant) -> Self {
        Self {
            records: f64::from(limits.records_per_second),
            bytes: limits.bytes_per_second as f64,
            at: now,
        }
    }

    /// Takes one record of `size` bytes if both budgets allow it; otherwise takes nothing.
    fn take(&mut self, limits: ShardLimits, now: Instant, size: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let records_cap = f64::from(limits.records_per_second);
        let bytes_cap = limits.bytes_per_second as f64;
        self.records = (self.records + elapsed * records_cap).min(records_cap);
        self.bytes = (self.bytes + elapsed * bytes_cap).min(bytes_cap);
        self.at = self.at.max(now);
        if self.records >= 1.0 && self.bytes >= size as f64 {
            self.records -= 1.0;
            self.bytes -= size as f64;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Counters {
    put_records_calls: AtomicU64,
    entries_seen: AtomicU64,
    entries_failed_injected: AtomicU64,
    entries_forwarded: AtomicU64,
    other_calls: AtomicU64,
    calls_failed_by_mode: AtomicU64,
    calls_refused_by_operation: AtomicU64,
    calls_refused_as_invalid: AtomicU64,
    entries_in_refused_calls: AtomicU64,
    entries_throttled_by_limit: AtomicU64,
    entries_throttled_at_random: AtomicU64,
    entries_on_unexpected_shard: AtomicU64,
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
    /// Refuse the whole call that holds the entry (400 ValidationException), as Kinesis does
    /// for a record it finds invalid: no entry of the call is written.
    RefuseCall,
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
            RuleKind::RefuseCall => None,
        })
    }

    /// Whether this rule refuses every call holding `data`.
    fn refuses_call(&self, data: &[u8]) -> bool {
        matches!(self.kind, RuleKind::RefuseCall) && contains(data, &self.marker)
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
            shards: Mutex::new(ShardState::new()),
            refused: Mutex::new(HashMap::new()),
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
                        // Its own ListShards calls, for the shard maps the limits need.
                        let kinesis = upstream_kinesis_client(&server_shared.upstream);
                        App::new()
                            .app_data(web::Data::from(Arc::clone(&server_shared)))
                            .app_data(web::Data::new(client))
                            .app_data(web::Data::new(kinesis))
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
                    let _ = started_tx.send(server.handle());
                    server.await
                });
                if let Err(e) = result {
                    eprintln!("fault proxy on port {port} stopped: {e}");
                }
            })
            .expect("spawn the fault proxy thread");
        let server = started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fault proxy did not start");

        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
            server,
        }
    }

    /// Stops the server (calls in progress are dropped) and ends its thread. For a process that
    /// starts many proxies (the load benchmark, one per run); tests let theirs run to the end.
    pub fn stop(&self) {
        // The command is sent at once; the returned future only waits for it to be done.
        drop(self.server.stop(false));
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

    /// Every PutRecords call holding an entry whose Data contains `marker` is refused as a
    /// whole with 400 ValidationException, none of its entries written: what Kinesis does with a
    /// call holding one record it finds invalid (a partition key over 256 UTF-16 code units, a
    /// malformed explicit hash key).
    pub fn refuse_calls_containing(&self, marker: &str) {
        self.add_rule(Rule {
            marker: marker.as_bytes().to_vec(),
            kind: RuleKind::RefuseCall,
        });
    }

    /// From now on, DescribeStreamSummary answers say every stream takes records of up to
    /// `kib` KiB (`MaxRecordSizeInKiB`), as Kinesis does for a stream with a raised limit.
    pub fn report_max_record_size_kib(&self, kib: u32) {
        self.shared
            .max_record_size_kib
            .store(kib, Ordering::Relaxed);
    }

    /// Removes every marker rule (`throttle_matching`, `always_fail_matching`).
    pub fn clear_faults(&self) {
        self.shared.rules.lock().expect("rules lock").clear();
    }

    /// From now on, PutRecords entries over their shard's limits are answered as throttled
    /// (ProvisionedThroughputExceededException naming the shard, as Kinesis does) and not
    /// forwarded. Every shard's budget starts full.
    pub fn limit_shards(&self, limits: ShardLimits) {
        let mut state = self.shared.shard_state();
        state.limits = Some(limits);
        state.buckets.clear();
    }

    /// No per-shard limits from now on.
    pub fn remove_shard_limits(&self) {
        let mut state = self.shared.shard_state();
        state.limits = None;
        state.buckets.clear();
    }

    /// From now on, each PutRecords entry is throttled with this probability (0.0: never), not
    /// forwarded. The sequence of draws starts again from a fixed seed at every call.
    pub fn throttle_at_random(&self, probability: f64) {
        let mut state = self.shared.shard_state();
        state.random_probability = probability.clamp(0.0, 1.0);
        state.rng = RANDOM_SEED;
    }

    /// Forgets every cached shard map: the next PutRecords call of each stream loads it again
    /// (they are also reloaded when older than a second).
    pub fn reload_shard_maps(&self) {
        self.shared.shard_state().maps.clear();
    }

    /// `Some(error_type)`: calls of `operation` (the X-Amz-Target suffix, e.g. "ListShards") are
    /// answered 400 with that `__type` (e.g. "AccessDeniedException") and not forwarded, whatever
    /// the mode; other operations are left alone. `None`: forwarded again.
    pub fn refuse_operation(&self, operation: &str, error_type: Option<&str>) {
        let mut refused = self.shared.refused.lock().expect("refused lock");
        match error_type {
            Some(error_type) => {
                refused.insert(operation.to_owned(), error_type.to_owned());
            }
            None => {
                refused.remove(operation);
            }
        }
    }

    /// Per-shard counts of `stream` by shard id, since start or the last `reset_stats`.
    pub fn shard_stats(&self, stream: &str) -> BTreeMap<String, ShardStats> {
        self.shared
            .shard_state()
            .stats
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|((_, shard), stats)| (shard.clone(), *stats))
            .collect()
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
            calls_refused_by_operation: s.calls_refused_by_operation.load(Ordering::Relaxed),
            calls_refused_as_invalid: s.calls_refused_as_invalid.load(Ordering::Relaxed),
            entries_in_refused_calls: s.entries_in_refused_calls.load(Ordering::Relaxed),
            entries_throttled_by_limit: s.entries_throttled_by_limit.load(Ordering::Relaxed),
            entries_throttled_at_random: s.entries_throttled_at_random.load(Ordering::Relaxed),
            entries_on_unexpected_shard: s.entries_on_unexpected_shard.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter, per-shard ones included.
    pub fn reset_stats(&self) {
        let s = &self.shared.stats;
        for counter in [
            &s.put_records_calls,
            &s.entries_seen,
            &s.entries_failed_injected,
            &s.entries_forwarded,
            &s.other_calls,
            &s.calls_failed_by_mode,
            &s.calls_refused_by_operation,
            &s.calls_refused_as_invalid,
            &s.entries_in_refused_calls,
            &s.entries_throttled_by_limit,
            &s.entries_throttled_at_random,
            &s.entries_on_unexpected_shard,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.shared.shard_state().stats.clear();
    }

    fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules lock").push(rule);
    }
}

/// Every request: refuse its operation if asked, apply the mode, then forward (rewriting
/// PutRecords when entries must fail).
async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    client: web::Data<reqwest::Client>,
    kinesis: web::Data<aws_sdk_kinesis::Client>,
) -> HttpResponse {
    let target = header(&req, "x-amz-target").unwrap_or_default().to_owned();
    let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
    let stats = &shared.stats;

    if operation == "PutRecords" {
        stats.put_records_calls.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.other_calls.fetch_add(1, Ordering::Relaxed);
    }

    let refusal = shared
        .refused
        .lock()
        .expect("refused lock")
        .get(&operation)
        .cloned();
    if let Some(error_type) = refusal {
        stats
            .calls_refused_by_operation
            .fetch_add(1, Ordering::Relaxed);
        count_put_records_entries(&operation, &body, stats);
        let message = format!(
            "User: arn:aws:iam::000000000000:user/local is not authorized to perform: \
             kinesis:{operation} (injected by fault proxy)"
        );
        return error_response(StatusCode::BAD_REQUEST, &error_type, &message);
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
        Mode::Jittered { delay, jitter_pct } => {
            let jitter = f64::from(jitter_pct) / 100.0;
            let factor = 1.0 + jitter * (2.0 * rand::random::<f64>() - 1.0);
            tokio::time::sleep(delay.mul_f64(factor.max(0.0))).await;
        }
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
        "PutRecords" => put_records(&req, body, &shared, &client, &kinesis).await,
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

/// Why an entry is answered as failed without being forwarded.
#[derive(Debug, Clone)]
struct EntryFailure {
    code: String,
    message: String,
}

impl EntryFailure {
    fn to_json(&self) -> Value {
        json!({"ErrorCode": self.code, "ErrorMessage": self.message})
    }
}

/// What the shard-level faults need of one entry.
struct EntryFacts {
    /// The shard this proxy predicts, if the stream's map is known.
    shard: Option<String>,
    /// Data (decoded) plus partition key bytes, as Kinesis counts them.
    size: u64,
}

/// PutRecords: fail the entries the faults pick (marker rules, then random throttling, then
/// the shard limits), forward the rest in one call, merge the answers in request order.
async fn put_records(
    req: &HttpRequest,
    body: web::Bytes,
    shared: &Shared,
    client: &reqwest::Client,
    kinesis: &aws_sdk_kinesis::Client,
) -> HttpResponse {
    let stats = &shared.stats;
    let no_rules = shared.rules.lock().expect("rules lock").is_empty();
    let shard_faults = shared.shard_state().is_active();
    if no_rules && !shard_faults {
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
    let stream = stream_named_in(&request);

    // For each entry, why it is failed, if it is.
    let mut failures: Vec<Option<EntryFailure>> = {
        let mut rules = shared.rules.lock().expect("rules lock");
        let refused = entries.iter().any(|entry| {
            entry
                .get("Data")
                .and_then(Value::as_str)
                .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())
                .is_some_and(|data| rules.iter().any(|rule| rule.refuses_call(&data)))
        });
        if refused {
            stats
                .calls_refused_as_invalid
                .fetch_add(1, Ordering::Relaxed);
            stats
                .entries_in_refused_calls
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            return error_response(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "1 validation error detected: Value at 'records.member.partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256 (injected by fault proxy)",
            );
        }
        entries
            .iter()
            .map(|entry| {
                if rules.is_empty() {
                    return None;
                }
                let data = entry
                    .get("Data")
                    .and_then(Value::as_str)
                    .and_then(|b64| aws_smithy_types::base64::decode(b64).ok())?;
                let code = rules.iter_mut().find_map(|rule| rule.check(&data))??;
                Some(EntryFailure {
                    code,
                    message: INJECTED_MESSAGE.to_owned(),
                })
            })
            .collect()
    };
    let injected = failures.iter().filter(|f| f.is_some()).count();
    stats
        .entries_failed_injected
        .fetch_add(injected as u64, Ordering::Relaxed);

    let facts: Vec<EntryFacts> = if shard_faults {
        let map = open_shards(shared, kinesis, &stream).await;
        entries
            .iter()
            .map(|entry| entry_facts(entry, map.as_ref().map(|m| m.as_slice())))
            .collect()
    } else {
        Vec::new()
    };
    if shard_faults {
        apply_shard_faults(shared, &stream, &facts, &mut failures);
    }

    let failed = failures.iter().filter(|f| f.is_some()).count();
    stats
        .entries_forwarded
        .fetch_add((entries.len() - failed) as u64, Ordering::Relaxed);

    if failed == entries.len() {
        // Nothing left to forward: answer alone, as Kinesis would with every entry throttled.
        let records: Vec<Value> = failures
            .iter()
            .flatten()
            .map(EntryFailure::to_json)
            .collect();
        let answer = json!({"FailedRecordCount": failed, "Records": records});
        return json_response(StatusCode::OK, &answer);
    }
    if failed == 0 && !shard_faults {
        return forward(req, body, shared, client).await;
    }

    let new_body = if failed == 0 {
        body
    } else {
        let kept: Vec<Value> = entries
            .iter()
            .zip(&failures)
            .filter(|(_, failure)| failure.is_none())
            .map(|(entry, _)| entry.clone())
            .collect();
        request["Records"] = Value::Array(kept);
        serde_json::to_vec(&request)
            .expect("serialize a JSON value")
            .into()
    };

    let upstream = match send_upstream(req, new_body, shared, client).await {
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
    if shard_faults {
        count_accepted(shared, &stream, &facts, &failures, &upstream_records);
    }
    if failed == 0 {
        return upstream.into_response(None);
    }
    let mut upstream_records = upstream_records.into_iter();
    let merged: Vec<Value> = failures
        .iter()
        .map(|failure| match failure {
            Some(failure) => failure.to_json(),
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

/// Random throttling, then the shard limits, for every entry not failed yet; counts what each
/// shard saw. All entries of a call are charged at the same instant, as one request.
fn apply_shard_faults(
    shared: &Shared,
    stream: &str,
    facts: &[EntryFacts],
    failures: &mut [Option<EntryFailure>],
) {
    let stats = &shared.stats;
    let now = Instant::now();
    let mut state = shared.shard_state();
    let throttled = |shard: Option<&str>| EntryFailure {
        code: THROTTLED.to_owned(),
        message: match shard {
            Some(shard) => format!(
                "Rate exceeded for shard {shard} in stream {stream} under account 000000000000."
            ),
            None => format!("Rate exceeded for stream {stream} under account 000000000000."),
        },
    };
    for (fact, failure) in facts.iter().zip(failures.iter_mut()) {
        let shard = fact.shard.as_deref();
        if let Some(shard) = shard {
            state.shard_stats(stream, shard).entries_seen += 1;
        }
        if failure.is_some() {
            continue;
        }
        if state.random_probability > 0.0 && state.next_random() < state.random_probability {
            stats
                .entries_throttled_at_random
                .fetch_add(1, Ordering::Relaxed);
            if let Some(shard) = shard {
                state.shard_stats(stream, shard).entries_throttled_at_random += 1;
            }
            *failure = Some(throttled(shard));
            continue;
        }
        // An entry whose shard is unknown (no map, unparsable key) goes on unlimited: kinesalite
        // then answers it as it would.
        let (Some(limits), Some(shard)) = (state.limits, shard) else {
            continue;
        };
        let bucket = state
            .buckets
            .entry((stream.to_owned(), shard.to_owned()))
            .or_insert_with(|| Bucket::full(limits, now));
        if !bucket.take(limits, now, fact.size) {
            stats
                .entries_throttled_by_limit
                .fetch_add(1, Ordering::Relaxed);
            state.shard_stats(stream, shard).entries_throttled_by_limit += 1;
            *failure = Some(throttled(Some(shard)));
        }
    }
}

/// Counts the entries kinesalite accepted, on the shard its answer names, and those it put on
/// another shard than predicted.
fn count_accepted(
    shared: &Shared,
    stream: &str,
    facts: &[EntryFacts],
    failures: &[Option<EntryFailure>],
    upstream_records: &[Value],
) {
    let forwarded = facts
        .iter()
        .zip(failures)
        .filter(|(_, failure)| failure.is_none())
        .map(|(fact, _)| fact);
    let mut unexpected = 0;
    let mut state = shared.shard_state();
    for (fact, answer) in forwarded.zip(upstream_records) {
        if answer.get("SequenceNumber").is_none() {
            continue;
        }
        let Some(shard) = answer.get("ShardId").and_then(Value::as_str) else {
            continue;
        };
        if fact
            .shard
            .as_deref()
            .is_some_and(|predicted| predicted != shard)
        {
            unexpected += 1;
        }
        let shard_stats = state.shard_stats(stream, shard);
        shard_stats.entries_accepted += 1;
        shard_stats.bytes_accepted += fact.size;
    }
    shared
        .stats
        .entries_on_unexpected_shard
        .fetch_add(unexpected, Ordering::Relaxed);
}

/// An entry's predicted shard (against `map`) and size.
fn entry_facts(entry: &Value, map: Option<&[OpenShard]>) -> EntryFacts {
    let key = entry
        .get("PartitionKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let data_len = entry
        .get("Data")
        .and_then(Value::as_str)
        .map_or(0, base64_decoded_len);
    // The explicit hash key overrides the partition key's MD5, as on Kinesis.
    let hash_key = match entry.get("ExplicitHashKey").and_then(Value::as_str) {
        Some(explicit) => explicit.parse::<u128>().ok(),
        None => Some(md5_hash_key(key)),
    };
    let shard = map
        .zip(hash_key)
        .and_then(|(map, hash_key)| shard_of(map, hash_key))
        .map(|shard| shard.id.clone());
    EntryFacts {
        shard,
        size: (data_len + key.len()) as u64,
    }
}

/// MD5 of the partition key as a big-endian 128-bit number. Computed here rather than with the
/// proxy's own function, so a bug there cannot hide behind the same bug in the test layer.
fn md5_hash_key(partition_key: &str) -> u128 {
    use md5::{Digest, Md5};
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

/// Length of what a base64 text decodes to, without decoding it.
fn base64_decoded_len(text: &str) -> usize {
    text.trim_end_matches('=').len() * 3 / 4
}

/// The open shards of `stream`, from the cache or the upstream's ListShards; `None` when it has
/// never been loaded and cannot be (e.g. the stream does not exist: kinesalite will say so).
/// A stale map is reloaded by one request at a time; the others keep using it meanwhile.
async fn open_shards(
    shared: &Shared,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Option<Arc<Vec<OpenShard>>> {
    let cached = {
        let mut state = shared.shard_state();
        match state.maps.get_mut(stream) {
            Some(map) if map.loading || map.loaded_at.elapsed() < SHARD_MAP_MAX_AGE => {
                return Some(Arc::clone(&map.shards));
            }
            Some(map) => {
                map.loading = true;
                Some(Arc::clone(&map.shards))
            }
            None => None,
        }
    };
    let loaded = list_open_shards(kinesis, stream).await;
    let mut state = shared.shard_state();
    match loaded {
        Ok(shards) => {
            let shards = Arc::new(shards);
            state.maps.insert(
                stream.to_owned(),
                CachedMap {
                    shards: Arc::clone(&shards),
                    loaded_at: Instant::now(),
                    loading: false,
                },
            );
            Some(shards)
        }
        Err(e) => {
            eprintln!("fault proxy: {e}");
            if let Some(map) = state.maps.get_mut(stream) {
                // Try again in a second, not on every call.
                map.loading = false;
                map.loaded_at = Instant::now();
            }
            cached
        }
    }
}

/// The open shards (no ending sequence number) of `stream` by ListShards, sorted by start.
async fn list_open_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<OpenShard>, String> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // ListShards takes either the stream name or a NextToken, never both.
        let request = match next_token.take() {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| format!("ListShards {stream}: {e:?}"))?;
        for shard in page.shards() {
            let open = shard
                .sequence_number_range()
                .is_none_or(|range| range.ending_sequence_number().is_none());
            let Some(range) = shard.hash_key_range().filter(|_| open) else {
                continue;
            };
            let parse = |key: &str| {
                key.parse::<u128>()
                    .map_err(|e| format!("ListShards {stream}: hash key {key:?}: {e}"))
            };
            shards.push(OpenShard {
                id: shard.shard_id().to_owned(),
                start: parse(range.starting_hash_key())?,
                end: parse(range.ending_hash_key())?,
            });
        }
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => break,
        }
    }
    shards.sort_by_key(|s| s.start);
    Ok(shards)
}

/// A Kinesis client for the upstream (static local credentials): this proxy's own calls.
fn upstream_kinesis_client(upstream: &str) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "fault-proxy",
        ))
        .endpoint_url(upstream)
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
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
    stream_named_in(&serde_json::from_slice(body).unwrap_or(Value::Null))
}

fn stream_named_in(request: &Value) -> String {
    request
        .get("StreamName")
        .and_then(Value::as_str)
        .or_else(|| {
            request
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
