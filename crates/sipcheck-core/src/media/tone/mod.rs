//! Tone generation (single and dual tones, silence, playlists) and Goertzel tone detection.
//!
//! The tone model and its checks are here; the generator is in `tone/generate.rs`, playlists
//! in `tone/playlist.rs` and the detector in `tone/detect.rs`, each with its tests.
//!
//! # Levels
//! Levels are sine-referenced dBFS (see [`crate::media`]): a [`Tone`] at −30 dBFS has each
//! of its components at −30 dBFS, i.e. a peak amplitude of `32767 · 10^(−30/20)`. A dual tone
//! at −30 dBFS therefore measures −27 dBFS RMS in total (two equal, uncorrelated components).
//!
//! # Detection
//! [`ToneDetector`] cuts the stream into blocks of [`DetectorConfig::block_samples`] samples
//! (default 160 = 20 ms) and runs one Goertzel filter per watched frequency over each block.
//! For every block it knows the block's mean power, and for each frequency `F` the power of
//! the component at `F` and the phase of the filter output. A block *matches* a
//! [`ToneQuery`] when
//!
//! * every component is at least [`ToneQuery::min_level_dbfs`],
//! * the components together stand at least [`ToneQuery::min_snr_db`] above the rest of the
//!   block's power ("the rest" is the block power minus the components' power: noise, other
//!   tones, distortion),
//! * for a dual tone, neither component is more than [`MAX_TWIST_DB`] below the other, and
//! * every component's measured frequency is within [`ToneQuery::tolerance_hz`] of `F`.
//!
//! A query is detected when [`ToneQuery::min_duration`] worth of consecutive blocks match
//! (rounded *up* to whole blocks: a tone that lasts exactly that long but does not start on a
//! block boundary spans one block fewer, so ask for at least one block less than the tone
//! lasts). The onset reported is the first sample of the first matching block, so it is
//! accurate to within one block.
//!
//! ## Frequency tolerance
//! A block of N samples cannot tell 440 Hz from 445 Hz by magnitude: the Goertzel main lobe
//! is `2·8000/N` Hz wide (100 Hz for 20 ms). Instead the detector measures the frequency from
//! the *phase*: a component at `F + δ` advances the filter output's phase by
//! `2π(F + δ)N/8000` from one block to the next, where a component exactly at `F` advances it
//! by `2πFN/8000`; the difference gives `δ`. At 20 ms blocks and 10 dB SNR the estimate is
//! good to about ±0.3 Hz, so a tolerance of 2 Hz separates 440 Hz from 445 Hz cleanly. The
//! estimate is unambiguous for `|δ| < 8000/(2N)` (±25 Hz at 20 ms); a component further off
//! than that is at least half a bin away and keeps less than 41 % of its power in the bin, so
//! with `min_snr_db ≥ 0` it cannot match. Because the phase needs two blocks, a query with a
//! frequency check is only detected after at least two consecutive matching blocks. A
//! tolerance of `8000/(2N)` Hz or more switches the phase check off, leaving the main lobe as
//! the tolerance.
//!
//! ## Sequences
//! [`ToneDetector::watch_sequence`] watches for tones in order: step `i + 1` is only looked
//! for in blocks after the run that satisfied step `i` has ended, so a signature such as
//! 697 Hz → 1209 Hz → 440 Hz is verified in that order and fails when the tones come in
//! another order. [`ToneDetector::watch`] is the one-step case.

use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::{duration_to_samples, power_to_dbfs, samples_to_duration, FULL_SCALE, SAMPLE_RATE};

mod detect;
mod gaps;
mod generate;
mod playlist;

pub use detect::{Detection, DetectorConfig, ToneDetector, ToneQuery, WatchId, MAX_TWIST_DB};
pub use gaps::{Gap, DEFAULT_MAX_GAP, MIN_GAP};
pub use generate::{Silence, ToneGenerator};
pub use playlist::{Playlist, PlaylistItem};

/// An invalid tone, query or detector configuration.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum ToneError {
    /// A frequency is not strictly between 0 Hz and the Nyquist frequency (4000 Hz).
    #[error("frequency {hz} Hz is outside 0 < f < 4000 Hz")]
    BadFrequency {
        /// The rejected frequency in hertz.
        hz: f64,
    },
    /// A level is not finite or is above 0 dBFS.
    #[error("level {dbfs} dBFS is not a finite level at or below 0 dBFS")]
    BadLevel {
        /// The rejected level.
        dbfs: f64,
    },
    /// The detector's block length is outside 32..=8000 samples.
    #[error("detector block of {samples} samples is outside 32..=8000")]
    BadBlock {
        /// The rejected block length in samples.
        samples: usize,
    },
    /// A frequency tolerance is not a finite positive number of hertz.
    #[error("frequency tolerance {hz} Hz is not finite and positive")]
    BadTolerance {
        /// The rejected tolerance in hertz.
        hz: f64,
    },
    /// A minimum SNR is not finite.
    #[error("minimum SNR {db} dB is not finite")]
    BadSnr {
        /// The rejected SNR in dB.
        db: f64,
    },
    /// A tone sequence has no steps.
    #[error("a tone sequence needs at least one step")]
    EmptySequence,
}

fn check_frequency(hz: f64) -> Result<f64, ToneError> {
    if hz.is_finite() && hz > 0.0 && hz < f64::from(SAMPLE_RATE) / 2.0 {
        Ok(hz)
    } else {
        Err(ToneError::BadFrequency { hz })
    }
}

fn check_level(dbfs: f64) -> Result<f64, ToneError> {
    if dbfs.is_finite() && dbfs <= 0.0 {
        Ok(dbfs)
    } else {
        Err(ToneError::BadLevel { dbfs })
    }
}

/// One or two sine components at a common level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    freqs: [f64; 2],
    count: usize,
    level_dbfs: f64,
}

impl Tone {
    /// A single sine at `hz` hertz and `level_dbfs` dBFS.
    ///
    /// # Errors
    /// [`ToneError::BadFrequency`] unless `0 < hz < 4000`; [`ToneError::BadLevel`] unless the
    /// level is finite and at most 0 dBFS.
    pub fn single(hz: f64, level_dbfs: f64) -> Result<Self, ToneError> {
        Ok(Self {
            freqs: [check_frequency(hz)?, 0.0],
            count: 1,
            level_dbfs: check_level(level_dbfs)?,
        })
    }

    /// A dual tone (as DTMF): two sines, *each* at `level_dbfs`. Their sum may clip at levels
    /// above −6 dBFS; clipped samples saturate.
    ///
    /// # Errors
    /// As [`Tone::single`], for either frequency.
    pub fn dual(low_hz: f64, high_hz: f64, level_dbfs: f64) -> Result<Self, ToneError> {
        Ok(Self {
            freqs: [check_frequency(low_hz)?, check_frequency(high_hz)?],
            count: 2,
            level_dbfs: check_level(level_dbfs)?,
        })
    }

    /// The component frequencies in hertz (one or two).
    #[must_use]
    pub fn frequencies(&self) -> &[f64] {
        &self.freqs[..self.count]
    }

    /// The level of each component in dBFS.
    #[must_use]
    pub fn level_dbfs(&self) -> f64 {
        self.level_dbfs
    }
}

/// Something that produces 8 kHz 16-bit audio frame by frame.
pub trait AudioSource {
    /// Fills `out` with the next `out.len()` samples of the stream.
    fn fill(&mut self, out: &mut [i16]);
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(super) fn tone(hz: f64, dbfs: f64, duration: Duration) -> PlaylistItem {
        PlaylistItem::Tone {
            tone: Tone::single(hz, dbfs).unwrap(),
            duration,
        }
    }

    pub(super) fn silence(duration: Duration) -> PlaylistItem {
        PlaylistItem::Silence { duration }
    }

    pub(super) fn render(items: Vec<PlaylistItem>) -> Vec<i16> {
        let mut playlist = Playlist::new(items);
        let mut out = vec![0; usize::try_from(playlist.total_samples()).unwrap()];
        playlist.fill(&mut out);
        out
    }

    #[test]
    fn tone_rejects_bad_frequencies_and_levels() {
        assert_eq!(
            Tone::single(4000.0, -10.0),
            Err(ToneError::BadFrequency { hz: 4000.0 })
        );
        assert!(Tone::single(0.0, -10.0).is_err());
        assert!(Tone::single(f64::NAN, -10.0).is_err());
        assert_eq!(
            Tone::dual(697.0, 1209.0, 1.0),
            Err(ToneError::BadLevel { dbfs: 1.0 })
        );
        assert!(Tone::single(440.0, f64::NEG_INFINITY).is_err());
        assert!(ToneQuery::dual(697.0, -1.0).is_err());
    }
}
