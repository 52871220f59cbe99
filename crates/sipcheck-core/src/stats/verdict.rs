//! The verdict: a run's figures ([`RunSummary`]) held to the scenario's thresholds, and the one
//! [`Verdict`] type of every command (`run`, the probes, `answer`).
//!
//! Thresholds name their metric and statistic as typed values ([`MetricRef`]: a [`Metric`]
//! and a [`Stat`]), parsed once when the scenario is read; nothing here splits a name again.
//! Every metric the scenario accepts has a figure in a run ([`RunSummary::value`] matches each
//! [`Metric`] by name, with no catch-all), so a metric added to the scenario's list cannot be
//! silently "no data" here.
//!
//! The rules, k6 style:
//! - an interrupted run is [`Verdict::Interrupted`], whatever its figures;
//! - a failed threshold fails the run ([`Verdict::ThresholdsFailed`]), and a threshold whose
//!   metric has no value (nothing sampled, nothing expected or checked) fails;
//! - failed calls or registrations fail the run ([`Verdict::Failed`]) unless a `calls.failed`
//!   or `calls.passed` threshold says how many may fail;
//! - the run is held to the built-in `calls.not_started <= 0` unless the scenario sets its own
//!   ([`with_builtins`](crate::scenario::threshold::with_builtins)), so calls planned but not
//!   started never pass silently.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::threshold::{Metric, MetricRef, Stat, Threshold, ValueUnit};
use crate::stats::metrics::{ratio, RunSummary};

/// How a command ended, for its report and its exit code.
///
/// Serialised as the probes' and `answer`'s JSON spell it (`pass`, `fail`,
/// `thresholds_failed`, `interrupted`); `run`'s JSON summary has its own spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Everything asked for happened, positively verified: every threshold held, and
    /// (without a `calls.*` threshold) every call and registration passed.
    #[serde(rename = "pass")]
    Passed,
    /// The system under test failed: a probe's or a call's expectation, a registration (in
    /// a run: and no `calls.failed` / `calls.passed` threshold says how many may fail).
    #[serde(rename = "fail")]
    Failed,
    /// At least one threshold failed.
    #[serde(rename = "thresholds_failed")]
    ThresholdsFailed,
    /// The run was interrupted before its planned end (its figures decide nothing).
    #[serde(rename = "interrupted")]
    Interrupted,
}

/// The verdict on one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdResult {
    /// The threshold: its typed metric and statistic (written `invite_to_200.p99`) and its
    /// condition (written `< 500ms`).
    pub threshold: Threshold,
    /// The measured value in [`ThresholdResult::unit`]; `None` when nothing was measured
    /// (which fails).
    pub actual: Option<f64>,
    /// Whether the condition held.
    pub passed: bool,
}

impl ThresholdResult {
    /// The metric and statistic.
    #[must_use]
    pub fn metric(&self) -> MetricRef {
        self.threshold.metric
    }

    /// The unit of [`ThresholdResult::actual`].
    #[must_use]
    pub fn unit(&self) -> ValueUnit {
        self.threshold.metric.unit()
    }
}

/// What a run measured for one metric.
#[derive(Debug, Clone, Copy)]
enum Figure<'a> {
    /// A timing's samples, microseconds.
    Timing(&'a Histogram<u64>),
    /// A ratio: `part` of `whole` events.
    Share { part: u64, whole: u64 },
    /// A counter.
    Count(u64),
    /// A score's samples, in thousandths, each with `offset` thousandths added.
    Score(&'a Histogram<u64>, u64),
}

impl RunSummary {
    /// The run's figure for `metric`; `None` for a timing without its histogram (a summary
    /// not made by [`Metrics::finish`](crate::stats::metrics::Metrics::finish)).
    fn figure(&self, metric: Metric) -> Option<Figure<'_>> {
        Some(match metric {
            Metric::RegisterRtt
            | Metric::InviteToFirstProvisional
            | Metric::InviteToRinging
            | Metric::InviteTo200
            | Metric::ByeRtt
            | Metric::CallDuration
            | Metric::ToneOnset
            | Metric::RtpJitter
            | Metric::PacingLateness
            | Metric::AudioGap
            | Metric::AudioDelay
            | Metric::TlsHandshake => Figure::Timing(self.timing(metric)?),
            Metric::Mos => Figure::Score(&self.quality.mos_milli, 0),
            Metric::Pesq => Figure::Score(
                &self.quality.pesq_milli,
                crate::stats::metrics::PESQ_OFFSET_MILLI,
            ),
            Metric::AudioGaps => Figure::Count(self.quality.audio_gaps),
            Metric::RtpLoss => Figure::Share {
                part: self.rtp.packets_lost,
                whole: self.rtp.packets_expected,
            },
            Metric::CallsFailed => Figure::Share {
                part: self.calls.failed,
                whole: self.calls.started,
            },
            Metric::CallsPassed => Figure::Share {
                part: self.calls.passed,
                whole: self.calls.started,
            },
            Metric::AudioVerified => Figure::Share {
                part: self.audio.verified,
                whole: self.audio.checked,
            },
            Metric::DtmfVerified => Figure::Share {
                part: self.dtmf.verified,
                whole: self.dtmf.checked,
            },
            Metric::CallsStarted => Figure::Count(self.calls.started),
            Metric::CallsNotStarted => Figure::Count(self.generator.not_started),
            Metric::GeneratorOverrun => Figure::Count(self.generator.frames_skipped),
        })
    }

    /// The run's value for a threshold's metric, in the unit of [`MetricRef::unit`]:
    /// milliseconds for timings, a fraction of one for ratios, a count, or a rate per second
    /// of the run's elapsed time. `None` when there is nothing to measure (no sample, nothing
    /// expected or checked, no time elapsed for a rate), which fails the threshold.
    #[must_use]
    pub fn value(&self, r: &MetricRef) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        let per_second = |n: u64| (secs > 0.0).then(|| n as f64 / secs);
        let ms = |us: u64| us as f64 / 1000.0;
        // One division of whole thousandths: exact to the printed digit.
        let milli = |v: u64, offset: u64| (v as f64 - offset as f64) / 1000.0;
        match (self.figure(r.metric)?, r.stat) {
            (Figure::Score(h, _), Some(Stat::Count)) => Some(h.len() as f64),
            (Figure::Score(h, _), Some(Stat::Rate)) => per_second(h.len()),
            (Figure::Score(h, _), _) if h.is_empty() => None,
            (Figure::Score(h, off), Some(Stat::Percentile(p))) => {
                Some(milli(h.value_at_quantile(p / 100.0), off))
            }
            (Figure::Score(h, off), Some(Stat::Min)) => Some(milli(h.min(), off)),
            (Figure::Score(h, off), Some(Stat::Max)) => Some(milli(h.max(), off)),
            (Figure::Score(h, off), Some(Stat::Mean)) => Some((h.mean() - off as f64) / 1000.0),
            // The scenario refuses a score without a statistic.
            (Figure::Score(..), None) => None,
            (Figure::Timing(h), Some(Stat::Count)) => Some(h.len() as f64),
            (Figure::Timing(h), Some(Stat::Rate)) => per_second(h.len()),
            // The scenario refuses a timing without a statistic.
            (Figure::Timing(_), None) => None,
            (Figure::Timing(h), Some(_)) if h.is_empty() => None,
            (Figure::Timing(h), Some(Stat::Percentile(p))) => {
                Some(ms(h.value_at_quantile(p / 100.0)))
            }
            (Figure::Timing(h), Some(Stat::Min)) => Some(ms(h.min())),
            (Figure::Timing(h), Some(Stat::Max)) => Some(ms(h.max())),
            (Figure::Timing(h), Some(Stat::Mean)) => Some(h.mean() / 1000.0),
            (Figure::Share { part, .. } | Figure::Count(part), Some(Stat::Count))
            | (Figure::Count(part), None) => Some(part as f64),
            (Figure::Share { part, .. } | Figure::Count(part), Some(Stat::Rate)) => {
                per_second(part)
            }
            (Figure::Share { part, whole }, None) => ratio(part, whole),
            // The scenario refuses these: a ratio or a counter has no percentile.
            (
                Figure::Share { .. } | Figure::Count(_),
                Some(Stat::Percentile(_) | Stat::Min | Stat::Max | Stat::Mean),
            ) => None,
        }
    }

    /// Checks thresholds against the run, in order.
    #[must_use]
    pub fn check(&self, thresholds: &[Threshold]) -> Vec<ThresholdResult> {
        thresholds
            .iter()
            .map(|t| {
                let actual = self.value(&t.metric);
                ThresholdResult {
                    threshold: t.clone(),
                    actual,
                    passed: actual.is_some_and(|a| t.condition.holds(a)),
                }
            })
            .collect()
    }

    /// The verdict, k6 style: a failed threshold fails the run. Failed calls fail it too,
    /// unless a `calls.failed` or `calls.passed` threshold says how many may fail.
    #[must_use]
    pub fn verdict(&self, thresholds: &[ThresholdResult]) -> Verdict {
        // An interrupted run did not do what it planned: its figures cannot pass or fail it.
        if self.interrupted {
            return Verdict::Interrupted;
        }
        if thresholds.iter().any(|t| !t.passed) {
            return Verdict::ThresholdsFailed;
        }
        let governed = thresholds.iter().any(|t| {
            matches!(
                t.threshold.metric.metric,
                Metric::CallsFailed | Metric::CallsPassed
            )
        });
        // A plan not fully run (a shard's summary missing from a merge) is never a pass.
        if !self.provenance.missing_shards.is_empty() {
            return Verdict::Failed;
        }
        let failed = self.calls.failed > 0 || self.registrations.failed > 0;
        if failed && !governed {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }
}

#[cfg(test)]
mod tests;
