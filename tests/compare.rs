//! `sipcheck compare`: two real runs of a small self-test scenario, one with its callees
//! deliberately slowed, compared as a CI baseline gate would.

mod support;

use support::reports::{run_scenario as run, Reports};
use support::{describe_output, free_port, run_sipcheck};

const SCENARIO: &str = "tests/peers/scenarios/compare-direct.yaml";

/// Runs the scenario (extra flags appended) and returns its reports, asserting it ran.
fn run_once(extra: &[&str]) -> Reports {
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let out = run(SCENARIO, extra, &envs, &reports);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let v = reports.summary();
    assert_eq!(v["calls"]["passed"], 2, "{v}");
    reports
}

fn compare(base: &Reports, new: &Reports, extra: &[&str]) -> std::process::Output {
    let (b, n) = (base.json(), new.json());
    let mut args = vec![
        "compare",
        b.to_str().expect("a UTF-8 path"),
        n.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    run_sipcheck(args, &[])
}

#[test]
fn compare_fails_a_run_with_slowed_call_setup_naming_it_and_passes_a_run_against_itself() {
    let base = run_once(&[]);
    // The callees ring 700 ms instead of 100 ms before they answer.
    let slow = run_once(&["--set", "roles.callee.steps.0.answer.ring=700ms"]);
    let gates = [
        "--max-regression",
        "setup.p99=50%",
        "--max-regression",
        "rtp.loss=0.5pt",
    ];

    let out = compare(&base, &slow, &gates);
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL: regressed: invite_to_200.p99\n"),
        "{shown}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("invite_to_200.p99 "))
        .unwrap_or_else(|| panic!("no setup row: {shown}"));
    assert!(row.contains("REGRESSED (max 50%)"), "{shown}");

    // The same, as JSON.
    let mut json_gates = gates.to_vec();
    json_gates.push("--json");
    let out = compare(&base, &slow, &json_gates);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], "sipcheck.compare/1");
    assert_eq!(v["passed"], false);
    assert_eq!(v["regressions"], serde_json::json!(["invite_to_200.p99"]));
    let rows = v["rows"].as_array().expect("rows");
    let setup = rows
        .iter()
        .find(|r| r["name"] == "invite_to_200.p99")
        .expect("a setup row");
    assert_eq!(setup["judgement"], "regressed", "{setup}");
    assert!(setup["new"].as_f64().unwrap() >= 700.0, "{setup}");

    // A run compared with itself is within every tolerance, even a zero one.
    for (b, n) in [(&base, &base), (&slow, &slow)] {
        let out = compare(
            b,
            n,
            &[
                "--max-regression",
                "p99=0%",
                "--max-regression",
                "rtp.loss=0pt",
            ],
        );
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(0), "{shown}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("PASS: no figure regressed"),
            "{shown}"
        );
    }
    // Faster than its baseline is no regression.
    let out = compare(&slow, &base, &gates);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
}

#[test]
fn compare_refuses_a_file_that_is_not_a_summary_and_an_unknown_metric_with_exit_2() {
    let dir = support::process::RunDir::new("compare").expect("a run directory");
    let other = dir.join("other.json");
    std::fs::write(&other, r#"{"verdict": "pass", "status": 200}"#).unwrap();
    let text = dir.join("text.json");
    std::fs::write(&text, "PASS\n").unwrap();
    let other = other.to_str().unwrap();
    for bad in [other, text.to_str().unwrap()] {
        let out = run_sipcheck(["compare", bad, bad], &[]);
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a sipcheck run summary"),
            "{shown}"
        );
    }
    let summary = support::repo_root().join("tests/snapshots/compare-summary.json");
    let summary = summary.to_str().unwrap();
    let out = run_sipcheck(
        [
            "compare",
            summary,
            summary,
            "--max-regression",
            "setup.p98=1%",
        ],
        &[],
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown metric `invite_to_200.p98`"),
        "{shown}"
    );
    assert!(stderr.contains("valid names: "), "{shown}");
    assert!(stderr.contains("invite_to_200.p99,"), "{shown}");
    let out = run_sipcheck(
        ["compare", summary, summary, "--max-failed-increase", "1ms"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
}
