//! The rows of a run's time series kept for a report drawn at its end (the HTML report), in
//! bounded memory whatever the run's length and interval: past a cap, neighbouring rows are
//! merged two by two (and the rows after them too), so a chart always has between half the
//! cap and the cap of points.
//!
//! A merged row ([`merge`]) adds the counts (`started`, `passed`, `failed`, frames skipped),
//! keeps the later `active`, and takes the worst (the largest) of each figure (setup
//! percentiles, RTP loss, jitter p99, pacing lateness p99): a merged point never hides a bad
//! interval, and is never better than any interval in it.

use crate::stats::series::{Percentiles, SeriesRow};

/// The default cap: an hour of 1-second rows.
pub const DEFAULT_CAP: usize = 3600;

/// Two neighbouring rows as one (see the module documentation): from `a`'s start to `b`'s end.
#[must_use]
pub fn merge(a: &SeriesRow, b: &SeriesRow) -> SeriesRow {
    fn worst<T: PartialOrd + Copy>(x: Option<T>, y: Option<T>) -> Option<T> {
        match (x, y) {
            (Some(x), Some(y)) => Some(if y > x { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
    let setup = match (a.setup, b.setup) {
        (Some(x), Some(y)) => Some(Percentiles {
            p50: x.p50.max(y.p50),
            p90: x.p90.max(y.p90),
            p99: x.p99.max(y.p99),
            max: x.max.max(y.max),
        }),
        (x, None) => x,
        (None, y) => y,
    };
    SeriesRow {
        start: a.start,
        end: b.end,
        started: a.started + b.started,
        active: b.active,
        passed: a.passed + b.passed,
        failed: a.failed + b.failed,
        setup,
        rtp_loss_ratio: worst(a.rtp_loss_ratio, b.rtp_loss_ratio),
        jitter_p99_ms: worst(a.jitter_p99_ms, b.jitter_p99_ms),
        pacing_lateness_p99: worst(a.pacing_lateness_p99, b.pacing_lateness_p99),
        frames_skipped: a.frames_skipped + b.frames_skipped,
    }
}

/// The rows kept, at most a cap of them (see the module documentation).
#[derive(Debug, Clone)]
pub struct KeptRows {
    cap: usize,
    /// How many of the series' rows each kept row stands for (a power of two).
    factor: u32,
    rows: Vec<SeriesRow>,
    /// The rows of the group being filled, merged, and how many.
    pending: Option<(SeriesRow, u32)>,
}

impl KeptRows {
    /// Keeps at most `cap` rows (an odd cap is taken as the next even number, at least 2).
    #[must_use]
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2).next_multiple_of(2);
        Self {
            cap,
            factor: 1,
            rows: Vec::new(),
            pending: None,
        }
    }

    /// The series' next row.
    pub fn push(&mut self, row: SeriesRow) {
        let (merged, n) = match self.pending.take() {
            Some((p, n)) => (merge(&p, &row), n + 1),
            None => (row, 1),
        };
        if n < self.factor {
            self.pending = Some((merged, n));
            return;
        }
        self.rows.push(merged);
        if self.rows.len() >= self.cap {
            self.rows = self
                .rows
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => merge(a, b),
                    [a] => a.clone(),
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            self.factor *= 2;
        }
    }

    /// How many of the series' rows each kept row stands for (1 until the cap was reached).
    #[must_use]
    pub fn factor(&self) -> u32 {
        self.factor
    }

    /// The rows kept, the last one partial (fewer rows merged) when the series ended inside
    /// a group.
    #[must_use]
    pub fn into_rows(self) -> Vec<SeriesRow> {
        let mut rows = self.rows;
        rows.extend(self.pending.map(|(p, _)| p));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn row(i: u64) -> SeriesRow {
        let ms = Duration::from_millis;
        SeriesRow {
            start: Duration::from_secs(i),
            end: Duration::from_secs(i + 1),
            started: 2,
            active: i,
            passed: 1,
            failed: i % 2,
            setup: (!i.is_multiple_of(3)).then(|| Percentiles {
                p50: ms(10 + i),
                p90: ms(20 + i),
                p99: ms(30 + i),
                max: ms(40 + i),
            }),
            rtp_loss_ratio: Some(if i == 5 { 0.25 } else { 0.0 }),
            jitter_p99_ms: None,
            pacing_lateness_p99: Some(Duration::from_micros(100 * i)),
            frames_skipped: 1,
        }
    }

    #[test]
    fn a_merge_adds_the_counts_and_keeps_the_worst_figures() {
        let m = merge(&row(4), &row(5));
        assert_eq!(
            (m.start, m.end),
            (Duration::from_secs(4), Duration::from_secs(6))
        );
        assert_eq!((m.started, m.passed, m.failed), (4, 2, 1));
        assert_eq!(m.active, 5, "the later interval's");
        assert_eq!(m.setup.unwrap().p99, Duration::from_millis(35));
        assert_eq!(m.rtp_loss_ratio, Some(0.25), "the bad interval shows");
        assert_eq!(m.jitter_p99_ms, None);
        assert_eq!(m.pacing_lateness_p99, Some(Duration::from_micros(500)));
        assert_eq!(m.frames_skipped, 2);
        // A row without setup figures takes the other's.
        let m = merge(&row(3), &row(4));
        assert_eq!(m.setup, row(4).setup);
    }

    #[test]
    fn under_the_cap_every_row_is_kept_as_it_was() {
        let mut k = KeptRows::new(10);
        for i in 0..9 {
            k.push(row(i));
        }
        assert_eq!(k.factor(), 1);
        let rows = k.into_rows();
        assert_eq!(rows, (0..9).map(row).collect::<Vec<_>>());
    }

    #[test]
    fn past_the_cap_rows_are_merged_and_nothing_is_lost() {
        let mut k = KeptRows::new(10);
        for i in 0..1000 {
            k.push(row(i));
        }
        // 1000 rows in groups of 128: 7 whole ones, then 104 rows in the partial last.
        assert_eq!(k.factor(), 128);
        let rows = k.into_rows();
        assert!(rows.len() <= 10, "{}", rows.len());
        assert_eq!(rows.len(), 8);
        assert_eq!(rows.iter().map(|r| r.started).sum::<u64>(), 2000);
        assert_eq!(rows.iter().map(|r| r.passed).sum::<u64>(), 1000);
        assert_eq!(rows.iter().map(|r| r.failed).sum::<u64>(), 500);
        // Contiguous, from the first row's start to the last one's end.
        assert_eq!(rows[0].start, Duration::ZERO);
        assert_eq!(rows.last().unwrap().end, Duration::from_secs(1000));
        for w in rows.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(rows[0].end, Duration::from_secs(128));
        assert_eq!(rows[0].rtp_loss_ratio, Some(0.25), "row 5's loss shows");
        assert_eq!(rows.last().unwrap().active, 999);
    }
}
