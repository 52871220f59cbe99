//! One-off probes: `sipcheck options` and `sipcheck register`.

pub mod args;
pub mod audio;
pub mod call;
pub(crate) mod oneshot;
pub mod options;
pub mod register;

use std::net::SocketAddr;

use sipcheck_core::sip::transport::Transport;
use sipcheck_core::sip::uri::UriError;

use crate::drive::tls::{TlsContext, TlsOptions, TlsSetupError};
use crate::drive::transport::{self, SipSocket, TransportError};
use crate::drive::ws::WsTarget;

/// Errors that stop a probe before its outcome is known: bad input or a local problem.
/// (A SIP failure is an outcome, not an error.)
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URI is not valid.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A transport could not be set up (resolution, bind, connect).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A TLS option cannot be used (a file missing or bad).
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// A flag value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The registration a command needs failed (the registrar's fault, as for `register`).
    #[error("registration failed: {0}")]
    Registration(String),
}

impl ProbeError {
    /// True when the peer, not the input, is at fault: it refused or closed the connection,
    /// or sent a stream that cannot be framed. Such an outcome is a failure of the system
    /// under test (exit 1), not a usage error (exit 2).
    pub fn is_peer_failure(&self) -> bool {
        matches!(
            self,
            ProbeError::Transport(
                TransportError::Stream { .. }
                    | TransportError::Closed(_)
                    | TransportError::Connect { .. }
                    | TransportError::Tls { .. }
                    | TransportError::WebSocket { .. }
                    | TransportError::Unreachable { .. }
            ) | ProbeError::Registration(_)
        )
    }
}

/// Where requests go and how.
#[derive(Debug, Clone)]
pub struct Network {
    /// UDP or TCP.
    pub transport: Transport,
    /// Local address to bind (port 0 or absent: ephemeral).
    pub local: Option<SocketAddr>,
    /// The overall limit of the probe (`--timeout`): it fails, naming the limit, when
    /// nothing has concluded by then.
    pub timeout: Option<std::time::Duration>,
    /// Over TLS (and WSS): what to trust, what to show.
    pub tls: TlsOptions,
    /// Over WebSocket: the resource path of the handshake (`/` by default).
    pub ws_path: String,
}

/// Resolve `host` (port 5060 by default, 5061 over TLS, 80 over WS, 443 over WSS) and open
/// the transport towards it; over TLS and WSS, the server's certificate is verified for
/// `host`'s name (or IP address); over WS and WSS, the handshake names `host` and
/// [`Network::ws_path`].
pub async fn connect(host: &str, net: &Network) -> Result<(SipSocket, SocketAddr), ProbeError> {
    let peer = transport::resolve(host, net.transport.default_port()).await?;
    let tls = if net.transport.is_secure() {
        Some((tls_context(&net.tls)?, Some(register::host_of(host))))
    } else {
        None
    };
    let ws = net
        .transport
        .is_websocket()
        .then(|| WsTarget::new(&net.ws_path, Some(register::host_of(host))));
    let t = SipSocket::open(net.transport, peer, net.local, tls, ws).await?;
    Ok((t, peer))
}

/// The TLS context of `opts`, warning on stderr when certificates go unverified.
///
/// # Errors
/// A file of the options missing or unusable.
pub fn tls_context(opts: &TlsOptions) -> Result<TlsContext, ProbeError> {
    let ctx = TlsContext::new(opts)?;
    if ctx.insecure() {
        eprintln!(
            "sipcheck: warning: --insecure: TLS certificates are not verified; the peer may \
             not be who it claims to be"
        );
    }
    Ok(ctx)
}

/// How long the handshakes of the connection a probe opened took, in milliseconds from the
/// TCP connect's start (the same span as a run's `tls_handshake` and `ws_handshake`): to the
/// end of the TLS handshake, and to the WebSocket upgrade's 101 (over WSS, after TLS). `None`
/// for a transport without the handshake. Flattened into each probe's JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Handshakes {
    /// TLS and WSS: TCP connect and TLS handshake.
    pub tls_handshake_ms: Option<f64>,
    /// WS and WSS: up to the WebSocket upgrade.
    pub ws_handshake_ms: Option<f64>,
}

impl Handshakes {
    /// The handshakes of the connection `socket` opened.
    #[must_use]
    pub fn of(socket: &SipSocket) -> Self {
        let took = socket.handshake();
        Self {
            tls_handshake_ms: took.tls.map(sipcheck_core::stats::ladder::millis),
            ws_handshake_ms: took.ws.map(sipcheck_core::stats::ladder::millis),
        }
    }

    /// One line per handshake, naming `server`.
    pub fn write_text(&self, out: &mut impl std::io::Write, server: &str) -> std::io::Result<()> {
        if let Some(ms) = self.tls_handshake_ms {
            writeln!(
                out,
                "TLS handshake with {server} in {ms:.3} ms (from the TCP connect)"
            )?;
        }
        if let Some(ms) = self.ws_handshake_ms {
            writeln!(
                out,
                "WebSocket handshake with {server} in {ms:.3} ms (from the TCP connect)"
            )?;
        }
        Ok(())
    }
}

/// Pass or fail, as printed and as JSON (`pass`, `fail`): the one verdict type of every
/// command, from the core.
pub use sipcheck_core::stats::verdict::Verdict;

#[cfg(test)]
mod tests {
    use super::{Handshakes, Verdict};

    #[test]
    fn the_handshake_times_are_printed_and_flattened_into_the_json() {
        let tls = Handshakes {
            tls_handshake_ms: Some(3.25),
            ws_handshake_ms: None,
        };
        let mut text = Vec::new();
        tls.write_text(&mut text, "127.0.0.1:5061").unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "TLS handshake with 127.0.0.1:5061 in 3.250 ms (from the TCP connect)\n"
        );
        let wss = Handshakes {
            tls_handshake_ms: Some(2.0),
            ws_handshake_ms: Some(2.5),
        };
        let mut text = Vec::new();
        wss.write_text(&mut text, "h:443").unwrap();
        assert!(String::from_utf8(text)
            .unwrap()
            .ends_with("WebSocket handshake with h:443 in 2.500 ms (from the TCP connect)\n"));
        let mut none = Vec::new();
        Handshakes::default().write_text(&mut none, "x").unwrap();
        assert!(none.is_empty());
        assert_eq!(
            serde_json::to_value(tls).unwrap(),
            serde_json::json!({ "tls_handshake_ms": 3.25, "ws_handshake_ms": null })
        );
    }

    #[test]
    fn the_probes_json_spells_the_verdict_pass_or_fail() {
        let json = |v: Verdict| serde_json::to_string(&v).unwrap();
        assert_eq!(json(Verdict::Passed), r#""pass""#);
        assert_eq!(json(Verdict::Failed), r#""fail""#);
    }
}
