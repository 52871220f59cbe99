//! Redirections (3xx) from a real Kamailio redirect server (`tests/peers/kamailio.cfg` with
//! `REDIRECTS`): followed to a real `sipcheck answer` whose audio signature the caller hears,
//! refused without `--follow-redirects`, and a loop named as such.

mod support;

use std::time::Duration;

use support::describe_output;
use support::kamailio::{Kamailio, KamailioOptions};
use support::reports::{run_scenario, Reports};
use support::responder::Responder;

fn redirector() -> Kamailio {
    Kamailio::start_with(&KamailioOptions {
        no_proxy_auth: true,
        defines: vec!["REDIRECTS".into()],
        ..KamailioOptions::default()
    })
    .expect("start kamailio")
}

fn json(out: &std::process::Output, shown: &str) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {shown}"))
}

#[test]
fn a_302_from_kamailio_is_followed_and_the_caller_hears_the_callee_it_points_to() {
    let kam = redirector();
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(&["--listen", &listen, "--signature", "--calls", "1"], &[]);
    let uri = format!("sip:fwd{port}@127.0.0.1:{}", kam.sip_port);
    let out = support::run_sipcheck(
        [
            "call",
            &uri,
            "--follow-redirects",
            "--signature",
            "--duration",
            "3s",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["final_code"], 200, "{shown}");
    assert_eq!(
        v["redirects"],
        serde_json::json!([format!("sip:callee@127.0.0.1:{port}")]),
        "{shown}"
    );
    assert_eq!(v["signature_verdict"], "verified", "{shown}");
    // The first INVITE went to Kamailio, the second to the callee it pointed to.
    let invites: Vec<(String, String)> = v["ladder"]
        .as_array()
        .expect("a ladder")
        .iter()
        .filter(|r| r["line"].as_str().is_some_and(|l| l.starts_with("INVITE ")))
        .map(|r| {
            (
                r["line"].as_str().unwrap().to_string(),
                r["peer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        invites,
        [
            (
                format!("{uri} SIP/2.0").replace("sip:", "INVITE sip:"),
                kam.addr.to_string()
            ),
            (
                format!("INVITE sip:callee@{listen} SIP/2.0"),
                listen.clone()
            ),
        ],
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}

#[test]
fn the_console_report_of_call_names_the_redirect_chain() {
    let kam = redirector();
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(&["--listen", &listen, "--calls", "1"], &[]);
    let uri = format!("sip:fwd{port}@127.0.0.1:{}", kam.sip_port);
    let out = support::run_sipcheck(
        ["call", &uri, "--follow-redirects=1", "--duration", "1s"],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("redirected: {uri} -> sip:callee@{listen}\n")),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}

#[test]
fn without_follow_redirects_a_302_fails_naming_the_status_and_its_contact() {
    let kam = redirector();
    let port = support::free_port();
    let uri = format!("sip:fwd{port}@127.0.0.1:{}", kam.sip_port);
    let out = support::run_sipcheck(["call", &uri, "--duration", "1s", "--json"], &[]);
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["final_code"], 302, "{shown}");
    assert_eq!(
        v["end_reason"],
        format!(
            "rejected: 302 Moved Temporarily (redirected to sip:callee@127.0.0.1:{port}; \
             not followed: follow_redirects is off)"
        ),
        "{shown}"
    );
    assert!(v.get("redirects").is_none(), "{shown}");
}

#[test]
fn a_redirect_loop_in_kamailio_fails_as_redirect_loop_listing_the_chain() {
    let kam = redirector();
    let p = kam.sip_port;
    let uri = format!("sip:loopa@127.0.0.1:{p}");
    let out = support::run_sipcheck(
        [
            "call",
            &uri,
            "--follow-redirects",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(
        v["end_reason"],
        format!(
            "redirect_loop: sip:loopa@127.0.0.1:{p} -> sip:loopb@127.0.0.1:{p} -> \
             sip:loopa@127.0.0.1:{p}"
        ),
        "{shown}"
    );
    assert_eq!(v["final_code"], 302, "{shown}");

    // A 302 without a Contact: nothing to follow, named so.
    let uri = format!("sip:nocontact@127.0.0.1:{p}");
    let out = support::run_sipcheck(
        [
            "call",
            &uri,
            "--follow-redirects",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(
        v["end_reason"], "rejected: 302 Moved Temporarily (no Contact to follow)",
        "{shown}"
    );
}

#[test]
fn a_chain_longer_than_follow_redirects_allows_fails_as_too_many_redirects() {
    let kam = redirector();
    let p = kam.sip_port;
    // hop5 -> hop4 -> hop3 -> hop2 …: the third redirection is one too many.
    let uri = format!("sip:hop5@127.0.0.1:{p}");
    let out = support::run_sipcheck(
        [
            "call",
            &uri,
            "--follow-redirects=2",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out, &shown);
    let hop = |n: u32| format!("sip:hop{n}@127.0.0.1:{p}");
    assert_eq!(
        v["end_reason"],
        format!(
            "too_many_redirects: more than 2: {} -> {} -> {} -> {}",
            hop(5),
            hop(4),
            hop(3),
            hop(2)
        ),
        "{shown}"
    );
    assert_eq!(
        v["redirects"],
        serde_json::json!([hop(4), hop(3)]),
        "{shown}"
    );
}

/// The `kamailio-redirect` scenario through `sipcheck run`, redirected to `sipcheck answer`
/// on `answer_port` and expecting `expect_port`: its exit code, run summary and call record.
fn run_redirect_scenario(
    kam: &Kamailio,
    answer_port: u16,
    expect_port: u16,
) -> (
    std::process::Output,
    serde_json::Value,
    serde_json::Value,
    String,
) {
    let listen = format!("127.0.0.1:{answer_port}");
    let answer = Responder::start(&["--listen", &listen, "--signature", "--calls", "1"], &[]);
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let port = answer_port.to_string();
    let expected = expect_port.to_string();
    let kam_addr = kam.addr.to_string();
    let out = run_scenario(
        "tests/peers/scenarios/kamailio-redirect.yaml",
        &["--calls", calls.to_str().unwrap()],
        &[
            ("ANSWER_PORT", port.as_str()),
            ("EXPECT_PORT", expected.as_str()),
            ("KAM_ADDR", kam_addr.as_str()),
        ],
        &reports,
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&calls)
            .unwrap_or_else(|e| panic!("{e}: {shown}"))
            .lines()
            .next()
            .expect("one call record"),
    )
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("docs/call-record.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&record)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{record:#}");
    (out, reports.summary(), record, shown)
}

#[test]
fn a_scenario_caller_follows_the_302_checks_where_it_went_and_hears_the_callee() {
    let kam = redirector();
    let port = support::free_port();
    let (out, summary, record, shown) = run_redirect_scenario(&kam, port, port);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(summary["calls"]["passed"], 1, "{summary}\n{shown}");
    assert_eq!(summary["audio"]["verified"], 1, "{summary}\n{shown}");
    assert_eq!(
        record["redirects"],
        serde_json::json!([format!("sip:callee@127.0.0.1:{port}")]),
        "{record:#}"
    );
}

#[test]
fn a_scenario_caller_redirected_elsewhere_than_expected_fails_naming_where_it_went() {
    let kam = redirector();
    // The callee answers on `port`, where Kamailio sends the call, but the scenario
    // expects the redirection to name `other`.
    let port = support::free_port();
    let other = support::free_port();
    let (out, summary, record, shown) = run_redirect_scenario(&kam, port, other);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    assert_eq!(summary["calls"]["failed"], 1, "{summary}\n{shown}");
    assert_eq!(record["failures"][0]["line"], 13, "{record:#}");
    assert_eq!(
        record["failures"][0]["message"],
        format!(
            "expected the call redirected to sip:callee@127.0.0.1:{other}: \
             redirected to sip:callee@127.0.0.1:{port}"
        ),
        "{record:#}"
    );
}

/// Kamailio forwarding on no answer (`HUNT`): `hunt-U1-P1-U2-P2` rings U1 at port P1, then
/// after 2 s U2 at port P2.
fn hunt_group() -> Kamailio {
    Kamailio::start_with(&KamailioOptions {
        no_proxy_auth: true,
        defines: vec!["HUNT".into()],
        ..KamailioOptions::default()
    })
    .expect("start kamailio")
}

#[test]
fn a_call_forwarded_on_no_answer_is_answered_by_the_second_ua_whose_signature_is_heard() {
    let kam = hunt_group();
    let (first_port, second_port) = (support::free_port(), support::free_port());
    let first_listen = format!("127.0.0.1:{first_port}");
    let second_listen = format!("127.0.0.1:{second_port}");
    // The first UA rings and would answer only after 30 s; the second answers at once.
    let mut first = Responder::start(
        &["--listen", &first_listen, "--ring", "30s", "--calls", "1"],
        &[],
    );
    let mut second = Responder::start(
        &["--listen", &second_listen, "--signature", "--calls", "1"],
        &[],
    );
    let uri = format!(
        "sip:hunt-first-{first_port}-second-{second_port}@127.0.0.1:{}",
        kam.sip_port
    );
    let out = support::run_sipcheck(
        ["call", &uri, "--signature", "--duration", "3s", "--json"],
        &[],
    );
    let shown = format!(
        "{}\n--- first ---\n{}\n--- second ---\n{}\n{}",
        describe_output(&out),
        first.output(),
        second.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["signature_verdict"], "verified", "{shown}");
    // Not redirected: the proxy forwarded it.
    assert!(v.get("redirects").is_none(), "{shown}");
    // Answered after the first UA's 2 s of ringing.
    let answer_ms = v["timings"]["invite_to_answer_ms"].as_f64().expect(&shown);
    // (Kamailio's timers tick in 100 ms steps: its 2 s may fire a little early.)
    assert!(
        (1800.0..5000.0).contains(&answer_ms),
        "{answer_ms} ms: {shown}"
    );
    // The dialog is with the second UA: its Contact is where the ACK goes.
    let ack = v["ladder"]
        .as_array()
        .expect("a ladder")
        .iter()
        .find_map(|r| r["line"].as_str().filter(|l| l.starts_with("ACK ")))
        .expect(&shown)
        .to_string();
    assert!(
        ack.contains(&format!("@{second_listen} ")),
        "{ack}: {shown}"
    );
    assert_eq!(
        second.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    assert!(second.stdout().contains("-- PASS"), "{shown}");
    // The first UA rang and was cancelled by the proxy: it never answered.
    first.wait_exit(Duration::from_secs(10));
    let first_out = first.stdout();
    assert!(first_out.contains("cancelled by the caller"), "{shown}");
}

#[test]
fn a_scenario_hunt_group_rings_the_first_role_forever_and_the_second_answers() {
    let kam = hunt_group();
    let (first, second) = (support::free_port(), support::free_port());
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let (first, second, kam_addr) = (first.to_string(), second.to_string(), kam.addr.to_string());
    let out = run_scenario(
        "tests/peers/scenarios/kamailio-hunt.yaml",
        &["--calls", calls.to_str().unwrap()],
        &[
            ("FIRST_PORT", first.as_str()),
            ("SECOND_PORT", second.as_str()),
            ("KAM_ADDR", kam_addr.as_str()),
        ],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    // Every side passed: the caller's call, the second's answered one and the first's
    // cancelled one (its `wait_for: cancel` held).
    assert_eq!(v["calls"]["passed"], 1, "{v}\n{shown}");
    assert_eq!(v["calls"]["failed"], 0, "{v}\n{shown}");
    assert_eq!(v["audio"]["verified"], 2, "{v}\n{shown}");
    let records = std::fs::read_to_string(&calls).expect(&shown);
    let by_role = |role: &str| -> serde_json::Value {
        records
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("no record of {role}: {records}"))
    };
    assert_eq!(
        by_role("first")["answer"],
        serde_json::Value::Null,
        "{records}"
    );
    assert_eq!(by_role("first")["verdict"], "passed", "{records}");
    assert_eq!(by_role("second")["final_code"], 200, "{records}");
    let setup = by_role("caller")["timings"]["invite_to_200_ms"]
        .as_f64()
        .expect(&records);
    assert!((1800.0..5000.0).contains(&setup), "{setup} ms: {records}");
}

/// `kamailio-hunt-answered-by.yaml` through the hunt group, with `extra` arguments.
fn hunt_answered_by(extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let kam = hunt_group();
    let (first, second, third) = (
        support::free_port().to_string(),
        support::free_port().to_string(),
        support::free_port().to_string(),
    );
    let reports = Reports::new();
    let kam_addr = kam.addr.to_string();
    let out = run_scenario(
        "tests/peers/scenarios/kamailio-hunt-answered-by.yaml",
        extra,
        &[
            ("FIRST_PORT", first.as_str()),
            ("SECOND_PORT", second.as_str()),
            ("THIRD_PORT", third.as_str()),
            ("KAM_ADDR", kam_addr.as_str()),
        ],
        &reports,
    );
    let v = reports.summary();
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    (out.status.code(), v, shown)
}

#[test]
fn the_caller_of_a_hunt_group_names_the_member_that_answered_by_its_signature() {
    let (code, v, shown) = hunt_answered_by(&[]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(v["calls"]["passed"], 1, "{shown}");
    assert_eq!(v["audio"]["verified"], 1, "{shown}");
}

#[test]
fn a_hunt_group_answered_by_another_member_than_expected_fails_wrong_party() {
    let (code, v, shown) = hunt_answered_by(&[
        "--set",
        "roles.caller.steps.2={expect: {answered_by: third, within: 3s}}",
    ]);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["wrong_party"], 1, "{shown}");
    assert!(
        shown.contains(
            "wrong party: call 0 was answered by second (its signature heard), not by third"
        ),
        "{shown}"
    );
}
