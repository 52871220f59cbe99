//! Call outcomes that never lie: a BYE answered with an error or never answered, a CANCEL
//! refused or never followed by its 487, and planned calls that never started, each fail
//! `call`, `answer` and `run`, named. Against real SIPp scenarios (`tests/peers/`), Kamailio
//! and sipcheck itself.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::kamailio::Kamailio;
use support::process::RunDir;
use support::reports::{run_scenario as run, Reports};
use support::responder::Responder;
use support::sipp::Sipp;
use support::{describe_output, free_port, repo_root, run_sipcheck};

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: not JSON\n{}", describe_output(out)))
}

fn failures(v: &Value) -> Vec<String> {
    v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// A SIPp scenario of `tests/peers/` with its media on loopback.
fn sipp(scenario: &str) -> Sipp {
    Sipp::start_uas(scenario, &["-mi", "127.0.0.1"]).expect("start sipp")
}

#[test]
fn call_fails_when_its_bye_is_answered_481() {
    let sipp = sipp("uas_bye_481.xml");
    let uri = format!("sip:bye481@{}", sipp.addr);
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--duration",
            "500ms",
            "--no-media-ok",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    assert_eq!(v["final_code"], 200, "{shown}");
    assert_eq!(v["bye_code"], 481, "{shown}");
    assert_eq!(
        failures(&v),
        ["bye_failed: 481 Call/Transaction Does Not Exist"],
        "{shown}"
    );
}

#[test]
fn call_fails_when_its_bye_is_never_answered() {
    let sipp = sipp("uas_bye_silent.xml");
    let uri = format!("sip:silent@{}", sipp.addr);
    let started = Instant::now();
    // Timer F at 64·T1 = 3.2 s.
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--duration",
            "500ms",
            "--no-media-ok",
            "--t1",
            "50ms",
            "--json",
        ],
        &[],
    );
    let took = started.elapsed();
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["bye_code"], Value::Null, "{shown}");
    assert_eq!(
        failures(&v),
        ["bye_failed: timeout (Timer F expired after 3.2 s)"],
        "{shown}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}\n{shown}");
}

#[test]
fn call_fails_quickly_when_the_cancel_is_refused_and_no_487_comes() {
    let sipp = sipp("uas_cancel_refused.xml");
    let uri = format!("sip:refuser@{}", sipp.addr);
    let started = Instant::now();
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--cancel-after",
            "1s",
            "--t1",
            "50ms",
            "--json",
        ],
        &[],
    );
    let took = started.elapsed();
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["cancel_code"], 403, "{shown}");
    assert_eq!(v["final_code"], Value::Null, "{shown}");
    assert_eq!(
        v["end_reason"],
        "CANCEL refused: 403 Forbidden, and no final response to the INVITE within 3.2 s",
        "{shown}"
    );
    assert_eq!(
        failures(&v)[0],
        "cancel failed: CANCEL refused: 403 Forbidden, and no final response to the INVITE \
         within 3.2 s",
        "{shown}"
    );
    // 1 s to the CANCEL, then 64·T1: not the 33 s of the default T1.
    assert!(took < Duration::from_secs(8), "took {took:?}\n{shown}");
}

#[test]
fn answer_fails_a_call_whose_bye_the_caller_answers_481() {
    let sipp_bin = support::process::require_program("sipp", "sip-tester").expect("sipp");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--duration",
            "500ms",
            "--no-rtp",
            "--calls",
            "1",
            "--json",
        ],
        &[],
    );
    let scenario = support::peers_dir().join("uac_bye_481.xml");
    let mut cmd = std::process::Command::new(sipp_bin);
    cmd.arg("-sf")
        .arg(&scenario)
        .args([&listen, "-i", "127.0.0.1", "-mi", "127.0.0.1", "-m", "1"])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .arg("-p")
        .arg(free_port().to_string())
        .current_dir(answer.dir());
    let out = support::process::run_with_timeout(cmd, Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("sipp did not finish\n{}", answer.output()));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "sipp's call failed\n{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(1),
        "{shown}"
    );
    let stdout = answer.stdout();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let call = lines.iter().find(|l| l["kind"] == "call").expect(&shown);
    assert_eq!(call["verdict"], "fail", "{shown}");
    assert_eq!(call["bye_code"], 481, "{shown}");
    assert_eq!(
        call["failures"],
        serde_json::json!(["bye_failed: 481 Call/Transaction Does Not Exist"]),
        "{shown}"
    );
    let totals = lines.iter().find(|l| l["kind"] == "totals").expect(&shown);
    assert_eq!(totals["failed"], 1, "{shown}");
}

#[test]
fn run_fails_a_call_whose_bye_is_answered_481_at_its_hangup_step() {
    let sipp = sipp("uas_bye_481.xml");
    let addr = sipp.addr.to_string();
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-bye-481.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = reports.summary();
    assert_eq!(v["verdict"], "calls_failed", "{v}");
    assert_eq!(v["calls"]["failed"], 1, "{v}");
    assert_eq!(v["failures"]["bye_failed_481"], 1, "{v}");
    assert_eq!(v["failures"].as_object().unwrap().len(), 1, "{v}");
    let sample = &v["failed_call_samples"][0];
    assert_eq!(sample["bye_code"], 481, "{v}");
    assert_eq!(sample["final_code"], 200, "{v}");
    let failure = &sample["failures"][0];
    assert_eq!(failure["step"], "hangup", "{v}");
    assert_eq!(failure["line"], 15, "{v}");
    assert_eq!(failure["kind"], "bye_failed_481", "{v}");
    assert_eq!(
        failure["message"], "bye_failed: 481 Call/Transaction Does Not Exist",
        "{v}"
    );
    assert!(
        reports.junit_text().contains("bye_failed: 481"),
        "{}",
        reports.junit_text()
    );
}

#[test]
fn planned_calls_that_never_started_fail_the_run_unless_allowed() {
    let listen = format!("127.0.0.1:{}", free_port());
    let envs = [("CALLEE_LISTEN", listen.as_str())];
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/not-started.yaml",
        &[],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not started: 2"), "{shown}");
    assert!(
        stdout.contains("✗ calls.not_started <= 0  actual 2"),
        "{shown}"
    );
    let v = reports.summary();
    assert_eq!(v["verdict"], "thresholds_failed", "{v}");
    assert_eq!(v["calls"]["started"], 1, "{v}");
    assert_eq!(v["calls"]["passed"], 1, "{v}");
    assert_eq!(v["calls"]["not_started"], 2, "{v}");
    let failed: Vec<&Value> = v["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["name"], "calls.not_started", "{v}");
    assert_eq!(failed[0]["condition"], "<= 0", "{v}");
    assert_eq!(failed[0]["actual"], 2.0, "{v}");
    let junit = reports.junit_text();
    assert!(
        junit.contains(r#"<failure message="actual 2, limit &lt;= 0" type="threshold">"#),
        "{junit}"
    );

    // The scenario may allow them: its own threshold replaces the built-in one.
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/not-started.yaml",
        &["--set", "thresholds.calls.not_started=<= 2"],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["verdict"], "passed", "{v}");
    assert_eq!(v["calls"]["not_started"], 2, "{v}");
    let thresholds = v["thresholds"].as_array().unwrap();
    assert_eq!(thresholds.len(), 1, "{v}");
    assert_eq!(thresholds[0]["condition"], "<= 2", "{v}");
}

#[test]
fn the_cancel_scenario_passes_through_kamailio_with_digest_auth() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let dir = RunDir::new("users").unwrap();
    let csv = dir.join("users.csv");
    let users: String = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| format!("{u},{}\n", Kamailio::password_for(u)))
        .collect();
    std::fs::write(&csv, format!("user,password\n{users}")).unwrap();
    let reports = Reports::new();
    let out = run(
        "scenarios/cancel-busy-noanswer.yaml",
        &[],
        &[
            ("SIP_SERVER", server.as_str()),
            ("SIP_USERS_CSV", csv.to_str().unwrap()),
        ],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["verdict"], "passed", "{v}");
    // Every role passed: the caller's `expect: { final: 487 }` saw the 487 of its
    // authenticated INVITE (not the 407 it answered), the ringing callee its CANCEL.
    for role in ["busy", "no_answer", "calls_busy", "gives_up"] {
        let r = &v["calls"]["by_role"][role];
        assert_eq!(r["started"], 1, "{role}: {v}");
        assert_eq!(r["passed"], 1, "{role}: {v}");
        assert_eq!(r["registrations"]["ok"], 1, "{role}: {v}");
    }
    assert_eq!(v["failures"], serde_json::json!({}), "{v}");
    // Nothing waited for a timer: the CANCEL goes 3 s after the INVITE.
    assert!(v["duration_s"].as_f64().unwrap() < 10.0, "{v}");
}

#[test]
fn run_fails_a_call_whose_cancel_is_refused_at_its_cancel_step() {
    let sipp = sipp("uas_cancel_refused.xml");
    let addr = sipp.addr.to_string();
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-cancel-refused.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["failed"], 1, "{v}");
    assert_eq!(v["failures"]["cancel_failed_403"], 1, "{v}");
    assert_eq!(v["failures"].as_object().unwrap().len(), 1, "{v}");
    let sample = &v["failed_call_samples"][0];
    assert_eq!(sample["final_code"], Value::Null, "{v}");
    let failure = &sample["failures"][0];
    assert_eq!(failure["step"], "cancel", "{v}");
    assert_eq!(failure["line"], 16, "{v}");
    assert_eq!(
        failure["message"],
        "CANCEL refused: 403 Forbidden, and no final response to the INVITE within 32.0 s",
        "{v}"
    );
}

#[test]
fn a_call_cancelled_before_any_provisional_then_challenged_is_no_cancellation() {
    use support::hostile::HostilePeer;
    // No provisional response; 1.5 s later a 407 (the CANCEL, due at 300 ms, waits for a
    // provisional that never comes: RFC 3261 §9.1).
    let peer = HostilePeer::start(|p| {
        let (invite, from) = p
            .recv_method("INVITE", Duration::from_secs(10))
            .expect("INVITE");
        let since = Instant::now();
        while since.elapsed() < Duration::from_millis(1500) {
            // The INVITE's retransmissions, absorbed.
            let _ = p.recv(Duration::from_millis(1500).saturating_sub(since.elapsed()));
        }
        let challenge = r#"Proxy-Authenticate: Digest realm="x", nonce="n""#.to_string();
        p.respond(
            &invite,
            from,
            407,
            "Proxy Authentication Required",
            &[challenge],
            None,
        );
        let _ = p.recv_method("ACK", Duration::from_secs(5));
    });
    let uri = format!("sip:bob@{}", peer.addr);
    let out = run_sipcheck(["call", &uri, "--cancel-after", "300ms", "--json"], &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["final_code"], 407, "{shown}");
    assert_eq!(
        failures(&v)[0],
        "expected 487 after the CANCEL, but the INVITE got 407",
        "{shown}"
    );
}

#[test]
fn a_callee_waiting_for_a_bye_that_never_comes_gives_up_after_the_load() {
    let sipp_bin = support::process::require_program("sipp", "sip-tester").expect("sipp");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let scenario = repo_root().join("tests/peers/scenarios/callee-waits.yaml");
    let mut run = std::process::Command::new(support::sipcheck_bin());
    run.arg("run")
        .arg(&scenario)
        .arg("--json")
        .arg(reports.json())
        .env("CALLEE_LISTEN", &listen)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(reports.path("stdout")).unwrap())
        .stderr(std::fs::File::create(reports.path("stderr")).unwrap());
    let started = Instant::now();
    let mut run = run.spawn().expect("start sipcheck run");
    assert!(
        support::process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            support::sipp::port_bound(port)
        }),
        "the callee never listened"
    );
    // SIPp calls the callee (user 6320) and waits up to 60 s for its BYE.
    let mut cmd = std::process::Command::new(sipp_bin);
    cmd.arg("-sf")
        .arg(support::peers_dir().join("uac_no_bye.xml"))
        .args([&listen, "-s", "6320", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-m", "1", "-nostdin", "-timeout", "70s", "-timeout_error"])
        .arg("-p")
        .arg(free_port().to_string())
        .current_dir(reports.dir.path());
    let sipp = support::process::run_with_timeout(cmd, Duration::from_secs(80));
    let status = support::process::wait_timeout(&mut run, Duration::from_secs(60));
    if status.is_none() {
        let _ = run.kill();
        let _ = run.wait();
    }
    let took = started.elapsed();
    let shown = format!(
        "--- run stdout ---\n{}\n--- run stderr ---\n{}",
        support::process::read_lossy(&reports.path("stdout")),
        support::process::read_lossy(&reports.path("stderr"))
    );
    let sipp = sipp.unwrap_or_else(|_| panic!("sipp did not finish\n{shown}"));
    assert_eq!(
        sipp.status.code(),
        Some(0),
        "SIPp got the callee's BYE\n{}\n{shown}",
        describe_output(&sipp)
    );
    let status = status.unwrap_or_else(|| panic!("the run did not end\n{shown}"));
    // The callee's failed call fails the run, though its caller passed.
    assert_eq!(status.code(), Some(1), "{shown}");
    let v = reports.summary();
    assert_eq!(v["verdict"], "calls_failed", "{v}");
    let callee = &v["calls"]["by_role"]["callee"];
    assert_eq!(callee["started"], 2, "{v}");
    assert_eq!(callee["passed"], 1, "{v}");
    assert_eq!(callee["failed"], 1, "{v}");
    let sample = v["failed_call_samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "callee")
        .expect("a failed callee call");
    let failure = &sample["failures"][0];
    assert_eq!(failure["step"], "wait_for", "{v}");
    assert_eq!(failure["line"], 17, "{v}");
    assert_eq!(
        failure["message"], "Bye did not come: the load was over 35 s before",
        "{v}"
    );
    // The caller's call ends at about 3 s; then 35 s, not an hour.
    assert!(took < Duration::from_secs(60), "took {took:?}\n{shown}");
}
