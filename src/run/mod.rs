//! `sipcheck run`: a scenario's user agents, load and reports.

mod agent;
pub mod executor;
pub mod load;
pub mod result;
mod script;

use std::io::Write;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::exit::Exit;
use executor::RunEvent;

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
}

/// Load, run and report a scenario; the exit code.
pub async fn run(args: &RunArgs, out: &mut impl Write) -> Exit {
    let (scenario, wavs) = match load::load(&args.file, &args.overrides) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprint!("{e}");
            return Exit::Usage;
        }
    };
    let scenario = Arc::new(scenario);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let executor = tokio::spawn(executor::execute(
        scenario.clone(),
        Arc::new(wavs),
        events_tx,
        stop_rx,
    ));
    let mut interrupted = false;
    let mut results = Vec::new();
    let mut registrations = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = events_rx.recv() => match event {
                Some(RunEvent::CallFinished(result)) => results.push(*result),
                Some(RunEvent::Registered(r)) => registrations.push(r),
                Some(_) => {}
                None => break,
            },
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                let _ = stop_tx.send(true);
                eprintln!("sipcheck: interrupted: hanging up, unregistering, writing reports (Ctrl-C again to quit at once)");
                tokio::spawn(async {
                    let _ = tokio::signal::ctrl_c().await;
                    std::process::exit(130);
                });
            }
        }
    }
    let elapsed = match executor.await {
        Ok(Ok(elapsed)) => elapsed,
        Ok(Err(e)) => {
            eprintln!("sipcheck: error: {e}");
            return Exit::Usage;
        }
        Err(e) => {
            eprintln!("sipcheck: internal error: {e}");
            return Exit::Internal;
        }
    };
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    let _ = writeln!(
        out,
        "{}: {} calls in {:.1} s, {} passed, {} failed; {} registrations",
        scenario.name,
        results.len(),
        elapsed.as_secs_f64(),
        results.len() - failed.len(),
        failed.len(),
        registrations.len()
    );
    for r in failed
        .iter()
        .filter(|r| r.side == result::Side::Callee)
        .take(3)
        .chain(failed.iter().take(3))
    {
        for f in &r.failures {
            let _ = writeln!(
                out,
                "  {} {} [{}]: {}",
                r.role, r.user, r.call_id, f.message
            );
        }
        if let Some(m) = &r.media {
            let _ = writeln!(
                out,
                "    rtp sent {} received {}",
                m.packets_sent, m.packets_received
            );
        }
    }
    if interrupted {
        Exit::Interrupted
    } else if failed.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    }
}
