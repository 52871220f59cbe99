//! One role of a scenario as a sans-IO state machine: its call [`Endpoint`] and a
//! [`CallScript`] per live call.
//!
//! The agent routes between the endpoint and the scripts: an incoming INVITE becomes a
//! callee script (or a refusal), a call the load plan starts becomes a caller script
//! ([`Agent::start_call`]), each script's SIP intents become endpoint operations and the
//! endpoint's events reach the call's script. Everything the call's media stream must do
//! (open its RTP socket, carry out a [`MediaIntent`], stop) comes out as a [`MediaCommand`]
//! ([`Agent::poll_media`]); what the stream reports goes back in
//! ([`Agent::handle_media_event`], [`Agent::handle_media_opened`],
//! [`Agent::handle_media_stopped`]). Each call's [`CallResult`] comes out once, at its end
//! ([`Agent::poll_result`]).
//!
//! Input: [`Agent::handle_datagram`] (or [`Agent::handle_message`] for a stream),
//! [`Agent::handle_timeout`], [`Agent::start_call`], the media replies, [`Agent::stop`]
//! (Ctrl-C), [`Agent::load_done`] and [`Agent::shutdown`]. Output: [`Agent::poll_transmit`],
//! [`Agent::poll_media`], [`Agent::poll_result`], [`Agent::poll_timeout`].
//!
//! As `sipcheck answer`'s responder ([`Agent::respond`], [`responder`]) the agent admits or
//! refuses every incoming call itself, and its calls' lines come out of
//! [`Agent::poll_answer`] instead.
//!
//! Requests of its own ([`Agent::send_request`]: `sipcheck options`) and its registrations
//! ([`Agent::register`], [`Agent::remove_all`]: `sipcheck register`) need no call: their
//! outcomes come out of [`Agent::poll_request_event`] and [`Agent::poll_registration`],
//! bounded by [`Agent::limit_requests`] ([`requests`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytesstr::BytesStr;

use crate::media::g711::Codec;
use crate::media::intent::{MediaEvent, MediaIntent};
use crate::media::session::MediaReport;
use crate::scenario::model::{Account, Expectation, Located, PlayItem, Step};
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::sip::auth::Credentials;
use crate::sip::msg::{user_part, Message};
use crate::sip::transaction::{Transmit, TxId};
use crate::sip::uri::NextHop;
use crate::stats::ladder::{Direction, RawLadder};
use crate::stats::outcome::{CallResult, Side};
use crate::ua::call::SIGNATURE_HEADER;
use crate::ua::call::{CallError, CallEvent, CallId, Endpoint, OfferPlacement, OutgoingCall};
use crate::ua::register::LocalEnd;
use crate::ua::script::{CallScript, CommandError, Placed, ScriptCommand, ScriptConfig};
use crate::ua::work::{Work, WorkResult};

pub mod probe;
mod registrations;
pub mod requests;
pub mod responder;

/// A call from `account` to `target` (its Request-URI and To) through `destination`, offering
/// `media` from `local`, the account's credentials ready for a challenge; no redirect followed.
fn outgoing_call<D>(
    account: &Account,
    target: String,
    destination: D,
    media: LocalMedia,
    local: LocalEnd,
    extra_headers: Vec<(String, String)>,
    sips: bool,
) -> OutgoingCall<D> {
    let scheme = if sips { "sips" } else { "sip" };
    OutgoingCall {
        request_uri: target.clone(),
        from_uri: format!("{scheme}:{}@{}", account.user, account.domain),
        to_uri: target,
        destination,
        credentials: Some(Credentials::new(
            account.user.clone(),
            account.password.clone(),
        )),
        local_media: media,
        local,
        offer: OfferPlacement::InInvite,
        extra_headers,
        max_redirects: 0,
    }
}

#[cfg(test)]
mod tests;

pub use registrations::REGISTRATIONS_AT_ONCE;
pub use requests::{RequestEvent, RequestFailure};

/// The most Request-URIs whose address is kept.
const DESTINATIONS_KEPT: usize = 4096;

/// The port of a description without RTP (RFC 863 discard; nothing is sent to it).
const DISCARD_PORT: u16 = 9;

/// One call of an agent, from the moment its script exists (a caller's call has no
/// [`CallId`] before its INVITE is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(u64);

impl std::fmt::Display for CallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "script{}", self.0)
    }
}

/// What the driver must do to a call's media stream.
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Open the call's RTP socket and read it from now on (RFC 3264 §5.1: media may come
    /// as soon as the offer or answer is out); reply with [`Agent::handle_media_opened`].
    Open,
    /// Start the call's media session with this negotiated media.
    Start(Negotiated),
    /// Carry out an intent of the call's script ([`MediaIntent::Start`] comes as
    /// [`MediaCommand::Start`]).
    Intent(MediaIntent),
    /// Stop the stream and close its socket; reply with [`Agent::handle_media_stopped`]
    /// when `report` (the session's report belongs in the call's result).
    Stop {
        /// Whether a session ran and its report is awaited.
        report: bool,
    },
}

/// What an agent knows of its role and run.
#[derive(Debug, Clone)]
pub struct AgentConfig<D> {
    /// The role's name.
    pub role: String,
    /// The local transport and address (our media's address too).
    pub local: LocalEnd,
    /// Where outgoing calls go (the server or outbound proxy); `None`: the Request-URI's
    /// host, which must then be an address ([`NextHop`]).
    pub next_hop: Option<D>,
    /// The domain a bare user in a `call` step's `to` is completed with.
    pub domain: String,
    /// The codecs offered and accepted, in order of preference.
    pub codecs: Vec<Codec>,
    /// The packetisation time offered.
    pub ptime_ms: u32,
    /// Whether calls carry RTP (`media: { rtp: false }`: signaling only).
    pub rtp: bool,
    /// The WAV files of `play` steps, by path.
    pub wavs: Arc<HashMap<String, Arc<[i16]>>>,
    /// The role's accounts: an incoming call is served for the account its Request-URI (or
    /// To) names, else for the first.
    pub accounts: Vec<Account>,
    /// The role's steps for each call (from its first call-level step).
    pub steps: Arc<Vec<Located<Step>>>,
    /// SRTP (`srtp: optional|required`): `None` is plain RTP only (`off`).
    pub srtp: Option<SrtpConfig>,
    /// The role's addresses of record are `sips:` (RFC 5630): its registrations use a
    /// `sips:` Request-URI, To, From and Contact (over TLS).
    pub sips: bool,
    /// The roles `expect: { answered_by }` can name, in slot order
    /// ([`crate::scenario::model::Scenario::signature_parties`]); empty without it.
    pub signature_parties: Arc<[String]>,
}

/// How a role's calls use SRTP: the policy, and where each call's fresh SDES keys come from
/// (the shell draws them from the OS RNG; the core reads no entropy).
#[derive(Clone)]
pub struct SrtpConfig {
    /// `optional` or `required` (an `off` role has no `SrtpConfig`).
    pub policy: crate::sdp::crypto::SrtpPolicy,
    /// A new random master key and salt at each call.
    pub keys: Arc<dyn Fn() -> crate::sdp::crypto::MasterKey + Send + Sync>,
}

impl SrtpConfig {
    /// Our SDES side of one call: two fresh keys (one per offered suite).
    #[must_use]
    pub fn local(&self) -> Option<crate::sdp::crypto::LocalSrtp> {
        crate::sdp::crypto::LocalSrtp::new(self.policy, [(self.keys)(), (self.keys)()])
    }
}

impl std::fmt::Debug for SrtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpConfig")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// When a call the load plan starts was due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When the load started.
    pub load_start: Instant,
    /// When, from the load's start, the call was due.
    pub offset: Duration,
}

/// A reply the script waits for, held while the driver resolves a name or opens the call's
/// RTP socket.
#[derive(Debug)]
enum Waiting<D> {
    /// Place the call to this Request-URI once its host is resolved.
    Resolve(String),
    /// Place the call to this Request-URI, at this next hop, once the socket is open.
    Invite(String, D),
    /// Answer once the socket is open.
    Accept,
}

/// One live call.
#[derive(Debug)]
struct Live<D> {
    script: CallScript,
    call: Option<CallId>,
    /// The account that places the call's INVITEs (its credentials): a caller's, or a
    /// callee's whose role follows transfers.
    account: Option<Account>,
    /// The stream was asked to open (it must be stopped at the end).
    opened: bool,
    waiting: Option<Waiting<D>>,
    /// The script's deadline as armed in the agent's timer set.
    armed: Option<Instant>,
    /// Waiting for the stream's report before the result.
    ending: bool,
    /// The call's SIP messages, when ladders are recorded.
    ladder: RawLadder,
    /// A responder's call: what its line needs.
    answering: Option<responder::Answering>,
    /// A transfer's new call, placed and not yet answered (`expect: transferred`).
    pending: Option<CallId>,
    /// The original call of a transfer once the new one is `call`, until it ends.
    original: Option<CallId>,
    /// An attended transfer's consultation call (`transfer: { attended }`), while it is up.
    consult: Option<CallId>,
    /// The SIP Call-IDs of the transfer's calls, for the ladder.
    more_sip_ids: Vec<String>,
}

/// The agent of one role (see the module documentation).
#[derive(Debug)]
pub struct Agent<D> {
    cfg: AgentConfig<D>,
    endpoint: Endpoint<D>,
    calls: BTreeMap<CallKey, Live<D>>,
    by_id: HashMap<CallId, CallKey>,
    next_key: u64,
    /// The scripts' deadlines.
    timers: BTreeSet<(Instant, CallKey)>,
    media: VecDeque<(CallKey, MediaCommand)>,
    /// The calls' slow computations for the driver to run off its loop.
    work: VecDeque<(CallKey, Work)>,
    /// Request-URIs whose host the driver is to resolve.
    resolves: VecDeque<(CallKey, String)>,
    /// Request-URIs resolved so far (without a next hop, one per callee with `{peer}`).
    destinations: HashMap<String, D>,
    results: VecDeque<CallResult>,
    /// The calls begun, with their SIP Call-IDs then (empty for a caller's, until its
    /// INVITE is sent), not yet polled.
    begun: VecDeque<(CallKey, String)>,
    /// The events of requests of our own.
    own: VecDeque<RequestEvent>,
    /// Requests of our own under way, and their limit.
    requests: requests::OwnRequests<D>,
    /// Whether an incoming call finds steps to serve it (`answer`, `reject`, `ring`).
    answers: bool,
    stopped: bool,
    load_done: bool,
    shut: bool,
    /// Ladders are recorded (the address of a destination, as the ladder shows it).
    ladder_peer: Option<fn(&D) -> SocketAddr>,
    /// The live calls by SIP Call-ID, for their ladders.
    by_sip_id: HashMap<String, CallKey>,
    /// The instant of the latest input (what is sent goes out then).
    last_now: Option<Instant>,
    /// The role's registrations.
    regs: registrations::Registrations<D>,
    /// Answering as `sipcheck answer` ([`Agent::respond`]).
    responder: Option<responder::Responding<D>>,
    /// Probing as `sipcheck call` ([`Agent::probe`]).
    prober: Option<probe::Probing<D>>,
    /// Whether the role's steps play or expect audio signatures (its INVITEs then carry
    /// [`SIGNATURE_HEADER`]).
    signatures: bool,
    /// The audio-signature number of the next call placed.
    next_signature_call: u64,
}

impl<D: Clone + NextHop + PartialEq + std::fmt::Display> Agent<D> {
    /// The agent of a role, over its `endpoint`.
    #[must_use]
    pub fn new(cfg: AgentConfig<D>, mut endpoint: Endpoint<D>) -> Self {
        // A role that expects to be transferred accepts REFER (else refused 405).
        if cfg
            .steps
            .iter()
            .any(|s| matches!(s.value, Step::Expect(Expectation::Transferred { .. })))
        {
            endpoint.set_accept_refer(true);
        }
        let answers = cfg.steps.iter().any(|s| {
            matches!(
                s.value,
                Step::Answer { .. } | Step::Reject { .. } | Step::Ring(_)
            )
        });
        let signatures = cfg.steps.iter().any(|s| match &s.value {
            Step::Play(items) => items.contains(&PlayItem::Signature),
            Step::Expect(Expectation::Signature { .. }) => true,
            _ => false,
        });
        Self {
            signatures,
            next_signature_call: 0,
            cfg,
            endpoint,
            calls: BTreeMap::new(),
            by_id: HashMap::new(),
            next_key: 0,
            timers: BTreeSet::new(),
            media: VecDeque::new(),
            work: VecDeque::new(),
            resolves: VecDeque::new(),
            destinations: HashMap::new(),
            results: VecDeque::new(),
            begun: VecDeque::new(),
            own: VecDeque::new(),
            requests: requests::OwnRequests::default(),
            answers,
            stopped: false,
            load_done: false,
            shut: false,
            ladder_peer: None,
            by_sip_id: HashMap::new(),
            last_now: None,
            regs: registrations::Registrations::default(),
            responder: None,
            prober: None,
        }
    }

    /// The role's endpoint (its counters, its calls' states).
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint<D> {
        &self.endpoint
    }

    /// Send a request of our own (REGISTER, OPTIONS) in a client transaction; its events
    /// come from [`Self::poll_request_event`].
    ///
    /// # Errors
    /// When the transaction layer refuses the request.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Bytes,
        destination: D,
    ) -> Result<TxId, CallError> {
        self.last_now = Some(now);
        let tx = self
            .endpoint
            .send_request(now, request, destination.clone())?;
        self.own_sent(tx, destination, now);
        self.drive(now);
        Ok(tx)
    }

    /// The shell could not reach `destination` (a connection refused or closed, ICMP
    /// unreachable): every call with that peer or next hop ends with a transport error;
    /// requests of our own are left to time out.
    pub fn transport_failed(&mut self, now: Instant, destination: &D) {
        self.last_now = Some(now);
        self.endpoint.transport_failed(now, destination);
        self.drive(now);
    }

    /// A connection to `destination` could not be opened (of user agent `ua` only, when
    /// each has its own): the calls whose messages were to go over it end now with a
    /// transport error, not at Timer F ([`Endpoint::flow_failed`]).
    pub fn flow_failed(&mut self, now: Instant, destination: &D, ua: Option<&str>, why: &str) {
        self.last_now = Some(now);
        self.endpoint.flow_failed(now, destination, ua, why);
        self.drive(now);
    }

    /// The transport is gone for good (a socket error that is no one peer's): every call
    /// ends failed (its events cannot come any more), no REGISTER nor any other request of
    /// our own can be answered.
    pub fn transport_gone(&mut self, now: Instant, why: &str) {
        self.last_now = Some(now);
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            if let Some(live) = self.calls.get_mut(&key) {
                live.script.events_closed(now);
            }
            self.settle(now, key);
        }
        let registrars: Vec<D> = self.registrars();
        for registrar in registrars {
            self.requests_failed(now, &registrar, None, why);
        }
        self.own_failed(None, &RequestFailure::Transport(why.to_owned()));
        self.drive(now);
    }

    /// How many calls still have a dialog (or an INVITE under way) with `destination`: a
    /// call whose dialog is over (its BYE answered) and whose result waits only for its media
    /// to stop is not counted.
    #[must_use]
    pub fn calls_with(&self, destination: &D) -> usize {
        self.endpoint.calls_with(destination)
    }

    /// How many calls are under way (their results not yet out).
    #[must_use]
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether the agent was [shut down](Self::shutdown), every call has ended and every
    /// registration too.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.shut && self.calls.is_empty() && self.unregistered()
    }

    /// The user agent and SIP Call-ID of a live call (a caller's Call-ID is empty until
    /// its INVITE is sent).
    #[must_use]
    pub fn call_label(&self, call: CallKey) -> Option<(&str, &str)> {
        let live = self.calls.get(&call)?;
        Some((live.script.user(), live.script.call_id()))
    }

    // --- inputs -------------------------------------------------------------------------

    /// A datagram from `from`. One that is not SIP is dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: D, bytes: Bytes) {
        if let Ok(message) = Message::parse_datagram(bytes) {
            self.handle_message(now, message, false, from);
        }
    }

    /// A message from `from`, over a transport that is `reliable` or not.
    pub fn handle_message(&mut self, now: Instant, message: Message, reliable: bool, from: D) {
        self.last_now = Some(now);
        // The Call-ID shares the message's buffer (kept past the endpoint, not copied).
        let kept = self.ladder_peer.map(|peer| {
            (
                BytesStr::from_parse(message.raw(), message.call_id()),
                peer(&from),
                message.raw().clone(),
            )
        });
        // Kept before the endpoint sees it when the call is known (its last response ends
        // it), after when it makes the call (an incoming INVITE).
        let known = kept
            .as_ref()
            .and_then(|(id, _, _)| self.by_sip_id.get(id.as_str()).copied());
        if let (Some(key), Some((_, peer, raw))) = (known, &kept) {
            if let Some(live) = self.calls.get_mut(&key) {
                live.ladder
                    .push(now, Direction::Received, *peer, raw.clone(), false);
            }
        }
        self.endpoint.handle_message(now, message, reliable, from);
        self.drive(now);
        if let (None, Some((call_id, peer, raw))) = (known, kept) {
            self.record(&call_id, now, Direction::Received, peer, raw, false);
        }
    }

    /// Keep a message in its live call's ladder.
    fn record(
        &mut self,
        call_id: &str,
        at: Instant,
        direction: Direction,
        peer: SocketAddr,
        raw: Bytes,
        retransmission: bool,
    ) {
        let Some(key) = self.by_sip_id.get(call_id) else {
            return;
        };
        if let Some(live) = self.calls.get_mut(key) {
            live.ladder.push(at, direction, peer, raw, retransmission);
        }
    }

    /// Time has come (at or after [`Self::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
        self.drive(now);
        self.registration_timeouts(now);
        self.requests_limit(now);
        self.drive(now);
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(live) = self.calls.get_mut(&key) {
                live.armed = None;
                live.script.handle_timeout(now);
            }
            self.settle(now, key);
        }
        self.drive(now);
    }

    /// The load plan starts a call of `account` (to `peer`, its `{peer}`), due as
    /// `scheduled` says. After [`Self::stop`] its script runs no step; after
    /// [`Self::shutdown`] it is not started at all.
    pub fn start_call(
        &mut self,
        now: Instant,
        account: Account,
        peer: Option<Account>,
        scheduled: Schedule,
    ) -> Option<CallKey> {
        self.last_now = Some(now);
        if self.shut {
            return None;
        }
        let cfg = ScriptConfig {
            role: self.cfg.role.clone(),
            side: Side::Caller,
            user: account.user.clone(),
            account_domain: account.domain.clone(),
            peer_user: peer.map(|p| p.user).unwrap_or_default(),
            domain: self.cfg.domain.clone(),
            rtp: self.cfg.rtp,
            wavs: self.cfg.wavs.clone(),
            scheduled: Some(scheduled.offset),
            start_lag: now.saturating_duration_since(scheduled.load_start + scheduled.offset),
            signature_call: self.signatures.then_some(self.next_signature_call),
            signature_parties: self.cfg.signature_parties.clone(),
        };
        if self.signatures {
            self.next_signature_call += 1;
        }
        let script = CallScript::caller(now, cfg, self.cfg.steps.clone());
        let key = self.add(script, None, Some(account));
        self.begin(now, key);
        Some(key)
    }

    /// What the media stream of `call` reports.
    pub fn handle_media_event(&mut self, now: Instant, call: CallKey, event: MediaEvent) {
        self.last_now = Some(now);
        if let Some(live) = self.calls.get_mut(&call) {
            live.script.handle_media_event(now, event);
            self.settle(now, call);
            self.drive(now);
        }
    }

    /// The result of a computation of `call` ([`Self::poll_work`]); that of a call already
    /// gone is dropped.
    pub fn handle_work_done(&mut self, now: Instant, call: CallKey, result: WorkResult) {
        self.last_now = Some(now);
        if let Some(live) = self.calls.get_mut(&call) {
            live.script.handle_work_done(now, result);
            self.settle(now, call);
            self.drive(now);
        }
    }

    /// The reply to [`MediaCommand::Open`]: the RTP socket's port, or why none opened.
    pub fn handle_media_opened(&mut self, now: Instant, call: CallKey, port: Result<u16, String>) {
        self.last_now = Some(now);
        let Some(live) = self.calls.get_mut(&call) else {
            return;
        };
        // Only a call waiting for its socket takes the reply.
        if !matches!(live.waiting, Some(Waiting::Invite(..) | Waiting::Accept)) {
            return;
        }
        let Some(waiting) = live.waiting.take() else {
            return;
        };
        match port {
            Ok(port) => match waiting {
                Waiting::Invite(target, to) => {
                    if self.probe_invite(now, call, port).is_none() {
                        let media = self.local_media(port, false);
                        self.invite(now, call, target, to, media);
                    }
                }
                Waiting::Accept => {
                    let media = self.local_media(port, false);
                    self.accept(now, call, media);
                }
                Waiting::Resolve(_) => {}
            },
            Err(e) => {
                let e = CommandError::NoRtpSocket(e);
                match waiting {
                    Waiting::Invite(..) => live.script.handle_placed(now, Err(e)),
                    Waiting::Accept => live.script.handle_accepted(now, Err(e)),
                    Waiting::Resolve(_) => {}
                }
            }
        }
        self.settle(now, call);
        self.drive(now);
    }

    /// The reply to a name to resolve ([`Self::poll_resolve`]): the address of the
    /// Request-URI's host, or `None`.
    pub fn handle_resolved(&mut self, now: Instant, call: CallKey, destination: Option<D>) {
        self.last_now = Some(now);
        let Some(live) = self.calls.get_mut(&call) else {
            return;
        };
        if !matches!(live.waiting, Some(Waiting::Resolve(_))) {
            return;
        }
        let Some(Waiting::Resolve(target)) = live.waiting.take() else {
            return;
        };
        match destination {
            Some(to) => {
                if self.destinations.len() < DESTINATIONS_KEPT {
                    self.destinations.insert(target.clone(), to.clone());
                }
                self.place(now, call, target, to);
            }
            None => live
                .script
                .handle_placed(now, Err(CommandError::Unresolved)),
        }
        self.settle(now, call);
        self.drive(now);
    }

    /// The reply to [`MediaCommand::Stop`] with `report`: the session's report, if one
    /// ran. The call's result follows.
    pub fn handle_media_stopped(
        &mut self,
        now: Instant,
        call: CallKey,
        report: Option<MediaReport>,
    ) {
        self.last_now = Some(now);
        if self.calls.get(&call).is_some_and(|l| l.ending) {
            self.finish(call, report);
            self.drive(now);
        }
    }

    /// Ctrl-C: every call winds down, none is counted passed; calls started later run no
    /// step.
    /// A responder ([`Self::respond`]) drains instead: calls waiting for their ACK are
    /// dropped, the others hung up, new INVITEs refused (480), until every call has ended or
    /// the drain is over ([`Self::responder_done`]).
    pub fn stop(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.responder.is_some() {
            self.responder_stop(now);
            return;
        }
        if self.probe_stop() {
            return;
        }
        self.stopped = true;
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            if let Some(live) = self.calls.get_mut(&key) {
                live.script.stop(now);
            }
            self.settle(now, key);
        }
        self.drive(now);
    }

    /// The load is over (every caller's call has finished): callees still waiting for the
    /// caller's BYE or CANCEL give up a little later.
    pub fn load_done(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.responder.is_some() {
            // A responder's calls wait for their caller as long as their steps say.
            return;
        }
        self.load_done = true;
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for key in keys {
            if let Some(live) = self.calls.get_mut(&key) {
                live.script.load_done(now);
            }
            self.settle(now, key);
        }
        self.drive(now);
    }

    /// No new calls: incoming ones are refused with 480, [`Self::start_call`] starts none;
    /// the calls under way finish.
    pub fn shutdown(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.shut = true;
        self.drive(now);
    }

    // --- outputs ------------------------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<D>> {
        let t = self.endpoint.poll_transmit()?;
        if let (Some(peer), Some(at)) = (self.ladder_peer, self.last_now) {
            // Carried by the transmit when its transaction or writer holds it: not read back.
            if let Some(call_id) = t.call_id() {
                let retransmission = t.kind.is_retransmission();
                self.record(
                    call_id,
                    at,
                    Direction::Sent,
                    peer(&t.destination),
                    t.bytes.clone(),
                    retransmission,
                );
            }
        }
        Some(t)
    }

    /// The next Request-URI whose host the driver is to resolve (a name: the agent resolves
    /// no name itself); reply with [`Self::handle_resolved`].
    pub fn poll_resolve(&mut self) -> Option<(CallKey, String)> {
        self.resolves.pop_front()
    }

    /// The next thing to do to a call's media stream.
    pub fn poll_media(&mut self) -> Option<(CallKey, MediaCommand)> {
        self.media.pop_front()
    }

    /// The next slow computation of a call (a PESQ score), to run off the driver's loop
    /// ([`Work::run`]); reply with [`Self::handle_work_done`]. Calls wait for their
    /// results, bounded, while the agent goes on with every other call.
    pub fn poll_work(&mut self) -> Option<(CallKey, Work)> {
        self.work.pop_front()
    }

    /// Whether `call` is still under way (a computation for a call gone need not run).
    #[must_use]
    pub fn has_call(&self, call: CallKey) -> bool {
        self.calls.contains_key(&call)
    }

    /// The next call begun (an end of a call in this agent: a caller's script started, an
    /// INVITE taken), once per call, with its SIP Call-ID as it began: empty for a caller's
    /// until its INVITE is sent (then [`Self::call_label`] has it while the call lasts). A
    /// call may have begun and ended within one input (an INVITE refused at once): it is
    /// listed all the same, before its result.
    pub fn poll_begun(&mut self) -> Option<(CallKey, String)> {
        self.begun.pop_front()
    }

    /// The next call that ended, with its outcome (once per call).
    pub fn poll_result(&mut self) -> Option<CallResult> {
        self.results.pop_front()
    }

    /// The next event of a request of our own ([`Self::send_request`]): its responses, or
    /// why no final response will come.
    pub fn poll_request_event(&mut self) -> Option<RequestEvent> {
        self.own.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.endpoint.poll_timeout(),
            self.timers.first().map(|&(at, _)| at),
            self.regs.poll_timeout(),
            self.responder_timeout(),
            self.probe_timeout(),
            self.requests_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // --- routing ------------------------------------------------------------------------

    fn add(
        &mut self,
        script: CallScript,
        call: Option<CallId>,
        account: Option<Account>,
    ) -> CallKey {
        let key = CallKey(self.next_key);
        self.next_key += 1;
        self.begun.push_back((key, script.call_id().to_owned()));
        if let Some(id) = call {
            self.by_id.insert(id, key);
        }
        self.calls.insert(
            key,
            Live {
                script,
                call,
                account,
                opened: false,
                waiting: None,
                armed: None,
                ending: false,
                ladder: RawLadder::default(),
                answering: None,
                pending: None,
                original: None,
                consult: None,
                more_sip_ids: Vec::new(),
            },
        );
        key
    }

    /// Start a new script, telling it first what already happened (Ctrl-C: no step runs;
    /// the end of the load).
    fn begin(&mut self, now: Instant, key: CallKey) {
        if let Some(live) = self.calls.get_mut(&key) {
            if self.stopped {
                live.script.stop(now);
            }
            live.script.start(now);
            if self.load_done {
                live.script.load_done(now);
            }
        }
        self.settle(now, key);
        self.drive(now);
    }

    /// Route the endpoint's events until none is left.
    fn drive(&mut self, now: Instant) {
        while let Some(event) = self.endpoint.poll_event() {
            self.route(now, event);
        }
        if self.responder.is_some() {
            self.responder_check(now);
        }
        if self.prober.is_some() {
            self.probe_check(now);
        }
    }

    fn route(&mut self, now: Instant, event: CallEvent<D>) {
        match event {
            CallEvent::Transaction(event) => {
                if !self.registration_event(now, &event) {
                    self.own_event(now, event);
                }
            }
            CallEvent::Incoming { call, .. } if self.prober.is_some() => {
                self.probe_incoming(now, call);
            }
            CallEvent::Incoming {
                call,
                from,
                source,
                signature_call,
                ..
            } if self.responder.is_some() => {
                self.responder_incoming(now, call, from, &source, signature_call);
            }
            CallEvent::Incoming {
                call,
                signature_call,
                replaces: Some(replaced),
                ..
            } => self.replace(now, call, replaced, signature_call),
            CallEvent::Incoming {
                call,
                request_uri,
                to,
                signature_call,
                ..
            } => self.incoming(now, call, &request_uri, &to, signature_call),
            CallEvent::InviteRefused {
                code,
                reason,
                from,
                call_id,
            } => self.responder_refused(code, reason, from, call_id),
            event => {
                let call = match &event {
                    CallEvent::Progress { call, .. }
                    | CallEvent::EarlyMedia { call, .. }
                    | CallEvent::Answered { call, .. }
                    | CallEvent::MediaUpdated { call, .. }
                    | CallEvent::UpdateFailed { call, .. }
                    | CallEvent::Redirected { call, .. }
                    | CallEvent::ReferAnswered { call, .. }
                    | CallEvent::TransferNotified { call, .. }
                    | CallEvent::Referred { call, .. }
                    | CallEvent::Ended { call, .. } => *call,
                    _ => return,
                };
                let ended = matches!(event, CallEvent::Ended { .. });
                if self.responder.is_some() {
                    let key = self.by_id.get(&call).copied();
                    match &event {
                        CallEvent::Answered { negotiated, .. } => {
                            self.responder_answered(call, key, negotiated);
                        }
                        CallEvent::Ended { .. } => self.responder_ended(call, key),
                        _ => {}
                    }
                }
                let Some(&key) = self.by_id.get(&call) else {
                    return;
                };
                if ended {
                    self.by_id.remove(&call);
                }
                if let Some(live) = self.calls.get_mut(&key) {
                    if live.consult == Some(call) {
                        let replaces = matches!(event, CallEvent::Answered { .. })
                            .then(|| self.endpoint.replaces_for(call))
                            .flatten();
                        if ended {
                            live.consult = None;
                        }
                        live.script.handle_consult_event(now, event, replaces);
                    } else if live.pending == Some(call) {
                        let original = live.call.and_then(|id| self.endpoint.record(id));
                        // The transfer's new call: once answered, the script's call.
                        if matches!(event, CallEvent::Answered { .. }) {
                            live.original = live.call;
                            live.call = Some(call);
                            live.pending = None;
                        } else if ended {
                            live.pending = None;
                        }
                        live.script.handle_transfer_event(now, event, original);
                    } else if live.original == Some(call) {
                        if ended {
                            live.original = None;
                        }
                        live.script.handle_original_event(now, event);
                    } else {
                        live.script.handle_call_event(now, event);
                    }
                }
                self.settle(now, key);
            }
        }
    }

    /// An incoming call: a callee script for the account it names, or a refusal (480 once
    /// shut down, 404 when the role has no account or no step answers calls).
    fn incoming(
        &mut self,
        now: Instant,
        call: CallId,
        request_uri: &str,
        to: &str,
        signature_call: Option<u64>,
    ) {
        if self.shut {
            let _ = self.endpoint.reject(now, call, 480);
            return;
        }
        let user = user_part(request_uri)
            .or_else(|| user_part(to))
            .unwrap_or_default();
        let account = self
            .cfg
            .accounts
            .iter()
            .find(|a| a.user == user)
            .or_else(|| self.cfg.accounts.first())
            .cloned();
        let Some(account) = account.filter(|_| self.answers) else {
            let _ = self.endpoint.reject(now, call, 404);
            return;
        };
        // Our responses' Contact names the account called, not the role's first.
        self.endpoint.set_contact_user(call, &account.user);
        let call_id = self
            .endpoint
            .sip_call_id(call)
            .unwrap_or_default()
            .to_string();
        let cfg = ScriptConfig {
            role: self.cfg.role.clone(),
            side: Side::Callee,
            user: account.user.clone(),
            account_domain: account.domain.clone(),
            peer_user: String::new(),
            domain: self.cfg.domain.clone(),
            rtp: self.cfg.rtp,
            wavs: self.cfg.wavs.clone(),
            scheduled: None,
            start_lag: Duration::ZERO,
            signature_call,
            signature_parties: self.cfg.signature_parties.clone(),
        };
        let sip_id = self.ladder_peer.is_some().then(|| call_id.clone());
        let script = CallScript::callee(now, cfg, self.cfg.steps.clone(), call_id);
        // Its account places the new call of a transfer (`expect: transferred`).
        let account = self.endpoint.config().accept_refer.then_some(account);
        let key = self.add(script, Some(call), account);
        if let Some(sip_id) = sip_id {
            self.by_sip_id.insert(sip_id, key);
        }
        self.begin(now, key);
    }

    /// Carry out the script's commands, re-arm its deadline, and end the call when the
    /// script is done.
    fn settle(&mut self, now: Instant, key: CallKey) {
        loop {
            let Some(live) = self.calls.get_mut(&key) else {
                return;
            };
            if live.waiting.is_some() {
                break;
            }
            let Some(command) = live.script.poll_command() else {
                break;
            };
            self.execute(now, key, command);
        }
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        let deadline = live.script.poll_timeout();
        if deadline != live.armed {
            if let Some(old) = live.armed.take() {
                self.timers.remove(&(old, key));
            }
            if let Some(at) = deadline {
                self.timers.insert((at, key));
            }
            live.armed = deadline;
        }
        if live.script.is_done() && !live.ending && live.waiting.is_none() {
            if let Some(old) = live.armed.take() {
                self.timers.remove(&(old, key));
            }
            // A transfer's call still up when the script is over: ended (BYE or CANCEL),
            // its events no longer followed.
            for id in [
                live.pending.take(),
                live.original.take(),
                live.consult.take(),
            ]
            .into_iter()
            .flatten()
            {
                let _ = self.endpoint.hangup(now, id);
                self.by_id.remove(&id);
            }
            if live.opened {
                let report = live.script.has_media();
                live.ending = report;
                self.media.push_back((key, MediaCommand::Stop { report }));
                if report {
                    return;
                }
            }
            self.finish(key, None);
        }
    }

    fn finish(&mut self, key: CallKey, report: Option<MediaReport>) {
        let Some(live) = self.calls.remove(&key) else {
            return;
        };
        if let Some(old) = live.armed {
            self.timers.remove(&(old, key));
        }
        if let Some(id) = live.call {
            self.by_id.remove(&id);
        }
        self.work.retain(|(k, _)| *k != key);
        let Some((script, report)) = self.probe_finish(key, live.call, live.script, report) else {
            return;
        };
        let Some((script, report)) = self.responder_finish(key, live.answering, script, report)
        else {
            return;
        };
        let result = script.finish(report.as_ref(), &live.ladder);
        if self.by_sip_id.get(&result.call_id) == Some(&key) {
            self.by_sip_id.remove(&result.call_id);
        }
        for sip_id in &live.more_sip_ids {
            if self.by_sip_id.get(sip_id) == Some(&key) {
                self.by_sip_id.remove(sip_id);
            }
        }
        self.results.push_back(result);
    }

    fn execute(&mut self, now: Instant, key: CallKey, command: ScriptCommand) {
        let rtp = self.cfg.rtp;
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        let id = live.call;
        let opened = live.opened;
        match command {
            ScriptCommand::Invite { target } => {
                let known = self
                    .cfg
                    .next_hop
                    .clone()
                    .or_else(|| D::from_uri(&target, self.cfg.local.transport))
                    .or_else(|| self.destinations.get(&target).cloned());
                match known {
                    Some(to) => self.place(now, key, target, to),
                    None => {
                        live.waiting = Some(Waiting::Resolve(target.clone()));
                        self.resolves.push_back((key, target));
                    }
                }
            }
            ScriptCommand::Accept if rtp => {
                live.opened = true;
                live.waiting = Some(Waiting::Accept);
                self.media.push_back((key, MediaCommand::Open));
            }
            ScriptCommand::Accept => {
                let media = self.local_media(DISCARD_PORT, true);
                self.accept(now, key, media);
            }
            ScriptCommand::Reinvite(media) => {
                let sent = match id {
                    Some(id) => self
                        .endpoint
                        .reinvite(now, id, *media)
                        .map_err(|e| CommandError::Refused(e.to_string())),
                    None => Err(CommandError::TransportGone),
                };
                live.script.handle_reinvite_sent(now, sent);
            }
            ScriptCommand::Transfer {
                target,
                referred_by,
            } => {
                let sent = match id {
                    Some(id) => self
                        .endpoint
                        .refer(now, id, &target, Some(&referred_by))
                        .map_err(|e| CommandError::Refused(e.to_string())),
                    None => Err(CommandError::TransportGone),
                };
                live.script.handle_transfer_sent(now, sent);
            }
            // A refused operation (the call's state moved on) changes nothing: the script
            // learns the call's fate from its events.
            ScriptCommand::Ring => {
                if let Some(id) = id {
                    let _ = self.endpoint.ring(now, id);
                }
            }
            ScriptCommand::Reject(code) => {
                if let Some(id) = id {
                    let _ = self.endpoint.reject(now, id, code);
                }
            }
            ScriptCommand::Hangup => {
                if let Some(id) = id {
                    let _ = self.endpoint.hangup(now, id);
                }
            }
            ScriptCommand::Cancel => {
                if let Some(id) = id {
                    let _ = self.endpoint.cancel(now, id);
                }
            }
            ScriptCommand::Follow {
                target,
                referred_by,
                replaces,
                local,
            } => {
                let mut extra: Vec<(String, String)> = referred_by
                    .map(|by| ("Referred-By".to_owned(), by))
                    .into_iter()
                    .collect();
                if let Some(replaces) = replaces {
                    extra.push(("Replaces".to_owned(), replaces));
                }
                let placed = self.new_call(now, key, target, extra, *local).map(|id| {
                    if let Some(live) = self.calls.get_mut(&key) {
                        live.pending = Some(id);
                    }
                });
                if let Some(live) = self.calls.get_mut(&key) {
                    live.script.handle_followed(now, placed);
                }
            }
            ScriptCommand::NotifyTransfer { call, code, reason } => {
                // Only a call of this script's (its REFER's dialog).
                if self.by_id.get(&call) == Some(&key) {
                    let _ = self.endpoint.notify_transfer(now, call, code, &reason);
                }
            }
            ScriptCommand::Consult { target, local } => {
                // The consultation is a call of its own: its own signature number.
                let signature = self.signatures.then_some(self.next_signature_call);
                let placed = self.new_call(now, key, target, Vec::new(), *local);
                let placed = placed.map(|id| {
                    if let Some(live) = self.calls.get_mut(&key) {
                        live.consult = Some(id);
                    }
                    if signature.is_some() {
                        self.next_signature_call += 1;
                    }
                    signature
                });
                if let Some(live) = self.calls.get_mut(&key) {
                    live.script.handle_consult_placed(now, placed);
                }
            }
            ScriptCommand::HangupConsult => {
                if let Some(consult) = live.consult {
                    let _ = self.endpoint.hangup(now, consult);
                }
            }
            ScriptCommand::CancelFollow => {
                if let Some(pending) = live.pending {
                    let _ = self.endpoint.hangup(now, pending);
                }
            }
            ScriptCommand::HangupOriginal(call) => {
                if live.original == Some(call) {
                    let _ = self.endpoint.hangup(now, call);
                }
            }
            ScriptCommand::Media(intent) if opened && live.answering.is_some() => {
                // What a responder's media does is its own (media held back until the ACK).
                self.responder_media(key, intent);
            }
            ScriptCommand::Media(MediaIntent::Start(negotiated)) if opened => {
                self.media
                    .push_back((key, MediaCommand::Start(*negotiated)));
            }
            ScriptCommand::Media(intent) if opened => {
                self.media.push_back((key, MediaCommand::Intent(intent)));
            }
            ScriptCommand::Media(_) => {}
            ScriptCommand::Work(work) => self.work.push_back((key, work)),
        }
    }

    /// Our media for the call to `target` at `to`: a new RTP socket first, with RTP.
    fn place(&mut self, now: Instant, key: CallKey, target: String, to: D) {
        if self.cfg.rtp {
            if let Some(live) = self.calls.get_mut(&key) {
                live.opened = true;
                live.waiting = Some(Waiting::Invite(target, to));
                self.media.push_back((key, MediaCommand::Open));
            }
        } else {
            let media = self.local_media(DISCARD_PORT, true);
            self.invite(now, key, target, to, media);
        }
    }

    /// Place the call and tell its script.
    fn invite(
        &mut self,
        now: Instant,
        key: CallKey,
        target: String,
        destination: D,
        media: LocalMedia,
    ) {
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(account) = live.account.as_ref() else {
            live.script
                .handle_placed(now, Err(CommandError::TransportGone));
            return;
        };
        let extra_headers = live
            .script
            .signature_call()
            .map(|n| (SIGNATURE_HEADER.to_owned(), n.to_string()))
            .into_iter()
            .collect();
        let mut outgoing = outgoing_call(
            account,
            target,
            destination,
            media,
            self.cfg.local.clone(),
            extra_headers,
            self.cfg.sips,
        );
        outgoing.max_redirects = live.script.max_redirects();
        let placed = self.send_invite(now, key, outgoing);
        if let Some(live) = self.calls.get_mut(&key) {
            live.script.handle_placed(now, placed);
        }
    }

    /// Send the INVITE of call `key` and note the call it makes (by its id, and by its SIP
    /// Call-ID for the ladder).
    fn send_invite(
        &mut self,
        now: Instant,
        key: CallKey,
        outgoing: OutgoingCall<D>,
    ) -> Result<Placed, CommandError> {
        let media = outgoing.local_media.clone();
        let id = self
            .endpoint
            .invite(now, outgoing)
            .map_err(|e| CommandError::Refused(e.to_string()))?;
        if let Some(live) = self.calls.get_mut(&key) {
            live.call = Some(id);
        }
        self.by_id.insert(id, key);
        let call_id = self
            .endpoint
            .sip_call_id(id)
            .unwrap_or_default()
            .to_string();
        if self.ladder_peer.is_some() {
            self.by_sip_id.insert(call_id.clone(), key);
        }
        Ok(Placed {
            call_id,
            local: media,
        })
    }

    /// Place a second call of call `key`'s script: a transfer's new call (`expect:
    /// transferred`) or an attended transfer's consultation call, to `target` with the
    /// `extra` headers, offering the call's own media (the same RTP socket). Its next hop is
    /// the role's server or outbound proxy, else the URI's address, else one resolved
    /// before for a call step (no name is resolved for it). The script's signature number
    /// is the one announced (the agent bumps it for a consultation).
    fn new_call(
        &mut self,
        now: Instant,
        key: CallKey,
        target: String,
        mut extra_headers: Vec<(String, String)>,
        local: LocalMedia,
    ) -> Result<CallId, CommandError> {
        let destination = self
            .cfg
            .next_hop
            .clone()
            .or_else(|| D::from_uri(&target, self.cfg.local.transport))
            .or_else(|| self.destinations.get(&target).cloned())
            .ok_or(CommandError::Unresolved)?;
        let live = self.calls.get(&key).ok_or(CommandError::TransportGone)?;
        let account = live.account.as_ref().ok_or(CommandError::TransportGone)?;
        if let Some(n) = live.script.signature_call() {
            extra_headers.push((SIGNATURE_HEADER.to_owned(), n.to_string()));
        }
        let outgoing = outgoing_call(
            account,
            target,
            destination,
            local,
            self.cfg.local.clone(),
            extra_headers,
            self.cfg.sips,
        );
        let id = self
            .endpoint
            .invite(now, outgoing)
            .map_err(|e| CommandError::Refused(e.to_string()))?;
        self.by_id.insert(id, key);
        let sip_id = self.endpoint.sip_call_id(id).map(str::to_owned);
        let ladders = self.ladder_peer.is_some();
        if let Some(live) = self.calls.get_mut(&key) {
            if let (true, Some(sip_id)) = (ladders, sip_id) {
                self.by_sip_id.insert(sip_id.clone(), key);
                live.more_sip_ids.push(sip_id);
            }
        }
        Ok(id)
    }

    /// An INVITE whose Replaces names our call `replaced` (RFC 3891, attended transfer):
    /// answered with that call's media, it takes the call's place in its script, and the
    /// replaced call is ended (BYE; CANCEL for an early one of ours). A call no live script
    /// holds is refused 481; a script without media of its own to answer with 488.
    fn replace(
        &mut self,
        now: Instant,
        call: CallId,
        replaced: CallId,
        signature_call: Option<u64>,
    ) {
        let Some(key) = self
            .by_id
            .get(&replaced)
            .copied()
            .filter(|k| self.calls.get(k).is_some_and(|l| l.call == Some(replaced)))
        else {
            let _ = self.endpoint.reject(now, call, 481);
            return;
        };
        if self.shut {
            let _ = self.endpoint.reject(now, call, 480);
            return;
        }
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(local) = live.script.local_media() else {
            let _ = self.endpoint.reject(now, call, 488);
            return;
        };
        let user = live.script.user().to_owned();
        self.endpoint.set_contact_user(call, &user);
        if self.endpoint.accept(now, call, local).is_err() {
            // Refused (488) and ended by the endpoint: the replaced call goes on.
            return;
        }
        let record = self.endpoint.record(replaced).cloned();
        let _ = self.endpoint.hangup(now, replaced);
        self.by_id.remove(&replaced);
        self.by_id.insert(call, key);
        let sip_id = self.endpoint.sip_call_id(call).map(str::to_owned);
        let ladders = self.ladder_peer.is_some();
        if let Some(live) = self.calls.get_mut(&key) {
            live.call = Some(call);
            if let (true, Some(sip_id)) = (ladders, sip_id) {
                self.by_sip_id.insert(sip_id.clone(), key);
                live.more_sip_ids.push(sip_id);
            }
            live.script.handle_replacing(now, signature_call, record);
        }
        self.settle(now, key);
    }

    /// Answer the call and tell its script.
    fn accept(&mut self, now: Instant, key: CallKey, media: LocalMedia) {
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        let responder = live.answering.is_some();
        let accepted: Result<(LocalMedia, Option<Negotiated>), CommandError> = match live.call {
            Some(id) => self
                .endpoint
                .accept(now, id, media.clone())
                .map(|negotiated| (media, negotiated))
                .map_err(|e| match e {
                    // A responder's line names what was offered and what it accepts.
                    CallError::Negotiation(n @ crate::sdp::NegotiationError::Srtp(_)) => {
                        CommandError::SrtpRefused(n.to_string())
                    }
                    CallError::Negotiation(n) if responder => CommandError::Refused(n.to_string()),
                    e => CommandError::Refused(e.to_string()),
                }),
            None => Err(CommandError::TransportGone),
        };
        if responder {
            let remote = accepted
                .as_ref()
                .ok()
                .and_then(|(_, n)| n.as_ref())
                .map(|n| n.remote_rtp.ip());
            let refusal = match &accepted {
                Err(CommandError::Refused(why) | CommandError::SrtpRefused(why)) => {
                    Some(why.clone())
                }
                _ => None,
            };
            self.responder_accepted(key, remote, refusal);
        }
        let Some(live) = self.calls.get_mut(&key) else {
            return;
        };
        live.script.handle_accepted(now, accepted);
    }

    /// Our side of the offer or answer on `port`; without RTP, `a=inactive` (RFC 3264
    /// §5.1, §6.1).
    fn local_media(&mut self, port: u16, inactive: bool) -> LocalMedia {
        let session = self.endpoint.ids().next_u64() >> 1;
        let mut media = LocalMedia::new(self.cfg.local.addr.ip(), port, session);
        media.codecs = self.cfg.codecs.clone();
        media.ptime_ms = self.cfg.ptime_ms;
        media.srtp = self.cfg.srtp.as_ref().and_then(SrtpConfig::local);
        if inactive {
            media.direction = sdp::Direction::Inactive;
        }
        media
    }
}

impl Agent<SocketAddr> {
    /// Keep each call's SIP messages, for its result's ladder (shown when it failed).
    pub fn record_ladders(&mut self) {
        self.ladder_peer = Some(|peer| *peer);
    }
}
