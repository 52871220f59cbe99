//! The deployment examples in deploy/: the Kubernetes Indexed Job and merge Job, the GitLab
//! CI pipeline and the Dockerfile, read as their engines read them (no cluster, no network
//! here), and their command lines run as they would run: 3 shards from the engines'
//! indices, then the merge, against a scenario on loopback.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::process::RunDir;
use support::{free_port, repo_root};

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// A port p with p, p + 1 and p + 2 free (the callee's listen port of each shard).
fn free_port_run() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p < 65_000 && (1..3).all(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no run of 3 free ports");
}

/// Runs `script` with `sh -c` and `envs`, killed after 120 s; its exit code.
fn sh(script: &str, envs: &[(&str, String)], dir: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = support::process::run_with_timeout(cmd, Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{script} did not finish"));
    (
        out.status.code(),
        format!(
            "{script}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The two pipelines run the same scenario (its RTP ports): one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn container(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_kubernetes_shards_are_an_indexed_job_whose_pods_run_one_schedule() {
    let job = yaml("deploy/k8s/shards-job.yaml");
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n), "every shard at once");
    assert_eq!(spec["backoffLimit"], 0, "a shard is never run twice");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    let c = container(&job);
    let script = c["args"][0].as_str().unwrap();
    assert!(script.contains(&format!("--shards {n}")), "{script}");
    assert!(script.contains("--start-at \"$START_AT\""), "{script}");
    assert!(
        script.contains("shard-$JOB_COMPLETION_INDEX.json"),
        "{script}"
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"START_AT"), "{env:?}");
    // The results volume is the claim of results-pvc.yaml, shared (ReadWriteMany) with the
    // merge Job.
    let pvc = yaml("deploy/k8s/results-pvc.yaml");
    assert_eq!(pvc["kind"], "PersistentVolumeClaim");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany");
    let claim = &pvc["metadata"]["name"];
    let merge = yaml("deploy/k8s/merge-job.yaml");
    for j in [&job, &merge] {
        let volumes = j["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == *claim),
            "{j}"
        );
        let mounts = container(j)["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == "/results"), "{j}");
    }
    assert_eq!(merge["kind"], "Job");
    assert_eq!(merge["spec"]["completions"], 1);
    let merge_script = container(&merge)["args"][0].as_str().unwrap();
    assert!(
        merge_script.contains("sipcheck merge /results/shard-*.json"),
        "{merge_script}"
    );

    let _turn = one_at_a_time();
    // The pods' command lines, run here as the Job would run them: pod i with
    // JOB_COMPLETION_INDEX=i, the scenario and volume paths mapped to a directory.
    let dir = RunDir::new("deploy-k8s").unwrap();
    let results = dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let bin = support::sipcheck_bin().display().to_string();
    let local = |s: &str| {
        s.replace("/usr/local/bin/sipcheck", &bin)
            .replace(
                "/scenario/scenario.yaml",
                &repo_root()
                    .join("tests/peers/scenarios/shard-direct.yaml")
                    .display()
                    .to_string(),
            )
            .replace("/results", &results.display().to_string())
    };
    let listen = format!("127.0.0.1:{}", free_port_run());
    let start = format!("{}", now().as_secs() + 3);
    let codes: Vec<(Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let envs = vec![
                    ("JOB_COMPLETION_INDEX", i.to_string()),
                    ("START_AT", start.clone()),
                    ("CALLEE_LISTEN", listen.clone()),
                ];
                let script = local(script);
                let dir = dir.join("");
                s.spawn(move || sh(&script, &envs, &dir))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, shown) in &codes {
        // Each shard's own thresholds fail (calls.started >= 16): the pod completes all the
        // same.
        assert_eq!(*code, Some(0), "{shown}");
    }
    let (code, shown) = sh(&local(merge_script), &[], &dir.join(""));
    assert_eq!(code, Some(0), "{shown}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["calls"]["started"], 16, "{summary}");
    assert_eq!(summary["merged"]["shards"], n, "{summary}");
    assert!(results.join("junit.xml").exists());
}

#[test]
fn the_gitlab_pipeline_runs_parallel_shards_and_a_merge_publishing_junit() {
    let ci = yaml("deploy/gitlab-ci.yml");
    let load = &ci["load"];
    let n = load["parallel"].as_u64().unwrap();
    assert!(n > 1);
    assert_eq!(load["artifacts"]["paths"][0], "shard-*.json");
    assert_eq!(load["artifacts"]["when"], "always");
    let merge = &ci["merge"];
    assert_eq!(merge["needs"][0], "load");
    assert_eq!(merge["when"], "always");
    assert_eq!(merge["artifacts"]["reports"]["junit"], "junit.xml");
    let stages: Vec<&str> = ci["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let at = |job: &Value| {
        stages
            .iter()
            .position(|s| job["stage"] == *s)
            .expect("a declared stage")
    };
    assert!(at(load) < at(merge));

    let _turn = one_at_a_time();
    // The jobs' scripts, run here as GitLab would run them: each of the `parallel` jobs with
    // CI_NODE_INDEX from 1, in one shell per job, `sipcheck` on the PATH.
    let dir = RunDir::new("deploy-gitlab").unwrap();
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(support::sipcheck_bin(), bin_dir.join("sipcheck")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = |job: &Value| -> String {
        job["script"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The pipeline "was created" 117 s ago: its shards start 3 s from now.
    let created = now().as_secs() - 117;
    let created =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(created)).to_string();
    let listen = format!("127.0.0.1:{}", free_port_run());
    let scenario = repo_root()
        .join("tests/peers/scenarios/shard-direct.yaml")
        .display()
        .to_string();
    let load_script = script(load);
    let codes: Vec<(Option<i32>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=n)
            .map(|i| {
                let envs = vec![
                    ("CI_NODE_INDEX", i.to_string()),
                    ("CI_NODE_TOTAL", n.to_string()),
                    ("CI_PIPELINE_CREATED_AT", created.clone()),
                    ("SCENARIO", scenario.clone()),
                    ("CALLEE_LISTEN", listen.clone()),
                    ("PATH", path.clone()),
                ];
                let script = format!("set -e\n{load_script}");
                let dir = dir.join("");
                s.spawn(move || sh(&script, &envs, &dir))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (code, shown)) in codes.iter().enumerate() {
        assert_eq!(*code, Some(0), "{shown}");
        // CI_NODE_INDEX i + 1 is shard i, and says so.
        assert!(
            shown.contains(&format!("running shard {i}/{n} of the scenario")),
            "{shown}"
        );
    }
    let (code, shown) = sh(
        &format!("set -e\n{}", script(merge)),
        &[("PATH", path.clone())],
        &dir.join(""),
    );
    assert_eq!(code, Some(0), "{shown}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["calls"]["started"], 16, "{summary}");
    assert_eq!(summary["merged"]["shards"], n, "{summary}");
    assert_eq!(summary["merged"]["missing"], serde_json::json!([]));
    assert!(dir.join("junit.xml").exists());
}

#[test]
fn the_image_is_bookworm_slim_with_the_release_binary() {
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.last(), Some(&"FROM debian:bookworm-slim"), "{text}");
    assert!(text.contains("cargo build --release --locked"), "{text}");
    assert!(
        text.contains("COPY --from=build /src/target/release/sipcheck /usr/local/bin/sipcheck"),
        "{text}"
    );
    assert!(
        text.contains(r#"ENTRYPOINT ["/usr/local/bin/sipcheck"]"#),
        "{text}"
    );
    // The Kubernetes and GitLab examples run that image's binary.
    let job = yaml("deploy/k8s/shards-job.yaml");
    assert!(container(&job)["args"][0]
        .as_str()
        .unwrap()
        .starts_with("/usr/local/bin/sipcheck run"));
}
