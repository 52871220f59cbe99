//! `--pcap FILE`: every SIP message and RTP packet sipcheck sent and received, written to FILE
//! as a packet capture (classic pcap, raw IP: [`sipcheck_core::capture`] makes the records)
//! that Wireshark and `tshark` read.
//!
//! One capture per process, installed by the command line before anything is sent. The SIP
//! wire (`drive::wire`) and the RTP scheduler threads ([`crate::drive::media`])
//! report each packet here with its wall-clock time (a SIP message's read when it is
//! reported; an RTP packet's from the kernel's receive stamp, or for a sent one from the
//! media thread's one clock read per wake-up plus the monotonic time its send read anyway).
//! A media thread adds its packets to a
//! batch of its own (their payloads one after the other in one buffer) and hands the batch to
//! the writer thread once per tick ([`flush_thread`]); a SIP message goes as a batch of one.
//! The writer polls the bounded queue every few milliseconds: a report never waits for the
//! disk nor wakes a thread (a copy, and a push per batch), so the 20 ms pacing
//! of the media threads is not delayed by the file. When the writer falls
//! behind and the queue is full, the batch is dropped and its packets counted ([`finish`] says how
//! many). When no capture is installed, reporting a packet costs one atomic load.
//!
//! [`finish`] writes out everything reported before it and closes the file: the command line
//! calls it on every way out (a normal end, after Ctrl-C's wind-down, a second Ctrl-C).
//!
//! `--pcap-calls failed|N` ([`Keep::Failed`]): each SIP message is reported with its call's
//! number ([`tag`]: one per SIP Call-ID, read from the message the wire already has in hand)
//! and the writer thread holds each call's messages until [`call_ended`] says how the call
//! ended ([`sipcheck_core::capture::select`] decides what is written). A media stream told
//! its call's number ([`StreamTap::set_call`]) keeps its packets itself, in a ring its media
//! thread owns: one copy per packet, nothing handed to the writer per packet. When the
//! stream stops, its ring goes to the writer in one job, before the stream's end is reported
//! to its call (so before the call's verdict, in the usual order), and the writer holds it
//! with the call's messages, writes it (the call failed) or drops it (the call passed). As
//! the capture closes, each media thread hands every running stream's ring over at its next
//! wake-up, and [`finish`] waits for them.
//!
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sipcheck_core::capture::select::{
    show_size, CallTag, Keep, Limits, Selected, Selector, StreamRing,
};
use sipcheck_core::capture::{file_header, Encoder};
use sipcheck_core::stats::ladder::Direction;

/// How many batches wait for the writer at most. The media threads send one batch a tick
/// (1 ms) each, of up to [`BATCH`] packets: some 250 ms of 400,000 packets a second (2,000
/// calls with RTP both ways) fit, 50 times the writer's polling period.
const QUEUE: usize = 1 << 10;

/// The most packets in one batch (a media thread sends its batch when it is full, else at
/// the end of each tick).
const BATCH: usize = 256;

/// The empty batches kept for reuse at most.
const SPARE_BATCHES: usize = 64;

/// How long the writer sleeps when the queue is empty (at 400,000 packets a second, 2,000
/// packets queue meanwhile).
const POLL: Duration = Duration::from_millis(5);

/// How long [`finish`] waits at most for the threads' batches (a media thread sends its
/// batch at the end of each 1 ms tick).
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// What the file buffers before writing.
const FILE_BUFFER: usize = 1 << 20;

/// The Call-IDs a capture remembers the numbers of: the oldest are forgotten beyond.
const CALLS_REMEMBERED: usize = 1 << 16;

/// Over which transport a payload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A UDP datagram.
    Udp,
    /// Bytes of a TCP stream.
    Tcp,
}

/// One packet reported.
#[derive(Debug, Clone, Copy)]
struct Packet<'a> {
    /// When it went (the time since the Unix epoch).
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &'a [u8],
    /// Its call, when it belongs to one and calls are selected.
    call: Option<CallTag>,
}

/// One packet of a [`Batch`]: its payload is `len` bytes from `start` in the batch's bytes.
#[derive(Debug, Clone, Copy)]
struct Meta {
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    /// Its call, when it belongs to one and calls are selected.
    call: Option<CallTag>,
    start: usize,
    len: usize,
}

/// Packets on their way to the writer, their payloads one after the other in one buffer:
/// one queue push and no allocation per packet (a batch's buffers are reused).
#[derive(Debug, Default)]
struct Batch {
    packets: Vec<Meta>,
    bytes: Vec<u8>,
}

impl Batch {
    fn push(&mut self, p: &Packet<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(p.payload);
        self.packets.push(Meta {
            wall: p.wall,
            proto: p.proto,
            src: p.src,
            dst: p.dst,
            call: p.call,
            start,
            len: p.payload.len(),
        });
    }

    fn payload(&self, meta: &Meta) -> &[u8] {
        &self.bytes[meta.start..meta.start + meta.len]
    }

    fn clear(&mut self) {
        self.packets.clear();
        self.bytes.clear();
    }
}

enum Job {
    Batch(Batch),
    /// A media stream of `call` stopped (or the capture closes): the datagrams it held, and
    /// the bytes it had reserved of the total bound ([`Tap::streams_held`]).
    Stream {
        call: CallTag,
        ring: StreamRing,
        reserved: usize,
    },
    /// One end of a call began in this process.
    Begun(CallTag),
    /// One end of a call ended at `wall`, failed or passed.
    Ended {
        wall: Duration,
        call: CallTag,
        failed: bool,
    },
    /// Write out everything and answer.
    Flush(mpsc::Sender<()>),
}

/// The numbers given to Call-IDs: a packet is tagged with its call's number, looked up here
/// once per SIP message and once per media stream, never per RTP packet.
#[derive(Default)]
struct Calls {
    numbers: HashMap<Arc<str>, CallTag>,
    order: VecDeque<Arc<str>>,
    next: CallTag,
}

impl Calls {
    fn number(&mut self, call_id: &str) -> CallTag {
        if let Some(&n) = self.numbers.get(call_id) {
            return n;
        }
        self.next += 1;
        let id: Arc<str> = Arc::from(call_id);
        self.numbers.insert(id.clone(), self.next);
        self.order.push_back(id);
        if self.order.len() > CALLS_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.numbers.remove(&old);
            }
        }
        self.next
    }
}

struct Tap {
    path: PathBuf,
    queue: mpsc::SyncSender<Job>,
    /// Which calls are written.
    keep: Keep,
    /// The bytes held per call at most.
    per_call: usize,
    /// The bytes held for all calls together at most.
    total: usize,
    /// The bytes the media streams' rings reserved and have not handed over yet.
    streams_held: Arc<AtomicUsize>,
    /// The bytes the writer's selector holds (as of its last job).
    selector_held: Arc<AtomicUsize>,
    /// The media streams' rings not handed over yet ([`finish`] waits for them).
    rings: AtomicUsize,
    /// The Call-IDs' numbers.
    calls: Mutex<Calls>,
    /// Emptied batches, for the senders to fill again.
    spare: Arc<Mutex<Vec<Batch>>>,
    /// What the selection did, once the writer finished.
    selected: Arc<Mutex<Option<Selected>>>,
    /// Set by [`finish`]: later packets are not reported.
    closed: AtomicBool,
    /// The threads' batches begun and not sent yet ([`finish`] waits for them).
    unsent: AtomicUsize,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    /// The first write error, when one happened.
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl Tap {
    fn batch(&self) -> Batch {
        self.spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default()
    }

    fn send(&self, batch: Batch) {
        if batch.packets.is_empty() {
            return;
        }
        let count = batch.packets.len() as u64;
        if let Err(mpsc::TrySendError::Full(Job::Batch(mut batch))) =
            self.queue.try_send(Job::Batch(batch))
        {
            self.dropped.fetch_add(count, Ordering::Relaxed);
            batch.clear();
            give_back(&self.spare, batch);
        }
    }
}

/// An emptied batch back to the spare ones (when they are few).
fn give_back(spare: &Mutex<Vec<Batch>>, batch: Batch) {
    if let Ok(mut spare) = spare.lock() {
        if spare.len() < SPARE_BATCHES {
            spare.push(batch);
        }
    }
}

static TAP: OnceLock<Tap> = OnceLock::new();

/// A thread's batch not sent yet, and the capture it is for (sent when the thread ends,
/// too).
struct Local(Option<(Batch, &'static Tap)>);

impl Local {
    /// The batch, to be sent: no longer counted as unsent.
    fn take(&mut self) -> Option<(Batch, &'static Tap)> {
        let (batch, tap) = self.0.take()?;
        tap.unsent.fetch_sub(1, Ordering::SeqCst);
        Some((batch, tap))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some((batch, tap)) = self.take() {
            tap.send(batch);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local(None)) };
}

/// Install the process's capture, written to `file` (created at `path`): the file header is
/// written at once, then the packets reported of the calls `keep` selects, each call's held
/// within `limits`. A second call is ignored.
pub fn install(path: PathBuf, file: File, keep: Keep, limits: Limits) -> std::io::Result<()> {
    if TAP.get().is_some() {
        return Ok(());
    }
    let tap = Tap::start(path, file, keep, limits)?;
    let _ = TAP.set(tap);
    Ok(())
}

impl Tap {
    /// A capture written to `file` by a thread of its own (see [`install`]).
    fn start(path: PathBuf, file: File, keep: Keep, limits: Limits) -> std::io::Result<Tap> {
        let mut out = BufWriter::with_capacity(FILE_BUFFER, file);
        out.write_all(&file_header())?;
        out.flush()?;
        let (queue, jobs) = mpsc::sync_channel(QUEUE);
        let written = Arc::new(AtomicU64::new(0));
        let error = Arc::new(Mutex::new(None));
        let selected = Arc::new(Mutex::new(None));
        let spare = Arc::new(Mutex::new(Vec::new()));
        let streams_held = Arc::new(AtomicUsize::new(0));
        let selector_held = Arc::new(AtomicUsize::new(0));
        let tap = Tap {
            path,
            queue,
            keep,
            per_call: limits.per_call,
            total: limits.total,
            streams_held: streams_held.clone(),
            selector_held: selector_held.clone(),
            rings: AtomicUsize::new(0),
            calls: Mutex::new(Calls::default()),
            spare: spare.clone(),
            selected: selected.clone(),
            closed: AtomicBool::new(false),
            unsent: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            written: written.clone(),
            error: error.clone(),
        };
        std::thread::Builder::new()
            .name("sipcheck-pcap".into())
            .spawn(move || {
                let writer = Writer {
                    out,
                    selector: Selector::new(keep, limits),
                    streams_held,
                    selector_held,
                    written,
                    error,
                    failed: false,
                };
                writer.run(&jobs, &spare, &selected);
            })?;
        Ok(tap)
    }
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<File>,
    selector: Selector,
    /// See [`Tap::streams_held`]: they count in the selector's total bound.
    streams_held: Arc<AtomicUsize>,
    /// See [`Tap::selector_held`].
    selector_held: Arc<AtomicUsize>,
    written: Arc<AtomicU64>,
    error: Arc<Mutex<Option<std::io::Error>>>,
    /// Writing failed: the rest is not written.
    failed: bool,
}

impl Writer {
    /// Each packet encoded and written (or held), until every sender is gone.
    fn run(
        mut self,
        jobs: &mpsc::Receiver<Job>,
        spare: &Mutex<Vec<Batch>>,
        selected: &Mutex<Option<Selected>>,
    ) {
        let mut encoder = Encoder::new();
        let mut record = Vec::with_capacity(2048);
        let mut chosen = Vec::with_capacity(1 << 16);
        loop {
            // Polled, never waited on: a sender never has a sleeping writer to wake (no
            // system call on the RTP threads' path); what queues meanwhile is written in one
            // go.
            let job = match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Empty) => {
                    std::thread::sleep(POLL);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            if let Job::Stream { reserved, .. } = &job {
                self.streams_held.fetch_sub(*reserved, Ordering::Relaxed);
            }
            self.selector
                .set_outside(self.streams_held.load(Ordering::Relaxed));
            match job {
                Job::Batch(mut batch) => {
                    if !self.failed {
                        for p in &batch.packets {
                            let payload = batch.payload(p);
                            match p.proto {
                                // Encoded only if written (held as it came, else).
                                Proto::Udp => self.selector.record_udp(
                                    p.wall,
                                    p.call,
                                    p.src,
                                    p.dst,
                                    payload,
                                    &mut chosen,
                                ),
                                // The TCP numbering follows every segment, written or not.
                                Proto::Tcp => {
                                    record.clear();
                                    encoder.tcp(&mut record, p.wall, p.src, p.dst, payload);
                                    self.selector.record(p.wall, p.call, &record, &mut chosen);
                                }
                            }
                        }
                        self.write(&mut chosen);
                    }
                    batch.clear();
                    give_back(spare, batch);
                }
                Job::Stream { call, ring, .. } => {
                    if !self.failed {
                        self.selector.stream(call, ring, &mut chosen);
                        self.write(&mut chosen);
                    }
                }
                Job::Begun(call) => self.selector.opened(call),
                Job::Ended { wall, call, failed } => {
                    if !self.failed {
                        self.selector.ended(wall, call, failed, &mut chosen);
                        self.write(&mut chosen);
                    }
                }
                Job::Flush(done) => {
                    if !self.failed {
                        self.selector.finish(&mut chosen);
                        self.write(&mut chosen);
                    }
                    if let Ok(mut slot) = selected.lock() {
                        *slot = Some(self.selector.selected());
                    }
                    if let Err(e) = self.out.flush() {
                        self.fail(e);
                    }
                    let _ = done.send(());
                }
            }
            self.selector_held
                .store(self.selector.held_bytes(), Ordering::Relaxed);
        }
        let _ = self.out.flush();
    }

    fn fail(&mut self, e: std::io::Error) {
        if !self.failed {
            self.failed = true;
            if let Ok(mut slot) = self.error.lock() {
                *slot = Some(e);
            }
        }
    }

    /// Write the records `chosen` holds (and empty it), counting the packets in them.
    fn write(&mut self, chosen: &mut Vec<u8>) {
        if chosen.is_empty() {
            return;
        }
        match self.out.write_all(chosen) {
            Ok(()) => {
                self.written
                    .fetch_add(count_records(chosen), Ordering::Relaxed);
            }
            Err(e) => self.fail(e),
        }
        chosen.clear();
    }
}

/// The pcap records in `records` (each a 16-byte header, its length at 8..12, the packet).
fn count_records(records: &[u8]) -> u64 {
    let mut count = 0;
    let mut at = 0;
    while let Some(header) = records.get(at..at + 16) {
        let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        at += 16 + len;
        count += 1;
    }
    count
}

/// True when a capture is installed.
pub fn enabled() -> bool {
    TAP.get().is_some()
}

/// True when a capture is installed that keeps only some calls: packets are to be reported
/// with their call's number ([`tag`]), and call ends with [`call_ended`].
pub fn selective() -> bool {
    TAP.get().is_some_and(|tap| tap.keep != Keep::All)
}

/// The number of call `call_id`, to tag its packets with, when calls are selected (`None`
/// otherwise). The same Call-ID gets the same number (both ends of a call in this process
/// share it).
pub fn tag(call_id: &str) -> Option<CallTag> {
    let tap = TAP.get()?;
    number(tap, call_id)
}

fn number(tap: &Tap, call_id: &str) -> Option<CallTag> {
    if tap.keep == Keep::All || call_id.is_empty() {
        return None;
    }
    tap.calls.lock().ok().map(|mut calls| calls.number(call_id))
}

/// One end of call `call_id` began in this process (when calls are selected): its packets
/// are held until its verdict too. Waits when the writer's queue is full: a call's end told
/// of is never dropped, else the call could be decided before this end fails.
pub fn call_begun(call_id: &str) {
    let Some(tap) = TAP.get() else {
        return;
    };
    if tap.closed.load(Ordering::Relaxed) {
        return;
    }
    if let Some(call) = number(tap, call_id) {
        let _ = tap.queue.send(Job::Begun(call));
    }
}

/// One end of call `call_id` ended, failed or passed (when calls are selected). Waits when
/// the writer's queue is full: a call end is never dropped, its packets would stay held.
pub fn call_ended(call_id: &str, failed: bool) {
    let Some(tap) = TAP.get() else {
        return;
    };
    if tap.closed.load(Ordering::Relaxed) {
        return;
    }
    let Some(call) = number(tap, call_id) else {
        return;
    };
    // This thread's packets first (those of a media thread follow within a tick: a late
    // packet follows its call's verdict).
    flush_thread();
    let _ = tap.queue.send(Job::Ended {
        wall: wall_now(),
        call,
        failed,
    });
}

/// Report one payload of `call` (see [`tag`]) that went from `src` to `dst` at `wall` (the
/// time since the Unix epoch: the kernel's receive time, or the send time derived from the
/// thread's one clock read per tick), from a thread that calls [`flush_thread`] regularly
/// (the media threads, each tick): it waits in the thread's batch until then. A media stream
/// of a selected call holds its packets itself instead ([`StreamTap`]).
pub fn packet_at(
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    call: Option<CallTag>,
) {
    if let Some(tap) = TAP.get() {
        tap.batched(&Packet {
            wall,
            proto,
            src,
            dst,
            payload,
            call,
        });
    }
}

impl Tap {
    /// Add a packet to this thread's batch (see [`packet_at`]).
    fn batched(&'static self, packet: &Packet<'_>) {
        // Closed: not reported. Checked again after a new batch is counted (below), so that
        // [`Tap::finish`], which closes and then waits for the batches counted, never misses
        // one begun before it closed.
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        LOCAL.with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return;
            };
            if local.0.is_none() {
                self.unsent.fetch_add(1, Ordering::SeqCst);
                local.0 = Some((self.batch(), self));
                if self.closed.load(Ordering::SeqCst) {
                    local.take();
                    return;
                }
            }
            let Some((batch, _)) = local.0.as_mut() else {
                return;
            };
            batch.push(packet);
            if batch.packets.len() >= BATCH {
                if let Some((full, tap)) = local.take() {
                    tap.send(full);
                }
            }
        });
    }

    /// Send this thread's batch (see [`flush_thread`]).
    fn flush_thread(&self) {
        let batch = LOCAL.with(|local| local.try_borrow_mut().ok().and_then(|mut l| l.take()));
        if let Some((batch, tap)) = batch {
            tap.send(batch);
        }
    }
}

/// Send this thread's batched packets to the writer (the media threads call it after each
/// tick's work); nothing when it has none.
pub fn flush_thread() {
    if let Some(tap) = TAP.get() {
        tap.flush_thread();
    }
}

/// Report one SIP message that went `direction` over `socket`, to or from `peer`, of the
/// call `call_id` (asked for only when calls are selected). Sent to the writer at once.
pub fn on_socket(
    socket: &crate::drive::transport::SipSocket,
    direction: Direction,
    peer: SocketAddr,
    raw: &[u8],
    call_id: impl FnOnce() -> Option<String>,
) {
    if let Some(tap) = TAP.get() {
        if tap.closed.load(Ordering::Relaxed) {
            return;
        }
        let proto = if socket.kind().is_reliable() {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let local = socket.local_addr();
        let (src, dst) = match direction {
            Direction::Sent => (local, peer),
            Direction::Received => (peer, local),
        };
        let call = if tap.keep == Keep::All {
            None
        } else {
            call_id().and_then(|id| number(tap, &id))
        };
        let mut batch = tap.batch();
        batch.push(&Packet {
            wall: wall_now(),
            proto,
            src,
            dst,
            payload: raw,
            call,
        });
        tap.send(batch);
    }
}

/// A media stream's packets for the capture. Under `--pcap-calls failed|N`, once the stream
/// knows its call ([`StreamTap::set_call`]), its UDP datagrams are held in a ring of its
/// own ([`StreamRing`]: one copy each, no clock read, nothing sent to the writer), bounded by
/// the per-call bound and, together with every other ring and the writer's selector, by the
/// total one; the ring goes to the writer in one job when the stream stops
/// ([`StreamTap::hand_over`], also on drop) or when the capture closes ([`closing`]), and
/// the writer's selector writes it, holds it until its call's verdict or drops it. Else its
/// packets go the way of every other ([`packet_at`]).
#[derive(Default)]
pub struct StreamTap {
    call: Option<CallTag>,
    held: Option<HeldStream>,
}

/// A selected call's stream's ring, and the bytes of the total bound it reserved.
struct HeldStream {
    call: CallTag,
    ring: StreamRing,
    /// The ring grows up to this (at most the per-call bound), reserved of the total one
    /// ([`Tap::streams_held`]).
    reserved: usize,
    tap: &'static Tap,
}

impl StreamTap {
    /// The stream's packets are `call`'s from now on (see [`tag`]).
    pub fn set_call(&mut self, call: CallTag) {
        self.set_call_on(TAP.get(), call);
    }

    fn set_call_on(&mut self, tap: Option<&'static Tap>, call: CallTag) {
        self.hand_over();
        self.call = Some(call);
        self.held = tap.and_then(|tap| tap.stream_ring(call));
    }

    /// One UDP datagram `payload` from `src` to `dst` at `wall` (the time since the Unix
    /// epoch).
    pub fn packet(&mut self, wall: Duration, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        match &mut self.held {
            Some(held) => held.push(wall, src, dst, payload),
            None => packet_at(wall, Proto::Udp, src, dst, payload, self.call),
        }
    }

    /// True when the stream holds its packets (a selected call's).
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// The stream stopped (or the capture closes): what it held goes to the writer, in one
    /// job; its later packets, if any, are reported one by one.
    pub fn hand_over(&mut self) {
        if let Some(held) = self.held.take() {
            held.tap.hand_over(held);
        }
    }
}

impl Drop for StreamTap {
    fn drop(&mut self) {
        self.hand_over();
    }
}

impl HeldStream {
    fn push(&mut self, wall: Duration, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        // Its next chunk would pass the size reserved: a chunk more is reserved (once per
        // chunk), within the per-call and total bounds; else the ring wraps within what it
        // has.
        if self.ring.size() + self.ring.chunk() > self.reserved && self.reserved < self.tap.per_call
        {
            let more = self.ring.chunk().min(self.tap.per_call - self.reserved);
            if self.tap.reserve(more) {
                self.reserved += more;
            }
        }
        self.ring.push_udp(wall, src, dst, payload, self.reserved);
    }
}

impl Tap {
    /// A ring for a stream of `call`, when calls are selected and the capture is open.
    fn stream_ring(&'static self, call: CallTag) -> Option<HeldStream> {
        if self.keep == Keep::All {
            return None;
        }
        // Counted, then checked: [`Tap::finish`] closes, then waits for the rings counted.
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.rings.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(HeldStream {
            call,
            ring: StreamRing::with_limit(self.per_call),
            reserved: 0,
            tap: self,
        })
    }

    /// Reserve `more` bytes for a stream's ring when the rings and the selector leave room
    /// within the total bound.
    fn reserve(&self, more: usize) -> bool {
        let selector = self.selector_held.load(Ordering::Relaxed);
        self.streams_held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held + selector + more <= self.total).then_some(held + more)
            })
            .is_ok()
    }

    /// A stream's ring to the writer (see [`StreamTap::hand_over`]). When the writer's
    /// queue is full, its datagrams are dropped and counted as such.
    fn hand_over(&self, held: HeldStream) {
        let HeldStream {
            call,
            ring,
            reserved,
            ..
        } = held;
        let count = ring.len() as u64;
        if ring.is_empty() && !ring.truncated() {
            self.streams_held.fetch_sub(reserved, Ordering::Relaxed);
        } else if let Err(mpsc::TrySendError::Full(_) | mpsc::TrySendError::Disconnected(_)) =
            self.queue.try_send(Job::Stream {
                call,
                ring,
                reserved,
            })
        {
            self.streams_held.fetch_sub(reserved, Ordering::Relaxed);
            self.dropped.fetch_add(count, Ordering::Relaxed);
        }
        self.rings.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True once the capture began closing ([`finish`]): the media threads then hand their
/// streams' rings over ([`StreamTap::hand_over`]), which [`finish`] waits for.
pub fn closing() -> bool {
    TAP.get()
        .is_some_and(|tap| tap.closed.load(Ordering::Relaxed))
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// What a capture wrote.
#[derive(Debug)]
pub struct Summary {
    /// The file.
    pub path: PathBuf,
    /// Packets written.
    pub written: u64,
    /// Packets dropped because the writer fell behind.
    pub dropped: u64,
    /// Why the file is incomplete, when writing failed.
    pub error: Option<std::io::Error>,
    /// What the selection of calls did (`--pcap-calls failed|N`).
    pub selected: Option<Selected>,
    /// The bytes held per call at most.
    pub per_call: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.written == 1 { "" } else { "s" };
        write!(
            f,
            "pcap: {} packet{plural} written to {}",
            self.written,
            self.path.display()
        )?;
        if self.dropped > 0 {
            write!(
                f,
                ", {} dropped (the writer fell behind: the capture is incomplete)",
                self.dropped
            )?;
        }
        if let Some(s) = &self.selected {
            let calls = |n: u64| if n == 1 { "call" } else { "calls" };
            write!(
                f,
                " ({} failed {} kept, {} passed call {} left out",
                s.written,
                calls(s.written),
                s.passed,
                if s.passed == 1 { "end" } else { "ends" }
            )?;
            if s.over_count > 0 {
                write!(
                    f,
                    ", {} more failed {} left out over the count",
                    s.over_count,
                    calls(s.over_count)
                )?;
            }
            if s.unfinished > 0 {
                write!(
                    f,
                    ", {} {} without an end kept",
                    s.unfinished,
                    calls(s.unfinished)
                )?;
            }
            if s.truncated > 0 {
                write!(
                    f,
                    ", {} {} truncated to {}: their oldest packets are missing",
                    s.truncated,
                    calls(s.truncated),
                    show_size(self.per_call)
                )?;
            }
            write!(f, ")")?;
        }
        if let Some(e) = &self.error {
            write!(f, "; writing failed, the capture is incomplete: {e}")?;
        }
        Ok(())
    }
}

/// Write out every packet reported so far, close the capture to later ones and say what it
/// holds; `None` when no capture is installed or it was finished already.
pub fn finish() -> Option<Summary> {
    TAP.get()?.finish()
}

impl Tap {
    /// See [`finish`]: closed to new packets, the threads' batches begun before are waited
    /// for (a media thread sends its own at the end of its tick, within a millisecond; a
    /// thread that does not within [`CLOSE_WAIT`] is not waited for further), then
    /// everything is written.
    fn finish(&self) -> Option<Summary> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return None;
        }
        let tap = self;
        let waited = std::time::Instant::now();
        while (tap.unsent.load(Ordering::SeqCst) > 0 || tap.rings.load(Ordering::SeqCst) > 0)
            && waited.elapsed() < CLOSE_WAIT
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        let (done, flushed) = mpsc::channel();
        // Waits when the queue is full: everything reported before is written first.
        if tap.queue.send(Job::Flush(done)).is_ok() {
            let _ = flushed.recv();
        }
        Some(Summary {
            path: tap.path.clone(),
            written: tap.written.load(Ordering::Relaxed),
            dropped: tap.dropped.load(Ordering::Relaxed),
            error: tap.error.lock().ok().and_then(|mut e| e.take()),
            selected: if tap.keep == Keep::All {
                None
            } else {
                tap.selected.lock().ok().and_then(|s| *s)
            },
            per_call: tap.per_call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture of every packet to a new file in the temporary directory.
    fn tap(name: &str) -> (&'static Tap, PathBuf) {
        tap_with(name, Keep::All, Limits::default())
    }

    /// A capture keeping `keep` within `limits` to a new file in the temporary directory.
    fn tap_with(name: &str, keep: Keep, limits: Limits) -> (&'static Tap, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("sipcheck-{}-{name}.pcap", std::process::id()));
        let file = File::create(&path).expect("a capture file");
        let tap = Tap::start(path.clone(), file, keep, limits).expect("started");
        (Box::leak(Box::new(tap)), path)
    }

    /// A media stream of `call` on `tap`, holding its packets.
    fn stream(tap: &'static Tap, call: CallTag) -> StreamTap {
        let mut stream = StreamTap::default();
        stream.set_call_on(Some(tap), call);
        assert!(stream.holds());
        stream
    }

    /// `n` RTP-sized datagrams (172 bytes) of `stream`, one every 20 ms, half each way.
    fn rtp(stream: &mut StreamTap, n: u64) {
        let (local, remote) = (addr("127.0.0.1:20000"), addr("127.0.0.1:30000"));
        let start = wall_now();
        for i in 0..n {
            let wall = start + Duration::from_millis(20 * i);
            let (src, dst) = if i % 2 == 0 {
                (local, remote)
            } else {
                (remote, local)
            };
            stream.packet(wall, src, dst, &[i as u8; 172]);
        }
    }

    /// The bytes of a file of `n` records of RTP datagrams as [`rtp`] makes them.
    fn rtp_file(n: u64) -> u64 {
        24 + n * (16 + 20 + 8 + 172)
    }

    #[test]
    fn a_stream_ring_handed_over_as_the_capture_closes_is_written_and_counted() {
        let (tap, path) = tap_with("ring-close", Keep::Failed(None), Limits::default());
        let (held, held_rx) = mpsc::channel();
        // A media thread whose stream of a call is still running when the run is
        // interrupted: it hands its ring over on its next tick once the capture closes.
        let media = std::thread::spawn(move || {
            let mut s = stream(tap, 1);
            rtp(&mut s, 3);
            held.send(()).expect("told");
            while !tap.closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_millis(5));
            s.hand_over();
            // Later packets are not reported.
            rtp(&mut s, 1);
        });
        held_rx.recv().expect("held");
        let summary = tap.finish().expect("the first finish");
        media.join().expect("the media thread");
        assert_eq!(summary.written, 3, "{summary}");
        assert_eq!(summary.dropped, 0);
        let selected = summary.selected.expect("selected");
        assert_eq!(selected.unfinished, 1, "{summary}");
        let len = std::fs::metadata(&path).expect("the file").len();
        let _ = std::fs::remove_file(&path);
        assert_eq!(len, rtp_file(3));
        assert_eq!(tap.rings.load(Ordering::SeqCst), 0);
        assert_eq!(
            tap.streams_held.load(Ordering::SeqCst),
            0,
            "reservation released"
        );
    }

    #[test]
    fn a_stopped_stream_of_a_failed_call_is_written_of_a_passed_one_dropped() {
        let (tap, path) = tap_with("ring-verdict", Keep::Failed(None), Limits::default());
        for call in [1, 2, 3] {
            tap.queue.send(Job::Begun(call)).expect("queued");
        }
        let (mut failed, mut passed, mut late) = (stream(tap, 1), stream(tap, 2), stream(tap, 3));
        rtp(&mut failed, 5);
        rtp(&mut passed, 7);
        rtp(&mut late, 2);
        // Stopped before their verdicts (as a call's media stops before its end is judged).
        failed.hand_over();
        passed.hand_over();
        assert!(!failed.holds() && !passed.holds());
        for (call, failed) in [(1, true), (2, false), (3, true)] {
            tap.queue
                .send(Job::Ended {
                    wall: wall_now(),
                    call,
                    failed,
                })
                .expect("queued");
        }
        // Stopped after its verdict: written then.
        drop(late);
        let summary = tap.finish().expect("finished");
        let len = std::fs::metadata(&path).expect("the file").len();
        let _ = std::fs::remove_file(&path);
        assert_eq!(summary.written, 5 + 2, "{summary}");
        assert_eq!(len, rtp_file(5 + 2));
        let selected = summary.selected.expect("selected");
        assert_eq!((selected.written, selected.passed), (2, 1), "{summary}");
        assert_eq!(tap.streams_held.load(Ordering::SeqCst), 0);
        assert_eq!(tap.selector_held.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_streams_rings_stay_within_the_per_call_and_total_bounds_and_say_so() {
        // One ring's 8 KiB take the whole total: a second stream keeps nothing.
        let limits = Limits {
            per_call: 8 << 10,
            total: 8 << 10,
            linger: Duration::from_secs(5),
        };
        let (tap, path) = tap_with("ring-bounds", Keep::Failed(None), limits);
        let (mut first, mut second) = (stream(tap, 1), stream(tap, 2));
        rtp(&mut first, 100);
        assert_eq!(tap.streams_held.load(Ordering::SeqCst), 8 << 10);
        rtp(&mut second, 10);
        assert_eq!(tap.streams_held.load(Ordering::SeqCst), 8 << 10);
        first.hand_over();
        second.hand_over();
        for call in [1, 2] {
            tap.queue
                .send(Job::Ended {
                    wall: wall_now(),
                    call,
                    failed: true,
                })
                .expect("queued");
        }
        let summary = tap.finish().expect("finished");
        let _ = std::fs::remove_file(&path);
        // The newest datagrams that fit 8 KiB as held (13 bytes of addresses each).
        let fit = (8 << 10) / (13 + 172);
        assert!(summary.written > 0 && summary.written <= fit, "{summary}");
        let selected = summary.selected.expect("selected");
        assert_eq!((selected.written, selected.truncated), (2, 2), "{summary}");
        assert_eq!(tap.streams_held.load(Ordering::SeqCst), 0);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    fn report(tap: &'static Tap, payload: &[u8]) {
        tap.batched(&Packet {
            wall: wall_now(),
            proto: Proto::Udp,
            src: addr("127.0.0.1:20000"),
            dst: addr("127.0.0.1:20002"),
            payload,
            call: None,
        });
    }

    #[test]
    fn packets_a_thread_batched_before_the_capture_closed_are_written_and_counted() {
        let (tap, path) = tap("close");
        let (reported, reported_rx) = mpsc::channel();
        // A media thread in the middle of its tick: three packets batched, not sent yet;
        // it sends its batch at the end of the tick, which comes after the capture began
        // closing (Ctrl-C at the end of a run).
        let media = std::thread::spawn(move || {
            for _ in 0..3 {
                report(tap, b"rtp");
            }
            reported.send(()).expect("told");
            while !tap.closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_millis(5));
            tap.flush_thread();
            // Reported after the capture closed: not reported at all.
            report(tap, b"late");
            tap.flush_thread();
        });
        reported_rx.recv().expect("reported");
        let summary = tap.finish().expect("the first finish");
        media.join().expect("the media thread");
        assert_eq!(summary.written, 3, "{summary}");
        assert_eq!(summary.dropped, 0);
        // The file header and three records of 16 + 20 + 8 + 3 bytes.
        let len = std::fs::metadata(&path).expect("the file").len();
        let _ = std::fs::remove_file(&path);
        assert_eq!(len, 24 + 3 * (16 + 20 + 8 + 3));
        assert!(tap.finish().is_none(), "finished once");
    }

    #[test]
    fn a_batch_is_sent_whole_when_full_and_at_the_tick_end() {
        let (tap, path) = tap("batch");
        for _ in 0..BATCH + 1 {
            report(tap, b"x");
        }
        assert_eq!(
            tap.unsent.load(Ordering::SeqCst),
            1,
            "one batch sent, one begun"
        );
        tap.flush_thread();
        assert_eq!(tap.unsent.load(Ordering::SeqCst), 0);
        let summary = tap.finish().expect("finished");
        let _ = std::fs::remove_file(&path);
        assert_eq!(summary.written, BATCH as u64 + 1);
    }
}
