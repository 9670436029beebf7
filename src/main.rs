//! The `kinesis-proxy` binary: reads the configuration (`--config PATH`, default `config.toml`
//! when present, then `KINESIS_PROXY__*` environment variables), then serves until SIGTERM/SIGINT.
//! `--check` only loads and validates the configuration: what a systemd `ExecStartPre`/
//! `ExecReload`, a container build and CI run, so a broken file never replaces a good one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use kinesis_proxy::config::Settings;
use kinesis_proxy::http::schemas::Schemas;
use kinesis_proxy::http::tls::{Tls, TlsFiles};
use kinesis_proxy::startup::Application;

// Real line breaks, not `\n\` continuations, which would eat the indentation.
const USAGE: &str = "usage: kinesis-proxy [--config PATH] [--check]
  -c, --config PATH  settings file (default: ./config.toml if it exists, else built-in defaults)
      --check        load and validate the configuration (file and environment), then exit:
                     0 when valid, 78 (EX_CONFIG) with the reason when not; binds nothing and
                     calls no AWS API
  -h, --help         print this help and exit
  -V, --version      print the version and exit
Environment variables KINESIS_PROXY__<SECTION>__<KEY> override any setting.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Serve, with the settings file to read (if any).
    Serve(Option<PathBuf>),
    /// Validate the settings file (if any) and the environment, then exit.
    Check(Option<PathBuf>),
    Help,
    Version,
}

fn main() -> ExitCode {
    let config_path = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(path)) => path,
        Ok(Command::Check(path)) => return check(path.as_deref()),
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("kinesis-proxy {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("kinesis-proxy: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(config_path.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("kinesis-proxy: configuration error: {err}");
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    kinesis_proxy::init_logging(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kinesis-proxy: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP reads the same file and environment again.
    let reload_path = config_path.clone();
    let result = runtime.block_on(async {
        let app = Application::build(settings)
            .await?
            .reload_settings_from(Arc::new(move || Settings::load(reload_path.as_deref())));
        app.run_until_stopped().await
    });
    // A stop without drain (a second signal) leaves blocking tasks behind (joining aggregator
    // threads that are still waiting for Kinesis); dropping the runtime would wait for them.
    runtime.shutdown_background();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        // A setting whose files cannot be used (a TLS certificate): a configuration error.
        Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {
            tracing::error!(error = %err, "kinesis-proxy: configuration error");
            eprintln!("kinesis-proxy: configuration error: {err}");
            ExitCode::from(78)
        }
        Err(err) => {
            tracing::error!(error = %err, "kinesis-proxy failed");
            eprintln!("kinesis-proxy: {err}");
            ExitCode::FAILURE
        }
    };
    kinesis_proxy::flush_logs();
    code
}

/// `--check`: the configuration as `serve` would load it, validated, and nothing started.
fn check(path: Option<&std::path::Path>) -> ExitCode {
    let shown = path.map_or("built-in defaults".into(), |p| p.display().to_string());
    let loaded = Settings::load(path)
        .map_err(|e| e.to_string())
        .and_then(|settings| {
            // The files the settings name, as the start would read them.
            if settings.tls.enabled() {
                Tls::load(TlsFiles::of(&settings.tls)).map_err(|e| e.to_string())?;
            }
            Schemas::load(&settings)?;
            Ok(settings)
        });
    match loaded {
        Ok(_) => {
            println!("kinesis-proxy: configuration OK ({shown} and the environment)");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("kinesis-proxy: configuration error: {err}");
            ExitCode::from(78)
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut path = None;
    let mut check_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                let value = args.next().ok_or("--config needs a path")?;
                path = Some(PathBuf::from(value));
            }
            "--check" => check_only = true,
            "--help" | "-h" => return Ok(Command::Help),
            "--version" | "-V" => return Ok(Command::Version),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if path.is_none() {
        let default = PathBuf::from("config.toml");
        if default.exists() {
            path = Some(default);
        }
    }
    Ok(if check_only {
        Command::Check(path)
    } else {
        Command::Serve(path)
    })
}
