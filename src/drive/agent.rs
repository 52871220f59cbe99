//! The one driver loop of the core's [`Agent`], for `run`'s roles, `answer` and `call`.
//!
//! The agent decides everything; the [`Driver`] owns its socket (a [`Wire`]), its calls' media
//! streams and the wall clock. Each turn it sends what the agent asks, carries out its media
//! commands and name look-ups, hands on its results, then waits for one thing to happen (a
//! datagram, the agent's deadline, a media event or report, a resolved name, or what the
//! command itself listens to) and hands it to the agent.
//!
//! What differs between the commands is in two small hooks: [`Media`] (where an RTP socket
//! comes from, what a session plays and expects, what becomes of a recording) and [`Control`]
//! (what else wakes the loop — the executor's commands, Ctrl-C —, where results go, how a
//! transport failure is taken, and when the loop is over).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use sipcheck_core::media::intent::MediaEvent;
use sipcheck_core::media::session::{MediaReport, MediaSession};
use sipcheck_core::sdp::Negotiated;
use sipcheck_core::ua::agent::{Agent, CallKey, MediaCommand};
use sipcheck_core::ua::work::{Work, WorkResult};
use tokio::sync::mpsc;

use crate::drive::media::{EventSink, Finished, MediaHandle};
use crate::drive::transport::{Incoming, TransportError};
use crate::drive::wire::{SendFailed, Wire};

/// Where a driver's media streams come from and what becomes of them.
pub(crate) trait Media {
    /// A new RTP socket on `ip`, read from now on: its stream and its port.
    fn open(&mut self, ip: IpAddr) -> std::io::Result<(MediaHandle, u16)>;

    /// Whether a stream's events (tones heard, DTMF) go to the agent.
    fn events(&self) -> bool {
        true
    }

    /// The session a call's stream runs with `negotiated` (`None`: none can be made).
    fn session(&mut self, now: Instant, negotiated: &Negotiated) -> Option<MediaSession>;

    /// Call `key`'s stream is being stopped for its report.
    fn stopping(&mut self, _agent: &Agent<SocketAddr>, _key: CallKey) {}

    /// Call `key`'s stream stopped: what it finished with (its recording kept or written),
    /// and the report for its call.
    fn stopped(&mut self, key: CallKey, finished: Option<Box<Finished>>) -> Option<MediaReport>;
}

/// What a command does around the loop: what else wakes it, where results go, how a failed
/// transport is taken, when it is over.
pub(crate) trait Control<M> {
    /// Something of the command's own that woke the loop.
    type Wake;
    /// What the loop ends with.
    type Done;
    /// Why the loop failed.
    type Error;

    /// Wait for something of the command's own (never resolving when there is nothing).
    fn wake(&mut self) -> impl Future<Output = Self::Wake>;

    /// Hand it to the agent; `Some` ends the loop at once.
    fn handle(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        wake: Self::Wake,
    ) -> Result<Option<Self::Done>, Self::Error>;

    /// Take the agent's results (its calls', its registrations').
    fn results(&mut self, agent: &mut Agent<SocketAddr>, media: &mut M);

    /// Whether the loop is over, once the agent has done all it had to do now; `stopping`
    /// streams are still on their way to their reports.
    fn poll_done(
        &mut self,
        agent: &mut Agent<SocketAddr>,
        stopping: usize,
    ) -> Result<Option<Self::Done>, Self::Error>;

    /// The transport failed as it was read: whether it is still open.
    fn transport_failed(
        &mut self,
        wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        error: TransportError,
    ) -> Result<bool, Self::Error>;

    /// A message the agent asked for could not be sent over a connection.
    fn send_failed(
        &mut self,
        wire: &mut Wire,
        agent: &mut Agent<SocketAddr>,
        failed: SendFailed,
    ) -> Result<(), Self::Error>;
}

/// The most computations (PESQ scores) run at once, each on a blocking worker thread; the
/// others wait in order.
const WORKERS: usize = 2;

/// The most messages already received that one turn of the loop hands the agent.
const READY_PER_TURN: usize = 256;

/// Replies about the calls, from the tasks that carry out their slow work.
type Pipe<T> = (
    mpsc::UnboundedSender<(CallKey, T)>,
    mpsc::UnboundedReceiver<(CallKey, T)>,
);

/// What woke the loop.
enum Wake<W> {
    Incoming(Result<Incoming, TransportError>),
    Timer,
    Media(CallKey, MediaEvent),
    Stopped(CallKey, Option<Box<Finished>>),
    Resolved(CallKey, Option<SocketAddr>),
    Worked(CallKey, Option<WorkResult>),
    Own(W),
}

/// An agent on its socket, with its calls' media streams and the wall clock.
pub(crate) struct Driver<M> {
    /// The socket.
    pub(crate) wire: Wire,
    /// The agent.
    pub(crate) agent: Agent<SocketAddr>,
    /// Where the streams come from.
    pub(crate) media: M,
    streams: HashMap<CallKey, MediaHandle>,
    /// The streams not yet told their call's Call-ID (`--pcap-calls`): a caller's is made
    /// as its INVITE is sent, after its stream opened for the offer.
    untagged: Vec<CallKey>,
    /// The calls begun that are to be told to the capture (`--pcap-calls`) once they have
    /// their Call-ID (a caller's, once its INVITE is sent).
    untold: Vec<CallKey>,
    media_events: Pipe<MediaEvent>,
    /// Streams being stopped for their report (one task per stopped stream waits for it
    /// beside the loop, never in it: at hundreds of calls ending a second, waiting here
    /// would hold up every other call's signaling).
    stopping: usize,
    stopped: Pipe<Option<Box<Finished>>>,
    resolved: Pipe<Option<SocketAddr>>,
    /// The calls' computations, run on blocking workers ([`WORKERS`] at most; never in the
    /// loop: a PESQ score would hold up every other call's signalling), those waiting
    /// their turn, and the results.
    work_queue: WorkQueue<CallKey, Work>,
    worked: Pipe<Option<WorkResult>>,
    /// The agent's timer, kept across turns, and the deadline it is set to.
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
    transport_open: bool,
}

/// An instant far enough never to come.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl<M: Media> Driver<M> {
    /// `agent` on `wire`, its streams from `media`.
    pub(crate) fn new(wire: Wire, agent: Agent<SocketAddr>, media: M) -> Self {
        Self {
            wire,
            agent,
            media,
            streams: HashMap::new(),
            untagged: Vec::new(),
            untold: Vec::new(),
            media_events: mpsc::unbounded_channel(),
            stopping: 0,
            stopped: mpsc::unbounded_channel(),
            resolved: mpsc::unbounded_channel(),
            work_queue: WorkQueue::default(),
            worked: mpsc::unbounded_channel(),
            timer: Box::pin(tokio::time::sleep_until(far().into())),
            armed: None,
            transport_open: true,
        }
    }

    /// Drive the agent until `control` says it is over.
    pub(crate) async fn run<C: Control<M>>(
        &mut self,
        control: &mut C,
    ) -> Result<C::Done, C::Error> {
        loop {
            self.service(control).await?;
            if let Some(done) = control.poll_done(&mut self.agent, self.stopping)? {
                return Ok(done);
            }
            let deadline = self.agent.poll_timeout();
            if deadline != self.armed {
                self.armed = deadline;
                self.timer
                    .as_mut()
                    .reset(deadline.unwrap_or_else(far).into());
            }
            let wake = tokio::select! {
                incoming = self.wire.socket.recv(), if self.transport_open => Wake::Incoming(incoming),
                () = &mut self.timer, if deadline.is_some() => Wake::Timer,
                Some((key, event)) = self.media_events.1.recv() => Wake::Media(key, event),
                Some((key, finished)) = self.stopped.1.recv() => Wake::Stopped(key, finished),
                Some((key, to)) = self.resolved.1.recv() => Wake::Resolved(key, to),
                Some((key, result)) = self.worked.1.recv() => Wake::Worked(key, result),
                own = control.wake() => Wake::Own(own),
            };
            let now = Instant::now();
            match wake {
                Wake::Incoming(Ok(incoming)) => {
                    self.wire.deliver(&mut self.agent, incoming);
                    self.deliver_ready(control)?;
                }
                Wake::Incoming(Err(e)) => {
                    self.transport_open =
                        control.transport_failed(&mut self.wire, &mut self.agent, e)?;
                }
                Wake::Timer => {
                    self.armed = None;
                    self.agent.handle_timeout(now);
                }
                Wake::Media(key, event) => self.agent.handle_media_event(now, key, event),
                Wake::Stopped(key, finished) => self.media_stopped(key, finished),
                Wake::Resolved(key, to) => self.agent.handle_resolved(now, key, to),
                Wake::Worked(key, result) => {
                    self.work_queue.done();
                    // No result (the computation panicked): the step gives up at its bound.
                    if let Some(result) = result {
                        self.agent.handle_work_done(now, key, result);
                    }
                }
                Wake::Own(own) => {
                    if let Some(done) = control.handle(&mut self.agent, own)? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    /// Hand the agent the messages already received as well (up to [`READY_PER_TURN`] in
    /// all), not one per turn of the loop: a turn that starts a call may wait for its new
    /// connection, behind every other task of the runtime (a TLS handshake each, under load),
    /// and the responses to the calls under way must not wait behind the calls being started.
    fn deliver_ready<C: Control<M>>(&mut self, control: &mut C) -> Result<(), C::Error> {
        for _ in 1..READY_PER_TURN {
            // Every socket's `recv` is cancel-safe: a message not ready now is read later.
            match self.wire.socket.recv().now_or_never() {
                Some(Ok(incoming)) => self.wire.deliver(&mut self.agent, incoming),
                Some(Err(e)) => {
                    self.transport_open =
                        control.transport_failed(&mut self.wire, &mut self.agent, e)?;
                    if !self.transport_open {
                        break;
                    }
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Wait until `until` at most for the reports of the streams being stopped, handing
    /// each to its call (nothing else is read meanwhile).
    pub(crate) async fn finish_stopping<C: Control<M>>(
        &mut self,
        control: &mut C,
        until: Instant,
    ) -> Result<(), C::Error> {
        while self.stopping > 0 && Instant::now() < until {
            self.service(control).await?;
            let Ok(Some((key, finished))) =
                tokio::time::timeout_at(until.into(), self.stopped.1.recv()).await
            else {
                break;
            };
            self.media_stopped(key, finished);
        }
        Ok(())
    }

    /// Everything the agent has to do now: send, open and drive media, resolve, hand on
    /// its results.
    pub(crate) async fn service<C: Control<M>>(&mut self, control: &mut C) -> Result<(), C::Error> {
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
                        control.send_failed(&mut self.wire, &mut self.agent, failed)?;
                    }
                }
            }
            while let Some((key, command)) = self.agent.poll_media() {
                busy = true;
                self.media_command(key, command);
            }
            self.tag_streams();
            self.tell_ends();
            while let Some((key, target)) = self.agent.poll_resolve() {
                let resolved = self.resolved.0.clone();
                tokio::spawn(async move {
                    let to = resolve_uri_host(&target).await;
                    let _ = resolved.send((key, to));
                });
            }
            while let Some(work) = self.agent.poll_work() {
                self.work_queue.push(work);
            }
            self.start_work();
            control.results(&mut self.agent, &mut self.media);
            // Requests of our own are all registrations, whose events the agent took.
            while self.agent.poll_request_event().is_some() {}
            if !busy {
                return Ok(());
            }
        }
    }

    /// Start the queued computations, [`WORKERS`] at once at most, skipping those of calls
    /// gone meanwhile.
    fn start_work(&mut self) {
        let agent = &self.agent;
        while let Some((key, work)) = self.work_queue.next(|key| agent.has_call(*key)) {
            let worked = self.worked.0.clone();
            let running = tokio::task::spawn_blocking(move || work.run());
            tokio::spawn(async move {
                let _ = worked.send((key, running.await.ok()));
            });
        }
    }

    /// Tell the streams not tagged yet their call's Call-ID once it has one (it has, at the
    /// latest, once its INVITE was sent: before any RTP can come from the far end).
    fn tag_streams(&mut self) {
        if self.untagged.is_empty() {
            return;
        }
        let (agent, streams) = (&self.agent, &self.streams);
        self.untagged.retain(|key| {
            let Some(stream) = streams.get(key) else {
                return false;
            };
            match agent.call_label(*key) {
                Some((_, call_id)) if !call_id.is_empty() => {
                    stream.set_call(call_id);
                    false
                }
                Some(_) => true,
                None => false,
            }
        });
    }

    /// Tell the capture of each call begun (an end of its Call-ID in this process), once it
    /// has its Call-ID: a passed call's packets are dropped once every end told of has its
    /// verdict. Before the results are handed on: a call refused as its INVITE came is told
    /// before its end.
    fn tell_ends(&mut self) {
        let selective = crate::drive::capture::selective();
        while let Some((key, call_id)) = self.agent.poll_begun() {
            if !selective {
                continue;
            }
            if call_id.is_empty() {
                self.untold.push(key);
            } else {
                crate::drive::capture::call_begun(&call_id);
            }
        }
        if self.untold.is_empty() {
            return;
        }
        let agent = &self.agent;
        self.untold.retain(|key| match agent.call_label(*key) {
            Some((_, call_id)) if !call_id.is_empty() => {
                crate::drive::capture::call_begun(call_id);
                false
            }
            Some(_) => true,
            None => false,
        });
    }

    fn media_command(&mut self, key: CallKey, command: MediaCommand) {
        let now = Instant::now();
        match command {
            MediaCommand::Open => {
                let opened =
                    self.media
                        .open(self.wire.socket.local_addr().ip())
                        .map(|(handle, port)| {
                            if self.media.events() {
                                handle.set_events(EventSink::tagged(
                                    self.media_events.0.clone(),
                                    key,
                                ));
                            }
                            if crate::drive::capture::selective() {
                                self.untagged.push(key);
                            }
                            self.streams.insert(key, handle);
                            port
                        });
                self.agent
                    .handle_media_opened(now, key, opened.map_err(|e| e.to_string()));
            }
            MediaCommand::Start(negotiated) => {
                if let Some(handle) = self.streams.get(&key) {
                    if let Some(mut session) = self.media.session(now, &negotiated) {
                        // SRTP when negotiated: sent protected, received unprotected.
                        session.follow_srtp(negotiated.srtp.as_ref());
                        handle.start(session, negotiated.remote_rtp);
                    }
                }
            }
            MediaCommand::Intent(intent) => {
                if let Some(handle) = self.streams.get(&key) {
                    handle.apply(intent);
                }
            }
            MediaCommand::Stop { report } => match (self.streams.remove(&key), report) {
                (Some(handle), true) => {
                    self.media.stopping(&self.agent, key);
                    self.stopping += 1;
                    let stopped = self.stopped.0.clone();
                    tokio::spawn(async move {
                        let finished = handle.stop().await.map(Box::new);
                        let _ = stopped.send((key, finished));
                    });
                }
                (None, true) => self.agent.handle_media_stopped(now, key, None),
                (_, false) => {}
            },
        }
    }

    /// A stream stopped: what it reported up to its end first (a tone heard just before
    /// the call ended), then its report to its call (whose result follows).
    fn media_stopped(&mut self, key: CallKey, finished: Option<Box<Finished>>) {
        self.stopping = self.stopping.saturating_sub(1);
        while let Ok((key, event)) = self.media_events.1.try_recv() {
            self.agent.handle_media_event(Instant::now(), key, event);
        }
        let report = self.media.stopped(key, finished);
        self.agent.handle_media_stopped(Instant::now(), key, report);
    }
}

/// Computations waiting for a worker, and how many run ([`WORKERS`] at most).
struct WorkQueue<K, W> {
    running: usize,
    queue: VecDeque<(K, W)>,
}

impl<K, W> Default for WorkQueue<K, W> {
    fn default() -> Self {
        Self {
            running: 0,
            queue: VecDeque::new(),
        }
    }
}

impl<K, W> WorkQueue<K, W> {
    fn push(&mut self, item: (K, W)) {
        self.queue.push_back(item);
    }

    /// The next computation to start, in order, when a worker is free (counted running from
    /// now), skipping those whose call is no longer `live`.
    fn next(&mut self, live: impl Fn(&K) -> bool) -> Option<(K, W)> {
        while self.running < WORKERS {
            let (key, work) = self.queue.pop_front()?;
            if live(&key) {
                self.running += 1;
                return Some((key, work));
            }
        }
        None
    }

    /// A computation finished (or failed): its worker is free.
    fn done(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

/// The address of a SIP URI's host (port 5060 by default).
async fn resolve_uri_host(uri: &str) -> Option<SocketAddr> {
    let target = sipcheck_core::sip::uri::SipTarget::parse(uri).ok()?;
    crate::drive::transport::resolve(&target.host_port(5060), 5060)
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use super::{WorkQueue, WORKERS};

    #[test]
    fn computations_run_two_at_once_in_order_skipping_calls_gone() {
        assert_eq!(WORKERS, 2);
        let mut q = WorkQueue::default();
        for key in 1..=5 {
            q.push((key, format!("work {key}")));
        }
        let live = |key: &i32| *key != 3;
        assert_eq!(q.next(live), Some((1, "work 1".to_string())));
        assert_eq!(q.next(live), Some((2, "work 2".to_string())));
        assert_eq!(q.next(live), None, "two run, the others wait");
        q.done();
        // The call of 3 is gone: 4 is next.
        assert_eq!(q.next(live), Some((4, "work 4".to_string())));
        assert_eq!(q.next(live), None);
        q.done();
        q.done();
        assert_eq!(q.next(live), Some((5, "work 5".to_string())));
        assert_eq!(q.next(live), None, "nothing left");
    }
}

#[cfg(test)]
mod turn_tests {
    use std::time::{Duration, Instant};

    use sipcheck_core::sdp::Negotiated;
    use sipcheck_core::ua::agent::{Agent, CallKey};

    use super::{Control, Driver, Media};
    use crate::drive::fixture;
    use crate::drive::media::{Finished, MediaHandle};
    use crate::drive::transport::{SipSocket, TransportError, UdpTransport};
    use crate::drive::wire::{SendFailed, Wire};

    struct NoMedia;

    impl Media for NoMedia {
        fn open(&mut self, _ip: std::net::IpAddr) -> std::io::Result<(MediaHandle, u16)> {
            Err(std::io::ErrorKind::Unsupported.into())
        }
        fn session(
            &mut self,
            _now: Instant,
            _negotiated: &Negotiated,
        ) -> Option<sipcheck_core::media::session::MediaSession> {
            None
        }
        fn stopped(
            &mut self,
            _key: CallKey,
            _finished: Option<Box<Finished>>,
        ) -> Option<sipcheck_core::media::session::MediaReport> {
            None
        }
    }

    /// Always has something of its own to do at once (as a run's executor has calls to
    /// start when behind); over after `turns` of them.
    struct Busy {
        turns: usize,
    }

    impl Control<NoMedia> for Busy {
        type Wake = ();
        type Done = ();
        type Error = std::convert::Infallible;

        async fn wake(&mut self) {}

        fn handle(
            &mut self,
            _agent: &mut Agent<std::net::SocketAddr>,
            (): (),
        ) -> Result<Option<()>, Self::Error> {
            self.turns -= 1;
            Ok((self.turns == 0).then_some(()))
        }

        fn results(&mut self, _agent: &mut Agent<std::net::SocketAddr>, _media: &mut NoMedia) {}

        fn poll_done(
            &mut self,
            _agent: &mut Agent<std::net::SocketAddr>,
            _stopping: usize,
        ) -> Result<Option<()>, Self::Error> {
            Ok(None)
        }

        fn transport_failed(
            &mut self,
            _wire: &mut Wire,
            _agent: &mut Agent<std::net::SocketAddr>,
            _error: TransportError,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }

        fn send_failed(
            &mut self,
            _wire: &mut Wire,
            _agent: &mut Agent<std::net::SocketAddr>,
            _failed: SendFailed,
        ) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn options(n: usize, to: std::net::SocketAddr, from: std::net::SocketAddr) -> Vec<u8> {
        format!(
            "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKturn{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:test@{from}>;tag=t{n}\r\nTo: <sip:{to}>\r\n\
             Call-ID: turn-{n}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Messages already received all reach the agent in the turn the first of them wakes,
    /// not one per turn: while the loop has other work at every turn (calls to start, each
    /// perhaps waiting for a connection), responses to the calls under way would otherwise
    /// queue behind it (calls over TLS failed at their timeout with their 200 OK received
    /// but not handed on).
    #[tokio::test]
    async fn messages_already_received_are_all_handed_on_in_one_turn() {
        const MESSAGES: usize = 100;
        const TURNS: usize = 20;
        let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 1 << 20)
            .await
            .unwrap();
        let addr = udp.local_addr();
        let agent = fixture::agent("", addr);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = peer.local_addr().unwrap();
        for n in 0..MESSAGES {
            peer.send_to(&options(n, addr, from), addr).unwrap();
        }
        // Over loopback each datagram is in the driver's socket once `send_to` returns; a
        // pause lets the runtime's reactor see it (the loop's own work, always ready, never
        // parks the runtime).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut driver = Driver::new(Wire::new(SipSocket::Udp(udp), None), agent, NoMedia);
        let mut control = Busy { turns: TURNS };
        driver.run(&mut control).await.unwrap();
        // What the last turn delivered is answered before the loop ends.
        driver.service(&mut control).await.unwrap();

        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut answered = 0;
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = peer.recv_from(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                answered += 1;
            }
        }
        // Without handing on what is ready, one message a turn: 5 of the 100 were answered
        // in the 20 turns.
        assert_eq!(answered, MESSAGES, "answered within {TURNS} turns");
    }
}
