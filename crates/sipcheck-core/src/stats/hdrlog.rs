//! The run's latency histograms interval by interval, for `--hdr-log FILE`: the samples of
//! each timing metric (the same samples as the run's totals, [`super::metrics`]) recorded in
//! a histogram per metric that is handed out and reset at the end of every interval, so that
//! the intervals of one metric add up to its total.
//!
//! Events are handed in with `now`, the offset from the run's start:
//! [`IntervalLog::handle_result`] with each call result (once, at its end: its samples belong
//! to the interval in which it ended), [`IntervalLog::handle_register`] with each
//! registration. An interval closes when `now` reaches its end; [`IntervalLog::poll_interval`]
//! hands out the closed ones in order and [`IntervalLog::finish`] closes the last (partial)
//! one. An interval holds the metrics that had samples in it only.
//!
//! Pure: no clock is read, nothing is written (the shell encodes and writes the lines).

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::scenario::threshold::Metric;
use crate::stats::metrics::{register_rtt, timing_samples, TIMING_METRICS};
use crate::stats::outcome::{CallResult, RegisterResult, Side};

/// One closed interval.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Its start, from the run's start.
    pub start: Duration,
    /// Its length (shorter for the last one).
    pub length: Duration,
    /// The metrics with samples in it, in [`TIMING_METRICS`] order, and their samples
    /// (microseconds).
    pub histograms: Vec<(Metric, Histogram<u64>)>,
}

/// The histograms of the current interval, cut into [`Interval`]s as time passes.
#[derive(Debug)]
pub struct IntervalLog {
    interval: Duration,
    counted: Side,
    start: Duration,
    /// One per metric of [`TIMING_METRICS`], in its order.
    current: Vec<Histogram<u64>>,
    closed: VecDeque<Interval>,
    finished: bool,
}

/// 1 µs to 1 h at 3 significant figures, resized for anything longer: as the totals'.
fn micros_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .expect("constant bounds are valid for HdrHistogram");
    h.auto(true);
    h
}

fn index(metric: Metric) -> usize {
    TIMING_METRICS
        .iter()
        .position(|&m| m == metric)
        .expect("a timing metric")
}

impl IntervalLog {
    /// A log of `interval`-long intervals (a zero interval is taken as 1 ms) whose
    /// `call_duration` is the `counted` side's (as the totals'), starting at offset zero.
    #[must_use]
    pub fn new(interval: Duration, counted: Side) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            counted,
            start: Duration::ZERO,
            current: TIMING_METRICS.iter().map(|_| micros_histogram()).collect(),
            closed: VecDeque::new(),
            finished: false,
        }
    }

    fn record(&mut self, metric: Metric, value: u64, n: u64) {
        let h = &mut self.current[index(metric)];
        if h.record_n(value, n).is_err() {
            h.saturating_record_n(value, n);
        }
    }

    /// A call result, at `now`.
    pub fn handle_result(&mut self, now: Duration, r: &CallResult) {
        self.advance(now);
        let counted = r.side == self.counted;
        let mut samples = Vec::new();
        timing_samples(r, |metric, value, n| {
            if metric != Metric::CallDuration || counted {
                samples.push((metric, value, n));
            }
        });
        for (metric, value, n) in samples {
            self.record(metric, value, n);
        }
    }

    /// A registration's result, at `now`.
    pub fn handle_register(&mut self, now: Duration, r: &RegisterResult) {
        self.advance(now);
        if let Some(rtt) = register_rtt(r) {
            self.record(Metric::RegisterRtt, rtt, 1);
        }
    }

    /// The next closed interval, once `now` has reached its end.
    pub fn poll_interval(&mut self, now: Duration) -> Option<Interval> {
        self.advance(now);
        self.closed.pop_front()
    }

    /// The run ended at `now`: every interval not handed out yet, the last one ending at
    /// `now` (when it has samples).
    pub fn finish(&mut self, now: Duration) -> Vec<Interval> {
        self.advance(now);
        if !self.finished {
            self.finished = true;
            let end = now.max(self.start);
            self.close(end);
        }
        self.closed.drain(..).collect()
    }

    fn advance(&mut self, now: Duration) {
        if self.finished {
            return;
        }
        while now >= self.start + self.interval {
            let end = self.start + self.interval;
            self.close(end);
        }
    }

    /// Closes the current interval at `end` (kept when it has samples) and opens the next.
    fn close(&mut self, end: Duration) {
        let histograms: Vec<(Metric, Histogram<u64>)> = TIMING_METRICS
            .iter()
            .zip(&mut self.current)
            .filter(|(_, h)| !h.is_empty())
            .map(|(&metric, h)| (metric, std::mem::replace(h, micros_histogram())))
            .collect();
        if !histograms.is_empty() {
            self.closed.push_back(Interval {
                start: self.start,
                length: end.saturating_sub(self.start),
                histograms,
            });
        }
        self.start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::IntervalLog;
    use crate::scenario::threshold::Metric;
    use crate::stats::fixture::{callee, caller};
    use crate::stats::metrics::{Metrics, RunInfo};
    use crate::stats::outcome::{RegisterResult, Side};
    use std::time::{Duration, SystemTime};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_metric_s_intervals_add_up_to_the_run_s_totals() {
        let mut log = IntervalLog::new(ms(1000), Side::Caller);
        let mut totals = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
        let register = RegisterResult {
            role: "caller".into(),
            user: "1050".into(),
            rtt: Some(ms(7)),
            unregister: false,
            error: None,
        };
        log.handle_register(ms(10), &register);
        totals.record_register(&register);
        let mut intervals = Vec::new();
        for (at, r) in [
            (100, caller(0)),
            (900, callee(0)),
            (1500, caller(1)),
            (4100, caller(2)),
        ] {
            log.handle_result(ms(at), &r);
            totals.record_call(&r);
            intervals.extend(std::iter::from_fn(|| log.poll_interval(ms(at))));
        }
        intervals.extend(log.finish(ms(4200)));
        // The empty intervals (2 s to 4 s) are left out; the last is partial.
        let spans: Vec<(Duration, Duration)> =
            intervals.iter().map(|i| (i.start, i.length)).collect();
        assert_eq!(
            spans,
            vec![(ms(0), ms(1000)), (ms(1000), ms(1000)), (ms(4000), ms(200))]
        );
        let summary = totals.finish(ms(4200), false);
        for t in &summary.timings {
            let logged: u64 = intervals
                .iter()
                .flat_map(|i| &i.histograms)
                .filter(|(m, _)| *m == t.metric)
                .map(|(_, h)| h.len())
                .sum();
            assert_eq!(logged, t.micros.len(), "{}", t.metric.name());
        }
        let count = |i: usize, metric: Metric| {
            intervals[i]
                .histograms
                .iter()
                .find(|(m, _)| *m == metric)
                .map_or(0, |(_, h)| h.len())
        };
        assert_eq!(count(0, Metric::RegisterRtt), 1);
        assert_eq!(count(0, Metric::InviteTo200), 1, "the callee's is none");
        assert_eq!(count(0, Metric::CallDuration), 1, "the counted side's only");
        assert_eq!(count(0, Metric::ToneOnset), 2, "both sides' onsets");
        assert!(
            count(0, Metric::PacingLateness) > 2,
            "every frame's lateness"
        );
        assert_eq!(count(2, Metric::InviteTo200), 1);
    }
}
