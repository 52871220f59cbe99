//! Waiting on the clock: the shell's timers, woken at the deadlines the core's machines ask
//! for.

use std::time::Instant;

/// Sleep until `deadline`, or forever when there is none (a branch of `select!` that never
/// fires).
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
