//! SIP URIs as a user types them (`sip:user@host:port;transport=tcp`), where a URI sends a
//! request ([`NextHop`]), and IPv6 hosts written in brackets.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use ezk_sip_types::host::Host;
use ezk_sip_types::parse::Parse;
use ezk_sip_types::uri::{SipUri, SipUriUserPart};

use super::transport::Transport;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Not a `sip:` or `sips:` URI, or not parsable as one.
    #[error("'{0}' is not a valid SIP URI (expected sip:user@host[:port])")]
    Invalid(String),
    /// The URI names port 0, which no peer listens on.
    #[error("'{0}' names port 0; give a port from 1 to 65535 or none")]
    PortZero(String),
    /// A `transport=` parameter names a transport sipcheck does not speak.
    #[error("'{0}' names an unsupported transport '{1}'")]
    UnsupportedTransport(String, String),
    /// A `sips:` URI with a `transport=` other than TLS: a sips: URI needs TLS on every hop
    /// (RFC 3261 §26.2.2), plain UDP or TCP would not honour it.
    #[error("'{0}' is a sips: URI, which needs TLS: it cannot go over transport={1}")]
    NeedsTls(String, Transport),
}

/// A parsed SIP URI: what a probe needs to address a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// The URI as given (used as the Request-URI).
    pub uri: String,
    /// The user part, if any.
    pub user: Option<String>,
    /// The host (a name, an IPv4 address, or an IPv6 address in brackets).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// The `transport=` parameter, if given.
    pub transport: Option<Transport>,
}

impl SipTarget {
    /// Parse `input`; a missing `sip:` scheme is added. A `sips:` URI or `transport=tls`
    /// selects TLS; a `sips:` URI with another `transport=` is refused
    /// ([`UriError::NeedsTls`]).
    pub fn parse(input: &str) -> Result<Self, UriError> {
        let input = input.trim();
        let sips = input
            .get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"));
        let uri = if sips {
            format!("sips:{}", &input[5..])
        } else if input.starts_with("sip:") {
            input.to_string()
        } else {
            format!("sip:{input}")
        };
        let parsed = SipUri::parse_str(&uri).map_err(|_| UriError::Invalid(input.to_string()))?;
        let user = match &parsed.user_part {
            SipUriUserPart::Empty => None,
            SipUriUserPart::User(u) => Some(u.to_string()),
            SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
        };
        let host = match &parsed.host_port.host {
            Host::IP6(ip) => format!("[{ip}]"),
            Host::IP4(ip) => ip.to_string(),
            Host::Name(n) => n.to_string(),
        };
        let transport = match parsed
            .uri_params
            .get_val("transport")
            .map(|t| (t, t.parse::<Transport>()))
        {
            None if parsed.sips || sips => Some(Transport::Tls),
            None => None,
            Some((_, Ok(t))) if t.is_secure() => Some(t),
            Some((_, Ok(t))) if parsed.sips || sips => {
                return Err(UriError::NeedsTls(input.to_string(), t))
            }
            Some((_, Ok(t))) => Some(t),
            Some((t, Err(_))) => {
                return Err(UriError::UnsupportedTransport(
                    input.to_string(),
                    t.to_string(),
                ))
            }
        };
        if parsed.host_port.port == Some(0) {
            return Err(UriError::PortZero(input.to_string()));
        }
        Ok(Self {
            uri,
            user,
            host,
            port: parsed.host_port.port,
            transport,
        })
    }

    /// Whether the URI is a `sips:` URI (RFC 3261 §19.1: TLS on every hop).
    pub fn is_sips(&self) -> bool {
        self.uri.starts_with("sips:")
    }

    /// `host:port`, with `default_port` when the URI has none.
    pub fn host_port(&self, default_port: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(default_port))
    }
}

/// A destination a request addressed to a SIP URI can be sent to, found without a name
/// lookup: the sans-IO core resolves nothing, so a URI whose host is a name gives `None` (the
/// caller keeps the destination it already has).
pub trait NextHop: Sized {
    /// The destination of `uri` (a bare URI or a name-addr such as a Route value) when we
    /// speak `transport`.
    fn from_uri(uri: &str, transport: Transport) -> Option<Self>;
}

/// RFC 3263 §4.2 for a numeric host: the `maddr` parameter when present (RFC 3261 §19.1.1),
/// else the host; the port of the URI, else 5060 (5061 for `sips:`, `transport=tls`, or when
/// we speak TLS; 80 and 443 for `transport=ws` and `wss`, or when we speak them). An unspecified address (`0.0.0.0`, `::`, written by a peer bound to every
/// interface) or port 0 names no destination.
impl NextHop for SocketAddr {
    fn from_uri(uri: &str, transport: Transport) -> Option<Self> {
        // A name-addr loses its brackets; a bare URI keeps its parameters.
        let uri = if uri.contains('<') {
            super::msg::contact_uri(uri)
        } else {
            uri.trim()
        };
        let parsed = SipUri::parse_str(uri).ok()?;
        let param = parsed
            .uri_params
            .get_val("transport")
            .and_then(|t| t.parse::<Transport>().ok());
        let tls = parsed.sips || transport == Transport::Tls || param == Some(Transport::Tls);
        let default_port = match param.unwrap_or(transport) {
            // RFC 7118 §5: a WebSocket URI without a port names HTTP's.
            t @ (Transport::Ws | Transport::Wss) => t.default_port(),
            _ if tls => 5061,
            _ => 5060,
        };
        let port = parsed.host_port.port.unwrap_or(default_port);
        let ip = match parsed.uri_params.get_val("maddr") {
            Some(maddr) => maddr.trim_matches(['[', ']']).parse::<IpAddr>().ok()?,
            None => match &parsed.host_port.host {
                Host::IP4(ip) => IpAddr::V4(*ip),
                Host::IP6(ip) => IpAddr::V6(*ip),
                Host::Name(_) => return None,
            },
        };
        (!ip.is_unspecified() && port != 0).then(|| SocketAddr::new(ip, port))
    }
}

/// An IP address as the host of a URI: IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`).
pub fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// A host as a user gave it, ready for a URI: a bare IPv6 address gets its brackets; names,
/// IPv4 and bracketed IPv6 are kept.
pub fn host_literal(host: &str) -> Cow<'_, str> {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => Cow::Owned(format!("[{ip}]")),
        Err(_) => Cow::Borrowed(host),
    }
}

/// A call's `to` as a user writes it, made a URI: `2001` → `sip:2001@DOMAIN`, `sip:2001` →
/// `sip:2001@DOMAIN`; a URI that names a host (`sip:bob@pbx`, `sip:pbx.example.com`,
/// `sip:[::1]`, `sip:pbx:5060`) or a `tel:` URI is kept as written; `None` when empty. Used
/// alike when a scenario is validated (with `{domain}` for DOMAIN, filled per account) and
/// when its template is filled, so both read a `to` the same way.
#[must_use]
pub fn complete_uri(to: &str, domain: &str) -> Option<String> {
    let to = to.trim();
    if to.is_empty() {
        return None;
    }
    let lower = to.to_ascii_lowercase();
    if lower.starts_with("tel:") {
        return Some(to.to_owned());
    }
    let with_scheme = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        to.to_owned()
    } else {
        format!("sip:{to}")
    };
    let rest = with_scheme
        .split_once(':')
        .map(|(_, r)| r)
        .unwrap_or_default();
    let names_host =
        rest.contains('@') || rest.contains('.') || rest.contains('[') || rest.contains(':');
    if names_host {
        Some(with_scheme)
    } else {
        Some(format!("{with_scheme}@{domain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops_of_numeric_uris() {
        let hop = |uri: &str| SocketAddr::from_uri(uri, Transport::Udp);
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(hop("sip:bob@192.0.2.4:5070"), at("192.0.2.4:5070"));
        assert_eq!(hop("sip:bob@192.0.2.4"), at("192.0.2.4:5060"));
        assert_eq!(hop("<sip:192.0.2.9;lr>"), at("192.0.2.9:5060"));
        assert_eq!(
            hop("\"Proxy\" <sip:192.0.2.9:5080;lr;transport=udp>;x=1"),
            at("192.0.2.9:5080")
        );
        assert_eq!(hop("sip:bob@[::1]:5062"), at("[::1]:5062"));
        assert_eq!(hop("sip:[2001:db8::7];lr"), at("[2001:db8::7]:5060"));
        assert_eq!(hop("sips:bob@192.0.2.4"), at("192.0.2.4:5061"));
        assert_eq!(hop("sip:bob@192.0.2.4;transport=TLS"), at("192.0.2.4:5061"));
        assert_eq!(hop("sip:bob@192.0.2.4;transport=ws"), at("192.0.2.4:80"));
        assert_eq!(hop("sip:bob@192.0.2.4;transport=WSS"), at("192.0.2.4:443"));
        assert_eq!(
            SocketAddr::from_uri("sip:bob@192.0.2.4:8080;transport=ws", Transport::Udp),
            at("192.0.2.4:8080")
        );
        assert_eq!(
            SocketAddr::from_uri("sip:192.0.2.4;lr", Transport::Wss),
            at("192.0.2.4:443")
        );
        assert_eq!(
            SocketAddr::from_uri("sip:bob@192.0.2.4", Transport::Tls),
            at("192.0.2.4:5061")
        );
        // maddr overrides the host (RFC 3261 §19.1.1), the port stays the URI's.
        assert_eq!(
            hop("sip:bob@example.test:5070;maddr=192.0.2.8"),
            at("192.0.2.8:5070")
        );
        assert_eq!(hop("sip:bob@192.0.2.4;maddr=[::1]"), at("[::1]:5060"));
        // A peer bound to every interface wrote its wildcard address: no destination.
        assert_eq!(hop("sip:bob@0.0.0.0:5070"), None);
        assert_eq!(hop("sip:bob@[::]:5070"), None);
        assert_eq!(hop("sip:bob@192.0.2.4:0"), None);
        // Names are not resolved here.
        assert_eq!(hop("sip:bob@example.test:5070"), None);
        assert_eq!(hop("sip:bob@192.0.2.4;maddr=proxy.example.test"), None);
        assert_eq!(hop("tel:+1555"), None);
        assert_eq!(hop("garbage"), None);
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(uri_host("::1".parse().unwrap()), "[::1]");
        assert_eq!(uri_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
        assert_eq!(host_literal("::1"), "[::1]");
        assert_eq!(host_literal("[::1]"), "[::1]");
        assert_eq!(host_literal("2001:db8::1"), "[2001:db8::1]");
        assert_eq!(host_literal("example.test"), "example.test");
        assert_eq!(host_literal("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn parses_what_users_type() {
        let t = SipTarget::parse("sip:1001@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(t.user.as_deref(), Some("1001"));
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, Some(5070));
        assert_eq!(t.transport, Some(Transport::Tcp));
        assert_eq!(t.host_port(5060), "127.0.0.1:5070");

        let t = SipTarget::parse("pbx.example.com").unwrap();
        assert_eq!(t.uri, "sip:pbx.example.com");
        assert_eq!(t.user, None);
        assert_eq!(t.host_port(5060), "pbx.example.com:5060");

        let t = SipTarget::parse("sip:alice@[::1]:5062").unwrap();
        assert_eq!(t.host, "[::1]");
        assert_eq!(t.host_port(5060), "[::1]:5062");
    }

    #[test]
    fn the_transport_parameter_is_read_in_any_case_and_sctp_refused() {
        let t = SipTarget::parse("sip:bob@192.0.2.4;transport=TCP").unwrap();
        assert_eq!(t.transport, Some(Transport::Tcp));
        let t = SipTarget::parse("sip:bob@192.0.2.4;transport=Udp").unwrap();
        assert_eq!(t.transport, Some(Transport::Udp));
        let t = SipTarget::parse("sip:bob@192.0.2.4;transport=tls").unwrap();
        assert_eq!(t.transport, Some(Transport::Tls));
        let t = SipTarget::parse("sip:bob@192.0.2.4;transport=WS").unwrap();
        assert_eq!(t.transport, Some(Transport::Ws));
        let t = SipTarget::parse("sips:bob@192.0.2.4;transport=wss").unwrap();
        assert_eq!(t.transport, Some(Transport::Wss));
        assert_eq!(
            SipTarget::parse("sips:bob@192.0.2.4;transport=ws").unwrap_err(),
            UriError::NeedsTls("sips:bob@192.0.2.4;transport=ws".into(), Transport::Ws)
        );
        assert!(matches!(
            SipTarget::parse("sip:bob@192.0.2.4;transport=sctp"),
            Err(UriError::UnsupportedTransport(_, t)) if t == "sctp"
        ));
    }

    #[test]
    fn port_zero_is_refused() {
        for uri in ["sip:bob@127.0.0.1:0", "pbx.example.com:0", "sip:[::1]:0"] {
            assert!(
                matches!(SipTarget::parse(uri), Err(UriError::PortZero(_))),
                "{uri}"
            );
        }
        assert_eq!(SipTarget::parse("sip:bob@host:1").unwrap().port, Some(1));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "sip:",
            "sip:@",
            "http://x",
            "sip:a@b:99999",
            "sip:a b@c",
            "",
        ] {
            assert!(SipTarget::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            SipTarget::parse("sip:a@b;transport=sctp"),
            Err(UriError::UnsupportedTransport(..))
        ));
    }

    #[test]
    fn sips_uris_and_transport_tls_select_tls_and_sips_over_anything_else_is_refused() {
        for (uri, port) in [
            ("sips:bob@127.0.0.1:5062", 5062),
            ("SIPS:bob@127.0.0.1", 5061),
            ("sips:pbx.example.com", 5061),
            ("sip:bob@127.0.0.1;transport=tls", 5061),
            ("sip:bob@127.0.0.1;transport=TLS", 5061),
        ] {
            let t = SipTarget::parse(uri).unwrap();
            assert_eq!(t.transport, Some(Transport::Tls), "{uri}");
            let default = t.transport.unwrap().default_port();
            assert!(t.host_port(default).ends_with(&format!(":{port}")), "{uri}");
        }
        for (uri, t) in [
            ("sips:bob@127.0.0.1;transport=udp", Transport::Udp),
            ("sips:bob@127.0.0.1;transport=tcp", Transport::Tcp),
        ] {
            let err = SipTarget::parse(uri).unwrap_err();
            assert_eq!(err, UriError::NeedsTls(uri.to_string(), t), "{uri}");
            assert!(err.to_string().contains("needs TLS"), "{err}");
        }
    }

    #[test]
    fn a_call_target_is_completed_with_the_domain_only_when_it_names_no_host() {
        let c = |to: &str| complete_uri(to, "{domain}");
        assert_eq!(c("2001").as_deref(), Some("sip:2001@{domain}"));
        assert_eq!(c("sip:2001").as_deref(), Some("sip:2001@{domain}"));
        assert_eq!(c("sip:{peer}").as_deref(), Some("sip:{peer}@{domain}"));
        assert_eq!(
            c("sip:{peer}@{domain}").as_deref(),
            Some("sip:{peer}@{domain}")
        );
        assert_eq!(c(" sip:bob@pbx ").as_deref(), Some("sip:bob@pbx"));
        assert_eq!(
            c("sip:pbx.example.com").as_deref(),
            Some("sip:pbx.example.com")
        );
        assert_eq!(c("sip:[::1]:5062").as_deref(), Some("sip:[::1]:5062"));
        assert_eq!(c("sip:pbx:5060").as_deref(), Some("sip:pbx:5060"));
        assert_eq!(c("SIP:2001").as_deref(), Some("SIP:2001@{domain}"));
        assert_eq!(c("tel:+15551234").as_deref(), Some("tel:+15551234"));
        assert_eq!(c("sips:2001").as_deref(), Some("sips:2001@{domain}"));
        assert_eq!(c("  "), None);
        // Filled in again at run time, a completed URI is unchanged.
        let done = complete_uri("sip:2001@pbx", "example.com").unwrap();
        assert_eq!(complete_uri(&done, "other").unwrap(), done);
    }
}
