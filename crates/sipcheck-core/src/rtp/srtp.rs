//! SRTP (RFC 3711) for one call's RTP stream: protect what we send with our SDES key,
//! unprotect what we receive with the peer's, and count what fails.
//!
//! The transform itself is `rtc-srtp` (webrtc-rs's sans-IO SRTP, with `ring` for AES and
//! HMAC-SHA1): it takes and returns packets, holds the rollover counter and the replay window
//! (RFC 3711 §3.3.2, 64 packets wide) per SSRC, and reads no clock, socket or RNG, so it lives
//! here in the core. A packet that fails authentication or is a replay is dropped and counted
//! ([`SrtpStats::auth_failures`], [`SrtpStats::replays`]): it never reaches the jitter buffer,
//! so a call whose every packet fails has no audio, and no audio verified.

use rtc_shared::error::Error as SrtpLibError;
use rtc_srtp::context::Context;
use rtc_srtp::option::srtp_replay_protection;
use rtc_srtp::protection_profile::ProtectionProfile;

use crate::sdp::crypto::{Crypto, CryptoSuite};

/// The replay window, in packets (RFC 3711 §3.3.2's minimum).
pub const REPLAY_WINDOW: usize = 64;

/// What the SRTP context did, for the call's record and the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SrtpStats {
    /// Packets protected and sent.
    pub protected: u64,
    /// Packets received that authenticated and were decrypted.
    pub unprotected: u64,
    /// Packets received whose authentication tag did not verify (dropped).
    pub auth_failures: u64,
    /// Packets received again inside or behind the replay window (dropped).
    pub replays: u64,
    /// Packets received too short or malformed to be SRTP (dropped).
    pub malformed: u64,
}

/// Why an SRTP context could not be made or a packet not protected.
#[derive(Debug, thiserror::Error)]
#[error("srtp: {0}")]
pub struct SrtpError(String);

/// One call's SRTP: the sending and the receiving context.
pub struct SrtpSession {
    tx: Context,
    rx: Context,
    local: Crypto,
    remote: Crypto,
    tag_len: usize,
    stats: SrtpStats,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("tag_len", &self.tag_len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

impl SrtpSession {
    /// A session sending with `local` (our attribute) and receiving with `remote` (the peer's).
    /// Both use the negotiated suite: the answer echoes the offer's.
    ///
    /// # Errors
    /// [`SrtpError`] if the crypto provider cannot make the contexts.
    pub fn new(local: &Crypto, remote: &Crypto) -> Result<Self, SrtpError> {
        let provider =
            rtc_srtp::crypto::default_provider().map_err(|e| SrtpError(e.to_string()))?;
        let tx = Context::new(
            local.key.key(),
            local.key.salt(),
            profile(local.suite),
            None,
            None,
            provider.crypto(),
        )
        .map_err(|e| SrtpError(e.to_string()))?;
        let rx = Context::new(
            remote.key.key(),
            remote.key.salt(),
            profile(remote.suite),
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            None,
            provider.crypto(),
        )
        .map_err(|e| SrtpError(e.to_string()))?;
        Ok(Self {
            tx,
            rx,
            local: local.clone(),
            remote: remote.clone(),
            tag_len: local.suite.tag_len(),
            stats: SrtpStats::default(),
        })
    }

    /// Bytes each protected packet gains (the authentication tag).
    #[must_use]
    pub const fn overhead(&self) -> usize {
        self.tag_len
    }

    /// The attributes it sends and receives with.
    #[must_use]
    pub const fn keys(&self) -> (&Crypto, &Crypto) {
        (&self.local, &self.remote)
    }

    /// Goes on counting from `before` (a context replaced by new keys).
    pub fn carry_stats(&mut self, before: SrtpStats) {
        self.stats = before;
    }

    /// The counters so far.
    #[must_use]
    pub const fn stats(&self) -> SrtpStats {
        self.stats
    }

    /// Protects one RTP packet for sending.
    ///
    /// # Errors
    /// [`SrtpError`] if `rtp` is not an RTP packet.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let out = self
            .tx
            .encrypt_rtp(rtp)
            .map_err(|e| SrtpError(e.to_string()))?;
        self.stats.protected += 1;
        Ok(out.to_vec())
    }

    /// Unprotects one received SRTP packet; `None` (and a counter raised) when it fails
    /// authentication, is a replay or is malformed.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Option<Vec<u8>> {
        match self.rx.decrypt_rtp(srtp) {
            Ok(plain) => {
                self.stats.unprotected += 1;
                Some(plain.to_vec())
            }
            Err(SrtpLibError::RtpFailedToVerifyAuthTag) => {
                self.stats.auth_failures += 1;
                None
            }
            Err(SrtpLibError::SrtpSsrcDuplicated(..)) => {
                self.stats.replays += 1;
                None
            }
            Err(_) => {
                self.stats.malformed += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
