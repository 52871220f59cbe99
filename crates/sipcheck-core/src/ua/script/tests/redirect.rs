//! `expect: redirected_to` in virtual time: the target the call was redirected to and
//! answered by, against the one expected.

use super::*;

fn redirected_to(uri: &str) -> Step {
    Step::Expect(Expectation::RedirectedTo {
        target: Template::parse(uri, &[Placeholder::Peer, Placeholder::User]).unwrap(),
        within: secs(32),
    })
}

fn redirect(h: &mut Harness, target: &str) {
    h.event(CallEvent::Redirected {
        call: ID,
        code: 302,
        target: target.into(),
    });
}

/// A caller whose steps are `call` (line 3) and `expect: redirected_to` `uri` (line 4).
fn caller(uri: &str) -> Harness {
    let mut h = Harness::caller(vec![at(3, call_step(secs(32))), at(4, redirected_to(uri))]);
    h.place();
    h
}

fn failure_of(h: Harness) -> (FailureKind, String, u32) {
    let result = h.result();
    assert!(!result.passed());
    let f = &result.failures[0];
    (f.kind.clone(), f.message.clone(), f.line)
}

#[test]
fn a_call_answered_by_the_target_it_was_redirected_to_passes_the_step() {
    let mut h = caller("sip:{peer}@127.0.0.1");
    redirect(&mut h, "sip:2001@127.0.0.1:5070;transport=udp");
    h.after(Duration::from_millis(200));
    h.answered();
    // The step passed: the script goes on to its end (no more steps: it hangs up).
    h.commands();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
        r.redirects = vec!["sip:2001@127.0.0.1:5070;transport=udp".into()];
    });
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
    assert!(result.steps[1].passed);
    assert_eq!(result.redirects, ["sip:2001@127.0.0.1:5070;transport=udp"]);
}

#[test]
fn a_call_answered_without_a_redirection_fails_the_step_as_not_redirected() {
    let mut h = caller("sip:{peer}@127.0.0.1");
    h.answered();
    h.commands();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
    });
    let (kind, message, line) = failure_of(h);
    assert_eq!(kind, FailureKind::Signalling);
    assert_eq!(line, 4);
    assert_eq!(
        message,
        "expected the call redirected to sip:2001@127.0.0.1: not redirected, answered without a redirection"
    );
}

#[test]
fn a_call_redirected_elsewhere_fails_the_step_naming_where_it_went() {
    let mut h = caller("sip:{peer}@127.0.0.1:5070");
    redirect(&mut h, "sip:2001@127.0.0.1:5080");
    h.answered();
    h.commands();
    h.ended(CallEndReason::LocalBye, |r| {
        r.bye_sent = Some(r.invite);
        r.bye_code = Some(200);
    });
    let (_, message, _) = failure_of(h);
    assert_eq!(
        message,
        "expected the call redirected to sip:2001@127.0.0.1:5070: redirected to sip:2001@127.0.0.1:5080"
    );
}

#[test]
fn a_redirected_call_that_is_refused_fails_the_step_naming_the_refusal() {
    let mut h = caller("sip:{peer}@127.0.0.1");
    redirect(&mut h, "sip:2001@127.0.0.1:5070");
    h.ended(
        CallEndReason::Rejected {
            code: 486,
            reason: "Busy Here".into(),
        },
        |r| r.final_code = Some(486),
    );
    let (kind, message, _) = failure_of(h);
    assert_eq!(kind, FailureKind::SipCode(486));
    assert_eq!(
        message,
        "expected the call answered by sip:2001@127.0.0.1 after its redirection: rejected: 486 Busy Here"
    );
}

#[test]
fn a_redirect_loop_ends_the_call_as_redirect_loop() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, Step::Hangup { after: secs(1) }),
    ]);
    h.place();
    let chain = vec!["sip:a@x".to_string(), "sip:b@x".into(), "sip:a@x".into()];
    h.ended(CallEndReason::RedirectLoop { chain }, |r| {
        r.final_code = Some(302)
    });
    let result = h.result();
    assert!(!result.passed());
    let f = &result.failures[0];
    assert_eq!(f.kind.label(), "redirect_loop");
    assert!(
        f.message
            .contains("redirect_loop: sip:a@x -> sip:b@x -> sip:a@x"),
        "{}",
        f.message
    );
}

#[test]
fn targets_match_on_user_host_and_a_written_port() {
    assert!(same_target(
        "sip:bob@Example.test",
        "sip:bob@example.test:5070;transport=udp"
    ));
    assert!(same_target(
        "sip:bob@127.0.0.1:5070",
        "<sip:bob@127.0.0.1:5070>"
    ));
    assert!(!same_target(
        "sip:bob@127.0.0.1:5070",
        "sip:bob@127.0.0.1:5080"
    ));
    assert!(!same_target("sip:bob@127.0.0.1", "sip:carol@127.0.0.1"));
    assert!(!same_target("sip:bob@127.0.0.1", "sip:bob@127.0.0.2"));
}
