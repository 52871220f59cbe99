//! Conference parties: whose audio is in a conference's mix, and whether our own came back.
//!
//! In a conference each party hears the sum of the others, each possibly at its own level, and
//! re-encoded by the mixer. An audio signature ([`super::signature`]) does not survive that: two
//! codes summed at equal levels decode as neither. So each party plays one steady single tone of
//! its own, its **party tone**, and each listener runs one Goertzel filter per party frequency:
//! a sum of tones is still each tone, at its own bin, whatever the others do.
//!
//! # The plan
//! * **Frequencies**: the nine of the signature plan ([`PARTY_HZ`] = [`SIGNATURE_HZ`]): inside
//!   the G.711 band, above DTMF, away from the call-progress tones, none within 25 Hz of a
//!   harmonic or a second- or third-order intermodulation product of the set (what a mixer's
//!   clipping or the G.711 companding of a sum creates). All are multiples of 50 Hz, so over a
//!   20 ms block (160 samples: the DFT's bins are 50 Hz apart) they are orthogonal: each bin sees
//!   its own tone only, at any alignment, and the bins 50 Hz either side of a party frequency
//!   (never a party frequency) see none of them.
//! * **Level**: [`PARTY_LEVEL_DBFS`] (−20 dBFS) each, so that eight summed still fit in the
//!   16-bit range.
//!
//! # Listening
//! [`PartyListener`] cuts the received audio into 20 ms blocks. In a block, a party's tone is
//! **present** when its bin reads [`MIN_PARTY_DBFS`] (−50 dBFS) or louder and stands
//! [`MIN_CONTRAST_DB`] (10 dB) or more above the mean of the two bins 50 Hz either side of it:
//! a tone puts nothing there, noise and speech put about as much there as on the tone's bin. A
//! party is **heard** after [`HEARD_BLOCKS`] blocks (300 ms) of presence in one run (one block
//! missing inside a run is tolerated: a lost packet). The same rule on the listener's own
//! frequency finds its own audio sent back: an **echo**.

use super::signature::SIGNATURE_HZ;
use super::tone::{Tone, ToneError};
use super::{power_to_dbfs, SAMPLE_RATE};

/// The party frequencies in hertz: party `i` plays `PARTY_HZ[i]`.
pub const PARTY_HZ: [f64; 9] = SIGNATURE_HZ;

/// The most parties a conference check tells apart.
pub const MAX_PARTIES: usize = PARTY_HZ.len();

/// The level of a party tone, dBFS.
pub const PARTY_LEVEL_DBFS: f64 = -20.0;

/// The quietest party tone counted as present in a block, dBFS (a mixer may lower a party by
/// up to 30 dB and it is still heard).
pub const MIN_PARTY_DBFS: f64 = -50.0;

/// How far a party's bin must stand above its neighbours' (50 Hz either side), dB.
pub const MIN_CONTRAST_DB: f64 = 10.0;

/// Blocks of presence in one run that make a party heard (300 ms).
pub const HEARD_BLOCKS: u32 = 15;

/// Samples per analysis block (20 ms).
const BLOCK: usize = 160;

/// The spacing of the block's DFT bins, hertz.
const BIN_HZ: f64 = SAMPLE_RATE as f64 / BLOCK as f64;

/// A party of a conference check: which of [`PARTY_HZ`] it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Party(u8);

impl Party {
    /// Party `index`, if below [`MAX_PARTIES`].
    #[must_use]
    pub fn new(index: usize) -> Option<Self> {
        u8::try_from(index)
            .ok()
            .filter(|_| index < MAX_PARTIES)
            .map(Self)
    }

    /// Its index in [`PARTY_HZ`].
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Its frequency, hertz.
    #[must_use]
    pub fn hz(self) -> f64 {
        PARTY_HZ[self.index()]
    }

    /// The tone it plays, at `level_dbfs`.
    ///
    /// # Errors
    /// When the level is out of range (see [`Tone::single`]).
    pub fn tone(self, level_dbfs: f64) -> Result<Tone, ToneError> {
        Tone::single(self.hz(), level_dbfs)
    }
}

/// One Goertzel filter over a block.
#[derive(Debug, Clone, Copy)]
struct Bin {
    coeff: f64,
    s1: f64,
    s2: f64,
}

impl Bin {
    fn new(hz: f64) -> Self {
        let w = 2.0 * std::f64::consts::PI * hz / f64::from(SAMPLE_RATE);
        Self {
            coeff: 2.0 * w.cos(),
            s1: 0.0,
            s2: 0.0,
        }
    }

    #[inline]
    fn push(&mut self, x: f64) {
        let s = x + self.coeff * self.s1 - self.s2;
        self.s2 = self.s1;
        self.s1 = s;
    }

    /// The level of the block's component at this bin, sine-referenced dBFS, and reset.
    fn take_dbfs(&mut self) -> f64 {
        let power = self.s1 * self.s1 + self.s2 * self.s2 - self.coeff * self.s1 * self.s2;
        self.s1 = 0.0;
        self.s2 = 0.0;
        // A sine of amplitude A at the bin gives |X|² = (A·N/2)²; its mean square is A²/2.
        let n = BLOCK as f64;
        power_to_dbfs(2.0 * power.max(0.0) / (n * n))
    }
}

/// What one party's bin has shown.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    /// Blocks of presence in the current run.
    run: u32,
    /// Blocks missing since the run's last present block.
    missing: u32,
    /// Heard: a run reached [`HEARD_BLOCKS`].
    heard: bool,
    /// The loudest level of a present block, dBFS.
    loudest: Option<f64>,
}

/// Listens for party tones in received audio (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct PartyListener {
    /// Per party: its bin, then the bins 50 Hz below and above it.
    bins: [[Bin; 3]; MAX_PARTIES],
    tracks: [Track; MAX_PARTIES],
    filled: usize,
    blocks: u64,
}

impl Default for PartyListener {
    fn default() -> Self {
        Self::new()
    }
}

impl PartyListener {
    /// A listener that has heard nothing.
    #[must_use]
    pub fn new() -> Self {
        Self {
            bins: PARTY_HZ.map(|hz| [Bin::new(hz), Bin::new(hz - BIN_HZ), Bin::new(hz + BIN_HZ)]),
            tracks: [Track::default(); MAX_PARTIES],
            filled: 0,
            blocks: 0,
        }
    }

    /// Adds received audio (any number of samples).
    pub fn push(&mut self, samples: &[i16]) {
        for &x in samples {
            let x = f64::from(x);
            for party in &mut self.bins {
                for bin in party {
                    bin.push(x);
                }
            }
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                self.end_block();
            }
        }
    }

    fn end_block(&mut self) {
        self.blocks += 1;
        for (bins, track) in self.bins.iter_mut().zip(&mut self.tracks) {
            let [own, below, above] = bins;
            let level = own.take_dbfs();
            let below = below.take_dbfs();
            let above = above.take_dbfs();
            // The neighbours' mean power, in dB (−∞ when both are digital silence).
            let floor =
                10.0 * ((10f64.powf(below / 10.0) + 10f64.powf(above / 10.0)) / 2.0).log10();
            let present = level >= MIN_PARTY_DBFS && level - floor >= MIN_CONTRAST_DB;
            if present {
                track.run += 1;
                track.missing = 0;
                track.loudest = Some(track.loudest.map_or(level, |l: f64| l.max(level)));
                if track.run >= HEARD_BLOCKS {
                    track.heard = true;
                }
            } else if track.run > 0 {
                track.missing += 1;
                if track.missing > 1 {
                    track.run = 0;
                    track.missing = 0;
                }
            }
        }
    }

    /// Whether `party` has been heard.
    #[must_use]
    pub fn has_heard(&self, party: Party) -> bool {
        self.tracks[party.index()].heard
    }

    /// Whether `party`'s tone is present now (a run under way, not yet or already heard).
    #[must_use]
    pub fn is_present(&self, party: Party) -> bool {
        self.tracks[party.index()].run > 0
    }

    /// The loudest level `party`'s tone was present at, dBFS, if ever.
    #[must_use]
    pub fn loudest_dbfs(&self, party: Party) -> Option<f64> {
        self.tracks[party.index()].loudest
    }

    /// Whole 20 ms blocks listened to.
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The verdict so far for a party that expects to hear `expected` and plays `own` (if it
    /// plays a party tone): an echo first, then anyone missing.
    #[must_use]
    pub fn verdict(&self, expected: &[Party], own: Option<Party>) -> PartiesVerdict {
        if let Some(own) = own.filter(|&o| self.has_heard(o)) {
            return PartiesVerdict::Echo {
                level_dbfs: self.loudest_dbfs(own).unwrap_or(MIN_PARTY_DBFS),
            };
        }
        let missing: Vec<Party> = expected
            .iter()
            .copied()
            .filter(|&p| !self.has_heard(p))
            .collect();
        if missing.is_empty() {
            PartiesVerdict::Verified
        } else {
            PartiesVerdict::NotHeard { missing }
        }
    }
}

/// What a conference party heard of the others.
#[derive(Debug, Clone, PartialEq)]
pub enum PartiesVerdict {
    /// Every expected party heard, and not our own audio.
    Verified,
    /// Our own party tone came back, at this level (the loudest block), dBFS.
    Echo {
        /// dBFS.
        level_dbfs: f64,
    },
    /// These expected parties were not heard (so far).
    NotHeard {
        /// Who, in the order expected.
        missing: Vec<Party>,
    },
}

impl PartyListener {
    /// The verdict, when it is decisive before the time is up: an echo, or every party heard
    /// while our own tone is not under way (a run of it that may yet become an echo defers
    /// the pass).
    #[must_use]
    pub fn decisive(&self, expected: &[Party], own: Option<Party>) -> Option<PartiesVerdict> {
        let verdict = self.verdict(expected, own);
        match verdict {
            PartiesVerdict::Echo { .. } => Some(verdict),
            PartiesVerdict::Verified if !own.is_some_and(|o| self.is_present(o)) => Some(verdict),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
