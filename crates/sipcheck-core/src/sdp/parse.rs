//! The SDP parser: every line type a call needs read into the model, tolerant of real peers
//! (see the [module documentation](super) for what is tolerated and why).

use std::net::IpAddr;
use std::str::FromStr;

use super::*;

impl Address {
    /// Parses `IN IP4 addr[/ttl[/count]]` or `IN IP6 addr[/count]`.
    pub(super) fn parse(value: &str) -> Result<Self, String> {
        let mut fields = value.split_whitespace();
        let (Some(net_type), Some(addr_type), Some(addr)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err("expected `IN IP4|IP6 <address>`".to_owned());
        };
        if fields.next().is_some() {
            return Err("unexpected data after the address".to_owned());
        }
        Self::from_fields(net_type, addr_type, addr)
    }

    /// [`Address::parse`] of the three fields, already split.
    fn from_fields(net_type: &str, addr_type: &str, addr: &str) -> Result<Self, String> {
        if !net_type.eq_ignore_ascii_case("IN") {
            return Err(format!("network type {} is not IN", quote(net_type)));
        }
        let addr_type = if addr_type.eq_ignore_ascii_case("IP4") {
            AddrType::Ip4
        } else if addr_type.eq_ignore_ascii_case("IP6") {
            AddrType::Ip6
        } else {
            return Err(format!(
                "address type {} is not IP4 or IP6",
                quote(addr_type)
            ));
        };
        // Multicast suffixes: `/ttl[/count]` (IP4), `/count` (IP6).
        let host = addr.split('/').next().unwrap_or(addr);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        // An IPv6 address in brackets, as in a URI (SIPp's stock scenarios write
        // `IN IP6 [::1]`): not RFC 8866, accepted all the same.
        if let Some(ip) = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        {
            return Ok(Self::Ip(IpAddr::V6(ip)));
        }
        let is_host_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if is_host_name {
            Ok(Self::Host {
                addr_type,
                name: host.to_owned(),
            })
        } else {
            Err(format!(
                "{} is neither an ip address nor a host name",
                quote(addr)
            ))
        }
    }
}

impl Origin {
    pub(super) fn parse(value: &str) -> Result<Self, String> {
        let mut fields = value.split_whitespace();
        let mut field = || fields.next();
        let (
            Some(username),
            Some(session_id),
            Some(version),
            Some(net_type),
            Some(addr_type),
            Some(addr),
            None,
        ) = (
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
            field(),
        )
        else {
            return Err(format!(
                "expected 6 fields (username sess-id sess-version IN IP4|IP6 address), found {}",
                value.split_whitespace().count()
            ));
        };
        let version = version
            .parse()
            .map_err(|_| format!("session version {} is not a number", quote(version)))?;
        let address = Address::from_fields(net_type, addr_type, addr)?;
        Ok(Self {
            username: username.to_owned(),
            session_id: session_id.to_owned(),
            version,
            address,
        })
    }
}

impl Direction {
    pub(super) fn from_attribute(name: &str) -> Option<Self> {
        [
            Self::SendRecv,
            Self::SendOnly,
            Self::RecvOnly,
            Self::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str()))
    }
}

impl RtpMap {
    pub(super) fn parse(value: &str) -> Option<Self> {
        let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
        let mut parts = encoding.trim().split('/');
        let encoding_name = parts.next().filter(|n| !n.is_empty())?.to_owned();
        let clock_rate = parts.next()?.parse().ok()?;
        let channels = match parts.next() {
            None => None,
            Some(ch) => Some(ch.parse().ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            payload_type: parse_payload_type(pt)?,
            encoding_name,
            clock_rate,
            channels,
        })
    }
}

impl Fmtp {
    pub(super) fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (pt, parameters) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        Some(Self {
            payload_type: parse_payload_type(pt)?,
            parameters: parameters.trim().to_owned(),
        })
    }
}

impl Rtcp {
    pub(super) fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (port, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        let address = match rest.trim() {
            "" => None,
            rest => Some(Address::parse(rest).ok()?),
        };
        Some(Self {
            port: port.parse().ok()?,
            address,
        })
    }
}

impl MediaType {
    pub(super) fn parse(token: &str) -> Self {
        [
            Self::Audio,
            Self::Video,
            Self::Image,
            Self::Text,
            Self::Application,
            Self::Message,
        ]
        .into_iter()
        .find(|t| token.eq_ignore_ascii_case(t.as_str()))
        .unwrap_or_else(|| Self::Other(token.to_owned()))
    }
}

impl TransportProtocol {
    pub(super) fn parse(token: &str) -> Self {
        if token.eq_ignore_ascii_case("RTP/AVP") {
            Self::RtpAvp
        } else {
            Self::Other(token.to_owned())
        }
    }
}

impl MediaDescription {
    /// Applies one `a=` line of this section.
    fn apply_attribute(&mut self, name: &str, value: Option<&str>) {
        if let Some(direction) = Direction::from_attribute(name) {
            self.direction = Some(direction);
            return;
        }
        let parsed = value.is_some_and(|value| {
            if name.eq_ignore_ascii_case("rtpmap") {
                RtpMap::parse(value).map(|r| self.rtpmaps.push(r)).is_some()
            } else if name.eq_ignore_ascii_case("fmtp") {
                Fmtp::parse(value).map(|f| self.fmtps.push(f)).is_some()
            } else if name.eq_ignore_ascii_case("ptime") {
                value
                    .trim()
                    .parse()
                    .map(|p| self.ptime_ms = Some(p))
                    .is_ok()
            } else if name.eq_ignore_ascii_case("maxptime") {
                value
                    .trim()
                    .parse()
                    .map(|p| self.maxptime_ms = Some(p))
                    .is_ok()
            } else if name.eq_ignore_ascii_case("rtcp") {
                Rtcp::parse(value).map(|r| self.rtcp = Some(r)).is_some()
            } else {
                false
            }
        });
        if !parsed {
            self.attributes.push(Attribute {
                name: name.to_owned(),
                value: value.map(str::to_owned),
            });
        }
    }
}

impl SessionDescription {
    /// Parses an SDP body; see the module documentation for what is tolerated.
    ///
    /// # Errors
    /// A [`ParseError`] naming the offending line: the body is empty, does not start with
    /// `v=0`, has a line that is not `<letter>=<value>`, a malformed `o=`, `c=` or `m=`, no
    /// `o=`, or two.
    pub fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let mut seen_version = false;
        let mut origin: Option<Origin> = None;
        let mut session_name: Option<String> = None;
        let mut connection = None;
        let mut direction = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let raw = trim_end(raw);
            if raw.is_empty() {
                continue;
            }
            let (kind, value) = match raw {
                [kind, b'=', rest @ ..] if kind.is_ascii_alphabetic() && !rest.contains(&b'\r') => {
                    (*kind, String::from_utf8_lossy(rest))
                }
                _ => return Err(ParseError::MalformedLine { line }),
            };
            let value = value.as_ref();
            if !seen_version {
                if kind != b'v' {
                    return Err(ParseError::MissingVersion { line });
                }
                if value.trim() != "0" {
                    return Err(ParseError::UnsupportedVersion {
                        line,
                        version: truncate(value.trim()),
                    });
                }
                seen_version = true;
                continue;
            }
            let invalid = |field: &'static str| {
                move |reason: String| ParseError::InvalidField {
                    line,
                    field,
                    reason,
                }
            };
            match kind {
                b'o' => {
                    if origin.is_some() {
                        return Err(ParseError::DuplicateOrigin { line });
                    }
                    origin = Some(Origin::parse(value).map_err(invalid("o="))?);
                }
                b's' if media.is_empty() => {
                    let name = value.trim();
                    session_name = Some(if name.is_empty() { "-" } else { name }.to_owned());
                }
                b'c' => {
                    let address = Address::parse(value).map_err(invalid("c="))?;
                    // Several c= lines (multicast layering) are legal; the first one counts.
                    let slot = match media.last_mut() {
                        Some(m) => &mut m.connection,
                        None => &mut connection,
                    };
                    slot.get_or_insert(address);
                }
                b'm' => media.push(parse_media(value).map_err(invalid("m="))?),
                b'a' => {
                    let (name, attr_value) = match value.split_once(':') {
                        Some((name, attr_value)) => (name.trim(), Some(attr_value)),
                        None => (value.trim(), None),
                    };
                    match media.last_mut() {
                        Some(m) => m.apply_attribute(name, attr_value),
                        None => match Direction::from_attribute(name) {
                            Some(d) => direction = Some(d),
                            None => attributes.push(Attribute {
                                name: name.to_owned(),
                                value: attr_value.map(str::to_owned),
                            }),
                        },
                    }
                }
                // v= again, t=, b=, i=, u=, e=, p=, r=, z=, k= and unknown types: not needed.
                _ => {}
            }
        }
        if !seen_version {
            return Err(ParseError::Empty);
        }
        Ok(Self {
            origin: origin.ok_or(ParseError::MissingOrigin)?,
            session_name: session_name.unwrap_or_else(|| "-".to_owned()),
            connection,
            direction,
            attributes,
            media,
        })
    }
}

impl FromStr for SessionDescription {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

/// Why an SDP body could not be parsed. Line numbers count from 1, blank lines included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body has no non-blank line.
    #[error("sdp is empty")]
    Empty,
    /// The first line is not `v=`.
    #[error("line {line}: sdp must start with v=0")]
    MissingVersion {
        /// The first non-blank line.
        line: usize,
    },
    /// `v=` is not `0`.
    #[error("line {line}: sdp version {version:?} is not supported, only v=0 is")]
    UnsupportedVersion {
        /// The `v=` line.
        line: usize,
        /// Its value (cut at 40 characters).
        version: String,
    },
    /// A line is not `<letter>=<value>`, or has a carriage return inside.
    #[error("line {line}: not a `<type>=<value>` sdp line")]
    MalformedLine {
        /// The offending line.
        line: usize,
    },
    /// An `o=`, `c=` or `m=` line is malformed.
    #[error("line {line}: {field} line is malformed: {reason}")]
    InvalidField {
        /// The offending line.
        line: usize,
        /// Which line type: `o=`, `c=` or `m=`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A second `o=` line (two descriptions run together?).
    #[error("line {line}: a second o= line")]
    DuplicateOrigin {
        /// The second `o=` line.
        line: usize,
    },
    /// There is no `o=` line, so re-offers cannot be told from refreshes (RFC 3264 §8).
    #[error("sdp has no o= line")]
    MissingOrigin,
}

/// Parses `audio 5004[/2] RTP/AVP 0 8 101`.
fn parse_media(value: &str) -> Result<MediaDescription, String> {
    let mut fields = value.split_whitespace();
    let (Some(media), Some(port), Some(protocol)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `<media> <port> <proto> <fmt> ...`".to_owned());
    };
    let (port, port_count) = match port.split_once('/') {
        Some((port, count)) => (port, Some(count)),
        None => (port, None),
    };
    let port = port
        .parse()
        .map_err(|_| format!("port {} is not a number from 0 to 65535", quote(port)))?;
    let port_count = match port_count {
        Some(count) => Some(
            count
                .parse()
                .map_err(|_| format!("port count {} is not a number", quote(count)))?,
        ),
        None => None,
    };
    let mut m = MediaDescription::new(
        MediaType::parse(media),
        port,
        TransportProtocol::parse(protocol),
    );
    m.port_count = port_count;
    m.formats = fields.map(str::to_owned).collect();
    Ok(m)
}

/// A payload type 0–127 (RFC 3550 §5.1: seven bits).
pub(super) fn parse_payload_type(s: &str) -> Option<u8> {
    s.trim().parse().ok().filter(|&pt: &u8| pt <= 127)
}

/// `raw` without its trailing CR, spaces and tabs.
fn trim_end(raw: &[u8]) -> &[u8] {
    let end = raw
        .iter()
        .rposition(|&b| !matches!(b, b'\r' | b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &raw[..end]
}

/// At most 40 characters of `s`, for error messages.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `s` cut to 40 characters and quoted, for error messages.
fn quote(s: &str) -> String {
    format!("{:?}", truncate(s))
}

#[cfg(test)]
mod tests;
