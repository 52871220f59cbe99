//! Synthetic runs for tests: the same run feeds the metrics and verdict tests here and the
//! console, JUnit and JSON reporters' tests and snapshots in the shell (which turns on the
//! `test-fixtures` feature for its tests). Not part of the library's API.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::media::quality::{self, Bpl, LossPattern};
use crate::scenario::threshold::Threshold;
use crate::stats::ladder::{Direction, Rung};
use crate::stats::metrics::{Metrics, RoleInfo, RunInfo, RunSummary, StepInfo};
use crate::stats::outcome::{
    CallMedia, CallResult, Failure, FailureKind, RegisterResult, Side, StepRun,
};

/// The roles and steps of the synthetic run: a callee (lines 8–12) and a caller (16–21).
pub fn info() -> RunInfo {
    let step = |kind: &str, line| StepInfo {
        kind: kind.into(),
        line,
        col: 9,
    };
    RunInfo {
        scenario: "pbx-regression".into(),
        file: "scenarios/pbx-regression.yaml".into(),
        roles: vec![
            RoleInfo {
                name: "callee".into(),
                places_calls: false,
                steps: vec![
                    step("register", 8),
                    step("answer", 9),
                    step("play", 10),
                    step("expect", 11),
                    step("wait_for", 12),
                ],
            },
            RoleInfo {
                name: "caller".into(),
                places_calls: true,
                steps: vec![
                    step("register", 16),
                    step("call", 17),
                    step("expect", 18),
                    step("play", 19),
                    step("expect", 20),
                    step("hangup", 21),
                ],
            },
        ],
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn media(i: u64, lost: u64) -> CallMedia {
    let mut pacing = Histogram::<u32>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for k in 0..250u64 {
        pacing.record(20 + (k * 7 + i) % 400).unwrap();
    }
    pacing.record(2_500).unwrap();
    CallMedia {
        packets_sent: 250,
        packets_received: 250 - lost,
        packets_expected: 250,
        packets_lost: lost,
        jitter_ms: 0.4 + (i % 10) as f64 * 0.1,
        pacing_lateness_us: pacing,
        frames_skipped: u64::from(i == 7),
        stray_packets: 0,
        discontinuities: 0,
        quality: Some({
            // `lost` of 250 frames, spread out.
            let mut pattern = LossPattern::default();
            for k in 0..250 {
                pattern.record(
                    lost > 0 && k % (250 / lost.max(1)) == 1 && k / (250 / lost.max(1)) < lost,
                );
            }
            quality::estimate(&pattern, Bpl::G711_NO_PLC, None)
        }),
        audio_gaps: if i % 10 == 3 {
            vec![ms(60)]
        } else {
            Vec::new()
        },
        audio_gap_count: u64::from(i % 10 == 3),
        signature_sent: Vec::new(),
        signature_onsets: Vec::new(),
        delay: Some(ms(60 + (i % 10) * 4)),
        round_trip: None,
        srtp: None,
    }
}

fn rung(at_ms: f64, direction: Direction, line: &str, cseq: &str) -> Rung {
    let peer: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    Rung {
        at_ms,
        direction,
        peer,
        line: line.into(),
        cseq: cseq.into(),
        retransmission: false,
    }
}

/// The steps at `lines` (column 9), each taking `ms` milliseconds; the last one failed when
/// `failed`.
fn steps(lines: &[(u32, u64)], failed: bool) -> Vec<StepRun> {
    lines
        .iter()
        .enumerate()
        .map(|(i, &(line, took))| StepRun {
            line,
            col: 9,
            elapsed: ms(took),
            passed: !(failed && i + 1 == lines.len()),
        })
        .collect()
}

/// A caller's call `i`: 200 OK in 40 + i ms (i < 100).
pub fn caller(i: u64) -> CallResult {
    CallResult {
        role: "caller".into(),
        side: Side::Caller,
        user: format!("{}", 1050 + i % 50),
        call_id: format!("call-{i}@sipcheck"),
        scheduled: Some(ms(50 * i)),
        start_lag: if i == 3 {
            ms(25)
        } else {
            Duration::from_micros(300)
        },
        invite_to_first_provisional: Some(Duration::from_micros(2_000 + 10 * i)),
        invite_to_ringing: Some(ms(10 + i / 10)),
        invite_to_200: Some(ms(40 + i)),
        bye_rtt: Some(Duration::from_micros(1_500 + i)),
        duration: Some(ms(5_000 + i)),
        tone_onsets: vec![ms(60 + i % 20)],
        audio_checked: 1,
        audio_verified: 1,
        pesq: Vec::new(),
        dtmf_checked: 1,
        dtmf_verified: 1,
        media: Some(media(i, if i.rem_euclid(10) == 0 { 2 } else { 0 })),
        final_code: Some(200),
        bye_code: Some(200),
        redirects: Vec::new(),
        end_reason: "hung up (BYE sent)".into(),
        failures: Vec::new(),
        ladder: Vec::new(),
        steps: steps(
            &[(17, 40 + i), (18, 0), (19, 0), (20, 60), (21, 5_000)],
            false,
        ),
    }
}

/// A callee's side of call `i`.
pub fn callee(i: u64) -> CallResult {
    CallResult {
        role: "callee".into(),
        side: Side::Callee,
        user: format!("{}", 1000 + i % 50),
        scheduled: None,
        start_lag: Duration::ZERO,
        invite_to_first_provisional: Some(Duration::from_micros(200)),
        invite_to_ringing: Some(Duration::from_micros(250)),
        invite_to_200: Some(ms(500)),
        bye_rtt: None,
        tone_onsets: vec![ms(80 + i % 20)],
        dtmf_checked: 0,
        dtmf_verified: 0,
        end_reason: "hung up by the far end (BYE received)".into(),
        steps: steps(&[(9, 500), (10, 0), (11, 80), (12, 4_500)], false),
        bye_code: None,
        redirects: Vec::new(),
        ..caller(i)
    }
}

/// 100 calls between `caller` and `callee`: calls 0 and 1 rejected with 486 (the caller's
/// message full of XML specials, the callee failing its `answer`), call 2 timed out
/// (Timer B, the callee never saw it), call 5's tone missing on the caller. Streams of calls
/// 10, 20 … 90 lose 2 of 250 packets; call 3 starts 25 ms late; call 7 skips a frame on both
/// sides. Each account registers twice, except callee 1049 whose first REGISTER fails.
pub fn run() -> RunSummary {
    use Direction::{Received, Sent};
    let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_900_000_000);
    let mut m = Metrics::new(start, &info());
    for i in 0..100 {
        let mut c = caller(i);
        let mut e = callee(i);
        match i {
            0 | 1 => {
                c.invite_to_200 = None;
                c.duration = None;
                c.bye_rtt = None;
                c.tone_onsets.clear();
                c.media = None;
                c.audio_checked = 0;
                c.audio_verified = 0;
                c.dtmf_checked = 0;
                c.dtmf_verified = 0;
                c.final_code = Some(486);
                c.bye_code = None;
                c.end_reason = "rejected: 486 Busy Here".into();
                c.steps = steps(&[(17, 4)], true);
                c.failures.push(Failure {
                    step: "call",
                    line: 17,
                    col: 9,
                    kind: FailureKind::SipCode(486),
                    message: "call <sip:1000@pbx.test> rejected: 486 \"Busy & Here\"\u{1}".into(),
                });
                c.ladder = vec![
                    rung(0.0, Sent, "INVITE sip:1000@pbx.test SIP/2.0", "1 INVITE"),
                    rung(1.2, Received, "SIP/2.0 100 Trying", "1 INVITE"),
                    rung(3.4, Received, "SIP/2.0 486 Busy Here", "1 INVITE"),
                    rung(3.5, Sent, "ACK sip:1000@pbx.test SIP/2.0", "1 ACK"),
                ];
                e.invite_to_200 = None;
                e.duration = None;
                e.tone_onsets.clear();
                e.media = None;
                e.audio_checked = 0;
                e.audio_verified = 0;
                e.final_code = Some(486);
                e.end_reason = "rejected by the far end's proxy (486 relayed)".into();
                e.steps = steps(&[(9, 3)], true);
                e.failures.push(Failure {
                    step: "answer",
                    line: 9,
                    col: 9,
                    kind: FailureKind::Signalling,
                    message: "the call ended before it could be answered".into(),
                });
                e.ladder = vec![rung(
                    0.0,
                    Received,
                    "INVITE sip:1000@pbx.test SIP/2.0",
                    "1 INVITE",
                )];
            }
            2 => {
                c.invite_to_first_provisional = None;
                c.invite_to_ringing = None;
                c.invite_to_200 = None;
                c.duration = None;
                c.bye_rtt = None;
                c.tone_onsets.clear();
                c.media = None;
                c.audio_checked = 0;
                c.audio_verified = 0;
                c.dtmf_checked = 0;
                c.dtmf_verified = 0;
                c.final_code = None;
                c.bye_code = None;
                c.end_reason = "no answer: Timer B fired".into();
                c.steps = steps(&[(17, 32_000)], true);
                c.failures.push(Failure {
                    step: "call",
                    line: 17,
                    col: 9,
                    kind: FailureKind::Timer("Timer B".into()),
                    message: "no response to INVITE within 32 s (Timer B)".into(),
                });
                c.ladder = vec![
                    rung(0.0, Sent, "INVITE sip:1001@pbx.test SIP/2.0", "1 INVITE"),
                    Rung {
                        retransmission: true,
                        ..rung(500.0, Sent, "INVITE sip:1001@pbx.test SIP/2.0", "1 INVITE")
                    },
                ];
            }
            5 => {
                c.audio_verified = 0;
                c.tone_onsets.clear();
                c.steps = steps(&[(17, 45), (18, 0), (19, 0), (20, 2_000)], true);
                c.failures.push(Failure {
                    step: "expect",
                    line: 20,
                    col: 9,
                    kind: FailureKind::ToneMissing,
                    message: "expected tone 1000 Hz not heard within 2 s".into(),
                });
                c.ladder = vec![
                    rung(0.0, Sent, "INVITE sip:1005@pbx.test SIP/2.0", "1 INVITE"),
                    rung(48.0, Received, "SIP/2.0 200 OK", "1 INVITE"),
                    rung(48.2, Sent, "ACK sip:1005@pbx.test SIP/2.0", "1 ACK"),
                    rung(5048.0, Sent, "BYE sip:1005@pbx.test SIP/2.0", "2 BYE"),
                    rung(5049.6, Received, "SIP/2.0 200 OK", "2 BYE"),
                ];
            }
            _ => {}
        }
        // Every fourth callee scored its speech: PESQ 3.50 to 4.10.
        if i % 4 == 3 {
            e.pesq = vec![3.5 + 0.1 * (i % 7) as f64];
        }
        m.record_call(&c);
        if i != 2 {
            m.record_call(&e);
        }
    }
    for (role, base) in [("caller", 1050), ("callee", 1000)] {
        for u in 0..50u64 {
            for _ in 0..2 {
                let failed = role == "callee" && u == 49;
                m.record_register(&RegisterResult {
                    role: role.into(),
                    user: format!("{}", base + u),
                    rtt: Some(Duration::from_micros(3_000 + 37 * u)),
                    unregister: false,
                    error: failed.then(|| "403 Forbidden".into()),
                });
                if failed {
                    break;
                }
            }
        }
    }
    // The connections' TLS handshakes (one per registering UA of the caller role), and
    // their WebSocket upgrades after them (WSS).
    for u in 0..50u64 {
        m.record_tls_handshake(Duration::from_micros(2_000 + 41 * u));
        m.record_ws_handshake(Duration::from_micros(2_500 + 43 * u));
    }
    m.record_not_started();
    let mut s = m.finish(Duration::from_secs(10), false);
    s.run_id = "5eed0f1ced0c0de5".into();
    s
}

/// Five thresholds on the synthetic run; `calls.failed < 1%` fails (4% failed).
pub fn thresholds() -> Vec<Threshold> {
    [
        ("invite_to_200.p99", "< 500ms"),
        ("calls.failed", "< 1%"),
        ("rtp.loss", "< 0.5%"),
        ("audio.verified", "> 99%"),
        ("register_rtt.p99", "< 200ms"),
    ]
    .iter()
    .map(|(m, c)| Threshold::parse(m, c).unwrap())
    .collect()
}
