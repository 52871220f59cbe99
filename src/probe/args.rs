//! Command-line options of the probes and of `answer`, read by clap straight into the values
//! they use: the options every probe shares ([`NetArgs`]) and the parsers of their values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use sipcheck_core::media::g711::Codec;
use sipcheck_core::sip::transaction::TimerConfig;
use sipcheck_core::sip::transport::Transport;

use super::{Network, ProbeError};
use crate::drive::tls::TlsOptions;
use sipcheck_core::sip::uri::SipTarget;

/// `--transport`: read by [`Transport`]'s `FromStr`; the probes offer UDP, TCP, TLS, WS and
/// WSS.
pub fn transport_parser() -> impl TypedValueParser<Value = Transport> {
    PossibleValuesParser::new(["udp", "tcp", "tls", "ws", "wss"])
        .try_map(|s| s.parse::<Transport>())
}

/// The TLS options of the commands that open TLS connections.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Over TLS: trust the CA certificates of this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Over TLS: do not verify the server's certificate (a warning says so).
    #[arg(long)]
    pub insecure: bool,
    /// Over TLS: our certificate (PEM), shown to a server that asks for one.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Over TLS: the private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The options, without a server certificate.
    #[must_use]
    pub fn options(&self) -> TlsOptions {
        TlsOptions {
            ca: self.ca.clone(),
            insecure: self.insecure,
            client_cert: self.client_cert.clone().zip(self.client_key.clone()),
            server_cert: None,
        }
    }
}

/// `--codec`: read by [`Codec`]'s `FromStr`, spelt in lower case on the command line.
pub fn codec_parser() -> impl TypedValueParser<Value = Codec> {
    PossibleValuesParser::new(["pcmu", "pcma"]).try_map(|s| s.parse::<Codec>())
}

/// Network and timer options shared by the probes.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// Transport for SIP [default: udp; tls for a sips: URI or ;transport=tls].
    #[arg(long, value_parser = transport_parser())]
    pub transport: Option<Transport>,
    /// Local address to send from, e.g. 127.0.0.1:5070 (default: the address routed to the
    /// peer, ephemeral port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub local: Option<SocketAddr>,
    /// RFC 3261 T1 (round-trip estimate); Timer B/F fire at 64*T1.
    #[arg(long, default_value = "500ms", value_parser = parse_t1)]
    pub t1: Duration,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE requests).
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub t2: Duration,
    /// RFC 3261 T4 (maximum time a message remains in the network).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub t4: Duration,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long in all (the probe fails, naming the limit), e.g. 2s.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Over WS/WSS: the resource path of the WebSocket handshake (RFC 7118), e.g. /ws.
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub ws_path: String,
}

impl NetArgs {
    /// Where requests go and how: over `--transport` (UDP when not given).
    #[must_use]
    pub fn network(&self) -> Network {
        Network {
            transport: self.transport.unwrap_or(Transport::Udp),
            local: self.local,
            timeout: self.timeout,
            tls: self.tls.options(),
            ws_path: self.ws_path.clone(),
        }
    }

    /// Where a request to `target` goes and how: a `sips:` URI or `;transport=` chooses the
    /// transport when `--transport` does not (RFC 3261 §19.1.2: `sips:` means TLS, port 5061
    /// by default); `--transport tls` or `wss` carries a `sips:` URI as given.
    ///
    /// # Errors
    /// A `sips:` URI with a `--transport` that is no TLS (RFC 3261 §26.2.2: never sent
    /// over UDP, TCP or WS).
    pub fn network_for(&self, target: &SipTarget) -> Result<Network, ProbeError> {
        let mut net = self.network();
        net.transport = match (self.transport, target.transport) {
            (Some(given), _) if target.is_sips() && !given.is_secure() => {
                return Err(ProbeError::Invalid(format!(
                    "{} is a sips: URI, which needs TLS: it cannot go over --transport {} \
                     (give --transport tls, or none)",
                    target.uri,
                    given.uri_param()
                )))
            }
            (Some(given), _) if target.is_sips() => given,
            (_, Some(from_uri)) => from_uri,
            (Some(given), None) => given,
            (None, None) => Transport::Udp,
        };
        Ok(net)
    }

    /// The SIP timers.
    #[must_use]
    pub fn timers(&self) -> TimerConfig {
        TimerConfig {
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
        }
    }
}

/// A duration on the command line, read exactly as in a scenario (`500ms`, `2s`, `1m30s`,
/// `5sec`, `2min`; at most 30 days): one set of units everywhere.
///
/// # Errors
/// The scenario's message for a text that is no such duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<sipcheck_core::scenario::units::Duration>()
        .map(Duration::from)
        .map_err(|e| e.to_string())
}

/// T1 is the unit of every SIP timer: 0 would retransmit without pause and time out at once.
///
/// # Errors
/// A text that is no duration, or 0.
pub fn parse_t1(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "'{s}' is no T1: it must be more than 0 (e.g. 500ms)"
        ));
    }
    Ok(d)
}

/// The cap on live server transactions: at least 1.
///
/// # Errors
/// A text that is no number, or 0.
pub fn parse_max_transactions(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

/// A server or proxy, `HOST[:PORT]`: refused here if its port is 0, or if it is a `sips:`
/// address (the transport is `--transport`'s: `tls` for TLS); the rest is resolved (and
/// refused, naming why) later.
///
/// # Errors
/// A port of 0, or a `sips:` address.
pub fn parse_server(s: &str) -> Result<String, String> {
    if s.trim()
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
    {
        return Err(format!(
            "{s}: give HOST[:PORT] and --transport tls (TLS, port 5061 by default)"
        ));
    }
    let port = if let Some(rest) = s.strip_prefix('[') {
        rest.split_once(']')
            .and_then(|(_, after)| after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => Some(port),
            _ => None,
        }
    };
    match port.map(str::parse::<u16>) {
        None => Ok(s.to_string()),
        Some(Ok(0)) => Err(format!(
            "'{s}' names port 0; give a port from 1 to 65535 or none"
        )),
        Some(_) => Ok(s.to_string()),
    }
}

/// A registrar, `HOST[:PORT]` as [`parse_server`] reads it, or `sips:HOST[:PORT]`: a
/// `sips:` address of record registered over TLS (RFC 5630 §3.1.2).
///
/// # Errors
/// A port of 0.
pub fn parse_registrar(s: &str) -> Result<String, String> {
    match s.trim().get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sips:") => {
            parse_server(&s.trim()[5..]).map(|_| s.trim().to_string())
        }
        _ => parse_server(s),
    }
}

/// A tone level in dBFS: a number, at most 0 (full scale).
///
/// # Errors
/// A text that is no finite number, or one above 0.
pub fn parse_level(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(l) if l.is_finite() && l <= 0.0 => Ok(l),
        Ok(l) if l.is_finite() => Err(format!(
            "'{s}' is above full scale: a level is in dBFS, at most 0 (e.g. -12)"
        )),
        _ => Err(format!(
            "'{s}' is not a level in dBFS (a number at most 0, e.g. -12)"
        )),
    }
}

/// A range of local ports, `FIRST-LAST` (both included).
///
/// # Errors
/// A text that is no such range, a port of 0, or a last port below the first.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range (FIRST-LAST, e.g. 20000-29999)"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' is not a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' is not a port"))?;
    if a == 0 || b < a {
        return Err(format!("'{s}' is not a port range (1 <= FIRST <= LAST)"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_t1_level_ports_and_servers() {
        assert_eq!(parse_t1("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_t1("0ms").is_err());
        assert_eq!(parse_level("0"), Ok(0.0));
        assert_eq!(parse_level("-12.5"), Ok(-12.5));
        for bad in ["0.1", "100", "NaN", "-inf", "loud"] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_port_range("20000-29999"), Ok((20000, 29999)));
        assert_eq!(parse_port_range("5000-5000"), Ok((5000, 5000)));
        for bad in ["20000", "0-10", "10-9", "1-65536", "a-b"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
        for good in [
            "pbx",
            "pbx:5060",
            "127.0.0.1:1",
            "[::1]:5060",
            "::1",
            "[::1]",
        ] {
            assert_eq!(parse_server(good).as_deref(), Ok(good));
        }
        for bad in ["pbx:0", "127.0.0.1:0", "[::1]:0"] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
        for uri in ["sips:pbx", "SIPS:127.0.0.1:5061", " sips:[::1]"] {
            let err = parse_server(uri).unwrap_err();
            assert!(err.contains("--transport tls"), "{err}");
            // A registrar may be sips: (a sips: address of record).
            assert_eq!(parse_registrar(uri).as_deref(), Ok(uri.trim()));
        }
        assert_eq!(parse_registrar("pbx:5060").as_deref(), Ok("pbx:5060"));
        assert!(parse_registrar("sips:pbx:0").is_err());
    }
}
