//! Command line: which mode this process runs in (benchmark, smoke test, or one of the helper
//! servers it re-executes itself as) and the benchmark's options.

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: cargo bench --bench load -- [options] [FILTER...]
  --scenario NAME[,NAME]  scenarios to run (repeatable); `all` (default) runs every one
  --duration SECS         measured window of each scenario (default 10; overload: 1.5x)
  --warmup SECS           load before the window opens (default 1)
  --connections N         keep-alive connections of every scenario (default: per scenario)
  --client-threads N      load generator threads (default: CPU cores)
  --set SECTION.KEY=VALUE proxy setting for every scenario, as KINESIS_PROXY__SECTION__KEY
                          (repeatable; applied after the scenario's own settings)
  --wait-quiet SECS       before each run, wait up to this long until other processes use
                          < 0.15 cores (default 120; 0 = do not wait)
  --reruns N              run a scenario again, up to N times, when other processes used more
                          than 0.1 cores during its window; the least disturbed run counts
                          (default 2)
  --scrape-every SECS     GET the proxy's /metrics this often during a run, as Prometheus would
                          (default 15; 0 = only at the window's start and end)
  --report PATH           JSON report (default: target/load-report.json)
  --strict                exit 1 when a target is missed
  --perf                  record a `perf` profile of the proxy over each scenario's window
                          into target/load-perf-<scenario>.data (slows the proxy a little)
  --list                  list the scenarios and exit
  FILTER                  run only scenarios whose name contains FILTER (as `cargo bench FILTER`)
Without --bench or --scenario (as under `cargo test --all-targets`) a smoke test runs instead.";

/// What this process does.
#[derive(Debug)]
pub enum Mode {
    Help,
    List,
    /// The full benchmark (`cargo bench`).
    Bench(Options),
    /// A few seconds proving the machinery works (`cargo test --all-targets`).
    Smoke(Options),
    /// Helper process: the do-nothing Kinesis endpoint, answering PutRecords after `delay`;
    /// with `shards`, it lists that many shards and places records on them as Kinesis would.
    ServeNullKinesis {
        delay: Duration,
        shards: Option<u32>,
    },
    /// Helper process: the bare actix-web handler (the ceiling) with `workers` workers.
    ServeBare {
        workers: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Scenario names; empty = all.
    pub scenarios: Vec<String>,
    /// Substrings of scenario names (positional arguments); empty = no filter.
    pub filters: Vec<String>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Overrides every scenario's connection count.
    pub connections: Option<usize>,
    pub client_threads: usize,
    /// `(section.key, value)` proxy settings from `--set`.
    pub sets: Vec<(String, String)>,
    pub report: PathBuf,
    pub strict: bool,
    /// How long to wait for other processes to go quiet before each run.
    pub wait_quiet: Duration,
    /// Extra runs of a disturbed scenario.
    pub reruns: u32,
    /// Profile the proxy with `perf record` during each window.
    pub perf: bool,
    /// Scrape `/metrics` this often during a run (`None`: only around the window).
    pub scrape_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenarios: Vec::new(),
            filters: Vec::new(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: None,
            client_threads: cores(),
            sets: Vec::new(),
            report: default_report_path(),
            strict: false,
            wait_quiet: Duration::from_secs(120),
            reruns: 2,
            perf: false,
            scrape_every: Some(Duration::from_secs(15)),
        }
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `target/load-report.json`, in the target directory this binary was built into (which may be
/// a shared `CARGO_TARGET_DIR`): `CARGO_TARGET_TMPDIR` is `<target>/tmp`.
fn default_report_path() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("load-report.json")
}

pub fn parse(args: Vec<String>) -> Result<Mode, String> {
    let mut args = args.into_iter();
    let mut options = Options::default();
    // `cargo bench` passes `--bench`; `cargo test` does not. `--scenario` also asks for the
    // benchmark, so the binary can be run by hand.
    let mut bench = false;
    // Arguments the libtest harness would take (`cargo test -- --nocapture`): the smoke test
    // ignores them, the benchmark refuses them.
    let mut unknown = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--serve-null-kinesis" => {
                let mut delay = Duration::ZERO;
                let mut shards = None;
                while let Some(flag) = args.next() {
                    let given = args.next().ok_or(format!("{flag} needs a value"))?;
                    match flag.as_str() {
                        "--delay-ms" => {
                            delay = Duration::from_millis(number("--delay-ms", &given)?);
                        }
                        "--shards" => shards = Some(number("--shards", &given)?),
                        _ => return Err(format!("--serve-null-kinesis: unexpected {flag:?}")),
                    }
                }
                return Ok(Mode::ServeNullKinesis { delay, shards });
            }
            "--serve-bare" => {
                let workers = args.next().ok_or("--serve-bare needs a worker count")?;
                let workers = number("--serve-bare", &workers)?;
                return Ok(Mode::ServeBare { workers });
            }
            "--help" | "-h" => return Ok(Mode::Help),
            "--list" => return Ok(Mode::List),
            "--bench" => bench = true,
            "--strict" => options.strict = true,
            "--perf" => options.perf = true,
            "--scenario" => {
                bench = true;
                let names = value("--scenario")?;
                for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name != "all" {
                        options.scenarios.push(name.to_owned());
                    }
                }
            }
            "--duration" => options.duration = seconds("--duration", &value("--duration")?)?,
            "--warmup" => options.warmup = seconds("--warmup", &value("--warmup")?)?,
            "--connections" => {
                let n: usize = number("--connections", &value("--connections")?)?;
                if n == 0 {
                    return Err("--connections must be at least 1".into());
                }
                options.connections = Some(n);
            }
            "--client-threads" => {
                let n: usize = number("--client-threads", &value("--client-threads")?)?;
                options.client_threads = n.max(1);
            }
            "--set" => {
                let setting = value("--set")?;
                let (key, val) = setting
                    .split_once('=')
                    .ok_or(format!("--set wants SECTION.KEY=VALUE, got {setting:?}"))?;
                let key = key.trim();
                if key.split('.').count() != 2 || key.split('.').any(str::is_empty) {
                    return Err(format!("--set wants SECTION.KEY=VALUE, got {setting:?}"));
                }
                options.sets.push((key.to_owned(), val.to_owned()));
            }
            "--report" => options.report = PathBuf::from(value("--report")?),
            "--scrape-every" => {
                let secs = seconds_or_zero("--scrape-every", &value("--scrape-every")?)?;
                options.scrape_every = (!secs.is_zero()).then_some(secs);
            }
            "--reruns" => options.reruns = number("--reruns", &value("--reruns")?)?,
            "--wait-quiet" => {
                let secs: u64 = number("--wait-quiet", &value("--wait-quiet")?)?;
                options.wait_quiet = Duration::from_secs(secs);
            }
            other if other.starts_with('-') => unknown.push(other.to_owned()),
            filter => options.filters.push(filter.to_owned()),
        }
    }
    if bench {
        if let Some(arg) = unknown.first() {
            return Err(format!("unknown option {arg:?}"));
        }
        Ok(Mode::Bench(options))
    } else {
        Ok(Mode::Smoke(options))
    }
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{name}: {text:?} is not a whole number"))
}

fn seconds(name: &str, text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{name} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn seconds_or_zero(name: &str, text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    seconds(name, text)
}

/// `section.key` as the proxy's environment variable name.
pub fn env_name(key: &str) -> String {
    format!(
        "KINESIS_PROXY__{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}
