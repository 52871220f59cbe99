//! Conference verification against a real mixer: linphonec (package `linphone-cli`) as the
//! conference focus, three sipcheck roles calling it, each playing its party tone and
//! expecting to hear the other two (`expect: { hears }`) and not itself; and SIPp `-rtp_echo`
//! as a room that sends each party its own audio back (an echo).
//!
//! linphonec 5.1 crashes as soon as a participant leaves its conference (see
//! `support/linphone.rs`), so the calls are judged by their steps: the `expect: { hears }`
//! steps — what this file tests — run while all three are in the mix; the hang-ups after them
//! meet the crash (the first party's BYE is answered, the others' fail as the focus is gone).
//!
//! Run under the shared peers lock: `flock /tmp/sipcheck-peers.lock cargo test --test conference`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::describe_output;
use support::linphone::Linphone;
use support::reports::Reports;

/// The lines of alice's `expect: { hears }` and `hangup` in [`scenario`]; each role after
/// her is 7 lines further down.
const EXPECT_LINE: u64 = 12;
const HANGUP_LINE: u64 = 13;

/// Three parties calling `focus`, each `hears` the other two `within`.
fn scenario(focus: &str, within: &str) -> String {
    let mut text = String::from(
        "name: conference-linphone\n\
         target: { direct: true, domain: 127.0.0.1 }\n\
         accounts:\n  range: { from: 1000, count: 3 }\n\
         media: { codecs: [PCMU] }\n\
         roles:\n",
    );
    let names = ["alice", "bob", "carol"];
    for (i, name) in names.iter().enumerate() {
        let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
        // Seven lines a role: its name, accounts, steps, call, play, expect, hangup.
        text.push_str(&format!(
            "  {name}:\n    accounts: {}\n    steps:\n      - call: {{ to: \"{focus}\", timeout: 20s }}\n      - play: {{ party: true }}\n      - expect: {{ hears: [{}], within: {within} }}\n      - hangup: {{ after: 3s }}\n",
            1000 + i,
            others.join(", ")
        ));
    }
    text
}

/// The call records of a run, by role.
fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("call records written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs the three parties against linphonec, which merges the calls `merge` into its
/// conference; the call records and everything printed.
fn conference(merge: &[u32], within: &str) -> (Vec<Value>, String) {
    let mut focus = Linphone::start().expect("start linphonec");
    let reports = Reports::new();
    let file = reports.path("conference.yaml");
    let text = scenario(&focus.uri(), within);
    std::fs::write(&file, &text).unwrap();
    let calls = reports.path("calls.jsonl");
    let calls_arg = calls.to_str().unwrap().to_owned();
    let file_arg = file.to_str().unwrap().to_owned();
    let sipcheck = std::thread::spawn({
        let reports_json = reports.json();
        let reports_junit = reports.junit();
        move || {
            support::run_sipcheck_with_timeout(
                [
                    "run",
                    file_arg.as_str(),
                    "--calls",
                    calls_arg.as_str(),
                    "--json",
                    reports_json.to_str().unwrap(),
                    "--junit",
                    reports_junit.to_str().unwrap(),
                ],
                &[],
                Duration::from_secs(90),
            )
        }
    });
    let merged = focus.answer_and_merge(3, merge, Duration::from_secs(20));
    let out = sipcheck.join().expect("sipcheck ran");
    let shown = format!(
        "{}\n--- linphonec ---\n{}\n(logs in {})\n--- scenario ---\n{text}",
        describe_output(&out),
        focus.stdout(),
        focus.log_path().display()
    );
    merged.unwrap_or_else(|e| panic!("{e:#}\n{shown}"));
    (records(&calls), shown)
}

/// The failures of a call record at `line`.
fn failures_at(record: &Value, line: u64) -> Vec<&Value> {
    record["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["line"] == line)
        .collect()
}

#[test]
fn three_parties_in_linphones_conference_each_hear_the_other_two_and_not_themselves() {
    let (records, shown) = conference(&[1, 2, 3], "15s");
    assert_eq!(records.len(), 3, "{shown}");

    for r in &records {
        let role = r["role"].as_str().unwrap();
        assert!(
            failures_at(r, EXPECT_LINE + 7 * role_index(role)).is_empty(),
            "{role}: {r:#}\n{shown}"
        );
        assert_eq!(r["audio"]["verified"], 1, "{role}: {r:#}\n{shown}");
        // Anything else failed at the hang-up, or as a transport error of the call: linphonec's
        // crash as the first party leaves.
        for f in r["failures"].as_array().unwrap() {
            assert!(
                f["line"] == HANGUP_LINE + 7 * role_index(role) || f["kind"] == "transport",
                "{role}: {r:#}\n{shown}"
            );
        }
    }
}

#[test]
fn a_party_left_out_of_linphones_conference_is_named_by_the_others() {
    // Calls 3 (up) and 1 are merged; call 2 stays answered and on hold, out of the mix.
    let (records, shown) = conference(&[3, 1], "8s");
    assert_eq!(records.len(), 3, "{shown}");
    let left_out = role_of_call(&shown, 2);
    for r in &records {
        let role = r["role"].as_str().unwrap();
        let failures = failures_at(r, EXPECT_LINE + 7 * role_index(role));
        let [f] = &failures[..] else {
            panic!("{role}: one failure of the hears step expected: {r:#}\n{shown}")
        };
        assert_eq!(f["kind"], "no_audio", "{role}: {r:#}");
        let expected = if role == left_out {
            let others: Vec<&str> = ["alice", "bob", "carol"]
                .into_iter()
                .filter(|n| *n != role)
                .collect();
            format!(
                "conference: not_heard: [{}] within 8.0 s (heard: [])",
                others.join(", ")
            )
        } else {
            let heard = ["alice", "bob", "carol"]
                .into_iter()
                .find(|n| *n != role && *n != left_out)
                .unwrap();
            format!("conference: not_heard: [{left_out}] within 8.0 s (heard: [{heard}])")
        };
        assert_eq!(
            f["message"].as_str().unwrap(),
            expected,
            "{role}: {r:#}\n{shown}"
        );
    }
}

/// The role whose call linphonec numbered `id` (the calls arrive in any order).
fn role_of_call(shown: &str, id: u32) -> &'static str {
    ["alice", "bob", "carol"]
        .into_iter()
        .find(|name| {
            shown.lines().any(|l| {
                l.contains(&format!("assigned id {id}"))
                    && l.contains(&format!("sip:{}@", 1000 + role_index(name)))
            })
        })
        .unwrap_or_else(|| panic!("no call {id} in linphonec's output\n{shown}"))
}

fn role_index(role: &str) -> u64 {
    match role {
        "alice" => 0,
        "bob" => 1,
        "carol" => 2,
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_room_that_sends_each_party_its_own_audio_fails_every_party_as_an_echo() {
    // SIPp's `-rtp_echo` as the room: each party gets back what it sent, its own tone only.
    let port = support::free_port();
    let sipp = support::sipp::Sipp::start_builtin_uas(port, &["-rtp_echo"]).expect("start sipp");
    let reports = Reports::new();
    let file = reports.path("echo-room.yaml");
    let text = format!(
        "name: echo-room\n\
         target: {{ direct: true, domain: 127.0.0.1 }}\n\
         accounts:\n  range: {{ from: 1000, count: 2 }}\n\
         media: {{ codecs: [PCMU] }}\n\
         roles:\n\
         \x20 alice:\n    accounts: 1000\n    steps:\n      - call: {{ to: \"sip:room@127.0.0.1:{port}\" }}\n      - play: {{ party: true }}\n      - expect: {{ hears: bob, within: 5s }}\n      - hangup: {{ after: 1s }}\n\
         \x20 bob:\n    accounts: 1001\n    steps:\n      - call: {{ to: \"sip:room@127.0.0.1:{port}\" }}\n      - play: {{ party: true }}\n      - expect: {{ hears: alice, within: 5s }}\n      - hangup: {{ after: 1s }}\n"
    );
    std::fs::write(&file, &text).unwrap();
    let calls = reports.path("calls.jsonl");
    let out = support::run_sipcheck_with_timeout(
        [
            "run",
            file.to_str().unwrap(),
            "--calls",
            calls.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(60),
    );
    let shown = format!("{}\n{}\n{text}", describe_output(&out), sipp.log());
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let records = records(&calls);
    assert_eq!(records.len(), 2, "{shown}");
    for r in &records {
        let role = r["role"].as_str().unwrap();
        let (own, hz) = match role {
            "alice" => ("alice", 1750),
            _ => ("bob", 1950),
        };
        let [f] = &r["failures"].as_array().unwrap()[..] else {
            panic!("{role}: one failure expected: {r:#}\n{shown}")
        };
        assert_eq!(f["kind"], "crossed_audio", "{r:#}");
        assert_eq!(f["step"], "expect", "{r:#}");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "conference: echo: {own} heard its own party tone ({hz} Hz) back, at -"
            )),
            "{message}\n{shown}"
        );
    }
}
