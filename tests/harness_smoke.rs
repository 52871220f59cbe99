//! Tests of the integration-test harness itself (`tests/support/`): the real
//! peers start, answer, authenticate and stop, checked with plain std
//! sockets and no sipcheck code. If these fail, the other integration tests
//! cannot be trusted.

mod support;

use std::time::Duration;

use support::digest::{self, Algorithm};
use support::kamailio::Kamailio;
use support::process;
use support::sip::{self, RequestSpec, UdpEndpoint};
use support::sipp::Sipp;

const T: Duration = Duration::from_secs(5);

fn kamailio() -> Kamailio {
    Kamailio::start()
        .unwrap_or_else(|e| panic!("Kamailio must start for the integration tests: {e:#}"))
}

fn sipp_uas(scenario: &str) -> Sipp {
    Sipp::start_uas(scenario, &[])
        .unwrap_or_else(|e| panic!("SIPp must start for the integration tests: {e:#}"))
}

#[test]
fn kamailio_answers_options_and_challenges_register() {
    let kam = kamailio();
    let ep = UdpEndpoint::bind().unwrap();

    let options = RequestSpec::new("OPTIONS", &kam.uri(), "sip:probe@sipcheck.test", &kam.uri())
        .build(ep.local);
    let resp = ep
        .request(&options, kam.addr, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", kam.log()));
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}\n{}", kam.log());

    let aor = "sip:1001@sipcheck.test";
    let register = RequestSpec::new("REGISTER", &kam.uri(), aor, aor)
        .header(format!("Contact: <sip:1001@{}>", ep.local))
        .header("Expires: 60")
        .build(ep.local);
    let resp = ep.request(&register, kam.addr, T).unwrap();
    assert_eq!(sip::status_code(&resp), Some(401), "{resp}");
    let challenge = sip::header(&resp, "WWW-Authenticate").expect("401 carries WWW-Authenticate");
    let params = digest::parse_params(&challenge).expect("a Digest challenge");
    assert_eq!(
        params.get("realm").map(String::as_str),
        Some(Kamailio::REALM),
        "{challenge}"
    );
    assert_eq!(
        params.get("qop").map(String::as_str),
        Some("auth"),
        "{challenge}"
    );
    assert!(
        params.get("nonce").is_some_and(|n| !n.is_empty()),
        "{challenge}"
    );
    assert!(kam.bindings("1001").is_empty());
}

#[test]
fn kamailio_registers_with_digest_and_lists_bindings() {
    let kam = kamailio();
    let ep = UdpEndpoint::bind().unwrap();
    let contact = format!("sip:1001@{}", ep.local);

    let resp = ep
        .register(kam.addr, "1001", &Kamailio::password_for("1001"), 60)
        .unwrap();
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}\n{}", kam.log());
    assert!(
        sip::headers(&resp, "Contact")
            .iter()
            .any(|c| c.contains(&contact)),
        "200 lists the binding {contact}:\n{resp}"
    );
    assert_eq!(kam.bindings("1001"), vec![contact.clone()]);

    // A wrong password is challenged again and registers nothing.
    let other = UdpEndpoint::bind().unwrap();
    let resp = other.register(kam.addr, "1002", "pw1001", 60).unwrap();
    assert_eq!(sip::status_code(&resp), Some(401), "{resp}");
    assert!(kam.bindings("1002").is_empty());

    let resp = ep.register(kam.addr, "1001", "pw1001", 0).unwrap();
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}");
    assert!(kam.bindings("1001").is_empty(), "unregistered");
}

#[test]
fn kamailio_relays_authenticated_invite_to_registered_user() {
    let kam = kamailio();
    let callee = UdpEndpoint::bind().unwrap();
    let resp = callee.register(kam.addr, "2002", "pw2002", 60).unwrap();
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}");

    let caller = UdpEndpoint::bind().unwrap();
    let target = format!("sip:2002@127.0.0.1:{}", kam.sip_port);
    let mut spec = RequestSpec::new("INVITE", &target, "sip:1001@sipcheck.test", &target)
        .header(format!("Contact: <sip:1001@{}>", caller.local));
    let invite = spec.build(caller.local);
    let resp = caller.request(&invite, kam.addr, T).unwrap();
    assert_eq!(sip::status_code(&resp), Some(407), "{resp}");
    caller
        .send(&sip::ack_for(&invite, &resp), kam.addr)
        .unwrap();
    let challenge =
        sip::header(&resp, "Proxy-Authenticate").expect("407 carries Proxy-Authenticate");
    let auth = digest::authorization(&challenge, "1001", "pw1001", "INVITE", &target).unwrap();

    spec.cseq += 1;
    let invite = spec
        .header(format!("Proxy-Authorization: {auth}"))
        .build(caller.local);
    caller.send(&invite, kam.addr).unwrap();
    let (relayed, from) = callee
        .recv_request(T)
        .unwrap()
        .unwrap_or_else(|| panic!("the registered callee got no INVITE\n{}", kam.log()));
    assert!(relayed.starts_with("INVITE "), "{relayed}");
    let rr = sip::header(&relayed, "Record-Route").unwrap_or_default();
    assert!(
        rr.contains(&format!("127.0.0.1:{}", kam.sip_port)) && rr.contains(";lr"),
        "record-routed: {relayed}"
    );
    assert!(
        sip::header(&relayed, "Proxy-Authorization").is_none(),
        "credentials consumed: {relayed}"
    );

    callee
        .send(
            &sip::response_to(&relayed, 486, "Busy Here", "callee1", &[]),
            from,
        )
        .unwrap();
    let deadline = std::time::Instant::now() + T;
    let final_resp = loop {
        let (msg, _) = caller
            .recv(T)
            .unwrap()
            .expect("a final response relayed to the caller");
        if sip::status_code(&msg).is_some_and(|c| c >= 200) {
            break msg;
        }
        assert!(std::time::Instant::now() < deadline, "no final response");
    };
    assert_eq!(sip::status_code(&final_resp), Some(486), "{final_resp}");
    caller
        .send(&sip::ack_for(&invite, &final_resp), kam.addr)
        .unwrap();
}

#[test]
fn kamailio_stops_on_drop_with_its_workers() {
    let kam = kamailio();
    let pid = kam.pid();
    let rundir = kam.rundir().to_owned();
    let workers = process::child_pids(pid);
    assert!(process::pid_alive(pid));
    assert!(!workers.is_empty(), "kamailio forks workers");
    drop(kam);
    assert!(
        !process::pid_alive(pid),
        "kamailio {pid} still running after drop"
    );
    for w in workers {
        assert!(
            !process::pid_alive(w),
            "kamailio worker {w} still running after drop"
        );
    }
    if std::env::var_os(process::KEEP_RUNDIR_ENV).is_none() {
        assert!(!rundir.exists(), "run directory removed");
    }
}

#[test]
fn sipp_uas_challenges_register_with_sha256() {
    let sipp = sipp_uas("uas_auth_sha256.xml");
    let ep = UdpEndpoint::bind().unwrap();
    let uri = sipp.uri();
    let aor = "sip:1001@sipcheck.test";
    let mut spec = RequestSpec::new("REGISTER", &uri, aor, aor)
        .header(format!("Contact: <sip:1001@{}>", ep.local))
        .header("Expires: 60");

    let resp = ep
        .request(&spec.build(ep.local), sipp.addr, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.log()));
    assert_eq!(sip::status_code(&resp), Some(401), "{resp}");
    let challenge = sip::header(&resp, "WWW-Authenticate").expect("401 carries WWW-Authenticate");
    let p = digest::parse_params(&challenge).expect("a Digest challenge");
    assert_eq!(
        p.get("algorithm").map(String::as_str),
        Some("SHA-256"),
        "{challenge}"
    );
    assert_eq!(
        p.get("qop").map(String::as_str),
        Some("auth,auth-int"),
        "{challenge}"
    );
    assert_eq!(
        p.get("realm").map(String::as_str),
        Some(digest::REALM),
        "{challenge}"
    );
    assert_eq!(
        p.get("nonce").map(String::as_str),
        Some(digest::SIPP_SHA256_NONCE),
        "{challenge}"
    );

    // A correct SHA-256 answer: 200, and the hash checks out from the trace.
    let auth = digest::authorization(&challenge, "1001", "pw1001", "REGISTER", &uri).unwrap();
    assert!(auth.contains("algorithm=SHA-256"), "{auth}");
    spec.cseq += 1;
    let resp = ep
        .request(
            &spec
                .clone()
                .header(format!("Authorization: {auth}"))
                .build(ep.local),
            sipp.addr,
            T,
        )
        .unwrap();
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}\n{}", sipp.log());

    // An MD5 answer to the SHA-256 challenge: 403 (after a new challenge:
    // the scenario loops per Call-ID).
    spec.cseq += 1;
    let resp = ep.request(&spec.build(ep.local), sipp.addr, T).unwrap();
    assert_eq!(sip::status_code(&resp), Some(401), "{resp}");
    let md5_challenge = challenge.replace("SHA-256", "MD5");
    let md5 = digest::authorization(&md5_challenge, "1001", "pw1001", "REGISTER", &uri).unwrap();
    spec.cseq += 1;
    let resp = ep
        .request(
            &spec.header(format!("Authorization: {md5}")).build(ep.local),
            sipp.addr,
            T,
        )
        .unwrap();
    assert_eq!(sip::status_code(&resp), Some(403), "{resp}");

    // SIPp cannot check the SHA-256 hash; the harness can, from the trace.
    let auths = sipp.authorizations();
    assert_eq!(auths.len(), 2, "{}", sipp.messages());
    let (method, sha) = &auths[0];
    let params = digest::verify(sha, method, "pw1001", b"").unwrap();
    assert_eq!(
        Algorithm::parse(&params["algorithm"]),
        Some(Algorithm::Sha256)
    );
    assert!(digest::verify(sha, method, "wrong", b"").is_err());
}

#[test]
fn sipp_md5_uas_verifies_the_password() {
    let sipp = sipp_uas("uas_auth_md5.xml");
    let ep = UdpEndpoint::bind().unwrap();
    let resp = ep
        .register(sipp.addr, "1001", "pw1001", 60)
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.log()));
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}\n{}", sipp.log());
    let resp = ep.register(sipp.addr, "1001", "not-pw1001", 60).unwrap();
    assert_eq!(sip::status_code(&resp), Some(403), "{resp}\n{}", sipp.log());
}

#[test]
fn sipp_options_uas_answers_and_stops_on_drop() {
    let sipp = sipp_uas("uas_options.xml");
    let ep = UdpEndpoint::bind().unwrap();
    let options = RequestSpec::new(
        "OPTIONS",
        &sipp.uri(),
        "sip:probe@sipcheck.test",
        &sipp.uri(),
    )
    .build(ep.local);
    let resp = ep
        .request(&options, sipp.addr, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.log()));
    assert_eq!(sip::status_code(&resp), Some(200), "{resp}");
    let pid = sipp.pid();
    let started = std::time::Instant::now();
    drop(sipp);
    assert!(
        !process::pid_alive(pid),
        "sipp {pid} still running after drop"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGINT stopped it without SIGKILL"
    );
}

#[test]
fn digest_matches_rfc7616_examples() {
    for (algorithm, expected) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let got = digest::response(&digest::Input {
            algorithm,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop: Some((
                "auth",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )),
            body: b"",
        });
        assert_eq!(got, expected, "{algorithm:?}");
    }
}

#[test]
fn run_with_timeout_kills_a_hung_command() {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "echo started; exec sleep 30"]);
    let started = std::time::Instant::now();
    match process::run_with_timeout(cmd, Duration::from_millis(500)) {
        Err(process::RunError::TimedOut { stdout, .. }) => {
            assert_eq!(String::from_utf8_lossy(&stdout).trim(), "started");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        support::sipcheck_bin().is_file(),
        "Cargo built {}",
        support::sipcheck_bin().display()
    );
}
