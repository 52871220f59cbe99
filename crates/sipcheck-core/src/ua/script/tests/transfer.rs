//! `transfer` steps (blind transfer, RFC 5589): the transferor's side.

use super::*;

fn transfer_step(within: Duration) -> Step {
    Step::Transfer {
        to: Template::parse(
            "sip:3001@{domain}",
            &[Placeholder::User, Placeholder::Domain],
        )
        .unwrap(),
        within,
        consult: None,
        hear: None,
    }
}

/// A caller that calls, is answered, and transfers the call: up to the REFER sent.
fn transferring(within: Duration) -> Harness {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, transfer_step(within)),
    ]);
    h.place();
    h.answered();
    let cmds = h.commands();
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            ScriptCommand::Transfer { target, referred_by }
                if target == "sip:3001@pbx.test" && referred_by == "sip:1001@pbx.test"
        )),
        "{cmds:?}"
    );
    h.script.handle_transfer_sent(h.now, Ok(()));
    h
}

fn notified(h: &mut Harness, code: u16, reason: &str, terminated: bool) {
    h.event(CallEvent::TransferNotified {
        call: ID,
        code,
        reason: reason.into(),
        terminated,
    });
}

#[test]
fn a_transfer_notified_200_passes_then_hangs_up() {
    let mut h = transferring(secs(10));
    h.event(CallEvent::ReferAnswered {
        call: ID,
        code: 202,
    });
    notified(&mut h, 100, "Trying", false);
    assert!(
        !h.commands()
            .iter()
            .any(|c| matches!(c, ScriptCommand::Hangup)),
        "no BYE before the transfer's outcome"
    );
    notified(&mut h, 200, "OK", true);
    let cmds = h.commands();
    assert!(
        cmds.iter().any(|c| matches!(c, ScriptCommand::Hangup)),
        "the transferor sends BYE once the transfer succeeded: {cmds:?}"
    );
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(result.passed(), "{:?}", result.failures);
}

#[test]
fn a_refer_refused_603_fails_naming_the_status() {
    let mut h = transferring(secs(10));
    h.event(CallEvent::ReferAnswered {
        call: ID,
        code: 603,
    });
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert!(!result.passed());
    assert_eq!(result.failures[0].kind, FailureKind::SipCode(603));
    assert_eq!(
        result.failures[0].message,
        "the REFER was answered 603: the transfer was refused"
    );
    assert_eq!(result.failures[0].step, "transfer");
    assert_eq!(result.failures[0].line, 4);
}

#[test]
fn a_transfer_notified_486_fails_as_transfer_failed() {
    let mut h = transferring(secs(10));
    h.event(CallEvent::ReferAnswered {
        call: ID,
        code: 202,
    });
    notified(&mut h, 100, "Trying", false);
    notified(&mut h, 486, "Busy Here", true);
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::TransferFailed(486));
    assert!(
        result.failures[0].message.starts_with("486 Busy Here: "),
        "{}",
        result.failures[0].message
    );
}

#[test]
fn no_final_notify_within_the_step_fails_as_transfer_timeout() {
    let mut h = transferring(secs(5));
    h.event(CallEvent::ReferAnswered {
        call: ID,
        code: 202,
    });
    notified(&mut h, 100, "Trying", false);
    h.jump();
    assert_eq!(h.now - h.t0, secs(5));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].kind, FailureKind::TransferTimeout);
    assert_eq!(
        result.failures[0].message,
        "the REFER was answered 202, and no NOTIFY of the transfer's outcome within 5 s"
    );
}

#[test]
fn a_refer_that_cannot_be_sent_fails() {
    let mut h = Harness::caller(vec![
        at(3, call_step(secs(32))),
        at(4, transfer_step(secs(5))),
    ]);
    h.place();
    h.answered();
    h.commands();
    h.script
        .handle_transfer_sent(h.now, Err(CommandError::Refused("no".into())));
    h.ended(CallEndReason::LocalBye, |_| {});
    let result = h.result();
    assert_eq!(result.failures[0].message, "cannot send the REFER: no");
}
