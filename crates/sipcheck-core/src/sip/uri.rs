//! SIP URIs as a user types them: `sip:user@host:port;transport=tcp`.

use ezk_sip_types::host::Host;
use ezk_sip_types::parse::Parse;
use ezk_sip_types::uri::{SipUri, SipUriUserPart};

use super::build::Transport;

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Not a `sip:` or `sips:` URI, or not parsable as one.
    #[error("'{0}' is not a valid SIP URI (expected sip:user@host[:port])")]
    Invalid(String),
    /// A `transport=` parameter names a transport sipcheck does not speak.
    #[error("'{0}' names an unsupported transport '{1}'")]
    UnsupportedTransport(String, String),
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
    /// Parse `input`; a missing `sip:` scheme is added.
    pub fn parse(input: &str) -> Result<Self, UriError> {
        let input = input.trim();
        let uri = if input.starts_with("sip:") || input.starts_with("sips:") {
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
        let transport = match parsed.uri_params.get_val("transport") {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("udp") => Some(Transport::Udp),
            Some(t) if t.eq_ignore_ascii_case("tcp") => Some(Transport::Tcp),
            Some(t) if t.eq_ignore_ascii_case("tls") => Some(Transport::Tls),
            Some(t) => {
                return Err(UriError::UnsupportedTransport(
                    input.to_string(),
                    t.to_string(),
                ))
            }
        };
        Ok(Self {
            uri,
            user,
            host,
            port: parsed.host_port.port,
            transport,
        })
    }

    /// `host:port`, with `default_port` when the URI has none.
    pub fn host_port(&self, default_port: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(default_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
