//! SRTP keyed by SDES (RFC 3711, RFC 4568) against real peers on loopback: baresip 1.0's
//! `srtp` module (package baresip-core) calling and called by sipcheck, tones verified both
//! ways over SRTP, also with the signalling over TLS both ways (baresip's libre/OpenSSL TLS
//! listener with a certificate from a test CA); a plain peer refused under `--srtp required`; SIPp answering with a key
//! that is not the one it echoes our packets under, so every packet fails authentication, or
//! with none; rtpengine, driven by Kamailio, bridging an SRTP caller to a plain RTP callee.
//!
//! That the media is SRTP, not plain RTP, is shown three ways: the SDP baresip traced
//! (`RTP/SAVP` and `a=crypto` both ways), sipcheck's SRTP counters (every packet received
//! authenticated under the peer's key: plain RTP would fail), and baresip's recording of our
//! tone (baresip decrypted our packets with the key we offered).
//!
//! Run under the shared lock: `flock /tmp/sipcheck-peers.lock cargo test --test srtp`.

mod support;

use std::time::Duration;

use support::baresip::{Baresip, BaresipOptions, DEFAULT_TONE_HZ};
use support::responder::Responder;
use support::sipp::Sipp;
use support::tls::Pki;
use support::{free_port, run_against, run_sipcheck, PeerLog, Ran};

/// The tone sipcheck plays to baresip.
const OUR_TONE_HZ: u32 = 1000;

fn start(mediaenc: &str) -> Baresip {
    let opts = BaresipOptions {
        account_params: format!(";mediaenc={mediaenc}"),
        extra_config: vec!["module\t\t\tsrtp.so".to_owned()],
        ..BaresipOptions::default()
    };
    Baresip::start(opts).unwrap_or_else(|e| panic!("start baresip: {e:#}"))
}

/// `sipcheck call URI --srtp SRTP`, playing our tone and expecting `expect_hz`, against `peer`.
fn call(uri: &str, srtp: &str, expect_hz: u32, peer: &dyn PeerLog) -> Ran {
    call_with(uri, srtp, expect_hz, &[], peer)
}

fn call_with(uri: &str, srtp: &str, expect_hz: u32, extra: &[&str], peer: &dyn PeerLog) -> Ran {
    let expect = expect_hz.to_string();
    let play = OUR_TONE_HZ.to_string();
    let mut args = vec![
        "call",
        uri,
        "--srtp",
        srtp,
        "--expect-tone",
        &expect,
        "--play-tone",
        &play,
        "--level=-12",
        "--duration",
        "3s",
        "--json",
    ];
    args.extend_from_slice(extra);
    run_against(args, &[], &[peer])
}

/// baresip's recording of what it decoded holds our tone (it decrypted our SRTP).
fn assert_baresip_heard_us(peer: &Baresip, shown: &str) {
    peer.wait_call_closed(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{shown}"));
    let heard = peer
        .received_audio()
        .unwrap_or_else(|e| panic!("{e:#}\n{shown}"));
    let share = heard.tone_share(f64::from(OUR_TONE_HZ));
    assert!(
        share > 0.9 && heard.seconds() > 2.0,
        "baresip heard {:.2} s, share at {OUR_TONE_HZ} Hz {share:.3}\n{shown}",
        heard.seconds()
    );
}

/// The SDP baresip traced: both offer and answer are `RTP/SAVP` with `a=crypto`.
fn assert_sdp_is_savp(peer: &Baresip, shown: &str) {
    let trace = peer.stdout();
    assert!(
        trace.matches("RTP/SAVP").count() >= 2,
        "RTP/SAVP offered and answered\n{shown}"
    );
    assert!(
        trace.matches("a=crypto:").count() >= 2,
        "a=crypto offered and answered\n{shown}"
    );
}

#[test]
fn srtp_required_call_to_baresip_hears_its_tone_and_it_hears_ours() {
    let peer = start("srtp-mand");
    let ran = call(&peer.uri(), "required", DEFAULT_TONE_HZ, &peer);
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    let media = &v["media"];
    assert_eq!(media["tones"][0]["detected"], true, "{shown}");
    let srtp = &media["srtp"];
    let suite = srtp["suite"].as_str().unwrap_or_default();
    assert!(suite.starts_with("AES_CM_128_HMAC_SHA1_"), "{shown}");
    assert!(srtp["unprotected"].as_u64().unwrap() > 100, "{shown}");
    assert!(srtp["protected"].as_u64().unwrap() > 100, "{shown}");
    assert_eq!(srtp["auth_failures"], 0, "{shown}");
    assert_eq!(srtp["replays"], 0, "{shown}");
    // Every packet received was SRTP that authenticated.
    assert_eq!(srtp["unprotected"], media["packets_received"], "{shown}");
    assert_sdp_is_savp(&peer, shown);
    assert_baresip_heard_us(&peer, shown);
}

#[test]
fn srtp_optional_call_to_best_effort_baresip_uses_srtp() {
    // baresip's `srtp` is best-effort SRTP: RTP/AVP with a=crypto, as our `optional` offers.
    let peer = start("srtp");
    let ran = call(&peer.uri(), "optional", DEFAULT_TONE_HZ, &peer);
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    let srtp = &v["media"]["srtp"];
    assert!(srtp["unprotected"].as_u64().unwrap() > 100, "{shown}");
    assert_eq!(srtp["auth_failures"], 0, "{shown}");
    assert!(peer.stdout().matches("a=crypto:").count() >= 2, "{shown}");
    assert_baresip_heard_us(&peer, shown);
}

#[test]
fn srtp_required_call_to_plain_baresip_fails_and_optional_falls_back_to_rtp() {
    let peer = Baresip::start(BaresipOptions::default())
        .unwrap_or_else(|e| panic!("start baresip: {e:#}"));
    let ran = call(&peer.uri(), "required", DEFAULT_TONE_HZ, &peer);
    let shown = &ran.shown;
    ran.assert_exit(1);
    let v = ran.json();
    assert_eq!(v["verdict"], "fail", "{shown}");
    // baresip without SRTP refuses the RTP/SAVP offer itself.
    assert_eq!(
        v["failures"][0], "not answered: rejected: 488 Not Acceptable Here",
        "{shown}"
    );
    assert!(v["media"]["srtp"].is_null(), "{shown}");

    // `optional` takes the plain answer: plain RTP, no SRTP counters, tones both ways.
    peer.wait_call_closed(Duration::from_secs(5)).ok();
    let ran = call(&peer.uri(), "optional", DEFAULT_TONE_HZ, &peer);
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert!(v["media"]["srtp"].is_null(), "plain RTP: {shown}");
}

/// `peer` dials `sipcheck answer --srtp POLICY EXTRA` (`EXTRA`: its transport and
/// certificates), at `sip:sipcheck@LISTEN` with `uri_params`; what the responder printed.
fn baresip_calls_answer(
    peer: Baresip,
    srtp: &str,
    extra: &[&str],
    uri_params: &str,
) -> (Baresip, Responder, String, Option<i32>) {
    let listen = format!("127.0.0.1:{}", free_port());
    let (ours, theirs) = (OUR_TONE_HZ.to_string(), DEFAULT_TONE_HZ.to_string());
    let mut args = vec![
        "--listen",
        &listen,
        "--srtp",
        srtp,
        "--play-tone",
        &ours,
        "--expect-tone",
        &theirs,
        "--duration",
        "3s",
        "--calls",
        "1",
    ];
    args.extend_from_slice(extra);
    let mut answer = Responder::start(&args, &[]);
    let reply = peer
        .command(&format!("/dial sip:sipcheck@{listen}{uri_params}"))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", peer.log()));
    let code = answer.wait_exit(Duration::from_secs(15));
    let shown = format!(
        "dial: {reply}\n--- answer ---\n{}\n{}",
        answer.output(),
        peer.log()
    );
    (peer, answer, shown, code)
}

/// `answer` passed (`code`), its call over SRTP with no packet failing, baresip's tone heard.
fn assert_answer_passed_over_srtp(answer: &Responder, code: Option<i32>, shown: &str) {
    assert_eq!(code, Some(0), "{shown}");
    let printed = answer.stdout();
    assert!(printed.contains("srtp: AES_CM_128_HMAC_SHA1_"), "{shown}");
    assert!(printed.contains("auth failures 0, replays 0"), "{shown}");
    assert!(printed.contains("tone 600 Hz at"), "{shown}");
    assert!(printed.contains("-- PASS"), "{shown}");
}

#[test]
fn baresip_calls_srtp_required_answer_tones_both_ways() {
    let (peer, answer, shown, code) = baresip_calls_answer(start("srtp-mand"), "required", &[], "");
    assert_answer_passed_over_srtp(&answer, code, &shown);
    assert_sdp_is_savp(&peer, &shown);
    assert_baresip_heard_us(&peer, &shown);
}

#[test]
fn plain_baresip_calling_srtp_required_answer_gets_488() {
    let peer = Baresip::start(BaresipOptions::default())
        .unwrap_or_else(|e| panic!("start baresip: {e:#}"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(
        &["--listen", &listen, "--srtp", "required", "--calls", "1"],
        &[],
    );
    peer.command(&format!("/dial sip:sipcheck@{listen}"))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", peer.log()));
    let code = answer.wait_exit(Duration::from_secs(15));
    let shown = format!("--- answer ---\n{}\n{}", answer.output(), peer.log());
    assert_eq!(code, Some(1), "{shown}");
    let printed = answer.stdout();
    assert!(
        printed.contains("srtp is required but the offer is plain rtp/avp"),
        "{shown}"
    );
    assert!(peer.stdout().contains("488 Not Acceptable Here"), "{shown}");
}

#[test]
fn a_key_that_does_not_match_fails_the_call_with_auth_failures_counted() {
    // SIPp answers RTP/SAVP with a key of its own but echoes our packets as they came,
    // protected with OUR key: none authenticates under the key it announced.
    let sipp = Sipp::start_uas(
        "uas_srtp_wrong_key.xml",
        &["-rtp_echo", "-mi", "127.0.0.1", "-m", "1"],
    )
    .unwrap_or_else(|e| panic!("start sipp: {e:#}"));
    let uri = format!("sip:echo@{}", sipp.addr);
    let ran = call(&uri, "required", OUR_TONE_HZ, &sipp);
    let shown = &ran.shown;
    ran.assert_exit(1);
    let v = ran.json();
    assert_eq!(v["verdict"], "fail", "{shown}");
    let srtp = &v["media"]["srtp"];
    assert!(srtp["auth_failures"].as_u64().unwrap() > 100, "{shown}");
    assert_eq!(srtp["unprotected"], 0, "{shown}");
    assert_eq!(v["media"]["tones"][0]["detected"], false, "{shown}");
    assert!(
        v["failures"]
            .to_string()
            .contains("SRTP packets received failed authentication"),
        "{shown}"
    );
}

#[test]
fn a_scenario_with_media_srtp_required_calls_baresip_over_srtp() {
    use support::reports::{run_scenario_against, Reports};
    let peer = start("srtp-mand");
    let addr = format!("127.0.0.1:{}", peer.sip_port);
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let ran = run_scenario_against(
        "tests/peers/scenarios/baresip-srtp.yaml",
        &["--calls", calls.to_str().unwrap()],
        &[("BARESIP_ADDR", addr.as_str())],
        &reports,
        &[&peer],
    );
    let (v, shown) = (&ran.summary, &ran.shown);
    ran.assert_exit(0);
    assert_eq!(v["rtp"]["srtp"]["streams"], 1, "{shown}");
    assert_eq!(v["rtp"]["srtp"]["auth_failures"], 0, "{shown}");
    assert_eq!(v["rtp"]["srtp"]["replays"], 0, "{shown}");
    let stdout = ran.stdout();
    assert!(
        stdout.contains("srtp             1 call ends, auth failures 0, replays 0"),
        "{shown}"
    );
    let records = std::fs::read_to_string(&calls).unwrap();
    let record: serde_json::Value = serde_json::from_str(records.lines().next().unwrap()).unwrap();
    let srtp = &record["quality"]["srtp"];
    assert!(
        srtp["unprotected"].as_u64().unwrap() > 50,
        "{records}\n{shown}"
    );
    assert_eq!(srtp["auth_failures"], 0, "{records}\n{shown}");
    assert_sdp_is_savp(&peer, shown);
}

#[test]
fn an_srtp_call_held_and_resumed_hears_baresip_again_after_the_resume() {
    // The hold and resume re-INVITEs carry keys too; the stream follows whatever the answers
    // agree, and the tone must be heard again after the resume with no packet failing.
    let peer = start("srtp-mand");
    let uri = peer.uri();
    let expect = DEFAULT_TONE_HZ.to_string();
    let ran = run_against(
        [
            "call",
            &uri,
            "--srtp",
            "required",
            "--expect-tone",
            &expect,
            "--play-tone",
            "1000",
            "--hold-after",
            "1s",
            "--hold-for",
            "1s",
            "--duration",
            "4s",
            "--json",
        ],
        &[],
        &[&peer],
    );
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["hold"]["tone_after_resume"], true, "{shown}");
    let srtp = &v["media"]["srtp"];
    assert_eq!(srtp["auth_failures"], 0, "{shown}");
    assert!(srtp["unprotected"].as_u64().unwrap() > 100, "{shown}");
    assert!(peer.stdout().matches("RTP/SAVP").count() >= 6, "{shown}");
}

#[test]
fn an_answer_without_keys_to_an_srtp_required_call_fails_as_srtp_refused() {
    // SIPp answers our RTP/SAVP offer RTP/SAVP but with no a=crypto: no keys, no SRTP.
    let sipp = Sipp::start_uas("uas_srtp_no_crypto.xml", &["-mi", "127.0.0.1", "-m", "1"])
        .unwrap_or_else(|e| panic!("start sipp: {e:#}"));
    let uri = format!("sip:plain@{}", sipp.addr);
    let ran = call(&uri, "required", OUR_TONE_HZ, &sipp);
    let shown = &ran.shown;
    ran.assert_exit(1);
    let v = ran.json();
    assert_eq!(v["verdict"], "fail", "{shown}");
    assert_eq!(v["final_code"], 200, "{shown}");
    assert!(
        v["failures"]
            .to_string()
            .contains("srtp refused: srtp is required but the answer has no a=crypto"),
        "{shown}"
    );
    // The call was closed: ACK, then BYE.
    assert!(v["bye_code"] == 200, "{shown}");
}

#[test]
fn rtpengine_bridges_an_srtp_caller_to_a_plain_rtp_callee_through_kamailio() {
    use support::kamailio::{Kamailio, KamailioOptions};
    use support::rtpengine::Rtpengine;
    let engine = Rtpengine::start().unwrap_or_else(|e| panic!("start rtpengine: {e:#}"));
    let kam = Kamailio::start_with(&KamailioOptions {
        defines: vec!["WITH_RTPENGINE".to_owned(), engine.kamailio_define()],
        ..KamailioOptions::default()
    })
    .unwrap_or_else(|e| panic!("start kamailio: {e:#}\n{}", engine.log()));
    let server = kam.server_for("udp");
    // The callee: plain RTP only.
    let mut answer = kam.answer_as(
        &server,
        "2001",
        &[
            "--play-tone",
            "440",
            "--expect-tone",
            "1000",
            "--calls",
            "1",
        ],
    );
    // The caller: SRTP required, towards rtpengine.
    let out = run_sipcheck(
        [
            &Kamailio::call_from(&server, "1002", "sip:2001@127.0.0.1")[..],
            &[
                "--srtp",
                "required",
                "--play-tone",
                "1000",
                "--expect-tone",
                "440",
                "--duration",
                "3s",
                "--json",
            ],
        ]
        .concat(),
        &[("SIP_PASSWORD", Kamailio::password_for("1002").as_str())],
    );
    answer.wait_exit(Duration::from_secs(15));
    let ran = Ran::new(out, serde_json::Value::Null, &[&answer, &kam, &engine]);
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    let srtp = &v["media"]["srtp"];
    assert!(srtp["unprotected"].as_u64().unwrap() > 100, "{shown}");
    assert_eq!(srtp["auth_failures"], 0, "{shown}");
    // The callee had plain RTP (no SRTP counters on its line) and heard our tone.
    let printed = answer.stdout();
    assert!(printed.contains("tone 1000 Hz at"), "{shown}");
    assert!(printed.contains("-- PASS"), "{shown}");
    assert!(!printed.contains("srtp:"), "{shown}");
}

/// baresip with SRTP (`mediaenc`) whose TLS listener (its SIP port + 1) presents a
/// certificate for 127.0.0.1 issued by `pki` (`sip_certificate`: one PEM file holding the
/// certificate and its key), given `pki`'s CA for the connections it opens (`sip_cafile`).
/// baresip 1.0 does not verify the certificate of a server it connects to: one issued by
/// another CA is taken as well.
fn start_tls(mediaenc: &str, pki: &Pki) -> Baresip {
    let certs = pki
        .issue("baresip", &["IP:127.0.0.1"], 2)
        .expect("baresip's certificate");
    let bundle = pki.join("baresip-bundle.pem");
    let mut pem = std::fs::read(&certs.cert).expect("read the certificate");
    pem.extend(std::fs::read(&certs.key).expect("read the key"));
    std::fs::write(&bundle, pem).expect("write the bundle");
    let opts = BaresipOptions {
        account_params: format!(";mediaenc={mediaenc}"),
        extra_config: vec![
            "module\t\t\tsrtp.so".to_owned(),
            format!("sip_certificate\t\t{}", bundle.display()),
            format!("sip_cafile\t\t{}", pki.ca.display()),
        ],
        ..BaresipOptions::default()
    };
    Baresip::start(opts).unwrap_or_else(|e| panic!("start baresip: {e:#}"))
}

/// The SIP baresip traced came over TLS: the INVITE's Via says `SIP/2.0/TLS` and no
/// request or response of the call went over UDP or TCP.
fn assert_sip_over_tls(peer: &Baresip, shown: &str) {
    let trace = peer.stdout();
    assert!(trace.contains("INVITE sip:"), "{shown}");
    assert!(trace.contains("Via: SIP/2.0/TLS "), "{shown}");
    assert!(!trace.contains("Via: SIP/2.0/UDP "), "{shown}");
    assert!(!trace.contains("Via: SIP/2.0/TCP "), "{shown}");
}

#[test]
fn srtp_required_call_over_tls_to_baresip_hears_its_tone_and_it_hears_ours() {
    let pki = Pki::new().expect("test CA");
    let peer = start_tls("srtp-mand", &pki);
    let uri = format!("sip:baresip@127.0.0.1:{};transport=tls", peer.sip_port + 1);
    let ca = pki.ca.to_str().unwrap();
    let ran = call_with(
        &uri,
        "required",
        DEFAULT_TONE_HZ,
        &["--transport", "tls", "--ca", ca],
        &peer,
    );
    let shown = &ran.shown;
    ran.assert_exit(0);
    let v = ran.json();
    assert_eq!(v["verdict"], "pass", "{shown}");
    let media = &v["media"];
    assert_eq!(media["tones"][0]["detected"], true, "{shown}");
    let srtp = &media["srtp"];
    assert!(srtp["unprotected"].as_u64().unwrap() > 100, "{shown}");
    assert!(srtp["protected"].as_u64().unwrap() > 100, "{shown}");
    assert_eq!(srtp["auth_failures"], 0, "{shown}");
    assert_eq!(srtp["unprotected"], media["packets_received"], "{shown}");
    assert!(
        !shown.contains("warning"),
        "verified, not --insecure: {shown}"
    );
    assert_sip_over_tls(&peer, shown);
    assert_sdp_is_savp(&peer, shown);
    assert_baresip_heard_us(&peer, shown);
}

#[test]
fn baresip_calls_srtp_required_answer_over_tls_tones_both_ways() {
    let pki = Pki::new().expect("test CA");
    let ours = pki
        .issue("answer", &["IP:127.0.0.1"], 2)
        .expect("answer's certificate");
    let (peer, answer, shown, code) = baresip_calls_answer(
        start_tls("srtp-mand", &pki),
        "required",
        &[
            "--transport",
            "tls",
            "--cert",
            ours.cert.to_str().unwrap(),
            "--key",
            ours.key.to_str().unwrap(),
            "--ca",
            pki.ca.to_str().unwrap(),
        ],
        ";transport=tls",
    );
    assert_answer_passed_over_srtp(&answer, code, &shown);
    assert_sip_over_tls(&peer, &shown);
    assert_sdp_is_savp(&peer, &shown);
    assert_baresip_heard_us(&peer, &shown);
}
