//! Per-stream receive statistics (RFC 3550 Appendix A) and a jitter buffer.
//!
//! [`RtpReceiver`] takes every received packet of one stream with its arrival time and
//! keeps:
//!
//! * extended sequence numbers (RFC 3550 A.1): 16-bit wrap-arounds are counted, a jump of
//!   more than 3000 ahead or 100 behind is only believed when the next packet follows it
//!   (until then the packet is *discarded*), and a believed jump starts a new sequence
//!   segment whose counts are added to the previous ones;
//! * expected, received, lost and the loss fraction (A.3). Duplicates (remembered over the
//!   last 128 sequence numbers) are counted apart and never count as received, so loss
//!   cannot go negative through duplication; a late packet counts as *reordered* and fills
//!   its place, so it is not lost;
//! * the interarrival jitter (A.8) in timestamp units and milliseconds. Packets that repeat
//!   the previous packet's timestamp (RFC 4733 event updates and their retransmissions) do
//!   not update it, since their sampling instant is not new. A timestamp jump (the
//!   relative transit changing by more than [`MAX_TRANSIT_STEP_SECS`] between two packets:
//!   a sender that restarted its clock, or resumed after a pause with the timestamps of
//!   before) is no jitter: it restarts the estimate's transit baseline and is counted as a
//!   discontinuity, as is a confirmed sequence jump;
//! * all of the above per SSRC (RFC 3550 keeps them per source): a packet with a new SSRC
//!   starts a stream of its own and bumps [`ReceiveStats::ssrc_changes`], and the statistics
//!   are the call's, over every stream: counts summed (a loss in a stream that stopped still
//!   shows after the peer switched to another), the jitter the highest of the streams'.
//!   Interleaved streams (an RFC 4733 event stream under its own SSRC) do not disturb each
//!   other's sequence or jitter state;
//! * the last arrival time, for [`RtpReceiver::is_timed_out`].
//!
//! Its [`JitterBuffer`] is fed by one stream, the played one, and releases payloads in
//! sequence order, one per playout tick, with
//! [`Playout::Missing`] for packets that did not arrive in time (conceal them with
//! silence).

use std::time::{Duration, Instant};

use thiserror::Error;

use super::packet::RtpPacket;

/// RFC 3550 A.1: the largest forward jump taken as loss rather than a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: the largest backward step taken as reordering rather than a restart.
const MAX_MISORDER: u16 = 100;
/// The largest change of relative transit (RFC 3550 A.8 `D`) between two packets taken as
/// jitter, in seconds; a larger one is a timestamp discontinuity. No voice path delays one
/// packet a second more than the one before and still plays it.
pub const MAX_TRANSIT_STEP_SECS: u32 = 1;
/// How many recent sequence numbers are remembered to tell duplicates from late packets.
const HISTORY: u64 = 128;

/// An invalid receiver configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReceiverError {
    /// The clock rate is zero.
    #[error("RTP clock rate must be positive")]
    BadClockRate,
    /// The jitter buffer depth is zero.
    #[error("jitter buffer depth must be at least one frame")]
    BadDepth,
}

/// How to receive a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The RTP clock rate in hertz (default 8000).
    pub clock_rate: u32,
    /// How many frames the jitter buffer holds before it starts playing (default 3).
    pub jitter_buffer_frames: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            clock_rate: 8000,
            jitter_buffer_frames: 3,
        }
    }
}

/// What a received packet was, with its extended sequence number where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first packet of the stream, or of a new SSRC.
    First(u64),
    /// Newer than every packet so far (possibly after a gap).
    InOrder(u64),
    /// Older than the newest packet and not seen before: counted, not lost.
    Reordered(u64),
    /// Seen before.
    Duplicate(u64),
    /// A sequence jump not (yet) confirmed by the next packet; not counted.
    Discarded,
    /// The packet after a jump confirmed it: a new sequence segment starts here.
    Restarted(u64),
}

impl Arrival {
    /// The extended sequence number, unless the packet was discarded.
    #[must_use]
    pub fn sequence(self) -> Option<u64> {
        match self {
            Self::First(s)
            | Self::InOrder(s)
            | Self::Reordered(s)
            | Self::Duplicate(s)
            | Self::Restarted(s) => Some(s),
            Self::Discarded => None,
        }
    }
}

/// A snapshot of a stream's receive statistics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceiveStats {
    /// The played stream's SSRC, once a packet arrived.
    pub ssrc: Option<u32>,
    /// Packets expected: the span of extended sequence numbers seen, summed over segments.
    pub expected: u64,
    /// Distinct packets received (duplicates and discarded packets excluded).
    pub received: u64,
    /// Packets received more than once (the extra copies).
    pub duplicates: u64,
    /// Packets that arrived after a newer one.
    pub reordered: u64,
    /// Packets dropped as unconfirmed sequence jumps (RFC 3550 A.1 `bad_seq`).
    pub discarded: u64,
    /// Confirmed sequence jumps of the same SSRC.
    pub sequence_restarts: u64,
    /// Timestamp jumps of the same SSRC without a sequence jump (see
    /// [`MAX_TRANSIT_STEP_SECS`]): the jitter estimate's baseline restarted there.
    pub timestamp_jumps: u64,
    /// SSRCs received after the first (each new SSRC counts once, a return to an earlier
    /// one does not).
    pub ssrc_changes: u64,
    /// The highest extended sequence number (of the played stream's current segment).
    pub highest_sequence: u64,
    /// Payload bytes of the distinct packets.
    pub payload_bytes: u64,
    /// The interarrival jitter (RFC 3550 A.8) in timestamp units: the highest of the
    /// streams' estimates.
    pub jitter_ts: f64,
    /// The interarrival jitter in milliseconds.
    pub jitter_ms: f64,
}

impl ReceiveStats {
    /// Sequence and timestamp discontinuities: events of the sender, neither loss nor jitter.
    #[must_use]
    pub fn discontinuities(&self) -> u64 {
        self.sequence_restarts + self.timestamp_jumps
    }

    /// Cumulative packets lost: expected minus received (RFC 3550 A.3). Negative only if a
    /// duplicate is older than the duplicate memory.
    #[must_use]
    pub fn lost(&self) -> i64 {
        i64::try_from(self.expected).unwrap_or(i64::MAX)
            - i64::try_from(self.received).unwrap_or(i64::MAX)
    }

    /// Lost packets as a fraction of the expected ones (0 when none expected).
    #[must_use]
    pub fn loss_fraction(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost().max(0) as f64 / self.expected as f64
        }
    }
}

/// Sequence number bookkeeping of RFC 3550 A.1, without probation.
#[derive(Debug, Clone)]
struct Sequence {
    max_seq: u16,
    /// Wrap-arounds, shifted by 16 (A.1 `cycles`).
    cycles: u64,
    base: u64,
    bad_seq: Option<u16>,
    /// Bit `i` set: extended sequence `highest − i` was received.
    seen: u128,
}

impl Sequence {
    /// The segment starts at `seq`; extended numbers start one cycle up so that a packet
    /// reordered from before the first one still has a (smaller) extended number.
    fn new(seq: u16) -> Self {
        Self {
            max_seq: seq,
            cycles: 1 << 16,
            base: (1 << 16) + u64::from(seq),
            bad_seq: None,
            seen: 1,
        }
    }

    fn highest(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        self.highest() - self.base + 1
    }

    fn update(&mut self, seq: u16) -> Arrival {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta == 0 {
            return Arrival::Duplicate(self.highest());
        }
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
            self.seen = if u64::from(delta) >= HISTORY {
                1
            } else {
                (self.seen << delta) | 1
            };
            self.bad_seq = None;
            return Arrival::InOrder(self.highest());
        }
        if delta <= u16::MAX - MAX_MISORDER {
            // A large jump: believe it only if the next packet follows it.
            if self.bad_seq == Some(seq) {
                return Arrival::Restarted(0);
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return Arrival::Discarded;
        }
        // Up to MAX_MISORDER behind the newest.
        let back = self.max_seq.wrapping_sub(seq);
        let ext = self.highest() - u64::from(back);
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return Arrival::Duplicate(ext);
        }
        self.seen |= bit;
        self.base = self.base.min(ext);
        Arrival::Reordered(ext)
    }
}

/// The state of one SSRC.
#[derive(Debug, Clone)]
struct Stream {
    ssrc: u32,
    sequence: Sequence,
    /// Expected and received packets of earlier segments.
    prior_expected: u64,
    prior_received: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    discarded: u64,
    restarts: u64,
    timestamp_jumps: u64,
    payload_bytes: u64,
    jitter: f64,
    /// The arrival time and RTP timestamp of the last packet used for jitter.
    last_transit: Option<(Instant, u32)>,
}

impl Stream {
    fn new(ssrc: u32, seq: u16) -> Self {
        Self {
            ssrc,
            sequence: Sequence::new(seq),
            prior_expected: 0,
            prior_received: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            discarded: 0,
            restarts: 0,
            timestamp_jumps: 0,
            payload_bytes: 0,
            jitter: 0.0,
            last_transit: None,
        }
    }

    fn expected(&self) -> u64 {
        self.prior_expected + self.sequence.expected()
    }

    fn total_received(&self) -> u64 {
        self.prior_received + self.received
    }

    /// RFC 3550 A.8, in floating point: `J += (|D| − J) / 16`. A `|D|` of more than
    /// [`MAX_TRANSIT_STEP_SECS`] is a timestamp jump: counted, and the baseline restarts.
    fn update_jitter(&mut self, now: Instant, timestamp: u32, clock_rate: u32) {
        if let Some((last_arrival, last_ts)) = self.last_transit {
            if timestamp == last_ts {
                return;
            }
            let arrival = match now.checked_duration_since(last_arrival) {
                Some(d) => d.as_secs_f64(),
                None => -last_arrival.duration_since(now).as_secs_f64(),
            } * f64::from(clock_rate);
            // Signed difference of the RTP timestamps, correct across a wrap.
            let sent = f64::from(timestamp.wrapping_sub(last_ts) as i32);
            let d = arrival - sent;
            if d.abs() > f64::from(MAX_TRANSIT_STEP_SECS) * f64::from(clock_rate) {
                self.timestamp_jumps += 1;
            } else {
                self.jitter += (d.abs() - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some((now, timestamp));
    }
}

/// One playout tick's output from a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The next frame in sequence order.
    Frame(BufferedFrame<'a>),
    /// The next frame in sequence order did not arrive in time: conceal it (silence).
    Missing {
        /// Its extended sequence number.
        sequence: u64,
    },
    /// Not playing: still filling up to the configured depth (at the start, or after an
    /// underrun). Play silence.
    Buffering,
}

/// A frame released by the jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedFrame<'a> {
    /// The extended sequence number.
    pub sequence: u64,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The payload type (route telephone events away from the audio decoder).
    pub payload_type: u8,
    /// The marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: &'a [u8],
}

/// What the jitter buffer did with a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffered {
    /// Stored for playout.
    Stored,
    /// Already stored.
    Duplicate,
    /// Its turn to play has passed; dropped.
    Late,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    sequence: Option<u64>,
    timestamp: u32,
    payload_type: u8,
    marker: bool,
    payload: Vec<u8>,
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterBufferStats {
    /// Frames released.
    pub played: u64,
    /// Playout ticks with a missing frame.
    pub missing: u64,
    /// Packets that arrived after their playout tick.
    pub late: u64,
    /// Times the buffer ran dry while playing and went back to buffering.
    pub underruns: u64,
    /// Frames dropped unplayed because a packet far ahead of the playout point arrived.
    pub overflow: u64,
}

/// The longest run of frames (5 s at 20 ms) skipped after an underrun that is counted as
/// missing; a longer jump is the sender's discontinuity.
const MAX_SKIP_COUNTED: u64 = 250;

/// A fixed-depth jitter buffer ordering payloads by extended sequence number.
///
/// It starts playing once it holds a span of `depth` frames, then releases one frame per
/// [`JitterBuffer::pop`] (one pop per ptime, driven by the caller's playout clock). Payloads
/// are copied into slots that keep their allocation, so a steady stream allocates nothing.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    depth: u64,
    slots: Vec<Slot>,
    next: Option<u64>,
    highest: Option<u64>,
    playing: bool,
    /// Ran dry while playing, and no packet was stored since.
    underrun: bool,
    /// Playout ticks heard as silence since the underrun (the frames due meanwhile).
    silent_ticks: u64,
    /// Frames skipped at the resume after an underrun not yet matched by a silent tick: the
    /// ticks of re-buffering that follow are those frames' slots, counted missing one by one.
    owed: u64,
    stats: JitterBufferStats,
}

impl JitterBuffer {
    /// A buffer that plays once `depth` frames are buffered.
    ///
    /// # Errors
    /// [`ReceiverError::BadDepth`] if `depth` is zero.
    pub fn new(depth: usize) -> Result<Self, ReceiverError> {
        if depth == 0 {
            return Err(ReceiverError::BadDepth);
        }
        Ok(Self {
            depth: depth as u64,
            slots: vec![Slot::default(); 2 * depth + 2],
            next: None,
            highest: None,
            playing: false,
            underrun: false,
            silent_ticks: 0,
            owed: 0,
            stats: JitterBufferStats::default(),
        })
    }

    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot(&mut self, sequence: u64) -> &mut Slot {
        let cap = self.capacity();
        // `sequence % cap < slots.len()`, so the index is in range.
        &mut self.slots[(sequence % cap) as usize]
    }

    /// Stores a packet with its extended sequence number.
    pub fn push(&mut self, sequence: u64, packet: &RtpPacket<'_>) -> Buffered {
        let cap = self.capacity();
        let next = match self.next {
            None => sequence,
            // Before playing starts, an earlier packet moves the start back (within reach).
            Some(next) if !self.playing && sequence < next => {
                if self.highest.is_some_and(|h| h - sequence >= cap) {
                    self.stats.late += 1;
                    return Buffered::Late;
                }
                sequence
            }
            Some(next) if sequence < next => {
                self.stats.late += 1;
                return Buffered::Late;
            }
            // After an underrun (the stream stopped while playing), the frames between the
            // last one played and this one were due during the silence: they are missing, and
            // playout resumes from here rather than replaying their slots late. Each is
            // counted against a tick of silence (those of the underrun now, those of the
            // re-buffering that follows as they come), so no more frames are missing than
            // ticks were silent. A jump beyond MAX_SKIP_COUNTED is a discontinuity, not loss.
            Some(next) if self.underrun && sequence > next => {
                let skipped = sequence - next;
                if skipped <= MAX_SKIP_COUNTED {
                    let now = skipped.min(self.silent_ticks);
                    self.stats.missing += now;
                    self.owed = skipped - now;
                }
                sequence
            }
            Some(next) => next,
        };
        // Too far ahead: give up the oldest frames so that this one fits.
        let next = if sequence >= next.saturating_add(cap) {
            let new_next = sequence + 1 - cap;
            for s in next..new_next.min(next.saturating_add(cap)) {
                let slot = self.slot(s);
                if slot.sequence == Some(s) {
                    slot.sequence = None;
                }
            }
            self.stats.overflow += new_next - next;
            new_next
        } else {
            next
        };
        self.underrun = false;
        self.silent_ticks = 0;
        self.next = Some(next);
        self.highest = Some(self.highest.map_or(sequence, |h| h.max(sequence)));
        let slot = self.slot(sequence);
        if slot.sequence == Some(sequence) {
            return Buffered::Duplicate;
        }
        slot.sequence = Some(sequence);
        slot.timestamp = packet.header.timestamp;
        slot.payload_type = packet.header.payload_type;
        slot.marker = packet.header.marker;
        slot.payload.clear();
        slot.payload.extend_from_slice(packet.payload);
        Buffered::Stored
    }

    /// The output for one playout tick.
    pub fn pop(&mut self) -> Playout<'_> {
        let (Some(next), Some(highest)) = (self.next, self.highest) else {
            return Playout::Buffering;
        };
        if !self.playing {
            if highest.saturating_add(1) >= next.saturating_add(self.depth) {
                self.playing = true;
                self.owed = 0;
            } else {
                if self.underrun {
                    self.silent_ticks += 1;
                } else if self.owed > 0 {
                    self.owed -= 1;
                    self.stats.missing += 1;
                }
                return Playout::Buffering;
            }
        }
        if next > highest {
            self.playing = false;
            self.underrun = true;
            self.silent_ticks = 1;
            self.owed = 0;
            self.stats.underruns += 1;
            return Playout::Buffering;
        }
        self.next = Some(next + 1);
        let slot = self.slot(next);
        if slot.sequence != Some(next) {
            self.stats.missing += 1;
            return Playout::Missing { sequence: next };
        }
        slot.sequence = None;
        self.stats.played += 1;
        let slot = &self.slots[(next % self.capacity()) as usize];
        Playout::Frame(BufferedFrame {
            sequence: next,
            timestamp: slot.timestamp,
            payload_type: slot.payload_type,
            marker: slot.marker,
            payload: &slot.payload,
        })
    }

    /// How many frames are stored and not yet played.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.sequence
                    .is_some_and(|q| self.next.is_some_and(|n| q >= n))
            })
            .count()
    }

    /// Whether no frame is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops everything and starts buffering again (counters are kept).
    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            slot.sequence = None;
        }
        self.next = None;
        self.highest = None;
        self.playing = false;
        self.underrun = false;
        self.silent_ticks = 0;
        self.owed = 0;
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> JitterBufferStats {
        self.stats
    }
}

/// The most SSRCs a receiver keeps apart; beyond that the oldest stream's counts are folded
/// into the call's totals (a peer cycling through SSRCs cannot grow the receiver).
const MAX_STREAMS: usize = 8;

/// Counts of streams no longer kept apart (see [`MAX_STREAMS`]).
#[derive(Debug, Clone, Copy, Default)]
struct Retired {
    expected: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    discarded: u64,
    restarts: u64,
    timestamp_jumps: u64,
    payload_bytes: u64,
    jitter: f64,
}

/// Receive statistics and jitter buffer of a call's RTP: every SSRC the peer sends has its own
/// sequence and jitter state (RFC 3550 keeps them per source), and the statistics are the
/// call's, over every stream. One of them, the *played* stream, feeds the jitter buffer.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: u32,
    created: Instant,
    last_arrival: Option<Instant>,
    /// One per SSRC, in the order they started.
    streams: Vec<Stream>,
    /// The stream feeding the jitter buffer (an index into `streams`).
    played: Option<usize>,
    /// The stream of the last packet (an index into `streams`), looked at first.
    last: usize,
    retired: Retired,
    ssrc_changes: u64,
    /// Expected and received over every stream at the last interval report (A.3).
    report_expected: u64,
    report_received: u64,
    jitter_buffer: JitterBuffer,
}

impl RtpReceiver {
    /// A receiver created at `now` (the reference for a timeout before any packet arrives).
    ///
    /// # Errors
    /// [`ReceiverError`] for a zero clock rate or jitter buffer depth.
    pub fn new(now: Instant, config: ReceiverConfig) -> Result<Self, ReceiverError> {
        if config.clock_rate == 0 {
            return Err(ReceiverError::BadClockRate);
        }
        Ok(Self {
            clock_rate: config.clock_rate,
            created: now,
            last_arrival: None,
            streams: Vec::with_capacity(2),
            played: None,
            last: 0,
            retired: Retired::default(),
            ssrc_changes: 0,
            report_expected: 0,
            report_received: 0,
            jitter_buffer: JitterBuffer::new(config.jitter_buffer_frames)?,
        })
    }

    /// Takes a packet of the played stream that arrived at `now`: updates the statistics and
    /// stores the payload in the jitter buffer (unless it is a duplicate or discarded). A
    /// packet of another SSRC than the played stream's makes its stream the played one (the
    /// jitter buffer starts over); the earlier stream's counts stay in the totals.
    pub fn on_packet(&mut self, now: Instant, packet: &RtpPacket<'_>) -> Arrival {
        self.receive(now, packet, true)
    }

    /// Takes a packet that is counted but not played (an RFC 4733 event stream under its own
    /// SSRC): its stream's statistics are updated, the jitter buffer is left alone.
    pub fn on_side_packet(&mut self, now: Instant, packet: &RtpPacket<'_>) -> Arrival {
        self.receive(now, packet, false)
    }

    /// The index of `ssrc`'s stream, created (and counted as an SSRC change after the first)
    /// if new.
    fn stream_index(&mut self, ssrc: u32, seq: u16) -> usize {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return self.last;
        }
        if let Some(i) = self.streams.iter().position(|s| s.ssrc == ssrc) {
            return i;
        }
        if !self.streams.is_empty() || self.retired.expected > 0 || self.retired.received > 0 {
            self.ssrc_changes += 1;
        }
        if self.streams.len() == MAX_STREAMS {
            // Fold the oldest stream that is not being played into the totals.
            let victim = usize::from(self.played == Some(0));
            let old = self.streams.remove(victim);
            let r = &mut self.retired;
            r.expected += old.expected();
            r.received += old.total_received();
            r.duplicates += old.duplicates;
            r.reordered += old.reordered;
            r.discarded += old.discarded;
            r.restarts += old.restarts;
            r.timestamp_jumps += old.timestamp_jumps;
            r.payload_bytes += old.payload_bytes;
            r.jitter = r.jitter.max(old.jitter);
            if let Some(p) = &mut self.played {
                if *p > victim {
                    *p -= 1;
                }
            }
        }
        self.streams.push(Stream::new(ssrc, seq));
        self.streams.len() - 1
    }

    fn receive(&mut self, now: Instant, packet: &RtpPacket<'_>, play: bool) -> Arrival {
        self.last_arrival = Some(self.last_arrival.map_or(now, |last| last.max(now)));
        let header = &packet.header;
        let index = self.stream_index(header.ssrc, header.sequence);
        self.last = index;
        if play && self.played != Some(index) {
            if self.played.is_some() {
                self.jitter_buffer.reset();
            }
            self.played = Some(index);
        }
        let stream = &mut self.streams[index];
        let arrival = if stream.received == 0 && stream.prior_received == 0 {
            Arrival::First(stream.sequence.highest())
        } else {
            match stream.sequence.update(header.sequence) {
                Arrival::Restarted(_) => {
                    stream.prior_expected += stream.sequence.expected();
                    stream.prior_received += stream.received;
                    stream.received = 0;
                    stream.restarts += 1;
                    stream.sequence = Sequence::new(header.sequence);
                    stream.last_transit = None;
                    if play {
                        self.jitter_buffer.reset();
                    }
                    Arrival::Restarted(stream.sequence.highest())
                }
                other => other,
            }
        };
        match arrival {
            Arrival::Duplicate(_) => stream.duplicates += 1,
            Arrival::Discarded => stream.discarded += 1,
            Arrival::First(_)
            | Arrival::InOrder(_)
            | Arrival::Reordered(_)
            | Arrival::Restarted(_) => {
                if matches!(arrival, Arrival::Reordered(_)) {
                    stream.reordered += 1;
                }
                stream.received += 1;
                stream.payload_bytes += packet.payload.len() as u64;
                stream.update_jitter(now, header.timestamp, self.clock_rate);
            }
        }
        if play {
            if let Some(sequence) = arrival.sequence() {
                if !matches!(arrival, Arrival::Duplicate(_)) {
                    self.jitter_buffer.push(sequence, packet);
                }
            }
        }
        arrival
    }

    /// The jitter buffer's output for one playout tick.
    pub fn pop_frame(&mut self) -> Playout<'_> {
        self.jitter_buffer.pop()
    }

    /// The jitter buffer's counters.
    #[must_use]
    pub fn jitter_buffer_stats(&self) -> JitterBufferStats {
        self.jitter_buffer.stats()
    }

    /// The SSRC of the played stream, once a packet was played.
    #[must_use]
    pub fn played_ssrc(&self) -> Option<u32> {
        self.played.map(|i| self.streams[i].ssrc)
    }

    /// A snapshot of the call's statistics over every stream: counts summed, the jitter the
    /// highest of the streams' (each stream's RFC 3550 estimate), the SSRC and highest
    /// sequence number the played stream's (or the last packet's stream's).
    #[must_use]
    pub fn stats(&self) -> ReceiveStats {
        let r = &self.retired;
        let mut stats = ReceiveStats {
            ssrc: None,
            expected: r.expected,
            received: r.received,
            duplicates: r.duplicates,
            reordered: r.reordered,
            discarded: r.discarded,
            sequence_restarts: r.restarts,
            timestamp_jumps: r.timestamp_jumps,
            ssrc_changes: self.ssrc_changes,
            highest_sequence: 0,
            payload_bytes: r.payload_bytes,
            jitter_ts: r.jitter,
            jitter_ms: 0.0,
        };
        for s in &self.streams {
            stats.expected += s.expected();
            stats.received += s.total_received();
            stats.duplicates += s.duplicates;
            stats.reordered += s.reordered;
            stats.discarded += s.discarded;
            stats.sequence_restarts += s.restarts;
            stats.timestamp_jumps += s.timestamp_jumps;
            stats.payload_bytes += s.payload_bytes;
            stats.jitter_ts = stats.jitter_ts.max(s.jitter);
        }
        if let Some(s) = self
            .played
            .or((!self.streams.is_empty()).then_some(self.last))
        {
            let s = &self.streams[s];
            stats.ssrc = Some(s.ssrc);
            stats.highest_sequence = s.sequence.highest();
        }
        stats.jitter_ms = stats.jitter_ts * 1000.0 / f64::from(self.clock_rate);
        stats
    }

    /// The fraction lost over every stream since the previous call, as the 8-bit fixed-point
    /// number of an RTCP report block (RFC 3550 A.3; 0 if nothing was lost or expected).
    pub fn take_interval_fraction_lost(&mut self) -> u8 {
        let stats = self.stats();
        let expected_interval = stats.expected.saturating_sub(self.report_expected);
        let received_interval = stats.received.saturating_sub(self.report_received);
        self.report_expected = stats.expected;
        self.report_received = stats.received;
        if expected_interval == 0 || received_interval >= expected_interval {
            return 0;
        }
        let lost = expected_interval - received_interval;
        u8::try_from((lost << 8) / expected_interval).unwrap_or(u8::MAX)
    }

    /// When the last packet arrived (the latest arrival time taken).
    #[must_use]
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// Whether no packet has arrived for `timeout` (counted from creation if none ever did).
    #[must_use]
    pub fn is_timed_out(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_arrival.unwrap_or(self.created)) >= timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::{write_packet, RtpHeader};

    /// The one clock read of these tests: a base for virtual time.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A packet as bytes: sequence `seq`, timestamp `ts`, payload `[seq as u8; 4]`.
    fn bytes(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let header = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        };
        let mut buf = vec![0u8; 16];
        write_packet(&header, &[seq as u8; 4], &mut buf).unwrap();
        buf
    }

    /// A stream driver, not a network: packet `i` has sequence `seq0 + i`, timestamp `160·i`,
    /// and is sent at `t0 + 20 ms·i`; `deliver` hands it to the receiver straight away, in the
    /// order and with the transit time the test says (the core's network simulator is
    /// [`crate::sim`]).
    struct Stream {
        t0: Instant,
        rx: RtpReceiver,
        seq0: u16,
        ssrc: u32,
    }

    impl Stream {
        fn new(seq0: u16) -> Self {
            let t0 = base();
            Self {
                t0,
                rx: RtpReceiver::new(t0, ReceiverConfig::default()).unwrap(),
                seq0,
                ssrc: 0xABCD,
            }
        }

        /// Delivers packet `i` with `delay` of network transit.
        fn deliver(&mut self, i: u32, delay: Duration) -> Arrival {
            let buf = bytes(self.ssrc, self.seq0.wrapping_add(i as u16), 160 * i);
            let packet = RtpPacket::parse(&buf).unwrap();
            let now = self.t0 + ms(20) * i + delay;
            self.rx.on_packet(now, &packet)
        }
    }

    #[test]
    fn in_order_stream_with_constant_transit_has_no_loss_and_no_jitter() {
        let mut stream = Stream::new(1000);
        for i in 0..500 {
            stream.deliver(i, ms(30));
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.ssrc, Some(0xABCD));
        assert_eq!(stats.expected, 500);
        assert_eq!(stats.received, 500);
        assert_eq!(stats.lost(), 0);
        assert_eq!(stats.loss_fraction(), 0.0);
        assert_eq!(
            (stats.duplicates, stats.reordered, stats.discarded),
            (0, 0, 0)
        );
        assert_eq!(stats.payload_bytes, 2000);
        assert!(stats.jitter_ts.abs() < 1e-6, "{}", stats.jitter_ts);
    }

    #[test]
    fn five_percent_loss_is_counted() {
        let mut stream = Stream::new(0);
        for i in 0..1000 {
            if i % 20 != 7 {
                stream.deliver(i, ms(5));
            }
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.expected, 1000);
        assert_eq!(stats.received, 950);
        assert_eq!(stats.lost(), 50);
        assert!((stats.loss_fraction() - 0.05).abs() < 1e-12);
        assert_eq!(stream.rx.take_interval_fraction_lost(), 12); // 0.05 · 256 = 12.8
        assert_eq!(stream.rx.take_interval_fraction_lost(), 0);
    }

    #[test]
    fn duplicates_are_counted_apart_and_not_as_received() {
        let mut stream = Stream::new(7);
        for i in 0..100 {
            assert!(matches!(
                stream.deliver(i, ms(5)),
                Arrival::First(_) | Arrival::InOrder(_)
            ));
            if i % 10 == 3 {
                assert!(matches!(stream.deliver(i, ms(6)), Arrival::Duplicate(_)));
            }
        }
        // An old duplicate, well behind the newest packet.
        assert!(matches!(
            stream.deliver(50, ms(1000)),
            Arrival::Duplicate(_)
        ));
        let stats = stream.rx.stats();
        assert_eq!(stats.duplicates, 11);
        assert_eq!(stats.received, 100);
        assert_eq!(stats.expected, 100);
        assert_eq!(stats.lost(), 0);
    }

    #[test]
    fn adjacent_reordering_is_reordered_not_lost() {
        let mut stream = Stream::new(500);
        let mut kinds = Vec::new();
        for pair in 0..50 {
            let (a, b) = (2 * pair, 2 * pair + 1);
            if pair % 5 == 1 {
                kinds.push(stream.deliver(b, ms(5)));
                kinds.push(stream.deliver(a, ms(6)));
            } else {
                kinds.push(stream.deliver(a, ms(5)));
                kinds.push(stream.deliver(b, ms(5)));
            }
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.reordered, 10);
        assert_eq!(stats.expected, 100);
        assert_eq!(stats.received, 100);
        assert_eq!(stats.lost(), 0);
        assert_eq!(kinds[2], Arrival::InOrder((1 << 16) + 503));
        assert_eq!(kinds[3], Arrival::Reordered((1 << 16) + 502));
        // The very first packets swapped: the start moves back, nothing is lost.
        let mut stream = Stream::new(9);
        stream.deliver(1, ms(5));
        assert_eq!(stream.deliver(0, ms(6)), Arrival::Reordered((1 << 16) + 9));
        stream.deliver(2, ms(5));
        assert_eq!(stream.rx.stats().expected, 3);
        assert_eq!(stream.rx.stats().lost(), 0);
    }

    /// A 60 s stream through the core's network simulator with seeded loss, duplication and
    /// reordering: the receiver's counts are exactly what the network did to the stream.
    #[test]
    fn statistics_match_what_a_lossy_duplicating_reordering_network_did() {
        use crate::sim::{Datagram, LinkConfig, Network};
        use std::collections::HashSet;

        let t0 = base();
        let link = LinkConfig::new(ms(30))
            .with_loss(30_000)
            .with_duplication(20_000, ms(3))
            .with_reordering(50_000, ms(45));
        let mut net = Network::new(t0, link);
        net.seed(42);
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        let seq0: u16 = 65_000; // the sequence wraps during the stream
        let (mut distinct, mut copies, mut reordered) = (HashSet::new(), 0u64, 0u64);
        let mut highest: Option<u32> = None;
        let mut receive = |net: &mut Network<&str>, until: Instant| {
            while let Some(at) = net.next_delivery().filter(|&at| at <= until) {
                net.advance(at);
                while let Some(d) = net.poll_delivery() {
                    let packet = RtpPacket::parse(&d.bytes).unwrap();
                    let i = u32::from(packet.header.sequence.wrapping_sub(seq0));
                    rx.on_packet(net.now(), &packet);
                    copies += 1;
                    if distinct.insert(i) && highest.is_some_and(|h| i < h) {
                        reordered += 1;
                    }
                    highest = highest.max(Some(i));
                }
            }
        };
        let n = 3000u32;
        for i in 0..n {
            let at = t0 + ms(20) * i;
            receive(&mut net, at);
            net.advance(at);
            let bytes = bytes(0xABCD, seq0.wrapping_add(i as u16), 160 * i);
            net.send(Datagram {
                from: "tx",
                to: "rx",
                bytes: bytes.into(),
            });
        }
        receive(&mut net, t0 + Duration::from_secs(3600));

        let sent = net.counts(&"tx");
        assert_eq!(sent.sent, u64::from(n));
        assert!(sent.dropped > 50 && copies > sent.sent - sent.dropped && reordered > 50);
        let first = *distinct.iter().min().unwrap();
        let last = highest.unwrap();
        let stats = rx.stats();
        assert_eq!(stats.received, distinct.len() as u64);
        assert_eq!(stats.duplicates, copies - distinct.len() as u64);
        assert_eq!(stats.reordered, reordered);
        assert_eq!(stats.expected, u64::from(last - first + 1));
        assert_eq!(
            stats.lost(),
            i64::from(last - first + 1) - distinct.len() as i64
        );
        assert_eq!(stats.discarded, 0);
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut stream = Stream::new(65_500);
        for i in 0..100 {
            // Swap the two packets either side of the wrap.
            let i = match i {
                35 => 36,
                36 => 35,
                other => other,
            };
            stream.deliver(i, ms(5));
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.expected, 100);
        assert_eq!(stats.received, 100);
        assert_eq!(stats.lost(), 0);
        assert_eq!(stats.reordered, 1);
        // One wrap: 65,500 + 99 − 65,536 = 63 in the next cycle.
        assert_eq!(stats.highest_sequence, (2 << 16) + 63);
    }

    #[test]
    fn jitter_with_alternating_transit_follows_rfc_3550() {
        let mut stream = Stream::new(0);
        let n = 200;
        for i in 0..n {
            // Transit alternates 0 and 10 ms: |D| = 80 timestamp units every packet.
            stream.deliver(i, if i % 2 == 1 { ms(10) } else { ms(0) });
        }
        let expected = 80.0 * (1.0 - (15.0f64 / 16.0).powi(n as i32 - 1));
        let stats = stream.rx.stats();
        assert!(
            (stats.jitter_ts - expected).abs() < 1e-6,
            "{}",
            stats.jitter_ts
        );
        assert!((stats.jitter_ms - expected / 8.0).abs() < 1e-6);
        // After 10 packets it is still converging: J = 80·(1 − (15/16)^9).
        let mut short = Stream::new(0);
        for i in 0..10 {
            short.deliver(i, if i % 2 == 1 { ms(10) } else { ms(0) });
        }
        let j10 = 80.0 * (1.0 - (15.0f64 / 16.0).powi(9));
        assert!((short.rx.stats().jitter_ts - j10).abs() < 1e-6);
    }

    #[test]
    fn repeated_timestamps_do_not_add_jitter() {
        // RFC 4733 event updates: same timestamp, 20 ms apart.
        let t0 = base();
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        for i in 0..10u16 {
            let buf = bytes(1, i, 8000);
            rx.on_packet(t0 + ms(20) * u32::from(i), &RtpPacket::parse(&buf).unwrap());
        }
        let buf = bytes(1, 10, 8000 + 1600);
        rx.on_packet(t0 + ms(200), &RtpPacket::parse(&buf).unwrap());
        assert!(rx.stats().jitter_ts.abs() < 1e-6);
    }

    #[test]
    fn a_new_ssrc_starts_a_stream_of_its_own_and_is_counted() {
        let mut stream = Stream::new(100);
        for i in 0..10 {
            stream.deliver(i, ms(5));
        }
        stream.ssrc = 0x1111;
        stream.seq0 = 40_000;
        assert!(matches!(stream.deliver(10, ms(5)), Arrival::First(_)));
        for i in 11..15 {
            stream.deliver(i, ms(5));
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.ssrc, Some(0x1111));
        assert_eq!(stream.rx.played_ssrc(), Some(0x1111));
        assert_eq!(stats.ssrc_changes, 1);
        // Both streams, whole: no loss from the jump in sequence numbers between them.
        assert_eq!(stats.expected, 15);
        assert_eq!(stats.received, 15);
        assert_eq!(stats.lost(), 0);
        // Back to the first SSRC: its stream goes on, it is no new SSRC.
        stream.ssrc = 0xABCD;
        stream.seq0 = 100;
        assert!(matches!(stream.deliver(10, ms(5)), Arrival::InOrder(_)));
        assert_eq!(stream.rx.stats().ssrc_changes, 1);
    }

    #[test]
    fn loss_and_jitter_of_a_stream_that_stopped_still_show_after_a_switch() {
        let mut stream = Stream::new(1000);
        // The first stream: 100 packets, every 10th lost, transit alternating 0 and 10 ms.
        for i in 0..100 {
            if i % 10 != 4 {
                stream.deliver(i, if i % 2 == 1 { ms(10) } else { ms(0) });
            }
        }
        let first = stream.rx.stats();
        assert_eq!(first.lost(), 10);
        assert!(first.jitter_ms > 5.0, "{}", first.jitter_ms);
        // Then a clean stream under a new SSRC: no loss, constant transit.
        stream.ssrc = 0x2222;
        stream.seq0 = 7;
        for i in 100..400 {
            stream.deliver(i, ms(3));
        }
        let stats = stream.rx.stats();
        assert_eq!(stats.ssrc, Some(0x2222));
        assert_eq!(stats.expected, 400);
        assert_eq!(stats.received, 390);
        assert_eq!(stats.lost(), 10);
        assert!((stats.loss_fraction() - 0.025).abs() < 1e-12);
        // The call's jitter is the worst stream's, not the last one's (which is ~0).
        assert!(
            (stats.jitter_ms - first.jitter_ms).abs() < 1e-9,
            "{stats:?}"
        );
        assert_eq!(stream.rx.take_interval_fraction_lost(), 6); // 10 / 400 · 256 = 6.4
    }

    #[test]
    fn an_event_stream_under_its_own_ssrc_disturbs_neither_the_audio_nor_its_playout() {
        let t0 = base();
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        let mut played = Vec::new();
        for i in 0..50u16 {
            let at = t0 + ms(20) * u32::from(i);
            let audio = bytes(0xA, 500 + i, 160 * u32::from(i));
            let a = rx.on_packet(at, &RtpPacket::parse(&audio).unwrap());
            assert!(
                matches!(a, Arrival::First(_) | Arrival::InOrder(_)),
                "{a:?}"
            );
            if (10..20).contains(&i) {
                // RFC 4733 events interleaved, under another SSRC, at the same pace.
                let event = bytes(0xE, 9000 + i, 99_000);
                rx.on_side_packet(at + ms(1), &RtpPacket::parse(&event).unwrap());
            }
            if let Some(frame) = tick(&mut rx) {
                played.push(frame);
            }
        }
        let stats = rx.stats();
        assert_eq!(stats.ssrc, Some(0xA));
        assert_eq!(stats.ssrc_changes, 1);
        assert_eq!((stats.expected, stats.received), (60, 60));
        assert_eq!(stats.sequence_restarts + stats.discarded, 0);
        assert_eq!(rx.jitter_buffer_stats().underruns, 0);
        // Every audio frame after the buffer's fill, in order, nothing concealed.
        assert_eq!(played.len(), 48);
        assert!(played.iter().all(Option::is_some));
    }

    #[test]
    fn a_sequence_jump_is_believed_only_when_followed() {
        let mut stream = Stream::new(0);
        for i in 0..10 {
            stream.deliver(i, ms(5));
        }
        // A stray packet far ahead: discarded, then the stream goes on.
        stream.seq0 = 20_000;
        assert_eq!(stream.deliver(10, ms(5)), Arrival::Discarded);
        stream.seq0 = 0;
        assert!(matches!(stream.deliver(11, ms(5)), Arrival::InOrder(_)));
        // Now a real jump: two packets in sequence after it.
        stream.seq0 = 30_000;
        assert_eq!(stream.deliver(12, ms(5)), Arrival::Discarded);
        assert!(matches!(stream.deliver(13, ms(5)), Arrival::Restarted(_)));
        stream.deliver(14, ms(5));
        let stats = stream.rx.stats();
        assert_eq!(stats.discarded, 2);
        assert_eq!(stats.sequence_restarts, 1);
        // Segment one: 0..=11 (11 received, 10 lost to the stray); segment two: 13, 14.
        assert_eq!(stats.expected, 12 + 2);
        assert_eq!(stats.received, 11 + 2);
    }

    /// Delivers `n` packets 20 ms apart with constant transit, starting at packet `i0`
    /// of the schedule; packet `i` carries `seq(i)` and `ts(i)`.
    fn stream(
        rx: &mut RtpReceiver,
        t0: Instant,
        range: std::ops::Range<u32>,
        seq: impl Fn(u32) -> u16,
        ts: impl Fn(u32) -> u32,
    ) {
        for i in range {
            let buf = bytes(0x5EED, seq(i), ts(i));
            rx.on_packet(t0 + ms(20) * i + ms(7), &RtpPacket::parse(&buf).unwrap());
        }
    }

    #[test]
    fn a_timestamp_jump_is_a_discontinuity_not_jitter() {
        let t0 = base();
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        // 100 packets, then the timestamps jump by 2^30 (37 hours at 8 kHz), sequence going on;
        // then back down by 5 s.
        stream(&mut rx, t0, 0..100, |i| i as u16, |i| 160 * i);
        stream(&mut rx, t0, 100..200, |i| i as u16, |i| 160 * i + (1 << 30));
        stream(
            &mut rx,
            t0,
            200..300,
            |i| i as u16,
            |i| 160 * i + (1 << 30) - 40_000,
        );
        let stats = rx.stats();
        assert_eq!(stats.timestamp_jumps, 2);
        assert_eq!(stats.sequence_restarts, 0);
        assert_eq!(stats.discontinuities(), 2);
        assert_eq!(
            (stats.expected, stats.received, stats.lost()),
            (300, 300, 0)
        );
        assert!(stats.jitter_ms.abs() < 1e-6, "{stats:?}");
        // A step of transit just under a second is still jitter (|D| = 7999 units).
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        stream(&mut rx, t0, 0..10, |i| i as u16, |i| 160 * i);
        stream(&mut rx, t0, 10..11, |i| i as u16, |i| 160 * i + 7999);
        let stats = rx.stats();
        assert_eq!(stats.timestamp_jumps, 0);
        assert!((stats.jitter_ts - 7999.0 / 16.0).abs() < 1e-6, "{stats:?}");
    }

    #[test]
    fn sequence_and_timestamp_jumps_on_a_lossless_link_are_neither_loss_nor_jitter() {
        let t0 = base();
        let mut rx = RtpReceiver::new(t0, ReceiverConfig::default()).unwrap();
        let ts_of = |i: u32| {
            160 * i + if i >= 200 { 3_000_000_000 } else { 0 } + if i >= 400 { 123_456 } else { 0 }
        };
        // 0..200 from 1000; a jump forward of 20,000 (timestamps jumping too); at 400 a jump
        // back by 10,000 (timestamps jumping again), then on to 600.
        let seq_of = |i: u32| {
            let s = 1000 + i;
            let s = if i >= 200 { s + 20_000 } else { s };
            (if i >= 400 { s - 10_000 } else { s }) as u16
        };
        let mut played = 0;
        for i in 0..600 {
            let buf = bytes(0x5EED, seq_of(i), ts_of(i));
            let arrival = rx.on_packet(t0 + ms(20) * i + ms(7), &RtpPacket::parse(&buf).unwrap());
            match i {
                200 | 400 => assert_eq!(arrival, Arrival::Discarded, "{i}"),
                201 | 401 => assert!(matches!(arrival, Arrival::Restarted(_)), "{i}"),
                _ => assert!(matches!(arrival, Arrival::First(_) | Arrival::InOrder(_))),
            }
            if matches!(rx.pop_frame(), Playout::Frame(_)) {
                played += 1;
            }
        }
        let stats = rx.stats();
        assert_eq!(stats.sequence_restarts, 2);
        // The timestamp jumps came with the sequence jumps: one event each, not two.
        assert_eq!(stats.timestamp_jumps, 0);
        assert_eq!(stats.discontinuities(), 2);
        // The packet of each jump is held back (probation), nothing counts as lost.
        assert_eq!(stats.discarded, 2);
        assert_eq!((stats.expected, stats.received), (598, 598));
        assert_eq!(stats.lost(), 0);
        assert_eq!(stats.loss_fraction(), 0.0);
        assert!(stats.jitter_ms.abs() < 1e-6, "{stats:?}");
        // Playout restarts at each jump (refilling the buffer), then goes on.
        assert!(played > 580, "{played}");
    }

    #[test]
    fn timeout_counts_from_the_last_arrival_or_creation() {
        let mut stream = Stream::new(0);
        let t0 = stream.t0;
        assert!(!stream.rx.is_timed_out(t0 + ms(999), ms(1000)));
        assert!(stream.rx.is_timed_out(t0 + ms(1000), ms(1000)));
        stream.deliver(50, Duration::ZERO); // arrives at t0 + 1 s
        assert_eq!(stream.rx.last_arrival(), Some(t0 + ms(1000)));
        assert!(!stream.rx.is_timed_out(t0 + ms(1500), ms(1000)));
        assert!(stream.rx.is_timed_out(t0 + ms(2000), ms(1000)));
        // A clock that went backwards is not a timeout.
        assert!(!stream.rx.is_timed_out(t0, ms(1000)));
    }

    /// Pops one tick and describes it.
    fn tick(rx: &mut RtpReceiver) -> Option<Option<u8>> {
        match rx.pop_frame() {
            Playout::Frame(f) => Some(Some(f.payload[0])),
            Playout::Missing { .. } => Some(None),
            Playout::Buffering => None,
        }
    }

    #[test]
    fn jitter_buffer_releases_in_order_and_conceals_gaps() {
        let mut stream = Stream::new(65_530);
        // Arrival order: 0 2 1 3 5 (4 lost) 6 7 8, 2 (duplicate), 9.
        let mut out = Vec::new();
        for i in [0, 2, 1, 3, 5, 6, 7, 8, 2, 9] {
            stream.deliver(i, ms(5));
            out.push(tick(&mut stream.rx));
        }
        for _ in 0..4 {
            out.push(tick(&mut stream.rx));
        }
        let p = |i: u16| Some(Some(65_530u16.wrapping_add(i) as u8));
        assert_eq!(
            out,
            [
                None, // buffering: a span of 1 frame, 3 needed
                p(0), // 0..=2 spans 3 frames (1 is still on its way)
                p(1), // ... and arrived in time
                p(2),
                p(3),
                Some(None), // 4 was lost
                p(5),
                p(6),
                p(7),
                p(8),
                p(9),
                None, // ran dry: underrun, buffering again
                None,
                None,
            ]
        );
        let stats = stream.rx.jitter_buffer_stats();
        assert_eq!(stats.played, 9);
        assert_eq!(stats.missing, 1);
        assert_eq!(stats.underruns, 1);
        assert_eq!(stream.rx.stats().duplicates, 1);
    }

    #[test]
    fn jitter_buffer_drops_late_packets_and_survives_big_gaps() {
        let mut jb = JitterBuffer::new(2).unwrap();
        let store = |jb: &mut JitterBuffer, seq: u64| {
            let buf = bytes(1, seq as u16, 0);
            jb.push(seq, &RtpPacket::parse(&buf).unwrap())
        };
        assert_eq!(store(&mut jb, 10), Buffered::Stored);
        assert_eq!(store(&mut jb, 11), Buffered::Stored);
        assert_eq!(store(&mut jb, 11), Buffered::Duplicate);
        assert_eq!(jb.len(), 2);
        assert!(matches!(jb.pop(), Playout::Frame(f) if f.sequence == 10));
        assert_eq!(store(&mut jb, 10), Buffered::Late);
        assert_eq!(store(&mut jb, 9), Buffered::Late);
        assert_eq!(jb.stats().late, 2);
        // A packet far ahead: the frames in between are given up.
        assert_eq!(store(&mut jb, 100), Buffered::Stored);
        assert_eq!(jb.stats().overflow, 100 - 11 - 5);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(match jb.pop() {
                Playout::Frame(f) => Some(f.sequence),
                Playout::Missing { sequence } => Some(sequence + 1000),
                Playout::Buffering => None,
            });
        }
        assert_eq!(
            seen,
            [
                Some(1095),
                Some(1096),
                Some(1097),
                Some(1098),
                Some(1099),
                Some(100),
                None,
                None
            ]
        );
        jb.reset();
        assert!(jb.is_empty());
        assert_eq!(jb.pop(), Playout::Buffering);
        assert_eq!(JitterBuffer::new(0).unwrap_err(), ReceiverError::BadDepth);
        assert!(RtpReceiver::new(
            base(),
            ReceiverConfig {
                clock_rate: 0,
                ..ReceiverConfig::default()
            }
        )
        .is_err());
    }

    #[test]
    fn a_sequence_jump_wider_than_the_silence_counts_only_the_ticks_that_were_silent() {
        let mut jb = JitterBuffer::new(3).unwrap();
        let store = |jb: &mut JitterBuffer, seq: u64| {
            let buf = bytes(1, seq as u16, 0);
            jb.push(seq, &RtpPacket::parse(&buf).unwrap())
        };
        let mut pops = 0u64;
        for seq in 0..10 {
            store(&mut jb, seq);
            jb.pop();
            pops += 1;
        }
        // Ran dry for three ticks, then the sender jumps 100 frames ahead.
        for _ in 0..5 {
            jb.pop();
            pops += 1;
        }
        store(&mut jb, 110);
        for _ in 0..4 {
            jb.pop();
            pops += 1;
        }
        let stats = jb.stats();
        assert!(
            stats.played + stats.missing <= pops,
            "{stats:?} after {pops} ticks"
        );
        // Three ticks of the underrun and the four of re-buffering after it were silent: seven
        // of the hundred skipped frames are missing, not a hundred.
        assert_eq!(stats.missing, 7);
        assert_eq!(stats.played, 10);
    }

    #[test]
    fn after_an_underrun_playout_resumes_from_the_next_packet_and_the_dropout_is_missing() {
        let mut jb = JitterBuffer::new(3).unwrap();
        let store = |jb: &mut JitterBuffer, seq: u64| {
            let buf = bytes(1, seq as u16, 0);
            jb.push(seq, &RtpPacket::parse(&buf).unwrap())
        };
        let mut seen = Vec::new();
        let mut pop = |jb: &mut JitterBuffer| {
            seen.push(match jb.pop() {
                Playout::Frame(f) => Some(f.sequence),
                Playout::Missing { sequence } => Some(sequence + 1000),
                Playout::Buffering => None,
            })
        };
        // 0..=9 arrive one per tick; 10..=19 are lost (a 200 ms dropout); 20.. arrive again.
        for seq in (0..10).chain(20..26) {
            store(&mut jb, seq);
            pop(&mut jb);
            if seq == 9 {
                for _ in 0..10 {
                    pop(&mut jb);
                }
            }
        }
        // The dropout is heard as silence (buffering) for as long as it lasted, not replayed
        // as missing frames after it.
        let played: Vec<_> = seen.iter().flatten().copied().collect();
        assert_eq!(played, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 23]);
        let silent = seen.iter().filter(|s| s.is_none()).count();
        assert_eq!(silent, 2 + 10);
        assert_eq!(jb.stats().missing, 10);
        assert_eq!(jb.stats().underruns, 1);
        // A jump of more than MAX_SKIP_COUNTED frames after an underrun is no loss.
        for _ in 0..5 {
            jb.pop();
        }
        store(&mut jb, 26 + MAX_SKIP_COUNTED + 1);
        assert_eq!(jb.stats().missing, 10);
    }
}
