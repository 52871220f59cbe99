//! A scenario role on the wire: its core [`Agent`] on the driver loop (`drive::agent`).
//!
//! The agent (the role's endpoint, the scripts of its calls, its registrations) decides
//! everything; the loop owns its transport, its calls' media streams and the wall clock. A
//! role adds what is its own: its calls' RTP sockets from the scenario's port range and their
//! recordings in `media.record`; the executor's commands and Ctrl-C handed to the agent; its
//! results and registration events passed on to the run's reporters; a lost connection or an
//! ICMP error that fails only what went its way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sipcheck_core::ids::IdGen;
use sipcheck_core::media::session::{MediaReport, MediaSession};
use sipcheck_core::media::tone::Playlist;
use sipcheck_core::scenario::model::Account;
use sipcheck_core::sdp::Negotiated;
use sipcheck_core::stats::outcome::{CallResult, RegisterResult, Side};
use sipcheck_core::ua::agent::{Agent, CallKey, Schedule};
use sipcheck_core::ua::registration::RegistrationEvent;
use sipcheck_core::ua::renewal::Why;
use sipcheck_core::ua::script::media_config;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::drive::agent::{Control, Driver, Media};
use crate::drive::media::{Finished, MediaHandle, PortRange};
use crate::drive::transport::{SipSocket, TransportError};
use crate::drive::wire::{SendFailed, Wire};

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
    /// Where the recordings of `record: true` steps go, and whose.
    pub(crate) step_records: Option<StepRecords>,
}

/// Where the recordings of `record: true` steps go (`--record-dir`), and whose
/// (`--record-calls`).
#[derive(Debug, Clone)]
pub struct StepRecords {
    /// The directory.
    pub dir: PathBuf,
    /// Every call's (`all`), or only the failed calls' (`failed`).
    pub all: bool,
}

/// The most of the executor's commands already sent that one turn of the loop carries out.
/// The executor sends every call start already due at once (several each time it wakes at
/// high rates): a turn each would cost a select over every source of the loop and a pass over
/// the agent's output per call.
const COMMANDS_PER_TURN: usize = 32;

/// What woke a role's task, of its own.
enum RoleWake {
    /// Commands arrived (in [`RoleControl::ready`]), or none (0): the executor is gone.
    Commands(usize),
    Stop(bool),
}

/// A role's driver.
pub(crate) struct Role {
    driver: Driver<RoleMedia>,
    control: RoleControl,
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
        let media = RoleMedia {
            role: name.clone(),
            setup: media,
            ids: IdGen::new(seed),
            stopping: HashMap::new(),
            pending: HashMap::new(),
        };
        Self {
            driver: Driver::new(Wire::new(transport, None), agent, media),
            control: RoleControl {
                name,
                commands,
                events,
                stop,
                callers,
                ready: Vec::new(),
                registered: Some(registered),
                unregistered: None,
                stop_fed: false,
                commands_open: true,
                shut: false,
            },
        }
    }

    /// Run until shut down with every call and registration ended.
    pub(crate) async fn run(mut self) {
        // Ctrl-C before the task started.
        if *self.control.stop.borrow() {
            self.control.stop_fed = true;
            self.driver.agent.stop(Instant::now());
        }
        match self.driver.run(&mut self.control).await {
            Ok(()) => {}
            Err(never) => match never {},
        }
        // The last responses may still be queued on a connection.
        self.driver
            .wire
            .socket
            .close(std::time::Duration::from_secs(1))
            .await;
    }
}

/// A role's media: a socket per call from the scenario's port range, the session its
/// script drives, each recording written to `media.record`.
struct RoleMedia {
    role: String,
    setup: MediaSetup,
    ids: IdGen,
    /// Streams being stopped for their report: the call's user and Call-ID (a recording's
    /// name).
    stopping: HashMap<CallKey, (String, String)>,
    /// `--record-calls failed`: the steps' recordings of calls whose verdict is not known
    /// yet, by user and Call-ID, written if the call fails (its result follows its media's
    /// end, see [`RoleControl::results`]).
    pending: HashMap<(String, String), Vec<StepFile>>,
}

/// A step's recording and the file it goes to.
type StepFile = (PathBuf, Vec<i16>);

/// Writes a recording, logging why not.
fn write_step_recording(path: &std::path::Path, samples: &[i16]) {
    if let Err(e) = crate::drive::media::write_recording(path, samples) {
        tracing::warn!(path = %path.display(), error = %e, "recording not written");
    }
}

impl Media for RoleMedia {
    fn open(&mut self, ip: IpAddr) -> std::io::Result<(MediaHandle, u16)> {
        let socket = self.setup.ports.bind_std(ip)?;
        let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
        Ok((MediaHandle::listen_std(socket), port))
    }

    fn session(&mut self, now: Instant, negotiated: &Negotiated) -> Option<MediaSession> {
        let config = media_config(
            negotiated,
            self.setup.jitter_frames,
            self.setup.record_dir.is_some(),
        );
        MediaSession::new(now, config, Playlist::new(Vec::new()), &mut self.ids)
            .inspect_err(|e| tracing::warn!(error = %e, "media session not started"))
            .ok()
    }

    fn stopping(&mut self, agent: &Agent<SocketAddr>, key: CallKey) {
        let label = agent
            .call_label(key)
            .map(|(user, id)| (user.to_owned(), id.to_owned()))
            .unwrap_or_default();
        self.stopping.insert(key, label);
    }

    /// Its recording written, its report to its call.
    fn stopped(&mut self, key: CallKey, finished: Option<Box<Finished>>) -> Option<MediaReport> {
        let (user, call_id) = self.stopping.remove(&key).unwrap_or_default();
        let finished = finished?;
        if let (Some(dir), Some(samples)) = (&self.setup.record_dir, &finished.recording) {
            let path = dir.join(recording_name(&self.role, &user, &call_id));
            if let Err(e) = crate::drive::media::write_recording(&path, samples) {
                tracing::warn!(path = %path.display(), error = %e, "recording not written");
            }
        }
        if let Some(records) = &self.setup.step_records {
            let files: Vec<StepFile> = finished
                .steps
                .into_iter()
                .map(|rec| {
                    let name = step_recording_name(&self.role, &user, &call_id, rec.line);
                    (records.dir.join(name), rec.samples)
                })
                .collect();
            if records.all {
                for (path, samples) in &files {
                    write_step_recording(path, samples);
                }
            } else if !files.is_empty() {
                self.pending.insert((user, call_id), files);
            }
        }
        Some(finished.report)
    }
}

/// A role's part around the loop: the executor's commands, Ctrl-C, its results to the
/// run's reporters.
struct RoleControl {
    name: String,
    commands: mpsc::UnboundedReceiver<RoleCommand>,
    /// The commands received in one wake, carried out in order in the same turn.
    ready: Vec<RoleCommand>,
    events: mpsc::UnboundedSender<RunEvent>,
    stop: watch::Receiver<bool>,
    callers: Arc<Callers>,
    /// Told once the first registrations have their outcome.
    registered: Option<oneshot::Sender<()>>,
    /// Told once every registration is removed.
    unregistered: Option<oneshot::Sender<()>>,
    /// Whether the agent was told of Ctrl-C (or it can no longer come).
    stop_fed: bool,
    commands_open: bool,
    /// Shut down by the executor.
    shut: bool,
}

impl Control<RoleMedia> for RoleControl {
    type Wake = RoleWake;
    type Done = ();
    type Error = std::convert::Infallible;

    async fn wake(&mut self) -> RoleWake {
        if !self.commands_open && self.stop_fed {
            return std::future::pending().await;
        }
        tokio::select! {
            n = self.commands.recv_many(&mut self.ready, COMMANDS_PER_TURN), if self.commands_open => RoleWake::Commands(n),
            stopped = self.stop.wait_for(|s| *s), if !self.stop_fed => RoleWake::Stop(stopped.is_ok()),
        }
    }

    fn handle(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        wake: RoleWake,
    ) -> Result<Option<()>, Self::Error> {
        let now = Instant::now();
        match wake {
            RoleWake::Commands(0) => {
                self.commands_open = false;
                agent.shutdown(now);
            }
            RoleWake::Commands(_) => {
                let mut ready = std::mem::take(&mut self.ready);
                for command in ready.drain(..) {
                    self.shut |= self.command(agent, command);
                }
                // The buffer is kept for the next wake.
                self.ready = ready;
            }
            RoleWake::Stop(stopped) => {
                self.stop_fed = true;
                if stopped {
                    agent.stop(now);
                }
            }
        }
        Ok(None)
    }

    /// Each call's result to the reporters (a caller's end to the executor's count), the
    /// registration events a run reports.
    fn results(&mut self, agent: &mut Agent<SocketAddr>, media: &mut RoleMedia) {
        while let Some(result) = agent.poll_result() {
            if let Some(files) = media
                .pending
                .remove(&(result.user.clone(), result.call_id.clone()))
            {
                if !result.passed() {
                    for (path, samples) in &files {
                        write_step_recording(path, samples);
                    }
                }
            }
            crate::drive::capture::call_ended(&result.call_id, !result.passed());
            if result.side == Side::Caller {
                self.callers.ended_one();
            }
            let _ = self.events.send(RunEvent::CallFinished(Box::new(result)));
        }
        while let Some((user, event)) = agent.poll_registration() {
            self.registration(user, &event);
        }
    }

    /// Over once shut down with every call, registration and media report done; the
    /// executor is told when the first registrations have their outcome and when every
    /// registration is removed.
    fn poll_done(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        stopping: usize,
    ) -> Result<Option<()>, Self::Error> {
        if self.registered.is_some() && !agent.registering() {
            let _ = self.registered.take().map(|tx| tx.send(()));
        }
        if self.unregistered.is_some() && agent.unregistered() {
            let _ = self.unregistered.take().map(|tx| tx.send(()));
        }
        let over = (self.shut || !self.commands_open) && agent.is_finished() && stopping == 0;
        Ok(over.then_some(()))
    }

    /// An error of one connection (or ICMP) is handled and the transport goes on; an error
    /// of the transport itself ends its calls and registrations.
    fn transport_failed(
        &mut self,
        wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        error: TransportError,
    ) -> Result<bool, Self::Error> {
        if transport_error(wire, agent, &error, true) {
            return Ok(true);
        }
        tracing::error!(role = %self.name, %error, "transport failed");
        agent.transport_gone(Instant::now(), &error.to_string());
        Ok(false)
    }

    fn send_failed(
        &mut self,
        wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        failed: SendFailed,
    ) -> Result<(), Self::Error> {
        // The calls with that destination were failed where the send failed (unless it was a
        // REGISTER's, which is no reason to end them).
        transport_error(wire, agent, &failed.error, false);
        Ok(())
    }
}

impl RoleControl {
    /// Carry out a command; whether it shut the role down.
    fn command(&mut self, agent: &mut Agent<SocketAddr>, command: RoleCommand) -> bool {
        let now = Instant::now();
        match command {
            RoleCommand::Start {
                account,
                peer,
                schedule,
            } => {
                if agent.start_call(now, account, peer, schedule).is_none() {
                    // Shut down already: no call, no result.
                    self.callers.ended_one();
                }
                false
            }
            RoleCommand::LoadDone(unregistered) => {
                agent.load_done(now);
                agent.unregister(now);
                self.unregistered = Some(unregistered);
                false
            }
            RoleCommand::Shutdown => {
                agent.shutdown(now);
                true
            }
        }
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

/// An error of one TCP connection (or ICMP): handled, the transport goes on. `false` for an
/// error of the transport itself. `opening`: the error came from the connection itself, not
/// from a send: a connection whose handshake (TLS, WebSocket) failed after its TCP connect,
/// with the messages queued for it meanwhile lost — its calls end now, not at Timer F.
pub(crate) fn transport_error(
    wire: &mut Wire,
    agent: &mut Agent<SocketAddr>,
    e: &TransportError,
    opening: bool,
) -> bool {
    let now = Instant::now();
    if let Some(peer) = e.flow() {
        let ua = match &mut wire.socket {
            SipSocket::TcpPool(pool) => pool.take_lost_ua(),
            _ => None,
        };
        tracing::info!(%peer, ua = ua.as_deref().unwrap_or("*"), error = %e, "TCP connection lost");
        if opening && e.never_opened() {
            // What was to go over it never went: its calls end now, not at Timer F. (A
            // connection that dropped leaves its calls alone: their next messages open a
            // new one, and the peer may do the same, RFC 3261 §18.)
            agent.flow_failed(now, &peer, ua.as_deref(), &e.to_string());
        }
        agent.requests_failed(now, &peer, ua.as_deref(), &e.to_string());
        // A connection that could not be opened was no flow: nothing to renew (renewing
        // would only fail the same way, at once, again).
        if !e.never_opened() {
            agent.flow_lost(now, &peer, ua.as_deref());
        }
        return true;
    }
    if let TransportError::Unreachable { addr, .. } = e {
        agent.transport_failed(now, addr);
        agent.requests_failed(now, addr, None, &e.to_string());
        return true;
    }
    false
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

/// The file a `record: true` step's received audio is written to: as [`recording_name`],
/// with the step's line in the scenario (`caller-6400-CALLID-line14.wav`).
fn step_recording_name(role: &str, user: &str, call_id: &str, line: u32) -> String {
    let whole = recording_name(role, user, call_id);
    format!("{}-line{line}.wav", whole.trim_end_matches(".wav"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, oneshot, watch};

    use super::{recording_name, Callers, RoleCommand, RoleControl, RoleWake};
    use crate::drive::agent::Control;
    use crate::drive::fixture;

    /// The commands the executor already sent are all carried out in the turn the first of
    /// them wakes (not one per turn of the loop), in order, and the channel's end is still
    /// seen once they are done.
    #[tokio::test]
    async fn commands_already_sent_are_all_carried_out_in_one_turn() {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, _events_rx) = mpsc::unbounded_channel();
        let (_stop_tx, stop) = watch::channel(false);
        let (registered, _registered_rx) = oneshot::channel();
        let mut control = RoleControl {
            name: "caller".into(),
            commands: commands_rx,
            ready: Vec::new(),
            events,
            stop,
            callers: Arc::new(Callers::default()),
            registered: Some(registered),
            unregistered: None,
            stop_fed: false,
            commands_open: true,
            shut: false,
        };
        let mut agent = fixture::agent("caller", "127.0.0.1:5060".parse().unwrap());
        let mut told = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = oneshot::channel();
            commands.send(RoleCommand::LoadDone(tx)).unwrap();
            told.push(rx);
        }
        commands.send(RoleCommand::Shutdown).unwrap();
        drop(commands);

        let wake = control.wake().await;
        assert!(
            matches!(wake, RoleWake::Commands(4)),
            "all four in one wake"
        );
        control.handle(&mut agent, wake).unwrap();
        assert!(control.shut, "the Shutdown, last, was carried out");
        // The first two LoadDone were carried out and replaced by the next: their senders
        // are dropped; the last one's waits for the registrations' end (none: at once).
        let mut last = told.pop().unwrap();
        for mut rx in told {
            assert!(matches!(
                rx.try_recv(),
                Err(oneshot::error::TryRecvError::Closed)
            ));
        }
        assert!(matches!(
            last.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        control.poll_done(&mut agent, 0).unwrap();
        assert!(last.try_recv().is_ok(), "told once no registration is left");

        // The executor is gone: the next wake says so.
        let wake = control.wake().await;
        assert!(matches!(wake, RoleWake::Commands(0)));
        control.handle(&mut agent, wake).unwrap();
        assert!(!control.commands_open);
    }

    #[test]
    fn a_recordings_name_keeps_no_path_separator_or_control_character() {
        assert_eq!(
            recording_name("callee", "2001", "../../etc/x\r\ny@h"),
            "callee-2001-.._.._etc_x__y_h.wav"
        );
    }
}
