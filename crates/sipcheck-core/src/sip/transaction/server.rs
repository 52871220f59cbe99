//! Server transactions, RFC 3261 §17.2: the INVITE machine (§17.2.1) and the non-INVITE
//! machine (§17.2.2).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{
    status_of, Absorbed, Actions, Outgoing, Report, SendKind, TransactionError, TransactionKind,
};
use crate::sip::msg::{Message, Method};

/// The states of a server transaction (RFC 3261 Figures 7 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE request received, nothing sent yet (§17.2.2).
    Trying,
    /// INVITE received (§17.2.1), or a provisional response sent.
    Proceeding,
    /// A final response sent (non-2xx for INVITE); waiting for the ACK (INVITE, Timers G
    /// and H) or out request retransmissions (non-INVITE, Timer J).
    Completed,
    /// INVITE only: the ACK arrived; absorbing its retransmissions (Timer I).
    Confirmed,
    /// Done: the owner may drop the transaction.
    Terminated,
}

/// A server transaction: one request received, the responses sent to it, their
/// retransmissions, and (INVITE) the ACK of a non-2xx final response.
///
/// Following RFC 3261 §17.2.1, a 2xx to an INVITE ends the transaction at once; the UAS core
/// retransmits the 2xx itself, with a [`Uas2xxRetransmitter`](super::Uas2xxRetransmitter).
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    kind: TransactionKind,
    state: ServerState,
    request: Message,
    reliable: bool,
    config: TimerConfig,
    started: Instant,
    last_response: Option<Bytes>,
    last_status: Option<u16>,
    completed_at: Option<Instant>,
    /// The current Timer G interval.
    interval: Duration,
    timers: TimerTable,
    retransmissions: u32,
}

impl ServerTransaction {
    /// Start a server transaction for `request`, received at `now` over a transport that is
    /// reliable (TCP, TLS) or not (UDP). An ACK is refused: it never starts a transaction.
    pub fn new(
        now: Instant,
        request: Message,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TransactionError> {
        let method = request.method().ok_or(TransactionError::NotARequest)?;
        if *method == Method::ACK {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let kind = TransactionKind::of(method);
        let state = match kind {
            TransactionKind::Invite => ServerState::Proceeding,
            TransactionKind::NonInvite => ServerState::Trying,
        };
        Ok(Self {
            kind,
            state,
            request,
            reliable,
            config,
            started: now,
            last_response: None,
            last_status: None,
            completed_at: None,
            interval: config.t1,
            timers: TimerTable::default(),
            retransmissions: 0,
        })
    }

    /// INVITE or non-INVITE.
    pub fn kind(&self) -> TransactionKind {
        self.kind
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// True once the transaction has ended and may be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// True when the transport is reliable (no retransmissions, Timers I and J zero).
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// The request that started the transaction.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        self.request.method().unwrap_or(&Method::ACK)
    }

    /// The status code of the latest response sent.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// How many responses were re-sent (by Timer G or for a retransmitted request).
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// When the transaction started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The timers, for inspection.
    pub fn timers(&self) -> &TimerTable {
        &self.timers
    }

    /// When [`ServerTransaction::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Feed a request matched to this transaction (RFC 3261 §17.2.3): a retransmission of
    /// the original request, or (INVITE) the ACK of a non-2xx final response.
    pub fn handle_request(&mut self, now: Instant, request: &Message) -> Actions {
        if request.method() == Some(&Method::ACK) {
            return self.handle_ack(now);
        }
        // A retransmitted request: re-send the latest response, if the state calls for it.
        match self.state {
            ServerState::Proceeding | ServerState::Completed => Actions {
                transmit: self.last_response.clone().map(|bytes| {
                    self.retransmissions += 1;
                    Outgoing {
                        bytes,
                        kind: SendKind::ResponseRetransmission,
                    }
                }),
                report: Some(Report::Absorbed(Absorbed::RetransmittedRequest)),
            },
            ServerState::Trying | ServerState::Confirmed | ServerState::Terminated => {
                Actions::report(Report::Absorbed(Absorbed::RetransmittedRequest))
            }
        }
    }

    /// §17.2.1: the ACK of a non-2xx final response moves Completed to Confirmed.
    fn handle_ack(&mut self, now: Instant) -> Actions {
        if self.kind == TransactionKind::Invite && self.state == ServerState::Completed {
            self.timers.stop(Timer::G);
            self.timers.stop(Timer::H);
            self.state = ServerState::Confirmed;
            match self.config.duration(Timer::I, self.reliable) {
                Some(d) if !d.is_zero() => self.timers.set(Timer::I, now + d),
                _ => self.terminate(),
            }
        }
        Actions::report(Report::Absorbed(Absorbed::Ack))
    }

    /// Send a response built by the transaction user; its status code is read from the
    /// status line of `response`.
    ///
    /// Returns what to transmit (the response itself). Fails when `response` is not a
    /// response or a final response was already sent.
    pub fn send_response(
        &mut self,
        now: Instant,
        response: Bytes,
    ) -> Result<Actions, TransactionError> {
        let code = status_of(&response).ok_or(TransactionError::NotAResponse)?;
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {}
            _ => {
                return Err(TransactionError::FinalAlreadySent {
                    sent: self.last_status.unwrap_or(0),
                    attempted: code,
                })
            }
        }
        self.last_status = Some(code);
        self.last_response = Some(response.clone());
        match (self.kind, code) {
            (_, 100..=199) => self.state = ServerState::Proceeding,
            (TransactionKind::Invite, 200..=299) => {
                // §17.2.1: the 2xx is the TU's to retransmit; the transaction ends.
                self.terminate();
            }
            (TransactionKind::Invite, _) => {
                self.state = ServerState::Completed;
                self.completed_at = Some(now);
                if let Some(d) = self.config.duration(Timer::G, self.reliable) {
                    self.timers.set(Timer::G, now + d);
                }
                self.timers.set(Timer::H, now + self.config.timeout());
            }
            (TransactionKind::NonInvite, _) => {
                self.state = ServerState::Completed;
                self.completed_at = Some(now);
                match self.config.duration(Timer::J, self.reliable) {
                    Some(d) if !d.is_zero() => self.timers.set(Timer::J, now + d),
                    _ => self.terminate(),
                }
            }
        }
        Ok(Actions {
            transmit: Some(Outgoing {
                bytes: response,
                kind: SendKind::Response,
            }),
            report: None,
        })
    }

    /// Fire the timers that expired at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::default();
        while let Some(timer) = self.timers.next_expired(now) {
            self.timers.stop(timer);
            match timer {
                Timer::G => {
                    // §17.2.1: T1, doubling up to T2.
                    self.interval = (self.interval * 2).min(self.config.t2);
                    self.timers.set(Timer::G, now + self.interval);
                    if let Some(bytes) = self.last_response.clone() {
                        self.retransmissions += 1;
                        actions.transmit = Some(Outgoing {
                            bytes,
                            kind: SendKind::ResponseRetransmission,
                        });
                    }
                }
                Timer::H => {
                    // No ACK came: tell the TU (§17.2.1).
                    let since = self.completed_at.unwrap_or(self.started);
                    self.terminate();
                    return Actions {
                        transmit: None,
                        report: Some(Report::TimedOut {
                            timer,
                            elapsed: now.saturating_duration_since(since),
                        }),
                    };
                }
                Timer::I | Timer::J => {
                    self.terminate();
                    return actions;
                }
                Timer::A | Timer::B | Timer::D | Timer::E | Timer::F | Timer::K => {}
            }
        }
        actions
    }

    /// End the transaction now.
    pub(crate) fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = ServerState::Terminated;
    }
}
