//! The audio bridge: a call's media as plain PCM, for programs that talk and listen — voice
//! bots, text-to-speech and speech-to-text pipelines.
//!
//! Audio goes in and comes out as 8 kHz mono `f32` samples in [-1, 1]; the bridge paces,
//! encodes (G.711) and sends what you push, and decodes what arrives (through the jitter
//! buffer). When nothing is pushed it sends silence, so the stream never stops.
//!
//! ```
//! use sipcheck::bridge::AudioBridge;
//! use sipcheck::core::media::g711::Codec;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // Two ends of an RTP stream on loopback (after SIP, use the negotiated addresses).
//! let a_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let b_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let (a_addr, b_addr) = (a_sock.local_addr()?, b_sock.local_addr()?);
//! let alice = AudioBridge::new(a_sock, b_addr, Codec::Pcmu);
//! let bob = AudioBridge::new(b_sock, a_addr, Codec::Pcmu);
//!
//! // Alice says something: 300 ms of a 500 Hz tone.
//! let speech: Vec<f32> = (0..2400)
//!     .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 8000.0).sin())
//!     .collect();
//! alice.send(&speech);
//! tokio::time::sleep(std::time::Duration::from_millis(500)).await;
//!
//! // Bob hears it, decoded.
//! let heard = bob.recv().await;
//! let peak = heard.iter().fold(0f32, |m, s| m.max(s.abs()));
//! assert!(peak > 0.4, "bob heard {peak}");
//! alice.close().await;
//! bob.close().await;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711::Codec;
use sipcheck_core::media::session::{MediaConfig, MediaReport, MediaSession};
use sipcheck_core::media::tone::Playlist;
use sipcheck_core::sdp::Negotiated;
use tokio::net::UdpSocket;

use crate::drive::media::MediaHandle;
use crate::drive::os_seed;

/// A call's media as PCM in and out; see the module documentation.
#[derive(Debug)]
pub struct AudioBridge {
    handle: MediaHandle,
}

impl AudioBridge {
    /// A bridge sending `codec` (its static payload type, 20 ms) from `socket` to `remote`.
    pub fn new(socket: UdpSocket, remote: SocketAddr, codec: Codec) -> Self {
        let mut config = MediaConfig::new(codec);
        config.bridge = true;
        Self::start(socket, remote, config)
    }

    /// A bridge for what SIP negotiated (codec, payload types, ptime, remote address).
    pub fn from_negotiated(socket: UdpSocket, negotiated: &Negotiated) -> Self {
        let mut config = MediaConfig::new(negotiated.codec);
        config.payload_type = negotiated.payload_type;
        config.telephone_event_pt = negotiated.telephone_event_pt;
        config.ptime =
            std::time::Duration::from_millis(u64::from(negotiated.ptime_ms.clamp(10, 60)));
        config.send = negotiated.direction.sends();
        config.bridge = true;
        Self::start(socket, negotiated.remote_rtp, config)
    }

    fn start(socket: UdpSocket, remote: SocketAddr, config: MediaConfig) -> Self {
        let session = MediaSession::new(
            Instant::now(),
            config,
            Playlist::new(Vec::new()),
            &mut IdGen::new(os_seed()),
        )
        .expect("a 20 ms G.711 session is valid");
        Self {
            handle: MediaHandle::spawn(socket, session, remote),
        }
    }

    /// Queue audio to send: 8 kHz mono samples in [-1, 1] (clamped).
    pub fn send(&self, samples: &[f32]) {
        self.handle.push_audio(samples.to_vec());
    }

    /// The decoded audio received since the last call: 8 kHz mono samples in [-1, 1]
    /// (at most the last 10 s are kept).
    pub async fn recv(&self) -> Vec<f32> {
        self.handle.pull_audio().await
    }

    /// Send RFC 4733 DTMF digits (when telephone-event was negotiated).
    pub async fn send_dtmf(
        &self,
        digits: &str,
    ) -> Result<(), sipcheck_core::media::session::MediaError> {
        self.handle.send_dtmf(digits).await
    }

    /// Stop the stream; the media figures of the session.
    pub async fn close(self) -> Option<MediaReport> {
        self.handle.stop().await.map(|f| f.report)
    }
}
