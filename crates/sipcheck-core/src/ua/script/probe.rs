//! `sipcheck call`'s one call, as a [`CallScript`](super::CallScript) built by
//! [`CallScript::probe`](super::CallScript::probe): the steps its options mean, run on one
//! timeline from the answer (DTMF 500 ms after it, the hold and resume, the hang-up after
//! `--duration`), and the call's outcome decided from what the peer did.
//!
//! Unlike a scenario's steps, the probe's actions do not wait for each other: the hang-up
//! comes `--duration` after the answer whatever the hold's re-INVITE took, and a refused hold
//! is reported without cutting the call short (the media is still judged over the whole
//! call).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{overload_note, stray_note, CommandError, Placed, ScriptCommand};
use crate::media::dtmf::{DtmfConfig, DtmfSender};
use crate::media::intent::{MediaEvent, MediaIntent};
use crate::media::pesq::{PesqError, PesqScore, RECORD_SLACK_SAMPLES};
use crate::media::session::{MediaError, MediaReport};
use crate::media::signature::{SignatureCode, SignatureVerdict, SIGNATURE_LEVEL_DBFS};
use crate::media::tone::{ToneQuery, DEFAULT_MAX_GAP};
use crate::sdp::{Direction, LocalMedia, Negotiated};
use crate::ua::call::{CallEndReason, CallEvent, CallRecord};
use crate::ua::work::{Work, WorkResult};

/// How long after the answer `--send-dtmf` digits are sent.
pub const DTMF_AFTER_ANSWER: Duration = Duration::from_millis(500);
/// How long the end of a call hung up at the `--timeout` limit is awaited.
pub const LIMIT_GRACE: Duration = Duration::from_secs(2);

/// What `sipcheck call`'s options ask of its one call.
#[derive(Debug, Clone)]
pub struct ProbeCall {
    /// The Request-URI.
    pub target: String,
    /// CANCEL when not answered within this time (`--answer-timeout`).
    pub answer_timeout: Duration,
    /// Hang up this long after the answer (`--duration`).
    pub duration: Duration,
    /// CANCEL this long after the INVITE; the call is then expected to end with 487
    /// (`--cancel-after`).
    pub cancel_after: Option<Duration>,
    /// Hold (re-INVITE `a=sendonly`) this long after the answer, then resume this long
    /// after the hold (`--hold-after`, `--hold-for`).
    pub hold: Option<(Duration, Duration)>,
    /// DTMF digits to send [`DTMF_AFTER_ANSWER`] after the answer (`--send-dtmf`).
    pub send_dtmf: Option<String>,
    /// The tone expected from the far end, looked for again after each resume
    /// (`--expect-tone`); the whole call's detection is the media stream's own.
    pub expect_tone: Option<(ToneQuery, String)>,
    /// What is expected of the far end's media over the whole call.
    pub expect: ProbeExpect,
    /// When the overall limit (`--timeout`) is reached, and the limit as the user wrote it:
    /// the call is then hung up and its end awaited [`LIMIT_GRACE`] more.
    pub limit: Option<(Instant, String)>,
    /// Play the caller's signature of call [`PROBE_SIGNATURE_CALL`] and expect the callee's,
    /// or our own back from an echo (`--signature`; the INVITE then carries the call's
    /// number in `X-Sipcheck-Signature`).
    pub signature: bool,
    /// Record the received audio from the answer for the reference's length plus
    /// [`RECORD_SLACK_SAMPLES`], score it against the reference (ITU-T P.862) and fail
    /// under the minimum (`--expect-pesq`).
    pub pesq: Option<ProbePesq>,
}

/// `sipcheck call --expect-pesq REF.wav[:MIN]`: the reference speech and the minimum score.
#[derive(Debug, Clone)]
pub struct ProbePesq {
    /// The reference, 8 kHz mono.
    pub reference: Arc<[i16]>,
    /// Its name in messages (the file as given).
    pub name: String,
    /// The lowest raw P.862 score that passes.
    pub min: f64,
}

/// The signature call number of `sipcheck call --signature`'s one call.
pub const PROBE_SIGNATURE_CALL: u64 = 0;

/// What became of the hold and resume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeHold {
    /// The hold re-INVITE was answered 2xx.
    pub held: bool,
    /// The resume re-INVITE was answered 2xx.
    pub resumed: bool,
    /// The expected tone was heard after the resume (`None` without an expected tone, media,
    /// or a resume that made the far end's RTP expected again).
    pub tone_after_resume: Option<bool>,
}

/// What `sipcheck call` expects of the far end's media, judged over the whole call by
/// [`judge_media`].
#[derive(Debug, Clone, Default)]
pub struct ProbeExpect {
    /// The label of the tone expected (`--expect-tone`, e.g. `425 Hz`): the media stream's
    /// session looks for it from its start (its first tone result).
    pub tone: Option<String>,
    /// Exactly these DTMF digits are expected (`--expect-dtmf`).
    pub dtmf: Option<String>,
    /// A call that received no RTP at all does not fail (`--no-media-ok`).
    pub no_media_ok: bool,
    /// A call whose RTP stopped for longer than this fails (`--rtp-timeout`).
    pub rtp_timeout: Duration,
    /// A heard tone that drops out for this long or longer fails (`--max-gap`; zero is
    /// taken as [`DEFAULT_MAX_GAP`]).
    pub max_gap: Duration,
}

/// What `expect` asks that `report` (the whole call's media, as last `negotiated`) does not
/// show, each as a failure. A far end whose negotiated direction says it sends nothing is not
/// failed for its silence, but audio expected from it is; a call that ends on hold keeps
/// what was verified before.
#[must_use]
pub fn judge_media(
    expect: &ProbeExpect,
    negotiated: &Negotiated,
    report: &MediaReport,
) -> Vec<String> {
    let r = &report.receive;
    let mut failures = Vec::new();
    let stray = stray_note(&report.stray);
    let tone_heard = tone_heard(report);
    let dtmf_unmet = expect
        .dtmf
        .as_ref()
        .is_some_and(|d| *d != report.dtmf_received);
    let far_end_sends = negotiated.direction.receives();
    if !far_end_sends && ((expect.tone.is_some() && !tone_heard) || dtmf_unmet) {
        failures.push(format!(
            "audio expected, but the negotiated direction is {}: the far end sends none",
            negotiated.direction.as_str()
        ));
    }
    // SRTP whose every packet failed authentication: media came, none of it usable. Never a
    // pass, whatever else is expected (`--no-media-ok` included).
    if let Some(srtp) = report
        .srtp
        .filter(|s| s.unprotected == 0 && s.auth_failures > 0)
    {
        failures.push(srtp_auth_message(srtp.auth_failures));
    } else if r.received == 0 && far_end_sends && !expect.no_media_ok {
        failures.push(format!("no RTP received from the far end{stray}"));
    }
    let gap = report.max_gap.max(report.since_last_packet);
    if r.received > 0 && gap > expect.rtp_timeout {
        failures.push(format!(
            "RTP timeout: no media for {:.1} s (limit {:.1} s)",
            gap.as_secs_f64(),
            expect.rtp_timeout.as_secs_f64()
        ));
    }
    let behind = overload_note((report.frames_skipped, report.lateness_us.max()));
    if let (Some(label), false) = (&expect.tone, tone_heard) {
        failures.push(format!("expected tone {label} not detected{behind}{stray}"));
    }
    if let (Some(label), true) = (&expect.tone, tone_heard) {
        let limit = if expect.max_gap.is_zero() {
            DEFAULT_MAX_GAP
        } else {
            expect.max_gap
        };
        if let Some(gap) = super::gap_failure(&report.audio_gaps, limit) {
            failures.push(format!("tone {label}: {gap}"));
        }
    }
    if let (Some(expected), true) = (&expect.dtmf, dtmf_unmet) {
        failures.push(format!(
            "expected DTMF '{expected}', received '{}'{stray}",
            report.dtmf_received
        ));
    }
    failures
}

/// Whether the tone the session looked for from its start was heard.
fn tone_heard(report: &MediaReport) -> bool {
    report.tones.first().is_some_and(|t| t.detection.is_some())
}

/// The outcome of `sipcheck call`'s call.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    /// The call's record (`None` when it was never placed).
    pub record: Option<CallRecord>,
    /// Everything that failed, the call's own end first (empty: the call passed).
    pub failures: Vec<String>,
    /// The hold and resume, when asked for.
    pub hold: Option<ProbeHold>,
    /// Times the far end put the call on hold.
    pub peer_holds: u32,
    /// Ctrl-C ended the call.
    pub interrupted: bool,
    /// The DTMF digits could not be sent.
    pub dtmf_failed: bool,
    /// What was heard of the signature when it held (`--signature`): the peer's, or our own
    /// back from an echo.
    pub signature: Option<&'static str>,
    /// The signature's verdict (`--signature`, the call answered with media): `verified`,
    /// `echo`, `crossed_audio`, `wrong_audio`, `no_audio`.
    pub signature_verdict: Option<&'static str>,
    /// The PESQ score of the received speech (`--expect-pesq`), when it was scored.
    pub pesq: Option<PesqScore>,
}

/// `sipcheck call --signature`'s codes: ours (the caller's) and the peer's (the callee's).
fn probe_codes() -> (SignatureCode, SignatureCode) {
    (
        SignatureCode::for_call(PROBE_SIGNATURE_CALL, false),
        SignatureCode::for_call(PROBE_SIGNATURE_CALL, true),
    )
}

/// The probe's state (see the module documentation).
#[derive(Debug)]
pub(super) struct Probe {
    plan: ProbeCall,
    /// The INVITE is out and the call exists.
    placed: bool,
    /// The call could not be placed: why.
    place_error: Option<CommandError>,
    local: Option<LocalMedia>,
    media: Option<Negotiated>,
    /// telephone-event of the session as started.
    session_te: Option<Option<u8>>,
    answered: bool,
    record: Option<CallRecord>,
    /// The limit ended the wait for the call's end: it is left as is.
    abandoned: bool,
    cancel_at: Option<Instant>,
    give_up_at: Option<Instant>,
    hangup_at: Option<Instant>,
    dtmf_at: Option<Instant>,
    hold_at: Option<Instant>,
    resume_at: Option<Instant>,
    limit_at: Option<Instant>,
    abandon_at: Option<Instant>,
    hold: Option<ProbeHold>,
    hold_failures: Vec<String>,
    /// Which re-INVITE of ours awaits its answer: the hold (true) or the resume (false).
    reinvite_pending: Option<bool>,
    /// The re-INVITE command awaits its reply: the hold (true) or the resume (false).
    reinvite_sending: Option<bool>,
    /// RTP is expected (the call is not on hold either way).
    expecting: bool,
    /// The tone watch set at the last resume, and whether it fired.
    resume_watch: Option<(u32, bool)>,
    next_watch: u32,
    peer_holds: u32,
    interrupted: bool,
    timed_out: bool,
    dtmf_error: Option<String>,
    /// `--signature`: the watch set when the media started, the judge asked at the hang-up,
    /// and the verdict either gave.
    signature_watches: Vec<u32>,
    signature_verdict: Option<SignatureVerdict>,
    /// `--expect-pesq`: the capture's watch, the score asked (its id and deadline), and the
    /// result, or that none came in time.
    pesq_watch: Option<u32>,
    pesq_work: Option<(u32, Instant)>,
    pesq_result: Option<Result<PesqScore, PesqError>>,
    pesq_timed_out: bool,
}

impl Probe {
    pub(super) fn new(plan: ProbeCall) -> Self {
        Self {
            limit_at: plan.limit.as_ref().map(|(at, _)| *at),
            plan,
            placed: false,
            place_error: None,
            local: None,
            media: None,
            session_te: None,
            answered: false,
            record: None,
            abandoned: false,
            cancel_at: None,
            give_up_at: None,
            hangup_at: None,
            dtmf_at: None,
            hold_at: None,
            resume_at: None,
            abandon_at: None,
            hold: None,
            hold_failures: Vec::new(),
            reinvite_pending: None,
            reinvite_sending: None,
            expecting: true,
            resume_watch: None,
            next_watch: 0,
            peer_holds: 0,
            interrupted: false,
            timed_out: false,
            dtmf_error: None,
            signature_watches: Vec::new(),
            signature_verdict: None,
            pesq_watch: None,
            pesq_work: None,
            pesq_result: None,
            pesq_timed_out: false,
        }
    }

    pub(super) fn start(&mut self, commands: &mut VecDeque<ScriptCommand>) {
        commands.push_back(ScriptCommand::Invite {
            target: self.plan.target.clone(),
        });
    }

    pub(super) fn handle_placed(
        &mut self,
        now: Instant,
        placed: Result<Placed, CommandError>,
        commands: &mut VecDeque<ScriptCommand>,
    ) {
        match placed {
            Ok(placed) => {
                self.placed = true;
                self.local = Some(placed.local);
                self.cancel_at = self.plan.cancel_after.map(|d| now + d);
                self.give_up_at = Some(now + self.plan.answer_timeout);
                if self.interrupted {
                    self.cancel_at = None;
                    self.give_up_at = None;
                    commands.push_back(ScriptCommand::Hangup);
                }
            }
            Err(e) => self.place_error = Some(e),
        }
    }

    /// Why the call could not be placed, if it could not.
    pub(super) fn place_error(&self) -> Option<&CommandError> {
        self.place_error.as_ref()
    }

    pub(super) fn handle_call_event<D>(
        &mut self,
        now: Instant,
        event: CallEvent<D>,
        commands: &mut VecDeque<ScriptCommand>,
    ) {
        match event {
            CallEvent::EarlyMedia { negotiated, .. } => self.start_media(negotiated, commands),
            CallEvent::Answered { negotiated, .. } => {
                self.answered = true;
                self.give_up_at = None;
                self.cancel_at = None;
                if self.media.is_some() {
                    commands.push_back(ScriptCommand::Media(MediaIntent::Remote(
                        negotiated.remote_rtp,
                    )));
                    self.media = Some(negotiated);
                } else {
                    self.start_media(negotiated, commands);
                }
                if !self.interrupted {
                    self.hangup_at = Some(now + self.plan.duration);
                    self.hold_at = self.plan.hold.map(|(after, _)| now + after);
                    if self.plan.send_dtmf.is_some() {
                        self.dtmf_at = Some(now + DTMF_AFTER_ANSWER);
                    }
                }
            }
            CallEvent::MediaUpdated { negotiated, .. } => {
                if self.media.is_some() {
                    commands.push_back(ScriptCommand::Media(MediaIntent::Follow(Box::new(
                        negotiated.clone(),
                    ))));
                    self.media = Some(negotiated);
                }
                match (self.reinvite_pending.take(), self.hold.as_mut()) {
                    (Some(true), Some(h)) => h.held = true,
                    (Some(false), Some(h)) => h.resumed = true,
                    (pending, _) => self.reinvite_pending = pending,
                }
                // A resume, ours or the far end's: the expected tone is looked for again
                // from now on.
                let expects = self.media.as_ref().is_some_and(Negotiated::expects_rtp);
                if expects && !self.expecting {
                    if let Some((query, _)) = &self.plan.expect_tone {
                        self.next_watch += 1;
                        let watch = self.next_watch;
                        self.resume_watch = Some((watch, false));
                        commands.push_back(ScriptCommand::Media(MediaIntent::WatchTone {
                            watch,
                            query: *query,
                        }));
                    }
                }
                if self.media.as_ref().is_some_and(|n| n.remote_hold) && self.expecting {
                    self.peer_holds += 1;
                }
                self.expecting = expects;
            }
            CallEvent::UpdateFailed { code, .. } => {
                if let Some(which) = self.reinvite_pending.take() {
                    self.hold_failures.push(format!(
                        "the {} re-INVITE was answered {code}",
                        which_name(which)
                    ));
                }
            }
            CallEvent::Ended { record, .. } => self.record = Some(*record),
            _ => {}
        }
    }

    pub(super) fn handle_media_event(
        &mut self,
        now: Instant,
        event: &MediaEvent,
        commands: &mut VecDeque<ScriptCommand>,
    ) {
        if let (MediaEvent::Captured { watch, audio }, Some(pesq)) = (event, &self.plan.pesq) {
            if self.pesq_watch == Some(*watch) {
                self.pesq_watch = None;
                self.next_watch += 1;
                self.pesq_work = Some((self.next_watch, now + super::WORK_WAIT));
                commands.push_back(ScriptCommand::Work(Work::Pesq {
                    id: self.next_watch,
                    reference: pesq.reference.clone(),
                    received: audio.clone(),
                }));
            }
        }
        if let MediaEvent::Signature { watch, verdict } = event {
            if self.signature_watches.contains(watch) {
                self.signature_verdict = Some(*verdict);
            }
        }
        if let (MediaEvent::ToneHeard { watch, .. }, Some((id, heard))) =
            (event, self.resume_watch.as_mut())
        {
            if watch == id {
                *heard = true;
            }
        }
    }

    /// The score of the recording (`--expect-pesq`).
    pub(super) fn handle_work_done(&mut self, result: WorkResult) {
        let WorkResult::Pesq { id, score } = result else {
            return;
        };
        if self.pesq_work.is_some_and(|(i, _)| i == id) {
            self.pesq_work = None;
            self.pesq_result = Some(score);
        }
    }

    pub(super) fn handle_reinvite_sent(&mut self, now: Instant, sent: Result<(), CommandError>) {
        let Some(hold) = self.reinvite_sending.take() else {
            return;
        };
        match (sent, hold) {
            (Ok(()), true) => {
                self.reinvite_pending = Some(true);
                self.resume_at = self.plan.hold.map(|(_, hold_for)| now + hold_for);
            }
            (Ok(()), false) => self.reinvite_pending = Some(false),
            (Err(e), true) => self.hold_failures.push(format!(
                "cannot put the call on hold: {}",
                command_error(&e)
            )),
            (Err(e), false) => self
                .hold_failures
                .push(format!("cannot resume the call: {}", command_error(&e))),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, commands: &mut VecDeque<ScriptCommand>) {
        let due = |t: &mut Option<Instant>| {
            if t.is_some_and(|t| t <= now) {
                *t = None;
                true
            } else {
                false
            }
        };
        if due(&mut self.dtmf_at) {
            self.send_dtmf(commands);
        }
        let cancel = due(&mut self.cancel_at);
        if due(&mut self.give_up_at) || cancel {
            self.cancel_at = None;
            self.give_up_at = None;
            commands.push_back(ScriptCommand::Cancel);
        }
        if due(&mut self.hold_at) {
            if let Some(mut held) = self.local.clone() {
                held.direction = Direction::SendOnly;
                self.hold = Some(ProbeHold::default());
                self.reinvite_sending = Some(true);
                commands.push_back(ScriptCommand::Reinvite(Box::new(held)));
            }
        }
        if due(&mut self.resume_at) {
            if let Some(local) = self.local.clone() {
                self.reinvite_sending = Some(false);
                commands.push_back(ScriptCommand::Reinvite(Box::new(local)));
            }
        }
        if due(&mut self.hangup_at) {
            if let Some(which) = self.reinvite_pending.take() {
                self.hold_failures
                    .push(format!("the {} re-INVITE had no answer", which_name(which)));
            }
            self.hang_up(commands);
        }
        if due(&mut self.limit_at) {
            self.cancel_at = None;
            self.give_up_at = None;
            self.hangup_at = None;
            self.timed_out = true;
            self.abandon_at = Some(now + LIMIT_GRACE);
            self.hang_up(commands);
        }
        if self.pesq_work.is_some_and(|(_, deadline)| deadline <= now) {
            self.pesq_work = None;
            self.pesq_timed_out = true;
        }
        if due(&mut self.abandon_at) && self.placed {
            // The peer did not conclude the hang-up in time: the call is left as is.
            self.abandoned = true;
        }
    }

    pub(super) fn stop(&mut self, commands: &mut VecDeque<ScriptCommand>) {
        if self.interrupted {
            return;
        }
        self.interrupted = true;
        for t in [
            &mut self.cancel_at,
            &mut self.give_up_at,
            &mut self.hangup_at,
            &mut self.dtmf_at,
            &mut self.hold_at,
            &mut self.resume_at,
        ] {
            *t = None;
        }
        if self.placed {
            commands.push_back(ScriptCommand::Hangup);
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        [
            self.cancel_at,
            self.give_up_at,
            self.hangup_at,
            self.dtmf_at,
            self.hold_at,
            self.resume_at,
            self.limit_at,
            self.abandon_at,
            self.pesq_work.map(|(_, deadline)| deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Done once the call ended (and the score of its recording, asked, came or timed out),
    /// was abandoned, or could not be placed.
    pub(super) fn is_done(&self) -> bool {
        (self.record.is_some() && self.pesq_work.is_none())
            || self.abandoned
            || self.place_error.is_some()
    }

    pub(super) fn negotiated(&self) -> Option<&Negotiated> {
        self.media.as_ref()
    }

    pub(super) fn has_media(&self) -> bool {
        self.media.is_some()
    }

    fn start_media(&mut self, negotiated: Negotiated, commands: &mut VecDeque<ScriptCommand>) {
        if self.media.is_some() || self.local.is_none() {
            return;
        }
        self.session_te = Some(negotiated.telephone_event_pt);
        commands.push_back(ScriptCommand::Media(MediaIntent::Start(Box::new(
            negotiated.clone(),
        ))));
        self.media = Some(negotiated);
        if let Some(pesq) = &self.plan.pesq {
            self.next_watch += 1;
            self.pesq_watch = Some(self.next_watch);
            commands.push_back(ScriptCommand::Media(MediaIntent::Capture {
                watch: self.next_watch,
                samples: pesq.reference.len() + RECORD_SLACK_SAMPLES,
            }));
        }
        if self.plan.signature {
            let (own, peer) = probe_codes();
            if let Ok(playlist) = own.playlist(SIGNATURE_LEVEL_DBFS) {
                commands.push_back(ScriptCommand::Media(MediaIntent::Play(playlist)));
            }
            self.next_watch += 1;
            self.signature_watches.push(self.next_watch);
            commands.push_back(ScriptCommand::Media(MediaIntent::WatchSignature {
                watch: self.next_watch,
                expected: peer,
                own: Some(own),
            }));
        }
    }

    fn hang_up(&mut self, commands: &mut VecDeque<ScriptCommand>) {
        // The signature heard so far, asked before the media stops.
        if self.media.is_some() && self.plan.signature && self.signature_verdict.is_none() {
            let (own, peer) = probe_codes();
            self.next_watch += 1;
            self.signature_watches.push(self.next_watch);
            commands.push_back(ScriptCommand::Media(MediaIntent::JudgeSignature {
                watch: self.next_watch,
                expected: peer,
                own: Some(own),
            }));
        }
        // RFC 3261 §15.1.1: media stops once the BYE is sent.
        if self.media.is_some() {
            commands.push_back(ScriptCommand::Media(MediaIntent::SetSending(false)));
        }
        commands.push_back(ScriptCommand::Hangup);
    }

    fn send_dtmf(&mut self, commands: &mut VecDeque<ScriptCommand>) {
        let (Some(digits), Some(te)) = (self.plan.send_dtmf.clone(), self.session_te) else {
            return;
        };
        let config = DtmfConfig::default();
        let checked = match te {
            None => Err(MediaError::NoTelephoneEvent),
            Some(_) => DtmfSender::new(&digits, config)
                .map(|_| ())
                .map_err(MediaError::from),
        };
        match checked {
            Ok(()) => commands.push_back(ScriptCommand::Media(MediaIntent::SendDtmf {
                digits,
                config,
            })),
            Err(e) => self.dtmf_error = Some(format!("DTMF not sent: {e}")),
        }
    }

    /// The call's outcome (see [`CallScript::finish_probe`](super::CallScript::finish_probe)).
    pub(super) fn finish(
        mut self,
        record: Option<CallRecord>,
        media: Option<&MediaReport>,
        describe: &dyn Fn(&CallEndReason) -> String,
    ) -> ProbeOutcome {
        let media = match (media, &self.media) {
            (Some(report), Some(negotiated)) => Some((
                judge_media(&self.plan.expect, negotiated, report),
                tone_heard(report),
            )),
            _ => None,
        };
        let record = self.record.take().or(record);
        let answered = record.as_ref().is_some_and(|r| r.answer.is_some());
        let reason = record.as_ref().and_then(|r| r.reason()).cloned();
        let mut failures: Vec<String> = self.dtmf_error.iter().cloned().collect();
        failures.append(&mut self.hold_failures);
        if let Some(which) = self.reinvite_pending {
            failures.push(format!(
                "the {} re-INVITE had no answer before the call ended",
                which_name(which)
            ));
        }
        if let Some((media_failures, tone_heard)) = media {
            if answered {
                failures.extend(media_failures);
            }
            if let Some((_, label)) = &self.plan.expect_tone {
                let heard = match self.resume_watch {
                    Some((_, heard)) => heard,
                    None => tone_heard,
                };
                if self.resume_watch.is_some() && !heard && answered {
                    failures.push(format!("expected tone {label} not heard after the resume"));
                }
                // Only a tone looked for after the resume says whether it came back: one
                // heard before the hold says nothing of it.
                if let Some(hold) = &mut self.hold {
                    hold.tone_after_resume = self
                        .resume_watch
                        .filter(|_| hold.resumed)
                        .map(|(_, heard)| heard);
                }
            }
        }
        let mut signature = None;
        let mut signature_verdict = None;
        if self.plan.signature && answered && self.media.is_some() {
            signature_verdict = Some(self.signature_verdict.map_or("no_audio", |v| v.label()));
            match self.signature_verdict {
                Some(SignatureVerdict::Verified) => signature = Some("heard the peer's signature"),
                Some(SignatureVerdict::Echo { .. }) => {
                    signature = Some("heard its own signature back (echo)");
                }
                Some(SignatureVerdict::Crossed {
                    heard,
                    also_expected,
                }) => {
                    let (call, callee) = heard.call();
                    failures.push(format!(
                        "crossed audio: heard call {call}'s {} signature {} the peer's",
                        if callee { "callee" } else { "caller" },
                        if also_expected {
                            "alongside"
                        } else {
                            "instead of"
                        }
                    ));
                }
                Some(SignatureVerdict::WrongAudio { loud }) => failures.push(format!(
                    "wrong audio: {:.1} s of audio but no signature",
                    loud.as_secs_f64()
                )),
                Some(SignatureVerdict::NoAudio) | None => {
                    failures.push("no audio: the peer's signature was not heard".into());
                }
            }
        }
        let mut pesq = None;
        if let (Some(p), true, true) = (&self.plan.pesq, answered, self.media.is_some()) {
            match &self.pesq_result {
                Some(Ok(score)) => {
                    pesq = Some(*score);
                    if score.raw < p.min {
                        failures.push(format!(
                            "{score} against {}, below the minimum {}",
                            p.name, p.min
                        ));
                    }
                }
                Some(Err(e)) => failures.push(format!("PESQ against {} not scored: {e}", p.name)),
                None if self.pesq_timed_out => failures.push(format!(
                    "PESQ against {} not scored: no result within {} s",
                    p.name,
                    super::WORK_WAIT.as_secs()
                )),
                None => failures.push(format!(
                    "PESQ against {} not scored: the call ended before {:.1} s of audio \
                     (the reference and 1 s more) was received",
                    p.name,
                    (p.reference.len() + RECORD_SLACK_SAMPLES) as f64 / 8000.0
                )),
            }
        }
        if let Some(end) = self.end_failure(record.as_ref(), reason.as_ref(), describe) {
            failures.insert(0, end);
        }
        if let Some(failure) = record.as_ref().and_then(CallRecord::bye_failure) {
            failures.push(failure.to_string());
        }
        if self.interrupted {
            failures.push("interrupted".into());
        }
        if let (true, Some((_, limit))) = (self.timed_out, &self.plan.limit) {
            failures.push(format!("gave up: --timeout {limit} reached"));
        }
        ProbeOutcome {
            record,
            failures,
            hold: self.hold,
            peer_holds: self.peer_holds,
            interrupted: self.interrupted,
            dtmf_failed: self.dtmf_error.is_some(),
            signature,
            signature_verdict,
            pesq,
        }
    }

    /// What the call's end says against what was asked: a CANCEL answered 487, or an
    /// answer and a normal clearing.
    fn end_failure(
        &self,
        record: Option<&CallRecord>,
        reason: Option<&CallEndReason>,
        describe: &dyn Fn(&CallEndReason) -> String,
    ) -> Option<String> {
        let answered_before_cancel = record.is_some_and(|r| r.answered_before_cancel);
        let final_code = record.and_then(|r| r.final_code);
        let answered = record.is_some_and(|r| r.answer.is_some());
        match (self.plan.cancel_after, reason) {
            (Some(_), Some(CallEndReason::Cancelled))
                if !answered_before_cancel && final_code == Some(487) =>
            {
                None
            }
            (Some(_), Some(CallEndReason::Cancelled)) if !answered_before_cancel => {
                // Cancelled before any provisional, then refused (a challenge left
                // unanswered): the CANCEL itself was never tried.
                let got = final_code.map_or("no final response".to_string(), |c| c.to_string());
                Some(format!(
                    "expected 487 after the CANCEL, but the INVITE got {got}"
                ))
            }
            (Some(_), Some(r @ CallEndReason::CancelFailed { .. })) => {
                Some(format!("cancel failed: {r}"))
            }
            (None, Some(r @ CallEndReason::CancelFailed { .. })) if !self.interrupted => {
                Some(format!(
                    "not answered within the answer timeout ({:.1} s), then the CANCEL failed: {r}",
                    self.plan.answer_timeout.as_secs_f64()
                ))
            }
            (Some(_), _) => Some(format!(
                "expected the call to be cancelled, but it {}",
                reason.map_or("did not end".to_string(), describe)
            )),
            (None, _) if !answered => Some(format!(
                "not answered: {}",
                reason.map_or("no final response".to_string(), describe)
            )),
            (None, Some(r)) if !r.is_normal_clearing() => {
                Some(format!("call ended abnormally: {}", describe(r)))
            }
            _ => None,
        }
    }
}

fn which_name(hold: bool) -> &'static str {
    if hold {
        "hold"
    } else {
        "resume"
    }
}

/// The failure of a call whose every SRTP packet failed authentication.
#[must_use]
pub(super) fn srtp_auth_message(failures: u64) -> String {
    format!(
        "no audio: all {failures} SRTP packets received failed \
         authentication (the keys do not match)"
    )
}

fn command_error(e: &CommandError) -> String {
    match e {
        CommandError::Refused(e) | CommandError::SrtpRefused(e) | CommandError::NoRtpSocket(e) => {
            e.clone()
        }
        CommandError::Unresolved => "no address".into(),
        CommandError::TransportGone => "the transport is gone".into(),
    }
}
