//! RFC 4733 telephone events: DTMF digits sent in RTP.
//!
//! The payload (RFC 4733 §2.3) is four bytes:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! All packets of one event carry the RTP timestamp of the event's start; the duration field
//! grows from packet to packet (in timestamp units, 8 kHz); the first packet has the RTP
//! marker bit (§2.5.1.1) and the final one the E bit, and the final packet is sent three
//! times (§2.5.1.4). [`DtmfSender`] produces that schedule one packetisation tick at a time;
//! [`DtmfReceiver`] turns received payloads back into digits, keyed by timestamp so that
//! updates and retransmissions of one event count once.

use std::time::Duration;

use thiserror::Error;

use super::duration_to_samples;

/// The default tone duration of one digit.
pub const DEFAULT_DIGIT_DURATION: Duration = Duration::from_millis(100);
/// The default pause between two digits.
pub const DEFAULT_GAP: Duration = Duration::from_millis(100);
/// How many times the final packet of an event is sent (RFC 4733 §2.5.1.4).
pub const END_PACKETS: u32 = 3;

/// An invalid telephone-event payload or sender configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// A telephone-event payload is not exactly four bytes.
    #[error("telephone-event payload is {len} bytes, expected 4")]
    BadLength {
        /// The payload's length.
        len: usize,
    },
    /// A character of a digit string is not a DTMF digit.
    #[error("character {ch:?} at index {index} is not a DTMF digit (0-9, *, #, A-D)")]
    BadDigit {
        /// The offending character.
        ch: char,
        /// Its byte index in the string.
        index: usize,
    },
    /// A digit lasts longer than the 16-bit duration field can say (65,535 samples).
    #[error("digit duration of {samples} samples does not fit the 16-bit duration field")]
    DurationTooLong {
        /// The requested duration in samples.
        samples: u64,
    },
    /// The packetisation interval is not a positive whole number of samples.
    #[error("ptime {ptime:?} is not a positive whole number of 8 kHz samples")]
    BadPtime {
        /// The rejected ptime.
        ptime: Duration,
    },
    /// A volume is above 63 (−63 dBm0 is the quietest the 6-bit field can say).
    #[error("volume -{volume} dBm0 does not fit the 6-bit volume field (0..=63)")]
    BadVolume {
        /// The rejected volume.
        volume: u8,
    },
}

/// A DTMF digit: RFC 4733 event codes 0–15 (`0`–`9`, `*` = 10, `#` = 11, `A`–`D` = 12–15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// The digit for a character (`a`–`d` are accepted as `A`–`D`).
    #[must_use]
    pub fn from_char(ch: char) -> Option<Self> {
        let code = match ch {
            '0'..='9' => ch as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => ch as u8 - b'A' + 12,
            'a'..='d' => ch as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Self(code))
    }

    /// The digit for an RFC 4733 event code, if it is 0–15.
    #[must_use]
    pub fn from_event(code: u8) -> Option<Self> {
        (code <= 15).then_some(Self(code))
    }

    /// The RFC 4733 event code (0–15).
    #[must_use]
    pub fn event(self) -> u8 {
        self.0
    }

    /// The digit's character (`0`–`9`, `*`, `#`, `A`–`D`).
    #[must_use]
    pub fn to_char(self) -> char {
        b"0123456789*#ABCD"[usize::from(self.0 & 0x0F)] as char
    }

    /// Parses a digit string such as `"123#"`.
    ///
    /// # Errors
    /// [`DtmfError::BadDigit`] for the first character that is not a digit.
    pub fn parse_str(digits: &str) -> Result<Vec<Self>, DtmfError> {
        digits
            .char_indices()
            .map(|(index, ch)| Self::from_char(ch).ok_or(DtmfError::BadDigit { ch, index }))
            .collect()
    }
}

/// One RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// The event code (0–15 are DTMF digits; others are other events).
    pub event: u8,
    /// The E bit: this is the final packet of the event.
    pub end: bool,
    /// The power level in −dBm0 (0..=63; only the low six bits are sent).
    pub volume: u8,
    /// The duration of the event so far, in timestamp units (samples at 8 kHz).
    pub duration: u16,
}

impl TelephoneEvent {
    /// The payload length in bytes.
    pub const LEN: usize = 4;

    /// Parses a payload. The reserved R bit is ignored, as §2.3.3 asks of receivers.
    ///
    /// # Errors
    /// [`DtmfError::BadLength`] unless the payload is exactly four bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let &[event, flags, hi, lo] = payload else {
            return Err(DtmfError::BadLength { len: payload.len() });
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([hi, lo]),
        })
    }

    /// The payload bytes (R bit clear, volume masked to six bits).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        let flags = (u8::from(self.end) << 7) | (self.volume & 0x3F);
        [self.event, flags, hi, lo]
    }

    /// The DTMF digit, if the event code is one.
    #[must_use]
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// How the sender paces digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfConfig {
    /// How long each digit's event lasts (default 100 ms; at most 8.19 s).
    pub digit_duration: Duration,
    /// The pause from the end of one event to the start of the next (default 100 ms). The
    /// two retransmissions of the final packet fall in this pause; a pause shorter than two
    /// ticks is stretched to fit them.
    pub gap: Duration,
    /// The packetisation interval: one call to [`DtmfSender::poll_tick`] per ptime
    /// (default 20 ms).
    pub ptime: Duration,
    /// The volume in −dBm0 (default 10).
    pub volume: u8,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self {
            digit_duration: DEFAULT_DIGIT_DURATION,
            gap: DEFAULT_GAP,
            ptime: Duration::from_millis(20),
            volume: 10,
        }
    }
}

/// One telephone-event packet to send in this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The event, as data.
    pub event: TelephoneEvent,
    /// The RTP timestamp to send it with: the timestamp of the event's first tick.
    pub timestamp: u32,
    /// The RTP marker bit (set on the first packet of an event).
    pub marker: bool,
}

impl DtmfPacket {
    /// The four payload bytes.
    #[must_use]
    pub fn payload(&self) -> [u8; 4] {
        self.event.to_bytes()
    }
}

/// Sends a digit string as RFC 4733 events, one packetisation tick at a time.
///
/// Call [`DtmfSender::poll_tick`] once per ptime with the RTP timestamp that tick's audio
/// packet would carry (for example the pacer's `FrameSlot::timestamp`). When it returns a
/// packet, send that packet (payload type telephone-event) in the tick's slot instead of
/// audio; when it returns `None`, send audio.
///
/// A digit of `d` samples at `p` samples per tick takes `⌈d/p⌉` ticks: packet `i` carries
/// duration `min((i + 1)·p, d)`, the first has the marker, the last the E bit, and the last is
/// repeated in the next two ticks. The next digit starts `gap` after the last tick of the
/// event (at least two ticks, for the repeats).
#[derive(Debug, Clone)]
pub struct DtmfSender {
    digits: Vec<Digit>,
    volume: u8,
    tick_samples: u64,
    event_samples: u16,
    event_ticks: u64,
    spacing_ticks: u64,
    tick: u64,
    index: usize,
    digit_start: u64,
    event_timestamp: u32,
}

impl DtmfSender {
    /// A sender for `digits` (for example `"123#"`).
    ///
    /// # Errors
    /// [`DtmfError::BadDigit`] for a character that is not a digit, or the configuration
    /// errors [`DtmfError::BadPtime`], [`DtmfError::DurationTooLong`],
    /// [`DtmfError::BadVolume`].
    pub fn new(digits: &str, config: DtmfConfig) -> Result<Self, DtmfError> {
        let digits = Digit::parse_str(digits)?;
        let tick_samples = duration_to_samples(config.ptime);
        if tick_samples == 0 || super::samples_to_duration(tick_samples) != config.ptime {
            return Err(DtmfError::BadPtime {
                ptime: config.ptime,
            });
        }
        let samples = duration_to_samples(config.digit_duration).max(1);
        let event_samples =
            u16::try_from(samples).map_err(|_| DtmfError::DurationTooLong { samples })?;
        if config.volume > 63 {
            return Err(DtmfError::BadVolume {
                volume: config.volume,
            });
        }
        let event_ticks = samples.div_ceil(tick_samples);
        let gap_ticks = duration_to_samples(config.gap).div_ceil(tick_samples);
        Ok(Self {
            digits,
            volume: config.volume,
            tick_samples,
            event_samples,
            event_ticks,
            spacing_ticks: event_ticks + gap_ticks.max(u64::from(END_PACKETS) - 1),
            tick: 0,
            index: 0,
            digit_start: 0,
            event_timestamp: 0,
        })
    }

    /// The packet to send in this tick, if any. `timestamp` is the RTP timestamp of the tick.
    pub fn poll_tick(&mut self, timestamp: u32) -> Option<DtmfPacket> {
        let tick = self.tick;
        self.tick += 1;
        let digit = *self.digits.get(self.index)?;
        let i = tick.checked_sub(self.digit_start)?;
        if i == 0 {
            self.event_timestamp = timestamp;
        }
        let last = self.event_ticks - 1;
        let duration = if i < last {
            // (i + 1)·p < d here, so it fits in u16.
            u16::try_from((i + 1) * self.tick_samples).unwrap_or(self.event_samples)
        } else {
            self.event_samples
        };
        if i + 1 == self.event_ticks + u64::from(END_PACKETS) - 1 {
            self.index += 1;
            self.digit_start += self.spacing_ticks;
        }
        Some(DtmfPacket {
            event: TelephoneEvent {
                event: digit.event(),
                end: i >= last,
                volume: self.volume,
                duration,
            },
            timestamp: self.event_timestamp,
            marker: i == 0,
        })
    }

    /// Whether an event is in progress at the next tick (audio should be held back).
    #[must_use]
    pub fn is_sending(&self) -> bool {
        self.index < self.digits.len() && self.tick >= self.digit_start
    }

    /// Whether every digit has been sent, including the repeats of its final packet.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.index >= self.digits.len()
    }
}

/// An event seen by a [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The event code.
    pub event: u8,
    /// The RTP timestamp of the event's start (the key that identifies it).
    pub timestamp: u32,
    /// The longest duration received so far, in timestamp units.
    pub duration: u16,
    /// Whether a packet with the E bit has been received.
    pub ended: bool,
    /// The volume of the latest packet, in −dBm0.
    pub volume: u8,
    /// How many packets of this event arrived (updates, end packets and their repeats).
    pub packets: u32,
}

impl ReceivedEvent {
    /// The DTMF digit, if the event code is one.
    #[must_use]
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// What a received packet meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventUpdate {
    /// The first packet of a new event (it may already be the end packet).
    Started,
    /// A longer duration for a known event.
    Continued,
    /// The first end packet of a known event.
    Ended,
    /// Nothing new: a retransmitted end packet, a duplicate or a late update.
    Repeated,
    /// A new event that was not stored: the receiver already keeps [`MAX_EVENTS`].
    Dropped,
}

/// How many recent events a packet is matched against.
const RECENT_EVENTS: usize = 16;
/// The most events a receiver keeps; later new events are only counted (a bound on what a
/// hostile or broken peer can make it store).
pub const MAX_EVENTS: usize = 1024;

/// Turns received telephone-event payloads into events and digits.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    events: Vec<ReceivedEvent>,
    repeats: u64,
    dropped: u64,
}

impl DtmfReceiver {
    /// An empty receiver.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one packet's RTP timestamp and payload.
    ///
    /// Packets with the timestamp and event code of one of the recent events update it (the
    /// duration only grows, the end flag only sets); any other packet starts a new event, so
    /// an event whose first packets were lost or reordered is still seen once.
    ///
    /// # Errors
    /// [`DtmfError::BadLength`] for a payload that is not four bytes; the receiver is
    /// unchanged then.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Result<EventUpdate, DtmfError> {
        let packet = TelephoneEvent::parse(payload)?;
        let recent = self.events.len().saturating_sub(RECENT_EVENTS);
        let known = self.events[recent..]
            .iter_mut()
            .rev()
            .find(|e| e.timestamp == timestamp && e.event == packet.event);
        let Some(known) = known else {
            if self.events.len() >= MAX_EVENTS {
                self.dropped += 1;
                return Ok(EventUpdate::Dropped);
            }
            self.events.push(ReceivedEvent {
                event: packet.event,
                timestamp,
                duration: packet.duration,
                ended: packet.end,
                volume: packet.volume,
                packets: 1,
            });
            return Ok(EventUpdate::Started);
        };
        known.packets += 1;
        known.volume = packet.volume;
        let update = if packet.end && !known.ended {
            known.ended = true;
            EventUpdate::Ended
        } else if packet.duration > known.duration && !known.ended {
            EventUpdate::Continued
        } else {
            self.repeats += 1;
            EventUpdate::Repeated
        };
        known.duration = known.duration.max(packet.duration);
        Ok(update)
    }

    /// All events in the order they started.
    #[must_use]
    pub fn events(&self) -> &[ReceivedEvent] {
        &self.events
    }

    /// The digits received, in order, as a string (events that are not digits are skipped).
    #[must_use]
    pub fn digits(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| e.digit().map(Digit::to_char))
            .collect()
    }

    /// How many packets brought nothing new (retransmissions and duplicates).
    #[must_use]
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// How many new events were not stored because [`MAX_EVENTS`] were already kept.
    #[must_use]
    pub fn dropped_events(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_map_to_event_codes() {
        let digits = Digit::parse_str("0123456789*#ABCDabcd").unwrap();
        let codes: Vec<u8> = digits.iter().map(|d| d.event()).collect();
        assert_eq!(
            codes,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15]
        );
        let back: String = digits.iter().map(|d| d.to_char()).collect();
        assert_eq!(back, "0123456789*#ABCDABCD");
        assert_eq!(
            Digit::parse_str("12E"),
            Err(DtmfError::BadDigit { ch: 'E', index: 2 })
        );
        assert_eq!(
            Digit::parse_str("1é2").unwrap_err(),
            DtmfError::BadDigit { ch: 'é', index: 1 }
        );
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::from_event(11).map(Digit::to_char), Some('#'));
    }

    #[test]
    fn payload_round_trips_and_has_the_rfc_layout() {
        let event = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(event.to_bytes(), [0x05, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&event.to_bytes()), Ok(event));
        for code in 0..=255u8 {
            for end in [false, true] {
                let e = TelephoneEvent {
                    event: code,
                    end,
                    volume: code % 64,
                    duration: u16::from(code) * 257,
                };
                assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
            }
        }
        // The R bit is ignored; an out-of-range volume is masked when written.
        let parsed = TelephoneEvent::parse(&[11, 0x40 | 0x3F, 0, 160]).unwrap();
        assert_eq!(parsed.volume, 63);
        assert!(!parsed.end);
        assert_eq!(parsed.digit().map(Digit::to_char), Some('#'));
        let loud = TelephoneEvent {
            volume: 0xFF,
            ..parsed
        };
        assert_eq!(loud.to_bytes()[1], 0x3F);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for len in [0, 1, 3, 5, 8, 1500] {
            let payload = vec![0xFF; len];
            assert_eq!(
                TelephoneEvent::parse(&payload),
                Err(DtmfError::BadLength { len })
            );
            let mut rx = DtmfReceiver::new();
            assert!(rx.push(0, &payload).is_err());
            assert!(rx.events().is_empty());
        }
        assert_eq!(
            DtmfError::BadLength { len: 3 }.to_string(),
            "telephone-event payload is 3 bytes, expected 4"
        );
    }

    /// Drives a sender for `ticks` ticks with audio timestamps 1000 + 160·tick.
    fn drive(sender: &mut DtmfSender, ticks: u32) -> Vec<Option<DtmfPacket>> {
        (0..ticks)
            .map(|t| sender.poll_tick(1000 + 160 * t))
            .collect()
    }

    /// Event code, timestamp, marker, end, duration.
    type Summary = (u8, u32, bool, bool, u16);

    #[test]
    fn sender_follows_the_rfc_4733_schedule() {
        let mut sender = DtmfSender::new("1#", DtmfConfig::default()).unwrap();
        assert!(sender.is_sending());
        let out = drive(&mut sender, 24);
        let summary: Vec<Option<Summary>> = out
            .iter()
            .map(|p| {
                p.map(|p| {
                    (
                        p.event.event,
                        p.timestamp,
                        p.marker,
                        p.event.end,
                        p.event.duration,
                    )
                })
            })
            .collect();
        let mut expected = vec![
            Some((1, 1000, true, false, 160)),
            Some((1, 1000, false, false, 320)),
            Some((1, 1000, false, false, 480)),
            Some((1, 1000, false, false, 640)),
            Some((1, 1000, false, true, 800)),
            Some((1, 1000, false, true, 800)),
            Some((1, 1000, false, true, 800)),
            None,
            None,
            None,
        ];
        // '#' starts 100 ms (5 ticks) after the end of '1': tick 10, timestamp 1000 + 1600.
        for (i, d) in [160, 320, 480, 640, 800, 800, 800].into_iter().enumerate() {
            expected.push(Some((11, 2600, i == 0, i >= 4, d)));
        }
        expected.extend([None; 7]);
        assert_eq!(summary, expected);
        assert!(sender.is_done());
        assert!(!sender.is_sending());
        assert_eq!(out[0].unwrap().payload(), [1, 10, 0, 160]);
    }

    #[test]
    fn sender_handles_odd_durations_short_gaps_and_empty_strings() {
        let config = DtmfConfig {
            digit_duration: Duration::from_millis(50),
            gap: Duration::ZERO,
            ptime: Duration::from_millis(30),
            volume: 0,
        };
        let mut sender = DtmfSender::new("77", config).unwrap();
        let out = drive(&mut sender, 10);
        let durations: Vec<Option<(u32, u16, bool)>> = out
            .iter()
            .map(|p| p.map(|p| (p.timestamp, p.event.duration, p.event.end)))
            .collect();
        // 400 samples at 240 per tick: 2 ticks, then 2 repeats, then straight on.
        assert_eq!(
            durations,
            [
                Some((1000, 240, false)),
                Some((1000, 400, true)),
                Some((1000, 400, true)),
                Some((1000, 400, true)),
                Some((1640, 240, false)),
                Some((1640, 400, true)),
                Some((1640, 400, true)),
                Some((1640, 400, true)),
                None,
                None,
            ]
        );
        let mut empty = DtmfSender::new("", DtmfConfig::default()).unwrap();
        assert!(empty.is_done());
        assert_eq!(empty.poll_tick(0), None);
    }

    #[test]
    fn sender_rejects_bad_configuration() {
        let long = DtmfConfig {
            digit_duration: Duration::from_secs(9),
            ..DtmfConfig::default()
        };
        assert_eq!(
            DtmfSender::new("1", long).unwrap_err(),
            DtmfError::DurationTooLong { samples: 72_000 }
        );
        for ptime in [Duration::ZERO, Duration::from_micros(20_050)] {
            let config = DtmfConfig {
                ptime,
                ..DtmfConfig::default()
            };
            assert_eq!(
                DtmfSender::new("1", config).unwrap_err(),
                DtmfError::BadPtime { ptime }
            );
        }
        let loud = DtmfConfig {
            volume: 64,
            ..DtmfConfig::default()
        };
        assert_eq!(
            DtmfSender::new("1", loud).unwrap_err(),
            DtmfError::BadVolume { volume: 64 }
        );
        assert!(DtmfSender::new("1x", DtmfConfig::default()).is_err());
    }

    #[test]
    fn sender_to_receiver_round_trip_deduplicates_repeats() {
        let mut sender = DtmfSender::new("911*", DtmfConfig::default()).unwrap();
        let mut rx = DtmfReceiver::new();
        let mut updates = Vec::new();
        for packet in drive(&mut sender, 60).into_iter().flatten() {
            updates.push(rx.push(packet.timestamp, &packet.payload()).unwrap());
        }
        assert_eq!(rx.digits(), "911*");
        assert_eq!(rx.events().len(), 4);
        for e in rx.events() {
            assert_eq!(e.duration, 800);
            assert!(e.ended);
            assert_eq!(e.packets, 7);
        }
        assert_eq!(rx.repeats(), 8);
        let first_digit: Vec<EventUpdate> = updates[..7].to_vec();
        assert_eq!(
            first_digit,
            [
                EventUpdate::Started,
                EventUpdate::Continued,
                EventUpdate::Continued,
                EventUpdate::Continued,
                EventUpdate::Ended,
                EventUpdate::Repeated,
                EventUpdate::Repeated,
            ]
        );
    }

    #[test]
    fn receiver_survives_loss_reordering_and_duplicates() {
        let p = |event: u8, end: bool, duration: u16| {
            TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            }
            .to_bytes()
        };
        let mut rx = DtmfReceiver::new();
        // Digit 4: the first packet is lost, the others arrive out of order.
        assert_eq!(rx.push(100, &p(4, false, 320)), Ok(EventUpdate::Started));
        assert_eq!(rx.push(100, &p(4, false, 640)), Ok(EventUpdate::Continued));
        assert_eq!(rx.push(100, &p(4, false, 480)), Ok(EventUpdate::Repeated));
        assert_eq!(rx.push(100, &p(4, false, 640)), Ok(EventUpdate::Repeated));
        // Digit 5: every end packet is lost; still one event, not ended.
        assert_eq!(rx.push(900, &p(5, false, 160)), Ok(EventUpdate::Started));
        assert_eq!(rx.push(900, &p(5, false, 320)), Ok(EventUpdate::Continued));
        // A late end packet of digit 4 arrives after digit 5 started.
        assert_eq!(rx.push(100, &p(4, true, 800)), Ok(EventUpdate::Ended));
        // The same digit twice in a row is two events: told apart by timestamp.
        assert_eq!(rx.push(1700, &p(5, true, 800)), Ok(EventUpdate::Started));
        assert_eq!(rx.push(1700, &p(5, true, 800)), Ok(EventUpdate::Repeated));
        // A non-digit event (16, flash) is kept as an event but is not a digit.
        assert_eq!(rx.push(2500, &p(16, true, 800)), Ok(EventUpdate::Started));
        assert_eq!(rx.digits(), "455");
        let events = rx.events();
        assert_eq!(events.len(), 4);
        assert_eq!((events[0].duration, events[0].ended), (800, true));
        assert_eq!((events[1].duration, events[1].ended), (320, false));
        assert_eq!(events[3].digit(), None);
        assert_eq!(rx.repeats(), 3);
    }

    #[test]
    fn receiver_memory_is_bounded() {
        let mut rx = DtmfReceiver::new();
        for ts in 0..(MAX_EVENTS as u32 + 10) {
            let payload = TelephoneEvent {
                event: 1,
                end: true,
                volume: 0,
                duration: 160,
            }
            .to_bytes();
            rx.push(ts * 1000, &payload).unwrap();
        }
        assert_eq!(rx.events().len(), MAX_EVENTS);
        assert_eq!(rx.dropped_events(), 10);
    }
}
