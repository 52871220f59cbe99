//! Goertzel tone detection: blocks, watched frequencies, queries and sequences (see the
//! [module documentation](super) for how a block matches).

use super::gaps::GapTracker;
use super::*;

/// The largest level difference, in dB, allowed between the two components of a dual tone.
pub const MAX_TWIST_DB: f64 = 10.0;

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
    /// Dropouts of a single tone after its onset.
    gaps: GapTracker,
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
    /// Gap tracking is paused (see [`ToneDetector::pause_gaps`]); watches added meanwhile
    /// start paused.
    gaps_paused: bool,
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
            gaps_paused: false,
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
            gaps: {
                let mut gaps = GapTracker::default();
                gaps.set_paused(self.gaps_paused);
                gaps
            },
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

    /// The gaps (at least [`MIN_GAP`] long) in the tone of `id` after its onset, and how many
    /// there were (more than kept when very many): single tones only, a sequence has none.
    #[must_use]
    pub fn gaps(&self, id: WatchId) -> (&[Gap], u64) {
        self.watches
            .get(id.0)
            .map_or((&[], 0), |w| (w.gaps.gaps(), w.gaps.count()))
    }

    /// Stops tracking gaps (the stream is on hold: what is open is dropped), or restarts it
    /// (from each tone's next matching block).
    pub fn pause_gaps(&mut self, paused: bool) {
        self.gaps_paused = paused;
        for watch in &mut self.watches {
            watch.gaps.set_paused(paused);
        }
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
        self.on_block_steps(block, block_samples, block_power, bins);
        if let ([step], [_]) = (self.steps.as_slice(), self.found.as_slice()) {
            let matched = step.evaluate(block_power, bins).is_some();
            self.gaps
                .on_block(block, block_samples, block_power, matched);
        }
    }

    fn on_block_steps(&mut self, block: u64, block_samples: u64, block_power: f64, bins: &[Bin]) {
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
    use crate::media::tone::tests::*;

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
