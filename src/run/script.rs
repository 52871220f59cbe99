//! One call of one user agent: the driver of its [`CallScript`].
//!
//! The script (the core's `ua::script`) decides everything about the call's steps and its
//! outcome; this driver owns the call's channel to its role's agent and its media stream,
//! feeds the script what happens (call events, media events, time, Ctrl-C, the end of the
//! load) and carries out its commands: SIP intents as [`Command`]s to the agent, media
//! intents applied to the call's [`MediaHandle`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::g711;
use sipcheck_core::media::intent::{MediaEvent, MediaIntent};
use sipcheck_core::media::session::MediaSession;
use sipcheck_core::media::tone::Playlist;
use sipcheck_core::scenario::model::{Account, Located, Step};
use sipcheck_core::sdp::{self, LocalMedia, Negotiated};
use sipcheck_core::sip::auth::Credentials;
use sipcheck_core::stats::ladder::RawLadder;
use sipcheck_core::stats::outcome::{CallResult, Side};
use sipcheck_core::ua::call::{CallEvent, CallId, OfferPlacement, OutgoingCall};
use sipcheck_core::ua::register::LocalEnd;
use sipcheck_core::ua::script::{
    media_config, CallScript, CommandError, Placed, ScriptCommand, ScriptConfig,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::agent::{CallEvents, Command};
use crate::media::{MediaHandle, PortRange};

pub(crate) use sipcheck_core::ua::script::is_call_step;

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
    /// waiting for the caller's BYE or CANCEL gives up a little later.
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

/// The port of a description without RTP (RFC 863 discard; nothing is sent to it).
const DISCARD_PORT: u16 = 9;

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
    let cfg = ScriptConfig {
        role: ctx.role.clone(),
        side: Side::Caller,
        user: account.user.clone(),
        account_domain: account.domain.clone(),
        peer_user: peer.map(|p| p.user).unwrap_or_default(),
        domain: ctx.domain.clone(),
        rtp: ctx.rtp,
        wavs: ctx.wavs.clone(),
        scheduled: Some(scheduled),
        start_lag: started.saturating_duration_since(run_start + scheduled),
    };
    let script = CallScript::caller(started, cfg, steps);
    Driver::new(ctx, Some(account), seed).run(script).await
}

/// A callee's call: an incoming call for `account`, `steps` from its first call-level step.
pub(crate) async fn run_callee(
    ctx: Arc<RoleContext>,
    account: Account,
    incoming: super::agent::IncomingCall,
    steps: Arc<Vec<Located<Step>>>,
    seed: u64,
) -> CallResult {
    let cfg = ScriptConfig {
        role: ctx.role.clone(),
        side: Side::Callee,
        user: account.user.clone(),
        account_domain: account.domain.clone(),
        peer_user: String::new(),
        domain: ctx.domain.clone(),
        rtp: ctx.rtp,
        wavs: ctx.wavs.clone(),
        scheduled: None,
        start_lag: Duration::ZERO,
    };
    let script = CallScript::callee(Instant::now(), cfg, steps, incoming.call_id);
    let mut driver = Driver::new(ctx, None, seed);
    driver.id = Some(incoming.call);
    driver.events = Some(incoming.events);
    driver.run(script).await
}

/// The I/O of one call: its agent, its media stream, its clock.
struct Driver {
    ctx: Arc<RoleContext>,
    /// The caller's account (its credentials).
    account: Option<Account>,
    ids: IdGen,
    id: Option<CallId>,
    events: Option<CallEvents>,
    /// The call's RTP stream: listening from the moment it is offered or answered (RFC 3264
    /// §5.1), running once the script starts its session.
    rtp: Option<MediaHandle>,
    /// What the stream reports.
    media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    /// The call's SIP ladder, with its end.
    ladder: RawLadder,
    /// Ctrl-C was told to the script.
    stop_fed: bool,
}

impl Driver {
    fn new(ctx: Arc<RoleContext>, account: Option<Account>, seed: u64) -> Self {
        Self {
            ctx,
            account,
            ids: IdGen::new(seed),
            id: None,
            events: None,
            rtp: None,
            media_events: None,
            ladder: RawLadder::default(),
            stop_fed: false,
        }
    }

    async fn run(mut self, mut script: CallScript) -> CallResult {
        let mut stop = self.ctx.stop.clone();
        let mut load_done = self.ctx.load_done.clone();
        let mut load_fed = false;
        // Ctrl-C before the first step: none runs.
        self.feed_stop(&mut script);
        script.start(Instant::now());
        // One timer for the whole call, moved to each new deadline (a timer made per event
        // would be registered anew with the runtime for every event of the call).
        let far = || tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            self.execute(&mut script).await;
            if script.is_done() {
                break;
            }
            let deadline = script.poll_timeout();
            if deadline != armed {
                armed = deadline;
                sleep
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
            }
            tokio::select! {
                event = recv(&mut self.events) => match event {
                    Some(event) => {
                        let (event, ladder) = *event;
                        if matches!(event, CallEvent::Ended { .. }) {
                            self.ladder = ladder;
                        }
                        script.handle_call_event(Instant::now(), event);
                    }
                    None => {
                        self.events = None;
                        script.events_closed(Instant::now());
                    }
                },
                event = recv(&mut self.media_events) => match event {
                    Some(event) => script.handle_media_event(Instant::now(), event),
                    None => self.media_events = None,
                },
                () = &mut sleep, if deadline.is_some() => {
                    armed = None;
                    script.handle_timeout(Instant::now());
                }
                stopped = stop.wait_for(|s| *s), if !self.stop_fed => {
                    self.stop_fed = true;
                    if stopped.is_ok() {
                        script.stop(Instant::now());
                    }
                }
                _ = load_done.wait_for(|done| *done), if !load_fed => {
                    // A load whose sender is gone is over too.
                    load_fed = true;
                    script.load_done(Instant::now());
                }
            }
        }
        self.finish(script).await
    }

    /// Tell the script of a Ctrl-C that came meanwhile (while a reply was awaited, the next
    /// step must not start).
    fn feed_stop(&mut self, script: &mut CallScript) {
        if !self.stop_fed && *self.ctx.stop.borrow() {
            self.stop_fed = true;
            script.stop(Instant::now());
        }
    }

    /// Carry out the script's commands, feeding it the replies of those that have one.
    async fn execute(&mut self, script: &mut CallScript) {
        while let Some(command) = script.poll_command() {
            match command {
                ScriptCommand::Invite { target } => {
                    let placed = self.invite(target).await;
                    self.feed_stop(script);
                    script.handle_placed(Instant::now(), placed);
                }
                ScriptCommand::Ring => self.command(Command::Ring),
                ScriptCommand::Accept => {
                    let accepted = self.accept().await;
                    self.feed_stop(script);
                    script.handle_accepted(Instant::now(), accepted);
                }
                ScriptCommand::Reject(code) => self.command(|id| Command::Reject(id, code)),
                ScriptCommand::Hangup => self.command(Command::Hangup),
                ScriptCommand::Cancel => self.command(Command::Cancel),
                ScriptCommand::Reinvite(media) => {
                    let sent = self.reinvite(media).await;
                    self.feed_stop(script);
                    script.handle_reinvite_sent(Instant::now(), sent);
                }
                ScriptCommand::Media(MediaIntent::Start(negotiated)) => {
                    self.start_media(&negotiated);
                }
                ScriptCommand::Media(intent) => {
                    if let Some(handle) = &self.rtp {
                        handle.apply(intent);
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

    async fn invite(&mut self, target: String) -> Result<Placed, CommandError> {
        let known = || {
            let kept = self.ctx.destinations.lock().ok()?;
            kept.get(&target).copied()
        };
        let destination = match self.ctx.next_hop.or_else(known) {
            Some(hop) => hop,
            None => {
                let addr = resolve_uri_host(&target)
                    .await
                    .ok_or(CommandError::Unresolved)?;
                if let Ok(mut kept) = self.ctx.destinations.lock() {
                    if kept.len() < DESTINATIONS_KEPT {
                        kept.insert(target.clone(), addr);
                    }
                }
                addr
            }
        };
        let media = self.open_media()?;
        let account = self.account.as_ref().ok_or(CommandError::TransportGone)?;
        let outgoing = OutgoingCall {
            request_uri: target.clone(),
            from_uri: format!("sip:{}@{}", account.user, account.domain),
            to_uri: target,
            destination,
            credentials: Some(Credentials::new(
                account.user.clone(),
                account.password.clone(),
            )),
            local_media: media.clone(),
            local: self.ctx.local.clone(),
            offer: OfferPlacement::InInvite,
            extra_headers: Vec::new(),
        };
        let (tx, rx) = oneshot::channel();
        self.ctx
            .commands
            .send(Command::Invite(Box::new(outgoing), tx))
            .map_err(|_| CommandError::TransportGone)?;
        match rx.await {
            Ok(Ok((id, call_id, events))) => {
                self.id = Some(id);
                self.events = Some(events);
                Ok(Placed {
                    call_id,
                    local: media,
                })
            }
            Ok(Err(e)) => Err(CommandError::Refused(e)),
            Err(_) => Err(CommandError::TransportGone),
        }
    }

    /// Our side of the offer or answer: an RTP socket, read from now on, and its port; or,
    /// without RTP, `a=inactive` on the discard port (RFC 3264 §5.1, §6.1).
    fn open_media(&mut self) -> Result<LocalMedia, CommandError> {
        if !self.ctx.rtp {
            let mut media = self.local_media(DISCARD_PORT);
            media.direction = sdp::Direction::Inactive;
            return Ok(media);
        }
        let rtp = self
            .ctx
            .ports
            .bind_std(self.ctx.local.addr.ip())
            .map_err(|e| CommandError::NoRtpSocket(e.to_string()))?;
        let port = rtp.local_addr().map(|a| a.port()).unwrap_or_default();
        let handle = MediaHandle::listen_std(rtp);
        let (tx, rx) = mpsc::unbounded_channel();
        handle.set_events(crate::media::EventSink::channel(tx));
        self.rtp = Some(handle);
        self.media_events = Some(rx);
        Ok(self.local_media(port))
    }

    fn local_media(&mut self, port: u16) -> LocalMedia {
        let mut media = LocalMedia::new(self.ctx.local.addr.ip(), port, self.ids.next_u64() >> 1);
        media.codecs = self.ctx.codecs.clone();
        media.ptime_ms = self.ctx.ptime_ms;
        media
    }

    async fn accept(&mut self) -> Result<(LocalMedia, Option<Negotiated>), CommandError> {
        let media = self.open_media()?;
        let id = self.id.ok_or(CommandError::TransportGone)?;
        let (tx, rx) = oneshot::channel();
        let _ = self
            .ctx
            .commands
            .send(Command::Accept(id, Box::new(media.clone()), tx));
        match rx.await {
            Ok(Ok(negotiated)) => Ok((media, negotiated)),
            Ok(Err(e)) => Err(CommandError::Refused(e)),
            Err(_) => Err(CommandError::TransportGone),
        }
    }

    async fn reinvite(&mut self, media: Box<LocalMedia>) -> Result<(), CommandError> {
        let id = self.id.ok_or(CommandError::TransportGone)?;
        let (tx, rx) = oneshot::channel();
        self.ctx
            .commands
            .send(Command::Reinvite(id, media, tx))
            .map_err(|_| CommandError::TransportGone)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CommandError::Refused(e)),
            Err(_) => Err(CommandError::TransportGone),
        }
    }

    fn start_media(&mut self, negotiated: &Negotiated) {
        let Some(handle) = &self.rtp else {
            return;
        };
        let config = media_config(
            negotiated,
            self.ctx.jitter_frames,
            self.ctx.record_dir.is_some(),
        );
        let session = MediaSession::new(
            Instant::now(),
            config,
            Playlist::new(Vec::new()),
            &mut self.ids,
        )
        .expect("valid media parameters");
        handle.start(session, negotiated.remote_rtp);
    }

    /// Stop the media, write its recording, and take the script's result.
    async fn finish(mut self, script: CallScript) -> CallResult {
        let handle = self.rtp.take();
        let finished = match (&handle, script.has_media()) {
            (Some(handle), true) => handle.stop().await,
            _ => None,
        };
        drop(handle);
        let result = script.finish(finished.as_ref().map(|f| &f.report), &self.ladder);
        if let (Some(dir), Some(samples)) = (
            &self.ctx.record_dir,
            finished.as_ref().and_then(|f| f.recording.as_ref()),
        ) {
            let path = dir.join(recording_name(
                &self.ctx.role,
                &result.user,
                &result.call_id,
            ));
            if let Err(e) = crate::probe::audio::write_recording(&path, samples) {
                tracing::warn!(path = %path.display(), error = %e, "recording not written");
            }
        }
        result
    }
}

/// The next message of an optional channel; never, without one.
async fn recv<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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
