//! Redirection of our INVITE (RFC 3261 §8.1.3.4): the targets of a 3xx, in the order they
//! are tried, and the loop and count guards.

use std::collections::VecDeque;

use crate::sip::msg::{contact_uri, Message, Name};
use crate::sip::transport::Transport;

/// Why a 3xx was not followed: the call ends with the 3xx,
/// [`CallEndReason::Redirected`](super::CallEndReason::Redirected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFollowed {
    /// Following redirections is off for the call.
    Off,
    /// The 3xx has no Contact to go to.
    NoContact,
    /// Every Contact names a transport the call does not speak.
    Unusable,
    /// 305 Use Proxy: not followed (RFC 3261 §21.3.6 leaves it to the UAC's policy; RFC
    /// 5630 §6 deprecates it).
    UseProxy,
    /// 380 Alternative Service: the alternatives are described in the body, not called.
    AlternativeService,
}

impl NotFollowed {
    /// Why, in a failure message.
    pub fn as_str(self) -> &'static str {
        match self {
            NotFollowed::Off => "not followed: follow_redirects is off",
            NotFollowed::NoContact => "no Contact to follow",
            NotFollowed::Unusable => "not followed: every Contact names another transport",
            NotFollowed::UseProxy => "not followed: 305 Use Proxy is refused (RFC 3261 §21.3.6)",
            NotFollowed::AlternativeService => {
                "not followed: 380 Alternative Service names no target to call"
            }
        }
    }
}

/// The URIs of a response's Contacts, highest `q` first (RFC 3261 §8.1.3.4; no `q` is 1.0),
/// in the order written among equals.
pub(super) fn contacts_by_q(message: &Message) -> Vec<String> {
    let mut contacts: Vec<(u32, String)> = message
        .header_values(&Name::CONTACT)
        .filter(|v| v.trim() != "*")
        .map(|value| (q_of(value), contact_uri(value).to_string()))
        .filter(|(_, uri)| !uri.is_empty())
        .collect();
    contacts.sort_by_key(|c| std::cmp::Reverse(c.0));
    contacts.into_iter().map(|(_, uri)| uri).collect()
}

/// The `q` of a Contact value in thousandths (RFC 3261 §20.10, `qvalue`), 1000 when absent or
/// malformed.
fn q_of(value: &str) -> u32 {
    // Header parameters follow the `>` of a name-addr; a bare URI has none of its own.
    let Some(params) = value.rfind('>').map(|i| &value[i + 1..]) else {
        return 1000;
    };
    params
        .split(';')
        .find_map(|p| {
            let (name, v) = p.split_once('=')?;
            name.trim().eq_ignore_ascii_case("q").then(|| v.trim())
        })
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|q| (0.0..=1.0).contains(q))
        // Whole thousandths of a value in 0..=1: the cast cannot truncate or wrap.
        .map_or(1000, |q| (q * 1000.0).round() as u32)
}

/// Whether a target may be sent over `transport`: its `transport` parameter, if any, names it.
fn usable(uri: &str, transport: Transport) -> bool {
    let param = uri.split(';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("transport")
            .then(|| v.split('?').next().unwrap_or(v).trim().to_ascii_lowercase())
    });
    match param {
        None => true,
        Some(t) => t == transport.to_string().to_ascii_lowercase(),
    }
}

/// The form in which two targets are compared: without angle brackets, URI headers, or case.
fn key(uri: &str) -> String {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    uri.split('?').next().unwrap_or(uri).to_ascii_lowercase()
}

/// What a 3xx leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Send the INVITE again to this target.
    Follow(String),
    /// The call ends with the 3xx.
    Stop(NotFollowed),
    /// Every target was tried already: the chain so far, then the target that closes the loop.
    Loop(Vec<String>),
    /// The chain is already `max` redirections long.
    TooMany(Vec<String>),
}

/// A call's redirections: where its INVITE went, and where it may go next.
#[derive(Debug, Clone)]
pub(super) struct Redirects {
    /// At most this many redirected INVITEs; 0: a 3xx ends the call.
    max: u32,
    /// The Request-URIs tried, the original first.
    tried: Vec<String>,
    /// The further targets of the latest 3xx, to try when the current one fails.
    pending: VecDeque<String>,
}

impl Redirects {
    pub(super) fn new(request_uri: &str, max: u32) -> Self {
        Self {
            max,
            tried: vec![request_uri.to_string()],
            pending: VecDeque::new(),
        }
    }

    /// The redirections the call may follow.
    pub(super) fn max(&self) -> u32 {
        self.max
    }

    /// The Request-URIs tried, the original first.
    #[cfg(test)]
    pub(super) fn chain(&self) -> &[String] {
        &self.tried
    }

    /// What to do with a 3xx final response `code` whose Contacts are `contacts` (highest q
    /// first), the call speaking `transport`.
    pub(super) fn on_3xx(
        &mut self,
        code: u16,
        contacts: Vec<String>,
        transport: Transport,
    ) -> Next {
        if code == 305 {
            return Next::Stop(NotFollowed::UseProxy);
        }
        if code == 380 {
            return Next::Stop(NotFollowed::AlternativeService);
        }
        if contacts.is_empty() {
            return Next::Stop(NotFollowed::NoContact);
        }
        if self.max == 0 {
            return Next::Stop(NotFollowed::Off);
        }
        let usable: Vec<String> = contacts
            .into_iter()
            .filter(|c| usable(c, transport))
            .collect();
        if usable.is_empty() {
            return Next::Stop(NotFollowed::Unusable);
        }
        let fresh: Vec<String> = usable
            .iter()
            .filter(|c| !self.was_tried(c))
            .cloned()
            .collect();
        if fresh.is_empty() {
            let mut chain = self.tried.clone();
            chain.push(usable[0].clone());
            return Next::Loop(chain);
        }
        if self.redirections() >= self.max {
            let mut chain = self.tried.clone();
            chain.push(fresh[0].clone());
            return Next::TooMany(chain);
        }
        // The targets of this 3xx replace any left from an earlier one (§8.1.3.4 recurses).
        self.pending = fresh.into();
        self.next_pending()
            .map_or(Next::Stop(NotFollowed::Off), Next::Follow)
    }

    /// The next target of the latest 3xx after the current one failed, if any is left and the
    /// count allows it.
    pub(super) fn next_pending(&mut self) -> Option<String> {
        if self.redirections() >= self.max {
            return None;
        }
        while let Some(target) = self.pending.pop_front() {
            if !self.was_tried(&target) {
                self.tried.push(target.clone());
                return Some(target);
            }
        }
        None
    }

    /// Redirected INVITEs sent so far.
    fn redirections(&self) -> u32 {
        u32::try_from(self.tried.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    fn was_tried(&self, target: &str) -> bool {
        let k = key(target);
        self.tried.iter().any(|t| key(t) == k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(contacts: &str) -> Message {
        let raw = format!(
            "SIP/2.0 302 Moved Temporarily\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {contacts}Content-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(bytes::Bytes::from(raw)).unwrap()
    }

    #[test]
    fn contacts_come_highest_q_first_and_in_written_order_among_equals() {
        let m = moved(
            "Contact: <sip:low@192.0.2.9>;q=0.1, <sip:none@192.0.2.9>\r\n\
             Contact: <sip:high@192.0.2.9>;q=0.9, <sip:one@192.0.2.9>;q=1.0\r\n",
        );
        assert_eq!(
            contacts_by_q(&m),
            [
                "sip:none@192.0.2.9",
                "sip:one@192.0.2.9",
                "sip:high@192.0.2.9",
                "sip:low@192.0.2.9"
            ]
        );
    }

    #[test]
    fn a_target_already_tried_closes_a_loop() {
        let mut r = Redirects::new("sip:a@x", 5);
        let b = Next::Follow("sip:b@x".into());
        assert_eq!(r.on_3xx(302, vec!["sip:b@x".into()], Transport::Udp), b);
        assert_eq!(
            r.on_3xx(302, vec!["<sip:A@x>".into()], Transport::Udp),
            Next::Loop(vec!["sip:a@x".into(), "sip:b@x".into(), "<sip:A@x>".into()])
        );
    }

    #[test]
    fn the_count_bounds_the_chain() {
        let mut r = Redirects::new("sip:a@x", 1);
        let to_b = r.on_3xx(301, vec!["sip:b@x".into()], Transport::Udp);
        assert_eq!(to_b, Next::Follow("sip:b@x".into()));
        assert_eq!(
            r.on_3xx(302, vec!["sip:c@x".into()], Transport::Udp),
            Next::TooMany(vec!["sip:a@x".into(), "sip:b@x".into(), "sip:c@x".into()])
        );
    }

    #[test]
    fn use_proxy_alternative_service_no_contact_and_off_are_not_followed() {
        let mut r = Redirects::new("sip:a@x", 5);
        let c = || vec!["sip:b@x".to_string()];
        let stop = |w| Next::Stop(w);
        assert_eq!(
            r.on_3xx(305, c(), Transport::Udp),
            stop(NotFollowed::UseProxy)
        );
        let alt = stop(NotFollowed::AlternativeService);
        assert_eq!(r.on_3xx(380, c(), Transport::Udp), alt);
        let none = stop(NotFollowed::NoContact);
        assert_eq!(r.on_3xx(302, Vec::new(), Transport::Udp), none);
        let tcp = vec!["sip:b@x;transport=tcp".to_string()];
        let unusable = stop(NotFollowed::Unusable);
        assert_eq!(r.on_3xx(302, tcp.clone(), Transport::Udp), unusable);
        assert_eq!(
            r.on_3xx(302, tcp, Transport::Tcp),
            Next::Follow("sip:b@x;transport=tcp".into())
        );
        let mut off = Redirects::new("sip:a@x", 0);
        assert_eq!(off.on_3xx(302, c(), Transport::Udp), stop(NotFollowed::Off));
    }

    #[test]
    fn the_next_contact_of_the_3xx_is_tried_when_the_first_fails() {
        let mut r = Redirects::new("sip:a@x", 5);
        let both = vec!["sip:b@x".into(), "sip:c@x".into()];
        assert_eq!(
            r.on_3xx(302, both, Transport::Udp),
            Next::Follow("sip:b@x".into())
        );
        assert_eq!(r.next_pending().as_deref(), Some("sip:c@x"));
        assert_eq!(r.next_pending(), None);
        assert_eq!(r.chain(), ["sip:a@x", "sip:b@x", "sip:c@x"]);
    }
}
