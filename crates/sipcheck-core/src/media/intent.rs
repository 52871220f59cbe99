//! What a call's script asks of its media stream, as data ([`MediaIntent`]), and what the
//! stream tells back ([`MediaEvent`]).
//!
//! The script (`ua::script`) never touches a [`MediaSession`]: it emits intents, the driver of
//! the stream applies them on the thread that owns the session ([`Watches::apply`]) and runs
//! [`Watches::check`] after each of the stream's frame ticks, sending back the events.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::dtmf::DtmfConfig;
use super::session::MediaSession;
use super::tone::{Playlist, ToneQuery, WatchId};
use crate::sdp::Negotiated;

/// The level under which received audio counts as silence, in dBFS.
pub const SILENCE_DBFS: f64 = -50.0;

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
    /// Report [`MediaEvent::SilenceHeld`] once what is received has stayed under
    /// [`SILENCE_DBFS`] for `duration`.
    WatchSilence {
        /// The script's name for this watch.
        watch: u32,
        /// How long the silence must hold.
        duration: Duration,
    },
    /// Report [`MediaEvent::DtmfReceived`] once the digits received end with `digits`.
    WatchDtmf {
        /// The script's name for this watch.
        watch: u32,
        /// The digits expected.
        digits: String,
    },
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
    /// The watched DTMF digits arrived.
    DtmfReceived {
        /// The watch.
        watch: u32,
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
        duration: Duration,
        since: Option<Instant>,
    },
    Dtmf {
        digits: String,
        seen: usize,
    },
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
                self.list.push((
                    watch,
                    Watch::Silence {
                        duration,
                        since: None,
                    },
                ));
                self.check(session, now, out);
            }
            MediaIntent::WatchDtmf { watch, digits } => {
                self.list.push((watch, Watch::Dtmf { digits, seen: 0 }));
                self.check(session, now, out);
            }
            MediaIntent::Unwatch(watch) => self.list.retain(|(w, _)| *w != watch),
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
    pub fn check(&mut self, session: &MediaSession, now: Instant, out: &mut Vec<MediaEvent>) {
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
                Watch::Silence { duration, since } => match session.last_level_dbfs() {
                    Some(l) if l < SILENCE_DBFS => {
                        let since = *since.get_or_insert(now);
                        (now.duration_since(since) >= *duration)
                            .then_some(MediaEvent::SilenceHeld { watch: *watch })
                    }
                    _ => {
                        *since = None;
                        None
                    }
                },
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
