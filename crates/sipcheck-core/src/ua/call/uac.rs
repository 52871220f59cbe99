//! The UAC side of calls: responses to our INVITE, CANCEL, BYE and re-INVITE, their
//! timeouts, and 2xx that arrive after their transaction ended (re-ACK, further forks).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dialog::{header_tag, record_route, Dialog};
use super::redirect::{contacts_by_q, Next};
use super::session_timer::{Refresher, SessionExpires};
use super::{
    ack_from_2xx, answer_challenge, call_mut, call_ref, sdp_body, CallDirection, CallEndReason,
    CallEvent, CallId, CallRecord, CallState, CancelState, Endpoint, GlareRetry, Role,
    MAX_CHALLENGES, MAX_GLARE_RETRIES, REFRESH_RETRY,
};
use crate::sdp::{answer, negotiated_from_answer, Negotiated, NegotiationError};
use crate::sip::auth::ChallengeKind;
use crate::sip::msg::{Message, Name};
use crate::sip::transaction::{Timer, TxId};
use crate::sip::uri::NextHop;

impl<D: Clone + NextHop> Endpoint<D> {
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        id: CallId,
        role: Role,
        tx: TxId,
        message: Message,
    ) {
        match role {
            Role::Invite => self.on_invite_response(now, id, tx, message),
            Role::Bye => self.on_bye_response(now, id, tx, &message),
            Role::Reinvite => self.on_reinvite_response(now, id, tx, &message),
            Role::Cancel => self.on_cancel_response(id, &message),
            Role::Refer => self.on_refer_response(id, tx, &message),
            Role::IncomingInvite | Role::Notify => {}
        }
    }

    /// The CANCEL's final response, recorded: a refusal fails the cancellation however the
    /// INVITE ends (unless a 2xx crossed the CANCEL); the INVITE's 487 or the `64·T1` guard
    /// still ends the call.
    fn on_cancel_response(&mut self, id: CallId, message: &Message) {
        let Some(code) = message.status().filter(|&c| c >= 200) else {
            return;
        };
        if let Some(c) = call_mut(&mut self.slots, id) {
            c.record.cancel_code = Some(code);
        }
    }

    fn on_invite_response(&mut self, now: Instant, id: CallId, tx: TxId, message: Message) {
        let Some(code) = message.status() else {
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        if c.invite_tx != Some(tx) {
            return;
        }
        match code {
            100..=199 => {
                CallRecord::set_once(&mut c.record.first_provisional, now);
                if code == 180 || code == 183 {
                    CallRecord::set_once(&mut c.record.first_ringing, now);
                }
                if c.state == CallState::Calling {
                    c.state = CallState::Proceeding;
                }
                self.events.push_back(CallEvent::Progress {
                    call: id,
                    code,
                    at: now,
                });
                if c.early.is_none() && code > 100 {
                    if let (Some(offer), Ok(Some(answer))) = (&c.offer_sent, sdp_body(&message)) {
                        if let Ok(negotiated) = negotiated_from_answer(offer, &answer) {
                            c.early = Some((answer, negotiated.clone()));
                            self.events.push_back(CallEvent::EarlyMedia {
                                call: id,
                                negotiated,
                            });
                        }
                    }
                }
                if c.cancel == CancelState::Pending {
                    self.send_cancel(now, id);
                }
            }
            200..=299 => self.on_invite_2xx(now, id, &message),
            _ => self.on_invite_failure(now, id, &message, code),
        }
    }

    fn on_invite_2xx(&mut self, now: Instant, id: CallId, message: &Message) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let code = message.status().unwrap_or(200);
        c.invite_tx = None;
        c.cancel_deadline = None;
        c.record.answer = Some(now);
        c.record.final_code = Some(code);
        if let Some(auth) = c.auth.as_mut() {
            auth.on_success();
        }
        // RFC 3261 §12.1.2: the dialog as the 2xx sets it up.
        c.dialog.remote_tag = header_tag(message, &Name::TO).map(Box::from);
        if let Some(to) = message.header(&Name::TO) {
            c.dialog.remote_header = to.to_string();
        }
        if let Some(target) = message.first_contact_uri() {
            c.dialog.remote_target = target.to_string();
        }
        c.dialog.route_set = record_route(message, true);
        c.update_hop(&mut self.hops);
        // RFC 4028 §7.2: the 2xx says whether there is a session timer and who refreshes.
        if let Some(timer) = SessionExpires::of(message) {
            c.session
                .set(now, timer.delta, timer.refresher == Some(Refresher::Uac));
        }

        // Media: the answer to our offer, or the far end's (delayed) offer to answer in the
        // ACK.
        let mut ack_body = None;
        let media: Result<Negotiated, CallEndReason> =
            match (c.offer_sent.take(), sdp_body(message)) {
                (Some(offer), Ok(Some(answer))) => match negotiated_from_answer(&offer, &answer) {
                    Ok(negotiated) => {
                        c.local_sdp = Some(offer);
                        c.remote_sdp = Some(answer);
                        Ok(negotiated)
                    }
                    Err(error) => Err(CallEndReason::MediaFailed(error)),
                },
                (Some(offer), Ok(None)) => match c.early.take() {
                    Some((answer, negotiated)) => {
                        c.local_sdp = Some(offer);
                        c.remote_sdp = Some(answer);
                        Ok(negotiated)
                    }
                    None => Err(CallEndReason::ProtocolError {
                        detail: format!("the {code} has no SDP answer"),
                    }),
                },
                (None, Ok(Some(offer))) => {
                    let local = c.local_media.as_ref().map(|m| answer(&offer, m));
                    match local {
                        Some(Ok((sdp, negotiated))) => {
                            ack_body = Some(sdp.to_bytes());
                            c.local_sdp = Some(sdp);
                            c.remote_sdp = Some(offer);
                            Ok(negotiated)
                        }
                        Some(Err(error)) => Err(CallEndReason::MediaFailed(error)),
                        None => Err(CallEndReason::MediaFailed(NegotiationError::NoAudioStream)),
                    }
                }
                (None, Ok(None)) => Err(CallEndReason::ProtocolError {
                    detail: format!("the {code} to an offer-less INVITE has no SDP offer"),
                }),
                (_, Err(status)) => Err(CallEndReason::ProtocolError {
                    detail: format!("the body of the {code} is unusable ({status})"),
                }),
            };
        let cancelled = c.cancel != CancelState::None;
        let cseq = c.invite_cseq;
        let ack = self.send_ack(id, cseq, ack_body.as_deref(), true);
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        c.ack = Some(ack);
        c.record.ack = Some(now);
        c.state = CallState::Confirmed;
        if cancelled {
            c.record.answered_before_cancel = true;
            c.pending_reason = Some(CallEndReason::Cancelled);
            if let Ok(negotiated) = media {
                c.negotiated = Some(negotiated);
            }
            self.send_bye(now, id);
            return;
        }
        match media {
            Ok(negotiated) => {
                c.negotiated = Some(negotiated.clone());
                self.events.push_back(CallEvent::Answered {
                    call: id,
                    negotiated,
                });
                self.reschedule(id);
            }
            Err(reason) => {
                c.pending_reason = Some(reason);
                self.send_bye(now, id);
            }
        }
    }

    fn on_invite_failure(&mut self, now: Instant, id: CallId, message: &Message, code: u16) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        c.invite_tx = None;
        c.cancel_deadline = None;
        c.record.final_code = Some(code);
        if (300..400).contains(&code) && c.cancel == CancelState::None {
            // RFC 3261 §8.1.3.4: recurse on the Contacts, or end the call naming them.
            let targets = contacts_by_q(message);
            let reason = match c.redirects.on_3xx(code, targets.clone(), c.transport) {
                Next::Follow(target) => {
                    self.redirect_to(now, id, code, target);
                    return;
                }
                Next::Stop(why) => CallEndReason::Redirected {
                    code,
                    reason: message.reason().unwrap_or_default().to_string(),
                    targets,
                    why,
                },
                Next::Loop(chain) => CallEndReason::RedirectLoop { chain },
                Next::TooMany(chain) => CallEndReason::TooManyRedirects {
                    chain,
                    max: c.redirects.max(),
                },
            };
            self.end_call(now, id, reason);
            return;
        }
        if let Some(kind) = ChallengeKind::from_status(code) {
            c.record.auth_challenges += 1;
            if c.cancel != CancelState::None {
                self.end_call(now, id, CallEndReason::Cancelled);
                return;
            }
            let outcome = match c.auth.as_mut() {
                None => Err(CallEndReason::NoCredentials { code }),
                Some(_) if c.invite_challenges >= MAX_CHALLENGES => {
                    Err(CallEndReason::AuthRejected { code })
                }
                Some(auth) => answer_challenge(auth, kind, message, code),
            };
            match outcome {
                Ok(()) => {
                    // The challenge answered is no final response of the call: the new
                    // INVITE's is (none, if it never comes).
                    c.record.final_code = None;
                    c.invite_challenges += 1;
                    c.invite_cseq += 1;
                    c.state = CallState::Calling;
                    if let Err(error) = self.send_invite(now, id) {
                        let detail = format!("cannot re-send the INVITE: {error}");
                        self.end_call(now, id, CallEndReason::ProtocolError { detail });
                    }
                }
                Err(reason) => self.end_call(now, id, reason),
            }
            return;
        }
        if c.cancel == CancelState::None {
            // A redirected target refused: the next Contact of the 3xx, if any is left.
            if let Some(target) = c.redirects.next_pending() {
                self.redirect_to(now, id, code, target);
                return;
            }
        }
        let reason = if c.cancel != CancelState::None && code == 487 {
            match c.record.cancel_code {
                Some(refused) if !(200..300).contains(&refused) => CallEndReason::CancelFailed {
                    cancel_code: Some(refused),
                    waited: None,
                },
                _ => CallEndReason::Cancelled,
            }
        } else {
            CallEndReason::Rejected {
                code,
                reason: message.reason().unwrap_or_default().to_string(),
            }
        };
        self.end_call(now, id, reason);
    }

    /// Send the INVITE again to `target`, a Contact of a 3xx (RFC 3261 §8.1.3.4): a new
    /// transaction with the same Call-ID, From and To, the next CSeq, `target` as
    /// Request-URI, sent to the outbound proxy when there is one (a preloaded route), else to
    /// the target's own address when it names one.
    fn redirect_to(&mut self, now: Instant, id: CallId, code: u16, target: String) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        self.events.push_back(CallEvent::Redirected {
            call: id,
            code,
            target: target.clone(),
        });
        c.record.redirects.push(target.clone());
        // The 3xx is no final response of the call: the new INVITE's is.
        c.record.final_code = None;
        if c.initial_routes.is_empty() {
            if let Some(destination) = D::from_uri(&target, c.transport) {
                c.peer = destination;
            }
        }
        c.hop = c.peer.clone();
        c.request_uri.clone_from(&target);
        c.dialog.remote_target = target;
        c.invite_challenges = 0;
        c.invite_cseq += 1;
        c.early = None;
        c.state = CallState::Calling;
        if let Err(error) = self.send_invite(now, id) {
            let detail = format!("cannot send the redirected INVITE: {error}");
            self.end_call(now, id, CallEndReason::ProtocolError { detail });
        }
    }

    fn on_bye_response(&mut self, now: Instant, id: CallId, tx: TxId, message: &Message) {
        let Some(code) = message.status().filter(|&c| c >= 200) else {
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        if c.bye_tx != Some(tx) {
            return;
        }
        c.bye_tx = None;
        if let Some(kind) = ChallengeKind::from_status(code) {
            c.record.auth_challenges += 1;
            if let Some(auth) = c.auth.as_mut() {
                if c.bye_challenges < MAX_CHALLENGES
                    && answer_challenge(auth, kind, message, code).is_ok()
                {
                    c.bye_challenges += 1;
                    self.send_bye(now, id);
                    return;
                }
            }
        }
        c.record.bye_response = Some(now);
        c.record.bye_code = Some(code);
        let reason = c.pending_reason.take().unwrap_or(CallEndReason::LocalBye);
        self.end_call(now, id, reason);
    }

    fn on_reinvite_response(&mut self, now: Instant, id: CallId, tx: TxId, message: &Message) {
        let Some(code) = message.status().filter(|&c| c >= 200) else {
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        if c.reinvite.as_ref().map(|r| r.tx) != Some(tx) {
            return;
        }
        let Some(reinvite) = c.reinvite.take() else {
            return;
        };
        if (200..300).contains(&code) {
            if let Some(auth) = c.auth.as_mut() {
                auth.on_success();
            }
            // Target refresh (RFC 3261 §12.2.1.2).
            if let Some(target) = message.first_contact_uri() {
                c.dialog.remote_target = target.to_string();
                c.update_hop(&mut self.hops);
            }
            // Any 2xx to a re-INVITE refreshes the session (RFC 4028 §7.4).
            match SessionExpires::of(message) {
                Some(timer) => {
                    c.session
                        .set(now, timer.delta, timer.refresher == Some(Refresher::Uac));
                }
                None => {
                    if let Some(delta) = c.session.interval {
                        let we_refresh = c.session.we_refresh;
                        c.session.set(now, delta, we_refresh);
                    }
                }
            }
            let media = match sdp_body(message) {
                Ok(Some(answer)) => negotiated_from_answer(&reinvite.offer, &answer)
                    .map(|negotiated| (answer, negotiated))
                    .map_err(CallEndReason::MediaFailed),
                Ok(None) => Err(CallEndReason::ProtocolError {
                    detail: format!("the {code} to our re-INVITE has no SDP answer"),
                }),
                Err(status) => Err(CallEndReason::ProtocolError {
                    detail: format!(
                        "the body of the {code} to our re-INVITE is unusable ({status})"
                    ),
                }),
            };
            let cseq = message.cseq();
            let ack = self.send_ack(id, cseq, None, false);
            let Some(c) = call_mut(&mut self.slots, id) else {
                return;
            };
            c.reinvite_ack = Some((cseq, ack));
            match media {
                Ok((answer, negotiated)) => {
                    // A refresh of ours reports only what changed.
                    let changed = !reinvite.refresh
                        || c.remote_sdp
                            .as_ref()
                            .is_none_or(|previous| !answer.is_unchanged_from(previous));
                    c.local_sdp = Some(reinvite.offer);
                    c.remote_sdp = Some(answer);
                    c.local_media = Some(reinvite.media);
                    c.negotiated = Some(negotiated.clone());
                    if changed {
                        self.events.push_back(CallEvent::MediaUpdated {
                            call: id,
                            negotiated,
                        });
                    }
                    self.reschedule(id);
                }
                Err(reason) => {
                    c.pending_reason = Some(reason);
                    self.send_bye(now, id);
                }
            }
            return;
        }
        if let Some(kind) = ChallengeKind::from_status(code) {
            c.record.auth_challenges += 1;
            if let Some(auth) = c.auth.as_mut() {
                if reinvite.challenges < MAX_CHALLENGES
                    && answer_challenge(auth, kind, message, code).is_ok()
                {
                    let challenges = reinvite.challenges + 1;
                    if self
                        .send_reinvite(
                            now,
                            id,
                            reinvite.offer.clone(),
                            reinvite.media.clone(),
                            challenges,
                            reinvite.refresh,
                            reinvite.glare_retries,
                        )
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
        if code == 481 || code == 408 {
            // RFC 3261 §12.2.1.2: the far end no longer has the dialog.
            self.end_call(now, id, CallEndReason::DialogLost { code });
            return;
        }
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        if code == 491 && reinvite.glare_retries < MAX_GLARE_RETRIES {
            // RFC 3261 §14.1: both ends offered at once. Try again after a random wait: 2.1
            // to 4 s for the owner of the Call-ID (the caller), up to 2 s for the other.
            let (base, span) = match c.direction {
                CallDirection::Outgoing => (2_100, 1_900),
                CallDirection::Incoming => (0, 2_000),
            };
            let wait = base + self.ids.next_u64() % span;
            c.glare = Some(GlareRetry {
                at: now + Duration::from_millis(wait),
                media: reinvite.media,
                refresh: reinvite.refresh,
                retries: reinvite.glare_retries + 1,
            });
            self.reschedule(id);
            return;
        }
        if c.session.we_refresh {
            // The session was not refreshed: try again shortly.
            c.session.refresh_at = Some(now + REFRESH_RETRY);
            self.reschedule(id);
        }
        if !reinvite.refresh {
            self.events
                .push_back(CallEvent::UpdateFailed { call: id, code });
        }
    }

    pub(super) fn on_transaction_timeout(
        &mut self,
        now: Instant,
        id: CallId,
        role: Role,
        tx: TxId,
        timer: Timer,
        elapsed: Duration,
    ) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        match role {
            Role::Invite if c.invite_tx == Some(tx) => {
                c.invite_tx = None;
                self.end_call(now, id, CallEndReason::Timeout { timer, elapsed });
            }
            Role::Bye if c.bye_tx == Some(tx) => {
                c.bye_tx = None;
                c.record.bye_timeout = Some(elapsed);
                let reason = c.pending_reason.take().unwrap_or(CallEndReason::LocalBye);
                self.end_call(now, id, reason);
            }
            Role::Reinvite if c.reinvite.as_ref().map(|r| r.tx) == Some(tx) => {
                // RFC 3261 §14.1: a re-INVITE that times out ends the dialog with BYE.
                c.reinvite = None;
                c.pending_reason = Some(CallEndReason::Timeout { timer, elapsed });
                self.send_bye(now, id);
            }
            Role::Refer => {
                self.owners.remove(&tx);
                self.events.push_back(CallEvent::ReferAnswered {
                    call: id,
                    code: 408,
                });
            }
            // Timer H of a non-2xx we sent (the call ended with it), a CANCEL's Timer F
            // (the guard of §9.1 handles the INVITE), or a stale transaction.
            _ => {}
        }
    }

    /// A 2xx to an INVITE that matched no transaction: a retransmission to re-ACK, or a
    /// further fork's 2xx to ACK and close (RFC 3261 §13.2.2.4).
    pub(super) fn on_stray_2xx(&mut self, now: Instant, message: Message, source: D) {
        let found = header_tag(&message, &Name::FROM)
            .and_then(|tag| self.find_dialog(message.call_id(), tag, None))
            .filter(|&id| {
                call_ref(&self.slots, id).is_some_and(|c| c.direction == CallDirection::Outgoing)
            });
        let Some(id) = found else {
            // The call is gone: ACK from the response alone, so the far end stops.
            let (ack, hop) = ack_from_2xx(&message, &self.config.local, &self.ids.branch());
            let destination = D::from_uri(&hop, self.config.local.transport).unwrap_or(source);
            self.layer.send_stateless(destination, Bytes::from(ack));
            self.counters.acks_resent += 1;
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let same_dialog = c.dialog.remote_tag.as_deref() == header_tag(&message, &Name::TO);
        let cseq = message.cseq();
        if same_dialog {
            let ack = if cseq == c.invite_cseq {
                c.ack.clone()
            } else {
                c.reinvite_ack
                    .as_ref()
                    .filter(|(n, _)| *n == cseq)
                    .map(|(_, ack)| ack.clone())
            };
            if let Some(ack) = ack {
                c.record.duplicates_received += 1;
                self.counters.acks_resent += 1;
                let call_id = Some(c.dialog.call_id.clone());
                self.layer.send_stateless_of(c.hop.clone(), ack, call_id);
            }
            return;
        }
        if cseq != c.invite_cseq {
            return;
        }
        // Another fork answered: ACK it and end that dialog with BYE.
        let fork = Dialog {
            call_id: c.dialog.call_id.clone(),
            local_tag: c.dialog.local_tag.clone(),
            remote_tag: header_tag(&message, &Name::TO).map(Box::from),
            local_header: c.dialog.local_header.clone(),
            remote_header: message.header(&Name::TO).unwrap_or_default().to_string(),
            local_cseq: cseq + 1,
            remote_cseq: None,
            remote_target: message
                .first_contact_uri()
                .map_or_else(|| c.request_uri.clone(), str::to_string),
            route_set: record_route(&message, true),
        };
        let routing = fork.routing();
        let hop = D::from_uri(fork.next_hop_uri(), c.transport).unwrap_or_else(|| c.peer.clone());
        let branch = self.ids.branch();
        let auth: Vec<(&str, &str)> = c
            .auth_headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let ack = fork.request(&routing, "ACK", cseq, c.via(&branch), None, &auth, None);
        let call_id = Some(fork.call_id.clone());
        self.layer
            .send_stateless_of(hop.clone(), Bytes::from(ack), call_id.clone());
        let branch = self.ids.branch();
        let bye = fork.request(&routing, "BYE", cseq + 1, c.via(&branch), None, &[], None);
        let _ = self
            .layer
            .send_request_bytes_of(now, Bytes::from(bye), call_id, c.reliable, hop);
        self.counters.forks_released += 1;
    }
}
