//! Two endpoints over a simulated link, in virtual time (quinn's `Pair`).
//!
//! A [`Net`] joins endpoint A (the caller) and endpoint B (the callee) as two nodes of a
//! [`Sim`](crate::sim::Sim): a 10 ms link each way, scripted drops and delays, seeded random
//! loss, and an optional interceptor standing in for a proxy (challenging, record-routing).
//! The simulator jumps the clock to the next deadline — the endpoints' `poll_timeout`, the
//! next delivery, the next scripted user action — so a 32-second timeout takes microseconds
//! and every instant is exact.
//! Each side has a [`Policy`]: how its user reacts to events (ring, answer, reject, hang up
//! after a while).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::media::g711::Codec;
use crate::sdp::Direction;
use crate::sim::{Datagram, Fault, Intercept, LinkConfig, Network, Node, Rule, Sim};
use crate::sip::build::{reason_phrase, write_response};
use crate::sip::transaction::Timer;

mod replaces;

/// The one clock read of these tests; everything after it is virtual.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const A: usize = 0;
const B: usize = 1;
const NAMES: [&str; 2] = ["A", "B"];

fn addr(side: usize) -> SocketAddr {
    SocketAddr::new(ip(side), 5060)
}

fn ip(side: usize) -> IpAddr {
    IpAddr::from([192, 0, 2, 1 + side as u8])
}

fn media(side: usize) -> LocalMedia {
    LocalMedia::new(ip(side), 40000 + 10000 * side as u16, 1000 + side as u64)
}

fn local(side: usize) -> LocalEnd {
    LocalEnd {
        transport: Transport::Udp,
        addr: addr(side),
        routes: Vec::new(),
    }
}

fn call_to_b() -> OutgoingCall<SocketAddr> {
    OutgoingCall {
        request_uri: "sip:bob@192.0.2.2:5060".into(),
        from_uri: "sip:alice@example.test".into(),
        to_uri: "sip:bob@example.test".into(),
        destination: addr(B),
        credentials: None,
        local_media: media(A),
        local: local(A),
        offer: OfferPlacement::InInvite,
        extra_headers: Vec::new(),
        max_redirects: 0,
    }
}

const CHALLENGE: &str = r#"Digest realm="example.test", nonce="n0nce", qop="auth", algorithm=MD5"#;

/// How a side's user reacts to events.
#[derive(Debug, Clone, Default)]
struct Policy {
    /// Ring this long after an incoming call.
    ring_after: Option<Duration>,
    /// Answer with 183 and SDP at once.
    early_media: bool,
    /// Accept this long after an incoming call.
    answer_after: Option<Duration>,
    /// Reject incoming calls with this code, at once.
    reject: Option<u16>,
    /// Reject, at once, the incoming calls this rule gives a code for (told the Request-URI).
    reject_when: Option<fn(&str) -> Option<u16>>,
    /// Hang up this long after the call is answered.
    hangup_after: Option<Duration>,
    /// The media to answer with (else the side's default).
    media: Option<LocalMedia>,
}

impl Policy {
    fn callee(ring_after: Duration, answer_after: Duration) -> Self {
        Self {
            ring_after: Some(ring_after),
            answer_after: Some(answer_after),
            ..Self::default()
        }
    }
}

/// A user action, run at its scheduled instant.
#[derive(Debug, Clone)]
enum Action {
    Ring(CallId),
    EarlyMedia(CallId),
    Accept(CallId),
    Reject(CallId, u16),
    Hangup(CallId),
    Abandon(CallId),
    Cancel(CallId),
    Reinvite(CallId, LocalMedia),
    Invite(Box<OutgoingCall<SocketAddr>>),
    Refer(CallId, &'static str),
    NotifyTransfer(CallId, u16, &'static str),
}

/// What a proxy on the path does with a datagram, told which side sent it.
type Interceptor = Box<dyn FnMut(usize, &Message) -> Intercept>;

/// A further address on the network.
#[derive(Debug, Clone, Copy)]
enum Alias {
    /// A stateless proxy: what is sent to it reaches the other side, from the proxy's address.
    Proxy,
    /// Another address of a side (a Contact that is not where the INVITE went).
    Of(usize),
}

/// One datagram put on the network, as the tests read it.
#[derive(Debug, Clone)]
#[allow(dead_code)] // `dropped` is there for failure output.
struct Sent {
    at: Duration,
    from: usize,
    /// The destination the endpoint gave.
    to: SocketAddr,
    /// `INVITE`, `ACK`, `200/INVITE`, … (see [`summary`]).
    label: String,
    bytes: Bytes,
    dropped: bool,
}

impl Sent {
    fn message(&self) -> Message {
        Message::parse_datagram(self.bytes.clone()).unwrap()
    }
}

/// `METHOD` for a request, `CODE/METHOD` for a response.
fn summary(message: &Message) -> String {
    match message.status() {
        Some(code) => format!("{code}/{}", message.cseq_method()),
        None => message
            .method()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// The summary of a datagram's bytes.
fn label(bytes: &[u8]) -> String {
    summary(
        &Message::parse_datagram(Bytes::copy_from_slice(bytes)).expect("endpoints send valid SIP"),
    )
}

/// One endpoint and its user: a node of the simulator.
struct Side {
    index: usize,
    t0: Instant,
    ep: Endpoint<SocketAddr>,
    policy: Policy,
    /// The user's scheduled actions: (instant, sequence) → action.
    actions: BTreeMap<(Instant, u64), Action>,
    seq: u64,
    events: Vec<(Duration, CallEvent<SocketAddr>)>,
    errors: Vec<CallError>,
}

impl Side {
    /// Schedules `action` at `at`.
    fn at(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        self.actions.insert((at, self.seq), action);
    }

    /// Lets the policy see every pending event.
    fn react_all(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(event) = self.ep.poll_event() {
            any = true;
            self.react(now, &event);
            self.events.push((now - self.t0, event));
        }
        any
    }

    fn react(&mut self, now: Instant, event: &CallEvent<SocketAddr>) {
        let policy = self.policy.clone();
        match *event {
            CallEvent::Incoming {
                call,
                ref request_uri,
                ..
            } => {
                let by_rule = policy.reject_when.and_then(|rule| rule(request_uri));
                if let Some(code) = policy.reject.or(by_rule) {
                    self.at(now, Action::Reject(call, code));
                    return;
                }
                if let Some(after) = policy.ring_after {
                    self.at(now + after, Action::Ring(call));
                }
                if policy.early_media {
                    self.at(now, Action::EarlyMedia(call));
                }
                if let Some(after) = policy.answer_after {
                    self.at(now + after, Action::Accept(call));
                }
            }
            CallEvent::Answered { call, .. } => {
                if let Some(after) = policy.hangup_after {
                    self.at(now + after, Action::Hangup(call));
                }
            }
            _ => {}
        }
    }

    fn run_action(&mut self, now: Instant, action: Action) {
        let media = self.policy.media.clone().unwrap_or(media(self.index));
        let ep = &mut self.ep;
        let result = match action {
            Action::Ring(call) => ep.ring(now, call),
            Action::EarlyMedia(call) => ep.early_media(now, call, media).map(drop),
            Action::Accept(call) => ep.accept(now, call, media).map(drop),
            Action::Reject(call, code) => ep.reject(now, call, code),
            Action::Hangup(call) => ep.hangup(now, call),
            Action::Abandon(call) => ep.abandon(now, call),
            Action::Cancel(call) => ep.cancel(now, call),
            Action::Reinvite(call, media) => ep.reinvite(now, call, media),
            Action::Invite(call) => ep.invite(now, *call).map(drop),
            Action::Refer(call, to) => ep.refer(now, call, to, Some("<sip:alice@192.0.2.1>")),
            Action::NotifyTransfer(call, code, reason) => {
                ep.notify_transfer(now, call, code, reason)
            }
        };
        if let Err(error) = result {
            self.errors.push(error);
        }
    }
}

impl Node<SocketAddr> for Side {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<SocketAddr>) {
        let message = Message::parse_datagram(datagram.bytes).unwrap();
        self.ep.handle_message(now, message, false, datagram.from);
    }

    /// The user's actions due by now, in order (and those they lead to at once), then the
    /// endpoint's timers.
    fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.actions.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let action = entry.remove();
            self.run_action(now, action);
            self.react_all(now);
        }
        if self.ep.poll_timeout().is_some_and(|at| at <= now) {
            self.ep.handle_timeout(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let action = self.actions.keys().next().map(|k| k.0);
        self.ep.poll_timeout().into_iter().chain(action).min()
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram<SocketAddr>> {
        loop {
            if let Some(t) = self.ep.poll_transmit() {
                return Some(Datagram {
                    from: addr(self.index),
                    to: t.destination,
                    bytes: t.bytes,
                });
            }
            if !self.react_all(now) {
                return None;
            }
        }
    }
}

/// Endpoint A (the caller) and endpoint B (the callee) over a 10 ms link.
struct Net {
    t0: Instant,
    sim: Sim<SocketAddr, Side>,
}

impl Net {
    fn new() -> Self {
        let t0 = base();
        let mut sim = Sim::new(Network::new(t0, LinkConfig::new(ms(10))));
        for i in [A, B] {
            let mut config = EndpointConfig::new(local(i));
            config.contact_user = ["alice", "bob"][i].to_string();
            config.accept_refer = true;
            let side = Side {
                index: i,
                t0,
                ep: Endpoint::new(config, IdGen::new(100 + i as u64)),
                policy: Policy::default(),
                actions: BTreeMap::new(),
                seq: 0,
                events: Vec::new(),
                errors: Vec::new(),
            };
            sim.add_node(side, [addr(i)]);
        }
        Self { t0, sim }
    }

    /// A net whose B rings at once and answers after `answer_after`.
    fn with_callee(answer_after: Duration) -> Self {
        let mut net = Self::new();
        net.sim.nodes[B].policy = Policy::callee(Duration::ZERO, answer_after);
        net
    }

    fn ep(&mut self, side: usize) -> &mut Endpoint<SocketAddr> {
        &mut self.sim.nodes[side].ep
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    /// The one-way delay between A and B.
    fn delay(&self) -> Duration {
        self.sim.net.link(&addr(A), &addr(B)).delay
    }

    /// Messages from `from` whose summary (see [`summary`]) starts with `label`, from the
    /// `skip + 1`-th on, `times` times, suffer `fault`.
    fn rule(&mut self, from: usize, label: &'static str, skip: u32, times: u32, fault: Fault) {
        let rule = Rule::new(fault)
            .from(addr(from))
            .matching(move |bytes| self::label(bytes).starts_with(label))
            .skip(skip.into())
            .times(times.into());
        self.sim.net.add_rule(rule);
    }

    /// Puts a proxy on the path.
    fn intercept(&mut self, mut interceptor: Interceptor) {
        self.sim.net.set_interceptor(move |datagram| {
            let from = if datagram.from == addr(A) { A } else { B };
            let message = Message::parse_datagram(datagram.bytes.clone()).unwrap();
            interceptor(from, &message)
        });
    }

    /// Adds a further address on the network.
    fn alias(&mut self, at: SocketAddr, alias: Alias) {
        match alias {
            Alias::Of(side) => self.sim.add_address(side, at),
            Alias::Proxy => {
                self.sim
                    .net
                    .add_relay(at, |from| if *from == addr(A) { addr(B) } else { addr(A) })
            }
        }
    }

    /// Loses `ppm` parts per million each way at random, seeded with `seed`.
    fn random_loss(&mut self, ppm: u32, seed: u64) {
        self.sim.net.seed(seed);
        let link = LinkConfig::new(self.delay()).with_loss(ppm);
        self.sim.net.set_default_link(link);
    }

    /// Schedule `action` on `side` at `at` after the start.
    fn at(&mut self, at: Duration, side: usize, action: Action) {
        let at = self.t0 + at;
        self.sim.nodes[side].at(at, action);
    }

    /// Place a call from A now.
    fn invite(&mut self, call: OutgoingCall<SocketAddr>) -> CallId {
        let now = self.now();
        let id = self.ep(A).invite(now, call).unwrap();
        self.flush();
        id
    }

    /// Put every pending transmit on the network and let the policies see every event.
    fn flush(&mut self) {
        self.sim.flush();
    }

    /// Run until `d` after now.
    fn run_for(&mut self, d: Duration) {
        self.sim.run_for(d);
    }

    /// Run until nothing is left to do (every transaction finished), at most ten minutes.
    fn run_until_idle(&mut self) {
        assert!(
            self.sim.run_until_idle(secs(600)),
            "still busy after 10 minutes"
        );
    }

    /// Every datagram put on the network, in order.
    fn log(&self) -> Vec<Sent> {
        self.sim
            .net
            .log()
            .iter()
            .map(|s| Sent {
                at: s.at - self.t0,
                from: self
                    .sim
                    .owner(&s.from)
                    .unwrap_or_else(|| panic!("{} belongs to no side", s.from)),
                to: s.to,
                label: label(&s.bytes),
                bytes: s.bytes.clone(),
                dropped: s.dropped,
            })
            .collect()
    }

    // ---- Reading the outcome ----

    fn events(&self, side: usize) -> impl Iterator<Item = &(Duration, CallEvent<SocketAddr>)> {
        self.sim.nodes[side].events.iter()
    }

    fn ended(&self, side: usize) -> Vec<&CallRecord> {
        self.events(side)
            .filter_map(|(_, e)| match e {
                CallEvent::Ended { record, .. } => Some(&**record),
                _ => None,
            })
            .collect()
    }

    fn reasons(&self, side: usize) -> Vec<CallEndReason> {
        self.ended(side)
            .iter()
            .map(|r| r.reason().unwrap().clone())
            .collect()
    }

    fn answered(&self, side: usize) -> Vec<&Negotiated> {
        self.events(side)
            .filter_map(|(_, e)| match e {
                CallEvent::Answered { negotiated, .. } => Some(negotiated),
                _ => None,
            })
            .collect()
    }

    fn updates(&self, side: usize) -> Vec<&Negotiated> {
        self.events(side)
            .filter_map(|(_, e)| match e {
                CallEvent::MediaUpdated { negotiated, .. } => Some(negotiated),
                _ => None,
            })
            .collect()
    }

    fn progress(&self, side: usize) -> Vec<u16> {
        self.events(side)
            .filter_map(|(_, e)| match e {
                CallEvent::Progress { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    fn incoming(&self) -> Vec<CallId> {
        self.events(B)
            .filter_map(|(_, e)| match e {
                CallEvent::Incoming { call, .. } => Some(*call),
                _ => None,
            })
            .collect()
    }

    /// `A INVITE`, `B 100/INVITE` … for every datagram, dropped ones marked `(lost)`.
    fn trace(&self) -> Vec<String> {
        self.log()
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}",
                    NAMES[s.from],
                    s.label,
                    if s.dropped { " (lost)" } else { "" }
                )
            })
            .collect()
    }

    /// The datagrams `from` sent whose summary is `label`.
    fn sent(&self, from: usize, label: &str) -> Vec<Sent> {
        self.log()
            .into_iter()
            .filter(|s| s.from == from && s.label == label)
            .collect()
    }

    fn assert_no_errors(&self) {
        for side in [A, B] {
            assert!(
                self.sim.nodes[side].errors.is_empty(),
                "{} had errors: {:?}",
                NAMES[side],
                self.sim.nodes[side].errors
            );
        }
    }

    /// Both endpoints hold nothing: no call, no dialog, no transaction, no timer.
    fn assert_empty(&self) {
        for side in [A, B] {
            let ep = &self.sim.nodes[side].ep;
            assert!(
                ep.is_empty(),
                "{} still has {} calls",
                NAMES[side],
                ep.len()
            );
            assert!(
                ep.transactions().is_empty(),
                "{} still has {} transactions",
                NAMES[side],
                ep.transactions().len()
            );
            let (calls, dialogs, owners, timers, _) = ep.footprint();
            assert_eq!(
                (calls, dialogs, owners, timers),
                (0, 0, 0, 0),
                "{}",
                NAMES[side]
            );
            assert_eq!(ep.poll_timeout(), None);
        }
    }
}

fn header_values(message: &Message, name: &Name) -> Vec<String> {
    message.header_values(name).map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------
// Basic calls
// ---------------------------------------------------------------------------------------

/// A call from A to a B without the immediate 100 Trying (a UAS that responds at once),
/// answering as `policy` says; A hangs up 1 s after the answer. Returns the net, run to idle.
fn call_without_trying(policy: Policy) -> Net {
    let mut net = Net::new();
    let mut config = EndpointConfig::new(local(B));
    config.contact_user = "bob".to_string();
    config.trying = false;
    net.sim.nodes[B].ep = Endpoint::new(config, IdGen::new(101));
    net.sim.nodes[B].policy = policy;
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    net
}

#[test]
fn a_uas_that_responds_at_once_can_leave_out_the_100_trying() {
    // Answered at once, no ringing: the 200 is the only response to the INVITE.
    let net = call_without_trying(Policy {
        answer_after: Some(Duration::ZERO),
        ..Policy::default()
    });
    assert_eq!(
        net.trace(),
        ["A INVITE", "B 200/INVITE", "A ACK", "A BYE", "B 200/BYE"]
    );
    let rec_b = net.ended(B)[0];
    assert_eq!(rec_b.first_provisional, None);
    assert_eq!(rec_b.answer, Some(net.t0 + ms(10)));

    // Ringing at once: the 180 is the first provisional response, and the record says so.
    let net = call_without_trying(Policy::callee(Duration::ZERO, ms(500)));
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A ACK",
            "A BYE",
            "B 200/BYE"
        ]
    );
    assert_eq!(net.progress(A), [180]);
    let rec_b = net.ended(B)[0];
    assert_eq!(rec_b.first_provisional, Some(net.t0 + ms(10)));
    assert_eq!(rec_b.first_ringing, Some(net.t0 + ms(10)));
}

#[test]
fn basic_call_a_to_b() {
    let mut net = Net::with_callee(secs(1));
    net.sim.nodes[A].policy.hangup_after = Some(secs(2));
    let call = net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();

    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A ACK",
            "A BYE",
            "B 200/BYE"
        ]
    );
    assert_eq!(net.progress(A), [100, 180]);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);

    // Both ends agree on the codec and send to each other's RTP address.
    let (a, b) = (net.answered(A)[0], net.answered(B)[0]);
    assert_eq!(a.codec, Codec::Pcmu);
    assert_eq!(b.codec, Codec::Pcmu);
    assert_eq!(a.payload_type, b.payload_type);
    assert_eq!(a.telephone_event_pt, Some(101));
    assert_eq!(b.telephone_event_pt, Some(101));
    assert_eq!(a.remote_rtp, SocketAddr::new(ip(B), 50000));
    assert_eq!(b.remote_rtp, SocketAddr::new(ip(A), 40000));
    assert_eq!(a.direction, Direction::SendRecv);

    // The record: INVITE at 0, 100 and 180 back at 20 ms, 200 sent at 1.010 s and received at
    // 1.020 s, ACK at once, BYE 2 s later, its 200 one round trip after.
    let t0 = net.t0;
    let rec = net.ended(A)[0];
    assert_eq!(rec.direction, CallDirection::Outgoing);
    assert_eq!(rec.invite, t0);
    assert_eq!(rec.first_provisional, Some(t0 + ms(20)));
    assert_eq!(rec.first_ringing, Some(t0 + ms(20)));
    assert_eq!(rec.answer, Some(t0 + ms(1020)));
    assert_eq!(rec.ack, Some(t0 + ms(1020)));
    assert_eq!(rec.bye_sent, Some(t0 + ms(3020)));
    assert_eq!(rec.bye_response, Some(t0 + ms(3040)));
    assert_eq!(rec.bye_round_trip(), Some(ms(20)));
    assert_eq!(rec.setup_time(), Some(ms(1020)));
    assert_eq!(rec.post_dial_delay(), Some(ms(20)));
    assert_eq!(rec.final_code, Some(200));
    assert_eq!(rec.bye_code, Some(200));
    assert_eq!(rec.requests_retransmitted, 0);
    assert_eq!(rec.end.as_ref().unwrap().at, t0 + ms(3040));

    let rec_b = net.ended(B)[0];
    assert_eq!(rec_b.call_id, rec.call_id);
    assert_eq!(rec_b.direction, CallDirection::Incoming);
    assert_eq!(rec_b.invite, t0 + ms(10));
    assert_eq!(rec_b.first_ringing, Some(t0 + ms(10)));
    assert_eq!(rec_b.answer, Some(t0 + ms(1010)));
    assert_eq!(rec_b.ack, Some(t0 + ms(1030)));
    assert_eq!(rec_b.bye_received, Some(t0 + ms(3030)));
    assert_eq!(rec_b.responses_retransmitted, 0);

    // The messages themselves.
    let invite = net.sent(A, "INVITE")[0].message();
    assert_eq!(invite.request_uri(), Some("sip:bob@192.0.2.2:5060"));
    assert_eq!(invite.header(&Name::CONTENT_TYPE), Some("application/sdp"));
    assert_eq!(invite.header(&Name::ALLOW), Some(ALLOW));
    assert_eq!(
        invite.contact_uris(),
        ["sip:alice@192.0.2.1:5060".to_string()]
    );
    let ok = net.sent(B, "200/INVITE")[0].message();
    assert_eq!(ok.contact_uris(), ["sip:bob@192.0.2.2:5060".to_string()]);
    let ringing = net.sent(B, "180/INVITE")[0].message();
    assert_eq!(ringing.to_tag(), ok.to_tag(), "one To tag for the dialog");
    assert!(ok.to_tag().is_some());
    let ack = net.sent(A, "ACK")[0].message();
    assert_eq!(ack.request_uri(), Some("sip:bob@192.0.2.2:5060"));
    assert_eq!(ack.cseq(), invite.cseq());
    assert_ne!(
        ack.branch(),
        invite.branch(),
        "the ACK of a 2xx is a new request"
    );
    assert_eq!(ack.to_tag(), ok.to_tag());
    let bye = net.sent(A, "BYE")[0].message();
    assert_eq!(bye.cseq(), invite.cseq() + 1);
    assert_eq!(bye.call_id(), invite.call_id());
    assert_eq!(bye.from_tag(), invite.from_tag());
    assert_eq!(bye.to_tag(), ok.to_tag());

    assert!(net.ep(A).record(call).is_none(), "ended calls are removed");
    assert_eq!(net.ep(A).state(call), None);
    net.assert_empty();
}

#[test]
fn a_call_and_a_request_of_the_callers_own_parse_none_of_the_requests_sent() {
    use crate::sip::transaction::request_parses;
    let before = request_parses();
    let mut net = Net::with_callee(ms(500));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.invite(call_to_b());
    net.run_for(secs(1));
    // An OPTIONS of A's own, outside the call, while the call is up.
    let bytes = RequestSpec {
        method: "OPTIONS",
        uri: "sip:bob@192.0.2.2:5060",
        via: ViaSpec {
            transport: Transport::Udp,
            sent_by: addr(A),
            branch: "z9hG4bKownoptions",
            rport: true,
        },
        routes: &[],
        from: "<sip:alice@192.0.2.1>;tag=own1",
        to: "<sip:bob@192.0.2.2>",
        call_id: "own-options-1",
        cseq: 1,
        contact: None,
        extra: &[],
        body: None,
    }
    .to_vec();
    let now = net.now();
    let options = net
        .ep(A)
        .send_request(now, Bytes::from(bytes), addr(B))
        .unwrap();
    net.flush();
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A ACK",
            "A OPTIONS",
            "B 200/OPTIONS",
            "A BYE",
            "B 200/BYE"
        ]
    );
    assert_eq!(final_response(&net, options).status(), Some(200));
    // The INVITE, the BYE and the OPTIONS went out as written, none parsed by the
    // transaction layer (the endpoints parse what they receive, not what they send).
    assert_eq!(request_parses(), before);
}

#[test]
fn callee_hangs_up() {
    let mut net = Net::with_callee(ms(500));
    net.sim.nodes[B].policy.hangup_after = Some(secs(1));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::RemoteBye]);
    assert_eq!(net.reasons(B), [CallEndReason::LocalBye]);
    let bye = net.sent(B, "BYE")[0].message();
    let invite = net.sent(A, "INVITE")[0].message();
    // B's BYE: From is B (with its tag), To is A with A's tag, to A's Contact.
    assert_eq!(bye.request_uri(), Some("sip:alice@192.0.2.1:5060"));
    assert_eq!(bye.to_tag(), invite.from_tag());
    assert_eq!(bye.call_id(), invite.call_id());
    assert_eq!(bye.cseq(), 1);
    let rec = net.ended(B)[0];
    assert_eq!(rec.bye_round_trip(), Some(ms(20)));
    net.assert_empty();
}

#[test]
fn reject_486() {
    let parses = crate::sip::transaction::request_parses();
    let mut net = Net::new();
    net.sim.nodes[B].policy.reject = Some(486);
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    let rejected = CallEndReason::Rejected {
        code: 486,
        reason: "Busy Here".into(),
    };
    assert_eq!(rejected.to_string(), "rejected: 486 Busy Here");
    assert_eq!(net.reasons(A), [rejected]);
    assert_eq!(net.reasons(B), [CallEndReason::Declined { code: 486 }]);
    assert_eq!(net.ended(A)[0].final_code, Some(486));
    assert_eq!(
        net.trace(),
        ["A INVITE", "B 100/INVITE", "B 486/INVITE", "A ACK"]
    );
    // The INVITE was parsed once: to build that ACK.
    assert_eq!(crate::sip::transaction::request_parses() - parses, 1);
    // The ACK of a non-2xx is the transaction's: same branch as the INVITE.
    assert_eq!(
        net.sent(A, "ACK")[0].message().branch(),
        net.sent(A, "INVITE")[0].message().branch()
    );
    net.assert_empty();
}

#[test]
fn hangup_of_an_unanswered_incoming_call_sends_480() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.invite(call_to_b());
    net.run_for(ms(100));
    let call = net.incoming()[0];
    net.at(ms(200), B, Action::Hangup(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(B), [CallEndReason::Declined { code: 480 }]);
    assert!(matches!(
        net.reasons(A)[0],
        CallEndReason::Rejected { code: 480, .. }
    ));
    net.assert_empty();
}

#[test]
fn hangup_while_awaiting_the_ack_waits_for_it() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    // The first ACK is lost: B is still waiting for one when its user hangs up.
    net.rule(A, "ACK", 0, 1, Fault::Drop);
    net.run_for(ms(125));
    let call = net.incoming()[0];
    assert_eq!(net.ep(B).state(call), Some(CallState::AwaitingAck));
    net.at(ms(130), B, Action::Hangup(call));
    net.run_until_idle();
    net.assert_no_errors();
    // The BYE leaves only after the ACK of the retransmitted 2xx (RFC 3261 §15).
    let ack_in = net.sent(A, "ACK")[1].at + net.delay();
    assert_eq!(net.sent(B, "BYE")[0].at, ack_in);
    assert_eq!(net.reasons(B), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(A), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// CANCEL
// ---------------------------------------------------------------------------------------

#[test]
fn caller_cancels_while_ringing() {
    let parses = crate::sip::transaction::request_parses();
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::Cancelled]);
    assert_eq!(net.reasons(B), [CallEndReason::CancelledByRemote]);
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "A CANCEL",
            "B 200/CANCEL",
            "B 487/INVITE",
            "A ACK"
        ]
    );
    // The INVITE was parsed twice: for its CANCEL, and for the ACK of its 487.
    assert_eq!(crate::sip::transaction::request_parses() - parses, 2);
    // The CANCEL and the ACK carry the INVITE's Request-URI, Call-ID, From, CSeq number and
    // top Via (RFC 3261 §9.1, §17.1.1.3).
    let invite = net.sent(A, "INVITE")[0].message();
    for method in ["CANCEL", "ACK"] {
        let derived = net.sent(A, method)[0].message();
        assert_eq!(derived.request_uri(), invite.request_uri());
        assert_eq!(derived.call_id(), invite.call_id());
        assert_eq!(derived.header(&Name::FROM), invite.header(&Name::FROM));
        assert_eq!(derived.cseq(), invite.cseq());
        assert_eq!(derived.branch(), invite.branch());
    }
    let rec = net.ended(A)[0];
    assert_eq!(rec.final_code, Some(487));
    assert_eq!(rec.cancel, Some(net.t0 + secs(1)));
    assert!(!rec.answered_before_cancel);
    // The CANCEL's 200 carries the To tag of the INVITE's responses (§9.2).
    assert_eq!(
        net.sent(B, "200/CANCEL")[0].message().to_tag(),
        net.sent(B, "180/INVITE")[0].message().to_tag()
    );
    net.assert_empty();
}

#[test]
fn cancel_before_any_provisional_waits_for_the_first() {
    let mut net = Net::new();
    // No 100 Trying reaches A; B rings 300 ms after the INVITE.
    net.rule(B, "100/INVITE", 0, u32::MAX, Fault::Drop);
    net.sim.nodes[B].policy.ring_after = Some(ms(300));
    let call = net.invite(call_to_b());
    let now = net.now();
    net.ep(A).cancel(now, call).unwrap();
    assert_eq!(net.ep(A).state(call), Some(CallState::Calling));
    net.run_until_idle();
    net.assert_no_errors();
    // §9.1: the CANCEL leaves when the 180 arrives (sent at 310 ms, in at 320 ms).
    assert_eq!(net.sent(A, "CANCEL")[0].at, ms(320));
    assert_eq!(net.reasons(A), [CallEndReason::Cancelled]);
    assert_eq!(net.reasons(B), [CallEndReason::CancelledByRemote]);
    assert_eq!(net.ended(A)[0].cancel, Some(net.t0 + ms(320)));
    net.assert_empty();
}

#[test]
fn cancel_before_any_provisional_then_a_2xx_is_acked_and_closed() {
    let mut net = Net::with_callee(ms(50));
    net.rule(B, "100/INVITE", 0, u32::MAX, Fault::Drop);
    net.rule(B, "180/INVITE", 0, u32::MAX, Fault::Drop);
    let call = net.invite(call_to_b());
    let now = net.now();
    net.ep(A).cancel(now, call).unwrap();
    net.run_until_idle();
    net.assert_no_errors();
    assert!(net.sent(A, "CANCEL").is_empty());
    assert_eq!(net.reasons(A), [CallEndReason::Cancelled]);
    assert!(net.ended(A)[0].answered_before_cancel);
    assert!(net.answered(A).is_empty(), "the user asked to cancel");
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn a_200_crossing_the_cancel_is_acked_then_closed_with_bye() {
    let mut net = Net::with_callee(secs(1));
    let call = net.invite(call_to_b());
    // B accepts at 1.010 s; its 200 arrives at 1.020 s; A cancels at 1.015 s.
    net.at(ms(1015), A, Action::Cancel(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A CANCEL",
            "A ACK",
            "A BYE",
            "B 481/CANCEL",
            "B 200/BYE"
        ]
    );
    assert_eq!(net.reasons(A), [CallEndReason::Cancelled]);
    let rec = net.ended(A)[0];
    assert!(rec.answered_before_cancel);
    assert_eq!(rec.bye_code, Some(200));
    assert!(net.answered(A).is_empty());
    // B saw a normal call: answered, then hung up.
    assert_eq!(net.answered(B).len(), 1);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn cancel_after_the_answer_is_a_bye() {
    let mut net = Net::with_callee(ms(100));
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    assert!(net.sent(A, "CANCEL").is_empty());
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// A proxy in front of B that challenges INVITEs (every one when `always`, else those
/// without credentials) and BYEs without credentials when `bye`.
fn challenger(always: bool, bye: bool) -> Interceptor {
    Box::new(move |from, m| {
        if from != A {
            return Intercept::Pass;
        }
        let (challenge, code) = match m.method() {
            Some(&Method::INVITE) if always || m.header(&Name::AUTHORIZATION).is_none() => {
                ("WWW-Authenticate", 401)
            }
            Some(&Method::BYE) if bye && m.header(&Name::PROXY_AUTHORIZATION).is_none() => {
                ("Proxy-Authenticate", 407)
            }
            Some(&Method::ACK) if m.to_tag().as_deref() == Some("proxy") => return Intercept::Drop,
            _ => return Intercept::Pass,
        };
        let mut out = Vec::new();
        write_response(
            m,
            code,
            reason_phrase(code),
            Some("proxy"),
            &[(challenge, CHALLENGE)],
            None,
            &mut out,
        );
        Intercept::Reply(Bytes::from(out))
    })
}

#[test]
fn a_401_on_the_invite_is_answered_once() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(challenger(false, false));
    let mut call = call_to_b();
    call.credentials = Some(Credentials::new("alice", "secret"));
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.answered(A).len(), 1);
    let invites = net.sent(A, "INVITE");
    assert_eq!(invites.len(), 2);
    let (first, second) = (invites[0].message(), invites[1].message());
    assert_eq!(second.call_id(), first.call_id());
    assert_eq!(second.from_tag(), first.from_tag());
    assert_eq!(second.cseq(), first.cseq() + 1);
    assert_ne!(second.branch(), first.branch());
    let authorization = second.header(&Name::AUTHORIZATION).unwrap();
    assert!(
        authorization.contains(r#"username="alice""#),
        "{authorization}"
    );
    assert!(!authorization.contains("secret"));
    // The ACK of the 2xx carries the INVITE's credentials, and its CSeq.
    let ack = net.sent(A, "ACK").last().unwrap().message();
    assert_eq!(ack.cseq(), second.cseq());
    assert_eq!(ack.header(&Name::AUTHORIZATION), Some(authorization));
    let rec = net.ended(A)[0];
    assert_eq!(rec.auth_challenges, 1);
    assert_eq!(rec.invite, net.t0, "the call started with the first INVITE");
    net.assert_empty();
}

#[test]
fn a_second_challenge_is_auth_rejected() {
    let mut net = Net::with_callee(ms(100));
    net.intercept(challenger(true, false));
    let mut call = call_to_b();
    call.credentials = Some(Credentials::new("alice", "wrong"));
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.sent(A, "INVITE").len(), 2, "never a loop");
    assert_eq!(net.reasons(A), [CallEndReason::AuthRejected { code: 401 }]);
    assert_eq!(
        net.reasons(A)[0].to_string(),
        "credentials rejected: 401 Unauthorized"
    );
    assert_eq!(net.ended(A)[0].auth_challenges, 2);
    assert!(net.incoming().is_empty());
    net.assert_empty();
}

#[test]
fn a_challenge_without_credentials_ends_the_call() {
    let mut net = Net::with_callee(ms(100));
    net.intercept(challenger(false, false));
    net.invite(call_to_b());
    net.run_until_idle();
    assert_eq!(net.reasons(A), [CallEndReason::NoCredentials { code: 401 }]);
    net.assert_empty();
}

#[test]
fn an_answered_challenge_is_never_the_final_response_of_the_call() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.intercept(challenger(false, false));
    // The authenticated INVITE rings, is cancelled, and neither the CANCEL's 200 nor the
    // 487 ever arrives.
    net.rule(B, "200/CANCEL", 0, u32::MAX, Fault::Drop);
    net.rule(B, "487/INVITE", 0, u32::MAX, Fault::Drop);
    let mut call = call_to_b();
    call.credentials = Some(Credentials::new("alice", "secret"));
    let call = net.invite(call);
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    assert_eq!(net.sent(A, "INVITE").len(), 2);
    let rec = net.ended(A)[0];
    assert_eq!(rec.auth_challenges, 1);
    assert_eq!(rec.final_code, None, "not the 401 that was answered");
    assert!(matches!(
        rec.reason(),
        Some(CallEndReason::CancelFailed {
            cancel_code: None,
            ..
        })
    ));
}

#[test]
fn a_407_on_the_bye_is_answered_once() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(challenger(false, true));
    let mut call = call_to_b();
    call.credentials = Some(Credentials::new("alice", "secret"));
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    let byes = net.sent(A, "BYE");
    assert_eq!(byes.len(), 2);
    let second = byes[1].message();
    assert_eq!(second.cseq(), byes[0].message().cseq() + 1);
    assert!(second.header(&Name::PROXY_AUTHORIZATION).is_some());
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    let rec = net.ended(A)[0];
    assert_eq!(rec.bye_code, Some(200));
    assert_eq!(
        rec.auth_challenges, 2,
        "one for the INVITE, one for the BYE"
    );
    // The round trip counts from the first BYE: 10 ms to the 407 (the interceptor answers
    // in one hop), 20 ms for the second BYE and its 200.
    assert_eq!(rec.bye_round_trip(), Some(ms(30)));
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Media negotiation
// ---------------------------------------------------------------------------------------

#[test]
fn no_common_codec_is_refused_with_488() {
    let mut net = Net::with_callee(ms(100));
    let mut b_media = media(B);
    b_media.codecs = vec![Codec::Pcmu];
    net.sim.nodes[B].policy.media = Some(b_media);
    let mut call = call_to_b();
    call.local_media.codecs = vec![Codec::Pcma];
    net.invite(call);
    net.run_until_idle();
    assert!(matches!(
        net.sim.nodes[B].errors[..],
        [CallError::Negotiation(
            NegotiationError::NoCommonCodec { .. }
        )]
    ));
    assert_eq!(net.reasons(B), [CallEndReason::CodecRefused]);
    assert!(matches!(
        net.reasons(A)[..],
        [CallEndReason::Rejected { code: 488, .. }]
    ));
    assert_eq!(net.ended(B)[0].final_code, Some(488));
    net.assert_empty();
}

fn srtp(policy: crate::sdp::crypto::SrtpPolicy, byte: u8) -> Option<crate::sdp::crypto::LocalSrtp> {
    use crate::sdp::crypto::{LocalSrtp, MasterKey};
    LocalSrtp::new(
        policy,
        [
            MasterKey::from_bytes([byte; 30]),
            MasterKey::from_bytes([byte + 1; 30]),
        ],
    )
}

#[test]
fn srtp_required_both_ways_agrees_the_keys_crosswise() {
    use crate::sdp::crypto::SrtpPolicy::Required;
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    let mut b_media = media(B);
    b_media.srtp = srtp(Required, 3);
    net.sim.nodes[B].policy.media = Some(b_media);
    let mut call = call_to_b();
    call.local_media.srtp = srtp(Required, 1);
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    let offer = String::from_utf8_lossy(net.sent(A, "INVITE")[0].message().body()).into_owned();
    assert!(offer.contains("RTP/SAVP"), "{offer}");
    assert_eq!(offer.matches("a=crypto:").count(), 2, "{offer}");
    let answer =
        String::from_utf8_lossy(net.sent(B, "200/INVITE")[0].message().body()).into_owned();
    assert!(answer.contains("RTP/SAVP"), "{answer}");
    assert_eq!(answer.matches("a=crypto:1 ").count(), 1, "{answer}");
    let (a, b) = (net.answered(A)[0].clone(), net.answered(B)[0].clone());
    let (a, b) = (a.srtp.unwrap(), b.srtp.unwrap());
    assert_eq!(a.local, b.remote);
    assert_eq!(a.remote, b.local);
    assert_ne!(a.local.key, a.remote.key);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn srtp_required_refuses_a_plain_offer_and_srtp_off_an_savp_one_with_488() {
    use crate::sdp::crypto::{SdesError, SrtpPolicy::Required};
    for (caller, callee, why) in [
        (None, srtp(Required, 3), SdesError::PlainOffered),
        (srtp(Required, 1), None, SdesError::SrtpOffered),
    ] {
        let mut net = Net::with_callee(ms(100));
        let mut b_media = media(B);
        b_media.srtp = callee;
        net.sim.nodes[B].policy.media = Some(b_media);
        let mut call = call_to_b();
        call.local_media.srtp = caller;
        net.invite(call);
        net.run_until_idle();
        assert_eq!(net.reasons(B), [CallEndReason::SrtpRefused(why.clone())]);
        assert_eq!(
            crate::ua::script::kind_of(&net.reasons(B)[0]),
            crate::stats::outcome::FailureKind::SrtpRefused
        );
        assert!(matches!(
            net.reasons(A)[..],
            [CallEndReason::Rejected { code: 488, .. }]
        ));
        net.assert_empty();
    }
    // The offerer's side of a refused key: an answer it cannot use ends the call as SRTP's.
    let reason = CallEndReason::MediaFailed(NegotiationError::Srtp(SdesError::AnswerWithoutCrypto));
    assert_eq!(
        crate::ua::script::kind_of(&reason),
        crate::stats::outcome::FailureKind::SrtpRefused
    );
}

#[test]
fn delayed_offer_is_answered_in_the_ack() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    let mut call = call_to_b();
    call.offer = OfferPlacement::Delayed;
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    let invite = net.sent(A, "INVITE")[0].message();
    assert!(invite.body().is_empty());
    assert!(net
        .events(B)
        .any(|(_, e)| matches!(e, CallEvent::Incoming { offer: None, .. })));
    let ack = net.sent(A, "ACK")[0].message();
    assert!(SessionDescription::parse(ack.body()).is_ok());
    let (a, b) = (net.answered(A)[0], net.answered(B)[0]);
    assert_eq!(a.codec, b.codec);
    assert_eq!(a.remote_rtp, SocketAddr::new(ip(B), 50000));
    assert_eq!(b.remote_rtp, SocketAddr::new(ip(A), 40000));
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn early_media_in_a_183() {
    let mut net = Net::with_callee(secs(1));
    net.sim.nodes[B].policy.ring_after = None;
    net.sim.nodes[B].policy.early_media = true;
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.progress(A), [100, 183]);
    let early = net
        .events(A)
        .find_map(|(at, e)| match e {
            CallEvent::EarlyMedia { negotiated, .. } => Some((*at, negotiated.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(early.0, ms(20));
    assert_eq!(early.1.remote_rtp, SocketAddr::new(ip(B), 50000));
    // The 2xx repeats the 183's answer.
    let sdp183 = net.sent(B, "183/INVITE")[0].message().body().clone();
    let sdp200 = net.sent(B, "200/INVITE")[0].message().body().clone();
    assert_eq!(sdp183, sdp200);
    assert_eq!(*net.answered(A)[0], early.1);
    assert_eq!(net.ended(A)[0].first_ringing, Some(net.t0 + ms(20)));
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Losses and timeouts
// ---------------------------------------------------------------------------------------

#[test]
fn a_lost_200_is_retransmitted_until_the_ack() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.rule(B, "200/INVITE", 0, 3, Fault::Drop);
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    // §13.3.1.4: T1, then doubling: 0.5 s, 1 s, 2 s after each.
    let first = net.sent(B, "200/INVITE")[0].at;
    let offsets: Vec<Duration> = net
        .sent(B, "200/INVITE")
        .iter()
        .map(|s| s.at - first)
        .collect();
    assert_eq!(offsets, [ms(0), ms(500), ms(1500), ms(3500)]);
    assert_eq!(net.sent(A, "ACK").len(), 1);
    let rec_b = net.ended(B)[0];
    assert_eq!(rec_b.responses_retransmitted, 3);
    assert_eq!(rec_b.answer, Some(net.t0 + first));
    assert_eq!(rec_b.ack, Some(net.t0 + first + ms(3520)));
    assert_eq!(net.ended(A)[0].answer, Some(net.t0 + first + ms(3510)));
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn a_lost_ack_is_resent_for_the_retransmitted_200() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(2));
    net.rule(A, "ACK", 0, 1, Fault::Drop);
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    let acks = net.sent(A, "ACK");
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0].bytes, acks[1].bytes, "the same ACK, byte for byte");
    assert_eq!(acks[1].at - acks[0].at, ms(500));
    assert_eq!(net.ended(A)[0].duplicates_received, 1);
    assert_eq!(net.sim.nodes[A].ep.counters().acks_resent, 1);
    assert_eq!(net.ended(B)[0].responses_retransmitted, 1);
    assert_eq!(net.answered(B).len(), 1);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn an_abandoned_unacked_call_sends_nothing_more() {
    let mut net = Net::with_callee(ms(100));
    net.rule(A, "ACK", 0, u32::MAX, Fault::Drop);
    net.invite(call_to_b());
    net.run_for(ms(50));
    let source = net.events(B).find_map(|(_, e)| match e {
        CallEvent::Incoming { source, .. } => Some(*source),
        _ => None,
    });
    assert_eq!(source, Some(addr(A)), "the INVITE's source is reported");
    let call = net.incoming()[0];
    net.at(secs(2), B, Action::Abandon(call));
    net.run_for(secs(40));
    net.assert_no_errors();
    let first = net.sent(B, "200/INVITE")[0].at;
    let offsets: Vec<u64> = net
        .sent(B, "200/INVITE")
        .iter()
        .map(|s| (s.at - first).as_millis() as u64)
        .collect();
    assert_eq!(offsets, [0, 500, 1500], "no 2xx after the call was dropped");
    assert!(
        net.sent(B, "BYE").is_empty(),
        "no BYE to a peer that never ACKed"
    );
    let rec = net.ended(B)[0];
    let unconfirmed = rec.end.as_ref().unwrap().at - rec.invite;
    assert_eq!(net.t0 + secs(2), rec.end.as_ref().unwrap().at);
    assert_eq!(net.reasons(B), [CallEndReason::Dropped { unconfirmed }]);
    assert_eq!(
        net.reasons(B)[0].to_string(),
        format!(
            "dropped unconfirmed after {:.1} s (no ACK yet; its slot was needed)",
            unconfirmed.as_secs_f64()
        )
    );
    assert!(net.answered(B).is_empty());
}

#[test]
fn an_abandoned_ringing_call_is_refused_with_503() {
    let mut net = Net::with_callee(secs(10));
    net.invite(call_to_b());
    net.run_for(ms(50));
    let call = net.incoming()[0];
    net.at(secs(1), B, Action::Abandon(call));
    net.run_until_idle();
    // The answer scheduled at 10 s finds the call gone.
    assert_eq!(net.sim.nodes[B].errors, [CallError::UnknownCall(call)]);
    assert_eq!(net.sent(B, "503/INVITE").len(), 1);
    assert!(net.sent(B, "200/INVITE").is_empty());
    assert!(matches!(
        net.reasons(B)[..],
        [CallEndReason::Dropped { .. }]
    ));
    assert_eq!(net.ended(B)[0].final_code, Some(503));
}

#[test]
fn no_ack_at_all_ends_the_call_with_no_ack_and_bye() {
    let mut net = Net::with_callee(ms(100));
    net.rule(A, "ACK", 0, u32::MAX, Fault::Drop);
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    let first = net.sent(B, "200/INVITE")[0].at;
    let offsets: Vec<u64> = net
        .sent(B, "200/INVITE")
        .iter()
        .map(|s| (s.at - first).as_millis() as u64)
        .collect();
    assert_eq!(
        offsets,
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let rec_b = net.ended(B)[0];
    assert_eq!(rec_b.responses_retransmitted, 10);
    assert_eq!(
        rec_b.reason(),
        Some(&CallEndReason::NoAck { elapsed: secs(32) })
    );
    assert_eq!(
        rec_b.reason().unwrap().to_string(),
        "no ACK for the 2xx after 32.0 s (BYE sent)"
    );
    assert_eq!(rec_b.end.as_ref().unwrap().at, net.t0 + first + secs(32));
    assert_eq!(net.sent(B, "BYE")[0].at, first + secs(32));
    // A answered (it never knew its ACKs were lost), then got B's BYE.
    assert_eq!(net.answered(A).len(), 1);
    assert_eq!(net.reasons(A), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn timer_b_when_the_callee_is_silent() {
    let mut net = Net::new();
    net.rule(A, "", 0, u32::MAX, Fault::Drop);
    net.invite(call_to_b());
    net.run_until_idle();
    let reason = CallEndReason::Timeout {
        timer: Timer::B,
        elapsed: secs(32),
    };
    assert_eq!(reason.to_string(), "Timer B expired after 32.0 s");
    assert_eq!(net.reasons(A), [reason]);
    let offsets: Vec<u64> = net
        .sent(A, "INVITE")
        .iter()
        .map(|s| s.at.as_millis() as u64)
        .collect();
    assert_eq!(offsets, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(net.ended(A)[0].end.as_ref().unwrap().at, net.t0 + secs(32));
    net.assert_empty();
}

#[test]
fn cancel_without_any_final_response_gives_up_after_64_t1() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    // B's answers to the CANCEL and the 487 never arrive.
    net.rule(B, "200/CANCEL", 0, u32::MAX, Fault::Drop);
    net.rule(B, "487/INVITE", 0, u32::MAX, Fault::Drop);
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    net.assert_no_errors();
    // The cancellation is not known to have worked: a failure, not `Cancelled`.
    let reason = CallEndReason::CancelFailed {
        cancel_code: None,
        waited: Some(secs(32)),
    };
    assert_eq!(
        reason.to_string(),
        "CANCEL unanswered and no 487 within 32.0 s"
    );
    assert_eq!(net.reasons(A), [reason]);
    assert_eq!(
        net.ended(A)[0].end.as_ref().unwrap().at,
        net.t0 + secs(1) + secs(32)
    );
    assert_eq!(net.reasons(B), [CallEndReason::CancelledByRemote]);
    net.assert_empty();
}

/// A proxy in front of B that answers every CANCEL itself with `code` and never passes it
/// on (B keeps ringing).
fn cancel_refuser(code: u16) -> Interceptor {
    Box::new(move |from, m| {
        if from != A || m.method() != Some(&Method::CANCEL) {
            return Intercept::Pass;
        }
        let mut out = Vec::new();
        write_response(m, code, reason_phrase(code), None, &[], None, &mut out);
        Intercept::Reply(Bytes::from(out))
    })
}

#[test]
fn a_refused_cancel_without_a_487_fails_64_t1_after_the_cancel() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.intercept(cancel_refuser(403));
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    net.assert_no_errors();
    let reason = CallEndReason::CancelFailed {
        cancel_code: Some(403),
        waited: Some(secs(32)),
    };
    assert_eq!(
        reason.to_string(),
        "CANCEL refused: 403 Forbidden, and no final response to the INVITE within 32.0 s"
    );
    assert_eq!(net.reasons(A), [reason]);
    let rec = net.ended(A)[0];
    assert_eq!(rec.cancel_code, Some(403));
    assert_eq!(rec.end.as_ref().unwrap().at, net.t0 + secs(1) + secs(32));
    assert!(!rec.reason().unwrap().is_normal_clearing());
}

#[test]
fn a_refused_cancel_gives_up_after_64_t1_of_a_short_t1() {
    let mut net = Net::new();
    for side in [A, B] {
        let mut config = EndpointConfig::new(local(side));
        config.contact_user = ["alice", "bob"][side].to_string();
        config.timers.t1 = ms(50);
        net.sim.nodes[side].ep = Endpoint::new(config, IdGen::new(100 + side as u64));
    }
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.intercept(cancel_refuser(481));
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    assert_eq!(
        net.reasons(A),
        [CallEndReason::CancelFailed {
            cancel_code: Some(481),
            waited: Some(ms(3200)),
        }]
    );
    assert_eq!(
        net.ended(A)[0].end.as_ref().unwrap().at,
        net.t0 + secs(1) + ms(3200)
    );
}

#[test]
fn a_487_after_a_refused_cancel_still_fails_the_cancellation() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.intercept(cancel_refuser(403));
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    // B gives up on the call itself a second later: its 487 ends A's INVITE.
    net.run_for(secs(2));
    let incoming = net.incoming()[0];
    net.at(secs(2), B, Action::Reject(incoming, 487));
    net.run_until_idle();
    net.assert_no_errors();
    let reason = CallEndReason::CancelFailed {
        cancel_code: Some(403),
        waited: None,
    };
    assert_eq!(
        reason.to_string(),
        "CANCEL refused: 403 Forbidden (the INVITE got 487 nonetheless)"
    );
    assert_eq!(net.reasons(A), [reason]);
    net.assert_empty();
}

#[test]
fn an_accepted_cancel_and_its_487_is_a_clean_cancellation() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Cancel(call));
    net.run_until_idle();
    let rec = net.ended(A)[0];
    assert_eq!(rec.reason(), Some(&CallEndReason::Cancelled));
    assert_eq!(rec.cancel_code, Some(200));
    assert_eq!(rec.final_code, Some(487));
    assert_eq!(rec.bye_failure(), None);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// BYE outcomes
// ---------------------------------------------------------------------------------------

#[test]
fn a_bye_answered_481_is_a_bye_failure() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    // A proxy turns B's 200 to the BYE into a 481.
    net.intercept(Box::new(|from, m| {
        if from == B && m.status() == Some(200) && *m.cseq_method() == Method::BYE {
            let mut out = Vec::new();
            write_response(m, 481, reason_phrase(481), None, &[], None, &mut out);
            let text = String::from_utf8(out).unwrap();
            // write_response answers a request: take its status line, keep the 200's headers.
            let status = text.lines().next().unwrap().to_string();
            let original = String::from_utf8(m.raw().to_vec()).unwrap();
            let rest = original.split_once("\r\n").unwrap().1;
            return Intercept::Replace(Bytes::from(format!("{status}\r\n{rest}")));
        }
        Intercept::Pass
    }));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    let rec = net.ended(A)[0];
    assert_eq!(rec.bye_code, Some(481));
    assert_eq!(rec.bye_failure(), Some(ByeFailure::Status(481)));
    assert_eq!(
        ByeFailure::Status(481).to_string(),
        "bye_failed: 481 Call/Transaction Does Not Exist"
    );
    assert_eq!(ByeFailure::Status(481).short(), "481");
    // B answered the BYE as it should: its side is clean.
    assert_eq!(net.ended(B)[0].bye_failure(), None);
    net.assert_empty();
}

#[test]
fn a_bye_never_answered_is_a_bye_failure_by_timer_f() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.rule(B, "200/BYE", 0, u32::MAX, Fault::Drop);
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    let rec = net.ended(A)[0];
    assert_eq!(rec.bye_code, None);
    assert_eq!(rec.bye_timeout, Some(secs(32)));
    let failure = rec.bye_failure().unwrap();
    assert_eq!(failure, ByeFailure::Timeout(secs(32)));
    assert_eq!(
        failure.to_string(),
        "bye_failed: timeout (Timer F expired after 32.0 s)"
    );
    assert_eq!(failure.short(), "timeout");
    net.assert_empty();
}

#[test]
fn a_bye_answered_200_is_no_failure() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.invite(call_to_b());
    net.run_until_idle();
    let rec = net.ended(A)[0];
    assert_eq!(rec.bye_code, Some(200));
    assert_eq!(rec.bye_failure(), None);
    net.assert_empty();
}

#[test]
fn crossing_byes_are_no_failure_whatever_ours_gets() {
    let mut net = Net::with_callee(ms(100));
    // Both hang up at the same instant, and A's BYE is never answered: B's BYE told A the
    // dialog is over, so that is no failure of A's.
    net.rule(B, "200/BYE", 0, u32::MAX, Fault::Drop);
    let call = net.invite(call_to_b());
    net.run_for(ms(500));
    let incoming = net.incoming()[0];
    net.at(secs(1), A, Action::Hangup(call));
    net.at(secs(1), B, Action::Hangup(incoming));
    net.run_until_idle();
    assert_eq!(net.ended(A)[0].bye_timeout, Some(secs(32)));
    assert!(net.ended(A)[0].bye_received.is_some());
    net.assert_no_errors();
    for side in [A, B] {
        for rec in net.ended(side) {
            assert_eq!(rec.bye_failure(), None, "{rec:?}");
        }
    }
    net.assert_empty();
}

#[test]
fn late_180_after_the_200_is_ignored() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    // Kamailio's workers may forward the 180 after the 200 (PEERS.md).
    net.rule(B, "180/INVITE", 0, 1, Fault::Delay(ms(500)));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.progress(A), [100]);
    assert_eq!(net.answered(A).len(), 1);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    assert_eq!(net.ep(A).transactions().counters().stray_responses, 1);
    net.assert_empty();
}

#[test]
fn a_retransmitted_invite_after_the_200_is_absorbed() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(2));
    // No provisional reaches A, so it retransmits the INVITE at 500 ms, after B's 200 ended
    // B's server transaction; and that 200 is lost too.
    net.rule(B, "100/INVITE", 0, u32::MAX, Fault::Drop);
    net.rule(B, "180/INVITE", 0, u32::MAX, Fault::Drop);
    net.rule(B, "200/INVITE", 0, 1, Fault::Drop);
    net.rule(B, "200/INVITE", 1, 1, Fault::Delay(ms(200)));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.sent(A, "INVITE").len(), 2);
    assert_eq!(net.incoming().len(), 1, "one call, not two");
    assert_eq!(net.sim.nodes[B].ep.counters().invite_retransmissions, 1);
    assert_eq!(net.answered(A).len(), 1);
    assert_eq!(net.ended(A)[0].requests_retransmitted, 1);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn a_2xx_from_a_second_fork_is_acked_and_released() {
    let mut net = Net::with_callee(ms(100));
    let fork: SocketAddr = "192.0.2.9:5060".parse().unwrap();
    // The second branch's address; it stands for B here (which knows no such dialog).
    net.alias(fork, Alias::Of(B));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    // A forking proxy: a second branch answers too, with its own To tag and Contact.
    net.intercept(Box::new(|from, m| {
        if from == B && m.status() == Some(200) && m.cseq_method() == &Method::INVITE {
            let tag = m.to_tag().unwrap();
            let raw = String::from_utf8_lossy(m.raw())
                .replace(&format!("tag={tag}"), "tag=fork2")
                .replace("sip:bob@192.0.2.2:5060", "sip:bob@192.0.2.9:5060");
            return Intercept::PassAnd(Bytes::from(raw), ms(1));
        }
        Intercept::Pass
    }));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.answered(A).len(), 1, "one call, the first 2xx's");
    assert_eq!(net.sim.nodes[A].ep.counters().forks_released, 1);
    let acks = net.sent(A, "ACK");
    assert_eq!(acks.len(), 2);
    let fork_ack = acks[1].message();
    assert_eq!(fork_ack.to_tag().as_deref(), Some("fork2"));
    assert_eq!(fork_ack.request_uri(), Some("sip:bob@192.0.2.9:5060"));
    let byes = net.sent(A, "BYE");
    assert_eq!(byes.len(), 2, "one for the fork, one at hang-up");
    assert_eq!(byes[0].message().to_tag().as_deref(), Some("fork2"));
    // Each dialog's requests go to its own Contact.
    assert_eq!(destinations(&net, A, "ACK"), [addr(B), fork]);
    assert_eq!(destinations(&net, A, "BYE"), [fork, addr(B)]);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// re-INVITE
// ---------------------------------------------------------------------------------------

#[test]
fn a_session_refresh_from_the_caller_gets_the_callees_first_answer_again() {
    let mut net = Net::with_callee(ms(100));
    let call_a = net.invite(call_to_b());
    net.run_for(secs(1));
    // The same offer again (RFC 3264 §8): B compares it with the offer it answered.
    net.at(secs(2), A, Action::Reinvite(call_a, media(A)));
    net.at(secs(3), A, Action::Hangup(call_a));
    net.run_until_idle();
    net.assert_no_errors();
    let answers: Vec<SessionDescription> = net
        .sent(B, "200/INVITE")
        .iter()
        .map(|s| SessionDescription::parse(s.message().body()).unwrap())
        .collect();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[1], answers[0], "the refresh gets the same answer");
    assert!(net.updates(B).is_empty(), "and changes nothing at B");
}

#[test]
fn reinvite_hold_and_unhold_from_b() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let call_b = net.incoming()[0];
    let mut hold = media(B);
    hold.direction = Direction::SendOnly;
    net.at(secs(2), B, Action::Reinvite(call_b, hold));
    net.at(secs(4), B, Action::Reinvite(call_b, media(B)));
    // A session refresh: the same offer again.
    net.at(secs(6), B, Action::Reinvite(call_b, media(B)));
    net.at(secs(8), B, Action::Hangup(call_b));
    net.run_until_idle();
    net.assert_no_errors();

    let a = net.updates(A);
    assert_eq!(a.len(), 2, "the refresh changes nothing at A");
    assert_eq!(a[0].direction, Direction::RecvOnly);
    assert!(a[0].remote_hold);
    assert_eq!(a[1].direction, Direction::SendRecv);
    assert!(!a[1].remote_hold);
    let b = net.updates(B);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].direction, Direction::SendOnly);
    assert_eq!(b[1].direction, Direction::SendRecv);
    assert_eq!(b[2].direction, Direction::SendRecv);

    // A's answers: recvonly, then sendrecv, each with a new o= version; the refresh gets the
    // same answer again.
    let answers: Vec<SessionDescription> = net
        .sent(A, "200/INVITE")
        .iter()
        .map(|s| SessionDescription::parse(s.message().body()).unwrap())
        .collect();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0].media[0].direction, Some(Direction::RecvOnly));
    assert_eq!(answers[1].media[0].direction, Some(Direction::SendRecv));
    assert_eq!(answers[1].origin.version, answers[0].origin.version + 1);
    assert_eq!(answers[2], answers[1]);
    let offers: Vec<SessionDescription> = net
        .sent(B, "INVITE")
        .iter()
        .map(|s| SessionDescription::parse(s.message().body()).unwrap())
        .collect();
    assert_eq!(offers[0].media[0].direction, Some(Direction::SendOnly));
    assert_eq!(offers[2].origin.version, offers[1].origin.version);

    // Each re-INVITE is ACKed; B's CSeq counts up from 1.
    let cseqs: Vec<u32> = net
        .sent(B, "INVITE")
        .iter()
        .map(|s| s.message().cseq())
        .collect();
    assert_eq!(cseqs, [1, 2, 3]);
    assert_eq!(net.sent(B, "ACK").len(), 3);
    assert_eq!(net.sent(B, "BYE")[0].message().cseq(), 4);
    assert_eq!(net.reasons(A), [CallEndReason::RemoteBye]);
    assert_eq!(net.reasons(B), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn reinvites_crossing_get_491_and_are_sent_again_after_the_rfc_waits() {
    let mut net = Net::with_callee(ms(100));
    let call_a = net.invite(call_to_b());
    net.run_for(secs(1));
    let call_b = net.incoming()[0];
    // Both ends put the other on hold at the same instant: the re-INVITEs cross.
    let mut hold_a = media(A);
    hold_a.direction = Direction::SendOnly;
    let mut hold_b = media(B);
    hold_b.direction = Direction::SendOnly;
    net.at(secs(2), A, Action::Reinvite(call_a, hold_a));
    net.at(secs(2), B, Action::Reinvite(call_b, hold_b));
    net.at(secs(10), A, Action::Hangup(call_a));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.sent(A, "491/INVITE").len(), 1, "{:#?}", net.trace());
    assert_eq!(net.sent(B, "491/INVITE").len(), 1, "{:#?}", net.trace());
    // RFC 3261 §14.1: the callee (not the Call-ID's owner) tries again within 2 s, the caller
    // after 2.1 to 4 s.
    let again = |side: usize| net.sent(side, "INVITE").last().unwrap().at;
    let b = again(B);
    assert!(b > secs(2) && b <= secs(2) + ms(2100), "B at {b:?}");
    let a = again(A);
    assert!(
        a >= secs(2) + ms(2100) && a <= secs(2) + ms(4100),
        "A at {a:?}"
    );
    // No re-INVITE failed for good: each side's hold went through.
    for side in [A, B] {
        assert!(
            !net.events(side)
                .any(|(_, e)| matches!(e, CallEvent::UpdateFailed { .. })),
            "{}",
            NAMES[side]
        );
    }
    assert_eq!(net.updates(A).len(), 2);
    assert_eq!(net.updates(B).len(), 2);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn a_refused_reinvite_keeps_the_call() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(3));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let call_b = net.incoming()[0];
    // B offers PCMA only, and a proxy turns it into G.722, which A does not know.
    let mut pcma = media(B);
    pcma.codecs = vec![Codec::Pcma];
    net.intercept(Box::new(|from, m| {
        if from == B && m.method() == Some(&Method::INVITE) {
            let raw = String::from_utf8_lossy(m.raw())
                .replace("RTP/AVP 8 101", "RTP/AVP 9 101")
                .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:9 G722/8000");
            return Intercept::Replace(Bytes::from(raw));
        }
        Intercept::Pass
    }));
    let now = net.now();
    net.ep(B).reinvite(now, call_b, pcma).unwrap();
    net.run_until_idle();
    net.assert_no_errors();
    assert!(net
        .events(B)
        .any(|(_, e)| matches!(e, CallEvent::UpdateFailed { code: 488, .. })));
    assert!(net.updates(A).is_empty());
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

/// Send a request in A's dialog as the user's own transaction (built from A's ACK): the far
/// end sees a request of A's, with CSeq `cseq`.
fn request_in_a_dialog(
    net: &mut Net,
    method: &str,
    cseq: u32,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TxId {
    let ack = net.sent(A, "ACK")[0].message();
    let from = ack.header(&Name::FROM).unwrap().to_string();
    let to = ack.header(&Name::TO).unwrap().to_string();
    let branch = format!("z9hG4bKown{method}{cseq}");
    let bytes = RequestSpec {
        method,
        uri: ack.request_uri().unwrap(),
        via: ViaSpec {
            transport: Transport::Udp,
            sent_by: addr(A),
            branch: &branch,
            rport: true,
        },
        routes: &[],
        from: &from,
        to: &to,
        call_id: ack.call_id(),
        cseq,
        contact: Some("<sip:alice@192.0.2.1:5060>"),
        extra,
        body: body.map(|b| ("application/sdp", b)),
    }
    .to_vec();
    let now = net.now();
    let tx = net
        .ep(A)
        .send_request(now, Bytes::from(bytes), addr(B))
        .unwrap();
    net.flush();
    tx
}

/// The final response to a transaction of A's own.
fn final_response(net: &Net, tx: TxId) -> Message {
    net.events(A)
        .find_map(|(_, e)| match e {
            CallEvent::Transaction(TransactionEvent::Response { tx: t, message })
                if *t == tx && message.status().is_some_and(|c| c >= 200) =>
            {
                Some(message.clone())
            }
            _ => None,
        })
        .expect("a final response")
}

/// A's offer in its INVITE, turned `direction` with the o= version bumped by `bump`.
fn a_offer(net: &Net, direction: Direction, bump: u64) -> Vec<u8> {
    let mut offer = SessionDescription::parse(net.sent(A, "INVITE")[0].message().body()).unwrap();
    offer.media[0].direction = Some(direction);
    offer.direction = None;
    offer.origin.version += bump;
    offer.to_bytes()
}

#[test]
fn update_refreshes_the_session_and_puts_the_call_on_hold_and_off() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let call_b = net.incoming()[0];

    // A session refresh by UPDATE (RFC 4028): B says the same Session-Expires, A refreshing.
    let timer = [
        ("Session-Expires", "90;refresher=uac"),
        ("Supported", "timer"),
    ];
    let refresh = request_in_a_dialog(&mut net, "UPDATE", 10, &timer, None);
    net.run_for(secs(1));
    let ok = final_response(&net, refresh);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header(&Name::SESSION_EXPIRES), Some("90;refresher=uac"));
    assert_eq!(header_values(&ok, &Name::REQUIRE), ["timer"]);
    assert!(ok.body().is_empty(), "no offer, no answer");
    assert!(net.updates(B).is_empty());

    // Hold by UPDATE with a=sendonly: answered recvonly in the 200, no ACK.
    let hold = a_offer(&net, Direction::SendOnly, 1);
    let tx = request_in_a_dialog(&mut net, "UPDATE", 11, &[], Some(&hold));
    net.run_for(secs(1));
    let ok = final_response(&net, tx);
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header(&Name::SESSION_EXPIRES).is_none(), "none asked");
    let answer = SessionDescription::parse(ok.body()).unwrap();
    assert_eq!(answer.media[0].direction, Some(Direction::RecvOnly));
    let b = net.updates(B);
    assert_eq!(b.len(), 1);
    assert!(b[0].remote_hold);
    assert_eq!(b[0].direction, Direction::RecvOnly);

    // Resume: sendrecv again.
    let resume = a_offer(&net, Direction::SendRecv, 2);
    let tx = request_in_a_dialog(&mut net, "UPDATE", 12, &[], Some(&resume));
    net.run_for(secs(1));
    let answer = SessionDescription::parse(final_response(&net, tx).body()).unwrap();
    assert_eq!(answer.media[0].direction, Some(Direction::SendRecv));
    let b = net.updates(B);
    assert_eq!(b.len(), 2);
    assert!(!b[1].remote_hold);
    assert_eq!(b[1].direction, Direction::SendRecv);
    assert_eq!(net.ep(B).state(call_b), Some(CallState::Confirmed));
    assert!(net.sent(A, "ACK").len() == 1, "UPDATE is not ACKed");

    net.at(secs(5), B, Action::Hangup(call_b));
    net.run_until_idle();
    net.assert_no_errors();
    net.assert_empty();
}

#[test]
fn a_reinvite_with_session_expires_gets_it_back_and_a_hold_is_answered_recvonly() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    let call_b = net.incoming()[0];
    // RFC 3264 §8.4: B answers a sendonly offer recvonly; RFC 4028: with the timer asked.
    let hold = a_offer(&net, Direction::SendOnly, 1);
    let timer = [("Session-Expires", "1800"), ("Supported", "timer")];
    let tx = request_in_a_dialog(&mut net, "INVITE", 10, &timer, Some(&hold));
    net.run_for(secs(1));
    let ok = final_response(&net, tx);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header(&Name::SESSION_EXPIRES),
        Some("1800;refresher=uac")
    );
    assert_eq!(header_values(&ok, &Name::REQUIRE), ["timer"]);
    assert!(header_values(&ok, &Name::ALLOW)
        .iter()
        .any(|m| m == "UPDATE"));
    let answer = SessionDescription::parse(ok.body()).unwrap();
    assert_eq!(answer.media[0].direction, Some(Direction::RecvOnly));
    assert!(net.updates(B)[0].remote_hold);
    // Without Supported: timer, no Session-Expires comes back (B would have to refresh).
    let unsupported = [("Session-Expires", "1800")];
    let tx = request_in_a_dialog(&mut net, "UPDATE", 11, &unsupported, None);
    net.run_for(secs(1));
    let ok = final_response(&net, tx);
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header(&Name::SESSION_EXPIRES).is_none());
    assert!(ok.header(&Name::REQUIRE).is_none());
    net.at(secs(5), B, Action::Hangup(call_b));
    net.run_until_idle();
    net.assert_no_errors();
}

#[test]
fn an_invite_asking_the_callee_to_refresh_gets_refreshes_every_half_interval() {
    let mut net = Net::with_callee(ms(100));
    let mut call = call_to_b();
    call.extra_headers = vec![
        ("Session-Expires".into(), "90;refresher=uas".into()),
        ("Supported".into(), "timer".into()),
        ("Require".into(), "timer".into()),
    ];
    let call_a = net.invite(call);
    net.at(secs(100), A, Action::Hangup(call_a));
    net.run_until_idle();
    net.assert_no_errors();
    let ok = net.sent(B, "200/INVITE")[0].message();
    assert_eq!(ok.header(&Name::SESSION_EXPIRES), Some("90;refresher=uas"));
    assert_eq!(header_values(&ok, &Name::REQUIRE), ["timer"]);
    // B refreshes at 45 s and 90 s after its answer, with its description unchanged.
    let refreshes = net.sent(B, "INVITE");
    assert_eq!(refreshes.len(), 2, "{:#?}", net.trace());
    for (i, r) in refreshes.iter().enumerate() {
        let at = r.at.as_secs_f64();
        let due = 45.0 * (i + 1) as f64;
        assert!((due..due + 0.5).contains(&at), "refresh {i} at {at} s");
        let m = r.message();
        assert_eq!(m.header(&Name::SESSION_EXPIRES), Some("90;refresher=uac"));
        assert_eq!(header_values(&m, &Name::SUPPORTED), ["timer"]);
    }
    let first = SessionDescription::parse(net.sent(B, "200/INVITE")[0].message().body()).unwrap();
    let again = SessionDescription::parse(refreshes[0].message().body()).unwrap();
    assert!(again.is_unchanged_from(&first));
    assert!(net.updates(A).is_empty() && net.updates(B).is_empty());
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn a_2xx_naming_the_caller_refresher_makes_it_refresh() {
    let mut net = Net::with_callee(ms(100));
    // The callee's 200 asks the caller to refresh, as a refresh-capable PBX may.
    net.intercept(Box::new(|from, m| {
        if from == B && m.status() == Some(200) && *m.cseq_method() == Method::INVITE {
            let raw = String::from_utf8_lossy(m.raw()).replacen(
                "\r\nContent-Type",
                "\r\nSession-Expires: 120;refresher=uac\r\nRequire: timer\r\nContent-Type",
                1,
            );
            return Intercept::Replace(Bytes::from(raw));
        }
        Intercept::Pass
    }));
    let call_a = net.invite(call_to_b());
    net.at(secs(130), A, Action::Hangup(call_a));
    net.run_until_idle();
    net.assert_no_errors();
    let refreshes = net.sent(A, "INVITE");
    assert_eq!(
        refreshes.len(),
        3,
        "the INVITE and two refreshes: {:#?}",
        net.trace()
    );
    let at: Vec<u64> = refreshes.iter().map(|r| r.at.as_secs()).collect();
    assert_eq!(at, [0, 60, 120]);
    assert_eq!(net.sent(B, "200/INVITE").len(), 3);
    assert!(net.updates(A).is_empty() && net.updates(B).is_empty());
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------

/// A proxy pair on the path that record-routes: p1 next to A, p2 next to B, so the INVITE
/// reaching B lists p2 first (each proxy adds its Record-Route on top).
fn record_router(routes: &'static str) -> Interceptor {
    Box::new(move |from, m| {
        if from == A && m.method() == Some(&Method::INVITE) && m.to_tag().is_none() {
            let raw = m.raw();
            let end = raw.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            let mut out = raw[..end].to_vec();
            out.extend_from_slice(routes.as_bytes());
            out.extend_from_slice(&raw[end..]);
            return Intercept::Replace(Bytes::from(out));
        }
        Intercept::Pass
    })
}

#[test]
fn record_route_gives_the_route_headers_of_ack_and_bye() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(record_router(
        "Record-Route: <sip:p2.example.test;lr>\r\nRecord-Route: <sip:p1.example.test;lr>\r\n",
    ));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    let ok = net.sent(B, "200/INVITE")[0].message();
    assert_eq!(
        header_values(&ok, &Name::RECORD_ROUTE),
        ["<sip:p2.example.test;lr>", "<sip:p1.example.test;lr>"],
        "the UAS copies Record-Route into its 2xx"
    );
    let ringing = net.sent(B, "180/INVITE")[0].message();
    assert_eq!(header_values(&ringing, &Name::RECORD_ROUTE).len(), 2);
    // The UAC's route set is the Record-Route reversed: p1 first.
    for method in ["ACK", "BYE"] {
        let m = net.sent(A, method)[0].message();
        assert_eq!(
            header_values(&m, &Name::ROUTE),
            ["<sip:p1.example.test;lr>", "<sip:p2.example.test;lr>"],
            "{method}"
        );
        assert_eq!(m.request_uri(), Some("sip:bob@192.0.2.2:5060"), "{method}");
    }
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn record_route_at_the_callee_is_kept_in_order() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[B].policy.hangup_after = Some(secs(1));
    net.intercept(record_router(
        "Record-Route: <sip:p2.example.test;lr>, <sip:p1.example.test;lr>\r\n",
    ));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    let bye = net.sent(B, "BYE")[0].message();
    assert_eq!(
        header_values(&bye, &Name::ROUTE),
        ["<sip:p2.example.test;lr>", "<sip:p1.example.test;lr>"]
    );
    assert_eq!(bye.request_uri(), Some("sip:alice@192.0.2.1:5060"));
    net.assert_empty();
}

#[test]
fn a_strict_router_gets_the_request_uri() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(record_router(
        "Record-Route: <sip:p2.example.test;lr>\r\nRecord-Route: <sip:strict.example.test>\r\n",
    ));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    // RFC 3261 §12.2.1.1: the strict router's URI becomes the Request-URI, the remote target
    // the last Route.
    let bye = net.sent(A, "BYE")[0].message();
    assert_eq!(bye.request_uri(), Some("sip:strict.example.test"));
    assert_eq!(
        header_values(&bye, &Name::ROUTE),
        ["<sip:p2.example.test;lr>", "<sip:bob@192.0.2.2:5060>"]
    );
    net.assert_empty();
}

/// A proxy on the link, between A and B.
const PROXY: &str = "192.0.2.50:5060";

fn proxy() -> SocketAddr {
    PROXY.parse().unwrap()
}

/// Where `from`'s requests of `label` went, in order.
fn destinations(net: &Net, from: usize, label: &str) -> Vec<SocketAddr> {
    net.sent(from, label).iter().map(|s| s.to).collect()
}

#[test]
fn without_record_route_in_dialog_requests_go_to_the_contact_not_the_proxy() {
    // A proxy that does not record-route (RFC 3261 §16.6 leaves it out of the dialog): the
    // INVITE goes through it, every later request straight to the far end's Contact.
    let mut net = Net::with_callee(ms(100));
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[A].policy.hangup_after = Some(secs(2));
    let mut call = call_to_b();
    call.destination = proxy();
    let id = net.invite(call);
    net.at(secs(1), A, Action::Reinvite(id, media(A)));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "INVITE"), [proxy(), addr(B)]);
    assert_eq!(destinations(&net, A, "ACK"), [addr(B), addr(B)]);
    assert_eq!(destinations(&net, A, "BYE"), [addr(B)]);
    // B answered the INVITE where it came from (the proxy), the rest to A.
    assert_eq!(destinations(&net, B, "200/INVITE")[0], proxy());
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn the_callee_s_bye_goes_to_the_caller_s_contact() {
    let mut net = Net::with_callee(ms(100));
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[B].policy.hangup_after = Some(secs(1));
    let mut call = call_to_b();
    call.destination = proxy();
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    // B saw the INVITE come from the proxy; its BYE goes to A's Contact all the same.
    assert_eq!(destinations(&net, B, "BYE"), [addr(A)]);
    assert_eq!(destinations(&net, A, "200/BYE"), [addr(B)]);
    assert_eq!(net.reasons(B), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(A), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn a_2xx_contact_elsewhere_gets_the_ack_and_bye_and_the_cancel_and_non_2xx_ack_do_not() {
    // The callee's 200 names another address (SIPp's uas with a Contact of another
    // instance): ACK and BYE go there.
    let elsewhere: SocketAddr = "192.0.2.22:5070".parse().unwrap();
    let mut net = Net::with_callee(ms(100));
    net.alias(elsewhere, Alias::Of(B));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(Box::new(|from, m| {
        if from == B && m.status() == Some(200) && *m.cseq_method() == Method::INVITE {
            let text = String::from_utf8(m.raw().to_vec()).unwrap();
            let text = text.replace(
                "Contact: <sip:bob@192.0.2.2:5060>",
                "Contact: <sip:bob@192.0.2.22:5070>",
            );
            return Intercept::Replace(Bytes::from(text));
        }
        Intercept::Pass
    }));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "ACK"), [elsewhere]);
    assert_eq!(destinations(&net, A, "BYE"), [elsewhere]);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);

    // A CANCEL goes where its INVITE went (§9.1), and so does the ACK of the 487
    // (§17.1.1.3), whatever the Contact of the 180 says.
    let mut net = Net::new();
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    let mut call = call_to_b();
    call.destination = proxy();
    let id = net.invite(call);
    net.at(ms(500), A, Action::Cancel(id));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "CANCEL"), [proxy()]);
    assert_eq!(destinations(&net, A, "ACK"), [proxy()]);
    assert_eq!(net.reasons(A), [CallEndReason::Cancelled]);
    net.assert_empty();
}

#[test]
fn a_loose_router_in_the_route_set_is_the_next_hop() {
    // The INVITE goes straight to B; a Record-Route naming the proxy (an IP literal) makes
    // it the next hop of every later request, either way.
    let mut net = Net::with_callee(ms(100));
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(record_router("Record-Route: <sip:192.0.2.50;lr>\r\n"));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "INVITE"), [addr(B)]);
    assert_eq!(destinations(&net, A, "ACK"), [proxy()]);
    assert_eq!(destinations(&net, A, "BYE"), [proxy()]);
    let bye = net.sent(A, "BYE")[0].message();
    assert_eq!(bye.request_uri(), Some("sip:bob@192.0.2.2:5060"));
    assert_eq!(header_values(&bye, &Name::ROUTE), ["<sip:192.0.2.50;lr>"]);
    net.assert_empty();

    // The callee's BYE too.
    let mut net = Net::with_callee(ms(100));
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[B].policy.hangup_after = Some(secs(1));
    net.intercept(record_router("Record-Route: <sip:192.0.2.50:5060;lr>\r\n"));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, B, "BYE"), [proxy()]);
    assert_eq!(net.reasons(B), [CallEndReason::LocalBye]);
    net.assert_empty();
}

#[test]
fn a_strict_router_first_is_the_next_hop_not_the_loose_one_behind_it() {
    let strict: SocketAddr = "192.0.2.51:5070".parse().unwrap();
    let mut net = Net::with_callee(ms(100));
    net.alias(strict, Alias::Proxy);
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    // Reversed by A: the strict router first, the loose one (the proxy) second.
    net.intercept(record_router(
        "Record-Route: <sip:192.0.2.50;lr>\r\nRecord-Route: <sip:192.0.2.51:5070>\r\n",
    ));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "ACK"), [strict]);
    assert_eq!(destinations(&net, A, "BYE"), [strict]);
    let bye = net.sent(A, "BYE")[0].message();
    assert_eq!(bye.request_uri(), Some("sip:192.0.2.51:5070"));
    net.assert_empty();
}

#[test]
fn a_route_set_of_names_falls_back_to_the_peer() {
    // The core resolves no name: with a route of host names, requests go to the INVITE's
    // destination, as before.
    let mut net = Net::with_callee(ms(100));
    net.alias(proxy(), Alias::Proxy);
    net.sim.nodes[B].policy.hangup_after = Some(secs(1));
    net.intercept(record_router("Record-Route: <sip:p1.example.test;lr>\r\n"));
    let mut call = call_to_b();
    call.destination = proxy();
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(destinations(&net, A, "ACK"), [proxy()]);
    assert_eq!(destinations(&net, B, "BYE"), [proxy()]);
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Requests outside calls
// ---------------------------------------------------------------------------------------

fn out_of_dialog(method: &str, branch: &str, to_tag: Option<&str>) -> Bytes {
    let to = match to_tag {
        Some(tag) => format!("<sip:bob@example.test>;tag={tag}"),
        None => "<sip:bob@example.test>".to_string(),
    };
    Bytes::from(
        RequestSpec {
            method,
            uri: "sip:bob@192.0.2.2:5060",
            via: ViaSpec {
                transport: Transport::Udp,
                sent_by: addr(A),
                branch,
                rport: true,
            },
            routes: &[],
            from: "<sip:alice@example.test>;tag=probe",
            to: &to,
            call_id: &format!("probe-{branch}"),
            cseq: 1,
            contact: None,
            extra: &[],
            body: None,
        }
        .to_vec(),
    )
}

#[test]
fn requests_outside_calls_are_answered() {
    let mut net = Net::new();
    let now = net.now();
    let cases = [
        ("OPTIONS", None, 200),
        ("BYE", Some("nope"), 481),
        ("INFO", Some("nope"), 481),
        ("SUBSCRIBE", None, 405),
        ("FOO", None, 501),
        // Methods are case-sensitive (RFC 3261 §7.1): neither INFO nor INVITE.
        ("INFORM", None, 501),
        ("invite", None, 501),
    ];
    let mut txs = Vec::new();
    for (i, (method, tag, _)) in cases.iter().enumerate() {
        let branch = format!("z9hG4bKprobe{i}");
        let request = out_of_dialog(method, &branch, *tag);
        txs.push(net.ep(A).send_request(now, request, addr(B)).unwrap());
    }
    net.run_until_idle();
    net.assert_no_errors();
    for (tx, (method, _, code)) in txs.iter().zip(cases) {
        let response = net
            .events(A)
            .find_map(|(_, e)| match e {
                CallEvent::Transaction(TransactionEvent::Response { tx: t, message })
                    if t == tx =>
                {
                    Some(message.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no response to {method}"));
        assert_eq!(response.status(), Some(code), "{method}");
        assert!(response.to_tag().is_some(), "{method}: To tag added");
        if code == 200 || code == 405 {
            assert_eq!(response.header(&Name::ALLOW), Some(ALLOW), "{method}");
        }
        if code == 200 {
            assert_eq!(response.header(&Name::ACCEPT), Some(ACCEPT));
        }
        assert!(net.events(A).any(|(_, e)| matches!(
            e,
            CallEvent::Transaction(TransactionEvent::Terminated { tx: t }) if t == tx
        )));
    }
    let counters = *net.sim.nodes[B].ep.counters();
    assert_eq!(counters.options_answered, 1);
    assert_eq!(counters.no_dialog, 2);
    assert_eq!(counters.method_refused, 4);
    net.assert_empty();
}

#[test]
fn in_dialog_info_and_options_get_200() {
    let mut net = Net::with_callee(ms(100));
    net.invite(call_to_b());
    net.run_for(secs(1));
    // Send INFO and OPTIONS in A's dialog, built from A's ACK.
    let ack = net.sent(A, "ACK")[0].message();
    let from = ack.header(&Name::FROM).unwrap().to_string();
    let to = ack.header(&Name::TO).unwrap().to_string();
    let now = net.now();
    let mut txs = Vec::new();
    for (i, method) in ["INFO", "OPTIONS", "UPDATE"].into_iter().enumerate() {
        let branch = format!("z9hG4bKindialog{i}");
        let bytes = RequestSpec {
            method,
            uri: ack.request_uri().unwrap(),
            via: ViaSpec {
                transport: Transport::Udp,
                sent_by: addr(A),
                branch: &branch,
                rport: true,
            },
            routes: &[],
            from: &from,
            to: &to,
            call_id: ack.call_id(),
            cseq: 10 + i as u32,
            contact: None,
            extra: &[],
            body: None,
        }
        .to_vec();
        txs.push(
            net.ep(A)
                .send_request(now, Bytes::from(bytes), addr(B))
                .unwrap(),
        );
    }
    net.run_for(secs(1));
    let codes: Vec<u16> = txs
        .iter()
        .map(|tx| {
            net.events(A)
                .find_map(|(_, e)| match e {
                    CallEvent::Transaction(TransactionEvent::Response { tx: t, message })
                        if t == tx =>
                    {
                        message.status()
                    }
                    _ => None,
                })
                .unwrap()
        })
        .collect();
    // UPDATE (RFC 3311) without a body: a session refresh, answered 200.
    assert_eq!(codes, [200, 200, 200]);
    let call_b = net.incoming()[0];
    assert_eq!(net.ep(B).state(call_b), Some(CallState::Confirmed));
    net.at(secs(3), B, Action::Hangup(call_b));
    net.run_until_idle();
    net.assert_no_errors();
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------------------

#[test]
fn memory_is_bounded_after_many_calls() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(ms(200));
    for i in 0..100 {
        net.at(ms(50 * i), A, Action::Invite(Box::new(call_to_b())));
    }
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A).len(), 100);
    assert!(net.reasons(A).iter().all(|r| *r == CallEndReason::LocalBye));
    assert!(net
        .reasons(B)
        .iter()
        .all(|r| *r == CallEndReason::RemoteBye));
    net.assert_empty();
    // Slots are reused: no more than the calls alive at once.
    for side in [A, B] {
        let slots = net.sim.nodes[side].ep.footprint().4;
        assert!(slots <= 10, "{} slots", slots);
    }
}

#[test]
fn five_percent_loss_over_200_calls_every_call_completes() {
    let mut net = Net::with_callee(ms(200));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.random_loss(50_000, 20240611);
    for i in 0..200 {
        net.at(ms(100 * i), A, Action::Invite(Box::new(call_to_b())));
    }
    net.run_until_idle();
    net.assert_no_errors();
    let lost = net.log().iter().filter(|s| s.dropped).count();
    assert!(lost > 50, "only {lost} datagrams lost");
    assert_eq!(net.answered(A).len(), 200);
    assert_eq!(net.reasons(A).len(), 200);
    assert!(
        net.reasons(A).iter().all(|r| *r == CallEndReason::LocalBye),
        "{:?}",
        net.reasons(A)
    );
    assert_eq!(net.reasons(B).len(), 200);
    assert!(
        net.reasons(B)
            .iter()
            .all(|r| *r == CallEndReason::RemoteBye),
        "{:?}",
        net.reasons(B)
    );
    net.assert_empty();
}

/// The callee's rule for [`a_thousand_calls_over_five_percent_loss_end_as_the_callee_s_rule_says`]:
/// `sip:bob<n>@…` is refused with 486 when `n` is 3 modulo 4.
fn busy_every_fourth(request_uri: &str) -> Option<u16> {
    let n: u32 = request_uri
        .strip_prefix("sip:bob")?
        .split('@')
        .next()?
        .parse()
        .ok()?;
    (n % 4 == 3).then_some(486)
}

#[test]
fn a_thousand_calls_over_five_percent_loss_end_as_the_callee_s_rule_says() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.sim.nodes[B].policy.reject_when = Some(busy_every_fourth);
    net.random_loss(50_000, 0x1000_ca11);
    for i in 0..1000u64 {
        let mut call = call_to_b();
        call.request_uri = format!("sip:bob{i}@192.0.2.2:5060");
        net.at(ms(20 * i), A, Action::Invite(Box::new(call)));
    }
    net.run_until_idle();
    net.assert_no_errors();
    let log = net.log();
    let lost = log.iter().filter(|s| s.dropped).count();
    assert!(
        (3..=7).contains(&(lost * 100 / log.len())),
        "{lost} of {} datagrams lost",
        log.len()
    );

    // Every call ended once on each side, as the rule says: call n was placed at 20·n ms.
    let busy = CallEndReason::Rejected {
        code: 486,
        reason: "Busy Here".into(),
    };
    let mut seen = vec![0u32; 1000];
    for rec in net.ended(A) {
        let n = ((rec.invite - net.t0).as_millis() / 20) as usize;
        seen[n] += 1;
        let rejected = busy_every_fourth(&format!("sip:bob{n}@192.0.2.2:5060")).is_some();
        let (reason, code) = if rejected {
            (busy.clone(), 486)
        } else {
            (CallEndReason::LocalBye, 200)
        };
        assert_eq!(rec.reason(), Some(&reason), "call {n}");
        assert_eq!(rec.final_code, Some(code), "call {n}");
        assert_eq!(rec.answer.is_some(), !rejected, "call {n}");
    }
    assert!(seen.iter().all(|&n| n == 1), "each call ends once at A");
    let reasons_b = net.reasons(B);
    assert_eq!(reasons_b.len(), 1000);
    let declined = reasons_b
        .iter()
        .filter(|r| **r == CallEndReason::Declined { code: 486 })
        .count();
    let remote_bye = reasons_b
        .iter()
        .filter(|r| **r == CallEndReason::RemoteBye)
        .count();
    assert_eq!((declined, remote_bye), (250, 750));
    assert_eq!(net.answered(A).len(), 750);
    // The loss was felt, and recovered from by retransmission.
    let retransmitted: u32 = net.ended(A).iter().map(|r| r.requests_retransmitted).sum();
    assert!(retransmitted > 50, "{retransmitted}");
    net.assert_empty();
}

#[test]
fn duplicated_and_reordered_invite_responses_and_ack_make_one_call() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    // The INVITE arrives twice; the 100 is overtaken by the 180 and the 200; the 180 and the
    // 200 arrive twice; the ACK arrives twice.
    net.rule(A, "INVITE", 0, 1, Fault::Duplicate(ms(3)));
    net.rule(B, "100/INVITE", 0, 1, Fault::Delay(ms(200)));
    net.rule(B, "180/INVITE", 0, 1, Fault::Duplicate(ms(1)));
    net.rule(B, "200/INVITE", 0, 1, Fault::Duplicate(ms(2)));
    net.rule(A, "ACK", 0, 1, Fault::Duplicate(ms(1)));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();

    // One call on each side, answered once, ended once.
    assert_eq!(net.incoming().len(), 1);
    assert_eq!((net.answered(A).len(), net.answered(B).len()), (1, 1));
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    // The copy of the INVITE is absorbed by B's transaction, which sends its latest
    // provisional response again (RFC 3261 §17.2.1); each copy of the 200 is ACKed
    // (§13.2.2.4); the 100 that arrives last changes nothing.
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A ACK",
            "A ACK",
            "A BYE",
            "B 200/BYE"
        ]
    );
    // Each copy of the 180 is reported (the record keeps the first); the late 100 is not.
    let progress = net.progress(A);
    assert!(!progress.is_empty() && progress.iter().all(|&code| code == 180));
    let rec = net.ended(A)[0];
    assert_eq!(rec.answer, Some(net.t0 + ms(120)));
    assert_eq!(rec.first_ringing, Some(net.t0 + ms(20)));
    net.assert_empty();
}

#[test]
fn a_hundred_calls_over_a_duplicating_and_reordering_link_each_make_one_call() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.sim.net.seed(0xd0b1e);
    // A third of the datagrams arrive twice, a third are held back 15 ms (the 100, 180 and
    // 200 sent at one instant overtake each other).
    let link = LinkConfig::new(ms(10))
        .with_duplication(330_000, ms(2))
        .with_reordering(330_000, ms(15));
    net.sim.net.set_default_link(link);
    for i in 0..100u64 {
        net.at(ms(50 * i), A, Action::Invite(Box::new(call_to_b())));
    }
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.incoming().len(), 100);
    assert_eq!((net.answered(A).len(), net.answered(B).len()), (100, 100));
    assert_eq!(net.reasons(A), vec![CallEndReason::LocalBye; 100]);
    assert_eq!(net.reasons(B), vec![CallEndReason::RemoteBye; 100]);
    // The faults happened: more arrived than was sent, and B saw some ACKs twice.
    let (sent, delivered) = [addr(A), addr(B)].iter().fold((0, 0), |(s, d), a| {
        let c = net.sim.net.counts(a);
        (s + c.sent, d + c.delivered)
    });
    assert!(delivered > sent + sent / 5, "{delivered} of {sent}");
    net.assert_empty();
}

// ---------------------------------------------------------------------------------------
// Small pieces
// ---------------------------------------------------------------------------------------

#[test]
fn end_reasons_read_well() {
    let cases = [
        (CallEndReason::LocalBye, "hung up locally (BYE sent)"),
        (
            CallEndReason::Rejected {
                code: 603,
                reason: String::new(),
            },
            "rejected: 603 Decline",
        ),
        (
            CallEndReason::Timeout {
                timer: Timer::B,
                elapsed: ms(32_000),
            },
            "Timer B expired after 32.0 s",
        ),
        (
            CallEndReason::Declined { code: 486 },
            "declined locally: 486 Busy Here",
        ),
        (
            CallEndReason::DialogLost { code: 481 },
            "dialog lost: 481 Call/Transaction Does Not Exist",
        ),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn operations_in_the_wrong_state_are_refused() {
    let mut net = Net::with_callee(ms(100));
    let call = net.invite(call_to_b());
    let now = net.now();
    assert!(matches!(
        net.ep(A).ring(now, call),
        Err(CallError::InvalidState {
            state: CallState::Calling,
            ..
        })
    ));
    assert!(matches!(
        net.ep(A).reinvite(now, call, media(A)),
        Err(CallError::InvalidState { .. })
    ));
    net.run_for(secs(1));
    let call_b = net.incoming()[0];
    assert!(matches!(
        net.ep(B).reject(now, call_b, 200),
        Err(CallError::InvalidStatus { code: 200, .. })
    ));
    net.at(secs(2), A, Action::Hangup(call));
    net.run_until_idle();
    let now = net.now();
    assert_eq!(
        net.ep(A).hangup(now, call),
        Err(CallError::UnknownCall(call))
    );
    net.assert_empty();
}

#[test]
fn transport_failure_ends_the_calls_of_that_peer() {
    let mut net = Net::new();
    net.sim.nodes[B].policy.ring_after = Some(Duration::ZERO);
    net.invite(call_to_b());
    net.run_for(secs(1));
    let now = net.now();
    net.ep(A).transport_failed(now, &addr(B));
    net.flush();
    assert_eq!(
        net.reasons(A),
        [CallEndReason::TransportError {
            detail: String::new()
        }]
    );
    assert!(net.ep(A).is_empty());
    assert!(net.ep(A).transactions().is_empty());
}

/// The Incoming event gives From, To and the Request-URI as the INVITE has them (views of
/// its bytes), and the offer, which the call answers even while the event is still held.
#[test]
fn the_incoming_event_carries_the_invite_s_names_and_offer() {
    let net = call_without_trying(Policy {
        answer_after: Some(Duration::ZERO),
        ..Policy::default()
    });
    let (from, to, request_uri, offer) = net
        .events(B)
        .find_map(|(_, e)| match e {
            CallEvent::Incoming {
                from,
                to,
                request_uri,
                offer,
                ..
            } => Some((from, to, request_uri, offer)),
            _ => None,
        })
        .expect("an incoming call");
    assert!(from.starts_with("<sip:alice@example.test>;tag="), "{from}");
    assert_eq!(&**to, "<sip:bob@example.test>");
    assert_eq!(&**request_uri, "sip:bob@192.0.2.2:5060");
    let offer = offer.as_ref().expect("an offer");
    assert_eq!(offer.media[0].port, media(A).port);
    assert_eq!(net.ended(B)[0].final_code, Some(200));
}

#[test]
fn an_invite_refused_before_it_is_a_call_is_reported() {
    let now = base();
    let mut b = Endpoint::new(EndpointConfig::new(local(B)), IdGen::new(7));
    let invite = |contact: &str, to_tag: &str| {
        Bytes::from(format!(
            "INVITE sip:b@192.0.2.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{to_tag}x{}\r\n\
             From: <sip:a@192.0.2.1>;tag=fa\r\n\
             To: <sip:b@192.0.2.2>{to_tag}\r\n\
             Call-ID: refused-{}@a\r\n\
             CSeq: 1 INVITE\r\n\
             {contact}Content-Length: 0\r\n\r\n",
            contact.len(),
            contact.len() + to_tag.len()
        ))
    };
    // No Contact: 400; a To tag naming no dialog: 481.
    for (bytes, code) in [
        (invite("", ""), 400),
        (invite("Contact: <sip:a@192.0.2.1>\r\n", ";tag=nope"), 481),
    ] {
        let message = Message::parse_datagram(bytes).unwrap();
        b.handle_message(now, message, false, addr(A));
        let mut sent = Vec::new();
        while let Some(t) = b.poll_transmit() {
            sent.push(Message::parse_datagram(t.bytes).unwrap().status());
        }
        assert_eq!(sent, [Some(code)]);
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        match &events[..] {
            [CallEvent::InviteRefused {
                code: c,
                reason,
                from,
                call_id,
            }] => {
                assert_eq!(*c, code);
                assert!(!reason.is_empty());
                assert_eq!(from, "<sip:a@192.0.2.1>;tag=fa");
                assert!(call_id.starts_with("refused-"), "{call_id}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(b.is_empty());
}

// ---- Redirection (RFC 3261 §8.1.3.4) ----

/// A redirect server on the path: an INVITE from A for which `rule` (told the Request-URI
/// and whether the INVITE carries credentials) gives a status and headers is answered so
/// (its ACK stopped); anything else passes.
/// A redirect server's rule: given the Request-URI and whether the INVITE carries
/// credentials, the status and headers to answer with, or `None` to let it pass.
type RedirectRule = fn(&str, bool) -> Option<(u16, Vec<(&'static str, &'static str)>)>;

fn redirector(rule: RedirectRule) -> Interceptor {
    Box::new(move |from, m| {
        if from != A {
            return Intercept::Pass;
        }
        match m.method() {
            Some(&Method::INVITE) => {}
            Some(&Method::ACK) if m.to_tag().as_deref() == Some("redirect") => {
                return Intercept::Drop
            }
            _ => return Intercept::Pass,
        }
        let authorized = m.header(&Name::AUTHORIZATION).is_some();
        let Some((code, headers)) = rule(m.request_uri().unwrap_or_default(), authorized) else {
            return Intercept::Pass;
        };
        let mut out = Vec::new();
        write_response(
            m,
            code,
            reason_phrase(code),
            Some("redirect"),
            &headers,
            None,
            &mut out,
        );
        Intercept::Reply(Bytes::from(out))
    })
}

fn at_b(port: u16) -> SocketAddr {
    SocketAddr::new(ip(B), port)
}

fn redirected_to(rec: &CallRecord) -> Vec<&str> {
    rec.redirects.iter().map(String::as_str).collect()
}

#[test]
fn a_302_is_followed_to_its_contacts_highest_q_first_the_next_when_one_refuses() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.alias(at_b(5070), Alias::Of(B));
    net.alias(at_b(5080), Alias::Of(B));
    net.intercept(redirector(|uri, _| {
        uri.starts_with("sip:bob@").then(|| {
            (
                302,
                vec![(
                    "Contact",
                    "<sip:low@192.0.2.2:5070>;q=0.2, <sip:high@192.0.2.2:5080>;q=0.8",
                )],
            )
        })
    }));
    // The best target refuses: the next one of the 302 is tried.
    net.sim.nodes[B].policy.reject_when = Some(|uri| uri.contains("high").then_some(480));
    let mut call = call_to_b();
    call.max_redirects = 5;
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.answered(A).len(), 1);
    let invites = net.sent(A, "INVITE");
    let uris: Vec<String> = invites
        .iter()
        .map(|s| s.message().request_uri().unwrap().to_string())
        .collect();
    assert_eq!(
        uris,
        [
            "sip:bob@192.0.2.2:5060",
            "sip:high@192.0.2.2:5080",
            "sip:low@192.0.2.2:5070"
        ]
    );
    assert_eq!(
        invites.iter().map(|s| s.to).collect::<Vec<_>>(),
        [addr(B), at_b(5080), at_b(5070)],
        "each redirected INVITE goes to its target"
    );
    let first = invites[0].message();
    for (n, sent) in invites.iter().enumerate().skip(1) {
        let m = sent.message();
        assert_eq!(m.call_id(), first.call_id());
        assert_eq!(m.from_tag(), first.from_tag());
        assert_eq!(m.header(&Name::TO), first.header(&Name::TO));
        assert_eq!(m.cseq(), first.cseq() + n as u32);
        assert_ne!(m.branch(), first.branch());
    }
    let rec = net.ended(A)[0];
    assert_eq!(
        redirected_to(rec),
        ["sip:high@192.0.2.2:5080", "sip:low@192.0.2.2:5070"]
    );
    assert_eq!(rec.final_code, Some(200));
    assert_eq!(rec.invite, net.t0, "the call started with the first INVITE");
    net.assert_empty();
}

#[test]
fn a_302_not_followed_fails_naming_its_status_and_contacts() {
    let mut net = Net::with_callee(ms(100));
    net.intercept(redirector(|uri, _| {
        uri.starts_with("sip:bob@")
            .then(|| (302, vec![("Contact", "<sip:carol@192.0.2.2:5070>")]))
    }));
    net.invite(call_to_b());
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.sent(A, "INVITE").len(), 1);
    let reason = &net.reasons(A)[0];
    assert_eq!(
        reason.to_string(),
        "rejected: 302 Moved Temporarily (redirected to sip:carol@192.0.2.2:5070; \
         not followed: follow_redirects is off)"
    );
    assert_eq!(net.ended(A)[0].final_code, Some(302));
    assert!(net.ended(A)[0].redirects.is_empty());
    net.assert_empty();
}

#[test]
fn a_3xx_without_contact_a_305_and_a_380_fail_naming_why() {
    for (rule, expected) in [
        (
            (|_: &str, _| Some((302, Vec::new()))) as RedirectRule,
            "rejected: 302 Moved Temporarily (no Contact to follow)",
        ),
        (
            |_, _| Some((305, vec![("Contact", "<sip:proxy@192.0.2.2:5070>")])),
            "rejected: 305 Use Proxy (redirected to sip:proxy@192.0.2.2:5070; \
             not followed: 305 Use Proxy is refused (RFC 3261 §21.3.6))",
        ),
        (
            |_, _| Some((380, Vec::new())),
            "rejected: 380 Alternative Service (not followed: 380 Alternative Service names \
             no target to call)",
        ),
    ] {
        let mut net = Net::with_callee(ms(100));
        net.intercept(redirector(rule));
        let mut call = call_to_b();
        call.max_redirects = 5;
        net.invite(call);
        net.run_until_idle();
        net.assert_no_errors();
        assert_eq!(net.sent(A, "INVITE").len(), 1, "{expected}");
        assert_eq!(net.reasons(A)[0].to_string(), expected);
        net.assert_empty();
    }
}

#[test]
fn a_redirect_back_to_a_target_already_tried_is_a_loop() {
    let mut net = Net::with_callee(ms(100));
    net.alias(at_b(5070), Alias::Of(B));
    net.intercept(redirector(|uri, _| {
        if uri.starts_with("sip:bob@") {
            Some((302, vec![("Contact", "<sip:carol@192.0.2.2:5070>")]))
        } else if uri.starts_with("sip:carol@") {
            Some((301, vec![("Contact", "<sip:bob@192.0.2.2:5060>")]))
        } else {
            None
        }
    }));
    let mut call = call_to_b();
    call.max_redirects = 5;
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(
        net.sent(A, "INVITE").len(),
        2,
        "the loop is not entered again"
    );
    let chain: Vec<String> = [
        "sip:bob@192.0.2.2:5060",
        "sip:carol@192.0.2.2:5070",
        "sip:bob@192.0.2.2:5060",
    ]
    .map(String::from)
    .into();
    let reason = net.reasons(A)[0].clone();
    assert_eq!(reason, CallEndReason::RedirectLoop { chain });
    assert_eq!(
        reason.to_string(),
        "redirect_loop: sip:bob@192.0.2.2:5060 -> sip:carol@192.0.2.2:5070 -> \
         sip:bob@192.0.2.2:5060"
    );
    assert!(net.incoming().is_empty());
    net.assert_empty();
}

#[test]
fn more_redirects_than_allowed_fail_as_too_many() {
    let mut net = Net::with_callee(ms(100));
    net.alias(at_b(5070), Alias::Of(B));
    net.alias(at_b(5080), Alias::Of(B));
    net.intercept(redirector(|uri, _| {
        if uri.starts_with("sip:bob@") {
            Some((302, vec![("Contact", "<sip:b1@192.0.2.2:5070>")]))
        } else if uri.starts_with("sip:b1@") {
            Some((302, vec![("Contact", "<sip:b2@192.0.2.2:5080>")]))
        } else if uri.starts_with("sip:b2@") {
            Some((302, vec![("Contact", "<sip:b3@192.0.2.2:5070>")]))
        } else {
            None
        }
    }));
    let mut call = call_to_b();
    call.max_redirects = 2;
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.sent(A, "INVITE").len(), 3);
    let reason = net.reasons(A)[0].clone();
    assert!(
        matches!(&reason, CallEndReason::TooManyRedirects { chain, max: 2 } if chain.len() == 4),
        "{reason:?}"
    );
    assert!(reason
        .to_string()
        .starts_with("too_many_redirects: more than 2: "));
    assert!(reason.to_string().ends_with("-> sip:b3@192.0.2.2:5070"));
    assert!(net.incoming().is_empty());
    net.assert_empty();
}

#[test]
fn a_redirected_target_that_challenges_is_answered_with_credentials() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.alias(at_b(5070), Alias::Of(B));
    net.intercept(redirector(|uri, authorized| {
        if uri.starts_with("sip:bob@") {
            Some((302, vec![("Contact", "<sip:carol@192.0.2.2:5070>")]))
        } else if uri.starts_with("sip:carol@") && !authorized {
            Some((401, vec![("WWW-Authenticate", CHALLENGE)]))
        } else {
            None
        }
    }));
    let mut call = call_to_b();
    call.max_redirects = 5;
    call.credentials = Some(Credentials::new("alice", "secret"));
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    let invites = net.sent(A, "INVITE");
    assert_eq!(invites.len(), 3);
    let last = invites[2].message();
    assert_eq!(last.request_uri(), Some("sip:carol@192.0.2.2:5070"));
    let authorization = last.header(&Name::AUTHORIZATION).unwrap();
    assert!(
        authorization.contains(r#"uri="sip:carol@192.0.2.2:5070""#),
        "{authorization}"
    );
    let rec = net.ended(A)[0];
    assert_eq!(redirected_to(rec), ["sip:carol@192.0.2.2:5070"]);
    assert_eq!(rec.auth_challenges, 1);
    net.assert_empty();
}

#[test]
fn with_an_outbound_proxy_the_redirected_invite_goes_through_it_with_the_contact_as_request_uri() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(1));
    net.intercept(redirector(|uri, _| {
        uri.starts_with("sip:bob@")
            .then(|| (302, vec![("Contact", "<sip:carol@198.51.100.7:5070>")]))
    }));
    let mut call = call_to_b();
    call.max_redirects = 5;
    // B stands in for the outbound proxy: a preloaded Route names it.
    call.local.routes = vec!["<sip:192.0.2.2:5060;lr>".into()];
    net.invite(call);
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    let invites = net.sent(A, "INVITE");
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[1].to, addr(B), "not to the Contact's own address");
    let m = invites[1].message();
    assert_eq!(m.request_uri(), Some("sip:carol@198.51.100.7:5070"));
    assert_eq!(m.header(&Name::ROUTE), Some("<sip:192.0.2.2:5060;lr>"));
    net.assert_empty();
}

#[test]
fn a_sips_request_uri_gets_a_sips_contact_and_a_sip_one_the_transport_parameter() {
    let now = base();
    let tls = LocalEnd {
        transport: Transport::Tls,
        ..local(A)
    };
    let mut a = Endpoint::new(EndpointConfig::new(tls.clone()), IdGen::new(7));
    let contact_of = |a: &mut Endpoint<SocketAddr>, request_uri: &str| {
        let call = OutgoingCall {
            request_uri: request_uri.into(),
            local: tls.clone(),
            ..call_to_b()
        };
        a.invite(now, call).unwrap();
        let sent = a.poll_transmit().expect("the INVITE");
        let invite = Message::parse_datagram(sent.bytes).unwrap();
        invite.header(&Name::CONTACT).unwrap().to_string()
    };
    // RFC 3261 §8.1.1.8.
    assert_eq!(
        contact_of(&mut a, "sips:bob@192.0.2.2"),
        "<sips:alice@192.0.2.1:5060>"
    );
    assert_eq!(
        contact_of(&mut a, "SIPS:bob@192.0.2.2"),
        "<sips:alice@192.0.2.1:5060>"
    );
    assert_eq!(
        contact_of(&mut a, "sip:bob@192.0.2.2;transport=tls"),
        "<sip:alice@192.0.2.1:5060;transport=tls>"
    );
}
#[test]
fn a_dialog_begun_by_a_sips_uri_is_answered_with_a_sips_contact() {
    // RFC 3261 §12.1.1: a sips: Request-URI, or a sips: top Record-Route (without one, the
    // caller's Contact), makes the UAS's Contact sips:.
    let contact_in_200 = |request_uri: &'static str, record_route: Option<&'static str>| {
        let mut net = Net::with_callee(ms(100));
        net.sim.nodes[A].policy.hangup_after = Some(secs(1));
        if let Some(rr) = record_route {
            net.intercept(record_router(rr));
        }
        net.invite(OutgoingCall {
            request_uri: request_uri.into(),
            ..call_to_b()
        });
        net.run_until_idle();
        net.assert_no_errors();
        let ok = net.sent(B, "200/INVITE")[0].message();
        let ringing = net.sent(B, "180/INVITE")[0].message();
        assert_eq!(ok.header(&Name::CONTACT), ringing.header(&Name::CONTACT));
        ok.header(&Name::CONTACT).unwrap().to_string()
    };
    assert_eq!(
        contact_in_200("sips:bob@192.0.2.2:5060", None),
        "<sips:bob@192.0.2.2:5060>"
    );
    assert_eq!(
        contact_in_200("SIPS:bob@192.0.2.2:5060", None),
        "<sips:bob@192.0.2.2:5060>"
    );
    assert_eq!(
        contact_in_200(
            "sip:bob@192.0.2.2:5060",
            Some("Record-Route: <sips:p1.example.test;lr>\r\n")
        ),
        "<sips:bob@192.0.2.2:5060>"
    );
    // A sip: top Record-Route decides, whatever the caller's Contact; none: a sip: Contact.
    assert_eq!(
        contact_in_200(
            "sip:bob@192.0.2.2:5060",
            Some("Record-Route: <sip:p2.example.test;lr>, <sips:p1.example.test;lr>\r\n")
        ),
        "<sip:bob@192.0.2.2:5060>"
    );
    assert_eq!(
        contact_in_200("sip:bob@192.0.2.2:5060", None),
        "<sip:bob@192.0.2.2:5060>"
    );
}

/// A calls B; at 1 s A REFERs B to `refer_to`; B notifies `code` at 2 s; A hangs up at 3 s.
fn transfer(refer_to: &'static str, code: u16, reason: &'static str) -> Net {
    let mut net = Net::with_callee(ms(100));
    let call = net.invite(call_to_b());
    net.run_for(ms(500));
    let incoming = net.incoming()[0];
    net.at(secs(1), A, Action::Refer(call, refer_to));
    net.at(secs(2), B, Action::NotifyTransfer(incoming, code, reason));
    net.at(secs(3), A, Action::Hangup(call));
    net.run_until_idle();
    net
}

fn transfer_events(net: &Net, side: usize) -> Vec<String> {
    net.events(side)
        .filter_map(|(_, e)| match e {
            CallEvent::Referred {
                refer_to,
                referred_by,
                ..
            } => Some(format!("referred {refer_to} by {referred_by:?}")),
            CallEvent::ReferAnswered { code, .. } => Some(format!("refer {code}")),
            CallEvent::TransferNotified {
                code,
                reason,
                terminated,
                ..
            } => Some(format!("notified {code} {reason} terminated={terminated}")),
            _ => None,
        })
        .collect()
}

#[test]
fn blind_transfer_202_then_notify_100_and_200() {
    let net = transfer("sip:carol@192.0.2.3", 200, "OK");
    net.assert_no_errors();
    assert_eq!(
        net.trace(),
        [
            "A INVITE",
            "B 100/INVITE",
            "B 180/INVITE",
            "B 200/INVITE",
            "A ACK",
            "A REFER",
            "B 202/REFER",
            "B NOTIFY",
            "A 200/NOTIFY",
            "B NOTIFY",
            "A 200/NOTIFY",
            "A BYE",
            "B 200/BYE"
        ]
    );
    assert_eq!(
        transfer_events(&net, B),
        ["referred sip:carol@192.0.2.3 by Some(\"<sip:alice@192.0.2.1>\")"]
    );
    assert_eq!(
        transfer_events(&net, A),
        [
            "refer 202",
            "notified 100 Trying terminated=false",
            "notified 200 OK terminated=true"
        ]
    );
    let refer = net.sent(A, "REFER")[0].message();
    assert_eq!(refer.header(&Name::REFER_TO), Some("<sip:carol@192.0.2.3>"));
    assert_eq!(refer.cseq(), net.sent(A, "INVITE")[0].message().cseq() + 1);
    let notifies = net.sent(B, "NOTIFY");
    let first = notifies[0].message();
    assert_eq!(first.header(&Name::EVENT), Some("refer"));
    assert_eq!(
        first.header(&Name::SUBSCRIPTION_STATE),
        Some("active;expires=60")
    );
    assert_eq!(
        first.header(&Name::CONTENT_TYPE),
        Some("message/sipfrag;version=2.0")
    );
    assert_eq!(&first.body()[..], b"SIP/2.0 100 Trying\r\n");
    let last = notifies[1].message();
    assert_eq!(
        last.header(&Name::SUBSCRIPTION_STATE),
        Some("terminated;reason=noresource")
    );
    assert_eq!(&last.body()[..], b"SIP/2.0 200 OK\r\n");
    assert_eq!(last.cseq(), first.cseq() + 1);
    assert_eq!(net.reasons(A), [CallEndReason::LocalBye]);
    assert_eq!(net.reasons(B), [CallEndReason::RemoteBye]);
    net.assert_empty();
}

#[test]
fn a_transfer_target_busy_is_notified_486() {
    let net = transfer("sip:carol@192.0.2.3", 486, "Busy Here");
    net.assert_no_errors();
    assert_eq!(
        transfer_events(&net, A),
        [
            "refer 202",
            "notified 100 Trying terminated=false",
            "notified 486 Busy Here terminated=true"
        ]
    );
}

#[test]
fn a_refer_to_that_is_not_sip_is_refused_416() {
    let mut net = Net::with_callee(ms(100));
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Refer(call, "tel:+15551234"));
    net.at(secs(2), A, Action::Hangup(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(transfer_events(&net, B), Vec::<String>::new());
    assert_eq!(transfer_events(&net, A), ["refer 416"]);
    assert!(net.sent(B, "NOTIFY").is_empty());
    net.assert_empty();
}

#[test]
fn a_refer_outside_a_call_is_refused() {
    let mut net = Net::with_callee(ms(100));
    net.at(
        secs(1),
        A,
        Action::Refer(CallId::for_test(7), "sip:carol@192.0.2.3"),
    );
    net.run_until_idle();
    assert!(matches!(
        net.sim.nodes[A].errors[..],
        [CallError::UnknownCall(_)]
    ));
}

#[test]
fn a_refer_is_refused_405_unless_transfers_are_accepted() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[B].ep.config.accept_refer = false;
    let call = net.invite(call_to_b());
    net.at(secs(1), A, Action::Refer(call, "sip:carol@192.0.2.3"));
    net.at(secs(2), A, Action::Hangup(call));
    net.run_until_idle();
    net.assert_no_errors();
    assert_eq!(transfer_events(&net, B), Vec::<String>::new());
    assert_eq!(transfer_events(&net, A), ["refer 405"]);
    net.assert_empty();
}

#[test]
fn refer_and_notify_that_cannot_be_served_are_refused_per_rfc_3515() {
    let mut net = Net::with_callee(ms(100));
    net.sim.nodes[A].policy.hangup_after = Some(secs(5));
    net.invite(call_to_b());
    net.run_for(secs(1));
    // No Refer-To: 400 (RFC 3515 §2.4.2).
    let tx = request_in_a_dialog(&mut net, "REFER", 10, &[], None);
    net.run_for(ms(100));
    assert_eq!(final_response(&net, tx).status(), Some(400));
    // Two Refer-To values: 400.
    let two = [("Refer-To", "<sip:a@h>"), ("Refer-To", "<sip:b@h>")];
    let tx = request_in_a_dialog(&mut net, "REFER", 11, &two, None);
    net.run_for(ms(100));
    assert_eq!(final_response(&net, tx).status(), Some(400));
    // A NOTIFY of another event package: 489 Bad Event.
    let presence = [("Event", "presence"), ("Subscription-State", "active")];
    let tx = request_in_a_dialog(&mut net, "NOTIFY", 12, &presence, None);
    net.run_for(ms(100));
    assert_eq!(final_response(&net, tx).status(), Some(489));
    assert_eq!(transfer_events(&net, B), Vec::<String>::new());

    // Outside any dialog (no To tag): 403, transfers are served within calls only.
    let branch = "z9hG4bKoutside";
    let bytes = RequestSpec {
        method: "REFER",
        uri: "sip:bob@192.0.2.2:5060",
        via: ViaSpec {
            transport: Transport::Udp,
            sent_by: addr(A),
            branch,
            rport: true,
        },
        routes: &[],
        from: "<sip:alice@192.0.2.1>;tag=out1",
        to: "<sip:bob@192.0.2.2>",
        call_id: "outside-refer",
        cseq: 1,
        contact: Some("<sip:alice@192.0.2.1:5060>"),
        extra: &[("Refer-To", "<sip:carol@192.0.2.3>")],
        body: None,
    }
    .to_vec();
    let now = net.now();
    let tx = net
        .ep(A)
        .send_request(now, Bytes::from(bytes), addr(B))
        .unwrap();
    net.run_for(ms(100));
    assert_eq!(final_response(&net, tx).status(), Some(403));
    net.run_until_idle();
    net.assert_no_errors();
}

#[test]
fn a_call_counts_with_its_peer_until_its_bye_is_answered_not_until_its_timers_end() {
    let mut net = Net::with_callee(secs(1));
    net.sim.nodes[A].policy.hangup_after = Some(secs(2));
    assert_eq!(net.sim.nodes[A].ep.calls_with(&addr(B)), 0);
    net.invite(call_to_b());
    net.run_for(ms(10));
    // The INVITE under way counts.
    assert_eq!(net.sim.nodes[A].ep.calls_with(&addr(B)), 1);
    assert_eq!(net.sim.nodes[A].ep.calls_with(&addr(A)), 0);
    net.run_for(secs(2));
    assert_eq!(net.sim.nodes[A].ep.calls_with(&addr(B)), 1);
    assert_eq!(net.sim.nodes[B].ep.calls_with(&addr(A)), 1);
    // The BYE is sent at 3.02 s and answered one round trip later; its transaction lingers
    // (Timer K, 5 s over UDP), the call does not.
    net.run_for(ms(1500));
    assert_eq!(net.trace().last().map(String::as_str), Some("B 200/BYE"));
    assert_eq!(net.sim.nodes[A].ep.calls_with(&addr(B)), 0);
    assert_eq!(net.sim.nodes[B].ep.calls_with(&addr(A)), 0);
    net.run_until_idle();
    net.assert_no_errors();
}

#[test]
fn the_hop_memo_gives_what_the_uri_gives_as_uris_and_transports_change() {
    let mut memo = HopMemo::<SocketAddr>::default();
    let asks = [
        ("sip:a@10.0.0.1:5070", Transport::Udp),
        ("sip:a@10.0.0.1:5070", Transport::Udp),
        ("sip:a@10.0.0.1:5070", Transport::Tls),
        ("sip:a@10.0.0.1", Transport::Tls),
        ("sip:a@10.0.0.1", Transport::Udp),
        ("<sip:b@10.0.0.2;transport=tcp>", Transport::Udp),
        ("sip:b@pbx.example.com", Transport::Udp),
        ("sip:b@pbx.example.com", Transport::Udp),
        ("sip:a@10.0.0.1:5070", Transport::Udp),
    ];
    for (uri, transport) in asks {
        let expected = SocketAddr::from_uri(uri, transport);
        assert_eq!(memo.hop_of(uri, transport), expected, "{uri} {transport:?}");
    }
}
