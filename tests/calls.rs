//! `sipcheck call` and `sipcheck answer` with real audio, against each other, through a real
//! Kamailio (digest auth on INVITE), and against SIPp.

mod support;

use std::process::Output;
use std::time::Duration;

use support::kamailio::Kamailio;
use support::responder::{Responder, ANSWER_TONES, CALLER_TONES};
use support::{describe_output, free_port, run_sipcheck};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn direct_call_tones_and_dtmf_both_ways() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(
        &[
            &[
                "--listen",
                &listen,
                "--ring",
                "200ms",
                "--send-dtmf",
                "456",
                "--expect-dtmf",
                "123",
            ],
            &ANSWER_TONES[..],
        ]
        .concat(),
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        [
            &["call", &uri][..],
            &CALLER_TONES,
            &[
                "--send-dtmf",
                "123",
                "--expect-dtmf",
                "456",
                "--duration",
                "2s",
                "--json",
            ],
        ]
        .concat(),
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["verdict"], "pass", "{shown}");
    let media = &v["media"];
    assert_eq!(media["tones"][0]["detected"], true, "{shown}");
    assert_eq!(media["dtmf_received"], "456", "{shown}");
    assert_eq!(media["lost"], 0, "{shown}");
    assert!(media["packets_received"].as_u64().unwrap() >= 90, "{shown}");
    // Ringing for 200 ms before the answer.
    assert!(
        v["timings"]["invite_to_answer_ms"].as_f64().unwrap() >= 190.0,
        "{shown}"
    );
    assert!(
        v["timings"]["invite_to_ringing_ms"].as_f64().unwrap() < 100.0,
        "{shown}"
    );

    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let answered = answer.stdout();
    assert!(answered.contains("tone 440 Hz at"), "{shown}");
    assert!(answered.contains("dtmf '123'"), "{shown}");
    assert!(answered.contains("-- PASS"), "{shown}");
}

#[test]
fn silent_far_end_fails_the_expected_tone() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _answer = Responder::start(&["--listen", &listen], &[]);
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        [&["call", &uri][..], &CALLER_TONES, &["--duration", "1s"]].concat(),
        &[],
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        stdout(&out).contains("FAIL: expected tone 1000 Hz not detected"),
        "{shown}"
    );
    assert!(
        stdout(&out).contains("tone 1000 Hz: NOT detected"),
        "{shown}"
    );
}

#[test]
fn a_quiet_responder_prints_only_the_failed_calls_and_the_totals() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--quiet",
            "--expect-tone",
            "440",
            "--calls",
            "2",
        ],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    // The first call plays what the responder expects, the second does not.
    for hz in ["440", "1000"] {
        let out = run_sipcheck(["call", &uri, "--play-tone", hz, "--duration", "1s"], &[]);
        assert!(out.status.code().is_some(), "{}", describe_output(&out));
    }
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(1),
        "{}",
        answer.output()
    );
    let printed = answer.stdout();
    let calls: Vec<&str> = printed.lines().filter(|l| l.starts_with("call ")).collect();
    assert_eq!(calls.len(), 1, "{printed}");
    assert!(calls[0].contains("FAIL: expected tone 440 Hz"), "{printed}");
    assert!(printed.contains("1 passed, 1 failed"), "{printed}");
}

#[test]
fn a_responder_without_rtp_answers_inactive_and_the_caller_expects_no_audio() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(
        &["--listen", &listen, "--no-rtp", "--calls", "2", "--json"],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    // Without audio expectations the call passes: the far end said it sends nothing.
    let out = run_sipcheck(["call", &uri, "--duration", "1s", "--json"], &[]);
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["media"]["direction"], "inactive", "{shown}");
    assert_eq!(v["media"]["packets_sent"], 0, "{shown}");
    assert_eq!(v["media"]["remote"], "127.0.0.1:9", "{shown}");
    // Expecting a tone from it fails, and says why.
    let out = run_sipcheck(
        ["call", &uri, "--duration", "1s", "--expect-tone", "440"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        stdout(&out).contains("the negotiated direction is inactive: the far end sends none"),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let answered = answer.stdout();
    assert_eq!(answered.matches("\"media\":null").count(), 2, "{answered}");
    // No frame was sent: no lateness to report (not a lateness of zero).
    assert!(
        answered.contains("\"pacing_lateness_ms\":null"),
        "{answered}"
    );
    // Playing or checking audio makes no sense without RTP: a usage error.
    let out = run_sipcheck(["answer", "--no-rtp", "--play-tone", "440"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
}

#[test]
fn busy_is_the_failure_reason() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _answer = Responder::start(&["--listen", &listen, "--reject", "486"], &[]);
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(["call", &uri, "--json"], &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["final_code"], 486);
    assert_eq!(v["end_reason"], "rejected: 486 Busy Here", "{shown}");
    assert_eq!(
        v["failures"][0], "not answered: rejected: 486 Busy Here",
        "{shown}"
    );
}

#[test]
fn cancel_while_ringing_ends_with_487() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(&["--listen", &listen, "--ring", "10s", "--calls", "1"], &[]);
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(["call", &uri, "--cancel-after", "500ms", "--json"], &[]);
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["final_code"], 487, "{shown}");
    assert_eq!(v["end_reason"], "cancelled", "{shown}");
    let ladder: Vec<String> = v["ladder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ladder.iter().any(|l| l.starts_with("CANCEL ")),
        "{ladder:?}"
    );
    assert!(ladder.iter().any(|l| l.contains("487")), "{ladder:?}");
    answer.wait_exit(Duration::from_secs(10));
    assert!(
        answer.stdout().contains("cancelled by the caller"),
        "{shown}"
    );
}

#[test]
fn kamailio_routes_an_authenticated_call_to_a_registered_responder() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.server_for("udp");
    let callee_pw = Kamailio::password_for("2001");
    let mut answer = kam.answer_as(
        &server,
        "2001",
        &[
            &[
                "--ring",
                "300ms",
                "--send-dtmf",
                "789",
                "--expect-dtmf",
                "123",
            ],
            &ANSWER_TONES[..],
        ]
        .concat(),
    );
    assert_eq!(kam.bindings("2001").len(), 1, "{}", answer.output());

    let caller_pw = Kamailio::password_for("1001");
    let out = run_sipcheck(
        [
            &Kamailio::call_from(&server, "1001", "sip:2001@127.0.0.1")[..],
            &CALLER_TONES,
            &[
                "--send-dtmf",
                "123",
                "--expect-dtmf",
                "789",
                "--duration",
                "2s",
                "--json",
            ],
        ]
        .concat(),
        &[("SIP_PASSWORD", caller_pw.as_str())],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<&str> = v["ladder"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_str().unwrap())
        .collect();
    // 407 challenge on the INVITE, answered with credentials.
    assert!(lines.iter().any(|l| l.contains("407")), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("INVITE ")).count(),
        2,
        "{lines:?}"
    );
    assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    assert_eq!(v["media"]["dtmf_received"], "789", "{shown}");
    assert!(
        !shown.contains(&caller_pw) && !shown.contains(&callee_pw),
        "password leaked"
    );

    assert_eq!(
        answer.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{shown}"
    );
    assert!(answer.stdout().contains("dtmf '123'"), "{shown}");
    // The responder unregistered on its way out.
    assert!(kam.bindings("2001").is_empty(), "{shown}");
}

#[test]
fn cancel_through_kamailio_reaches_the_ringing_responder() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.server_for("udp");
    let mut answer = kam.answer_as(&server, "2002", &["--ring", "10s", "--calls", "1"]);
    let out = run_sipcheck(
        [
            &Kamailio::call_from(&server, "1002", "sip:2002@127.0.0.1")[..],
            &["--cancel-after", "1s", "--json"],
        ]
        .concat(),
        &[("SIP_PASSWORD", Kamailio::password_for("1002").as_str())],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["final_code"], 487, "{shown}");
    answer.wait_exit(Duration::from_secs(15));
    assert!(
        answer.stdout().contains("cancelled by the caller"),
        "{shown}"
    );
}

#[test]
fn sipp_rtp_echo_returns_our_tone() {
    let port = free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let uri = format!("sip:echo@127.0.0.1:{port}");
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "350+440",
            "--expect-tone",
            "350+440",
            "--duration",
            "2s",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        stdout(&out).contains("tone 350+440 Hz: detected"),
        "{shown}"
    );
}

#[test]
fn sipp_uac_pcap_calls_the_responder_and_its_audio_arrives() {
    let sipp_bin = support::process::require_program("sipp", "sip-tester").expect("sipp");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(&["--listen", &listen, "--calls", "1", "--json"], &[]);
    // uac_pcap plays pcap/g711a.pcap relative to its working directory.
    let dir = answer.dir().join("sipp");
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    for entry in std::fs::read_dir("/usr/share/sip-tester").expect("sip-tester's data") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") {
            std::fs::copy(&path, dir.join("pcap").join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut cmd = std::process::Command::new(sipp_bin);
    cmd.args([
        "-sn",
        "uac_pcap",
        &listen,
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-m",
        "1",
    ])
    .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
    .arg("-p")
    .arg(free_port().to_string())
    .current_dir(&dir);
    let out = support::process::run_with_timeout(cmd, Duration::from_secs(40))
        .unwrap_or_else(|_| panic!("sipp uac_pcap did not finish\n{}", answer.output()));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "sipp's call failed\n{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let line = answer.stdout();
    let mut lines = line
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    assert_eq!(lines.next().unwrap()["kind"], "listening");
    let call = lines.next().unwrap();
    assert_eq!(call["verdict"], "pass", "{shown}");
    assert_eq!(call["media"]["codec"], "PCMA/8000", "{shown}");
    // g711a.pcap holds 236 packets of 30 ms A-law speech, then an RFC 2833 event under a
    // new SSRC: every packet counts, none lost, and the speech is not silence.
    assert!(
        call["media"]["packets_received"].as_u64().unwrap() >= 236,
        "{shown}"
    );
    assert_eq!(call["media"]["lost"], 0, "{shown}");
    assert_eq!(call["media"]["ssrc_changes"], 1, "{shown}");
    assert_eq!(call["media"]["silent"], false, "{shown}");
    // uac_pcap also plays an RFC 2833 event for digit 1.
    assert_eq!(call["media"]["dtmf_received"], "1", "{shown}");
}

#[test]
fn wav_files_at_8k_and_16k_stereo_are_played_and_recorded() {
    for (wav, hz) in [
        ("fixtures/tone-1000hz-8k.wav", "1000"),
        ("fixtures/tone-700hz-16k-stereo.wav", "700"),
        // G.711 telephony files (format tags 6 and 7), one byte a sample.
        ("fixtures/tone-1000hz-8k-alaw.wav", "1000"),
        ("fixtures/tone-1000hz-8k-ulaw.wav", "1000"),
    ] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut answer = Responder::start(
            &["--listen", &listen, "--expect-tone", hz, "--calls", "1"],
            &[],
        );
        let record = answer.dir().join("caller.wav");
        let wav_path = support::repo_root().join(wav);
        let uri = format!("sip:bob@{listen}");
        let out = run_sipcheck(
            [
                "call",
                &uri,
                "--play-wav",
                wav_path.to_str().unwrap(),
                "--duration",
                "2s",
                "--record",
                record.to_str().unwrap(),
            ],
            &[],
        );
        let shown = format!("{}\n{}", describe_output(&out), answer.output());
        assert_eq!(out.status.code(), Some(0), "{wav}: {shown}");
        assert_eq!(
            answer.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{wav}: {shown}"
        );
        assert!(
            answer.stdout().contains(&format!("tone {hz} Hz at")),
            "{shown}"
        );
        // The caller's recording is a valid 8 kHz WAV of what it received (silence here).
        let bytes = std::fs::read(&record).expect("recording written");
        assert_eq!(&bytes[..4], b"RIFF");
        assert!(bytes.len() > 44 + 2 * 8000, "{} bytes", bytes.len());
    }
}

#[test]
fn an_unreadable_wav_is_a_usage_error_and_nothing_is_sent() {
    let port = free_port();
    // A plain UDP socket stands in for the callee: it must receive nothing.
    let callee = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    callee.set_nonblocking(true).unwrap();
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let out = run_sipcheck(["call", &uri, "--play-wav", "/nonexistent.wav"], &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.wav"),
        "{shown}"
    );
    let mut buf = [0u8; 2048];
    assert!(callee.recv(&mut buf).is_err(), "something was sent");
}

#[test]
fn ipv6_call_with_media_over_loopback() {
    let port = free_port();
    let listen = format!("[::1]:{port}");
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--play-tone",
            "900",
            "--expect-tone",
            "600",
            "--calls",
            "1",
        ],
        &[],
    );
    let uri = format!("sip:bob@[::1]:{port}");
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "600",
            "--expect-tone",
            "900",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["media"]["remote"].as_str().unwrap().starts_with("[::1]:"),
        "{shown}"
    );
    let first = v["ladder"][0]["peer"].as_str().unwrap();
    assert!(first.starts_with("[::1]:"), "{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}

/// SIPp answers with a session timer it refreshes itself, then refreshes the session by
/// re-INVITE, holds the call by UPDATE (a=sendonly) for 4 s — more than the RTP timeout, its
/// echo of our RTP stopping — resumes by UPDATE and refreshes by a bodiless UPDATE
/// (`tests/peers/uas_session_timer_update.xml`, which checks each 200): the call passes, and
/// our tone is heard again after the resume.
#[test]
fn sipp_session_refresh_and_update_hold_mid_call_pass() {
    let sipp = support::sipp::Sipp::start_uas(
        "uas_session_timer_update.xml",
        &["-rtp_echo", "-mi", "127.0.0.1", "-m", "1"],
    )
    .expect("start sipp");
    let uri = format!("sip:timer@127.0.0.1:{}", sipp.port);
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "1000",
            "--expect-tone",
            "1000",
            "--duration",
            "9s",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        sipp.log(),
        sipp.messages()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["peer_holds"], 1, "{shown}");
    // What SIPp received: the 200s to its re-INVITE and UPDATEs, as the scenario checked.
    let oks: Vec<String> = sipp
        .received()
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 200"))
        .collect();
    assert_eq!(oks.len(), 4, "{shown}");
    let header = |m: &str, name: &str| support::sip::header(m, name).unwrap_or_default();
    assert_eq!(
        header(&oks[0], "Session-Expires"),
        "90;refresher=uac",
        "{shown}"
    );
    assert_eq!(header(&oks[0], "Require"), "timer", "{shown}");
    assert!(oks[1].contains("a=recvonly"), "{shown}");
    assert!(oks[2].contains("a=sendrecv"), "{shown}");
    assert_eq!(
        header(&oks[3], "Session-Expires"),
        "90;refresher=uac",
        "{shown}"
    );
    // No error in SIPp's scenario (a failed check would be one).
    assert!(
        !sipp.errors().contains("Failed") && !sipp.errors().contains("failed"),
        "{shown}"
    );
}

/// `--hold-after`: SIPp answers the hold `a=recvonly`, then the resume `a=sendonly`, holding
/// the call itself (`tests/peers/uas_resume_answered_on_hold.xml`): the call passes (a peer's
/// hold is no failure), both re-INVITEs were answered 2xx, and the report claims nothing of
/// the tone after the resume, none having been looked for (the tone heard before the hold
/// says nothing of it).
#[test]
fn sipp_answering_our_resume_on_hold_claims_no_tone_after_the_resume() {
    let sipp = support::sipp::Sipp::start_uas(
        "uas_resume_answered_on_hold.xml",
        &["-rtp_echo", "-mi", "127.0.0.1", "-m", "1"],
    )
    .expect("start sipp");
    let uri = format!("sip:hold@127.0.0.1:{}", sipp.port);
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "1000",
            "--expect-tone",
            "1000",
            "--duration",
            "6s",
            "--hold-after",
            "1500ms",
            "--hold-for",
            "2s",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        sipp.log(),
        sipp.messages()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    assert_eq!(v["hold"]["held"], true, "{shown}");
    assert_eq!(v["hold"]["resumed"], true, "{shown}");
    assert!(v["hold"]["tone_after_resume"].is_null(), "{shown}");
    assert!(
        v["call_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{shown}"
    );
    assert!(
        !sipp.errors().contains("Failed") && !sipp.errors().contains("failed"),
        "{shown}"
    );
}

/// SIPp answers making sipcheck the refresher of a (short) session timer
/// (`tests/peers/uas_session_timer_uac_refresh.xml`): sipcheck refreshes it by re-INVITE at
/// half the interval, its SDP unchanged, and the call passes.
#[test]
fn sipp_making_the_caller_refresher_gets_its_refresh() {
    let sipp = support::sipp::Sipp::start_uas(
        "uas_session_timer_uac_refresh.xml",
        &["-rtp_echo", "-mi", "127.0.0.1", "-m", "1"],
    )
    .expect("start sipp");
    let uri = format!("sip:timer@127.0.0.1:{}", sipp.port);
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "1000",
            "--expect-tone",
            "1000",
            "--duration",
            "3s",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        sipp.log(),
        sipp.messages()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let invites: Vec<String> = sipp
        .received()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 2, "the INVITE and one refresh: {shown}");
    let header = |m: &str, name: &str| support::sip::header(m, name).unwrap_or_default();
    assert_eq!(
        header(&invites[1], "Session-Expires"),
        "4;refresher=uac",
        "{shown}"
    );
    assert_eq!(header(&invites[1], "Supported"), "timer", "{shown}");
    // The refresh's SDP is the INVITE's (the same o= line, version included).
    let origin = |m: &str| m.lines().find(|l| l.starts_with("o=")).map(str::to_owned);
    assert_eq!(origin(&invites[1]), origin(&invites[0]), "{shown}");
    assert!(!sipp.errors().contains("ailed"), "{shown}");
}

#[test]
fn ctrl_c_mid_call_hangs_up_and_the_call_fails_as_interrupted() {
    use std::process::{Command, Stdio};
    use support::process::{self, RunDir};

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(&["--listen", &listen, "--calls", "1"], &[]);
    let uri = format!("sip:bob@{listen}");
    let dir = RunDir::new("call-interrupt").expect("run dir");
    let trace = dir.join("trace");
    let stdout_path = dir.join("stdout");
    let mut call = Command::new(support::sipcheck_bin())
        .args(["call", &uri, "--duration", "30s", "--json", "--trace-sip"])
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipcheck call");
    // The call is up once our ACK is out.
    let up = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        process::read_lossy(&trace).contains("ACK sip:")
    });
    let _ = process::signal(call.id(), "INT");
    let status = process::wait_timeout(&mut call, Duration::from_secs(10));
    if status.is_none() {
        let _ = call.kill();
        let _ = call.wait();
    }
    let printed = process::read_lossy(&stdout_path);
    let shown = format!(
        "{printed}\n--- trace ---\n{}\n{}",
        process::read_lossy(&trace),
        answer.output()
    );
    assert!(up, "the call never came up\n{shown}");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(v["verdict"], "fail", "{shown}");
    assert_eq!(v["interrupted"], true, "{shown}");
    assert_eq!(v["final_code"], 200, "{shown}");
    // Hung up, and the BYE answered: the far end saw the call end.
    assert_eq!(v["bye_code"], 200, "{shown}");
    assert!(
        v["failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "interrupted")),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
}

#[test]
fn ctrl_c_while_registering_places_no_call() {
    use std::process::{Command, Stdio};
    use support::process::{self, RunDir};

    // A registrar that never answers.
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let uri = format!("sip:bob@{}", registrar.local_addr().expect("address"));
    let dir = RunDir::new("call-interrupt-register").expect("run dir");
    let trace = dir.join("trace");
    let stdout_path = dir.join("stdout");
    let mut call = Command::new(support::sipcheck_bin())
        .args(["call", &uri, "--register", "--user", "alice", "--json"])
        .arg("--trace-sip")
        .arg(&trace)
        .env("SIP_PASSWORD", "secret")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipcheck call");
    let registering =
        process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            process::read_lossy(&trace).contains("REGISTER sip:")
        });
    let _ = process::signal(call.id(), "INT");
    let status = process::wait_timeout(&mut call, Duration::from_secs(10));
    if status.is_none() {
        let _ = call.kill();
        let _ = call.wait();
    }
    let printed = process::read_lossy(&stdout_path);
    let sent = process::read_lossy(&trace);
    let shown = format!("{printed}\n--- trace ---\n{sent}");
    assert!(registering, "no REGISTER sent\n{shown}");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{shown}");
    let v: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(v["interrupted"], true, "{shown}");
    assert_eq!(
        v["failures"][0], "registration failed: interrupted",
        "{shown}"
    );
    assert!(!sent.contains("INVITE sip:"), "{shown}");
}
