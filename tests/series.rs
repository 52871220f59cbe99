//! `sipcheck run --series` and `--metrics`: a few seconds of load on loopback write a time
//! series whose rows add up to the run's totals, as the run goes and on Ctrl-C, and an
//! OpenMetrics file that parses.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::reports::{run_scenario as run, Reports};
use support::{describe_output, free_port};

const SCENARIO: &str = "tests/peers/scenarios/series-direct.yaml";

/// A CSV series: its header, then each row as column → field (empty: nothing measured).
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("series written");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    assert_eq!(header[0], "t_s", "{text}");
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), header.len(), "{line}\n{text}");
            header
                .iter()
                .zip(fields)
                .map(|(h, f)| ((*h).to_owned(), f.to_owned()))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|e| panic!("{column}: {e}: {row:?}"))
}

fn envs() -> (String, String) {
    (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    )
}

/// OpenMetrics text: every line a `# HELP`/`# TYPE` comment or a `sipcheck_…` sample with a
/// number, the last `# EOF`.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
    let mut samples = BTreeMap::new();
    for line in &lines[..lines.len() - 1] {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            name.starts_with("sipcheck_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{line}"
        );
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(samples.insert(name.to_owned(), value).is_none(), "{line}");
    }
    samples
}

#[test]
fn a_short_load_writes_a_series_whose_rows_add_up_to_the_summary_and_metrics_that_parse() {
    let (callee, caller) = envs();
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let series = reports.path("series.csv");
    let metrics = reports.path("metrics.txt");
    let out = run(
        SCENARIO,
        &[
            "--series",
            series.to_str().unwrap(),
            "--series-interval",
            "500ms",
            "--metrics",
            metrics.to_str().unwrap(),
        ],
        &envs,
        &reports,
    );
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let v = reports.summary();
    let rows = read_csv(&series);
    // 8 calls at 4/s, each ~1.2 s long: a few seconds, in half-second rows without holes.
    assert!(rows.len() >= 5, "{rows:?}");
    let mut at = 0.0;
    for (i, row) in rows.iter().enumerate() {
        assert!((num(row, "t_s") - at).abs() < 1e-6, "row {i}: {rows:?}");
        let end = num(row, "end_s");
        if i + 1 < rows.len() {
            assert!((end - at - 0.5).abs() < 1e-6, "row {i}: {rows:?}");
        }
        at = end;
    }
    assert!(
        (at - v["duration_s"].as_f64().unwrap()).abs() < 1.0,
        "the last row ends at the run's end: {at} {v}"
    );
    let sum = |column: &str| rows.iter().map(|r| num(r, column)).sum::<f64>();
    assert_eq!(
        sum("started"),
        v["calls"]["started"].as_f64().unwrap(),
        "{rows:?}\n{v}"
    );
    assert_eq!(
        sum("passed"),
        v["calls"]["passed"].as_f64().unwrap(),
        "{rows:?}"
    );
    assert_eq!(sum("failed"), 0.0, "{rows:?}");
    assert_eq!(sum("started"), 8.0, "{rows:?}");
    // The calls started over two seconds, not all in one row.
    assert!(
        rows.iter().filter(|r| num(r, "started") > 0.0).count() >= 3,
        "{rows:?}"
    );
    assert_eq!(num(rows.last().unwrap(), "active"), 0.0, "{rows:?}");
    // Setup percentiles where calls ended, none where none did.
    for row in &rows {
        let ended = num(row, "passed") + num(row, "failed");
        assert_eq!(
            ended > 0.0,
            !row["invite_to_200_p50_ms"].is_empty(),
            "{row:?}"
        );
        if ended > 0.0 {
            let p50 = num(row, "invite_to_200_p50_ms");
            assert!(p50 >= 100.0, "100 ms of ringing: {row:?}");
            assert!(p50 <= num(row, "invite_to_200_max_ms"), "{row:?}");
            assert_eq!(num(row, "rtp_loss_ratio"), 0.0, "{row:?}");
        }
    }

    let text = std::fs::read_to_string(&metrics).expect("metrics written");
    let m = parse_openmetrics(&text);
    assert_eq!(m["sipcheck_calls_started"], 8.0, "{text}");
    assert_eq!(m["sipcheck_calls_passed"], 8.0, "{text}");
    assert_eq!(m["sipcheck_calls_failed"], 0.0, "{text}");
    assert_eq!(m["sipcheck_calls_failed_ratio"], 0.0, "{text}");
    assert_eq!(m["sipcheck_verdict"], 1.0, "{text}");
    assert_eq!(m["sipcheck_rtp_loss_ratio"], 0.0, "{text}");
    let p99 = v["metrics"]["invite_to_200"]["p99_ms"].as_f64().unwrap();
    assert!(m["sipcheck_setup_latency_p50_seconds"] >= 0.1, "{text}");
    assert!(
        (m["sipcheck_setup_latency_p99_seconds"] * 1000.0 - p99).abs() < 0.5,
        "{text}\n{v}"
    );
    assert!(m.contains_key("sipcheck_mos_p5"), "{text}");
}

#[test]
fn rows_are_on_disk_while_the_run_goes_and_the_last_ones_written_on_ctrl_c() {
    let (callee, caller) = envs();
    let reports = Reports::new();
    let series = reports.path("series.jsonl");
    let path = support::repo_root().join(SCENARIO);
    let stdout = std::fs::File::create(reports.path("stdout")).unwrap();
    let stderr = std::fs::File::create(reports.path("stderr")).unwrap();
    // Calls that would last 60 s: only Ctrl-C ends this run in time.
    let mut child = std::process::Command::new(support::sipcheck_bin())
        .args(["run", path.to_str().unwrap(), "--json"])
        .arg(reports.json())
        .arg("--series")
        .arg(&series)
        .args(["--series-interval", "250ms"])
        .env("CALLEE_LISTEN", &callee)
        .env("CALLER_LISTEN", &caller)
        .env("HANGUP_AFTER", "60s")
        .env("TOTAL_CALLS", "4")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let rows = |series: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(series)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let started = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|r| r["started"].as_u64().unwrap())
            .sum::<u64>()
    };
    // Every call started and a second of rows written, while the calls are still up.
    let written =
        support::process::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            let r = rows(&series);
            r.len() >= 8 && started(&r) == 4
        });
    let output = || {
        format!(
            "{}\n{}",
            support::process::read_lossy(&reports.path("stdout")),
            support::process::read_lossy(&reports.path("stderr"))
        )
    };
    if !written {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no rows while the run went: {:?}\n{}",
            rows(&series),
            output()
        );
    }
    let before = rows(&series);
    assert!(
        before.iter().all(|r| r["active"].as_u64().is_some()),
        "{before:?}"
    );
    support::process::signal(child.id(), "INT").unwrap();
    let status = support::process::wait_timeout(&mut child, Duration::from_secs(30));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sipcheck did not stop after SIGINT\n{}", output());
    };
    assert_eq!(status.code(), Some(130), "{}", output());
    let after = rows(&series);
    assert!(after.len() >= before.len(), "{after:?}");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "rows are never rewritten"
    );
    let v = reports.summary();
    assert_eq!(
        started(&after),
        v["calls"]["started"].as_u64().unwrap(),
        "{v}"
    );
    let ended: u64 = after
        .iter()
        .map(|r| r["passed"].as_u64().unwrap() + r["failed"].as_u64().unwrap())
        .sum();
    assert_eq!(
        ended, 4,
        "the interrupted calls end in the last rows: {after:?}"
    );
    assert_eq!(after.last().unwrap()["active"], 0, "{after:?}");
}

/// Reads the series with Python's `csv` module and the metrics with `prometheus_client`'s
/// OpenMetrics parser (PyPI `prometheus-client`, installed by `scripts/test.sh --install`);
/// prints `started SUM`, `rows N`, then `NAME VALUE` per sample.
const READ: &str = r#"
import csv, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families

with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
print("started", sum(int(r["started"]) for r in rows))
print("rows", len(rows))
with open(sys.argv[2]) as f:
    for family in text_string_to_metric_families(f.read()):
        assert family.type == "gauge", family
        for sample in family.samples:
            assert sample.labels == {}, sample
            print(sample.name, sample.value)
"#;

#[test]
fn python_reads_the_series_with_csv_and_the_metrics_with_an_openmetrics_parser() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .output()
        .expect("python3 runs (Debian package python3)");
    assert!(
        probe.status.success(),
        "Python's prometheus_client module is missing: install it with \
         `python3 -m pip install prometheus-client==0.26.0` (scripts/test.sh --install does): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let (callee, caller) = envs();
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
        ("TOTAL_CALLS", "4"),
    ];
    let reports = Reports::new();
    let series = reports.path("series.csv");
    let metrics = reports.path("metrics.txt");
    let out = run(
        SCENARIO,
        &[
            "--series",
            series.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
        &envs,
        &reports,
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let v = reports.summary();
    let read = std::process::Command::new("python3")
        .args(["-c", READ])
        .arg(&series)
        .arg(&metrics)
        .output()
        .expect("python3 runs");
    let shown = describe_output(&read);
    assert!(read.status.success(), "{shown}");
    let printed: BTreeMap<String, f64> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                k.to_owned(),
                v.parse().unwrap_or_else(|e| panic!("{l}: {e}")),
            )
        })
        .collect();
    let started = v["calls"]["started"].as_f64().unwrap();
    assert_eq!(started, 4.0, "{v}");
    assert_eq!(printed["started"], started, "{shown}");
    assert!(printed["rows"] >= 2.0, "{shown}");
    assert_eq!(printed["sipcheck_calls_started"], started, "{shown}");
    assert_eq!(printed["sipcheck_calls_failed"], 0.0, "{shown}");
    assert_eq!(printed["sipcheck_verdict"], 1.0, "{shown}");
    assert!(
        printed["sipcheck_setup_latency_p99_seconds"] >= 0.1,
        "{shown}"
    );
    assert!(printed["sipcheck_mos_p5"] > 1.0, "{shown}");
}
