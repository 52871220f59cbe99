//! RTP (RFC 3550/3551): packets, the paced sender schedule and receiver statistics.
//!
//! * [`packet`]: parse and write the RTP header, bounds-checked, without allocating.
//! * [`pacer`]: when each frame is due (`t0 + n·ptime`) and its sequence number, timestamp and
//!   marker bit.
//! * [`receiver`]: loss, duplicates, reordering and jitter (RFC 3550 Appendix A), RTP
//!   timeouts, and a jitter buffer feeding the decoder.
//! * [`source`]: which source addresses are the peer's (the SDP's, or latched behind NAT),
//!   and what was set aside as stray.
//! * [`srtp`]: SRTP (RFC 3711) protect/unprotect with SDES keys, auth failures and replays
//!   counted.

pub mod pacer;
pub mod packet;
pub mod receiver;
pub mod source;
pub mod srtp;
