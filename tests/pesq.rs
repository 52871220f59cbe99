//! PESQ (ITU-T P.862) of real speech over RTP: `sipcheck run` with both roles on loopback, the
//! callee playing `fixtures/speech-8k.wav`, the caller scoring what it received against it.
//!
//! - On a clean loopback (PCMU) the score passes a minimum of 3.5.
//! - Inside a network namespace whose `iptables` drops RTP at random (0 %, 5 %, 20 %; see
//!   `tests/support/netns.rs`), the score falls as the loss rises. The minimum is set to 4.5
//!   (the top of the scale) so that each call fails `pesq_low` with its score in the message,
//!   which the JUnit report carries.
//! - A reference under 1 s is refused by `validate` and `run` at the step's line.

mod support;

use std::thread;
use std::time::Duration;

use support::netns::Netns;
use support::process;
use support::reports::Reports;
use support::{describe_output, free_port, repo_root, sipcheck_bin};

const SCENARIO: &str = "tests/peers/scenarios/pesq-direct.yaml";

/// `sipcheck run` of the scenario with `min`, in `ns` when given; its exit code, reports and
/// output.
fn run(ns: Option<&Netns>, min: &str, reports: &Reports) -> (Option<i32>, String) {
    run_file(&repo_root().join(SCENARIO), ns, min, reports)
}

/// [`run`] of the scenario at `path`; each call end's record goes to `calls.jsonl` of the
/// reports' directory.
fn run_file(
    path: &std::path::Path,
    ns: Option<&Netns>,
    min: &str,
    reports: &Reports,
) -> (Option<i32>, String) {
    let junit = reports.junit();
    let json = reports.json();
    let calls = reports.path("calls.jsonl");
    let args = [
        "run",
        path.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--calls",
        calls.to_str().unwrap(),
    ];
    let (callee, caller, rtp) = match ns {
        // Alone in its namespace: fixed ports.
        Some(_) => (
            "127.0.0.1:5060".to_string(),
            "127.0.0.1:5062".to_string(),
            "30000-30999",
        ),
        None => (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
            "43000-43999",
        ),
    };
    let mut cmd = match ns {
        Some(ns) => ns.exec(sipcheck_bin(), args),
        None => {
            let mut c = std::process::Command::new(sipcheck_bin());
            c.args(args);
            c
        }
    };
    cmd.env("CALLEE_LISTEN", &callee)
        .env("CALLER_LISTEN", &caller)
        .env("RTP_PORTS", rtp)
        .env("PESQ_MIN", min);
    let shown = format!("{cmd:?}");
    let out = process::run_with_timeout(cmd, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{shown} did not finish: {e:?}"));
    (out.status.code(), describe_output(&out))
}

/// The scores named by the `pesq_low` failures of a JUnit report.
fn scores(junit: &str) -> Vec<f64> {
    junit
        .split("PESQ ")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn speech_over_a_clean_loopback_passes_a_pesq_minimum_of_3_5() {
    let reports = Reports::new();
    let (code, shown) = run(None, "3.5", &reports);
    assert_eq!(code, Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["by_role"]["caller"]["passed"], 1, "{v}");
    assert_eq!(v["calls"]["by_role"]["callee"]["passed"], 1, "{v}");
    assert_eq!(v["audio"]["checked"], 1, "{v}\n{shown}");
    assert_eq!(v["audio"]["verified"], 1, "{v}\n{shown}");
    // The score runs off the role's loop: the BYE after it goes out (and is timed) when
    // it is sent, answered at once by the callee, not held up by the scoring.
    assert_eq!(v["metrics"]["bye_rtt"]["count"], 1, "{v}");
    let bye = v["metrics"]["bye_rtt"]["max_ms"].as_f64().unwrap();
    assert!(bye < 500.0, "BYE answered in {bye} ms\n{shown}");
}

#[test]
fn pesq_scores_are_a_run_wide_metric_with_thresholds_in_the_summary_and_each_call_record() {
    // The shipped scenario with thresholds on the run's PESQ: one that holds, one that
    // cannot (no score of speech through G.711 reaches 4.4).
    let dir = std::env::temp_dir().join(format!("sipcheck-pesq-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = repo_root().join("fixtures/speech-8k.wav");
    let text = std::fs::read_to_string(repo_root().join(SCENARIO))
        .unwrap()
        .replace("../../../fixtures/speech-8k.wav", fixture.to_str().unwrap())
        + "thresholds:\n  pesq.p5: \">= 3.0\"\n  pesq.max: \">= 4.4\"\n";
    let scenario = dir.join("pesq-thresholds.yaml");
    std::fs::write(&scenario, text).unwrap();
    let reports = Reports::new();
    let (code, shown) = run_file(&scenario, None, "3.5", &reports);
    let _ = std::fs::remove_dir_all(&dir);
    // The call passed; a threshold did not.
    assert_eq!(code, Some(99), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 1, "{v}\n{shown}");
    let pesq = &v["quality"]["pesq"];
    assert_eq!(pesq["count"], 1, "{v}");
    let score = pesq["min"].as_f64().unwrap();
    assert!((3.5..4.4).contains(&score), "{v}");
    assert_eq!(pesq["p5"].as_f64(), Some(score), "{v}");
    let thresholds = v["thresholds"].as_array().unwrap();
    let by_name = |n: &str| {
        thresholds
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no {n} threshold: {v}"))
    };
    assert_eq!(by_name("pesq.p5")["passed"], true, "{v}");
    assert_eq!(by_name("pesq.p5")["unit"], "score", "{v}");
    assert_eq!(by_name("pesq.p5")["actual"].as_f64(), Some(score), "{v}");
    assert_eq!(by_name("pesq.max")["passed"], false, "{v}");
    assert!(shown.contains("pesq             p5"), "{shown}");
    // The caller's record carries its score; the callee scored nothing.
    let records = std::fs::read_to_string(reports.path("calls.jsonl")).unwrap();
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let expected = if r["side"] == "caller" {
            serde_json::json!(score)
        } else {
            serde_json::Value::Null
        };
        assert_eq!(r["quality"]["pesq"], expected, "{r}");
    }
}

/// One call with RTP dropped at random with probability `loss`: the caller's PESQ.
fn pesq_at(loss: f64) -> (f64, String) {
    let ns = Netns::create("pesq").unwrap_or_else(|e| panic!("{e:#}"));
    if loss > 0.0 {
        let p = format!("{loss}");
        ns.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "30000:30999",
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
    let reports = Reports::new();
    let (code, shown) = run(Some(&ns), "4.5", &reports);
    let junit = reports.junit_text();
    let shown = format!("{:.0} % loss:\n{shown}\n{junit}", loss * 100.0);
    assert_eq!(code, Some(1), "{shown}");
    let v = reports.summary();
    support::reports::assert_schema(&v);
    assert_eq!(v["failures"]["pesq_low"], 1, "{v}\n{shown}");
    let found = scores(&junit);
    assert!(!found.is_empty(), "no score in the report\n{shown}");
    (found[0], shown)
}

#[test]
fn the_pesq_score_falls_as_rtp_loss_rises() {
    let results: Vec<(f64, String)> = thread::scope(|s| {
        let runs: Vec<_> = [0.0, 0.05, 0.20]
            .into_iter()
            .map(|loss| s.spawn(move || pesq_at(loss)))
            .collect();
        runs.into_iter()
            .map(|h| h.join().expect("pesq run"))
            .collect()
    });
    let [(clean, a), (five, b), (twenty, c)] = &results[..] else {
        unreachable!()
    };
    let all = format!("{a}\n{b}\n{c}");
    assert!(*clean >= 3.5, "clean loopback: PESQ {clean}\n{all}");
    assert!(
        clean - five >= 0.3,
        "5 % loss scored {five}, clean {clean}\n{all}"
    );
    assert!(
        five - twenty >= 0.3,
        "20 % loss scored {twenty}, 5 % {five}\n{all}"
    );
}

#[test]
fn a_reference_shorter_than_a_second_is_refused_where_the_step_is_written() {
    let dir = std::env::temp_dir().join(format!("sipcheck-pesq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Half a second of 8 kHz mono 16-bit silence.
    let mut wav = Vec::new();
    let data = 4000u32 * 2;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    wav.resize(wav.len() + data as usize, 0);
    std::fs::write(dir.join("short.wav"), wav).unwrap();
    let scenario = dir.join("short.yaml");
    std::fs::write(
        &scenario,
        "name: short
target: { direct: true, domain: 127.0.0.1 }
accounts:
  range: { from: 2200, count: 2 }
roles:
  callee:
    accounts: 2200
    listen: 127.0.0.1:5999
    steps:
      - answer
      - wait_for: bye
  caller:
    accounts: 2201
    steps:
      - call: { to: \"sip:{peer}@127.0.0.1:5999\", peer: callee }
      - expect: { pesq: { reference: short.wav, min: 3.5 } }
      - hangup
load: { rate: 1/s, total_calls: 1 }
",
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = support::run_sipcheck_with_timeout(
            [command, scenario.to_str().unwrap()],
            &[],
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
        assert!(
            stderr.contains("short.yaml:16:9: cannot score against short.wav: a PESQ reference lasts 1 s to 30 s; this one lasts 0.5 s"),
            "{command}: {}",
            describe_output(&out)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn call_expect_pesq_scores_the_speech_answer_plays_and_never_passes_under_its_minimum() {
    let fixture = repo_root().join("fixtures/speech-8k.wav");
    let fixture = fixture.to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = support::responder::Responder::start(
        &["--listen", &listen, "--play-wav", fixture, "--calls", "2"],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    let call = |min: &str, duration: &str| {
        support::run_sipcheck(
            [
                "call",
                uri.as_str(),
                "--expect-pesq",
                &format!("{fixture}{min}"),
                "--duration",
                duration,
                "--json",
            ],
            &[],
        )
    };
    // 11 s of speech: recorded for 12 s, so a 5 s call is refused before any SIP.
    let short = call(":3.5", "5s");
    assert_eq!(short.status.code(), Some(2), "{}", describe_output(&short));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("--duration 5s is too short"),
        "{}",
        describe_output(&short)
    );
    let out = call(":3.5", "13s");
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let score = v["pesq"]["score"].as_f64().expect("a score");
    assert!((3.5..=4.5).contains(&score), "{v}");
    assert_eq!(v["pesq"]["min"], 3.5, "{v}");
    assert!(v["pesq"]["mos_lqo"].as_f64().is_some(), "{v}");
    // The same speech against a minimum no G.711 call reaches: a failure naming the score.
    let out = call(":4.5", "13s");
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let failures = v["failures"].to_string();
    assert!(failures.contains("below the minimum 4.5"), "{shown}");
    assert!(v["pesq"]["score"].as_f64().is_some(), "{v}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}
