//! `--pcap-calls`: which calls' packets a capture keeps.
//!
//! Each record comes tagged with its call (a [`CallTag`], one per SIP Call-ID) or with none (a
//! REGISTER, an OPTIONS: written as they come). Under [`Keep::All`] every record is written at
//! once. Under [`Keep::Failed`] a call's records are held in a [`Ring`] of their own, bounded
//! ([`Limits::per_call`]: the oldest records go first and the call is marked truncated; all
//! buffers together [`Limits::total`]), until the call ends:
//!
//! - ended failed, its records are written sorted by time once every end of the call told
//!   of ([`Selector::opened`]) has its verdict (both ends of a call may be in this process:
//!   the other end's media stream, handed over before its verdict, is then written with
//!   the call in time order), [`Limits::linger`] after the failure at most; its later
//!   records (a late RTP packet) as they come;
//! - ended passed, they are dropped, and so are the call's later records, as soon as every
//!   end of the call in this process has passed: both ends of a call may be in this process
//!   under one Call-ID, and the other end may still fail. The caller tells each end as it
//!   begins ([`Selector::opened`]): when every end told of has its verdict, the call is
//!   decided at once. When a passed end finds an end told of still without a verdict, or no
//!   end was told of at all (the caller does not count them), the records are held for
//!   [`Limits::linger`] more (by the records' own time) for the other end's verdict, and
//!   dropped then. Late records after the verdict are not what the linger is for: they
//!   follow the call's decision, remembered after its buffer is gone.
//!
//! A media stream's datagrams come whole ([`StreamRing`], held by the stream's own thread
//! until it stops: [`Selector::stream`]) and wait with the call's other records; a written
//! call's rings are merged by time and keep the newest [`Limits::per_call`] bytes of them.
//!
//! [`Selector::finish`] writes the buffers of the calls that never ended (an interrupted run)
//! and of the failed calls still waiting for another end's verdict.
//! The selector never reads a clock: the records' times drive it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::ring::Ring;
pub use super::stream::StreamRing;
use super::Encoder;

/// Which calls a capture keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every packet (no selection).
    All,
    /// The packets of the calls that failed, at most this many calls (the first ones to end
    /// failed); `None`: all of them.
    Failed(Option<u64>),
}

impl std::str::FromStr for Keep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Keep::All),
            "failed" => Ok(Keep::Failed(None)),
            n => match n.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Keep::Failed(Some(n))),
                _ => Err(format!(
                    "`{s}` is neither `failed`, `all` nor a number of failed calls (at least 1)"
                )),
            },
        }
    }
}

/// How much a [`Selector`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of records held per call (its last ones are kept).
    pub per_call: usize,
    /// The most bytes of records held for all calls together.
    pub total: usize,
    /// How long a passed end's records are held for the verdict of another end of the same
    /// Call-ID in this process, when one was told of ([`Selector::opened`]) and has none
    /// yet, or when no end was told of.
    pub linger: Duration,
}

impl Default for Limits {
    /// 4 MiB per call (a minute of G.711 both ways, each packet seen by both ends in this
    /// process, is about 2.2 MB as held), 512 MiB in all, 5 s of linger.
    fn default() -> Self {
        Self {
            per_call: 4 << 20,
            total: 512 << 20,
            linger: Duration::from_secs(5),
        }
    }
}

/// The largest per-call bound [`parse_size`] takes: the total bound.
pub const MAX_PER_CALL: usize = 512 << 20;

/// A per-call bound: bytes, or a number of `KiB`, `MiB` or `GiB`; 1 KiB to [`MAX_PER_CALL`].
///
/// # Errors
/// What is wrong with it, as a sentence.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "`{s}` is not a size (bytes, or a number of KiB, MiB or GiB)"
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (bytes, or a number of KiB, MiB or GiB)"))?;
    match n.checked_mul(scale) {
        Some(bytes) if (1 << 10..=MAX_PER_CALL).contains(&bytes) => Ok(bytes),
        _ => Err(format!("`{s}` is not between 1KiB and 512MiB")),
    }
}

/// A size as `parse_size` reads it back: `4 MiB`, `16 KiB`, `1500 bytes`.
#[must_use]
pub fn show_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// What a [`Selector`] did with the calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selected {
    /// Failed calls whose records were written.
    pub written: u64,
    /// Of those, the calls whose oldest records were dropped for the bounds.
    pub truncated: u64,
    /// Failed calls left out, the number asked for having been written.
    pub over_count: u64,
    /// Call ends that passed (both ends of a call in this process count twice).
    pub passed: u64,
    /// Calls with no end when the capture closed, written.
    pub unfinished: u64,
}

/// A call's number, given by whoever reports its records (the same number for each of
/// its records and for its ends, e.g. one per SIP Call-ID): calls are told apart by it, never
/// by hashing a string per record.
pub type CallTag = u64;

/// The records of one call not decided yet.
#[derive(Debug, Default)]
struct Held {
    /// Its records as they came ([`Selector::record`], [`Selector::record_udp`]).
    ring: Ring,
    /// Its media streams' datagrams, handed over whole ([`Selector::stream`]).
    streams: Vec<StreamRing>,
    /// An end's verdict came and another end told of has none yet: the call is settled at
    /// this time (dropped if every verdict so far passed, else written) unless the last
    /// verdict comes first.
    drop_at: Option<Duration>,
    /// An end of the call failed: it is written (counted already) once every end told of
    /// has its verdict, or at `drop_at`.
    failed: bool,
    /// The ends of the call in this process told of ([`Selector::opened`]), how many of
    /// them passed, and how many have a verdict.
    ends: u32,
    passed: u32,
    verdicts: u32,
}

impl Held {
    /// The records' bytes held.
    fn bytes(&self) -> usize {
        self.ring.bytes() + self.streams.iter().map(StreamRing::bytes).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.ring.is_empty() && self.streams.iter().all(StreamRing::is_empty)
    }

    /// The time of its oldest record.
    fn first_time(&self) -> Option<Duration> {
        let streams = self.streams.iter().filter_map(StreamRing::first_time);
        self.ring.first_time().into_iter().chain(streams).min()
    }

    /// Drop its oldest record (of the ring whose oldest is the oldest): its bytes.
    fn pop_oldest(&mut self) -> usize {
        let stream = self
            .streams
            .iter_mut()
            .filter(|r| !r.is_empty())
            .min_by_key(|r| r.front_time());
        match (stream, self.ring.front_time()) {
            (Some(stream), Some(own)) if stream.front_time() < Some(own) => stream.pop_oldest(),
            (_, Some(_)) => self.ring.pop_oldest(),
            (Some(stream), None) => stream.pop_oldest(),
            (None, None) => 0,
        }
    }

    fn capacity(&self) -> usize {
        self.ring.capacity() + self.streams.iter().map(StreamRing::size).sum::<usize>()
    }
}

/// What became of a decided call.
#[derive(Debug, Clone, Copy)]
struct Decided {
    written: bool,
    /// Written and counted truncated.
    truncated: bool,
}

/// A hasher for [`CallTag`]s: one multiplication (the tags are small distinct numbers).
#[derive(Debug, Default, Clone, Copy)]
pub struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type TagMap<V> = HashMap<CallTag, V, BuildHasherDefault<TagHasher>>;

/// The calls decided that a selector remembers (their late records follow the decision).
const REMEMBERED: usize = 1 << 16;

/// Selects the calls' records: see the [module](self).
#[derive(Debug)]
pub struct Selector {
    keep: Keep,
    limits: Limits,
    held: TagMap<Held>,
    held_bytes: usize,
    /// Bytes held elsewhere that count in [`Limits::total`] too ([`Self::set_outside`]).
    outside: usize,
    /// The passed calls in the order of their drop time.
    lingering: VecDeque<(Duration, CallTag)>,
    /// Decided calls: `true` written, `false` dropped; and their order, to forget the oldest.
    decided: TagMap<Decided>,
    decided_order: VecDeque<CallTag>,
    stats: Selected,
    /// Encodes the UDP datagrams held as they are written.
    udp: Encoder,
    /// A held UDP datagram being made.
    raw: Vec<u8>,
}

impl Selector {
    /// A selector keeping `keep` within `limits`.
    #[must_use]
    pub fn new(keep: Keep, limits: Limits) -> Self {
        Self {
            keep,
            limits,
            held: TagMap::default(),
            held_bytes: 0,
            outside: 0,
            lingering: VecDeque::new(),
            decided: TagMap::default(),
            decided_order: VecDeque::new(),
            stats: Selected::default(),
            udp: Encoder::new(),
            raw: Vec::new(),
        }
    }

    /// What was done so far.
    #[must_use]
    pub fn selected(&self) -> Selected {
        self.stats
    }

    /// The bytes of records held now.
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// The bytes held outside the selector that count in [`Limits::total`] (the streams'
    /// rings not handed over yet): the selector makes room for its records within what they
    /// leave.
    pub fn set_outside(&mut self, bytes: usize) {
        self.outside = bytes;
    }

    /// True when the records held (with those held outside) are over [`Limits::total`].
    fn over(&self) -> bool {
        self.held_bytes + self.outside > self.limits.total
    }

    /// The bytes the held calls' buffers have allocated now.
    ///
    /// An ended call's buffer is freed, not kept for the next call: a kept buffer has its
    /// full size from the next call's first record on (every call under way would take a
    /// whole call's buffer, twice what growing takes), and the allocator reuses the freed
    /// memory anyway.
    #[must_use]
    pub fn memory(&self) -> usize {
        self.held.values().map(Held::capacity).sum()
    }

    /// One `record` (one or more pcap records) of `call` at `wall`: appended to `out` when it
    /// is to be written now, else held or dropped.
    pub fn record(
        &mut self,
        wall: Duration,
        call: Option<CallTag>,
        record: &[u8],
        out: &mut Vec<u8>,
    ) {
        match self.fate(wall, call, out) {
            Fate::Write => out.extend_from_slice(record),
            Fate::Hold(call) => self.hold(wall, call, record, false, out),
            Fate::Drop => {}
        }
    }

    /// One UDP datagram `payload` of `call` from `src` to `dst` at `wall`: its record
    /// (see [`Encoder::udp`]) appended to `out` when it is to be written now, else held or
    /// dropped. A held datagram is kept as its addresses and payload, and encoded only if
    /// its call is written: most calls pass, their datagrams never encoded.
    pub fn record_udp(
        &mut self,
        wall: Duration,
        call: Option<CallTag>,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        match self.fate(wall, call, out) {
            Fate::Write => self.udp.udp(out, wall, src, dst, payload),
            Fate::Hold(call) => {
                let mut raw = std::mem::take(&mut self.raw);
                raw.clear();
                put_udp(&mut raw, src, dst, payload);
                self.hold(wall, call, &raw, true, out);
                self.raw = raw;
            }
            Fate::Drop => {}
        }
    }

    /// What becomes of a record of `call` at `wall`.
    fn fate(&mut self, wall: Duration, call: Option<CallTag>, out: &mut Vec<u8>) -> Fate {
        self.expire(wall, out);
        let (Keep::Failed(_), Some(call)) = (self.keep, call) else {
            return Fate::Write;
        };
        match self.decided.get(&call) {
            Some(d) if d.written => Fate::Write,
            Some(_) => Fate::Drop,
            None => Fate::Hold(call),
        }
    }

    fn hold(&mut self, wall: Duration, call: CallTag, record: &[u8], udp: bool, out: &mut Vec<u8>) {
        let per_call = self.limits.per_call;
        let held = self.held.entry(call).or_default();
        let dropped = held.ring.push_marked(wall, record, per_call, udp);
        self.held_bytes = self.held_bytes + record.len() - dropped;
        if self.over() {
            self.make_room(call, out);
        }
    }

    /// A media stream of `call` stopped: its datagrams ([`StreamRing`]) are written now
    /// (sorted by time) when the call was written already, dropped when it was dropped,
    /// else held with the call's other records until its verdict, and then written with
    /// them in time order.
    pub fn stream(&mut self, call: CallTag, ring: StreamRing, out: &mut Vec<u8>) {
        if ring.is_empty() && !ring.truncated() {
            return;
        }
        if self.keep == Keep::All {
            let mut held = Held {
                streams: vec![ring],
                ..Held::default()
            };
            write_held(&mut self.udp, &mut held, usize::MAX, out);
            return;
        }
        match self.decided.get_mut(&call) {
            Some(d) if d.written => {
                // Late (the call's verdict came first): after its other records.
                let mut held = Held {
                    streams: vec![ring],
                    ..Held::default()
                };
                let truncated = write_held(&mut self.udp, &mut held, self.limits.per_call, out);
                if truncated && !d.truncated {
                    d.truncated = true;
                    self.stats.truncated += 1;
                }
            }
            Some(_) => {}
            None => {
                self.held_bytes += ring.bytes();
                self.held.entry(call).or_default().streams.push(ring);
                if self.over() {
                    self.make_room(call, out);
                }
            }
        }
    }

    /// Over the total bound: the lingering calls go first (the oldest first: a passed one
    /// dropped, a failed one written), then the oldest records of `call`.
    fn make_room(&mut self, call: CallTag, out: &mut Vec<u8>) {
        let mut own = None;
        while self.over() {
            let Some((at, lingering)) = self.lingering.pop_front() else {
                break;
            };
            if lingering == call {
                own = Some((at, lingering));
            } else {
                self.settle(lingering, out);
            }
        }
        if let Some(own) = own {
            self.lingering.push_front(own);
        }
        let total = self.limits.total.saturating_sub(self.outside);
        if let Some(held) = self.held.get_mut(&call) {
            while self.held_bytes > total && !held.is_empty() {
                self.held_bytes -= held.pop_oldest();
            }
        }
    }

    /// Settle the calls whose linger is over at `wall`.
    fn expire(&mut self, wall: Duration, out: &mut Vec<u8>) {
        while let Some((at, _)) = self.lingering.front() {
            if *at > wall {
                break;
            }
            let (at, call) = self.lingering.pop_front().expect("a front");
            // Ended passed again since (the other end): its later drop time holds.
            if self.held.get(&call).is_some_and(|h| h.drop_at == Some(at)) {
                self.settle(call, out);
            }
        }
    }

    /// `call`, lingering, is settled now without the verdicts still missing: written when an
    /// end failed, else dropped.
    fn settle(&mut self, call: CallTag, out: &mut Vec<u8>) {
        let Some(held) = self.held.get(&call) else {
            return;
        };
        if held.drop_at.is_none() {
            return;
        }
        if held.failed {
            self.write_call(call, out);
            return;
        }
        let held = self.held.remove(&call).expect("held");
        self.release(&held);
        self.decide(call, false, false);
    }

    /// Write `call`, failed (and counted written already), sorted by time.
    fn write_call(&mut self, call: CallTag, out: &mut Vec<u8>) {
        let mut held = self.held.remove(&call).unwrap_or_default();
        self.release(&held);
        let truncated = write_held(&mut self.udp, &mut held, self.limits.per_call, out);
        if truncated {
            self.stats.truncated += 1;
        }
        self.decide(call, true, truncated);
    }

    /// A call's records are no longer held (its buffers are freed after).
    fn release(&mut self, held: &Held) {
        self.held_bytes -= held.bytes();
    }

    fn decide(&mut self, call: CallTag, written: bool, truncated: bool) {
        if self
            .decided
            .insert(call, Decided { written, truncated })
            .is_none()
        {
            self.decided_order.push_back(call);
            if self.decided_order.len() > REMEMBERED {
                if let Some(old) = self.decided_order.pop_front() {
                    self.decided.remove(&old);
                }
            }
        }
    }

    /// One end of `call` began in this process (a caller's once its Call-ID is known, a
    /// callee's as its INVITE comes): the call is not decided before this end's verdict
    /// ([`Self::ended`]), for [`Limits::linger`] at most once another end passed. A call
    /// dropped already (every end told of before passed) is held again from now on.
    pub fn opened(&mut self, call: CallTag) {
        if self.keep == Keep::All {
            return;
        }
        match self.decided.get(&call) {
            Some(d) if d.written => return,
            Some(_) => {
                self.decided.remove(&call);
            }
            None => {}
        }
        self.held.entry(call).or_default().ends += 1;
    }

    /// One end of `call` ended at `wall`, failed or passed. A call one of whose ends failed
    /// is written (its records appended to `out`, sorted by time) once every end told of
    /// ([`Self::opened`]) has its verdict — their streams' rings ([`Self::stream`]) come
    /// before their verdicts and are written with it — or [`Limits::linger`] after the
    /// failure at most. A passed end's records are dropped at once when every end told of
    /// has passed, else held for [`Limits::linger`] at most for the others' verdicts.
    pub fn ended(&mut self, wall: Duration, call: CallTag, failed: bool, out: &mut Vec<u8>) {
        self.expire(wall, out);
        let Keep::Failed(most) = self.keep else {
            return;
        };
        if !failed {
            self.stats.passed += 1;
        }
        if self.decided.contains_key(&call) {
            return;
        }
        let held = self.held.entry(call).or_default();
        if failed {
            if !held.failed {
                // The first failure: counted now (the first N calls to fail are written).
                if most.is_some_and(|most| self.stats.written >= most) {
                    self.stats.over_count += 1;
                    let held = self.held.remove(&call).expect("held");
                    self.release(&held);
                    self.decide(call, false, false);
                    return;
                }
                self.stats.written += 1;
                held.failed = true;
            }
            held.verdicts += 1;
        } else {
            held.passed += 1;
            held.verdicts += 1;
        }
        if held.verdicts >= held.ends {
            // Every end of the call here has its verdict (or none was told of): nothing is
            // waited for.
            if held.failed {
                self.write_call(call, out);
                return;
            }
            if held.ends > 0 {
                let held = self.held.remove(&call).expect("held");
                self.release(&held);
                self.decide(call, false, false);
                return;
            }
        }
        let drop_at = wall + self.limits.linger;
        held.drop_at = Some(drop_at);
        self.lingering.push_back((drop_at, call));
    }

    /// The capture closes: the calls that never ended are written (their verdict unknown);
    /// the passed ones still held are dropped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        // The failed calls waiting for another end's verdict: written, in the order they
        // were to be.
        while let Some((at, call)) = self.lingering.pop_front() {
            if self
                .held
                .get(&call)
                .is_some_and(|h| h.failed && h.drop_at == Some(at))
            {
                self.write_call(call, out);
            }
        }
        let mut unfinished: Vec<(CallTag, Held)> = self
            .held
            .drain()
            .filter(|(_, held)| held.drop_at.is_none() && !held.is_empty())
            .collect();
        self.held_bytes = 0;
        self.lingering.clear();
        // In the order of their first record.
        unfinished.sort_by_key(|(_, held)| held.first_time());
        for (call, mut held) in unfinished {
            self.stats.unfinished += 1;
            let truncated = write_held(&mut self.udp, &mut held, self.limits.per_call, out);
            if truncated {
                self.stats.truncated += 1;
            }
            self.decide(call, true, truncated);
        }
    }
}

/// What becomes of a record.
enum Fate {
    Write,
    Hold(CallTag),
    Drop,
}

/// Append a call's records (its own ring's and its streams') to `out` merged in time order
/// (stable: records of one time in the order of the rings, then of their pushing), the
/// newest `per_call` bytes of them (as held), the UDP datagrams held as addresses and payload
/// encoded by `udp`; and empty the rings. True when records are missing: dropped from a ring
/// for its bound, or here for `per_call`.
fn write_held(udp: &mut Encoder, held: &mut Held, per_call: usize, out: &mut Vec<u8>) -> bool {
    let mut truncated = held.ring.truncated() || held.streams.iter().any(StreamRing::truncated);
    let streams = held.streams.iter().flat_map(StreamRing::records);
    let mut records: Vec<(Duration, &[u8], bool)> = held
        .ring
        .records()
        .chain(streams.map(|(wall, record)| (wall, record, true)))
        .collect();
    records.sort_by_key(|(wall, _, _)| *wall);
    // The newest records within the bound.
    let mut bytes = 0;
    let mut first = records.len();
    while first > 0 && bytes + records[first - 1].1.len() <= per_call {
        first -= 1;
        bytes += records[first].1.len();
    }
    truncated |= first > 0;
    out.reserve(bytes + (records.len() - first) * 48);
    for &(wall, record, raw) in &records[first..] {
        if !raw {
            out.extend_from_slice(record);
        } else if let Some((src, dst, payload)) = take_udp(record) {
            udp.udp(out, wall, src, dst, payload);
        }
    }
    held.ring.clear();
    held.streams.clear();
    truncated
}

/// The head of a held UDP datagram ([`put_udp`]) and its length.
pub(super) fn udp_head(src: SocketAddr, dst: SocketAddr) -> ([u8; 37], usize) {
    let mut head = [0u8; 37];
    let n = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            head[0] = 4;
            head[1..5].copy_from_slice(&s.octets());
            head[5..9].copy_from_slice(&d.octets());
            9
        }
        (s, d) => {
            head[0] = 6;
            head[1..17].copy_from_slice(&v6(s).octets());
            head[17..33].copy_from_slice(&v6(d).octets());
            33
        }
    };
    head[n..n + 2].copy_from_slice(&src.port().to_be_bytes());
    head[n + 2..n + 4].copy_from_slice(&dst.port().to_be_bytes());
    (head, n + 4)
}

/// A held UDP datagram: the family (4 or 6), the source and destination addresses and
/// ports, the payload.
fn put_udp(raw: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let (head, n) = udp_head(src, dst);
    raw.extend_from_slice(&head[..n]);
    raw.extend_from_slice(payload);
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// What [`put_udp`] held.
fn take_udp(raw: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let (family, rest) = raw.split_first()?;
    let (src, dst, rest) = match family {
        4 => {
            let s: [u8; 4] = rest.get(0..4)?.try_into().ok()?;
            let d: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
            (
                IpAddr::from(Ipv4Addr::from(s)),
                IpAddr::from(Ipv4Addr::from(d)),
                &rest[8..],
            )
        }
        _ => {
            let s: [u8; 16] = rest.get(0..16)?.try_into().ok()?;
            let d: [u8; 16] = rest.get(16..32)?.try_into().ok()?;
            (
                IpAddr::from(Ipv6Addr::from(s)),
                IpAddr::from(Ipv6Addr::from(d)),
                &rest[32..],
            )
        }
    };
    let sport = u16::from_be_bytes(rest.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?);
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        &rest[4..],
    ))
}

#[cfg(test)]
mod tests {
    use super::{Keep, Limits, Selected, Selector};
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits() -> Limits {
        Limits {
            per_call: 10,
            total: 25,
            linger: ms(100),
        }
    }

    #[test]
    fn sizes_parse_in_bytes_kib_mib_gib_within_bounds_and_show_back() {
        use super::{parse_size, show_size};
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("512").is_err(), "under 1 KiB");
        assert!(parse_size("1GiB").is_err(), "over the total");
        assert!(parse_size("4MB").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(show_size(4 << 20), "4 MiB");
        assert_eq!(show_size(16 << 10), "16 KiB");
        assert_eq!(show_size(1500), "1500 bytes");
    }

    #[test]
    fn keep_parses_failed_all_and_a_count() {
        assert_eq!("all".parse(), Ok(Keep::All));
        assert_eq!("failed".parse(), Ok(Keep::Failed(None)));
        assert_eq!("3".parse(), Ok(Keep::Failed(Some(3))));
        assert!("0".parse::<Keep>().is_err());
        assert!("some".parse::<Keep>().is_err());
    }

    #[test]
    fn all_writes_every_record_at_once() {
        let mut s = Selector::new(Keep::All, limits());
        let a = 1;
        let mut out = Vec::new();
        s.record(ms(1), Some(a), b"12", &mut out);
        s.record(ms(2), None, b"3", &mut out);
        s.ended(ms(3), a, false, &mut out);
        assert_eq!(out, b"123");
    }

    #[test]
    fn a_failed_call_is_written_sorted_a_passed_one_dropped_other_traffic_at_once() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let (a, b) = (1, 2);
        let mut out = Vec::new();
        s.record(ms(2), Some(a), b"a2", &mut out);
        s.record(ms(1), Some(a), b"a1", &mut out);
        s.record(ms(1), Some(b), b"b1", &mut out);
        s.record(ms(3), None, b"R", &mut out);
        assert_eq!(out, b"R", "non-call traffic at once, the calls held");
        s.ended(ms(4), b, false, &mut out);
        s.ended(ms(5), a, true, &mut out);
        assert_eq!(out, b"Ra1a2");
        // A late record of the failed call is written, of the passed one (its linger over)
        // dropped.
        s.record(ms(200), Some(a), b"a9", &mut out);
        s.record(ms(201), Some(b), b"b9", &mut out);
        assert_eq!(out, b"Ra1a2a9");
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(
            s.selected(),
            Selected {
                written: 1,
                passed: 1,
                ..Selected::default()
            }
        );
    }

    #[test]
    fn the_other_end_failing_within_the_linger_writes_the_call() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let a = 1;
        let mut out = Vec::new();
        s.record(ms(1), Some(a), b"x", &mut out);
        s.ended(ms(2), a, false, &mut out);
        s.record(ms(3), Some(a), b"y", &mut out);
        s.ended(ms(50), a, true, &mut out);
        assert_eq!(out, b"xy");
    }

    #[test]
    fn a_passed_call_is_dropped_once_every_end_told_of_has_passed_not_a_linger_later() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let a = 1;
        let mut out = Vec::new();
        // Both ends of the call in this process.
        s.opened(a);
        s.opened(a);
        s.record(ms(1), Some(a), b"x", &mut out);
        s.ended(ms(2), a, false, &mut out);
        assert_eq!(s.held_bytes(), 1, "the other end's verdict is waited for");
        s.record(ms(3), Some(a), b"y", &mut out);
        s.ended(ms(4), a, false, &mut out);
        assert_eq!(
            s.held_bytes(),
            0,
            "dropped at the second verdict, not 100 ms later"
        );
        assert_eq!(s.memory(), 0, "its buffer is freed");
        // Its late records follow the decision.
        s.record(ms(5), Some(a), b"z", &mut out);
        assert!(out.is_empty());
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.selected().passed, 2);
    }

    #[test]
    fn one_end_told_of_decides_alone() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let (a, b) = (1, 2);
        let mut out = Vec::new();
        s.opened(a);
        s.opened(b);
        s.record(ms(1), Some(a), b"aa", &mut out);
        s.record(ms(1), Some(b), b"bb", &mut out);
        s.ended(ms(2), a, false, &mut out);
        assert_eq!(s.held_bytes(), 2, "a dropped at once, b held");
        s.ended(ms(3), b, true, &mut out);
        assert_eq!(out, b"bb");
    }

    #[test]
    fn the_other_end_told_of_failing_after_one_passed_writes_the_whole_call() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let a = 1;
        let mut out = Vec::new();
        s.opened(a);
        s.record(ms(1), Some(a), b"x", &mut out);
        s.opened(a);
        s.ended(ms(2), a, false, &mut out);
        s.record(ms(3), Some(a), b"y", &mut out);
        s.ended(ms(50), a, true, &mut out);
        assert_eq!(out, b"xy");
        assert_eq!(s.selected().written, 1);
    }

    #[test]
    fn an_end_told_of_that_never_ends_keeps_the_passed_call_for_the_linger_only() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let (a, b) = (1, 2);
        let mut out = Vec::new();
        s.opened(a);
        s.opened(a);
        s.record(ms(1), Some(a), b"aaaa", &mut out);
        s.ended(ms(2), a, false, &mut out);
        s.record(ms(101), Some(b), b"b", &mut out);
        assert_eq!(s.held_bytes(), 5, "within the linger");
        s.record(ms(103), Some(b), b"b", &mut out);
        assert_eq!(s.held_bytes(), 2, "the linger over: dropped");
        s.ended(ms(104), a, true, &mut out);
        assert!(out.is_empty(), "decided dropped");
    }

    #[test]
    fn an_end_that_begins_after_its_call_was_dropped_is_held_again() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let a = 1;
        let mut out = Vec::new();
        s.opened(a);
        s.record(ms(1), Some(a), b"old", &mut out);
        s.ended(ms(2), a, false, &mut out);
        assert_eq!(s.held_bytes(), 0);
        s.opened(a);
        s.record(ms(3), Some(a), b"new", &mut out);
        s.ended(ms(4), a, true, &mut out);
        assert_eq!(out, b"new");
    }

    #[test]
    fn an_end_told_of_with_no_record_is_not_written_at_the_finish() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let mut out = Vec::new();
        s.opened(1);
        s.finish(&mut out);
        assert!(out.is_empty());
        assert_eq!(s.selected().unfinished, 0);
    }

    #[test]
    fn held_udp_datagrams_are_written_as_the_encoder_writes_them_at_once() {
        use super::super::Encoder;
        use std::net::SocketAddr;
        let pairs: [(&str, &str); 3] = [
            ("127.0.0.1:20000", "127.0.0.1:20002"),
            ("[2001:db8::1]:5060", "[2001:db8::2]:5070"),
            ("192.0.2.1:5060", "[2001:db8::2]:5070"),
        ];
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut expected = Vec::new();
        let mut out = Vec::new();
        for (i, (src, dst)) in pairs.iter().enumerate() {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let payload = vec![i as u8; 172];
            Encoder::new().udp(&mut expected, ms(i as u64), src, dst, &payload);
            s.record_udp(ms(i as u64), Some(1), src, dst, &payload, &mut out);
        }
        assert!(out.is_empty(), "held");
        // Held as addresses and payload: 13 bytes over the payload for IPv4, not the 44 of
        // a record's headers.
        assert_eq!(s.held_bytes(), (13 + 172) + 2 * (37 + 172));
        s.ended(ms(9), 1, true, &mut out);
        assert_eq!(out, expected);
        // Written at once when not held (no call).
        let mut at_once = Vec::new();
        let (src, dst): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        s.record_udp(ms(10), None, src, dst, b"x", &mut at_once);
        let mut expected = Vec::new();
        Encoder::new().udp(&mut expected, ms(10), src, dst, b"x");
        assert_eq!(at_once, expected);
    }

    /// A datagram of call tests: `n` says which (its payload's byte), and the time.
    struct Dgram {
        ms: u64,
        n: u8,
        sent: bool,
    }

    fn ends() -> (std::net::SocketAddr, std::net::SocketAddr) {
        (
            "127.0.0.1:20000".parse().unwrap(),
            "127.0.0.1:30000".parse().unwrap(),
        )
    }

    /// The records `dgrams` make, in their order.
    fn encoded(dgrams: &[Dgram]) -> Vec<u8> {
        let (local, remote) = ends();
        let mut out = Vec::new();
        let mut encoder = super::super::Encoder::new();
        for d in dgrams {
            let (src, dst) = if d.sent {
                (local, remote)
            } else {
                (remote, local)
            };
            encoder.udp(&mut out, ms(d.ms), src, dst, &[d.n; 20]);
        }
        out
    }

    /// A stream's ring holding `dgrams`, at most `bound` bytes.
    fn stream_ring(dgrams: &[Dgram], bound: usize) -> super::StreamRing {
        let (local, remote) = ends();
        let mut ring = super::StreamRing::with_limit(bound);
        for d in dgrams {
            let (src, dst) = if d.sent {
                (local, remote)
            } else {
                (remote, local)
            };
            ring.push_udp(ms(d.ms), src, dst, &[d.n; 20], bound);
        }
        ring
    }

    /// A SIP-like datagram of `call` through [`Selector::record_udp`].
    fn sip(s: &mut Selector, call: u64, d: &Dgram, out: &mut Vec<u8>) {
        let (local, remote) = ends();
        let (src, dst) = if d.sent {
            (local, remote)
        } else {
            (remote, local)
        };
        s.record_udp(ms(d.ms), Some(call), src, dst, &[d.n; 20], out);
    }

    fn d(ms: u64, n: u8, sent: bool) -> Dgram {
        Dgram { ms, n, sent }
    }

    /// Held size of one test datagram: 13 bytes of addresses and 20 of payload.
    const HELD: usize = 33;

    #[test]
    fn a_stream_handed_over_before_the_verdict_is_written_with_the_call_in_time_order() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        s.opened(1);
        // The INVITE and its 200, then the stream's packets both ways, then the BYE.
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        sip(&mut s, 1, &d(5, b'O', false), &mut out);
        let ring = stream_ring(
            &[
                d(10, 1, true),
                d(12, 2, false),
                d(30, 3, true),
                d(31, 4, false),
            ],
            1 << 20,
        );
        sip(&mut s, 1, &d(20, b'B', true), &mut out);
        s.stream(1, ring, &mut out);
        assert!(out.is_empty(), "held until the verdict");
        assert_eq!(s.held_bytes(), 7 * HELD);
        s.ended(ms(40), 1, true, &mut out);
        let expected = encoded(&[
            d(1, b'I', true),
            d(5, b'O', false),
            d(10, 1, true),
            d(12, 2, false),
            d(20, b'B', true),
            d(30, 3, true),
            d(31, 4, false),
        ]);
        assert_eq!(out, expected, "merged by time");
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(
            s.selected(),
            Selected {
                written: 1,
                ..Selected::default()
            }
        );
    }

    #[test]
    fn a_stream_of_a_call_that_passed_is_dropped_before_or_after_its_verdict() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        // Handed over first: held, then dropped with the call.
        s.opened(1);
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        s.stream(
            1,
            stream_ring(&[d(2, 1, true), d(3, 2, false)], 1 << 20),
            &mut out,
        );
        assert_eq!(s.held_bytes(), 3 * HELD);
        s.ended(ms(4), 1, false, &mut out);
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.memory(), 0);
        // Handed over after the verdict: dropped at once.
        s.opened(2);
        sip(&mut s, 2, &d(5, b'I', true), &mut out);
        s.ended(ms(6), 2, false, &mut out);
        s.stream(2, stream_ring(&[d(5, 1, true)], 1 << 20), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.selected().passed, 2);
    }

    #[test]
    fn a_stream_handed_over_after_its_call_failed_is_written_at_once_sorted() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        s.opened(1);
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        s.ended(ms(2), 1, true, &mut out);
        assert_eq!(out, encoded(&[d(1, b'I', true)]));
        // Received stamped by the kernel a little before what was sent on the same tick.
        s.stream(
            1,
            stream_ring(&[d(4, 1, true), d(3, 2, false), d(5, 3, true)], 1 << 20),
            &mut out,
        );
        assert_eq!(
            out,
            encoded(&[
                d(1, b'I', true),
                d(3, 2, false),
                d(4, 1, true),
                d(5, 3, true)
            ])
        );
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(s.selected().truncated, 0);
    }

    #[test]
    fn a_wrapped_stream_ring_keeps_its_newest_datagrams_and_its_call_is_counted_truncated() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        // Room for 3 datagrams of 33 bytes (each with its record's header): the first two
        // of five go.
        let dgrams: Vec<Dgram> = (0..5).map(|i| d(10 + i, i as u8, true)).collect();
        let ring = stream_ring(&dgrams, 3 * (HELD + super::super::stream::HEADER));
        assert!(ring.truncated());
        assert_eq!(ring.len(), 3);
        s.stream(1, ring, &mut out);
        s.ended(ms(20), 1, true, &mut out);
        assert_eq!(out, encoded(&dgrams[2..]));
        assert_eq!(s.selected().truncated, 1);
        // Late, after the verdict: the truncation counted once per call.
        let mut late = stream_ring(&[d(21, 9, true)], 1 << 20);
        late.set_truncated();
        s.stream(1, late, &mut out);
        assert_eq!(s.selected().truncated, 1);
    }

    #[test]
    fn a_call_with_streams_over_its_bound_keeps_its_newest_records_across_rings() {
        let limits = Limits {
            per_call: 4 * HELD,
            ..limits_large()
        };
        let mut s = Selector::new(Keep::Failed(None), limits);
        let mut out = Vec::new();
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        // Two streams of the call (both of its ends in this process), each within the bound.
        s.stream(
            1,
            stream_ring(&[d(2, 1, true), d(4, 2, true)], 4 * HELD),
            &mut out,
        );
        s.stream(
            1,
            stream_ring(&[d(3, 3, false), d(5, 4, false)], 4 * HELD),
            &mut out,
        );
        sip(&mut s, 1, &d(6, b'B', true), &mut out);
        s.ended(ms(7), 1, true, &mut out);
        // Six records held, four fit: the newest four, in time order.
        assert_eq!(
            out,
            encoded(&[
                d(3, 3, false),
                d(4, 2, true),
                d(5, 4, false),
                d(6, b'B', true)
            ])
        );
        assert_eq!(s.selected().truncated, 1);
    }

    #[test]
    fn streams_held_elsewhere_count_in_the_total_and_passed_calls_make_room_first() {
        let limits = Limits {
            per_call: 1 << 20,
            total: 10 * HELD,
            linger: ms(100),
        };
        let mut s = Selector::new(Keep::Failed(None), limits);
        let mut out = Vec::new();
        // Call 1 passed, lingering for another end (none told of).
        s.stream(
            1,
            stream_ring(&[d(1, 1, true), d(2, 2, true)], 1 << 20),
            &mut out,
        );
        s.ended(ms(3), 1, false, &mut out);
        assert_eq!(s.held_bytes(), 2 * HELD);
        // The media threads hold 7 datagrams' worth: 3 are left for the selector.
        s.set_outside(7 * HELD);
        let dgrams: Vec<Dgram> = (0..4).map(|i| d(10 + i, 10 + i as u8, true)).collect();
        s.stream(2, stream_ring(&dgrams, 1 << 20), &mut out);
        // The passed call went first, then call 2's oldest.
        assert_eq!(s.held_bytes(), 3 * HELD);
        s.ended(ms(20), 2, true, &mut out);
        assert_eq!(out, encoded(&dgrams[1..]));
        assert_eq!(s.selected().truncated, 1);
    }

    #[test]
    fn a_stream_of_a_call_with_no_end_is_written_at_the_finish() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        s.stream(2, stream_ring(&[d(5, 5, true)], 1 << 20), &mut out);
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        s.stream(
            1,
            stream_ring(&[d(3, 3, true), d(2, 2, false)], 1 << 20),
            &mut out,
        );
        s.finish(&mut out);
        assert_eq!(
            out,
            encoded(&[
                d(1, b'I', true),
                d(2, 2, false),
                d(3, 3, true),
                d(5, 5, true)
            ])
        );
        assert_eq!(s.selected().unfinished, 2);
    }

    #[test]
    fn a_failed_end_waits_for_the_other_ends_verdict_and_stream_then_the_call_is_written_once_in_order(
    ) {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        // Both ends of the call in this process: each stream stops before its end's verdict.
        s.opened(1);
        s.opened(1);
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        s.stream(
            1,
            stream_ring(&[d(10, 1, true), d(30, 3, true)], 1 << 20),
            &mut out,
        );
        s.ended(ms(40), 1, true, &mut out);
        assert!(out.is_empty(), "the other end's stream is waited for");
        assert_eq!(s.selected().written, 1, "counted at its first failure");
        s.stream(
            1,
            stream_ring(&[d(11, 2, false), d(31, 4, false)], 1 << 20),
            &mut out,
        );
        sip(&mut s, 1, &d(41, b'B', false), &mut out);
        s.ended(ms(42), 1, false, &mut out);
        assert_eq!(
            out,
            encoded(&[
                d(1, b'I', true),
                d(10, 1, true),
                d(11, 2, false),
                d(30, 3, true),
                d(31, 4, false),
                d(41, b'B', false),
            ])
        );
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(
            s.selected(),
            Selected {
                written: 1,
                passed: 1,
                ..Selected::default()
            }
        );
    }

    #[test]
    fn a_failed_call_waits_for_its_other_end_the_linger_at_most_and_is_written_at_the_finish() {
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        s.opened(1);
        s.opened(1);
        sip(&mut s, 1, &d(1, b'I', true), &mut out);
        s.ended(ms(2), 1, true, &mut out);
        s.record(ms(101), Some(9), b"x", &mut out);
        assert!(out.is_empty(), "within the linger");
        s.record(ms(103), Some(9), b"x", &mut out);
        assert_eq!(
            out,
            encoded(&[d(1, b'I', true)]),
            "the linger over: written"
        );
        // The other end's late stream follows the decision.
        s.stream(1, stream_ring(&[d(104, 1, false)], 1 << 20), &mut out);
        assert_eq!(out, encoded(&[d(1, b'I', true), d(104, 1, false)]));

        // Closed while waiting: written as failed, not as unfinished.
        let mut s = Selector::new(Keep::Failed(None), limits_large());
        let mut out = Vec::new();
        s.opened(2);
        s.opened(2);
        s.stream(2, stream_ring(&[d(5, 5, true)], 1 << 20), &mut out);
        s.ended(ms(6), 2, true, &mut out);
        s.finish(&mut out);
        assert_eq!(out, encoded(&[d(5, 5, true)]));
        assert_eq!(
            s.selected(),
            Selected {
                written: 1,
                ..Selected::default()
            }
        );
    }

    #[test]
    fn the_first_n_calls_to_fail_are_written_even_when_one_waits_for_its_other_end() {
        let mut s = Selector::new(Keep::Failed(Some(1)), limits_large());
        let mut out = Vec::new();
        s.opened(1);
        s.opened(1);
        sip(&mut s, 1, &d(1, b'a', true), &mut out);
        sip(&mut s, 2, &d(2, b'b', true), &mut out);
        s.ended(ms(3), 1, true, &mut out);
        s.ended(ms(4), 2, true, &mut out);
        assert!(out.is_empty());
        s.ended(ms(5), 1, false, &mut out);
        assert_eq!(out, encoded(&[d(1, b'a', true)]));
        assert_eq!(
            s.selected(),
            Selected {
                written: 1,
                over_count: 1,
                passed: 1,
                ..Selected::default()
            }
        );
    }

    fn limits_large() -> Limits {
        Limits {
            per_call: 1 << 20,
            total: 1 << 20,
            linger: ms(100),
        }
    }

    #[test]
    fn a_call_over_its_bound_keeps_its_last_records_and_is_counted_truncated() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let a = 1;
        let mut out = Vec::new();
        for (i, r) in [b"0123", b"4567", b"89ab", b"cdef"].iter().enumerate() {
            s.record(ms(i as u64), Some(a), *r, &mut out);
        }
        assert!(s.held_bytes() <= 10);
        s.ended(ms(10), a, true, &mut out);
        assert_eq!(out, b"89abcdef", "the last records that fit 10 bytes");
        assert_eq!(s.selected().truncated, 1);
    }

    #[test]
    fn over_the_total_bound_lingering_passed_calls_go_first() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let (a, b, c) = (1, 2, 3);
        let mut out = Vec::new();
        s.record(ms(1), Some(a), b"aaaaaaaa", &mut out);
        s.ended(ms(2), a, false, &mut out);
        s.record(ms(3), Some(b), b"bbbbbbbb", &mut out);
        s.record(ms(4), Some(c), b"cccccccc", &mut out);
        s.record(ms(5), Some(c), b"CC", &mut out);
        assert_eq!(s.held_bytes(), 18, "the passed call dropped for room");
        s.ended(ms(6), c, true, &mut out);
        s.ended(ms(7), b, true, &mut out);
        assert_eq!(out, b"ccccccccCCbbbbbbbb");
        assert_eq!(s.selected().truncated, 0);
    }

    #[test]
    fn a_count_writes_the_first_failed_calls_only() {
        let mut s = Selector::new(Keep::Failed(Some(1)), limits());
        let (a, b) = (1, 2);
        let mut out = Vec::new();
        s.record(ms(1), Some(a), b"a", &mut out);
        s.record(ms(1), Some(b), b"b", &mut out);
        s.ended(ms(2), b, true, &mut out);
        s.ended(ms(3), a, true, &mut out);
        s.record(ms(4), Some(a), b"A", &mut out);
        assert_eq!(out, b"b");
        assert_eq!(s.selected().over_count, 1);
    }

    #[test]
    fn calls_with_no_end_are_written_at_the_finish() {
        let mut s = Selector::new(Keep::Failed(None), limits());
        let (a, b) = (1, 2);
        let mut out = Vec::new();
        s.record(ms(2), Some(b), b"b", &mut out);
        s.record(ms(1), Some(a), b"a", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"ab");
        assert_eq!(s.selected().unfinished, 2);
    }

    /// 20 ms packets of 216 bytes both ways, in virtual time, for `secs` seconds from `from`.
    fn rtp(s: &mut Selector, call: u64, from: u64, secs: u64, out: &mut Vec<u8>) -> u64 {
        let mut n = 0;
        for i in 0..secs * 100 {
            let mut record = [0u8; 216];
            record[..8].copy_from_slice(&(from * 100 + i).to_be_bytes());
            s.record(ms(from * 1000 + i * 10), Some(call), &record, out);
            n += 1;
        }
        n
    }

    #[test]
    fn a_call_that_fails_after_its_ring_wrapped_keeps_its_newest_packets_in_order() {
        let limits = Limits {
            per_call: 16 << 10,
            total: 1 << 20,
            linger: ms(100),
        };
        let mut s = Selector::new(Keep::Failed(None), limits);
        let mut out = Vec::new();
        let sent = rtp(&mut s, 7, 0, 10, &mut out);
        assert!(out.is_empty());
        assert!(s.held_bytes() <= 16 << 10);
        assert!(
            s.memory() <= 16 << 10,
            "the call's buffer stays within its bound"
        );
        s.ended(ms(10_000), 7, true, &mut out);
        // The newest records that fit 16 KiB: 75 of 216 bytes, whole, oldest first.
        assert_eq!(out.len() % 216, 0);
        let kept = out.len() as u64 / 216;
        assert!((70..=75).contains(&kept), "{kept}");
        let numbers: Vec<u64> = out
            .chunks(216)
            .map(|r| u64::from_be_bytes(r[..8].try_into().unwrap()))
            .collect();
        let expected: Vec<u64> = (sent - kept..sent).collect();
        assert_eq!(numbers, expected);
        assert_eq!(s.selected().truncated, 1);
        assert_eq!(s.held_bytes(), 0);
    }

    /// The self-test at load, in virtual time: a call starts every 10 ms and lasts 4 s, both
    /// of its ends in this process (each RTP packet seen twice, both ways: 4 records of 216
    /// bytes per 20 ms), and both pass.
    #[test]
    fn at_load_only_the_calls_under_way_are_held_and_their_buffers_have_little_slack() {
        let mut s = Selector::new(Keep::Failed(None), Limits::default());
        let mut out = Vec::new();
        let calls: u64 = 600;
        let record = [0u8; 216];
        let (mut most_held, mut most_memory) = (0, 0);
        // Every 10 ms: a call begins, the calls under way send their packets (every other
        // tick each), the call begun 4 s ago ends.
        for tick in 0..calls + 400 {
            let now = ms(tick * 10);
            if tick < calls {
                s.opened(tick);
                s.opened(tick);
            }
            for call in tick.saturating_sub(399)..=tick.min(calls - 1) {
                if (tick + call) % 2 == 0 {
                    for _ in 0..4 {
                        s.record(now, Some(call), &record, &mut out);
                    }
                }
            }
            if let Some(done) = tick.checked_sub(399).filter(|c| *c < calls) {
                s.ended(now, done, false, &mut out);
                s.ended(now, done, false, &mut out);
            }
            most_held = most_held.max(s.held_bytes());
            most_memory = most_memory.max(s.memory());
        }
        assert!(out.is_empty());
        assert_eq!(s.selected().passed, 2 * calls);
        // 400 calls under way, 172,800 bytes each at their end: no passed call waits.
        let one_call = 200 * 4 * 216;
        assert!(most_held <= 400 * one_call, "{most_held}");
        // The buffers: the records and at most a third more.
        assert!(
            most_memory <= most_held + most_held / 3,
            "{most_memory} for {most_held}"
        );
        assert_eq!(s.memory(), 0, "all passed: nothing held");
    }

    #[test]
    fn passed_calls_drop_their_packets_and_free_their_buffers() {
        let limits = Limits {
            per_call: 64 << 10,
            total: 1 << 20,
            linger: ms(100),
        };
        let mut s = Selector::new(Keep::Failed(None), limits);
        let mut out = Vec::new();
        for call in 0..50 {
            rtp(&mut s, call, call, 1, &mut out);
            s.ended(ms(call * 1000 + 1000), call, false, &mut out);
        }
        rtp(&mut s, 99, 60, 1, &mut out);
        assert!(out.is_empty(), "no passed call written");
        assert_eq!(s.selected().passed, 50);
        // Only the last call is held (its linger over, each passed call's buffer is freed).
        let held = s.memory();
        assert!(held <= 64 << 10, "{held}");
        s.ended(ms(61_000), 99, true, &mut out);
        assert_eq!(out.len(), 100 * 216);
    }
}
