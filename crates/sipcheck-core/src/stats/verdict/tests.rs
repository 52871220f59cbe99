//! The verdict over thresholds, on the synthetic run of [`crate::stats::fixture`] and on
//! small runs built here.

use std::time::{Duration, SystemTime};

use super::*;
use crate::scenario::threshold::{with_builtins, MetricKind};
use crate::stats::fixture::*;
use crate::stats::metrics::{Metrics, RunInfo};
use crate::stats::outcome::CallResult;

fn mref(s: &str) -> MetricRef {
    s.parse().unwrap()
}

fn threshold(metric: &str, condition: &str) -> Threshold {
    Threshold::parse(metric, condition).unwrap_or_else(|e| panic!("{metric}: {e}"))
}

/// A run of `calls` passing caller calls (each through [`caller`]), `not_started` calls the
/// plan had due but that did not start, over `elapsed`.
fn small_run(calls: &[CallResult], not_started: u64, elapsed: Duration) -> RunSummary {
    let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
    for c in calls {
        m.record_call(c);
    }
    for _ in 0..not_started {
        m.record_not_started();
    }
    m.finish(elapsed, false)
}

#[test]
fn values_are_in_the_threshold_units() {
    let s = run();
    assert_eq!(s.value(&mref("calls.failed")), Some(0.04));
    assert_eq!(s.value(&mref("calls.failed.count")), Some(4.0));
    assert_eq!(s.value(&mref("calls.passed")), Some(0.96));
    assert_eq!(s.value(&mref("calls.started")), Some(100.0));
    assert_eq!(s.value(&mref("calls.started.rate")), Some(10.0));
    assert_eq!(s.value(&mref("generator.overrun")), Some(2.0));
    assert_eq!(s.value(&mref("invite_to_200.count")), Some(97.0));
    let loss = s.value(&mref("rtp.loss")).unwrap();
    // Both streams of calls 10, 20 … 90 lost 2 packets each: 18 × 2 lost of
    // (97 + 97) × 250 expected.
    assert_eq!(s.rtp.packets_lost, 36);
    assert!((loss - 36.0 / (194.0 * 250.0)).abs() < 1e-12, "{loss}");
    assert_eq!(s.value(&mref("audio.verified")), Some(193.0 / 194.0));
    assert_eq!(s.value(&mref("dtmf.verified")), Some(1.0));
    let min = s.value(&mref("invite_to_200.min")).unwrap();
    assert_eq!(min, 42.976);
    let mean = s.value(&mref("bye_rtt.mean")).unwrap();
    assert!((mean - 1.55).abs() < 0.01, "{mean}");
}

#[test]
fn nothing_measured_is_no_value() {
    let s = Metrics::new(SystemTime::UNIX_EPOCH, &info()).finish(Duration::ZERO, false);
    assert_eq!(s.value(&mref("invite_to_200.p99")), None);
    assert_eq!(s.value(&mref("invite_to_200.count")), Some(0.0));
    assert_eq!(s.value(&mref("calls.failed")), None);
    assert_eq!(s.value(&mref("rtp.loss")), None);
    assert_eq!(s.value(&mref("calls.started.rate")), None);
}

#[test]
fn thresholds_and_verdict() {
    let s = run();
    let results = s.check(&thresholds());
    let by_name: Vec<(String, bool)> = results
        .iter()
        .map(|r| (r.metric().to_string(), r.passed))
        .collect();
    assert_eq!(
        by_name,
        [
            ("invite_to_200.p99".to_owned(), true),
            ("calls.failed".to_owned(), false),
            ("rtp.loss".to_owned(), true),
            ("audio.verified".to_owned(), true),
            ("register_rtt.p99".to_owned(), true)
        ]
    );
    assert_eq!(results[1].actual, Some(0.04));
    assert_eq!(results[1].unit(), ValueUnit::Fraction);
    assert_eq!(results[1].threshold.condition.to_string(), "< 1%");
    assert_eq!(s.verdict(&results), Verdict::ThresholdsFailed);
    // Failed calls fail the run unless a calls.* threshold governs them.
    let latency_only = s.check(&thresholds()[..1]);
    assert_eq!(s.verdict(&latency_only), Verdict::Failed);
    let lenient = s.check(&[Threshold::parse("calls.failed", "< 5%").unwrap()]);
    assert_eq!(s.verdict(&lenient), Verdict::Passed);
}

/// Every statistic spelling the scenario knows, and none (a ratio's share, a counter).
const STATS: [&str; 12] = [
    "", ".p50", ".p90", ".p95", ".p99", ".p99.9", ".min", ".max", ".mean", ".avg", ".count",
    ".rate",
];

#[test]
fn every_metric_name_the_scenario_accepts_maps_to_a_typed_metric_and_back() {
    let s = run();
    let mut accepted = 0;
    let mut seen = Vec::new();
    // The scenario's names come from the same list as the typed metrics (`Metric::ALL`):
    // each name, alias and statistic the validator accepts is a `MetricRef` that prints as
    // its canonical name, reads back as itself, and has a value in a run that measured it.
    for name in Metric::all_names() {
        for stat in STATS {
            let written = format!("{name}{stat}");
            let Ok(r) = written.parse::<MetricRef>() else {
                continue;
            };
            accepted += 1;
            assert_eq!(Metric::from_name(name), Some(r.metric), "{written}");
            let printed = r.to_string();
            assert!(
                printed.starts_with(r.metric.name()),
                "{written} → {printed}"
            );
            assert_eq!(printed.parse::<MetricRef>(), Ok(r), "{written} → {printed}");
            assert!(
                s.value(&r).is_some(),
                "{written}: accepted by the scenario but no figure in a run that measured it"
            );
            if !seen.contains(&r.metric) {
                seen.push(r.metric);
            }
        }
    }
    assert_eq!(seen.len(), Metric::ALL.len(), "every metric is accepted");
    // 9 timings × 11 statistics, 5 ratios × 3, 3 counters × 3, with the aliases again.
    assert!(accepted > 120, "{accepted}");
}

#[test]
fn every_metric_has_a_figure_of_its_kind() {
    let s = run();
    for &metric in Metric::ALL {
        let figure = s.figure(metric);
        let fits = matches!(
            (metric.kind(), figure),
            (MetricKind::Timing, Some(Figure::Timing(_)))
                | (MetricKind::Ratio, Some(Figure::Share { .. }))
                | (MetricKind::Counter, Some(Figure::Count(_)))
                | (MetricKind::Score, Some(Figure::Score(..)))
        );
        assert!(fits, "{metric}: {:?}", metric.kind());
    }
}

#[test]
fn percentile_thresholds_read_the_exact_histogram_values() {
    // 50 answers in 500 µs, 49 in 1 ms, one in 2 ms: below 2048 µs HdrHistogram keeps
    // every microsecond, so the percentiles are exact.
    let calls: Vec<CallResult> = (0..100u64)
        .map(|i| CallResult {
            invite_to_200: Some(Duration::from_micros(match i {
                0..50 => 500,
                50..99 => 1_000,
                _ => 2_000,
            })),
            ..caller(i)
        })
        .collect();
    let s = small_run(&calls, 0, Duration::from_secs(10));
    assert_eq!(s.value(&mref("invite_to_200.p50")), Some(0.5));
    assert_eq!(s.value(&mref("invite_to_200.p99")), Some(1.0));
    assert_eq!(s.value(&mref("invite_to_200.p99.9")), Some(2.0));
    assert_eq!(s.value(&mref("invite_to_200.min")), Some(0.5));
    assert_eq!(s.value(&mref("invite_to_200.max")), Some(2.0));
    assert_eq!(s.value(&mref("invite_to_200.mean")), Some(0.76));
    let checked = s.check(&[
        threshold("invite_to_200.p99", "< 1ms"),
        threshold("invite_to_200.p99", "<= 1ms"),
        threshold("invite_to_200.p99.9", "<= 1ms"),
        threshold("invite_to_200.p50", "< 1ms"),
        threshold("invite_to_200.max", "<= 2ms"),
    ]);
    let passed: Vec<bool> = checked.iter().map(|t| t.passed).collect();
    assert_eq!(passed, [false, true, false, true, true]);
    assert_eq!(checked[0].actual, Some(1.0));
    assert_eq!(checked[0].unit(), ValueUnit::Milliseconds);
    assert_eq!(s.verdict(&checked), Verdict::ThresholdsFailed);
    assert_eq!(s.verdict(&checked[1..2]), Verdict::Passed);
}

#[test]
fn rates_are_per_second_of_the_run() {
    let calls: Vec<CallResult> = (0..30).map(caller).collect();
    let s = small_run(&calls, 0, Duration::from_secs(10));
    assert_eq!(s.value(&mref("calls.started.rate")), Some(3.0));
    assert_eq!(s.value(&mref("invite_to_200.rate")), Some(3.0));
    assert_eq!(s.value(&mref("calls.failed.rate")), Some(0.0));
    let checked = s.check(&[
        threshold("calls.started.rate", ">= 3/s"),
        threshold("calls.started.rate", "> 3/s"),
        threshold("calls.started.rate", "> 2.5"),
    ]);
    let passed: Vec<bool> = checked.iter().map(|t| t.passed).collect();
    assert_eq!(passed, [true, false, true]);
    assert_eq!(checked[0].unit(), ValueUnit::PerSecond);
    // No time elapsed: no rate, and a threshold on it fails.
    let s = small_run(&calls, 0, Duration::ZERO);
    assert_eq!(s.value(&mref("calls.started.rate")), None);
    let checked = s.check(&[threshold("calls.started.rate", ">= 0.1/s")]);
    assert!(!checked[0].passed);
    assert_eq!(s.verdict(&checked), Verdict::ThresholdsFailed);
}

#[test]
fn calls_planned_but_not_started_never_pass() {
    let calls: Vec<CallResult> = (0..10).map(caller).collect();
    let all_started = small_run(&calls, 0, Duration::from_secs(10));
    let checked = all_started.check(&with_builtins(&[]));
    assert_eq!(all_started.verdict(&checked), Verdict::Passed);

    // Every call that started passed, and the scenario's own thresholds hold: the built-in
    // `calls.not_started <= 0` still fails the run.
    let capped = small_run(&calls, 3, Duration::from_secs(10));
    let lenient = [threshold("calls.failed", "<= 0%")];
    let checked = capped.check(&with_builtins(&lenient));
    assert_eq!(checked.len(), 2);
    assert!(checked[0].passed);
    assert_eq!(checked[1].metric().to_string(), "calls.not_started");
    assert_eq!(checked[1].actual, Some(3.0));
    assert!(!checked[1].passed);
    assert_eq!(capped.verdict(&checked), Verdict::ThresholdsFailed);

    // Only the scenario can allow it, by name.
    let allowed = [threshold("calls.not_started", "<= 3")];
    let checked = capped.check(&with_builtins(&allowed));
    assert_eq!(capped.verdict(&checked), Verdict::Passed);
}

#[test]
fn nothing_checked_is_no_data_and_never_passes() {
    // No call at all: no ratio of failed calls.
    let empty = small_run(&[], 0, Duration::from_secs(10));
    let checked = empty.check(&[threshold("calls.failed", "<= 0%")]);
    assert_eq!(checked[0].actual, None);
    assert!(!checked[0].passed);
    assert_eq!(empty.verdict(&checked), Verdict::ThresholdsFailed);

    // Calls that passed but checked no audio and no DTMF: those thresholds have no data.
    let calls: Vec<CallResult> = (0..5)
        .map(|i| CallResult {
            audio_checked: 0,
            audio_verified: 0,
            dtmf_checked: 0,
            dtmf_verified: 0,
            media: None,
            ..caller(i)
        })
        .collect();
    let s = small_run(&calls, 0, Duration::from_secs(10));
    let checked = s.check(&[
        threshold("audio.verified", ">= 100%"),
        threshold("dtmf.verified", ">= 0%"),
        threshold("rtp.loss", "< 1%"),
        threshold("rtp.jitter.p99", "< 30ms"),
    ]);
    for t in &checked {
        assert_eq!(t.actual, None, "{}", t.threshold);
        assert!(!t.passed, "{}", t.threshold);
    }
    assert_eq!(s.verdict(&checked), Verdict::ThresholdsFailed);
}

#[test]
fn failed_calls_are_governed_only_by_a_threshold_on_calls_failed_or_passed() {
    let s = run();
    assert!(s.calls.failed > 0);
    for (metric, condition, governs) in [
        ("calls.failed", "< 5%", true),
        ("calls.failed.count", "<= 5", true),
        ("calls.passed", "> 90%", true),
        ("calls.passed.rate", "> 1/s", true),
        ("calls.started", ">= 1", false),
        ("invite_to_200.p99", "< 1s", false),
    ] {
        let checked = s.check(&[threshold(metric, condition)]);
        assert!(checked[0].passed, "{metric} {condition}");
        let expected = if governs {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        assert_eq!(s.verdict(&checked), expected, "{metric} {condition}");
    }
}

#[test]
fn a_failed_registration_fails_an_ungoverned_run() {
    let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
    m.record_call(&caller(1));
    m.record_register(&crate::stats::outcome::RegisterResult {
        role: "caller".into(),
        user: "1051".into(),
        rtt: None,
        unregister: false,
        error: Some("403 Forbidden".into()),
    });
    let s = m.finish(Duration::from_secs(1), false);
    assert_eq!(s.calls.failed, 0);
    assert_eq!(s.verdict(&[]), Verdict::Failed);
}

#[test]
fn an_interrupted_run_is_interrupted_whatever_its_figures() {
    let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
    m.record_call(&caller(1));
    let s = m.finish(Duration::from_secs(1), true);
    let checked = s.check(&[threshold("calls.failed", "<= 0%")]);
    assert!(checked[0].passed);
    assert_eq!(s.verdict(&checked), Verdict::Interrupted);
    let s = run();
    let interrupted = RunSummary {
        interrupted: true,
        ..s
    };
    let checked = interrupted.check(&thresholds());
    assert_eq!(interrupted.verdict(&checked), Verdict::Interrupted);
}

#[test]
fn mos_thresholds_take_a_low_percentile_and_at_least() {
    // The fixture's streams: 0 to 3 of 250 frames lost (calls 0..97), G.711 without PLC.
    let s = run();
    let p5 = s.value(&"mos.p5".parse().unwrap()).unwrap();
    let p50 = s.value(&"mos.p50".parse().unwrap()).unwrap();
    let max = s.value(&"mos.max".parse().unwrap()).unwrap();
    assert!(p5 <= p50 && p50 <= max, "{p5} {p50} {max}");
    assert!((max - 4.41).abs() < 0.01, "{max}");
    assert!(p5 < 4.3, "lossy streams rate lower: {p5}");
    let checked = s.check(&[
        Threshold::parse("mos.p5", ">= 4.0").unwrap(),
        Threshold::parse("mos.p50", ">= 3.0").unwrap(),
        Threshold::parse("audio.gaps", "<= 0").unwrap(),
        Threshold::parse("audio.gap.max", "< 100ms").unwrap(),
    ]);
    assert_eq!(checked[0].passed, p5 >= 4.0);
    assert!(checked[1].passed);
    assert_eq!(checked[0].unit(), ValueUnit::Score);
    // Calls 3, 13, 23 … had one 60 ms gap each: counted, under 100 ms.
    assert!(!checked[2].passed);
    assert!(checked[2].actual.unwrap() >= 1.0);
    assert!(checked[3].passed, "{:?}", checked[3]);
    // A score takes plain numbers, and needs a statistic.
    assert!(Threshold::parse("mos.p5", ">= 4ms").is_err());
    assert!(Threshold::parse("mos", ">= 4.0").is_err());
    assert!(Threshold::parse("mos_cqe.p5", ">= 4.0").is_ok());
}

#[test]
fn pesq_scores_make_a_run_wide_histogram_whose_thresholds_read_the_raw_scale() {
    // Ten calls scored 4.20, 4.10 … 3.30; one more scored −0.30 (garbled): not clamped.
    let mut calls: Vec<CallResult> = (0..10u64)
        .map(|i| {
            let mut r = caller(i);
            r.pesq = vec![4.2 - 0.1 * i as f64];
            r
        })
        .collect();
    let mut garbled = caller(10);
    garbled.pesq = vec![-0.3];
    calls.push(garbled);
    // A call without an `expect: pesq` adds no sample.
    calls.push(caller(11));
    let s = small_run(&calls, 0, Duration::from_secs(10));
    assert_eq!(s.quality.pesq_milli.len(), 11);
    let value = |m: &str| s.value(&m.parse().unwrap()).unwrap();
    assert!(
        (value("pesq.min") + 0.3).abs() < 1e-9,
        "{}",
        value("pesq.min")
    );
    assert!(
        (value("pesq.max") - 4.2).abs() < 1e-9,
        "{}",
        value("pesq.max")
    );
    assert!(
        (value("pesq.p50") - 3.7).abs() < 1e-9,
        "{}",
        value("pesq.p50")
    );
    assert_eq!(value("pesq.count"), 11.0);
    assert_eq!(s.quality.pesq_min(), Some(-0.3));
    let checked = s.check(&[
        Threshold::parse("pesq.p5", ">= 3.0").unwrap(),
        Threshold::parse("pesq.p50", ">= 3.5").unwrap(),
        Threshold::parse("pesq.min", ">= 0").unwrap(),
    ]);
    // The garbled call is the lowest twelfth: p5 is its −0.3.
    assert!(!checked[0].passed, "{:?}", checked[0]);
    assert!(checked[1].passed, "{:?}", checked[1]);
    assert!(
        !checked[2].passed,
        "a negative score is never read as 0: {:?}",
        checked[2]
    );
    assert_eq!(checked[0].unit(), ValueUnit::Score);
    // No score at all: the threshold has no value and fails.
    let none = small_run(&[caller(0)], 0, Duration::from_secs(1));
    let checked = none.check(&[Threshold::parse("pesq.p5", ">= 3.0").unwrap()]);
    assert_eq!(checked[0].actual, None);
    assert!(!checked[0].passed);
}
