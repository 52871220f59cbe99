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
