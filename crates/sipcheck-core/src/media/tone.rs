//! Tone generation (single and dual tones, silence, playlists) and Goertzel tone detection.
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

/// The largest level difference, in dB, allowed between the two components of a dual tone.
pub const MAX_TWIST_DB: f64 = 10.0;

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
    fn restart(&mut self) {
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

/// One item of a [`Playlist`].
#[derive(Debug, Clone)]
pub enum PlaylistItem {
    /// A tone for a duration (rounded to whole samples).
    Tone {
        /// The tone to play.
        tone: Tone,
        /// How long to play it.
        duration: Duration,
    },
    /// Digital silence for a duration (rounded to whole samples).
    Silence {
        /// How long to stay silent.
        duration: Duration,
    },
    /// Caller-supplied 8 kHz mono samples (for example read from a WAV file), played once.
    /// An `Arc` so that many calls can share one recording.
    Pcm(Arc<[i16]>),
}

impl PlaylistItem {
    fn samples(&self) -> u64 {
        match self {
            Self::Tone { duration, .. } | Self::Silence { duration } => {
                duration_to_samples(*duration)
            }
            Self::Pcm(samples) => samples.len() as u64,
        }
    }
}

/// Items played in order, frame by frame; silence once the list is over (unless looping).
#[derive(Debug, Clone)]
pub struct Playlist {
    items: Vec<PlaylistItem>,
    lengths: Vec<u64>,
    looping: bool,
    index: usize,
    offset: u64,
    /// One generator per tone item, made when the item is first played and restarted each
    /// time it is played again.
    generators: Vec<Option<ToneGenerator>>,
    position: u64,
}

impl Playlist {
    /// A playlist that plays `items` once, then silence.
    #[must_use]
    pub fn new(items: Vec<PlaylistItem>) -> Self {
        let lengths = items.iter().map(PlaylistItem::samples).collect();
        let generators = vec![None; items.len()];
        let mut playlist = Self {
            items,
            lengths,
            looping: false,
            index: 0,
            offset: 0,
            generators,
            position: 0,
        };
        playlist.enter_item();
        playlist
    }

    /// A playlist that plays `items` over and over. An empty (zero-length) list plays
    /// silence.
    #[must_use]
    pub fn looping(items: Vec<PlaylistItem>) -> Self {
        let mut playlist = Self::new(items);
        playlist.looping = true;
        playlist
    }

    /// The number of samples in one pass over the items.
    #[must_use]
    pub fn total_samples(&self) -> u64 {
        self.lengths.iter().sum()
    }

    /// How many samples have been produced so far (including trailing silence).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The sample offset at which item `index` starts in the first pass, if it exists: the
    /// expected onset to compare a detection with.
    #[must_use]
    pub fn item_start(&self, index: usize) -> Option<u64> {
        (index < self.items.len()).then(|| self.lengths[..index].iter().sum())
    }

    /// Whether every item has been played (never true for a non-empty looping playlist).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.index >= self.items.len()
    }

    /// Skips zero-length items and prepares the generator of the current item.
    fn enter_item(&mut self) {
        loop {
            if self.index >= self.items.len() {
                if self.looping && self.total_samples() > 0 {
                    self.index = 0;
                } else {
                    return;
                }
            }
            if self.lengths[self.index] > 0 {
                break;
            }
            self.index += 1;
        }
        self.offset = 0;
        if let PlaylistItem::Tone { tone, .. } = &self.items[self.index] {
            match &mut self.generators[self.index] {
                Some(generator) => generator.restart(),
                slot @ None => *slot = Some(ToneGenerator::new(tone)),
            }
        }
    }

    /// Fills `out`; returns how many of its samples came from items (the rest is trailing
    /// silence after the list is over).
    pub fn fill_counted(&mut self, out: &mut [i16]) -> usize {
        let mut done = 0;
        while done < out.len() && !self.is_finished() {
            let left_in_item = self.lengths[self.index] - self.offset;
            let n = usize::try_from(left_in_item)
                .unwrap_or(usize::MAX)
                .min(out.len() - done);
            let chunk = &mut out[done..done + n];
            match &self.items[self.index] {
                PlaylistItem::Tone { .. } => {
                    if let Some(generator) = &mut self.generators[self.index] {
                        generator.fill(chunk);
                    }
                }
                PlaylistItem::Silence { .. } => chunk.fill(0),
                PlaylistItem::Pcm(samples) => {
                    // `offset + n <= len` by construction.
                    let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                    chunk.copy_from_slice(&samples[start..start + n]);
                }
            }
            done += n;
            self.offset += n as u64;
            if self.offset == self.lengths[self.index] {
                self.index += 1;
                self.enter_item();
            }
        }
        if done < out.len() {
            out[done..].fill(0);
        }
        self.position += out.len() as u64;
        done
    }
}

impl AudioSource for Playlist {
    fn fill(&mut self, out: &mut [i16]) {
        self.fill_counted(out);
    }
}

/// The detector's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Samples per analysis block (32..=8000; default 160 = 20 ms). Longer blocks resolve
    /// frequency and level better; shorter blocks time onsets more finely.
    pub block_samples: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self { block_samples: 160 }
    }
}

/// What to look for: a single or dual tone, how clearly and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneQuery {
    freqs: [f64; 2],
    count: usize,
    min_snr_db: f64,
    min_duration: Duration,
    tolerance_hz: f64,
    min_level_dbfs: f64,
}

impl ToneQuery {
    /// A query for a single frequency with the defaults: 6 dB SNR, 40 ms, ±3 Hz, components
    /// at −60 dBFS or louder.
    ///
    /// # Errors
    /// [`ToneError::BadFrequency`] unless `0 < hz < 4000`.
    pub fn single(hz: f64) -> Result<Self, ToneError> {
        Ok(Self {
            freqs: [check_frequency(hz)?, 0.0],
            count: 1,
            min_snr_db: 6.0,
            min_duration: Duration::from_millis(40),
            tolerance_hz: 3.0,
            min_level_dbfs: -60.0,
        })
    }

    /// A query for a dual tone (both components must be present), with the defaults of
    /// [`ToneQuery::single`].
    ///
    /// # Errors
    /// [`ToneError::BadFrequency`] unless both frequencies are within `0 < f < 4000`.
    pub fn dual(low_hz: f64, high_hz: f64) -> Result<Self, ToneError> {
        let mut query = Self::single(low_hz)?;
        query.freqs[1] = check_frequency(high_hz)?;
        query.count = 2;
        Ok(query)
    }

    /// The query for the frequencies of `tone` (its level is not part of the query).
    ///
    /// # Errors
    /// Never for a valid [`Tone`]; the signature matches the other constructors.
    pub fn for_tone(tone: &Tone) -> Result<Self, ToneError> {
        match tone.frequencies() {
            [hz] => Self::single(*hz),
            [low, high] => Self::dual(*low, *high),
            _ => Err(ToneError::EmptySequence),
        }
    }

    /// Requires the components to stand `db` dB above the rest of the block's power.
    #[must_use]
    pub fn min_snr_db(mut self, db: f64) -> Self {
        self.min_snr_db = db;
        self
    }

    /// Requires the tone to last this long (in consecutive blocks, rounded up).
    #[must_use]
    pub fn min_duration(mut self, duration: Duration) -> Self {
        self.min_duration = duration;
        self
    }

    /// Accepts components measured within `hz` hertz of the nominal frequencies.
    #[must_use]
    pub fn tolerance_hz(mut self, hz: f64) -> Self {
        self.tolerance_hz = hz;
        self
    }

    /// Requires each component to be at least this loud.
    #[must_use]
    pub fn min_level_dbfs(mut self, dbfs: f64) -> Self {
        self.min_level_dbfs = dbfs;
        self
    }

    /// The nominal frequencies in hertz.
    #[must_use]
    pub fn frequencies(&self) -> &[f64] {
        &self.freqs[..self.count]
    }
}

/// A tone found in the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The first sample of the first matching block, counted from the start of the stream.
    pub onset_sample: u64,
    /// How many samples the run of matching blocks lasted (so far, while it goes on).
    pub duration_samples: u64,
    /// The mean SNR over the run's blocks, in dB.
    pub snr_db: f64,
    /// The mean power of the components together over the run, in dBFS.
    pub level_dbfs: f64,
    /// The mean measured offset of the first component from its nominal frequency, in hertz
    /// (`None` when the frequency check is off).
    pub frequency_offset_hz: Option<f64>,
}

impl Detection {
    /// The onset as time from the start of the stream.
    #[must_use]
    pub fn onset(&self) -> Duration {
        samples_to_duration(self.onset_sample)
    }

    /// The duration of the run.
    #[must_use]
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.duration_samples)
    }
}

/// Names something watched by a [`ToneDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(usize);

/// One Goertzel filter.
#[derive(Debug, Clone)]
struct Bin {
    hz: f64,
    coeff: f64,
    cos_w: f64,
    sin_w: f64,
    /// The phase advance per block of a component exactly at `hz`.
    advance: f64,
    s1: f64,
    s2: f64,
    /// The phase of the previous block's filter output.
    previous_phase: Option<f64>,
    /// This block's component power (same units as a mean square).
    power: f64,
    /// cos and sin of ω·(N−1): turn the filter output into Σ x·e^{−iωk}.
    cos_full: f64,
    sin_full: f64,
    /// This block's Σ x[k]·cos(ωk).
    c: f64,
    /// This block's Σ x[k]·sin(ωk).
    s: f64,
    /// This block's frequency offset estimate (needs the previous block).
    offset_hz: Option<f64>,
}

/// A query resolved against the detector's bins and block length.
#[derive(Debug, Clone)]
struct Step {
    bins: [usize; 2],
    count: usize,
    /// Samples per block.
    block: f64,
    /// The inverse Gram matrix of the step's sinusoids (cos and sin per frequency) over one
    /// block: the least-squares fit of the tone to a block is `gram_inv · [Σx·cos, Σx·sin …]`.
    gram_inv: [[f64; 4]; 4],
    min_snr: f64,
    min_power: f64,
    min_blocks: u64,
    tolerance_hz: Option<f64>,
}

/// A run of consecutive matching blocks.
#[derive(Debug, Clone, Copy)]
struct Run {
    start_block: u64,
    blocks: u64,
    sum_snr_db: f64,
    sum_power: f64,
    sum_offset: f64,
    offsets: u64,
}

impl Run {
    fn new(block: u64) -> Self {
        Self {
            start_block: block,
            blocks: 0,
            sum_snr_db: 0.0,
            sum_power: 0.0,
            sum_offset: 0.0,
            offsets: 0,
        }
    }

    fn add(&mut self, m: &BlockMatch) {
        self.blocks += 1;
        self.sum_snr_db += m.snr_db;
        self.sum_power += m.power;
        if let Some(offset) = m.offset_hz {
            self.sum_offset += offset;
            self.offsets += 1;
        }
    }

    fn detection(&self, block_samples: u64, checks_frequency: bool) -> Detection {
        let n = self.blocks.max(1) as f64;
        Detection {
            onset_sample: self.start_block * block_samples,
            duration_samples: self.blocks * block_samples,
            snr_db: self.sum_snr_db / n,
            level_dbfs: power_to_dbfs(self.sum_power / n),
            frequency_offset_hz: (checks_frequency && self.offsets > 0)
                .then(|| self.sum_offset / self.offsets as f64),
        }
    }
}

/// How one block matched one step.
#[derive(Debug, Clone, Copy)]
struct BlockMatch {
    snr_db: f64,
    power: f64,
    /// `None` if no offset is known; `Some(false)` if outside the tolerance.
    frequency_ok: Option<bool>,
    offset_hz: Option<f64>,
}

/// A watched sequence of steps (a single query is a sequence of one).
#[derive(Debug, Clone)]
struct Watch {
    steps: Vec<Step>,
    found: Vec<Detection>,
    /// The run looking for `steps[found.len()]`.
    run: Option<Run>,
    /// The run that satisfied the last found step, while it goes on.
    extending: Option<Run>,
}

/// A streaming Goertzel tone detector with level and silence measurement.
///
/// Register what to look for with [`ToneDetector::watch`] / [`ToneDetector::watch_sequence`]
/// (before the audio, ideally: a watch only sees blocks completed after it was added), push
/// audio in chunks of any size with [`ToneDetector::push`], then read the results. Memory
/// does not grow with the length of the stream.
#[derive(Debug, Clone)]
pub struct ToneDetector {
    block_samples: usize,
    bins: Vec<Bin>,
    watches: Vec<Watch>,
    /// Samples of the current, incomplete block.
    filled: usize,
    /// Sum of squares of the current block.
    energy: f64,
    blocks: u64,
    total_energy: f64,
    max_block_power: f64,
    last_block_power: Option<f64>,
}

impl ToneDetector {
    /// A detector with no watches.
    ///
    /// # Errors
    /// [`ToneError::BadBlock`] unless `32 <= block_samples <= 8000`.
    pub fn new(config: DetectorConfig) -> Result<Self, ToneError> {
        if !(32..=8000).contains(&config.block_samples) {
            return Err(ToneError::BadBlock {
                samples: config.block_samples,
            });
        }
        Ok(Self {
            block_samples: config.block_samples,
            bins: Vec::new(),
            watches: Vec::new(),
            filled: 0,
            energy: 0.0,
            blocks: 0,
            total_energy: 0.0,
            max_block_power: 0.0,
            last_block_power: None,
        })
    }

    /// The block length in samples.
    #[must_use]
    pub fn block_samples(&self) -> usize {
        self.block_samples
    }

    /// The largest tolerance, in hertz, for which the phase-based frequency check is on
    /// (exclusive): `8000 / (2 · block_samples)`.
    #[must_use]
    pub fn max_tolerance_hz(&self) -> f64 {
        f64::from(SAMPLE_RATE) / (2.0 * self.block_samples as f64)
    }

    fn bin_for(&mut self, hz: f64) -> usize {
        if let Some(i) = self.bins.iter().position(|b| b.hz == hz) {
            return i;
        }
        let n = self.block_samples as f64;
        let w = 2.0 * PI * hz / f64::from(SAMPLE_RATE);
        self.bins.push(Bin {
            hz,
            coeff: 2.0 * w.cos(),
            cos_w: w.cos(),
            sin_w: w.sin(),
            advance: (w * n).rem_euclid(2.0 * PI),
            s1: 0.0,
            s2: 0.0,
            previous_phase: None,
            power: 0.0,
            cos_full: (w * (n - 1.0)).cos(),
            sin_full: (w * (n - 1.0)).sin(),
            c: 0.0,
            s: 0.0,
            offset_hz: None,
        });
        self.bins.len() - 1
    }

    fn resolve(&mut self, query: &ToneQuery) -> Result<Step, ToneError> {
        if !query.min_snr_db.is_finite() {
            return Err(ToneError::BadSnr {
                db: query.min_snr_db,
            });
        }
        if !(query.tolerance_hz.is_finite() && query.tolerance_hz > 0.0) {
            return Err(ToneError::BadTolerance {
                hz: query.tolerance_hz,
            });
        }
        if !query.min_level_dbfs.is_finite() {
            return Err(ToneError::BadLevel {
                dbfs: query.min_level_dbfs,
            });
        }
        let tolerance_hz =
            (query.tolerance_hz < self.max_tolerance_hz()).then_some(query.tolerance_hz);
        let block = self.block_samples as u64;
        let mut min_blocks = duration_to_samples(query.min_duration)
            .div_ceil(block)
            .max(1);
        if tolerance_hz.is_some() {
            min_blocks = min_blocks.max(2);
        }
        let mut bins = [0; 2];
        for (slot, &hz) in bins.iter_mut().zip(query.frequencies()) {
            *slot = self.bin_for(hz);
        }
        let gram_inv = gram_inverse(query.frequencies(), self.block_samples);
        Ok(Step {
            bins,
            count: query.count,
            block: self.block_samples as f64,
            gram_inv,
            min_snr: 10f64.powf(query.min_snr_db / 10.0),
            min_power: FULL_SCALE * FULL_SCALE / 2.0 * 10f64.powf(query.min_level_dbfs / 10.0),
            min_blocks,
            tolerance_hz,
        })
    }

    /// Watches for one tone.
    ///
    /// # Errors
    /// A [`ToneError`] for a non-finite SNR or level or a non-positive tolerance.
    pub fn watch(&mut self, query: ToneQuery) -> Result<WatchId, ToneError> {
        self.watch_sequence(&[query])
    }

    /// Watches for tones in order (see the module documentation).
    ///
    /// # Errors
    /// [`ToneError::EmptySequence`] for no steps, or the error of an invalid step.
    pub fn watch_sequence(&mut self, steps: &[ToneQuery]) -> Result<WatchId, ToneError> {
        if steps.is_empty() {
            return Err(ToneError::EmptySequence);
        }
        let steps = steps
            .iter()
            .map(|q| self.resolve(q))
            .collect::<Result<Vec<_>, _>>()?;
        self.watches.push(Watch {
            steps,
            found: Vec::new(),
            run: None,
            extending: None,
        });
        Ok(WatchId(self.watches.len() - 1))
    }

    /// Feeds audio; chunks may have any length and need not line up with blocks.
    pub fn push(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let n = (self.block_samples - self.filled).min(samples.len());
            let (chunk, rest) = samples.split_at(n);
            // Sample by sample, so that results do not depend on how the stream is chunked.
            // The first pass also sums the energy; each accumulator sees the same operations
            // in the same order as a filter run on its own.
            let mut groups = self.bins.chunks_mut(BINS_PER_PASS);
            let first = groups.next().unwrap_or_default();
            self.energy = match first {
                [] => goertzel_pass::<0, true>(&mut [], chunk, self.energy),
                [a] => goertzel_pass::<1, true>(&mut [a], chunk, self.energy),
                [a, b] => goertzel_pass::<2, true>(&mut [a, b], chunk, self.energy),
                [a, b, c] => goertzel_pass::<3, true>(&mut [a, b, c], chunk, self.energy),
                [a, b, c, d, ..] => goertzel_pass::<4, true>(&mut [a, b, c, d], chunk, self.energy),
            };
            for group in groups {
                match group {
                    [a] => goertzel_pass::<1, false>(&mut [a], chunk, 0.0),
                    [a, b] => goertzel_pass::<2, false>(&mut [a, b], chunk, 0.0),
                    [a, b, c] => goertzel_pass::<3, false>(&mut [a, b, c], chunk, 0.0),
                    [a, b, c, d, ..] => goertzel_pass::<4, false>(&mut [a, b, c, d], chunk, 0.0),
                    [] => 0.0,
                };
            }
            self.filled += n;
            if self.filled == self.block_samples {
                self.finish_block();
            }
            samples = rest;
        }
    }

    fn finish_block(&mut self) {
        let n = self.block_samples as f64;
        let block_power = self.energy / n;
        let to_hz = f64::from(SAMPLE_RATE) / (2.0 * PI * n);
        for bin in &mut self.bins {
            // y = Σ x[k]·e^{iω(N−1−k)}: the DFT at ω up to a constant phase factor.
            let re = bin.s1 - bin.cos_w * bin.s2;
            let im = bin.sin_w * bin.s2;
            bin.power = 2.0 * (re * re + im * im) / (n * n);
            // Σ x[k]·cos(ωk) and Σ x[k]·sin(ωk), for the least-squares fit of the steps.
            let (z_re, z_im) = (
                re * bin.cos_full + im * bin.sin_full,
                im * bin.cos_full - re * bin.sin_full,
            );
            bin.c = z_re;
            bin.s = -z_im;
            let phase = im.atan2(re);
            bin.offset_hz = bin.previous_phase.map(|previous| {
                let advance = phase - previous - bin.advance;
                // Wrap into (−π, π].
                let wrapped = advance - 2.0 * PI * ((advance + PI) / (2.0 * PI)).floor();
                wrapped * to_hz
            });
            bin.previous_phase = Some(phase);
            bin.s1 = 0.0;
            bin.s2 = 0.0;
        }
        let block = self.blocks;
        let block_samples = self.block_samples as u64;
        for watch in &mut self.watches {
            watch.on_block(block, block_samples, block_power, &self.bins);
        }
        self.total_energy += self.energy;
        self.max_block_power = self.max_block_power.max(block_power);
        self.last_block_power = Some(block_power);
        self.blocks += 1;
        self.filled = 0;
        self.energy = 0.0;
    }

    /// The tones found so far for `id`, in step order (for a sequence, a prefix of its steps).
    #[must_use]
    pub fn detections(&self, id: WatchId) -> &[Detection] {
        self.watches.get(id.0).map_or(&[], |w| w.found.as_slice())
    }

    /// The detection of the first step of `id`, if found.
    #[must_use]
    pub fn detection(&self, id: WatchId) -> Option<&Detection> {
        self.detections(id).first()
    }

    /// Whether every step of `id` has been found, in order.
    #[must_use]
    pub fn is_complete(&self, id: WatchId) -> bool {
        self.watches
            .get(id.0)
            .is_some_and(|w| w.found.len() == w.steps.len())
    }

    /// The number of complete blocks analysed.
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The number of samples pushed so far.
    #[must_use]
    pub fn samples(&self) -> u64 {
        self.blocks * self.block_samples as u64 + self.filled as u64
    }

    /// The RMS level of all complete blocks in dBFS (negative infinity if none or silent).
    #[must_use]
    pub fn rms_dbfs(&self) -> f64 {
        if self.blocks == 0 {
            return f64::NEG_INFINITY;
        }
        power_to_dbfs(self.total_energy / (self.blocks * self.block_samples as u64) as f64)
    }

    /// The RMS level of the loudest complete block in dBFS.
    #[must_use]
    pub fn max_block_rms_dbfs(&self) -> f64 {
        power_to_dbfs(self.max_block_power)
    }

    /// The RMS level of the last complete block in dBFS, if any.
    #[must_use]
    pub fn last_block_rms_dbfs(&self) -> Option<f64> {
        self.last_block_power.map(power_to_dbfs)
    }

    /// Whether every complete block so far is quieter than `threshold_dbfs` (true before the
    /// first block). Digital silence is −∞ dBFS; a threshold of −60 dBFS also accepts a
    /// quiet noise floor.
    #[must_use]
    pub fn is_silent(&self, threshold_dbfs: f64) -> bool {
        self.max_block_rms_dbfs() < threshold_dbfs
    }
}

/// How many Goertzel filters [`goertzel_pass`] runs side by side.
const BINS_PER_PASS: usize = 4;

/// Runs the filters of `bins` over `chunk` in one pass, their states held in locals so that
/// the filters' dependency chains interleave. With `ENERGY`, also adds the samples' squares
/// to `energy`, in order, and returns the sum (otherwise returns `energy` unchanged).
#[inline]
fn goertzel_pass<const N: usize, const ENERGY: bool>(
    bins: &mut [&mut Bin; N],
    chunk: &[i16],
    mut energy: f64,
) -> f64 {
    let coeff: [f64; N] = std::array::from_fn(|k| bins[k].coeff);
    let mut s1: [f64; N] = std::array::from_fn(|k| bins[k].s1);
    let mut s2: [f64; N] = std::array::from_fn(|k| bins[k].s2);
    for &x in chunk {
        let x = f64::from(x);
        if ENERGY {
            energy += x * x;
        }
        for k in 0..N {
            let s = x + coeff[k] * s1[k] - s2[k];
            s2[k] = s1[k];
            s1[k] = s;
        }
    }
    for (k, bin) in bins.iter_mut().enumerate() {
        bin.s1 = s1[k];
        bin.s2 = s2[k];
    }
    energy
}

/// The inverse of the Gram matrix of cos(ω·k) and sin(ω·k), k = 0..n, for each frequency
/// (2 or 4 rows; the rest stays zero). A singular matrix (a frequency at 0 or Nyquist, or
/// twice the same) is regularised so that the fit degrades instead of failing.
fn gram_inverse(freqs: &[f64], n: usize) -> [[f64; 4]; 4] {
    let dims = 2 * freqs.len().min(2);
    let basis = |j: usize, k: usize| -> f64 {
        let w = 2.0 * PI * freqs[j / 2] / f64::from(SAMPLE_RATE);
        let x = w * k as f64;
        if j.is_multiple_of(2) {
            x.cos()
        } else {
            x.sin()
        }
    };
    let mut g = [[0.0; 4]; 4];
    for (r, row) in g.iter_mut().enumerate().take(dims) {
        for (c, cell) in row.iter_mut().enumerate().take(dims) {
            *cell = (0..n).map(|k| basis(r, k) * basis(c, k)).sum();
        }
        row[r] += 1e-9 * n as f64;
    }
    // Gauss-Jordan elimination with partial pivoting on [g | I].
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate().take(dims) {
        row[i] = 1.0;
    }
    for col in 0..dims {
        let pivot = (col..dims)
            .max_by(|&x, &y| g[x][col].abs().total_cmp(&g[y][col].abs()))
            .unwrap_or(col);
        g.swap(col, pivot);
        inv.swap(col, pivot);
        let d = g[col][col];
        if d.abs() < f64::MIN_POSITIVE {
            continue;
        }
        for c in 0..dims {
            g[col][c] /= d;
            inv[col][c] /= d;
        }
        for r in 0..dims {
            if r != col {
                let f = g[r][col];
                for c in 0..dims {
                    g[r][c] -= f * g[col][c];
                    inv[r][c] -= f * inv[col][c];
                }
            }
        }
    }
    inv
}

impl Step {
    fn evaluate(&self, block_power: f64, all_bins: &[Bin]) -> Option<BlockMatch> {
        // Least-squares fit of the step's sinusoids to the block: exact component powers
        // however close the frequencies and whatever fraction of a cycle the block holds
        // (a plain Goertzel estimate is off by a few percent then, which reads as a noise
        // floor only ~17 dB below a clean tone).
        let dims = 2 * self.count;
        let mut p = [0.0; 4];
        for (k, &i) in self.bins[..self.count].iter().enumerate() {
            p[2 * k] = all_bins[i].c;
            p[2 * k + 1] = all_bins[i].s;
        }
        let mut a = [0.0; 4];
        for (r, row) in self.gram_inv.iter().enumerate().take(dims) {
            a[r] = row[..dims].iter().zip(&p[..dims]).map(|(g, v)| g * v).sum();
        }
        let fitted_energy: f64 = a[..dims].iter().zip(&p[..dims]).map(|(x, y)| x * y).sum();
        let bins = self.bins[..self.count].iter().map(|&i| &all_bins[i]);
        let mut sum = 0.0;
        let mut weakest = f64::INFINITY;
        let mut strongest: f64 = 0.0;
        let mut frequency_ok = Some(true);
        let mut first_offset = None;
        for (k, bin) in bins.enumerate() {
            // Mean-square power of component k: amplitude² / 2.
            let power = (a[2 * k] * a[2 * k] + a[2 * k + 1] * a[2 * k + 1]) / 2.0;
            if power < self.min_power {
                return None;
            }
            sum += power;
            weakest = weakest.min(power);
            strongest = strongest.max(power);
            if let Some(tolerance) = self.tolerance_hz {
                match bin.offset_hz {
                    Some(offset) => {
                        first_offset.get_or_insert(offset);
                        if offset.abs() > tolerance {
                            frequency_ok = Some(false);
                        }
                    }
                    None => frequency_ok = None,
                }
            }
        }
        if weakest < strongest * 10f64.powf(-MAX_TWIST_DB / 10.0) {
            return None;
        }
        // The rest of the block: never below a millionth of the block, so that a pure digital
        // tone has a large but finite SNR.
        let fitted = (fitted_energy / self.block).max(0.0);
        let noise = (block_power - fitted).max(block_power * 1e-6);
        if noise <= 0.0 || fitted < self.min_snr * noise {
            return None;
        }
        Some(BlockMatch {
            snr_db: 10.0 * (fitted / noise).log10(),
            power: sum,
            frequency_ok: if self.tolerance_hz.is_some() {
                frequency_ok
            } else {
                Some(true)
            },
            offset_hz: first_offset,
        })
    }

    /// Updates `run` with this block's result; returns whether the run satisfies the step.
    fn advance(&self, run: &mut Option<Run>, block: u64, m: Option<BlockMatch>) -> bool {
        let Some(m) = m else {
            *run = None;
            return false;
        };
        let continues = run
            .as_ref()
            .is_some_and(|r| r.start_block + r.blocks == block);
        match (continues, m.frequency_ok) {
            // Consecutive and the frequency (measured against the previous matching block)
            // is right, or not checked.
            (true, Some(true)) => {
                if let Some(r) = run.as_mut() {
                    r.add(&m);
                }
            }
            // First block of a run, or the frequency moved: start again here. The first
            // block's offset is measured against a non-matching block, so it is not kept.
            _ => {
                let mut fresh = Run::new(block);
                fresh.add(&BlockMatch {
                    offset_hz: None,
                    ..m
                });
                *run = Some(fresh);
            }
        }
        run.as_ref().is_some_and(|r| r.blocks >= self.min_blocks)
    }
}

impl Watch {
    fn on_block(&mut self, block: u64, block_samples: u64, block_power: f64, bins: &[Bin]) {
        // First, extend the detection of the last found step while its run goes on.
        if let (Some(extending), Some(index)) =
            (self.extending.as_mut(), self.found.len().checked_sub(1))
        {
            let step = &self.steps[index];
            let m = step.evaluate(block_power, bins);
            let mut run = Some(*extending);
            let still = m.is_some() && {
                step.advance(&mut run, block, m);
                run.is_some_and(|r| r.start_block == extending.start_block)
            };
            if still {
                if let Some(r) = run {
                    *extending = r;
                    self.found[index] = r.detection(block_samples, step.tolerance_hz.is_some());
                }
                return;
            }
            self.extending = None;
        }
        let Some(step) = self.steps.get(self.found.len()) else {
            return;
        };
        let m = step.evaluate(block_power, bins);
        if step.advance(&mut self.run, block, m) {
            if let Some(run) = self.run.take() {
                self.found
                    .push(run.detection(block_samples, step.tolerance_hz.is_some()));
                self.extending = Some(run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;
    use crate::media::rms_dbfs;

    /// A tiny deterministic PRNG (xorshift64*) for test noise.
    struct Noise {
        state: u64,
        sigma: f64,
    }

    impl Noise {
        fn new(seed: u64, sigma: f64) -> Self {
            Self {
                state: seed.max(1),
                sigma,
            }
        }

        fn uniform(&mut self) -> f64 {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
            bits as f64 / (1u64 << 53) as f64
        }

        /// Approximately Gaussian (Irwin–Hall, 12 uniforms), standard deviation `sigma`.
        fn sample(&mut self) -> f64 {
            let sum: f64 = (0..12).map(|_| self.uniform()).sum();
            (sum - 6.0) * self.sigma
        }

        /// Adds noise to `samples`, saturating.
        fn add_to(&mut self, samples: &mut [i16]) {
            for s in samples {
                *s = (f64::from(*s) + self.sample()).round() as i16;
            }
        }
    }

    /// The noise standard deviation that puts a tone at `tone_dbfs` (per component power
    /// summed over `components`) `snr_db` above the noise.
    fn sigma_for(tone_dbfs: f64, components: usize, snr_db: f64) -> f64 {
        let amplitude = FULL_SCALE * 10f64.powf(tone_dbfs / 20.0);
        let power = components as f64 * amplitude * amplitude / 2.0;
        (power / 10f64.powf(snr_db / 10.0)).sqrt()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tone(hz: f64, dbfs: f64, duration: Duration) -> PlaylistItem {
        PlaylistItem::Tone {
            tone: Tone::single(hz, dbfs).unwrap(),
            duration,
        }
    }

    fn silence(duration: Duration) -> PlaylistItem {
        PlaylistItem::Silence { duration }
    }

    fn render(items: Vec<PlaylistItem>) -> Vec<i16> {
        let mut playlist = Playlist::new(items);
        let mut out = vec![0; usize::try_from(playlist.total_samples()).unwrap()];
        playlist.fill(&mut out);
        out
    }

    fn through(codec: Codec, samples: &[i16]) -> Vec<i16> {
        samples
            .iter()
            .map(|&s| codec.decode_sample(codec.encode_sample(s)))
            .collect()
    }

    fn detector() -> ToneDetector {
        ToneDetector::new(DetectorConfig::default()).unwrap()
    }

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

    #[test]
    fn silence_source_is_zero() {
        let mut out = [5i16; 160];
        Silence.fill(&mut out);
        assert_eq!(out, [0; 160]);
    }

    #[test]
    fn playlist_plays_items_in_order_frame_by_frame() {
        let pcm: Arc<[i16]> = Arc::from(vec![1000i16, -1000, 2000]);
        let mut playlist = Playlist::new(vec![
            tone(1000.0, -6.0, ms(25)),
            silence(ms(10)),
            PlaylistItem::Pcm(pcm),
            silence(Duration::ZERO),
            tone(500.0, -6.0, ms(5)),
        ]);
        assert_eq!(playlist.total_samples(), 200 + 80 + 3 + 40);
        assert_eq!(playlist.item_start(2), Some(280));
        assert_eq!(playlist.item_start(4), Some(283));
        assert_eq!(playlist.item_start(5), None);
        let mut out = Vec::new();
        let mut produced = 0;
        while out.len() < 480 {
            let mut frame = [0i16; 160];
            produced += playlist.fill_counted(&mut frame);
            out.extend_from_slice(&frame);
        }
        assert_eq!(produced, 323);
        assert!(playlist.is_finished());
        assert_eq!(playlist.position(), 480);
        // The first tone crosses a frame boundary without a phase jump.
        let mut reference = vec![0; 200];
        ToneGenerator::new(&Tone::single(1000.0, -6.0).unwrap()).fill(&mut reference);
        assert_eq!(&out[..200], &reference[..]);
        assert!(out[200..280].iter().all(|&s| s == 0));
        assert_eq!(&out[280..283], &[1000, -1000, 2000]);
        let mut second = vec![0; 40];
        ToneGenerator::new(&Tone::single(500.0, -6.0).unwrap()).fill(&mut second);
        assert_eq!(&out[283..323], &second[..]);
        assert!(out[323..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_looping_playlist_restarts_its_tones_at_phase_zero() {
        let items = vec![
            tone(1000.0, -6.0, ms(25)),
            tone(440.5, -6.0, ms(13)),
            silence(ms(5)),
        ];
        let once = render(items.clone());
        let mut playlist = Playlist::looping(items);
        let mut out = vec![0; once.len() * 3];
        for frame in out.chunks_mut(160) {
            assert_eq!(playlist.fill_counted(frame), frame.len());
        }
        for pass in out.chunks(once.len()) {
            assert_eq!(pass, &once[..]);
        }
    }

    #[test]
    fn looping_playlist_repeats_and_empty_one_is_silent() {
        let pcm: Arc<[i16]> = Arc::from(vec![1i16, 2, 3]);
        let mut playlist = Playlist::looping(vec![PlaylistItem::Pcm(pcm)]);
        let mut out = [0i16; 8];
        assert_eq!(playlist.fill_counted(&mut out), 8);
        assert_eq!(out, [1, 2, 3, 1, 2, 3, 1, 2]);
        assert!(!playlist.is_finished());
        let mut empty = Playlist::looping(vec![silence(Duration::ZERO)]);
        assert_eq!(empty.fill_counted(&mut out), 0);
        assert_eq!(out, [0; 8]);
        assert!(empty.is_finished());
    }

    #[test]
    fn detects_440_hz_at_minus_30_dbfs_under_white_noise_at_10_db_snr() {
        // 1 s of noise only, then 1 s of tone + noise; starting mid-block.
        let lead = 8000 + 37;
        let mut audio = vec![0i16; lead];
        audio.extend(render(vec![tone(440.0, -30.0, ms(1000))]));
        Noise::new(1, sigma_for(-30.0, 1, 10.0)).add_to(&mut audio);
        for codec in [None, Some(Codec::Pcmu), Some(Codec::Pcma)] {
            let audio = codec.map_or_else(|| audio.clone(), |c| through(c, &audio));
            let mut det = detector();
            let id = det
                .watch(
                    ToneQuery::single(440.0)
                        .unwrap()
                        .min_snr_db(6.0)
                        .min_duration(ms(200))
                        .tolerance_hz(2.0),
                )
                .unwrap();
            det.push(&audio);
            let found = det.detection(id).copied();
            let found = found.unwrap_or_else(|| panic!("not detected through {codec:?}"));
            let onset = i64::try_from(found.onset_sample).unwrap();
            assert!(
                (onset - lead as i64).abs() <= 160,
                "onset {onset} vs {lead}"
            );
            assert!((found.snr_db - 10.0).abs() < 1.5, "snr {}", found.snr_db);
            assert!(
                (found.level_dbfs + 30.0).abs() < 0.5,
                "level {}",
                found.level_dbfs
            );
            assert!(found.frequency_offset_hz.unwrap().abs() < 0.5);
            assert!(found.duration_samples >= 7680, "{found:?}");
            assert!(!det.is_silent(-40.0));
        }
    }

    #[test]
    fn four_hundred_forty_five_is_not_taken_for_440_under_a_tight_tolerance() {
        let mut audio = render(vec![tone(445.0, -20.0, ms(1000))]);
        Noise::new(2, sigma_for(-20.0, 1, 20.0)).add_to(&mut audio);
        let mut det = detector();
        let tight = det
            .watch(ToneQuery::single(440.0).unwrap().tolerance_hz(2.0))
            .unwrap();
        let right = det
            .watch(ToneQuery::single(445.0).unwrap().tolerance_hz(2.0))
            .unwrap();
        // With the phase check off, the 100 Hz wide main lobe accepts it: the tolerance is
        // what tells them apart.
        let loose = det
            .watch(ToneQuery::single(440.0).unwrap().tolerance_hz(25.0))
            .unwrap();
        det.push(&audio);
        assert_eq!(det.detection(tight), None);
        let found = det.detection(right).unwrap();
        assert!(found.frequency_offset_hz.unwrap().abs() < 0.5);
        assert!(det.detection(loose).is_some());
        assert_eq!(det.detection(loose).unwrap().frequency_offset_hz, None);
    }

    #[test]
    fn the_frequency_offset_is_measured() {
        let audio = through(Codec::Pcmu, &render(vec![tone(442.0, -20.0, ms(500))]));
        let mut det = detector();
        let id = det
            .watch(ToneQuery::single(440.0).unwrap().tolerance_hz(3.0))
            .unwrap();
        det.push(&audio);
        let offset = det.detection(id).unwrap().frequency_offset_hz.unwrap();
        assert!((offset - 2.0).abs() < 0.3, "{offset}");
    }

    #[test]
    fn silence_and_low_noise_are_silent_and_never_a_tone() {
        let mut quiet = vec![0i16; 16_000];
        Noise::new(3, 8.0).add_to(&mut quiet);
        for (name, audio) in [
            ("digital silence", vec![0i16; 16_000]),
            ("low noise", quiet),
        ] {
            let mut det = detector();
            let ids: Vec<WatchId> = [350.0, 440.0, 697.0, 1000.0, 1209.0, 2600.0]
                .iter()
                .map(|&hz| {
                    let query = ToneQuery::single(hz)
                        .unwrap()
                        .min_snr_db(0.0)
                        .min_level_dbfs(-90.0)
                        .min_duration(ms(20))
                        .tolerance_hz(25.0);
                    det.watch(query).unwrap()
                })
                .collect();
            det.push(&audio);
            for id in ids {
                assert_eq!(det.detection(id), None, "{name}");
            }
            assert!(det.is_silent(-60.0), "{name}: {}", det.max_block_rms_dbfs());
            assert!(det.rms_dbfs() < -60.0);
        }
        let mut det = detector();
        det.push(&[0; 1600]);
        assert_eq!(det.rms_dbfs(), f64::NEG_INFINITY);
        assert_eq!(det.last_block_rms_dbfs(), Some(f64::NEG_INFINITY));
        assert!(det.is_silent(-120.0));
    }

    #[test]
    fn a_quiet_tone_is_not_silent_and_levels_are_measured() {
        let audio = through(Codec::Pcma, &render(vec![tone(1000.0, -40.0, ms(400))]));
        let mut det = detector();
        det.push(&audio);
        assert!(!det.is_silent(-50.0));
        assert!((det.rms_dbfs() + 40.0).abs() < 0.2, "{}", det.rms_dbfs());
        assert!((det.max_block_rms_dbfs() + 40.0).abs() < 0.2);
        assert_eq!(det.blocks(), 20);
        assert_eq!(det.samples(), 3200);
    }

    #[test]
    fn onset_is_accurate_to_one_block() {
        for lead in [0usize, 1, 37, 80, 159, 160, 161, 1000, 2399] {
            let mut audio = vec![0i16; lead];
            audio.extend(render(vec![tone(1004.0, -25.0, ms(300))]));
            audio.extend(vec![0; 800]);
            let mut noise = Noise::new(lead as u64 + 10, sigma_for(-25.0, 1, 15.0));
            noise.add_to(&mut audio);
            let mut det = detector();
            let id = det
                .watch(ToneQuery::single(1004.0).unwrap().min_duration(ms(200)))
                .unwrap();
            det.push(&audio);
            let found = det.detection(id).unwrap();
            let error = found.onset_sample as i64 - lead as i64;
            assert!(
                error.abs() < 160,
                "lead {lead}: onset {}",
                found.onset_sample
            );
            // The run ends with the tone: its duration is the tone's, to a block or two.
            assert!((2080..=2400).contains(&found.duration_samples), "{found:?}");
            assert_eq!(found.onset(), samples_to_duration(found.onset_sample));
        }
    }

    #[test]
    fn a_dual_tone_is_detected_as_both_components() {
        let dual = PlaylistItem::Tone {
            tone: Tone::dual(697.0, 1209.0, -15.0).unwrap(),
            duration: ms(200),
        };
        let mut audio = through(Codec::Pcmu, &render(vec![silence(ms(30)), dual]));
        Noise::new(4, sigma_for(-15.0, 2, 20.0)).add_to(&mut audio);
        let mut det = detector();
        let both = det.watch(ToneQuery::dual(697.0, 1209.0).unwrap()).unwrap();
        // Each component alone carries half the tone power: about 0 dB against the rest.
        let low = det
            .watch(ToneQuery::single(697.0).unwrap().min_snr_db(-3.0))
            .unwrap();
        let high = det
            .watch(ToneQuery::single(1209.0).unwrap().min_snr_db(-3.0))
            .unwrap();
        let wrong_pair = det.watch(ToneQuery::dual(697.0, 1336.0).unwrap()).unwrap();
        let wrong_row = det
            .watch(ToneQuery::single(770.0).unwrap().min_snr_db(-3.0))
            .unwrap();
        det.push(&audio);
        let found = det.detection(both).unwrap();
        assert!(found.onset_sample.abs_diff(240) < 160);
        assert!((found.level_dbfs - (-15.0 + 3.01)).abs() < 0.5);
        assert!(det.detection(low).is_some());
        assert!(det.detection(high).is_some());
        assert_eq!(det.detection(wrong_pair), None);
        assert_eq!(det.detection(wrong_row), None);
    }

    fn signature(order: [f64; 3]) -> Vec<i16> {
        let mut items = vec![silence(ms(40))];
        for hz in order {
            items.push(tone(hz, -20.0, ms(100)));
            items.push(silence(ms(30)));
        }
        through(Codec::Pcma, &render(items))
    }

    fn signature_query() -> Vec<ToneQuery> {
        [697.0, 1209.0, 440.0]
            .iter()
            .map(|&hz| ToneQuery::single(hz).unwrap().min_duration(ms(60)))
            .collect()
    }

    #[test]
    fn a_tone_sequence_is_verified_in_order() {
        let mut audio = signature([697.0, 1209.0, 440.0]);
        Noise::new(5, sigma_for(-20.0, 1, 15.0)).add_to(&mut audio);
        let mut det = detector();
        let id = det.watch_sequence(&signature_query()).unwrap();
        // Pushed in awkward chunks.
        for chunk in audio.chunks(77) {
            det.push(chunk);
        }
        assert!(det.is_complete(id));
        let found = det.detections(id);
        assert_eq!(found.len(), 3);
        for (i, d) in found.iter().enumerate() {
            let truth = 320 + i as u64 * 1040;
            assert!(d.onset_sample.abs_diff(truth) < 160, "step {i}: {d:?}");
            assert!((640..=800).contains(&d.duration_samples), "step {i}: {d:?}");
        }
    }

    #[test]
    fn a_tone_sequence_out_of_order_fails() {
        let audio = signature([1209.0, 697.0, 440.0]);
        let mut det = detector();
        let id = det.watch_sequence(&signature_query()).unwrap();
        det.push(&audio);
        assert!(!det.is_complete(id));
        // 697 Hz is found (second), but 1209 Hz never comes after it.
        assert_eq!(det.detections(id).len(), 1);
        assert!(det.detections(id)[0].onset_sample.abs_diff(1360) < 160);
    }

    #[test]
    fn results_do_not_depend_on_chunking() {
        let mut audio = signature([697.0, 1209.0, 440.0]);
        Noise::new(6, sigma_for(-20.0, 1, 12.0)).add_to(&mut audio);
        let run = |chunk: usize| {
            let mut det = detector();
            let id = det.watch_sequence(&signature_query()).unwrap();
            for c in audio.chunks(chunk) {
                det.push(c);
            }
            det.detections(id).to_vec()
        };
        let whole = run(audio.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(run(1), whole);
        assert_eq!(run(160), whole);
        assert_eq!(run(161), whole);
    }

    #[test]
    fn longer_blocks_and_duration_rounding() {
        let mut det = ToneDetector::new(DetectorConfig { block_samples: 400 }).unwrap();
        assert!((det.max_tolerance_hz() - 10.0).abs() < 1e-9);
        let id = det
            .watch(
                ToneQuery::single(440.0)
                    .unwrap()
                    .min_duration(ms(120))
                    .tolerance_hz(1.0),
            )
            .unwrap();
        // 120 ms = 2.4 blocks of 50 ms → 3 blocks needed; 130 ms of tone starting on a block
        // boundary fills 2 whole blocks and 60 % of a third, which is below 6 dB SNR.
        det.push(&render(vec![tone(440.0, -20.0, ms(130)), silence(ms(100))]));
        assert_eq!(det.detection(id), None);
        let mut det = ToneDetector::new(DetectorConfig { block_samples: 400 }).unwrap();
        let id = det
            .watch(
                ToneQuery::single(440.0)
                    .unwrap()
                    .min_duration(ms(120))
                    .tolerance_hz(1.0),
            )
            .unwrap();
        det.push(&render(vec![tone(440.0, -20.0, ms(150)), silence(ms(100))]));
        assert_eq!(det.detection(id).unwrap().duration_samples, 1200);
    }

    #[test]
    fn detector_configuration_is_validated() {
        assert_eq!(
            ToneDetector::new(DetectorConfig { block_samples: 10 }).unwrap_err(),
            ToneError::BadBlock { samples: 10 }
        );
        assert!(ToneDetector::new(DetectorConfig {
            block_samples: 8001
        })
        .is_err());
        let mut det = detector();
        let q = ToneQuery::single(440.0).unwrap();
        assert_eq!(
            det.watch(q.tolerance_hz(0.0)),
            Err(ToneError::BadTolerance { hz: 0.0 })
        );
        assert!(det.watch(q.min_snr_db(f64::NAN)).is_err());
        assert!(det.watch(q.min_level_dbfs(f64::INFINITY)).is_err());
        assert_eq!(det.watch_sequence(&[]), Err(ToneError::EmptySequence));
        assert_eq!(det.detections(WatchId(99)), &[]);
        assert!(!det.is_complete(WatchId(99)));
        assert_eq!(
            ToneError::BadFrequency { hz: 5000.0 }.to_string(),
            "frequency 5000 Hz is outside 0 < f < 4000 Hz"
        );
        let tone = Tone::dual(941.0, 1477.0, -10.0).unwrap();
        assert_eq!(
            ToneQuery::for_tone(&tone).unwrap().frequencies(),
            &[941.0, 1477.0]
        );
    }
}
#[cfg(test)]
mod windowed_snr {
    use super::*;

    /// A clean tone whose blocks do not hold whole cycles (440 Hz in 20 ms) keeps a high SNR
    /// in every block, so a strict query finds it; with a rectangular window some blocks read
    /// ~17 dB and a 20 dB / 200 ms query failed.
    #[test]
    fn strict_queries_find_clean_tones_off_the_bin_grid() {
        for hz in [440.0, 697.0, 1209.0, 350.0, 3100.0] {
            let mut gen = ToneGenerator::new(&Tone::single(hz, -12.0).unwrap());
            let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
            let query = ToneQuery::single(hz)
                .unwrap()
                .min_snr_db(25.0)
                .min_duration(Duration::from_millis(400));
            let id = d.watch(query).unwrap();
            let mut pcm = [0i16; 160];
            let mut code = [0u8; 160];
            for _ in 0..50 {
                gen.fill(&mut pcm);
                crate::media::g711::encode_ulaw(&pcm, &mut code).unwrap();
                crate::media::g711::decode_ulaw(&code, &mut pcm).unwrap();
                d.push(&pcm);
            }
            let found = d
                .detection(id)
                .unwrap_or_else(|| panic!("{hz} Hz not found"));
            assert!(found.snr_db > 25.0, "{hz} Hz: {}", found.snr_db);
            assert_eq!(found.onset_sample, 0, "{hz} Hz");
        }
    }
}

#[cfg(test)]
mod close_dual_tones {
    use super::*;

    /// US dial tone (350+440 Hz, 90 Hz apart) and other call-progress tones are found with a
    /// strict query: the least-squares fit separates close components.
    #[test]
    fn close_components_are_separated() {
        for (lo, hi) in [
            (350.0, 440.0),
            (480.0, 620.0),
            (697.0, 1209.0),
            (941.0, 1336.0),
        ] {
            let mut gen = ToneGenerator::new(&Tone::dual(lo, hi, -12.0).unwrap());
            let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
            let query = ToneQuery::dual(lo, hi)
                .unwrap()
                .min_snr_db(20.0)
                .min_duration(Duration::from_millis(400));
            let id = d.watch(query).unwrap();
            let mut pcm = [0i16; 160];
            let mut code = [0u8; 160];
            for _ in 0..50 {
                gen.fill(&mut pcm);
                crate::media::g711::encode_alaw(&pcm, &mut code).unwrap();
                crate::media::g711::decode_alaw(&code, &mut pcm).unwrap();
                d.push(&pcm);
            }
            let found = d
                .detection(id)
                .unwrap_or_else(|| panic!("{lo}+{hi} Hz not found"));
            assert!(found.snr_db > 25.0, "{lo}+{hi}: {}", found.snr_db);
            // Only one of the two is not the dual tone.
            let mut single = ToneDetector::new(DetectorConfig::default()).unwrap();
            let only_lo = single
                .watch(ToneQuery::dual(lo, hi + 100.0).unwrap())
                .unwrap();
            let mut gen = ToneGenerator::new(&Tone::single(lo, -12.0).unwrap());
            for _ in 0..50 {
                gen.fill(&mut pcm);
                single.push(&pcm);
            }
            assert!(
                single.detection(only_lo).is_none(),
                "{lo} alone taken for a dual tone"
            );
        }
    }
}
