//! When a registration is renewed, sans-IO: refreshed at 80 % of its lifetime (when asked),
//! at once when the connection it was made over drops (a UA forms a new connection and
//! registers again: RFC 3261 §18, RFC 5626 §4.4), and, after a failed attempt, again after
//! 1 s, 2 s, 4 s … up to 30 s.

use std::time::{Duration, Instant};

/// The first wait before a failed renewal is tried again; doubled after each failure.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest wait between failed renewals.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a renewal is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The periodic refresh.
    Refresh,
    /// The connection to the registrar dropped, and no renewal has worked since.
    FlowLost,
    /// An earlier refresh failed.
    Retry,
}

/// The renewal schedule of one registration.
#[derive(Debug, Clone)]
pub struct Renewal {
    every: Option<Duration>,
    next_refresh: Option<Instant>,
    retry_at: Option<Instant>,
    /// When a drop was learnt, to be acted on at once.
    lost_at: Option<Instant>,
    failures: u32,
    /// A drop not yet followed by a renewal that worked.
    lost: bool,
}

impl Renewal {
    /// A registration made at `now` for `expires` seconds; refreshed when `refresh`.
    #[must_use]
    pub fn new(now: Instant, expires: u32, refresh: bool) -> Self {
        // In milliseconds: 80 % of a short lifetime is not rounded down to whole seconds.
        let every = refresh.then(|| Duration::from_millis(u64::from(expires.max(2)) * 800));
        Self {
            every,
            next_refresh: every.map(|e| now + e),
            retry_at: None,
            lost_at: None,
            failures: 0,
            lost: false,
        }
    }

    /// The connection to the registrar dropped at `now`: renew at once, unless a retry
    /// is already waiting its turn (a registrar that failed the last attempt is not
    /// hurried).
    pub fn flow_lost(&mut self, now: Instant) {
        self.lost = true;
        if self.retry_at.is_none() {
            self.lost_at = Some(now);
        }
    }

    /// When the next renewal is due (`None`: only if the connection drops).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.lost_at, self.retry_at, self.next_refresh]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a renewal is due at `now`, and why.
    #[must_use]
    pub fn due(&self, now: Instant) -> Option<Why> {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return None;
        }
        Some(if self.lost {
            Why::FlowLost
        } else if self.retry_at.is_some() {
            Why::Retry
        } else {
            Why::Refresh
        })
    }

    /// The renewal made at `now` worked.
    pub fn on_success(&mut self, now: Instant) {
        self.failures = 0;
        self.retry_at = None;
        self.lost_at = None;
        self.lost = false;
        self.next_refresh = self.every.map(|e| now + e);
    }

    /// The renewal made at `now` failed: the next attempt's wait.
    pub fn on_failure(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = RETRY_BASE
            .saturating_mul(1 << (self.failures - 1).min(5))
            .min(RETRY_MAX);
        self.retry_at = Some(now + wait);
        self.lost_at = None;
        // The retries stand in for the refresh until one works.
        self.next_refresh = None;
        wait
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
    fn refreshed_at_80_percent_renewed_at_once_on_a_drop_retried_with_backoff() {
        let t0 = origin();
        let s = Duration::from_secs;
        let mut r = Renewal::new(t0, 300, true);
        assert_eq!(r.poll_timeout(), Some(t0 + s(240)));
        assert_eq!(r.due(t0 + s(239)), None);
        assert_eq!(r.due(t0 + s(240)), Some(Why::Refresh));
        r.on_success(t0 + s(240));
        assert_eq!(r.poll_timeout(), Some(t0 + s(480)));

        // The connection drops at 300 s: due at once; the registrar is down for a while.
        r.flow_lost(t0 + s(300));
        assert_eq!(r.due(t0 + s(300)), Some(Why::FlowLost));
        let waits: Vec<Duration> = (0..7).map(|_| r.on_failure(t0 + s(300))).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30].map(s));
        // Still a re-registration after a drop, at the retry's time; no tight loop.
        assert_eq!(r.poll_timeout(), Some(t0 + s(330)));
        assert_eq!(r.due(t0 + s(329)), None);
        // Another drop meanwhile does not hurry the retry.
        r.flow_lost(t0 + s(310));
        assert_eq!(r.due(t0 + s(310)), None);
        assert_eq!(r.due(t0 + s(330)), Some(Why::FlowLost));
        r.on_success(t0 + s(330));
        assert_eq!(r.poll_timeout(), Some(t0 + s(570)));
        assert_eq!(r.due(t0 + s(400)), None);
    }

    #[test]
    fn without_refresh_only_a_drop_renews_and_a_failed_refresh_is_retried() {
        let t0 = origin();
        let s = Duration::from_secs;
        let mut r = Renewal::new(t0, 60, false);
        assert_eq!(r.poll_timeout(), None);
        r.flow_lost(t0 + s(5));
        assert_eq!(r.due(t0 + s(5)), Some(Why::FlowLost));
        r.on_success(t0 + s(5));
        assert_eq!(r.poll_timeout(), None);

        let r = Renewal::new(t0, 2, true);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(1600)));
        let mut r = Renewal::new(t0, 60, true);
        assert_eq!(r.due(t0 + s(48)), Some(Why::Refresh));
        assert_eq!(r.on_failure(t0 + s(48)), s(1));
        assert_eq!(r.due(t0 + s(49)), Some(Why::Retry));
    }
}
