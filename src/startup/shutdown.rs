//! The process's signals and the end of its life: SIGTERM and SIGINT as often as they come,
//! SIGHUP as a reload for as long as the process runs, the drain, and what a stop without drain
//! gives up.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;

use super::reload::Reloader;
use crate::http::AppState;
use crate::pipeline::{Acknowledgement, Backlog};

/// The drain: stop accepting, let requests in flight finish, let the queues drain, close the
/// spool. Each step bounded by the grace period.
pub(super) async fn drain(
    server_handle: &ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    state: &AppState,
    grace: Duration,
) {
    // Stop accepting; requests in flight finish (their records are still being written).
    server_handle.stop(true).await;
    let _ = server.await;
    // No handler is left: dropping the pipelines lets each aggregator drain and end.
    let threads = state.pipelines.close();
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    });
    if tokio::time::timeout(grace + Duration::from_secs(2), joined)
        .await
        .is_err()
    {
        tracing::error!("aggregators did not stop within the grace period");
    }
    // Done marks of what the drain delivered, then the spool's files closed; what was not
    // delivered is sent by the next start.
    if let Some(spool) = &state.spool {
        spool.close(Duration::from_secs(2)).await;
    }
}

/// What a stop without drain gives up, in records, by what their clients were told. (Records
/// acknowledged on disk are not given up: the next start sends them.)
#[derive(Debug, Default)]
pub(super) struct GivenUp {
    /// Answered 202 from memory (`streams.ack_on_enqueue`): lost.
    pub(super) memory_acknowledged: usize,
    /// Their clients wait for Kinesis' answer: they get none, and may retry.
    pub(super) in_flight: usize,
}

impl GivenUp {
    pub(super) fn count(backlogs: &[Backlog]) -> Self {
        let mut given_up = Self::default();
        for backlog in backlogs {
            let records = backlog.records();
            match backlog.acknowledgement {
                Acknowledgement::Enqueue => given_up.memory_acknowledged += records,
                Acknowledgement::Kinesis => given_up.in_flight += records,
                Acknowledgement::Disk => {}
            }
        }
        given_up
    }
}

/// Reloads on every SIGHUP for the life of the process; listening turns off SIGHUP's default
/// action (ending the process) at once.
pub(super) async fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: it would end the process");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the API keys and TLS files");
            let reloader = reloader.clone();
            // Reading files blocks: off the async workers.
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
    }
}

/// SIGTERM and SIGINT (Ctrl-C), each as often as they come.
pub(super) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(super) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    None
                }
            };
            Self {
                term: listen(SignalKind::terminate(), "SIGTERM"),
                int: listen(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// The next signal's name; never resolves when neither can be listened for.
    pub(super) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                let received = match signal {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                () = recv(&mut self.term) => "SIGTERM",
                () = recv(&mut self.int) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "SIGINT",
                Err(_) => std::future::pending().await,
            }
        }
    }
}
