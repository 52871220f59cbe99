//! The UAS side of calls and every incoming request: new INVITEs, CANCEL, ACK, and requests
//! within dialogs (BYE, re-INVITE, INFO, OPTIONS); requests outside dialogs are answered here.

use std::sync::Arc;
use std::time::Instant;

use super::dialog::{header_tag, record_route, Dialog};
use super::session_timer::{SessionTimer, TimerAnswer, TIMER};
use super::{
    call_mut, call_ref, is_known_method, is_sips, respond, sdp_body, sips_contact, Awaiting2xx,
    Call, CallDirection, CallEndReason, CallEvent, CallId, CallRecord, CallState, CancelState,
    Endpoint, Owner, Role, ACCEPT, ALLOW, SDP,
};
use crate::sdp::{answer_update, negotiated_from_answer, Negotiated, SessionDescription};
use crate::sip::msg::{contact_uri, Message, Method, Name};
use crate::sip::transaction::{TxId, Uas2xxRetransmitter};
use crate::sip::uri::NextHop;

impl<D: Clone + NextHop> Endpoint<D> {
    pub(super) fn on_ack(&mut self, now: Instant, message: Message) {
        let found = header_tag(&message, &Name::TO).and_then(|to| {
            let from = header_tag(&message, &Name::FROM);
            self.find_dialog(message.call_id(), to, from)
        });
        let Some(id) = found else {
            self.counters.stray_acks += 1;
            return;
        };
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let Some(awaiting) = c.awaiting.as_mut().filter(|a| a.cseq == message.cseq()) else {
            self.counters.stray_acks += 1;
            return;
        };
        awaiting.retransmitter.handle_ack();
        let initial = awaiting.initial;
        c.awaiting = None;
        let answer = sdp_body(&message);
        let media = match (c.offer_sent.take(), answer) {
            (None, _) => Ok(None),
            (Some(offer), Ok(Some(answer))) => match negotiated_from_answer(&offer, &answer) {
                Ok(negotiated) => {
                    c.local_sdp = Some(offer);
                    c.remote_sdp = Some(answer);
                    Ok(Some(negotiated))
                }
                Err(error) => Err(CallEndReason::MediaFailed(error)),
            },
            (Some(_), Ok(None)) => Err(CallEndReason::ProtocolError {
                detail: "the ACK carries no SDP answer to the offer in our 2xx".to_string(),
            }),
            (Some(_), Err(status)) => Err(CallEndReason::ProtocolError {
                detail: format!("the body of the ACK is unusable ({status})"),
            }),
        };
        if initial {
            c.record.ack = Some(now);
            c.state = CallState::Confirmed;
            match media {
                Ok(negotiated) => {
                    if let Some(negotiated) = negotiated {
                        c.negotiated = Some(negotiated);
                    }
                    if let Some(negotiated) = c.negotiated.clone() {
                        self.events.push_back(CallEvent::Answered {
                            call: id,
                            negotiated,
                        });
                    }
                    if c.hangup_after_ack {
                        self.send_bye(now, id);
                    }
                }
                Err(reason) => {
                    c.pending_reason = Some(reason);
                    self.send_bye(now, id);
                }
            }
        } else if let Ok(Some(negotiated)) = media {
            c.negotiated = Some(negotiated.clone());
            self.events.push_back(CallEvent::MediaUpdated {
                call: id,
                negotiated,
            });
        }
        self.reschedule(id);
    }

    pub(super) fn on_request(&mut self, now: Instant, tx: TxId, message: Message) {
        let Some(method) = message.method().cloned() else {
            return;
        };
        if method == Method::CANCEL {
            self.on_cancel_request(now, tx, &message);
            return;
        }
        if let Some(to_tag) = header_tag(&message, &Name::TO) {
            let from_tag = header_tag(&message, &Name::FROM);
            match self.find_dialog(message.call_id(), to_tag, from_tag) {
                Some(id) => self.on_in_dialog(now, id, tx, &message, &method),
                None => {
                    self.counters.no_dialog += 1;
                    let _ = respond(&mut self.layer, now, tx, 481, None, &[], None);
                    if method == Method::INVITE {
                        self.invite_refused(&message, 481, "re-INVITE for no dialog we know");
                    }
                }
            }
            return;
        }
        let tag = Some(&*self.tag);
        if method == Method::INVITE {
            self.on_new_invite(now, tx, message);
        } else if method == Method::OPTIONS {
            self.counters.options_answered += 1;
            let extra = [("Allow", ALLOW), ("Accept", ACCEPT)];
            let _ = respond(&mut self.layer, now, tx, 200, tag, &extra, None);
        } else if method == Method::BYE {
            self.counters.no_dialog += 1;
            let _ = respond(&mut self.layer, now, tx, 481, tag, &[], None);
        } else if method == Method::REFER {
            // Transfers are served within a call only (RFC 3515 allows REFER outside one).
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 403, tag, &[], None);
        } else {
            self.refuse_method(now, tx, &method, false);
        }
    }

    /// Report an INVITE refused before it became a call.
    fn invite_refused(&mut self, message: &Message, code: u16, reason: impl Into<String>) {
        self.events.push_back(CallEvent::InviteRefused {
            code,
            reason: reason.into(),
            from: message.header(&Name::FROM).unwrap_or_default().to_string(),
            call_id: message.call_id().to_string(),
        });
    }

    /// 405 for a method we know but do not serve here, 501 for one we do not know.
    fn refuse_method(&mut self, now: Instant, tx: TxId, method: &Method, in_dialog: bool) {
        self.counters.method_refused += 1;
        let tag = (!in_dialog).then_some(&*self.tag);
        let code = if is_known_method(method) { 405 } else { 501 };
        let extra = [("Allow", ALLOW)];
        let _ = respond(&mut self.layer, now, tx, code, tag, &extra, None);
    }

    fn on_in_dialog(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        message: &Message,
        method: &Method,
    ) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        // RFC 3261 §12.2.2: a request older than the last one is out of order.
        if c.dialog
            .remote_cseq
            .is_some_and(|last| message.cseq() < last)
        {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 500, None, &[], None);
            return;
        }
        c.dialog.remote_cseq = Some(message.cseq());
        if *method == Method::BYE {
            self.on_bye_request(now, id, tx);
        } else if *method == Method::INVITE {
            self.on_reinvite_request(now, id, tx, message);
        } else if *method == Method::UPDATE {
            self.on_update_request(now, id, tx, message);
        } else if *method == Method::OPTIONS {
            let extra = [("Allow", ALLOW), ("Accept", ACCEPT)];
            let _ = respond(&mut self.layer, now, tx, 200, None, &extra, None);
        } else if *method == Method::INFO {
            let _ = respond(&mut self.layer, now, tx, 200, None, &[], None);
        } else if *method == Method::REFER && self.config.accept_refer {
            self.on_refer_request(now, id, tx, message);
        } else if *method == Method::NOTIFY {
            self.on_notify_request(now, id, tx, message);
        } else {
            self.refuse_method(now, tx, method, true);
        }
    }

    fn on_bye_request(&mut self, now: Instant, id: CallId, tx: TxId) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        match c.state {
            CallState::Calling | CallState::Proceeding | CallState::Cancelling => {
                // Our INVITE has no 2xx yet: there is no dialog to end.
                self.counters.no_dialog += 1;
                let _ = respond(&mut self.layer, now, tx, 481, None, &[], None);
            }
            CallState::Offered => {
                // BYE in an early dialog (RFC 3261 §15): the INVITE gets 487.
                c.record.bye_received = Some(now);
                c.record.final_code = Some(487);
                let _ = respond(&mut self.layer, now, tx, 200, None, &[], None);
                if let Some(invite) = c.invite_tx {
                    let tag = Some(&*c.dialog.local_tag);
                    let _ = respond(&mut self.layer, now, invite, 487, tag, &[], None);
                }
                self.end_call(now, id, CallEndReason::RemoteBye);
            }
            CallState::AwaitingAck | CallState::Confirmed => {
                c.record.bye_received = Some(now);
                let _ = respond(&mut self.layer, now, tx, 200, None, &[], None);
                self.end_call(now, id, CallEndReason::RemoteBye);
            }
            CallState::Terminating => {
                // The BYEs crossed: answer theirs, wait for the answer to ours.
                c.record.bye_received = Some(now);
                let _ = respond(&mut self.layer, now, tx, 200, None, &[], None);
            }
        }
    }

    fn on_reinvite_request(&mut self, now: Instant, id: CallId, tx: TxId, message: &Message) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let busy = c.state != CallState::Confirmed
            || c.reinvite.is_some()
            || c.awaiting.is_some()
            || c.offer_sent.is_some();
        if busy {
            // RFC 3261 §14.2: an offer is already under way.
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 491, None, &[], None);
            return;
        }
        let offer = match sdp_body(message) {
            Ok(offer) => offer,
            Err(status) => {
                self.counters.requests_refused += 1;
                let extra = [("Accept", ACCEPT)];
                let _ = respond(&mut self.layer, now, tx, status, None, &extra, None);
                return;
            }
        };
        // (our description, the new media if it changed, our offer awaiting the ACK)
        let (sdp, updated, offer_sent) = match &offer {
            Some(offer) => match answer_offer(c, offer) {
                Ok((sdp, updated)) => (sdp, updated, None),
                Err(status) => {
                    // §14.2: the offer is refused and the session goes on unchanged.
                    self.counters.requests_refused += 1;
                    let _ = respond(&mut self.layer, now, tx, status, None, &[], None);
                    return;
                }
            },
            // An offer-less re-INVITE: we offer our current description, the ACK answers.
            None => match c.local_sdp.as_ref() {
                Some(previous) => (previous.clone(), None, Some(previous.clone())),
                None => {
                    self.counters.requests_refused += 1;
                    let _ = respond(&mut self.layer, now, tx, 500, None, &[], None);
                    return;
                }
            },
        };
        if let Some(target) = message.first_contact_uri() {
            c.dialog.remote_target = target.to_string();
            c.update_hop(&mut self.hops);
        }
        let body = sdp.to_bytes();
        let timer = TimerAnswer::of(message);
        let mut extra = vec![("Contact", &*c.contact), ("Allow", ALLOW)];
        if let Some(timer) = &timer {
            extra.extend(timer.headers());
        }
        let Ok(response) = respond(
            &mut self.layer,
            now,
            tx,
            200,
            None,
            &extra,
            Some((SDP, &body)),
        ) else {
            return;
        };
        c.session.refreshed(now, timer.as_ref());
        c.awaiting = Some(Awaiting2xx {
            cseq: message.cseq(),
            retransmitter: Uas2xxRetransmitter::new(now, response, self.config.timers),
            initial: false,
        });
        if offer.is_some() {
            c.remote_sdp = offer;
        }
        c.local_sdp = Some(sdp);
        c.offer_sent = offer_sent;
        if let Some(negotiated) = updated {
            c.negotiated = Some(negotiated.clone());
            self.events.push_back(CallEvent::MediaUpdated {
                call: id,
                negotiated,
            });
        }
        self.reschedule(id);
    }

    /// UPDATE (RFC 3311): a session refresh (RFC 4028) without a body, or a new offer (hold,
    /// unhold …) answered in its 200 — no ACK follows.
    fn on_update_request(&mut self, now: Instant, id: CallId, tx: TxId, message: &Message) {
        let Some(c) = call_mut(&mut self.slots, id) else {
            return;
        };
        let offer = match sdp_body(message) {
            Ok(offer) => offer,
            Err(status) => {
                self.counters.requests_refused += 1;
                let extra = [("Accept", ACCEPT)];
                let _ = respond(&mut self.layer, now, tx, status, None, &extra, None);
                return;
            }
        };
        let answered = match &offer {
            None => None,
            Some(offer) => {
                let settled = matches!(c.state, CallState::Confirmed | CallState::AwaitingAck);
                if !settled || c.reinvite.is_some() || c.offer_sent.is_some() {
                    // RFC 3311 §5.2: an offer of ours is under way (or none can be made yet).
                    self.counters.requests_refused += 1;
                    let _ = respond(&mut self.layer, now, tx, 491, None, &[], None);
                    return;
                }
                match answer_offer(c, offer) {
                    Ok(answered) => Some(answered),
                    Err(status) => {
                        self.counters.requests_refused += 1;
                        let _ = respond(&mut self.layer, now, tx, status, None, &[], None);
                        return;
                    }
                }
            }
        };
        // Target refresh (RFC 3311 §5.2).
        if let Some(target) = message.first_contact_uri() {
            c.dialog.remote_target = target.to_string();
        }
        let timer = TimerAnswer::of(message);
        let mut extra = vec![("Contact", &*c.contact), ("Allow", ALLOW)];
        if let Some(timer) = &timer {
            extra.extend(timer.headers());
        }
        let body = answered.as_ref().map(|(sdp, _)| sdp.to_bytes());
        let sent = respond(
            &mut self.layer,
            now,
            tx,
            200,
            None,
            &extra,
            body.as_deref().map(|b| (SDP, b)),
        );
        if sent.is_err() {
            return;
        }
        c.session.refreshed(now, timer.as_ref());
        if let (Some(offer), Some((sdp, updated))) = (offer, answered) {
            c.remote_sdp = Some(offer);
            c.local_sdp = Some(sdp);
            if let Some(negotiated) = updated {
                c.negotiated = Some(negotiated.clone());
                self.events.push_back(CallEvent::MediaUpdated {
                    call: id,
                    negotiated,
                });
            }
        }
        self.reschedule(id);
    }

    fn on_cancel_request(&mut self, now: Instant, tx: TxId, message: &Message) {
        // RFC 3261 §9.2: 481 when no INVITE transaction matches; else 200, and the INVITE
        // gets 487 if it is still unanswered.
        let Some(invite) = self.layer.cancel_target(message) else {
            self.counters.no_dialog += 1;
            let _ = respond(&mut self.layer, now, tx, 481, Some(&*self.tag), &[], None);
            return;
        };
        let call = match self.owners.get(&invite) {
            Some(&Owner::Call(id, Role::IncomingInvite)) => Some(id),
            _ => None,
        };
        let Some((id, c)) = call.and_then(|id| Some((id, call_mut(&mut self.slots, id)?))) else {
            let _ = respond(&mut self.layer, now, tx, 200, Some(&*self.tag), &[], None);
            return;
        };
        // The CANCEL's 200 carries the To tag of the INVITE's responses.
        c.record.cancel = Some(now);
        let tag = Some(&*c.dialog.local_tag);
        let _ = respond(&mut self.layer, now, tx, 200, tag, &[], None);
        if c.state != CallState::Offered {
            return;
        }
        let _ = respond(&mut self.layer, now, invite, 487, tag, &[], None);
        c.record.final_code = Some(487);
        self.end_call(now, id, CallEndReason::CancelledByRemote);
    }

    fn on_new_invite(&mut self, now: Instant, tx: TxId, message: Message) {
        let tag = Some(&*self.tag);
        let Some(from_tag) = header_tag(&message, &Name::FROM) else {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 400, tag, &[], None);
            self.invite_refused(&message, 400, "no tag in From");
            return;
        };
        // The same INVITE again, after our 2xx ended its transaction; or the same request
        // by another path (a merged request, RFC 3261 §8.2.2.2).
        let known = self.dialogs.get(message.call_id()).and_then(|bucket| {
            bucket.iter().find(|&id| {
                call_ref(&self.slots, id).is_some_and(|c| {
                    c.direction == CallDirection::Incoming
                        && c.dialog.remote_tag.as_deref() == Some(from_tag)
                })
            })
        });
        if let Some(id) = known {
            let Some(c) = call_mut(&mut self.slots, id) else {
                return;
            };
            if c.invite_cseq == message.cseq() && c.invite_branch.as_deref() == message.branch() {
                self.counters.invite_retransmissions += 1;
                c.record.duplicates_received += 1;
                if let Some(awaiting) = c.awaiting.as_ref().filter(|a| a.initial) {
                    let bytes = awaiting.retransmitter.response().clone();
                    c.record.responses_retransmitted += 1;
                    let call_id = Some(c.dialog.call_id.clone());
                    self.layer.send_stateless_of(c.peer.clone(), bytes, call_id);
                }
                let _ = self.layer.abandon(tx);
            } else {
                self.counters.requests_refused += 1;
                let _ = respond(&mut self.layer, now, tx, 482, tag, &[], None);
                self.invite_refused(&message, 482, "a copy of a call already received (merged)");
            }
            return;
        }
        let unsupported: Vec<&str> = message
            .header_values(&Name::REQUIRE)
            .map(str::trim)
            .filter(|tag| {
                !tag.is_empty()
                    && !tag.eq_ignore_ascii_case(TIMER)
                    && !tag.eq_ignore_ascii_case(super::replaces::REPLACES)
            })
            .collect();
        if !unsupported.is_empty() {
            // We support no extension but session timers and Replaces (RFC 3261 §8.2.2.3).
            self.counters.requests_refused += 1;
            let require = unsupported.join(", ");
            let extra = [("Unsupported", require.as_str())];
            let _ = respond(&mut self.layer, now, tx, 420, tag, &extra, None);
            self.invite_refused(&message, 420, format!("requires {require}, not supported"));
            return;
        }
        // RFC 3891 §3: an INVITE with Replaces must name a dialog we may replace.
        let replaces = match self.replaced_call(&message) {
            Ok(replaces) => replaces,
            Err(refusal) => {
                self.counters.requests_refused += 1;
                let _ = respond(&mut self.layer, now, tx, refusal.code, tag, &[], None);
                self.invite_refused(&message, refusal.code, refusal.why);
                return;
            }
        };
        let offer = match sdp_body(&message) {
            Ok(offer) => offer.map(Arc::new),
            Err(status) => {
                self.counters.requests_refused += 1;
                let extra = [("Accept", ACCEPT)];
                let _ = respond(&mut self.layer, now, tx, status, tag, &extra, None);
                let why = if status == 415 {
                    "the body is not SDP"
                } else {
                    "the SDP offer does not parse"
                };
                self.invite_refused(&message, status, why);
                return;
            }
        };
        let Some(remote_target) = message.first_contact_uri().map(str::to_string) else {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 400, tag, &[], None);
            self.invite_refused(&message, 400, "no Contact");
            return;
        };
        let Some((peer, reliable)) = self.source.clone() else {
            return;
        };
        let source = peer.clone();
        if self.config.trying && self.layer.send_trying(now, tx).is_err() {
            return;
        }
        let local_tag = self.ids.tag();
        let to = message.header(&Name::TO).unwrap_or_default();
        let from = message.header(&Name::FROM).unwrap_or_default();
        let dialog = Dialog {
            call_id: message.call_id().into(),
            local_header: with_tag(to, &local_tag),
            local_tag: local_tag.into_boxed_str(),
            remote_tag: Some(from_tag.into()),
            remote_header: from.to_string(),
            local_cseq: 0,
            remote_cseq: Some(message.cseq()),
            remote_target,
            route_set: record_route(&message, false),
        };
        let local = &self.config.local;
        // RFC 3261 §12.1.1: a dialog begun by a sips: Request-URI, or a sips: top
        // Record-Route (without one, Contact), answers with a sips: Contact.
        let sips = message.request_uri().is_some_and(is_sips)
            || message
                .header_values(&Name::RECORD_ROUTE)
                .next()
                .map_or(is_sips(&dialog.remote_target), |top| {
                    is_sips(contact_uri(top))
                });
        let contact = if sips {
            sips_contact(&self.config.contact_user, local.transport, local.addr).into()
        } else {
            Arc::clone(&self.incoming_contact)
        };
        let mut record = CallRecord::new(message.call_id(), CallDirection::Incoming, now);
        if self.config.trying {
            record.first_provisional = Some(now);
        }
        let mut entry = Call {
            state: CallState::Offered,
            direction: CallDirection::Incoming,
            hop: peer.clone(),
            peer,
            reliable,
            transport: local.transport,
            local_addr: local.addr,
            contact,
            dialog,
            invite_tx: Some(tx),
            invite_cseq: message.cseq(),
            // Outgoing calls only.
            request_uri: String::new(),
            initial_routes: Vec::new(),
            extra_headers: Vec::new(),
            auth: None,
            auth_headers: Vec::new(),
            invite_challenges: 0,
            redirects: super::redirect::Redirects::new("", 0),
            cancel: CancelState::None,
            cancel_deadline: None,
            ack: None,
            early: None,
            invite_branch: message.branch().map(Box::from),
            remote_offer: offer.clone(),
            awaiting: None,
            hangup_after_ack: false,
            local_media: None,
            offer_sent: None,
            local_sdp: None,
            // Set from the offer when it is answered (`accept` moves it there).
            remote_sdp: None,
            negotiated: None,
            reinvite: None,
            glare: None,
            reinvite_ack: None,
            bye_tx: None,
            bye_challenges: 0,
            pending_reason: None,
            session: SessionTimer::default(),
            timer_answer: TimerAnswer::of(&message),
            record,
            scheduled: None,
        };
        entry.update_hop(&mut self.hops);
        let id = self.insert(entry);
        self.owners
            .insert(tx, Owner::Call(id, Role::IncomingInvite));
        self.counters.incoming_calls += 1;
        // Shared with the INVITE's buffer: nothing is copied for a user who ignores them.
        self.events.push_back(CallEvent::Incoming {
            call: id,
            from: message.header_shared(&Name::FROM).unwrap_or_default(),
            to: message.header_shared(&Name::TO).unwrap_or_default(),
            request_uri: message.request_uri_shared().unwrap_or_default(),
            offer,
            source,
            signature_call: message
                .header(&Name::custom(
                    super::SIGNATURE_HEADER,
                    &[super::SIGNATURE_HEADER],
                ))
                .and_then(|v| v.parse().ok()),
            replaces,
        });
    }
}

/// `value;tag=tag`, allocated once.
fn with_tag(value: &str, tag: &str) -> String {
    let mut out = String::with_capacity(value.len() + 5 + tag.len());
    out.push_str(value);
    out.push_str(";tag=");
    out.push_str(tag);
    out
}

/// Answer a far end's offer in the call (re-INVITE or UPDATE): our description and the new
/// media when it changed; a session refresh (the same offer again, RFC 3264 §8) gets the same
/// answer again. `Err` is the status refusing the offer (488, or 500 before any answer of
/// ours).
fn answer_offer<D>(
    c: &Call<D>,
    offer: &SessionDescription,
) -> Result<(SessionDescription, Option<Negotiated>), u16> {
    let (Some(local_media), Some(previous)) = (c.local_media.as_ref(), c.local_sdp.as_ref()) else {
        return Err(500);
    };
    if c.remote_sdp
        .as_ref()
        .is_some_and(|remote| offer.is_unchanged_from(remote))
    {
        return Ok((previous.clone(), None));
    }
    match answer_update(offer, local_media, previous) {
        Ok((sdp, negotiated)) => Ok((sdp, Some(negotiated))),
        Err(_) => Err(488),
    }
}
