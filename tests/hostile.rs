//! sipcheck against a scripted hostile peer (`support::hostile`): garbage,
//! truncated and oversized messages, stray responses, 503s, endless 100
//! Trying, SDP it cannot use, odd RTP and an OPTIONS flood. Every case checks
//! that sipcheck does not panic, ends in bounded time with a documented exit
//! code, and says precisely why it failed.

mod support;

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::hostile::{request, rss_kib, rtp_packet, sdp, HostilePeer, Msg, Peer};
use support::process::{self, RunDir};
use support::responder::Responder;
use support::{describe_output, free_port, run_sipcheck_with_timeout};

const SCRIPT_WAIT: Duration = Duration::from_secs(10);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs sipcheck with a 20 s limit and checks the things every case needs:
/// no panic, a documented exit code (0, 1 or 2). Returns the output and how long it took.
fn sipcheck(args: &[&str], envs: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let out = run_sipcheck_with_timeout(args, envs, Duration::from_secs(20));
    let took = started.elapsed();
    let shown = describe_output(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "sipcheck panicked:\n{shown}"
    );
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "undocumented exit code:\n{shown}"
    );
    (out, took)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe_output(out)))
}

/// Garbage a hostile network might deliver: binary noise, text that is not
/// SIP, an empty-ish datagram, a request line with too many tokens.
const GARBAGE: &[&[u8]] = &[
    b"\x00\xff\xfe\x01garbage\r\n\r\n",
    b"hello world",
    b"\r\n\r\n",
    b"SIP/2.0\r\n\r\n",
    b"SIP/2.0 abc Nope\r\nVia: x\r\n\r\n",
    b"INVITE a b c d SIP/2.0\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK",
];

/// Sends the garbage, then `req`'s response truncated in its head and in its
/// body (a Content-Length larger than what arrived).
fn send_garbage(p: &Peer, req: &Msg, to: SocketAddr, ok: &str) {
    for g in GARBAGE {
        p.send_raw(g, to);
    }
    let half = &ok.as_bytes()[..ok.len() / 2];
    p.send_raw(half, to);
    p.send_raw(
        ok.replace("Content-Length: 0", "Content-Length: 40")
            .as_bytes(),
        to,
    );
    let _ = req;
}

#[test]
fn garbage_and_truncated_messages_during_options_are_ignored() {
    let peer = HostilePeer::start(|p| {
        let (req, from) = p.recv_request(SCRIPT_WAIT).expect("OPTIONS");
        let ok = support::hostile::response(&req, 200, "OK", "h1", &[], None);
        send_garbage(p, &req, from, &ok);
        p.send_raw(ok.as_bytes(), from);
        // Answer any retransmission too.
        while let Some((r, from)) = p.recv_request(Duration::from_millis(500)) {
            p.respond(&r, from, 200, "OK", &[], None);
        }
    });
    let uri = format!("sip:{}", peer.addr);
    let (out, took) = sipcheck(&["options", &uri, "--json", "-v"], &[]);
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "pass", "{shown}");
    assert_eq!(v["status"], 200, "{shown}");
    // Each malformed datagram is logged as ignored at -v.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("malformed datagram ignored"), "{shown}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{shown}");
}

#[test]
fn garbage_between_challenge_and_answer_does_not_break_register() {
    let peer = HostilePeer::start(|p| {
        let (req, from) = p.recv_method("REGISTER", SCRIPT_WAIT).expect("REGISTER");
        let challenge = support::hostile::response(
            &req,
            401,
            "Unauthorized",
            "h1",
            &["WWW-Authenticate: Digest realm=\"hostile.test\", nonce=\"abc123\", algorithm=MD5, qop=\"auth\"".into()],
            None,
        );
        send_garbage(p, &req, from, &challenge);
        p.send_raw(challenge.as_bytes(), from);
        let (req2, from) = p
            .recv_matching(SCRIPT_WAIT, |m| {
                m.method() == "REGISTER" && m.header("Authorization").is_some()
            })
            .expect("authenticated REGISTER");
        let contact = req2.header("Contact").unwrap_or_default();
        let ok = support::hostile::response(
            &req2,
            200,
            "OK",
            "h1",
            &[format!("Contact: {contact};expires=60")],
            None,
        );
        send_garbage(p, &req2, from, &ok);
        p.send_raw(ok.as_bytes(), from);
        while let Some((r, from)) = p.recv_request(Duration::from_millis(500)) {
            p.respond(
                &r,
                from,
                200,
                "OK",
                &[format!("Contact: {contact};expires=60")],
                None,
            );
        }
    });
    let server = peer.addr.to_string();
    let (out, _) = sipcheck(
        &[
            "register",
            "--server",
            &server,
            "--user",
            "1001",
            "--password",
            "pw1001",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(json(&out)["verdict"], "pass", "{shown}");
}

/// A 200 OK to OPTIONS with `mangle` applied, sent for every (re)transmission;
/// the probe runs with T1 = 20 ms so Timer F fires after 1.28 s.
fn options_with_bad_response(mangle: fn(String) -> String) -> (Output, Duration, String) {
    let peer = HostilePeer::start(move |p| {
        while let Some((req, from)) = p.recv_request(Duration::from_secs(5)) {
            let ok = support::hostile::response(&req, 200, "OK", "h1", &[], None);
            p.send_raw(mangle(ok).as_bytes(), from);
        }
    });
    let uri = format!("sip:{}", peer.addr);
    let (out, took) = sipcheck(&["options", &uri, "--t1", "20ms", "--json"], &[]);
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    (out, took, shown)
}

fn assert_timer_f(out: &Output, took: Duration, shown: &str) {
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    let reason = format!("{} {}", v["reason"], v["error"]);
    assert!(
        reason.contains("Timer F"),
        "reason does not name Timer F: {reason}\n{shown}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}\n{shown}");
}

#[test]
fn the_longest_header_line_a_datagram_can_carry_is_handled_without_panic() {
    // A UDP datagram carries at most 65,507 bytes, less than sipcheck's
    // 64 KiB head limit (MAX_HEAD_LEN = 65,536): over UDP a header line that
    // long cannot reach the limit, so the response is valid and accepted.
    // The refusal of a longer head is checked over TCP below.
    let (out, took, shown) = options_with_bad_response(|ok| {
        let pad = 65_000 - ok.len();
        ok.replacen(
            "Content-Length: 0",
            &format!("X-Huge: {}\r\nContent-Length: 0", "a".repeat(pad)),
            1,
        )
    });
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(json(&out)["status"], 200, "{shown}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{shown}");
}

#[test]
fn a_64_kib_header_line_over_tcp_is_refused_with_a_precise_reason() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("a connection");
        let _ = conn.set_read_timeout(Some(SCRIPT_WAIT));
        let mut buf = vec![0u8; 65_536];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let req = Msg {
            text: String::from_utf8_lossy(&got).into_owned(),
        };
        let ok = support::hostile::response(&req, 200, "OK", "h1", &[], None);
        let huge = ok.replacen(
            "Content-Length: 0",
            &format!("X-Huge: {}\r\nContent-Length: 0", "a".repeat(70 * 1024)),
            1,
        );
        let _ = conn.write_all(huge.as_bytes());
        // Keep the connection open until sipcheck closes it.
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    });
    let uri = format!("sip:{addr}");
    let (out, took) = sipcheck(
        &[
            "options",
            &uri,
            "--transport",
            "tcp",
            "--t1",
            "20ms",
            "--json",
        ],
        &[],
    );
    let _ = server.join();
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    let reason = format!("{} {}", v["reason"], v["error"]);
    assert!(
        reason.contains("larger than 65536") || reason.contains("Timer F"),
        "reason names neither the size limit nor the timer: {reason}\n{shown}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}\n{shown}");
}

#[test]
fn content_length_larger_than_the_body_is_malformed() {
    let (out, took, shown) = options_with_bad_response(|ok| {
        ok.replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: text/plain\r\nContent-Length: 500\r\n\r\nshort body",
        )
    });
    assert_timer_f(&out, took, &shown);
}

#[test]
fn stray_responses_lose_to_the_real_one() {
    let peer = HostilePeer::start(|p| {
        let (req, from) = p.recv_request(SCRIPT_WAIT).expect("OPTIONS");
        let real =
            support::hostile::response(&req, 200, "OK", "real", &["X-Which: real".into()], None);
        let branch = req.branch().expect("branch");
        // Unknown branch: a 500 and a 200 that belong to nothing.
        p.send_raw(
            real.replace(&branch, "z9hG4bKunknown1")
                .replace("200 OK", "500 Stray")
                .as_bytes(),
            from,
        );
        p.send_raw(
            real.replace(&branch, "z9hG4bKunknown2")
                .replace("X-Which: real", "X-Which: stray")
                .as_bytes(),
            from,
        );
        // Right branch, wrong CSeq method: another transaction (RFC 3261 §17.1.3).
        p.send_raw(
            real.replace("OPTIONS", "REGISTER")
                .replace("200 OK", "403 Wrong Method")
                .as_bytes(),
            from,
        );
        p.send_raw(real.as_bytes(), from);
        // A late duplicate with another To-tag.
        p.send_raw(
            real.replace("tag=real", "tag=other")
                .replace("200 OK", "486 Late")
                .as_bytes(),
            from,
        );
    });
    let uri = format!("sip:{}", peer.addr);
    let (out, _) = sipcheck(&["options", &uri, "--json"], &[]);
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = json(&out);
    assert_eq!(v["status"], 200, "{shown}");
    assert_eq!(v["verdict"], "pass", "{shown}");
}

/// A UAS script: answers INVITEs with `answer(p, invite, from)` (which sends
/// whatever it wants), then 200s every BYE/CANCEL and absorbs ACKs until stopped.
fn uas(answer: impl Fn(&Peer, &Msg, SocketAddr) + Send + 'static) -> HostilePeer {
    HostilePeer::start(move |p| {
        let (invite, from) = p.recv_method("INVITE", SCRIPT_WAIT).expect("INVITE");
        answer(p, &invite, from);
        while let Some((r, from)) = p.recv_request(Duration::from_secs(15)) {
            match r.method().as_str() {
                "BYE" | "CANCEL" | "OPTIONS" => p.respond(&r, from, 200, "OK", &[], None),
                "INVITE" => answer(p, &r, from),
                _ => {}
            }
        }
    })
}

fn methods_seen(seen: &[Msg]) -> Vec<String> {
    seen.iter()
        .filter(|m| !m.is_response())
        .map(Msg::method)
        .collect()
}

fn call(peer: &HostilePeer, extra: &[&str]) -> (Output, Duration) {
    let uri = format!("sip:bob@{}", peer.addr);
    let mut args = vec!["call", uri.as_str(), "--json", "--rtp-ports", "30000-39999"];
    args.extend_from_slice(extra);
    sipcheck(&args, &[])
}

#[test]
fn a_503_with_retry_after_fails_register_with_503() {
    let peer = HostilePeer::start(|p| {
        while let Some((r, from)) = p.recv_request(Duration::from_secs(5)) {
            p.respond(
                &r,
                from,
                503,
                "Service Unavailable",
                &["Retry-After: 120".into()],
                None,
            );
        }
    });
    let server = peer.addr.to_string();
    let (out, took) = sipcheck(
        &[
            "register",
            "--server",
            &server,
            "--user",
            "1001",
            "--password",
            "pw",
            "--json",
        ],
        &[],
    );
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["status"], 503, "{shown}");
    let reason = format!("{} {}", v["reason"], v["error"]);
    assert!(reason.contains("503"), "{reason}\n{shown}");
    assert!(took < Duration::from_secs(5), "{took:?}\n{shown}");
    // Not retried: one REGISTER only (plus no retransmission after the final).
    let registers = methods_seen(&peer.join())
        .iter()
        .filter(|m| *m == "REGISTER")
        .count();
    assert_eq!(registers, 1, "{shown}");
}

#[test]
fn a_503_with_retry_after_fails_call_as_rejected_503() {
    let peer = uas(|p, inv, from| {
        p.respond(
            inv,
            from,
            503,
            "Service Unavailable",
            &["Retry-After: 120".into()],
            None,
        );
    });
    let (out, took) = call(&peer, &[]);
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["final_code"], 503, "{shown}");
    let failure = v["failures"][0].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("not answered: rejected: 503"),
        "{failure}\n{shown}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}\n{shown}");
    assert!(
        methods_seen(&peer.join()).contains(&"ACK".to_string()),
        "{shown}"
    );
}

#[test]
fn endless_100_trying_is_cancelled_after_the_answer_timeout() {
    // Sends 100 Trying every 100 ms forever and ignores CANCEL entirely.
    let peer = HostilePeer::start(|p| {
        let (invite, from) = p.recv_method("INVITE", SCRIPT_WAIT).expect("INVITE");
        let started = Instant::now();
        while !p.stopping() && started.elapsed() < Duration::from_secs(20) {
            p.respond(&invite, from, 100, "Trying", &[], None);
            let _ = p.recv(Duration::from_millis(100));
        }
    });
    let (out, took) = call(&peer, &["--answer-timeout", "2s", "--t1", "50ms"]);
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    let failure = v["failures"][0].as_str().unwrap_or_default().to_string();
    assert!(failure.starts_with("not answered"), "{failure}\n{shown}");
    assert!(
        failure.contains("cancel")
            || failure.contains("Timer")
            || failure.contains("timeout")
            || failure.contains("no final response"),
        "unclear reason: {failure}\n{shown}"
    );
    eprintln!("endless 100 Trying: {failure} (after {took:?})");
    // 2 s answer timeout, then 64·T1 = 3.2 s at most for the CANCEL/INVITE to give up.
    assert!(took < Duration::from_secs(8), "took {took:?}\n{shown}");
    assert!(
        methods_seen(&peer.join()).contains(&"CANCEL".to_string()),
        "{shown}"
    );
}

#[test]
fn a_200_without_sdp_fails_media_negotiation_then_ack_and_bye() {
    let peer = uas(|p, inv, from| {
        let contact = format!("Contact: <sip:bob@{}>", p.addr);
        p.respond(inv, from, 200, "OK", &[contact], None);
    });
    let (out, took) = call(&peer, &["--no-media-ok", "--duration", "500ms"]);
    // Give the BYE a moment to arrive.
    std::thread::sleep(Duration::from_millis(300));
    let seen = peer.join();
    let shown = format!("{}\nseen: {:?}", describe_output(&out), methods_seen(&seen));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    // The reason names the missing SDP answer (sipcheck words it as a
    // protocol error: "the 200 has no SDP answer").
    let failures = v["failures"].to_string();
    assert!(
        failures.contains("no SDP answer") || failures.contains("media negotiation failed"),
        "{shown}"
    );
    let methods = methods_seen(&seen);
    let ack = methods.iter().position(|m| m == "ACK");
    let bye = methods.iter().position(|m| m == "BYE");
    assert!(
        ack.is_some() && bye.is_some() && ack < bye,
        "ACK then BYE expected: {shown}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}\n{shown}");
}

#[test]
fn an_answer_with_no_common_codec_names_the_codec_problem() {
    let peer = uas(|p, inv, from| {
        let contact = format!("Contact: <sip:bob@{}>", p.addr);
        let rtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let body = sdp(rtp, "18", &["a=rtpmap:18 G729/8000"]);
        p.respond(inv, from, 200, "OK", &[contact], Some(&body));
    });
    let (out, took) = call(&peer, &["--no-media-ok", "--duration", "500ms"]);
    std::thread::sleep(Duration::from_millis(300));
    let seen = peer.join();
    let shown = format!("{}\nseen: {:?}", describe_output(&out), methods_seen(&seen));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let v = json(&out);
    assert_eq!(v["verdict"], "fail", "{shown}");
    let failures = v["failures"].to_string();
    assert!(failures.contains("no common audio codec"), "{shown}");
    assert!(methods_seen(&seen).contains(&"BYE".to_string()), "{shown}");
    assert!(took < Duration::from_secs(8), "{took:?}\n{shown}");
}

/// The peer as UAC: INVITE with `offer` to `answer_addr`; returns the final
/// response (ACKed when it is not a 2xx; a 2xx is left to the caller).
fn invite_from_peer(p: &Peer, answer_addr: SocketAddr, call_id: &str, offer: &str) -> Option<Msg> {
    let uri = format!("sip:bob@{answer_addr}");
    let invite = request(
        "INVITE",
        &uri,
        p.addr,
        "z9hG4bKinv1",
        "caller",
        &format!("<{uri}>"),
        call_id,
        1,
        &[],
        Some(offer),
    );
    p.send_raw(invite.as_bytes(), answer_addr);
    let (fin, _) = p.recv_matching(SCRIPT_WAIT, |m| {
        m.status().is_some_and(|c| c >= 200) && m.method() == "INVITE"
    })?;
    if fin.status().is_some_and(|c| c >= 300) {
        let to = fin.header("To").unwrap_or_default();
        let ack = request(
            "ACK",
            &uri,
            p.addr,
            "z9hG4bKinv1",
            "caller",
            &to,
            call_id,
            1,
            &[],
            None,
        );
        p.send_raw(ack.as_bytes(), answer_addr);
    }
    Some(fin)
}

#[test]
fn answer_refuses_a_g729_only_offer_with_488() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let answer = Responder::start(&["--listen", &listen, "--json"], &[]);
    let peer = HostilePeer::start(move |p| {
        let rtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let offer = sdp(rtp, "18", &["a=rtpmap:18 G729/8000"]);
        let fin = invite_from_peer(p, answer_addr, "g729-only@hostile", &offer)
            .expect("a final response");
        assert_eq!(fin.status(), Some(488), "{}", fin.text);
    });
    let _ = peer.wait();
    assert!(!answer.stderr().contains("panicked"), "{}", answer.output());
}

/// `sipcheck answer` started by the test itself, for its PID.
struct OwnAnswer {
    child: Child,
    dir: RunDir,
}

impl OwnAnswer {
    fn start(args: &[&str]) -> OwnAnswer {
        let dir = RunDir::new("hostile-answer").unwrap();
        let mut child = Command::new(support::sipcheck_bin())
            .arg("answer")
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).unwrap())
            .stderr(File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("start sipcheck answer");
        let ready = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            process::read_lossy(&dir.join("stdout")).contains("listening")
        });
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "answer did not start: {}",
                process::read_lossy(&dir.join("stderr"))
            );
        }
        OwnAnswer { child, dir }
    }

    fn output(&self) -> String {
        format!(
            "--- answer stdout ---\n{}\n--- answer stderr ---\n{}",
            process::read_lossy(&self.dir.join("stdout")),
            process::read_lossy(&self.dir.join("stderr"))
        )
    }
}

impl Drop for OwnAnswer {
    fn drop(&mut self) {
        process::stop_child(&mut self.child, "INT", Duration::from_secs(5));
    }
}

#[test]
fn wrong_payload_types_and_ssrc_jumps_are_counted_by_answer() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--json",
            "--no-media-ok",
            "--calls",
            "1",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let peer = HostilePeer::start(move |p| {
        let rtp_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = rtp_sock.local_addr().unwrap();
        let offer = sdp(rtp, "0", &["a=rtpmap:0 PCMU/8000", "a=sendrecv"]);
        let call_id = "rtp-chaos@hostile";
        let fin = invite_from_peer(p, answer_addr, call_id, &offer).expect("a final response");
        assert_eq!(fin.status(), Some(200), "{}", fin.text);
        let remote = fin.sdp_rtp().expect("SDP in the 200");
        let uri = format!("sip:bob@{answer_addr}");
        let to = fin.header("To").unwrap_or_default();
        let ack = request(
            "ACK",
            &uri,
            p.addr,
            "z9hG4bKack1",
            "caller",
            &to,
            call_id,
            1,
            &[],
            None,
        );
        p.send_raw(ack.as_bytes(), answer_addr);
        // RTP: good PCMU, then wrong payload types, then SSRC jumps back and forth.
        let mut seq = 100u16;
        let mut ts = 1000u32;
        let plan: [(u8, u32, usize); 6] = [
            (0, 0x1111, 25),
            (8, 0x1111, 10),
            (99, 0x1111, 5),
            (0, 0x2222, 25),
            (0, 0x3333, 10),
            (0, 0x1111, 10),
        ];
        for (pt, ssrc, n) in plan {
            for _ in 0..n {
                let _ = rtp_sock.send_to(&rtp_packet(pt, seq, ts, ssrc, 0xff), remote);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Garbage on the RTP port too.
        let _ = rtp_sock.send_to(b"\x80", remote);
        let _ = rtp_sock.send_to(b"not rtp at all", remote);
        let _ = rtp_sock.send_to(&[0u8; 3000], remote);
        let bye = request(
            "BYE",
            &uri,
            p.addr,
            "z9hG4bKbye1",
            "caller",
            &to,
            call_id,
            2,
            &[],
            None,
        );
        p.send_raw(bye.as_bytes(), answer_addr);
        let ok = p.recv_matching(SCRIPT_WAIT, |m| m.method() == "BYE" && m.is_response());
        assert!(ok.is_some(), "no response to BYE");
    });
    let _ = peer.wait();
    let code = answer.wait_exit(Duration::from_secs(10));
    let shown = answer.output();
    assert!(!answer.stderr().contains("panicked"), "{shown}");
    assert_eq!(code, Some(0), "{shown}");
    let stdout = answer.stdout();
    let line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "call")
        .unwrap_or_else(|| panic!("no call line:\n{shown}"));
    let media = &line["media"];
    assert!(
        media["wrong_payload_type"].as_u64().unwrap_or(0) > 0,
        "{line}"
    );
    assert!(media["ssrc_changes"].as_u64().unwrap_or(0) > 0, "{line}");
    assert!(
        media["packets_received"].as_u64().unwrap_or(0) > 0,
        "{line}"
    );
}

/// A peer whose RTP sequence numbers and timestamps jump mid-call (a restarted sender, a
/// media server switching sources under one SSRC): per RFC 3550 A.1 the jumps are restarts,
/// reported as discontinuities, neither loss nor jitter, on a lossless loopback link.
#[test]
fn sequence_and_timestamp_jumps_are_discontinuities_not_loss_or_jitter() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--json",
            "--calls",
            "1",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let peer = HostilePeer::start(move |p| {
        let rtp_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = rtp_sock.local_addr().unwrap();
        let offer = sdp(rtp, "0", &["a=rtpmap:0 PCMU/8000", "a=sendrecv"]);
        let call_id = "rtp-jumps@hostile";
        let fin = invite_from_peer(p, answer_addr, call_id, &offer).expect("a final response");
        assert_eq!(fin.status(), Some(200), "{}", fin.text);
        let remote = fin.sdp_rtp().expect("SDP in the 200");
        let uri = format!("sip:bob@{answer_addr}");
        let to = fin.header("To").unwrap_or_default();
        let ack = request(
            "ACK",
            &uri,
            p.addr,
            "z9hG4bKack1",
            "caller",
            &to,
            call_id,
            1,
            &[],
            None,
        );
        p.send_raw(ack.as_bytes(), answer_addr);
        // 150 packets paced at 20 ms; at 50 the timestamps jump by 2^31 (the sequence goes
        // on); at 100 the sequence jumps by 20,000 and the timestamps by 10^9.
        let start = std::time::Instant::now();
        for i in 0..150u32 {
            let seq = (500 + i + if i >= 100 { 20_000 } else { 0 }) as u16;
            let ts = (160 * i)
                .wrapping_add(if i >= 50 { 1 << 31 } else { 0 })
                .wrapping_add(if i >= 100 { 1_000_000_000 } else { 0 });
            let _ = rtp_sock.send_to(&rtp_packet(0, seq, ts, 0x7777, 0xff), remote);
            let due = start + Duration::from_millis(20) * (i + 1);
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        }
        let bye = request(
            "BYE",
            &uri,
            p.addr,
            "z9hG4bKbye1",
            "caller",
            &to,
            call_id,
            2,
            &[],
            None,
        );
        p.send_raw(bye.as_bytes(), answer_addr);
        let ok = p.recv_matching(SCRIPT_WAIT, |m| m.method() == "BYE" && m.is_response());
        assert!(ok.is_some(), "no response to BYE");
    });
    let _ = peer.wait();
    let code = answer.wait_exit(Duration::from_secs(10));
    let shown = answer.output();
    assert_eq!(code, Some(0), "{shown}");
    let stdout = answer.stdout();
    let line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "call")
        .unwrap_or_else(|| panic!("no call line:\n{shown}"));
    assert_eq!(line["verdict"], "pass", "{line}");
    let media = &line["media"];
    assert_eq!(media["discontinuities"], 2, "{line}");
    assert_eq!(media["lost"], 0, "{line}");
    assert_eq!(media["loss_percent"], 0.0, "{line}");
    // Every packet but the one held back at the sequence jump (RFC 3550 A.1 probation).
    assert_eq!(media["packets_received"], 149, "{line}");
    // Loopback jitter: a few ms at most, where the jumps alone would make it hours.
    let jitter = media["jitter_ms"].as_f64().unwrap();
    assert!(jitter < 20.0, "{line}");
    assert_eq!(media["ssrc_changes"], 0, "{line}");
}

/// `--rtp-ports` is exact and inclusive: a one-port odd range gives that port to the call
/// (its SDP says so), never its even neighbour nor a port the system picks.
#[test]
fn a_one_port_odd_rtp_range_is_the_port_answer_offers() {
    let odd = (0..200)
        .map(|_| free_port())
        .find(|p| p % 2 == 1 && UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free odd port");
    let range = format!("{odd}-{odd}");
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--json",
            "--no-media-ok",
            "--calls",
            "1",
            "--rtp-ports",
            &range,
        ],
        &[],
    );
    let peer = HostilePeer::start(move |p| {
        let rtp = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let offer = sdp(rtp, "0", &["a=rtpmap:0 PCMU/8000", "a=sendrecv"]);
        let call_id = "odd-port@hostile";
        let fin = invite_from_peer(p, answer_addr, call_id, &offer).expect("a final response");
        assert_eq!(fin.status(), Some(200), "{}", fin.text);
        let remote = fin.sdp_rtp().expect("SDP in the 200");
        assert_eq!(remote.port(), odd, "{}", fin.text);
        let uri = format!("sip:bob@{answer_addr}");
        let to = fin.header("To").unwrap_or_default();
        let ack = request(
            "ACK",
            &uri,
            p.addr,
            "z9hG4bKack1",
            "caller",
            &to,
            call_id,
            1,
            &[],
            None,
        );
        p.send_raw(ack.as_bytes(), answer_addr);
        let bye = request(
            "BYE",
            &uri,
            p.addr,
            "z9hG4bKbye1",
            "caller",
            &to,
            call_id,
            2,
            &[],
            None,
        );
        p.send_raw(bye.as_bytes(), answer_addr);
        let ok = p.recv_matching(SCRIPT_WAIT, |m| m.method() == "BYE" && m.is_response());
        assert!(ok.is_some(), "no response to BYE");
    });
    let _ = peer.wait();
    let code = answer.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", answer.output());
}

#[test]
fn an_options_flood_leaves_answer_responsive_and_bounded() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let answer = OwnAnswer::start(&["--listen", &listen]);
    let pid = answer.child.id();
    let before = rss_kib(pid).expect("VmRSS");

    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = flood.local_addr().unwrap();
    let started = Instant::now();
    for i in 0..5_000u32 {
        let msg = request(
            "OPTIONS",
            &format!("sip:{listen}"),
            local,
            &format!("z9hG4bKflood{i}"),
            &format!("t{i}"),
            &format!("<sip:{listen}>"),
            &format!("flood{i}@hostile"),
            1,
            &[],
            None,
        );
        let _ = flood.send_to(msg.as_bytes(), answer_addr);
    }
    let flood_took = started.elapsed();
    // Count answers for a moment (not all need to be, the kernel may drop some).
    let _ = flood.set_read_timeout(Some(Duration::from_millis(300)));
    let mut buf = vec![0u8; 65_536];
    let mut answered = 0u32;
    while flood.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let peak = rss_kib(pid).expect("VmRSS after the flood");

    let uri = format!("sip:{listen}");
    let (out, _) = sipcheck(&["options", &uri, "--json"], &[]);
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(support::process::pid_alive(pid), "answer died\n{shown}");
    eprintln!(
        "flood: 5000 OPTIONS in {flood_took:?}, {answered} answered; VmRSS {before} KiB before, {peak} KiB after"
    );
    // 5,000 server transactions held for Timer J (32 s) at well under 4 KiB
    // each is < 20 MB on top of the ~10-20 MB idle process: 64 MB leaves room
    // for allocator slack and still catches unbounded growth per message.
    assert!(
        peak < 64 * 1024,
        "VmRSS {peak} KiB after the flood (before: {before} KiB)\n{shown}"
    );
    assert!(
        answered > 0,
        "no OPTIONS answered during the flood\n{shown}"
    );
    assert!(!answer.output().contains("panicked"), "{shown}");
    let _ = stdout;
}

/// A storm of stray BYEs (no dialog: each answered 481 and its server transaction kept for
/// Timer J) fills the transaction table up to its cap; beyond it requests are answered
/// statelessly 503 with Retry-After and cost no memory, the process stays bounded, and once
/// Timer J has run out the table is free again.
#[test]
fn a_bye_storm_beyond_the_transaction_cap_is_answered_503_and_memory_stays_bounded() {
    const CAP: usize = 1_000;
    const STORM: u32 = 6_000;
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    // T1 50 ms: Timer J is 64·T1 = 3.2 s.
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--json",
            "--t1",
            "50ms",
            "--max-transactions",
            &CAP.to_string(),
        ],
        &[],
    );
    let pid = answer.pid().expect("answer runs");
    let before = rss_kib(pid).expect("VmRSS");

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let reader = sock.try_clone().unwrap();
    // Count the responses as they come (the socket's buffer would overflow otherwise).
    let counts = std::thread::spawn(move || {
        let _ = reader.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = vec![0u8; 65_536];
        let (mut r481, mut r503, mut retry_after, mut other) = (0u32, 0u32, 0u32, 0u32);
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 481 ") {
                r481 += 1;
            } else if text.starts_with("SIP/2.0 503 ") {
                r503 += 1;
                if text.to_ascii_lowercase().contains("\r\nretry-after: ") {
                    retry_after += 1;
                }
            } else {
                other += 1;
            }
        }
        (r481, r503, retry_after, other)
    });
    let uri = format!("sip:bob@{listen}");
    let mut peak = before;
    for i in 0..STORM {
        let bye = request(
            "BYE",
            &uri,
            local,
            &format!("z9hG4bKstorm{i}"),
            &format!("s{i}"),
            &format!("<sip:bob@{listen}>;tag=gone{i}"),
            &format!("storm{i}@hostile"),
            2,
            &[],
            None,
        );
        let _ = sock.send_to(bye.as_bytes(), answer_addr);
        // Paced in bursts, so that the kernel's buffers drop none of them.
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
            peak = peak.max(rss_kib(pid).unwrap_or(0));
        }
    }
    let (r481, r503, retry_after, other) = counts.join().unwrap();
    peak = peak.max(rss_kib(pid).unwrap_or(0));
    let shown = format!(
        "481: {r481}, 503: {r503} ({retry_after} with Retry-After), other: {other}; \
         VmRSS {before} KiB before, peak {peak} KiB\n{}",
        answer.output()
    );
    eprintln!("{shown}");
    // The table holds at most CAP transactions: at most CAP BYEs got their 481 within the
    // storm (it lasts well under Timer J), the others the stateless 503.
    assert!(r481 >= 1 && r481 as usize <= CAP, "{shown}");
    assert!(r503 > 0, "{shown}");
    assert_eq!(retry_after, r503, "every 503 says when to retry\n{shown}");
    assert_eq!(other, 0, "{shown}");
    assert!(
        peak < before + 48 * 1024,
        "VmRSS grew from {before} to {peak} KiB\n{shown}"
    );

    // Timer J over, the table is free again: a request is served, not refused.
    std::thread::sleep(Duration::from_millis(3_500));
    let opts = request(
        "OPTIONS",
        &format!("sip:{listen}"),
        local,
        "z9hG4bKafterstorm",
        "after",
        &format!("<sip:{listen}>"),
        "after-storm@hostile",
        1,
        &[],
        None,
    );
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = sock.send_to(opts.as_bytes(), answer_addr);
    let mut buf = vec![0u8; 65_536];
    let mut answered = None;
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.contains("after-storm@hostile") {
            answered = Some(text);
            break;
        }
    }
    let answered = answered.unwrap_or_else(|| panic!("no answer to the OPTIONS\n{shown}"));
    assert!(answered.starts_with("SIP/2.0 200 "), "{answered}\n{shown}");

    // Its totals count the refusals.
    let code = answer.interrupt();
    let out = answer.stdout();
    let totals = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "totals")
        .unwrap_or_else(|| panic!("no totals\n{}", answer.output()));
    // (At least those we received: our socket may have dropped a few responses.)
    let counted = totals["overload_503"].as_u64().unwrap_or(0);
    assert!(
        counted >= u64::from(r503) && counted <= u64::from(STORM) - CAP as u64,
        "{totals}\n{shown}"
    );
    assert!(code.is_some(), "{}", answer.output());
    assert!(!answer.stderr().contains("panicked"), "{}", answer.output());
}

/// Bytes a terminal acts on: C0 controls (but line feed and tab), DEL, and C1 controls.
fn control_bytes(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t')
        .collect()
}

#[test]
fn escape_and_bell_bytes_in_from_and_call_id_do_not_reach_the_terminal() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let dir = RunDir::new("hostile-terminal").unwrap();
    let trace = dir.join("answer.trace");
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--reject",
            "486",
            "--calls",
            "1",
            "-v",
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
        &[("NO_COLOR", "1")],
    );
    // A screen clear, a title change, a bell and a C1 CSI in the caller's display name and
    // Call-ID.
    let call_id = "evil\x1b[2J\x07\u{9b}31m@hostile";
    let peer = HostilePeer::start(move |p| {
        let uri = format!("sip:bob@{answer_addr}");
        let invite = request(
            "INVITE",
            &uri,
            p.addr,
            "z9hG4bKesc1",
            "caller",
            &format!("<{uri}>"),
            call_id,
            1,
            &[],
            None,
        )
        .replace(
            "From: <sip:hostile@",
            "From: \"\x1b]0;pwned\x07\x1b[2JPASS\x08\" <sip:hostile@",
        );
        p.send_raw(invite.as_bytes(), answer_addr);
        let (fin, _) = p
            .recv_matching(SCRIPT_WAIT, |m| {
                m.status().is_some_and(|c| c >= 200) && m.method() == "INVITE"
            })
            .expect("a final response");
        assert_eq!(fin.status(), Some(486), "{}", fin.text);
        let ack = request(
            "ACK",
            &uri,
            p.addr,
            "z9hG4bKesc1",
            "caller",
            &fin.header("To").unwrap_or_default(),
            call_id,
            1,
            &[],
            None,
        );
        p.send_raw(ack.as_bytes(), answer_addr);
    });
    let _ = peer.wait();
    let exit = answer.wait_exit(Duration::from_secs(10));
    let shown = answer.output();
    assert!(matches!(exit, Some(0 | 1)), "{shown}");
    let out = answer.stdout();
    // The call was seen and printed, its peer text escaped.
    assert!(out.contains("call 1 from "), "{shown}");
    assert!(out.contains("evil\\x1b[2J\\x07\\x9b31m@hostile"), "{shown}");
    assert!(
        out.contains("\\x1b]0;pwned\\x07\\x1b[2JPASS\\x08"),
        "{shown}"
    );
    assert_eq!(control_bytes(&out), Vec::<char>::new(), "{shown}");
    // The SIP trace, on stderr (-v) and in its file, is escaped too.
    let traced = support::process::read_lossy(&trace);
    assert!(traced.contains("Call-ID: evil\\x1b[2J"), "{traced}");
    assert_eq!(control_bytes(&traced), Vec::<char>::new(), "{traced}");
    let err = answer.stderr();
    assert!(err.contains("Call-ID: evil\\x1b[2J"), "{shown}");
    assert_eq!(control_bytes(&err), Vec::<char>::new(), "{shown}");
}

#[test]
fn escape_and_bell_bytes_in_a_reason_phrase_do_not_reach_the_terminal() {
    // A 403 whose reason phrase clears the screen, rings and prints a fake verdict.
    let peer = HostilePeer::start(|p| {
        while let Some((r, from)) = p.recv_request(Duration::from_millis(1500)) {
            p.respond(&r, from, 403, "No\x1b[2J\x07PASS\x1b[0m", &[], None);
        }
    });
    let uri = format!("sip:{}", peer.addr);
    let (out, _) = sipcheck(
        &["options", &uri, "-v", "--timeout", "3s"],
        &[("NO_COLOR", "1")],
    );
    let shown = format!("{}\npeer saw:\n{}", describe_output(&out), peer.ladder());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let text = stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The report and its ladder name the response, escaped; so does the -v trace.
    assert!(text.contains("403 No\\x1b[2J\\x07PASS\\x1b[0m"), "{shown}");
    assert!(stderr.contains("403 No\\x1b[2J\\x07PASS"), "{shown}");
    assert_eq!(control_bytes(&text), Vec::<char>::new(), "{shown}");
    assert_eq!(control_bytes(&stderr), Vec::<char>::new(), "{shown}");
}

/// The first final response to INVITE `call_id` arriving on `sock` within `timeout`.
fn final_response(sock: &UdpSocket, call_id: &str, timeout: Duration) -> Option<Msg> {
    let until = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let m = Msg {
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if m.status().is_some_and(|c| c >= 200)
                && m.method() == "INVITE"
                && m.header("Call-ID").as_deref() == Some(call_id)
            {
                return Some(m);
            }
        }
    }
    None
}

/// Datagrams arriving on `sock` during `window`.
fn count_datagrams(sock: &UdpSocket, window: Duration) -> usize {
    let until = Instant::now() + window;
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    while Instant::now() < until {
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// A raw INVITE from `sip` (its address in Via and Contact) to `answer_addr`, with `offer`
/// (none: a delayed offer).
fn raw_invite(sip: &UdpSocket, answer_addr: SocketAddr, call_id: &str, offer: Option<&str>) {
    let uri = format!("sip:bob@{answer_addr}");
    let invite = request(
        "INVITE",
        &uri,
        sip.local_addr().unwrap(),
        &format!("z9hG4bK{call_id}"),
        "hostile",
        &format!("<{uri}>"),
        call_id,
        1,
        &[],
        offer,
    );
    sip.send_to(invite.as_bytes(), answer_addr).unwrap();
}

/// An in-dialog request (`ACK` of the 2xx, `BYE`) for the dialog `ok` established.
fn raw_in_dialog(
    sip: &UdpSocket,
    answer_addr: SocketAddr,
    ok: &Msg,
    method: &str,
    cseq: u32,
    body: Option<&str>,
) {
    let call_id = ok.header("Call-ID").unwrap_or_default();
    let to = ok.header("To").unwrap_or_default();
    let msg = request(
        method,
        &format!("sip:bob@{answer_addr}"),
        sip.local_addr().unwrap(),
        &format!("z9hG4bK{method}{cseq}{call_id}"),
        "hostile",
        &to,
        &call_id,
        cseq,
        &[],
        body,
    );
    sip.send_to(msg.as_bytes(), answer_addr).unwrap();
}

#[test]
fn answer_sends_no_rtp_before_the_ack_to_an_address_the_invite_did_not_come_from() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let answer = OwnAnswer::start(&["--listen", &listen]);
    // The INVITE comes from 127.0.0.2; its SDP names a victim on 127.0.0.1.
    let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = sdp(
        victim.local_addr().unwrap(),
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
    );
    raw_invite(&sip, answer_addr, "reflect@hostile", Some(&offer));
    let ok = final_response(&sip, "reflect@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let before_ack = count_datagrams(&victim, Duration::from_millis(1500));
    assert_eq!(
        before_ack,
        0,
        "RTP sent to an address the INVITE did not come from, before any ACK\n{}",
        answer.output()
    );
    // Confirmed: the media goes where the SDP says.
    raw_in_dialog(&sip, answer_addr, &ok, "ACK", 1, None);
    let after_ack = count_datagrams(&victim, Duration::from_millis(1000));
    assert!(
        after_ack >= 20,
        "{after_ack} RTP packets in 1 s after the ACK\n{}",
        answer.output()
    );
    raw_in_dialog(&sip, answer_addr, &ok, "BYE", 2, None);

    // The control: an SDP naming the INVITE's own address gets its RTP at once.
    let own = UdpSocket::bind("127.0.0.2:0").unwrap();
    let offer = sdp(
        own.local_addr().unwrap(),
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
    );
    raw_invite(&sip, answer_addr, "own@hostile", Some(&offer));
    let ok = final_response(&sip, "own@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let early = count_datagrams(&own, Duration::from_millis(1000));
    assert!(
        early >= 20,
        "{early} RTP packets in 1 s to the INVITE's own address\n{}",
        answer.output()
    );
    raw_in_dialog(&sip, answer_addr, &ok, "ACK", 1, None);
    raw_in_dialog(&sip, answer_addr, &ok, "BYE", 2, None);
    assert!(!answer.output().contains("panicked"), "{}", answer.output());
}

#[test]
fn a_delayed_offer_s_media_flows_on_the_port_answer_offered_in_its_200() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let answer = OwnAnswer::start(&["--listen", &listen]);
    let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
    let media = UdpSocket::bind("127.0.0.2:0").unwrap();
    // No SDP in the INVITE: answer offers in its 200, we answer in the ACK.
    raw_invite(&sip, answer_addr, "delayed@hostile", None);
    let ok = final_response(&sip, "delayed@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let offered: u16 = ok
        .body()
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in the 200\n{}", ok.text));
    let ours = sdp(
        media.local_addr().unwrap(),
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
    );
    raw_in_dialog(&sip, answer_addr, &ok, "ACK", 1, Some(&ours));
    // Our RTP goes to the port offered, answer's comes from it.
    let to = SocketAddr::new(answer_addr.ip(), offered);
    let mut sources = Vec::new();
    let mut buf = vec![0u8; 2048];
    media
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    for seq in 0..50u16 {
        let packet = rtp_packet(0, seq, u32::from(seq) * 160, 0x1234_5678, 0xff);
        media.send_to(&packet, to).unwrap();
        if let Ok((_, from)) = media.recv_from(&mut buf) {
            sources.push(from);
        }
    }
    assert!(
        sources.len() >= 10,
        "{} RTP packets from answer in 1 s\n{}",
        sources.len(),
        answer.output()
    );
    assert!(
        sources.iter().all(|from| from.port() == offered),
        "answer's RTP came from {sources:?}, its 200 offered port {offered}\n{}",
        answer.output()
    );
    raw_in_dialog(&sip, answer_addr, &ok, "BYE", 2, None);
    let line = process::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        answer.output().contains("[delayed@hostile]")
    });
    let shown = answer.output();
    assert!(line, "no line for the call\n{shown}");
    let line = shown
        .lines()
        .find(|l| l.contains("[delayed@hostile]"))
        .unwrap_or_default();
    assert!(line.ends_with("-- PASS"), "{shown}");
    assert!(!line.contains(" 0 received"), "{shown}");
}

#[test]
fn legitimate_calls_get_through_a_flood_of_unacked_invites() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = OwnAnswer::start(&["--listen", &listen, "--max-calls", "4", "--json"]);
    // 20 INVITEs a second for 5 s, never ACKed, from four addresses in turn (each pushes
    // out the oldest unconfirmed call), the last second from one (over its share); their
    // SDP names a victim that must get nothing.
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    let victim_addr = victim.local_addr().unwrap();
    let flood = std::thread::spawn(move || {
        let sources: Vec<UdpSocket> = (2..=5)
            .map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap())
            .collect();
        let offer = sdp(victim_addr, "0", &["a=rtpmap:0 PCMU/8000", "a=sendrecv"]);
        for i in 0..100 {
            let from = if i < 80 { i % 4 } else { 0 };
            raw_invite(
                &sources[from],
                answer_addr,
                &format!("flood{i}@hostile"),
                Some(&offer),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let uri = format!("sip:bob@{listen}");
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let (out, _) = sipcheck(&["call", &uri, "--duration", "1s", "--json"], &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "a legitimate call failed during the flood\n{}\n{}",
            describe_output(&out),
            answer.output()
        );
    }
    flood.join().unwrap();
    let victim_got = count_datagrams(&victim, Duration::from_millis(200));
    process::signal(answer.child.id(), "INT").unwrap();
    let status = process::wait_timeout(&mut answer.child, Duration::from_secs(2));
    assert!(status.is_some(), "answer still running 2 s after SIGINT");
    let shown = answer.output();
    assert_eq!(victim_got, 0, "RTP sent for INVITEs never ACKed\n{shown}");
    let stdout = process::read_lossy(&answer.dir.join("stdout"));
    let totals = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "totals")
        .unwrap_or_else(|| panic!("no totals\n{shown}"));
    // --max-calls 4: 2 unconfirmed at once, 1 per source.
    assert!(
        totals["unconfirmed_dropped"].as_u64().unwrap() > 0,
        "{totals}"
    );
    assert!(totals["source_limited"].as_u64().unwrap() > 0, "{totals}");
    assert!(totals["passed"].as_u64().unwrap() >= 3, "{totals}");
    let dropped = stdout
        .lines()
        .filter(|l| l.contains("dropped unconfirmed after"))
        .count();
    assert!(dropped > 0, "no call line names the drop\n{shown}");
}

#[test]
fn the_first_sigint_ends_answer_within_2_s_whatever_its_calls_wait_for() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = OwnAnswer::start(&["--listen", &listen]);
    let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
    // An offer-less INVITE whose ACK carries no SDP: answer closes it with a BYE that is
    // never answered.
    raw_invite(&sip, answer_addr, "offerless@hostile", None);
    let ok = final_response(&sip, "offerless@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    raw_in_dialog(&sip, answer_addr, &ok, "ACK", 1, None);
    // And an INVITE never ACKed.
    let offer = sdp(
        sip.local_addr().unwrap(),
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
    );
    raw_invite(&sip, answer_addr, "unacked@hostile", Some(&offer));
    let ok = final_response(&sip, "unacked@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    process::signal(answer.child.id(), "INT").unwrap();
    let status = process::wait_timeout(&mut answer.child, Duration::from_secs(2));
    let took = started.elapsed();
    let shown = answer.output();
    assert!(
        status.is_some(),
        "answer still running 2 s after SIGINT\n{shown}"
    );
    assert!(shown.contains("(interrupted)"), "{shown}");
    eprintln!("answer ended {took:?} after SIGINT");
}

#[test]
fn a_second_sigint_ends_answer_at_once_without_waiting_for_the_drain() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = OwnAnswer::start(&["--listen", &listen]);
    let sip = UdpSocket::bind("127.0.0.2:0").unwrap();
    // An offer-less INVITE whose ACK carries no SDP: answer closes it with a BYE that is
    // never answered, so the first SIGINT's drain runs its whole second.
    raw_invite(&sip, answer_addr, "offerless2@hostile", None);
    let ok = final_response(&sip, "offerless2@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    raw_in_dialog(&sip, answer_addr, &ok, "ACK", 1, None);
    // And an INVITE never ACKed: the first SIGINT drops it, and its line says so.
    let offer = sdp(
        sip.local_addr().unwrap(),
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
    );
    raw_invite(&sip, answer_addr, "unacked2@hostile", Some(&offer));
    let ok = final_response(&sip, "unacked2@hostile", SCRIPT_WAIT)
        .unwrap_or_else(|| panic!("no final response\n{}", answer.output()));
    assert_eq!(ok.status(), Some(200), "{}", ok.text);
    let first = Instant::now();
    process::signal(answer.child.id(), "INT").unwrap();
    let dropped = process::wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
        process::read_lossy(&answer.dir.join("stdout")).contains("unacked2@hostile")
    });
    assert!(
        dropped,
        "the first SIGINT did not end the unacked call\n{}",
        answer.output()
    );
    let second = Instant::now();
    process::signal(answer.child.id(), "INT").unwrap();
    let status = process::wait_timeout(&mut answer.child, Duration::from_secs(3));
    let took = second.elapsed();
    let shown = answer.output();
    assert!(
        status.is_some(),
        "answer still running 3 s after SIGINT\n{shown}"
    );
    assert!(shown.contains("(interrupted)"), "{shown}");
    // The drain alone would have held it until a second after the first SIGINT.
    assert!(
        took < Duration::from_millis(700),
        "answer left {took:?} after the second SIGINT ({:?} after the first)\n{shown}",
        first.elapsed()
    );
}

#[test]
fn sipp_calls_get_through_a_flood_of_unacked_invites_with_their_media_after_the_ack() {
    let sipp_bin = process::require_program("sipp", "sip-tester").expect("sipp");
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = OwnAnswer::start(&[
        "--listen",
        &listen,
        "--max-calls",
        "4",
        "--no-media-ok",
        "--json",
    ]);
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    let victim_addr = victim.local_addr().unwrap();
    let flood = std::thread::spawn(move || {
        let sources: Vec<UdpSocket> = (2..=5)
            .map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap())
            .collect();
        let offer = sdp(victim_addr, "0", &["a=rtpmap:0 PCMU/8000", "a=sendrecv"]);
        for i in 0..100 {
            raw_invite(
                &sources[i % 4],
                answer_addr,
                &format!("sflood{i}@hostile"),
                Some(&offer),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // SIPp's own UAC: signaling from 127.0.0.1, media on 127.0.0.3 (another address than
    // the INVITE's source: held back until its ACK, then sent).
    let mut cmd = Command::new(sipp_bin);
    cmd.args(["-sn", "uac", &listen, "-i", "127.0.0.1", "-mi", "127.0.0.3"])
        .args(["-m", "8", "-r", "4", "-l", "2", "-d", "1000"])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .arg("-p")
        .arg(free_port().to_string())
        .current_dir(answer.dir.path());
    let out = process::run_with_timeout(cmd, Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("sipp did not finish\n{}", answer.output()));
    flood.join().unwrap();
    let victim_got = count_datagrams(&victim, Duration::from_millis(200));
    process::signal(answer.child.id(), "INT").unwrap();
    let _ = process::wait_timeout(&mut answer.child, Duration::from_secs(2));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "SIPp's calls failed\n{shown}");
    assert_eq!(victim_got, 0, "RTP sent for INVITEs never ACKed\n{shown}");
    let stdout = process::read_lossy(&answer.dir.join("stdout"));
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sipp_calls: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "call" && !l["call_id"].as_str().unwrap().contains("@hostile"))
        .collect();
    assert_eq!(sipp_calls.len(), 8, "{shown}");
    for call in sipp_calls {
        assert_eq!(call["verdict"], "pass", "{call}\n{shown}");
        assert!(
            call["media"]["packets_sent"].as_u64().unwrap_or(0) > 0,
            "no RTP sent to SIPp after its ACK: {call}"
        );
    }
    let totals = lines.iter().find(|l| l["kind"] == "totals").expect(&shown);
    assert!(
        totals["unconfirmed_dropped"].as_u64().unwrap() > 0,
        "{totals}"
    );
}

#[test]
fn a_flood_of_garbage_logs_a_few_warnings_a_count_and_no_colour() {
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_addr: SocketAddr = listen.parse().unwrap();
    let mut answer = OwnAnswer::start(&["--listen", &listen]);
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..5_000usize {
        let _ = flood.send_to(GARBAGE[i % GARBAGE.len()], answer_addr);
    }
    // answer still answers (so it has read the flood queued before this), then exits on SIGINT.
    let uri = format!("sip:{listen}");
    let (out, _) = sipcheck(&["options", &uri, "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", answer.output());
    process::signal(answer.child.id(), "INT").unwrap();
    let status = process::wait_timeout(&mut answer.child, Duration::from_secs(5));
    assert!(status.is_some(), "answer still running 5 s after SIGINT");
    let shown = answer.output();
    let stderr = process::read_lossy(&answer.dir.join("stderr"));
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("malformed datagram ignored"))
        .count();
    assert!(warnings >= 1, "no warning at all\n{shown}");
    assert!(
        stderr.lines().count() < 50,
        "{} lines on stderr",
        stderr.lines().count()
    );
    assert!(!stderr.contains('\x1b'), "ANSI escape in a file\n{shown}");
    // The rest are counted: the summary says how many were left out.
    let left_out: u64 = stderr
        .lines()
        .filter(|l| l.contains("left out") && l.contains("malformed datagram ignored"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(left_out > 0, "no count of the warnings left out\n{shown}");
    // Every datagram the kernel delivered is either shown or counted; it may drop some.
    assert!(
        warnings as u64 + left_out <= 5_000,
        "{warnings} shown + {left_out} left out\n{shown}"
    );
}
