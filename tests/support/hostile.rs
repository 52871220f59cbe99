//! A scripted, hostile SIP peer on a std UDP socket: it reacts to what
//! sipcheck sends with whatever the test's script says (garbage, truncated
//! or oversized messages, stray responses, endless provisionals, odd SDP).
//!
//! It parses just enough SIP (the first line and a few headers) and copies
//! Via/From/To/Call-ID/CSeq into its responses. Every datagram it receives
//! is kept, so a test can check what sipcheck sent (ACK, BYE, 488 …).
//!
//! ```ignore
//! let peer = HostilePeer::start(|p| {
//!     let (req, from) = p.recv_request(Duration::from_secs(5)).unwrap();
//!     p.send_raw(b"garbage", from);
//!     p.respond(&req, from, 200, "OK", &[], None);
//! });
//! // ... run sipcheck against peer.addr ...
//! let seen = peer.join();
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One received SIP datagram, as text.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    /// The whole datagram (lossy UTF-8).
    pub(crate) text: String,
}

impl Msg {
    /// The first line.
    pub(crate) fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("").trim_end()
    }

    /// Whether it is a response.
    pub(crate) fn is_response(&self) -> bool {
        self.text.starts_with("SIP/2.0 ")
    }

    /// The status code of a response.
    pub(crate) fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.first_line().split_whitespace().nth(1)?.parse().ok()
    }

    /// The method of a request (or of the CSeq of a response).
    pub(crate) fn method(&self) -> String {
        if self.is_response() {
            self.header("CSeq")
                .and_then(|c| c.split_whitespace().nth(1).map(str::to_string))
                .unwrap_or_default()
        } else {
            self.first_line()
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        }
    }

    /// The head's lines (without the first line), stopping at the blank line.
    fn head_lines(&self) -> impl Iterator<Item = &str> {
        self.text
            .lines()
            .skip(1)
            .map(str::trim_end)
            .take_while(|l| !l.is_empty())
    }

    /// Every value of header `name` (long or compact form), in order.
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        let compact = compact_of(name);
        self.head_lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                    .then(|| v.trim().to_string())
            })
            .collect()
    }

    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The body (after the blank line).
    pub(crate) fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .or_else(|| self.text.split_once("\n\n"))
            .map_or("", |(_, b)| b)
    }

    /// The top Via's branch parameter.
    pub(crate) fn branch(&self) -> Option<String> {
        let via = self.header("Via")?;
        via.split(';')
            .find_map(|p| p.trim().strip_prefix("branch=").map(str::to_string))
            .map(|b| b.split(',').next().unwrap_or("").to_string())
    }

    /// The RTP address of the body's SDP (`c=` and the first `m=audio` port).
    pub(crate) fn sdp_rtp(&self) -> Option<SocketAddr> {
        let body = self.body();
        let ip = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
            .trim();
        let port = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("m=audio "))?
            .split_whitespace()
            .next()?;
        format!("{ip}:{port}").parse().ok()
    }
}

fn compact_of(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "via" => "v",
        "from" => "f",
        "to" => "t",
        "call-id" => "i",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        _ => return None,
    })
}

/// The script's view of the peer: its socket and what it has received.
pub(crate) struct Peer {
    /// The socket (127.0.0.1, ephemeral port).
    pub(crate) socket: UdpSocket,
    /// Its address.
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
}

impl Peer {
    /// Whether the test asked the script to stop.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The next datagram within `timeout` (kept in the log), with its source.
    pub(crate) fn recv(&self, timeout: Duration) -> Option<(Msg, SocketAddr)> {
        let _ = self
            .socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        let mut buf = vec![0u8; 65_536];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        let msg = Msg {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.clone());
        Some((msg, from))
    }

    /// The next request within `timeout` (responses are logged and skipped).
    pub(crate) fn recv_request(&self, timeout: Duration) -> Option<(Msg, SocketAddr)> {
        self.recv_matching(timeout, |m| !m.is_response())
    }

    /// The next message within `timeout` for which `want` holds (others are
    /// logged and skipped); stops early when the test asks the script to stop.
    pub(crate) fn recv_matching(
        &self,
        timeout: Duration,
        want: impl Fn(&Msg) -> bool,
    ) -> Option<(Msg, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopping() {
                return None;
            }
            if let Some((m, from)) = self.recv(left.min(Duration::from_millis(100))) {
                if want(&m) {
                    return Some((m, from));
                }
            }
        }
    }

    /// The next request with this method within `timeout`.
    pub(crate) fn recv_method(&self, method: &str, timeout: Duration) -> Option<(Msg, SocketAddr)> {
        self.recv_matching(timeout, |m| !m.is_response() && m.method() == method)
    }

    /// Sends raw bytes.
    pub(crate) fn send_raw(&self, data: &[u8], to: SocketAddr) {
        let _ = self.socket.send_to(data, to);
    }

    /// Sends a response to `req` (Via, From, To, Call-ID, CSeq copied; a
    /// To-tag added unless present) with `extra` header lines and `body`
    /// (an SDP body gets `Content-Type: application/sdp`).
    pub(crate) fn respond(
        &self,
        req: &Msg,
        to: SocketAddr,
        code: u16,
        reason: &str,
        extra: &[String],
        body: Option<&str>,
    ) {
        let text = response(req, code, reason, "hostile", extra, body);
        self.send_raw(text.as_bytes(), to);
    }
}

/// A response to `req` as text; `to_tag` is added to To unless it has one.
pub(crate) fn response(
    req: &Msg,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[String],
    body: Option<&str>,
) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for via in req.headers("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    let to = req.header("To").unwrap_or_default();
    let to = if to.contains("tag=") || code == 100 {
        to
    } else {
        format!("{to};tag={to_tag}")
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        req.header("From").unwrap_or_default(),
        req.header("Call-ID").unwrap_or_default(),
        req.header("CSeq").unwrap_or_default(),
    ));
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    match body {
        Some(b) => {
            if !extra
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("content-type"))
            {
                out.push_str("Content-Type: application/sdp\r\n");
            }
            out.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
        }
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

/// An SDP body for an audio stream at `rtp` offering `formats` (e.g. "0 101"),
/// with the given extra attribute lines.
pub(crate) fn sdp(rtp: SocketAddr, formats: &str, attrs: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no=hostile 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    );
    for a in attrs {
        s.push_str(a);
        s.push_str("\r\n");
    }
    s
}

/// A running hostile peer: a std thread running the test's script.
pub(crate) struct HostilePeer {
    /// Where sipcheck should send (127.0.0.1:port).
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostilePeer {
    /// Binds 127.0.0.1 on a free port and runs `script` on a thread.
    pub(crate) fn start(script: impl FnOnce(&Peer) + Send + 'static) -> HostilePeer {
        let socket = UdpSocket::bind((super::LOOPBACK, super::free_port()))
            .or_else(|_| UdpSocket::bind((super::LOOPBACK, 0)))
            .expect("bind the hostile peer's socket");
        let addr = socket.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let peer = Peer {
            socket,
            addr,
            seen: Arc::clone(&seen),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::spawn(move || script(&peer));
        HostilePeer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What it has received so far.
    pub(crate) fn seen(&self) -> Vec<Msg> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first lines of what it received, for assertion messages.
    pub(crate) fn ladder(&self) -> String {
        self.seen()
            .iter()
            .map(|m| format!("  {}", m.first_line()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the script to end by itself and returns what it received.
    /// A panic in the script (a failed assertion there) is re-raised.
    pub(crate) fn wait(mut self) -> Vec<Msg> {
        if let Some(t) = self.thread.take() {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        self.seen()
    }

    /// Asks the script to stop, waits for it, and returns what it received.
    /// A panic in the script (a failed assertion there) is re-raised.
    pub(crate) fn join(mut self) -> Vec<Msg> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
        self.seen()
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An RTP packet (version 2, no extension) with a 160-byte payload.
pub(crate) fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(172);
    p.push(0x80);
    p.push(pt & 0x7f);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// A request from the peer (playing UAC) to `target`, with `extra` lines and an optional SDP body.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request(
    method: &str,
    uri: &str,
    local: SocketAddr,
    branch: &str,
    from_tag: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    extra: &[String],
    body: Option<&str>,
) -> String {
    let mut out = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:hostile@{local}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:hostile@{local}>\r\n"
    );
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    match body {
        Some(b) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

/// The resident set size of process `pid` in KiB (from /proc/PID/status).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
