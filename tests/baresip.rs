//! `sipcheck call` against a real, independent SIP user agent: baresip 1.0
//! (package baresip-core), headless on loopback, auto-answering with a sine
//! tone of a known frequency and recording what it hears (sndfile).
//!
//! The media checks run both ways: sipcheck must detect baresip's tone (and
//! must not detect one baresip does not send), and baresip's own recording
//! must hold the tone sipcheck played, checked here with a Goertzel filter
//! that shares no code with sipcheck.

mod support;

use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use support::baresip::{Baresip, BaresipAudio, BaresipOptions, DEFAULT_TONE_HZ};
use support::{describe_output, run_sipcheck};

/// The tone sipcheck plays to baresip.
const OUR_TONE_HZ: u32 = 1000;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(opts: BaresipOptions) -> Baresip {
    Baresip::start(opts).unwrap_or_else(|e| panic!("start baresip: {e:#}"))
}

fn json(out: &Output, shown: &str) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("sipcheck --json printed no JSON object ({e})\n{shown}"))
}

/// `sipcheck call URI --expect-tone EXPECT --play-tone 1000 --level=-12 --duration 3s [--json]`.
fn call(peer: &Baresip, expect_hz: u32, as_json: bool) -> Output {
    let uri = peer.uri();
    let expect = expect_hz.to_string();
    let play = OUR_TONE_HZ.to_string();
    let mut args = vec![
        "call",
        &uri,
        "--expect-tone",
        &expect,
        "--play-tone",
        &play,
        "--level=-12",
        "--duration",
        "3s",
    ];
    if as_json {
        args.push("--json");
    }
    run_sipcheck(args, &[])
}

#[test]
fn call_to_baresip_hears_its_tone() {
    let peer = start(BaresipOptions::default());
    let started = Instant::now();
    let out = call(&peer, DEFAULT_TONE_HZ, true);
    let shown = format!("{}\n{}", describe_output(&out), peer.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["final_code"], 200, "{shown}");
    assert_eq!(v["end_reason"], "hung up locally (BYE sent)", "{shown}");
    let media = &v["media"];
    assert_eq!(media["codec"], "PCMU/8000", "{shown}");
    assert_eq!(media["tones"][0]["tone"], "600 Hz", "{shown}");
    assert_eq!(media["tones"][0]["detected"], true, "{shown}");
    assert!(
        media["tones"][0]["snr_db"].as_f64().unwrap() > 20.0,
        "a clean tone: {shown}"
    );
    // 3 s of 20 ms packets: 150, less what the answer and BYE cut off.
    let received = media["packets_received"].as_u64().unwrap();
    assert!((120..=160).contains(&received), "{shown}");
    assert_eq!(media["lost"], 0, "{shown}");
    assert_eq!(media["silent"], false, "{shown}");
    assert_eq!(peer.calls_established(), 1, "{shown}");
    assert!(started.elapsed() < Duration::from_secs(10), "{shown}");
}

#[test]
fn baresip_recording_holds_our_tone() {
    let peer = start(BaresipOptions::default());
    let out = call(&peer, DEFAULT_TONE_HZ, false);
    let shown = format!("{}\n{}", describe_output(&out), peer.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    peer.wait_call_closed(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{shown}"));

    // What baresip decoded from our RTP: about 3 s of our 1000 Hz tone.
    let heard = peer
        .received_audio()
        .unwrap_or_else(|e| panic!("{e:#}\n{shown}"));
    let described = format!(
        "{}: {} samples at {} Hz ({:.2} s), {:.1} dBFS, share at {OUR_TONE_HZ} Hz {:.3}, at \
         {DEFAULT_TONE_HZ} Hz {:.3}\n{shown}",
        heard.path.display(),
        heard.samples.len(),
        heard.rate,
        heard.seconds(),
        heard.rms_dbfs(),
        heard.tone_share(f64::from(OUR_TONE_HZ)),
        heard.tone_share(f64::from(DEFAULT_TONE_HZ)),
    );
    assert_eq!(heard.rate, 8000, "{described}");
    assert!(
        (2.5..=3.5).contains(&heard.seconds()),
        "about 3 s recorded: {described}"
    );
    // Played at -12 dBFS peak: -15 dBFS RMS.
    assert!(
        (-20.0..=-10.0).contains(&heard.rms_dbfs()),
        "level: {described}"
    );
    assert!(
        heard.tone_share(f64::from(OUR_TONE_HZ)) > 0.9,
        "our tone: {described}"
    );
    assert!(
        heard.tone_share(f64::from(DEFAULT_TONE_HZ)) < 0.01,
        "not its own tone: {described}"
    );
    assert!(
        heard.tone_share(f64::from(OUR_TONE_HZ + 300)) < 0.01,
        "nor another: {described}"
    );

    // And what it sent is its own 600 Hz tone: the recording is not an echo.
    let sent = peer
        .sent_audio()
        .unwrap_or_else(|e| panic!("{e:#}\n{shown}"));
    assert!(
        sent.tone_share(f64::from(DEFAULT_TONE_HZ)) > 0.9,
        "{}: share at {DEFAULT_TONE_HZ} Hz {:.3}\n{shown}",
        sent.path.display(),
        sent.tone_share(f64::from(DEFAULT_TONE_HZ))
    );
}

#[test]
fn call_to_baresip_with_wrong_expectation_fails() {
    let peer = start(BaresipOptions::default());
    let wrong = DEFAULT_TONE_HZ + 300;
    let out = call(&peer, wrong, false);
    let shown = format!("{}\n{}", describe_output(&out), peer.log());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        text.contains(&format!("FAIL: expected tone {wrong} Hz not detected")),
        "{shown}"
    );
    assert!(
        text.contains(&format!("tone {wrong} Hz: NOT detected")),
        "{shown}"
    );
    // It failed on the tone alone: the call was answered, audio flowed.
    assert!(
        text.contains("ended: hung up locally (BYE sent)"),
        "{shown}"
    );
    assert!(text.contains("media: PCMU/8000"), "{shown}");
    assert!(!text.contains("not answered"), "{shown}");
    assert_eq!(peer.calls_established(), 1, "{shown}");
}

#[test]
fn call_to_baresip_playing_a_wav_file() {
    // aufile plays the file once and the call ends with it: 10 s > 3 s.
    let hz = 700;
    let peer = start(BaresipOptions {
        audio: BaresipAudio::WavTone { hz, seconds: 10 },
        ..BaresipOptions::default()
    });
    let out = call(&peer, hz, true);
    let shown = format!("{}\n{}", describe_output(&out), peer.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["end_reason"], "hung up locally (BYE sent)", "{shown}");
    assert_eq!(v["media"]["tones"][0]["tone"], "700 Hz", "{shown}");
    assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    assert_eq!(v["media"]["lost"], 0, "{shown}");
    assert!(
        peer.stdout().contains("aufile: loading input file"),
        "{shown}"
    );
}

#[test]
fn baresip_lists_and_hangs_up_the_call_on_command() {
    let peer = start(BaresipOptions::default());
    let uri = peer.uri();
    let caller = thread::spawn(move || {
        run_sipcheck(
            [
                "call",
                &uri,
                "--expect-tone",
                "600",
                "--duration",
                "10s",
                "--json",
            ],
            &[],
        )
    });
    peer.wait_for_log(": Call established: ", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    thread::sleep(Duration::from_millis(1000));
    let listed = peer
        .command("/listcalls")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", peer.log()));
    assert!(
        listed.contains("Active calls (1)"),
        "{listed:?}\n{}",
        peer.log()
    );
    let hung_up_at = Instant::now();
    let reply = peer
        .command("/hangup")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", peer.log()));
    let out = caller.join().expect("the sipcheck thread");
    let ended_after = hung_up_at.elapsed();
    let shown = format!(
        "/hangup replied {reply:?}\n{}\n{}",
        describe_output(&out),
        peer.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out, &shown);
    assert_eq!(
        v["end_reason"], "hung up by the far end (BYE received)",
        "{shown}"
    );
    assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    assert!(
        ended_after < Duration::from_secs(3),
        "ended {ended_after:?} after /hangup: {shown}"
    );
    let duration_ms = v["timings"]["duration_ms"].as_f64().unwrap();
    assert!((800.0..5000.0).contains(&duration_ms), "{shown}");
}

/// The SIP messages of a `--json` report whose start line starts with `line`, as
/// (milliseconds, direction).
fn rungs(v: &serde_json::Value, line: &str, cseq_method: &str) -> Vec<(f64, String)> {
    v["ladder"]
        .as_array()
        .map(|rungs| {
            rungs
                .iter()
                .filter(|r| {
                    r["line"].as_str().is_some_and(|l| l.starts_with(line))
                        && r["cseq"].as_str().is_some_and(|c| c.ends_with(cseq_method))
                        && r["retransmission"] == false
                })
                .map(|r| {
                    (
                        r["at_ms"].as_f64().unwrap_or_default(),
                        r["direction"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// baresip puts sipcheck on hold (its `/hold`: a re-INVITE with `a=sendonly`, and no RTP)
/// for longer than the 3 s RTP timeout, then resumes: the call passes, and baresip's tone is
/// heard again after the resume.
#[test]
fn baresip_holds_the_call_longer_than_the_rtp_timeout_and_the_call_passes() {
    let peer = start(BaresipOptions::default());
    let uri = peer.uri();
    let expect = DEFAULT_TONE_HZ.to_string();
    let caller = thread::spawn(move || {
        run_sipcheck(
            [
                "call",
                &uri,
                "--expect-tone",
                &expect,
                "--play-tone",
                "1000",
                "--duration",
                "9s",
                "--json",
            ],
            &[],
        )
    });
    peer.wait_for_log(": Call established: ", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    thread::sleep(Duration::from_secs(1));
    let held = peer.command("/hold").expect("cons /hold");
    // Held for 4.5 s, more than the RTP timeout.
    thread::sleep(Duration::from_millis(4500));
    let resumed = peer.command("/resume").expect("cons /resume");
    let out = caller.join().expect("the sipcheck thread");
    let shown = format!(
        "/hold: {held}\n/resume: {resumed}\n{}\n{}",
        describe_output(&out),
        peer.log()
    );
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["peer_holds"], 1, "{shown}");
    // Two re-INVITEs from baresip, more than 3 s apart, each answered 200.
    let reinvites = rungs(&v, "INVITE ", "INVITE");
    let received: Vec<f64> = reinvites
        .iter()
        .filter(|(_, d)| d == "received")
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(received.len(), 2, "{shown}");
    assert!(received[1] - received[0] > 4000.0, "{shown}");
    assert!(
        peer.stdout().contains("a=sendonly"),
        "a sendonly hold: {shown}"
    );
    // baresip sent nothing while holding: 9 s of 20 ms packets would be about 450.
    let media = &v["media"];
    let received = media["packets_received"].as_u64().unwrap();
    assert!(
        (150..=320).contains(&received),
        "{received} packets: {shown}"
    );
    // The tone before the hold, and again after the resume.
    assert_eq!(media["tones"][0]["detected"], true, "{shown}");
    assert!(
        !v["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap_or_default().contains("after the resume")),
        "{shown}"
    );
}

/// `sipcheck call --hold-after 1s --hold-for 4s`: sipcheck puts baresip on hold (a
/// re-INVITE with `a=sendonly`, answered `recvonly`), then resumes; the call passes, and
/// baresip's tone is heard again after the resume.
#[test]
fn call_with_hold_after_holds_baresip_and_resumes() {
    let peer = start(BaresipOptions::default());
    let uri = peer.uri();
    let expect = DEFAULT_TONE_HZ.to_string();
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--expect-tone",
            &expect,
            "--play-tone",
            "1000",
            "--duration",
            "8s",
            "--hold-after",
            "1s",
            "--hold-for",
            "4s",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), peer.log());
    let v = json(&out, &shown);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["hold"]["held"], true, "{shown}");
    assert_eq!(v["hold"]["resumed"], true, "{shown}");
    assert_eq!(v["hold"]["tone_after_resume"], true, "{shown}");
    let sent: Vec<f64> = rungs(&v, "INVITE ", "INVITE")
        .iter()
        .filter(|(_, d)| d == "sent")
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(sent.len(), 3, "the INVITE, the hold, the resume: {shown}");
    assert!((3900.0..4500.0).contains(&(sent[2] - sent[1])), "{shown}");
    // baresip's trace shows our sendonly offer and its recvonly answer.
    let log = peer.stdout();
    assert!(log.contains("a=sendonly"), "{shown}");
    assert!(log.contains("a=recvonly"), "{shown}");
}

/// baresip's `/hold` (a re-INVITE with `a=sendonly`, then no RTP) holds a scenario's caller:
/// `expect: { held: true }` passes, and `expect: { audio: true }` fails `no_audio` saying it
/// was on hold, since baresip plays no music on hold.
#[test]
fn baresip_holding_a_scenario_caller_passes_held_and_fails_audio_for_lack_of_music() {
    use support::reports::{run_scenario, Reports};
    let peer = start(BaresipOptions::default());
    let addr = format!("127.0.0.1:{}", peer.sip_port);
    let reports = Reports::new();
    let out = thread::scope(|s| {
        let run = s.spawn(|| {
            run_scenario(
                "tests/peers/scenarios/baresip-holds-us.yaml",
                &[],
                &[("BARESIP_ADDR", addr.as_str())],
                &reports,
            )
        });
        peer.wait_for_log(": Call established: ", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e:#}"));
        // The caller's 600 Hz step takes a few hundred milliseconds; the hold comes after (a
        // hold before the `held` step starts passes it at once all the same).
        thread::sleep(Duration::from_secs(1));
        let held = peer.command("/hold").expect("cons /hold");
        (run.join().expect("the sipcheck thread"), held)
    });
    let (out, held) = out;
    let v = reports.summary();
    let shown = format!(
        "/hold: {held}\n{}\n{v}\n{}",
        describe_output(&out),
        peer.log()
    );
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(peer.stdout().contains("a=sendonly"), "{shown}");
    let steps = v["calls"]["by_role"]["held"]["steps"].as_array().unwrap();
    let step = |line: u64| {
        steps
            .iter()
            .find(|s| s["line"] == line)
            .unwrap_or_else(|| panic!("no step at line {line}: {shown}"))
    };
    assert_eq!(step(15)["passed"], 1, "the tone: {shown}");
    assert_eq!(step(16)["passed"], 1, "held: {shown}");
    assert_eq!(step(17)["failures"]["no_audio"], 1, "audio: {shown}");
    assert!(
        shown.contains("expected audio while on hold, none heard within 2.0 s"),
        "{shown}"
    );
}
