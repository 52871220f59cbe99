//! The plain-text summary printed at the end of a run: what a VoIP engineer reads at a glance.
//!
//! Sections appear only when they have data: calls, failures per kind, registrations, a timing
//! table (count, p50, p90, p99, p99.9, max in milliseconds), RTP, the generator's own health,
//! media checks, thresholds and the verdict. Pinned by a snapshot test
//! (`tests/snapshots/report_console.txt`).

use std::io::{self, Write};

use hdrhistogram::Histogram;
use sipcheck_core::scenario::threshold::Metric;

use super::metrics::{
    CallCounts, RunSummary, ThresholdResult, TimingStats, Verdict, LATE_START, TIMING_METRICS,
};
use crate::run::result::Side;

/// Writes the summary of a run and its thresholds.
///
/// # Errors
/// Any error of `out`.
pub fn write_summary(
    s: &RunSummary,
    thresholds: &[ThresholdResult],
    out: &mut impl Write,
) -> io::Result<()> {
    let secs = s.elapsed.as_secs_f64();
    if s.interrupted {
        writeln!(
            out,
            "sipcheck run {}: INTERRUPTED after {secs:.1} s (calls in progress were cut short)",
            s.scenario
        )?;
    } else {
        writeln!(out, "sipcheck run {}: {secs:.1} s", s.scenario)?;
    }

    // Calls.
    writeln!(out)?;
    writeln!(
        out,
        "{:<30}{:>9}{:>9}{:>9}{:>10}",
        "calls", "started", "passed", "failed", "failed %"
    )?;
    let side = match s.counted_side {
        Side::Caller => "caller side",
        Side::Callee => "callee side",
    };
    calls_row(out, &format!("all ({side})"), &s.calls)?;
    for role in &s.roles {
        if role.calls.started > 0 {
            calls_row(out, &role.name, &role.calls)?;
        }
    }
    if s.generator.not_started > 0 {
        writeln!(
            out,
            "  not started: {} (due by the load plan while the concurrency cap was reached)",
            s.generator.not_started
        )?;
    }

    // Failures.
    if !s.failures.is_empty() {
        writeln!(out)?;
        writeln!(out, "failures (a call can fail more than one way)")?;
        for (label, n) in &s.failures {
            writeln!(out, "  {label:<28}{n:>9}")?;
        }
    }

    // Registrations.
    let r = &s.registrations;
    if r.ok + r.failed > 0 {
        writeln!(out)?;
        write!(out, "registrations: ok {}, failed {}", r.ok, r.failed)?;
        if let Some(f) = &r.first_failure {
            write!(out, " (first: {}: {})", f.user, one_line(&f.error))?;
        }
        writeln!(out)?;
    }
    if r.unregister_ok + r.unregister_failed > 0 {
        if r.ok + r.failed == 0 {
            writeln!(out)?;
        }
        write!(
            out,
            "unregistrations: ok {}, failed {}",
            r.unregister_ok, r.unregister_failed
        )?;
        if let Some(f) = &r.first_unregister_failure {
            write!(out, " (first: {}: {})", f.user, one_line(&f.error))?;
        }
        writeln!(out)?;
    }

    // Timings.
    let table: Vec<(Metric, TimingStats)> = TIMING_METRICS
        .iter()
        .filter(|m| !matches!(m, Metric::RtpJitter | Metric::PacingLateness))
        .filter_map(|&m| Some((m, TimingStats::of(s.timing(m)?)?)))
        .collect();
    if !table.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<30}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "timings (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        )?;
        for (m, t) in &table {
            writeln!(
                out,
                "  {:<28}{:>9}{:>9.1}{:>9.1}{:>9.1}{:>9.1}{:>9.1}",
                m.name(),
                t.count,
                t.p50_ms,
                t.p90_ms,
                t.p99_ms,
                t.p999_ms,
                t.max_ms
            )?;
        }
        if table.iter().any(|(m, _)| m.name().starts_with("invite_")) {
            writeln!(
                out,
                "  (invite_* from each call's scheduled start, caller side; failed calls have no sample)"
            )?;
        }
    }

    // RTP.
    let rtp = &s.rtp;
    if rtp.packets_sent + rtp.packets_expected > 0 {
        writeln!(out)?;
        writeln!(out, "RTP")?;
        write!(
            out,
            "  packets          sent {}, received {}, expected {}, lost {}",
            rtp.packets_sent, rtp.packets_received, rtp.packets_expected, rtp.packets_lost
        )?;
        match rtp.loss_ratio() {
            Some(l) => writeln!(out, " ({})", percent(l))?,
            None => writeln!(out)?,
        }
        if rtp.stray_packets > 0 {
            writeln!(
                out,
                "  stray            {} packets from other sources or SSRCs, ignored (not the peers' media)",
                rtp.stray_packets
            )?;
        }
        if let Some(t) = TimingStats::of(&s.call_loss_ppm) {
            // Parts per million, shown as percent of the stream's expected packets.
            let pct = |ppm: f64| percent(ppm / 1_000_000.0);
            let ppm = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
            writeln!(
                out,
                "  loss per stream  p50 {}, p99 {}, max {} ({} streams)",
                pct(ppm(&s.call_loss_ppm, 0.5)),
                pct(ppm(&s.call_loss_ppm, 0.99)),
                pct(s.call_loss_ppm.max() as f64),
                t.count
            )?;
        }
        if let Some(t) = s.timing(Metric::RtpJitter).and_then(TimingStats::of) {
            writeln!(
                out,
                "  jitter           p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} streams, at call end)",
                t.p50_ms, t.p99_ms, t.max_ms, t.count
            )?;
        }
        if let Some(t) = s.timing(Metric::PacingLateness).and_then(TimingStats::of) {
            writeln!(
                out,
                "  pacing lateness  p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} packets)",
                t.p50_ms, t.p99_ms, t.p999_ms, t.max_ms, t.count
            )?;
        }
    }

    // Generator.
    let g = &s.generator;
    writeln!(out)?;
    write!(
        out,
        "generator (sipcheck itself): late starts {} (> {} ms behind schedule",
        g.late_starts,
        LATE_START.as_millis()
    )?;
    if g.late_starts > 0 {
        write!(
            out,
            "; worst {:.1} ms",
            g.max_start_lag.as_secs_f64() * 1000.0
        )?;
    }
    writeln!(out, "), frames skipped {}", g.frames_skipped)?;

    // Media checks.
    if s.audio.checked + s.dtmf.checked > 0 {
        writeln!(out)?;
        writeln!(out, "media checks")?;
        for (name, v) in [("audio verified", s.audio), ("dtmf verified", s.dtmf)] {
            if let Some(ratio) = v.ratio() {
                writeln!(
                    out,
                    "  {name:<16}{} of {} ({})",
                    v.verified,
                    v.checked,
                    percent(ratio)
                )?;
            }
        }
    }

    // Thresholds.
    if !thresholds.is_empty() {
        writeln!(out)?;
        writeln!(out, "thresholds")?;
        let width = thresholds
            .iter()
            .map(|t| t.name.chars().count() + t.condition.chars().count() + 1)
            .max()
            .unwrap_or(0);
        for t in thresholds {
            let mark = if t.passed { '✓' } else { '✗' };
            let rule = format!("{} {}", t.name, t.condition);
            writeln!(out, "  {mark} {rule:<width$}  actual {}", t.actual_text())?;
        }
    }

    // Verdict.
    writeln!(out)?;
    let verdict = match s.verdict(thresholds) {
        Verdict::Passed => "PASSED".to_owned(),
        Verdict::ThresholdsFailed => {
            let failed = thresholds.iter().filter(|t| !t.passed).count();
            format!(
                "FAILED: {failed} of {} thresholds failed",
                thresholds.len()
            )
        }
        Verdict::CallsFailed => format!(
            "FAILED: {} of {} calls and {} registrations failed (no calls.failed threshold allows any)",
            s.calls.failed, s.calls.started, s.registrations.failed
        ),
        Verdict::Interrupted => "INTERRUPTED: nothing failed, but the run did not finish".into(),
    };
    writeln!(out, "result: {verdict}")
}

fn calls_row(out: &mut impl Write, name: &str, c: &CallCounts) -> io::Result<()> {
    let pct = c.failed_ratio().map_or_else(|| "-".to_owned(), percent);
    writeln!(
        out,
        "  {name:<28}{:>9}{:>9}{:>9}{pct:>10}",
        c.started, c.passed, c.failed
    )
}

/// A fraction of one as a percentage with two decimals.
fn percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

/// Newlines and other control characters as spaces, for a one-line field.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::report::fixture;
    use crate::report::metrics::{Metrics, RunInfo};

    pub(crate) fn render(s: &RunSummary, t: &[ThresholdResult]) -> String {
        let mut out = Vec::new();
        write_summary(s, t, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn snapshot_of_a_synthetic_run() {
        let s = fixture::run();
        let t = s.check(&fixture::thresholds());
        crate::report::snapshot::assert_snapshot("report_console.txt", &render(&s, &t));
    }

    #[test]
    fn an_empty_interrupted_run_says_so_and_shows_no_empty_sections() {
        let s = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default())
            .finish(Duration::from_millis(1500), true);
        let text = render(&s, &[]);
        assert_eq!(
            text,
            "sipcheck run : INTERRUPTED after 1.5 s (calls in progress were cut short)\n\
             \n\
             calls                           started   passed   failed  failed %\n  \
             all (callee side)                   0        0        0         -\n\
             \n\
             generator (sipcheck itself): late starts 0 (> 10 ms behind schedule), frames skipped 0\n\
             \n\
             result: INTERRUPTED: nothing failed, but the run did not finish\n"
        );
    }
}
