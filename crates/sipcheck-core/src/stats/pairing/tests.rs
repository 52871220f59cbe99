use std::time::{Duration, Instant};

use super::{Pairing, MAX_HELD};
use crate::stats::fixture::{callee, caller};
use crate::stats::metrics::{Metrics, RunInfo};
use crate::stats::outcome::{CallResult, Failure, FailureKind, Side};

/// The one clock read of these tests; everything after it is virtual.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn deaf(mut r: CallResult) -> CallResult {
    r.audio_verified = 0;
    r.failures.push(Failure {
        step: "expect",
        line: 20,
        col: 9,
        kind: FailureKind::NoAudio,
        message: "no audio signature heard within 3 s".into(),
    });
    r
}

fn kinds(r: &CallResult) -> Vec<String> {
    r.failures.iter().map(|f| f.kind.label()).collect()
}

#[test]
fn both_ends_of_a_call_are_released_together_and_one_way_audio_is_named() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    assert!(p.push(t0, deaf(callee(7))).is_empty());
    assert_eq!(p.held(), 1);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    let out = p.push(t0 + Duration::from_millis(3), caller(7));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].side, Side::Caller);
    assert!(out[0].passed());
    assert_eq!(kinds(&out[1]), ["one_way_audio"]);
    assert!(
        out[1].failures[0]
            .message
            .contains("caller → callee carried nothing"),
        "{}",
        out[1].failures[0].message
    );
    assert_eq!(p.held(), 0);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn the_caller_first_and_deaf_names_the_other_direction() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    assert!(p.push(t0, deaf(caller(1))).is_empty());
    let out = p.push(t0, callee(1));
    assert_eq!(kinds(&out[0]), ["one_way_audio"]);
    assert!(out[0].failures[0]
        .message
        .contains("callee → caller carried nothing"));
    assert!(out[1].passed());
}

#[test]
fn a_paired_one_way_call_counts_as_one_failed_call_of_one_kind() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    let mut m = Metrics::new(std::time::SystemTime::UNIX_EPOCH, &RunInfo::default());
    for r in p
        .push(t0, deaf(callee(3)))
        .into_iter()
        .chain(p.push(t0, caller(3)))
    {
        m.record_call(&r);
    }
    let s = m.finish(Duration::from_secs(1), false);
    assert_eq!(s.calls.failed, 1, "{:?}", s.calls);
    assert_eq!(s.failures.get("one_way_audio"), Some(&1));
    assert_eq!(s.failures.get("no_audio"), None);
}

#[test]
fn both_ends_deaf_stay_no_audio() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    p.push(t0, deaf(callee(2)));
    let out = p.push(t0, deaf(caller(2)));
    assert_eq!(kinds(&out[0]), ["no_audio"]);
    assert_eq!(kinds(&out[1]), ["no_audio"]);
}

#[test]
fn an_end_whose_partner_never_comes_is_released_unchanged_after_the_hold() {
    let t0 = base();
    let hold = Duration::from_secs(5);
    let mut p = Pairing::new(true, hold);
    p.push(t0, deaf(callee(4)));
    p.push(t0 + Duration::from_secs(1), caller(5));
    assert!(p
        .handle_timeout(t0 + hold - Duration::from_millis(1))
        .is_empty());
    let out = p.handle_timeout(t0 + hold);
    assert_eq!(out.len(), 1);
    assert_eq!(kinds(&out[0]), ["no_audio"]);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(1) + hold));
    let out = p.handle_timeout(t0 + Duration::from_secs(6));
    assert_eq!(out[0].call_id, caller(5).call_id);
    // Its partner, late, is released alone, as it is.
    let out = p.push(t0 + Duration::from_secs(7), callee(4));
    assert!(out.is_empty());
    assert_eq!(p.flush().len(), 1);
}

#[test]
fn flush_releases_every_held_result_oldest_first() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    for i in 0..10 {
        p.push(t0 + Duration::from_millis(i), deaf(callee(i)));
    }
    let out = p.flush();
    assert_eq!(out.len(), 10);
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, r)| r.call_id == callee(i as u64).call_id));
    assert!(out.iter().all(|r| kinds(r) == ["no_audio"]));
    assert_eq!(p.held(), 0);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn without_both_roles_nothing_is_held() {
    let t0 = base();
    let mut p = Pairing::new(false, Duration::from_secs(5));
    let out = p.push(t0, deaf(caller(1)));
    assert_eq!(kinds(&out[0]), ["no_audio"]);
    assert_eq!(p.held(), 0);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn memory_is_bounded_the_oldest_goes_first() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(3600));
    let mut released = Vec::new();
    for i in 0..(MAX_HELD as u64 + 10) {
        released.extend(p.push(t0, caller(i)));
    }
    assert_eq!(p.held(), MAX_HELD);
    assert_eq!(released.len(), 10);
    assert_eq!(released[0].call_id, caller(0).call_id);
    assert_eq!(p.flush().len(), MAX_HELD);
}

#[test]
fn many_paired_calls_leave_nothing_behind() {
    let t0 = base();
    let mut p = Pairing::new(true, Duration::from_secs(5));
    let mut n = 0;
    for i in 0..10_000 {
        n += p.push(t0, caller(i)).len();
        n += p.push(t0, callee(i)).len();
    }
    assert_eq!(n, 20_000);
    assert_eq!(p.held(), 0);
    assert!(p.order.len() <= 64 + 1);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn paired_ends_measure_each_direction_s_delay_and_rate_it_in_the_mos() {
    use crate::scenario::threshold::Metric;
    use std::time::SystemTime;
    let t0 = base();
    let ms = Duration::from_millis;
    // The caller's passes of its signature's loop go out every 17 s and are heard 80 ms
    // later; the callee's are heard 240 ms later (each decoded frame names its pass).
    let pass = crate::media::signature::LOOP;
    let mut a = caller(4);
    let mut b = callee(4);
    let (ma, mb) = (a.media.as_mut().unwrap(), b.media.as_mut().unwrap());
    ma.signature_sent = (0..3).map(|k| t0 + pass * k).collect();
    mb.signature_sent = (0..3).map(|k| t0 + ms(10) + pass * k).collect();
    mb.signature_onsets = (0..6).map(|k| t0 + ms(80) + pass * (k / 2)).collect();
    ma.signature_onsets = (0..6).map(|k| t0 + ms(10 + 240) + pass * (k / 2)).collect();
    let mos_before = ma.quality.unwrap().mos_cqe;
    let mut p = Pairing::new(true, Duration::from_secs(5));
    assert!(p.push(t0, a).is_empty());
    let out = p.push(t0, b);
    let (a, b) = (&out[0], &out[1]);
    let (ma, mb) = (a.media.as_ref().unwrap(), b.media.as_ref().unwrap());
    assert_eq!(mb.delay, Some(ms(80)));
    assert_eq!(ma.delay, Some(ms(240)));
    // 240 ms one way impairs (G.107 Idd above 100 ms); 80 ms does not.
    assert!(ma.quality.unwrap().mos_cqe < mos_before - 0.05);
    assert!((mb.quality.unwrap().mos_cqe - mos_before).abs() < 1e-9);
    let mut m = Metrics::new(SystemTime::UNIX_EPOCH, &RunInfo::default());
    for r in &out {
        m.record_call(r);
    }
    let s = m.finish(Duration::from_secs(1), false);
    let delay = s.timing(Metric::AudioDelay).unwrap();
    assert_eq!(delay.len(), 2);
    assert!(
        (delay.max() as f64 / 1000.0 - 240.0).abs() < 1.0,
        "{}",
        delay.max()
    );
}

#[test]
fn an_end_without_the_far_end_s_frames_has_no_delay() {
    let t0 = base();
    let mut a = caller(5);
    a.media.as_mut().unwrap().signature_onsets = vec![t0 + Duration::from_millis(80)];
    let mut p = Pairing::new(true, Duration::from_secs(5));
    assert!(p.push(t0, a).is_empty());
    let out = p.push(t0, callee(5));
    assert!(out
        .iter()
        .all(|r| r.media.as_ref().unwrap().delay.is_none()));
}
