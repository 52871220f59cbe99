//! Attended transfer (RFC 5589 §7, RFC 3891 Replaces), both ends the transferee does not
//! play.
//!
//! The transferor (`transfer: { attended: true, consult: ROLE }`) places a consultation
//! call to the target, offering the call's own media (the same RTP socket: the stream moves
//! to the consultation once it is answered). Once the target answers, it REFERs the
//! transferee to the target with `Refer-To: <target?Replaces=...>` naming the consultation
//! dialog, follows the NOTIFYs like a blind transfer, and on `SIP/2.0 2xx` ends both its
//! legs.
//!
//! The target (`expect: replaced`) holds the consultation call; the INVITE with Replaces
//! the agent matched to it is answered with the call's media and takes its place (the
//! replaced call is ended with BYE by the agent), and the steps after the expectation play
//! and listen on the new call.

use std::time::{Duration, Instant};

use super::transferee::refusal;
use super::{CallScript, CommandError, Phase, ScriptCommand, Then, Until, WaitEnd, ANSWER_WAIT};
use crate::media::intent::{MediaEvent, MediaIntent};
use crate::media::tone::ToneQuery;
use crate::stats::outcome::FailureKind;
use crate::ua::call::{refer_to_replacing, CallEvent, CallRecord, Replaces};

/// The lowest signal-to-noise ratio of a consultation's tone (`hear`), as `expect: tone`'s
/// default.
const HEAR_MIN_SNR_DB: f64 = 10.0;

/// How long a consultation's tone must last, as `expect: tone`'s default.
const HEAR_MIN_DURATION: Duration = Duration::from_millis(200);

/// The consultation call of an attended transfer.
#[derive(Debug, Clone)]
pub(super) struct Consultation {
    /// Its Request-URI, the Refer-To's URI.
    target: String,
    /// The transfer step's `within`.
    within: Duration,
    /// A tone (Hz) to hear on the consultation before the REFER.
    hear: Option<f64>,
    /// Answered (the dialog to name in Replaces), or refused with this status and what to
    /// say of it.
    pub(super) outcome: Option<Result<Replaces, (u16, String)>>,
}

/// What the script knows of attended transfers.
#[derive(Debug, Default)]
pub(super) struct Attended {
    /// Ours (the transferor's), under way.
    pub(super) consult: Option<Consultation>,
    /// The target's: an INVITE with Replaces was accepted, its ACK is awaited.
    pub(super) replacing: bool,
    /// The target's: the call was replaced (the new call is answered).
    pub(super) replaced: bool,
}

impl CallScript {
    /// `transfer: { attended: true }`, the call answered: place the consultation call.
    pub(super) fn consult(
        &mut self,
        target: String,
        within: Duration,
        hear: Option<f64>,
    ) -> Option<bool> {
        let Some(local) = self.local.clone() else {
            self.fail(
                FailureKind::Other,
                "the call has no media of ours to offer the consultation call",
            );
            return Some(false);
        };
        self.attended.consult = Some(Consultation {
            target: target.clone(),
            within,
            hear,
            outcome: None,
        });
        self.commands.push_back(ScriptCommand::Consult {
            target,
            local: Box::new(local),
        });
        self.phase = Phase::Reply(Then::Consulting);
        None
    }

    /// The reply to [`ScriptCommand::Consult`]: the consultation call was placed (with its
    /// audio-signature number, when the role's INVITEs carry one), or why not.
    pub fn handle_consult_placed(
        &mut self,
        now: Instant,
        placed: Result<Option<u64>, CommandError>,
    ) {
        if !matches!(self.phase, Phase::Reply(Then::Consulting)) {
            return;
        }
        self.phase = Phase::Step;
        match placed {
            Ok(signature_call) => {
                // The consultation is a call of its own: its own signature number.
                if signature_call.is_some() {
                    self.cfg.signature_call = signature_call;
                }
                self.wait(now, now + ANSWER_WAIT, Until::Consulted, Then::Consulted);
            }
            Err(e) => {
                let target = self
                    .attended
                    .consult
                    .take()
                    .map(|c| c.target)
                    .unwrap_or_default();
                let why = match e {
                    CommandError::TransportGone => "the role's transport is gone".to_owned(),
                    CommandError::Unresolved => {
                        "its host has no address (a target by name is called through the role's \
                         server only)"
                            .to_owned()
                    }
                    CommandError::Refused(e)
                    | CommandError::NoRtpSocket(e)
                    | CommandError::SrtpRefused(e) => e,
                };
                self.fail(
                    FailureKind::Signalling,
                    format!("cannot place the consultation call to {target}: {why}"),
                );
                self.step_done(now, false);
            }
        }
        self.advance(now);
    }

    /// An event of the consultation call (its agent forwards them with the Replaces naming
    /// its dialog once answered).
    pub fn handle_consult_event<D>(
        &mut self,
        now: Instant,
        event: CallEvent<D>,
        replaces: Option<Replaces>,
    ) {
        let pending = self
            .attended
            .consult
            .as_ref()
            .is_some_and(|c| c.outcome.is_none());
        if pending {
            match event {
                CallEvent::Answered { negotiated, .. } => {
                    let outcome = replaces.ok_or((
                        500,
                        "answered without a To tag: no dialog to name in Replaces".to_owned(),
                    ));
                    if let Some(c) = &mut self.attended.consult {
                        c.outcome = Some(outcome);
                    }
                    // We talk to the target now: our stream goes to its call.
                    if self.media.is_some() {
                        self.media_intent(MediaIntent::Follow(Box::new(negotiated.clone())));
                        self.media = Some(negotiated);
                    } else {
                        self.start_media(negotiated);
                    }
                }
                CallEvent::Ended { record, .. } => {
                    let (code, _, why) = refusal(&record);
                    if let Some(c) = &mut self.attended.consult {
                        c.outcome = Some(Err((code, why)));
                    }
                }
                _ => {}
            }
        }
        self.advance(now);
    }

    /// The wait for the consultation call's answer is over: REFER with Replaces, or fail.
    pub(super) fn consulted(&mut self, now: Instant) -> Option<bool> {
        let c = self.attended.consult.as_ref()?;
        let (target, within) = (c.target.clone(), c.within);
        match c.outcome.clone() {
            Some(Ok(replaces)) => match c.hear {
                None => {
                    let refer_to = refer_to_replacing(&target, &replaces);
                    self.refer(now, refer_to, within)
                }
                Some(hz) => {
                    // The consultation's audio first, as `expect: tone` would hear it.
                    let Ok(query) = ToneQuery::single(hz) else {
                        return Some(true);
                    };
                    let query = query
                        .min_snr_db(HEAR_MIN_SNR_DB)
                        .min_duration(HEAR_MIN_DURATION);
                    self.audio_checked += 1;
                    let watch = self.new_watch();
                    self.media_intent(MediaIntent::WatchTone { watch, query });
                    self.wait_watch(
                        now,
                        now + within,
                        watch,
                        Then::ConsultHeard(format!("{hz}")),
                    )
                }
            },
            Some(Err((code, why))) => {
                self.fail(
                    FailureKind::ConsultFailed(code),
                    format!("the consultation call to {target} failed: {why}"),
                );
                Some(false)
            }
            None => {
                self.commands.push_back(ScriptCommand::HangupConsult);
                if self.interrupted {
                    return Some(false);
                }
                if self.ended() {
                    return Some(self.unexpected_end());
                }
                self.fail(
                    FailureKind::ConsultFailed(408),
                    format!(
                        "the consultation call to {target} was not answered within {:.0} s",
                        ANSWER_WAIT.as_secs_f64()
                    ),
                );
                Some(false)
            }
        }
    }

    /// The wait for the consultation's tone is over: REFER with Replaces, or fail.
    pub(super) fn consult_heard(
        &mut self,
        now: Instant,
        watch: Option<u32>,
        end: &WaitEnd,
        label: &str,
    ) -> Option<bool> {
        let (target, within, replaces) = match &self.attended.consult {
            Some(Consultation {
                target,
                within,
                outcome: Some(Ok(replaces)),
                ..
            }) => (target.clone(), *within, replaces.clone()),
            _ => return Some(false),
        };
        if let Some(MediaEvent::ToneHeard { onset, .. }) = end.fired {
            self.audio_verified += 1;
            self.tone_onsets.push(onset);
            let refer_to = refer_to_replacing(&target, &replaces);
            return self.refer(now, refer_to, within);
        }
        self.unwatch(watch);
        if self.interrupted {
            return Some(false);
        }
        if self.ended() {
            return Some(self.unexpected_end());
        }
        self.fail(
            FailureKind::ToneMissing,
            format!(
                "the consultation call to {target}: expected tone {label} Hz not heard within \
                 {:.1} s (no REFER sent)",
                within.as_secs_f64()
            ),
        );
        Some(false)
    }

    /// The transfer succeeded: the consultation call is ended too (the target usually ended
    /// it already, replacing it).
    pub(super) fn end_consultation(&mut self) {
        if self.attended.consult.take().is_some() {
            self.commands.push_back(ScriptCommand::HangupConsult);
        }
    }

    /// The target's side: an INVITE with Replaces naming this call was answered (its ACK
    /// makes it the script's call); `signature_call` is its number for audio signatures,
    /// `replaced` the replaced call as it stood.
    pub fn handle_replacing(
        &mut self,
        now: Instant,
        signature_call: Option<u64>,
        replaced: Option<CallRecord>,
    ) {
        self.attended.replacing = true;
        // The new caller plays its signature with its own call's number.
        if signature_call.is_some() {
            self.cfg.signature_call = signature_call;
        }
        if self.transferee.first_leg.is_none() {
            self.transferee.first_leg = replaced;
        }
        self.advance(now);
    }

    /// The replacing call is answered (its ACK came): the stream follows it.
    pub(super) fn replaced_answered(&mut self, negotiated: crate::sdp::Negotiated) {
        self.attended.replacing = false;
        self.attended.replaced = true;
        if self.media.is_some() {
            self.media_intent(MediaIntent::Follow(Box::new(negotiated.clone())));
            self.media = Some(negotiated);
        } else {
            self.start_media(negotiated);
        }
        self.peer_held = false;
        self.peer_offer = None;
    }

    /// `expect: replaced`, the call answered: wait for the INVITE with Replaces.
    pub(super) fn await_replaced(&mut self, now: Instant, within: Duration) -> Option<bool> {
        self.wait(now, now + within, Until::Replaced, Then::Replaced(within))
    }

    /// The wait for the replacement is over.
    pub(super) fn replaced_over(&mut self, within: Duration) -> Option<bool> {
        if self.attended.replaced {
            return Some(true);
        }
        if self.interrupted {
            return Some(false);
        }
        if self.ended() {
            return Some(self.unexpected_end());
        }
        self.fail(
            FailureKind::NotReplaced,
            format!(
                "no INVITE with Replaces took over the call within {:.0} s: the attended \
                 transfer did not reach us",
                within.as_secs_f64()
            ),
        );
        Some(false)
    }
}
