//! The agent as `sipcheck answer`'s responder: every incoming call is admitted or refused
//! by the agent ([`Admission`]), each runs a [`CallScript::responder`] (the flags' steps,
//! or a refusal's), and the agent ends the run itself: a bounded drain after Ctrl-C
//! ([`Agent::stop`]), and after `--calls N` a short linger for retransmissions of the last
//! BYE.
//!
//! What the line of each call needs comes out of [`Agent::poll_answer`]: a
//! [`ResponderResult::Call`] with the call's script, to be judged by
//! [`ResponderCall::finish`] with the shell's judgement of its media report, or a
//! [`ResponderResult::Refused`] for an INVITE the endpoint refused before any call began.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::session::MediaReport;
use crate::scenario::model::{Located, Step};
use crate::sdp::{Direction, Negotiated};
use crate::sip::msg::BytesStr;
use crate::stats::outcome::Side;
use crate::ua::admission::{media_before_ack, Admission, Admit, Limits};
use crate::ua::call::{CallId, CallState};
use crate::ua::script::responder::{Refused, ResponderOutcome};
use crate::ua::script::{CallScript, ScriptConfig};

use super::{Agent, CallKey, MediaCommand};
use crate::media::intent::MediaIntent;
use crate::sip::uri::NextHop;

/// What a responder agent does with the calls it receives.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// The steps of each admitted call ([`Responder::steps`](crate::ua::script::responder::Responder::steps)).
    pub steps: Arc<Vec<Located<Step>>>,
    /// Calls at once (`--max-calls`); the admission's limits derive from it
    /// ([`Limits::for_calls`]).
    pub max_calls: usize,
    /// End once this many calls have ended (`--calls`).
    pub calls: Option<u64>,
    /// How long the first Ctrl-C waits for the calls to end before the run ends anyway.
    pub drain: Duration,
    /// How long, at most, the end after [`Self::calls`] waits for the transactions left
    /// (the 200 of the last BYE may have been lost: its retransmissions are answered).
    pub linger: Duration,
}

/// What the responder counted (the run's totals, beside each call's line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponderCounts {
    /// INVITEs received: calls, and INVITEs refused before a call began.
    pub received: u64,
    /// Calls answered (their ACK received).
    pub answered: u64,
    /// Calls refused with 486 because `max_calls` were active.
    pub busy: u64,
    /// Unconfirmed calls (no ACK yet) dropped for newer ones.
    pub unconfirmed_dropped: u64,
    /// INVITEs refused with 486 because their source held its share of unconfirmed calls.
    pub source_limited: u64,
    /// Calls rejected as the steps say (`--reject`).
    pub rejected: u64,
}

/// What comes out of a responder agent, once per INVITE received.
#[derive(Debug)]
pub enum ResponderResult {
    /// A call ended (admitted, refused by the responder, or dropped).
    Call(Box<ResponderCall>),
    /// An INVITE the endpoint refused before any call began (malformed or unacceptable):
    /// never a call, always a failure.
    Refused {
        /// Its number in the run (counted with the calls that ended).
        index: u64,
        /// The status sent.
        code: u16,
        /// Why, in words.
        reason: String,
        /// Its From (empty when absent).
        from: String,
        /// Its Call-ID.
        call_id: String,
    },
}

/// A responder's call that ended, with what its line needs.
#[derive(Debug)]
pub struct ResponderCall {
    /// The call in the agent (the media stream's key).
    pub key: CallKey,
    /// Its number in the run (in the order the calls ended).
    pub index: u64,
    /// The caller (the INVITE's From).
    pub from: BytesStr,
    /// Why the responder refused it before any step of its own.
    pub refused: Option<Refused>,
    /// Why its offer was refused (488), with what it offered.
    pub refusal: Option<String>,
    /// Its script, which judges it ([`Self::finish`]).
    pub script: CallScript,
    /// The media last negotiated, when its media session started.
    pub negotiated: Option<Negotiated>,
    /// The media session's report over the whole call, when one ran.
    pub report: Option<MediaReport>,
}

impl ResponderCall {
    /// The call judged: its end against its steps, with `media_failures` (the media report
    /// judged against what was expected of it, by the shell, in the words of
    /// `sipcheck call`).
    #[must_use]
    pub fn finish(self, media_failures: Vec<String>) -> ResponderOutcome {
        self.script
            .finish_responder(self.refused, self.refusal.as_deref(), media_failures)
    }
}

/// What a responder's call keeps beside its script.
#[derive(Debug)]
pub(super) struct Answering {
    from: BytesStr,
    source: IpAddr,
    refused: Option<Refused>,
    /// RTP is held back until the ACK: the SDP names another address than the INVITE's
    /// source.
    held: bool,
    refusal: Option<String>,
    negotiated: Option<Negotiated>,
    index: u64,
}

/// The agent's responder state.
#[derive(Debug)]
pub(super) struct Responding<D> {
    cfg: ResponderConfig,
    /// Each call's script configuration (no scenario: no role, user or WAV file).
    script: ScriptConfig,
    refuses: Option<u16>,
    admission: Admission<CallId, IpAddr>,
    counts: ResponderCounts,
    /// Calls ended and INVITEs refused, so far.
    ended: u64,
    draining_until: Option<Instant>,
    lingering_until: Option<Instant>,
    done: bool,
    results: VecDeque<ResponderResult>,
    source_ip: fn(&D) -> IpAddr,
}

/// Media held back: received, not sent (before the ACK, RTP goes nowhere the INVITE did
/// not come from).
fn held_back(n: &Negotiated) -> Negotiated {
    let mut held = n.clone();
    held.direction = Direction::from_flags(false, n.direction.receives());
    held
}

impl Agent<SocketAddr> {
    /// Answer every incoming call as a responder (`sipcheck answer`): see the module
    /// [`responder`](self). From `now` (`calls: Some(0)` is over at once).
    pub fn respond(&mut self, now: Instant, cfg: ResponderConfig) {
        let refuses = cfg.steps.iter().find_map(|s| match s.value {
            Step::Reject { code, .. } => Some(code),
            _ => None,
        });
        self.responder = Some(Responding {
            admission: Admission::new(Limits::for_calls(cfg.max_calls)),
            script: ScriptConfig {
                role: String::new(),
                side: Side::Callee,
                user: String::new(),
                account_domain: String::new(),
                peer_user: String::new(),
                domain: String::new(),
                rtp: self.cfg.rtp,
                wavs: self.cfg.wavs.clone(),
                scheduled: None,
                start_lag: Duration::ZERO,
                signature_call: None,
                signature_parties: Vec::new().into(),
            },
            cfg,
            refuses,
            counts: ResponderCounts::default(),
            ended: 0,
            draining_until: None,
            lingering_until: None,
            done: false,
            results: VecDeque::new(),
            source_ip: |d| d.ip(),
        });
        self.responder_check(now);
    }
}

impl<D: Clone + NextHop + PartialEq + std::fmt::Display> Agent<D> {
    /// What the responder counted so far.
    #[must_use]
    pub fn responder_counts(&self) -> ResponderCounts {
        self.responder
            .as_ref()
            .map(|r| r.counts)
            .unwrap_or_default()
    }

    /// The next call of the responder that ended, or INVITE refused.
    pub fn poll_answer(&mut self) -> Option<ResponderResult> {
        self.responder.as_mut()?.results.pop_front()
    }

    /// Whether the responder's run is over: after Ctrl-C, every call ended or the drain
    /// over; after `calls` calls, none left and the last transactions done (or the linger
    /// over).
    #[must_use]
    pub fn responder_done(&self) -> bool {
        self.responder.as_ref().is_some_and(|r| r.done)
    }

    /// Whether the responder is draining (Ctrl-C came).
    #[must_use]
    pub fn draining(&self) -> bool {
        self.responder
            .as_ref()
            .is_some_and(|r| r.draining_until.is_some())
    }

    /// The responder's own deadlines (the drain's end, the linger's end).
    pub(super) fn responder_timeout(&self) -> Option<Instant> {
        let r = self.responder.as_ref().filter(|r| !r.done)?;
        [r.draining_until, r.lingering_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the run is over, now.
    pub(super) fn responder_check(&mut self, now: Instant) {
        let idle = self.calls.is_empty();
        let no_transaction = self.endpoint.transactions().is_empty();
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        if r.done {
            return;
        }
        if let Some(until) = r.draining_until {
            r.done = idle || now >= until;
            return;
        }
        if idle && r.cfg.calls.is_some_and(|n| r.ended >= n) {
            let until = *r.lingering_until.get_or_insert(now + r.cfg.linger);
            r.done = no_transaction || now >= until;
        }
    }

    /// Ctrl-C for a responder: calls still waiting for their ACK are dropped (a BYE could
    /// only follow an ACK that may never come), the others hung up, new INVITEs refused
    /// (480); the run ends once every call has, or after the drain.
    pub(super) fn responder_stop(&mut self, now: Instant) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        if r.draining_until.is_some() {
            return;
        }
        r.draining_until = Some(now + r.cfg.drain);
        let ids: Vec<CallId> = self.calls.values().filter_map(|l| l.call).collect();
        for call in ids {
            if self.endpoint.state(call) == Some(CallState::AwaitingAck) {
                let _ = self.endpoint.abandon(now, call);
            } else {
                let _ = self.endpoint.hangup(now, call);
            }
        }
        self.drive(now);
        self.responder_check(now);
    }

    /// An incoming call: admitted (its steps), or refused (a refusal's steps), each on a
    /// line of its own.
    pub(super) fn responder_incoming(
        &mut self,
        now: Instant,
        call: CallId,
        from: BytesStr,
        source: &D,
        signature_call: Option<u64>,
    ) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        r.counts.received += 1;
        let source = (r.source_ip)(source);
        let admit = if r.draining_until.is_some() {
            None
        } else {
            Some(r.admission.admit(now, call, source))
        };
        let refused = match admit {
            None => Some(Refused::ShuttingDown),
            Some(Admit::Busy) => {
                r.counts.busy += 1;
                Some(Refused::Busy {
                    max_calls: r.cfg.max_calls,
                })
            }
            Some(Admit::SourceLimit) => {
                r.counts.source_limited += 1;
                Some(Refused::SourceLimited {
                    source,
                    per_source: r.admission.limits().per_source,
                })
            }
            Some(Admit::Accept { drop }) => {
                if r.refuses.is_some() {
                    r.counts.rejected += 1;
                }
                if let Some(old) = drop {
                    // The oldest unconfirmed call gives its slot: nothing more is sent to it
                    // (its line says it was dropped).
                    r.counts.unconfirmed_dropped += 1;
                    let _ = self.endpoint.abandon(now, old);
                }
                None
            }
        };
        let Some(r) = self.responder.as_ref() else {
            return;
        };
        let steps = match refused {
            Some(refused) => Arc::new(refused.steps()),
            None => Arc::clone(&r.cfg.steps),
        };
        let config = ScriptConfig {
            signature_call,
            signature_parties: Vec::new().into(),
            ..r.script.clone()
        };
        let script = CallScript::responder(now, config, steps, String::new());
        let key = self.add(script, Some(call), None);
        if let Some(live) = self.calls.get_mut(&key) {
            live.answering = Some(Answering {
                from,
                source,
                refused,
                held: false,
                refusal: None,
                negotiated: None,
                index: 0,
            });
        }
        self.begin(now, key);
    }

    /// The endpoint refused an INVITE before a call began: counted, and out as a result.
    pub(super) fn responder_refused(
        &mut self,
        code: u16,
        reason: String,
        from: String,
        call_id: String,
    ) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        r.counts.received += 1;
        r.ended += 1;
        r.results.push_back(ResponderResult::Refused {
            index: r.ended,
            code,
            reason,
            from,
            call_id,
        });
    }

    /// A responder's call was answered (its ACK came): its slot is confirmed, and media
    /// held back goes where the SDP says.
    pub(super) fn responder_answered(
        &mut self,
        call: CallId,
        key: Option<CallKey>,
        negotiated: &Negotiated,
    ) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        r.admission.confirmed(call);
        let Some(live) = key.and_then(|k| self.calls.get_mut(&k).map(|l| (k, l))) else {
            return;
        };
        let (key, live) = live;
        let Some(a) = live.answering.as_mut() else {
            return;
        };
        r.counts.answered += 1;
        if a.held {
            a.held = false;
            if a.negotiated.is_some() {
                self.media.push_back((
                    key,
                    MediaCommand::Intent(MediaIntent::Follow(Box::new(negotiated.clone()))),
                ));
            }
        }
    }

    /// A responder's call ended: its slot is free, and it takes its number.
    pub(super) fn responder_ended(&mut self, call: CallId, key: Option<CallKey>) {
        let Some(r) = self.responder.as_mut() else {
            return;
        };
        r.admission.ended(call);
        if let Some(a) = key
            .and_then(|k| self.calls.get_mut(&k))
            .and_then(|l| l.answering.as_mut())
        {
            r.ended += 1;
            a.index = r.ended;
        }
    }

    /// Our answer to a responder's call was sent (`held`: the offer's address is not the
    /// INVITE's source), or the offer was refused (`refusal`, in the negotiation's words).
    pub(super) fn responder_accepted(
        &mut self,
        key: CallKey,
        remote: Option<IpAddr>,
        refusal: Option<String>,
    ) {
        let Some(a) = self.calls.get_mut(&key).and_then(|l| l.answering.as_mut()) else {
            return;
        };
        if let Some(remote) = remote {
            a.held = !media_before_ack(remote, a.source);
        }
        if refusal.is_some() {
            a.refusal = refusal;
        }
    }

    /// A media intent of a responder's call, whose stream is open: held back media starts
    /// and follows receive-only; nothing but the start reaches a stream whose session has
    /// not started.
    pub(super) fn responder_media(&mut self, key: CallKey, intent: MediaIntent) {
        let Some(a) = self.calls.get_mut(&key).and_then(|l| l.answering.as_mut()) else {
            return;
        };
        match intent {
            MediaIntent::Start(n) => {
                let start = if a.held { held_back(&n) } else { (*n).clone() };
                a.negotiated = Some(*n);
                self.media.push_back((key, MediaCommand::Start(start)));
            }
            // Only a session that started follows, or carries out anything.
            _ if a.negotiated.is_none() => {}
            MediaIntent::Follow(n) => {
                let follow = if a.held { held_back(&n) } else { (*n).clone() };
                a.negotiated = Some(*n);
                self.media.push_back((
                    key,
                    MediaCommand::Intent(MediaIntent::Follow(Box::new(follow))),
                ));
            }
            intent => self.media.push_back((key, MediaCommand::Intent(intent))),
        }
    }

    /// A responder's call's result, once its media report is in: `None` when handled.
    pub(super) fn responder_finish(
        &mut self,
        key: CallKey,
        answering: Option<Answering>,
        script: CallScript,
        report: Option<MediaReport>,
    ) -> Option<(CallScript, Option<MediaReport>)> {
        let (Some(a), Some(r)) = (answering, self.responder.as_mut()) else {
            return Some((script, report));
        };
        r.results
            .push_back(ResponderResult::Call(Box::new(ResponderCall {
                key,
                index: a.index,
                from: a.from,
                refused: a.refused,
                refusal: a.refusal,
                script,
                negotiated: a.negotiated,
                report,
            })));
        None
    }
}

#[cfg(test)]
mod tests;
