//! The split, as data: exact totals, determinism, the union of shards = the whole.

use std::time::Duration;

use super::super::load;
use super::super::model::{End, Load, Scenario, Step};
use super::super::plan::{LoadPlan, OpenPlan};
use super::super::units::Rate;
use super::*;

const SELFTEST: &str = include_str!("../../../../../scenarios/selftest.yaml");
const LOAD_200: &str = include_str!("../../../../../scenarios/load-200.yaml");

fn scenario(text: &str) -> Scenario {
    match load("s.yaml", text, &|_| None, &|_| Err("no files".into())) {
        Ok(s) => s,
        Err(e) => panic!("{}", super::super::report(&e)),
    }
}

fn shards(n: u32) -> Vec<Shard> {
    (0..n).map(|i| Shard::new(i, n).unwrap()).collect()
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

#[test]
fn shards_parse_from_zero_and_refuse_what_does_not_exist() {
    assert_eq!("0/3".parse::<Shard>(), Shard::new(0, 3));
    assert_eq!("2/3".parse::<Shard>().unwrap().to_string(), "2/3");
    assert_eq!(
        "3/3".parse::<Shard>(),
        Err(ShardError::OutOfRange { index: 3, count: 3 })
    );
    assert_eq!("0/0".parse::<Shard>(), Err(ShardError::NoShards));
    assert!(matches!(
        "1".parse::<Shard>(),
        Err(ShardError::Malformed(_))
    ));
    assert!(matches!(
        "a/3".parse::<Shard>(),
        Err(ShardError::Malformed(_))
    ));
}

#[test]
fn both_engines_indices_map_onto_shards_from_zero() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    // Kubernetes Indexed Job: JOB_COMPLETION_INDEX counts from 0.
    let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
    assert_eq!(
        Shard::from_sources(None, Some(3), &k8s),
        Ok(Some(Shard::new(2, 3).unwrap()))
    );
    // GitLab parallel: CI_NODE_INDEX counts from 1.
    let gitlab = env(&[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "3")]);
    assert_eq!(
        Shard::from_sources(None, None, &gitlab),
        Ok(Some(Shard::new(0, 3).unwrap()))
    );
    let gitlab_last = env(&[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "3")]);
    assert_eq!(
        Shard::from_sources(None, None, &gitlab_last),
        Ok(Some(Shard::new(2, 3).unwrap()))
    );
    // The flag wins over the environment.
    assert_eq!(
        Shard::from_sources(Some("1/2"), None, &gitlab),
        Ok(Some(Shard::new(1, 2).unwrap()))
    );
    // Nothing set: not sharded.
    assert_eq!(Shard::from_sources(None, None, &env(&[])), Ok(None));
    // --shards without the index is an error, not a silent whole run.
    assert!(matches!(
        Shard::from_sources(None, Some(3), &env(&[])),
        Err(ShardError::Incomplete(_))
    ));
    assert!(Shard::from_sources(None, Some(3), &env(&[("JOB_COMPLETION_INDEX", "3")])).is_err());
    assert!(Shard::from_sources(
        None,
        None,
        &env(&[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "3")])
    )
    .is_err());
    assert!(Shard::from_sources(
        None,
        None,
        &env(&[("CI_NODE_INDEX", "x"), ("CI_NODE_TOTAL", "3")])
    )
    .is_err());
}

#[test]
fn shares_add_up_exactly_and_differ_by_at_most_one() {
    for n in 1..=7u32 {
        for total in [0u64, 1, 2, 6, 7, 100, 1001] {
            let parts: Vec<u64> = shards(n).iter().map(|s| s.share(total)).collect();
            assert_eq!(parts.iter().sum::<u64>(), total, "{total} in {n}");
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{parts:?}");
            // share() is the count of the things owns() gives the shard.
            for s in shards(n) {
                assert_eq!(
                    (0..total).filter(|&k| s.owns(k)).count() as u64,
                    s.share(total)
                );
            }
        }
    }
}

#[test]
fn the_union_of_the_shards_open_schedules_is_the_whole_schedule() {
    for (r, ramp, end) in [
        ("20/s", Duration::ZERO, End::Calls(200)),
        ("20/s", Duration::from_secs(5), End::Calls(200)),
        (
            "3/s",
            Duration::from_secs(2),
            End::After(Duration::from_secs(10)),
        ),
        (
            "7/s",
            Duration::ZERO,
            End::CallsOrAfter(50, Duration::from_secs(3)),
        ),
    ] {
        let whole: Vec<Duration> = OpenPlan::new(rate(r), ramp, end).collect();
        for n in [1u32, 2, 3, 7] {
            let mut union: Vec<Duration> = Vec::new();
            let mut counts = Vec::new();
            for s in shards(n) {
                let plan = OpenPlan::new(rate(r), ramp, end).with_shard(s);
                let total = plan.total_calls();
                let mine: Vec<Duration> = plan.collect();
                assert_eq!(mine.len() as u64, total);
                // Shard i's first call is call i of the whole: offset i / rate.
                if let Some(first) = mine.first() {
                    assert_eq!(*first, whole[s.index() as usize]);
                }
                counts.push(mine.len());
                union.extend(mine);
            }
            union.sort();
            assert_eq!(union, whole, "{r} {ramp:?} {end:?} in {n}");
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{counts:?}");
        }
    }
}

#[test]
fn a_shard_of_a_constant_rate_runs_at_the_rate_over_n_offset_by_its_index() {
    let s = Shard::new(1, 4).unwrap();
    let plan = OpenPlan::new(rate("20/s"), Duration::ZERO, End::Calls(10)).with_shard(s);
    let ms = Duration::from_millis;
    // The whole: every 50 ms; shard 1 of 4: calls 1, 5, 9.
    assert_eq!(plan.collect::<Vec<_>>(), vec![ms(50), ms(250), ms(450)]);
}

#[test]
fn accounts_are_dealt_round_robin_and_their_union_is_the_whole() {
    let whole = scenario(SELFTEST);
    for n in [1u32, 2, 3, 5] {
        let parts: Vec<Scenario> = shards(n)
            .iter()
            .map(|&s| split(&whole, s, Ports::Slice).unwrap())
            .collect();
        for (r, role) in whole.roles.iter().enumerate() {
            let mut union: Vec<String> = parts
                .iter()
                .flat_map(|p| p.roles[r].accounts.iter().map(|a| a.user.clone()))
                .collect();
            union.sort();
            let mut all: Vec<String> = role.accounts.iter().map(|a| a.user.clone()).collect();
            all.sort();
            assert_eq!(union, all);
        }
        // Caller k and callee k land in the same shard: same positions in both roles.
        for (i, p) in parts.iter().enumerate() {
            let callee = &p.roles[0].accounts;
            let caller = &p.roles[1].accounts;
            assert_eq!(callee.len(), caller.len());
            for (a, b) in callee.iter().zip(caller) {
                let ka = whole.roles[0]
                    .accounts
                    .iter()
                    .position(|x| x.user == a.user)
                    .unwrap();
                let kb = whole.roles[1]
                    .accounts
                    .iter()
                    .position(|x| x.user == b.user)
                    .unwrap();
                assert_eq!(ka, kb);
                assert_eq!(ka % n as usize, i);
            }
        }
    }
}

#[test]
fn the_split_is_deterministic_and_the_fingerprint_is_the_wholes() {
    let whole = scenario(LOAD_200);
    let s = Shard::new(1, 3).unwrap();
    let a = split(&whole, s, Ports::Slice).unwrap();
    let b = split(&scenario(LOAD_200), s, Ports::Slice).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(fingerprint(&whole), fingerprint(&scenario(LOAD_200)));
    assert_ne!(fingerprint(&whole), fingerprint(&scenario(SELFTEST)));
    assert_eq!(fingerprint(&whole).len(), 16);
}

#[test]
fn the_open_load_keeps_the_whole_schedule_and_splits_its_cap() {
    let whole = scenario(LOAD_200);
    let mut total = 0;
    let mut caps = 0;
    for s in shards(3) {
        let part = split(&whole, s, Ports::Slice).unwrap();
        let Load::Open {
            max_concurrent,
            shard,
            ..
        } = part.load
        else {
            panic!("open")
        };
        assert_eq!(shard, s);
        caps += max_concurrent.unwrap();
        let LoadPlan::Open(plan) = LoadPlan::compile(&part.load) else {
            panic!("open")
        };
        total += plan.total_calls();
    }
    assert_eq!(total, 200);
    assert_eq!(caps, 200);
}

#[test]
fn the_closed_load_splits_its_calls_and_concurrency_exactly() {
    let whole = scenario(SELFTEST);
    // No load section: every caller once, all at once (10 callers).
    let mut concurrent = 0;
    let mut calls = 0;
    for s in shards(3) {
        let part = split(&whole, s, Ports::Slice).unwrap();
        let Load::Closed {
            concurrent: c, end, ..
        } = part.load
        else {
            panic!("closed")
        };
        concurrent += c;
        calls += end.calls().unwrap();
    }
    let Load::Closed {
        concurrent: c, end, ..
    } = whole.load
    else {
        panic!("closed")
    };
    assert_eq!(concurrent, c);
    assert_eq!(calls, end.calls().unwrap());
}

#[test]
fn rtp_ports_are_sliced_apart_and_listen_ports_move_with_the_calls_that_name_them() {
    let whole = scenario(SELFTEST);
    let parts: Vec<Scenario> = shards(3)
        .iter()
        .map(|&s| split(&whole, s, Ports::Slice).unwrap())
        .collect();
    let ranges: Vec<(u16, u16)> = parts
        .iter()
        .map(|p| (p.media.rtp_ports.first, p.media.rtp_ports.last))
        .collect();
    assert_eq!(ranges, vec![(40000, 40332), (40333, 40665), (40666, 40999)]);
    // Listen ports 5070 and 5080: a span of 11.
    let listens: Vec<(u16, u16)> = parts
        .iter()
        .map(|p| {
            (
                p.roles[0].listen.unwrap().port(),
                p.roles[1].listen.unwrap().port(),
            )
        })
        .collect();
    assert_eq!(listens, vec![(5070, 5080), (5081, 5091), (5092, 5102)]);
    let Step::Call(call) = &parts[2].roles[1].steps[0].value else {
        panic!("call")
    };
    assert_eq!(call.to.to_string(), "sip:{peer}@127.0.0.1:5092");
}

#[test]
fn a_scenario_too_small_for_its_shards_is_refused() {
    let whole = scenario(SELFTEST);
    let s = Shard::new(0, 11).unwrap();
    assert!(matches!(
        split(&whole, s, Ports::Slice),
        Err(ShardError::TooFewAccounts { .. })
    ));
    assert_eq!(
        split(&whole, Shard::WHOLE, Ports::Slice).unwrap().roles,
        whole.roles
    );
}

#[test]
fn a_common_start_is_waited_for_and_one_long_past_is_refused() {
    let s = Duration::from_secs;
    assert_eq!(start_delay(s(1000), s(990)), Ok(s(10)));
    // A few seconds late: at once.
    assert_eq!(start_delay(s(1000), s(1003)), Ok(Duration::ZERO));
    assert_eq!(start_delay(s(1000), s(1005)), Ok(Duration::ZERO));
    assert!(matches!(
        start_delay(s(1000), s(1006)),
        Err(ShardError::StartPassed { late_ms: 6000 })
    ));
}

#[test]
fn shards_on_addresses_of_their_own_keep_every_port() {
    let whole = scenario(SELFTEST);
    for s in shards(3) {
        let part = split(&whole, s, Ports::Whole).unwrap();
        assert_eq!(part.media.rtp_ports, whole.media.rtp_ports);
        assert_eq!(part.roles[0].listen, whole.roles[0].listen);
        assert_eq!(part.roles[1].steps, whole.roles[1].steps);
        assert_eq!(part.roles[0].accounts.len(), 4 - usize::from(s.index() > 0));
    }
    assert_eq!("whole".parse::<Ports>(), Ok(Ports::Whole));
    assert!("all".parse::<Ports>().is_err());
}
