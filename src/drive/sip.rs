//! The driver of a call [`Endpoint`]: one transport, the wall clock, and the event pump.
//!
//! The endpoint (dialogs, transactions, SDP) is the core's and never reads the clock; this
//! driver sends what it asks, hands it what arrives, wakes it at its deadline and returns its
//! events one by one. Every message can be recorded in a [`Ladder`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use sipcheck_core::sip::msg::{call_id_of, Message};
use sipcheck_core::sip::transaction::{Timer, TransactionEvent, Transmit, TxId};
use sipcheck_core::ua::call::{CallEvent, Endpoint};

use crate::drive::transport::{Incoming, SipSocket, TransportError, Unreachable};
use sipcheck_core::stats::ladder::{Direction, Ladder, RawLadder};

/// An endpoint on a transport, driven by the wall clock.
pub struct UaDriver {
    transport: SipSocket,
    endpoint: Endpoint<SocketAddr>,
    /// Every SIP message sent and received, when recording.
    pub ladder: Option<Ladder>,
    /// Datagrams that were not SIP messages.
    pub malformed: u64,
    /// A message taken from the endpoint whose send has not completed yet.
    pending: Option<Transmit<SocketAddr>>,
    /// Per-call ladders (by Call-ID), when recording them.
    call_ladders: Option<HashMap<Box<str>, RawLadder>>,
    /// The endpoint's timer, kept across events (one made per event would be registered
    /// with the runtime anew for every message), and the deadline it is set to.
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    /// The last destination reported unreachable (ICMP), and why.
    pub unreachable: Option<(SocketAddr, Unreachable)>,
    /// Destinations whose unreachability ends [`UaDriver::next_event`] with
    /// [`TransportError::Unreachable`]: those of requests of our own under way (counted).
    watched: HashMap<SocketAddr, usize>,
    /// Events that came while [`UaDriver::request`] waited, returned first by
    /// [`UaDriver::next_event`].
    deferred: std::collections::VecDeque<CallEvent<SocketAddr>>,
}

/// How a request sent through the driver ended without a final response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A transaction timer expired.
    #[error("no final response: {timer} expired after {:.1} s (is the peer reachable?)", elapsed.as_secs_f64())]
    Timeout {
        /// Which timer.
        timer: Timer,
        /// How long it ran.
        elapsed: std::time::Duration,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The request could not be sent.
    #[error("cannot send the request: {0}")]
    Refused(String),
}

impl UaDriver {
    /// Drive `endpoint` over `transport`; record a ladder when `ladder` is true. Within a
    /// tokio runtime (the driver keeps a timer of the runtime's).
    pub fn new(transport: SipSocket, endpoint: Endpoint<SocketAddr>, ladder: bool) -> Self {
        Self {
            transport,
            endpoint,
            ladder: ladder.then(|| Ladder::new(Instant::now())),
            malformed: 0,
            pending: None,
            call_ladders: None,
            timer: Box::pin(tokio::time::sleep_until(far_future().into())),
            timer_at: None,
            unreachable: None,
            watched: HashMap::new(),
            deferred: std::collections::VecDeque::new(),
        }
    }

    /// Keep a ladder per Call-ID, to be taken with [`UaDriver::take_call_ladder`] when the
    /// call ends (memory stays bounded by the calls under way).
    pub fn record_call_ladders(&mut self) {
        self.call_ladders = Some(HashMap::new());
    }

    /// The ladder of a call (empty when not recording), removed from the driver.
    pub fn take_call_ladder(&mut self, call_id: &str) -> RawLadder {
        self.call_ladders
            .as_mut()
            .and_then(|map| map.remove(call_id))
            .unwrap_or_default()
    }

    /// Keep `raw` in its call's ladder; `call_id` when known (a parsed message), else
    /// found in `raw`.
    fn record_call(
        &mut self,
        direction: Direction,
        peer: SocketAddr,
        raw: &Bytes,
        call_id: Option<&str>,
        retransmission: bool,
    ) {
        let Some(map) = &mut self.call_ladders else {
            return;
        };
        let Some(call_id) = call_id.or_else(|| call_id_of(raw)) else {
            return;
        };
        let now = Instant::now();
        let raw = raw.clone();
        match map.get_mut(call_id) {
            Some(ladder) => ladder.push(now, direction, peer, raw, retransmission),
            None => {
                let mut ladder = RawLadder::with_capacity(CALL_RUNGS);
                ladder.push(now, direction, peer, raw, retransmission);
                map.insert(call_id.into(), ladder);
            }
        }
    }

    /// The endpoint, for user operations (invite, accept, hangup …). Call
    /// [`UaDriver::next_event`] afterwards: it sends what the operation queued.
    pub fn endpoint(&mut self) -> &mut Endpoint<SocketAddr> {
        &mut self.endpoint
    }

    /// The transport.
    pub fn transport(&self) -> &SipSocket {
        &self.transport
    }

    /// After an error of one TCP connection of a pool that opens connections per user
    /// agent: whose connection it was.
    pub fn take_lost_ua(&mut self) -> Option<std::sync::Arc<str>> {
        match &mut self.transport {
            SipSocket::TcpPool(pool) => pool.take_lost_ua(),
            _ => None,
        }
    }

    /// Send everything the endpoint has queued.
    pub async fn flush(&mut self) -> Result<(), TransportError> {
        loop {
            let t = match self.pending.take() {
                Some(t) => t,
                None => match self.endpoint.poll_transmit() {
                    Some(t) => t,
                    None => return Ok(()),
                },
            };
            // Kept until sent, so that a cancelled flush resumes with it.
            self.pending = Some(t.clone());
            let sent = self.transport.send(t.destination, &t.bytes).await;
            self.pending = None;
            crate::drive::trace::on_socket(
                &self.transport,
                Direction::Sent,
                t.destination,
                &t.bytes,
                t.kind.is_retransmission(),
            );
            if let Some(ladder) = &mut self.ladder {
                ladder.record(
                    Instant::now(),
                    Direction::Sent,
                    t.destination,
                    &t.bytes,
                    t.kind.is_retransmission(),
                );
            }
            self.record_call(
                Direction::Sent,
                t.destination,
                &t.bytes,
                None,
                t.kind.is_retransmission(),
            );
            if let Err(e) = sent {
                tracing::warn!(to = %t.destination, error = %e, "send failed");
                if matches!(self.transport, SipSocket::Tcp(_) | SipSocket::TcpPool(_)) {
                    // The calls with that peer end; a REGISTER or OPTIONS of our own that
                    // could not go (the registrar restarting) is no reason to end them.
                    let own = [b"REGISTER ".as_slice(), b"OPTIONS "]
                        .iter()
                        .any(|m| t.bytes.starts_with(m));
                    if !own {
                        self.endpoint
                            .transport_failed(Instant::now(), &t.destination);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The next event, pumping the transport and the timers until there is one.
    ///
    /// Cancel-safe: it may be dropped at any `.await` (in a `select!`) without losing a
    /// message or an event (a message being sent is kept and sent first next time).
    pub async fn next_event(&mut self) -> Result<CallEvent<SocketAddr>, TransportError> {
        if let Some(event) = self.deferred.pop_front() {
            return Ok(event);
        }
        self.pump().await
    }

    /// The next event from the endpoint, pumping the transport and the timers.
    async fn pump(&mut self) -> Result<CallEvent<SocketAddr>, TransportError> {
        loop {
            self.flush().await?;
            if let Some(event) = self.endpoint.poll_event() {
                return Ok(event);
            }
            let deadline = self.endpoint.poll_timeout();
            if deadline != self.timer_at {
                self.timer_at = deadline;
                let at = deadline.unwrap_or_else(far_future);
                self.timer.as_mut().reset(at.into());
            }
            let reliable = self.transport.kind().is_reliable();
            tokio::select! {
                incoming = self.transport.recv() => match incoming? {
                    Incoming::Message { message, from } => {
                        let now = Instant::now();
                        crate::drive::trace::on_socket(&self.transport, Direction::Received, from, message.raw(), false);
                        if let Some(ladder) = &mut self.ladder {
                            ladder.record(now, Direction::Received, from, message.raw(), false);
                        }
                        if self.call_ladders.is_some() {
                            let raw = message.raw().clone();
                            let call_id = Some(message.call_id());
                            self.record_call(Direction::Received, from, &raw, call_id, false);
                        }
                        self.endpoint.handle_message(now, *message, reliable, from);
                    }
                    Incoming::Malformed { error, from } => {
                        self.malformed += 1;
                        tracing::warn!(%from, %error, "malformed datagram ignored");
                    }
                    Incoming::Unreachable { destination, error } => {
                        tracing::debug!(%destination, %error, "destination unreachable");
                        // The calls with that peer end at once (not after Timer B).
                        self.endpoint.transport_failed(Instant::now(), &destination);
                        self.unreachable = Some((destination, error.clone()));
                        if self.watched.contains_key(&destination) {
                            return Err(TransportError::Unreachable { addr: destination, error });
                        }
                    }
                },
                () = &mut self.timer, if deadline.is_some() => {
                    self.endpoint.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Send a request of our own (REGISTER, OPTIONS) and wait for its final response. Calls
    /// keep running meanwhile: their events are kept, in order, for
    /// [`UaDriver::next_event`] (a BYE or an INVITE arriving during a registration refresh
    /// is not lost).
    pub async fn request(
        &mut self,
        bytes: Vec<u8>,
        destination: SocketAddr,
    ) -> Result<Message, RequestError> {
        let tx: TxId = self
            .endpoint
            .send_request(Instant::now(), Bytes::from(bytes), destination)
            .map_err(|e| RequestError::Refused(e.to_string()))?;
        self.watch(destination);
        let result = self.wait_final(tx).await;
        self.unwatch(destination);
        result
    }

    /// Have [`UaDriver::next_event`] end with [`TransportError::Unreachable`] when an ICMP
    /// error says `destination` is unreachable (a request of ours is waiting for it; calls
    /// with it end by themselves). Counted: each `watch` wants its
    /// [`unwatch`](Self::unwatch).
    pub fn watch(&mut self, destination: SocketAddr) {
        *self.watched.entry(destination).or_default() += 1;
    }

    /// Undo one [`UaDriver::watch`].
    pub fn unwatch(&mut self, destination: SocketAddr) {
        if let Some(n) = self.watched.get_mut(&destination) {
            *n -= 1;
            if *n == 0 {
                self.watched.remove(&destination);
            }
        }
    }

    async fn wait_final(&mut self, tx: TxId) -> Result<Message, RequestError> {
        loop {
            match self.pump().await? {
                CallEvent::Transaction(TransactionEvent::Response { tx: id, message })
                    if id == tx && message.status().is_some_and(|c| c >= 200) =>
                {
                    return Ok(message)
                }
                CallEvent::Transaction(TransactionEvent::TimedOut {
                    tx: id,
                    timer,
                    elapsed,
                }) if id == tx => return Err(RequestError::Timeout { timer, elapsed }),
                // Its provisional responses and its end.
                CallEvent::Transaction(
                    TransactionEvent::Response { tx: id, .. }
                    | TransactionEvent::Terminated { tx: id },
                ) if id == tx => {}
                event => self.deferred.push_back(event),
            }
        }
    }
}

/// Room for the messages of a short call (INVITE, 180, 200, ACK, BYE, 200 and a few more)
/// in one allocation.
const CALL_RUNGS: usize = 8;

/// A deadline that never comes in practice (a day from now), for a timer with nothing to do.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86_400)
}

#[cfg(test)]
mod tests {
    use super::UaDriver;
    use crate::drive::transport::{SipSocket, UdpTransport};
    use sipcheck_core::ids::IdGen;
    use sipcheck_core::sip::msg::call_id_of;
    use sipcheck_core::sip::transport::Transport;
    use sipcheck_core::ua::call::{CallEvent, Endpoint, EndpointConfig};
    use sipcheck_core::ua::register::LocalEnd;

    /// The header line `name: …` of `msg`.
    fn header<'a>(msg: &'a str, name: &str) -> &'a str {
        msg.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_call_event_during_a_request_is_kept_for_next_event() {
        let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap(), 65_536)
            .await
            .unwrap();
        let local = LocalEnd {
            transport: Transport::Udp,
            addr: udp.local_addr(),
            routes: Vec::new(),
        };
        let endpoint = Endpoint::new(EndpointConfig::new(local.clone()), IdGen::new(1));
        let mut driver = UaDriver::new(SipSocket::Udp(udp), endpoint, false);
        let us = local.addr;

        // A registrar that, before answering the REGISTER, sends us an INVITE.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let them = peer.local_addr().unwrap();
        let script = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            let register = String::from_utf8_lossy(&buf[..n]).into_owned();
            let invite = format!(
                "INVITE sip:x@{us} SIP/2.0\r\nVia: SIP/2.0/UDP {them};branch=z9hG4bKinv1\r\n\
                 From: <sip:a@{them}>;tag=a1\r\nTo: <sip:x@{us}>\r\nCall-ID: during@test\r\n\
                 CSeq: 1 INVITE\r\nContact: <sip:a@{them}>\r\nContent-Length: 0\r\n\r\n"
            );
            peer.send_to(invite.as_bytes(), from).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            let ok = format!(
                "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=r1\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                header(&register, "Via:"),
                header(&register, "From:"),
                header(&register, "To:"),
                header(&register, "Call-ID:"),
                header(&register, "CSeq:"),
            );
            peer.send_to(ok.as_bytes(), from).unwrap();
        });
        let register = format!(
            "REGISTER sip:{them} SIP/2.0\r\nVia: SIP/2.0/UDP {us};branch=z9hG4bKreg1;rport\r\n\
             From: <sip:u@{them}>;tag=u1\r\nTo: <sip:u@{them}>\r\nCall-ID: reg@test\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:u@{us}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        );
        let response = driver.request(register.into_bytes(), them).await.unwrap();
        assert_eq!(response.status(), Some(200));
        script.join().unwrap();
        // The INVITE that came meanwhile is not lost.
        match driver.next_event().await.unwrap() {
            CallEvent::Incoming { from, .. } => {
                assert_eq!(&*from, format!("<sip:a@{them}>;tag=a1"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_call_id_is_found_in_the_head_in_either_form() {
        let long =
            b"INVITE sip:a@b:5060 SIP/2.0\r\nVia: SIP/2.0/UDP h:5060\r\nCALL-id :  x1@h \r\n\r\n";
        assert_eq!(call_id_of(long), Some("x1@h"));
        let compact = b"SIP/2.0 200 OK\r\ni: y2\r\nCSeq: 1 BYE\r\n\r\n";
        assert_eq!(call_id_of(compact), Some("y2"));
        // Bare line feeds, as some peers send.
        assert_eq!(
            call_id_of(b"BYE sip:a@b SIP/2.0\ncall-id: z3\n\n"),
            Some("z3")
        );
        // Not in the head: a body line is not a header.
        let body = b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\ni: not-a-header\r\n";
        assert_eq!(call_id_of(body), None);
        assert_eq!(call_id_of(b"garbage"), None);
    }
}
