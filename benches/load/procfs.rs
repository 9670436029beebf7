//! A process's CPU time and memory from `/proc` (Linux): CPU seconds (`utime + stime` of all its
//! threads, and by thread name), resident memory now (`VmRSS`) and its peak (`VmHWM`), and a
//! sampler that follows `VmRSS` during a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Context, Error};

/// Clock ticks per second of `utime`/`stime` (100 on every Linux we know of).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds (user + system, all threads) `pid` has used so far; `None` = this process.
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64, Error> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).context(format_args!("reading {path}"))?;
    Ok(parse_stat(&stat, &path)?.1)
}

/// CPU seconds `pid`'s live threads have used so far, summed by thread name without its
/// trailing digits and spaces, so a pool counts as one ("actix-server wo", "kinesis",
/// "spool-writer"). A thread that has ended is no longer listed: the sums can fall short of
/// `cpu_seconds`.
pub fn thread_cpu_seconds(pid: u32) -> Result<BTreeMap<String, f64>, Error> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).context(format_args!("reading {dir}"))? {
        let path = entry
            .context(format_args!("reading {dir}"))?
            .path()
            .join("stat");
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (name, seconds) = parse_stat(&stat, &path.display().to_string())?;
        let pool = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ');
        *by_name.entry(pool.to_owned()).or_default() += seconds;
    }
    Ok(by_name)
}

/// `(command name, utime + stime in seconds)` from a `stat` file's text.
fn parse_stat(stat: &str, path: &str) -> Result<(String, f64), Error> {
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let (head, rest) = stat
        .rsplit_once(')')
        .context(format_args!("{path}: no ')'"))?;
    let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Result<f64, Error> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|ticks| ticks as f64)
            .context(format_args!("{path}: field {n} missing"))
    };
    Ok((name, (field(14)? + field(15)?) / clock_ticks()))
}

/// CPU seconds the whole machine has spent busy (all CPUs, all processes) since boot, from the
/// first line of `/proc/stat`: user, nice, system, irq, softirq and steal time.
pub fn machine_busy_seconds() -> Result<f64, Error> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat: no cpu line")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Ok(busy as f64 / clock_ticks())
}

/// Waits until the machine is quiet (other processes use less than `QUIET_CORES` for a whole
/// second) or `patience` has passed; returns the busy cores seen last. On a shared machine a
/// compiler running next to the benchmark would otherwise be measured as the proxy's slowness.
pub fn wait_for_quiet(patience: Duration) -> Result<f64, Error> {
    const QUIET_CORES: f64 = 0.15;
    let deadline = Instant::now() + patience;
    let mut announced = false;
    loop {
        let before = machine_busy_seconds()?;
        std::thread::sleep(Duration::from_secs(1));
        let busy = machine_busy_seconds()? - before;
        if busy < QUIET_CORES || Instant::now() >= deadline {
            if busy >= QUIET_CORES {
                eprintln!(
                    "load: the machine is still busy ({busy:.2} cores in use); measuring anyway"
                );
            }
            return Ok(busy);
        }
        if !announced {
            eprintln!("load: other processes use {busy:.2} cores; waiting up to {patience:?} for a quiet machine");
            announced = true;
        }
    }
}

/// `(VmRSS, VmHWM)` of `pid` in bytes.
pub fn memory(pid: u32) -> Result<(u64, u64), Error> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).context(format_args!("reading {path}"))?;
    let kib = |key: &str| -> Result<u64, Error> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .context(format_args!("{path}: no {key}"))
    };
    Ok((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Samples `VmRSS` of some processes (summed: several proxies count as one server) every
/// `SAMPLE_EVERY` on a thread of its own.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(f64, u64)>>,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(100);

impl RssSampler {
    pub fn start(pids: Vec<u32>) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let started = Instant::now();
                let mut samples = Vec::new();
                while !stopped.load(Ordering::Relaxed) {
                    let rss: Result<u64, Error> = pids
                        .iter()
                        .map(|pid| memory(*pid).map(|(rss, _)| rss))
                        .sum();
                    if let Ok(rss) = rss {
                        samples.push((started.elapsed().as_secs_f64(), rss));
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
                samples
            })
            .context("starting the RSS sampler")?;
        Ok(Self { stop, thread })
    }

    /// `(seconds since start, VmRSS bytes)` samples.
    pub fn finish(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
