//! SIP transports: one shared UDP socket, or a TCP connection, over IPv4 or IPv6.
//!
//! The transport only moves bytes and frames messages; everything else (matching responses to
//! transactions by branch, retransmission, timers) happens in the sans-IO core. One UDP socket
//! serves every user agent of a run: the transaction layer routes what arrives by Via branch.
//! TLS will be a third variant of [`Transport`] with the same framing as TCP.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use sipcheck_core::sip::build::Transport as Kind;
use sipcheck_core::sip::msg::{Message, ParseError, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

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
pub enum Transport {
    /// One UDP socket shared by every user agent.
    Udp(UdpTransport),
    /// One TCP connection to a server.
    Tcp(TcpTransport),
}

impl Transport {
    /// Open a transport of `kind` towards `peer`, bound to `local` when given (else to the
    /// address the kernel routes to `peer` from, on an ephemeral port).
    pub async fn open(
        kind: Kind,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<Self, TransportError> {
        let local = match local {
            Some(local) => local,
            None => SocketAddr::new(local_ip_for(peer)?, 0),
        };
        match kind {
            Kind::Udp => Ok(Transport::Udp(UdpTransport::bind(local, 4 << 20).await?)),
            Kind::Tcp | Kind::Tls => Ok(Transport::Tcp(TcpTransport::connect(local, peer).await?)),
        }
    }

    /// The kind of transport (for Via and `transport=` parameters).
    pub fn kind(&self) -> Kind {
        match self {
            Transport::Udp(_) => Kind::Udp,
            Transport::Tcp(_) => Kind::Tcp,
        }
    }

    /// The real local address and port, for Via and Contact.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Transport::Udp(t) => t.local,
            Transport::Tcp(t) => t.local,
        }
    }

    /// Send one message to `to` (ignored for TCP, which has one peer).
    pub async fn send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        match self {
            Transport::Udp(t) => t.send(to, data).await,
            Transport::Tcp(t) => t.send(data).await,
        }
    }

    /// Wait for the next message.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        match self {
            Transport::Udp(t) => t.recv().await,
            Transport::Tcp(t) => t.recv().await,
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

/// A TCP connection to one server, framed by `Content-Length`.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    framer: StreamFramer,
    buf: Vec<u8>,
}

impl TcpTransport {
    /// Connect from `local` (port 0: ephemeral) to `peer`.
    pub async fn connect(local: SocketAddr, peer: SocketAddr) -> Result<Self, TransportError> {
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
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(Self {
            stream,
            local,
            peer,
            framer: StreamFramer::new(),
            buf: vec![0; 65_536],
        })
    }

    /// Write one message.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.stream.write_all(data).await?;
        Ok(())
    }

    /// Read until one whole message is framed.
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
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(TransportError::Closed(self.peer));
            }
            self.framer.push(&self.buf[..n]);
        }
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
