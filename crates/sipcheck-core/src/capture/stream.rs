//! One media stream's held UDP datagrams: a ring of fixed-size chunks.
//!
//! A media thread writes each datagram of a selected call's stream once, into memory it owns
//! ([`StreamRing::push_udp`]), and hands the ring to the writer whole when the stream stops.
//! Most calls pass and their datagrams are never read again, so what counts is the cost of
//! the write: the records go one after the other into chunks of [`CHUNK`] bytes (fewer when
//! the ring's limit is small), each record with its own small header (its time and length)
//! in front of it — no index beside the records, and no buffer that grows by copying what it
//! holds. A chunk is allocated full-size once and never moves; when the ring is at its bound
//! the oldest chunk's records go (the ring is then truncated) and its allocation takes the
//! newest records. So the bytes written per datagram are its record and header, once.
//!
//! A record: the time (nanoseconds since the Unix epoch, 8 bytes, little-endian), the
//! length of what follows (4 bytes), then the datagram's family, addresses and ports as
//! the selector writes them for a held datagram, and its payload.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::select::udp_head;

/// The size of a chunk (when the ring's limit is at least four of them).
pub const CHUNK: usize = 16 << 10;

/// The bytes in front of each record: its time and its length.
pub const HEADER: usize = 12;

/// One media stream's UDP datagrams of one call: see the [module](self).
#[derive(Debug)]
pub struct StreamRing {
    /// The chunk being written: allocated at its size once (its capacity), its length is
    /// how far records were written into it. Kept in the ring itself, not with the older
    /// chunks, so that a push reads nothing outside the ring and the chunk's tail.
    tail: Vec<u8>,
    /// The older chunks, oldest first.
    full: VecDeque<Vec<u8>>,
    /// Where the oldest record held starts in the oldest chunk (the first of `full`, or
    /// `tail` when there is none).
    front: usize,
    /// The chunks' capacities together.
    allocated: usize,
    /// The size of a chunk.
    chunk: usize,
    /// The records' bytes held (addresses and payloads, not their headers).
    bytes: usize,
    /// The records held.
    len: usize,
    /// Records were dropped for the bound.
    truncated: bool,
}

impl Default for StreamRing {
    /// A ring for the default per-call bound (4 MiB): chunks of [`CHUNK`] bytes.
    fn default() -> Self {
        Self::with_limit(4 << 20)
    }
}

impl StreamRing {
    /// An empty ring that will be allowed at most `limit` bytes: chunks of [`CHUNK`] bytes,
    /// or a quarter of `limit` when that is less (so that dropping the oldest chunk for room
    /// drops at most about a quarter of what the ring holds).
    #[must_use]
    pub fn with_limit(limit: usize) -> Self {
        Self {
            tail: Vec::new(),
            full: VecDeque::new(),
            front: 0,
            allocated: 0,
            chunk: (limit / 4).clamp(1, CHUNK),
            bytes: 0,
            len: 0,
            truncated: false,
        }
    }

    /// Hold the datagram `payload` from `src` to `dst` at `wall` (the time since the Unix
    /// epoch), the ring's chunks at most `bound` bytes together: when a new chunk would pass
    /// it, the oldest chunks' records go first (the ring is then truncated). A datagram whose
    /// record is longer than `bound` is not kept, and drops every other.
    pub fn push_udp(
        &mut self,
        wall: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        bound: usize,
    ) {
        let (head, n) = udp_head(src, dst);
        let len = n + payload.len();
        let record = HEADER + len;
        if record > bound || u32::try_from(len).is_err() {
            self.clear();
            self.truncated = true;
            return;
        }
        if self.tail.capacity() - self.tail.len() < record {
            self.new_chunk(record, bound);
        }
        let chunk = &mut self.tail;
        let nanos = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        chunk.extend_from_slice(&nanos.to_le_bytes());
        chunk.extend_from_slice(&(len as u32).to_le_bytes());
        chunk.extend_from_slice(&head[..n]);
        chunk.extend_from_slice(payload);
        self.bytes += len;
        self.len += 1;
    }

    /// Add a chunk with room for `record` bytes, within `bound`: the oldest chunks go for it
    /// (their allocation reused when it is large enough).
    fn new_chunk(&mut self, record: usize, bound: usize) {
        let size = self.chunk.min(bound).max(record);
        if self.tail.capacity() > 0 {
            let tail = std::mem::take(&mut self.tail);
            self.full.push_back(tail);
        }
        let mut reuse = None;
        while self.allocated + size > bound {
            match self.drop_front_chunk() {
                Some(old) => reuse = Some(old),
                None => break,
            }
        }
        self.tail = match reuse {
            Some(mut old) if old.capacity() >= size => {
                old.clear();
                old
            }
            _ => Vec::with_capacity(size),
        };
        self.allocated += self.tail.capacity();
    }

    /// Drop the oldest chunk and the records in it (the ring is then truncated); its
    /// allocation.
    fn drop_front_chunk(&mut self) -> Option<Vec<u8>> {
        let chunk = self.full.pop_front()?;
        let mut at = self.front;
        while let Some((_, len)) = record_at(&chunk, at) {
            self.bytes -= len;
            self.len -= 1;
            self.truncated = true;
            at += HEADER + len;
        }
        self.front = 0;
        self.allocated -= chunk.capacity();
        Some(chunk)
    }

    /// The bytes its chunks have allocated (at most the bounds it was given).
    #[must_use]
    pub fn size(&self) -> usize {
        self.allocated
    }

    /// The size of its chunks (the most a new one takes of the bound, but for a longer
    /// datagram).
    #[must_use]
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The bytes of the datagrams held (each with its addresses; not the records' headers).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The datagrams held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when datagrams were dropped for the bound.
    #[must_use]
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// A datagram was not kept (its owner found no room for it).
    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    /// Each datagram held, oldest pushed first: its time and its addresses and payload (as
    /// [`super::select`] holds a UDP datagram).
    pub fn records(&self) -> impl Iterator<Item = (Duration, &[u8])> + '_ {
        let front = self.front;
        let chunks = self.full.iter().chain(std::iter::once(&self.tail));
        chunks.enumerate().flat_map(move |(i, chunk)| {
            let mut at = if i == 0 { front } else { 0 };
            std::iter::from_fn(move || {
                let (wall, len) = record_at(chunk, at)?;
                let start = at + HEADER;
                at = start + len;
                Some((wall, &chunk[start..start + len]))
            })
        })
    }

    /// The time of the oldest datagram pushed still held (the first to go for room).
    #[must_use]
    pub fn front_time(&self) -> Option<Duration> {
        record_at(self.oldest(), self.front).map(|(wall, _)| wall)
    }

    /// The time of the earliest datagram held.
    #[must_use]
    pub fn first_time(&self) -> Option<Duration> {
        self.records().map(|(wall, _)| wall).min()
    }

    /// Drop the oldest datagram pushed (the ring is then truncated); its bytes (as
    /// [`Self::bytes`] counts them).
    pub fn pop_oldest(&mut self) -> usize {
        let oldest = self.oldest();
        let Some((_, len)) = record_at(oldest, self.front) else {
            return 0;
        };
        let read_through = self.front + HEADER + len >= oldest.len();
        self.front += HEADER + len;
        self.bytes -= len;
        self.len -= 1;
        self.truncated = true;
        if read_through {
            let done = match self.full.pop_front() {
                Some(done) => done,
                None => std::mem::take(&mut self.tail),
            };
            self.allocated -= done.capacity();
            self.front = 0;
        }
        len
    }

    /// The oldest chunk (empty when there is none).
    fn oldest(&self) -> &[u8] {
        self.full.front().unwrap_or(&self.tail)
    }

    /// Forget the datagrams (not counted as truncated) and free the chunks.
    pub fn clear(&mut self) {
        self.tail = Vec::new();
        self.full.clear();
        self.front = 0;
        self.allocated = 0;
        self.bytes = 0;
        self.len = 0;
    }
}

/// The record at `at` in `chunk`: its time and the length after its header; `None` past the
/// last.
fn record_at(chunk: &[u8], at: usize) -> Option<(Duration, usize)> {
    let header = chunk.get(at..at + HEADER)?;
    let nanos = u64::from_le_bytes(header[..8].try_into().ok()?);
    let len = u32::from_le_bytes(header[8..].try_into().ok()?) as usize;
    Some((Duration::from_nanos(nanos), len))
}

#[cfg(test)]
mod tests {
    use super::{StreamRing, CHUNK, HEADER};
    use std::net::SocketAddr;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ends() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:20000".parse().unwrap(),
            "[::1]:30000".parse().unwrap(),
        )
    }

    /// Held size of a datagram of `n` payload bytes between the test's ends (an IPv4 and an
    /// IPv6 address are held as two IPv6 ones: 1 + 32 + 4 bytes).
    fn held(n: usize) -> usize {
        37 + n
    }

    /// The payloads held, oldest pushed first, with their times.
    fn payloads(ring: &StreamRing) -> Vec<(u64, Vec<u8>)> {
        ring.records()
            .map(|(wall, rec)| (wall.as_millis() as u64, rec[37..].to_vec()))
            .collect()
    }

    #[test]
    fn datagrams_come_back_whole_in_the_order_pushed_with_their_times_and_addresses() {
        let (a, b) = ends();
        let mut ring = StreamRing::default();
        for i in 0..1_000u64 {
            let len = 1 + (i as usize * 37) % 300;
            ring.push_udp(ms(i), a, b, &vec![(i % 251) as u8; len], 4 << 20);
        }
        assert_eq!(ring.len(), 1_000);
        assert!(!ring.truncated());
        let back = payloads(&ring);
        for (i, (wall, payload)) in back.iter().enumerate() {
            let len = 1 + (i * 37) % 300;
            assert_eq!((*wall, payload.len()), (i as u64, len));
            assert!(payload.iter().all(|&x| x == (i % 251) as u8), "record {i}");
        }
        let bytes: usize = (0..1_000).map(|i| held(1 + (i * 37) % 300)).sum();
        assert_eq!(ring.bytes(), bytes);
        // Several chunks, each allocated at its size once.
        assert!(ring.size() >= bytes + 1_000 * HEADER);
        assert_eq!(ring.size() % CHUNK, 0);
        assert!(ring.size() < bytes + 1_000 * HEADER + CHUNK);
        assert_eq!(ring.front_time(), Some(ms(0)));
    }

    #[test]
    fn at_its_bound_the_ring_drops_its_oldest_chunk_and_keeps_the_newest_datagrams() {
        let (a, b) = ends();
        let bound = 64 << 10;
        let mut ring = StreamRing::with_limit(bound);
        let payload = [7u8; 160];
        for i in 0..2_000u64 {
            ring.push_udp(ms(i), a, b, &payload, bound);
            assert!(ring.size() <= bound);
        }
        assert!(ring.truncated());
        // The newest records, in order, at least three quarters of the bound's worth.
        let times: Vec<u64> = payloads(&ring).iter().map(|(t, _)| *t).collect();
        assert_eq!(*times.last().unwrap(), 1_999);
        assert!(times.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
        let record = HEADER + held(160);
        assert!(
            times.len() * record >= bound * 3 / 4 - record,
            "{}",
            times.len()
        );
        assert_eq!(ring.len(), times.len());
        assert_eq!(ring.bytes(), times.len() * held(160));
    }

    #[test]
    fn a_small_bound_keeps_the_newest_records_that_fit() {
        let (a, b) = ends();
        let record = HEADER + held(20);
        let bound = 3 * record;
        let mut ring = StreamRing::with_limit(bound);
        for i in 0..5u64 {
            ring.push_udp(ms(i), a, b, &[i as u8; 20], bound);
        }
        let times: Vec<u64> = payloads(&ring).iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [2, 3, 4]);
        assert!(ring.truncated());
        assert!(ring.size() <= bound);
    }

    #[test]
    fn a_datagram_over_the_bound_drops_every_other() {
        let (a, b) = ends();
        let mut ring = StreamRing::default();
        ring.push_udp(ms(1), a, b, &[1; 10], 1_000);
        ring.push_udp(ms(2), a, b, &[2; 1_000], 1_000);
        assert!(ring.is_empty() && ring.truncated());
        assert_eq!((ring.bytes(), ring.size()), (0, 0));
        ring.push_udp(ms(3), a, b, &[3; 10], 1_000);
        assert_eq!(payloads(&ring), [(3, vec![3; 10])]);
    }

    #[test]
    fn popping_the_oldest_frees_each_chunk_once_it_is_read_through() {
        let (a, b) = ends();
        let mut ring = StreamRing::default();
        let n = 3 * CHUNK / (HEADER + held(160));
        for i in 0..n as u64 {
            ring.push_udp(ms(i), a, b, &[0; 160], 4 << 20);
        }
        let chunks = ring.size() / CHUNK;
        assert!(chunks >= 3);
        let mut popped = 0;
        while !ring.is_empty() {
            assert_eq!(ring.front_time(), Some(ms(popped)));
            assert_eq!(ring.pop_oldest(), held(160));
            popped += 1;
            assert!(ring.size() <= chunks * CHUNK);
        }
        assert_eq!(popped as usize, n);
        assert_eq!((ring.size(), ring.bytes(), ring.pop_oldest()), (0, 0, 0));
        assert!(ring.truncated());
    }

    #[test]
    fn the_earliest_time_is_found_among_records_pushed_out_of_order() {
        let (a, b) = ends();
        let mut ring = StreamRing::default();
        for t in [5, 3, 9, 4] {
            ring.push_udp(ms(t), a, b, &[0; 4], 1 << 20);
        }
        assert_eq!(ring.first_time(), Some(ms(3)));
        assert_eq!(ring.front_time(), Some(ms(5)));
    }
}
