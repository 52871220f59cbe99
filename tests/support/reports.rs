//! The report files of one `sipcheck run` (JUnit and JSON) in a run directory of their own,
//! and the runner that asks for both.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::process::RunDir;

/// Where one run's reports go.
pub(crate) struct Reports {
    /// The run directory (kept on failure).
    pub(crate) dir: RunDir,
}

impl Reports {
    pub(crate) fn new() -> Self {
        Self {
            dir: RunDir::new("reports").expect("create a run directory for reports"),
        }
    }

    /// A file in the run directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The JUnit report's path.
    pub(crate) fn junit(&self) -> PathBuf {
        self.path("junit.xml")
    }

    /// The JSON report's path.
    pub(crate) fn json(&self) -> PathBuf {
        self.path("summary.json")
    }

    /// The JSON report, parsed and checked against the shipped schema.
    pub(crate) fn summary(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.json()).expect("JSON report written");
        let v = serde_json::from_str(&text).expect("valid JSON");
        assert_schema(&v);
        v
    }

    /// [`summary`](Self::summary) when the report was written, else `Null` (the scenario did
    /// not load).
    pub(crate) fn summary_if_written(&self) -> serde_json::Value {
        if self.json().exists() {
            self.summary()
        } else {
            serde_json::Value::Null
        }
    }

    /// The JUnit report's text.
    pub(crate) fn junit_text(&self) -> String {
        std::fs::read_to_string(self.junit()).expect("JUnit report written")
    }
}

/// `sipcheck run SCENARIO --junit … --json … EXTRA` (the scenario's path relative to the
/// repository) with `envs`, killed after 120 s.
pub(crate) fn run_scenario(
    scenario: impl AsRef<Path>,
    extra: &[&str],
    envs: &[(&str, &str)],
    reports: &Reports,
) -> Output {
    let path = super::repo_root().join(scenario);
    let junit = reports.junit();
    let json = reports.json();
    let mut args = vec![
        "run",
        path.to_str().expect("a UTF-8 path"),
        "--junit",
        junit.to_str().expect("a UTF-8 path"),
        "--json",
        json.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    super::run_sipcheck_with_timeout(args, envs, Duration::from_secs(120))
}

/// [`run_scenario`] against `peers`: its output, its JSON report (`Null` when none was
/// written: the scenario did not load) and, for assertion messages, both with the peers' logs
/// read once it has ended.
pub(crate) fn run_scenario_against(
    scenario: impl AsRef<Path>,
    extra: &[&str],
    envs: &[(&str, &str)],
    reports: &Reports,
    peers: &[&dyn super::PeerLog],
) -> super::Ran {
    let out = run_scenario(scenario, extra, envs, reports);
    super::Ran::new(out, reports.summary_if_written(), peers)
}

/// Fails unless `summary` is valid under `docs/run-summary.schema.json` (every keyword of the
/// schema enforced, by the `jsonschema` crate).
pub(crate) fn assert_schema(summary: &serde_json::Value) {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let path = super::repo_root().join("docs/run-summary.schema.json");
        let schema = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::draft202012::new(&schema).expect("the schema compiles")
    });
    let errors: Vec<String> = schema
        .iter_errors(summary)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the run summary breaks docs/run-summary.schema.json:\n{}\n{summary:#}",
        errors.join("\n")
    );
}

/// Validates a JUnit report with xmllint (Debian's libxml2-utils) against the Jenkins xUnit
/// plugin's junit-10.xsd and JUnit 5's jenkins-junit.xsd, kept in tests/schemas; the report is
/// shown when one rejects it.
pub(crate) fn assert_valid_junit(path: &Path) {
    for schema in ["junit-10.xsd", "jenkins-junit.xsd"] {
        let schema = super::repo_root().join("tests/schemas").join(schema);
        let out = std::process::Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&schema)
            .arg(path)
            .output()
            .expect("xmllint (Debian package libxml2-utils) runs");
        assert!(
            out.status.success(),
            "{} rejects {}:\n{}\n{}",
            schema.display(),
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            super::process::read_lossy(path)
        );
    }
}
