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
//! * SRTP keyed by SDES (RFC 4568): [`crypto`] writes and reads `a=crypto`, and
//!   [`crypto::create_offer_sdes`], [`crypto::answer_sdes`] and
//!   [`crypto::negotiated_from_answer_sdes`] run the offer/answer above under a
//!   [`crypto::SrtpPolicy`].
//!
//! The model is defined here; the parser is in `sdp/parse.rs` and offer/answer in
//! `sdp/negotiate.rs`, each with its tests beside it (real peers' bodies, shared, in
//! `sdp/tests.rs`).
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
use std::net::IpAddr;

pub mod crypto;
mod negotiate;
mod parse;

pub use negotiate::{
    answer, answer_update, create_offer, negotiated_from_answer, LocalMedia, Negotiated,
    NegotiationError,
};
use parse::parse_payload_type;
pub use parse::ParseError;

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

pub use crate::media::g711::Codec;

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

#[cfg(test)]
mod tests;
