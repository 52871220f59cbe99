//! `sipcheck call` against `sipcheck answer` over a lossy network: both run inside one network
//! namespace whose `iptables` drops each UDP datagram received — SIP and RTP alike, in both
//! directions — with probability P (this kernel has no netem; see `tests/support/netns.rs`).
//!
//! # Why these sizes
//!
//! Each datagram is dropped independently, so the lost packets of a stream of `n` are
//! Binomial(n, P) and the measured loss has a standard deviation σ = sqrt(P(1−P)/n). The
//! check is "pooled RTP loss, over every call and both directions, within ±1 percentage
//! point of P"; for a false failure below 1e-4 the point must lie ≥ 3.89 σ away
//! (two-sided normal tail), i.e. n ≥ P(1−P)·(3.89/0.01)² packets:
//!
//! | P | n needed | plan (calls × duration × 2 directions × 50 pkt/s) | σ | 1 pp = | P(false failure) |
//! |---|---|---|---|---|---|
//! | 5 % | 7,190 | 5 × 20 s → 10,000 | 0.218 pp | 4.6 σ | 4e-6 |
//! | 20 % | 24,200 | 8 × 35 s → 28,000 | 0.239 pp | 4.2 σ | 3e-5 |
//!
//! (One 5 s call — 250 packets a direction — has σ = 1.4 pp at 5 % and 2.5 pp at 20 %: useless
//! for a ±1 pp check.) The check still bites: a sipcheck that counted loss 1 pp wrong would fail
//! it about half the time, 1.5 pp wrong almost always. The tests also compare the loss sipcheck
//! reports with the RTP drops iptables itself counted, which catches much smaller errors.
//!
//! SIP survives loss by retransmission. An INVITE is sent at most 7 times (Timer A doubles up
//! to Timer B = 64·T1), so at 20 % a call fails with Timer B with probability 0.2⁷ = 1.3e-5:
//! 8 calls carry a false-failure floor of 1.0e-4 that no timer setting removes. Every other
//! transaction gets many more chances: the callers run `--t1 200ms --t2 200ms` (BYE re-sent every
//! 200 ms, 64 times) and the responder `--t1 1s` (its 2xx re-sent 17 times until the ACK comes).
//!
//! Whether SIP retransmissions happened is asserted only at 20 %. In a caller's own ladder a
//! retransmission shows when its INVITE (0.2) or its BYE or the BYE's 200 (0.36) was lost:
//! none in 8 calls has probability (0.8·0.64)⁸ = 5e-3, too often to assert. So 40 OPTIONS probes
//! (`--t1 100ms --t2 200ms`) run during the calls: each retransmits with probability
//! 1 − 0.8² = 0.36, none of 40 does with probability 0.64⁴⁰ = 2e-8; each is re-sent every
//! 200 ms for 6.4 s (32 tries), so a probe fails with probability 0.36³² ≈ 1e-14.
//!
//! The responder runs without `--calls N` and is stopped with SIGINT once every caller has
//! exited: with `--calls N` it exits the moment its last call ends, so when the 200 to that
//! call's BYE is lost (probability P) the BYE's retransmissions meet a closed port, the caller
//! waits out Timer F and fails ("RTP timeout"); seen at 5 %.
//!
//! A dropout of the expected tone fails a call from 100 ms on by default; at 20 % random loss
//! five frames in a row are lost about once in 4,000 frames, so both ends allow gaps up to 2 s
//! (`--max-gap 2s`): these runs check the loss figures, `tests/quality.rs` checks dropouts.
//!
//! Run time: the 20 % test takes about 40 s, the others run beside it.

mod support;

use std::fs::File;
use std::process::{Child, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::netns::Netns;
use support::process::{self, RunDir};
use support::{describe_output, sipcheck_bin};

/// The responder's SIP address inside the namespace.
const ANSWER_SIP: &str = "127.0.0.1:5060";
/// RTP ports of the callers and of the responder: disjoint from the SIP ports (5060 and
/// ephemeral ports from 32768), so that iptables can count RTP apart.
const CALLER_RTP: &str = "30000-30999";
const ANSWER_RTP: &str = "31000-31999";
const RTP_DPORTS: &str = "30000:31999";
/// Two-sided normal quantile for a false-failure probability of 1e-4.
const Z_1E4: f64 = 3.891;

/// `sipcheck answer` running in a namespace, its output in files; stopped by its PID.
struct Answer {
    child: Option<Child>,
    rundir: RunDir,
}

impl Answer {
    fn start(ns: &Netns, args: &[&str]) -> Answer {
        let rundir = RunDir::new("lossy-answer").expect("run dir");
        let stdout = File::create(rundir.join("stdout")).expect("stdout file");
        let stderr = File::create(rundir.join("stderr")).expect("stderr file");
        let mut cmd = ns.exec(sipcheck_bin(), ["answer"].iter().chain(args));
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

    fn stderr(&self) -> String {
        process::read_lossy(&self.rundir.join("stderr"))
    }

    fn output(&self) -> String {
        format!(
            "--- answer stdout ---\n{}\n--- answer stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Stops it as Ctrl-C would: SIGINT by its PID (SIGKILL after 10 s). Its exit code, and
    /// whether it was still running (it should be: nothing else stops it).
    fn interrupt(&mut self) -> (Option<i32>, bool) {
        let Some(mut child) = self.child.take() else {
            return (None, false);
        };
        let was_running = matches!(child.try_wait(), Ok(None));
        let status = process::stop_child(&mut child, "INT", Duration::from_secs(10));
        (status.and_then(|s| s.code()), was_running)
    }

    /// The JSON objects it printed with `kind` = `kind`.
    fn objects(&self, kind: &str) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == kind)
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

/// Runs `sipcheck ARGS` inside the namespace, with a time limit.
fn run_in(ns: &Netns, args: &[String], timeout: Duration) -> Output {
    let cmd = ns.exec(sipcheck_bin(), args);
    let shown = format!("{cmd:?}");
    match process::run_with_timeout(cmd, timeout) {
        Ok(out) => out,
        Err(process::RunError::Spawn(e)) => panic!("cannot start {shown}: {e}"),
        Err(process::RunError::TimedOut { stdout, stderr }) => panic!(
            "{shown} ran longer than {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// What one lossy run is made of.
struct Plan {
    label: &'static str,
    /// Drop probability of every UDP datagram received in the namespace.
    loss: f64,
    /// Concurrent calls.
    calls: usize,
    /// Each call's duration (`--duration`), seconds.
    duration_s: u64,
    /// OPTIONS probes sent (one after another) while the calls run.
    probes: usize,
}

/// The iptables INPUT rules of a run's namespace, in order.
const RULE_ALL_IN: usize = 0;
const RULE_RTP_IN: usize = 1;
const RULE_DROP: usize = 2;
const RULE_ALL_KEPT: usize = 3;
const RULE_RTP_KEPT: usize = 4;

/// What a lossy run produced.
struct Outcome {
    /// `sipcheck call --json` of each call, with its process output.
    callers: Vec<(Value, Output)>,
    /// The responder's `call` objects.
    answered: Vec<Value>,
    /// The responder's `totals` object.
    totals: Value,
    /// The responder's exit code on SIGINT, and whether it was still running then.
    answer_exit: (Option<i32>, bool),
    /// `sipcheck options --json` of each probe.
    probes: Vec<(Value, Output)>,
    /// iptables packet counters, by `RULE_*`.
    counters: Vec<u64>,
    /// Wall time of the calls.
    wall: Duration,
    /// Everything, for assertion messages.
    shown: String,
}

fn run_plan(plan: &Plan) -> Outcome {
    let ns = Netns::create(plan.label).unwrap_or_else(|e| panic!("{e:#}"));
    // Counters around the DROP rule: what arrived and what was kept, all UDP and RTP.
    let setup = (|| {
        ns.iptables(&["-A", "INPUT", "-p", "udp"])?;
        ns.count_udp(RTP_DPORTS)?;
        ns.drop_udp(plan.loss)?;
        ns.iptables(&["-A", "INPUT", "-p", "udp"])?;
        ns.count_udp(RTP_DPORTS)
    })();
    setup.unwrap_or_else(|e| panic!("{e:#}"));

    let mut answer = Answer::start(
        &ns,
        &[
            "--listen",
            ANSWER_SIP,
            "--play-tone",
            "1000",
            "--expect-tone",
            "440",
            // Random loss of 20 % drops 5 frames in a row (a 100 ms dropout, the default
            // limit) about once in 4,000 frames: these runs measure loss, not dropouts.
            "--max-gap",
            "2s",
            "--rtp-ports",
            ANSWER_RTP,
            "--t1",
            "1s",
            "--json",
        ],
    );

    let uri = format!("sip:bob@{ANSWER_SIP}");
    let call_args: Vec<String> = [
        "call",
        &uri,
        "--play-tone",
        "440",
        "--expect-tone",
        "1000",
        "--duration",
        &format!("{}s", plan.duration_s),
        "--max-gap",
        "2s",
        "--rtp-ports",
        CALLER_RTP,
        "--t1",
        "200ms",
        "--t2",
        "200ms",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let probe_args: Vec<String> = [
        "options",
        &format!("sip:{ANSWER_SIP}"),
        "--t1",
        "100ms",
        "--t2",
        "200ms",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Call setup (Timer B = 12.8 s at most), the call, the BYE.
    let call_timeout = Duration::from_secs(plan.duration_s + 40);

    let started = Instant::now();
    let (outputs, probe_outputs) = thread::scope(|s| {
        let callers: Vec<_> = (0..plan.calls)
            .map(|_| s.spawn(|| run_in(&ns, &call_args, call_timeout)))
            .collect();
        let probes = s.spawn(|| {
            (0..plan.probes)
                .map(|_| run_in(&ns, &probe_args, Duration::from_secs(20)))
                .collect::<Vec<_>>()
        });
        let outputs: Vec<Output> = callers
            .into_iter()
            .map(|h| h.join().expect("caller thread"))
            .collect();
        (outputs, probes.join().expect("probe thread"))
    });
    let wall = started.elapsed();
    // Every caller has finished its BYE transaction: now the responder may go.
    let answer_exit = answer.interrupt();
    let counters = ns.input_counts().unwrap_or_else(|e| panic!("{e:#}"));

    let mut shown = format!(
        "namespace {} ({:.0} % loss), iptables counters {counters:?}\n{}",
        ns.name(),
        plan.loss * 100.0,
        answer.output()
    );
    let parse = |out: Output, shown: &mut String| {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sipcheck printed no JSON ({e}):\n{}\n{shown}",
                describe_output(&out)
            )
        });
        shown.push_str(&format!("\n{}", describe_output(&out)));
        (v, out)
    };
    let callers: Vec<_> = outputs.into_iter().map(|o| parse(o, &mut shown)).collect();
    let probes: Vec<_> = probe_outputs
        .into_iter()
        .map(|o| parse(o, &mut shown))
        .collect();
    let answered = answer.objects("call");
    let totals = answer.objects("totals").pop().unwrap_or(Value::Null);
    drop(answer);
    Outcome {
        callers,
        answered,
        totals,
        answer_exit,
        probes,
        counters,
        wall,
        shown,
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a count, got {v}"))
}

/// Retransmissions (sent by sipcheck) in a `--json` ladder, by request line method.
fn retransmissions(v: &Value) -> Vec<String> {
    v["ladder"]
        .as_array()
        .map(|rungs| {
            rungs
                .iter()
                .filter(|r| r["retransmission"] == true)
                .map(|r| {
                    r["line"]
                        .as_str()
                        .unwrap_or("?")
                        .split(' ')
                        .next()
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Lost and expected RTP packets summed over media summaries.
fn pooled<'a>(media: impl Iterator<Item = &'a Value>) -> (u64, u64) {
    media.fold((0, 0), |(lost, expected), m| {
        (lost + u(&m["lost"]), expected + u(&m["packets_expected"]))
    })
}

/// Runs the plan and checks everything that must hold at any loss rate; returns the outcome
/// and a one-line summary of what was measured.
fn run_and_check(plan: &Plan) -> (Outcome, String) {
    let o = run_plan(plan);
    let shown = &o.shown;

    // Every call passed on both ends: answered, tones heard both ways.
    assert_eq!(o.callers.len(), plan.calls);
    for (v, out) in &o.callers {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{shown}",
            describe_output(out)
        );
        assert_eq!(v["verdict"], "pass", "{shown}");
        assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    }
    assert_eq!(o.answer_exit, (Some(0), true), "{shown}");
    assert_eq!(o.answered.len(), plan.calls, "{shown}");
    assert_eq!(o.totals["received"], plan.calls, "{shown}");
    assert_eq!(o.totals["passed"], plan.calls, "{shown}");
    assert_eq!(o.totals["failed"], 0, "{shown}");
    // The responder's own health over every call: skipped frames add up, lateness is measured.
    let skipped: u64 = o
        .answered
        .iter()
        .map(|c| u(&c["media"]["frames_skipped"]))
        .sum();
    assert_eq!(u(&o.totals["frames_skipped"]), skipped, "{shown}");
    assert!(
        o.totals["pacing_lateness_ms"]["p50"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0,
        "{shown}"
    );
    for a in &o.answered {
        assert_eq!(a["verdict"], "pass", "{shown}");
        assert_eq!(a["media"]["tones"][0]["detected"], true, "{shown}");
    }
    // Every probe succeeded.
    for (v, out) in &o.probes {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{shown}",
            describe_output(out)
        );
        assert_eq!(v["verdict"], "pass", "{shown}");
    }

    // RTP loss as sipcheck measured it, each direction and pooled.
    let (down_lost, down_expected) = pooled(o.callers.iter().map(|(v, _)| &v["media"]));
    let (up_lost, up_expected) = pooled(o.answered.iter().map(|a| &a["media"]));
    let lost = down_lost + up_lost;
    let expected = down_expected + up_expected;
    let measured = lost as f64 / expected as f64;
    let sigma = (plan.loss * (1.0 - plan.loss) / expected as f64).sqrt();

    // What iptables dropped: all UDP, and RTP alone.
    let c = &o.counters;
    assert_eq!(c.len(), 5, "{shown}");
    let rtp_in = c[RULE_RTP_IN];
    let rtp_dropped = rtp_in - c[RULE_RTP_KEPT];
    let all_dropped = c[RULE_DROP];
    assert_eq!(c[RULE_ALL_IN] - c[RULE_ALL_KEPT], all_dropped, "{shown}");
    let sip_dropped = all_dropped - rtp_dropped;

    let call_retrans: Vec<String> = o
        .callers
        .iter()
        .flat_map(|(v, _)| retransmissions(v))
        .collect();
    let probes_retransmitting = o
        .probes
        .iter()
        .filter(|(v, _)| !retransmissions(v).is_empty())
        .count();
    let summary = format!(
        "{}: injected {:.1} %, {} calls x {} s in {:.1} s; RTP loss reported {:.3} % \
         ({lost}/{expected}; caller<-answer {down_lost}/{down_expected} = {:.3} %, \
         answer<-caller {up_lost}/{up_expected} = {:.3} %), sigma {:.3} pp, deviation {:+.2} sigma; \
         iptables dropped {rtp_dropped}/{rtp_in} RTP = {:.3} % and {sip_dropped} other (SIP) \
         datagrams; caller retransmissions {} {:?}; probes retransmitting {}/{}",
        plan.label,
        plan.loss * 100.0,
        plan.calls,
        plan.duration_s,
        o.wall.as_secs_f64(),
        measured * 100.0,
        100.0 * down_lost as f64 / down_expected.max(1) as f64,
        100.0 * up_lost as f64 / up_expected.max(1) as f64,
        sigma * 100.0,
        if sigma > 0.0 {
            (measured - plan.loss) / sigma
        } else {
            0.0
        },
        100.0 * rtp_dropped as f64 / rtp_in.max(1) as f64,
        call_retrans.len(),
        call_retrans,
        probes_retransmitting,
        o.probes.len(),
    );
    println!("{summary}");

    // Enough packets for ±1 pp to be a < 1e-4 false-failure check (see the module doc).
    assert!(
        Z_1E4 * sigma <= 0.01,
        "only {expected} RTP packets: sigma {:.3} pp is too wide for a ±1 pp check\n{summary}\n{shown}",
        sigma * 100.0
    );
    assert!(
        (measured - plan.loss).abs() <= 0.01,
        "reported RTP loss {:.3} % is not within 1 pp of the injected {:.1} %\n{summary}\n{shown}",
        measured * 100.0,
        plan.loss * 100.0
    );
    // sipcheck cannot see more losses than iptables made (no other drops on loopback), and
    // sees nearly all of them: a drop escapes the count only before a stream's first or after
    // its last received packet (RFC 3550 A.3), or after a receiver closed its socket.
    let tolerance = 5 * plan.calls as u64 + rtp_dropped / 100;
    assert!(
        lost <= rtp_dropped && rtp_dropped - lost <= tolerance,
        "sipcheck counted {lost} lost RTP packets, iptables dropped {rtp_dropped} \
         (tolerance {tolerance})\n{summary}\n{shown}"
    );
    (o, summary)
}

#[test]
fn five_percent_loss_passes_and_is_measured_within_one_point() {
    run_and_check(&Plan {
        label: "loss5",
        loss: 0.05,
        calls: 5,
        duration_s: 20,
        probes: 0,
    });
}

#[test]
fn twenty_percent_loss_needs_retransmissions_and_is_measured_within_one_point() {
    let (o, summary) = run_and_check(&Plan {
        label: "loss20",
        loss: 0.20,
        calls: 8,
        duration_s: 35,
        probes: 40,
    });
    let probes_retransmitting = o
        .probes
        .iter()
        .filter(|(v, _)| !retransmissions(v).is_empty())
        .count();
    assert!(
        probes_retransmitting > 0,
        "no OPTIONS probe of 40 was retransmitted at 20 % loss\n{summary}\n{}",
        o.shown
    );
    assert!(o.counters[RULE_DROP] > 0, "{summary}\n{}", o.shown);
}

#[test]
fn no_loss_control_run_reports_zero() {
    let (o, summary) = run_and_check(&Plan {
        label: "loss0",
        loss: 0.0,
        calls: 1,
        duration_s: 5,
        probes: 3,
    });
    assert_eq!(o.counters[RULE_DROP], 0, "{summary}\n{}", o.shown);
    for (v, _) in &o.callers {
        assert_eq!(v["media"]["lost"], 0, "{summary}\n{}", o.shown);
        assert_eq!(v["media"]["loss_percent"], 0.0, "{summary}\n{}", o.shown);
        assert!(retransmissions(v).is_empty(), "{summary}\n{}", o.shown);
    }
    for a in &o.answered {
        assert_eq!(a["media"]["lost"], 0, "{summary}\n{}", o.shown);
    }
    for (v, _) in &o.probes {
        assert!(retransmissions(v).is_empty(), "{summary}\n{}", o.shown);
    }
}

#[test]
fn a_namespace_that_cannot_be_created_is_an_error_with_the_reason() {
    // `ip` refuses names with a slash: the error must carry its words, not just "failed".
    let err = Netns::create("bad/label").expect_err("a namespace name with a slash");
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot create network namespace") && text.contains("Invalid netns name"),
        "{text}"
    );
}
