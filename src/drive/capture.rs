//! `--pcap FILE`: every SIP message and RTP packet sipcheck sent and received, written to FILE
//! as a packet capture (classic pcap, raw IP: [`sipcheck_core::capture`] makes the records)
//! that Wireshark and `tshark` read.
//!
//! One capture per process, installed by the command line before anything is sent. The SIP
//! wire (`drive::wire`) and the RTP scheduler threads ([`crate::drive::media`])
//! report each packet here with the wall-clock time; a packet is copied into a bounded
//! channel and written by a thread of its own, which polls the channel every few
//! milliseconds: a report never waits for the disk nor wakes a thread (a clock read, a copy
//! and a lock-free push), so the 20 ms pacing of the media threads is not delayed by the
//! file. When the writer falls
//! behind and the channel is full, the packet is dropped and counted ([`finish`] says how
//! many). When no capture is installed, reporting a packet costs one atomic load.
//!
//! [`finish`] writes out everything reported before it and closes the file: the command line
//! calls it on every way out (a normal end, after Ctrl-C's wind-down, a second Ctrl-C).
//!
//! `--pcap-calls failed|N` ([`Keep::Failed`]): each packet is reported with its call's SIP
//! Call-ID when it belongs to one (the SIP wire reads it from the message it already has in
//! hand, a media stream is told its call's when its call has one); the writer thread holds
//! each call's packets until [`call_ended`] says how the call ended
//! ([`sipcheck_core::capture::select`] decides what is written).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sipcheck_core::capture::select::{show_size, Keep, Limits, Selected, Selector};
use sipcheck_core::capture::{file_header, Encoder};
use sipcheck_core::stats::ladder::Direction;

/// How many packets wait for the writer at most (about 40 ms at 2,000 calls with RTP both
/// ways, 400,000 packets a second, 8 times the writer's polling period; about 4 MB).
const QUEUE: usize = 1 << 14;

/// How long the writer sleeps when the queue is empty (at 400,000 packets a second, 2,000
/// packets queue meanwhile).
const POLL: Duration = Duration::from_millis(5);

/// What the file buffers before writing.
const FILE_BUFFER: usize = 1 << 20;

/// Over which transport a payload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A UDP datagram.
    Udp,
    /// Bytes of a TCP stream.
    Tcp,
}

/// A payload this long or shorter (an RTP packet of 20 ms of G.711: 172 bytes) travels in
/// the queue's slot itself: no allocation on the sending thread, no free on the writer's.
const INLINE: usize = 192;

enum Payload {
    Inline(u8, [u8; INLINE]),
    Boxed(Box<[u8]>),
}

impl Payload {
    fn new(data: &[u8]) -> Self {
        if data.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..data.len()].copy_from_slice(data);
            Payload::Inline(data.len() as u8, buf)
        } else {
            Payload::Boxed(data.into())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Inline(len, buf) => &buf[..usize::from(*len)],
            Payload::Boxed(data) => data,
        }
    }
}

struct Packet {
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Payload,
    /// The call's SIP Call-ID, when it belongs to one and calls are selected.
    call: Option<Arc<str>>,
}

// The packet inline on purpose: a slot of the queue is its storage (see `INLINE`).
#[allow(clippy::large_enum_variant)]
enum Job {
    Packet(Packet),
    /// One end of a call ended at `wall`, failed or passed.
    Ended {
        wall: Duration,
        call: Arc<str>,
        failed: bool,
    },
    /// Write out everything and answer.
    Flush(mpsc::Sender<()>),
}

struct Tap {
    path: PathBuf,
    queue: mpsc::SyncSender<Job>,
    /// Which calls are written.
    keep: Keep,
    /// The bytes held per call at most.
    per_call: usize,
    /// What the selection did, once the writer finished.
    selected: Arc<Mutex<Option<Selected>>>,
    /// Set by [`finish`]: later packets are not reported.
    closed: AtomicBool,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
    /// The first write error, when one happened.
    error: std::sync::Arc<Mutex<Option<std::io::Error>>>,
}

static TAP: OnceLock<Tap> = OnceLock::new();

/// Install the process's capture, written to `file` (created at `path`): the file header is
/// written at once, then the packets reported of the calls `keep` selects, each call's held
/// within `limits`. A second call is ignored.
pub fn install(path: PathBuf, file: File, keep: Keep, limits: Limits) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(FILE_BUFFER, file);
    out.write_all(&file_header())?;
    out.flush()?;
    let (queue, jobs) = mpsc::sync_channel(QUEUE);
    let written = std::sync::Arc::new(AtomicU64::new(0));
    let error = std::sync::Arc::new(Mutex::new(None));
    let selected = Arc::new(Mutex::new(None));
    let tap = Tap {
        path,
        queue,
        keep,
        per_call: limits.per_call,
        selected: selected.clone(),
        closed: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        written: written.clone(),
        error: error.clone(),
    };
    if TAP.set(tap).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("sipcheck-pcap".into())
        .spawn(move || {
            let selector = Selector::new(keep, limits);
            write_loop(&jobs, out, selector, &written, &error, &selected);
        })?;
    Ok(())
}

/// The writer thread: each packet encoded and written, until every sender is gone.
fn write_loop(
    jobs: &mpsc::Receiver<Job>,
    mut out: BufWriter<File>,
    mut selector: Selector,
    written: &AtomicU64,
    error: &Mutex<Option<std::io::Error>>,
    selected: &Mutex<Option<Selected>>,
) {
    let mut encoder = Encoder::new();
    let mut record = Vec::with_capacity(2048);
    let mut chosen = Vec::with_capacity(1 << 16);
    let mut failed = false;
    let fail = |e: std::io::Error, failed: &mut bool| {
        if !*failed {
            *failed = true;
            if let Ok(mut slot) = error.lock() {
                *slot = Some(e);
            }
        }
    };
    loop {
        // Polled, never waited on: a sender never has a sleeping writer to wake (no system
        // call on the RTP threads' path); what queues meanwhile is written in one go.
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::TryRecvError::Empty) => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        match job {
            Job::Packet(p) => {
                if failed {
                    continue;
                }
                record.clear();
                match p.proto {
                    Proto::Udp => encoder.udp(&mut record, p.wall, p.src, p.dst, p.payload.bytes()),
                    Proto::Tcp => encoder.tcp(&mut record, p.wall, p.src, p.dst, p.payload.bytes()),
                }
                selector.record(p.wall, p.call.as_ref(), &record, &mut chosen);
                write_chosen(&mut out, &mut chosen, written, &mut failed, &fail);
            }
            Job::Ended {
                wall,
                call,
                failed: call_failed,
            } => {
                if failed {
                    continue;
                }
                selector.ended(wall, &call, call_failed, &mut chosen);
                write_chosen(&mut out, &mut chosen, written, &mut failed, &fail);
            }
            Job::Flush(done) => {
                if !failed {
                    selector.finish(&mut chosen);
                    write_chosen(&mut out, &mut chosen, written, &mut failed, &fail);
                }
                if let Ok(mut slot) = selected.lock() {
                    *slot = Some(selector.selected());
                }
                if let Err(e) = out.flush() {
                    fail(e, &mut failed);
                }
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush();
}

/// Write the records `chosen` holds (and empty it), counting the packets in them.
fn write_chosen(
    out: &mut BufWriter<File>,
    chosen: &mut Vec<u8>,
    written: &AtomicU64,
    failed: &mut bool,
    fail: &impl Fn(std::io::Error, &mut bool),
) {
    if chosen.is_empty() {
        return;
    }
    match out.write_all(chosen) {
        Ok(()) => {
            written.fetch_add(count_records(chosen), Ordering::Relaxed);
        }
        Err(e) => fail(e, failed),
    }
    chosen.clear();
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
/// with their call's Call-ID, and call ends with [`call_ended`].
pub fn selective() -> bool {
    TAP.get().is_some_and(|tap| tap.keep != Keep::All)
}

/// The Call-ID to tag a call's packets with, when calls are selected (`None` otherwise: no
/// allocation).
pub fn tag(call_id: &str) -> Option<Arc<str>> {
    (selective() && !call_id.is_empty()).then(|| Arc::from(call_id))
}

/// One end of call `call_id` ended, failed or passed (when calls are selected). Waits when
/// the writer's queue is full: a call end is never dropped, its packets would stay held.
pub fn call_ended(call_id: &str, failed: bool) {
    let Some(tap) = TAP.get() else {
        return;
    };
    if tap.keep == Keep::All || call_id.is_empty() || tap.closed.load(Ordering::Relaxed) {
        return;
    }
    let _ = tap.queue.send(Job::Ended {
        wall: wall_now(),
        call: Arc::from(call_id),
        failed,
    });
}

/// Report one payload of `call` (see [`tag`]) that went from `src` to `dst` now.
pub fn packet(
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    call: Option<&Arc<str>>,
) {
    if let Some(tap) = TAP.get() {
        report(tap, wall_now(), proto, src, dst, payload, call);
    }
}

/// Report one payload that went from `src` to `dst` at `wall` (the time since the Unix epoch,
/// e.g. the kernel's receive time).
pub fn packet_at(
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    call: Option<&Arc<str>>,
) {
    if let Some(tap) = TAP.get() {
        report(tap, wall, proto, src, dst, payload, call);
    }
}

/// Report one SIP message that went `direction` over `socket`, to or from `peer`, of the
/// call `call_id` (asked for only when calls are selected).
pub fn on_socket(
    socket: &crate::drive::transport::SipSocket,
    direction: Direction,
    peer: SocketAddr,
    raw: &[u8],
    call_id: impl FnOnce() -> Option<String>,
) {
    if let Some(tap) = TAP.get() {
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
            call_id().map(Arc::from)
        };
        report(tap, wall_now(), proto, src, dst, raw, call.as_ref());
    }
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn report(
    tap: &Tap,
    wall: Duration,
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
    data: &[u8],
    call: Option<&Arc<str>>,
) {
    if tap.closed.load(Ordering::Relaxed) {
        return;
    }
    let job = Job::Packet(Packet {
        wall,
        proto,
        src,
        dst,
        payload: Payload::new(data),
        call: call.cloned(),
    });
    if tap.queue.try_send(job).is_err() {
        tap.dropped.fetch_add(1, Ordering::Relaxed);
    }
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
    let tap = TAP.get()?;
    if tap.closed.swap(true, Ordering::SeqCst) {
        return None;
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

#[cfg(test)]
mod tests {
    use super::Payload;

    #[test]
    fn an_rtp_sized_payload_is_inline_and_a_longer_one_boxed_both_intact() {
        for len in [0, 172, super::INLINE, super::INLINE + 1, 1500] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let payload = Payload::new(&data);
            assert_eq!(payload.bytes(), &data[..], "{len}");
            assert_eq!(
                matches!(payload, Payload::Inline(..)),
                len <= super::INLINE,
                "{len}"
            );
        }
    }
}
