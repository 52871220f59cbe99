//! Voice activity: whether what is received is speech, a tone, noise or silence, frame by
//! frame, and when speech begins and ends.
//!
//! Each frame (a playout tick, 20 ms at 8 kHz) is measured twice:
//!
//! - its **level** (RMS, dBFS), against an absolute floor ([`MIN_SPEECH_DBFS`]) and an
//!   adaptive noise floor that follows the quietest frames at once and rises slowly
//!   ([`FLOOR_RISE_DB`] per frame), so a steady noise bed stops counting as activity;
//! - its **spectral flatness**, estimated by a 4th-order linear predictor (the covariance method,
//!   solved by Cholesky, then the residual measured over the frame): the prediction
//!   gain is the frame's energy over the predictor's error. White noise cannot be predicted
//!   (gain ≈ 0 dB, flat spectrum); a steady tone, one or two sinusoids, is predicted almost
//!   perfectly (gain ≥ [`PURE_TONE_GAIN_DB`], or ≥ [`TONE_GAIN_DB`] two frames in a row at a
//!   steady level); speech lies between, its formants giving it a few decibels to about 20.
//!
//! A frame is [`FrameClass::Speech`] when loud enough, above the noise floor by
//! [`SPEECH_OVER_FLOOR_DB`], and its gain lies in [`SPEECH_MIN_GAIN_DB`]..[`TONE_GAIN_DB`].
//! Speech **begins** with two speech frames in a row and **ends** once no speech frame came for
//! [`HANGOVER`] (600 ms): pauses between words and sentences are shorter.

use std::time::Duration;

use super::{duration_to_samples, FULL_SCALE};

/// Under this level a frame is silence whatever its shape, in dBFS.
pub const SILENCE_FLOOR_DBFS: f64 = -60.0;

/// The lowest level of a speech frame, in dBFS.
pub const MIN_SPEECH_DBFS: f64 = -50.0;

/// How far above the noise floor a speech frame is, in dB.
pub const SPEECH_OVER_FLOOR_DB: f64 = 10.0;

/// How fast the noise floor rises towards louder frames, in dB per frame (2.5 dB/s).
pub const FLOOR_RISE_DB: f64 = 0.05;

/// The lowest prediction gain of a speech frame, in dB: white noise stays under 0.5 dB.
pub const SPEECH_MIN_GAIN_DB: f64 = 1.5;

/// The prediction gain from which a frame may be a tone, in dB: two sinusoids through G.711
/// reach 20–32 dB (one: 40 and more); fewer than one speech frame in twenty passes 16.
pub const TONE_GAIN_DB: f64 = 18.0;

/// The prediction gain from which one frame alone is a tone, in dB.
pub const PURE_TONE_GAIN_DB: f64 = 30.0;

/// How steady a tone's level is from one frame to the next, in dB: a frame over
/// [`TONE_GAIN_DB`] (and under [`PURE_TONE_GAIN_DB`]) is a tone when the frame before it was
/// too and their levels are this close.
pub const TONE_STEADY_DB: f64 = 1.5;

/// How long after its last speech frame speech is over (pauses between words and sentences
/// are shorter): the end of a prompt is heard this long after its last word.
pub const HANGOVER: Duration = Duration::from_millis(600);

/// Speech frames in a row that begin speech.
const ONSET_FRAMES: u32 = 2;

/// The order of the linear predictor.
const ORDER: usize = 4;

/// What one frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Under [`SILENCE_FLOOR_DBFS`].
    Silence,
    /// Audible, but neither speech nor a tone (white or steady noise, a noise bed).
    Noise,
    /// A steady tone (one or two sinusoids).
    Tone,
    /// Speech-like.
    Speech,
}

/// A frame's two measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeasure {
    /// RMS level, dBFS (sine-referenced).
    pub level_dbfs: f64,
    /// The 4th-order linear prediction gain, dB (0 for white noise).
    pub gain_db: f64,
}

/// Measures one frame: its level and its prediction gain.
#[must_use]
pub fn measure(frame: &[i16]) -> FrameMeasure {
    let n = frame.len();
    if n <= ORDER {
        return FrameMeasure {
            level_dbfs: f64::NEG_INFINITY,
            gain_db: 0.0,
        };
    }
    let mut x = [0f32; 480];
    let n = n.min(x.len());
    let scale = 1.0 / FULL_SCALE as f32;
    for (d, s) in x.iter_mut().zip(&frame[..n]) {
        *d = f32::from(*s) * scale;
    }
    let x = &x[..n];
    let energy0 = dot(x, x);
    // Sine-referenced: a full-scale sine's mean square is 1/2.
    let level_dbfs = 10.0 * (2.0 * f64::from(energy0) / n as f64).log10();
    if energy0 <= f32::MIN_POSITIVE {
        return FrameMeasure {
            level_dbfs: f64::NEG_INFINITY,
            gain_db: 0.0,
        };
    }
    // The covariance method: φ(i, j) = Σ x[t−i]·x[t−j] over t = ORDER..n, so that one or two
    // sinusoids are predicted exactly (the autocorrelation method's window biases them).
    // The first row is summed; the others follow from it, one sample in and one out:
    // φ(i+1, j+1) = φ(i, j) + x[ORDER−1−i]·x[ORDER−1−j] − x[n−1−i]·x[n−1−j].
    let mut phi = [[0f64; ORDER + 1]; ORDER + 1];
    for j in 0..=ORDER {
        let s = dot(&x[ORDER..n], &x[ORDER - j..n - j]);
        phi[0][j] = f64::from(s);
        phi[j][0] = f64::from(s);
    }
    for i in 0..ORDER {
        for j in i..ORDER {
            let v = phi[i][j] + f64::from(x[ORDER - 1 - i] * x[ORDER - 1 - j])
                - f64::from(x[n - 1 - i] * x[n - 1 - j]);
            phi[i + 1][j + 1] = v;
            phi[j + 1][i + 1] = v;
        }
    }
    let a = solve_predictor(&phi);
    // The residual over the frame (covariance-style: edges excluded), in eight lanes.
    let energy = phi[0][0] as f32;
    let mut lanes = [0f32; 8];
    for (k, t) in (ORDER..n).enumerate() {
        let predicted = a[0] * x[t - 1] + a[1] * x[t - 2] + a[2] * x[t - 3] + a[3] * x[t - 4];
        let e = x[t] - predicted;
        lanes[k % 8] += e * e;
    }
    let residual: f32 = lanes.iter().sum();
    let gain_db = if energy <= f32::MIN_POSITIVE {
        0.0
    } else {
        10.0 * f64::from(energy / residual.max(energy * 1e-9)).log10()
    };
    FrameMeasure {
        level_dbfs,
        gain_db,
    }
}

/// Σ a·b in eight independent lanes (so that the compiler can vectorise it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, ra) = (a.chunks_exact(8), a.chunks_exact(8).remainder());
    let cb = b.chunks_exact(8);
    let rb = cb.remainder();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Solves the covariance normal equations Φ·a = ψ (Φ = φ(1..=4, 1..=4), ψ = φ(1..=4, 0)) by
/// Cholesky, with a little diagonal loading so that a singular Φ (silence, one pure sinusoid)
/// still has a solution.
fn solve_predictor(phi: &[[f64; ORDER + 1]; ORDER + 1]) -> [f32; ORDER] {
    let load = phi[0][0] * 1e-7 + f64::MIN_POSITIVE;
    let mut l = [[0f64; ORDER]; ORDER];
    for i in 0..ORDER {
        for j in 0..=i {
            let mut sum = phi[i + 1][j + 1];
            if i == j {
                sum += load;
            }
            sum -= (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if sum <= 0.0 {
                    return [0.0; ORDER];
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    let mut y = [0f64; ORDER];
    for i in 0..ORDER {
        let mut sum = phi[i + 1][0];
        for k in 0..i {
            sum -= l[i][k] * y[k];
        }
        y[i] = sum / l[i][i];
    }
    let mut a = [0f32; ORDER];
    let mut z = [0f64; ORDER];
    for i in (0..ORDER).rev() {
        let mut sum = y[i];
        for k in i + 1..ORDER {
            sum -= l[k][i] * z[k];
        }
        z[i] = sum / l[i][i];
        a[i] = z[i] as f32;
    }
    a
}

/// A voice-activity detector over one stream's received audio (see the module documentation).
#[derive(Debug, Clone)]
pub struct Vad {
    floor_dbfs: Option<f64>,
    samples: u64,
    speech_run: u32,
    run_start: u64,
    speaking: bool,
    onset: Option<u64>,
    /// The sample after the last speech frame.
    last_speech_end: u64,
    ended: Option<u64>,
    quiet_run: u64,
    audible: u64,
    hangover: u64,
    last_class: Option<FrameClass>,
    last_measure: Option<FrameMeasure>,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    /// A detector that has heard nothing.
    #[must_use]
    pub fn new() -> Self {
        Vad {
            floor_dbfs: None,
            samples: 0,
            speech_run: 0,
            run_start: 0,
            speaking: false,
            onset: None,
            last_speech_end: 0,
            ended: None,
            quiet_run: 0,
            audible: 0,
            hangover: duration_to_samples(HANGOVER),
            last_class: None,
            last_measure: None,
        }
    }

    /// Classifies the next frame of received audio and updates the speech state.
    pub fn push(&mut self, frame: &[i16]) -> FrameClass {
        let m = measure(frame);
        let class = self.classify(m);
        let start = self.samples;
        self.samples += frame.len() as u64;
        if class == FrameClass::Speech {
            if self.speech_run == 0 {
                self.run_start = start;
            }
            self.speech_run += 1;
            if self.speaking || self.speech_run >= ONSET_FRAMES {
                if !self.speaking {
                    self.speaking = true;
                    self.onset = Some(self.run_start);
                }
                self.last_speech_end = self.samples;
            }
        } else {
            self.speech_run = 0;
        }
        if self.speaking && self.samples - self.last_speech_end >= self.hangover {
            self.speaking = false;
            self.ended = Some(self.last_speech_end);
            self.quiet_run = self.samples - self.last_speech_end;
        } else if self.speaking || class == FrameClass::Tone {
            self.quiet_run = 0;
        } else {
            self.quiet_run += frame.len() as u64;
        }
        if matches!(class, FrameClass::Speech | FrameClass::Tone) {
            self.audible += frame.len() as u64;
        }
        self.last_class = Some(class);
        class
    }

    fn classify(&mut self, m: FrameMeasure) -> FrameClass {
        let level = m.level_dbfs.max(-120.0);
        let floor = match self.floor_dbfs {
            Some(f) if level < f => level,
            Some(f) => f + FLOOR_RISE_DB,
            None => level,
        };
        self.floor_dbfs = Some(floor);
        let steady = self.last_measure.replace(m).is_some_and(|p| {
            p.gain_db >= TONE_GAIN_DB && (p.level_dbfs - m.level_dbfs).abs() <= TONE_STEADY_DB
        });
        if level < SILENCE_FLOOR_DBFS {
            FrameClass::Silence
        } else if m.gain_db >= PURE_TONE_GAIN_DB || (m.gain_db >= TONE_GAIN_DB && steady) {
            FrameClass::Tone
        } else if m.gain_db >= TONE_GAIN_DB {
            FrameClass::Noise
        } else if level >= MIN_SPEECH_DBFS
            && level >= floor + SPEECH_OVER_FLOOR_DB
            && m.gain_db >= SPEECH_MIN_GAIN_DB
        {
            FrameClass::Speech
        } else {
            FrameClass::Noise
        }
    }

    /// Samples classified so far.
    #[must_use]
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Whether speech is under way (begun, and not yet [`HANGOVER`] without it).
    #[must_use]
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// The sample where the current (or last) speech began.
    #[must_use]
    pub fn onset(&self) -> Option<u64> {
        self.onset
    }

    /// The sample after the last speech frame of the last speech that ended.
    #[must_use]
    pub fn ended(&self) -> Option<u64> {
        self.ended
    }

    /// How many samples, up to now, have held no speech and no tone without a break.
    #[must_use]
    pub fn quiet_run(&self) -> u64 {
        self.quiet_run
    }

    /// How many samples so far were in frames of speech or a tone (audio: silence and noise
    /// beds are not), in a row or not.
    #[must_use]
    pub fn audible(&self) -> u64 {
        self.audible
    }

    /// The class of the last frame.
    #[must_use]
    pub fn last_class(&self) -> Option<FrameClass> {
        self.last_class
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;
    use crate::media::tone::{AudioSource, Tone, ToneGenerator};

    fn speech() -> Vec<i16> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/speech-8k.wav"
        ))
        .unwrap();
        crate::media::wav::decode(&bytes).unwrap().to_vec()
    }

    /// Through G.711 µ-law and back, as a PBX would send it.
    fn through_pcmu(audio: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(audio.len());
        for chunk in audio.chunks(160) {
            let mut enc = [0u8; 160];
            let n = Codec::Pcmu.encode(chunk, &mut enc).unwrap();
            let mut dec = [0i16; 160];
            let m = Codec::Pcmu.decode(&enc[..n], &mut dec).unwrap();
            out.extend_from_slice(&dec[..m]);
        }
        out
    }

    fn run(audio: &[i16]) -> (Vad, Vec<FrameClass>) {
        let mut vad = Vad::new();
        let classes = audio.chunks(160).map(|f| vad.push(f)).collect();
        (vad, classes)
    }

    fn tone(tone: Tone, seconds: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(&tone);
        let mut out = vec![0i16; 8000 * seconds];
        g.fill(&mut out);
        through_pcmu(&out)
    }

    /// White noise at `dbfs` (sine-referenced RMS), from a fixed xorshift seed.
    fn white_noise(dbfs: f64, samples: usize) -> Vec<i16> {
        let mut s: u32 = 0x1234_5678;
        // A uniform noise of peak p has RMS p/√3; sine-referenced 0 dBFS RMS is FULL/√2.
        let peak = FULL_SCALE / 2f64.sqrt() * 10f64.powf(dbfs / 20.0) * 3f64.sqrt();
        let noise: Vec<i16> = (0..samples)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = f64::from(s) / f64::from(u32::MAX) * 2.0 - 1.0;
                (u * peak) as i16
            })
            .collect();
        through_pcmu(&noise)
    }

    #[test]
    fn the_speech_fixture_is_one_prompt_from_its_first_word_to_its_last() {
        let audio = through_pcmu(&speech());
        let mut vad = Vad::new();
        let mut onsets = Vec::new();
        let mut ends = Vec::new();
        let mut was = false;
        for f in audio.chunks(160) {
            vad.push(f);
            if vad.is_speaking() && !was {
                onsets.push(vad.onset().unwrap());
            }
            if !vad.is_speaking() && was {
                ends.push(vad.ended().unwrap());
            }
            was = vad.is_speaking();
        }
        // Speech starts at 0.40 s and its last word ends at 10.18 s; the pauses between the
        // three sentences (0.36 s and 0.42 s) do not end it.
        assert_eq!(onsets.len(), 1, "{onsets:?}");
        let onset = onsets[0] as f64 / 8000.0;
        assert!((0.38..=0.60).contains(&onset), "onset at {onset} s");
        assert_eq!(ends.len(), 1, "{ends:?}");
        let end = ends[0] as f64 / 8000.0;
        assert!((10.0..=10.25).contains(&end), "end at {end} s");
        // What follows the end (0.82 s of silence less the hangover) is quiet.
        assert!(vad.quiet_run() >= 1600, "{}", vad.quiet_run());
    }

    #[test]
    fn most_frames_of_the_spoken_words_are_speech() {
        let audio = through_pcmu(&speech());
        let (_, classes) = run(&audio);
        // The frames of the first sentence (0.62–3.60 s) louder than −35 dBFS.
        let loud: Vec<_> = audio
            .chunks(160)
            .zip(&classes)
            .skip(31)
            .take(149)
            .filter(|(f, _)| measure(f).level_dbfs > -35.0)
            .map(|(_, c)| *c)
            .collect();
        let speech = loud.iter().filter(|c| **c == FrameClass::Speech).count();
        assert!(
            speech * 10 >= loud.len() * 8,
            "{speech} of {} loud frames are speech",
            loud.len()
        );
    }

    #[test]
    fn a_steady_tone_is_a_tone_never_speech() {
        for t in [
            Tone::single(1000.0, -10.0).unwrap(),
            Tone::single(425.0, -30.0).unwrap(),
            Tone::dual(350.0, 440.0, -13.0).unwrap(),
            Tone::dual(440.0, 480.0, -19.0).unwrap(),
            Tone::dual(697.0, 1209.0, -10.0).unwrap(),
        ] {
            let (vad, classes) = run(&tone(t, 3));
            assert!(!vad.is_speaking() && vad.onset().is_none(), "{t:?}");
            let tones = classes.iter().filter(|c| **c == FrameClass::Tone).count();
            assert!(tones >= classes.len() - 1, "{t:?}: {classes:?}");
            assert_eq!(vad.quiet_run(), 0, "a tone is not quiet: {t:?}");
        }
    }

    #[test]
    fn white_noise_is_noise_never_speech_and_counts_as_quiet() {
        for dbfs in [-30.0, -15.0] {
            let (vad, classes) = run(&white_noise(dbfs, 8000 * 3));
            assert!(vad.onset().is_none(), "{dbfs} dBFS");
            assert!(
                classes.iter().all(|c| *c == FrameClass::Noise),
                "{classes:?}"
            );
            assert_eq!(vad.quiet_run(), 8000 * 3);
        }
    }

    #[test]
    fn silence_is_silence_and_quiet() {
        let (vad, classes) = run(&vec![0i16; 8000 * 2]);
        assert!(classes.iter().all(|c| *c == FrameClass::Silence));
        assert!(vad.onset().is_none());
        assert_eq!(vad.quiet_run(), 16_000);
    }

    #[test]
    fn speech_over_a_noise_bed_is_still_heard() {
        let noise = white_noise(-45.0, 88_000);
        let speech = speech();
        let mixed: Vec<i16> = speech
            .iter()
            .zip(noise.iter().cycle())
            .map(|(a, b)| a.saturating_add(*b))
            .collect();
        let (vad, _) = run(&through_pcmu(&mixed));
        let onset = vad.onset().unwrap() as f64 / 8000.0;
        assert!((0.38..=0.8).contains(&onset), "onset at {onset} s");
    }
}
