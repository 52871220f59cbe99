//! SIP over WebSocket (RFC 7118) against a real Kamailio (its `websocket` and `xhttp`
//! modules) on loopback: `options` over WS and WSS (certificates made at test time, verified
//! by `--ca`), `register` with digest auth over WS and over WSS, a call over WS and one over
//! WSS through Kamailio to a responder registered over the same transport (tones heard both
//! ways); a server that grants no `sip`
//! subprotocol, a resource that is not a WebSocket endpoint and a peer that speaks no HTTP
//! each fail naming the problem.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOptions};
use support::responder::call_straight_over;
use support::tls::Pki;
use support::{describe_output as text, run_against, run_sipcheck};

fn kamailio_ws(path: &str) -> Kamailio {
    Kamailio::start_with(&KamailioOptions {
        ws_path: Some(path.into()),
        ..KamailioOptions::default()
    })
    .expect("start kamailio with websocket")
}

fn ws_port(kam: &Kamailio) -> u16 {
    kam.ws_port.expect("a WebSocket port")
}

/// The lines of a probe's JSON ladder.
fn ladder(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["ladder"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| r["line"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn options_and_register_with_digest_auth_over_ws_to_kamailio() {
    let kam = kamailio_ws("/sip");
    let port = ws_port(&kam);

    // `transport=ws` in the URI selects WebSocket; the resource is --ws-path.
    let ran = run_against(
        [
            "options",
            &format!("sip:127.0.0.1:{port};transport=ws"),
            "--ws-path",
            "/sip",
            "--timeout",
            "5s",
            "-v",
        ],
        &[],
        &[&kam],
    );
    ran.assert_exit(0);
    let shown = &ran.printed;
    assert!(shown.contains("200"), "{shown}");
    // RFC 7118 §5: the Via names WS.
    assert!(shown.contains("SIP/2.0/WS "), "{shown}");
    // The upgrade's time is shown; there is no TLS handshake.
    assert!(
        shown.contains(&format!("WebSocket handshake with 127.0.0.1:{port} in ")),
        "{shown}"
    );
    assert!(!shown.contains("TLS handshake"), "{shown}");
    assert!(
        kam.log().contains("REQ OPTIONS") && kam.log().contains("from ws:127.0.0.1:"),
        "Kamailio took it over WebSocket\n{}",
        kam.log()
    );

    // Another resource is no WebSocket endpoint: Kamailio answers 404, named.
    let out = run_sipcheck(
        [
            "options",
            &format!("sip:127.0.0.1:{port}"),
            "--transport",
            "ws",
            "--timeout",
            "5s",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("WebSocket handshake with 127.0.0.1:")
            && shown.contains("answered the WebSocket handshake with HTTP 404"),
        "{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");

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
            "ws",
            "--ws-path",
            "/sip",
            "--keep",
            "--timeout",
            "5s",
            "--json",
        ],
        &[("SIP_PASSWORD", &Kamailio::password_for(user))],
        &[&kam],
    );
    ran.assert_exit(0);
    let lines = ladder(&ran.out);
    assert!(
        lines.iter().any(|l| l.contains("401")),
        "the digest challenge is in the ladder\n{}",
        ran.shown
    );
    let bindings = kam.bindings(user);
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{}", ran.shown);
    assert!(
        bindings[0].contains("transport=ws"),
        "the Contact names WS: {bindings:?}"
    );

    // A wrong password is still a failure over WebSocket.
    let out = run_sipcheck(
        [
            "register",
            "--server",
            &server,
            "--user",
            "1002",
            "--transport",
            "ws",
            "--ws-path",
            "/sip",
            "--timeout",
            "5s",
        ],
        &[("SIP_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn options_over_wss_to_kamailio_verified_by_the_ca() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1", "DNS:localhost"], 2)
        .expect("server certificate");
    let kam = Kamailio::start_with(&KamailioOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ws_path: Some("/".into()),
        ..KamailioOptions::default()
    })
    .expect("start kamailio with tls and websocket");
    let port = kam.tls_port.expect("a TLS port");
    let ca = pki.ca.to_str().unwrap();

    let ran = run_against(
        [
            "options",
            &format!("sip:127.0.0.1:{port};transport=wss"),
            "--ca",
            ca,
            "--timeout",
            "5s",
            "-v",
        ],
        &[],
        &[&kam],
    );
    ran.assert_exit(0);
    let shown = &ran.printed;
    assert!(shown.contains("SIP/2.0/WSS "), "{shown}");
    assert!(!shown.contains("warning"), "{shown}");
    let out = run_sipcheck(
        [
            "options",
            &format!("sip:127.0.0.1:{port};transport=wss"),
            "--ca",
            ca,
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (tls, ws) = (
        v["tls_handshake_ms"].as_f64().unwrap(),
        v["ws_handshake_ms"].as_f64().unwrap(),
    );
    // Both from the TCP connect: the upgrade ends after the TLS handshake.
    assert!(tls > 0.0 && ws >= tls, "{v}");
    assert!(
        kam.log().contains("from wss:127.0.0.1:"),
        "Kamailio took it over secure WebSocket\n{}",
        kam.log()
    );

    // Without the CA the certificate is refused, as over TLS.
    let out = run_sipcheck(
        [
            "options",
            &format!("sip:127.0.0.1:{port};transport=wss"),
            "--timeout",
            "5s",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("TLS handshake") && shown.contains("not trusted"),
        "{shown}"
    );
}

#[test]
fn a_call_over_ws_through_kamailio_to_a_responder_registered_over_ws_is_heard_both_ways() {
    let kam = kamailio_ws("/");
    kam.call_over("ws", &[], &["--duration", "1s"]);
    // Both legs went over WebSocket connections (the INVITE to the responder over the
    // one its REGISTER opened: RFC 7118 §5.2).
    let log = kam.log();
    assert!(
        log.contains("REQ INVITE") && log.contains("from ws:"),
        "{log}"
    );
}

/// A WebSocket server that grants no subprotocol, for one connection.
fn websocket_server_without_sip() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let Ok(Ok((tcp, _))) =
                tokio::time::timeout(Duration::from_secs(10), listener.accept()).await
            else {
                return;
            };
            let _ws = tokio_tungstenite::accept_async(tcp).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
    });
    (port, thread)
}

#[test]
fn a_server_without_the_sip_subprotocol_or_without_websocket_fails_naming_the_problem() {
    let (port, server) = websocket_server_without_sip();
    let out = run_sipcheck(
        [
            "options",
            &format!("sip:127.0.0.1:{port};transport=ws"),
            "--timeout",
            "5s",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("did not accept the sip subprotocol"),
        "{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");
    server.join().unwrap();

    // A peer that answers the handshake with a SIP response: no HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2048];
        let _ = tcp.read(&mut buf);
        let _ = tcp.write_all(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let out = run_sipcheck(
        [
            "register",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--user",
            "1001",
            "--transport",
            "ws",
            "--timeout",
            "5s",
        ],
        &[("SIP_PASSWORD", "x")],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("WebSocket handshake") && shown.contains("answered no HTTP"),
        "{shown}"
    );
    assert!(!shown.contains("panicked"), "{shown}");
    peer.join().unwrap();
}

#[test]
fn a_scenario_over_ws_registers_and_calls_through_kamailio_both_ways_heard() {
    let kam = kamailio_ws("/sip");
    let ran = kam.run_over("ws", "tests/peers/scenarios/kamailio-ws.yaml", &[]);
    let log = kam.log();
    assert!(
        log.contains("REQ REGISTER sip:sipcheck.test from ws:"),
        "{log}"
    );
    let v = &ran.summary;
    // Each connection's WebSocket handshake is timed; no TLS was shaken.
    let handshakes = &v["metrics"]["ws_handshake"];
    assert!(handshakes["count"].as_u64().unwrap_or(0) >= 4, "{v}");
    assert!(handshakes["p50_ms"].as_f64().unwrap_or(-1.0) > 0.0, "{v}");
    assert_eq!(v["metrics"]["tls_handshake"]["count"], 0, "{v}");
}

#[test]
fn a_call_straight_to_answer_over_ws_and_over_wss_is_heard_both_ways() {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("answer", &["IP:127.0.0.1"], 2)
        .expect("responder certificate");
    let (cert, key, ca) = (
        certs.cert.to_str().unwrap(),
        certs.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    for transport in ["ws", "wss"] {
        let cert = (transport == "wss").then_some((cert, key));
        let ran = call_straight_over(transport, cert, |listen| {
            [
                &format!("sip:2001@{listen};transport={transport}"),
                "--ca",
                ca,
                "--duration",
                "1s",
                "-v",
            ]
            .map(str::to_owned)
            .to_vec()
        });
        let via = format!("SIP/2.0/{} ", transport.to_uppercase());
        assert!(ran.printed.contains(&via), "{via}\n{}", ran.shown);
    }

    // Over WSS with neither a registrar nor a certificate, `answer` refuses to start.
    let out = run_sipcheck(
        ["answer", "--transport", "wss", "--listen", "127.0.0.1:0"],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("--cert"), "{shown}");
}

/// Kamailio taking SIP over TLS and over WSS on its TLS port, with a certificate for
/// 127.0.0.1 issued by a test CA (returned, to give `--ca`).
fn kamailio_wss() -> (Kamailio, Pki) {
    let pki = Pki::new().expect("test CA");
    let certs = pki
        .issue("kamailio", &["IP:127.0.0.1", "DNS:localhost"], 2)
        .expect("server certificate");
    let kam = Kamailio::start_with(&KamailioOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ws_path: Some("/".into()),
        ..KamailioOptions::default()
    })
    .expect("start kamailio with tls and websocket");
    (kam, pki)
}

#[test]
fn register_with_digest_auth_over_wss_to_kamailio_and_a_wrong_password_fails() {
    let (kam, pki) = kamailio_wss();
    let server = format!("127.0.0.1:{}", kam.tls_port.expect("a TLS port"));
    let ca = pki.ca.to_str().unwrap();
    let register = |user: &str, password: &str| {
        run_against(
            [
                "register",
                "--server",
                &server,
                "--user",
                user,
                "--transport",
                "wss",
                "--ca",
                ca,
                "--keep",
                "--timeout",
                "5s",
                "--json",
            ],
            &[("SIP_PASSWORD", password)],
            &[&kam],
        )
    };
    let ran = register("1001", &Kamailio::password_for("1001"));
    let shown = &ran.shown;
    ran.assert_exit(0);
    assert!(
        ladder(&ran.out).iter().any(|l| l.contains("401")),
        "the digest challenge is in the ladder\n{shown}"
    );
    assert_eq!(ran.json()["verdict"], "pass", "{shown}");
    let bindings = kam.bindings("1001");
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{shown}");
    assert!(
        bindings[0].contains("transport=wss"),
        "the Contact names WSS: {bindings:?}"
    );
    assert!(
        kam.log()
            .lines()
            .any(|l| l.contains("REQ REGISTER") && l.contains("from wss:127.0.0.1:")),
        "Kamailio took it over secure WebSocket\n{shown}"
    );
    assert!(
        !ran.printed.contains("warning"),
        "verified, not --insecure: {shown}"
    );

    // A wrong password: challenged again, the registration fails, nothing is bound.
    let ran = register("1002", "wrong");
    let shown = &ran.shown;
    ran.assert_exit(1);
    let v = ran.json();
    assert_eq!(v["verdict"], "fail", "{shown}");
    assert_eq!(v["status"], 401, "{shown}");
    assert!(kam.bindings("1002").is_empty(), "{shown}");
}

#[test]
fn a_call_over_wss_through_kamailio_to_a_responder_registered_over_wss_is_heard_both_ways() {
    let (kam, pki) = kamailio_wss();
    let ca = pki.ca.to_str().unwrap();
    let ran = kam.call_over(
        "wss",
        &["--ca", ca],
        &["--ca", ca, "--duration", "1s", "-v"],
    );
    assert!(ran.printed.contains("SIP/2.0/WSS "), "{}", ran.shown);
    assert_eq!(ran.json()["verdict"], "pass", "{}", ran.shown);
    // Both legs over secure WebSocket: the INVITE came in over wss, and went to the
    // responder over the connection its REGISTER opened (RFC 7118 §5.2).
    let log = kam.log();
    assert!(
        log.lines()
            .any(|l| l.contains("REQ INVITE") && l.contains("from wss:")),
        "{log}"
    );
    let not_wss = kam.requests_not_over("wss");
    assert!(not_wss.is_empty(), "{not_wss:#?}\n{log}");
}
