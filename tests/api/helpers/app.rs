//! Starts the real proxy on a random port, talking to kinesalite (directly or through the fault
//! proxy), each app on its own thread and runtime so it is independent of the test's runtime.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::{Credentials, SharedCredentialsProvider};
use kinesis_proxy::config::Settings;
use kinesis_proxy::startup::{Application, ShutdownHandle};

use super::emulator::{create_stream, kinesalite, unique_stream_name};

pub const API_KEY: &str = "test-api-key-0123456789";

/// A running proxy and the stream created for its test.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// kinesalite itself, for reading back what reached the stream.
    pub emulator: String,
    /// A fresh stream, ACTIVE, allowed by the proxy's allow-list.
    pub stream: String,
    pub client: reqwest::Client,
    shutdown: ShutdownHandle,
}

/// What a test can change before the app starts.
pub struct AppOptions {
    /// Where the proxy sends Kinesis calls; kinesalite when `None`.
    pub kinesis_endpoint: Option<String>,
    pub shards: i32,
    pub customize: Box<dyn FnOnce(&mut Settings) + Send>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            kinesis_endpoint: None,
            shards: 2,
            customize: Box::new(|_| {}),
        }
    }
}

/// Settings every test app starts from: loopback, one worker, test key, `it-*` streams.
pub fn test_settings(kinesis_endpoint: &str) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.server.kinesis_threads = 1;
    settings.server.shutdown_grace_ms = 10_000;
    settings.server.shutdown_delay_ms = 0;
    settings.kinesis.endpoint_url = kinesis_endpoint.to_owned();
    settings.kinesis.readiness_probe_interval_ms = 200;
    settings.kinesis.call_timeout_ms = 5_000;
    settings.streams.allow = vec!["it-*".into()];
    settings.auth.keys = vec![format!("tests:{API_KEY}")];
    settings.log.level = "warn".into();
    settings
}

/// Static credentials: no credential chain lookups (and no IMDS timeouts) in tests.
pub fn test_sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local", "local", None, None, "tests",
        )))
        .build()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-");
    create_stream(&emulator, &stream, options.shards).await;
    let endpoint = options
        .kinesis_endpoint
        .clone()
        .unwrap_or_else(|| emulator.clone());
    let mut settings = test_settings(&endpoint);
    (options.customize)(&mut settings);
    settings.validate().expect("test settings are valid");
    let (port, shutdown, _thread) = start(settings);
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        emulator,
        stream,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client"),
        shutdown,
    }
}

/// Runs an `Application` on a thread of its own; returns its port once it listens.
pub fn start(settings: Settings) -> (u16, ShutdownHandle, JoinHandle<()>) {
    kinesis_proxy::init_logging(&settings.log);
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("app runtime");
        runtime.block_on(async move {
            let app = Application::build_with_sdk_config(settings, test_sdk_config())
                .expect("app builds");
            ready_tx
                .send((app.port(), app.shutdown_handle()))
                .expect("test waits");
            app.run_until_stopped().await.expect("app runs");
        });
    });
    let (port, shutdown) = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("app started");
    (port, shutdown, thread)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `POST /kinesis/stream/{stream}` with the test key and a JSON body.
    pub async fn post_event(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/kinesis/stream/{}", self.stream)))
            .header("x-api-key", API_KEY)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST path` with the test key, a content type and a body as given.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("x-api-key", API_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Polls `/readyz` every 100 ms, up to `tries` times, until it answers `status`.
    pub async fn readiness_becomes(&self, status: u16, tries: u32) -> bool {
        for _ in 0..tries {
            let answer = self.client.get(self.url("/readyz")).send().await;
            if answer.is_ok_and(|r| r.status().as_u16() == status) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// `GET /metrics`, asserting it answers 200.
    pub async fn metrics_page(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics page")
    }

    /// `POST /kinesis/stream/{stream}/records` with a JSON `records` body.
    pub async fn post_records(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/kinesis/stream/{}/records", self.stream)))
            .header("x-api-key", API_KEY)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Tests that do not stop their app explicitly still release its port and threads.
        self.shutdown.trigger();
    }
}
