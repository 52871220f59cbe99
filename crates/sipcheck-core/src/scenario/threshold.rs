//! Thresholds: `metric.stat: condition`, k6 style.
//!
//! ```yaml
//! thresholds:
//!   invite_to_200.p99: < 500ms
//!   calls.failed: < 0.1%
//!   audio.verified: "> 99.5%"      # quoted: a plain `>` starts a folded block in YAML
//!   rtp.jitter.max: [< 30ms, < 40ms]
//! ```
//!
//! The metric names are a closed set ([`Metric`]); a statistic picks one number out of a
//! metric ([`Stat`]); the condition compares it with a value that carries a unit, and the unit
//! must fit the metric (a time for a latency, a percentage for a ratio). [`Condition::holds`]
//! compares a measured value, in the unit of [`MetricRef::unit`]; a run's values and its
//! verdict are in [`crate::stats::verdict`].

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::text::{closest, edit_distance};
use super::units::{Duration, Percent, Rate};

/// What a metric measures, which decides its statistics and the unit of its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A time per event (latency): percentiles, min, max, mean; limits in ms or s.
    Timing,
    /// A share of events (failed calls, lost packets): limits in %.
    Ratio,
    /// A number of events: `count` or `rate`.
    Counter,
    /// A score per event without a unit (an estimated MOS): percentiles, min, max, mean;
    /// limits are plain numbers. Low is bad: `mos.p5: ">= 4.0"`.
    Score,
}

impl MetricKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Timing => "a timing",
            Self::Ratio => "a ratio",
            Self::Counter => "a counter",
            Self::Score => "a score",
        }
    }
}

macro_rules! metrics {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal [$($alias:literal),*] $kind:ident,)*) => {
        /// A metric sipcheck measures.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Metric {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Metric {
            /// Every metric.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            /// The metric's name in scenarios and reports.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $(Metric::$variant => $name,)* }
            }

            /// Other names accepted for the metric.
            #[must_use]
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(Metric::$variant => &[$($alias),*],)* }
            }

            /// What the metric measures.
            #[must_use]
            pub fn kind(self) -> MetricKind {
                match self { $(Metric::$variant => MetricKind::$kind,)* }
            }
        }
    };
}

metrics! {
    /// First REGISTER sent to the final 2xx (a challenge round included).
    RegisterRtt = "register_rtt" [] Timing,
    /// INVITE sent to the first provisional response (100 Trying or later).
    InviteToFirstProvisional = "invite_to_first_provisional" ["invite_to_100"] Timing,
    /// INVITE sent to 180 Ringing or 183 Session Progress: the post-dial delay.
    InviteToRinging = "invite_to_ringing" ["invite_to_180", "post_dial_delay"] Timing,
    /// INVITE sent to the 200 OK.
    InviteTo200 = "invite_to_200" ["setup"] Timing,
    /// BYE sent to its final response.
    ByeRtt = "bye_rtt" [] Timing,
    /// 200 OK to the end of the call.
    CallDuration = "call_duration" [] Timing,
    /// Start of an `expect: tone` to the tone's detection.
    ToneOnset = "tone_onset" [] Timing,
    /// RTP interarrival jitter (RFC 3550 §6.4.1), per stream.
    RtpJitter = "rtp.jitter" [] Timing,
    /// How late RTP packets left against their schedule.
    PacingLateness = "pacing.lateness" [] Timing,
    /// The length of each gap (dropout of 40 ms or more) in an expected tone after its onset.
    AudioGap = "audio.gap" ["audio.gap_ms"] Timing,
    /// The mouth-to-ear delay of each direction whose two ends both ran in the run (from
    /// the audio signatures).
    AudioDelay = "audio.delay" ["audio.delay_ms"] Timing,
    /// TCP connect's start to the TLS handshake's end, per connection opened over TLS.
    TlsHandshake = "tls_handshake" [] Timing,
    /// The estimated MOS (ITU-T G.107 E-model, MOS-CQE) of each received stream.
    Mos = "mos" ["mos_cqe"] Score,
    /// The raw ITU-T P.862 (PESQ) score of each `expect: pesq` step scored.
    Pesq = "pesq" [] Score,
    /// Gaps in expected tones after their onset.
    AudioGaps = "audio.gaps" [] Counter,
    /// RTP packets lost, of those expected.
    RtpLoss = "rtp.loss" [] Ratio,
    /// Calls that failed, of those started.
    CallsFailed = "calls.failed" [] Ratio,
    /// Calls that passed, of those started.
    CallsPassed = "calls.passed" [] Ratio,
    /// Media expectations (tones, silence) that were verified, of those checked.
    AudioVerified = "audio.verified" [] Ratio,
    /// DTMF expectations that were verified, of those checked.
    DtmfVerified = "dtmf.verified" [] Ratio,
    /// Calls started.
    CallsStarted = "calls.started" [] Counter,
    /// Calls due by the load plan but not started (the concurrency cap was reached).
    CallsNotStarted = "calls.not_started" [] Counter,
    /// Times a media generator could not keep up with its schedule.
    GeneratorOverrun = "generator.overrun" ["generator.frames_skipped"] Counter,
}

impl Metric {
    /// The metric with this name or alias.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name() == name || m.aliases().contains(&name))
    }

    /// Whether the metric is measured on RTP (so a call without RTP never has it).
    #[must_use]
    pub fn needs_rtp(self) -> bool {
        matches!(
            self,
            Self::ToneOnset
                | Self::RtpJitter
                | Self::PacingLateness
                | Self::RtpLoss
                | Self::AudioVerified
                | Self::DtmfVerified
                | Self::GeneratorOverrun
                | Self::AudioGap
                | Self::AudioDelay
                | Self::Mos
                | Self::Pesq
                | Self::AudioGaps
        )
    }

    /// All names and aliases.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Self::ALL
            .iter()
            .flat_map(|m| std::iter::once(m.name()).chain(m.aliases().iter().copied()))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One number out of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// `p50`, `p99`, `p99.9`: a percentile, 0 < p ≤ 100.
    Percentile(f64),
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `mean` (or `avg`).
    Mean,
    /// `count`: how many events.
    Count,
    /// `rate`: events per second over the run.
    Rate,
}

impl Stat {
    const NAMES: &'static [&'static str] = &[
        "p50", "p90", "p95", "p99", "p99.9", "min", "max", "mean", "avg", "count", "rate",
    ];

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "min" => Self::Min,
            "max" => Self::Max,
            "mean" | "avg" => Self::Mean,
            "count" => Self::Count,
            "rate" => Self::Rate,
            _ => {
                let n = s.strip_prefix('p')?;
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return None;
                }
                let p: f64 = n.parse().ok()?;
                if !(p > 0.0 && p <= 100.0) {
                    return None;
                }
                Self::Percentile(p)
            }
        })
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Percentile(p) => write!(f, "p{p}"),
            Self::Min => f.write_str("min"),
            Self::Max => f.write_str("max"),
            Self::Mean => f.write_str("mean"),
            Self::Count => f.write_str("count"),
            Self::Rate => f.write_str("rate"),
        }
    }
}

/// The unit of a measured value handed to [`Condition::holds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    /// Milliseconds.
    Milliseconds,
    /// A fraction of one (`0.005` is 0.5 %).
    Fraction,
    /// A plain count.
    Count,
    /// Events per second.
    PerSecond,
    /// A plain score (an estimated MOS).
    Score,
}

/// A metric and, unless it is a ratio or a counter's total, a statistic: `invite_to_200.p99`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRef {
    /// The metric.
    pub metric: Metric,
    /// The statistic; `None` for a ratio's share or a counter's count.
    pub stat: Option<Stat>,
}

impl MetricRef {
    /// The unit the executor must give this value in.
    #[must_use]
    pub fn unit(&self) -> ValueUnit {
        match (self.metric.kind(), self.stat) {
            (_, Some(Stat::Count)) | (MetricKind::Counter, None) => ValueUnit::Count,
            (_, Some(Stat::Rate)) => ValueUnit::PerSecond,
            (MetricKind::Ratio, _) => ValueUnit::Fraction,
            (MetricKind::Score, _) => ValueUnit::Score,
            (MetricKind::Timing, _) | (MetricKind::Counter, Some(_)) => ValueUnit::Milliseconds,
        }
    }
}

impl FromStr for MetricRef {
    type Err = ThresholdError;

    /// Parses `metric[.stat]`. Metric names contain dots (`rtp.jitter`) and so do statistics
    /// (`p99.9`): the longest known metric name that prefixes the text wins.
    fn from_str(s: &str) -> Result<Self, ThresholdError> {
        let s = s.trim();
        let found = Metric::all_names()
            .filter(|name| s == *name || s.strip_prefix(name).is_some_and(|r| r.starts_with('.')))
            .max_by_key(|name| name.len());
        let Some(name) = found else {
            return Err(ThresholdError::UnknownMetric {
                name: s.to_owned(),
                suggestion: suggest_metric(s),
            });
        };
        let metric = Metric::from_name(name).expect("a listed name");
        let rest = &s[name.len()..];
        let stat = match rest.strip_prefix('.') {
            None => None,
            Some(st) => Some(Stat::parse(st).ok_or_else(|| ThresholdError::UnknownStat {
                metric: metric.name().to_owned(),
                stat: st.to_owned(),
                suggestion: closest(st, Stat::NAMES.iter().copied()).map(str::to_owned),
            })?),
        };
        let allowed = match (metric.kind(), stat) {
            (MetricKind::Timing | MetricKind::Score, None) => {
                return Err(ThresholdError::MissingStat {
                    metric: metric.name().to_owned(),
                    kind: metric.kind().describe(),
                })
            }
            (_, None | Some(Stat::Count | Stat::Rate))
            | (MetricKind::Timing | MetricKind::Score, Some(_)) => true,
            _ => false,
        };
        if !allowed {
            return Err(ThresholdError::StatNotApplicable {
                metric: metric.name().to_owned(),
                kind: metric.kind().describe(),
                stat: rest[1..].to_owned(),
            });
        }
        Ok(Self { metric, stat })
    }
}

/// A close metric name for a misspelt `metric[.stat]`, with the statistic kept: the split
/// at a dot whose metric part is closest to a known name wins.
fn suggest_metric(s: &str) -> Option<String> {
    let cuts = std::iter::once(s.len()).chain(s.match_indices('.').map(|(i, _)| i));
    cuts.filter_map(|cut| {
        let (base, rest) = s.split_at(cut);
        // Metric names are short: a long base has no near miss worth the edit distances.
        if base.len() > 64 {
            return None;
        }
        let best = closest(base, Metric::all_names())?;
        Some((edit_distance(base, best), format!("{best}{rest}")))
    })
    .min_by_key(|(d, _)| *d)
    .map(|(_, s)| s)
}

impl fmt::Display for MetricRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stat {
            Some(stat) => write!(f, "{}.{stat}", self.metric),
            None => write!(f, "{}", self.metric),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Self::Lt => actual < limit,
            Self::Le => actual <= limit,
            Self::Gt => actual > limit,
            Self::Ge => actual >= limit,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        })
    }
}

/// The value a condition compares with, in the unit it was written in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// `500ms`, `1.5s`.
    Time(Duration),
    /// `0.1%`.
    Percent(Percent),
    /// `5`.
    Number(f64),
    /// `20/s`.
    Rate(Rate),
}

impl Limit {
    /// The value in the unit of [`MetricRef::unit`].
    fn canonical(self) -> f64 {
        match self {
            Self::Time(d) => d.0.as_secs_f64() * 1000.0,
            Self::Percent(p) => p.fraction(),
            Self::Number(n) => n,
            Self::Rate(r) => r.per_second(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Time(_) => "a time",
            Self::Percent(_) => "a percentage",
            Self::Number(_) => "a plain number",
            Self::Rate(_) => "a rate",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Time(d) => d.fmt(f),
            Self::Percent(p) => p.fmt(f),
            Self::Number(n) => n.fmt(f),
            Self::Rate(r) => r.fmt(f),
        }
    }
}

/// `< 500ms`: an operator and a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The comparison.
    pub op: Op,
    /// What the measured value is compared with.
    pub limit: Limit,
}

impl FromStr for Condition {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, ThresholdError> {
        let t = s.trim();
        let malformed = || ThresholdError::MalformedCondition(s.to_owned());
        let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = t.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = t.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = t.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(malformed());
        };
        let v = rest.trim();
        let limit = if v.ends_with('%') {
            Limit::Percent(v.parse().map_err(|_| malformed())?)
        } else if v.contains('/') {
            Limit::Rate(v.parse().map_err(|_| malformed())?)
        } else if v.ends_with(|c: char| c.is_ascii_alphabetic()) {
            Limit::Time(v.parse().map_err(|_| malformed())?)
        } else {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                && v.parse::<f64>().is_ok();
            if !ok {
                return Err(malformed());
            }
            Limit::Number(v.parse().map_err(|_| malformed())?)
        };
        Ok(Self { op, limit })
    }
}

impl Condition {
    /// Whether `actual`, in the unit of [`MetricRef::unit`], satisfies the condition.
    #[must_use]
    pub fn holds(&self, actual: f64) -> bool {
        self.op.holds(actual, self.limit.canonical())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.limit)
    }
}

/// Why a threshold was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ThresholdError {
    /// Not a metric sipcheck measures.
    #[error("unknown metric `{name}`")]
    UnknownMetric {
        /// The text as written.
        name: String,
        /// A close valid spelling, statistic included.
        suggestion: Option<String>,
    },
    /// Not a statistic.
    #[error("unknown statistic `{stat}` of `{metric}`: expected p50, p90, p95, p99, p99.9 (any pN), min, max, mean, avg, count or rate")]
    UnknownStat {
        /// The metric.
        metric: String,
        /// The statistic as written.
        stat: String,
        /// A close valid statistic.
        suggestion: Option<String>,
    },
    /// A timing or a score without a statistic.
    #[error("`{metric}` is {kind}: say which statistic, like `{metric}.p99`")]
    MissingStat {
        /// The metric.
        metric: String,
        /// What kind of metric it is.
        kind: &'static str,
    },
    /// A statistic the metric does not have.
    #[error("`{metric}` is {kind}: it has no `{stat}` (use `{metric}`, `{metric}.count` or `{metric}.rate`)")]
    StatNotApplicable {
        /// The metric.
        metric: String,
        /// What kind of metric it is.
        kind: &'static str,
        /// The statistic as written.
        stat: String,
    },
    /// Not an operator and a value.
    #[error("'{0}' is not a condition: expected <, <=, > or >= and a value, like \"< 500ms\" or \"< 0.1%\"")]
    MalformedCondition(String),
    /// A value whose unit does not fit the metric.
    #[error("`{metric}` is measured as {expected}, but '{limit}' is {got}")]
    UnitMismatch {
        /// The metric and statistic.
        metric: String,
        /// What the metric's limits must be.
        expected: &'static str,
        /// The limit as parsed.
        limit: String,
        /// What the limit is.
        got: &'static str,
    },
    /// A percentage above 100 %.
    #[error("'{0}' is above 100%")]
    PercentOver100(String),
}

impl ThresholdError {
    /// A suggested fix, when there is one.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::UnknownMetric {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            Self::UnknownMetric { .. } => Some(format!(
                "known metrics: {}",
                Metric::ALL
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Self::UnknownStat {
                metric,
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{metric}.{s}`?")),
            Self::MalformedCondition(c) if c.trim_start().starts_with('=') => {
                Some("there is no `=`: to demand none, write \"<= 0\"".into())
            }
            _ => None,
        }
    }
}

/// One pass/fail criterion: `invite_to_200.p99 < 500ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub metric: MetricRef,
    /// What it must satisfy.
    pub condition: Condition,
}

impl Threshold {
    /// A threshold, if the condition's unit fits the metric.
    ///
    /// # Errors
    /// [`ThresholdError::UnitMismatch`], [`ThresholdError::PercentOver100`].
    pub fn new(metric: MetricRef, condition: Condition) -> Result<Self, ThresholdError> {
        let (expected, ok) = match metric.unit() {
            ValueUnit::Milliseconds => (
                "a time, like 500ms",
                matches!(condition.limit, Limit::Time(_)),
            ),
            ValueUnit::Fraction => (
                "a percentage, like 0.1%",
                matches!(condition.limit, Limit::Percent(_)),
            ),
            ValueUnit::Count => (
                "a plain number, like 5",
                matches!(condition.limit, Limit::Number(_)),
            ),
            ValueUnit::PerSecond => (
                "a rate, like 5/s",
                matches!(condition.limit, Limit::Rate(_) | Limit::Number(_)),
            ),
            ValueUnit::Score => (
                "a plain number, like 4.0",
                matches!(condition.limit, Limit::Number(_)),
            ),
        };
        if !ok {
            return Err(ThresholdError::UnitMismatch {
                metric: metric.to_string(),
                expected,
                limit: condition.limit.to_string(),
                got: condition.limit.describe(),
            });
        }
        if let Limit::Percent(p) = condition.limit {
            if p.0 > 100.0 {
                return Err(ThresholdError::PercentOver100(p.to_string()));
            }
        }
        Ok(Self { metric, condition })
    }

    /// Parses `key: condition` as written in `thresholds:`.
    ///
    /// # Errors
    /// Any [`ThresholdError`].
    pub fn parse(metric: &str, condition: &str) -> Result<Self, ThresholdError> {
        Self::new(metric.parse()?, condition.parse()?)
    }
}

/// The thresholds every run is held to unless the scenario sets its own on the same metric:
/// `calls.not_started <= 0` (a call the plan asked for but that never started is not a
/// silent pass; k6 reports its dropped iterations the same way).
#[must_use]
pub fn builtin() -> Vec<Threshold> {
    vec![Threshold {
        metric: MetricRef {
            metric: Metric::CallsNotStarted,
            stat: None,
        },
        condition: Condition {
            op: Op::Le,
            limit: Limit::Number(0.0),
        },
    }]
}

/// The scenario's thresholds followed by each [`builtin`] one whose metric the scenario does
/// not constrain (any statistic of it counts: `calls.not_started.rate` overrides too).
#[must_use]
pub fn with_builtins(user: &[Threshold]) -> Vec<Threshold> {
    let mut all = user.to_vec();
    for default in builtin() {
        if !user
            .iter()
            .any(|t| t.metric.metric == default.metric.metric)
        {
            all.push(default);
        }
    }
    all
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.metric, self.condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MetricRef {
        s.parse().unwrap()
    }

    #[test]
    fn metric_names_and_aliases() {
        assert_eq!(m("invite_to_200.p99").metric, Metric::InviteTo200);
        assert_eq!(
            m("invite_to_100.p50").metric,
            Metric::InviteToFirstProvisional
        );
        assert_eq!(m("invite_to_180.p95").metric, Metric::InviteToRinging);
        assert_eq!(m("post_dial_delay.max").metric, Metric::InviteToRinging);
        // The JSON report's key names the same counter.
        assert_eq!(
            m("generator.frames_skipped").metric,
            Metric::GeneratorOverrun
        );
        for metric in Metric::ALL {
            assert_eq!(Metric::from_name(metric.name()), Some(*metric));
        }
    }

    #[test]
    fn dotted_metrics_and_dotted_statistics() {
        assert_eq!(
            m("rtp.jitter.p99.9"),
            MetricRef {
                metric: Metric::RtpJitter,
                stat: Some(Stat::Percentile(99.9))
            }
        );
        assert_eq!(m("calls.failed").stat, None);
        assert_eq!(m("calls.failed.count").stat, Some(Stat::Count));
        assert_eq!(m("register_rtt.avg").stat, Some(Stat::Mean));
        assert_eq!(m("rtp.jitter.p99.9").to_string(), "rtp.jitter.p99.9");
    }

    #[test]
    fn a_long_dotted_junk_metric_is_refused_without_quadratic_suggestion_work() {
        // Found by fuzzing: every `.` was a cut whose prefix was compared with every metric
        // name by edit distance; 20,000 dots took hours. Only short prefixes are compared now.
        let junk = "x.".repeat(20_000);
        let e = junk.parse::<MetricRef>().unwrap_err();
        assert!(e.to_string().contains("unknown metric"), "{e}");
    }

    #[test]
    fn unknown_metrics_suggest_a_spelling_with_the_statistic_kept() {
        let e = "invite_to_20.p99".parse::<MetricRef>().unwrap_err();
        assert_eq!(e.to_string(), "unknown metric `invite_to_20.p99`");
        assert_eq!(
            e.hint().as_deref(),
            Some("did you mean `invite_to_200.p99`?")
        );
        let e = "calls.faild".parse::<MetricRef>().unwrap_err();
        assert_eq!(e.hint().as_deref(), Some("did you mean `calls.failed`?"));
        let e = "throughput".parse::<MetricRef>().unwrap_err();
        assert!(e
            .hint()
            .unwrap()
            .starts_with("known metrics: register_rtt,"));
    }

    #[test]
    fn statistics_must_fit_the_metric() {
        assert_eq!(
            "invite_to_200"
                .parse::<MetricRef>()
                .unwrap_err()
                .to_string(),
            "`invite_to_200` is a timing: say which statistic, like `invite_to_200.p99`"
        );
        assert!(matches!(
            "calls.failed.p99".parse::<MetricRef>(),
            Err(ThresholdError::StatNotApplicable { .. })
        ));
        let e = "invite_to_200.p999x".parse::<MetricRef>().unwrap_err();
        assert!(matches!(e, ThresholdError::UnknownStat { .. }));
        let e = "invite_to_200.mxa".parse::<MetricRef>().unwrap_err();
        assert_eq!(
            e.hint().as_deref(),
            Some("did you mean `invite_to_200.max`?")
        );
        assert!("invite_to_200.p0".parse::<MetricRef>().is_err());
        assert!("invite_to_200.p101".parse::<MetricRef>().is_err());
    }

    #[test]
    fn conditions_with_units() {
        let c: Condition = "< 500ms".parse().unwrap();
        assert_eq!(c.op, Op::Lt);
        assert_eq!(c.limit, Limit::Time("500ms".parse().unwrap()));
        assert_eq!("<=1.5s".parse::<Condition>().unwrap().op, Op::Le);
        assert_eq!(
            "> 99.5%".parse::<Condition>().unwrap().limit,
            Limit::Percent(Percent(99.5))
        );
        assert_eq!(
            ">= 5".parse::<Condition>().unwrap().limit,
            Limit::Number(5.0)
        );
        assert!(matches!(
            "< 5/s".parse::<Condition>().unwrap().limit,
            Limit::Rate(_)
        ));
    }

    #[test]
    fn malformed_conditions() {
        for bad in ["500ms", "< ", "<< 5", "< 5 apples", "== 0", "< 1e3"] {
            assert!(
                matches!(
                    bad.parse::<Condition>(),
                    Err(ThresholdError::MalformedCondition(_))
                ),
                "{bad:?} parsed"
            );
        }
        let e = "== 0".parse::<Condition>().unwrap_err();
        assert_eq!(
            e.hint().as_deref(),
            Some("there is no `=`: to demand none, write \"<= 0\"")
        );
    }

    #[test]
    fn units_must_fit_the_metric() {
        let e = Threshold::parse("invite_to_200.p99", "< 0.5%").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`invite_to_200.p99` is measured as a time, like 500ms, but '0.5%' is a percentage"
        );
        assert!(Threshold::parse("calls.failed", "< 5ms").is_err());
        assert!(Threshold::parse("calls.failed.count", "< 5").is_ok());
        assert!(Threshold::parse("calls.started.rate", "> 5/s").is_ok());
        assert!(Threshold::parse("invite_to_200.count", "> 100").is_ok());
        assert_eq!(
            Threshold::parse("audio.verified", "> 120%"),
            Err(ThresholdError::PercentOver100("120%".into()))
        );
    }

    #[test]
    fn the_executor_gets_values_in_the_stated_unit() {
        assert_eq!(m("invite_to_200.p99").unit(), ValueUnit::Milliseconds);
        assert_eq!(m("calls.failed").unit(), ValueUnit::Fraction);
        assert_eq!(m("calls.failed.count").unit(), ValueUnit::Count);
        assert_eq!(m("generator.overrun").unit(), ValueUnit::Count);
        assert_eq!(m("calls.started.rate").unit(), ValueUnit::PerSecond);
    }

    #[test]
    fn conditions_compare_in_canonical_units() {
        let t = Threshold::parse("invite_to_200.p99", "< 500ms").unwrap();
        assert!(t.condition.holds(312.5));
        assert!(!t.condition.holds(500.0));

        let t = Threshold::parse("calls.failed", "< 0.1%").unwrap();
        assert!(t.condition.holds(0.0008));
        assert!(!t.condition.holds(0.002));

        let t = Threshold::parse("audio.verified", ">= 99.5%").unwrap();
        assert!(t.condition.holds(0.995));
        let t = Threshold::parse("calls.started.rate", "> 5/s").unwrap();
        assert!(t.condition.holds(5.5));
        assert!(!t.condition.holds(5.0));
    }

    #[test]
    fn not_started_calls_fail_by_default_unless_the_scenario_says_otherwise() {
        let latency = Threshold::parse("invite_to_200.p99", "< 500ms").unwrap();
        let all = with_builtins(std::slice::from_ref(&latency));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], latency);
        assert_eq!(all[1].to_string(), "calls.not_started <= 0");
        assert_eq!(all[1].metric.unit(), ValueUnit::Count);
        assert_eq!(all[1].metric.metric, Metric::CallsNotStarted);
        assert!(!all[1].condition.holds(2.0));
        assert!(all[1].condition.holds(0.0));

        // The scenario's own limit replaces the built-in one, whatever its statistic.
        let allowed = Threshold::parse("calls.not_started", "<= 5").unwrap();
        assert_eq!(
            with_builtins(std::slice::from_ref(&allowed)),
            vec![allowed.clone()]
        );
        let rate = Threshold::parse("calls.not_started.rate", "< 1/s").unwrap();
        assert_eq!(
            with_builtins(std::slice::from_ref(&rate)),
            vec![rate.clone()]
        );
        assert_eq!(with_builtins(&[]), builtin());
    }
}
