//! The Grafana dashboard (`grafana/kinesis-proxy.json`) against the metrics the proxy really
//! exports, so the two cannot drift apart: a real Prometheus scrapes a real proxy that gets
//! valid, throttled, failing and invalid traffic, and every query of the dashboard must parse
//! and return data. And the other way round: every `kinesis_proxy_*` metric the proxy exported
//! during the test must be shown by some panel.
//!
//! Also checks the dashboard's shape, what Grafana needs to import it anywhere: a `datasource`
//! variable of type `datasource` that every panel and query uses, the `region` and `stream`
//! variables (a stream written in two regions is two pipelines: never one line), unique panel
//! ids.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, AppOptions, TestApp, API_KEY};
use crate::helpers::emulator::{create_stream, kinesalite, unique_stream_name};
use crate::helpers::fault_proxy::FaultProxy;
use crate::helpers::prometheus::{prometheus_version, Prometheus, QueryResult};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/kinesis-proxy.json");

/// What `$__rate_interval` becomes. Grafana makes it at least 4 scrape intervals; a little more
/// keeps rates defined when a scrape is late on a busy machine.
const RATE_INTERVAL: &str = "10s";

/// How long the dashboard's queries may take to all return data once Prometheus has scraped
/// the proxy (rates need two scrapes of a series; a series appears with its first event).
const DATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Entries whose data holds this are throttled once by the fault proxy, then accepted: retries,
/// failed entries and `partial` calls.
const THROTTLED_ONCE: &str = "throttle-once";

/// Entries whose data holds this always fail: records failed at their deadline.
const DOOMED: &str = "doomed";

/// Entries whose data holds this are refused for good (a KMS refusal): on the disk stream,
/// records the spool drops as finally failed.
const REFUSED: &str = "refused-for-good";

const JOB: &str = "kinesis-proxy";

/// Events holding this field violate the test streams' JSON Schema (schema violations panel).
const OFF_SCHEMA: &str = "off_schema";

fn load_dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("read grafana/kinesis-proxy.json");
    serde_json::from_str(&text).expect("grafana/kinesis-proxy.json is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One PromQL query of the dashboard: where it is and what it says.
struct Query {
    /// `panel title / refId`, for messages.
    at: String,
    expr: String,
}

fn queries(dashboard: &Value) -> Vec<Query> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |target| {
                    Some(Query {
                        at: format!("{title} / {}", target["refId"].as_str().unwrap_or("?")),
                        expr: target["expr"].as_str()?.to_owned(),
                    })
                })
        })
        .collect()
}

/// The query Grafana would send with every stream selected and a 1 s scrape interval.
fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${stream}", ".*")
        .replace("$stream", ".*")
        .replace("${region}", ".*")
        .replace("$region", ".*");
    assert!(
        !expr.contains('$'),
        "a dashboard query uses a variable this test does not substitute: {expr}"
    );
    expr
}

#[test]
fn dashboard_is_importable_with_a_datasource_variable() {
    let dashboard = load_dashboard();
    assert!(dashboard["id"].is_null(), "id must be null to import");
    assert_eq!(dashboard["uid"], "kinesis-proxy");
    assert!(
        dashboard["schemaVersion"].as_u64().expect("schemaVersion") >= 36,
        "datasource uids in panels need schemaVersion 36 or later"
    );

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for label in ["region", "stream"] {
        let filter = variable(label);
        assert_eq!(filter["type"], "query");
        assert_eq!(filter["multi"], true);
        assert_eq!(filter["includeAll"], true);
        assert_eq!(
            filter["allValue"], ".*",
            "All as one regex, not a list of every {label}"
        );
        assert_eq!(filter["datasource"]["uid"], "${datasource}");
        assert_eq!(
            filter["definition"],
            format!("label_values(kinesis_proxy_records_accepted_total, {label})")
        );
    }

    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"].as_u64().expect("every panel has an id");
        assert!(ids.insert(id), "panel id {id} ({title}) is not unique");
        for key in ["h", "w", "x", "y"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "{title}: gridPos.{key} missing"
            );
        }
        if panel["type"] == "row" {
            continue;
        }
        graphs += 1;
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: panel datasource"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{title}: query datasource"
            );
            let ref_id = target["refId"].as_str().expect("refId");
            assert!(ref_ids.insert(ref_id), "{title}: refId {ref_id} twice");
            let expr = target["expr"].as_str().expect("expr");
            assert!(
                !expr.contains("$stream") || expr.contains("region=~\"$region\""),
                "{title}: filtered by stream but not by region: {expr}"
            );
            assert!(
                !expr.contains("stream)") || expr.contains("region, stream)"),
                "{title}: one line per stream merges its regions; group by (region, stream): {expr}"
            );
            if expr.contains("rate(") {
                assert!(
                    expr.contains("[$__rate_interval]"),
                    "{title}: rate() over $__rate_interval: {expr}"
                );
            }
        }
    }
    assert!(graphs >= 15, "only {graphs} panels");
}

/// Sends the test's traffic until `stop`: valid single and batch events (some throttled once),
/// a record that always fails, and refused requests. Counts the answers by status.
async fn traffic(app: Arc<TestApp>, stop: Arc<AtomicBool>, statuses: Arc<StatusCounts>) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let records: Vec<Value> = (0..20)
            .map(|i| {
                // Unique data per round: the fault proxy throttles each distinct value once.
                let tag = if i % 10 == 0 { THROTTLED_ONCE } else { "plain" };
                json!({"event": {"round": round, "i": i, "tag": tag}})
            })
            .collect();
        let batch_body = json!({ "records": records });
        let single_body = json!({"event": {"round": round, "kind": "single"}});
        let off_schema_body = json!({"event": {OFF_SCHEMA: true}});
        let stream_url = app.url(&format!("/kinesis/stream/{}", app.stream));
        let short_url = app.url(&format!("/kinesis/{}", app.stream));
        let (batch, single, short, bad_json, no_key, not_allowed, off_schema) = tokio::join!(
            app.post_records(&batch_body),
            app.post_event(&single_body),
            app.client
                .post(&short_url)
                .header("x-api-key", API_KEY)
                .json(&json!({"event": {"round": round, "kind": "short"}}))
                .send(),
            app.client
                .post(&stream_url)
                .header("x-api-key", API_KEY)
                .header("content-type", "application/json")
                .body("{\"event\": ")
                .send(),
            app.client
                .post(&stream_url)
                .json(&json!({"event": 1}))
                .send(),
            app.client
                .post(app.url("/kinesis/stream/not-allowed-by-the-test"))
                .header("x-api-key", API_KEY)
                .json(&json!({"event": 1}))
                .send(),
            // Refused by the streams' schema (`OFF_SCHEMA`).
            app.post_event(&off_schema_body),
        );
        for response in [
            Ok(batch),
            Ok(single),
            short,
            bad_json,
            no_key,
            not_allowed,
            Ok(off_schema),
        ] {
            let status = response.expect("request answered").status().as_u16();
            statuses.count(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record that always fails, one after the other until `stop`: each is answered at its
/// deadline, so this runs on its own.
async fn doomed_traffic(app: Arc<TestApp>, stop: Arc<AtomicBool>, statuses: Arc<StatusCounts>) {
    while !stop.load(Ordering::Relaxed) {
        let response = app.post_event(&json!({"event": {"tag": DOOMED}})).await;
        statuses.count(response.status().as_u16());
    }
}

/// Events to the disk stream until `stop`: delivered ones, ones Kinesis keeps throttling (sent
/// again after each deadline) and ones it refuses for good (dropped from the spool).
async fn disk_traffic(
    app: Arc<TestApp>,
    stream: String,
    stop: Arc<AtomicBool>,
    statuses: Arc<StatusCounts>,
) {
    let url = app.url(&format!("/kinesis/stream/{stream}/records"));
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let records: Vec<Value> = ["plain", DOOMED, REFUSED]
            .iter()
            .map(|tag| json!({"event": {"round": round, "tag": tag}}))
            .collect();
        let response = app
            .client
            .post(&url)
            .header("x-api-key", API_KEY)
            .json(&json!({ "records": records }))
            .send()
            .await
            .expect("disk request answered");
        statuses.count(response.status().as_u16());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default)]
struct StatusCounts {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
}

impl StatusCounts {
    fn count(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.ok,
            400..=499 => &self.client_errors,
            _ => &self.server_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `kinesis_proxy_*` metric families in a `/metrics` page (histogram series folded into their
/// family: `_bucket`, `_sum`, `_count`).
fn exported_families(page: &str) -> BTreeSet<String> {
    let mut families = BTreeSet::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let name = line
            .split(|c: char| c == '{' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        if !name.starts_with("kinesis_proxy_") {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        families.insert(family.to_owned());
    }
    families
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let started = Instant::now();
    let dashboard = load_dashboard();
    let queries = queries(&dashboard);
    assert!(!queries.is_empty(), "the dashboard has no queries");

    let emulator = kinesalite().await.endpoint.clone();
    let faults = FaultProxy::start(&emulator);
    faults.throttle_matching(THROTTLED_ONCE, 1);
    faults.always_fail_matching(DOOMED, "ProvisionedThroughputExceededException");
    faults.always_fail_matching(REFUSED, "KMSAccessDeniedException");
    // A second stream, acknowledged on disk, for the spool's panels.
    let disk_stream = unique_stream_name("it-disk");
    create_stream(&emulator, &disk_stream, 1).await;
    let spool_dir = tempfile::tempdir().expect("spool dir");
    let dir = spool_dir.path().to_string_lossy().into_owned();
    // Every event is valid except those with an `OFF_SCHEMA` field.
    let schema_dir = tempfile::tempdir().expect("schema dir");
    let schema = schema_dir.path().join("schema.json");
    std::fs::write(
        &schema,
        json!({"not": {"required": [OFF_SCHEMA]}}).to_string(),
    )
    .expect("write the schema");
    let schema = format!("it-*:{}", schema.display());
    let app = Arc::new(
        spawn_app_with(AppOptions {
            kinesis_endpoint: Some(faults.endpoint.clone()),
            customize: Box::new(move |s| {
                s.streams.ack_on_disk = vec!["it-disk-*".into()];
                s.spool.dir = dir;
                s.streams.schemas = vec![schema];
                // Short, so the doomed records fail often; long enough for a once-throttled
                // record to be retried in time on a busy machine.
                s.retry.record_deadline_ms = 1_000;
                s.retry.backoff_base_ms = 10;
                s.retry.backoff_max_ms = 100;
            }),
            ..AppOptions::default()
        })
        .await,
    );

    // An app serving TLS, for the certificate-expiry panel: apps in this process share one
    // metrics recorder, so the main app's /metrics shows its gauge too.
    let tls_dir = tempfile::tempdir().expect("tls dir");
    let (cert_file, key_file) = self_signed_certificate(tls_dir.path());
    let _tls_app = spawn_app_with(AppOptions {
        customize: Box::new(move |s| {
            s.tls.cert_file = cert_file;
            s.tls.key_file = key_file;
        }),
        ..AppOptions::default()
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(StatusCounts::default());
    let senders = [
        tokio::spawn(traffic(app.clone(), stop.clone(), statuses.clone())),
        tokio::spawn(doomed_traffic(app.clone(), stop.clone(), statuses.clone())),
        tokio::spawn(disk_traffic(
            app.clone(),
            disk_stream,
            stop.clone(),
            statuses.clone(),
        )),
    ];

    let target = app
        .address
        .strip_prefix("http://")
        .expect("app address is http://host:port")
        .to_owned();
    let prometheus = Prometheus::start(JOB, std::slice::from_ref(&target)).await;
    prometheus
        .wait_scraped(JOB, 1, Duration::from_secs(20))
        .await;

    // Evaluate everything until all queries return data, or report every one that does not.
    let deadline = Instant::now() + DATA_TIMEOUT;
    let failures = loop {
        let mut failures = Vec::new();
        for query in &queries {
            let expr = substitute(&query.expr);
            match prometheus.query(&expr).await {
                QueryResult::Error(e) => {
                    failures.push(format!("{}: error {e}\n    {expr}", query.at))
                }
                QueryResult::Samples(s) if s.is_empty() => {
                    failures.push(format!("{}: no data\n    {expr}", query.at))
                }
                QueryResult::Samples(s) if s.iter().all(|v| v.is_nan()) => {
                    failures.push(format!("{}: only NaN\n    {expr}", query.at))
                }
                QueryResult::Samples(_) => {}
            }
        }
        if failures.is_empty() || Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // The variables list the test's stream and region, as Grafana's label_values() would.
    let streams = prometheus
        .label_values("stream", "kinesis_proxy_records_accepted_total")
        .await
        .expect("label values of stream");
    let regions = prometheus
        .label_values("region", "kinesis_proxy_records_accepted_total")
        .await
        .expect("label values of region");

    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.expect("traffic task");
    }
    let page = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics page");

    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed against {} (RATE_INTERVAL {RATE_INTERVAL}, \
         $stream = .*):\n  {}\nprometheus log:\n{}",
        failures.len(),
        queries.len(),
        prometheus_version(),
        failures.join("\n  "),
        prometheus.log()
    );
    assert!(
        streams.contains(&app.stream),
        "stream variable values {streams:?} lack {}",
        app.stream
    );
    assert!(
        regions.iter().any(|r| r == "us-west-2"),
        "region variable values {regions:?} lack us-west-2"
    );

    // Every metric family the proxy exported is on some panel.
    let exported = exported_families(&page);
    assert!(
        exported.contains(kinesis_proxy::telemetry::RECORDS_ACCEPTED),
        "could not read metric families from /metrics: {exported:?}"
    );
    let shown: String = queries.iter().map(|q| q.expr.as_str()).collect();
    let missing: Vec<String> = exported
        .into_iter()
        .filter(|family| !shown.contains(family.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics exported by the proxy but on no panel of grafana/kinesis-proxy.json: {missing:?}"
    );

    // The traffic was what the panels are meant to show.
    assert!(statuses.ok.load(Ordering::Relaxed) > 0, "no event accepted");
    assert!(
        statuses.client_errors.load(Ordering::Relaxed) > 0,
        "nothing rejected"
    );
    assert!(
        statuses.server_errors.load(Ordering::Relaxed) > 0,
        "no record failed"
    );
    let stats = faults.stats();
    assert!(stats.entries_failed_injected > 0, "{stats:?}");
    eprintln!(
        "dashboard: {} queries returned data from {} in {:.1?}",
        queries.len(),
        prometheus_version(),
        started.elapsed()
    );
}

/// A self-signed certificate for `localhost` and its key, written to `dir`: their paths.
fn self_signed_certificate(dir: &std::path::Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, certificate.pem()).expect("write cert");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    (
        cert_file.to_string_lossy().into_owned(),
        key_file.to_string_lossy().into_owned(),
    )
}
