//! What a call plays, what it expects to hear, and the media part of its report — shared by
//! `sipcheck call` and `sipcheck answer`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711::Codec;
use sipcheck_core::media::session::{MediaConfig, MediaReport, MediaSession};
use sipcheck_core::media::tone::{Playlist, PlaylistItem, Tone, ToneQuery};
use sipcheck_core::media::wav;
use sipcheck_core::sdp::crypto::SrtpPolicy;
use sipcheck_core::sdp::{Direction, LocalMedia, Negotiated};

use super::args::{codec_parser, parse_duration, parse_level, parse_port_range};
use super::ProbeError;
use crate::drive::media::PortRange;

/// A tone as typed on the command line: `440` or `350+440` (Hz).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSpec {
    /// One or two frequencies.
    pub low: f64,
    /// The second frequency of a dual tone.
    pub high: Option<f64>,
}

impl std::str::FromStr for ToneSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hz = |v: &str| -> Result<f64, String> {
            let v = v.trim().trim_end_matches("Hz").trim_end_matches("hz");
            let f: f64 = v
                .parse()
                .map_err(|_| format!("'{s}' is not a frequency in Hz (e.g. 440 or 350+440)"))?;
            if let Some(message) = sipcheck_core::media::tone_range_error(f) {
                return Err(message);
            }
            Ok(f)
        };
        match s.split_once('+') {
            Some((a, b)) => Ok(Self {
                low: hz(a)?,
                high: Some(hz(b)?),
            }),
            None => Ok(Self {
                low: hz(s)?,
                high: None,
            }),
        }
    }
}

impl ToneSpec {
    fn tone(&self, level_dbfs: f64) -> Result<Tone, ProbeError> {
        match self.high {
            Some(high) => Tone::dual(self.low, high, level_dbfs),
            None => Tone::single(self.low, level_dbfs),
        }
        .map_err(|e| ProbeError::Invalid(e.to_string()))
    }

    fn query(&self) -> Result<ToneQuery, ProbeError> {
        match self.high {
            Some(high) => ToneQuery::dual(self.low, high),
            None => ToneQuery::single(self.low),
        }
        .map_err(|e| ProbeError::Invalid(e.to_string()))
    }

    fn label(&self) -> String {
        match self.high {
            Some(high) => format!("{}+{} Hz", self.low, high),
            None => format!("{} Hz", self.low),
        }
    }
}

/// The media options of a call, shared by `sipcheck call` and `sipcheck answer`: read by clap
/// (each field's doc is its help text, as printed).
#[derive(Debug, Clone, Args)]
pub struct AudioArgs {
    /// Play a tone for the whole call: HZ or HZ+HZ (dual tone), e.g. 440 or 350+440.
    #[arg(long, value_name = "HZ[+HZ]")]
    pub play_tone: Option<ToneSpec>,
    /// Play a WAV file (any rate, mono or stereo, 8/16/24/32-bit or float), then silence.
    #[arg(long, value_name = "FILE", conflicts_with = "play_tone")]
    pub play_wav: Option<PathBuf>,
    /// Level of the played tone in dBFS (per component).
    #[arg(long = "level", value_name = "LEVEL", default_value_t = -12.0, allow_hyphen_values = true, value_parser = parse_level)]
    pub level_dbfs: f64,
    /// Fail unless this tone is heard: HZ or HZ+HZ.
    #[arg(long, value_name = "HZ[+HZ]")]
    pub expect_tone: Option<ToneSpec>,
    /// Send these DTMF digits (RFC 4733) 0.5 s after the answer.
    #[arg(long, value_name = "DIGITS")]
    pub send_dtmf: Option<String>,
    /// Fail unless exactly these DTMF digits (RFC 4733) are received.
    #[arg(long, value_name = "DIGITS")]
    pub expect_dtmf: Option<String>,
    /// Write the received audio to a WAV file (8 kHz mono).
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,
    /// Codec to offer/accept (repeat for several, in order of preference).
    #[arg(long = "codec", value_parser = codec_parser(), default_values = ["pcmu", "pcma"])]
    pub codecs: Vec<Codec>,
    /// Do not fail a call that received no RTP at all.
    #[arg(long)]
    pub no_media_ok: bool,
    /// Fail a call whose incoming RTP stops for longer than this.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub rtp_timeout: Duration,
    /// Fail a call whose expected tone, once heard, drops out for this long or longer.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub max_gap: Duration,
    /// Local RTP port range.
    #[arg(long, default_value = "20000-29999", value_parser = parse_port_range)]
    pub rtp_ports: (u16, u16),
    /// SRTP keyed by SDES (RFC 4568): `required` offers RTP/SAVP with a=crypto and refuses
    /// plain RTP (488 to a plain offer); `optional` offers RTP/AVP with a=crypto and takes
    /// either; `off` is plain RTP only.
    #[arg(long, value_name = "POLICY", default_value = "off", value_parser = parse_srtp)]
    pub srtp: SrtpPolicy,
}

fn parse_srtp(s: &str) -> Result<SrtpPolicy, String> {
    SrtpPolicy::from_name(s)
        .ok_or_else(|| format!("unknown SRTP policy {s:?}: expected required, optional or off"))
}

/// The media options, checked and loaded (the WAV read and converted) before any SIP is sent.
#[derive(Debug, Clone)]
pub struct PreparedAudio {
    args: AudioArgs,
    items: Vec<PlaylistItem>,
    looping: bool,
}

impl AudioArgs {
    /// The local ports RTP is bound to.
    #[must_use]
    pub fn port_range(&self) -> PortRange {
        PortRange::new(self.rtp_ports.0, self.rtp_ports.1)
    }

    /// Check the options and load the WAV file; an error here is a usage error.
    pub fn prepare(&self) -> Result<PreparedAudio, ProbeError> {
        if self.play_tone.is_some() && self.play_wav.is_some() {
            return Err(ProbeError::Invalid(
                "--play-tone and --play-wav exclude each other".into(),
            ));
        }
        for digits in [&self.send_dtmf, &self.expect_dtmf].into_iter().flatten() {
            sipcheck_core::media::dtmf::Digit::parse_str(digits)
                .map_err(|e| ProbeError::Invalid(format!("DTMF digits '{digits}': {e}")))?;
        }
        if self.codecs.is_empty() {
            return Err(ProbeError::Invalid("at least one codec is needed".into()));
        }
        let (items, looping) = match (&self.play_tone, &self.play_wav) {
            (Some(tone), _) => (
                vec![PlaylistItem::Tone {
                    tone: tone.tone(self.level_dbfs)?,
                    duration: Duration::from_secs(1),
                }],
                true,
            ),
            (None, Some(path)) => {
                // Decoded as it is read: the file is never held whole in memory.
                let file = std::fs::File::open(path).map_err(|e| {
                    ProbeError::Invalid(format!("cannot read {}: {e}", path.display()))
                })?;
                let len = file.metadata().map_or(u64::MAX, |m| m.len());
                let samples =
                    wav::decode_from(std::io::BufReader::with_capacity(64 << 10, file), len)
                        .map_err(|e| ProbeError::Invalid(format!("{}: {e}", path.display())))?;
                (vec![PlaylistItem::Pcm(samples)], false)
            }
            (None, None) => (Vec::new(), false),
        };
        if let Some(tone) = &self.expect_tone {
            tone.query()?;
        }
        Ok(PreparedAudio {
            args: self.clone(),
            items,
            looping,
        })
    }
}

impl PreparedAudio {
    /// Our media description for an offer or answer on `addr:port`.
    pub fn local_media(&self, addr: std::net::IpAddr, port: u16, session_id: u64) -> LocalMedia {
        let mut local = LocalMedia::new(addr, port, session_id);
        local.codecs = self.args.codecs.clone();
        local.srtp = self.srtp().and_then(|s| s.local());
        local
    }

    /// The SRTP policy and key source of `--srtp` (`None`: off).
    #[must_use]
    pub fn srtp(&self) -> Option<sipcheck_core::ua::agent::SrtpConfig> {
        crate::drive::srtp_config(self.args.srtp)
    }

    /// A media session for what was negotiated, starting now.
    pub fn session(&self, negotiated: &Negotiated, ids: &mut IdGen) -> MediaSession {
        let mut config = MediaConfig::new(negotiated.codec);
        config.payload_type = negotiated.payload_type;
        config.telephone_event_pt = negotiated.telephone_event_pt;
        config.ptime = Duration::from_millis(u64::from(negotiated.ptime_ms.clamp(10, 60)));
        config.send = negotiated.direction.sends();
        config.record = self.args.record.is_some();
        let playlist = if self.looping {
            Playlist::looping(self.items.clone())
        } else {
            Playlist::new(self.items.clone())
        };
        let mut session = MediaSession::new(Instant::now(), config, playlist, ids)
            .expect("validated media parameters");
        if let Some(tone) = &self.args.expect_tone {
            session
                .expect_tone(tone.query().expect("validated in prepare"))
                .expect("validated in prepare");
        }
        session
    }

    /// The tone expected from the far end (`--expect-tone`), to look for again (after a
    /// resume), with its label.
    pub fn expected_tone(&self) -> Option<(ToneQuery, String)> {
        let tone = self.args.expect_tone.as_ref()?;
        Some((tone.query().ok()?, tone.label()))
    }

    /// The digits to send once the call is up.
    pub fn send_dtmf(&self) -> Option<&str> {
        self.args.send_dtmf.as_deref()
    }

    /// Where to write the recording.
    pub fn record_path(&self) -> Option<&PathBuf> {
        self.args.record.as_ref()
    }

    /// What is expected of the far end's media over the whole call.
    pub fn expect(&self) -> ProbeExpect {
        ProbeExpect {
            tone: self.args.expect_tone.as_ref().map(ToneSpec::label),
            dtmf: self.args.expect_dtmf.clone(),
            no_media_ok: self.args.no_media_ok,
            rtp_timeout: self.args.rtp_timeout,
            max_gap: self.args.max_gap,
        }
    }

    /// The media part of the report, and every expectation that failed (the core's
    /// [`judge_media`]).
    pub fn summarize(
        &self,
        negotiated: &Negotiated,
        report: &MediaReport,
    ) -> (MediaSummary, Vec<String>) {
        let r = &report.receive;
        let lost = r.lost().max(0) as u64;
        let tones: Vec<ToneSummary> = self
            .args
            .expect_tone
            .iter()
            .zip(&report.tones)
            .map(|(spec, found)| ToneSummary {
                tone: spec.label(),
                detected: found.detection.is_some(),
                onset_ms: found
                    .detection
                    .as_ref()
                    .map(|d| d.onset().as_secs_f64() * 1000.0),
                snr_db: found.detection.as_ref().map(|d| d.snr_db),
            })
            .collect();
        let summary = MediaSummary {
            codec: negotiated.codec.to_string(),
            remote: negotiated.remote_rtp.to_string(),
            direction: direction_name(negotiated.direction),
            packets_sent: report.packets_sent,
            packets_received: r.received,
            packets_expected: r.expected,
            lost,
            loss_percent: r.loss_fraction() * 100.0,
            duplicates: r.duplicates,
            reordered: r.reordered,
            jitter_ms: r.jitter_ms,
            ssrc_changes: r.ssrc_changes,
            discontinuities: r.discontinuities(),
            wrong_payload_type: report.wrong_payload_type,
            stray_packets: report.stray.packets(),
            stray_other_address: report.stray.other_address,
            stray_other_ssrc: report.stray.other_ssrc,
            stray_sources: report.stray.sources,
            stray_first_source: report.stray.first_source.map(|a| a.to_string()),
            pacing_lateness_ms: Lateness::of(&report.lateness_us),
            frames_skipped: report.frames_skipped,
            rms_dbfs: finite(report.rms_dbfs),
            silent: report.is_silent(-50.0),
            tones,
            dtmf_sent: self.args.send_dtmf.clone(),
            dtmf_received: report.dtmf_received.clone(),
            mos_cqe: report.quality().map(|q| round2(q.mos_cqe)),
            e_model: report.quality().map(|q| EModelSummary {
                r: round2(q.r),
                ppl_percent: round2(q.ppl_percent),
                burst_r: round2(q.burst_r),
            }),
            audio_gaps: report
                .audio_gaps
                .iter()
                .map(|g| GapSummary {
                    at_ms: round2(g.start().as_secs_f64() * 1000.0),
                    length_ms: round2(g.duration().as_secs_f64() * 1000.0),
                })
                .collect(),
            audio_gap_count: report.audio_gap_count,
            srtp: report.srtp.map(|s| SrtpSummary {
                suite: negotiated
                    .srtp
                    .as_ref()
                    .map(|k| k.local.suite.as_str())
                    .unwrap_or_default(),
                protected: s.protected,
                unprotected: s.unprotected,
                auth_failures: s.auth_failures,
                replays: s.replays,
                malformed: s.malformed,
            }),
        };
        let failures = judge_media(&self.expect(), negotiated, report);
        (summary, failures)
    }
}

use sipcheck_core::ua::script::{judge_media, ProbeExpect};

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn direction_name(d: Direction) -> &'static str {
    d.as_str()
}

/// Send-pacing lateness percentiles, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lateness {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Lateness {
    /// The percentiles of a lateness histogram in microseconds.
    pub fn of(us: &hdrhistogram::Histogram<u32>) -> Self {
        let q = |p: f64| us.value_at_quantile(p) as f64 / 1000.0;
        Self {
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
            max: us.max() as f64 / 1000.0,
        }
    }
}

/// A tone expectation's result.
#[derive(Debug, Clone, Serialize)]
pub struct ToneSummary {
    /// What was expected (`440 Hz`, `350+440 Hz`).
    pub tone: String,
    /// Whether it was found.
    pub detected: bool,
    /// When, after media started, in milliseconds.
    pub onset_ms: Option<f64>,
    /// Its signal-to-noise ratio.
    pub snr_db: Option<f64>,
}

/// The media figures of one call.
#[derive(Debug, Clone, Serialize)]
pub struct MediaSummary {
    /// The negotiated codec.
    pub codec: String,
    /// Where RTP was sent.
    pub remote: String,
    /// Our direction (sendrecv, recvonly …).
    pub direction: &'static str,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP packets received (distinct).
    pub packets_received: u64,
    /// Packets the far end's sequence numbers say were sent.
    pub packets_expected: u64,
    /// Lost packets.
    pub lost: u64,
    /// Loss in percent of the expected packets.
    pub loss_percent: f64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Reordered packets.
    pub reordered: u64,
    /// RFC 3550 interarrival jitter, milliseconds (the highest of the peer's streams').
    pub jitter_ms: f64,
    /// SSRCs the peer sent after its first (a switch, a separate RFC 4733 event stream).
    pub ssrc_changes: u64,
    /// Sequence or timestamp jumps of one SSRC (RFC 3550 A.1 restarts, timestamp
    /// discontinuities): the sender's events, counted neither as loss nor as jitter.
    pub discontinuities: u64,
    /// Packets with an unexpected payload type.
    pub wrong_payload_type: u64,
    /// Datagrams at the call's RTP port that were not the peer's media (set aside: never
    /// its audio, loss or jitter).
    pub stray_packets: u64,
    /// Of those, from a source address other than the peer's.
    pub stray_other_address: u64,
    /// Of those, from the peer's address under a second SSRC interleaved with its stream.
    pub stray_other_ssrc: u64,
    /// Distinct other source addresses (counted up to 8).
    pub stray_sources: u64,
    /// The first other source address.
    pub stray_first_source: Option<String>,
    /// How late our packets left against their schedule.
    pub pacing_lateness_ms: Lateness,
    /// Frames the sender skipped because it fell behind (generator overrun).
    pub frames_skipped: u64,
    /// RMS level of the received audio, dBFS (absent for digital silence).
    pub rms_dbfs: Option<f64>,
    /// True when the received audio never rose above -50 dBFS.
    pub silent: bool,
    /// Expected tones.
    pub tones: Vec<ToneSummary>,
    /// DTMF digits sent.
    pub dtmf_sent: Option<String>,
    /// DTMF digits received.
    pub dtmf_received: String,
    /// The estimated MOS of what was received (ITU-T G.107 E-model, MOS-CQE; G.711 without
    /// packet loss concealment, one-way delay not counted); absent when nothing was played.
    pub mos_cqe: Option<f64>,
    /// The E-model's inputs and rating behind it.
    pub e_model: Option<EModelSummary>,
    /// Dropouts of 40 ms or more in the expected tone after its onset, outside holds.
    pub audio_gaps: Vec<GapSummary>,
    /// How many there were (more than listed when very many).
    pub audio_gap_count: u64,
    /// SRTP's counters (absent for plain RTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp: Option<SrtpSummary>,
}

/// What SRTP did in one call.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SrtpSummary {
    /// The suite agreed (`AES_CM_128_HMAC_SHA1_80` or `_32`).
    pub suite: &'static str,
    /// Packets protected and sent.
    pub protected: u64,
    /// Packets received that authenticated.
    pub unprotected: u64,
    /// Packets received whose authentication tag did not verify (dropped).
    pub auth_failures: u64,
    /// Packets received again (replays, dropped).
    pub replays: u64,
    /// Packets received too short or malformed to be SRTP (dropped).
    pub malformed: u64,
}

impl SrtpSummary {
    /// One line: `srtp: AES_CM_128_HMAC_SHA1_80, protected 250, unprotected 249, auth
    /// failures 0, replays 0`.
    pub fn line(&self) -> String {
        format!(
            "srtp: {}, protected {}, unprotected {}, auth failures {}, replays {}{}",
            self.suite,
            self.protected,
            self.unprotected,
            self.auth_failures,
            self.replays,
            if self.malformed > 0 {
                format!(", malformed {}", self.malformed)
            } else {
                String::new()
            }
        )
    }
}

/// The E-model's figures for the received direction.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EModelSummary {
    /// The rating R.
    pub r: f64,
    /// Frames missing at playout (lost or too late), percent: Ppl.
    pub ppl_percent: f64,
    /// The burst ratio BurstR (1 for random loss).
    pub burst_r: f64,
}

/// One dropout in the expected tone.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GapSummary {
    /// Where it started, milliseconds into the received audio.
    pub at_ms: f64,
    /// How long it lasted, milliseconds.
    pub length_ms: f64,
}

impl MediaSummary {
    /// Human-readable lines.
    pub fn write_text(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "media: {} to {} ({}), sent {} packets, received {} of {} (lost {}, {:.2} %), jitter {:.2} ms, {} duplicate, {} reordered",
            self.codec,
            self.remote,
            self.direction,
            self.packets_sent,
            self.packets_received,
            self.packets_expected,
            self.lost,
            self.loss_percent,
            self.jitter_ms,
            self.duplicates,
            self.reordered
        )?;
        writeln!(
            out,
            "pacing: lateness p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, {} frames skipped",
            self.pacing_lateness_ms.p50,
            self.pacing_lateness_ms.p99,
            self.pacing_lateness_ms.p999,
            self.pacing_lateness_ms.max,
            self.frames_skipped
        )?;
        if let Some(srtp) = &self.srtp {
            writeln!(out, "{}", srtp.line())?;
        }
        if self.discontinuities > 0 {
            writeln!(
                out,
                "rtp: {} sequence/timestamp discontinuit{} of the peer's stream (neither loss nor jitter)",
                self.discontinuities,
                if self.discontinuities == 1 { "y" } else { "ies" }
            )?;
        }
        if self.stray_packets > 0 {
            writeln!(
                out,
                "stray rtp: {} packets ignored, not the peer's ({} from {} other source{}, first {}; {} of an interleaved SSRC)",
                self.stray_packets,
                self.stray_other_address,
                self.stray_sources,
                if self.stray_sources == 1 { "" } else { "s" },
                self.stray_first_source.as_deref().unwrap_or("none"),
                self.stray_other_ssrc
            )?;
        }
        match self.rms_dbfs {
            Some(level) => writeln!(
                out,
                "audio: received level {level:.1} dBFS{}",
                if self.silent { " (silent)" } else { "" }
            )?,
            None => writeln!(out, "audio: received digital silence")?,
        }
        for t in &self.tones {
            match (t.detected, t.onset_ms) {
                (true, Some(onset)) => writeln!(
                    out,
                    "tone {}: detected {onset:.0} ms after media start (SNR {:.1} dB)",
                    t.tone,
                    t.snr_db.unwrap_or_default()
                )?,
                _ => writeln!(out, "tone {}: NOT detected", t.tone)?,
            }
        }
        if let (Some(mos), Some(e)) = (self.mos_cqe, &self.e_model) {
            writeln!(
                out,
                "quality: estimated MOS {mos:.2} (G.107 E-model: R {:.1}, loss {:.2} %, BurstR {:.2}; G.711 without PLC)",
                e.r, e.ppl_percent, e.burst_r
            )?;
        }
        if !self.tones.is_empty() {
            write!(out, "audio gaps: {}", self.audio_gap_count)?;
            for g in &self.audio_gaps {
                write!(out, ", {:.0} ms at {:.2} s", g.length_ms, g.at_ms / 1000.0)?;
            }
            writeln!(out)?;
        }
        if let Some(sent) = &self.dtmf_sent {
            writeln!(out, "dtmf sent: {sent}")?;
        }
        if !self.dtmf_received.is_empty() {
            writeln!(out, "dtmf received: {}", self.dtmf_received)?;
        }
        Ok(())
    }
}

/// Write a recording as a WAV file ([`crate::drive::media::write_recording`]).
pub fn write_recording(path: &std::path::Path, samples: &[i16]) -> Result<(), ProbeError> {
    crate::drive::media::write_recording(path, samples).map_err(ProbeError::Invalid)
}

/// Checks before the call that the recording could be written to `path`
/// ([`crate::report::check_writable`]).
///
/// # Errors
/// [`ProbeError::Invalid`] naming the path and why it cannot be written.
pub fn check_recording(path: &std::path::Path) -> Result<(), ProbeError> {
    match path.to_str() {
        Some(name) => crate::report::check_writable(name)
            .map_err(|e| ProbeError::Invalid(format!("--record: {e}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use sipcheck_core::sdp;

    /// `call`'s audio flags expecting a 1 kHz tone, with `--max-gap` in ms.
    fn expecting_1khz(max_gap_ms: u64) -> super::AudioArgs {
        super::AudioArgs {
            play_tone: None,
            play_wav: None,
            level_dbfs: -12.0,
            expect_tone: Some("1000".parse().unwrap()),
            send_dtmf: None,
            expect_dtmf: None,
            record: None,
            codecs: vec![super::Codec::Pcmu],
            no_media_ok: false,
            rtp_timeout: std::time::Duration::from_secs(3),
            max_gap: std::time::Duration::from_millis(max_gap_ms),
            rtp_ports: (20000, 29999),
            srtp: SrtpPolicy::Off,
        }
    }

    /// Packet `i` of a PCMU stream of a 1 kHz tone (SSRC 7), written to `buf`: its length.
    fn tone_packet(i: u16, buf: &mut [u8]) -> usize {
        use sipcheck_core::rtp::packet::{write_packet, RtpHeader};
        let pcm: Vec<i16> = (0..160)
            .map(|n| {
                let t = f64::from(u32::from(i) * 160 + n) / 8000.0;
                ((2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 8000.0) as i16
            })
            .collect();
        let mut payload = [0u8; 160];
        let len = super::Codec::Pcmu.encode(&pcm, &mut payload).unwrap();
        let header = RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: i,
            timestamp: u32::from(i) * 160,
            ssrc: 7,
        };
        write_packet(&header, &payload[..len], buf).unwrap()
    }

    #[test]
    fn a_media_failure_says_when_sipcheck_itself_was_behind() {
        use sipcheck_core::ua::script::overload_note;
        assert_eq!(overload_note((0, 0)), "");
        assert_eq!(overload_note((0, 20_000)), "");
        let note = overload_note((12, 61_000));
        assert!(
            note.contains("12 frames skipped, up to 61 ms late"),
            "{note}"
        );
        assert!(overload_note((0, 25_000)).contains("up to 25 ms late"));
    }

    use super::*;

    #[test]
    fn tone_specs_parse_and_refuse_nonsense() {
        assert_eq!(
            "440".parse::<ToneSpec>().unwrap(),
            ToneSpec {
                low: 440.0,
                high: None
            }
        );
        assert_eq!(
            "350+440Hz".parse::<ToneSpec>().unwrap(),
            ToneSpec {
                low: 350.0,
                high: Some(440.0)
            }
        );
        assert!("5000".parse::<ToneSpec>().is_err());
        assert!("abc".parse::<ToneSpec>().is_err());
    }

    #[test]
    fn media_that_stops_is_an_rtp_timeout() {
        use sipcheck_core::rtp::packet::{write_packet, RtpHeader};
        let args = AudioArgs {
            play_tone: None,
            play_wav: None,
            level_dbfs: -12.0,
            expect_tone: None,
            send_dtmf: None,
            expect_dtmf: None,
            record: None,
            codecs: vec![Codec::Pcmu],
            no_media_ok: false,
            rtp_timeout: Duration::from_secs(3),
            max_gap: Duration::from_millis(100),
            rtp_ports: (20000, 29999),
            srtp: SrtpPolicy::Off,
        };
        let prepared = args.prepare().unwrap();
        let local = prepared.local_media("127.0.0.1".parse().unwrap(), 4000, 1);
        let offer = sdp::create_offer(&local);
        let (_, negotiated) = sdp::answer(&offer, &local).unwrap();
        let mut session = prepared.session(&negotiated, &mut IdGen::new(1));
        let t0 = Instant::now();
        let mut buf = [0u8; 200];
        for i in 0..10u16 {
            let header = RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i,
                timestamp: u32::from(i) * 160,
                ssrc: 7,
            };
            let len = write_packet(&header, &[0xff; 160], &mut buf).unwrap();
            session.handle_packet(
                t0 + Duration::from_millis(20 * u64::from(i)),
                std::net::SocketAddr::from(([127, 0, 0, 1], 4000)),
                &buf[..len],
            );
        }
        // Fine 1 s after the last packet, a timeout 10 s after it.
        let (_, ok) = prepared.summarize(&negotiated, &session.report(t0 + Duration::from_secs(1)));
        assert!(ok.is_empty(), "{ok:?}");
        let (_, failed) =
            prepared.summarize(&negotiated, &session.report(t0 + Duration::from_secs(10)));
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0].starts_with("RTP timeout: no media for 9.8 s"),
            "{failed:?}"
        );
    }

    /// A far end that sent its tone, then put the call on hold with `a=inactive` until the
    /// end: the silence of the hold is no RTP timeout, and the tone heard before it is no
    /// failure of the held direction.
    #[test]
    fn a_call_ending_on_hold_keeps_what_was_verified_before() {
        let args = expecting_1khz(100);
        let prepared = args.prepare().unwrap();
        let local = prepared.local_media("127.0.0.1".parse().unwrap(), 4000, 1);
        let offer = sdp::create_offer(&local);
        let (_, negotiated) = sdp::answer(&offer, &local).unwrap();
        let mut session = prepared.session(&negotiated, &mut IdGen::new(1));
        let t0 = Instant::now();
        let mut buf = [0u8; 200];
        let mut out = [0u8; 1500];
        for i in 0..100u16 {
            let len = tone_packet(i, &mut buf);
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            session.handle_packet(now, negotiated.remote_rtp, &buf[..len]);
            while session.poll_transmit(now, &mut out).is_some() {}
        }
        // On hold from 2 s to the end, 10 s later: a=inactive both ways.
        let held = Negotiated {
            direction: Direction::Inactive,
            remote_hold: true,
            ..negotiated.clone()
        };
        session.set_expecting(t0 + Duration::from_secs(2), held.expects_rtp());
        let end = t0 + Duration::from_secs(12);
        let (summary, failures) = prepared.summarize(&held, &session.report(end));
        assert!(summary.tones[0].detected);
        assert!(failures.is_empty(), "{failures:?}");
        // Without the hold told, the same silence is an RTP timeout.
        session.set_expecting(end, true);
        let (_, failures) =
            prepared.summarize(&negotiated, &session.report(end + Duration::from_secs(4)));
        assert!(
            failures.iter().any(|f| f.starts_with("RTP timeout")),
            "{failures:?}"
        );
    }

    /// A far end whose 1 kHz tone drops out for 200 ms (10 packets never sent): the summary
    /// prints the MOS estimate and the gap, its JSON carries them, and the call fails by
    /// `--max-gap` (100 ms by default; 250 ms lets it pass).
    #[test]
    fn a_dropout_is_printed_with_the_mos_estimate_and_fails_by_max_gap() {
        let summary_with = |max_gap_ms: u64| {
            let args = expecting_1khz(max_gap_ms);
            let prepared = args.prepare().unwrap();
            let local = prepared.local_media("127.0.0.1".parse().unwrap(), 4000, 1);
            let offer = sdp::create_offer(&local);
            let (_, negotiated) = sdp::answer(&offer, &local).unwrap();
            let mut session = prepared.session(&negotiated, &mut IdGen::new(1));
            let t0 = Instant::now();
            let (mut buf, mut out) = ([0u8; 200], [0u8; 1500]);
            for i in 0..250u16 {
                let now = t0 + Duration::from_millis(20 * u64::from(i));
                // Packets 100..110 (2.0 s to 2.2 s) never come.
                if !(100..110).contains(&i) {
                    let len = tone_packet(i, &mut buf);
                    session.handle_packet(now, negotiated.remote_rtp, &buf[..len]);
                }
                while session.poll_transmit(now, &mut out).is_some() {}
            }
            prepared.summarize(&negotiated, &session.report(t0 + Duration::from_secs(5)))
        };
        let (summary, failures) = summary_with(100);
        assert_eq!(summary.audio_gap_count, 1);
        let gap = summary.audio_gaps[0];
        assert!((gap.length_ms - 200.0).abs() <= 20.0, "{gap:?}");
        let mos = summary.mos_cqe.unwrap();
        assert!(mos < 4.41 && mos > 1.0, "{mos}");
        let mut text = Vec::new();
        summary.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(&format!("quality: estimated MOS {mos:.2} (G.107 E-model")),
            "{text}"
        );
        assert!(text.contains("audio gaps: 1, 200 ms at "), "{text}");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["audio_gaps"][0]["length_ms"], gap.length_ms);
        // 10 of the ~250 frames due: Ppl about 4 %.
        let ppl = json["e_model"]["ppl_percent"].as_f64().unwrap();
        assert!((ppl - 4.0).abs() < 0.2, "{ppl}");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].starts_with("tone 1000 Hz: the expected audio dropped out (200 ms at "),
            "{failures:?}"
        );
        let (_, failures) = summary_with(250);
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn bad_media_options_are_usage_errors() {
        let base = AudioArgs {
            play_tone: None,
            play_wav: None,
            level_dbfs: -12.0,
            expect_tone: None,
            send_dtmf: None,
            expect_dtmf: None,
            record: None,
            codecs: vec![Codec::Pcmu],
            no_media_ok: false,
            rtp_timeout: Duration::from_secs(3),
            max_gap: Duration::from_millis(100),
            rtp_ports: (20000, 29999),
            srtp: SrtpPolicy::Off,
        };
        let bad_dtmf = AudioArgs {
            send_dtmf: Some("12x".into()),
            ..base.clone()
        };
        assert!(bad_dtmf.prepare().is_err());
        let missing_wav = AudioArgs {
            play_wav: Some("/nonexistent/file.wav".into()),
            ..base.clone()
        };
        let err = missing_wav.prepare().unwrap_err().to_string();
        assert!(err.contains("cannot read /nonexistent/file.wav"), "{err}");
        assert!(base.prepare().is_ok());
    }
}
