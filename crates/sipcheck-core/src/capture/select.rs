//! `--pcap-calls`: which calls' packets a capture keeps.
//!
//! Each record comes tagged with its call (a [`CallTag`], one per SIP Call-ID) or with none (a
//! REGISTER, an OPTIONS: written as they come). Under [`Keep::All`] every record is written at
//! once. Under [`Keep::Failed`] a call's records are held in a [`Ring`] of their own, bounded
//! ([`Limits::per_call`]: the oldest records go first and the call is marked truncated; all
//! buffers together [`Limits::total`]), until the call ends:
//!
//! - ended failed, its records are written sorted by time, and its later ones (the other
//!   end's, a late RTP packet) as they come;
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
//! [`Selector::finish`] writes the buffers of the calls that never ended (an interrupted run).
//! The selector never reads a clock: the records' times drive it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::ring::Ring;
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
    ring: Ring,
    /// Ended passed: dropped at this time unless the call fails meanwhile.
    drop_at: Option<Duration>,
    /// The ends of the call in this process told of ([`Selector::opened`]), and how many of
    /// them passed.
    ends: u32,
    passed: u32,
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
    /// The passed calls in the order of their drop time.
    lingering: VecDeque<(Duration, CallTag)>,
    /// Decided calls: `true` written, `false` dropped; and their order, to forget the oldest.
    decided: TagMap<bool>,
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

    /// The bytes the held calls' buffers have allocated now.
    ///
    /// An ended call's buffer is freed, not kept for the next call: a kept buffer has its
    /// full size from the next call's first record on (every call under way would take a
    /// whole call's buffer, twice what growing takes), and the allocator reuses the freed
    /// memory anyway.
    #[must_use]
    pub fn memory(&self) -> usize {
        self.held.values().map(|h| h.ring.capacity()).sum()
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
        match self.fate(wall, call) {
            Fate::Write => out.extend_from_slice(record),
            Fate::Hold(call) => self.hold(wall, call, record, false),
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
        match self.fate(wall, call) {
            Fate::Write => self.udp.udp(out, wall, src, dst, payload),
            Fate::Hold(call) => {
                let mut raw = std::mem::take(&mut self.raw);
                raw.clear();
                put_udp(&mut raw, src, dst, payload);
                self.hold(wall, call, &raw, true);
                self.raw = raw;
            }
            Fate::Drop => {}
        }
    }

    /// What becomes of a record of `call` at `wall`.
    fn fate(&mut self, wall: Duration, call: Option<CallTag>) -> Fate {
        self.expire(wall);
        let (Keep::Failed(_), Some(call)) = (self.keep, call) else {
            return Fate::Write;
        };
        match self.decided.get(&call) {
            Some(true) => Fate::Write,
            Some(false) => Fate::Drop,
            None => Fate::Hold(call),
        }
    }

    fn hold(&mut self, wall: Duration, call: CallTag, record: &[u8], udp: bool) {
        let per_call = self.limits.per_call;
        let held = self.held.entry(call).or_default();
        let dropped = held.ring.push_marked(wall, record, per_call, udp);
        self.held_bytes = self.held_bytes + record.len() - dropped;
        if self.held_bytes > self.limits.total {
            self.make_room(call);
        }
    }

    /// Over the total bound: the lingering passed calls go first (the oldest first), then
    /// the oldest records of `call`.
    fn make_room(&mut self, call: CallTag) {
        while self.held_bytes > self.limits.total {
            let Some((_, passed)) = self.lingering.pop_front() else {
                break;
            };
            self.drop_passed(passed);
        }
        if let Some(held) = self.held.get_mut(&call) {
            while self.held_bytes > self.limits.total && !held.ring.is_empty() {
                self.held_bytes -= held.ring.pop_oldest();
            }
        }
    }

    /// Drop the passed calls whose linger is over at `wall`.
    fn expire(&mut self, wall: Duration) {
        while let Some((at, _)) = self.lingering.front() {
            if *at > wall {
                break;
            }
            let (at, call) = self.lingering.pop_front().expect("a front");
            // Ended passed again since (the other end): its later drop time holds.
            if self.held.get(&call).is_some_and(|h| h.drop_at == Some(at)) {
                self.drop_passed(call);
            }
        }
    }

    /// `call`, passed, is dropped now (unless it ended again since: a later drop time).
    fn drop_passed(&mut self, call: CallTag) {
        let Some(held) = self.held.get(&call) else {
            return;
        };
        if held.drop_at.is_none() {
            return;
        }
        let held = self.held.remove(&call).expect("held");
        self.release(held);
        self.decide(call, false);
    }

    /// A call's buffer is given up (freed).
    fn release(&mut self, held: Held) {
        self.held_bytes -= held.ring.bytes();
    }

    fn decide(&mut self, call: CallTag, written: bool) {
        if self.decided.insert(call, written).is_none() {
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
            Some(true) => return,
            Some(false) => {
                self.decided.remove(&call);
            }
            None => {}
        }
        self.held.entry(call).or_default().ends += 1;
    }

    /// One end of `call` ended at `wall`, failed or passed: a failed call's records are
    /// appended to `out`, sorted by time. A passed end's records are dropped at once when
    /// every end told of ([`Self::opened`]) has passed, else held for [`Limits::linger`] at
    /// most for the others' verdicts.
    pub fn ended(&mut self, wall: Duration, call: CallTag, failed: bool, out: &mut Vec<u8>) {
        self.expire(wall);
        let Keep::Failed(most) = self.keep else {
            return;
        };
        if self.decided.contains_key(&call) {
            if !failed {
                self.stats.passed += 1;
            }
            return;
        }
        if !failed {
            self.stats.passed += 1;
            let held = self.held.entry(call).or_default();
            held.passed += 1;
            if held.ends > 0 && held.passed >= held.ends {
                // Every end of the call here has passed: nothing is waited for.
                let held = self.held.remove(&call).expect("held");
                self.release(held);
                self.decide(call, false);
                return;
            }
            let drop_at = wall + self.limits.linger;
            held.drop_at = Some(drop_at);
            self.lingering.push_back((drop_at, call));
            return;
        }
        let mut held = self.held.remove(&call).unwrap_or_default();
        if most.is_some_and(|most| self.stats.written >= most) {
            self.stats.over_count += 1;
            self.release(held);
            self.decide(call, false);
            return;
        }
        self.stats.written += 1;
        if held.ring.truncated() {
            self.stats.truncated += 1;
        }
        self.held_bytes -= held.ring.bytes();
        write_ring(&mut self.udp, &mut held.ring, out);
        self.release(held);
        self.decide(call, true);
    }

    /// The capture closes: the calls that never ended are written (their verdict unknown);
    /// the passed ones still held are dropped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let mut unfinished: Vec<(CallTag, Held)> = self
            .held
            .drain()
            .filter(|(_, held)| held.drop_at.is_none() && !held.ring.is_empty())
            .collect();
        self.held_bytes = 0;
        self.lingering.clear();
        // In the order of their first record.
        unfinished.sort_by_key(|(_, held)| held.ring.first_time());
        for (call, mut held) in unfinished {
            self.stats.unfinished += 1;
            if held.ring.truncated() {
                self.stats.truncated += 1;
            }
            write_ring(&mut self.udp, &mut held.ring, out);
            self.decide(call, true);
        }
    }
}

/// What becomes of a record.
enum Fate {
    Write,
    Hold(CallTag),
    Drop,
}

/// Append `ring`'s records to `out` in time order, the UDP datagrams held as addresses and
/// payload encoded by `udp`, and empty it.
fn write_ring(udp: &mut Encoder, ring: &mut Ring, out: &mut Vec<u8>) {
    out.reserve(ring.bytes() + ring.len() * 48);
    ring.drain_sorted(|wall, record, raw| {
        if !raw {
            out.extend_from_slice(record);
        } else if let Some((src, dst, payload)) = take_udp(record) {
            udp.udp(out, wall, src, dst, payload);
        }
    });
}

/// A held UDP datagram: the family (4 or 6), the source and destination addresses and
/// ports, the payload.
fn put_udp(raw: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            raw.push(4);
            raw.extend_from_slice(&s.octets());
            raw.extend_from_slice(&d.octets());
        }
        (s, d) => {
            raw.push(6);
            raw.extend_from_slice(&v6(s).octets());
            raw.extend_from_slice(&v6(d).octets());
        }
    }
    raw.extend_from_slice(&src.port().to_be_bytes());
    raw.extend_from_slice(&dst.port().to_be_bytes());
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
