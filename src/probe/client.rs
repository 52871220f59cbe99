//! A small driver for one-off probes: one transport, one transaction layer, one request at a
//! time. It is the only place here that reads the clock; the state machines get `now`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipcheck_core::ids::IdGen;
use sipcheck_core::sip::msg::Message;
use sipcheck_core::sip::transaction::{
    Timer, TimerConfig, TransactionError, TransactionEvent, TransactionLayer, TxId,
};

use crate::drive::clock::sleep_until;
use crate::drive::transport::{Incoming, SipSocket, TransportError, Unreachable};
use sipcheck_core::stats::ladder::{Direction, Ladder};

/// How a transaction ended without a final response.
#[derive(Debug, thiserror::Error)]
pub enum TransactError {
    /// A transaction timer expired (Timer B for INVITE, F otherwise).
    #[error("no final response: Timer {timer:?} expired after {:.1} s (is the peer reachable?)", elapsed.as_secs_f64())]
    Timeout {
        /// Which timer.
        timer: Timer,
        /// Time since the request was first sent.
        elapsed: Duration,
    },
    /// The next hop is unreachable: an ICMP error came back (port unreachable …).
    #[error("no final response: {addr} is unreachable: {error}")]
    Unreachable {
        /// The next hop.
        addr: SocketAddr,
        /// What the ICMP error said.
        error: Unreachable,
    },
    /// The overall limit (`--timeout`) was reached.
    #[error("no final response within --timeout {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The request could not start a transaction (a bug in sipcheck's request writer).
    #[error("cannot send the request: {0}")]
    Request(TransactionError),
}

/// The outcome of one request: its final response and the round-trip time from the first
/// transmission to the final response.
#[derive(Debug)]
pub struct Exchange {
    /// The final response.
    pub response: Message,
    /// First send to final response.
    pub rtt: Duration,
}

/// One transport plus a transaction layer, driven by the wall clock.
pub struct Client {
    transport: SipSocket,
    layer: TransactionLayer<SocketAddr>,
    next_hop: SocketAddr,
    /// The ladder of everything sent and received.
    pub ladder: Ladder,
    /// Identifier source (seeded from the OS).
    pub ids: IdGen,
    /// Malformed datagrams received (counted, not fatal).
    pub malformed: u64,
    /// The overall limit and when it is reached (`--timeout`).
    deadline: Option<(Duration, Instant)>,
}

impl Client {
    /// A client sending every request to `next_hop` over `transport`.
    pub fn new(transport: SipSocket, next_hop: SocketAddr, timers: TimerConfig) -> Self {
        Self {
            transport,
            layer: TransactionLayer::new(timers),
            next_hop,
            ladder: Ladder::new(Instant::now()),
            ids: IdGen::new(os_seed()),
            malformed: 0,
            deadline: None,
        }
    }

    /// Give up on every request once `limit` has passed from now.
    pub fn set_timeout(&mut self, limit: Option<Duration>) {
        self.deadline = limit.map(|limit| (limit, Instant::now() + limit));
    }

    /// Leave at least `grace` from now before the limit (when there is one): for cleaning up
    /// (removing a binding) once the work is done, so that a limit reached just then does not
    /// leave state behind at the peer.
    pub fn extend_timeout(&mut self, grace: Duration) {
        if let Some((_, at)) = &mut self.deadline {
            *at = (*at).max(Instant::now() + grace);
        }
    }

    /// The transport (for its local address and kind).
    pub fn transport(&self) -> &SipSocket {
        &self.transport
    }

    /// Send `request` in a client transaction and wait for its final response.
    pub async fn transact(&mut self, request: Vec<u8>) -> Result<Exchange, TransactError> {
        let started = Instant::now();
        let reliable = self.transport.kind().is_reliable();
        let tx = self
            .layer
            .send_request_bytes(started, Bytes::from(request), reliable, self.next_hop)
            .map_err(TransactError::Request)?;
        loop {
            self.flush().await?;
            if let Some(done) = self.take_final(tx, started)? {
                return Ok(done);
            }
            let deadline = self.layer.poll_timeout();
            if let Some((limit, at)) = self.deadline {
                if Instant::now() >= at {
                    let _ = self.layer.abandon(tx);
                    return Err(TransactError::Deadline(limit));
                }
            }
            let overall = self.deadline.map(|(_, at)| at);
            tokio::select! {
                incoming = self.transport.recv() => {
                    let now = Instant::now();
                    match incoming? {
                        Incoming::Message { message, from } => {
                            crate::drive::trace::on_socket(&self.transport, Direction::Received, from, message.raw(), false);
                            self.ladder.record(now, Direction::Received, from, message.raw(), false);
                            self.layer.handle_message(now, *message, reliable, from);
                        }
                        Incoming::Malformed { error, from } => {
                            self.malformed += 1;
                            tracing::warn!(%from, %error, "malformed datagram ignored");
                        }
                        Incoming::Unreachable { destination, error } => {
                            if destination == self.next_hop {
                                let _ = self.layer.abandon(tx);
                                return Err(TransactError::Unreachable { addr: destination, error });
                            }
                        }
                    }
                }
                _ = sleep_until(overall) => {}
                _ = sleep_until(deadline) => {
                    self.layer.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// Send what the transaction layer wants sent, recording it in the ladder.
    async fn flush(&mut self) -> Result<(), TransportError> {
        while let Some(transmit) = self.layer.poll_transmit() {
            self.ladder.record(
                Instant::now(),
                Direction::Sent,
                transmit.destination,
                &transmit.bytes,
                transmit.kind.is_retransmission(),
            );
            crate::drive::trace::on_socket(
                &self.transport,
                Direction::Sent,
                transmit.destination,
                &transmit.bytes,
                transmit.kind.is_retransmission(),
            );
            self.transport
                .send(transmit.destination, &transmit.bytes)
                .await?;
        }
        Ok(())
    }

    fn take_final(
        &mut self,
        tx: TxId,
        started: Instant,
    ) -> Result<Option<Exchange>, TransactError> {
        while let Some(event) = self.layer.poll_event() {
            match event {
                TransactionEvent::Response { tx: id, message }
                    if id == tx && message.status().is_some_and(|c| c >= 200) =>
                {
                    return Ok(Some(Exchange {
                        rtt: Instant::now().saturating_duration_since(started),
                        response: message,
                    }));
                }
                TransactionEvent::TimedOut {
                    tx: id,
                    timer,
                    elapsed,
                } if id == tx => return Err(TransactError::Timeout { timer, elapsed }),
                _ => {}
            }
        }
        Ok(None)
    }
}

pub use crate::drive::os_seed;
