//! The run's time series: one [`SeriesRow`] per interval of the run (1 s by default), for a
//! look at how a load test went over time.
//!
//! A [`Series`] keeps the aggregate of the current interval only. Events are handed in with
//! `now`, the offset from the run's start: [`Series::handle_started`] when a call starts,
//! [`Series::handle_result`] with each call result (once, at its end). An interval closes when
//! `now` reaches its end; [`Series::poll_row`] hands out the closed rows in order, and
//! [`Series::finish`] closes the last (partial) interval at the run's end. An interval in
//! which nothing happened still gets its row (zero counts, no percentiles), so the series has
//! no holes.
//!
//! What a row counts (the same sides as the run's totals, see [`super::metrics`]):
//! - `started`: calls started in the interval (the executor's starts; in a run without
//!   callers, the counted side's results, at their end); `active`: calls started and not yet
//!   ended at the interval's end; `passed`/`failed`: the counted side's results that ended in
//!   the interval.
//! - setup latency: `invite_to_200` (from the scheduled start) of the caller results that
//!   ended in the interval, in a histogram reset every interval.
//! - RTP: loss (lost ÷ expected) and the p99 of the end-of-call jitter of the streams (call
//!   results) that ended in the interval; pacing lateness p99 and frames skipped of the
//!   frames those calls sent.
//!
//! Pure: no clock is read, nothing is written.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::outcome::{CallResult, Side};

/// The default length of an interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// One interval of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// Its start, from the run's start.
    pub start: Duration,
    /// Its end (the interval's length later; the run's end for the last one).
    pub end: Duration,
    /// Calls started in it.
    pub started: u64,
    /// Calls in progress at its end.
    pub active: u64,
    /// Calls of the counted side that ended in it without a failure.
    pub passed: u64,
    /// Calls of the counted side that ended in it with at least one failure.
    pub failed: u64,
    /// `invite_to_200` of the caller results that ended in it: p50, p90, p99 and max
    /// (`None` without such a result).
    pub setup: Option<Percentiles>,
    /// Lost ÷ expected packets of the streams that ended in it (`None` when none expected a
    /// packet).
    pub rtp_loss_ratio: Option<f64>,
    /// The p99 of the end-of-call jitter of those streams, milliseconds.
    pub jitter_p99_ms: Option<f64>,
    /// The p99 of the send lateness of the frames of the calls that ended in it.
    pub pacing_lateness_p99: Option<Duration>,
    /// Frames those calls' senders skipped (generator overrun).
    pub frames_skipped: u64,
}

impl SeriesRow {
    /// Calls started per second in the interval.
    #[must_use]
    pub fn call_rate(&self) -> f64 {
        let secs = self.end.saturating_sub(self.start).as_secs_f64();
        if secs > 0.0 {
            self.started as f64 / secs
        } else {
            0.0
        }
    }
}

/// Percentiles of a duration over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest value.
    pub max: Duration,
}

/// The aggregate of the current interval, cut into rows as time passes.
#[derive(Debug)]
pub struct Series {
    interval: Duration,
    counted: Side,
    /// The start of the current interval.
    start: Duration,
    active: u64,
    started: u64,
    passed: u64,
    failed: u64,
    setup_us: Histogram<u64>,
    jitter_us: Histogram<u64>,
    pacing_us: Histogram<u64>,
    packets_lost: u64,
    packets_expected: u64,
    frames_skipped: u64,
    closed: VecDeque<SeriesRow>,
    finished: bool,
}

fn micros_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant bounds are valid for HdrHistogram");
    h.auto(true);
    h
}

fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn quantile(h: &Histogram<u64>, q: f64) -> Option<u64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q))
}

impl Series {
    /// A series of `interval`-long rows (a zero interval is taken as 1 ms) counting the
    /// `counted` side's results, starting at offset zero.
    #[must_use]
    pub fn new(interval: Duration, counted: Side) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            counted,
            start: Duration::ZERO,
            active: 0,
            started: 0,
            passed: 0,
            failed: 0,
            setup_us: micros_histogram(),
            jitter_us: micros_histogram(),
            pacing_us: micros_histogram(),
            packets_lost: 0,
            packets_expected: 0,
            frames_skipped: 0,
            closed: VecDeque::new(),
            finished: false,
        }
    }

    /// The length of an interval.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the current interval closes.
    #[must_use]
    pub fn poll_timeout(&self) -> Duration {
        self.start + self.interval
    }

    /// A call started at `now` (the executor's start of a caller's call).
    pub fn handle_started(&mut self, now: Duration) {
        self.advance(now);
        self.started += 1;
        self.active += 1;
    }

    /// One call result, at the call's end (`now`).
    pub fn handle_result(&mut self, now: Duration, r: &CallResult) {
        self.advance(now);
        if r.side == self.counted {
            if self.counted == Side::Callee {
                // No start is reported for calls that come from outside: counted at their end.
                self.started += 1;
            } else {
                self.active = self.active.saturating_sub(1);
            }
            if r.passed() {
                self.passed += 1;
            } else {
                self.failed += 1;
            }
        }
        if r.side == Side::Caller {
            if let Some(d) = r.invite_to_200 {
                record(&mut self.setup_us, micros(d));
            }
        }
        if let Some(m) = &r.media {
            self.packets_lost += m.packets_lost.min(m.packets_expected);
            self.packets_expected += m.packets_expected;
            self.frames_skipped += m.frames_skipped;
            if m.packets_received > 0 || m.packets_expected > 0 {
                record(
                    &mut self.jitter_us,
                    (m.jitter_ms.max(0.0) * 1000.0).round() as u64,
                );
            }
            for v in m.pacing_lateness_us.iter_recorded() {
                let value = m
                    .pacing_lateness_us
                    .highest_equivalent(v.value_iterated_to());
                if self
                    .pacing_us
                    .record_n(value, u64::from(v.count_at_value()))
                    .is_err()
                {
                    self.pacing_us.saturating_record(value);
                }
            }
        }
    }

    /// The next closed row, once `now` has reached its end; `None` when no interval has
    /// closed (or every closed row was handed out).
    pub fn poll_row(&mut self, now: Duration) -> Option<SeriesRow> {
        self.advance(now);
        self.closed.pop_front()
    }

    /// The run ended at `now`: every row not handed out yet, the last one ending at `now`
    /// (a partial interval, written when it has a length or saw an event).
    pub fn finish(&mut self, now: Duration) -> Vec<SeriesRow> {
        self.advance(now);
        if !self.finished {
            self.finished = true;
            let end = now.max(self.start);
            if end > self.start || self.started + self.passed + self.failed > 0 {
                self.close(end);
            }
        }
        self.closed.drain(..).collect()
    }

    /// Closes every interval that ended by `now`.
    fn advance(&mut self, now: Duration) {
        if self.finished {
            return;
        }
        while now >= self.start + self.interval {
            let end = self.start + self.interval;
            self.close(end);
        }
    }

    /// Closes the current interval at `end` and opens the next there.
    fn close(&mut self, end: Duration) {
        let setup = (!self.setup_us.is_empty()).then(|| {
            let at = |q| Duration::from_micros(self.setup_us.value_at_quantile(q));
            Percentiles {
                p50: at(0.50),
                p90: at(0.90),
                p99: at(0.99),
                max: Duration::from_micros(self.setup_us.max()),
            }
        });
        self.closed.push_back(SeriesRow {
            start: self.start,
            end,
            started: self.started,
            active: self.active,
            passed: self.passed,
            failed: self.failed,
            setup,
            rtp_loss_ratio: (self.packets_expected > 0)
                .then(|| self.packets_lost as f64 / self.packets_expected as f64),
            jitter_p99_ms: quantile(&self.jitter_us, 0.99).map(|us| us as f64 / 1000.0),
            pacing_lateness_p99: quantile(&self.pacing_us, 0.99).map(Duration::from_micros),
            frames_skipped: self.frames_skipped,
        });
        self.start = end;
        self.started = 0;
        self.passed = 0;
        self.failed = 0;
        self.setup_us.reset();
        self.jitter_us.reset();
        self.pacing_us.reset();
        self.packets_lost = 0;
        self.packets_expected = 0;
        self.frames_skipped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::fixture;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn caller(i: u64, setup_ms: u64) -> CallResult {
        let mut r = fixture::caller(i);
        r.invite_to_200 = Some(Duration::from_millis(setup_ms));
        r
    }

    #[test]
    fn rows_close_at_the_interval_boundaries_and_empty_intervals_have_rows() {
        let mut s = Series::new(Duration::from_secs(1), Side::Caller);
        assert_eq!(s.poll_timeout(), secs(1.0));
        s.handle_started(secs(0.1));
        s.handle_started(secs(0.2));
        assert_eq!(s.poll_row(secs(0.999)), None);
        let first = s
            .poll_row(secs(1.0))
            .expect("the first second closed at 1 s");
        assert_eq!((first.start, first.end), (secs(0.0), secs(1.0)));
        assert_eq!((first.started, first.active), (2, 2));
        assert_eq!((first.passed, first.failed), (0, 0));
        assert_eq!(first.setup, None);
        assert!((first.call_rate() - 2.0).abs() < 1e-9);
        assert_eq!(s.poll_row(secs(1.5)), None);

        // Nothing happens for two seconds; then one call ends in the fourth.
        s.handle_result(secs(3.5), &caller(0, 30));
        let rows: Vec<_> = std::iter::from_fn(|| s.poll_row(secs(3.5))).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (row, start) in rows.iter().zip([1.0, 2.0]) {
            assert_eq!((row.start, row.end), (secs(start), secs(start + 1.0)));
            assert_eq!((row.started, row.passed, row.failed), (0, 0, 0));
            assert_eq!(row.active, 2, "calls in progress stay active");
            assert_eq!(row.setup, None);
            assert_eq!(row.rtp_loss_ratio, None);
            assert_eq!(row.jitter_p99_ms, None);
            assert_eq!(row.pacing_lateness_p99, None);
        }
        // The run ends in the middle of the fifth second: the last row is partial.
        let last = s.finish(secs(4.25));
        assert_eq!(last.len(), 2, "{last:?}");
        assert_eq!((last[0].start, last[0].end), (secs(3.0), secs(4.0)));
        assert_eq!((last[0].passed, last[0].active), (1, 1));
        assert_eq!((last[1].start, last[1].end), (secs(4.0), secs(4.25)));
        assert_eq!(last[1].started, 0);
        assert!(s.finish(secs(9.0)).is_empty(), "finish closes once");
        assert_eq!(s.poll_row(secs(9.0)), None);
    }

    #[test]
    fn percentiles_are_of_each_interval_alone() {
        let mut s = Series::new(Duration::from_millis(500), Side::Caller);
        for i in 0..100 {
            s.handle_started(secs(0.0));
            // 1..=100 ms in the first half second.
            s.handle_result(secs(0.4), &caller(i, i + 1));
        }
        // One slow call in the next.
        s.handle_started(secs(0.6));
        let mut failed = caller(100, 900);
        failed.failures.push(crate::stats::outcome::Failure {
            step: "call",
            line: 17,
            col: 9,
            kind: crate::stats::outcome::FailureKind::SipCode(486),
            message: "486 Busy Here".into(),
        });
        s.handle_result(secs(0.7), &failed);
        let rows = s.finish(secs(1.0));
        assert_eq!(rows.len(), 2);
        let first = rows[0].setup.expect("setup percentiles");
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1000.0 - ms).abs() <= ms * 0.002;
        assert!(near(first.p50, 50.0), "{first:?}");
        assert!(near(first.p90, 90.0), "{first:?}");
        assert!(near(first.p99, 99.0), "{first:?}");
        assert!(near(first.max, 100.0), "{first:?}");
        assert_eq!(
            (rows[0].started, rows[0].passed, rows[0].failed),
            (100, 100, 0)
        );
        assert_eq!(rows[0].active, 0);
        let second = rows[1].setup.expect("setup percentiles");
        assert!(
            near(second.p50, 900.0),
            "the first half's calls are gone: {second:?}"
        );
        assert!(near(second.max, 900.0), "{second:?}");
        assert_eq!((rows[1].started, rows[1].passed, rows[1].failed), (1, 0, 1));
        assert!((rows[1].call_rate() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn media_figures_are_of_the_streams_that_ended_in_the_interval() {
        let mut s = Series::new(Duration::from_secs(1), Side::Caller);
        let mut lossy = caller(0, 20);
        let m = lossy.media.as_mut().expect("the fixture has media");
        m.packets_expected = 200;
        m.packets_lost = 20;
        m.jitter_ms = 7.5;
        m.frames_skipped = 3;
        s.handle_started(secs(0.0));
        s.handle_result(secs(0.5), &lossy);
        let mut clean = caller(1, 20);
        let m = clean.media.as_mut().expect("the fixture has media");
        m.packets_expected = 250;
        m.packets_lost = 0;
        m.jitter_ms = 0.5;
        m.frames_skipped = 0;
        s.handle_started(secs(1.0));
        s.handle_result(secs(1.5), &clean);
        let rows = s.finish(secs(2.0));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].rtp_loss_ratio, Some(0.1));
        assert!((rows[0].jitter_p99_ms.unwrap() - 7.5).abs() < 0.01);
        assert_eq!(rows[0].frames_skipped, 3);
        assert!(rows[0].pacing_lateness_p99.is_some());
        assert_eq!(rows[1].rtp_loss_ratio, Some(0.0));
        assert!((rows[1].jitter_p99_ms.unwrap() - 0.5).abs() < 0.01);
        assert_eq!(rows[1].frames_skipped, 0);
    }

    #[test]
    fn an_event_on_a_boundary_belongs_to_the_interval_it_opens() {
        let mut s = Series::new(Duration::from_millis(200), Side::Caller);
        s.handle_started(secs(0.199_999));
        s.handle_started(secs(0.2));
        s.handle_started(secs(0.4));
        let rows = s.finish(secs(0.4));
        let started: Vec<u64> = rows.iter().map(|r| r.started).collect();
        assert_eq!(started, [1, 1, 1], "{rows:?}");
        assert_eq!(rows[2].start, rows[2].end, "the run ended on the boundary");
        assert_eq!(rows[2].call_rate(), 0.0);
        // A run that ends on a boundary with nothing after it has no empty last row.
        let mut s = Series::new(Duration::from_millis(200), Side::Caller);
        assert_eq!(s.finish(secs(0.4)).len(), 2);
    }

    #[test]
    fn a_run_without_callers_counts_the_callee_results_as_started_at_their_end() {
        let mut s = Series::new(Duration::from_secs(1), Side::Callee);
        s.handle_result(secs(0.3), &fixture::callee(0));
        s.handle_result(secs(0.4), &caller(1, 10));
        let rows = s.finish(secs(1.0));
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].started, rows[0].active), (1, 0));
        assert_eq!(rows[0].passed + rows[0].failed, 1);
    }
}
