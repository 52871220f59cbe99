//! One call's media, sans-IO: the paced sender, the receiver and what it verifies.
//!
//! A [`MediaSession`] owns a [`Pacer`] (frame `n` due at `t0 + n·ptime`), the audio source (a
//! [`Playlist`] or samples pushed through the audio bridge), an optional RFC 4733 DTMF sender,
//! the [`RtpReceiver`] with its jitter buffer, the G.711 decoder, the tone detector, the DTMF
//! receiver and an optional recording. The shell wakes it at [`MediaSession::poll_timeout`],
//! takes packets from [`MediaSession::poll_transmit`] and hands it every datagram that
//! arrives, with its source address, with [`MediaSession::handle_packet`]. Each send tick is
//! also a playout tick: one frame leaves the jitter buffer, is decoded and fed to the
//! detector.
//!
//! Only the peer's media is the peer's audio. A datagram from a source that is not the
//! peer's (see [`PeerAddress`]: the SDP's address, or the one latched behind NAT) is counted
//! as stray and goes nowhere else. Of the peer's packets, one SSRC is *played* (its audio
//! reaches the jitter buffer and the detector):
//!
//! * RFC 4733 telephone events under an SSRC of their own are counted and decoded as DTMF,
//!   never played;
//! * another SSRC takes over only by a clean switch: once the played one has been quiet for
//!   [`SSRC_SWITCH_GAP`]. Until then its packets are held back; if the played SSRC sends again
//!   meanwhile, the two are interleaved (a second stream nobody signalled) and the held
//!   packets count as stray; otherwise they are played, in order, when the switch is taken;
//! * the statistics (loss, jitter, duplicates) are the call's, over every stream played or
//!   counted (see [`RtpReceiver`]).
//!
//! Nothing here allocates per packet once the session is built, except the recording and the
//! bridge's receive queue when they are enabled.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::conference::{PartiesVerdict, Party, PartyListener};
use super::dtmf::{DtmfConfig, DtmfError, DtmfReceiver, DtmfSender};
use super::g711::Codec;
use super::quality::{self, Bpl, LossPattern, QualityEstimate};
use super::signature::{SignatureCode, SignatureDecoder, SignatureVerdict};
use super::tone::{
    Detection, DetectorConfig, Gap, Playlist, ToneDetector, ToneError, ToneQuery, WatchId,
};
use super::vad::Vad;
use crate::ids::IdGen;
use crate::rtp::pacer::{Pacer, PacerConfig, PacerError};
use crate::rtp::packet::{write_packet, RtpHeader, RtpPacket};
use crate::rtp::receiver::{
    Arrival, JitterBufferStats, Playout, ReceiveStats, ReceiverConfig, ReceiverError, RtpReceiver,
};
use crate::rtp::source::{PeerAddress, StrayStats};
use crate::rtp::srtp::{SrtpSession, SrtpStats};

/// How long the played SSRC must have been quiet for another SSRC of the peer to take over
/// (a clean switch; see the module documentation).
pub const SSRC_SWITCH_GAP: Duration = Duration::from_millis(100);

/// A packet held back with its arrival time.
type HeldPacket = (Instant, Vec<u8>);

/// Packets of another SSRC held back at most while a switch is undecided (the oldest are
/// counted as stray beyond that).
const PENDING_MAX: usize = 32;

/// The largest RTP packet a session writes (12-byte header, 60 ms of G.711 and, under SRTP, a
/// 10-byte authentication tag).
pub const MAX_PACKET: usize = 12 + 480 + 10;

/// Received audio kept for the bridge at most (10 s at 8 kHz); older samples are dropped.
const BRIDGE_QUEUE_MAX: usize = 80_000;

/// Playout ticks, beyond the jitter buffer's depth, that gap tracking stays paused after a
/// telephone event arrived: a sender pauses its audio while it sends DTMF (RFC 4733 §2.5.1.2
/// lets events replace the audio), and that silence is no dropout.
const EVENT_QUIET_TICKS: u32 = 5;

/// How many playout ticks gap tracking stays paused after a telephone event, with a jitter
/// buffer `depth` frames deep.
fn event_quiet_ticks(depth: usize) -> u32 {
    u32::try_from(depth)
        .unwrap_or(u32::MAX)
        .saturating_add(EVENT_QUIET_TICKS)
}

/// Frames whose lateness is kept inline before it goes into the histogram.
const LATENESS_BATCH: usize = 64;

/// The longest recording of a `record: true` step: 60 s (960 kB at 8 kHz, 16 bits); what
/// comes after it is not kept.
pub const STEP_RECORDING_MAX: Duration = Duration::from_secs(60);

/// [`STEP_RECORDING_MAX`] in samples.
const STEP_RECORDING_MAX_SAMPLES: usize = 60 * 8000;

/// The audio received during one `record: true` step (8 kHz mono).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecording {
    /// The step's line in the scenario.
    pub line: u32,
    /// What was played out while it ran, from its first frame after the step began.
    pub samples: Vec<i16>,
}

/// The send lateness of every frame, microseconds: an HdrHistogram fed in batches.
///
/// The histogram's counts (about 10 KiB) are far from the rest of the session in memory;
/// with a thousand sessions per thread, recording each frame there costs a cache and TLB
/// miss per frame. The values wait in a small inline buffer and go in together.
#[derive(Debug)]
struct LatenessLog {
    histogram: Histogram<u32>,
    pending: [u32; LATENESS_BATCH],
    len: usize,
    /// The largest value recorded (pending ones included).
    max: u64,
}

impl LatenessLog {
    fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
            pending: [0; LATENESS_BATCH],
            len: 0,
            max: 0,
        }
    }

    fn record(&mut self, micros: u64) {
        self.max = self.max.max(micros);
        self.pending[self.len] = u32::try_from(micros).unwrap_or(u32::MAX);
        self.len += 1;
        if self.len == LATENESS_BATCH {
            for &v in &self.pending {
                // Out of range (above 60 s) is dropped, as a direct record would be.
                let _ = self.histogram.record(u64::from(v));
            }
            self.len = 0;
        }
    }

    /// Everything recorded so far.
    fn histogram(&self) -> Histogram<u32> {
        let mut h = self.histogram.clone();
        for &v in &self.pending[..self.len] {
            let _ = h.record(u64::from(v));
        }
        h
    }
}

/// How a session sends and receives.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The negotiated codec.
    pub codec: Codec,
    /// Its payload type (0 or 8, or the dynamic number the peer chose).
    pub payload_type: u8,
    /// The telephone-event payload type, when negotiated.
    pub telephone_event_pt: Option<u8>,
    /// Packetisation interval.
    pub ptime: Duration,
    /// Jitter buffer depth in frames.
    pub jitter_buffer_frames: usize,
    /// Whether we may send (not on hold / recvonly).
    pub send: bool,
    /// Keep the decoded received audio for a WAV recording.
    pub record: bool,
    /// Keep decoded received audio for [`MediaSession::pull_audio`].
    pub bridge: bool,
    /// Tone detector block size.
    pub detector: DetectorConfig,
}

impl MediaConfig {
    /// PCMU or PCMA with its static payload type, 20 ms, a 3-frame jitter buffer.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            payload_type: codec.static_payload_type(),
            telephone_event_pt: None,
            ptime: Duration::from_millis(20),
            jitter_buffer_frames: 3,
            send: true,
            record: false,
            bridge: false,
            detector: DetectorConfig::default(),
        }
    }
}

/// Why a session could not be set up or asked.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Bad pacing parameters.
    #[error(transparent)]
    Pacer(#[from] PacerError),
    /// Bad receiver parameters.
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    /// Bad tone parameters.
    #[error(transparent)]
    Tone(#[from] ToneError),
    /// Bad DTMF parameters.
    #[error(transparent)]
    Dtmf(#[from] DtmfError),
    /// DTMF was asked for but telephone-event was not negotiated.
    #[error("the peer did not accept telephone-event (RFC 4733): cannot send DTMF")]
    NoTelephoneEvent,
    /// ptime above what a packet buffer holds.
    #[error("ptime {0:?} is too long (at most 60 ms)")]
    PtimeTooLong(Duration),
}

/// A tone the session was asked to find, and what it found.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneResult {
    /// The frequencies looked for (one, two for a dual tone; several steps for a sequence).
    pub frequencies: Vec<f64>,
    /// When it was found (the first detection).
    pub detection: Option<Detection>,
}

/// What a session did and heard, summarised once at the end of a call.
#[derive(Debug, Clone)]
pub struct MediaReport {
    /// RTP packets sent (audio and telephone-event).
    pub packets_sent: u64,
    /// Telephone-event packets among them.
    pub dtmf_packets_sent: u64,
    /// Frames skipped because the sender woke up more than a burst late (generator overrun).
    pub frames_skipped: u64,
    /// Send lateness (now − due) per frame, microseconds.
    pub lateness_us: Histogram<u32>,
    /// Receive statistics of the far end's streams (every SSRC of the peer's).
    pub receive: ReceiveStats,
    /// Datagrams set aside as not the peer's media (packets of an undecided SSRC switch
    /// included).
    pub stray: StrayStats,
    /// Jitter buffer counters.
    pub jitter_buffer: JitterBufferStats,
    /// Packets whose payload type was neither the codec's nor telephone-event's.
    pub wrong_payload_type: u64,
    /// Datagrams that were not RTP (RTCP is not counted here).
    pub malformed: u64,
    /// RMS level of the decoded received audio, dBFS.
    pub rms_dbfs: f64,
    /// Loudest 20 ms block received, dBFS.
    pub peak_block_dbfs: f64,
    /// The tones asked for, and what was found.
    pub tones: Vec<ToneResult>,
    /// DTMF digits received as RFC 4733 events, in order.
    pub dtmf_received: String,
    /// Time since the last packet arrived (or since the start if none did), or since RTP was
    /// expected again after a hold; zero while none is expected (see
    /// [`MediaSession::set_expecting`]).
    pub since_last_packet: Duration,
    /// The longest time between two received packets (an RTP timeout shows here), not
    /// counting the time RTP was not expected (a hold): the gap of a hold counts from the
    /// resume.
    pub max_gap: Duration,
    /// When the packet carrying the first sample of each recent pass of a looping source was
    /// sent (a signature's frames: the sender's reference of the mouth-to-ear delay), oldest
    /// first, at most the last 40.
    pub signature_sent: Vec<Instant>,
    /// When the playout began each recent frame decoded of the signature expected from the
    /// far end (see [`MediaSession::set_signature_codes`]), oldest first.
    pub signature_onsets: Vec<Instant>,
    /// The same for this end's own signature heard back (an echo: the round trip).
    pub own_onsets: Vec<Instant>,
    /// Each playout tick of the played stream: a frame, or a frame missing (lost, or too
    /// late for the jitter buffer). The E-model's Ppl and BurstR come from it.
    pub loss_pattern: LossPattern,
    /// Dropouts (at least [`MIN_GAP`](super::tone::MIN_GAP)) in the expected single tones
    /// after their onset, outside holds, in the order they started (a gap seen by several
    /// watches of the same tone once).
    pub audio_gaps: Vec<Gap>,
    /// How many gaps there were (more than [`Self::audio_gaps`] keeps when very many).
    pub audio_gap_count: u64,
    /// SRTP's counters, when the call used SRTP.
    pub srtp: Option<SrtpStats>,
}

impl MediaReport {
    /// True when the received audio never rose above `threshold_dbfs`.
    pub fn is_silent(&self, threshold_dbfs: f64) -> bool {
        self.peak_block_dbfs < threshold_dbfs
    }

    /// The E-model estimate of what was received (G.711, no concealment: `Bpl` 4.3; `Ta` half
    /// the round trip of this end's signature when an echo returned it, else 0 until the
    /// one-way delay is known); `None` when no frame was played.
    #[must_use]
    pub fn quality(&self) -> Option<QualityEstimate> {
        let ta = self.round_trip().map(|rt| rt / 2);
        (self.loss_pattern.frames() > 0)
            .then(|| quality::estimate(&self.loss_pattern, Bpl::G711_NO_PLC, ta))
    }

    /// The round trip of this end's own signature heard back (an echo), within one block.
    #[must_use]
    pub fn round_trip(&self) -> Option<Duration> {
        super::signature::mouth_to_ear(&self.signature_sent, &self.own_onsets)
    }
}

/// One call's media: see the module documentation.
pub struct MediaSession {
    config: MediaConfig,
    started: Instant,
    pacer: Pacer,
    source: Playlist,
    live: VecDeque<i16>,
    dtmf_tx: Option<DtmfSender>,
    receiver: RtpReceiver,
    detector: ToneDetector,
    watches: Vec<(WatchId, Vec<f64>)>,
    dtmf_rx: DtmfReceiver,
    recording: Option<Vec<i16>>,
    /// The audio received during `record: true` steps, the last one still growing while
    /// `step_recording_open`.
    step_recordings: Vec<StepRecording>,
    step_recording_open: bool,
    /// The received audio kept for a speech-quality score: the samples and how many at most.
    capture: Option<(Vec<i16>, usize)>,
    received_audio: VecDeque<i16>,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    decoded: Vec<i16>,
    packets_sent: u64,
    dtmf_packets_sent: u64,
    lateness_us: LatenessLog,
    /// Playout ticks wait for [`MediaSession::play_out`].
    deferred_playout: bool,
    /// Playout ticks due and not yet run.
    owed_playouts: u32,
    wrong_payload_type: u64,
    malformed: u64,
    /// Which sources are the peer's, and what was set aside.
    peer: PeerAddress,
    /// When the last packet of the played SSRC arrived.
    played_last: Option<Instant>,
    /// Another SSRC of the peer's, held back until the switch to it is decided.
    pending: Option<(u32, Vec<HeldPacket>)>,
    /// The longest time between two received packets.
    max_gap: Duration,
    /// RTP is expected from the far end (it is not while the call is on hold either way).
    expecting: bool,
    /// When RTP was last expected again (the end of a hold): gaps count from there.
    resumed: Option<Instant>,
    /// Frames of the schedule not sent (while not sending), mod 2¹⁶: taken off the pacer's
    /// sequence numbers.
    unsent: u16,
    /// The playout ticks of the played stream (see [`MediaReport::loss_pattern`]).
    loss: LossPattern,
    /// The jitter buffer's missing count already in `loss`.
    missing_seen: u64,
    /// A frame was played out: buffering ticks from now on are silence heard (an underrun).
    playing_started: bool,
    /// Playout ticks left during which a telephone event is under way (gaps not tracked).
    event_ticks: u32,
    /// Whether the detector's gap tracking is paused (a hold, or a telephone event).
    gaps_paused: bool,
    /// The audio signature decoder, once a signature is listened for.
    signature: Option<Box<SignatureDecoder>>,
    /// The conference party listener, once parties are listened for.
    parties: Option<Box<PartyListener>>,
    /// Voice activity in what is played out, once a speech or silence watch asked for it.
    vad: Option<Box<Vad>>,
    /// The signature expected from the far end, and this end's own (heard back: an echo).
    signature_codes: Option<(SignatureCode, Option<SignatureCode>)>,
    /// When the current playout tick runs (the `now` of the frame that owes it).
    tick_at: Option<Instant>,
    /// When the packet carrying the first sample of each recent pass of a looping source (a
    /// signature's 34 frames) was sent, oldest first.
    loop_starts: VecDeque<Instant>,
    /// SRTP, when negotiated: every packet sent protected, every one received unprotected.
    srtp: Option<SrtpSession>,
}

/// At most this many loop starts of the source are remembered (a signature's last 11 min).
const MAX_LOOP_STARTS: usize = 40;

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("codec", &self.config.codec)
            .field("packets_sent", &self.packets_sent)
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// A session whose first frame is due at `t0`, playing `source`; SSRC, initial sequence
    /// and timestamp are drawn from `ids`.
    pub fn new(
        t0: Instant,
        config: MediaConfig,
        source: Playlist,
        ids: &mut IdGen,
    ) -> Result<Self, MediaError> {
        if config.ptime > Duration::from_millis(60) {
            return Err(MediaError::PtimeTooLong(config.ptime));
        }
        let pacer = Pacer::new(
            t0,
            PacerConfig {
                ptime: config.ptime,
                ..PacerConfig::random(ids)
            },
        )?;
        let frame = pacer.samples_per_frame() as usize;
        let receiver = RtpReceiver::new(
            t0,
            ReceiverConfig {
                clock_rate: 8000,
                jitter_buffer_frames: config.jitter_buffer_frames,
            },
        )?;
        Ok(Self {
            detector: ToneDetector::new(config.detector)?,
            recording: config.record.then(Vec::new),
            step_recordings: Vec::new(),
            step_recording_open: false,
            capture: None,
            started: t0,
            pacer,
            source,
            live: VecDeque::new(),
            dtmf_tx: None,
            receiver,
            watches: Vec::new(),
            dtmf_rx: DtmfReceiver::new(),
            received_audio: VecDeque::new(),
            pcm: vec![0; frame],
            payload: vec![0; frame],
            decoded: vec![0; MAX_PACKET - 12],
            packets_sent: 0,
            dtmf_packets_sent: 0,
            lateness_us: LatenessLog::new(),
            deferred_playout: false,
            owed_playouts: 0,
            wrong_payload_type: 0,
            malformed: 0,
            peer: PeerAddress::new(),
            played_last: None,
            pending: None,
            max_gap: Duration::ZERO,
            expecting: true,
            resumed: None,
            unsent: 0,
            loss: LossPattern::default(),
            missing_seen: 0,
            playing_started: false,
            event_ticks: 0,
            gaps_paused: false,
            signature: None,
            parties: None,
            vad: None,
            signature_codes: None,
            tick_at: None,
            loop_starts: VecDeque::new(),
            srtp: None,
            config,
        })
    }

    /// Look for a tone (single or dual) in what is received.
    pub fn expect_tone(&mut self, query: ToneQuery) -> Result<WatchId, MediaError> {
        let freqs = query.frequencies().to_vec();
        let id = self.detector.watch(query)?;
        self.watches.push((id, freqs));
        Ok(id)
    }

    /// Look for tones in this order (a call's tone signature).
    pub fn expect_sequence(&mut self, steps: &[ToneQuery]) -> Result<WatchId, MediaError> {
        let freqs = steps
            .iter()
            .flat_map(|s| s.frequencies().iter().copied())
            .collect();
        let id = self.detector.watch_sequence(steps)?;
        self.watches.push((id, freqs));
        Ok(id)
    }

    /// What tone `id` found, if anything yet.
    pub fn detection(&self, id: WatchId) -> Option<&Detection> {
        self.detector.detection(id)
    }

    /// Replace what is played (a `play` step), from the next frame on.
    pub fn set_source(&mut self, source: Playlist) {
        self.source = source;
        self.loop_starts.clear();
        self.pacer.start_talkspurt();
    }

    /// DTMF digits received so far.
    pub fn dtmf_received(&self) -> String {
        self.dtmf_rx.digits()
    }

    /// How many telephone events have been received: cheap to poll, it changes whenever
    /// [`MediaSession::dtmf_received`] may have.
    #[must_use]
    pub fn dtmf_events(&self) -> usize {
        self.dtmf_rx.events().len()
    }

    /// Level of the last 20 ms block played out, dBFS (`None` before any).
    pub fn last_level_dbfs(&self) -> Option<f64> {
        self.detector.last_block_rms_dbfs()
    }

    /// How far behind its schedule this session's driver has been so far: frames skipped
    /// (generator overrun) and the worst lateness of a frame, microseconds.
    pub fn generator_behind(&self) -> (u64, u64) {
        (self.pacer.stats().overrun, self.lateness_us.max)
    }

    /// Detect voice activity in what is played out from now on (once asked, for the rest of
    /// the session).
    pub fn listen_speech(&mut self) {
        self.vad.get_or_insert_with(|| Box::new(Vad::new()));
    }

    /// The voice-activity detector, once [`MediaSession::listen_speech`] started it.
    #[must_use]
    pub fn vad(&self) -> Option<&Vad> {
        self.vad.as_deref()
    }

    /// Decode audio signatures in what is played out from now on (once asked, for the rest
    /// of the session).
    pub fn listen_signature(&mut self) {
        self.signature
            .get_or_insert_with(|| Box::new(SignatureDecoder::new()));
    }

    /// Listen for conference party tones in what is played out from now on, forgetting what
    /// was heard before (each `expect: { hears }` judges the audio from its own start).
    pub fn listen_parties(&mut self) {
        self.parties = Some(Box::new(PartyListener::new()));
    }

    /// The verdict on the parties heard since [`Self::listen_parties`] (everyone expected
    /// missing before it).
    #[must_use]
    pub fn parties_verdict(&self, expected: &[Party], own: Option<Party>) -> PartiesVerdict {
        self.parties.as_ref().map_or_else(
            || PartiesVerdict::NotHeard {
                missing: expected.to_vec(),
            },
            |l| l.verdict(expected, own),
        )
    }

    /// The parties' verdict if it is decisive already ([`PartyListener::decisive`]).
    #[must_use]
    pub fn parties_decisive(
        &self,
        expected: &[Party],
        own: Option<Party>,
    ) -> Option<PartiesVerdict> {
        self.parties.as_ref()?.decisive(expected, own)
    }

    /// The signature expected from the far end and this end's own: the report's
    /// [`MediaReport::signature_onsets`] and [`MediaReport::own_onsets`] are theirs.
    pub fn set_signature_codes(&mut self, expected: SignatureCode, own: Option<SignatureCode>) {
        self.signature_codes = Some((expected, own));
    }

    /// The verdict on the signature heard for `expected` ([`SignatureVerdict::NoAudio`]
    /// before [`Self::listen_signature`]).
    #[must_use]
    pub fn signature_verdict(
        &self,
        expected: SignatureCode,
        own: Option<SignatureCode>,
    ) -> SignatureVerdict {
        self.signature
            .as_ref()
            .map_or(SignatureVerdict::NoAudio, |d| d.verdict(expected, own))
    }

    /// Audio samples played out so far (received, or concealed).
    pub fn samples_played(&self) -> u64 {
        self.detector.samples()
    }

    /// Whether tone `id` was found.
    pub fn tone_found(&self, id: WatchId) -> bool {
        self.detector.is_complete(id)
    }

    /// Send `digits` as RFC 4733 events from the next tick on (audio pauses meanwhile).
    pub fn send_dtmf(&mut self, digits: &str, config: DtmfConfig) -> Result<(), MediaError> {
        if self.config.telephone_event_pt.is_none() {
            return Err(MediaError::NoTelephoneEvent);
        }
        let config = DtmfConfig {
            ptime: self.config.ptime,
            ..config
        };
        self.dtmf_tx = Some(DtmfSender::new(digits, config)?);
        Ok(())
    }

    /// True while DTMF digits remain to be sent.
    pub fn is_sending_dtmf(&self) -> bool {
        self.dtmf_tx.as_ref().is_some_and(|d| !d.is_done())
    }

    /// Allow or stop sending (hold, re-INVITE).
    pub fn set_sending(&mut self, send: bool) {
        if send && !self.config.send {
            self.pacer.start_talkspurt();
        }
        self.config.send = send;
    }

    /// Queue audio to send (the audio bridge): samples in [-1, 1] at 8 kHz mono; they are
    /// sent before the playlist resumes.
    pub fn push_audio(&mut self, samples: &[f32]) {
        self.live.extend(
            samples
                .iter()
                .map(|&s| (s.clamp(-1.0, 1.0) * 32_767.0) as i16),
        );
    }

    /// Take the decoded received audio queued since the last call (bridge mode), as samples
    /// in [-1, 1] at 8 kHz mono.
    pub fn pull_audio(&mut self, out: &mut Vec<f32>) {
        out.extend(
            self.received_audio
                .drain(..)
                .map(|s| f32::from(s) / 32_768.0),
        );
    }

    /// Re-anchors the send schedule so that the first frame is due at `t0` (a scheduler
    /// placing the stream on a phase of its clock grid); only before the first frame,
    /// otherwise `false` and nothing changes.
    pub fn restart_at(&mut self, t0: Instant) -> bool {
        self.pacer.restart_at(t0)
    }

    /// When the next frame is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.pacer.poll_timeout()
    }

    /// Defer the playout ticks of [`Self::poll_transmit`] until [`Self::play_out`] (for a
    /// driver that sends first and reads after: the frame then leaves the jitter buffer
    /// right after the packets that arrived up to now went in, as when reading first).
    pub fn defer_playout(&mut self) {
        self.deferred_playout = true;
    }

    /// Run the playout ticks owed since the last call (see [`Self::defer_playout`]).
    pub fn play_out(&mut self) {
        for _ in 0..std::mem::take(&mut self.owed_playouts) {
            self.playout_tick();
        }
    }

    /// The next packet to send now, written into `out` (at least [`MAX_PACKET`] bytes);
    /// `None` when no frame is due. Call until it returns `None`. Each due frame is also a
    /// playout tick of the receive side (owed until [`Self::play_out`] when deferred).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        let len = self.poll_transmit_plain(now, out)?;
        let Some(srtp) = &mut self.srtp else {
            return Some(len);
        };
        let wire = srtp.protect(&out[..len]).ok()?;
        out.get_mut(..wire.len())?.copy_from_slice(&wire);
        Some(wire.len())
    }

    /// Uses SRTP from now on: packets sent are protected, packets received unprotected (those
    /// failing authentication or replayed are dropped and counted in [`Self::srtp_stats`]).
    pub fn set_srtp(&mut self, srtp: SrtpSession) {
        self.srtp = Some(srtp);
    }

    /// Follows the keys of a new offer/answer (a re-INVITE or UPDATE): the same keys keep the
    /// context (its rollover counter and replay window), new ones start a new context whose
    /// counters go on from the old one's; `None` keeps what there is (a re-offer cannot turn
    /// SRTP off: a plain answer to an SRTP call fails negotiation first).
    pub fn follow_srtp(&mut self, keys: Option<&crate::sdp::crypto::SrtpKeys>) {
        let Some(keys) = keys else { return };
        if let Some(current) = &self.srtp {
            if current.keys() == (&keys.local, &keys.remote) {
                return;
            }
        }
        // The contexts cannot fail for the two suites once the first was made (the same
        // provider); should they, the old keys stay and the peer's new packets fail, counted.
        if let Ok(mut next) = SrtpSession::new(&keys.local, &keys.remote) {
            if let Some(current) = &self.srtp {
                next.carry_stats(current.stats());
            }
            self.srtp = Some(next);
        }
    }

    /// The SRTP counters, when SRTP is in use.
    #[must_use]
    pub fn srtp_stats(&self) -> Option<SrtpStats> {
        self.srtp.as_ref().map(SrtpSession::stats)
    }

    fn poll_transmit_plain(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        loop {
            let slot = self.pacer.poll_frame(now)?;
            let micros = u64::try_from(slot.lateness.as_micros()).unwrap_or(u64::MAX);
            self.lateness_us.record(micros.max(1));
            self.tick_at = Some(now);
            if self.deferred_playout {
                self.owed_playouts += 1;
            } else {
                self.playout_tick();
            }
            if !self.config.send {
                // A frame not sent takes no sequence number (RFC 3550 §5.1: one per packet
                // sent): after a hold the far end sees no loss, only a timestamp jump.
                self.unsent = self.unsent.wrapping_add(1);
                continue;
            }
            let sequence = slot.sequence.wrapping_sub(self.unsent);
            if let Some(dtmf) = &mut self.dtmf_tx {
                if let Some(packet) = dtmf.poll_tick(slot.timestamp) {
                    let header = RtpHeader {
                        marker: packet.marker,
                        payload_type: self.config.telephone_event_pt.unwrap_or(101),
                        sequence,
                        timestamp: packet.timestamp,
                        ssrc: self.pacer.ssrc(),
                    };
                    self.dtmf_packets_sent += 1;
                    self.packets_sent += 1;
                    return write_packet(&header, &packet.payload(), out).ok();
                }
                if dtmf.is_done() {
                    self.dtmf_tx = None;
                    self.pacer.start_talkspurt();
                }
            }
            let n = self.pcm.len();
            let from_live = self.live.len().min(n);
            for (dst, src) in self.pcm.iter_mut().zip(self.live.drain(..from_live)) {
                *dst = src;
            }
            if from_live < n {
                let position = self.source.position();
                let period = self.source.total_samples();
                self.source.fill_counted(&mut self.pcm[from_live..]);
                let end = self.source.position();
                if self.source.is_looping()
                    && period > 0
                    && position.div_ceil(period) * period < end
                {
                    if self.loop_starts.len() == MAX_LOOP_STARTS {
                        self.loop_starts.pop_front();
                    }
                    self.loop_starts.push_back(now);
                }
            }
            let encoded = self
                .config
                .codec
                .encode(&self.pcm, &mut self.payload)
                .ok()?;
            let header = RtpHeader {
                marker: slot.marker,
                payload_type: self.config.payload_type,
                sequence,
                timestamp: slot.timestamp,
                ssrc: self.pacer.ssrc(),
            };
            self.packets_sent += 1;
            return write_packet(&header, &self.payload[..encoded], out).ok();
        }
    }

    /// One playout tick: a frame out of the jitter buffer, decoded (or concealed with
    /// silence), into the detector, the recording and the bridge queue.
    fn playout_tick(&mut self) {
        // The far end's packets may be longer than ours (a 30 ms peer against our 20 ms):
        // decode the whole payload, whatever its length (up to 60 ms).
        let frame = self.pcm.len();
        let playout = self.receiver.pop_frame();
        let played = matches!(playout, Playout::Frame(_));
        // (Fields, not methods: `playout` borrows the receiver.)
        if matches!(playout, Playout::Frame(f) if Some(f.payload_type) == self.config.telephone_event_pt)
        {
            self.event_ticks = event_quiet_ticks(self.config.jitter_buffer_frames);
        }
        let in_event = self.event_ticks > 0;
        self.event_ticks = self.event_ticks.saturating_sub(1);
        let paused = !self.expecting || in_event;
        if paused != self.gaps_paused {
            self.detector.pause_gaps(paused);
            self.gaps_paused = paused;
        }
        let samples = match playout {
            Playout::Frame(f) if f.payload_type == self.config.payload_type => {
                let len = f.payload.len().min(self.decoded.len());
                self.config
                    .codec
                    .decode(&f.payload[..len], &mut self.decoded)
                    .unwrap_or(0)
            }
            Playout::Frame(_) | Playout::Missing { .. } => {
                self.decoded[..frame].fill(0);
                frame
            }
            // Before the first frame, nothing is heard yet; after it, an underrun is silence
            // heard (a dropout), in the stream's time as it happened.
            Playout::Buffering if self.playing_started => {
                self.decoded[..frame].fill(0);
                frame
            }
            Playout::Buffering => return,
        };
        self.note_playout(played);
        let audio = &self.decoded[..samples];
        self.detector.push(audio);
        if let Some(signature) = &mut self.signature {
            signature.push_at(audio, self.tick_at);
        }
        if let Some(parties) = &mut self.parties {
            parties.push(audio);
        }
        if let Some(vad) = &mut self.vad {
            vad.push(audio);
        }
        if let Some(rec) = &mut self.recording {
            rec.extend_from_slice(audio);
        }
        if self.step_recording_open {
            if let Some(rec) = self.step_recordings.last_mut() {
                let room = STEP_RECORDING_MAX_SAMPLES
                    .saturating_sub(rec.samples.len())
                    .min(audio.len());
                rec.samples.extend_from_slice(&audio[..room]);
            }
        }
        if let Some((kept, max)) = &mut self.capture {
            let room = max.saturating_sub(kept.len()).min(audio.len());
            kept.extend_from_slice(&audio[..room]);
        }
        if self.config.bridge {
            self.received_audio.extend(audio.iter().copied());
            let excess = self.received_audio.len().saturating_sub(BRIDGE_QUEUE_MAX);
            self.received_audio.drain(..excess);
        }
    }

    /// Adds this tick's frames to the loss pattern: those the jitter buffer counted missing
    /// since the last tick (concealed now, or skipped after an underrun), then the frame.
    fn note_playout(&mut self, played: bool) {
        let missing = self.receiver.jitter_buffer_stats().missing;
        self.loss
            .record_lost(missing.saturating_sub(self.missing_seen));
        self.missing_seen = missing;
        if played {
            self.loss.record(false);
            self.playing_started = true;
        }
    }

    /// The peer's RTP address as its SDP says: at the start, and after each SDP it sends (a
    /// re-INVITE). Until it is set, the first source to send is taken as the peer.
    pub fn set_peer_address(&mut self, addr: SocketAddr) {
        self.peer.set_sdp(addr);
    }

    /// The source address the peer's packets come from, once one did.
    #[must_use]
    pub fn peer_source(&self) -> Option<SocketAddr> {
        self.peer.latched()
    }

    /// A datagram arrived on the RTP port from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.peer.accept(from) {
            return;
        }
        if crate::rtp::packet::is_rtcp(data) {
            return;
        }
        let unprotected;
        let data = match &mut self.srtp {
            None => data,
            Some(srtp) => match srtp.unprotect(data) {
                Some(plain) => {
                    unprotected = plain;
                    &unprotected[..]
                }
                None => return,
            },
        };
        let Ok(packet) = RtpPacket::parse(data) else {
            self.malformed += 1;
            return;
        };
        let ssrc = packet.header.ssrc;
        let played = self.receiver.played_ssrc();
        if Some(packet.header.payload_type) == self.config.telephone_event_pt
            && played != Some(ssrc)
        {
            // An RFC 4733 event stream under its own SSRC: counted and decoded, not played.
            self.note_gap(now);
            let arrival = self.receiver.on_side_packet(now, &packet);
            self.take_event(arrival, &packet);
            return;
        }
        match played {
            None => self.play(now, &packet),
            Some(current) if current == ssrc => {
                if let Some((other, held)) = self.pending.take() {
                    // The played SSRC is still sending: the other one was interleaved.
                    self.peer.count_stray_ssrc(other, held.len() as u64);
                }
                self.play(now, &packet);
            }
            Some(_) => self.hold_or_switch(now, ssrc, data),
        }
    }

    /// A packet of another SSRC than the played one's: the switch to it is taken once the
    /// played SSRC has been quiet for [`SSRC_SWITCH_GAP`]; until then it is held back.
    fn hold_or_switch(&mut self, now: Instant, ssrc: u32, data: &[u8]) {
        if self
            .pending
            .as_ref()
            .is_some_and(|(other, _)| *other != ssrc)
        {
            // A third SSRC while a second one waits: neither is a clean switch yet.
            if let Some((other, held)) = self.pending.take() {
                self.peer.count_stray_ssrc(other, held.len() as u64);
            }
        }
        let (_, held) = self.pending.get_or_insert_with(|| (ssrc, Vec::new()));
        if held.len() == PENDING_MAX {
            held.remove(0);
            self.peer.count_stray_ssrc(ssrc, 1);
        }
        held.push((now, data.to_vec()));
        let quiet = self
            .played_last
            .is_none_or(|last| now.saturating_duration_since(last) >= SSRC_SWITCH_GAP);
        if quiet {
            if let Some((_, held)) = self.pending.take() {
                for (at, data) in &held {
                    if let Ok(packet) = RtpPacket::parse(data) {
                        self.play(*at, &packet);
                    }
                }
            }
        }
    }

    fn note_gap(&mut self, now: Instant) {
        if let Some(previous) = self.gap_start().filter(|_| self.expecting) {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(previous));
        }
    }

    /// A packet of the played stream (or the one that becomes it).
    fn play(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        self.note_gap(now);
        let arrival = self.receiver.on_packet(now, packet);
        self.played_last = Some(self.played_last.map_or(now, |last| last.max(now)));
        // Telephone events sharing the stream's SSRC and sequence numbers are counted by the
        // receiver (or they would look like loss); playout conceals them with silence.
        let pt = packet.header.payload_type;
        if Some(pt) == self.config.telephone_event_pt {
            self.take_event(arrival, packet);
        } else if pt != self.config.payload_type {
            self.wrong_payload_type += 1;
        }
    }

    /// A telephone event arrived: no gap counts until it is over.
    fn note_event(&mut self) {
        self.event_ticks = event_quiet_ticks(self.config.jitter_buffer_frames);
    }

    /// Pauses or restarts the detector's gap tracking, when that changes.
    fn pause_gaps(&mut self, paused: bool) {
        if paused != self.gaps_paused {
            self.detector.pause_gaps(paused);
            self.gaps_paused = paused;
        }
    }

    fn take_event(&mut self, arrival: Arrival, packet: &RtpPacket<'_>) {
        self.note_event();
        if !matches!(arrival, Arrival::Duplicate(_)) {
            let _ = self.dtmf_rx.push(packet.header.timestamp, packet.payload);
        }
    }

    /// Whether RTP is expected from the far end from `now` on: not while it holds the call
    /// (`sendonly`, `inactive`, `0.0.0.0`) or we do, so that a hold longer than the RTP
    /// timeout is no timeout. The gap open when a hold starts counts up to then; after the
    /// resume, gaps count from the resume.
    pub fn set_expecting(&mut self, now: Instant, expecting: bool) {
        if expecting == self.expecting {
            return;
        }
        if expecting {
            self.resumed = Some(now);
        } else if let Some(from) = self.gap_start() {
            self.max_gap = self.max_gap.max(now.saturating_duration_since(from));
        }
        self.expecting = expecting;
        // Silence on hold is no dropout of an expected tone.
        self.pause_gaps(!expecting || self.event_ticks > 0);
    }

    /// Whether RTP is expected (see [`Self::set_expecting`]).
    pub fn is_expecting(&self) -> bool {
        self.expecting
    }

    /// Where the current gap counts from: the last packet, or the last resume if later.
    fn gap_start(&self) -> Option<Instant> {
        match (self.receiver.last_arrival(), self.resumed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when nothing arrived for `timeout` (since the start, before the first packet).
    pub fn is_timed_out(&self, now: Instant, timeout: Duration) -> bool {
        self.receiver.is_timed_out(now, timeout)
    }

    /// The time since the session started.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Keep the received audio played out from now on, up to `max` samples (replacing any
    /// capture under way), for [`MediaSession::take_capture`].
    pub fn start_capture(&mut self, max: usize) {
        self.capture = Some((Vec::with_capacity(max), max));
    }

    /// The capture under way, once it holds all it may.
    pub fn capture_full(&self) -> Option<&[i16]> {
        self.capture
            .as_ref()
            .filter(|(kept, max)| kept.len() >= *max)
            .map(|(kept, _)| kept.as_slice())
    }

    /// The captured audio, ending the capture.
    pub fn take_capture(&mut self) -> Option<Vec<i16>> {
        self.capture.take().map(|(kept, _)| kept)
    }

    /// Keep the audio played out from now on for the step at `line` (`record: true`), until
    /// [`Self::end_step_recording`], at most [`STEP_RECORDING_MAX`]; ends any under way.
    pub fn start_step_recording(&mut self, line: u32) {
        self.step_recordings.push(StepRecording {
            line,
            samples: Vec::new(),
        });
        self.step_recording_open = true;
    }

    /// The step being recorded is over.
    pub fn end_step_recording(&mut self) {
        self.step_recording_open = false;
    }

    /// The steps' recordings, in the order they were started (handed out once).
    pub fn take_step_recordings(&mut self) -> Vec<StepRecording> {
        self.step_recording_open = false;
        std::mem::take(&mut self.step_recordings)
    }

    /// The recording so far (8 kHz mono), if recording was asked for.
    pub fn recording(&self) -> Option<&[i16]> {
        self.recording.as_deref()
    }

    /// The gaps of every watched single tone, merged (see [`MediaReport::audio_gaps`]), and
    /// their count.
    fn audio_gaps(&self) -> (Vec<Gap>, u64) {
        let mut all: Vec<Gap> = Vec::new();
        let mut count = 0;
        for (id, _) in &self.watches {
            let (gaps, n) = self.detector.gaps(*id);
            let mut new = 0;
            for gap in gaps {
                // The same dropout seen by another watch of the same tone starts within a
                // block of it.
                let seen = all
                    .iter()
                    .any(|g| g.start_sample.abs_diff(gap.start_sample) < 160);
                if !seen {
                    all.push(*gap);
                    new += 1;
                }
            }
            // Gaps beyond those kept cannot be matched: count them as a watch saw them.
            count += new + n.saturating_sub(gaps.len() as u64);
        }
        all.sort_by_key(|g| g.start_sample);
        (all, count)
    }

    /// What was set aside so far, held packets of an undecided switch included.
    #[must_use]
    pub fn stray(&self) -> StrayStats {
        let mut stray = self.peer.stray();
        if let Some((ssrc, held)) = &self.pending {
            stray.other_ssrc += held.len() as u64;
            stray.first_ssrc.get_or_insert(*ssrc);
        }
        stray
    }

    /// When the playout began each recent frame of `code` decoded.
    fn onsets_of(&self, code: Option<SignatureCode>) -> Vec<Instant> {
        match (code, &self.signature) {
            (Some(code), Some(decoder)) => decoder
                .onsets()
                .filter(|(c, _)| *c == code)
                .map(|(_, at)| at)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The summary of the session at `now`.
    pub fn report(&self, now: Instant) -> MediaReport {
        MediaReport {
            packets_sent: self.packets_sent,
            dtmf_packets_sent: self.dtmf_packets_sent,
            frames_skipped: self.pacer.stats().overrun,
            lateness_us: self.lateness_us.histogram(),
            receive: self.receiver.stats(),
            stray: self.stray(),
            jitter_buffer: self.receiver.jitter_buffer_stats(),
            wrong_payload_type: self.wrong_payload_type,
            malformed: self.malformed,
            rms_dbfs: self.detector.rms_dbfs(),
            peak_block_dbfs: self.detector.max_block_rms_dbfs(),
            tones: self
                .watches
                .iter()
                .map(|(id, freqs)| ToneResult {
                    frequencies: freqs.clone(),
                    detection: self.detector.detection(*id).cloned(),
                })
                .collect(),
            dtmf_received: self.dtmf_rx.digits(),
            signature_sent: self.loop_starts.iter().copied().collect(),
            signature_onsets: self.onsets_of(self.signature_codes.map(|(e, _)| e)),
            own_onsets: self.onsets_of(self.signature_codes.and_then(|(_, o)| o)),
            max_gap: self.max_gap,
            loss_pattern: self.loss,
            audio_gaps: self.audio_gaps().0,
            audio_gap_count: self.audio_gaps().1,
            srtp: self.srtp_stats(),
            since_last_packet: if self.expecting {
                now.saturating_duration_since(self.gap_start().unwrap_or(self.started))
            } else {
                Duration::ZERO
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::DtmfSender;
    use crate::media::tone::{PlaylistItem, Tone};

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    /// Where the far end's packets come from in these tests (no SDP address set: it latches).
    fn peer() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], 4000))
    }

    #[test]
    fn batched_lateness_is_the_histogram_of_every_value_recorded() {
        let mut log = LatenessLog::new();
        let mut direct = Histogram::<u32>::new_with_bounds(1, 60_000_000, 2).unwrap();
        // Two full batches and part of a third, from 1 µs to 40 ms, and one out of range.
        let values: Vec<u64> = (0..(2 * LATENESS_BATCH + 17) as u64)
            .map(|i| 1 + (i * 7_919) % 40_000)
            .chain([10_000_000_000])
            .collect();
        for (i, &v) in values.iter().enumerate() {
            log.record(v);
            let _ = direct.record(v);
            // At every point, pending values included.
            assert_eq!(log.histogram(), direct, "after {} values", i + 1);
        }
        assert_eq!(log.histogram().len(), values.len() as u64 - 1);
        assert_eq!(log.max, 10_000_000_000);
    }

    fn tone_session(t0: Instant, hz: f64, seed: u64, codec: Codec) -> MediaSession {
        let mut config = MediaConfig::new(codec);
        config.telephone_event_pt = Some(101);
        let playlist = Playlist::looping(vec![PlaylistItem::Tone {
            tone: Tone::single(hz, -12.0).unwrap(),
            duration: Duration::from_secs(1),
        }]);
        MediaSession::new(t0, config, playlist, &mut IdGen::new(seed)).unwrap()
    }

    /// Two sessions joined back to back in virtual time: every packet of one arrives at the
    /// other `delay` later, except those `drop` says to lose.
    fn run(
        a: &mut MediaSession,
        b: &mut MediaSession,
        t0: Instant,
        duration: Duration,
        delay: Duration,
        drop: impl Fn(u64) -> bool,
    ) {
        let mut buf = [0u8; MAX_PACKET];
        let mut in_flight: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
        let mut sent = 0u64;
        let end = t0 + duration;
        let mut now = t0;
        while now < end {
            for (to_b, session) in [(true, &mut *a), (false, &mut *b)] {
                while let Some(len) = session.poll_transmit(now, &mut buf) {
                    sent += 1;
                    if !drop(sent) {
                        in_flight.push((now + delay, to_b, buf[..len].to_vec()));
                    }
                }
            }
            let next_tick = a.poll_timeout().min(b.poll_timeout());
            in_flight.sort_by_key(|p| p.0);
            while let Some(p) = in_flight.first() {
                if p.0 > next_tick {
                    break;
                }
                let (at, to_b, data) = in_flight.remove(0);
                if to_b {
                    b.handle_packet(at, peer(), &data);
                } else {
                    a.handle_packet(at, peer(), &data);
                }
            }
            now = next_tick;
        }
    }

    /// The mouth-to-ear delay each way between two sessions playing their signatures over a
    /// link of one-way `delay`, and the round trip of a's signature echoed by nobody (none).
    fn signature_delays(delay: Duration) -> (Option<Duration>, Option<Duration>) {
        use crate::media::signature::{mouth_to_ear, SignatureCode, SIGNATURE_LEVEL_DBFS};
        let t0 = t0();
        let (code_a, code_b) = (
            SignatureCode::for_call(3, false),
            SignatureCode::for_call(3, true),
        );
        let session = |code: SignatureCode, expected: SignatureCode, seed: u64| {
            let playlist = code.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
            let mut s = MediaSession::new(
                t0,
                MediaConfig::new(Codec::Pcmu),
                playlist,
                &mut IdGen::new(seed),
            )
            .unwrap();
            s.listen_signature();
            s.set_signature_codes(expected, Some(code));
            s
        };
        let mut a = session(code_a, code_b, 1);
        let mut b = session(code_b, code_a, 2);
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(4) + delay,
            delay,
            |_| false,
        );
        let (ra, rb) = (a.report(t0), b.report(t0));
        assert!(ra.own_onsets.is_empty(), "no echo: {:?}", ra.own_onsets);
        assert!(rb.signature_onsets.len() >= 5, "{:?}", rb.signature_onsets);
        (
            mouth_to_ear(&ra.signature_sent, &rb.signature_onsets),
            mouth_to_ear(&rb.signature_sent, &ra.signature_onsets),
        )
    }

    #[test]
    fn mouth_to_ear_delay_is_the_link_delay_plus_the_jitter_buffer_within_one_block() {
        let (base_ab, base_ba) = signature_delays(Duration::ZERO);
        let (base_ab, base_ba) = (base_ab.unwrap(), base_ba.unwrap());
        // With no link delay: the jitter buffer's depth (3 frames of 20 ms), within a block.
        let depth = Duration::from_millis(60);
        for base in [base_ab, base_ba] {
            assert!(
                base.abs_diff(depth) <= Duration::from_millis(20),
                "{base:?}"
            );
        }
        for ms in [60, 200] {
            let link = Duration::from_millis(ms);
            let (ab, ba) = signature_delays(link);
            for (measured, base) in [(ab.unwrap(), base_ab), (ba.unwrap(), base_ba)] {
                assert!(
                    measured.abs_diff(base + link) <= Duration::from_millis(20),
                    "{ms} ms link: measured {measured:?}, baseline {base:?}"
                );
            }
        }
    }

    /// A delay longer than a frame (the code's period) pairs with the frame it was sent as,
    /// not the one after it: the frame index names it.
    #[test]
    fn mouth_to_ear_delay_beyond_a_frame_is_measured_not_aliased() {
        let (base_ab, base_ba) = signature_delays(Duration::ZERO);
        let (base_ab, base_ba) = (base_ab.unwrap(), base_ba.unwrap());
        for ms in [500, 1200] {
            let link = Duration::from_millis(ms);
            let (ab, ba) = signature_delays(link);
            for (measured, base) in [(ab.unwrap(), base_ab), (ba.unwrap(), base_ba)] {
                assert!(
                    measured.abs_diff(base + link) <= Duration::from_millis(20),
                    "{ms} ms link: measured {measured:?}, baseline {base:?}"
                );
            }
        }
    }

    #[test]
    fn each_side_hears_the_others_tone() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 1, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 2, Codec::Pcmu);
        let a_hears = a.expect_tone(ToneQuery::single(440.0).unwrap()).unwrap();
        let a_not = a.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        let b_hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(2),
            Duration::from_millis(30),
            |_| false,
        );
        assert!(a.tone_found(a_hears));
        assert!(!a.tone_found(a_not), "a heard its own tone");
        assert!(b.tone_found(b_hears));
        let now = t0 + Duration::from_secs(2);
        let r = a.report(now);
        assert_eq!(r.packets_sent, 100);
        // The packet sent at 1.98 s is still in flight (30 ms transit) when the run ends.
        assert_eq!(r.receive.received, 99);
        assert_eq!(r.receive.lost(), 0);
        assert_eq!(r.frames_skipped, 0);
        // 30 ms transit plus a 3-frame jitter buffer: the tone is found within ~150 ms.
        let onset = r.tones[0].detection.as_ref().unwrap().onset();
        assert!(onset <= Duration::from_millis(150), "{onset:?}");
        assert!(r.rms_dbfs > -20.0, "{}", r.rms_dbfs);
    }

    fn srtp_crypto(byte: u8) -> crate::sdp::crypto::Crypto {
        use crate::sdp::crypto::{Crypto, CryptoSuite, MasterKey};
        Crypto {
            tag: 1,
            suite: CryptoSuite::AesCm128HmacSha1_80,
            key: MasterKey::from_bytes([byte; 30]),
        }
    }

    #[test]
    fn over_srtp_each_side_hears_the_others_tone_and_a_wrong_key_hears_nothing() {
        let t0 = t0();
        let (ka, kb) = (srtp_crypto(1), srtp_crypto(2));
        let mut a = tone_session(t0, 1000.0, 1, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 2, Codec::Pcmu);
        a.set_srtp(SrtpSession::new(&ka, &kb).unwrap());
        b.set_srtp(SrtpSession::new(&kb, &ka).unwrap());
        let a_hears = a.expect_tone(ToneQuery::single(440.0).unwrap()).unwrap();
        let b_hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        let ms30 = Duration::from_millis(30);
        run(&mut a, &mut b, t0, Duration::from_secs(2), ms30, |_| false);
        assert!(a.tone_found(a_hears));
        assert!(b.tone_found(b_hears));
        let stats = a.srtp_stats().unwrap();
        assert_eq!((stats.protected, stats.unprotected), (100, 99));
        assert_eq!((stats.auth_failures, stats.replays), (0, 0));

        // b receives with a key that is not a's: every packet fails, no audio at all.
        let mut a = tone_session(t0, 1000.0, 1, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 2, Codec::Pcmu);
        a.set_srtp(SrtpSession::new(&ka, &kb).unwrap());
        b.set_srtp(SrtpSession::new(&kb, &srtp_crypto(3)).unwrap());
        let b_hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        run(&mut a, &mut b, t0, Duration::from_secs(2), ms30, |_| false);
        assert!(!b.tone_found(b_hears));
        let stats = b.srtp_stats().unwrap();
        assert_eq!((stats.unprotected, stats.auth_failures), (0, 99));
        assert_eq!(b.report(t0 + Duration::from_secs(2)).receive.received, 0);
        // A session without SRTP has no SRTP counters.
        assert!(tone_session(t0, 1.0, 3, Codec::Pcmu).srtp_stats().is_none());
    }

    #[test]
    fn new_srtp_keys_of_a_re_offer_replace_the_context_and_its_counters_go_on() {
        use crate::sdp::crypto::SrtpKeys;
        let t0 = t0();
        let (ka, kb, kc) = (srtp_crypto(1), srtp_crypto(2), srtp_crypto(3));
        let keys =
            |local: &crate::sdp::crypto::Crypto, remote: &crate::sdp::crypto::Crypto| SrtpKeys {
                local: local.clone(),
                remote: remote.clone(),
            };
        let mut a = tone_session(t0, 1000.0, 1, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 2, Codec::Pcmu);
        a.follow_srtp(Some(&keys(&ka, &kb)));
        b.follow_srtp(Some(&keys(&kb, &ka)));
        let ms30 = Duration::from_millis(30);
        run(&mut a, &mut b, t0, Duration::from_secs(1), ms30, |_| false);
        let before = b.srtp_stats().unwrap();
        assert!(before.unprotected > 40, "{before:?}");
        // The same keys again (a re-INVITE that keeps them) and none: nothing changes.
        b.follow_srtp(Some(&keys(&kb, &ka)));
        b.follow_srtp(None);
        assert_eq!(b.srtp_stats(), Some(before));
        // a re-keys: b follows, the counters go on, no packet fails.
        let t1 = t0 + Duration::from_secs(1);
        a.follow_srtp(Some(&keys(&kc, &kb)));
        b.follow_srtp(Some(&keys(&kb, &kc)));
        let b_hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        run(&mut a, &mut b, t1, Duration::from_secs(1), ms30, |_| false);
        let after = b.srtp_stats().unwrap();
        assert!(after.unprotected > before.unprotected + 40, "{after:?}");
        assert_eq!(after.auth_failures, 0);
        assert!(b.tone_found(b_hears));
    }

    /// A driver that sends first and reads after (`defer_playout`, `play_out` after each
    /// read) plays the same frames, and finds the tone as soon, as one that reads first.
    #[test]
    fn deferred_playout_plays_the_same_frames_as_reading_first() {
        let t0 = t0();
        let tick = Duration::from_millis(20);
        let mut heard = Vec::new();
        for deferred in [false, true] {
            let mut a = tone_session(t0, 1000.0, 11, Codec::Pcmu);
            let mut b = tone_session(t0, 440.0, 12, Codec::Pcmu);
            let query = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
            if deferred {
                b.defer_playout();
            }
            let mut buf = [0u8; MAX_PACKET];
            let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
            for n in 0..100u32 {
                let now = t0 + tick * n;
                while let Some(len) = a.poll_transmit(now, &mut buf) {
                    in_flight.push_back((now + Duration::from_millis(5), buf[..len].to_vec()));
                }
                let arrivals = |b: &mut MediaSession, q: &mut VecDeque<(Instant, Vec<u8>)>| {
                    while q.front().is_some_and(|(at, _)| *at <= now) {
                        let (at, data) = q.pop_front().unwrap();
                        b.handle_packet(at, peer(), &data);
                    }
                };
                if deferred {
                    // Send first: the playout tick is owed until after the read.
                    while b.poll_transmit(now, &mut buf).is_some() {}
                    let played = b.samples_played();
                    arrivals(&mut b, &mut in_flight);
                    assert_eq!(b.samples_played(), played, "played before play_out");
                    b.play_out();
                } else {
                    arrivals(&mut b, &mut in_flight);
                    while b.poll_transmit(now, &mut buf).is_some() {}
                }
            }
            let r = b.report(t0 + tick * 100);
            assert!(b.tone_found(query), "deferred: {deferred}");
            heard.push((
                b.samples_played(),
                r.tones[0].detection.as_ref().unwrap().onset(),
                r.jitter_buffer.missing,
            ));
        }
        assert_eq!(heard[0], heard[1]);
    }

    /// A far end that holds the call for 5 s sends nothing meanwhile: with the hold told
    /// to the session, no gap counts; after the resume the tone is heard again, and a far end
    /// that does not resume its RTP shows a gap from the resume on.
    #[test]
    fn a_hold_is_no_gap_and_gaps_count_again_from_the_resume() {
        let t0 = t0();
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        for told in [true, false] {
            let mut a = tone_session(t0, 1000.0, 21, Codec::Pcmu);
            let mut b = tone_session(t0, 440.0, 22, Codec::Pcmu);
            run(&mut a, &mut b, t0, secs(2), ms(10), |_| false);
            // Hold: a stops sending for 5 s.
            a.set_sending(false);
            if told {
                b.set_expecting(t0 + secs(2), false);
                assert!(!b.is_expecting());
                assert_eq!(b.report(t0 + secs(4)).since_last_packet, Duration::ZERO);
            }
            run(&mut a, &mut b, t0 + secs(2), secs(5), ms(10), |_| false);
            // Resume.
            a.set_sending(true);
            if told {
                b.set_expecting(t0 + secs(7), true);
            }
            let after = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
            run(&mut a, &mut b, t0 + secs(7), secs(2), ms(10), |_| false);
            let r = b.report(t0 + secs(9));
            assert!(b.tone_found(after), "told: {told}");
            // No sequence number was used while a did not send: no loss.
            assert_eq!(r.receive.lost(), 0, "{:?}", r.receive);
            if told {
                assert!(r.max_gap < ms(100), "{:?}", r.max_gap);
            } else {
                assert!(r.max_gap > secs(4), "{:?}", r.max_gap);
            }
            // a stops for good without a hold: the gap counts again.
            a.set_sending(false);
            run(&mut a, &mut b, t0 + secs(9), secs(4), ms(10), |_| false);
            assert!(b.report(t0 + secs(13)).since_last_packet > ms(3900));
        }
        // Resumed, but the far end never sends again: the gap counts from the resume.
        let mut b = tone_session(t0, 440.0, 23, Codec::Pcmu);
        let mut a = tone_session(t0, 1000.0, 24, Codec::Pcmu);
        run(&mut a, &mut b, t0, secs(1), ms(10), |_| false);
        b.set_expecting(t0 + secs(1), false);
        b.set_expecting(t0 + secs(6), true);
        let r = b.report(t0 + secs(10));
        assert_eq!(r.since_last_packet, secs(4));
        assert!(r.max_gap < ms(100));
    }

    #[test]
    fn loss_is_counted_and_the_tone_still_found() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 3, Codec::Pcma);
        let mut b = tone_session(t0, 1000.0, 4, Codec::Pcma);
        let hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        // Lose every 10th packet a sends (a sends odd-numbered ones here: 1, 3, 5 …).
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(4),
            Duration::from_millis(10),
            |n| n % 2 == 1 && (n / 2) % 10 == 3,
        );
        let r = b.report(t0 + Duration::from_secs(4));
        assert!(b.tone_found(hears));
        assert_eq!(r.receive.lost(), 20, "{:?}", r.receive);
        assert!(r.jitter_buffer.missing >= 19, "{:?}", r.jitter_buffer);
        // Losing one packet leaves a 40 ms gap between arrivals.
        assert_eq!(r.max_gap, Duration::from_millis(40));
    }

    /// Whether `n`, the n-th packet of [`run`] (a's and b's alternate, a's first), is a's
    /// and due in `[from, to)` (a's k-th packet is due at (k − 1)·20 ms).
    fn a_sends_in(n: u64, from: Duration, to: Duration) -> bool {
        let at = Duration::from_millis(20) * u32::try_from((n - 1) / 2).unwrap();
        n % 2 == 1 && at >= from && at < to
    }

    #[test]
    fn a_200_ms_dropout_in_the_tone_is_a_gap_of_200_ms_and_ten_lost_frames() {
        let t0 = t0();
        let ms = Duration::from_millis;
        let mut a = tone_session(t0, 1000.0, 31, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 32, Codec::Pcmu);
        let hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        run(&mut a, &mut b, t0, ms(6000), ms(10), |n| {
            a_sends_in(n, ms(3000), ms(3200))
        });
        let r = b.report(t0 + ms(6000));
        assert!(b.tone_found(hears));
        assert_eq!(r.audio_gap_count, 1, "{:?}", r.audio_gaps);
        let gap = r.audio_gaps[0];
        assert!(gap.duration().abs_diff(ms(200)) <= ms(20), "{gap:?}");
        // The stream's time starts with the first frame played (after the jitter buffer
        // filled): the dropout is about 3 s into it.
        assert!(gap.start().abs_diff(ms(3000)) <= ms(100), "{gap:?}");
        // The ten frames are missing: Ppl 10/300, in one burst.
        assert_eq!(r.loss_pattern.lost, 10, "{:?}", r.loss_pattern);
        let q = r.quality().unwrap();
        assert!(q.burst_r > 5.0, "{q:?}");
        assert!(q.mos_cqe < 4.2, "{q:?}");
    }

    #[test]
    fn the_mos_estimate_falls_with_loss_and_a_clean_stream_rates_4_41() {
        let t0 = t0();
        let ms = Duration::from_millis;
        let mut mos = Vec::new();
        for every in [0u64, 20, 10] {
            let mut a = tone_session(t0, 1000.0, 41, Codec::Pcma);
            let mut b = tone_session(t0, 440.0, 42, Codec::Pcma);
            b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
            // Lose every `every`-th packet of a's (none for 0).
            run(&mut a, &mut b, t0, ms(10_000), ms(10), |n| {
                every != 0 && n % 2 == 1 && ((n - 1) / 2) % every == every - 1
            });
            let r = b.report(t0 + ms(10_000));
            // Single lost frames are 20 ms holes: under the 40 ms floor, no gap.
            assert_eq!(r.audio_gap_count, 0, "{:?}", r.audio_gaps);
            mos.push(r.quality().unwrap().mos_cqe);
        }
        assert!((mos[0] - 4.41).abs() < 0.01, "{mos:?}");
        // 5 % and 10 % spread loss, G.711 without concealment (Bpl 4.3): far below 4.41.
        assert!(mos[1] < 2.6 && mos[1] > 1.5, "{mos:?}");
        assert!(mos[2] < 2.0 && mos[2] > 1.0, "{mos:?}");
    }

    #[test]
    fn dtmf_replacing_the_tone_for_a_while_is_no_gap() {
        let t0 = t0();
        let secs = Duration::from_secs;
        let mut a = tone_session(t0, 1000.0, 61, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 62, Codec::Pcmu);
        b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        run(
            &mut a,
            &mut b,
            t0,
            secs(1),
            Duration::from_millis(10),
            |_| false,
        );
        // a's audio pauses while it sends three digits (events on its audio stream).
        a.send_dtmf("123", DtmfConfig::default()).unwrap();
        run(
            &mut a,
            &mut b,
            t0 + secs(1),
            secs(3),
            Duration::from_millis(10),
            |_| false,
        );
        let r = b.report(t0 + secs(4));
        assert_eq!(r.dtmf_received, "123");
        assert_eq!(r.audio_gap_count, 0, "{:?}", r.audio_gaps);
    }

    #[test]
    fn silence_on_hold_is_no_gap_in_the_tone_but_an_untold_stop_is() {
        let t0 = t0();
        let secs = Duration::from_secs;
        for told in [true, false] {
            let mut a = tone_session(t0, 1000.0, 51, Codec::Pcmu);
            let mut b = tone_session(t0, 440.0, 52, Codec::Pcmu);
            b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
            run(
                &mut a,
                &mut b,
                t0,
                secs(2),
                Duration::from_millis(10),
                |_| false,
            );
            a.set_sending(false);
            if told {
                b.set_expecting(t0 + secs(2), false);
            }
            run(
                &mut a,
                &mut b,
                t0 + secs(2),
                secs(1),
                Duration::from_millis(10),
                |_| false,
            );
            a.set_sending(true);
            if told {
                b.set_expecting(t0 + secs(3), true);
            }
            run(
                &mut a,
                &mut b,
                t0 + secs(3),
                secs(2),
                Duration::from_millis(10),
                |_| false,
            );
            let r = b.report(t0 + secs(5));
            if told {
                assert_eq!(r.audio_gap_count, 0, "{:?}", r.audio_gaps);
            } else {
                assert_eq!(r.audio_gap_count, 1, "{:?}", r.audio_gaps);
                let gap = r.audio_gaps[0].duration();
                assert!(
                    gap.abs_diff(secs(1)) <= Duration::from_millis(20),
                    "{gap:?}"
                );
            }
        }
    }

    /// A far end sending 30 ms packets (240 samples) under a new SSRC halfway, as SIPp's
    /// pcap replay does: every packet is decoded and counted.
    #[test]
    fn longer_packets_and_ssrc_changes_are_decoded_and_counted() {
        let t0 = t0();
        let mut config = MediaConfig::new(Codec::Pcma);
        config.jitter_buffer_frames = 1;
        let mut b =
            MediaSession::new(t0, config, Playlist::new(vec![]), &mut IdGen::new(13)).unwrap();
        let hears = b.expect_tone(ToneQuery::single(800.0).unwrap()).unwrap();
        let mut tone = crate::media::tone::ToneGenerator::new(&Tone::single(800.0, -10.0).unwrap());
        let mut pcm = [0i16; 240];
        let mut payload = [0u8; 240];
        let mut buf = [0u8; MAX_PACKET];
        let mut out = [0u8; MAX_PACKET];
        for i in 0..60u32 {
            use crate::media::tone::AudioSource;
            tone.fill(&mut pcm);
            Codec::Pcma.encode(&pcm, &mut payload).unwrap();
            let ssrc = if i < 30 { 0x1111 } else { 0x2222 };
            let header = RtpHeader {
                marker: i % 30 == 0,
                payload_type: 8,
                sequence: (i % 30) as u16 + if i < 30 { 100 } else { 5000 },
                timestamp: i * 240,
                ssrc,
            };
            let len = write_packet(&header, &payload, &mut buf).unwrap();
            let at = t0 + Duration::from_millis(u64::from(i) * 30);
            b.handle_packet(at, peer(), &buf[..len]);
            while b.poll_transmit(at, &mut out).is_some() {}
        }
        let end = t0 + Duration::from_secs(3);
        while b.poll_transmit(end, &mut out).is_some() {}
        let r = b.report(end);
        assert_eq!(r.receive.received, 60, "{:?}", r.receive);
        assert_eq!(r.receive.expected, 60, "{:?}", r.receive);
        assert_eq!(r.receive.ssrc_changes, 1);
        assert!(b.tone_found(hears), "30 ms packets were not decoded");
        assert!(r.rms_dbfs > -15.0, "{}", r.rms_dbfs);
    }

    #[test]
    fn silence_is_silent_and_never_a_tone() {
        let t0 = t0();
        let mut a = MediaSession::new(
            t0,
            MediaConfig::new(Codec::Pcmu),
            Playlist::new(vec![]),
            &mut IdGen::new(5),
        )
        .unwrap();
        let mut b = tone_session(t0, 440.0, 6, Codec::Pcmu);
        let hears = b.expect_tone(ToneQuery::single(440.0).unwrap()).unwrap();
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(1),
            Duration::from_millis(5),
            |_| false,
        );
        let r = b.report(t0 + Duration::from_secs(1));
        assert!(!b.tone_found(hears));
        assert!(r.is_silent(-50.0), "{}", r.peak_block_dbfs);
        assert!(r.receive.received > 40);
    }

    #[test]
    fn dtmf_travels_as_rfc4733_events() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 7, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 8, Codec::Pcmu);
        a.send_dtmf("12#", DtmfConfig::default()).unwrap();
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(2),
            Duration::from_millis(10),
            |_| false,
        );
        let r = b.report(t0 + Duration::from_secs(2));
        assert_eq!(r.dtmf_received, "12#");
        // The events' sequence numbers belong to the stream: no loss is seen.
        assert_eq!(r.receive.lost(), 0, "{:?}", r.receive);
        // 100 ms per digit = 5 packets, the end packet twice more: 7 per digit.
        assert_eq!(a.report(t0).dtmf_packets_sent, 3 * 7);
        assert!(!a.is_sending_dtmf());
    }

    #[test]
    fn dtmf_without_telephone_event_is_refused() {
        let mut s = MediaSession::new(
            t0(),
            MediaConfig::new(Codec::Pcmu),
            Playlist::new(vec![]),
            &mut IdGen::new(9),
        )
        .unwrap();
        assert!(matches!(
            s.send_dtmf("1", DtmfConfig::default()),
            Err(MediaError::NoTelephoneEvent)
        ));
    }

    #[test]
    fn a_late_wakeup_sends_a_bounded_burst_and_counts_the_rest_as_skipped() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 10, Codec::Pcmu);
        let mut buf = [0u8; MAX_PACKET];
        // Wake up 200 ms late: frames 0..=10 are due; 3 are sent, 8 skipped.
        let now = t0 + Duration::from_millis(200);
        let mut sent = 0;
        while a.poll_transmit(now, &mut buf).is_some() {
            sent += 1;
        }
        assert_eq!(sent, 3);
        let r = a.report(now);
        assert_eq!(r.frames_skipped, 8);
        assert!(r.lateness_us.max() >= 40_000);
    }

    #[test]
    fn a_receiver_whose_ticks_come_late_still_plays_out_in_real_time_and_hears_the_tone() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 3, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 4, Codec::Pcmu);
        let hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        let mut buf = [0u8; MAX_PACKET];
        let mut queued: Vec<(Instant, Vec<u8>)> = Vec::new();
        // `a` sends on time; `b`'s thread gets to it only every 200 ms (an overloaded media
        // thread): it reads what arrived meanwhile, with the arrival times, then its frames.
        let mut b_next = t0 + Duration::from_millis(200);
        let mut now = t0;
        while now < t0 + Duration::from_secs(3) {
            while let Some(len) = a.poll_transmit(now, &mut buf) {
                queued.push((now + Duration::from_millis(1), buf[..len].to_vec()));
            }
            if now >= b_next {
                for (at, data) in queued.drain(..) {
                    b.handle_packet(at, peer(), &data);
                }
                while b.poll_transmit(now, &mut buf).is_some() {}
                b_next += Duration::from_millis(200);
            }
            now += Duration::from_millis(20);
        }
        let r = b.report(now);
        assert!(r.frames_skipped > 0, "b was not late");
        assert_eq!(r.receive.lost(), 0);
        assert!(
            b.tone_found(hears),
            "the tone arrived whole but was not heard: {:?}",
            r.tones
        );
    }

    #[test]
    fn a_sender_whose_ticks_come_late_is_still_heard() {
        let t0 = t0();
        let mut a = tone_session(t0, 1000.0, 5, Codec::Pcmu);
        let mut b = tone_session(t0, 440.0, 6, Codec::Pcmu);
        let hears = b.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        let mut buf = [0u8; MAX_PACKET];
        // `a`'s thread gets to it every 100 ms: 5 frames due, 3 sent, 2 skipped each time.
        let mut a_next = t0;
        let mut now = t0;
        while now < t0 + Duration::from_secs(3) {
            if now >= a_next {
                while let Some(len) = a.poll_transmit(now, &mut buf) {
                    b.handle_packet(now + Duration::from_millis(1), peer(), &buf[..len]);
                }
                a_next += Duration::from_millis(100);
            }
            while b.poll_transmit(now, &mut buf).is_some() {}
            now += Duration::from_millis(20);
        }
        assert!(a.report(now).frames_skipped > 0, "a was not late");
        let r = b.report(now);
        assert!(
            b.tone_found(hears),
            "a late sender's tone was not heard: {:?}",
            r.tones
        );
    }

    #[test]
    fn bridge_audio_is_sent_and_received_audio_pulled() {
        let t0 = t0();
        let mut config = MediaConfig::new(Codec::Pcmu);
        config.bridge = true;
        let mut a = MediaSession::new(
            t0,
            config.clone(),
            Playlist::new(vec![]),
            &mut IdGen::new(11),
        )
        .unwrap();
        let mut b =
            MediaSession::new(t0, config, Playlist::new(vec![]), &mut IdGen::new(12)).unwrap();
        let heard = b.expect_tone(ToneQuery::single(600.0).unwrap()).unwrap();
        let tone: Vec<f32> = (0..8000)
            .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 600.0 * i as f32 / 8000.0).sin())
            .collect();
        a.push_audio(&tone);
        run(
            &mut a,
            &mut b,
            t0,
            Duration::from_secs(1),
            Duration::from_millis(10),
            |_| false,
        );
        assert!(b.tone_found(heard));
        let mut got = Vec::new();
        b.pull_audio(&mut got);
        assert!(got.len() >= 7000, "{}", got.len());
        let peak = got.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((0.25..0.35).contains(&peak), "{peak}");
    }

    /// PCMU packets of a `hz` tone, 20 ms each: packet `i` has sequence `seq0 + i` and
    /// timestamp `160·i`.
    struct ToneStream {
        tone: crate::media::tone::ToneGenerator,
        ssrc: u32,
        seq0: u16,
        pt: u8,
    }

    impl ToneStream {
        fn new(hz: f64, ssrc: u32, seq0: u16) -> Self {
            Self {
                tone: crate::media::tone::ToneGenerator::new(&Tone::single(hz, -10.0).unwrap()),
                ssrc,
                seq0,
                pt: 0,
            }
        }

        fn packet(&mut self, i: u32) -> Vec<u8> {
            use crate::media::tone::AudioSource;
            let mut pcm = [0i16; 160];
            let mut payload = [0u8; 160];
            self.tone.fill(&mut pcm);
            Codec::Pcmu.encode(&pcm, &mut payload).unwrap();
            let header = RtpHeader {
                marker: i == 0,
                payload_type: self.pt,
                sequence: self.seq0.wrapping_add(i as u16),
                timestamp: 160 * i,
                ssrc: self.ssrc,
            };
            let mut buf = [0u8; MAX_PACKET];
            let len = write_packet(&header, &payload, &mut buf).unwrap();
            buf[..len].to_vec()
        }
    }

    /// A receiving session expecting 700 Hz and 1000 Hz, with the peer's SDP address set.
    fn listener(t0: Instant) -> (MediaSession, WatchId, WatchId) {
        let mut config = MediaConfig::new(Codec::Pcmu);
        config.telephone_event_pt = Some(101);
        let mut s =
            MediaSession::new(t0, config, Playlist::new(vec![]), &mut IdGen::new(21)).unwrap();
        s.set_peer_address(peer());
        let stray_tone = s.expect_tone(ToneQuery::single(700.0).unwrap()).unwrap();
        let peer_tone = s.expect_tone(ToneQuery::single(1000.0).unwrap()).unwrap();
        (s, stray_tone, peer_tone)
    }

    /// Runs `n` 20 ms ticks: at tick `i`, `arrivals(i)` gives the datagrams that arrive (with
    /// their source), then the session plays out.
    fn drive(
        s: &mut MediaSession,
        t0: Instant,
        n: u32,
        mut arrivals: impl FnMut(u32) -> Vec<(SocketAddr, Vec<u8>)>,
    ) -> Instant {
        let mut out = [0u8; MAX_PACKET];
        for i in 0..n {
            let now = t0 + Duration::from_millis(20) * i;
            for (k, (from, data)) in arrivals(i).into_iter().enumerate() {
                s.handle_packet(now + Duration::from_micros(100 * k as u64), from, &data);
            }
            while s.poll_transmit(now, &mut out).is_some() {}
        }
        t0 + Duration::from_millis(20) * n
    }

    /// A far end still streaming 700 Hz at the port, from another port of the same host,
    /// before and while the peer sends 1000 Hz: the 700 Hz is never heard and is stray.
    #[test]
    fn rtp_from_another_source_is_stray_never_the_peers_audio() {
        let t0 = t0();
        let (mut s, stray_tone, peer_tone) = listener(t0);
        let intruder = SocketAddr::from(([192, 0, 2, 1], 4002));
        let mut other = ToneStream::new(700.0, 0x0700, 9);
        let mut far = ToneStream::new(1000.0, 0x1000, 500);
        let end = drive(&mut s, t0, 150, |i| {
            // The intruder from the start; the peer from 1 s on.
            let mut v = vec![(intruder, other.packet(i))];
            if i >= 50 {
                v.push((peer(), far.packet(i - 50)));
            }
            v
        });
        let r = s.report(end);
        assert!(!s.tone_found(stray_tone), "stray audio was heard");
        assert!(s.tone_found(peer_tone));
        assert_eq!(r.receive.received, 100, "{:?}", r.receive);
        assert_eq!(r.receive.lost(), 0);
        assert_eq!(r.receive.ssrc, Some(0x1000));
        assert_eq!(r.receive.ssrc_changes, 0);
        assert_eq!(r.stray.other_address, 150);
        assert_eq!(r.stray.first_source, Some(intruder));
        assert_eq!(r.stray.sources, 1);
        assert_eq!(r.stray.packets(), 150);
        // Stray packets are no sign of life of the peer: the gap before its first packet
        // (1 s, counted from the start) shows.
        assert_eq!(s.peer_source(), Some(peer()));

        // Without any packet from the peer, stray RTP alone is silence: no received
        // packet, no tone.
        let (mut s, stray_tone, _) = listener(t0);
        let mut other = ToneStream::new(700.0, 0x0700, 9);
        let end = drive(&mut s, t0, 100, |i| vec![(intruder, other.packet(i))]);
        let r = s.report(end);
        assert!(!s.tone_found(stray_tone));
        assert_eq!(r.receive.received, 0);
        assert_eq!(r.stray.other_address, 100);
        assert!(s.is_timed_out(end, Duration::from_secs(2)));
    }

    /// A second SSRC from the peer's own address, interleaved with the played one: stray,
    /// never mixed in, and the played stream's loss and jitter are untouched.
    #[test]
    fn a_second_ssrc_interleaved_with_the_played_one_is_stray() {
        let t0 = t0();
        let (mut s, stray_tone, peer_tone) = listener(t0);
        let mut far = ToneStream::new(1000.0, 0x1000, 500);
        let mut second = ToneStream::new(700.0, 0x0700, 40_000);
        let end = drive(&mut s, t0, 150, |i| {
            let mut v = vec![(peer(), far.packet(i))];
            if (20..120).contains(&i) {
                v.push((peer(), second.packet(i - 20)));
            }
            v
        });
        let r = s.report(end);
        assert!(
            !s.tone_found(stray_tone),
            "the interleaved stream was heard"
        );
        assert!(s.tone_found(peer_tone));
        assert_eq!((r.receive.expected, r.receive.received), (150, 150));
        assert_eq!(r.receive.ssrc, Some(0x1000));
        assert_eq!(r.stray.other_ssrc, 100);
        assert_eq!(r.stray.first_ssrc, Some(0x0700));
        assert_eq!(r.stray.other_address, 0);
        assert_eq!(r.jitter_buffer.missing, 0);
    }

    /// A clean switch (the played SSRC stops, another starts at once, as after a re-INVITE
    /// or an SBC's media change) is the peer's: the new stream is played from its first
    /// packet, nothing is stray, and both streams count.
    #[test]
    fn a_clean_ssrc_switch_is_played_from_its_first_packet() {
        let t0 = t0();
        let (mut s, new_tone, old_tone) = listener(t0);
        let mut before = ToneStream::new(1000.0, 0x1000, 500);
        let mut after = ToneStream::new(700.0, 0x0700, 40_000);
        let mut first_played = None;
        let mut out = [0u8; MAX_PACKET];
        for i in 0..150u32 {
            let now = t0 + Duration::from_millis(20) * i;
            let packet = if i < 60 {
                before.packet(i)
            } else {
                after.packet(i - 60)
            };
            // One packet of each stream lost.
            if i != 30 && i != 100 {
                s.handle_packet(now, peer(), &packet);
            }
            while s.poll_transmit(now, &mut out).is_some() {}
            if first_played.is_none() && s.receiver.played_ssrc() == Some(0x0700) {
                first_played = Some(s.receiver.stats().received);
            }
        }
        let r = s.report(t0 + Duration::from_secs(3));
        assert!(s.tone_found(old_tone) && s.tone_found(new_tone));
        assert_eq!(r.stray.packets(), 0, "{:?}", r.stray);
        assert_eq!(r.receive.ssrc, Some(0x0700));
        assert_eq!(r.receive.ssrc_changes, 1);
        // Both streams' packets and losses: the first stream's loss still shows.
        assert_eq!((r.receive.expected, r.receive.received), (150, 148));
        assert_eq!(r.receive.lost(), 2);
        // The switch was taken after the old stream's 100 ms of quiet, with the packets held
        // meanwhile played first.
        // (packets 60 to 64: the last old one arrived at 1.18 s, the switch at 1.28 s; one of
        // the 60 old ones was lost).
        assert_eq!(first_played, Some(59 + 5));
    }

    /// RFC 4733 events under an SSRC of their own, between the audio packets: the digits
    /// arrive, the audio plays on without a gap, nothing is stray or lost.
    #[test]
    fn telephone_events_under_their_own_ssrc_are_dtmf_not_a_switch() {
        let t0 = t0();
        let (mut s, _, peer_tone) = listener(t0);
        let mut far = ToneStream::new(1000.0, 0x1000, 500);
        let mut events = DtmfSender::new("7", DtmfConfig::default()).unwrap();
        let mut seq = 3000u16;
        let end = drive(&mut s, t0, 100, |i| {
            let mut v = vec![(peer(), far.packet(i))];
            if i >= 30 {
                if let Some(e) = events.poll_tick(160 * i) {
                    let header = RtpHeader {
                        marker: e.marker,
                        payload_type: 101,
                        sequence: seq,
                        timestamp: e.timestamp,
                        ssrc: 0xE7E7,
                    };
                    seq += 1;
                    let mut buf = [0u8; 16];
                    let len = write_packet(&header, &e.payload(), &mut buf).unwrap();
                    v.push((peer(), buf[..len].to_vec()));
                }
            }
            v
        });
        let r = s.report(end);
        assert_eq!(r.dtmf_received, "7");
        assert!(s.tone_found(peer_tone));
        assert_eq!(r.stray.packets(), 0);
        assert_eq!(r.receive.ssrc, Some(0x1000));
        assert_eq!(r.receive.ssrc_changes, 1);
        assert_eq!(r.receive.lost(), 0);
        assert_eq!(r.receive.received, 100 + 7);
        assert_eq!(r.jitter_buffer.missing + r.jitter_buffer.underruns, 0);
    }
}
