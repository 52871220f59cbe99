//! Both ends of a transaction over a simulated link, in virtual time (quinn's `Pair`).
//!
//! A [`Pair`] joins a UAC [`TransactionLayer`] and a UAS one as two nodes of a
//! [`Sim`](crate::sim::Sim): a 10 ms link each way, scripted drops, duplicates and extra
//! delays, and seeded random loss. The simulator jumps the clock to the next deadline —
//! `min(poll_timeout of both, next delivery)` — so a 32-second timeout takes microseconds and
//! every instant is exact.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::ids::IdGen;
use crate::sim::{Datagram, Fault, LinkConfig, Network, Node, Rule, Sim};
use crate::sip::build::{ack_for_non2xx, cancel_for, write_response, RequestSpec, ViaSpec};
use crate::sip::msg::{Message, Name};
use crate::sip::transport::Transport;

/// The one clock read of these tests; everything after it is virtual.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Side {
    Uac,
    Uas,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Uac => Side::Uas,
            Side::Uas => Side::Uac,
        }
    }

    fn i(self) -> usize {
        self as usize
    }
}

fn request_with(
    method: &str,
    branch: &str,
    transport: Transport,
    call_id: &str,
    cseq: u32,
) -> Message {
    let spec = RequestSpec {
        method,
        uri: "sip:bob@192.0.2.2",
        via: ViaSpec {
            transport,
            sent_by: "192.0.2.1:5060".parse().unwrap(),
            branch,
            rport: true,
        },
        routes: &[],
        from: "<sip:alice@192.0.2.1>;tag=a1",
        to: "<sip:bob@192.0.2.2>",
        call_id,
        cseq,
        contact: None,
        extra: &[],
        body: None,
    };
    Message::parse_datagram(Bytes::from(spec.to_vec())).unwrap()
}

fn response_to(request: &Message, code: u16) -> Message {
    let mut out = Vec::new();
    write_response(request, code, "X", Some("b1"), &[], None, &mut out);
    Message::parse_datagram(Bytes::from(out)).unwrap()
}

fn summary(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// One side of the pair: a transaction layer and, on the UAS, a transaction user answering
/// new requests by its [`Policy`].
struct Peer {
    side: Side,
    start: Instant,
    reliable: bool,
    layer: TransactionLayer<Side>,
    /// The UAS's transaction user (none on the UAC).
    policy: Option<Policy>,
    events: Vec<(Duration, TransactionEvent<Side>)>,
    /// What the layer sent, when and why (dropped datagrams included).
    sent: Vec<(Duration, SendKind)>,
}

impl Node<Side> for Peer {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<Side>) {
        let message = Message::parse_datagram(datagram.bytes).unwrap();
        let _ = self
            .layer
            .handle_message(now, message, self.reliable, datagram.from);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.layer.poll_timeout()
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram<Side>> {
        let at = now - self.start;
        loop {
            if let Some(t) = self.layer.poll_transmit() {
                assert_eq!(t.destination, self.side.other(), "sent to the wrong side");
                self.sent.push((at, t.kind));
                return Some(Datagram {
                    from: self.side,
                    to: t.destination,
                    bytes: t.bytes,
                });
            }
            let mut answered = false;
            while let Some(e) = self.layer.poll_event() {
                if let (Some(policy), TransactionEvent::NewRequest { tx, message }) =
                    (self.policy, &e)
                {
                    for code in policy(message) {
                        let tag = (code > 100).then_some("b1");
                        self.layer.reply(now, *tx, code, tag).unwrap();
                        answered = true;
                    }
                }
                self.events.push((at, e));
            }
            if !answered {
                return None;
            }
        }
    }
}

/// How the UAS transaction user answers a new request: the status codes to send at once,
/// in order (nothing: a silent TU).
type Policy = fn(&Message) -> Vec<u16>;

fn silent(_: &Message) -> Vec<u16> {
    Vec::new()
}

fn ok(_: &Message) -> Vec<u16> {
    vec![200]
}

fn busy_or_ok(m: &Message) -> Vec<u16> {
    if m.method() == Some(&Method::INVITE) {
        vec![486]
    } else {
        vec![200]
    }
}

/// A UAC layer and a UAS layer over a 10 ms link.
struct Pair {
    transport: Transport,
    sim: Sim<Side, Peer>,
    ids: IdGen,
}

impl Pair {
    fn new(transport: Transport, policy: Policy) -> Self {
        let start = base();
        let mut sim = Sim::new(Network::new(start, LinkConfig::new(ms(10))));
        for (side, policy) in [(Side::Uac, None), (Side::Uas, Some(policy))] {
            let peer = Peer {
                side,
                start,
                reliable: transport.is_reliable(),
                layer: TransactionLayer::new(TimerConfig::default()),
                policy,
                events: Vec::new(),
                sent: Vec::new(),
            };
            sim.add_node(peer, [side]);
        }
        Self {
            transport,
            sim,
            ids: IdGen::new(1),
        }
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    fn net(&mut self) -> &mut Network<Side> {
        &mut self.sim.net
    }

    fn uac(&self) -> &TransactionLayer<Side> {
        &self.sim.nodes[Side::Uac.i()].layer
    }

    fn uas(&self) -> &TransactionLayer<Side> {
        &self.sim.nodes[Side::Uas.i()].layer
    }

    fn uac_mut(&mut self) -> &mut TransactionLayer<Side> {
        &mut self.sim.nodes[Side::Uac.i()].layer
    }

    fn uas_mut(&mut self) -> &mut TransactionLayer<Side> {
        &mut self.sim.nodes[Side::Uas.i()].layer
    }

    fn uac_events(&self) -> &[(Duration, TransactionEvent<Side>)] {
        &self.sim.nodes[Side::Uac.i()].events
    }

    fn uas_events(&self) -> &[(Duration, TransactionEvent<Side>)] {
        &self.sim.nodes[Side::Uas.i()].events
    }

    /// Drops the `n`-th datagram (from 0) `from` sends.
    fn drop_nth(&mut self, from: Side, n: u64) {
        self.net()
            .add_rule(Rule::new(Fault::Drop).from(from).skip(n).times(1));
    }

    /// Delivers the `n`-th datagram `from` sends twice, the copy `lag` later.
    fn duplicate_nth(&mut self, from: Side, n: u64, lag: Duration) {
        self.net()
            .add_rule(Rule::new(Fault::Duplicate(lag)).from(from).skip(n).times(1));
    }

    /// Delays the `n`-th datagram `from` sends by `extra` (reordering).
    fn delay_nth(&mut self, from: Side, n: u64, extra: Duration) {
        self.net()
            .add_rule(Rule::new(Fault::Delay(extra)).from(from).skip(n).times(1));
    }

    /// Loses `ppm` parts per million each way at random, seeded with `seed`.
    fn random_loss(&mut self, ppm: u32, seed: u64) {
        self.net().seed(seed);
        self.net()
            .set_default_link(LinkConfig::new(ms(10)).with_loss(ppm));
    }

    fn request(&mut self, method: &str) -> Message {
        let branch = self.ids.branch();
        let call_id = self.ids.call_id();
        request_with(method, &branch, self.transport, &call_id, 1)
    }

    /// Start a client transaction on the UAC now, from the request's bytes (as the UA core
    /// does: the request is not parsed).
    fn send(&mut self, method: &str) -> TxId {
        let request = self.request(method);
        let reliable = self.transport.is_reliable();
        let now = self.now();
        self.uac_mut()
            .send_request_bytes(now, request.raw().clone(), reliable, Side::Uas)
            .unwrap()
    }

    /// Run until `limit` after the start, jumping from deadline to deadline.
    fn run_until(&mut self, limit: Duration) {
        let limit = self.sim.net.start() + limit;
        self.sim.run_until(limit);
    }

    /// Run until both layers have no timer left and nothing is in flight.
    fn run_until_idle(&mut self) {
        self.run_until(self.elapsed() + Duration::from_secs(3600));
        assert!(self.sim.net.is_idle());
        assert_eq!(self.uac().poll_timeout(), None);
        assert_eq!(self.uas().poll_timeout(), None);
    }

    fn times(&self, side: Side, kinds: &[SendKind]) -> Vec<u64> {
        self.sim.nodes[side.i()]
            .sent
            .iter()
            .filter(|(_, kind)| kinds.contains(kind))
            .map(|(at, _)| at.as_millis() as u64)
            .collect()
    }

    fn uac_times(&self, kinds: &[SendKind]) -> Vec<u64> {
        self.times(Side::Uac, kinds)
    }

    fn uas_times(&self, kinds: &[SendKind]) -> Vec<u64> {
        self.times(Side::Uas, kinds)
    }
}

const REQUESTS: &[SendKind] = &[SendKind::Request, SendKind::RequestRetransmission];
const RESPONSES: &[SendKind] = &[SendKind::Response, SendKind::ResponseRetransmission];
const ACKS: &[SendKind] = &[SendKind::Ack, SendKind::AckRetransmission];

fn timed_out(events: &[(Duration, TransactionEvent<Side>)]) -> Vec<(Duration, Timer, Duration)> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            TransactionEvent::TimedOut { timer, elapsed, .. } => Some((*at, *timer, *elapsed)),
            _ => None,
        })
        .collect()
}

fn terminated_at(events: &[(Duration, TransactionEvent<Side>)], id: TxId) -> Option<Duration> {
    events.iter().find_map(|(at, e)| match e {
        TransactionEvent::Terminated { tx } if *tx == id => Some(*at),
        _ => None,
    })
}

fn responses(events: &[(Duration, TransactionEvent<Side>)]) -> Vec<(Duration, TxId, u16)> {
    events
        .iter()
        .filter_map(|(at, e)| match e {
            TransactionEvent::Response { tx, message } => {
                Some((*at, *tx, message.status().unwrap()))
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Client transactions: timer schedules
// ---------------------------------------------------------------------------------------

#[test]
fn non_invite_over_udp_to_a_silent_far_end_backs_off_to_t2_and_times_out_on_timer_f() {
    let mut pair = Pair::new(Transport::Udp, silent);
    pair.net().blackhole(Side::Uac);
    let tx = pair.send("OPTIONS");
    pair.run_until_idle();

    // Timer E: T1, doubling up to T2 — intervals 0.5, 1, 2, 4, 4, 4 … s.
    assert_eq!(
        pair.uac_times(REQUESTS),
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(pair.uac().counters().retransmissions_sent, 10);
    assert_eq!(pair.uac().counters().requests_sent, 1);
    assert_eq!(
        timed_out(pair.uac_events()),
        [(Duration::from_secs(32), Timer::F, Duration::from_secs(32))]
    );
    assert_eq!(
        terminated_at(pair.uac_events(), tx),
        Some(Duration::from_secs(32))
    );
    assert!(pair.uac().is_empty());
    assert_eq!(pair.uac().counters().timeouts, 1);
}

#[test]
fn invite_over_udp_to_a_silent_far_end_doubles_timer_a_and_times_out_on_timer_b() {
    let mut pair = Pair::new(Transport::Udp, silent);
    pair.net().blackhole(Side::Uac);
    let tx = pair.send("INVITE");
    pair.run_until_idle();

    // Timer A: T1 doubling without cap; the next one (63.5 s) is after Timer B.
    assert_eq!(
        pair.uac_times(REQUESTS),
        [0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    assert_eq!(pair.uac().counters().retransmissions_sent, 6);
    let timeouts = timed_out(pair.uac_events());
    assert_eq!(
        timeouts,
        [(Duration::from_secs(32), Timer::B, Duration::from_secs(32))]
    );
    assert_eq!(
        format!("{} expired after {:?}", timeouts[0].1, timeouts[0].2),
        "Timer B expired after 32s"
    );
    assert_eq!(
        terminated_at(pair.uac_events(), tx),
        Some(Duration::from_secs(32))
    );
}

#[test]
fn reliable_transport_never_retransmits_yet_timers_b_and_f_still_fire() {
    for method in ["OPTIONS", "INVITE"] {
        let mut pair = Pair::new(Transport::Tcp, silent);
        pair.net().blackhole(Side::Uac);
        pair.send(method);
        pair.run_until_idle();
        assert_eq!(pair.uac_times(REQUESTS), [0], "{method}");
        assert_eq!(pair.uac().counters().retransmissions_sent, 0);
        let timer = if method == "INVITE" {
            Timer::B
        } else {
            Timer::F
        };
        assert_eq!(
            timed_out(pair.uac_events()),
            [(Duration::from_secs(32), timer, Duration::from_secs(32))]
        );
    }
}

#[test]
fn reliable_transport_timers_d_k_i_j_are_zero() {
    // Non-INVITE: the 200 arrives at 20 ms and the client ends then (Timer K = 0); the
    // server ended when it sent the 200 (Timer J = 0).
    let mut pair = Pair::new(Transport::Tcp, ok);
    let tx = pair.send("OPTIONS");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 200)]);
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(20)));
    assert_eq!(pair.uas_times(RESPONSES), [10]);
    assert!(pair
        .uas_events()
        .iter()
        .any(|(at, e)| *at == ms(10) && matches!(e, TransactionEvent::Terminated { .. })));

    // INVITE/486: one ACK at 20 ms, client ends then (Timer D = 0); the server is Confirmed
    // by the ACK at 30 ms and ends at once (Timer I = 0); no 486 retransmission (no Timer G).
    let mut pair = Pair::new(Transport::Tcp, busy_or_ok);
    let tx = pair.send("INVITE");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 486)]);
    assert_eq!(pair.uac_times(ACKS), [20]);
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(20)));
    assert_eq!(pair.uas_times(RESPONSES), [10]);
    assert!(pair
        .uas_events()
        .iter()
        .any(|(at, e)| *at == ms(30) && matches!(e, TransactionEvent::Terminated { .. })));
    assert_eq!(pair.uas().counters().acks_absorbed, 1);
    assert!(pair.uac().is_empty() && pair.uas().is_empty());

    let c = TimerConfig::default();
    for t in [Timer::D, Timer::I, Timer::J, Timer::K] {
        assert_eq!(c.duration(t, true), Some(Duration::ZERO), "{t}");
    }
    for t in [Timer::A, Timer::E, Timer::G] {
        assert_eq!(c.duration(t, true), None, "{t}");
    }
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    fn trying(_: &Message) -> Vec<u16> {
        vec![100]
    }
    let mut pair = Pair::new(Transport::Udp, trying);
    let tx = pair.send("REGISTER");
    pair.run_until(Duration::from_secs(40));

    // The 100 arrives at 20 ms. The armed Timer E still fires at 0.5 s; from then on it is T2.
    assert_eq!(
        pair.uac_times(REQUESTS),
        [0, 500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
    );
    assert_eq!(pair.uac().counters().retransmissions_sent, 8);
    // The server re-sends its 100 for each retransmission, and each is passed up.
    assert_eq!(pair.uas().counters().retransmissions_sent, 8);
    assert_eq!(responses(pair.uac_events()).len(), 9);
    assert_eq!(
        timed_out(pair.uac_events()),
        [(Duration::from_secs(32), Timer::F, Duration::from_secs(32))]
    );
    assert_eq!(
        terminated_at(pair.uac_events(), tx),
        Some(Duration::from_secs(32))
    );
    // A server transaction in Proceeding has no timer: its TU must answer or abandon it.
    assert_eq!(pair.uas().len(), 1);
    let server_tx = match &pair.uas_events()[0].1 {
        TransactionEvent::NewRequest { tx, .. } => *tx,
        e => panic!("unexpected {e:?}"),
    };
    pair.uas_mut().abandon(server_tx).unwrap();
    assert!(pair.uas().is_empty());
    assert!(matches!(
        pair.uas_mut().abandon(server_tx),
        Err(TransactionError::UnknownTransaction(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Loss, duplication, reordering
// ---------------------------------------------------------------------------------------

#[test]
fn first_request_and_first_response_lost_the_transaction_still_completes() {
    let mut pair = Pair::new(Transport::Udp, ok);
    pair.drop_nth(Side::Uac, 0);
    pair.drop_nth(Side::Uas, 0);
    let tx = pair.send("MESSAGE");
    pair.run_until_idle();

    // 0: request lost. 0.5 s: retransmission, 200 at 0.51 s lost. 1.5 s: retransmission,
    // the server re-sends its 200 (1.51 s), which arrives at 1.52 s.
    assert_eq!(pair.uac_times(REQUESTS), [0, 500, 1500]);
    assert_eq!(pair.uas_times(RESPONSES), [510, 1510]);
    assert_eq!(pair.uac().counters().retransmissions_sent, 2);
    assert_eq!(pair.uas().counters().retransmissions_sent, 1);
    assert_eq!(pair.uas().counters().retransmitted_requests, 1);
    assert_eq!(responses(pair.uac_events()), [(ms(1520), tx, 200)]);
    // Timer K (T4 = 5 s) on the client; Timer J (64·T1) on the server, from its 200.
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(6520)));
    assert!(pair
        .uas_events()
        .iter()
        .any(|(at, e)| *at == ms(32510) && matches!(e, TransactionEvent::Terminated { .. })));
    assert!(timed_out(pair.uac_events()).is_empty());
}

#[test]
fn lost_ack_is_recovered_by_timer_g_and_the_ack_is_sent_again() {
    let mut pair = Pair::new(Transport::Udp, busy_or_ok);
    pair.drop_nth(Side::Uac, 1); // the UAC's second datagram: the ACK
    let tx = pair.send("INVITE");
    pair.run_until_idle();

    assert_eq!(pair.uac_times(REQUESTS), [0]);
    // 486 at 10 ms, again on Timer G at 0.51 s; ACK at 20 ms (lost), again at 0.52 s.
    assert_eq!(pair.uas_times(RESPONSES), [10, 510]);
    assert_eq!(pair.uac_times(ACKS), [20, 520]);
    assert_eq!(pair.uac().counters().acks_sent, 1);
    assert_eq!(pair.uac().counters().retransmissions_sent, 1);
    assert_eq!(pair.uac().counters().duplicate_responses, 1);
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 486)]);
    // Client: Timer D = 32 s from Completed. Server: Confirmed at 0.53 s, Timer I = 5 s.
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(32020)));
    assert!(pair
        .uas_events()
        .iter()
        .any(|(at, e)| *at == ms(5530) && matches!(e, TransactionEvent::Terminated { .. })));
    assert_eq!(pair.uas().counters().acks_absorbed, 1);
    assert_eq!(pair.uas().counters().acks_passed_up, 0);
}

/// 1,000 transactions (MESSAGE/200 and INVITE/486 alternately, one every 5 ms) with random
/// loss of `ppm` parts per million each way. Checks that every client transaction ended once,
/// with a final response or a timeout, and that every counter adds up against the link.
/// Returns (completed, timed out, the UAC's retransmissions).
fn lossy_thousand(ppm: u32, seed: u64) -> (usize, usize, u64) {
    let mut pair = Pair::new(Transport::Udp, busy_or_ok);
    pair.random_loss(ppm, seed);
    let mut txs = Vec::new();
    for i in 0..1000u64 {
        pair.run_until(ms(5 * i));
        let method = if i % 2 == 0 { "MESSAGE" } else { "INVITE" };
        txs.push(pair.send(method));
    }
    pair.run_until_idle();

    // Each client transaction ended exactly once, with a final response or a timeout.
    let mut finals = HashMap::new();
    for (_, tx, code) in responses(pair.uac_events()) {
        if code >= 200 {
            assert!(finals.insert(tx, code).is_none(), "two finals passed up");
        }
    }
    let timeouts: HashSet<TxId> = pair
        .uac_events()
        .iter()
        .filter_map(|(_, e)| match e {
            TransactionEvent::TimedOut { tx, .. } => Some(*tx),
            _ => None,
        })
        .collect();
    for tx in &txs {
        assert!(
            finals.contains_key(tx) ^ timeouts.contains(tx),
            "{tx} must complete or time out, not both or neither"
        );
        assert!(terminated_at(pair.uac_events(), *tx).is_some());
    }
    assert_eq!(finals.len() + timeouts.len(), 1000);
    assert!(pair.uac().is_empty() && pair.uas().is_empty());

    let (c, s) = (*pair.uac().counters(), *pair.uas().counters());
    let (uac_link, uas_link) = (
        pair.sim.net.counts(&Side::Uac),
        pair.sim.net.counts(&Side::Uas),
    );
    // What each side put on the link is what its counters say it sent.
    assert_eq!(
        uac_link.sent,
        c.requests_sent + c.acks_sent + c.retransmissions_sent
    );
    assert_eq!(uas_link.sent, s.responses_sent + s.retransmissions_sent);
    for link in [uac_link, uas_link] {
        assert_eq!(link.sent, link.delivered + link.dropped);
    }
    // What arrived is accounted for, message by message.
    assert_eq!(s.requests_received, uac_link.delivered);
    assert_eq!(
        s.requests_received,
        s.server_transactions + s.retransmitted_requests + s.acks_absorbed + s.acks_passed_up
    );
    assert_eq!(c.responses_received, uas_link.delivered);
    assert_eq!(
        c.responses_received,
        finals.len() as u64 + c.duplicate_responses + c.late_responses + c.stray_responses
    );
    assert_eq!(c.client_transactions, 1000);
    assert_eq!(c.requests_sent, 1000);
    assert_eq!(c.timeouts, timeouts.len() as u64);
    assert_eq!(c.terminated, 1000);
    assert_eq!(s.terminated, s.server_transactions);
    // Every server transaction answered once; every 486 that reached the client was ACKed.
    assert_eq!(s.responses_sent, s.server_transactions);
    let busy = finals.values().filter(|&&code| code == 486).count() as u64;
    assert_eq!(c.acks_sent, busy);
    assert!(uac_link.dropped > 0 && uas_link.dropped > 0);
    (finals.len(), timeouts.len(), c.retransmissions_sent)
}

#[test]
fn a_thousand_transactions_over_a_duplicating_and_reordering_link_each_end_once() {
    // MESSAGE/200 and INVITE/486 alternately, one every 5 ms; a quarter of the datagrams each
    // way arrive twice (2 ms apart), a quarter are held back 30 ms, so later ones overtake them.
    let mut pair = Pair::new(Transport::Udp, busy_or_ok);
    pair.net().seed(0xd0b1e);
    let link = LinkConfig::new(ms(10))
        .with_duplication(250_000, ms(2))
        .with_reordering(250_000, ms(30));
    pair.net().set_default_link(link);
    let mut txs = Vec::new();
    for i in 0..1000u64 {
        pair.run_until(ms(5 * i));
        txs.push(pair.send(if i % 2 == 0 { "MESSAGE" } else { "INVITE" }));
    }
    pair.run_until_idle();

    // Every transaction got exactly one final response, the one its method calls for, and
    // nothing timed out: no datagram was lost.
    let mut finals = HashMap::new();
    for (_, tx, code) in responses(pair.uac_events()) {
        if code >= 200 {
            assert!(finals.insert(tx, code).is_none(), "two finals passed up");
        }
    }
    for (i, tx) in txs.iter().enumerate() {
        let expected = if i % 2 == 0 { 200 } else { 486 };
        assert_eq!(finals.get(tx), Some(&expected), "transaction {i}");
    }
    assert!(timed_out(pair.uac_events()).is_empty());
    assert!(pair.uac().is_empty() && pair.uas().is_empty());

    // The copies were absorbed and counted, not passed up.
    let (c, s) = (*pair.uac().counters(), *pair.uas().counters());
    assert_eq!(s.server_transactions, 1000);
    assert!(
        s.retransmitted_requests > 100,
        "{}",
        s.retransmitted_requests
    );
    assert!(c.duplicate_responses > 100, "{}", c.duplicate_responses);
    assert_eq!(c.acks_sent, 500);
    assert_eq!(c.timeouts, 0);
    assert_eq!(
        s.requests_received,
        s.server_transactions + s.retransmitted_requests + s.acks_absorbed + s.acks_passed_up
    );
    assert_eq!(
        c.responses_received,
        1000 + c.duplicate_responses + c.late_responses + c.stray_responses
    );
    let (uac, uas) = (
        pair.sim.net.counts(&Side::Uac),
        pair.sim.net.counts(&Side::Uas),
    );
    assert_eq!(s.requests_received, uac.delivered);
    assert_eq!(c.responses_received, uas.delivered);
    assert!(uac.delivered > uac.sent && uas.delivered > uas.sent);
}

#[test]
fn twenty_percent_random_loss_over_a_thousand_transactions_adds_up() {
    let (completed, timed_out, retransmissions) = lossy_thousand(200_000, 0x5eed);
    // Retransmissions recover 20 % loss: with this seed every transaction completes.
    assert_eq!((completed, timed_out), (1000, 0));
    assert!(retransmissions > 500, "{retransmissions}");
}

#[test]
fn sixty_percent_random_loss_times_out_some_transactions_consistently() {
    let (completed, timed_out, _) = lossy_thousand(600_000, 0x5eed);
    assert_eq!(completed + timed_out, 1000);
    assert!(
        completed > 0 && timed_out > 0,
        "{completed} completed, {timed_out} timed out"
    );
}

#[test]
fn duplicated_final_response_is_absorbed_and_counted() {
    let mut pair = Pair::new(Transport::Udp, ok);
    pair.duplicate_nth(Side::Uas, 0, ms(1));
    let tx = pair.send("OPTIONS");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 200)]);
    assert_eq!(pair.uac().counters().responses_received, 2);
    assert_eq!(pair.uac().counters().duplicate_responses, 1);
    assert_eq!(pair.uac().counters().stray_responses, 0);
}

#[test]
fn response_arriving_after_the_transaction_ended_is_a_stray() {
    let mut pair = Pair::new(Transport::Udp, ok);
    // The copy arrives 6 s later, after Timer K (5 s) ended the transaction.
    pair.duplicate_nth(Side::Uas, 0, Duration::from_secs(6));
    let tx = pair.send("OPTIONS");
    pair.run_until_idle();
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(5020)));
    assert_eq!(pair.uac().counters().stray_responses, 1);
    assert_eq!(pair.uac().counters().duplicate_responses, 0);
    // A stray non-2xx-to-INVITE is counted, not passed up.
    assert!(!pair
        .uac_events()
        .iter()
        .any(|(_, e)| matches!(e, TransactionEvent::StrayResponse { .. })));
}

#[test]
fn provisional_overtaken_by_the_final_is_counted_and_not_fatal() {
    fn ringing_then_ok(_: &Message) -> Vec<u16> {
        vec![180, 200]
    }
    // Non-INVITE: the 200 completes the transaction; the late 180 is absorbed.
    let mut pair = Pair::new(Transport::Udp, ringing_then_ok);
    pair.delay_nth(Side::Uas, 0, ms(50));
    let tx = pair.send("MESSAGE");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 200)]);
    assert_eq!(pair.uac().counters().late_responses, 1);
    assert_eq!(pair.uac().counters().stray_responses, 0);

    // INVITE: the 200 ends the transaction at once, so the late 180 is a stray.
    let mut pair = Pair::new(Transport::Udp, ringing_then_ok);
    pair.delay_nth(Side::Uas, 0, ms(50));
    let tx = pair.send("INVITE");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 200)]);
    assert_eq!(terminated_at(pair.uac_events(), tx), Some(ms(20)));
    assert_eq!(pair.uac().counters().stray_responses, 1);
    assert!(timed_out(pair.uac_events()).is_empty());
}

#[test]
fn retransmitted_2xx_to_invite_is_passed_up_as_a_stray_for_the_ua_to_ack() {
    let mut pair = Pair::new(Transport::Udp, ok);
    pair.duplicate_nth(Side::Uas, 0, ms(500));
    let tx = pair.send("INVITE");
    pair.run_until_idle();
    assert_eq!(responses(pair.uac_events()), [(ms(20), tx, 200)]);
    let strays: Vec<_> = pair
        .uac_events()
        .iter()
        .filter_map(|(at, e)| match e {
            TransactionEvent::StrayResponse { message, source } => {
                Some((*at, message.status(), *source))
            }
            _ => None,
        })
        .collect();
    assert_eq!(strays, [(ms(520), Some(200), Side::Uas)]);
    assert_eq!(pair.uac().counters().stray_responses, 1);
    // No ACK from the transaction layer for a 2xx: that is the UA's.
    assert_eq!(pair.uac().counters().acks_sent, 0);
}

// ---------------------------------------------------------------------------------------
// Server transactions
// ---------------------------------------------------------------------------------------

/// A single layer driven alone: requests are injected, transmits logged with their instant.
struct Solo {
    start: Instant,
    now: Instant,
    layer: TransactionLayer<Side>,
    sent: Vec<(u64, SendKind, String)>,
    events: Vec<(Duration, TransactionEvent<Side>)>,
}

impl Solo {
    fn new() -> Self {
        let start = base();
        Self {
            start,
            now: start,
            layer: TransactionLayer::default(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let at = self.now - self.start;
        while let Some(t) = self.layer.poll_transmit() {
            self.sent
                .push((at.as_millis() as u64, t.kind, summary(&t.bytes)));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((at, e));
        }
    }

    fn run_until(&mut self, limit: Duration) {
        let limit = self.start + limit;
        self.drain();
        while let Some(next) = self.layer.poll_timeout().filter(|&n| n <= limit) {
            self.now = next;
            self.layer.handle_timeout(next);
            self.drain();
        }
        self.now = self.now.max(limit);
    }

    fn receive(&mut self, message: &Message, reliable: bool) -> Dispatch {
        let d = self
            .layer
            .handle_message(self.now, message.clone(), reliable, Side::Uac);
        self.drain();
        d
    }

    fn new_request(&mut self, message: &Message, reliable: bool) -> TxId {
        match self.receive(message, reliable) {
            Dispatch::NewRequest { tx } => tx,
            d => panic!("expected a new transaction, got {d:?}"),
        }
    }

    fn times(&self, kinds: &[SendKind]) -> Vec<u64> {
        self.sent
            .iter()
            .filter(|(_, k, _)| kinds.contains(k))
            .map(|(at, _, _)| *at)
            .collect()
    }
}

#[test]
fn invite_server_retransmits_486_on_timer_g_until_timer_h() {
    let mut solo = Solo::new();
    let invite = request_with("INVITE", "z9hG4bKg1", Transport::Udp, "c-g", 1);
    let tx = solo.new_request(&invite, false);
    solo.layer.reply(solo.now, tx, 486, Some("b1")).unwrap();
    solo.run_until(Duration::from_secs(60));

    // Timer G: T1 doubling up to T2; Timer H at 64·T1.
    assert_eq!(
        solo.times(RESPONSES),
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(solo
        .sent
        .iter()
        .all(|(_, _, l)| l == "SIP/2.0 486 Busy Here"));
    assert_eq!(solo.layer.counters().retransmissions_sent, 10);
    assert_eq!(
        timed_out(&solo.events),
        [(Duration::from_secs(32), Timer::H, Duration::from_secs(32))]
    );
    assert_eq!(
        terminated_at(&solo.events, tx),
        Some(Duration::from_secs(32))
    );
    assert!(solo.layer.is_empty());
}

#[test]
fn invite_server_absorbs_the_ack_then_timer_i_ends_it() {
    let mut solo = Solo::new();
    let invite = request_with("INVITE", "z9hG4bKi1", Transport::Udp, "c-i", 1);
    let tx = solo.new_request(&invite, false);
    solo.layer.reply(solo.now, tx, 486, Some("b1")).unwrap();
    solo.run_until(ms(2000));

    let busy = response_to(&invite, 486);
    let ack = Message::parse_datagram(Bytes::from(ack_for_non2xx(&invite, &busy))).unwrap();
    assert_eq!(
        solo.receive(&ack, false),
        Dispatch::Server {
            tx,
            absorbed: Absorbed::Ack
        }
    );
    assert_eq!(
        solo.layer.server(tx).unwrap().state(),
        ServerState::Confirmed
    );
    solo.run_until(ms(3000));
    // A retransmitted ACK is absorbed too.
    assert_eq!(
        solo.receive(&ack, false),
        Dispatch::Server {
            tx,
            absorbed: Absorbed::Ack
        }
    );
    solo.run_until(Duration::from_secs(60));

    assert_eq!(solo.times(RESPONSES), [0, 500, 1500]);
    // The ACK never reached the TU: no NewRequest beyond the INVITE's, no Ack event.
    let new_requests = solo
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TransactionEvent::NewRequest { .. }))
        .count();
    assert_eq!(new_requests, 1);
    assert!(!solo
        .events
        .iter()
        .any(|(_, e)| matches!(e, TransactionEvent::Ack { .. })));
    assert_eq!(solo.layer.counters().acks_absorbed, 2);
    assert!(timed_out(&solo.events).is_empty());
    // Timer I = T4 after the first ACK.
    assert_eq!(terminated_at(&solo.events, tx), Some(ms(7000)));
}

#[test]
fn retransmitted_invite_elicits_the_latest_response() {
    let mut solo = Solo::new();
    let invite = request_with("INVITE", "z9hG4bKr1", Transport::Udp, "c-r", 1);
    let tx = solo.new_request(&invite, false);
    // Before any response, a retransmission is simply absorbed.
    solo.run_until(ms(100));
    assert_eq!(
        solo.receive(&invite, false),
        Dispatch::Server {
            tx,
            absorbed: Absorbed::RetransmittedRequest
        }
    );
    assert!(solo.sent.is_empty());

    solo.layer.send_trying(solo.now, tx).unwrap();
    solo.layer.reply(solo.now, tx, 180, Some("b1")).unwrap();
    solo.run_until(ms(300));
    solo.receive(&invite, false);
    solo.run_until(ms(1000));
    solo.layer.reply(solo.now, tx, 486, Some("b1")).unwrap();
    solo.run_until(ms(1200));
    solo.receive(&invite, false);
    solo.drain();

    let lines: Vec<_> = solo
        .sent
        .iter()
        .map(|(at, k, l)| (*at, *k, l.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (100, SendKind::Response, "SIP/2.0 100 Trying"),
            (100, SendKind::Response, "SIP/2.0 180 Ringing"),
            (300, SendKind::ResponseRetransmission, "SIP/2.0 180 Ringing"),
            (1000, SendKind::Response, "SIP/2.0 486 Busy Here"),
            (
                1200,
                SendKind::ResponseRetransmission,
                "SIP/2.0 486 Busy Here"
            ),
        ]
    );
    assert_eq!(solo.layer.counters().retransmitted_requests, 3);
    assert!(matches!(
        solo.layer.reply(solo.now, tx, 200, Some("b1")),
        Err(TransactionError::FinalAlreadySent {
            sent: 486,
            attempted: 200
        })
    ));
}

#[test]
fn non_invite_server_resends_its_final_response_and_timer_j_cleans_up() {
    let mut solo = Solo::new();
    let message = request_with("MESSAGE", "z9hG4bKj1", Transport::Udp, "c-j", 1);
    let tx = solo.new_request(&message, false);
    assert_eq!(solo.layer.server(tx).unwrap().state(), ServerState::Trying);
    // A retransmission in Trying is absorbed silently.
    solo.receive(&message, false);
    solo.run_until(ms(100));
    solo.layer.reply(solo.now, tx, 200, Some("b1")).unwrap();
    solo.run_until(ms(600));
    solo.receive(&message, false);
    solo.run_until(Duration::from_secs(60));

    assert_eq!(solo.times(RESPONSES), [100, 600]);
    assert_eq!(solo.layer.counters().retransmissions_sent, 1);
    // Timer J: 64·T1 after the final response.
    assert_eq!(terminated_at(&solo.events, tx), Some(ms(32100)));
    assert!(solo.layer.is_empty());

    // Over TCP, Timer J is zero: the final response ends the transaction.
    let mut solo = Solo::new();
    let message = request_with("MESSAGE", "z9hG4bKj2", Transport::Tcp, "c-j2", 1);
    let tx = solo.new_request(&message, true);
    solo.layer.reply(solo.now, tx, 200, Some("b1")).unwrap();
    solo.drain();
    assert_eq!(terminated_at(&solo.events, tx), Some(Duration::ZERO));
    assert!(solo.layer.is_empty());
}

#[test]
fn invite_server_sending_2xx_ends_the_transaction_and_the_2xx_ack_is_passed_up() {
    let mut solo = Solo::new();
    let invite = request_with("INVITE", "z9hG4bKok1", Transport::Udp, "c-ok", 1);
    let tx = solo.new_request(&invite, false);
    solo.layer.reply(solo.now, tx, 200, Some("b1")).unwrap();
    solo.drain();
    assert_eq!(terminated_at(&solo.events, tx), Some(Duration::ZERO));
    // The ACK of a 2xx is a new transaction's branch: it matches nothing and goes up.
    let ack = request_with("ACK", "z9hG4bKack1", Transport::Udp, "c-ok", 1);
    assert_eq!(solo.receive(&ack, false), Dispatch::Ack);
    assert!(solo.events.iter().any(|(_, e)| matches!(
        e,
        TransactionEvent::Ack {
            source: Side::Uac,
            ..
        }
    )));
    assert_eq!(solo.layer.counters().acks_passed_up, 1);
}

// ---------------------------------------------------------------------------------------
// The UAS core's 2xx retransmission
// ---------------------------------------------------------------------------------------

fn run_2xx(r: &mut Uas2xxRetransmitter, start: Instant, ack_at: Option<Duration>) -> Vec<u64> {
    let mut times = Vec::new();
    while let Some(next) = r.poll_timeout() {
        if ack_at.is_some_and(|a| start + a <= next) {
            assert!(r.handle_ack());
            assert!(!r.handle_ack(), "a second ACK changes nothing");
            break;
        }
        r.handle_timeout(next);
        if r.poll_transmit().is_some() {
            times.push((next - start).as_millis() as u64);
        }
    }
    times
}

#[test]
fn uas_2xx_retransmitter_backs_off_to_t2_and_gives_up_at_64_t1() {
    let start = base();
    let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
    let mut r = Uas2xxRetransmitter::new(start, ok, TimerConfig::default());
    let times = run_2xx(&mut r, start, None);
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(r.retransmissions(), 10);
    assert_eq!(
        r.poll_event(),
        Some(Uas2xxEvent::NoAck {
            elapsed: Duration::from_secs(32)
        })
    );
    assert_eq!(r.state(), Uas2xxState::GaveUp);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn uas_2xx_retransmitter_stops_on_ack() {
    let start = base();
    let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
    let mut r = Uas2xxRetransmitter::new(start, ok, TimerConfig::default());
    let times = run_2xx(&mut r, start, Some(ms(2000)));
    assert_eq!(times, [500, 1500]);
    assert_eq!(r.state(), Uas2xxState::Acknowledged);
    assert!(r.is_done());
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.poll_transmit(), None);
    assert_eq!(r.poll_event(), None);
    // A late timer call after the ACK does nothing.
    r.handle_timeout(start + Duration::from_secs(40));
    assert_eq!(r.poll_event(), None);
}

// ---------------------------------------------------------------------------------------
// Matching, memory, errors
// ---------------------------------------------------------------------------------------

#[test]
fn invite_and_its_cancel_share_a_branch_but_are_different_transactions() {
    fn manual(_: &Message) -> Vec<u16> {
        Vec::new()
    }
    let mut pair = Pair::new(Transport::Udp, manual);
    let invite = pair.send("INVITE");
    let now = pair.now();
    assert!(matches!(
        pair.uac_mut().send_cancel(now, invite),
        Err(TransactionError::CannotCancel { .. })
    ));
    pair.run_until(ms(10));
    let server_invite = match &pair.uas_events()[0].1 {
        TransactionEvent::NewRequest { tx, .. } => *tx,
        e => panic!("unexpected {e:?}"),
    };
    let now = pair.now();
    pair.uas_mut()
        .reply(now, server_invite, 180, Some("b1"))
        .unwrap();
    pair.run_until(ms(20));
    let now = pair.now();
    let cancel = pair.uac_mut().send_cancel(now, invite).unwrap();
    assert_ne!(cancel, invite);
    pair.run_until(ms(30));

    let (server_cancel, cancel_msg) = match &pair.uas_events().last().unwrap().1 {
        TransactionEvent::NewRequest { tx, message } => (*tx, message.clone()),
        e => panic!("unexpected {e:?}"),
    };
    assert_eq!(
        cancel_msg.branch(),
        Some(pair.uac().client(invite).unwrap().branch())
    );
    assert_eq!(pair.uas().cancel_target(&cancel_msg), Some(server_invite));
    let now = pair.now();
    pair.uas_mut().reply(now, server_cancel, 200, None).unwrap();
    pair.uas_mut().reply(now, server_invite, 487, None).unwrap();
    pair.run_until_idle();

    let got = responses(pair.uac_events());
    assert_eq!(
        got,
        [
            (ms(20), invite, 180),
            (ms(40), cancel, 200),
            (ms(40), invite, 487)
        ]
    );
    assert_eq!(pair.uac_times(ACKS), [40]);
    assert_eq!(pair.uas().counters().acks_absorbed, 1);
    assert!(pair.uac().is_empty() && pair.uas().is_empty());
}

#[test]
fn rfc_2543_requests_match_on_call_id_cseq_from_tag_and_top_via() {
    let mut solo = Solo::new();
    // No magic cookie: matched on Call-ID, CSeq, From tag and top Via.
    let invite = request_with("INVITE", "legacy1", Transport::Udp, "c-2543", 7);
    let tx = solo.new_request(&invite, false);
    assert_eq!(
        solo.receive(&invite, false),
        Dispatch::Server {
            tx,
            absorbed: Absorbed::RetransmittedRequest
        }
    );
    // Another CSeq is another transaction.
    let other = request_with("INVITE", "legacy1", Transport::Udp, "c-2543", 8);
    assert!(matches!(
        solo.receive(&other, false),
        Dispatch::NewRequest { .. }
    ));
    solo.layer.reply(solo.now, tx, 603, Some("b1")).unwrap();
    let ack = ack_for_non2xx(&invite, &response_to(&invite, 603));
    let ack = Message::parse_datagram(Bytes::from(ack)).unwrap();
    assert_eq!(
        solo.receive(&ack, false),
        Dispatch::Server {
            tx,
            absorbed: Absorbed::Ack
        }
    );
}

#[test]
fn server_matching_needs_the_same_sent_by() {
    let mut solo = Solo::new();
    let a = request_with("OPTIONS", "z9hG4bKsame", Transport::Udp, "c1", 1);
    let tx = solo.new_request(&a, false);
    // Same branch from another host: a different transaction (§17.2.3).
    let raw = String::from_utf8(a.raw().to_vec())
        .unwrap()
        .replace("192.0.2.1:5060", "192.0.2.9:5060");
    let b = Message::parse_datagram(Bytes::from(raw)).unwrap();
    let other = solo.new_request(&b, false);
    assert_ne!(tx, other);
    assert_eq!(solo.layer.len(), 2);
}

#[test]
fn many_transactions_leave_nothing_behind() {
    fn mixed(m: &Message) -> Vec<u16> {
        match m.method() {
            Some(&Method::INVITE) if m.call_id().ends_with(['0', '1', '2']) => vec![200],
            Some(&Method::INVITE) => vec![180, 486],
            _ => vec![200],
        }
    }
    let mut pair = Pair::new(Transport::Udp, mixed);
    pair.random_loss(50_000, 9);
    let mut slots_after_first_batch = 0;
    for batch in 0..2u64 {
        let offset = pair.elapsed().as_millis() as u64;
        for i in 0..3000u64 {
            pair.run_until(ms(offset + i));
            pair.send(if i % 3 == 0 { "REGISTER" } else { "INVITE" });
        }
        assert!(pair.uac().len() > 1000);
        pair.run_until_idle();

        for layer in [pair.uac(), pair.uas()] {
            assert!(layer.is_empty());
            assert_eq!(layer.poll_timeout(), None);
            let (heap, client_index, server_index, _) = layer.footprint();
            assert_eq!(heap, 0, "stale deadlines were dropped");
            assert_eq!((client_index, server_index), (0, 0));
            let c = layer.counters();
            assert_eq!(c.terminated, c.client_transactions + c.server_transactions);
        }
        assert_eq!(
            pair.uac().counters().client_transactions,
            3000 * (batch + 1)
        );
        if batch == 0 {
            slots_after_first_batch = pair.uac().footprint().3;
        }
    }
    // Slots of terminated transactions are reused: the table follows the peak number of live
    // transactions (which random loss moves a little), not the number ever made.
    let slots = pair.uac().footprint().3;
    assert!(slots < 3000, "{slots}");
    assert!(
        slots < slots_after_first_batch + slots_after_first_batch / 10,
        "{slots} slots after the second batch, {slots_after_first_batch} after the first"
    );
}

#[test]
fn poll_timeout_is_the_earliest_deadline_over_all_transactions() {
    let start = base();
    let mut layer: TransactionLayer<Side> = TransactionLayer::default();
    let a = request_with("INVITE", "z9hG4bKa", Transport::Udp, "a", 1);
    let b = request_with("OPTIONS", "z9hG4bKb", Transport::Tcp, "b", 1);
    layer.send_request(start, b, true, Side::Uas).unwrap();
    assert_eq!(layer.poll_timeout(), Some(start + Duration::from_secs(32)));
    let tx = layer
        .send_request(start + ms(100), a, false, Side::Uas)
        .unwrap();
    assert_eq!(layer.poll_timeout(), Some(start + ms(600)));
    // Dropping the INVITE leaves its stale deadline behind; poll_timeout skips it.
    layer.abandon(tx).unwrap();
    assert_eq!(layer.poll_timeout(), Some(start + Duration::from_secs(32)));
}

#[test]
fn refused_operations_are_typed_errors() {
    let start = base();
    let mut layer: TransactionLayer<Side> = TransactionLayer::default();
    let ack = request_with("ACK", "z9hG4bKe1", Transport::Udp, "e", 1);
    assert_eq!(
        layer.send_request(start, ack, false, Side::Uas),
        Err(TransactionError::AckIsNotATransaction)
    );
    let req = request_with("OPTIONS", "z9hG4bKe2", Transport::Udp, "e", 1);
    let resp = response_to(&req, 200);
    assert_eq!(
        layer.send_request(start, resp, false, Side::Uas),
        Err(TransactionError::NotARequest)
    );
    let tx = layer
        .send_request(start, req.clone(), false, Side::Uas)
        .unwrap();
    let err = layer
        .send_request(start, req.clone(), false, Side::Uas)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a client transaction for OPTIONS with branch z9hG4bKe2 is already running"
    );
    assert_eq!(
        layer.send_response(start, tx, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n")),
        Err(TransactionError::NotAServerTransaction(tx))
    );
    assert!(matches!(
        layer.send_request_bytes(
            start,
            Bytes::from_static(b"nonsense\r\n\r\n"),
            false,
            Side::Uas
        ),
        Err(TransactionError::Parse(_))
    ));

    let mut solo = Solo::new();
    let server = solo.new_request(&req, false);
    assert_eq!(
        solo.layer.send_response(
            solo.now,
            server,
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        ),
        Err(TransactionError::NotAResponse)
    );
    solo.layer.reply(solo.now, server, 200, None).unwrap();
    solo.run_until(Duration::from_secs(40));
    assert_eq!(
        solo.layer.reply(solo.now, server, 200, None),
        Err(TransactionError::UnknownTransaction(server))
    );
}

#[test]
fn status_line_is_read_without_parsing() {
    assert_eq!(status_of(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
    assert_eq!(status_of(b"SIP/2.0 200\r\n"), Some(200));
    assert_eq!(status_of(b"SIP/2.0 2000 OK\r\n"), None);
    assert_eq!(status_of(b"SIP/2.0 099 X\r\n"), None);
    assert_eq!(status_of(b"INVITE sip:x SIP/2.0\r\n"), None);
    let req = request_with("OPTIONS", "z9hG4bKt", Transport::Udp, "t", 1);
    let trying = Message::parse_datagram(trying_for(&req)).unwrap();
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to_tag(), None);
    assert_eq!(trying.branch(), Some("z9hG4bKt"));
}

#[test]
fn timer_config_and_table() {
    let c = TimerConfig::default();
    assert_eq!(c.timeout(), Duration::from_secs(32));
    assert_eq!(c.duration(Timer::D, false), Some(Duration::from_secs(32)));
    assert_eq!(c.duration(Timer::K, false), Some(Duration::from_secs(5)));
    assert_eq!(c.duration(Timer::J, false), Some(Duration::from_secs(32)));
    assert_eq!(
        TimerConfig::new(Duration::ZERO, ms(4000), ms(5000)),
        Err(TimerConfigError::ZeroT1)
    );
    assert!(matches!(
        TimerConfig::new(ms(500), ms(100), ms(5000)),
        Err(TimerConfigError::T2ShorterThanT1 { .. })
    ));
    // Timer D is "at least 32 s", also with a short T1.
    let fast = TimerConfig::new(ms(50), ms(400), ms(500)).unwrap();
    assert_eq!(
        fast.duration(Timer::D, false),
        Some(Duration::from_secs(32))
    );
    assert_eq!(fast.duration(Timer::B, false), Some(ms(3200)));

    let now = base();
    let mut table = TimerTable::default();
    table.set(Timer::E, now + ms(100));
    table.set(Timer::F, now + ms(100));
    table.set(Timer::K, now + ms(50));
    assert_eq!(table.next_deadline(), Some(now + ms(50)));
    assert_eq!(table.next_expired(now), None);
    assert_eq!(table.next_expired(now + ms(200)), Some(Timer::K));
    table.stop(Timer::K);
    // At the same instant, the timer that ends a state comes first.
    assert_eq!(table.next_expired(now + ms(100)), Some(Timer::F));
    assert_eq!(Timer::E.to_string(), "Timer E");
    assert_eq!(Timer::E.rfc_section(), "§17.1.2.2");
    assert_eq!(Timer::ALL.len(), Timer::COUNT);
}

/// Responses are split off shared buffers: each one sent (and returned) stays whole and its
/// own, across the start of new buffers, and a response to an unknown or client transaction
/// is refused as before.
#[test]
fn responses_written_in_shared_buffers_stay_intact() {
    let now = base();
    let mut layer: TransactionLayer<Side> = TransactionLayer::new(TimerConfig::default());
    let mut sent = Vec::new();
    let body = vec![b'x'; 700];
    for i in 0..200u32 {
        let request = request_with("OPTIONS", &format!("z9hG4bKr{i}"), Transport::Udp, "c", i);
        layer.handle_message(now, request, false, Side::Uac);
        let Some(TransactionEvent::NewRequest { tx, .. }) = layer.poll_event() else {
            panic!("no new request");
        };
        let tag = format!("t{i}");
        let response = layer
            .respond(
                now,
                tx,
                200,
                Some(&tag),
                &[("X-Index", &i.to_string())],
                Some(("text/plain", &body)),
            )
            .unwrap();
        let transmit = layer.poll_transmit().unwrap();
        assert_eq!(transmit.bytes, response);
        sent.push((i, response));
        let client = layer
            .send_request(
                now,
                request_with("OPTIONS", &format!("z9hG4bKc{i}"), Transport::Udp, "d", i),
                false,
                Side::Uas,
            )
            .unwrap();
        assert_eq!(
            layer.respond(now, client, 200, None, &[], None),
            Err(TransactionError::UnknownTransaction(client))
        );
        while layer.poll_transmit().is_some() {}
    }
    for (i, bytes) in sent {
        let m = Message::parse_datagram(bytes).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.cseq(), i);
        assert_eq!(m.to_tag().as_deref(), Some(format!("t{i}").as_str()));
        assert_eq!(
            m.header(&crate::sip::msg::Name::from("X-Index")),
            Some(i.to_string().as_str())
        );
        assert_eq!(&m.body()[..], &body[..]);
    }
}

/// The bytes of every queued transmit, drained.
fn drain(layer: &mut TransactionLayer<Side>) -> Vec<Transmit<Side>> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

#[test]
fn beyond_the_server_cap_requests_get_a_stateless_503_until_transactions_expire() {
    let t0 = base();
    let mut uas: TransactionLayer<Side> =
        TransactionLayer::new(TimerConfig::default()).with_max_server_transactions(10);
    let bye = |i: u32| request_with("BYE", &format!("z9hG4bKbye{i}"), Transport::Udp, "c1", i);
    let mut ids = Vec::new();
    for i in 0..10 {
        let Dispatch::NewRequest { tx } = uas.handle_message(t0, bye(i), false, Side::Uac) else {
            panic!("request {i} under the cap starts a transaction");
        };
        uas.reply(t0, tx, 200, Some("b1")).unwrap();
        ids.push(tx);
    }
    assert_eq!(drain(&mut uas).len(), 10);

    // The 11th BYE and a new INVITE: refused statelessly, nothing started.
    assert_eq!(
        uas.handle_message(t0, bye(10), false, Side::Uac),
        Dispatch::Overloaded
    );
    let invite = request_with("INVITE", "z9hG4bKinv", Transport::Udp, "c2", 1);
    assert_eq!(
        uas.handle_message(t0, invite.clone(), false, Side::Uac),
        Dispatch::Overloaded
    );
    let sent = drain(&mut uas);
    assert_eq!(sent.len(), 2);
    for t in &sent {
        assert_eq!(t.kind, SendKind::Stateless);
        assert_eq!(t.destination, Side::Uac);
        let m = Message::parse_datagram(t.bytes.clone()).unwrap();
        assert_eq!(m.status(), Some(503));
        let text = String::from_utf8_lossy(&t.bytes);
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        assert!(text.contains(";tag=sipcheck-overload"), "{text}");
    }
    assert_eq!(uas.len(), 10);
    assert_eq!(uas.counters().overload_503, 2);

    // An ACK is never answered, even beyond the cap; a retransmission of a live transaction
    // is still absorbed by it.
    let ack = request_with("ACK", "z9hG4bKack", Transport::Udp, "c2", 1);
    assert_eq!(uas.handle_message(t0, ack, false, Side::Uac), Dispatch::Ack);
    assert!(matches!(
        uas.handle_message(t0, bye(3), false, Side::Uac),
        Dispatch::Server { tx, .. } if tx == ids[3]
    ));
    let resent = drain(&mut uas);
    assert_eq!(resent.len(), 1, "the 200 again, no 503");
    assert_eq!(
        Message::parse_datagram(resent[0].bytes.clone())
            .unwrap()
            .status(),
        Some(200)
    );
    assert_eq!(uas.counters().overload_503, 2);

    // Timer J (64*T1) ends the transactions: new requests are served again.
    let later = t0 + TimerConfig::default().t1 * 64;
    assert_eq!(uas.poll_timeout(), Some(later));
    uas.handle_timeout(later);
    assert!(uas.is_empty());
    assert!(matches!(
        uas.handle_message(later, invite, false, Side::Uac),
        Dispatch::NewRequest { .. }
    ));
    assert!(drain(&mut uas).is_empty());
    assert_eq!(uas.counters().overload_503, 2);
}

#[test]
fn tables_shrink_after_a_storm() {
    let t0 = base();
    let mut uas: TransactionLayer<Side> = TransactionLayer::new(TimerConfig::default());
    for i in 0..20_000u32 {
        let bye = request_with("BYE", &format!("z9hG4bKs{i}"), Transport::Tcp, "c1", i);
        let Dispatch::NewRequest { tx } = uas.handle_message(t0, bye, true, Side::Uac) else {
            panic!("under the cap");
        };
        let _ = tx;
    }
    let storm = uas.index_capacities();
    assert!(storm.1 >= 20_000);
    // Answered over a reliable transport: Timer J is zero, every transaction ends.
    let ids: Vec<TxId> = std::iter::from_fn(|| uas.poll_event())
        .filter_map(|e| match e {
            TransactionEvent::NewRequest { tx, .. } => Some(tx),
            _ => None,
        })
        .collect();
    for tx in ids {
        uas.reply(t0, tx, 200, Some("b1")).unwrap();
        uas.handle_timeout(t0);
        drain(&mut uas);
        while uas.poll_event().is_some() {}
    }
    assert!(uas.is_empty());
    let after = uas.index_capacities();
    assert!(
        after.1 < 2048,
        "server index shrank: {storm:?} -> {after:?}"
    );
    assert!(
        after.0 < 2048,
        "deadline heap shrank: {storm:?} -> {after:?}"
    );
}

/// An INVITE as the UA core writes it, with a route set (the ACK of a non-2xx and the CANCEL
/// must carry it, RFC 3261 §17.1.1.3, §9.1).
fn routed_invite(branch: &str) -> Bytes {
    let routes = [
        "<sip:p1.example.com;lr>".to_string(),
        "<sip:p2.example.com;lr>".to_string(),
    ];
    let sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    Bytes::from(
        RequestSpec {
            method: "INVITE",
            uri: "sip:bob@192.0.2.2:5060",
            via: ViaSpec {
                transport: Transport::Udp,
                sent_by: "192.0.2.1:5060".parse().unwrap(),
                branch,
                rport: true,
            },
            routes: &routes,
            from: "\"Alice\" <sip:alice@192.0.2.1>;tag=a1",
            to: "<sip:bob@192.0.2.2>",
            call_id: "routed-1@192.0.2.1",
            cseq: 41,
            contact: Some("<sip:alice@192.0.2.1:5060>"),
            extra: &[("Allow", "INVITE, ACK, CANCEL, BYE")],
            body: Some(("application/sdp", &sdp[..])),
        }
        .to_vec(),
    )
}

fn parsed(bytes: &Bytes) -> Message {
    Message::parse_datagram(bytes.clone()).unwrap()
}

/// The fields RFC 3261 §17.1.1.3 and §9.1 ask of an ACK or a CANCEL built from `invite`.
fn assert_derived_from(derived: &Message, invite: &Message, method: &str) {
    assert_eq!(derived.method().map(Method::as_str), Some(method));
    assert_eq!(derived.request_uri(), invite.request_uri());
    assert_eq!(derived.call_id(), invite.call_id());
    assert_eq!(derived.header(&Name::FROM), invite.header(&Name::FROM));
    assert_eq!(derived.cseq(), invite.cseq());
    assert_eq!(derived.cseq_method().as_str(), method);
    assert_eq!(
        derived.header_values(&Name::VIA).collect::<Vec<_>>(),
        invite.header_values(&Name::VIA).take(1).collect::<Vec<_>>()
    );
    assert_eq!(
        derived.header_values(&Name::ROUTE).collect::<Vec<_>>(),
        invite.header_values(&Name::ROUTE).collect::<Vec<_>>()
    );
}

#[test]
fn the_common_path_never_parses_a_request_it_sends() {
    fn ringing_then_ok(m: &Message) -> Vec<u16> {
        if m.method() == Some(&Method::INVITE) {
            vec![180, 200]
        } else {
            vec![200]
        }
    }
    let mut pair = Pair::new(Transport::Udp, ringing_then_ok);
    // The first INVITE is lost: Timer A sends the bytes again.
    pair.drop_nth(Side::Uac, 0);
    let before = request_parses();
    let invite = pair.send("INVITE");
    let invite_bytes = pair.uac().client(invite).unwrap().raw().clone();
    pair.run_until(ms(1000));
    for method in ["BYE", "REGISTER", "OPTIONS"] {
        pair.send(method);
    }
    pair.run_until_idle();
    let times = pair.uac_times(REQUESTS);
    assert_eq!(times.len(), 5, "{times:?}");
    assert_eq!(times[..2], [0, 500]);
    let finals = pair
        .uac_events()
        .iter()
        .filter(|(_, e)| matches!(e, TransactionEvent::Response { message, .. } if message.status() == Some(200)))
        .count();
    assert_eq!(finals, 4, "the INVITE, BYE, REGISTER and OPTIONS answered");
    assert_eq!(
        pair.uac().counters().retransmissions_sent,
        1,
        "the INVITE sent again"
    );
    assert_eq!(request_parses(), before, "no request sent was parsed");
    // What was sent is what was given.
    let uas_invite = pair.uas_events().iter().find_map(|(_, e)| match e {
        TransactionEvent::NewRequest { message, .. }
            if message.method() == Some(&Method::INVITE) =>
        {
            Some(message.raw().clone())
        }
        _ => None,
    });
    assert_eq!(uas_invite, Some(invite_bytes));
}

#[test]
fn the_ack_of_a_non_2xx_to_a_request_sent_as_bytes_is_built_from_the_original() {
    let mut solo = Solo::new();
    let bytes = routed_invite("z9hG4bKack1");
    let before = request_parses();
    let tx = solo
        .layer
        .send_request_bytes(solo.now, bytes.clone(), false, Side::Uas)
        .unwrap();
    assert_eq!(solo.layer.poll_transmit().unwrap().bytes, bytes);
    let invite = parsed(&bytes);
    let ringing = response_to(&invite, 180);
    solo.layer
        .handle_message(solo.now, ringing, false, Side::Uas);
    assert_eq!(
        request_parses(),
        before,
        "nothing parsed before the final response"
    );

    let busy = response_to(&invite, 486);
    solo.layer
        .handle_message(solo.now, busy.clone(), false, Side::Uas);
    let ack = solo.layer.poll_transmit().unwrap();
    assert_eq!(ack.kind, SendKind::Ack);
    // Byte for byte what it was when the transaction kept the parsed INVITE.
    assert_eq!(ack.bytes, Bytes::from(ack_for_non2xx(&invite, &busy)));
    let ack_msg = parsed(&ack.bytes);
    assert_derived_from(&ack_msg, &invite, "ACK");
    assert_eq!(ack_msg.header(&Name::TO), busy.header(&Name::TO));
    assert_eq!(
        request_parses(),
        before + 1,
        "the INVITE parsed once, for its ACK"
    );

    // The 486 again: the same ACK again, not built (nor parsed) again.
    solo.layer.handle_message(solo.now, busy, false, Side::Uas);
    let again = solo.layer.poll_transmit().unwrap();
    assert_eq!(again.kind, SendKind::AckRetransmission);
    assert_eq!(again.bytes, ack.bytes);
    assert_eq!(request_parses(), before + 1);
    assert_eq!(solo.layer.client(tx).unwrap().final_status(), Some(486));
}

#[test]
fn the_cancel_of_an_invite_sent_as_bytes_is_built_from_the_original() {
    let mut solo = Solo::new();
    let bytes = routed_invite("z9hG4bKcancel1");
    let before = request_parses();
    let tx = solo
        .layer
        .send_request_bytes(solo.now, bytes.clone(), false, Side::Uas)
        .unwrap();
    solo.layer.poll_transmit().unwrap();
    let invite = parsed(&bytes);
    solo.layer
        .handle_message(solo.now, response_to(&invite, 180), false, Side::Uas);
    let cancel_tx = solo.layer.send_cancel(solo.now, tx).unwrap();
    let cancel = solo.layer.poll_transmit().unwrap();
    assert_eq!(cancel.kind, SendKind::Request);
    assert_eq!(cancel.bytes, Bytes::from(cancel_for(&invite)));
    let cancel_msg = parsed(&cancel.bytes);
    assert_derived_from(&cancel_msg, &invite, "CANCEL");
    assert_eq!(cancel_msg.header(&Name::TO), invite.header(&Name::TO));
    // The INVITE parsed once, to build the CANCEL; the CANCEL itself, written the plain way,
    // is not.
    assert_eq!(request_parses(), before + 1);
    let client = solo.layer.client(cancel_tx).unwrap();
    assert_eq!(*client.method(), Method::CANCEL);
    assert_eq!(client.branch(), "z9hG4bKcancel1");
    assert_eq!(client.cseq(), 41);
}

#[test]
fn a_request_not_written_the_plain_way_is_parsed_and_still_refused_when_it_does_not_parse() {
    let mut solo = Solo::new();
    let before = request_parses();
    // Folded, LF-only: parsed (and sent as it was framed).
    let folded = Bytes::from_static(
        b"OPTIONS sip:b@example.com SIP/2.0\nVia: SIP/2.0/UDP\n a.example.com;branch=z9hG4bKf1\nCall-ID: f\nCSeq: 3 OPTIONS\n\n",
    );
    let tx = solo
        .layer
        .send_request_bytes(solo.now, folded.clone(), false, Side::Uas)
        .unwrap();
    assert_eq!(request_parses(), before + 1);
    assert_eq!(solo.layer.client(tx).unwrap().branch(), "z9hG4bKf1");
    assert_eq!(solo.layer.poll_transmit().unwrap().bytes, folded);
    // No Call-ID: refused as before.
    assert!(matches!(
        solo.layer.send_request_bytes(
            solo.now,
            Bytes::from_static(
                b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bKf2\r\nCSeq: 1 OPTIONS\r\n\r\n"
            ),
            false,
            Side::Uas
        ),
        Err(TransactionError::Parse(_))
    ));
    // Plain, but an ACK or without a branch: refused as before.
    let ack = request_with("ACK", "z9hG4bKf3", Transport::Udp, "f", 1);
    assert_eq!(
        solo.layer
            .send_request_bytes(solo.now, ack.raw().clone(), false, Side::Uas),
        Err(TransactionError::AckIsNotATransaction)
    );
    let no_branch = request_with("OPTIONS", "", Transport::Udp, "f", 1);
    assert_eq!(
        solo.layer
            .send_request_bytes(solo.now, no_branch.raw().clone(), false, Side::Uas),
        Err(TransactionError::MissingBranch)
    );
}
