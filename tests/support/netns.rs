//! Network namespaces for impairment tests: a private loopback on which
//! `iptables` drops a random share of the UDP datagrams received.
//!
//! This kernel has no `netem` (see /work/shared/design/PEERS.md, "Network
//! impairment"), but inside a namespace
//! `iptables -A INPUT -p udp -m statistic --mode random --probability P -j DROP`
//! drops each datagram received, independently, with probability P. Every
//! process started with [`Netns::exec`] sees only the namespace's own `lo`, so
//! both ends of a call share the impairment and ports may repeat between
//! namespaces.
//!
//! Creating a namespace needs root and the programs `ip` (iproute2) and
//! `iptables`: when that fails, [`Netns::create`] returns the reason, and tests
//! fail with it — never skip.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

use super::process::require_program;

/// A network namespace named `sipcheck-LABEL-PID-N`, deleted on drop.
///
/// Declare it before the processes that run inside it, so that they are
/// stopped (dropped) first.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
    ip: std::path::PathBuf,
}

impl Netns {
    /// Creates a uniquely named namespace and brings its `lo` up.
    ///
    /// Errors, with the command and what it printed, when the namespace
    /// cannot be made (not root, `ip` or `iptables` missing, …).
    pub(crate) fn create(label: &str) -> anyhow::Result<Netns> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let ip = require_program("ip", "iproute2")?;
        // Checked now so that a missing iptables fails here, with its package.
        require_program("iptables", "iptables")?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("sipcheck-{label}-{}-{n}", std::process::id());
        run(Command::new(&ip).args(["netns", "add", &name])).with_context(|| {
            format!(
                "cannot create network namespace {name} (the impairment tests need root, \
                 iproute2 and iptables; an existing namespace of that name is left over from \
                 an earlier run: `ip netns delete {name}`)"
            )
        })?;
        // From here on, Drop deletes it.
        let ns = Netns { name, ip };
        run(Command::new(&ns.ip).args(["-n", &ns.name, "link", "set", "lo", "up"]))
            .with_context(|| format!("cannot bring lo up in network namespace {}", ns.name))?;
        Ok(ns)
    }

    /// The namespace's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM ARGS…`: `ip` enters the namespace and
    /// executes PROGRAM in its own place, so the child's PID is PROGRAM's.
    pub(crate) fn exec<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    /// Runs `iptables ARGS…` inside the namespace; its standard output.
    pub(crate) fn iptables(&self, args: &[&str]) -> anyhow::Result<String> {
        run(&mut self.exec("iptables", args))
            .with_context(|| format!("iptables {} in namespace {}", args.join(" "), self.name))
    }

    /// Drops each UDP datagram received in the namespace with probability
    /// `probability` (appends the `statistic` DROP rule to INPUT).
    pub(crate) fn drop_udp(&self, probability: f64) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&probability),
            "drop probability {probability} is not within 0..=1"
        );
        let p = format!("{probability}");
        self.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ])?;
        Ok(())
    }

    /// Appends a rule without a target to INPUT: it only counts the UDP
    /// datagrams to local ports `ports` ("5060" or "30000:31999") that reach
    /// it. Read with [`Netns::input_counts`].
    pub(crate) fn count_udp(&self, ports: &str) -> anyhow::Result<()> {
        self.iptables(&["-A", "INPUT", "-p", "udp", "--dport", ports])?;
        Ok(())
    }

    /// The packet counter of every INPUT rule, in order.
    pub(crate) fn input_counts(&self) -> anyhow::Result<Vec<u64>> {
        let listing = self.iptables(&["-L", "INPUT", "-v", "-x", "-n"])?;
        // Two heading lines, then one line per rule starting with its packet count.
        listing
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .next()
                    .and_then(|c| c.parse::<u64>().ok())
                    .with_context(|| format!("unexpected iptables line {l:?} in:\n{listing}"))
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new(&self.ip).args(["netns", "delete", &self.name])) {
            eprintln!("{e:#}");
        }
    }
}

/// Runs `cmd` to completion (no stdin); its stdout, or an error with the
/// command, its status and its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
