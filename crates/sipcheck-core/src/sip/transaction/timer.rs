//! The RFC 3261 §17 timers: their base values ([`TimerConfig`]), their names ([`Timer`]) and a
//! per-transaction table of deadlines ([`TimerTable`]).

use std::fmt;
use std::time::{Duration, Instant};

/// The base timer values of RFC 3261 §17.1.1.1 and Table 4.
///
/// Every transaction timer is derived from these three: Timers B, F, H and J are `64·T1`,
/// Timers A, E and G start at `T1`, Timers K and I are `T4`. The defaults are the RFC's.
/// `t1` must not be zero and `t2` must not be shorter than `t1` (see [`TimerConfig::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the round-trip time estimate (RFC 3261: 500 ms).
    pub t1: Duration,
    /// T2, the largest interval between retransmissions of non-INVITE requests and INVITE
    /// responses (RFC 3261: 4 s).
    pub t2: Duration,
    /// T4, the longest time a message stays in the network (RFC 3261: 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Why a [`TimerConfig`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimerConfigError {
    /// T1 is zero, which would retransmit without pause.
    #[error("T1 must be longer than zero")]
    ZeroT1,
    /// T2 is shorter than T1.
    #[error("T2 ({t2:?}) must not be shorter than T1 ({t1:?})")]
    T2ShorterThanT1 {
        /// The T1 given.
        t1: Duration,
        /// The T2 given.
        t2: Duration,
    },
}

impl TimerConfig {
    /// A checked configuration.
    pub fn new(t1: Duration, t2: Duration, t4: Duration) -> Result<Self, TimerConfigError> {
        let config = Self { t1, t2, t4 };
        config.validate()?;
        Ok(config)
    }

    /// Check that `t1` is not zero and `t2 >= t1`.
    pub fn validate(&self) -> Result<(), TimerConfigError> {
        if self.t1.is_zero() {
            return Err(TimerConfigError::ZeroT1);
        }
        if self.t2 < self.t1 {
            return Err(TimerConfigError::T2ShorterThanT1 {
                t1: self.t1,
                t2: self.t2,
            });
        }
        Ok(())
    }

    /// `64·T1`: the transaction timeout (Timers B, F, H, J) and the 2xx retransmission limit.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// The initial duration of `timer` on a transport of the given reliability, or `None`
    /// when the timer does not run there at all (the retransmit timers A, E and G on reliable
    /// transports). Zero durations (D, I, J, K on reliable transports) are returned as
    /// `Some(Duration::ZERO)`: transactions treat them as "terminate at once".
    pub fn duration(&self, timer: Timer, reliable: bool) -> Option<Duration> {
        use Timer::*;
        match timer {
            A | E | G if reliable => None,
            A | E | G => Some(self.t1),
            B | F | H => Some(self.timeout()),
            D if reliable => Some(Duration::ZERO),
            D => Some(Duration::from_secs(32).max(self.timeout())),
            I | K if reliable => Some(Duration::ZERO),
            I | K => Some(self.t4),
            J if reliable => Some(Duration::ZERO),
            J => Some(self.timeout()),
        }
    }
}

/// The transaction timers of RFC 3261 §17 (Table 4 in Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Timer A, RFC 3261 §17.1.1.2: INVITE request retransmit (unreliable transports), starts
    /// at T1 and doubles without cap.
    A,
    /// Timer B, RFC 3261 §17.1.1.2: INVITE transaction timeout (`64·T1`) while Calling.
    B,
    /// Timer D, RFC 3261 §17.1.1.2: wait time in Completed for response retransmissions
    /// (32 s or more on unreliable transports, 0 on reliable ones).
    D,
    /// Timer E, RFC 3261 §17.1.2.2: non-INVITE request retransmit (unreliable transports),
    /// starts at T1 and doubles up to T2; T2 in Proceeding.
    E,
    /// Timer F, RFC 3261 §17.1.2.2: non-INVITE transaction timeout (`64·T1`).
    F,
    /// Timer G, RFC 3261 §17.2.1: INVITE non-2xx final response retransmit (unreliable
    /// transports), starts at T1 and doubles up to T2.
    G,
    /// Timer H, RFC 3261 §17.2.1: wait time for the ACK of a non-2xx final response
    /// (`64·T1`).
    H,
    /// Timer I, RFC 3261 §17.2.1: wait time in Confirmed for ACK retransmissions (T4 on
    /// unreliable transports, 0 on reliable ones).
    I,
    /// Timer J, RFC 3261 §17.2.2: wait time in Completed for non-INVITE request
    /// retransmissions (`64·T1` on unreliable transports, 0 on reliable ones).
    J,
    /// Timer K, RFC 3261 §17.1.2.2: wait time in Completed for non-INVITE response
    /// retransmissions (T4 on unreliable transports, 0 on reliable ones).
    K,
}

impl Timer {
    /// The number of timers.
    pub const COUNT: usize = 10;

    /// Every timer, in table order.
    pub const ALL: [Timer; Timer::COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
    ];

    /// The timer's index in a [`TimerTable`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// True for the timers that retransmit (A, E, G); the others end a state.
    pub fn is_retransmit(self) -> bool {
        matches!(self, Timer::A | Timer::E | Timer::G)
    }

    /// The section of RFC 3261 that defines the timer.
    pub fn rfc_section(self) -> &'static str {
        match self {
            Timer::A | Timer::B | Timer::D => "§17.1.1.2",
            Timer::E | Timer::F | Timer::K => "§17.1.2.2",
            Timer::G | Timer::H | Timer::I => "§17.2.1",
            Timer::J => "§17.2.2",
        }
    }
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timer {self:?}")
    }
}

/// The deadlines of one transaction's timers, indexed by [`Timer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerTable {
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arm `timer` to expire at `at`, replacing any earlier setting.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarm `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Disarm every timer.
    pub fn stop_all(&mut self) {
        self.deadlines = [None; Timer::COUNT];
    }

    /// When `timer` expires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// The earliest deadline of any armed timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The armed timer that expired first at or before `now`. Of timers expiring at the same
    /// instant, one that ends a state (B, D, F, H, I, J, K) comes before a retransmit timer.
    pub fn next_expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).filter(|&at| at <= now).map(|at| (at, t)))
            .min_by_key(|&(at, t)| (at, t.is_retransmit()))
            .map(|(_, t)| t)
    }
}
