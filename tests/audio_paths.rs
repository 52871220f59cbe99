//! Audio that takes the wrong path, with both ends of the call in one `sipcheck run`:
//!
//! - RTP dropped by `iptables` towards one end only, in a network namespace
//!   (`tests/support/netns.rs`): the call fails once, as `one_way_audio` naming the direction
//!   that carried nothing, while the other direction is verified.
//! - Two concurrent calls whose RTP towards their callees a relay swaps
//!   (`tests/support/media_relay.rs`): each callee fails `crossed_audio`, naming the call it
//!   heard; the callers, whose audio came back straight, are verified.

mod support;

use std::thread;
use std::time::Duration;

use support::media_relay::{MediaRelay, Relay};
use support::netns::Netns;
use support::process;
use support::reports::{assert_schema, run_scenario, Reports};
use support::{describe_output, free_port, repo_root, sipcheck_bin};

/// The scenario's two RTP ports: one is the caller's, the other the callee's.
const RTP_PORTS: [u16; 2] = [30000, 30002];

#[test]
fn rtp_dropped_towards_the_callee_by_iptables_is_one_way_audio_naming_that_direction() {
    let ns = Netns::create("oneway").unwrap_or_else(|e| panic!("{e:#}"));
    // Rules 0 and 1 count the INVITEs to the callee whose SDP offers each port: the one
    // counted is the caller's RTP port, the other the callee's.
    for port in RTP_PORTS {
        let offer = format!("m=audio {port} ");
        ns.iptables(&[
            "-A", "INPUT", "-p", "udp", "--dport", "5060", "-m", "string", "--algo", "bm",
            "--string", &offer,
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let reports = Reports::new();
    let path = repo_root().join("tests/peers/scenarios/one-way-netns.yaml");
    let (junit, json) = (reports.junit(), reports.json());
    let args = [
        "run",
        path.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    let cmd = ns.exec(sipcheck_bin(), args);
    let (out, callee_port) = thread::scope(|s| {
        let run = s.spawn(|| {
            process::run_with_timeout(cmd, Duration::from_secs(60)).expect("sipcheck run ends")
        });
        // The callee rings for 1 s: before it answers (and any RTP flows), everything sent
        // to the callee's RTP port is dropped.
        let mut counts = Vec::new();
        let offered =
            process::wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
                counts = ns.input_counts().unwrap_or_default();
                counts.iter().take(2).any(|&c| c > 0)
            });
        assert!(offered, "no INVITE reached the callee: {counts:?}");
        let callee_port = if counts[0] > 0 {
            RTP_PORTS[1]
        } else {
            RTP_PORTS[0]
        };
        let port = callee_port.to_string();
        ns.iptables(&[
            "-I", "INPUT", "1", "-p", "udp", "--dport", &port, "-j", "DROP",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        (run.join().expect("the run's thread"), callee_port)
    });
    let counts = ns.input_counts().unwrap_or_else(|e| panic!("{e:#}"));
    let shown = format!(
        "RTP to the callee's port {callee_port} dropped: {} packets\n{}",
        counts[0],
        describe_output(&out)
    );
    assert!(
        counts[0] >= 50,
        "iptables dropped too little to matter\n{shown}"
    );
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    assert_schema(&v);
    assert_eq!(v["calls"]["started"], 1, "{v}\n{shown}");
    assert_eq!(v["calls"]["failed"], 1, "{v}\n{shown}");
    // One failure, the callee's `no_audio` folded into it; the caller heard its callee.
    assert_eq!(v["failures"]["one_way_audio"], 1, "{v}\n{shown}");
    for kind in ["no_audio", "crossed_audio", "wrong_audio"] {
        assert!(v["failures"][kind].is_null(), "{kind}: {v}\n{shown}");
    }
    assert_eq!(v["audio"]["verified"], 1, "{v}\n{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("one-way audio: caller → callee carried nothing"),
        "{shown}"
    );
}

#[test]
fn two_calls_whose_rtp_a_relay_swaps_towards_their_callees_are_crossed_audio_naming_each_other() {
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let relay = MediaRelay::start(callee.parse().unwrap(), Relay::swapped_towards_callees());
    let relay_addr = relay.sip.to_string();
    let reports = Reports::new();
    let out = run_scenario(
        "tests/peers/scenarios/crossed-relay.yaml",
        &[],
        &[
            ("CALLEE_LISTEN", callee.as_str()),
            ("CALLER_LISTEN", caller.as_str()),
            ("RELAY_ADDR", relay_addr.as_str()),
            ("RTP_PORTS", "45000-45999"),
        ],
        &reports,
    );
    let report = relay.finish();
    let shown = format!("{}\n{}", describe_output(&out), report.summary());
    assert_eq!(report.calls, 2, "{shown}");
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["started"], 2, "{v}\n{shown}");
    // The callers heard their own callees: two of the four directions verified, never a
    // callee's.
    assert_eq!(v["audio"]["verified"], 2, "{v}\n{shown}");
    let callees = &v["calls"]["by_role"]["callee"];
    assert_eq!(callees["failed"], 2, "{v}\n{shown}");
    // The first callee to name the other call fails at once and hangs up, which stops the
    // audio the other callee was hearing: that one names call 0 too, or — when its audio
    // ended before two frames — fails `wrong_audio`; never a pass.
    let crossed = callees["failures"]["crossed_audio"].as_u64().unwrap_or(0);
    let wrong = callees["failures"]["wrong_audio"].as_u64().unwrap_or(0);
    assert!(crossed >= 1 && crossed + wrong == 2, "{v}\n{shown}");
    for kind in ["no_audio", "one_way_audio"] {
        assert!(v["failures"][kind].is_null(), "{kind}: {v}\n{shown}");
    }
    // Each crossed callee names the other call (the failed calls' samples in the summary).
    let messages: Vec<String> = v["failed_call_samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["side"] == "callee")
        .flat_map(|s| s["failures"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["kind"] == "crossed_audio")
        .map(|f| f["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(messages.len() as u64, crossed, "{v}\n{shown}");
    for m in &messages {
        assert!(
            m == "crossed audio (caller → callee): heard call 1's caller signature instead of \
                  call 0's"
                || m == "crossed audio (caller → callee): heard call 0's caller signature \
                         instead of call 1's",
            "{m}\n{shown}"
        );
    }
}
