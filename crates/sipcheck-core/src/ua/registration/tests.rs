//! The registration life in virtual time: a registrar played by hand, response by response.

use super::*;
use crate::sip::auth::Credentials;
use crate::sip::build::write_response;
use crate::sip::msg::Name;
use crate::sip::transport::Transport;
use bytes::Bytes;

const CHALLENGE: &str = r#"Digest realm="example.test", nonce="abc", qop="auth", algorithm=MD5"#;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// The virtual clock's origin (any instant: only differences matter).
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn lifecycle(refresh: bool, transport: Transport) -> Lifecycle {
    Lifecycle::new(
        Config {
            params: RegisterParams {
                user: "1001".into(),
                domain: "example.test".into(),
                credentials: Credentials::new("1001", "pw1001"),
                expires: 300,
                sips: false,
            },
            local: LocalEnd {
                transport,
                addr: "127.0.0.1:40000".parse().unwrap(),
                routes: vec![],
            },
            refresh,
            registrar: "127.0.0.1:5060".into(),
        },
        IdGen::new(7),
    )
}

/// The REGISTER the machine wants sent now, parsed.
fn sent(lc: &mut Lifecycle) -> (Message, Purpose) {
    let request = lc.poll_request().expect("a REGISTER to send");
    let message = Message::parse_datagram(Bytes::from(request.bytes)).unwrap();
    (message, request.purpose)
}

fn answer(req: &Message, code: u16, extra: &[(&str, &str)]) -> Response {
    let mut out = Vec::new();
    write_response(req, code, "X", Some("srv"), extra, None, &mut out);
    Response::Final(Box::new(Message::parse_datagram(Bytes::from(out)).unwrap()))
}

fn events(lc: &mut Lifecycle) -> Vec<RegistrationEvent> {
    std::iter::from_fn(|| lc.poll_event()).collect()
}

/// Register at `t0`, answered 200 at once.
fn registered(refresh: bool, transport: Transport, t0: Instant) -> Lifecycle {
    let mut lc = lifecycle(refresh, transport);
    lc.register(t0);
    let (req, _) = sent(&mut lc);
    lc.handle_response(t0, answer(&req, 200, &[]));
    assert!(matches!(
        events(&mut lc)[..],
        [RegistrationEvent::Registered { expires: 300, .. }]
    ));
    lc
}

#[test]
fn the_challenge_round_is_answered_and_the_rtt_covers_both_registers() {
    let t0 = origin();
    let mut lc = lifecycle(true, Transport::Udp);
    lc.register(t0);
    let (first, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Register);
    assert_eq!(first.header(&Name::EXPIRES), Some("300"));
    assert!(lc.poll_request().is_none(), "one REGISTER at a time");
    lc.handle_response(
        t0 + Duration::from_millis(5),
        answer(&first, 401, &[("WWW-Authenticate", CHALLENGE)]),
    );
    assert!(events(&mut lc).is_empty());
    let (second, _) = sent(&mut lc);
    assert!(second.header(&Name::AUTHORIZATION).is_some());
    assert_eq!(second.call_id(), first.call_id());
    lc.handle_response(
        t0 + Duration::from_millis(12),
        answer(
            &second,
            200,
            &[("Contact", "<sip:1001@127.0.0.1:40000>;expires=120")],
        ),
    );
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Registered {
            rtt: Duration::from_millis(12),
            expires: 120,
            bindings: vec!["sip:1001@127.0.0.1:40000".into()],
        }]
    );
    assert!(lc.is_bound());
    assert_eq!(lc.last_status(), Some((200, "X")));
    // The refresh follows the lifetime granted (120 s), not the one asked (300 s).
    assert_eq!(
        lc.poll_timeout(),
        Some(t0 + Duration::from_millis(12) + s(96))
    );
}

#[test]
fn a_403_fails_the_registration_and_nothing_follows() {
    let t0 = origin();
    let mut lc = lifecycle(true, Transport::Udp);
    lc.register(t0);
    let (req, _) = sent(&mut lc);
    lc.handle_response(t0, answer(&req, 403, &[]));
    let evs = events(&mut lc);
    assert_eq!(
        evs,
        [RegistrationEvent::Failed {
            error: RegisterError::Refused(RegisterFailure::WrongCredentials {
                code: 403,
                reason: "X".into()
            })
        }]
    );
    assert_eq!(
        evs[0].error_message().as_deref(),
        Some("credentials rejected: 403 X")
    );
    assert!(lc.is_closed());
    assert_eq!(lc.poll_timeout(), None);
    lc.flow_lost(t0 + s(1));
    lc.stop(t0 + s(2));
    assert!(lc.poll_request().is_none(), "no renewal, no un-REGISTER");
}

#[test]
fn challenges_without_end_stop_after_the_bounded_rounds() {
    let t0 = origin();
    let mut lc = lifecycle(true, Transport::Udp);
    lc.register(t0);
    // A new realm each time: the digest client answers each, the bound stops the loop.
    for realm in ["a", "b", "c", "d"] {
        let (req, _) = sent(&mut lc);
        let challenge = format!(r#"Digest realm="{realm}", nonce="n{realm}", algorithm=MD5"#);
        lc.handle_response(t0, answer(&req, 401, &[("WWW-Authenticate", &challenge)]));
    }
    assert!(
        lc.poll_request().is_none(),
        "{MAX_ROUNDS} REGISTERs at most"
    );
    let evs = events(&mut lc);
    assert_eq!(
        evs,
        [RegistrationEvent::Failed {
            error: RegisterError::TooManyChallenges
        }]
    );
    assert_eq!(
        evs[0].error_message().as_deref(),
        Some("too many authentication challenges")
    );
    assert!(lc.is_closed());
}

#[test]
fn refreshed_at_80_percent_of_the_lifetime_silently_with_the_same_call_id() {
    let t0 = origin();
    let mut lc = registered(true, Transport::Udp, t0);
    assert_eq!(lc.poll_timeout(), Some(t0 + s(240)));
    lc.handle_timeout(t0 + s(239));
    assert!(lc.poll_request().is_none());
    lc.handle_timeout(t0 + s(240));
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Renew(Why::Refresh));
    assert_eq!(req.call_id(), lc.call_id());
    assert_eq!(req.header(&Name::EXPIRES), Some("300"));
    assert_eq!(
        lc.poll_timeout(),
        None,
        "nothing else while a REGISTER is under way"
    );
    lc.handle_response(t0 + s(240), answer(&req, 200, &[]));
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Renewed {
            why: Why::Refresh,
            rtt: Duration::ZERO,
            expires: 300
        }]
    );
    assert_eq!(lc.poll_timeout(), Some(t0 + s(480)));
}

#[test]
fn a_failed_refresh_backs_off_then_recovers_and_is_reported_as_made_anew() {
    let t0 = origin();
    let mut lc = registered(true, Transport::Udp, t0);
    lc.handle_timeout(t0 + s(240));
    let (req, _) = sent(&mut lc);
    lc.handle_response(t0 + s(240), answer(&req, 503, &[]));
    let evs = events(&mut lc);
    assert_eq!(
        evs[0].error_message().as_deref(),
        Some("refresh failed: rejected with 503 X (tried again in 1 s)")
    );
    assert_eq!(lc.poll_timeout(), Some(t0 + s(241)));
    // The registrar does not answer the retry: twice the wait.
    lc.handle_timeout(t0 + s(241));
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Renew(Why::Retry));
    lc.handle_response(
        t0 + s(273),
        Response::NoResponse("no final response: Timer F expired after 32.0 s".into()),
    );
    let evs = events(&mut lc);
    assert_eq!(
        evs[0].error_message().as_deref(),
        Some(
            "refresh failed: no final response: Timer F expired after 32.0 s (tried again in 2 s)"
        )
    );
    assert_eq!(lc.poll_timeout(), Some(t0 + s(275)));
    lc.handle_timeout(t0 + s(275));
    let (again, _) = sent(&mut lc);
    assert_eq!(again.cseq(), req.cseq() + 1);
    lc.handle_response(t0 + s(275), answer(&again, 200, &[]));
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Renewed {
            why: Why::Retry,
            rtt: Duration::ZERO,
            expires: 300
        }]
    );
    // Back on the periodic schedule; the back-off starts over.
    assert_eq!(lc.poll_timeout(), Some(t0 + s(515)));
}

#[test]
fn a_lost_flow_registers_anew_at_once_and_its_failure_names_the_registrar() {
    let t0 = origin();
    let mut lc = registered(false, Transport::Tcp, t0);
    assert_eq!(lc.poll_timeout(), None, "not refreshed: only a drop renews");
    lc.flow_lost(t0 + s(30));
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Renew(Why::FlowLost));
    assert_eq!(
        req.contact_uris(),
        vec!["sip:1001@127.0.0.1:40000;transport=tcp"]
    );
    lc.handle_response(
        t0 + s(30),
        Response::NoResponse("connection refused".into()),
    );
    assert_eq!(
        events(&mut lc)[0].error_message().as_deref(),
        Some(
            "re-registration after the connection to 127.0.0.1:5060 was lost failed: \
             connection refused (tried again in 1 s)"
        )
    );
    // Another drop meanwhile does not hurry the retry.
    lc.flow_lost(t0 + s(30));
    assert!(lc.poll_request().is_none());
    lc.handle_timeout(t0 + s(31));
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Renew(Why::FlowLost));
    lc.handle_response(t0 + s(31), answer(&req, 200, &[]));
    assert!(matches!(
        events(&mut lc)[..],
        [RegistrationEvent::Renewed {
            why: Why::FlowLost,
            ..
        }]
    ));
    assert_eq!(lc.poll_timeout(), None);
}

#[test]
fn stop_unregisters_with_its_own_challenge_round() {
    let t0 = origin();
    let mut lc = registered(true, Transport::Udp, t0);
    lc.stop(t0 + s(10));
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Unregister);
    assert_eq!(req.header(&Name::EXPIRES), Some("0"));
    assert_eq!(lc.poll_timeout(), None, "no refresh once stopping");
    lc.handle_response(
        t0 + s(10),
        answer(&req, 407, &[("Proxy-Authenticate", CHALLENGE)]),
    );
    let (again, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Unregister);
    assert_eq!(again.header(&Name::EXPIRES), Some("0"));
    assert!(again.header(&Name::PROXY_AUTHORIZATION).is_some());
    lc.handle_response(
        t0 + s(10) + Duration::from_millis(3),
        answer(
            &again,
            200,
            &[("Contact", "<sip:1001@10.0.0.9>;expires=50")],
        ),
    );
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Unregistered {
            rtt: Duration::from_millis(3),
            remaining: vec!["sip:1001@10.0.0.9".into()]
        }]
    );
    assert!(lc.is_closed());
    assert!(!lc.is_bound());
}

#[test]
fn stop_during_a_refresh_unregisters_once_the_refresh_is_done() {
    let t0 = origin();
    let mut lc = registered(true, Transport::Udp, t0);
    lc.handle_timeout(t0 + s(240));
    let (refresh, _) = sent(&mut lc);
    lc.stop(t0 + s(241));
    assert!(lc.poll_request().is_none(), "one REGISTER at a time");
    lc.handle_response(t0 + s(242), answer(&refresh, 500, &[]));
    let (un, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::Unregister);
    lc.handle_response(t0 + s(242), answer(&un, 200, &[]));
    let evs = events(&mut lc);
    assert!(matches!(evs[0], RegistrationEvent::RenewalFailed { .. }));
    assert!(matches!(evs[1], RegistrationEvent::Unregistered { .. }));
    assert!(lc.is_closed());
}

#[test]
fn a_registrar_that_never_answers_fails_the_registration_with_the_timer() {
    let t0 = origin();
    let mut lc = lifecycle(true, Transport::Udp);
    lc.register(t0);
    let _ = sent(&mut lc);
    // The transaction layer gives up (Timer F, 64·T1) and the driver says so.
    lc.handle_response(
        t0 + s(32),
        Response::NoResponse("no final response: Timer F expired after 32.0 s".into()),
    );
    let evs = events(&mut lc);
    assert_eq!(
        evs[0].error_message().as_deref(),
        Some("no final response: Timer F expired after 32.0 s")
    );
    assert_eq!(lc.last_status(), None);
    assert!(lc.is_closed());
    lc.stop(t0 + s(33));
    assert!(lc.poll_request().is_none());
}

#[test]
fn a_failed_unregistration_is_reported_and_ends_the_life() {
    let t0 = origin();
    let mut lc = registered(false, Transport::Udp, t0);
    lc.stop(t0 + s(1));
    let _ = sent(&mut lc);
    lc.handle_response(t0 + s(33), Response::NoResponse("gone".into()));
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::UnregisterFailed {
            error: RegisterError::NoResponse("gone".into())
        }]
    );
    assert!(lc.is_closed());
}

#[test]
fn remove_all_sends_a_wildcard_and_ends_with_what_is_left() {
    let t0 = origin();
    let mut lc = lifecycle(false, Transport::Udp);
    lc.remove_all(t0);
    let (req, purpose) = sent(&mut lc);
    assert_eq!(purpose, Purpose::RemoveAll);
    assert_eq!(req.header(&Name::CONTACT), Some("*"));
    lc.handle_response(t0, answer(&req, 200, &[]));
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Unregistered {
            rtt: Duration::ZERO,
            remaining: vec![]
        }]
    );
    assert!(lc.is_closed());
}

#[test]
fn a_2xx_that_keeps_no_binding_is_not_a_registration() {
    let t0 = origin();
    let mut lc = Lifecycle::new(
        Config {
            params: RegisterParams {
                user: "1001".into(),
                domain: "example.test".into(),
                credentials: Credentials::new("1001", "pw"),
                expires: 0,
                sips: false,
            },
            local: LocalEnd {
                transport: Transport::Udp,
                addr: "127.0.0.1:40000".parse().unwrap(),
                routes: vec![],
            },
            refresh: false,
            registrar: "r".into(),
        },
        IdGen::new(1),
    );
    lc.register(t0);
    let (req, _) = sent(&mut lc);
    lc.handle_response(t0, answer(&req, 200, &[]));
    assert_eq!(
        events(&mut lc),
        [RegistrationEvent::Failed {
            error: RegisterError::NotBound { code: 200 }
        }]
    );
}
