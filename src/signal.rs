//! Interruption: SIGINT (Ctrl-C) and SIGTERM (a CI job cancelled, `kill`, a container stopped)
//! both mean "stop cleanly": hang up, unregister, write every report, exit 130.

/// Resolves at the next SIGINT or SIGTERM.
pub async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
