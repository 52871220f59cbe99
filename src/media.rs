//! Media I/O: an RTP socket per call, driven by a few scheduler threads.
//!
//! The session (pacing, encoding, receiving, detection) is the core's; this module binds the
//! socket and hands the stream to one scheduler thread (one per core), which wakes on a 1 ms
//! grid, reads what arrived for the streams due on that tick and sends what their schedules
//! make due. Symmetric RTP: packets leave from the port advertised in our SDP.

use std::collections::{HashMap, VecDeque};
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use sipcheck_core::media::dtmf::DtmfConfig;
use sipcheck_core::media::intent::{MediaEvent, MediaIntent, Watches};
use sipcheck_core::media::session::{MediaError, MediaReport, MediaSession, MAX_PACKET};
use slab::Slab;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// A range of local RTP ports, handed out round-robin (even ports, RTP convention), from a
/// random place of the range: a new process does not take the ports the previous one just
/// left first (where a far end may still be streaming to that one's calls).
///
/// The range is exact and inclusive: its even ports are used, and a range without one (a
/// single odd port) uses that port. No port outside it is ever bound (`0-0` alone means a
/// port the system picks, for tests).
#[derive(Debug)]
pub struct PortRange {
    /// The range as given, for messages.
    first: u16,
    last: u16,
    /// The candidate ports: `base + step·k` for `k < count`.
    base: u16,
    step: u16,
    count: u32,
    /// The index of the next candidate, round-robin (taken modulo `count`).
    next: AtomicU32,
}

impl PortRange {
    /// Ports `first..=last`, the round-robin starting at a random even port of them.
    pub fn new(first: u16, last: u16) -> Self {
        Self::starting_at(first, last, crate::probe::client::os_seed())
    }

    /// Ports `first..=last`, the round-robin starting at the even port `seed` picks.
    fn starting_at(first: u16, last: u16, seed: u64) -> Self {
        let last = last.max(first);
        let even = u32::from(first) + u32::from(first % 2);
        let (base, step, count) = if even <= u32::from(last) {
            // `even <= last`, so it fits a u16.
            let base = u16::try_from(even).unwrap_or(last);
            (base, 2, u32::from(last - base) / 2 + 1)
        } else {
            // A single odd port.
            (first, 1, 1)
        };
        let offset = u32::try_from(mix(seed) % u64::from(count)).unwrap_or(0);
        Self {
            first,
            last,
            base,
            step,
            count,
            next: AtomicU32::new(offset),
        }
    }

    /// The candidate port of index `k` (taken modulo the number of candidates).
    fn port(&self, k: u32) -> u16 {
        let k = k % self.count;
        // `base + step·k <= last`, so it fits a u16.
        u16::try_from(u32::from(self.base) + u32::from(self.step) * k).unwrap_or(self.base)
    }

    /// Bind a UDP socket on `ip` at the next free port of the range (an even one, unless the
    /// range is a single odd port); an error names the port or range. Ports are handed out
    /// round-robin, so a busy one is rare until the range is nearly full; after a busy one,
    /// ports spread over the range are tried, and after [`PORT_ATTEMPTS`] busy ports the range
    /// counts as exhausted (an error for this call) instead of every port being tried for
    /// every new call.
    pub async fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        UdpSocket::from_std(self.bind_std(ip)?)
    }

    /// [`PortRange::bind`] without the async runtime: a non-blocking std socket, for
    /// [`MediaHandle::spawn_std`] (the scheduler threads read it; the runtime never does).
    pub fn bind_std(&self, ip: IpAddr) -> std::io::Result<std::net::UdpSocket> {
        let ports = self.count;
        let attempts = ports.min(PORT_ATTEMPTS);
        let mut last_err = None;
        for attempt in 0..attempts {
            let port = if attempt == 0 || attempts == ports {
                // Round-robin: the next port, usually free.
                self.port(self.next.fetch_add(1, Ordering::Relaxed) % ports)
            } else {
                // Then ports spread over the whole range, so that a block held by another
                // program does not look like exhaustion.
                let spread = mix(u64::from(self.next.load(Ordering::Relaxed)) ^ u64::from(attempt));
                self.port(u32::try_from(spread % u64::from(ports)).unwrap_or(0))
            };
            match std::net::UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    return Ok(socket);
                }
                Err(e)
                    if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32)
                        || e.raw_os_error() == Some(nix::errno::Errno::ENFILE as i32) =>
                {
                    // No port is at fault: the process (or the system) is out of files.
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("out of file descriptors (raise ulimit -n): {e}"),
                    ));
                }
                Err(e) => last_err = Some((port, e)),
            }
        }
        Err(match last_err {
            Some((_, e)) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "RTP port range {}-{} exhausted ({attempts} ports tried, all in use)",
                        self.first, self.last
                    ),
                )
            }
            Some((port, e)) => std::io::Error::new(
                e.kind(),
                format!(
                    "RTP port {port} (of the range {}-{}): {e}",
                    self.first, self.last
                ),
            ),
            None => std::io::Error::other("empty RTP port range"),
        })
    }
}

/// SplitMix64's finaliser: spreads consecutive inputs over the whole `u64` range.
fn mix(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How many busy ports make [`PortRange::bind`] give up.
pub const PORT_ATTEMPTS: u32 = 64;

impl Default for PortRange {
    fn default() -> Self {
        Self::new(20_000, 29_998)
    }
}

type SessionFn = Box<dyn FnOnce(&mut MediaSession, Instant) + Send>;
type WatchFn = Box<dyn FnMut(&MediaSession, Instant) -> bool + Send>;

enum Command {
    With(SessionFn),
    Watch(WatchFn, oneshot::Sender<()>),
    Dtmf(String, oneshot::Sender<Result<(), MediaError>>),
    Push(Vec<f32>),
    Pull(oneshot::Sender<Vec<f32>>),
    Sending(bool),
    Expecting(bool),
    Remote(SocketAddr),
    /// An intent of a call's script, applied to the session (see [`MediaHandle::apply`]).
    Apply(MediaIntent),
    /// Where the stream's [`MediaEvent`]s go.
    Events(tokio::sync::mpsc::UnboundedSender<MediaEvent>),
    /// A listening stream gets its session (see [`MediaHandle::listen_std`]).
    Start(Box<(MediaSession, SocketAddr)>),
    Stop(oneshot::Sender<Finished>),
    /// Every handle is gone without a stop: drop the stream.
    Forget,
}

enum Message {
    Add(u64, Box<NewStream>),
    Listen(u64, std::net::UdpSocket),
    To(u64, Command),
}

struct NewStream {
    socket: std::net::UdpSocket,
    session: MediaSession,
    remote: SocketAddr,
}

/// What a media stream hands back when stopped.
#[derive(Debug)]
pub struct Finished {
    /// The session's summary.
    pub report: MediaReport,
    /// The recording, if asked for.
    pub recording: Option<Vec<i16>>,
}

/// A media stream driven by one of the scheduler threads; clones share the stream, which is
/// dropped when the last clone goes (or at [`MediaHandle::stop`]).
#[derive(Debug, Clone)]
pub struct MediaHandle {
    stream: Arc<StreamRef>,
    /// The local RTP address (as advertised in SDP).
    pub local: SocketAddr,
}

#[derive(Debug)]
struct StreamRef {
    id: u64,
    worker: &'static Worker,
}

impl StreamRef {
    fn send(&self, command: Command) -> bool {
        self.worker.send(Message::To(self.id, command))
    }
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.send(Command::Forget);
    }
}

impl MediaHandle {
    /// Start driving `session` on `socket`, sending to `remote`.
    pub fn spawn(socket: UdpSocket, session: MediaSession, remote: SocketAddr) -> Self {
        let socket = socket.into_std().expect("a socket of this runtime");
        Self::spawn_std(socket, session, remote)
    }

    /// [`MediaHandle::spawn`] for a non-blocking std socket (from [`PortRange::bind_std`]).
    pub fn spawn_std(
        socket: std::net::UdpSocket,
        session: MediaSession,
        remote: SocketAddr,
    ) -> Self {
        let local = socket.local_addr().expect("bound socket");
        tracing::trace!(target: "rtp", %local, %remote, "rtp stream started");
        let (id, worker) = engine().place();
        worker.send(Message::Add(
            id,
            Box::new(NewStream {
                socket,
                session,
                remote,
            }),
        ));
        Self {
            stream: Arc::new(StreamRef { id, worker }),
            local,
        }
    }

    /// Read `socket` from now on, before the session exists: an offerer must be ready to
    /// receive as soon as its offer is sent (RFC 3264 §5.1), and a far end may start its RTP
    /// with its answer, before that answer has reached us (a lost and retransmitted 200).
    /// What arrives is kept, with its arrival time, up to [`EARLY_PACKETS`] packets (the
    /// newest), and handed to the session at [`MediaHandle::start`]; left unread, the socket's
    /// buffer would overflow after a few seconds and its drops would be counted as loss on
    /// the network. Until then the stream takes no other command.
    pub fn listen_std(socket: std::net::UdpSocket) -> Self {
        let local = socket.local_addr().expect("bound socket");
        tracing::trace!(target: "rtp", %local, "rtp socket listening");
        let (id, worker) = engine().place();
        worker.send(Message::Listen(id, socket));
        Self {
            stream: Arc::new(StreamRef { id, worker }),
            local,
        }
    }

    /// [`MediaHandle::listen_std`] for a tokio socket.
    pub fn listen(socket: UdpSocket) -> Self {
        Self::listen_std(socket.into_std().expect("a socket of this runtime"))
    }

    /// Give a listening stream its session: what arrived so far goes to it first, then it
    /// runs as if spawned now. No effect on a stream that was started already.
    pub fn start(&self, session: MediaSession, remote: SocketAddr) {
        tracing::trace!(target: "rtp", local = %self.local, %remote, "rtp stream started");
        self.stream
            .send(Command::Start(Box::new((session, remote))));
    }

    /// Send DTMF digits as RFC 4733 events.
    pub async fn send_dtmf(&self, digits: &str) -> Result<(), MediaError> {
        tracing::trace!(target: "rtp", local = %self.local, digits, "rtp dtmf events sent");
        let (tx, rx) = oneshot::channel();
        self.stream.send(Command::Dtmf(digits.to_string(), tx));
        rx.await.unwrap_or(Ok(()))
    }

    /// Queue samples to send (bridge mode): 8 kHz mono in [-1, 1].
    pub fn push_audio(&self, samples: Vec<f32>) {
        self.stream.send(Command::Push(samples));
    }

    /// The decoded audio received since the last call (bridge mode): 8 kHz mono in [-1, 1].
    pub async fn pull_audio(&self) -> Vec<f32> {
        let (tx, rx) = oneshot::channel();
        if !self.stream.send(Command::Pull(tx)) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Run `f` on the session on its scheduler thread (at `now`) and return its result;
    /// `None` when the stream has stopped.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MediaSession, Instant) -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: SessionFn = Box::new(move |session, now| {
            let _ = tx.send(f(session, now));
        });
        if !self.stream.send(Command::With(job)) {
            return None;
        }
        rx.await.ok()
    }

    /// Resolves once `condition` holds. The scheduler evaluates it when the watch is set and
    /// after each of the stream's frame ticks (every ptime, when received audio is played
    /// out and detected); the receiver errors if the stream stops first.
    pub fn watch(
        &self,
        condition: impl FnMut(&MediaSession, Instant) -> bool + Send + 'static,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.stream.send(Command::Watch(Box::new(condition), tx));
        rx
    }

    /// Send this stream's [`MediaEvent`]s (watches resolved, status asked) to `events`.
    pub fn set_events(&self, events: tokio::sync::mpsc::UnboundedSender<MediaEvent>) {
        self.stream.send(Command::Events(events));
    }

    /// Carry out an intent of a call's script: on the stream (remote address, direction,
    /// sending) here, on the session on its scheduler thread (playlist, watches, DTMF,
    /// status), whose events go where [`MediaHandle::set_events`] said.
    /// [`MediaIntent::Start`] needs a session, given with [`MediaHandle::start`].
    pub fn apply(&self, intent: MediaIntent) {
        match intent {
            MediaIntent::Start(_) => {}
            MediaIntent::Remote(remote) => self.set_remote(remote),
            MediaIntent::Follow(negotiated) => self.follow(&negotiated),
            MediaIntent::SetSending(send) => self.set_sending(send),
            intent => {
                self.stream.send(Command::Apply(intent));
            }
        }
    }

    /// Start or stop sending (hold).
    pub fn set_sending(&self, send: bool) {
        tracing::trace!(target: "rtp", local = %self.local, send, "rtp sending changed");
        self.stream.send(Command::Sending(send));
    }

    /// Whether RTP is expected from the far end (not while the call is on hold either way):
    /// the RTP gap does not count while it is not.
    pub fn set_expecting(&self, expecting: bool) {
        self.stream.send(Command::Expecting(expecting));
    }

    /// Follow new media of the call (a re-INVITE or UPDATE, hold or resume either way): the
    /// remote address, whether we send, whether RTP is expected.
    pub fn follow(&self, negotiated: &sipcheck_core::sdp::Negotiated) {
        self.set_remote(negotiated.remote_rtp);
        self.set_sending(negotiated.direction.sends());
        self.set_expecting(negotiated.expects_rtp());
    }

    /// Send to a new remote address (re-INVITE).
    pub fn set_remote(&self, remote: SocketAddr) {
        tracing::trace!(target: "rtp", local = %self.local, %remote, "rtp remote changed");
        self.stream.send(Command::Remote(remote));
    }

    /// Stop the stream and take its report.
    pub async fn stop(&self) -> Option<Finished> {
        let (tx, rx) = oneshot::channel();
        if !self.stream.send(Command::Stop(tx)) {
            return None;
        }
        let finished: Option<Finished> = rx.await.ok();
        if let Some(f) = &finished {
            tracing::trace!(
                target: "rtp",
                local = %self.local,
                sent = f.report.packets_sent,
                received = f.report.receive.received,
                wrong_payload_type = f.report.wrong_payload_type,
                "rtp stream stopped"
            );
        }
        finished
    }
}

// ---------------------------------------------------------------------------------------
// The scheduler threads.
//
// Each thread owns a slab of streams and a timing wheel of 1 ms slots. A new stream is put on
// the least crowded phase of the next 20 ms (its schedule re-anchored on the thread's 1 ms
// grid), so the thread wakes on the 1 ms ticks that have streams due (at least every
// MAX_NAP ms while it has any) and serves only the streams due on that tick: it drains the
// stream's socket (one `recvmmsg`, arrival times from the kernel's `SO_TIMESTAMPNS` stamps, so
// jitter is measured at arrival, not at the tick), then sends what the session's schedule
// makes due. RTP timestamps and sequence numbers come from the schedule, never from the
// wake-up time. No per-packet wake-ups, no epoll, and commands wait in a mailbox for the next
// wake-up instead of waking the thread. Per-call sockets are kept (symmetric
// RTP: a stream sends from the port its SDP advertises, which SBCs and NATs latch on), so
// each packet is its own `sendto`.

/// 1 ms slots; a ptime is at most 60 ms, so every due time fits in the wheel.
const WHEEL: usize = 128;
const TICK_NANOS: u128 = 1_000_000;
/// Datagrams read per `recvmmsg` call.
const RX_BATCH: usize = 8;
const RX_BUF: usize = 2048;
/// The longest a datagram can plausibly wait in its socket before its stream's tick.
const MAX_QUEUED: Duration = Duration::from_secs(1);
/// The most packets a listening stream keeps before its session starts (the newest):
/// 20 s of 20 ms packets.
pub const EARLY_PACKETS: usize = 1_000;
/// The longest a scheduler thread with streams sleeps without a tick to run, in ticks.
const MAX_NAP: u64 = 5;
/// The media threads' timer slack (Linux), in nanoseconds.
#[cfg(target_os = "linux")]
const TIMER_SLACK_NS: std::ffi::c_ulong = 1_000;
/// How often a listening stream's socket is read.
const LISTEN_EVERY: Duration = Duration::from_millis(20);

struct Engine {
    workers: Vec<&'static Worker>,
    next_id: AtomicU64,
}

/// A scheduler thread's mailbox. A thread with streams wakes every millisecond and reads it
/// then, so a command never costs it an extra wake-up; only an idle thread (no streams,
/// parked until told) is woken.
struct Worker {
    inbox: mpsc::Sender<Message>,
    idle: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    streams: AtomicUsize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("streams", &self.streams.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Worker {
    fn send(&self, message: Message) -> bool {
        if self.inbox.send(message).is_err() {
            return false;
        }
        if self.idle.load(Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        true
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        let workers = (0..threads)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let worker: &'static Worker = Box::leak(Box::new(Worker {
                    inbox: tx,
                    idle: AtomicBool::new(false),
                    thread: OnceLock::new(),
                    streams: AtomicUsize::new(0),
                }));
                std::thread::Builder::new()
                    .name(format!("rtp-{i}"))
                    .spawn(move || Scheduler::new(worker, rx).run())
                    .expect("spawn a media thread");
                worker
            })
            .collect();
        Engine {
            workers,
            next_id: AtomicU64::new(1),
        }
    })
}

impl Engine {
    /// A new stream id and the least loaded worker.
    fn place(&self) -> (u64, &'static Worker) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let worker = self
            .workers
            .iter()
            .copied()
            .min_by_key(|w| w.streams.load(Ordering::Relaxed))
            .expect("at least one worker");
        worker.streams.fetch_add(1, Ordering::Relaxed);
        (id, worker)
    }
}

struct Stream {
    id: u64,
    socket: std::net::UdpSocket,
    state: State,
    /// Where its [`MediaEvent`]s go.
    events: Option<tokio::sync::mpsc::UnboundedSender<MediaEvent>>,
    /// The tick whose wheel slot holds this stream.
    due_tick: u64,
}

enum State {
    /// Reading the socket, waiting for the session.
    Listening(VecDeque<(Instant, SocketAddr, Box<[u8]>)>),
    Running(Box<Running>),
}

struct Running {
    session: MediaSession,
    remote: SocketAddr,
    watches: Vec<(WatchFn, oneshot::Sender<()>)>,
    /// The watches of [`MediaIntent`]s.
    intents: Watches,
}

/// What `recvmmsg` fills.
struct Receiving {
    headers: MultiHeaders<SockaddrStorage>,
    buffers: Vec<[u8; RX_BUF]>,
}

struct Scheduler {
    worker: &'static Worker,
    /// The mailbox, read once per wake-up (never waited on: senders do not wake a busy
    /// thread).
    inbox: mpsc::Receiver<Message>,
    streams: Slab<Stream>,
    ids: HashMap<u64, usize>,
    wheel: Vec<Vec<usize>>,
    epoch: Instant,
    /// The next tick to run.
    tick: u64,
    out: [u8; MAX_PACKET],
    receiving: Receiving,
}

impl Scheduler {
    fn new(worker: &'static Worker, inbox: mpsc::Receiver<Message>) -> Self {
        Self {
            worker,
            inbox,
            streams: Slab::new(),
            ids: HashMap::new(),
            wheel: (0..WHEEL).map(|_| Vec::new()).collect(),
            epoch: Instant::now(),
            tick: 0,
            out: [0; MAX_PACKET],
            receiving: Receiving {
                headers: MultiHeaders::preallocate(RX_BATCH, Some(nix::cmsg_space!(TimeSpec))),
                buffers: vec![[0; RX_BUF]; RX_BATCH],
            },
        }
    }

    fn tick_time(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_millis(tick)
    }

    /// The first tick at or after `t`.
    fn tick_at(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(TICK_NANOS)).unwrap_or(u64::MAX)
    }

    fn run(mut self) {
        let _ = self.worker.thread.set(std::thread::current());
        // The kernel may fire a sleeping thread's timer up to its "timer slack" late (50 µs
        // by default) to group wake-ups; a frame's send time is this thread's wake-up time.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::prctl::set_timerslack(TIMER_SLACK_NS);
        loop {
            self.read_inbox();
            if self.streams.is_empty() {
                // Idle: sleep until a sender sees the flag and wakes us (checking the inbox
                // after raising the flag, so a message sent meanwhile is not missed).
                self.worker.idle.store(true, Ordering::SeqCst);
                match self.inbox.try_recv() {
                    Ok(message) => self.on_message(message),
                    Err(mpsc::TryRecvError::Empty) => std::thread::park(),
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
                self.worker.idle.store(false, Ordering::SeqCst);
                continue;
            }
            while self.tick_time(self.tick) <= Instant::now() {
                self.run_tick(self.tick);
                self.tick += 1;
            }
            // Sleep to the next tick with work, at most MAX_NAP ticks: with few streams (or
            // only listening ones) the thread does not wake every millisecond. Commands wait
            // in the mailbox meanwhile (a few milliseconds at most), without waking it.
            let next = self.next_busy_tick();
            let left = self
                .tick_time(next)
                .saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::park_timeout(left);
            }
            // Nothing was due on the ticks slept over.
            self.tick = self.tick.max(next.min(self.tick_at(Instant::now())));
        }
    }

    /// The first tick from the current one whose slot holds an entry (possibly a stale one:
    /// then the wake-up finds nothing to do), or the current tick plus [`MAX_NAP`].
    fn next_busy_tick(&self) -> u64 {
        (self.tick..self.tick + MAX_NAP)
            .find(|t| !self.wheel[(t % WHEEL as u64) as usize].is_empty())
            .unwrap_or(self.tick + MAX_NAP)
    }

    fn read_inbox(&mut self) {
        while let Ok(message) = self.inbox.try_recv() {
            self.on_message(message);
        }
    }

    fn schedule(&mut self, key: usize, due: Instant) {
        let horizon = self.tick + WHEEL as u64 - 1;
        let tick = self.tick_at(due).clamp(self.tick + 1, horizon);
        if let Some(stream) = self.streams.get_mut(key) {
            stream.due_tick = tick;
            self.wheel[(tick % WHEEL as u64) as usize].push(key);
        }
    }

    /// One tick: first every frame due on it is sent, for all of its streams, then what
    /// arrived is read and the next deadlines are taken. Sending first keeps a frame's
    /// lateness from growing with the receive work of the streams served before it on the
    /// same tick. Arrivals carry the kernel's receive time, so reading them a little later
    /// changes no receive statistic. The sessions' playout ticks are deferred to the read
    /// (`MediaSession::defer_playout`): a frame leaves the jitter buffer right after what
    /// arrived went in, as when reading first, and while the packets just read are still
    /// in the cache.
    fn run_tick(&mut self, tick: u64) {
        let slot = (tick % WHEEL as u64) as usize;
        let mut keys = std::mem::take(&mut self.wheel[slot]);
        // Stale entries (the stream moved or the key was reused) are dropped here.
        keys.retain(|&key| {
            self.streams
                .get(key)
                .is_some_and(|stream| stream.due_tick == tick)
        });
        for &key in &keys {
            let stream = &mut self.streams[key];
            if let State::Running(run) = &mut stream.state {
                loop {
                    let now = Instant::now();
                    let Some(len) = run.session.poll_transmit(now, &mut self.out) else {
                        break;
                    };
                    // A send error (ICMP unreachable) is the far end's problem: the
                    // receiver's statistics and the detector tell the story.
                    let _ = stream.socket.send_to(&self.out[..len], run.remote);
                }
            }
        }
        for &key in &keys {
            let stream = &mut self.streams[key];
            if stream.due_tick != tick {
                continue; // listed twice: served already
            }
            let due = match &mut stream.state {
                State::Listening(early) => {
                    drain(&mut self.receiving, &stream.socket, |at, from, data| {
                        if early.len() == EARLY_PACKETS {
                            early.pop_front();
                        }
                        early.push_back((at, from, data.into()));
                    });
                    self.tick_time(tick) + LISTEN_EVERY
                }
                State::Running(run) => {
                    drain(&mut self.receiving, &stream.socket, |at, from, data| {
                        run.session.handle_packet(at, from, data);
                    });
                    run.session.play_out();
                    if !run.watches.is_empty() {
                        check_watches(run, Instant::now());
                    }
                    if !run.intents.is_empty() {
                        let mut out = Vec::new();
                        run.intents.check(&run.session, Instant::now(), &mut out);
                        send_events(stream.events.as_ref(), out);
                    }
                    run.session.poll_timeout()
                }
            };
            self.schedule(key, due);
        }
        keys.clear();
        if self.wheel[slot].is_empty() {
            self.wheel[slot] = keys;
        }
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Add(id, new) => {
                let NewStream {
                    socket,
                    session,
                    remote,
                } = *new;
                // Without kernel timestamps, arrivals are stamped when read (at the stream's
                // tick).
                let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
                self.add(id, socket, session, remote, VecDeque::new(), None);
            }
            Message::Listen(id, socket) => {
                let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
                if self.streams.is_empty() {
                    self.tick = self.tick_at(Instant::now());
                }
                let due = Instant::now() + LISTEN_EVERY;
                let key = self.streams.insert(Stream {
                    id,
                    socket,
                    state: State::Listening(VecDeque::new()),
                    events: None,
                    due_tick: 0,
                });
                self.ids.insert(id, key);
                self.schedule(key, due);
            }
            Message::To(id, command) => {
                let Some(&key) = self.ids.get(&id) else {
                    return; // stopped already: replies are dropped, waiters see an error
                };
                self.command(key, command);
            }
        }
    }

    /// Run `session` on `socket`, after feeding it what arrived before (`early`).
    fn add(
        &mut self,
        id: u64,
        socket: std::net::UdpSocket,
        mut session: MediaSession,
        remote: SocketAddr,
        early: VecDeque<(Instant, SocketAddr, Box<[u8]>)>,
        events: Option<tokio::sync::mpsc::UnboundedSender<MediaEvent>>,
    ) {
        if self.streams.is_empty() {
            self.tick = self.tick_at(Instant::now());
        }
        // The least crowded 1 ms phase of the next 20 ms.
        let now_tick = self.tick_at(Instant::now()).max(self.tick);
        let start = (now_tick + 1..=now_tick + 20)
            .min_by_key(|t| self.wheel[(t % WHEEL as u64) as usize].len())
            .unwrap_or(now_tick + 1);
        session.restart_at(self.tick_time(start));
        session.defer_playout();
        // Only the peer's packets are its media: those from elsewhere count as stray.
        session.set_peer_address(remote);
        for (at, from, data) in &early {
            session.handle_packet(*at, *from, data);
        }
        let due = session.poll_timeout();
        let key = self.streams.insert(Stream {
            id,
            socket,
            state: State::Running(Box::new(Running {
                session,
                remote,
                watches: Vec::new(),
                intents: Watches::default(),
            })),
            events,
            due_tick: 0,
        });
        self.ids.insert(id, key);
        self.schedule(key, due);
    }

    fn command(&mut self, key: usize, command: Command) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let command = match command {
            Command::Events(events) => {
                stream.events = Some(events);
                return;
            }
            command => command,
        };
        let run = match &mut stream.state {
            State::Running(run) => run,
            State::Listening(_) => {
                match command {
                    Command::Start(start) => {
                        let (session, remote) = *start;
                        let stream = self.remove(key);
                        let State::Listening(early) = stream.state else {
                            unreachable!("matched as listening")
                        };
                        // Placed anew, counted again on this worker.
                        self.worker.streams.fetch_add(1, Ordering::Relaxed);
                        self.add(
                            stream.id,
                            stream.socket,
                            session,
                            remote,
                            early,
                            stream.events,
                        );
                    }
                    Command::Forget | Command::Stop(_) => {
                        self.remove(key);
                    }
                    // No session yet: its status is that of none.
                    Command::Apply(MediaIntent::Probe(watch)) => {
                        send_events(stream.events.as_ref(), vec![MediaEvent::no_session(watch)]);
                    }
                    // Nothing else applies before the session: replies are dropped, so
                    // waiters see an error.
                    _ => {}
                }
                return;
            }
        };
        match command {
            Command::With(f) => f(&mut run.session, now),
            Command::Apply(intent) => {
                let mut out = Vec::new();
                run.intents.apply(&mut run.session, intent, now, &mut out);
                send_events(stream.events.as_ref(), out);
            }
            Command::Events(_) => {}
            Command::Watch(condition, reply) => {
                run.watches.push((condition, reply));
                check_watches(run, now);
            }
            Command::Dtmf(digits, reply) => {
                let _ = reply.send(run.session.send_dtmf(&digits, DtmfConfig::default()));
            }
            Command::Push(samples) => run.session.push_audio(&samples),
            Command::Pull(reply) => {
                let mut audio = Vec::new();
                run.session.pull_audio(&mut audio);
                let _ = reply.send(audio);
            }
            Command::Sending(send) => run.session.set_sending(send),
            Command::Expecting(expecting) => run.session.set_expecting(now, expecting),
            Command::Remote(addr) => {
                run.remote = addr;
                run.session.set_peer_address(addr);
            }
            Command::Start(_) => {}
            Command::Stop(reply) => {
                let stream = self.remove(key);
                let State::Running(mut run) = stream.state else {
                    unreachable!("matched as running")
                };
                // What arrived since the stream's last tick counts too.
                drain(&mut self.receiving, &stream.socket, |at, from, data| {
                    run.session.handle_packet(at, from, data);
                });
                run.session.play_out();
                let _ = reply.send(Finished {
                    report: run.session.report(now),
                    recording: run.session.recording().map(<[i16]>::to_vec),
                });
            }
            Command::Forget => {
                self.remove(key);
            }
        }
    }

    fn remove(&mut self, key: usize) -> Stream {
        // Its wheel entry stays until its tick comes, and is skipped then (`due_tick` no longer
        // matches, or the key is gone).
        let stream = self.streams.remove(key);
        self.ids.remove(&stream.id);
        self.worker.streams.fetch_sub(1, Ordering::Relaxed);
        stream
    }
}

/// Read every datagram queued on `socket` into `sink`, each with the time the kernel
/// received it and its source address.
fn drain(
    receiving: &mut Receiving,
    socket: &std::net::UdpSocket,
    mut sink: impl FnMut(Instant, SocketAddr, &[u8]),
) {
    let fd = socket.as_raw_fd();
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    loop {
        let mut got = [(0usize, None::<Duration>, unknown); RX_BATCH];
        let mut buffers = receiving.buffers.iter_mut();
        let mut slices: [[IoSliceMut<'_>; 1]; RX_BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                buffers.next().expect("one buffer per slice").as_mut_slice(),
            )]
        });
        let received = match recvmmsg(
            fd,
            &mut receiving.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => {
                let mut count = 0;
                for (slot, message) in got.iter_mut().zip(results) {
                    let stamp = message.cmsgs().ok().and_then(|mut cmsgs| {
                        cmsgs.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::new(
                                u64::try_from(ts.tv_sec()).unwrap_or(0),
                                u32::try_from(ts.tv_nsec()).unwrap_or(0),
                            )),
                            _ => None,
                        })
                    });
                    let from = message
                        .address
                        .as_ref()
                        .and_then(socket_addr)
                        .unwrap_or(unknown);
                    *slot = (message.bytes.min(RX_BUF), stamp, from);
                    count += 1;
                }
                Some(count)
            }
            // ICMP errors queued on the socket (port unreachable): read on.
            Err(Errno::ECONNREFUSED | Errno::EINTR) => None,
            Err(_) => return, // EAGAIN: nothing (more) queued
        };
        let Some(count) = received else {
            continue;
        };
        let (wall, now) = (SystemTime::now(), Instant::now());
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        for (i, &(len, stamp, from)) in got[..count].iter().enumerate() {
            // The stamp is wall-clock time: after a clock step (NTP) an age no queued
            // datagram can have (it waited a tick or two) is not trusted: "now" instead.
            let age = stamp
                .map_or(Duration::ZERO, |at| wall.saturating_sub(at))
                .min(MAX_QUEUED);
            let age = if age == MAX_QUEUED {
                Duration::ZERO
            } else {
                age
            };
            let arrival = now.checked_sub(age).unwrap_or(now);
            sink(arrival, from, &receiving.buffers[i][..len]);
        }
        if count < RX_BATCH {
            return;
        }
    }
}

/// A datagram's source as a std address (IPv4 or IPv6).
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(std::net::SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6)))
}

/// Hand a stream's events to its call (gone calls are not waited for).
fn send_events(
    to: Option<&tokio::sync::mpsc::UnboundedSender<MediaEvent>>,
    events: Vec<MediaEvent>,
) {
    if let Some(to) = to {
        for event in events {
            let _ = to.send(event);
        }
    }
}

/// Resolve the watches whose condition holds; drop those nobody waits for any more.
fn check_watches(run: &mut Running, now: Instant) {
    let mut i = 0;
    while i < run.watches.len() {
        let (condition, reply) = &mut run.watches[i];
        if reply.is_closed() {
            drop(run.watches.swap_remove(i));
        } else if condition(&run.session, now) {
            let (_, reply) = run.watches.swap_remove(i);
            let _ = reply.send(());
        } else {
            i += 1;
        }
    }
}

/// Percentile of a lateness histogram, in milliseconds.
pub fn lateness_ms(report: &MediaReport, quantile: f64) -> f64 {
    report.lateness_us.value_at_quantile(quantile) as f64 / 1000.0
}

/// A duration in whole milliseconds for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::ids::IdGen;
    use sipcheck_core::media::g711::Codec;
    use sipcheck_core::media::session::MediaConfig;
    use sipcheck_core::media::tone::{Playlist, PlaylistItem, Tone, ToneQuery};

    fn session(hz: f64, expect: f64, seed: u64) -> MediaSession {
        let mut config = MediaConfig::new(Codec::Pcma);
        config.telephone_event_pt = Some(101);
        let playlist = Playlist::looping(vec![PlaylistItem::Tone {
            tone: Tone::single(hz, -10.0).unwrap(),
            duration: Duration::from_secs(1),
        }]);
        let mut s =
            MediaSession::new(Instant::now(), config, playlist, &mut IdGen::new(seed)).unwrap();
        s.expect_tone(ToneQuery::single(expect).unwrap()).unwrap();
        s
    }

    #[tokio::test]
    async fn two_tasks_on_loopback_hear_each_other_and_dtmf() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind(ip).await.unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        let a = MediaHandle::spawn(a_sock, session(700.0, 1300.0, 1), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 2), a_addr);
        a.send_dtmf("5*").await.unwrap();
        // Bounded: 20 ms ticks, the tones need 40 ms plus buffering; DTMF takes ~0.5 s.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let ra = a.stop().await.unwrap().report;
        let rb = b.stop().await.unwrap().report;
        assert!(ra.tones[0].detection.is_some(), "a did not hear 1300 Hz");
        assert!(rb.tones[0].detection.is_some(), "b did not hear 700 Hz");
        assert_eq!(rb.dtmf_received, "5*");
        assert!(ra.packets_sent >= 30, "{}", ra.packets_sent);
        assert_eq!(rb.receive.lost(), 0);
        assert_eq!(ra.frames_skipped, 0);
    }

    /// The next event of a stream, bounded.
    async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>) -> MediaEvent {
        tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("an event within 3 s")
            .expect("the stream is running")
    }

    #[tokio::test]
    async fn intents_as_data_watch_a_tone_send_dtmf_and_report_the_status_back() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind_std(ip).unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        // `a` listens first, as a call's stream does, and gets its events channel then.
        let a = MediaHandle::listen_std(a_sock);
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        a.set_events(tx);
        a.apply(MediaIntent::Probe(1));
        assert_eq!(next(&mut events).await, MediaEvent::no_session(1));
        a.start(session(700.0, 1300.0, 5), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 6), a_addr);
        a.apply(MediaIntent::WatchTone {
            watch: 2,
            query: ToneQuery::single(1300.0).unwrap(),
        });
        a.apply(MediaIntent::WatchDtmf {
            watch: 3,
            digits: "4#".into(),
        });
        match next(&mut events).await {
            MediaEvent::ToneHeard { watch: 2, onset } => {
                assert!(onset < Duration::from_secs(1), "{onset:?}");
            }
            other => panic!("{other:?}"),
        }
        b.send_dtmf("4#").await.unwrap();
        assert_eq!(
            next(&mut events).await,
            MediaEvent::DtmfReceived { watch: 3 }
        );
        a.apply(MediaIntent::Probe(4));
        match next(&mut events).await {
            MediaEvent::Status {
                watch: 4,
                level_dbfs: Some(_),
                dtmf_received,
                ..
            } => assert_eq!(dtmf_received, "4#"),
            other => panic!("{other:?}"),
        }
        a.stop().await.unwrap();
        b.stop().await.unwrap();
        assert!(
            events.recv().await.is_none(),
            "a stopped stream drops its sender"
        );
    }

    #[tokio::test]
    async fn a_watch_fires_when_the_tone_is_heard_and_fails_when_the_stream_stops() {
        let ports = PortRange::new(0, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a_sock = ports.bind(ip).await.unwrap();
        let b_sock = ports.bind(ip).await.unwrap();
        let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
        let a = MediaHandle::spawn(a_sock, session(700.0, 1300.0, 3), b_addr);
        let b = MediaHandle::spawn(b_sock, session(1300.0, 700.0, 4), a_addr);
        let query = ToneQuery::single(1300.0).unwrap();
        let id = a
            .with(move |s, _| s.expect_tone(query))
            .await
            .unwrap()
            .unwrap();
        let heard = a.watch(move |s, _| s.detection(id).is_some());
        // Bounded: the tone needs 40 ms plus the jitter buffer's fill.
        tokio::time::timeout(Duration::from_secs(2), heard)
            .await
            .expect("heard within 2 s")
            .expect("the stream is running");
        let never = b.watch(|_, _| false);
        let report = b.stop().await.unwrap().report;
        assert!(report.packets_sent > 0);
        assert!(never.await.is_err(), "a stopped stream drops its watches");
        assert!(
            b.with(|_, _| ()).await.is_none(),
            "a stopped stream takes no commands"
        );
        let ra = a.stop().await.unwrap().report;
        assert_eq!(ra.frames_skipped, 0);
        // Loopback, kernel arrival stamps: the measured jitter is far below a frame.
        assert!(ra.receive.jitter_ms < 5.0, "{}", ra.receive.jitter_ms);
    }

    /// Send PCMA packets `seqs` to `to`, 20 ms of timestamp apart, as fast as the socket
    /// takes them.
    fn blast(from: &std::net::UdpSocket, to: SocketAddr, seqs: std::ops::Range<u16>) {
        use sipcheck_core::rtp::packet::{write_packet, RtpHeader};
        let mut out = [0u8; 256];
        for seq in seqs {
            let header = RtpHeader {
                marker: false,
                payload_type: 8,
                sequence: seq,
                timestamp: u32::from(seq) * 160,
                ssrc: 0x1234_5678,
            };
            let len = write_packet(&header, &[0xD5; 160], &mut out).unwrap();
            from.send_to(&out[..len], to).unwrap();
        }
    }

    #[test]
    fn what_arrives_before_the_session_starts_is_kept_not_dropped_by_the_socket() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ports = PortRange::new(0, 0);
        let far = std::net::UdpSocket::bind((ip, 0)).unwrap();
        // More than a default socket buffer holds (~300 such datagrams in 208 KiB), sent
        // while the session does not exist yet: a far end that starts its RTP with its
        // answer while that answer is retransmitted to us for seconds.
        let early = 600u16;
        let socket = ports.bind_std(ip).unwrap();
        let local = socket.local_addr().unwrap();
        let handle = MediaHandle::listen_std(socket);
        for chunk in (0..early).step_by(50) {
            blast(&far, local, chunk..chunk + 50);
            // Bounded pacing: the listening stream reads every 20 ms.
            std::thread::sleep(Duration::from_millis(25));
        }
        handle.start(session(700.0, 1300.0, 9), far.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        blast(&far, local, early..early + 50);
        std::thread::sleep(Duration::from_millis(100));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let report = rt.block_on(handle.stop()).unwrap().report;
        assert_eq!(report.receive.received, u64::from(early) + 50);
        assert_eq!(report.receive.lost(), 0);
    }

    #[test]
    fn a_listening_stream_keeps_only_the_newest_packets() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let far = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let socket = PortRange::new(0, 0).bind_std(ip).unwrap();
        let local = socket.local_addr().unwrap();
        let handle = MediaHandle::listen_std(socket);
        let sent = EARLY_PACKETS as u16 + 200;
        for chunk in (0..sent).step_by(50) {
            blast(&far, local, chunk..chunk + 50);
            std::thread::sleep(Duration::from_millis(25));
        }
        std::thread::sleep(Duration::from_millis(50));
        handle.start(session(700.0, 1300.0, 10), far.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let report = rt.block_on(handle.stop()).unwrap().report;
        // The oldest 200 went; what is left is one unbroken run, so nothing counts as lost.
        assert_eq!(report.receive.received, EARLY_PACKETS as u64);
        assert_eq!(report.receive.lost(), 0);
    }

    #[tokio::test]
    async fn a_full_port_range_is_an_error_after_a_bounded_search() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Hold four even ports, then ask a range of exactly those.
        let range = PortRange::new(0, 0);
        let mut held = Vec::new();
        let mut even = None;
        for _ in 0..200 {
            let s = range.bind(ip).await.unwrap();
            let port = s.local_addr().unwrap().port();
            held.push(s);
            if port % 2 == 0 {
                let base = port;
                let busy: Vec<_> = (1..4)
                    .filter_map(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                    .collect();
                if busy.len() == 3 {
                    even = Some((base, busy));
                    break;
                }
            }
        }
        let (base, _busy) = even.expect("four free even ports in a row somewhere");
        let full = PortRange::new(base, base + 6);
        let err = full.bind(ip).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("exhausted"), "{err}");
    }

    #[test]
    fn a_busy_block_at_the_start_of_the_range_is_not_exhaustion() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Hold the first 70 even ports of a 140-port range (more than PORT_ATTEMPTS in a row).
        let mut found = None;
        for base in (41_000u16..50_000).step_by(600) {
            let held: Vec<_> = (0..70)
                .map_while(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                .collect();
            let rest_free =
                (70..140).all(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).is_ok());
            if held.len() == 70 && rest_free {
                found = Some((base, held));
                break;
            }
        }
        let (base, _held) = found.expect("a free block of 140 even ports between 41000 and 50000");
        let range = PortRange::new(base, base + 2 * 139);
        let socket = range
            .bind_std(ip)
            .expect("a free port beyond the busy block");
        assert!(socket.local_addr().unwrap().port() >= base + 140);
    }

    #[test]
    fn the_round_robin_starts_at_a_random_port_and_covers_the_range() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Two processes (two seeds) start at different places of a 100-port range.
        let starts: Vec<u16> = (0..4u64)
            .map(|seed| {
                let range = PortRange::starting_at(40_000, 40_198, seed);
                range.port(range.next.load(Ordering::Relaxed))
            })
            .collect();
        assert!(starts
            .iter()
            .all(|p| p % 2 == 0 && (40_000..=40_198).contains(p)));
        assert!(
            starts.windows(2).any(|w| w[0] != w[1]),
            "every seed started at {}",
            starts[0]
        );
        // From wherever it starts, the round-robin hands out each even port once per lap.
        let mut found = None;
        for base in (42_000u16..52_000).step_by(200) {
            let held: Vec<_> = (0..8)
                .map_while(|k| std::net::UdpSocket::bind((ip, base + 2 * k)).ok())
                .collect();
            if held.len() == 8 {
                drop(held);
                found = Some(base);
                break;
            }
        }
        let base = found.expect("8 free even ports between 42000 and 52000");
        let range = PortRange::starting_at(base, base + 14, 5);
        let mut seen: Vec<u16> = (0..8)
            .map(|_| range.bind_std(ip).unwrap().local_addr().unwrap().port())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..8).map(|k| base + 2 * k).collect::<Vec<_>>());
    }

    /// A free port of loopback with the parity asked for, and the socket holding it.
    fn free_with_parity(odd: bool, from: u16) -> u16 {
        (from..from + 2000)
            .filter(|p| (p % 2 == 1) == odd)
            .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port")
    }

    #[test]
    fn the_range_is_exact_and_inclusive() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // A single odd port: that port, on every bind, never its even neighbour.
        let odd = free_with_parity(true, 43_001);
        let range = PortRange::new(odd, odd);
        let socket = range.bind_std(ip).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), odd);
        // Busy (held by the first socket): an error naming it, no other port.
        let err = range.bind_std(ip).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&format!("RTP port {odd} ")),
            "{err}"
        );
        drop(socket);
        // An odd first port and an even last: the even one only.
        let even = free_with_parity(false, 44_000);
        let range = PortRange::new(even - 1, even);
        for _ in 0..3 {
            assert_eq!(
                range.bind_std(ip).unwrap().local_addr().unwrap().port(),
                even
            );
        }
        // The top of the port space, without overflow or a port the system picks.
        for (first, last, want) in [(65_535, 65_535, 65_535), (65_533, 65_535, 65_534)] {
            let range = PortRange::new(first, last);
            match range.bind_std(ip) {
                Ok(s) => assert_eq!(s.local_addr().unwrap().port(), want),
                Err(e) => assert!(e.to_string().contains(&format!("RTP port {want} ")), "{e}"),
            }
        }
    }

    #[tokio::test]
    async fn port_range_skips_ports_in_use() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let busy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = busy.local_addr().unwrap().port();
        let even = port - port % 2;
        let range = PortRange::new(even, even + 2);
        let got = range.bind(ip).await.unwrap().local_addr().unwrap().port();
        assert_ne!(got, port);
    }
}
