//! One call of one user agent, running its role's steps in order.
//!
//! The steps of a role from its first call-level step on (`call`, `answer`, `reject`, `ring`
//! …) run once per call: a caller's when the load plan starts a call, a callee's for each
//! call it receives. A step that fails records a [`Failure`] (with its line in the scenario)
//! and ends the script; the call is then hung up. Every wait is bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::dtmf::DtmfConfig;
use sipcheck_core::media::g711;
use sipcheck_core::media::session::{MediaConfig, MediaSession};
use sipcheck_core::media::tone::{Playlist, PlaylistItem, ToneQuery};
use sipcheck_core::scenario::model::{
    Account, Expectation, HoldMode, Located, PlayItem, Step, WaitEvent,
};
use sipcheck_core::sdp::{self, LocalMedia, Negotiated};
use sipcheck_core::sip::auth::Credentials;
use sipcheck_core::ua::call::{
    CallEndReason, CallEvent, CallId, CallRecord, OfferPlacement, OutgoingCall,
};
use sipcheck_core::ua::register::LocalEnd;
use tokio::sync::{mpsc, oneshot, watch};

use super::agent::{CallEvents, Command};
use crate::media::{MediaHandle, PortRange};
use crate::probe::audio::overload_note;
use sipcheck_core::stats::ladder::RawLadder;
use sipcheck_core::stats::outcome::{CallMedia, CallResult, Failure, FailureKind, Side, StepRun};

/// Everything a call task shares with its role.
pub(crate) struct RoleContext {
    pub(crate) role: String,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) local: LocalEnd,
    /// Where outgoing calls go (the server or outbound proxy); `None`: the URI's host.
    pub(crate) next_hop: Option<SocketAddr>,
    pub(crate) domain: String,
    pub(crate) codecs: Vec<g711::Codec>,
    pub(crate) ptime_ms: u32,
    pub(crate) jitter_frames: usize,
    pub(crate) ports: Arc<PortRange>,
    pub(crate) wavs: Arc<HashMap<String, Arc<[i16]>>>,
    /// Turns true on Ctrl-C: every call winds down.
    pub(crate) stop: watch::Receiver<bool>,
    /// Turns true when the load is over (every caller's call has finished): a callee still
    /// waiting for the caller's BYE or CANCEL gives up [`END_WAIT`] later.
    pub(crate) load_done: watch::Receiver<bool>,
    /// Whether calls carry RTP (`media: { rtp: false }`: signaling only).
    pub(crate) rtp: bool,
    /// `media.record`: the directory each call's received audio is written to, as WAV.
    pub(crate) record_dir: Option<std::path::PathBuf>,
    /// Request-URIs resolved so far, without a next hop (the host of each call's URI).
    pub(crate) destinations: std::sync::Mutex<HashMap<String, SocketAddr>>,
}

/// The most Request-URIs whose address is kept (one per callee with `{peer}` URIs).
const DESTINATIONS_KEPT: usize = 4096;

/// How long a step may wait for the call to be answered when it needs media.
const ANSWER_WAIT: Duration = Duration::from_secs(32);
/// How long a hang-up may take to complete.
const END_WAIT: Duration = Duration::from_secs(35);
/// The port of a description without RTP (RFC 863 discard; nothing is sent to it).
const DISCARD_PORT: u16 = 9;
/// An answered call whose RTP stops for longer than this fails.
const RTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a `hold` or `resume` step waits for its re-INVITE's final response (a little
/// more than Timer B, after which the call ends with BYE).
const REINVITE_WAIT: Duration = Duration::from_secs(33);

struct Call {
    ctx: Arc<RoleContext>,
    side: Side,
    user: String,
    id: Option<CallId>,
    call_id: String,
    events: Option<CallEvents>,
    started: Instant,
    scheduled: Option<Duration>,
    start_lag: Duration,
    /// The call's RTP socket, read from the moment it is offered or answered (RFC 3264
    /// §5.1), until the media session starts on it.
    rtp: Option<MediaHandle>,
    media: Option<(Negotiated, MediaHandle)>,
    ringing: bool,
    answered: bool,
    record: Option<CallRecord>,
    ladder: RawLadder,
    failures: Vec<Failure>,
    tone_onsets: Vec<Duration>,
    audio_checked: u32,
    audio_verified: u32,
    dtmf_checked: u32,
    dtmf_verified: u32,
    interrupted: bool,
    /// The steps reached, for the reports.
    steps_run: Vec<StepRun>,
    /// The end the next step waits for (`wait_for: bye` / `cancel`): a waiting step cut
    /// short by exactly that end has not failed, the script goes on to that `wait_for`.
    awaited_end: Option<CallEndReason>,
    ids: IdGen,
    /// How long steps wait for the answer (the `call` step's timeout).
    answer_wait: Duration,
    /// Our media as first offered or answered (what `hold` holds and `resume` restores).
    local: Option<LocalMedia>,
    /// A re-INVITE of ours (`hold`, `resume`) awaits its outcome.
    reinvite_pending: bool,
    /// Its outcome: answered 2xx, or the status refusing it.
    reinvite_outcome: Option<Result<(), u16>>,
    /// The step that hung up (its name, line, column), to name when the BYE fails.
    bye_step: Option<(&'static str, u32, u32)>,
}

/// A caller's call: `steps` from the `call` step on.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_caller(
    ctx: Arc<RoleContext>,
    account: Account,
    peer: Option<Account>,
    steps: Arc<Vec<Located<Step>>>,
    scheduled: Duration,
    run_start: Instant,
    seed: u64,
) -> CallResult {
    let started = Instant::now();
    let mut call = Call::new(ctx, Side::Caller, account.user.clone(), started, seed);
    call.scheduled = Some(scheduled);
    call.start_lag = started.saturating_duration_since(run_start + scheduled);
    call.run(&steps, &account, peer.as_ref()).await;
    call.finish().await
}

/// A callee's call: an incoming call for `account`, `steps` from its first call-level step.
pub(crate) async fn run_callee(
    ctx: Arc<RoleContext>,
    account: Account,
    incoming: super::agent::IncomingCall,
    steps: Arc<Vec<Located<Step>>>,
    seed: u64,
) -> CallResult {
    let mut call = Call::new(
        ctx,
        Side::Callee,
        account.user.clone(),
        Instant::now(),
        seed,
    );
    call.id = Some(incoming.call);
    call.call_id = incoming.call_id;
    call.events = Some(incoming.events);
    call.run(&steps, &account, None).await;
    call.finish().await
}

/// Whether a step belongs to each call (as opposed to the user agent's set-up).
pub(crate) fn is_call_step(step: &Step) -> bool {
    !matches!(step, Step::Register { .. } | Step::Unregister)
}

impl Call {
    fn new(ctx: Arc<RoleContext>, side: Side, user: String, started: Instant, seed: u64) -> Self {
        Self {
            ctx,
            side,
            user,
            id: None,
            call_id: String::new(),
            events: None,
            started,
            scheduled: None,
            start_lag: Duration::ZERO,
            rtp: None,
            media: None,
            ringing: false,
            answered: false,
            record: None,
            ladder: RawLadder::default(),
            failures: Vec::new(),
            tone_onsets: Vec::new(),
            audio_checked: 0,
            audio_verified: 0,
            dtmf_checked: 0,
            dtmf_verified: 0,
            interrupted: false,
            steps_run: Vec::new(),
            awaited_end: None,
            ids: IdGen::new(seed),
            answer_wait: ANSWER_WAIT,
            local: None,
            reinvite_pending: false,
            reinvite_outcome: None,
            bye_step: None,
        }
    }

    fn fail(&mut self, step: &Located<Step>, kind: FailureKind, message: impl Into<String>) {
        self.failures.push(Failure {
            step: step.value.name(),
            line: step.line,
            col: step.col,
            kind,
            message: message.into(),
        });
    }

    fn ended(&self) -> bool {
        self.record.is_some()
    }

    async fn run(&mut self, steps: &[Located<Step>], account: &Account, peer: Option<&Account>) {
        let steps: Vec<&Located<Step>> = steps.iter().filter(|s| is_call_step(&s.value)).collect();
        for (i, step) in steps.iter().enumerate() {
            if *self.ctx.stop.borrow() {
                self.interrupted = true;
                break;
            }
            self.awaited_end = steps.get(i + 1).and_then(|s| match &s.value {
                Step::WaitFor(WaitEvent::Bye) => Some(CallEndReason::RemoteBye),
                Step::WaitFor(WaitEvent::Cancel) => Some(CallEndReason::CancelledByRemote),
                _ => None,
            });
            let began = Instant::now();
            let failures = self.failures.len();
            let ok = self.step(step, account, peer).await;
            self.steps_run.push(StepRun {
                line: step.line,
                col: step.col,
                elapsed: began.elapsed(),
                passed: ok && !self.interrupted && self.failures.len() == failures,
            });
            if !ok || self.interrupted {
                break;
            }
        }
    }

    /// Run one step; false when it failed (the script stops).
    async fn step(
        &mut self,
        step: &Located<Step>,
        account: &Account,
        peer: Option<&Account>,
    ) -> bool {
        match &step.value {
            Step::Register { .. } | Step::Unregister => true,
            Step::Call(c) => {
                let peer_user = peer.map_or("", |p| p.user.as_str());
                let to = c.to.render(sipcheck_core::scenario::text::Fill {
                    user: &account.user,
                    peer: peer_user,
                    domain: &account.domain,
                });
                self.invite(step, account, &to, c.timeout).await
            }
            Step::Answer { ring } => {
                if self.ended() {
                    return self.unexpected_end(step);
                }
                if !ring.is_zero() {
                    self.command(Command::Ring);
                    if !self.pump_for(*ring).await {
                        return self.unexpected_end(step);
                    }
                }
                self.accept(step).await
            }
            Step::Reject { code, ring } => {
                if self.ended() {
                    return self.unexpected_end(step);
                }
                if !ring.is_zero() {
                    self.command(Command::Ring);
                    if !self.pump_for(*ring).await {
                        return self.unexpected_end(step);
                    }
                }
                let code = *code;
                self.command(|id| Command::Reject(id, code));
                self.pump_until_end(END_WAIT).await;
                true
            }
            Step::Ring(d) => {
                self.command(Command::Ring);
                self.pump_for(*d).await || self.waiting_cut_short(step)
            }
            Step::Play(items) => {
                if !self.wait_answer(step).await {
                    return false;
                }
                let playlist = self.playlist(items);
                if let Some((_, media)) = &self.media {
                    media.with(move |s, _| s.set_source(playlist)).await;
                }
                true
            }
            Step::Expect(expectation) => self.expect(step, expectation).await,
            Step::Dtmf {
                digits,
                duration,
                gap,
            } => {
                if !self.wait_answer(step).await {
                    return false;
                }
                let digits: String = digits.iter().map(|d| d.to_char()).collect();
                let config = DtmfConfig {
                    digit_duration: *duration,
                    gap: *gap,
                    ..DtmfConfig::default()
                };
                let sent = match &self.media {
                    Some((_, media)) => media
                        .with(move |s, _| s.send_dtmf(&digits, config).map_err(|e| e.to_string()))
                        .await
                        .unwrap_or(Ok(())),
                    None => Err("no media".into()),
                };
                if let Err(e) = sent {
                    self.fail(
                        step,
                        FailureKind::DtmfMissing,
                        format!("DTMF not sent: {e}"),
                    );
                    return false;
                }
                true
            }
            Step::Wait(d) => self.pump_for(*d).await || self.waiting_cut_short(step),
            Step::Hold(mode) => self.reinvite(step, Some(*mode)).await,
            Step::Resume => self.reinvite(step, None).await,
            Step::Hangup { after } => {
                if !after.is_zero() && !self.pump_for(*after).await {
                    return self.waiting_cut_short(step);
                }
                // RFC 3261 §15.1.1: media stops once the BYE is sent.
                if let Some((_, media)) = &self.media {
                    media.set_sending(false);
                }
                self.bye_step = Some((step.value.name(), step.line, step.col));
                self.command(Command::Hangup);
                self.pump_until_end(END_WAIT).await;
                true
            }
            Step::Cancel { after } => {
                if !after.is_zero() && !self.pump_for(*after).await {
                    return self.unexpected_end(step);
                }
                self.bye_step = Some((step.value.name(), step.line, step.col));
                self.command(Command::Cancel);
                self.pump_until_end(END_WAIT).await;
                match self.record.as_ref().and_then(|r| r.reason()) {
                    Some(reason @ CallEndReason::CancelFailed { .. }) => {
                        let (kind, message) = (kind_of(reason), reason.to_string());
                        self.fail(step, kind, message);
                        false
                    }
                    _ => true,
                }
            }
            Step::WaitFor(event) => {
                let mut load_done = self.ctx.load_done.clone();
                let gave_up = tokio::select! {
                    () = self.pump_until_end(Duration::from_secs(3600)) => false,
                    () = async {
                        let _ = load_done.wait_for(|done| *done).await;
                        tokio::time::sleep(END_WAIT).await;
                    } => true,
                };
                if gave_up && !self.ended() && !self.interrupted {
                    self.fail(
                        step,
                        FailureKind::Signalling,
                        format!(
                            "{event:?} did not come: the load was over {:.0} s before",
                            END_WAIT.as_secs_f64()
                        ),
                    );
                    return false;
                }
                let expected = match event {
                    WaitEvent::Bye => CallEndReason::RemoteBye,
                    WaitEvent::Cancel => CallEndReason::CancelledByRemote,
                };
                if self.interrupted {
                    return false;
                }
                match self.record.as_ref().and_then(|r| r.reason()) {
                    Some(reason) if *reason == expected => true,
                    Some(reason) => {
                        let reason = reason.to_string();
                        self.fail(
                            step,
                            FailureKind::Signalling,
                            format!("waited for {event:?}, but the call ended: {reason}"),
                        );
                        false
                    }
                    None => {
                        self.fail(
                            step,
                            FailureKind::Signalling,
                            format!("{event:?} did not come"),
                        );
                        false
                    }
                }
            }
        }
    }

    fn command(&self, make: impl FnOnce(CallId) -> Command) {
        if let Some(id) = self.id {
            let _ = self.ctx.commands.send(make(id));
        }
    }

    async fn invite(
        &mut self,
        step: &Located<Step>,
        account: &Account,
        to: &str,
        timeout: Duration,
    ) -> bool {
        let Some(target) = normalize_uri(to, &self.ctx.domain) else {
            self.fail(step, FailureKind::Other, format!("'{to}' is not a SIP URI"));
            return false;
        };
        let known = || {
            let kept = self.ctx.destinations.lock().ok()?;
            kept.get(&target).copied()
        };
        let destination = match self.ctx.next_hop.or_else(known) {
            Some(hop) => hop,
            None => match resolve_uri_host(&target).await {
                Some(addr) => {
                    if let Ok(mut kept) = self.ctx.destinations.lock() {
                        if kept.len() < DESTINATIONS_KEPT {
                            kept.insert(target.clone(), addr);
                        }
                    }
                    addr
                }
                None => {
                    self.fail(
                        step,
                        FailureKind::Other,
                        format!("cannot resolve the host of {target}"),
                    );
                    return false;
                }
            },
        };
        let Some(media) = self.open_media(step) else {
            return false;
        };
        self.local = Some(media.clone());
        let outgoing = OutgoingCall {
            request_uri: target.clone(),
            from_uri: format!("sip:{}@{}", account.user, account.domain),
            to_uri: target,
            destination,
            credentials: Some(Credentials::new(
                account.user.clone(),
                account.password.clone(),
            )),
            local_media: media,
            local: self.ctx.local.clone(),
            offer: OfferPlacement::InInvite,
            extra_headers: Vec::new(),
        };
        let (tx, rx) = oneshot::channel();
        if self
            .ctx
            .commands
            .send(Command::Invite(Box::new(outgoing), tx))
            .is_err()
        {
            self.fail(step, FailureKind::Transport, "the role's transport is gone");
            return false;
        }
        match rx.await {
            Ok(Ok((id, call_id, events))) => {
                self.id = Some(id);
                self.call_id = call_id;
                self.events = Some(events);
                self.answer_wait = timeout;
                true
            }
            Ok(Err(e)) => {
                self.fail(
                    step,
                    FailureKind::Other,
                    format!("cannot place the call: {e}"),
                );
                false
            }
            Err(_) => {
                self.fail(step, FailureKind::Transport, "the role's transport is gone");
                false
            }
        }
    }

    /// Our side of the offer or answer: an RTP socket, read from now on, and its port; or,
    /// without RTP, `a=inactive` on the discard port (RFC 3264 §5.1, §6.1). `None` (with a
    /// failure) when no port is free.
    fn open_media(&mut self, step: &Located<Step>) -> Option<LocalMedia> {
        if !self.ctx.rtp {
            let mut media = self.local_media(DISCARD_PORT);
            media.direction = sdp::Direction::Inactive;
            return Some(media);
        }
        let rtp = match self.ctx.ports.bind_std(self.ctx.local.addr.ip()) {
            Ok(s) => s,
            Err(e) => {
                self.fail(step, FailureKind::Other, format!("no RTP socket: {e}"));
                return None;
            }
        };
        let port = rtp.local_addr().map(|a| a.port()).unwrap_or_default();
        self.rtp = Some(MediaHandle::listen_std(rtp));
        Some(self.local_media(port))
    }

    fn local_media(&mut self, port: u16) -> LocalMedia {
        let mut media = LocalMedia::new(self.ctx.local.addr.ip(), port, self.ids.next_u64() >> 1);
        media.codecs = self.ctx.codecs.clone();
        media.ptime_ms = self.ctx.ptime_ms;
        media
    }

    async fn accept(&mut self, step: &Located<Step>) -> bool {
        let Some(media) = self.open_media(step) else {
            self.command(|id| Command::Reject(id, 503));
            return false;
        };
        let (tx, rx) = oneshot::channel();
        let Some(id) = self.id else { return false };
        self.local = Some(media.clone());
        let _ = self
            .ctx
            .commands
            .send(Command::Accept(id, Box::new(media), tx));
        match rx.await {
            Ok(Ok(Some(negotiated))) => {
                self.start_media(negotiated);
                // The call is up when the ACK arrives.
                self.wait_answer(step).await
            }
            Ok(Ok(None)) => self.wait_answer(step).await,
            Ok(Err(e)) => {
                self.fail(
                    step,
                    FailureKind::CodecRefused,
                    format!("cannot answer: {e}"),
                );
                false
            }
            Err(_) => {
                self.fail(step, FailureKind::Transport, "the role's transport is gone");
                false
            }
        }
    }

    /// `hold` (`Some`) or `resume` (`None`): a re-INVITE offering our media held (sendonly or
    /// inactive) or as first offered, which must be answered 2xx.
    async fn reinvite(&mut self, step: &Located<Step>, hold: Option<HoldMode>) -> bool {
        if !self.wait_answer(step).await {
            return false;
        }
        let (Some(id), Some(mut media)) = (self.id, self.local.clone()) else {
            return false;
        };
        if let Some(mode) = hold {
            media.direction = match (mode, media.direction) {
                (HoldMode::Inactive, _) | (_, sdp::Direction::Inactive) => sdp::Direction::Inactive,
                (HoldMode::SendOnly, _) => sdp::Direction::SendOnly,
            };
        }
        let what = step.value.name();
        let (tx, rx) = oneshot::channel();
        self.reinvite_pending = true;
        self.reinvite_outcome = None;
        if self
            .ctx
            .commands
            .send(Command::Reinvite(id, Box::new(media), tx))
            .is_err()
        {
            self.fail(step, FailureKind::Transport, "the role's transport is gone");
            return false;
        }
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.reinvite_pending = false;
                self.fail(
                    step,
                    FailureKind::Signalling,
                    format!("cannot send the {what} re-INVITE: {e}"),
                );
                return false;
            }
            Err(_) => {
                self.fail(step, FailureKind::Transport, "the role's transport is gone");
                return false;
            }
        }
        let deadline = Instant::now() + REINVITE_WAIT;
        self.pump(deadline, |c| c.reinvite_outcome.is_some()).await;
        match self.reinvite_outcome.take() {
            Some(Ok(())) => true,
            Some(Err(code)) => {
                self.fail(
                    step,
                    FailureKind::SipCode(code),
                    format!("the {what} re-INVITE was answered {code}"),
                );
                false
            }
            None if self.interrupted => false,
            None if self.ended() => self.unexpected_end(step),
            None => {
                self.fail(
                    step,
                    FailureKind::Signalling,
                    format!(
                        "the {what} re-INVITE had no answer within {:.0} s",
                        REINVITE_WAIT.as_secs_f64()
                    ),
                );
                false
            }
        }
    }

    fn start_media(&mut self, negotiated: Negotiated) {
        if self.media.is_some() {
            return;
        }
        let Some(handle) = self.rtp.take() else {
            return;
        };
        let mut config = MediaConfig::new(negotiated.codec);
        config.payload_type = negotiated.payload_type;
        config.telephone_event_pt = negotiated.telephone_event_pt;
        config.ptime = Duration::from_millis(u64::from(negotiated.ptime_ms.clamp(10, 60)));
        config.send = negotiated.direction.sends();
        config.jitter_buffer_frames = self.ctx.jitter_frames.max(1);
        config.record = self.ctx.record_dir.is_some();
        let session = MediaSession::new(
            Instant::now(),
            config,
            Playlist::new(Vec::new()),
            &mut self.ids,
        )
        .expect("valid media parameters");
        handle.start(session, negotiated.remote_rtp);
        self.media = Some((negotiated, handle));
    }

    fn playlist(&self, items: &[PlayItem]) -> Playlist {
        let mut list = Vec::new();
        let mut looping = false;
        for item in items {
            match item {
                PlayItem::Tone { tone, duration } => match duration {
                    Some(d) => list.push(PlaylistItem::Tone {
                        tone: *tone,
                        duration: *d,
                    }),
                    None => {
                        // Until the call ends: the last item, looped.
                        list.push(PlaylistItem::Tone {
                            tone: *tone,
                            duration: Duration::from_secs(1),
                        });
                        looping = true;
                    }
                },
                PlayItem::Wav { path } => {
                    if let Some(samples) = self.ctx.wavs.get(path) {
                        list.push(PlaylistItem::Pcm(samples.clone()));
                    }
                }
                PlayItem::Silence(d) => list.push(PlaylistItem::Silence { duration: *d }),
            }
        }
        // A tone without a duration plays until the call ends: the list then repeats.
        if looping {
            return Playlist::looping(list);
        }
        Playlist::new(list)
    }

    /// Handle one event; false when the call ended.
    fn on_event(&mut self, event: CallEvent<SocketAddr>, ladder: RawLadder) -> bool {
        match event {
            CallEvent::Progress { code, .. } if code == 180 || code == 183 => {
                self.ringing = true;
            }
            CallEvent::EarlyMedia { negotiated, .. } => {
                self.ringing = true;
                self.start_media(negotiated);
            }
            CallEvent::Answered { negotiated, .. } => {
                self.answered = true;
                if let Some((n, handle)) = &mut self.media {
                    handle.set_remote(negotiated.remote_rtp);
                    *n = negotiated;
                } else {
                    self.start_media(negotiated);
                }
            }
            CallEvent::MediaUpdated { negotiated, .. } => {
                if let Some((n, handle)) = &mut self.media {
                    handle.follow(&negotiated);
                    *n = negotiated;
                }
                if self.reinvite_pending {
                    self.reinvite_pending = false;
                    self.reinvite_outcome = Some(Ok(()));
                }
            }
            CallEvent::UpdateFailed { code, .. } if self.reinvite_pending => {
                self.reinvite_pending = false;
                self.reinvite_outcome = Some(Err(code));
            }
            CallEvent::Ended { record, .. } => {
                self.record = Some(*record);
                self.ladder = ladder;
                return false;
            }
            _ => {}
        }
        true
    }

    /// Process events for `d`; false when the call ended meanwhile.
    async fn pump_for(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        self.pump(deadline, |_| false).await;
        !self.ended()
    }

    /// Process events until the call ends or `d` passes.
    async fn pump_until_end(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        self.pump(deadline, |c| c.ended()).await;
    }

    /// Process events until `done` holds, the call ends, or the deadline; on Ctrl-C hang up.
    async fn pump(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) {
        self.pump_or(deadline, done, None).await;
    }

    /// [`Self::pump`], returning early when `signal` (a media watch) resolves: `Some(true)`
    /// when it fired, `Some(false)` when the media stream stopped first.
    async fn pump_or(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Self) -> bool,
        mut signal: Option<&mut oneshot::Receiver<()>>,
    ) -> Option<bool> {
        // One timer for the whole wait (a timer made per event would be registered anew
        // with the runtime for every event of the call).
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        let mut winding_down = false;
        while (winding_down || !done(self)) && !self.ended() {
            let events = self.events.as_mut()?;
            let mut stop = self.ctx.stop.clone();
            let stopping = self.interrupted;
            let watching = signal.is_some() && !stopping;
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        let (event, ladder) = *event;
                        self.on_event(event, ladder);
                    }
                    None => return None,
                },
                fired = async {
                    match signal.as_mut() {
                        Some(rx) => (&mut **rx).await,
                        None => std::future::pending().await,
                    }
                }, if watching => return Some(fired.is_ok()),
                () = &mut sleep => return None,
                _ = stop.wait_for(|s| *s), if !stopping => {
                    // Ctrl-C: hang up (or cancel) and wait for the end, bounded.
                    self.interrupted = true;
                    winding_down = true;
                    self.command(Command::Hangup);
                    sleep.as_mut().reset((Instant::now() + END_WAIT).into());
                }
            }
        }
        None
    }

    /// A step that only waits for time to pass (`ring`, `wait`, the delay of `hangup`) saw
    /// the call end: a failure, unless the next step is a `wait_for` of exactly that end (a
    /// ring cut short by the caller's CANCEL before `wait_for: cancel`), which then holds at
    /// once. No step is skipped that way; steps with a purpose of their own (`answer`,
    /// `reject`, `cancel`, `play`, `expect`, `dtmf`) fail on any end
    /// ([`Self::unexpected_end`]).
    fn waiting_cut_short(&mut self, step: &Located<Step>) -> bool {
        if !self.interrupted {
            let reason = self.record.as_ref().and_then(|r| r.reason());
            if reason.is_some() && reason == self.awaited_end.as_ref() {
                return true;
            }
        }
        self.unexpected_end(step)
    }

    fn unexpected_end(&mut self, step: &Located<Step>) -> bool {
        if self.interrupted {
            return false;
        }
        let (kind, reason) = self.end_failure();
        self.fail(step, kind, format!("the call ended: {reason}"));
        false
    }

    fn end_failure(&self) -> (FailureKind, String) {
        match self.record.as_ref().and_then(|r| r.reason()) {
            Some(reason) => (kind_of(reason), reason.to_string()),
            None => (FailureKind::Other, "no answer".into()),
        }
    }

    /// Wait until the call is answered (media can flow); false (with a failure) if it ended.
    async fn wait_answer(&mut self, step: &Located<Step>) -> bool {
        let deadline = self.started + self.answer_wait.max(Duration::from_secs(1));
        self.pump(deadline, |c| c.answered).await;
        if self.answered && !self.ended() {
            return true;
        }
        if self.interrupted {
            return false;
        }
        if self.ended() {
            return self.unexpected_end(step);
        }
        let wait = self.answer_wait.as_secs_f64();
        self.fail(
            step,
            FailureKind::Signalling,
            format!("not answered within {wait:.1} s"),
        );
        false
    }

    async fn expect(&mut self, step: &Located<Step>, expectation: &Expectation) -> bool {
        match expectation {
            Expectation::Ringing { within } => {
                let deadline = Instant::now() + *within;
                self.pump(deadline, |c| c.ringing || c.answered).await;
                if self.ringing {
                    true
                } else {
                    let why = if self.ended() {
                        self.end_failure().1
                    } else {
                        format!("nothing within {:.1} s", within.as_secs_f64())
                    };
                    self.fail(
                        step,
                        FailureKind::Signalling,
                        format!("expected 180/183 ringing: {why}"),
                    );
                    false
                }
            }
            Expectation::Answered { within } => {
                let deadline = Instant::now() + *within;
                self.pump(deadline, |c| c.answered).await;
                if self.answered {
                    true
                } else {
                    let (kind, why) = if self.ended() {
                        self.end_failure()
                    } else {
                        (
                            FailureKind::Signalling,
                            format!("nothing within {:.1} s", within.as_secs_f64()),
                        )
                    };
                    self.fail(
                        step,
                        kind,
                        format!("expected the call to be answered: {why}"),
                    );
                    false
                }
            }
            Expectation::Final { code, within } => {
                let deadline = Instant::now() + *within;
                let code = *code;
                self.pump(deadline, |c| c.answered && code < 300).await;
                let got = self
                    .record
                    .as_ref()
                    .and_then(|r| r.final_code)
                    .or(self.answered.then_some(200));
                if got == Some(code) {
                    // An expected rejection is the call's normal end.
                    true
                } else {
                    let got = got.map_or("no final response".to_string(), |c| c.to_string());
                    self.fail(
                        step,
                        FailureKind::Signalling,
                        format!("expected final response {code}, got {got}"),
                    );
                    false
                }
            }
            Expectation::Tone {
                frequencies,
                within,
                min_snr,
                min_duration,
            } => {
                self.audio_checked += 1;
                if !self.wait_answer(step).await {
                    return false;
                }
                let query = match frequencies.as_slice() {
                    [f] => ToneQuery::single(*f),
                    [a, b, ..] => ToneQuery::dual(*a, *b),
                    [] => return true,
                };
                let Ok(query) = query else { return true };
                let query = query.min_snr_db(min_snr.0).min_duration(*min_duration);
                let label = frequencies
                    .iter()
                    .map(|f| format!("{f}"))
                    .collect::<Vec<_>>()
                    .join("+");
                let Some((_, media)) = &self.media else {
                    return false;
                };
                let media = media.clone();
                let Some(Ok((id, from_sample))) = media
                    .with(move |s, _| s.expect_tone(query).map(|id| (id, s.samples_played())))
                    .await
                else {
                    return false;
                };
                let deadline = Instant::now() + *within;
                let mut heard = media.watch(move |s, _| s.detection(id).is_some());
                let fired = self.pump_or(deadline, |_| false, Some(&mut heard)).await;
                if fired == Some(true) {
                    let onset = media
                        .with(move |s, _| s.detection(id).map(|d| d.onset_sample))
                        .await
                        .flatten();
                    if let Some(onset) = onset {
                        self.audio_verified += 1;
                        self.tone_onsets.push(Duration::from_micros(
                            onset.saturating_sub(from_sample) * 125,
                        ));
                        return true;
                    }
                }
                if self.interrupted {
                    return false;
                }
                let (level, behind) = media
                    .with(|s, _| (s.last_level_dbfs(), s.generator_behind()))
                    .await
                    .unwrap_or((None, (0, 0)));
                let level = level.map_or("no audio".to_string(), |l| format!("level {l:.1} dBFS"));
                self.fail(
                    step,
                    FailureKind::ToneMissing,
                    format!(
                        "expected tone {label} Hz not heard within {:.1} s (received {level}){}",
                        within.as_secs_f64(),
                        overload_note(behind)
                    ),
                );
                false
            }
            Expectation::Silence { duration, within } => {
                self.audio_checked += 1;
                if !self.wait_answer(step).await {
                    return false;
                }
                let Some((_, media)) = &self.media else {
                    return false;
                };
                let media = media.clone();
                let deadline = Instant::now() + *within + *duration;
                let duration = *duration;
                let mut silent_since: Option<Instant> = None;
                let mut quiet = media.watch(move |s, now| match s.last_level_dbfs() {
                    Some(l) if l < -50.0 => {
                        let since = *silent_since.get_or_insert(now);
                        now.duration_since(since) >= duration
                    }
                    _ => {
                        silent_since = None;
                        false
                    }
                });
                if self.pump_or(deadline, |_| false, Some(&mut quiet)).await == Some(true) {
                    self.audio_verified += 1;
                    return true;
                }
                if !self.interrupted {
                    self.fail(
                        step,
                        FailureKind::NotSilent,
                        format!("expected {:.1} s of silence", duration.as_secs_f64()),
                    );
                }
                false
            }
            Expectation::Dtmf { digits, within } => {
                self.dtmf_checked += 1;
                if !self.wait_answer(step).await {
                    return false;
                }
                let expected: String = digits.iter().map(|d| d.to_char()).collect();
                let Some((_, media)) = &self.media else {
                    return false;
                };
                let media = media.clone();
                let deadline = Instant::now() + *within;
                let wanted = expected.clone();
                // Rebuild the digit string only when a new event has arrived, not every tick.
                let mut seen = 0;
                let mut all_in = media.watch(move |s, _| {
                    let events = s.dtmf_events();
                    if events == seen {
                        return false;
                    }
                    seen = events;
                    s.dtmf_received().ends_with(&wanted)
                });
                if self.pump_or(deadline, |_| false, Some(&mut all_in)).await == Some(true) {
                    self.dtmf_verified += 1;
                    return true;
                }
                let got = media
                    .with(|s, _| s.dtmf_received())
                    .await
                    .unwrap_or_default();
                if !self.interrupted {
                    self.fail(
                        step,
                        FailureKind::DtmfMissing,
                        format!("expected DTMF '{expected}', received '{got}'"),
                    );
                }
                false
            }
        }
    }

    /// Hang up if still up, stop the media and build the result.
    async fn finish(mut self) -> CallResult {
        if self.id.is_some() && !self.ended() {
            self.command(Command::Hangup);
            self.pump_until_end(END_WAIT).await;
        }
        let mut media_result = None;
        if let Some((negotiated, handle)) = self.media.take() {
            if let Some(finished) = handle.stop().await {
                if let (Some(dir), Some(samples)) = (&self.ctx.record_dir, &finished.recording) {
                    let path = dir.join(recording_name(&self.ctx.role, &self.user, &self.call_id));
                    if let Err(e) = crate::probe::audio::write_recording(&path, samples) {
                        tracing::warn!(path = %path.display(), error = %e, "recording not written");
                    }
                }
                let r = finished.report;
                // An answered call whose far end may send but never did, or whose media
                // stopped for seconds, fails even when no step listened: a silent call is
                // not a passing call.
                let up = self
                    .record
                    .as_ref()
                    .and_then(|rec| rec.duration())
                    .unwrap_or_default();
                let far_end_sends = negotiated.direction.receives();
                if self.answered && far_end_sends && up >= Duration::from_secs(1) {
                    let gap = r.max_gap;
                    if r.receive.received == 0 {
                        self.failures.push(Failure {
                            step: "call",
                            line: 0,
                            col: 0,
                            kind: FailureKind::NoMedia,
                            message: format!(
                                "no RTP received from the far end{}",
                                crate::probe::audio::stray_note(&r.stray)
                            ),
                        });
                    } else if gap > RTP_TIMEOUT {
                        self.failures.push(Failure {
                            step: "call",
                            line: 0,
                            col: 0,
                            kind: FailureKind::NoMedia,
                            message: format!(
                                "RTP timeout: no media for {:.1} s",
                                gap.as_secs_f64()
                            ),
                        });
                    }
                }
                media_result = Some(CallMedia {
                    packets_sent: r.packets_sent,
                    packets_received: r.receive.received,
                    packets_expected: r.receive.expected,
                    packets_lost: r.receive.lost().max(0) as u64,
                    jitter_ms: r.receive.jitter_ms,
                    pacing_lateness_us: r.lateness_us,
                    frames_skipped: r.frames_skipped,
                    stray_packets: r.stray.packets(),
                    discontinuities: r.receive.discontinuities(),
                });
            }
        }
        let record = self.record.take();
        // A call that ended abnormally fails, unless a step expected exactly that.
        if let Some(reason) = record.as_ref().and_then(|r| r.reason()) {
            let expected_end = matches!(
                reason,
                CallEndReason::LocalBye
                    | CallEndReason::RemoteBye
                    | CallEndReason::Declined { .. }
                    | CallEndReason::Cancelled
                    | CallEndReason::CancelledByRemote
                    | CallEndReason::Rejected { .. }
            );
            if !expected_end && self.failures.is_empty() {
                self.failures.push(Failure {
                    step: "call",
                    line: 0,
                    col: 0,
                    kind: kind_of(reason),
                    message: reason.to_string(),
                });
            }
        }
        // A BYE answered with an error or never answered: the call did not end cleanly,
        // whatever the steps expected (the far end may still hold it).
        if let Some(failure) = record.as_ref().and_then(CallRecord::bye_failure) {
            let (step, line, col) = self.bye_step.unwrap_or(("call", 0, 0));
            self.failures.push(Failure {
                step,
                line,
                col,
                kind: FailureKind::ByeFailed(failure.short()),
                message: failure.to_string(),
            });
        }
        if self.interrupted && self.failures.is_empty() {
            self.failures.push(Failure {
                step: "run",
                line: 0,
                col: 0,
                kind: FailureKind::Interrupted,
                message: "interrupted before the call finished".into(),
            });
        }
        let from = |at: Option<Instant>| -> Option<Duration> {
            at.map(|t| t.saturating_duration_since(self.origin()))
        };
        let r = record.as_ref();
        CallResult {
            role: self.ctx.role.clone(),
            side: self.side,
            user: self.user.clone(),
            call_id: self.call_id.clone(),
            scheduled: self.scheduled,
            start_lag: self.start_lag,
            invite_to_first_provisional: r.and_then(|r| from(r.first_provisional)),
            invite_to_ringing: r.and_then(|r| from(r.first_ringing)),
            invite_to_200: r.and_then(|r| from(r.answer)),
            bye_rtt: r.and_then(|r| r.bye_round_trip()),
            duration: r.and_then(|r| r.duration()),
            tone_onsets: self.tone_onsets.clone(),
            audio_checked: self.audio_checked,
            audio_verified: self.audio_verified,
            dtmf_checked: self.dtmf_checked,
            dtmf_verified: self.dtmf_verified,
            media: media_result,
            final_code: r.and_then(|r| r.final_code),
            bye_code: r.and_then(|r| r.bye_code),
            end_reason: r
                .and_then(|r| r.reason())
                .map_or_else(|| "not started".to_string(), |x| x.to_string()),
            ladder: if self.failures.is_empty() {
                Vec::new()
            } else {
                self.ladder.rungs()
            },
            failures: std::mem::take(&mut self.failures),
            steps: std::mem::take(&mut self.steps_run),
        }
    }

    /// Where latencies count from: the scheduled start for callers (no coordinated omission),
    /// the INVITE's arrival for callees.
    fn origin(&self) -> Instant {
        match self.scheduled {
            Some(_) => self.started - self.start_lag,
            None => self.record.as_ref().map_or(self.started, |r| r.invite),
        }
    }
}

/// The failure family of a call's end.
fn kind_of(reason: &CallEndReason) -> FailureKind {
    match reason {
        CallEndReason::Rejected { code, .. } => FailureKind::SipCode(*code),
        CallEndReason::Declined { code } => FailureKind::SipCode(*code),
        CallEndReason::Timeout { timer, .. } => FailureKind::Timer(timer.to_string()),
        CallEndReason::AuthRejected { .. }
        | CallEndReason::NoCredentials { .. }
        | CallEndReason::AuthFailed { .. } => FailureKind::AuthRejected,
        CallEndReason::CodecRefused | CallEndReason::MediaFailed(_) => FailureKind::CodecRefused,
        CallEndReason::NoAck { .. } => FailureKind::Timer("Timer H".into()),
        CallEndReason::TransportError => FailureKind::Transport,
        CallEndReason::Cancelled | CallEndReason::CancelledByRemote => FailureKind::Signalling,
        CallEndReason::CancelFailed {
            cancel_code: Some(code),
            ..
        } if !(200..300).contains(code) => FailureKind::CancelFailed(code.to_string()),
        CallEndReason::CancelFailed { .. } => FailureKind::CancelFailed("no_487".into()),
        CallEndReason::DialogLost { code } => FailureKind::SipCode(*code),
        _ => FailureKind::Other,
    }
}

/// `2001` → `sip:2001@domain`; `sip:` added when missing.
fn normalize_uri(to: &str, domain: &str) -> Option<String> {
    let to = to.trim();
    if to.is_empty() {
        return None;
    }
    let with_scheme = if to.starts_with("sip:") || to.starts_with("sips:") {
        to.to_string()
    } else {
        format!("sip:{to}")
    };
    let rest = with_scheme
        .split_once(':')
        .map(|(_, r)| r)
        .unwrap_or_default();
    if rest.contains('@') || rest.contains('.') || rest.contains('[') {
        Some(with_scheme)
    } else {
        Some(format!("{with_scheme}@{domain}"))
    }
}

/// The address of a SIP URI's host (port 5060 by default).
async fn resolve_uri_host(uri: &str) -> Option<SocketAddr> {
    let target = sipcheck_core::sip::uri::SipTarget::parse(uri).ok()?;
    crate::transport::resolve(&target.host_port(5060), 5060)
        .await
        .ok()
}

/// The file a call's received audio is written to in `media.record`: its role, user and
/// Call-ID, with anything but letters, digits, `-`, `_` and `.` (a path separator, a control
/// character a peer put in its Call-ID) written as `_`.
fn recording_name(role: &str, user: &str, call_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .take(80)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}-{}.wav", clean(role), clean(user), clean(call_id))
}
