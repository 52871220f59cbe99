//! The probe agent in virtual time, calling a responder agent (and registering with a
//! registrar written out by hand), every datagram delivered at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::g711::Codec;
use crate::sdp::LocalMedia;
use crate::sip::auth::Password;
use crate::sip::transport::Transport;
use crate::ua::agent::responder::ResponderConfig;
use crate::ua::agent::{AgentConfig, MediaCommand};
use crate::ua::call::{CallEndReason, Endpoint, EndpointConfig, OfferPlacement};
use crate::ua::register::LocalEnd;
use crate::ua::script::responder::Responder;
use crate::ua::script::ProbeExpect;
use crate::ua::script::ProbeOutcome;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The one clock read of these tests; everything after it is virtual.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

const US: &str = "127.0.0.1:5070";
const PEER: &str = "127.0.0.2:5080";
const REGISTRAR: &str = "127.0.0.3:5060";

fn local(at: &str) -> LocalEnd {
    LocalEnd {
        transport: Transport::Udp,
        addr: addr(at),
        routes: Vec::new(),
    }
}

fn agent_config(at: &str, next_hop: Option<SocketAddr>) -> AgentConfig<SocketAddr> {
    AgentConfig {
        role: String::new(),
        local: local(at),
        next_hop,
        domain: String::new(),
        codecs: vec![Codec::Pcmu],
        ptime_ms: 20,
        rtp: true,
        wavs: Arc::new(HashMap::new()),
        accounts: Vec::new(),
        steps: Arc::new(Vec::new()),
        srtp: None,
        sips: false,
        signature_parties: Vec::new().into(),
    }
}

/// What the probe's call is asked, from `now`, with the overall `limit`.
fn plan(now: Instant, limit: Option<Duration>) -> ProbeCall {
    ProbeCall {
        target: format!("sip:bob@{PEER}"),
        answer_timeout: secs(60),
        duration: secs(2),
        cancel_after: None,
        hold: None,
        send_dtmf: None,
        expect_tone: None,
        expect: ProbeExpect {
            tone: None,
            dtmf: None,
            // No media engine here: the signaling is what is judged.
            no_media_ok: true,
            rtp_timeout: secs(5),
            max_gap: Duration::from_millis(100),
        },
        limit: limit.map(|l| (now + l, format!("{}s", l.as_secs()))),
        signature: false,
        pesq: None,
    }
}

fn account() -> Account {
    Account {
        user: "alice".into(),
        password: Password::from("secret".to_string()),
        domain: "example.com".into(),
    }
}

/// A registrar's answer to `register`: 401 with a challenge when it carries no credentials,
/// else 200 with its Contact bound for the Expires asked (none when 0).
fn registrar_answer(register: &str, refuses: bool) -> Bytes {
    let header = |name: &str| {
        register
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
            .unwrap_or_default()
            .to_string()
    };
    let mut head = format!(
        "Via: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq"),
    );
    let status = if refuses {
        "403 Forbidden"
    } else if header("Authorization").is_empty() {
        head.push_str("WWW-Authenticate: Digest realm=\"test\", nonce=\"n1\", algorithm=MD5\r\n");
        "401 Unauthorized"
    } else {
        let expires = header("Expires");
        if expires != "0" {
            head.push_str(&format!(
                "Contact: {};expires={expires}\r\n",
                header("Contact")
            ));
        }
        "200 OK"
    };
    Bytes::from(format!(
        "SIP/2.0 {status}\r\n{head}Content-Length: 0\r\n\r\n"
    ))
}

/// The probe agent, its peer (a responder agent, or nobody) and a registrar.
struct Pair {
    now: Instant,
    us: Agent<SocketAddr>,
    peer: Option<Agent<SocketAddr>>,
    /// The registrar answers (else its REGISTERs are lost).
    registrar: bool,
    /// The registrar refuses every REGISTER (403).
    refuses: bool,
    /// Every datagram sent: from, to, first line.
    log: Vec<(SocketAddr, SocketAddr, String)>,
    result: Option<ProbeResult>,
    /// The probe's media streams opened.
    opened: Vec<CallKey>,
    next_port: u16,
}

impl Pair {
    /// A probe against a responder with `steps` (`None`: nobody answers).
    fn new(responder: Option<Responder>) -> Self {
        let now = base();
        let peer = responder.map(|r| {
            let mut config = EndpointConfig::new(local(PEER));
            config.trying = false;
            let mut peer = Agent::new(
                agent_config(PEER, None),
                Endpoint::new(config, IdGen::new(7)),
            );
            peer.respond(
                now,
                ResponderConfig {
                    steps: Arc::new(r.steps()),
                    max_calls: 4,
                    calls: None,
                    drain: secs(1),
                    linger: secs(2),
                },
            );
            peer
        });
        let us = Agent::new(
            agent_config(US, Some(addr(PEER))),
            Endpoint::new(EndpointConfig::new(local(US)), IdGen::new(3)),
        );
        Self {
            now,
            us,
            peer,
            registrar: true,
            refuses: false,
            log: Vec::new(),
            result: None,
            opened: Vec::new(),
            next_port: 30_000,
        }
    }

    fn outgoing() -> OutgoingCall<SocketAddr> {
        let mut media = LocalMedia::new(addr(US).ip(), 0, 11);
        media.codecs = vec![Codec::Pcmu];
        OutgoingCall {
            request_uri: format!("sip:bob@{PEER}"),
            from_uri: "sip:alice@example.com".into(),
            to_uri: format!("sip:bob@{PEER}"),
            destination: addr(PEER),
            credentials: None,
            local_media: media,
            local: local(US),
            offer: OfferPlacement::InInvite,
            extra_headers: Vec::new(),
            max_redirects: 0,
        }
    }

    fn start(&mut self, limit: Option<Duration>, register: bool) {
        let register = register.then(|| ProbeRegister {
            account: account(),
            registrar: addr(REGISTRAR),
            expires: 300,
            ids: IdGen::new(9),
        });
        self.us.probe(
            self.now,
            ProbeConfig {
                plan: plan(self.now, limit),
                outgoing: Self::outgoing(),
                register,
            },
        );
        self.service();
    }

    /// Deliver everything sent, answer the media commands, until nothing moves.
    fn service(&mut self) {
        let now = self.now;
        let (us, peer, registrar) = (addr(US), addr(PEER), addr(REGISTRAR));
        loop {
            let mut wire: VecDeque<(SocketAddr, SocketAddr, Bytes)> = VecDeque::new();
            while let Some(t) = self.us.poll_transmit() {
                wire.push_back((us, t.destination, t.bytes));
            }
            if let Some(p) = self.peer.as_mut() {
                while let Some(t) = p.poll_transmit() {
                    wire.push_back((peer, t.destination, t.bytes));
                }
            }
            let mut busy = !wire.is_empty();
            for (from, to, bytes) in wire {
                let first = String::from_utf8_lossy(&bytes)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                self.log.push((from, to, first));
                if to == registrar {
                    if self.registrar {
                        let answer =
                            registrar_answer(&String::from_utf8_lossy(&bytes), self.refuses);
                        self.us.handle_datagram(now, registrar, answer);
                    }
                } else if to == peer {
                    if let Some(p) = self.peer.as_mut() {
                        p.handle_datagram(now, from, bytes);
                    }
                } else if to == us {
                    self.us.handle_datagram(now, from, bytes);
                }
            }
            for (ours, agent) in
                std::iter::once((true, &mut self.us)).chain(self.peer.as_mut().map(|p| (false, p)))
            {
                while let Some((key, command)) = agent.poll_media() {
                    busy = true;
                    match command {
                        MediaCommand::Open => {
                            self.next_port += 2;
                            agent.handle_media_opened(now, key, Ok(self.next_port));
                            if ours {
                                self.opened.push(key);
                            }
                        }
                        MediaCommand::Stop { report: true } => {
                            agent.handle_media_stopped(now, key, None);
                        }
                        _ => {}
                    }
                }
            }
            if let Some(p) = self.peer.as_mut() {
                while p.poll_answer().is_some() {}
            }
            if let Some(result) = self.us.poll_probe() {
                busy = true;
                assert!(self.result.is_none(), "one result");
                self.result = Some(result);
            }
            if !busy {
                return;
            }
        }
    }

    /// Move virtual time on by `d`, through every deadline on the way.
    fn after(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next = [
                self.us.poll_timeout(),
                self.peer.as_ref().and_then(Agent::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min()
            .filter(|&at| at <= until);
            let Some(at) = next else {
                break;
            };
            self.now = self.now.max(at);
            if self.us.poll_timeout().is_some_and(|t| t <= self.now) {
                self.us.handle_timeout(self.now);
            }
            if let Some(p) = self.peer.as_mut() {
                if p.poll_timeout().is_some_and(|t| t <= self.now) {
                    p.handle_timeout(self.now);
                }
            }
            self.service();
        }
        self.now = until;
    }

    /// The probe's call judged (no media ran).
    fn outcome(&mut self) -> ProbeOutcome {
        let result = self.result.as_mut().expect("the probe is over");
        let call = result.call.take().expect("a call");
        call.script
            .finish_probe(call.record, call.report.as_ref(), &|r: &CallEndReason| {
                r.to_string()
            })
            .expect("a probe's script")
    }

    /// First lines of what `from` sent to `to`, in order.
    fn sent(&self, from: &str, to: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|(f, t, _)| *f == addr(from) && *t == addr(to))
            .map(|(_, _, l)| l.clone())
            .collect()
    }
}

#[test]
fn a_call_answered_and_hung_up_after_its_duration_passes() {
    let mut p = Pair::new(Some(Responder::default()));
    p.start(None, false);
    // Its RTP socket is opened before the INVITE goes.
    assert_eq!(p.opened.len(), 1);
    assert!(p.sent(US, PEER)[0].starts_with("INVITE "), "{:?}", p.log);
    assert!(!p.us.probe_done());
    p.after(secs(3));
    assert!(p.us.probe_done());
    let outcome = p.outcome();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let record = outcome.record.expect("a record");
    assert_eq!((record.final_code, record.bye_code), (Some(200), Some(200)));
    assert!(!outcome.interrupted);
    let result = p.result.as_ref().expect("over");
    assert!(result.registration.is_none() && result.unregistration.is_none());
    // No REGISTER without --register.
    assert!(p.sent(US, REGISTRAR).is_empty());
}

#[test]
fn a_call_refused_486_fails_naming_the_status() {
    let mut p = Pair::new(Some(Responder {
        reject: Some(486),
        ..Responder::default()
    }));
    p.start(None, false);
    p.after(secs(1));
    assert!(p.us.probe_done());
    let outcome = p.outcome();
    assert_eq!(
        outcome.record.as_ref().and_then(|r| r.final_code),
        Some(486)
    );
    assert!(!outcome.failures.is_empty());
    assert!(
        outcome.failures[0].contains("486"),
        "{:?}",
        outcome.failures
    );
}

#[test]
fn an_invite_never_answered_ends_at_timer_b_and_fails() {
    let mut p = Pair::new(None);
    p.start(None, false);
    p.after(secs(31));
    assert!(!p.us.probe_done(), "not before Timer B (64*T1)");
    p.after(secs(2));
    assert!(p.us.probe_done());
    let outcome = p.outcome();
    assert!(!outcome.failures.is_empty());
    assert!(
        outcome.failures[0].contains("Timer B") || outcome.failures[0].contains("timed out"),
        "{:?}",
        outcome.failures
    );
    // INVITE retransmissions, and nothing else.
    assert!(p.sent(US, PEER).iter().all(|l| l.starts_with("INVITE ")));
}

#[test]
fn a_registered_probe_calls_only_once_registered_and_unregisters_after() {
    let mut p = Pair::new(Some(Responder::default()));
    p.start(Some(secs(30)), true);
    let lines: Vec<String> = p.log.iter().map(|(_, _, l)| l.clone()).collect();
    let first_invite = lines
        .iter()
        .position(|l| l.starts_with("INVITE "))
        .expect("an INVITE");
    let registers_before = lines[..first_invite]
        .iter()
        .filter(|l| l.starts_with("REGISTER "))
        .count();
    // The challenge, then the authenticated REGISTER: both before the INVITE.
    assert_eq!(registers_before, 2, "{lines:?}");
    p.after(secs(3));
    assert!(p.us.probe_done());
    let to_registrar = p.sent(US, REGISTRAR);
    // The challenge and the authenticated REGISTER, then the removal (its credentials
    // known by then).
    assert_eq!(to_registrar.len(), 3, "{to_registrar:?}");
    let result = p.result.as_ref().expect("over");
    assert_eq!(result.registration, None);
    assert_eq!(result.unregistration, None);
    let outcome = p.outcome();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    // The unregistration came after the call's BYE.
    let lines: Vec<String> = p.log.iter().map(|(_, _, l)| l.clone()).collect();
    let bye = lines
        .iter()
        .position(|l| l.starts_with("BYE "))
        .expect("a BYE");
    assert!(lines[bye..].iter().any(|l| l.starts_with("REGISTER ")));
}

#[test]
fn a_registration_unanswered_within_the_limit_fails_and_places_no_call() {
    let mut p = Pair::new(Some(Responder::default()));
    p.registrar = false;
    p.start(Some(secs(1)), true);
    p.after(ms(999));
    assert!(!p.us.probe_done());
    p.after(ms(1));
    assert!(p.us.probe_done());
    let result = p.result.as_ref().expect("over");
    assert!(result.call.is_none());
    assert_eq!(
        result.registration.as_ref().map(ToString::to_string),
        Some("no final response within --timeout 1s".to_string())
    );
    assert!(!p.log.iter().any(|(_, _, l)| l.starts_with("INVITE ")));
}

#[test]
fn an_unregistration_unanswered_gets_its_grace_past_the_limit() {
    let mut p = Pair::new(Some(Responder::default()));
    p.start(Some(secs(3)), true);
    // Registered; the registrar then stops answering, and the call ends at 2 s.
    p.after(secs(1));
    p.registrar = false;
    p.after(secs(1));
    assert!(p.sent(US, PEER).iter().any(|l| l.starts_with("BYE ")));
    // The limit (3 s) is nearer than 2 s from the removal's start: it gets those 2 s.
    p.after(ms(1999));
    assert!(!p.us.probe_done());
    p.after(ms(1));
    assert!(p.us.probe_done());
    let result = p.result.as_ref().expect("over");
    assert_eq!(
        result.unregistration.as_ref().map(ToString::to_string),
        Some("no final response within --timeout 3s".to_string())
    );
}

#[test]
fn ctrl_c_mid_call_hangs_up_and_the_call_does_not_pass() {
    let mut p = Pair::new(Some(Responder::default()));
    p.start(None, false);
    p.after(ms(500));
    assert!(!p.us.probe_done());
    p.us.stop(p.now);
    p.service();
    p.after(ms(100));
    assert!(p.us.probe_done());
    assert!(p.sent(US, PEER).iter().any(|l| l.starts_with("BYE ")));
    let outcome = p.outcome();
    assert!(outcome.interrupted);
    assert!(!outcome.failures.is_empty());
}

#[test]
fn an_incoming_invite_while_probing_is_refused_busy() {
    let mut p = Pair::new(Some(Responder::default()));
    p.start(None, false);
    let source = addr("127.0.0.9:5090");
    let invite = format!(
        "INVITE sip:x@{US} SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bKin1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:z@{source}>;tag=z1\r\nTo: <sip:x@{US}>\r\n\
         Call-ID: stray@test\r\nCSeq: 1 INVITE\r\nContact: <sip:z@{source}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    p.us.handle_datagram(p.now, source, Bytes::from(invite));
    p.service();
    let refused = p
        .log
        .iter()
        .filter(|(_, to, _)| *to == source)
        .any(|(_, _, l)| l.starts_with("SIP/2.0 486"));
    assert!(refused, "{:?}", p.log);
    p.after(secs(3));
    let outcome = p.outcome();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
}

#[test]
fn a_registration_refused_fails_the_probe_naming_the_status_and_places_no_call() {
    let mut p = Pair::new(Some(Responder::default()));
    p.refuses = true;
    p.start(Some(secs(10)), true);
    assert!(p.us.probe_done(), "over at the refusal, not at the limit");
    let result = p.result.as_ref().expect("over");
    assert!(result.call.is_none());
    let failure = result
        .registration
        .as_ref()
        .map(ToString::to_string)
        .expect("a registration failure");
    assert!(failure.contains("403"), "{failure}");
    assert!(!p.log.iter().any(|(_, _, l)| l.starts_with("INVITE ")));
    // Nothing bound, nothing to remove.
    assert_eq!(p.sent(US, REGISTRAR).len(), 1);
}

#[test]
fn ctrl_c_while_registering_ends_the_probe_with_no_call() {
    let mut p = Pair::new(Some(Responder::default()));
    p.registrar = false;
    p.start(Some(secs(30)), true);
    p.after(ms(200));
    assert!(!p.us.probe_done());
    p.us.stop(p.now);
    p.service();
    assert!(p.us.probe_done());
    let result = p.result.as_ref().expect("over");
    assert!(result.call.is_none());
    assert_eq!(result.registration, Some(ProbeStepError::Interrupted));
    p.registrar = true;
    p.after(secs(5));
    assert!(!p.log.iter().any(|(_, _, l)| l.starts_with("INVITE ")));
}
