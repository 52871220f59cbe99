//! Run reports: the metrics aggregator and the reporters that read its summary.
//!
//! - [`metrics`]: [`Metrics`] takes each call's figures once, at its end, and
//!   [`Metrics::finish`] makes the [`RunSummary`] that every reporter reads and that answers
//!   the scenario's thresholds ([`RunSummary::check`], [`RunSummary::verdict`]).
//! - [`console`]: the plain-text summary printed at the end of a run.
//! - [`junit`]: JUnit XML for GitLab's test report.
//! - [`json`]: the versioned JSON summary (`sipcheck.run/1`), HdrHistograms included.
//! - [`progress`]: the live progress line on stderr while the run goes.
//!
//! Reporters are pure functions writing to `impl Write`. Report files are written with
//! [`write_atomically`], so that a reader (a CI job, a dashboard) never sees half a report.
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! # use sipcheck::report::{self, Metrics, RunInfo};
//! # fn demo(scenario: &sipcheck::core::scenario::Scenario) -> Result<(), report::ReportError> {
//! let mut metrics = Metrics::new(SystemTime::now(), &RunInfo::from_scenario(scenario));
//! // … metrics.record_call(&result) for every call result, at its end …
//! let summary = metrics.finish(Duration::from_secs(60), false);
//! let thresholds = summary.check(&scenario.thresholds);
//! report::console::write_summary(&summary, &thresholds, &mut std::io::stdout().lock())
//!     .map_err(report::ReportError::Stdout)?;
//! report::write_atomically("reports/junit.xml".as_ref(), |w| {
//!     report::junit::write_junit(&summary, &thresholds, w)
//! })?;
//! report::write_atomically("reports/summary.json".as_ref(), |w| {
//!     report::json::write_json(&summary, &thresholds, w)
//! })?;
//! # Ok(()) }
//! ```

pub mod console;
#[cfg(test)]
mod fixture;
pub mod json;
pub mod junit;
pub mod metrics;
pub mod progress;
#[cfg(test)]
mod snapshot;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use metrics::{Metrics, RoleInfo, RunInfo, RunSummary, StepInfo, ThresholdResult, Verdict};
pub use progress::Progress;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report's directory could not be created.
    #[error("cannot create the report directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The temporary file beside the report could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The temporary file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing the report failed (disk full, …).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The report.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The finished temporary file could not be renamed to the report's name.
    #[error("cannot rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The report.
        to: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(io::Error),
}

/// Writes a report file so that a reader never sees half of it: `write` fills a temporary
/// file beside `path` (same directory, so the rename stays on one file system), which is
/// flushed, synced and then renamed over `path`. Missing parent directories are created. On
/// any error the temporary file is removed and `path` is left as it was.
///
/// # Errors
/// [`ReportError`], naming the file and the operation that failed.
pub fn write_atomically<F>(path: &Path, write: F) -> Result<(), ReportError>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|source| ReportError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let name = path
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let file = File::create(&tmp).map_err(|source| ReportError::Create {
        path: tmp.clone(),
        source,
    })?;
    let mut out = BufWriter::new(file);
    let written = write(&mut out)
        .and_then(|()| out.flush())
        .and_then(|()| out.get_ref().sync_all());
    drop(out);
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ReportError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        ReportError::Rename {
            from: tmp.clone(),
            to: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sipcheck-report-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_through_a_temporary_file_and_creates_directories() {
        let dir = scratch("atomic");
        let path = dir.join("nested/deeper/junit.xml");
        write_atomically(&path, |w| w.write_all(b"<testsuites/>\n")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "<testsuites/>\n");
        // Replaces an existing report whole.
        write_atomically(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let left: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["junit.xml"], "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_old_report_and_no_temporary_file() {
        let dir = scratch("failed");
        let path = dir.join("summary.json");
        write_atomically(&path, |w| w.write_all(b"old")).unwrap();
        let err = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            matches!(&err, ReportError::Write { path: p, .. } if p == &path),
            "{err:?}"
        );
        assert!(
            err.to_string().ends_with("summary.json: disk full"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_reported_with_its_path() {
        let dir = scratch("blocked");
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain-file");
        fs::write(&file, "x").unwrap();
        let err = write_atomically(&file.join("report.xml"), |_| Ok(())).unwrap_err();
        assert!(matches!(err, ReportError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("plain-file"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
