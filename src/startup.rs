//! Builds and runs the application: binds the listener first (port 0 works, and the bound port
//! is exposed, so tests start the real app on a random port), starts the Kinesis runtime, and
//! owns the shutdown sequence.
//!
//! Shutdown (SIGTERM, SIGINT, or `ShutdownHandle::trigger`): readiness turns 503; after SIGTERM
//! the proxy keeps serving for `server.shutdown_delay_ms` (load balancers take it out of
//! rotation meanwhile; SIGINT and a second signal skip it); then new requests are refused; the listener stops and in-flight HTTP requests finish (they are waiting
//! for their acknowledgements, which keep flowing; a body still arriving must keep arriving,
//! `http::body`); then every queue drains and every in-flight call finishes, all within
//! `server.shutdown_grace_ms`. Nothing acknowledged is lost, because an acknowledgement is only
//! sent after Kinesis accepted the record, or (streams acknowledged on disk) after the spool's
//! fsync. Disk streams need no drain: the spool's feeders stop reading at once, their
//! pipelines give their records back at once (waiting briefly for calls in flight), and what
//! was not delivered stays in the spool for the next start; so with only disk streams the
//! process stops promptly even while Kinesis is unreachable.
//!
//! A second SIGTERM/SIGINT during the drain stops at once: the spool is closed (its done marks
//! synced), the events given up (acknowledged in memory, or whose clients still wait) are
//! counted in the log, and the process exits.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
use aws_config::SdkConfig;
use tokio::sync::Notify;

use crate::config::{CorsOrigins, Settings};
use crate::http::auth::ApiKeys;
use crate::http::body_budget::BodyBudget;
use crate::http::rate_limit::RateLimits;
use crate::http::schemas::Schemas;
use crate::http::tls::{Tls, TlsFiles};
use crate::http::{self, AccessLog, ApiKeyMetrics, AppState, RouteMetricsSet};
use crate::kinesis::{load_sdk_config, KinesisClients, KinesisHealth};
use crate::pipeline::{Pipelines, SpoolDelivery};
use crate::spool::{DeadLetters, Recovery, Spool};
use crate::telemetry;

pub mod reload;
mod shutdown;

use reload::{Reloader, SettingsSource};
use shutdown::{drain, reload_on_sighup, GivenUp, Signals};

pub struct Application {
    port: u16,
    server: Server,
    server_handle: ServerHandle,
    state: web::Data<AppState>,
    /// Runs the `PutRecords` calls and the readiness probe; its own runtime, so the app behaves
    /// the same whoever calls it (tests or `main`).
    kinesis_runtime: tokio::runtime::Runtime,
    shutdown: Arc<Notify>,
    /// The listener's TLS, when `[tls]` is set: reloaded on SIGHUP.
    tls: Option<Arc<Tls>>,
    /// Where SIGHUP reads the settings again (by default the ones built with, whose key file
    /// and TLS files are read again).
    settings_source: SettingsSource,
}

/// Starts a graceful shutdown from code (tests, embedding).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Notify>);

impl ShutdownHandle {
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

impl Application {
    /// Builds with the standard AWS credential chain.
    pub async fn build(settings: Settings) -> std::io::Result<Self> {
        let sdk_config = load_sdk_config(&settings.kinesis).await;
        Self::build_with_sdk_config(settings, sdk_config)
    }

    /// Builds with a given AWS configuration (tests pass static credentials).
    pub fn build_with_sdk_config(
        settings: Settings,
        sdk_config: SdkConfig,
    ) -> std::io::Result<Self> {
        let settings = Arc::new(settings);
        let addr = settings
            .listen_addr()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        // First, so a taken port fails before any thread or runtime has started.
        let listener = bind_listener(addr, settings.server.listen_backlog).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (server.listen): {e}"),
            )
        })?;
        let port = listener.local_addr()?.port();
        let tls = load_tls(&settings)?;
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let api_keys = ApiKeys::new(
            settings
                .auth
                .api_keys(&settings.streams.allow)
                .map_err(|e| invalid(e.to_string()))?,
        );
        let rate_limits = RateLimits::new(&settings, &api_keys.names());
        let schemas = Schemas::load(&settings).map_err(invalid)?;
        let trusted_proxies = settings
            .server
            .trusted_proxy_networks()
            .map_err(|e| invalid(format!("server.trusted_proxies: {e}")))?;
        if !settings.auth.required {
            tracing::warn!("auth.required = false: anyone who can reach this port can write to the allowed streams");
        }

        // Before any runtime or thread: a spool another process holds ends the start here,
        // with its reason (a runtime dropped on this error path would panic inside `main`'s).
        let spool = if settings.uses_spool() {
            Some(open_spool(&settings)?)
        } else {
            None
        };

        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let kinesis_threads = match settings.server.kinesis_threads {
            // Calls are mostly waiting; half the cores leaves the rest to the HTTP workers.
            0 => (cores / 2).max(1),
            n => n,
        };
        let kinesis_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(kinesis_threads)
            .thread_name("kinesis")
            .enable_all()
            .build()?;
        let draining = Arc::new(AtomicBool::new(false));
        let clients = KinesisClients::new(sdk_config, settings.kinesis.clone());
        let pipelines = Arc::new(Pipelines::new(
            clients.clone(),
            settings.clone(),
            kinesis_runtime.handle().clone(),
            draining.clone(),
        ));
        pipelines.spawn_reaper();
        let spool = spool.map(|(spool, recovery, dead_letters)| {
            SpoolDelivery::start(
                spool,
                &recovery,
                dead_letters,
                settings.spool.read_delay(),
                pipelines.clone(),
                kinesis_runtime.handle().clone(),
            )
        });
        let health = Arc::new(KinesisHealth::default());
        health.spawn_probe(
            kinesis_runtime.handle(),
            clients,
            settings.default_region(),
            settings.kinesis.readiness_probe_interval(),
        );
        let prometheus = telemetry::prometheus();
        // After the recorder is installed, or the handles would record nowhere.
        let key_metrics = ApiKeyMetrics::new(&api_keys.names());
        metrics::gauge!(telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let cors_on = settings.cors.origins().is_ok_and(|o| o != CorsOrigins::Off);
        let state = web::Data::new(AppState {
            default_region: settings.default_region(),
            settings: settings.clone(),
            pipelines,
            spool: spool.clone(),
            api_keys: ArcSwap::from_pointee(api_keys),
            rate_limits,
            allowed_streams: settings.allowed_streams(),
            stopping: AtomicBool::new(false),
            draining,
            health,
            prometheus,
            route_metrics: RouteMetricsSet::new(),
            access_log: AccessLog::from_setting(&settings.log.access),
            key_metrics: ArcSwap::from_pointee(key_metrics),
            openapi: http::openapi_document(http::DocumentOptions {
                auth_required: settings.auth.required,
                cors: cors_on,
            }),
            body_budget: BodyBudget::new(settings.limits.max_buffered_body_bytes),
            body_drain: tokio::sync::watch::Sender::new(false),
            schemas: ArcSwap::from_pointee(schemas),
            envelope: crate::domain::StreamPatterns::parse_all(&settings.streams.envelope)
                .unwrap_or_default(),
            trusted_proxies,
            public_key_origins: match settings.cors.origins() {
                Ok(CorsOrigins::Exact(origins)) => origins,
                _ => Vec::new(),
            },
        });

        // Histograms keep their samples until upkeep folds them in; a scrape does it too, but
        // memory must stay bounded when nobody scrapes /metrics. The process_* gauges are
        // refreshed on the same tick (and before each scrape).
        let metrics_handle = state.prometheus.clone();
        let body_budget = state.body_budget.clone();
        kinesis_runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                telemetry::collect_process_metrics();
                body_budget.publish_metrics();
                if let Some(spool) = &spool {
                    spool.publish_metrics();
                }
                metrics_handle.run_upkeep();
            }
        });
        let app_state = state.clone();
        let cors_settings = settings.cors.clone();
        let workers = match settings.server.workers {
            0 => cores,
            n => n,
        };
        let server = HttpServer::new(move || {
            use actix_web::middleware::{from_fn, Condition};
            // Innermost first: CORS (when configured) turns its refusals into JSON errors
            // (cors_json_refusals) that the access log then records like any other answer.
            let cors = http::cors_middleware(&cors_settings);
            App::new()
                .app_data(app_state.clone())
                .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
                .wrap(Condition::new(cors_on, from_fn(http::cors_json_refusals)))
                .wrap(from_fn(http::access::log_and_count))
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        })
        .workers(workers)
        .keep_alive(settings.server.keep_alive())
        .max_connections(settings.server.max_connections_per_worker)
        // Our own signal handling runs the drain sequence; actix would stop on its own.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_grace().as_secs().max(1))
        .on_connect(http::tls_client_subject);
        let server = match &tls {
            Some(tls) => match tls.server_config() {
                Ok(config) => server.listen_rustls_0_23(listener, config),
                Err(e) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e.to_string(),
                )),
            },
            None => server.listen(listener),
        };
        let server = match server {
            Ok(server) => server.run(),
            Err(error) => {
                // Dropping a runtime inside the caller's would panic.
                kinesis_runtime.shutdown_background();
                return Err(error);
            }
        };
        let server_handle = server.handle();
        tracing::info!(%addr, port, workers, kinesis_threads, tls = tls.is_some(), "listening");
        let running = settings.clone();
        Ok(Self {
            tls,
            settings_source: Arc::new(move || Ok((*running).clone())),
            port,
            server,
            server_handle,
            state,
            kinesis_runtime,
            shutdown: Arc::new(Notify::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Where SIGHUP reads the settings again (`main` passes the file and the environment).
    pub fn reload_settings_from(mut self, source: SettingsSource) -> Self {
        self.settings_source = source;
        self
    }

    /// Serves until a shutdown signal, then drains; a second signal cuts the drain short.
    /// Must be awaited on a tokio runtime.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            server_handle,
            state,
            kinesis_runtime,
            shutdown,
            tls,
            settings_source,
            ..
        } = self;
        let reloader = Arc::new(Reloader::new(settings_source, state.clone(), tls));
        let reloads = tokio::spawn(reload_on_sighup(reloader));
        // Listening from the start turns off the signals' default action (ending the process
        // at once) for the whole run, so the second signal is ours to handle too.
        let mut signals = Signals::listen();
        let mut server = tokio::spawn(server);
        // SIGTERM (an orchestrator) and a shutdown requested in code get the delay; SIGINT (a
        // person at a terminal) does not.
        let delay = tokio::select! {
            // The server ended on its own (it should not): report how.
            result = &mut server => {
                return result.map_err(std::io::Error::other)?;
            }
            name = signals.next() => {
                tracing::info!("{name} received");
                name == "SIGTERM"
            }
            () = shutdown.notified() => {
                tracing::info!("shutdown requested");
                true
            }
        };
        state.stopping.store(true, Ordering::Relaxed);
        let delay = if delay {
            state.settings.server.shutdown_delay()
        } else {
            Duration::ZERO
        };
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "stopping: readiness off, still serving until the drain (server.shutdown_delay_ms; a second SIGTERM/SIGINT skips it)"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                name = signals.next() => tracing::info!("{name} received again: skipping the delay"),
            }
        }
        let grace = state.settings.server.shutdown_grace();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: readiness off, draining (a second SIGTERM/SIGINT stops at once)"
        );
        state.draining.store(true, Ordering::Relaxed);
        // After the flag: no pipeline starts from here on, so this sees every one.
        let backlogs = state.pipelines.backlogs();
        state.body_drain.send_replace(true);
        // Disk streams need no drain: what the feeders did not hand over stays in the spool.
        if let Some(spool) = &state.spool {
            spool.stop_reading();
        }
        let drained = tokio::select! {
            () = drain(&server_handle, server, &state, grace) => true,
            name = signals.next() => {
                tracing::warn!("{name} received again: stopping now, without waiting for the drain");
                false
            }
        };
        if drained {
            // Dropping a runtime blocks; do it off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                kinesis_runtime.shutdown_timeout(Duration::from_secs(2))
            })
            .await;
            reloads.abort();
            tracing::info!("stopped");
            return Ok(());
        }
        let given_up = GivenUp::count(&backlogs);
        // What is acknowledged on disk stays there: done marks synced, files closed (the spool
        // logs how many records it keeps for the next start).
        if let Some(spool) = &state.spool {
            spool.close(Duration::from_millis(500)).await;
        }
        // The calls still out are dropped with their runtime, unanswered; the connections
        // still open (clients waiting for an answer) are closed when the process exits.
        kinesis_runtime.shutdown_background();
        tracing::warn!(
            memory_acknowledged = given_up.memory_acknowledged,
            in_flight = given_up.in_flight,
            "stopped without draining: gave up {} events acknowledged in memory (streams.ack_on_enqueue; lost) and {} in flight whose clients were waiting (they get no answer, and may retry)",
            given_up.memory_acknowledged,
            given_up.in_flight,
        );
        reloads.abort();
        Ok(())
    }
}

/// The listener's TLS from `[tls]`, or `None` for plain HTTP. A file that cannot be used stops
/// the start (an `InvalidInput` error: `main` exits 78, as for any configuration error).
fn load_tls(settings: &Settings) -> std::io::Result<Option<Arc<Tls>>> {
    if !settings.tls.enabled() {
        return Ok(None);
    }
    Tls::load(TlsFiles::of(&settings.tls))
        .map(|tls| Some(Arc::new(tls)))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
}

/// Opens the disk spool, recovering what a crash left. A spool another process holds, or one
/// that cannot be read, stops the start with the reason.
fn open_spool(settings: &Settings) -> std::io::Result<(Spool, Recovery, DeadLetters)> {
    let (spool, recovery) = Spool::open(&settings.spool).map_err(|e| {
        std::io::Error::other(format!(
            "cannot open the disk spool of streams.ack_on_disk (spool.dir = {:?}): {e}",
            settings.spool.dir
        ))
    })?;
    tracing::info!(
        dir = %settings.spool.dir,
        pending_records = recovery.pending_records,
        pending_bytes = recovery.pending_bytes,
        pending_streams = recovery.pending_by_stream.len(),
        torn_tails_cut = recovery.torn_tails_cut,
        corrupt_entries_skipped = recovery.corrupt_entries_skipped,
        segments = recovery.segments,
        "spool opened"
    );
    let dead_letters = DeadLetters::new(spool.dir(), settings.spool.failed_max_bytes);
    Ok((spool, recovery, dead_letters))
}

/// A listening socket on `addr` whose kernel queue holds `backlog` connections not yet
/// accepted. `std::net::TcpListener::bind` fixes it at 128: a burst of new connections (a
/// fleet of clients reconnecting after a deploy) then loses SYNs and waits a 1 s retransmit.
fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As actix-web and std do on Unix: a restarted proxy can bind while connections of the
    // previous one linger in TIME_WAIT. (It does not let two listeners share the port.)
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
