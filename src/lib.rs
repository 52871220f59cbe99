//! sipcheck: a SIP/RTP voice test harness.
//!
//! This crate is the I/O shell around [`sipcheck_core`]: transports, the clock, the drivers
//! that run the core's state machines, the probes and the reporters. All protocol logic lives
//! in the core.

pub mod answer;
pub mod bridge;
pub mod compare;
pub mod drive;
pub mod exec;
pub mod exit;
pub mod merge;
pub mod probe;
pub mod report;
pub mod run;
pub mod signal;
pub mod terminal;

pub use sipcheck_core as core;
