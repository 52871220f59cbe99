//! An open load: calls start on the plan's schedule, whatever the calls under way do
//! (no coordinated omission: a call due while the cap is reached is counted as not started).

use std::time::Instant;

use sipcheck_core::scenario::plan::OpenPlan;
use tokio::sync::watch;

use super::Starter;

/// Start every call of `plan` at its time, until the plan ends or `stop` turns true.
pub(super) async fn drive(
    mut plan: OpenPlan,
    starter: &mut Starter<'_>,
    stop: &mut watch::Receiver<bool>,
) {
    let cap = plan.max_concurrent().map(|c| c as usize);
    while let Some(offset) = plan.next_start() {
        // A start already due goes at once: a timer per call would cost a turn of the
        // runtime (and an epoll wake-up) per call at high rates.
        let at = starter.load_start + offset;
        if at > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        } else if *stop.borrow() {
            return;
        }
        if cap.is_some_and(|c| starter.callers.live() >= c) {
            starter.not_started();
            continue;
        }
        starter.start(offset);
    }
}
