//! `--metrics FILE`: the run's headline figures in the OpenMetrics text format, for GitLab's
//! metrics report (`artifacts: reports: metrics:`), which shows how each changed against the
//! target branch in a merge request.
//!
//! One gauge per figure, named `sipcheck_…`, without labels (GitLab compares the lines by
//! name), each with its `# HELP` and `# TYPE`; the file ends with `# EOF`. A figure the run
//! could not measure (no call got a 200 OK, no RTP expected, no MOS estimated) is left out
//! rather than written as a number that was never measured.

use std::io::{self, Write};

use sipcheck_core::scenario::threshold::Metric;
use sipcheck_core::stats::metrics::RunSummary;
use sipcheck_core::stats::verdict::{ThresholdResult, Verdict};

/// The headline figures of a run: (name, help, value), in the file's order.
#[must_use]
pub fn figures(
    summary: &RunSummary,
    thresholds: &[ThresholdResult],
) -> Vec<(&'static str, &'static str, Option<f64>)> {
    let setup = summary
        .timing(Metric::InviteTo200)
        .filter(|h| !h.is_empty());
    let setup_at = |q: f64| setup.map(|h| h.value_at_quantile(q) as f64 / 1e6);
    let passed = summary.verdict(thresholds) == Verdict::Passed;
    vec![
        (
            "sipcheck_calls_started",
            "Calls started (the counted side's results).",
            Some(summary.calls.started as f64),
        ),
        (
            "sipcheck_calls_passed",
            "Calls without a failure.",
            Some(summary.calls.passed as f64),
        ),
        (
            "sipcheck_calls_failed",
            "Calls with at least one failure.",
            Some(summary.calls.failed as f64),
        ),
        (
            "sipcheck_calls_failed_ratio",
            "Failed calls as a fraction of those started.",
            summary.calls.failed_ratio(),
        ),
        (
            "sipcheck_setup_latency_p50_seconds",
            "INVITE (scheduled start) to 200 OK, median.",
            setup_at(0.50),
        ),
        (
            "sipcheck_setup_latency_p90_seconds",
            "INVITE (scheduled start) to 200 OK, 90th percentile.",
            setup_at(0.90),
        ),
        (
            "sipcheck_setup_latency_p99_seconds",
            "INVITE (scheduled start) to 200 OK, 99th percentile.",
            setup_at(0.99),
        ),
        (
            "sipcheck_rtp_loss_ratio",
            "RTP packets lost as a fraction of those expected, all streams.",
            summary.rtp.loss_ratio(),
        ),
        (
            "sipcheck_mos_p5",
            "Estimated MOS (E-model, MOS-CQE) of the received streams, 5th percentile.",
            summary.quality.mos_percentile(5.0),
        ),
        (
            "sipcheck_verdict",
            "1 when the run passed, 0 otherwise.",
            Some(if passed { 1.0 } else { 0.0 }),
        ),
    ]
}

/// Writes the metrics report.
///
/// # Errors
/// The writer's.
pub fn write_metrics(
    summary: &RunSummary,
    thresholds: &[ThresholdResult],
    w: &mut impl Write,
) -> io::Result<()> {
    for (name, help, value) in figures(summary, thresholds) {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            continue;
        };
        writeln!(w, "# HELP {name} {help}")?;
        writeln!(w, "# TYPE {name} gauge")?;
        writeln!(w, "{name} {value}")?;
    }
    writeln!(w, "# EOF")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::stats::fixture;

    /// The sample lines of an OpenMetrics text: every line a `# HELP`/`# TYPE` comment, a
    /// `name value` sample with a snake-case `sipcheck_` name and a number, or the final
    /// `# EOF`.
    pub(crate) fn parse(text: &str) -> Vec<(String, f64)> {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        let mut samples = Vec::new();
        for line in &lines[..lines.len() - 1] {
            if let Some(comment) = line.strip_prefix("# ") {
                assert!(
                    comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                    "{line}"
                );
                continue;
            }
            let (name, value) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(name.starts_with("sipcheck_"), "{line}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{line}"
            );
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            samples.push((name.to_owned(), value));
        }
        samples
    }

    #[test]
    fn the_headline_figures_parse_as_openmetrics() {
        let summary = fixture::run();
        let thresholds = summary.check(&fixture::thresholds());
        let mut out = Vec::new();
        write_metrics(&summary, &thresholds, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let samples: std::collections::BTreeMap<_, _> = parse(&text).into_iter().collect();
        assert_eq!(
            samples["sipcheck_calls_started"],
            summary.calls.started as f64
        );
        assert_eq!(
            samples["sipcheck_calls_failed"],
            summary.calls.failed as f64
        );
        assert_eq!(
            samples["sipcheck_calls_failed_ratio"],
            summary.calls.failed_ratio().unwrap()
        );
        assert!(samples["sipcheck_setup_latency_p50_seconds"] > 0.0);
        assert!(
            samples["sipcheck_setup_latency_p50_seconds"]
                <= samples["sipcheck_setup_latency_p99_seconds"]
        );
        assert!(samples.contains_key("sipcheck_mos_p5"), "{text}");
        assert!(samples.contains_key("sipcheck_rtp_loss_ratio"), "{text}");
        // The fixture's run has failed calls and no calls.* threshold: it failed.
        assert_eq!(samples["sipcheck_verdict"], 0.0, "{text}");
        assert_eq!(samples.len(), 10, "{text}");
    }

    #[test]
    fn figures_never_measured_are_left_out() {
        let info = fixture::info();
        let metrics = sipcheck_core::stats::metrics::Metrics::new(std::time::UNIX_EPOCH, &info);
        let summary = metrics.finish(std::time::Duration::from_secs(1), false);
        let thresholds = summary.check(&[]);
        let mut out = Vec::new();
        write_metrics(&summary, &thresholds, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let names: Vec<String> = parse(&text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "sipcheck_calls_started",
                "sipcheck_calls_passed",
                "sipcheck_calls_failed",
                "sipcheck_verdict"
            ],
            "{text}"
        );
    }
}
