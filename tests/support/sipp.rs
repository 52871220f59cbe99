//! A real SIPp 3.6.1 (package sip-tester) running a UAS scenario from
//! `tests/peers/` on a free loopback port, in the foreground as a child of
//! the test, with its message trace, errors and screen kept in a run
//! directory.
//!
//! Scenarios (see each file's header comment):
//! - `uas_auth_sha256.xml`: REGISTER challenged with Digest SHA-256,
//!   qop="auth,auth-int"; 200 if the Authorization has the right shape,
//!   else 403. SIPp 3.6.1 cannot compute SHA-256, so the hash itself is
//!   checked by the test with [`Sipp::authorizations`] and
//!   [`super::digest::verify`].
//! - `uas_auth_md5.xml`: REGISTER challenged with Digest MD5 and verified by
//!   SIPp (`<verifyauth>`), password `"pw" + user`; 200 or 403.
//! - `uas_options.xml`: answers OPTIONS 200.
//! - `uas_register_refresh.xml`: a registrar granting 2 s, refusing the
//!   first refresh with 503, granting the retry 60 s, removing the binding.
//!
//! SIPp ignores SIGTERM: it is stopped with SIGINT, then SIGKILL.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::process::{self, RunDir};

/// How long [`Sipp::start_uas`] waits for SIPp to bind its port.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a dropped SIPp gets after SIGINT before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Start-up choices; [`Default`] is what [`Sipp::start_uas`] uses.
#[derive(Debug, Clone)]
pub(crate) struct SippOptions {
    /// Trace every message (`-trace_msg`) to `messages.log`: needed by
    /// [`Sipp::messages`]; costly under load.
    pub(crate) trace_messages: bool,
}

impl Default for SippOptions {
    fn default() -> Self {
        Self {
            trace_messages: true,
        }
    }
}

/// A running SIPp, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Sipp {
    /// Its SIP port on 127.0.0.1 (`-p`).
    pub(crate) port: u16,
    /// `127.0.0.1:port`.
    pub(crate) addr: SocketAddr,
    scenario: PathBuf,
    rundir: RunDir,
    child: Child,
    command_line: String,
}

impl Sipp {
    /// A scenario of `tests/peers/`, e.g. `Sipp::peer_scenario("uas_options.xml")`.
    pub(crate) fn peer_scenario(name: &str) -> PathBuf {
        super::peers_dir().join(name)
    }

    /// Starts `sipp -sf SCENARIO -i 127.0.0.1 -p PORT -nostdin ... EXTRA_ARGS`
    /// (a relative `scenario` that does not exist is looked up in
    /// `tests/peers/`) and waits until its port is bound. Fails (saying how
    /// to install it) if sipp is missing.
    pub(crate) fn start_uas(
        scenario: impl AsRef<Path>,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_uas_with(scenario, extra_args, &SippOptions::default())
    }

    /// SIPp's built-in `uas` scenario (`-sn uas`) on `port`, media on 127.0.0.1 (`-mi`), with
    /// `extra_args` (e.g. `-rtp_echo`).
    pub(crate) fn start_builtin_uas(port: u16, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_builtin_uas_at(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            extra_args,
            false,
        )
    }

    /// [`Sipp::start_builtin_uas`] on `addr` (`[::1]:PORT` over IPv6: `-i ::1 -mi ::1`),
    /// with its message trace ([`Sipp::messages`]) when `trace` is set.
    pub(crate) fn start_builtin_uas_at(
        addr: SocketAddr,
        extra_args: &[&str],
        trace: bool,
    ) -> anyhow::Result<Self> {
        let sipp = process::require_program("sipp", "sip-tester")?;
        let ip = addr.ip().to_string();
        let port = addr.port();
        let rundir = RunDir::new("sipp").context("create a run directory for sipp")?;
        let stdout = File::create(rundir.join("stdout.log")).context("create sipp's stdout.log")?;
        let stderr = File::create(rundir.join("stderr.log")).context("create sipp's stderr.log")?;
        let mut cmd = Command::new(sipp);
        cmd.args(["-sn", "uas", "-i", &ip, "-mi", &ip, "-nostdin"])
            .arg("-p")
            .arg(port.to_string());
        if trace {
            cmd.arg("-trace_msg")
                .arg("-message_file")
                .arg(rundir.join("messages.log"));
        }
        cmd.args(extra_args)
            .current_dir(rundir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {command_line}"))?;
        let mut s = Self {
            port,
            addr,
            scenario: PathBuf::from("uas (built in)"),
            rundir,
            child,
            command_line,
        };
        s.wait_ready()?;
        Ok(s)
    }

    /// [`Sipp::start_uas`] with `opts`; retried on a new port if SIPp exits
    /// at start (another process may take the free port first).
    pub(crate) fn start_uas_with(
        scenario: impl AsRef<Path>,
        extra_args: &[&str],
        opts: &SippOptions,
    ) -> anyhow::Result<Self> {
        let sipp = process::require_program("sipp", "sip-tester")?;
        let mut scenario = scenario.as_ref().to_path_buf();
        if scenario.is_relative() && !scenario.exists() {
            scenario = super::peers_dir().join(&scenario);
        }
        anyhow::ensure!(
            scenario.is_file(),
            "missing SIPp scenario {}",
            scenario.display()
        );
        let mut last_err = None;
        for _ in 0..3 {
            match Self::try_start(&sipp, &scenario, extra_args, opts) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("sipp did not start")))
    }

    fn try_start(
        sipp: &Path,
        scenario: &Path,
        extra_args: &[&str],
        opts: &SippOptions,
    ) -> anyhow::Result<Self> {
        let port = super::free_port();
        let rundir = RunDir::new("sipp").context("create a run directory for sipp")?;
        let stdout = File::create(rundir.join("stdout.log")).context("create sipp's stdout.log")?;
        let stderr = File::create(rundir.join("stderr.log")).context("create sipp's stderr.log")?;

        let mut cmd = Command::new(sipp);
        cmd.arg("-sf")
            .arg(scenario)
            .arg("-i")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .arg("-nostdin")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(rundir.join("errors.log"))
            .arg("-trace_logs")
            .arg("-log_file")
            .arg(rundir.join("logs.log"));
        if opts.trace_messages {
            cmd.arg("-trace_msg")
                .arg("-message_file")
                .arg(rundir.join("messages.log"));
        }
        cmd.args(extra_args)
            .current_dir(rundir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {command_line}"))?;

        let mut s = Self {
            port,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            scenario: scenario.to_owned(),
            rundir,
            child,
            command_line,
        };
        s.wait_ready()?;
        Ok(s)
    }

    /// Waits until 127.0.0.1:PORT is bound (UDP, or a TCP listener) per
    /// /proc/net, without sending it anything: a probe would enter the
    /// scenario.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sipp exited at start with {status}\ncommand: {}\n{}",
                    self.command_line,
                    self.log()
                );
            }
            let bound = if self.addr.is_ipv6() {
                port_bound_v6(self.port)
            } else {
                port_bound(self.port)
            };
            if bound {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "sipp did not bind {} within {READY_TIMEOUT:?}\ncommand: {}\n{}",
            self.addr,
            self.command_line,
            self.log()
        )
    }

    /// `sip:127.0.0.1:PORT` (or `sip:[::1]:PORT`).
    pub(crate) fn uri(&self) -> String {
        format!("sip:{}", self.addr)
    }

    /// Its PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The scenario it runs.
    pub(crate) fn scenario(&self) -> &Path {
        &self.scenario
    }

    /// Its run directory.
    pub(crate) fn rundir(&self) -> &Path {
        self.rundir.path()
    }

    /// The command line it was started with.
    pub(crate) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// The message trace (`-trace_msg`): every message sent and received.
    pub(crate) fn messages(&self) -> String {
        process::read_lossy(&self.rundir.join("messages.log"))
    }

    /// The SIP messages it received, in order (from the trace).
    pub(crate) fn received(&self) -> Vec<String> {
        split_trace(&self.messages(), "received")
    }

    /// The SIP messages it sent, in order (from the trace).
    pub(crate) fn sent(&self) -> Vec<String> {
        split_trace(&self.messages(), "sent")
    }

    /// `(method, Authorization value)` of every request received with an
    /// Authorization header, in order: feed to [`super::digest::verify`].
    pub(crate) fn authorizations(&self) -> Vec<(String, String)> {
        self.received()
            .into_iter()
            .filter_map(|m| {
                let method = super::sip::first_line(&m).split(' ').next()?.to_owned();
                let auth = super::sip::header(&m, "Authorization")?;
                Some((method, auth))
            })
            .collect()
    }

    /// Its error log (`-trace_err`: unexpected messages, warnings).
    pub(crate) fn errors(&self) -> String {
        process::read_lossy(&self.rundir.join("errors.log"))
    }

    /// Everything it wrote (stderr, errors, last screen), for diagnostics.
    pub(crate) fn log(&self) -> String {
        let screen = process::read_lossy(&self.rundir.join("stdout.log"));
        // Its screen is redrawn every second: the last one is enough.
        let last_screen = screen
            .rfind("------------------------------ Scenario Screen")
            .map_or(&screen[..], |i| &screen[i..]);
        format!(
            "--- sipp stderr ---\n{}\n--- sipp errors.log ---\n{}\n--- sipp last screen ---\n{}",
            process::read_lossy(&self.rundir.join("stderr.log")),
            if self.rundir.join("errors.log").exists() {
                self.errors()
            } else {
                String::new()
            },
            last_screen
        )
    }

    /// Stops it now (SIGINT, then SIGKILL) and returns its exit status.
    pub(crate) fn stop(mut self) -> Option<ExitStatus> {
        process::stop_child(&mut self.child, "INT", STOP_GRACE)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "INT", STOP_GRACE);
    }
}

/// Whether something is bound to 127.0.0.1:`port` in UDP, or listening on
/// it in TCP (from /proc/net/udp and /proc/net/tcp).
pub(crate) fn port_bound(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    let has = |file: &str, listen_only: bool| {
        fs::read_to_string(file).is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                let mut cols = line.split_whitespace();
                let (Some(_), Some(addr), Some(_), Some(state)) =
                    (cols.next(), cols.next(), cols.next(), cols.next())
                else {
                    return false;
                };
                (addr == local || addr == any) && (!listen_only || state == "0A")
            })
        })
    };
    has("/proc/net/udp", false) || has("/proc/net/tcp", true)
}

/// Whether something is bound to `[::1]:port` (or `[::]:port`) in UDP, per /proc/net/udp6.
pub(crate) fn port_bound_v6(port: u16) -> bool {
    let local = format!("00000000000000000000000001000000:{port:04X}");
    let any = format!("00000000000000000000000000000000:{port:04X}");
    fs::read_to_string("/proc/net/udp6").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|addr| addr == local || addr == any)
        })
    })
}

/// Splits SIPp's `-trace_msg` log into the messages of one direction
/// (`"sent"` or `"received"`).
///
/// Each entry is a separator line of 47 dashes and a timestamp, a line like
/// `UDP message sent (N bytes):` or `UDP message received [N] bytes :`, a
/// blank line, the message, and a newline.
fn split_trace(trace: &str, direction: &str) -> Vec<String> {
    const SEPARATOR: &str = "----------------------------------------------- ";
    let mut out = Vec::new();
    for entry in trace.split(SEPARATOR).skip(1) {
        let mut parts = entry.splitn(3, '\n');
        let (Some(_timestamp), Some(what), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let what = what.trim_end();
        let wanted = match direction {
            "sent" => what.contains(" message sent (") && what.ends_with(':'),
            _ => what.contains(" message received [") && what.ends_with(':'),
        };
        if wanted {
            let msg = rest.strip_prefix('\n').unwrap_or(rest);
            let msg = msg.strip_suffix('\n').unwrap_or(msg);
            out.push(msg.to_owned());
        }
    }
    out
}
