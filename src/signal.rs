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

/// Every SIGINT and SIGTERM from the moment it is made, one at a time: a second signal that
/// arrives while the first is being handled is not lost (as it can be between two calls of
/// [`interrupted`], each of which only listens from its first poll).
pub struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Starts listening.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    #[cfg(unix)]
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Waits for the next SIGINT or SIGTERM on `interrupts` when given (listening since they were
/// made), else from this call's first poll ([`interrupted`]; when the handlers could not be
/// installed up front).
pub async fn next(interrupts: Option<&mut Interrupts>) {
    match interrupts {
        Some(interrupts) => interrupts.next().await,
        None => interrupted().await,
    }
}
