//! Attended transfer with three roles in virtual time (RFC 5589 §7, RFC 3891): the
//! transferor calls the transferee, holds it, consults the target, and REFERs the
//! transferee with a Replaces naming the consultation; the transferee's INVITE with Replaces
//! takes over the target's call, and the target hears the transferee's audio signature.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

/// The transferor (2002) calls the transferee (2000), holds it, consults the target (2001)
/// and transfers the transferee to it.
const ATTENDED: &str = r#"
name: agent-attended-transfer
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
      - expect: { replaced: true, within: 5s }
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
      - hold
      - transfer: { to: "sip:2001@127.0.0.1:5071", attended: true, consult: target }
"#;

/// One datagram: who sent it, its first line, its Call-ID, and its text.
type Sent = (SocketAddr, String, String, String);

/// Every datagram, in order.
type Seen = Rc<RefCell<Vec<Sent>>>;

fn run_with(text: &str, edit: impl Fn(&str) -> Option<String> + 'static) -> (Run, Seen) {
    let mut run = Run::new(text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    let seen: Seen = Rc::default();
    let kept = seen.clone();
    run.sim.net.set_interceptor(move |d| {
        let text = String::from_utf8_lossy(&d.bytes).into_owned();
        let first = text.lines().next().unwrap_or_default().to_owned();
        let call_id = header_value(&text, "Call-ID").to_owned();
        kept.borrow_mut()
            .push((d.from, first, call_id, text.clone()));
        match edit(&text) {
            Some(edited) if edited.is_empty() => Intercept::Drop,
            Some(edited) => Intercept::Replace(Bytes::from(edited)),
            None => Intercept::Pass,
        }
    });
    run.run(secs(200));
    (run, seen)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().expect("literal"), port)
}

fn find<'a>(seen: &'a [Sent], from: u16, starts: &str) -> Option<(usize, &'a Sent)> {
    seen.iter()
        .enumerate()
        .find(|(_, (f, l, _, _))| *f == addr(from) && l.starts_with(starts))
}

#[test]
fn the_target_answers_the_invite_with_replaces_ends_the_consultation_and_hears_the_transferee() {
    let (run, seen) = run_with(ATTENDED, |_| None);
    for role in ["transferor", "transferee", "target"] {
        let r = only(run.results(role));
        assert!(r.passed(), "{role}: {}", messages(r));
    }
    // Both ends of the new call heard each other's signature.
    let target = only(run.results("target"));
    assert_eq!((target.audio_checked, target.audio_verified), (1, 1));
    let transferee = only(run.results("transferee"));
    assert_eq!(
        (transferee.audio_checked, transferee.audio_verified),
        (1, 1)
    );
    let seen = seen.borrow();
    // The consultation: an INVITE from the transferor to the target, answered.
    let (consult_at, consult) = find(&seen, 5080, "INVITE sip:2001@").expect("consultation");
    let consult_id = consult.2.clone();
    let (_, answer) = seen
        .iter()
        .enumerate()
        .find(|(_, (f, l, id, _))| {
            *f == addr(5071) && l.starts_with("SIP/2.0 200") && *id == consult_id
        })
        .expect("the target's answer");
    let target_tag = tag(header_value(&answer.3, "To"));
    let transferor_tag = tag(header_value(&consult.3, "From"));
    // The REFER, after the consultation, names it in an escaped Replaces (RFC 3891 §6).
    let (refer_at, refer) = find(&seen, 5080, "REFER ").expect("a REFER");
    assert!(refer_at > consult_at);
    let escaped = consult_id.replace('@', "%40");
    assert_eq!(
        header_value(&refer.3, "Refer-To"),
        format!(
            "<sip:2001@127.0.0.1:5071?Replaces={escaped}%3Bto-tag%3D{target_tag}%3Bfrom-tag%3D{transferor_tag}>"
        )
    );
    // The transferee's INVITE carries it unescaped, and is answered.
    let (invite_at, invite) = find(&seen, 5070, "INVITE sip:2001@").expect("the new INVITE");
    assert!(invite_at > refer_at);
    assert_eq!(
        header_value(&invite.3, "Replaces"),
        format!("{consult_id};to-tag={target_tag};from-tag={transferor_tag}")
    );
    // The target ended the consultation (BYE to the transferor) right after answering.
    let (bye_at, _) = seen
        .iter()
        .enumerate()
        .find(|(_, (f, l, id, _))| *f == addr(5071) && l.starts_with("BYE ") && *id == consult_id)
        .expect("the target's BYE of the replaced call");
    assert!(bye_at > invite_at);
    // The transferor ended the original call once notified 200.
    let original = refer.2.clone();
    let notify_200 = seen
        .iter()
        .position(|(f, l, id, t)| {
            *f == addr(5070)
                && l.starts_with("NOTIFY ")
                && *id == original
                && t.contains("SIP/2.0 200")
        })
        .expect("NOTIFY 200");
    let bye = seen
        .iter()
        .position(|(f, l, id, _)| *f == addr(5080) && l.starts_with("BYE ") && *id == original)
        .expect("the transferor's BYE of the original call");
    assert!(bye > notify_200);
    // The target's record keeps the consultation's Call-ID and set-up.
    assert_eq!(target.call_id, consult_id);
    assert_eq!(target.final_code, Some(200));
}

fn tag(header: &str) -> String {
    header
        .split(";tag=")
        .nth(1)
        .map(|t| t.split(';').next().unwrap_or(t).to_owned())
        .expect("a tag")
}

#[test]
fn a_consultation_call_refused_fails_the_step_naming_its_status() {
    let text = ATTENDED.replace(
        "      - answer\n      - play: { signature: true }\n      - expect: { replaced: true, within: 5s }\n      - play: { signature: true }\n      - expect: { signature: peer, within: 2s }\n      - wait_for: bye\n",
        "      - reject: { code: 486 }\n",
    );
    let (run, seen) = run_with(&text, |_| None);
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::ConsultFailed(486),
        "{}",
        messages(transferor)
    );
    assert_eq!(f.kind.label(), "consult_failed_486");
    assert_eq!((f.step, f.line), ("transfer", 34));
    assert!(
        f.message
            .contains("the consultation call to sip:2001@127.0.0.1:5071 failed")
            && f.message.contains("486"),
        "{}",
        f.message
    );
    // No REFER was sent.
    assert!(find(&seen.borrow(), 5080, "REFER ").is_none());
}

#[test]
fn a_consultation_call_never_answered_is_cancelled_after_32_s_as_consult_failed_408() {
    let text = ATTENDED.replace(
        "      - answer\n      - play: { signature: true }\n      - expect: { replaced: true, within: 5s }\n      - play: { signature: true }\n      - expect: { signature: peer, within: 2s }\n      - wait_for: bye\n",
        "      - ring: forever\n      - wait_for: cancel\n",
    ).replace("within: 5s }\n      - play", "within: 60s }\n      - play");
    let (run, seen) = run_with(&text, |_| None);
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::ConsultFailed(408),
        "{}",
        messages(transferor)
    );
    assert!(
        f.message.contains("not answered within 32 s"),
        "{}",
        f.message
    );
    assert!(find(&seen.borrow(), 5080, "CANCEL ").is_some());
    assert!(find(&seen.borrow(), 5080, "REFER ").is_none());
}

#[test]
fn a_refer_rejected_603_fails_as_sip_603() {
    let (run, _) = run_with(ATTENDED, |text| {
        // The transferee's 202 to the REFER becomes 603 Declined.
        (text.starts_with("SIP/2.0 202") && text.contains(" REFER\r\n"))
            .then(|| text.replacen("SIP/2.0 202 Accepted", "SIP/2.0 603 Declined", 1))
    });
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::SipCode(603),
        "{}",
        messages(transferor)
    );
    assert!(
        f.message.contains("the REFER was answered 603"),
        "{}",
        f.message
    );
}

#[test]
fn a_final_notify_of_503_fails_as_transfer_failed_503() {
    let (run, _) = run_with(ATTENDED, |text| {
        (text.starts_with("NOTIFY ") && text.contains("SIP/2.0 200 OK\r\n")).then(|| {
            text.replacen("SIP/2.0 200 OK\r\n", "SIP/2.0 503 Unavailable\r\n", 1)
                .replacen("Content-Length: 18", "Content-Length: 27", 1)
        })
    });
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::TransferFailed(503),
        "{}",
        messages(transferor)
    );
}

#[test]
fn no_final_notify_fails_as_transfer_timeout() {
    // Within 1 s: before the transferee ends the original call itself, 2 s after its
    // final NOTIFY.
    let text = ATTENDED.replace("consult: target }", "consult: target, within: 1s }");
    let (run, _) = run_with(&text, |text| {
        // Every final NOTIFY is lost.
        (text.starts_with("NOTIFY ") && text.contains("terminated")).then(String::new)
    });
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::TransferTimeout,
        "{}",
        messages(transferor)
    );
    assert!(
        f.message.contains("the REFER was answered 202") && f.message.contains("within 1 s"),
        "{}",
        f.message
    );
}

#[test]
fn a_replaces_the_target_does_not_hold_is_refused_481_and_the_target_is_not_replaced() {
    let (run, seen) = run_with(ATTENDED, |text| {
        // The transferee's INVITE names another Call-ID in its Replaces.
        (text.starts_with("INVITE sip:2001@") && text.contains("Replaces: "))
            .then(|| text.replacen("Replaces: ", "Replaces: x", 1))
    });
    assert!(find(&seen.borrow(), 5071, "SIP/2.0 481").is_some());
    let transferor = only(run.results("transferor"));
    assert_eq!(
        transferor.failures[0].kind,
        FailureKind::TransferFailed(481),
        "{}",
        messages(transferor)
    );
    let transferee = only(run.results("transferee"));
    assert_eq!(
        transferee.failures[0].kind,
        FailureKind::TransferTargetFailed(481)
    );
    // The target's consultation call was not taken over: its step names it.
    let target = only(run.results("target"));
    let f = &target.failures[0];
    assert!(
        f.kind == FailureKind::NotReplaced || f.message.contains("hung up by the far end"),
        "{}",
        messages(target)
    );
    assert_eq!((f.step, f.line), ("expect", 27));
}

#[test]
fn a_target_that_never_hears_the_transferee_fails_its_signature_step() {
    let mut run = Run::new(ATTENDED, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    // The transferee's RTP (its role's first stream: the first role's ports start at
    // 40,002) never arrives.
    let b = run.sim.nodes[0].audio.clone();
    b.drop_audio_of(SocketAddr::new("127.0.0.1".parse().unwrap(), 40_002));
    run.run(secs(200));
    let target = only(run.results("target"));
    assert!(!target.passed());
    let f = &target.failures[0];
    assert_eq!((f.step, f.line), ("expect", 29), "{}", messages(target));
    assert_eq!(f.kind, FailureKind::NoAudio, "{}", messages(target));
    // The transfer itself succeeded.
    assert!(only(run.results("transferor")).passed());
}

#[test]
fn without_replaces_the_consultation_is_not_taken_over_and_the_target_fails_its_step() {
    // The transferee drops the Replaces: its INVITE is a new call to the target's role,
    // and the consultation ends without being replaced (the transferor hangs it up once
    // notified).
    let (run, seen) = run_with(ATTENDED, |text| {
        (text.starts_with("INVITE sip:2001@") && text.contains("Replaces: "))
            .then(|| text.replacen("Replaces: ", "X-Replaced: ", 1))
    });
    let seen = seen.borrow();
    let (_, consult) = find(&seen, 5080, "INVITE sip:2001@").expect("consultation");
    let consult_id = consult.2.clone();
    // The transferor, not the target, ended the consultation.
    assert!(seen
        .iter()
        .any(|(f, l, id, _)| *f == addr(5080) && l.starts_with("BYE ") && *id == consult_id));
    assert!(!seen
        .iter()
        .any(|(f, l, id, _)| *f == addr(5071) && l.starts_with("BYE ") && *id == consult_id));
    let target = run.results("target");
    let r = target
        .iter()
        .find(|r| r.call_id == consult_id)
        .expect("the consultation's result");
    let f = &r.failures[0];
    assert_eq!((f.step, f.line), ("expect", 27), "{}", messages(r));
}

#[test]
fn a_consultation_never_replaced_fails_as_not_replaced() {
    // The transferor consults, but its REFER is lost every time: no INVITE with Replaces
    // ever comes.
    let text = ATTENDED.replace(
        "      - transfer: { to: \"sip:2001@127.0.0.1:5071\", attended: true, consult: target }\n",
        "      - transfer: { to: \"sip:2001@127.0.0.1:5071\", attended: true, consult: target, within: 10s }\n",
    )
    // The transferee waits longer for the REFER than the target for its replacement.
    .replace("transferred: true, within: 5s", "transferred: true, within: 20s");
    let (run, _) = run_with(&text, |text| {
        // The REFER never reaches the transferee.
        text.starts_with("REFER ").then(String::new)
    });
    let target = only(run.results("target"));
    let f = &target.failures[0];
    assert_eq!(
        f.kind,
        FailureKind::NotReplaced,
        "{} / {}",
        messages(target),
        messages(only(run.results("transferor")))
    );
    assert_eq!(f.kind.label(), "not_replaced");
    assert_eq!((f.step, f.line), ("expect", 27));
    assert!(
        f.message
            .contains("no INVITE with Replaces took over the call within 5 s"),
        "{}",
        f.message
    );
    let transferor = only(run.results("transferor"));
    assert_eq!(transferor.failures[0].kind, FailureKind::TransferTimeout);
}

#[test]
fn a_consultation_tone_heard_comes_before_the_refer() {
    let text = ATTENDED.replace("consult: target }", "consult: target, hear: 1kHz }");
    let (run, seen) = run_with(&text, |_| None);
    let transferor = only(run.results("transferor"));
    assert!(transferor.passed(), "{}", messages(transferor));
    assert_eq!(
        (transferor.audio_checked, transferor.audio_verified),
        (1, 1)
    );
    assert!(find(&seen.borrow(), 5080, "REFER ").is_some());
}

#[test]
fn a_consultation_tone_not_heard_fails_the_step_and_sends_no_refer() {
    // Within 2 s: before the transferee gives up waiting for a REFER.
    let text = ATTENDED.replace(
        "consult: target }",
        "consult: target, hear: 1kHz, within: 2s }",
    );
    let mut run = Run::new(&text, LinkConfig::new(ms(10)));
    run.plan(1, ms(0));
    let i = run.index("transferor");
    run.sim.nodes[i].hears = false;
    let refers = Rc::new(RefCell::new(0));
    let kept = refers.clone();
    run.sim.net.set_interceptor(move |d| {
        if d.bytes.starts_with(b"REFER ") {
            *kept.borrow_mut() += 1;
        }
        Intercept::Pass
    });
    run.run(secs(200));
    let transferor = only(run.results("transferor"));
    let f = &transferor.failures[0];
    assert_eq!(f.kind, FailureKind::ToneMissing, "{}", messages(transferor));
    assert_eq!((f.step, f.line), ("transfer", 39));
    assert!(
        f.message
            .contains("the consultation call to sip:2001@127.0.0.1:5071")
            && f.message
                .contains("1000 Hz not heard within 2.0 s (no REFER sent)"),
        "{}",
        f.message
    );
    assert_eq!(*refers.borrow(), 0);
}
