//! The sans-IO core of sipcheck.
//!
//! Nothing in this crate opens a socket, spawns a task or reads a clock: every state machine
//! takes `now` as an argument, returns what it wants sent, and says when it next needs to be
//! woken (`poll_timeout`). The shell in the `sipcheck` crate owns the sockets and the clock.
//! `clippy.toml` beside this crate's manifest forbids the clock and socket APIs, so the rule is
//! checked by `cargo clippy`, not just a convention.

#![warn(missing_docs)]

pub mod capture;
pub mod ids;
pub mod media;
pub mod rtp;
pub mod scenario;
pub mod sdp;
pub mod sim;
pub mod sip;
mod slots;
pub mod stats;
pub mod ua;
