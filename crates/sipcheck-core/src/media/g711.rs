//! G.711 μ-law (PCMU) and A-law (PCMA), bit-exact with the ITU-T reference.
//!
//! "Bit-exact" means identical to the ITU-T G.191 Software Tool Library's `g711.c`
//! (`ulaw_compress`, `ulaw_expand`, `alaw_compress`, `alaw_expand`) for every 16-bit input and
//! every code. That reference takes the magnitude of a negative sample as its one's
//! complement (`!x`), so −1 encodes as the negative zero code (`0x7F` μ-law, `0x55` A-law).
//! The widespread Sun `g711.c` (`linear2ulaw`) negates instead and differs from the reference
//! on about one negative input in four hundred; this module follows the ITU-T.
//!
//! Decoding is a 256-entry table built at compile time; encoding is a handful of integer
//! operations (a leading-zero count finds the segment), with no table and no branch on the
//! sample. The unit tests compare both directions with a separate, loop-by-loop
//! transliteration of the reference over all 65,536 inputs and all 256 codes.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An error from the slice helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum G711Error {
    /// The output slice is shorter than the input.
    #[error("output buffer holds {available} samples or codes, {needed} needed")]
    OutputTooSmall {
        /// How many items the input has.
        needed: usize,
        /// How many items the output can hold.
        available: usize,
    },
}

/// μ-law code → linear sample, as the Sun formulation (independent of the reference used in
/// the tests): add the bias to the mantissa, shift by the segment, remove the bias.
const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0F) as i16) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

/// A-law code → linear sample, as the Sun formulation.
const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i16) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 {
        t
    } else {
        -t
    }
}

const fn expand_table(alaw: bool) -> [i16; 256] {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = if alaw {
            alaw_expand(code as u8)
        } else {
            ulaw_expand(code as u8)
        };
        code += 1;
    }
    table
}

static ULAW_DECODE: [i16; 256] = expand_table(false);
static ALAW_DECODE: [i16; 256] = expand_table(true);

/// The sign mask (`0` for non-negative, `-1` for negative) and the one's-complement magnitude
/// (`0..=32767`) of a sample.
#[inline]
fn sign_and_magnitude(sample: i16) -> (i16, u16) {
    let sign = sample >> 15;
    (sign, (sample ^ sign) as u16)
}

/// Encodes one linear sample as μ-law (G.711 PCMU).
#[inline]
#[must_use]
pub fn ulaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = sign_and_magnitude(sample);
    // 14-bit magnitude plus the μ-law bias of 33, clipped to 13 bits.
    let biased = ((magnitude >> 2) + 33).min(0x1FFF);
    // Segment (exponent) 0..=7: the bit length of `biased >> 6`.
    let exponent = 16 - (biased >> 6).leading_zeros();
    let mantissa = (biased >> (exponent + 1)) & 0x0F;
    let code = ((exponent << 4) as u8) | mantissa as u8;
    // The code word is complemented; the sign bit is 1 for non-negative samples.
    code ^ (0x7F | (!sign as u8 & 0x80))
}

/// Decodes one μ-law (G.711 PCMU) code to a linear sample.
#[inline]
#[must_use]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes one linear sample as A-law (G.711 PCMA).
#[inline]
#[must_use]
pub fn alaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = sign_and_magnitude(sample);
    // 12 most significant bits of the magnitude.
    let ix = magnitude >> 4;
    // Segment 0..=7: segment 0 and 1 share a step size; above that each doubles.
    let exponent = 16 - (ix >> 4).leading_zeros();
    let mantissa = (ix >> exponent.saturating_sub(1)) & 0x0F;
    let code = ((exponent << 4) as u8) | mantissa as u8;
    // Sign bit 1 for non-negative samples, then the even bits are toggled.
    (code | (!sign as u8 & 0x80)) ^ 0x55
}

/// Decodes one A-law (G.711 PCMA) code to a linear sample.
#[inline]
#[must_use]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

fn check_len(needed: usize, available: usize) -> Result<(), G711Error> {
    if available < needed {
        Err(G711Error::OutputTooSmall { needed, available })
    } else {
        Ok(())
    }
}

/// Encodes `pcm` as μ-law into the start of `out`; returns the number of bytes written
/// (`pcm.len()`).
///
/// # Errors
/// [`G711Error::OutputTooSmall`] if `out` is shorter than `pcm`; nothing is written then.
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) -> Result<usize, G711Error> {
    check_len(pcm.len(), out.len())?;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = ulaw_encode(s);
    }
    Ok(pcm.len())
}

/// Decodes μ-law `codes` into the start of `out`; returns the number of samples written.
///
/// # Errors
/// [`G711Error::OutputTooSmall`] if `out` is shorter than `codes`; nothing is written then.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) -> Result<usize, G711Error> {
    check_len(codes.len(), out.len())?;
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_decode(c);
    }
    Ok(codes.len())
}

/// Encodes `pcm` as A-law into the start of `out`; returns the number of bytes written.
///
/// # Errors
/// [`G711Error::OutputTooSmall`] if `out` is shorter than `pcm`; nothing is written then.
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) -> Result<usize, G711Error> {
    check_len(pcm.len(), out.len())?;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = alaw_encode(s);
    }
    Ok(pcm.len())
}

/// Decodes A-law `codes` into the start of `out`; returns the number of samples written.
///
/// # Errors
/// [`G711Error::OutputTooSmall`] if `out` is shorter than `codes`; nothing is written then.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) -> Result<usize, G711Error> {
    check_len(codes.len(), out.len())?;
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_decode(c);
    }
    Ok(codes.len())
}

/// An audio codec sipcheck sends, verifies and negotiates: G.711 μ-law or A-law at 8 kHz,
/// mono. The one codec type of the crate: the scenario model, SDP negotiation, the media
/// session and the command line all use it.
///
/// `Display` writes the SDP form `NAME/RATE` (`PCMU/8000`); [`FromStr`]
/// reads an encoding name, case-insensitively (`PCMU`, `pcma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, `PCMU/8000`, static payload type 0 (RFC 3551 §4.5.14).
    Pcmu,
    /// G.711 A-law, `PCMA/8000`, static payload type 8 (RFC 3551 §4.5.14).
    Pcma,
}

impl Codec {
    /// Every codec, in the default offer order.
    pub const ALL: [Self; 2] = [Self::Pcmu, Self::Pcma];

    /// The static RTP payload type (RFC 3551 Table 4): 0 for PCMU, 8 for PCMA.
    #[must_use]
    pub const fn static_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    /// The encoding name in SDP `a=rtpmap` (RFC 3551 Table 4): `PCMU` or `PCMA`.
    #[must_use]
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate in hertz (8000 for both).
    #[must_use]
    pub const fn clock_rate(self) -> u32 {
        super::SAMPLE_RATE
    }

    /// The codec with static payload type `pt`, if it is 0 or 8.
    #[must_use]
    pub const fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
            _ => None,
        }
    }

    /// The codec with SDP encoding name `name` (case-insensitive, as SDP requires).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.encoding_name()))
    }

    /// The code of a zero sample (`0xFF` μ-law, `0xD5` A-law), to fill silent frames.
    #[must_use]
    pub fn silence_code(self) -> u8 {
        self.encode_sample(0)
    }

    /// Encodes one sample.
    #[inline]
    #[must_use]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => ulaw_encode(sample),
            Self::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one code.
    #[inline]
    #[must_use]
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Self::Pcmu => ulaw_decode(code),
            Self::Pcma => alaw_decode(code),
        }
    }

    /// Encodes a frame of samples into the start of `out` (one byte per sample); returns the
    /// number of bytes written.
    ///
    /// # Errors
    /// [`G711Error::OutputTooSmall`] if `out` is shorter than `pcm`.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) -> Result<usize, G711Error> {
        match self {
            Self::Pcmu => encode_ulaw(pcm, out),
            Self::Pcma => encode_alaw(pcm, out),
        }
    }

    /// Decodes a payload into the start of `out` (one sample per byte); returns the number of
    /// samples written.
    ///
    /// # Errors
    /// [`G711Error::OutputTooSmall`] if `out` is shorter than `payload`.
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> Result<usize, G711Error> {
        match self {
            Self::Pcmu => decode_ulaw(payload, out),
            Self::Pcma => decode_alaw(payload, out),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.encoding_name(), self.clock_rate())
    }
}

/// A codec name that is neither PCMU nor PCMA.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown codec `{0}`")]
pub struct UnknownCodec(pub String);

impl FromStr for Codec {
    type Err = UnknownCodec;

    /// Reads an encoding name, case-insensitively: `PCMU`, `pcmu`, `PCMA`, `pcma`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| UnknownCodec(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ITU-T G.191 STL reference (`g711.c`), transliterated statement by statement with
    /// its loops and 16-bit `short` arithmetic widened to `i32`. Deliberately not shared with
    /// the implementation above.
    mod reference {
        pub(super) fn ulaw_compress(linbuf: i16) -> u8 {
            let lin = i32::from(linbuf);
            let mut absno = if lin < 0 {
                ((!lin) >> 2) + 33
            } else {
                (lin >> 2) + 33
            };
            if absno > 0x1FFF {
                absno = 0x1FFF;
            }
            let mut i = absno >> 6;
            let mut segno = 1;
            while i != 0 {
                segno += 1;
                i >>= 1;
            }
            let high_nibble = 0x0008 - segno;
            let mut low_nibble = (absno >> segno) & 0x000F;
            low_nibble = 0x000F - low_nibble;
            let mut logbuf = (high_nibble << 4) | low_nibble;
            if lin >= 0 {
                logbuf |= 0x0080;
            }
            logbuf as u8
        }

        pub(super) fn ulaw_expand(logbuf: u8) -> i16 {
            let log = i32::from(logbuf);
            let sign = if log < 0x0080 { -1 } else { 1 };
            let mut mantissa = !log;
            let exponent = (mantissa >> 4) & 0x0007;
            let segment = exponent + 1;
            mantissa &= 0x000F;
            let step = 4 << segment;
            (sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)) as i16
        }

        pub(super) fn alaw_compress(linbuf: i16) -> u8 {
            let lin = i32::from(linbuf);
            let mut ix = if lin < 0 { (!lin) >> 4 } else { lin >> 4 };
            if ix > 15 {
                let mut iexp = 1;
                while ix > 16 + 15 {
                    ix >>= 1;
                    iexp += 1;
                }
                ix -= 16;
                ix += iexp << 4;
            }
            if lin >= 0 {
                ix |= 0x0080;
            }
            (ix ^ 0x0055) as u8
        }

        pub(super) fn alaw_expand(logbuf: u8) -> i16 {
            let log = i32::from(logbuf);
            let mut ix = log ^ 0x0055;
            ix &= 0x007F;
            let iexp = ix >> 4;
            let mut mant = ix & 0x000F;
            if iexp > 0 {
                mant += 16;
            }
            mant = (mant << 4) + 0x0008;
            if iexp > 1 {
                mant <<= iexp - 1;
            }
            (if log > 127 { mant } else { -mant }) as i16
        }
    }

    #[test]
    fn ulaw_encode_matches_the_itu_reference_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), reference::ulaw_compress(x), "sample {x}");
        }
    }

    #[test]
    fn alaw_encode_matches_the_itu_reference_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), reference::alaw_compress(x), "sample {x}");
        }
    }

    #[test]
    fn ulaw_decode_matches_the_itu_reference_for_all_256_codes() {
        for c in 0..=u8::MAX {
            assert_eq!(ulaw_decode(c), reference::ulaw_expand(c), "code {c:#04x}");
        }
    }

    #[test]
    fn alaw_decode_matches_the_itu_reference_for_all_256_codes() {
        for c in 0..=u8::MAX {
            assert_eq!(alaw_decode(c), reference::alaw_expand(c), "code {c:#04x}");
        }
    }

    #[test]
    fn known_code_words() {
        // Zero and the one's-complement treatment of −1.
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        // Full scale.
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn ulaw_round_trips_every_code_but_negative_zero() {
        for c in 0..=u8::MAX {
            let expected = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_decode(c)), expected, "code {c:#04x}");
        }
    }

    #[test]
    fn alaw_round_trips_every_code() {
        for c in 0..=u8::MAX {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn quantisation_is_monotonic_and_error_is_within_half_a_step_plus_bias() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut previous = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = codec.decode_sample(codec.encode_sample(x));
                assert!(y >= previous, "{codec:?} not monotonic at {x}");
                previous = y;
                // Largest step is 1024 (μ-law) / 1024 (A-law); clipping above ±32124/±32256.
                let err = (i32::from(x) - i32::from(y)).abs();
                assert!(err <= 644, "{codec:?} error {err} at {x}");
            }
        }
    }

    #[test]
    fn slice_helpers_encode_and_decode_a_frame() {
        let pcm: Vec<i16> = (0..160).map(|n| (n * 200 - 16000) as i16).collect();
        let mut codes = [0u8; 160];
        let mut back = [0i16; 160];
        for codec in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(codec.encode(&pcm, &mut codes), Ok(160));
            for (c, &x) in codes.iter().zip(&pcm) {
                assert_eq!(*c, codec.encode_sample(x));
            }
            assert_eq!(codec.decode(&codes, &mut back), Ok(160));
            for (y, &c) in back.iter().zip(&codes) {
                assert_eq!(*y, codec.decode_sample(c));
            }
        }
        // A longer output is fine: only the start is written.
        let mut long = [0u8; 200];
        assert_eq!(encode_ulaw(&pcm, &mut long), Ok(160));
        assert_eq!(long[160], 0);
    }

    #[test]
    fn slice_helpers_reject_a_short_output_without_writing() {
        let mut short = [7u8; 10];
        assert_eq!(
            encode_alaw(&[0; 11], &mut short),
            Err(G711Error::OutputTooSmall {
                needed: 11,
                available: 10
            })
        );
        assert_eq!(short, [7; 10]);
        let mut pcm = [0i16; 3];
        assert!(decode_ulaw(&[0; 4], &mut pcm).is_err());
        assert!(decode_alaw(&[0; 4], &mut pcm).is_err());
        assert!(encode_ulaw(&[0; 4], &mut [0; 3]).is_err());
        assert_eq!(
            G711Error::OutputTooSmall {
                needed: 4,
                available: 3
            }
            .to_string(),
            "output buffer holds 3 samples or codes, 4 needed"
        );
    }

    #[test]
    fn codec_metadata() {
        assert_eq!(Codec::Pcmu.static_payload_type(), 0);
        assert_eq!(Codec::Pcma.static_payload_type(), 8);
        assert_eq!(Codec::Pcmu.encoding_name(), "PCMU");
        assert_eq!(Codec::Pcma.encoding_name(), "PCMA");
        assert_eq!(Codec::Pcma.clock_rate(), 8000);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::from_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("PcmA"), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("G729"), None);
        assert_eq!(Codec::Pcmu.silence_code(), 0xFF);
        assert_eq!(Codec::Pcma.silence_code(), 0xD5);
    }

    #[test]
    fn a_codec_prints_as_its_rtpmap_and_parses_from_its_name_in_any_case() {
        assert_eq!(Codec::Pcmu.to_string(), "PCMU/8000");
        assert_eq!(Codec::Pcma.to_string(), "PCMA/8000");
        assert_eq!("pcmu".parse(), Ok(Codec::Pcmu));
        assert_eq!("PCMA".parse(), Ok(Codec::Pcma));
        assert_eq!(
            "G729".parse::<Codec>().unwrap_err().to_string(),
            "unknown codec `G729`"
        );
    }
}
