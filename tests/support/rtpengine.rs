//! A real rtpengine (Debian package rtpengine-daemon, userspace only: `--table=-1`) on
//! loopback, driven by Kamailio's `rtpengine` module over its NG control port. Media ports
//! 33000-33999 (below Linux's ephemeral range, apart from baresip's and sipcheck's).
//!
//! Started as `rtpengine --foreground --log-stderr --table=-1 --interface=127.0.0.1
//! --listen-ng=127.0.0.1:PORT --port-min 33000 --port-max 33999 --no-fallback=false`,
//! stopped with SIGTERM then SIGKILL by its PID when dropped.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::process::{self, RunDir};

/// A running rtpengine.
#[derive(Debug)]
pub(crate) struct Rtpengine {
    /// Its NG control port on 127.0.0.1 (UDP).
    pub(crate) ng_port: u16,
    rundir: RunDir,
    child: Child,
}

impl Rtpengine {
    /// Starts it and waits until its NG port is bound.
    pub(crate) fn start() -> anyhow::Result<Self> {
        let rtpengine = process::require_program("rtpengine", "rtpengine-daemon")?;
        let ng_port = super::free_port();
        let rundir = RunDir::new("rtpengine").context("create a run directory for rtpengine")?;
        let stderr = File::create(rundir.join("stderr.log")).context("create stderr.log")?;
        let stdout = File::create(rundir.join("stdout.log")).context("create stdout.log")?;
        let mut cmd = Command::new(rtpengine);
        cmd.args([
            "--foreground",
            "--log-stderr",
            "--table=-1",
            "--interface=127.0.0.1",
            "--port-min=33000",
            "--port-max=33999",
            "--log-level=6",
        ])
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .arg(format!(
            "--pidfile={}",
            rundir.join("rtpengine.pid").display()
        ))
        .current_dir(rundir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
        let child = cmd.spawn().context("spawn rtpengine")?;
        let mut r = Self {
            ng_port,
            rundir,
            child,
        };
        let bound = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            super::sipp::port_bound(ng_port)
        });
        if let Ok(Some(status)) = r.child.try_wait() {
            anyhow::bail!("rtpengine exited at start with {status}\n{}", r.log());
        }
        anyhow::ensure!(
            bound,
            "rtpengine's NG port {ng_port} not bound\n{}",
            r.log()
        );
        Ok(r)
    }

    /// Kamailio's `rtpengine_sock` for it, as a `-A` define.
    pub(crate) fn kamailio_define(&self) -> String {
        format!("RTPENGINE_SOCK=\"udp:127.0.0.1:{}\"", self.ng_port)
    }

    /// What it logged.
    pub(crate) fn log(&self) -> String {
        format!(
            "--- rtpengine stderr ---\n{}",
            process::read_lossy(&self.rundir.join("stderr.log"))
        )
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "TERM", Duration::from_secs(5));
    }
}
