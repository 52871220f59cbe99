//! A datagram network in virtual time, for testing the core's state machines (quinn's `Pair`).
//!
//! A [`Network`] carries [`Datagram`]s between any number of addresses. Each direction of a
//! link has its own [`LinkConfig`]: a one-way delay, and seeded random loss, duplication and
//! reordering (one [`IdGen`] drives them all, so a seed replays the same faults). [`Rule`]s
//! script faults on chosen datagrams ("drop the next 2 from A to B", "delay the first 180 by
//! 500 ms"); a [`relay`](Network::add_relay) stands for a stateless proxy, and an
//! [`interceptor`](Network::set_interceptor) for a proxy that answers, rewrites or forks.
//!
//! A [`Sim`] drives [`Node`]s over a network: it moves what they send onto the network,
//! delivers what is due, and jumps its clock to the next deadline — the earliest of the nodes'
//! [`Node::poll_timeout`] and the next delivery — so a 32-second timeout takes microseconds
//! and every instant is exact. Nothing here reads a clock: the start instant is given.
//! Everything is deterministic: within one instant the datagrams due are delivered in the
//! order they were sent, each followed by a flush of what the nodes send in reply, and then
//! the nodes whose deadline has come are woken in the order they were added.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use sipcheck_core::sim::{Datagram, Fault, LinkConfig, Network, Rule};
//!
//! let start = Instant::now(); // the only clock read: everything after it is virtual
//! let mut net = Network::new(start, LinkConfig::new(Duration::from_millis(10)));
//! net.add_rule(Rule::new(Fault::Drop).from("a").to("b").times(1));
//! assert!(!net.send(Datagram { from: "a", to: "b", bytes: Bytes::from_static(b"lost") }));
//! assert!(net.send(Datagram { from: "a", to: "b", bytes: Bytes::from_static(b"kept") }));
//! assert_eq!(net.next_delivery(), Some(start + Duration::from_millis(10)));
//! net.advance(start + Duration::from_millis(10));
//! assert_eq!(net.poll_delivery().unwrap().bytes, "kept");
//! assert_eq!(net.poll_delivery(), None);
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ids::IdGen;

/// One datagram: where from, where to, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<A> {
    /// The sender's address (the source the receiver sees, unless a relay rewrites it).
    pub from: A,
    /// The destination the sender gave.
    pub to: A,
    /// The payload.
    pub bytes: Bytes,
}

/// Probability in parts per million.
pub type Ppm = u32;

/// How one direction of a link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// One-way delay of every datagram.
    pub delay: Duration,
    /// Random loss: the probability that a datagram is dropped.
    pub loss: Ppm,
    /// Random duplication: the probability that a datagram arrives twice.
    pub duplicate: Ppm,
    /// How long after the first copy a duplicate arrives.
    pub duplicate_lag: Duration,
    /// Random reordering: the probability that a datagram is held back by `reorder_delay`,
    /// so that those sent after it overtake it.
    pub reorder: Ppm,
    /// The extra delay of a held-back datagram.
    pub reorder_delay: Duration,
}

impl LinkConfig {
    /// A faultless link with this one-way delay.
    #[must_use]
    pub const fn new(delay: Duration) -> Self {
        Self {
            delay,
            loss: 0,
            duplicate: 0,
            duplicate_lag: Duration::ZERO,
            reorder: 0,
            reorder_delay: Duration::ZERO,
        }
    }

    /// The same link, losing `loss` parts per million at random.
    #[must_use]
    pub const fn with_loss(mut self, loss: Ppm) -> Self {
        self.loss = loss;
        self
    }

    /// The same link, duplicating `p` parts per million at random, the copy `lag` later.
    #[must_use]
    pub const fn with_duplication(mut self, p: Ppm, lag: Duration) -> Self {
        self.duplicate = p;
        self.duplicate_lag = lag;
        self
    }

    /// The same link, holding back `p` parts per million at random by `extra`.
    #[must_use]
    pub const fn with_reordering(mut self, p: Ppm, extra: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = extra;
        self
    }
}

/// A scripted fault, applied by a [`Rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The datagram is lost.
    Drop,
    /// The datagram arrives this much later than the link's delay.
    Delay(Duration),
    /// The datagram arrives twice, the copy this much after the first.
    Duplicate(Duration),
}

type Matcher = Box<dyn Fn(&[u8]) -> bool>;

/// A scripted fault on chosen datagrams: those from `from` to `to` whose bytes match, from the
/// `skip + 1`-th on (counted from when the rule is added), `times` times.
///
/// Every rule a datagram matches counts it, and their faults add up (a drop wins).
pub struct Rule<A> {
    from: Option<A>,
    to: Option<A>,
    matches: Option<Matcher>,
    skip: u64,
    times: u64,
    fault: Fault,
    seen: u64,
}

impl<A: Debug> Debug for Rule<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("matching", &self.matches.is_some())
            .field("skip", &self.skip)
            .field("times", &self.times)
            .field("fault", &self.fault)
            .field("seen", &self.seen)
            .finish()
    }
}

impl<A: PartialEq> Rule<A> {
    /// `fault` on every datagram, for ever (narrow it with the other methods).
    #[must_use]
    pub fn new(fault: Fault) -> Self {
        Self {
            from: None,
            to: None,
            matches: None,
            skip: 0,
            times: u64::MAX,
            fault,
            seen: 0,
        }
    }

    /// Only datagrams sent from `from`.
    #[must_use]
    pub fn from(mut self, from: A) -> Self {
        self.from = Some(from);
        self
    }

    /// Only datagrams sent to `to` (the destination the sender gave).
    #[must_use]
    pub fn to(mut self, to: A) -> Self {
        self.to = Some(to);
        self
    }

    /// Only datagrams whose bytes satisfy `matches`.
    #[must_use]
    pub fn matching(mut self, matches: impl Fn(&[u8]) -> bool + 'static) -> Self {
        self.matches = Some(Box::new(matches));
        self
    }

    /// Let the first `n` matching datagrams through untouched.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Apply the fault to `n` datagrams (after those skipped), then no more.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.times = n;
        self
    }

    /// Counts `datagram` if it matches; whether the fault applies to it.
    fn applies(&mut self, datagram: &Datagram<A>) -> bool {
        if self.from.as_ref().is_some_and(|f| *f != datagram.from)
            || self.to.as_ref().is_some_and(|t| *t != datagram.to)
            || self.matches.as_ref().is_some_and(|m| !m(&datagram.bytes))
        {
            return false;
        }
        self.seen += 1;
        self.seen > self.skip && self.seen - self.skip <= self.times
    }
}

/// What an [interceptor](Network::set_interceptor) — a proxy on the path — does with a
/// datagram as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intercept {
    /// Let it through unchanged.
    Pass,
    /// Let these bytes through instead.
    Replace(Bytes),
    /// Stop it, and send these bytes back to its sender, from where it was sent to.
    Reply(Bytes),
    /// Stop it.
    Drop,
    /// Let it through, and these bytes after it (`lag` later) from the same sender: a second
    /// fork's answer.
    PassAnd(Bytes, Duration),
}

type Interceptor<A> = Box<dyn FnMut(&Datagram<A>) -> Intercept>;
type Route<A> = Box<dyn Fn(&A) -> A>;

/// One datagram as it was put on the network, in the [log](Network::log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent<A> {
    /// When it was sent.
    pub at: Instant,
    /// Its sender (for a reply of the interceptor, the address the stopped datagram was sent
    /// to).
    pub from: A,
    /// The destination its sender gave.
    pub to: A,
    /// The bytes on the wire (after the interceptor).
    pub bytes: Bytes,
    /// Whether it was lost (by the interceptor, a rule or random loss).
    pub dropped: bool,
}

/// What one address put on the network and what became of it. An interceptor's reply counts
/// as sent by the address it answers for, and a fork's extra answer as sent by the sender of
/// the datagram it follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams it sent (those the interceptor stopped included).
    pub sent: u64,
    /// Of those, lost.
    pub dropped: u64,
    /// Datagrams from it handed to a receiver (a duplicate counts twice).
    pub delivered: u64,
}

/// A datagram network in virtual time between any number of addresses.
pub struct Network<A> {
    start: Instant,
    now: Instant,
    default_link: LinkConfig,
    links: BTreeMap<(A, A), LinkConfig>,
    rng: IdGen,
    rules: Vec<Rule<A>>,
    relays: BTreeMap<A, Route<A>>,
    interceptor: Option<Interceptor<A>>,
    /// (delivery instant, sequence) → (its sender, the datagram with the source and
    /// destination it is delivered with).
    in_flight: BTreeMap<(Instant, u64), (A, Datagram<A>)>,
    seq: u64,
    log: Vec<Sent<A>>,
    counts: BTreeMap<A, Counts>,
}

impl<A: Debug> Debug for Network<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("now", &(self.now - self.start))
            .field("default_link", &self.default_link)
            .field("rules", &self.rules)
            .field("in_flight", &self.in_flight.len())
            .field("sent", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl<A: Clone + Ord + Debug> Network<A> {
    /// A network whose clock starts at `start`, every link behaving as `default_link`, its
    /// random faults seeded with 0 (see [`seed`](Self::seed)).
    #[must_use]
    pub fn new(start: Instant, default_link: LinkConfig) -> Self {
        Self {
            start,
            now: start,
            default_link,
            links: BTreeMap::new(),
            rng: IdGen::new(0),
            rules: Vec::new(),
            relays: BTreeMap::new(),
            interceptor: None,
            in_flight: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Reseeds the generator of random loss, duplication and reordering.
    pub fn seed(&mut self, seed: u64) {
        self.rng = IdGen::new(seed);
    }

    /// The instant the clock started at.
    #[must_use]
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The current virtual instant.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves the clock to `now` (never backwards).
    pub fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// How links without a configuration of their own behave.
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.default_link = link;
    }

    /// How the direction `from` → `to` behaves.
    pub fn set_link(&mut self, from: A, to: A, link: LinkConfig) {
        self.links.insert((from, to), link);
    }

    /// The configuration of the direction `from` → `to`.
    #[must_use]
    pub fn link(&self, from: &A, to: &A) -> LinkConfig {
        self.links
            .get(&(from.clone(), to.clone()))
            .copied()
            .unwrap_or(self.default_link)
    }

    /// Adds a scripted fault.
    pub fn add_rule(&mut self, rule: Rule<A>) {
        self.rules.push(rule);
    }

    /// Drops the next `n` datagrams from `from` to `to`.
    pub fn drop_next(&mut self, from: A, to: A, n: u64) {
        self.add_rule(Rule::new(Fault::Drop).from(from).to(to).times(n));
    }

    /// Drops everything `from` sends from now on.
    pub fn blackhole(&mut self, from: A) {
        self.add_rule(Rule::new(Fault::Drop).from(from));
    }

    /// A stateless relay at `at`: what is sent to it from `x` goes on to `route(x)` within the
    /// same hop, arriving from `at`.
    pub fn add_relay(&mut self, at: A, route: impl Fn(&A) -> A + 'static) {
        self.relays.insert(at, Box::new(route));
    }

    /// Puts a proxy on the path that sees every datagram as it is sent, before the link's
    /// faults.
    pub fn set_interceptor(
        &mut self,
        interceptor: impl FnMut(&Datagram<A>) -> Intercept + 'static,
    ) {
        self.interceptor = Some(Box::new(interceptor));
    }

    /// Every datagram put on the network, in order.
    #[must_use]
    pub fn log(&self) -> &[Sent<A>] {
        &self.log
    }

    /// What `from` sent and what became of it.
    #[must_use]
    pub fn counts(&self, from: &A) -> Counts {
        self.counts.get(from).copied().unwrap_or_default()
    }

    /// Whether nothing is in flight.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    fn count(&mut self, from: &A) -> &mut Counts {
        self.counts.entry(from.clone()).or_default()
    }

    /// Where a datagram sent from `from` to `to` is delivered, and the source it shows.
    fn route(&self, from: &A, to: &A) -> (A, A) {
        match self.relays.get(to) {
            Some(route) => (to.clone(), route(from)),
            None => (from.clone(), to.clone()),
        }
    }

    fn schedule(&mut self, at: Instant, sender: A, datagram: Datagram<A>) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), (sender, datagram));
    }

    /// Puts `datagram` on the network now. Returns whether it is on its way (not lost).
    pub fn send(&mut self, datagram: Datagram<A>) -> bool {
        let mut datagram = datagram;
        self.count(&datagram.from).sent += 1;
        let verdict = match self.interceptor.as_mut() {
            Some(intercept) => intercept(&datagram),
            None => Intercept::Pass,
        };
        match verdict {
            Intercept::Pass => {}
            Intercept::Replace(bytes) => datagram.bytes = bytes,
            Intercept::Drop | Intercept::Reply(_) => {
                self.log_sent(&datagram, true);
                self.count(&datagram.from).dropped += 1;
                if let Intercept::Reply(bytes) = verdict {
                    let reply = Datagram {
                        from: datagram.to,
                        to: datagram.from,
                        bytes,
                    };
                    self.log_sent(&reply, false);
                    self.count(&reply.from).sent += 1;
                    let at = self.now + self.link(&reply.from, &reply.to).delay;
                    self.schedule(at, reply.from.clone(), reply);
                }
                return false;
            }
            Intercept::PassAnd(bytes, lag) => {
                let extra = Datagram {
                    from: datagram.from.clone(),
                    to: datagram.to.clone(),
                    bytes,
                };
                self.log_sent(&extra, false);
                self.count(&extra.from).sent += 1;
                let at = self.now + self.link(&extra.from, &extra.to).delay + lag;
                let sender = extra.from.clone();
                let (from, to) = self.route(&extra.from, &extra.to);
                self.schedule(at, sender, Datagram { from, to, ..extra });
            }
        }
        let link = self.link(&datagram.from, &datagram.to);
        let mut dropped = link.loss > 0 && self.draw(link.loss);
        let mut extra = Duration::ZERO;
        let mut copies = Vec::new();
        if link.duplicate > 0 && self.draw(link.duplicate) {
            copies.push(link.duplicate_lag);
        }
        if link.reorder > 0 && self.draw(link.reorder) {
            extra += link.reorder_delay;
        }
        for rule in &mut self.rules {
            if rule.applies(&datagram) {
                match rule.fault {
                    Fault::Drop => dropped = true,
                    Fault::Delay(d) => extra += d,
                    Fault::Duplicate(lag) => copies.push(lag),
                }
            }
        }
        self.log_sent(&datagram, dropped);
        if dropped {
            self.count(&datagram.from).dropped += 1;
            return false;
        }
        let at = self.now + link.delay + extra;
        let sender = datagram.from.clone();
        let (from, to) = self.route(&datagram.from, &datagram.to);
        let datagram = Datagram {
            from,
            to,
            bytes: datagram.bytes,
        };
        for lag in copies {
            self.schedule(at + lag, sender.clone(), datagram.clone());
        }
        self.schedule(at, sender, datagram);
        true
    }

    /// Whether the next random draw falls under `p` parts per million.
    fn draw(&mut self, p: Ppm) -> bool {
        self.rng.next_u64() % 1_000_000 < u64::from(p)
    }

    fn log_sent(&mut self, datagram: &Datagram<A>, dropped: bool) {
        self.log.push(Sent {
            at: self.now,
            from: datagram.from.clone(),
            to: datagram.to.clone(),
            bytes: datagram.bytes.clone(),
            dropped,
        });
    }

    /// When the next datagram arrives.
    #[must_use]
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|&(at, _)| at)
    }

    /// The next datagram due by now, in order of arrival (the order of sending within an
    /// instant). Its `from` is the source the receiver sees, its `to` the receiving address.
    pub fn poll_delivery(&mut self) -> Option<Datagram<A>> {
        let entry = self.in_flight.first_entry()?;
        if entry.key().0 > self.now {
            return None;
        }
        let (sender, datagram) = entry.remove();
        self.count(&sender).delivered += 1;
        Some(datagram)
    }
}

/// A state machine driven by a [`Sim`]: quinn-proto's connection shape.
pub trait Node<A> {
    /// A datagram arrived at one of the node's addresses.
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<A>);

    /// The node's deadline has passed.
    fn handle_timeout(&mut self, now: Instant);

    /// When the node next needs [`handle_timeout`](Self::handle_timeout).
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next datagram the node sends now; `None` once it has nothing more to send. The
    /// node's user (its policy in a test) reacts to the node's events here.
    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram<A>>;
}

/// A boxed node is a node: `Sim<A, Box<dyn Node<A>>>` drives nodes of different kinds (a UA,
/// a registrar, a proxy) over one network.
impl<A, T: Node<A> + ?Sized> Node<A> for Box<T> {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<A>) {
        (**self).handle_datagram(now, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Datagram<A>> {
        (**self).poll_transmit(now)
    }
}

/// Nodes over a [`Network`], driven in virtual time.
pub struct Sim<A, N> {
    /// The network between the nodes.
    pub net: Network<A>,
    /// The nodes, in the order they were added.
    pub nodes: Vec<N>,
    owners: BTreeMap<A, usize>,
}

impl<A: Debug, N> Debug for Sim<A, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("net", &self.net)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl<A: Clone + Ord + Debug, N: Node<A>> Sim<A, N> {
    /// No nodes yet, over `net`.
    #[must_use]
    pub fn new(net: Network<A>) -> Self {
        Self {
            net,
            nodes: Vec::new(),
            owners: BTreeMap::new(),
        }
    }

    /// Adds `node`, reachable at `addresses`; returns its index in [`nodes`](Self::nodes).
    pub fn add_node(&mut self, node: N, addresses: impl IntoIterator<Item = A>) -> usize {
        let index = self.nodes.len();
        self.nodes.push(node);
        for address in addresses {
            self.add_address(index, address);
        }
        index
    }

    /// Makes `address` reach node `index` too.
    pub fn add_address(&mut self, index: usize, address: A) {
        assert!(
            self.owners.insert(address.clone(), index).is_none(),
            "{address:?} belongs to two nodes"
        );
    }

    /// The node `address` reaches.
    #[must_use]
    pub fn owner(&self, address: &A) -> Option<usize> {
        self.owners.get(address).copied()
    }

    /// The current virtual instant.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.net.elapsed()
    }

    /// Puts everything the nodes send now on the network, until none has more to send.
    ///
    /// # Panics
    /// If a node sends to an address that is neither a node's nor a relay's: a bug in the node
    /// or the test, caught even when the datagram would have been lost. (A host that never
    /// answers is a node that ignores what it gets.)
    pub fn flush(&mut self) {
        let now = self.net.now();
        loop {
            let mut idle = true;
            for node in &mut self.nodes {
                while let Some(datagram) = node.poll_transmit(now) {
                    idle = false;
                    assert!(
                        self.owners.contains_key(&datagram.to)
                            || self.net.relays.contains_key(&datagram.to),
                        "{:?} sent to {:?}, which reaches no node",
                        datagram.from,
                        datagram.to
                    );
                    self.net.send(datagram);
                }
            }
            if idle {
                return;
            }
        }
    }

    /// The earliest of the nodes' deadlines and the next delivery.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter_map(Node::poll_timeout)
            .chain(self.net.next_delivery())
            .min()
    }

    /// Advances to the next deadline if it is not after `limit`, delivers what is due and
    /// wakes the nodes whose deadline has come. Returns whether it did anything.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.flush();
        let Some(next) = self.next_deadline().filter(|&next| next <= limit) else {
            return false;
        };
        self.net.advance(next);
        let now = self.net.now();
        while let Some(datagram) = self.net.poll_delivery() {
            let Some(&owner) = self.owners.get(&datagram.to) else {
                panic!(
                    "{:?} sent to {:?}, which reaches no node",
                    datagram.from, datagram.to
                );
            };
            self.nodes[owner].handle_datagram(now, datagram);
            self.flush();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].poll_timeout().is_some_and(|at| at <= now) {
                self.nodes[i].handle_timeout(now);
                self.flush();
            }
        }
        true
    }

    /// Runs until `limit`, jumping from deadline to deadline; the clock ends at `limit`.
    pub fn run_until(&mut self, limit: Instant) {
        while self.step(limit) {}
        self.net.advance(limit);
    }

    /// Runs for `d` from now.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now() + d);
    }

    /// Runs until no node has a deadline and nothing is in flight, for at most `bound`.
    /// Returns whether that state was reached; the clock stays at the last deadline handled.
    pub fn run_until_idle(&mut self, bound: Duration) -> bool {
        let limit = self.now() + bound;
        while self.step(limit) {}
        self.next_deadline().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one clock read of these tests; everything after it is virtual.
    #[allow(clippy::disallowed_methods)]
    fn base() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn dgram(from: &'static str, to: &'static str, n: u32) -> Datagram<&'static str> {
        Datagram {
            from,
            to,
            bytes: Bytes::from(n.to_string()),
        }
    }

    /// Everything due by `at`, as (arrival, from, payload).
    fn drain(
        net: &mut Network<&'static str>,
        at: Instant,
    ) -> Vec<(Duration, &'static str, String)> {
        let mut out = Vec::new();
        while let Some(next) = net.next_delivery().filter(|&n| n <= at) {
            net.advance(next);
            while let Some(d) = net.poll_delivery() {
                let text = String::from_utf8(d.bytes.to_vec()).unwrap();
                out.push((net.elapsed(), d.from, text));
            }
        }
        out
    }

    #[test]
    fn each_direction_has_its_own_delay() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)));
        net.set_link("b", "a", LinkConfig::new(ms(30)));
        net.send(dgram("a", "b", 1));
        net.send(dgram("b", "a", 2));
        net.send(dgram("c", "a", 3));
        assert_eq!(
            drain(&mut net, t0 + ms(100)),
            [
                (ms(10), "a", "1".into()),
                (ms(10), "c", "3".into()),
                (ms(30), "b", "2".into())
            ]
        );
        assert!(net.is_idle());
    }

    #[test]
    fn drop_next_drops_exactly_that_many_on_that_direction() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(5)));
        net.drop_next("a", "b", 2);
        for n in 0..4 {
            net.send(dgram("a", "b", n));
            net.send(dgram("b", "a", 10 + n));
            net.send(dgram("a", "c", 20 + n));
        }
        let got: Vec<String> = drain(&mut net, t0 + ms(5))
            .into_iter()
            .map(|(_, _, text)| text)
            .collect();
        assert_eq!(
            got,
            ["10", "20", "11", "21", "2", "12", "22", "3", "13", "23"]
        );
        assert_eq!(
            net.counts(&"a"),
            Counts {
                sent: 8,
                dropped: 2,
                delivered: 6
            }
        );
        assert_eq!(net.log().iter().filter(|s| s.dropped).count(), 2);
    }

    #[test]
    fn a_rule_skips_then_applies_a_number_of_times_to_matching_datagrams() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(5)));
        // The 2nd and 3rd datagram from a whose payload is even are held back 100 ms.
        net.add_rule(
            Rule::new(Fault::Delay(ms(100)))
                .from("a")
                .matching(|b| b.last().is_some_and(|c| (c - b'0').is_multiple_of(2)))
                .skip(1)
                .times(2),
        );
        for n in 0..8 {
            net.send(dgram("a", "b", n));
        }
        let got: Vec<(Duration, String)> = drain(&mut net, t0 + ms(200))
            .into_iter()
            .map(|(at, _, text)| (at, text))
            .collect();
        let late: Vec<&str> = got
            .iter()
            .filter(|(at, _)| *at == ms(105))
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(late, ["2", "4"]);
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn seeded_random_loss_replays_and_loses_about_its_share() {
        let run = |seed: u64| {
            let mut net = Network::new(base(), LinkConfig::new(ms(1)).with_loss(50_000));
            net.seed(seed);
            (0..10_000)
                .map(|n| net.send(dgram("a", "b", n)))
                .collect::<Vec<bool>>()
        };
        let first = run(7);
        assert_eq!(first, run(7), "one seed, one pattern");
        assert_ne!(first, run(8));
        let lost = first.iter().filter(|&&kept| !kept).count();
        assert!((400..=600).contains(&lost), "{lost} of 10,000 lost at 5 %");
        // Loss on one direction only.
        let mut net = Network::new(base(), LinkConfig::new(ms(1)));
        net.set_link("a", "b", LinkConfig::new(ms(1)).with_loss(500_000));
        for n in 0..1000 {
            net.send(dgram("a", "b", n));
            net.send(dgram("b", "a", n));
        }
        let (a, b) = (net.counts(&"a"), net.counts(&"b"));
        assert!(
            (400..=600).contains(&a.dropped),
            "{} of 1,000 lost at 50 %",
            a.dropped
        );
        assert_eq!(b.dropped, 0);
    }

    #[test]
    fn duplicates_arrive_lag_later_and_count_twice() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)));
        net.add_rule(Rule::new(Fault::Duplicate(ms(7))).from("a").times(1));
        net.send(dgram("a", "b", 1));
        net.send(dgram("a", "b", 2));
        assert_eq!(
            drain(&mut net, t0 + ms(100)),
            [
                (ms(10), "a", "1".into()),
                (ms(10), "a", "2".into()),
                (ms(17), "a", "1".into())
            ]
        );
        let c = net.counts(&"a");
        assert_eq!((c.sent, c.delivered, c.dropped), (2, 3, 0));

        // At random: about the configured share.
        let mut net = Network::new(t0, LinkConfig::new(ms(10)).with_duplication(250_000, ms(1)));
        for n in 0..4000 {
            net.send(dgram("a", "b", n));
        }
        let copies = drain(&mut net, t0 + ms(100)).len() - 4000;
        assert!(
            (800..=1200).contains(&copies),
            "{copies} copies of 4,000 at 25 %"
        );
    }

    #[test]
    fn reordering_lets_later_datagrams_overtake() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)).with_reordering(300_000, ms(25)));
        net.seed(3);
        for n in 0..1000u32 {
            net.advance(t0 + ms(u64::from(n) * 10));
            net.send(dgram("a", "b", n));
        }
        let order: Vec<u32> = drain(&mut net, t0 + secs(20))
            .into_iter()
            .map(|(_, _, text)| text.parse().unwrap())
            .collect();
        assert_eq!(order.len(), 1000, "nothing lost");
        let overtaken = order.windows(2).filter(|w| w[0] > w[1]).count();
        assert!((200..=400).contains(&overtaken), "{overtaken} inversions");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_relay_forwards_from_its_own_address_and_an_interceptor_answers_for_the_far_end() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)));
        net.add_relay("proxy", |from| if *from == "a" { "b" } else { "a" });
        net.send(dgram("a", "proxy", 1));
        let d = {
            net.advance(t0 + ms(10));
            net.poll_delivery().unwrap()
        };
        assert_eq!((d.from, d.to), ("proxy", "b"));
        assert_eq!(
            net.log()[0].to,
            "proxy",
            "the log keeps the destination given"
        );

        net.set_interceptor(|d| match &d.bytes[..] {
            b"2" => Intercept::Reply(Bytes::from_static(b"no")),
            b"3" => Intercept::Replace(Bytes::from_static(b"three")),
            b"4" => Intercept::Drop,
            b"5" => Intercept::PassAnd(Bytes::from_static(b"fork"), ms(1)),
            _ => Intercept::Pass,
        });
        for n in 2..=6 {
            net.send(dgram("a", "b", n));
        }
        assert_eq!(
            drain(&mut net, t0 + ms(100)),
            [
                (ms(20), "b", "no".into()),
                (ms(20), "a", "three".into()),
                (ms(20), "a", "5".into()),
                (ms(20), "a", "6".into()),
                (ms(21), "a", "fork".into())
            ]
        );
        let dropped: Vec<bool> = net.log().iter().map(|s| s.dropped).collect();
        // 1; 2 stopped and its reply; 3; 4 stopped; the fork's answer, then 5; 6.
        assert_eq!(
            dropped,
            [false, true, false, false, true, false, false, false]
        );
    }

    /// A node that sends `left` pings, one a second, and counts the echoes; or (with `left`
    /// `None`) echoes whatever it gets.
    struct Pinger {
        me: &'static str,
        peer: &'static str,
        next: Option<Instant>,
        left: Option<u32>,
        outbox: Vec<Datagram<&'static str>>,
        echoes: Vec<Instant>,
    }

    impl Node<&'static str> for Pinger {
        fn handle_datagram(&mut self, now: Instant, datagram: Datagram<&'static str>) {
            if self.left.is_some() {
                self.echoes.push(now);
            } else {
                self.outbox.push(Datagram {
                    from: self.me,
                    to: datagram.from,
                    bytes: datagram.bytes,
                });
            }
        }

        fn handle_timeout(&mut self, now: Instant) {
            let left = self.left.as_mut().unwrap();
            *left -= 1;
            self.outbox.push(Datagram {
                from: self.me,
                to: self.peer,
                bytes: Bytes::from_static(b"ping"),
            });
            self.next = (*left > 0).then(|| now + secs(1));
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.next
        }

        fn poll_transmit(&mut self, _now: Instant) -> Option<Datagram<&'static str>> {
            self.outbox.pop()
        }
    }

    #[test]
    #[should_panic(expected = "\"pinger\" sent to \"nobody\", which reaches no node")]
    fn sending_to_an_address_no_node_holds_is_a_bug_even_if_the_datagram_is_lost() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)));
        net.blackhole("pinger");
        let mut sim = Sim::new(net);
        let pinger = Pinger {
            me: "pinger",
            peer: "nobody",
            next: Some(t0),
            left: Some(1),
            outbox: Vec::new(),
            echoes: Vec::new(),
        };
        sim.add_node(pinger, ["pinger"]);
        sim.run_for(secs(1));
    }

    #[test]
    fn the_clock_jumps_from_deadline_to_deadline() {
        let t0 = base();
        let mut net = Network::new(t0, LinkConfig::new(ms(10)));
        net.set_link("echo", "pinger", LinkConfig::new(ms(40)));
        net.drop_next("pinger", "echo", 1);
        let mut sim = Sim::new(net);
        let pinger = |me, peer, left: Option<u32>| Pinger {
            me,
            peer,
            next: left.map(|_| t0),
            left,
            outbox: Vec::new(),
            echoes: Vec::new(),
        };
        sim.add_node(pinger("pinger", "echo", Some(3600)), ["pinger"]);
        sim.add_node(pinger("echo", "pinger", None), ["echo"]);
        // An hour of pings, a second apart.
        assert!(sim.run_until_idle(secs(7200)));
        let echoes = &sim.nodes[0].echoes;
        assert_eq!(echoes.len(), 3599, "the first ping was lost");
        assert_eq!(echoes[0], t0 + secs(1) + ms(50));
        assert_eq!(*echoes.last().unwrap(), t0 + secs(3599) + ms(50));
        assert_eq!(
            sim.now(),
            t0 + secs(3599) + ms(50),
            "the clock stops at the last deadline"
        );
        assert_eq!(sim.net.counts(&"pinger").sent, 3600);
        assert_eq!(sim.net.counts(&"echo").delivered, 3599);

        // Nodes of different kinds, boxed: a silent one beside the pair.
        struct Mute;
        impl Node<&'static str> for Mute {
            fn handle_datagram(&mut self, _: Instant, _: Datagram<&'static str>) {}
            fn handle_timeout(&mut self, _: Instant) {}
            fn poll_timeout(&self) -> Option<Instant> {
                None
            }
            fn poll_transmit(&mut self, _: Instant) -> Option<Datagram<&'static str>> {
                None
            }
        }
        let mut mixed: Sim<&'static str, Box<dyn Node<&'static str>>> =
            Sim::new(Network::new(t0, LinkConfig::new(ms(10))));
        mixed.add_node(Box::new(pinger("pinger", "mute", Some(2))), ["pinger"]);
        mixed.add_node(Box::new(Mute), ["mute"]);
        assert!(mixed.run_until_idle(secs(10)));
        assert_eq!(mixed.net.counts(&"pinger").delivered, 2);
        assert_eq!(mixed.net.counts(&"mute").sent, 0);

        // run_until moves the clock to its limit even when nothing happens.
        sim.run_until(t0 + secs(4000));
        assert_eq!(sim.now(), t0 + secs(4000));
        assert_eq!(sim.owner(&"echo"), Some(1));
    }
}
