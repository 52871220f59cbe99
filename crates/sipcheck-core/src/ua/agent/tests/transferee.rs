//! Blind transfer with three roles in virtual time: the transferor calls the transferee and
//! REFERs it to the target; the transferee (`expect: transferred`) calls the target, notifies
//! the transferor, and its following steps run on the new call. Audio signatures check
//! that the transferee's stream was moved to the target's.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

/// The transferor (2002) calls the transferee (2000) and transfers it to the target (2001).
const TRANSFER: &str = r#"
name: agent-transfer
target:
  direct: true
  domain: 127.0.0.1
accounts:
  range: { from: 2000, count: 3 }
  password: "pw{user}"
media:
  codecs: [PCMU]
roles:
  transferee:
    accounts: "2000"
    listen: 127.0.0.1:5070
    steps:
      - answer
      - expect: { transferred: true, within: 5s }
      - play: { signature: true }
      - expect: { signature: peer, within: 2s }
      - hangup: { after: 1s }
  target:
    accounts: "2001"
    listen: 127.0.0.1:5071
    steps:
      - answer
      - play: { signature: true }
      - expect: { signature: peer, within: 2s }
      - wait_for: bye
  transferor:
    accounts: "2002"
    listen: 127.0.0.1:5080
    steps:
      - call: { to: "sip:{peer}@127.0.0.1:5070", peer: transferee, timeout: 5s }
      - play: { signature: true }
      - wait: 1s
      - transfer: "sip:2001@127.0.0.1:5071"
"#;

/// Every datagram's first line and its Call-ID, in order, as the network carried them.
type Seen = Rc<RefCell<Vec<(SocketAddr, String, String)>>>;

fn run_with(text: &str, edit: impl Fn(&str) -> Option<String> + 'static) -> (Run, Seen) {
    let mut run = Run::new(text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    let seen: Seen = Rc::default();
    let kept = seen.clone();
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes).into_owned();
        let first = text.lines().next().unwrap_or_default().to_owned();
        let call_id = header_value(&text, "Call-ID").to_owned();
        kept.borrow_mut().push((d.from, first, call_id));
        match edit(&text) {
            // An empty edit drops the datagram.
            Some(edited) if edited.is_empty() => Intercept::Drop,
            Some(edited) => Intercept::Replace(Bytes::from(edited)),
            None => Intercept::Pass,
        }
    });
    run.run(secs(200));
    (run, seen)
}

fn sipfrags(text: &str) -> Option<String> {
    text.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().expect("literal"), port)
}

/// [`run_with`], keeping the bodies of the transferee's NOTIFYs.
fn run_keeping_notifies(
    text: &str,
    edit: impl Fn(&str) -> Option<String> + 'static,
) -> (Run, Seen, Rc<RefCell<Vec<String>>>) {
    let bodies: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept = bodies.clone();
    let (run, seen) = run_with(text, move |text| {
        if text.starts_with("NOTIFY ") {
            if let Some(body) = sipfrags(text) {
                kept.borrow_mut().push(body);
            }
        }
        edit(text)
    });
    (run, seen, bodies)
}

#[test]
fn the_transferee_calls_the_target_notifies_100_then_200_and_its_steps_go_on_there() {
    let (run, seen, bodies) = run_keeping_notifies(TRANSFER, |_| None);
    for role in ["transferor", "transferee", "target"] {
        let r = only(run.results(role));
        assert!(r.passed(), "{role}: {}", messages(r));
    }
    // The transferee heard the target's signature on the new call (its stream followed it).
    let transferee = only(run.results("transferee"));
    assert_eq!(
        (transferee.audio_checked, transferee.audio_verified),
        (1, 1)
    );
    let target = only(run.results("target"));
    assert_eq!((target.audio_checked, target.audio_verified), (1, 1));
    // The transferee's record: the original call's Call-ID and set-up, talk time from its
    // answer to the new call's end (which the transferee's hangup ended).
    let transferor = only(run.results("transferor"));
    assert_eq!(transferee.call_id, transferor.call_id);
    assert_eq!(transferee.final_code, Some(200));
    let talk = transferee.duration.expect("answered");
    let new_call = target.duration.expect("answered");
    assert!(talk > new_call + secs(1), "{talk:?} vs {new_call:?}");
    assert!(
        transferee.end_reason.contains("BYE sent") || transferee.end_reason.contains("hung up"),
        "{}",
        transferee.end_reason
    );
    assert_eq!(
        *bodies.borrow(),
        vec!["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    );
    let seen = seen.borrow();
    // The new INVITE went from the transferee to the target with Referred-By, after the
    // REFER; the transferor ended the original call with BYE once notified.
    let refer = seen
        .iter()
        .position(|(_, l, _)| l.starts_with("REFER "))
        .expect("a REFER");
    let invite = seen
        .iter()
        .position(|(from, l, _)| *from == addr(5070) && l.starts_with("INVITE sip:2001@"))
        .expect("the transferee's INVITE to the target");
    assert!(refer < invite);
    let original = &seen[refer].2;
    assert_ne!(&seen[invite].2, original, "a new call");
    let bye = seen
        .iter()
        .position(|(from, l, id)| *from == addr(5080) && l.starts_with("BYE ") && id == original)
        .expect("the transferor's BYE");
    assert!(bye > invite);
    // The transferee never sent BYE on the original call: the transferor did.
    assert!(!seen
        .iter()
        .any(|(from, l, id)| *from == addr(5070) && l.starts_with("BYE ") && id == original));
}

#[test]
fn the_new_invite_copies_the_refer_tos_replaces_and_a_target_without_that_dialog_answers_481() {
    let invites: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept = invites.clone();
    let (run, seen) = run_with(TRANSFER, move |text| {
        if text.starts_with("REFER ") {
            // A Refer-To with a Replaces header (RFC 3891 §6 escaping) naming no dialog of
            // the target's.
            return Some(text.replacen(
                "Refer-To: <sip:2001@127.0.0.1:5071>",
                "Refer-To: <sip:2001@127.0.0.1:5071?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>",
                1,
            ));
        }
        if text.starts_with("INVITE sip:2001@") {
            kept.borrow_mut().push(text.to_owned());
        }
        None
    });
    let invites = invites.borrow();
    let invite = invites.first().expect("the INVITE to the target");
    assert!(
        invite.starts_with("INVITE sip:2001@127.0.0.1:5071 SIP/2.0"),
        "{invite}"
    );
    assert_eq!(header_value(invite, "Referred-By"), "<sip:2002@127.0.0.1>");
    assert_eq!(
        header_value(invite, "Replaces"),
        "abc@h;to-tag=1;from-tag=2"
    );
    // RFC 3891 §3: no such dialog at the target, 481; notified to the transferor.
    assert!(seen
        .borrow()
        .iter()
        .any(|(from, l, _)| *from == addr(5071) && l.starts_with("SIP/2.0 481")));
    let transferee = only(run.results("transferee"));
    assert_eq!(
        transferee.failures[0].kind,
        FailureKind::TransferTargetFailed(481),
        "{}",
        messages(transferee)
    );
    let transferor = only(run.results("transferor"));
    assert_eq!(
        transferor.failures[0].kind,
        FailureKind::TransferFailed(481)
    );
    assert!(run.results("target").is_empty());
}

#[test]
fn a_busy_target_is_notified_486_and_fails_the_step_naming_it() {
    let text = TRANSFER.replace(
        "      - answer\n      - play: { signature: true }\n      - expect: { signature: peer, within: 2s }\n      - wait_for: bye\n",
        "      - reject: { code: 486 }\n",
    );
    let (run, _, bodies) = run_keeping_notifies(&text, |_| None);
    assert_eq!(
        *bodies.borrow(),
        vec!["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]
    );
    let transferee = only(run.results("transferee"));
    assert!(!transferee.passed());
    let f = &transferee.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::TransferTargetFailed(486),
        "{}",
        f.message
    );
    assert_eq!(f.kind.label(), "transfer_target_failed_486");
    assert_eq!((f.step, f.line), ("expect", 17));
    assert!(
        f.message.contains("sip:2001@127.0.0.1:5071") && f.message.contains("486"),
        "{}",
        f.message
    );
    // The transferor learnt it from the NOTIFY.
    let transferor = only(run.results("transferor"));
    assert_eq!(
        transferor.failures[0].kind,
        FailureKind::TransferFailed(486),
        "{}",
        messages(transferor)
    );
    assert!(only(run.results("target")).passed());
}

#[test]
fn no_refer_within_the_step_fails_as_not_transferred() {
    let text = TRANSFER
        .replace(
            "      - transfer: \"sip:2001@127.0.0.1:5071\"\n",
            "      - hangup: { after: 5s }\n",
        )
        .replace(
            "transferred: true, within: 5s",
            "transferred: true, within: 2s",
        );
    let (run, seen) = run_with(&text, |_| None);
    let transferee = only(run.results("transferee"));
    let f = &transferee.failures[0];
    assert_eq!(f.kind, FailureKind::NotTransferred, "{}", f.message);
    assert_eq!(f.kind.label(), "not_transferred");
    assert_eq!((f.step, f.line), ("expect", 17));
    assert!(f.message.contains("no REFER within 2 s"), "{}", f.message);
    // It hung up at once: no call to the target.
    assert!(!seen
        .borrow()
        .iter()
        .any(|(_, l, _)| l.starts_with("INVITE sip:2001@")));
    assert!(run.results("target").is_empty());
}

#[test]
fn a_refer_to_that_is_not_sip_is_refused_416_and_nothing_is_called() {
    let (run, seen) = run_with(TRANSFER, |text| {
        text.starts_with("REFER ").then(|| {
            text.replacen(
                "Refer-To: <sip:2001@127.0.0.1:5071>",
                "Refer-To: <tel:+15551234567>",
                1,
            )
        })
    });
    let seen = seen.borrow();
    assert!(seen.iter().any(|(_, l, _)| l.starts_with("SIP/2.0 416")));
    assert!(!seen.iter().any(|(_, l, _)| l.starts_with("NOTIFY ")));
    let transferor = only(run.results("transferor"));
    assert_eq!(transferor.failures[0].kind, FailureKind::SipCode(416));
    // The transferor hung up on the refusal: the transferee's wait for a REFER it could
    // follow ends with the call, failed at its step.
    let transferee = only(run.results("transferee"));
    assert!(!transferee.passed());
    let f = &transferee.failures[0];
    assert_eq!((f.step, f.line), ("expect", 17));
    assert!(
        f.message.contains("hung up by the far end"),
        "{}",
        f.message
    );
    assert!(run.results("target").is_empty());
}

#[test]
fn a_transferor_that_does_not_hang_up_gets_our_bye_on_the_original_call() {
    // The transferor's BYE is lost every time: the transferee ends the original call.
    let (run, seen) = run_with(TRANSFER, |text| {
        (text.starts_with("BYE ") && text.contains("From: <sip:2002@")).then(String::new)
    });
    let seen = seen.borrow();
    let refer = seen
        .iter()
        .find(|(_, l, _)| l.starts_with("REFER "))
        .expect("a REFER");
    let original = &refer.2;
    assert!(
        seen.iter()
            .any(|(from, l, id)| *from == addr(5070) && l.starts_with("BYE ") && id == original),
        "the transferee's BYE on the original call"
    );
    let transferee = only(run.results("transferee"));
    assert!(transferee.passed(), "{}", messages(transferee));
    assert!(only(run.results("target")).passed());
}

#[test]
fn a_role_without_the_step_refuses_the_refer_405() {
    let text = TRANSFER.replace(
        "      - expect: { transferred: true, within: 5s }\n      - play: { signature: true }\n      - expect: { signature: peer, within: 2s }\n      - hangup: { after: 1s }\n",
        "      - wait_for: bye\n",
    );
    let (run, seen) = run_with(&text, |_| None);
    assert!(seen
        .borrow()
        .iter()
        .any(|(from, l, _)| *from == addr(5070) && l.starts_with("SIP/2.0 405")));
    let transferor = only(run.results("transferor"));
    assert_eq!(transferor.failures[0].kind, FailureKind::SipCode(405));
    assert!(run.results("target").is_empty());
}

#[test]
fn a_second_refer_while_the_first_is_followed_is_notified_603() {
    let bodies: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept = bodies.clone();
    let mut run = Run::new(TRANSFER, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes).into_owned();
        if text.starts_with("NOTIFY ") {
            kept.borrow_mut().push(sipfrags(&text).unwrap_or_default());
        }
        if !text.starts_with("REFER ") {
            return Intercept::Pass;
        }
        // The same REFER again, as a new transaction 5 ms later.
        let cseq = header_value(&text, "CSeq");
        let n: u32 = cseq.split(' ').next().unwrap().parse().unwrap();
        let again = text
            .replacen("branch=z9hG4bK", "branch=z9hG4bKagain", 1)
            .replacen(
                &format!("CSeq: {cseq}"),
                &format!("CSeq: {} REFER", n + 1),
                1,
            );
        Intercept::PassAnd(Bytes::from(again), ms(5))
    });
    run.run(secs(200));
    let bodies = bodies.borrow();
    assert_eq!(bodies[..2], ["SIP/2.0 100 Trying", "SIP/2.0 100 Trying"]);
    assert!(
        bodies.contains(&"SIP/2.0 603 Declined".to_owned()),
        "{bodies:?}"
    );
    assert!(bodies.contains(&"SIP/2.0 200 OK".to_owned()), "{bodies:?}");
    // The first REFER was followed: the transferee is on the target's call.
    let transferee = only(run.results("transferee"));
    assert!(transferee.passed(), "{}", messages(transferee));
    assert!(only(run.results("target")).passed());
}

#[test]
fn a_target_answering_another_codec_fails_the_step_as_codec_refused() {
    let text = TRANSFER.replace("codecs: [PCMU]", "codecs: [PCMU, PCMA]");
    let (run, _) = run_with(&text, |text| {
        // The target's answer: PCMA instead of the call's PCMU (same length).
        (text.starts_with("SIP/2.0 200")
            && text.contains("CSeq: 1 INVITE")
            && text.contains("From: <sip:2000@"))
        .then(|| {
            text.replacen(" RTP/AVP 0", " RTP/AVP 8", 1).replacen(
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:8 PCMA/8000",
                1,
            )
        })
    });
    let transferee = only(run.results("transferee"));
    let f = &transferee.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::CodecRefused,
        "{}",
        messages(transferee)
    );
    assert_eq!((f.step, f.line), ("expect", 17));
    assert!(
        f.message.contains("answered with PCMA") && f.message.contains("media is PCMU"),
        "{}",
        f.message
    );
}

#[test]
fn ctrl_c_while_the_target_rings_cancels_it_notifies_487_and_ends_both_calls() {
    let text = TRANSFER.replacen(
        "      - answer\n      - play: { signature: true }",
        "      - answer: { ring: 10s }\n      - play: { signature: true }",
        1,
    );
    let bodies: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept = bodies.clone();
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes).into_owned();
        if text.starts_with("NOTIFY ") {
            kept.borrow_mut().push(sipfrags(&text).unwrap_or_default());
        }
        Intercept::Pass
    });
    // The REFER comes at about 1 s; the target rings from then on.
    let i = run.index("transferee");
    run.sim.nodes[i].stop_at = Some(run.t0 + secs(3));
    run.run(secs(200));
    assert_eq!(
        *bodies.borrow(),
        ["SIP/2.0 100 Trying", "SIP/2.0 487 Request Terminated"]
    );
    let transferee = only(run.results("transferee"));
    assert!(!transferee.passed());
    assert!(
        transferee
            .failures
            .iter()
            .all(|f| f.kind == FailureKind::Interrupted),
        "{}",
        messages(transferee)
    );
    // The target's INVITE was cancelled; the transferor learnt the transfer failed.
    let target = only(run.results("target"));
    assert!(
        target.end_reason.contains("cancel"),
        "{}",
        target.end_reason
    );
    let transferor = only(run.results("transferor"));
    assert_eq!(
        transferor.failures[0].kind,
        FailureKind::TransferFailed(487),
        "{}",
        messages(transferor)
    );
}

#[test]
fn a_target_that_never_answers_is_cancelled_after_32_s_and_notified_408() {
    let text = TRANSFER
        .replace(
            "      - answer\n      - play: { signature: true }\n      - expect: { signature: peer, within: 2s }\n      - wait_for: bye\n",
            "      - ring: forever\n      - wait_for: cancel\n",
        )
        .replace(
            "transfer: \"sip:2001@127.0.0.1:5071\"",
            "transfer: { to: \"sip:2001@127.0.0.1:5071\", within: 60s }",
        );
    let (run, _, bodies) = run_keeping_notifies(&text, |_| None);
    assert_eq!(
        *bodies.borrow(),
        ["SIP/2.0 100 Trying", "SIP/2.0 408 Request Timeout"]
    );
    let transferee = only(run.results("transferee"));
    let f = &transferee.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::TransferTargetFailed(408),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("did not answer within 32 s"),
        "{}",
        f.message
    );
    assert_eq!((f.step, f.line), ("expect", 17));
    // The target's `wait_for: cancel` saw the CANCEL.
    let target = only(run.results("target"));
    assert!(
        target.end_reason.contains("cancel"),
        "{}",
        target.end_reason
    );
    let transferor = only(run.results("transferor"));
    assert_eq!(
        transferor.failures[0].kind,
        FailureKind::TransferFailed(408)
    );
}
