//! The call script in virtual time: events fed in, time jumped to `poll_timeout()`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::media::dtmf::Digit;
use crate::media::tone::Tone;
use crate::scenario::model::CallStep;
use crate::scenario::text::{Placeholder, Template};
use crate::scenario::units::Decibels;
use crate::sdp::{Codec, Direction};
use crate::ua::call::{CallDirection, CallEnd, CallId};

mod conference;
mod matches;
mod pesq;
mod redirect;
mod responder;
mod transfer;

const ID: CallId = CallId::for_test(7);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn at(line: u32, value: Step) -> Located<Step> {
    Located {
        value,
        line,
        col: 5,
        record: false,
    }
}

fn call_step(timeout: Duration) -> Step {
    Step::Call(CallStep {
        to: Template::parse("{peer}", &[Placeholder::Peer, Placeholder::User]).unwrap(),
        peer: None,
        timeout,
        max_redirects: 0,
    })
}

fn tone_expectation(hz: f64, within: Duration) -> Step {
    Step::Expect(Expectation::Tone {
        frequencies: vec![hz],
        within,
        min_snr: Decibels(10.0),
        min_duration: Duration::from_millis(200),
        max_gap: Duration::from_millis(100),
    })
}

fn digits(s: &str) -> Vec<Digit> {
    s.chars().map(|c| Digit::from_char(c).unwrap()).collect()
}

fn config(side: Side) -> ScriptConfig {
    ScriptConfig {
        role: "r".into(),
        side,
        user: "1001".into(),
        account_domain: "pbx.test".into(),
        peer_user: "2001".into(),
        domain: "pbx.test".into(),
        rtp: true,
        wavs: Arc::new(HashMap::new()),
        scheduled: (side == Side::Caller).then_some(Duration::ZERO),
        start_lag: Duration::ZERO,
        signature_call: None,
        signature_parties: Vec::new().into(),
    }
}

fn negotiated() -> Negotiated {
    Negotiated {
        media_index: 0,
        remote_rtp: SocketAddr::from(([127, 0, 0, 1], 4000)),
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        remote_hold: false,
        srtp: None,
    }
}

fn local() -> LocalMedia {
    LocalMedia::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 20_000, 1)
}

/// One script, its clock and the commands it gave.
struct Harness {
    script: CallScript,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn caller(steps: Vec<Located<Step>>) -> Self {
        let t0 = base();
        let mut script = CallScript::caller(t0, config(Side::Caller), Arc::new(steps));
        script.start(t0);
        Self {
            script,
            t0,
            now: t0,
        }
    }

    fn callee(steps: Vec<Located<Step>>) -> Self {
        let t0 = base();
        let mut script = CallScript::callee(t0, config(Side::Callee), Arc::new(steps), "c1".into());
        script.start(t0);
        Self {
            script,
            t0,
            now: t0,
        }
    }

    fn commands(&mut self) -> Vec<ScriptCommand> {
        std::iter::from_fn(|| self.script.poll_command()).collect()
    }

    /// Place the call: the INVITE command, answered placed.
    fn place(&mut self) {
        let cmds = self.commands();
        assert!(
            matches!(&cmds[..], [ScriptCommand::Invite { target }] if target == "sip:2001@pbx.test"),
            "{cmds:?}"
        );
        self.script.handle_placed(
            self.now,
            Ok(Placed {
                call_id: "c1".into(),
                local: local(),
            }),
        );
    }

    /// Accept the call (callee): the accept command, answered with the negotiated media.
    fn accept(&mut self) {
        let cmds = self.commands();
        assert!(matches!(&cmds[..], [ScriptCommand::Accept]), "{cmds:?}");
        self.script
            .handle_accepted(self.now, Ok((local(), Some(negotiated()))));
    }

    fn after(&mut self, d: Duration) {
        self.now += d;
        self.script.handle_timeout(self.now);
    }

    /// Jump to the next deadline.
    fn jump(&mut self) {
        let next = self.script.poll_timeout().expect("a deadline");
        assert!(next >= self.now);
        self.now = next;
        self.script.handle_timeout(self.now);
    }

    fn event(&mut self, event: CallEvent<SocketAddr>) {
        self.script.handle_call_event(self.now, event);
    }

    fn media(&mut self, event: MediaEvent) {
        self.script.handle_media_event(self.now, event);
    }

    fn answered(&mut self) {
        self.event(CallEvent::Answered {
            call: ID,
            negotiated: negotiated(),
        });
    }

    fn ended(&mut self, reason: CallEndReason, edit: impl FnOnce(&mut CallRecord)) {
        let mut record = record(self.t0, self.now, reason);
        edit(&mut record);
        self.event(CallEvent::Ended {
            call: ID,
            record: Box::new(record),
        });
    }

    fn result(self) -> CallResult {
        assert!(self.script.is_done(), "not done");
        self.script.finish(None, &RawLadder::default())
    }
}

/// The base instant of a test (time then only moves by the test's jumps).
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn record(invite: Instant, now: Instant, reason: CallEndReason) -> CallRecord {
    CallRecord {
        call_id: "c1".into(),
        direction: CallDirection::Outgoing,
        invite,
        first_provisional: None,
        first_ringing: None,
        answer: None,
        ack: None,
        cancel: None,
        bye_sent: None,
        bye_response: None,
        bye_received: None,
        final_code: None,
        bye_code: None,
        bye_timeout: None,
        cancel_code: None,
        auth_challenges: 0,
        requests_retransmitted: 0,
        responses_retransmitted: 0,
        duplicates_received: 0,
        answered_before_cancel: false,
        redirects: Vec::new(),
        end: Some(CallEnd { at: now, reason }),
    }
}

fn watch_of(cmds: &[ScriptCommand]) -> u32 {
    cmds.iter()
        .find_map(|c| match c {
            ScriptCommand::Media(
                MediaIntent::WatchTone { watch, .. }
                | MediaIntent::WatchSilence { watch, .. }
                | MediaIntent::WatchDtmf { watch, .. }
                | MediaIntent::Probe(watch),
            ) => Some(*watch),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no watch in {cmds:?}"))
}

/// The watch of a speech, prompt or audio intent.
fn watch_id(cmds: &[ScriptCommand]) -> u32 {
    cmds.iter()
        .find_map(|c| match c {
            ScriptCommand::Media(
                MediaIntent::WatchSpeech { watch }
                | MediaIntent::WatchPromptEnd { watch }
                | MediaIntent::WatchAudio { watch },
            ) => Some(*watch),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no speech watch in {cmds:?}"))
}

fn has(cmds: &[ScriptCommand], f: impl Fn(&ScriptCommand) -> bool) -> bool {
    cmds.iter().any(f)
}

#[test]
fn a_caller_places_plays_hears_the_tone_and_hangs_up_and_passes() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(
            4,
            Step::Play(vec![PlayItem::Tone {
                tone: Tone::single(1000.0, -10.0).unwrap(),
                duration: None,
            }]),
        ),
        at(5, tone_expectation(425.0, secs(5))),
        at(6, Step::Hangup { after: secs(2) }),
    ]);
    h.place();
    assert!(h.commands().is_empty());
    h.after(Duration::from_millis(300));
    h.answered();
    let cmds = h.commands();
    assert!(matches!(
        &cmds[0],
        ScriptCommand::Media(MediaIntent::Start(_))
    ));
    assert!(matches!(
        &cmds[1],
        ScriptCommand::Media(MediaIntent::Play(_))
    ));
    let watch = watch_of(&cmds);
    h.after(Duration::from_millis(700));
    h.media(MediaEvent::ToneHeard {
        watch,
        onset: Duration::from_millis(640),
    });
    assert!(h.commands().is_empty(), "the hang-up waits its 2 s");
    h.jump();
    let cmds = h.commands();
    assert!(matches!(
        &cmds[..],
        [
            ScriptCommand::Media(MediaIntent::SetSending(false)),
            ScriptCommand::Hangup
        ]
    ));
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
    });
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.tone_onsets, vec![Duration::from_millis(640)]);
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
    assert_eq!(result.steps.len(), 4);
    assert!(result.steps.iter().all(|s| s.passed));
    assert_eq!(result.steps[3].elapsed, secs(2));
    assert_eq!(result.call_id, "c1");
}

/// A caller whose tone step (line 5) heard its tone, hung up after 2 s; the call's media
/// report has `gaps` in the tone.
fn tone_call_with_gaps(gaps: &[(u64, u64)]) -> CallResult {
    tone_call_with_gaps_allowing(gaps, Duration::from_millis(100))
}

/// The same, the tone step allowing gaps up to `max_gap`.
fn tone_call_with_gaps_allowing(gaps: &[(u64, u64)], max_gap: Duration) -> CallResult {
    let mut tone = tone_expectation(425.0, secs(5));
    if let Step::Expect(Expectation::Tone { max_gap: m, .. }) = &mut tone {
        *m = max_gap;
    }
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(5, tone),
        at(6, Step::Hangup { after: secs(2) }),
    ]);
    h.place();
    h.after(Duration::from_millis(300));
    h.answered();
    let watch = watch_of(&h.commands());
    h.after(Duration::from_millis(700));
    h.media(MediaEvent::ToneHeard {
        watch,
        onset: Duration::from_millis(640),
    });
    h.jump();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
    });
    let mut report = heard();
    report.audio_gaps = gaps
        .iter()
        .map(|&(start_ms, len_ms)| crate::media::tone::Gap {
            start_sample: start_ms * 8,
            samples: len_ms * 8,
        })
        .collect();
    report.audio_gap_count = gaps.len() as u64;
    assert!(h.script.is_done());
    h.script.finish(Some(&report), &RawLadder::default())
}

#[test]
fn a_200_ms_dropout_in_a_heard_tone_fails_the_tone_step_saying_where_and_how_long() {
    let result = tone_call_with_gaps(&[(1500, 60), (3020, 200)]);
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let f = &result.failures[0];
    assert_eq!((f.step, f.line, f.col), ("expect", 5, 5));
    assert_eq!(f.kind, FailureKind::AudioGap);
    assert_eq!(
        f.message,
        "the expected audio dropped out (200 ms at 3.02 s into the received audio; limit 100 ms)"
    );
    let media = result.media.unwrap();
    assert_eq!(
        media.audio_gaps,
        vec![Duration::from_millis(60), Duration::from_millis(200)]
    );
    assert_eq!(media.audio_gap_count, 2);
    // The tone was heard: verified, and the call failed for its gap all the same.
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
}

#[test]
fn a_tone_steps_max_gap_is_its_limit() {
    let ms = Duration::from_millis;
    let result = tone_call_with_gaps_allowing(&[(3020, 200)], ms(250));
    assert!(result.passed(), "{:?}", result.failures);
    let result = tone_call_with_gaps_allowing(&[(3020, 60)], ms(60));
    assert_eq!(result.failures[0].kind, FailureKind::AudioGap);
    assert!(result.failures[0].message.ends_with("limit 60 ms)"));
}

#[test]
fn gaps_under_the_limit_are_counted_but_do_not_fail() {
    let result = tone_call_with_gaps(&[(1500, 60), (2000, 99)]);
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.media.unwrap().audio_gap_count, 2);
    let result = tone_call_with_gaps(&[(1500, 100), (2000, 150)]);
    assert!(
        result.failures[0]
            .message
            .contains("2 gaps over the limit, the longest 150 ms at 2.00 s"),
        "{:?}",
        result.failures
    );
}

#[test]
fn a_refused_call_fails_the_step_that_needed_the_answer_naming_the_status() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, tone_expectation(425.0, secs(5))),
        at(5, Step::Hangup { after: secs(0) }),
    ]);
    h.place();
    h.after(secs(1));
    h.ended(
        CallEndReason::Rejected {
            code: 486,
            reason: "Busy Here".into(),
        },
        |r| r.final_code = Some(486),
    );
    let result = h.result();
    assert_eq!(result.failures.len(), 1, "{:?}", result.failures);
    let f = &result.failures[0];
    assert_eq!((f.step, f.line, f.col), ("expect", 4, 5));
    assert_eq!(f.kind, FailureKind::SipCode(486));
    assert!(f.message.starts_with("the call ended: "), "{}", f.message);
    assert!(f.message.contains("486"), "{}", f.message);
    assert_eq!(result.steps.len(), 2, "the hang-up was never reached");
    assert!(!result.steps[1].passed);
}

#[test]
fn no_answer_within_the_call_timeout_fails_then_the_call_is_hung_up() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(5))),
        at(4, tone_expectation(425.0, secs(5))),
    ]);
    h.place();
    h.jump();
    assert_eq!(h.now - h.t0, secs(5));
    let cmds = h.commands();
    assert!(matches!(&cmds[..], [ScriptCommand::Hangup]), "{cmds:?}");
    assert!(!h.script.is_done(), "the end is awaited");
    h.ended(CallEndReason::Cancelled, |_| {});
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].message, "not answered within 5.0 s");
    assert_eq!(result.failures[0].kind, FailureKind::Signalling);
    assert_eq!(result.audio_checked, 1);
    assert_eq!(result.audio_verified, 0);
}

#[test]
fn a_tone_not_heard_in_its_window_fails_naming_the_tone_the_level_and_the_line() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, tone_expectation(425.0, secs(2))),
    ]);
    h.accept();
    h.answered();
    let watch = watch_of(&h.commands());
    h.jump();
    assert_eq!(h.now - h.t0, secs(2));
    let cmds = h.commands();
    assert!(has(
        &cmds,
        |c| matches!(c, ScriptCommand::Media(MediaIntent::Unwatch(w)) if *w == watch)
    ));
    let probe = watch_of(&cmds);
    h.media(MediaEvent::Status {
        watch: probe,
        level_dbfs: Some(-71.26),
        behind: (0, 0),
        dtmf_received: String::new(),
    });
    let cmds = h.commands();
    assert!(matches!(&cmds[..], [ScriptCommand::Hangup]), "{cmds:?}");
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    let f = &result.failures[0];
    assert_eq!((f.step, f.line, f.col), ("expect", 11, 5));
    assert_eq!(f.kind, FailureKind::ToneMissing);
    assert_eq!(
        f.message,
        "expected tone 425 Hz not heard within 2.0 s (received level -71.3 dBFS)"
    );
}

#[test]
fn a_stream_that_never_reports_its_status_still_fails_the_tone_in_bounded_time() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, tone_expectation(425.0, secs(2))),
    ]);
    h.accept();
    h.answered();
    h.jump();
    h.jump();
    assert_eq!(h.now - h.t0, secs(2) + PROBE_WAIT);
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(
        result.failures[0].message,
        "expected tone 425 Hz not heard within 2.0 s (received no audio)"
    );
}

#[test]
fn a_tone_heard_after_ctrl_c_is_not_a_pass() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, tone_expectation(425.0, secs(5))),
    ]);
    h.accept();
    h.answered();
    let watch = watch_of(&h.commands());
    h.after(secs(1));
    h.script.stop(h.now);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.media(MediaEvent::ToneHeard {
        watch,
        onset: secs(1),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.audio_verified, 0);
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].kind, FailureKind::Interrupted);
    assert!(!result.steps.last().unwrap().passed);
}

#[test]
fn wrong_dtmf_digits_fail_naming_what_was_received() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(
            11,
            Step::Expect(Expectation::Dtmf {
                digits: digits("123"),
                within: secs(10),
            }),
        ),
    ]);
    h.accept();
    h.answered();
    let cmds = h.commands();
    assert!(has(&cmds, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchDtmf { digits, .. }) if digits == "123"
    )));
    h.jump();
    let probe = watch_of(&h.commands()[1..]);
    h.media(MediaEvent::Status {
        watch: probe,
        level_dbfs: None,
        behind: (0, 0),
        dtmf_received: "129".into(),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::DtmfMissing);
    assert_eq!(
        result.failures[0].message,
        "expected DTMF '123', received '129'"
    );
    assert_eq!((result.dtmf_checked, result.dtmf_verified), (1, 0));
}

#[test]
fn dtmf_sent_without_telephone_event_fails_and_with_it_is_sent() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(
            4,
            Step::Dtmf {
                digits: digits("12#"),
                duration: Duration::from_millis(100),
                gap: Duration::from_millis(100),
            },
        ),
    ]);
    h.place();
    h.event(CallEvent::Answered {
        call: ID,
        negotiated: Negotiated {
            telephone_event_pt: None,
            ..negotiated()
        },
    });
    let result = {
        h.ended(CallEndReason::LocalBye, |_| {});
        h.result()
    };
    assert_eq!(result.failures[0].kind, FailureKind::DtmfMissing);
    assert!(result.failures[0]
        .message
        .starts_with("DTMF not sent: the peer did not accept telephone-event"));

    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(
            4,
            Step::Dtmf {
                digits: digits("12#"),
                duration: Duration::from_millis(100),
                gap: Duration::from_millis(100),
            },
        ),
    ]);
    h.place();
    h.answered();
    let cmds = h.commands();
    assert!(has(&cmds, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::SendDtmf { digits, .. }) if digits == "12#"
    )));
}

#[test]
fn a_wait_cut_short_by_the_awaited_bye_is_not_a_failure() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::Wait(secs(30))),
        at(12, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.answered();
    h.after(secs(3));
    h.ended(CallEndReason::RemoteBye, |r| {
        r.bye_received = Some(r.invite)
    });
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.steps.len(), 3);
}

#[test]
fn a_bye_that_overtakes_a_lost_ack_completes_the_answer() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.after(secs(2));
    h.ended(CallEndReason::RemoteBye, |r| {
        r.answer = Some(r.invite);
        r.bye_received = Some(r.invite + secs(2));
    });
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.steps.len(), 2);
}

#[test]
fn a_bye_before_our_answer_still_fails_the_answer() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.ended(CallEndReason::RemoteBye, |r| r.answer = None);
    let result = h.result();
    assert!(!result.passed());
    assert_eq!(result.failures[0].line, 10);
}

#[test]
fn a_wait_cut_short_by_another_end_fails_naming_it() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::Wait(secs(30))),
        at(12, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.answered();
    h.after(secs(3));
    h.ended(CallEndReason::DialogLost { code: 481 }, |_| {});
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    let f = &result.failures[0];
    assert_eq!((f.step, f.line), ("wait", 11));
    assert_eq!(f.kind, FailureKind::SipCode(481));
    assert!(f.message.starts_with("the call ended: "));
}

#[test]
fn a_ring_cut_short_by_the_callers_cancel_before_wait_for_cancel_passes() {
    let mut h = Harness::callee(vec![
        at(10, Step::Ring(secs(30))),
        at(11, Step::WaitFor(WaitEvent::Cancel)),
    ]);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Ring]));
    h.after(secs(2));
    h.ended(CallEndReason::CancelledByRemote, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
}

#[test]
fn wait_for_bye_that_never_comes_gives_up_35_s_after_the_load_is_over() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.answered();
    h.commands();
    h.after(secs(10));
    h.script.load_done(h.now);
    h.jump();
    assert_eq!(h.now - h.t0, secs(10) + END_WAIT);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(
        result.failures[0].message,
        "Bye did not come: the load was over 35 s before"
    );
}

#[test]
fn wait_for_bye_ended_by_something_else_fails() {
    let mut h = Harness::callee(vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::WaitFor(WaitEvent::Bye)),
    ]);
    h.accept();
    h.answered();
    h.after(secs(10));
    h.ended(
        CallEndReason::NoAck {
            elapsed: Duration::from_secs(32),
        },
        |_| {},
    );
    let result = h.result();
    assert!(result.failures[0]
        .message
        .starts_with("waited for Bye, but the call ended: "));
}

#[test]
fn a_bye_answered_481_fails_the_hangup_step() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hangup { after: secs(1) }),
    ]);
    h.place();
    h.answered();
    h.jump();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(481);
    });
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    let f = &result.failures[0];
    assert_eq!((f.step, f.line), ("hangup", 4));
    assert_eq!(f.kind, FailureKind::ByeFailed("481".into()));
}

#[test]
fn a_bye_never_answered_fails_the_hangup_step() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hangup { after: secs(0) }),
    ]);
    h.place();
    h.answered();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_timeout = Some(secs(32));
    });
    let result = h.result();
    assert_eq!(
        result.failures[0].kind,
        FailureKind::ByeFailed("timeout".into())
    );
    assert_eq!(result.failures[0].line, 4);
}

#[test]
fn a_refused_cancel_fails_the_cancel_step_naming_the_status() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Cancel { after: secs(0) }),
    ]);
    h.place();
    assert!(matches!(&h.commands()[..], [ScriptCommand::Cancel]));
    h.after(secs(1));
    h.ended(
        CallEndReason::CancelFailed {
            cancel_code: Some(481),
            waited: None,
        },
        |_| {},
    );
    let result = h.result();
    let f = &result.failures[0];
    assert_eq!((f.step, f.line), ("cancel", 4));
    assert_eq!(f.kind, FailureKind::CancelFailed("481".into()));
}

#[test]
fn ctrl_c_mid_wait_hangs_up_and_the_call_is_interrupted_never_passed() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Wait(secs(60))),
        at(5, Step::Hangup { after: secs(0) }),
    ]);
    h.place();
    h.answered();
    h.commands();
    h.after(secs(5));
    h.script.stop(h.now);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    assert_eq!(h.script.poll_timeout(), Some(h.now + END_WAIT));
    h.after(secs(1));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].kind, FailureKind::Interrupted);
    assert_eq!(result.steps.len(), 2, "no step after the interrupted one");
    assert!(!result.steps[1].passed);
}

#[test]
fn ctrl_c_whose_hangup_is_never_answered_ends_the_script_in_bounded_time() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Wait(secs(60))),
    ]);
    h.place();
    h.answered();
    h.script.stop(h.now);
    h.jump();
    // The script winds up as any script does: one more hang-up, bounded the same.
    h.jump();
    assert!(h.script.is_done());
    assert_eq!(h.now - h.t0, END_WAIT * 2);
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::Interrupted);
}

#[test]
fn a_peers_hold_during_play_and_wait_is_followed_and_is_not_a_failure() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Play(vec![PlayItem::Silence(secs(10))])),
        at(5, Step::Wait(secs(5))),
        at(6, Step::Hangup { after: secs(0) }),
    ]);
    h.place();
    h.answered();
    h.commands();
    h.after(secs(1));
    h.event(CallEvent::MediaUpdated {
        call: ID,
        negotiated: Negotiated {
            direction: Direction::RecvOnly,
            remote_hold: true,
            ..negotiated()
        },
    });
    let cmds = h.commands();
    assert!(matches!(&cmds[..], [ScriptCommand::Media(MediaIntent::Follow(n))] if n.remote_hold));
    h.jump();
    assert!(has(&h.commands(), |c| matches!(c, ScriptCommand::Hangup)));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
}

#[test]
fn hold_offers_sendonly_and_passes_when_answered() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hold(HoldMode::SendOnly)),
        at(5, Step::Resume),
    ]);
    h.place();
    h.answered();
    let cmds = h.commands();
    let offer = cmds
        .iter()
        .find_map(|c| match c {
            ScriptCommand::Reinvite(m) => Some(m.direction),
            _ => None,
        })
        .expect("a re-INVITE");
    assert_eq!(offer, Direction::SendOnly);
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.event(CallEvent::MediaUpdated {
        call: ID,
        negotiated: Negotiated {
            direction: Direction::SendOnly,
            ..negotiated()
        },
    });
    let cmds = h.commands();
    let offer = cmds
        .iter()
        .find_map(|c| match c {
            ScriptCommand::Reinvite(m) => Some(m.direction),
            _ => None,
        })
        .expect("the resume re-INVITE");
    assert_eq!(offer, Direction::SendRecv);
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.event(CallEvent::MediaUpdated {
        call: ID,
        negotiated: negotiated(),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
}

#[test]
fn a_hold_refused_fails_naming_the_status_and_one_unanswered_fails_after_its_bound() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hold(HoldMode::Inactive)),
    ]);
    h.place();
    h.answered();
    h.commands();
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.event(CallEvent::UpdateFailed {
        call: ID,
        code: 488,
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::SipCode(488));
    assert_eq!(
        result.failures[0].message,
        "the hold re-INVITE was answered 488"
    );

    let mut h = Harness::caller(vec![at(3, call_step(secs(32))), at(4, Step::Resume)]);
    h.place();
    h.answered();
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.jump();
    assert_eq!(h.now - h.t0, REINVITE_WAIT);
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(
        result.failures[0].message,
        "the resume re-INVITE had no answer within 33 s"
    );
}

#[test]
fn a_callee_rejects_after_ringing_and_passes_on_the_end_it_asked_for() {
    let mut h = Harness::callee(vec![at(
        10,
        Step::Reject {
            code: 486,
            ring: secs(2),
        },
    )]);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Ring]));
    h.jump();
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reject(486)]));
    h.ended(CallEndReason::Declined { code: 486 }, |r| {
        r.final_code = Some(486)
    });
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
}

#[test]
fn expected_ringing_and_final_hold_or_fail_with_what_came() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Expect(Expectation::Ringing { within: secs(5) })),
        at(
            5,
            Step::Expect(Expectation::Final {
                code: 486,
                within: secs(10),
            }),
        ),
    ]);
    h.place();
    h.after(secs(1));
    h.event(CallEvent::Progress {
        call: ID,
        code: 180,
        at: h.now,
    });
    h.after(secs(1));
    h.ended(
        CallEndReason::Rejected {
            code: 486,
            reason: "Busy Here".into(),
        },
        |r| r.final_code = Some(486),
    );
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);

    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Expect(Expectation::Ringing { within: secs(5) })),
    ]);
    h.place();
    h.jump();
    h.ended(CallEndReason::Cancelled, |_| {});
    let result = h.result();
    assert_eq!(
        result.failures[0].message,
        "expected 180/183 ringing: nothing within 5.0 s"
    );
}

#[test]
fn an_unresolvable_target_fails_the_call_step_without_a_call() {
    let mut h = Harness::caller(vec![at(3, call_step(secs(32))), at(4, Step::Wait(secs(1)))]);
    h.commands();
    h.script.handle_placed(h.now, Err(CommandError::Unresolved));
    let result = h.result();
    assert_eq!(
        result.failures[0].message,
        "cannot resolve the host of sip:2001@pbx.test"
    );
    assert_eq!(result.steps.len(), 1);
    assert_eq!(result.end_reason, "not started");
}

#[test]
fn an_answer_without_an_rtp_port_refuses_the_call_with_503() {
    let mut h = Harness::callee(vec![at(10, Step::Answer { ring: secs(0) })]);
    h.commands();
    h.script
        .handle_accepted(h.now, Err(CommandError::NoRtpSocket("range full".into())));
    let cmds = h.commands();
    assert!(matches!(&cmds[0], ScriptCommand::Reject(503)), "{cmds:?}");
    h.ended(CallEndReason::Declined { code: 503 }, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].message, "no RTP socket: range full");
}

#[test]
fn ctrl_c_before_the_first_step_places_no_call() {
    let t0 = base();
    let mut script = CallScript::caller(
        t0,
        config(Side::Caller),
        Arc::new(vec![at(3, call_step(secs(32)))]),
    );
    script.stop(t0);
    script.start(t0);
    assert!(script.poll_command().is_none(), "no INVITE");
    assert!(script.is_done());
    let result = script.finish(None, &RawLadder::default());
    assert_eq!(result.failures[0].kind, FailureKind::Interrupted);
    assert!(result.steps.is_empty());
}

#[test]
fn ctrl_c_while_the_invite_is_placed_runs_no_further_step() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Wait(secs(10))),
    ]);
    h.script.stop(h.now);
    h.place();
    let cmds = h.commands();
    assert!(matches!(&cmds[..], [ScriptCommand::Hangup]), "{cmds:?}");
    h.ended(CallEndReason::Cancelled, |_| {});
    let result = h.result();
    assert_eq!(result.steps.len(), 1);
    assert_eq!(result.failures[0].kind, FailureKind::Interrupted);
}

#[test]
fn expected_silence_passes_when_it_holds_and_fails_when_it_does_not_in_time() {
    let steps = || {
        vec![
            at(10, Step::Answer { ring: secs(0) }),
            at(
                11,
                Step::Expect(Expectation::Silence {
                    duration: Duration::from_millis(500),
                    within: secs(2),
                }),
            ),
        ]
    };
    let mut h = Harness::callee(steps());
    h.accept();
    h.answered();
    let watch = watch_of(&h.commands());
    h.after(secs(1));
    h.media(MediaEvent::SilenceHeld { watch });
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));

    let mut h = Harness::callee(steps());
    h.accept();
    h.answered();
    h.commands();
    h.jump();
    assert_eq!(
        h.now - h.t0,
        Duration::from_millis(2500),
        "within + duration"
    );
    let probe = watch_of(&h.commands());
    h.media(MediaEvent::Status {
        watch: probe,
        level_dbfs: Some(-20.0),
        behind: (0, 0),
        dtmf_received: String::new(),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::NoSilence);
    assert_eq!(
        result.failures[0].message,
        "expected 0.5 s of silence (no speech, no tone), not heard (received level -20.0 dBFS)"
    );
}

/// A callee answering, then expecting `expectation` at line 11.
fn speech_steps(expectation: Expectation) -> Vec<Located<Step>> {
    vec![
        at(10, Step::Answer { ring: secs(0) }),
        at(11, Step::Expect(expectation)),
        at(12, Step::Wait(secs(1))),
    ]
}

#[test]
fn expected_speech_passes_when_heard_and_the_next_step_follows() {
    let mut h = Harness::callee(speech_steps(Expectation::Speech { within: secs(5) }));
    h.accept();
    h.answered();
    let cmds = h.commands();
    let watch = watch_id(&cmds);
    assert!(has(&cmds, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchSpeech { .. })
    )));
    h.after(Duration::from_millis(1200));
    h.media(MediaEvent::SpeechHeard {
        watch,
        onset: Duration::from_millis(1100),
    });
    h.jump();
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
    assert_eq!(result.steps[1].elapsed, Duration::from_millis(1200));
}

#[test]
fn no_speech_in_time_fails_as_no_speech_naming_the_line_and_what_was_received() {
    let mut h = Harness::callee(speech_steps(Expectation::Speech { within: secs(5) }));
    h.accept();
    h.answered();
    h.commands();
    h.jump();
    assert_eq!(h.now - h.t0, secs(5));
    let probe = watch_of(&h.commands());
    h.media(MediaEvent::Status {
        watch: probe,
        level_dbfs: None,
        behind: (0, 0),
        dtmf_received: String::new(),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(!result.passed());
    let f = &result.failures[0];
    assert_eq!(
        (f.step, f.line, f.kind.clone()),
        ("expect", 11, FailureKind::NoSpeech)
    );
    assert_eq!(
        f.message,
        "expected speech, none heard within 5.0 s (received no audio)"
    );
}

#[test]
fn a_prompt_passes_once_it_ends_and_only_then() {
    let mut h = Harness::callee(speech_steps(Expectation::PromptEnds { within: secs(10) }));
    h.accept();
    h.answered();
    let cmds = h.commands();
    let watch = watch_id(&cmds);
    h.after(Duration::from_millis(500));
    h.media(MediaEvent::SpeechHeard {
        watch,
        onset: Duration::from_millis(400),
    });
    // Speech heard does not end the step: its end does.
    assert!(h.commands().is_empty());
    h.after(secs(4));
    h.media(MediaEvent::PromptEnded {
        watch,
        lasted: secs(3),
    });
    h.jump();
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!(result.steps[1].elapsed, Duration::from_millis(4500));
}

#[test]
fn a_prompt_that_never_ends_fails_as_such_and_one_never_heard_as_no_speech() {
    for heard in [true, false] {
        let mut h = Harness::callee(speech_steps(Expectation::PromptEnds { within: secs(10) }));
        h.accept();
        h.answered();
        let watch = watch_id(&h.commands());
        if heard {
            h.after(secs(1));
            h.media(MediaEvent::SpeechHeard {
                watch,
                onset: Duration::ZERO,
            });
        }
        h.jump();
        assert_eq!(h.now - h.t0, secs(10));
        let probe = watch_of(&h.commands());
        h.media(MediaEvent::Status {
            watch: probe,
            level_dbfs: Some(-18.04),
            behind: (0, 0),
            dtmf_received: String::new(),
        });
        h.ended(CallEndReason::LocalBye, |_| {});
        let result = h.result();
        let f = &result.failures[0];
        assert_eq!(f.line, 11);
        if heard {
            assert_eq!(f.kind, FailureKind::PromptNeverEnded);
            assert_eq!(
                f.message,
                "the prompt began but did not end within 10.0 s (no pause of 0.6 s) (received level -18.0 dBFS)"
            );
        } else {
            assert_eq!(f.kind, FailureKind::NoSpeech);
        }
    }
}

#[test]
fn an_expected_answer_that_ends_refused_fails_with_the_refusals_kind() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Expect(Expectation::Answered { within: secs(10) })),
    ]);
    h.place();
    h.after(secs(2));
    h.ended(
        CallEndReason::Rejected {
            code: 404,
            reason: "Not Found".into(),
        },
        |r| r.final_code = Some(404),
    );
    let result = h.result();
    assert_eq!(result.failures.len(), 1);
    assert_eq!(result.failures[0].kind, FailureKind::SipCode(404));
    assert!(result.failures[0]
        .message
        .starts_with("expected the call to be answered: rejected: 404"));
}

#[test]
fn a_call_whose_agent_is_gone_before_its_last_step_does_not_pass() {
    // Every step ran (the hang-up was sent), but the call's end never came back.
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hangup { after: secs(1) }),
    ]);
    h.place();
    h.script.events_closed(h.now);
    assert!(h.script.is_done());
    let result = h.result();
    assert!(!result.passed());
    assert_eq!(result.failures[0].kind, FailureKind::Transport);
}

#[test]
fn a_call_whose_agent_is_gone_ends_its_waits_and_never_passes_a_media_step() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, tone_expectation(425.0, secs(5))),
    ]);
    h.place();
    h.script.events_closed(h.now);
    assert!(h.script.is_done(), "no wait outlives the agent");
    let result = h.result();
    assert_eq!(result.failures.len(), 2, "{:?}", result.failures);
    assert_eq!(result.failures[0].kind, FailureKind::Transport);
    assert_eq!(result.failures[1].line, 4);
    assert_eq!(result.failures[1].kind, FailureKind::Signalling);
}

// --- `sipcheck call`'s one call (`CallScript::probe`) --------------------------------------

fn plan() -> ProbeCall {
    ProbeCall {
        expect: ProbeExpect {
            tone: None,
            dtmf: None,
            no_media_ok: false,
            rtp_timeout: secs(3),
            max_gap: Duration::from_millis(100),
        },
        target: "sip:2001@pbx.test".into(),
        answer_timeout: secs(30),
        duration: secs(10),
        cancel_after: None,
        hold: None,
        send_dtmf: None,
        expect_tone: None,
        limit: None,
        signature: false,
        pesq: None,
    }
}

fn tone_query() -> (ToneQuery, String) {
    (ToneQuery::single(425.0).unwrap(), "425 Hz".into())
}

fn describe(reason: &CallEndReason) -> String {
    reason.to_string()
}

impl Harness {
    fn probe(plan: ProbeCall) -> Self {
        let t0 = base();
        let mut script = CallScript::probe(t0, plan);
        script.start(t0);
        Self {
            script,
            t0,
            now: t0,
        }
    }

    fn reinvited(&mut self, direction: Direction, remote_hold: bool) {
        self.event(CallEvent::MediaUpdated {
            call: ID,
            negotiated: Negotiated {
                direction,
                remote_hold,
                ..negotiated()
            },
        });
    }

    fn outcome(self, media: Option<MediaReport>) -> ProbeOutcome {
        assert!(self.script.is_done(), "not done");
        self.script
            .finish_probe(None, media.as_ref(), &describe)
            .expect("a probe")
    }

    /// The call hung up by us at `now`, answered at `answer`, its BYE answered 200.
    fn hung_up(&mut self, answer: Instant) {
        self.ended(CallEndReason::LocalBye, |r| {
            r.final_code = Some(200);
            r.answer = Some(answer);
            r.bye_sent = Some(answer);
            r.bye_code = Some(200);
        });
    }
}

/// The whole call's media report: `packets` received, the expected tone heard or not.
fn media_report(packets: u64, tone: Option<bool>) -> MediaReport {
    let t0 = base();
    let mut session = crate::media::session::MediaSession::new(
        t0,
        MediaConfig::new(Codec::Pcmu),
        crate::media::tone::Playlist::new(Vec::new()),
        &mut crate::ids::IdGen::new(3),
    )
    .unwrap();
    if tone.is_some() {
        session
            .expect_tone(ToneQuery::single(425.0).unwrap())
            .unwrap();
    }
    let mut report = session.report(t0);
    report.receive.received = packets;
    report.since_last_packet = Duration::ZERO;
    report.max_gap = Duration::ZERO;
    if tone == Some(true) {
        report.tones[0].detection = Some(crate::media::tone::Detection {
            onset_sample: 800,
            duration_samples: 1600,
            snr_db: 30.0,
            level_dbfs: -10.0,
            frequency_offset_hz: None,
        });
    }
    report
}

fn heard() -> MediaReport {
    media_report(250, Some(true))
}

#[test]
fn a_probe_sends_dtmf_holds_resumes_and_hangs_up_on_one_timeline_from_the_answer() {
    let mut h = Harness::probe(ProbeCall {
        hold: Some((secs(3), secs(2))),
        send_dtmf: Some("12".into()),
        expect_tone: Some(tone_query()),
        ..plan()
    });
    h.place();
    assert_eq!(h.script.call_id(), "c1");
    h.after(secs(1));
    let answer = h.now;
    h.answered();
    let cmds = h.commands();
    assert!(
        matches!(&cmds[..], [ScriptCommand::Media(MediaIntent::Start(_))]),
        "{cmds:?}"
    );
    h.jump();
    assert_eq!(h.now - answer, DTMF_AFTER_ANSWER);
    let cmds = h.commands();
    assert!(
        matches!(&cmds[..], [ScriptCommand::Media(MediaIntent::SendDtmf { digits, .. })] if digits == "12"),
        "{cmds:?}"
    );
    h.jump();
    assert_eq!(h.now - answer, secs(3));
    let cmds = h.commands();
    assert!(
        matches!(&cmds[..], [ScriptCommand::Reinvite(m)] if m.direction == Direction::SendOnly),
        "{cmds:?}"
    );
    h.script.handle_reinvite_sent(h.now, Ok(()));
    // The far end answers the hold a=recvonly: no RTP is expected from it meanwhile.
    h.after(Duration::from_millis(100));
    h.reinvited(Direction::SendOnly, false);
    h.commands();
    h.jump();
    assert_eq!(
        h.now - answer,
        secs(5),
        "the resume comes --hold-for after the hold"
    );
    let cmds = h.commands();
    assert!(
        matches!(&cmds[..], [ScriptCommand::Reinvite(m)] if m.direction == Direction::SendRecv),
        "{cmds:?}"
    );
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.reinvited(Direction::SendRecv, false);
    let cmds = h.commands();
    let watch = watch_of(&cmds);
    assert!(has(&cmds, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchTone { .. })
    )));
    h.after(secs(1));
    h.media(MediaEvent::ToneHeard {
        watch,
        onset: Duration::from_millis(300),
    });
    h.jump();
    assert_eq!(
        h.now - answer,
        secs(10),
        "the hang-up comes --duration after the answer"
    );
    let cmds = h.commands();
    assert!(matches!(
        &cmds[..],
        [
            ScriptCommand::Media(MediaIntent::SetSending(false)),
            ScriptCommand::Hangup
        ]
    ));
    h.hung_up(answer);
    let outcome = h.outcome(Some(heard()));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        outcome.hold,
        Some(ProbeHold {
            held: true,
            resumed: true,
            tone_after_resume: Some(true)
        })
    );
    assert_eq!(outcome.peer_holds, 0);
}

#[test]
fn a_probes_refused_hold_fails_but_the_call_still_runs_its_duration() {
    let mut h = Harness::probe(ProbeCall {
        hold: Some((secs(2), secs(2))),
        ..plan()
    });
    h.place();
    let answer = h.now;
    h.answered();
    h.commands();
    h.jump();
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reinvite(_)]));
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.event(CallEvent::UpdateFailed {
        call: ID,
        code: 488,
    });
    h.jump();
    assert_eq!(
        h.now - answer,
        secs(4),
        "the resume still comes, and is judged"
    );
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reinvite(_)]));
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.reinvited(Direction::SendRecv, false);
    h.commands();
    h.jump();
    assert_eq!(h.now - answer, secs(10));
    assert!(has(&h.commands(), |c| matches!(c, ScriptCommand::Hangup)));
    h.hung_up(answer);
    let outcome = h.outcome(Some(heard()));
    assert_eq!(
        outcome.failures,
        vec!["the hold re-INVITE was answered 488"]
    );
    assert_eq!(
        outcome.hold,
        Some(ProbeHold {
            held: false,
            resumed: true,
            tone_after_resume: None
        })
    );
}

#[test]
fn a_probe_not_answered_in_time_is_cancelled_and_fails_naming_the_end() {
    let mut h = Harness::probe(ProbeCall {
        answer_timeout: secs(5),
        ..plan()
    });
    h.place();
    h.jump();
    assert_eq!(h.now - h.t0, secs(5));
    assert!(matches!(&h.commands()[..], [ScriptCommand::Cancel]));
    h.ended(CallEndReason::Cancelled, |r| r.final_code = Some(487));
    let outcome = h.outcome(None);
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0].starts_with("not answered: "),
        "{:?}",
        outcome.failures
    );
}

#[test]
fn a_probes_cancel_passes_on_487_only() {
    let cancelled = |edit: fn(&mut CallRecord)| {
        let mut h = Harness::probe(ProbeCall {
            cancel_after: Some(secs(2)),
            ..plan()
        });
        h.place();
        h.jump();
        assert!(matches!(&h.commands()[..], [ScriptCommand::Cancel]));
        h.ended(CallEndReason::Cancelled, edit);
        h.outcome(None).failures
    };
    assert!(cancelled(|r| r.final_code = Some(487)).is_empty());
    assert_eq!(
        cancelled(|r| r.final_code = Some(407)),
        vec!["expected 487 after the CANCEL, but the INVITE got 407"]
    );
    let answered = cancelled(|r| {
        r.final_code = Some(200);
        r.answered_before_cancel = true;
    });
    assert!(
        answered[0].starts_with("expected the call to be cancelled, but it "),
        "{answered:?}"
    );
}

#[test]
fn a_probe_at_its_limit_hangs_up_and_gives_up_on_the_end_two_seconds_later() {
    let t0 = base();
    let mut h = Harness::probe(ProbeCall {
        duration: secs(30),
        limit: Some((t0 + secs(5), "5s".into())),
        ..plan()
    });
    h.place();
    let answer = h.now;
    h.answered();
    h.commands();
    h.jump();
    assert_eq!(h.now - t0, secs(5));
    assert!(has(&h.commands(), |c| matches!(c, ScriptCommand::Hangup)));
    assert!(!h.script.is_done());
    h.jump();
    assert_eq!(h.now - t0, secs(5) + LIMIT_GRACE);
    assert!(h.script.is_done(), "the end is not awaited longer");
    let mut left = record(t0, h.now, CallEndReason::LocalBye);
    left.answer = Some(answer);
    left.end = None;
    let outcome = h
        .script
        .finish_probe(Some(left), Some(&heard()), &describe)
        .unwrap();
    assert_eq!(outcome.failures, vec!["gave up: --timeout 5s reached"]);
}

#[test]
fn a_probe_interrupted_hangs_up_and_never_passes() {
    let mut h = Harness::probe(plan());
    h.place();
    let answer = h.now;
    h.answered();
    h.commands();
    h.script.stop(h.now);
    assert!(matches!(&h.commands()[..], [ScriptCommand::Hangup]));
    assert_eq!(h.script.poll_timeout(), None, "no step runs after Ctrl-C");
    h.hung_up(answer);
    let outcome = h.outcome(Some(heard()));
    assert!(outcome.interrupted);
    assert_eq!(outcome.failures, vec!["interrupted"]);
}

#[test]
fn a_probes_dtmf_without_telephone_event_fails_and_media_fails_only_once_answered() {
    let mut h = Harness::probe(ProbeCall {
        send_dtmf: Some("5".into()),
        ..plan()
    });
    h.place();
    let answer = h.now;
    h.event(CallEvent::Answered {
        call: ID,
        negotiated: Negotiated {
            telephone_event_pt: None,
            ..negotiated()
        },
    });
    h.commands();
    h.jump();
    assert!(
        h.commands().is_empty(),
        "no DTMF is asked of a stream that cannot send it"
    );
    h.jump();
    h.hung_up(answer);
    let outcome = h.outcome(Some(media_report(0, None)));
    assert!(outcome.dtmf_failed);
    assert_eq!(
        outcome.failures,
        vec![
            format!("DTMF not sent: {}", MediaError::NoTelephoneEvent),
            "no RTP received from the far end".to_string()
        ]
    );

    // Refused: the media is not judged.
    let mut h = Harness::probe(plan());
    h.place();
    h.ended(
        CallEndReason::Rejected {
            code: 486,
            reason: "Busy Here".into(),
        },
        |r| r.final_code = Some(486),
    );
    let outcome = h.outcome(Some(media_report(0, None)));
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(outcome.failures[0].starts_with("not answered: "));
}

#[test]
fn a_probes_tone_missing_after_the_resume_fails_and_a_peers_hold_is_counted_not_failed() {
    let mut h = Harness::probe(ProbeCall {
        expect_tone: Some(tone_query()),
        ..plan()
    });
    h.place();
    let answer = h.now;
    h.answered();
    h.commands();
    h.after(secs(2));
    // The far end holds, then resumes: the tone is looked for again.
    h.reinvited(Direction::RecvOnly, true);
    h.after(secs(1));
    h.reinvited(Direction::SendRecv, false);
    assert!(has(&h.commands(), |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchTone { .. })
    )));
    h.jump();
    h.hung_up(answer);
    let outcome = h.outcome(Some(heard()));
    assert_eq!(outcome.peer_holds, 1);
    assert_eq!(
        outcome.failures,
        vec!["expected tone 425 Hz not heard after the resume"]
    );
}

#[test]
fn a_probes_resume_answered_on_hold_claims_nothing_of_the_tone_after_it() {
    let mut h = Harness::probe(ProbeCall {
        hold: Some((secs(2), secs(2))),
        expect_tone: Some(tone_query()),
        ..plan()
    });
    h.place();
    let answer = h.now;
    h.answered();
    h.commands();
    h.jump();
    h.commands();
    h.script.handle_reinvite_sent(h.now, Ok(()));
    h.reinvited(Direction::SendOnly, false);
    h.jump();
    h.commands();
    h.script.handle_reinvite_sent(h.now, Ok(()));
    // The far end answers the resume holding the call itself: no RTP is expected, no tone
    // is looked for, and the tone heard before the hold is not taken for one after it.
    h.reinvited(Direction::SendOnly, true);
    assert!(!has(&h.commands(), |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchTone { .. })
    )));
    h.jump();
    h.hung_up(answer);
    let outcome = h.outcome(Some(heard()));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        outcome.hold,
        Some(ProbeHold {
            held: true,
            resumed: true,
            tone_after_resume: None
        })
    );
}

#[test]
fn a_probes_media_is_judged_over_the_whole_call_by_what_it_expects() {
    let expect = ProbeExpect {
        tone: Some("425 Hz".into()),
        dtmf: Some("12".into()),
        no_media_ok: false,
        rtp_timeout: secs(3),
        max_gap: Duration::from_millis(100),
    };
    let mut report = media_report(250, Some(true));
    report.dtmf_received = "12".into();
    assert!(judge_media(&expect, &negotiated(), &report).is_empty());
    // A dropout of 200 ms in the heard tone fails it; one of 60 ms does not.
    report.audio_gaps = vec![crate::media::tone::Gap {
        start_sample: 8000,
        samples: 480,
    }];
    assert!(judge_media(&expect, &negotiated(), &report).is_empty());
    report.audio_gaps[0].samples = 1600;
    assert_eq!(
        judge_media(&expect, &negotiated(), &report),
        vec!["tone 425 Hz: the expected audio dropped out (200 ms at 1.00 s into the received audio; limit 100 ms)".to_string()]
    );
    report.audio_gaps.clear();

    report.dtmf_received = "1".into();
    report.tones[0].detection = None;
    report.max_gap = secs(4);
    assert_eq!(
        judge_media(&expect, &negotiated(), &report),
        vec![
            "RTP timeout: no media for 4.0 s (limit 3.0 s)".to_string(),
            "expected tone 425 Hz not detected".to_string(),
            "expected DTMF '12', received '1'".to_string(),
        ]
    );

    // A tone expected but never looked for is not heard.
    let report = media_report(250, None);
    assert_eq!(
        judge_media(&expect, &negotiated(), &report)[0],
        "expected tone 425 Hz not detected"
    );

    // A far end that sends nothing by its answer: its silence is no failure, audio expected
    // from it is.
    let inactive = Negotiated {
        direction: Direction::Inactive,
        ..negotiated()
    };
    let silent = media_report(0, Some(false));
    let failures = judge_media(&ProbeExpect::default(), &inactive, &silent);
    assert!(failures.is_empty(), "{failures:?}");
    let failures = judge_media(&expect, &inactive, &silent);
    assert!(failures[0].starts_with("audio expected, but the negotiated direction is inactive"));
    let failures = judge_media(&ProbeExpect::default(), &negotiated(), &silent);
    assert_eq!(failures, vec!["no RTP received from the far end"]);
    let failures = judge_media(
        &ProbeExpect {
            no_media_ok: true,
            ..ProbeExpect::default()
        },
        &negotiated(),
        &silent,
    );
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn srtp_whose_every_packet_failed_authentication_never_passes() {
    use crate::rtp::srtp::SrtpStats;
    let all_failed = SrtpStats {
        protected: 150,
        auth_failures: 149,
        ..SrtpStats::default()
    };
    let mut report = media_report(0, None);
    report.srtp = Some(all_failed);
    let want = vec![
        "no audio: all 149 SRTP packets received failed authentication (the keys do not match)"
            .to_string(),
    ];
    assert_eq!(
        judge_media(&ProbeExpect::default(), &negotiated(), &report),
        want
    );
    // Not even when no media is acceptable: packets came, none was usable.
    let no_media_ok = ProbeExpect {
        no_media_ok: true,
        ..ProbeExpect::default()
    };
    assert_eq!(judge_media(&no_media_ok, &negotiated(), &report), want);
    // Some failures among packets that authenticated: counted, not failed.
    let mut report = media_report(250, None);
    report.srtp = Some(SrtpStats {
        unprotected: 250,
        auth_failures: 3,
        ..all_failed
    });
    assert!(judge_media(&ProbeExpect::default(), &negotiated(), &report).is_empty());
}

#[test]
fn a_scenario_call_whose_srtp_all_failed_authentication_fails_as_srtp_auth_failed() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(6, Step::Hangup { after: secs(2) }),
    ]);
    h.place();
    h.after(Duration::from_millis(300));
    h.answered();
    h.jump();
    h.ended(CallEndReason::LocalBye, |r| {
        r.answer = Some(r.invite + Duration::from_millis(300));
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
    });
    let mut report = media_report(0, None);
    report.srtp = Some(crate::rtp::srtp::SrtpStats {
        protected: 100,
        auth_failures: 99,
        ..Default::default()
    });
    let result = h.script.finish(Some(&report), &RawLadder::default());
    let kinds: Vec<_> = result.failures.iter().map(|f| f.kind.clone()).collect();
    assert_eq!(
        kinds,
        [FailureKind::SrtpAuthFailed],
        "{:?}",
        result.failures
    );
    assert_eq!(FailureKind::SrtpAuthFailed.label(), "srtp_auth_failed");
    assert_eq!(FailureKind::SrtpRefused.label(), "srtp_refused");
}

fn held_steps() -> Vec<Located<Step>> {
    vec![
        at(20, Step::Answer { ring: secs(0) }),
        at(21, Step::Expect(Expectation::Held { within: secs(10) })),
        at(22, Step::Expect(Expectation::Audio { within: secs(5) })),
        at(23, Step::Wait(secs(1))),
    ]
}

fn peer_offers(h: &mut Harness, direction: Direction, remote_hold: bool) {
    h.event(CallEvent::MediaUpdated {
        call: ID,
        negotiated: Negotiated {
            direction,
            remote_hold,
            ..negotiated()
        },
    });
}

#[test]
fn held_passes_once_the_peer_holds_and_audio_on_hold_passes_once_heard() {
    let mut h = Harness::callee(held_steps());
    h.accept();
    h.answered();
    h.commands();
    h.after(secs(2));
    // A re-INVITE that does not hold is not a hold: the step still waits.
    peer_offers(&mut h, Direction::SendRecv, false);
    h.after(secs(1));
    assert!(!has(&h.commands(), |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchAudio { .. })
    )));
    peer_offers(&mut h, Direction::RecvOnly, true);
    let cmds = h.commands();
    assert!(has(&cmds, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchAudio { .. })
    )));
    let watch = watch_id(&cmds);
    h.after(Duration::from_millis(700));
    h.media(MediaEvent::AudioHeard { watch });
    h.jump();
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert_eq!((result.audio_checked, result.audio_verified), (1, 1));
    assert_eq!(result.steps[1].elapsed, secs(3));
}

#[test]
fn not_held_names_what_the_peer_offered_and_no_audio_on_hold_fails_as_no_audio() {
    // The peer re-INVITEs sendrecv only: not held, named.
    let mut h = Harness::callee(held_steps());
    h.accept();
    h.answered();
    h.commands();
    h.after(secs(1));
    peer_offers(&mut h, Direction::SendRecv, false);
    h.jump();
    assert_eq!(h.now - h.t0, secs(10));
    let result_so_far = h.commands();
    assert!(!has(&result_so_far, |c| matches!(
        c,
        ScriptCommand::Media(MediaIntent::WatchAudio { .. })
    )));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    let f = &result.failures[0];
    assert_eq!(
        (f.step, f.line, f.kind.clone()),
        ("expect", 21, FailureKind::NotHeld)
    );
    assert_eq!(
        f.message,
        "expected the peer to put the call on hold: within 10.0 s its last re-INVITE or UPDATE offered sendrecv (not a hold)"
    );

    // No re-INVITE at all: named too.
    let mut h = Harness::callee(held_steps());
    h.accept();
    h.answered();
    h.commands();
    h.jump();
    h.ended(CallEndReason::LocalBye, |_| {});
    let f = &h.result().failures[0];
    assert!(
        f.message.ends_with("it sent no re-INVITE or UPDATE"),
        "{}",
        f.message
    );

    // Held, but nothing audible: no_audio, saying it was on hold.
    let mut h = Harness::callee(held_steps());
    h.accept();
    h.answered();
    h.commands();
    peer_offers(&mut h, Direction::Inactive, true);
    h.commands();
    h.jump();
    let probe = watch_of(&h.commands());
    h.media(MediaEvent::Status {
        watch: probe,
        level_dbfs: Some(-72.0),
        behind: (0, 0),
        dtmf_received: String::new(),
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(!result.passed());
    let f = &result.failures[0];
    assert_eq!(
        (f.step, f.line, f.kind.clone()),
        ("expect", 22, FailureKind::NoAudio)
    );
    assert_eq!(
        f.message,
        "expected audio while on hold, none heard within 5.0 s (no 200 ms of speech, music or tone) (received level -72.0 dBFS)"
    );
}
