//! Requests within a dialog go to its next hop (RFC 3261 §12.2.1.1, §8.1.2): the far end's
//! Contact when nothing record-routed, not where the INVITE went. Against two SIPp instances
//! (a 200 whose Contact is the other one) and a Kamailio that does not record-route, with
//! `sipcheck answer` or baresip behind it.

mod support;

use std::process::Output;
use std::time::Duration;

use support::baresip::{Baresip, BaresipOptions, BaresipRegistrar};
use support::kamailio::{Kamailio, KamailioOptions};
use support::responder::Responder;
use support::sip::first_line;
use support::sipp::Sipp;
use support::{describe_output, free_port, run_sipcheck};

/// The JSON report of a `sipcheck call --json`.
fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", describe_output(out)))
}

/// `(direction, peer, first line)` of every rung of the report's ladder.
fn ladder(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["ladder"]
        .as_array()
        .expect("a ladder")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("direction"), s("peer"), s("line"))
        })
        .collect()
}

/// The peers a request line starting with `method ` was sent to.
fn sent_to(ladder: &[(String, String, String)], method: &str) -> Vec<String> {
    ladder
        .iter()
        .filter(|(dir, _, line)| dir == "sent" && line.starts_with(&format!("{method} ")))
        .map(|(_, peer, _)| peer.clone())
        .collect()
}

/// sipcheck calls a SIPp whose 200 names another SIPp as Contact, over `transport`
/// (`udp`, or `tcp`: a connection of its own to the second instance).
fn ack_and_bye_go_to_the_contact_of_the_200(transport: &str) {
    let mode = if transport == "tcp" { "t1" } else { "u1" };
    let dialog = Sipp::start_uas("uas_dialog_elsewhere.xml", &["-t", mode]).expect("start sipp");
    let other_port = dialog.port.to_string();
    let invite = Sipp::start_uas(
        "uas_contact_elsewhere.xml",
        &[
            "-key",
            "other_port",
            &other_port,
            "-mi",
            "127.0.0.1",
            "-t",
            mode,
        ],
    )
    .expect("start sipp");
    let uri = format!("sip:x@127.0.0.1:{}", invite.port);
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--transport",
            transport,
            "--duration",
            "1s",
            "--no-media-ok",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n--- sipp (INVITE) ---\n{}\n{}\n--- sipp (dialog) ---\n{}\n{}",
        describe_output(&out),
        invite.messages(),
        invite.log(),
        dialog.messages(),
        dialog.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    // Where they arrived, as SIPp saw them: the INVITE at the first, ACK and BYE at the
    // instance the 200's Contact names.
    let at_invite: Vec<String> = invite
        .received()
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert_eq!(at_invite.len(), 1, "{at_invite:?}\n{shown}");
    assert!(at_invite[0].starts_with("INVITE "), "{shown}");
    let at_dialog: Vec<String> = dialog
        .received()
        .iter()
        .map(|m| first_line(m).to_string())
        .collect();
    assert_eq!(at_dialog.len(), 2, "{at_dialog:?}\n{shown}");
    assert!(
        at_dialog[0].starts_with(&format!("ACK sip:elsewhere@127.0.0.1:{other_port}")),
        "{shown}"
    );
    assert!(
        at_dialog[1].starts_with(&format!("BYE sip:elsewhere@127.0.0.1:{other_port}")),
        "{shown}"
    );
    let v = report(&out);
    assert!(v["timings"]["bye_rtt_ms"].is_number(), "{shown}");
}

#[test]
fn the_ack_and_bye_go_to_the_contact_of_the_200_not_to_the_sipp_that_sent_it() {
    ack_and_bye_go_to_the_contact_of_the_200("udp");
}

#[test]
fn over_tcp_the_ack_and_bye_open_a_connection_to_the_contact_of_the_200() {
    ack_and_bye_go_to_the_contact_of_the_200("tcp");
}

/// Kamailio without Record-Route, a responder registered with it, and its user.
fn proxy_and_responder(user: &str, extra: &[&str]) -> (Kamailio, Responder, String, String) {
    proxy_and_responder_with(false, user, extra)
}

/// Kamailio (record-routing or not), a responder registered with it as `user`, the
/// proxy's address and the responder's.
fn proxy_and_responder_with(
    record_route: bool,
    user: &str,
    extra: &[&str],
) -> (Kamailio, Responder, String, String) {
    let kam = Kamailio::start_with(&KamailioOptions {
        no_record_route: !record_route,
        no_proxy_auth: true,
        ..KamailioOptions::default()
    })
    .expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let listen = format!("127.0.0.1:{}", free_port());
    let password = Kamailio::password_for(user);
    let mut args = vec![
        "--listen", &listen, "--server", &server, "--user", user, "--calls", "1",
    ];
    args.extend_from_slice(extra);
    let answer = Responder::start(&args, &[("SIP_PASSWORD", password.as_str())]);
    assert_eq!(kam.bindings(user).len(), 1, "{}", answer.output());
    (kam, answer, server, listen)
}

#[test]
fn through_a_proxy_that_does_not_record_route_ack_and_bye_reach_the_callee() {
    let (kam, mut answer, server, listen) = proxy_and_responder("2101", &[]);
    let out = run_sipcheck(
        [
            "call",
            "sip:2101@127.0.0.1",
            "--server",
            &server,
            "--user",
            "1101",
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
    let rungs = ladder(&report(&out));
    assert_eq!(sent_to(&rungs, "INVITE"), [server.as_str()], "{shown}");
    // Kamailio stayed out of the dialog: ACK and BYE went to the callee's Contact, and
    // the BYE's 200 came from there.
    assert_eq!(sent_to(&rungs, "ACK"), [listen.as_str()], "{shown}");
    assert_eq!(sent_to(&rungs, "BYE"), [listen.as_str()], "{shown}");
    assert!(
        rungs.iter().any(|(dir, peer, line)| dir == "received"
            && *peer == listen
            && line.starts_with("SIP/2.0 200")),
        "{shown}"
    );
    // The callee got its ACK (else it would end the call for want of one) and the BYE.
    assert_eq!(
        answer.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{shown}"
    );
    assert!(
        answer.stdout().contains("hung up by the far end"),
        "{shown}"
    );
}

/// The same with baresip as the callee, registered with the proxy: the ACK and the BYE go
/// straight to baresip's Contact (sipcheck's own ladder says where each went), the BYE is
/// answered 200 there, baresip's 600 Hz is heard, and baresip saw the call set up and closed.
#[test]
fn through_a_proxy_that_does_not_record_route_ack_and_bye_reach_baresip() {
    let kam = Kamailio::start_with(&KamailioOptions {
        no_record_route: true,
        no_proxy_auth: true,
        ..KamailioOptions::default()
    })
    .expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let user = "2111";
    let baresip = Baresip::start(BaresipOptions {
        registrar: Some(BaresipRegistrar {
            user: user.to_owned(),
            server: server.clone(),
            password: Kamailio::password_for(user),
        }),
        ..BaresipOptions::default()
    })
    .expect("start baresip");
    let registered =
        support::process::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            kam.bindings(user).len() == 1
        });
    assert!(registered, "baresip did not register\n{}", baresip.log());
    let contact = baresip.addr.to_string();
    let out = run_sipcheck(
        [
            "call",
            &format!("sip:{user}@127.0.0.1"),
            "--server",
            &server,
            "--user",
            "1111",
            "--duration",
            "2s",
            "--expect-tone",
            "600",
            "--json",
        ],
        &[],
    );
    let shown = format!(
        "{}\n{}\n{}",
        describe_output(&out),
        baresip.log(),
        kam.log()
    );
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = report(&out);
    assert_eq!(v["bye_code"], 200, "{shown}");
    let rungs = ladder(&v);
    assert_eq!(sent_to(&rungs, "INVITE"), [server.as_str()], "{shown}");
    assert_eq!(sent_to(&rungs, "ACK"), [contact.as_str()], "{shown}");
    assert_eq!(sent_to(&rungs, "BYE"), [contact.as_str()], "{shown}");
    // baresip saw the call established and closed by our BYE.
    baresip
        .wait_call_closed(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(baresip.calls_established(), 1, "{shown}");
}

#[test]
fn through_a_proxy_that_does_not_record_route_the_callee_s_bye_reaches_the_caller() {
    let (kam, mut answer, server, listen) = proxy_and_responder("2102", &["--duration", "1s"]);
    let out = run_sipcheck(
        [
            "call",
            "sip:2102@127.0.0.1",
            "--server",
            &server,
            "--user",
            "1102",
            "--duration",
            "10s",
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
    let v = report(&out);
    let rungs = ladder(&v);
    // The responder's BYE came straight from it (to our Contact), not through Kamailio.
    assert!(
        rungs.iter().any(|(dir, peer, line)| dir == "received"
            && *peer == listen
            && line.starts_with("BYE ")),
        "{shown}"
    );
    assert!(
        v["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("far end")),
        "{shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{shown}"
    );
    assert!(answer.stdout().contains("hung up locally"), "{shown}");
}

#[test]
fn through_a_record_routing_proxy_every_request_of_the_dialog_goes_through_it() {
    // The contrast: Kamailio record-routes, so the route set sends ACK and BYE to it, and
    // the responder's BYE (its route set is the Record-Route) comes back through it.
    let (kam, mut answer, server, listen) =
        proxy_and_responder_with(true, "2103", &["--duration", "1s"]);
    let out = run_sipcheck(
        [
            "call",
            "sip:2103@127.0.0.1",
            "--server",
            &server,
            "--user",
            "1103",
            "--duration",
            "10s",
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
    let rungs = ladder(&report(&out));
    assert_eq!(sent_to(&rungs, "ACK"), [server.as_str()], "{shown}");
    assert!(
        rungs.iter().any(|(dir, peer, line)| dir == "received"
            && *peer == server
            && line.starts_with("BYE ")),
        "{shown}"
    );
    assert!(
        !rungs.iter().any(|(_, peer, _)| *peer == listen),
        "nothing goes end to end: {shown}"
    );
    assert_eq!(
        answer.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{shown}"
    );
}
