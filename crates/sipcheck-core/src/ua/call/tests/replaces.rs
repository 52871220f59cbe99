//! An INVITE with Replaces (RFC 3891 §3): matched against B's dialogs, reported with the
//! call it replaces, or refused 481 / 486 / 603 / 400.

use super::*;

/// The Replaces naming B's only call so far, from B's side (its tag as `to-tag`).
fn replaces_at_b(net: &mut Net, early_only: bool) -> Replaces {
    let b_call = net.incoming()[0];
    let seen_by_a = net.ep(B).replaces_for(b_call).expect("B knows both tags");
    Replaces {
        call_id: seen_by_a.call_id,
        // `replaces_for` names the dialog as the far end (A) would: swap the tags.
        to_tag: seen_by_a.from_tag,
        from_tag: seen_by_a.to_tag,
        early_only,
    }
}

fn second_call(replaces: &str) -> OutgoingCall<SocketAddr> {
    let mut call = call_to_b();
    call.extra_headers = vec![
        ("Replaces".into(), replaces.into()),
        ("Require".into(), "replaces".into()),
    ];
    call
}

/// The `replaces` of B's Incoming events, in order.
fn incoming_replaces(net: &Net) -> Vec<Option<CallId>> {
    net.events(B)
        .filter_map(|(_, e)| match e {
            CallEvent::Incoming { replaces, .. } => Some(*replaces),
            _ => None,
        })
        .collect()
}

#[test]
fn an_invite_replacing_a_confirmed_dialog_is_reported_with_the_call_it_replaces() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let replaces = replaces_at_b(&mut net, false);
    let first = net.incoming()[0];
    // `Require: replaces` is supported (no 420).
    net.invite(second_call(&replaces.value()));
    net.run_for(secs(1));
    assert_eq!(incoming_replaces(&net), [None, Some(first)]);
    assert_eq!(net.sent(B, "420/INVITE").len(), 0);
    assert_eq!(net.answered(B).len(), 2);
}

#[test]
fn a_replaces_naming_no_dialog_is_refused_481() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let mut replaces = replaces_at_b(&mut net, false);
    replaces.call_id = "nobody@nowhere".into();
    net.invite(second_call(&replaces.value()));
    net.run_for(secs(1));
    assert_eq!(net.sent(B, "481/INVITE").len(), 1);
    assert_eq!(incoming_replaces(&net), [None]);
    // The wrong tag is no match either.
    let mut replaces = replaces_at_b(&mut net, false);
    replaces.to_tag.push('x');
    net.invite(second_call(&replaces.value()));
    net.run_for(secs(1));
    assert_eq!(net.sent(B, "481/INVITE").len(), 2);
    assert_eq!(
        net.reasons(A)[..2],
        [
            CallEndReason::Rejected {
                code: 481,
                reason: "Call/Transaction Does Not Exist".into()
            },
            CallEndReason::Rejected {
                code: 481,
                reason: "Call/Transaction Does Not Exist".into()
            },
        ]
    );
}

#[test]
fn a_replaces_naming_an_early_dialog_we_did_not_originate_is_refused_481() {
    // B rings and answers only after 10 s: its dialog with A is early, and B's is incoming.
    let mut net = Net::with_callee(secs(10));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let replaces = replaces_at_b(&mut net, false);
    net.invite(second_call(&replaces.value()));
    net.run_for(secs(1));
    assert_eq!(net.sent(B, "481/INVITE").len(), 1);
    assert_eq!(incoming_replaces(&net), [None]);
}

#[test]
fn early_only_on_a_confirmed_dialog_is_refused_486() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let replaces = replaces_at_b(&mut net, true);
    assert!(replaces.value().ends_with(";early-only"));
    net.invite(second_call(&replaces.value()));
    net.run_for(secs(1));
    assert_eq!(net.sent(B, "486/INVITE").len(), 1);
    assert_eq!(incoming_replaces(&net), [None]);
}

#[test]
fn a_replaces_that_does_not_parse_is_refused_400() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    net.invite(second_call("abc;to-tag=1"));
    net.run_for(secs(1));
    assert_eq!(net.sent(B, "400/INVITE").len(), 1);
}
