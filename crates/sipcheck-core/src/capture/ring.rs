//! One call's held records: a ring of bytes, bounded, with a small index.
//!
//! The records sit one after the other in a single buffer that grows (by half its size each
//! time, in whole [`STEP`]s, from [`FIRST`] bytes) up to the bound and then wraps around: a record that does not fit before
//! the buffer's end goes to its start (the few bytes left at the end stay unused until the
//! ring wraps again), and the oldest records make room for it. A record is never split, so
//! each is one slice. The index holds each record's time, offset and length, oldest first.
//! No allocation per record: the buffer is allocated when it grows, and handed back whole
//! ([`Ring::into_buffer`]) to be reused by another call. The bytes past the newest record are
//! reserved, never written before a record needs them (no zeroing: the pages of a buffer's
//! slack are not touched).

use std::collections::VecDeque;
use std::time::Duration;

/// The bytes a ring starts with (a call's SIP messages fit; RTP makes it grow).
pub const FIRST: usize = 4 << 10;

/// A grown buffer's size is a multiple of this (a page).
pub const STEP: usize = 4 << 10;

/// The most a buffer of up to 512 KiB grows by at once.
pub const MOST_GROWTH: usize = 64 << 10;

/// The size a buffer of `size` bytes grows to (at least `need`, at most `bound`), in whole
/// [`STEP`]s: half as much again up to 128 KiB, then by [`MOST_GROWTH`] up to 512 KiB, then
/// by an eighth (so that a long call's buffer is copied a bounded number of times over per
/// byte). The slack is at most a third of the records' bytes, 64 KiB from 128 KiB on, an
/// eighth from 512 KiB on: a 4 s call's 180 KB of records sits in 228 KiB (doubling: 256
/// KiB), a minute's 2.6 MB in at most 2.9 MiB (doubling: 4 MiB).
#[must_use]
pub fn grown(size: usize, need: usize, bound: usize) -> usize {
    let more = (size / 2).min(MOST_GROWTH.max(size / 8));
    (size + more)
        .div_ceil(STEP)
        .saturating_mul(STEP)
        .max(FIRST)
        .max(need)
        .min(bound)
}

/// One record in the ring.
#[derive(Debug, Clone, Copy)]
struct Entry {
    wall: Duration,
    start: u32,
    /// Its length, and [`MARK`] when it was pushed marked.
    len: u32,
}

/// The bit of [`Entry::len`] that marks a record.
const MARK: u32 = 1 << 31;

impl Entry {
    fn len(&self) -> usize {
        (self.len & !MARK) as usize
    }
}

/// A bounded ring of records: see the [module](self).
#[derive(Debug, Default)]
pub struct Ring {
    /// The storage: its length is how far records were ever written, its capacity at least
    /// `size`.
    buf: Vec<u8>,
    /// The ring's size (at most the bound): records go within it.
    size: usize,
    index: VecDeque<Entry>,
    /// Where the next record goes.
    tail: usize,
    /// The records run from the oldest's start on, then from 0 to `tail`.
    wrapped: bool,
    /// The records' bytes.
    bytes: usize,
    /// Records were dropped for the bound.
    truncated: bool,
}

impl Ring {
    /// An empty ring that will use `buffer`'s allocation (its contents do not matter).
    #[must_use]
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        Self {
            buf: buffer,
            ..Self::default()
        }
    }

    /// The records' bytes held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The records held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no record is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The ring's size now (at most the bound it was given).
    #[must_use]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The bytes the ring's buffer has allocated (its size, or more for a reused buffer).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True when records were dropped to stay within the bound.
    #[must_use]
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The time of the oldest record held.
    #[must_use]
    pub fn first_time(&self) -> Option<Duration> {
        self.index.iter().map(|e| e.wall).min()
    }

    /// Add `record` of time `wall`, the buffer at most `bound` bytes: the oldest records go
    /// when there is no room (the ring is then truncated); a record longer than `bound` is
    /// not kept, and drops every other (nothing older than it may stay when it cannot).
    /// Returns the bytes of records dropped.
    pub fn push(&mut self, wall: Duration, record: &[u8], bound: usize) -> usize {
        self.push_marked(wall, record, bound, false)
    }

    /// [`Self::push`], the record marked or not (the mark comes back with it from
    /// [`Self::drain_sorted`]: what kind of record it is).
    pub fn push_marked(
        &mut self,
        wall: Duration,
        record: &[u8],
        bound: usize,
        mark: bool,
    ) -> usize {
        self.push_parts(wall, record, &[], bound, mark)
    }

    /// [`Self::push_marked`] of the record `head` then `tail` (one record, copied once:
    /// e.g. a datagram's addresses and its payload).
    pub fn push_parts(
        &mut self,
        wall: Duration,
        head: &[u8],
        tail: &[u8],
        bound: usize,
        mark: bool,
    ) -> usize {
        let len = head.len() + tail.len();
        if len > bound || len >= MARK as usize {
            let dropped = self.bytes;
            self.clear();
            self.truncated = true;
            return dropped + len;
        }
        let mut dropped = 0;
        let start = loop {
            if self.index.is_empty() {
                self.tail = 0;
                self.wrapped = false;
            }
            if self.wrapped {
                let head = self.index.front().map_or(0, |e| e.start as usize);
                if self.tail + len <= head {
                    break self.tail;
                }
            } else {
                if self.tail + len <= self.size {
                    break self.tail;
                }
                if self.size < bound {
                    // A reused buffer's allocation is taken whole (within the bound).
                    self.size = grown(self.size, self.tail + len, bound)
                        .max(self.buf.capacity().min(bound));
                    self.buf
                        .reserve_exact(self.size.saturating_sub(self.buf.len()));
                    if self.tail + len <= self.size {
                        break self.tail;
                    }
                }
                // At the bound: from the start of the buffer, when the oldest left room.
                let head = self.index.front().map_or(0, |e| e.start as usize);
                if len <= head {
                    self.wrapped = true;
                    self.tail = 0;
                    break 0;
                }
            }
            dropped += self.pop_oldest();
        };
        if start + len <= self.buf.len() {
            let (h, t) = self.buf[start..start + len].split_at_mut(head.len());
            h.copy_from_slice(head);
            t.copy_from_slice(tail);
        } else {
            // Past the newest record: nothing held there (the ring is not wrapped).
            self.buf.truncate(start);
            self.buf.extend_from_slice(head);
            self.buf.extend_from_slice(tail);
        }
        self.index.push_back(Entry {
            wall,
            start: start as u32,
            len: len as u32 | if mark { MARK } else { 0 },
        });
        self.tail = start + len;
        self.bytes += len;
        dropped
    }

    /// Drop the oldest record (the ring is then truncated); its bytes.
    pub fn pop_oldest(&mut self) -> usize {
        let Some(old) = self.index.pop_front() else {
            return 0;
        };
        self.bytes -= old.len();
        self.truncated = true;
        match self.index.front() {
            None => {
                self.tail = 0;
                self.wrapped = false;
            }
            // The records before the wrap are all gone: the ring is one run again.
            Some(next) if self.wrapped && next.start < old.start => self.wrapped = false,
            Some(_) => {}
        }
        old.len()
    }

    /// The time of the oldest record pushed still held (the first to go for room).
    #[must_use]
    pub fn front_time(&self) -> Option<Duration> {
        self.index.front().map(|e| e.wall)
    }

    /// Each record held, with its time and whether it was marked, in the order they were
    /// pushed (the ring is left as it is).
    pub fn records(&self) -> impl Iterator<Item = (Duration, &[u8], bool)> + '_ {
        self.index.iter().map(|e| {
            let start = e.start as usize;
            (e.wall, &self.buf[start..start + e.len()], e.len & MARK != 0)
        })
    }

    /// Mark the ring truncated (records it should hold were not kept).
    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    /// Append the records held to `out` in the order of their times (stable: records of
    /// one time stay in the order they came), and empty the ring.
    pub fn write_sorted(&mut self, out: &mut Vec<u8>) {
        out.reserve(self.bytes);
        self.drain_sorted(|_, record, _| out.extend_from_slice(record));
    }

    /// Each record held, with its time and whether it was marked, in the order of their
    /// times (stable), and empty the ring.
    pub fn drain_sorted(&mut self, mut each: impl FnMut(Duration, &[u8], bool)) {
        let sorted = self
            .index
            .iter()
            .zip(self.index.iter().skip(1))
            .all(|(a, b)| a.wall <= b.wall);
        if !sorted {
            self.index.make_contiguous().sort_by_key(|e| e.wall);
        }
        for e in &self.index {
            let start = e.start as usize;
            each(e.wall, &self.buf[start..start + e.len()], e.len & MARK != 0);
        }
        self.clear();
    }

    /// Forget the records (not counted as truncated); the buffer is kept.
    pub fn clear(&mut self) {
        self.index.clear();
        self.tail = 0;
        self.wrapped = false;
        self.bytes = 0;
    }

    /// The ring's buffer, to be reused.
    #[must_use]
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(ring: &mut Ring) -> Vec<u8> {
        let mut out = Vec::new();
        ring.write_sorted(&mut out);
        out
    }

    #[test]
    fn records_come_back_in_time_order_and_the_ring_is_emptied() {
        let mut ring = Ring::default();
        assert_eq!(ring.push(ms(2), b"bb", 64), 0);
        assert_eq!(ring.push(ms(1), b"a", 64), 0);
        assert_eq!(ring.push(ms(2), b"cc", 64), 0);
        assert_eq!((ring.len(), ring.bytes()), (3, 5));
        assert_eq!(ring.first_time(), Some(ms(1)));
        assert_eq!(drain(&mut ring), b"abbcc", "sorted, stable within a time");
        assert!(ring.is_empty() && !ring.truncated());
        assert_eq!(ring.bytes(), 0);
    }

    #[test]
    fn the_buffer_grows_by_half_again_then_by_steps_within_the_bound() {
        use super::{grown, FIRST, STEP};
        assert_eq!(grown(0, 1, 1 << 20), FIRST);
        assert_eq!(
            grown(FIRST, 1, 1 << 20),
            2 * FIRST,
            "6 KiB rounded to a page"
        );
        assert_eq!(grown(100 << 10, 1, 1 << 20), 152 << 10, "half again");
        assert_eq!(grown(200 << 10, 1, 1 << 20), 264 << 10, "64 KiB at most");
        assert_eq!(
            grown(1 << 20, 1, 4 << 20),
            (1 << 20) + (128 << 10),
            "an eighth"
        );
        assert_eq!(
            grown(8 << 10, 100 << 10, 1 << 20),
            100 << 10,
            "what is needed"
        );
        assert_eq!(grown(900 << 10, 1, 1000 << 10), 1000 << 10, "the bound");
        // A 4 s call seen by both ends (800 RTP records of 216 bytes): far less slack than
        // doubling's 256 KiB, and never more than a third.
        let mut ring = Ring::default();
        let mut last = 0;
        for i in 0..800 {
            ring.push(ms(i), &[1; 216], 4 << 20);
            let size = ring.size();
            assert!(size % STEP == 0 && size >= ring.bytes());
            if size != last {
                assert!(
                    last == 0 || size <= last + last / 2 + STEP,
                    "{last} to {size}"
                );
                assert!(size <= FIRST.max(ring.bytes() * 3 / 2 + STEP), "{size}");
                last = size;
            }
        }
        assert_eq!(ring.bytes(), 172_800);
        assert_eq!(ring.size(), 228 << 10);
    }

    #[test]
    fn the_slack_past_the_newest_record_is_reserved_not_written() {
        let mut ring = Ring::default();
        ring.push(ms(0), &[1; 100], 1 << 20);
        assert_eq!(ring.size(), super::FIRST);
        assert_eq!(ring.buf.len(), 100, "nothing written past the record");
        assert!(ring.capacity() >= super::FIRST);
        // Reused, a buffer's allocation is the ring's size at once (within the bound).
        let buffer = vec![0u8; 64 << 10];
        let mut ring = Ring::with_buffer(buffer);
        ring.push(ms(0), &[1; 10], 32 << 10);
        assert_eq!(ring.size(), 32 << 10);
        let mut ring = Ring::with_buffer(ring.into_buffer());
        ring.push(ms(0), &[1; 10], 1 << 20);
        assert_eq!(ring.size(), 64 << 10);
    }

    #[test]
    fn the_buffer_grows_up_to_the_bound_and_no_further() {
        let mut ring = Ring::default();
        let bound = 10_000;
        let record = [7u8; 100];
        ring.push(ms(0), &record, bound);
        assert_eq!(ring.size(), super::FIRST);
        for i in 1..1_000 {
            ring.push(ms(i), &record, bound);
            assert!(ring.size() <= bound);
            assert!(ring.bytes() <= bound);
        }
        assert_eq!(ring.size(), bound);
        // 100 records of 100 bytes fill 10,000 exactly: the newest 100 are kept.
        assert_eq!(ring.len(), 100);
        assert!(ring.truncated());
    }

    #[test]
    fn wrapping_around_keeps_the_newest_records_whole_and_in_order() {
        let mut ring = Ring::default();
        // Records of 3 bytes in a 10-byte ring: 3 fit, the 4th wraps to the start.
        let records: Vec<[u8; 3]> = (0u8..20).map(|i| [i, i, i]).collect();
        for (i, r) in records.iter().enumerate() {
            let dropped = ring.push(ms(i as u64), r, 10);
            assert!(dropped == 0 || dropped == 3, "{dropped}");
            assert!(ring.bytes() <= 10);
            assert!(
                ring.len() >= 2.min(i + 1),
                "after {i} at least the last two fit"
            );
        }
        let out = drain(&mut ring);
        let n = out.len() / 3;
        let expected: Vec<u8> = records[20 - n..].iter().flatten().copied().collect();
        assert_eq!(out, expected, "the newest {n} records, oldest first");
        assert!(n >= 2);
    }

    #[test]
    fn records_of_different_sizes_wrap_without_overlapping() {
        // Each record's bytes say its number: a record overwritten by a later one would come
        // back changed.
        let mut ring = Ring::default();
        let bound = 1_000;
        let mut pushed = Vec::new();
        for i in 0u32..2_000 {
            let len = 1 + (i as usize * 37) % 150;
            let record = vec![(i % 251) as u8; len];
            ring.push(ms(u64::from(i)), &record, bound);
            pushed.push(record);
        }
        let out = drain(&mut ring);
        // The output is the concatenation of a suffix of what was pushed.
        let mut suffix = Vec::new();
        let mut found = false;
        for record in pushed.iter().rev() {
            suffix.splice(0..0, record.iter().copied());
            if suffix == out {
                found = true;
                break;
            }
            if suffix.len() > out.len() {
                break;
            }
        }
        assert!(found, "{} bytes out are not the newest records", out.len());
        assert!(out.len() <= bound && out.len() > bound / 2);
    }

    #[test]
    fn a_record_over_the_bound_is_dropped_with_every_older_one() {
        let mut ring = Ring::default();
        ring.push(ms(1), b"abc", 10);
        assert_eq!(ring.push(ms(2), &[0; 11], 10), 3 + 11);
        assert!(ring.is_empty() && ring.truncated());
        ring.push(ms(3), b"d", 10);
        assert_eq!(drain(&mut ring), b"d");
    }

    #[test]
    fn a_reused_buffer_keeps_its_allocation_not_its_records() {
        let mut ring = Ring::default();
        for i in 0..100 {
            ring.push(ms(i), &[1; 100], 1 << 20);
        }
        let buffer = ring.into_buffer();
        let capacity = buffer.capacity();
        let mut ring = Ring::with_buffer(buffer);
        assert!(ring.is_empty());
        ring.push(ms(0), b"x", 1 << 20);
        assert_eq!(drain(&mut ring), b"x");
        assert_eq!(ring.into_buffer().capacity(), capacity);
    }
}
