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

/// The options of an `answer` in a call heard both ways: it plays 1000 Hz, expects 440 Hz and
/// takes one call.
pub(crate) const ANSWER_TONES: [&str; 6] = [
    "--play-tone",
    "1000",
    "--expect-tone",
    "440",
    "--calls",
    "1",
];

/// The options of its caller: it plays 440 Hz and expects 1000 Hz.
pub(crate) const CALLER_TONES: [&str; 4] = ["--play-tone", "440", "--expect-tone", "1000"];

/// A call from `sipcheck call` straight to a `sipcheck answer` listening over `transport` on a
/// free loopback port (presenting `cert`, a certificate and its key, when given), playing
/// 1000 Hz and expecting 440 Hz; the caller the other way round, `call(listen)` giving its
/// URI and further options. Asserts the call passed with the tone heard and `answer` passed.
pub(crate) fn call_straight_over(
    transport: &str,
    cert: Option<(&str, &str)>,
    call: impl Fn(&str) -> Vec<String>,
) -> super::Ran {
    let listen = format!("127.0.0.1:{}", super::free_port());
    let mut args = vec!["--transport", transport, "--listen", &listen];
    args.extend(ANSWER_TONES);
    if let Some((cert, key)) = cert {
        args.extend(["--cert", cert, "--key", key]);
    }
    let mut answer = Responder::start(&args, &[]);
    let mut args = vec!["call".to_owned()];
    args.extend(call(&listen));
    args.extend(CALLER_TONES.map(str::to_owned));
    args.push("--json".to_owned());
    let ran = super::run_against(args, &[], &[&answer]);
    assert_eq!(ran.code(), Some(0), "{transport}: {}", ran.shown);
    let v = ran.json();
    assert_eq!(
        v["media"]["tones"][0]["detected"], true,
        "{transport}: {}",
        ran.shown
    );
    let code = answer.wait_exit(Duration::from_secs(15));
    let answered = answer.output();
    assert_eq!(code, Some(0), "{transport}: {}\n{answered}", ran.shown);
    assert!(
        answer.stdout().contains("-- PASS"),
        "{transport}: {answered}"
    );
    ran
}
