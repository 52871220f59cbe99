//! `sipcheck run` and `sipcheck validate`: the shipped self-test, a load through Kamailio,
//! failures reported with their reason, thresholds deciding the exit code, bad YAML refused.

mod support;

use std::time::Duration;

use support::kamailio::Kamailio;
use support::process::RunDir;
use support::reports::{assert_schema, assert_valid_junit, run_scenario as run, Reports};
use support::{describe_output, free_port, repo_root, run_sipcheck_with_timeout};

#[test]
fn dtmf_expectations_in_a_scenario_pass_both_ways_and_fail_on_the_wrong_digits() {
    let callee = format!("127.0.0.1:{}", support::free_port());
    let caller = format!("127.0.0.1:{}", support::free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/dtmf-direct.yaml",
        &[],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 2, "{v}");
    assert_eq!(v["dtmf"]["checked"], 4, "{v}");
    assert_eq!(v["dtmf"]["verified"], 4, "{v}");

    // The callee now waits for digits the caller never sends.
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/dtmf-direct.yaml",
        &["--set", "roles.caller.steps.3.dtmf=34#"],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    // Both callees miss 12#, end their script (hanging up), so neither caller hears its 9.
    assert_eq!(v["failures"]["dtmf_missing"], 4, "{v}");
    assert_eq!(v["dtmf"]["verified"], 0, "{v}");
}

/// scenarios/selftest.yaml listens on fixed ports (5070, 5080): the tests that run it take
/// turns.
fn selftest_ports() -> std::sync::MutexGuard<'static, ()> {
    static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn the_selftest_scenario_passes_out_of_the_box() {
    let _ports = selftest_ports();
    let reports = Reports::new();
    let out = run("scenarios/selftest.yaml", &[], &[], &reports);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["schema"], "sipcheck.run/1");
    assert_eq!(v["verdict"], "passed", "{shown}");
    assert_eq!(v["calls"]["started"], 10, "{v}");
    assert_eq!(v["calls"]["passed"], 10, "{v}");
    assert_eq!(v["audio"]["verified_ratio"], 1.0, "{v}");
    assert!(
        v["metrics"]["invite_to_200"]["count"].as_u64().unwrap() >= 10,
        "{v}"
    );
    assert!(
        v["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["passed"] == true),
        "{v}"
    );
    let junit = reports.junit_text();
    assert!(junit.contains("<testsuite"), "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
}

#[test]
fn a_hundred_callers_and_callees_through_kamailio_at_20_per_second() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/kamailio-100.yaml",
        &[],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["started"], 100, "{v}");
    assert_eq!(v["calls"]["passed"], 100, "{v}");
    // Each side verified the other's tone: 100 checks on each side.
    assert_eq!(v["audio"]["checked"], 200, "{v}");
    assert_eq!(v["audio"]["verified"], 200, "{v}");
    assert_eq!(v["registrations"]["ok"], 200, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 200, "{v}");
    assert_eq!(v["rtp"]["packets_lost"], 0, "{v}");
    // Nothing left behind in the registrar.
    for user in ["3000", "3099", "3100", "3199"] {
        assert!(kam.bindings(user).is_empty(), "{user} still registered");
    }
}

#[test]
fn busy_callees_give_exactly_those_failures_in_junit_and_json() {
    let listen = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/busy.yaml",
        &[],
        &[("CALLEE_LISTEN", listen.as_str())],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = reports.summary();
    assert_eq!(v["verdict"], "calls_failed", "{v}");
    assert_eq!(v["calls"]["started"], 3, "{v}");
    assert_eq!(v["calls"]["failed"], 3, "{v}");
    assert_eq!(v["failures"]["sip_486"], 3, "{v}");
    assert_eq!(v["failures"].as_object().unwrap().len(), 1, "{v}");
    let sample = &v["failed_call_samples"][0];
    assert!(
        sample["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("486 Busy Here"),
        "{v}"
    );
    assert!(
        !sample["ladder"].as_array().unwrap().is_empty(),
        "a sample carries its ladder: {v}"
    );
    let junit = reports.junit_text();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(junit.contains("486 Busy Here"), "{junit}");
    assert!(
        junit.contains(sample["call_id"].as_str().unwrap()),
        "{junit}"
    );
}

#[test]
fn a_threshold_set_too_tight_fails_the_run_with_exit_99() {
    let _ports = selftest_ports();
    let reports = Reports::new();
    let out = run(
        "scenarios/selftest.yaml",
        &["--set", "thresholds.invite_to_200.p99=< 1ms"],
        &[],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('✗'),
        "{shown}"
    );
    let v = reports.summary();
    assert_eq!(v["verdict"], "thresholds_failed", "{v}");
    let failed: Vec<_> = v["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["name"], "invite_to_200.p99", "{v}");
    assert!(reports.junit_text().contains("invite_to_200.p99"));
}

#[test]
fn broken_yaml_is_refused_with_positions_and_nothing_is_sent() {
    // A socket stands in for the target: it must receive nothing.
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let addr = target.local_addr().unwrap();
    let dir = RunDir::new("broken").unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        format!(
            "name: broken\ntarget: {{ server: {addr} }}\naccounts:\n  range: {{ from: 1000, count: 2 }}\nroles:\n  callee:\n    accounts: 1000..1000\n    steps:\n      - register\n      - answer: {{ rign: 1s }}\n  caller:\n    accounts: 1001..1001\n    steps:\n      - register\n      - call: {{ to: \"{{peer}}\", peer: callee }}\n"
        ),
    )
    .unwrap();
    for command in ["validate", "run"] {
        let out = run_sipcheck_with_timeout(
            [command, file.to_str().unwrap()],
            &[],
            Duration::from_secs(30),
        );
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = file.to_str().unwrap();
        assert!(
            stderr.contains(&format!("{path}:10:19: unknown field `rign`")),
            "{shown}"
        );
        assert!(stderr.contains("did you mean `ring`?"), "{shown}");
    }
    let mut buf = [0u8; 1024];
    assert!(target.recv(&mut buf).is_err(), "something was sent");

    // Semantic errors are all reported at once.
    std::fs::write(
        &file,
        "name: broken\ntarget: { direct: true }\naccounts:\n  range: { from: 1000, count: 2 }\nroles:\n  caller:\n    accounts: 1000..1000\n    steps:\n      - call: { to: \"sip:{peer}@127.0.0.1:5070\", peer: nobody }\n      - play: { tone: 5000Hz }\nload: { rate: 5/s }\n",
    )
    .unwrap();
    let out = run_sipcheck_with_timeout(
        ["validate", file.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(":9:"), "{stderr}");
    assert!(stderr.contains("there is no role `nobody`"), "{stderr}");
    assert!(stderr.contains(":10:23: 5000 Hz"), "{stderr}");
    assert!(stderr.contains("needs an end"), "{stderr}");
}

#[test]
fn every_shipped_scenario_validates() {
    for entry in std::fs::read_dir(repo_root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let out = run_sipcheck_with_timeout(
            ["validate", path.to_str().unwrap()],
            &[],
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    }
}

#[test]
fn ctrl_c_hangs_up_unregisters_and_writes_reports_that_say_so() {
    interrupting_hangs_up_unregisters_and_writes_reports("INT");
}

#[test]
fn sigterm_stops_as_cleanly_as_ctrl_c() {
    interrupting_hangs_up_unregisters_and_writes_reports("TERM");
}

fn interrupting_hangs_up_unregisters_and_writes_reports(signal: &str) {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let path = repo_root().join("tests/peers/scenarios/kamailio-long.yaml");
    let stdout = std::fs::File::create(reports.dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(reports.dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .arg("--junit")
        .arg(reports.junit())
        .env("SIP_SERVER", &server)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    // Everyone registered, then the calls are up for a moment.
    let registered = kam.wait_bindings("5019", 1, Duration::from_secs(20));
    assert_eq!(registered.len(), 1, "{}", kam.log());
    std::thread::sleep(Duration::from_secs(3));
    support::process::signal(child.id(), signal).unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(30));
    let output = format!(
        "{}\n{}",
        support::process::read_lossy(&reports.dir.join("stdout")),
        support::process::read_lossy(&reports.dir.join("stderr"))
    );
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not stop after SIG{signal}\n{output}");
    };
    assert_eq!(status.code(), Some(130), "{output}");
    let v = reports.summary();
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["verdict"], "interrupted", "{v}");
    // Every failure is the interruption's, not the system under test's.
    assert_eq!(v["failures"]["interrupted"], 20, "{v}");
    assert_eq!(v["failures"].as_object().unwrap().len(), 1, "{v}");
    assert_eq!(v["calls"]["started"], 10, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 20, "{v}");
    assert!(
        reports.junit_text().contains("<testsuites"),
        "JUnit written whole"
    );
    // Every call got its BYE (the callees saw them), and no binding is left.
    assert!(
        v["metrics"]["bye_rtt"]["count"].as_u64().unwrap() >= 10,
        "{v}"
    );
    for n in 5000..5020 {
        assert!(
            kam.bindings(&n.to_string()).is_empty(),
            "{n} still registered\n{output}"
        );
    }
}

#[test]
fn a_scenario_against_sipp_rtp_echo_hears_its_own_tones() {
    let port = free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-echo.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 5, "{v}");
    assert_eq!(v["audio"]["verified"], 5, "{v}");
}

#[test]
fn a_scenario_against_baresip_hears_its_sine() {
    let baresip = support::baresip::Baresip::start(support::baresip::BaresipOptions::default())
        .expect("start baresip");
    let addr = format!("127.0.0.1:{}", baresip.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/baresip.yaml",
        &[],
        &[("BARESIP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), baresip.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 2, "{v}");
    assert_eq!(v["audio"]["verified"], 2, "{v}");
}

#[test]
fn a_silent_far_end_fails_calls_even_without_an_expect_step() {
    let port = free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &[]).expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-silent.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = reports.summary();
    assert_eq!(v["failures"]["no_media"], 2, "{v}");
    assert!(
        v["failed_call_samples"][0]["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no RTP received"),
        "{v}"
    );
}

#[test]
fn signaling_only_calls_offer_inactive_media_and_pass_without_rtp() {
    let port = free_port();
    let trace = RunDir::new("sipp-trace").unwrap();
    let messages = trace.join("messages.log");
    let sipp = support::sipp::Sipp::start_builtin_uas(
        port,
        &["-trace_msg", "-message_file", messages.to_str().unwrap()],
    )
    .expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-signaling-only.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    // The calls last 1.5 s: with RTP they would fail `no_media` against this silent uas.
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 2, "{v}");
    drop(sipp);
    let trace = std::fs::read_to_string(&messages).expect("SIPp's message trace");
    let invites: Vec<&str> = trace
        .split("INVITE sip:")
        .skip(1)
        .map(|m| m.split("\n----").next().unwrap_or(m))
        .collect();
    assert_eq!(invites.len(), 2, "{shown}\n{trace}");
    for invite in &invites {
        assert!(invite.contains("m=audio 9 RTP/AVP"), "{invite}");
        assert!(invite.contains("a=inactive"), "{invite}");
    }
}

#[test]
fn ctrl_c_sends_every_bye_to_sipp_before_exiting() {
    let port = free_port();
    let reports = Reports::new();
    let trace = reports.dir.join("sipp-messages.log");
    let sipp = support::sipp::Sipp::start_builtin_uas(
        port,
        &[
            "-rtp_echo",
            "-trace_msg",
            "-message_file",
            trace.to_str().unwrap(),
        ],
    )
    .expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let path = repo_root().join("tests/peers/scenarios/sipp-long.yaml");
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .env("SIPP_ADDR", &addr)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(reports.dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // 5 calls start at once; interrupt once all are up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !support::process::read_lossy(&reports.dir.join("stderr")).contains(" active 5 ") {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the calls were not up in time\n{}", sipp.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(30));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not stop after SIGINT");
    };
    assert_eq!(status.code(), Some(130));
    let v = reports.summary();
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["calls"]["started"], 5, "{v}");
    assert_eq!(
        v["metrics"]["bye_rtt"]["count"], 5,
        "every BYE answered: {v}"
    );
    // SIPp's own trace: every call's BYE arrived there.
    let traced = support::process::read_lossy(&trace);
    let byes = traced.lines().filter(|l| l.starts_with("BYE sip:")).count();
    assert_eq!(byes, 5, "{}", sipp.log());
}

#[test]
fn a_report_on_stdout_has_it_to_itself_and_two_are_refused() {
    let _ports = selftest_ports();
    let path = repo_root().join("scenarios/selftest.yaml");
    let out = run_sipcheck_with_timeout(
        ["run", path.to_str().unwrap(), "--json", "-"],
        &[],
        Duration::from_secs(120),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert_schema(&v);
    assert_eq!(v["verdict"], "passed", "{v}");
    // Every received stream rated, none lost on loopback: G.107's best narrowband 4.409; the
    // tones heard without a dropout.
    assert!(v["quality"]["mos"]["count"].as_u64() > Some(0), "{v}");
    assert_eq!(v["quality"]["mos"]["p5"], 4.409, "{v}");
    assert_eq!(v["quality"]["audio_gaps"], 0, "{v}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("result: PASSED"),
        "console on stderr: {shown}"
    );
    assert!(
        stderr.contains("mos (estimate)   p5 4.41, p50 4.41"),
        "console on stderr: {shown}"
    );

    let out = run_sipcheck_with_timeout(
        ["run", path.to_str().unwrap(), "--json", "-", "--junit", "-"],
        &[],
        Duration::from_secs(30),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(out.stdout.is_empty(), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot both go to standard output"),
        "{shown}"
    );
}

#[test]
fn an_interrupted_run_with_failures_lists_them_and_never_says_nothing_failed() {
    let busy = format!("127.0.0.1:{}", free_port());
    let answer = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let path = repo_root().join("tests/peers/scenarios/busy-and-long.yaml");
    let stdout = std::fs::File::create(reports.dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(reports.dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .arg("--junit")
        .arg(reports.junit())
        .env("BUSY_LISTEN", &busy)
        .env("ANSWER_LISTEN", &answer)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    // The progress line (every 5 s) shows the two busy calls failed; the long ones are up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let progress = support::process::read_lossy(&reports.dir.join("stderr"));
        if progress.contains(" failed 2 ") {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the busy calls did not fail in time\n{progress}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(30));
    let console = support::process::read_lossy(&reports.dir.join("stdout"));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not stop after SIGINT\n{console}");
    };
    assert_eq!(status.code(), Some(130), "{console}");
    let v = reports.summary();
    assert_eq!(v["failures"]["sip_486"], 2, "{v}");
    assert_eq!(v["calls"]["failed"], 4, "{v}");
    // The reason, its count and its first call with its ladder.
    let reason = console
        .lines()
        .find(|l| l.starts_with("  sip_486 Busy Here "))
        .unwrap_or_else(|| panic!("{console}"));
    assert!(reason.ends_with(" ×2"), "{console}");
    let first = console
        .split("  sip_486 Busy Here (×2)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{console}"));
    assert!(first.contains("SIP/2.0 486 Busy Here"), "{console}");
    assert!(!console.contains("nothing failed"), "{console}");
    let verdict = console.lines().last().unwrap();
    assert_eq!(
        verdict,
        "result: INTERRUPTED: the run did not finish, and 4 of 4 calls failed (2 of them only cut short by the interruption)",
        "{console}"
    );
    // JUnit: the busy callers' hang-up was reached by no call; the long calls' hang-up was
    // reached and cut short. Neither passed.
    assert_valid_junit(&reports.junit());
    let cases = junit_cases(&reports.junit_text());
    for name in ["calls_busy/hangup", "calls_long/hangup"] {
        let case = cases.iter().find(|c| c.0 == name).unwrap();
        assert_eq!(case.1, "skipped", "{case:?}");
        assert!(case.2.ends_with("(the run was interrupted)"), "{case:?}");
    }
}

/// Each testcase of a role's suite: (name, outcome element or "passed", its text, time,
/// system-out).
fn junit_cases(xml: &str) -> Vec<(String, String, String, Option<f64>, String)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|n| n.parent().and_then(|p| p.attribute("name")) != Some("thresholds"))
        .map(|case| {
            let outcome = case
                .children()
                .find(|n| n.has_tag_name("failure") || n.has_tag_name("skipped"));
            let system_out = case
                .children()
                .find(|n| n.has_tag_name("system-out"))
                .and_then(|n| n.text())
                .unwrap_or_default();
            (
                case.attribute("name").unwrap().to_owned(),
                outcome.map_or("passed".into(), |n| n.tag_name().name().to_owned()),
                outcome
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .to_owned(),
                case.attribute("time").map(|t| t.parse().unwrap()),
                system_out.to_owned(),
            )
        })
        .collect()
}

#[test]
fn shipped_scenarios_write_junit_both_jenkins_schemas_accept() {
    // The self-test: everything passes, with real times and each step's file:line.
    let ports = selftest_ports();
    let reports = Reports::new();
    let out = run("scenarios/selftest.yaml", &[], &[], &reports);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert_valid_junit(&reports.junit());
    // One run id, random, in the console, the JSON and every JUnit suite.
    let run_id = reports.summary()["run_id"].as_str().unwrap().to_owned();
    assert_eq!(run_id.len(), 16, "{run_id}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("run id {run_id}")),
        "{}",
        describe_output(&out)
    );
    let property = format!(r#"<property name="sipcheck.run_id" value="{run_id}"/>"#);
    assert_eq!(
        reports.junit_text().matches(&property).count(),
        reports.junit_text().matches("<testsuite ").count()
    );
    let file = repo_root().join("scenarios/selftest.yaml");
    let cases = junit_cases(&reports.junit_text());
    assert_eq!(cases.len(), 10, "{cases:?}");
    for (name, outcome, _, time, system_out) in &cases {
        assert_eq!(outcome, "passed", "{name}");
        assert!(
            system_out.starts_with(&format!("{}:", file.display())),
            "{name}: {system_out}"
        );
        assert!(time.is_some(), "{name}");
    }
    let hangup = cases.iter().find(|c| c.0 == "caller/hangup").unwrap();
    assert!(
        hangup
            .4
            .starts_with(&format!("{}:37:9: step hangup\n", file.display())),
        "{hangup:?}"
    );
    // 10 calls hang up 3 s after the answer, each.
    assert!(hangup.3.unwrap() >= 30.0, "{hangup:?}");
    drop(ports);

    // Busy callees: the expectation fails, the step after it was reached by no call.
    let listen = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/busy.yaml",
        &[],
        &[("CALLEE_LISTEN", listen.as_str())],
        &reports,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert_valid_junit(&reports.junit());
    let cases = junit_cases(&reports.junit_text());
    let outcome = |name: &str| {
        cases
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no {name}: {cases:?}"))
            .clone()
    };
    assert_eq!(outcome("caller/call").1, "passed", "{cases:?}");
    assert_eq!(outcome("caller/expect").1, "failure", "{cases:?}");
    let hangup = outcome("caller/hangup");
    assert_eq!(
        (hangup.1.as_str(), hangup.2.as_str()),
        (
            "skipped",
            "no call of role caller reached this step: all 3 calls stopped before it"
        ),
        "{cases:?}"
    );
    assert_eq!(hangup.3, None, "nothing timed: {hangup:?}");

    // A busy line and a cancelled ring through Kamailio: the cancel is the scenario's
    // expected outcome, nothing fails.
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let csv = reports.dir.join("users.csv");
    std::fs::write(
        &csv,
        "user,password\nalice,pwalice\nbob,pwbob\ncarol,pwcarol\ndave,pwdave\n",
    )
    .unwrap();
    let reports = Reports::new();
    let out = run(
        "scenarios/cancel-busy-noanswer.yaml",
        &[],
        &[
            ("SIP_SERVER", server.as_str()),
            ("SIP_DOMAIN", "sipcheck.test"),
            ("SIP_USERS_CSV", csv.to_str().unwrap()),
        ],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_valid_junit(&reports.junit());
    let junit = reports.junit_text();
    assert!(!junit.contains("<failure"), "{junit}\n{shown}");
    assert!(!junit.contains("<skipped"), "{junit}\n{shown}");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let cases = junit_cases(&junit);
    for name in [
        "no_answer/ring",
        "no_answer/wait_for",
        "gives_up/cancel",
        "calls_busy/expect (line 35)",
    ] {
        assert!(
            cases.iter().any(|c| c.0 == name && c.1 == "passed"),
            "{name}: {cases:?}"
        );
    }
}

#[test]
fn reports_go_through_fifos_symlinks_and_dev_null_without_replacing_them() {
    use std::os::unix::fs::FileTypeExt;
    let dir = RunDir::new("report-paths").unwrap();
    let fifo = dir.join("junit.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(dir.join("real")).unwrap();
    let link = dir.join("summary.json");
    std::os::unix::fs::symlink("real/summary.json", &link).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let path = repo_root().join("tests/peers/scenarios/busy.yaml");
    let out = run_sipcheck_with_timeout(
        [
            "run",
            path.to_str().unwrap(),
            "--junit",
            fifo.to_str().unwrap(),
            "--json",
            link.to_str().unwrap(),
        ],
        &[("CALLEE_LISTEN", listen.as_str())],
        Duration::from_secs(60),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let junit = reader.join().unwrap();
    assert!(junit.contains("486 Busy Here"), "{junit}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO is still a FIFO"
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("real/summary.json")).unwrap())
            .unwrap();
    assert_schema(&v);
    assert_eq!(v["failures"]["sip_486"], 3, "{v}");

    // /dev/null stays the device it is.
    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_sipcheck_with_timeout(
        [
            "run",
            path.to_str().unwrap(),
            "--junit",
            "/dev/null",
            "--json",
            "/dev/null",
        ],
        &[("CALLEE_LISTEN", listen.as_str())],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let null = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "{null:?}");
}

#[test]
fn a_ring_cut_short_by_the_cancel_the_next_step_awaits_is_not_a_failure_and_only_that() {
    let cancel = format!("127.0.0.1:{}", free_port());
    let bye = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/cancelled-rings.yaml",
        &[],
        &[
            ("CANCEL_LISTEN", cancel.as_str()),
            ("BYE_LISTEN", bye.as_str()),
        ],
        &reports,
    );
    let shown = describe_output(&out);
    assert_valid_junit(&reports.junit());
    let cases = junit_cases(&reports.junit_text());
    let outcome = |name: &str| {
        cases
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("no {name}: {cases:?}"))
            .clone()
    };
    assert_eq!(
        outcome("waits_cancel/ring").1,
        "passed",
        "{cases:?}\n{shown}"
    );
    assert_eq!(outcome("waits_cancel/wait_for").1, "passed", "{cases:?}");
    let ring = outcome("waits_bye/ring");
    assert_eq!(ring.1, "failure", "{cases:?}");
    assert!(ring.2.contains("cancelled by the caller"), "{ring:?}");
    assert_eq!(outcome("waits_bye/wait_for").1, "skipped", "{cases:?}");
    let v = reports.summary();
    assert_eq!(v["calls"]["by_role"]["waits_cancel"]["failed"], 0, "{v}");
    assert_eq!(v["calls"]["by_role"]["waits_bye"]["failed"], 1, "{v}");
}

#[test]
fn hold_and_resume_steps_hear_music_on_hold_and_no_rtp_timeout() {
    let callee = format!("127.0.0.1:{}", support::free_port());
    let caller = format!("127.0.0.1:{}", support::free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/hold-direct.yaml",
        &[],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["by_role"]["caller"]["passed"], 1, "{v}");
    assert_eq!(v["calls"]["by_role"]["callee"]["passed"], 1, "{v}");
    // 440 Hz, the music on hold, 440 Hz after the resume; 1 kHz before and after at the
    // callee.
    assert_eq!(v["audio"]["checked"], 5, "{v}");
    assert_eq!(v["audio"]["verified"], 5, "{v}");
    // The held side sent nothing for 4 s, and took no sequence number for it: no loss.
    assert_eq!(v["rtp"]["packets_lost"], 0, "{v}");

    // Held with a=inactive instead, the caller hears no music on hold: that step fails.
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/hold-direct.yaml",
        &["--set", "roles.callee.steps.4={hold: inactive}"],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_ne!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["failures"]["tone_missing"], 1, "{v}");
    assert!(v["failures"].get("no_media").is_none(), "{v}");
}

#[test]
fn a_scenario_holds_baresip_longer_than_the_rtp_timeout_and_hears_it_after_the_resume() {
    for mode in ["sendonly", "inactive"] {
        let baresip = support::baresip::Baresip::start(support::baresip::BaresipOptions::default())
            .expect("start baresip");
        let addr = format!("127.0.0.1:{}", baresip.sip_port);
        let reports = Reports::new();
        let out = run(
            "tests/peers/scenarios/baresip-hold.yaml",
            &[],
            &[("BARESIP_ADDR", addr.as_str()), ("MODE", mode)],
            &reports,
        );
        let shown = format!("{mode}\n{}\n{}", describe_output(&out), baresip.log());
        assert_eq!(out.status.code(), Some(0), "{shown}");
        let v = reports.summary();
        assert_eq!(v["calls"]["passed"], 1, "{v}");
        assert_eq!(v["audio"]["verified"], 2, "{v}");
        // baresip's trace: our hold offer, its answer, then the resume.
        let log = baresip.stdout();
        let answer = if mode == "sendonly" {
            "recvonly"
        } else {
            "inactive"
        };
        assert!(log.contains(&format!("a={mode}")), "{shown}");
        assert!(log.contains(&format!("a={answer}")), "{shown}");
    }
}

#[test]
fn every_other_shipped_scenario_runs_through_kamailio_and_writes_valid_junit() {
    // The PBX regression, the DTMF IVR and the load scenario as shipped, made small with
    // `--set` (accounts and calls), against the test Kamailio: every call passes and both
    // Jenkins schemas accept the JUnit.
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let envs = [
        ("SIP_SERVER", server.as_str()),
        ("SIP_DOMAIN", "sipcheck.test"),
    ];
    for (scenario, sets) in [
        (
            "scenarios/pbx-regression.yaml",
            &[
                "accounts.range.count=4",
                "roles.callee.count=2",
                "roles.caller.count=2",
            ][..],
        ),
        ("scenarios/dtmf-ivr.yaml", &[][..]),
        (
            "scenarios/load-200.yaml",
            &[
                "accounts.range.count=4",
                "roles.callee.count=2",
                "roles.caller.count=2",
                "load.total_calls=2",
                "load.ramp_up=0s",
                "load.rate=2/s",
                "roles.caller.steps.4.hangup.after=2s",
                // sipcheck's own pacing on a CI machine busy with other tests is no
                // property of the scenario under test here.
                "thresholds.pacing.lateness.p99=< 1s",
            ][..],
        ),
    ] {
        let reports = Reports::new();
        let mut extra = Vec::new();
        for s in sets {
            extra.extend(["--set", s]);
        }
        let out = run(scenario, &extra, &envs, &reports);
        let shown = format!("{scenario}\n{}\n{}", describe_output(&out), kam.log());
        assert_eq!(out.status.code(), Some(0), "{shown}");
        assert_valid_junit(&reports.junit());
        let v = reports.summary();
        assert!(v["calls"]["passed"].as_u64().unwrap() >= 2, "{v}\n{shown}");
        assert_eq!(v["calls"]["failed"], 0, "{v}");
    }
}

/// The samples of a 16-bit PCM WAV file (its `data` chunk).
fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// The power of `hz` in `samples` (8 kHz) relative to their total power (Goertzel).
fn share_at(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        let s = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
        total += x * x;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    // A pure tone of N samples has Goertzel power N²A²/4 and total power N·A²/2.
    power * 2.0 / (samples.len() as f64 * total.max(1.0))
}

#[test]
fn media_record_writes_each_calls_received_audio_and_it_holds_the_far_ends_tone() {
    let _ports = selftest_ports();
    let reports = Reports::new();
    let dir = reports.dir.join("recordings");
    let set = format!("media.record={}", dir.display());
    let out = run("scenarios/selftest.yaml", &["--set", &set], &[], &reports);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // 10 calls, each recorded by its caller and by its callee.
    assert_eq!(files.len(), 20, "{files:?}");
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let samples = wav_samples(&std::fs::read(path).unwrap());
        // The callers hang up 3 s after the answer: most of 3 s of audio.
        assert!(
            samples.len() > 8000 * 2,
            "{name}: {} samples",
            samples.len()
        );
        // Callers hear the callees' 1 kHz, callees the callers' 440 Hz.
        let (heard, not) = if name.starts_with("caller-") {
            (1000.0, 440.0)
        } else {
            assert!(name.starts_with("callee-"), "{name}");
            (440.0, 1000.0)
        };
        let (a, b) = (share_at(&samples, heard), share_at(&samples, not));
        assert!(
            a > 0.5 && b < 0.01,
            "{name}: {heard} Hz {a:.3}, {not} Hz {b:.3}"
        );
    }
}

#[test]
fn a_run_that_would_run_out_of_file_descriptors_is_refused_with_the_numbers() {
    // The self-test keeps 10 calls up with both ends in this process: 20 RTP sockets and the
    // rest; under a hard limit of 70 open files it cannot run, and says so before sending.
    let path = repo_root().join("scenarios/selftest.yaml");
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=70:70")
        .arg(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap()])
        .output()
        .expect("prlimit (util-linux) runs");
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs about 84 open files (10 calls at once × 2 RTP socket(s)")
            && err.contains("the limit is 70")
            && err.contains("nothing was sent"),
        "{shown}"
    );
    // With room, the same run starts (and passes).
    let _ports = selftest_ports();
    let out = std::process::Command::new("prlimit")
        .arg("--nofile=200:200")
        .arg(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
}

#[test]
fn a_second_ctrl_c_leaves_at_once_with_its_own_exit_code() {
    // SIPp answers the calls and never answers a BYE: after the first Ctrl-C the wind-down
    // waits on the BYEs' Timer F (32 s), so the second Ctrl-C certainly lands during it.
    let sipp = support::sipp::Sipp::start_uas("uas_bye_silent.xml", &["-mi", "127.0.0.1"])
        .expect("start sipp");
    let reports = Reports::new();
    let path = repo_root().join("tests/peers/scenarios/sipp-long.yaml");
    let stderr = std::fs::File::create(reports.dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .env("SIPP_ADDR", sipp.addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let wait_for = |text: &str, child: &mut std::process::Child| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = support::process::read_lossy(&reports.dir.join("stderr"));
            if log.contains(text) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("no {text:?} in time\n{log}\n{}", sipp.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // All five calls are up, then the first Ctrl-C starts the wind-down.
    wait_for(" active 5 ", &mut child);
    support::process::signal(child.id(), "INT").unwrap();
    wait_for("Ctrl-C again to quit at once", &mut child);
    let second = std::time::Instant::now();
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(10));
    let log = support::process::read_lossy(&reports.dir.join("stderr"));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not leave after a second SIGINT\n{log}");
    };
    // At once: not after the BYEs' 32 s.
    assert!(second.elapsed() < Duration::from_secs(5), "{log}");
    assert_eq!(status.code(), Some(131), "{log}");
    assert!(log.contains("interrupted again"), "{log}");
    assert!(
        !reports.json().exists(),
        "no report is written after a second Ctrl-C"
    );
}

/// A UA of `run` registered at SIPp playing a registrar (`tests/peers/uas_register_refresh.xml`)
/// that grants 2 s: refreshed at 80 % of that (not of the 300 s asked), the refresh refused
/// with 503 is reported and tried again after 1 s, the retry is counted as a registration made
/// anew, and Ctrl-C removes the binding.
#[test]
fn a_refused_refresh_is_reported_retried_and_the_binding_removed_at_the_end() {
    let sipp = support::sipp::Sipp::start_uas("uas_register_refresh.xml", &[]).expect("sipp");
    let reports = Reports::new();
    let trace = reports.dir.join("sip.trace");
    let path = repo_root().join("tests/peers/scenarios/sipp-registrar-refresh.yaml");
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .arg("--trace-sip")
        .arg(&trace)
        .env("SIP_SERVER", sipp.addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(reports.dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(reports.dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let registers = || {
        support::process::read_lossy(&trace)
            .lines()
            .filter(|l| l.starts_with("REGISTER sip:"))
            .count()
    };
    let oks = || {
        support::process::read_lossy(&trace)
            .matches("SIP/2.0 200 OK")
            .count()
    };
    // The registration, the refused refresh, the retry and its 200: well within 10 s.
    let retried =
        support::process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            registers() == 3 && oks() == 2
        });
    if !retried {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no refresh and retry in time\n{}",
            support::process::read_lossy(&trace)
        );
    }
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(30));
    let console = support::process::read_lossy(&reports.dir.join("stdout"));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not stop after SIGINT\n{console}");
    };
    assert_eq!(status.code(), Some(130), "{console}");
    let sent = support::process::read_lossy(&trace);
    assert_eq!(registers(), 4, "{sent}");
    let last = sent.rsplit("REGISTER sip:").next().unwrap_or_default();
    assert!(last.contains("Expires: 0"), "the removal last: {sent}");
    assert!(
        console.contains(
            "registrations: ok 2, failed 1 (first: 3600: refresh failed: rejected with 503 \
             Service Unavailable (tried again in 1 s))"
        ),
        "{console}"
    );
    let v = reports.summary();
    assert_eq!(v["registrations"]["ok"], 2, "{v}");
    assert_eq!(v["registrations"]["failed"], 1, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 1, "{v}");
}
