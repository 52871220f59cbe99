//! Bad input everywhere a user types: each is a one-line error naming what is wrong, exit 2,
//! and nothing is sent on the wire.

mod support;

use std::time::Duration;

use support::{describe_output, run_sipcheck_with_timeout};

#[test]
fn every_bad_flag_is_a_one_line_error_with_exit_2_and_nothing_is_sent() {
    // A socket stands in for every target: it must receive nothing.
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let uri = format!("sip:x@{}", target.local_addr().unwrap());
    let server = target.local_addr().unwrap().to_string();
    // No TLS: a URI that needs it is refused, never sent in clear.
    let sips = format!("sips:x@{}", target.local_addr().unwrap());
    let tls = format!("{uri};transport=tls");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["call", &uri, "--rtp-ports", "30000-20000"],
            "port range",
        ),
        (vec!["call", &uri, "--rtp-ports", "abc"], "port range"),
        (vec!["call", &uri, "--duration", "5 parsecs"], "duration"),
        (vec!["call", &uri, "--codec", "g729"], "g729"),
        (vec!["call", &uri, "--play-tone", "5000"], "5000 Hz"),
        (vec!["call", &uri, "--expect-tone", "la"], "frequency"),
        (vec!["call", &uri, "--send-dtmf", "12x"], "DTMF"),
        (
            vec!["call", &uri, "--play-wav", "/no/such.wav"],
            "/no/such.wav",
        ),
        (vec!["call", "sip:a b@c"], "SIP URI"),
        (vec!["call", &sips], "requires TLS"),
        (vec!["options", &sips], "requires TLS"),
        (vec!["call", &tls], "requires TLS"),
        (vec!["options", &tls], "requires TLS"),
        (vec!["options", &uri, "--t1", "fast"], "t1"),
        (vec!["options", &uri, "--transport", "sctp"], "sctp"),
        (
            vec![
                "register",
                "--server",
                &server,
                "--user",
                "u",
                "--expires=-1",
            ],
            "expires",
        ),
        (vec!["answer", "--listen", "not-an-address"], "listen"),
        (
            vec!["answer", "--listen", "127.0.0.1:0", "--reject", "200"],
            "300 to 699",
        ),
        (
            vec!["run", "/no/such/scenario.yaml"],
            "/no/such/scenario.yaml",
        ),
        (
            vec!["validate", "/no/such/scenario.yaml"],
            "/no/such/scenario.yaml",
        ),
    ];
    for (args, needle) in cases {
        let out = run_sipcheck_with_timeout(args.iter().copied(), &[], Duration::from_secs(20));
        let shown = format!("{args:?}\n{}", describe_output(&out));
        assert_eq!(out.status.code(), Some(2), "{shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.to_lowercase().contains(&needle.to_lowercase()),
            "the error does not name '{needle}': {shown}"
        );
        assert!(!stderr.contains("panicked"), "{shown}");
    }
    let mut buf = [0u8; 2048];
    assert!(target.recv(&mut buf).is_err(), "something was sent");
}

#[test]
fn durations_on_the_command_line_read_as_in_scenarios_and_overflow_none() {
    // Accepted like a scenario's `2sec`; a duration past 30 days is refused before anything
    // is sent (it panicked adding to an Instant before).
    for (flag, value) in [
        ("--duration", "18446744073709551615s"),
        ("--answer-timeout", "18446744073709551615s"),
        ("--duration", "721h"),
        ("--duration", "5d"),
    ] {
        let out = std::process::Command::new(support::sipcheck_bin())
            .args(["call", "sip:x@127.0.0.1:9", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(value), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The spelt-out units are accepted: validation of the scenario-style `5sec` passes clap,
    // and the call then fails for want of a peer (not for the flag).
    let out = std::process::Command::new(support::sipcheck_bin())
        .args([
            "options",
            "sip:x@127.0.0.1:9",
            "--t1",
            "50msec",
            "--timeout",
            "1sec",
        ])
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
