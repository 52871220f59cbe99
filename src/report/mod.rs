//! Run reports: the reporters that format a run's figures.
//!
//! The figures come from the core: [`Metrics`] takes each call's figures once, at its end,
//! and [`Metrics::finish`] makes the [`RunSummary`] that every reporter reads and that answers
//! the scenario's thresholds ([`RunSummary::check`], [`RunSummary::verdict`], in
//! [`sipcheck_core::stats::verdict`]). Nothing here computes a figure or a verdict.
//!
//! - [`console`]: the plain-text summary printed at the end of a run.
//! - [`junit`]: JUnit XML for GitLab's test report.
//! - [`json`]: the versioned JSON summary (`sipcheck.run/1`), HdrHistograms included.
//! - [`progress`]: the live progress line on stderr while the run goes.
//! - [`series`]: the run's time series, one CSV or JSON Lines row per interval, as it goes.
//! - [`openmetrics`]: the headline figures in the OpenMetrics text format (GitLab metrics).
//! - [`html`]: the run as one self-contained HTML page with charts, for people.
//! - [`values`]: threshold values and units as the reports spell them.
//!
//! Reporters are pure functions writing to `impl Write`. Report files are written with
//! [`write_report`]: `-` is standard output; a regular file goes through
//! [`write_atomically`], so that a reader (a CI job, a dashboard) never sees half a report; a
//! symbolic link is written through (its target replaced); a device, FIFO or `/dev/fd/N` is
//! written in place and never replaced ([`Destination`]).
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! # use sipcheck::report;
//! # use sipcheck::core::stats::metrics::{Metrics, RunInfo};
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

pub mod calls;
pub mod console;
pub mod hdrlog;
pub mod html;
pub mod json;
pub mod junit;
pub mod openmetrics;
pub mod progress;
pub mod series;
#[cfg(test)]
mod snapshot;
pub mod values;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use progress::Progress;
#[cfg(doc)]
use sipcheck_core::stats::metrics::{Metrics, RunSummary};

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
    remove_stale_temporaries(&dir, &name);
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

/// Removes the temporary files of `name` left in `dir` by a sipcheck that was killed while
/// writing (`.NAME.PID.tmp` whose process is gone), so that they do not pile up. Those of a
/// live process (another run writing the same report now) are left alone.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Where a report goes, given the path the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`: standard output.
    Stdout,
    /// A regular file, or nothing yet: written beside and renamed over
    /// ([`write_atomically`]). For a symbolic link this is the file it points to, so the
    /// link stays and its target is replaced.
    Atomic(PathBuf),
    /// Something that is not a regular file (a character device such as `/dev/null` or a
    /// terminal, a FIFO, a socket, `/dev/fd/N`): opened and written where it is, never
    /// replaced.
    InPlace(PathBuf),
}

/// How many symbolic links are followed before giving up (as Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

impl Destination {
    /// Decides where the report named `path` goes: `-` is standard output; symbolic links
    /// are followed to their target; a regular file or a path that does not exist yet is
    /// replaced atomically; anything else (device, FIFO, socket, a descriptor under
    /// `/proc` or `/dev/fd`) is written in place.
    ///
    /// # Errors
    /// A link that cannot be read or loops, or a path whose type cannot be read.
    pub fn of(path: &str) -> io::Result<Self> {
        if path == "-" {
            return Ok(Self::Stdout);
        }
        let mut p = PathBuf::from(path);
        for _ in 0..MAX_LINKS {
            let meta = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::Atomic(p)),
                Err(e) => return Err(e),
            };
            if !meta.file_type().is_symlink() {
                return Ok(if meta.is_file() && !under_proc(&p) {
                    Self::Atomic(p)
                } else {
                    Self::InPlace(p)
                });
            }
            // A link to something that exists but is not a regular file (a descriptor's
            // pipe, a device): written through the link. /proc's descriptor links name
            // things such as `pipe:[1234]` that no path reaches.
            match fs::metadata(&p) {
                Ok(m) if !m.is_file() || under_proc(&p) => return Ok(Self::InPlace(p)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let target = fs::read_link(&p)?;
            p = if target.is_absolute() {
                target
            } else {
                p.parent()
                    .map_or_else(|| target.clone(), |d| d.join(&target))
            };
        }
        Err(io::Error::other(format!(
            "{path}: more than {MAX_LINKS} symbolic links"
        )))
    }
}

/// Checks, before any work, that a report (or recording) could be written to `path` as
/// [`write_report`] would: `-` is fine; a device, FIFO or descriptor path must exist and not
/// be a directory; a regular file (or one to be created, a symbolic link's target) must not
/// be a directory, and the nearest existing directory above it must take a new file (a
/// hidden probe file is created there and removed). Nothing else is written; missing
/// directories are left to [`write_report`].
///
/// # Errors
/// [`ReportError::Create`] naming the path and why it cannot be written.
pub fn check_writable(path: &str) -> Result<(), ReportError> {
    let refuse = |p: &Path, source: io::Error| ReportError::Create {
        path: p.to_path_buf(),
        source,
    };
    let dest = Destination::of(path).map_err(|e| refuse(Path::new(path), e))?;
    match dest {
        Destination::Stdout => Ok(()),
        Destination::InPlace(target) => match fs::metadata(&target) {
            Ok(m) if m.is_dir() => Err(refuse(
                &target,
                io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(refuse(&target, e)),
        },
        Destination::Atomic(target) => {
            if fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Err(refuse(
                    &target,
                    io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
                ));
            }
            // The nearest existing ancestor: a directory that takes a new file.
            let mut dir = match target.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            loop {
                match fs::metadata(&dir) {
                    Ok(m) if m.is_dir() => break,
                    Ok(_) => {
                        return Err(refuse(
                            &target,
                            io::Error::new(
                                io::ErrorKind::NotADirectory,
                                format!("{} is not a directory", dir.display()),
                            ),
                        ))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => match dir.parent() {
                        Some(up) if !up.as_os_str().is_empty() => dir = up.to_path_buf(),
                        _ => {
                            dir = PathBuf::from(".");
                            break;
                        }
                    },
                    Err(e) => return Err(refuse(&dir, e)),
                }
            }
            let probe = dir.join(format!(".sipcheck-check.{}.tmp", std::process::id()));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = fs::remove_file(&probe);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(refuse(&target, e)),
            }
        }
    }
}

/// Whether `p` lives under `/proc` (where `/dev/fd/N` leads): such files are descriptors of
/// a process, written through, never renamed over.
fn under_proc(p: &Path) -> bool {
    let dir = p.parent().unwrap_or(p);
    fs::canonicalize(dir).is_ok_and(|d| d.starts_with("/proc"))
}

/// Writes a report to `path` as the user named it: `-` is standard output, a regular file
/// (or a new one) is replaced atomically ([`write_atomically`]), a symbolic link is written
/// through (its target replaced atomically), and anything that is not a regular file (a
/// device such as `/dev/null`, a FIFO, `/dev/fd/N`) is opened and written in place, never
/// replaced.
///
/// # Errors
/// [`ReportError`], naming the file and the operation that failed.
pub fn write_report<F>(path: &str, write: F) -> Result<(), ReportError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let dest = Destination::of(path).map_err(|source| ReportError::Create {
        path: PathBuf::from(path),
        source,
    })?;
    match dest {
        Destination::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            write(&mut out)
                .and_then(|()| out.flush())
                .map_err(ReportError::Stdout)
        }
        Destination::Atomic(target) => write_atomically(&target, |w| write(w)),
        Destination::InPlace(target) => {
            // A regular file reached through a descriptor (`/dev/fd/3` of `3>report.xml`,
            // `/dev/stdout` redirected to a file) is shared with whoever opened it: the
            // report goes after what is already there, as the shell's own writes would.
            let regular = fs::metadata(&target).is_ok_and(|m| m.is_file());
            let file = fs::OpenOptions::new()
                .write(true)
                .append(regular)
                .open(&target)
                .map_err(|source| ReportError::Create {
                    path: target.clone(),
                    source,
                })?;
            let mut out = BufWriter::new(file);
            write(&mut out)
                .and_then(|()| out.flush())
                .map_err(|source| ReportError::Write {
                    path: target.clone(),
                    source,
                })
        }
    }
}

/// A report file written as the run goes (the time series, the interval log): each piece
/// flushed at once, so that what a crash or a kill leaves is whole up to its last piece.
#[derive(Debug)]
pub struct AppendFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl AppendFile {
    /// Creates (or truncates) the file at `path`, and its directory.
    ///
    /// # Errors
    /// [`ReportError`] naming the directory or the file.
    pub fn create(path: &str) -> Result<Self, ReportError> {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = File::create(&path).map_err(|source| ReportError::Create {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    /// Writes a piece with `f` and flushes it.
    ///
    /// # Errors
    /// [`ReportError::Write`] naming the file.
    pub fn write(
        &mut self,
        f: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    ) -> Result<(), ReportError> {
        f(&mut self.out)
            .and_then(|()| self.out.flush())
            .map_err(|source| ReportError::Write {
                path: self.path.clone(),
                source,
            })
    }
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

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
    }

    #[test]
    fn a_temporary_left_by_a_killed_writer_is_removed_one_of_a_live_one_kept() {
        let dir = scratch("stale");
        std::fs::create_dir_all(&dir).unwrap();
        // No process has a PID above the kernel's maximum (2^22); PID 1 always lives.
        let stale = dir.join(".junit.xml.999999999.tmp");
        let live = dir.join(".junit.xml.1.tmp");
        let other = dir.join(".summary.json.999999999.tmp");
        for f in [&stale, &live, &other] {
            std::fs::write(f, b"half a report").unwrap();
        }
        let path = dir.join("junit.xml");
        write_report(path.to_str().unwrap(), |w| w.write_all(b"<x/>")).unwrap();
        assert!(!stale.exists(), "a dead writer's temporary is removed");
        assert!(live.exists(), "a live writer's temporary is left");
        assert!(
            other.exists(),
            "another report's temporaries are its own writer's business"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"<x/>");
    }

    #[test]
    fn dash_is_standard_output_and_plain_paths_are_atomic() {
        assert_eq!(Destination::of("-").unwrap(), Destination::Stdout);
        let dir = scratch("kinds");
        let new = dir.join("new/junit.xml");
        assert_eq!(
            Destination::of(new.to_str().unwrap()).unwrap(),
            Destination::Atomic(new.clone())
        );
        write_report(new.to_str().unwrap(), |w| w.write_all(b"x")).unwrap();
        assert_eq!(
            Destination::of(new.to_str().unwrap()).unwrap(),
            Destination::Atomic(new.clone())
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dev_null_is_written_in_place_and_stays_a_device() {
        use std::os::unix::fs::FileTypeExt;
        assert_eq!(
            Destination::of("/dev/null").unwrap(),
            Destination::InPlace("/dev/null".into())
        );
        write_report("/dev/null", |w| w.write_all(b"<testsuites/>")).unwrap();
        let meta = fs::symlink_metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device(), "{meta:?}");
    }

    #[test]
    fn a_fifo_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let dir = scratch("fifo");
        fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("report.fifo");
        mkfifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
        };
        write_report(fifo.to_str().unwrap(), |w| w.write_all(b"{\"ok\":true}")).unwrap();
        assert_eq!(reader.join().unwrap(), "{\"ok\":true}");
        let meta = fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo(), "still a FIFO: {meta:?}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "nothing beside it");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_descriptor_path_is_written_in_place() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        // A pipe: /dev/fd/N leads to /proc/self/fd/N, a link to `pipe:[…]`.
        let (mut read, write) = io::pipe().unwrap();
        let path = format!("/dev/fd/{}", write.as_raw_fd());
        assert!(matches!(
            Destination::of(&path).unwrap(),
            Destination::InPlace(_)
        ));
        write_report(&path, |w| w.write_all(b"through the pipe")).unwrap();
        drop(write);
        let mut got = String::new();
        read.read_to_string(&mut got).unwrap();
        assert_eq!(got, "through the pipe");

        // A regular file open on a descriptor (`>out.txt` of `--junit /dev/stdout`): the same
        // file, not replaced by another, the report after what was written to it before.
        use std::os::unix::fs::MetadataExt;
        let dir = scratch("fd-file");
        fs::create_dir_all(&dir).unwrap();
        let file_path = dir.join("out.txt");
        let mut file = File::create(&file_path).unwrap();
        file.write_all(b"console summary\n").unwrap();
        let inode = fs::metadata(&file_path).unwrap().ino();
        let path = format!("/dev/fd/{}", file.as_raw_fd());
        assert!(matches!(
            Destination::of(&path).unwrap(),
            Destination::InPlace(_)
        ));
        write_report(&path, |w| w.write_all(b"<testsuites/>")).unwrap();
        drop(file);
        assert_eq!(
            fs::read_to_string(&file_path).unwrap(),
            "console summary\n<testsuites/>"
        );
        assert_eq!(fs::metadata(&file_path).unwrap().ino(), inode);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_is_written_through_and_its_target_replaced() {
        use std::os::unix::fs::symlink;
        let dir = scratch("symlink");
        fs::create_dir_all(dir.join("real")).unwrap();
        let target = dir.join("real/junit.xml");
        fs::write(&target, "old").unwrap();
        // A relative link, through a second link.
        let link = dir.join("junit.xml");
        symlink("real/junit.xml", &link).unwrap();
        let link2 = dir.join("latest.xml");
        symlink(&link, &link2).unwrap();
        assert_eq!(
            Destination::of(link2.to_str().unwrap()).unwrap(),
            Destination::Atomic(target.clone())
        );
        write_report(link2.to_str().unwrap(), |w| w.write_all(b"new")).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(&link2)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_to_string(&link2).unwrap(), "new");
        let in_real: Vec<_> = fs::read_dir(dir.join("real"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(in_real, ["junit.xml"], "no temporary file left");

        // A dangling link: its target is created, the link kept.
        let dangling = dir.join("dangling.json");
        symlink("real/summary.json", &dangling).unwrap();
        write_report(dangling.to_str().unwrap(), |w| w.write_all(b"{}")).unwrap();
        assert!(fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(dir.join("real/summary.json")).unwrap(),
            "{}"
        );

        // A link to a FIFO: written through, the FIFO kept.
        let fifo = dir.join("real/pipe");
        mkfifo(&fifo);
        let to_fifo = dir.join("to-fifo");
        symlink(&fifo, &to_fifo).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
        };
        write_report(to_fifo.to_str().unwrap(), |w| w.write_all(b"fifo")).unwrap();
        assert_eq!(reader.join().unwrap(), "fifo");

        // A loop is an error, not a hang.
        let a = dir.join("a");
        let b = dir.join("b");
        symlink(&b, &a).unwrap();
        symlink(&a, &b).unwrap();
        let err = write_report(a.to_str().unwrap(), |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_paths_are_checked_without_writing_them() {
        let dir = scratch("check");
        fs::create_dir_all(&dir).unwrap();
        // Fine: standard output, a device, a new file (even in directories still to be
        // made), an existing one, a FIFO, a link to a file.
        let new = dir.join("a/b/report.xml");
        let file = dir.join("old.xml");
        fs::write(&file, "old").unwrap();
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let link = dir.join("link.xml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for ok in [
            "-",
            "/dev/null",
            new.to_str().unwrap(),
            file.to_str().unwrap(),
            fifo.to_str().unwrap(),
            link.to_str().unwrap(),
        ] {
            check_writable(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // Nothing was written: no directory made, the file as it was, no probe left.
        assert!(!dir.join("a").exists());
        assert_eq!(fs::read_to_string(&file).unwrap(), "old");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);
        // Refused: under a file, a directory, a file under /proc.
        for bad in [
            "/proc/version/x.xml",
            &format!("{}/x/y.xml", file.display()),
            dir.to_str().unwrap(),
        ] {
            let err = check_writable(bad).unwrap_err();
            assert!(err.to_string().contains("cannot create"), "{bad}: {err}");
        }
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
