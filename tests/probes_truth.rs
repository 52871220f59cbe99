//! The probes tell the truth and show the evidence: `--help` of every command, a dead port
//! known at once (ICMP port unreachable), `--timeout`, the SIP trace of a real call (`-v`,
//! `--trace-sip`), and `answer` accounting for the INVITEs it refuses.

mod support;

use std::net::UdpSocket;
use std::process::Output;
use std::time::{Duration, Instant};

use support::process::{read_lossy, RunDir};
use support::responder::Responder;
use support::{describe_output, free_port, run_sipcheck};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_help_shows_examples_and_exit_codes() {
    for cmd in ["options", "register", "call", "answer", "validate", "run"] {
        let out = run_sipcheck([cmd, "--help"], &[]);
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {shown}");
        let text = stdout(&out);
        assert!(text.contains("Examples:"), "{cmd}: {shown}");
        assert!(
            text.contains(&format!("sipcheck {cmd} ")),
            "{cmd}: no example of the command itself\n{shown}"
        );
        assert!(text.contains("Exit codes:"), "{cmd}: {shown}");
        for code in ["  0 ", "  2 "] {
            assert!(
                text.contains(code),
                "{cmd}: exit code {code:?} missing\n{shown}"
            );
        }
    }
}

/// A loopback port nothing listens on: what is sent there comes back as ICMP port
/// unreachable.
fn dead_port() -> u16 {
    free_port()
}

#[test]
fn a_dead_udp_port_fails_call_options_and_register_at_once() {
    let port = dead_port();
    let target = format!("127.0.0.1:{port}");
    let uri = format!("sip:x@{target}");
    let cases: [Vec<&str>; 3] = [
        vec!["call", &uri, "--rtp-ports", "30000-39999"],
        vec!["options", &uri],
        vec!["register", "--server", &target, "--user", "1001"],
    ];
    for args in cases {
        let started = Instant::now();
        let out = run_sipcheck(&args, &[]);
        let took = started.elapsed();
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {shown}");
        // Without the ICMP error, Timer B/F would take 32 s.
        assert!(
            took < Duration::from_secs(2),
            "{args:?} took {took:?}\n{shown}"
        );
        let text = stdout(&out);
        assert!(
            text.contains(&format!("{target} is unreachable: ICMP port unreachable")),
            "{args:?}: {shown}"
        );
        assert!(text.contains("FAIL"), "{args:?}: {shown}");
    }
}

/// The call's end reason names the ICMP error once: the line the probe prints, in full.
#[test]
fn a_call_to_a_dead_udp_port_names_the_icmp_error_once() {
    let target = format!("127.0.0.1:{}", dead_port());
    let uri = format!("sip:x@{target}");
    let out = run_sipcheck(["call", &uri, "--rtp-ports", "30000-39999"], &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let cause = format!(
        "transport error: {target} is unreachable: ICMP port unreachable: connection refused \
         (reported by 127.0.0.1)"
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ended: ") || l.starts_with("FAIL: "))
        .collect();
    assert_eq!(
        lines,
        [
            format!("ended: {cause}"),
            format!("FAIL: not answered: {cause}")
        ],
        "{shown}"
    );
}

/// The FAIL line of a probe's text output, and the `error` of its JSON.
fn failure_lines(args: &[&str]) -> (String, String) {
    let out = run_sipcheck(args, &[]);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {shown}");
    let fail = stdout(&out)
        .lines()
        .find(|l| l.starts_with("FAIL: "))
        .unwrap_or_else(|| panic!("{args:?}: no FAIL line\n{shown}"))
        .to_owned();
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = run_sipcheck(&json_args, &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{json_args:?}: {e}\n{}", describe_output(&out)));
    assert_eq!(v["verdict"], "fail", "{v}");
    assert_eq!(v["status"], serde_json::Value::Null, "{v}");
    (fail, v["error"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn options_and_register_say_why_no_final_response_came_in_the_same_words() {
    // A dead port: the ICMP error, at once.
    let dead = format!("127.0.0.1:{}", dead_port());
    let uri = format!("sip:x@{dead}");
    let unreachable = format!("no final response: {dead} is unreachable: ICMP port unreachable");
    for args in [
        vec!["options", uri.as_str()],
        vec!["register", "--server", &dead, "--user", "1001"],
    ] {
        let (fail, error) = failure_lines(&args);
        assert!(
            fail.starts_with(&format!("FAIL: {unreachable}")),
            "{args:?}: {fail}"
        );
        assert_eq!(fail, format!("FAIL: {error}"), "{args:?}");
    }
    // A socket that receives and never answers: Timer F at 64·T1 = 640 ms.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let uri = format!("sip:x@{target}");
    let timers = ["--t1", "10ms", "--t2", "40ms"];
    for mut args in [
        vec!["options", uri.as_str()],
        vec!["register", "--server", &target, "--user", "1001"],
    ] {
        args.extend(timers);
        let (fail, error) = failure_lines(&args);
        assert_eq!(
            fail, "FAIL: no final response: Timer F expired after 0.6 s (is the peer reachable?)",
            "{args:?}"
        );
        assert_eq!(fail, format!("FAIL: {error}"), "{args:?}");
    }
}

#[test]
fn timeout_limits_a_probe_of_a_silent_peer_and_names_the_limit() {
    // A socket that receives and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let uri = format!("sip:x@{target}");
    for args in [
        vec!["options", uri.as_str(), "--timeout", "1s"],
        vec![
            "register",
            "--server",
            &target,
            "--user",
            "1001",
            "--timeout",
            "1s",
        ],
    ] {
        let started = Instant::now();
        let out = run_sipcheck(&args, &[]);
        let took = started.elapsed();
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {shown}");
        assert!(took >= Duration::from_secs(1), "{args:?} took {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "{args:?} took {took:?}\n{shown}"
        );
        assert!(
            stdout(&out).contains("FAIL: no final response within --timeout 1s"),
            "{args:?}: {shown}"
        );
    }
    // A call: CANCEL needs a provisional response, so after the limit the call is
    // abandoned within 2 s more.
    let started = Instant::now();
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--timeout",
            "1s",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let took = started.elapsed();
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(took < Duration::from_secs(5), "call took {took:?}\n{shown}");
    assert!(
        stdout(&out).contains("gave up: --timeout 1s reached"),
        "{shown}"
    );
    // Registering first: the limit covers the registration too.
    let started = Instant::now();
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--user",
            "1001",
            "--register",
            "--timeout",
            "1s",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let took = started.elapsed();
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(took < Duration::from_secs(3), "call took {took:?}\n{shown}");
    assert!(
        stdout(&out).contains("registration failed: no final response within --timeout 1s"),
        "{shown}"
    );
}

/// The start lines of the ladder a probe printed (`  1.234 ms --> peer  LINE  [CSeq]`).
fn ladder_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(" ms --> ") || l.contains(" ms <-- "))
        .map(|l| {
            let after = l.split_once(" ms ").map_or(l, |(_, rest)| rest);
            // Arrow, peer, then the start line up to the CSeq in brackets.
            let rest = after[4..].trim_start();
            let rest = rest.split_once(' ').map_or("", |(_, r)| r).trim_start();
            rest.rsplit_once("  [")
                .map_or(rest, |(line, _)| line)
                .to_string()
        })
        .collect()
}

#[test]
fn a_call_with_v_shows_every_message_and_trace_sip_holds_the_whole_ladder() {
    let dir = RunDir::new("trace-sip").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let answer_trace = dir.join("answer.trace");
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--ring",
            "100ms",
            "--play-tone",
            "1000",
            "--calls",
            "1",
            "--codec",
            "pcma",
            "--rtp-ports",
            "30000-39999",
            "--trace-sip",
            answer_trace.to_str().unwrap(),
        ],
        &[],
    );
    let trace = dir.join("call.trace");
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--expect-tone",
            "1000",
            "--duration",
            "1s",
            "--rtp-ports",
            "30000-39999",
            "-v",
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );

    // -v: the INVITE with its headers and SDP on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let invite = stderr
        .split("\n-----")
        .find(|m| m.contains("\nINVITE sip:bob@"))
        .unwrap_or_else(|| panic!("no INVITE on stderr\n{shown}"));
    for needle in [
        " sent UDP ",
        "\nVia: SIP/2.0/UDP ",
        "\nFrom: ",
        "\nTo: <sip:bob@",
        "\nCall-ID: ",
        "\nCSeq: 1 INVITE",
        "\nContact: ",
        "\nContent-Type: application/sdp",
        "\nv=0",
        "\nm=audio ",
        "\na=rtpmap:8 PCMA/8000",
    ] {
        assert!(
            invite.contains(needle),
            "{needle:?} not in\n{invite}\n{shown}"
        );
    }
    assert!(stderr.contains(" received UDP "), "{shown}");

    // --trace-sip: every message of the ladder, in order, each under its own line.
    let traced = read_lossy(&trace);
    let heads: Vec<&str> = traced.lines().filter(|l| l.starts_with("----- ")).collect();
    let ladder = ladder_lines(&stdout(&out));
    assert!(
        ladder.len() >= 6,
        "INVITE 180 200 ACK BYE 200 at least\n{shown}"
    );
    assert_eq!(heads.len(), ladder.len(), "{traced}\n{shown}");
    let starts: Vec<&str> = traced
        .split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines().skip_while(|l| !l.starts_with("----- "));
            lines.next()?;
            lines.next()
        })
        .collect();
    assert_eq!(starts, ladder, "{traced}\n{shown}");
    for head in &heads {
        assert!(
            head.contains(" sent UDP ") || head.contains(" received UDP "),
            "{head}"
        );
        assert!(head.contains(&listen), "{head}");
        assert!(head.contains(" bytes"), "{head}");
    }

    // The responder's own trace: the INVITE received and its 200 sent, with the SDP; its
    // line names the codec.
    let answered = read_lossy(&answer_trace);
    assert!(answered.contains(" received UDP "), "{answered}");
    assert!(answered.contains("\nINVITE sip:bob@"), "{answered}");
    assert!(answered.contains("\nSIP/2.0 200 OK"), "{answered}");
    assert!(answered.contains("\na=rtpmap:8 PCMA/8000"), "{answered}");
    let line = answer.stdout();
    assert!(line.contains("; PCMA/8000, rtp "), "{line}");
}

/// An INVITE from `from` (a test socket) to `to` offering G.729 only, with a Contact or not.
fn raw_invite(from: &UdpSocket, to: &str, n: u32, contact: bool) -> String {
    let local = from.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
        40000 + n
    );
    let contact = if contact {
        format!("Contact: <sip:tester@{local}>\r\n")
    } else {
        String::new()
    };
    format!(
        "INVITE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrefused{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag=t{n}\r\nTo: <sip:bob@{to}>\r\n\
         Call-ID: refused-{n}@test\r\nCSeq: 1 INVITE\r\n{contact}\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The final response to what was sent from `socket` (provisional ones skipped).
fn final_response(socket: &UdpSocket) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("a response");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

/// The ACK of a non-2xx final response (same branch, the response's To).
fn ack_for(invite: &str, response: &str) -> String {
    let header = |msg: &str, name: &str| {
        msg.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let request_uri = invite.lines().next().unwrap().split(' ').nth(1).unwrap();
    format!(
        "ACK {request_uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\n{}\r\n{}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        header(invite, "Via:"),
        header(invite, "From:"),
        header(response, "To:"),
        header(invite, "Call-ID:"),
    )
}

#[test]
fn answer_reports_refused_invites_with_the_reason_and_counts_them() {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--calls",
            "2",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Not SIP at all: no response is possible; counted.
    socket.send_to(b"NOT SIP AT ALL\r\n\r\n", &listen).unwrap();
    // A G.729-only offer: 488, ACKed.
    let invite = raw_invite(&socket, &listen, 1, true);
    socket.send_to(invite.as_bytes(), &listen).unwrap();
    let response = final_response(&socket);
    assert!(response.starts_with("SIP/2.0 488 "), "{response}");
    socket
        .send_to(ack_for(&invite, &response).as_bytes(), &listen)
        .unwrap();
    // No Contact: 400 before any call begins.
    let invite = raw_invite(&socket, &listen, 2, false);
    socket.send_to(invite.as_bytes(), &listen).unwrap();
    let response = final_response(&socket);
    assert!(response.starts_with("SIP/2.0 400 "), "{response}");

    let code = answer.wait_exit(Duration::from_secs(10));
    let shown = answer.output();
    assert_eq!(code, Some(1), "refused INVITEs are failures\n{shown}");
    let lines: Vec<String> = answer.stdout().lines().map(str::to_string).collect();
    let call = |id: &str| {
        lines
            .iter()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id}\n{shown}"))
            .clone()
    };
    let codec = call("[refused-1@test]");
    assert!(codec.contains("488 Not Acceptable Here"), "{shown}");
    assert!(codec.contains("offered: G729/8000"), "{shown}");
    assert!(codec.contains("-- FAIL"), "{shown}");
    let malformed = call("[refused-2@test]");
    assert!(
        malformed.contains("INVITE refused with 400 Bad Request: no Contact"),
        "{shown}"
    );
    assert!(malformed.contains("-- FAIL"), "{shown}");
    assert!(
        shown.contains(
            "totals: 2 received, 0 answered, 0 busy, 0 rejected, 2 refused, 0 passed, 2 failed"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("1 datagram(s) that were not SIP ignored"),
        "{shown}"
    );
}

#[test]
fn a_scenario_whose_registrar_is_a_dead_port_fails_at_once() {
    let dir = RunDir::new("dead-registrar").unwrap();
    let server = format!("127.0.0.1:{}", dead_port());
    let path = dir.join("dead.yaml");
    std::fs::write(
        &path,
        format!(
            "name: dead-registrar\ntarget:\n  server: {server}\n  domain: sipcheck.test\n\
             accounts:\n  range: {{ from: 3000, count: 2 }}\n  password: \"pw{{user}}\"\n\
             media: {{ rtp_ports: 30000-39999 }}\n\
             roles:\n  callee:\n    accounts: 3000..3000\n    steps:\n      - register\n      - answer\n      - wait_for: bye\n\
             \x20 caller:\n    accounts: 3001..3001\n    steps:\n      - register\n      - call: {{ to: \"sip:{{peer}}@{{domain}}\", peer: callee, timeout: 5s }}\n      - hangup: {{ after: 1s }}\n\
             load: {{ rate: 1/s, total_calls: 1 }}\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = support::run_sipcheck_with_timeout(
        ["run", path.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    // Without the ICMP error each REGISTER would wait out Timer F (32 s).
    assert!(took < Duration::from_secs(5), "took {took:?}\n{shown}");
    assert!(
        stdout(&out).contains("registrations: ok 0, failed 2"),
        "{shown}"
    );
    assert!(
        stdout(&out).contains(&format!("{server} is unreachable: ICMP port unreachable")),
        "{shown}"
    );
}
