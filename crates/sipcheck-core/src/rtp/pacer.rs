//! The paced sender schedule: frame `n` is due at `t0 + n·ptime`.
//!
//! The schedule is anchored once, at `t0`, and every due time is computed from the frame
//! index, never by adding `ptime` to the previous send time, so it cannot drift however late
//! the caller wakes up. The RTP timestamp is the frame's sampling instant,
//! `initial_timestamp + n·samples_per_frame` (mod 2³²), and the sequence number counts the
//! packets handed out, `initial_sequence + k` (mod 2¹⁶) for the `k`-th slot — both come from
//! the schedule, never from `now`.
//!
//! When the caller wakes up late with several frames due, it gets them one after the other
//! (a catch-up burst) up to [`PacerConfig::max_burst`]; older frames beyond that are skipped
//! and counted as `overrun`. A skipped frame leaves a gap in the timestamps but not in the
//! sequence numbers: RFC 3550 §5.1 increments the sequence number "by one for each RTP data
//! packet sent", so a receiver's loss count reflects the network only, and the sender's
//! overrun count reports what the sender failed to send.

use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ids::IdGen;

/// An invalid pacer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacerError {
    /// The ptime is zero or not a whole number of clock ticks.
    #[error("ptime {ptime:?} is not a positive whole number of ticks of a {clock_rate} Hz clock")]
    BadPtime {
        /// The rejected ptime.
        ptime: Duration,
        /// The clock rate it was checked against.
        clock_rate: u32,
    },
    /// The catch-up burst is zero.
    #[error("catch-up burst must be at least one frame")]
    BadBurst,
}

/// How a [`Pacer`] schedules frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    /// The packetisation interval (default 20 ms).
    pub ptime: Duration,
    /// The RTP clock rate in hertz (default 8000).
    pub clock_rate: u32,
    /// The most frames sent in one catch-up burst when the caller is late (default 3).
    pub max_burst: u32,
    /// The SSRC of the stream.
    pub ssrc: u32,
    /// The sequence number of the first packet (random, RFC 3550 §5.1).
    pub initial_sequence: u16,
    /// The RTP timestamp of frame 0 (random, RFC 3550 §5.1).
    pub initial_timestamp: u32,
}

impl PacerConfig {
    /// The defaults (20 ms at 8 kHz, bursts of 3) with a random SSRC, initial sequence
    /// number and initial timestamp drawn from `ids`.
    #[must_use]
    pub fn random(ids: &mut IdGen) -> Self {
        Self {
            ptime: Duration::from_millis(20),
            clock_rate: 8000,
            max_burst: 3,
            ssrc: ids.next_u32(),
            initial_sequence: (ids.next_u32() >> 16) as u16,
            initial_timestamp: ids.next_u32(),
        }
    }
}

/// One frame to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSlot {
    /// The frame index in the schedule (frame 0 is due at `t0`).
    pub index: u64,
    /// The RTP sequence number to send it with.
    pub sequence: u16,
    /// The RTP timestamp to send it with.
    pub timestamp: u32,
    /// The RTP marker bit: set on the first frame of a talkspurt.
    pub marker: bool,
    /// When the frame was due.
    pub due: Instant,
    /// How late it is being handed out (`now − due`).
    pub lateness: Duration,
}

/// Counters of a [`Pacer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacerStats {
    /// Frames handed out.
    pub frames: u64,
    /// Frames skipped because the caller was more than a burst late.
    pub overrun: u64,
    /// The largest lateness of a handed-out frame.
    pub max_lateness: Duration,
    /// The sum of the lateness of all handed-out frames.
    pub total_lateness: Duration,
}

impl PacerStats {
    /// The mean lateness of the handed-out frames.
    #[must_use]
    pub fn mean_lateness(&self) -> Duration {
        if self.frames == 0 {
            return Duration::ZERO;
        }
        let nanos = self.total_lateness.as_nanos() / u128::from(self.frames);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The sans-IO paced sender: ask it when to wake ([`Pacer::poll_timeout`]) and what to send
/// ([`Pacer::poll_frame`]).
#[derive(Debug, Clone)]
pub struct Pacer {
    t0: Instant,
    ptime_nanos: u128,
    samples_per_frame: u32,
    config: PacerConfig,
    next_index: u64,
    talkspurt: bool,
    stats: PacerStats,
}

impl Pacer {
    /// A schedule whose frame 0 is due at `t0`.
    ///
    /// # Errors
    /// [`PacerError::BadPtime`] if the ptime is zero or not a whole number of clock ticks;
    /// [`PacerError::BadBurst`] if `max_burst` is zero.
    pub fn new(t0: Instant, config: PacerConfig) -> Result<Self, PacerError> {
        let ptime_nanos = config.ptime.as_nanos();
        let ticks = ptime_nanos * u128::from(config.clock_rate);
        let bad_ptime = PacerError::BadPtime {
            ptime: config.ptime,
            clock_rate: config.clock_rate,
        };
        if ticks == 0 || !ticks.is_multiple_of(1_000_000_000) {
            return Err(bad_ptime);
        }
        let samples_per_frame = u32::try_from(ticks / 1_000_000_000).map_err(|_| bad_ptime)?;
        if config.max_burst == 0 {
            return Err(PacerError::BadBurst);
        }
        Ok(Self {
            t0,
            ptime_nanos,
            samples_per_frame,
            config,
            next_index: 0,
            talkspurt: true,
            stats: PacerStats::default(),
        })
    }

    /// When frame `index` is due: `t0 + index·ptime` (saturating far in the future).
    #[must_use]
    pub fn due(&self, index: u64) -> Instant {
        let nanos = self.ptime_nanos.saturating_mul(u128::from(index));
        let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.t0.checked_add(offset).unwrap_or(self.t0)
    }

    /// When the next frame is due: the caller's next wake-up.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.due(self.next_index)
    }

    /// The frame to send now, if one is due. Call it repeatedly until it returns `None`:
    /// after a late wake-up it hands out the due frames one by one, at most
    /// [`PacerConfig::max_burst`] of them, skipping older ones (counted as overrun).
    pub fn poll_frame(&mut self, now: Instant) -> Option<FrameSlot> {
        let elapsed = now.checked_duration_since(self.t0)?.as_nanos();
        // The newest frame due at `now`.
        let latest = u64::try_from(elapsed / self.ptime_nanos).unwrap_or(u64::MAX);
        if latest < self.next_index {
            return None;
        }
        let backlog = latest - self.next_index + 1;
        let burst = u64::from(self.config.max_burst);
        if backlog > burst {
            let skipped = backlog - burst;
            self.next_index += skipped;
            self.stats.overrun += skipped;
        }
        let index = self.next_index;
        let due = self.due(index);
        let lateness = now.saturating_duration_since(due);
        let slot = FrameSlot {
            index,
            // Truncation is the modular arithmetic RTP wants.
            sequence: self
                .config
                .initial_sequence
                .wrapping_add(self.stats.frames as u16),
            timestamp: self
                .config
                .initial_timestamp
                .wrapping_add((index as u32).wrapping_mul(self.samples_per_frame)),
            marker: std::mem::take(&mut self.talkspurt),
            due,
            lateness,
        };
        self.next_index += 1;
        self.stats.frames += 1;
        self.stats.max_lateness = self.stats.max_lateness.max(lateness);
        self.stats.total_lateness = self.stats.total_lateness.saturating_add(lateness);
        Some(slot)
    }

    /// Re-anchors the schedule so that frame 0 is due at `t0` — for a scheduler that puts
    /// each stream on a phase of its own clock grid. Only before the first frame is handed
    /// out: returns `false` (and changes nothing) once the stream has started.
    pub fn restart_at(&mut self, t0: Instant) -> bool {
        if self.next_index != 0 || self.stats.frames != 0 || self.stats.overrun != 0 {
            return false;
        }
        self.t0 = t0;
        true
    }

    /// Marks the next frame as the first of a talkspurt (marker bit), for example after a
    /// pause in sending (RFC 3551 §4.1).
    pub fn start_talkspurt(&mut self) {
        self.talkspurt = true;
    }

    /// The SSRC of the stream.
    #[must_use]
    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    /// RTP timestamp units per frame (160 for 20 ms at 8 kHz).
    #[must_use]
    pub fn samples_per_frame(&self) -> u32 {
        self.samples_per_frame
    }

    /// The index of the next frame to hand out.
    #[must_use]
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> PacerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one clock read of these tests: a base for virtual time.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config(seq: u16, ts: u32) -> PacerConfig {
        PacerConfig {
            ptime: ms(20),
            clock_rate: 8000,
            max_burst: 3,
            ssrc: 0x5EED,
            initial_sequence: seq,
            initial_timestamp: ts,
        }
    }

    #[test]
    fn schedule_is_exact_over_ten_thousand_frames() {
        let t0 = base();
        let mut pacer = Pacer::new(t0, config(65_000, u32::MAX - 10_000)).unwrap();
        for n in 0..10_000u64 {
            let wake = pacer.poll_timeout();
            assert_eq!(wake, t0 + ms(20) * u32::try_from(n).unwrap());
            // Nothing is due a nanosecond early.
            assert_eq!(pacer.poll_frame(wake - Duration::from_nanos(1)), None);
            // Wake up a little late (as a real timer would): same slot, no drift.
            let now = wake + Duration::from_micros((n * 7919) % 19_000);
            let slot = pacer.poll_frame(now).unwrap();
            assert_eq!(slot.index, n);
            assert_eq!(slot.due, wake);
            assert_eq!(slot.lateness, now - wake);
            assert_eq!(slot.sequence, 65_000u16.wrapping_add(n as u16));
            assert_eq!(
                slot.timestamp,
                (u32::MAX - 10_000).wrapping_add(160 * n as u32)
            );
            assert_eq!(slot.marker, n == 0);
            assert_eq!(pacer.poll_frame(now), None);
        }
        assert_eq!(pacer.poll_timeout(), t0 + Duration::from_secs(200));
        let stats = pacer.stats();
        assert_eq!(stats.frames, 10_000);
        assert_eq!(stats.overrun, 0);
        assert!(stats.max_lateness < ms(19));
        assert!(stats.mean_lateness() > Duration::ZERO);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t0 = base();
        let mut pacer = Pacer::new(t0, config(65_534, u32::MAX - 159)).unwrap();
        let mut slots = Vec::new();
        for n in 0..4u32 {
            slots.push(pacer.poll_frame(t0 + ms(20) * n).unwrap());
        }
        let seqs: Vec<u16> = slots.iter().map(|s| s.sequence).collect();
        let stamps: Vec<u32> = slots.iter().map(|s| s.timestamp).collect();
        assert_eq!(seqs, [65_534, 65_535, 0, 1]);
        assert_eq!(stamps, [u32::MAX - 159, 0, 160, 320]);
    }

    #[test]
    fn a_late_wake_up_catches_up_in_a_bounded_burst() {
        let t0 = base();
        let mut pacer = Pacer::new(t0, config(100, 0)).unwrap();
        assert_eq!(pacer.poll_frame(t0).unwrap().index, 0);
        // Woken at 2.5 ptimes: frames 1 and 2 are due; both go out, then nothing.
        let now = t0 + ms(50);
        let burst: Vec<FrameSlot> = std::iter::from_fn(|| pacer.poll_frame(now)).collect();
        assert_eq!(burst.iter().map(|s| s.index).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(burst[0].lateness, ms(30));
        assert_eq!(burst[1].lateness, ms(10));
        assert_eq!(pacer.stats().overrun, 0);
        // Woken at 10.5 ptimes: frames 3..=10 are due; only the newest 3 go out.
        let now = t0 + ms(210);
        let burst: Vec<FrameSlot> = std::iter::from_fn(|| pacer.poll_frame(now)).collect();
        assert_eq!(
            burst.iter().map(|s| s.index).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(pacer.stats().overrun, 5);
        // Sequence numbers stay contiguous; timestamps jump over the skipped frames.
        assert_eq!(
            burst.iter().map(|s| s.sequence).collect::<Vec<_>>(),
            [103, 104, 105]
        );
        assert_eq!(
            burst.iter().map(|s| s.timestamp).collect::<Vec<_>>(),
            [1280, 1440, 1600]
        );
        assert!(burst.iter().all(|s| !s.marker));
        assert_eq!(pacer.poll_timeout(), t0 + ms(220));
        assert_eq!(pacer.stats().frames, 6);
        assert_eq!(pacer.stats().max_lateness, ms(50));
    }

    #[test]
    fn a_burst_of_one_skips_everything_but_the_newest() {
        let t0 = base();
        let mut pacer = Pacer::new(
            t0,
            PacerConfig {
                max_burst: 1,
                ..config(0, 0)
            },
        )
        .unwrap();
        let now = t0 + ms(99);
        assert_eq!(pacer.poll_frame(now).unwrap().index, 4);
        assert_eq!(pacer.poll_frame(now), None);
        assert_eq!(pacer.stats().overrun, 4);
    }

    #[test]
    fn marker_starts_each_talkspurt() {
        let t0 = base();
        let mut pacer = Pacer::new(t0, config(0, 0)).unwrap();
        let markers: Vec<bool> = (0..6u32)
            .map(|n| {
                if n == 3 {
                    pacer.start_talkspurt();
                }
                pacer.poll_frame(t0 + ms(20) * n).unwrap().marker
            })
            .collect();
        assert_eq!(markers, [true, false, false, true, false, false]);
    }

    #[test]
    fn before_t0_nothing_is_due() {
        let t0 = base() + ms(1000);
        let mut pacer = Pacer::new(t0, config(0, 0)).unwrap();
        assert_eq!(pacer.poll_frame(t0 - ms(1)), None);
        assert_eq!(pacer.poll_timeout(), t0);
    }

    #[test]
    fn random_ids_come_from_the_generator() {
        let mut ids = IdGen::new(7);
        let a = PacerConfig::random(&mut ids);
        let b = PacerConfig::random(&mut IdGen::new(7));
        assert_eq!(a, b);
        assert_ne!(a, PacerConfig::random(&mut ids));
        let pacer = Pacer::new(base(), a).unwrap();
        assert_eq!(pacer.ssrc(), a.ssrc);
        assert_eq!(pacer.samples_per_frame(), 160);
        assert_eq!(pacer.next_index(), 0);
    }

    #[test]
    fn configuration_is_validated() {
        let t0 = base();
        for ptime in [Duration::ZERO, Duration::from_micros(20_001)] {
            assert_eq!(
                Pacer::new(
                    t0,
                    PacerConfig {
                        ptime,
                        ..config(0, 0)
                    }
                )
                .unwrap_err(),
                PacerError::BadPtime {
                    ptime,
                    clock_rate: 8000
                }
            );
        }
        assert_eq!(
            Pacer::new(
                t0,
                PacerConfig {
                    max_burst: 0,
                    ..config(0, 0)
                }
            )
            .unwrap_err(),
            PacerError::BadBurst
        );
        let wideband = PacerConfig {
            clock_rate: 48_000,
            ..config(0, 0)
        };
        assert_eq!(Pacer::new(t0, wideband).unwrap().samples_per_frame(), 960);
    }

    #[test]
    fn restart_at_moves_frame_zero_only_before_the_first_frame() {
        let t0 = base();
        let mut p = Pacer::new(t0, config(7, 1000)).unwrap();
        assert!(p.restart_at(t0 + ms(3)));
        assert_eq!(p.poll_timeout(), t0 + ms(3));
        assert_eq!(p.poll_frame(t0 + ms(2)), None);
        let first = p.poll_frame(t0 + ms(3)).unwrap();
        assert_eq!((first.index, first.sequence, first.timestamp), (0, 7, 1000));
        assert_eq!(first.lateness, Duration::ZERO);
        assert_eq!(p.poll_timeout(), t0 + ms(23));
        assert!(
            !p.restart_at(t0 + ms(5)),
            "a started stream keeps its schedule"
        );
        assert_eq!(p.poll_timeout(), t0 + ms(23));
    }
}
