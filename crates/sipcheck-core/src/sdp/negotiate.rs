//! RFC 3264 offer/answer for the audio stream: our offers and answers, and what both sides
//! agreed on.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::*;

impl SessionDescription {
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
    /// SRTP (SDES keys) could not be agreed under our policy: no usable `a=crypto`, plain
    /// RTP where SRTP is required, `RTP/SAVP` where it is off, an answer's key not offered.
    #[error("srtp refused: {0}")]
    Srtp(#[from] super::crypto::SdesError),
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
    /// SRTP keyed by SDES (`None`: plain RTP only, `srtp: off`): the policy and our keys,
    /// written into every offer and answer made from this description.
    pub srtp: Option<super::crypto::LocalSrtp>,
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
            srtp: None,
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
    /// The SRTP keys agreed (SDES), `None` for plain RTP.
    pub srtp: Option<super::crypto::SrtpKeys>,
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
    match &local.srtp {
        None => create_offer_plain(local),
        Some(srtp) => super::crypto::create_offer_sdes(local, srtp.policy, srtp.keys.clone()).0,
    }
}

/// [`create_offer`] without SRTP.
pub(super) fn create_offer_plain(local: &LocalMedia) -> SessionDescription {
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
///
/// With [`LocalMedia::srtp`] (or without: `srtp: off`) the offer's SDES keys are answered
/// under its policy ([`super::crypto::answer_sdes`]); [`NegotiationError::Srtp`] when they
/// cannot be.
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    use super::crypto::{answer_sdes, MasterKey, SrtpPolicy, MASTER_KEY_LEN};
    let (policy, key) = match &local.srtp {
        Some(srtp) => (srtp.policy, srtp.keys[0].clone()),
        // Never used: `off` answers no key.
        None => (SrtpPolicy::Off, MasterKey::from_bytes([0; MASTER_KEY_LEN])),
    };
    let (sdp, mut negotiated, keys) = answer_sdes(offer, local, policy, key)?;
    negotiated.srtp = keys;
    Ok((sdp, negotiated))
}

/// [`answer`] without SRTP: `RTP/SAVP` streams are not audio streams we can take.
pub(super) fn answer_plain(
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
            srtp: None,
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
///
/// An offer of ours with `a=crypto` (made by [`create_offer`] from a [`LocalMedia`] with SRTP)
/// is read under the policy it was made with: `RTP/SAVP` is `required`, `RTP/AVP` with keys
/// `optional` ([`super::crypto::negotiated_from_answer_sdes`]).
pub fn negotiated_from_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, NegotiationError> {
    use super::crypto::{
        as_avp, crypto_values, is_savp, negotiated_from_answer_sdes, Crypto, SrtpPolicy,
    };
    // The stream the answer takes decides (an offer may hold several, RTP/SAVP and RTP/AVP
    // alike): RTP/SAVP requires SRTP, RTP/AVP with keys offers it, RTP/AVP without is plain.
    let (offer_avp, answer_avp) = (as_avp(offer), as_avp(answer));
    let plain = negotiated_from_answer_plain(&offer_avp, &answer_avp)?;
    // Neither has an RTP/SAVP stream: `plain` was negotiated on the two themselves.
    let unchanged = matches!(
        (&offer_avp, &answer_avp),
        (Cow::Borrowed(_), Cow::Borrowed(_))
    );
    let chosen = &offer.media[plain.media_index];
    let ours: Vec<Crypto> = crypto_values(chosen)
        .into_iter()
        .filter_map(|v| Crypto::parse(v).ok())
        .collect();
    let policy = if is_savp(chosen) {
        SrtpPolicy::Required
    } else if !ours.is_empty() {
        SrtpPolicy::Optional
    } else if unchanged {
        return Ok(plain);
    } else {
        return negotiated_from_answer_plain(offer, answer);
    };
    let (mut negotiated, keys) = negotiated_from_answer_sdes(offer, answer, policy, &ours)?;
    negotiated.srtp = keys;
    Ok(negotiated)
}

/// [`negotiated_from_answer`] without SRTP.
pub(super) fn negotiated_from_answer_plain(
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
            srtp: None,
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
mod tests;
