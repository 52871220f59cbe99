//! `sipcheck run` over TCP: through a real Kamailio (registrations, calls both ways,
//! keep-alive pongs, a restart of Kamailio mid-run), and sipcheck to sipcheck without a server.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::kamailio::{Kamailio, KamailioOptions};
use support::process::{self, RunDir};
use support::{describe_output, free_port, repo_root, run_sipcheck_with_timeout};

fn json(dir: &RunDir) -> PathBuf {
    dir.join("summary.json")
}

fn summary(dir: &RunDir) -> serde_json::Value {
    let text = std::fs::read_to_string(json(dir)).expect("JSON report written");
    serde_json::from_str(&text).expect("valid JSON")
}

fn run(scenario: &str, extra: &[&str], envs: &[(&str, &str)], dir: &RunDir) -> Output {
    let path = repo_root().join(scenario);
    let json = json(dir);
    let mut args = vec![
        "run",
        path.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_sipcheck_with_timeout(args, envs, Duration::from_secs(120))
}

/// Log output without its colours.
fn plain(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn callees_register_over_tcp_behind_kamailio_and_callers_reach_them_both_ways_heard() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let dir = RunDir::new("tcp").unwrap();
    let out = run(
        "tests/peers/scenarios/kamailio-tcp.yaml",
        &[],
        &[
            ("SIP_SERVER", server.as_str()),
            ("KEEPALIVE", "500ms"),
            ("RUST_LOG", "sipcheck::drive::transport=debug"),
        ],
        &dir,
    );
    let log = kam.log();
    let shown = format!("{}\n{log}", describe_output(&out));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = summary(&dir);
    assert_eq!(v["calls"]["started"], 4, "{v}");
    assert_eq!(v["calls"]["passed"], 4, "{v}");
    assert_eq!(v["audio"]["checked"], 8, "{v}");
    assert_eq!(v["audio"]["verified"], 8, "{v}");
    // Registered once each: no connection was lost (every ping got its pong in time).
    assert_eq!(v["registrations"]["ok"], 4, "{v}");
    assert_eq!(v["registrations"]["failed"], 0, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 4, "{v}");
    // Everything went over TCP, both ways: Kamailio received every request over TCP.
    assert!(
        log.contains("REQ REGISTER sip:sipcheck.test from tcp:"),
        "{log}"
    );
    assert!(
        log.contains("REQ INVITE sip:3300@sipcheck.test from tcp:"),
        "{log}"
    );
    assert!(log.contains("REQ BYE"), "{log}");
    // (The test's readiness probe is an OPTIONS over UDP.)
    let over_udp: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("from udp:") && !l.contains("REQ OPTIONS"))
        .collect();
    assert!(over_udp.is_empty(), "{over_udp:#?}");
    // A connection per UA: the four REGISTERs came from four source ports.
    let mut ports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("REQ REGISTER"))
        .filter_map(|l| l.rsplit(':').next())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{ports:?}");
    // Keep-alive: pings sent to Kamailio, and answered.
    let stderr = plain(&out.stderr);
    assert!(stderr.contains("TCP keep-alive: ping sent"), "{shown}");
    assert!(stderr.contains("TCP keep-alive: pong received"), "{shown}");
    for user in ["3300", "3301", "3302", "3303"] {
        assert!(kam.bindings(user).is_empty(), "{user} still registered");
    }
}

#[test]
fn sipcheck_calls_sipcheck_directly_over_tcp_a_connection_per_ua_or_per_role() {
    // Two callers call the callee's two UAs: per UA, each caller opens its own connection
    // to the callee's listening socket; per role, they share one.
    for (sharing, opened) in [("per_ua", 2), ("per_role", 1)] {
        let callee = format!("127.0.0.1:{}", free_port());
        let caller = format!("127.0.0.1:{}", free_port());
        let envs = [
            ("CALLEE_LISTEN", callee.as_str()),
            ("CALLER_LISTEN", caller.as_str()),
            ("RUST_LOG", "sipcheck::drive::transport=debug"),
        ];
        let dir = RunDir::new("tcp-direct").unwrap();
        let connections = format!("target.connections={sharing}");
        let out = run(
            "tests/peers/scenarios/dtmf-direct.yaml",
            &["--set", "target.transport=tcp", "--set", &connections],
            &envs,
            &dir,
        );
        let shown = format!("{sharing}: {}", describe_output(&out));
        assert_eq!(out.status.code(), Some(0), "{shown}");
        let v = summary(&dir);
        assert_eq!(v["calls"]["passed"], 2, "{v}");
        assert_eq!(v["dtmf"]["verified"], 4, "{v}");
        // Each connection opened once (even when the send that opened it was interrupted
        // by other work of the role's), and accepted by the callee's listening socket.
        let stderr = plain(&out.stderr);
        let to_callee = format!("TCP connection opened peer={callee}");
        assert_eq!(stderr.matches(&to_callee).count(), opened, "{shown}");
        if sharing == "per_ua" {
            for ua in ["2102", "2103"] {
                let line = format!("{to_callee} ua=\"{ua}\"");
                assert_eq!(stderr.matches(&line).count(), 1, "{shown}");
            }
        }
        let accepted = stderr
            .lines()
            .filter(|l| {
                l.contains("TCP connection accepted") && l.contains(&format!("local={callee}"))
            })
            .count();
        assert_eq!(accepted, opened, "{shown}");
        assert!(!stderr.contains("send failed"), "{shown}");
    }
}

#[test]
fn when_kamailio_restarts_mid_call_the_uas_reconnect_register_again_and_every_call_passes() {
    let opts = KamailioOptions::default();
    let kam = Kamailio::start_with(&opts).expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let dir = RunDir::new("tcp-restart").unwrap();
    let path = repo_root().join("tests/peers/scenarios/kamailio-tcp-restart.yaml");
    let stderr_path = dir.join("stderr");
    let mut child = Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(json(&dir))
        .env("SIP_SERVER", &server)
        .env("RUST_LOG", "sipcheck=info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let output = || {
        format!(
            "{}\n{}",
            process::read_lossy(&dir.join("stdout")),
            process::read_lossy(&stderr_path)
        )
    };
    // The first call (at once) set up through the first Kamailio: its ACK seen.
    let first_up = process::wait_until(Duration::from_secs(8), Duration::from_millis(50), || {
        kam.log().contains("REQ ACK")
    });
    assert!(first_up, "no first call\n{}\n{}", kam.log(), output());
    assert_eq!(kam.bindings("3400").len(), 1, "{}", kam.log());

    // A new Kamailio on the same port knows no one: the UAs must register again.
    let kam = kam.restart(&opts).expect("restart kamailio");
    let again = kam.wait_bindings("3400", 1, Duration::from_secs(14));
    assert_eq!(
        again.len(),
        1,
        "no re-registration\n{}\n{}",
        kam.log(),
        output()
    );
    assert!(again[0].contains("transport=tcp"), "{again:?}");
    assert_eq!(
        kam.wait_bindings("3401", 1, Duration::from_secs(2)).len(),
        1
    );

    let status = process::wait_timeout(&mut child, Duration::from_secs(40));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not finish\n{}", output());
    };
    let shown = format!("{}\n{}", output(), kam.log());
    assert_eq!(status.code(), Some(0), "{shown}");
    let v = summary(&dir);
    assert_eq!(v["calls"]["passed"], 2, "{v}");
    assert_eq!(v["audio"]["verified"], 4, "{v}");
    // Each UA registered twice: at the start and after the connection dropped.
    assert_eq!(v["registrations"]["ok"], 4, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 2, "{v}");
    assert!(output().contains("TCP connection lost"), "{shown}");
    // The first call's BYE and the whole second call went through the new Kamailio.
    assert_eq!(kam.log().matches("REQ BYE").count(), 2, "{shown}");
    assert_eq!(kam.log().matches("REQ INVITE").count(), 2, "{shown}");
    for user in ["3400", "3401"] {
        assert!(kam.bindings(user).is_empty(), "{user} still registered");
    }
}

#[test]
fn callers_over_tcp_hear_their_tones_echoed_by_sipp() {
    let port = free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(
        port,
        &[
            "-t",
            "t1",
            "-rtp_echo",
            "-trace_msg",
            "-message_file",
            "messages.log",
        ],
    )
    .expect("start sipp");
    let addr = format!("127.0.0.1:{port}");
    let dir = RunDir::new("tcp-sipp").unwrap();
    let out = run(
        "tests/peers/scenarios/sipp-echo.yaml",
        &["--set", "target.transport=tcp"],
        &[("SIPP_ADDR", addr.as_str())],
        &dir,
    );
    let shown = format!("{}\n{}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = summary(&dir);
    assert_eq!(v["calls"]["passed"], 5, "{v}");
    assert_eq!(v["audio"]["verified"], 5, "{v}");
    // SIPp received every INVITE, ACK and BYE over TCP, none over UDP.
    let messages = sipp.messages();
    assert_eq!(
        messages.matches("TCP message received").count(),
        15,
        "{messages}"
    );
    assert!(!messages.contains("UDP message"), "{messages}");
}

#[test]
fn interrupted_over_tcp_every_call_ends_as_interrupted_and_every_ua_unregisters() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let dir = RunDir::new("tcp-interrupt").unwrap();
    let path = repo_root().join("tests/peers/scenarios/kamailio-long.yaml");
    let stderr_path = dir.join("stderr");
    let mut child = Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(json(&dir))
        .args(["--set", "target.transport=tcp"])
        .args(["--set", "roles.callee.accounts=5000..5001"])
        .args(["--set", "roles.caller.accounts=5010..5011"])
        .env("SIP_SERVER", &server)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let output = || {
        format!(
            "{}\n{}",
            process::read_lossy(&dir.join("stdout")),
            process::read_lossy(&stderr_path)
        )
    };
    // Both calls up (their ACKs through Kamailio), then Ctrl-C.
    let up = process::wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        kam.log().matches("REQ ACK").count() >= 2
    });
    assert!(up, "calls not up\n{}\n{}", kam.log(), output());
    process::signal(child.id(), "INT").unwrap();
    let Some(status) = process::wait_timeout(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("sipcheck did not stop\n{}", output());
    };
    let shown = format!("{}\n{}", output(), kam.log());
    assert_eq!(status.code(), Some(130), "{shown}");
    let v = summary(&dir);
    // Both sides of both calls ended by the interruption, none by the transport: the
    // callee's BYE went back over the connection Kamailio had opened to it.
    assert_eq!(v["failures"]["interrupted"], 4, "{v}");
    assert_eq!(v["failures"].as_object().unwrap().len(), 1, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 4, "{v}");
    for user in ["5000", "5001", "5010", "5011"] {
        assert!(kam.bindings(user).is_empty(), "{user} still registered");
    }
}

#[test]
fn a_frozen_kamailio_misses_its_pong_and_the_ua_registers_again_once_it_answers() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let dir = RunDir::new("tcp-pong").unwrap();
    let path = repo_root().join("tests/peers/scenarios/kamailio-tcp-idle.yaml");
    let stderr_path = dir.join("stderr");
    let mut child = Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(json(&dir))
        .env("SIP_SERVER", &server)
        .env("KEEPALIVE", "1s")
        .env("RUST_LOG", "sipcheck=debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let log = || plain(process::read_lossy(&stderr_path).as_bytes());
    assert_eq!(
        kam.wait_bindings("3500", 1, Duration::from_secs(10)).len(),
        1,
        "{}",
        kam.log()
    );
    // Answered pings first.
    let ponged = process::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        log().contains("TCP keep-alive: pong received")
    });
    assert!(ponged, "{}", log());
    let registers_before = kam.log().matches("REQ REGISTER").count();

    // Kamailio frozen (every process of it): the connection stays open, the pong never
    // comes, and the UA closes the connection within the interval and the pong timeout.
    let mut pids = process::child_pids(kam.pid());
    pids.push(kam.pid());
    for &pid in &pids {
        process::signal(pid, "STOP").unwrap();
    }
    let closed = process::wait_until(Duration::from_secs(6), Duration::from_millis(50), || {
        log().contains("no pong answered a keep-alive ping")
    });
    for &pid in &pids {
        process::signal(pid, "CONT").unwrap();
    }
    assert!(closed, "{}", log());
    // Once Kamailio answers again, the UA has registered anew.
    let again = process::wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        kam.log().matches("REQ REGISTER").count() > registers_before
            && log().matches("TCP connection opened").count() >= 2
            && kam.bindings("3500").len() == 1
    });
    assert!(again, "{}\n{}", log(), kam.log());

    process::signal(child.id(), "INT").unwrap();
    let Some(status) = process::wait_timeout(&mut child, Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("sipcheck did not stop\n{}", log());
    };
    assert_eq!(status.code(), Some(130), "{}", log());
    let v = summary(&dir);
    // The first registration and at least the one after the pong was missed.
    assert!(v["registrations"]["ok"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["registrations"]["unregister_ok"], 1, "{v}");
    assert!(kam.bindings("3500").is_empty(), "3500 still registered");
}
