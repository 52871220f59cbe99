//! The record of one call end, as `sipcheck run --calls FILE.jsonl` writes it: one JSON
//! object a line, built from the [`CallResult`] when the call is counted. The line schema is
//! `docs/call-record.schema.json` (identifier [`SCHEMA`]).
//!
//! Nothing here reads a clock: the run's start (wall clock) and the call's end (offset from
//! the run's start) are given by the shell.

use std::time::Duration;

use serde::Serialize;

use super::ladder::{millis, Rung};
use super::metrics::{CallQuality, FailureNote};
use super::outcome::{CallResult, Side};

/// The schema identifier written in every record.
pub const SCHEMA: &str = "sipcheck.call/1";

/// Where a record's call sits in its run, given by the shell.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// The run's identifier (also in the run's JSON summary).
    pub run_id: &'a str,
    /// The run's start, since the Unix epoch (wall clock).
    pub run_start: Duration,
    /// The call end's number within its role, from 1, in the order they are counted.
    pub number: u64,
    /// When the call ended, from the run's start.
    pub ended: Duration,
}

/// One instant of a call: wall clock and offset from the run's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moment {
    /// RFC 3339, UTC, millisecond precision (`2026-12-07T09:21:13.123Z`).
    pub at: String,
    /// Milliseconds from the run's start.
    pub offset_ms: f64,
}

impl Moment {
    fn of(run_start: Duration, offset: Duration) -> Self {
        Self {
            at: rfc3339(run_start + offset),
            offset_ms: millis(offset),
        }
    }
}

/// Expectations checked and how many held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Checked.
    pub checked: u32,
    /// Held.
    pub verified: u32,
}

/// The timings of a call, milliseconds (`None`: did not happen, or does not apply).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timings {
    /// Scheduled start (callers; INVITE received, callees) to the first provisional.
    pub invite_to_first_provisional_ms: Option<f64>,
    /// … to the first 180/183.
    pub invite_to_ringing_ms: Option<f64>,
    /// … to the 200 OK.
    pub invite_to_200_ms: Option<f64>,
    /// Our BYE to its final response.
    pub bye_rtt_ms: Option<f64>,
    /// Answer to the end of the call.
    pub duration_ms: Option<f64>,
    /// How late the INVITE left against its schedule (callers).
    pub start_lag_ms: f64,
    /// Start of each `expect: tone` to its detection, in order.
    pub tone_onsets_ms: Vec<f64>,
}

/// The record of one call end.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The run's identifier.
    pub run_id: String,
    /// The call end's number within its role, from 1.
    pub call: u64,
    /// The role of the user agent.
    pub role: String,
    /// Caller or callee.
    pub side: Side,
    /// The user agent's account (its user name, never its password).
    pub user: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The INVITE sent (callers) or received (callees); `None` when not known.
    pub start: Option<Moment>,
    /// The 200 OK; `None` when the call was not answered.
    pub answer: Option<Moment>,
    /// The call's end.
    pub end: Moment,
    /// The timings.
    pub timings: Timings,
    /// The final status of the INVITE (sent or received).
    pub final_code: Option<u16>,
    /// The final status of our BYE (`None`: no BYE sent, or none answered).
    pub bye_code: Option<u16>,
    /// Why the call ended.
    pub end_reason: String,
    /// Callers: the Request-URIs the INVITE was redirected to (3xx), in order, the last the
    /// one that answered when the call was answered; left out when it was not redirected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// Audio expectations (tones, silence, signature).
    pub audio: Checked,
    /// DTMF expectations.
    pub dtmf: Checked,
    /// What this end received (`None`: no media flowed).
    pub quality: Option<CallQuality>,
    /// `passed` or `failed`.
    pub verdict: &'static str,
    /// Everything that failed; empty when the call passed.
    pub failures: Vec<FailureNote>,
    /// The SIP ladder of a failed call; empty for a passed one.
    pub ladder: Vec<Rung>,
}

impl CallRecord {
    /// The record of `r`.
    #[must_use]
    pub fn of(r: &CallResult, cx: &RecordContext<'_>) -> Self {
        let answer = match (r.invite_to_200, r.duration) {
            (Some(_), Some(d)) => Some(cx.ended.saturating_sub(d)),
            _ => None,
        };
        let start = match (r.side, r.scheduled) {
            (Side::Caller, Some(s)) => Some(s + r.start_lag),
            _ => answer
                .zip(r.invite_to_200)
                .map(|(a, d)| a.saturating_sub(d)),
        };
        let ms = |d: Option<Duration>| d.map(millis);
        Self {
            schema: SCHEMA,
            run_id: cx.run_id.to_owned(),
            call: cx.number,
            role: r.role.clone(),
            side: r.side,
            user: r.user.clone(),
            call_id: r.call_id.clone(),
            start: start.map(|s| Moment::of(cx.run_start, s)),
            answer: answer.map(|a| Moment::of(cx.run_start, a)),
            end: Moment::of(cx.run_start, cx.ended),
            timings: Timings {
                invite_to_first_provisional_ms: ms(r.invite_to_first_provisional),
                invite_to_ringing_ms: ms(r.invite_to_ringing),
                invite_to_200_ms: ms(r.invite_to_200),
                bye_rtt_ms: ms(r.bye_rtt),
                duration_ms: ms(r.duration),
                start_lag_ms: millis(r.start_lag),
                tone_onsets_ms: r.tone_onsets.iter().copied().map(millis).collect(),
            },
            final_code: r.final_code,
            bye_code: r.bye_code,
            end_reason: r.end_reason.clone(),
            redirects: r.redirects.clone(),
            audio: Checked {
                checked: r.audio_checked,
                verified: r.audio_verified,
            },
            dtmf: Checked {
                checked: r.dtmf_checked,
                verified: r.dtmf_verified,
            },
            quality: CallQuality::of(r),
            verdict: if r.passed() { "passed" } else { "failed" },
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
            ladder: if r.passed() {
                Vec::new()
            } else {
                r.ladder.clone()
            },
        }
    }
}

/// `since_epoch` as RFC 3339 in UTC with milliseconds: `2026-12-07T09:21:13.123Z`.
#[must_use]
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::fixture;
    use crate::stats::outcome::{Failure, FailureKind};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        // date -u -d @1796635273 → Mon Dec  7 09:21:13 UTC 2026
        assert_eq!(
            rfc3339(Duration::from_millis(1_796_635_273_123)),
            "2026-12-07T09:21:13.123Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn a_passed_callers_record_places_its_instants_on_the_run() {
        let r = fixture::caller(2);
        let cx = RecordContext {
            run_id: "00000000000000ab",
            run_start: Duration::from_secs(1_796_635_273),
            number: 3,
            ended: ms(6_000),
        };
        let rec = CallRecord::of(&r, &cx);
        assert_eq!(rec.verdict, "passed");
        assert_eq!(rec.call, 3);
        assert_eq!(rec.run_id, "00000000000000ab");
        // Scheduled at 100 ms, sent 0.3 ms late.
        let start = rec.start.expect("a caller's start is its schedule");
        assert_eq!(start.offset_ms, 100.3);
        assert_eq!(start.at, "2026-12-07T09:21:13.100Z");
        // Duration 5002 ms before the end at 6000 ms.
        assert_eq!(rec.answer.expect("answered").offset_ms, 998.0);
        assert_eq!(rec.end.offset_ms, 6_000.0);
        assert_eq!(rec.end.at, "2026-12-07T09:21:19.000Z");
        assert_eq!(rec.timings.invite_to_200_ms, Some(42.0));
        assert_eq!(rec.timings.tone_onsets_ms, vec![62.0]);
        assert_eq!(rec.final_code, Some(200));
        assert!(rec.failures.is_empty());
        assert!(rec.ladder.is_empty());
        assert!(rec.quality.is_some());
    }

    #[test]
    fn a_rejected_callees_record_names_its_failure_and_keeps_its_ladder() {
        let mut r = fixture::callee(1);
        r.invite_to_200 = None;
        r.duration = None;
        r.final_code = Some(486);
        r.media = None;
        r.failures = vec![Failure {
            step: "answer",
            line: 12,
            col: 7,
            kind: FailureKind::SipCode(486),
            message: "rejected with 486".into(),
        }];
        r.ladder = vec![Rung {
            at_ms: 0.0,
            direction: crate::stats::ladder::Direction::Received,
            peer: "127.0.0.1:5060".parse().unwrap(),
            line: "INVITE sip:x SIP/2.0".into(),
            cseq: "1 INVITE".into(),
            retransmission: false,
        }];
        let cx = RecordContext {
            run_id: "r",
            run_start: Duration::ZERO,
            number: 1,
            ended: ms(500),
        };
        let rec = CallRecord::of(&r, &cx);
        assert_eq!(rec.verdict, "failed");
        assert_eq!(
            rec.start, None,
            "a callee's unanswered INVITE has no known time"
        );
        assert_eq!(rec.answer, None);
        assert_eq!(rec.end.offset_ms, 500.0);
        assert_eq!(rec.failures[0].kind, "sip_486");
        assert_eq!((rec.failures[0].line, rec.failures[0].col), (12, 7));
        assert_eq!(rec.ladder.len(), 1);
        assert_eq!(rec.quality, None);
    }
}
