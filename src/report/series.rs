//! `--series FILE`: the run's time series ([`sipcheck_core::stats::series`]), one line per
//! interval, written as the run goes (each row flushed as it closes, so a killed run leaves
//! the rows it had). CSV with a header line, or JSON Lines when the file's name ends in
//! `.jsonl`. An empty field (CSV) or `null` (JSON) is a figure with nothing to measure in that
//! interval.

use std::io::{self, Write};
use std::path::Path;

use sipcheck_core::stats::series::SeriesRow;

use super::{AppendFile, ReportError};

/// The columns, in order (CSV header; JSON keys).
pub const COLUMNS: [&str; 15] = [
    "t_s",
    "end_s",
    "started",
    "active",
    "passed",
    "failed",
    "call_rate",
    "invite_to_200_p50_ms",
    "invite_to_200_p90_ms",
    "invite_to_200_p99_ms",
    "invite_to_200_max_ms",
    "rtp_loss_ratio",
    "rtp_jitter_p99_ms",
    "pacing_lateness_p99_ms",
    "frames_skipped",
];

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// `.jsonl` is JSON Lines; anything else CSV.
    #[must_use]
    pub fn of(path: &str) -> Self {
        if Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
        {
            Self::JsonLines
        } else {
            Self::Csv
        }
    }
}

/// The values of a row, in [`COLUMNS`] order (`None`: nothing measured).
fn values(row: &SeriesRow) -> [Option<String>; 15] {
    let secs = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64());
    let ms = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    let setup = row.setup;
    [
        Some(secs(row.start)),
        Some(secs(row.end)),
        Some(row.started.to_string()),
        Some(row.active.to_string()),
        Some(row.passed.to_string()),
        Some(row.failed.to_string()),
        Some(format!("{:.3}", row.call_rate())),
        setup.map(|p| ms(p.p50)),
        setup.map(|p| ms(p.p90)),
        setup.map(|p| ms(p.p99)),
        setup.map(|p| ms(p.max)),
        row.rtp_loss_ratio.map(|r| format!("{r:.6}")),
        row.jitter_p99_ms.map(|j| format!("{j:.3}")),
        row.pacing_lateness_p99.map(ms),
        Some(row.frames_skipped.to_string()),
    ]
}

/// Writes one row (CSV: the header comes first, from [`write_header`]).
///
/// # Errors
/// The writer's.
pub fn write_row(format: Format, row: &SeriesRow, w: &mut impl Write) -> io::Result<()> {
    let values = values(row);
    match format {
        Format::Csv => {
            let fields: Vec<&str> = values.iter().map(|v| v.as_deref().unwrap_or("")).collect();
            writeln!(w, "{}", fields.join(","))
        }
        Format::JsonLines => {
            // Every value is a number as formatted (valid JSON as it is); nothing measured
            // is null. The keys in column order.
            let fields: Vec<String> = COLUMNS
                .iter()
                .zip(&values)
                .map(|(name, value)| format!("\"{name}\":{}", value.as_deref().unwrap_or("null")))
                .collect();
            writeln!(w, "{{{}}}", fields.join(","))
        }
    }
}

/// Writes the CSV header line (nothing for JSON Lines).
///
/// # Errors
/// The writer's.
pub fn write_header(format: Format, w: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Csv => writeln!(w, "{}", COLUMNS.join(",")),
        Format::JsonLines => Ok(()),
    }
}

/// The series file of a run, written row by row.
#[derive(Debug)]
pub struct SeriesFile {
    format: Format,
    file: AppendFile,
}

impl SeriesFile {
    /// Creates (or truncates) the file at `path`, its directory too, and writes the header.
    ///
    /// # Errors
    /// [`ReportError`] naming the file.
    pub fn create(path: &str) -> Result<Self, ReportError> {
        let mut series = Self {
            format: Format::of(path),
            file: AppendFile::create(path)?,
        };
        let format = series.format;
        series.file.write(|w| write_header(format, w))?;
        Ok(series)
    }

    /// Appends a row and flushes it to the file.
    ///
    /// # Errors
    /// [`ReportError::Write`] naming the file.
    pub fn append(&mut self, row: &SeriesRow) -> Result<(), ReportError> {
        let format = self.format;
        self.file.write(|w| write_row(format, row, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcheck_core::stats::series::Percentiles;
    use std::time::Duration;

    fn row(setup: bool) -> SeriesRow {
        let ms = Duration::from_millis;
        SeriesRow {
            start: Duration::from_secs(2),
            end: Duration::from_secs(3),
            started: 20,
            active: 7,
            passed: 18,
            failed: 1,
            setup: setup.then_some(Percentiles {
                p50: ms(12),
                p90: ms(20),
                p99: ms(31),
                max: ms(40),
            }),
            rtp_loss_ratio: setup.then_some(0.0125),
            jitter_p99_ms: setup.then_some(1.5),
            pacing_lateness_p99: setup.then(|| Duration::from_micros(250)),
            frames_skipped: 0,
        }
    }

    #[test]
    fn csv_rows_have_every_column_and_empty_fields_for_nothing_measured() {
        let mut out = Vec::new();
        write_header(Format::Csv, &mut out).unwrap();
        write_row(Format::Csv, &row(true), &mut out).unwrap();
        write_row(Format::Csv, &row(false), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "2.000,3.000,20,7,18,1,20.000,12.000,20.000,31.000,40.000,0.012500,1.500,0.250,0"
        );
        assert_eq!(lines[2], "2.000,3.000,20,7,18,1,20.000,,,,,,,,0");
    }

    #[test]
    fn json_lines_have_numbers_and_nulls() {
        let mut out = Vec::new();
        write_header(Format::JsonLines, &mut out).unwrap();
        write_row(Format::JsonLines, &row(false), &mut out).unwrap();
        write_row(Format::JsonLines, &row(true), &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let full: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(full["invite_to_200_p99_ms"].as_f64(), Some(31.0));
        assert_eq!(full["rtp_loss_ratio"].as_f64(), Some(0.0125));
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["started"], 20);
        assert_eq!(v["t_s"].as_f64(), Some(2.0));
        assert_eq!(v["invite_to_200_p99_ms"], serde_json::Value::Null);
        assert_eq!(v.as_object().unwrap().len(), COLUMNS.len());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("{\"t_s\":2.000,\"end_s\":3.000,"),
            "{text}"
        );
        assert_eq!(Format::of("a/b.JSONL"), Format::JsonLines);
        assert_eq!(Format::of("a/b.csv"), Format::Csv);
    }
}
