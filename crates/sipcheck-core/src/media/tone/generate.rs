//! Tone generation: silence, and single and dual tones from rotating phasors or exact
//! periodic tables.

use super::*;

/// Digital silence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silence;

impl AudioSource for Silence {
    fn fill(&mut self, out: &mut [i16]) {
        out.fill(0);
    }
}

/// One oscillator: a unit phasor rotated by `e^{iω}` every sample.
#[derive(Debug, Clone, Copy)]
struct Oscillator {
    re: f64,
    im: f64,
    cos_w: f64,
    sin_w: f64,
    amplitude: f64,
}

/// Renormalise the phasors every this many samples (counted from the start of the tone, so
/// the output does not depend on how the caller cuts it into frames).
const RENORMALISE_EVERY: u64 = 256;

/// The longest period, in samples, that [`ToneGenerator`] plays from a precomputed table.
const MAX_TABLE_PERIOD: u64 = 1600;

/// A table holds at least this many samples (whole periods), so that a 20 ms frame is at
/// most two copies.
const MIN_TABLE_SAMPLES: u64 = 512;

/// Rounds half away from zero (as `f64::round`, without its libm call on baseline x86-64);
/// `as` saturates out-of-range floats, which is the clipping wanted here.
#[inline]
fn to_sample(value: f64) -> i16 {
    (value + 0.5f64.copysign(value)) as i16
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// For a tone whose frequencies are all whole hertz and whose waveform repeats within
/// [`MAX_TABLE_PERIOD`] samples (`8000 / gcd(8000, f₁, f₂)`), whole periods of it, at least
/// [`MIN_TABLE_SAMPLES`] long: sample `n` is `Σ A·sin(2π·(fᵢ·n mod 8000) / 8000)`, rounded
/// as [`to_sample`] does. The phase is reduced in integers, so every sample is the exact
/// value rounded.
fn periodic_table(freqs: &[f64], amplitude: f64) -> Option<Box<[i16]>> {
    let rate = u64::from(SAMPLE_RATE);
    let mut period = 1;
    for &hz in freqs {
        if hz.fract() != 0.0 {
            return None;
        }
        // `check_frequency` keeps `hz` in (0, 4000): the conversion is exact.
        let own = rate / gcd(rate, hz as u64);
        period = period / gcd(period, own) * own;
    }
    if period > MAX_TABLE_PERIOD {
        return None;
    }
    // Each component over its own period (which divides the tone's).
    let components: Vec<Vec<f64>> = freqs
        .iter()
        .map(|&hz| {
            let f = hz as u64;
            (0..rate / gcd(rate, f))
                .map(|n| amplitude * (2.0 * PI * ((f * n) % rate) as f64 / rate as f64).sin())
                .collect()
        })
        .collect();
    let period = usize::try_from(period).ok()?;
    let mut table: Vec<i16> = (0..period)
        .map(|n| {
            let mut value = 0.0;
            for component in &components {
                value += component[n % component.len()];
            }
            to_sample(value)
        })
        .collect();
    while (table.len() as u64) < MIN_TABLE_SAMPLES {
        table.extend_from_within(..period);
    }
    Some(table.into_boxed_slice())
}

/// Runs `N` oscillators over `out`, with the phasors held in locals.
#[inline]
fn rotate<const N: usize>(oscillators: &mut [Oscillator; N], out: &mut [i16]) {
    let mut local = *oscillators;
    for sample in out {
        let mut value = 0.0;
        for o in &mut local {
            value += o.amplitude * o.im;
            let re = o.re * o.cos_w - o.im * o.sin_w;
            o.im = o.re * o.sin_w + o.im * o.cos_w;
            o.re = re;
        }
        *sample = to_sample(value);
    }
    *oscillators = local;
}

/// A phase-continuous generator for a [`Tone`].
///
/// Each component is a rotating phasor (`z ← z·e^{iω}`, output `A·Im z`), renormalised to
/// unit length every 256 samples; consecutive calls to [`AudioSource::fill`] continue the
/// waveform exactly where the previous call stopped, whatever the frame sizes. A tone of
/// whole-hertz frequencies whose waveform repeats within 1600 samples (such as 1000 Hz,
/// 440 Hz or 350 + 440 Hz) is instead played from one precomputed table of the exact sines;
/// its samples differ from the phasors' by at most one step.
#[derive(Clone)]
pub struct ToneGenerator {
    oscillators: [Oscillator; 2],
    count: usize,
    position: u64,
    /// Whole periods of the waveform, when it is short enough to tabulate.
    table: Option<Box<[i16]>>,
}

/// The table shows as its length (up to 1,600 samples would drown the rest).
impl fmt::Debug for ToneGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToneGenerator")
            .field("oscillators", &&self.oscillators[..self.count])
            .field("position", &self.position)
            .field("table_len", &self.table.as_ref().map(|t| t.len()))
            .finish()
    }
}

impl ToneGenerator {
    /// A generator for `tone`, starting at phase zero (a rising zero crossing).
    #[must_use]
    pub fn new(tone: &Tone) -> Self {
        let amplitude = FULL_SCALE * 10f64.powf(tone.level_dbfs / 20.0);
        let osc = |hz: f64| {
            let w = 2.0 * PI * hz / f64::from(SAMPLE_RATE);
            Oscillator {
                re: 1.0,
                im: 0.0,
                cos_w: w.cos(),
                sin_w: w.sin(),
                amplitude,
            }
        };
        Self {
            oscillators: [osc(tone.freqs[0]), osc(tone.freqs[1])],
            count: tone.count,
            position: 0,
            table: periodic_table(tone.frequencies(), amplitude),
        }
    }

    /// How many samples have been generated so far.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Goes back to the start of the tone: the state of a new generator.
    pub(super) fn restart(&mut self) {
        self.position = 0;
        for o in &mut self.oscillators {
            o.re = 1.0;
            o.im = 0.0;
        }
    }

    fn fill_phasors(&mut self, out: &mut [i16]) {
        let mut rest = out;
        while !rest.is_empty() {
            // Renormalise at every multiple of RENORMALISE_EVERY samples, then run to the next.
            if self.position.is_multiple_of(RENORMALISE_EVERY) {
                for o in &mut self.oscillators[..self.count] {
                    let norm = o.re.hypot(o.im);
                    o.re /= norm;
                    o.im /= norm;
                }
            }
            let to_next = RENORMALISE_EVERY - self.position % RENORMALISE_EVERY;
            let run = rest
                .len()
                .min(usize::try_from(to_next).unwrap_or(usize::MAX));
            let (now, later) = rest.split_at_mut(run);
            if self.count == 1 {
                rotate(std::array::from_mut(&mut self.oscillators[0]), now);
            } else {
                rotate(&mut self.oscillators, now);
            }
            self.position += run as u64;
            rest = later;
        }
    }
}

impl AudioSource for ToneGenerator {
    fn fill(&mut self, out: &mut [i16]) {
        let Some(table) = &self.table else {
            self.fill_phasors(out);
            return;
        };
        // The table holds whole periods, so the position modulo its length is the phase.
        let mut at = usize::try_from(self.position % table.len() as u64).unwrap_or(0);
        let mut rest = &mut *out;
        while !rest.is_empty() {
            let run = rest.len().min(table.len() - at);
            let (now, later) = rest.split_at_mut(run);
            now.copy_from_slice(&table[at..at + run]);
            at = 0;
            rest = later;
        }
        self.position += out.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rms_dbfs;

    #[test]
    fn tone_generator_produces_the_requested_level() {
        for (hz, dbfs) in [(440.0, -30.0), (1000.0, -3.0), (3400.0, -20.0)] {
            let mut generator = ToneGenerator::new(&Tone::single(hz, dbfs).unwrap());
            let mut out = vec![0; 8000];
            generator.fill(&mut out);
            assert!(
                (rms_dbfs(&out) - dbfs).abs() < 0.05,
                "{hz} Hz: {}",
                rms_dbfs(&out)
            );
        }
        let mut dual = ToneGenerator::new(&Tone::dual(697.0, 1209.0, -20.0).unwrap());
        let mut out = vec![0; 8000];
        dual.fill(&mut out);
        assert!((rms_dbfs(&out) - (-20.0 + 3.01)).abs() < 0.05);
    }

    #[test]
    fn tone_generator_is_phase_continuous_across_frames() {
        let tone = Tone::dual(697.0, 1209.0, -10.0).unwrap();
        let mut whole = vec![0; 80_000];
        ToneGenerator::new(&tone).fill(&mut whole);
        // Any framing gives the same samples.
        let mut framed = Vec::new();
        let mut generator = ToneGenerator::new(&tone);
        for size in [160, 7, 1, 333, 160, 159].iter().cycle() {
            if framed.len() >= whole.len() {
                break;
            }
            let mut frame = vec![0; (*size).min(whole.len() - framed.len())];
            generator.fill(&mut frame);
            framed.extend_from_slice(&frame);
        }
        assert_eq!(framed, whole);
        assert_eq!(generator.position(), 80_000);
        // And they are the sines, to within one step, even after ten seconds.
        let amplitude = FULL_SCALE * 10f64.powf(-0.5);
        for (n, &s) in whole.iter().enumerate() {
            let t = n as f64 / 8000.0;
            let exact = amplitude * ((2.0 * PI * 697.0 * t).sin() + (2.0 * PI * 1209.0 * t).sin());
            assert!((f64::from(s) - exact).abs() <= 1.0, "sample {n}");
        }
    }

    #[test]
    fn tabulated_tones_are_the_rounded_sines_whatever_the_framing() {
        // Periods of 8, 200, 800 and 1600 samples (tables), and 8000 and fractional (phasors,
        // which are accurate enough to round the same way here).
        for (lo, hi, dbfs) in [
            (1000.0, None, -12.0),
            (440.0, None, -20.0),
            (350.0, Some(440.0), -13.0),
            (405.0, Some(1000.0), -7.0),
            (697.0, Some(1209.0), -10.0),
            (440.5, None, -3.0),
        ] {
            let tone = match hi {
                Some(hi) => Tone::dual(lo, hi, dbfs).unwrap(),
                None => Tone::single(lo, dbfs).unwrap(),
            };
            let mut generator = ToneGenerator::new(&tone);
            let mut framed = Vec::new();
            for size in [160, 7, 1, 333, 0, 1601, 159].iter().cycle().take(60) {
                let mut frame = vec![0; *size];
                generator.fill(&mut frame);
                framed.extend_from_slice(&frame);
            }
            assert_eq!(generator.position(), framed.len() as u64);
            let amplitude = FULL_SCALE * 10f64.powf(dbfs / 20.0);
            for (n, &s) in framed.iter().enumerate() {
                let t = n as f64 / 8000.0;
                let exact = amplitude
                    * ((2.0 * PI * lo * t).sin() + hi.map_or(0.0, |hi| (2.0 * PI * hi * t).sin()));
                assert!(
                    (f64::from(s) - exact).abs() <= 0.5 + 1e-6,
                    "{lo}+{hi:?} Hz, sample {n}: {s} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn tone_generator_saturates_instead_of_wrapping() {
        let mut out = vec![0; 800];
        ToneGenerator::new(&Tone::dual(500.0, 1000.0, 0.0).unwrap()).fill(&mut out);
        assert!(out.contains(&i16::MAX) && out.contains(&i16::MIN));
    }

    #[test]
    fn silence_source_is_zero() {
        let mut out = [5i16; 160];
        Silence.fill(&mut out);
        assert_eq!(out, [0; 160]);
    }
}
