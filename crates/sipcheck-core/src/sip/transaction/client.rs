//! Client transactions, RFC 3261 §17.1: the INVITE machine (§17.1.1) and the non-INVITE
//! machine (§17.1.2).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Absorbed, Actions, Outgoing, Report, SendKind, TransactionError, TransactionKind};
use crate::sip::build;
use crate::sip::msg::{Message, Method, ParseError, SentRequest};

/// The states of a client transaction (RFC 3261 Figures 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, no response yet (§17.1.1.2).
    Calling,
    /// Non-INVITE request sent, no response yet (§17.1.2.2).
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE); waiting out retransmissions
    /// (Timer D or K).
    Completed,
    /// Done: the owner may drop the transaction.
    Terminated,
}

/// A client transaction: one request sent, its retransmissions, and the responses to it.
///
/// Sans-IO: every input takes `now`; the returned [`Actions`] say what to send and what to
/// report. The request itself is not returned by [`ClientTransaction::new`]: the owner sends
/// [`ClientTransaction::raw`] once, right after creating the transaction.
///
/// The transaction keeps the request's bytes and the fields it matches on (method, top Via
/// branch, CSeq number: a [`SentRequest`]), not a parsed message: the request is parsed only
/// when the ACK of a non-2xx final response or a CANCEL is built from it.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    kind: TransactionKind,
    state: ClientState,
    request: SentRequest,
    /// The ACK of the non-2xx final response (INVITE only), re-sent for each retransmission.
    ack: Option<Bytes>,
    final_status: Option<u16>,
    reliable: bool,
    config: TimerConfig,
    started: Instant,
    /// The current retransmit interval (Timer A or E).
    interval: Duration,
    timers: TimerTable,
    retransmissions: u32,
}

impl ClientTransaction {
    /// Start a client transaction for `request`, sent at `now` over a transport that is
    /// reliable (TCP, TLS) or not (UDP).
    ///
    /// The request must be a request other than ACK (an ACK is never a transaction, RFC 3261
    /// §17.1.1.3) and its top Via must carry a branch.
    pub fn new(
        now: Instant,
        request: SentRequest,
        reliable: bool,
        config: TimerConfig,
    ) -> Result<Self, TransactionError> {
        let method = request.method();
        if *method == Method::ACK {
            return Err(TransactionError::AckIsNotATransaction);
        }
        if request.branch().is_none_or(str::is_empty) {
            return Err(TransactionError::MissingBranch);
        }
        let kind = TransactionKind::of(method);
        let (state, retransmit, timeout) = match kind {
            TransactionKind::Invite => (ClientState::Calling, Timer::A, Timer::B),
            TransactionKind::NonInvite => (ClientState::Trying, Timer::E, Timer::F),
        };
        let mut timers = TimerTable::default();
        if let Some(d) = config.duration(retransmit, reliable) {
            timers.set(retransmit, now + d);
        }
        timers.set(timeout, now + config.timeout());
        Ok(Self {
            kind,
            state,
            request,
            ack: None,
            final_status: None,
            reliable,
            config,
            started: now,
            interval: config.t1,
            timers,
            retransmissions: 0,
        })
    }

    /// INVITE or non-INVITE.
    pub fn kind(&self) -> TransactionKind {
        self.kind
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// True once the transaction has ended and may be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// True when the transport is reliable (no retransmissions, Timers D and K zero).
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// What the transaction keeps of the request it sends.
    pub fn request(&self) -> &SentRequest {
        &self.request
    }

    /// The request as sent (and retransmitted).
    pub fn raw(&self) -> &Bytes {
        self.request.raw()
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        self.request.method()
    }

    /// The branch of the request's top Via (never empty: [`ClientTransaction::new`] refuses a
    /// request without one).
    pub fn branch(&self) -> &str {
        self.request.branch().unwrap_or_default()
    }

    /// The request's CSeq number.
    pub fn cseq(&self) -> u32 {
        self.request.cseq()
    }

    /// The request, parsed in full: for what needs more than the fields kept (a CANCEL,
    /// RFC 3261 §9.1). Each call parses the bytes again.
    pub fn parse_request(&self) -> Result<Message, ParseError> {
        super::note_request_parse();
        self.request.parse()
    }

    /// The status code of the final response, once one arrived.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    /// How many times the request was retransmitted.
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

    /// When [`ClientTransaction::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Feed a response whose top Via branch and CSeq method match this transaction
    /// (RFC 3261 §17.1.3; the [`TransactionLayer`](super::TransactionLayer) does the matching).
    pub fn handle_response(&mut self, now: Instant, response: &Message) -> Actions {
        let Some(code) = response.status() else {
            return Actions::default();
        };
        match self.kind {
            TransactionKind::Invite => self.invite_response(now, code, response),
            TransactionKind::NonInvite => self.non_invite_response(now, code),
        }
    }

    /// RFC 3261 §17.1.1.2, Figure 5.
    fn invite_response(&mut self, now: Instant, code: u16, response: &Message) -> Actions {
        match self.state {
            ClientState::Calling | ClientState::Proceeding => match code {
                100..=199 => {
                    // Proceeding: no more retransmissions, and Timer B only guards Calling.
                    self.state = ClientState::Proceeding;
                    self.timers.stop(Timer::A);
                    self.timers.stop(Timer::B);
                    Actions::report(Report::PassUp)
                }
                200..=299 => {
                    // The 2xx ends the transaction; its ACK is the UA core's (§13.2.2.4).
                    self.final_status = Some(code);
                    self.terminate();
                    Actions::report(Report::PassUp)
                }
                _ => {
                    self.final_status = Some(code);
                    // §17.1.1.3: the ACK is built from the original request, parsed here (a
                    // request that started a transaction parses: `SentRequest::scan` accepts
                    // only such requests, and the other ones were parsed to start it).
                    let ack = self
                        .parse_request()
                        .ok()
                        .map(|invite| Bytes::from(build::ack_for_non2xx(&invite, response)));
                    self.ack.clone_from(&ack);
                    self.timers.stop_all();
                    self.state = ClientState::Completed;
                    self.arm_or_terminate(now, Timer::D);
                    Actions {
                        transmit: ack.map(|bytes| Outgoing {
                            bytes,
                            kind: SendKind::Ack,
                        }),
                        report: Some(Report::PassUp),
                    }
                }
            },
            ClientState::Completed => {
                if code >= 300 && Some(code) == self.final_status {
                    // §17.1.1.2: each retransmission of the final response gets the ACK again.
                    Actions {
                        transmit: self.ack.clone().map(|bytes| Outgoing {
                            bytes,
                            kind: SendKind::AckRetransmission,
                        }),
                        report: Some(Report::Absorbed(Absorbed::RetransmittedFinal)),
                    }
                } else {
                    Actions::report(Report::Absorbed(Absorbed::LateResponse))
                }
            }
            ClientState::Trying | ClientState::Terminated => {
                Actions::report(Report::Absorbed(Absorbed::LateResponse))
            }
        }
    }

    /// RFC 3261 §17.1.2.2, Figure 6.
    fn non_invite_response(&mut self, now: Instant, code: u16) -> Actions {
        match self.state {
            ClientState::Trying | ClientState::Proceeding => {
                if code < 200 {
                    // Timer E keeps running; from its next firing on it is T2.
                    self.state = ClientState::Proceeding;
                } else {
                    self.final_status = Some(code);
                    self.timers.stop_all();
                    self.state = ClientState::Completed;
                    self.arm_or_terminate(now, Timer::K);
                }
                Actions::report(Report::PassUp)
            }
            ClientState::Completed if Some(code) == self.final_status => {
                Actions::report(Report::Absorbed(Absorbed::RetransmittedFinal))
            }
            _ => Actions::report(Report::Absorbed(Absorbed::LateResponse)),
        }
    }

    /// Fire the timers that expired at or before `now`.
    ///
    /// Each expired timer is handled once; a retransmit timer is re-armed from `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::default();
        while let Some(timer) = self.timers.next_expired(now) {
            self.timers.stop(timer);
            match timer {
                Timer::A => {
                    // §17.1.1.2: Timer A doubles without cap.
                    self.interval *= 2;
                    self.timers.set(Timer::A, now + self.interval);
                    actions.transmit = Some(self.retransmit());
                }
                Timer::E => {
                    // §17.1.2.2: doubles up to T2 in Trying; T2 in Proceeding.
                    self.interval = match self.state {
                        ClientState::Proceeding => self.config.t2,
                        _ => (self.interval * 2).min(self.config.t2),
                    };
                    self.timers.set(Timer::E, now + self.interval);
                    actions.transmit = Some(self.retransmit());
                }
                Timer::B | Timer::F => {
                    self.terminate();
                    return Actions {
                        transmit: None,
                        report: Some(Report::TimedOut {
                            timer,
                            elapsed: now.saturating_duration_since(self.started),
                        }),
                    };
                }
                Timer::D | Timer::K => {
                    self.terminate();
                    return actions;
                }
                Timer::G | Timer::H | Timer::I | Timer::J => {}
            }
        }
        actions
    }

    fn retransmit(&mut self) -> Outgoing {
        self.retransmissions += 1;
        Outgoing {
            bytes: self.request.raw().clone(),
            kind: SendKind::RequestRetransmission,
        }
    }

    /// Arm a wait timer (D or K), or terminate at once when it is zero (reliable transports).
    fn arm_or_terminate(&mut self, now: Instant, timer: Timer) {
        match self.config.duration(timer, self.reliable) {
            Some(d) if !d.is_zero() => self.timers.set(timer, now + d),
            _ => self.terminate(),
        }
    }

    /// End the transaction now (a 2xx, a timeout, or the owner giving up on it).
    pub(crate) fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = ClientState::Terminated;
    }
}
