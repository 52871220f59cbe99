//! A scenario role on the wire: the driver of its core [`Agent`].
//!
//! The agent (the role's endpoint, the scripts of its calls, its registrations) decides
//! everything; this driver owns its transport, its calls' media streams and the wall clock.
//! It hands the agent what arrives (messages, ICMP errors, lost connections, media events,
//! resolved names, the executor's commands, Ctrl-C), sends what it asks, carries out its media
//! commands and passes its results and registration events on to the run's reporters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::intent::MediaEvent;
use sipcheck_core::media::session::MediaSession;
use sipcheck_core::media::tone::Playlist;
use sipcheck_core::scenario::model::Account;
use sipcheck_core::stats::outcome::{CallResult, RegisterResult, Side};
use sipcheck_core::ua::agent::{Agent, CallKey, MediaCommand, Schedule};
use sipcheck_core::ua::registration::RegistrationEvent;
use sipcheck_core::ua::renewal::Why;
use sipcheck_core::ua::script::media_config;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::drive::media::{EventSink, Finished, MediaHandle, PortRange};
use crate::drive::transport::{Incoming, SipSocket, TransportError};
use crate::drive::wire::Wire;

/// What a run reports while it runs (its roles' calls and registrations, the executor's
/// starts).
#[derive(Debug)]
pub enum RunEvent {
    /// A caller started a call.
    CallStarted {
        /// The role.
        role: String,
    },
    /// A call (one side of it) finished; its figures, once.
    CallFinished(Box<CallResult>),
    /// A registration (or unregistration) finished.
    Registered(RegisterResult),
    /// A call due by the plan was not started: the concurrency cap was reached.
    NotStarted,
}

/// What the executor asks of a role.
pub(crate) enum RoleCommand {
    /// Start a call of `account` (to `peer`, its `{peer}`), due as `schedule` says.
    Start {
        account: Account,
        peer: Option<Account>,
        schedule: Schedule,
    },
    /// The load is over: callees still waiting for a BYE or CANCEL give up a little later;
    /// every registration is removed, and the reply comes once all are.
    LoadDone(oneshot::Sender<()>),
    /// No new calls (incoming ones are refused); the task ends once the calls under way
    /// and the registrations have.
    Shutdown,
}

/// The callers' calls under way, over every role (the executor's concurrency).
#[derive(Default)]
pub(crate) struct Callers {
    live: AtomicUsize,
    ended: Notify,
}

impl Callers {
    /// One more call started.
    pub(crate) fn started(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// How many are under way.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Wait for a call to end (or a spurious wake-up: check [`Callers::live`]).
    pub(crate) async fn ended(&self) {
        self.ended.notified().await;
    }

    /// A call whose role could not take it (its task is gone): it will not end by itself.
    pub(crate) fn ended_one_unstarted(&self) {
        self.ended_one();
    }

    fn ended_one(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
}

/// What a role's media streams need.
pub(crate) struct MediaSetup {
    pub(crate) ports: Arc<PortRange>,
    pub(crate) jitter_frames: usize,
    /// `media.record`: where each call's received audio is written, as WAV.
    pub(crate) record_dir: Option<PathBuf>,
}

/// Replies about a role's calls, from the tasks that carry out its slow work.
type Pipe<T> = (
    mpsc::UnboundedSender<(CallKey, T)>,
    mpsc::UnboundedReceiver<(CallKey, T)>,
);

/// What woke a role's task.
enum Wake {
    Incoming(Result<Incoming, TransportError>),
    Timer,
    Command(Option<RoleCommand>),
    Media(CallKey, MediaEvent),
    Stopped(CallKey, Option<Box<Finished>>),
    Resolved(CallKey, Option<SocketAddr>),
    Stop(bool),
}

/// A role's driver.
pub(crate) struct Role {
    name: String,
    wire: Wire,
    agent: Agent<SocketAddr>,
    media: MediaSetup,
    ids: IdGen,
    commands: mpsc::UnboundedReceiver<RoleCommand>,
    events: mpsc::UnboundedSender<RunEvent>,
    stop: watch::Receiver<bool>,
    callers: Arc<Callers>,
    /// Told once the first registrations have their outcome.
    registered: Option<oneshot::Sender<()>>,
    /// Told once every registration is removed.
    unregistered: Option<oneshot::Sender<()>>,
    streams: HashMap<CallKey, MediaHandle>,
    media_events: Pipe<MediaEvent>,
    /// Streams being stopped for their report: the call's user and Call-ID (a recording's
    /// name), and where the report comes back.
    stopping: HashMap<CallKey, (String, String)>,
    stopped: Pipe<Option<Box<Finished>>>,
    resolved: Pipe<Option<SocketAddr>>,
}

impl Role {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        transport: SipSocket,
        agent: Agent<SocketAddr>,
        media: MediaSetup,
        seed: u64,
        commands: mpsc::UnboundedReceiver<RoleCommand>,
        events: mpsc::UnboundedSender<RunEvent>,
        stop: watch::Receiver<bool>,
        callers: Arc<Callers>,
        registered: oneshot::Sender<()>,
    ) -> Self {
        Self {
            name,
            wire: Wire::new(transport, None),
            agent,
            media,
            ids: IdGen::new(seed),
            commands,
            events,
            stop,
            callers,
            registered: Some(registered),
            unregistered: None,
            streams: HashMap::new(),
            media_events: mpsc::unbounded_channel(),
            stopping: HashMap::new(),
            stopped: mpsc::unbounded_channel(),
            resolved: mpsc::unbounded_channel(),
        }
    }

    /// Run until shut down with every call and registration ended.
    pub(crate) async fn run(mut self) {
        let far = || Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600);
        let timer = tokio::time::sleep_until(far().into());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let mut stop_fed = false;
        let mut commands_open = true;
        let mut transport_open = true;
        let mut shut = false;
        // Ctrl-C before the task started.
        if *self.stop.borrow() {
            stop_fed = true;
            self.agent.stop(Instant::now());
        }
        loop {
            self.service().await;
            if self.registered.is_some() && !self.agent.registering() {
                let _ = self.registered.take().map(|tx| tx.send(()));
            }
            if self.unregistered.is_some() && self.agent.unregistered() {
                let _ = self.unregistered.take().map(|tx| tx.send(()));
            }
            if (shut || !commands_open) && self.agent.is_finished() && self.stopping.is_empty() {
                return;
            }
            let deadline = self.agent.poll_timeout();
            if deadline != armed {
                armed = deadline;
                timer.as_mut().reset(deadline.unwrap_or_else(far).into());
            }
            let wake = tokio::select! {
                incoming = self.wire.socket.recv(), if transport_open => Wake::Incoming(incoming),
                () = &mut timer, if deadline.is_some() => Wake::Timer,
                command = self.commands.recv(), if commands_open => Wake::Command(command),
                Some((key, event)) = self.media_events.1.recv() => Wake::Media(key, event),
                Some((key, finished)) = self.stopped.1.recv() => Wake::Stopped(key, finished),
                Some((key, to)) = self.resolved.1.recv() => Wake::Resolved(key, to),
                stopped = self.stop.wait_for(|s| *s), if !stop_fed => Wake::Stop(stopped.is_ok()),
            };
            let now = Instant::now();
            match wake {
                Wake::Incoming(Ok(incoming)) => self.wire.deliver(&mut self.agent, incoming),
                Wake::Incoming(Err(e)) => {
                    if !self.transport_error(&e) {
                        tracing::error!(role = %self.name, error = %e, "transport failed");
                        transport_open = false;
                        self.agent.transport_gone(now, &e.to_string());
                    }
                }
                Wake::Timer => {
                    armed = None;
                    self.agent.handle_timeout(now);
                }
                Wake::Command(Some(command)) => shut |= self.command(command),
                Wake::Command(None) => {
                    commands_open = false;
                    self.agent.shutdown(now);
                }
                Wake::Media(key, event) => self.agent.handle_media_event(now, key, event),
                Wake::Stopped(key, finished) => self.media_stopped(key, finished),
                Wake::Resolved(key, to) => self.agent.handle_resolved(now, key, to),
                Wake::Stop(stopped) => {
                    stop_fed = true;
                    if stopped {
                        self.agent.stop(now);
                    }
                }
            }
        }
    }

    /// Carry out a command; whether it shut the role down.
    fn command(&mut self, command: RoleCommand) -> bool {
        let now = Instant::now();
        match command {
            RoleCommand::Start {
                account,
                peer,
                schedule,
            } => {
                if self
                    .agent
                    .start_call(now, account, peer, schedule)
                    .is_none()
                {
                    // Shut down already: no call, no result.
                    self.callers.ended_one();
                }
                false
            }
            RoleCommand::LoadDone(unregistered) => {
                self.agent.load_done(now);
                self.agent.unregister(now);
                self.unregistered = Some(unregistered);
                false
            }
            RoleCommand::Shutdown => {
                self.agent.shutdown(now);
                true
            }
        }
    }

    /// An error of one TCP connection (or ICMP): handled, the transport goes on. `false`
    /// for an error of the transport itself.
    fn transport_error(&mut self, e: &TransportError) -> bool {
        let now = Instant::now();
        if let Some(peer) = e.flow() {
            let ua = match &mut self.wire.socket {
                SipSocket::TcpPool(pool) => pool.take_lost_ua(),
                _ => None,
            };
            tracing::info!(%peer, ua = ua.as_deref().unwrap_or("*"), error = %e, "TCP connection lost");
            self.agent
                .requests_failed(now, &peer, ua.as_deref(), &e.to_string());
            // A connection that could not be opened was no flow: nothing to renew
            // (renewing would only fail the same way, at once, again).
            if !matches!(e, TransportError::Connect { .. }) {
                self.agent.flow_lost(now, &peer, ua.as_deref());
            }
            return true;
        }
        if let TransportError::Unreachable { addr, .. } = e {
            self.agent.transport_failed(now, addr);
            self.agent.requests_failed(now, addr, None, &e.to_string());
            return true;
        }
        false
    }

    /// Everything the agent has to do now: send, open and drive media, resolve, report.
    async fn service(&mut self) {
        loop {
            let mut busy = false;
            loop {
                match self.wire.send(&mut self.agent).await {
                    Ok(sent) => {
                        busy |= sent;
                        break;
                    }
                    Err(failed) => {
                        busy = true;
                        self.transport_error(&failed.error);
                    }
                }
            }
            while let Some((key, command)) = self.agent.poll_media() {
                busy = true;
                self.media_command(key, command);
            }
            while let Some((key, target)) = self.agent.poll_resolve() {
                let resolved = self.resolved.0.clone();
                tokio::spawn(async move {
                    let to = resolve_uri_host(&target).await;
                    let _ = resolved.send((key, to));
                });
            }
            while let Some(result) = self.agent.poll_result() {
                if result.side == Side::Caller {
                    self.callers.ended_one();
                }
                let _ = self.events.send(RunEvent::CallFinished(Box::new(result)));
            }
            while let Some((user, event)) = self.agent.poll_registration() {
                self.registration(user, &event);
            }
            // Requests of our own are all registrations, whose events the agent took.
            while self.agent.poll_request_event().is_some() {}
            if !busy {
                return;
            }
        }
    }

    fn media_command(&mut self, key: CallKey, command: MediaCommand) {
        let now = Instant::now();
        match command {
            MediaCommand::Open => {
                let ip = self.wire.socket.local_addr().ip();
                let opened = self.media.ports.bind_std(ip).map(|socket| {
                    let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
                    let handle = MediaHandle::listen_std(socket);
                    handle.set_events(EventSink::tagged(self.media_events.0.clone(), key));
                    self.streams.insert(key, handle);
                    port
                });
                self.agent
                    .handle_media_opened(now, key, opened.map_err(|e| e.to_string()));
            }
            MediaCommand::Start(negotiated) => {
                if let Some(handle) = self.streams.get(&key) {
                    let config = media_config(
                        &negotiated,
                        self.media.jitter_frames,
                        self.media.record_dir.is_some(),
                    );
                    match MediaSession::new(now, config, Playlist::new(Vec::new()), &mut self.ids) {
                        Ok(session) => handle.start(session, negotiated.remote_rtp),
                        Err(e) => tracing::warn!(error = %e, "media session not started"),
                    }
                }
            }
            MediaCommand::Intent(intent) => {
                if let Some(handle) = self.streams.get(&key) {
                    handle.apply(intent);
                }
            }
            MediaCommand::Stop { report } => {
                let handle = self.streams.remove(&key);
                match (handle, report) {
                    (Some(handle), true) => {
                        let label = self
                            .agent
                            .call_label(key)
                            .map(|(user, id)| (user.to_owned(), id.to_owned()))
                            .unwrap_or_default();
                        self.stopping.insert(key, label);
                        let stopped = self.stopped.0.clone();
                        tokio::spawn(async move {
                            let finished = handle.stop().await.map(Box::new);
                            let _ = stopped.send((key, finished));
                        });
                    }
                    (None, true) => self.agent.handle_media_stopped(now, key, None),
                    (_, false) => {}
                }
            }
        }
    }

    /// A stream stopped for its report: its recording written, the report to its call.
    fn media_stopped(&mut self, key: CallKey, finished: Option<Box<Finished>>) {
        let (user, call_id) = self.stopping.remove(&key).unwrap_or_default();
        let Some(finished) = finished else {
            self.agent.handle_media_stopped(Instant::now(), key, None);
            return;
        };
        if let (Some(dir), Some(samples)) = (&self.media.record_dir, &finished.recording) {
            let path = dir.join(recording_name(&self.name, &user, &call_id));
            if let Err(e) = crate::drive::media::write_recording(&path, samples) {
                tracing::warn!(path = %path.display(), error = %e, "recording not written");
            }
        }
        self.agent
            .handle_media_stopped(Instant::now(), key, Some(finished.report));
    }

    /// The registration events a run reports: the first registration, one made anew, every
    /// failure, the unregistration (a periodic refresh that worked is not reported).
    fn registration(&self, user: String, event: &RegistrationEvent) {
        let (rtt, unregister) = match event {
            RegistrationEvent::Registered { rtt, .. } => (Some(*rtt), false),
            RegistrationEvent::Renewed { why, rtt, .. } if *why != Why::Refresh => {
                (Some(*rtt), false)
            }
            RegistrationEvent::Renewed { .. } => return,
            RegistrationEvent::Failed { .. } | RegistrationEvent::RenewalFailed { .. } => {
                (None, false)
            }
            RegistrationEvent::Unregistered { rtt, .. } => (Some(*rtt), true),
            RegistrationEvent::UnregisterFailed { .. } => (None, true),
        };
        let _ = self.events.send(RunEvent::Registered(RegisterResult {
            role: self.name.clone(),
            user,
            rtt,
            unregister,
            error: event.error_message(),
        }));
    }
}

/// The address of a SIP URI's host (port 5060 by default).
async fn resolve_uri_host(uri: &str) -> Option<SocketAddr> {
    let target = sipcheck_core::sip::uri::SipTarget::parse(uri).ok()?;
    crate::drive::transport::resolve(&target.host_port(5060), 5060)
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

#[cfg(test)]
mod tests {
    use super::recording_name;

    #[test]
    fn a_recordings_name_keeps_no_path_separator_or_control_character() {
        assert_eq!(
            recording_name("callee", "2001", "../../etc/x\r\ny@h"),
            "callee-2001-.._.._etc_x__y_h.wav"
        );
    }
}
