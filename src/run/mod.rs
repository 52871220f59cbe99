//! `sipcheck run`: a scenario's user agents, load and reports.

pub mod load;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sipcheck_core::scenario::threshold;
use tokio::sync::{mpsc, watch};

use crate::exec::{self as executor, RunEvent};
use crate::exit::Exit;
use crate::report::calls::CallLog;
use crate::report::{self, Progress};
use crate::terminal::{escape_controls, TerminalWriter};
use sipcheck_core::stats::metrics::{Metrics, RunInfo};
use sipcheck_core::stats::outcome::CallResult;
use sipcheck_core::stats::pairing::{self, Pairing};
use sipcheck_core::stats::series::Series;

/// Counts call results released by the pairing: the metrics, the progress line, the time
/// series and the per-call records.
fn count(
    results: Vec<CallResult>,
    metrics: &mut Metrics,
    progress: &mut Progress,
    series: Option<&mut Series>,
    at: Duration,
    log: &mut CallLog,
) {
    let now = Instant::now();
    let mut series = series;
    for result in results {
        progress.on_call_finished(&result);
        metrics.record_call(&result);
        if let Some(s) = series.as_deref_mut() {
            s.handle_result(at, &result);
        }
        log.record(now, &result);
    }
}

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
    /// The time series' interval.
    pub series_interval: Duration,
    /// OpenMetrics report path (overrides the scenario's).
    pub metrics: Option<String>,
    /// Per-call records path, JSON Lines (overrides the scenario's).
    pub calls: Option<String>,
    /// One JUnit test case per call (or the scenario's `reports.junit_per_call`).
    pub junit_per_call: bool,
    /// Over TLS: what to trust, what to show.
    pub tls: crate::drive::tls::TlsOptions,
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
    let scenario = Arc::new(scenario);
    let tls = match scenario.target.transport {
        sipcheck_core::sip::transport::Transport::Tls => {
            match crate::probe::tls_context(&args.tls) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!(
                        "sipcheck: error: {}; nothing was sent",
                        escape_controls(&e.to_string())
                    );
                    return Exit::Usage;
                }
            }
        }
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
    if [&series_path, &metrics_path]
        .iter()
        .any(|p| p.as_deref() == Some("-"))
    {
        eprintln!("sipcheck: the time series and the metrics report go to files, not to standard output (-)");
        return Exit::Usage;
    }
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
    let mut log = match CallLog::new(
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
    let mut metrics = Metrics::new(started_wall, &info);
    let counted = if scenario.roles.iter().any(|r| r.calls()) {
        sipcheck_core::stats::outcome::Side::Caller
    } else {
        sipcheck_core::stats::outcome::Side::Callee
    };
    let mut progress = Progress::stderr(started_at, counted, Duration::from_secs(5));
    let mut series = match &series_path {
        Some(path) => match report::series::SeriesFile::create(path) {
            Ok(file) => Some((Series::new(args.series_interval, counted), file)),
            Err(e) => {
                eprintln!("sipcheck: {e}; nothing was sent");
                return Exit::Usage;
            }
        },
        None => None,
    };

    // Both ends of a call between two roles of the run are judged together (one-way audio).
    let mut pairing = Pairing::new(
        scenario.roles.iter().any(|r| r.calls()) && scenario.roles.iter().any(|r| !r.calls()),
        pairing::DEFAULT_HOLD,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let executor = tokio::spawn(executor::execute(
        scenario.clone(),
        tls,
        Arc::new(wavs),
        events_tx,
        stop_rx,
    ));
    // The events are read by a task of the runtime, beside the executor's tasks.
    let collector = tokio::spawn(async move {
        let mut interrupted = false;
        let mut series_failed = false;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        let mut interrupts = crate::signal::Interrupts::new().ok();
        loop {
            tokio::select! {
                event = events_rx.recv() => match event {
                    Some(RunEvent::CallStarted { .. }) => {
                        progress.on_call_started();
                        if let Some((s, _)) = &mut series {
                            s.handle_started(started_at.elapsed());
                        }
                    }
                    Some(RunEvent::CallFinished(result)) => {
                        let now = Instant::now();
                        log.ended(now, &result);
                        count(
                            pairing.push(now, *result),
                            &mut metrics,
                            &mut progress,
                            series.as_mut().map(|(s, _)| s),
                            started_at.elapsed(),
                            &mut log,
                        );
                    }
                    Some(RunEvent::Registered(r)) => metrics.record_register(&r),
                    Some(RunEvent::NotStarted) => {
                        metrics.record_not_started();
                        log.not_started();
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    for took in crate::drive::tls::take_handshakes() {
                        metrics.record_tls_handshake(took);
                    }
                    count(
                        pairing.handle_timeout(now),
                        &mut metrics,
                        &mut progress,
                        series.as_mut().map(|(s, _)| s),
                        now - started_at,
                        &mut log,
                    );
                    log.flush();
                    progress.tick(now);
                    if let Some((s, file)) = &mut series {
                        while let Some(row) = s.poll_row(now - started_at) {
                            // The first error is told once; the rows after it are not tried.
                            if !series_failed {
                                if let Err(e) = file.append(&row) {
                                    eprintln!("sipcheck: {e}");
                                    series_failed = true;
                                }
                            }
                        }
                    }
                }
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
        // The run is over (on Ctrl-C too): every result still waiting for its other end.
        count(
            pairing.flush(),
            &mut metrics,
            &mut progress,
            series.as_mut().map(|(s, _)| s),
            started_at.elapsed(),
            &mut log,
        );
        // The run (or its wind-down after Ctrl-C) is over: the last rows.
        if let Some((mut s, mut file)) = series {
            for row in s.finish(started_at.elapsed()) {
                if !series_failed {
                    if let Err(e) = file.append(&row) {
                        eprintln!("sipcheck: {e}");
                        series_failed = true;
                    }
                }
            }
        }
        (metrics, progress, interrupted, series_failed, log.finish())
    });
    let (mut metrics, mut progress, interrupted, series_failed, (per_call, logged)) =
        match collector.await {
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
    for took in crate::drive::tls::take_handshakes() {
        metrics.record_tls_handshake(took);
    }
    let mut summary = metrics.finish(elapsed, interrupted);
    summary.run_id = run_id;
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
