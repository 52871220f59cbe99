//! The responder agent in virtual time, against a caller written out by hand: each INVITE,
//! ACK and BYE as a peer would send it (or not send it), from the sources a test needs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::ids::IdGen;
use crate::media::g711::Codec;
use crate::sip::msg::Message;
use crate::sip::transport::Transport;
use crate::ua::agent::{AgentConfig, MediaCommand};
use crate::ua::call::{Endpoint, EndpointConfig};
use crate::ua::register::LocalEnd;
use crate::ua::script::responder::Responder;

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

const US: &str = "127.0.0.1:5060";

/// A responder agent, the messages it sent, its results and media commands.
struct Harness {
    now: Instant,
    agent: Agent<SocketAddr>,
    sent: Vec<(SocketAddr, Message)>,
    results: Vec<ResponderResult>,
    media: Vec<MediaCommand>,
    next_port: u16,
}

impl Harness {
    fn new(responder: &Responder, max_calls: usize, calls: Option<u64>) -> Self {
        let addr: SocketAddr = US.parse().expect("address");
        let local = LocalEnd {
            transport: Transport::Udp,
            addr,
            routes: Vec::new(),
        };
        let mut config = EndpointConfig::new(local.clone());
        config.trying = false;
        let endpoint = Endpoint::new(config, IdGen::new(5));
        let cfg = AgentConfig {
            role: String::new(),
            local,
            next_hop: None,
            domain: String::new(),
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            ptime_ms: 20,
            rtp: true,
            wavs: Arc::new(HashMap::new()),
            accounts: Vec::new(),
            steps: Arc::new(Vec::new()),
            srtp: None,
            sips: false,
            signature_parties: Vec::new().into(),
        };
        let now = base();
        let mut agent = Agent::new(cfg, endpoint);
        agent.respond(
            now,
            ResponderConfig {
                steps: Arc::new(responder.steps()),
                max_calls,
                calls,
                drain: secs(1),
                linger: ms(2000),
            },
        );
        Self {
            now,
            agent,
            sent: Vec::new(),
            results: Vec::new(),
            media: Vec::new(),
            next_port: 30_000,
        }
    }

    /// Take everything the agent has to give, answering media commands as the engine would.
    fn service(&mut self) {
        loop {
            let mut busy = false;
            while let Some(t) = self.agent.poll_transmit() {
                busy = true;
                let message = Message::parse_datagram(t.bytes).expect("we send SIP");
                self.sent.push((t.destination, message));
            }
            while let Some((key, command)) = self.agent.poll_media() {
                busy = true;
                match &command {
                    MediaCommand::Open => {
                        self.next_port += 2;
                        self.agent
                            .handle_media_opened(self.now, key, Ok(self.next_port));
                    }
                    MediaCommand::Stop { report: true } => {
                        self.agent.handle_media_stopped(self.now, key, None);
                    }
                    _ => {}
                }
                self.media.push(command);
            }
            while let Some(result) = self.agent.poll_answer() {
                busy = true;
                self.results.push(result);
            }
            if !busy {
                return;
            }
        }
    }

    fn receive(&mut self, from: &str, text: &str) {
        let from: SocketAddr = from.parse().expect("address");
        self.agent
            .handle_datagram(self.now, from, Bytes::from(text.to_owned()));
        self.service();
    }

    /// Move virtual time on by `d`, through every deadline on the way.
    fn after(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.agent.poll_timeout().filter(|&at| at <= until) {
            self.now = self.now.max(at);
            self.agent.handle_timeout(self.now);
            self.service();
        }
        self.now = until;
    }

    /// The statuses sent for `call_id`'s INVITE, in order.
    fn statuses(&self, call_id: &str) -> Vec<u16> {
        self.sent
            .iter()
            .filter(|(_, m)| m.call_id() == call_id)
            .filter_map(|(_, m)| m.status())
            .collect()
    }

    /// The To tag of our final response in `call_id`.
    fn tag(&self, call_id: &str) -> String {
        self.sent
            .iter()
            .filter(|(_, m)| m.call_id() == call_id && m.status().is_some_and(|c| c >= 200))
            .find_map(|(_, m)| m.to_tag())
            .expect("a final response with a tag")
            .to_string()
    }

    fn requests(&self, call_id: &str, method: &str) -> usize {
        self.sent
            .iter()
            .filter(|(_, m)| {
                m.call_id() == call_id && m.method().is_some_and(|x| x.as_str() == method)
            })
            .count()
    }

    fn call(&self, index: usize) -> &ResponderCall {
        match &self.results[index] {
            ResponderResult::Call(c) => c,
            other @ ResponderResult::Refused { .. } => panic!("not a call: {other:?}"),
        }
    }

    /// The outcomes of every call, judged (no media failure).
    fn outcomes(&mut self) -> Vec<(u64, ResponderOutcome)> {
        std::mem::take(&mut self.results)
            .into_iter()
            .filter_map(|r| match r {
                ResponderResult::Call(c) => Some((c.index, c.finish(Vec::new()))),
                ResponderResult::Refused { .. } => None,
            })
            .collect()
    }
}

fn sdp(ip: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// An INVITE from `source` (its SDP naming `media_ip`).
fn invite(call_id: &str, source: &str, media_ip: &str) -> String {
    let body = sdp(media_ip);
    format!(
        "INVITE sip:bob@{US} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {source};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{source}>;tag=f-{call_id}\r\n\
         To: <sip:bob@{US}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{source}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An in-dialog request (`ACK` for the INVITE's CSeq 1, `BYE` with CSeq 2).
fn in_dialog(method: &str, call_id: &str, source: &str, tag: &str) -> String {
    let (cseq, branch) = match method {
        "ACK" => (1, format!("z9hG4bK-{call_id}-ack")),
        _ => (2, format!("z9hG4bK-{call_id}-bye")),
    };
    format!(
        "{method} sip:bob@{US} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {source};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{source}>;tag=f-{call_id}\r\n\
         To: <sip:bob@{US}>;tag={tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A call from `source` answered and ACKed.
fn confirmed(h: &mut Harness, call_id: &str, source: &str) {
    h.receive(source, &invite(call_id, source, ip(source)));
    let tag = h.tag(call_id);
    h.receive(source, &in_dialog("ACK", call_id, source, &tag));
}

fn ip(source: &str) -> &str {
    source.split(':').next().expect("ip:port")
}

#[test]
fn a_call_beyond_max_calls_is_refused_busy_on_a_line_of_its_own() {
    let mut h = Harness::new(&Responder::default(), 1, None);
    confirmed(&mut h, "c1", "127.0.0.2:5070");
    assert_eq!(h.agent.responder_counts().answered, 1);
    h.receive(
        "127.0.0.3:5070",
        &invite("c2", "127.0.0.3:5070", "127.0.0.3"),
    );
    assert_eq!(h.statuses("c2"), vec![486]);
    let counts = h.agent.responder_counts();
    assert_eq!((counts.received, counts.busy), (2, 1));
    // The refused call's line comes at once, a failure that says why.
    assert_eq!(h.results.len(), 1);
    assert_eq!(h.call(0).refused, Some(Refused::Busy { max_calls: 1 }));
    let outcomes = h.outcomes();
    assert_eq!(outcomes[0].0, 1);
    assert_eq!(outcomes[0].1.failures[0], "busy: 1 calls already active");
    // The first call goes on, and passes once its caller hangs up.
    let tag = h.tag("c1");
    h.receive(
        "127.0.0.2:5070",
        &in_dialog("BYE", "c1", "127.0.0.2:5070", &tag),
    );
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].0, 2);
    assert!(outcomes[0].1.failures.is_empty(), "{:?}", outcomes[0].1);
}

#[test]
fn an_unconfirmed_call_is_dropped_for_a_newer_one_when_the_budget_is_full() {
    // Four calls at once: two may be unconfirmed, one per source.
    let mut h = Harness::new(&Responder::default(), 4, None);
    for (id, source) in [("u1", "127.0.0.2:5070"), ("u2", "127.0.0.3:5070")] {
        h.receive(source, &invite(id, source, ip(source)));
    }
    assert!(h.results.is_empty());
    h.receive(
        "127.0.0.4:5070",
        &invite("u3", "127.0.0.4:5070", "127.0.0.4"),
    );
    assert_eq!(h.agent.responder_counts().unconfirmed_dropped, 1);
    // The oldest is gone: its line says so, and its 200 is no longer retransmitted.
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert!(
        outcomes[0].1.end_reason.contains("dropped"),
        "{:?}",
        outcomes[0].1
    );
    assert!(!outcomes[0].1.failures.is_empty());
    assert_eq!(outcomes[0].1.call_id, "u1");
    let before = h.statuses("u1").len();
    h.after(secs(4));
    assert_eq!(h.statuses("u1").len(), before);
    assert!(h.statuses("u2").len() > 1, "u2's 200 is retransmitted");
    // A second INVITE from a source that holds its share is refused.
    h.receive(
        "127.0.0.4:5071",
        &invite("u4", "127.0.0.4:5071", "127.0.0.4"),
    );
    assert_eq!(h.statuses("u4"), vec![486]);
    assert_eq!(h.agent.responder_counts().source_limited, 1);
}

#[test]
fn ctrl_c_drops_calls_awaiting_their_ack_hangs_up_the_others_and_refuses_new_ones() {
    let mut h = Harness::new(&Responder::default(), 10, None);
    confirmed(&mut h, "up", "127.0.0.2:5070");
    h.receive(
        "127.0.0.3:5070",
        &invite("noack", "127.0.0.3:5070", "127.0.0.3"),
    );
    h.agent.stop(h.now);
    h.service();
    assert!(h.agent.draining());
    assert_eq!(h.requests("up", "BYE"), 1);
    assert_eq!(h.requests("noack", "BYE"), 0);
    // The un-ACKed call ended at once, dropped.
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1.call_id, "noack");
    // A new INVITE is refused with 480, on its own line.
    h.receive(
        "127.0.0.4:5070",
        &invite("late", "127.0.0.4:5070", "127.0.0.4"),
    );
    assert_eq!(h.statuses("late"), vec![480]);
    let late = h.outcomes();
    assert_eq!(
        late[0].1.failures[0],
        "refused with 480: sipcheck answer was shutting down"
    );
    assert!(!h.agent.responder_done(), "the BYE is not answered yet");
    // The BYE answered: every call ended, the run is over before the drain's end.
    let bye = h
        .sent
        .iter()
        .find(|(_, m)| m.call_id() == "up" && m.method().is_some_and(|x| x.as_str() == "BYE"))
        .map(|(_, m)| m.clone())
        .expect("a BYE");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: up\r\nCSeq: {} BYE\r\n\
         Content-Length: 0\r\n\r\n",
        header(&bye, "Via"),
        header(&bye, "From"),
        header(&bye, "To"),
        bye.cseq()
    );
    h.receive("127.0.0.2:5070", &ok);
    assert!(h.agent.responder_done());
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1.bye_code, Some(200));
    assert!(outcomes[0].1.failures.is_empty(), "{:?}", outcomes[0].1);
}

fn header(m: &Message, name: &str) -> String {
    m.headers()
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

#[test]
fn ctrl_c_ends_the_run_after_the_drain_when_a_bye_is_never_answered() {
    let mut h = Harness::new(&Responder::default(), 10, None);
    confirmed(&mut h, "up", "127.0.0.2:5070");
    h.agent.stop(h.now);
    h.service();
    h.after(ms(999));
    assert!(!h.agent.responder_done());
    h.after(ms(1));
    assert!(h.agent.responder_done());
}

#[test]
fn after_calls_n_the_run_lingers_for_retransmissions_of_the_last_bye_then_ends() {
    let mut h = Harness::new(&Responder::default(), 10, Some(1));
    confirmed(&mut h, "c1", "127.0.0.2:5070");
    let tag = h.tag("c1");
    let bye = in_dialog("BYE", "c1", "127.0.0.2:5070", &tag);
    h.receive("127.0.0.2:5070", &bye);
    assert_eq!(h.outcomes().len(), 1);
    assert!(!h.agent.responder_done(), "the BYE's transaction lingers");
    // Our 200 was lost: the retransmitted BYE is answered again.
    h.after(ms(500));
    h.receive("127.0.0.2:5070", &bye);
    assert_eq!(h.statuses("c1").iter().filter(|&&c| c == 200).count(), 3);
    assert!(!h.agent.responder_done());
    h.after(ms(1500));
    assert!(h.agent.responder_done(), "at most 4·T1 after the last call");
}

#[test]
fn reject_mode_rejects_every_call_as_asked_and_passes_it() {
    let responder = Responder {
        reject: Some(603),
        ..Responder::default()
    };
    let mut h = Harness::new(&responder, 10, Some(1));
    h.receive(
        "127.0.0.2:5070",
        &invite("r1", "127.0.0.2:5070", "127.0.0.2"),
    );
    assert_eq!(h.statuses("r1"), vec![603]);
    let tag = h.tag("r1");
    h.receive(
        "127.0.0.2:5070",
        &in_dialog("ACK", "r1", "127.0.0.2:5070", &tag),
    );
    assert_eq!(h.agent.responder_counts().rejected, 1);
    let outcomes = h.outcomes();
    assert_eq!(outcomes[0].1.final_code, Some(603));
    assert!(outcomes[0].1.failures.is_empty(), "{:?}", outcomes[0].1);
    h.after(secs(2));
    assert!(h.agent.responder_done());
}

#[test]
fn a_caller_that_never_hangs_up_is_hung_up_after_an_hour_and_fails() {
    let mut h = Harness::new(&Responder::default(), 10, None);
    confirmed(&mut h, "long", "127.0.0.2:5070");
    h.after(secs(3599));
    assert_eq!(h.requests("long", "BYE"), 0);
    h.after(secs(2));
    assert!(h.requests("long", "BYE") >= 1);
    // The BYE is never answered: the call ends with Timer F, and fails.
    h.after(secs(40));
    let outcomes = h.outcomes();
    assert_eq!(outcomes.len(), 1);
    assert!(
        outcomes[0]
            .1
            .failures
            .iter()
            .any(|f| f == "Bye did not come"),
        "{:?}",
        outcomes[0].1
    );
}

#[test]
fn media_to_another_address_than_the_invites_source_is_held_back_until_the_ack() {
    let mut h = Harness::new(&Responder::default(), 10, None);
    h.receive(
        "127.0.0.2:5070",
        &invite("m1", "127.0.0.2:5070", "127.0.0.9"),
    );
    let start = h.media.iter().find_map(|c| match c {
        MediaCommand::Start(n) => Some(n.clone()),
        _ => None,
    });
    let start = start.expect("media starts with the answer");
    assert!(!start.direction.sends(), "nothing sent before the ACK");
    assert!(start.direction.receives());
    let tag = h.tag("m1");
    h.receive(
        "127.0.0.2:5070",
        &in_dialog("ACK", "m1", "127.0.0.2:5070", &tag),
    );
    let follow = h.media.iter().find_map(|c| match c {
        MediaCommand::Intent(MediaIntent::Follow(n)) => Some(n.clone()),
        _ => None,
    });
    assert!(follow.expect("media follows the ACK").direction.sends());
    // From the INVITE's own address, media is sent at once.
    h.receive(
        "127.0.0.3:5070",
        &invite("m2", "127.0.0.3:5070", "127.0.0.3"),
    );
    let starts: Vec<_> = h
        .media
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Start(n) => Some(n.direction.sends()),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![false, true]);
}

#[test]
fn an_invite_refused_before_a_call_began_is_counted_and_comes_out_numbered() {
    let mut h = Harness::new(&Responder::default(), 10, Some(2));
    let unsupported = invite("x1", "127.0.0.2:5070", "127.0.0.2").replacen(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: no-such-extension\r\n",
        1,
    );
    h.receive("127.0.0.2:5070", &unsupported);
    assert_eq!(h.statuses("x1"), vec![420]);
    assert_eq!(h.agent.responder_counts().received, 1);
    match &h.results[..] {
        [ResponderResult::Refused {
            index: 1,
            code: 420,
            call_id,
            from,
            ..
        }] => {
            assert_eq!(call_id, "x1");
            assert!(from.contains("alice"), "{from}");
        }
        other => panic!("{other:?}"),
    }
    // It counts towards `calls`: one more call ends the run.
    h.results.clear();
    confirmed(&mut h, "c2", "127.0.0.3:5070");
    let tag = h.tag("c2");
    h.receive(
        "127.0.0.3:5070",
        &in_dialog("BYE", "c2", "127.0.0.3:5070", &tag),
    );
    assert_eq!(h.call(0).index, 2);
    h.after(secs(2));
    assert!(h.agent.responder_done());
}

#[test]
fn no_call_to_wait_for_is_over_at_once() {
    let h = Harness::new(&Responder::default(), 10, Some(0));
    assert!(h.agent.responder_done());
    let h = Harness::new(&Responder::default(), 10, Some(1));
    assert!(!h.agent.responder_done());
}
