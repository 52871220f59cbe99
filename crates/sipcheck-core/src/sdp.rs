//! SDP for G.711 audio calls: a parser tolerant of real peers (RFC 8866), a writer for our own
//! offers and answers, and RFC 3264 offer/answer for PCMU/PCMA (RFC 3551 static payload types
//! 0 and 8) plus RFC 4733 `telephone-event`.
//!
//! * [`SessionDescription::parse`] reads an SDP body into the model; [`SessionDescription`]'s
//!   `Display` (or [`SessionDescription::to_bytes`]) writes one, with CRLF line ends.
//! * [`create_offer`] builds our offer from [`LocalMedia`]; [`answer`] answers a peer's offer;
//!   [`negotiated_from_answer`] reads the peer's answer to our offer. Both sides end in a
//!   [`Negotiated`]: where to send RTP, with which codec and payload type, and whether we may
//!   send and receive.
//! * Re-INVITEs: [`answer_update`] answers a new offer in an existing session and keeps the
//!   `o=` version rules of RFC 3264 §8 ([`SessionDescription::versioned_after`]); hold by
//!   `a=sendonly`/`a=inactive` or by the RFC 2543 `c=IN IP4 0.0.0.0` is answered `recvonly`
//!   (or `inactive`) and reported as [`Negotiated::remote_hold`].
//!
//! # Why a parser of our own
//! The maintained crates were checked first:
//! * `ezk-sdp-types` (the ezk project, whose SIP types this crate already uses) fails the whole
//!   SDP on a media type it does not know (`m=image 0 udptl t38`, the T.38 line Asterisk and
//!   gateways send) and on any malformed attribute it happens to model (`a=ssrc`,
//!   `a=candidate`, `a=crypto`), even when the call does not need it; its errors carry no line
//!   number.
//! * `webrtc-sdp` (Mozilla) targets WebRTC/JSEP (its Rust 1.88, once a second reason, is now
//!   this workspace's own).
//! * `sdp-types` is a sound generic tokenizer with line numbers, but it hands back strings:
//!   every typed value needed here (addresses, `rtpmap`, `fmtp`, `ptime`, direction) would
//!   still be parsed here, and it rejects SDPs over lines a call can do without (a malformed
//!   `b=`, `t=`, `r=`, `z=` or `k=`), for three more dependencies.
//!
//! So the parser is small and written for the job. It is strict where a mistake would send
//! media to the wrong place (`v=0` first, one `o=`, well-formed `o=`, `c=` and `m=` lines, each
//! error naming its line) and tolerant everywhere else: LF-only or CRLF line ends, trailing
//! blanks, blank lines, any field order after `v=`, case-insensitive keywords, non-UTF-8 text
//! (replaced), unknown line types ignored, unknown attributes kept in
//! [`MediaDescription::attributes`], and a malformed `rtpmap`/`fmtp`/`ptime`/`maxptime`/`rtcp`
//! kept there as an unknown attribute rather than failing the call (static payload types 0 and
//! 8 are known without `rtpmap`). It never panics, whatever the bytes: the tests feed it every
//! prefix of a real SDP and random garbage.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The dynamic payload type we offer for `telephone-event` (RFC 4733), as most peers do.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The packetization time assumed when an SDP gives none, in milliseconds (RFC 3551 §4.5: the
/// default for G.711 is 20 ms).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// The telephone events we support: DTMF 0–9, `*`, `#`, A–D (0–15) and flash (16), RFC 4733
/// §3.2.
const OUR_EVENTS: (u8, u8) = (0, 16);

/// The events a `telephone-event` offer without `fmtp` stands for (RFC 4733 §2.4.1).
const DEFAULT_EVENTS: (u8, u8) = (0, 15);

/// The session and user names we write in `o=` and `s=`.
const OUR_NAME: &str = "sipcheck";

use crate::media::g711::Codec;

impl Codec {
    /// The codec an `rtpmap` names, if it is PCMU or PCMA at 8000 Hz, mono (encoding names are
    /// case-insensitive, RFC 4855 §3).
    #[must_use]
    pub fn from_rtpmap(rtpmap: &RtpMap) -> Option<Self> {
        if rtpmap.clock_rate != 8000 || rtpmap.channels.is_some_and(|c| c != 1) {
            return None;
        }
        [Self::Pcmu, Self::Pcma]
            .into_iter()
            .find(|c| rtpmap.encoding_name.eq_ignore_ascii_case(c.encoding_name()))
    }

    /// This codec's `rtpmap` under payload type `payload_type`.
    #[must_use]
    pub fn rtpmap(self, payload_type: u8) -> RtpMap {
        RtpMap {
            payload_type,
            encoding_name: self.encoding_name().to_owned(),
            clock_rate: self.clock_rate(),
            channels: None,
        }
    }
}

/// The address type of an SDP address (`IP4` or `IP6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Ip4 => "IP4",
            Self::Ip6 => "IP6",
        }
    }
}

/// The address of an `o=` or `c=` line (network type `IN` only), without any multicast
/// `/ttl/count` suffix. Written as `IN IP4 …` or `IN IP6 …`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A literal IPv4 or IPv6 address; the address type follows the address.
    Ip(IpAddr),
    /// A host name (RFC 8866 allows an FQDN); the sans-IO core does not resolve it.
    Host {
        /// `IP4` or `IP6`, as the line said.
        addr_type: AddrType,
        /// The host name.
        name: String,
    },
}

impl Address {
    /// The IP address, if this is a literal address.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) => Some(*ip),
            Self::Host { .. } => None,
        }
    }

    /// Whether this is `0.0.0.0` or `::`: the RFC 2543 way of putting a call on hold.
    #[must_use]
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }

    /// Parses `IN IP4 addr[/ttl[/count]]` or `IN IP6 addr[/count]`.
    fn parse(value: &str) -> Result<Self, String> {
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

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V4(ip)) => write!(f, "IN IP4 {ip}"),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "IN IP6 {ip}"),
            Self::Host { addr_type, name } => write!(f, "IN {} {name}", addr_type.as_str()),
        }
    }
}

/// The `o=` line: who made the description, and which version of it this is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The user name (`-` when the peer has none).
    pub username: String,
    /// The session id: a numeric string, kept as text since we only compare it.
    pub session_id: String,
    /// The session version, incremented by its author on every change (RFC 3264 §8).
    pub version: u64,
    /// The address of the machine that made the description.
    pub address: Address,
}

impl Origin {
    fn parse(value: &str) -> Result<Self, String> {
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

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.username, self.session_id, self.version, self.address
        )
    }
}

/// A media direction attribute (RFC 3264 §5.1, RFC 8866 §6.7), from the point of view of the
/// description's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv`: sends and receives. The default when no direction is given.
    #[default]
    SendRecv,
    /// `a=sendonly`: sends, does not receive (the usual way to put the other party on hold).
    SendOnly,
    /// `a=recvonly`: receives, does not send.
    RecvOnly,
    /// `a=inactive`: neither sends nor receives.
    Inactive,
}

impl Direction {
    /// The direction that sends iff `send` and receives iff `receive`.
    #[must_use]
    pub const fn from_flags(send: bool, receive: bool) -> Self {
        match (send, receive) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }

    /// Whether this direction sends media.
    #[must_use]
    pub const fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether this direction receives media.
    #[must_use]
    pub const fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The same stream seen from the other end: `sendonly` ↔ `recvonly`.
    #[must_use]
    pub const fn reversed(self) -> Self {
        Self::from_flags(self.receives(), self.sends())
    }

    /// The attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Self> {
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

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `a=rtpmap:PT NAME/RATE[/CHANNELS]` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The RTP payload type, 0–127.
    pub payload_type: u8,
    /// The encoding name, as written (`PCMU`, `telephone-event`, …).
    pub encoding_name: String,
    /// The RTP clock rate in hertz.
    pub clock_rate: u32,
    /// The number of audio channels, when given.
    pub channels: Option<u16>,
}

impl RtpMap {
    /// The mapping RFC 3551 Table 4 fixes for a static audio payload type, if any.
    #[must_use]
    pub fn for_static_payload_type(payload_type: u8) -> Option<Self> {
        let (name, clock_rate, channels) = match payload_type {
            0 => ("PCMU", 8000, None),
            3 => ("GSM", 8000, None),
            4 => ("G723", 8000, None),
            5 => ("DVI4", 8000, None),
            6 => ("DVI4", 16000, None),
            7 => ("LPC", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, None),
            12 => ("QCELP", 8000, None),
            13 => ("CN", 8000, None),
            14 => ("MPA", 90000, None),
            15 => ("G728", 8000, None),
            16 => ("DVI4", 11025, None),
            17 => ("DVI4", 22050, None),
            18 => ("G729", 8000, None),
            _ => return None,
        };
        Some(Self {
            payload_type,
            encoding_name: name.to_owned(),
            clock_rate,
            channels,
        })
    }

    /// A `telephone-event/8000` mapping under `payload_type`.
    #[must_use]
    pub fn telephone_event(payload_type: u8) -> Self {
        Self {
            payload_type,
            encoding_name: "telephone-event".to_owned(),
            clock_rate: 8000,
            channels: None,
        }
    }

    /// The G.711 codec this maps to, if any.
    #[must_use]
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_rtpmap(self)
    }

    /// Whether this is `telephone-event/8000` (RFC 4733).
    #[must_use]
    pub fn is_telephone_event(&self) -> bool {
        self.encoding_name.eq_ignore_ascii_case("telephone-event") && self.clock_rate == 8000
    }

    fn parse(value: &str) -> Option<Self> {
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

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding_name, self.clock_rate
        )?;
        if let Some(channels) = self.channels {
            write!(f, "/{channels}")?;
        }
        Ok(())
    }
}

/// An `a=fmtp:PT PARAMETERS` attribute; the parameters are kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fmtp {
    /// The RTP payload type the parameters apply to.
    pub payload_type: u8,
    /// The format parameters, e.g. `0-16` for `telephone-event`.
    pub parameters: String,
}

impl Fmtp {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (pt, parameters) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        Some(Self {
            payload_type: parse_payload_type(pt)?,
            parameters: parameters.trim().to_owned(),
        })
    }
}

impl fmt::Display for Fmtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.payload_type, self.parameters)
    }
}

/// An `a=rtcp:PORT [IN IP4 addr]` attribute (RFC 3605): where the author receives RTCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// The RTCP address, when it differs from the media's connection address.
    pub address: Option<Address>,
}

impl Rtcp {
    fn parse(value: &str) -> Option<Self> {
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

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some(address) = &self.address {
            write!(f, " {address}")?;
        }
        Ok(())
    }
}

/// Any other attribute, kept as written and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// The attribute name (before the first `:`).
    pub name: String,
    /// The value after the first `:`, if there is one.
    pub value: Option<String>,
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "a={}:{value}", self.name),
            None => write!(f, "a={}", self.name),
        }
    }
}

/// The media type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
    /// `image` (T.38 fax).
    Image,
    /// `text`.
    Text,
    /// `application`.
    Application,
    /// `message` (MSRP).
    Message,
    /// Any other media type, as written.
    Other(String),
}

impl MediaType {
    fn parse(token: &str) -> Self {
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

    /// The media type as written in `m=`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Image => "image",
            Self::Text => "text",
            Self::Application => "application",
            Self::Message => "message",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport protocol of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// `RTP/AVP`: plain RTP over UDP, the only one we accept.
    RtpAvp,
    /// Any other protocol (`RTP/SAVP`, `RTP/AVPF`, `udptl`, …), as written.
    Other(String),
}

impl TransportProtocol {
    fn parse(token: &str) -> Self {
        if token.eq_ignore_ascii_case("RTP/AVP") {
            Self::RtpAvp
        } else {
            Self::Other(token.to_owned())
        }
    }

    /// The protocol as written in `m=`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::RtpAvp => "RTP/AVP",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for TransportProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One media section: an `m=` line and the lines after it up to the next `m=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaDescription {
    /// The media type.
    pub media: MediaType,
    /// The transport port; 0 means the stream is rejected or disabled (RFC 3264 §5.1, §6).
    pub port: u16,
    /// The number of ports (`m=audio 5004/2 …`), when given.
    pub port_count: Option<u16>,
    /// The transport protocol.
    pub protocol: TransportProtocol,
    /// The formats in preference order: payload type numbers for RTP, as written.
    pub formats: Vec<String>,
    /// The media-level `c=`, which wins over the session-level one.
    pub connection: Option<Address>,
    /// The media-level direction, which wins over the session-level one.
    pub direction: Option<Direction>,
    /// The `a=rtpmap` attributes, in order.
    pub rtpmaps: Vec<RtpMap>,
    /// The `a=fmtp` attributes, in order.
    pub fmtps: Vec<Fmtp>,
    /// `a=ptime`: the packetization the author wants to receive, in milliseconds.
    pub ptime_ms: Option<u32>,
    /// `a=maxptime`: the longest packetization the author can receive, in milliseconds.
    pub maxptime_ms: Option<u32>,
    /// `a=rtcp`.
    pub rtcp: Option<Rtcp>,
    /// Other attributes, kept but ignored (including malformed known ones).
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// A media section with no formats and no attributes.
    #[must_use]
    pub fn new(media: MediaType, port: u16, protocol: TransportProtocol) -> Self {
        Self {
            media,
            port,
            port_count: None,
            protocol,
            formats: Vec::new(),
            connection: None,
            direction: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime_ms: None,
            maxptime_ms: None,
            rtcp: None,
            attributes: Vec::new(),
        }
    }

    /// Whether the stream is rejected or disabled (port 0).
    #[must_use]
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Whether this is an RTP/AVP audio stream, the only kind we negotiate.
    #[must_use]
    pub fn is_rtp_audio(&self) -> bool {
        self.media == MediaType::Audio && self.protocol == TransportProtocol::RtpAvp
    }

    /// The formats that are RTP payload types (0–127), in order; others are skipped.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| parse_payload_type(f))
    }

    /// The mapping of `payload_type`: its `a=rtpmap`, or else the RFC 3551 static one.
    #[must_use]
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|r| r.payload_type == payload_type)
            .cloned()
            .or_else(|| RtpMap::for_static_payload_type(payload_type))
    }

    /// The `a=fmtp` parameters of `payload_type`, if any.
    #[must_use]
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|f| f.payload_type == payload_type)
            .map(|f| f.parameters.as_str())
    }

    /// The G.711 codecs offered in this section with their payload types, in preference order.
    #[must_use]
    pub fn codecs(&self) -> Vec<(u8, Codec)> {
        self.codecs_iter().collect()
    }

    /// [`codecs`](Self::codecs), lazily (nothing allocated).
    fn codecs_iter(&self) -> impl Iterator<Item = (u8, Codec)> + '_ {
        self.payload_types()
            .filter_map(|pt| Some((pt, self.codec_of(pt)?)))
    }

    /// What `self.rtpmap(payload_type)?.codec()` gives, without copying the mapping.
    fn codec_of(&self, payload_type: u8) -> Option<Codec> {
        match self.rtpmaps.iter().find(|r| r.payload_type == payload_type) {
            Some(rtpmap) => rtpmap.codec(),
            None => RtpMap::for_static_payload_type(payload_type)?.codec(),
        }
    }

    /// The payload type of `telephone-event/8000`, if listed.
    #[must_use]
    pub fn telephone_event_payload_type(&self) -> Option<u8> {
        // No static payload type is telephone-event: only an `rtpmap` names it.
        self.payload_types().find(|&pt| {
            self.rtpmaps
                .iter()
                .find(|r| r.payload_type == pt)
                .is_some_and(RtpMap::is_telephone_event)
        })
    }

    /// `NAME/RATE` of every listed format (`96` for a dynamic one without `rtpmap`), for
    /// messages.
    fn format_names(&self) -> Vec<String> {
        self.formats
            .iter()
            .map(
                |f| match parse_payload_type(f).and_then(|pt| self.rtpmap(pt)) {
                    Some(r) => format!("{}/{}", r.encoding_name, r.clock_rate),
                    None => f.clone(),
                },
            )
            .collect()
    }

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

    /// The stream rejected in an answer: port 0, the offer's protocol and formats, nothing else
    /// (RFC 3264 §6).
    fn rejected(&self) -> Self {
        Self {
            formats: self.formats.clone(),
            ..Self::new(self.media.clone(), 0, self.protocol.clone())
        }
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.protocol)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        if let Some(connection) = &self.connection {
            write!(f, "c={connection}\r\n")?;
        }
        for rtpmap in &self.rtpmaps {
            write!(f, "a=rtpmap:{rtpmap}\r\n")?;
        }
        for fmtp in &self.fmtps {
            write!(f, "a=fmtp:{fmtp}\r\n")?;
        }
        if let Some(ptime) = self.ptime_ms {
            write!(f, "a=ptime:{ptime}\r\n")?;
        }
        if let Some(maxptime) = self.maxptime_ms {
            write!(f, "a=maxptime:{maxptime}\r\n")?;
        }
        if let Some(rtcp) = &self.rtcp {
            write!(f, "a=rtcp:{rtcp}\r\n")?;
        }
        if let Some(direction) = self.direction {
            write!(f, "a={direction}\r\n")?;
        }
        for attribute in &self.attributes {
            write!(f, "{attribute}\r\n")?;
        }
        Ok(())
    }
}

/// A session description: the session-level lines and the media sections.
///
/// `Display` writes it as SDP with CRLF line ends (`v=0`, `o=`, `s=`, `c=`, `t=0 0`, session
/// attributes, then each media section); `b=`, `i=`, `t=` values and other lines the model does
/// not keep are not written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (`-` when the peer left it out or empty).
    pub session_name: String,
    /// The session-level `c=`, used by media sections without their own.
    pub connection: Option<Address>,
    /// The session-level direction, used by media sections without their own.
    pub direction: Option<Direction>,
    /// Other session-level attributes, kept but ignored.
    pub attributes: Vec<Attribute>,
    /// The media sections, in order (answers keep the offer's order, RFC 3264 §6).
    pub media: Vec<MediaDescription>,
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

    /// The description as SDP text with CRLF line ends.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        out
    }

    /// Append what [`to_bytes`](Self::to_bytes) gives to `out` (e.g. a buffer kept for
    /// reuse).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a vector does not fail.
        let _ = write!(out, "{self}");
    }

    /// The direction of `media` as its author meant it: media-level, else session-level, else
    /// `sendrecv`.
    #[must_use]
    pub fn direction_of(&self, media: &MediaDescription) -> Direction {
        media.direction.or(self.direction).unwrap_or_default()
    }

    /// The connection address of `media`: media-level `c=`, else session-level.
    #[must_use]
    pub fn connection_of<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Address> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// Whether this description is unchanged from `previous` by RFC 3264 §8: same `o=` line
    /// (user, session id, version, address). A re-INVITE whose offer is unchanged is a session
    /// refresh and must not change the session.
    #[must_use]
    pub fn is_unchanged_from(&self, previous: &Self) -> bool {
        self.origin == previous.origin
    }

    /// This description as the successor of our `previous` one in the same session (RFC 3264
    /// §8): it takes `previous`'s session id, and its version, plus one if anything else
    /// differs. Use it on every offer or answer after the first, whichever role we had.
    #[must_use]
    pub fn versioned_after(mut self, previous: &Self) -> Self {
        self.origin
            .session_id
            .clone_from(&previous.origin.session_id);
        self.origin.version = previous.origin.version;
        if self != *previous {
            self.origin.version = previous.origin.version.wrapping_add(1);
        }
        self
    }

    /// The adjusted direction of the peer's `media`: an unspecified connection address
    /// (`0.0.0.0`, RFC 2543 hold) means "do not send to me", whatever the attribute says.
    fn peer_direction_of(&self, media: &MediaDescription) -> Direction {
        let direction = self.direction_of(media);
        if self.is_held_by_address(media) {
            Direction::from_flags(direction.sends(), false)
        } else {
            direction
        }
    }

    fn is_held_by_address(&self, media: &MediaDescription) -> bool {
        self.connection_of(media)
            .is_some_and(Address::is_unspecified)
    }

    /// Whether the author of this description puts `media` on hold: `sendonly`, `inactive` or
    /// an unspecified connection address.
    fn holds(&self, media: &MediaDescription) -> bool {
        !self.direction_of(media).receives() || self.is_held_by_address(media)
    }

    /// Where the author of this description receives RTP for stream `index`.
    fn rtp_address(
        &self,
        index: usize,
        media: &MediaDescription,
    ) -> Result<SocketAddr, NegotiationError> {
        match self.connection_of(media) {
            Some(Address::Ip(ip)) => Ok(SocketAddr::new(*ip, media.port)),
            Some(Address::Host { name, .. }) => Err(NegotiationError::UnresolvedHost {
                index,
                host: name.clone(),
            }),
            None => Err(NegotiationError::MissingConnection { index }),
        }
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        write!(f, "o={}\r\n", self.origin)?;
        let name = if self.session_name.is_empty() {
            "-"
        } else {
            &self.session_name
        };
        write!(f, "s={name}\r\n")?;
        if let Some(connection) = &self.connection {
            write!(f, "c={connection}\r\n")?;
        }
        f.write_str("t=0 0\r\n")?;
        if let Some(direction) = self.direction {
            write!(f, "a={direction}\r\n")?;
        }
        for attribute in &self.attributes {
            write!(f, "{attribute}\r\n")?;
        }
        for media in &self.media {
            write!(f, "{media}")?;
        }
        Ok(())
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

/// Why an offer could not be answered, or an answer not accepted. A UAS answers an offer that
/// fails with `488 Not Acceptable Here`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No audio stream names a codec both sides support.
    #[error(
        "no common audio codec (offered: {}; supported: {})",
        list(.offered),
        list(.supported)
    )]
    NoCommonCodec {
        /// What the other side listed (`NAME/RATE`, or the bare payload type).
        offered: Vec<String>,
        /// What we support (or, reading an answer, what we offered).
        supported: Vec<Codec>,
    },
    /// The offer has no RTP/AVP audio stream with a non-zero port.
    #[error("no active rtp/avp audio stream in the offer")]
    NoAudioStream,
    /// The answer rejected (port 0) every audio stream we offered.
    #[error("the answer rejected the audio stream (port 0)")]
    AudioRejected,
    /// The answer does not have one media section per offered one (RFC 3264 §6).
    #[error("the answer has {answered} media sections, the offer {offered}")]
    MediaCountMismatch {
        /// Media sections in the offer.
        offered: usize,
        /// Media sections in the answer.
        answered: usize,
    },
    /// The chosen stream has no `c=`, neither media- nor session-level.
    #[error("media section {index} has no connection address (c=)")]
    MissingConnection {
        /// The media section, counted from 0.
        index: usize,
    },
    /// The chosen stream's `c=` is a host name, which the sans-IO core does not resolve.
    #[error(
        "media section {index} has host name {host:?} as connection address, not an ip address"
    )]
    UnresolvedHost {
        /// The media section, counted from 0.
        index: usize,
        /// The host name.
        host: String,
    },
}

/// What we put in our offers and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address, written in `o=` and `c=` (`IN IP4` or `IN IP6` by its family).
    pub addr: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// The codecs we support, most preferred first (the order of our offers).
    pub codecs: Vec<Codec>,
    /// Whether we offer and accept RFC 4733 `telephone-event`.
    pub telephone_event: bool,
    /// The packetization we want to receive (`a=ptime`), in milliseconds.
    pub ptime_ms: u32,
    /// What we want to do: `sendrecv`, or `sendonly` to put the peer on hold, …
    pub direction: Direction,
    /// The `o=` session id.
    pub session_id: u64,
    /// The `o=` version; for later descriptions see [`SessionDescription::versioned_after`].
    pub version: u64,
}

impl LocalMedia {
    /// PCMU then PCMA, telephone-event, 20 ms, `sendrecv`, version 0.
    #[must_use]
    pub fn new(addr: IpAddr, port: u16, session_id: u64) -> Self {
        Self {
            addr,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: DEFAULT_PTIME_MS,
            direction: Direction::SendRecv,
            session_id,
            version: 0,
        }
    }

    fn session(&self, media: Vec<MediaDescription>) -> SessionDescription {
        SessionDescription {
            origin: Origin {
                username: OUR_NAME.to_owned(),
                session_id: self.session_id.to_string(),
                version: self.version,
                address: Address::Ip(self.addr),
            },
            session_name: OUR_NAME.to_owned(),
            connection: Some(Address::Ip(self.addr)),
            direction: None,
            attributes: Vec::new(),
            media,
        }
    }
}

/// The outcome of offer/answer for the audio stream, from our side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Which media section carries the audio, counted from 0.
    pub media_index: usize,
    /// Where to send RTP: the peer's port at its media-level `c=`, else its session-level one.
    /// `0.0.0.0` when the peer holds the call the RFC 2543 way.
    pub remote_rtp: SocketAddr,
    /// The codec to send and expect.
    pub codec: Codec,
    /// The payload type of [`Self::codec`] on the wire.
    pub payload_type: u8,
    /// The payload type of `telephone-event`, if both sides use it.
    pub telephone_event_pt: Option<u8>,
    /// The packetization we send with, in milliseconds: the peer's `a=ptime` (capped by its
    /// `a=maxptime`), else ours.
    pub ptime_ms: u32,
    /// What WE may do: send RTP iff [`Direction::sends`], expect it iff
    /// [`Direction::receives`].
    pub direction: Direction,
    /// Whether the peer holds the call: its side is `sendonly` or `inactive`, or its address
    /// is `0.0.0.0`.
    pub remote_hold: bool,
}

impl Negotiated {
    /// Whether RTP is to be expected from the peer: we may receive and the peer does not
    /// hold the call. A peer that holds may still send (music on hold, `sendonly`), but need
    /// not: its silence then is no RTP timeout.
    pub fn expects_rtp(&self) -> bool {
        self.direction.receives() && !self.remote_hold
    }
}

/// Our offer: one RTP/AVP audio stream with `local.codecs` in order, then `telephone-event`
/// (payload type [`TELEPHONE_EVENT_PT`], events 0–16) if asked for, an `rtpmap` for each,
/// `a=ptime` and the direction. `local.codecs` should not be empty.
#[must_use]
pub fn create_offer(local: &LocalMedia) -> SessionDescription {
    let mut codecs: Vec<(u8, Codec)> = Vec::new();
    for &codec in &local.codecs {
        if !codecs.iter().any(|&(_, c)| c == codec) {
            codecs.push((codec.static_payload_type(), codec));
        }
    }
    let telephone_event = local
        .telephone_event
        .then(|| (TELEPHONE_EVENT_PT, vec![OUR_EVENTS]));
    local.session(vec![local_audio(
        local,
        &codecs,
        telephone_event,
        local.direction,
    )])
}

/// Answers `offer` (RFC 3264 §6): the first RTP/AVP audio stream with a non-zero port and a
/// codec we support is accepted; every other media section is rejected with port 0, so the
/// answer has as many as the offer.
///
/// In the accepted stream the codec is the first of the *offer's* list that `local.codecs`
/// holds, under the offer's payload type (RFC 3264 §6.1); `telephone-event` is accepted with
/// the offer's payload type and the events both sides know; the direction is what we want
/// (`local.direction`) within what the offer allows: `sendonly` → `recvonly`, `recvonly` →
/// `sendonly`, `inactive` → `inactive`, and an offer at `0.0.0.0` (hold) → at most `recvonly`.
/// The answer's `o=` version is `local.version`; in a re-INVITE use [`answer_update`].
///
/// # Errors
/// [`NegotiationError::NoCommonCodec`] if an audio stream is offered but no codec is common,
/// [`NegotiationError::NoAudioStream`] if none is, and a connection error if the chosen stream
/// has no usable `c=` address.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let mut negotiated = None;
    let mut offered = Vec::new();
    let mut saw_audio = false;
    let mut media = Vec::with_capacity(offer.media.len());
    for (index, m) in offer.media.iter().enumerate() {
        if negotiated.is_some() || !m.is_rtp_audio() || m.is_rejected() {
            media.push(m.rejected());
            continue;
        }
        saw_audio = true;
        let common = m.codecs_iter().find(|(_, c)| local.codecs.contains(c));
        let Some((payload_type, codec)) = common else {
            offered.extend(m.format_names());
            media.push(m.rejected());
            continue;
        };
        let telephone_event = if local.telephone_event {
            m.telephone_event_payload_type().and_then(|pt| {
                let events = m
                    .fmtp(pt)
                    .and_then(parse_events)
                    .unwrap_or(vec![DEFAULT_EVENTS]);
                let common = intersect_events(&events, OUR_EVENTS);
                (!common.is_empty()).then_some((pt, common))
            })
        } else {
            None
        };
        let peer = offer.peer_direction_of(m);
        let direction = Direction::from_flags(
            local.direction.sends() && peer.receives(),
            local.direction.receives() && peer.sends(),
        );
        negotiated = Some(Negotiated {
            media_index: index,
            remote_rtp: offer.rtp_address(index, m)?,
            codec,
            payload_type,
            telephone_event_pt: telephone_event.as_ref().map(|&(pt, _)| pt),
            ptime_ms: send_ptime(m, local.ptime_ms),
            direction,
            remote_hold: offer.holds(m),
        });
        media.push(local_audio(
            local,
            &[(payload_type, codec)],
            telephone_event,
            direction,
        ));
    }
    match negotiated {
        Some(negotiated) => Ok((local.session(media), negotiated)),
        None if saw_audio => Err(NegotiationError::NoCommonCodec {
            offered,
            supported: local.codecs.clone(),
        }),
        None => Err(NegotiationError::NoAudioStream),
    }
}

/// [`answer`] for an offer inside an established session (re-INVITE, UPDATE): the answer takes
/// the session id and version of `previous`, our last description in this session, and the
/// version goes up by one only if the answer differs from it (RFC 3264 §8). Hold and unhold
/// need nothing else: a `sendonly` or `0.0.0.0` offer is answered `recvonly`, a later
/// `sendrecv` one `sendrecv` again, each with a new version.
///
/// # Errors
/// As [`answer`].
pub fn answer_update(
    offer: &SessionDescription,
    local: &LocalMedia,
    previous: &SessionDescription,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let (sdp, negotiated) = answer(offer, local)?;
    Ok((sdp.versioned_after(previous), negotiated))
}

/// Reads the peer's `answer` to the `offer` we sent (RFC 3264 §7): the first offered RTP/AVP
/// audio stream that the answer accepts with a codec we offered.
///
/// The codec is the first one in the answer's list that we offered; its payload type is the
/// answer's. `telephone-event` is used if we offered it and the answer lists it.
///
/// # Errors
/// [`NegotiationError::MediaCountMismatch`] if the section counts differ,
/// [`NegotiationError::AudioRejected`] if every offered audio stream got port 0,
/// [`NegotiationError::NoCommonCodec`] if the answer names no codec we offered,
/// [`NegotiationError::NoAudioStream`] if we offered no audio, and a connection error if the
/// answer has no usable `c=` address.
pub fn negotiated_from_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::MediaCountMismatch {
            offered: offer.media.len(),
            answered: answer.media.len(),
        });
    }
    let mut saw_audio = false;
    let mut no_codec = None;
    for (index, (ours, theirs)) in offer.media.iter().zip(&answer.media).enumerate() {
        if !ours.is_rtp_audio() || ours.is_rejected() {
            continue;
        }
        saw_audio = true;
        if theirs.is_rejected() {
            continue;
        }
        // A mapping the answer leaves out is the one we offered (or the static one).
        let mapping = |pt: u8| theirs.rtpmap(pt).or_else(|| ours.rtpmap(pt));
        let offered: Vec<Codec> = ours.codecs().into_iter().map(|(_, c)| c).collect();
        let common = theirs.payload_types().find_map(|pt| {
            let codec = mapping(pt)?.codec()?;
            offered.contains(&codec).then_some((pt, codec))
        });
        let Some((payload_type, codec)) = common else {
            no_codec = Some(NegotiationError::NoCommonCodec {
                offered: theirs.format_names(),
                supported: offered,
            });
            continue;
        };
        let telephone_event_pt = ours.telephone_event_payload_type().and_then(|_| {
            theirs
                .payload_types()
                .find(|&pt| mapping(pt).is_some_and(|r| r.is_telephone_event()))
        });
        let mine = offer.direction_of(ours);
        let peer = answer.peer_direction_of(theirs);
        return Ok(Negotiated {
            media_index: index,
            remote_rtp: answer.rtp_address(index, theirs)?,
            codec,
            payload_type,
            telephone_event_pt,
            ptime_ms: send_ptime(theirs, ours.ptime_ms.unwrap_or(DEFAULT_PTIME_MS)),
            direction: Direction::from_flags(
                mine.sends() && peer.receives(),
                mine.receives() && peer.sends(),
            ),
            remote_hold: answer.holds(theirs),
        });
    }
    Err(match no_codec {
        Some(error) => error,
        None if saw_audio => NegotiationError::AudioRejected,
        None => NegotiationError::NoAudioStream,
    })
}

/// Our audio section with `codecs` (payload type, codec) and optionally telephone-event
/// (payload type, events).
fn local_audio(
    local: &LocalMedia,
    codecs: &[(u8, Codec)],
    telephone_event: Option<(u8, Vec<(u8, u8)>)>,
    direction: Direction,
) -> MediaDescription {
    let mut m = MediaDescription::new(MediaType::Audio, local.port, TransportProtocol::RtpAvp);
    for &(pt, codec) in codecs {
        m.formats.push(pt.to_string());
        m.rtpmaps.push(codec.rtpmap(pt));
    }
    if let Some((pt, events)) = telephone_event {
        m.formats.push(pt.to_string());
        m.rtpmaps.push(RtpMap::telephone_event(pt));
        m.fmtps.push(Fmtp {
            payload_type: pt,
            parameters: render_events(&events),
        });
    }
    m.ptime_ms = Some(local.ptime_ms);
    m.direction = Some(direction);
    m
}

/// The packetization to send to the author of `media`: its `ptime`, else `fallback`, capped by
/// its `maxptime`.
fn send_ptime(media: &MediaDescription, fallback: u32) -> u32 {
    let ptime = media.ptime_ms.filter(|&p| p > 0).unwrap_or(fallback);
    match media.maxptime_ms {
        Some(max) if max > 0 => ptime.min(max),
        _ => ptime,
    }
}

/// Parses an RFC 4733 event list such as `0-15,66,70`; `None` if malformed.
fn parse_events(list: &str) -> Option<Vec<(u8, u8)>> {
    let mut events = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
            None => {
                let event = part.parse().ok()?;
                (event, event)
            }
        };
        if low > high {
            return None;
        }
        events.push((low, high));
    }
    Some(events)
}

fn intersect_events(events: &[(u8, u8)], (low, high): (u8, u8)) -> Vec<(u8, u8)> {
    events
        .iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a.max(low), b.min(high));
            (a <= b).then_some((a, b))
        })
        .collect()
}

fn render_events(events: &[(u8, u8)]) -> String {
    events
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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
fn parse_payload_type(s: &str) -> Option<u8> {
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

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn crlf(lines: &str) -> String {
        lines.lines().map(|l| format!("{}\r\n", l.trim())).collect()
    }

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(crlf(text).as_bytes()).unwrap()
    }

    fn local() -> LocalMedia {
        LocalMedia::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 40000, 4242)
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Kamailio relaying through rtpengine: the body rtpengine rewrote.
    const KAMAILIO_RTPENGINE: &str = "v=0
        o=- 1700000000 1700000001 IN IP4 203.0.113.5
        s=-
        c=IN IP4 203.0.113.5
        t=0 0
        m=audio 30000 RTP/AVP 0 8 101
        c=IN IP4 203.0.113.5
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=sendrecv
        a=rtcp:30001
        a=ssrc:2864914302 cname:3f7a1c0d5e2b4a69
        a=ice-ufrag:Xk3pQ9sT
        a=ice-pwd:m4Yt7Lq2Zr8Vn1Bc6Hd0Jw5F
        a=candidate:4Nt8v2Lq 1 UDP 2130706431 203.0.113.5 30000 typ host
        a=candidate:4Nt8v2Lq 2 UDP 2130706430 203.0.113.5 30001 typ host
        a=ptime:20";

    /// SIPp's built-in uac after keyword substitution (`[media_port]`, `[media_ip]`, …).
    const SIPP_UAC: &str = "v=0
        o=user1 53655765 2353687637 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 6000 RTP/AVP 0
        a=rtpmap:0 PCMU/8000";

    /// baresip 1.0 with its default g711 and telephone-event modules.
    const BARESIP: &str = "v=0
        o=- 1386527542 3049271931 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        a=tool:baresip 1.0.0
        m=audio 12345 RTP/AVP 0 8 101
        b=AS:64
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-15
        a=ptime:20
        a=sendrecv
        a=label:1";

    /// Asterisk (chan_pjsip) with many codecs; PCMA is the only G.711 one.
    const ASTERISK: &str = "v=0
        o=- 1284 1284 IN IP4 198.51.100.7
        s=Asterisk
        c=IN IP4 198.51.100.7
        t=0 0
        m=audio 17650 RTP/AVP 9 18 3 8 101
        a=rtpmap:9 G722/8000
        a=rtpmap:18 G729/8000
        a=fmtp:18 annexb=no
        a=rtpmap:3 GSM/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=maxptime:150
        a=sendrecv";

    #[test]
    fn kamailio_rtpengine_offer_keeps_unknown_attributes_and_is_answered() {
        let offer = parse(KAMAILIO_RTPENGINE);
        assert_eq!(offer.origin.username, "-");
        assert_eq!(offer.origin.session_id, "1700000000");
        assert_eq!(offer.origin.version, 1_700_000_001);
        let m = &offer.media[0];
        assert_eq!(m.port, 30000);
        assert_eq!(m.formats, ["0", "8", "101"]);
        assert_eq!(
            m.rtcp,
            Some(Rtcp {
                port: 30001,
                address: None
            })
        );
        assert_eq!(m.ptime_ms, Some(20));
        assert_eq!(m.direction, Some(Direction::SendRecv));
        let names: Vec<&str> = m.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            ["ssrc", "ice-ufrag", "ice-pwd", "candidate", "candidate"]
        );
        assert_eq!(m.telephone_event_payload_type(), Some(101));

        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.remote_rtp, sock("203.0.113.5:30000"));
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.payload_type, 0);
        assert_eq!(neg.telephone_event_pt, Some(101));
        assert_eq!(neg.direction, Direction::SendRecv);
        assert!(!neg.remote_hold);
        assert_eq!(
            sdp.to_string(),
            crlf(
                "v=0
                o=sipcheck 4242 0 IN IP4 192.0.2.10
                s=sipcheck
                c=IN IP4 192.0.2.10
                t=0 0
                m=audio 40000 RTP/AVP 0 101
                a=rtpmap:0 PCMU/8000
                a=rtpmap:101 telephone-event/8000
                a=fmtp:101 0-16
                a=ptime:20
                a=sendrecv"
            )
        );
    }

    #[test]
    fn sipp_uac_offer_is_answered_without_telephone_event() {
        let offer = parse(SIPP_UAC);
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:6000"));
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
        assert_eq!(neg.telephone_event_pt, None);
        assert_eq!(neg.ptime_ms, 20);
        assert_eq!(sdp.media[0].formats, ["0"]);
        assert!(sdp.media[0].fmtps.is_empty());
    }

    #[test]
    fn unsubstituted_sipp_keyword_is_an_error_naming_the_line() {
        let text = SIPP_UAC.replace("6000", "[media_port]");
        let err = SessionDescription::parse(crlf(&text).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"line 6: m= line is malformed: port "[media_port]" is not a number from 0 to 65535"#
        );
        let text = SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP[media_ip_type] [media_ip]");
        let err = SessionDescription::parse(crlf(&text).as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::InvalidField {
                    line: 4,
                    field: "c=",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn baresip_offer_gets_its_telephone_event_range_back() {
        let offer = parse(BARESIP);
        assert_eq!(
            offer.attributes,
            [Attribute {
                name: "tool".into(),
                value: Some("baresip 1.0.0".into())
            }]
        );
        assert_eq!(offer.media[0].fmtp(101), Some("0-15"));
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.remote_rtp, sock("127.0.0.1:12345"));
        assert_eq!(neg.telephone_event_pt, Some(101));
        // RFC 4733 §7.1.1: answer only events both sides know.
        assert_eq!(sdp.media[0].fmtp(101), Some("0-15"));
    }

    #[test]
    fn asterisk_offer_with_many_codecs_gets_pcma_the_only_common_one() {
        let offer = parse(ASTERISK);
        let m = &offer.media[0];
        assert_eq!(m.codecs(), [(8, Codec::Pcma)]);
        assert_eq!(m.maxptime_ms, Some(150));
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
        assert_eq!(neg.telephone_event_pt, Some(101));
        assert_eq!(neg.remote_rtp, sock("198.51.100.7:17650"));
        assert_eq!(sdp.media[0].formats, ["8", "101"]);
        assert_eq!(sdp.media[0].rtpmaps[0].to_string(), "8 PCMA/8000");
    }

    #[test]
    fn answer_keeps_the_offerers_codec_order() {
        let offer = parse(&SIPP_UAC.replace("RTP/AVP 0", "RTP/AVP 8 0"));
        // We prefer PCMU, the offer lists PCMA first: RFC 3264 §6.1 picks PCMA.
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(sdp.media[0].formats, ["8"]);
    }

    #[test]
    fn offer_lists_codecs_in_our_configured_order() {
        let mut ours = local();
        ours.codecs = vec![Codec::Pcma, Codec::Pcmu, Codec::Pcma];
        let offer = create_offer(&ours);
        assert_eq!(offer.media[0].formats, ["8", "0", "101"]);
        ours.telephone_event = false;
        assert_eq!(create_offer(&ours).media[0].formats, ["8", "0"]);
    }

    #[test]
    fn dynamic_payload_type_for_pcmu_is_recognised() {
        let offer = parse(
            &SIPP_UAC
                .replace("RTP/AVP 0", "RTP/AVP 96")
                .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:96 pcmu/8000/1"),
        );
        let (_, neg) = answer(&offer, &local()).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 96));
    }

    #[test]
    fn session_level_connection_is_used_when_media_has_none() {
        let offer = parse(SIPP_UAC);
        assert!(offer.media[0].connection.is_none());
        assert_eq!(
            offer.connection_of(&offer.media[0]),
            Some(&Address::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
    }

    #[test]
    fn media_level_connection_wins_over_session_level() {
        let offer = parse(
            "v=0
            o=- 1 1 IN IP4 10.0.0.1
            s=-
            c=IN IP4 10.0.0.1
            t=0 0
            m=audio 4000 RTP/AVP 8
            c=IN IP4 198.51.100.20
            a=sendrecv",
        );
        let (_, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.remote_rtp, sock("198.51.100.20:4000"));
    }

    #[test]
    fn missing_or_host_name_connection_is_a_negotiation_error() {
        let no_c = parse("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0");
        assert_eq!(
            answer(&no_c, &local()).unwrap_err(),
            NegotiationError::MissingConnection { index: 0 }
        );
        let host = parse(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 media.example.com\nt=0 0\nm=audio 4000 RTP/AVP 0",
        );
        let err = answer(&host, &local()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "media section 0 has host name \"media.example.com\" as connection address, not an ip address"
        );
    }

    #[test]
    fn ipv6_offer_and_ipv6_answer() {
        let offer = parse(
            "v=0
            o=- 20518 0 IN IP6 2001:db8::1
            s=-
            c=IN IP6 2001:db8::1
            t=0 0
            m=audio 5004 RTP/AVP 0 101
            a=rtpmap:101 telephone-event/8000",
        );
        let mut ours = local();
        ours.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let (sdp, neg) = answer(&offer, &ours).unwrap();
        assert_eq!(neg.remote_rtp, sock("[2001:db8::1]:5004"));
        let text = sdp.to_string();
        assert!(text.contains("o=sipcheck 4242 0 IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        // No fmtp in the offer: RFC 4733's default 0-15.
        assert_eq!(sdp.media[0].fmtp(101), Some("0-15"));
        assert_eq!(SessionDescription::parse(text.as_bytes()).unwrap(), sdp);
    }

    #[test]
    fn ipv6_addresses_in_brackets_are_accepted() {
        // As SIPp's stock uac writes them over IPv6.
        let offer = parse(
            "v=0
            o=user1 53655765 2353687637 IN IP6 [::1]
            s=-
            c=IN IP6 [::1]
            t=0 0
            m=audio 6000 RTP/AVP 0",
        );
        assert_eq!(
            offer.origin.address,
            Address::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        let mut ours = local();
        ours.addr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let (sdp, neg) = answer(&offer, &ours).unwrap();
        assert_eq!(neg.remote_rtp, sock("[::1]:6000"));
        // Ours are written without brackets, as RFC 8866 says.
        assert!(sdp.to_string().contains("c=IN IP6 ::1\r\n"));
        for bad in ["[::1", "[127.0.0.1]", "[]", "[example.com]"] {
            assert!(
                Address::parse(&format!("IN IP6 {bad}")).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn video_and_fax_are_rejected_with_port_zero() {
        let offer = parse(
            "v=0
            o=- 7 7 IN IP4 192.0.2.1
            s=-
            c=IN IP4 192.0.2.1
            t=0 0
            m=video 6002 RTP/AVP 96 97
            a=rtpmap:96 H264/90000
            a=rtpmap:97 VP8/90000
            m=audio 6000 RTP/AVP 0
            m=image 6004 udptl t38
            a=T38FaxVersion:0",
        );
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.media_index, 1);
        assert_eq!(sdp.media.len(), 3);
        assert_eq!(sdp.media[0].to_string(), "m=video 0 RTP/AVP 96 97\r\n");
        assert_eq!(sdp.media[1].port, 40000);
        assert_eq!(sdp.media[2].to_string(), "m=image 0 udptl t38\r\n");
    }

    #[test]
    fn only_the_first_usable_audio_stream_is_accepted() {
        let offer = parse(
            "v=0\no=- 7 7 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0
            m=audio 6000 RTP/AVP 9
            m=audio 6002 RTP/SAVP 0
            m=audio 6004 RTP/AVP 0
            m=audio 6006 RTP/AVP 0",
        );
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.media_index, 2);
        let ports: Vec<u16> = sdp.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 0, 40000, 0]);
    }

    #[test]
    fn no_common_codec_is_an_error_for_a_488() {
        let offer = parse(&ASTERISK.replace("RTP/AVP 9 18 3 8 101", "RTP/AVP 9 18 3 101"));
        let err = answer(&offer, &local()).unwrap_err();
        assert_eq!(
            err,
            NegotiationError::NoCommonCodec {
                offered: vec![
                    "G722/8000".into(),
                    "G729/8000".into(),
                    "GSM/8000".into(),
                    "telephone-event/8000".into()
                ],
                supported: vec![Codec::Pcmu, Codec::Pcma],
            }
        );
        assert_eq!(
            err.to_string(),
            "no common audio codec (offered: G722/8000, G729/8000, GSM/8000, telephone-event/8000; \
             supported: PCMU/8000, PCMA/8000)"
        );
        let mut only_pcmu = local();
        only_pcmu.codecs = vec![Codec::Pcmu];
        assert!(matches!(
            answer(&parse(ASTERISK), &only_pcmu),
            Err(NegotiationError::NoCommonCodec { .. })
        ));
    }

    #[test]
    fn offer_without_active_audio_is_an_error() {
        let offer = parse(
            "v=0\no=- 7 7 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0
            m=video 6002 RTP/AVP 96
            m=audio 0 RTP/AVP 0",
        );
        assert_eq!(
            answer(&offer, &local()).unwrap_err(),
            NegotiationError::NoAudioStream
        );
    }

    #[test]
    fn answer_directions_mirror_the_offer() {
        for (offered, answered) in [
            ("sendrecv", Direction::SendRecv),
            ("sendonly", Direction::RecvOnly),
            ("recvonly", Direction::SendOnly),
            ("inactive", Direction::Inactive),
        ] {
            let offer = parse(&format!("{SIPP_UAC}\na={offered}"));
            let (sdp, neg) = answer(&offer, &local()).unwrap();
            assert_eq!(sdp.media[0].direction, Some(answered), "offer {offered}");
            assert_eq!(neg.direction, answered);
            assert_eq!(neg.remote_hold, matches!(offered, "sendonly" | "inactive"));
        }
    }

    #[test]
    fn media_direction_wins_over_session_direction() {
        let text = SIPP_UAC.replace("t=0 0", "t=0 0\na=sendonly");
        let offer = parse(&text);
        assert_eq!(offer.direction, Some(Direction::SendOnly));
        assert_eq!(offer.direction_of(&offer.media[0]), Direction::SendOnly);
        assert_eq!(
            answer(&offer, &local()).unwrap().1.direction,
            Direction::RecvOnly
        );
        let offer = parse(&format!("{text}\na=sendrecv"));
        assert_eq!(offer.direction_of(&offer.media[0]), Direction::SendRecv);
        assert_eq!(
            answer(&offer, &local()).unwrap().1.direction,
            Direction::SendRecv
        );
    }

    #[test]
    fn our_own_direction_is_limited_by_the_offer() {
        let mut ours = local();
        ours.direction = Direction::SendOnly;
        let offer = parse(&format!("{SIPP_UAC}\na=sendonly"));
        // We want to only send, they only send: nobody receives.
        assert_eq!(
            answer(&offer, &ours).unwrap().1.direction,
            Direction::Inactive
        );
        let offer = parse(SIPP_UAC);
        assert_eq!(
            answer(&offer, &ours).unwrap().1.direction,
            Direction::SendOnly
        );
    }

    /// The three offers of a call put on hold and taken off it in re-INVITEs.
    fn reinvite(version: u64, hold: &str) -> SessionDescription {
        parse(&format!(
            "v=0
            o=- 1386527542 {version} IN IP4 127.0.0.1
            s=-
            c=IN IP4 127.0.0.1
            t=0 0
            m=audio 12345 RTP/AVP 0 8 101
            a=rtpmap:101 telephone-event/8000
            a=fmtp:101 0-15
            {hold}"
        ))
    }

    #[test]
    fn hold_and_unhold_by_sendonly_bump_our_version() {
        let ours = local();
        let (first, neg) = answer(&reinvite(1, "a=sendrecv"), &ours).unwrap();
        assert!(!neg.remote_hold);
        assert_eq!(first.origin.version, 0);

        let hold = reinvite(2, "a=sendonly");
        assert!(!hold.is_unchanged_from(&reinvite(1, "a=sendrecv")));
        let (held, neg) = answer_update(&hold, &ours, &first).unwrap();
        assert!(neg.remote_hold);
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(held.media[0].direction, Some(Direction::RecvOnly));
        assert_eq!(held.origin.version, 1);
        assert_eq!(held.origin.session_id, "4242");

        // A refresh with the same offer: same answer, same version.
        let (refreshed, _) = answer_update(&hold, &ours, &held).unwrap();
        assert_eq!(refreshed, held);

        let (unheld, neg) = answer_update(&reinvite(3, "a=sendrecv"), &ours, &held).unwrap();
        assert!(!neg.remote_hold);
        assert_eq!(neg.direction, Direction::SendRecv);
        assert_eq!(unheld.origin.version, 2);
    }

    #[test]
    fn hold_by_zero_address_is_answered_recvonly() {
        let ours = local();
        let (first, _) = answer(&reinvite(1, ""), &ours).unwrap();
        let hold = parse(
            &crlf(&reinvite(2, "").to_string()).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
        );
        let (held, neg) = answer_update(&hold, &ours, &first).unwrap();
        assert!(neg.remote_hold);
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(neg.remote_rtp, sock("0.0.0.0:12345"));
        assert_eq!(held.media[0].direction, Some(Direction::RecvOnly));
        assert_eq!(held.origin.version, 1);
        let (unheld, neg) = answer_update(&reinvite(3, ""), &ours, &held).unwrap();
        assert!(!neg.remote_hold);
        assert_eq!(neg.direction, Direction::SendRecv);
        assert_eq!(unheld.origin.version, 2);
    }

    #[test]
    fn lf_only_line_ends_are_accepted() {
        let lf = BARESIP
            .lines()
            .map(|l| format!("{}\n", l.trim()))
            .collect::<String>();
        assert!(!lf.contains('\r'));
        assert_eq!(
            SessionDescription::parse(lf.as_bytes()).unwrap(),
            parse(BARESIP)
        );
    }

    #[test]
    fn written_offer_is_exact_and_parses_back() {
        let offer = create_offer(&local());
        let text = offer.to_string();
        assert_eq!(
            text,
            crlf(
                "v=0
                o=sipcheck 4242 0 IN IP4 192.0.2.10
                s=sipcheck
                c=IN IP4 192.0.2.10
                t=0 0
                m=audio 40000 RTP/AVP 0 8 101
                a=rtpmap:0 PCMU/8000
                a=rtpmap:8 PCMA/8000
                a=rtpmap:101 telephone-event/8000
                a=fmtp:101 0-16
                a=ptime:20
                a=sendrecv"
            )
        );
        assert_eq!(SessionDescription::parse(&offer.to_bytes()).unwrap(), offer);
        assert_eq!(text.parse::<SessionDescription>().unwrap(), offer);
        // A peer's description written again also parses back to the same model.
        for sample in [KAMAILIO_RTPENGINE, SIPP_UAC, BARESIP, ASTERISK] {
            let model = parse(sample);
            assert_eq!(SessionDescription::parse(&model.to_bytes()).unwrap(), model);
        }
    }

    #[test]
    fn offerer_reads_the_answer() {
        let offer = create_offer(&local());
        // The peer prefers PCMA and uses another telephone-event payload type.
        let answer = parse(
            "v=0
            o=- 99 99 IN IP4 198.51.100.9
            s=-
            c=IN IP4 198.51.100.9
            t=0 0
            m=audio 7078 RTP/AVP 8 96
            a=rtpmap:96 telephone-event/8000
            a=ptime:30",
        );
        let neg = negotiated_from_answer(&offer, &answer).unwrap();
        assert_eq!(
            neg,
            Negotiated {
                media_index: 0,
                remote_rtp: sock("198.51.100.9:7078"),
                codec: Codec::Pcma,
                payload_type: 8,
                telephone_event_pt: Some(96),
                ptime_ms: 30,
                direction: Direction::SendRecv,
                remote_hold: false,
            }
        );
    }

    #[test]
    fn offerer_side_hold_and_errors() {
        let mut ours = local();
        ours.direction = Direction::SendOnly;
        let offer = create_offer(&ours);
        let recvonly = parse(&format!("{SIPP_UAC}\na=recvonly"));
        let neg = negotiated_from_answer(&offer, &recvonly).unwrap();
        assert_eq!(neg.direction, Direction::SendOnly);
        assert!(!neg.remote_hold);

        let offer = create_offer(&local());
        let rejected = parse(&SIPP_UAC.replace("m=audio 6000", "m=audio 0"));
        assert_eq!(
            negotiated_from_answer(&offer, &rejected),
            Err(NegotiationError::AudioRejected)
        );
        let g729 = parse(&SIPP_UAC.replace("RTP/AVP 0", "RTP/AVP 18"));
        assert!(matches!(
            negotiated_from_answer(&offer, &g729),
            Err(NegotiationError::NoCommonCodec { .. })
        ));
        let two = parse(&format!("{SIPP_UAC}\nm=video 0 RTP/AVP 96"));
        assert_eq!(
            negotiated_from_answer(&offer, &two)
                .unwrap_err()
                .to_string(),
            "the answer has 2 media sections, the offer 1"
        );
    }

    #[test]
    fn malformed_optional_attributes_are_kept_not_fatal() {
        let offer = parse(&format!(
            "{SIPP_UAC}\na=rtpmap:8 PCMA\na=ptime:twenty\na=fmtp:x\na=rtcp:99999\na=x-custom"
        ));
        let m = &offer.media[0];
        assert_eq!(m.rtpmaps.len(), 1);
        assert_eq!(m.ptime_ms, None);
        let names: Vec<&str> = m.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["rtpmap", "ptime", "fmtp", "rtcp", "x-custom"]);
        // Static payload type 8 still means PCMA without its rtpmap.
        assert_eq!(m.rtpmap(8).and_then(|r| r.codec()), Some(Codec::Pcma));
    }

    #[test]
    fn rtcp_with_address_and_ptime_caps() {
        let offer = parse(&format!(
            "{SIPP_UAC}\na=rtcp:6001 IN IP4 127.0.0.2\na=ptime:40\na=maxptime:30"
        ));
        let m = &offer.media[0];
        assert_eq!(
            m.rtcp.as_ref().and_then(|r| r.address.clone()),
            Some(Address::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))))
        );
        assert_eq!(answer(&offer, &local()).unwrap().1.ptime_ms, 30);
    }

    #[test]
    fn parse_errors_name_their_line() {
        let cases: [(&str, &str); 7] = [
            ("", "sdp is empty"),
            ("\r\n\r\n", "sdp is empty"),
            ("o=- 1 1 IN IP4 1.2.3.4", "line 1: sdp must start with v=0"),
            (
                "v=1",
                "line 1: sdp version \"1\" is not supported, only v=0 is",
            ),
            ("v=0\n\ngarbage", "line 3: not a `<type>=<value>` sdp line"),
            (
                "v=0\no=- 1 one IN IP4 1.2.3.4",
                "line 2: o= line is malformed: session version \"one\" is not a number",
            ),
            ("v=0\ns=-", "sdp has no o= line"),
        ];
        for (input, message) in cases {
            let err = SessionDescription::parse(input.as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), message, "input {input:?}");
        }
        let twice = "v=0\no=- 1 1 IN IP4 1.2.3.4\no=- 1 1 IN IP4 1.2.3.4";
        assert_eq!(
            SessionDescription::parse(twice.as_bytes()),
            Err(ParseError::DuplicateOrigin { line: 3 })
        );
        let c = "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=ATM NSAP 47.0005";
        assert_eq!(
            SessionDescription::parse(c.as_bytes())
                .unwrap_err()
                .to_string(),
            "line 3: c= line is malformed: network type \"ATM\" is not IN"
        );
    }

    #[test]
    fn parser_never_panics_on_prefixes_or_garbage() {
        let sample = crlf(KAMAILIO_RTPENGINE).into_bytes();
        for end in 0..=sample.len() {
            let _ = SessionDescription::parse(&sample[..end]);
        }
        // xorshift64*: deterministic garbage, with SDP-ish bytes over-represented.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let alphabet = b"vocmtsa=:/ \r\n0123456789.INP4-\xff\xc3";
        for round in 0..3000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 2 == 0 {
                        alphabet[(r % alphabet.len() as u64) as usize]
                    } else {
                        r as u8
                    }
                })
                .collect();
            let _ = SessionDescription::parse(&bytes);
            // Mutations of a real sample.
            let mut mutated = sample.clone();
            for _ in 0..(next() % 8) {
                let at = (next() % mutated.len() as u64) as usize;
                mutated[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            if let Ok(sdp) = SessionDescription::parse(&mutated) {
                let _ = answer(&sdp, &local());
                let _ = negotiated_from_answer(&create_offer(&local()), &sdp);
                let _ = SessionDescription::parse(&sdp.to_bytes());
            }
        }
    }

    #[test]
    fn telephone_event_lists_are_intersected() {
        assert_eq!(
            parse_events("0-15,66,70"),
            Some(vec![(0, 15), (66, 66), (70, 70)])
        );
        assert_eq!(parse_events("16-3"), None);
        assert_eq!(parse_events("0-300"), None);
        assert_eq!(
            render_events(&intersect_events(
                &[(0, 11), (16, 16), (66, 66)],
                OUR_EVENTS
            )),
            "0-11,16"
        );
        // An offer of events we do not know drops telephone-event from the answer.
        let offer = parse(&BARESIP.replace("a=fmtp:101 0-15", "a=fmtp:101 66"));
        let (sdp, neg) = answer(&offer, &local()).unwrap();
        assert_eq!(neg.telephone_event_pt, None);
        assert_eq!(sdp.media[0].formats, ["0"]);
    }
}
