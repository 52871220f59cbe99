//! Merging shard summaries: exact sums, refusals, a missing shard failing the verdict.

use std::time::Duration;

use super::*;
use crate::scenario::threshold::{Metric, Threshold};
use crate::stats::fixture;
use crate::stats::verdict::Verdict;

fn shard_run(index: u32, count: u32) -> (String, RunSummary) {
    let mut s = fixture::run();
    s.provenance = Provenance {
        version: "1.2.3".into(),
        fingerprint: "00000000deadbeef".into(),
        shard: Some(Shard::new(index, count).unwrap()),
        ..Provenance::default()
    };
    // Shards started 1 ms apart and ran as long as each other.
    s.started_at += Duration::from_millis(u64::from(index));
    (format!("shard-{index}.json"), s)
}

fn threshold(m: &str, c: &str) -> Threshold {
    Threshold::parse(m, c).unwrap()
}

#[test]
fn three_shards_add_up_exactly() {
    let one = fixture::run();
    let merged = merge((0..3).map(|i| shard_run(i, 3)).collect()).unwrap();
    assert_eq!(merged.calls.started, 3 * one.calls.started);
    assert_eq!(merged.calls.failed, 3 * one.calls.failed);
    assert_eq!(merged.rtp.packets_lost, 3 * one.rtp.packets_lost);
    assert_eq!(merged.registrations.ok, 3 * one.registrations.ok);
    assert_eq!(merged.roles.len(), one.roles.len());
    assert_eq!(
        merged.roles[0].calls.started,
        3 * one.roles[0].calls.started
    );
    // Every histogram holds the union of the samples: 3 copies of each.
    for (m, o) in merged.timings.iter().zip(&one.timings) {
        assert_eq!(m.metric, o.metric);
        assert_eq!(m.micros.len(), 3 * o.micros.len());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(m.micros.value_at_quantile(q), o.micros.value_at_quantile(q));
        }
    }
    // The quality histograms too: MOS per stream and the PESQ scores.
    for (m, o) in [
        (&merged.quality.mos_milli, &one.quality.mos_milli),
        (&merged.quality.pesq_milli, &one.quality.pesq_milli),
    ] {
        assert!(!o.is_empty());
        assert_eq!(m.len(), 3 * o.len());
        assert_eq!(m.value_at_quantile(0.05), o.value_at_quantile(0.05));
    }
    assert_eq!(merged.provenance.merged_shards, Some(3));
    assert_eq!(merged.provenance.shard, None);
    assert!(merged.provenance.missing_shards.is_empty());
    // From the first start to the last end.
    assert_eq!(merged.elapsed, one.elapsed + Duration::from_millis(2));
    assert!(merged.samples.values().all(|v| v.len() <= SAMPLES_PER_KIND));
}

#[test]
fn thresholds_are_judged_on_the_merged_figures() {
    let parts: Vec<_> = (0..3).map(|i| shard_run(i, 3)).collect();
    // Each shard started 100 calls: `calls.started >= 250` fails on every shard and holds on
    // the whole; `calls.started <= 150` the other way round.
    let t = [
        threshold("calls.started", ">= 250"),
        threshold("calls.started", "<= 150"),
    ];
    for (_, p) in &parts {
        let r = p.check(&t);
        assert!(!r[0].passed && r[1].passed);
    }
    let merged = merge(parts).unwrap();
    let r = merged.check(&t);
    assert!(r[0].passed && !r[1].passed);
    assert_eq!(merged.value(&t[0].metric), Some(300.0));
    assert_eq!(t[0].metric.metric, Metric::CallsStarted);
}

#[test]
fn a_missing_shard_is_named_and_fails_the_verdict() {
    let mut parts: Vec<_> = (0..3).map(|i| shard_run(i, 3)).collect();
    parts.remove(1);
    let merged = merge(parts).unwrap();
    assert_eq!(merged.provenance.missing_shards, vec![1]);
    // Even with every threshold holding and failures allowed.
    let t = merged.check(&[threshold("calls.failed", "<= 100%")]);
    assert!(t[0].passed);
    assert_eq!(merged.verdict(&t), Verdict::Failed);
}

#[test]
fn shards_of_other_scenarios_versions_or_counts_are_refused() {
    let mut other = shard_run(1, 3);
    other.1.provenance.fingerprint = "0000000000000001".into();
    assert!(matches!(
        merge(vec![shard_run(0, 3), other]),
        Err(MergeError::Scenario { .. })
    ));
    let mut newer = shard_run(1, 3);
    newer.1.provenance.version = "9.9.9".into();
    assert!(matches!(
        merge(vec![shard_run(0, 3), newer]),
        Err(MergeError::Version { .. })
    ));
    assert!(matches!(
        merge(vec![shard_run(0, 3), shard_run(1, 2)]),
        Err(MergeError::Count { .. })
    ));
    assert!(matches!(
        merge(vec![shard_run(0, 3), shard_run(0, 3)]),
        Err(MergeError::Duplicate { .. })
    ));
    let mut whole = shard_run(0, 3);
    whole.1.provenance.shard = None;
    assert!(matches!(merge(vec![whole]), Err(MergeError::NotAShard(_))));
    assert_eq!(merge(Vec::new()).unwrap_err(), MergeError::Empty);
}

#[test]
fn summaries_without_reasons_get_their_failures_grouped_by_kind() {
    let parts: Vec<_> = (0..2)
        .map(|i| {
            let (name, mut s) = shard_run(i, 2);
            // As read back from JSON: per-kind counts and samples, no exact reasons.
            s.reasons.clear();
            (name, s)
        })
        .collect();
    let one = fixture::run();
    let merged = merge(parts).unwrap();
    assert!(!merged.reasons.is_empty());
    for r in &merged.reasons {
        assert_eq!(r.count, 2 * one.failures[&r.kind], "{}", r.kind);
        assert_eq!(merged.samples[&r.kind][0].call_id, r.first.call_id);
    }
    assert!(merged.reasons.windows(2).all(|w| w[0].count >= w[1].count));
}
