//! `--calls FILE.jsonl`: one [`CallRecord`] a line, written as the calls are counted, and the
//! test cases of `--junit-per-call`.
//!
//! The file is written as the run goes (buffered, flushed at every progress tick and at the
//! run's end, Ctrl-C's wind-down included): a run of any length keeps no record in memory.
//! The line schema is `docs/call-record.schema.json`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sipcheck_core::stats::outcome::{CallResult, Side};
use sipcheck_core::stats::record::{CallRecord, RecordContext};

use super::junit::{PerCall, PER_CALL_CAP};

/// Where the records go, and the per-call test cases of the JUnit report.
pub struct CallLog {
    out: Option<Box<dyn Write + Send>>,
    path: String,
    error: Option<io::Error>,
    per_call: Option<PerCall>,
    warned: bool,
    run_id: String,
    run_start: Duration,
    origin: Instant,
    /// Call ends counted per role.
    numbers: HashMap<String, u64>,
    /// When each call end was reported, until it is counted (the pairing holds some).
    ends: HashMap<(String, String, Side), Duration>,
}

impl CallLog {
    /// A log for the run `run_id` started at `origin` (`started`, wall clock); writes to
    /// `path` (`-`: standard output) when given, and keeps JUnit test cases when `per_call`.
    ///
    /// # Errors
    /// The file (or its directory) cannot be created.
    pub fn new(
        path: Option<&str>,
        per_call: bool,
        run_id: &str,
        started: SystemTime,
        origin: Instant,
    ) -> io::Result<Self> {
        let out: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some("-") => Some(Box::new(BufWriter::new(io::stdout()))),
            Some(p) => {
                if let Some(dir) = Path::new(p).parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                Some(Box::new(BufWriter::new(File::create(p)?)))
            }
        };
        Ok(Self {
            out,
            path: path.unwrap_or_default().to_owned(),
            error: None,
            per_call: per_call.then(PerCall::default),
            warned: false,
            run_id: run_id.to_owned(),
            run_start: started.duration_since(UNIX_EPOCH).unwrap_or_default(),
            origin,
            numbers: HashMap::new(),
            ends: HashMap::new(),
        })
    }

    fn key(r: &CallResult) -> (String, String, Side) {
        (r.role.clone(), r.call_id.clone(), r.side)
    }

    /// Notes when `r` ended (it may be counted later).
    pub fn ended(&mut self, now: Instant, r: &CallResult) {
        if self.out.is_some() || self.per_call.is_some() {
            let at = now.saturating_duration_since(self.origin);
            self.ends.insert(Self::key(r), at);
        }
    }

    /// Writes the record of a counted call end.
    pub fn record(&mut self, now: Instant, r: &CallResult) {
        if self.out.is_none() && self.per_call.is_none() {
            return;
        }
        let ended = self
            .ends
            .remove(&Self::key(r))
            .unwrap_or_else(|| now.saturating_duration_since(self.origin));
        let number = self.numbers.entry(r.role.clone()).or_default();
        *number += 1;
        let record = CallRecord::of(
            r,
            &RecordContext {
                run_id: &self.run_id,
                run_start: self.run_start,
                number: *number,
                ended,
            },
        );
        if let (Some(out), None) = (self.out.as_mut(), &self.error) {
            let written = serde_json::to_writer(&mut *out, &record)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                self.error = Some(e);
            }
        }
        if let Some(per_call) = self.per_call.as_mut() {
            if !per_call.push(&record) {
                self.warn_cap();
            }
        }
    }

    /// Notes a call due by the plan but not started.
    pub fn not_started(&mut self) {
        if let Some(per_call) = self.per_call.as_mut() {
            if !per_call.push_not_started() {
                self.warn_cap();
            }
        }
    }

    fn warn_cap(&mut self) {
        if !self.warned {
            self.warned = true;
            eprintln!(
                "sipcheck: --junit-per-call lists the first {PER_CALL_CAP} calls; the others \
                 are counted in one skipped test case (every call is in --calls)"
            );
        }
    }

    /// Pushes what is buffered to the file.
    pub fn flush(&mut self) {
        if let (Some(out), None) = (self.out.as_mut(), &self.error) {
            if let Err(e) = out.flush() {
                self.error = Some(e);
            }
        }
    }

    /// Flushes the file; the per-call test cases, and the first write error.
    ///
    /// # Errors
    /// Writing the records failed: the message names the file.
    pub fn finish(mut self) -> (Option<PerCall>, Result<(), String>) {
        self.flush();
        let result = match self.error.take() {
            None => Ok(()),
            Some(e) => Err(format!("cannot write {}: {e}", self.path)),
        };
        (self.per_call.take(), result)
    }
}
