//! Audio quality over a real impaired network: `sipcheck call` against `sipcheck answer`
//! inside a network namespace whose `iptables` drops RTP (see `tests/support/netns.rs`).
//!
//! - The MOS estimate falls as loss rises: 0 %, 5 % and 20 % of RTP dropped at random, one
//!   10 s call each (500 packets a direction). G.711 without concealment (Bpl 4.3) rates
//!   5 % about 2.1 and 20 % about 1.2; a clean loopback 4.41. Both directions are checked:
//!   the caller's record (what it received) and the responder's. With 500 packets the measured
//!   loss has σ ≈ 1 pp at 5 % and 1.8 pp at 20 %, so the three are apart by many σ. Each
//!   estimate is also checked against the E-model of the loss sipcheck itself reported.
//! - A dropout: every RTP packet to the caller is dropped for 200 ms in the middle of the
//!   call (an iptables rule inserted, then deleted). iptables counts the packets it dropped;
//!   the caller must report one gap of that many 20 ms frames (± one frame) and fail the call
//!   naming it.

mod support;

use std::fs::File;
use std::process::{Child, Output, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::netns::Netns;
use support::process::{self, RunDir};
use support::{describe_output, sipcheck_bin};

const ANSWER_SIP: &str = "127.0.0.1:5060";
const CALLER_RTP: &str = "30000-30999";
const CALLER_RTP_DPORTS: &str = "30000:30999";
const ANSWER_RTP: &str = "31000-31999";
const RTP_DPORTS: &str = "30000:31999";

/// `sipcheck answer` in a namespace, stopped by its PID.
struct Answer {
    child: Option<Child>,
    rundir: RunDir,
}

impl Answer {
    fn start(ns: &Netns) -> Answer {
        let rundir = RunDir::new("quality-answer").expect("run dir");
        let stdout = File::create(rundir.join("stdout")).expect("stdout file");
        let stderr = File::create(rundir.join("stderr")).expect("stderr file");
        let args = [
            "answer",
            "--listen",
            ANSWER_SIP,
            "--play-tone",
            "1000",
            "--rtp-ports",
            ANSWER_RTP,
            "--json",
        ];
        let mut cmd = ns.exec(sipcheck_bin(), args);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let answer = Answer {
            child: Some(child),
            rundir,
        };
        let ready = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            answer.stdout().contains("\"listening\"") || !answer.stderr().is_empty()
        });
        assert!(
            ready && answer.stderr().is_empty(),
            "sipcheck answer did not start in {}:\n{}",
            ns.name(),
            answer.output()
        );
        answer
    }

    fn stdout(&self) -> String {
        process::read_lossy(&self.rundir.join("stdout"))
    }

    fn output(&self) -> String {
        format!(
            "--- answer stdout ---\n{}\n--- answer stderr ---\n{}",
            self.stdout(),
            process::read_lossy(&self.rundir.join("stderr"))
        )
    }

    fn stderr(&self) -> String {
        process::read_lossy(&self.rundir.join("stderr"))
    }

    /// The `call` objects it printed (one per call, when the call ended).
    fn calls(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "call")
            .collect()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop_child(&mut child, "INT", Duration::from_secs(5));
        }
    }
}

/// `sipcheck call` to the responder for `duration_s`, expecting its 1000 Hz tone; its JSON.
fn call(ns: &Netns, duration_s: u64) -> (Value, Output) {
    let uri = format!("sip:bob@{ANSWER_SIP}");
    let duration = format!("{duration_s}s");
    let args = [
        "call",
        &uri,
        "--play-tone",
        "440",
        "--expect-tone",
        "1000",
        "--duration",
        &duration,
        "--rtp-ports",
        CALLER_RTP,
        "--json",
    ];
    let cmd = ns.exec(sipcheck_bin(), args);
    let shown = format!("{cmd:?}");
    let timeout = Duration::from_secs(duration_s + 30);
    let out = match process::run_with_timeout(cmd, timeout) {
        Ok(out) => out,
        Err(e) => panic!("{shown} did not finish: {e:?}"),
    };
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON from {shown} ({e}):\n{}", describe_output(&out)));
    (v, out)
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// G.107 MOS of G.711 without PLC at `ppl` percent loss with burst ratio `burst_r`.
fn e_model(ppl: f64, burst_r: f64) -> f64 {
    let r = 93.2 - 95.0 * ppl / (ppl / burst_r + 4.3);
    if r <= 0.0 {
        1.0
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// One 10 s call with RTP (both ways) dropped at random with probability `loss`: the MOS
/// estimates of the caller's received direction and of the responder's.
fn mos_at(loss: f64) -> ((f64, f64), String) {
    let ns = Netns::create("quality").unwrap_or_else(|e| panic!("{e:#}"));
    if loss > 0.0 {
        let p = format!("{loss}");
        ns.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            RTP_DPORTS,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let answer = Answer::start(&ns);
    let (v, out) = call(&ns, 10);
    let shown = format!(
        "{:.0} % loss:\n{}\n{}",
        loss * 100.0,
        describe_output(&out),
        answer.output()
    );
    let m = &v["media"];
    assert!(m["mos_cqe"].is_number(), "{shown}");
    let mos = f(&m["mos_cqe"]);
    let ppl = f(&m["e_model"]["ppl_percent"]);
    let burst_r = f(&m["e_model"]["burst_r"]);
    // The estimate is the E-model of what was measured.
    assert!(
        (mos - e_model(ppl, burst_r)).abs() < 0.02,
        "MOS {mos} is not the E-model of Ppl {ppl} %, BurstR {burst_r}\n{shown}"
    );
    // Ppl counts every frame missing at playout: at least the network's loss (±4σ).
    let sigma = (loss * (1.0 - loss) / 500.0).sqrt() * 100.0;
    assert!(
        (ppl - loss * 100.0).abs() <= 4.0 * sigma + 0.5,
        "Ppl {ppl} % for {:.0} % loss\n{shown}",
        loss * 100.0
    );
    // The other direction: the responder's record of the same call.
    let ended = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        !answer.calls().is_empty()
    });
    assert!(ended, "the responder reported no call\n{shown}");
    let up = &answer.calls()[0]["media"];
    let up_mos = f(&up["mos_cqe"]);
    assert!(
        (up_mos
            - e_model(
                f(&up["e_model"]["ppl_percent"]),
                f(&up["e_model"]["burst_r"])
            ))
        .abs()
            < 0.02,
        "{shown}"
    );
    ((mos, up_mos), shown)
}

#[test]
fn the_mos_estimate_falls_as_rtp_loss_rises() {
    let results: Vec<((f64, f64), String)> = thread::scope(|s| {
        let runs: Vec<_> = [0.0, 0.05, 0.20]
            .into_iter()
            .map(|loss| s.spawn(move || mos_at(loss)))
            .collect();
        runs.into_iter()
            .map(|h| h.join().expect("quality run"))
            .collect()
    });
    let all = results
        .iter()
        .map(|r| r.1.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    // Each direction on its own: the caller's (received from the responder), the responder's.
    for (direction, pick) in [
        ("caller", (|r: &(f64, f64)| r.0) as fn(&(f64, f64)) -> f64),
        ("responder", |r: &(f64, f64)| r.1),
    ] {
        let mos: Vec<f64> = results.iter().map(|r| pick(&r.0)).collect();
        eprintln!("{direction}: MOS at 0 %, 5 %, 20 % RTP loss: {mos:?}");
        // A clean loopback: G.107's best narrowband rating.
        assert!((mos[0] - 4.41).abs() < 0.01, "{direction} {mos:?}\n{all}");
        assert!(
            mos[0] > mos[1] && mos[1] > mos[2],
            "{direction}: MOS does not fall with loss: {mos:?}\n{all}"
        );
        // 5 % random loss without concealment is nowhere near toll quality.
        assert!(mos[1] < 3.0, "{direction} {mos:?}\n{all}");
        assert!(mos[2] < 1.8, "{direction} {mos:?}\n{all}");
    }
}

#[test]
fn a_200_ms_rtp_dropout_is_reported_as_a_gap_of_its_length_and_fails_the_call() {
    let ns = Netns::create("gap").unwrap_or_else(|e| panic!("{e:#}"));
    // Rule 0 counts the RTP arriving for the caller, rule 1 (later) what is kept: the DROP
    // rule inserted between them for 200 ms drops the difference.
    ns.count_udp(CALLER_RTP_DPORTS)
        .and_then(|()| ns.count_udp(CALLER_RTP_DPORTS))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let answer = Answer::start(&ns);
    let (v, out) = thread::scope(|s| {
        let caller = s.spawn(|| call(&ns, 8));
        // Once 3 s of the responder's RTP reached the caller (150 packets), the dropout.
        let flowing =
            process::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
                ns.input_counts().is_ok_and(|c| c[0] >= 150)
            });
        assert!(flowing, "no RTP reached the caller\n{}", answer.output());
        let rule = [
            "INPUT",
            "-p",
            "udp",
            "--dport",
            CALLER_RTP_DPORTS,
            "-j",
            "DROP",
        ];
        let insert: Vec<&str> = ["-I"]
            .iter()
            .chain(&rule[..1])
            .chain(&["2"])
            .chain(&rule[1..])
            .copied()
            .collect();
        ns.iptables(&insert).unwrap_or_else(|e| panic!("{e:#}"));
        thread::sleep(Duration::from_millis(200));
        let delete: Vec<&str> = ["-D"].iter().chain(&rule).copied().collect();
        ns.iptables(&delete).unwrap_or_else(|e| panic!("{e:#}"));
        caller.join().expect("caller thread")
    });
    let counts = ns.input_counts().unwrap_or_else(|e| panic!("{e:#}"));
    let dropped = counts[0] - counts[1];
    let shown = format!(
        "iptables dropped {dropped} RTP packets to the caller\n{}\n{}",
        describe_output(&out),
        answer.output()
    );
    // The window itself: 200 ms plus what the iptables commands took (more on a loaded
    // machine), in 20 ms packets; what is checked is sipcheck's figure against this count.
    assert!((9..=25).contains(&dropped), "{shown}");
    let m = &v["media"];
    assert_eq!(m["audio_gap_count"], 1, "{shown}");
    let gap = f(&m["audio_gaps"][0]["length_ms"]);
    let truth = dropped as f64 * 20.0;
    eprintln!("{dropped} packets dropped, gap reported {gap} ms");
    assert!(
        (gap - truth).abs() <= 20.0,
        "a gap of {gap} ms reported for {dropped} packets ({truth} ms) dropped\n{shown}"
    );
    // Heard, and failed for the dropout, naming it.
    assert_eq!(m["tones"][0]["detected"], true, "{shown}");
    assert_eq!(v["verdict"], "fail", "{shown}");
    let failures: Vec<&str> = v["failures"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        failures.iter().any(
            |f| f.contains("tone 1000 Hz: the expected audio dropped out (")
                && f.contains("limit 100 ms")
        ),
        "{failures:?}\n{shown}"
    );
    assert_eq!(out.status.code(), Some(1), "{shown}");
}
