//! Per-call audio signatures against real peers: both ends through Kamailio, an echo peer
//! (SIPp `-rtp_echo`), and the verdicts that name what went wrong.

mod support;

use std::time::Duration;

use sipcheck_core::media::g711::Codec;
use sipcheck_core::media::signature::{SignatureCode, SIGNATURE_LEVEL_DBFS};
use sipcheck_core::media::tone::AudioSource;
use support::describe_output;
use support::kamailio::Kamailio;
use support::process::RunDir;
use support::reports::{assert_schema, run_scenario as run, Reports};
use support::responder::Responder;
use support::sipp::Sipp;

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
    // Both ends in this run: each direction's mouth-to-ear delay, over loopback the receiving
    // jitter buffer: 3 frames, less the phase (0–20 ms) of the receiver's playout ticks
    // against the sender's, within one 20 ms block, plus scheduling.
    let delay = &v["metrics"]["audio.delay"];
    assert_eq!(delay["count"], 40, "{v}");
    let (min, max) = (
        delay["min_ms"].as_f64().unwrap(),
        delay["max_ms"].as_f64().unwrap(),
    );
    assert!(
        min >= 20.0 && max <= 110.0,
        "audio.delay {min}..{max} ms: {v}"
    );
}

#[test]
fn a_callee_that_plays_nothing_through_kamailio_is_one_way_audio_counted_once_per_call() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/kamailio-one-way.yaml",
        &[],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    // Each caller heard nothing; each callee heard its caller: three calls, each failed once,
    // as one-way audio naming the silent direction. The callers' `no_audio` is folded into it.
    assert_eq!(v["calls"]["started"], 3, "{v}");
    assert_eq!(v["calls"]["failed"], 3, "{v}");
    assert_eq!(v["failures"]["one_way_audio"], 3, "{v}");
    for kind in ["no_audio", "crossed_audio", "wrong_audio"] {
        assert!(v["failures"][kind].is_null(), "{kind}: {v}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("one-way audio: callee → caller carried nothing"),
        "{shown}"
    );
    // The failed calls' samples carry what their end received: the signature's verdict.
    assert_schema(&v);
    let samples = v["failed_call_samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 3, "{v}");
    for sample in samples {
        assert_eq!(sample["side"], "caller", "{v}");
        assert_eq!(sample["quality"]["signature"], "one_way_audio", "{v}");
    }
    // The callees heard their callers over loopback: rated, nothing lost.
    let worst = v["quality"]["worst_calls"].as_array().expect("worst calls");
    assert!(!worst.is_empty(), "{v}");
    assert!(
        worst.iter().any(|w| w["side"] == "callee"
            && w["verdict"] == "passed"
            && w["quality"]["packets_lost"] == 0),
        "{v}"
    );
    assert!(
        stdout.contains("worst calls (lowest MOS estimate"),
        "{shown}"
    );
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
    // The callers hang up as soon as they have decoded the callee's code. A callee that has
    // decoded its caller's code by then passes (it heard the right audio); one that has not
    // fails `wrong_audio` "before the call ended": both ends decode at about the same time,
    // so which way each call goes is a race, and either is right.
    let callee = &v["calls"]["by_role"]["callee"];
    let callee_wrong = callee["failures"]["wrong_audio"].as_u64().unwrap_or(0);
    assert_eq!(
        callee["passed"].as_u64().unwrap_or(0) + callee_wrong,
        2,
        "{v}"
    );
    assert_eq!(callee["failed"].as_u64(), Some(callee_wrong), "{v}");
    if callee_wrong > 0 {
        assert!(stdout.contains("before the call ended"), "{shown}");
    }
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

/// A pcap (Ethernet, IPv4, UDP) of `seconds` of PCMU RTP carrying `code`'s signature, as
/// SIPp's `play_pcap_audio` plays it (it rewrites the addresses, keeps the timing).
fn signature_pcap(code: SignatureCode, seconds: u32) -> Vec<u8> {
    let mut playlist = code.playlist(SIGNATURE_LEVEL_DBFS).expect("a valid level");
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for n in 0..seconds * 50 {
        let mut pcm = [0i16; 160];
        playlist.fill(&mut pcm);
        let mut payload = [0u8; 160];
        Codec::Pcmu.encode(&pcm, &mut payload).expect("160 samples");
        let mut rtp = vec![0x80, if n == 0 { 0x80 } else { 0 }];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&(n * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5157_0001u32.to_be_bytes());
        rtp.extend_from_slice(&payload);
        let udp_len = 8 + rtp.len() as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let at_us = u64::from(n) * 20_000;
        out.extend_from_slice(&((at_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((at_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

/// SIPp answering with PCMU and playing, as RTP, `code`'s signature for six seconds (the
/// run directory holds its pcap and scenario).
fn sipp_playing(code: SignatureCode) -> (Sipp, RunDir) {
    let dir = RunDir::new("sipp-signature").expect("a run directory");
    let pcap = dir.join("signature.pcap");
    std::fs::write(&pcap, signature_pcap(code, 6)).expect("pcap");
    let template =
        std::fs::read_to_string(Sipp::peer_scenario("uas_play_pcap.xml")).expect("the scenario");
    let scenario = dir.join("uas_play_signature.xml");
    std::fs::write(
        &scenario,
        template.replace("PCAP_PATH", pcap.to_str().expect("a UTF-8 path")),
    )
    .expect("write the scenario");
    let sipp = Sipp::start_uas(&scenario, &["-mi", "127.0.0.1"]).expect("start sipp");
    (sipp, dir)
}

#[test]
fn a_peer_that_plays_another_calls_signature_is_crossed_audio_naming_that_call() {
    // SIPp plays, as RTP, the signature call 7's callee plays: what a PBX that crossed call 7's
    // audio into call 0 would deliver.
    let (sipp, _dir) = sipp_playing(SignatureCode::for_call(7, true));
    let addr = format!("127.0.0.1:{}", sipp.port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-echo-signature.yaml",
        &[
            "--set",
            "roles.caller.steps.2.expect.signature=peer",
            "--set",
            "load.total_calls=1",
        ],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let v = reports.summary();
    assert_eq!(v["failures"]["crossed_audio"], 1, "{v}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "crossed audio (callee → caller): heard call 7's callee signature instead of call 0's"
        ),
        "{shown}"
    );
}

#[test]
fn a_thousand_calls_through_kamailio_at_25_per_second_never_cross() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/kamailio-signatures-1000.yaml",
        &[],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let v = reports.summary();
    let shown = format!("{}\n{v}", describe_output(&out));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["calls"]["started"], 1000, "{v}");
    assert_eq!(v["calls"]["passed"], 1000, "{v}");
    assert_eq!(v["audio"]["verified"], 2000, "{v}");
    for kind in ["crossed_audio", "no_audio", "one_way_audio", "wrong_audio"] {
        assert!(v["failures"][kind].is_null(), "{kind}: {v}");
    }
}

/// `sipcheck call URI --signature --duration 3s --json`: the round trip it measured, ms.
fn round_trip_ms(uri: &str, shown: impl Fn() -> String) -> f64 {
    let out = support::run_sipcheck(
        ["call", uri, "--signature", "--duration", "3s", "--json"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), shown());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&shown);
    assert_eq!(v["signature_verdict"], "echo", "{shown}");
    v["round_trip_ms"].as_f64().expect(&shown)
}

#[test]
fn call_with_signature_against_an_echo_measures_the_round_trip_and_a_known_added_delay() {
    // SIPp's echo sends each packet straight back: the round trip is our own jitter buffer
    // (3 frames, 60 ms) and the loopback, measured within one 20 ms block: 60 − 20 = 40 ms is
    // the lowest it may read, and it reads a few µs under it when the onset falls right at a
    // block's edge (the send and the playout ticks are on one real clock, not a virtual one).
    let expected = 39.0..=100.0;
    let port = support::free_port();
    let sipp = Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let sipp_rt = round_trip_ms(&format!("sip:echo@127.0.0.1:{port}"), || sipp.log());
    drop(sipp);
    assert!(
        expected.contains(&sipp_rt),
        "SIPp echo round trip {sipp_rt} ms"
    );

    // A relay echoing after exactly 0 and then 100 ms: the difference is the added delay.
    let rt = |delay_ms: u64| {
        let peer = support::impair::ImpairPeer::start(support::impair::Impairment::fixed(
            Duration::from_millis(delay_ms),
        ));
        let uri = peer.uri();
        let rt = round_trip_ms(&uri, String::new);
        let relay = peer.finish();
        assert!(relay.relayed() > 100, "{}", relay.summary());
        rt
    };
    let base = rt(0);
    let delayed = rt(100);
    assert!(expected.contains(&base), "relay round trip {base} ms");
    // Each reading is the true round trip or up to one 20 ms block under it, so their
    // difference is 100 ms ± one block (and a few ms of timer jitter under load).
    assert!(
        (delayed - base - 100.0).abs() <= 25.0,
        "100 ms added: round trip {delayed} ms against {base} ms without"
    );
}

/// `sipcheck call URI --signature --duration 3s`.
fn call_with_signature(uri: &str) -> std::process::Output {
    support::run_sipcheck(["call", uri, "--signature", "--duration", "3s"], &[])
}

#[test]
fn call_with_signature_hears_the_peers_code_its_own_echoed_and_names_a_crossed_call() {
    // The callee's code of call 0 (the probe's call): the peer's signature.
    let (sipp, _dir) = sipp_playing(SignatureCode::for_call(0, true));
    let out = call_with_signature(&format!("sip:bob@127.0.0.1:{}", sipp.port));
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("signature: heard the peer's signature\nPASS"),
        "{shown}"
    );
    drop(sipp);

    // An echo: its own code back, a pass of its own words.
    let port = support::free_port();
    let sipp = Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let out = call_with_signature(&format!("sip:echo@127.0.0.1:{port}"));
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("signature: heard its own signature back (echo)\nround trip: ")
            && stdout.contains(" ms (own signature echoed, ±20 ms)\nPASS"),
        "{shown}"
    );
    drop(sipp);

    // Another call's code: crossed, named.
    let (sipp, _dir) = sipp_playing(SignatureCode::for_call(7, true));
    let out = call_with_signature(&format!("sip:bob@127.0.0.1:{}", sipp.port));
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("FAIL: crossed audio: heard call 7's callee signature instead of the peer's"),
        "{shown}"
    );
    drop(sipp);

    // Nothing back: no audio (and no RTP).
    let port = support::free_port();
    let sipp = Sipp::start_builtin_uas(port, &[]).expect("start sipp");
    let out = call_with_signature(&format!("sip:bob@127.0.0.1:{port}"));
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("no audio: the peer's signature was not heard"),
        "{shown}"
    );
}

#[test]
fn sipcheck_answer_with_signature_plays_the_callees_code_and_verifies_the_callers() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut answer = Responder::start(
        &["--listen", &listen, "--signature", "--calls", "3", "--json"],
        &[],
    );
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/answer-signature.yaml",
        &[],
        &[("ANSWER_ADDR", listen.as_str())],
        &reports,
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 3, "{v}");
    assert_eq!(v["audio"]["verified"], 3, "{v}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let passed = answer
        .stdout()
        .lines()
        .filter(|l| l.contains("\"kind\":\"call\"") && l.contains("\"verdict\":\"pass\""))
        .count();
    assert_eq!(passed, 3, "{shown}");

    // A caller that sends no signature (a tone instead): the responder has no code to
    // expect and fails the call, saying why.
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut answer = Responder::start(&["--listen", &listen, "--signature", "--calls", "1"], &[]);
    let uri = format!("sip:bob@{listen}");
    let out = support::run_sipcheck(
        ["call", &uri, "--play-tone", "440", "--duration", "2s"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(1),
        "{shown}"
    );
    assert!(
        answer
            .stdout()
            .contains("no signature to expect: the INVITE carried no X-Sipcheck-Signature header"),
        "{shown}"
    );
}

#[test]
fn call_with_signature_against_answer_with_signature_verifies_both_directions() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut answer = Responder::start(&["--listen", &listen, "--signature", "--calls", "1"], &[]);
    let out = call_with_signature(&format!("sip:bob@{listen}"));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("signature: heard the peer's signature\nPASS"),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    assert!(answer.stdout().contains("-- PASS"), "{shown}");
}

#[test]
fn call_and_answer_json_carry_the_signature_verdict_and_the_received_quality() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut answer = Responder::start(
        &["--listen", &listen, "--signature", "--calls", "1", "--json"],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    let out = support::run_sipcheck(
        ["call", &uri, "--signature", "--duration", "3s", "--json"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("call's JSON");
    assert_eq!(v["signature_verdict"], "verified", "{v}");
    // Loopback: nothing lost, rated the E-model's best for G.711 without concealment.
    assert_eq!(v["media"]["lost"], 0, "{v}");
    assert!(
        v["media"]["mos_cqe"].as_f64().is_some_and(|m| m > 4.3),
        "{v}"
    );
    assert!(v["media"]["jitter_ms"].is_number(), "{v}");
    assert_eq!(v["media"]["audio_gap_count"], 0, "{v}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let line = answer
        .stdout()
        .lines()
        .find(|l| l.contains("\"kind\":\"call\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("answer's JSON line"))
        .unwrap_or_else(|| panic!("no call line: {shown}"));
    assert_eq!(line["signature"], "verified", "{line}");
    assert_eq!(line["media"]["lost"], 0, "{line}");
    assert!(
        line["media"]["mos_cqe"].as_f64().is_some_and(|m| m > 4.3),
        "{line}"
    );

    // A peer that sends nothing back: the call's verdict says so.
    let port = support::free_port();
    let sipp = Sipp::start_builtin_uas(port, &[]).expect("start sipp");
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let out = support::run_sipcheck(
        ["call", &uri, "--signature", "--duration", "2s", "--json"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("call's JSON");
    assert_eq!(v["signature_verdict"], "no_audio", "{v}");
}
