//! Gaps in a tone once it was heard: dropouts that "tone detected" alone would hide.
//!
//! After a single tone's onset, each analysis block either still matches it or does not. A
//! run of blocks that do not match, followed by one that matches again, is a *gap*. Its length
//! is measured finer than a block from the blocks' energy: a block that is partly tone and
//! partly silence does not match (a tone cut in the middle of a block fits badly), and the
//! silent share of it is `1 − power / reference`, the reference being the power of the last
//! matching block. A block that is all tone but fails for another reason (noise) adds nothing.
//! A gap is thus timed to well within a block, whatever its phase against the block grid.
//!
//! A tone that stops and never comes back has no gap (it ended). While the stream is paused
//! (the call is on hold) no gap is tracked; after the pause, tracking restarts at the tone's
//! next matching block.

use super::*;

/// The shortest gap counted: 40 ms (two 20 ms frames).
pub const MIN_GAP: Duration = Duration::from_millis(40);

/// A gap this long or longer in an expected tone fails the call, unless the scenario sets
/// its own limit (`max_gap`).
pub const DEFAULT_MAX_GAP: Duration = Duration::from_millis(100);

/// Gaps kept per watch at most (each is counted beyond that, and the longest is kept).
const GAPS_KEPT: usize = 64;

/// A dropout in a tone after its onset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Where it starts, in samples from the start of the stream.
    pub start_sample: u64,
    /// How long it lasts, in samples.
    pub samples: u64,
}

impl Gap {
    /// Its start, as time from the start of the stream.
    #[must_use]
    pub fn start(&self) -> Duration {
        samples_to_duration(self.start_sample)
    }

    /// Its length.
    #[must_use]
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples)
    }
}

/// A gap being measured.
#[derive(Debug, Clone, Copy)]
struct Open {
    start_sample: f64,
    silent_samples: f64,
}

/// The gaps of one watch (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(super) struct GapTracker {
    /// The power of the last matching block; `None` until the tone is heard (again).
    reference: Option<f64>,
    open: Option<Open>,
    paused: bool,
    gaps: Vec<Gap>,
    /// Gaps counted, those not kept included.
    count: u64,
}

impl GapTracker {
    pub(super) fn on_block(
        &mut self,
        block: u64,
        block_samples: u64,
        block_power: f64,
        matched: bool,
    ) {
        if self.paused {
            return;
        }
        if matched {
            if let Some(open) = self.open.take() {
                self.close(open);
            }
            self.reference = Some(block_power);
            return;
        }
        let Some(reference) = self.reference.filter(|r| *r > 0.0) else {
            return;
        };
        let n = block_samples as f64;
        let silent = (1.0 - block_power / reference).clamp(0.0, 1.0);
        let open = self.open.get_or_insert(Open {
            // The silent share of the first block is at its end.
            start_sample: block as f64 * n + (1.0 - silent) * n,
            silent_samples: 0.0,
        });
        open.silent_samples += silent * n;
    }

    fn close(&mut self, open: Open) {
        let gap = Gap {
            start_sample: open.start_sample.round() as u64,
            samples: open.silent_samples.round() as u64,
        };
        if gap.samples < duration_to_samples(MIN_GAP) {
            return;
        }
        self.count += 1;
        if self.gaps.len() < GAPS_KEPT {
            self.gaps.push(gap);
        } else if let Some(shortest) = self.gaps.iter_mut().min_by_key(|g| g.samples) {
            if gap.samples > shortest.samples {
                *shortest = gap;
            }
        }
    }

    /// Stop (a hold: the open gap is dropped) or restart tracking.
    pub(super) fn set_paused(&mut self, paused: bool) {
        if paused {
            self.open = None;
            self.reference = None;
        }
        self.paused = paused;
    }

    pub(super) fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;
    use crate::media::tone::tests::*;

    /// 440 Hz at −20 dBFS for `total`, through G.711, with the samples of each of `holes`
    /// (start, length) zeroed: a dropout in the middle of the tone.
    fn tone_with_holes(total: Duration, holes: &[(Duration, Duration)]) -> Vec<i16> {
        let mut samples = render(vec![tone(440.0, -20.0, total)]);
        for &(start, len) in holes {
            let from = duration_to_samples(start) as usize;
            let to = (from + duration_to_samples(len) as usize).min(samples.len());
            samples[from..to].fill(0);
        }
        let codec = Codec::Pcmu;
        let mut encoded = vec![0; samples.len()];
        let n = codec.encode(&samples, &mut encoded).unwrap();
        let mut decoded = vec![0; n];
        codec.decode(&encoded[..n], &mut decoded).unwrap();
        decoded
    }

    fn gaps_of(samples: &[i16]) -> (Vec<Gap>, u64) {
        let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
        let id = d.watch(ToneQuery::single(440.0).unwrap()).unwrap();
        d.push(samples);
        assert!(d.is_complete(id), "the tone was not heard at all");
        let (gaps, count) = d.gaps(id);
        (gaps.to_vec(), count)
    }

    fn assert_within(actual: Duration, expected: Duration, tolerance: Duration) {
        assert!(
            actual.abs_diff(expected) <= tolerance,
            "{actual:?} is not {expected:?} ± {tolerance:?}"
        );
    }

    #[test]
    fn a_200_ms_dropout_is_one_gap_timed_within_one_frame_at_any_phase() {
        // The dropout starts on the block grid and at several phases off it.
        for offset_ms in [0, 3, 7, 10, 13, 19] {
            let start = ms(1000 + offset_ms);
            let samples = tone_with_holes(ms(3000), &[(start, ms(200))]);
            let (gaps, count) = gaps_of(&samples);
            assert_eq!(count, 1, "offset {offset_ms} ms: {gaps:?}");
            assert_within(gaps[0].duration(), ms(200), ms(20));
            assert_within(gaps[0].start(), start, ms(20));
        }
    }

    #[test]
    fn a_30_ms_dropout_is_not_a_gap_and_a_60_ms_one_is() {
        for offset_ms in [0, 5, 10, 15] {
            let (gaps, count) = gaps_of(&tone_with_holes(
                ms(2000),
                &[(ms(1000 + offset_ms), ms(30))],
            ));
            assert_eq!(count, 0, "offset {offset_ms} ms: {gaps:?}");
            let (gaps, count) = gaps_of(&tone_with_holes(
                ms(2000),
                &[(ms(1000 + offset_ms), ms(60))],
            ));
            assert_eq!(count, 1, "offset {offset_ms} ms: {gaps:?}");
            assert_within(gaps[0].duration(), ms(60), ms(20));
        }
    }

    #[test]
    fn a_tone_that_ends_has_no_gap() {
        let samples = render(vec![tone(440.0, -20.0, ms(1000)), silence(ms(2000))]);
        assert_eq!(gaps_of(&samples).1, 0);
    }

    #[test]
    fn random_loss_of_ten_percent_makes_only_the_gaps_of_consecutive_lost_frames() {
        // Lost frames are played as silence (the jitter buffer conceals nothing): a single
        // lost 20 ms frame is under MIN_GAP and not counted; two or more in a row are a gap
        // (the listener hears it), and none reaches 100 ms unless five in a row were lost.
        let frames = 1500; // 30 s
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let lost: Vec<bool> = (0..frames)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Never the first second: the onset needs the tone.
                i >= 50 && state.is_multiple_of(10)
            })
            .collect();
        let holes: Vec<_> = lost
            .iter()
            .enumerate()
            .filter(|(_, l)| **l)
            .map(|(i, _)| (ms(20 * i as u64), ms(20)))
            .collect();
        let (gaps, count) = gaps_of(&tone_with_holes(ms(20 * frames as u64), &holes));
        // Runs of at least two lost frames, not at the very end (no tone after it).
        let mut runs = Vec::new();
        let mut run = 0;
        for &l in &lost {
            if l {
                run += 1;
            } else {
                if run >= 2 {
                    runs.push(run);
                }
                run = 0;
            }
        }
        assert!(!runs.is_empty(), "the pattern has no consecutive losses");
        assert_eq!(count, runs.len() as u64, "{gaps:?} vs runs {runs:?}");
        for (gap, run) in gaps.iter().zip(&runs) {
            assert_within(gap.duration(), ms(20 * run), ms(5));
        }
        assert!(gaps.iter().all(|g| g.duration() < ms(100)) == runs.iter().all(|r| *r < 5));
    }

    #[test]
    fn no_gap_is_tracked_while_paused_and_tracking_restarts_with_the_tone() {
        let samples = tone_with_holes(ms(4000), &[(ms(1000), ms(1000)), (ms(3000), ms(200))]);
        let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
        let id = d.watch(ToneQuery::single(440.0).unwrap()).unwrap();
        let at = |t: u64| duration_to_samples(ms(t)) as usize;
        // On hold from 1.1 s to 1.5 s: the silence from 1 s to 2 s is the hold's.
        d.push(&samples[..at(1100)]);
        d.pause_gaps(true);
        d.push(&samples[at(1100)..at(1500)]);
        d.pause_gaps(false);
        d.push(&samples[at(1500)..]);
        let (gaps, count) = d.gaps(id);
        assert_eq!(count, 1, "{gaps:?}");
        assert_within(gaps[0].start(), ms(3000), ms(20));
        assert_within(gaps[0].duration(), ms(200), ms(20));
    }

    #[test]
    fn a_watch_added_while_paused_starts_paused() {
        // The tone is heard before the hold, then silent (the hold) until 2 s, then back.
        let samples = tone_with_holes(ms(3000), &[(ms(1000), ms(1000))]);
        let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
        let at = |t: u64| duration_to_samples(ms(t)) as usize;
        d.push(&samples[..at(500)]);
        d.pause_gaps(true);
        let id = d.watch(ToneQuery::single(440.0).unwrap()).unwrap();
        d.push(&samples[at(500)..at(900)]);
        d.push(&samples[at(900)..at(1900)]);
        d.pause_gaps(false);
        d.push(&samples[at(1900)..]);
        assert!(d.is_complete(id));
        assert_eq!(d.gaps(id).1, 0, "{:?}", d.gaps(id).0);
    }
}
