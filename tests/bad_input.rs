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
    // A sips: URI over anything but TLS is refused, never sent in clear.
    let sips = format!("sips:x@{};transport=udp", target.local_addr().unwrap());
    let tls = format!("sips:x@{};transport=tcp", target.local_addr().unwrap());
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
        // A 44-byte header announcing 2 hours of samples: refused before they are allocated.
        (
            vec!["call", &uri, "--play-wav", "fixtures/header-only-2h.wav"],
            "announces 115200000 bytes of samples, the file has 44 bytes",
        ),
        (vec!["call", "sip:a b@c"], "SIP URI"),
        (vec!["call", &sips], "needs TLS"),
        (vec!["options", &sips], "needs TLS"),
        (vec!["call", &tls], "needs TLS"),
        (vec!["options", &tls], "needs TLS"),
        (vec!["options", &uri, "--t1", "fast"], "t1"),
        (
            vec!["run", "scenarios/selftest.yaml", "--series-interval", "0s"],
            "at least 1ms",
        ),
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
            vec!["call", &uri, "--srtp", "mandatory"],
            "required, optional or off",
        ),
        (
            vec!["answer", "--listen", "127.0.0.1:0", "--srtp", "yes"],
            "required, optional or off",
        ),
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

/// Every output path (`run`'s reports, `--record`) is checked before the first request: one
/// that cannot be written is exit 2, naming it, and the target receives nothing (not a whole
/// run or call followed by a failure to save it).
#[test]
fn unwritable_output_paths_are_refused_before_anything_is_sent() {
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let addr = target.local_addr().unwrap();
    let uri = format!("sip:x@{addr}");
    let dir = std::env::temp_dir().join(format!("sipcheck-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("one-call.yaml");
    std::fs::write(
        &scenario,
        format!(
            "name: one-call\ntarget: {{ direct: true, domain: 127.0.0.1 }}\n\
             accounts:\n  range: {{ from: 2000, count: 1 }}\n\
             media: {{ rtp_ports: 40000-40999 }}\n\
             roles:\n  caller:\n    accounts: 2000..2000\n    listen: 127.0.0.1:0\n    steps:\n\
             \x20     - call: {{ to: \"{uri}\", timeout: 2s }}\n\
             \x20     - hangup: {{ after: 1s }}\n"
        ),
    )
    .unwrap();
    let scenario = scenario.to_str().unwrap().to_string();
    // The same with `media.record` in a file's place.
    let file = dir.join("file");
    std::fs::write(&file, "").unwrap();
    let recording = dir.join("record.yaml");
    std::fs::write(
        &recording,
        std::fs::read_to_string(&scenario).unwrap().replace(
            "media: { rtp_ports: 40000-40999 }",
            &format!(
                "media: {{ rtp_ports: 40000-40999, record: {} }}",
                file.display()
            ),
        ),
    )
    .unwrap();
    let recording = recording.to_str().unwrap().to_string();
    for file in [&scenario, &recording] {
        let validate =
            run_sipcheck_with_timeout(["validate", file.as_str()], &[], Duration::from_secs(20));
        assert_eq!(
            validate.status.code(),
            Some(0),
            "{}",
            describe_output(&validate)
        );
    }
    // A file where a directory should be.
    let under_file = format!("{}/x.wav", file.display());
    let cases: Vec<Vec<&str>> = vec![
        vec!["call", &uri, "--record", "/proc/version/x.wav"],
        vec!["call", &uri, "--record", &under_file],
        vec![
            "answer",
            "--listen",
            "127.0.0.1:0",
            "--record",
            "/proc/version/x.wav",
        ],
        vec!["run", &scenario, "--junit", "/proc/version/x.xml"],
        vec!["run", &scenario, "--json", "/proc/version/x.json"],
        vec!["run", &scenario, "--series", "/proc/version/x.csv"],
        vec!["run", &scenario, "--metrics", "/proc/version/x.txt"],
        vec!["run", &scenario, "--series", "-"],
        vec!["run", &scenario, "--hdr-log", "/proc/version/x.hlog"],
        vec!["run", &scenario, "--hdr-log", "-"],
        vec!["run", &recording],
    ];
    for args in cases {
        let started = std::time::Instant::now();
        let out = run_sipcheck_with_timeout(args.iter().copied(), &[], Duration::from_secs(20));
        let shown = format!("{args:?}\n{}", describe_output(&out));
        assert_eq!(out.status.code(), Some(2), "{shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = if args.len() == 2 {
            file.to_str().unwrap()
        } else {
            args.last().unwrap()
        };
        assert!(
            stderr.contains(path),
            "the error does not name {path}: {shown}"
        );
        // Refused at once: no call was placed and waited for.
        assert!(started.elapsed() < Duration::from_secs(5), "{shown}");
    }
    let mut buf = [0u8; 2048];
    assert!(target.recv(&mut buf).is_err(), "something was sent");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zero_timers_levels_above_full_scale_and_port_zero_are_refused_at_parse_time() {
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let addr = target.local_addr().unwrap();
    let uri = format!("sip:x@{addr}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["options", &uri, "--t1", "0ms"], "t1"),
        (vec!["call", &uri, "--t1", "0s"], "t1"),
        (
            vec!["answer", "--listen", "127.0.0.1:0", "--t1", "0ms"],
            "t1",
        ),
        (vec!["call", &uri, "--level", "NaN"], "level"),
        (vec!["call", &uri, "--level", "inf"], "level"),
        (vec!["call", &uri, "--level", "100"], "full scale"),
        (
            vec!["answer", "--listen", "127.0.0.1:0", "--level", "3"],
            "full scale",
        ),
        (vec!["options", "sip:x@127.0.0.1:0"], "port 0"),
        (vec!["call", "sip:x@localhost:0"], "port 0"),
        (vec!["call", &uri, "--server", "127.0.0.1:0"], "port 0"),
        (vec!["call", &uri, "--proxy", "[::1]:0"], "port 0"),
        (vec!["options", &uri, "--proxy", "localhost:0"], "port 0"),
        (
            vec!["register", "--server", "127.0.0.1:0", "--user", "u"],
            "port 0",
        ),
        (
            vec![
                "answer",
                "--listen",
                "127.0.0.1:0",
                "--server",
                "pbx.invalid:0",
                "--user",
                "u",
            ],
            "port 0",
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
        let errors = stderr.lines().filter(|l| l.contains("error")).count();
        assert_eq!(errors, 1, "not a one-line error: {shown}");
    }
    let mut buf = [0u8; 2048];
    assert!(target.recv(&mut buf).is_err(), "something was sent");
}

/// A `sips:` server or proxy (RFC 3261 §26.2.2) where a `HOST[:PORT]` is expected, or a
/// `sips:` registrar over a transport other than TLS, on any command, in the environment or
/// in a scenario, is refused naming where it was given; nothing is sent in clear instead.
#[test]
fn sips_servers_and_proxies_are_refused_everywhere_and_nothing_is_sent() {
    let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let addr = target.local_addr().unwrap();
    let uri = format!("sip:x@{addr}");
    let server = addr.to_string();
    let sips = format!("sips:{addr}");
    let sips_env = [("SIP_SERVER", sips.as_str())];
    // (arguments, environment, the flag the error names)
    type Case<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    // `register` takes a sips: registrar (it registers a sips: address over TLS), but not
    // over a transport other than TLS.
    for (args, envs) in [
        (
            vec![
                "register",
                "--server",
                &sips,
                "--user",
                "u",
                "--transport",
                "udp",
            ],
            &[][..],
        ),
        (
            vec!["register", "--user", "u", "--transport", "udp"],
            &sips_env[..],
        ),
    ] {
        let out = run_sipcheck_with_timeout(args.iter().copied(), envs, Duration::from_secs(20));
        let shown = format!("{args:?} {envs:?}\n{}", describe_output(&out));
        assert_eq!(out.status.code(), Some(2), "{shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{sips} is a sips: URI, which needs TLS")),
            "{shown}"
        );
    }
    let cases: Vec<Case> = vec![
        (
            vec![
                "register", "--server", &server, "--proxy", &sips, "--user", "u",
            ],
            &[],
            "--proxy",
        ),
        (vec!["call", &uri, "--server", &sips], &[], "--server"),
        (vec!["call", &uri, "--proxy", &sips], &[], "--proxy"),
        (vec!["options", &uri, "--proxy", &sips], &[], "--proxy"),
        (
            vec![
                "answer",
                "--listen",
                "127.0.0.1:0",
                "--server",
                &sips,
                "--user",
                "u",
            ],
            &[],
            "--server",
        ),
    ];
    for (args, envs, flag) in cases {
        let out = run_sipcheck_with_timeout(args.iter().copied(), envs, Duration::from_secs(20));
        let shown = format!("{args:?} {envs:?}\n{}", describe_output(&out));
        assert_eq!(out.status.code(), Some(2), "{shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag),
            "the error does not name {flag}: {shown}"
        );
        assert!(
            stderr.contains(&format!("{sips}: give HOST[:PORT] and --transport tls")),
            "{shown}"
        );
    }

    // A scenario's sips: server, outbound proxy or call URI without `transport: tls`: refused
    // at load, at its line and column.
    let dir = std::env::temp_dir().join(format!("sipcheck-sips-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (target_line, to, at) in [
        (
            format!("target: {{ server: \"{sips}\" }}"),
            uri.clone(),
            "2:19",
        ),
        (
            format!("target: {{ server: \"{server}\", outbound_proxy: \"{sips}\" }}"),
            uri.clone(),
            "2:",
        ),
        (
            format!("target: {{ server: \"{server}\" }}"),
            format!("sips:x@{addr}"),
            "8:21",
        ),
    ] {
        let scenario = dir.join("sips.yaml");
        std::fs::write(
            &scenario,
            format!(
                "name: sips\n{target_line}\naccounts: {{ range: {{ from: 1000, count: 2 }}, password: pw }}\n\
                 roles:\n  caller:\n    accounts: 1000..1001\n    steps:\n      - call: {{ to: \"{to}\" }}\n\
                 \x20     - hangup: {{ after: 1s }}\n"
            ),
        )
        .unwrap();
        for command in ["run", "validate"] {
            let out = run_sipcheck_with_timeout(
                [command, scenario.to_str().unwrap()],
                &[],
                Duration::from_secs(20),
            );
            let shown = format!("{command} {target_line} {to}\n{}", describe_output(&out));
            assert_eq!(out.status.code(), Some(2), "{shown}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("sips.yaml:{at}")), "{shown}");
            assert!(stderr.contains("needs TLS"), "{shown}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut buf = [0u8; 2048];
    assert!(target.recv(&mut buf).is_err(), "something was sent");
}
