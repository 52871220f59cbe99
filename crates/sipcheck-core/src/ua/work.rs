//! Slow, pure computations a call's script asks for and waits on: the driver runs each
//! one off its loop (a blocking worker) and hands the result back, so that no call's
//! signalling waits for another call's computation.
//!
//! The script yields a [`Work`] ([`crate::ua::script::ScriptCommand::Work`]), the agent
//! hands it on ([`crate::ua::agent::Agent::poll_work`]), the driver calls [`Work::run`]
//! wherever it likes and returns the [`WorkResult`]
//! ([`crate::ua::agent::Agent::handle_work_done`]).

use std::sync::Arc;

use crate::media::matching::{self, Match, MatchError};
use crate::media::pesq::{self, PesqError, PesqScore};

/// A computation asked by a call's script.
#[derive(Debug, Clone)]
pub enum Work {
    /// Score received speech against its reference (ITU-T P.862).
    Pesq {
        /// The script's number for this computation.
        id: u32,
        /// The reference (8 kHz mono).
        reference: Arc<[i16]>,
        /// What was received (8 kHz mono).
        received: Arc<[i16]>,
    },
    /// Look for a reference recording in received audio (normalised cross-correlation).
    Match {
        /// The script's number for this computation.
        id: u32,
        /// The reference (8 kHz mono).
        reference: Arc<[i16]>,
        /// What was received (8 kHz mono).
        received: Arc<[i16]>,
    },
}

/// The result of a [`Work`].
#[derive(Debug, Clone, PartialEq)]
pub enum WorkResult {
    /// The result of [`Work::Pesq`].
    Pesq {
        /// The script's number for the computation.
        id: u32,
        /// The score, or why none.
        score: Result<PesqScore, PesqError>,
    },
    /// The result of [`Work::Match`].
    Match {
        /// The script's number for the computation.
        id: u32,
        /// The best match, or why none.
        found: Result<Match, MatchError>,
    },
}

impl WorkResult {
    /// The script's number for the computation.
    #[must_use]
    pub fn id(&self) -> u32 {
        match self {
            WorkResult::Pesq { id, .. } | WorkResult::Match { id, .. } => *id,
        }
    }
}

impl Work {
    /// Carry it out (slow: tens of milliseconds to seconds; pure, any thread).
    #[must_use]
    pub fn run(&self) -> WorkResult {
        match self {
            Work::Pesq {
                id,
                reference,
                received,
            } => WorkResult::Pesq {
                id: *id,
                score: pesq::score(reference, received),
            },
            Work::Match {
                id,
                reference,
                received,
            } => WorkResult::Match {
                id: *id,
                found: matching::similarity(reference, received),
            },
        }
    }
}
