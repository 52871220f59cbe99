//! `sipcheck register` against SIPp as a second, independent registrar: a SHA-256 challenge
//! offering `qop="auth,auth-int"` (answered with SHA-256 and qop=auth, the hash checked from
//! SIPp's trace), and MD5 with SIPp's own `verifyauth`.

mod support;

use support::digest::{self, Algorithm};
use support::run_sipcheck;
use support::sipp::Sipp;

fn register(sipp: &Sipp, user: &str, password: &str) -> std::process::Output {
    let server = format!("127.0.0.1:{}", sipp.port);
    run_sipcheck(
        [
            "register",
            "--server",
            &server,
            "--user",
            user,
            "--domain",
            digest::REALM,
            "--expires",
            "60",
            // The scenarios answer one registration, not its removal.
            "--keep",
        ],
        &[("SIP_PASSWORD", password)],
    )
}

#[test]
fn register_answers_a_sha256_challenge_with_qop_auth() {
    let sipp = Sipp::start_uas("uas_auth_sha256.xml", &[]).expect("start sipp");
    let out = register(&sipp, "1001", "pw1001");
    let shown = support::describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", sipp.log());

    let auths = sipp.authorizations();
    assert_eq!(auths.len(), 1, "{}", sipp.messages());
    let (method, auth) = &auths[0];
    let params = digest::verify(auth, method, "pw1001", b"")
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.messages()));
    assert_eq!(
        Algorithm::parse(&params["algorithm"]),
        Some(Algorithm::Sha256)
    );
    assert_eq!(
        params["qop"], "auth",
        "auth preferred over auth-int: {auth}"
    );
    assert_eq!(params["nc"], "00000001", "{auth}");
    assert!(params.contains_key("opaque"), "opaque echoed: {auth}");
    assert!(!shown.contains("pw1001"), "password leaked\n{shown}");
}

#[test]
fn register_passes_sipps_md5_verifyauth_and_a_wrong_password_fails() {
    let sipp = Sipp::start_uas("uas_auth_md5.xml", &[]).expect("start sipp");
    let out = register(&sipp, "1005", "pw1005");
    let shown = support::describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}\n{}", sipp.log());

    let out = register(&sipp, "1005", "wrong");
    let shown = support::describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("credentials rejected: 403"), "{shown}");
}

/// `answer --server` against SIPp as a registrar (`tests/peers/uas_register_refresh.xml`):
/// the refresh comes at 80 % of the lifetime the registrar granted (2 s, not the 3600 s
/// asked), a refused refresh is tried again after 1 s and reported, and Ctrl-C removes the
/// binding.
#[test]
fn answer_refreshes_on_the_granted_lifetime_backs_off_after_a_503_and_unregisters() {
    use std::time::{Duration, Instant};
    let sipp = Sipp::start_uas("uas_register_refresh.xml", &[]).expect("sipp");
    let listen = format!("127.0.0.1:{}", support::free_port());
    let server = sipp.addr.to_string();
    let started = Instant::now();
    let mut answer = support::responder::Responder::start(
        &[
            "--listen", &listen, "--server", &server, "--user", "1001", "-v",
        ],
        &[],
    );
    // Each REGISTER sent, as traced by -v: when it was first seen.
    let registers = |answer: &support::responder::Responder| {
        answer
            .stderr()
            .lines()
            .filter(|l| l.starts_with("REGISTER sip:"))
            .count()
    };
    let mut seen = Vec::new();
    for n in 2..=3 {
        let came = support::process::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(10),
            || registers(&answer) >= n,
        );
        assert!(came, "REGISTER #{n} never came\n{}", answer.output());
        seen.push(started.elapsed());
    }
    // The refresh at 1.6 s after the registration (which came after start-up), the retry
    // 1 s after the 503.
    assert!(
        seen[0] >= Duration::from_millis(1500) && seen[0] < Duration::from_secs(6),
        "refresh at {:?}\n{}",
        seen[0],
        answer.output()
    );
    let retry = seen[1] - seen[0];
    assert!(
        retry >= Duration::from_millis(900) && retry < Duration::from_secs(4),
        "retry after {retry:?}\n{}",
        answer.output()
    );
    // Its 200 (60 s) read, then Ctrl-C: the un-REGISTER.
    let granted =
        support::process::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            answer.stderr().matches("SIP/2.0 200 OK").count() >= 2
        });
    assert!(granted, "{}", answer.output());
    let code = answer.interrupt();
    let out = answer.output();
    assert_eq!(registers(&answer), 4, "{out}");
    let last = out.rsplit("REGISTER sip:").next().unwrap_or_default();
    assert!(last.contains("Expires: 0"), "{out}");
    assert!(
        out.contains(
            "registration: refresh failed: rejected with 503 Service Unavailable (tried again in 1 s)"
        ),
        "{out}"
    );
    assert!(!out.contains("unregistration failed"), "{out}");
    assert_ne!(code, Some(0), "a failed refresh fails the run\n{out}");
    assert_eq!(out.matches("SIP/2.0 200 OK").count(), 3, "{out}");
}
