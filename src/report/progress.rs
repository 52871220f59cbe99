//! Live progress on stderr while a run goes.
//!
//! The executor feeds a [`Progress`]: [`Progress::on_call_started`] when a call starts,
//! [`Progress::on_call_finished`] with each call result (once, at its end), and
//! [`Progress::tick`] with the current time, as often as it likes (every 100 ms to 1 s). On a
//! terminal it keeps an `indicatif` spinner line up to date; otherwise (CI logs) it prints a
//! plain line every [`DEFAULT_EVERY`]:
//!
//! ```text
//! [  10.0s] started 200 active 20 passed 178 failed 2 rate(last 1s) 20.1/s p99(invite_to_200) 12.3 ms
//! ```
//!
//! The line is [`format_line`] of a [`Snapshot`]: a pure function. `Progress` never reads the
//! clock itself.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use sipcheck_core::stats::outcome::{CallResult, Side};

/// How often a plain progress line is printed by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// The window of the current call rate.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The figures of one progress line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Calls started.
    pub started: u64,
    /// Calls started and not yet finished.
    pub active: u64,
    /// Calls finished without failure.
    pub passed: u64,
    /// Calls finished with a failure.
    pub failed: u64,
    /// Calls started per second over about the last second; `None` before a second of data.
    pub rate: Option<f64>,
    /// The 99th percentile of INVITE-to-200 so far (from the scheduled start).
    pub p99_setup: Option<Duration>,
}

/// The plain progress line:
/// `[  10.0s] started 200 active 20 passed 178 failed 2 rate(last 1s) 20.1/s p99(invite_to_200) 12.3 ms`.
#[must_use]
pub fn format_line(s: &Snapshot) -> String {
    let rate = s
        .rate
        .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}/s"));
    let p99 = s.p99_setup.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    );
    format!(
        "[{:>6.1}s] started {} active {} passed {} failed {} rate(last 1s) {rate} p99(invite_to_200) {p99}",
        s.elapsed.as_secs_f64(),
        s.started,
        s.active,
        s.passed,
        s.failed
    )
}

enum Output {
    /// A spinner line on a terminal.
    Bar(ProgressBar),
    /// A plain line every `every`.
    Lines {
        out: Box<dyn Write + Send>,
        every: Duration,
        next: Instant,
    },
    /// Nothing.
    Off,
}

/// Live progress of a run. See the [module documentation](self).
pub struct Progress {
    started_at: Instant,
    counted_side: Side,
    started: u64,
    passed: u64,
    failed: u64,
    setup_us: Histogram<u64>,
    /// (time, calls started) samples over the rate window.
    window: VecDeque<(Instant, u64)>,
    output: Output,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("started", &self.started)
            .field("passed", &self.passed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Progress {
    /// Progress on stderr: a spinner line when stderr is a terminal, otherwise a plain line
    /// every `every`. Finished calls are counted from `counted_side`'s results (the caller
    /// side when the run has callers, as in the summary).
    #[must_use]
    pub fn stderr(started_at: Instant, counted_side: Side, every: Duration) -> Self {
        if io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            Self::with_output(started_at, counted_side, Output::Bar(bar))
        } else {
            Self::lines(started_at, counted_side, every, Box::new(io::stderr()))
        }
    }

    /// Progress as plain lines every `every` on `out`.
    #[must_use]
    pub fn lines(
        started_at: Instant,
        counted_side: Side,
        every: Duration,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let every = every.max(Duration::from_millis(100));
        Self::with_output(
            started_at,
            counted_side,
            Output::Lines {
                out,
                every,
                next: started_at + every,
            },
        )
    }

    /// No progress output (`--quiet`); the counters still work.
    #[must_use]
    pub fn off(started_at: Instant, counted_side: Side) -> Self {
        Self::with_output(started_at, counted_side, Output::Off)
    }

    fn with_output(started_at: Instant, counted_side: Side, output: Output) -> Self {
        let mut setup_us = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant bounds are valid for HdrHistogram");
        setup_us.auto(true);
        Self {
            started_at,
            counted_side,
            started: 0,
            passed: 0,
            failed: 0,
            setup_us,
            window: VecDeque::from([(started_at, 0)]),
            output,
        }
    }

    /// A call started.
    pub fn on_call_started(&mut self) {
        self.started += 1;
    }

    /// A call finished (one side of it; only the counted side counts).
    pub fn on_call_finished(&mut self, r: &CallResult) {
        if r.side != self.counted_side {
            return;
        }
        if r.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        if r.side == Side::Caller {
            if let Some(d) = r.invite_to_200 {
                let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                if self.setup_us.record(us).is_err() {
                    self.setup_us.saturating_record(us);
                }
            }
        }
    }

    /// The figures at `now`.
    #[must_use]
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let finished = self.passed + self.failed;
        let rate = self.window.front().and_then(|&(at, started)| {
            let span = now.saturating_duration_since(at);
            (span >= RATE_WINDOW / 2)
                .then(|| self.started.saturating_sub(started) as f64 / span.as_secs_f64())
        });
        Snapshot {
            elapsed: now.saturating_duration_since(self.started_at),
            started: self.started,
            // Callee-side counting cannot see starts: no meaningful "active" then.
            active: self.started.saturating_sub(finished),
            passed: self.passed,
            failed: self.failed,
            rate,
            p99_setup: (!self.setup_us.is_empty())
                .then(|| Duration::from_micros(self.setup_us.value_at_quantile(0.99))),
        }
    }

    /// Updates the display; call it regularly with the current time.
    pub fn tick(&mut self, now: Instant) {
        // Keep one sample at or before the window's start, and the ones inside it.
        self.window.push_back((now, self.started));
        while self.window.len() > 2
            && now.saturating_duration_since(self.window[1].0) >= RATE_WINDOW
        {
            self.window.pop_front();
        }
        let snapshot = self.snapshot(now);
        match &mut self.output {
            Output::Bar(bar) => {
                bar.set_message(format_line(&snapshot));
                bar.tick();
            }
            Output::Lines { out, every, next } => {
                if now >= *next {
                    // Progress is best effort: a closed stderr must not stop the run.
                    let _ = writeln!(out, "{}", format_line(&snapshot));
                    while *next <= now {
                        *next += *every;
                    }
                }
            }
            Output::Off => {}
        }
    }

    /// Ends the display: clears the spinner, or prints a last plain line.
    pub fn finish(&mut self, now: Instant) {
        let snapshot = self.snapshot(now);
        match &mut self.output {
            Output::Bar(bar) => bar.finish_and_clear(),
            Output::Lines { out, .. } => {
                let _ = writeln!(out, "{}", format_line(&snapshot));
                let _ = out.flush();
            }
            Output::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use sipcheck_core::stats::fixture;

    #[test]
    fn the_plain_line() {
        let s = Snapshot {
            elapsed: Duration::from_secs(10),
            started: 200,
            active: 20,
            passed: 178,
            failed: 2,
            rate: Some(20.07),
            p99_setup: Some(Duration::from_micros(12_345)),
        };
        assert_eq!(
            format_line(&s),
            "[  10.0s] started 200 active 20 passed 178 failed 2 rate(last 1s) 20.1/s p99(invite_to_200) 12.3 ms"
        );
        let empty = Snapshot {
            elapsed: Duration::from_millis(250),
            started: 0,
            active: 0,
            passed: 0,
            failed: 0,
            rate: None,
            p99_setup: None,
        };
        assert_eq!(
            format_line(&empty),
            "[   0.2s] started 0 active 0 passed 0 failed 0 rate(last 1s) - p99(invite_to_200) -"
        );
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn counts_rate_and_plain_lines_every_period() {
        let t0 = Instant::now();
        let sink = Shared::default();
        let mut p = Progress::lines(
            t0,
            Side::Caller,
            Duration::from_secs(5),
            Box::new(sink.clone()),
        );
        // 20 calls per second for 6 s, ticking every 100 ms; each call lasts 1 s.
        let mut started_at = Vec::new();
        for tenth in 1..=60u64 {
            let now = t0 + Duration::from_millis(100 * tenth);
            for _ in 0..2 {
                p.on_call_started();
                started_at.push(tenth);
            }
            for (i, _) in started_at
                .iter()
                .enumerate()
                .filter(|(_, s)| **s + 10 == tenth)
            {
                let mut r = fixture::caller(i as u64 % 100);
                if i.rem_euclid(40) == 0 {
                    r.failures.push(sipcheck_core::stats::outcome::Failure {
                        step: "call",
                        line: 17,
                        col: 9,
                        kind: sipcheck_core::stats::outcome::FailureKind::SipCode(503),
                        message: "503".into(),
                    });
                }
                p.on_call_finished(&r);
                // The callee's side of the same call does not count again.
                p.on_call_finished(&fixture::callee(i as u64 % 100));
            }
            p.tick(now);
        }
        let s = p.snapshot(t0 + Duration::from_secs(6));
        assert_eq!(s.started, 120);
        assert_eq!(s.passed + s.failed, 100);
        assert_eq!(s.failed, 3);
        assert_eq!(s.active, 20);
        let rate = s.rate.unwrap();
        assert!((rate - 20.0).abs() < 0.01, "{rate}");
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one line per 5 s: {text}");
        assert!(
            text.starts_with("[   5.0s] started 100 active 20 passed 78 failed 2 rate(last 1s) 20.0/s p99(invite_to_200) "),
            "{text}"
        );
        p.finish(t0 + Duration::from_secs(6));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn the_rate_follows_the_last_second() {
        let t0 = Instant::now();
        let mut p = Progress::off(t0, Side::Caller);
        for _ in 0..100 {
            p.on_call_started();
        }
        p.tick(t0 + Duration::from_secs(1));
        // Then nothing starts for two seconds.
        p.tick(t0 + Duration::from_secs(2));
        p.tick(t0 + Duration::from_secs(3));
        assert_eq!(p.snapshot(t0 + Duration::from_secs(3)).rate, Some(0.0));
    }
}
