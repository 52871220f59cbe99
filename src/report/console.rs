//! The plain-text summary printed at the end of a run: what a VoIP engineer reads at a glance.
//!
//! Sections appear only when they have data: calls, failures grouped by exact reason (each
//! with its first failing call and SIP ladder), registrations, a timing
//! table (count, p50, p90, p99, p99.9, max in milliseconds), RTP, the generator's own health,
//! media checks, thresholds and the verdict. Pinned by a snapshot test
//! (`tests/snapshots/report_console.txt`).

use std::io::{self, Write};

use hdrhistogram::Histogram;
use sipcheck_core::scenario::threshold::Metric;

use super::values::actual_text;
use sipcheck_core::stats::ladder::format_rung;
use sipcheck_core::stats::metrics::{
    CallCounts, FailedCall, RunSummary, TimingStats, LATE_START, TIMING_METRICS, WORST_CALLS,
};
use sipcheck_core::stats::outcome::Side;
use sipcheck_core::stats::verdict::{ThresholdResult, Verdict};

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
    if !s.run_id.is_empty() {
        writeln!(
            out,
            "run id {} (in the JUnit and JSON reports too)",
            s.run_id
        )?;
    }
    if let Some(shard) = s.provenance.shard {
        writeln!(out, "shard {shard} (counting from 0) of the scenario")?;
    }
    if let Some(n) = s.provenance.merged_shards {
        let missing = &s.provenance.missing_shards;
        if missing.is_empty() {
            writeln!(out, "merged from all {n} shards")?;
        } else {
            let list: Vec<String> = missing.iter().map(u32::to_string).collect();
            writeln!(
                out,
                "merged from {} of {n} shards: MISSING shard(s) {} (the plan was not fully run: FAIL)",
                n as usize - missing.len(),
                list.join(", ")
            )?;
        }
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

    // Failures, by exact reason.
    if !s.reasons.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "failures by reason (a call can fail more than one way)"
        )?;
        let width = s
            .reasons
            .iter()
            .map(|r| r.reason.chars().count())
            .max()
            .unwrap_or(0)
            .min(60);
        for r in &s.reasons {
            writeln!(out, "  {:<width$}  ×{}", one_line(&r.reason), r.count)?;
        }
        writeln!(out)?;
        writeln!(out, "first failing call of each reason")?;
        for r in &s.reasons {
            writeln!(out, "  {} (×{})", one_line(&r.reason), r.count)?;
            let mut text = String::new();
            sample_text(&mut text, &r.first);
            for line in text.lines() {
                writeln!(out, "    {line}")?;
            }
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
        .filter(|m| {
            !matches!(
                m,
                Metric::RtpJitter | Metric::PacingLateness | Metric::AudioGap
            )
        })
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
        if rtp.discontinuities > 0 {
            writeln!(
                out,
                "  discontinuities  {} sequence/timestamp jumps within the peers' streams (neither loss nor jitter)",
                rtp.discontinuities
            )?;
        }
        if rtp.srtp_streams > 0 {
            writeln!(
                out,
                "  srtp             {} call ends, auth failures {}, replays {}",
                rtp.srtp_streams, rtp.srtp_auth_failures, rtp.srtp_replays
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
        let q = &s.quality;
        if let (Some(p5), Some(p50)) = (q.mos_percentile(5.0), q.mos_percentile(50.0)) {
            writeln!(
                out,
                "  mos (estimate)   p5 {p5:.2}, p50 {p50:.2}, min {:.2} ({} streams; G.107 E-model, G.711 without PLC)",
                q.mos_milli.min() as f64 / 1000.0,
                q.mos_milli.len()
            )?;
        }
        if let (Some(p5), Some(p50), Some(min)) = (
            q.pesq_percentile(5.0),
            q.pesq_percentile(50.0),
            q.pesq_min(),
        ) {
            writeln!(
                out,
                "  pesq             p5 {p5:.2}, p50 {p50:.2}, min {min:.2} ({} scores; ITU-T P.862)",
                q.pesq_milli.len()
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
        if s.audio.checked > 0 {
            write!(
                out,
                "  {:<16}{} (dropouts of 40 ms or more in heard tones)",
                "audio gaps", s.quality.audio_gaps
            )?;
            match s.timing(Metric::AudioGap).and_then(TimingStats::of) {
                Some(t) => writeln!(out, ", p50 {:.0} ms, max {:.0} ms", t.p50_ms, t.max_ms)?,
                None => writeln!(out)?,
            }
        }
    }

    // The calls with the lowest MOS estimate.
    if !s.worst_calls.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "worst calls (lowest MOS estimate, {} at most)",
            WORST_CALLS
        )?;
        writeln!(
            out,
            "  {:<5} {:>7} {:>9} {:>5}  {:<20} {:<16} call-id",
            "mos", "loss", "jitter", "gaps", "verdict", "role"
        )?;
        for w in &s.worst_calls {
            let q = &w.quality;
            let loss = q
                .loss_percent
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"));
            writeln!(
                out,
                "  {:<5.2} {:>7} {:>6.1} ms {:>5}  {:<20} {:<16} {}",
                w.mos,
                loss,
                q.jitter_ms,
                q.audio_gaps,
                one_line(&w.verdict),
                one_line(&if w.role == side_name(w.side) {
                    w.role.clone()
                } else {
                    format!("{} ({})", w.role, side_name(w.side))
                }),
                one_line(&w.call_id)
            )?;
        }
    }

    // Thresholds.
    if !thresholds.is_empty() {
        writeln!(out)?;
        writeln!(out, "thresholds")?;
        let width = thresholds
            .iter()
            .map(|t| threshold_rule(t).chars().count())
            .max()
            .unwrap_or(0);
        for t in thresholds {
            let mark = if t.passed { '✓' } else { '✗' };
            let rule = threshold_rule(t);
            writeln!(out, "  {mark} {rule:<width$}  actual {}", actual_text(t))?;
        }
    }

    // Verdict.
    writeln!(out)?;
    writeln!(out, "result: {}", verdict_text(s, thresholds))
}

/// The verdict in words: `PASSED`, `FAILED: 1 of 4 thresholds failed`, ….
pub(crate) fn verdict_text(s: &RunSummary, thresholds: &[ThresholdResult]) -> String {
    match s.verdict(thresholds) {
        Verdict::Passed => "PASSED".to_owned(),
        Verdict::ThresholdsFailed => {
            let failed = thresholds.iter().filter(|t| !t.passed).count();
            format!(
                "FAILED: {failed} of {} thresholds failed",
                thresholds.len()
            )
        }
        Verdict::Failed if !s.provenance.missing_shards.is_empty() => format!(
            "FAILED: {} of {} shards missing (the plan was not fully run)",
            s.provenance.missing_shards.len(),
            s.provenance.merged_shards.unwrap_or_default()
        ),
        Verdict::Failed => format!(
            "FAILED: {} of {} calls and {} registrations failed (no calls.failed threshold allows any)",
            s.calls.failed, s.calls.started, s.registrations.failed
        ),
        Verdict::Interrupted => interrupted_verdict(s, thresholds),
    }
}

/// A threshold as the reports name it: `invite_to_200.p99 < 500ms`.
pub(crate) fn threshold_rule(t: &ThresholdResult) -> String {
    format!("{} {}", t.threshold.metric, t.threshold.condition)
}

/// The verdict of an interrupted run: what failed before the stop, or that nothing did.
fn interrupted_verdict(s: &RunSummary, thresholds: &[ThresholdResult]) -> String {
    let r = &s.registrations;
    let mut failed = Vec::new();
    if s.calls.failed > 0 {
        let mut calls = format!("{} of {} calls failed", s.calls.failed, s.calls.started);
        if s.calls_cut_short == s.calls.failed {
            calls.push_str(if s.calls.failed == 1 {
                " (cut short by the interruption)"
            } else {
                " (all cut short by the interruption)"
            });
        } else if s.calls_cut_short > 0 {
            calls.push_str(&format!(
                " ({} of them only cut short by the interruption)",
                s.calls_cut_short
            ));
        }
        failed.push(calls);
    }
    // Failures of the roles' other side (callees when callers count) are in the reasons.
    let listed: u64 = s.reasons.iter().map(|r| r.count).sum();
    if s.calls.failed == 0 && listed > 0 {
        failed.push(format!("{listed} failures of calls on the answering side"));
    }
    for (n, what) in [
        (r.failed, "registrations"),
        (r.unregister_failed, "unregistrations"),
    ] {
        if n > 0 {
            failed.push(format!("{n} {what} failed"));
        }
    }
    let t = thresholds.iter().filter(|t| !t.passed).count();
    if t > 0 {
        failed.push(format!("{t} of {} thresholds failed", thresholds.len()));
    }
    if failed.is_empty() {
        "INTERRUPTED: nothing failed, but the run did not finish".into()
    } else {
        format!(
            "INTERRUPTED: the run did not finish, and {}",
            failed.join(", ")
        )
    }
}

/// The first failing call of a group: Call-ID, failures and SIP ladder, one item a line.
pub(crate) fn sample_text(text: &mut String, c: &FailedCall) {
    use std::fmt::Write as _;
    let _ = writeln!(text, "Call-ID {}", one_line(&c.call_id));
    let _ = write!(text, "user {} ({}", one_line(&c.user), c.role);
    if let Some(code) = c.final_code {
        let _ = write!(text, ", final response {code}");
    }
    let _ = writeln!(text, "), ended: {}", one_line(&c.end_reason));
    for f in &c.failures {
        let at = if f.line > 0 {
            format!("{} (line {})", f.step, f.line)
        } else {
            f.step.clone()
        };
        let _ = writeln!(
            text,
            "{at}: {}: {}",
            f.kind,
            one_line(&f.message).trim_end()
        );
    }
    if !c.ladder.is_empty() {
        let _ = writeln!(text, "SIP ladder:");
        for rung in &c.ladder {
            let _ = writeln!(text, "  {}", format_rung(rung));
        }
    }
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
fn side_name(side: Side) -> &'static str {
    match side {
        Side::Caller => "caller",
        Side::Callee => "callee",
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use sipcheck_core::stats::fixture;
    use sipcheck_core::stats::metrics::{Metrics, RunInfo};
    use sipcheck_core::stats::outcome::{CallMedia, Failure, FailureKind};

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
    fn failures_are_grouped_by_exact_reason_with_the_first_call_and_its_ladder() {
        let s = fixture::run();
        let text = render(&s, &s.check(&fixture::thresholds()));
        let section: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("failures by reason"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            section,
            [
                "  signalling: the call ended before it could be answered  ×2",
                "  sip_486 \"Busy & Here\"                                   ×2",
                "  timer_b: no response to INVITE within 32 s              ×1",
                "  tone 1000 Hz not heard                                  ×1",
            ],
            "{text}"
        );
        // Each reason's first call, with its Call-ID and ladder.
        let first = text
            .split("first failing call of each reason\n")
            .nth(1)
            .unwrap();
        assert!(
            first.starts_with(
                "  signalling: the call ended before it could be answered (×2)\n    Call-ID call-0@sipcheck\n    user 1000 (callee, final response 486), ended: rejected by the far end's proxy (486 relayed)\n"
            ),
            "{text}"
        );
        assert!(
            first.contains(
                "  sip_486 \"Busy & Here\" (×2)\n    Call-ID call-0@sipcheck\n    user 1050 (caller, final response 486), ended: rejected: 486 Busy Here\n    call (line 17): sip_486: call <sip:1000@pbx.test> rejected: 486 \"Busy & Here\"\n    SIP ladder:\n"
            ),
            "{text}"
        );
        assert!(
            first.contains("ms <-- 127.0.0.1:5060         SIP/2.0 486 Busy Here  [1 INVITE]\n"),
            "{text}"
        );
        assert!(first.contains("  tone 1000 Hz not heard (×1)\n    Call-ID call-5@sipcheck\n"));
        // Control characters of a peer's text never reach the terminal.
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }

    #[test]
    fn stray_rtp_is_shown_apart_from_loss() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &fixture::info());
        for (i, stray) in [(1, 0), (2, 120), (3, 7)] {
            let mut c = fixture::caller(i);
            c.media = Some(CallMedia {
                stray_packets: stray,
                ..c.media.take().unwrap()
            });
            m.record_call(&c);
        }
        let text = render(&m.finish(Duration::from_secs(1), false), &[]);
        assert!(
            text.contains("stray            127 packets from other sources or SSRCs"),
            "{text}"
        );
    }

    fn interrupted_run(failures: &[FailureKind]) -> RunSummary {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &fixture::info());
        for (i, kind) in failures.iter().enumerate() {
            let mut c = fixture::caller(i as u64);
            c.failures.push(Failure {
                step: "call",
                line: 17,
                col: 9,
                kind: kind.clone(),
                message: match kind {
                    FailureKind::Interrupted => "interrupted before the call finished".into(),
                    _ => "the call ended: rejected: 480 Temporarily Unavailable".into(),
                },
            });
            m.record_call(&c);
        }
        m.record_call(&fixture::caller(99));
        m.finish(Duration::from_secs(3), true)
    }

    fn verdict_line(text: &str) -> &str {
        text.lines().last().unwrap()
    }

    #[test]
    fn an_interrupted_run_with_failures_never_says_nothing_failed() {
        let s = interrupted_run(&[FailureKind::SipCode(480), FailureKind::Interrupted]);
        let text = render(&s, &[]);
        assert!(!text.contains("nothing failed"), "{text}");
        let reason = text
            .lines()
            .find(|l| l.starts_with("  sip_480 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            reason.starts_with("  sip_480 Temporarily Unavailable ") && reason.ends_with(" ×1"),
            "{text}"
        );
        assert_eq!(
            verdict_line(&text),
            "result: INTERRUPTED: the run did not finish, and 2 of 3 calls failed (1 of them only cut short by the interruption)"
        );

        // Calls only cut short by the stop are failures too, and said to be so.
        let s = interrupted_run(&[FailureKind::Interrupted, FailureKind::Interrupted]);
        let text = render(&s, &[]);
        assert!(!text.contains("nothing failed"), "{text}");
        assert_eq!(
            verdict_line(&text),
            "result: INTERRUPTED: the run did not finish, and 2 of 3 calls failed (all cut short by the interruption)"
        );

        // A failed threshold is said too.
        let s = interrupted_run(&[]);
        let t = s.check(&[sipcheck_core::scenario::threshold::Threshold::parse(
            "invite_to_200.p99",
            "< 1ms",
        )
        .unwrap()]);
        let text = render(&s, &t);
        assert_eq!(
            verdict_line(&text),
            "result: INTERRUPTED: the run did not finish, and 1 of 1 thresholds failed"
        );
        assert_eq!(
            verdict_line(&render(&s, &[])),
            "result: INTERRUPTED: nothing failed, but the run did not finish"
        );
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
