//! A perceptual speech-quality score: ITU-T P.862 (PESQ), narrowband, on 8 kHz audio.
//!
//! [`score`] compares the audio a call received with the reference it should have carried
//! (the speech the far end played) and returns the raw P.862 score (−0.5 to 4.5) with its
//! P.862.1 mapping to MOS-LQO (1.02 to 4.55). The model is the `pesq` crate's, which passes
//! the P.862 Annex A conformance set; it aligns the two signals in time and level itself, so
//! the received audio may start late and run longer than the reference.
//!
//! Scoring is CPU-heavy next to everything else a call does (tens of milliseconds for ten
//! seconds of speech in a release build): it runs once per step, when the step ends.

use std::fmt;

/// The longest reference scored, in samples (30 s at 8 kHz): the recording kept for a step
/// is the reference's length plus [`RECORD_SLACK_SAMPLES`], so this bounds memory and time.
pub const MAX_REFERENCE_SAMPLES: usize = 30 * 8000;

/// The shortest reference scored, in samples (1 s at 8 kHz); P.862 itself asks for 8 s to
/// 20 s of speech with pauses.
pub const MIN_REFERENCE_SAMPLES: usize = 8000;

/// How much more than the reference a step records (1 s at 8 kHz): room for the path's delay.
pub const RECORD_SLACK_SAMPLES: usize = 8000;

/// The lowest and highest `min` a scenario may ask (raw P.862 scale).
pub const MIN_RANGE: (f64, f64) = (1.0, 4.5);

/// One PESQ score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PesqScore {
    /// The raw P.862 score (−0.5 to 4.5): what `min` is compared with.
    pub raw: f64,
    /// The same mapped to MOS-LQO by ITU-T P.862.1 (1.02 to 4.55).
    pub mos_lqo: f64,
}

impl fmt::Display for PesqScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PESQ {:.2} (MOS-LQO {:.2})",
            round2(self.raw),
            round2(self.mos_lqo)
        )
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Why audio could not be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PesqError {
    /// The reference or the received audio is too short for the model.
    #[error("too short to score ({0})")]
    TooShort(String),
    /// The model found no speech in the reference or in the received audio.
    #[error("no speech found to score ({0})")]
    NoSpeech(String),
    /// The received audio is silent (under the silence level throughout): the model would
    /// score digital silence at the top of its scale, so it is not asked.
    #[error("the received audio is silent ({0:.0} dBFS)")]
    Silent(f64),
}

/// Scores `received` against `reference`, both 8 kHz mono 16-bit PCM (narrowband P.862).
///
/// # Errors
/// [`PesqError`] when either signal is too short or holds no speech the model can align.
pub fn score(reference: &[i16], received: &[i16]) -> Result<PesqScore, PesqError> {
    // The model (as measured) scores all-zero received audio 4.5 against speech: what is
    // not heard must never be scored.
    let level = super::rms_dbfs(received);
    if level < super::intent::SILENCE_DBFS {
        return Err(PesqError::Silent(level));
    }
    match pesq::pesq_8k(reference, received) {
        Ok(raw) => {
            let raw = f64::from(raw);
            Ok(PesqScore {
                raw,
                mos_lqo: f64::from(pesq::score::mos_lqo(raw)),
            })
        }
        Err(e @ pesq::PesqError::SignalTooShort { .. }) => Err(PesqError::TooShort(e.to_string())),
        Err(e) => Err(PesqError::NoSpeech(e.to_string())),
    }
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

    /// `percent` of the 20 ms frames zeroed, spread evenly (as lost packets concealed by
    /// silence are).
    fn frames_zeroed(samples: &[i16], percent: usize) -> Vec<i16> {
        let mut out = samples.to_vec();
        for (i, frame) in out.chunks_mut(160).enumerate() {
            if (i * 37) % 100 < percent {
                frame.fill(0);
            }
        }
        out
    }

    fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(samples.len());
        for frame in samples.chunks(160) {
            let mut enc = [0u8; 160];
            let n = codec.encode(frame, &mut enc).unwrap();
            let mut dec = [0i16; 160];
            let m = codec.decode(&enc[..n], &mut dec).unwrap();
            out.extend_from_slice(&dec[..m]);
        }
        out
    }

    #[test]
    fn the_reference_against_itself_scores_the_top_of_the_scale() {
        let s = speech();
        let p = score(&s, &s).unwrap();
        assert!((p.raw - 4.5).abs() < 0.01, "{p}");
        assert!(p.mos_lqo > 4.5, "{p}");
    }

    #[test]
    fn g711_scores_high_and_the_score_falls_as_frames_are_lost() {
        let s = speech();
        let pcmu = score(&s, &through(Codec::Pcmu, &s)).unwrap().raw;
        let pcma = score(&s, &through(Codec::Pcma, &s)).unwrap().raw;
        let lost5 = score(&s, &frames_zeroed(&s, 5)).unwrap().raw;
        let lost20 = score(&s, &frames_zeroed(&s, 20)).unwrap().raw;
        let mut seed = 12_345u32;
        let noise: Vec<i16> = (0..s.len())
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as u16 as i16) / 4
            })
            .collect();
        let noise = score(&s, &noise).map(|p| p.raw);
        assert!(pcmu > 3.7 && pcma > 3.7, "G.711: PCMU {pcmu}, PCMA {pcma}");
        assert!(pcmu > lost5, "PCMU {pcmu} vs 5 % lost {lost5}");
        assert!(
            lost5 > lost20 + 0.3,
            "5 % lost {lost5} vs 20 % lost {lost20}"
        );
        // Noise is either scored at the bottom or not aligned at all: never above loss.
        if let Ok(noise) = noise {
            assert!(
                noise < lost20 && noise < 1.0,
                "noise {noise}, 20 % lost {lost20}"
            );
        }
    }

    #[test]
    fn the_received_audio_may_start_late_by_whole_packets_and_run_long() {
        let s = speech();
        let mut late = vec![0i16; 160 * 8];
        late.extend(through(Codec::Pcmu, &s));
        late.extend(std::iter::repeat_n(0, 4000));
        let p = score(&s, &late).unwrap();
        assert!(p.raw > 3.7, "{p}");
    }

    #[test]
    fn silence_and_too_short_audio_are_errors_not_scores() {
        let s = speech();
        assert!(matches!(
            score(&s, &[1000; 100]),
            Err(PesqError::TooShort(_))
        ));
        let silent = vec![0i16; s.len()];
        assert!(matches!(score(&s, &silent), Err(PesqError::Silent(_))));
        let faint = vec![1i16; s.len()];
        assert!(matches!(score(&s, &faint), Err(PesqError::Silent(_))));
    }
}
