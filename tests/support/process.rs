//! Child processes and their run directories: finding peer binaries,
//! signalling a child by its own PID, stopping it with a grace period, and
//! running a command with a time limit.
//!
//! Signals are sent with `kill(1)` (package procps) and the child's PID: the
//! workspace forbids `unsafe`, and nothing here ever selects processes by
//! name.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set this environment variable to keep peers' run directories (logs,
/// traces) after the tests, for a look at them.
pub(crate) const KEEP_RUNDIR_ENV: &str = "SIPCHECK_KEEP_RUNDIR";

/// The Debian packages CI installs for the peers, as one install command.
pub(crate) const INSTALL_HINT: &str =
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
     --no-install-recommends sip-tester kamailio kamailio-extra-modules kamailio-utils-modules \
     baresip-core linphone-cli rtpengine-daemon tshark sox iproute2 iptables procps (as CI's .ci/run does)";

/// The full path of the program `name`, searched in `PATH` and then in the
/// sbin directories (`kamailio` lives in /usr/sbin, which a non-root `PATH`
/// may lack). Errors, saying which Debian package to install, if absent.
pub(crate) fn require_program(name: &str, debian_package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "`{name}` is not installed: the integration tests need the real peer. Install Debian \
         package `{debian_package}`, e.g. with: {INSTALL_HINT}"
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A fresh directory for one peer's files, removed on drop unless
/// [`KEEP_RUNDIR_ENV`] is set. Kept short: Kamailio's control socket (a unix
/// socket path, at most 107 bytes) lives in it.
#[derive(Debug)]
pub(crate) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `$TMPDIR/sipcheck-LABEL-PID-N-NANOS`.
    pub(crate) fn new(label: &str) -> io::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sipcheck-{label}-{}-{n}-{nanos:x}",
            std::process::id()
        ));
        fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A file in the directory.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_RUNDIR_ENV).is_some() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Reads a file as text (lossy), or says why it could not.
pub(crate) fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Sends signal `signal` (a name such as `TERM`, `INT`, `KILL`) to the one
/// process `pid` with `kill -s SIGNAL PID`.
pub(crate) fn signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run kill(1) (package procps): {e}"),
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {signal} {pid} failed: {status}"
        )))
    }
}

/// Whether process `pid` exists and is not a zombie (from `/proc`).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The PIDs whose parent is `pid` (from `/proc`), e.g. Kamailio's workers.
pub(crate) fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(candidate) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after "(comm)": state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(candidate);
        }
    }
    pids
}

/// Polls `done` every `every` until it is true (returns true) or `timeout`
/// has passed (returns false).
pub(crate) fn wait_until(
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

/// Waits up to `timeout` for `child` to exit (and reaps it).
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Stops `child`: sends it `first_signal` (by its PID), waits up to `grace`,
/// then SIGKILLs it and the children it had (Kamailio's workers would
/// otherwise outlive a killed main process) and reaps it.
pub(crate) fn stop_child(
    child: &mut Child,
    first_signal: &str,
    grace: Duration,
) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pid = child.id();
    // Not yet reaped, so the PID is still this child's.
    let _ = signal(pid, first_signal);
    if let Some(status) = wait_timeout(child, grace) {
        return Some(status);
    }
    eprintln!("process {pid} ignored SIG{first_signal} for {grace:?}: sending SIGKILL");
    let orphans = child_pids(pid);
    let _ = child.kill();
    let status = child.wait().ok();
    for orphan in orphans {
        if pid_alive(orphan) {
            let _ = signal(orphan, "KILL");
        }
    }
    status
}

/// Why [`run_with_timeout`] returned no output.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The command could not be started.
    Spawn(io::Error),
    /// The command ran past its time limit and was killed; what it had
    /// printed by then.
    TimedOut {
        /// Its standard output so far.
        stdout: Vec<u8>,
        /// Its standard error so far.
        stderr: Vec<u8>,
    },
}

/// Runs `cmd` with no standard input and stdout/stderr captured; kills it
/// (SIGKILL, by its PID) if it runs longer than `timeout`.
pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output, RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    match wait_timeout(&mut child, timeout) {
        Some(status) => Ok(Output {
            status,
            stdout: collect(&stdout, Duration::from_secs(5)),
            stderr: collect(&stderr, Duration::from_secs(5)),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(RunError::TimedOut {
                stdout: collect(&stdout, Duration::from_secs(1)),
                stderr: collect(&stderr, Duration::from_secs(1)),
            })
        }
    }
}

/// Reads a pipe to its end on a thread, sending chunks as they come, so a
/// pipe kept open by a grandchild cannot block the caller.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    rx
}

/// What a [`reader`] sent until the pipe closed, or until `linger` passed.
fn collect(rx: &mpsc::Receiver<Vec<u8>>, linger: Duration) -> Vec<u8> {
    let deadline = Instant::now() + linger;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => return out,
        }
    }
}
