//! Shared code for sipcheck's integration tests: real peers (Kamailio, SIPp)
//! started on free loopback ports, raw SIP helpers over std sockets, digest
//! computation and checks, and a runner for the `sipcheck` binary with a
//! timeout.
//!
//! Use it from a file in `tests/` with `mod support;`. Every peer is a child
//! process of the test and is stopped by its own PID when its handle drops;
//! nothing is ever killed by name.
//!
//! A missing peer binary is a test failure with the command that installs it
//! (CI's `.ci/run` installs them all), never a silent skip.
#![allow(dead_code)]

pub(crate) mod baresip;
pub(crate) mod digest;
pub(crate) mod hostile;
pub(crate) mod impair;
pub(crate) mod kamailio;
pub(crate) mod linphone;
pub(crate) mod media_relay;
pub(crate) mod netns;
pub(crate) mod process;
pub(crate) mod reports;
pub(crate) mod responder;
pub(crate) mod rtpengine;
pub(crate) mod sip;
pub(crate) mod sipp;
pub(crate) mod tls;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long [`run_sipcheck`] lets the binary run before killing it.
pub(crate) const SIPCHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The loopback address every peer listens on.
pub(crate) const LOOPBACK: &str = "127.0.0.1";

/// The root of the workspace (the root package's manifest directory).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/peers/`: peer configurations and SIPp scenarios.
pub(crate) fn peers_dir() -> PathBuf {
    repo_root().join("tests").join("peers")
}

/// A loopback port that is free for both UDP and TCP right now, and that no
/// other caller of this function in this test process has been given.
///
/// Found by binding UDP `127.0.0.1:0` and then TCP on the same port, and
/// releasing both: another process may still take it before the caller
/// binds it, so peers that fail to start are retried on a new port.
pub(crate) fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..200 {
        let udp = UdpSocket::bind((LOOPBACK, 0)).expect("bind a UDP socket on 127.0.0.1:0");
        let port = udp
            .local_addr()
            .expect("local address of a bound socket")
            .port();
        // Ports a peer also uses port + 1 of (baresip's TLS) are not
        // checked here; callers needing pairs space them themselves.
        let Ok(tcp) = TcpListener::bind((LOOPBACK, port)) else {
            continue;
        };
        drop(tcp);
        drop(udp);
        let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
    panic!("found no loopback port free for both UDP and TCP in 200 tries");
}

/// The path of the `sipcheck` binary that Cargo built for these tests.
pub(crate) fn sipcheck_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sipcheck"))
}

/// Runs `sipcheck ARGS` with the extra environment `envs`, no standard
/// input, and stdout/stderr captured. Panics, with what it printed so far,
/// if it runs longer than [`SIPCHECK_TIMEOUT`] (it is killed first).
pub(crate) fn run_sipcheck<I, S>(args: I, envs: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_sipcheck_with_timeout(args, envs, SIPCHECK_TIMEOUT)
}

/// [`run_sipcheck`] with another time limit.
pub(crate) fn run_sipcheck_with_timeout<I, S>(
    args: I,
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(sipcheck_bin());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let shown = format!("{cmd:?}");
    match process::run_with_timeout(cmd, timeout) {
        Ok(out) => out,
        Err(process::RunError::Spawn(e)) => panic!("cannot start {shown}: {e}"),
        Err(process::RunError::TimedOut { stdout, stderr }) => panic!(
            "{shown} ran longer than {timeout:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Everything a finished command printed, for assertion messages.
pub(crate) fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A peer whose log is shown beside sipcheck's output when an assertion about a run against
/// it fails: Kamailio, SIPp, baresip, rtpengine, `sipcheck answer`.
pub(crate) trait PeerLog {
    /// What it has logged so far.
    fn peer_log(&self) -> String;
}

impl PeerLog for kamailio::Kamailio {
    fn peer_log(&self) -> String {
        self.log()
    }
}

impl PeerLog for sipp::Sipp {
    fn peer_log(&self) -> String {
        format!("{}\n{}", self.log(), self.messages())
    }
}

impl PeerLog for baresip::Baresip {
    fn peer_log(&self) -> String {
        self.log()
    }
}

impl PeerLog for rtpengine::Rtpengine {
    fn peer_log(&self) -> String {
        self.log()
    }
}

impl PeerLog for responder::Responder {
    fn peer_log(&self) -> String {
        self.output()
    }
}

/// A finished `sipcheck` run against peers.
pub(crate) struct Ran {
    /// Its exit status and output.
    pub(crate) out: Output,
    /// Its exit status, stdout and stderr as text: what assertions about its output read.
    pub(crate) printed: String,
    /// A `run`'s JSON report, checked against the schema (`Null` for the other commands, and
    /// when no report was written: the scenario did not load).
    pub(crate) summary: serde_json::Value,
    /// `printed`, the report and each peer's log as it was once sipcheck had ended: what a
    /// failed assertion shows.
    pub(crate) shown: String,
}

impl Ran {
    /// `out` and `summary` with the logs of `peers` read now.
    pub(crate) fn new(out: Output, summary: serde_json::Value, peers: &[&dyn PeerLog]) -> Self {
        let printed = describe_output(&out);
        let mut shown = printed.clone();
        if !summary.is_null() {
            shown.push_str(&format!("\n--- summary ---\n{summary}"));
        }
        for peer in peers {
            shown.push('\n');
            shown.push_str(&peer.peer_log());
        }
        Self {
            out,
            printed,
            summary,
            shown,
        }
    }

    /// Its exit code.
    pub(crate) fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Fails, showing everything, unless it exited with `code`.
    pub(crate) fn assert_exit(&self, code: i32) {
        assert_eq!(self.code(), Some(code), "{}", self.shown);
    }

    /// Its stdout as text.
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Its stdout as JSON (`--json`), failing with everything shown if it is none.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout).unwrap_or_else(|e| {
            panic!(
                "sipcheck --json printed no JSON object ({e})\n{}",
                self.shown
            )
        })
    }
}

/// `sipcheck ARGS` with `envs` against `peers`: its output with, for assertion messages,
/// the peers' logs read once it has ended.
pub(crate) fn run_against<I, S>(args: I, envs: &[(&str, &str)], peers: &[&dyn PeerLog]) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ran::new(run_sipcheck(args, envs), serde_json::Value::Null, peers)
}
