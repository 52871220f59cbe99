//! `sipcheck answer` as a background peer: started with its output in files, ready once it
//! prints its first line, stopped with SIGINT (a graceful drain) and then SIGKILL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{self, RunDir};

/// A running `sipcheck answer`.
pub(crate) struct Responder {
    child: Option<Child>,
    rundir: RunDir,
}

impl Responder {
    /// Start `sipcheck answer ARGS` and wait (up to 10 s) until it listens.
    pub(crate) fn start(args: &[&str], envs: &[(&str, &str)]) -> Responder {
        let rundir = RunDir::new("answer").expect("run dir");
        let stdout = std::fs::File::create(rundir.join("stdout")).unwrap();
        let stderr = std::fs::File::create(rundir.join("stderr")).unwrap();
        let mut cmd = Command::new(super::sipcheck_bin());
        cmd.arg("answer")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start sipcheck answer");
        let responder = Responder {
            child: Some(child),
            rundir,
        };
        // Listening, or an error (with -v its stderr carries the SIP messages too).
        let listening = |out: &str| out.contains("listening on") || out.contains("\"listening\"");
        let ready = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            listening(&responder.stdout()) || responder.stderr().contains("sipcheck: error")
        });
        assert!(
            ready
                && listening(&responder.stdout())
                && !responder.stderr().contains("sipcheck: error"),
            "sipcheck answer did not start:\n{}",
            responder.output()
        );
        responder
    }

    /// What it printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        process::read_lossy(&self.rundir.join("stdout"))
    }

    /// What it printed on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        process::read_lossy(&self.rundir.join("stderr"))
    }

    /// Both, for assertion messages.
    pub(crate) fn output(&self) -> String {
        format!(
            "--- answer stdout ---\n{}\n--- answer stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Wait (up to `timeout`) until stdout contains `needle`.
    pub(crate) fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        process::wait_until(timeout, Duration::from_millis(20), || {
            self.stdout().contains(needle)
        })
    }

    /// Wait for it to exit by itself (`--calls N`), up to `timeout`; its exit code.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let status = process::wait_timeout(child, timeout)?;
        self.child = None;
        status.code()
    }

    /// SIGINT, as Ctrl-C: it hangs up, unregisters and prints its totals. Its exit code.
    pub(crate) fn interrupt(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = process::signal(child.id(), "INT");
        let status = process::wait_timeout(child, Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
        status.and_then(|s| s.code())
    }

    /// Its process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its files are.
    pub(crate) fn dir(&self) -> PathBuf {
        self.rundir.path().to_path_buf()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = process::signal(child.id(), "INT");
            if process::wait_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
