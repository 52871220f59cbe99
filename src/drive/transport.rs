//! SIP transports: one shared UDP socket, TCP connections (for the probes: one to the server,
//! and more opened on demand to other destinations), or a pool of TCP connections with a
//! listening socket (for scenarios), over IPv4 or IPv6.
//!
//! The transport only moves bytes and frames messages; everything else (matching responses to
//! transactions by branch, retransmission, timers) happens in the sans-IO core. One UDP socket
//! serves every user agent of a run: the transaction layer routes what arrives by Via branch.
//! A [`TcpPool`] serves a role of `sipcheck run` over TCP: it chooses the connection a message
//! goes over (its user agent's, the one a request came in on), and times keep-alives with the
//! core's [`KeepAlive`]. TLS would wrap the same streams, with the same framing.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use sipcheck_core::sip::keepalive::{KeepAlive, KeepAliveAction, PONG_TIMEOUT};
use sipcheck_core::sip::msg::{head_header, user_part, Message, ParseError, StreamFramer};
use sipcheck_core::sip::transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::drive::tls::{open_stream, HandshakeTook, SipStream, TlsContext};
use crate::drive::ws::WsTarget;

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The local address could not be bound (typically: the port is in use).
    #[error("cannot bind local address {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// A TCP connection could not be established.
    #[error("cannot connect to {addr} over TCP: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A TLS handshake failed (the certificate refused, or the peer's TLS).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong, in words.
        reason: String,
    },
    /// A WebSocket handshake failed (no HTTP upgrade, the `sip` subprotocol not granted).
    #[error("WebSocket handshake with {addr} failed: {reason}")]
    WebSocket {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong, in words.
        reason: String,
    },
    /// The TCP peer closed the connection.
    #[error("the TCP connection to {0} was closed by the peer")]
    Closed(SocketAddr),
    /// A TCP stream carried a message that cannot be framed; the connection is unusable.
    #[error("the TCP stream from {peer} is corrupt: {source}")]
    Stream {
        /// The peer.
        peer: SocketAddr,
        /// The framing error.
        source: ParseError,
    },
    /// No pong answered a keep-alive ping in time (RFC 5626 §4.4.1): the connection was
    /// closed.
    #[error("the TCP connection to {0} was closed: no pong answered a keep-alive ping")]
    NoPong(SocketAddr),
    /// What was sent to `addr` could not be delivered (an ICMP error came back).
    #[error("{addr} is unreachable: {error}")]
    Unreachable {
        /// The destination.
        addr: SocketAddr,
        /// What the ICMP error said.
        error: Unreachable,
    },
    /// Any other socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// The handshake durations of the process (TLS's, WebSocket's) for the run's histograms, kept
/// until taken: at most [`HandshakeTimes::MAX`] between two [`HandshakeTimes::take`]s.
pub struct HandshakeTimes(std::sync::Mutex<Vec<std::time::Duration>>);

impl HandshakeTimes {
    /// At most this many durations are kept between two [`take`](Self::take)s.
    pub const MAX: usize = 1 << 20;

    /// None yet.
    pub const fn new() -> Self {
        HandshakeTimes(std::sync::Mutex::new(Vec::new()))
    }

    /// One handshake took `took`.
    pub fn record(&self, took: std::time::Duration) {
        if let Ok(mut all) = self.0.lock() {
            if all.len() < Self::MAX {
                all.push(took);
            }
        }
    }

    /// The durations recorded since the last call.
    pub fn take(&self) -> Vec<std::time::Duration> {
        self.0
            .lock()
            .map(|mut all| std::mem::take(&mut *all))
            .unwrap_or_default()
    }
}

impl Default for HandshakeTimes {
    fn default() -> Self {
        Self::new()
    }
}

impl TransportError {
    /// Whether this is a connection that could not be opened (refused, or its TLS or
    /// WebSocket handshake failed): nothing went over it.
    pub fn never_opened(&self) -> bool {
        matches!(
            self,
            TransportError::Connect { .. }
                | TransportError::Tls { .. }
                | TransportError::WebSocket { .. }
        )
    }

    /// The peer of a connection that failed or could not be opened, when the error is
    /// that one connection's (the transport itself still works, for other peers and for
    /// a new connection to this one).
    pub fn flow(&self) -> Option<SocketAddr> {
        match self {
            TransportError::Connect { addr, .. }
            | TransportError::Tls { addr, .. }
            | TransportError::WebSocket { addr, .. } => Some(*addr),
            TransportError::Closed(addr) | TransportError::NoPong(addr) => Some(*addr),
            TransportError::Stream { peer, .. } => Some(*peer),
            _ => None,
        }
    }
}

/// Something that arrived on a transport.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed message from `from`.
    Message {
        /// The message.
        message: Box<Message>,
        /// Where it came from.
        from: SocketAddr,
    },
    /// A datagram that is not a SIP message (counted, never fatal).
    Malformed {
        /// The parse error.
        error: ParseError,
        /// Where it came from.
        from: SocketAddr,
    },
    /// What we sent to `destination` could not be delivered: an ICMP error came back (port
    /// or host unreachable), reported by the kernel's socket error queue (`IP_RECVERR`).
    Unreachable {
        /// Where the undelivered datagram was going.
        destination: SocketAddr,
        /// What the ICMP error said.
        error: Unreachable,
    },
}

/// An ICMP error about a datagram we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The operating system's error (ECONNREFUSED for port unreachable).
    pub errno: i32,
    /// The ICMP type and code, when the error came from ICMP.
    pub icmp: Option<(u8, u8)>,
    /// The host that sent the ICMP error.
    pub offender: Option<std::net::IpAddr>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        let what = match self.icmp {
            // ICMPv4 destination unreachable / port unreachable; ICMPv6 unreachable / port.
            Some((3, 3)) | Some((1, 4)) => "ICMP port unreachable".to_string(),
            Some((3, _)) | Some((1, _)) => "ICMP destination unreachable".to_string(),
            Some((t, c)) => format!("ICMP error (type {t}, code {c})"),
            None => "local error".to_string(),
        };
        let os = os.to_string();
        let os = os
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_lowercase();
        write!(f, "{what}: {os}")?;
        if let Some(ip) = self.offender {
            write!(f, " (reported by {ip})")?;
        }
        Ok(())
    }
}

/// The WebSocket target given, else `/` on the peer's address.
fn ws_or_root(ws: Option<WsTarget>) -> WsTarget {
    ws.unwrap_or_else(|| WsTarget::new("/", None))
}

/// Resolve `host[:port]` (port 5060 by default; IPv6 literals in brackets) to a socket address.
pub async fn resolve(host: &str, default_port: u16) -> Result<SocketAddr, TransportError> {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    };
    let mut addrs =
        tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| TransportError::Resolve {
                host: host.to_string(),
                reason: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| TransportError::Resolve {
        host: host.to_string(),
        reason: "no address found".into(),
    })
}

/// The local IP address the kernel would use to reach `peer` (no packet is sent).
pub fn local_ip_for(peer: SocketAddr) -> io::Result<IpAddr> {
    let unspecified: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let probe = std::net::UdpSocket::bind(unspecified)?;
    probe.connect(peer)?;
    Ok(probe.local_addr()?.ip())
}

/// A transport: where requests go out and messages come in.
#[derive(Debug)]
pub enum SipSocket {
    /// One UDP socket shared by every user agent.
    Udp(UdpTransport),
    /// A TCP connection to a server, and one to each other destination a dialog names.
    Tcp(TcpTransport),
    /// TCP connections to any peer, opened on demand, and a listening socket.
    TcpPool(TcpPool),
}

impl SipSocket {
    /// Write out what is queued and close the connections cleanly, `within` at most (only a
    /// [`TcpPool`] queues; the other sockets write as they send).
    pub async fn close(&mut self, within: std::time::Duration) {
        if let SipSocket::TcpPool(pool) = self {
            pool.close(within).await;
        }
    }

    /// Open a transport of `kind` towards `peer`, bound to `local` when given (else to the
    /// address the kernel routes to `peer` from, on an ephemeral port).
    ///
    /// Over TLS (and WSS), `tls` holds the context and the name the server's certificate is
    /// verified for (`None`: its IP address); over WebSocket, `ws` the resource and host the
    /// handshake names (default: `/` and the peer's address).
    pub async fn open(
        kind: Transport,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        tls: Option<(TlsContext, Option<String>)>,
        ws: Option<WsTarget>,
    ) -> Result<Self, TransportError> {
        let local = match local {
            Some(local) => local,
            None => SocketAddr::new(local_ip_for(peer)?, 0),
        };
        match kind {
            Transport::Udp => Ok(SipSocket::Udp(UdpTransport::bind(local, 4 << 20).await?)),
            Transport::Tcp => Ok(SipSocket::Tcp(
                TcpTransport::connect(local, peer, None, None).await?,
            )),
            Transport::Ws => Ok(SipSocket::Tcp(
                TcpTransport::connect(local, peer, None, Some(ws_or_root(ws))).await?,
            )),
            Transport::Tls | Transport::Wss => {
                let tls = tls.ok_or_else(|| TransportError::Tls {
                    addr: peer,
                    reason: "no TLS configuration".into(),
                })?;
                let ws = (kind == Transport::Wss).then(|| ws_or_root(ws));
                Ok(SipSocket::Tcp(
                    TcpTransport::connect(local, peer, Some(tls), ws).await?,
                ))
            }
        }
    }

    /// How long the handshakes of the connection [`SipSocket::open`] opened took (none over
    /// UDP, or for a pool, which opens connections as it needs them).
    pub fn handshake(&self) -> HandshakeTook {
        match self {
            SipSocket::Tcp(t) => t.handshake(),
            SipSocket::Udp(_) | SipSocket::TcpPool(_) => HandshakeTook::default(),
        }
    }

    /// The kind of transport (for Via and `transport=` parameters).
    pub fn kind(&self) -> Transport {
        match self {
            SipSocket::Udp(_) => Transport::Udp,
            SipSocket::Tcp(t) if t.ws.is_some() && t.tls.is_some() => Transport::Wss,
            SipSocket::Tcp(t) if t.ws.is_some() => Transport::Ws,
            SipSocket::TcpPool(t) if t.ws.is_some() && t.tls.is_some() => Transport::Wss,
            SipSocket::TcpPool(t) if t.ws.is_some() => Transport::Ws,
            SipSocket::Tcp(t) if t.tls.is_some() => Transport::Tls,
            SipSocket::TcpPool(t) if t.tls.is_some() => Transport::Tls,
            SipSocket::Tcp(_) | SipSocket::TcpPool(_) => Transport::Tcp,
        }
    }

    /// The real local address and port, for Via and Contact.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            SipSocket::Udp(t) => t.local,
            SipSocket::Tcp(t) => t.local,
            SipSocket::TcpPool(t) => t.local,
        }
    }

    /// Send one message to `to` (over TCP: on the connection to `to`, opened when there is
    /// none yet).
    pub async fn send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        match self {
            SipSocket::Udp(t) => t.send(to, data).await,
            SipSocket::Tcp(t) => t.send_to(to, data).await,
            SipSocket::TcpPool(t) => t.send(to, data).await,
        }
    }

    /// Wait for the next message.
    ///
    /// For a [`TcpPool`], an error whose [`TransportError::flow`] is set is one
    /// connection's: the pool goes on.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        match self {
            SipSocket::Udp(t) => t.recv().await,
            SipSocket::Tcp(t) => t.recv().await,
            SipSocket::TcpPool(t) => t.recv().await,
        }
    }
}

/// A UDP socket shared by many user agents.
#[derive(Debug, Clone)]
pub struct UdpTransport {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    buf: Vec<u8>,
    /// ICMP errors read from the socket's error queue, not yet returned by `recv`.
    unreachable: Arc<std::sync::Mutex<VecDeque<(SocketAddr, Unreachable)>>>,
}

impl UdpTransport {
    /// Bind to `local` with send and receive buffers of `buffer_bytes` (the kernel may cap
    /// them at `net.core.rmem_max`/`wmem_max`).
    pub async fn bind(local: SocketAddr, buffer_bytes: usize) -> Result<Self, TransportError> {
        let bind_err = |source| TransportError::Bind {
            addr: local,
            source,
        };
        let domain = if local.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, None).map_err(bind_err)?;
        let _ = socket.set_recv_buffer_size(buffer_bytes);
        let _ = socket.set_send_buffer_size(buffer_bytes);
        socket.set_nonblocking(true).map_err(bind_err)?;
        // ICMP errors (port unreachable …) about what we send, reported on this unconnected
        // socket through its error queue: a dead peer is known at once, not after Timer B.
        let _ = if local.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv4RecvErr, &true)
        } else {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6RecvErr, &true)
        };
        socket.bind(&local.into()).map_err(bind_err)?;
        let socket = UdpSocket::from_std(socket.into()).map_err(bind_err)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket: Arc::new(socket),
            local,
            buf: vec![0; 65_536],
            unreachable: Arc::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one datagram.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        match self.socket.send_to(data, to).await {
            Ok(_) => Ok(()),
            // A pending ICMP error (about any earlier destination) fails the next send, which
            // then sent nothing: its details are read from the error queue now (the socket
            // signals it only once), and the datagram is sent again, the error consumed.
            Err(e) if is_icmp_error(&e) => {
                self.read_error_queue();
                self.socket.send_to(data, to).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Move what the socket's error queue holds into `self.unreachable`.
    fn read_error_queue(&self) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        let fd = self.socket.as_raw_fd();
        let mut queue = match self.unreachable.lock() {
            Ok(queue) => queue,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Bounded: the kernel keeps a few errors per socket; this is a guard, not a limit.
        for _ in 0..64 {
            let mut data = [0u8; 512];
            let mut iov = [io::IoSliceMut::new(&mut data)];
            let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
            let Ok(msg) = recvmsg::<SockaddrStorage>(
                fd,
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
            ) else {
                return;
            };
            let destination = msg.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                    .or_else(|| {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                    })
            });
            let Ok(cmsgs) = msg.cmsgs() else {
                continue;
            };
            for c in cmsgs {
                let (err, offender) = match c {
                    ControlMessageOwned::Ipv4RecvErr(err, from) => (
                        err,
                        from.map(|a| std::net::IpAddr::from(a.sin_addr.s_addr.to_ne_bytes())),
                    ),
                    ControlMessageOwned::Ipv6RecvErr(err, from) => (
                        err,
                        from.map(|a| std::net::IpAddr::from(a.sin6_addr.s6_addr)),
                    ),
                    _ => continue,
                };
                let Some(destination) = destination else {
                    continue;
                };
                let icmp = matches!(
                    err.ee_origin,
                    nix::libc::SO_EE_ORIGIN_ICMP | nix::libc::SO_EE_ORIGIN_ICMP6
                )
                .then_some((err.ee_type, err.ee_code));
                queue.push_back((
                    destination,
                    Unreachable {
                        errno: err.ee_errno as i32,
                        icmp,
                        offender,
                    },
                ));
            }
        }
    }

    /// Receive and parse one datagram.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        loop {
            if let Some((destination, error)) = self.take_unreachable() {
                return Ok(Incoming::Unreachable { destination, error });
            }
            let (len, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                // An ICMP error about an earlier send: its details are in the error queue.
                Err(e) if is_icmp_error(&e) => {
                    self.read_error_queue();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let data = Bytes::copy_from_slice(&self.buf[..len]);
            if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                continue; // keep-alive
            }
            return Ok(match Message::parse_datagram(data) {
                Ok(message) => Incoming::Message {
                    message: Box::new(message),
                    from,
                },
                Err(error) => Incoming::Malformed { error, from },
            });
        }
    }
}

impl UdpTransport {
    fn take_unreachable(&self) -> Option<(SocketAddr, Unreachable)> {
        match self.unreachable.lock() {
            Ok(mut queue) => queue.pop_front(),
            Err(poisoned) => poisoned.into_inner().pop_front(),
        }
    }
}

/// An error a socket reports for an ICMP error about an earlier datagram.
fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// A TCP connection to one server, framed by `Content-Length`; and connections to the other
/// destinations a dialog names (a Contact, a Record-Route), opened on first use and kept, each
/// read by a task of its own that hands what it frames to [`TcpTransport::recv`].
#[derive(Debug)]
pub struct TcpTransport {
    stream: SipStream,
    local: SocketAddr,
    peer: SocketAddr,
    framer: StreamFramer,
    buf: Vec<u8>,
    /// The write halves of the other connections, by peer.
    others: HashMap<SocketAddr, WriteHalf<SipStream>>,
    /// What their readers framed (errors included), and the sender they clone.
    from_others: mpsc::UnboundedReceiver<Result<Incoming, TransportError>>,
    to_recv: mpsc::UnboundedSender<Result<Incoming, TransportError>>,
    /// TLS over each connection, and the name the server's certificate is verified for.
    tls: Option<(TlsContext, Option<String>)>,
    /// How long the server's connection's handshakes took (from the TCP connect's start).
    handshake: HandshakeTook,
    /// WebSocket over each connection: the resource (and, for the server's, the host).
    ws: Option<WsTarget>,
    /// The server's connection has ended (reported once by [`TcpTransport::recv`]).
    closed: bool,
}

impl TcpTransport {
    /// Connect from `local` (port 0: ephemeral) to `peer`; over TLS with `tls` (its context
    /// and the name the certificate is verified for; the other destinations' are verified
    /// for their IP address).
    pub async fn connect(
        local: SocketAddr,
        peer: SocketAddr,
        tls: Option<(TlsContext, Option<String>)>,
        ws: Option<WsTarget>,
    ) -> Result<Self, TransportError> {
        let mut bound = None;
        let tcp = async {
            let socket = if peer.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }?;
            socket.bind(local).map_err(|source| TransportError::Bind {
                addr: local,
                source,
            })?;
            let stream = socket
                .connect(peer)
                .await
                .map_err(|source| TransportError::Connect { addr: peer, source })?;
            bound = Some(stream.local_addr()?);
            Ok(stream)
        };
        let (stream, handshake) = open_stream(
            tcp,
            peer,
            tls.as_ref().map(|(ctx, name)| (ctx, name.as_deref())),
            ws.as_ref(),
        )
        .await?;
        let local = bound.unwrap_or(local);
        let (to_recv, from_others) = mpsc::unbounded_channel();
        Ok(Self {
            stream,
            local,
            peer,
            framer: StreamFramer::new(),
            buf: vec![0; 65_536],
            others: HashMap::new(),
            from_others,
            to_recv,
            tls,
            handshake,
            ws,
            closed: false,
        })
    }

    /// How long the handshakes of the server's connection took, from the TCP connect's
    /// start.
    pub fn handshake(&self) -> HandshakeTook {
        self.handshake
    }

    /// Write one message to the server.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.stream.write_all(data).await?;
        // A TLS stream holds written records until flushed.
        self.stream.flush().await?;
        Ok(())
    }

    /// Write one message to `to`: the server's connection, or the one to `to`, opened from
    /// our local address (an ephemeral port) when there is none yet.
    pub async fn send_to(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        if to == self.peer {
            return self.send(data).await;
        }
        if !self.others.contains_key(&to) {
            let local = SocketAddr::new(self.local.ip(), 0);
            let tls = self.tls.as_ref().map(|(ctx, _)| (ctx.clone(), None));
            let ws = self.ws.as_ref().map(|ws| WsTarget::new(&ws.path, None));
            let other = Self::connect(local, to, tls, ws).await?;
            let (read, write) = tokio::io::split(other.stream);
            tokio::spawn(read_framed(read, to, self.to_recv.clone()));
            self.others.insert(to, write);
        }
        let write = self.others.get_mut(&to).expect("inserted above");
        let written = match write.write_all(data).await {
            Ok(()) => write.flush().await,
            failed => failed,
        };
        if let Err(e) = written {
            self.others.remove(&to);
            return Err(e.into());
        }
        Ok(())
    }

    /// Read until one whole message is framed, on any connection.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        loop {
            if let Some(framed) = self.framer.next_message() {
                return match framed {
                    Ok(message) => Ok(Incoming::Message {
                        message: Box::new(message),
                        from: self.peer,
                    }),
                    Err(source) => Err(TransportError::Stream {
                        peer: self.peer,
                        source,
                    }),
                };
            }
            tokio::select! {
                read = self.stream.read(&mut self.buf), if !self.closed => {
                    let n = match read {
                        Ok(0) => {
                            self.closed = true;
                            return Err(TransportError::Closed(self.peer));
                        }
                        Ok(n) => n,
                        Err(e) => {
                            self.closed = true;
                            return Err(read_error(self.peer, e));
                        }
                    };
                    self.framer.push(&self.buf[..n]);
                }
                Some(other) = self.from_others.recv() => {
                    if let Err(TransportError::Closed(peer)) = &other {
                        // Closed after use: forget it, a later send opens a new one.
                        self.others.remove(peer);
                        continue;
                    }
                    return other;
                }
            }
        }
    }
}

/// Read the connection to `peer` until it closes, handing each framed message (or the error
/// that ends it) to `out`.
async fn read_framed(
    mut read: ReadHalf<SipStream>,
    peer: SocketAddr,
    out: mpsc::UnboundedSender<Result<Incoming, TransportError>>,
) {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0; 65_536];
    loop {
        while let Some(framed) = framer.next_message() {
            let item = match framed {
                Ok(message) => Ok(Incoming::Message {
                    message: Box::new(message),
                    from: peer,
                }),
                Err(source) => Err(TransportError::Stream { peer, source }),
            };
            let fatal = item.is_err();
            if out.send(item).is_err() || fatal {
                return;
            }
        }
        match read.read(&mut buf).await {
            Ok(0) => {
                let _ = out.send(Err(TransportError::Closed(peer)));
                return;
            }
            Ok(n) => framer.push(&buf[..n]),
            Err(e) => {
                let _ = out.send(Err(read_error(peer, e)));
                return;
            }
        }
    }
}

/// A read error of the connection to `peer`: closed by the peer (reset, or TLS ended without
/// its close_notify) or another socket error.
fn read_error(peer: SocketAddr, e: io::Error) -> TransportError {
    // TLS refused after the handshake (TLS 1.3: a client certificate the server does not
    // take is refused by an alert once the client is done).
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        return TransportError::Tls {
            addr: peer,
            reason: crate::drive::tls::describe(&e),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            tracing::debug!(%peer, error = %e, "connection closed");
            TransportError::Closed(peer)
        }
        _ => e.into(),
    }
}

/// How long opening a TCP connection may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// TCP connections of one side of a run (RFC 3261 §18): a listening socket whose address
/// Via and Contact advertise, the connections peers open to it, and connections opened on
/// demand to any destination — one per destination, reused for every message to it
/// (requests, responses, in-dialog requests), opened again when it has dropped.
///
/// Each connection has a reader task (framing by `Content-Length`) and a writer task (so
/// that a message is written whole even if the caller of [`TcpPool::send`] is cancelled).
/// A ping (CRLF CRLF) received is answered with a pong (CRLF); the connections this pool
/// opened are pinged every keep-alive interval when there is one (RFC 5626 §4.4.1), and
/// closed when a pong takes longer than 10 s or the interval, whichever is shorter.
#[derive(Debug)]
pub struct TcpPool {
    local: SocketAddr,
    listener: tokio::net::TcpListener,
    conns: std::collections::HashMap<FlowKey, Conn>,
    events_tx: tokio::sync::mpsc::UnboundedSender<ConnEvent>,
    events_rx: tokio::sync::mpsc::UnboundedReceiver<ConnEvent>,
    next_id: u64,
    keepalive: Option<std::time::Duration>,
    /// Each user agent (the user of a request's `From`) has its own connections.
    per_ua: bool,
    /// Connections being opened: a task each, so that a caller of [`TcpPool::send`]
    /// cancelled while it waits leaves the connection to be used next time.
    connecting: std::collections::HashMap<FlowKey, Connecting>,
    /// The connection each recent request came in on, by its Via branch: its responses go
    /// back over it.
    came_in_on: std::collections::HashMap<Box<str>, FlowKey>,
    /// The user agent of the connection of the last error returned, when per UA.
    lost_ua: Option<Arc<str>>,
    /// TLS over every connection (opened and accepted).
    tls: Option<TlsContext>,
    /// The name a peer's certificate is verified for, by address (else its IP address).
    names: HashMap<SocketAddr, String>,
    /// WebSocket over every connection (RFC 7118), opened on this resource path.
    ws: Option<String>,
}

/// A TCP connection being opened, and when its connect started.
type Connecting = tokio::task::JoinHandle<Result<(TcpStream, std::time::Instant), TransportError>>;

/// A connection given to [`TcpPool::register`]: ready, or TCP whose TLS handshake (as the
/// client) is still to be done — by the connection's writer task, so that opening many
/// connections at once is not one handshake after the other.
enum Opening {
    Ready(SipStream),
    Handshake {
        tcp: TcpStream,
        tls: Option<TlsContext>,
        /// The name the peer's certificate is verified for (and the WebSocket host).
        name: Option<String>,
        /// WebSocket over the connection (after TLS, if any).
        ws: Option<WsTarget>,
        /// When its TCP connect started.
        started: std::time::Instant,
    },
}

/// A connection's peer, and its user agent when each has its own (`None`: shared, or
/// accepted).
type FlowKey = (SocketAddr, Option<Arc<str>>);

/// How many requests' connections are remembered for their responses.
const CAME_IN_ON_MAX: usize = 4096;

/// What a connection's tasks report.
#[derive(Debug)]
enum ConnEvent {
    /// An accepted connection whose TLS handshake is done.
    Accepted {
        stream: SipStream,
        peer: SocketAddr,
    },
    Message {
        key: FlowKey,
        message: Box<Message>,
    },
    KeepAlive {
        id: u64,
        key: FlowKey,
        pings: u32,
        pongs: u32,
    },
    Closed {
        id: u64,
        key: FlowKey,
        error: TransportError,
    },
}

/// One connection of a [`TcpPool`]; its tasks stop when it is dropped.
#[derive(Debug)]
struct Conn {
    id: u64,
    writer: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// Opened by the pool (not accepted).
    outgoing: bool,
    keepalive: Option<KeepAlive>,
    /// The writer: it ends once its queue is closed and written ([`TcpPool::close`]).
    write_task: Option<tokio::task::JoinHandle<()>>,
    read_task: tokio::task::AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.read_task.abort();
        if let Some(task) = &self.write_task {
            task.abort();
        }
    }
}

const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

/// The handshakes of a connection the pool opened: TLS (verifying the peer's certificate for
/// `name`), then WebSocket; recorded for the run's histograms from `started`, the TCP
/// connect's start.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsContext>,
    name: Option<String>,
    ws: Option<WsTarget>,
    started: std::time::Instant,
) -> Result<SipStream, TransportError> {
    let secure = tls.is_some();
    let stream = match tls {
        Some(tls) => {
            let stream = tls.connect(tcp, peer, name.as_deref()).await?;
            crate::drive::tls::HANDSHAKES.record(started.elapsed());
            stream
        }
        None => Box::new(tcp),
    };
    match ws {
        Some(target) => {
            let stream = crate::drive::ws::connect(stream, peer, &target, secure).await?;
            crate::drive::ws::HANDSHAKES.record(started.elapsed());
            Ok(stream)
        }
        None => Ok(stream),
    }
}

/// The handshakes of a connection accepted: TLS as the server, then WebSocket.
async fn accept_handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsContext>,
    ws: bool,
) -> Result<SipStream, TransportError> {
    let stream = match tls {
        Some(tls) => tls.accept(tcp, peer).await?,
        None => Box::new(tcp),
    };
    if ws {
        crate::drive::ws::accept(stream, peer).await
    } else {
        Ok(stream)
    }
}

impl TcpPool {
    /// Write out what is queued on every connection and close them cleanly, waiting `within`
    /// at most (a peer that reads nothing cannot hold the exit up): a response queued just
    /// before the end (the 200 OK to the last BYE) is sent, not dropped with its task.
    pub async fn close(&mut self, within: std::time::Duration) {
        let mut writers = Vec::new();
        for (_, mut conn) in self.conns.drain() {
            if let Some(task) = conn.write_task.take() {
                writers.push(task);
            }
            // Dropping the connection closes its queue (its reader is stopped).
        }
        let _ = tokio::time::timeout(within, async {
            for task in writers {
                let _ = task.await;
            }
        })
        .await;
    }

    /// Listen on `local` (port 0: ephemeral); ping the connections opened every
    /// `keepalive` when given; open connections per user agent (the user of a request's
    /// `From`) when `per_ua`, else one per destination. Within a tokio runtime.
    pub async fn bind(
        local: SocketAddr,
        keepalive: Option<std::time::Duration>,
        per_ua: bool,
    ) -> Result<Self, TransportError> {
        let listener = tokio::net::TcpListener::bind(local)
            .await
            .map_err(|source| TransportError::Bind {
                addr: local,
                source,
            })?;
        let local = listener.local_addr()?;
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            local,
            listener,
            conns: std::collections::HashMap::new(),
            events_tx,
            events_rx,
            next_id: 0,
            keepalive,
            per_ua,
            connecting: std::collections::HashMap::new(),
            came_in_on: std::collections::HashMap::new(),
            lost_ua: None,
            tls: None,
            names: HashMap::new(),
            ws: None,
        })
    }

    /// Speak WebSocket (RFC 7118) on every connection: those opened ask for the `sip`
    /// subprotocol on the resource `path`, those accepted must ask for it.
    #[must_use]
    pub fn with_ws(mut self, path: &str) -> Self {
        self.ws = Some(WsTarget::new(path, None).path);
        self
    }

    /// Speak TLS on every connection: those opened verify the peer's certificate for the
    /// name `names` gives its address (else for its IP address); those accepted need the
    /// context's server certificate (without one they are closed).
    #[must_use]
    pub fn with_tls(mut self, tls: TlsContext, names: HashMap<SocketAddr, String>) -> Self {
        self.tls = Some(tls);
        self.names = names;
        self
    }

    /// The listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one message to `to`: a response over the connection its request came in on
    /// (else any with `to`), a request over the connection open with `to` (its user
    /// agent's, when per UA); else over a new one. An error is that connection's only
    /// ([`TransportError::flow`]).
    pub async fn send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        let key = self.route(to, data);
        if !self.conns.contains_key(&key) {
            if let Err(e) = self.connect(key.clone()).await {
                self.lost_ua = key.1;
                return Err(e);
            }
        }
        let sent = self
            .conns
            .get(&key)
            .is_some_and(|c| c.writer.send(Bytes::copy_from_slice(data)).is_ok());
        if sent {
            Ok(())
        } else {
            self.conns.remove(&key);
            self.lost_ua = key.1;
            Err(TransportError::Closed(to))
        }
    }

    /// The connection a message to `to` goes over.
    fn route(&self, to: SocketAddr, data: &[u8]) -> FlowKey {
        if data.starts_with(b"SIP/2.0 ") {
            let came_in_on = top_via_branch(data).and_then(|b| self.came_in_on.get(b));
            if let Some(key) = came_in_on.filter(|k| k.0 == to && self.conns.contains_key(*k)) {
                return key.clone();
            }
            if let Some(key) = self.conns.keys().find(|k| k.0 == to) {
                return key.clone();
            }
            // That connection is gone: a new one to the Via's `received` address and
            // `sent-by` port (RFC 3261 §18.2.2), not to the old connection's source port.
            let to = via_sent_by(data).unwrap_or(to);
            if let Some(key) = self.conns.keys().find(|k| k.0 == to) {
                return key.clone();
            }
            return (to, None);
        }
        let ua = if self.per_ua {
            from_user(data).map(Arc::from)
        } else {
            None
        };
        let key = (to, ua);
        // A request to a peer that connected to us goes over its connection: its source
        // port is no listening one (RFC 3261 §18: reuse a connection to the destination).
        if key.1.is_some() && !self.conns.contains_key(&key) {
            let shared = (to, None);
            if self.conns.get(&shared).is_some_and(|c| !c.outgoing) {
                return shared;
            }
        }
        key
    }

    /// The user agent whose connection the last error returned was, when each has its own.
    pub fn take_lost_ua(&mut self) -> Option<Arc<str>> {
        self.lost_ua.take()
    }

    async fn connect(&mut self, key: FlowKey) -> Result<(), TransportError> {
        let (local, to) = (self.local, key.0);
        let task = self.connecting.entry(key.clone()).or_insert_with(|| {
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                Ok((open(local, to).await?, started))
            })
        });
        let opened = task.await;
        self.connecting.remove(&key);
        // Whatever failed (no socket to be had, a panicked task), it is this connection's.
        let (tcp, started) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e @ TransportError::Connect { .. })) => return Err(e),
            Ok(Err(e)) => {
                return Err(TransportError::Connect {
                    addr: to,
                    source: io::Error::other(e.to_string()),
                })
            }
            Err(e) => {
                return Err(TransportError::Connect {
                    addr: to,
                    source: io::Error::other(e),
                })
            }
        };
        tracing::debug!(peer = %to, ua = key.1.as_deref().unwrap_or("*"), "TCP connection opened");
        let _ = tcp.set_nodelay(true);
        let opening = match (&self.tls, &self.ws) {
            (None, None) => Opening::Ready(Box::new(tcp)),
            (tls, ws) => {
                let name = self.names.get(&to).cloned();
                Opening::Handshake {
                    tcp,
                    tls: tls.clone(),
                    ws: ws.as_deref().map(|path| WsTarget::new(path, name.clone())),
                    name,
                    started,
                }
            }
        };
        self.register(opening, key, true);
        Ok(())
    }

    /// Start the tasks of a connection and keep it (replacing one with the same peer).
    fn register(&mut self, opening: Opening, key: FlowKey, outgoing: bool) {
        let peer = key.0;
        let id = self.next_id;
        self.next_id += 1;
        let (writer, mut to_write) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let (read_half, reader) = tokio::sync::oneshot::channel::<ReadHalf<SipStream>>();
        let events = self.events_tx.clone();
        let task_key = key.clone();
        // The writer task does the TLS handshake, if any, then hands the read half over;
        // what is sent meanwhile waits in its queue.
        let write_task = tokio::spawn(async move {
            let stream = match opening {
                Opening::Ready(stream) => stream,
                Opening::Handshake {
                    tcp,
                    tls,
                    name,
                    ws,
                    started,
                } => match handshake(tcp, peer, tls, name, ws, started).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        let _ = events.send(ConnEvent::Closed {
                            id,
                            key: task_key,
                            error,
                        });
                        return;
                    }
                },
            };
            let (rd, mut wr) = tokio::io::split(stream);
            if read_half.send(rd).is_err() {
                return;
            }
            while let Some(bytes) = to_write.recv().await {
                // A TLS stream holds written records until flushed: flushed once the queue
                // is empty, so that a burst goes out in as few segments as it may.
                let written = match wr.write_all(&bytes).await {
                    Ok(()) if to_write.is_empty() => wr.flush().await,
                    done => done,
                };
                if let Err(e) = written {
                    tracing::debug!(%peer, error = %e, "TCP write failed");
                    let _ = events.send(ConnEvent::Closed {
                        id,
                        key: task_key,
                        error: TransportError::Closed(peer),
                    });
                    return;
                }
            }
            // The pool closed the connection: what was queued is written; close it cleanly
            // (FIN, after TLS's close_notify).
            let _ = wr.shutdown().await;
        });
        let events = self.events_tx.clone();
        let task_key = key.clone();
        let read_task = tokio::spawn(async move {
            let key = task_key;
            // No read half: the handshake failed, and the writer said so.
            let Ok(mut rd) = reader.await else {
                return;
            };
            let mut framer = StreamFramer::new();
            let mut buf = vec![0; 65_536];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(n) if n > 0 => n,
                    _ => {
                        let _ = events.send(ConnEvent::Closed {
                            id,
                            key,
                            error: TransportError::Closed(peer),
                        });
                        return;
                    }
                };
                framer.push(&buf[..n]);
                while let Some(framed) = framer.next_message() {
                    match framed {
                        Ok(message) => {
                            let _ = events.send(ConnEvent::Message {
                                key: key.clone(),
                                message: Box::new(message),
                            });
                        }
                        Err(source) => {
                            let _ = events.send(ConnEvent::Closed {
                                id,
                                key,
                                error: TransportError::Stream { peer, source },
                            });
                            return;
                        }
                    }
                }
                let (pings, pongs) = framer.take_keepalives();
                if pings + pongs > 0 {
                    let _ = events.send(ConnEvent::KeepAlive {
                        id,
                        key: key.clone(),
                        pings,
                        pongs,
                    });
                }
            }
        });
        let keepalive = self
            .keepalive
            .filter(|_| outgoing)
            .map(|every| KeepAlive::new(std::time::Instant::now(), every, PONG_TIMEOUT.min(every)));
        self.conns.insert(
            key,
            Conn {
                id,
                writer,
                outgoing,
                keepalive,
                write_task: Some(write_task),
                read_task: read_task.abort_handle(),
            },
        );
    }

    /// The connection of `key` if it is still the one numbered `id`.
    fn conn(&mut self, key: &FlowKey, id: u64) -> Option<&mut Conn> {
        self.conns.get_mut(key).filter(|c| c.id == id)
    }

    /// The next message from any connection, accepting connections and answering and
    /// sending keep-alives meanwhile. An error is one connection's ([`TransportError::flow`]):
    /// one this pool opened dropped, or went unanswered by pongs and was closed. Accepted
    /// connections close silently (their peer opens a new one when it needs to).
    ///
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        loop {
            let deadline = self
                .conns
                .values()
                .filter_map(|c| c.keepalive.as_ref().map(KeepAlive::poll_timeout))
                .min();
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(%peer, local = %self.local, "TCP connection accepted");
                        let _ = stream.set_nodelay(true);
                        match (&self.tls, self.ws.is_some()) {
                            (None, false) => {
                                self.register(Opening::Ready(Box::new(stream)), (peer, None), false)
                            }
                            (tls, ws) => {
                                // The handshakes in a task of their own: a slow peer holds up
                                // no other.
                                let (tls, events) = (tls.clone(), self.events_tx.clone());
                                tokio::spawn(async move {
                                    match accept_handshake(stream, peer, tls, ws).await {
                                        Ok(stream) => {
                                            let _ = events.send(ConnEvent::Accepted { stream, peer });
                                        }
                                        Err(e) => tracing::warn!(error = %e, "connection refused"),
                                    }
                                });
                            }
                        }
                    }
                    // Out of file descriptors and the like: the next accept may work.
                    Err(e) => tracing::warn!(error = %e, "cannot accept a TCP connection"),
                },
                event = self.events_rx.recv() => match event {
                    Some(ConnEvent::Accepted { stream, peer }) => {
                        tracing::debug!(%peer, "TLS connection accepted");
                        self.register(Opening::Ready(stream), (peer, None), false);
                    }
                    Some(ConnEvent::Message { key, message }) => {
                        let from = key.0;
                        if let (true, Some(branch)) = (message.is_request(), message.branch()) {
                            if self.came_in_on.len() >= CAME_IN_ON_MAX {
                                self.came_in_on.clear();
                            }
                            self.came_in_on.insert(branch.into(), key);
                        }
                        return Ok(Incoming::Message { message, from });
                    }
                    Some(ConnEvent::KeepAlive { id, key, pings, pongs }) => {
                        let peer = key.0;
                        if let Some(conn) = self.conn(&key, id) {
                            for _ in 0..pings {
                                tracing::debug!(%peer, "TCP keep-alive: ping answered");
                                let _ = conn.writer.send(Bytes::from_static(PONG));
                            }
                            if let (Some(ka), true) = (&mut conn.keepalive, pongs > 0) {
                                tracing::debug!(%peer, "TCP keep-alive: pong received");
                                ka.on_pong(std::time::Instant::now());
                            }
                        }
                    }
                    Some(ConnEvent::Closed { id, key, error }) => {
                        let peer = key.0;
                        if let Some(conn) = self.conn(&key, id) {
                            let outgoing = conn.outgoing;
                            self.conns.remove(&key);
                            if outgoing {
                                self.lost_ua = key.1;
                                return Err(error);
                            }
                            tracing::debug!(%peer, %error, "accepted TCP connection closed");
                        }
                    }
                    // The pool keeps a sender: never.
                    None => return Err(TransportError::Io(io::ErrorKind::BrokenPipe.into())),
                },
                () = crate::drive::clock::sleep_until(deadline) => {
                    let now = std::time::Instant::now();
                    let mut failed = None;
                    for (key, conn) in &mut self.conns {
                        let peer = key.0;
                        let Some(ka) = &mut conn.keepalive else { continue };
                        match ka.handle_timeout(now) {
                            Some(KeepAliveAction::SendPing) => {
                                tracing::debug!(%peer, "TCP keep-alive: ping sent");
                                let _ = conn.writer.send(Bytes::from_static(PING));
                            }
                            Some(KeepAliveAction::FlowFailed) => failed = Some(key.clone()),
                            None => {}
                        }
                    }
                    if let Some(key) = failed {
                        self.conns.remove(&key);
                        self.lost_ua = key.1;
                        return Err(TransportError::NoPong(key.0));
                    }
                }
            }
        }
    }
}

/// The user part of the `From` URI of a raw message (`"A" <sip:1001@pbx>;tag=x` → `1001`).
pub fn from_user(raw: &[u8]) -> Option<&str> {
    user_part(head_header(raw, "from", "f")?)
}

/// The `branch` of the first Via of a raw message.
fn top_via_branch(raw: &[u8]) -> Option<&str> {
    let via = head_header(raw, "via", "v")?;
    let first = via.split(',').next()?;
    first.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| value.trim())
    })
}

/// Where a response goes when the connection of its request is gone (RFC 3261 §18.2.2):
/// the top Via's `received` address (else its sent-by host), at its sent-by port (else
/// 5060). `None` unless the host is an IP address.
fn via_sent_by(raw: &[u8]) -> Option<SocketAddr> {
    let via = head_header(raw, "via", "v")?;
    let first = via.split(',').next()?;
    let mut parts = first.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?;
    let received = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("received")
            .then(|| value.trim())
    });
    let (host, port) = match sent_by.parse::<SocketAddr>() {
        Ok(addr) => (addr.ip().to_string(), addr.port()),
        Err(_) => match sent_by.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                (h.to_string(), p.parse().ok()?)
            }
            _ => (sent_by.to_string(), 5060),
        },
    };
    let host = received.unwrap_or(&host);
    let ip: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Open a TCP connection to `to`, from the address of `local` (any port).
async fn open(local: SocketAddr, to: SocketAddr) -> Result<TcpStream, TransportError> {
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    if local.is_ipv4() == to.is_ipv4() && !local.ip().is_unspecified() {
        let from = SocketAddr::new(local.ip(), 0);
        socket
            .bind(from)
            .map_err(|source| TransportError::Bind { addr: from, source })?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(TransportError::Connect { addr: to, source }),
        Err(_) => Err(TransportError::Connect {
            addr: to,
            source: io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_literals_and_names() {
        assert_eq!(
            resolve("127.0.0.1", 5060).await.unwrap(),
            "127.0.0.1:5060".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:5070", 5060).await.unwrap(),
            "[::1]:5070".parse().unwrap()
        );
        assert_eq!(
            resolve("::1", 5060).await.unwrap(),
            "[::1]:5060".parse().unwrap()
        );
        assert_eq!(resolve("localhost:5080", 5060).await.unwrap().port(), 5080);
        assert!(matches!(
            resolve("no-such-host.invalid", 5060).await,
            Err(TransportError::Resolve { .. })
        ));
    }

    #[tokio::test]
    async fn a_datagram_to_a_closed_port_comes_back_as_unreachable() {
        // A port nothing listens on (bound, noted and closed).
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let mut t = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        t.send(dead, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .await
            .unwrap();
        let incoming = tokio::time::timeout(std::time::Duration::from_secs(2), t.recv())
            .await
            .expect("the ICMP error is reported, not waited out")
            .unwrap();
        match incoming {
            Incoming::Unreachable { destination, error } => {
                assert_eq!(destination, dead);
                assert_eq!(error.icmp, Some((3, 3)), "{error}");
                assert_eq!(
                    error.to_string(),
                    "ICMP port unreachable: connection refused (reported by 127.0.0.1)"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // The socket goes on working: a datagram from a live peer still arrives.
        let mut peer = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        peer.send(t.local_addr(), b"garbage\r\n\r\n").await.unwrap();
        assert!(matches!(
            t.recv().await.unwrap(),
            Incoming::Malformed { .. }
        ));

        // An error pending when the next datagram goes to another peer: that datagram is
        // still delivered, and the error still reported.
        t.send(dead, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.send(peer.local_addr(), b"second\r\n\r\n").await.unwrap();
        let arrived = tokio::time::timeout(std::time::Duration::from_secs(2), peer.recv())
            .await
            .expect("the datagram to the live peer was sent");
        assert!(matches!(arrived.unwrap(), Incoming::Malformed { .. }));
        let incoming = tokio::time::timeout(std::time::Duration::from_secs(2), t.recv())
            .await
            .expect("the ICMP error is reported")
            .unwrap();
        assert!(
            matches!(incoming, Incoming::Unreachable { destination, .. } if destination == dead),
            "{incoming:?}"
        );
    }

    #[tokio::test]
    async fn a_port_in_use_is_a_bind_error() {
        let first = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        let err = UdpTransport::bind(first.local_addr(), 65_536)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Bind { .. }), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[tokio::test]
    async fn udp_carries_messages_and_reports_garbage() {
        let mut a = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        let b = UdpTransport::bind("[::1]:0".parse().unwrap(), 65_536).await;
        // IPv6 loopback may be disabled on some machines; IPv4 must work.
        drop(b);
        let sender = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        sender
            .send(a.local_addr(), b"garbage\r\n\r\n")
            .await
            .unwrap();
        sender
            .send(
                a.local_addr(),
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
        assert!(matches!(
            a.recv().await.unwrap(),
            Incoming::Malformed { .. }
        ));
        match a.recv().await.unwrap() {
            Incoming::Message { message, from } => {
                assert_eq!(message.status(), Some(200));
                assert_eq!(from, sender.local_addr());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod pool_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        buf
    }

    #[tokio::test]
    async fn a_peer_connecting_in_is_answered_over_its_connection_pings_with_a_pong() {
        let mut pool = TcpPool::bind("127.0.0.1:0".parse().unwrap(), None, false)
            .await
            .unwrap();
        let mut peer = TcpStream::connect(pool.local_addr()).await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.write_all(b"\r\n\r\n").await.unwrap();
        peer.write_all(OPTIONS).await.unwrap();
        let from = match pool.recv().await.unwrap() {
            Incoming::Message { message, from } => {
                assert_eq!(message.call_id(), "x");
                from
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(from, peer_addr);
        // The response goes back over the same connection, after the pong.
        pool.send(from, OK).await.unwrap();
        let (got, pool_result) = tokio::join!(read_exactly(&mut peer, 2 + OK.len()), async {
            tokio::time::timeout(Duration::from_millis(300), pool.recv()).await
        });
        assert!(pool_result.is_err(), "nothing more arrived");
        let mut expected = b"\r\n".to_vec();
        expected.extend_from_slice(OK);
        // The pong and the response are written in the order the pool handled them.
        if got.starts_with(b"\r\n") {
            assert_eq!(got, expected);
        } else {
            let mut other = OK.to_vec();
            other.extend_from_slice(b"\r\n");
            assert_eq!(got, other);
        }
    }

    #[tokio::test]
    async fn the_connection_opened_is_pinged_and_closed_when_no_pong_comes() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let mut pool = TcpPool::bind(
            "127.0.0.1:0".parse().unwrap(),
            Some(Duration::from_millis(100)),
            false,
        )
        .await
        .unwrap();
        pool.send(addr, OPTIONS).await.unwrap();
        let (mut accepted, _) = server.accept().await.unwrap();
        assert_eq!(read_exactly(&mut accepted, OPTIONS.len()).await, OPTIONS);
        // Pinged; answered once: the connection lives on.
        let err = tokio::select! {
            r = pool.recv() => r.unwrap_err(),
            ping = read_exactly(&mut accepted, 4) => {
                assert_eq!(ping, b"\r\n\r\n");
                accepted.write_all(b"\r\n").await.unwrap();
                // Not answered this time: closed after the pong timeout.
                let started = std::time::Instant::now();
                let (ping, err) = tokio::join!(read_exactly(&mut accepted, 4), async {
                    tokio::time::timeout(Duration::from_secs(5), pool.recv()).await
                });
                assert_eq!(ping, b"\r\n\r\n");
                assert!(started.elapsed() >= Duration::from_millis(100));
                err.expect("in time").unwrap_err()
            }
        };
        assert!(
            matches!(err, TransportError::NoPong(a) if a == addr),
            "{err}"
        );
        assert_eq!(err.flow(), Some(addr));
        // The pool closed it: the server reads the end of the stream.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), accepted.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        assert_eq!(n, 0, "{rest:?}");
        // The next message opens a new connection.
        pool.send(addr, OPTIONS).await.unwrap();
        let (mut again, _) = server.accept().await.unwrap();
        assert_eq!(read_exactly(&mut again, OPTIONS.len()).await, OPTIONS);
    }

    fn request(user: &str, branch: &str) -> Vec<u8> {
        format!("OPTIONS sip:s@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.1:9;rport;branch={branch}\r\nFrom: \"U\" <sip:{user}@pbx.test>;tag=1\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    fn response(branch: &str) -> Vec<u8> {
        format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch={branch}\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    #[test]
    fn the_from_user_and_the_top_via_branch_are_read_from_the_head() {
        let raw = request("1001", "z9hG4bKa");
        assert_eq!(from_user(&raw), Some("1001"));
        assert_eq!(top_via_branch(&raw), Some("z9hG4bKa"));
        assert_eq!(top_via_branch(&response("z9hG4bKb")), Some("z9hG4bKb"));
        assert_eq!(from_user(&response("x")), None);
        assert_eq!(
            via_sent_by(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1;received=127.0.0.1\r\n\r\n"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            via_sent_by(b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP [::1];branch=z9hG4bK1\r\n\r\n"),
            Some("[::1]:5060".parse().unwrap())
        );
        assert_eq!(
            via_sent_by(
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP pbx.test:5070;branch=z9hG4bK1\r\n\r\n"
            ),
            None
        );
        let compact = b"BYE sip:a@b SIP/2.0\nf: <sip:2002;x@h>;tag=2\nVia: SIP/2.0/TCP h;branch=z9hG4bKc, SIP/2.0/TCP g;branch=z9hG4bKd\n\n";
        assert_eq!(from_user(compact), Some("2002"));
        assert_eq!(top_via_branch(compact), Some("z9hG4bKc"));
    }

    #[tokio::test]
    async fn per_ua_each_user_has_its_connection_and_a_response_takes_its_requests() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let mut pool = TcpPool::bind("127.0.0.1:0".parse().unwrap(), None, true)
            .await
            .unwrap();
        let first = request("1001", "z9hG4bK1");
        let second = request("1002", "z9hG4bK2");
        pool.send(addr, &first).await.unwrap();
        let (mut a, _) = server.accept().await.unwrap();
        assert_eq!(read_exactly(&mut a, first.len()).await, first);
        pool.send(addr, &second).await.unwrap();
        let (mut b, _) = server.accept().await.unwrap();
        assert_eq!(read_exactly(&mut b, second.len()).await, second);
        // The same user again: its own connection.
        pool.send(addr, &first).await.unwrap();
        assert_eq!(read_exactly(&mut a, first.len()).await, first);
        // A request of the server's over the second connection: answered over it.
        let incoming = request("server", "z9hG4bKs");
        b.write_all(&incoming).await.unwrap();
        assert!(
            matches!(pool.recv().await.unwrap(), Incoming::Message { from, .. } if from == addr)
        );
        let answer = response("z9hG4bKs");
        pool.send(addr, &answer).await.unwrap();
        assert_eq!(read_exactly(&mut b, answer.len()).await, answer);
        // Nothing else went over the first one.
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), a.read(&mut byte))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_response_whose_connection_closed_goes_to_the_via_sent_by() {
        let mut pool = TcpPool::bind("127.0.0.1:0".parse().unwrap(), None, true)
            .await
            .unwrap();
        let listening = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sent_by = listening.local_addr().unwrap();
        let mut peer = TcpStream::connect(pool.local_addr()).await.unwrap();
        let incoming = format!("OPTIONS sip:s@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {sent_by};branch=z9hG4bKv\r\nFrom: <sip:p@pbx.test>;tag=1\r\nCall-ID: v\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        peer.write_all(incoming.as_bytes()).await.unwrap();
        let from = match pool.recv().await.unwrap() {
            Incoming::Message { from, .. } => from,
            other => panic!("{other:?}"),
        };
        drop(peer);
        // The pool sees the accepted connection close (silently: recv goes on).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.conns.keys().any(|k| k.0 == from) {
            assert!(std::time::Instant::now() < deadline, "close not seen");
            let r = tokio::time::timeout(Duration::from_millis(20), pool.recv()).await;
            assert!(r.is_err(), "{r:?}");
        }
        let answer = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP {sent_by};branch=z9hG4bKv\r\nCall-ID: v\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
        pool.send(from, answer.as_bytes()).await.unwrap();
        let (mut again, _) = listening.accept().await.unwrap();
        assert_eq!(
            read_exactly(&mut again, answer.len()).await,
            answer.as_bytes()
        );
    }

    #[tokio::test]
    async fn a_request_to_a_peer_that_connected_in_goes_over_its_connection() {
        let mut pool = TcpPool::bind("127.0.0.1:0".parse().unwrap(), None, true)
            .await
            .unwrap();
        let mut peer = TcpStream::connect(pool.local_addr()).await.unwrap();
        let invite = request("caller", "z9hG4bKi");
        peer.write_all(&invite).await.unwrap();
        let from = match pool.recv().await.unwrap() {
            Incoming::Message { from, .. } => from,
            other => panic!("{other:?}"),
        };
        // A request of one of our UAs to that address: no listening port there, so over
        // the connection the peer opened.
        let bye = request("callee", "z9hG4bKb");
        pool.send(from, &bye).await.unwrap();
        assert_eq!(read_exactly(&mut peer, bye.len()).await, bye);
    }

    #[tokio::test]
    async fn a_refused_connection_is_that_peers_error_and_a_dropped_one_is_reported() {
        let mut pool = TcpPool::bind("127.0.0.1:0".parse().unwrap(), None, false)
            .await
            .unwrap();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let err = pool.send(closed, OPTIONS).await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert_eq!(err.flow(), Some(closed));

        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        pool.send(addr, OPTIONS).await.unwrap();
        let (accepted, _) = server.accept().await.unwrap();
        drop(accepted);
        let err = tokio::time::timeout(Duration::from_secs(5), pool.recv())
            .await
            .expect("in time")
            .unwrap_err();
        assert!(
            matches!(err, TransportError::Closed(a) if a == addr),
            "{err}"
        );
    }
}
