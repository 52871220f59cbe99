//! Sharding: a scenario run as one process and as 3 shard processes started together, the
//! shards' summaries merged by `sipcheck merge`: the same calls, every merged percentile that
//! of the union of the shards' histograms, thresholds judged again on the merged figures,
//! reports valid; shards that do not belong together refused, a missing shard failing.

mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;
use support::kamailio::Kamailio;
use support::process::RunDir;
use support::reports::{assert_schema, assert_valid_junit};
use support::{describe_output, repo_root, run_sipcheck_with_timeout};

const SHARDS: u32 = 3;

/// A port p with p, p + 1 and p + 2 free on loopback (UDP), for the callee role's listen
/// address of each shard.
fn free_port_run() -> u16 {
    for _ in 0..100 {
        let p = support::free_port();
        if p > 65_000 {
            continue;
        }
        if (1..u16::try_from(SHARDS).unwrap())
            .all(|i| UdpSocket::bind(("127.0.0.1", p + i)).is_ok())
        {
            return p;
        }
    }
    panic!("no run of {SHARDS} free ports");
}

fn run(scenario: &str, json: &Path, extra: &[String], envs: &[(&str, &str)]) -> Output {
    let path = repo_root().join(scenario);
    let mut args = vec![
        "run".to_owned(),
        path.display().to_string(),
        "--json".to_owned(),
        json.display().to_string(),
    ];
    args.extend_from_slice(extra);
    run_sipcheck_with_timeout(args, envs, Duration::from_secs(120))
}

/// The scenario as 3 shard processes at once, sharing a start instant 3 s ahead; the
/// shards' summaries.
fn run_shards(dir: &RunDir, scenario: &str, envs: &[(&str, &str)]) -> Vec<PathBuf> {
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3);
    let start = format!("{:.3}", start.as_secs_f64());
    let outputs: Vec<(PathBuf, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SHARDS)
            .map(|i| {
                let json = dir.join(&format!("shard-{i}.json"));
                let start = start.clone();
                s.spawn(move || {
                    let extra = vec![
                        "--shard".to_owned(),
                        format!("{i}/{SHARDS}"),
                        "--start-at".to_owned(),
                        start,
                    ];
                    let out = run(scenario, &json, &extra, envs);
                    (json, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (json, out) in &outputs {
        assert!(
            json.exists(),
            "{} not written\n{}",
            json.display(),
            describe_output(out)
        );
    }
    outputs.into_iter().map(|(json, _)| json).collect()
}

fn read(path: &Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_schema(&v);
    v
}

fn decode(text: &str) -> Histogram<u64> {
    let bytes = BASE64.decode(text).unwrap();
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap();
    h.auto(true);
    h
}

fn merge(files: &[PathBuf], dir: &RunDir, name: &str) -> (Output, PathBuf, PathBuf) {
    let json = dir.join(&format!("{name}.json"));
    let junit = dir.join(&format!("{name}.xml"));
    let mut args = vec!["merge".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend([
        "--json".to_owned(),
        json.display().to_string(),
        "--junit".to_owned(),
        junit.display().to_string(),
        "--html".to_owned(),
        dir.join(&format!("{name}.html")).display().to_string(),
    ]);
    let out = run_sipcheck_with_timeout(args, &[], Duration::from_secs(30));
    (out, json, junit)
}

/// Every timing's merged count and percentiles are those of the union of the shards'
/// histograms, decoded and added here; the merged histogram is that union.
fn assert_exact_union(merged: &Value, shards: &[Value]) {
    let metrics = merged["metrics"].as_object().unwrap();
    assert!(metrics.len() >= 10, "{merged}");
    for (name, m) in metrics {
        let mut union: Option<Histogram<u64>> = None;
        for s in shards {
            let h = decode(s["metrics"][name]["histogram"].as_str().unwrap());
            match &mut union {
                Some(u) => u.add(&h).unwrap(),
                None => union = Some(h),
            }
        }
        let union = union.unwrap();
        let got = decode(m["histogram"].as_str().unwrap());
        assert_eq!(got.len(), union.len(), "{name}");
        assert_eq!(m["count"].as_u64().unwrap(), union.len(), "{name}");
        if union.is_empty() {
            assert!(m["p99_ms"].is_null(), "{name}: {m}");
            continue;
        }
        let ms = |v: u64| ((v as f64 / 1000.0) * 1000.0).round() / 1000.0;
        for (key, q) in [
            ("p50_ms", 0.5),
            ("p90_ms", 0.9),
            ("p99_ms", 0.99),
            ("p999_ms", 0.999),
        ] {
            assert_eq!(
                m[key].as_f64().unwrap(),
                ms(union.value_at_quantile(q)),
                "{name}.{key}"
            );
            assert_eq!(got.value_at_quantile(q), union.value_at_quantile(q));
        }
        assert_eq!(m["max_ms"].as_f64().unwrap(), ms(union.max()), "{name}");
        assert_eq!(m["min_ms"].as_f64().unwrap(), ms(union.min()), "{name}");
    }
}

fn threshold<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no threshold {name} in {v}"))
}

#[test]
fn three_shards_of_a_direct_run_merge_into_the_whole_runs_figures() {
    let dir = RunDir::new("shard-direct").unwrap();
    let port = free_port_run();
    let listen = format!("127.0.0.1:{port}");
    let envs = [("CALLEE_LISTEN", listen.as_str())];
    let scenario = "tests/peers/scenarios/shard-direct.yaml";

    // Once, as one process.
    let whole_json = dir.join("whole.json");
    let out = run(scenario, &whole_json, &[], &envs);
    assert_eq!(out.status.code(), Some(0), "{}", describe_output(&out));
    let whole = read(&whole_json);

    // As 3 shards: each starts 5 or 6 of the 16 calls, so `calls.started >= 16` fails on
    // each (exit 99) and holds on the merge.
    let files = run_shards(&dir, scenario, &envs);
    let shards: Vec<Value> = files.iter().map(|f| read(f)).collect();
    let mut started: Vec<u64> = shards
        .iter()
        .map(|s| s["calls"]["started"].as_u64().unwrap())
        .collect();
    started.sort_unstable();
    assert_eq!(started, vec![5, 5, 6]);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"]["index"], i as u64, "{s}");
        assert_eq!(s["shard"]["count"], SHARDS, "{s}");
        assert_eq!(s["scenario_fingerprint"], shards[0]["scenario_fingerprint"]);
        assert_eq!(s["verdict"], "thresholds_failed", "{s}");
        assert_eq!(threshold(s, "calls.started")["passed"], false);
        assert_eq!(s["calls"]["failed"], 0, "{s}");
    }
    assert_eq!(
        whole["scenario_fingerprint"],
        shards[0]["scenario_fingerprint"]
    );

    let (out, merged_json, junit) = merge(&files, &dir, "merged");
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("merged from all 3 shards"), "{shown}");
    let merged = read(&merged_json);
    assert_eq!(merged["verdict"], "passed", "{merged}");
    assert_eq!(merged["merged"]["shards"], SHARDS);
    assert_eq!(merged["merged"]["missing"], serde_json::json!([]));
    assert!(merged["shard"].is_null());
    assert_eq!(threshold(&merged, "calls.started")["passed"], true);
    assert_eq!(threshold(&merged, "calls.started")["actual"], 16.0);
    // The same calls as one process.
    for key in ["started", "passed", "failed", "not_started"] {
        assert_eq!(merged["calls"][key], whole["calls"][key], "calls.{key}");
    }
    for key in ["checked", "verified"] {
        assert_eq!(merged["audio"][key], whole["audio"][key], "audio.{key}");
    }
    assert_eq!(
        merged["metrics"]["invite_to_200"]["count"],
        whole["metrics"]["invite_to_200"]["count"]
    );
    assert_exact_union(&merged, &shards);
    // The merged page: the verdict, the thresholds, the distribution drawn from the merged
    // histogram; no charts over time (the shards' summaries hold no series).
    let page = std::fs::read_to_string(dir.join("merged.html")).expect("the merged HTML page");
    assert!(
        page.contains("PASSED") && page.contains("calls.started"),
        "{page}"
    );
    assert!(page.contains("id=\"no-series\""), "{page}");
    assert!(page.contains("<svg"), "{page}");
    assert_valid_junit(&junit);
    // The roles' steps, added up: one passed test case per step, as a single run writes.
    let xml = std::fs::read_to_string(&junit).unwrap();
    for case in [
        "caller/call",
        "caller/hangup",
        "callee/answer",
        "callee/wait_for",
    ] {
        assert!(
            xml.contains(&format!(r#"<testcase name="{case}""#)),
            "{case}: {xml}"
        );
    }
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(
        xml.contains("16 calls of role caller: 16 reached this step, 16 completed it"),
        "{xml}"
    );

    // A shard missing: reported, and never a pass (here its calls are missing from
    // `calls.started` too; a missing shard fails the verdict even when every threshold
    // holds: stats::merge's tests).
    let (out, missing_json, junit) = merge(&[files[0].clone(), files[2].clone()], &dir, "missing");
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    assert!(shown.contains("MISSING shard(s) 1"), "{shown}");
    let missing = read(&missing_json);
    assert_eq!(missing["merged"]["missing"], serde_json::json!([1]));
    assert_ne!(missing["verdict"], "passed");
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="shard_missing""#), "{xml}");

    // Another scenario's shard, another version, or the same shard twice: refused (exit 2).
    for (key, value, says) in [
        (
            "scenario_fingerprint",
            "0123456789abcdef",
            "another scenario",
        ),
        ("sipcheck_version", "0.0.0-other", "different versions"),
    ] {
        let mut other = shards[1].clone();
        other[key] = Value::String(value.to_owned());
        let path = dir.join(&format!("other-{key}.json"));
        std::fs::write(&path, other.to_string()).unwrap();
        let (out, _, _) = merge(&[files[0].clone(), path, files[2].clone()], &dir, "refused");
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(shown.contains(says), "{shown}");
    }
    let (out, _, _) = merge(&[files[0].clone(), files[0].clone()], &dir, "twice");
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
}

#[test]
fn three_shards_through_kamailio_merge_into_the_whole_runs_figures() {
    let kam = Kamailio::start().expect("start kamailio");
    let server = format!("127.0.0.1:{}", kam.sip_port);
    let envs = [("SIP_SERVER", server.as_str())];
    let scenario = "tests/peers/scenarios/shard-kamailio.yaml";
    let dir = RunDir::new("shard-kamailio").unwrap();

    // Once, as one process: 15 calls, so `calls.started <= 10` fails (exit 99).
    let whole_json = dir.join("whole.json");
    let out = run(scenario, &whole_json, &[], &envs);
    let shown = format!("{}\n{}", describe_output(&out), kam.log());
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let whole = read(&whole_json);
    assert_eq!(whole["calls"]["passed"], 15, "{whole}");

    // As 3 shards: 5 calls each; `calls.started <= 10` holds on each, fails on the merge.
    let files = run_shards(&dir, scenario, &envs);
    let shards: Vec<Value> = files.iter().map(|f| read(f)).collect();
    for s in &shards {
        assert_eq!(s["calls"]["started"], 5, "{s}\n{}", kam.log());
        assert_eq!(s["calls"]["passed"], 5, "{s}");
        assert_eq!(s["verdict"], "passed", "{s}");
        // Each shard registered its own 10 accounts, and unregistered them.
        assert_eq!(s["registrations"]["ok"], 10, "{s}");
        assert_eq!(s["registrations"]["unregister_ok"], 10, "{s}");
    }
    let (out, merged_json, junit) = merge(&files, &dir, "merged");
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(99), "{shown}");
    let merged = read(&merged_json);
    assert_eq!(merged["verdict"], "thresholds_failed");
    assert_eq!(threshold(&merged, "calls.started")["passed"], false);
    assert_eq!(threshold(&merged, "calls.failed")["passed"], true);
    assert_eq!(threshold(&merged, "audio.verified")["passed"], true);
    for key in ["started", "passed", "failed", "not_started"] {
        assert_eq!(merged["calls"][key], whole["calls"][key], "calls.{key}");
    }
    for key in ["ok", "failed", "unregister_ok"] {
        assert_eq!(
            merged["registrations"][key], whole["registrations"][key],
            "{key}"
        );
    }
    assert_eq!(merged["audio"]["verified"], whole["audio"]["verified"]);
    assert_exact_union(&merged, &shards);
    assert_valid_junit(&junit);

    // Two of the three: every threshold holds on their 10 calls, and the run still fails
    // (exit 1): a plan not fully run is never a pass.
    let (out, partial_json, junit) = merge(&files[..2], &dir, "partial");
    let shown = describe_output(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("MISSING shard(s) 2"), "{shown}");
    let partial = read(&partial_json);
    assert!(
        partial["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["passed"] == true),
        "{partial}"
    );
    assert_eq!(partial["verdict"], "shards_missing", "{partial}");
    assert!(
        shown.contains("result: FAILED: 1 of 3 shards missing (the plan was not fully run)"),
        "{shown}"
    );
    assert_eq!(partial["merged"]["missing"], serde_json::json!([2]));
    assert_valid_junit(&junit);
    for user in ["3000", "3014", "3015", "3029"] {
        assert!(kam.bindings(user).is_empty(), "{user} still registered");
    }
}

#[test]
fn shards_that_cannot_be_run_are_refused_before_anything_is_sent() {
    let dir = RunDir::new("shard-refused").unwrap();
    let json = dir.join("s.json");
    let envs = [("CALLEE_LISTEN", "127.0.0.1:5")];
    let scenario = "tests/peers/scenarios/shard-direct.yaml";
    let refused = |extra: &[&str], envs: &[(&str, &str)], says: &str| {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let out = run(scenario, &json, &extra, envs);
        let shown = describe_output(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {shown}");
        assert!(shown.contains(says), "{extra:?}: {shown}");
        assert!(!json.exists(), "{extra:?}: a report was written");
    };
    refused(&["--shard", "3/3"], &envs, "shard 3 of 3 does not exist");
    refused(&["--shard", "1of3"], &envs, "is not a shard");
    // --shards N names no shard without the Indexed Job's index.
    refused(&["--shards", "3"], &envs, "JOB_COMPLETION_INDEX");
    let k8s = [envs[0], ("JOB_COMPLETION_INDEX", "7")];
    refused(&["--shards", "3"], &k8s, "shard 7 of 3 does not exist");
    // GitLab counts from 1.
    let gitlab = [envs[0], ("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "3")];
    refused(&[], &gitlab, "CI_NODE_INDEX=0");
    // 12 callers cannot be 13 shards.
    refused(&["--shard", "0/13"], &envs, "fewer than the 13 shards");
    // A start a minute past.
    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    refused(
        &["--shard", "0/3", "--start-at", &past.to_string()],
        &envs,
        "the start instant passed",
    );
    refused(
        &["--shard", "0/3", "--start-at", "tomorrow"],
        &envs,
        "is not a time",
    );
}
