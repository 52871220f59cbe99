//! The UAS core's retransmission of a 2xx to an INVITE (RFC 3261 §13.3.1.4).
//!
//! The INVITE server transaction ends when it sends a 2xx (§17.2.1), so the 2xx is not the
//! transaction's to retransmit: the UAS core re-sends it until the ACK arrives. This small
//! sans-IO machine does that for the UA.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::TimerConfig;

/// What a [`Uas2xxRetransmitter`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uas2xxEvent {
    /// No ACK arrived within `64·T1` of the first 2xx (§13.3.1.4): the UA should confirm the
    /// dialog and then end the session with a BYE.
    NoAck {
        /// How long the 2xx was retransmitted.
        elapsed: Duration,
    },
}

/// The states of a [`Uas2xxRetransmitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uas2xxState {
    /// Waiting for the ACK, retransmitting the 2xx.
    Retransmitting,
    /// The ACK arrived.
    Acknowledged,
    /// `64·T1` passed without an ACK.
    GaveUp,
}

/// Retransmits a 2xx to an INVITE at T1, 2·T1, 4·T1, … capped at T2 until the ACK arrives or
/// `64·T1` passes (RFC 3261 §13.3.1.4).
///
/// The RFC asks for this whatever the transport, since the 2xx travels end to end and a hop
/// further on may be unreliable; so there is no reliability flag here.
/// The caller sends the first 2xx itself (through the INVITE server transaction); the machine
/// asks for each retransmission through [`Uas2xxRetransmitter::poll_transmit`].
#[derive(Debug, Clone)]
pub struct Uas2xxRetransmitter {
    response: Bytes,
    t2: Duration,
    started: Instant,
    interval: Duration,
    next: Option<Instant>,
    give_up_at: Instant,
    state: Uas2xxState,
    retransmissions: u32,
    pending: Option<Bytes>,
    event: Option<Uas2xxEvent>,
}

impl Uas2xxRetransmitter {
    /// Start retransmitting `response`, whose first copy was sent at `now`.
    pub fn new(now: Instant, response: Bytes, config: TimerConfig) -> Self {
        Self {
            response,
            t2: config.t2,
            started: now,
            interval: config.t1,
            next: Some(now + config.t1),
            give_up_at: now + config.timeout(),
            state: Uas2xxState::Retransmitting,
            retransmissions: 0,
            pending: None,
            event: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> Uas2xxState {
        self.state
    }

    /// True once the ACK arrived or the machine gave up.
    pub fn is_done(&self) -> bool {
        self.state != Uas2xxState::Retransmitting
    }

    /// How many retransmissions were asked for.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// The 2xx being retransmitted.
    pub fn response(&self) -> &Bytes {
        &self.response
    }

    /// The ACK for the 2xx arrived: stop. Returns false when already stopped.
    pub fn handle_ack(&mut self) -> bool {
        if self.state != Uas2xxState::Retransmitting {
            return false;
        }
        self.state = Uas2xxState::Acknowledged;
        self.next = None;
        self.pending = None;
        true
    }

    /// When [`Uas2xxRetransmitter::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            Uas2xxState::Retransmitting => Some(
                self.next
                    .map_or(self.give_up_at, |n| n.min(self.give_up_at)),
            ),
            _ => None,
        }
    }

    /// Retransmit, or give up, as the time calls for.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state != Uas2xxState::Retransmitting {
            return;
        }
        if now >= self.give_up_at {
            self.state = Uas2xxState::GaveUp;
            self.next = None;
            self.event = Some(Uas2xxEvent::NoAck {
                elapsed: now.saturating_duration_since(self.started),
            });
            return;
        }
        if self.next.is_some_and(|n| n <= now) {
            self.retransmissions += 1;
            self.pending = Some(self.response.clone());
            self.interval = (self.interval * 2).min(self.t2);
            self.next = Some(now + self.interval);
        }
    }

    /// The next 2xx copy to send, if one is due.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.pending.take()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Uas2xxEvent> {
        self.event.take()
    }
}
