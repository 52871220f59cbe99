//! The SIP side of every driver of the core's agent (`run`'s roles, `answer`, `call`): one
//! socket between the agent and the network.
//!
//! What arrives is handed to the agent (each message traced, and kept in the ladder when one
//! is kept); an ICMP error ends at once the calls and the REGISTERs to the destination it
//! names; what the agent asks is sent the same way. What a driver does when its transport
//! fails is its own (a run goes on, a probe fails): [`Wire::send`] reports the failure.

use std::net::SocketAddr;
use std::time::Instant;

use sipcheck_core::sip::transaction::Transmit;
use sipcheck_core::stats::ladder::{Direction, Ladder};
use sipcheck_core::ua::agent::Agent;

use crate::drive::transport::{Incoming, SipSocket, TransportError, Unreachable};

/// A datagram the agent asked for that could not be sent over a connection.
#[derive(Debug)]
pub(crate) struct SendFailed {
    /// Where it was going.
    pub(crate) destination: SocketAddr,
    /// Whether it was a REGISTER of our own (its failure is the registration's, not the
    /// calls').
    pub(crate) register: bool,
    /// Why.
    pub(crate) error: TransportError,
}

/// An agent's socket.
pub(crate) struct Wire {
    /// The socket.
    pub(crate) socket: SipSocket,
    /// Every message sent and received, when kept.
    pub(crate) ladder: Option<Ladder>,
    /// The last destination an ICMP error named, and what it said.
    pub(crate) unreachable: Option<(SocketAddr, Unreachable)>,
    /// Datagrams that were not SIP messages.
    pub(crate) malformed: u64,
}

impl Wire {
    /// `socket`, keeping every message in `ladder` when there is one.
    pub(crate) fn new(socket: SipSocket, ladder: Option<Ladder>) -> Self {
        Self {
            socket,
            ladder,
            unreachable: None,
            malformed: 0,
        }
    }

    /// Hand what arrived to `agent`: a message (traced, in the ladder), an ICMP error (the
    /// calls with that destination end at once, not after Timer B, and so do the REGISTERs
    /// to it, not after Timer F), a datagram that is no SIP message (counted, dropped).
    pub(crate) fn deliver(&mut self, agent: &mut Agent<SocketAddr>, incoming: Incoming) {
        let now = Instant::now();
        match incoming {
            Incoming::Message { message, from } => {
                crate::drive::trace::on_socket(
                    &self.socket,
                    Direction::Received,
                    from,
                    message.raw(),
                    false,
                );
                crate::drive::capture::on_socket(
                    &self.socket,
                    Direction::Received,
                    from,
                    message.raw(),
                    || sipcheck_core::sip::msg::call_message_id(message.raw()).map(str::to_owned),
                );
                if let Some(ladder) = &mut self.ladder {
                    ladder.record(now, Direction::Received, from, message.raw(), false);
                }
                let reliable = self.socket.kind().is_reliable();
                agent.handle_message(now, *message, reliable, from);
            }
            Incoming::Malformed { error, from } => {
                self.malformed += 1;
                tracing::warn!(%from, %error, "malformed datagram ignored");
            }
            Incoming::Unreachable { destination, error } => {
                tracing::debug!(%destination, %error, "destination unreachable");
                self.unreachable = Some((destination, error.clone()));
                let why = TransportError::Unreachable {
                    addr: destination,
                    error,
                }
                .to_string();
                agent.transport_failed(now, &destination);
                agent.requests_failed(now, &destination, None, &why);
            }
        }
    }

    /// Send everything `agent` has to send (each message traced, in the ladder); whether
    /// anything was. Over a connection, a send that fails ends the calls with its
    /// destination (a REGISTER that could not go is no reason to end them) and is returned;
    /// the rest waits for the next call. Over UDP a send error is only logged (an ICMP error
    /// comes back on its own).
    pub(crate) async fn send(&mut self, agent: &mut Agent<SocketAddr>) -> Result<bool, SendFailed> {
        let mut sent_any = false;
        while let Some(t) = agent.poll_transmit() {
            sent_any = true;
            if let Err(error) = self.send_one(&t).await {
                tracing::warn!(to = %t.destination, %error, "send failed");
                if self.socket.kind().is_reliable() {
                    let register = t.bytes.starts_with(b"REGISTER ");
                    if !register {
                        let why = error.to_string();
                        agent.flow_failed(Instant::now(), &t.destination, None, &why);
                    }
                    return Err(SendFailed {
                        destination: t.destination,
                        register,
                        error,
                    });
                }
            }
        }
        Ok(sent_any)
    }

    async fn send_one(&mut self, t: &Transmit<SocketAddr>) -> Result<(), TransportError> {
        let sent = self.socket.send(t.destination, &t.bytes).await;
        let retransmission = t.kind.is_retransmission();
        crate::drive::trace::on_socket(
            &self.socket,
            Direction::Sent,
            t.destination,
            &t.bytes,
            retransmission,
        );
        if sent.is_ok() {
            crate::drive::capture::on_socket(
                &self.socket,
                Direction::Sent,
                t.destination,
                &t.bytes,
                || sipcheck_core::sip::msg::call_message_id(&t.bytes).map(str::to_owned),
            );
        }
        if let Some(ladder) = &mut self.ladder {
            ladder.record(
                Instant::now(),
                Direction::Sent,
                t.destination,
                &t.bytes,
                retransmission,
            );
        }
        sent
    }
}
