//! The responder's calls (`sipcheck answer`) as call scripts, in virtual time.

use super::*;
use crate::scenario::model::SignatureFrom;
use crate::ua::script::responder::{
    Refused, Responder, ResponderOutcome, DTMF_AFTER, SIGNATURE_WITHIN,
};

fn responder(r: &Responder) -> Harness {
    let t0 = base();
    let mut script =
        CallScript::responder(t0, config(Side::Callee), Arc::new(r.steps()), "c1".into());
    script.start(t0);
    Harness {
        script,
        t0,
        now: t0,
    }
}

fn outcome(h: Harness, refused: Option<Refused>, media: Vec<String>) -> ResponderOutcome {
    assert!(h.script.is_done(), "not done");
    h.script.finish_responder(refused, None, media)
}

#[test]
fn the_responder_s_flags_are_the_steps_they_mean() {
    let answer = Responder {
        ring: secs(1),
        send_dtmf: Some(digits("12")),
        hangup_after: Some(secs(3)),
        ..Responder::default()
    };
    let steps: Vec<Step> = answer.steps().into_iter().map(|s| s.value).collect();
    assert_eq!(
        steps,
        vec![
            Step::Answer { ring: secs(1) },
            Step::Wait(DTMF_AFTER),
            Step::Dtmf {
                digits: digits("12"),
                duration: Duration::from_millis(100),
                gap: Duration::from_millis(100),
            },
            Step::Hangup {
                after: Duration::from_millis(2500)
            },
        ]
    );
    let waits: Vec<Step> = Responder::default()
        .steps()
        .into_iter()
        .map(|s| s.value)
        .collect();
    assert_eq!(
        waits,
        vec![
            Step::Answer {
                ring: Duration::ZERO
            },
            Step::WaitFor(WaitEvent::Bye)
        ]
    );
    // Hung up before the DTMF would be sent: none is.
    let short = Responder {
        send_dtmf: Some(digits("1")),
        hangup_after: Some(Duration::from_millis(200)),
        ..Responder::default()
    };
    assert_eq!(short.steps().len(), 2);
    let reject = Responder {
        ring: secs(2),
        reject: Some(603),
        ..Responder::default()
    };
    assert_eq!(
        reject.steps()[0].value,
        Step::Reject {
            code: 603,
            ring: secs(2)
        }
    );
    assert_eq!(reject.steps().len(), 1);
    // `--signature`: play this call's code, expect the caller's, then the end as asked.
    let signed = Responder {
        signature: true,
        ..Responder::default()
    };
    let steps: Vec<Step> = signed.steps().into_iter().map(|s| s.value).collect();
    assert_eq!(
        steps,
        vec![
            Step::Answer {
                ring: Duration::ZERO
            },
            Step::Play(vec![PlayItem::Signature]),
            Step::Expect(Expectation::Signature {
                from: SignatureFrom::Peer,
                within: SIGNATURE_WITHIN,
            }),
            Step::WaitFor(WaitEvent::Bye)
        ]
    );
}

#[test]
fn a_responder_rings_answers_sends_dtmf_after_half_a_second_hangs_up_and_passes() {
    let mut h = responder(&Responder {
        ring: secs(1),
        send_dtmf: Some(digits("5")),
        hangup_after: Some(secs(3)),
        ..Responder::default()
    });
    assert!(matches!(&h.commands()[..], [ScriptCommand::Ring]));
    h.jump();
    assert_eq!(h.now, h.t0 + secs(1));
    h.accept();
    assert!(matches!(
        &h.commands()[..],
        [ScriptCommand::Media(MediaIntent::Start(_))]
    ));
    h.after(Duration::from_millis(50));
    h.answered();
    let acked = h.now;
    h.commands();
    h.jump();
    assert_eq!(h.now, acked + DTMF_AFTER);
    let cmds = h.commands();
    assert!(
        has(&cmds, |c| matches!(
            c,
            ScriptCommand::Media(MediaIntent::SendDtmf { digits, .. }) if digits == "5"
        )),
        "{cmds:?}"
    );
    h.jump();
    assert_eq!(h.now, acked + secs(3));
    let cmds = h.commands();
    assert!(
        has(&cmds, |c| matches!(c, ScriptCommand::Hangup)),
        "{cmds:?}"
    );
    h.after(Duration::from_millis(10));
    h.ended(CallEndReason::LocalBye, |r| {
        r.final_code = Some(200);
        r.bye_code = Some(200);
    });
    let o = outcome(h, None, Vec::new());
    assert_eq!(o.failures, Vec::<String>::new());
    assert_eq!(o.call_id, "c1");
    assert_eq!(o.final_code, Some(200));
    assert_eq!(o.bye_code, Some(200));
    assert_eq!(o.end_reason, "hung up locally (BYE sent)");
}

#[test]
fn a_responder_waiting_for_the_bye_passes_when_it_comes() {
    let mut h = responder(&Responder::default());
    h.accept();
    h.answered();
    h.commands();
    h.after(secs(600));
    assert!(h.commands().is_empty(), "no hang-up while waiting for BYE");
    h.ended(CallEndReason::RemoteBye, |r| r.final_code = Some(200));
    let o = outcome(h, None, Vec::new());
    assert!(o.failures.is_empty(), "{:?}", o.failures);
}

#[test]
fn a_caller_s_cancel_during_the_ring_fails_in_the_responder_s_words() {
    let mut h = responder(&Responder {
        ring: secs(5),
        ..Responder::default()
    });
    h.commands();
    h.after(secs(1));
    h.ended(CallEndReason::CancelledByRemote, |r| {
        r.final_code = Some(487)
    });
    let o = outcome(h, None, vec!["a media failure".into()]);
    assert_eq!(
        o.failures,
        vec![
            "cancelled by the caller".to_string(),
            "a media failure".to_string()
        ]
    );
}

#[test]
fn an_asked_rejection_passes_and_an_admission_refusal_fails_naming_why() {
    let mut h = responder(&Responder {
        reject: Some(603),
        ..Responder::default()
    });
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reject(603)]));
    h.ended(CallEndReason::Declined { code: 603 }, |r| {
        r.final_code = Some(603);
    });
    let o = outcome(h, None, Vec::new());
    assert!(o.failures.is_empty(), "{:?}", o.failures);

    let busy = Refused::Busy { max_calls: 2 };
    let mut h = Harness::callee(busy.steps());
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reject(486)]));
    h.ended(CallEndReason::Declined { code: 486 }, |_| {});
    let o = outcome(h, Some(busy), Vec::new());
    assert_eq!(o.failures, vec!["busy: 2 calls already active".to_string()]);

    let limited = Refused::SourceLimited {
        source: IpAddr::V4(Ipv4Addr::LOCALHOST),
        per_source: 3,
    };
    let mut h = Harness::callee(limited.steps());
    h.ended(CallEndReason::Declined { code: 486 }, |_| {});
    let o = outcome(h, Some(limited), Vec::new());
    assert_eq!(
        o.failures,
        vec!["refused with 486: 127.0.0.1 already held 3 unconfirmed call(s) (no ACK yet)"]
    );

    let mut h = Harness::callee(Refused::ShuttingDown.steps());
    assert!(matches!(&h.commands()[..], [ScriptCommand::Reject(480)]));
    h.ended(CallEndReason::Declined { code: 480 }, |_| {});
    let o = outcome(h, Some(Refused::ShuttingDown), Vec::new());
    assert_eq!(
        o.failures,
        vec!["refused with 480: sipcheck answer was shutting down"]
    );
}

#[test]
fn a_responder_s_dtmf_without_telephone_event_fails_and_a_failed_bye_is_named() {
    let mut h = responder(&Responder {
        send_dtmf: Some(digits("1")),
        hangup_after: Some(secs(2)),
        ..Responder::default()
    });
    h.commands();
    let mut plain = negotiated();
    plain.telephone_event_pt = None;
    h.script.handle_accepted(h.now, Ok((local(), Some(plain))));
    h.answered();
    h.commands();
    h.jump();
    // The DTMF step failed: the call is hung up at once.
    let cmds = h.commands();
    assert!(
        has(&cmds, |c| matches!(c, ScriptCommand::Hangup)),
        "{cmds:?}"
    );
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(481);
    });
    let o = outcome(h, None, Vec::new());
    assert_eq!(o.failures.len(), 2, "{:?}", o.failures);
    assert!(
        o.failures[0].starts_with("DTMF not sent: "),
        "{:?}",
        o.failures
    );
    assert!(o.failures[1].contains("481"), "{:?}", o.failures);
}

#[test]
fn a_refused_offer_fails_naming_what_was_offered() {
    let mut h = responder(&Responder::default());
    assert!(matches!(&h.commands()[..], [ScriptCommand::Accept]));
    h.script.handle_accepted(
        h.now,
        Err(CommandError::Refused("no codec in common".into())),
    );
    h.ended(CallEndReason::CodecRefused, |r| r.final_code = Some(488));
    assert!(h.script.is_done());
    let o = h
        .script
        .finish_responder(None, Some("offered G729"), Vec::new());
    assert!(o.codec_refused);
    assert_eq!(o.failures.len(), 1, "{:?}", o.failures);
    assert!(
        o.failures[0].ends_with(": offered G729"),
        "{:?}",
        o.failures
    );
}

#[test]
fn a_responder_ringing_longer_than_the_answer_wait_still_answers() {
    let mut h = responder(&Responder {
        ring: secs(40),
        hangup_after: Some(secs(1)),
        ..Responder::default()
    });
    assert!(matches!(&h.commands()[..], [ScriptCommand::Ring]));
    h.jump();
    assert_eq!(h.now, h.t0 + secs(40));
    h.accept();
    h.commands();
    h.after(secs(1));
    h.answered();
    h.commands();
    h.jump();
    let cmds = h.commands();
    assert!(
        has(&cmds, |c| matches!(c, ScriptCommand::Hangup)),
        "{cmds:?}"
    );
    h.ended(CallEndReason::LocalBye, |_| {});
    assert!(h.script.failures().is_empty(), "{:?}", h.script.failures());
    let o = outcome(h, None, Vec::new());
    assert!(o.failures.is_empty(), "{:?}", o.failures);
}

#[test]
fn a_responder_whose_caller_never_hangs_up_hangs_up_after_an_hour_and_fails() {
    let mut h = responder(&Responder::default());
    h.accept();
    h.answered();
    h.commands();
    h.jump();
    assert_eq!(h.now, h.t0 + secs(3600));
    let cmds = h.commands();
    assert!(
        has(&cmds, |c| matches!(c, ScriptCommand::Hangup)),
        "{cmds:?}"
    );
    h.after(Duration::from_millis(10));
    h.ended(CallEndReason::LocalBye, |_| {});
    let o = outcome(h, None, Vec::new());
    assert_eq!(o.failures, vec!["Bye did not come".to_string()]);
}

#[test]
fn a_responder_call_hung_up_locally_while_waiting_for_the_bye_is_no_step_failure() {
    // Ctrl-C: the responder hangs up its calls itself; a clean end, as before.
    let mut h = responder(&Responder::default());
    h.accept();
    h.answered();
    h.commands();
    h.after(secs(2));
    h.ended(CallEndReason::LocalBye, |_| {});
    let o = outcome(h, None, Vec::new());
    assert!(o.failures.is_empty(), "{:?}", o.failures);
}
