//! The load section compiled to a pure plan: *when* calls start, as data.
//!
//! * Open model ([`OpenPlan`]): the scheduled start of every call, as an offset from the start
//!   of the run, produced one at a time ([`OpenPlan::next_start`]) so that a million-call run
//!   holds no million-entry list. The rate ramps linearly from 0 to `rate` over `ramp_up`, then
//!   stays: the number of calls started by time t is the integral of the rate,
//!
//!   ```text
//!   N(t) = r·t²/(2·T)        for t ≤ T   (T = ramp_up, r = rate)
//!   N(t) = r·T/2 + r·(t − T)  for t ≥ T
//!   ```
//!
//!   and call n (counting from 0) is due at the t where N(t) = n: `sqrt(2·T·n/r)` during the
//!   ramp and `T/2 + n/r` after it. The first call is due at 0. Instants are computed in integer
//!   nanoseconds from the exact rate (`calls` per `per`) and rounded *up*, so a call is never
//!   scheduled early and the arithmetic does not drift over millions of calls.
//! * Closed model ([`ClosedPlan`]): the number of calls to keep up over time, opening one more
//!   slot every `ramp_up / concurrent`, starting with the first at 0.
//!
//! Latency is measured from these scheduled instants, not from when the executor got round to
//! a call (no coordinated omission).

use std::time::Duration;

use super::model::{End, Load};
use super::part::Shard;
use super::units::Rate;

/// A compiled load: one of the two models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadPlan {
    /// Calls start on a schedule.
    Open(OpenPlan),
    /// A number of calls is kept up.
    Closed(ClosedPlan),
}

impl LoadPlan {
    /// Compiles a validated load.
    #[must_use]
    pub fn compile(load: &Load) -> Self {
        match *load {
            Load::Open {
                rate,
                ramp_up,
                end,
                max_concurrent,
                shard,
            } => Self::Open(
                OpenPlan::new(rate, ramp_up, end)
                    .with_max_concurrent(max_concurrent)
                    .with_shard(shard),
            ),
            Load::Closed {
                concurrent,
                ramp_up,
                end,
            } => Self::Closed(ClosedPlan {
                concurrent,
                ramp_up,
                end,
            }),
        }
    }
}

const NANOS: u128 = 1_000_000_000;

fn to_duration(ns: u128) -> Duration {
    let secs = u64::try_from(ns / NANOS).unwrap_or(u64::MAX);
    Duration::new(secs, (ns % NANOS) as u32)
}

fn ceil_div(num: u128, den: u128) -> u128 {
    num / den + u128::from(!num.is_multiple_of(den))
}

/// The largest s with s² ≤ n.
fn isqrt(n: u128) -> u128 {
    if n == 0 {
        return 0;
    }
    let mut s = (n as f64).sqrt() as u128;
    while s.checked_mul(s).is_none_or(|sq| sq > n) {
        s -= 1;
    }
    while (s + 1).checked_mul(s + 1).is_some_and(|sq| sq <= n) {
        s += 1;
    }
    s
}

/// The smallest s with s²·den ≥ num.
fn ceil_sqrt_ratio(num: u128, den: u128) -> u128 {
    let mut s = isqrt(num / den);
    while s
        .checked_mul(s)
        .and_then(|sq| sq.checked_mul(den))
        .is_some_and(|v| v < num)
    {
        s += 1;
    }
    s
}

/// The open model's schedule: an iterator over the start offsets of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPlan {
    calls: u128,
    per_ns: u128,
    ramp_ns: u128,
    limit_calls: Option<u64>,
    limit_ns: Option<u128>,
    next: u64,
    max_concurrent: Option<u32>,
    shard: Shard,
}

impl OpenPlan {
    /// The schedule of `rate`, ramped up over `ramp_up`, ending at `end`.
    #[must_use]
    pub fn new(rate: Rate, ramp_up: Duration, end: End) -> Self {
        Self {
            calls: u128::from(rate.calls.max(1)),
            per_ns: rate.per.as_nanos().max(1),
            ramp_ns: ramp_up.as_nanos(),
            limit_calls: end.calls(),
            limit_ns: end.after().map(|d| d.as_nanos()),
            next: 0,
            max_concurrent: None,
            shard: Shard::WHOLE,
        }
    }

    /// The same plan, keeping only the calls of `shard`: calls i, i + N, i + 2N … of the
    /// whole schedule (shard i of N), each at its instant in the whole schedule, so that N
    /// shards started at the same instant start exactly the calls of the whole, when it would.
    #[must_use]
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// The global number (in the whole schedule) of this shard's `n`-th call.
    fn global(&self, n: u64) -> Option<u64> {
        n.checked_mul(u64::from(self.shard.count()))?
            .checked_add(u64::from(self.shard.index()))
    }

    /// The same plan with a cap on calls up at once.
    #[must_use]
    pub fn with_max_concurrent(mut self, cap: Option<u32>) -> Self {
        self.max_concurrent = cap;
        self
    }

    /// The cap on calls up at once, which the executor enforces: a call due while the cap is
    /// reached is not started (and counted), rather than delayed.
    #[must_use]
    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent
    }

    /// When call `n` (from 0) is due, ignoring the end.
    #[must_use]
    pub fn start_of(&self, n: u64) -> Duration {
        let n = u128::from(n);
        let (calls, per, ramp) = (self.calls, self.per_ns, self.ramp_ns);
        // During the ramp while 2·n·per ≤ calls·T, i.e. n ≤ r·T/2.
        let in_ramp = ramp > 0
            && match (n.checked_mul(2 * per), calls.checked_mul(ramp)) {
                (Some(a), Some(b)) => a <= b,
                (None, _) => false,
                (_, None) => true,
            };
        let ns = if in_ramp {
            // t = sqrt(2·T·n·per / calls)
            match ramp
                .checked_mul(2)
                .and_then(|v| v.checked_mul(n))
                .and_then(|v| v.checked_mul(per))
            {
                Some(num) => ceil_sqrt_ratio(num, calls),
                None => u128::MAX,
            }
        } else {
            // t = T/2 + n·per/calls = (T·calls + 2·n·per) / (2·calls)
            match ramp
                .checked_mul(calls)
                .zip(n.checked_mul(2).and_then(|v| v.checked_mul(per)))
                .and_then(|(a, b)| a.checked_add(b))
            {
                Some(num) => ceil_div(num, 2 * calls),
                None => u128::MAX,
            }
        };
        to_duration(ns)
    }

    /// The start of the next call, or `None` when the plan has ended.
    pub fn next_start(&mut self) -> Option<Duration> {
        let g = self.global(self.next)?;
        if self.limit_calls.is_some_and(|limit| g >= limit) {
            return None;
        }
        let t = self.start_of(g);
        if self.limit_ns.is_some_and(|limit| t.as_nanos() >= limit) {
            return None;
        }
        self.next += 1;
        Some(t)
    }

    /// How many calls the plan starts (from the beginning, whatever has been consumed): this
    /// shard's share of the whole schedule's calls.
    #[must_use]
    pub fn total_calls(&self) -> u64 {
        self.shard.share(self.whole_calls())
    }

    /// How many calls the whole schedule (every shard) starts.
    #[must_use]
    pub fn whole_calls(&self) -> u64 {
        let Some(limit) = self.limit_ns else {
            return self.limit_calls.unwrap_or(u64::MAX);
        };
        let cap = self.limit_calls.unwrap_or(u64::MAX);
        let due = |n: u64| self.start_of(n).as_nanos() < limit;
        // The first n that is not due, by doubling then bisection.
        let mut hi: u64 = 1;
        while hi < cap && due(hi) {
            hi = hi.saturating_mul(2);
        }
        let (mut lo, mut hi) = (0u64, hi.min(cap));
        if hi == cap && due(hi.saturating_sub(1)) {
            return cap;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if due(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

impl Iterator for OpenPlan {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.next_start()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total_calls().saturating_sub(self.next);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// A change of the closed model's concurrency target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// From when.
    pub at: Duration,
    /// Calls to keep up from then on.
    pub concurrent: u32,
}

/// The closed model: how many calls to keep up, over time, and when to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedPlan {
    /// Calls to keep up once ramped up.
    pub concurrent: u32,
    /// Linear ramp from 0.
    pub ramp_up: Duration,
    /// When to stop starting calls.
    pub end: End,
}

impl ClosedPlan {
    /// How many calls should be up at `t`: slot k (from 0) opens at ⌈k·T/N⌉.
    #[must_use]
    pub fn target_at(&self, t: Duration) -> u32 {
        let n = u128::from(self.concurrent);
        let ramp = self.ramp_up.as_nanos();
        if n == 0 || ramp == 0 {
            return self.concurrent;
        }
        let open = t.as_nanos().saturating_mul(n) / ramp + 1;
        u32::try_from(open.min(n)).unwrap_or(self.concurrent)
    }

    /// Every change of the target, in order (one stage when there is no ramp).
    pub fn stages(&self) -> impl Iterator<Item = Stage> + '_ {
        let n = u128::from(self.concurrent);
        let ramp = self.ramp_up.as_nanos();
        let at = move |k: u128| -> u128 {
            if ramp == 0 {
                0
            } else {
                ceil_div(k * ramp, n)
            }
        };
        (0..self.concurrent).filter_map(move |k| {
            let k = u128::from(k);
            let t = at(k);
            // Several slots opening at the same instant are one stage, the last of them.
            if k + 1 < n && at(k + 1) == t {
                return None;
            }
            Some(Stage {
                at: to_duration(t),
                concurrent: (k + 1) as u32,
            })
        })
    }

    /// Whether a new call may start at `t` once `started` calls have.
    #[must_use]
    pub fn may_start(&self, started: u64, t: Duration) -> bool {
        self.end.calls().is_none_or(|n| started < n) && self.end.after().is_none_or(|d| t < d)
    }
}

/// Who places each call of the load: the calling user agents in turn, account k of every
/// calling role before account k + 1 of any, so that each UA places one call per turn and a
/// role places calls in proportion to its accounts (three callers and one other calling UA:
/// three calls and one per turn). With equal roles this is the roles in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerTurns {
    /// One turn: (role, account) pairs in order.
    order: Vec<(usize, usize)>,
    /// The accounts of each role.
    sizes: Vec<usize>,
}

impl CallerTurns {
    /// The turns of calling roles with `sizes` accounts each (in the roles' order; a role of no
    /// account places no call).
    #[must_use]
    pub fn new(sizes: &[usize]) -> Self {
        let longest = sizes.iter().copied().max().unwrap_or(0);
        let order = (0..longest)
            .flat_map(|k| {
                sizes
                    .iter()
                    .enumerate()
                    .filter(move |&(_, &size)| k < size)
                    .map(move |(role, _)| (role, k))
            })
            .collect();
        Self {
            order,
            sizes: sizes.to_vec(),
        }
    }

    /// The load's call `index` (from 0): its role, and which of that role's calls it is
    /// (`n`: the role's account `n % size` places it, paired with its peer role's `n`-th).
    /// `None` when no role has an account.
    #[must_use]
    pub fn turn(&self, index: u64) -> Option<(usize, usize)> {
        let len = self.order.len() as u64;
        if len == 0 {
            return None;
        }
        let (role, k) = self.order[(index % len) as usize];
        let cycle = (index / len) as usize;
        Some((role, cycle * self.sizes[role] + k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn secs(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn a_constant_rate_starts_calls_every_period_from_zero() {
        let plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::Calls(1000));
        assert_eq!(
            plan.take(5).collect::<Vec<_>>(),
            vec![ms(0), ms(50), ms(100), ms(150), ms(200)]
        );
    }

    #[test]
    fn per_minute_and_fractional_rates_are_exact() {
        let plan = OpenPlan::new(rate("300/m"), Duration::ZERO, End::Calls(3));
        assert_eq!(plan.collect::<Vec<_>>(), vec![ms(0), ms(200), ms(400)]);
        let plan = OpenPlan::new(rate("2.5/s"), Duration::ZERO, End::Calls(3));
        assert_eq!(plan.collect::<Vec<_>>(), vec![ms(0), ms(400), ms(800)]);
    }

    #[test]
    fn uneven_periods_round_up_without_drift() {
        // 3/s: 333.33… ms apart; instants are rounded up, never accumulated.
        let plan = OpenPlan::new(rate("3/s"), Duration::ZERO, End::Calls(1_000_000));
        assert_eq!(plan.start_of(1), Duration::from_nanos(333_333_334));
        assert_eq!(plan.start_of(3), secs(1));
        assert_eq!(plan.start_of(999_999), secs(333_333));
    }

    #[test]
    fn total_calls_end_exactly() {
        let plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::Calls(200));
        assert_eq!(plan.total_calls(), 200);
        let all: Vec<Duration> = plan.collect();
        assert_eq!(all.len(), 200);
        assert_eq!(all.last(), Some(&ms(199 * 50)));
    }

    #[test]
    fn a_duration_end_excludes_its_own_instant() {
        // 20/s for 1 s: 0, 50, …, 950 ms; a call due at exactly 1 s does not start.
        let plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::After(secs(1)));
        assert_eq!(plan.total_calls(), 20);
        let all: Vec<Duration> = plan.collect();
        assert_eq!(all.len(), 20);
        assert_eq!(all.last(), Some(&ms(950)));
    }

    #[test]
    fn whichever_end_comes_first() {
        let plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::CallsOrAfter(5, secs(60)));
        assert_eq!(plan.count(), 5);
        let plan = OpenPlan::new(
            rate("20/s"),
            Duration::ZERO,
            End::CallsOrAfter(500, secs(2)),
        );
        assert_eq!(plan.total_calls(), 40);
        assert_eq!(plan.count(), 40);
    }

    #[test]
    fn the_ramp_starts_calls_by_the_integral_of_the_rate() {
        // 20/s reached after 10 s: r·T/2 = 100 calls during the ramp, the 100th at exactly 10 s.
        let plan = OpenPlan::new(rate("20/s"), secs(10), End::Calls(1_000));
        assert_eq!(plan.start_of(0), Duration::ZERO);
        // N(t) = t² (t in s): call n at √n seconds.
        assert_eq!(plan.start_of(1), secs(1));
        assert_eq!(plan.start_of(4), secs(2));
        assert_eq!(plan.start_of(25), secs(5));
        assert_eq!(plan.start_of(100), secs(10));
        // Then one every 50 ms.
        assert_eq!(plan.start_of(101), ms(10_050));
        assert_eq!(plan.start_of(120), ms(11_000));
        let during_ramp = plan.clone().take_while(|&t| t < secs(10)).count();
        assert_eq!(during_ramp, 100);
    }

    #[test]
    fn ramp_instants_are_rounded_up() {
        let plan = OpenPlan::new(rate("20/s"), secs(10), End::Calls(10));
        // √2 s = 1.414213562373… s
        assert_eq!(plan.start_of(2), Duration::from_nanos(1_414_213_563));
        let v: Vec<Duration> = plan.collect();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_ramp_longer_than_the_run_is_cut_by_the_duration() {
        // 10/s over a 20 s ramp, but only 10 s: N(10 s) = 10·100/40 = 25 calls.
        let plan = OpenPlan::new(rate("10/s"), secs(20), End::After(secs(10)));
        assert_eq!(plan.total_calls(), 25);
        assert_eq!(plan.count(), 25);
    }

    #[test]
    fn size_hint_tracks_what_is_left() {
        let mut plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::After(secs(1)));
        assert_eq!(plan.size_hint(), (20, Some(20)));
        plan.next_start();
        assert_eq!(plan.size_hint(), (19, Some(19)));
    }

    #[test]
    fn a_long_run_is_not_materialised() {
        let mut plan = OpenPlan::new(rate("1000/s"), secs(60), End::Calls(1_000_000));
        assert_eq!(plan.total_calls(), 1_000_000);
        assert_eq!(plan.nth(999_999), Some(plan.start_of(999_999)));
        assert_eq!(plan.next_start(), None);
        // 30 000 calls in the ramp (ending at 60 s), then 1 ms apart.
        assert_eq!(plan.start_of(30_000), secs(60));
        assert_eq!(plan.start_of(999_999), ms(60_000 + 969_999));
    }

    #[test]
    fn compile_keeps_the_cap_for_the_executor() {
        let load = Load::Open {
            rate: rate("20/s"),
            ramp_up: Duration::ZERO,
            end: End::Calls(10),
            max_concurrent: Some(200),
            shard: Shard::WHOLE,
        };
        let LoadPlan::Open(plan) = LoadPlan::compile(&load) else {
            panic!("open")
        };
        assert_eq!(plan.max_concurrent(), Some(200));
        assert_eq!(plan.count(), 10);
    }

    #[test]
    fn closed_without_ramp_is_one_stage() {
        let plan = ClosedPlan {
            concurrent: 50,
            ramp_up: Duration::ZERO,
            end: End::Calls(1000),
        };
        assert_eq!(
            plan.stages().collect::<Vec<_>>(),
            vec![Stage {
                at: Duration::ZERO,
                concurrent: 50
            }]
        );
        assert_eq!(plan.target_at(Duration::ZERO), 50);
    }

    #[test]
    fn closed_ramp_opens_one_slot_every_ramp_over_n() {
        let plan = ClosedPlan {
            concurrent: 4,
            ramp_up: secs(2),
            end: End::After(secs(60)),
        };
        assert_eq!(
            plan.stages().collect::<Vec<_>>(),
            vec![
                Stage {
                    at: ms(0),
                    concurrent: 1
                },
                Stage {
                    at: ms(500),
                    concurrent: 2
                },
                Stage {
                    at: ms(1000),
                    concurrent: 3
                },
                Stage {
                    at: ms(1500),
                    concurrent: 4
                },
            ]
        );
        let targets: Vec<u32> = [0, 499, 500, 1499, 1500, 2000, 9000]
            .into_iter()
            .map(|t| plan.target_at(ms(t)))
            .collect();
        assert_eq!(targets, [1, 1, 2, 3, 4, 4, 4]);
    }

    #[test]
    fn closed_stages_agree_with_target_at() {
        let plan = ClosedPlan {
            concurrent: 7,
            ramp_up: ms(1000),
            end: End::Calls(100),
        };
        for stage in plan.stages() {
            assert_eq!(plan.target_at(stage.at), stage.concurrent);
            if let Some(before) = stage.at.checked_sub(Duration::from_nanos(1)) {
                assert_eq!(plan.target_at(before), stage.concurrent - 1);
            }
        }
    }

    #[test]
    fn closed_slots_opening_together_merge() {
        let plan = ClosedPlan {
            concurrent: 3,
            ramp_up: Duration::from_nanos(1),
            end: End::Calls(3),
        };
        assert_eq!(
            plan.stages().collect::<Vec<_>>(),
            vec![
                Stage {
                    at: Duration::ZERO,
                    concurrent: 1
                },
                Stage {
                    at: Duration::from_nanos(1),
                    concurrent: 3
                },
            ]
        );
    }

    #[test]
    fn closed_end_conditions() {
        let plan = ClosedPlan {
            concurrent: 2,
            ramp_up: Duration::ZERO,
            end: End::CallsOrAfter(10, secs(5)),
        };
        assert!(plan.may_start(9, secs(4)));
        assert!(!plan.may_start(10, secs(1)));
        assert!(!plan.may_start(0, secs(5)));
    }

    #[test]
    fn integer_square_roots() {
        assert_eq!(isqrt(0), 0);
        assert_eq!(isqrt(15), 3);
        assert_eq!(isqrt(16), 4);
        assert_eq!(isqrt(u128::MAX), u128::from(u64::MAX));
        assert_eq!(ceil_sqrt_ratio(17, 1), 5);
        assert_eq!(ceil_sqrt_ratio(16, 1), 4);
        assert_eq!(ceil_sqrt_ratio(9, 4), 2);
    }

    #[test]
    fn every_calling_ua_places_one_call_per_turn_whatever_the_roles_sizes() {
        // Three callers, one deaf caller, one hopeful caller: five calls, one per UA.
        let turns = CallerTurns::new(&[3, 1, 1]);
        let first: Vec<_> = (0..5).map(|i| turns.turn(i).unwrap()).collect();
        assert_eq!(first, [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)]);
        // The next turn: the same UAs again, each role's call count going on.
        let second: Vec<_> = (5..10).map(|i| turns.turn(i).unwrap()).collect();
        assert_eq!(second, [(0, 3), (1, 1), (2, 1), (0, 4), (0, 5)]);
        // Over many turns each role's share is its share of the accounts, every account alike.
        let mut per_account = std::collections::BTreeMap::new();
        for i in 0..500 {
            let (role, n) = turns.turn(i).unwrap();
            let size = [3, 1, 1][role];
            *per_account.entry((role, n % size)).or_insert(0) += 1;
        }
        assert_eq!(per_account.len(), 5);
        assert!(per_account.values().all(|&c| c == 100), "{per_account:?}");
    }

    #[test]
    fn equal_roles_take_turns_as_the_roles_in_turn() {
        let turns = CallerTurns::new(&[2, 2]);
        let got: Vec<_> = (0..6).map(|i| turns.turn(i).unwrap()).collect();
        assert_eq!(got, [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]);
        assert_eq!(CallerTurns::new(&[]).turn(0), None);
        assert_eq!(CallerTurns::new(&[0, 1]).turn(3), Some((1, 3)));
    }
}
