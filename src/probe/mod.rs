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
    /// Over TLS: what to trust, what to show.
    pub tls: TlsOptions,
}

/// Resolve `host` (port 5060 by default, 5061 over TLS) and open the transport towards it;
/// over TLS, the server's certificate is verified for `host`'s name (or IP address).
pub async fn connect(host: &str, net: &Network) -> Result<(SipSocket, SocketAddr), ProbeError> {
    let peer = transport::resolve(host, net.transport.default_port()).await?;
    let tls = match net.transport {
        Transport::Tls => Some((tls_context(&net.tls)?, Some(register::host_of(host)))),
        Transport::Udp | Transport::Tcp => None,
    };
    let t = SipSocket::open(net.transport, peer, net.local, tls).await?;
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

/// Pass or fail, as printed and as JSON (`pass`, `fail`): the one verdict type of every
/// command, from the core.
pub use sipcheck_core::stats::verdict::Verdict;

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn the_probes_json_spells_the_verdict_pass_or_fail() {
        let json = |v: Verdict| serde_json::to_string(&v).unwrap();
        assert_eq!(json(Verdict::Passed), r#""pass""#);
        assert_eq!(json(Verdict::Failed), r#""fail""#);
    }
}
