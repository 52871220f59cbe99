//! SIP over TLS (RFC 3261 §26.2.1): the TCP streams of [`crate::drive::transport`] wrapped
//! by rustls (its `ring` provider, no OpenSSL). Framing by `Content-Length`, keep-alives and
//! connection reuse are the TCP transport's, unchanged.
//!
//! The server's certificate is verified by default, against the system's roots (Debian's
//! `/etc/ssl/certs`, read by `rustls-native-certs`) or the certificates of `--ca FILE`; the
//! name verified is the host of the URI, `--server` or `--proxy` (sent as SNI; an IP literal
//! sends none and is verified against the certificate's IP addresses). `--insecure` skips
//! the verification (a warning says so).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::drive::transport::TransportError;

/// A byte stream SIP is framed on: a TCP connection, or TLS over one.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Stream for T {}

/// A TCP or TLS connection.
pub type SipStream = Box<dyn Stream>;

/// How long a TLS handshake may take once TCP is connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the command line says about TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Trust the certificates of this PEM file instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Verify no server certificate.
    pub insecure: bool,
    /// Our certificate chain and key, shown to a server that asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Our certificate chain and key, for connections peers open to us.
    pub server_cert: Option<(PathBuf, PathBuf)>,
}

/// A TLS option that cannot be used (a bad input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A certificate, key or CA file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No system root certificate could be loaded.
    #[error("no trusted root certificate found on this system (give --ca FILE)")]
    NoRoots,
    /// rustls refused the configuration (e.g. a key that is not the certificate's).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The TLS side of a transport: how to open connections (verifying the server) and, with a
/// certificate, how to accept them.
#[derive(Clone)]
pub struct TlsContext {
    connector: TlsConnector,
    acceptor: Option<TlsAcceptor>,
    insecure: bool,
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("acceptor", &self.acceptor.is_some())
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

// ring, as chosen (no C toolchain beyond what ring builds, no OpenSSL); its provider has no
// post-quantum key exchange, which SIP test traffic does not need. Its default offers P-384
// first, whose key exchange ring computes in portable code: measured with perf, more than
// half of a caller's CPU per new connection. X25519 first (as OpenSSL and browsers do), then
// P-256 and P-384 for peers that want them.
//
// `SIPCHECK_TLS_GROUPS` (undocumented but for the benchmarks: `x25519`, `p256`, `p384`,
// comma-separated, in order) replaces that list, to measure (or reproduce a problem with)
// slower handshakes.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    let mut provider = ring::default_provider();
    provider.kx_groups = std::env::var("SIPCHECK_TLS_GROUPS")
        .ok()
        .and_then(|groups| kx_groups(&groups))
        .unwrap_or_else(|| {
            vec![
                ring::kx_group::X25519,
                ring::kx_group::SECP256R1,
                ring::kx_group::SECP384R1,
            ]
        });
    Arc::new(provider)
}

/// Key exchange groups by name (`x25519,p256,p384`); `None` when one is unknown or none given.
fn kx_groups(names: &str) -> Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>> {
    names
        .split(',')
        .map(|name| match name.trim() {
            "x25519" => Some(ring::kx_group::X25519),
            "p256" => Some(ring::kx_group::SECP256R1),
            "p384" => Some(ring::kx_group::SECP384R1),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|groups| !groups.is_empty())
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, pem_error(e)))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(path, "holds no PEM private key"),
        e => file_error(path, pem_error(e)),
    })
}

impl TlsContext {
    /// Build the client (and, with `server_cert`, the server) configuration, reading every
    /// file now: a missing or bad file is an error naming it.
    pub fn new(opts: &TlsOptions) -> Result<Self, TlsSetupError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Config(e.to_string()))?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        } else {
            let mut roots = RootCertStore::empty();
            match &opts.ca {
                Some(ca) => {
                    for cert in load_certs(ca)? {
                        roots
                            .add(cert)
                            .map_err(|e| file_error(ca, format!("not a CA certificate: {e}")))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        return Err(TlsSetupError::NoRoots);
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let client = match &opts.client_cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| {
                    file_error(key, format!("cannot be used with {}: {e}", cert.display()))
                })?,
            None => builder.with_no_client_auth(),
        };
        let acceptor = match &opts.server_cert {
            Some((cert, key)) => {
                let server = ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| TlsSetupError::Config(e.to_string()))?
                    .with_no_client_auth()
                    .with_single_cert(load_certs(cert)?, load_key(key)?)
                    .map_err(|e| {
                        file_error(key, format!("cannot be used with {}: {e}", cert.display()))
                    })?;
                Some(TlsAcceptor::from(Arc::new(server)))
            }
            None => None,
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor,
            insecure: opts.insecure,
        })
    }

    /// True when server certificates are not verified.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// True when connections opened to us can be accepted (we have a certificate).
    pub fn can_accept(&self) -> bool {
        self.acceptor.is_some()
    }

    /// The TLS handshake over `tcp` as the client of `peer`, verifying its certificate for
    /// `name` (a host name or an IP literal; `None`: `peer`'s IP address).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        name: Option<&str>,
    ) -> Result<SipStream, TransportError> {
        let name =
            match name {
                Some(host) => ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| TransportError::Tls {
                        addr: peer,
                        reason: format!(
                            "'{host}' is no name a certificate can be verified for: {e}"
                        ),
                    })?,
                None => ServerName::from(peer.ip()),
            };
        let handshake = self.connector.connect(name, tcp);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(TransportError::Tls {
                addr: peer,
                reason: describe(&e),
            }),
            Err(_) => Err(TransportError::Tls {
                addr: peer,
                reason: format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            }),
        }
    }

    /// The TLS handshake over `tcp` as the server, when we have a certificate.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<SipStream, TransportError> {
        let Some(acceptor) = &self.acceptor else {
            return Err(TransportError::Tls {
                addr: peer,
                reason: "a connection came in but no server certificate was given (--cert, --key)"
                    .into(),
            });
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Ok(Box::new(stream)),
            Ok(Err(e)) => Err(TransportError::Tls {
                addr: peer,
                reason: describe(&e),
            }),
            Err(_) => Err(TransportError::Tls {
                addr: peer,
                reason: format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
            }),
        }
    }
}

/// How long a connection's handshakes took, each from the TCP connect's start: to the end of
/// the TLS handshake, and to the end of the WebSocket upgrade (over TLS, after it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeTook {
    /// TLS (and WSS): the TCP connect and the TLS handshake.
    pub tls: Option<Duration>,
    /// WS and WSS: up to the WebSocket upgrade's 101.
    pub ws: Option<Duration>,
}

/// Connect TCP to `peer` (from `local`'s address when given), with `tls` shake hands, and with
/// `ws` upgrade the connection to WebSocket (over TLS: WSS): the stream, and how long the
/// handshakes took from the TCP connect's start.
pub async fn open_stream(
    tcp: impl std::future::Future<Output = Result<TcpStream, TransportError>>,
    peer: SocketAddr,
    tls: Option<(&TlsContext, Option<&str>)>,
    ws: Option<&crate::drive::ws::WsTarget>,
) -> Result<(SipStream, HandshakeTook), TransportError> {
    let start = Instant::now();
    let tcp = tcp.await?;
    let _ = tcp.set_nodelay(true);
    let (stream, took): (SipStream, _) = match tls {
        None => (Box::new(tcp), None),
        Some((ctx, name)) => {
            let stream = ctx.connect(tcp, peer, name).await?;
            let took = start.elapsed();
            HANDSHAKES.record(took);
            (stream, Some(took))
        }
    };
    match ws {
        None => Ok((
            stream,
            HandshakeTook {
                tls: took,
                ws: None,
            },
        )),
        Some(target) => {
            let stream = crate::drive::ws::connect(stream, peer, target, tls.is_some()).await?;
            let ws_took = start.elapsed();
            crate::drive::ws::HANDSHAKES.record(ws_took);
            Ok((
                stream,
                HandshakeTook {
                    tls: took,
                    ws: Some(ws_took),
                },
            ))
        }
    }
}

/// TLS handshake durations of the process, for the run's `tls_handshake` histogram.
pub static HANDSHAKES: crate::drive::transport::HandshakeTimes =
    crate::drive::transport::HandshakeTimes::new();

/// What went wrong in a handshake, in words a user understands.
pub fn describe(e: &io::Error) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the peer closed the connection during the handshake (is it a TLS port?)".into()
            }
            _ => e.to_string(),
        };
    };
    describe_tls(tls)
}

fn describe_tls(e: &rustls::Error) -> String {
    const HINT: &str = "give --ca FILE to trust its issuer, or --insecure to skip verification";
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "certificate is not trusted: it is self-signed or signed by an unknown \
                 authority ({HINT})"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("certificate has expired ({HINT})")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("certificate is not valid yet ({HINT})")
            }
            CertificateError::NotValidForName => {
                format!("certificate is not valid for this host name ({HINT})")
            }
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "certificate is not valid for {}: it names {} ({HINT})",
                expected.to_str(),
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    presented
                        .iter()
                        .map(|name| plain_name(name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
            CertificateError::Revoked => "certificate has been revoked".into(),
            CertificateError::BadSignature => "certificate has a bad signature".into(),
            CertificateError::BadEncoding => "certificate cannot be decoded".into(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate is not meant for a TLS server".into()
            }
            // A self-signed certificate as `openssl req -x509` makes it: marked as a CA.
            CertificateError::Other(other)
                if format!("{other:?}").contains("CaUsedAsEndEntity") =>
            {
                format!(
                    "certificate is not trusted: it is self-signed (a CA certificate presented \
                     as the server's) ({HINT})"
                )
            }
            other => format!("certificate refused: {other:?}"),
        },
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the peer requires a client certificate (give --client-cert FILE --client-key FILE)"
                .into()
        }
        rustls::Error::AlertReceived(alert) => {
            format!("the peer refused the handshake (TLS alert {alert:?})")
        }
        rustls::Error::NoCertificatesPresented => "the peer presented no certificate".into(),
        rustls::Error::InvalidMessage(m) => {
            format!("the peer sent something that is no TLS handshake ({m:?})")
        }
        rustls::Error::PeerIncompatible(p) => format!("no TLS version or cipher in common ({p:?})"),
        other => other.to_string(),
    }
}

/// A name as rustls presents it (`DnsName("pbx.test")`, `IpAddress(192.0.2.1)`), plain.
fn plain_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// `--insecure`: every certificate is taken, its handshake signatures still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn x25519_is_the_key_exchange_offered_first() {
        let groups: Vec<_> = super::provider()
            .kx_groups
            .iter()
            .map(|g| g.name())
            .collect();
        assert_eq!(
            groups,
            [
                rustls::NamedGroup::X25519,
                rustls::NamedGroup::secp256r1,
                rustls::NamedGroup::secp384r1
            ]
        );
    }

    #[test]
    fn the_groups_of_the_benchmarks_are_read_in_order_and_an_unknown_one_keeps_the_default() {
        let names = |list: &str| {
            super::kx_groups(list).map(|groups| groups.iter().map(|g| g.name()).collect::<Vec<_>>())
        };
        assert_eq!(names("p384"), Some(vec![rustls::NamedGroup::secp384r1]));
        assert_eq!(
            names("p256, x25519"),
            Some(vec![
                rustls::NamedGroup::secp256r1,
                rustls::NamedGroup::X25519
            ])
        );
        assert_eq!(names("p384,x448"), None);
        assert_eq!(names(""), None);
    }
}
