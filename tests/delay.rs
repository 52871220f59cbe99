//! The mouth-to-ear delay of each direction of a call whose two ends run in one `sipcheck run`,
//! against a delay injected on the path: a test relay (`tests/support/media_relay.rs`) sits
//! between the two roles for SIP and RTP, rewrites both ends' SDP to itself and holds each
//! direction's RTP a known time. The delay measured from the signatures must follow the delay
//! the relay really applied, direction by direction, within one 20 ms block.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::media_relay::{MediaRelay, Relay, RelayReport, Towards};
use support::reports::{run_scenario, Reports};
use support::{describe_output, free_port};

const SCENARIO: &str = "tests/peers/scenarios/delay-relay.yaml";

/// What one run through the relay measured: the delay each end reported for the direction it
/// received (ms), and what the relay did.
struct Measured {
    towards_callee_ms: f64,
    towards_caller_ms: f64,
    relay: RelayReport,
}

fn run_through(relay: Relay) -> Measured {
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let peer = MediaRelay::start(callee.parse().unwrap(), relay);
    let relay_addr = peer.sip.to_string();
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let out = run_scenario(
        SCENARIO,
        &["--calls", calls.to_str().unwrap()],
        &[
            ("CALLEE_LISTEN", callee.as_str()),
            ("CALLER_LISTEN", caller.as_str()),
            ("RELAY_ADDR", relay_addr.as_str()),
            ("RTP_PORTS", "44000-44999"),
        ],
        &reports,
    );
    let report = peer.finish();
    let shown = format!("{relay:?}\n{}\n{}", describe_output(&out), report.summary());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(report.calls, 1, "{shown}");
    assert_eq!(report.sdp_rewritten, 2, "the offer and the answer: {shown}");
    let v = reports.summary();
    assert_eq!(v["metrics"]["audio.delay"]["count"], 2, "{v}\n{shown}");
    let text = std::fs::read_to_string(&calls).expect("the call records");
    let delay_of = |side: &str| -> f64 {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON record"))
            .find(|r| r["side"] == side)
            .and_then(|r| r["quality"]["delay_ms"].as_f64())
            .unwrap_or_else(|| panic!("no delay in the {side}'s record: {text}\n{shown}"))
    };
    Measured {
        // Each end's record holds the delay of the direction it received.
        towards_callee_ms: delay_of("callee"),
        towards_caller_ms: delay_of("caller"),
        relay: report,
    }
}

/// A run through a relay that held every packet of each direction for its nominal delay,
/// give or take less than a frame: the relay's own timing, on a loaded machine, may jitter
/// (a packet held 80 ms late makes the receiver's jitter buffer underrun and grow — a real
/// delay, but not the one injected). Such a run is repeated, at most three times.
fn steady_run(to_callee: u64, to_caller: u64) -> Measured {
    let ms = Duration::from_millis;
    let mut shown = String::new();
    for _ in 0..3 {
        let run = run_through(Relay::delayed(ms(to_callee), ms(to_caller)));
        let steady = [(Towards::Callee, to_callee), (Towards::Caller, to_caller)]
            .iter()
            .all(|&(t, nominal)| run.relay.towards(t).max_held_ms() < nominal as f64 + 20.0);
        if steady {
            return run;
        }
        shown = run.relay.summary();
    }
    panic!("the relay never held its packets steadily three times in a row:\n{shown}");
}

#[test]
fn a_delay_injected_between_two_roles_is_measured_per_direction_within_a_frame() {
    // The receiver's jitter buffer (3 frames, 60 ms) comes on top of the path's delay, less
    // the phase (0–20 ms) of the receiver's playout ticks against the sender's: the measure is
    // the injected delay plus 40–60 ms, one 20 ms frame wide, give or take 5 ms of the
    // threads' scheduling (the sender's reference is when its loop built the packet).
    const JITTER_BUFFER_MS: f64 = 60.0;
    const FRAME_MS: f64 = 20.0;
    const SCHEDULING_MS: f64 = 5.0;
    for (to_callee, to_caller) in [(0, 0), (100, 100), (150, 0)] {
        let run = steady_run(to_callee, to_caller);
        for (towards, measured) in [
            (Towards::Callee, run.towards_callee_ms),
            (Towards::Caller, run.towards_caller_ms),
        ] {
            // What the relay really held the packets, on average (its hop included).
            let injected = run.relay.towards(towards).mean_held_ms();
            let over = measured - injected;
            assert!(
                (JITTER_BUFFER_MS - FRAME_MS - SCHEDULING_MS..=JITTER_BUFFER_MS + SCHEDULING_MS)
                    .contains(&over),
                "towards the {towards:?} ({to_callee}/{to_caller} ms injected): measured \
                 {measured} ms, the relay held {injected:.1} ms\n{}",
                run.relay.summary()
            );
        }
    }
}
