//! The metrics aggregator: the executor hands it each call's figures once, at the call's end
//! ([`Metrics::record_call`]), and each registration ([`Metrics::record_register`]); at the
//! end of the run [`Metrics::finish`] turns them into a [`RunSummary`], which every reporter
//! reads and which answers thresholds ([`RunSummary::value`], [`RunSummary::check`], in
//! [`super::verdict`]).
//!
//! Pure: no clock is read (the run's start and its elapsed time are handed in), nothing is
//! written anywhere.
//!
//! # What is counted where
//!
//! - **Calls.** Every role counts its own results (`calls.by_role`). The run's totals (and the
//!   `calls.*` thresholds) count the *calling* side when the run has callers, so a call between
//!   two roles of the run counts once; a run with only callees (calls come from outside)
//!   counts the callee side. A call *failed* when its result has at least one failure.
//! - **Failures** are counted per [`FailureKind::label`](crate::stats::outcome::FailureKind::label),
//!   per occurrence: a call can fail more than one way, so the failures can add up to more
//!   than the failed calls.
//! - **Timings** are HdrHistograms of microseconds (3 significant figures, sized for 1 µs to
//!   1 h and resized above that, so no outlier is clamped):
//!   - `invite_to_first_provisional`, `invite_to_ringing`, `invite_to_200`: caller side only,
//!     measured from each call's *scheduled* start (no coordinated omission). Calls that never
//!     got that far have no sample: read them with `calls.failed`.
//!   - `call_duration`: the counting side (one sample per call).
//!   - `bye_rtt`, `tone_onset`: every user agent that measured one.
//!   - `rtp.jitter`: one sample per received stream (per call result), its RFC 3550 jitter at
//!     the call's end.
//!   - `pacing.lateness`: every frame sent, merged from each call's histogram.
//!   - `register_rtt`: registrations that succeeded (not unregistrations).
//! - **Per-call loss** ([`RunSummary::call_loss_ppm`]): one sample per received stream that
//!   expected packets, in parts per million of the packets expected (10 000 ppm = 1 %). The
//!   `rtp.loss` threshold is the run's total instead: lost ÷ expected over all streams.
//! - **Generator health.** A *late start* is a call whose INVITE left more than
//!   [`LATE_START`] after its scheduled time: sipcheck itself, not the system under test, fell
//!   behind. *Frames skipped* are media frames a sender dropped because it woke up too late
//!   (the `generator.overrun` metric).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::model::Scenario;
use crate::scenario::threshold::Metric;
use crate::sip::build::reason_phrase;
use crate::stats::ladder::Rung;
use crate::stats::outcome::{CallResult, FailureKind, RegisterResult, Side};

/// A call whose INVITE left later than this after its scheduled start is a late start.
pub const LATE_START: Duration = Duration::from_millis(10);

/// How many failing calls are kept per failure kind.
pub const SAMPLES_PER_KIND: usize = 10;

/// How many distinct failure reasons are told apart; failures of further reasons are counted
/// under `<kind label>: other reasons`.
pub const MAX_REASONS: usize = 100;

/// The timing metrics, in report order.
pub const TIMING_METRICS: [Metric; 13] = [
    Metric::RegisterRtt,
    Metric::InviteToFirstProvisional,
    Metric::InviteToRinging,
    Metric::InviteTo200,
    Metric::ByeRtt,
    Metric::CallDuration,
    Metric::ToneOnset,
    Metric::RtpJitter,
    Metric::PacingLateness,
    Metric::AudioGap,
    Metric::AudioDelay,
    Metric::TlsHandshake,
    Metric::WsHandshake,
];

/// One step of a role as written in the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// The step's name (`call`, `expect`, `answer` …).
    pub kind: String,
    /// Its line in the scenario file.
    pub line: u32,
    /// Its column.
    pub col: u32,
}

/// One role of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    /// The role's name.
    pub name: String,
    /// Whether it places calls.
    pub places_calls: bool,
    /// Its steps, in order.
    pub steps: Vec<StepInfo>,
}

/// What the reports need to know about the run besides its results: the scenario's name and
/// its roles and steps (so that steps that never failed still appear in JUnit).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunInfo {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file, as named on the command line (empty when unknown).
    pub file: String,
    /// The roles, in the order written.
    pub roles: Vec<RoleInfo>,
}

impl RunInfo {
    /// The roles and steps of a validated scenario.
    #[must_use]
    pub fn from_scenario(scenario: &Scenario) -> Self {
        Self {
            scenario: scenario.name.clone(),
            file: String::new(),
            roles: scenario
                .roles
                .iter()
                .map(|role| RoleInfo {
                    name: role.name.clone(),
                    places_calls: role.calls(),
                    steps: role
                        .steps
                        .iter()
                        .map(|s| StepInfo {
                            kind: s.value.name().to_owned(),
                            line: s.line,
                            col: s.col,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The same, with the scenario file's path, for the reports' `file:line` locations.
    #[must_use]
    pub fn with_file(mut self, file: &str) -> Self {
        file.clone_into(&mut self.file);
        self
    }
}

/// Calls started, passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Calls with a result.
    pub started: u64,
    /// Calls without a failure.
    pub passed: u64,
    /// Calls with at least one failure.
    pub failed: u64,
}

impl CallCounts {
    fn add(&mut self, passed: bool) {
        self.started += 1;
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Failed calls as a fraction of those started; `None` before any call.
    #[must_use]
    pub fn failed_ratio(&self) -> Option<f64> {
        ratio(self.failed, self.started)
    }
}

/// Registrations and unregistrations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationCounts {
    /// Registrations (and refreshes) that succeeded.
    pub ok: u64,
    /// Registrations that failed.
    pub failed: u64,
    /// Unregistrations that succeeded.
    pub unregister_ok: u64,
    /// Unregistrations that failed.
    pub unregister_failed: u64,
    /// The first failed registration.
    pub first_failure: Option<RegistrationFailure>,
    /// The first failed unregistration.
    pub first_unregister_failure: Option<RegistrationFailure>,
}

impl RegistrationCounts {
    fn add(&mut self, r: &RegisterResult) {
        let failure = r.error.as_ref().map(|e| RegistrationFailure {
            user: r.user.clone(),
            error: e.clone(),
        });
        let (ok, failed, first) = if r.unregister {
            (
                &mut self.unregister_ok,
                &mut self.unregister_failed,
                &mut self.first_unregister_failure,
            )
        } else {
            (&mut self.ok, &mut self.failed, &mut self.first_failure)
        };
        match failure {
            None => *ok += 1,
            Some(f) => {
                *failed += 1;
                first.get_or_insert(f);
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.unregister_ok += other.unregister_ok;
        self.unregister_failed += other.unregister_failed;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
        if self.first_unregister_failure.is_none() {
            self.first_unregister_failure
                .clone_from(&other.first_unregister_failure);
        }
    }
}

/// A failed registration, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationFailure {
    /// The account.
    pub user: String,
    /// What went wrong.
    pub error: String,
}

/// Checked and verified media expectations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Expectations checked.
    pub checked: u64,
    /// Those that held.
    pub verified: u64,
}

impl Verified {
    /// Verified as a fraction of checked; `None` when nothing was checked.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.verified, self.checked)
    }
}

/// Listening quality over the run's received streams (see [`crate::media::quality`]).
#[derive(Debug, Clone)]
pub struct QualitySummary {
    /// The estimated MOS (MOS-CQE) of each received stream that played frames, in
    /// thousandths (4410 is 4.41).
    pub mos_milli: Histogram<u64>,
    /// The raw ITU-T P.862 score of each `expect: pesq` step scored, encoded as thousandths
    /// of the score plus one ([`PESQ_OFFSET_MILLI`]: the scale's −0.5 to 4.5 are 500 to
    /// 5500), so that no score, however low, is clamped.
    pub pesq_milli: Histogram<u64>,
    /// Gaps in expected tones after their onset, every user agent.
    pub audio_gaps: u64,
}

/// What [`QualitySummary::pesq_milli`] adds to each score, in thousandths: a score `s` is
/// recorded as `round((s + 1) · 1000)`.
pub const PESQ_OFFSET_MILLI: u64 = 1000;

impl QualitySummary {
    fn new() -> Self {
        Self {
            // Four significant figures: every thousandth from 1.000 to 4.500 exactly.
            mos_milli: Histogram::new_with_bounds(1, 5_000, 4)
                .expect("constant bounds are valid for HdrHistogram"),
            // Every thousandth of the P.862 scale, offset: 500 to 5500 exactly.
            pesq_milli: Histogram::new_with_bounds(1, 6_000, 4)
                .expect("constant bounds are valid for HdrHistogram"),
            audio_gaps: 0,
        }
    }

    /// The `p`th percentile of the estimated MOS (`None` without a stream).
    #[must_use]
    pub fn mos_percentile(&self, p: f64) -> Option<f64> {
        (!self.mos_milli.is_empty())
            .then(|| self.mos_milli.value_at_quantile(p / 100.0) as f64 / 1000.0)
    }

    /// The `p`th percentile of the PESQ scores (`None` without a score).
    #[must_use]
    pub fn pesq_percentile(&self, p: f64) -> Option<f64> {
        (!self.pesq_milli.is_empty())
            .then(|| pesq_of_milli(self.pesq_milli.value_at_quantile(p / 100.0)))
    }

    /// The lowest PESQ score (`None` without a score).
    #[must_use]
    pub fn pesq_min(&self) -> Option<f64> {
        (!self.pesq_milli.is_empty()).then(|| pesq_of_milli(self.pesq_milli.min()))
    }
}

/// A PESQ score as [`QualitySummary::pesq_milli`] records it.
#[must_use]
pub fn pesq_milli(score: f64) -> u64 {
    ((score * 1000.0).round() + PESQ_OFFSET_MILLI as f64).clamp(1.0, 6_000.0) as u64
}

/// The PESQ score of a value of [`QualitySummary::pesq_milli`].
#[must_use]
pub fn pesq_of_milli(v: u64) -> f64 {
    (v as f64 - PESQ_OFFSET_MILLI as f64) / 1000.0
}

/// RTP packet totals over every stream of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RtpTotals {
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Packets the senders' sequence numbers say were sent to us.
    pub packets_expected: u64,
    /// Packets lost.
    pub packets_lost: u64,
    /// Datagrams at the calls' RTP ports that were not their peers' media (set aside).
    pub stray_packets: u64,
    /// Sequence or timestamp jumps within the peers' streams (neither loss nor jitter).
    pub discontinuities: u64,
    /// Call ends whose media was SRTP.
    pub srtp_streams: u64,
    /// SRTP packets received whose authentication failed (dropped), every call.
    pub srtp_auth_failures: u64,
    /// SRTP packets received again (replays, dropped), every call.
    pub srtp_replays: u64,
}

impl RtpTotals {
    /// Lost as a fraction of expected; `None` when no packet was expected.
    #[must_use]
    pub fn loss_ratio(&self) -> Option<f64> {
        ratio(self.packets_lost, self.packets_expected)
    }
}

/// Whether sipcheck itself kept up with its schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneratorHealth {
    /// Calls whose INVITE left more than [`LATE_START`] after its scheduled time.
    pub late_starts: u64,
    /// The largest start lag seen.
    pub max_start_lag: Duration,
    /// Media frames skipped because a sender woke up too late.
    pub frames_skipped: u64,
    /// Calls due by the load plan but not started because the concurrency cap was reached.
    pub not_started: u64,
}

/// One failure of a sampled call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailureNote {
    /// The step (`call`, `expect` …).
    pub step: String,
    /// Its line in the scenario (0: not tied to a step).
    pub line: u32,
    /// Its column.
    pub col: u32,
    /// [`FailureKind::label`](crate::stats::outcome::FailureKind::label).
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// A failing call kept as an example, with its SIP ladder.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FailedCall {
    /// The role.
    pub role: String,
    /// The side.
    pub side: Side,
    /// The account.
    pub user: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The final status of the INVITE.
    pub final_code: Option<u16>,
    /// The final status of our BYE (`None`: no BYE sent, or none answered).
    pub bye_code: Option<u16>,
    /// Why the call ended.
    pub end_reason: String,
    /// Everything that failed.
    pub failures: Vec<FailureNote>,
    /// The SIP ladder.
    pub ladder: Vec<Rung>,
    /// What this end received (`None`: no media flowed).
    pub quality: Option<CallQuality>,
}

/// The quality figures of one call as one of its ends received it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CallQuality {
    /// The E-model MOS estimate of the received direction (`None`: no frame played out).
    pub mos: Option<f64>,
    /// Packets the far end's sequence numbers say were sent.
    pub packets_expected: u64,
    /// Of those, lost.
    pub packets_lost: u64,
    /// Lost of expected, percent (`None`: nothing expected).
    pub loss_percent: Option<f64>,
    /// RFC 3550 interarrival jitter at the call's end, milliseconds.
    pub jitter_ms: f64,
    /// Gaps (dropouts of 40 ms or more) in the heard tones.
    pub audio_gaps: u64,
    /// The longest of them, milliseconds.
    pub longest_gap_ms: Option<u64>,
    /// The mouth-to-ear delay of the received direction, milliseconds (both ends in the run,
    /// the signature heard); `None` when not measured.
    pub delay_ms: Option<f64>,
    /// The lowest raw ITU-T P.862 score of the call's `expect: pesq` steps at this end;
    /// `None` when none was scored.
    pub pesq: Option<f64>,
    /// The audio signature's verdict when it failed (`no_audio`, `one_way_audio`,
    /// `crossed_audio`, `wrong_audio`); `None` otherwise.
    pub signature: Option<String>,
    /// SRTP's counters at this end (`protected`, `unprotected`, `auth_failures`, `replays`,
    /// `malformed`); absent for plain RTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<crate::rtp::srtp::SrtpStats>,
}

impl CallQuality {
    /// The figures of `r`; `None` when no media flowed.
    #[must_use]
    pub fn of(r: &CallResult) -> Option<Self> {
        let m = r.media.as_ref()?;
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Some(Self {
            mos: m.quality.as_ref().map(|q| round(q.mos_cqe)),
            packets_expected: m.packets_expected,
            packets_lost: m.packets_lost,
            loss_percent: (m.packets_expected > 0).then(|| {
                round(
                    m.packets_lost.min(m.packets_expected) as f64 * 100.0
                        / m.packets_expected as f64,
                )
            }),
            jitter_ms: round(m.jitter_ms.max(0.0)),
            audio_gaps: m.audio_gap_count,
            longest_gap_ms: m
                .audio_gaps
                .iter()
                .max()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            delay_ms: m.delay.map(|d| round(d.as_secs_f64() * 1000.0)),
            pesq: r.pesq.iter().copied().reduce(f64::min).map(round),
            signature: signature_verdict(r).map(str::to_owned),
            srtp: m.srtp,
        })
    }
}

/// The label of the call's audio-signature failure, if any.
fn signature_verdict(r: &CallResult) -> Option<&'static str> {
    r.failures.iter().find_map(|f| match f.kind {
        FailureKind::NoAudio => Some("no_audio"),
        FailureKind::OneWayAudio => Some("one_way_audio"),
        FailureKind::CrossedAudio => Some("crossed_audio"),
        FailureKind::WrongAudio => Some("wrong_audio"),
        _ => None,
    })
}

/// How many calls the "worst calls" table keeps.
pub const WORST_CALLS: usize = 5;

/// One of the calls with the lowest MOS estimate.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WorstCall {
    /// The role.
    pub role: String,
    /// The side.
    pub side: Side,
    /// The SIP Call-ID.
    pub call_id: String,
    /// `passed`, or the labels of its failures, comma-separated.
    pub verdict: String,
    /// Its MOS estimate.
    pub mos: f64,
    /// Its figures.
    pub quality: CallQuality,
}

/// Keeps the [`WORST_CALLS`] calls with the lowest MOS estimate, as results stream in.
fn keep_worst(worst: &mut Vec<WorstCall>, r: &CallResult) {
    let Some(quality) = CallQuality::of(r) else {
        return;
    };
    let Some(mos) = quality.mos else {
        return;
    };
    if worst.len() == WORST_CALLS && worst.last().is_some_and(|w| w.mos <= mos) {
        return;
    }
    let verdict = if r.passed() {
        "passed".to_owned()
    } else {
        let mut labels: Vec<String> = Vec::new();
        for f in &r.failures {
            let label = f.kind.label();
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        labels.join(",")
    };
    let at = worst.partition_point(|w| w.mos <= mos);
    worst.insert(
        at,
        WorstCall {
            role: r.role.clone(),
            side: r.side,
            call_id: r.call_id.clone(),
            verdict,
            mos,
            quality,
        },
    );
    worst.truncate(WORST_CALLS);
}

impl FailedCall {
    fn from_result(r: &CallResult) -> Self {
        Self {
            role: r.role.clone(),
            side: r.side,
            user: r.user.clone(),
            call_id: r.call_id.clone(),
            final_code: r.final_code,
            bye_code: r.bye_code,
            end_reason: r.end_reason.clone(),
            failures: r
                .failures
                .iter()
                .map(|f| FailureNote {
                    step: f.step.to_owned(),
                    line: f.line,
                    col: f.col,
                    kind: f.kind.label(),
                    message: f.message.clone(),
                })
                .collect(),
            ladder: r.ladder.clone(),
            quality: CallQuality::of(r),
        }
    }
}

/// The failures of one exact reason, all roles: `sip_480 Temporarily Unavailable`,
/// `tone 1500 Hz not heard` (see [`failure_reason`]).
#[derive(Debug, Clone)]
pub struct ReasonSummary {
    /// The reason, for people.
    pub reason: String,
    /// Its [`FailureKind::label`](crate::stats::outcome::FailureKind::label).
    pub kind: String,
    /// How many failures had it.
    pub count: u64,
    /// The first call that failed for it, with its SIP ladder.
    pub first: FailedCall,
}

/// The exact reason of a failure, to group failures by: a SIP status with the reason phrase
/// as received (`sip_480 Temporarily Unavailable`), the tone or digits that did not come
/// (`tone 1500 Hz not heard`, `DTMF '123' not received`), otherwise the kind's label and the
/// message, without its parenthesised details and, for timers and media timeouts, without
/// the measured durations (`no_media: RTP timeout: no media for … s`).
#[must_use]
pub fn failure_reason(kind: &FailureKind, message: &str) -> String {
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let message = message.trim();
    match kind {
        FailureKind::SipCode(code) => {
            let phrase =
                sip_phrase(message, *code).unwrap_or_else(|| reason_phrase(*code).to_owned());
            if phrase.is_empty() {
                format!("sip_{code}")
            } else {
                format!("sip_{code} {phrase}")
            }
        }
        FailureKind::ToneMissing => match message
            .strip_prefix("expected tone ")
            .and_then(|rest| rest.split_once(" not heard"))
        {
            Some((tone, _)) => format!("tone {tone} not heard"),
            None => generic_reason(kind, message),
        },
        FailureKind::DtmfMissing => match message
            .strip_prefix("expected DTMF ")
            .and_then(|rest| rest.split_once(", received"))
        {
            Some((digits, _)) => format!("DTMF {digits} not received"),
            None => generic_reason(kind, message),
        },
        _ => generic_reason(kind, message),
    }
}

/// The reason phrase after `code` in `message` (`… rejected: 480 Temporarily Unavailable`).
fn sip_phrase(message: &str, code: u16) -> Option<String> {
    let needle = format!("{code} ");
    let mut from = 0;
    while let Some(i) = message[from..].find(&needle) {
        let at = from + i;
        let standalone = message[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        if standalone {
            let phrase = message[at + needle.len()..].trim();
            return (!phrase.is_empty()).then(|| phrase.to_owned());
        }
        from = at + needle.len();
    }
    None
}

fn generic_reason(kind: &FailureKind, message: &str) -> String {
    let message = message.strip_prefix("the call ended: ").unwrap_or(message);
    let message = message.split(" (").next().unwrap_or(message).trim();
    let message = if matches!(kind, FailureKind::Timer(_) | FailureKind::NoMedia) {
        without_decimals(message)
    } else {
        message.to_owned()
    };
    format!("{}: {message}", kind.label())
}

/// `no media for 3.2 s` → `no media for … s`: numbers with a decimal point (measured
/// durations) replaced.
fn without_decimals(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let number = w.contains('.')
                && w.chars().all(|c| c.is_ascii_digit() || c == '.')
                && w.chars().any(|c| c.is_ascii_digit());
            if number {
                "…"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The results of one step of one role.
#[derive(Debug, Clone)]
pub struct StepSummary {
    /// The step's name.
    pub kind: String,
    /// Its line (0: failures not tied to a step, such as an interrupted run).
    pub line: u32,
    /// Its column.
    pub col: u32,
    /// Calls of the role that reached this step.
    pub reached: u64,
    /// Calls of the role that completed this step without a failure.
    pub passed: u64,
    /// The time the role's calls spent in this step, added up.
    pub time: Duration,
    /// Calls of the role that failed at this step.
    pub failed: u64,
    /// Failures at this step per kind label.
    pub failures: BTreeMap<String, u64>,
    /// The first call that failed at this step.
    pub sample: Option<FailedCall>,
}

/// The results of one role.
#[derive(Debug, Clone)]
pub struct RoleSummary {
    /// The role's name.
    pub name: String,
    /// Whether it places calls.
    pub places_calls: bool,
    /// Its calls (each of its call results).
    pub calls: CallCounts,
    /// Its failures per kind label.
    pub failures: BTreeMap<String, u64>,
    /// Its registrations.
    pub registrations: RegistrationCounts,
    /// Its steps: those of the scenario in order, then any other place failures were reported.
    pub steps: Vec<StepSummary>,
}

impl RoleSummary {
    fn new(name: &str, places_calls: bool, steps: &[StepInfo]) -> Self {
        Self {
            name: name.to_owned(),
            places_calls,
            calls: CallCounts::default(),
            failures: BTreeMap::new(),
            registrations: RegistrationCounts::default(),
            steps: steps
                .iter()
                .map(|s| StepSummary {
                    kind: s.kind.clone(),
                    line: s.line,
                    col: s.col,
                    reached: 0,
                    passed: 0,
                    time: Duration::ZERO,
                    failed: 0,
                    failures: BTreeMap::new(),
                    sample: None,
                })
                .collect(),
        }
    }

    /// The step at `line:col` (or, failing that, the only step at `line`, or the step of
    /// that name with no position), created when the scenario did not list it.
    fn step_mut(&mut self, kind: &str, line: u32, col: u32) -> &mut StepSummary {
        let exact = self
            .steps
            .iter()
            .position(|s| s.line == line && s.col == col && (line > 0 || s.kind == kind));
        let on_line = || {
            let mut on_line = self
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| line > 0 && s.line == line);
            match (on_line.next(), on_line.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        };
        let i = match exact.or_else(on_line) {
            Some(i) => i,
            None => {
                self.steps.push(StepSummary {
                    kind: kind.to_owned(),
                    line,
                    col,
                    reached: 0,
                    passed: 0,
                    time: Duration::ZERO,
                    failed: 0,
                    failures: BTreeMap::new(),
                    sample: None,
                });
                self.steps.len() - 1
            }
        };
        &mut self.steps[i]
    }
}

/// A timing metric's samples, in microseconds.
#[derive(Debug, Clone)]
pub struct TimingSeries {
    /// The metric.
    pub metric: Metric,
    /// Its samples, microseconds.
    pub micros: Histogram<u64>,
}

/// Figures of one histogram of microseconds, in milliseconds. Percentiles are HdrHistogram's
/// highest equivalent value (within 0.1 % above the true value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingStats {
    /// Samples.
    pub count: u64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl TimingStats {
    /// The figures of a histogram of microseconds; `None` when it is empty.
    #[must_use]
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            count: h.len(),
            min_ms: ms(h.min()),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }
}

/// What produced a summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The sipcheck version (empty when unknown).
    pub version: String,
    /// The whole scenario's [`crate::scenario::shard::fingerprint`] (empty when unknown).
    pub fingerprint: String,
    /// The shard this run was (`None`: the whole scenario in one process).
    pub shard: Option<crate::scenario::shard::Shard>,
    /// A merged summary: how many shards the run had.
    pub merged_shards: Option<u32>,
    /// A merged summary: the shards whose summaries were not given.
    pub missing_shards: Vec<u32>,
}

/// Everything a run measured, as the reporters read it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// This run's id (random, set by the run), written into every report so that a report
    /// left from an earlier run is never taken for this one's.
    pub run_id: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file, as named on the command line (empty when unknown).
    pub file: String,
    /// When the run started (wall clock).
    pub started_at: SystemTime,
    /// How long it ran.
    pub elapsed: Duration,
    /// Whether it was interrupted (Ctrl-C) before its planned end.
    pub interrupted: bool,
    /// Which side's results the run's call totals count.
    pub counted_side: Side,
    /// Call totals (see the module documentation).
    pub calls: CallCounts,
    /// Failures per kind label, all roles.
    pub failures: BTreeMap<String, u64>,
    /// Registrations, all roles.
    pub registrations: RegistrationCounts,
    /// Per role, in the scenario's order.
    pub roles: Vec<RoleSummary>,
    /// The timing metrics, in [`TIMING_METRICS`] order (empty histograms included).
    pub timings: Vec<TimingSeries>,
    /// Per received stream: lost packets in parts per million of those expected.
    pub call_loss_ppm: Histogram<u64>,
    /// RTP totals.
    pub rtp: RtpTotals,
    /// Tone and silence expectations.
    pub audio: Verified,
    /// DTMF expectations.
    pub dtmf: Verified,
    /// Estimated listening quality and gaps.
    pub quality: QualitySummary,
    /// Whether sipcheck kept up.
    pub generator: GeneratorHealth,
    /// Failing calls kept as examples: the first [`SAMPLES_PER_KIND`] per failure kind label.
    pub samples: BTreeMap<String, Vec<FailedCall>>,
    /// Failures grouped by exact reason, all roles, the most frequent first.
    pub reasons: Vec<ReasonSummary>,
    /// Calls of the counted side whose only failure is that the run was interrupted.
    pub calls_cut_short: u64,
    /// The [`WORST_CALLS`] calls (ends) with the lowest MOS estimate, lowest first.
    pub worst_calls: Vec<WorstCall>,
    /// What produced it: the version, the scenario's fingerprint, the shard.
    pub provenance: Provenance,
}

impl RunSummary {
    /// The histogram of a timing metric (`None` for a metric that is not a timing).
    #[must_use]
    pub fn timing(&self, metric: Metric) -> Option<&Histogram<u64>> {
        self.timings
            .iter()
            .find(|t| t.metric == metric)
            .map(|t| &t.micros)
    }
}

/// `part` of `whole`; `None` when `whole` is nothing.
pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// A histogram of microseconds: 1 µs to 1 h at 3 significant figures, resized for anything
/// longer (nothing is clamped).
fn micros_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant bounds are valid for HdrHistogram");
    h.auto(true);
    h
}

fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

fn record_n(h: &mut Histogram<u64>, value: u64, n: u64) {
    if h.record_n(value, n).is_err() {
        h.saturating_record_n(value, n);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Each timing sample of one call result, as `(metric, value, count)` (microseconds): the
/// caller's setup latencies, the call's duration (of either side: the run's totals keep the
/// counted side's), its BYE's round trip, its tones' onsets, and of its media the jitter,
/// the gaps, the delay and the pacing lateness of its frames.
pub fn timing_samples(r: &CallResult, mut sample: impl FnMut(Metric, u64, u64)) {
    if r.side == Side::Caller {
        for (metric, value) in [
            (
                Metric::InviteToFirstProvisional,
                r.invite_to_first_provisional,
            ),
            (Metric::InviteToRinging, r.invite_to_ringing),
            (Metric::InviteTo200, r.invite_to_200),
        ] {
            if let Some(d) = value {
                sample(metric, micros(d), 1);
            }
        }
    }
    if let Some(d) = r.duration {
        sample(Metric::CallDuration, micros(d), 1);
    }
    if let Some(d) = r.bye_rtt {
        sample(Metric::ByeRtt, micros(d), 1);
    }
    for &d in &r.tone_onsets {
        sample(Metric::ToneOnset, micros(d), 1);
    }
    let Some(m) = &r.media else {
        return;
    };
    if m.packets_received > 0 || m.packets_expected > 0 {
        let jitter_us = (m.jitter_ms.max(0.0) * 1000.0).round() as u64;
        sample(Metric::RtpJitter, jitter_us, 1);
    }
    for &gap in &m.audio_gaps {
        sample(Metric::AudioGap, micros(gap), 1);
    }
    if let Some(delay) = m.delay {
        sample(Metric::AudioDelay, micros(delay), 1);
    }
    // Only when the call sent frames: iterating an empty histogram still walks every bucket.
    if !m.pacing_lateness_us.is_empty() {
        for v in m.pacing_lateness_us.iter_recorded() {
            sample(
                Metric::PacingLateness,
                v.value_iterated_to(),
                u64::from(v.count_at_value()),
            );
        }
    }
}

/// The round trip of a registration, microseconds: that of a successful REGISTER (not an
/// unregistration).
#[must_use]
pub fn register_rtt(r: &RegisterResult) -> Option<u64> {
    if r.unregister || r.error.is_some() {
        return None;
    }
    r.rtt.map(micros)
}

/// Aggregates call and registration results into a [`RunSummary`].
///
/// Memory stays bounded whatever the run's length: histograms, counters, one sample per step
/// and [`SAMPLES_PER_KIND`] per failure kind.
#[derive(Debug)]
pub struct Metrics {
    scenario: String,
    file: String,
    started_at: SystemTime,
    roles: Vec<RoleSummary>,
    by_side: [CallCounts; 2],
    any_caller_role: bool,
    timings: Vec<TimingSeries>,
    duration_by_side: [Histogram<u64>; 2],
    call_loss_ppm: Histogram<u64>,
    rtp: RtpTotals,
    audio: Verified,
    dtmf: Verified,
    quality: QualitySummary,
    generator: GeneratorHealth,
    samples: BTreeMap<String, Vec<FailedCall>>,
    reasons: BTreeMap<String, ReasonSummary>,
    cut_short: [u64; 2],
    /// The Call-IDs of the failed calls of each side: a call fails when either of its user
    /// agents failed, and the side not counted is folded in at the end.
    failed_call_ids: [HashSet<String>; 2],
    /// The calls with the lowest MOS estimate, lowest first.
    worst: Vec<WorstCall>,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Caller => 0,
        Side::Callee => 1,
    }
}

impl Metrics {
    /// An aggregator for a run that started at `run_start` (wall clock, for the reports).
    #[must_use]
    pub fn new(run_start: SystemTime, info: &RunInfo) -> Self {
        Self {
            scenario: info.scenario.clone(),
            file: info.file.clone(),
            started_at: run_start,
            roles: info
                .roles
                .iter()
                .map(|r| RoleSummary::new(&r.name, r.places_calls, &r.steps))
                .collect(),
            by_side: [CallCounts::default(); 2],
            any_caller_role: info.roles.iter().any(|r| r.places_calls),
            timings: TIMING_METRICS
                .iter()
                .map(|&metric| TimingSeries {
                    metric,
                    micros: micros_histogram(),
                })
                .collect(),
            duration_by_side: [micros_histogram(), micros_histogram()],
            call_loss_ppm: micros_histogram(),
            rtp: RtpTotals::default(),
            audio: Verified::default(),
            dtmf: Verified::default(),
            quality: QualitySummary::new(),
            generator: GeneratorHealth::default(),
            samples: BTreeMap::new(),
            reasons: BTreeMap::new(),
            cut_short: [0; 2],
            failed_call_ids: [HashSet::new(), HashSet::new()],
            worst: Vec::new(),
        }
    }

    fn role_mut(&mut self, name: &str, places_calls: bool) -> &mut RoleSummary {
        let i = match self.roles.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                self.roles.push(RoleSummary::new(name, places_calls, &[]));
                self.roles.len() - 1
            }
        };
        &mut self.roles[i]
    }

    fn series(&mut self, metric: Metric) -> &mut Histogram<u64> {
        let i = TIMING_METRICS
            .iter()
            .position(|&m| m == metric)
            .expect("a timing metric");
        &mut self.timings[i].micros
    }

    /// Records one call as seen by one of its user agents (once, at its end).
    pub fn record_call(&mut self, r: &CallResult) {
        let passed = r.passed();
        self.by_side[side_index(r.side)].add(passed);
        if !passed {
            self.failed_call_ids[side_index(r.side)].insert(r.call_id.clone());
        }

        // Timings.
        let side = side_index(r.side);
        timing_samples(r, |metric, value, n| {
            let h = if metric == Metric::CallDuration {
                &mut self.duration_by_side[side]
            } else {
                self.series(metric)
            };
            record_n(h, value, n);
        });
        for &score in &r.pesq {
            record(&mut self.quality.pesq_milli, pesq_milli(score));
        }

        // Media.
        if let Some(m) = &r.media {
            self.rtp.packets_sent += m.packets_sent;
            self.rtp.packets_received += m.packets_received;
            self.rtp.packets_expected += m.packets_expected;
            self.rtp.packets_lost += m.packets_lost;
            self.rtp.stray_packets += m.stray_packets;
            self.rtp.discontinuities += m.discontinuities;
            if let Some(srtp) = &m.srtp {
                self.rtp.srtp_streams += 1;
                self.rtp.srtp_auth_failures += srtp.auth_failures;
                self.rtp.srtp_replays += srtp.replays;
            }
            self.generator.frames_skipped += m.frames_skipped;
            if let Some(q) = &m.quality {
                record(
                    &mut self.quality.mos_milli,
                    (q.mos_cqe * 1000.0).round().max(1.0) as u64,
                );
            }
            self.quality.audio_gaps += m.audio_gap_count;
            if m.packets_expected > 0 {
                let ppm = u128::from(m.packets_lost.min(m.packets_expected)) * 1_000_000
                    / u128::from(m.packets_expected);
                record(&mut self.call_loss_ppm, ppm as u64);
            }
        }
        self.audio.checked += u64::from(r.audio_checked);
        self.audio.verified += u64::from(r.audio_verified);
        self.dtmf.checked += u64::from(r.dtmf_checked);
        self.dtmf.verified += u64::from(r.dtmf_verified);

        // Generator.
        if r.scheduled.is_some() {
            self.generator.max_start_lag = self.generator.max_start_lag.max(r.start_lag);
            if r.start_lag > LATE_START {
                self.generator.late_starts += 1;
            }
        }

        keep_worst(&mut self.worst, r);

        // Per role, per step, samples.
        let role = self.role_mut(&r.role, r.side == Side::Caller);
        role.calls.add(passed);
        for run in &r.steps {
            if let Some(step) = role
                .steps
                .iter_mut()
                .find(|s| s.line == run.line && s.col == run.col)
            {
                step.reached += 1;
                step.passed += u64::from(run.passed);
                step.time += run.elapsed;
            }
        }
        if passed {
            return;
        }
        if r.failures
            .iter()
            .all(|f| f.kind == FailureKind::Interrupted)
        {
            self.cut_short[side_index(r.side)] += 1;
        }
        let sample = FailedCall::from_result(r);
        for f in &r.failures {
            let mut reason = failure_reason(&f.kind, &f.message);
            if !self.reasons.contains_key(&reason) && self.reasons.len() >= MAX_REASONS {
                reason = format!("{}: other reasons", f.kind.label());
            }
            self.reasons
                .entry(reason.clone())
                .or_insert_with(|| ReasonSummary {
                    reason,
                    kind: f.kind.label(),
                    count: 0,
                    first: sample.clone(),
                })
                .count += 1;
        }
        let role = self.role_mut(&r.role, r.side == Side::Caller);
        let mut steps_hit: Vec<(u32, u32, &str)> = Vec::new();
        for f in &r.failures {
            let label = f.kind.label();
            *role.failures.entry(label.clone()).or_default() += 1;
            let step = role.step_mut(f.step, f.line, f.col);
            *step.failures.entry(label).or_default() += 1;
            let key = (step.line, step.col, f.step);
            if !steps_hit.contains(&key) {
                steps_hit.push(key);
                step.failed += 1;
                if step.sample.is_none() {
                    step.sample = Some(sample.clone());
                }
            }
        }
        let mut labels: Vec<String> = r.failures.iter().map(|f| f.kind.label()).collect();
        labels.sort();
        labels.dedup();
        for label in labels {
            let kept = self.samples.entry(label).or_default();
            if kept.len() < SAMPLES_PER_KIND {
                kept.push(sample.clone());
            }
        }
    }

    /// Records one registration, refresh or unregistration.
    pub fn record_register(&mut self, r: &RegisterResult) {
        if let Some(rtt) = register_rtt(r) {
            record(self.series(Metric::RegisterRtt), rtt);
        }
        self.role_mut(&r.role, false).registrations.add(r);
    }

    /// Records one TLS handshake: from the TCP connect's start to the handshake's end.
    pub fn record_tls_handshake(&mut self, took: Duration) {
        record(self.series(Metric::TlsHandshake), micros(took));
    }

    /// Records one WebSocket handshake: from the TCP connect's start to the upgrade's end
    /// (the TLS handshake included over WSS).
    pub fn record_ws_handshake(&mut self, took: Duration) {
        record(self.series(Metric::WsHandshake), micros(took));
    }

    /// Records a call the load plan had due but that did not start because the concurrency
    /// cap was reached.
    pub fn record_not_started(&mut self) {
        self.generator.not_started += 1;
    }

    /// The summary of the run, which ran for `elapsed` and was `interrupted` or not.
    #[must_use]
    pub fn finish(self, elapsed: Duration, interrupted: bool) -> RunSummary {
        let has_callers = self.any_caller_role || self.by_side[0].started > 0;
        let counted_side = if has_callers {
            Side::Caller
        } else {
            Side::Callee
        };
        let [caller_duration, callee_duration] = self.duration_by_side;
        let mut timings = self.timings;
        let duration = match counted_side {
            Side::Caller => caller_duration,
            Side::Callee => callee_duration,
        };
        if let Some(t) = timings
            .iter_mut()
            .find(|t| t.metric == Metric::CallDuration)
        {
            t.micros = duration;
        }
        let mut failures = BTreeMap::new();
        let mut registrations = RegistrationCounts::default();
        for role in &self.roles {
            for (label, n) in &role.failures {
                *failures.entry(label.clone()).or_default() += n;
            }
            registrations.merge(&role.registrations);
        }
        RunSummary {
            run_id: String::new(),
            scenario: self.scenario,
            file: self.file,
            started_at: self.started_at,
            elapsed,
            interrupted,
            counted_side,
            calls: {
                // A call is counted once, by the side that places calls when there is one;
                // a failure of the other side's user agent fails the call too (never a pass
                // with a callee that did not hear what it expected). The two sides see the
                // same Call-ID unless a B2BUA changes it: a failure not matched to a failure
                // of the counted side is counted as one more failed call.
                let counted = side_index(counted_side);
                let mut calls = self.by_side[counted];
                let extra = self.failed_call_ids[1 - counted]
                    .iter()
                    .filter(|id| !self.failed_call_ids[counted].contains(*id))
                    .count() as u64;
                calls.failed += extra;
                calls.passed = calls.passed.saturating_sub(extra);
                calls.started = calls.started.max(calls.passed + calls.failed);
                calls
            },
            failures,
            registrations,
            roles: self.roles,
            timings,
            call_loss_ppm: self.call_loss_ppm,
            rtp: self.rtp,
            audio: self.audio,
            dtmf: self.dtmf,
            quality: self.quality,
            generator: self.generator,
            samples: self.samples,
            reasons: {
                let mut reasons: Vec<ReasonSummary> = self.reasons.into_values().collect();
                reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
                reasons
            },
            calls_cut_short: self.cut_short[side_index(counted_side)],
            worst_calls: self.worst,
            provenance: Provenance::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mos(i: u64, mos: f64) -> CallResult {
        let mut r = caller(i);
        let m = r.media.as_mut().unwrap();
        m.quality = Some(crate::media::quality::QualityEstimate {
            ppl_percent: 0.0,
            burst_r: 1.0,
            r: 0.0,
            mos_cqe: mos,
        });
        r
    }

    #[test]
    fn ws_handshakes_are_a_timing_of_their_own_a_threshold_judges() {
        use crate::scenario::threshold::Threshold;
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        m.record_tls_handshake(Duration::from_millis(2));
        for ms in [5, 6, 30] {
            m.record_ws_handshake(Duration::from_millis(ms));
        }
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.timing(Metric::WsHandshake).expect("a timing").len(), 3);
        assert_eq!(s.timing(Metric::TlsHandshake).expect("a timing").len(), 1);
        let slow = Threshold::parse("ws_handshake.max", "< 20ms").unwrap();
        let results = s.check(&[slow]);
        assert!(!results[0].passed, "{results:?}");
    }

    #[test]
    fn tls_handshakes_are_a_timing_a_threshold_judges() {
        use crate::scenario::threshold::Threshold;
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        for ms in [3, 4, 40] {
            m.record_tls_handshake(Duration::from_millis(ms));
        }
        let s = m.finish(Duration::from_secs(1), false);
        let h = s.timing(Metric::TlsHandshake).expect("a timing");
        assert_eq!(h.len(), 3);
        let stats = TimingStats::of(h).unwrap();
        assert!((stats.p50_ms - 4.0).abs() < 0.01, "{stats:?}");
        let fast = Threshold::parse("tls_handshake.p99", "< 50ms").unwrap();
        let faster = Threshold::parse("tls_handshake.max", "< 10ms").unwrap();
        let results = s.check(&[fast, faster]);
        assert!(results[0].passed, "{results:?}");
        assert!(!results[1].passed, "{results:?}");
    }

    #[test]
    fn worst_calls_keep_the_lowest_mos_lowest_first_and_only_a_few() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        // 1000 calls, their MOS falling then rising; the worst are calls 500..505.
        for i in 0..1000u64 {
            let mos = 1.0 + (i as f64 - 502.0).abs() / 250.0;
            let mut r = with_mos(i, mos);
            if i == 502 {
                r.failures.push(Failure {
                    step: "expect",
                    line: 20,
                    col: 9,
                    kind: FailureKind::NoAudio,
                    message: "no audio signature heard".into(),
                });
            }
            m.record_call(&r);
            assert!(m.worst.len() <= WORST_CALLS);
        }
        // Without a MOS estimate, a call is not ranked.
        let mut unrated = caller(2000);
        unrated.media.as_mut().unwrap().quality = None;
        m.record_call(&unrated);
        let s = m.finish(Duration::from_secs(1), false);
        let ids: Vec<&str> = s.worst_calls.iter().map(|w| w.call_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "call-502@sipcheck",
                "call-501@sipcheck",
                "call-503@sipcheck",
                "call-500@sipcheck",
                "call-504@sipcheck"
            ]
        );
        assert_eq!(s.worst_calls[0].verdict, "no_audio");
        assert_eq!(
            s.worst_calls[0].quality.signature.as_deref(),
            Some("no_audio")
        );
        assert_eq!(s.worst_calls[1].verdict, "passed");
        assert!(s.worst_calls.windows(2).all(|w| w[0].mos <= w[1].mos));
        // The failed call's sample carries its figures.
        let sample = &s.samples["no_audio"][0];
        let q = sample.quality.as_ref().unwrap();
        assert_eq!(q.mos, Some(1.0));
        assert_eq!(q.packets_expected, 250);
        assert_eq!(q.signature.as_deref(), Some("no_audio"));
    }
    use crate::scenario::threshold::{MetricKind, MetricRef};
    use crate::stats::fixture::*;
    use crate::stats::outcome::{CallMedia, Failure, FailureKind};
    use crate::stats::verdict::Verdict;

    fn mref(s: &str) -> MetricRef {
        s.parse().unwrap()
    }

    #[test]
    fn the_timing_metrics_are_every_timing_of_the_scenario_in_its_order() {
        let timings: Vec<Metric> = Metric::ALL
            .iter()
            .copied()
            .filter(|m| m.kind() == MetricKind::Timing)
            .collect();
        assert_eq!(TIMING_METRICS.to_vec(), timings);
        let s = run();
        let kept: Vec<Metric> = s.timings.iter().map(|t| t.metric).collect();
        assert_eq!(kept, timings);
    }

    #[test]
    fn run_info_lists_roles_and_steps_with_their_lines() {
        let yaml = "name: tiny
target: { direct: true, domain: 127.0.0.1 }
accounts:
  range: { from: 2000, count: 4 }
roles:
  callee:
    accounts: 2000..2001
    listen: 127.0.0.1:5070
    steps:
      - answer: { ring: 200ms }
      - wait_for: bye
  caller:
    accounts: 2002..2003
    steps:
      - call: { to: \"sip:{peer}@127.0.0.1:5070\", peer: callee }
      - expect: { answered: true }
      - hangup: { after: 1s }
thresholds:
  calls.failed: <= 0%
";
        let scenario =
            crate::scenario::load("tiny.yaml", yaml, &|_| None, &|_| Err("no files".into()))
                .unwrap_or_else(|e| panic!("{e:?}"));
        let info = RunInfo::from_scenario(&scenario);
        assert_eq!(info.scenario, "tiny");
        let roles: Vec<(&str, bool)> = info
            .roles
            .iter()
            .map(|r| (r.name.as_str(), r.places_calls))
            .collect();
        assert_eq!(roles, [("callee", false), ("caller", true)]);
        let steps: Vec<(&str, u32)> = info.roles[1]
            .steps
            .iter()
            .map(|s| (s.kind.as_str(), s.line))
            .collect();
        assert_eq!(steps, [("call", 15), ("expect", 16), ("hangup", 17)]);
        let s = Metrics::new(SystemTime::UNIX_EPOCH, &info).finish(Duration::ZERO, false);
        let checked = s.check(&scenario.thresholds);
        assert_eq!(checked[0].metric().to_string(), "calls.failed");
        assert_eq!(checked[0].actual, None, "no call, no data");
    }

    #[test]
    fn calls_count_the_caller_side_and_roles_count_their_own() {
        let s = run();
        assert_eq!(s.counted_side, Side::Caller);
        assert_eq!(
            s.calls,
            CallCounts {
                started: 100,
                passed: 96,
                failed: 4
            }
        );
        let callee = &s.roles[0];
        assert_eq!(callee.name, "callee");
        assert_eq!(
            callee.calls,
            CallCounts {
                started: 99,
                passed: 97,
                failed: 2
            }
        );
        assert_eq!(s.failures["sip_486"], 2);
        assert_eq!(s.failures["timer_b"], 1);
        assert_eq!(s.failures["tone_missing"], 1);
        assert_eq!(s.failures["signalling"], 2);
        assert_eq!(s.roles[1].failures.get("signalling"), None);
    }

    #[test]
    fn a_call_whose_callee_failed_is_a_failed_call_though_its_caller_passed() {
        let failing_callee = |i: u64| {
            let mut c = callee(i);
            c.failures.push(crate::stats::outcome::Failure {
                step: "expect",
                line: 12,
                col: 9,
                kind: FailureKind::ToneMissing,
                message: "tone 440 Hz not heard".into(),
            });
            c
        };
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        for i in 0..3 {
            m.record_call(&caller(i));
        }
        m.record_call(&callee(0));
        m.record_call(&failing_callee(1));
        // Through a B2BUA the callee's Call-ID is another one: still a failed call.
        let mut other = failing_callee(2);
        other.call_id = "b2bua-leg@pbx".into();
        m.record_call(&other);
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.counted_side, Side::Caller);
        assert_eq!(
            s.calls,
            CallCounts {
                started: 3,
                passed: 1,
                failed: 2
            }
        );
        assert_eq!(s.verdict(&[]), Verdict::Failed);
    }

    #[test]
    fn callee_only_runs_count_the_callee_side() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        m.record_call(&callee(1));
        m.record_call(&callee(2));
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.counted_side, Side::Callee);
        assert_eq!(s.calls.started, 2);
        // Answering times are not INVITE-sent-to-200 times: no caller-side sample.
        assert!(s.timing(Metric::InviteTo200).unwrap().is_empty());
        assert_eq!(s.timing(Metric::CallDuration).unwrap().len(), 2);
    }

    #[test]
    fn timings_are_microsecond_histograms_from_the_caller_side() {
        let s = run();
        let h = s.timing(Metric::InviteTo200).unwrap();
        assert_eq!(h.len(), 97);
        // HdrHistogram reports the lowest value equivalent to the smallest sample, 43 ms.
        assert_eq!(h.min(), h.lowest_equivalent(43_000));
        assert_eq!(h.min(), 42_976);
        let p = s.value(&mref("invite_to_200.p50")).unwrap();
        assert!((p - 91.0).abs() < 0.1, "{p}");
        // call_duration: one per call (the counting side), not one per side.
        assert_eq!(s.timing(Metric::CallDuration).unwrap().len(), 97);
        // tone onsets from both sides: 97 callee + 96 caller results.
        assert_eq!(s.timing(Metric::ToneOnset).unwrap().len(), 97 + 96);
        assert_eq!(s.timing(Metric::RegisterRtt).unwrap().len(), 198);
        // Pacing merges every frame of every stream.
        assert_eq!(
            s.timing(Metric::PacingLateness).unwrap().len(),
            (97 + 97) * 251
        );
        assert_eq!(s.timing(Metric::RtpJitter).unwrap().len(), 97 + 97);
    }

    #[test]
    fn failures_land_on_their_steps_with_one_sample_each() {
        let s = run();
        let caller = &s.roles[1];
        let call = caller.steps.iter().find(|s| s.kind == "call").unwrap();
        assert_eq!((call.line, call.failed), (17, 3));
        assert_eq!(call.failures["sip_486"], 2);
        assert_eq!(call.failures["timer_b"], 1);
        assert_eq!(call.sample.as_ref().unwrap().call_id, "call-0@sipcheck");
        let expect20 = caller.steps.iter().find(|s| s.line == 20).unwrap();
        assert_eq!(expect20.failed, 1);
        let expect18 = caller.steps.iter().find(|s| s.line == 18).unwrap();
        assert_eq!(expect18.failed, 0);
        assert_eq!(caller.steps.len(), 6, "no step invented");
        assert_eq!(s.samples["sip_486"].len(), 2);
        assert_eq!(s.samples["sip_486"][1].ladder.len(), 4);
    }

    #[test]
    fn unknown_steps_and_unlocated_failures_get_their_own_entry() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
        let mut c = caller(1);
        c.failures.push(Failure {
            step: "run",
            line: 0,
            col: 0,
            kind: FailureKind::Interrupted,
            message: "interrupted before the call finished".into(),
        });
        c.failures.push(Failure {
            step: "run",
            line: 0,
            col: 0,
            kind: FailureKind::Other,
            message: "x".into(),
        });
        m.record_call(&c);
        let s = m.finish(Duration::from_secs(1), true);
        let caller = &s.roles[1];
        assert_eq!(caller.steps.len(), 7);
        let run = caller.steps.last().unwrap();
        assert_eq!((run.kind.as_str(), run.line, run.failed), ("run", 0, 1));
        assert_eq!(run.failures.len(), 2);
        assert_eq!(s.calls.failed, 1);
    }

    #[test]
    fn failure_reasons_are_exact_and_leave_out_what_varies_per_call() {
        let cases: [(FailureKind, &str, &str); 9] = [
            (
                FailureKind::SipCode(480),
                "the call ended: rejected: 480 Temporarily Unavailable",
                "sip_480 Temporarily Unavailable",
            ),
            (
                FailureKind::SipCode(503),
                "expected the call to be answered: rejected: 503 Overloaded, retry",
                "sip_503 Overloaded, retry",
            ),
            // A code that the message does not spell: the standard phrase.
            (
                FailureKind::SipCode(481),
                "sip:481@pbx dialog gone",
                "sip_481 Call/Transaction Does Not Exist",
            ),
            (
                FailureKind::ToneMissing,
                "expected tone 1500 Hz not heard within 2.0 s (received level -41.3 dBFS)",
                "tone 1500 Hz not heard",
            ),
            (
                FailureKind::ToneMissing,
                "expected tone 350+440 Hz not heard within 2.0 s (received no audio)",
                "tone 350+440 Hz not heard",
            ),
            (
                FailureKind::DtmfMissing,
                "expected DTMF '1234', received '12'",
                "DTMF '1234' not received",
            ),
            (
                FailureKind::NoMedia,
                "RTP timeout: no media for 3.2 s",
                "no_media: RTP timeout: no media for … s",
            ),
            (
                FailureKind::Timer("Timer B".into()),
                "the call ended: Timer B expired after 32.0 s",
                "timer_b: Timer B expired after … s",
            ),
            (
                FailureKind::Signalling,
                "expected final response 486, got 480",
                "signalling: expected final response 486, got 480",
            ),
        ];
        for (kind, message, reason) in cases {
            assert_eq!(failure_reason(&kind, message), reason, "{message}");
        }
    }

    #[test]
    fn failures_are_grouped_by_reason_most_frequent_first_with_a_bounded_count() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
        let fail = |i: u64, kind: FailureKind, message: String| {
            let mut c = caller(i);
            c.failures.push(Failure {
                step: "call",
                line: 17,
                col: 9,
                kind,
                message,
            });
            c
        };
        m.record_call(&fail(
            1,
            FailureKind::SipCode(486),
            "rejected: 486 Busy Here".into(),
        ));
        for i in 2..5 {
            m.record_call(&fail(
                i,
                FailureKind::SipCode(480),
                "rejected: 480 Temporarily Unavailable".into(),
            ));
        }
        for i in 0..(MAX_REASONS as u64 + 5) {
            m.record_call(&fail(
                10 + i,
                FailureKind::Other,
                format!("'bad{i}' is not a SIP URI"),
            ));
        }
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.reasons[0].reason, "other: other reasons");
        assert_eq!(s.reasons[1].reason, "sip_480 Temporarily Unavailable");
        assert_eq!(s.reasons[1].count, 3);
        assert_eq!(s.reasons[1].first.call_id, "call-2@sipcheck");
        assert_eq!(s.reasons[1].kind, "sip_480");
        let other = s
            .reasons
            .iter()
            .find(|r| r.reason == "other: other reasons")
            .unwrap();
        assert_eq!(
            other.count, 7,
            "{MAX_REASONS} reasons kept, the rest lumped"
        );
        assert_eq!(s.reasons.len(), MAX_REASONS + 1);
        let total: u64 = s.reasons.iter().map(|r| r.count).sum();
        assert_eq!(total, 1 + 3 + MAX_REASONS as u64 + 5);
    }

    #[test]
    fn samples_are_bounded_per_kind() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
        for i in 0..50 {
            let mut c = caller(i);
            c.failures.push(Failure {
                step: "call",
                line: 17,
                col: 9,
                kind: FailureKind::SipCode(503),
                message: "503".into(),
            });
            m.record_call(&c);
        }
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.samples["sip_503"].len(), SAMPLES_PER_KIND);
        assert_eq!(s.failures["sip_503"], 50);
    }

    #[test]
    fn generator_health() {
        let s = run();
        assert_eq!(s.generator.late_starts, 1);
        assert_eq!(s.generator.max_start_lag, Duration::from_millis(25));
        assert_eq!(s.generator.frames_skipped, 2);
        assert_eq!(s.generator.not_started, 1);
    }

    #[test]
    fn registrations() {
        let s = run();
        assert_eq!(s.registrations.ok, 198);
        assert_eq!(s.registrations.failed, 1);
        assert_eq!(
            s.registrations.first_failure.as_ref().unwrap().error,
            "403 Forbidden"
        );
    }

    #[test]
    fn per_call_loss_is_in_ppm_and_long_values_are_not_clamped() {
        let s = run();
        assert_eq!(s.call_loss_ppm.len(), 194);
        assert_eq!(
            s.call_loss_ppm.max(),
            s.call_loss_ppm.highest_equivalent(8_000)
        );
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
        let mut c = caller(1);
        c.duration = Some(Duration::from_secs(3 * 3600));
        c.media = Some(CallMedia {
            packets_expected: 0,
            packets_received: 0,
            ..c.media.take().unwrap()
        });
        m.record_call(&c);
        let s = m.finish(Duration::from_secs(1), false);
        let max = s.value(&mref("call_duration.max")).unwrap();
        assert!((max / 3_600_000.0 - 3.0).abs() < 0.01, "{max}");
        assert!(s.call_loss_ppm.is_empty());
        assert!(s.timing(Metric::RtpJitter).unwrap().is_empty());
    }

    #[test]
    fn stray_rtp_is_summed_over_the_calls_and_kept_out_of_loss() {
        let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &info());
        for (i, stray) in [(1, 0), (2, 120), (3, 7)] {
            let mut c = caller(i);
            c.media = Some(CallMedia {
                stray_packets: stray,
                discontinuities: i,
                ..c.media.take().unwrap()
            });
            m.record_call(&c);
        }
        let s = m.finish(Duration::from_secs(1), false);
        assert_eq!(s.rtp.stray_packets, 127);
        assert_eq!(s.rtp.discontinuities, 6);
        assert_eq!(
            s.rtp.packets_received + s.rtp.packets_lost,
            s.rtp.packets_expected
        );
    }
}
