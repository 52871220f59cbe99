//! `sipcheck run --calls FILE.jsonl --junit-per-call`: one record per call end, valid against
//! `docs/call-record.schema.json`, failed calls with their reason and ladder; one JUnit test
//! case per call, valid against both Jenkins schemas.

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use support::reports::{assert_valid_junit, run_scenario as run, Reports};
use support::{describe_output, free_port, repo_root};

fn schema() -> jsonschema::Validator {
    let path = repo_root().join("docs/call-record.schema.json");
    let schema = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn schema_errors(schema: &jsonschema::Validator, v: &Value) -> Vec<String> {
    schema
        .iter_errors(v)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Every line of `path`, parsed and checked against the schema.
fn records(path: &Path) -> Vec<Value> {
    let schema = schema();
    let text = std::fs::read_to_string(path).expect("call records written");
    assert!(text.ends_with('\n'), "every record ends its line: {text}");
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("each line is one JSON object");
            let errors = schema_errors(&schema, &v);
            assert!(
                errors.is_empty(),
                "a record breaks docs/call-record.schema.json:\n{}\n{v:#}",
                errors.join("\n")
            );
            v
        })
        .collect()
}

/// A test case: name, outcome element (or "passed"), its text.
type CaseRow = (String, String, String);

/// The `calls` suite's attributes and test cases.
fn call_cases(xml: &str) -> (HashMap<String, String>, Vec<CaseRow>) {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("calls"))
        .expect("a calls suite");
    let attrs = suite
        .attributes()
        .map(|a| (a.name().to_owned(), a.value().to_owned()))
        .collect();
    let cases = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let outcome = case
                .children()
                .find(|n| n.has_tag_name("failure") || n.has_tag_name("skipped"));
            (
                case.attribute("name").unwrap().to_owned(),
                outcome.map_or("passed".into(), |n| n.tag_name().name().to_owned()),
                outcome
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    (attrs, cases)
}

#[test]
fn every_call_end_has_one_valid_record_and_one_junit_case_the_failed_one_with_its_ladder() {
    let callee = format!("127.0.0.1:{}", free_port());
    let busy = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let out = run(
        "tests/peers/scenarios/calls-mixed.yaml",
        &["--calls", calls.to_str().unwrap(), "--junit-per-call"],
        &[
            ("CALLEE_LISTEN", callee.as_str()),
            ("BUSY_LISTEN", busy.as_str()),
        ],
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let summary = reports.summary();
    assert_eq!(summary["calls"]["started"], 3, "{summary}");
    assert_eq!(summary["calls"]["failed"], 1, "{summary}");

    // One line per call end: three calls, each seen by both its ends.
    let lines = records(&calls);
    assert_eq!(lines.len(), 6, "{shown}\n{lines:#?}");
    let mut ends: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &lines {
        assert_eq!(r["run_id"], summary["run_id"], "{r}");
        ends.entry(r["call_id"].as_str().unwrap())
            .or_default()
            .push(r["side"].as_str().unwrap());
    }
    assert_eq!(ends.len(), 3, "{ends:?}");
    for sides in ends.values_mut() {
        sides.sort_unstable();
        assert_eq!(sides, &["callee", "caller"]);
    }
    let failed: Vec<&Value> = lines.iter().filter(|r| r["verdict"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    let f = failed[0];
    assert_eq!(f["role"], "hopeful", "{f}");
    assert_eq!(f["final_code"], 486, "{f}");
    assert_eq!(f["answer"], Value::Null, "{f}");
    assert_eq!(f["failures"][0]["kind"], "sip_486", "{f}");
    assert_eq!(f["failures"][0]["step"], "expect", "{f}");
    assert!(f["failures"][0]["line"].as_u64().unwrap() > 0, "{f}");
    let ladder = f["ladder"].as_array().unwrap();
    assert!(
        ladder
            .iter()
            .any(|r| r["line"] == "SIP/2.0 486 Busy Here" && r["direction"] == "received"),
        "{f}"
    );
    // The answered calls: their instants in order, their timings filled.
    for r in lines
        .iter()
        .filter(|r| r["role"] == "caller" && r["side"] == "caller")
    {
        assert_eq!(r["verdict"], "passed", "{r}");
        assert_eq!(r["final_code"], 200, "{r}");
        assert_eq!(r["bye_code"], 200, "{r}");
        assert_eq!(r["ladder"], Value::Array(Vec::new()), "{r}");
        let at = |k: &str| r[k]["offset_ms"].as_f64().unwrap();
        assert!(
            at("start") <= at("answer") && at("answer") <= at("end"),
            "{r}"
        );
        let duration = r["timings"]["duration_ms"].as_f64().unwrap();
        assert!((500.0..3_000.0).contains(&duration), "{r}");
        assert!(r["timings"]["invite_to_200_ms"].as_f64().is_some(), "{r}");
        assert!(r["timings"]["bye_rtt_ms"].as_f64().is_some(), "{r}");
    }

    // The schema refuses what a record must never be: a failed call without its reasons.
    let mut broken = f.clone();
    broken["failures"] = Value::Array(Vec::new());
    assert!(!schema_errors(&schema(), &broken).is_empty(), "{broken}");

    // JUnit: one test case per call end, exactly the failed one failing, valid XML.
    assert_valid_junit(&reports.junit());
    let xml = reports.junit_text();
    let (attrs, cases) = call_cases(&xml);
    assert_eq!(attrs["tests"], "6", "{xml}");
    assert_eq!(attrs["failures"], "1", "{xml}");
    assert_eq!(attrs["skipped"], "0", "{xml}");
    let failing: Vec<_> = cases.iter().filter(|c| c.1 == "failure").collect();
    assert_eq!(failing.len(), 1, "{xml}");
    let (name, _, text) = failing[0];
    assert_eq!(
        name,
        &format!("hopeful #1 {}", f["call_id"].as_str().unwrap()),
        "{xml}"
    );
    assert!(text.contains("SIP/2.0 486 Busy Here"), "{xml}");
    assert!(text.contains("sip_486"), "{xml}");
}

#[test]
fn calls_not_started_are_skipped_test_cases_never_passed() {
    let callee = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let out = run(
        "tests/peers/scenarios/not-started.yaml",
        &["--calls", calls.to_str().unwrap(), "--junit-per-call"],
        &[("CALLEE_LISTEN", callee.as_str())],
        &reports,
    );
    let shown = describe_output(&out);
    let summary = reports.summary();
    let not_started = summary["calls"]["not_started"].as_u64().unwrap();
    assert!(not_started >= 1, "{shown}\n{summary}");
    let started = summary["calls"]["started"].as_u64().unwrap();
    // Each started call has its two ends' records; the others none.
    assert_eq!(records(&calls).len() as u64, 2 * started, "{shown}");
    assert_valid_junit(&reports.junit());
    let xml = reports.junit_text();
    let (attrs, cases) = call_cases(&xml);
    assert_eq!(attrs["skipped"], not_started.to_string(), "{xml}");
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.0.starts_with("not started #") && c.1 == "skipped")
            .count() as u64,
        not_started,
        "{xml}"
    );
    assert_eq!(
        cases.iter().filter(|c| c.1 == "passed").count() as u64,
        2 * started,
        "{xml}"
    );
}

#[test]
fn junit_per_call_without_a_junit_report_is_refused_before_anything_is_sent() {
    let out = support::run_sipcheck_with_timeout(
        [
            "run",
            repo_root()
                .join("tests/peers/scenarios/calls-mixed.yaml")
                .to_str()
                .unwrap(),
            "--junit-per-call",
        ],
        &[
            ("CALLEE_LISTEN", "127.0.0.1:9"),
            ("BUSY_LISTEN", "127.0.0.1:9"),
        ],
        std::time::Duration::from_secs(30),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("needs a JUnit report"), "{shown}");
}

#[test]
fn records_are_written_as_calls_end_and_ctrl_c_flushes_the_calls_it_cuts_short() {
    let callee = format!("127.0.0.1:{}", free_port());
    let busy = format!("127.0.0.1:{}", free_port());
    let reports = Reports::new();
    let calls = reports.path("calls.jsonl");
    let path = repo_root().join("tests/peers/scenarios/calls-mixed.yaml");
    let stderr = std::fs::File::create(reports.dir.join("stderr")).unwrap();
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .arg("--calls")
        .arg(&calls)
        // The answered calls stay up until the interruption.
        .args(["--set", "roles.caller.steps.2.hangup.after=60s"])
        .env("CALLEE_LISTEN", &callee)
        .env("BUSY_LISTEN", &busy)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    // The refused call ends at once: both its records are in the file while the run goes on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let early = loop {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record of the refused call while the run goes on"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    assert_eq!(early.lines().count(), 2, "{early}");
    assert!(
        early
            .lines()
            .all(|l| l.contains("\"hopeful\"") || l.contains("\"busy\"")),
        "{early}"
    );
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, std::time::Duration::from_secs(30));
    let output = support::process::read_lossy(&reports.dir.join("stderr"));
    let Some(status) = status else {
        let _ = child.kill();
        panic!("sipcheck did not stop after SIGINT\n{output}");
    };
    assert_eq!(status.code(), Some(130), "{output}");
    let v = reports.summary();
    assert_eq!(v["calls"]["started"], 3, "{v}");
    // Every call end is in the file, the cut-short ones with the interruption as their reason.
    let lines = records(&calls);
    assert_eq!(lines.len(), 6, "{output}\n{lines:#?}");
    let cut: Vec<&Value> = lines
        .iter()
        .filter(|r| r["role"] == "caller" || r["role"] == "callee")
        .collect();
    assert_eq!(cut.len(), 4, "{lines:#?}");
    for r in cut {
        assert_eq!(r["verdict"], "failed", "{r}");
        assert!(
            r["failures"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == "interrupted"),
            "{r}"
        );
    }
}

#[test]
fn records_on_standard_output_have_it_to_themselves_and_share_it_with_no_other_report() {
    let callee = format!("127.0.0.1:{}", free_port());
    let busy = format!("127.0.0.1:{}", free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("BUSY_LISTEN", busy.as_str()),
    ];
    let path = repo_root().join("tests/peers/scenarios/calls-mixed.yaml");
    let path = path.to_str().unwrap();
    let out = support::run_sipcheck_with_timeout(
        ["run", path, "--calls", "-"],
        &envs,
        std::time::Duration::from_secs(60),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 6, "{shown}");
    assert!(
        stdout
            .lines()
            .all(|l| l.starts_with("{\"schema\":\"sipcheck.call/1\"")),
        "only records on stdout: {shown}"
    );
    let out = support::run_sipcheck_with_timeout(
        ["run", path, "--calls", "-", "--json", "-"],
        &envs,
        std::time::Duration::from_secs(30),
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("the JSON and call records reports cannot both go to standard output"),
        "{shown}"
    );
}
