//! IVR prompts heard by voice activity, against real peers: SIPp answering and playing a
//! prompt (a pcap of RTP written from the speech fixture, or a tone, or nothing, or a prompt
//! that never pauses), and a callee behind Kamailio that plays the fixture and expects the
//! caller's DTMF, which the caller keys only once the prompt has ended; music on hold heard by a
//! party held behind Kamailio; the shipped `pbx-features.yaml` through Kamailio.

mod support;

use sipcheck_core::media::g711::Codec;
use sipcheck_core::media::tone::{AudioSource, Tone, ToneGenerator};
use support::describe_output;
use support::kamailio::Kamailio;
use support::process::RunDir;
use support::reports::{assert_schema, run_scenario as run, Reports};
use support::sipp::Sipp;

/// The speech fixture, 8 kHz mono.
fn speech() -> Vec<i16> {
    let bytes =
        std::fs::read(support::repo_root().join("fixtures/speech-8k.wav")).expect("fixture");
    sipcheck_core::media::wav::decode(&bytes)
        .expect("a WAV file")
        .to_vec()
}

/// A pcap (Ethernet, IPv4, UDP) of `audio` as 20 ms PCMU RTP packets, as SIPp's
/// `play_pcap_audio` plays it (it rewrites the addresses, keeps the timing).
fn rtp_pcap(audio: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (n, pcm) in audio.chunks_exact(160).enumerate() {
        let n = n as u32;
        let mut payload = [0u8; 160];
        Codec::Pcmu.encode(pcm, &mut payload).expect("160 samples");
        let mut rtp = vec![0x80, if n == 0 { 0x80 } else { 0 }];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&(n * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5157_0002u32.to_be_bytes());
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

/// SIPp answering with PCMU and playing `audio` as RTP (none at all when `None`); the run
/// directory holds its pcap and scenario.
fn sipp_playing(audio: Option<&[i16]>) -> (Sipp, RunDir) {
    let dir = RunDir::new("sipp-ivr").expect("a run directory");
    // An IVR takes RFC 4733 DTMF: telephone-event in its answer.
    let template = std::fs::read_to_string(Sipp::peer_scenario("uas_play_pcap.xml"))
        .expect("the scenario")
        .replace(
            "RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n",
            "RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000\n      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-16\n",
        );
    assert!(template.contains("telephone-event"));
    let text = match audio {
        Some(audio) => {
            let pcap = dir.join("prompt.pcap");
            std::fs::write(&pcap, rtp_pcap(audio)).expect("pcap");
            template.replace("PCAP_PATH", pcap.to_str().expect("a UTF-8 path"))
        }
        None => {
            let start = template.find("  <nop>").expect("the play action");
            let end = template.find("</nop>").expect("its end") + "</nop>".len();
            format!("{}{}", &template[..start], &template[end..])
        }
    };
    assert_eq!(text.contains("play_pcap_audio"), audio.is_some());
    let scenario = dir.join("uas_ivr.xml");
    std::fs::write(&scenario, text).expect("write the scenario");
    let sipp = Sipp::start_uas(&scenario, &["-mi", "127.0.0.1"]).expect("start sipp");
    (sipp, dir)
}

/// `sipcheck run` of the SIPp IVR scenario against `sipp`: the exit code, the summary and
/// what to show on failure.
fn run_against(sipp: &Sipp) -> (Option<i32>, serde_json::Value, String) {
    let addr = format!("127.0.0.1:{}", sipp.port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-ivr.yaml",
        &[],
        &[("SIPP_ADDR", addr.as_str())],
        &reports,
    );
    let v = reports.summary();
    assert_schema(&v);
    let shown = format!("{}\n{v}\n{}", describe_output(&out), sipp.log());
    (out.status.code(), v, shown)
}

/// The caller's step at scenario line `line` in the summary.
fn step(v: &serde_json::Value, line: u64) -> serde_json::Value {
    v["calls"]["by_role"]["caller"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["line"] == line)
        .unwrap_or_else(|| panic!("no step at line {line}: {v}"))
        .clone()
}

#[test]
fn a_prompt_played_by_sipp_is_heard_then_its_end_and_the_caller_keys_after_it() {
    let (sipp, _dir) = sipp_playing(Some(&speech()));
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(v["calls"]["passed"], 1, "{shown}");
    assert_eq!(v["audio"]["checked"], 2, "{shown}");
    assert_eq!(v["audio"]["verified"], 2, "{shown}");
    // Speech begins 0.4 s into the prompt; its last word ends at 10.2 s, heard over 600 ms
    // later: the DTMF step comes after the prompt, not at a pause between its sentences.
    let speech = step(&v, 14)["time_ms"].as_f64().unwrap();
    assert!(
        (300.0..1500.0).contains(&speech),
        "speech after {speech} ms\n{shown}"
    );
    let prompt = step(&v, 15)["time_ms"].as_f64().unwrap();
    assert!(
        (9_000.0..11_500.0).contains(&(speech + prompt)),
        "prompt over after {} ms\n{shown}",
        speech + prompt
    );
    assert_eq!(step(&v, 16)["passed"], 1, "{shown}");
}

#[test]
fn a_peer_that_plays_only_a_tone_fails_no_speech_at_the_steps_line() {
    let mut tone = ToneGenerator::new(&Tone::single(1000.0, -12.0).unwrap());
    let mut audio = vec![0i16; 8000 * 8];
    tone.fill(&mut audio);
    let (sipp, _dir) = sipp_playing(Some(&audio));
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["no_speech"], 1, "{shown}");
    let s = step(&v, 14);
    assert_eq!(s["failed"], 1, "{shown}");
    assert_eq!(s["failures"]["no_speech"], 1, "{shown}");
    assert!(
        shown.contains("expected speech, none heard within 5.0 s (received level"),
        "{shown}"
    );
    // The DTMF step is never reached.
    assert_eq!(step(&v, 16)["reached"], 0, "{shown}");
}

#[test]
fn a_peer_that_plays_nothing_fails_no_speech_having_received_no_audio() {
    let (sipp, _dir) = sipp_playing(None);
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["no_speech"], 1, "{shown}");
    assert_eq!(step(&v, 14)["failures"]["no_speech"], 1, "{shown}");
    assert!(
        shown.contains("expected speech, none heard within 5.0 s (received no audio)"),
        "{shown}"
    );
}

#[test]
fn a_prompt_that_never_pauses_fails_prompt_never_ended() {
    // The fixture's speech without its silent ends, three times over: 29 s without a pause
    // of 600 ms, longer than the step's 15 s.
    let words = &speech()[3_200..81_440];
    let audio: Vec<i16> = words.iter().chain(words).chain(words).copied().collect();
    let (sipp, _dir) = sipp_playing(Some(&audio));
    let (code, v, shown) = run_against(&sipp);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["prompt_never_ended"], 1, "{shown}");
    let s = step(&v, 15);
    assert_eq!(s["failures"]["prompt_never_ended"], 1, "{shown}");
    assert!(
        shown.contains("the prompt began but did not end within 15.0 s"),
        "{shown}"
    );
    assert_eq!(step(&v, 16)["reached"], 0, "{shown}");
}

#[test]
fn an_ivr_behind_kamailio_gets_its_dtmf_only_after_its_prompt() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/kamailio-ivr.yaml",
        &[],
        &[("SIP_SERVER", server.as_str())],
        &reports,
    );
    let v = reports.summary();
    assert_schema(&v);
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["calls"]["by_role"]["caller"]["passed"], 1, "{shown}");
    // The IVR heard the caller's 1.
    assert_eq!(v["calls"]["by_role"]["ivr"]["passed"], 1, "{shown}");
    assert_eq!(v["dtmf"]["verified"], 1, "{shown}");
    let caller = |line| step(&v, line)["time_ms"].as_f64().unwrap();
    let (speech, prompt) = (caller(28), caller(29));
    assert!(
        (9_000.0..11_500.0).contains(&(speech + prompt)),
        "prompt over after {} ms\n{shown}",
        speech + prompt
    );
}

#[test]
fn a_party_held_behind_kamailio_is_held_and_hears_the_music_on_hold_and_fails_without_it() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let scenario = "tests/peers/scenarios/kamailio-moh.yaml";
    let envs = [("SIP_SERVER", server.as_str())];
    let reports = Reports::new();
    let out = run(scenario, &[], &envs, &reports);
    let v = reports.summary();
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["calls"]["by_role"]["held"]["passed"], 1, "{shown}");
    assert_eq!(v["calls"]["by_role"]["holder"]["passed"], 1, "{shown}");
    // Audio on hold, and its 425 Hz.
    assert_eq!(v["audio"]["verified"], 2, "{shown}");

    // The holder plays nothing while holding: the held party fails naming it.
    let reports = Reports::new();
    let out = run(
        scenario,
        &["--set", "roles.holder.steps.5={play: {silence: 5s}}"],
        &envs,
        &reports,
    );
    let v = reports.summary();
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(v["calls"]["by_role"]["held"]["failed"], 1, "{shown}");
    assert_eq!(v["failures"]["no_audio"], 1, "{shown}");
    assert!(
        shown.contains("expected audio while on hold, none heard within 3.0 s"),
        "{shown}"
    );

    // The holder never holds: not_held, naming that no re-INVITE came.
    let reports = Reports::new();
    let out = run(
        scenario,
        &["--set", "roles.holder.steps.4={wait: 1s}"],
        &envs,
        &reports,
    );
    let v = reports.summary();
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert_eq!(v["failures"]["not_held"], 1, "{shown}");
    assert!(
        shown.contains("expected the peer to put the call on hold: within 5.0 s it sent no re-INVITE or UPDATE"),
        "{shown}"
    );
}

#[test]
fn the_shipped_pbx_features_scenario_through_kamailio_fails_only_the_roles_it_cannot_serve() {
    // Kamailio is a proxy: it has no music on hold (the holder plays 425 Hz itself here), no
    // IVR, no redirecting number, no hunt group and no conference room. Basic call, hold, DTMF
    // and the attended transfer (REFER, NOTIFY and Replaces passed end to end) pass; the IVR
    // (both roles), redirect, hunt and conference roles fail, each alone.
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let envs = [
        ("SIP_SERVER", server.as_str()),
        ("SIP_DOMAIN", "sipcheck.test"),
    ];
    let reports = Reports::new();
    let out = run(
        "scenarios/pbx-features.yaml",
        &["--set", "roles.holder.steps.5={play: {tone: 425Hz}}"],
        &envs,
        &reports,
    );
    let v = reports.summary();
    let shown = format!("{}\n{v}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let roles = &v["calls"]["by_role"];
    for role in [
        "basic_caller",
        "basic_callee",
        "holder",
        "held",
        "dtmf_caller",
        "dtmf_callee",
        "transferee",
        "transfer_target",
        "transferor",
    ] {
        assert_eq!(roles[role]["passed"], 1, "{role}: {shown}");
        assert_eq!(roles[role]["failed"], 0, "{role}: {shown}");
    }
    for role in [
        "ivr_caller",
        "ivr_prompt",
        "redirect_caller",
        "hunt_caller",
        "conf_a",
        "conf_b",
        "conf_c",
    ] {
        assert_eq!(roles[role]["failed"], 1, "{role}: {shown}");
    }
    assert_eq!(v["dtmf"]["verified"], 1, "{shown}");
}

/// The first sentence of the speech fixture (0.3–3.3 s): the prompt of `sipp-prompt.yaml`.
fn prompt() -> Vec<i16> {
    speech()[2_400..26_400].to_vec()
}

/// `sipcheck run` of `sipp-prompt.yaml` against SIPp playing `audio` after a second of
/// silence; the reference is [`prompt`], written as a WAV file (converted by `sox` to 16 kHz
/// stereo when `wide`).
fn run_prompt_against(audio: &[i16], wide: bool) -> (Option<i32>, serde_json::Value, String) {
    let mut played = vec![0i16; 8000];
    played.extend_from_slice(audio);
    played.extend(std::iter::repeat_n(0, 3 * 8000));
    let (sipp, dir) = sipp_playing(Some(&played));
    let narrow = dir.join("prompt-8k.wav");
    std::fs::write(&narrow, sipcheck_core::media::wav::encode(&prompt())).expect("write the WAV");
    let wav = if wide {
        let wide = dir.join("prompt-16k-stereo.wav");
        let status = std::process::Command::new("sox")
            .arg(&narrow)
            .args(["-r", "16000", "-c", "2"])
            .arg(&wide)
            .status()
            .expect("sox runs");
        assert!(status.success());
        wide
    } else {
        narrow
    };
    let addr = format!("127.0.0.1:{}", sipp.port);
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/sipp-prompt.yaml",
        &[],
        &[
            ("SIPP_ADDR", addr.as_str()),
            ("PROMPT_WAV", wav.to_str().expect("a UTF-8 path")),
        ],
        &reports,
    );
    let v = reports.summary();
    assert_schema(&v);
    let shown = format!("{}\n{v}\n{}", describe_output(&out), sipp.log());
    (out.status.code(), v, shown)
}

#[test]
fn the_prompt_played_by_sipp_matches_its_recording() {
    // The reference as recorded (8 kHz mono), and as a studio would hand it over (16 kHz
    // stereo), which sipcheck resamples.
    for wide in [false, true] {
        let (code, v, shown) = run_prompt_against(&prompt(), wide);
        assert_eq!(code, Some(0), "wide {wide}: {shown}");
        assert_eq!(v["calls"]["passed"], 1, "{shown}");
        assert_eq!(v["audio"]["verified"], 1, "{shown}");
        assert_eq!(step(&v, 14)["passed"], 1, "{shown}");
    }
}

#[test]
fn another_prompt_played_by_sipp_fails_prompt_mismatch_with_its_similarity() {
    // Another sentence of the same voice.
    let other = speech()[40_000..64_000].to_vec();
    let (code, v, shown) = run_prompt_against(&other, false);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(v["failures"]["prompt_mismatch"], 1, "{shown}");
    assert_eq!(step(&v, 14)["failures"]["prompt_mismatch"], 1, "{shown}");
    // The similarity found, in the JSON summary's failure sample.
    let message = v["failed_call_samples"][0]["failures"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a failure message\n{shown}"));
    let similarity: f64 = message
        .split("similarity ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{message}\n{shown}"));
    assert!(similarity < 0.8, "{message}");
    assert!(message.ends_with(" < 0.8"), "{message}");
}
