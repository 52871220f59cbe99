//! An impairment relay on loopback, standing in for netem (which this kernel lacks): a
//! minimal SIP UAS that answers `sipcheck call` with PCMU (payload type 0) at its own RTP
//! socket, and an RTP echo that sends every packet it receives back to the packet's source
//! address after an impairment chosen by the test:
//!
//! * **delay variation**: each packet is held for a delay drawn uniformly from
//!   `[0, max_delay]` by a seeded PRNG ([`SplitMix64`]). `max_delay` must stay below the
//!   20 ms packet spacing, so the variation cannot reorder packets by itself;
//! * **reordering**: every `n`th packet is held back and sent right after the next one (a
//!   swap of two adjacent packets). A held packet with no successor within
//!   [`HOLD_LIMIT`] (the end of the stream) is sent on its own and not counted as a swap.
//!
//! The relay records what it did — every packet's sequence number, RTP timestamp, arrival,
//! planned and actual departure, the swaps — so a test can compare sipcheck's figures with
//! what really happened ([`RelayReport`]).
//!
//! It answers sipcheck's BYE only once the echo has drained (nothing queued or held, and
//! no RTP for [`QUIET`]). sipcheck stops sending before it sends the BYE and keeps
//! receiving until the BYE's 200 arrives, so every packet it sent comes back to it before
//! it stops counting: a test can demand exact equalities (sent = relayed = received).
//!
//! ```ignore
//! let peer = ImpairPeer::start(Impairment::delay(Duration::from_millis(15), 7));
//! // ... run `sipcheck call {peer.uri()}` ...
//! let report = peer.finish();
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::hostile::{sdp, HostilePeer, Peer};

/// The packet spacing of sipcheck's streams (20 ms ptime).
pub(crate) const PTIME: Duration = Duration::from_millis(20);
/// RTP clock rate of PCMU.
const CLOCK_RATE: f64 = 8000.0;
/// How long a held packet waits for its successor before it is sent alone.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_millis(40);
/// How long the echo must have been idle before the relay answers a BYE (three packet
/// spacings: sipcheck may send one more frame just after its BYE).
pub(crate) const QUIET: Duration = Duration::from_millis(60);
/// The longest the relay delays its answer to a BYE while waiting for the echo to drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long the SIP side waits for the INVITE.
const INVITE_WAIT: Duration = Duration::from_secs(10);

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny, well-mixed deterministic generator.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the relay does to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Impairment {
    /// Each packet is held for a delay drawn uniformly from `[0, max_delay]`.
    pub(crate) max_delay: Duration,
    /// Every `n`th packet (the n-th, 2n-th, …) is sent after the one that follows it.
    pub(crate) swap_every: Option<u64>,
    /// The PRNG seed of the delays.
    pub(crate) seed: u64,
    /// A constant delay added to every packet (a long path), on top of the drawn one.
    pub(crate) base_delay: Duration,
}

impl Impairment {
    /// A clean echo.
    pub(crate) fn none() -> Self {
        Self {
            max_delay: Duration::ZERO,
            swap_every: None,
            seed: 0,
            base_delay: Duration::ZERO,
        }
    }

    /// Every packet held exactly `delay` (a known path delay; the order is kept).
    pub(crate) fn fixed(delay: Duration) -> Self {
        Self {
            base_delay: delay,
            ..Self::none()
        }
    }

    /// Delays uniform in `[0, max_delay]`, drawn from `seed`.
    pub(crate) fn delay(max_delay: Duration, seed: u64) -> Self {
        Self {
            max_delay,
            swap_every: None,
            seed,
            base_delay: Duration::ZERO,
        }
    }

    /// Every `n`th packet swapped with the next one, no delay.
    pub(crate) fn swap(n: u64) -> Self {
        Self {
            max_delay: Duration::ZERO,
            swap_every: Some(n),
            seed: 0,
            base_delay: Duration::ZERO,
        }
    }
}

/// One packet the relay sent back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    /// Its RTP sequence number.
    pub(crate) seq: u16,
    /// Its RTP timestamp.
    pub(crate) timestamp: u32,
    /// When it reached the relay.
    pub(crate) arrived: Instant,
    /// When the relay meant to send it back (arrival + drawn delay, or the successor's
    /// planned time for a held packet).
    pub(crate) planned: Instant,
    /// When the relay sent it back (just before `send_to`).
    pub(crate) sent: Instant,
    /// The delay drawn for it.
    pub(crate) drawn: Duration,
}

#[derive(Debug, Default)]
struct Log {
    /// RTP packets received from sipcheck.
    received: u64,
    /// Datagrams that were not RTP (RTCP, garbage).
    ignored: u64,
    /// Held packets sent after their successor.
    swaps: u64,
    /// Held packets sent alone because no successor came.
    unswapped: u64,
    /// Packets sent back, in sending order.
    sent: Vec<Sent>,
    /// Failed `send_to` calls.
    send_errors: u64,
}

/// State shared by the relay's threads and its SIP side.
#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Log>,
    /// Packets received and not yet sent back (queued or held).
    pending: AtomicUsize,
    /// When the last RTP packet arrived.
    last_rx: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most [`DRAIN_LIMIT`]) until nothing is pending and no RTP came for
    /// [`QUIET`]; whether that happened.
    fn wait_drained(&self) -> bool {
        super::process::wait_until(DRAIN_LIMIT, Duration::from_millis(2), || {
            let last = *self.last_rx.lock().unwrap_or_else(|e| e.into_inner());
            self.pending.load(Ordering::SeqCst) == 0 && last.is_none_or(|t| t.elapsed() >= QUIET)
        })
    }
}

/// A packet on its way back.
struct Job {
    data: Vec<u8>,
    to: SocketAddr,
    seq: u16,
    timestamp: u32,
    arrived: Instant,
    planned: Instant,
    drawn: Duration,
}

/// What the relay did, for comparison with sipcheck's figures.
#[derive(Debug, Clone)]
pub(crate) struct RelayReport {
    /// The impairment it applied.
    pub(crate) impairment: Impairment,
    /// RTP packets received from sipcheck.
    pub(crate) received: u64,
    /// Datagrams on the RTP socket that were not RTP.
    pub(crate) ignored: u64,
    /// Held packets sent after their successor (swaps made).
    pub(crate) swaps: u64,
    /// Held packets sent alone (no successor within [`HOLD_LIMIT`]).
    pub(crate) unswapped: u64,
    /// Failed sends.
    pub(crate) send_errors: u64,
    /// Whether every BYE was answered only after the echo had drained.
    pub(crate) drained: bool,
    /// The packets sent back, in sending order.
    pub(crate) sent: Vec<Sent>,
    /// The SIP messages the relay received (first lines), for assertion messages.
    pub(crate) ladder: String,
}

/// RFC 3550 §6.4.1 / A.8 interarrival jitter, in milliseconds, of packets given in arrival
/// order as (arrival instant, RTP timestamp): `J += (|D| − J) / 16`, where `D` is the
/// difference of the arrival spacing and the RTP timestamp spacing of consecutive packets.
pub(crate) fn rfc3550_jitter_ms(packets: impl IntoIterator<Item = (Instant, u32)>) -> f64 {
    let mut jitter = 0.0f64;
    let mut previous: Option<(Instant, u32)> = None;
    for (at, ts) in packets {
        if let Some((prev_at, prev_ts)) = previous {
            let arrival = signed_secs(at, prev_at) * CLOCK_RATE;
            let spacing = f64::from(ts.wrapping_sub(prev_ts) as i32);
            jitter += ((arrival - spacing).abs() - jitter) / 16.0;
        }
        previous = Some((at, ts));
    }
    jitter * 1000.0 / CLOCK_RATE
}

/// `a − b` in seconds, negative when `a` is earlier.
fn signed_secs(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64(),
        None => -b.duration_since(a).as_secs_f64(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl RelayReport {
    /// Packets sent back.
    pub(crate) fn relayed(&self) -> u64 {
        self.sent.len() as u64
    }

    /// The RFC 3550 jitter of the first `n` packets sent back, from the relay's own send
    /// instants: what a receiver with a perfect clock at the relay's socket would report.
    pub(crate) fn jitter_ms(&self, n: usize) -> f64 {
        rfc3550_jitter_ms(self.sent.iter().take(n).map(|s| (s.sent, s.timestamp)))
    }

    /// The RFC 3550 jitter of sipcheck's stream as it reached the relay (arrival instants at
    /// the relay): sipcheck's own send pacing, before any impairment.
    pub(crate) fn input_jitter_ms(&self) -> f64 {
        let mut arrivals: Vec<(Instant, u32)> =
            self.sent.iter().map(|s| (s.arrived, s.timestamp)).collect();
        arrivals.sort_by_key(|&(at, _)| at);
        rfc3550_jitter_ms(arrivals)
    }

    /// The same estimator fed with the planned holding times only (`planned − arrived`),
    /// as if sipcheck's send pacing and the relay's timer were perfect: with delays alone it
    /// depends on nothing but the seed and the packet count.
    pub(crate) fn planned_jitter_ms(&self, n: usize) -> f64 {
        let mut jitter = 0.0f64;
        let mut previous: Option<f64> = None;
        for s in self.sent.iter().take(n) {
            let transit = signed_secs(s.planned, s.arrived) * CLOCK_RATE;
            if let Some(prev) = previous {
                jitter += ((transit - prev).abs() - jitter) / 16.0;
            }
            previous = Some(transit);
        }
        jitter * 1000.0 / CLOCK_RATE
    }

    /// The drawn delays in milliseconds, in sending order.
    pub(crate) fn drawn_ms(&self) -> Vec<f64> {
        self.sent.iter().map(|s| ms(s.drawn)).collect()
    }

    /// How late the relay's sends were against their plan, milliseconds: (mean, max).
    pub(crate) fn lateness_ms(&self) -> (f64, f64) {
        let late: Vec<f64> = self
            .sent
            .iter()
            .map(|s| ms(s.sent.saturating_duration_since(s.planned)))
            .collect();
        let max = late.iter().copied().fold(0.0, f64::max);
        let mean = late.iter().sum::<f64>() / late.len().max(1) as f64;
        (mean, max)
    }

    /// Among the first `n` packets sent back, how many came after a packet with a higher
    /// sequence number (sequence numbers unwrapped across 65535).
    pub(crate) fn reordered_in_first(&self, n: usize) -> u64 {
        let mut highest: Option<i64> = None;
        let mut ext = 0i64;
        let mut previous: Option<u16> = None;
        let mut reordered = 0;
        for s in self.sent.iter().take(n) {
            if let Some(p) = previous {
                ext += i64::from(s.seq.wrapping_sub(p) as i16);
            }
            previous = Some(s.seq);
            match highest {
                Some(h) if ext < h => reordered += 1,
                _ => highest = Some(ext),
            }
        }
        reordered
    }

    /// One line for logs and assertion messages.
    pub(crate) fn summary(&self) -> String {
        let (late_mean, late_max) = self.lateness_ms();
        format!(
            "relay {:?}: received {}, relayed {}, swaps {}, held alone {}, ignored {}, send errors {}, \
             drained before BYE answer {}, jitter of the stream reaching the relay {:.3} ms, \
             of the echo as sent {:.3} ms (as planned {:.3} ms), relay lateness mean \
             {late_mean:.3} ms max {late_max:.3} ms",
            self.impairment,
            self.received,
            self.relayed(),
            self.swaps,
            self.unswapped,
            self.ignored,
            self.send_errors,
            self.drained,
            self.input_jitter_ms(),
            self.jitter_ms(self.sent.len()),
            self.planned_jitter_ms(self.sent.len()),
        )
    }
}

/// A running impairment relay: the SIP UAS and the two RTP threads (receive + impair,
/// delay + send). Everything stops when it is finished or dropped.
pub(crate) struct ImpairPeer {
    /// The SIP address to call.
    pub(crate) sip: SocketAddr,
    /// The RTP address announced in the SDP answer.
    pub(crate) rtp: SocketAddr,
    impairment: Impairment,
    shared: Arc<Shared>,
    drained: Arc<AtomicBool>,
    sip_peer: Option<HostilePeer>,
    threads: Vec<JoinHandle<()>>,
}

impl ImpairPeer {
    /// Binds the RTP socket on 127.0.0.1, starts the echo and the SIP side.
    ///
    /// # Panics
    /// If `max_delay` is not below the packet spacing, or a socket cannot be bound.
    pub(crate) fn start(impairment: Impairment) -> ImpairPeer {
        assert!(
            impairment.max_delay < PTIME,
            "a delay range of {:?} would reorder 20 ms packets by itself",
            impairment.max_delay
        );
        assert!(
            impairment.swap_every.is_none_or(|n| n >= 2),
            "swap_every must be at least 2"
        );
        let socket = UdpSocket::bind((super::LOOPBACK, 0)).expect("bind the relay's RTP socket");
        let rtp = socket.local_addr().expect("local address");
        let sender = socket.try_clone().expect("clone the relay's RTP socket");
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<Job>();

        let receiving = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || receive_loop(&socket, &impairment, &shared, &tx))
        };
        let sending = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || send_loop(&sender, &shared, &rx))
        };

        let drained = Arc::new(AtomicBool::new(true));
        let sip_peer = {
            let shared = Arc::clone(&shared);
            let drained = Arc::clone(&drained);
            HostilePeer::start(move |p| uas(p, rtp, &shared, &drained))
        };
        ImpairPeer {
            sip: sip_peer.addr,
            rtp,
            impairment,
            shared,
            drained,
            sip_peer: Some(sip_peer),
            threads: vec![receiving, sending],
        }
    }

    /// The URI to call.
    pub(crate) fn uri(&self) -> String {
        format!("sip:echo@{}", self.sip)
    }

    fn stop(&mut self) -> String {
        let ladder = self
            .sip_peer
            .take()
            .map(|p| {
                let ladder = p.ladder();
                let _ = p.join();
                ladder
            })
            .unwrap_or_default();
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        ladder
    }

    /// Stops the relay and returns what it did.
    pub(crate) fn finish(mut self) -> RelayReport {
        let ladder = self.stop();
        let mut log = self.shared.log();
        RelayReport {
            impairment: self.impairment,
            received: log.received,
            ignored: log.ignored,
            swaps: log.swaps,
            unswapped: log.unswapped,
            send_errors: log.send_errors,
            drained: self.drained.load(Ordering::SeqCst),
            sent: std::mem::take(&mut log.sent),
            ladder,
        }
    }
}

impl Drop for ImpairPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The SIP side: 200 OK with PCMU at `rtp` to the INVITE (and to its retransmissions),
/// 200 to a BYE once the echo has drained, 200 to OPTIONS; ACKs absorbed.
fn uas(p: &Peer, rtp: SocketAddr, shared: &Shared, drained: &AtomicBool) {
    let body = sdp(
        rtp,
        "0",
        &["a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv"],
    );
    let contact = [format!("Contact: <sip:echo@{}>", p.addr)];
    let Some((invite, from)) = p.recv_method("INVITE", INVITE_WAIT) else {
        return; // sipcheck's output will say what went wrong
    };
    p.respond(&invite, from, 200, "OK", &contact, Some(&body));
    // Until the test stops the relay (recv_request returns None then).
    while let Some((req, from)) = p.recv_request(Duration::from_secs(60)) {
        match req.method().as_str() {
            "INVITE" => p.respond(&req, from, 200, "OK", &contact, Some(&body)),
            "BYE" => {
                if !shared.wait_drained() {
                    drained.store(false, Ordering::SeqCst);
                }
                p.respond(&req, from, 200, "OK", &[], None);
            }
            "ACK" => {}
            _ => p.respond(&req, from, 200, "OK", &[], None),
        }
    }
}

/// Receives sipcheck's RTP, draws each packet's delay, holds and swaps, and queues the
/// packets for [`send_loop`] in the order they are to leave.
fn receive_loop(socket: &UdpSocket, imp: &Impairment, shared: &Shared, tx: &mpsc::Sender<Job>) {
    let mut rng = SplitMix64::new(imp.seed);
    let max_delay = imp.max_delay.as_secs_f64();
    let mut held: Option<Job> = None;
    let mut buf = vec![0u8; 2048];
    // Short enough to notice a held packet's time limit and the stop flag promptly.
    let _ = socket.set_read_timeout(Some(Duration::from_millis(5)));
    while !shared.stop.load(Ordering::SeqCst) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => {
                // A timeout: release a held packet whose successor never came.
                if held
                    .as_ref()
                    .is_some_and(|h| h.arrived.elapsed() >= HOLD_LIMIT)
                {
                    if let Some(mut job) = held.take() {
                        job.planned = Instant::now();
                        shared.log().unswapped += 1;
                        let _ = tx.send(job);
                    }
                }
                continue;
            }
        };
        let arrived = Instant::now();
        let data = &buf[..len];
        // RTP version 2, a full fixed header, not RTCP (packet types 200-204).
        if len < 12 || data[0] >> 6 != 2 || (200..=204).contains(&data[1]) {
            shared.log().ignored += 1;
            continue;
        }
        *shared.last_rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(arrived);
        shared.pending.fetch_add(1, Ordering::SeqCst);
        let index = {
            let mut log = shared.log();
            log.received += 1;
            log.received
        };
        let drawn = Duration::from_secs_f64(max_delay * rng.next_f64());
        let job = Job {
            data: data.to_vec(),
            to: from,
            seq: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            arrived,
            planned: arrived + imp.base_delay + drawn,
            drawn,
        };
        if let Some(mut previous) = held.take() {
            // The swap: the successor leaves first, the held packet right after it.
            previous.planned = job.planned;
            shared.log().swaps += 1;
            let _ = tx.send(job);
            let _ = tx.send(previous);
        } else if imp.swap_every.is_some_and(|n| index % n == 0) {
            held = Some(job);
        } else {
            let _ = tx.send(job);
        }
    }
}

/// Sends the queued packets back, each at its planned time, in queue order (a packet
/// planned earlier than its predecessor's actual departure leaves right after it).
fn send_loop(socket: &UdpSocket, shared: &Shared, rx: &mpsc::Receiver<Job>) {
    // The channel closes when the receiving thread ends.
    while let Ok(job) = rx.recv() {
        let wait = job.planned.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        let sent = Instant::now();
        let ok = socket.send_to(&job.data, job.to).is_ok();
        {
            let mut log = shared.log();
            if !ok {
                log.send_errors += 1;
            }
            log.sent.push(Sent {
                seq: job.seq,
                timestamp: job.timestamp,
                arrived: job.arrived,
                planned: job.planned,
                sent,
                drawn: job.drawn,
            });
        }
        shared.pending.fetch_sub(1, Ordering::SeqCst);
    }
}
