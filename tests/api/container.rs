//! The container image, built from the top-level `Dockerfile` with podman and run as users run
//! it, so the Dockerfile cannot rot. No registry is reachable here: the bases are the local
//! Debian image `scripts/setup-containers.sh` makes, and the builder stage is handed the binary
//! this test run already compiled (`BUILDER=prebuilt`); the runtime stage is the one users get.
//!
//! Checked: the README's curl example answers 200 with a shard; `podman stop` drains and exits 0
//! within the grace, with the acknowledged event in the stream; the process runs as the image's
//! non-root user; `--version` and the image's version label match the crate; a disk-acknowledged
//! stream with its spool on a named volume survives `podman kill`, and a new container on the
//! same volume delivers what the old one acknowledged.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::app::API_KEY;
use crate::helpers::emulator::{create_stream, kinesalite, unique_stream_name};
use crate::helpers::fault_proxy::{FaultProxy, Mode};
use crate::helpers::spool::{assert_all_stored, stored_ids};

/// The image the tests build and run.
const IMAGE: &str = "localhost/kinesis-proxy:test";
/// Made by scripts/setup-containers.sh.
const BASE_IMAGE: &str = "localhost/kinesis-proxy-test-base:bookworm";
/// The runtime user of the image (distroless' `nonroot`).
const IMAGE_UID: &str = "65532";

/// `podman run` as these machines need it: runc (crun cannot set rlimits here, cgroups are
/// v1), explicit rlimits, the host's network (kinesalite and the proxy on loopback).
const RUN: [&str; 9] = [
    "run",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--network",
    "host",
];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("podman cannot be run ({e}); scripts/test.sh installs it (scripts/setup-containers.sh)")
        })
}

fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Builds the image once per test run, from the Dockerfile as shipped.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let prebuilt = format!("{root}/.prebuilt");
        std::fs::create_dir_all(&prebuilt).expect(".prebuilt");
        std::fs::copy(
            env!("CARGO_BIN_EXE_kinesis-proxy"),
            format!("{prebuilt}/kinesis-proxy"),
        )
        .expect("copy the binary into the build context");
        podman_ok(&[
            "build",
            "--quiet",
            "--build-arg",
            "BUILDER=prebuilt",
            "--build-arg",
            &format!("PREBUILT_BASE={BASE_IMAGE}"),
            "--build-arg",
            &format!("RUNTIME_IMAGE={BASE_IMAGE}"),
            "--tag",
            IMAGE,
            root,
        ]);
    });
    IMAGE
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A container that is removed when dropped, whatever the test did.
struct Container {
    name: String,
    port: u16,
}

impl Container {
    /// Runs the image detached on the host network, the proxy on a free loopback port against
    /// `endpoint`, streams `it-*`; `extra` adds `podman run` options before the image.
    fn run(endpoint: &str, extra: &[&str]) -> Container {
        let image = image();
        let name = unique_stream_name("kp-container-");
        let port = free_port();
        let listen = format!("KINESIS_PROXY__SERVER__LISTEN=127.0.0.1:{port}");
        let endpoint = format!("KINESIS_PROXY__KINESIS__ENDPOINT_URL={endpoint}");
        let keys = format!("KINESIS_PROXY__AUTH__KEYS=tests:{API_KEY}");
        let mut args = RUN.to_vec();
        args.extend([
            "--detach",
            "--name",
            &name,
            "--env",
            &listen,
            "--env",
            &endpoint,
            "--env",
            &keys,
            "--env",
            "KINESIS_PROXY__STREAMS__ALLOW=it-*",
            "--env",
            "KINESIS_PROXY__SERVER__SHUTDOWN_GRACE_MS=10000",
            "--env",
            "AWS_ACCESS_KEY_ID=local",
            "--env",
            "AWS_SECRET_ACCESS_KEY=local",
            "--env",
            "AWS_EC2_METADATA_DISABLED=true",
        ]);
        args.extend_from_slice(extra);
        args.push(image);
        podman_ok(&args);
        Container { name, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    fn logs(&self) -> String {
        let output = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Waits until `/healthz` answers (the proxy listens).
    async fn wait_until_serving(&self, client: &reqwest::Client) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if client
                .get(self.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the container never served /healthz:\n{}", self.logs());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

#[test]
fn the_image_reports_the_crate_version() {
    let image = image();
    // The entrypoint names the config file; the argument after it asks for the version.
    let run = |args: &[&str]| podman(&[&RUN[..], &["--rm"], args].concat());
    let output = run(&[image, "--version"]);
    assert!(output.status.success(), "{output:?}");
    let output = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(
        output,
        format!("kinesis-proxy {}", env!("CARGO_PKG_VERSION"))
    );
    let label = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
        image,
    ]);
    assert_eq!(
        label,
        env!("CARGO_PKG_VERSION"),
        "the Dockerfile's VERSION default follows Cargo.toml"
    );
    // The shipped configuration, with a key, passes --check inside the image.
    let check = run(&[
        "--env",
        "KINESIS_PROXY__AUTH__KEYS=ops:check-key-0123456789",
        image,
        "--check",
    ]);
    assert!(check.status.success(), "{check:?}");
    // ...and without one it is refused with EX_CONFIG, as at startup.
    let check = run(&[image, "--check"]);
    assert_eq!(check.status.code(), Some(78), "{check:?}");
}

#[tokio::test]
async fn the_container_answers_the_readme_example_runs_as_non_root_and_drains_on_podman_stop() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-container-");
    create_stream(&emulator, &stream, 4).await;
    let container = Container::run(&emulator, &[]);
    let client = reqwest::Client::new();
    container.wait_until_serving(&client).await;

    // The README's example (original route, partition key user-42).
    let response = client
        .post(container.url(&format!("/kinesis/{stream}")))
        .header("Content-Type", "application/json")
        .header("x-api-key", API_KEY)
        .body(r#"{"event": {"type": "page_view", "path": "/pricing", "user": 42, "id": "readme"}, "partition_key": "user-42"}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200, "{}", container.logs());
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["shard_id"], "shardId-000000000001", "{body}");

    // The proxy process runs as the image's non-root user.
    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == IMAGE_UID),
        "{uid_line}"
    );

    // `podman stop` sends the image's STOPSIGNAL (SIGTERM): a drain, exit 0, within the grace.
    let started = Instant::now();
    podman_ok(&["stop", "--time", "30", &container.name]);
    let took = started.elapsed();
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    assert!(
        took < Duration::from_secs(12),
        "stopped in {took:?}, past the 10 s grace"
    );
    let stored = stored_ids(&emulator, &stream).await;
    assert_eq!(stored.get("readme"), Some(&1), "{stored:?}");
}

#[tokio::test]
async fn a_disk_spool_on_a_volume_survives_podman_kill_and_a_new_container_delivers_it() {
    let emulator = kinesalite().await.endpoint.clone();
    let stream = unique_stream_name("it-container-disk-");
    create_stream(&emulator, &stream, 2).await;
    // Kinesis confirms the stream, then refuses every call while the first container runs:
    // what it acknowledges then stays in the spool.
    let faults = FaultProxy::start(&emulator);
    let volume = unique_stream_name("kp-spool-");
    podman_ok(&["volume", "create", &volume]);
    let mount = format!("{volume}:/var/lib/kinesis-proxy/spool");
    let disk = [
        "--volume",
        mount.as_str(),
        "--env",
        "KINESIS_PROXY__STREAMS__ACK_ON_DISK=it-*",
    ];

    let first = Container::run(&faults.endpoint, &disk);
    let client = reqwest::Client::new();
    first.wait_until_serving(&client).await;
    let response = client
        .post(first.url(&format!("/kinesis/stream/{stream}")))
        .header("x-api-key", API_KEY)
        .json(&json!({"event": {"id": "confirmed"}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 202, "{}", first.logs());
    let started = Instant::now();
    while !stored_ids(&emulator, &stream)
        .await
        .contains_key("confirmed")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    faults.set_mode(Mode::Refuse);
    let mut acked = Vec::new();
    for n in 0..30 {
        let id = format!("spooled-{n}");
        let response = client
            .post(first.url(&format!("/kinesis/stream/{stream}")))
            .header("x-api-key", API_KEY)
            .json(&json!({"event": {"id": id}}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 202, "{}", first.logs());
        acked.push(id);
    }
    podman_ok(&["kill", "--signal", "KILL", &first.name]);
    drop(first);
    assert_eq!(
        stored_ids(&emulator, &stream).await.len(),
        1,
        "nothing but the first event reached Kinesis before the kill"
    );

    // A new container on the same volume, Kinesis healthy: it delivers what the first one
    // acknowledged.
    let second = Container::run(&emulator, &disk);
    second.wait_until_serving(&client).await;
    let started = Instant::now();
    let mut stored = stored_ids(&emulator, &stream).await;
    while stored.len() < acked.len() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = stored_ids(&emulator, &stream).await;
    }
    assert_all_stored(&acked, &stored);
    drop(second);
    let _ = podman(&["volume", "rm", "--force", &volume]);
}
