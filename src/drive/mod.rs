//! The drivers: what runs the core's state machines on real sockets and the wall clock.
//!
//! Each driver owns I/O and time and nothing else: it hands its machine what arrives and
//! what time it is, and carries out what the machine asks. [`role`] drives a scenario role's
//! agent (calls and registrations; `answer`, `call`, `register` and `options` drive the same
//! agent in a loop of their own, each on a `wire`); [`registration`] says how a probe prints
//! a registration's failure; [`transport`] is the SIP socket (UDP, TCP), [`media`] the RTP
//! streams and their scheduler threads; [`capture`] writes what they send and receive to
//! `--pcap`.

pub mod capture;
pub mod clock;
pub mod media;
pub mod registration;
pub mod role;
pub mod trace;
pub mod transport;
pub(crate) mod wire;

/// A seed for identifiers from the operating system's randomness (via std's hasher keys).
pub fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}
