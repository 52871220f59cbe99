//! A media relay on loopback that sits *between* the two ends of a call (where the impairment
//! relay of [`super::impair`] is one end): the caller sends its SIP to the relay, which
//! forwards it to the next hop (the callee, or a proxy) and the answers back, rewriting the
//! SDP of both the offer and the answer (`c=` and the `m=audio` port) to RTP sockets of its
//! own, one pair per call. Each end's RTP then reaches the relay, which sends it on to the
//! address the other end advertised, from the socket that end was told is its peer's
//! (symmetric RTP), after a fixed delay chosen per direction:
//!
//! * **known one-way delay**: every packet towards the callee is held `to_callee`, every
//!   packet towards the caller `to_caller`; the relay records each packet's arrival and
//!   actual departure, so a test compares sipcheck's measured delay with the delay the relay
//!   really applied;
//! * **crossed audio**: with [`Relay::swapped_towards_callees`], the first two calls' RTP
//!   towards their callees is swapped (call 0's caller is heard by call 1's callee and the
//!   other way round), as a broken media gateway would.
//!
//! Only what carries SDP is rewritten; in-dialog requests that go to a Contact directly
//! (ACK, BYE) need no relay. Calls are told apart by Call-ID; at most [`MAX_CALLS`].
//!
//! ```ignore
//! let relay = MediaRelay::start(callee_sip, Relay::delayed(ms(150), ms(0)));
//! // ... the caller calls sip:x@{relay.sip} ...
//! let report = relay.finish();
//! ```

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// At most this many calls are relayed (their sockets are made on the first SDP).
pub(crate) const MAX_CALLS: usize = 8;
/// How long a socket read waits before the thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What the relay does to the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relay {
    /// The delay of every packet towards the callee.
    pub(crate) to_callee: Duration,
    /// The delay of every packet towards the caller.
    pub(crate) to_caller: Duration,
    /// Whether the first two calls' packets towards their callees are swapped.
    pub(crate) swap_towards_callees: bool,
}

impl Relay {
    /// Each direction held a fixed time.
    pub(crate) fn delayed(to_callee: Duration, to_caller: Duration) -> Self {
        Self {
            to_callee,
            to_caller,
            swap_towards_callees: false,
        }
    }

    /// No delay; calls 0 and 1 swapped towards their callees.
    pub(crate) fn swapped_towards_callees() -> Self {
        Self {
            swap_towards_callees: true,
            ..Self::delayed(Duration::ZERO, Duration::ZERO)
        }
    }
}

/// The direction of a relayed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Towards {
    /// From the caller, to the callee.
    Callee,
    /// From the callee, to the caller.
    Caller,
}

/// What the relay did with one direction's packets.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectionLog {
    /// Packets relayed.
    pub(crate) relayed: u64,
    /// Packets dropped: the other end's address not known yet (no SDP from it so far).
    pub(crate) unknown_peer: u64,
    /// Of the packets relayed, how long each was held (departure − arrival).
    pub(crate) held: Vec<Duration>,
}

impl DirectionLog {
    /// The mean of the holding times, milliseconds.
    pub(crate) fn mean_held_ms(&self) -> f64 {
        let sum: f64 = self.held.iter().map(|d| d.as_secs_f64() * 1000.0).sum();
        sum / self.held.len().max(1) as f64
    }

    /// The longest holding time, milliseconds.
    pub(crate) fn max_held_ms(&self) -> f64 {
        self.held
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .fold(0.0, f64::max)
    }
}

/// What the relay did.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelayReport {
    /// Towards each end.
    pub(crate) towards: HashMap<Towards, DirectionLog>,
    /// SDP bodies rewritten (offers and answers).
    pub(crate) sdp_rewritten: u64,
    /// Calls seen (by Call-ID, with SDP).
    pub(crate) calls: usize,
    /// First lines of the SIP messages relayed, in order, for assertion messages.
    pub(crate) ladder: Vec<String>,
}

impl RelayReport {
    /// One direction's log (empty when nothing went that way).
    pub(crate) fn towards(&self, t: Towards) -> DirectionLog {
        self.towards.get(&t).cloned().unwrap_or_default()
    }

    /// One line for assertion messages.
    pub(crate) fn summary(&self) -> String {
        let line = |t| {
            let d = self.towards(t);
            format!(
                "relayed {}, dropped before the peer was known {}, held mean {:.2} ms max {:.2} ms",
                d.relayed,
                d.unknown_peer,
                d.mean_held_ms(),
                d.max_held_ms()
            )
        };
        format!(
            "relay: {} calls, {} SDP rewritten; towards callee: {}; towards caller: {}\n{}",
            self.calls,
            self.sdp_rewritten,
            line(Towards::Callee),
            line(Towards::Caller),
            self.ladder.join("\n")
        )
    }
}

/// One relayed call's media sockets and the ends' RTP addresses.
struct Leg {
    /// Faces the callee: advertised to it as the caller's media address.
    a: Arc<UdpSocket>,
    /// Faces the caller: advertised to it as the callee's media address.
    b: Arc<UdpSocket>,
    caller_rtp: Option<SocketAddr>,
    callee_rtp: Option<SocketAddr>,
}

#[derive(Default)]
struct State {
    /// Call-ID → the SIP address of the end that sent it to the relay, and the index of the
    /// call's media legs (once it carried SDP).
    calls: HashMap<String, (SocketAddr, Option<usize>)>,
    legs: Vec<Leg>,
    report: RelayReport,
}

/// A packet waiting for its departure.
struct Due {
    at: Instant,
    arrived: Instant,
    towards: Towards,
    from: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

/// A running media relay. Its threads stop when it is finished or dropped.
pub(crate) struct MediaRelay {
    /// Where the caller sends its SIP.
    pub(crate) sip: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl MediaRelay {
    /// Starts relaying the SIP received on a new loopback socket to `next_hop`.
    ///
    /// # Panics
    /// When a socket cannot be bound.
    pub(crate) fn start(next_hop: SocketAddr, relay: Relay) -> MediaRelay {
        let listen = Arc::new(UdpSocket::bind((super::LOOPBACK, 0)).expect("bind the SIP socket"));
        let upstream =
            Arc::new(UdpSocket::bind((super::LOOPBACK, 0)).expect("bind the upstream socket"));
        for s in [&listen, &upstream] {
            s.set_read_timeout(Some(POLL)).expect("read timeout");
        }
        let sip = listen.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Due>();
        let mut threads = Vec::new();
        // From the caller, onwards.
        {
            let (listen, upstream, state, stop, tx) = (
                Arc::clone(&listen),
                Arc::clone(&upstream),
                Arc::clone(&state),
                Arc::clone(&stop),
                tx.clone(),
            );
            threads.push(thread::spawn(move || {
                sip_loop(&listen, &stop, |text, from| {
                    let out = from_caller(&state, &stop, &tx, relay, text, from);
                    if let Some(out) = out {
                        let _ = upstream.send_to(out.as_bytes(), next_hop);
                    }
                });
            }));
        }
        // From the next hop, back to the caller.
        {
            let (listen, upstream, state, stop) = (
                Arc::clone(&listen),
                Arc::clone(&upstream),
                Arc::clone(&state),
                Arc::clone(&stop),
            );
            threads.push(thread::spawn(move || {
                sip_loop(&upstream, &stop, |text, _| {
                    if let Some((out, to)) = from_next_hop(&state, text) {
                        let _ = listen.send_to(out.as_bytes(), to);
                    }
                });
            }));
        }
        {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            threads.push(thread::spawn(move || send_loop(&rx, &state, &stop)));
        }
        MediaRelay {
            sip,
            state,
            stop,
            threads,
        }
    }

    /// Stops the relay and says what it did.
    pub(crate) fn finish(mut self) -> RelayReport {
        self.halt();
        let report = lock(&self.state).report.clone();
        report
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MediaRelay {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Receives datagrams on `socket` until `stop`, handing each (as text) to `each`.
fn sip_loop(socket: &UdpSocket, stop: &AtomicBool, mut each: impl FnMut(&str, SocketAddr)) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            each(&String::from_utf8_lossy(&buf[..n]), from);
        }
    }
}

/// A SIP message from a caller: its call noted, its SDP pointed at the relay.
fn from_caller(
    state: &Arc<Mutex<State>>,
    stop: &Arc<AtomicBool>,
    tx: &mpsc::Sender<Due>,
    relay: Relay,
    text: &str,
    from: SocketAddr,
) -> Option<String> {
    let mut st = lock(state);
    st.report.ladder.push(format!("→ {}", first_line(text)));
    let Some(call_id) = header(text, "Call-ID", "i") else {
        return Some(text.to_string());
    };
    let known = st.calls.get(&call_id).and_then(|&(_, i)| i);
    if !has_sdp(text) {
        st.calls.insert(call_id, (from, known));
        return Some(text.to_string());
    }
    let index = match known {
        Some(i) => i,
        None if st.legs.len() < MAX_CALLS => {
            let leg = new_leg(st.legs.len(), state, stop, tx, relay);
            st.legs.push(leg);
            st.report.calls = st.legs.len();
            st.legs.len() - 1
        }
        None => return Some(text.to_string()),
    };
    st.calls.insert(call_id, (from, Some(index)));
    let a = st.legs[index].a.local_addr().ok()?;
    let (out, original) = rewrite_sdp(text, a)?;
    st.legs[index].caller_rtp = Some(original);
    st.report.sdp_rewritten += 1;
    Some(out)
}

/// A SIP message from the next hop: back to its call's caller, its SDP pointed at the relay.
fn from_next_hop(state: &Mutex<State>, text: &str) -> Option<(String, SocketAddr)> {
    let mut st = lock(state);
    st.report.ladder.push(format!("← {}", first_line(text)));
    let call_id = header(text, "Call-ID", "i")?;
    let (caller, index) = *st.calls.get(&call_id)?;
    let Some(index) = index.filter(|_| has_sdp(text)) else {
        return Some((text.to_string(), caller));
    };
    let b = st.legs[index].b.local_addr().ok()?;
    let (out, original) = rewrite_sdp(text, b)?;
    st.legs[index].callee_rtp = Some(original);
    st.report.sdp_rewritten += 1;
    Some((out, caller))
}

/// A call's two RTP sockets, each with its receiving thread.
fn new_leg(
    index: usize,
    state: &Arc<Mutex<State>>,
    stop: &Arc<AtomicBool>,
    tx: &mpsc::Sender<Due>,
    relay: Relay,
) -> Leg {
    let bind = || {
        let s = UdpSocket::bind((super::LOOPBACK, 0)).expect("bind an RTP socket");
        s.set_read_timeout(Some(POLL)).expect("read timeout");
        Arc::new(s)
    };
    let (a, b) = (bind(), bind());
    for (socket, towards) in [
        (Arc::clone(&a), Towards::Caller),
        (Arc::clone(&b), Towards::Callee),
    ] {
        let (state, stop, tx) = (Arc::clone(state), Arc::clone(stop), tx.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, _)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let arrived = Instant::now();
                let mut st = lock(&state);
                // Where it goes: the other end of this call (or of the swapped one), from the
                // socket that end was told is its peer's.
                let (target, delay) = match towards {
                    Towards::Callee => {
                        let other = if relay.swap_towards_callees && index < 2 {
                            1 - index
                        } else {
                            index
                        };
                        (
                            st.legs.get(other).map(|l| (Arc::clone(&l.a), l.callee_rtp)),
                            relay.to_callee,
                        )
                    }
                    Towards::Caller => (
                        st.legs.get(index).map(|l| (Arc::clone(&l.b), l.caller_rtp)),
                        relay.to_caller,
                    ),
                };
                let log = st.report.towards.entry(towards).or_default();
                match target {
                    Some((from, Some(to))) => {
                        let _ = tx.send(Due {
                            at: arrived + delay,
                            arrived,
                            towards,
                            from,
                            to,
                            data: buf[..n].to_vec(),
                        });
                    }
                    _ => log.unknown_peer += 1,
                }
            }
        });
    }
    Leg {
        a,
        b,
        caller_rtp: None,
        callee_rtp: None,
    }
}

/// Sends each packet at its time, earliest first.
fn send_loop(rx: &mpsc::Receiver<Due>, state: &Mutex<State>, stop: &AtomicBool) {
    let mut heap = BinaryHeap::new();
    while !stop.load(Ordering::SeqCst) {
        let wait = heap
            .peek()
            .map_or(POLL, |d: &Due| {
                d.at.saturating_duration_since(Instant::now())
            })
            .min(POLL);
        match rx.recv_timeout(wait) {
            Ok(d) => heap.push(d),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        while heap.peek().is_some_and(|d| d.at <= Instant::now()) {
            let d = heap.pop().expect("peeked");
            let sent = d.from.send_to(&d.data, d.to).is_ok();
            let held = Instant::now() - d.arrived;
            if sent {
                let mut st = lock(state);
                let log = st.report.towards.entry(d.towards).or_default();
                log.relayed += 1;
                log.held.push(held);
            }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end()
}

/// The first value of header `name` (or its compact form).
fn header(text: &str, name: &str, compact: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .map(str::trim_end)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact))
                .then(|| v.trim().to_string())
        })
}

fn has_sdp(text: &str) -> bool {
    text.split_once("\r\n\r\n")
        .is_some_and(|(_, body)| body.contains("m=audio "))
}

/// `text` with its SDP's `c=` address and `m=audio` port replaced by `to`'s, its
/// Content-Length set to the new body; and the address it advertised before.
fn rewrite_sdp(text: &str, to: SocketAddr) -> Option<(String, SocketAddr)> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut ip = None;
    let mut port = None;
    let lines: Vec<String> = body
        .split("\r\n")
        .map(|l| {
            if let Some(rest) = l.strip_prefix("c=IN IP4 ") {
                ip.get_or_insert_with(|| rest.trim().to_string());
                return format!("c=IN IP4 {}", to.ip());
            }
            if let Some((p, tail)) = l.strip_prefix("m=audio ").and_then(|r| r.split_once(' ')) {
                port.get_or_insert_with(|| p.to_string());
                return format!("m=audio {} {tail}", to.port());
            }
            l.to_string()
        })
        .collect();
    let original: SocketAddr = format!("{}:{}", ip?, port?).parse().ok()?;
    let body = lines.join("\r\n");
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((n, _))
                if n.trim().eq_ignore_ascii_case("Content-Length")
                    || n.trim().eq_ignore_ascii_case("l") =>
            {
                format!("Content-Length: {}", body.len())
            }
            _ => l.to_string(),
        })
        .collect();
    Some((format!("{}\r\n\r\n{body}", head.join("\r\n")), original))
}
