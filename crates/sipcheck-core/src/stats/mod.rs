//! What a run produces and what it is judged by: each call's outcome record and its SIP
//! ladder, filled once at the call's end ([`outcome`], [`ladder`]); the aggregate of a run's
//! records ([`metrics`]); and the verdict over the scenario's thresholds ([`verdict`]).
//! Nothing here reads a clock or writes anywhere: the shell's reporters format these figures.

pub mod compare;
pub mod distribution;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixture;
pub mod hdrlog;
pub mod kept_rows;
pub mod ladder;
pub mod merge;
pub mod metrics;
pub mod outcome;
pub mod pairing;
pub mod record;
pub mod series;
pub mod verdict;
