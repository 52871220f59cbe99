//! SIP over WebSocket (RFC 7118): the TCP (or TLS, for `wss`) streams of
//! [`crate::drive::transport`] upgraded by an HTTP handshake asking for the `sip`
//! subprotocol, then carrying one SIP message per WebSocket message.
//!
//! [`WsStream`] turns a WebSocket connection back into the byte stream the TCP transport
//! frames, so that everything above it (connection reuse, the framer, the parser) is TCP's:
//! each message written (one `write`, as the transports write a whole message at once) goes
//! out as one WebSocket text message (binary when it is not UTF-8); each WebSocket message
//! read is handed to the framer whole, with a `Content-Length` added when it has none
//! ([`frame_for_stream`]). The CRLF keep-alives of RFC 5626 become WebSocket pings and pongs
//! (RFC 6455 §5.5.2): a ping written goes out as a WebSocket ping, a WebSocket pong read
//! arrives as a CRLF pong, and WebSocket pings are answered by tungstenite itself.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream as _};
use sipcheck_core::sip::msg::frame_for_stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::drive::tls::SipStream;
use crate::drive::transport::TransportError;

/// The subprotocol of SIP over WebSocket (RFC 7118 §4.1).
pub const SUBPROTOCOL: &str = "sip";

/// How long the WebSocket handshake may take once TCP (and TLS) is up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a WebSocket connection is opened: the resource and the host the HTTP request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    /// The resource path (`/` by default; `--ws-path`).
    pub path: String,
    /// The host of the URI (a name, or an IP literal; `None`: the peer's address).
    pub host: Option<String>,
}

impl WsTarget {
    /// `path`, made absolute, for `host`.
    #[must_use]
    pub fn new(path: &str, host: Option<String>) -> Self {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Self { path, host }
    }

    /// The URL of the handshake's request to `peer` (`ws://host:port/path`, `wss://` over
    /// TLS).
    #[must_use]
    pub fn url(&self, peer: SocketAddr, secure: bool) -> String {
        let host = match &self.host {
            Some(host) => sipcheck_core::sip::uri::host_literal(host).into_owned(),
            None => sipcheck_core::sip::uri::uri_host(peer.ip()),
        };
        let scheme = if secure { "wss" } else { "ws" };
        format!("{scheme}://{host}:{}{}", peer.port(), self.path)
    }
}

fn ws_error(addr: SocketAddr, reason: impl Into<String>) -> TransportError {
    TransportError::WebSocket {
        addr,
        reason: reason.into(),
    }
}

/// The WebSocket handshake as the client over `stream` (TCP or TLS) to `peer`, asking for
/// the `sip` subprotocol: a server that does not grant it, answers with another HTTP status
/// than 101, or speaks no HTTP fails naming what it did.
pub async fn connect(
    stream: SipStream,
    peer: SocketAddr,
    target: &WsTarget,
    secure: bool,
) -> Result<SipStream, TransportError> {
    let url = target.url(peer, secure);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ws_error(peer, format!("{url} is no WebSocket URL: {e}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config()));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok((ws, _response))) => Ok(Box::new(WsStream::new(ws))),
        Ok(Err(e)) => Err(ws_error(peer, describe(&e, &url))),
        Err(_) => Err(ws_error(
            peer,
            format!("no handshake within {HANDSHAKE_TIMEOUT:?} (is {url} a WebSocket server?)"),
        )),
    }
}

/// The WebSocket handshake as the server over an accepted `stream`: a client that does not
/// offer the `sip` subprotocol is refused (HTTP 400).
pub async fn accept(stream: SipStream, peer: SocketAddr) -> Result<SipStream, TransportError> {
    let check = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offers_sip = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !offers_sip {
            let mut refusal = ErrorResponse::new(Some(
                "the sip subprotocol (Sec-WebSocket-Protocol: sip) is required".into(),
            ));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            return Err(refusal);
        }
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config()));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => Ok(Box::new(WsStream::new(ws))),
        Ok(Err(e)) => Err(ws_error(peer, describe(&e, "the connection"))),
        Err(_) => Err(ws_error(
            peer,
            format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
        )),
    }
}

/// WebSocket handshake durations of the process (from the TCP connect's start to the
/// upgrade's end, TLS included), for the run's `ws_handshake` histogram.
pub static HANDSHAKES: crate::drive::transport::HandshakeTimes =
    crate::drive::transport::HandshakeTimes::new();

fn config() -> WebSocketConfig {
    // A SIP message is at most what the framer takes; no larger WebSocket message is read.
    WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// A handshake error in words: what the server did instead of granting `sip`.
fn describe(e: &tungstenite::Error, url: &str) -> String {
    use tungstenite::error::{ProtocolError, SubProtocolError};
    match e {
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(sub)) => match sub
        {
            SubProtocolError::NoSubProtocol => format!(
                "{url} did not accept the sip subprotocol (its 101 response has no \
                     Sec-WebSocket-Protocol: sip; RFC 7118 §4.1)"
            ),
            SubProtocolError::InvalidSubProtocol
            | SubProtocolError::ServerSentSubProtocolNoneRequested => {
                format!("{url} chose another subprotocol than sip (RFC 7118 §4.1)")
            }
        },
        tungstenite::Error::Http(response) => {
            let status = response.status();
            format!(
                "{url} answered the WebSocket handshake with HTTP {} {} (no upgrade to \
                 WebSocket)",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        }
        tungstenite::Error::Protocol(
            ProtocolError::HandshakeIncomplete
            | ProtocolError::WrongHttpVersion
            | ProtocolError::HttparseError(_),
        )
        | tungstenite::Error::HttpFormat(_) => {
            format!("{url} answered no HTTP (is it a WebSocket server?)")
        }
        tungstenite::Error::Protocol(p) => format!("{url}: {p}"),
        tungstenite::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            format!("{url} closed the connection during the handshake (is it a WebSocket server?)")
        }
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            format!("{url} closed the connection during the handshake (is it a WebSocket server?)")
        }
        other => format!("{url}: {other}"),
    }
}

/// A WebSocket connection as a byte stream of SIP messages (see the module's notes).
pub struct WsStream {
    ws: WebSocketStream<SipStream>,
    /// What was read and not yet handed out.
    pending: VecDeque<u8>,
    /// The WebSocket connection has ended (close received, or its stream ended).
    ended: bool,
}

impl fmt::Debug for WsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsStream")
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl WsStream {
    fn new(ws: WebSocketStream<SipStream>) -> Self {
        Self {
            ws,
            pending: VecDeque::new(),
            ended: false,
        }
    }
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::from(io::ErrorKind::BrokenPipe)
        }
        other => io::Error::other(other),
    }
}

/// The CRLF keep-alives of RFC 5626 §4.4.1, as the TCP transport writes them.
const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

impl AsyncRead for WsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.remaining().min(self.pending.len());
                let (a, b) = self.pending.as_slices();
                let from_a = n.min(a.len());
                buf.put_slice(&a[..from_a]);
                buf.put_slice(&b[..n - from_a]);
                self.pending.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let frame: Vec<u8> = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => {
                    self.ended = true;
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                Some(Ok(Message::Text(text))) => frame_for_stream(text.as_bytes()).into_owned(),
                Some(Ok(Message::Binary(data))) => frame_for_stream(&data).into_owned(),
                Some(Ok(Message::Pong(_))) => PONG.to_vec(),
                // Answered by tungstenite.
                Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
            };
            self.pending.extend(frame);
        }
    }
}

impl AsyncWrite for WsStream {
    /// One write is one SIP message: one WebSocket message.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let message = if data == PING {
            Message::Ping(Default::default())
        } else if data == PONG {
            // A CRLF pong answers a CRLF ping, which no WebSocket peer sends.
            return Poll::Ready(Ok(data.len()));
        } else {
            match std::str::from_utf8(data) {
                Ok(text) => Message::text(text),
                Err(_) => Message::binary(data.to_vec()),
            }
        };
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(to_io)?;
        ws.start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    /// A WebSocket close (RFC 6455 §5.5.1), then the stream's own shutdown.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const OPTIONS: &str = "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS 127.0.0.1:9;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn the_url_names_the_host_port_and_path() {
        let peer: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            WsTarget::new("ws", None).url(peer, false),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            WsTarget::new("/", Some("pbx.test".into())).url(peer, true),
            "wss://pbx.test:8080/"
        );
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(WsTarget::new("/", None).url(v6, true), "wss://[::1]:443/");
    }

    async fn pair() -> (SipStream, SipStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.unwrap();
            accept(Box::new(tcp), peer).await.unwrap()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let client = connect(Box::new(tcp), addr, &WsTarget::new("/", None), false)
            .await
            .unwrap();
        (client, server.await.unwrap())
    }

    #[tokio::test]
    async fn each_write_is_one_websocket_message_and_reads_back_as_the_same_bytes() {
        let (mut client, mut server) = pair().await;
        client.write_all(OPTIONS.as_bytes()).await.unwrap();
        client.write_all(OPTIONS.as_bytes()).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0; 2 * OPTIONS.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [OPTIONS.as_bytes(), OPTIONS.as_bytes()].concat());
        // A ping written becomes a WebSocket ping; its pong reads as a CRLF pong.
        client.write_all(PING).await.unwrap();
        client.flush().await.unwrap();
        let reading = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let _ = server.read(&mut byte).await;
        });
        let mut pong = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut pong))
            .await
            .expect("pong in time")
            .unwrap();
        assert_eq!(&pong, PONG);
        reading.abort();
    }

    #[tokio::test]
    async fn a_pool_over_ws_pings_with_websocket_pings_and_lives_on_their_pongs() {
        use crate::drive::transport::{Incoming, TcpPool, TransportError};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut pool = TcpPool::bind(
            "127.0.0.1:0".parse().unwrap(),
            Some(Duration::from_millis(300)),
            false,
        )
        .await
        .unwrap()
        .with_ws("/sip");
        pool.send(addr, OPTIONS.as_bytes()).await.unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let mut server = accept(Box::new(tcp), peer).await.unwrap();
        let mut got = vec![0; OPTIONS.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, OPTIONS.as_bytes());
        // The server reads (tungstenite answers each ping with a pong) and answers the
        // OPTIONS after several keep-alive intervals: the connection is still there.
        let serving = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_millis(1300), server.read(&mut byte)).await;
            let answer = OPTIONS.replace("OPTIONS sip:a@127.0.0.1 SIP/2.0", "SIP/2.0 200 OK");
            server.write_all(answer.as_bytes()).await.unwrap();
            server.flush().await.unwrap();
            // Then it reads no more: pings go unanswered.
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(server);
        });
        match tokio::time::timeout(Duration::from_secs(5), pool.recv()).await {
            Ok(Ok(Incoming::Message { message, from })) => {
                assert_eq!(message.status(), Some(200));
                assert_eq!(from, addr);
            }
            other => panic!("{other:?}"),
        }
        let err = tokio::time::timeout(Duration::from_secs(5), pool.recv())
            .await
            .expect("in time")
            .unwrap_err();
        assert!(
            matches!(err, TransportError::NoPong(a) if a == addr),
            "{err}"
        );
        serving.abort();
    }

    #[tokio::test]
    async fn a_server_without_the_sip_subprotocol_is_refused_by_name() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // A WebSocket server that grants no subprotocol.
            let _ws = tokio_tungstenite::accept_async(tcp).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = connect(Box::new(tcp), addr, &WsTarget::new("/", None), false)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("did not accept the sip subprotocol"),
            "{text}"
        );
        assert_eq!(err.flow(), Some(addr));
    }

    #[tokio::test]
    async fn a_client_without_the_sip_subprotocol_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.unwrap();
            accept(Box::new(tcp), peer).await
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let client = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await;
        assert!(client.is_err());
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_server_that_is_no_websocket_server_is_named_so() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = connect(Box::new(tcp), addr, &WsTarget::new("/", None), false)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("WebSocket handshake"), "{text}");
        assert!(
            text.contains("no HTTP") || text.contains("closed the connection"),
            "{text}"
        );
    }
}
