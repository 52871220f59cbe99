//! `sipcheck run`: a scenario's user agents, load and reports.

pub mod load;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sipcheck_core::scenario::shard::{self, Shard};
use sipcheck_core::scenario::{threshold, Scenario};
use sipcheck_core::stats::metrics::Provenance;
use tokio::sync::{mpsc, watch};

use crate::exec::{self as executor, RunEvent};
use crate::exit::Exit;
use crate::report::calls::CallLog;
use crate::report::hdrlog::HdrLogFile;
use crate::report::series::SeriesFile;
use crate::report::{self, Progress};
use crate::terminal::{escape_controls, TerminalWriter};
use sipcheck_core::stats::hdrlog::{Interval, IntervalLog};
use sipcheck_core::stats::kept_rows::{self, KeptRows};
use sipcheck_core::stats::metrics::{Metrics, RunInfo};
use sipcheck_core::stats::outcome::CallResult;
use sipcheck_core::stats::pairing::{self, Pairing};
use sipcheck_core::stats::series::{Series, SeriesRow};

/// What the run's events are counted into, by the collector task: the metrics, the progress
/// line, the per-call records and, when asked, the time series (appended to its file as the
/// run goes, its rows kept for the HTML report) and the HdrHistogram interval log.
struct Collector {
    started_at: Instant,
    /// Both ends of a call between two roles of the run, judged together.
    pairing: Pairing,
    metrics: Metrics,
    progress: Progress,
    log: CallLog,
    series: Option<(Series, Option<SeriesFile>)>,
    /// The series' rows kept for the HTML report (`html`).
    rows: KeptRows,
    html: bool,
    hdr: Option<(IntervalLog, HdrLogFile)>,
    /// Whether appending to the series file, the interval log failed (told once).
    series_failed: bool,
    hdr_failed: bool,
}

impl Collector {
    /// One event sent by the run's roles.
    fn on_event(&mut self, event: RunEvent) {
        match event {
            RunEvent::CallStarted { .. } => {
                self.progress.on_call_started();
                if let Some((s, _)) = &mut self.series {
                    s.handle_started(self.started_at.elapsed());
                }
            }
            RunEvent::CallFinished(result) => {
                let now = Instant::now();
                self.log.ended(now, &result);
                let released = self.pairing.push(now, *result);
                self.count(released, self.started_at.elapsed());
            }
            RunEvent::Registered(r) => {
                self.metrics.record_register(&r);
                if let Some((h, _)) = &mut self.hdr {
                    h.handle_register(self.started_at.elapsed(), &r);
                }
            }
            RunEvent::NotStarted => {
                self.metrics.record_not_started();
                self.log.not_started();
            }
        }
    }

    /// The collector's tick at `now`: the handshakes timed since the last, the results whose
    /// other end did not come in time, the progress line, and the series' rows and the
    /// interval log's intervals that are due.
    fn tick(&mut self, now: Instant) {
        for took in crate::drive::tls::HANDSHAKES.take() {
            self.metrics.record_tls_handshake(took);
        }
        for took in crate::drive::ws::HANDSHAKES.take() {
            self.metrics.record_ws_handshake(took);
        }
        let released = self.pairing.handle_timeout(now);
        self.count(released, now - self.started_at);
        self.log.flush();
        self.progress.tick(now);
        let at = now - self.started_at;
        while let Some(row) = self.series.as_mut().and_then(|(s, _)| s.poll_row(at)) {
            self.series_row(row);
        }
        while let Some(interval) = self.hdr.as_mut().and_then(|(h, _)| h.poll_interval(at)) {
            self.hdr_interval(&interval);
        }
    }

    /// Counts call results released by the pairing, at `at` into the run: the metrics, the
    /// progress line, the time series, the interval log and the per-call records.
    fn count(&mut self, results: Vec<CallResult>, at: Duration) {
        let now = Instant::now();
        for result in results {
            self.progress.on_call_finished(&result);
            self.metrics.record_call(&result);
            if let Some((s, _)) = &mut self.series {
                s.handle_result(at, &result);
            }
            if let Some((h, _)) = &mut self.hdr {
                h.handle_result(at, &result);
            }
            self.log.record(now, &result);
        }
    }

    /// A row of the time series: appended to its file (the first error is told once; the
    /// rows after it are not tried) and kept for the HTML report.
    fn series_row(&mut self, row: SeriesRow) {
        if let Some((_, Some(file))) = &mut self.series {
            if !self.series_failed {
                if let Err(e) = file.append(&row) {
                    eprintln!("sipcheck: {e}");
                    self.series_failed = true;
                }
            }
        }
        if self.html {
            self.rows.push(row);
        }
    }

    /// An interval of the HdrHistogram log, appended to its file as [`Collector::series_row`].
    fn hdr_interval(&mut self, interval: &Interval) {
        if let Some((_, file)) = &mut self.hdr {
            if !self.hdr_failed {
                if let Err(e) = file.append(interval) {
                    eprintln!("sipcheck: {e}");
                    self.hdr_failed = true;
                }
            }
        }
    }

    /// The run (or its wind-down after Ctrl-C) is over: every result still waiting for its
    /// other end is counted, and the last rows and intervals written.
    fn finish(&mut self) {
        let released = self.pairing.flush();
        self.count(released, self.started_at.elapsed());
        let last = match &mut self.series {
            Some((s, _)) => s.finish(self.started_at.elapsed()),
            None => Vec::new(),
        };
        for row in last {
            self.series_row(row);
        }
        let last = match &mut self.hdr {
            Some((h, _)) => h.finish(self.started_at.elapsed()),
            None => Vec::new(),
        };
        for interval in &last {
            self.hdr_interval(interval);
        }
    }
}

/// The most events the collector takes from the run's roles in one wake.
const EVENTS_PER_WAKE: usize = 64;

/// Options of `sipcheck run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The scenario file.
    pub file: String,
    /// `--set key=value` overrides.
    pub overrides: Vec<String>,
    /// JUnit report path (overrides the scenario's).
    pub junit: Option<String>,
    /// JSON report path (overrides the scenario's).
    pub json: Option<String>,
    /// Time series path (CSV, or JSON Lines for `.jsonl`; overrides the scenario's).
    pub series: Option<String>,
    /// The time series' interval (and the HdrHistogram interval log's).
    pub series_interval: Duration,
    /// HdrHistogram interval log path.
    pub hdr_log: Option<String>,
    /// OpenMetrics report path (overrides the scenario's).
    pub metrics: Option<String>,
    /// Per-call records path, JSON Lines (overrides the scenario's).
    pub calls: Option<String>,
    /// One JUnit test case per call (or the scenario's `reports.junit_per_call`).
    pub junit_per_call: bool,
    /// Where the recordings of `record: true` steps go (default: `recordings/` beside the
    /// JSON report, else the JUnit report, else the current directory).
    pub record_dir: Option<String>,
    /// Every call's `record: true` recordings, not only the failed calls'.
    pub record_all: bool,
    /// The HTML report's path (overrides the scenario's).
    pub html: Option<String>,
    /// Which shard of the scenario to run, and when its load starts.
    pub shard: ShardArgs,
    /// Over TLS: what to trust, what to show.
    pub tls: crate::drive::tls::TlsOptions,
}

/// `--shard I/N`, `--shards N`, `--start-at TIME`: one shard of a scenario split over several
/// processes ([`sipcheck_core::scenario::shard`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ShardArgs {
    /// Run shard I of N (counting from 0: 0/3, 1/3, 2/3). Without it, --shards N with
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Job, from 0), or GitLab's CI_NODE_INDEX (from
    /// 1) and CI_NODE_TOTAL, name the shard.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Split into N shards, this one's index from JOB_COMPLETION_INDEX (from 0).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Start the load's schedule at this instant (RFC 3339 in UTC, 2026-12-07T12:00:00Z, or
    /// Unix seconds): every shard given the same instant runs one schedule. Registrations
    /// happen before it; an instant more than 5 s past is refused.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// slice (default): the shards may share a host, so each takes a slice of the RTP port
    /// range and listen ports moved up by its index; whole: each shard has an address of its
    /// own and keeps every port.
    #[arg(long, value_name = "slice|whole", default_value = "slice")]
    pub shard_ports: shard::Ports,
}

/// The shard a run is and its scenario's part, the whole scenario's fingerprint, and the
/// common start instant (as time since the Unix epoch).
struct Sharding {
    shard: Option<Shard>,
    fingerprint: String,
    start_at: Option<Duration>,
}

fn sharding(args: &ShardArgs, scenario: Scenario) -> Result<(Scenario, Sharding), String> {
    let fingerprint = shard::fingerprint(&scenario);
    let env = |name: &str| std::env::var(name).ok();
    let which =
        Shard::from_sources(args.shard.as_deref(), args.shards, &env).map_err(|e| e.to_string())?;
    if let (Some(s), None) = (which, &args.shard) {
        let from = if args.shards.is_some() {
            "JOB_COMPLETION_INDEX, from 0"
        } else {
            "GitLab's CI_NODE_INDEX, from 1, and CI_NODE_TOTAL"
        };
        eprintln!("sipcheck: running shard {s} of the scenario (counting from 0; {from})");
    }
    let scenario = match which {
        Some(s) => {
            shard::split(&scenario, s, args.shard_ports).map_err(|e| format!("shard {s}: {e}"))?
        }
        None => scenario,
    };
    let start_at = args.start_at.as_deref().map(parse_start_at).transpose()?;
    Ok((
        scenario,
        Sharding {
            shard: which,
            fingerprint,
            start_at,
        },
    ))
}

/// `--start-at`: Unix seconds (fractions allowed) or RFC 3339 in UTC.
fn parse_start_at(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("--start-at '{s}' is not a time: give RFC 3339 in UTC (2026-12-07T12:00:00Z) or Unix seconds")
    };
    if let Ok(secs) = s.trim().parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    humantime::parse_rfc3339(s.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .ok_or_else(bad)
}

/// Load, run and report a scenario; the exit code.
pub async fn run(args: &RunArgs, out: &mut impl Write) -> Exit {
    let (scenario, wavs) = match load::load(&args.file, &args.overrides) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprint!("{}", escape_controls(&e.to_string()));
            return Exit::Usage;
        }
    };
    let (scenario, sharding) = match sharding(&args.shard, scenario) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("sipcheck: {}", escape_controls(&e));
            return Exit::Usage;
        }
    };
    let scenario = Arc::new(scenario);
    let tls = match scenario.target.transport {
        t if t.is_secure() => match crate::probe::tls_context(&args.tls) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!(
                    "sipcheck: error: {}; nothing was sent",
                    escape_controls(&e.to_string())
                );
                return Exit::Usage;
            }
        },
        _ => None,
    };
    let junit_path = args
        .junit
        .clone()
        .or_else(|| scenario.reports.junit.clone());
    let json_path = args.json.clone().or_else(|| scenario.reports.json.clone());
    let series_path = args
        .series
        .clone()
        .or_else(|| scenario.reports.series.clone());
    let metrics_path = args
        .metrics
        .clone()
        .or_else(|| scenario.reports.metrics.clone());
    if [&series_path, &metrics_path, &args.hdr_log]
        .iter()
        .any(|p| p.as_deref() == Some("-"))
    {
        eprintln!("sipcheck: the time series, the metrics report and the HdrHistogram log go to files, not to standard output (-)");
        return Exit::Usage;
    }
    let html_path = args.html.clone().or_else(|| scenario.reports.html.clone());
    let calls_path = args
        .calls
        .clone()
        .or_else(|| scenario.reports.calls.clone());
    let junit_per_call = args.junit_per_call || scenario.reports.junit_per_call;
    if junit_per_call && junit_path.is_none() {
        eprintln!(
            "sipcheck: --junit-per-call (reports.junit_per_call) needs a JUnit report: give --junit FILE or reports.junit"
        );
        return Exit::Usage;
    }
    // A report on standard output has it to itself: the console summary goes to stderr.
    let to_stdout = |p: &Option<String>| p.as_deref() == Some("-");
    let on_stdout: Vec<&str> = [
        ("JUnit", &junit_path),
        ("JSON", &json_path),
        ("call records", &calls_path),
        ("HTML", &html_path),
    ]
    .into_iter()
    .filter(|(_, p)| to_stdout(p))
    .map(|(name, _)| name)
    .collect();
    if let [a, b, ..] = on_stdout[..] {
        eprintln!(
            "sipcheck: the {a} and {b} reports cannot both go to standard output (-): give one a file"
        );
        return Exit::Usage;
    }
    let console_to_stderr = !on_stdout.is_empty();
    // Every report must be writable before the first call is placed, not found out after.
    for path in junit_path
        .iter()
        .chain(&json_path)
        .chain(&calls_path)
        .chain(&series_path)
        .chain(&metrics_path)
        .chain(&html_path)
        .chain(&args.hdr_log)
    {
        if let Err(e) = report::check_writable(path) {
            eprintln!("sipcheck: {e}; nothing was sent");
            return Exit::Usage;
        }
    }
    // So must the directory of `media.record` (a file in it).
    if let Some(dir) = &scenario.media.record {
        let file = std::path::Path::new(dir).join("call.wav");
        if let Err(e) = report::check_writable(&file.to_string_lossy()) {
            eprintln!(
                "sipcheck: media.record: {dir} cannot take recordings ({e}); nothing was sent"
            );
            return Exit::Usage;
        }
    }
    // The directory of the steps' recordings, when a step records.
    let step_records = scenario
        .roles
        .iter()
        .any(|r| r.steps.iter().any(|s| s.record))
        .then(|| {
            let dir = args.record_dir.as_ref().map_or_else(
                || {
                    let beside = [&json_path, &junit_path]
                        .into_iter()
                        .flatten()
                        .find(|p| *p != "-")
                        .and_then(|p| {
                            std::path::Path::new(p)
                                .parent()
                                .map(std::path::Path::to_path_buf)
                        })
                        .unwrap_or_default();
                    beside.join("recordings")
                },
                std::path::PathBuf::from,
            );
            crate::drive::role::StepRecords {
                dir,
                all: args.record_all,
            }
        });
    if let Some(records) = &step_records {
        let file = records.dir.join("step.wav");
        if let Err(e) = report::check_writable(&file.to_string_lossy()) {
            eprintln!(
                "sipcheck: --record-dir: {} cannot take recordings ({e}); nothing was sent",
                records.dir.display()
            );
            return Exit::Usage;
        }
    }
    // Enough file descriptors for the calls the plan keeps up at once, or a refusal that
    // names the numbers, before anything is sent.
    if let Err(e) = fd_budget(&scenario) {
        eprintln!("sipcheck: {e}; nothing was sent");
        return Exit::Usage;
    }
    let info = RunInfo::from_scenario(&scenario).with_file(&args.file);
    let started_at = Instant::now();
    let started_wall = SystemTime::now();
    let run_id = format!("{:016x}", rand::random::<u64>());
    let log = match CallLog::new(
        calls_path.as_deref(),
        junit_per_call,
        &run_id,
        started_wall,
        started_at,
    ) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "sipcheck: cannot create {}: {e}; nothing was sent",
                calls_path.as_deref().unwrap_or_default()
            );
            return Exit::Usage;
        }
    };
    let metrics = Metrics::new(started_wall, &info);
    let counted = if scenario.roles.iter().any(|r| r.calls()) {
        sipcheck_core::stats::outcome::Side::Caller
    } else {
        sipcheck_core::stats::outcome::Side::Callee
    };
    let progress = Progress::stderr(started_at, counted, Duration::from_secs(5));
    // The series is kept when it is written as the run goes (--series), or for the HTML
    // report at the end (its rows kept, at most an hour of 1 s rows: merged past that).
    let series_file = match &series_path {
        Some(path) => match SeriesFile::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("sipcheck: {e}; nothing was sent");
                return Exit::Usage;
            }
        },
        None => None,
    };
    let html = html_path.is_some();
    let series = (series_file.is_some() || html)
        .then(|| (Series::new(args.series_interval, counted), series_file));
    let hdr = match &args.hdr_log {
        Some(path) => {
            let since_epoch = started_wall
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            match HdrLogFile::create(path, since_epoch) {
                Ok(file) => Some((IntervalLog::new(args.series_interval, counted), file)),
                Err(e) => {
                    eprintln!("sipcheck: {e}; nothing was sent");
                    return Exit::Usage;
                }
            }
        }
        None => None,
    };

    // Both ends of a call between two roles of the run are judged together (one-way audio).
    let pairing = Pairing::new(
        scenario.roles.iter().any(|r| r.calls()) && scenario.roles.iter().any(|r| !r.calls()),
        pairing::DEFAULT_HOLD,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    // The common start: an instant of the wall clock, on this process's monotonic clock.
    let load_start = match sharding.start_at {
        Some(at) => {
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            match shard::start_delay(at, now) {
                Ok(wait) => Some(Instant::now() + wait),
                Err(e) => {
                    eprintln!("sipcheck: --start-at: {e}; nothing was sent");
                    return Exit::Usage;
                }
            }
        }
        None => None,
    };
    let executor = tokio::spawn(executor::execute(
        scenario.clone(),
        tls,
        Arc::new(wavs),
        events_tx,
        stop_rx,
        load_start,
        step_records,
    ));
    let mut tally = Collector {
        started_at,
        pairing,
        metrics,
        progress,
        log,
        series,
        rows: KeptRows::new(kept_rows::DEFAULT_CAP),
        html,
        hdr,
        series_failed: false,
        hdr_failed: false,
    };
    // The events are read by a task of the runtime, beside the executor's tasks.
    let collector = tokio::spawn(async move {
        let mut interrupted = false;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        let mut ready = Vec::with_capacity(EVENTS_PER_WAKE);
        let mut interrupts = crate::signal::Interrupts::new().ok();
        loop {
            tokio::select! {
                // Every event already sent, in order, in one wake (up to EVENTS_PER_WAKE): at
                // high rates several calls start and end between two turns of this task.
                n = events_rx.recv_many(&mut ready, EVENTS_PER_WAKE) => {
                    if n == 0 {
                        break;
                    }
                    for event in ready.drain(..) {
                        tally.on_event(event);
                    }
                }
                _ = ticker.tick() => tally.tick(Instant::now()),
                _ = async { interrupts.as_mut().expect("guarded").next().await }, if interrupts.is_some() && !interrupted => {
                    interrupted = true;
                    let _ = stop_tx.send(true);
                    eprintln!("sipcheck: interrupted: hanging up, unregistering, writing reports (Ctrl-C again to quit at once)");
                    // The same listener hears the next signal, however soon it comes.
                    let mut again = interrupts.take().expect("guarded");
                    tokio::spawn(async move {
                        again.next().await;
                        eprintln!("sipcheck: interrupted again: leaving at once, no reports written");
                        crate::drive::capture::finish();
                        std::process::exit(i32::from(Exit::Abandoned.code()));
                    });
                }
            }
        }
        // The run is over (on Ctrl-C too).
        tally.finish();
        let Collector {
            metrics,
            progress,
            log,
            rows,
            series_failed,
            hdr_failed,
            ..
        } = tally;
        (
            (
                metrics,
                progress,
                interrupted,
                series_failed || hdr_failed,
                log.finish(),
            ),
            (rows.factor(), rows.into_rows()),
        )
    });
    let (
        (mut metrics, mut progress, interrupted, series_failed, (per_call, logged)),
        (merged, rows),
    ) = match collector.await {
        Ok(collected) => collected,
        Err(e) => {
            eprintln!("sipcheck: internal error: {e}");
            return Exit::Internal;
        }
    };
    progress.finish(Instant::now());
    let elapsed = match executor.await {
        Ok(Ok(elapsed)) => elapsed,
        Ok(Err(e)) => {
            eprintln!("sipcheck: error: {}", escape_controls(&e.to_string()));
            return Exit::Usage;
        }
        Err(e) => {
            eprintln!("sipcheck: internal error: {e}");
            return Exit::Internal;
        }
    };
    // Every connection is closed: every handshake is in.
    for took in crate::drive::tls::HANDSHAKES.take() {
        metrics.record_tls_handshake(took);
    }
    for took in crate::drive::ws::HANDSHAKES.take() {
        metrics.record_ws_handshake(took);
    }
    let mut summary = metrics.finish(elapsed, interrupted);
    summary.run_id = run_id;
    summary.provenance = Provenance {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        fingerprint: sharding.fingerprint,
        shard: sharding.shard,
        ..Provenance::default()
    };
    // The scenario's thresholds, and the built-in ones it does not override
    // (`calls.not_started <= 0`).
    let thresholds = summary.check(&threshold::with_builtins(&scenario.thresholds));
    if console_to_stderr {
        let mut err = TerminalWriter::new(std::io::stderr());
        let _ = report::console::write_summary(&summary, &thresholds, &mut err);
    } else {
        let mut out = TerminalWriter::new(out);
        let _ = report::console::write_summary(&summary, &thresholds, &mut out);
    }
    let mut exit = Exit::from(summary.verdict(&thresholds));
    if interrupted {
        exit = Exit::Interrupted;
    }
    if series_failed {
        exit = Exit::Internal;
    }
    if let Some(path) = &junit_path {
        if let Err(e) = report::write_report(path, |mut w| {
            report::junit::write_junit_per_call(&summary, &thresholds, per_call.as_ref(), &mut w)
        }) {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    if let Some(path) = &json_path {
        if let Err(e) = report::write_report(path, |mut w| {
            report::json::write_json(&summary, &thresholds, &mut w)
        }) {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    if let Some(path) = &metrics_path {
        if let Err(e) = report::write_report(path, |mut w| {
            report::openmetrics::write_metrics(&summary, &thresholds, &mut w)
        }) {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
    }
    if let Some(path) = &html_path {
        let input = report::html::HtmlInput {
            summary: &summary,
            thresholds: &thresholds,
            series: &rows,
            interval: args.series_interval,
            merged,
        };
        let began = Instant::now();
        if let Err(e) = report::write_report(path, |mut w| report::html::write_html(&input, &mut w))
        {
            eprintln!("sipcheck: {e}");
            exit = Exit::Internal;
        }
        tracing::debug!(took = ?began.elapsed(), rows = rows.len(), "HTML report written");
    }
    if let Err(e) = logged {
        eprintln!("sipcheck: {e}");
        exit = Exit::Internal;
    }
    exit
}

/// File descriptors a run needs besides its calls' (SIP sockets, listeners, reports, the
/// runtime's own, the standard streams).
const FD_OVERHEAD: u64 = 64;

/// Raises the soft limit of open files to the hard limit, then checks it against what the
/// scenario needs: an RTP socket per call kept up at once and per side played in this process
/// (a call between two of its roles has both ends here), a TCP connection per user agent over
/// TCP, and [`FD_OVERHEAD`]. Open-model plans without `max_concurrent` are counted as one call
/// per calling user agent at once (an estimate; set `max_concurrent` to be exact).
fn fd_budget(scenario: &sipcheck_core::scenario::Scenario) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    use sipcheck_core::scenario::model::Load;
    use sipcheck_core::sip::transport::Transport;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let callers: u64 = scenario
        .roles
        .iter()
        .filter(|r| r.calls())
        .map(|r| r.accounts.len() as u64)
        .sum();
    let answering = scenario.roles.iter().any(|r| !r.calls());
    let at_once = match scenario.load {
        Load::Open {
            max_concurrent: Some(n),
            ..
        } => u64::from(n),
        Load::Closed { concurrent, .. } => u64::from(concurrent),
        Load::Open {
            max_concurrent: None,
            ..
        } => callers,
    };
    let sides = if answering { 2 } else { 1 };
    let rtp = if scenario.media.rtp {
        at_once * sides
    } else {
        0
    };
    let uas: u64 = scenario.roles.iter().map(|r| r.accounts.len() as u64).sum();
    let tcp = if scenario.target.transport == Transport::Tcp {
        uas
    } else {
        0
    };
    let need = rtp + tcp + FD_OVERHEAD;
    if need > soft {
        return Err(format!(
            "the scenario needs about {need} open files ({at_once} calls at once × {sides} \
             RTP socket(s), {tcp} TCP connections, {FD_OVERHEAD} for the rest) but the limit \
             is {soft} (ulimit -n; hard limit {hard}): raise it, or lower the calls kept up \
             at once (load.max_concurrent)"
        ));
    }
    Ok(())
}
