//! Blind call transfer within a dialog (RFC 3515, RFC 5589): REFER sent and received, and the
//! NOTIFYs of the implicit `refer` subscription, which carry the transfer's progress as a
//! `message/sipfrag` status line.
//!
//! The endpoint answers and reports; it starts no call itself. The transferee's user places
//! the new call to the Refer-To URI and reports its progress with
//! [`Endpoint::notify_transfer`]; the transferor's user sees [`CallEvent::ReferAnswered`] and
//! [`CallEvent::TransferNotified`] and hangs up its own leg once a 2xx was notified.

use std::time::Instant;

use super::{call_mut, expect_state, respond, CallError, CallEvent, CallId, CallState};
use super::{Endpoint, Owner, Role};
use crate::sip::msg::{Message, Name};
use crate::sip::transaction::TxId;
use crate::sip::uri::NextHop;

/// How long the implicit subscription of an accepted REFER lasts (RFC 3515 §2.4.4 leaves it
/// to the notifier); the transfer's final NOTIFY terminates it sooner.
pub const REFER_EXPIRES: u32 = 60;

/// The body type of the NOTIFYs of a transfer.
const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// A `message/sipfrag` status line (`SIP/2.0 486 Busy Here`): its code and reason phrase.
pub fn parse_sipfrag(body: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.parse().ok()?;
    (100..700)
        .contains(&code)
        .then(|| (code, reason.trim().to_string()))
}

/// The URI inside a Refer-To value (`<sip:bob@host>` or a bare URI), with its
/// header parameters (`?Replaces=...`) left on.
fn refer_uri(value: &str) -> &str {
    match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

fn is_sip_uri(uri: &str) -> bool {
    let lower = uri
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    lower.starts_with("sip:") || lower == "sips:"
}

impl<D: Clone + NextHop> Endpoint<D> {
    /// Ask the far end of a confirmed call to call `refer_to` (a blind transfer, RFC 5589):
    /// REFER with Refer-To and, when given, Referred-By. Its final response is reported as
    /// [`CallEvent::ReferAnswered`], the transfer's progress as
    /// [`CallEvent::TransferNotified`].
    pub fn refer(
        &mut self,
        now: Instant,
        call: CallId,
        refer_to: &str,
        referred_by: Option<&str>,
    ) -> Result<(), CallError> {
        let branch = self.ids.branch();
        let c = expect_state(&mut self.slots, call, "transfer", &[CallState::Confirmed])?;
        c.dialog.local_cseq += 1;
        let routing = c.dialog.routing();
        // A URI of ours, parameters and headers (an attended transfer's `?Replaces=`) kept.
        let target = match refer_to.contains('<') {
            true => refer_to.trim().to_owned(),
            false => format!("<{}>", refer_to.trim()),
        };
        let by = referred_by.map(|by| format!("<{}>", refer_uri(by)));
        let mut extra: Vec<(&str, &str)> = vec![("Refer-To", &target)];
        if let Some(by) = &by {
            extra.push(("Referred-By", by));
        }
        let bytes = c.dialog.request(
            &routing,
            "REFER",
            c.dialog.local_cseq,
            c.via(&branch),
            Some(&c.contact),
            &extra,
            None,
        );
        self.send_in_dialog(now, call, Role::Refer, bytes)
    }

    /// Tell the far end of a call that REFERred us how its transfer goes: a NOTIFY whose
    /// `message/sipfrag` body is `SIP/2.0 {code} {reason}`; a final `code` (≥ 200) terminates
    /// the subscription (`Subscription-State: terminated;reason=noresource`).
    pub fn notify_transfer(
        &mut self,
        now: Instant,
        call: CallId,
        code: u16,
        reason: &str,
    ) -> Result<(), CallError> {
        let branch = self.ids.branch();
        let c = expect_state(
            &mut self.slots,
            call,
            "notify a transfer",
            &[CallState::Confirmed, CallState::Terminating],
        )?;
        c.dialog.local_cseq += 1;
        let routing = c.dialog.routing();
        let state = if code >= 200 {
            "terminated;reason=noresource".to_string()
        } else {
            format!("active;expires={REFER_EXPIRES}")
        };
        let body = format!("SIP/2.0 {code} {reason}\r\n");
        let extra: [(&str, &str); 2] = [("Event", "refer"), ("Subscription-State", &state)];
        let bytes = c.dialog.request(
            &routing,
            "NOTIFY",
            c.dialog.local_cseq,
            c.via(&branch),
            Some(&c.contact),
            &extra,
            Some((SIPFRAG, body.as_bytes())),
        );
        self.send_in_dialog(now, call, Role::Notify, bytes)
    }

    /// Send `bytes`, a request within `call`'s dialog, as a client transaction of the call's
    /// in `role`.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call: CallId,
        role: Role,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        let c = call_mut(&mut self.slots, call).ok_or(CallError::UnknownCall(call))?;
        let tx = self.layer.send_request_bytes_of(
            now,
            bytes.into(),
            Some(c.dialog.call_id.clone()),
            c.reliable,
            c.hop.clone(),
        )?;
        self.owners.insert(tx, Owner::Call(call, role));
        Ok(())
    }

    /// A REFER within a confirmed dialog: 400 without exactly one Refer-To (RFC 3515
    /// §2.4.2), 416 for a URI that is not `sip:`/`sips:` (we place SIP calls only), else 202,
    /// the first NOTIFY (`SIP/2.0 100 Trying`, RFC 3515 §2.4.4) and
    /// [`CallEvent::Referred`].
    pub(super) fn on_refer_request(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        message: &Message,
    ) {
        let confirmed =
            call_mut(&mut self.slots, id).is_some_and(|c| c.state == CallState::Confirmed);
        if !confirmed {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 403, None, &[], None);
            return;
        }
        let values: Vec<&str> = message
            .headers()
            .get_raw(&Name::REFER_TO)
            .map(str::trim)
            .collect();
        let [value] = values.as_slice() else {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 400, None, &[], None);
            return;
        };
        let uri = refer_uri(value);
        if !is_sip_uri(uri) {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 416, None, &[], None);
            return;
        }
        let refer_to = uri.to_string();
        let referred_by = message
            .header(&Name::from("Referred-By"))
            .or_else(|| message.header(&Name::from("b")))
            .map(str::to_string);
        let _ = respond(&mut self.layer, now, tx, 202, None, &[], None);
        let _ = self.notify_transfer(now, id, 100, "Trying");
        self.events.push_back(CallEvent::Referred {
            call: id,
            refer_to,
            referred_by,
        });
    }

    /// A NOTIFY within a dialog: of the `refer` event package with a sipfrag status line,
    /// answered 200 and reported as [`CallEvent::TransferNotified`]; of another package 489
    /// (RFC 6665 §8.2.1); without a status line 400.
    pub(super) fn on_notify_request(
        &mut self,
        now: Instant,
        id: CallId,
        tx: TxId,
        message: &Message,
    ) {
        let event = message.header(&Name::EVENT).unwrap_or_default();
        let package = event.split(';').next().unwrap_or_default().trim();
        if !package.eq_ignore_ascii_case("refer") {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 489, None, &[], None);
            return;
        }
        let Some((code, reason)) = parse_sipfrag(message.body()) else {
            self.counters.requests_refused += 1;
            let _ = respond(&mut self.layer, now, tx, 400, None, &[], None);
            return;
        };
        let terminated = message.header(&Name::SUBSCRIPTION_STATE).is_some_and(|s| {
            s.trim_start()
                .to_ascii_lowercase()
                .starts_with("terminated")
        });
        let _ = respond(&mut self.layer, now, tx, 200, None, &[], None);
        self.events.push_back(CallEvent::TransferNotified {
            call: id,
            code,
            reason,
            terminated,
        });
    }

    /// The final response to our REFER (a timeout is reported as 408).
    pub(super) fn on_refer_response(&mut self, id: CallId, tx: TxId, message: &Message) {
        let Some(code) = message.status().filter(|&c| c >= 200) else {
            return;
        };
        self.owners.remove(&tx);
        self.events
            .push_back(CallEvent::ReferAnswered { call: id, code });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 100 Trying\r\n"),
            Some((100, "Trying".into()))
        );
        assert_eq!(
            parse_sipfrag(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some((486, "Busy Here".into()))
        );
        assert_eq!(parse_sipfrag(b"SIP/2.0 200"), Some((200, String::new())));
        assert_eq!(parse_sipfrag(b"INVITE sip:a SIP/2.0"), None);
        assert_eq!(parse_sipfrag(b""), None);
    }

    #[test]
    fn refer_to_values() {
        assert_eq!(
            refer_uri("<sip:carol@h;transport=udp>;x=y"),
            "sip:carol@h;transport=udp"
        );
        assert_eq!(refer_uri("sip:carol@h"), "sip:carol@h");
        assert!(is_sip_uri("sips:carol@h"));
        assert!(is_sip_uri("SIP:carol@h"));
        assert!(!is_sip_uri("tel:+123"));
        assert!(!is_sip_uri("http://x"));
    }
}
