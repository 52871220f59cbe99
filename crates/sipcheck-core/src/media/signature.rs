//! Per-call audio signatures: each call and direction plays its own short code of dual tones,
//! and the far end decodes which code it heard — proof that *this* call's audio arrived at
//! *that* end, and a name for the call whose audio arrived instead (crossed audio).
//!
//! # The plan
//! * **Frequencies**: nine, [`SIGNATURE_HZ`], all in 1750–3100 Hz, inside the 300–3400 Hz
//!   G.711 band and above the whole DTMF range (697–1633 Hz) and its neighbourhood (≥ 3.5 %
//!   away), ≥ 30 Hz from the DTMF second harmonics; ≥ 40 Hz from the call-progress tones (350,
//!   400, 425, 440, 450, 480, 620 Hz) and the 1 kHz test tone and ≥ 30 Hz from their second
//!   and third harmonics; none lies within 25 Hz of a harmonic (2f, 3f) or intermodulation
//!   product (f₁ ± f₂, 2f₁ ± f₂) of the set itself. All are multiples of 50 Hz, ≥ 100 Hz
//!   apart: over any 20 ms block (160 samples) they are orthogonal, so each Goertzel bin
//!   sees its own tone only, whatever the block's alignment.
//! * **Symbols**: a symbol is two of the nine frequencies played together (a dual tone) for
//!   [`SYMBOL_MS`] ms: 36 pairs. The pair of the lowest and the highest frequency is the
//!   **sync** symbol; the other 35 carry data.
//! * **Codes**: a code is [`CODE_SYMBOLS`] data symbols, no symbol equal to the one before it
//!   (so each symbol is one unbroken run of blocks): 35 · 34 · 34 = 40,460 codes
//!   ([`SignatureCode::CAPACITY`]), enough for 20,230 concurrent calls × 2 directions.
//! * **Frame**: sync, the code's three symbols, then the frame's **index** symbol: 500 ms,
//!   repeated for the whole play, so a stream that joins late (or loses its start) still
//!   decodes the next repetition, and the sync tells the decoder where a code starts. The
//!   index is a data symbol other than the code's last one (34 values): frame *k* of the play
//!   carries index *k* mod 34, so a pass of the loop is [`LOOP_FRAMES`] frames (17 s) and a
//!   decoded frame names its place in it — what makes the mouth-to-ear delay unambiguous up
//!   to a pass (see [`mouth_to_ear`]).
//!
//! # Decoding
//! [`SignatureDecoder`] runs one Goertzel filter per plan frequency (nine bins) over 20 ms
//! blocks. A block is a symbol when its two strongest bins are each at −50 dBFS or louder,
//! within 10 dB of each other, the third strongest bin is ≥ 10 dB under the weaker of the two,
//! and the pair stands ≥ 10 dB above the rest of the block's power. Runs of 3–6 blocks of one
//! symbol (one unclassified block inside a run or between two runs is tolerated: a lost packet,
//! or the block that straddles two symbols) make the symbol stream; a sync followed by three
//! data symbols is one frame of a code. A code is **heard** once decoded from
//! [`CONFIRM_FRAMES`] frames: a single decode could be one misread symbol away from another
//! code, two identical decodes are not.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::tone::{Playlist, PlaylistItem, Tone};
use super::{power_to_dbfs, FULL_SCALE, SAMPLE_RATE};

/// The plan's frequencies in hertz, lowest first.
pub const SIGNATURE_HZ: [f64; 9] = [
    1750.0, 1950.0, 2050.0, 2200.0, 2300.0, 2500.0, 2600.0, 2750.0, 3100.0,
];

/// The length of one symbol, in milliseconds.
pub const SYMBOL_MS: u64 = 100;

/// Data symbols per code.
pub const CODE_SYMBOLS: usize = 3;

/// Identical decodes needed before a code counts as heard.
pub const CONFIRM_FRAMES: u32 = 2;

/// The level of each component of a signature's dual tones, dBFS.
pub const SIGNATURE_LEVEL_DBFS: f64 = -16.0;

/// Samples per analysis block (20 ms: one RTP frame).
const BLOCK: usize = 160;

/// Data symbols (pairs other than the sync pair).
const DATA_SYMBOLS: u32 = 35;

/// The index of the sync pair among the 36 pairs (lowest with highest frequency).
const SYNC: u8 = 7;

/// A symbol run shorter than this many blocks is noise (a symbol is 5 blocks).
const MIN_RUN: u32 = 3;

/// A symbol run longer than this many blocks is a steady tone, not a signature.
const MAX_RUN: u32 = 6;

/// Blocks with audio above −50 dBFS, with no code heard, that make the audio "wrong" rather
/// than absent (200 ms).
pub const WRONG_AUDIO_BLOCKS: u64 = 10;

/// The level under which a block is silence, dBFS.
const SILENCE_DBFS: f64 = -50.0;

/// At most this many distinct codes are remembered per decoder (memory stays bounded).
const MAX_CODES: usize = 16;

/// The two frequency indices of pair `p` (0..36), pairs in lexicographic order.
fn pair(p: u8) -> (usize, usize) {
    let mut k = 0u8;
    for a in 0..SIGNATURE_HZ.len() {
        for b in a + 1..SIGNATURE_HZ.len() {
            if k == p {
                return (a, b);
            }
            k += 1;
        }
    }
    unreachable!("pair index {p} out of range")
}

/// The pair index (0..36) of frequencies `a < b`.
fn pair_index(a: usize, b: usize) -> u8 {
    let n = SIGNATURE_HZ.len();
    // Pairs before row a: a·n − a(a+1)/2.
    let before = a * n - a * (a + 1) / 2;
    u8::try_from(before + (b - a - 1)).unwrap_or(u8::MAX)
}

/// Data symbol `d` (0..35) as a pair index (skipping the sync pair).
fn data_pair(d: u32) -> u8 {
    let d = u8::try_from(d).unwrap_or(u8::MAX);
    if d < SYNC {
        d
    } else {
        d + 1
    }
}

/// `d` counted among the data symbols other than `before` (0..34 → 0..35, skipping it).
fn skip(d: u32, before: u32) -> u32 {
    if d < before {
        d
    } else {
        d + 1
    }
}

/// `d` (0..35, not `before`) counted among the data symbols other than `before` (0..34).
fn unskip(d: u32, before: u32) -> u32 {
    if d < before {
        d
    } else {
        d - 1
    }
}

/// The data symbol (0..35) of a pair index, `None` for the sync pair.
fn pair_data(p: u8) -> Option<u32> {
    match p.cmp(&SYNC) {
        std::cmp::Ordering::Less => Some(u32::from(p)),
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(u32::from(p - 1)),
    }
}

/// One call's signature in one direction: a number in `0..CAPACITY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignatureCode(u32);

impl SignatureCode {
    /// The number of distinct codes: 35 · 34 · 34.
    pub const CAPACITY: u32 = DATA_SYMBOLS * (DATA_SYMBOLS - 1) * (DATA_SYMBOLS - 1);

    /// Code `n`, if `n < CAPACITY`.
    #[must_use]
    pub fn new(n: u32) -> Option<Self> {
        (n < Self::CAPACITY).then_some(Self(n))
    }

    /// The code of call number `call` (counted from 0 in a run) in one direction: the caller
    /// plays `2·call`, the callee `2·call + 1` (modulo the capacity).
    #[must_use]
    pub fn for_call(call: u64, callee: bool) -> Self {
        let pairs = u64::from(Self::CAPACITY / 2);
        let n = (call % pairs) * 2 + u64::from(callee);
        Self(u32::try_from(n).unwrap_or(0))
    }

    /// The call number and direction (`true` for the callee's) a code stands for, as
    /// [`SignatureCode::for_call`] assigns them (the first 20,230 calls).
    #[must_use]
    pub fn call(self) -> (u64, bool) {
        (u64::from(self.0 / 2), self.0 % 2 == 1)
    }

    /// The code's number.
    #[must_use]
    pub fn number(self) -> u32 {
        self.0
    }

    /// The code's data symbols (0..35).
    fn data(self) -> [u32; CODE_SYMBOLS] {
        let base = DATA_SYMBOLS - 1;
        let d1 = self.0 / (base * base);
        let r = self.0 % (base * base);
        let d2 = skip(r / base, d1);
        let d3 = skip(r % base, d2);
        [d1, d2, d3]
    }

    /// The code's data symbols as pair indices.
    fn symbols(self) -> [u8; CODE_SYMBOLS] {
        self.data().map(data_pair)
    }

    /// The index symbol (a pair index) of frame `index` (mod [`LOOP_FRAMES`]) of this code:
    /// a data symbol other than the code's last.
    fn index_symbol(self, index: u32) -> u8 {
        let [.., d3] = self.data();
        data_pair(skip(index % LOOP_FRAMES, d3))
    }

    /// The frame index an index symbol of this code stands for, if it is one.
    fn frame_index(self, symbol: u8) -> Option<u32> {
        let [.., d3] = self.data();
        let d = pair_data(symbol)?;
        match d.cmp(&d3) {
            std::cmp::Ordering::Less => Some(d),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(d - 1),
        }
    }

    /// The code spelled by three pair indices, if they are data symbols, none equal to the
    /// one before it.
    fn from_symbols(symbols: [u8; CODE_SYMBOLS]) -> Option<Self> {
        let [d1, d2, d3] = symbols.map(pair_data);
        let (d1, d2, d3) = (d1?, d2?, d3?);
        if d1 == d2 || d2 == d3 {
            return None;
        }
        let base = DATA_SYMBOLS - 1;
        Self::new(d1 * base * base + unskip(d2, d1) * base + unskip(d3, d2))
    }

    /// The frequencies of each symbol of frame `index` of a pass (sync first, the index
    /// symbol last), in hertz.
    #[must_use]
    pub fn frame(self, index: u32) -> [(f64, f64); FRAME_SYMBOLS] {
        let hz = |p: u8| {
            let (a, b) = pair(p);
            (SIGNATURE_HZ[a], SIGNATURE_HZ[b])
        };
        let [s1, s2, s3] = self.symbols();
        [
            hz(SYNC),
            hz(s1),
            hz(s2),
            hz(s3),
            hz(self.index_symbol(index)),
        ]
    }

    /// What plays the code: the [`LOOP_FRAMES`] frames of a pass, looping, each component at
    /// `level_dbfs`.
    ///
    /// # Errors
    /// A [`super::tone::ToneError`] for a level that is not finite or above 0 dBFS.
    pub fn playlist(self, level_dbfs: f64) -> Result<Playlist, super::tone::ToneError> {
        let items = (0..LOOP_FRAMES)
            .flat_map(|index| self.frame(index))
            .map(|(lo, hi)| {
                Ok(PlaylistItem::Tone {
                    tone: Tone::dual(lo, hi, level_dbfs)?,
                    duration: Duration::from_millis(SYMBOL_MS),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Playlist::looping(items))
    }
}

impl fmt::Display for SignatureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The decoder's nine Goertzel filters, one array per term (so that one sample updates
/// all nine in a few vector instructions), in single precision: over one 160-sample block
/// of 16-bit audio the rounding stays some 140 dB under the signal, far below the 10 dB
/// margins the classification asks for.
#[derive(Debug, Clone, Copy)]
struct Bins {
    coeff: [f32; 9],
    s1: [f32; 9],
    s2: [f32; 9],
}

/// A run of blocks of one symbol.
#[derive(Debug, Clone, Copy)]
struct Run {
    symbol: u8,
    blocks: u32,
    /// Whether the last block was unclassified (tolerated once).
    gap: bool,
    /// When the run's first block began to play, when known.
    start: Option<Instant>,
}

/// Decodes the signature codes in a received stream (see the module documentation).
///
/// Cost: nine Goertzel filters over each sample, a handful of comparisons per 20 ms block;
/// memory is bounded (at most 16 distinct codes are remembered).
#[derive(Debug, Clone)]
pub struct SignatureDecoder {
    bins: Bins,
    filled: usize,
    energy: f64,
    run: Option<Run>,
    /// The data symbols seen since the last sync, while the stream stays contiguous.
    frame: Option<Vec<u8>>,
    heard: Vec<(SignatureCode, u32)>,
    loud_blocks: u64,
    blocks: u64,
    /// When the current frame's sync began to play, when known.
    frame_start: Option<Instant>,
    /// The code of the current frame, once its three symbols are decoded.
    frame_code: Option<SignatureCode>,
    /// When the current block's first sample played, when known.
    block_start: Option<Instant>,
    /// The last [`MAX_ONSETS`] frames decoded with the time their sync began to play.
    onsets: VecDeque<(SignatureCode, Instant)>,
}

/// At most this many frame onsets are remembered per decoder (the last 16 s of a stream).
pub const MAX_ONSETS: usize = 32;

/// Symbols per frame: the sync, the code's, the frame's index.
pub const FRAME_SYMBOLS: usize = CODE_SYMBOLS + 2;

/// Frames in one pass of a signature's loop (the index symbol's values).
pub const LOOP_FRAMES: u32 = DATA_SYMBOLS - 1;

/// The length of one frame (sync, the code's symbols, the index): the code's period.
pub const FRAME: Duration = Duration::from_millis(SYMBOL_MS * FRAME_SYMBOLS as u64);

/// The length of one pass of the loop ([`LOOP_FRAMES`] frames, 17 s): the period of the
/// whole signal, and the range of [`mouth_to_ear`].
pub const LOOP: Duration =
    Duration::from_millis(SYMBOL_MS * FRAME_SYMBOLS as u64 * LOOP_FRAMES as u64);

/// The decoder's resolution: one analysis block.
pub const BLOCK_DURATION: Duration = Duration::from_millis(20);

impl Default for SignatureDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SignatureDecoder {
    /// A decoder that has heard nothing.
    #[must_use]
    pub fn new() -> Self {
        let bins = Bins {
            coeff: SIGNATURE_HZ.map(|hz| {
                (2.0 * (2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE)).cos()) as f32
            }),
            s1: [0.0; 9],
            s2: [0.0; 9],
        };
        Self {
            bins,
            filled: 0,
            energy: 0.0,
            run: None,
            frame: None,
            heard: Vec::new(),
            loud_blocks: 0,
            blocks: 0,
            frame_start: None,
            frame_code: None,
            block_start: None,
            onsets: VecDeque::new(),
        }
    }

    /// Feeds received audio; chunks may have any length.
    pub fn push(&mut self, samples: &[i16]) {
        self.push_at(samples, None);
    }

    /// Feeds received audio whose first sample played out at `at` (the rest follow at the
    /// sample rate): the frames decoded then carry the time their sync began to play (see
    /// [`Self::onsets`]).
    pub fn push_at(&mut self, mut samples: &[i16], at: Option<Instant>) {
        let mut pushed = 0u64;
        while !samples.is_empty() {
            if self.filled == 0 {
                self.block_start = at.map(|t| t + samples_duration(pushed));
            }
            let n = (BLOCK - self.filled).min(samples.len());
            pushed += n as u64;
            let (chunk, rest) = samples.split_at(n);
            for &x in chunk {
                let wide = f64::from(x);
                self.energy += wide * wide;
                let x = f32::from(x);
                let b = &mut self.bins;
                for k in 0..9 {
                    // x − s₂ first: it does not wait for s₁, so each sample's update is one
                    // multiply and one add long on the filter's critical path.
                    let s0 = b.coeff[k] * b.s1[k] + (x - b.s2[k]);
                    b.s2[k] = b.s1[k];
                    b.s1[k] = s0;
                }
            }
            self.filled += n;
            if self.filled == BLOCK {
                self.finish_block();
            }
            samples = rest;
        }
    }

    fn finish_block(&mut self) {
        let n = BLOCK as f64;
        let block_power = self.energy / n;
        let mut powers = [0.0f64; 9];
        let b = &mut self.bins;
        for (k, p) in powers.iter_mut().enumerate() {
            // |X(ω)|² scaled to the mean square of the component.
            let (s1, s2) = (f64::from(b.s1[k]), f64::from(b.s2[k]));
            let mag = s1 * s1 + s2 * s2 - f64::from(b.coeff[k]) * s1 * s2;
            *p = 2.0 * mag.max(0.0) / (n * n);
        }
        b.s1 = [0.0; 9];
        b.s2 = [0.0; 9];
        self.energy = 0.0;
        self.filled = 0;
        self.blocks += 1;
        if power_to_dbfs(block_power) >= SILENCE_DBFS {
            self.loud_blocks += 1;
        }
        let symbol = classify(&powers, block_power);
        self.on_block(symbol);
    }

    fn on_block(&mut self, symbol: Option<u8>) {
        match (symbol, self.run) {
            (Some(s), Some(run)) if run.symbol == s => {
                self.run = Some(Run {
                    symbol: s,
                    blocks: run.blocks + 1 + u32::from(run.gap),
                    gap: false,
                    start: run.start,
                });
            }
            (Some(s), _) => {
                if let Some(run) = self.run.take() {
                    self.close(run);
                }
                self.run = Some(Run {
                    symbol: s,
                    blocks: 1,
                    gap: false,
                    start: self.block_start,
                });
            }
            (None, Some(run)) if !run.gap => self.run = Some(Run { gap: true, ..run }),
            (None, Some(run)) => {
                self.run = None;
                self.close(run);
                self.frame = None;
            }
            (None, None) => self.frame = None,
        }
    }

    /// A run is over: a symbol of the stream, or a break in it.
    fn close(&mut self, run: Run) {
        if !(MIN_RUN..=MAX_RUN).contains(&run.blocks) {
            self.frame = None;
            return;
        }
        if run.symbol == SYNC {
            self.frame = Some(Vec::with_capacity(CODE_SYMBOLS));
            self.frame_start = run.start;
            self.frame_code = None;
            return;
        }
        let Some(frame) = self.frame.as_mut() else {
            return;
        };
        if let Some(code) = self.frame_code.take() {
            // The frame's index: the time its pass of the loop began to play.
            self.frame = None;
            let pass_start = code.frame_index(run.symbol).and_then(|index| {
                let at = self.frame_start.take()?;
                at.checked_sub(FRAME * index)
            });
            if let Some(at) = pass_start {
                if self.onsets.len() == MAX_ONSETS {
                    self.onsets.pop_front();
                }
                self.onsets.push_back((code, at));
            }
            return;
        }
        frame.push(run.symbol);
        if frame.len() == CODE_SYMBOLS {
            let symbols = [frame[0], frame[1], frame[2]];
            match SignatureCode::from_symbols(symbols) {
                Some(code) => {
                    self.record(code);
                    self.frame_code = Some(code);
                }
                None => self.frame = None,
            }
        }
    }

    fn record(&mut self, code: SignatureCode) {
        if let Some(entry) = self.heard.iter_mut().find(|(c, _)| *c == code) {
            entry.1 += 1;
        } else if self.heard.len() < MAX_CODES {
            self.heard.push((code, 1));
        }
    }

    /// Every code decoded so far, with the number of frames it was decoded from.
    #[must_use]
    pub fn decoded(&self) -> &[(SignatureCode, u32)] {
        &self.heard
    }

    /// The codes heard (decoded from at least [`CONFIRM_FRAMES`] frames), in the order first
    /// decoded.
    pub fn heard(&self) -> impl Iterator<Item = SignatureCode> + '_ {
        self.heard
            .iter()
            .filter(|(_, n)| *n >= CONFIRM_FRAMES)
            .map(|(c, _)| *c)
    }

    /// Whether `code` has been heard.
    #[must_use]
    pub fn has_heard(&self, code: SignatureCode) -> bool {
        self.heard().any(|c| c == code)
    }

    /// The last [`MAX_ONSETS`] frames decoded whole (their index too) from audio fed with
    /// [`Self::push_at`], oldest first: the code, and when the pass of the loop the frame
    /// belongs to began to play — when the first block of the frame's sync began to play
    /// (the block where the decoder first classified the sync: up to one block after the
    /// sync's first sample when the block straddles the symbol boundary), less the frame's
    /// index × [`FRAME`].
    pub fn onsets(&self) -> impl Iterator<Item = (SignatureCode, Instant)> + '_ {
        self.onsets.iter().copied()
    }

    /// Blocks (20 ms) with audio above −50 dBFS so far.
    #[must_use]
    pub fn loud_blocks(&self) -> u64 {
        self.loud_blocks
    }

    /// Blocks analysed so far.
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The verdict for one direction: `expected` is the code that should arrive; `own` is the
    /// code this end plays (heard back, it is an echo).
    #[must_use]
    pub fn verdict(&self, expected: SignatureCode, own: Option<SignatureCode>) -> SignatureVerdict {
        if let Some(other) = self.heard().find(|&c| c != expected && Some(c) != own) {
            return SignatureVerdict::Crossed {
                heard: other,
                also_expected: self.has_heard(expected),
            };
        }
        if self.has_heard(expected) {
            return SignatureVerdict::Verified;
        }
        if let Some(own) = own.filter(|&o| self.has_heard(o)) {
            return SignatureVerdict::Echo { own };
        }
        if self.loud_blocks >= WRONG_AUDIO_BLOCKS {
            SignatureVerdict::WrongAudio {
                loud: Duration::from_millis(self.loud_blocks * 20),
            }
        } else {
            SignatureVerdict::NoAudio
        }
    }
}

/// The duration of `n` samples at the G.711 rate.
fn samples_duration(n: u64) -> Duration {
    Duration::from_micros(n * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// The mouth-to-ear delay of one direction: `sent` are the times the sender played the
/// first sample of each of its recent passes of the signature's loop (one every [`LOOP`]),
/// oldest first; `onsets` the times the receiver's playout began each pass, as
/// [`SignatureDecoder::onsets`] infers them from the frames of that signature it decoded
/// (both on one clock). Each onset pairs with the latest pass sent at most [`LOOP`] −
/// [`BLOCK_DURATION`] before it (or at most one block after it: the decoder's block
/// alignment); the delay is the median of the pairs, `None` when none pairs. The frame
/// index makes the pairing unambiguous up to a pass: a delay of [`LOOP`] −
/// [`BLOCK_DURATION`] or more (16.98 s) is beyond the measure's range (it pairs with a
/// later pass, or none).
#[must_use]
pub fn mouth_to_ear(sent: &[Instant], onsets: &[Instant]) -> Option<Duration> {
    let mut delays: Vec<Duration> = onsets
        .iter()
        .filter_map(|&onset| {
            sent.iter().rev().find_map(|&s| {
                if onset >= s {
                    let d = onset - s;
                    (d < LOOP - BLOCK_DURATION).then_some(d)
                } else {
                    (s - onset <= BLOCK_DURATION).then_some(Duration::ZERO)
                }
            })
        })
        .collect();
    if delays.is_empty() {
        return None;
    }
    delays.sort_unstable();
    Some(delays[delays.len() / 2])
}

/// The symbol (pair index) of one block, if it is one (see the module documentation).
fn classify(powers: &[f64; 9], block_power: f64) -> Option<u8> {
    let min_component = FULL_SCALE * FULL_SCALE / 2.0 * 10f64.powf(SILENCE_DBFS / 10.0);
    // The three strongest bins, a ≥ b ≥ c.
    let mut order: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    order.sort_unstable_by(|&x, &y| powers[y].total_cmp(&powers[x]));
    let [a, b, c, ..] = order;
    let (pa, pb, pc) = (powers[a], powers[b], powers[c]);
    let pair_power = pa + pb;
    let rest = (block_power - pair_power).max(block_power * 1e-6);
    let clear =
        pb >= min_component && pb * 10.0 >= pa && pc * 10.0 <= pb && pair_power >= 10.0 * rest;
    clear.then(|| pair_index(a.min(b), a.max(b)))
}

/// What one end heard of the signature it expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVerdict {
    /// The expected code was heard, and no other call's.
    Verified,
    /// Another call's code was heard (`also_expected`: alongside the expected one).
    Crossed {
        /// The code heard.
        heard: SignatureCode,
        /// Whether the expected code was heard too.
        also_expected: bool,
    },
    /// Only this end's own code came back: the far end echoes (or loops) the audio.
    Echo {
        /// The code heard back.
        own: SignatureCode,
    },
    /// Audio arrived, but no code in it.
    WrongAudio {
        /// How much of it was above −50 dBFS.
        loud: Duration,
    },
    /// Nothing audible arrived.
    NoAudio,
}

impl SignatureVerdict {
    /// Whether the direction is verified.
    #[must_use]
    pub fn passed(&self) -> bool {
        matches!(self, SignatureVerdict::Verified)
    }

    /// A short stable label for the reports: `verified`, `echo`, `crossed_audio`,
    /// `wrong_audio`, `no_audio`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            SignatureVerdict::Verified => "verified",
            SignatureVerdict::Echo { .. } => "echo",
            SignatureVerdict::Crossed { .. } => "crossed_audio",
            SignatureVerdict::WrongAudio { .. } => "wrong_audio",
            SignatureVerdict::NoAudio => "no_audio",
        }
    }
}

/// A direction of a call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioDirection {
    /// From the caller to the callee.
    CallerToCallee,
    /// From the callee to the caller.
    CalleeToCaller,
}

impl fmt::Display for AudioDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioDirection::CallerToCallee => "caller → callee",
            AudioDirection::CalleeToCaller => "callee → caller",
        })
    }
}

/// The one-way direction of a call from what each end heard: `Some(missing)` when one
/// direction is verified and nothing audible arrived the other way.
#[must_use]
pub fn one_way(
    caller_heard: &SignatureVerdict,
    callee_heard: &SignatureVerdict,
) -> Option<AudioDirection> {
    match (caller_heard, callee_heard) {
        (SignatureVerdict::Verified, SignatureVerdict::NoAudio) => {
            Some(AudioDirection::CallerToCallee)
        }
        (SignatureVerdict::NoAudio, SignatureVerdict::Verified) => {
            Some(AudioDirection::CalleeToCaller)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
