//! Raw SIP over std sockets, for talking to peers without sipcheck: build a
//! request, send it, wait for the final response, read headers.
//!
//! Deliberately minimal and independent of sipcheck-core, so the harness can
//! test the peers on its own.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A SIP endpoint on a UDP socket bound to `127.0.0.1:0`.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    /// The socket.
    pub(crate) socket: UdpSocket,
    /// Its local address (for Via and Contact).
    pub(crate) local: SocketAddr,
}

impl UdpEndpoint {
    /// Binds a new endpoint on an ephemeral loopback port.
    pub(crate) fn bind() -> io::Result<Self> {
        Self::bind_to(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds a new endpoint on `local` (e.g. `[::1]:0`).
    pub(crate) fn bind_to(local: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(local)?;
        let local = socket.local_addr()?;
        Ok(Self { socket, local })
    }

    /// Sends `msg` to `to`.
    pub(crate) fn send(&self, msg: &str, to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(msg.as_bytes(), to).map(|_| ())
    }

    /// The next datagram, as text, with its source; `None` after `timeout`.
    pub(crate) fn recv(&self, timeout: Duration) -> io::Result<Option<(String, SocketAddr)>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut buf = vec![0u8; 65_536];
        match self.socket.recv_from(&mut buf) {
            Ok((n, from)) => Ok(Some((
                String::from_utf8_lossy(&buf[..n]).into_owned(),
                from,
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The next request received (responses are skipped) within `timeout`.
    pub(crate) fn recv_request(
        &self,
        timeout: Duration,
    ) -> io::Result<Option<(String, SocketAddr)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.recv(left)? {
                Some((msg, from)) if !msg.starts_with("SIP/2.0 ") => return Ok(Some((msg, from))),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Sends request `msg` to `to` and waits up to `timeout` for its final
    /// response (same Call-ID and CSeq; provisional ones are skipped).
    /// Retransmits every 500 ms like a UDP client (timer A, capped).
    pub(crate) fn request(
        &self,
        msg: &str,
        to: SocketAddr,
        timeout: Duration,
    ) -> io::Result<String> {
        let call_id = header(msg, "Call-ID").unwrap_or_default();
        let cseq = header(msg, "CSeq").unwrap_or_default();
        let deadline = Instant::now() + timeout;
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no final response to {} within {timeout:?}",
                        first_line(msg)
                    ),
                ));
            }
            if now >= next_send {
                self.send(msg, to)?;
                next_send = now + Duration::from_millis(500);
            }
            let wait = next_send
                .min(deadline)
                .saturating_duration_since(Instant::now());
            if let Some((resp, _)) = self.recv(wait)? {
                if status_code(&resp).is_some_and(|c| c >= 200)
                    && header(&resp, "Call-ID").unwrap_or_default() == call_id
                    && header(&resp, "CSeq").unwrap_or_default() == cseq
                {
                    return Ok(resp);
                }
            }
        }
    }
}

/// A fresh token for tags, branches and Call-IDs (unique in this process).
pub(crate) fn token() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}{:x}{n:x}", std::process::id(), t & 0xffff_ffff)
}

/// The parts of an out-of-dialog request that tests vary.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    /// Method, e.g. `REGISTER`.
    pub(crate) method: String,
    /// Request-URI.
    pub(crate) uri: String,
    /// From URI (a tag is added).
    pub(crate) from: String,
    /// To URI.
    pub(crate) to: String,
    /// Call-ID.
    pub(crate) call_id: String,
    /// CSeq number.
    pub(crate) cseq: u32,
    /// Extra header lines, without CRLF (e.g. `Expires: 60`).
    pub(crate) headers: Vec<String>,
    /// Body (Content-Length is computed).
    pub(crate) body: String,
}

impl RequestSpec {
    /// A request with a fresh Call-ID, CSeq 1, no extra headers.
    pub(crate) fn new(method: &str, uri: &str, from: &str, to: &str) -> Self {
        Self {
            method: method.to_owned(),
            uri: uri.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            call_id: format!("{}@sipcheck.test", token()),
            cseq: 1,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Adds a header line.
    pub(crate) fn header(mut self, line: impl Into<String>) -> Self {
        self.headers.push(line.into());
        self
    }

    /// The request text, sent from `local` over UDP (Via with rport, a fresh
    /// branch; the From tag is derived from the Call-ID so it stays the same
    /// across CSeqs).
    pub(crate) fn build(&self, local: SocketAddr) -> String {
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\n\
             To: <{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             User-Agent: sipcheck-harness\r\n",
            method = self.method,
            uri = self.uri,
            branch = token(),
            from = self.from,
            tag = self.call_id.split('@').next().unwrap_or("t"),
            to = self.to,
            call_id = self.call_id,
            cseq = self.cseq,
        );
        for h in &self.headers {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        m.push_str(&self.body);
        m
    }
}

/// The first line of a message.
pub(crate) fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or("")
}

/// The status code of a response, `None` for a request.
pub(crate) fn status_code(msg: &str) -> Option<u16> {
    first_line(msg)
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// The header part of a message (before the blank line).
fn head(msg: &str) -> &str {
    msg.split("\r\n\r\n").next().unwrap_or(msg)
}

/// The values of every header `name` (case-insensitive; compact forms of
/// the common headers included), in order. Folded lines are not handled.
pub(crate) fn headers(msg: &str, name: &str) -> Vec<String> {
    let compact = match name.to_ascii_lowercase().as_str() {
        "call-id" => Some("i"),
        "contact" => Some("m"),
        "from" => Some("f"),
        "to" => Some("t"),
        "via" => Some("v"),
        "content-length" => Some("l"),
        "content-type" => Some("c"),
        _ => None,
    };
    head(msg)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// The first value of header `name`, if any.
pub(crate) fn header(msg: &str, name: &str) -> Option<String> {
    headers(msg, name).into_iter().next()
}

/// A response to request `req` with `code reason`, echoing Via,
/// Record-Route, From, To (adding `to_tag` if it has none), Call-ID and
/// CSeq, plus `extra` header lines.
pub(crate) fn response_to(
    req: &str,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[&str],
) -> String {
    let mut m = format!("SIP/2.0 {code} {reason}\r\n");
    for via in headers(req, "Via") {
        m.push_str(&format!("Via: {via}\r\n"));
    }
    for rr in headers(req, "Record-Route") {
        m.push_str(&format!("Record-Route: {rr}\r\n"));
    }
    m.push_str(&format!(
        "From: {}\r\n",
        header(req, "From").unwrap_or_default()
    ));
    let to = header(req, "To").unwrap_or_default();
    if to.contains(";tag=") {
        m.push_str(&format!("To: {to}\r\n"));
    } else {
        m.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    }
    m.push_str(&format!(
        "Call-ID: {}\r\n",
        header(req, "Call-ID").unwrap_or_default()
    ));
    m.push_str(&format!(
        "CSeq: {}\r\n",
        header(req, "CSeq").unwrap_or_default()
    ));
    for h in extra {
        m.push_str(h);
        m.push_str("\r\n");
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

/// The ACK for a non-2xx final `response` to `invite` (RFC 3261 17.1.1.3:
/// same Request-URI, top Via and branch, From, Call-ID, CSeq number; To of
/// the response).
pub(crate) fn ack_for(invite: &str, response: &str) -> String {
    let uri = first_line(invite).split(' ').nth(1).unwrap_or_default();
    let via = header(invite, "Via").unwrap_or_default();
    let cseq = header(invite, "CSeq").unwrap_or_default();
    let n = cseq.split_whitespace().next().unwrap_or("1");
    let mut m = format!("ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n");
    for route in headers(invite, "Route") {
        m.push_str(&format!("Route: {route}\r\n"));
    }
    m.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
        header(invite, "From").unwrap_or_default(),
        header(response, "To").unwrap_or_default(),
        header(invite, "Call-ID").unwrap_or_default(),
    ));
    m
}

impl UdpEndpoint {
    /// Registers `sip:USER@sipcheck.test` at `registrar` with this
    /// endpoint's address as Contact and `Expires: expires` (0 removes it),
    /// answering one digest challenge (401) with `password`. Returns the
    /// final response (200 on success).
    pub(crate) fn register(
        &self,
        registrar: SocketAddr,
        user: &str,
        password: &str,
        expires: u32,
    ) -> io::Result<String> {
        let uri = format!("sip:{registrar}");
        let aor = format!("sip:{user}@sipcheck.test");
        let mut spec = RequestSpec::new("REGISTER", &uri, &aor, &aor)
            .header(format!("Contact: <sip:{user}@{}>", self.local))
            .header(format!("Expires: {expires}"));
        let timeout = Duration::from_secs(5);
        let resp = self.request(&spec.build(self.local), registrar, timeout)?;
        if status_code(&resp) != Some(401) {
            return Ok(resp);
        }
        let challenge = header(&resp, "WWW-Authenticate")
            .ok_or_else(|| io::Error::other(format!("401 without WWW-Authenticate:\n{resp}")))?;
        let auth = super::digest::authorization(&challenge, user, password, "REGISTER", &uri)
            .ok_or_else(|| io::Error::other(format!("cannot answer challenge {challenge}")))?;
        spec.cseq += 1;
        let spec = spec.header(format!("Authorization: {auth}"));
        self.request(&spec.build(self.local), registrar, timeout)
    }
}
