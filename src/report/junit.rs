//! JUnit XML for GitLab's test report (`artifacts:reports:junit`) and Jenkins.
//!
//! - One `<testsuite>` per role, with one `<testcase>` per step of the role
//!   (`caller/call`, `caller/expect (line 14)` when a step name repeats, `callee/answer`).
//!   A step fails when any call of the role failed at it: its `<failure message="…">` gives
//!   how many calls failed and how, and its text adds the first failing call's Call-ID,
//!   failures and SIP ladder. `register` / `unregister` steps count registrations. A step
//!   that no call completed (no call reached it, or the calls that did were cut short by an
//!   interruption) is `<skipped>` with the reason as its text, never passed. Failures not
//!   tied to a step (an interrupted call, `run`) get a testcase of their own.
//! - With `--junit-per-call`, a `calls` suite with one testcase per call end (`caller #3
//!   <Call-ID>`, in the order they were counted; a failed call's `<failure>` carries its
//!   reasons and SIP ladder) and one `<skipped>` per call not started, at most
//!   [`PER_CALL_CAP`]; the calls beyond the cap share one skipped testcase.
//! - A `thresholds` suite with one testcase per threshold (a failure carries the actual value
//!   and the limit), whose `<system-out>` is the console summary.
//! - `time` holds real durations only: a step's is the time the role's calls spent in it,
//!   added up; a suite's and the document's the run's elapsed time. Registrations and
//!   thresholds, which nothing timed, have no `time`.
//! - Each step's `<system-out>` starts with `file:line:col: step <name>`: neither schema
//!   below has `file` or `line` attributes on `<testcase>`, so the location is text.
//!
//! The document validates against the Jenkins xUnit plugin's `junit-10.xsd` and JUnit 5's
//! `jenkins-junit.xsd` (kept in `tests/schemas/`): no `skipped` or `timestamp` on
//! `<testsuites>`, `<skipped>` as plain text, children of `<testcase>` in the order
//! `skipped`, `failure`, `system-out`.
//!
//! Written by hand rather than with the `junit-report` crate: that crate writes CDATA without
//! splitting `]]>`, passes control characters through (which makes the file unparsable XML
//! 1.0) and stamps the wall clock into every suite. Here every text is escaped, characters
//! XML 1.0 cannot carry are shown as `\u{…}`, and the output depends on the summary only.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use super::console;
use super::values::actual_text;
use sipcheck_core::stats::metrics::{FailedCall, RoleSummary, RunSummary, StepSummary};
use sipcheck_core::stats::record::CallRecord;
use sipcheck_core::stats::verdict::ThresholdResult;

/// One `<testcase>`.
#[derive(Clone)]
struct Case {
    name: String,
    outcome: Outcome,
    system_out: Option<String>,
    /// Real time spent, when something was timed.
    time: Option<Duration>,
}

#[derive(Clone)]
enum Outcome {
    Passed,
    Failed {
        kind: String,
        message: String,
        text: String,
    },
    Skipped(String),
}

/// The most test cases `--junit-per-call` writes in its `calls` suite: a JUnit report of
/// thousands of test cases is unreadable in GitLab or Jenkins. The calls beyond it are
/// counted in one skipped test case (never a pass); every call is in `--calls`.
pub const PER_CALL_CAP: usize = 1000;

/// The `calls` suite of `--junit-per-call`: one test case per call end, in the order they
/// were counted, then one per call not started, up to [`PER_CALL_CAP`].
#[derive(Default)]
pub struct PerCall {
    cases: Vec<Case>,
    beyond_cap: u64,
    failed_beyond_cap: u64,
    not_started: u64,
}

impl PerCall {
    /// Adds a call end; false when the cap is reached and it is only counted.
    pub fn push(&mut self, r: &CallRecord) -> bool {
        if self.cases.len() >= PER_CALL_CAP {
            self.beyond_cap += 1;
            self.failed_beyond_cap += u64::from(!r.failures.is_empty());
            return false;
        }
        self.cases.push(call_case(r));
        true
    }

    /// Adds a call due by the load plan but not started; false when the cap is reached.
    pub fn push_not_started(&mut self) -> bool {
        self.not_started += 1;
        if self.cases.len() >= PER_CALL_CAP {
            self.beyond_cap += 1;
            return false;
        }
        self.cases.push(Case {
            name: format!("not started #{}", self.not_started),
            outcome: Outcome::Skipped(
                "due by the load plan but not started: the calls kept up at once were at \
                 their cap (load.max_concurrent)"
                    .into(),
            ),
            system_out: None,
            time: None,
        });
        true
    }

    /// The suite's test cases.
    fn cases(&self) -> Vec<Case> {
        let mut cases = self.cases.clone();
        if self.beyond_cap > 0 {
            cases.push(Case {
                name: "calls beyond the per-call cap".into(),
                outcome: Outcome::Skipped(format!(
                    "{} more calls ({} of them failed) are not listed: --junit-per-call lists \
                     at most {PER_CALL_CAP}; every call end is in the --calls records, and \
                     the steps' test cases count them all",
                    self.beyond_cap, self.failed_beyond_cap
                )),
                system_out: None,
                time: None,
            });
        }
        cases
    }
}

/// The test case of one call end: `caller #3 <Call-ID>`.
fn call_case(r: &CallRecord) -> Case {
    let name = format!("{} #{} {}", r.role, r.call, r.call_id);
    let time = r
        .timings
        .duration_ms
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    let mut out = format!("{} {}, user {}", side_name(r.side), r.role, r.user);
    if let Some(code) = r.final_code {
        let _ = write!(out, ", final response {code}");
    }
    let _ = writeln!(out, ", ended: {}", r.end_reason);
    let _ = writeln!(
        out,
        "started {}, ended {}",
        r.start.as_ref().map_or("-", |s| s.at.as_str()),
        r.end.at
    );
    if r.failures.is_empty() {
        return Case {
            name,
            outcome: Outcome::Passed,
            system_out: Some(out),
            time,
        };
    }
    let message = r
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.kind, f.message))
        .collect::<Vec<_>>()
        .join("; ");
    let mut text = String::new();
    console::sample_text(
        &mut text,
        &FailedCall {
            role: r.role.clone(),
            side: r.side,
            user: r.user.clone(),
            call_id: r.call_id.clone(),
            final_code: r.final_code,
            bye_code: r.bye_code,
            end_reason: r.end_reason.clone(),
            failures: r.failures.clone(),
            ladder: r.ladder.clone(),
            quality: r.quality.clone(),
        },
    );
    Case {
        name,
        outcome: Outcome::Failed {
            kind: r.failures[0].kind.clone(),
            message,
            text,
        },
        system_out: Some(out),
        time,
    }
}

fn side_name(side: sipcheck_core::stats::outcome::Side) -> &'static str {
    match side {
        sipcheck_core::stats::outcome::Side::Caller => "caller",
        sipcheck_core::stats::outcome::Side::Callee => "callee",
    }
}

/// Writes the JUnit report of a run.
///
/// # Errors
/// Any error of `out`.
pub fn write_junit(
    s: &RunSummary,
    thresholds: &[ThresholdResult],
    out: &mut impl Write,
) -> io::Result<()> {
    write_junit_per_call(s, thresholds, None, out)
}

/// Writes the JUnit report of a run, with a `calls` suite of one test case per call when
/// `calls` is given (`--junit-per-call`).
///
/// # Errors
/// Any error of `out`.
pub fn write_junit_per_call(
    s: &RunSummary,
    thresholds: &[ThresholdResult],
    calls: Option<&PerCall>,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut suites: Vec<(String, Vec<Case>, Option<String>)> = s
        .roles
        .iter()
        .map(|role| (role.name.clone(), role_cases(s, role), None))
        .collect();
    if let Some(calls) = calls {
        suites.push(("calls".into(), calls.cases(), None));
    }
    if let Some(n) = s.provenance.merged_shards {
        suites.push((
            "shards".into(),
            shard_cases(n, &s.provenance.missing_shards),
            None,
        ));
    }
    let mut summary = Vec::new();
    console::write_summary(s, thresholds, &mut summary)?;
    suites.push((
        "thresholds".into(),
        thresholds.iter().map(threshold_case).collect(),
        Some(String::from_utf8_lossy(&summary).into_owned()),
    ));

    let time = format!("{:.3}", s.elapsed.as_secs_f64());
    let timestamp = humantime::format_rfc3339_seconds(s.started_at.max(UNIX_EPOCH)).to_string();
    let count = |f: fn(&Outcome) -> bool| -> usize {
        suites
            .iter()
            .map(|(_, cases, _)| cases.iter().filter(|c| f(&c.outcome)).count())
            .sum()
    };
    let tests: usize = suites.iter().map(|(_, c, _)| c.len()).sum();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="{}" tests="{tests}" failures="{}" errors="0" time="{time}">"#,
        attr(&format!("sipcheck {}", s.scenario)),
        count(|o| matches!(o, Outcome::Failed { .. })),
    )?;
    for (name, cases, system_out) in &suites {
        let failures = cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count();
        let skipped = cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
            .count();
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="{skipped}" time="{time}" timestamp="{timestamp}">"#,
            attr(name),
            cases.len(),
        )?;
        writeln!(
            out,
            r#"    <properties><property name="sipcheck.run_id" value="{}"/></properties>"#,
            attr(&s.run_id)
        )?;
        let classname = attr(&format!("{}.{name}", s.scenario));
        for case in cases {
            write!(
                out,
                r#"    <testcase name="{}" classname="{classname}""#,
                attr(&case.name)
            )?;
            if let Some(t) = case.time {
                write!(out, r#" time="{:.3}""#, t.as_secs_f64())?;
            }
            if matches!(case.outcome, Outcome::Passed) && case.system_out.is_none() {
                writeln!(out, "/>")?;
                continue;
            }
            writeln!(out, ">")?;
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failed {
                    kind,
                    message,
                    text,
                } => writeln!(
                    out,
                    r#"      <failure message="{}" type="{}">{}</failure>"#,
                    attr(message),
                    attr(kind),
                    text_node(text)
                )?,
                // Text, not a `message` attribute: jenkins-junit.xsd has `skipped` as a
                // plain string element.
                Outcome::Skipped(message) => {
                    writeln!(out, "      <skipped>{}</skipped>", text_node(message))?;
                }
            }
            if let Some(so) = &case.system_out {
                writeln!(out, "      <system-out>{}</system-out>", text_node(so))?;
            }
            writeln!(out, "    </testcase>")?;
        }
        if let Some(so) = system_out {
            writeln!(out, "    <system-out>{}</system-out>", text_node(so))?;
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

/// The testcases of a role: its steps, in order.
fn role_cases(s: &RunSummary, role: &RoleSummary) -> Vec<Case> {
    let repeated = |kind: &str| role.steps.iter().filter(|s| s.kind == kind).count() > 1;
    let mut cases: Vec<Case> = Vec::new();
    let mut saw_register = false;
    let mut saw_unregister = false;
    for step in &role.steps {
        let name = if step.line == 0 && repeated(&step.kind) {
            format!("{}/{} (no line)", role.name, step.kind)
        } else if repeated(&step.kind) {
            format!("{}/{} (line {})", role.name, step.kind, step.line)
        } else {
            format!("{}/{}", role.name, step.kind)
        };
        let case = match step.kind.as_str() {
            "register" if step.failed == 0 => {
                saw_register = true;
                registration_case(name, role, false, &location(s, step))
            }
            "unregister" if step.failed == 0 => {
                saw_unregister = true;
                registration_case(name, role, true, &location(s, step))
            }
            _ => step_case(name, s, role, step),
        };
        cases.push(case);
    }
    let r = &role.registrations;
    if !saw_register && r.ok + r.failed > 0 {
        cases.insert(
            0,
            registration_case(format!("{}/register", role.name), role, false, ""),
        );
    }
    if !saw_unregister && r.unregister_ok + r.unregister_failed > 0 {
        cases.push(registration_case(
            format!("{}/unregister", role.name),
            role,
            true,
            "",
        ));
    }
    cases
}

/// Where a step is written: `scenarios/x.yaml:17:9: step call`, or what it is when it is
/// not tied to a step.
fn location(s: &RunSummary, step: &StepSummary) -> String {
    match (step.line, s.file.as_str()) {
        (0, _) => format!("{} (not tied to a step)", step.kind),
        (line, "") => format!("line {line}, col {}: step {}", step.col, step.kind),
        (line, file) => format!("{file}:{line}:{}: step {}", step.col, step.kind),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn step_case(name: String, s: &RunSummary, role: &RoleSummary, step: &StepSummary) -> Case {
    let calls = role.calls.started;
    let at = location(s, step);
    let stopped = if s.interrupted {
        " (the run was interrupted)"
    } else {
        ""
    };
    if calls == 0 {
        return Case {
            name,
            outcome: Outcome::Skipped(format!("no call of role {} finished{stopped}", role.name)),
            system_out: Some(format!("{at}\n")),
            time: None,
        };
    }
    if step.failed == 0 && step.passed == 0 {
        // Nothing failed here, but nothing passed either: never a pass.
        let why = if step.reached > 0 {
            format!(
                "{} reached this step and none completed it{stopped}",
                plural(step.reached, "call", "calls")
            )
        } else {
            format!(
                "no call of role {} reached this step: {} stopped before it{stopped}",
                role.name,
                if calls == 1 {
                    "its call".to_owned()
                } else {
                    format!("all {calls} calls")
                }
            )
        };
        return Case {
            name,
            outcome: Outcome::Skipped(why),
            system_out: Some(format!("{at}\n")),
            time: (step.reached > 0).then_some(step.time),
        };
    }
    let tally = format!(
        "{} of role {}: {} reached this step, {} completed it, {} failed at it; {} stopped before it.",
        plural(calls, "call", "calls"),
        role.name,
        step.reached,
        step.passed,
        step.failed,
        calls.saturating_sub(step.reached.max(step.failed)),
    );
    if step.failed == 0 {
        return Case {
            name,
            outcome: Outcome::Passed,
            system_out: Some(format!("{at}\n{tally}\n")),
            time: Some(step.time),
        };
    }
    let kinds = step
        .failures
        .iter()
        .map(|(label, n)| format!("{label} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let kind = step
        .failures
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or_else(|| "failure".to_owned(), |(label, _)| label.clone());
    let mut text = format!(
        "{} of {} of role {} failed at {at}:\n",
        step.failed,
        plural(calls, "call", "calls"),
        role.name
    );
    for (label, n) in &step.failures {
        let _ = writeln!(text, "  {label:<20} {n}");
    }
    if let Some(sample) = &step.sample {
        text.push('\n');
        sample_text(&mut text, sample);
    }
    text.push_str(
        "\nMore failing calls, with their ladders: failed_call_samples in the JSON summary.\n",
    );
    Case {
        name,
        outcome: Outcome::Failed {
            kind,
            message: format!(
                "{} of {} failed: {kinds}",
                step.failed,
                plural(calls, "call", "calls")
            ),
            text,
        },
        system_out: Some(format!("{at}\n{tally}\n")),
        time: (step.reached > 0).then_some(step.time),
    }
}

/// The first failing call: Call-ID, failures and SIP ladder.
fn sample_text(text: &mut String, c: &FailedCall) {
    text.push_str("First failing call: ");
    console::sample_text(text, c);
}

fn registration_case(name: String, role: &RoleSummary, unregister: bool, at: &str) -> Case {
    let at = if at.is_empty() {
        String::new()
    } else {
        format!("{at}\n")
    };
    let r = &role.registrations;
    let (ok, failed, first, what) = if unregister {
        (
            r.unregister_ok,
            r.unregister_failed,
            &r.first_unregister_failure,
            ("unregistration", "unregistrations"),
        )
    } else {
        (
            r.ok,
            r.failed,
            &r.first_failure,
            ("registration", "registrations"),
        )
    };
    let total = ok + failed;
    if total == 0 {
        return Case {
            name,
            outcome: Outcome::Skipped(format!("no {} of role {}", what.0, role.name)),
            system_out: (!at.is_empty()).then_some(at),
            time: None,
        };
    }
    if failed == 0 {
        return Case {
            name,
            outcome: Outcome::Passed,
            system_out: Some(format!(
                "{at}{} of role {}, none failed.\n",
                plural(total, what.0, what.1),
                role.name
            )),
            time: None,
        };
    }
    let first = first
        .as_ref()
        .map(|f| format!("{}: {}", f.user, f.error))
        .unwrap_or_default();
    Case {
        name,
        outcome: Outcome::Failed {
            kind: what.0.to_owned(),
            message: format!(
                "{failed} of {} failed; first: {first}",
                plural(total, what.0, what.1)
            ),
            text: format!(
                "{failed} of {} of role {} failed.\nFirst failure: {first}\n",
                plural(total, what.0, what.1),
                role.name
            ),
        },
        system_out: (!at.is_empty()).then_some(at),
        time: None,
    }
}

/// A merged run's shards: one test case each, failed when its summary was not merged.
fn shard_cases(count: u32, missing: &[u32]) -> Vec<Case> {
    (0..count)
        .map(|i| {
            let name = format!("shard {i}/{count}");
            let outcome = if missing.contains(&i) {
                Outcome::Failed {
                    kind: "shard_missing".into(),
                    message: "its summary was not merged: the plan was not fully run".into(),
                    text: format!(
                        "{name}: its summary was not merged: the plan was not fully run\n"
                    ),
                }
            } else {
                Outcome::Passed
            };
            Case {
                name,
                outcome,
                system_out: None,
                time: None,
            }
        })
        .collect()
}

fn threshold_case(t: &ThresholdResult) -> Case {
    let name = console::threshold_rule(t);
    let condition = &t.threshold.condition;
    let actual = match t.actual {
        Some(_) => format!("actual {}", actual_text(t)),
        None => "no data: nothing was measured".to_owned(),
    };
    if t.passed {
        Case {
            name,
            outcome: Outcome::Passed,
            system_out: Some(format!("{actual}\n")),
            time: None,
        }
    } else {
        Case {
            outcome: Outcome::Failed {
                kind: "threshold".into(),
                message: format!("{actual}, limit {condition}"),
                text: format!("{name}: {actual}, limit {condition}\n"),
            },
            name,
            system_out: None,
            time: None,
        }
    }
}

/// Appends `c` escaped for XML, or `\u{…}` for a character XML 1.0 cannot carry.
fn push_escaped(out: &mut String, c: char, in_attr: bool) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' if in_attr => out.push_str("&quot;"),
        '\'' if in_attr => out.push_str("&apos;"),
        // Attribute values normalise whitespace; text normalises CR.
        '\n' if in_attr => out.push_str("&#10;"),
        '\t' if in_attr => out.push_str("&#9;"),
        '\r' => out.push_str("&#13;"),
        '\n' | '\t' => out.push(c),
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` escaped for an attribute value in double quotes.
fn attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, true);
    }
    out
}

/// `s` escaped for element text.
fn text_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::stats::fixture;

    /// The record of fixture call `i`, failed with 486 when `failed`.
    fn record(i: u64, failed: bool) -> CallRecord {
        use sipcheck_core::stats::outcome::{Failure, FailureKind};
        use sipcheck_core::stats::record::RecordContext;
        let mut r = fixture::caller(i);
        if failed {
            r.failures.push(Failure {
                step: "expect",
                line: 16,
                col: 9,
                kind: FailureKind::SipCode(486),
                message: "rejected: 486 Busy Here".into(),
            });
        }
        CallRecord::of(
            &r,
            &RecordContext {
                run_id: "r",
                run_start: Duration::ZERO,
                number: i + 1,
                ended: Duration::from_secs(10),
            },
        )
    }

    #[test]
    fn per_call_cases_stop_at_the_cap_and_count_the_rest_as_skipped() {
        let s = fixture::run();
        let mut calls = PerCall::default();
        for i in 0..PER_CALL_CAP as u64 {
            assert!(calls.push(&record(i, i == 1)));
        }
        assert!(!calls.push(&record(5000, true)));
        assert!(!calls.push_not_started());
        let mut out = Vec::new();
        write_junit_per_call(&s, &[], Some(&calls), &mut out).unwrap();
        let xml = String::from_utf8(out).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("calls"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("1001"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        assert_eq!(suite.attribute("skipped"), Some("1"));
        let failed = suite
            .children()
            .find(|n| n.children().any(|c| c.has_tag_name("failure")))
            .unwrap();
        assert_eq!(failed.attribute("name"), Some("caller #2 call-1@sipcheck"));
        let last = suite
            .children()
            .rfind(|n| n.has_tag_name("testcase"))
            .unwrap();
        let text = last
            .children()
            .find(|c| c.has_tag_name("skipped"))
            .and_then(|c| c.text())
            .unwrap();
        assert!(
            text.starts_with("2 more calls (1 of them failed)"),
            "{text}"
        );
    }

    fn render() -> String {
        let s = fixture::run();
        let t = s.check(&fixture::thresholds());
        let mut out = Vec::new();
        write_junit(&s, &t, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn attr_of<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
        n.attribute(name)
            .unwrap_or_else(|| panic!("no {name} on {n:?}"))
    }

    #[test]
    fn snapshot() {
        crate::report::snapshot::assert_snapshot("report_junit.xml", &render());
    }

    #[test]
    fn suites_cases_and_counts() {
        let xml = render();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names: Vec<_> = suites.iter().map(|s| attr_of(*s, "name")).collect();
        assert_eq!(names, ["callee", "caller", "thresholds"]);
        let cases = |suite: roxmltree::Node| -> Vec<(String, bool)> {
            suite
                .children()
                .filter(|n| n.has_tag_name("testcase"))
                .map(|c| {
                    (
                        attr_of(c, "name").to_owned(),
                        c.children().any(|n| n.has_tag_name("failure")),
                    )
                })
                .collect()
        };
        let owned = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, f)| ((*n).to_owned(), *f)).collect()
        };
        assert_eq!(
            cases(suites[0]),
            owned(&[
                ("callee/register", true),
                ("callee/answer", true),
                ("callee/play", false),
                ("callee/expect", false),
                ("callee/wait_for", false),
            ])
        );
        assert_eq!(
            cases(suites[1]),
            owned(&[
                ("caller/register", false),
                ("caller/call", true),
                ("caller/expect (line 18)", false),
                ("caller/play", false),
                ("caller/expect (line 20)", true),
                ("caller/hangup", false),
            ])
        );
        assert_eq!(
            cases(suites[2]),
            owned(&[
                ("invite_to_200.p99 < 500ms", false),
                ("calls.failed < 1%", true),
                ("rtp.loss < 0.5%", false),
                ("audio.verified > 99%", false),
                ("register_rtt.p99 < 200ms", false),
            ])
        );
        for (suite, tests, failures) in [(0, 5, 2), (1, 6, 2), (2, 5, 1)] {
            assert_eq!(attr_of(suites[suite], "tests"), tests.to_string());
            assert_eq!(attr_of(suites[suite], "failures"), failures.to_string());
        }
        assert_eq!(attr_of(root, "tests"), "16");
        assert_eq!(attr_of(root, "failures"), "5");
        // Both schemas: no timestamp or skipped on <testsuites>; on each <testsuite>.
        assert_eq!(root.attribute("timestamp"), None);
        assert_eq!(root.attribute("skipped"), None);
        assert_eq!(attr_of(suites[0], "timestamp"), "2025-11-23T12:13:20Z");
        assert_eq!(attr_of(suites[0], "skipped"), "0");
        // Times are the steps' real durations added up over the role's calls; thresholds
        // and registrations, which nothing timed, have none.
        let time = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .and_then(|n| n.attribute("time"))
        };
        // Calls 3..99 (97 × (40 + i) ms), 0..1 (4 ms each) and 2 (32 s).
        let call: u64 = (3..100).map(|i| 40 + i).sum::<u64>() + 8 + 32_000;
        assert_eq!(
            time("caller/call"),
            Some(format!("{:.3}", call as f64 / 1000.0).as_str())
        );
        assert_eq!(time("caller/hangup"), Some("480.000"));
        assert_eq!(time("callee/register"), None);
        assert_eq!(time("calls.failed < 1%"), None);
        // Every step's testcase says where the step is written.
        let play = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("caller/play"))
            .unwrap();
        let out = play
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .unwrap()
            .text()
            .unwrap();
        assert_eq!(
            out,
            "scenarios/pbx-regression.yaml:19:9: step play\n100 calls of role caller: 97 reached this step, 97 completed it, 0 failed at it; 3 stopped before it.\n"
        );
    }

    #[test]
    fn a_failing_step_carries_counts_call_id_and_ladder() {
        let xml = render();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let call = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("caller/call"))
            .unwrap();
        let failure = call.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(
            attr_of(failure, "message"),
            "3 of 100 calls failed: sip_486 ×2, timer_b ×1"
        );
        assert_eq!(attr_of(failure, "type"), "sip_486");
        let text = failure.text().unwrap();
        assert!(
            text.starts_with(
                "3 of 100 calls of role caller failed at scenarios/pbx-regression.yaml:17:9: step call:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("First failing call: Call-ID call-0@sipcheck"),
            "{text}"
        );
        // The message with XML specials survives, readable; a control character is a space.
        assert!(
            text.contains(
                "call (line 17): sip_486: call <sip:1000@pbx.test> rejected: 486 \"Busy & Here\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("SIP ladder:\n"), "{text}");
        assert!(
            text.contains("<-- 127.0.0.1:5060         SIP/2.0 486 Busy Here  [1 INVITE]"),
            "{text}"
        );

        let threshold = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("calls.failed < 1%"))
            .unwrap();
        let failure = threshold
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(attr_of(failure, "message"), "actual 4%, limit < 1%");

        let register = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("callee/register"))
            .unwrap();
        let failure = register
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            attr_of(failure, "message"),
            "1 of 99 registrations failed; first: 1049: 403 Forbidden"
        );
    }

    #[test]
    fn the_console_summary_is_in_the_thresholds_suite() {
        let xml = render();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("thresholds"))
            .unwrap();
        let out = suite
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .unwrap()
            .text()
            .unwrap();
        let s = fixture::run();
        let mut expected = Vec::new();
        console::write_summary(&s, &s.check(&fixture::thresholds()), &mut expected).unwrap();
        assert_eq!(out, String::from_utf8(expected).unwrap());
    }

    #[test]
    fn escaping_keeps_the_document_well_formed() {
        let nasty = "a<b & \"c\" 'd' ]]> \u{1}\u{1b}[31m\r\n\tend \u{FFFF}";
        let a = attr(nasty);
        let t = text_node(nasty);
        assert_eq!(
            a,
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos; ]]&gt; \\u{1}\\u{1b}[31m&#13;&#10;&#9;end \\u{ffff}"
        );
        assert_eq!(
            t,
            "a&lt;b &amp; \"c\" 'd' ]]&gt; \\u{1}\\u{1b}[31m&#13;\n\tend \\u{ffff}"
        );
        let xml = format!(r#"<r a="{a}">{t}</r>"#);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let shown = "a<b & \"c\" 'd' ]]> \\u{1}\\u{1b}[31m\r\n\tend \\u{ffff}";
        assert_eq!(doc.root_element().attribute("a"), Some(shown));
        assert_eq!(doc.root_element().text(), Some(shown));
        // Unescaped, the same text would not parse.
        assert!(roxmltree::Document::parse(&format!("<r>{nasty}</r>")).is_err());
    }

    #[test]
    fn steps_that_never_ran_are_skipped() {
        let s = sipcheck_core::stats::metrics::Metrics::new(
            std::time::SystemTime::UNIX_EPOCH,
            &fixture::info(),
        )
        .finish(std::time::Duration::ZERO, true);
        let mut out = Vec::new();
        write_junit(&s, &[], &mut out).unwrap();
        let xml = String::from_utf8(out).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(attr_of(root, "tests"), "11");
        assert_eq!(attr_of(root, "failures"), "0");
        let skipped: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("skipped"))
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(skipped.len(), 11);
        assert!(
            skipped.contains(&"no call of role caller finished (the run was interrupted)"),
            "{skipped:?}"
        );
        validate(&xml);
    }

    #[test]
    fn steps_no_call_reached_are_skipped_with_the_reason_never_passed() {
        // Every call of the caller fails at its `call` step: its later steps were never run.
        let mut m = sipcheck_core::stats::metrics::Metrics::new(
            std::time::SystemTime::UNIX_EPOCH,
            &fixture::info(),
        );
        for i in 0..3 {
            let mut c = fixture::caller(i);
            c.steps.truncate(1);
            c.steps[0].passed = false;
            c.failures.push(sipcheck_core::stats::outcome::Failure {
                step: "call",
                line: 17,
                col: 9,
                kind: sipcheck_core::stats::outcome::FailureKind::SipCode(480),
                message: "the call ended: rejected: 480 Temporarily Unavailable".into(),
            });
            m.record_call(&c);
        }
        // One call reached `expect` (line 18) and was cut short there by Ctrl-C.
        let mut c = fixture::caller(3);
        c.steps.truncate(2);
        c.steps[1].passed = false;
        c.failures.push(sipcheck_core::stats::outcome::Failure {
            step: "run",
            line: 0,
            col: 0,
            kind: sipcheck_core::stats::outcome::FailureKind::Interrupted,
            message: "interrupted before the call finished".into(),
        });
        m.record_call(&c);
        let s = m.finish(std::time::Duration::from_secs(5), true);
        let mut out = Vec::new();
        write_junit(&s, &[], &mut out).unwrap();
        let xml = String::from_utf8(out).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let outcome = |name: &str| -> (String, String) {
            let case = doc
                .descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .unwrap_or_else(|| panic!("no {name}: {xml}"));
            let child = case
                .children()
                .find(|n| n.is_element() && !n.has_tag_name("system-out"));
            child.map_or(("passed".into(), String::new()), |n| {
                (
                    n.tag_name().name().to_owned(),
                    n.text().unwrap_or_default().to_owned(),
                )
            })
        };
        assert_eq!(outcome("caller/call").0, "failure");
        assert_eq!(
            outcome("caller/expect (line 18)"),
            (
                "skipped".into(),
                "1 call reached this step and none completed it (the run was interrupted)".into()
            )
        );
        for name in ["caller/play", "caller/expect (line 20)", "caller/hangup"] {
            assert_eq!(
                outcome(name),
                (
                    "skipped".into(),
                    "no call of role caller reached this step: all 4 calls stopped before it (the run was interrupted)"
                        .into()
                ),
                "{name}"
            );
        }
        validate(&xml);
    }

    /// Validates `xml` with xmllint against both schemas kept in tests/schemas.
    fn validate(xml: &str) {
        let dir = std::env::temp_dir().join(format!(
            "sipcheck-junit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("junit.xml");
        std::fs::write(&file, xml).unwrap();
        for schema in ["junit-10.xsd", "jenkins-junit.xsd"] {
            let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/schemas")
                .join(schema);
            let out = std::process::Command::new("xmllint")
                .arg("--noout")
                .arg("--schema")
                .arg(&schema)
                .arg(&file)
                .output()
                .expect("xmllint (Debian package libxml2-utils) runs");
            assert!(
                out.status.success(),
                "{} rejects the report:\n{}\n{xml}",
                schema.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_report_of_a_failing_run_validates_against_both_jenkins_schemas() {
        validate(&render());
    }
}
