//! Per-call audio signatures against real peers: both ends through Kamailio, an echo peer
//! (SIPp `-rtp_echo`), and the verdicts that name what went wrong.

mod support;

use support::describe_output;
use support::kamailio::Kamailio;
use support::reports::{run_scenario as run, Reports};

#[test]
fn twenty_calls_through_kamailio_each_hear_their_own_peers_signature_both_ways() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/kamailio-signatures.yaml",
        &[],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["started"], 20, "{v}");
    assert_eq!(v["calls"]["passed"], 20, "{v}");
    assert_eq!(v["audio"]["checked"], 40, "{v}");
    assert_eq!(v["audio"]["verified"], 40, "{v}");
    for kind in ["crossed_audio", "no_audio", "one_way_audio", "wrong_audio"] {
        assert!(v["failures"][kind].is_null(), "{kind}: {v}");
    }
}

#[test]
fn a_signature_other_than_the_one_expected_is_crossed_audio_naming_its_call() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    // The callers expect their own code back (an echo), but the callees play theirs: every
    // caller hears a code other than the one it expects, and names its call.
    let out = run(
        "tests/peers/scenarios/kamailio-signatures.yaml",
        &[
            "--set",
            "roles.caller.steps.3.expect.signature=echo",
            "--set",
            "load.total_calls=2",
        ],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    assert_eq!(v["failures"]["crossed_audio"], 2, "{v}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "crossed audio (echoed): heard call 0's callee signature instead of call 0's"
        ),
        "{shown}"
    );
    // The callers hang up at once; their callees had not heard two whole frames yet.
    assert_eq!(v["failures"]["wrong_audio"], 2, "{v}");
    assert!(stdout.contains("before the call ended"), "{shown}");
}

#[test]
fn a_scenario_against_sipp_rtp_echo_hears_its_own_signature_back() {
    let port = support::free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-echo-signature.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 3, "{v}");
    assert_eq!(v["audio"]["verified"], 3, "{v}");

    // Expecting the peer's signature from an echo: only our own comes back.
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-echo-signature.yaml",
        &["--set", "roles.caller.steps.2.expect.signature=peer"],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    assert_eq!(v["failures"]["crossed_audio"], 3, "{v}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("heard its own signature back (echo)"),
        "{shown}"
    );
}

#[test]
fn a_peer_that_sends_nothing_back_is_no_audio_callee_to_caller() {
    // SIPp's uas without -rtp_echo answers and sends no RTP: audio flows one way only.
    let port = support::free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &[]).expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-echo-signature.yaml",
        &["--set", "roles.caller.steps.2.expect.signature=peer"],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_ne!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 0, "{v}");
    assert_eq!(v["failures"]["no_audio"], 3, "{v}");
    assert!(v["failures"]["crossed_audio"].is_null(), "{v}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("no audio (callee → caller): call 0's signature not heard within 3.0 s"),
        "{shown}"
    );
}
