//! SIP transports: one shared UDP socket, or TCP connections, over IPv4 or IPv6.
//!
//! The transport only moves bytes and frames messages; everything else (matching responses to
//! transactions by branch, retransmission, timers) happens in the sans-IO core. One UDP socket
//! serves every user agent of a run: the transaction layer routes what arrives by Via branch.
//! TLS will be a third variant of [`Transport`] with the same framing as TCP.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use sipcheck_core::sip::build::Transport as Kind;
use sipcheck_core::sip::msg::{Message, ParseError, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

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
    /// A TCP connection to a server, and one to each other destination a dialog names.
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

    /// Send one message to `to` (over TCP: on the connection to `to`, opened when there is
    /// none yet).
    pub async fn send(&mut self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        match self {
            Transport::Udp(t) => t.send(to, data).await,
            Transport::Tcp(t) => t.send_to(to, data).await,
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
        socket.bind(&local.into()).map_err(bind_err)?;
        let socket = UdpSocket::from_std(socket.into()).map_err(bind_err)?;
        let local = socket.local_addr()?;
        Ok(Self {
            socket: Arc::new(socket),
            local,
            buf: vec![0; 65_536],
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send one datagram.
    pub async fn send(&self, to: SocketAddr, data: &[u8]) -> Result<(), TransportError> {
        self.socket.send_to(data, to).await?;
        Ok(())
    }

    /// Receive and parse one datagram.
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        loop {
            let (len, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                // An ICMP port unreachable from an earlier send surfaces here on some systems:
                // the transaction's timer reports the failure, so keep receiving.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
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

/// A TCP connection to one server, framed by `Content-Length`; and connections to the other
/// destinations a dialog names (a Contact, a Record-Route), opened on first use and kept, each
/// read by a task of its own that hands what it frames to [`TcpTransport::recv`].
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    framer: StreamFramer,
    buf: Vec<u8>,
    /// The write halves of the other connections, by peer.
    others: HashMap<SocketAddr, OwnedWriteHalf>,
    /// What their readers framed (errors included), and the sender they clone.
    from_others: mpsc::UnboundedReceiver<Result<Incoming, TransportError>>,
    to_recv: mpsc::UnboundedSender<Result<Incoming, TransportError>>,
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
        })
    }

    /// Write one message to the server.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.stream.write_all(data).await?;
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
            let other = Self::connect(local, to).await?;
            let (read, write) = other.stream.into_split();
            tokio::spawn(read_framed(read, to, self.to_recv.clone()));
            self.others.insert(to, write);
        }
        let write = self.others.get_mut(&to).expect("inserted above");
        if let Err(e) = write.write_all(data).await {
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
                read = self.stream.read(&mut self.buf) => {
                    let n = read?;
                    if n == 0 {
                        return Err(TransportError::Closed(self.peer));
                    }
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
    mut read: OwnedReadHalf,
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
                let _ = out.send(Err(e.into()));
                return;
            }
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
