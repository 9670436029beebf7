//! What a TLS or reload scenario (issue 19) adds to one run: the run's certificates and the
//! transport that trusts them, the API key in a file (`auth.keys_file`) so a reload re-reads
//! one, the SIGHUPs sent to the proxy through the window, and the reloads the proxy counted for
//! them (`kinesis_proxy_config_reloads_total`), read from `/metrics` once it has handled them.
//!
//! Setting up and observing only: `run.rs` carries out the run, `bench.rs` compares it with its
//! reference, and `judge.rs` checks the figures.

use std::time::{Duration, Instant};

use kinesis_proxy::telemetry::CONFIG_RELOADS;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::catalogue::Lifecycle;
use crate::loadgen::LoadResult;
use crate::prometheus::Scrape;
use crate::proxy_process::{ProxyProcess, API_KEY};
use crate::report::{LifecycleFigures, ReloadFigures};
use crate::tls::{self, RunCertificates, Transport};
use crate::{Context, Error};

/// How long the proxy may take to count the reloads of the signals sent (each reads a few
/// small files on a blocking thread: milliseconds).
const RELOADS_TIMEOUT: Duration = Duration::from_secs(10);

/// The files and transport of one run; the files are removed when this is dropped, after the
/// proxy has stopped.
pub(super) struct LifecycleRun {
    _certificates: Option<RunCertificates>,
    _keys_dir: Option<tempfile::TempDir>,
    /// The proxy's settings for these files: `(KINESIS_PROXY__..., value)`.
    pub(super) env: Vec<(String, String)>,
    pub(super) transport: Transport,
}

impl LifecycleRun {
    /// Makes the certificates and the key file `lifecycle` asks for (none for a plain run).
    pub(super) fn prepare(lifecycle: &Lifecycle) -> Result<Self, Error> {
        let mut env = Vec::new();
        let certificates = lifecycle.tls.then(RunCertificates::create).transpose()?;
        let transport = match &certificates {
            Some(certificates) => {
                env.extend(certificates.env());
                certificates.transport()?
            }
            None => Transport::Plain,
        };
        let keys_dir = if lifecycle.keys_file {
            let dir = tempfile::Builder::new()
                .prefix("load-keys-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .context("creating a folder for the key file under target/tmp")?;
            let path = dir.path().join("api-keys");
            std::fs::write(
                &path,
                format!("# the load benchmark's key\nbench:{API_KEY}\n"),
            )
            .context("writing the key file")?;
            // The key only in the file: a reload that lost it would turn the load into 401s.
            env.push(("KINESIS_PROXY__AUTH__KEYS".into(), String::new()));
            env.push((
                "KINESIS_PROXY__AUTH__KEYS_FILE".into(),
                path.display().to_string(),
            ));
            Some(dir)
        } else {
            None
        };
        Ok(Self {
            _certificates: certificates,
            _keys_dir: keys_dir,
            env,
            transport,
        })
    }

    /// What a TLS connection to the proxy on `port` negotiates (`None` for plain HTTP).
    pub(super) async fn negotiated(&self, port: u16) -> Result<Option<String>, Error> {
        match &self.transport {
            Transport::Plain => Ok(None),
            Transport::Tls(config) => tls::negotiated(config, port).await.map(Some),
        }
    }
}

/// SIGHUP to the proxies every `every`, from `every` after the start until stopped.
pub(super) struct Hangups {
    every: Duration,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<u64, Error>>,
}

impl Hangups {
    pub(super) fn start(pids: Vec<u32>, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut sent = 0;
            let mut next = tokio::time::Instant::now() + every;
            loop {
                tokio::select! {
                    // The window is over (or the run was dropped).
                    _ = &mut stopped => return Ok(sent),
                    // Time for the next signal.
                    () = tokio::time::sleep_until(next) => {
                        for &pid in &pids {
                            hangup(pid)?;
                        }
                        sent += 1;
                        next += every;
                    }
                }
            }
        });
        Self { every, stop, task }
    }

    /// Stops sending; the number of signals each proxy was sent.
    pub(super) async fn stop(self) -> Result<(u64, Duration), Error> {
        let _ = self.stop.send(());
        let sent = self.task.await.context("the SIGHUP sender")??;
        Ok((sent, self.every))
    }
}

fn hangup(pid: u32) -> Result<(), Error> {
    let pid = i32::try_from(pid).context("a proxy's pid")?;
    // SAFETY: kill(2) on our own child, not yet reaped (the proxy runs until the run stops it).
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(format!(
            "SIGHUP to the proxy ({pid}): {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}

/// The reloads the proxies counted since `before` (the window's start), once they have
/// handled all `sent` signals each (or `RELOADS_TIMEOUT` has passed: the figures then show
/// how many were missing).
pub(super) async fn reload_figures(
    proxies: &[ProxyProcess],
    before: Option<&Scrape>,
    (sent, every): (u64, Duration),
) -> Result<ReloadFigures, Error> {
    let before = before.context("no /metrics at the window's start")?;
    let counted = |scrape: &Scrape, result: &str| {
        scrape.sum(CONFIG_RELOADS, &[("result", result)])
            - before.sum(CONFIG_RELOADS, &[("result", result)])
    };
    let expected = (sent * proxies.len() as u64) as f64;
    let deadline = Instant::now() + RELOADS_TIMEOUT;
    loop {
        let mut scrapes = Vec::with_capacity(proxies.len());
        for proxy in proxies {
            scrapes.push(Scrape::parse(&proxy.metrics().await?));
        }
        let now = Scrape::combine(scrapes);
        let (ok, failed) = (counted(&now, "ok"), counted(&now, "error"));
        if ok + failed >= expected || Instant::now() >= deadline {
            return Ok(ReloadFigures {
                every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
                signals_sent: sent,
                reloads_ok: ok,
                reloads_failed: failed,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run's figures for the report (`None` for a plain keep-alive run without signals); the
/// reference is added by `bench.rs`.
pub(super) fn figures(
    lifecycle: &Lifecycle,
    tls_negotiated: Option<String>,
    reload: Option<ReloadFigures>,
    result: &LoadResult,
) -> Option<LifecycleFigures> {
    if *lifecycle == Lifecycle::PLAIN {
        return None;
    }
    Some(LifecycleFigures {
        transport: if lifecycle.tls { "tls" } else { "plain" }.into(),
        tls_negotiated,
        connections: if lifecycle.connection_per_request {
            "per request"
        } else {
            "keep-alive"
        }
        .into(),
        handshakes_per_sec: lifecycle
            .connection_per_request
            .then(|| result.requests_per_sec()),
        requests_sent: result.sent_total,
        connections_opened: result.connections_opened,
        reload,
        reference: None,
        events_ratio: None,
        p99_ratio: None,
    })
}
