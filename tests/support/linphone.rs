//! A real linphonec 5.1 (Debian bookworm's package `linphone-cli`) on a free loopback port as a
//! **conference focus**: it takes incoming calls, which the test answers one by one (`answer
//! N`) and merges into its local conference (`conference add N`), whose mixer sends each
//! participant the sum of the others.
//!
//! ```ignore
//! let mut focus = Linphone::start().expect("start linphonec");
//! // ... calls to focus.uri() ...
//! focus.answer_and_merge(3, &[1, 2, 3], Duration::from_secs(20)).unwrap();
//! ```
//!
//! Facts this relies on (measured with linphonec 5.1.65 here):
//! - Headless: no sound card (`Could not find a suitable soundcard`), which the conference
//!   does not need; commands are read from stdin, one a line, and its console output goes to
//!   stdout (`stdout.log` here): `Receiving new incoming call from URI, assigned id N`,
//!   `Media streams established with URI for call N (audio).`
//! - It refuses a second call from the same From address (486, "a call with the same
//!   address is initiated"): each party needs its own user.
//! - Answering a call pauses the calls up before it (re-INVITE `a=sendonly`); `conference add
//!   N` resumes call N into the conference. Merging before the earlier calls' pauses were
//!   over (`Call N with URI is now paused.` not yet printed for each) left the first call
//!   merged out of the others' mix (it still heard them), so the pauses are awaited first.
//! - Each call is answered by number once it has arrived: `answer N` for a call that is not
//!   there crashes it (SIGSEGV in libbellesip, under `linphone_call_accept`). Auto-answer
//!   (`-a`) is not used.
//! - It crashes (SIGSEGV) as soon as a participant leaves its conference — a BYE from the
//!   participant, `terminate N` or `conference rm N` alike, with or without `-a`: the other
//!   participants' calls then end in ICMP port unreachable. The tests judge the conference
//!   before anyone leaves.
//! - Its database and certificates go under `$HOME`: HOME is the run directory (without a
//!   writable `~/.local/share/linphone` it does not open its SIP port).
//! - Stopped with SIGTERM, then SIGKILL, by its PID.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::process::{self, RunDir};
use super::LOOPBACK;

/// How long [`Linphone::start`] waits for its SIP port.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a dropped linphonec gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A linphonec conference focus.
pub(crate) struct Linphone {
    /// Its SIP port (UDP) on 127.0.0.1.
    pub(crate) sip_port: u16,
    rundir: RunDir,
    child: Child,
    stdin: ChildStdin,
}

impl Linphone {
    /// Writes its configuration and starts it; waits until its SIP port is bound. Fails,
    /// saying which package to install, if linphonec is missing.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let linphonec = process::require_program("linphonec", "linphone-cli")?;
        let sip_port = super::free_port();
        let rtp = super::free_port();
        let rundir = RunDir::new("linphone").context("create a run directory for linphonec")?;
        fs::create_dir_all(rundir.join(".local/share/linphone"))?;
        let config = format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=-1\nsip_tls_port=-1\nbind_address={LOOPBACK}\n\
             default_proxy=-1\n\
             [rtp]\naudio_rtp_port={rtp}-{}\n\
             [sound]\necho_cancellation=0\n\
             [net]\nmtu=1300\n\
             [misc]\nmax_calls=10\n",
            rtp.saturating_add(60)
        );
        fs::write(rundir.join("linphonerc"), config)?;
        let stdout = File::create(rundir.join("stdout.log"))?;
        let mut cmd = Command::new(linphonec);
        cmd.arg("-c")
            .arg(rundir.join("linphonerc"))
            .arg("-d")
            .arg("4")
            .arg("-l")
            .arg(rundir.join("linphone.log"))
            .env("HOME", rundir.path())
            .current_dir(rundir.path())
            .stdin(Stdio::piped())
            .stdout(stdout.try_clone()?)
            .stderr(stdout);
        let mut child = cmd.spawn().context("spawn linphonec")?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut l = Self {
            sip_port,
            rundir,
            child,
            stdin,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !super::sipp::port_bound(sip_port) {
            if let Some(status) = l.child.try_wait()? {
                bail!("linphonec exited at start with {status}\n{}", l.stdout());
            }
            if Instant::now() > deadline {
                bail!(
                    "linphonec did not bind 127.0.0.1:{sip_port} within {READY_TIMEOUT:?}\n{}",
                    l.stdout()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(l)
    }

    /// `sip:conf@127.0.0.1:PORT`.
    pub(crate) fn uri(&self) -> String {
        format!("sip:conf@{LOOPBACK}:{}", self.sip_port)
    }

    /// What it printed so far.
    pub(crate) fn stdout(&self) -> String {
        process::read_lossy(&self.rundir.join("stdout.log"))
    }

    /// Its debug log.
    pub(crate) fn log_path(&self) -> &Path {
        self.rundir.path()
    }

    /// Sends one console command.
    pub(crate) fn command(&mut self, command: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{command}").context("write to linphonec's stdin")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Answers the first `calls` incoming calls as each arrives, then, once every one has its
    /// media up and every call but the last is paused (by the answer to the next), merges the
    /// calls `merge` (linphonec's ids, from 1) into its conference.
    pub(crate) fn answer_and_merge(
        &mut self,
        calls: u32,
        merge: &[u32],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut answered = 0;
        while answered < calls {
            let next = answered + 1;
            if self.stdout().contains(&format!(", assigned id {next}\n")) {
                self.command(&format!("answer {next}"))?;
                answered = next;
                continue;
            }
            self.check(deadline, "the incoming calls")?;
        }
        for id in 1..=calls {
            while !self.stdout().contains(&format!(" for call {id} (audio).")) {
                self.check(deadline, "the answered calls' media")?;
            }
        }
        // Answering a call paused the one before it: merging before those pauses are over
        // leaves the first call merged out of the mix, so wait for each ("Call N with URI is
        // now paused.").
        for id in 1..calls {
            let paused = format!("Call {id} with ");
            while !self
                .stdout()
                .lines()
                .any(|l| l.contains(&paused) && l.contains("is now paused."))
            {
                self.check(deadline, "the earlier calls' pause")?;
            }
        }
        for id in merge {
            self.command(&format!("conference add {id}"))?;
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn check(&mut self, deadline: Instant, what: &str) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "linphonec exited ({status}) waiting for {what}\n{}",
                self.stdout()
            );
        }
        if Instant::now() > deadline {
            bail!("linphonec: timed out waiting for {what}\n{}", self.stdout());
        }
        std::thread::sleep(Duration::from_millis(20));
        Ok(())
    }

    /// Stops it now (SIGTERM, then SIGKILL) and returns its exit status.
    pub(crate) fn stop(mut self) -> Option<ExitStatus> {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE)
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "TERM", STOP_GRACE);
    }
}
