//! A closed load: the plan's number of calls is kept up, a new call started as one ends.

use std::time::Duration;

use sipcheck_core::scenario::plan::ClosedPlan;
use tokio::sync::watch;

use super::Starter;

/// Keep `plan`'s number of calls under way until the plan ends or `stop` turns true.
pub(super) async fn drive(
    plan: &ClosedPlan,
    starter: &mut Starter<'_>,
    stop: &mut watch::Receiver<bool>,
) {
    loop {
        let t = starter.load_start.elapsed();
        if *stop.borrow() || !plan.may_start(starter.started, t) {
            return;
        }
        if starter.callers.live() < plan.target_at(t) as usize {
            starter.start(t);
            continue;
        }
        tokio::select! {
            () = starter.callers.ended() => {}
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
