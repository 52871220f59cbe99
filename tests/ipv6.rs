//! sipcheck over IPv6 loopback (`::1`) against real peers: SIPp's stock `uas` and `uac`
//! scenarios, and a Kamailio listening on `[::1]` (registrar and proxy). Every URI we write
//! has its IPv6 host in brackets; SIPp's `IN IP6 [::1]` in SDP is accepted.

mod support;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOptions};
use support::responder::Responder;
use support::sip::{first_line, header};
use support::sipp::Sipp;
use support::{describe_output, free_port, run_sipcheck};

fn v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)
}

#[test]
fn call_to_sipp_uas_over_ipv6_passes_with_bracketed_uris() {
    let sipp = Sipp::start_builtin_uas_at(v6(free_port()), &[], true).expect("start sipp");
    let uri = format!("sip:x@[::1]:{}", sipp.port);
    // No --user: the From is sipcheck@ our own address, which must be written [::1].
    let out = run_sipcheck(
        ["call", &uri, "--duration", "1s", "--no-media-ok", "--json"],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        sipp.messages(),
        sipp.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let received = sipp.received();
    let lines: Vec<&str> = received.iter().map(|m| first_line(m)).collect();
    assert!(lines[0].starts_with("INVITE "), "{shown}");
    assert!(lines.iter().any(|l| l.starts_with("ACK ")), "{shown}");
    assert!(lines.iter().any(|l| l.starts_with("BYE ")), "{shown}");
    let invite = &received[0];
    let from = header(invite, "From").expect("From");
    assert!(from.contains("<sip:sipcheck@[::1]>"), "{from}\n{shown}");
    let contact = header(invite, "Contact").expect("Contact");
    assert!(contact.contains("@[::1]:"), "{contact}\n{shown}");
    let via = header(invite, "Via").expect("Via");
    assert!(via.contains("SIP/2.0/UDP [::1]:"), "{via}\n{shown}");
}

#[test]
fn sipp_uac_over_ipv6_calls_the_responder() {
    let sipp_bin = support::process::require_program("sipp", "sip-tester").expect("sipp");
    let listen = v6(free_port()).to_string();
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--calls",
            "1",
            "--no-media-ok",
            "--json",
        ],
        &[],
    );
    // SIPp's uac writes `o=... IN IP6 [::1]` in its offer.
    let mut cmd = std::process::Command::new(sipp_bin);
    cmd.args(["-sn", "uac", &listen, "-i", "::1", "-mi", "::1", "-m", "1"])
        .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
        .arg("-p")
        .arg(free_port().to_string())
        .current_dir(answer.dir());
    let out = support::process::run_with_timeout(cmd, Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("sipp uac did not finish\n{}", answer.output()));
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "sipp's call failed\n{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let stdout = answer.stdout();
    let call = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "call")
        .unwrap_or_else(|| panic!("no call reported\n{shown}"));
    assert_eq!(call["verdict"], "pass", "{shown}");
    assert!(
        call["from"].as_str().unwrap_or_default().contains("[::1]"),
        "{shown}"
    );
}

fn kamailio_v6() -> Kamailio {
    Kamailio::start_with(&KamailioOptions {
        ipv6: true,
        no_proxy_auth: true,
        ..KamailioOptions::default()
    })
    .expect("start kamailio on [::1]")
}

#[test]
fn register_with_kamailio_over_ipv6() {
    let kam = kamailio_v6();
    let server = kam.addr.to_string();
    let out = run_sipcheck(
        [
            "register",
            "--server",
            &server,
            "--user",
            "1201",
            "--expires",
            "300",
            "--keep",
        ],
        &[("SIP_PASSWORD", Kamailio::password_for("1201").as_str())],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("registered sip:1201@[::1]"),
        "{shown}"
    );
    let bindings = kam.bindings("1201");
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{shown}");
    assert!(bindings[0].contains("@[::1]:"), "{bindings:?}");
}

#[test]
fn call_through_kamailio_over_ipv6_to_a_registered_responder() {
    let kam = kamailio_v6();
    let server = kam.addr.to_string();
    let listen = v6(free_port()).to_string();
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--server",
            &server,
            "--user",
            "2201",
            "--play-tone",
            "700",
            "--expect-tone",
            "500",
            "--calls",
            "1",
        ],
        &[("SIP_PASSWORD", Kamailio::password_for("2201").as_str())],
    );
    assert_eq!(kam.bindings("2201").len(), 1, "{}", answer.output());
    let out = run_sipcheck(
        [
            "call",
            "sip:2201@[::1]",
            "--server",
            &server,
            "--user",
            "1201",
            "--play-tone",
            "500",
            "--expect-tone",
            "700",
            "--duration",
            "1s",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        answer.output(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["media"]["tones"][0]["detected"], true, "{shown}");
    assert!(
        v["media"]["remote"].as_str().unwrap().starts_with("[::1]:"),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{shown}"
    );
}
