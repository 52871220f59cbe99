//! SDES keying of SRTP (RFC 4568): the `a=crypto` attribute, our offer's attributes, the
//! answerer's choice among the offered ones and the offerer's reading of the answer, and the
//! policy (`srtp: required|optional|off`) that decides what an offer may be answered with.
//!
//! Only the two suites every SRTP peer implements are supported: `AES_CM_128_HMAC_SHA1_80` and
//! `AES_CM_128_HMAC_SHA1_32` (RFC 4568 §6.2), each with one 30-byte master key‖salt given
//! `inline:` in base64. A key's lifetime parameter is accepted and ignored (a test call sends
//! far fewer than the 2^31 packets a lifetime must allow, §6.1); an attribute with an MKI, with
//! more than one key, or with a session parameter other than `WSH` (the window-size hint) or
//! `KDR=0` is not usable (§6.3: an answerer must not accept parameters it does not implement)
//! and is skipped, never half-applied.
//!
//! Keys are never constant: the caller supplies fresh random bytes for each call (the shell
//! draws them from the OS RNG). [`MasterKey`]'s `Debug` does not show the key, so no ladder,
//! trace or report can print one; only the SDP body on the wire carries it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Length of an AES-128 master key followed by its 112-bit master salt (RFC 3711 §8.2).
pub const MASTER_KEY_LEN: usize = 30;

/// An SRTP crypto suite (RFC 4568 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 tag of 32 bits.
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// Both suites, in our order of preference.
    pub const ALL: [Self; 2] = [Self::AesCm128HmacSha1_80, Self::AesCm128HmacSha1_32];

    /// The suite's name as written in `a=crypto`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Bytes the authentication tag adds to every SRTP packet.
    #[must_use]
    pub const fn tag_len(self) -> usize {
        match self {
            Self::AesCm128HmacSha1_80 => 10,
            Self::AesCm128HmacSha1_32 => 4,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|suite| suite.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A master key and master salt (16 + 14 bytes). Its `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// A key from random bytes the caller drew from the OS RNG.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16-byte master key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.0[..16]
    }

    /// The 14-byte master salt.
    #[must_use]
    pub fn salt(&self) -> &[u8] {
        &self.0[16..]
    }

    fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<hidden>)")
    }
}

/// One `a=crypto` attribute we can use: tag, suite and the inline key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Crypto {
    /// The tag (1 to 9 digits) the answer echoes (RFC 4568 §5.1).
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The sender's master key and salt.
    pub key: MasterKey,
}

/// Why an `a=crypto` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not of the form `tag suite key-params [session-params]`.
    #[error("a=crypto is malformed: {0}")]
    Malformed(&'static str),
    /// A suite other than the two we implement.
    #[error("a=crypto suite {0} is not supported")]
    UnsupportedSuite(String),
    /// An MKI, several keys, or a session parameter we do not implement.
    #[error("a=crypto parameter {0} is not supported")]
    UnsupportedParameter(String),
}

impl Crypto {
    /// Parses the value of an `a=crypto` attribute (after `crypto:`).
    ///
    /// # Errors
    /// [`CryptoError`] naming why the attribute cannot be used.
    pub fn parse(value: &str) -> Result<Self, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next().ok_or(CryptoError::Malformed("no tag"))?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoError::Malformed("the tag is not 1 to 9 digits"));
        }
        let tag = tag
            .parse()
            .map_err(|_| CryptoError::Malformed("the tag is not 1 to 9 digits"))?;
        let suite_name = fields.next().ok_or(CryptoError::Malformed("no suite"))?;
        let suite = CryptoSuite::from_name(suite_name)
            .ok_or_else(|| CryptoError::UnsupportedSuite(suite_name.to_owned()))?;
        let key_params = fields
            .next()
            .ok_or(CryptoError::Malformed("no key parameters"))?;
        if key_params.contains(';') {
            return Err(CryptoError::UnsupportedParameter(
                "several keys (;)".to_owned(),
            ));
        }
        let inline = strip_prefix_ignore_case(key_params, "inline:")
            .ok_or(CryptoError::Malformed("the key method is not inline:"))?;
        let mut parts = inline.split('|');
        let key = parts.next().unwrap_or_default();
        let mut seen_lifetime = false;
        for part in parts {
            if !seen_lifetime && !part.contains(':') && is_lifetime(part) {
                seen_lifetime = true;
            } else if part.contains(':') {
                return Err(CryptoError::UnsupportedParameter(format!("MKI {part}")));
            } else {
                return Err(CryptoError::Malformed("a key parameter is malformed"));
            }
        }
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| CryptoError::Malformed("the inline key is not base64"))?;
        let key: [u8; MASTER_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("the inline key is not 30 bytes"))?;
        for param in fields {
            let name = param.split('=').next().unwrap_or_default();
            let ok = name.eq_ignore_ascii_case("WSH")
                || (name.eq_ignore_ascii_case("KDR") && param[name.len()..] == *"=0");
            if !ok {
                return Err(CryptoError::UnsupportedParameter(param.to_owned()));
            }
        }
        Ok(Self {
            tag,
            suite,
            key: MasterKey(key),
        })
    }

    /// The attribute value as written after `a=crypto:`.
    #[must_use]
    pub fn value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            self.key.to_base64()
        )
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A lifetime: decimal digits or `2^` digits (RFC 4568 §9.1).
fn is_lifetime(text: &str) -> bool {
    let digits = text.strip_prefix("2^").unwrap_or(text);
    !digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a call uses SRTP: `srtp: required|optional|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SrtpPolicy {
    /// Plain RTP only: offer `RTP/AVP` without keys; an `RTP/SAVP` offer is refused (488).
    #[default]
    Off,
    /// SRTP when the peer takes it: offer `RTP/AVP` with `a=crypto` (best-effort SRTP); a
    /// peer answering without `a=crypto` gets plain RTP. Answer an offer with keys with SRTP,
    /// one without with plain RTP.
    Optional,
    /// SRTP or no call: offer `RTP/SAVP`; refuse (488) an offer without usable keys (an
    /// `RTP/AVP` offer with usable `a=crypto` is answered with SRTP).
    Required,
}

impl SrtpPolicy {
    /// The policy's name: `off`, `optional`, `required`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }

    /// The policy named `name` (as [`Self::as_str`] writes it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Off, Self::Optional, Self::Required]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

/// What the answerer does with the offer's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdesAnswer {
    /// Plain RTP: no `a=crypto` in the answer.
    Plain,
    /// SRTP: answer with this attribute (the offer's tag and suite, our key); the peer sends
    /// with `remote`.
    Srtp {
        /// Our attribute for the answer.
        local: Crypto,
        /// The offered attribute we accepted.
        remote: Crypto,
    },
}

/// Why an offer cannot be answered under our policy (answered `488 Not Acceptable Here`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    /// SRTP is required but the offer is `RTP/AVP`.
    #[error("srtp is required but the offer is plain rtp/avp")]
    PlainOffered,
    /// The offer is `RTP/SAVP` but our policy is `off`. An `RTP/SAVP` stream cannot be
    /// answered `RTP/AVP` (RFC 3264 §6: the answer keeps the offer's transport).
    #[error("the offer is rtp/savp but srtp is off")]
    SrtpOffered,
    /// No offered `a=crypto` is usable (suite, MKI or parameters we do not implement).
    #[error("no usable a=crypto in the offer ({0})")]
    NoUsableCrypto(String),
    /// Our offer had keys, the answer's `a=crypto` does not match any of them.
    #[error("the answer's a=crypto does not match our offer ({0})")]
    AnswerMismatch(String),
    /// SRTP is required and the answer has no `a=crypto`.
    #[error("srtp is required but the answer has no a=crypto")]
    AnswerWithoutCrypto,
}

/// Our offer's attributes: one per suite, tags 1 and 2, each with its own fresh key.
#[must_use]
pub fn offer_crypto(keys: [MasterKey; 2]) -> Vec<Crypto> {
    CryptoSuite::ALL
        .into_iter()
        .zip(keys)
        .zip(1..)
        .map(|((suite, key), tag)| Crypto { tag, suite, key })
        .collect()
}

/// The answerer's choice (RFC 4568 §7.1.2): the first usable offered attribute, in the
/// offerer's order, echoed with its tag and suite and our `key`.
///
/// `savp` is whether the offered stream is `RTP/SAVP`; `offered` are its `a=crypto` values.
///
/// # Errors
/// [`SdesError`]: the call is refused with 488.
pub fn answer_crypto(
    policy: SrtpPolicy,
    savp: bool,
    offered: &[&str],
    key: MasterKey,
) -> Result<SdesAnswer, SdesError> {
    match (policy, savp) {
        (SrtpPolicy::Off, true) => return Err(SdesError::SrtpOffered),
        (SrtpPolicy::Off, false) => return Ok(SdesAnswer::Plain),
        // `required` takes an RTP/AVP offer with usable keys (best-effort SRTP, answered
        // RTP/AVP with ours: the media is SRTP all the same), never one without.
        (SrtpPolicy::Required, false) if offered.is_empty() => return Err(SdesError::PlainOffered),
        _ => {}
    }
    let mut reasons = Vec::new();
    for value in offered {
        match Crypto::parse(value) {
            Ok(remote) => {
                let local = Crypto {
                    tag: remote.tag,
                    suite: remote.suite,
                    key,
                };
                return Ok(SdesAnswer::Srtp { local, remote });
            }
            Err(err) => reasons.push(err.to_string()),
        }
    }
    if !savp && policy == SrtpPolicy::Optional {
        // Best-effort SRTP offered with keys we cannot use: plain RTP is what RTP/AVP means.
        return Ok(SdesAnswer::Plain);
    }
    if reasons.is_empty() {
        reasons.push("none offered".to_owned());
    }
    Err(SdesError::NoUsableCrypto(reasons.join("; ")))
}

/// The offerer's reading of the answer's `a=crypto` values against `ours` (what we offered):
/// `Ok(None)` is plain RTP (allowed unless `required`), `Ok(Some((local, remote)))` the keys
/// each side sends with.
///
/// # Errors
/// [`SdesError`] when the answer's attribute matches none of ours, or is missing under
/// `required`.
pub fn accept_answer(
    policy: SrtpPolicy,
    ours: &[Crypto],
    answered: &[&str],
) -> Result<Option<(Crypto, Crypto)>, SdesError> {
    let Some(value) = answered.first() else {
        return if policy == SrtpPolicy::Required {
            Err(SdesError::AnswerWithoutCrypto)
        } else {
            Ok(None)
        };
    };
    if answered.len() > 1 {
        return Err(SdesError::AnswerMismatch(
            "more than one a=crypto".to_owned(),
        ));
    }
    let remote = Crypto::parse(value).map_err(|err| SdesError::AnswerMismatch(err.to_string()))?;
    let local = ours
        .iter()
        .find(|ours| ours.tag == remote.tag && ours.suite == remote.suite)
        .ok_or_else(|| {
            SdesError::AnswerMismatch(format!("tag {} {} not offered", remote.tag, remote.suite))
        })?;
    Ok(Some((local.clone(), remote)))
}

/// The transport protocol of an SRTP stream (RFC 3711 §12).
pub const SAVP: &str = "RTP/SAVP";

/// Whether `media` is an `RTP/SAVP` stream.
#[must_use]
pub fn is_savp(media: &super::MediaDescription) -> bool {
    media.protocol.as_str().eq_ignore_ascii_case(SAVP)
}

/// The values of `media`'s `a=crypto` attributes, in order.
#[must_use]
pub fn crypto_values(media: &super::MediaDescription) -> Vec<&str> {
    media
        .attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("crypto"))
        .filter_map(|a| a.value.as_deref())
        .collect()
}

/// Writes `crypto` into `media` (our offer's or answer's audio stream) as `a=crypto`
/// attributes, and makes the stream `RTP/SAVP` when `savp`: under [`SrtpPolicy::Required`]
/// and in the answer to an `RTP/SAVP` offer. [`SrtpPolicy::Optional`] offers keep `RTP/AVP`
/// (best-effort SRTP).
pub fn write_crypto(media: &mut super::MediaDescription, savp: bool, crypto: &[Crypto]) {
    if savp {
        media.protocol = super::TransportProtocol::Other(SAVP.to_owned());
    }
    media
        .attributes
        .extend(crypto.iter().map(|c| super::Attribute {
            name: "crypto".to_owned(),
            value: Some(c.value()),
        }));
}

/// Why an offer or answer failed offer/answer with SDES: the codec/stream negotiation or the
/// keys. A UAS answers either with `488 Not Acceptable Here`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesNegotiationError {
    /// The streams or codecs did not match.
    #[error(transparent)]
    Media(#[from] super::NegotiationError),
    /// The keys or the transport did not match the policy.
    #[error(transparent)]
    Keys(#[from] SdesError),
}

/// Our side of SDES: the policy and the keys our offers and answers carry (fresh random bytes
/// drawn by the shell for each call). `srtp: off` is no `LocalSrtp` at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSrtp {
    /// `optional` or `required`.
    pub policy: SrtpPolicy,
    /// One key per offered suite; an answer uses the first.
    pub keys: [MasterKey; 2],
}

impl LocalSrtp {
    /// `None` for [`SrtpPolicy::Off`].
    #[must_use]
    pub fn new(policy: SrtpPolicy, keys: [MasterKey; 2]) -> Option<Self> {
        (policy != SrtpPolicy::Off).then_some(Self { policy, keys })
    }
}

impl From<SdesNegotiationError> for super::NegotiationError {
    fn from(error: SdesNegotiationError) -> Self {
        match error {
            SdesNegotiationError::Media(error) => error,
            SdesNegotiationError::Keys(error) => Self::Srtp(error),
        }
    }
}

/// The keys agreed for the call: `local` is what we send with, `remote` what the peer sends
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// Our attribute (we protect with its key).
    pub local: Crypto,
    /// The peer's attribute (we unprotect with its key).
    pub remote: Crypto,
}

/// `sdp` with its `RTP/SAVP` streams read as `RTP/AVP`, for the plain offer/answer: a copy
/// when it has one, else `sdp` itself (borrowed, not copied).
pub(super) fn as_avp(
    sdp: &super::SessionDescription,
) -> std::borrow::Cow<'_, super::SessionDescription> {
    if !sdp.media.iter().any(is_savp) {
        return std::borrow::Cow::Borrowed(sdp);
    }
    let mut sdp = sdp.clone();
    for m in &mut sdp.media {
        if is_savp(m) {
            m.protocol = super::TransportProtocol::RtpAvp;
        }
    }
    std::borrow::Cow::Owned(sdp)
}

/// [`super::create_offer`] under `policy`: `off` is the plain offer; `optional` adds our two
/// `a=crypto` lines to the `RTP/AVP` stream; `required` makes it `RTP/SAVP` with them.
/// Returns the offer and the attributes offered (for [`negotiated_from_answer_sdes`]).
#[must_use]
pub fn create_offer_sdes(
    local: &super::LocalMedia,
    policy: SrtpPolicy,
    keys: [MasterKey; 2],
) -> (super::SessionDescription, Vec<Crypto>) {
    let mut offer = super::negotiate::create_offer_plain(local);
    if policy == SrtpPolicy::Off {
        return (offer, Vec::new());
    }
    let ours = offer_crypto(keys);
    if let Some(m) = offer.media.first_mut() {
        write_crypto(m, policy == SrtpPolicy::Required, &ours);
    }
    (offer, ours)
}

/// [`super::answer`] under `policy`, answering with `key`: the stream the plain answer
/// accepts keeps the offer's transport (`RTP/SAVP` is answered `RTP/SAVP`, RFC 3264 §6) and
/// gets our `a=crypto` for the chosen offered one ([`answer_crypto`]).
///
/// # Errors
/// [`SdesNegotiationError`]: answered 488.
pub fn answer_sdes(
    offer: &super::SessionDescription,
    local: &super::LocalMedia,
    policy: SrtpPolicy,
    key: MasterKey,
) -> Result<
    (
        super::SessionDescription,
        super::Negotiated,
        Option<SrtpKeys>,
    ),
    SdesNegotiationError,
> {
    if policy == SrtpPolicy::Off {
        return match super::negotiate::answer_plain(offer, local) {
            Ok((sdp, negotiated)) => Ok((sdp, negotiated, None)),
            // Name the reason: the audio is there, but only as SRTP.
            Err(super::NegotiationError::NoAudioStream)
                if offer.media.iter().any(|m| {
                    is_savp(m) && m.media == super::MediaType::Audio && !m.is_rejected()
                }) =>
            {
                Err(SdesError::SrtpOffered.into())
            }
            Err(err) => Err(err.into()),
        };
    }
    let (mut sdp, negotiated) = super::negotiate::answer_plain(&as_avp(offer), local)?;
    let offered = &offer.media[negotiated.media_index];
    let savp = is_savp(offered);
    let keys = match answer_crypto(policy, savp, &crypto_values(offered), key)? {
        SdesAnswer::Plain => None,
        SdesAnswer::Srtp { local, remote } => {
            write_crypto(
                &mut sdp.media[negotiated.media_index],
                savp,
                std::slice::from_ref(&local),
            );
            Some(SrtpKeys { local, remote })
        }
    };
    Ok((sdp, negotiated, keys))
}

/// [`super::negotiated_from_answer`] for an offer made by [`create_offer_sdes`] with `ours`:
/// the accepted stream's `a=crypto` must match one we offered ([`accept_answer`]), and the
/// answer must keep our transport.
///
/// # Errors
/// [`SdesNegotiationError`].
pub fn negotiated_from_answer_sdes(
    offer: &super::SessionDescription,
    answer: &super::SessionDescription,
    policy: SrtpPolicy,
    ours: &[Crypto],
) -> Result<(super::Negotiated, Option<SrtpKeys>), SdesNegotiationError> {
    let negotiated =
        super::negotiate::negotiated_from_answer_plain(&as_avp(offer), &as_avp(answer))?;
    let index = negotiated.media_index;
    if is_savp(&offer.media[index]) != is_savp(&answer.media[index]) {
        return Err(SdesError::AnswerMismatch(format!(
            "the answer's transport is {}, the offer's {}",
            answer.media[index].protocol, offer.media[index].protocol
        ))
        .into());
    }
    let keys = accept_answer(policy, ours, &crypto_values(&answer.media[index]))?
        .map(|(local, remote)| SrtpKeys { local, remote });
    Ok((negotiated, keys))
}

#[cfg(test)]
mod tests;
