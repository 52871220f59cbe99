//! The summaries of a sharded run's shards added up into the summary of the whole run.
//!
//! Histograms are added bucket by bucket (exact: a percentile of the merged histogram is the
//! percentile of the union of every shard's samples), counters are summed, the run lasts from
//! the earliest shard's start to the latest shard's end. Shards of different scenarios
//! (fingerprints) or sipcheck versions, or of different shard counts, are refused; a shard
//! given twice is refused; a shard missing is named in the merged summary's provenance and
//! fails its verdict ([`RunSummary::verdict`]): a plan not fully run is never a pass.

use std::collections::BTreeSet;
use std::time::Duration;

use thiserror::Error;

#[cfg(test)]
use super::metrics::Provenance;
use super::metrics::{ReasonSummary, RoleSummary, RunSummary, SAMPLES_PER_KIND, WORST_CALLS};
use crate::scenario::shard::Shard;

/// Why summaries cannot be merged.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no shard summaries to merge")]
    Empty,
    /// A summary without a shard.
    #[error("{0} is not a shard's summary (run with --shard I/N)")]
    NotAShard(String),
    /// Summaries of different scenarios.
    #[error("{name} is of another scenario (fingerprint {found}, expected {expected}): shards of different scenarios cannot be merged")]
    Scenario {
        /// The summary.
        name: String,
        /// Its fingerprint.
        found: String,
        /// The first summary's.
        expected: String,
    },
    /// Summaries of different sipcheck versions.
    #[error("{name} was written by sipcheck {found}, the first by {expected}: shards of different versions cannot be merged")]
    Version {
        /// The summary.
        name: String,
        /// Its version.
        found: String,
        /// The first summary's.
        expected: String,
    },
    /// Summaries of different shard counts.
    #[error("{name} is shard {found} but the first summary is of {expected} shards")]
    Count {
        /// The summary.
        name: String,
        /// Its shard.
        found: Shard,
        /// The first summary's count.
        expected: u32,
    },
    /// The same shard twice.
    #[error("shard {shard} is given twice ({first} and {second})")]
    Duplicate {
        /// The shard.
        shard: Shard,
        /// The first summary naming it.
        first: String,
        /// The second.
        second: String,
    },
    /// Histograms that cannot be added.
    #[error("{name}: its {metric} histogram cannot be added: {reason}")]
    Histogram {
        /// The summary.
        name: String,
        /// The metric.
        metric: String,
        /// Why.
        reason: String,
    },
}

/// Merges named shard summaries (the names are for messages) into the whole run's.
///
/// # Errors
/// See [`MergeError`].
pub fn merge(parts: Vec<(String, RunSummary)>) -> Result<RunSummary, MergeError> {
    let mut parts = parts.into_iter();
    let (first_name, mut whole) = parts.next().ok_or(MergeError::Empty)?;
    let first_shard = whole
        .provenance
        .shard
        .ok_or_else(|| MergeError::NotAShard(first_name.clone()))?;
    let count = first_shard.count();
    let mut seen: Vec<(Shard, String)> = vec![(first_shard, first_name)];
    let mut end = whole.started_at + whole.elapsed;
    for (name, part) in parts {
        let shard = part
            .provenance
            .shard
            .ok_or_else(|| MergeError::NotAShard(name.clone()))?;
        if part.provenance.fingerprint != whole.provenance.fingerprint {
            return Err(MergeError::Scenario {
                name,
                found: part.provenance.fingerprint.clone(),
                expected: whole.provenance.fingerprint.clone(),
            });
        }
        if part.provenance.version != whole.provenance.version {
            return Err(MergeError::Version {
                name,
                found: part.provenance.version.clone(),
                expected: whole.provenance.version.clone(),
            });
        }
        if shard.count() != count {
            return Err(MergeError::Count {
                name,
                found: shard,
                expected: count,
            });
        }
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == shard) {
            return Err(MergeError::Duplicate {
                shard,
                first: first.clone(),
                second: name,
            });
        }
        end = end.max(part.started_at + part.elapsed);
        add(&mut whole, part, &name)?;
        seen.push((shard, name));
    }
    whole.elapsed = end
        .duration_since(whole.started_at)
        .unwrap_or(Duration::ZERO);
    if whole.reasons.is_empty() {
        whole.reasons = reasons_by_kind(&whole);
    }
    let present: BTreeSet<u32> = seen.iter().map(|(s, _)| s.index()).collect();
    whole.provenance.shard = None;
    whole.provenance.merged_shards = Some(count);
    whole.provenance.missing_shards = (0..count).filter(|i| !present.contains(i)).collect();
    Ok(whole)
}

fn add(whole: &mut RunSummary, part: RunSummary, name: &str) -> Result<(), MergeError> {
    let histogram = |metric: &str, reason: String| MergeError::Histogram {
        name: name.to_owned(),
        metric: metric.to_owned(),
        reason,
    };
    whole.started_at = whole.started_at.min(part.started_at);
    whole.interrupted |= part.interrupted;
    whole.calls.started += part.calls.started;
    whole.calls.passed += part.calls.passed;
    whole.calls.failed += part.calls.failed;
    for (label, n) in part.failures {
        *whole.failures.entry(label).or_default() += n;
    }
    add_registrations(&mut whole.registrations, &part.registrations);
    for role in part.roles {
        match whole.roles.iter_mut().find(|r| r.name == role.name) {
            Some(r) => add_role(r, role),
            None => whole.roles.push(role),
        }
    }
    for t in part.timings {
        match whole.timings.iter_mut().find(|w| w.metric == t.metric) {
            Some(w) => w
                .micros
                .add(&t.micros)
                .map_err(|e| histogram(t.metric.name(), format!("{e:?}")))?,
            None => whole.timings.push(t),
        }
    }
    whole
        .call_loss_ppm
        .add(&part.call_loss_ppm)
        .map_err(|e| histogram("rtp.loss_per_stream_ppm", format!("{e:?}")))?;
    let (w, p) = (&mut whole.rtp, part.rtp);
    w.packets_sent += p.packets_sent;
    w.packets_received += p.packets_received;
    w.packets_expected += p.packets_expected;
    w.packets_lost += p.packets_lost;
    w.stray_packets += p.stray_packets;
    w.discontinuities += p.discontinuities;
    w.srtp_streams += p.srtp_streams;
    w.srtp_auth_failures += p.srtp_auth_failures;
    w.srtp_replays += p.srtp_replays;
    whole.audio.checked += part.audio.checked;
    whole.audio.verified += part.audio.verified;
    whole.dtmf.checked += part.dtmf.checked;
    whole.dtmf.verified += part.dtmf.verified;
    whole
        .quality
        .mos_milli
        .add(&part.quality.mos_milli)
        .map_err(|e| histogram("mos", format!("{e:?}")))?;
    whole
        .quality
        .pesq_milli
        .add(&part.quality.pesq_milli)
        .map_err(|e| histogram("pesq", format!("{e:?}")))?;
    whole.quality.audio_gaps += part.quality.audio_gaps;
    let (g, p) = (&mut whole.generator, part.generator);
    g.late_starts += p.late_starts;
    g.max_start_lag = g.max_start_lag.max(p.max_start_lag);
    g.frames_skipped += p.frames_skipped;
    g.not_started += p.not_started;
    for (kind, calls) in part.samples {
        let kept = whole.samples.entry(kind).or_default();
        let room = SAMPLES_PER_KIND.saturating_sub(kept.len());
        kept.extend(calls.into_iter().take(room));
    }
    for reason in part.reasons {
        match whole.reasons.iter_mut().find(|r| r.reason == reason.reason) {
            Some(r) => r.count += reason.count,
            None => whole.reasons.push(reason),
        }
    }
    whole
        .reasons
        .sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    whole.calls_cut_short += part.calls_cut_short;
    whole.worst_calls.extend(part.worst_calls);
    whole.worst_calls.sort_by(|a, b| a.mos.total_cmp(&b.mos));
    whole.worst_calls.truncate(WORST_CALLS);
    Ok(())
}

/// Summaries read back from JSON carry failures per kind and samples per kind, not the exact
/// reasons: the failures grouped by kind, each with its first sample, most frequent first.
fn reasons_by_kind(s: &RunSummary) -> Vec<ReasonSummary> {
    let mut reasons: Vec<ReasonSummary> = s
        .failures
        .iter()
        .filter_map(|(kind, &count)| {
            let first = s.samples.get(kind)?.first()?.clone();
            Some(ReasonSummary {
                reason: kind.clone(),
                kind: kind.clone(),
                count,
                first,
            })
        })
        .collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    reasons
}

fn add_registrations(
    w: &mut super::metrics::RegistrationCounts,
    p: &super::metrics::RegistrationCounts,
) {
    w.ok += p.ok;
    w.failed += p.failed;
    w.unregister_ok += p.unregister_ok;
    w.unregister_failed += p.unregister_failed;
    if w.first_failure.is_none() {
        w.first_failure.clone_from(&p.first_failure);
    }
    if w.first_unregister_failure.is_none() {
        w.first_unregister_failure
            .clone_from(&p.first_unregister_failure);
    }
}

fn add_role(w: &mut RoleSummary, p: RoleSummary) {
    w.calls.started += p.calls.started;
    w.calls.passed += p.calls.passed;
    w.calls.failed += p.calls.failed;
    for (label, n) in p.failures {
        *w.failures.entry(label).or_default() += n;
    }
    add_registrations(&mut w.registrations, &p.registrations);
    for step in p.steps {
        match w
            .steps
            .iter_mut()
            .find(|s| s.line == step.line && s.col == step.col && s.kind == step.kind)
        {
            Some(s) => {
                s.reached += step.reached;
                s.passed += step.passed;
                s.time += step.time;
                s.failed += step.failed;
                for (label, n) in step.failures {
                    *s.failures.entry(label).or_default() += n;
                }
                if s.sample.is_none() {
                    s.sample = step.sample;
                }
            }
            None => w.steps.push(step),
        }
    }
}

#[cfg(test)]
mod tests;
