//! Prompt matching: is a known recording (a prompt, an announcement) in the received audio?
//!
//! [`similarity`] slides the reference over the received audio and returns the best
//! *normalised cross-correlation* over every lag at which the reference fits whole:
//!
//! ```text
//! ncc(l) = Σ r[n]·x[n+l] / ( ‖r‖ · ‖x[l .. l+N]‖ )
//! ```
//!
//! 1.0 is the same waveform at any level (a gain change cancels out); G.711 round trips (μ-law
//! or A-law, about 38 dB SNR) keep speech above 0.99; another prompt, speech at another place
//! of the same recording, a tone or noise stay far below (see the tests). Polarity is ignored
//! (`|ncc|`): a path that inverts the waveform still carries the prompt. A window of the
//! received audio quieter than [`QUIET_DBFS`] scores 0, so silence never matches.
//!
//! Cost: the numerators of every lag come from one real FFT cross-correlation (`realfft`);
//! the window norms from a running sum. Ten seconds received against a three-second prompt
//! take a few milliseconds: the comparison runs once per step, off the call's loop
//! ([`crate::ua::work::Work::Match`]).

use std::fmt;

use realfft::RealFftPlanner;

use super::FULL_SCALE;

/// A received window quieter than this (RMS, dBFS) scores 0: silence matches nothing.
pub const QUIET_DBFS: f64 = -55.0;

/// The shortest reference compared (0.5 s at 8 kHz): shorter ones match too easily.
pub const MIN_REFERENCE_SAMPLES: usize = 4000;

/// The longest reference compared (60 s at 8 kHz), which bounds the step's recording.
pub const MAX_REFERENCE_SAMPLES: usize = 60 * 8000;

/// The longest `within` of `expect: { matches }` (60 s): the step records this long plus the
/// reference, 16 bits a sample, so this bounds each call's recording at 2 MB.
pub const MAX_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// The best match of a reference in received audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The normalised cross-correlation at the best lag, 0.0 to 1.0.
    pub similarity: f64,
    /// Where in the received audio the reference begins at that lag, in samples.
    pub offset: usize,
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "similarity {:.2} (best at {:.2} s)",
            (self.similarity * 100.0).floor() / 100.0,
            self.offset as f64 / f64::from(super::SAMPLE_RATE)
        )
    }
}

/// Why audio could not be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    /// Less audio was received than the reference lasts.
    #[error("received {received:.1} s of audio, shorter than the {reference:.1} s reference")]
    TooShort {
        /// Seconds received.
        received: f32,
        /// Seconds of the reference.
        reference: f32,
    },
    /// The reference is (nearly) digital silence: nothing to look for.
    #[error("the reference is silent")]
    SilentReference,
}

/// The best normalised cross-correlation of `reference` in `received` (8 kHz mono), over
/// every lag at which the reference fits whole in the received audio.
///
/// # Errors
/// [`MatchError`] when less was received than the reference lasts, or the reference is silent.
pub fn similarity(reference: &[i16], received: &[i16]) -> Result<Match, MatchError> {
    let n = reference.len();
    let m = received.len();
    if n == 0 || m < n {
        return Err(MatchError::TooShort {
            received: m as f32 / 8000.0,
            reference: n as f32 / 8000.0,
        });
    }
    let r: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    let mean = r.iter().sum::<f64>() / n as f64;
    let r: Vec<f64> = r.iter().map(|v| v - mean).collect();
    let r_norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
    if r_norm < quiet_norm(n) {
        return Err(MatchError::SilentReference);
    }
    let x: Vec<f64> = received.iter().map(|&s| f64::from(s)).collect();

    // Σ r[n]·x[n+l] for every lag l at once: IFFT(X · conj(R)), zero-padded past m + n so
    // the circular correlation does not wrap into the lags used.
    let size = (m + n).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let mut buf = forward.make_input_vec();
    buf[..n].copy_from_slice(&r);
    let mut r_spec = forward.make_output_vec();
    forward
        .process(&mut buf, &mut r_spec)
        .expect("buffers made by the plan");
    let mut buf = forward.make_input_vec();
    buf[..m].copy_from_slice(&x);
    let mut spec = forward.make_output_vec();
    forward
        .process(&mut buf, &mut spec)
        .expect("buffers made by the plan");
    for (s, r) in spec.iter_mut().zip(&r_spec) {
        *s *= r.conj();
    }
    let mut corr = inverse.make_output_vec();
    inverse
        .process(&mut spec, &mut corr)
        .expect("buffers made by the plan");
    let scale = 1.0 / size as f64;

    // ‖x[l .. l+n]‖ from running sums of x and x² (the window's mean removed, as the
    // reference's was).
    let mut sum = x[..n].iter().sum::<f64>();
    let mut sum2 = x[..n].iter().map(|v| v * v).sum::<f64>();
    let quiet = quiet_norm(n);
    let mut best = Match {
        similarity: 0.0,
        offset: 0,
    };
    for l in 0..=(m - n) {
        if l > 0 {
            let (out, inn) = (x[l - 1], x[l + n - 1]);
            sum += inn - out;
            sum2 += inn * inn - out * out;
        }
        let energy = (sum2 - sum * sum / n as f64).max(0.0);
        let norm = energy.sqrt();
        if norm < quiet {
            continue;
        }
        let ncc = (corr[l] * scale / (r_norm * norm)).abs().min(1.0);
        if ncc > best.similarity {
            best = Match {
                similarity: ncc,
                offset: l,
            };
        }
    }
    Ok(best)
}

/// The norm of `n` samples at [`QUIET_DBFS`] RMS (sine-referenced).
fn quiet_norm(n: usize) -> f64 {
    let rms = FULL_SCALE / std::f64::consts::SQRT_2 * 10f64.powf(QUIET_DBFS / 20.0);
    rms * (n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;

    fn speech() -> Vec<i16> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/speech-8k.wav"
        ))
        .unwrap();
        crate::media::wav::decode(&bytes).unwrap().to_vec()
    }

    /// The first sentence of the fixture (0.3–3.3 s): the prompt.
    fn prompt() -> Vec<i16> {
        speech()[2400..26400].to_vec()
    }

    fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
        samples
            .iter()
            .map(|&s| codec.decode_sample(codec.encode_sample(s)))
            .collect()
    }

    /// `audio` after `delay` samples of silence, then `tail` more.
    fn delayed(audio: &[i16], delay: usize, tail: usize) -> Vec<i16> {
        let mut out = vec![0; delay];
        out.extend_from_slice(audio);
        out.extend(std::iter::repeat_n(0, tail));
        out
    }

    fn gain(audio: &[i16], db: f64) -> Vec<i16> {
        let g = 10f64.powf(db / 20.0);
        audio.iter().map(|&s| (f64::from(s) * g) as i16).collect()
    }

    #[test]
    fn the_prompt_delayed_attenuated_and_through_g711_matches_at_its_offset() {
        let prompt = prompt();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let received = through(codec, &gain(&delayed(&prompt, 12_345, 8000), -18.0));
            let found = similarity(&prompt, &received).unwrap();
            assert!(found.similarity > 0.97, "{codec}: {found}");
            assert_eq!(found.offset, 12_345, "{codec}");
        }
    }

    #[test]
    fn an_inverted_louder_prompt_still_matches() {
        let prompt = prompt();
        let received: Vec<i16> = gain(&delayed(&prompt, 800, 800), 3.0)
            .iter()
            .map(|&s| s.saturating_neg())
            .collect();
        assert!(similarity(&prompt, &received).unwrap().similarity > 0.97);
    }

    #[test]
    fn another_prompt_does_not_match() {
        let speech = speech();
        let prompt = prompt();
        // The rest of the recording: other sentences by the same voice.
        let other = through(Codec::Pcmu, &speech[30_000..]);
        let found = similarity(&prompt, &other).unwrap();
        assert!(found.similarity < 0.5, "{found}");
    }

    #[test]
    fn a_tone_noise_and_silence_do_not_match() {
        let prompt = prompt();
        let tone: Vec<i16> = (0..60_000)
            .map(|i| {
                (8000.0 * (f64::from(i) * 2.0 * std::f64::consts::PI * 1000.0 / 8000.0).sin())
                    as i16
            })
            .collect();
        assert!(similarity(&prompt, &tone).unwrap().similarity < 0.3);
        let mut seed = 7u64;
        let noise: Vec<i16> = (0..60_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                ((seed >> 48) as i16) / 8
            })
            .collect();
        assert!(similarity(&prompt, &noise).unwrap().similarity < 0.3);
        let silence = vec![0i16; 60_000];
        assert_eq!(similarity(&prompt, &silence).unwrap().similarity, 0.0);
        // G.711 silence is not exactly zero: still nothing.
        let near = through(Codec::Pcmu, &vec![3i16; 60_000]);
        assert_eq!(similarity(&prompt, &near).unwrap().similarity, 0.0);
    }

    #[test]
    fn a_truncated_prompt_scores_lower_than_the_whole() {
        let prompt = prompt();
        let mut cut = delayed(&prompt, 4000, 4000);
        // The second half lost (the IVR moved on, the call was cut).
        let half = 4000 + prompt.len() / 2;
        cut[half..].fill(0);
        let found = similarity(&prompt, &cut).unwrap();
        assert!(found.similarity < 0.8, "{found}");
    }

    #[test]
    fn too_little_audio_or_a_silent_reference_is_an_error() {
        let prompt = prompt();
        assert!(matches!(
            similarity(&prompt, &prompt[..1000]),
            Err(MatchError::TooShort { .. })
        ));
        assert_eq!(
            similarity(&[0; 8000], &prompt),
            Err(MatchError::SilentReference)
        );
    }
}
