//! Child processes: starting them so they never outlive the benchmark, waiting for the line
//! that says they are ready, keeping the tail of their output for error messages, and
//! re-executing this binary as a helper server.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Context, Error};

/// How long a child may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a child's output kept for error messages.
const TAIL_LINES: usize = 40;

/// The last lines a child wrote, for telling why it failed.
#[derive(Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|lines| {
                lines
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

/// Makes the child get SIGTERM when this process dies, however it dies (a panic, SIGKILL), so
/// no proxy or server is left running and holding CPU after a failed run. Children are spawned
/// from the main thread, which lives as long as the process (the signal follows the thread).
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this is the
    // documented way to ask for a parent-death signal between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads `stream` line by line on a thread until `ready` recognises a line, and returns what it
/// extracted; then keeps draining (so the child never blocks on a full pipe), keeping the tail.
pub fn wait_for_ready<T: Send + 'static>(
    stream: impl Read + Send + 'static,
    tail: OutputTail,
    ready: impl Fn(&str) -> Option<T> + Send + 'static,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("child-output".into())
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(value) = ready(&line) {
                        let _ = tx.send(value);
                        sent = true;
                    }
                }
                tail.push(line);
            }
        });
    if let Err(err) = spawned {
        // Without the reader the receiver reports "disconnected", which names the failure.
        eprintln!("load: cannot start a thread to read a child's output: {err}");
    }
    rx
}

/// A child that said it is ready.
pub struct Started<T> {
    pub child: Child,
    /// What the ready line said (a port, an endpoint).
    pub ready: T,
    /// Its latest output lines, still being collected.
    pub tail: OutputTail,
}

/// Spawns `command` with stdout and stderr piped (stdin as the caller set it), dying with this
/// process, and waits up to `START_TIMEOUT` for a stdout line that `ready` recognises. If none
/// comes, stops the child and fails with what it printed; `what` names it in that message.
pub fn spawn_until_ready<T: Send + 'static>(
    command: &mut Command,
    what: &str,
    ready: impl Fn(&str) -> Option<T> + Send + 'static,
) -> Result<Started<T>, Error> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(command);
    let mut child = command.spawn().context(format_args!("starting {what}"))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let tail = OutputTail::default();
    drain(stderr, tail.clone());
    match wait_for_ready(stdout, tail.clone(), ready).recv_timeout(START_TIMEOUT) {
        Ok(ready) => Ok(Started { child, ready, tail }),
        Err(_) => {
            let status = stop(&mut child, Duration::from_secs(2));
            Err(format!(
                "{what} was not ready within {START_TIMEOUT:?} ({status}); its output:\n{}",
                tail.text()
            )
            .into())
        }
    }
}

/// Drains `stream` into `tail` on a thread.
pub fn drain(stream: impl Read + Send + 'static, tail: OutputTail) {
    let _ = wait_for_ready(stream, tail, |_| None::<()>);
}

/// Sends SIGTERM and waits up to `grace`, then SIGKILL. Returns how it ended.
pub fn stop(child: &mut Child, grace: Duration) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return format!("had already exited ({status})");
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we own and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return format!("cannot wait: {err}"),
        }
    }
    let _ = child.kill();
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    format!("killed after {grace:?} ({status})")
}

/// This binary re-executed as a helper server (`--serve-null-kinesis`, `--serve-bare`).
pub struct HelperProcess {
    pub port: u16,
    pub pid: u32,
    child: Child,
    /// The helper exits when this pipe closes (see `exit_when_stdin_closes`).
    _stdin: ChildStdin,
}

impl HelperProcess {
    pub fn spawn(args: &[String]) -> Result<Self, Error> {
        // Not `current_exe()`: a rebuild in a shared target directory may replace (delete) our
        // file while we run, and /proc/self/exe still reaches the binary we are.
        let exe = std::path::PathBuf::from("/proc/self/exe");
        let mut command = Command::new(&exe);
        command.args(args).stdin(Stdio::piped());
        let what = format!("helper {} {args:?}", exe.display());
        let mut started = spawn_until_ready(&mut command, &what, |line| {
            line.strip_prefix("READY ")?.trim().parse::<u16>().ok()
        })?;
        let stdin = started
            .child
            .stdin
            .take()
            .context("helper stdin is piped")?;
        Ok(Self {
            port: started.ready,
            pid: started.child.id(),
            child: started.child,
            _stdin: stdin,
        })
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}

/// In a helper: exit as soon as stdin closes, i.e. when the benchmark that started us drops
/// its end or dies.
pub fn exit_when_stdin_closes() {
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    if let Err(err) = spawned {
        eprintln!("cannot watch stdin ({err}); relying on the parent-death signal");
    }
}

/// Announces the helper's port to the parent (see `HelperProcess::spawn`).
pub fn announce_ready(port: u16) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {port}").context("writing READY")?;
    stdout.flush().context("flushing READY")
}
