//! The JSON summary's histograms decode in another language: Python's `hdrh` (PyPI
//! `hdrhistogram`, installed by `scripts/test.sh --install`) reads every one of a real run's
//! and finds the count and percentiles sipcheck reported.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::reports::{run_scenario as run, Reports};
use support::{describe_output, free_port};

/// Decodes every histogram of the summary on stdin; prints `name count p50 p90 p99 max` per
/// histogram (values as recorded: microseconds, or ppm). A percentile is the highest
/// equivalent value of the sample at rank ceil(p·n), as sipcheck (and HdrHistogram's Java and
/// Rust libraries) rank; `hdrh`'s own `get_value_at_percentile` rounds the rank to the
/// nearest, so at some sizes it picks the neighbouring sample.
const DECODE: &str = r#"
import json, math, sys
from hdrh.histogram import HdrHistogram

def percentile(d, p):
    rank = max(1, math.ceil(p / 100 * d.get_total_count()))
    seen = 0
    for item in d.get_recorded_iterator():
        seen += item.count_at_value_iterated_to
        if seen >= rank:
            return d.get_highest_equivalent_value(item.value_iterated_to)
    raise AssertionError("rank beyond the count")

doc = json.load(sys.stdin)
hists = dict(("metrics." + k, v) for k, v in doc["metrics"].items())
hists["rtp.loss_per_stream_ppm"] = doc["rtp"]["loss_per_stream_ppm"]
for name, h in sorted(hists.items()):
    d = HdrHistogram.decode(h["histogram"])
    n = d.get_total_count()
    vals = [percentile(d, p) for p in (50, 90, 99)] + [d.get_max_value()] if n else []
    print(name, n, *(vals or ["-"] * 4))
"#;

#[test]
fn python_hdrh_decodes_every_histogram_of_a_summary_to_sipchecks_count_and_percentiles() {
    let probe = Command::new("python3")
        .args(["-c", "import hdrh.histogram"])
        .output()
        .expect("python3 runs (Debian package python3)");
    assert!(
        probe.status.success(),
        "Python's hdrh module is missing: install it with \
         `python3 -m pip install hdrhistogram==0.10.8` (scripts/test.sh --install does): {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let out = run(
        "tests/peers/scenarios/compare-direct.yaml",
        &[],
        &envs,
        &reports,
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let v = reports.summary();
    let text = std::fs::read(reports.json()).expect("the summary");

    let mut python = Command::new("python3")
        .args(["-c", DECODE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(&text)
        .expect("the summary written to python3");
    let decoded = python.wait_with_output().expect("python3 ends");
    let shown = describe_output(&decoded);
    assert!(decoded.status.success(), "{shown}");
    let lines = String::from_utf8_lossy(&decoded.stdout).into_owned();

    let mut nonempty = 0;
    for line in lines.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (json, suffix, scale) = match f[0].strip_prefix("metrics.") {
            Some(m) => (&v["metrics"][m], "_ms", 1000.0),
            None => (&v["rtp"]["loss_per_stream_ppm"], "", 1.0),
        };
        assert_eq!(f[1], json["count"].to_string(), "{line}: {json}");
        if f[1] == "0" {
            continue;
        }
        nonempty += 1;
        for (i, stat) in ["p50", "p90", "p99", "max"].iter().enumerate() {
            let ours = json[format!("{stat}{suffix}")].as_f64().expect(stat) * scale;
            let theirs: f64 = f[2 + i].parse().expect("a number");
            assert!(
                (ours - theirs).abs() < 1e-6 * theirs.max(1.0),
                "{} {stat}: sipcheck {ours}, hdrh {theirs}\n{shown}",
                f[0]
            );
        }
    }
    // Every metric of the summary and the loss histogram, and the calls' own timings among
    // them with data.
    assert_eq!(
        lines.lines().count(),
        v["metrics"].as_object().expect("metrics").len() + 1,
        "{shown}"
    );
    assert!(nonempty >= 5, "{shown}");
}

/// Reads the interval log named by argv[1] with `hdrh`'s own log reader; prints `tag
/// intervals count` per tag.
const READ_LOG: &str = r#"
import sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 3600000000, 3))
tags = {}
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    n, total = tags.get(h.get_tag(), (0, 0))
    tags[h.get_tag()] = (n + 1, total + h.get_total_count())
print("start", reader.get_start_time_sec())
for tag, (n, total) in sorted(tags.items()):
    print(tag, n, total)
"#;

#[test]
fn python_hdrh_reads_every_interval_of_the_hdr_log_and_they_add_up_to_the_totals() {
    let callee = format!("127.0.0.1:{}", free_port());
    let caller = format!("127.0.0.1:{}", free_port());
    let envs = [
        ("CALLEE_LISTEN", callee.as_str()),
        ("CALLER_LISTEN", caller.as_str()),
    ];
    let reports = Reports::new();
    let log = reports.path("latency.hlog");
    let out = run(
        "tests/peers/scenarios/series-direct.yaml",
        &[
            "--hdr-log",
            log.to_str().unwrap(),
            "--series-interval",
            "500ms",
        ],
        &envs,
        &reports,
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let v = reports.summary();
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        text.starts_with("#[Histogram log format version 1.3]\n#[StartTime: "),
        "{text}"
    );

    let read = Command::new("python3")
        .args(["-c", READ_LOG])
        .arg(&log)
        .output()
        .expect("python3 runs");
    let shown = format!("{}\n{text}", describe_output(&read));
    assert!(read.status.success(), "{shown}");
    let lines = String::from_utf8_lossy(&read.stdout).into_owned();
    let mut lines = lines.lines();
    // The log's start is the run's.
    let start: f64 = lines
        .next()
        .and_then(|l| l.strip_prefix("start "))
        .and_then(|s| s.parse().ok())
        .expect("a start time");
    let started_ms = v["started_at_unix_ms"].as_f64().unwrap();
    assert!(
        (start * 1000.0 - started_ms).abs() < 2.0,
        "{start} {started_ms}"
    );
    let mut logged = std::collections::BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        let (intervals, count): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        logged.insert(f[0].to_owned(), (intervals, count));
    }
    // Every metric's intervals add up to the run's total; those without samples have no line.
    for (name, m) in v["metrics"].as_object().expect("metrics") {
        let total = m["count"].as_u64().unwrap();
        let (_, count) = logged.get(name).copied().unwrap_or((0, 0));
        assert_eq!(count, total, "{name}\n{shown}");
    }
    assert!(
        logged.keys().all(|k| v["metrics"].get(k).is_some()),
        "{logged:?}"
    );
    // 8 calls over 2 s and more at 4 a second: their setups end in several intervals.
    let (setup_intervals, setups) = logged["invite_to_200"];
    assert_eq!(setups, 8, "{shown}");
    assert!(setup_intervals >= 3, "{shown}");
    for tag in [
        "call_duration",
        "tone_onset",
        "rtp.jitter",
        "pacing.lateness",
    ] {
        assert!(logged.contains_key(tag), "no {tag}\n{shown}");
    }
}
