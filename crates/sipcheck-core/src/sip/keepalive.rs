//! RFC 5626 §4.4.1 CRLF keep-alive of one connection-oriented flow, sans-IO.
//!
//! The client of a flow sends a ping (CRLF CRLF) every interval; the server answers each
//! with a pong (a lone CRLF). A pong not received within the pong timeout (10 s in the
//! RFC) means the flow has failed: the shell closes it and the user agent forms a new one
//! (reconnects and registers again). The shell answers the pings it receives itself; this
//! machine only times the pings it sends.

use std::time::{Duration, Instant};

/// How long a pong may take before the flow is declared failed (RFC 5626 §4.4.1).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// What the shell must do when the deadline comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Write CRLF CRLF on the connection.
    SendPing,
    /// No pong came in time: close the connection, the flow has failed.
    FlowFailed,
}

/// The keep-alive timer of one flow.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    interval: Duration,
    pong_timeout: Duration,
    next_ping: Instant,
    /// When the ping now unanswered was sent.
    awaiting_since: Option<Instant>,
}

impl KeepAlive {
    /// A flow opened at `now`, pinged every `interval`, failed when a pong takes longer
    /// than `pong_timeout`.
    #[must_use]
    pub fn new(now: Instant, interval: Duration, pong_timeout: Duration) -> Self {
        Self {
            interval,
            pong_timeout,
            next_ping: now + interval,
            awaiting_since: None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        match self.awaiting_since {
            Some(sent) => sent + self.pong_timeout,
            None => self.next_ping,
        }
    }

    /// The deadline has come (or not yet: then nothing to do).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepAliveAction> {
        match self.awaiting_since {
            Some(sent) if now >= sent + self.pong_timeout => Some(KeepAliveAction::FlowFailed),
            Some(_) => None,
            None if now >= self.next_ping => {
                self.awaiting_since = Some(now);
                self.next_ping = now + self.interval;
                Some(KeepAliveAction::SendPing)
            }
            None => None,
        }
    }

    /// A pong arrived: the flow is alive; the next ping goes at its time.
    pub fn on_pong(&mut self, now: Instant) {
        if self.awaiting_since.take().is_some() && self.next_ping < now {
            self.next_ping = now;
        }
    }

    /// Whether a ping is waiting for its pong.
    #[must_use]
    pub fn awaiting_pong(&self) -> bool {
        self.awaiting_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual clock's origin (any instant: only differences matter).
    #[allow(clippy::disallowed_methods)]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn pings_every_interval_while_pongs_come_and_fails_the_flow_when_one_does_not() {
        let t0 = origin();
        let s = Duration::from_secs;
        let mut ka = KeepAlive::new(t0, s(30), PONG_TIMEOUT);
        assert_eq!(ka.poll_timeout(), t0 + s(30));
        assert_eq!(ka.handle_timeout(t0 + s(29)), None);
        assert_eq!(
            ka.handle_timeout(t0 + s(30)),
            Some(KeepAliveAction::SendPing)
        );
        assert!(ka.awaiting_pong());
        // Waiting for the pong: the deadline is the pong timeout.
        assert_eq!(ka.poll_timeout(), t0 + s(40));
        assert_eq!(ka.handle_timeout(t0 + s(35)), None);
        ka.on_pong(t0 + s(31));
        assert!(!ka.awaiting_pong());
        assert_eq!(ka.poll_timeout(), t0 + s(60));
        assert_eq!(
            ka.handle_timeout(t0 + s(60)),
            Some(KeepAliveAction::SendPing)
        );
        // No pong this time: failed exactly at the timeout, not before.
        assert_eq!(ka.handle_timeout(t0 + s(69)), None);
        assert_eq!(
            ka.handle_timeout(t0 + s(70)),
            Some(KeepAliveAction::FlowFailed)
        );
    }

    #[test]
    fn an_unsolicited_pong_changes_nothing() {
        let t0 = origin();
        let mut ka = KeepAlive::new(t0, Duration::from_secs(5), PONG_TIMEOUT);
        ka.on_pong(t0 + Duration::from_secs(1));
        assert_eq!(ka.poll_timeout(), t0 + Duration::from_secs(5));
    }
}
