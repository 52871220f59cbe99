//! `sipcheck options` and `sipcheck register` against a real Kamailio (registrar with digest
//! auth) on loopback, over UDP and TCP.

mod support;

use std::process::Output;
use std::time::Duration;

use support::kamailio::Kamailio;
use support::run_sipcheck;

fn text(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn register(kam: &Kamailio, user: &str, password: &str, extra: &[&str]) -> Output {
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let mut args = vec![
        "register",
        "--server",
        &server,
        "--user",
        user,
        "--expires",
        "300",
    ];
    args.extend_from_slice(extra);
    run_sipcheck(args, &[("SIP_PASSWORD", password)])
}

fn register_over(transport: &str) {
    let kam = Kamailio::start().expect("start kamailio");
    let user = "1001";
    let out = register(
        &kam,
        user,
        &Kamailio::password_for(user),
        &["--transport", transport, "--keep"],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", kam.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The ladder: REGISTER, 401, REGISTER with credentials, 200.
    let lines: Vec<&str> = stdout.lines().collect();
    let pos = |needle: &str, from: usize| {
        lines[from..]
            .iter()
            .position(|l| l.contains(needle))
            .map(|p| p + from)
            .unwrap_or_else(|| panic!("{needle} missing after line {from}\n{shown}"))
    };
    let first = pos("--> ", 0);
    assert!(lines[first].contains("REGISTER sip:"), "{shown}");
    let challenge = pos("<-- ", first);
    assert!(lines[challenge].contains("401"), "{shown}");
    let second = pos("REGISTER sip:", challenge);
    let ok = pos("SIP/2.0 200", second);
    assert!(lines[ok].contains("<--"), "{shown}");
    assert!(stdout.contains("registered sip:1001@127.0.0.1"), "{shown}");
    assert!(stdout.contains("PASS"), "{shown}");

    // The registrar really holds our binding, and the 200 listed it.
    let bindings = kam.bindings(user);
    assert_eq!(bindings.len(), 1, "{bindings:?}\n{shown}");
    let binding = &bindings[0];
    assert!(
        stdout.contains(&format!("binding: {binding}")) || stdout.contains(binding.as_str()),
        "binding {binding} not printed\n{shown}"
    );
    if transport == "tcp" {
        assert!(binding.contains("transport=tcp"), "{binding}");
    }
}

#[test]
fn register_over_udp_answers_the_challenge_and_creates_the_binding() {
    register_over("udp");
}

#[test]
fn register_over_tcp_answers_the_challenge_and_creates_the_binding() {
    register_over("tcp");
}

#[test]
fn wrong_password_exits_1_and_names_the_rejection() {
    let kam = Kamailio::start().expect("start kamailio");
    let out = register(&kam, "1002", "not-the-password", &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL: credentials rejected"), "{shown}");
    // Answered once, not in a loop: exactly two REGISTERs went out.
    assert_eq!(stdout.matches("--> ").count(), 2, "{shown}");
    assert!(
        !shown.contains("not-the-password"),
        "password leaked\n{shown}"
    );
    assert!(kam.bindings("1002").is_empty());
}

#[test]
fn unregister_removes_the_binding() {
    let kam = Kamailio::start().expect("start kamailio");
    let user = "1003";
    let out = register(&kam, user, &Kamailio::password_for(user), &["--unregister"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unregistered in"),
        "{shown}"
    );
    assert!(kam.bindings(user).is_empty(), "{:?}", kam.bindings(user));
}

#[test]
fn json_output_is_one_object_without_the_password() {
    let kam = Kamailio::start().expect("start kamailio");
    let user = "1004";
    let password = Kamailio::password_for(user);
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let out = run_sipcheck(
        [
            "register", "--json", "-vv", "--server", &server, "--user", user, "--keep",
        ],
        &[("SIP_PASSWORD", password.as_str()), ("RUST_LOG", "trace")],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(!shown.contains(&password), "password leaked\n{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["command"], "register");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["status"], 200);
    assert!(v["rtt_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["ladder"].as_array().unwrap().len(), 4, "{shown}");
}

#[test]
fn options_is_answered_over_udp_and_tcp() {
    let kam = Kamailio::start().expect("start kamailio");
    for transport in ["udp", "tcp"] {
        let uri = format!("sip:127.0.0.1:{}", kam.sip_port);
        let out = run_sipcheck(["options", &uri, "--transport", transport], &[]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(0), "{transport}: {shown}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("200 OK from 127.0.0.1"), "{shown}");
        assert!(stdout.contains(" ms"), "{shown}");
    }
}

#[test]
fn options_via_outbound_proxy_keeps_the_request_uri() {
    let kam = Kamailio::start().expect("start kamailio");
    let proxy = format!("127.0.0.1:{}", kam.sip_port);
    // The Request-URI names the proxy's domain, but the packet goes to --proxy.
    let uri = format!("sip:127.0.0.1:{}", kam.sip_port);
    let out = run_sipcheck(["options", &uri, "--proxy", &proxy, "--json"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], uri);
    assert_eq!(v["server"], proxy);
}

#[test]
fn silent_peer_is_reported_as_timer_f_with_elapsed_time() {
    // A socket that receives and never answers (with nothing bound, ICMP port unreachable
    // would end the probe at once): with T1 = 10 ms Timer F fires at 640 ms.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let uri = format!("sip:127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = run_sipcheck(["options", &uri, "--t1", "10ms", "--t2", "40ms"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("Timer F expired after 0.6 s"), "{shown}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_2() {
    let cases: &[&[&str]] = &[
        &["options", "sip:a b@c"],
        &["options", "sip:x@no-such-host.invalid"],
        &["options", "sip:x@127.0.0.1:99999"],
    ];
    for args in cases {
        let out = run_sipcheck(args.iter().copied(), &[]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {shown}");
        assert!(stderr.starts_with("sipcheck: error: "), "{shown}");
        assert!(out.stdout.is_empty(), "{shown}");
    }
}

#[test]
fn a_local_port_in_use_is_exit_2() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = busy.local_addr().unwrap().to_string();
    let out = run_sipcheck(["options", "sip:127.0.0.1:5", "--local", &local], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("in use"), "{shown}");
}

#[test]
fn register_removes_its_binding_unless_keep() {
    let kam = Kamailio::start().expect("start kamailio");
    let user = "1006";
    let password = Kamailio::password_for(user);

    // By default: registered (the 200 lists the binding), then removed.
    let out = register(&kam, user, &password, &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("registered sip:1006@127.0.0.1"), "{shown}");
    assert!(stdout.contains("  binding: sip:1006@127.0.0.1:"), "{shown}");
    assert!(stdout.contains("unregistered in"), "{shown}");
    // REGISTER, 401, REGISTER, 200 and the removal after it.
    assert!(stdout.matches("--> ").count() >= 3, "{shown}");
    assert!(kam.bindings(user).is_empty(), "{:?}", kam.bindings(user));

    // --keep: the binding stays, and the output says so.
    let out = register(&kam, user, &password, &["--keep"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("binding kept (--keep): it expires in 300 s"),
        "{shown}"
    );
    assert!(!stdout.contains("unregistered in"), "{shown}");
    assert_eq!(kam.bindings(user).len(), 1, "{shown}");
}

#[test]
fn unregister_all_removes_the_bindings_of_other_contacts_too() {
    let kam = Kamailio::start().expect("start kamailio");
    let user = "1007";
    let password = Kamailio::password_for(user);
    // Two bindings from two local ports (two contacts), kept.
    for _ in 0..2 {
        let local = format!("127.0.0.1:{}", support::free_port());
        let out = register(&kam, user, &password, &["--keep", "--local", &local]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_eq!(kam.bindings(user).len(), 2, "{:?}", kam.bindings(user));

    // From a third contact: Contact: * with Expires: 0 removes them all.
    let out = register(&kam, user, &password, &["--unregister-all"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", kam.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("removed every binding of sip:1007@127.0.0.1"),
        "{shown}"
    );
    assert!(
        !stdout.contains("registered sip:"),
        "nothing registered\n{shown}"
    );
    assert!(kam.bindings(user).is_empty(), "{:?}", kam.bindings(user));
}

#[test]
fn a_challenge_without_a_password_is_named_and_register_and_answer_exit_alike() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let expected = "401 challenge but no password given (--password or SIP_PASSWORD)";

    let out = run_sipcheck(["register", "--server", &server, "--user", "1008"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("FAIL: {expected}")),
        "{shown}"
    );
    // One REGISTER, its challenge, and no second attempt.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("--> ").count(),
        1,
        "{shown}"
    );

    let listen = format!("127.0.0.1:{}", support::free_port());
    let out = run_sipcheck(
        [
            "answer", "--listen", &listen, "--server", &server, "--user", "1008",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(expected),
        "{shown}"
    );

    // A call challenged (407) with no password given says so too.
    let out = run_sipcheck(
        [
            "call",
            "sip:2001@127.0.0.1",
            "--server",
            &server,
            "--user",
            "1008",
            "--rtp-ports",
            "30000-39999",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "challenged with 407 Proxy Authentication Required but no credentials are configured: no password given (--password or SIP_PASSWORD)"
        ),
        "{shown}"
    );

    // A wrong password: the same exit code from both.
    let out = register(&kam, "1008", "not-the-password", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run_sipcheck(
        [
            "answer", "--listen", &listen, "--server", &server, "--user", "1008",
        ],
        &[("SIP_PASSWORD", "not-the-password")],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credentials rejected"),
        "{shown}"
    );
}
