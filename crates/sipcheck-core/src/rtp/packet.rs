//! The RTP packet (RFC 3550 §5.1): a bounds-checked, zero-copy parser and an allocation-free
//! writer.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Packets come from the network, so [`RtpPacket::parse`] never panics and every error says
//! at which byte offset the packet went wrong. (Written here rather than taken from the
//! `rtp-rs` crate: that crate's errors carry no offsets and are not `std::error::Error` enums
//! in this crate's style, its last release is from 2021, and the format is a page of code.)

use thiserror::Error;

/// The only RTP version (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// The length of the fixed header, without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the fixed header.
    #[error("packet of {len} bytes is shorter than the 12-byte RTP header")]
    TooShort {
        /// The packet's length.
        len: usize,
    },
    /// The version field is not 2.
    #[error("byte 0: RTP version is {version}, expected 2")]
    BadVersion {
        /// The version found.
        version: u8,
    },
    /// The CSRC count claims more identifiers than the packet holds.
    #[error("byte 12: {count} CSRC identifiers need {needed} bytes of header, packet has {len}")]
    CsrcTruncated {
        /// The CSRC count (CC) field.
        count: u8,
        /// The header length those CSRCs imply.
        needed: usize,
        /// The packet's length.
        len: usize,
    },
    /// The X bit is set but the packet ends inside the extension.
    #[error("byte {offset}: header extension needs {needed} bytes of header, packet has {len}")]
    ExtensionTruncated {
        /// Where the extension starts.
        offset: usize,
        /// The header length the extension implies.
        needed: usize,
        /// The packet's length.
        len: usize,
    },
    /// The P bit is set but the padding count is zero or longer than what follows the header.
    #[error("byte {offset}: padding count {count} is not within 1..={available}")]
    BadPadding {
        /// The offset of the padding count (the last byte).
        offset: usize,
        /// The padding count found.
        count: u8,
        /// How many bytes follow the header.
        available: usize,
    },
}

/// Why a packet could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpWriteError {
    /// The output buffer is too small.
    #[error("buffer of {len} bytes cannot hold a {needed}-byte RTP packet")]
    BufferTooSmall {
        /// The packet's length.
        needed: usize,
        /// The buffer's length.
        len: usize,
    },
    /// The payload type does not fit in seven bits.
    #[error("payload type {payload_type} does not fit in 7 bits")]
    BadPayloadType {
        /// The rejected payload type.
        payload_type: u8,
    },
}

/// The fields of the fixed RTP header that a sender chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// The marker bit (M): for audio, the first packet of a talkspurt (RFC 3551 §4.1).
    pub marker: bool,
    /// The payload type (PT), 0..=127.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte fixed header (V=2, no padding, no extension, no CSRC) into the
    /// start of `out`; returns 12.
    ///
    /// # Errors
    /// [`RtpWriteError::BufferTooSmall`] if `out` is shorter than 12 bytes,
    /// [`RtpWriteError::BadPayloadType`] if the payload type is above 127.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpWriteError> {
        if self.payload_type > 0x7F {
            return Err(RtpWriteError::BadPayloadType {
                payload_type: self.payload_type,
            });
        }
        let Some(header) = out.get_mut(..FIXED_HEADER_LEN) else {
            return Err(RtpWriteError::BufferTooSmall {
                needed: FIXED_HEADER_LEN,
                len: out.len(),
            });
        };
        header[0] = RTP_VERSION << 6;
        header[1] = (u8::from(self.marker) << 7) | self.payload_type;
        header[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(FIXED_HEADER_LEN)
    }
}

/// Writes a whole packet (fixed header, then `payload`) into the start of `out`; returns its
/// length. Nothing is allocated.
///
/// # Errors
/// As [`RtpHeader::write`], for the whole packet's length.
pub fn write_packet(
    header: &RtpHeader,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, RtpWriteError> {
    let needed = FIXED_HEADER_LEN + payload.len();
    if out.len() < needed {
        return Err(RtpWriteError::BufferTooSmall {
            needed,
            len: out.len(),
        });
    }
    header.write(out)?;
    out[FIXED_HEADER_LEN..needed].copy_from_slice(payload);
    Ok(needed)
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    /// The "defined by profile" field (for example `0xBEDE` for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension data (a multiple of four bytes).
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header's fields.
    pub header: RtpHeader,
    csrc: &'a [u8],
    /// The header extension, if the X bit is set.
    pub extension: Option<HeaderExtension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// The number of padding bytes removed from the end (0 if the P bit is clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parses a datagram. Every length is checked against the buffer; this never panics.
    ///
    /// # Errors
    /// An [`RtpError`] naming the byte offset at which the packet is malformed.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let len = buf.len();
        let Some(fixed) = buf.first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(RtpError::TooShort { len });
        };
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion { version });
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let count = fixed[0] & 0x0F;
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };

        let mut offset = FIXED_HEADER_LEN + 4 * usize::from(count);
        let Some(csrc) = buf.get(FIXED_HEADER_LEN..offset) else {
            return Err(RtpError::CsrcTruncated {
                count,
                needed: offset,
                len,
            });
        };

        let extension = if has_extension {
            let start = offset;
            let truncated = |needed| RtpError::ExtensionTruncated {
                offset: start,
                needed,
                len,
            };
            let ext_header = buf
                .get(start..start + 4)
                .ok_or_else(|| truncated(start + 4))?;
            let profile = u16::from_be_bytes([ext_header[0], ext_header[1]]);
            let words = u16::from_be_bytes([ext_header[2], ext_header[3]]);
            let end = start + 4 + 4 * usize::from(words);
            let data = buf.get(start + 4..end).ok_or_else(|| truncated(end))?;
            offset = end;
            Some(HeaderExtension { profile, data })
        } else {
            None
        };

        // `offset <= len` here: every slice above was checked.
        let available = len - offset;
        let padding = if has_padding {
            let count = buf[len - 1];
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding {
                    offset: len - 1,
                    count,
                    available,
                });
            }
            count
        } else {
            0
        };
        let payload = &buf[offset..len - usize::from(padding)];
        Ok(Self {
            header,
            csrc,
            extension,
            payload,
            padding,
        })
    }

    /// The number of CSRC identifiers (the CC field).
    #[must_use]
    pub fn csrc_count(&self) -> usize {
        self.csrc.len() / 4
    }

    /// The CSRC identifiers.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Whether a datagram on an RTP/RTCP-multiplexed port is RTCP rather than RTP (RFC 5761 §4:
/// a second byte of 192..=223, i.e. an RTCP packet type that as RTP would be a marker bit
/// and payload type 64..=95).
#[must_use]
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.get(1).is_some_and(|b| (192..=223).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn writes_and_parses_a_plain_packet() {
        let mut buf = [0u8; 200];
        let payload = [0xD5u8; 160];
        let len = write_packet(&header(), &payload, &mut buf).unwrap();
        assert_eq!(len, 172);
        assert_eq!(
            &buf[..12],
            &[0x80, 0x88, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78]
        );
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!(packet.header, header());
        assert_eq!(packet.payload, &payload[..]);
        assert_eq!(packet.padding, 0);
        assert_eq!(packet.extension, None);
        assert_eq!(packet.csrc_count(), 0);
        assert_eq!(packet.csrcs().count(), 0);
    }

    /// A packet with two CSRCs, a one-word extension, a 4-byte payload and 3 bytes of
    /// padding.
    fn full_packet() -> Vec<u8> {
        let mut p = vec![0x80 | 0x20 | 0x10 | 2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xAA, 0xAA, 0xAA, 0x01, 0xBB, 0xBB, 0xBB, 0x02]);
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x77, 0x00, 0x00]);
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(&[0, 0, 3]);
        p
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let buf = full_packet();
        let packet = RtpPacket::parse(&buf).unwrap();
        assert_eq!(packet.header.sequence, 1);
        assert_eq!(packet.header.timestamp, 2);
        assert_eq!(packet.header.ssrc, 3);
        assert!(!packet.header.marker);
        assert_eq!(packet.csrc_count(), 2);
        assert_eq!(
            packet.csrcs().collect::<Vec<_>>(),
            [0xAAAA_AA01, 0xBBBB_BB02]
        );
        assert_eq!(
            packet.extension,
            Some(HeaderExtension {
                profile: 0xBEDE,
                data: &[0x10, 0x77, 0, 0]
            })
        );
        assert_eq!(packet.payload, &[1, 2, 3, 4]);
        assert_eq!(packet.padding, 3);
    }

    #[test]
    fn every_truncation_is_a_typed_error_with_its_offset() {
        let buf = full_packet();
        for len in 0..buf.len() {
            let result = RtpPacket::parse(&buf[..len]);
            let as_expected = match (len, result) {
                (0..=11, Err(RtpError::TooShort { len: l })) => l == len,
                (12..=19, Err(RtpError::CsrcTruncated { count, needed, .. })) => {
                    count == 2 && needed == 20
                }
                (20..=23, Err(RtpError::ExtensionTruncated { offset, needed, .. })) => {
                    offset == 20 && needed == 24
                }
                (24..=27, Err(RtpError::ExtensionTruncated { offset, needed, .. })) => {
                    offset == 20 && needed == 28
                }
                // Past the header the last byte is read as the padding count: either it is
                // out of range, or it happens to fit and the packet is a shorter valid one.
                (28.., Err(RtpError::BadPadding { offset, .. })) => offset == len - 1,
                (28.., Ok(p)) => usize::from(p.padding) + p.payload.len() == len - 28,
                _ => false,
            };
            assert!(
                as_expected,
                "length {len}: {:?}",
                RtpPacket::parse(&buf[..len])
            );
        }
    }

    #[test]
    fn rejects_bad_version_and_bad_padding() {
        let mut buf = [0u8; 12];
        for version in [0u8, 1, 3] {
            buf[0] = version << 6;
            assert_eq!(
                RtpPacket::parse(&buf),
                Err(RtpError::BadVersion { version })
            );
        }
        // Padding count zero.
        let mut p = [0x80 | 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0];
        assert_eq!(
            RtpPacket::parse(&p),
            Err(RtpError::BadPadding {
                offset: 13,
                count: 0,
                available: 2
            })
        );
        // Padding longer than the payload.
        p[13] = 3;
        assert!(matches!(
            RtpPacket::parse(&p),
            Err(RtpError::BadPadding { count: 3, .. })
        ));
        // Padding that is the whole payload is fine.
        p[13] = 2;
        let packet = RtpPacket::parse(&p).unwrap();
        assert!(packet.payload.is_empty());
        assert_eq!(packet.padding, 2);
        assert_eq!(
            RtpError::BadPadding {
                offset: 13,
                count: 0,
                available: 2
            }
            .to_string(),
            "byte 13: padding count 0 is not within 1..=2"
        );
    }

    #[test]
    fn random_datagrams_never_panic() {
        // xorshift64: a tiny deterministic fuzzer.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut ok = 0;
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = buf.first_mut() {
                // Mostly version 2, so the deeper checks are reached.
                *b = (*b & 0x3F) | 0x80;
            }
            if let Ok(p) = RtpPacket::parse(&buf) {
                ok += 1;
                let ext = p.extension.map_or(0, |e| 4 + e.data.len());
                assert_eq!(
                    12 + 4 * p.csrc_count() + ext + p.payload.len() + usize::from(p.padding),
                    buf.len()
                );
            }
        }
        assert!(ok > 1000, "{ok}");
    }

    #[test]
    fn writer_checks_its_buffer_and_payload_type() {
        let mut small = [0u8; 11];
        assert_eq!(
            header().write(&mut small),
            Err(RtpWriteError::BufferTooSmall {
                needed: 12,
                len: 11
            })
        );
        let mut buf = [0u8; 20];
        assert_eq!(
            write_packet(&header(), &[0; 9], &mut buf),
            Err(RtpWriteError::BufferTooSmall {
                needed: 21,
                len: 20
            })
        );
        let bad = RtpHeader {
            payload_type: 128,
            ..header()
        };
        assert_eq!(
            bad.write(&mut buf),
            Err(RtpWriteError::BadPayloadType { payload_type: 128 })
        );
        assert_eq!(write_packet(&header(), &[7; 8], &mut buf), Ok(20));
    }

    #[test]
    fn tells_rtcp_from_rtp_on_a_multiplexed_port() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201]));
        assert!(!is_rtcp(&[0x80, 0x00]));
        assert!(!is_rtcp(&[0x80, 0x80 | 101]));
        assert!(!is_rtcp(&[0x80]));
    }
}
