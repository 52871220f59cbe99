//! `--hdr-log FILE`: the run's latency histograms interval by interval
//! ([`sipcheck_core::stats::hdrlog`]) in the HdrHistogram interval log format, which
//! HdrHistogram's own tools read (Java `HistogramLogReader`, `HistogramLogProcessor`,
//! Python `hdrh.log.HistogramLogReader`, HdrHistogramVisualizer):
//!
//! ```text
//! #[Histogram log format version 1.3]
//! #[StartTime: 1765100000.123 (seconds since epoch), 2025-12-07T09:33:20.123Z]
//! #[BaseTime: 1765100000.123 (seconds since epoch)]
//! #[MaxValueDivisor: 1000.0]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=invite_to_200,0.000,1.000,41.215,HISTFAAAAC…
//! ```
//!
//! One line per interval (`--series-interval`, 1 s by default) and per timing metric that had
//! samples in it, tagged with the metric's name; timestamps in seconds from the run's start
//! (the base time); the histogram in the V2 compressed encoding (base64, as in the JSON
//! summary), values in microseconds; `Interval_Max` in milliseconds. Each line is flushed as
//! its interval closes, so a killed run leaves the intervals it had.

use std::io::{self, Write};
use std::time::Duration;

use sipcheck_core::stats::hdrlog::Interval;
use sipcheck_core::stats::record::rfc3339;

use super::json::encode_histogram;
use super::{AppendFile, ReportError};

/// Writes the header: format version, start and base time (`started`: the run's start, from
/// the Unix epoch), the divisor of `Interval_Max`, the legend.
///
/// # Errors
/// The writer's.
pub fn write_header(started: Duration, w: &mut impl Write) -> io::Result<()> {
    let secs = started.as_secs_f64();
    writeln!(w, "#[Histogram log format version 1.3]")?;
    writeln!(
        w,
        "#[StartTime: {secs:.3} (seconds since epoch), {}]",
        rfc3339(started)
    )?;
    writeln!(w, "#[BaseTime: {secs:.3} (seconds since epoch)]")?;
    writeln!(w, "#[MaxValueDivisor: 1000.0]")?;
    writeln!(
        w,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )
}

/// Writes one line per metric of `interval`.
///
/// # Errors
/// The writer's, or the encoder's.
pub fn write_interval(interval: &Interval, w: &mut impl Write) -> io::Result<()> {
    for (metric, h) in &interval.histograms {
        writeln!(
            w,
            "Tag={},{:.3},{:.3},{:.3},{}",
            metric.name(),
            interval.start.as_secs_f64(),
            interval.length.as_secs_f64(),
            h.max() as f64 / 1000.0,
            encode_histogram(h)?
        )?;
    }
    Ok(())
}

/// The interval log of a run, written interval by interval.
#[derive(Debug)]
pub struct HdrLogFile {
    file: AppendFile,
}

impl HdrLogFile {
    /// Creates (or truncates) the file at `path`, its directory too, and writes the header
    /// of a run that started at `started` (from the Unix epoch).
    ///
    /// # Errors
    /// [`ReportError`] naming the file.
    pub fn create(path: &str, started: Duration) -> Result<Self, ReportError> {
        let mut log = Self {
            file: AppendFile::create(path)?,
        };
        log.file.write(|w| write_header(started, w))?;
        Ok(log)
    }

    /// Appends an interval's lines and flushes them to the file.
    ///
    /// # Errors
    /// [`ReportError::Write`] naming the file.
    pub fn append(&mut self, interval: &Interval) -> Result<(), ReportError> {
        self.file.write(|w| write_interval(interval, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::scenario::threshold::Metric;

    #[test]
    fn a_log_has_the_standard_header_and_a_tagged_line_per_metric() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record(41_215).unwrap();
        h.record(1_000).unwrap();
        let interval = Interval {
            start: Duration::from_secs(2),
            length: Duration::from_millis(1000),
            histograms: vec![(Metric::InviteTo200, h.clone()), (Metric::RtpJitter, h)],
        };
        let mut out = Vec::new();
        write_header(Duration::from_millis(1_765_100_000_123), &mut out).unwrap();
        write_interval(&interval, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#[Histogram log format version 1.3]");
        assert_eq!(
            lines[1],
            "#[StartTime: 1765100000.123 (seconds since epoch), 2025-12-07T09:33:20.123Z]"
        );
        assert_eq!(
            lines[2],
            "#[BaseTime: 1765100000.123 (seconds since epoch)]"
        );
        assert_eq!(
            lines[4],
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        );
        assert!(
            lines[5].starts_with("Tag=invite_to_200,2.000,1.000,41.215,HISTFAAA"),
            "{}",
            lines[5]
        );
        assert!(
            lines[6].starts_with("Tag=rtp.jitter,2.000,"),
            "{}",
            lines[6]
        );
        assert_eq!(lines.len(), 7);
    }
}
