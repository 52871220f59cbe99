//! The SIP transport of a request or a connection: UDP, TCP, TLS, or WebSocket (RFC 7118).

use std::fmt;
use std::str::FromStr;

/// A SIP transport (RFC 3261 §18): what Via, Contact and `transport=` name, what decides
/// whether transactions retransmit, and what a scenario's `target.transport` and the
/// `--transport` option hold. The one transport type of the crate.
///
/// `Display` writes the lowercase token (`udp`); [`FromStr`] reads it in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: transactions retransmit). The default.
    Udp,
    /// TCP (reliable: no retransmission).
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118): one SIP message per WebSocket message, over TCP.
    Ws,
    /// Secure WebSocket (RFC 7118): WebSocket over TLS.
    Wss,
}

impl Transport {
    /// The token written in Via (`UDP`, `TCP`, `TLS`, `WS`, `WSS`: RFC 7118 §5).
    #[must_use]
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter value (`udp`, `tcp`, `tls`, `ws`, `wss`).
    #[must_use]
    pub fn uri_param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// True when the transport itself guarantees delivery (RFC 3261 §17: no retransmission).
    #[must_use]
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }

    /// True when the transport is encrypted (TLS, WSS): its peer's certificate is verified.
    #[must_use]
    pub fn is_secure(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// True for WebSocket (WS, WSS).
    #[must_use]
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The port a server listens on when none is given: 5060, or 5061 for TLS (RFC 3261
    /// §19.1.2); 80 for WS and 443 for WSS, the ports of HTTP (RFC 7118 §5, RFC 6455 §3).
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Self::Tls => 5061,
            Self::Udp | Self::Tcp => 5060,
            Self::Ws => 80,
            Self::Wss => 443,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri_param())
    }
}

/// A transport name that is none of `udp`, `tcp`, `tls`, `ws`, `wss`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a transport: expected udp, tcp, tls, ws or wss")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    /// Reads `udp`, `tcp`, `tls`, `ws` or `wss`, in any case (URI parameters are
    /// case-insensitive, RFC 3261 §19.1.4).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Udp, Self::Tcp, Self::Tls, Self::Ws, Self::Wss]
            .into_iter()
            .find(|t| s.eq_ignore_ascii_case(t.uri_param()))
            .ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_has_its_via_token_uri_parameter_and_default_port() {
        assert_eq!(Transport::Tcp.via_token(), "TCP");
        assert_eq!(Transport::Tls.uri_param(), "tls");
        assert_eq!(Transport::Udp.to_string(), "udp");
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Tcp.is_reliable());
        assert_eq!(Transport::Tls.default_port(), 5061);
        assert_eq!(Transport::Udp.default_port(), 5060);
        assert_eq!(Transport::Tcp.default_port(), 5060);
        assert_eq!(Transport::Ws.via_token(), "WS");
        assert_eq!(Transport::Wss.via_token(), "WSS");
        assert_eq!(Transport::Wss.uri_param(), "wss");
        assert_eq!(Transport::Ws.default_port(), 80);
        assert_eq!(Transport::Wss.default_port(), 443);
        assert!(Transport::Ws.is_reliable() && Transport::Ws.is_websocket());
        assert!(Transport::Wss.is_secure() && !Transport::Ws.is_secure());
        assert!(!Transport::Tls.is_websocket());
    }

    #[test]
    fn a_transport_parses_from_its_token_in_any_case() {
        assert_eq!("udp".parse(), Ok(Transport::Udp));
        assert_eq!("TCP".parse(), Ok(Transport::Tcp));
        assert_eq!("Tls".parse(), Ok(Transport::Tls));
        assert_eq!("WS".parse(), Ok(Transport::Ws));
        assert_eq!("wss".parse(), Ok(Transport::Wss));
        assert_eq!(
            "sctp".parse::<Transport>().unwrap_err().to_string(),
            "'sctp' is not a transport: expected udp, tcp, tls, ws or wss"
        );
    }
}
