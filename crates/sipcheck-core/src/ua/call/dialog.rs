//! Dialog state (RFC 3261 §12): identifiers, CSeq, remote target and route set, and the
//! requests sent within a dialog (§12.2.1.1, loose and strict routing).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use bytesstr::BytesStr;

use crate::sip::build::{RequestSpec, ViaSpec};
use crate::sip::msg::{contact_uri, Message, Name};

/// A key of the endpoint's dialog index: a Call-ID, hashed and compared as text, so that
/// the index is searched with a `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallIdKey(pub(super) BytesStr);

impl Hash for CallIdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl Borrow<str> for CallIdKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

/// One dialog, from our side.
#[derive(Debug, Clone)]
pub(super) struct Dialog {
    /// The Call-ID (shared with the endpoint's dialog index and the transmits of the
    /// dialog's requests).
    pub(super) call_id: BytesStr,
    /// Our tag (From tag of an outgoing call, To tag of an incoming one).
    pub(super) local_tag: Box<str>,
    /// The far end's tag, once known (To tag of the 2xx for an outgoing call).
    pub(super) remote_tag: Option<Box<str>>,
    /// The header value naming us, tag included: From of our requests.
    pub(super) local_header: String,
    /// The header value naming the far end, with its tag once known: To of our requests.
    pub(super) remote_header: String,
    /// The CSeq of our latest request.
    pub(super) local_cseq: u32,
    /// The CSeq of the far end's latest request, if any.
    pub(super) remote_cseq: Option<u32>,
    /// Where in-dialog requests are addressed: the far end's Contact URI.
    pub(super) remote_target: String,
    /// The route set, in the order of the Route headers to send.
    pub(super) route_set: Vec<String>,
}

/// Where a request within a dialog goes (RFC 3261 §12.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Routing {
    /// The Request-URI.
    pub(super) uri: String,
    /// The Route header values, in order.
    pub(super) routes: Vec<String>,
}

impl Dialog {
    /// The Request-URI and Route headers of a request in this dialog.
    pub(super) fn routing(&self) -> Routing {
        routing(&self.remote_target, &self.route_set)
    }

    /// The URI a request in this dialog is sent to (RFC 3261 §8.1.2 with §12.2.1.1): the
    /// first route, be it a loose router (the first Route header) or a strict one (then the
    /// Request-URI); with no route set, the remote target.
    pub(super) fn next_hop_uri(&self) -> &str {
        next_hop_uri(&self.remote_target, &self.route_set)
    }

    /// A request in this dialog, with CSeq `cseq`, addressed as `routing` (from
    /// [`Dialog::routing`]) says.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn request(
        &self,
        routing: &Routing,
        method: &str,
        cseq: u32,
        via: ViaSpec<'_>,
        contact: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        RequestSpec {
            method,
            uri: &routing.uri,
            via,
            routes: &routing.routes,
            from: &self.local_header,
            to: &self.remote_header,
            call_id: &self.call_id,
            cseq,
            contact,
            extra,
            body,
        }
        .to_vec()
    }
}

/// RFC 3261 §12.2.1.1: with an empty route set, or a first route that is a loose router
/// (`;lr`), the Request-URI is the remote target and the Route headers are the route set;
/// with a strict router first, the Request-URI is that router's URI and the Route headers
/// are the rest of the route set followed by the remote target.
pub(super) fn routing(remote_target: &str, route_set: &[String]) -> Routing {
    match route_set.first() {
        None => Routing {
            uri: remote_target.to_string(),
            routes: Vec::new(),
        },
        Some(first) if is_loose(first) => Routing {
            uri: remote_target.to_string(),
            routes: route_set.to_vec(),
        },
        Some(first) => {
            let mut routes: Vec<String> = route_set[1..].to_vec();
            routes.push(format!("<{remote_target}>"));
            Routing {
                uri: contact_uri(first).to_string(),
                routes,
            }
        }
    }
}

/// [`Dialog::next_hop_uri`] of a remote target and route set.
pub(super) fn next_hop_uri<'a>(remote_target: &'a str, route_set: &'a [String]) -> &'a str {
    route_set
        .first()
        .map_or(remote_target, |first| contact_uri(first))
}

/// Whether a Route/Record-Route value names a loose router: its URI has the `lr` parameter.
pub(super) fn is_loose(route: &str) -> bool {
    contact_uri(route).split(';').skip(1).any(|param| {
        param
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("lr")
    })
}

/// The route set of a UAC: the Record-Route values of the response, in reverse order
/// (RFC 3261 §12.1.2). Of a UAS: in order (§12.1.1).
pub(super) fn record_route(message: &Message, reverse: bool) -> Vec<String> {
    let mut routes: Vec<String> = message
        .header_values(&Name::RECORD_ROUTE)
        .map(str::to_string)
        .collect();
    if reverse {
        routes.reverse();
    }
    routes
}

pub(super) use crate::sip::msg::tag_param as tag_of;

/// The value of the header `name` of `message` (first occurrence), for dialog matching.
pub(super) fn header_tag<'a>(message: &'a Message, name: &Name) -> Option<&'a str> {
    message.header(name).and_then(tag_of)
}

/// The user part of a SIP URI (`sip:alice@host` → `alice`), if any.
pub(super) fn user_of(uri: &str) -> Option<&str> {
    let uri = contact_uri(uri);
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    let (user, _) = rest.split_once('@')?;
    let user = user.split([';', ':']).next().unwrap_or(user);
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_in_from_and_to_values() {
        assert_eq!(tag_of("<sip:a@b>;tag=123"), Some("123"));
        assert_eq!(
            tag_of("\"A;tag=x <y>\" <sip:a@b;tag=uri>;foo=1;TAG=abc"),
            Some("abc")
        );
        assert_eq!(tag_of("sip:a@b;tag=bare"), Some("bare"));
        assert_eq!(tag_of("<sip:a@b;tag=inside>"), None);
        assert_eq!(tag_of("<sip:a@b>"), None);
        assert_eq!(tag_of("<sip:a@b>;tag="), None);
        assert_eq!(tag_of("Bob <sip:b@c> ; tag = 7"), Some("7"));
        assert_eq!(tag_of("Bob <sip:b@c> ;tag=7 "), Some("7"));
    }

    #[test]
    fn loose_and_strict_routing_follow_rfc_3261_12_2_1_1() {
        assert!(is_loose("<sip:p1.example.com;lr>"));
        assert!(is_loose("<sip:p1.example.com;transport=udp;LR=on>"));
        assert!(!is_loose("<sip:p1.example.com>"));
        assert!(!is_loose("<sip:p1.example.com;lrx>"));

        let target = "sip:bob@192.0.2.4";
        assert_eq!(
            routing(target, &[]),
            Routing {
                uri: target.into(),
                routes: vec![]
            }
        );
        let loose = vec!["<sip:p1;lr>".to_string(), "<sip:p2;lr>".to_string()];
        assert_eq!(
            routing(target, &loose),
            Routing {
                uri: target.into(),
                routes: loose.clone()
            }
        );
        let strict = vec!["<sip:p1;maddr=x>".to_string(), "<sip:p2;lr>".to_string()];
        assert_eq!(
            routing(target, &strict),
            Routing {
                uri: "sip:p1;maddr=x".into(),
                routes: vec!["<sip:p2;lr>".into(), format!("<{target}>")]
            }
        );
        // The next hop: the remote target, the first loose router, the strict router (the
        // Request-URI), never the loose router behind a strict one.
        assert_eq!(next_hop_uri(target, &[]), target);
        assert_eq!(next_hop_uri(target, &loose), "sip:p1;lr");
        assert_eq!(next_hop_uri(target, &strict), "sip:p1;maddr=x");
        assert_eq!(next_hop_uri(target, &strict), routing(target, &strict).uri);
    }

    #[test]
    fn user_parts() {
        assert_eq!(user_of("sip:alice@example.com"), Some("alice"));
        assert_eq!(user_of("<sips:bob:pw@h;transport=tls>"), Some("bob"));
        assert_eq!(user_of("sip:example.com"), None);
    }
}
