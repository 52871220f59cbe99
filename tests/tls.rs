//! SIP over TLS against a real Kamailio (its `tls` module) on loopback, with certificates made
//! at test time: `options` and `register` (digest auth) verified against `--ca`; an untrusted,
//! a mismatched and an expired certificate refused, naming the problem; `--insecure` passing
//! with its warning; a peer misbehaving after the handshake; bad TLS flags; requests sent in
//! the same write as the handshake's end answered.

mod support;

use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOptions};
use support::process::RunDir;
use support::responder::{call_straight_over, Responder};
use support::tls::{CertFiles, MisbehavingServer, Misbehaviour, Pki};
use support::{
    describe_output as text, free_port, run_against, run_sipcheck, run_sipcheck_with_timeout,
    PeerLog, Ran,
};

fn kamailio_tls(certs: &CertFiles) -> Kamailio {
    Kamailio::start_with(&KamailioOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..KamailioOptions::default()
    })
    .expect("start kamailio with tls")
}

fn tls_port(kam: &Kamailio) -> u16 {
    kam.tls_port.expect("a TLS port")
}

/// `sipcheck options URI --transport tls EXTRA` against `peers`.
fn options(uri: &str, extra: &[&str], peers: &[&dyn PeerLog]) -> Ran {
    let mut args = vec!["options", uri, "--transport", "tls", "--timeout", "5s"];
    args.extend_from_slice(extra);
    run_against(args, &[], peers)
}

#[test]
fn options_and_register_with_digest_auth_over_tls_to_kamailio_verified_by_the_ca() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1", "DNS:localhost"], 2)
        .expect("server certificate");
    let kam = kamailio_tls(&certs);
    let port = tls_port(&kam);
    let ca = pki.ca.to_str().unwrap();

    let ran = options(&format!("sip:127.0.0.1:{port}"), &["--ca", ca], &[&kam]);
    ran.assert_exit(0);
    assert!(ran.printed.contains("200"), "{}", ran.shown);
    assert!(!ran.printed.contains("warning"), "{}", ran.shown);

    // `sips:` selects TLS and its port.
    let out = run_sipcheck(
        [
            "options",
            &format!("sips:127.0.0.1:{port}"),
            "--ca",
            ca,
            "--timeout",
            "5s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let server = format!("127.0.0.1:{port}");
    let user = "1001";
    let ran = run_against(
        [
            "register",
            "--server",
            &server,
            "--user",
            user,
            "--transport",
            "tls",
            "--ca",
            ca,
            "--keep",
            "--timeout",
            "5s",
        ],
        &[("SIP_PASSWORD", &Kamailio::password_for(user))],
        &[&kam],
    );
    ran.assert_exit(0);
    assert!(
        ran.printed.contains("401"),
        "the digest challenge is in the ladder\n{}",
        ran.shown
    );
    let bindings = kam.bindings(user);
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{}", ran.shown);
    assert!(
        bindings[0].contains("transport=tls"),
        "the Contact names TLS: {bindings:?}"
    );

    // A wrong password is still a failure over TLS.
    let out = run_sipcheck(
        [
            "register",
            "--server",
            &server,
            "--user",
            "1002",
            "--transport",
            "tls",
            "--ca",
            ca,
            "--timeout",
            "5s",
        ],
        &[("SIP_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn an_untrusted_certificate_fails_naming_the_problem_and_insecure_passes_with_a_warning() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .self_signed("selfsigned", "IP:127.0.0.1")
        .expect("self-signed certificate");
    let kam = kamailio_tls(&certs);
    let uri = format!("sip:127.0.0.1:{}", tls_port(&kam));

    // Neither the system's roots nor the test CA trust a self-signed certificate.
    for extra in [&[][..], &["--ca", pki.ca.to_str().unwrap()][..]] {
        let ran = options(&uri, extra, &[]);
        let shown = &ran.printed;
        assert_eq!(ran.code(), Some(1), "{shown}");
        assert!(
            shown.contains("TLS handshake with 127.0.0.1:")
                && shown.contains("certificate is not trusted")
                && shown.contains("self-signed"),
            "{shown}"
        );
        assert!(!shown.contains("panicked"), "{shown}");
    }

    // A certificate of a CA the system does not know.
    let issued = pki.issue("issued", &["IP:127.0.0.1"], 2).unwrap();
    let server = MisbehavingServer::start(&issued, Misbehaviour::Garbage).unwrap();
    let ran = options(&format!("sip:{}", server.addr), &[], &[]);
    let shown = &ran.printed;
    assert_eq!(ran.code(), Some(1), "{shown}");
    assert!(
        shown.contains("certificate is not trusted") && shown.contains("unknown authority"),
        "{shown}"
    );

    let ran = options(&uri, &["--insecure"], &[&kam]);
    ran.assert_exit(0);
    assert!(
        String::from_utf8_lossy(&ran.out.stderr).contains("warning: --insecure"),
        "{}",
        ran.shown
    );
}

#[test]
fn a_certificate_for_another_host_or_expired_fails_naming_the_problem() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("elsewhere", &["DNS:elsewhere.test"], 2)
        .expect("certificate for another name");
    let ca = pki.ca.to_str().unwrap();
    // What an OPTIONS to Kamailio presenting `certs` printed, refused.
    let refused = |certs: &CertFiles| {
        let kam = kamailio_tls(certs);
        let ran = options(
            &format!("sip:127.0.0.1:{}", tls_port(&kam)),
            &["--ca", ca],
            &[],
        );
        assert_eq!(ran.code(), Some(1), "{}", ran.printed);
        ran.printed
    };
    let shown = refused(&certs);
    assert!(
        shown.contains("certificate is not valid for 127.0.0.1: it names elsewhere.test ("),
        "{shown}"
    );

    let expired = pki
        .issue("expired", &["IP:127.0.0.1"], -1)
        .expect("expired certificate");
    let shown = refused(&expired);
    assert!(shown.contains("certificate has expired"), "{shown}");
}

#[test]
fn a_peer_sending_garbage_or_closing_mid_message_after_the_handshake_fails_without_panic() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("hostile", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    for what in [
        Misbehaviour::Garbage,
        Misbehaviour::CloseMidMessage,
        Misbehaviour::AbortMidMessage,
    ] {
        let server = MisbehavingServer::start(&certs, what).expect("tiny TLS server");
        let ran = options(
            &format!("sip:{}", server.addr),
            &["--ca", pki.ca.to_str().unwrap()],
            &[],
        );
        let shown = &ran.printed;
        assert_eq!(ran.code(), Some(1), "{what:?}: {shown}");
        assert!(!shown.contains("panicked"), "{what:?}: {shown}");
        // Past the handshake: the stream's fault is named, not the certificate's.
        let named = match what {
            Misbehaviour::Garbage => "is corrupt",
            Misbehaviour::CloseMidMessage | Misbehaviour::AbortMidMessage => {
                "was closed by the peer"
            }
        };
        assert!(shown.contains(named), "{what:?}: {shown}");
        assert!(!shown.contains("TLS handshake"), "{what:?}: {shown}");
    }
}

#[test]
fn unusable_tls_files_and_flags_are_bad_input_naming_the_file() {
    let pki = Pki::new().expect("test CA");
    let missing = pki.join("missing.pem");
    let ran = options(
        "sip:127.0.0.1:5061",
        &["--ca", missing.to_str().unwrap()],
        &[],
    );
    let shown = &ran.printed;
    assert_eq!(ran.code(), Some(2), "{shown}");
    assert!(shown.contains("missing.pem"), "{shown}");

    // A key given as the CA: no certificate in it.
    let certs = pki.issue("client", &["DNS:client.test"], 2).unwrap();
    let ran = options(
        "sip:127.0.0.1:5061",
        &["--ca", certs.key.to_str().unwrap()],
        &[],
    );
    let shown = &ran.printed;
    assert_eq!(ran.code(), Some(2), "{shown}");
    assert!(shown.contains("client.key"), "{shown}");

    let ran = options(
        "sip:127.0.0.1:5061",
        &["--client-cert", certs.cert.to_str().unwrap()],
        &[],
    );
    let shown = &ran.printed;
    assert_eq!(ran.code(), Some(2), "{shown}");
    assert!(shown.contains("--client-key"), "{shown}");
}

#[test]
fn a_call_through_kamailio_over_tls_to_a_tls_responder_hears_tones_both_ways() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    let callee_certs = pki
        .issue("callee", &["IP:127.0.0.1"], 2)
        .expect("responder certificate");
    let kam = kamailio_tls(&certs);
    let ca = pki.ca.to_str().unwrap();
    let (cert, key) = (
        callee_certs.cert.to_str().unwrap(),
        callee_certs.key.to_str().unwrap(),
    );
    let ran = kam.call_over(
        "tls",
        &["--cert", cert, "--key", key, "--ca", ca],
        &["--ca", ca, "--duration", "2s"],
    );
    // The caller's INVITE came over TLS; the responder listens on TLS only.
    assert!(
        kam.log()
            .lines()
            .any(|l| l.contains("REQ INVITE") && l.contains("from tls:127.0.0.1:")),
        "{}",
        ran.shown
    );
}

#[test]
fn a_scenario_over_tls_registers_and_calls_through_kamailio_both_ways_heard() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    let roles = pki
        .issue("roles", &["IP:127.0.0.1"], 2)
        .expect("roles' certificate");
    let kam = kamailio_tls(&certs);
    let scenario = "tests/peers/scenarios/kamailio-tls.yaml";
    let ran = kam.run_over(
        "tls",
        scenario,
        &[
            "--ca",
            pki.ca.to_str().unwrap(),
            "--cert",
            roles.cert.to_str().unwrap(),
            "--key",
            roles.key.to_str().unwrap(),
        ],
    );
    let log = kam.log();
    assert!(
        log.contains("REQ REGISTER sip:sipcheck.test from tls:"),
        "{log}"
    );
    assert!(
        log.contains("REQ INVITE sip:3700@sipcheck.test from tls:")
            || log.contains("REQ INVITE sip:3701@sipcheck.test from tls:"),
        "{log}"
    );
    let v = &ran.summary;
    let handshakes = &v["metrics"]["tls_handshake"];
    assert!(handshakes["count"].as_u64().unwrap_or(0) >= 4, "{v}");

    // Without the CA, the roles' registrations and calls fail naming the certificate
    // problem: the thresholds fail.
    let server = kam.server_for("tls");
    let scenario = support::repo_root().join(scenario);
    let out = run_sipcheck_with_timeout(
        ["run", scenario.to_str().unwrap()],
        &[("SIP_SERVER", server.as_str())],
        Duration::from_secs(120),
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    assert!(shown.contains("registrations: ok 0, failed 4"), "{shown}");
    assert!(shown.contains("certificate is not trusted"), "{shown}");
}

#[test]
fn a_call_straight_to_answer_over_tcp_and_over_tls_is_heard_both_ways() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("answer", &["IP:127.0.0.1"], 2)
        .expect("responder certificate");
    let (cert, key, ca) = (
        certs.cert.to_str().unwrap(),
        certs.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    for transport in ["tcp", "tls"] {
        let cert = (transport == "tls").then_some((cert, key));
        let ran = call_straight_over(transport, cert, |listen| {
            [
                &format!("sip:2001@{listen}"),
                "--transport",
                transport,
                "--ca",
                ca,
                "--duration",
                "1s",
            ]
            .map(str::to_owned)
            .to_vec()
        });
        let invite = ran.json()["ladder"][0]["line"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            invite.starts_with("INVITE sip:2001@"),
            "{transport}: {}",
            ran.shown
        );
    }

    // Over TLS without --cert, `answer` refuses to start (exit 2).
    let out = run_sipcheck(
        ["answer", "--transport", "tls", "--listen", "127.0.0.1:0"],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("--cert"), "{shown}");
}

#[test]
fn a_server_requiring_a_client_certificate_takes_ours_and_refuses_none_naming_why() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    let client = pki
        .issue("client", &["DNS:client.sipcheck.test"], 2)
        .expect("client certificate");
    let kam = Kamailio::start_with(&KamailioOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        tls_client_ca: Some(pki.ca.clone()),
        ..KamailioOptions::default()
    })
    .expect("start kamailio with tls");
    let uri = format!("sip:127.0.0.1:{}", tls_port(&kam));
    let ca = pki.ca.to_str().unwrap();

    options(
        &uri,
        &[
            "--ca",
            ca,
            "--client-cert",
            client.cert.to_str().unwrap(),
            "--client-key",
            client.key.to_str().unwrap(),
        ],
        &[&kam],
    )
    .assert_exit(0);

    let ran = options(&uri, &["--ca", ca], &[]);
    let shown = &ran.printed;
    assert_eq!(ran.code(), Some(1), "{shown}");
    assert!(
        shown.contains("TLS handshake with 127.0.0.1:")
            && shown.contains("the peer requires a client certificate"),
        "{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");
}

#[test]
fn sips_uris_go_over_tls_with_sips_contacts_through_kamailio_and_never_over_udp() {
    // RFC 3261 §19.1, §8.1.1.8; RFC 5630: a sips: URI means TLS, and the Contact sent with
    // it is sips: as well.
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    let kam = kamailio_tls(&certs);
    let port = tls_port(&kam);
    let server = format!("127.0.0.1:{port}");
    let ca = pki.ca.to_str().unwrap();
    let dir = RunDir::new("tls-sips").unwrap();

    // options: TLS without --transport, a sips: Contact, the handshake's time shown.
    let trace = dir.join("options.trace");
    let uri = format!("sips:{server}");
    let ran = run_against(
        [
            "options",
            &uri,
            "--ca",
            ca,
            "--timeout",
            "5s",
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
        &[],
        &[&kam],
    );
    ran.assert_exit(0);
    assert!(
        ran.printed
            .contains(&format!("TLS handshake with {server} in ")),
        "{}",
        ran.shown
    );
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(
        traced.contains(&format!("OPTIONS {uri} SIP/2.0")),
        "{traced}"
    );
    assert!(traced.contains("Via: SIP/2.0/TLS "), "{traced}");
    assert!(
        traced.contains("Contact: <sips:sipcheck@127.0.0.1:"),
        "{traced}"
    );
    let out = run_sipcheck(["options", &uri, "--ca", ca, "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["tls_handshake_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["ws_handshake_ms"], serde_json::Value::Null, "{v}");

    // A sips: URI over a transport that is no TLS is bad input, sent nowhere.
    for transport in ["udp", "tcp"] {
        let out = run_sipcheck(["options", &uri, "--transport", transport], &[]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(
            shown.contains(&format!(
                "{uri} is a sips: URI, which needs TLS: it cannot go over --transport {transport}"
            )),
            "{shown}"
        );
    }
    let out = run_sipcheck(
        [
            "call",
            "sips:2001@127.0.0.1",
            "--server",
            &server,
            "--transport",
            "udp",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // register: a sips: address of record, its Contact sips:, the handshake shown.
    let trace = dir.join("register.trace");
    let ran = run_against(
        [
            "register",
            "--server",
            &format!("sips:{server}"),
            "--user",
            "1001",
            "--keep",
            "--ca",
            ca,
            "--timeout",
            "5s",
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
        &[("SIP_PASSWORD", &Kamailio::password_for("1001"))],
        &[&kam],
    );
    ran.assert_exit(0);
    assert!(
        ran.printed.contains("registered sips:1001@127.0.0.1 at"),
        "{}",
        ran.shown
    );
    assert!(ran.printed.contains("TLS handshake with"), "{}", ran.shown);
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(
        traced.contains("REGISTER sips:127.0.0.1 SIP/2.0"),
        "{traced}"
    );
    assert!(traced.contains("To: <sips:1001@127.0.0.1>"), "{traced}");
    let bindings = kam.bindings("1001");
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert!(
        bindings[0].starts_with("sips:1001@127.0.0.1:"),
        "{bindings:?}"
    );
    assert!(
        kam.log()
            .lines()
            .any(|l| l.contains("REQ REGISTER sips:127.0.0.1 from tls:")),
        "{}",
        kam.log()
    );
}

#[test]
fn a_scenario_of_sips_addresses_registers_and_calls_through_kamailio_over_tls() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1"], 2)
        .expect("server certificate");
    let roles = pki
        .issue("roles", &["IP:127.0.0.1"], 2)
        .expect("roles' certificate");
    let kam = kamailio_tls(&certs);
    let dir = RunDir::new("tls-sips-run").unwrap();
    let trace = dir.join("run.trace");
    kam.run_over(
        "tls",
        "tests/peers/scenarios/kamailio-sips.yaml",
        &[
            "--ca",
            pki.ca.to_str().unwrap(),
            "--cert",
            roles.cert.to_str().unwrap(),
            "--key",
            roles.key.to_str().unwrap(),
            "--trace-sip",
            trace.to_str().unwrap(),
        ],
    );
    let log = kam.log();
    assert!(
        log.contains("REQ REGISTER sips:sipcheck.test from tls:"),
        "{log}"
    );
    assert!(
        log.contains("REQ INVITE sips:3700@sipcheck.test from tls:")
            || log.contains("REQ INVITE sips:3701@sipcheck.test from tls:"),
        "{log}"
    );
    // Every Contact the roles sent is sips: — the REGISTERs', the callers' INVITEs' and the
    // callees' answers' (the INVITE Kamailio delivered named their sips: Contact).
    let traced = std::fs::read_to_string(&trace).unwrap();
    let sent_contacts: Vec<&str> = traced
        .split("\n----- ")
        .filter(|m| m.contains(" sent "))
        .flat_map(|m| m.lines().filter(|l| l.starts_with("Contact:")))
        .collect();
    // 4 REGISTERs, 4 INVITEs, 4 answers (180 and 200) at least.
    assert!(sent_contacts.len() >= 12, "{sent_contacts:#?}");
    for c in &sent_contacts {
        assert!(c.starts_with("Contact: <sips:"), "{c}\n{sent_contacts:#?}");
    }
    assert!(
        traced.contains("SIP/2.0 200 OK") && traced.contains("From: <sips:370"),
        "{traced}"
    );
}

/// A TLS caller that sends an INVITE whose Contact names a port of its own where it accepts
/// TCP but speaks no TLS, ACKs the 200 OK and closes its connection: the callee's BYE must
/// open a new connection to that Contact, whose TLS handshake fails.
const GONE_CALLER: &str = r#"
import re, socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
plain = socket.socket()
plain.bind(("127.0.0.1", 0))
plain.listen(1)
contact_port = plain.getsockname()[1]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection((host, port)))
here = "%s:%d" % s.getsockname()[:2]
sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
def request(method, uri, cseq, extra, body=""):
    return ("%s %s SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bK-gone-%s\r\nMax-Forwards: 70\r\n"
            "From: <sip:gone@127.0.0.1>;tag=gone1\r\n%s\r\nCall-ID: gone-caller-1\r\n"
            "CSeq: %d %s\r\n%sContent-Length: %d\r\n\r\n%s"
            % (method, uri, here, method, extra["to"], cseq, method, extra.get("more", ""),
               len(body), body)).encode()
uri = "sip:2001@%s:%d;transport=tls" % (host, port)
s.sendall(request("INVITE", uri, 1, {
    "to": "To: <sip:2001@%s:%d>" % (host, port),
    "more": "Contact: <sip:gone@127.0.0.1:%d;transport=tls>\r\n"
            "Content-Type: application/sdp\r\n" % contact_port}, sdp))
buf = b""
while True:
    at = buf.find(b"SIP/2.0 200")
    if at >= 0 and b"\r\n\r\n" in buf[at:]:
        break
    data = s.recv(65536)
    if not data:
        sys.exit("closed before the 200 OK: %r" % buf)
    buf += data
ok = buf[at:].decode()
to = re.search(r"^To:[^\r\n]*", ok, re.M | re.I).group(0)
target = re.search(r"^Contact:\s*<([^>]+)>", ok, re.M | re.I).group(1)
s.sendall(request("ACK", target, 1, {"to": to}))
s.close()
plain.settimeout(10)
conn, _ = plain.accept()
conn.recv(1024)
conn.close()
print("handshake refused")
"#;

#[test]
fn a_bye_that_cannot_reach_a_tls_caller_fails_that_call_and_answer_goes_on() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("answer", &["IP:127.0.0.1"], 2)
        .expect("responder certificate");
    let (cert, key, ca) = (
        certs.cert.to_str().unwrap(),
        certs.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut answer = Responder::start(
        &[
            "--transport",
            "tls",
            "--listen",
            &listen,
            "--cert",
            cert,
            "--key",
            key,
            "--duration",
            "500ms",
            "--calls",
            "2",
        ],
        &[],
    );
    // The first caller's Contact takes the BYE's connection but not its TLS handshake.
    let gone = std::process::Command::new("python3")
        .args(["-c", GONE_CALLER, "127.0.0.1", &port.to_string()])
        .output()
        .expect("python3");
    let shown = format!("{}\n{}", text(&gone), answer.output());
    assert!(gone.status.success(), "{shown}");
    assert!(text(&gone).contains("handshake refused"), "{shown}");
    // `answer` is still there: a second call over TLS is answered.
    let out = run_sipcheck(
        [
            "call",
            &format!("sip:2001@{listen}"),
            "--transport",
            "tls",
            "--ca",
            ca,
            "--duration",
            "3s",
        ],
        &[],
    );
    let code = answer.wait_exit(Duration::from_secs(20));
    let shown = format!("{}\n{}", text(&out), answer.output());
    // One call failed (its BYE could not go): exit 1, after both calls, not at the first.
    assert_eq!(code, Some(1), "{shown}");
    let stdout = answer.stdout();
    assert!(
        stdout.contains("gone-caller-1") || stdout.contains("FAIL"),
        "{shown}"
    );
    assert_eq!(
        stdout.matches("-- PASS").count() + stdout.matches("-- FAIL").count(),
        2,
        "{shown}"
    );
    // The failed call names what failed; `answer` itself did not stop on an error.
    assert!(
        stdout.contains("transport error: TLS handshake with 127.0.0.1:"),
        "{shown}"
    );
    assert!(!shown.contains("sipcheck: error: "), "{shown}");
}

/// A scenario's INVITE whose TLS connection cannot be opened (its TCP connect works, the
/// handshake fails: a certificate no one trusts) fails its call at once, naming the
/// certificate, not after Timer B's 32 s.
#[test]
fn a_scenario_call_whose_tls_handshake_fails_ends_at_once_naming_the_certificate() {
    let pki = Pki::new().expect("test CA");
    let issued = pki.issue("issued", &["IP:127.0.0.1"], 2).unwrap();
    let server = MisbehavingServer::start(&issued, Misbehaviour::Garbage).unwrap();
    let dir = RunDir::new("tls-handshake-fails").unwrap();
    let scenario = dir.join("scenario.yaml");
    std::fs::write(
        &scenario,
        format!(
            r#"name: tls-handshake-fails
target:
  direct: true
  domain: 127.0.0.1
  transport: tls
accounts:
  range: {{ from: 3900, count: 1 }}
media:
  rtp: false
roles:
  caller:
    accounts: "3900"
    steps:
      - call: {{ to: "sip:echo@{addr}", timeout: 40s }}
      - hangup: {{ after: 1s }}
load: {{ rate: 1/s, total_calls: 1 }}
"#,
            addr = server.addr
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = run_sipcheck_with_timeout(
        ["run", scenario.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    let took = started.elapsed();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("transport error: TLS handshake with 127.0.0.1:")
            && shown.contains("certificate is not trusted"),
        "{shown}"
    );
    assert!(!shown.contains("Timer B"), "{shown}");
    assert!(took < Duration::from_secs(20), "took {took:?}\n{shown}");
}

/// An OPTIONS written in the same write as the client's Finished (the handshake's last
/// flight and the first application record in one TCP segment), on connection `n`.
fn options_with_the_finished(
    to: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
    n: usize,
) -> (std::net::TcpStream, rustls::ClientConnection) {
    use std::io::Write as _;
    let mut tcp = std::net::TcpStream::connect(to).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let from = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
    let mut conn = rustls::ClientConnection::new(config.clone(), name).expect("client");
    // The handshake, up to what would complete it: the Finished is left unwritten.
    while conn.is_handshaking() {
        if conn.wants_write() {
            conn.write_tls(&mut tcp).expect("write the handshake");
        } else {
            assert!(
                conn.read_tls(&mut tcp).expect("read the handshake") > 0,
                "closed"
            );
            conn.process_new_packets().expect("handshake");
        }
    }
    let options = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/TLS {from};branch=z9hG4bKfin{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{from}>;tag=f{n}\r\nTo: <sip:{to}>\r\n\
         Call-ID: finished-{n}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    conn.writer().write_all(options.as_bytes()).unwrap();
    // Finished and OPTIONS, one vectored write.
    while conn.wants_write() {
        conn.write_tls(&mut tcp)
            .expect("write Finished and OPTIONS");
    }
    (tcp, conn)
}

/// A TLS server's reading of the first application data when it came in the same segment as
/// the handshake's end (whatever rustls holds decrypted once the handshake is done must be
/// read without waiting for more bytes from the socket): twenty connections opened at once
/// to `answer`, each sending its Finished and an OPTIONS in one write, each answered 200.
#[test]
fn requests_sent_with_the_clients_finished_are_answered_over_many_tls_connections() {
    use rustls::pki_types::pem::PemObject as _;
    use std::io::Read as _;
    const CONNECTIONS: usize = 20;
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("answer", &["IP:127.0.0.1"], 2)
        .expect("responder certificate");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let answer = Responder::start(
        &[
            "--transport",
            "tls",
            "--listen",
            &listen,
            "--cert",
            certs.cert.to_str().unwrap(),
            "--key",
            certs.key.to_str().unwrap(),
        ],
        &[],
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let to: std::net::SocketAddr = listen.parse().unwrap();
    let mut open: Vec<_> = (0..CONNECTIONS)
        .map(|n| options_with_the_finished(to, &config, n))
        .collect();
    for (n, (tcp, conn)) in open.iter_mut().enumerate() {
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read_tls(tcp) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("connection {n}: no response ({e})\n{}", answer.output()),
            }
            conn.process_new_packets().expect("records");
            let _ = conn.reader().read_to_end(&mut got);
        }
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("SIP/2.0 200") && got.contains(&format!("finished-{n}@test")),
            "connection {n}: {got}\n{}",
            answer.output()
        );
    }
}
