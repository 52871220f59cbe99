//! A distribution's shape for a chart: a histogram's samples cut into equal-width buckets
//! ([`buckets`]), or its percentile curve ([`percentile_curve`], HdrHistogram's plot of value
//! against "nines"), and the PESQ scores of a run's calls ([`Scores`]), which the run's
//! summary does not keep.
//!
//! Pure data shaping for the HTML report: the samples come from the run's HdrHistograms
//! (bounded memory whatever the run's length), nothing is drawn here.

use hdrhistogram::Histogram;

use crate::stats::metrics::{pesq_of_milli, PESQ_OFFSET_MILLI};

/// One bar of a histogram chart: the samples from `lo` to `hi`, in the caller's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's lower bound (included).
    pub lo: f64,
    /// Its upper bound (included for the last bucket only).
    pub hi: f64,
    /// Samples in it.
    pub count: u64,
}

/// The samples of `h` in at most `n` equal-width buckets from its smallest to its largest
/// value, each bound multiplied by `scale` (`0.001` turns microseconds into milliseconds).
/// A histogram whose samples are all alike gives one bucket; an empty one (or `n == 0`) none.
/// The counts add up to the histogram's.
#[must_use]
pub fn buckets(h: &Histogram<u64>, scale: f64, n: usize) -> Vec<Bucket> {
    if h.is_empty() || n == 0 {
        return Vec::new();
    }
    let (min, max) = (h.min(), h.max());
    let span = max - min;
    if h.equivalent(min, max) {
        return vec![Bucket {
            lo: min as f64 * scale,
            hi: max as f64 * scale,
            count: h.len(),
        }];
    }
    let n = (n as u64).min(span);
    let width = span.div_ceil(n);
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| {
            let lo = min + i * width;
            let hi = (lo + width).min(max);
            Bucket {
                lo: lo as f64 * scale,
                hi: hi as f64 * scale,
                count: 0,
            }
        })
        .filter(|b| b.lo <= max as f64 * scale)
        .collect();
    // Each recorded value (HdrHistogram's equivalence range, by its highest equivalent
    // value clamped to the recorded range) goes to the bucket it falls in.
    for v in h.iter_recorded() {
        let value = h.highest_equivalent(v.value_iterated_to()).clamp(min, max);
        let i = usize::try_from((value - min) / width)
            .unwrap_or(usize::MAX)
            .min(out.len() - 1);
        out[i].count += v.count_at_value();
    }
    out
}

/// One point of a percentile curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentilePoint {
    /// The percentile, 0 to 100.
    pub percentile: f64,
    /// Its "nines", `-log10(1 - percentile / 100)`: 0 for p0, 1 for p90, 2 for p99, 3 for
    /// p99.9 (an axis on which the tail gets room).
    pub nines: f64,
    /// The value at that percentile, multiplied by `scale`.
    pub value: f64,
}

/// The percentiles a curve is drawn through, as far as the samples resolve them.
const CURVE: [f64; 14] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
];

/// The percentile curve of `h`, values multiplied by `scale`: p0, p10, p25, p50, p75, p90,
/// p95, p97.5, p99, p99.5, p99.9, p99.95, p99.99 and p99.999 as far as the sample count
/// resolves them (p99.9 needs 1000 samples), then the maximum, drawn at the next nine.
/// Empty for an empty histogram.
#[must_use]
pub fn percentile_curve(h: &Histogram<u64>, scale: f64) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = h.len() as f64;
    let nines = |p: f64| -(1.0 - p / 100.0).log10();
    let mut out: Vec<PercentilePoint> = CURVE
        .iter()
        .copied()
        .filter(|&p| p == 0.0 || 1.0 / (1.0 - p / 100.0) <= n)
        .map(|p| PercentilePoint {
            percentile: p,
            nines: nines(p),
            value: if p == 0.0 {
                h.min() as f64 * scale
            } else {
                h.value_at_quantile(p / 100.0) as f64 * scale
            },
        })
        .collect();
    let last = out.last().map_or(0.0, |p| p.nines);
    out.push(PercentilePoint {
        percentile: 100.0,
        nines: (last + 1.0 + 1e-6).floor().max(1.0),
        value: h.max() as f64 * scale,
    });
    out
}

/// The PESQ scores (ITU-T P.862 raw) of a run's calls, for their distribution: the run's
/// [`QualitySummary::pesq_milli`](super::metrics::QualitySummary::pesq_milli) histogram, read
/// in score units.
#[derive(Debug, Clone)]
pub struct Scores {
    milli: Histogram<u64>,
}

impl Scores {
    /// The scores of a histogram in the encoding of
    /// [`QualitySummary::pesq_milli`](super::metrics::QualitySummary::pesq_milli).
    #[must_use]
    pub fn from_milli(milli: Histogram<u64>) -> Self {
        Self { milli }
    }

    /// How many scores.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.milli.len()
    }

    /// Whether no score was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.milli.is_empty()
    }

    /// The score at percentile `p` (0 to 100); `None` without scores.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Option<f64> {
        (!self.is_empty()).then(|| pesq_of_milli(self.milli.value_at_quantile(p / 100.0)))
    }

    /// The lowest score.
    #[must_use]
    pub fn min(&self) -> Option<f64> {
        (!self.is_empty()).then(|| pesq_of_milli(self.milli.min()))
    }

    /// The scores in at most `n` equal-width buckets ([`buckets`]), in score units.
    #[must_use]
    pub fn buckets(&self, n: usize) -> Vec<Bucket> {
        let offset = PESQ_OFFSET_MILLI as f64 / 1000.0;
        buckets(&self.milli, 0.001, n)
            .into_iter()
            .map(|b| Bucket {
                lo: b.lo - offset,
                hi: b.hi - offset,
                ..b
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn buckets_cover_min_to_max_and_their_counts_add_up() {
        // 1..=100 ms in microseconds: ten buckets of ten samples.
        let h = histogram((1..=100).map(|ms| ms * 1000));
        let b = buckets(&h, 0.001, 10);
        assert_eq!(b.len(), 10, "{b:?}");
        assert!((b[0].lo - 1.0).abs() < 1e-9, "{b:?}");
        assert!((b[9].hi - 100.0).abs() < 0.1, "{b:?}");
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 100);
        for w in b.windows(2) {
            assert!((w[0].hi - w[1].lo).abs() < 1e-9, "contiguous: {b:?}");
        }
        assert!(b.iter().all(|b| (9..=11).contains(&b.count)), "{b:?}");
    }

    #[test]
    fn a_tail_sample_lands_in_the_last_bucket() {
        let h = histogram([10_000, 10_000, 10_000, 200_000]);
        let b = buckets(&h, 0.001, 4);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [3, 0, 0, 1]);
    }

    #[test]
    fn equal_samples_give_one_bucket_and_nothing_gives_none() {
        let b = buckets(&histogram([5000; 7]), 0.001, 20);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].count, 7);
        assert!((b[0].lo - 5.0).abs() < 1e-9);
        assert!(buckets(&histogram([]), 1.0, 20).is_empty());
        assert!(buckets(&histogram([1, 2]), 1.0, 0).is_empty());
        // Fewer distinct values than buckets asked: no empty-width bucket.
        let b = buckets(&histogram([1, 2, 3]), 1.0, 50);
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 3);
    }

    #[test]
    fn the_curve_stops_at_the_percentiles_the_samples_resolve_then_the_max() {
        let h = histogram((1..=100).map(|ms| ms * 1000));
        let c = percentile_curve(&h, 0.001);
        let ps: Vec<f64> = c.iter().map(|p| p.percentile).collect();
        assert_eq!(
            ps,
            [0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 100.0]
        );
        assert!((c[0].value - 1.0).abs() < 0.01, "{c:?}");
        assert!((c[3].value - 50.0).abs() < 0.1, "{c:?}");
        assert!((c[8].nines - 2.0).abs() < 1e-9, "p99 is two nines");
        assert_eq!(c[9].nines, 3.0, "the max at the next nine");
        assert!((c[9].value - 100.0).abs() < 0.1, "{c:?}");
        // Non-decreasing.
        for w in c.windows(2) {
            assert!(w[0].value <= w[1].value && w[0].nines < w[1].nines, "{c:?}");
        }
        // One sample: its min and its max.
        let c = percentile_curve(&histogram([42]), 1.0);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c.iter().all(|p| p.value == 42.0));
        assert!(percentile_curve(&histogram([]), 1.0).is_empty());
    }

    /// The scores as a run's metrics keep them.
    fn scores(values: &[f64]) -> Scores {
        let mut m = crate::stats::metrics::Metrics::new(
            std::time::SystemTime::UNIX_EPOCH,
            &crate::stats::metrics::RunInfo::default(),
        );
        let mut c = crate::stats::fixture::caller(1);
        c.pesq = values.to_vec();
        m.record_call(&c);
        Scores::from_milli(
            m.finish(std::time::Duration::from_secs(1), false)
                .quality
                .pesq_milli,
        )
    }

    #[test]
    fn pesq_scores_keep_their_sign_and_distribution() {
        let s = scores(&[]);
        assert!(s.is_empty());
        assert_eq!(s.percentile(50.0), None);
        let s = scores(&[4.2, 3.9, -0.3]);
        assert_eq!(s.len(), 3);
        assert!((s.min().unwrap() + 0.3).abs() < 0.01, "{:?}", s.min());
        assert!((s.percentile(50.0).unwrap() - 3.9).abs() < 0.01);
        assert!((s.percentile(100.0).unwrap() - 4.2).abs() < 0.01);
        // One score: every percentile is it, to the thousandth.
        let one = scores(&[3.887]);
        assert_eq!(one.min(), one.percentile(50.0));
        assert!((one.min().unwrap() - 3.887).abs() < 1e-9, "{:?}", one.min());
        let b = s.buckets(5);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 3);
        assert!((b[0].lo + 0.3).abs() < 0.01, "{b:?}");
    }
}
