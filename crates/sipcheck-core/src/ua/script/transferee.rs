//! The transferee's side of a blind transfer (`expect: transferred`; RFC 3515 §2.4, RFC
//! 5589 §6).
//!
//! The endpoint answers the far end's REFER 202 and notifies `SIP/2.0 100 Trying`; the
//! script keeps the referral until an `expect: transferred` step takes it (a REFER that no
//! step is waiting for, or that comes while a transfer is under way, is notified
//! `SIP/2.0 603 Declined` at once). The step places a new call to the Refer-To URI, with the
//! REFER's Referred-By (RFC 3892) and the Refer-To's Replaces (RFC 3891), offering the
//! call's own media (the same RTP socket). The final status of that call is notified to the
//! transferor, terminating the subscription. Once the new call is answered it is the
//! script's call: the steps after the expectation play and listen on it, and the original
//! call ends with the transferor's BYE, or ours [`ORIGINAL_BYE_WAIT`] later.

use std::time::{Duration, Instant};

use super::{CallScript, CommandError, Phase, ScriptCommand, Then, Until, ANSWER_WAIT};
use crate::media::intent::MediaIntent;
use crate::scenario::model::{Expectation, Step};
use crate::stats::outcome::{Failure, FailureKind};
use crate::ua::call::{split_refer_to, CallEndReason, CallEvent, CallId, CallRecord};

/// How long the transferor has to end the original call once the new call is answered
/// and notified (RFC 5589 §6: it sends BYE on the final NOTIFY); after that the transferee
/// sends BYE itself.
pub const ORIGINAL_BYE_WAIT: Duration = Duration::from_secs(2);

/// A REFER accepted, not yet followed.
#[derive(Debug, Clone)]
pub(super) struct Referral {
    call: CallId,
    refer_to: String,
    referred_by: Option<String>,
}

/// The call to a transfer's target, placed and not yet judged.
#[derive(Debug, Clone)]
pub(super) struct Following {
    /// The call the REFER came in (its NOTIFYs go there).
    referrer: CallId,
    target: String,
    /// Answered, or refused with this status and what to say of it.
    pub(super) outcome: Option<Result<(), (u16, String)>>,
}

/// What the script knows of the far end's transfers.
#[derive(Debug, Default)]
pub(super) struct Transferee {
    pub(super) referral: Option<Referral>,
    pub(super) following: Option<Following>,
    /// The original call once the new one is answered, while it is up; our BYE is due at
    /// the instant (`None` once sent).
    pub(super) original: Option<(CallId, Option<Instant>)>,
    /// The original call's end, once seen after the transfer began.
    pub(super) original_record: Option<CallRecord>,
    /// A transfer's new call was answered: the script's call is one we placed.
    pub(super) moved: bool,
    /// The original call as it was when the new one was answered (its set-up times).
    pub(super) first_leg: Option<CallRecord>,
    /// The new call negotiated another codec than the call's stream runs: what to say.
    codec_changed: Option<String>,
}

/// The status to notify for a new call that ended unanswered, and how to name it.
pub(super) fn refusal(record: &CallRecord) -> (u16, String, String) {
    let Some(reason) = record.reason() else {
        return (500, "Server Internal Error".into(), "it ended".into());
    };
    let (code, phrase) = match reason {
        CallEndReason::Rejected { code, reason }
        | CallEndReason::Redirected { code, reason, .. } => (*code, reason.clone()),
        CallEndReason::AuthRejected { code } => (*code, "Unauthorized".into()),
        // RFC 3261 §8.1.3.1: a transaction timeout is treated as 408.
        CallEndReason::Timeout { .. } => (408, "Request Timeout".into()),
        CallEndReason::TransportError { .. } => (503, "Service Unavailable".into()),
        _ => (500, "Server Internal Error".into()),
    };
    (code, phrase, reason.to_string())
}

impl CallScript {
    /// The far end of `call` REFERred us (answered 202 by the endpoint): kept for an
    /// `expect: transferred` step, else declined at once.
    pub(super) fn on_referred(
        &mut self,
        call: CallId,
        refer_to: String,
        referred_by: Option<String>,
    ) {
        let t = &self.transferee;
        if t.referral.is_none() && t.following.is_none() && self.transfer_ahead() {
            self.transferee.referral = Some(Referral {
                call,
                refer_to,
                referred_by,
            });
        } else {
            self.notify(call, 603, "Declined");
        }
    }

    /// Whether the step under way, or one still to come, is `expect: transferred`.
    fn transfer_ahead(&self) -> bool {
        let from = self.current.map_or(self.next, |c| c.index);
        self.steps.get(from..).is_some_and(|rest| {
            rest.iter()
                .any(|s| matches!(s.value, Step::Expect(Expectation::Transferred { .. })))
        })
    }

    fn notify(&mut self, call: CallId, code: u16, reason: &str) {
        self.commands.push_back(ScriptCommand::NotifyTransfer {
            call,
            code,
            reason: reason.to_owned(),
        });
    }

    /// `expect: transferred`, the call answered: wait for the REFER.
    pub(super) fn await_referral(&mut self, now: Instant, within: Duration) -> Option<bool> {
        self.wait(now, now + within, Until::Referred, Then::Referred(within))
    }

    /// The wait for the REFER is over: follow it, or fail.
    pub(super) fn referral_over(&mut self, within: Duration) -> Option<bool> {
        let Some(referral) = self.transferee.referral.take() else {
            if self.interrupted {
                return Some(false);
            }
            if self.ended() {
                return Some(self.unexpected_end());
            }
            self.fail(
                FailureKind::NotTransferred,
                format!(
                    "no REFER within {:.0} s: the far end did not transfer the call",
                    within.as_secs_f64()
                ),
            );
            return Some(false);
        };
        // The URI without its headers; a Replaces among them (attended transfer, RFC 5589
        // §7) is copied into the new INVITE, unescaped (RFC 3891 §6).
        let (target, replaces) = split_refer_to(&referral.refer_to);
        let Some(local) = self.local.clone() else {
            self.notify(referral.call, 500, "Server Internal Error");
            self.fail(
                FailureKind::Other,
                "the call has no media of ours to offer the transfer target",
            );
            return Some(false);
        };
        self.commands.push_back(ScriptCommand::Follow {
            target: target.clone(),
            referred_by: referral.referred_by,
            replaces,
            local: Box::new(local),
        });
        self.transferee.following = Some(Following {
            referrer: referral.call,
            target,
            outcome: None,
        });
        self.phase = Phase::Reply(Then::Following);
        None
    }

    /// The reply to [`ScriptCommand::Follow`]: the new call was placed, or why not.
    pub fn handle_followed(&mut self, now: Instant, placed: Result<(), CommandError>) {
        if !matches!(self.phase, Phase::Reply(Then::Following)) {
            return;
        }
        self.phase = Phase::Step;
        match placed {
            Ok(()) => {
                self.wait(now, now + ANSWER_WAIT, Until::Followed, Then::Followed);
            }
            Err(e) => {
                let target = match self.transferee.following.take() {
                    Some(f) => {
                        self.notify(f.referrer, 503, "Service Unavailable");
                        f.target
                    }
                    None => String::new(),
                };
                let (kind, why) = match e {
                    CommandError::TransportGone => (
                        FailureKind::Transport,
                        "the role's transport is gone".into(),
                    ),
                    CommandError::Unresolved => (
                        FailureKind::Other,
                        "its host has no address (a Refer-To by name is called through the \
                         target's server only)"
                            .into(),
                    ),
                    CommandError::Refused(e) | CommandError::NoRtpSocket(e) => {
                        (FailureKind::Other, e)
                    }
                    CommandError::SrtpRefused(e) => (FailureKind::SrtpRefused, e),
                };
                self.fail(
                    kind,
                    format!("cannot call the transfer target {target}: {why}"),
                );
                self.step_done(now, false);
            }
        }
        self.advance(now);
    }

    /// An event of the transfer's new call before its answer (its agent forwards them, with
    /// the original call's record as it stands); its answer or end is notified to the
    /// transferor.
    pub fn handle_transfer_event<D>(
        &mut self,
        now: Instant,
        event: CallEvent<D>,
        original: Option<&CallRecord>,
    ) {
        let pending = self
            .transferee
            .following
            .as_ref()
            .filter(|f| f.outcome.is_none())
            .map(|f| f.referrer);
        if let Some(referrer) = pending {
            match event {
                CallEvent::Answered { negotiated, .. } => {
                    self.notify(referrer, 200, "OK");
                    self.transferee.moved = true;
                    self.transferee.first_leg = self
                        .transferee
                        .original_record
                        .clone()
                        .or_else(|| original.cloned());
                    if let Some(f) = &mut self.transferee.following {
                        f.outcome = Some(Ok(()));
                    }
                    // The new call is the script's from now on: its media, on our socket.
                    // The stream is moved, not restarted: it keeps its codec.
                    if let Some(m) = &self.media {
                        if (m.codec, m.payload_type) != (negotiated.codec, negotiated.payload_type)
                        {
                            self.transferee.codec_changed = Some(format!(
                                "the transfer target answered with {} (payload type {}), the \
                                 call's media is {} (payload type {}): the stream keeps its codec",
                                negotiated.codec, negotiated.payload_type, m.codec, m.payload_type
                            ));
                        }
                    }
                    if self.media.is_some() {
                        self.media_intent(MediaIntent::Follow(Box::new(negotiated.clone())));
                        self.media = Some(negotiated);
                    } else {
                        self.start_media(negotiated);
                    }
                    self.peer_held = false;
                    self.peer_offer = None;
                    if self.transferee.original_record.is_none() {
                        self.transferee.original = Some((referrer, Some(now + ORIGINAL_BYE_WAIT)));
                    }
                }
                CallEvent::Ended { record, .. } => {
                    let (code, phrase, why) = refusal(&record);
                    self.notify(referrer, code, &phrase);
                    if let Some(f) = &mut self.transferee.following {
                        f.outcome = Some(Err((code, why)));
                    }
                    // The original call is the script's again (ended, if the transferor
                    // already hung up).
                    if let Some(r) = self.transferee.original_record.take() {
                        self.record = Some(r);
                    }
                }
                _ => {}
            }
        }
        self.advance(now);
    }

    /// An event of the original call after the transfer's new call was answered.
    pub fn handle_original_event<D>(&mut self, now: Instant, event: CallEvent<D>) {
        match event {
            CallEvent::Ended { record, .. } => {
                self.transferee.original = None;
                self.transferee.original_record = Some(*record);
            }
            CallEvent::Referred { call, .. } => self.notify(call, 603, "Declined"),
            _ => {}
        }
        self.advance(now);
    }

    /// Ctrl-C while the transfer's new call is not yet answered: it is cancelled and the
    /// transferor told (`487 Request Terminated`) before the original call is hung up.
    pub(super) fn abandon_transfer(&mut self) {
        let Some(f) = self.transferee.following.as_mut() else {
            return;
        };
        if f.outcome.is_some() {
            return;
        }
        f.outcome = Some(Err((487, "interrupted".into())));
        let referrer = f.referrer;
        self.commands.push_back(ScriptCommand::CancelFollow);
        self.notify(referrer, 487, "Request Terminated");
    }

    /// The wait for the new call's answer is over.
    pub(super) fn followed(&mut self) -> Option<bool> {
        let f = self.transferee.following.take()?;
        if self.interrupted {
            // Ctrl-C: the call is counted interrupted, whatever became of the transfer.
            if f.outcome.is_none() {
                self.commands.push_back(ScriptCommand::CancelFollow);
                self.notify(f.referrer, 487, "Request Terminated");
            }
            if let Some(r) = self.transferee.original_record.take() {
                self.record = Some(r);
            }
            return Some(false);
        }
        match f.outcome {
            Some(Ok(())) => match self.transferee.codec_changed.take() {
                None => Some(true),
                Some(why) => {
                    self.fail(FailureKind::CodecRefused, why);
                    Some(false)
                }
            },
            Some(Err((code, why))) => {
                self.fail(
                    FailureKind::TransferTargetFailed(code),
                    format!(
                        "the call to the transfer target {} failed: {why} (notified to the \
                         transferor as SIP/2.0 {code})",
                        f.target
                    ),
                );
                Some(false)
            }
            None => {
                self.commands.push_back(ScriptCommand::CancelFollow);
                if let Some(r) = self.transferee.original_record.take() {
                    self.record = Some(r);
                }
                self.notify(f.referrer, 408, "Request Timeout");
                self.fail(
                    FailureKind::TransferTargetFailed(408),
                    format!(
                        "the transfer target {} did not answer within {:.0} s (notified to the \
                         transferor as SIP/2.0 408)",
                        f.target,
                        ANSWER_WAIT.as_secs_f64()
                    ),
                );
                Some(false)
            }
        }
    }

    /// The transferor had its time to end the original call: we end it (RFC 5589 §6).
    pub(super) fn original_bye_due(&mut self, now: Instant) {
        if let Some((call, Some(at))) = self.transferee.original {
            if at <= now {
                self.transferee.original = Some((call, None));
                self.commands.push_back(ScriptCommand::HangupOriginal(call));
            }
        }
    }

    /// Our BYE on the original call of a transfer failed.
    pub(super) fn original_bye_failure(&self) -> Option<Failure> {
        let failure = self.transferee.original_record.as_ref()?.bye_failure()?;
        Some(Failure {
            step: "call",
            line: 0,
            col: 0,
            kind: FailureKind::ByeFailed(failure.short()),
            message: format!("the original call, after its transfer: {failure}"),
        })
    }
}
