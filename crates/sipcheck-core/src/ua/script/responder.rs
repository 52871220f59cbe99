//! `sipcheck answer`'s calls as call scripts: the steps its flags mean, and each call's
//! outcome in the responder's words.
//!
//! A responder's call is a callee [`CallScript`] whose steps come from the command line
//! ([`Responder::steps`]): `answer { ring }` or `reject`, then (`--send-dtmf`) a short wait
//! and `dtmf`, then `hangup { after }` (`--duration`) or `wait_for: bye`. What the responder
//! plays and expects is judged over the whole call, from the media report, by the shell
//! (its words are shared with `sipcheck call`); [`CallScript::finish_responder`] joins those
//! with the call's end into the call's failures, in the responder's words.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CallScript, ScriptConfig, WAIT_FOR_MAX};
use crate::media::dtmf::{Digit, DEFAULT_DIGIT_DURATION, DEFAULT_GAP};
use crate::scenario::model::{Expectation, Located, PlayItem, SignatureFrom, Step, WaitEvent};
use crate::stats::outcome::FailureKind;
use crate::ua::call::{ByeFailure, CallEndReason};

/// How long after the answer (the ACK) the responder sends its DTMF digits.
pub const DTMF_AFTER: Duration = Duration::from_millis(500);

/// What the responder does with each call it admits, from its command line. Every wait is
/// bounded: a call waiting for the caller's BYE is hung up after an hour, and fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Responder {
    /// Ring (180) this long before answering or rejecting.
    pub ring: Duration,
    /// Reject every call with this code instead of answering.
    pub reject: Option<u16>,
    /// Send these digits (RFC 4733) [`DTMF_AFTER`] the answer.
    pub send_dtmf: Option<Vec<Digit>>,
    /// Hang up this long after the answer; else wait for the caller's BYE.
    pub hangup_after: Option<Duration>,
    /// Play the call's audio signature (the callee's code of the call the INVITE's
    /// `X-Sipcheck-Signature` names) and expect the caller's within [`SIGNATURE_WITHIN`].
    pub signature: bool,
}

/// How long `--signature` waits for the caller's signature after the answer.
pub const SIGNATURE_WITHIN: Duration = Duration::from_secs(5);

/// Why the responder refused a call before answering it (each a failure of the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_calls` calls were active: 486 Busy Here.
    Busy {
        /// The limit of calls at once.
        max_calls: usize,
    },
    /// Its source held its share of unconfirmed calls: 486.
    SourceLimited {
        /// The INVITE's source.
        source: IpAddr,
        /// The share of unconfirmed calls of one source.
        per_source: usize,
    },
    /// It arrived after Ctrl-C: 480.
    ShuttingDown,
}

impl Refused {
    /// The status the call is refused with.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::Busy { .. } | Self::SourceLimited { .. } => 486,
            Self::ShuttingDown => 480,
        }
    }

    /// The steps of a call refused so: a rejection, at once.
    #[must_use]
    pub fn steps(self) -> Vec<Located<Step>> {
        vec![here(Step::Reject {
            code: self.code(),
            ring: Duration::ZERO,
        })]
    }

    fn message(self) -> String {
        match self {
            Self::Busy { max_calls } => format!("busy: {max_calls} calls already active"),
            Self::SourceLimited { source, per_source } => format!(
                "refused with 486: {source} already held {per_source} unconfirmed call(s) \
                 (no ACK yet)"
            ),
            Self::ShuttingDown => "refused with 480: sipcheck answer was shutting down".into(),
        }
    }
}

impl Responder {
    /// The steps of each admitted call.
    #[must_use]
    pub fn steps(&self) -> Vec<Located<Step>> {
        if let Some(code) = self.reject {
            return vec![here(Step::Reject {
                code,
                ring: self.ring,
            })];
        }
        let mut steps = vec![here(Step::Answer { ring: self.ring })];
        if self.signature {
            steps.push(here(Step::Play(vec![PlayItem::Signature])));
            steps.push(here(Step::Expect(Expectation::Signature {
                from: SignatureFrom::Peer,
                within: SIGNATURE_WITHIN,
            })));
        }
        let mut hangup_after = self.hangup_after;
        if let Some(digits) = &self.send_dtmf {
            // Sent DTMF_AFTER the answer, unless the call is hung up before.
            if hangup_after.is_none_or(|d| d >= DTMF_AFTER) {
                steps.push(here(Step::Wait(DTMF_AFTER)));
                steps.push(here(Step::Dtmf {
                    digits: digits.clone(),
                    duration: DEFAULT_DIGIT_DURATION,
                    gap: DEFAULT_GAP,
                }));
                hangup_after = hangup_after.map(|d| d - DTMF_AFTER);
            }
        }
        steps.push(here(match hangup_after {
            Some(after) => Step::Hangup { after },
            None => Step::WaitFor(WaitEvent::Bye),
        }));
        steps
    }
}

/// A step of no scenario file (line 0).
fn here(value: Step) -> Located<Step> {
    Located {
        value,
        line: 0,
        col: 0,
        record: false,
    }
}

/// A responder's call, judged ([`CallScript::finish_responder`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderOutcome {
    /// The SIP Call-ID.
    pub call_id: String,
    /// The final status we sent.
    pub final_code: Option<u16>,
    /// The final status of our BYE.
    pub bye_code: Option<u16>,
    /// Why the call ended (empty: it did not).
    pub end_reason: String,
    /// Whether the call ended refusing a codec (488).
    pub codec_refused: bool,
    /// Everything that failed, in order: why it was refused, how it ended, the media, the
    /// DTMF sent, the BYE.
    pub failures: Vec<String>,
    /// The audio signature's verdict, when one was judged: `verified`, `no_audio`,
    /// `crossed_audio` (an echo included), `wrong_audio`.
    pub signature: Option<&'static str>,
}

impl CallScript {
    /// A responder's call, received at `now`, run by `steps` ([`Responder::steps`] or
    /// [`Refused::steps`]). Unlike [`CallScript::callee`], its steps wait for the ACK as long
    /// as the call's own timers let them (Timer H, RFC 3261 §17.2.1, ends a call never
    /// ACKed), not a fixed time from the INVITE: a long `--ring` is no failure. Nothing runs
    /// before [`CallScript::start`].
    #[must_use]
    pub fn responder(
        now: Instant,
        cfg: ScriptConfig,
        steps: Arc<Vec<Located<Step>>>,
        call_id: String,
    ) -> Self {
        let mut script = Self::callee(now, cfg, steps, call_id);
        script.answer_wait = WAIT_FOR_MAX;
        script
    }

    /// The call's outcome as the responder reports it: its end judged against its steps
    /// (a rejection the steps asked for, or a normal clearing of an answered call, is no
    /// failure), `refused` (why the responder refused it, before any step of its own),
    /// `offer_refusal` (what the refused offer named), and `media_failures` (the
    /// shell's judgement of the whole call's media report, against what was expected).
    #[must_use]
    pub fn finish_responder(
        mut self,
        refused: Option<Refused>,
        offer_refusal: Option<&str>,
        media_failures: Vec<String>,
    ) -> ResponderOutcome {
        let record = self.record.take();
        let reason = record.as_ref().and_then(|r| r.reason()).cloned();
        let mut failures = media_failures;
        // The step failures the end does not already say: the DTMF the steps sent, and a
        // caller's BYE that never came (the call then hung up by us, its wait over).
        let no_bye = format!("{:?} did not come", WaitEvent::Bye);
        failures.extend(
            self.failures
                .iter()
                .filter(|f| {
                    matches!(
                        f.kind,
                        FailureKind::DtmfMissing
                            | FailureKind::NoAudio
                            | FailureKind::CrossedAudio
                            | FailureKind::WrongAudio
                    ) || (f.kind == FailureKind::Signalling && f.message == no_bye)
                })
                .map(|f| f.message.clone()),
        );
        let expected_reject = refused.is_some()
            || self
                .steps
                .iter()
                .any(|s| matches!(s.value, Step::Reject { .. }));
        match &reason {
            Some(CallEndReason::Declined { .. }) if expected_reject => {}
            Some(r) if r.is_normal_clearing() && !expected_reject => {}
            Some(r) => match offer_refusal {
                Some(why) => failures.insert(0, format!("{r}: {why}")),
                None => failures.insert(0, r.to_string()),
            },
            None => failures.insert(0, "ended without a reason".into()),
        }
        if let Some(failure) = record.as_ref().and_then(|r| r.bye_failure()) {
            failures.push(bye_message(&failure));
        }
        if let Some(refused) = refused {
            failures.insert(0, refused.message());
        }
        let final_code = record.as_ref().and_then(|r| r.final_code);
        let bye_code = record.as_ref().and_then(|r| r.bye_code);
        ResponderOutcome {
            call_id: record.map_or_else(|| std::mem::take(&mut self.call_id), |r| r.call_id),
            final_code,
            bye_code,
            end_reason: reason
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            codec_refused: matches!(
                reason,
                Some(CallEndReason::CodecRefused | CallEndReason::SrtpRefused(_))
            ),
            failures,
            signature: self.signature_verdict,
        }
    }
}

fn bye_message(failure: &ByeFailure) -> String {
    failure.to_string()
}
