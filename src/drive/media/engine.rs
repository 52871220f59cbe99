//! The scheduler threads that drive every media stream of the process.

use std::collections::{HashMap, VecDeque};
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use sipcheck_core::media::dtmf::DtmfConfig;
use sipcheck_core::media::intent::{MediaEvent, MediaIntent, Watches};
use sipcheck_core::media::session::{MediaSession, MAX_PACKET};
use slab::Slab;
use tokio::sync::oneshot;

use super::{Command, EventSink, Finished, Message, NewStream, WatchFn};
use crate::drive::capture::{self, StreamTap};

// ---------------------------------------------------------------------------------------
// The scheduler threads.
//
// Each thread owns a slab of streams and a timing wheel of 1 ms slots. A new stream is put on
// the least crowded of the 20 phases of the grid (its schedule re-anchored on the thread's
// 1 ms grid), so the thread wakes on the 1 ms ticks that have streams due (at least every
// MAX_NAP ms while it has any; with few streams a little early, spinning to the tick) and
// serves only the streams due on that tick: it sends what the session's schedule makes due,
// then drains the stream's socket (one `recvmmsg`, arrival times from the kernel's
// `SO_TIMESTAMPNS` stamps, so jitter is measured at arrival, not at the tick). RTP
// timestamps and sequence numbers come from the schedule, never from the wake-up time. No
// per-packet wake-ups, no epoll, and commands wait in a mailbox for the next wake-up instead
// of waking the thread. Per-call sockets are kept (symmetric RTP: a stream sends from the
// port its SDP advertises, which SBCs and NATs latch on), so each packet is its own
// `sendto`.

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
/// How long before its next busy tick a thread with few streams wakes at most, to spin the
/// rest of the way: a sleeping thread runs some tens of microseconds after its timer fires
/// (the futex timeout's hrtimer, then the scheduler), and the tick's first frame would leave
/// that late. The margin used is the thread's own wake-up lateness ([`WakeLateness`]), within
/// [`SPIN_MIN`] and this.
const SPIN_AHEAD: Duration = Duration::from_micros(100);
/// The least margin a spinning thread wakes ahead by.
const SPIN_MIN: Duration = Duration::from_micros(10);
/// The most streams a thread spins for. Spinning costs up to [`SPIN_AHEAD`] of CPU per busy
/// tick (a tenth of a core when every tick is busy); a thread with more streams sleeps to
/// the tick.
const SPIN_STREAMS: usize = 100;
/// The phases of the grid streams are spread over: one 20 ms ptime of 1 ms ticks.
const PHASES: u64 = 20;
/// How often a listening stream's socket is read.
const LISTEN_EVERY: Duration = Duration::from_millis(20);

pub(super) struct Engine {
    workers: Vec<&'static Worker>,
    next_id: AtomicU64,
}

/// A scheduler thread's mailbox. A thread with streams wakes every millisecond and reads it
/// then, so a command never costs it an extra wake-up; only an idle thread (no streams,
/// parked until told) is woken.
pub(super) struct Worker {
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
    pub(super) fn send(&self, message: Message) -> bool {
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

pub(super) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        let workers = (0..threads)
            .map(|i| spawn_worker(format!("rtp-{i}"), |scheduler| scheduler))
            .collect();
        Engine {
            workers,
            next_id: AtomicU64::new(1),
        }
    })
}

/// A scheduler thread named `name` and its mailbox (`setup` may change the scheduler first:
/// the tests' hooks).
fn spawn_worker(
    name: String,
    setup: impl FnOnce(Scheduler) -> Scheduler + Send + 'static,
) -> &'static Worker {
    let (tx, rx) = mpsc::channel();
    let worker: &'static Worker = Box::leak(Box::new(Worker {
        inbox: tx,
        idle: AtomicBool::new(false),
        thread: OnceLock::new(),
        streams: AtomicUsize::new(0),
    }));
    std::thread::Builder::new()
        .name(name)
        .spawn(move || setup(Scheduler::new(worker, rx)).run())
        .expect("spawn a media thread");
    worker
}

impl Engine {
    /// A new stream id and the least loaded worker.
    pub(super) fn place(&self) -> (u64, &'static Worker) {
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
    /// The socket's address, for `--pcap`.
    local: SocketAddr,
    /// Its packets for `--pcap` (and its call, for `--pcap-calls`: see [`capture::tag`]).
    tap: StreamTap,
    state: State,
    /// Where its [`MediaEvent`]s go.
    events: Option<EventSink>,
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
    /// How late this thread's timed sleeps end: the margin it wakes ahead by to spin.
    lateness: WakeLateness,
    /// Test hook: the time every tick with a running stream takes at least (an overloaded
    /// thread).
    #[cfg(test)]
    slow_tick: Duration,
    /// Test hook: where the first tick of each new stream is told.
    #[cfg(test)]
    placed: Option<mpsc::Sender<u64>>,
    /// The wall-clock time and the monotonic one, read together once per wake-up when a
    /// capture is on: a packet's send time for `--pcap` is the former plus the monotonic
    /// time elapsed since, from the `Instant` its send read anyway (no clock read per
    /// packet).
    wall_anchor: (Duration, Instant),
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
            lateness: WakeLateness::default(),
            #[cfg(test)]
            slow_tick: Duration::ZERO,
            #[cfg(test)]
            placed: None,
            wall_anchor: (Duration::ZERO, Instant::now()),
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
                    Err(mpsc::TryRecvError::Empty) => {
                        capture::flush_thread();
                        std::thread::park();
                    }
                    Err(mpsc::TryRecvError::Disconnected) => {
                        capture::flush_thread();
                        return;
                    }
                }
                self.worker.idle.store(false, Ordering::SeqCst);
                continue;
            }
            let mut behind = false;
            if capture::enabled() {
                let now = Instant::now();
                self.wall_anchor = (wall_now(), now);
                // Closing: every stream's held packets to the writer now (the capture waits
                // for them), its later ones no longer reported.
                if capture::closing() {
                    for (_, stream) in &mut self.streams {
                        stream.tap.hand_over();
                    }
                }
            }
            while self.tick_time(self.tick) <= Instant::now() {
                self.run_tick(self.tick);
                self.tick += 1;
                // Behind (a tick's work took longer than a tick): the commands are read
                // between ticks, not only once caught up — which, overloaded, may be never,
                // and the streams to stop would then never stop.
                if self.tick_time(self.tick) <= Instant::now() {
                    behind = true;
                    self.read_inbox();
                }
            }
            // The tick's packets to the capture in one batch (nothing when none is made).
            capture::flush_thread();
            // Sleep to the next tick with work, at most MAX_NAP ticks: with few streams (or
            // only listening ones) the thread does not wake every millisecond. Commands wait
            // in the mailbox meanwhile (a few milliseconds at most), without waking it.
            let next = self.next_busy_tick();
            let at = self.tick_time(next);
            // With few streams, and not behind, it wakes a little early for a tick with a
            // frame to send and spins to the tick, so that the tick's first frame leaves on
            // it, not a wake-up latency late.
            let ahead = if behind || self.streams.len() > SPIN_STREAMS || !self.sends_on(next) {
                Duration::ZERO
            } else {
                self.lateness.margin()
            };
            let wake = at.checked_sub(ahead).unwrap_or(at);
            let left = wake.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::park_timeout(left);
            }
            // Only after a wake-up on time (`park_timeout` may return early: it then sleeps
            // again), so a spin lasts at most SPIN_AHEAD.
            if !ahead.is_zero() {
                let woke = Instant::now();
                if woke >= wake {
                    if !left.is_zero() {
                        self.lateness.observe(woke - wake);
                    }
                    while Instant::now() < at {
                        std::hint::spin_loop();
                    }
                }
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

    /// Whether a running stream is due on `tick` (its first frame leaves then).
    fn sends_on(&self, tick: u64) -> bool {
        self.wheel[(tick % WHEEL as u64) as usize]
            .iter()
            .any(|&key| {
                self.streams.get(key).is_some_and(|stream| {
                    stream.due_tick == tick && matches!(stream.state, State::Running(_))
                })
            })
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
        #[cfg(test)]
        self.test_slow_tick();
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
                    if stream.socket.send_to(&self.out[..len], run.remote).is_ok() {
                        let (wall, anchor) = self.wall_anchor;
                        let wall = wall + now.saturating_duration_since(anchor);
                        stream
                            .tap
                            .packet(wall, stream.local, run.remote, &self.out[..len]);
                    }
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
                    drain(
                        &mut self.receiving,
                        &stream.socket,
                        stream.local,
                        &mut stream.tap,
                        |at, from, data| {
                            if early.len() == EARLY_PACKETS {
                                early.pop_front();
                            }
                            early.push_back((at, from, data.into()));
                        },
                    );
                    self.tick_time(tick) + LISTEN_EVERY
                }
                State::Running(run) => {
                    drain(
                        &mut self.receiving,
                        &stream.socket,
                        stream.local,
                        &mut stream.tap,
                        |at, from, data| {
                            run.session.handle_packet(at, from, data);
                        },
                    );
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
                    local: local_addr(&socket),
                    socket,
                    state: State::Listening(VecDeque::new()),
                    events: None,
                    tap: StreamTap::default(),
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

    /// Run `session` on `socket`, after feeding it what arrived before (`early`): its key.
    fn add(
        &mut self,
        id: u64,
        socket: std::net::UdpSocket,
        mut session: MediaSession,
        remote: SocketAddr,
        early: VecDeque<(Instant, SocketAddr, Box<[u8]>)>,
        events: Option<EventSink>,
    ) -> usize {
        if self.streams.is_empty() {
            self.tick = self.tick_at(Instant::now());
        }
        let start = self.least_crowded_start();
        #[cfg(test)]
        if let Some(placed) = &self.placed {
            let _ = placed.send(start);
        }
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
            local: local_addr(&socket),
            socket,
            state: State::Running(Box::new(Running {
                session,
                remote,
                watches: Vec::new(),
                intents: Watches::default(),
            })),
            events,
            tap: StreamTap::default(),
            due_tick: 0,
        });
        self.ids.insert(id, key);
        self.schedule(key, due);
        key
    }

    /// The first tick of a new stream: on the least crowded of the [`PHASES`] phases of the
    /// grid (the fewest running streams due on it), within the next [`PHASES`] ticks.
    ///
    /// Every running stream of a 20 ms ptime is due once in the [`PHASES`] ticks from the
    /// first tick not yet run (`self.tick`): the streams due on that tick itself are still
    /// in its slot, not yet in the slot 20 ticks on. So the phases are counted there, not in
    /// the next 20 ticks from now, which would miss the phases of the ticks due but not yet
    /// run (the current one, read between ticks or just after a wake-up) and see them empty.
    fn least_crowded_start(&self) -> u64 {
        let now_tick = self.tick_at(Instant::now()).max(self.tick);
        let crowd = |t: u64| {
            let t = self.tick + (t - self.tick) % PHASES;
            self.wheel[(t % WHEEL as u64) as usize]
                .iter()
                .filter(|&&key| {
                    self.streams.get(key).is_some_and(|stream| {
                        stream.due_tick == t && matches!(stream.state, State::Running(_))
                    })
                })
                .count()
        };
        (now_tick + 1..=now_tick + PHASES)
            .min_by_key(|&t| crowd(t))
            .unwrap_or(now_tick + 1)
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
            Command::Call(call) => {
                stream.tap.set_call(call);
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
                        let mut stream = self.remove(key);
                        let tap = std::mem::take(&mut stream.tap);
                        let State::Listening(early) = stream.state else {
                            unreachable!("matched as listening")
                        };
                        // Placed anew, counted again on this worker.
                        self.worker.streams.fetch_add(1, Ordering::Relaxed);
                        let key = self.add(
                            stream.id,
                            stream.socket,
                            session,
                            remote,
                            early,
                            stream.events,
                        );
                        self.streams[key].tap = tap;
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
            Command::Events(_) | Command::Call(_) => {}
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
                let mut stream = self.remove(key);
                let State::Running(mut run) = stream.state else {
                    unreachable!("matched as running")
                };
                // What arrived since the stream's last tick counts too.
                drain(
                    &mut self.receiving,
                    &stream.socket,
                    stream.local,
                    &mut stream.tap,
                    |at, from, data| {
                        run.session.handle_packet(at, from, data);
                    },
                );
                run.session.play_out();
                // Its packets to the capture before its end is reported (the call's verdict
                // follows this reply): a failed call's are then written with it.
                stream.tap.hand_over();
                let _ = reply.send(Finished {
                    report: run.session.report(now),
                    recording: run.session.recording().map(<[i16]>::to_vec),
                    steps: run.session.take_step_recordings(),
                });
            }
            Command::Forget => {
                self.remove(key);
            }
        }
    }

    /// Test hook: every tick spins [`Self::slow_tick`] while the thread has a running
    /// stream.
    #[cfg(test)]
    fn test_slow_tick(&self) {
        let running = self
            .streams
            .iter()
            .any(|(_, stream)| matches!(stream.state, State::Running(_)));
        if running && !self.slow_tick.is_zero() {
            let until = Instant::now() + self.slow_tick;
            while Instant::now() < until {
                std::hint::spin_loop();
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

/// How late a thread's timed sleeps end, as a maximum that decays by 1/256 a sleep: it
/// follows the worst of the last few hundred wake-ups (about the p99.5 of a steady
/// lateness), rises at once with a late one, and falls back slowly when the machine quietens.
#[derive(Debug, Clone, Copy)]
struct WakeLateness {
    /// In nanoseconds.
    worst: u64,
}

impl Default for WakeLateness {
    /// Until it knows better, a thread wakes the whole [`SPIN_AHEAD`] early.
    fn default() -> Self {
        Self {
            worst: SPIN_AHEAD.as_nanos() as u64,
        }
    }
}

impl WakeLateness {
    /// A sleep ended `late` after its deadline.
    fn observe(&mut self, late: Duration) {
        let late = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        self.worst = late.max(self.worst - self.worst / 256);
    }

    /// How early to wake to spin to a tick: the worst lateness seen lately and a quarter
    /// more, within [`SPIN_MIN`] and [`SPIN_AHEAD`].
    fn margin(&self) -> Duration {
        Duration::from_nanos(self.worst.saturating_add(self.worst / 4)).clamp(SPIN_MIN, SPIN_AHEAD)
    }
}

/// Read every datagram queued on `socket` (bound to `local`) into `sink`, each with the time
/// the kernel received it and its source address (and into the `--pcap` capture).
fn drain(
    receiving: &mut Receiving,
    socket: &std::net::UdpSocket,
    local: SocketAddr,
    tap: &mut StreamTap,
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
            let data = &receiving.buffers[i][..len];
            tap.packet(wall.saturating_sub(age), from, local, data);
            sink(arrival, from, data);
        }
        if count < RX_BATCH {
            return;
        }
    }
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Where `socket` is bound (the unspecified address when the system cannot say).
fn local_addr(socket: &std::net::UdpSocket) -> SocketAddr {
    socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
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
fn send_events(to: Option<&EventSink>, events: Vec<MediaEvent>) {
    if let Some(to) = to {
        for event in events {
            to.send(event);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::media::tests::session;
    use std::net::{IpAddr, UdpSocket};

    fn loopback() -> UdpSocket {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket
    }

    #[test]
    fn the_spin_margin_follows_the_worst_recent_wake_up_within_its_bounds() {
        let us = Duration::from_micros;
        let mut lateness = WakeLateness::default();
        assert_eq!(
            lateness.margin(),
            SPIN_AHEAD,
            "the whole margin until measured"
        );
        // A quiet machine: sleeps end 8 µs late; the margin decays towards 8 µs and a
        // quarter, never below SPIN_MIN.
        for _ in 0..5_000 {
            lateness.observe(us(8));
        }
        assert_eq!(lateness.margin(), us(10));
        // One late wake-up raises it at once, and it stays up for the next sleeps...
        lateness.observe(us(40));
        assert_eq!(lateness.margin(), us(50));
        for _ in 0..50 {
            lateness.observe(us(8));
        }
        assert!(lateness.margin() > us(40), "{:?}", lateness.margin());
        // ...then falls back once the machine stays quiet.
        for _ in 0..2_000 {
            lateness.observe(us(8));
        }
        assert_eq!(lateness.margin(), us(10));
        // Never more than SPIN_AHEAD: a wake-up later than that is not worth spinning for.
        lateness.observe(Duration::from_millis(3));
        assert_eq!(lateness.margin(), SPIN_AHEAD);
    }

    fn add(worker: &Worker, id: u64, remote: SocketAddr) {
        let new = NewStream {
            socket: loopback(),
            session: session(700.0, 1300.0, id),
            remote,
        };
        assert!(worker.send(Message::Add(id, Box::new(new))));
    }

    /// A thread whose every tick takes longer than a tick (overloaded) runs its ticks back to
    /// back; a stop sent meanwhile is still carried out, within a few ticks. Before the
    /// commands were read between the ticks of a thread behind, it never was: the stream
    /// sent on and its call never ended.
    #[tokio::test]
    async fn a_thread_behind_its_ticks_still_stops_its_streams() {
        let worker = spawn_worker("rtp-test-behind".into(), |mut scheduler| {
            scheduler.slow_tick = Duration::from_millis(3);
            scheduler
        });
        let far = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        far.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        add(worker, 1, far.local_addr().unwrap());
        // Its first frame: the thread runs its (slow) ticks, behind from the first one on.
        let mut buf = [0u8; 2048];
        far.recv(&mut buf).expect("a first frame within 2 s");
        let (tx, rx) = oneshot::channel();
        assert!(worker.send(Message::To(1, Command::Stop(tx))));
        let finished = tokio::time::timeout(Duration::from_millis(200), rx)
            .await
            .expect("stopped within 200 ms while behind")
            .expect("a report");
        assert!(finished.report.packets_sent >= 1);
    }

    /// Streams added one by one while the thread runs its ticks are spread evenly over the
    /// 20 phases of a 20 ms ptime: 100 streams, 5 on each 1 ms tick. The phases of the ticks
    /// due but not yet run when a stream is added (read just after a wake-up) count too;
    /// counted from now on, they looked empty and took more than their share (2 to 7 a
    /// phase).
    #[test]
    fn streams_are_spread_evenly_over_the_phases() {
        let (tx, placed) = mpsc::channel();
        let worker = spawn_worker("rtp-test-phases".into(), move |mut scheduler| {
            scheduler.placed = Some(tx);
            scheduler
        });
        let far = loopback();
        let remote = far.local_addr().unwrap();
        let streams = 100;
        let mut phases = [0u32; PHASES as usize];
        for id in 1..=streams {
            add(worker, id, remote);
            let start = placed
                .recv_timeout(Duration::from_secs(2))
                .expect("placed within 2 s");
            phases[(start % PHASES) as usize] += 1;
            // Added at different points of the thread's ticks, as calls start.
            std::thread::sleep(Duration::from_micros(700));
        }
        for id in 1..=streams {
            assert!(worker.send(Message::To(id, Command::Forget)));
        }
        assert_eq!(phases, [5; PHASES as usize]);
    }
}
