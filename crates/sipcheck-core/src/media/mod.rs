//! Audio: G.711 codecs, tone generation and detection, RFC 4733 telephone events, WAV files.
//!
//! All audio in this module is narrowband telephony audio: mono, 16-bit linear PCM at
//! [`SAMPLE_RATE`] (8 kHz). Time inside a stream is counted in samples from the start of the
//! stream; [`samples_to_duration`] and [`duration_to_samples`] convert at the edges.
//!
//! Levels are in dBFS, *sine-referenced* (AES17): a sine whose peak is the largest positive
//! sample value ([`FULL_SCALE`]) is 0 dBFS, so a generated tone at −30 dBFS also measures
//! −30 dBFS RMS, and the RMS of white noise is comparable with the level of a tone.

use std::time::Duration;

pub mod conference;
pub mod dtmf;
pub mod g711;
pub mod intent;
pub mod matching;
pub mod pesq;
pub mod quality;
pub mod session;
pub mod signature;
pub mod tone;
pub mod vad;
pub mod wav;

/// The sampling rate of all audio in this module, in hertz (G.711, RFC 3551 §4.5.14).
pub const SAMPLE_RATE: u32 = 8000;

/// The lowest tone sipcheck plays or expects, in hertz: lower tones hold under one cycle in a
/// 20 ms block and are not detected reliably.
pub const MIN_TONE_HZ: f64 = 50.0;

/// The highest tone sipcheck plays or expects, in hertz: 8 kHz G.711 carries up to 4 kHz in
/// theory, but codecs, PBX filters and the detector's ±3 Hz check need a margin below it.
pub const MAX_TONE_HZ: f64 = 3_900.0;

/// Why a tone frequency is refused, if it is: the one range of [`MIN_TONE_HZ`] to
/// [`MAX_TONE_HZ`] (inclusive) applies to scenarios and command-line flags alike.
#[must_use]
pub fn tone_range_error(hz: f64) -> Option<String> {
    if hz.is_nan() || hz < MIN_TONE_HZ {
        Some(format!(
            "{hz} Hz is below {MIN_TONE_HZ} Hz: too low to detect reliably (tones are {MIN_TONE_HZ}–{MAX_TONE_HZ} Hz)"
        ))
    } else if hz > MAX_TONE_HZ {
        Some(format!(
            "{hz} Hz is above {MAX_TONE_HZ} Hz: too close to the 4 kHz limit of 8 kHz G.711 (tones are {MIN_TONE_HZ}–{MAX_TONE_HZ} Hz)"
        ))
    } else {
        None
    }
}

/// The peak amplitude of a 0 dBFS sine: the largest positive 16-bit sample.
pub const FULL_SCALE: f64 = i16::MAX as f64;

/// The number of samples (at [`SAMPLE_RATE`]) in `duration`, rounded to the nearest sample.
#[must_use]
pub fn duration_to_samples(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    let samples = (nanos * u128::from(SAMPLE_RATE) + 500_000_000) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// The duration of `samples` samples at [`SAMPLE_RATE`].
#[must_use]
pub fn samples_to_duration(samples: u64) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(SAMPLE_RATE);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The sine-referenced level in dBFS of a mean power (mean of the squared samples).
///
/// Returns negative infinity for zero power (digital silence).
#[must_use]
pub fn power_to_dbfs(mean_square: f64) -> f64 {
    let reference = FULL_SCALE * FULL_SCALE / 2.0;
    if mean_square <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (mean_square / reference).log10()
    }
}

/// The RMS level in dBFS (sine-referenced) of `samples`; negative infinity for an empty or
/// all-zero slice.
#[must_use]
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    power_to_dbfs(sum / samples.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_sample_duration_conversions_round_trip() {
        assert_eq!(duration_to_samples(Duration::from_millis(20)), 160);
        assert_eq!(duration_to_samples(Duration::from_micros(62)), 0);
        assert_eq!(duration_to_samples(Duration::from_micros(63)), 1);
        assert_eq!(samples_to_duration(160), Duration::from_millis(20));
        assert_eq!(samples_to_duration(8000), Duration::from_secs(1));
    }

    #[test]
    fn one_tone_range_holds_its_ends_and_refuses_outside() {
        assert_eq!(tone_range_error(50.0), None);
        assert_eq!(tone_range_error(3_900.0), None);
        assert_eq!(tone_range_error(1_000.0), None);
        assert!(tone_range_error(49.9).unwrap().contains("below 50 Hz"));
        assert!(tone_range_error(3_900.5).unwrap().contains("above 3900 Hz"));
        assert!(tone_range_error(4_000.0).unwrap().contains("50–3900 Hz"));
        assert!(tone_range_error(f64::NAN).is_some());
    }

    #[test]
    fn media_full_scale_sine_is_zero_dbfs() {
        let sine: Vec<i16> = (0..8000)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0;
                (FULL_SCALE * phase.sin()).round() as i16
            })
            .collect();
        assert!(rms_dbfs(&sine).abs() < 0.01, "{}", rms_dbfs(&sine));
        assert_eq!(rms_dbfs(&[0; 160]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
    }
}
