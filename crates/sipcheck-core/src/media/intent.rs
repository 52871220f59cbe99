//! What a call's script asks of its media stream, as data ([`MediaIntent`]), and what the
//! stream tells back ([`MediaEvent`]).
//!
//! The script (`ua::script`) never touches a [`MediaSession`]: it emits intents, the driver of
//! the stream applies them on the thread that owns the session ([`Watches::apply`]) and runs
//! [`Watches::check`] after each of the stream's frame ticks, sending back the events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::conference::{PartiesVerdict, Party};
use super::dtmf::DtmfConfig;
use super::session::MediaSession;
use super::signature::{SignatureCode, SignatureVerdict};
use super::tone::{Playlist, ToneQuery, WatchId};
use super::vad::Vad;
use super::{duration_to_samples, samples_to_duration};
use crate::sdp::Negotiated;

/// The level under which received audio counts as silence, in dBFS.
pub const SILENCE_DBFS: f64 = -50.0;

/// How much audio (frames of speech or a tone, [`Vad::audible`]) [`MediaIntent::WatchAudio`]
/// needs: ten 20 ms frames.
pub const AUDIO_MIN: Duration = Duration::from_millis(200);

/// One thing a call's script asks of its media stream.
#[derive(Debug, Clone)]
pub enum MediaIntent {
    /// Start the session on the stream's socket with this negotiated media (the session's
    /// local parameters — jitter buffer, recording — are the driver's).
    Start(Box<Negotiated>),
    /// Send to a new remote address (the answer moved it).
    Remote(SocketAddr),
    /// Follow new media of the call (a re-INVITE or UPDATE either way): the remote address,
    /// whether we send, whether RTP is expected.
    Follow(Box<Negotiated>),
    /// Start or stop sending (RFC 3261 §15.1.1: media stops once the BYE is sent).
    SetSending(bool),
    /// Replace what is played from the next frame on.
    Play(Playlist),
    /// Report [`MediaEvent::ToneHeard`] when a tone matching `query` is heard, from now on.
    WatchTone {
        /// The script's name for this watch.
        watch: u32,
        /// What to look for.
        query: ToneQuery,
    },
    /// Report [`MediaEvent::SilenceHeld`] once what is received has held no speech and no
    /// tone (voice activity, [`super::vad`]) for `duration` without a break, counted from now.
    WatchSilence {
        /// The script's name for this watch.
        watch: u32,
        /// How long the silence must hold.
        duration: Duration,
    },
    /// Report [`MediaEvent::SpeechHeard`] once speech is heard (at once if it is under way).
    WatchSpeech {
        /// The script's name for this watch.
        watch: u32,
    },
    /// Report [`MediaEvent::AudioHeard`] once [`AUDIO_MIN`] of audio (speech, music or a tone,
    /// [`Vad::audible`]) is heard from now on.
    WatchAudio {
        /// The script's name for this watch.
        watch: u32,
    },
    /// Report [`MediaEvent::SpeechHeard`] once speech is heard, then
    /// [`MediaEvent::PromptEnded`] once it is over ([`super::vad::HANGOVER`] without speech).
    WatchPromptEnd {
        /// The script's name for this watch.
        watch: u32,
    },
    /// Report [`MediaEvent::DtmfReceived`] once the digits received end with `digits`.
    WatchDtmf {
        /// The script's name for this watch.
        watch: u32,
        /// The digits expected.
        digits: String,
    },
    /// Decode audio signatures from now on; report [`MediaEvent::Signature`] as soon as
    /// `expected` is heard (verified) or another call's code is (crossed).
    WatchSignature {
        /// The script's name for this watch.
        watch: u32,
        /// The code that should arrive.
        expected: SignatureCode,
        /// The code this end plays (heard back, it is an echo).
        own: Option<SignatureCode>,
    },
    /// Report [`MediaEvent::Signature`] now, with the verdict so far, named `watch`.
    JudgeSignature {
        /// The script's name for the answer.
        watch: u32,
        /// The code that should arrive.
        expected: SignatureCode,
        /// The code this end plays.
        own: Option<SignatureCode>,
    },
    /// Listen for conference party tones from now on (forgetting what was heard before);
    /// report [`MediaEvent::Parties`] as soon as every `expected` party is heard (verified)
    /// or `own` is (an echo).
    WatchParties {
        /// The script's name for this watch.
        watch: u32,
        /// The parties that should be heard.
        expected: Vec<Party>,
        /// The party this end plays (heard back, it is an echo).
        own: Option<Party>,
    },
    /// Report [`MediaEvent::Parties`] now, with the verdict so far, named `watch`.
    JudgeParties {
        /// The script's name for the answer.
        watch: u32,
        /// The parties that should be heard.
        expected: Vec<Party>,
        /// The party this end plays.
        own: Option<Party>,
    },
    /// Keep the received audio played out from now on; report [`MediaEvent::Captured`] once
    /// `samples` are kept (underruns after the first frame count, as silence heard).
    Capture {
        /// The script's name for this watch.
        watch: u32,
        /// How many samples to keep.
        samples: usize,
    },
    /// Keep the audio played out from now on as the recording of the step at `line`
    /// (`record: true`), until [`MediaIntent::EndRecord`] or the stream's end.
    Record {
        /// The step's line in the scenario.
        line: u32,
    },
    /// The recorded step is over.
    EndRecord,
    /// Forget a watch that has not fired (its wait is over).
    Unwatch(u32),
    /// Send DTMF digits as RFC 4733 events.
    SendDtmf {
        /// The digits.
        digits: String,
        /// Their pacing (the ptime is the session's).
        config: DtmfConfig,
    },
    /// Report [`MediaEvent::Status`] now, named `watch`.
    Probe(u32),
}

/// What a media stream tells its call's script.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A watched tone was heard.
    ToneHeard {
        /// The watch.
        watch: u32,
        /// Its onset, from the moment the watch was set.
        onset: Duration,
    },
    /// A watched silence held for its duration.
    SilenceHeld {
        /// The watch.
        watch: u32,
    },
    /// Speech was heard.
    SpeechHeard {
        /// The watch.
        watch: u32,
        /// When it began, from the moment the watch was set (zero if it was under way).
        onset: Duration,
    },
    /// [`AUDIO_MIN`] of audio was heard.
    AudioHeard {
        /// The watch.
        watch: u32,
    },
    /// Speech heard since the watch was set is over.
    PromptEnded {
        /// The watch.
        watch: u32,
        /// How long the speech lasted, from its first speech frame to its last.
        lasted: Duration,
    },
    /// The watched DTMF digits arrived.
    DtmfReceived {
        /// The watch.
        watch: u32,
    },
    /// What was heard of an audio signature: at once when decisive (verified, crossed) for
    /// [`MediaIntent::WatchSignature`], whatever it is for [`MediaIntent::JudgeSignature`].
    Signature {
        /// The watch.
        watch: u32,
        /// The verdict.
        verdict: SignatureVerdict,
    },
    /// Which conference parties were heard: at once when decisive (verified, echo) for
    /// [`MediaIntent::WatchParties`], whatever it is for [`MediaIntent::JudgeParties`].
    Parties {
        /// The watch.
        watch: u32,
        /// The verdict.
        verdict: PartiesVerdict,
    },
    /// The received audio kept by [`MediaIntent::Capture`] (8 kHz mono).
    Captured {
        /// The watch.
        watch: u32,
        /// The samples.
        audio: std::sync::Arc<[i16]>,
    },
    /// A watch could not be set (the detector refused its query).
    WatchRefused {
        /// The watch.
        watch: u32,
        /// Why, in words.
        reason: String,
    },
    /// The stream's state, as asked by [`MediaIntent::Probe`].
    Status {
        /// The probe's name.
        watch: u32,
        /// The level of the last block played out, dBFS (`None` before any).
        level_dbfs: Option<f64>,
        /// How far behind its schedule the stream's driver was: frames skipped, the worst
        /// lateness of a frame in microseconds.
        behind: (u64, u64),
        /// The DTMF digits received so far.
        dtmf_received: String,
    },
}

impl MediaEvent {
    /// The status of a stream that has no session (it never started or has stopped).
    #[must_use]
    pub fn no_session(watch: u32) -> Self {
        MediaEvent::Status {
            watch,
            level_dbfs: None,
            behind: (0, 0),
            dtmf_received: String::new(),
        }
    }
}

#[derive(Debug)]
enum Watch {
    Tone {
        id: WatchId,
        from_sample: u64,
    },
    Silence {
        samples: u64,
        from: u64,
    },
    Speech {
        from: u64,
    },
    Audio {
        from: u64,
    },
    PromptEnd {
        from: u64,
        heard: bool,
    },
    Dtmf {
        digits: String,
        seen: usize,
    },
    Signature {
        expected: SignatureCode,
        own: Option<SignatureCode>,
    },
    Parties {
        expected: Vec<Party>,
        own: Option<Party>,
    },
    Capture,
}

/// The watches set on one stream by [`MediaIntent`]s, resolved against its session.
#[derive(Debug, Default)]
pub struct Watches {
    list: Vec<(u32, Watch)>,
}

impl Watches {
    /// Whether no watch is waiting (nothing to check after a tick).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Apply an intent to `session` at `now`; the events it produces at once go to `out`.
    /// Intents about the stream rather than the session ([`MediaIntent::Start`],
    /// [`MediaIntent::Remote`], [`MediaIntent::Follow`]) are the driver's and are ignored here.
    pub fn apply(
        &mut self,
        session: &mut MediaSession,
        intent: MediaIntent,
        now: Instant,
        out: &mut Vec<MediaEvent>,
    ) {
        match intent {
            MediaIntent::Start(_) | MediaIntent::Remote(_) | MediaIntent::Follow(_) => {}
            MediaIntent::SetSending(send) => session.set_sending(send),
            MediaIntent::Play(playlist) => session.set_source(playlist),
            MediaIntent::WatchTone { watch, query } => match session.expect_tone(query) {
                Ok(id) => {
                    let from_sample = session.samples_played();
                    self.list.push((watch, Watch::Tone { id, from_sample }));
                    self.check(session, now, out);
                }
                Err(e) => out.push(MediaEvent::WatchRefused {
                    watch,
                    reason: e.to_string(),
                }),
            },
            MediaIntent::WatchSilence { watch, duration } => {
                session.listen_speech();
                let from = session.vad().map_or(0, Vad::samples);
                let samples = duration_to_samples(duration);
                self.list.push((watch, Watch::Silence { samples, from }));
                self.check(session, now, out);
            }
            MediaIntent::WatchSpeech { watch } => {
                session.listen_speech();
                let from = session.vad().map_or(0, Vad::samples);
                self.list.push((watch, Watch::Speech { from }));
                self.check(session, now, out);
            }
            MediaIntent::WatchAudio { watch } => {
                session.listen_speech();
                let from = session.vad().map_or(0, Vad::audible);
                self.list.push((watch, Watch::Audio { from }));
                self.check(session, now, out);
            }
            MediaIntent::WatchPromptEnd { watch } => {
                session.listen_speech();
                let from = session.vad().map_or(0, Vad::samples);
                self.list
                    .push((watch, Watch::PromptEnd { from, heard: false }));
                self.check(session, now, out);
            }
            MediaIntent::WatchDtmf { watch, digits } => {
                self.list.push((watch, Watch::Dtmf { digits, seen: 0 }));
                self.check(session, now, out);
            }
            MediaIntent::WatchSignature {
                watch,
                expected,
                own,
            } => {
                session.listen_signature();
                session.set_signature_codes(expected, own);
                self.list.push((watch, Watch::Signature { expected, own }));
                self.check(session, now, out);
            }
            MediaIntent::JudgeSignature {
                watch,
                expected,
                own,
            } => out.push(MediaEvent::Signature {
                watch,
                verdict: session.signature_verdict(expected, own),
            }),
            MediaIntent::WatchParties {
                watch,
                expected,
                own,
            } => {
                session.listen_parties();
                self.list.push((watch, Watch::Parties { expected, own }));
                self.check(session, now, out);
            }
            MediaIntent::JudgeParties {
                watch,
                expected,
                own,
            } => out.push(MediaEvent::Parties {
                watch,
                verdict: session.parties_verdict(&expected, own),
            }),
            MediaIntent::Capture { watch, samples } => {
                session.start_capture(samples);
                self.list.retain(|(_, w)| !matches!(w, Watch::Capture));
                self.list.push((watch, Watch::Capture));
                self.check(session, now, out);
            }
            MediaIntent::Record { line } => session.start_step_recording(line),
            MediaIntent::EndRecord => session.end_step_recording(),
            MediaIntent::Unwatch(watch) => {
                if self
                    .list
                    .iter()
                    .any(|(w, k)| *w == watch && matches!(k, Watch::Capture))
                {
                    session.take_capture();
                }
                self.list.retain(|(w, _)| *w != watch);
            }
            MediaIntent::SendDtmf { digits, config } => {
                // The script checked the digits and telephone-event before asking.
                let _ = session.send_dtmf(&digits, config);
            }
            MediaIntent::Probe(watch) => out.push(MediaEvent::Status {
                watch,
                level_dbfs: session.last_level_dbfs(),
                behind: session.generator_behind(),
                dtmf_received: session.dtmf_received(),
            }),
        }
    }

    /// Resolve the watches that hold at `now` (after a frame tick): their events go to `out`
    /// and they are dropped.
    pub fn check(&mut self, session: &MediaSession, _now: Instant, out: &mut Vec<MediaEvent>) {
        self.list.retain_mut(|(watch, kind)| {
            let event = match kind {
                Watch::Tone { id, from_sample } => {
                    session.detection(*id).map(|d| MediaEvent::ToneHeard {
                        watch: *watch,
                        onset: Duration::from_micros(
                            d.onset_sample.saturating_sub(*from_sample) * 125,
                        ),
                    })
                }
                Watch::Silence { samples, from } => session.vad().and_then(|vad| {
                    // Only what was heard since the watch was set counts, and something must
                    // have been: nothing received is no silence heard.
                    let held = vad.quiet_run().min(vad.samples().saturating_sub(*from));
                    (held >= *samples && held > 0)
                        .then_some(MediaEvent::SilenceHeld { watch: *watch })
                }),
                Watch::Speech { from } => session.vad().and_then(|vad| {
                    vad.is_speaking().then(|| MediaEvent::SpeechHeard {
                        watch: *watch,
                        onset: samples_to_duration(
                            vad.onset().unwrap_or(*from).saturating_sub(*from),
                        ),
                    })
                }),
                Watch::Audio { from } => session.vad().and_then(|vad| {
                    (vad.audible().saturating_sub(*from) >= duration_to_samples(AUDIO_MIN))
                        .then_some(MediaEvent::AudioHeard { watch: *watch })
                }),
                Watch::PromptEnd { from, heard } => session.vad().and_then(|vad| {
                    if vad.is_speaking() {
                        if !*heard {
                            *heard = true;
                            // Told, and the watch stays for the end.
                            out.push(MediaEvent::SpeechHeard {
                                watch: *watch,
                                onset: samples_to_duration(
                                    vad.onset().unwrap_or(*from).saturating_sub(*from),
                                ),
                            });
                        }
                        None
                    } else if *heard {
                        let lasted = match (vad.onset(), vad.ended()) {
                            (Some(a), Some(b)) => samples_to_duration(b.saturating_sub(a)),
                            _ => Duration::ZERO,
                        };
                        Some(MediaEvent::PromptEnded {
                            watch: *watch,
                            lasted,
                        })
                    } else {
                        None
                    }
                }),
                Watch::Dtmf { digits, seen } => {
                    // Rebuild the digit string only when a new event has arrived.
                    let events = session.dtmf_events();
                    if events == *seen {
                        None
                    } else {
                        *seen = events;
                        session
                            .dtmf_received()
                            .ends_with(digits.as_str())
                            .then_some(MediaEvent::DtmfReceived { watch: *watch })
                    }
                }
                Watch::Capture => session.capture_full().map(|audio| MediaEvent::Captured {
                    watch: *watch,
                    audio: audio.into(),
                }),
                Watch::Parties { expected, own } => {
                    let decisive = session.parties_decisive(expected, *own);
                    decisive.map(|verdict| MediaEvent::Parties {
                        watch: *watch,
                        verdict,
                    })
                }
                Watch::Signature { expected, own } => {
                    let verdict = session.signature_verdict(*expected, *own);
                    matches!(
                        verdict,
                        SignatureVerdict::Verified | SignatureVerdict::Crossed { .. }
                    )
                    .then_some(MediaEvent::Signature {
                        watch: *watch,
                        verdict,
                    })
                }
            };
            match event {
                Some(event) => {
                    out.push(event);
                    false
                }
                None => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGen;
    use crate::media::g711::Codec;
    use crate::media::session::{MediaConfig, MAX_PACKET};
    use crate::media::tone::{AudioSource, Tone, ToneGenerator};
    use crate::rtp::packet::{write_packet, RtpHeader};

    const PEER: ([u8; 4], u16) = ([192, 0, 2, 1], 4000);

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    /// Packet `i` of a PCMU stream: a 1 kHz tone when `loud`, else digital silence.
    fn packet(i: u32, tone: &mut ToneGenerator, loud: bool) -> Vec<u8> {
        let mut pcm = [0i16; 160];
        if loud {
            tone.fill(&mut pcm);
        }
        let mut payload = [0u8; 160];
        Codec::Pcmu.encode(&pcm, &mut payload).unwrap();
        let header = RtpHeader {
            marker: i == 0,
            payload_type: 0,
            sequence: i as u16,
            timestamp: 160 * i,
            ssrc: 0x5151,
        };
        let mut buf = [0u8; MAX_PACKET];
        let len = write_packet(&header, &payload, &mut buf).unwrap();
        buf[..len].to_vec()
    }

    /// Runs 20 ms ticks `from..to` of a far end loud while `loud(i)`, checking the watches
    /// after each; the events with the tick they came at.
    fn drive(
        s: &mut MediaSession,
        w: &mut Watches,
        t0: Instant,
        ticks: std::ops::Range<u32>,
        loud: impl Fn(u32) -> bool,
    ) -> Vec<(u32, MediaEvent)> {
        let mut tone = ToneGenerator::new(&Tone::single(1000.0, -10.0).unwrap());
        let mut out = [0u8; MAX_PACKET];
        let mut events = Vec::new();
        for i in ticks {
            let now = t0 + Duration::from_millis(20) * i;
            s.handle_packet(now, SocketAddr::from(PEER), &packet(i, &mut tone, loud(i)));
            while s.poll_transmit(now, &mut out).is_some() {}
            let mut got = Vec::new();
            w.check(s, now, &mut got);
            events.extend(got.into_iter().map(|e| (i, e)));
        }
        events
    }

    fn session(t0: Instant) -> MediaSession {
        let mut s = MediaSession::new(
            t0,
            MediaConfig::new(Codec::Pcmu),
            Playlist::new(vec![]),
            &mut IdGen::new(3),
        )
        .unwrap();
        s.set_peer_address(SocketAddr::from(PEER));
        s
    }

    #[test]
    fn a_capture_keeps_the_received_audio_and_reports_it_once_full() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        w.apply(
            &mut s,
            MediaIntent::Capture {
                watch: 5,
                samples: 1000,
            },
            t0,
            &mut out,
        );
        assert!(out.is_empty());
        let events = drive(&mut s, &mut w, t0, 0..20, |_| true);
        let [(_, MediaEvent::Captured { watch: 5, audio })] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(audio.len(), 1000);
        assert!(crate::media::rms_dbfs(audio) > -20.0, "the tone was kept");
        assert!(w.is_empty());

        // Unwatched before it is full: the capture is dropped, nothing is reported.
        w.apply(
            &mut s,
            MediaIntent::Capture {
                watch: 6,
                samples: 100_000,
            },
            t0,
            &mut out,
        );
        drive(&mut s, &mut w, t0, 20..25, |_| true);
        w.apply(&mut s, MediaIntent::Unwatch(6), t0, &mut out);
        assert!(out.is_empty() && w.is_empty());
        assert!(s.take_capture().is_none());
    }

    #[test]
    fn a_recorded_step_keeps_what_was_played_out_between_its_start_and_end() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        // The jitter buffer's first ticks, then a second of silence before the step.
        drive(&mut s, &mut w, t0, 0..50, |_| false);
        w.apply(&mut s, MediaIntent::Record { line: 12 }, t0, &mut out);
        // The step: half a second of tone, then half a second of silence.
        drive(&mut s, &mut w, t0, 50..100, |i| i < 75);
        w.apply(&mut s, MediaIntent::EndRecord, t0, &mut out);
        drive(&mut s, &mut w, t0, 100..150, |_| true);
        // A second recorded step, cut at the stream's end.
        w.apply(&mut s, MediaIntent::Record { line: 14 }, t0, &mut out);
        drive(&mut s, &mut w, t0, 150..160, |_| true);
        assert!(out.is_empty());
        let recs = s.take_step_recordings();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].line, recs[0].samples.len()), (12, 50 * 160));
        // What the jitter buffer played out during those ticks: the tone came through, then
        // silence (the buffer shifts it by its depth, never by more than 60 ms).
        let (tone, rest) = recs[0].samples.split_at(20 * 160);
        assert!(crate::media::rms_dbfs(tone) > -15.0);
        assert!(crate::media::rms_dbfs(&rest[10 * 160..]) < -60.0);
        assert_eq!((recs[1].line, recs[1].samples.len()), (14, 10 * 160));
        assert!(s.take_step_recordings().is_empty());
    }

    #[test]
    fn a_step_recording_stops_at_its_bound() {
        let t0 = t0();
        let mut s = session(t0);
        s.start_step_recording(3);
        let mut w = Watches::default();
        let ticks =
            u32::try_from(crate::media::session::STEP_RECORDING_MAX.as_millis() / 20).unwrap();
        drive(&mut s, &mut w, t0, 0..ticks + 100, |_| true);
        let recs = s.take_step_recordings();
        assert_eq!(recs[0].samples.len(), 60 * 8000);
    }

    #[test]
    fn a_silence_watch_fires_once_the_silence_has_held_and_restarts_on_sound() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        w.apply(
            &mut s,
            MediaIntent::WatchSilence {
                watch: 9,
                duration: Duration::from_millis(400),
            },
            t0,
            &mut out,
        );
        assert!(out.is_empty());
        // Loud for 1 s, silent 100 ms, loud again, then silent for good from tick 60.
        let events = drive(&mut s, &mut w, t0, 0..120, |i| {
            i < 50 || (55..60).contains(&i)
        });
        assert_eq!(events.len(), 1, "{events:?}");
        let (tick, event) = &events[0];
        assert_eq!(*event, MediaEvent::SilenceHeld { watch: 9 });
        // 400 ms of silence counted from the first silent block played out after tick 60
        // (plus the jitter buffer's delay), never from the short gap.
        assert!((80..=95).contains(tick), "fired at tick {tick}");
        assert!(w.is_empty(), "a fired watch is dropped");
    }

    #[test]
    fn a_tone_watch_reports_its_onset_from_when_it_was_set_and_unwatch_forgets_it() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        drive(&mut s, &mut w, t0, 0..25, |_| false);
        let query = ToneQuery::single(1000.0).unwrap();
        w.apply(
            &mut s,
            MediaIntent::WatchTone { watch: 1, query },
            t0,
            &mut out,
        );
        w.apply(
            &mut s,
            MediaIntent::WatchTone { watch: 2, query },
            t0,
            &mut out,
        );
        w.apply(&mut s, MediaIntent::Unwatch(2), t0, &mut out);
        let events = drive(&mut s, &mut w, t0, 25..75, |i| i >= 50);
        assert_eq!(events.len(), 1, "{events:?}");
        match &events[0].1 {
            MediaEvent::ToneHeard { watch: 1, onset } => {
                // The tone starts 25 ticks (500 ms) after the watch, give or take the
                // jitter buffer and a block.
                assert!(
                    (Duration::from_millis(460)..=Duration::from_millis(600)).contains(onset),
                    "{onset:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        w.apply(&mut s, MediaIntent::Probe(3), t0, &mut out);
        assert!(
            matches!(&out[..], [MediaEvent::Status { watch: 3, level_dbfs: Some(l), .. }] if *l > -20.0),
            "{out:?}"
        );
    }

    /// Ticks `ticks` of a far end playing `code`'s signature (PCMU, every 23rd packet lost),
    /// checking the watches after each; the events with their tick.
    fn drive_signature(
        s: &mut MediaSession,
        w: &mut Watches,
        t0: Instant,
        ticks: std::ops::Range<u32>,
        code: SignatureCode,
    ) -> Vec<(u32, MediaEvent)> {
        use crate::media::signature::SIGNATURE_LEVEL_DBFS;
        let mut far = code.playlist(SIGNATURE_LEVEL_DBFS).unwrap();
        let mut out = [0u8; MAX_PACKET];
        let mut events = Vec::new();
        for i in ticks {
            let now = t0 + Duration::from_millis(20) * i;
            let mut pcm = [0i16; 160];
            far.fill(&mut pcm);
            let mut payload = [0u8; 160];
            Codec::Pcmu.encode(&pcm, &mut payload).unwrap();
            let header = RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i as u16,
                timestamp: 160 * i,
                ssrc: 0x5152,
            };
            let mut buf = [0u8; MAX_PACKET];
            let len = write_packet(&header, &payload, &mut buf).unwrap();
            if i % 23 != 22 {
                s.handle_packet(now, SocketAddr::from(PEER), &buf[..len]);
            }
            while s.poll_transmit(now, &mut out).is_some() {}
            let mut got = Vec::new();
            w.check(s, now, &mut got);
            events.extend(got.into_iter().map(|e| (i, e)));
        }
        events
    }

    #[test]
    fn a_signature_watch_fires_verified_or_crossed_from_the_received_rtp_and_a_judge_answers_at_once(
    ) {
        let ours = SignatureCode::for_call(4, true);
        let theirs = SignatureCode::for_call(9, true);
        for (played, verdict) in [
            (ours, SignatureVerdict::Verified),
            (
                theirs,
                SignatureVerdict::Crossed {
                    heard: theirs,
                    also_expected: false,
                },
            ),
        ] {
            let t0 = t0();
            let mut s = session(t0);
            let mut w = Watches::default();
            let mut out = Vec::new();
            let own = Some(SignatureCode::for_call(4, false));
            w.apply(
                &mut s,
                MediaIntent::JudgeSignature {
                    watch: 1,
                    expected: ours,
                    own,
                },
                t0,
                &mut out,
            );
            // Before any watch the session decodes nothing: no audio.
            assert_eq!(
                out,
                [MediaEvent::Signature {
                    watch: 1,
                    verdict: SignatureVerdict::NoAudio
                }]
            );
            out.clear();
            w.apply(
                &mut s,
                MediaIntent::WatchSignature {
                    watch: 2,
                    expected: ours,
                    own,
                },
                t0,
                &mut out,
            );
            assert!(out.is_empty());
            let events = drive_signature(&mut s, &mut w, t0, 0..150, played);
            assert_eq!(events.len(), 1, "{events:?}");
            let (tick, event) = &events[0];
            assert_eq!(*event, MediaEvent::Signature { watch: 2, verdict });
            // Two 500 ms frames' codes, after at most one partial frame and the jitter buffer.
            assert!((40..=75).contains(tick), "fired at tick {tick}");
            assert!(w.is_empty(), "a fired watch is dropped");
            w.apply(
                &mut s,
                MediaIntent::JudgeSignature {
                    watch: 3,
                    expected: ours,
                    own,
                },
                t0,
                &mut out,
            );
            assert_eq!(out, [MediaEvent::Signature { watch: 3, verdict }]);
        }
    }

    /// Runs 20 ms ticks of a far end sending `audio` (PCMU) from tick `from`, checking the
    /// watches after each; the events with the tick they came at.
    fn drive_audio(
        s: &mut MediaSession,
        w: &mut Watches,
        t0: Instant,
        from: u32,
        audio: &[i16],
    ) -> Vec<(u32, MediaEvent)> {
        let mut out = [0u8; MAX_PACKET];
        let mut events = Vec::new();
        for (k, chunk) in audio.chunks(160).enumerate() {
            let i = from + k as u32;
            let now = t0 + Duration::from_millis(20) * i;
            let mut payload = [0u8; 160];
            let n = Codec::Pcmu.encode(chunk, &mut payload).unwrap();
            let header = RtpHeader {
                marker: i == 0,
                payload_type: 0,
                sequence: i as u16,
                timestamp: 160 * i,
                ssrc: 0x5151,
            };
            let mut buf = [0u8; MAX_PACKET];
            let len = write_packet(&header, &payload[..n], &mut buf).unwrap();
            s.handle_packet(now, SocketAddr::from(PEER), &buf[..len]);
            while s.poll_transmit(now, &mut out).is_some() {}
            let mut got = Vec::new();
            w.check(s, now, &mut got);
            events.extend(got.into_iter().map(|e| (i, e)));
        }
        events
    }

    fn speech() -> Vec<i16> {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/speech-8k.wav"
        ))
        .unwrap();
        crate::media::wav::decode(&bytes).unwrap().to_vec()
    }

    #[test]
    fn a_prompt_is_heard_from_its_first_word_and_ends_after_its_last_then_silence_holds() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        w.apply(&mut s, MediaIntent::WatchSpeech { watch: 1 }, t0, &mut out);
        w.apply(
            &mut s,
            MediaIntent::WatchPromptEnd { watch: 2 },
            t0,
            &mut out,
        );
        assert!(out.is_empty(), "nothing heard yet: {out:?}");
        let mut audio = speech();
        audio.extend(std::iter::repeat_n(0i16, 8000 * 3));
        let events = drive_audio(&mut s, &mut w, t0, 0, &audio[..11 * 8000]);
        let speech_at: Vec<_> = events
            .iter()
            .filter_map(|(i, e)| match e {
                MediaEvent::SpeechHeard { watch, onset } => Some((*watch, *i, *onset)),
                _ => None,
            })
            .collect();
        assert_eq!(speech_at.len(), 2, "{events:?}");
        for (_, tick, onset) in &speech_at {
            // The first word is at 0.40 s; the jitter buffer delays playout a few ticks.
            assert!((0.38..0.7).contains(&onset.as_secs_f64()), "{onset:?}");
            assert!(*tick < 40, "heard at tick {tick}");
        }
        let ended: Vec<_> = events
            .iter()
            .filter_map(|(i, e)| match e {
                MediaEvent::PromptEnded { lasted, .. } => Some((*i, *lasted)),
                _ => None,
            })
            .collect();
        // The last word ends at 10.18 s; 600 ms later (and the jitter buffer's delay) the
        // prompt is over: not at the pauses between sentences.
        let [(tick, lasted)] = ended[..] else {
            panic!("{events:?}")
        };
        assert!((535..550).contains(&tick), "ended at tick {tick}");
        assert!((9.5..10.0).contains(&lasted.as_secs_f64()), "{lasted:?}");
        assert!(w.is_empty());

        // Silence after it: 2 s of it, counted from the watch.
        w.apply(
            &mut s,
            MediaIntent::WatchSilence {
                watch: 3,
                duration: Duration::from_secs(2),
            },
            t0,
            &mut out,
        );
        let events = drive_audio(&mut s, &mut w, t0, 550, &audio[11 * 8000..]);
        let [(tick, MediaEvent::SilenceHeld { watch: 3 })] = events[..] else {
            panic!("{events:?}")
        };
        assert!((645..=652).contains(&tick), "silence held at tick {tick}");
    }

    #[test]
    fn a_tone_is_neither_speech_nor_silence_and_nothing_received_is_neither_either() {
        let t0 = t0();
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        w.apply(&mut s, MediaIntent::WatchSpeech { watch: 1 }, t0, &mut out);
        w.apply(
            &mut s,
            MediaIntent::WatchSilence {
                watch: 2,
                duration: Duration::from_secs(1),
            },
            t0,
            &mut out,
        );
        // Nothing received for 3 s: no speech, and no silence heard either.
        for i in 0..150 {
            let now = t0 + Duration::from_millis(20) * i;
            let mut got = Vec::new();
            let mut buf = [0u8; MAX_PACKET];
            while s.poll_transmit(now, &mut buf).is_some() {}
            w.check(&s, now, &mut got);
            assert!(got.is_empty(), "{got:?}");
        }
        let events = drive(&mut s, &mut w, t0, 150..400, |_| true);
        assert!(events.is_empty(), "a tone is heard: {events:?}");
        assert!(!w.is_empty());
    }

    #[test]
    fn audio_is_a_tone_or_speech_heard_for_its_minimum_and_never_silence_or_white_noise() {
        let t0 = t0();
        // A tone (music on hold, say): heard once 200 ms of it played out.
        let mut s = session(t0);
        let mut w = Watches::default();
        let mut out = Vec::new();
        w.apply(&mut s, MediaIntent::WatchAudio { watch: 1 }, t0, &mut out);
        assert!(out.is_empty());
        let events = drive(&mut s, &mut w, t0, 0..100, |i| i >= 50);
        let [(tick, MediaEvent::AudioHeard { watch: 1 })] = events[..] else {
            panic!("{events:?}")
        };
        assert!((59..70).contains(&tick), "heard at tick {tick}");

        // Speech: heard too.
        let mut s = session(t0);
        let mut w = Watches::default();
        w.apply(&mut s, MediaIntent::WatchAudio { watch: 2 }, t0, &mut out);
        let events = drive_audio(&mut s, &mut w, t0, 0, &speech()[..3 * 8000]);
        assert!(
            matches!(events[..], [(_, MediaEvent::AudioHeard { watch: 2 })]),
            "{events:?}"
        );

        // Digital silence, then white noise at -30 dBFS (a noise bed, comfort noise): never.
        let mut s = session(t0);
        let mut w = Watches::default();
        w.apply(&mut s, MediaIntent::WatchAudio { watch: 3 }, t0, &mut out);
        let mut seed = 0x1234_5678u32;
        let mut audio = vec![0i16; 8000];
        audio.extend((0..3 * 8000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            ((seed >> 16) as i16) / 32
        }));
        let events = drive_audio(&mut s, &mut w, t0, 0, &audio);
        assert!(events.is_empty(), "{events:?}");
        assert!(!w.is_empty(), "the watch still waits");
        assert!(out.is_empty(), "{out:?}");
    }
}
