//! The drivers: what runs the core's state machines on real sockets and the wall clock.
//!
//! Each driver owns I/O and time and nothing else: it hands its machine what arrives and
//! what time it is, and carries out what the machine asks. `agent` is the one loop that drives
//! the core's agent (calls and registrations) for `run`'s roles, `answer` and `call`; [`role`]
//! is a scenario role on it (`register` and `options` drive the same agent with no call in a
//! smaller loop on a `wire`); [`registration`] says how a probe prints a registration's
//! failure; [`transport`] is the SIP socket (UDP, TCP), [`media`] the RTP streams and their
//! scheduler threads; [`capture`] writes what they send and receive to `--pcap`.

pub(crate) mod agent;
pub mod capture;
pub mod clock;
#[cfg(test)]
pub(crate) mod fixture;
pub mod media;
pub mod registration;
pub mod role;
pub mod tls;
pub mod trace;
pub mod transport;
pub(crate) mod wire;
pub mod ws;

/// A seed for identifiers from the operating system's randomness (via std's hasher keys).
/// SRTP for a role or probe under `policy`: each call's SDES keys drawn fresh from rand's
/// thread RNG (a CSPRNG seeded from the OS). `None` for `off`.
pub fn srtp_config(
    policy: sipcheck_core::sdp::crypto::SrtpPolicy,
) -> Option<sipcheck_core::ua::agent::SrtpConfig> {
    use sipcheck_core::sdp::crypto::{MasterKey, SrtpPolicy, MASTER_KEY_LEN};
    (policy != SrtpPolicy::Off).then(|| sipcheck_core::ua::agent::SrtpConfig {
        policy,
        keys: std::sync::Arc::new(|| {
            let mut bytes = [0u8; MASTER_KEY_LEN];
            rand::fill(&mut bytes);
            MasterKey::from_bytes(bytes)
        }),
    })
}

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
