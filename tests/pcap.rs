//! `--pcap FILE`, read back by the real reader: `tshark` opens the capture, finds no
//! malformed packet and no bad checksum, finds every call (each Call-ID's INVITE, its 200, ACK,
//! BYE and its 200: what Wireshark's VoIP Calls shows as completed; `-z voip,calls` is not in
//! Debian 12's tshark 4.0) and lists the RTP streams that were made (`-z rtp,streams`); after
//! Ctrl-C the file is still whole.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::kamailio::Kamailio;
use support::process::{self, require_program, RunDir};
use support::responder::{Responder, ANSWER_TONES, CALLER_TONES};
use support::{describe_output, free_port, repo_root, run_sipcheck};

/// `tshark -r FILE ARGS` with checksums verified: its stdout; panics when it fails or
/// complains on stderr (a cut-short file, an unreadable record).
fn tshark(file: &Path, args: &[&str]) -> String {
    let bin = require_program("tshark", "tshark").expect("tshark");
    let out = Command::new(bin)
        .arg("-n")
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("Running as user \"root\"") && !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark {args:?} on {}: {}\n{stderr}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file reads cleanly: no malformed packet, no bad IP, UDP or TCP checksum, no expert
/// error; and it holds packets.
fn assert_clean(file: &Path) -> usize {
    let all = tshark(file, &[]);
    let count = all.lines().count();
    assert!(count > 0, "an empty capture");
    let bad = tshark(
        file,
        &[
            "-Y",
            "_ws.malformed || ip.checksum.status == 0 || udp.checksum.status == 0 \
             || tcp.checksum.status == 0 || _ws.expert.severity == error",
        ],
    );
    assert!(bad.trim().is_empty(), "bad packets:\n{bad}");
    // Every checksum positively verified (computed over IPv4 too, where UDP allows none).
    let unverified = tshark(
        file,
        &[
            "-Y",
            "(ip && ip.checksum.status != 1) || (udp && udp.checksum.status != 1) \
             || (tcp && tcp.checksum.status != 1)",
        ],
    );
    assert!(unverified.trim().is_empty(), "unverified:\n{unverified}");
    count
}

/// The completed calls in `file`: the Call-IDs with an INVITE, a 200 to it, an ACK, a BYE
/// and a 200 to the BYE (whichever side sent them), and every Call-ID seen.
fn completed_calls(file: &Path) -> (Vec<String>, usize) {
    let text = tshark(
        file,
        &[
            "-Y",
            "sip",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "sip.Call-ID",
            "-e",
            "sip.CSeq.method",
            "-e",
            "sip.Status-Code",
        ],
    );
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in text.lines() {
        let mut f = line.split('|');
        let (id, method, status) = (
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
        );
        let what = if status.is_empty() {
            method.to_owned()
        } else {
            format!("{status} {method}")
        };
        seen.entry(id.to_owned()).or_default().insert(what);
    }
    let complete: Vec<String> = seen
        .iter()
        .filter(|(_, got)| {
            ["INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"]
                .iter()
                .all(|m| got.contains(*m))
        })
        .map(|(id, _)| id.clone())
        .collect();
    (complete, seen.len())
}

/// The rows of a `-z` table: lines that start with a timestamp-like number after spaces.
fn table_rows(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_call_with_rtp_both_ways_is_one_call_and_two_streams_in_tshark() {
    let dir = RunDir::new("pcap-call").unwrap();
    let file = dir.join("call.pcap");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(&[&["--listen", &listen][..], &ANSWER_TONES].concat(), &[]);
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        [
            &["call", &uri][..],
            &CALLER_TONES,
            &["--duration", "2s", "--pcap", file.to_str().unwrap()],
        ]
        .concat(),
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pcap: ") && !stderr.contains("dropped"),
        "{shown}"
    );

    let packets = assert_clean(&file);
    let sip = tshark(&file, &["-Y", "sip", "-T", "fields", "-e", "sip.CSeq"]);
    let cseqs: Vec<&str> = sip.lines().collect();
    for method in ["INVITE", "ACK", "BYE"] {
        assert!(
            cseqs.iter().any(|c| c.ends_with(method)),
            "no {method}: {cseqs:?}"
        );
    }
    let (complete, ids) = completed_calls(&file);
    assert_eq!((complete.len(), ids), (1, 1), "{complete:?}");
    let streams = tshark(&file, &["-q", "-z", "rtp,streams"]);
    let rows = table_rows(&streams);
    assert_eq!(rows.len(), 2, "{streams}");
    for row in &rows {
        // About 2 s at 50 packets a second, none lost.
        let fields: Vec<&str> = row.split_whitespace().collect();
        let pkts: u64 = fields
            .iter()
            .position(|f| *f == "g711U" || *f == "g711A")
            .and_then(|i| fields.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {row}\n{streams}"));
        assert!((90..=130).contains(&pkts), "{row}\n{streams}");
    }
    assert!(packets >= 200, "{packets} packets");
}

#[test]
fn answer_and_options_write_their_captures_too() {
    let dir = RunDir::new("pcap-answer").unwrap();
    let (answered, probed) = (dir.join("answer.pcap"), dir.join("options.pcap"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut answer = Responder::start(
        &[
            "--listen",
            &listen,
            "--play-tone",
            "1000",
            "--calls",
            "1",
            "--pcap",
            answered.to_str().unwrap(),
        ],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(["options", &uri, "--pcap", probed.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pcap: 2 packets written"),
        "{}",
        describe_output(&out)
    );
    assert_clean(&probed);
    let options = tshark(&probed, &["-Y", "sip", "-T", "fields", "-e", "sip.CSeq"]);
    assert_eq!(options.lines().count(), 2, "{options}");
    assert!(options.lines().all(|l| l.ends_with("OPTIONS")), "{options}");
    let out = run_sipcheck(
        ["call", &uri, "--play-tone", "440", "--duration", "1s"],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    assert!(answer.stderr().contains("pcap: "), "{shown}");
    assert_clean(&answered);
    let (complete, _) = completed_calls(&answered);
    assert_eq!(complete.len(), 1, "{complete:?}");
    let streams = tshark(&answered, &["-q", "-z", "rtp,streams"]);
    assert_eq!(table_rows(&streams).len(), 2, "{streams}");
}

#[test]
fn an_ipv6_capture_has_its_mandatory_udp_checksums() {
    let dir = RunDir::new("pcap-v6").unwrap();
    let file = dir.join("v6.pcap");
    let listen = format!("[::1]:{}", free_port());
    let mut answer = Responder::start(
        &["--listen", &listen, "--play-tone", "1000", "--calls", "1"],
        &[],
    );
    let uri = format!("sip:bob@{listen}");
    let out = run_sipcheck(
        [
            "call",
            &uri,
            "--play-tone",
            "440",
            "--duration",
            "1s",
            "--pcap",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let shown = format!("{}\n{}", describe_output(&out), answer.output());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_eq!(
        answer.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{shown}"
    );
    assert_clean(&file);
    let v6 = tshark(
        &file,
        &[
            "-Y",
            "ipv6.src == ::1 && udp",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    let all = tshark(&file, &["-T", "fields", "-e", "frame.number"]);
    assert_eq!(
        v6.lines().count(),
        all.lines().count(),
        "not all IPv6 over UDP"
    );
    let (complete, _) = completed_calls(&file);
    assert_eq!(complete.len(), 1, "{complete:?}");
    let streams = tshark(&file, &["-q", "-z", "rtp,streams"]);
    assert_eq!(table_rows(&streams).len(), 2, "{streams}");
}

#[test]
fn a_run_through_kamailio_captures_every_call() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.server_for("udp");
    let dir = RunDir::new("pcap-run").unwrap();
    let file = dir.join("run.pcap");
    let scenario = repo_root().join("tests/peers/scenarios/kamailio-pcap.yaml");
    let out = run_sipcheck(
        [
            "run",
            scenario.to_str().unwrap(),
            "--pcap",
            file.to_str().unwrap(),
        ],
        &[("SIP_SERVER", server.as_str())],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_clean(&file);
    // The 3 calls, complete; the other Call-IDs are the 6 accounts' registrations.
    let (complete, ids) = completed_calls(&file);
    assert_eq!(complete.len(), 3, "{complete:?}");
    assert!(ids >= 3 + 6, "{ids} Call-IDs");
    // Each call's RTP both ways (each packet twice: sent by one end, received by the other,
    // both ends being this process): 6 streams.
    let streams = tshark(&file, &["-q", "-z", "rtp,streams"]);
    assert_eq!(table_rows(&streams).len(), 6, "{streams}");
}

#[test]
fn a_run_over_tcp_is_reassembled_by_tshark() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = kam.server_for("tcp");
    let dir = RunDir::new("pcap-tcp").unwrap();
    let file = dir.join("tcp.pcap");
    let scenario = repo_root().join("tests/peers/scenarios/kamailio-tcp.yaml");
    let out = run_sipcheck(
        [
            "run",
            scenario.to_str().unwrap(),
            "--pcap",
            file.to_str().unwrap(),
        ],
        &[("SIP_SERVER", server.as_str())],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert_clean(&file);
    let sip = tshark(
        &file,
        &["-Y", "sip && tcp", "-T", "fields", "-e", "sip.CSeq.method"],
    );
    let methods: Vec<&str> = sip.lines().flat_map(|l| l.split(',')).collect();
    for method in ["REGISTER", "INVITE", "ACK", "BYE"] {
        assert!(
            methods.contains(&method),
            "no {method} over TCP: {methods:?}"
        );
    }
    // The segments follow each other: no gap, retransmission or out-of-order segment.
    let analysis = tshark(
        &file,
        &["-Y", "tcp.analysis.flags && !tcp.analysis.window_update"],
    );
    assert!(analysis.trim().is_empty(), "{analysis}");
    let (complete, _) = completed_calls(&file);
    assert_eq!(complete.len(), 4, "{complete:?}");
}

#[test]
fn ctrl_c_during_a_call_leaves_a_whole_capture() {
    let dir = RunDir::new("pcap-int").unwrap();
    let file = dir.join("int.pcap");
    let listen = format!("127.0.0.1:{}", free_port());
    let answer = Responder::start(&["--listen", &listen, "--play-tone", "1000", "-v"], &[]);
    let uri = format!("sip:bob@{listen}");
    let stdout = std::fs::File::create(dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Command::new(support::sipcheck_bin())
        .args(["call", &uri, "--play-tone", "440", "--duration", "30s"])
        .arg("--pcap")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    // The call is up (the responder's trace shows the ACK; the capture's own file is not
    // looked at: its writer buffers until the end).
    let up = process::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        answer.stderr().contains("\nACK sip:")
    });
    let output = || {
        format!(
            "{}\n{}",
            process::read_lossy(&dir.join("stdout")),
            process::read_lossy(&dir.join("stderr"))
        )
    };
    assert!(up, "no call reached the responder\n{}", answer.output());
    // One second of RTP at least.
    std::thread::sleep(Duration::from_secs(1));
    process::signal(child.id(), "INT").unwrap();
    let status = process::wait_timeout(&mut child, Duration::from_secs(15));
    let Some(_status) = status else {
        let _ = child.kill();
        panic!("sipcheck call did not stop after SIGINT\n{}", output());
    };
    assert!(output().contains("pcap: "), "{}", output());
    assert_clean(&file);
    let sip = tshark(
        &file,
        &["-Y", "sip", "-T", "fields", "-e", "sip.CSeq.method"],
    );
    assert!(sip.lines().any(|m| m == "INVITE"), "{sip}");
    // The hang-up after Ctrl-C is in the file: nothing lost on the way out.
    assert!(sip.lines().any(|m| m == "BYE"), "{sip}\n{}", output());
    let rtp = tshark(&file, &["-q", "-z", "rtp,streams"]);
    assert!(!table_rows(&rtp).is_empty(), "{rtp}");
}

/// The Call-IDs of `file` that have an INVITE (the calls, not the registrations), and how
/// many RTP packets it holds.
fn invited_calls(file: &Path) -> (std::collections::BTreeSet<String>, usize) {
    let text = tshark(
        file,
        &[
            "-Y",
            "sip.CSeq.method == \"INVITE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    );
    let ids = text.lines().map(str::to_owned).collect();
    let rtp = tshark(file, &["-Y", "rtp", "-T", "fields", "-e", "frame.number"]);
    (ids, rtp.lines().count())
}

/// What a run of `kamailio-pcap-failed.yaml` did, from its output and call records.
struct Failing {
    shown: String,
    /// The Call-IDs of the failed calls, of the others.
    failed: std::collections::BTreeSet<String>,
    passed: std::collections::BTreeSet<String>,
    /// The failed calls with RTP (the deaf caller's), and all the calls with RTP.
    failed_rtp: usize,
    all_rtp: usize,
}

/// The run of `kamailio-pcap-failed.yaml` through `kam` with `--pcap FILE --pcap-calls
/// keep`.
fn run_failing(kam: &Kamailio, dir: &RunDir, name: &str, keep: &str) -> Failing {
    run_failing_with(kam, dir, name, &["--pcap-calls", keep])
}

/// [`run_failing`] with the capture's options `pcap`.
fn run_failing_with(kam: &Kamailio, dir: &RunDir, name: &str, pcap: &[&str]) -> Failing {
    let server = kam.server_for("udp");
    let file = dir.join(&format!("{name}.pcap"));
    let calls = dir.join(&format!("{name}.jsonl"));
    let scenario = repo_root().join("tests/peers/scenarios/kamailio-pcap-failed.yaml");
    let out = run_sipcheck(
        [
            "run",
            scenario.to_str().unwrap(),
            "--calls",
            calls.to_str().unwrap(),
            "--pcap",
            file.to_str().unwrap(),
        ]
        .into_iter()
        .chain(pcap.iter().copied()),
        &[("SIP_SERVER", server.as_str())],
    );
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    // Two calls fail on purpose.
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let (mut failed, mut passed) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let (mut failed_rtp, mut all_rtp, mut refused) = (0, 0, 0);
    let mut placed = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(&calls).unwrap().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = r["call_id"].as_str().unwrap().to_owned();
        let role = r["role"].as_str().unwrap().to_owned();
        if ["caller", "deaf", "hopeful"].contains(&role.as_str()) {
            *placed
                .entry(format!("{role} {}", r["user"].as_str().unwrap()))
                .or_insert(0) += 1;
        }
        if r["verdict"] == "failed" {
            failed.insert(id);
        } else {
            passed.insert(id);
        }
        match (r["role"].as_str().unwrap(), r["verdict"] == "failed") {
            ("deaf", true) => (failed_rtp, all_rtp) = (failed_rtp + 1, all_rtp + 1),
            ("caller", false) => all_rtp += 1,
            ("hopeful", true) => refused += 1,
            _ => {}
        }
    }
    // Without `load:` each calling UA places one call, whatever its role's size.
    let each_once: std::collections::BTreeMap<String, i32> = [
        "caller 3605",
        "caller 3606",
        "caller 3607",
        "deaf 3608",
        "hopeful 3609",
    ]
    .into_iter()
    .map(|ua| (ua.to_owned(), 1))
    .collect();
    assert_eq!(placed, each_once, "{shown}");
    // A call whose other end passed is a failed call all the same.
    let passed = &passed - &failed;
    assert!(
        failed_rtp > 0 && refused > 0 && failed.len() == failed_rtp + refused && !passed.is_empty(),
        "{shown}"
    );
    Failing {
        shown,
        failed,
        passed,
        failed_rtp,
        all_rtp,
    }
}

/// Within each UDP port pair of `file` that is not SIP, the packets' times never go back.
fn assert_streams_in_time_order(file: &Path) {
    let fields = tshark(
        file,
        &[
            "-Y",
            "udp && !sip",
            "-T",
            "fields",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "frame.time_epoch",
        ],
    );
    let mut last: std::collections::HashMap<(String, String), f64> = Default::default();
    let mut checked = 0;
    for line in fields.lines() {
        let mut f = line.split('\t');
        let (Some(src), Some(dst), Some(time)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let time: f64 = time.parse().expect("a time");
        let before = last.insert((src.to_owned(), dst.to_owned()), time);
        if let Some(before) = before {
            assert!(before <= time, "{src} to {dst}: {time} after {before}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} packets checked");
}

#[test]
fn pcap_calls_failed_keeps_exactly_the_failed_calls_with_their_streams() {
    let kam = Kamailio::start().expect("start kamailio");
    let dir = RunDir::new("pcap-failed").unwrap();
    let run = run_failing(&kam, &dir, "failed", "failed");
    let shown = &run.shown;
    assert!(
        shown.contains(&format!("({} failed calls kept, ", run.failed.len()))
            && !shown.contains("truncated")
            && !shown.contains("without an end"),
        "{shown}"
    );
    let file = dir.join("failed.pcap");
    assert_clean(&file);
    let (calls, rtp) = invited_calls(&file);
    assert_eq!(calls, run.failed, "{shown}");
    // The deaf caller's calls, with RTP both ways (the refused one has none): 2 streams each.
    let streams = tshark(&file, &["-q", "-z", "rtp,streams"]);
    assert_eq!(table_rows(&streams).len(), 2 * run.failed_rtp, "{streams}");
    assert!(rtp > 100, "{rtp} RTP packets");
    // Each RTP stream's packets are in time order (each media stream's own ring merged with
    // the call's others as the call is written), as Wireshark's stream analysis reads them.
    assert_streams_in_time_order(&file);
    // The registrations are no call's: kept.
    let registers = tshark(
        &file,
        &[
            "-Y",
            "sip.CSeq.method == \"REGISTER\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    );
    assert!(registers.lines().count() >= 10, "{registers}");

    // `all`: every call and stream; the selection's file is a fraction of it.
    let all = run_failing(&kam, &dir, "all", "all");
    let everything = dir.join("all.pcap");
    assert_clean(&everything);
    let (calls, all_rtp) = invited_calls(&everything);
    assert_eq!(calls, &all.failed | &all.passed, "{}", all.shown);
    let streams = tshark(&everything, &["-q", "-z", "rtp,streams"]);
    assert_eq!(table_rows(&streams).len(), 2 * all.all_rtp, "{streams}");
    // A failed call's RTP is about that of a passed one (the deaf caller's 1.5 s, the
    // others' 1 s after the tone was heard): the file holds the failed calls' share of it.
    let per_call = (rtp as f64 / run.failed_rtp as f64) / (all_rtp as f64 / all.all_rtp as f64);
    assert!(
        (0.5..2.5).contains(&per_call),
        "{rtp} RTP packets for {} calls, {all_rtp} for {}",
        run.failed_rtp,
        all.all_rtp
    );
    let size = |f: &Path| std::fs::metadata(f).unwrap().len() as f64;
    let share = run.failed_rtp as f64 / all.all_rtp as f64;
    assert!(
        size(&file) / size(&everything) < 2.5 * share,
        "{} of {} bytes, {} of {} calls with RTP",
        size(&file),
        size(&everything),
        run.failed_rtp,
        all.all_rtp
    );
}

#[test]
fn pcap_calls_n_keeps_the_first_n_failed_calls() {
    let kam = Kamailio::start().expect("start kamailio");
    let dir = RunDir::new("pcap-first").unwrap();
    let run = run_failing(&kam, &dir, "first", "1");
    let (shown, failed) = (&run.shown, &run.failed);
    assert!(
        shown.contains("(1 failed call kept, ")
            && shown.contains(&format!("{} more failed call", run.failed.len() - 1)),
        "{shown}"
    );
    let file = dir.join("first.pcap");
    assert_clean(&file);
    let (calls, _) = invited_calls(&file);
    assert_eq!(calls.len(), 1, "{shown}");
    assert!(calls.is_subset(failed), "{calls:?} {failed:?}");
}

#[test]
fn a_failed_call_over_its_limit_keeps_its_last_packets_and_is_said_truncated() {
    let kam = Kamailio::start().expect("start kamailio");
    let dir = RunDir::new("pcap-limit").unwrap();
    // The deaf caller's call: 1.5 s of RTP both ways, each packet seen by both ends (some
    // 60 KB); the refused call's few messages fit.
    let run = run_failing_with(
        &kam,
        &dir,
        "limit",
        &["--pcap-calls", "failed", "--pcap-call-limit", "16KiB"],
    );
    let shown = &run.shown;
    assert!(
        shown.contains(&format!(
            "{} {} truncated to 16 KiB: their oldest packets are missing",
            run.failed_rtp,
            if run.failed_rtp == 1 { "call" } else { "calls" }
        )),
        "{shown}"
    );
    let file = dir.join("limit.pcap");
    assert_clean(&file);
    // Its last packets: the BYE and its 200, not the INVITE.
    let byes = tshark(
        &file,
        &[
            "-Y",
            "sip.CSeq.method == \"BYE\"",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ],
    );
    let with_bye: std::collections::BTreeSet<String> = byes.lines().map(str::to_owned).collect();
    let (with_invite, _) = invited_calls(&file);
    // Without the SDP that announced them, tshark does not know the RTP as such.
    let rtp = tshark(
        &file,
        &["-Y", "udp && !sip", "-T", "fields", "-e", "frame.number"],
    )
    .lines()
    .count();
    assert_eq!(with_bye.len(), run.failed_rtp, "{byes}");
    assert!(with_bye.is_subset(&run.failed), "{with_bye:?}");
    assert!(with_bye.is_disjoint(&with_invite), "{with_invite:?}");
    assert_eq!(
        with_invite.len(),
        run.failed.len() - run.failed_rtp,
        "{shown}"
    );
    // 16 KiB of RTP datagrams as held (185 bytes: their addresses and payload) at most per
    // call, with its BYE and 200.
    assert!(rtp > 0 && rtp <= 88 * run.failed_rtp, "{rtp} RTP packets");
}

#[test]
fn pcap_calls_needs_pcap_and_run() {
    let out = run_sipcheck(
        ["options", "sip:127.0.0.1:9", "--pcap-calls", "failed"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    let dir = RunDir::new("pcap-calls-usage").unwrap();
    let file = dir.join("x.pcap");
    let out = run_sipcheck(
        [
            "options",
            "sip:127.0.0.1:9",
            "--pcap",
            file.to_str().unwrap(),
            "--pcap-calls",
            "failed",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pcap-calls applies to `run` only"),
        "{}",
        describe_output(&out)
    );
    let scenario = repo_root().join("tests/peers/scenarios/busy.yaml");
    let out = run_sipcheck(
        [
            "run",
            scenario.to_str().unwrap(),
            "--pcap",
            file.to_str().unwrap(),
            "--pcap-calls",
            "some",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
}
